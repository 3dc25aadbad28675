/* x^n for the mse observer's error terms, written out in basic IEEE fp32
 * operations so that the reference, the host kernels (which run it eight
 * lanes at once) and the OpenCL kernel (cl_kernels/mse.cl, the same steps)
 * give the same bits. libm's powf could not be used: each library's powf
 * (glibc's, the OpenCL built-in, torch's Sleef) may round differently in the
 * last bit, and a double-precision version cost twice as much.
 *
 * 2^(n log2 x) with log2 x from its exponent and an atanh series, the
 * product split so that only a small fraction is rounded: within a few ulps
 * of the exact power (tests/test_observer.c bounds it against libm), about
 * what torch's Sleef powf and its other summation order already differ by,
 * so the search picks the same steps as llm-compressor's except where two
 * candidates' errors agree to a few ulps.
 *
 * Only x >= 0 (a magnitude) or NaN and a finite n > 0 occur: 0 gives 0,
 * +inf gives +inf, NaN gives NaN. No branches, so that loops over it
 * vectorize. */
#ifndef MQ_OBSPOW_H
#define MQ_OBSPOW_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* 1.5 * 2^23: adding it to an fp32 of magnitude below 2^22 and taking it
 * away again rounds that to an integer (half to even). */
#define MQ_OBS_POW_RINT 12582912.0f

static inline uint32_t mq_obs_pow_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static inline float mq_obs_pow_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* 2^k for an integer k in [-126, 127], held in an fp32. */
static inline float mq_obs_pow_two(float k)
{
    return mq_obs_pow_float((uint32_t)((int32_t)k + 127) << 23);
}

static inline float mq_obs_pow(float x, float n)
{
    /* x = 2^e m with m in [sqrt(1/2), sqrt(2)); a subnormal x is scaled by
     * 2^23 first. */
    uint32_t tiny = -(uint32_t)(mq_obs_pow_bits(x) < 0x00800000u);
    uint32_t b = mq_obs_pow_bits(
        mq_obs_pow_float((mq_obs_pow_bits(x * 0x1p23f) & tiny) | (mq_obs_pow_bits(x) & ~tiny)));
    uint32_t frac = b & 0x007fffffu;
    uint32_t up = -(uint32_t)(frac > 0x003504f3u);
    float m = mq_obs_pow_float(frac | (0x3f000000u & up) | (0x3f800000u & ~up));
    float e =
        (float)((int32_t)((b >> 23) & 0xffu) - 127 + (int32_t)(up & 1u) - (int32_t)(tiny & 23u));
    /* log2 m = 2 atanh(t) / ln 2, t = (m - 1) / (m + 1), |t| <= 0.1716. */
    float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float s = 1.0f / 11.0f;
    s = s * t2 + 1.0f / 9.0f;
    s = s * t2 + 1.0f / 7.0f;
    s = s * t2 + 1.0f / 5.0f;
    s = s * t2 + 1.0f / 3.0f;
    s = s * t2 + 1.0f;
    float l = 2.0f * t * s * 1.44269504f;
    /* n (e + l) = k + g with k an integer and |g| <= 1/2, the integer part
     * taken from n's upper 12 bits times e (exact) so that what is rounded
     * is small: nh e - k1 and the remaining parts. */
    float nh = mq_obs_pow_float(mq_obs_pow_bits(n) & 0xfffff000u), nl = n - nh;
    float a = nh * e;
    float k1 = (a + MQ_OBS_POW_RINT) - MQ_OBS_POW_RINT;
    float f = (a - k1) + (nl * e + n * l);
    float k2 = (f + MQ_OBS_POW_RINT) - MQ_OBS_POW_RINT;
    float g = f - k2;
    /* 2^g: its Taylor series in g to g^7 (coefficients ln(2)^i / i!). */
    float p = 1.5252734e-5f;
    p = p * g + 1.5403530e-4f;
    p = p * g + 1.3333558e-3f;
    p = p * g + 9.6181291e-3f;
    p = p * g + 5.5504109e-2f;
    p = p * g + 2.4022651e-1f;
    p = p * g + 6.9314718e-1f;
    p = p * g + 1.0f;
    /* Times 2^k in two exact-or-final steps: p 2^ka stays normal, the
     * second factor rounds once (to a subnormal, 0 or inf as it falls). */
    float k = k1 + k2;
    k = k > -226.0f ? k : -226.0f;
    k = k < 254.0f ? k : 254.0f;
    float ka = k > -100.0f ? k : -100.0f;
    ka = ka < 127.0f ? ka : 127.0f;
    float res = p * mq_obs_pow_two(ka) * mq_obs_pow_two(k - ka);
    /* 0 -> 0, +inf -> +inf, NaN -> NaN. */
    res = x == 0.0f ? 0.0f : res;
    res = x == (float)INFINITY ? x : res;
    return x == x ? res : x;
}

#endif
