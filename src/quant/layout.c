/* The output plan of a quantized weight and its packing (see layout.h). */
#include "layout.h"

#include "error.h"
#include "model.h"
#include "qparams.h"
#include "dtype.h"
#include "reference.h"
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An unsigned byte of a packed word: the code plus 2^(bits - 1), for 8 bits
 * the sign bit flipped. */
#define PACK_OFFSET8 0x80u
#define CODES_PER_WORD 4u

mq_qformat mq_qformat_of(const mq_config *cfg)
{
    return cfg->symmetric && !cfg->weights_only ? MQ_FORMAT_INT_QUANTIZED
                                                : MQ_FORMAT_PACK_QUANTIZED;
}

const char *mq_qformat_name(mq_qformat f)
{
    return f == MQ_FORMAT_INT_QUANTIZED ? "int-quantized" : "pack-quantized";
}

int mq_output_metadata(const mq_config *cfg, const char *kv[MQ_OUTPUT_META][2])
{
    int n = 0;
    kv[n][0] = "quantized_by";
    kv[n++][1] = "monoquant " MQ_VERSION;
    kv[n][0] = "quantization_scheme";
    kv[n++][1] = mq_scheme_name(cfg);
    if (cfg->dtype == MQ_QINT8) {
        kv[n][0] = "quantization_format";
        kv[n++][1] = mq_qformat_name(mq_qformat_of(cfg));
    }
    return n;
}

static size_t words_for(size_t n)
{
    return n / CODES_PER_WORD + (n % CODES_PER_WORD != 0);
}

