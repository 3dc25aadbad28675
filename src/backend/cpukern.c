/* Fast host kernels, bit-identical to reference.c. Values are widened to fp32
 * in fixed-size blocks (F16 with an exact multiply by 2^112, BF16 with a shift)
 * so every inner loop has a constant trip count and no branch, which GCC
 * vectorizes at -O2; target_clones picks AVX-512 (with the byte and 512-bit
 * forms of x86-64-v4, or AVX-512F alone), AVX2 or SSE2 at load time.
 * Why each trick is exact is said where it is used. */
#include "cpukern.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>
#define HK_HAVE_F16C 1
#endif

#define HK_BIG 512        /* values per block */
#define HK_SMALL 64       /* block for the end of a row */
#define HK_LANES 16       /* independent min/max accumulators: one AVX-512 vector */
#define HK_ROW_CACHE 8192 /* longest F16/BF16 row widened once (32 KiB of stack) */
#define HK_TINY                                                                                    \
    HK_LANES /* the last block of a run: groups of 32 vectorize too; shorter runs stay scalar */
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
/* x86-64-v4 adds AVX-512BW and VL: without them the loops that store bytes
 * fall back to 256-bit AVX2 forms even in the AVX-512F clone. */
#define HK_CLONES                                                                                  \
    static __attribute__((target_clones("arch=x86-64-v4", "avx512f", "avx2", "default")))
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

#ifdef HK_HAVE_F16C
/* F16C's conversion is exact and makes a signalling NaN quiet, as
 * mq_f16_to_f32 does: the same bits, eight halves an instruction. */
__attribute__((target("avx,f16c"))) static void widen_f16_f16c(const unsigned char *p, size_t n,
                                                               float *f)
{
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(f + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * j))));
    /* Fewer than 8 left; the mask says so to gcc, whose clones for a
     * constant n otherwise warn of an overflow of j that cannot happen. */
    for (size_t i = 0, rest = (n - j) & 7; i < rest; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * (j + i), sizeof h);
        f[j + i] = mq_f16_to_f32(h);
    }
}
#endif

#ifdef HK_HAVE_F16C
/* F16C and AVX, with the YMM registers saved by the OS. By CPUID, as clang's
 * __builtin_cpu_supports knows no "f16c"; asked once, as CPUID traps to the
 * hypervisor in a virtual machine. */
static bool has_f16c(void)
{
    static atomic_int known; /* 0: not asked yet, 1: no, 2: yes */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k) return k == 2;
    unsigned a, b, c, d;
    bool yes = false;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && (c & bit_AVX) && (c & bit_OSXSAVE)) {
        unsigned lo, hi;
        __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        yes = (lo & 6u) == 6u; /* XMM and YMM state */
    }
    atomic_store_explicit(&known, yes ? 2 : 1, memory_order_relaxed);
    return yes;
}
#endif

