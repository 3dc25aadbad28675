/* The mse observer's scan on the host (see cpukern.h): the same records as
 * mq_obs_mse_scan, bit for bit.
 *
 * Lanes are candidate steps: eight steps of one group run side by side in
 * GCC vector types (one AVX2 register), each lane computing its own error
 * (exactly: its terms summed in torch's order, mq_obs_sum; screened: eight
 * values added pairwise, then in turn). The group's statistics and values
 * are gathered once for all its steps. A screened block stops early once
 * every lane's partial sum has certainly reached the group's best error
 * before the block: the terms are never negative, so such a sum can only
 * stay at or above it, and only a strictly smaller error counts.
 *
 * The steps are screened (keep_fast): the lanes sum a cheaper power
 * (ms_pow_fast, with fused multiply-adds where the CPU has them) whose
 * distance to the exact error is bounded, relatively and, for the terms of
 * tiny differences, absolutely; a step's record follows from those sums
 * wherever the bounds decide it; where they do not (near ties), the exact
 * errors of the step and of the group's best are computed as the reference
 * does (the same fp32 and double operations in the same order, the exact
 * power being obspow.h's, the sum in torch's order) and decide. Symmetric
 * kinds skip their zero points of 0 (the same bits). */
#include "cpukern.h"

#include "obspow.h"
#include "pool.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* x86-64-v4 (AVX-512 with VL) rather than avx512f alone: the loop's 256-bit
 * vectors then have 32 registers instead of 16, and spill less. clang gets
 * the plain build: clang 15 refuses the vector arguments of the inlined
 * helpers in the default clone (and clang 14 has no usable clones, see
 * cpukern.c). */
#if defined(__clang__)
#define MS_CLONES static
#else
#define MS_CLONES                                                                                  \
    static __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

/* The screening's functions are compiled with contraction (a * b + c as one
 * fused multiply-add where the clone has FMA): ms_pow_fast's polynomials and
 * the weighted sums then take fewer operations and round less, which its
 * bound allows (the bound is of the unfused steps; each fusion drops a
 * rounding). The differences |fake_quantize(w) - w| must stay the
 * reference's bits there too: their products are fenced off (MS_EXACT, in
 * the functions with `fc`) so that no subtraction fuses with them. clang
 * compiles the screening as the exact functions. */
#if defined(__clang__)
#define MS_SCREEN
#define MS_CONTRACTS false
#else
#define MS_SCREEN __attribute__((optimize("fp-contract=fast")))
#define MS_CONTRACTS true
#endif
#define MS_INLINE static inline __attribute__((always_inline))

/* The helpers taking and returning vector types are always inlined into the
 * clones, so no call crosses the ABI the warning is about. */
#pragma GCC diagnostic ignored "-Wpsabi"

#define MS_LANES 8  /* steps at once */
#define MS_CHECK 32 /* values between checks for a block that can no longer improve */

typedef float ms_f __attribute__((vector_size(MS_LANES * 4)));
typedef int32_t ms_i __attribute__((vector_size(MS_LANES * 4)));
typedef uint32_t ms_u __attribute__((vector_size(MS_LANES * 4)));

/* x unchanged, but when `on`, ORed with a zero the compiler cannot see
 * (mq_hk_mse_fence): a product passed through it is rounded to fp32 before
 * anything adds to it, in a function compiled with contraction. GCC's own
 * fence (__builtin_assoc_barrier) took vectors apart lane by lane. */
MS_INLINE ms_f ms_fence(bool on, ms_f x)
{
    return on && MS_CONTRACTS ? (ms_f)((ms_i)x | mq_hk_mse_fence) : x;
}

#define MS_EXACT(x) ms_fence(fc, x)

MS_INLINE ms_f ms_splat(float x)
{
    return (ms_f){x, x, x, x, x, x, x, x};
}

MS_INLINE ms_f ms_fsel(ms_i m, ms_f a, ms_f b)
{
    return (ms_f)(((ms_i)a & m) | ((ms_i)b & ~m));
}

/* mq_obs_pow of lanes [0, need), the others 0 (a double-precision power,
 * scalar: the exact terms are needed only for near ties and small or
 * unscreened searches). */
MS_INLINE ms_f ms_pow_lanes(ms_f x, float n, int need)
{
    ms_f r = ms_splat(0.0f);
    for (int l = 0; l < need; l++)
        r[l] = mq_obs_pow(x[l], n);
    return r;
}

/* x^n within a relative ms_fast_rel(n) of its exact value for x in
 * ms_mid_range's [lo, hi): log2 x from the exponent and a degree-5
 * polynomial in the mantissa m - 1 (m in [1, 2); at most 1.28e-5 from
 * log2 m, measured over every fp32 m), y = n log2 x split into an integer k
 * and g in [-1/2, 1/2], 2^g from a degree-4 polynomial (relative error at
 * most 2.71e-6), and 2^k added to the result's exponent. Below lo (0,
 * subnormals and tiny normals, whose powers are below lo^n) k is held at
 * -100 or above, so the result is a positive normal fp32 below 2^-99, and
 * within ms_fast_tiny(n) of x^n, as x^n is of 0: an absolute bound. About
 * a third of the exact power's operations in fp32, no division and no test of the range.
 * Only the search's screening uses it (see keep_fast): a decision it cannot
 * make within the bounds goes to the exact power. */
