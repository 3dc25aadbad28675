/* Fast host kernels, bit-identical to reference.c. Values are widened to fp32
 * in fixed-size blocks (F16 with an exact multiply by 2^112, BF16 with a shift)
 * so every inner loop has a constant trip count and no branch, which GCC
 * vectorizes at -O2; target_clones picks AVX-512, AVX2 or SSE2 at load time.
 * Why each trick is exact is said where it is used. */
#include "cpukern.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define HK_BIG 512        /* values per block */
#define HK_SMALL 64       /* block for the end of a row; rows shorter than this stay scalar */
#define HK_LANES 16       /* independent min/max accumulators: one AVX-512 vector */
#define HK_ROW_CACHE 8192 /* longest F16/BF16 row widened once (32 KiB of stack) */
/* 1.5 * 2^23: adding and subtracting it rounds an fp32 of magnitude < 2^22 to
 * an integer, half to even, under the default rounding mode. */
#define HK_RINT_MAGIC 12582912.0f

/* clang 14 names the dispatcher of an extern clone "f.ifunc", not "f", so no
 * other file can link to it: that compiler gets the plain (SSE2) build. */
/* The clones are static, called by the plain mq_hk_* functions at the end:
 * GCC 12 exports an extern clone's dispatcher and resolver from a shared
 * library whatever -fvisibility says, a static one's stay local. */
#if defined(__clang__) && __clang_major__ < 15
#define HK_CLONES static
#else
#define HK_CLONES static __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#define HK_INLINE static inline __attribute__((always_inline))

typedef union {
    float f[HK_BIG];
    uint32_t u[HK_BIG];
} hk_block;

typedef union {
    float f[HK_ROW_CACHE];
    uint32_t u[HK_ROW_CACHE];
} hk_row;

typedef struct {
    float lo[HK_LANES], hi[HK_LANES], amax[HK_LANES];
    uint32_t bad[HK_LANES];
} hk_lanes;

/* nb F16 values at p into b, as mq_f16_to_f32: the bits of a finite half,
 * shifted into fp32 position, read as an fp32 that is the value times 2^-112
 * (subnormal halves become fp32 subnormals); the product with 2^112 is exact
 * because every half is a normal fp32. */
HK_INLINE void widen_f16(const unsigned char *restrict p, int nb, float *restrict f)
{
    for (int j = 0; j < nb; j++) {
        uint16_t h;
        memcpy(&h, p + 2 * j, sizeof h);
        uint32_t x = h, em = x & 0x7fffu, m = x & 0x3ffu;
        uint32_t fin = mq_f32_bits(mq_f32_from_bits(em << 13) * 0x1p112f);
        uint32_t special = 0x7f800000u | (m << 13) | ((uint32_t)(m != 0) << 22);
        uint32_t is_special = -(uint32_t)(em >= 0x7c00u); /* masks keep the loop branch-free */
        /* Stored as float (a bit copy): the blocks are read as float, and a
         * uint32_t store there would be another type to the aliasing rules,
         * free to move past those reads. */
        f[j] =
            mq_f32_from_bits((special & is_special) | (fin & ~is_special) | ((x & 0x8000u) << 16));
    }
}

HK_INLINE void widen_bf16(const unsigned char *restrict p, int nb, float *restrict f)
{
    for (int j = 0; j < nb; j++) {
        uint16_t h;
        memcpy(&h, p + 2 * j, sizeof h);
        f[j] = mq_f32_from_bits((uint32_t)h << 16);
    }
}

/* nb values of src starting at element i as fp32: src itself when it is
 * aligned fp32, else widened into b. */
HK_INLINE const float *load_block(const void *src, mq_dtype dt, size_t i, int nb,
                                  hk_block *restrict b)
{
    const unsigned char *p = (const unsigned char *)src + i * mq_dtype_size(dt);
    if (dt == MQ_DTYPE_F16) {
        widen_f16(p, nb, b->f);
    } else if (dt == MQ_DTYPE_BF16) {
        widen_bf16(p, nb, b->f);
    } else {
        if ((uintptr_t)p % sizeof(float) == 0) return (const float *)(const void *)p;
        memcpy(b->f, p, (size_t)nb * sizeof(float));
    }
    return b->f;
}

/* The last n < nb values of a run, padded to nb with copies of its first
 * value: a repeated value changes neither a minimum nor a maximum. */
HK_INLINE const float *load_tail(const void *src, mq_dtype dt, size_t i, size_t n, int nb,
                                 hk_block *restrict b)
{
    unsigned char raw[HK_SMALL * sizeof(float)];
    size_t es = mq_dtype_size(dt);
    memcpy(raw, (const unsigned char *)src + i * es, n * es);
    for (size_t k = n; k < (size_t)nb; k++)
        memcpy(raw + k * es, raw, es);
    if (dt == MQ_DTYPE_F16)
        widen_f16(raw, nb, b->f);
    else if (dt == MQ_DTYPE_BF16)
        widen_bf16(raw, nb, b->f);
    else
        memcpy(b->f, raw, (size_t)nb * sizeof(float));
    return b->f;
}