void mq_hk_widen_f16(const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    size_t j = 0;
#ifdef HK_HAVE_F16C
    if (has_f16c()) {
        widen_f16_f16c(p, n, dst);
        return;
    }
#endif
    for (; j + HK_SMALL <= n; j += HK_SMALL)
        widen_f16(p + 2 * j, HK_SMALL, dst + j);
    /* fewer than HK_SMALL (a power of two) left: the mask as above */
    for (size_t i = 0, rest = (n - j) & (HK_SMALL - 1); i < rest; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * (j + i), sizeof h);
        dst[j + i] = mq_f16_to_f32(h);
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

/* n (>= HK_SMALL) F16 or BF16 values as fp32 into row; F16 through
 * mq_hk_widen_f16, the conversion instruction where there is one. */
HK_INLINE void widen_row(const void *src, mq_dtype dt, size_t n, hk_row *restrict row)
{
    const unsigned char *p = src;
    hk_block b;
    size_t i = 0;
    if (dt == MQ_DTYPE_F16) {
        mq_hk_widen_f16(src, n, row->f);
        return;
    }
    for (; i + HK_BIG <= n; i += HK_BIG)
        widen_bf16(p + 2 * i, HK_BIG, row->f + i);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        widen_bf16(p + 2 * i, HK_SMALL, row->f + i);
    if (i < n) memcpy(row->f + i, load_tail(src, dt, i, n - i, HK_SMALL, &b), (n - i) * 4);
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

/* In locals and without branches (s's fields compared through the pointer
 * were stored and reloaded lane by lane, a tenth of a search over groups of
 * 64); the same comparisons in the same order. */
HK_INLINE void lanes_merge(const hk_lanes *a, mq_ref_stats *s)
{
    float lo = s->lo, hi = s->hi, amax = s->amax;
    uint32_t bad = 0;
    for (int j = 0; j < HK_LANES; j++) {
        bad |= a->bad[j];
        lo = a->lo[j] < lo ? a->lo[j] : lo;
        hi = a->hi[j] > hi ? a->hi[j] : hi;
        amax = a->amax[j] > amax ? a->amax[j] : amax;
    }
    s->lo = lo;
    s->hi = hi;
    s->amax = amax;
    if (bad) s->nonfinite = true;
}

/* The statistics of n values: blocks of HK_BIG, HK_SMALL and HK_TINY values,
 * the end padded to HK_TINY. */
HK_INLINE void stats_run(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
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

HK_CLONES void hk_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    stats_run(s, src, dt, n);
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

/* ---- the codes: one loop for every kind (qkind.h) ---- */

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

/* The e2m1 code of v as mq_f32_to_e2m1 after the reference's clamp to +-6
 * (a NaN clamps to -6): the magnitude code counts the thresholds passed, and
 * a -0 stays +0. The thresholds are compared as bits (|v| is finite, and its
 * bits are ordered as its value): GCC keeps float compares that are summed
 * as branches, and the loop scalar. */
HK_INLINE uint32_t e2m1_code(float v)
{
    v = v > -6.0f ? v : -6.0f;
    v = v < 6.0f ? v : 6.0f;
    uint32_t u = mq_f32_bits(v), a = u & 0x7fffffffu;
    uint32_t m = (uint32_t)(a > 0x3e800000u) + (uint32_t)(a >= 0x3f400000u) + /* 0.25, 0.75 */
                 (uint32_t)(a > 0x3fa00000u) + (uint32_t)(a >= 0x3fe00000u) + /* 1.25, 1.75 */
                 (uint32_t)(a > 0x40200000u) + (uint32_t)(a >= 0x40600000u) + /* 2.5, 3.5 */
                 (uint32_t)(a > 0x40a00000u);                                 /* 5 */
    return m | ((u >> 28) & 8u & -(uint32_t)(a != 0u));
}

/* The value of an e2m1 code: exponent e = bits 2..1 and mantissa bit m give
 * 2^(e-1) (1 + m/2), and m/2 for e = 0; built from its bits, without
 * branches (a -0 for code 8, as -(0.0f)). */
HK_INLINE float e2m1_value(uint32_t c)
{
    uint32_t e = (c >> 1) & 3u, m = c & 1u;
    uint32_t normal = ((e + 126u) << 23) | (m << 22), sub = m * 0x3f000000u;
    return mq_f32_from_bits((e ? normal : sub) | ((c & 8u) << 28));
}

/* Codes of kind k (a constant after inlining) for nb values, one byte each.
 * INT8 and INT4: clamp(rint(x / s + z), qmin, qmax) as the reference computes
 * it: the magic-number rint is exact for |v| < 2^22, and beyond that the clamp
 * gives the bound whatever the rounding, so rounding first and clamping after
 * (the two commute: monotonic, integer bounds) is the same. A NaN falls to the
 * lower bound, as fminf(fmaxf(NaN, qmin), qmax) gives. Rounding before the
 * clamp, with the clamp written as two selects, is the form GCC vectorizes for
 * SSE2, AVX2 and AVX-512 alike (a clamp first, against constants, left a
 * branch in the loop on some targets). Stored XOR cx. FP8: the e4m3 byte of
 * x / s clamped to +-448 (a NaN falls to -448). */
HK_INLINE void code_block(const float *restrict x, int nb, mq_qkind k, float s, float z, uint8_t cx,
                          uint8_t *restrict q)
{
    if (k == MQ_QK_MXFP4) {
        for (int j = 0; j < nb; j++)
            q[j] = (uint8_t)e2m1_code(x[j] / s);
        return;
    }
    if (k == MQ_QK_FP8 || k == MQ_QK_MXFP8) {
        /* MXFP8 adds compressed-tensors' zero point: -0 becomes +0. */
        for (int j = 0; j < nb; j++)
            q[j] = (uint8_t)e4m3_code(k == MQ_QK_MXFP8 ? x[j] / s + 0.0f : x[j] / s);
        return;
    }
    const float lo = k == MQ_QK_INT4 ? -8.0f : -128.0f, hi = k == MQ_QK_INT4 ? 7.0f : 127.0f;
    for (int j = 0; j < nb; j++) {
        float v = x[j] / s + z;
        v = (v + HK_RINT_MAGIC) - HK_RINT_MAGIC;
        v = v > lo ? v : lo;
        v = v < hi ? v : hi;
        q[j] = (uint8_t)((uint8_t)(int32_t)v ^ cx);
    }
}

/* The fp32 sums of (w tk)^2 and (e tk)^2 over HK_LANES lanes, at most
 * HK_BIG / HK_LANES = 32 terms a lane (relative error under 2e-6 per block),
 * then in double; and the largest |e|. tk is a power of two. */
HK_INLINE void err_sums(const float *restrict w, const float *restrict e, int nb, float tk,
                        double *sig_out, double *err2_out, float *max_out)
{
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
    double ds = 0.0, de = 0.0;
    float mm = 0.0f;
    for (int j = 0; j < HK_LANES; j++) {
        ds += (double)sig[j];
        de += (double)err2[j];
        mm = mx[j] > mm ? mx[j] : mm;
    }
    *sig_out = ds;
    *err2_out = de;
    *max_out = mm;
}

/* The codes of nb values (as code_block) and, for the first m (<= nb) of
 * them, the weight error w - w_hat into e (0 beyond m); returns how many of
 * the m were clamped, as mq_ref_error_stats counts them: clamped when the
 * value before the clamp lies outside the bounds (a NaN is not counted),
 * w_hat = (r - z) s for the int kinds (r the code before the XOR: r - z is
 * an exact small integer) or e4m3(q) s. The error w - w_hat is exact in fp32
 * (Sterbenz: w_hat is 0 or within a factor of 2 of w) except for a clamped
 * value (one fp32 rounding). */
HK_INLINE uint32_t code_errs(const float *restrict x, int nb, int m, mq_qkind k, float s, float z,
                             uint8_t cx, uint8_t *restrict q, float *restrict e)
{
    uint32_t c = 0;
    const float lo = k == MQ_QK_INT4 ? -8.0f : -128.0f, hi = k == MQ_QK_INT4 ? 7.0f : 127.0f;
    for (int j = 0; j < nb; j++) {
        int in = j < m;
        if (k == MQ_QK_MXFP4) {
            float v = x[j] / s;
            uint32_t b = e2m1_code(v);
            q[j] = (uint8_t)b;
            c += (uint32_t)(in & ((v < -6.0f) | (v > 6.0f)));
            e[j] = in ? x[j] - e2m1_value(b) * s : 0.0f;
        } else if (k == MQ_QK_FP8 || k == MQ_QK_MXFP8) {
            float v = k == MQ_QK_MXFP8 ? x[j] / s + 0.0f : x[j] / s;
            uint32_t b = e4m3_code(v);
            q[j] = (uint8_t)b;
            c += (uint32_t)in & e4m3_over(v);
            e[j] = in ? x[j] - e4m3_value(b) * s : 0.0f;
        } else {
            float v = x[j] / s + z;
            v = (v + HK_RINT_MAGIC) - HK_RINT_MAGIC;
            float r = v > lo ? v : lo;
            r = r < hi ? r : hi;
            q[j] = (uint8_t)((uint8_t)(int32_t)r ^ cx);
            /* INT8 counts r != v, as its kernel always has (the same count
             * for every value but a NaN, which never gets here with err:
             * such rows and runs are rejected first); one compare less. */
            c += (uint32_t)(in & (k == MQ_QK_INT8 ? r != v : (v < lo) | (v > hi)));
            e[j] = in ? x[j] - (r - z) * s : 0.0f;
        }
    }
    return c;
}

/* The sums of w^2 and e^2 and the largest |e| of nb (<= HK_BIG) values added
 * to acc (err_sums: fp32 lanes, then double). */
HK_INLINE void err_add(const float *restrict w, const float *restrict e, int nb,
                       mq_err_acc *restrict acc)
{
    double ds, de;
    float mm;
    err_sums(w, e, nb, 1.0f, &ds, &de, &mm);
    if (!(ds >= 0x1p-90) || !(ds + de < (double)INFINITY)) {
        /* Tiny or huge weights: summed again in units of 2^2k, k from the
         * block's largest |w| (as the OpenCL kernels do, see mq_err_exp), so
         * that no square underflows (subnormal weights) or overflows
         * (weights near FLT_MAX); a power of two changes no other rounding,
         * so elsewhere the plain sums above are the same numbers. */
        uint32_t am = 0; /* as bits: an integer maximum vectorizes */
        for (int j = 0; j < nb; j++) {
            uint32_t a = mq_f32_bits(w[j]) & 0x7fffffffu;
            am = a > am ? a : am;
        }
        int ke = (int)(am >> 23) - 127; /* ilogb for a normal maximum; -127 below */
        int ex = (ke < -127 ? -127 : ke > 125 ? 125 : ke) + 1;
        err_sums(w, e, nb, mq_f32_from_bits((uint32_t)(127 - ex) << 23), &ds, &de, &mm);
        double unit = ldexp(1.0, 2 * ex);
        ds *= unit;
        de *= unit;
    }
    acc->sig += ds;
    acc->err2 += de;
    if ((double)mm > acc->max_abs) acc->max_abs = (double)mm;
}

/* code_block with the weight error of the first m (<= nb) values added to
 * acc as mq_ref_error_stats counts it, while the block is in registers. Two
 * passes, so each vectorizes: the codes, the clamp count (an integer sum)
 * and the errors, then the sums. */
HK_INLINE void code_block_err(const float *restrict x, int nb, int m, mq_qkind k, float s, float z,
                              uint8_t cx, uint8_t *restrict q, mq_err_acc *restrict acc)
{
    /* w: the values counted (a whole block counts x itself, no copy) */
    float wpart[HK_BIG], e[HK_BIG];
    const float *w = x;
    if (m != nb) {
        for (int j = 0; j < nb; j++)
            wpart[j] = j < m ? x[j] : 0.0f;
        w = wpart;
    }
    acc->clamped += code_errs(x, nb, m, k, s, z, cx, q, e);
    err_add(w, e, nb, acc);
}

/* The first m codes of a block of nb to their place: byte i of out, or with
 * pack (INT4) nibble i of the packed row, code + 8, i even; the pairs are
 * packed over the whole block (a constant trip count), then copied. */
HK_INLINE void code_put(const uint8_t *restrict c, int nb, int m, bool pack, unsigned off, size_t i,
                        uint8_t *restrict out)
{
    if (!pack) {
        memcpy(out + i, c, (size_t)m);
        return;
    }
    uint8_t pk[HK_BIG / 2];
    for (int j = 0; j < nb / 2; j++)
        pk[j] = (uint8_t)(((c[2 * j] + off) & 15u) | (((c[2 * j + 1] + off) & 15u) << 4));
    if (m & 1) pk[m / 2] &= 0x0fu; /* an odd end: its high nibble is padding */
    memcpy(out + i / 2, pk, (size_t)(m + 1) / 2);
}

/* One block of nb values at element i: codes, placed, and with acc the error
 * of its first m values. A whole block of byte codes is written in place. */
HK_INLINE void code_step(const float *restrict x, int nb, int m, mq_qkind k, float s, float z,
                         uint8_t cx, bool pack, size_t i, uint8_t *restrict out, mq_err_acc *acc)
{
    uint8_t c[HK_BIG];
    bool direct = !pack && m == nb;
    uint8_t *dst = direct ? out + i : c;
    if (acc)
        code_block_err(x, nb, m, k, s, z, cx, dst, acc);
    else
        code_block(x, nb, k, s, z, cx, dst);
    /* int4 nibbles are code + 8, e2m1's the code */
    if (!direct) code_put(c, nb, m, pack, k == MQ_QK_INT4 ? 8u : 0u, i, out);
}

/* The codes of n values with fixed parameters into out (one byte each, or
 * INT4 packed with pack), and with acc their weight error. The padding of a
 * packed row is the caller's. */
HK_INLINE void code_run(const void *src, mq_dtype dt, size_t n, mq_qkind k, float s, int8_t zp,
                        uint8_t cx, bool pack, uint8_t *out, mq_err_acc *acc)
{
    hk_block b;
    float z = (float)zp;
    size_t i = 0;
    for (; i + HK_BIG <= n; i += HK_BIG)
        code_step(load_block(src, dt, i, HK_BIG, &b), HK_BIG, HK_BIG, k, s, z, cx, pack, i, out,
                  acc);
    for (; i + HK_SMALL <= n; i += HK_SMALL)
        code_step(load_block(src, dt, i, HK_SMALL, &b), HK_SMALL, HK_SMALL, k, s, z, cx, pack, i,
                  out, acc);
    for (; i + HK_TINY <= n; i += HK_TINY)
        code_step(load_block(src, dt, i, HK_TINY, &b), HK_TINY, HK_TINY, k, s, z, cx, pack, i, out,
                  acc);
    if (i < n)
        code_step(load_tail(src, dt, i, n - i, HK_TINY, &b), HK_TINY, (int)(n - i), k, s, z, cx,
                  pack, i, out, acc);
}

/* ---- tiles: HK_GT short groups (rows of a call) at once ----
 * A group of 128 as a row of its own paid, per group, a merge of its
 * statistics' lanes, scalar parameters, and codes, packing and error sums
 * each in blocks of 64. A tile holds HK_GT whole groups, contiguous in the
 * input and in the output: the statistics of all are folded together, the
 * int kinds' scales and zero points are computed across the groups in vector
 * code, the codes are packed and the errors summed over the tile at once. */

/* Each lane holds one group: one AVX-512 vector of scales. */
#define HK_GT 16
/* The longest group taken in tiles: groups of 16 (NVFP4's), 32, 64 and 128
 * are (the sizes schemes use), each with its own copy of the loops; longer
 * ones have little per-group cost. */
#define HK_GT_COLS 128

typedef struct {
    float lo[HK_GT], hi[HK_GT], amax[HK_GT];
    uint32_t bad[HK_GT];
} hk_gstats;

/* Halves lanes [w, 2w) into [0, w) of each group's accumulators. */
HK_INLINE void lanes_fold(hk_lanes *restrict a, int w)
{
    for (int g = 0; g < HK_GT; g++)
        for (int j = 0; j < w; j++) {
            a[g].lo[j] = a[g].lo[j + w] < a[g].lo[j] ? a[g].lo[j + w] : a[g].lo[j];
            a[g].hi[j] = a[g].hi[j + w] > a[g].hi[j] ? a[g].hi[j + w] : a[g].hi[j];
            a[g].amax[j] = a[g].amax[j + w] > a[g].amax[j] ? a[g].amax[j + w] : a[g].amax[j];
            a[g].bad[j] |= a[g].bad[j + w];
        }
}

/* The statistics of the HK_GT groups of n values (a multiple of HK_LANES) at
 * x, as stats_run gives them (lo and hi up to the sign of a zero). */
HK_INLINE void tile_stats(const float *restrict x, size_t n, hk_gstats *restrict t)
{
    hk_lanes a[HK_GT];
    for (int g = 0; g < HK_GT; g++) {
        lanes_init(&a[g]);
        lanes_update(&a[g], x + (size_t)g * n, (int)n);
    }
    lanes_fold(a, 8);
    lanes_fold(a, 4);
    lanes_fold(a, 2);
    lanes_fold(a, 1);
    for (int g = 0; g < HK_GT; g++) {
        t->lo[g] = a[g].lo[0];
        t->hi[g] = a[g].hi[0];
        t->amax[g] = a[g].amax[0];
        t->bad[g] = a[g].bad[0];
    }
}

/* The value of half bits h (widen_f16's arithmetic, one value). */
HK_INLINE float half_value(uint32_t h)
{
    uint32_t em = h & 0x7fffu, m = h & 0x3ffu;
    uint32_t fin = mq_f32_bits(mq_f32_from_bits(em << 13) * 0x1p112f);
    uint32_t special = 0x7f800000u | (m << 13) | ((uint32_t)(m != 0) << 22);
    uint32_t is_special = -(uint32_t)(em >= 0x7c00u);
    return mq_f32_from_bits((special & is_special) | (fin & ~is_special) | ((h & 0x8000u) << 16));
}

/* v (not a NaN) rounded to dtype dt and back, as reference.c's
 * round_to_dtype: BF16 by its rounding add, F16 by f32_to_f16_bits. */
HK_INLINE float round_dt(float v, mq_dtype dt)
{
    uint32_t u = mq_f32_bits(v), o;
    if (dt == MQ_DTYPE_BF16)
        return mq_f32_from_bits((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
    if (dt == MQ_DTYPE_F16) return half_value(f32_to_f16_bits(u, false, &o));
    return v;
}

/* The scales and zero points of a tile's groups for the int kinds, as
 * mq_ref_params computes them, one group a lane (no group holds a NaN or
 * Inf), and the scales stored in dt at scale (the groups' first index). */
HK_INLINE void tile_params_int(mq_qkind k, bool sym, const hk_gstats *restrict t, mq_dtype dt,
                               float *restrict s, float *restrict z, void *scale)
{
    const float qmin = k == MQ_QK_INT4 ? -8.0f : -128.0f, qmax = k == MQ_QK_INT4 ? 7.0f : 127.0f;
    const float span = qmax - qmin;
    const float eps = dt == MQ_DTYPE_F16 ? 0x1p-10f : dt == MQ_DTYPE_BF16 ? 0x1p-7f : FLT_EPSILON;
    for (int g = 0; g < HK_GT; g++) {
        float sc, zz = 0.0f;
        if (sym) {
            sc = t->amax[g] / (span / 2.0f);
            if (k == MQ_QK_INT8) sc = sc >= FLT_EPSILON ? sc : FLT_EPSILON;
            sc = round_dt(sc, dt);
        } else {
            float lo = t->lo[g] < 0.0f ? t->lo[g] : 0.0f, hi = t->hi[g] > 0.0f ? t->hi[g] : 0.0f;
            float range = hi - lo;
            /* near +-FLT_MAX the difference overflows, the scale does not */
            sc = range > FLT_MAX ? hi / span - lo / span : range / span;
            if (k == MQ_QK_INT8) sc = sc >= FLT_EPSILON ? sc : FLT_EPSILON;
            sc = round_dt(sc, dt);
            /* rint by the magic number: exact below 2^22, and beyond that
             * (or at +inf) the clamp gives qmax whatever the rounding */
            float zr = qmin - lo / sc;
            zr = (zr + HK_RINT_MAGIC) - HK_RINT_MAGIC;
            zr = zr > qmin ? zr : qmin;
            zr = zr < qmax ? zr : qmax;
            zz = sc == 0.0f ? (lo < 0.0f ? qmax : 0.0f) : zr;
        }
        s[g] = sc == 0.0f ? eps : sc;
        z[g] = zz;
    }
    /* s is exact in dt: the stores are plain bit moves. */
    if (dt == MQ_DTYPE_F32) {
        memcpy(scale, s, HK_GT * sizeof(float));
    } else {
        uint16_t h[HK_GT];
        for (int g = 0; g < HK_GT; g++) {
            uint32_t u = mq_f32_bits(s[g]), o;
            h[g] = (uint16_t)(dt == MQ_DTYPE_BF16 ? u >> 16 : f32_to_f16_bits(u, false, &o));
        }
        memcpy(scale, h, sizeof h);
    }
}

/* NVFP4's scales of a tile's groups, one group a lane, as mq_ref_params
 * computes them and mq_store_group_scale stores them: the e4m3 byte of
 * gscale times amax / 6 as dt holds it (e4m3_code clamps to +-448, as the
 * reference's fminf and fmaxf do), a zero's byte that of 2^-3; into s the
 * byte's value over gscale, the scale the codes divide by. */
HK_INLINE void tile_params_nvfp4(float gscale, const hk_gstats *restrict t, mq_dtype dt,
                                 float *restrict s, uint8_t *restrict scale)
{
    for (int g = 0; g < HK_GT; g++) {
        uint32_t c = e4m3_code(gscale * round_dt(t->amax[g] / 6.0f, dt));
        c = (c & 0x7fu) == 0u ? 0x20u : c; /* 2^-3 */
        scale[g] = (uint8_t)c;
        s[g] = e4m3_value(c) / gscale;
    }
}

/* The scratch of one tile. */
typedef struct {
    float x[HK_GT * HK_GT_COLS];
    float e[HK_GT * HK_GT_COLS];
    uint8_t c[HK_GT * HK_GT_COLS];
} hk_tile;

/* HK_GT groups of n values (32, 64 or 128), g0 the first one's index: false (nothing written) when
 * one of them holds a NaN or Inf, for the group-by-group loop to name it. With pack, the groups'
 * packed codes are whole bytes one after the other (n is even, and a multiple of 8 has no int4
 * padding), as the byte codes are. */
HK_INLINE bool tile_run(mq_qkind k, mq_qdesc d, const unsigned char *src, mq_dtype dt, size_t n,
                        size_t g0, uint8_t *q, void *scale, int8_t *zp, mq_err_acc *err,
                        hk_tile *restrict t)
{
    const size_t tn = HK_GT * n;
    const float *x = t->x;
    if (dt == MQ_DTYPE_F16) {
        mq_hk_widen_f16(src, tn, t->x);
    } else if (dt == MQ_DTYPE_BF16) {
        for (size_t i = 0; i < tn; i += HK_SMALL)
            widen_bf16(src + 2 * i, HK_SMALL, t->x + i);
    } else if ((uintptr_t)src % sizeof(float) == 0) {
        x = (const float *)(const void *)src;
    } else {
        memcpy(t->x, src, tn * sizeof(float));
    }
    hk_gstats st;
    tile_stats(x, n, &st);
    uint32_t bad = 0;
    for (int g = 0; g < HK_GT; g++)
        bad |= st.bad[g];
    if (bad) return false;
    float s[HK_GT], z[HK_GT];
    bool pack = k == MQ_QK_INT4 || mq_qkind_is_fp4(k);
    const mq_qkind ck = k == MQ_QK_NVFP4 ? MQ_QK_MXFP4 : k;
    if (k == MQ_QK_INT4 || k == MQ_QK_INT8) {
        size_t ss = mq_dtype_size(dt);
        tile_params_int(k, d.symmetric, &st, dt, s, z, (unsigned char *)scale + g0 * ss);
        if (zp && mq_qdesc_has_zp(d))
            for (int g = 0; g < HK_GT; g++)
                zp[g0 + g] = (int8_t)(int32_t)z[g];
    } else if (k == MQ_QK_NVFP4) {
        tile_params_nvfp4(d.gscale, &st, dt, s, (uint8_t *)scale + g0);
        for (int g = 0; g < HK_GT; g++)
            z[g] = 0.0f;
    } else {
        for (int g = 0; g < HK_GT; g++) {
            mq_ref_stats rs = {.lo = st.lo[g], .hi = st.hi[g], .amax = st.amax[g]};
            int8_t zz;
            (void)mq_ref_group_params(d, &rs, dt, g0 + g, scale, zp, NULL, &s[g], &zz);
            z[g] = (float)zz;
        }
    }
    uint8_t *c = pack ? t->c : q;
    if (err) {
        uint32_t clamped = 0;
        for (int g = 0; g < HK_GT; g++)
            clamped += code_errs(x + g * n, (int)n, (int)n, ck, s[g], z[g], d.code_xor, c + g * n,
                                 t->e + g * n);
        err->clamped += clamped;
        for (size_t i = 0; i < tn; i += HK_BIG)
            err_add(x + i, t->e + i, tn - i < HK_BIG ? (int)(tn - i) : HK_BIG, err);
    } else {
        for (int g = 0; g < HK_GT; g++)
            code_block(x + g * n, (int)n, ck, s[g], z[g], d.code_xor, c + g * n);
    }
    if (pack) {
        /* int4 nibbles are code + 8, e2m1's the code */
        const unsigned off = k == MQ_QK_INT4 ? 8u : 0u;
        for (size_t j = 0; j < tn / 2; j++)
            q[j] = (uint8_t)(((c[2 * j] + off) & 15u) | (((c[2 * j + 1] + off) & 15u) << 4));
    }
    return true;
}

/* The statistics of a group: rows [0, nr) of columns [c0, c0 + nc) of src,
 * whose rows are `cols` values long. A band of rows whose runs are whole
 * blocks of HK_SMALL shares one set of lanes, merged once (a merge per row
 * costs as much as a 128-value row). */
HK_INLINE void group_stats(mq_ref_stats *st, const unsigned char *src, mq_dtype dt, size_t nr,
                           size_t cols, size_t c0, size_t nc)
{
    size_t es = mq_dtype_size(dt);
    mq_ref_stats_init(st);
    if (nr > 1 && nc % HK_SMALL == 0) {
        hk_lanes a;
        hk_block b;
        lanes_init(&a);
        for (size_t r = 0; r < nr; r++)
            for (size_t i = 0; i < nc; i += HK_SMALL)
                lanes_update(&a, load_block(src, dt, r * cols + c0 + i, HK_SMALL, &b), HK_SMALL);
        lanes_merge(&a, st);
        return;
    }
    for (size_t r = 0; r < nr; r++)
        stats_run(st, src + (r * cols + c0) * es, dt, nc);
}

/* The one quantize loop (mq_hk_quantize): bands of rows (one row, or bs of
 * them), each cut into groups (the row, or bs-column blocks); per group its
 * statistics, scale and zero point, then its codes row by row. k is a
 * constant after inlining. */
HK_INLINE mq_status quantize_groups(mq_qkind k, mq_qdesc d, const void *src, mq_dtype dt,
                                    size_t rows, size_t cols, uint8_t *q, void *scale, int8_t *zp,
                                    size_t *bad, mq_err_acc *err)
{
    const unsigned char *in = src;
    size_t es = mq_dtype_size(dt), qb = mq_qkind_row_bytes(k, cols);
    size_t gr = d.block ? d.block : 1, gc = d.block ? d.block : cols;
    size_t nbr = (rows + gr - 1) / gr, nbc = d.block ? (cols + gc - 1) / gc : 1;
    bool pack = k == MQ_QK_INT4 || mq_qkind_is_fp4(k);
    /* NVFP4's codes are MXFP4's under the scale divided by the global scale
     * (the reference's two fp32 divisions: s / g, then w by that). */
    const mq_qkind ck = k == MQ_QK_NVFP4 ? MQ_QK_MXFP4 : k;
    /* An F16 or BF16 row short enough is widened once, not once per pass. */
    hk_row wide;
    bool cache = !d.block && dt != MQ_DTYPE_F32 && cols >= HK_SMALL && cols <= HK_ROW_CACHE;
    size_t bi = 0;
    if (!d.block && (cols == 16 || cols == 32 || cols == 64 || cols == 128) && rows >= HK_GT) {
        hk_tile t;
        for (; bi + HK_GT <= rows; bi += HK_GT) {
            const unsigned char *tsrc = in + bi * cols * es;
            uint8_t *tq = q + bi * qb;
            /* n a constant in each: with n a variable, GCC left the loops
             * scalar (3.5 to 4.6 times slower, measured) */
            bool ok = cols == 16   ? tile_run(k, d, tsrc, dt, 16, bi, tq, scale, zp, err, &t)
                      : cols == 32 ? tile_run(k, d, tsrc, dt, 32, bi, tq, scale, zp, err, &t)
                      : cols == 64 ? tile_run(k, d, tsrc, dt, 64, bi, tq, scale, zp, err, &t)
                                   : tile_run(k, d, tsrc, dt, 128, bi, tq, scale, zp, err, &t);
            if (!ok) break; /* the loop below names the bad group */
        }
    }
    for (; bi < nbr; bi++) {
        size_t r0 = bi * gr, nr = rows - r0 < gr ? rows - r0 : gr;
        const unsigned char *band = in + r0 * cols * es;
        mq_dtype bdt = dt;
        if (cache) {
            widen_row(band, dt, cols, &wide);
            band = (const unsigned char *)wide.f;
            bdt = MQ_DTYPE_F32;
        }
        size_t bes = mq_dtype_size(bdt);
        for (size_t bj = 0; bj < nbc; bj++) {
            size_t g = bi * nbc + bj, c0 = bj * gc, nc = cols - c0 < gc ? cols - c0 : gc;
            mq_ref_stats st;
            group_stats(&st, band, bdt, nr, cols, c0, nc);
            float s;
            int8_t z;
            mq_status ps = mq_ref_group_params(d, &st, dt, g, scale, zp, bad, &s, &z);
            if (ps != MQ_OK) return ps;
            for (size_t r = 0; r < nr; r++) {
                uint8_t *out = q + (r0 + r) * qb;
                /* the padding, and an odd last byte */
                if (pack && c0 == 0) memset(out + cols / 2, 0, qb - cols / 2);
                code_run(band + (r * cols + c0) * bes, bdt, nc, ck,
                         k == MQ_QK_NVFP4 ? s / d.gscale : s, z, d.code_xor, pack,
                         out + (pack ? c0 / 2 : c0), err);
            }
        }
    }
    return MQ_OK;
}

/* One function (and one set of clones) per kind and per err NULL or not:
 * each is small enough for the compiler to keep its loop constants in
 * registers, which one function holding all six copies did not. */
#define HK_QUANTIZE(NAME, K, ERR)                                                                  \
    HK_CLONES mq_status NAME(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,   \
                             uint8_t *q, void *scale, int8_t *zp, size_t *bad, mq_err_acc *err)    \
    {                                                                                              \
        (void)err;                                                                                 \
        return quantize_groups(K, d, src, dt, rows, cols, q, scale, zp, bad, ERR);                 \
    }
HK_QUANTIZE(hk_quantize_int8, MQ_QK_INT8, NULL)
HK_QUANTIZE(hk_quantize_int8_err, MQ_QK_INT8, err)
HK_QUANTIZE(hk_quantize_int4, MQ_QK_INT4, NULL)
HK_QUANTIZE(hk_quantize_int4_err, MQ_QK_INT4, err)
HK_QUANTIZE(hk_quantize_fp8, MQ_QK_FP8, NULL)
HK_QUANTIZE(hk_quantize_fp8_err, MQ_QK_FP8, err)
HK_QUANTIZE(hk_quantize_mxfp4, MQ_QK_MXFP4, NULL)
HK_QUANTIZE(hk_quantize_mxfp4_err, MQ_QK_MXFP4, err)
HK_QUANTIZE(hk_quantize_mxfp8, MQ_QK_MXFP8, NULL)
HK_QUANTIZE(hk_quantize_mxfp8_err, MQ_QK_MXFP8, err)
HK_QUANTIZE(hk_quantize_nvfp4, MQ_QK_NVFP4, NULL)
HK_QUANTIZE(hk_quantize_nvfp4_err, MQ_QK_NVFP4, err)

/* Fixed MX parameters (quantize_values, for the two-pass paths): the
 * reference's scalar codes, one a byte, and the weight error as the
 * reference counts it. */
static void mx_values(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float scale, uint8_t *q,
                      mq_err_acc *err)
{
    mq_ref_quantize_values(d, src, dt, n, scale, 0, q);
    if (!err) return;
    const float qmax = mq_qkind_qmax(d.kind);
    for (size_t i = 0; i < n; i++) {
        float w = mq_load_f32(src, dt, i), v = w / scale;
        float code = d.kind == MQ_QK_MXFP4 ? mq_e2m1_to_f32(q[i]) : mq_e4m3_to_f32(q[i]);
        double e = (double)w - (double)(code * scale);
        if (v < -qmax || v > qmax) err->clamped++;
        err->sig += (double)w * (double)w;
        err->err2 += e * e;
        if (fabs(e) > err->max_abs) err->max_abs = fabs(e);
    }
}

HK_CLONES void hk_quantize_values(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float scale,
                                  int8_t zp, uint8_t *q, mq_err_acc *err)
{
    switch (d.kind) {
    case MQ_QK_MXFP4:
    case MQ_QK_MXFP8:
        mx_values(d, src, dt, n, scale, q, err);
        break;
    case MQ_QK_NVFP4: {
        /* MXFP4's codes under the scale the global scale divides. */
        mq_qdesc m = d;
        m.kind = MQ_QK_MXFP4;
        mx_values(m, src, dt, n, scale / d.gscale, q, err);
        break;
    }
    case MQ_QK_INT8:
        if (err)
            code_run(src, dt, n, MQ_QK_INT8, scale, zp, d.code_xor, false, q, err);
        else
            code_run(src, dt, n, MQ_QK_INT8, scale, zp, d.code_xor, false, q, NULL);
        break;
    case MQ_QK_INT4:
        if (err)
            code_run(src, dt, n, MQ_QK_INT4, scale, zp, 0, false, q, err);
        else
            code_run(src, dt, n, MQ_QK_INT4, scale, zp, 0, false, q, NULL);
        break;
    default:
        if (err)
            code_run(src, dt, n, MQ_QK_FP8, scale, zp, 0, false, q, err);
        else
            code_run(src, dt, n, MQ_QK_FP8, scale, zp, 0, false, q, NULL);
        break;
    }
}

mq_status mq_hk_quantize(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,
                         void *q, void *scale, int8_t *zp, size_t *bad, mq_err_acc *err)
{
    if (d.block && d.kind != MQ_QK_FP8) return MQ_STATUS_E_INVALID_ARG;
    switch (d.kind) {
    case MQ_QK_MXFP4:
        return (err ? hk_quantize_mxfp4_err : hk_quantize_mxfp4)(d, src, dt, rows, cols, q, scale,
                                                                 zp, bad, err);
    case MQ_QK_MXFP8:
        return (err ? hk_quantize_mxfp8_err : hk_quantize_mxfp8)(d, src, dt, rows, cols, q, scale,
                                                                 zp, bad, err);
    case MQ_QK_NVFP4:
        return (err ? hk_quantize_nvfp4_err : hk_quantize_nvfp4)(d, src, dt, rows, cols, q, scale,
                                                                 zp, bad, err);
    case MQ_QK_INT8:
        return (err ? hk_quantize_int8_err : hk_quantize_int8)(d, src, dt, rows, cols, q, scale, zp,
                                                               bad, err);
    case MQ_QK_INT4:
        return (err ? hk_quantize_int4_err : hk_quantize_int4)(d, src, dt, rows, cols, q, scale, zp,
                                                               bad, err);
    default:
        return (err ? hk_quantize_fp8_err : hk_quantize_fp8)(d, src, dt, rows, cols, q, scale, zp,
                                                             bad, err);
    }
}

void mq_hk_quantize_values(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float scale,
                           int8_t zp, void *q, mq_err_acc *err)
{
    hk_quantize_values(d, src, dt, n, scale, zp, q, err);
}

void mq_hk_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    hk_stats_update(s, src, dt, n);
}

uint64_t mq_hk_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst)
{
    return hk_cast_f16(src, dt, n, saturate, dst);
}