MS_INLINE ms_f ms_pow_fast(ms_f x, float n)
{
    ms_i b = (ms_i)x;
    ms_f e = __builtin_convertvector((b >> 23) - 127, ms_f);
    ms_f r = (ms_f)((b & 0x007fffff) | 0x3f800000) - 1.0f;
    ms_f r2 = r * r;
    ms_f l = ((r * 1.4416845f + 1.2539386e-05f) + r2 * (r * 0.4136293f - 0.7079924f)) +
             (r2 * r2) * (r * 0.044873215f - 0.19219467f);
    ms_f y = n * (e + l);
    ms_f y1 = y + 12582912.0f; /* 1.5 * 2^23: y rounded to an integer in the low bits */
    ms_f g = y - (y1 - 12582912.0f), g2 = g * g;
    ms_f p =
        (g * 0.6931218f + 0.9999993f) + g2 * ((g * 0.05591786f + 0.24024744f) + g2 * 0.009570098f);
    ms_i k = (ms_i)y1 - 0x4b400000; /* the bits of 1.5 * 2^23 */
    ms_i low = k < -100;
    k = (k & ~low) | (-100 & low);
    return (ms_f)((ms_i)p + (k << 23));
}

/* The largest relative difference between ms_pow_fast(x, n) and x^n for the
 * x it takes: the polynomials' errors (log2's times n ln 2), the rounding of
 * e + l and of y (|y| <= 96, so at most 96 ulps of 2^-24 each, times ln 2),
 * that of the Horner steps, with half as much again to spare;
 * tests/test_msekern.c checks it against the exact power. */
static double ms_fast_rel(double n)
{
    return 1.5 * (n * 0.6931472 * 1.28e-5 + 2.0 * 96.0 * 0.6931472 * 0x1p-24 + 2.71e-6 + 1e-6);
}

/* The magnitudes within which ms_pow_fast keeps its relative bound for the
 * power n: [2^-L, 2^L) with n (L + 1) <= 96, so |y| <= 96; lo = hi = 1
 * (an empty range, no screening) when n leaves no such L. */
static void ms_mid_range(float n, float *lo, float *hi)
{
    double L = n > 0.0f ? floor(96.0 / (double)n) - 1.0 : 0.0;
    if (L > 120.0) L = 120.0;
    *lo = *hi = 1.0f;
    if (L >= 1.0) {
        *lo = ldexpf(1.0f, -(int)L);
        *hi = ldexpf(1.0f, (int)L);
    }
}

/* The largest distance between ms_pow_fast(x, n) and x^n for x in [0, lo)
 * (lo from ms_mid_range): both lie in [0, max(lo^n (1 + rel), 2^-99)]. */
static double ms_fast_tiny(double n, float lo)
{
    double t = pow((double)lo, n) * (1.0 + 2.0 * ms_fast_rel(n));
    return t > 0x1p-99 ? t : 0x1p-99;
}

MS_CLONES void ms_pow_run(const float *x, size_t n, float norm, float *out)
{
    for (size_t i = 0; i + MS_LANES <= n; i += MS_LANES) {
        ms_f v;
        memcpy(&v, x + i, sizeof v);
        v = ms_pow_lanes(v, norm, MS_LANES);
        memcpy(out + i, &v, sizeof v);
    }
}

void mq_hk_obs_pow(const float *x, size_t n, float norm, float *out)
{
    ms_pow_run(x, n, norm, out);
}

MS_CLONES MS_SCREEN void ms_pow_fast_run(const float *x, size_t n, float norm, float *out)
{
    for (size_t i = 0; i + MS_LANES <= n; i += MS_LANES) {
        ms_f v;
        memcpy(&v, x + i, sizeof v);
        v = ms_pow_fast(v, norm);
        memcpy(out + i, &v, sizeof v);
    }
}

void mq_hk_obs_pow_fast(const float *x, size_t n, float norm, float *out, double *rel, float *lo,
                        double *tiny)
{
    float hi;
    ms_pow_fast_run(x, n, norm, out);
    *rel = ms_fast_rel(norm);
    ms_mid_range(norm, lo, &hi);
    *tiny = ms_fast_tiny(norm, *lo);
}

double mq_hk_mse_slack = 1.0;
int32_t mq_hk_mse_fence;
size_t mq_hk_mse_rechecks;

/* rint of x for |x| < 2^22 under round-to-nearest-even: 1.5 * 2^23 added
 * and taken away again. */
#define MS_RINT_MAGIC 12582912.0f

/* The e4m3fn value of v, |v| <= 448, as mq_e4m3_to_f32(mq_f32_to_e4m3(v))
 * up to the sign of a zero (which the error, 0 * s - w, never sees): the
 * magnitude rounded half to even to three fraction bits by adding and
 * taking away 2^(E + 20) (E its exponent), or below 2^-6 to the subnormal
 * step 2^-9 by adding 2^14. */