/* n (>= HK_SMALL) F16 values as fp32 into row. */
HK_INLINE void widen_row_f16(const void *src, size_t n, hk_row *restrict row)
{
    const unsigned char *p = src;
    hk_block b;
    size_t i = 0;
    for (; i + HK_BIG <= n; i += HK_BIG)
        widen_f16(p + 2 * i, HK_BIG, row->f + i);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        widen_f16(p + 2 * i, HK_SMALL, row->f + i);
    if (i < n)
        memcpy(row->f + i, load_tail(src, MQ_DTYPE_F16, i, n - i, HK_SMALL, &b), (n - i) * 4);
}

HK_INLINE void lanes_init(hk_lanes *a)
{
    for (int j = 0; j < HK_LANES; j++) {
        a->lo[j] = INFINITY;
        a->hi[j] = -INFINITY;
        a->amax[j] = 0.0f;
        a->bad[j] = 0;
    }
}

/* A non-finite value is flagged and then stands in as a neutral element
 * (+inf for lo, -inf for hi, 0 for amax), as the reference skips it. v - v is
 * 0 exactly for finite v and NaN otherwise. */
HK_INLINE void lanes_update(hk_lanes *restrict a, const float *restrict x, int nb)
{
    for (int i = 0; i < nb; i += HK_LANES) {
        for (int j = 0; j < HK_LANES; j++) {
            float v = x[i + j];
            int fin = v - v == 0.0f;
            float vl = fin ? v : INFINITY, vh = fin ? v : -INFINITY;
            float av = fin ? fabsf(v) : 0.0f;
            a->lo[j] = vl < a->lo[j] ? vl : a->lo[j];
            a->hi[j] = vh > a->hi[j] ? vh : a->hi[j];
            a->amax[j] = av > a->amax[j] ? av : a->amax[j];
            a->bad[j] |= (uint32_t)!fin;
        }
    }
}

HK_INLINE void lanes_merge(const hk_lanes *a, mq_ref_stats *s)
{
    for (int j = 0; j < HK_LANES; j++) {
        if (a->bad[j]) s->nonfinite = true;
        if (a->lo[j] < s->lo) s->lo = a->lo[j];
        if (a->hi[j] > s->hi) s->hi = a->hi[j];
        if (a->amax[j] > s->amax) s->amax = a->amax[j];
    }
}

HK_INLINE void stats_run(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    hk_block b;
    hk_lanes a;
    size_t i = 0;
    if (n < HK_SMALL) {
        mq_ref_stats_update(s, src, dt, n);
        return;
    }
    lanes_init(&a);
    for (; i + HK_BIG <= n; i += HK_BIG)
        lanes_update(&a, load_block(src, dt, i, HK_BIG, &b), HK_BIG);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        lanes_update(&a, load_block(src, dt, i, HK_SMALL, &b), HK_SMALL);
    if (i < n) lanes_update(&a, load_tail(src, dt, i, n - i, HK_SMALL, &b), HK_SMALL);
    lanes_merge(&a, s);
}

/* q = clamp(rint(x / s + z), -128, 127) as the reference computes it: the
 * magic-number rint is exact for |v| < 2^22, and beyond that the clamp gives
 * the bound whatever the rounding, so rounding first and clamping after (the
 * two commute: monotonic, integer bounds) is the same. A NaN falls to the lower
 * bound, giving -128 as fminf(fmaxf(NaN, -128), 127) does. Rounding before the
 * clamp, with the clamp written as two selects, is the form GCC vectorizes for
 * SSE2, AVX2 and AVX-512 alike (a clamp first, against constants, left a branch
 * in the loop on some targets). */
HK_INLINE void quant_block(const float *restrict x, int nb, float s, float z, uint8_t cx,
                           int8_t *restrict q)
{
    for (int j = 0; j < nb; j++) {
        float v = x[j] / s + z;
        v = (v + HK_RINT_MAGIC) - HK_RINT_MAGIC;
        v = v > -128.0f ? v : -128.0f;
        v = v < 127.0f ? v : 127.0f;
        q[j] = (int8_t)((uint8_t)(int32_t)v ^ cx);
    }
}

/* quant_block with the weight error of mq_ref_error_stats folded in while the
 * block is in registers. r, the rounded value clamped to [-128, 127], differs
 * from the rounded value exactly when the reference's rint(x / s + z) lies
 * outside [-128, 127] (a clamped value, counted); r is the code quant_block
 * stores, and w_hat = (r - z) * s is the reference's (q - zp) * s (r - z is an
 * exact small integer).
 * Sums go to HK_LANES float lanes over the nb (<= HK_BIG) values, then into
 * the double accumulator: each lane adds at most HK_BIG / HK_LANES = 32
 * terms in fp32 (relative error under 32 * 2^-24 ~ 2e-6 per block sum),
 * and w - w_hat is exact in fp32 for an unclamped value (Sterbenz: w_hat is
 * 0 or within a factor of 2 of w), so max |w - w_hat| matches the reference
 * except for clamped values (one fp32 rounding). */
