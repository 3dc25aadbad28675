/* gpt-oss MXFP4 and compressed-tensors sources in the stream (srcread.h).
 * The values come out of the references the rest of the library checks
 * against: numerics/srcref.c for MXFP4, and for compressed-tensors the very
 * layer reader that `dequantize` uses (quant/layout.c, mq_qlayer_row_f32),
 * so a re-quantized checkpoint starts from what compressed-tensors'
 * decompressors give. */
#include "srcread.h"

#include "dtype.h"
#include "error.h"
#include "layout.h"
#include "model.h"
#include "reference.h"
#include "srcref.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCKS_SUFFIX "_blocks"
#define SCALES_SUFFIX "_scales"

/* A compressed-tensors layer open while its weight runs (its tensors read
 * into a model of their own, not used in place from the mapping), and the
 * last row of it dequantized in fp32. */
struct mq_srcrows {
    mq_model *m;
    mq_qlayer l;
    float *row;
    size_t cols;
    uint64_t row_at; /* the row in `row`, or UINT64_MAX */
    /* NVFP4: compressed-tensors' decompressor rounds each value to BF16
     * whatever the checkpoint's dtype (it unpacks the e2m1 codes to BF16 and
     * casts the fp32 product to their dtype), so the float model the source
     * stands for holds those BF16 values, widened for F32 (F16: rounded
     * again). */
    bool via_bf16;
};

static uint64_t offset_of(const mq_stream *s, size_t i)
{
    const mq_tensor *t = &s->m->tensors[i];
    return t->nbytes ? (uint64_t)((const unsigned char *)t->data -
                                  (const unsigned char *)mq_blob_data(s->m->blobs[i]))
                     : 0;
}

static mq_status no_memory(const char *name)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
}

mq_status mq_src_read(const mq_stream *s, unsigned char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t got = pread(s->fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return mq_set_error(MQ_STATUS_E_IO, "reading '%s': %s", s->in_path,
                                got < 0 ? strerror(errno) : "the file ends early");
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return MQ_OK;
}

static mq_fp8src *new_source(const mq_stream *s, size_t i, mq_src_format kind, const char *name,
                             size_t name_len)
{
    mq_fp8src *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    if (!(f->name = strndup(name, name_len))) {
        free(f);
        return NULL;
    }
    f->other = kind;
    f->codes = &s->m->tensors[i];
    f->codes_off = offset_of(s, i);
    f->in_bytes = s->m->tensors[i].nbytes;
    f->staged = -1;
    f->vt = s->m->tensors[i];
    f->vt.name = f->name;
    f->vt.dtype = s->set->src_dtype;
    return f;
}

/* ---- gpt-oss MXFP4 ---- */

/* NAME_blocks U8 [experts, out, in / 32, 16] with NAME_scales U8
 * [experts, out, in / 32]: the expert weight NAME [experts, in, out]. */
static mq_status plan_mxfp4(mq_stream *s, size_t i)
{
    const mq_tensor *t = &s->m->tensors[i];
    size_t n = strlen(t->name), k = strlen(BLOCKS_SUFFIX);
    if (n <= k || strcmp(t->name + n - k, BLOCKS_SUFFIX) != 0 || t->dtype != MQ_DTYPE_U8)
        return MQ_OK;
    char *sname = malloc(n - k + sizeof SCALES_SUFFIX);
    if (!sname) return no_memory(t->name);
    memcpy(sname, t->name, n - k);
    memcpy(sname + n - k, SCALES_SUFFIX, sizeof SCALES_SUFFIX);
    long si = mq_model_index(s->m, sname);
    free(sname);
    const mq_tensor *sc = si >= 0 ? &s->m->tensors[si] : NULL;
    if (!sc)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "tensor '%s': MXFP4 blocks without their '%.*s" SCALES_SUFFIX
                            "' in the same file (a pair is read from one shard)",
                            t->name, (int)(n - k), t->name);
    if (t->rank != 4 || t->shape[3] != 16 || sc->dtype != MQ_DTYPE_U8 || sc->rank != 3 ||
        sc->shape[0] != t->shape[0] || sc->shape[1] != t->shape[1] || sc->shape[2] != t->shape[2])
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "tensor '%s': MXFP4 expert blocks must be U8 [experts, out, in / 32, "
                            "16] with U8 scales '%s' [experts, out, in / 32]",
                            t->name, sc->name);
    mq_fp8src *f = new_source(s, i, MQ_SRC_FORMAT_MXFP4, t->name, n - k);
    if (!f) return no_memory(t->name);
    f->experts = (size_t)t->shape[0];
    f->out = (size_t)t->shape[1];
    f->in = (size_t)t->shape[2] * 32;
    f->vt.rank = 3;
    f->vt.shape[0] = (int64_t)f->experts;
    f->vt.shape[1] = (int64_t)f->in;
    f->vt.shape[2] = (int64_t)f->out;
    f->vt.nbytes = f->experts * f->in * f->out * mq_dtype_size(f->vt.dtype);
    f->scale = sc;
    f->scale_off = offset_of(s, (size_t)si);
    s->tp[i].src = f;
    s->tp[si].kind = MQ_KIND_DROP;
    return MQ_OK;
}