MS_INLINE ms_f ms_e4m3(ms_f v)
{
    ms_i sign = (ms_i)v & (int32_t)0x80000000u;
    ms_f a = (ms_f)((ms_i)v & 0x7fffffff);
    ms_f c = (ms_f)(((ms_i)a & 0x7f800000) + (20 << 23));
    ms_f normal = (a + c) - c;
    ms_f sub = (a + 16384.0f) - 16384.0f;
    ms_f r = ms_fsel(a < 0x1p-6f, sub, normal);
    return (ms_f)((ms_i)r | sign);
}

typedef struct {
    float s[MS_LANES], z[MS_LANES];
} ms_params;

/* One value's |fake_quantize(w) - w| in each lane. Without `zp` every
 * lane's zero point is 0 and is neither added nor taken away: w / s + 0
 * differs from w / s only for -0, which the rounding below turns into +0
 * either way, and q - 0 is q. */
MS_INLINE ms_f ms_diff(bool fc, bool fp8, bool zp, ms_f wv, ms_f s, ms_f z, ms_f lo, ms_f hi)
{
    ms_f d;
    if (fp8) {
        ms_f v = wv / s;
        v = ms_fsel(v > lo, v, lo); /* fmaxf then fminf: v is never NaN here */
        v = ms_fsel(v < hi, v, hi);
        d = MS_EXACT(ms_e4m3(v) * s) - wv;
    } else {
        /* The magic rint is exact for |x| < 2^22; beyond, rounding is
         * monotone, so x >= qmax + 1 still gives at least qmax + 1 (x <=
         * qmin - 1 at most qmin - 1) and the clamp gives the reference's
         * code; a NaN falls to qmin, as fmaxf makes it there. */
        ms_f x = zp ? wv / s + z : wv / s;
        ms_f q = (x + MS_RINT_MAGIC) - MS_RINT_MAGIC;
        q = ms_fsel(q > lo, q, lo);
        q = ms_fsel(q < hi, q, hi);
        d = MS_EXACT((zp ? q - z : q) * s) - wv;
    }
    return (ms_f)((ms_i)d & 0x7fffffff);
}

/* Value i of two groups: the first in lanes 0-3, the second in lanes 4-7. */
MS_INLINE ms_f ms_two_groups(const float *a, const float *b, size_t i)
{
    return (ms_f){a[i], a[i], a[i], a[i], b[i], b[i], b[i], b[i]};
}

/* The errors of MS_LANES (group, step) lanes into err: lanes 0-3 sum group
 * (w0, c0), lanes 4-7 group (w1, c1) when `pair` (two groups' last steps
 * in one block), else every lane the first group, n values each; without
 * `weighted` every weight is 1 and the product is left out (it is exact).
 * With `fast`, the screened sums of ms_pow_fast, eight values at a time in
 * value order, stopping early once every lane's sum reached its lane of
 * `best` (then err holds sums >= best). Otherwise the exact errors: the
 * exact power's terms kept in `terms` (n x 8) and each lane's summed in
 * torch's order (mq_obs_sum). */
MS_INLINE void ms_block(bool fp8, bool zp, bool pair, bool weighted, const float *w0,
                        const float *c0, const float *w1, const float *c1, size_t n,
                        const ms_params *pp, float qmin, float qmax, float norm, bool fast,
                        const float *best_l, float *err, float *terms, int need)
{
    ms_f s, z, best, sum = ms_splat(0.0f);
    memcpy(&s, pp->s, sizeof s);
    memcpy(&z, pp->z, sizeof z);
    memcpy(&best, best_l, sizeof best);
    const ms_f lo = ms_splat(qmin), hi = ms_splat(qmax);
#define MS_W(v, i) (pair ? ms_two_groups(v##0, v##1, i) : ms_splat(v##0 [i]))
#define MS_DIFF(i) ms_diff(fast, fp8, zp, MS_W(w, i), s, z, lo, hi)
#define MS_WEIGH(t, i) (weighted ? MS_W(c, i) * (t) : (t))
/* The exact terms are kept, lane by lane, for torch's order of the sum. */
#define MS_KEEP(t, i)                                                                              \
    do {                                                                                           \
        ms_f k_ = MS_WEIGH(t, i);                                                                  \
        memcpy(terms + (i)*MS_LANES, &k_, sizeof k_);                                              \
    } while (0)
    for (size_t i0 = 0; i0 < n; i0 += MS_CHECK) {
        size_t i1 = n - i0 < MS_CHECK ? n : i0 + MS_CHECK, i = i0;
        if (fast) {
            /* The screening power's chain of operations is longer than
             * one value's worth of the units: eight values at once keep
             * them busy. Every difference is below hi (block_errors). */
            for (; i + 8 <= i1; i += 8) {
                ms_f d[8], t[8];
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                    d[k] = MS_DIFF(i + k);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                    t[k] = MS_WEIGH(ms_pow_fast(d[k], norm), i + k);
                /* Pairwise: 3 additions on each value's way (rho, gather). */
                sum += ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
            }
            for (; i < i1; i++)
                sum += MS_WEIGH(ms_pow_fast(MS_DIFF(i), norm), i);
        }
        for (; i < i1; i++)
            MS_KEEP(ms_pow_lanes(MS_DIFF(i), norm, need), i);
        if (fast && i1 < n) {
            ms_i open = sum < best;
            bool any = false;
            for (int l = 0; l < MS_LANES; l++)
                any |= open[l] != 0;
            if (!any) break;
        }
    }
#undef MS_KEEP
#undef MS_WEIGH
#undef MS_DIFF
#undef MS_W
    if (fast) {
        memcpy(err, &sum, sizeof sum);
        return;
    }
    /* Each lane's terms in value order, summed as torch sums them. */
    for (int l = 0; l < MS_LANES; l++)
        err[l] = 0.0f;
    for (int l = 0; l < need; l++) {
        mq_obs_sum ts;
        mq_obs_sum_init(&ts, n);
        for (size_t i = 0; i < n; i++)
            mq_obs_sum_add(&ts, terms[i * MS_LANES + (size_t)l]);
        err[l] = mq_obs_sum_end(&ts);
    }
}