HK_INLINE void quant_block_err(const float *restrict x, int nb, float s, float z, uint8_t cx,
                               int8_t *restrict q, mq_err_acc *restrict acc)
{
    float e[HK_BIG];
    uint32_t c = 0;
    /* Two loops, so each vectorizes: the codes (as quant_block), the clamp
     * count (an integer sum) and the errors first, then the fp32 sums over
     * HK_LANES lanes (all 32-bit types: one AVX-512 vector per lane set). */
    for (int j = 0; j < nb; j++) {
        float v = x[j] / s + z;
        v = (v + HK_RINT_MAGIC) - HK_RINT_MAGIC;
        float r = v > -128.0f ? v : -128.0f;
        r = r < 127.0f ? r : 127.0f;
        c += (uint32_t)(r != v);
        q[j] = (int8_t)((uint8_t)(int32_t)r ^ cx);
        e[j] = x[j] - (r - z) * s;
    }
    float sig[HK_LANES], err2[HK_LANES], mx[HK_LANES];
    for (int j = 0; j < HK_LANES; j++)
        sig[j] = err2[j] = mx[j] = 0.0f;
    for (int i = 0; i < nb; i += HK_LANES) {
        for (int j = 0; j < HK_LANES; j++) {
            float w = x[i + j], d = e[i + j];
            float ad = fabsf(d);
            sig[j] += w * w;
            err2[j] += d * d;
            mx[j] = ad > mx[j] ? ad : mx[j];
        }
    }
    double ds = 0.0, de = 0.0;
    float m = 0.0f;
    for (int j = 0; j < HK_LANES; j++) {
        ds += (double)sig[j];
        de += (double)err2[j];
        m = mx[j] > m ? mx[j] : m;
    }
    acc->sig += ds;
    acc->err2 += de;
    if ((double)m > acc->max_abs) acc->max_abs = (double)m;
    acc->clamped += c;
}

/* One block's codes, and with acc its weight error too. */
HK_INLINE void quant_block_acc(const float *restrict x, int nb, float s, float z, uint8_t cx,
                               int8_t *restrict q, mq_err_acc *acc)
{
    if (acc)
        quant_block_err(x, nb, s, z, cx, q, acc);
    else
        quant_block(x, nb, s, z, cx, q);
}

/* Relabels n codes already written (the reference's, in the short runs). */
HK_INLINE void xor_codes(int8_t *q, size_t n, uint8_t cx)
{
    for (size_t i = 0; cx && i < n; i++)
        q[i] = (int8_t)((uint8_t)q[i] ^ cx);
}

/* The codes of n values with fixed parameters; with acc, their weight error
 * is added to *acc as well (asym: zp is a zero point the statistics
 * subtract). Runs shorter than HK_SMALL use the reference, and the end of a
 * run (whose block is padded) the reference statistics on the codes just
 * written. */
HK_INLINE void quant_run(const void *src, mq_dtype dt, size_t n, float s, int8_t zp, bool asym,
                         uint8_t cx, int8_t *q, mq_err_acc *acc)
{
    hk_block b;
    int8_t qt[HK_SMALL];
    float z = (float)zp;
    size_t i = 0;
    if (n < HK_SMALL) {
        mq_ref_quantize_values(src, dt, n, s, zp, q);
        if (acc) mq_ref_error_stats(src, dt, 1, n, q, &s, MQ_DTYPE_F32, asym ? &zp : NULL, acc);
        xor_codes(q, n, cx);
        return;
    }
    for (; i + HK_BIG <= n; i += HK_BIG)
        quant_block_acc(load_block(src, dt, i, HK_BIG, &b), HK_BIG, s, z, cx, q + i, acc);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        quant_block_acc(load_block(src, dt, i, HK_SMALL, &b), HK_SMALL, s, z, cx, q + i, acc);
    if (i < n) {
        quant_block(load_tail(src, dt, i, n - i, HK_SMALL, &b), HK_SMALL, s, z, 0, qt);
        memcpy(q + i, qt, n - i);
        if (acc)
            mq_ref_error_stats((const unsigned char *)src + i * mq_dtype_size(dt), dt, 1, n - i,
                               q + i, &s, MQ_DTYPE_F32, asym ? &zp : NULL, acc);
        xor_codes(q + i, n - i, cx);
    }
}

HK_CLONES void hk_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    stats_run(s, src, dt, n);
}

