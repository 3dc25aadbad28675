/* x^n for the mse observer's error terms, written out in basic IEEE double
 * operations so that the reference, the host kernels (which vectorize it)
 * and the OpenCL kernel (cl_kernels/mse.cl, the same steps) give the same
 * bits. libm's powf could not be used: each library's powf (glibc's, the
 * OpenCL built-in, torch's Sleef) may round differently in the last bit.
 *
 * The result is x^n computed in double to a relative error far below 2^-40
 * and rounded once to fp32, so it is the correctly rounded powf except where
 * the exact value lies within about 2^-40 of a rounding boundary: it agrees
 * with glibc's powf in nearly every case, and the error sums it feeds agree
 * with torch's to the same few ulps as before.
 *
 * Only x >= 0 (a magnitude) or NaN and a finite n > 0 occur: 0 gives 0,
 * +inf gives +inf, NaN gives NaN. No branches, so that loops over it
 * vectorize; integer conversions go through the 1.5 * 2^52 bias instead of
 * int64/double conversions, which AVX2 lacks. */
#ifndef MQ_OBSPOW_H
#define MQ_OBSPOW_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MQ_OBS_POW_BIAS 6755399441055744.0 /* 1.5 * 2^52 */

static inline uint64_t mq_obs_pow_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static inline double mq_obs_pow_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline float mq_obs_pow(float x, float n)
{
    /* Every fp32 but 0 is a normal double: x = 2^e m with m in [1, 2). */
    uint64_t b = mq_obs_pow_bits((double)x);
    uint64_t frac = b & 0x000fffffffffffffu;
    /* m above sqrt(2) is halved (e + 1), so that m lies in [sqrt(1/2), sqrt(2)). */
    uint64_t up = (uint64_t)0 - (uint64_t)(frac > 0x6a09e667f3bccu);
    double m = mq_obs_pow_double(frac | (0x3ff0000000000000u & ~up) | (0x3fe0000000000000u & up));
    /* e as a double: the exponent field placed in the bias's mantissa. */
    double e = mq_obs_pow_double(((b >> 52) & 0x7ffu) + (up & 1u) + 0x4338000000000000u) -
               MQ_OBS_POW_BIAS - 1023.0;
    /* ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.1716: the series to t^17. */
    double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double s = 1.0 / 17.0;
    s = s * t2 + 1.0 / 15.0;
    s = s * t2 + 1.0 / 13.0;
    s = s * t2 + 1.0 / 11.0;
    s = s * t2 + 1.0 / 9.0;
    s = s * t2 + 1.0 / 7.0;
    s = s * t2 + 1.0 / 5.0;
    s = s * t2 + 1.0 / 3.0;
    s = s * t2 + 1.0;
    double lnm = 2.0 * t * s;
    /* y = n ln x, kept where exp(y) still decides an fp32 (0 or inf beyond). */
    double y = (double)n * (e * 0.6931471805599453 + lnm);
    y = y > -700.0 ? y : -700.0;
    y = y < 700.0 ? y : 700.0;
    /* exp(y) = 2^k exp(r): k = rint(y / ln 2) by the bias, r = y - k ln 2
     * with ln 2 in two parts (the first's product with k is exact). */
    double kb = y * 1.4426950408889634 + MQ_OBS_POW_BIAS;
    double k = kb - MQ_OBS_POW_BIAS;
    double r = (y - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0; /* 1/12!: the Taylor series to r^12 */
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k from k's bits in the bias (|k| <= 1010, so k + 1023 is a normal exponent). */
    double two_k = mq_obs_pow_double((mq_obs_pow_bits(kb) + 1023u) << 52);
    float res = (float)(p * two_k);
    /* 0 -> 0, +inf -> +inf, NaN -> NaN. */
    res = x == 0.0f ? 0.0f : res;
    res = x == (float)INFINITY ? x : res;
    return x == x ? res : x;
}

#endif