/* One clone set per kind of term, zero points, pairing and weighting, exact
 * (NAME) and screened (NAME_fast, with MS_SCREEN): each loop then has no
 * test inside but the power's. */
#define MS_ERRORS(NAME, FP8, ZP, PAIR, WEIGHTED)                                                   \
    MS_CLONES void NAME(const float *w0, const float *c0, const float *w1, const float *c1,        \
                        size_t n, const ms_params *pp, float qmin, float qmax, float norm,         \
                        const float *best, float *err, float *terms, int need)                     \
    {                                                                                              \
        ms_block(FP8, ZP, PAIR, WEIGHTED, w0, c0, w1, c1, n, pp, qmin, qmax, norm, false, best,    \
                 err, terms, need);                                                                \
    }                                                                                              \
    MS_CLONES MS_SCREEN void NAME##_fast(const float *w0, const float *c0, const float *w1,        \
                                         const float *c1, size_t n, const ms_params *pp,           \
                                         float qmin, float qmax, float norm, const float *best,    \
                                         float *err, float *terms, int need)                       \
    {                                                                                              \
        ms_block(FP8, ZP, PAIR, WEIGHTED, w0, c0, w1, c1, n, pp, qmin, qmax, norm, true, best,     \
                 err, terms, need);                                                                \
    }
MS_ERRORS(ms_errors_int, false, true, false, false)
MS_ERRORS(ms_errors_int_w, false, true, false, true)
MS_ERRORS(ms_errors_int_pair, false, true, true, false)
MS_ERRORS(ms_errors_int_pair_w, false, true, true, true)
MS_ERRORS(ms_errors_sym, false, false, false, false)
MS_ERRORS(ms_errors_sym_w, false, false, false, true)
MS_ERRORS(ms_errors_sym_pair, false, false, true, false)
MS_ERRORS(ms_errors_sym_pair_w, false, false, true, true)
MS_ERRORS(ms_errors_fp8, true, false, false, false)
MS_ERRORS(ms_errors_fp8_w, true, false, false, true)
MS_ERRORS(ms_errors_fp8_pair, true, false, true, false)
MS_ERRORS(ms_errors_fp8_pair_w, true, false, true, true)

typedef void (*ms_errors_fn)(const float *w0, const float *c0, const float *w1, const float *c1,
                             size_t n, const ms_params *pp, float qmin, float qmax, float norm,
                             const float *best, float *err, float *terms, int need);

typedef struct {
    mq_qdesc d;
    const mq_obs_mse *o;
    const float *imp;
    const unsigned char *in;
    mq_dtype dt;
    size_t rows, cols, groups, parts, mb, vals_per_part;
    float plo, phi; /* ms_pow_fast's range for the norm (ms_mid_range) */
    double rel;     /* the screening's bound without the sums' rounding (keep_fast) */
    double tiny;    /* ms_fast_tiny for the norm: a term's bound below plo */
    bool fast;      /* screen the steps with ms_pow_fast */
    float *factor;  /* mq_obs_mse_factor of each step (NULL: computed each time) */
    uint8_t *mask;
    bool *improved; /* parts x steps */
    size_t *bad;    /* per part: its first bad group, or SIZE_MAX */
    float *vals;    /* per part: two groups' values and their weights, then terms */
} ms_job;

/* One group as the search sees it. */
typedef struct {
    float *w, *c; /* values and their weights */
    float *t;     /* the exact terms of a block, MS_LANES a value (ms_block) */
    size_t n;
    mq_ref_stats st;
    float best;    /* the smallest error so far (with `known`, when screening) */
    uint8_t *mask; /* its record */
    /* Screening (keep_fast): */
    double rho;    /* the relative bound between a screened sum and the exact one */
    double abs;    /* and the absolute one (the terms below plo) */
    size_t best_i; /* the step of the smallest error so far */
    float abest;   /* its screened sum */
    bool known;    /* best is its exact error */
} ms_group;

