/* Linear forward passes for the evaluation: the backend's GEMM where it has
 * one (CLBlast SGEMM on OpenCL devices), else the backend's dequantize and a
 * plain GEMM with a fixed summation order; mq_linear_forward; the seeded
 * normal inputs. */
#include "evalfwd.h"

#include "devset.h"
#include "dtype.h"
#include "error.h"
#include "reference.h"
#include "scheme.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mq_fwd {
    mq_backend *be;
    mq_gemm *gemm;  /* the backend's GEMM; NULL: the host GEMM */
    const float *x; /* host path: borrowed input */
    size_t tokens, in;
    float *w; /* host path: dequantized rows */
    size_t w_cap;
};

mq_status mq_fwd_new(mq_backend *be, void (*note)(const char *note, void *user), void *user,
                     mq_fwd **out)
{
    mq_fwd *f = calloc(1, sizeof *f);
    if (!f) return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
    f->be = be;
    if (be->caps.has_gemm && be->ops->gemm_new) {
        mq_status st = be->ops->gemm_new(be, note, user, &f->gemm);
        if (st != MQ_OK) {
            free(f);
            return st;
        }
    }
    *out = f;
    return MQ_OK;
}

void mq_fwd_free(mq_fwd *f)
{
    if (!f) return;
    if (f->gemm) f->be->ops->gemm_free(f->gemm);
    free(f->w);
    free(f);
}

mq_status mq_fwd_set_input(mq_fwd *f, const float *x, size_t tokens, size_t in)
{
    if (f->gemm) return f->be->ops->gemm_set_input(f->gemm, x, tokens, in);
    f->x = x;
    f->tokens = tokens;
    f->in = in;
    return MQ_OK;
}

mq_status mq_fwd_linear(mq_fwd *f, const float *w, size_t out, float *y)
{
    if (f->gemm) return f->be->ops->gemm_linear(f->gemm, w, out, y);
    mq_ref_gemm_nt(f->x, f->tokens, f->in, w, out, y);
    return MQ_OK;
}

mq_status mq_fwd_linear_q8(mq_fwd *f, const int8_t *q, const float *scale, const int8_t *zp,
                           size_t out, float *y)
{
    if (f->gemm) return f->be->ops->gemm_linear_q8(f->gemm, q, scale, zp, out, y);
    size_t n = out * f->in; /* the caller checked the product */
    if (n > f->w_cap) {
        float *w = realloc(f->w, n * sizeof *w);
        if (!w) return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
        f->w = w;
        f->w_cap = n;
    }
    mq_status st = f->be->ops->dequantize_rows(f->be, q, out, f->in, scale, zp, MQ_DTYPE_F32, f->w);
    if (st == MQ_OK) mq_ref_gemm_nt(f->x, f->tokens, f->in, f->w, out, y);
    return st;
}

static float dot(const float *a, const float *b, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Four tokens by four outputs at once: sixteen independent sums hide the add
 * latency, and each is still added in order of i, so it equals dot(). */
static void block4x4(const float *x, size_t in, const float *w, float *y, size_t ldy)
{
    float acc[4][4] = {{0}};
    for (size_t i = 0; i < in; i++) {
        float xa[4] = {x[i], x[in + i], x[2 * in + i], x[3 * in + i]};
        float wb[4] = {w[i], w[in + i], w[2 * in + i], w[3 * in + i]};
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                acc[a][b] += xa[a] * wb[b];
    }
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            y[(size_t)a * ldy + (size_t)b] = acc[a][b];
}

void mq_ref_gemm_nt(const float *x, size_t tokens, size_t in, const float *w, size_t out, float *y)
{
    size_t t = 0;
    for (; t + 4 <= tokens; t += 4) {
        size_t o = 0;
        for (; o + 4 <= out; o += 4)
            block4x4(x + t * in, in, w + o * in, y + t * out + o, out);
        for (; o < out; o++)
            for (size_t a = t; a < t + 4; a++)
                y[a * out + o] = dot(x + a * in, w + o * in, in);
    }
    for (; t < tokens; t++)
        for (size_t o = 0; o < out; o++)
            y[t * out + o] = dot(x + t * in, w + o * in, in);
}

static uint64_t xorshift64s(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

void mq_eval_normal(uint64_t seed, const char *name, float *dst, size_t n)
{
    /* FNV-1a of the name, mixed with the seed by splitmix64: a layer gets the
     * same inputs whatever file or shard it is in and whatever else is there. */
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    uint64_t z = seed + h + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    uint64_t s = (z ^ (z >> 31)) | 1; /* xorshift must not start at 0 */
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((double)(xorshift64s(&s) >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] */
        double u2 = (double)(xorshift64s(&s) >> 11) / 9007199254740992.0;         /* [0, 1) */
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        dst[i] = (float)(r * cos(a));
        if (i + 1 < n) dst[i + 1] = (float)(r * sin(a));
    }
}

static bool mul_ok(size_t a, size_t b)
{
    return b == 0 || a <= SIZE_MAX / sizeof(float) / b;
}

mq_status mq_linear_forward(const mq_config *cfg, const int8_t *q, const void *scale,
                            const int8_t *zp, mq_dtype scale_dtype, size_t out_features,
                            size_t in_features, const float *x, size_t tokens, float *y)
{
    mq_clear_error();
    mq_device_sel sel = {0};
    mq_backend *be = NULL;
    mq_fwd *f = NULL;
    float *sf = NULL;
    mq_status st = MQ_OK;
    if (cfg && (st = mq_config_usable(cfg)) != MQ_OK) return st;
    if (cfg)
        sel = (mq_device_sel){.spec = cfg->device,
                              .handle = cfg->device_handle,
                              .max_alloc_override = cfg->max_alloc_override};
    if (!mq_dtype_is_quantizable(scale_dtype))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "linear forward: scale dtype %s is not F32/F16/BF16",
                            mq_dtype_name(scale_dtype) ? mq_dtype_name(scale_dtype) : "?");
    if (!mul_ok(out_features, in_features) || !mul_ok(tokens, in_features) ||
        !mul_ok(tokens, out_features))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "linear forward: sizes overflow");
    if (tokens == 0 || out_features == 0) return MQ_OK;
    if (!y || !x || !q || !scale)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "linear forward: NULL argument");
    if (!(sf = malloc(out_features * sizeof *sf)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "linear forward: out of memory");
    for (size_t o = 0; o < out_features; o++)
        sf[o] = mq_load_f32(scale, scale_dtype, o);
    if ((st = mq_backend_open(&sel, &be)) != MQ_OK ||
        (st = mq_fwd_new(be, NULL, NULL, &f)) != MQ_OK ||
        (st = mq_fwd_set_input(f, x, tokens, in_features)) != MQ_OK)
        goto done;
    st = mq_fwd_linear_q8(f, q, sf, zp, out_features, y);
done:
    mq_fwd_free(f);
    mq_backend_free(be);
    free(sf);
    return st;
}
