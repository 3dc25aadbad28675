/* x^n for the mse observer's exact error terms: 2^(n log2 x) computed in
 * double with basic IEEE double operations only (no libm, so that the
 * reference, the host loop and the OpenCL kernel, cl_kernels/mse.cl, the
 * same steps, give the same bits), then rounded to fp32 once. Its double
 * value is within about 1e-15 of x^n, so the fp32 result is the correctly
 * rounded one except where x^n lies that close to a rounding boundary
 * (tests/test_observer.c compares it with libm's double pow over many
 * exponents). torch's pow (glibc's powf in its default kernels) is correctly
 * rounded nearly always too, which is what decides exact ties between
 * candidate steps the same way as llm-compressor.
 *
 * x = 2^e m with m in [sqrt(1/2), sqrt(2)) (every fp32 x > 0, subnormals
 * included, is a normal double); log2 m = 2 atanh(t) / ln 2 with
 * t = (m - 1) / (m + 1), |t| <= 0.1716, from its series to t^25; n e is
 * exact, so y = n (e + log2 m) is split as k1 = rint(n e) (exact) plus
 * f = (n e - k1) + n log2 m, k = k1 + rint(f), g = f - rint(f) in
 * [-1/2, 1/2]; 2^g from its Taylor series to g^14; times 2^k (k held to
 * [-200, 200], beyond which the fp32 result is 0 or inf anyway).
 *
 * Only x >= 0 (a magnitude) or NaN and a finite n > 0 occur: 0 gives 0,
 * +inf gives +inf, NaN gives NaN. */
#ifndef MQ_OBSPOW_H
#define MQ_OBSPOW_H

#include <stdint.h>
#include <string.h>

/* 1.5 * 2^52: adding it to a double of magnitude below 2^51 and taking it
 * away again rounds that to an integer (half to even). */
#define MQ_OBS_POW_RINT 6755399441055744.0

static inline double mq_obs_pow_d(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline float mq_obs_pow(float x, float n)
{
    if (!(x > 0.0f)) return x == 0.0f ? 0.0f : x; /* 0, or NaN */
    if (x > 3.4028234664e38f) return x;           /* +inf */
    double xd = (double)x;
    uint64_t b;
    memcpy(&b, &xd, sizeof b);
    uint64_t frac = b & 0x000fffffffffffffull;
    int up = frac > 0x6a09e667f3bcdull; /* m >= sqrt(2): halve it */
    double m = mq_obs_pow_d(frac | (up ? 0x3fe0000000000000ull : 0x3ff0000000000000ull));
    double e = (double)((int)((b >> 52) & 0x7ff) - 1023 + up);
    double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double s = 1.0 / 25.0;
    s = s * t2 + 1.0 / 23.0;
    s = s * t2 + 1.0 / 21.0;
    s = s * t2 + 1.0 / 19.0;
    s = s * t2 + 1.0 / 17.0;
    s = s * t2 + 1.0 / 15.0;
    s = s * t2 + 1.0 / 13.0;
    s = s * t2 + 1.0 / 11.0;
    s = s * t2 + 1.0 / 9.0;
    s = s * t2 + 1.0 / 7.0;
    s = s * t2 + 1.0 / 5.0;
    s = s * t2 + 1.0 / 3.0;
    s = s * t2 + 1.0;
    double l = 2.0 * t * s * 1.4426950408889634; /* log2 m */
    double nd = (double)n, ne = nd * e;          /* exact: 24 bits times 11 */
    double k1 = (ne + MQ_OBS_POW_RINT) - MQ_OBS_POW_RINT;
    double f = (ne - k1) + nd * l;
    double k2 = (f + MQ_OBS_POW_RINT) - MQ_OBS_POW_RINT;
    double g = f - k2;
    double p = 6.778726354822545e-14;
    p = p * g + 1.3691488853904128e-12;
    p = p * g + 2.5678435993488206e-11;
    p = p * g + 4.4455382718708116e-10;
    p = p * g + 7.054911620801123e-09;
    p = p * g + 1.01780860092397e-07;
    p = p * g + 1.321548679014431e-06;
    p = p * g + 1.5252733804059841e-05;
    p = p * g + 0.0001540353039338161;
    p = p * g + 0.0013333558146428443;
    p = p * g + 0.009618129107628477;
    p = p * g + 0.05550410866482158;
    p = p * g + 0.24022650695910072;
    p = p * g + 0.6931471805599453;
    p = p * g + 1.0;
    double k = k1 + k2;
    k = k > -200.0 ? k : -200.0;
    k = k < 200.0 ? k : 200.0;
    return (float)(p * mq_obs_pow_d((uint64_t)((int64_t)k + 1023) << 52));
}

#endif