/* Group g's values and weights gathered, and its statistics; false on NaN/Inf. */
static bool gather(const ms_job *j, size_t g, ms_group *gr)
{
    size_t r0, r1, c0, nc, es = mq_dtype_size(j->dt);
    mq_qdesc_group(j->d, j->rows, j->cols, g, &r0, &r1, &c0, &nc);
    mq_ref_stats_init(&gr->st);
    gr->n = 0;
    gr->best = FLT_MAX;
    gr->known = true;
    gr->best_i = SIZE_MAX;
    gr->mask = j->mask + g * j->mb;
    for (size_t r = r0; r < r1; r++) {
        const unsigned char *row = j->in + (r * j->cols + c0) * es;
        mq_hk_stats_update(&gr->st, row, j->dt, nc);
        float *w = gr->w + gr->n;
        if (j->dt == MQ_DTYPE_F32) {
            memcpy(w, row, nc * sizeof *w);
        } else if (j->dt == MQ_DTYPE_F16) {
            mq_hk_widen_f16(row, nc, w);
        } else { /* BF16: the upper half of an fp32 (mq_bf16_to_f32), vectorized */
            for (size_t i = 0; i < nc; i++) {
                uint16_t h;
                memcpy(&h, row + 2 * i, sizeof h);
                uint32_t b = (uint32_t)h << 16;
                memcpy(w + i, &b, sizeof b);
            }
        }
        if (j->imp) /* only the weighted functions read the weights */
            memcpy(gr->c + gr->n, j->imp + c0, nc * sizeof *gr->c);
        gr->n += nc;
    }
    /* Each sum within d u of its terms' exact sum (u = 2^-24, the terms
     * never negative), d the most additions on any term's way to the
     * result: the screened sum adds eight values pairwise and then in turn
     * (3 + n / 8, and fewer than 8 single ones at the end); the exact one
     * in torch's order mq_obs_sum_depth(n). The terms within j->rel of
     * each other (with the weights' products, 2u more), a half again to
     * spare. */
    double d = (3.0 + (double)gr->n / 8.0 + 8.0) + mq_obs_sum_depth(gr->n) + 2.0;
    gr->rho = (1.5 * d * 0x1p-24 + j->rel) * mq_hk_mse_slack;
    if (gr->rho > 0.5) gr->rho = 0.5;
    /* Each term below plo within j->tiny of its exact value, times its
     * weight (and the product's rounding). */
    double wsum = j->imp ? 0.0 : (double)gr->n;
    for (size_t i = 0; j->imp && i < gr->n; i++)
        wsum += (double)gr->c[i];
    gr->abs = 2.0 * j->tiny * wsum * mq_hk_mse_slack;
    return !gr->st.nonfinite;
}

/* Lane l of pp: the scale and zero point of step i of a group. */
static void lane_params(const ms_job *j, const mq_ref_stats *st, size_t i, size_t l, ms_params *pp)
{
    float p = j->factor ? j->factor[i] : mq_obs_mse_factor(j->o, i);
    mq_ref_stats cand = *st;
    cand.lo = st->lo * p;
    cand.hi = st->hi * p;
    cand.amax = st->amax * p;
    int8_t z;
    mq_ref_params(j->d, &cand, j->dt, &pp->s[l], &z);
    pp->z[l] = (float)z;
}

/* Lanes [l0, l0 + 4 or 8) of pp: the scales and zero points of steps i0 ..
 * i0 + nl - 1 of a group; lanes past its last step repeat it (their errors
 * are not read). */
static void step_params(const ms_job *j, const mq_ref_stats *st, size_t i0, size_t nl, size_t l0,
                        size_t l1, ms_params *pp)
{
    for (size_t l = l0; l < l1; l++)
        lane_params(j, st, i0 + (l - l0 < nl ? l - l0 : nl - 1), l, pp);
}

/* The bounds of the exact error of a step whose screened sum is a: it lies
 * within [a (1 - rho) - abs, a (1 + rho) + abs]. */
static double exact_lo(const ms_group *gr, double a)
{
    return a * (1.0 - gr->rho) - gr->abs;
}

static double exact_hi(const ms_group *gr, double a)
{
    return a * (1.0 + gr->rho) + gr->abs;
}

/* The lane value at which a screened sum has certainly reached gr's best
 * (exact_lo of it is at least the best's upper bound), rounded up to an
 * fp32. */
static float screen_stop(const ms_group *gr)
{
    double ub = gr->known ? (double)gr->best : exact_hi(gr, gr->abest);
    double t = (ub + gr->abs) / (1.0 - gr->rho);
    if (!(t < (double)FLT_MAX)) return INFINITY;
    float f = (float)t;
    return (double)f < t ? nextafterf(f, INFINITY) : f;
}

/* The errors of a block of lanes into err (a and b: the groups of lanes
 * 0-3 and 4-7), screened with ms_pow_fast when `fast`; exact ones of lanes
 * [0, need) only otherwise (the others 0). */