HK_CLONES void hk_quantize_values(const void *src, mq_dtype dt, size_t n, float scale, int8_t zp,
                                  uint8_t code_xor, int8_t *q)
{
    quant_run(src, dt, n, scale, zp, false, code_xor, q, NULL);
}

HK_INLINE mq_status quant_rows(const void *src, mq_dtype dt, size_t rows, size_t cols,
                               bool symmetric, int8_t *q, void *scale, int8_t *zp, uint8_t cx,
                               size_t *bad_row, mq_err_acc *err)
{
    const unsigned char *in = src;
    size_t row_bytes = cols * mq_dtype_size(dt);
    /* An F16 row short enough is widened once, not once per pass (BF16's
     * widening is a shift, cheaper than the copy). */
    hk_row wide;
    bool cache = dt == MQ_DTYPE_F16 && cols >= HK_SMALL && cols <= HK_ROW_CACHE;
    for (size_t r = 0; r < rows; r++) {
        const void *row = in + r * row_bytes;
        mq_dtype rdt = dt;
        mq_ref_stats st;
        if (cache) {
            widen_row_f16(row, cols, &wide);
            row = wide.f;
            rdt = MQ_DTYPE_F32;
        }
        mq_ref_stats_init(&st);
        stats_run(&st, row, rdt, cols);
        if (st.nonfinite) {
            if (bad_row) *bad_row = r;
            return MQ_STATUS_E_DATA;
        }
        float s;
        int8_t z;
        mq_ref_params(&st, symmetric, dt, &s, &z);
        mq_store_scale(scale, dt, r, s);
        if (!symmetric && zp) zp[r] = z;
        /* Two calls, so that each inlined copy knows whether err is NULL. */
        if (err)
            quant_run(row, rdt, cols, s, z, !symmetric, cx, q + r * cols, err);
        else
            quant_run(row, rdt, cols, s, z, !symmetric, cx, q + r * cols, NULL);
    }
    return MQ_OK;
}

HK_CLONES mq_status hk_quantize_rows(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                     bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                     uint8_t code_xor, size_t *bad_row)
{
    return quant_rows(src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row, NULL);
}

HK_CLONES mq_status hk_quantize_rows_err(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                         bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                         uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    return quant_rows(src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row, err);
}

HK_CLONES void hk_quantize_values_err(const void *src, mq_dtype dt, size_t n, float scale,
                                      int8_t zp, bool symmetric, uint8_t code_xor, int8_t *q,
                                      mq_err_acc *err)
{
    quant_run(src, dt, n, scale, zp, !symmetric, code_xor, q, err);
}

/* fp32 bits to half bits as mq_f32_to_f16, without branches: normal results
 * by the rebias-and-round integer trick (a mantissa carry bumps the
 * exponent), subnormal ones by an fp32 addition of 0.5, whose ulp is the
 * half's subnormal unit 2^-24, so the hardware rounds half to even for us. */
HK_INLINE uint32_t f32_to_f16_bits(uint32_t x, bool saturate, uint32_t *ovf)
{
    uint32_t ax = x & 0x7fffffffu, sign = (x >> 16) & 0x8000u;
    uint32_t normal = (ax + 0xc8000fffu + ((ax >> 13) & 1u)) >> 13; /* ax - (112 << 23) + ... */
    uint32_t sub = mq_f32_bits(mq_f32_from_bits(ax) + 0.5f) - 0x3f000000u;
    /* All-ones masks rather than branches, so the loop vectorizes. */
    uint32_t tiny = -(uint32_t)(ax < 0x38800000u); /* below 2^-14 */
    uint32_t big = -(uint32_t)(ax >= 0x477ff000u); /* >= 65520 rounds to inf */
    uint32_t nan = -(uint32_t)(ax > 0x7f800000u);
    uint32_t o = big & ~nan & -(uint32_t)(ax != 0x7f800000u); /* finite, too big */
    uint32_t inf = 0x7c00u - (o & (uint32_t)saturate);        /* 0x7bff when saturating */
    uint32_t h = (sub & tiny) | (normal & ~tiny);
    h = (inf & big) | (h & ~big);
    h = ((0x7e00u | ((ax >> 13) & 0x3ffu)) & nan) | (h & ~nan);
    *ovf = o & 1u;
    return h | sign;
}

HK_INLINE uint32_t cast_block(const float *restrict x, int nb, bool saturate,
                              uint16_t *restrict dst)
{
    uint32_t count = 0;
    for (int j = 0; j < nb; j++) {
        uint32_t o;
        dst[j] = (uint16_t)f32_to_f16_bits(mq_f32_bits(x[j]), saturate, &o);
        count += o;
    }
    return count;
}