static mq_status set_out(mq_qout *o, const char *name, const char *suffix, mq_dtype dt, int rank,
                         const int64_t *shape)
{
    size_t n = strlen(name) + strlen(suffix) + 1;
    uint64_t numel = 1;
    if (!(o->name = malloc(n)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
    snprintf(o->name, n, "%s%s", name, suffix);
    o->dtype = dt;
    o->rank = rank;
    for (int k = 0; k < rank; k++) {
        o->shape[k] = shape[k];
        numel *= (uint64_t)shape[k];
    }
    o->nbytes = numel * mq_dtype_size(dt);
    return MQ_OK;
}

mq_status mq_qlayout_init(mq_qlayout *l, const mq_tensor *t, const mq_config *cfg)
{
    uint64_t numel = 1;
    memset(l, 0, sizeof *l);
    for (int k = 0; k < t->rank; k++)
        numel *= (uint64_t)t->shape[k];
    l->format = mq_qformat_of(cfg);
    l->symmetric = cfg->symmetric;
    l->rows = cfg->per_channel ? (size_t)t->shape[0] : 1;
    l->cols = (size_t)(numel / l->rows);
    l->inner = (size_t)t->shape[t->rank - 1];
    bool packed = l->format == MQ_FORMAT_PACK_QUANTIZED;
    l->inner_bytes = packed ? words_for(l->inner) * CODES_PER_WORD : l->inner;

    int64_t sshape[2] = {(int64_t)l->rows, 1}, zshape[2] = {(int64_t)words_for(l->rows), 1};
    int64_t cshape[MQ_MAX_RANK], rshape[1] = {t->rank};
    int srank = cfg->per_channel ? 2 : 1;
    mq_status st;
    memcpy(cshape, t->shape, sizeof cshape);
    if (packed) cshape[t->rank - 1] = (int64_t)words_for(l->inner);
    st = set_out(&l->out[MQ_QOUT_CODES], t->name, packed ? MQ_PACKED_SUFFIX : "",
                 packed ? MQ_DTYPE_I32 : MQ_DTYPE_I8, t->rank, cshape);
    if (st == MQ_OK)
        st = set_out(&l->out[MQ_QOUT_SCALE], t->name, MQ_SCALE_SUFFIX, t->dtype, srank, sshape);
    if (st == MQ_OK && !cfg->symmetric) {
        bool pack_zp = packed && cfg->per_channel;
        st = set_out(&l->out[MQ_QOUT_ZP], t->name, MQ_ZP_SUFFIX,
                     pack_zp ? MQ_DTYPE_I32 : MQ_DTYPE_I8, srank, pack_zp ? zshape : sshape);
    }
    if (st == MQ_OK && packed)
        st = set_out(&l->out[MQ_QOUT_SHAPE], t->name, MQ_SHAPE_SUFFIX, MQ_DTYPE_I64, 1, rshape);
    if (st != MQ_OK) mq_qlayout_free(l);
    return st;
}

void mq_qlayout_free(mq_qlayout *l)
{
    if (!l) return;
    for (int k = 0; k < MQ_QOUT_COUNT; k++) {
        free(l->out[k].name);
        l->out[k].name = NULL;
    }
}

mq_status mq_qlayout_check_names(const mq_qlayout *l, const mq_model *in, const char *weight)
{
    /* int-quantized codes replace the weight under its own name. */
    for (int k = l->format == MQ_FORMAT_INT_QUANTIZED ? 1 : 0; k < MQ_QOUT_COUNT; k++) {
        const char *n = l->out[k].name;
        if (n && mq_model_index(in, n) >= 0)
            return mq_set_error(MQ_STATUS_E_DATA,
                                "tensor '%s': the input already has '%s', a name quantizing "
                                "it would add (already quantized?)",
                                weight, n);
    }
    return MQ_OK;
}

uint64_t mq_qlayout_code_pos(const mq_qlayout *l, uint64_t e)
{
    if (l->inner_bytes == l->inner) return e;
    return e / l->inner * l->inner_bytes + e % l->inner;
}

size_t mq_qlayout_code_span(const mq_qlayout *l, uint64_t first, size_t count)
{
    uint64_t last = first + count - 1;
    uint64_t end = mq_qlayout_code_pos(l, last) + 1;
    if ((last + 1) % l->inner == 0) end += l->inner_bytes - l->inner;
    return (size_t)(end - mq_qlayout_code_pos(l, first));
}

uint8_t mq_qlayout_code_xor(const mq_qlayout *l)
{
    return l->format == MQ_FORMAT_PACK_QUANTIZED ? PACK_OFFSET8 : 0;
}

size_t mq_qlayout_pack_codes(const mq_qlayout *l, void *buf, uint64_t first, size_t count)
{
    unsigned char *b = buf;
    if (l->inner_bytes == l->inner || count == 0) return count;
    /* Back to front: a code moves only forward (by the padding before it), so
     * nothing is overwritten before it is read. */
    uint64_t base = mq_qlayout_code_pos(l, first);
    size_t pad = l->inner_bytes - l->inner;
    for (size_t k = count; k-- > 0;) {
        uint64_t e = first + k;
        size_t o = (size_t)(mq_qlayout_code_pos(l, e) - base);
        if ((e + 1) % l->inner == 0) memset(b + o + 1, 0, pad);
        b[o] = b[k];
    }
    return mq_qlayout_code_span(l, first, count);
}

void mq_qlayout_pack_zp(const mq_qlayout *l, int8_t *zp, size_t n)
{
    if (l->format != MQ_FORMAT_PACK_QUANTIZED || !l->out[MQ_QOUT_ZP].name ||
        l->out[MQ_QOUT_ZP].dtype != MQ_DTYPE_I32)
        return;
    for (size_t i = 0; i < n; i++)
        zp[i] = (int8_t)((unsigned char)zp[i] ^ PACK_OFFSET8);
}

void mq_qlayout_shape_bytes(const mq_qlayout *l, unsigned char *dst)
{
    const mq_qout *o = &l->out[MQ_QOUT_SHAPE];
    const mq_qout *c = &l->out[MQ_QOUT_CODES];
    for (int k = 0; k < (int)o->shape[0]; k++) {
        /* The weight's shape: the codes' shape with the last dimension unpacked. */
        uint64_t v = k + 1 == (int)o->shape[0] ? (uint64_t)l->inner : (uint64_t)c->shape[k];
        for (int b = 0; b < 8; b++)
            dst[8 * k + b] = (unsigned char)(v >> (8 * b));
    }
}

uint64_t mq_qlayout_bytes(const mq_qlayout *l)
{
    uint64_t n = 0;
    for (int k = 0; k < MQ_QOUT_COUNT; k++)
        if (l->out[k].name) n += l->out[k].nbytes;
    return n;
}

/* ---- reading a quantized layer back ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The tensor base + suffix, or NULL. */
static const mq_tensor *find_with(const mq_model *m, const char *base, size_t n, const char *suffix)
{
    char buf[4096];
    if (n + strlen(suffix) >= sizeof buf) return NULL;
    memcpy(buf, base, n);
    strcpy(buf + n, suffix);
    return mq_model_find(m, buf);
}

/* For W_packed: the length of W, else 0. */
static size_t packed_base(const mq_model *m, const mq_tensor *t)
{
    if (t->dtype != MQ_DTYPE_I32 || !ends_with(t->name, MQ_PACKED_SUFFIX)) return 0;
    size_t n = strlen(t->name) - strlen(MQ_PACKED_SUFFIX);
    return find_with(m, t->name, n, MQ_SHAPE_SUFFIX) && find_with(m, t->name, n, MQ_SCALE_SUFFIX)
               ? n
               : 0;
}

bool mq_qlayer_is_codes(const mq_model *m, const mq_tensor *t)
{
    if (t->dtype == MQ_DTYPE_I8) return find_with(m, t->name, strlen(t->name), MQ_SCALE_SUFFIX);
    return packed_base(m, t) > 0;
}

bool mq_qlayer_is_param(const mq_model *m, const mq_tensor *t)
{
    static const char *const suffixes[] = {MQ_SCALE_SUFFIX, MQ_ZP_SUFFIX, MQ_SHAPE_SUFFIX};
    for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
        if (!ends_with(t->name, suffixes[k])) continue;
        size_t n = strlen(t->name) - strlen(suffixes[k]);
        const mq_tensor *w = find_with(m, t->name, n, "");
        const mq_tensor *p = find_with(m, t->name, n, MQ_PACKED_SUFFIX);
        if ((w && mq_qlayer_is_codes(m, w)) || (p && mq_qlayer_is_codes(m, p))) return true;
    }
    return false;
}

static mq_status bad(const char *name, const char *what)
{
    return mq_set_error(MQ_STATUS_E_FORMAT, "layer '%s': %s", name, what);
}

/* The weight's shape from W_shape, checked against the packed codes. */
static mq_status read_shape(const mq_tensor *c, const mq_tensor *sh, mq_tensor *w)
{
    if (sh->dtype != MQ_DTYPE_I64 || sh->rank != 1 || sh->shape[0] != c->rank)
        return bad(w->name, "the _shape tensor must be I64 with one value per dimension of the "
                            "packed weight");
    w->rank = c->rank;
    for (int k = 0; k < c->rank; k++) {
        int64_t v = 0;
        memcpy(&v, (const unsigned char *)sh->data + 8 * k, 8);
        bool last = k + 1 == c->rank;
        if (v <= 0 || (!last && v != c->shape[k]) ||
            (last && (uint64_t)c->shape[k] != words_for((size_t)v)))
            return bad(w->name, "the _shape tensor does not match the packed weight's shape");
        w->shape[k] = v;
    }
    return MQ_OK;
}

static mq_status unpack_codes(const mq_tensor *c, mq_qlayer *l)
{
    uint64_t numel = 1;
    for (int k = 0; k < l->w.rank; k++)
        numel *= (uint64_t)l->w.shape[k];
    size_t inner = (size_t)l->w.shape[l->w.rank - 1], stride = words_for(inner) * CODES_PER_WORD;
    int8_t *q = malloc(numel ? (size_t)numel : 1);
    if (!q) return mq_set_error(MQ_STATUS_E_NOMEM, "layer '%s': out of memory", l->w.name);
    const unsigned char *src = c->data;
    for (uint64_t r = 0; r < numel / inner; r++)
        for (size_t i = 0; i < inner; i++)
            q[r * inner + i] = (int8_t)(src[r * stride + i] ^ PACK_OFFSET8);
    l->own_codes = q;
    l->w.data = q;
    l->w.nbytes = (size_t)numel;
    return MQ_OK;
}

static mq_status read_zp(const mq_model *m, const char *base, size_t n, bool packed, mq_qlayer *l)
{
    const mq_tensor *z = find_with(m, base, n, MQ_ZP_SUFFIX);
    if (!z) return MQ_OK;
    if (packed && z->dtype == MQ_DTYPE_I32) {
        if (z->nbytes != words_for(l->n_scale) * CODES_PER_WORD)
            return bad(l->w.name, "the packed zero point must hold one value per scale");
        int8_t *zp = malloc(l->n_scale);
        if (!zp) return mq_set_error(MQ_STATUS_E_NOMEM, "layer '%s': out of memory", l->w.name);
        for (size_t i = 0; i < l->n_scale; i++)
            zp[i] = (int8_t)(((const unsigned char *)z->data)[i] ^ PACK_OFFSET8);
        l->own_zp = zp;
        l->zp = zp;
        return MQ_OK;
    }
    if (z->dtype != MQ_DTYPE_I8 || z->nbytes != l->n_scale)
        return bad(l->w.name, "the zero point must be I8 with one value per scale");
    l->zp = z->data;
    return MQ_OK;
}

mq_status mq_qlayer_open(const mq_model *m, const mq_tensor *t, mq_qlayer *l)
{
    size_t n = packed_base(m, t);
    bool packed = n > 0;
    mq_status st;
    memset(l, 0, sizeof *l);
    if (!packed) n = strlen(t->name);
    if (!(l->own_name = strndup(t->name, n)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "layer '%s': out of memory", t->name);
    l->w = *t;
    l->w.name = l->own_name;
    l->w.dtype = MQ_DTYPE_I8;
    if (packed &&
        ((st = read_shape(t, find_with(m, t->name, n, MQ_SHAPE_SUFFIX), &l->w)) != MQ_OK ||
         (st = unpack_codes(t, l)) != MQ_OK))
        goto fail;
    l->scale = find_with(m, t->name, n, MQ_SCALE_SUFFIX);
    if (!packed) {
        /* int-quantized: the shared checks of a scale and I8 zero point. */
        if ((st = mq_qparams_check(NULL, t, l->scale, find_with(m, t->name, n, MQ_ZP_SUFFIX),
                                   &l->n_scale)) != MQ_OK ||
            (st = read_zp(m, t->name, n, false, l)) != MQ_OK)
            goto fail;
        return MQ_OK;
    }
    st = MQ_STATUS_E_FORMAT;
    uint64_t ns = 1;
    for (int k = 0; k < l->scale->rank; k++)
        ns *= (uint64_t)l->scale->shape[k];
    size_t out = l->w.rank >= 1 ? (size_t)l->w.shape[0] : 1;
    l->n_scale = (size_t)ns;
    if (!mq_dtype_is_quantizable(l->scale->dtype) || (ns != out && ns != 1)) {
        st = bad(l->w.name, "the scale must be F32/F16/BF16 with one value per output channel "
                            "or one in all");
        goto fail;
    }
    for (size_t i = 0; i < l->n_scale; i++) {
        float s = mq_load_f32(l->scale->data, l->scale->dtype, i);
        if (!(s > 0.0f) || isinf(s)) {
            st = mq_set_error(MQ_STATUS_E_FORMAT,
                              "layer '%s': scale %zu is %g; a scale must be finite and positive",
                              l->w.name, i, (double)s);
            goto fail;
        }
    }
    if ((st = read_zp(m, t->name, n, packed, l)) != MQ_OK) goto fail;
    return MQ_OK;
fail:
    mq_qlayer_free(l);
    return st;
}

void mq_qlayer_free(mq_qlayer *l)
{
    if (!l) return;
    free(l->own_codes);
    free(l->own_zp);
    free(l->own_name);
    memset(l, 0, sizeof *l);
}

mq_status mq_check_not_quantized(const mq_model *m)
{
    for (size_t i = 0; i < m->count; i++)
        if (mq_qlayer_is_codes(m, &m->tensors[i]))
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "tensor '%s' is already quantized (it has a scale beside it); "
                                "start from the float model",
                                m->tensors[i].name);
    return MQ_OK;
}