static void block_errors(const ms_job *j, const ms_group *a, const ms_group *b, const ms_params *pp,
                         bool fast, int need, float *err)
{
    static const ms_errors_fn fns[2][12] = {
        {ms_errors_int, ms_errors_int_w, ms_errors_int_pair, ms_errors_int_pair_w, ms_errors_sym,
         ms_errors_sym_w, ms_errors_sym_pair, ms_errors_sym_pair_w, ms_errors_fp8, ms_errors_fp8_w,
         ms_errors_fp8_pair, ms_errors_fp8_pair_w},
        {ms_errors_int_fast, ms_errors_int_w_fast, ms_errors_int_pair_fast,
         ms_errors_int_pair_w_fast, ms_errors_sym_fast, ms_errors_sym_w_fast,
         ms_errors_sym_pair_fast, ms_errors_sym_pair_w_fast, ms_errors_fp8_fast,
         ms_errors_fp8_w_fast, ms_errors_fp8_pair_fast, ms_errors_fp8_pair_w_fast}};
    float best[MS_LANES], norm = (float)j->o->norm;
    bool fp8 = j->d.kind == MQ_QK_FP8, zp = false;
    float sa = fast ? screen_stop(a) : a->best, sb = fast ? screen_stop(b) : b->best;
    for (int l = 0; l < MS_LANES; l++) {
        best[l] = l < MS_LANES / 2 ? sa : sb;
        zp |= pp->z[l] != 0.0f;
    }
    /* ms_pow_fast needs every difference below phi: |w| <= amax, and
     * |q - zp| at most 512, so each below amax + 512 s. Otherwise the
     * lanes take the exact power, whose sums are within any bound. */
    double dmax = (double)(a->st.amax > b->st.amax ? a->st.amax : b->st.amax);
    for (int l = 0; fast && l < MS_LANES; l++)
        fast = dmax + 512.0 * (double)pp->s[l] < (double)j->phi;
    ms_errors_fn f = fns[fast][(fp8 ? 8 : zp ? 0 : 4) + (a != b ? 2 : 0) + (j->imp ? 1 : 0)];
    f(a->w, a->c, b->w, b->c, a->n, pp, fp8 ? -448.0f : mq_qkind_qmin(j->d.kind),
      fp8 ? 448.0f : mq_qkind_qmax(j->d.kind), norm, best, err, a->t, need);
}

/* The exact errors of steps i (into e[0]) and, unless gr's best is known,
 * gr->best_i (into gr->best), from the exact power in one block. */
static void exact_steps(const ms_job *j, ms_group *gr, size_t i, float *e)
{
    ms_params pp;
    float err[MS_LANES];
    lane_params(j, &gr->st, i, 0, &pp);
    if (!gr->known) lane_params(j, &gr->st, gr->best_i, 1, &pp);
    for (int l = gr->known ? 1 : 2; l < MS_LANES; l++) {
        pp.s[l] = pp.s[0];
        pp.z[l] = pp.z[0];
    }
    __atomic_fetch_add(&mq_hk_mse_rechecks, 1, __ATOMIC_RELAXED);
    block_errors(j, gr, gr, &pp, false, gr->known ? 1 : 2, err);
    if (!gr->known) gr->best = err[1];
    gr->known = true;
    *e = err[0];
}

/* keep() for screened sums: step i's exact error is below the best's when
 * their bounds say so for certain; when the bounds overlap (a near tie, or a
 * sum too large to bound), both exact errors decide. */
static void keep_fast(const ms_job *j, ms_group *gr, size_t i0, size_t nl, const float *err,
                      bool *improved)
{
    for (size_t l = 0; l < nl; l++) {
        size_t i = i0 + l;
        double a = err[l], e = 0.0;
        double blo = gr->known ? (double)gr->best : exact_lo(gr, gr->abest);
        double bhi = gr->known ? (double)gr->best : exact_hi(gr, gr->abest);
        bool better, exact = false;
        if (a < 1e37 && exact_hi(gr, a) < blo) {
            better = true;
        } else if (a < 1e37 && exact_lo(gr, a) >= bhi) {
            better = false;
        } else {
            float ei;
            exact_steps(j, gr, i, &ei);
            better = ei < gr->best;
            exact = true;
            e = ei;
        }
        if (!better) continue;
        gr->best_i = i;
        gr->abest = err[l];
        gr->known = exact;
        if (exact) gr->best = (float)e;
        gr->mask[i / 8] |= (uint8_t)(1u << (i % 8));
        improved[i] = true;
    }
}

/* Steps i0 .. i0 + nl - 1 of a group, their errors in err[0 ..]: records. */
static void keep(ms_group *gr, size_t i0, size_t nl, const float *err, bool *improved)
{
    for (size_t l = 0; l < nl; l++) {
        if (err[l] < gr->best) {
            size_t i = i0 + l;
            gr->best = err[l];
            gr->mask[i / 8] |= (uint8_t)(1u << (i % 8));
            improved[i] = true;
        }
    }
}

/* Searches one group, or two (b not NULL) of the same length: whole blocks
 * of MS_LANES steps for each, then, when at most half a block of steps is
 * left, the last steps of both in one block instead of two half-empty ones. */