HK_CLONES uint64_t hk_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst)
{
    hk_block b;
    uint64_t overflow = 0;
    size_t i = 0;
    if (dt == MQ_DTYPE_F16) { /* a copy; an inf there was inf before */
        memcpy(dst, src, n * 2);
        return 0;
    }
    if (dt != MQ_DTYPE_F32 && dt != MQ_DTYPE_BF16)
        return mq_ref_cast_f16(src, dt, n, saturate, dst);
    for (; i + HK_BIG <= n; i += HK_BIG)
        overflow += cast_block(load_block(src, dt, i, HK_BIG, &b), HK_BIG, saturate, dst + i);
    if (i < n)
        overflow += mq_ref_cast_f16((const unsigned char *)src + i * mq_dtype_size(dt), dt, n - i,
                                    saturate, dst + i);
    return overflow;
}

/* ---- int4 and float8 (reference.h's kinds) ----
 * The same block structure with one more, shorter block (HK_LANES values), so
 * groups of 32 vectorize too; the end of a run is padded to that block. */

#define HK_TINY HK_LANES
/* 2^14: adding it to |v| < 2^-6 leaves v in units of 2^-9, the e4m3
 * subnormal step, rounded half to even by the hardware. */
#define HK_E4M3_SUB 16384.0f

/* The e4m3fn byte of fminf(fmaxf(v, -448), 448), as the reference computes
 * it, with integer operations only (a float clamp first left a branch in
 * the loop): the magnitude clamped as bits, normal results by the
 * rebias-and-round trick (a mantissa carry bumps the exponent), subnormal
 * ones by the addition above, a NaN to -448 (0xfe) as fmaxf gives; masks
 * instead of branches. */