static mq_status mxfp4_values(const mq_stream *s, const mq_tplan *tp, uint64_t e0, size_t n)
{
    mq_fp8src *f = tp->src;
    size_t per = f->in * f->out, bbytes = per / 2, sbytes = per / 32;
    size_t es = mq_dtype_size(f->vt.dtype);
    for (size_t i = 0; i < n;) {
        uint64_t x = (e0 + i) / per, in_x = (e0 + i) % per;
        size_t len = per - in_x < n - i ? (size_t)(per - in_x) : n - i;
        if (f->staged != (long)x) {
            mq_status st = mq_src_read(s, f->scales, bbytes, f->codes_off + x * bbytes);
            if (st == MQ_OK)
                st = mq_src_read(s, f->scales + bbytes, sbytes, f->scale_off + x * sbytes);
            if (st != MQ_OK) return st;
            f->staged = (long)x;
        }
        mq_ref_mxfp4_expert(f->scales, f->scales + bbytes, f->out, f->in, in_x, len, f->vt.dtype,
                            f->vals + i * es);
        i += len;
    }
    return MQ_OK;
}

/* ---- compressed-tensors ---- */

/* The tensors of the layer named by the first n bytes of `base` (its codes,
 * and the scale, zero point, shape and global scale beside them) read with
 * pread into a model of their own: a page of the mapping read in place
 * after another program truncates the input would raise SIGBUS. */
static mq_status read_layer(const mq_stream *s, const char *base, size_t n, mq_model **out)
{
    static const char *const suffixes[] = {"",           MQ_PACKED_SUFFIX, MQ_SCALE_SUFFIX,
                                           MQ_ZP_SUFFIX, MQ_SHAPE_SUFFIX,  MQ_GSCALE_SUFFIX};
    char *name = malloc(n + 16);
    mq_model *m = NULL;
    mq_status st = name ? mq_model_new(&m) : no_memory(base);
    for (size_t k = 0; st == MQ_OK && k < sizeof suffixes / sizeof *suffixes; k++) {
        memcpy(name, base, n);
        strcpy(name + n, suffixes[k]);
        long i = mq_model_index(s->m, name);
        if (i < 0) continue;
        const mq_tensor *t = &s->m->tensors[i];
        mq_blob *b = mq_blob_new_heap(t->nbytes);
        if (!b) {
            st = no_memory(t->name);
            break;
        }
        st = mq_src_read(s, mq_blob_data(b), t->nbytes, offset_of(s, (size_t)i));
        if (st == MQ_OK)
            st = mq_model_append(m, t->name, t->dtype, t->rank, t->shape, mq_blob_data(b),
                                 t->nbytes, b);
        mq_blob_unref(b);
    }
    free(name);
    if (st != MQ_OK) {
        mq_model_free(m);
        return st;
    }
    *out = m;
    return MQ_OK;
}