static void search(const ms_job *j, ms_group *a, ms_group *b, bool *improved)
{
    size_t steps = mq_obs_mse_steps(j->o), whole = steps / MS_LANES * MS_LANES;
    size_t tail = steps - whole;
    bool share = b && tail <= MS_LANES / 2;
    ms_group *gs[2] = {a, b};
    float err[MS_LANES];
    ms_params pp;
    for (int k = 0; k < (b ? 2 : 1); k++) {
        ms_group *gr = gs[k];
        for (size_t i0 = 0; i0 < steps; i0 += MS_LANES) {
            size_t nl = steps - i0 < MS_LANES ? steps - i0 : MS_LANES;
            if (i0 == whole && share) break;
            step_params(j, &gr->st, i0, nl, 0, MS_LANES, &pp);
            block_errors(j, gr, gr, &pp, j->fast, MS_LANES, err);
            if (j->fast)
                keep_fast(j, gr, i0, nl, err, improved);
            else
                keep(gr, i0, nl, err, improved);
        }
    }
    if (share && tail) {
        step_params(j, &a->st, whole, tail, 0, MS_LANES / 2, &pp);
        step_params(j, &b->st, whole, tail, MS_LANES / 2, MS_LANES, &pp);
        block_errors(j, a, b, &pp, j->fast, MS_LANES, err);
        if (j->fast) {
            keep_fast(j, a, whole, tail, err, improved);
            keep_fast(j, b, whole, tail, err + MS_LANES / 2, improved);
        } else {
            keep(a, whole, tail, err, improved);
            keep(b, whole, tail, err + MS_LANES / 2, improved);
        }
    }
}

static void scan_part(void *arg, unsigned part)
{
    ms_job *j = arg;
    size_t steps = mq_obs_mse_steps(j->o), vp = j->vals_per_part;
    size_t g0 = j->groups * part / j->parts, g1 = j->groups * (part + 1) / j->parts;
    float *v = j->vals + part * (4 + MS_LANES) * vp;
    ms_group a = {.w = v, .c = v + vp, .t = v + 4 * vp};
    ms_group b = {.w = v + 2 * vp, .c = v + 3 * vp, .t = v + 4 * vp};
    bool *improved = j->improved + part * steps;
    j->bad[part] = SIZE_MAX;
    for (size_t g = g0; g < g1; g += 2) {
        if (!gather(j, g, &a)) {
            j->bad[part] = g;
            return;
        }
        if (g + 1 == g1) {
            search(j, &a, NULL, improved);
            break;
        }
        if (!gather(j, g + 1, &b)) {
            search(j, &a, NULL, improved); /* as the reference, which stops at g + 1 */
            j->bad[part] = g + 1;
            return;
        }
        if (a.n == b.n) {
            search(j, &a, &b, improved);
        } else {
            search(j, &a, NULL, improved);
            search(j, &b, NULL, improved);
        }
    }
}

bool mq_hk_mse_errors(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                      mq_dtype dt, size_t rows, size_t cols, size_t g, float *err)
{
    ms_job j = {.d = d, .o = o, .imp = imp, .in = src, .dt = dt, .rows = rows, .cols = cols};
    size_t mg = d.block ? d.block * d.block : cols, steps = mq_obs_mse_steps(o);
    float *w = malloc((2 + MS_LANES) * mg * sizeof *w + 1);
    uint8_t mask[1];
    ms_group gr = {.w = w, .c = w + mg, .t = w + 2 * mg};
    ms_mid_range((float)o->norm, &j.plo, &j.phi);
    j.mask = mask; /* with mb 0, gather points the group's record here; not used */
    bool ok = w && gather(&j, g, &gr);
    for (size_t i0 = 0; ok && i0 < steps; i0 += MS_LANES) {
        ms_params pp;
        float e[MS_LANES];
        size_t nl = steps - i0 < MS_LANES ? steps - i0 : MS_LANES;
        step_params(&j, &gr.st, i0, nl, 0, MS_LANES, &pp);
        block_errors(&j, &gr, &gr, &pp, false, MS_LANES, e);
        memcpy(err + i0, e, nl * sizeof *e);
    }
    free(w);
    return ok;
}

/* Values times steps below which a scan runs on the calling thread alone. */
#define MS_PARALLEL_MIN 327680

mq_status mq_hk_mse_scan(mq_pool *pool, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                         const void *src, mq_dtype dt, size_t rows, size_t cols, uint8_t *mask,
                         bool *improved, size_t *bad)
{
    if (d.kind != MQ_QK_INT8 && d.kind != MQ_QK_INT4 && d.kind != MQ_QK_FP8)
        return mq_obs_mse_scan(d, o, imp, src, dt, rows, cols, mask, improved, bad);
    size_t groups = mq_qdesc_scales(d, rows, cols), steps = mq_obs_mse_steps(o);
    ms_job j = {.d = d,
                .o = o,
                .imp = imp,
                .in = src,
                .dt = dt,
                .rows = rows,
                .cols = cols,
                .groups = groups,
                .mb = mq_obs_mse_mask_bytes(o),
                .vals_per_part = d.block ? d.block * d.block : cols,
                .mask = mask};
    mq_status st = MQ_OK;
    memset(mask, 0, groups * j.mb);
    ms_mid_range((float)o->norm, &j.plo, &j.phi);
    /* ms_fast_rel, and the exact power's distance to x^n (tests/test_observer.c:
     * at most an ulp from the correctly rounded one; 2 ulps taken here).
     * Screening is left out when a group is so large
     * that the sums' rounding alone would leave most steps undecided. */
    j.rel = ms_fast_rel(o->norm) + 2.0 * 0x1p-23 + 3.0 * 0x1p-24;
    j.fast = j.plo < j.phi && 3.0 * (double)j.vals_per_part * 0x1p-24 + j.rel < 1e-2;
    j.tiny = ms_fast_tiny(o->norm, j.plo);
    if ((uint64_t)rows * cols * steps < MS_PARALLEL_MIN) pool = NULL;
    j.parts = mq_pool_threads(pool);
    if (j.parts > groups) j.parts = groups ? groups : 1;
    j.improved = calloc(j.parts * steps + 1, sizeof *j.improved);
    j.bad = calloc(j.parts, sizeof *j.bad);
    j.vals = malloc(j.parts * (4 + MS_LANES) * j.vals_per_part * sizeof *j.vals + 1);
    j.factor = malloc(steps * sizeof *j.factor + 1);
    if (!j.improved || !j.bad || !j.vals || !j.factor) {
        st = MQ_STATUS_E_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < steps; i++)
        j.factor[i] = mq_obs_mse_factor(o, i);
    mq_pool_run(pool, scan_part, &j, (unsigned)j.parts);
    for (size_t p = 0; p < j.parts; p++) {
        if (j.bad[p] != SIZE_MAX) {
            if (bad) *bad = j.bad[p]; /* parts in group order: the first bad group */
            st = MQ_STATUS_E_DATA;
            goto done;
        }
        for (size_t i = 0; i < steps; i++)
            if (j.improved[p * steps + i]) improved[i] = true;
    }
done:
    free(j.improved);
    free(j.bad);
    free(j.vals);
    free(j.factor);
    return st;
}