HK_INLINE uint32_t e4m3_code(float v)
{
    uint32_t x = mq_f32_bits(v), ax = x & 0x7fffffffu;
    uint32_t a = ax < 0x43e00000u ? ax : 0x43e00000u; /* 448 */
    uint32_t normal = (a - 0x3c000000u + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
    uint32_t sub = mq_f32_bits(mq_f32_from_bits(a) + HK_E4M3_SUB) - 0x46800000u;
    uint32_t tiny = -(uint32_t)(a < 0x3c800000u); /* below 2^-6 */
    uint32_t nan = -(uint32_t)(ax > 0x7f800000u);
    uint32_t c = (sub & tiny) | (normal & ~tiny) | ((x >> 24) & 0x80u);
    return (0xfeu & nan) | (c & ~nan);
}

/* 1 where |v| > 448 (the reference's clamped count: not a NaN). */
HK_INLINE uint32_t e4m3_over(float v)
{
    uint32_t ax = mq_f32_bits(v) & 0x7fffffffu;
    return (uint32_t)(ax > 0x43e00000u) & (uint32_t)(ax <= 0x7f800000u);
}

/* The value of an e4m3fn byte other than NaN, exactly (mq_e4m3_to_f32). */
HK_INLINE float e4m3_value(uint32_t c)
{
    uint32_t e = (c >> 3) & 15u, m = c & 7u;
    uint32_t sub = mq_f32_bits((float)(int32_t)m * 0x1p-9f);
    uint32_t normal = ((e + 120u) << 23) | (m << 20);
    uint32_t is_sub = -(uint32_t)(e == 0u);
    return mq_f32_from_bits((sub & is_sub) | (normal & ~is_sub) | ((c & 0x80u) << 24));
}

/* Codes of kind k (INT4 or FP8, a constant after inlining) for nb values, one
 * byte each: INT4 as quant_block with bounds -8 and 7; FP8 the e4m3 byte of
 * w / s clamped to +-448 (a NaN falls to -448, as fminf(fmaxf()) gives). */
HK_INLINE void kq_block(const float *restrict x, int nb, mq_qkind k, float s, float z,
                        uint8_t *restrict q)
{
    if (k == MQ_QK_FP8) {
        for (int j = 0; j < nb; j++)
            q[j] = (uint8_t)e4m3_code(x[j] / s);
        return;
    }
    for (int j = 0; j < nb; j++) {
        float v = x[j] / s + z;
        v = (v + HK_RINT_MAGIC) - HK_RINT_MAGIC;
        v = v > -8.0f ? v : -8.0f;
        v = v < 7.0f ? v : 7.0f;
        q[j] = (uint8_t)(int32_t)v;
    }
}

/* kq_block with the weight error of the first m (<= nb) values added to acc
 * as mq_ref_error_stats_k counts it: clamped when the value before the clamp
 * lies outside the bounds (a NaN is not counted), w_hat = (q - z) s or
 * e4m3(q) s. The error w - w_hat is exact in fp32 (Sterbenz) except for a
 * clamped value; sums as quant_block_err. */
HK_INLINE void kq_block_err(const float *restrict x, int nb, int m, mq_qkind k, float s, float z,
                            uint8_t *restrict q, mq_err_acc *restrict acc)
{
    float w[HK_BIG], e[HK_BIG];
    uint32_t c = 0;
    if (k == MQ_QK_FP8) {
        for (int j = 0; j < nb; j++) {
            float v = x[j] / s;
            uint32_t b = e4m3_code(v);
            q[j] = (uint8_t)b;
            int in = j < m;
            c += (uint32_t)in & e4m3_over(v);
            w[j] = in ? x[j] : 0.0f;
            e[j] = in ? x[j] - e4m3_value(b) * s : 0.0f;
        }
    } else {
        for (int j = 0; j < nb; j++) {
            float v = x[j] / s + z;
            v = (v + HK_RINT_MAGIC) - HK_RINT_MAGIC;
            float r = v > -8.0f ? v : -8.0f;
            r = r < 7.0f ? r : 7.0f;
            q[j] = (uint8_t)(int32_t)r;
            int in = j < m;
            c += (uint32_t)(in & ((v < -8.0f) | (v > 7.0f)));
            w[j] = in ? x[j] : 0.0f;
            e[j] = in ? x[j] - (r - z) * s : 0.0f;
        }
    }
    /* The squares are summed in units of 2^2k, k from the block's largest
     * |w| (as the OpenCL kernels do, see mq_err_exp): no square overflows
     * (weights near FLT_MAX) or underflows (subnormal weights), and a power
     * of two changes no rounding. */
    uint32_t am = 0; /* as bits: an integer maximum vectorizes */
    for (int j = 0; j < nb; j++) {
        uint32_t a = mq_f32_bits(w[j]) & 0x7fffffffu;
        am = a > am ? a : am;
    }
    int ke = (int)(am >> 23) - 127; /* ilogb for a normal maximum; -127 below */
    int ex = (ke < -127 ? -127 : ke > 125 ? 125 : ke) + 1;
    float tk = mq_f32_from_bits((uint32_t)(127 - ex) << 23);
    float sig[HK_LANES], err2[HK_LANES], mx[HK_LANES];
    for (int j = 0; j < HK_LANES; j++)
        sig[j] = err2[j] = mx[j] = 0.0f;
    for (int i = 0; i < nb; i += HK_LANES) {
        for (int j = 0; j < HK_LANES; j++) {
            float a = w[i + j] * tk, d = e[i + j];
            float ad = fabsf(d), ds = d * tk;
            sig[j] += a * a;
            err2[j] += ds * ds;
            mx[j] = ad > mx[j] ? ad : mx[j];
        }
    }
    double ds = 0.0, de = 0.0, unit = ldexp(1.0, 2 * ex);
    float mm = 0.0f;
    for (int j = 0; j < HK_LANES; j++) {
        ds += (double)sig[j];
        de += (double)err2[j];
        mm = mx[j] > mm ? mx[j] : mm;
    }
    acc->sig += ds * unit;
    acc->err2 += de * unit;
    if ((double)mm > acc->max_abs) acc->max_abs = (double)mm;
    acc->clamped += c;
}

/* The first m codes of a block of nb to their place: byte i of out, or with
 * pack (INT4) nibble i of the packed row, code + 8, i even; the pairs are
 * packed over the whole block (a constant trip count), then copied. */
HK_INLINE void kq_put(const uint8_t *restrict c, int nb, int m, bool pack, size_t i,
                      uint8_t *restrict out)
{
    if (!pack) {
        memcpy(out + i, c, (size_t)m);
        return;
    }
    uint8_t pk[HK_BIG / 2];
    for (int j = 0; j < nb / 2; j++)
        pk[j] = (uint8_t)(((c[2 * j] + 8u) & 15u) | (((c[2 * j + 1] + 8u) & 15u) << 4));
    if (m & 1) pk[m / 2] &= 0x0fu; /* an odd end: its high nibble is padding */
    memcpy(out + i / 2, pk, (size_t)(m + 1) / 2);
}

/* One block of nb values at element i: codes, placed, and with acc the error
 * of its first m values. */
HK_INLINE void kq_step(const float *restrict x, int nb, int m, mq_qkind k, float s, float z,
                       bool pack, size_t i, uint8_t *restrict out, mq_err_acc *acc)
{
    uint8_t c[HK_BIG];
    if (acc)
        kq_block_err(x, nb, m, k, s, z, c, acc);
    else
        kq_block(x, nb, k, s, z, c);
    kq_put(c, nb, m, pack, i, out);
}

/* The codes of n values with fixed parameters into out (one byte each, or
 * INT4 packed with pack), and with acc their weight error. The padding of a
 * packed row is the caller's. */
HK_INLINE void kq_run(const void *src, mq_dtype dt, size_t n, mq_qkind k, float s, int8_t zp,
                      bool pack, uint8_t *out, mq_err_acc *acc)
{
    hk_block b;
    float z = (float)zp;
    size_t i = 0;
    for (; i + HK_BIG <= n; i += HK_BIG)
        kq_step(load_block(src, dt, i, HK_BIG, &b), HK_BIG, HK_BIG, k, s, z, pack, i, out, acc);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        kq_step(load_block(src, dt, i, HK_SMALL, &b), HK_SMALL, HK_SMALL, k, s, z, pack, i, out,
                acc);
    for (; i + HK_TINY <= n; i += HK_TINY)
        kq_step(load_block(src, dt, i, HK_TINY, &b), HK_TINY, HK_TINY, k, s, z, pack, i, out, acc);
    if (i < n)
        kq_step(load_tail(src, dt, i, n - i, HK_TINY, &b), HK_TINY, (int)(n - i), k, s, z, pack, i,
                out, acc);
}

/* stats_run with the HK_TINY block as well. */
HK_INLINE void kstats_run(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    hk_block b;
    hk_lanes a;
    size_t i = 0;
    if (n < HK_TINY) {
        mq_ref_stats_update(s, src, dt, n);
        return;
    }
    lanes_init(&a);
    for (; i + HK_BIG <= n; i += HK_BIG)
        lanes_update(&a, load_block(src, dt, i, HK_BIG, &b), HK_BIG);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        lanes_update(&a, load_block(src, dt, i, HK_SMALL, &b), HK_SMALL);
    for (; i + HK_TINY <= n; i += HK_TINY)
        lanes_update(&a, load_block(src, dt, i, HK_TINY, &b), HK_TINY);
    if (i < n) lanes_update(&a, load_tail(src, dt, i, n - i, HK_TINY, &b), HK_TINY);
    lanes_merge(&a, s);
}

HK_INLINE mq_status kq_rows(const void *src, mq_dtype dt, size_t rows, size_t cols, mq_qkind k,
                            bool symmetric, uint8_t *q, void *scale, int8_t *zp, size_t *bad_row,
                            mq_err_acc *err)
{
    const unsigned char *in = src;
    size_t row_bytes = cols * mq_dtype_size(dt), qb = mq_qkind_row_bytes(k, cols);
    bool pack = k == MQ_QK_INT4;
    hk_row wide;
    bool cache = dt == MQ_DTYPE_F16 && cols >= HK_SMALL && cols <= HK_ROW_CACHE;
    for (size_t r = 0; r < rows; r++) {
        const void *row = in + r * row_bytes;
        mq_dtype rdt = dt;
        mq_ref_stats st;
        if (cache) {
            widen_row_f16(row, cols, &wide);
            row = wide.f;
            rdt = MQ_DTYPE_F32;
        }
        mq_ref_stats_init(&st);
        kstats_run(&st, row, rdt, cols);
        if (st.nonfinite) {
            if (bad_row) *bad_row = r;
            return MQ_STATUS_E_DATA;
        }
        float s;
        int8_t z;
        mq_ref_params_k(&st, k, symmetric, dt, &s, &z);
        mq_store_scale(scale, dt, r, s);
        if (!symmetric && zp && k != MQ_QK_FP8) zp[r] = z;
        uint8_t *out = q + r * qb;
        if (pack) memset(out + cols / 2, 0, qb - cols / 2); /* the padding, and an odd last byte */
        kq_run(row, rdt, cols, k, s, z, pack, out, err);
    }
    return MQ_OK;
}

/* FP8 blocks: each block's statistics over its rows, then its codes. */
HK_INLINE mq_status kq_blocks(const void *src, mq_dtype dt, size_t rows, size_t cols, size_t bs,
                              uint8_t *q, void *scale, size_t *bad_block, mq_err_acc *err)
{
    const unsigned char *in = src;
    size_t es = mq_dtype_size(dt), nbr = (rows + bs - 1) / bs, nbc = (cols + bs - 1) / bs;
    for (size_t bi = 0; bi < nbr; bi++) {
        size_t r0 = bi * bs, r1 = r0 + bs < rows ? r0 + bs : rows;
        for (size_t bj = 0; bj < nbc; bj++) {
            size_t c0 = bj * bs, nc = cols - c0 < bs ? cols - c0 : bs;
            mq_ref_stats st;
            mq_ref_stats_init(&st);
            if (nc % HK_SMALL == 0) {
                /* Whole blocks of HK_SMALL in every row: one set of lanes for
                 * the block, merged once (a merge per row costs as much as the
                 * row's 128 values). */
                hk_lanes a;
                hk_block b;
                lanes_init(&a);
                for (size_t r = r0; r < r1; r++)
                    for (size_t i = 0; i < nc; i += HK_SMALL)
                        lanes_update(&a, load_block(in, dt, r * cols + c0 + i, HK_SMALL, &b),
                                     HK_SMALL);
                lanes_merge(&a, &st);
            } else {
                for (size_t r = r0; r < r1; r++)
                    kstats_run(&st, in + (r * cols + c0) * es, dt, nc);
            }
            if (st.nonfinite) {
                if (bad_block) *bad_block = bi * nbc + bj;
                return MQ_STATUS_E_DATA;
            }
            float s;
            int8_t z;
            mq_ref_params_k(&st, MQ_QK_FP8, true, dt, &s, &z);
            mq_store_scale(scale, dt, bi * nbc + bj, s);
            for (size_t r = r0; r < r1; r++)
                kq_run(in + (r * cols + c0) * es, dt, nc, MQ_QK_FP8, s, 0, false, q + r * cols + c0,
                       err);
        }
    }
    return MQ_OK;
}

/* One inlined copy per kind and per err NULL or not. */
HK_CLONES mq_status hk_quantize_rows_k(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                       mq_qkind k, bool symmetric, uint8_t *q, void *scale,
                                       int8_t *zp, size_t *bad_row, mq_err_acc *err)
{
    if (k == MQ_QK_FP8)
        return err ? kq_rows(src, dt, rows, cols, MQ_QK_FP8, symmetric, q, scale, zp, bad_row, err)
                   : kq_rows(src, dt, rows, cols, MQ_QK_FP8, symmetric, q, scale, zp, bad_row,
                             NULL);
    return err ? kq_rows(src, dt, rows, cols, MQ_QK_INT4, symmetric, q, scale, zp, bad_row, err)
               : kq_rows(src, dt, rows, cols, MQ_QK_INT4, symmetric, q, scale, zp, bad_row, NULL);
}

HK_CLONES void hk_quantize_values_k(const void *src, mq_dtype dt, size_t n, mq_qkind k, float scale,
                                    int8_t zp, uint8_t *q, mq_err_acc *err)
{
    if (k == MQ_QK_FP8) {
        if (err)
            kq_run(src, dt, n, MQ_QK_FP8, scale, zp, false, q, err);
        else
            kq_run(src, dt, n, MQ_QK_FP8, scale, zp, false, q, NULL);
    } else {
        if (err)
            kq_run(src, dt, n, MQ_QK_INT4, scale, zp, false, q, err);
        else
            kq_run(src, dt, n, MQ_QK_INT4, scale, zp, false, q, NULL);
    }
}

HK_CLONES mq_status hk_quantize_blocks(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                       size_t bs, uint8_t *q, void *scale, size_t *bad_block,
                                       mq_err_acc *err)
{
    if (err) return kq_blocks(src, dt, rows, cols, bs, q, scale, bad_block, err);
    return kq_blocks(src, dt, rows, cols, bs, q, scale, bad_block, NULL);
}

mq_status mq_hk_quantize_rows_k(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                mq_qkind kind, bool symmetric, void *q, void *scale, int8_t *zp,
                                size_t *bad_row, mq_err_acc *err)
{
    if (kind == MQ_QK_INT8) {
        if (err)
            return mq_hk_quantize_rows_err(src, dt, rows, cols, symmetric, q, scale, zp, 0, bad_row,
                                           err);
        return mq_hk_quantize_rows(src, dt, rows, cols, symmetric, q, scale, zp, 0, bad_row);
    }
    return hk_quantize_rows_k(src, dt, rows, cols, kind, symmetric, q, scale, zp, bad_row, err);
}

void mq_hk_quantize_values_k(const void *src, mq_dtype dt, size_t n, mq_qkind kind, float scale,
                             int8_t zp, uint8_t *q, mq_err_acc *err)
{
    hk_quantize_values_k(src, dt, n, kind, scale, zp, q, err);
}

mq_status mq_hk_quantize_blocks(const void *src, mq_dtype dt, size_t rows, size_t cols, size_t bs,
                                uint8_t *q, void *scale, size_t *bad_block, mq_err_acc *err)
{
    if (bs == 0) return MQ_STATUS_E_INVALID_ARG;
    return hk_quantize_blocks(src, dt, rows, cols, bs, q, scale, bad_block, err);
}

void mq_hk_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    hk_stats_update(s, src, dt, n);
}

void mq_hk_quantize_values(const void *src, mq_dtype dt, size_t n, float scale, int8_t zp,
                           uint8_t code_xor, int8_t *q)
{
    hk_quantize_values(src, dt, n, scale, zp, code_xor, q);
}

mq_status mq_hk_quantize_rows(const void *src, mq_dtype dt, size_t rows, size_t cols,
                              bool symmetric, int8_t *q, void *scale, int8_t *zp, uint8_t code_xor,
                              size_t *bad_row)
{
    return hk_quantize_rows(src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row);
}

mq_status mq_hk_quantize_rows_err(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                  bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                  uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    return hk_quantize_rows_err(src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row,
                                err);
}

void mq_hk_quantize_values_err(const void *src, mq_dtype dt, size_t n, float scale, int8_t zp,
                               bool symmetric, uint8_t code_xor, int8_t *q, mq_err_acc *err)
{
    hk_quantize_values_err(src, dt, n, scale, zp, symmetric, code_xor, q, err);
}

uint64_t mq_hk_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst)
{
    return hk_cast_f16(src, dt, n, saturate, dst);
}