/* The length of the layer's weight name in the codes' name t (W_packed: W). */
static size_t layer_name_len(const mq_tensor *t)
{
    size_t n = strlen(t->name), k = strlen(MQ_PACKED_SUFFIX);
    if (n > k && !strcmp(t->name + n - k, MQ_PACKED_SUFFIX)) return n - k;
    return n;
}

/* An FP8 layer with F32 or BF16 scales holds the values of an FP8 block
 * source (e4m3(q) * s in fp32, stored in the values' dtype): the stream
 * reads its codes and the back end dequantizes them on the device that
 * quantizes, as FP8 blocks of rows x in (per tensor), 1 x in (per
 * channel), 1 x group or its own block. F16 scales (which the device op
 * does not take) stay on the reader below. */
static bool fp8_blocks(const mq_qlayer *l)
{
    return l->kind == MQ_QK_FP8 && l->w.rank == 2 && l->w.dtype == MQ_DTYPE_F8_E4M3 && !l->zp &&
           (l->scale->dtype == MQ_DTYPE_F32 || l->scale->dtype == MQ_DTYPE_BF16);
}

static void as_fp8_source(const mq_stream *s, mq_fp8src *f, const mq_qlayer *l)
{
    size_t rows = (size_t)l->w.shape[0], cols = (size_t)l->w.shape[1];
    long k = mq_model_index(s->m, l->scale->name);
    f->other = MQ_SRC_FORMAT_NONE;
    f->ct = true;
    f->br = l->block ? l->block : l->n_scale == 1 ? rows : 1;
    f->bc = l->block ? l->block : l->group ? l->group : cols;
    f->scale = &s->m->tensors[k];
    f->scale_off = offset_of(s, (size_t)k);
}

static mq_status plan_ct(mq_stream *s, size_t i)
{
    const mq_tensor *t = &s->m->tensors[i];
    if (mq_qlayer_is_param(s->m, t)) {
        s->tp[i].kind = MQ_KIND_DROP;
        return MQ_OK;
    }
    if (!mq_qlayer_is_codes(s->m, t)) return MQ_OK;
    /* Read and opened once here for its checks and shape (before any
     * output); again while it runs. */
    mq_qlayer l;
    mq_model *lm = NULL;
    mq_status st = read_layer(s, t->name, layer_name_len(t), &lm);
    if (st == MQ_OK) st = mq_qlayer_open(lm, mq_model_find(lm, t->name), &l);
    if (st != MQ_OK) {
        mq_model_free(lm);
        return st;
    }
    mq_fp8src *f = new_source(s, i, MQ_SRC_FORMAT_CT, l.w.name, strlen(l.w.name));
    if (f) {
        uint64_t numel;
        f->vt.rank = l.w.rank;
        memcpy(f->vt.shape, l.w.shape, sizeof f->vt.shape);
        mq_shape_numel(l.w.rank, l.w.shape, &numel);
        f->vt.nbytes = (size_t)numel * mq_dtype_size(f->vt.dtype);
        if (fp8_blocks(&l)) as_fp8_source(s, f, &l);
        s->tp[i].src = f;
    }
    mq_qlayer_free(&l);
    mq_model_free(lm);
    return f ? MQ_OK : no_memory(t->name);
}

/* n fp32 values stored from element i of dst on in dt (F32, BF16 or F16, the
 * two rounded to nearest even), the dtype chosen once. */
static void store_values(unsigned char *dst, mq_dtype dt, size_t i, const float *v, size_t n)
{
    if (dt == MQ_DTYPE_F32) {
        memcpy(dst + i * 4, v, n * 4);
        return;
    }
    uint16_t *h = (uint16_t *)(void *)(dst + i * 2);
    if (dt == MQ_DTYPE_BF16)
        for (size_t k = 0; k < n; k++)
            h[k] = mq_f32_to_bf16(v[k]);
    else
        for (size_t k = 0; k < n; k++)
            h[k] = mq_f32_to_f16(v[k]);
}