/* The codes of n values of one row of a group, one per byte (int4 unpacked),
 * placed as mq_ref_put_codes places them. */
static void put_codes(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float s, int8_t z,
                      unsigned char *row, size_t c0, size_t cols, uint8_t *tmp, mq_err_acc *err)
{
    if (d.kind != MQ_QK_INT4) {
        mq_hk_quantize_values(d, src, dt, n, s, z, row + c0, err);
        return;
    }
    mq_hk_quantize_values(d, src, dt, n, s, z, tmp, err);
    if (c0 == 0) memset(row, 0, mq_qkind_row_bytes(d.kind, cols));
    if (c0 % 2 == 0 && n % 2 == 0) { /* whole bytes of its own: two codes at a time */
        unsigned char *o = row + c0 / 2;
        for (size_t k = 0; k < n / 2; k++)
            o[k] = (uint8_t)(((unsigned)((int8_t)tmp[2 * k] + 8) & 15u) |
                             (((unsigned)((int8_t)tmp[2 * k + 1] + 8) & 15u) << 4));
        return;
    }
    for (size_t i = 0; i < n; i++)
        row[(c0 + i) / 2] |=
            (uint8_t)(((unsigned)((int8_t)tmp[i] + 8) & 15u) << (4 * ((c0 + i) & 1)));
}

mq_status mq_hk_mse_quantize(mq_qdesc d, const mq_obs_mse *o, const float *imp, size_t limit,
                             const uint8_t *mask, const void *src, mq_dtype dt, size_t rows,
                             size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                             mq_err_acc *err)
{
    if (d.kind != MQ_QK_INT8 && d.kind != MQ_QK_INT4 && d.kind != MQ_QK_FP8) {
        mq_status st =
            mq_obs_mse_quantize(d, o, imp, limit, mask, src, dt, rows, cols, q, scale, zp, bad);
        if (st == MQ_OK && err) mq_ref_error_stats(d, src, dt, rows, cols, q, scale, dt, zp, err);
        return st;
    }
    size_t groups = mq_qdesc_scales(d, rows, cols), es = mq_dtype_size(dt);
    size_t qb = mq_qkind_row_bytes(d.kind, cols), mb = mq_obs_mse_mask_bytes(o);
    uint8_t *tmp = d.kind == MQ_QK_INT4 ? malloc((d.block ? d.block : cols) + 1) : NULL;
    const unsigned char *in = src;
    mq_status st = MQ_OK;
    if (d.kind == MQ_QK_INT4 && !tmp) return MQ_STATUS_E_NOMEM;
    for (size_t g = 0; g < groups && st == MQ_OK; g++) {
        size_t r0, r1, c0, nc;
        mq_ref_stats stats;
        mq_qdesc_group(d, rows, cols, g, &r0, &r1, &c0, &nc);
        mq_ref_stats_init(&stats);
        for (size_t r = r0; r < r1; r++)
            mq_hk_stats_update(&stats, in + (r * cols + c0) * es, dt, nc);
        /* The best step's range, as mq_obs_mse_quantize takes it. */
        float p = mq_obs_mse_factor(o, mq_obs_mse_best(o, mask + g * mb, limit)), s;
        mq_ref_stats c = stats;
        c.lo = stats.lo * p;
        c.hi = stats.hi * p;
        c.amax = stats.amax * p;
        c.nonfinite = stats.nonfinite;
        int8_t z;
        st = mq_ref_group_params(d, &c, dt, g, scale, zp, bad, &s, &z);
        for (size_t r = r0; st == MQ_OK && r < r1; r++)
            put_codes(d, in + (r * cols + c0) * es, dt, nc, s, z, (unsigned char *)q + r * qb, c0,
                      cols, tmp, err);
    }
    free(tmp);
    return st;
}
