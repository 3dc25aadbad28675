/* The output plan of a quantized weight and its packing (see layout.h). */
#include "layout.h"

#include "error.h"
#include "foreign.h"
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

int mq_output_metadata(const mq_scheme *s, const char *kv[MQ_OUTPUT_META][2])
{
    int n = 0;
    kv[n][0] = "quantized_by";
    kv[n++][1] = "monoquant " MQ_VERSION;
    kv[n][0] = "quantization_scheme";
    kv[n++][1] = s->label;
    if (mq_scheme_quantizes(s)) {
        kv[n][0] = "quantization_format";
        kv[n++][1] = mq_qformat_name(s->format);
    }
    return n;
}

/* Codes per int32 word of a packed tensor. */
static size_t per_word(mq_qkind k)
{
    return k == MQ_QK_INT4 ? 8 : 4;
}

static size_t ceil_div(size_t a, size_t b)
{
    return a / b + (a % b != 0);
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

mq_status mq_qlayout_init(mq_qlayout *l, const mq_tensor *t, const mq_scheme *s)
{
    uint64_t numel = 1;
    bool per_channel = s->gran != MQ_GRAN_TENSOR;
    memset(l, 0, sizeof *l);
    for (int k = 0; k < t->rank; k++)
        numel *= (uint64_t)t->shape[k];
    l->gscale = 1.0f;
    l->format = s->format;
    l->kind = s->qkind;
    l->symmetric = s->symmetric;
    l->out_rows = (size_t)t->shape[0];
    l->inner = (size_t)t->shape[t->rank - 1];
    /* The planner keeps groups and blocks to 2-D weights they divide. */
    l->group = s->gran == MQ_GRAN_GROUP && t->rank == 2 ? s->group : 0;
    l->block = s->gran == MQ_GRAN_BLOCK && t->rank == 2 ? s->block : 0;
    if (l->block) {
        l->rows = l->out_rows;
        l->cols = l->inner;
        l->scale_cols = ceil_div(l->inner, l->block);
    } else if (l->group) {
        l->cols = l->group;
        l->rows = (size_t)(numel / l->cols);
        l->scale_cols = l->inner / l->group;
    } else {
        l->rows = per_channel ? l->out_rows : 1;
        l->cols = (size_t)(numel / l->rows);
        l->scale_cols = 1;
    }
    bool packed = s->codes_per_word != 0;
    /* MXFP4, NVFP4: two e2m1 codes a byte (uint8 weight_packed), no shape tensor. */
    bool fp4 = mq_qkind_is_fp4(l->kind);
    size_t pw = packed ? s->codes_per_word : per_word(l->kind);
    l->inner_bytes = packed ? ceil_div(l->inner, pw) * 4 : fp4 ? ceil_div(l->inner, 2) : l->inner;

    int64_t sshape[2] = {(int64_t)l->out_rows, (int64_t)l->scale_cols};
    int64_t zshape[2] = {(int64_t)ceil_div(l->out_rows, pw), (int64_t)l->scale_cols};
    int64_t cshape[MQ_MAX_RANK], rshape[1] = {t->rank};
    int srank = per_channel ? 2 : 1;
    mq_status st;
    if (l->block) sshape[0] = (int64_t)ceil_div(l->out_rows, l->block);
    if (!per_channel) sshape[0] = 1;
    memcpy(cshape, t->shape, sizeof cshape);
    if (packed) cshape[t->rank - 1] = (int64_t)ceil_div(l->inner, pw);
    if (fp4) cshape[t->rank - 1] = (int64_t)l->inner_bytes;
    mq_dtype cdt = packed ? MQ_DTYPE_I32 : s->code_dtype;
    st = set_out(&l->out[MQ_QOUT_CODES], t->name, packed || fp4 ? MQ_PACKED_SUFFIX : "", cdt,
                 t->rank, cshape);
    if (st == MQ_OK)
        st = set_out(&l->out[MQ_QOUT_SCALE], t->name, MQ_SCALE_SUFFIX,
                     mq_scheme_scale_dtype(s, t->dtype), srank, sshape);
    if (st == MQ_OK && !l->symmetric) {
        /* Per tensor the zero point stays one I8 (compressed-tensors packs it
         * for channel and group strategies only). */
        bool pack_zp = packed && per_channel;
        st = set_out(&l->out[MQ_QOUT_ZP], t->name, MQ_ZP_SUFFIX,
                     pack_zp ? MQ_DTYPE_I32 : MQ_DTYPE_I8, srank, pack_zp ? zshape : sshape);
    }
    if (st == MQ_OK && packed)
        st = set_out(&l->out[MQ_QOUT_SHAPE], t->name, MQ_SHAPE_SUFFIX, MQ_DTYPE_I64, 1, rshape);
    if (st == MQ_OK && l->kind == MQ_QK_NVFP4) {
        int64_t one[1] = {1};
        st = set_out(&l->out[MQ_QOUT_GSCALE], t->name, MQ_GSCALE_SUFFIX, MQ_DTYPE_F32, 1, one);
    }
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

static const char *const companions[] = {MQ_SCALE_SUFFIX, MQ_ZP_SUFFIX,    MQ_PACKED_SUFFIX,
                                         MQ_SHAPE_SUFFIX, "_global_scale", "_g_idx"};

size_t mq_companion_count(void)
{
    return sizeof companions / sizeof *companions;
}

const char *mq_companion_suffix(size_t k)
{
    return k < mq_companion_count() ? companions[k] : NULL;
}

char *mq_name_with(const char *base, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    char *s = malloc(n + k + 1);
    if (!s) return NULL;
    memcpy(s, base, n);
    memcpy(s + n, suffix, k + 1);
    return s;
}

mq_status mq_qlayout_check_names(const mq_qlayout *l, const mq_model *in, const char *weight)
{
    for (size_t k = 0; k < mq_companion_count(); k++) {
        char *n = mq_name_with(weight, strlen(weight), companions[k]);
        if (!n) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", weight);
        bool writes = false;
        for (int o = 0; o < MQ_QOUT_COUNT; o++)
            writes = writes || (l->out[o].name && strcmp(l->out[o].name, n) == 0);
        mq_status st =
            mq_model_index(in, n) < 0
                ? MQ_OK
                : mq_set_error(MQ_STATUS_E_DATA,
                               "tensor '%s': the input already has '%s', %s (already quantized, "
                               "or a stray tensor?); remove it or leave the weight out",
                               weight, n,
                               writes ? "a name quantizing it would write"
                                      : "which loaders would take as part of the quantized layer");
        free(n);
        if (st != MQ_OK) return st;
    }
    return MQ_OK;
}

mq_dtype mq_qlayout_code_dtype(const mq_qlayout *l)
{
    return l->kind == MQ_QK_FP8 || l->kind == MQ_QK_MXFP8 ? MQ_DTYPE_F8_E4M3
           : l->kind == MQ_QK_INT4                        ? MQ_DTYPE_I32
           : mq_qkind_is_fp4(l->kind)                     ? MQ_DTYPE_U8
                                                          : MQ_DTYPE_I8;
}

uint64_t mq_qlayout_code_pos(const mq_qlayout *l, uint64_t e)
{
    if (l->kind == MQ_QK_INT4 || mq_qkind_is_fp4(l->kind))
        return e / l->inner * l->inner_bytes + e % l->inner / 2;
    if (l->inner_bytes == l->inner) return e;
    return e / l->inner * l->inner_bytes + e % l->inner;
}

size_t mq_qlayout_code_span(const mq_qlayout *l, uint64_t first, size_t count)
{
    uint64_t last = first + count - 1, end;
    if ((last + 1) % l->inner == 0)
        end = (last / l->inner + 1) * l->inner_bytes;
    else
        end = mq_qlayout_code_pos(l, last) + 1;
    return (size_t)(end - mq_qlayout_code_pos(l, first));
}

size_t mq_qlayout_rows_bytes(const mq_qlayout *l, size_t groups)
{
    if (l->cols >= l->inner) return groups * (l->cols / l->inner) * l->inner_bytes;
    return groups * mq_qkind_row_bytes(l->kind, l->cols);
}

uint8_t mq_qlayout_code_xor(const mq_qlayout *l)
{
    return l->format == MQ_FORMAT_PACK_QUANTIZED && l->kind == MQ_QK_INT8 ? PACK_OFFSET8 : 0;
}

mq_qdesc mq_qlayout_desc(const mq_qlayout *l)
{
    return (mq_qdesc){.kind = l->kind,
                      .symmetric = l->symmetric || l->kind >= MQ_QK_FP8,
                      .code_xor = mq_qlayout_code_xor(l),
                      .block = l->block,
                      .gscale = l->gscale};
}

/* int4 and e2m1: codes (one per byte) to nibbles in place, front to back
 * (the byte for codes 2j and 2j + 1 lands at or before code 2j, both already
 * read), then each row end's padding. int4 nibbles are code + 8, e2m1's the
 * code itself. */
static size_t pack_codes4(const mq_qlayout *l, unsigned char *b, uint64_t first, size_t count)
{
    const unsigned off = l->kind == MQ_QK_INT4 ? 8u : 0u;
    uint64_t base = mq_qlayout_code_pos(l, first);
    size_t k = 0;
    while (k < count) {
        uint64_t e = first + k;
        size_t in_row = (size_t)(l->inner - e % l->inner),
               n = count - k < in_row ? count - k : in_row;
        size_t o = (size_t)(mq_qlayout_code_pos(l, e) - base);
        for (size_t j = 0; j < n; j += 2) {
            unsigned lo = ((unsigned)b[k + j] + off) & 15u;
            unsigned hi = j + 1 < n ? ((unsigned)b[k + j + 1] + off) & 15u : 0u;
            b[o + j / 2] = (unsigned char)(lo | hi << 4);
        }
        if (n == in_row) {
            size_t used = (n + 1) / 2, row_end = o + (size_t)(l->inner_bytes - (e % l->inner) / 2);
            memset(b + o + used, 0, row_end - (o + used));
        }
        k += n;
    }
    return mq_qlayout_code_span(l, first, count);
}

size_t mq_qlayout_pack_codes(const mq_qlayout *l, void *buf, uint64_t first, size_t count)
{
    unsigned char *b = buf;
    if (count == 0) return 0;
    if (l->kind == MQ_QK_INT4 || mq_qkind_is_fp4(l->kind)) return pack_codes4(l, b, first, count);
    if (l->inner_bytes == l->inner) return count;
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

void mq_qlayout_store_zp(const mq_qlayout *l, const int8_t *zp, unsigned char *dst)
{
    const mq_qout *z = &l->out[MQ_QOUT_ZP];
    if (!z->name) return;
    if (z->dtype != MQ_DTYPE_I32) {
        memcpy(dst, zp, (size_t)z->nbytes);
        return;
    }
    /* pack_to_int32 along dimension 0: the zero point of row r, group j in
     * word (r / per_word) * groups + j, at position r % per_word. */
    size_t pw = per_word(l->kind), bits = 32 / pw, g = l->scale_cols;
    memset(dst, 0, (size_t)z->nbytes);
    for (size_t i = 0; i < l->rows; i++) {
        size_t r = i / g, j = i % g, w = r / pw * g + j, at = (r % pw) * bits;
        unsigned v = ((unsigned)(zp[i] + (1 << (bits - 1)))) & ((1u << bits) - 1u);
        dst[w * 4 + at / 8] |= (unsigned char)(v << (at % 8));
    }
}

void mq_qlayout_gscale_bytes(const mq_qlayout *l, unsigned char *dst)
{
    uint32_t b = mq_f32_bits(l->gscale);
    for (int k = 0; k < 4; k++)
        dst[k] = (unsigned char)(b >> (8 * k));
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

mq_status mq_nonfinite_error(const mq_qlayout *l, const char *tensor, size_t bad)
{
    if (l->block)
        return mq_set_error(MQ_STATUS_E_DATA, "tensor '%s': block %zu,%zu holds NaN or Inf", tensor,
                            bad / l->scale_cols, bad % l->scale_cols);
    if (l->group)
        return mq_set_error(MQ_STATUS_E_DATA,
                            "tensor '%s': channel %zu (group %zu) holds NaN or Inf", tensor,
                            bad / l->scale_cols, bad % l->scale_cols);
    if (l->rows > 1)
        return mq_set_error(MQ_STATUS_E_DATA, "tensor '%s': channel %zu holds NaN or Inf", tensor,
                            bad);
    return mq_set_error(MQ_STATUS_E_DATA, "tensor '%s': holds NaN or Inf", tensor);
}

/* ---- reading a quantized layer back ---- */

static mq_status bad(const char *name, const char *what)
{
    return mq_set_error(MQ_STATUS_E_FORMAT, "layer '%s': %s", name, what);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The tensor base + suffix, or NULL (also when a name's few bytes cannot be
 * allocated, after the model's own copy of a longer name was). */
static const mq_tensor *find_with(const mq_model *m, const char *base, size_t n, const char *suffix)
{
    char *name = mq_name_with(base, n, suffix);
    const mq_tensor *t = name ? mq_model_find(m, name) : NULL;
    free(name);
    return t;
}

/* For W_packed: the length of W, else 0. I32 words of int codes come with
 * W_shape; U8 bytes of two e2m1 codes with a U8 (e8m0) scale (MXFP4), or
 * with an F8_E4M3 scale and W_global_scale (NVFP4). */
static size_t packed_base(const mq_model *m, const mq_tensor *t)
{
    if ((t->dtype != MQ_DTYPE_I32 && t->dtype != MQ_DTYPE_U8) ||
        !ends_with(t->name, MQ_PACKED_SUFFIX))
        return 0;
    size_t n = strlen(t->name) - strlen(MQ_PACKED_SUFFIX);
    const mq_tensor *s = find_with(m, t->name, n, MQ_SCALE_SUFFIX);
    if (t->dtype == MQ_DTYPE_U8)
        return s && (s->dtype == MQ_DTYPE_U8 ||
                     (s->dtype == MQ_DTYPE_F8_E4M3 && find_with(m, t->name, n, MQ_GSCALE_SUFFIX)))
                   ? n
                   : 0;
    return find_with(m, t->name, n, MQ_SHAPE_SUFFIX) && s ? n : 0;
}

/* MXFP4's and NVFP4's weight_packed: two e2m1 codes a byte (even in the low
 * nibble), one code a byte into own_codes; the weight's last dimension twice
 * the bytes. */
static mq_status unpack_fp4(const mq_tensor *c, mq_qlayer *l)
{
    if (c->rank < 1) return bad(l->w.name, "the packed weight must have at least one dimension");
    l->kind = MQ_QK_MXFP4;
    l->w.dtype = MQ_DTYPE_U8;
    l->w.shape[c->rank - 1] = c->shape[c->rank - 1] * 2;
    size_t n = c->nbytes * 2;
    uint8_t *q = malloc(n ? n : 1);
    if (!q) return mq_set_error(MQ_STATUS_E_NOMEM, "layer '%s': out of memory", l->w.name);
    const uint8_t *src = c->data;
    for (size_t i = 0; i < n; i++)
        q[i] = (uint8_t)((src[i / 2] >> (4 * (i & 1))) & 15u);
    l->own_codes = q;
    l->w.data = q;
    l->w.nbytes = n;
    return MQ_OK;
}

bool mq_qlayer_is_codes(const mq_model *m, const mq_tensor *t)
{
    if (t->dtype == MQ_DTYPE_I8 || t->dtype == MQ_DTYPE_F8_E4M3)
        return find_with(m, t->name, strlen(t->name), MQ_SCALE_SUFFIX);
    return packed_base(m, t) > 0;
}

bool mq_qlayer_is_param(const mq_model *m, const mq_tensor *t)
{
    static const char *const suffixes[] = {MQ_SCALE_SUFFIX, MQ_ZP_SUFFIX, MQ_SHAPE_SUFFIX,
                                           MQ_GSCALE_SUFFIX};
    for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
        if (!ends_with(t->name, suffixes[k])) continue;
        size_t n = strlen(t->name) - strlen(suffixes[k]);
        const mq_tensor *w = find_with(m, t->name, n, "");
        const mq_tensor *p = find_with(m, t->name, n, MQ_PACKED_SUFFIX);
        if ((w && mq_qlayer_is_codes(m, w)) || (p && mq_qlayer_is_codes(m, p))) return true;
    }
    return false;
}

/* The bits of a packed layer: the file's quantization_scheme when it says
 * (ours: "int4-..."), else what the packed width allows (8 unless only 4 fits). */
static size_t packed_bits(const mq_model *m, const mq_tensor *c, int64_t inner)
{
    const char *scheme = NULL;
    for (size_t i = 0; i < mq_model_metadata_count(m); i++)
        if (strcmp(mq_model_metadata_key(m, i), "quantization_scheme") == 0)
            scheme = mq_model_metadata_value(m, i);
    if (scheme && strncmp(scheme, "int4", 4) == 0) return 4;
    if (scheme && strncmp(scheme, "int8", 4) == 0) return 8;
    int64_t words = c->shape[c->rank - 1];
    if (words == (int64_t)ceil_div((size_t)inner, 4)) return 8;
    return words == (int64_t)ceil_div((size_t)inner, 8) ? 4 : 0;
}

/* The weight's shape from W_shape, checked against the packed codes. */
static mq_status read_shape(const mq_model *m, const mq_tensor *c, const mq_tensor *sh,
                            mq_qlayer *l)
{
    mq_tensor *w = &l->w;
    if (c->rank < 1) return bad(w->name, "the packed weight must have at least one dimension");
    if (sh->dtype != MQ_DTYPE_I64 || sh->rank != 1 || sh->shape[0] != c->rank)
        return bad(w->name, "the _shape tensor must be I64 with one value per dimension of the "
                            "packed weight");
    w->rank = c->rank;
    for (int k = 0; k < c->rank; k++) {
        int64_t v = 0;
        memcpy(&v, (const unsigned char *)sh->data + 8 * k, 8);
        if (v <= 0 || (k + 1 < c->rank && v != c->shape[k]))
            return bad(w->name, "the _shape tensor does not match the packed weight's shape");
        w->shape[k] = v;
    }
    size_t bits = packed_bits(m, c, w->shape[w->rank - 1]);
    if (!bits ||
        c->shape[c->rank - 1] != (int64_t)ceil_div((size_t)w->shape[w->rank - 1], 32 / bits))
        return bad(w->name, "the _shape tensor does not match the packed weight's width (8 or 4 "
                            "bits per code)");
    l->kind = bits == 4 ? MQ_QK_INT4 : MQ_QK_INT8;
    return MQ_OK;
}

static mq_status unpack_codes(const mq_tensor *c, mq_qlayer *l)
{
    uint64_t numel = 1;
    for (int k = 0; k < l->w.rank; k++)
        numel *= (uint64_t)l->w.shape[k];
    size_t inner = (size_t)l->w.shape[l->w.rank - 1];
    size_t stride = (size_t)c->shape[c->rank - 1] * 4;
    int8_t *q = malloc(numel ? (size_t)numel : 1);
    if (!q) return mq_set_error(MQ_STATUS_E_NOMEM, "layer '%s': out of memory", l->w.name);
    const unsigned char *src = c->data;
    for (uint64_t r = 0; r < numel / inner; r++)
        for (size_t i = 0; i < inner; i++)
            q[r * inner + i] = l->kind == MQ_QK_INT4 ? mq_unpack4(src + r * stride, i)
                                                     : (int8_t)(src[r * stride + i] ^ PACK_OFFSET8);
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
        size_t pw = per_word(l->kind), bits = 32 / pw, g = l->scale_cols;
        size_t rows = l->n_scale / g;
        if (z->nbytes != ceil_div(rows, pw) * g * 4)
            return bad(l->w.name, "the packed zero point must hold one value per scale");
        int8_t *zp = malloc(l->n_scale);
        if (!zp) return mq_set_error(MQ_STATUS_E_NOMEM, "layer '%s': out of memory", l->w.name);
        const unsigned char *d = z->data;
        for (size_t i = 0; i < l->n_scale; i++) {
            size_t r = i / g, j = i % g, w = r / pw * g + j, at = (r % pw) * bits;
            unsigned v = (d[w * 4 + at / 8] >> (at % 8)) & ((1u << bits) - 1u);
            zp[i] = (int8_t)((int)v - (1 << (bits - 1)));
        }
        l->own_zp = zp;
        l->zp = zp;
        return MQ_OK;
    }
    if (z->dtype != MQ_DTYPE_I8 || z->nbytes != l->n_scale)
        return bad(l->w.name, "the zero point must be I8 with one value per scale");
    l->zp = z->data;
    return MQ_OK;
}

/* The scale's layout against the weight: one in all, one per output row, per
 * group of the last dimension, or (FP8) per square block. */
static mq_status read_scale_layout(mq_qlayer *l)
{
    const mq_tensor *s = l->scale;
    uint64_t ns = 1;
    for (int k = 0; k < s->rank; k++)
        ns *= (uint64_t)s->shape[k];
    size_t out = (size_t)l->w.shape[0], inner = (size_t)l->w.shape[l->w.rank - 1];
    l->n_scale = (size_t)ns;
    l->scale_cols = 1;
    bool byte_ok = l->kind == MQ_QK_NVFP4 ? s->dtype == MQ_DTYPE_F8_E4M3 : s->dtype == MQ_DTYPE_U8;
    if (mq_qkind_byte_scale(l->kind) != byte_ok ||
        (!mq_qkind_byte_scale(l->kind) && !mq_dtype_is_quantizable(s->dtype)))
        return bad(l->w.name, "the scale must be F32, F16 or BF16 (U8 e8m0 exponents for the MX "
                              "formats: e4m3 weight or uint8 weight_packed; F8_E4M3 for NVFP4)");
    if (ns == 0 || out == 0 || inner == 0)
        return bad(l->w.name, "a quantized weight and its scale must not be empty");
    if (ns == 1 || (ns == out && (s->rank == 1 || s->shape[s->rank - 1] == 1))) return MQ_OK;
    if (l->w.rank == 2 && s->rank == 2 && (size_t)s->shape[0] == out && s->shape[1] > 1 &&
        inner % (size_t)s->shape[1] == 0) {
        l->scale_cols = (size_t)s->shape[1];
        l->group = inner / l->scale_cols;
        return MQ_OK;
    }
    if (l->kind == MQ_QK_FP8 && l->w.rank == 2 && s->rank == 2) {
        /* compressed-tensors' 128x128 blocks first; another edge only when
         * the shapes leave no doubt (both dimensions whole blocks). */
        size_t b = 128;
        if (ceil_div(out, b) != (size_t)s->shape[0] || ceil_div(inner, b) != (size_t)s->shape[1]) {
            b = inner / (size_t)s->shape[1];
            if (!b || inner % b || out % b || out / b != (size_t)s->shape[0]) b = 0;
        }
        if (b > 0 && ceil_div(out, b) == (size_t)s->shape[0] &&
            ceil_div(inner, b) == (size_t)s->shape[1]) {
            l->scale_cols = (size_t)s->shape[1];
            l->block = b;
            return MQ_OK;
        }
    }
    return bad(l->w.name, "the scale must hold one value per output channel, per group of the "
                          "input dimension, per block, or one in all");
}

/* The descriptor whose group scales are the layer's. */
static mq_qdesc layer_desc(const mq_qlayer *l)
{
    mq_qdesc d = mq_qd(l->kind, true);
    d.gscale = l->gscale;
    return d;
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
    l->w.dtype = t->dtype == MQ_DTYPE_F8_E4M3 ? MQ_DTYPE_F8_E4M3 : MQ_DTYPE_I8;
    l->kind = t->dtype == MQ_DTYPE_F8_E4M3 ? MQ_QK_FP8 : MQ_QK_INT8;
    if (packed && t->dtype == MQ_DTYPE_U8) {
        if ((st = unpack_fp4(t, l)) != MQ_OK) goto fail;
    } else if (packed &&
               ((st = read_shape(m, t, find_with(m, t->name, n, MQ_SHAPE_SUFFIX), l)) != MQ_OK ||
                (st = unpack_codes(t, l)) != MQ_OK)) {
        goto fail;
    }
    l->scale = find_with(m, t->name, n, MQ_SCALE_SUFFIX);
    /* e4m3 codes under e8m0 (U8) scales: MXFP8. */
    if (l->kind == MQ_QK_FP8 && l->scale && l->scale->dtype == MQ_DTYPE_U8) l->kind = MQ_QK_MXFP8;
    /* e2m1 codes under e4m3 scales: NVFP4, with its F32 global scale. */
    l->gscale = 1.0f;
    if (l->kind == MQ_QK_MXFP4 && l->scale && l->scale->dtype == MQ_DTYPE_F8_E4M3) {
        const mq_tensor *g = find_with(m, t->name, n, MQ_GSCALE_SUFFIX);
        l->kind = MQ_QK_NVFP4;
        if (!g || g->dtype != MQ_DTYPE_F32 || g->nbytes != 4) {
            st = bad(l->w.name, "an NVFP4 weight needs one F32 _global_scale");
            goto fail;
        }
        memcpy(&l->gscale, g->data, 4);
        if (!(l->gscale > 0.0f) || isinf(l->gscale)) {
            st = mq_set_error(MQ_STATUS_E_FORMAT,
                              "layer '%s': the global scale is %g; it must be finite and positive",
                              l->w.name, (double)l->gscale);
            goto fail;
        }
    }
    if (!packed && l->kind == MQ_QK_INT8) {
        /* int-quantized: the shared checks of a scale and I8 zero point. */
        if ((st = mq_qparams_check(NULL, t, l->scale, find_with(m, t->name, n, MQ_ZP_SUFFIX),
                                   &l->n_scale)) != MQ_OK ||
            (st = read_zp(m, t->name, n, false, l)) != MQ_OK)
            goto fail;
        return MQ_OK;
    }
    if (l->w.rank < 1) {
        st = bad(l->w.name, "a quantized weight has at least one dimension");
        goto fail;
    }
    if ((st = read_scale_layout(l)) != MQ_OK) goto fail;
    for (size_t i = 0; i < l->n_scale; i++) {
        float s = mq_load_group_scale(layer_desc(l), l->scale->data, l->scale->dtype, i);
        if (!(s > 0.0f) || isinf(s)) {
            st = mq_set_error(MQ_STATUS_E_FORMAT,
                              "layer '%s': scale %zu is %g; a scale must be finite and positive",
                              l->w.name, i, (double)s);
            goto fail;
        }
    }
    if (l->kind >= MQ_QK_FP8 && find_with(m, t->name, n, MQ_ZP_SUFFIX)) {
        st = bad(l->w.name, "an FP8 or MX weight has no zero point");
        goto fail;
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

mq_dtype mq_qlayer_value_dtype(const mq_qlayer *l)
{
    return mq_qkind_byte_scale(l->kind) ? MQ_DTYPE_BF16 : l->scale->dtype;
}

bool mq_qlayer_is_simple(const mq_qlayer *l)
{
    return l->kind == MQ_QK_INT8 && !l->group && !l->block;
}

void mq_qlayer_row_f32(const mq_qlayer *l, size_t r, float *dst)
{
    uint64_t numel = 1;
    for (int k = 0; k < l->w.rank; k++)
        numel *= (uint64_t)l->w.shape[k];
    size_t out = (size_t)l->w.shape[0], cols = (size_t)(numel / out);
    const uint8_t *q = (const uint8_t *)l->w.data + r * cols;
    /* The columns that share a scale (a group, a block, or the whole row)
     * one run at a time: each scale and zero point is loaded once. */
    size_t run = l->n_scale == 1 ? cols : l->block ? l->block : l->group ? l->group : cols;
    for (size_t c0 = 0; c0 < cols; c0 += run) {
        size_t c1 = cols - c0 < run ? cols : c0 + run;
        size_t k = l->n_scale == 1 ? 0
                   : l->block      ? r / l->block * l->scale_cols + c0 / l->block
                   : l->group      ? r * l->scale_cols + c0 / l->group
                                   : r;
        float s = mq_load_group_scale(layer_desc(l), l->scale->data, l->scale->dtype, k);
        if (l->kind == MQ_QK_FP8 || l->kind == MQ_QK_MXFP8) {
            for (size_t c = c0; c < c1; c++)
                dst[c] = mq_e4m3_to_f32(q[c]) * s;
        } else if (mq_qkind_is_fp4(l->kind)) {
            for (size_t c = c0; c < c1; c++)
                dst[c] = mq_e2m1_to_f32(q[c]) * s;
        } else {
            float z = l->zp ? (float)l->zp[k] : 0.0f;
            for (size_t c = c0; c < c1; c++)
                dst[c] = ((float)(int8_t)q[c] - z) * s;
        }
    }
}

mq_status mq_check_not_quantized(const mq_model *m, bool fp8_blocks)
{
    mq_status st = mq_check_no_foreign(m, fp8_blocks);
    if (st != MQ_OK) return st;
    for (size_t i = 0; i < m->count; i++)
        if (mq_qlayer_is_codes(m, &m->tensors[i]))
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "tensor '%s' is already quantized (it has a scale beside it); "
                                "start from the float model",
                                m->tensors[i].name);
    return MQ_OK;
}