static mq_status ct_values(const mq_tplan *tp, uint64_t e0, size_t n)
{
    mq_fp8src *f = tp->src;
    struct mq_srcrows *r = f->rows;
    for (size_t i = 0; i < n;) {
        uint64_t row = (e0 + i) / r->cols;
        size_t c = (size_t)((e0 + i) % r->cols), len = r->cols - c < n - i ? r->cols - c : n - i;
        if (r->row_at != row) {
            mq_qlayer_row_f32(&r->l, (size_t)row, r->row);
            if (r->via_bf16)
                for (size_t k = 0; k < r->cols; k++)
                    r->row[k] = mq_bf16_to_f32(mq_f32_to_bf16(r->row[k]));
            r->row_at = row;
        }
        store_values(f->vals, f->vt.dtype, i, r->row + c, len);
        i += len;
    }
    return MQ_OK;
}

/* ---- the stream's calls ---- */

mq_status mq_src_plan(mq_stream *s)
{
    mq_status st = MQ_OK;
    for (size_t i = 0; i < s->n && st == MQ_OK; i++) {
        if (s->set->src_format == MQ_SRC_FORMAT_MXFP4)
            st = plan_mxfp4(s, i);
        else if (s->set->src_format == MQ_SRC_FORMAT_CT)
            st = plan_ct(s, i);
    }
    return st;
}

mq_status mq_src_begin(const mq_stream *s, mq_tplan *tp)
{
    mq_fp8src *f = tp->src;
    if (!(f->vals = malloc(s->slot_bytes))) return no_memory(f->vt.name);
    if (f->other == MQ_SRC_FORMAT_MXFP4) {
        /* One expert's blocks and scales. */
        f->staged = -1;
        if (!(f->scales = malloc(f->in * f->out / 2 + f->in * f->out / 32)))
            return no_memory(f->vt.name);
        return MQ_OK;
    }
    struct mq_srcrows *r = calloc(1, sizeof *r);
    if (!r) return no_memory(f->vt.name);
    f->rows = r;
    mq_status st = read_layer(s, f->name, strlen(f->name), &r->m);
    if (st == MQ_OK) st = mq_qlayer_open(r->m, mq_model_find(r->m, f->codes->name), &r->l);
    if (st != MQ_OK) return st;
    uint64_t numel;
    mq_shape_numel(r->l.w.rank, r->l.w.shape, &numel);
    r->cols = r->l.w.shape[0] ? (size_t)(numel / (uint64_t)r->l.w.shape[0]) : 0;
    r->row_at = UINT64_MAX;
    r->via_bf16 = r->l.kind == MQ_QK_NVFP4;
    if (!(r->row = malloc(r->cols ? r->cols * sizeof *r->row : 1))) return no_memory(f->vt.name);
    return MQ_OK;
}

mq_status mq_src_values(const mq_stream *s, const mq_tplan *tp, uint64_t e0, size_t n)
{
    if (tp->src->other == MQ_SRC_FORMAT_MXFP4) return mxfp4_values(s, tp, e0, n);
    return ct_values(tp, e0, n);
}

void mq_src_end(mq_tplan *tp)
{
    mq_fp8src *f = tp->src;
    if (!f) return;
    free(f->vals);
    free(f->scales);
    f->vals = f->scales = NULL;
    if (f->rows) {
        mq_qlayer_free(&f->rows->l);
        mq_model_free(f->rows->m);
        free(f->rows->row);
        free(f->rows);
        f->rows = NULL;
    }
}

void mq_src_free(mq_fp8src *f)
{
    if (!f) return;
    mq_tplan tp = {.src = f};
    mq_src_end(&tp);
    free(f->name);
    free(f);
}
