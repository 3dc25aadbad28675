/* The scalar reference (src/numerics/reference.c) against values worked out by hand
 * from DESIGN.md's Numerics: fp16/bf16 conversions, symmetric and asymmetric
 * int8 parameters and codes, the fp16 cast, dequantization, and random rows. */
#include "testutil.h"

#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bit equality, so -0.0 and NaN payloads count. */
#define assert_f32_bits(a, b) assert_int_equal(mq_f32_bits(a), mq_f32_bits(b))

/* Quantizes one F32 row; returns the scale as stored. */
static float quant_row_f32(const float *w, size_t n, bool sym, int8_t *q, int8_t *zp)
{
    float s = -1.0f;
    size_t bad = 99;
    int8_t z = 55;
    assert_int_equal(mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), w, MQ_DTYPE_F32, 1, n, q, &s,
                                     sym ? NULL : &z, &bad),
                     MQ_OK);
    assert_int_equal(bad, 99); /* untouched on success */
    if (zp) *zp = sym ? 0 : z;
    return s;
}

static void assert_q(const int8_t *q, const int8_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (q[i] != want[i]) fail_msg("q[%zu] = %d, want %d", i, q[i], want[i]);
    }
}

/* ---------------- conversions ---------------- */

static void test_f16_widen_known(void **state)
{
    (void)state;
    assert_f32_bits(mq_f16_to_f32(0x3c00), 1.0f);
    assert_f32_bits(mq_f16_to_f32(0x0000), 0.0f);
    assert_int_equal(mq_f32_bits(mq_f16_to_f32(0x8000)), 0x80000000u);
    assert_f32_bits(mq_f16_to_f32(0x0001), ldexpf(1.0f, -24));
    assert_f32_bits(mq_f16_to_f32(0x03ff), ldexpf(1023.0f, -24));
    assert_f32_bits(mq_f16_to_f32(0x8200), -ldexpf(1.0f, -15));
    assert_f32_bits(mq_f16_to_f32(0x0400), ldexpf(1.0f, -14));
    assert_f32_bits(mq_f16_to_f32(0x7bff), 65504.0f);
    assert_f32_bits(mq_f16_to_f32(0xc100), -2.5f);
    assert_f32_bits(mq_f16_to_f32(0x7c00), INFINITY);
    assert_f32_bits(mq_f16_to_f32(0xfc00), -INFINITY);
    /* NaN: payload moves to the top of the fp32 mantissa and becomes quiet. */
    assert_int_equal(mq_f32_bits(mq_f16_to_f32(0x7c01)), 0x7fc02000u);
    assert_int_equal(mq_f32_bits(mq_f16_to_f32(0xfe00)), 0xffc00000u);
    assert_int_equal(mq_f32_bits(mq_f16_to_f32(0x7fff)), 0x7fffe000u);
}

static void test_f16_roundtrip_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue; /* NaN */
        uint16_t back = mq_f32_to_f16(mq_f16_to_f32((uint16_t)h));
        if (back != h)
            fail_msg("0x%04x -> %a -> 0x%04x", h, (double)mq_f16_to_f32((uint16_t)h), back);
    }
}

static void test_f32_to_f16_known(void **state)
{
    (void)state;
    assert_int_equal(mq_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(mq_f32_to_f16(-2.5f), 0xc100);
    assert_int_equal(mq_f32_to_f16(0.1f), 0x2e66);
    assert_int_equal(mq_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(mq_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(mq_f32_to_f16(65520.0f), 0x7c00); /* tie between 65504 and 2^16: even */
    assert_int_equal(mq_f32_to_f16(-70000.0f), 0xfc00);
    assert_int_equal(mq_f32_to_f16(FLT_MAX), 0x7c00);
    assert_int_equal(mq_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(mq_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(mq_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(mq_f32_to_f16(-0.0f), 0x8000);
    /* Subnormal results, in units of 2^-24. */
    assert_int_equal(mq_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    assert_int_equal(mq_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* 0.5: tie to even 0 */
    assert_int_equal(mq_f32_to_f16(-ldexpf(1.0f, -25)), 0x8000);
    assert_int_equal(mq_f32_to_f16(ldexpf(1.0f, -25) + ldexpf(1.0f, -40)), 0x0001);
    assert_int_equal(mq_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 -> 2 */
    assert_int_equal(mq_f32_to_f16(ldexpf(5.0f, -25)), 0x0002); /* 2.5 -> 2 */
    assert_int_equal(mq_f32_to_f16(ldexpf(3.0f, -26)), 0x0001); /* 0.75 -> 1 */
    assert_int_equal(mq_f32_to_f16(-2.5e-6f), 0x802a);
    assert_int_equal(mq_f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(mq_f32_to_f16(FLT_MIN), 0x0000);
    assert_int_equal(mq_f32_to_f16(mq_f32_from_bits(0x00000001u)), 0x0000); /* fp32 subnormal */
    /* 1023.5 units of 2^-24 ties to the even 1024: the smallest normal. */
    assert_int_equal(mq_f32_to_f16(ldexpf(1.0f, -14) - ldexpf(1.0f, -25)), 0x0400);
    /* 1022.5 units ties to the even 1022. */
    assert_int_equal(mq_f32_to_f16(ldexpf(1.0f, -14) - ldexpf(3.0f, -25)), 0x03fe);
    /* Ties to even in the normal range (fp16 ulp at 1 is 2^-10). */
    assert_int_equal(mq_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    assert_int_equal(mq_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);
    assert_int_equal(mq_f32_to_f16(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -23)), 0x3c01);
    /* Mantissa carry into the exponent: 2 - 2^-11 rounds to 2.0. */
    assert_int_equal(mq_f32_to_f16(2.0f - ldexpf(1.0f, -11)), 0x4000);
    /* NaN: sign | quiet | top 10 payload bits. */
    assert_int_equal(mq_f32_to_f16(mq_f32_from_bits(0x7fc00000u)), 0x7e00);
    assert_int_equal(mq_f32_to_f16(mq_f32_from_bits(0xff800001u)),
                     0xfe00); /* low payload lost, still NaN */
    assert_int_equal(mq_f32_to_f16(mq_f32_from_bits(0x7fa02000u)),
                     0x7f01); /* signalling -> quiet */
}

#ifdef __FLT16_MAX__
static uint16_t compiler_f16(float f)
{
    volatile _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, (const void *)&h, sizeof u);
    return u;
}

static uint16_t compiler_f16_from_f64(double d)
{
    volatile _Float16 h = (_Float16)d;
    uint16_t u;
    memcpy(&u, (const void *)&h, sizeof u);
    return u;
}

static void check_against_compiler(uint32_t x)
{
    float f = mq_f32_from_bits(x);
    if (isnan(f)) return;
    uint16_t want = compiler_f16(f), got = mq_f32_to_f16(f);
    if (want != got) fail_msg("%a (0x%08x): compiler 0x%04x, ours 0x%04x", (double)f, x, want, got);
}
#endif

static void test_f32_to_f16_vs_compiler(void **state)
{
    (void)state;
#ifdef __FLT16_MAX__
    /* Every exponent, every fp16-visible mantissa, and the low bits that decide rounding. */
    static const uint32_t low[] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff};
    for (uint32_t e = 0; e < 256; e++)
        for (uint32_t m = 0; m < 1024; m++)
            for (size_t k = 0; k < sizeof low / sizeof low[0]; k++) {
                uint32_t x = (e << 23) | (m << 13) | low[k];
                check_against_compiler(x);
                check_against_compiler(x | 0x80000000u);
            }
    /* Subnormal results round at coarser positions: sweep all low bits there. */
    for (uint32_t x = 0x33000000u; x < 0x38800000u; x += 7)
        check_against_compiler(x);
    tu_rng r;
    tu_rng_seed(&r, 12345);
    for (int i = 0; i < 2000000; i++)
        check_against_compiler((uint32_t)tu_rng_u64(&r));
    for (int i = 0; i < 500000; i++) {
        uint64_t x = tu_rng_u64(&r);
        double d;
        /* Half of them near the fp16 range, where double-vs-float rounding differs. */
        if (i & 1)
            x = (x & UINT64_C(0x800fffffffffffff)) | ((uint64_t)(990 + (x >> 52) % 50) << 52);
        memcpy(&d, &x, sizeof d);
        if (isnan(d)) continue;
        uint16_t want = compiler_f16_from_f64(d), got = mq_f64_to_f16(d);
        if (want != got) fail_msg("%a: compiler 0x%04x, ours 0x%04x", d, want, got);
    }
#else
    skip();
#endif
}

static void test_f64_to_f16(void **state)
{
    (void)state;
    /* Just above a tie: one rounding goes up; via float it would land on the tie
     * (1 + 2^-11 exactly) and go to the even 0x3c00. */
    double d = 1.0 + ldexp(1.0, -11) + ldexp(1.0, -40);
    assert_int_equal(mq_f32_bits((float)d), 0x3f801000u);
    assert_int_equal(mq_f32_to_f16((float)d), 0x3c00);
    assert_int_equal(mq_f64_to_f16(d), 0x3c01);
    assert_int_equal(mq_f64_to_f16(1.0 + ldexp(1.0, -11)), 0x3c00);
    assert_int_equal(mq_f64_to_f16(1.0), 0x3c00);
    assert_int_equal(mq_f64_to_f16(-0.0), 0x8000);
    assert_int_equal(mq_f64_to_f16(1.0 / 3.0), 0x3555);
    assert_int_equal(mq_f64_to_f16(65504.0), 0x7bff);
    assert_int_equal(mq_f64_to_f16(65519.99999), 0x7bff);
    assert_int_equal(mq_f64_to_f16(65520.0), 0x7c00);
    assert_int_equal(mq_f64_to_f16(-1e300), 0xfc00);
    assert_int_equal(mq_f64_to_f16(ldexp(1.0, -24)), 0x0001);
    assert_int_equal(mq_f64_to_f16(ldexp(1.0, -25)), 0x0000);
    assert_int_equal(mq_f64_to_f16(ldexp(1.0, -25) + ldexp(1.0, -60)), 0x0001);
    assert_int_equal(mq_f64_to_f16(ldexp(3.0, -25)), 0x0002);
    assert_int_equal(mq_f64_to_f16(1e-7), 0x0002);
    assert_int_equal(mq_f64_to_f16(1e-300), 0x0000);
    assert_int_equal(mq_f64_to_f16(INFINITY), 0x7c00);
    assert_int_equal(mq_f64_to_f16(-NAN) & 0x8000, 0x8000);
    assert_int_equal(mq_f64_to_f16(NAN) & 0x7e00, 0x7e00);
    double snan;
    uint64_t sbits = UINT64_C(0x7ff4000000000000); /* payload 0x4..: top f16 bit 0x100 */
    memcpy(&snan, &sbits, sizeof snan);
    assert_int_equal(mq_f64_to_f16(snan), 0x7f00);
}

static void test_bf16(void **state)
{
    (void)state;
    assert_f32_bits(mq_bf16_to_f32(0x3f80), 1.0f);
    assert_f32_bits(mq_bf16_to_f32(0xc040), -3.0f);
    assert_int_equal(mq_f32_bits(mq_bf16_to_f32(0x7fa1)), 0x7fa10000u); /* bits << 16, as is */
    assert_int_equal(mq_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(mq_f32_to_bf16(-0.0f), 0x8000);
    /* bf16 ulp at 1 is 2^-7: ties go to even, anything above a tie goes up. */
    assert_int_equal(mq_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    assert_int_equal(mq_f32_to_bf16(1.0f + ldexpf(3.0f, -8)), 0x3f82);
    assert_int_equal(mq_f32_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -23)), 0x3f81);
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x3f80ffffu)), 0x3f81);
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x3f807fffu)), 0x3f80);
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x00008000u)),
                     0x0000); /* subnormal tie to even */
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x00018000u)), 0x0002);
    assert_int_equal(mq_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds past the largest bf16 */
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(mq_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x7fc00000u)), 0x7fc0);
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0xff800001u)),
                     0xffc0); /* payload below bit 16: quiet */
    assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x7fa1ffffu)),
                     0x7fe1); /* no rounding into inf */
}

static void test_load_store(void **state)
{
    (void)state;
    float f[2] = {1.5f, -2.0f};
    uint16_t h[2] = {0x3e00, 0xc000}; /* 1.5, -2 */
    uint16_t b[2] = {0x3fc0, 0xc000}; /* 1.5, -2 */
    assert_f32_bits(mq_load_f32(f, MQ_DTYPE_F32, 1), -2.0f);
    assert_f32_bits(mq_load_f32(h, MQ_DTYPE_F16, 0), 1.5f);
    assert_f32_bits(mq_load_f32(h, MQ_DTYPE_F16, 1), -2.0f);
    assert_f32_bits(mq_load_f32(b, MQ_DTYPE_BF16, 0), 1.5f);
    assert_f32_bits(mq_load_f32(b, MQ_DTYPE_BF16, 1), -2.0f);
    float fs[2] = {0};
    uint16_t hs[2] = {0}, bs[2] = {0};
    mq_store_scale(fs, MQ_DTYPE_F32, 1, 0.25f);
    mq_store_scale(hs, MQ_DTYPE_F16, 1, 0.25f);
    mq_store_scale(bs, MQ_DTYPE_BF16, 1, 0.25f);
    assert_f32_bits(fs[1], 0.25f);
    assert_int_equal(hs[1], 0x3400);
    assert_int_equal(bs[1], 0x3e80);
    assert_int_equal(hs[0], 0);
    assert_int_equal(bs[0], 0);
}

/* ---------------- statistics and parameters ---------------- */

static void test_stats_and_params(void **state)
{
    (void)state;
    mq_ref_stats s;
    mq_ref_stats_init(&s);
    assert_f32_bits(s.lo, INFINITY);
    assert_f32_bits(s.hi, -INFINITY);
    assert_f32_bits(s.amax, 0.0f);
    assert_false(s.nonfinite);

    /* No values seen: the range is [0, 0]. */
    float scale;
    int8_t zp = 5;
    mq_ref_params(mq_qd(MQ_QK_INT8, false), &s, MQ_DTYPE_F32, &scale, &zp);
    assert_f32_bits(scale, FLT_EPSILON);
    assert_int_equal(zp, -128);
    mq_ref_params(mq_qd(MQ_QK_INT8, true), &s, MQ_DTYPE_F32, &scale, &zp);
    assert_f32_bits(scale, FLT_EPSILON);
    assert_int_equal(zp, 0);

    float a[3] = {0.5f, -3.0f, 2.0f};
    uint16_t b[2] = {0x4080, 0xc000}; /* bf16 4, -2 */
    mq_ref_stats_update(&s, a, MQ_DTYPE_F32, 3);
    mq_ref_stats_update(&s, b, MQ_DTYPE_BF16, 2);
    assert_f32_bits(s.lo, -3.0f);
    assert_f32_bits(s.hi, 4.0f);
    assert_f32_bits(s.amax, 4.0f);
    assert_false(s.nonfinite);
    /* Asymmetric: (4 - -3) / 255; zp = rint(-128 + 3 / scale) = rint(-128 + 109.28...) = -19 */
    mq_ref_params(mq_qd(MQ_QK_INT8, false), &s, MQ_DTYPE_F32, &scale, &zp);
    assert_f32_bits(scale, 7.0f / 255.0f);
    assert_int_equal(zp, -19);

    uint16_t h[2] = {0x3c00, 0x7c00}; /* 1, inf */
    mq_ref_stats_update(&s, h, MQ_DTYPE_F16, 2);
    assert_true(s.nonfinite);
}

/* ---------------- symmetric int8 ---------------- */

static void test_sym_basic(void **state)
{
    (void)state;
    /* amax 2, scale 2/127.5 = 0.015686275; w/s in fp32 is 63.749996, -127.49999,
     * 31.874998, 127.49999: the end points fall just short of the half. */
    const float w[4] = {1.0f, -2.0f, 0.5f, 2.0f};
    int8_t q[4];
    float s = quant_row_f32(w, 4, true, q, NULL);
    assert_f32_bits(s, 2.0f / 127.5f);
    assert_q(q, (const int8_t[]){64, -127, 32, 127}, 4);
}

static void test_sym_ties(void **state)
{
    (void)state;
    /* amax 127.5 makes the scale exactly 1: w/s are exact halves, rounded to even;
     * 127.5 rounds to 128 and is clamped. */
    const float w[7] = {127.5f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 3.0f};
    int8_t q[7];
    float s = quant_row_f32(w, 7, true, q, NULL);
    assert_f32_bits(s, 1.0f);
    assert_q(q, (const int8_t[]){127, 0, 2, 2, 0, -2, 3}, 7);
    /* -127.5 rounds to the even -128, inside the range. */
    const float n[3] = {-127.5f, -63.75f, -1.0f};
    s = quant_row_f32(n, 3, true, q, NULL);
    assert_f32_bits(s, 1.0f);
    assert_q(q, (const int8_t[]){-128, -64, -1}, 3);
}

static void test_sym_zero_and_tiny(void **state)
{
    (void)state;
    int8_t q[4];
    const float z[4] = {0.0f, -0.0f, 0.0f, 0.0f};
    assert_f32_bits(quant_row_f32(z, 4, true, q, NULL), FLT_EPSILON);
    assert_q(q, (const int8_t[]){0, 0, 0, 0}, 4);
    /* fp32 subnormals: the scale clamps to FLT_EPSILON and every w/s rounds to 0. */
    const float sub[3] = {mq_f32_from_bits(0x00000001u), -mq_f32_from_bits(0x007fffffu), FLT_MIN};
    assert_f32_bits(quant_row_f32(sub, 3, true, q, NULL), FLT_EPSILON);
    assert_q(q, (const int8_t[]){0, 0, 0}, 3);
    /* amax/127.5 = 7.8e-8 < FLT_EPSILON: q = rint(w / 2^-23) = rint(83.886), rint(-16.777). */
    const float t[2] = {1e-5f, -2e-6f};
    assert_f32_bits(quant_row_f32(t, 2, true, q, NULL), FLT_EPSILON);
    assert_q(q, (const int8_t[]){84, -17}, 2);
}

static void test_sym_extremes(void **state)
{
    (void)state;
    int8_t q[4];
    /* FLT_MAX / 127.5 is finite and FLT_MAX / scale is 127.5 exactly. */
    const float m[4] = {FLT_MAX, -FLT_MAX, 1.0f, 0.0f};
    assert_f32_bits(quant_row_f32(m, 4, true, q, NULL), FLT_MAX / 127.5f);
    assert_q(q, (const int8_t[]){127, -128, 0, 0}, 4);
    /* A huge outlier flattens the rest of the channel to 0. */
    const float o[3] = {1e30f, 1.0f, -1.0f};
    assert_f32_bits(quant_row_f32(o, 3, true, q, NULL), 1e30f / 127.5f);
    assert_q(q, (const int8_t[]){127, 0, 0}, 3);
    /* scale 7.8431373: 3.9/s = 0.497 -> 0, 4/s = 0.51 -> 1. */
    const float p[4] = {1000.0f, 1.0f, 3.9f, 4.0f};
    assert_f32_bits(quant_row_f32(p, 4, true, q, NULL), 1000.0f / 127.5f);
    assert_q(q, (const int8_t[]){127, 0, 0, 1}, 4);
}

static void test_sym_f16_scale_rounding(void **state)
{
    (void)state;
    /* amax 1.0009765625 (0x3c01): 1.0009765625/127.5 = 0.0078507969 rounds to the
     * fp16 0x2005 = 0.0078506470. 0.451416015625 (0x3739) divided by the fp32 scale
     * is 57.49939 (-> 57), by the rounded one 57.50048 (-> 58): q must use the latter. */
    const uint16_t w[4] = {0x3c01, 0x3739, 0xbc01, 0x0000};
    int8_t q[4];
    uint16_t s = 0;
    size_t bad = 0;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F16, 1, 4, q, &s, NULL, &bad), MQ_OK);
    assert_int_equal(s, 0x2005);
    assert_q(q, (const int8_t[]){127, 58, -128, 0}, 4);
}

static void test_sym_bf16_scale_rounding(void **state)
{
    (void)state;
    /* amax 1: 1/127.5 = 0.0078431 = 2^-7 * 1.0039216, above the bf16 midpoint
     * 1.00390625, so it rounds up to 2^-7 * 1.0078125 = 0.0078735352 (0x3c01).
     * 0.75 / 0.0078735 = 95.26 -> 95 (the fp32 scale would give 95.625 -> 96). */
    const uint16_t w[3] = {0x3f80, 0x3f40, 0xbf80}; /* 1, 0.75, -1 */
    int8_t q[3];
    uint16_t s = 0;
    size_t bad = 0;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_BF16, 1, 3, q, &s, NULL, &bad), MQ_OK);
    assert_int_equal(s, 0x3c01);
    assert_q(q, (const int8_t[]){127, 95, -127}, 3);
}

static void test_nonfinite_rows(void **state)
{
    (void)state;
    float w[3 * 2] = {1.0f, 2.0f, 3.0f, NAN, 5.0f, 6.0f};
    int8_t q[6];
    float s[3];
    int8_t zp[3];
    size_t bad = 99;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, 3, 2, q, s, NULL, &bad),
        MQ_STATUS_E_DATA);
    assert_int_equal(bad, 1);
    w[3] = 4.0f;
    w[4] = -INFINITY;
    bad = 99;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_F32, 3, 2, q, s, zp, &bad),
        MQ_STATUS_E_DATA);
    assert_int_equal(bad, 2);
    w[4] = 5.0f;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_F32, 3, 2, q, s, zp, &bad), MQ_OK);

    uint16_t h[4] = {0x3c00, 0x3c00, 0x7c00, 0x3c00}; /* f16 +inf in row 1 */
    uint16_t hs[2];
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), h, MQ_DTYPE_F16, 2, 2, q, hs, NULL, &bad),
        MQ_STATUS_E_DATA);
    assert_int_equal(bad, 1);
    uint16_t b[4] = {0x7fc0, 0x3f80, 0x3f80, 0x3f80}; /* bf16 NaN in row 0 */
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, false), b, MQ_DTYPE_BF16, 2, 2, q, hs, zp, &bad),
        MQ_STATUS_E_DATA);
    assert_int_equal(bad, 0);
}

static void test_multi_rows_and_empty(void **state)
{
    (void)state;
    /* Each row has its own scale. */
    const float w[2 * 3] = {127.5f, 1.5f, -2.5f, 0.0f, 0.0f, 0.0f};
    int8_t q[6];
    float s[2];
    size_t bad = 0;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, 2, 3, q, s, NULL, &bad), MQ_OK);
    assert_f32_bits(s[0], 1.0f);
    assert_f32_bits(s[1], FLT_EPSILON);
    assert_q(q, (const int8_t[]){127, 2, -2, 0, 0, 0}, 6);
    /* Rows of no values still get a scale (and asymmetric zero point). */
    int8_t zp[2] = {0, 0};
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_F32, 2, 0, q, s, zp, &bad), MQ_OK);
    assert_f32_bits(s[0], FLT_EPSILON);
    assert_f32_bits(s[1], FLT_EPSILON);
    assert_int_equal(zp[0], -128);
    assert_int_equal(zp[1], -128);
}

/* ---------------- asymmetric int8 ---------------- */

static void test_asym_basic(void **state)
{
    (void)state;
    int8_t q[4], zp;
    /* [0, 255]: scale 1, zp = -128, q = w - 128. */
    const float a[2] = {0.0f, 255.0f};
    assert_f32_bits(quant_row_f32(a, 2, false, q, &zp), 1.0f);
    assert_int_equal(zp, -128);
    assert_q(q, (const int8_t[]){-128, 127}, 2);
    /* [-1, 1]: scale 2/255; -1/s = -127.49999 in fp32, so zp = rint(-0.50001) = -1
     * and q(1) = rint(127.49999) - 1 = 126. */
    const float b[2] = {-1.0f, 1.0f};
    assert_f32_bits(quant_row_f32(b, 2, false, q, &zp), 2.0f / 255.0f);
    assert_int_equal(zp, -1);
    assert_q(q, (const int8_t[]){-128, 126}, 2);
    /* All positive: lo is 0. scale 20/255; 10/s = 127.49999 -> 127 - 128 = -1. */
    const float c[3] = {10.0f, 20.0f, 0.0f};
    assert_f32_bits(quant_row_f32(c, 3, false, q, &zp), 20.0f / 255.0f);
    assert_int_equal(zp, -128);
    assert_q(q, (const int8_t[]){-1, 127, -128}, 3);
    /* All negative: hi is 0. scale 1, zp = rint(-128 + 255) = 127. The zero
     * point is added before rounding: -0.5 + 127 = 126.5 rounds to even, 126
     * (rounding first would give rint(-0.5) + 127 = 127). */
    const float d[3] = {-255.0f, -100.0f, -0.5f};
    assert_f32_bits(quant_row_f32(d, 3, false, q, &zp), 1.0f);
    assert_int_equal(zp, 127);
    assert_q(q, (const int8_t[]){-128, 27, 126}, 3);
    /* Exact-half codes round to even after the (even) zero point is added:
     * [-0.5, 254.5] has scale 1, zp = rint(-127.5) = -128; 254.5 - 128 -> 126,
     * 1.5 - 128 -> -126, 2.5 - 128 -> -126. */
    const float e[4] = {-0.5f, 254.5f, 1.5f, 2.5f};
    assert_f32_bits(quant_row_f32(e, 4, false, q, &zp), 1.0f);
    assert_int_equal(zp, -128);
    assert_q(q, (const int8_t[]){-128, 126, -126, -126}, 4);
}

static void test_asym_flt_max(void **state)
{
    (void)state;
    /* hi - lo overflows; scale = FLT_MAX/255 - (-FLT_MAX/255) = 2.668881e36 (0x7c008080).
     * lo/s = -127.5 exactly: zp = rint(-0.5) = 0; 1e38/s = 37.47 -> 37. */
    const float w[4] = {FLT_MAX, -FLT_MAX, 0.0f, 1e38f};
    int8_t q[4], zp;
    float s = quant_row_f32(w, 4, false, q, &zp);
    assert_int_equal(mq_f32_bits(s), 0x7c008080u);
    assert_true(isfinite(s));
    assert_int_equal(zp, 0);
    assert_q(q, (const int8_t[]){127, -128, 0, 37}, 4);
}

static void test_asym_zp_clamp(void **state)
{
    (void)state;
    /* F16 row [-612 * 2^-24, 0]: (612 * 2^-24) / 255 = 2.4 * 2^-24 is above FLT_EPSILON
     * (2 * 2^-24) and rounds to the fp16 subnormal 0x0002 = 2^-23. Then
     * -128 - lo/s = -128 + 306 = 178, clamped to 127; q(lo) = -306 + 127 -> -128. */
    const uint16_t w[2] = {0x8264, 0x0000};
    int8_t q[2], zp = 0;
    uint16_t s = 0;
    size_t bad = 0;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_F16, 1, 2, q, &s, &zp, &bad), MQ_OK);
    assert_int_equal(s, 0x0002);
    assert_int_equal(zp, 127);
    assert_q(q, (const int8_t[]){-128, 127}, 2);
}

static void test_asym_bf16(void **state)
{
    (void)state;
    /* bf16 [-1, 1, 0.75]: scale 2/255 = 0.0078431 rounds to bf16 0x3c01 = 0.0078735352;
     * -1/s = -127.007 so zp = rint(-0.992) = -1; 1/s = 127.007 -> 127 - 1 = 126;
     * 0.75/s = 95.26 -> 95 - 1 = 94. */
    const uint16_t w[3] = {0xbf80, 0x3f80, 0x3f40};
    int8_t q[3], zp = 0;
    uint16_t s = 0;
    size_t bad = 0;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_BF16, 1, 3, q, &s, &zp, &bad), MQ_OK);
    assert_int_equal(s, 0x3c01);
    assert_int_equal(zp, -1);
    assert_q(q, (const int8_t[]){-128, 126, 94}, 3);
}

/* ---------------- fp16 cast ---------------- */

static void test_cast_f32(void **state)
{
    (void)state;
    const float w[12] = {1.0f,
                         65504.0f,
                         65519.99f,
                         65520.0f,
                         -70000.0f,
                         FLT_MAX,
                         ldexpf(3.0f, -26),
                         -2.5e-6f,
                         INFINITY,
                         -INFINITY,
                         mq_f32_from_bits(0x7fc00000u),
                         1e-10f};
    const uint16_t inf_want[12] = {0x3c00, 0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x7c00,
                                   0x0001, 0x802a, 0x7c00, 0xfc00, 0x7e00, 0x0000};
    const uint16_t sat_want[12] = {0x3c00, 0x7bff, 0x7bff, 0x7bff, 0xfbff, 0x7bff,
                                   0x0001, 0x802a, 0x7c00, 0xfc00, 0x7e00, 0x0000};
    uint16_t h[12];
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_F32, 12, false, h), 3);
    for (int i = 0; i < 12; i++)
        assert_int_equal(h[i], inf_want[i]);
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_F32, 12, true, h), 3);
    for (int i = 0; i < 12; i++)
        assert_int_equal(h[i], sat_want[i]);
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_F32, 0, true, h), 0);
}

static void test_cast_bf16(void **state)
{
    (void)state;
    /* 1, 65280, 65536 (overflows), -3.4e38, -inf, NaN, 2^-24 * 1.5, 1/3 (0x3eab = 0.333984) */
    const uint16_t w[8] = {0x3f80, 0x477f, 0x4780, 0xff7f, 0xff80, 0x7fc1, 0x33c0, 0x3eab};
    const uint16_t want[8] = {0x3c00, 0x7bf8, 0x7c00, 0xfc00, 0xfc00, 0x7e08, 0x0002, 0x3558};
    uint16_t h[8];
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_BF16, 8, false, h), 2);
    for (int i = 0; i < 8; i++)
        assert_int_equal(h[i], want[i]);
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_BF16, 8, true, h), 2);
    assert_int_equal(h[2], 0x7bff);
    assert_int_equal(h[3], 0xfbff);
    assert_int_equal(h[4], 0xfc00);
}

static void test_cast_f64(void **state)
{
    (void)state;
    const double w[9] = {1.0 + ldexp(1.0, -11) + ldexp(1.0, -40),
                         65519.99999,
                         1e6,
                         -1e300,
                         ldexp(1.0, -25) + ldexp(1.0, -60),
                         1.0 / 3.0,
                         -INFINITY,
                         NAN,
                         -0.0};
    const uint16_t want[9] = {0x3c01, 0x7bff, 0x7c00, 0xfc00, 0x0001,
                              0x3555, 0xfc00, 0x7e00, 0x8000};
    uint16_t h[9];
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_F64, 9, false, h), 2);
    for (int i = 0; i < 9; i++)
        assert_int_equal(h[i], want[i]);
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_F64, 9, true, h), 2);
    assert_int_equal(h[2], 0x7bff);
    assert_int_equal(h[3], 0xfbff);
    assert_int_equal(h[6], 0xfc00);
}

static void test_cast_f16_copy(void **state)
{
    (void)state;
    const uint16_t w[5] = {0x3c00, 0x7c00, 0xfc00, 0x7d01, 0x0001};
    uint16_t h[5];
    assert_int_equal(mq_ref_cast_f16(w, MQ_DTYPE_F16, 5, true, h), 0);
    assert_memory_equal(h, w, sizeof w); /* even signalling NaNs: a copy */
}

/* ---------------- dequantize ---------------- */

static void test_dequantize(void **state)
{
    (void)state;
    const int8_t q[2 * 4] = {-128, 0, 127, 5, -128, 0, 127, 5};
    float f[8];
    const float fs[2] = {0.5f, 2.0f};
    mq_ref_dequantize_rows(q, 2, 4, fs, NULL, MQ_DTYPE_F32, f);
    const float fwant[8] = {-64.0f, 0.0f, 63.5f, 2.5f, -256.0f, 0.0f, 254.0f, 10.0f};
    for (int i = 0; i < 8; i++)
        assert_f32_bits(f[i], fwant[i]);
    /* With zero points: (q - zp) * s. */
    const int8_t zp[2] = {-128, 3};
    mq_ref_dequantize_rows(q, 2, 4, fs, zp, MQ_DTYPE_F32, f);
    const float zwant[8] = {0.0f, 64.0f, 127.5f, 66.5f, -262.0f, -6.0f, 248.0f, 4.0f};
    for (int i = 0; i < 8; i++)
        assert_f32_bits(f[i], zwant[i]);

    /* F16: scale 0x3800 (0.5) then 0x2004 (0.0078430176); 127 * 0.0078430176 =
     * 0.99606323 rounds to 0x3bf8, -128 * s = -1.00390625 (0xbc04), -3 * s =
     * -0.023529053 (0xa606). */
    const int8_t q2[2 * 4] = {-128, 0, 127, 5, 127, -128, 1, -3};
    const uint16_t hs[2] = {0x3800, 0x2004};
    uint16_t h[8];
    mq_ref_dequantize_rows(q2, 2, 4, hs, NULL, MQ_DTYPE_F16, h);
    const uint16_t hwant[8] = {0xd400, 0x0000, 0x53f0, 0x4100, 0x3bf8, 0xbc04, 0x2004, 0xa606};
    for (int i = 0; i < 8; i++)
        assert_int_equal(h[i], hwant[i]);

    /* BF16: scale 0x3f00 (0.5) then 0x3c01 (0.0078735352); 127 * s = 0.99993896 -> 0x3f80,
     * -128 * s = -1.0078125 (0xbf81), 1 * s = 0x3c01, -3 * s = -0.023620605 (0xbcc2). */
    const uint16_t bs[2] = {0x3f00, 0x3c01};
    uint16_t b[8];
    mq_ref_dequantize_rows(q2, 2, 4, bs, NULL, MQ_DTYPE_BF16, b);
    const uint16_t bwant[8] = {0xc280, 0x0000, 0x427e, 0x4020, 0x3f80, 0xbf81, 0x3c01, 0xbcc2};
    for (int i = 0; i < 8; i++)
        assert_int_equal(b[i], bwant[i]);
}

/* ---------------- random rows ---------------- */

static void fill_row(tu_rng *r, mq_dtype dt, void *dst, size_t n, float mag)
{
    for (size_t i = 0; i < n; i++) {
        float v = tu_rng_normal(r) * mag;
        if (tu_rng_u64(r) % 17 == 0) v *= 40.0f; /* outliers */
        if (tu_rng_u64(r) % 23 == 0) v = 0.0f;
        if (tu_rng_u64(r) % 5 == 0) v = fabsf(v); /* lopsided rows exercise the zero point */
        if (dt == MQ_DTYPE_F32)
            ((float *)dst)[i] = v;
        else if (dt == MQ_DTYPE_F16) /* kept finite: a row with inf is rejected */
            ((uint16_t *)dst)[i] = mq_f32_to_f16(fmaxf(fminf(v, 65504.0f), -65504.0f));
        else
            ((uint16_t *)dst)[i] = mq_f32_to_bf16(v);
    }
}

static void test_property_random(void **state)
{
    (void)state;
    enum { ROWS = 24, COLS = 61 };
    static const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    static const float mags[6] = {1e-9f, 1e-4f, 0.02f, 1.0f, 300.0f, 1e30f};
    tu_rng r;
    tu_rng_seed(&r, 2024);
    float src[ROWS * COLS];
    unsigned char scale[ROWS * 4];
    int8_t q[ROWS * COLS], q2[ROWS * COLS], zp[ROWS];
    float deq[ROWS * COLS];
    for (int iter = 0; iter < 60; iter++) {
        mq_dtype dt = dts[iter % 3];
        bool sym = (iter / 3) % 2 == 0;
        float mag = mags[(iter / 6) % 6];
        for (size_t row = 0; row < ROWS; row++)
            fill_row(&r, dt, (unsigned char *)src + row * COLS * mq_dtype_size(dt), COLS,
                     mag * (float)(1 + row % 4));
        size_t bad = 0;
        memset(zp, 0, sizeof zp);
        assert_int_equal(mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, ROWS, COLS, q, scale,
                                         sym ? NULL : zp, &bad),
                         MQ_OK);
        for (size_t row = 0; row < ROWS; row++) {
            float s = mq_load_f32(scale, dt, row);
            assert_true(s >= FLT_EPSILON && isfinite(s));
            double z = sym ? 0.0 : zp[row];
            const void *rp = (unsigned char *)src + row * COLS * mq_dtype_size(dt);
            for (size_t c = 0; c < COLS; c++) {
                double w = mq_load_f32(rp, dt, c);
                int qi = q[row * COLS + c];
                assert_true(qi >= -128 && qi <= 127);
                if (w == 0.0) assert_int_equal(qi, (int)z); /* zero is exact */
                double t = w / s + z;
                if (t <= -128.5 || t >= 127.5) continue; /* clamped */
                /* Half a step, plus the fp32 division's rounding (|w/s| < 2^8). */
                double err = fabs(w - (qi - z) * s);
                if (err > s * (0.5 + ldexp(1.0, -15)))
                    fail_msg("dt %d sym %d row %zu col %zu: w %a s %a q %d zp %g", dt, sym, row, c,
                             w, (double)s, qi, z);
            }
        }
        /* Deterministic, and the per-row pieces compose to the same result. */
        for (size_t row = 0; row < ROWS; row++) {
            const void *rp = (unsigned char *)src + row * COLS * mq_dtype_size(dt);
            mq_ref_stats st;
            mq_ref_stats_init(&st);
            mq_ref_stats_update(&st, rp, dt, COLS);
            float s;
            int8_t z;
            mq_ref_params(mq_qd(MQ_QK_INT8, sym), &st, dt, &s, &z);
            assert_f32_bits(s, mq_load_f32(scale, dt, row));
            if (!sym) assert_int_equal(z, zp[row]);
            mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), rp, dt, COLS, s, z, q2 + row * COLS);
        }
        assert_memory_equal(q, q2, sizeof q);
        if (dt == MQ_DTYPE_F32) {
            mq_ref_dequantize_rows(q, ROWS, COLS, scale, sym ? NULL : zp, dt, deq);
            for (size_t i = 0; i < ROWS * COLS; i++) {
                float s = ((float *)scale)[i / COLS];
                float z = sym ? 0.0f : (float)zp[i / COLS];
                assert_f32_bits(deq[i], ((float)q[i] - z) * s);
            }
        }
    }
}

/* ---- MX kinds: e2m1 codes and e8m0 scales ---- */

/* Every e2m1 value maps to its code; the thresholds between them (ties go to
 * the even code) and the sign rule of compressed-tensors' cast_to_fp4. */
static void test_e2m1_codes_and_midpoints(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 16; c++) {
        float v = mq_e2m1_to_f32((uint8_t)c);
        if (c == 8) { /* -0: compressed-tensors packs it as +0 */
            assert_int_equal(mq_f32_to_e2m1(v), 0);
            continue;
        }
        assert_int_equal(mq_f32_to_e2m1(v), c);
    }
    static const struct {
        float v;
        uint8_t c;
    } mid[] = {
        {0.25f, 0},  {0.75f, 2},     {1.25f, 2},      {1.75f, 4},      {2.5f, 4},       {3.5f, 6},
        {5.0f, 6},   {-0.25f, 8},    {-0.75f, 10},    {-1.25f, 10},    {-1.75f, 12},    {-2.5f, 12},
        {-3.5f, 14}, {-5.0f, 14},    {-0.1f, 8},      {0.1f, 0},       {-0.0f, 0},      {6.0f, 7},
        {-6.0f, 15}, {0x1p-149f, 0}, {-0x1p-149f, 8}, {0.2500001f, 1}, {5.0000005f, 7},
    };
    for (size_t i = 0; i < sizeof mid / sizeof *mid; i++)
        assert_int_equal(mq_f32_to_e2m1(mid[i].v), mid[i].c);
}

/* The e8m0 scale of a group: amax rounded up to the next power of two from
 * 1.75 times a power on (half a unit of e2m1's mantissa bit), minus 2 (MXFP4) or 8
 * (MXFP8); zero gives byte 0 (2^-127); the codes divide by it. */
static void test_mx_scales(void **state)
{
    (void)state;
    static const struct {
        float amax;
        uint8_t x4, x8;
    } cases[] = {
        {1.0f, 125, 119},    {1.5f, 125, 119},    {1.74f, 125, 119}, {1.75f, 126, 120},
        {6.0f, 127, 121},    {0.0f, 0, 0},        {0x1p-140f, 0, 0}, {448.0f, 134, 128},
        {1.0e38f, 251, 245}, {3.0e38f, 255, 255},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float w[32] = {0};
        w[5] = -cases[i].amax;
        uint8_t q[32], sc;
        assert_int_equal(
            mq_ref_quantize(mq_qd(MQ_QK_MXFP4, true), w, MQ_DTYPE_F32, 1, 32, q, &sc, NULL, NULL),
            MQ_OK);
        assert_int_equal(sc, cases[i].x4);
        assert_int_equal(
            mq_ref_quantize(mq_qd(MQ_QK_MXFP8, true), w, MQ_DTYPE_F32, 1, 32, q, &sc, NULL, NULL),
            MQ_OK);
        assert_int_equal(sc, cases[i].x8);
    }
    /* MXFP4: 16 bytes a row, the even code in the low nibble. */
    float w[32];
    for (int i = 0; i < 32; i++)
        w[i] = (float)(i - 16) * 0.25f; /* amax 4: byte 127 + 2 - 2, scale 1 */
    uint8_t q[16], sc;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_MXFP4, true), w, MQ_DTYPE_F32, 1, 32, q, &sc, NULL, NULL),
        MQ_OK);
    assert_int_equal(sc, 127);
    for (int i = 0; i < 32; i++) {
        uint8_t c = (uint8_t)((q[i / 2] >> (4 * (i & 1))) & 15u);
        assert_int_equal(c, mq_f32_to_e2m1(w[i]));
    }
    /* NaN is the data error, as for the other kinds. */
    w[3] = NAN;
    size_t bad = 9;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_MXFP8, true), w, MQ_DTYPE_F32, 1, 32, q, &sc, NULL, &bad),
        MQ_STATUS_E_DATA);
    assert_int_equal(bad, 0);
}

/* NVFP4's global scale as torch computes 2688 / amax (the reciprocal in the
 * weight's dtype, times 2688, rounded again: 2688 / 7 in F32 is not 384),
 * 1 where that overflows (zero, tiny, F16's narrow range); a group's e4m3
 * scale amax / 6 times it (16 is byte 0x58), clamped at 448 (0x7e), zero
 * becoming 2^-3 (0x20); the codes divide by the scale over the global scale. */
static void test_nvfp4_scales(void **state)
{
    (void)state;
    static const struct {
        float amax;
        mq_dtype dt;
        float g;
    } gs[] = {
        {168.0f, MQ_DTYPE_F32, 16.0f},        {2688.0f, MQ_DTYPE_F32, 1.0f},
        {0.0f, MQ_DTYPE_F32, 1.0f},           {1e-37f, MQ_DTYPE_F32, 1.0f},
        {7.0f, MQ_DTYPE_F32, 0x1.800002p+8f}, {7.0f, MQ_DTYPE_BF16, 384.0f},
        {1.0f, MQ_DTYPE_F16, 0x1.5p+11f},     {0x1.998p-5f, MQ_DTYPE_F16, 0x1.a4p+15f},
        {0x1.eb8p-6f, MQ_DTYPE_F16, 1.0f},
    };
    for (size_t i = 0; i < sizeof gs / sizeof *gs; i++)
        if (mq_f32_bits(mq_nvfp4_global_scale(gs[i].amax, gs[i].dt)) != mq_f32_bits(gs[i].g))
            fail_msg("amax %a dtype %d: global scale %a, want %a", (double)gs[i].amax,
                     (int)gs[i].dt, (double)mq_nvfp4_global_scale(gs[i].amax, gs[i].dt),
                     (double)gs[i].g);
    mq_qdesc d = mq_qd(MQ_QK_NVFP4, true);
    d.gscale = 16.0f;
    float w[64] = {0};
    for (int i = 0; i < 16; i++)
        w[i] = (float)(i - 8) * 0.375f; /* amax 3: scale 8, codes of w / 0.5 */
    w[16] = 6.0f;                       /* amax 6: scale 16 (0x58), codes of w itself */
    for (int i = 17; i < 32; i++)
        w[i] = (float)(i - 24) * 0.25f;
    w[40] = -6000.0f; /* 16000 clamped to 448 */
    uint8_t q[32], sc[4];
    assert_int_equal(mq_ref_quantize(d, w, MQ_DTYPE_F32, 4, 16, q, sc, NULL, NULL), MQ_OK);
    assert_int_equal(sc[0], 0x50);
    assert_int_equal(sc[1], 0x58);
    assert_int_equal(sc[2], 0x7e);
    assert_int_equal(sc[3], 0x20);
    for (int i = 0; i < 32; i++) {
        uint8_t c = (uint8_t)((q[i / 2] >> (4 * (i & 1))) & 15u);
        assert_int_equal(c, mq_f32_to_e2m1(i < 16 ? w[i] / 0.5f : w[i]));
    }
    assert_true(mq_load_group_scale(d, sc, MQ_DTYPE_F32, 2) == 448.0f / 16.0f);
    assert_true(mq_load_group_scale(d, sc, MQ_DTYPE_F32, 3) == 0.125f / 16.0f);
}

/* ---- float8 e4m3fn and int4 ---- */

/* Every code but NaN converts to a value that converts back to it. */
static void test_e4m3_round_trip(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        float v = mq_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7fu) == 0x7fu) {
            assert_true(isnan(v));
            assert_int_equal(mq_f32_to_e4m3(v), c); /* NaN keeps its sign */
            continue;
        }
        if (mq_f32_to_e4m3(v) != c)
            fail_msg("code 0x%02x -> %a -> 0x%02x", c, v, mq_f32_to_e4m3(v));
    }
    assert_f32_bits(mq_e4m3_to_f32(0x7e), 448.0f);
    assert_f32_bits(mq_e4m3_to_f32(0x01), 0x1p-9f);
    assert_f32_bits(mq_e4m3_to_f32(0x08), 0x1p-6f);
    assert_f32_bits(mq_e4m3_to_f32(0x80), -0.0f);
}

/* The midpoint of two consecutive codes rounds to the even one; a hair
 * above or below it to the nearer. */
static void test_e4m3_midpoints(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 126; c++) {
        for (unsigned sign = 0; sign < 2; sign++) {
            float lo = mq_e4m3_to_f32((uint8_t)c), hi = mq_e4m3_to_f32((uint8_t)(c + 1));
            float mid = (lo + hi) / 2; /* exact: both have few bits */
            unsigned even = (c & 1u) ? c + 1 : c, s = sign << 7;
            float m = sign ? -mid : mid;
            assert_int_equal(mq_f32_to_e4m3(m), even | s);
            assert_int_equal(mq_f32_to_e4m3(nextafterf(m, sign ? -INFINITY : INFINITY)),
                             (c + 1) | s);
            if (mid > 0x1p-126f) assert_int_equal(mq_f32_to_e4m3(nextafterf(m, 0.0f)), c | s);
        }
    }
}

/* Saturation above 448 (464, the midpoint to the next binade, ties to 448
 * too), the subnormal boundary at 2^-10 (half the smallest subnormal: a tie
 * to 0), fp32 subnormals, NaN. */
static void test_e4m3_edges(void **state)
{
    (void)state;
    assert_int_equal(mq_f32_to_e4m3(448.0f), 0x7e);
    assert_int_equal(mq_f32_to_e4m3(463.99f), 0x7e);
    assert_int_equal(mq_f32_to_e4m3(464.0f), 0x7e);
    assert_int_equal(mq_f32_to_e4m3(1e30f), 0x7e);
    assert_int_equal(mq_f32_to_e4m3(INFINITY), 0x7e);
    assert_int_equal(mq_f32_to_e4m3(-464.0f), 0xfe);
    assert_int_equal(mq_f32_to_e4m3(0x1p-10f), 0x00);
    assert_int_equal(mq_f32_to_e4m3(nextafterf(0x1p-10f, 1.0f)), 0x01);
    assert_int_equal(mq_f32_to_e4m3(-0x1p-10f), 0x80);
    assert_int_equal(mq_f32_to_e4m3(3 * 0x1p-10f), 0x02); /* 1.5 units: even */
    assert_int_equal(mq_f32_to_e4m3(0x1p-149f), 0x00);
    assert_int_equal(mq_f32_to_e4m3(-0.0f), 0x80);
    assert_int_equal(mq_f32_to_e4m3(0x1.ep-7f),
                     0x08); /* 7.5 units rounds up to the smallest normal */
    assert_int_equal(mq_f32_to_e4m3(NAN), 0x7f);
    assert_int_equal(mq_f32_to_e4m3(-NAN), 0xff);
}

/* fp32 bits and the byte torch 2.x's .to(torch.float8_e4m3fn) gives them:
 * midpoints of consecutive codes and their neighbours, the 2^-10 and 464
 * boundaries, random values in every binade (all |x| <= 464, where torch
 * rounds as well as saturates the way the reference does). */
static const struct {
    uint32_t bits;
    uint8_t code;
} torch_e4m3[] = {
    {0x3a800000u, 0x00}, {0x3a800001u, 0x01}, {0x3a7fffffu, 0x00}, {0x3b400000u, 0x02},
    {0x3b400001u, 0x02}, {0x3b3fffffu, 0x01}, {0x3ba00000u, 0x02}, {0x3ba00001u, 0x03},
    {0x3b9fffffu, 0x02}, {0x3be00000u, 0x04}, {0x3be00001u, 0x04}, {0x3bdfffffu, 0x03},
    {0x3c100000u, 0x04}, {0x3c100001u, 0x05}, {0x3c0fffffu, 0x04}, {0x3c300000u, 0x06},
    {0x3c300001u, 0x06}, {0x3c2fffffu, 0x05}, {0x3c500000u, 0x06}, {0x3c500001u, 0x07},
    {0x3c4fffffu, 0x06}, {0x3c700000u, 0x08}, {0x3c700001u, 0x08}, {0x3c6fffffu, 0x07},
    {0x3c880000u, 0x08}, {0x3c880001u, 0x09}, {0x3c87ffffu, 0x08}, {0x3c980000u, 0x0a},
    {0x3c980001u, 0x0a}, {0x3c97ffffu, 0x09}, {0x3ca80000u, 0x0a}, {0x3ca80001u, 0x0b},
    {0x3ca7ffffu, 0x0a}, {0x3cb80000u, 0x0c}, {0x3cb80001u, 0x0c}, {0x3cb7ffffu, 0x0b},
    {0x3cc80000u, 0x0c}, {0x3cc80001u, 0x0d}, {0x3cc7ffffu, 0x0c}, {0x3cd80000u, 0x0e},
    {0x3cd80001u, 0x0e}, {0x3cd7ffffu, 0x0d}, {0x3ce80000u, 0x0e}, {0x3ce80001u, 0x0f},
    {0x3ce7ffffu, 0x0e}, {0x3cf80000u, 0x10}, {0x3cf80001u, 0x10}, {0x3cf7ffffu, 0x0f},
    {0x3d080000u, 0x10}, {0x3d080001u, 0x11}, {0x3d07ffffu, 0x10}, {0x3d180000u, 0x12},
    {0x3d180001u, 0x12}, {0x3d17ffffu, 0x11}, {0x3d280000u, 0x12}, {0x3d280001u, 0x13},
    {0x3d27ffffu, 0x12}, {0x3d380000u, 0x14}, {0x3d380001u, 0x14}, {0x3d37ffffu, 0x13},
    {0x3d480000u, 0x14}, {0x3d480001u, 0x15}, {0x3d47ffffu, 0x14}, {0x3d580000u, 0x16},
    {0x3d580001u, 0x16}, {0x3d57ffffu, 0x15}, {0x3d680000u, 0x16}, {0x3d680001u, 0x17},
    {0x3d67ffffu, 0x16}, {0x3d780000u, 0x18}, {0x3d780001u, 0x18}, {0x3d77ffffu, 0x17},
    {0x3d880000u, 0x18}, {0x3d880001u, 0x19}, {0x3d87ffffu, 0x18}, {0x3d980000u, 0x1a},
    {0x3d980001u, 0x1a}, {0x3d97ffffu, 0x19}, {0x3da80000u, 0x1a}, {0x3da80001u, 0x1b},
    {0x3da7ffffu, 0x1a}, {0x3db80000u, 0x1c}, {0x3db80001u, 0x1c}, {0x3db7ffffu, 0x1b},
    {0x3dc80000u, 0x1c}, {0x3dc80001u, 0x1d}, {0x3dc7ffffu, 0x1c}, {0x3dd80000u, 0x1e},
    {0x3dd80001u, 0x1e}, {0x3dd7ffffu, 0x1d}, {0x3de80000u, 0x1e}, {0x3de80001u, 0x1f},
    {0x3de7ffffu, 0x1e}, {0x3df80000u, 0x20}, {0x3df80001u, 0x20}, {0x3df7ffffu, 0x1f},
    {0x3e080000u, 0x20}, {0x3e080001u, 0x21}, {0x3e07ffffu, 0x20}, {0x3e180000u, 0x22},
    {0x3e180001u, 0x22}, {0x3e17ffffu, 0x21}, {0x3e280000u, 0x22}, {0x3e280001u, 0x23},
    {0x3e27ffffu, 0x22}, {0x3e380000u, 0x24}, {0x3e380001u, 0x24}, {0x3e37ffffu, 0x23},
    {0x3e480000u, 0x24}, {0x3e480001u, 0x25}, {0x3e47ffffu, 0x24}, {0x3e580000u, 0x26},
    {0x3e580001u, 0x26}, {0x3e57ffffu, 0x25}, {0x3e680000u, 0x26}, {0x3e680001u, 0x27},
    {0x3e67ffffu, 0x26}, {0x3e780000u, 0x28}, {0x3e780001u, 0x28}, {0x3e77ffffu, 0x27},
    {0x3e880000u, 0x28}, {0x3e880001u, 0x29}, {0x3e87ffffu, 0x28}, {0x3e980000u, 0x2a},
    {0x3e980001u, 0x2a}, {0x3e97ffffu, 0x29}, {0x3ea80000u, 0x2a}, {0x3ea80001u, 0x2b},
    {0x3ea7ffffu, 0x2a}, {0x3eb80000u, 0x2c}, {0x3eb80001u, 0x2c}, {0x3eb7ffffu, 0x2b},
    {0x3ec80000u, 0x2c}, {0x3ec80001u, 0x2d}, {0x3ec7ffffu, 0x2c}, {0x3ed80000u, 0x2e},
    {0x3ed80001u, 0x2e}, {0x3ed7ffffu, 0x2d}, {0x3ee80000u, 0x2e}, {0x3ee80001u, 0x2f},
    {0x3ee7ffffu, 0x2e}, {0x3ef80000u, 0x30}, {0x3ef80001u, 0x30}, {0x3ef7ffffu, 0x2f},
    {0x3f080000u, 0x30}, {0x3f080001u, 0x31}, {0x3f07ffffu, 0x30}, {0x3f180000u, 0x32},
    {0x3f180001u, 0x32}, {0x3f17ffffu, 0x31}, {0x3f280000u, 0x32}, {0x3f280001u, 0x33},
    {0x3f27ffffu, 0x32}, {0x3f380000u, 0x34}, {0x3f380001u, 0x34}, {0x3f37ffffu, 0x33},
    {0x3f480000u, 0x34}, {0x3f480001u, 0x35}, {0x3f47ffffu, 0x34}, {0x3f580000u, 0x36},
    {0x3f580001u, 0x36}, {0x3f57ffffu, 0x35}, {0x3f680000u, 0x36}, {0x3f680001u, 0x37},
    {0x3f67ffffu, 0x36}, {0x3f780000u, 0x38}, {0x3f780001u, 0x38}, {0x3f77ffffu, 0x37},
    {0x3f880000u, 0x38}, {0x3f880001u, 0x39}, {0x3f87ffffu, 0x38}, {0x3f980000u, 0x3a},
    {0x3f980001u, 0x3a}, {0x3f97ffffu, 0x39}, {0x3fa80000u, 0x3a}, {0x3fa80001u, 0x3b},
    {0x3fa7ffffu, 0x3a}, {0x3fb80000u, 0x3c}, {0x3fb80001u, 0x3c}, {0x3fb7ffffu, 0x3b},
    {0x3fc80000u, 0x3c}, {0x3fc80001u, 0x3d}, {0x3fc7ffffu, 0x3c}, {0x3fd80000u, 0x3e},
    {0x3fd80001u, 0x3e}, {0x3fd7ffffu, 0x3d}, {0x3fe80000u, 0x3e}, {0x3fe80001u, 0x3f},
    {0x3fe7ffffu, 0x3e}, {0x3ff80000u, 0x40}, {0x3ff80001u, 0x40}, {0x3ff7ffffu, 0x3f},
    {0x40080000u, 0x40}, {0x40080001u, 0x41}, {0x4007ffffu, 0x40}, {0x40180000u, 0x42},
    {0x40180001u, 0x42}, {0x4017ffffu, 0x41}, {0x40280000u, 0x42}, {0x40280001u, 0x43},
    {0x4027ffffu, 0x42}, {0x40380000u, 0x44}, {0x40380001u, 0x44}, {0x4037ffffu, 0x43},
    {0x40480000u, 0x44}, {0x40480001u, 0x45}, {0x4047ffffu, 0x44}, {0x40580000u, 0x46},
    {0x40580001u, 0x46}, {0x4057ffffu, 0x45}, {0x40680000u, 0x46}, {0x40680001u, 0x47},
    {0x4067ffffu, 0x46}, {0x40780000u, 0x48}, {0x40780001u, 0x48}, {0x4077ffffu, 0x47},
    {0x40880000u, 0x48}, {0x40880001u, 0x49}, {0x4087ffffu, 0x48}, {0x40980000u, 0x4a},
    {0x40980001u, 0x4a}, {0x4097ffffu, 0x49}, {0x40a80000u, 0x4a}, {0x40a80001u, 0x4b},
    {0x40a7ffffu, 0x4a}, {0x40b80000u, 0x4c}, {0x40b80001u, 0x4c}, {0x40b7ffffu, 0x4b},
    {0x40c80000u, 0x4c}, {0x40c80001u, 0x4d}, {0x40c7ffffu, 0x4c}, {0x40d80000u, 0x4e},
    {0x40d80001u, 0x4e}, {0x40d7ffffu, 0x4d}, {0x40e80000u, 0x4e}, {0x40e80001u, 0x4f},
    {0x40e7ffffu, 0x4e}, {0x40f80000u, 0x50}, {0x40f80001u, 0x50}, {0x40f7ffffu, 0x4f},
    {0x41080000u, 0x50}, {0x41080001u, 0x51}, {0x4107ffffu, 0x50}, {0x41180000u, 0x52},
    {0x41180001u, 0x52}, {0x4117ffffu, 0x51}, {0x41280000u, 0x52}, {0x41280001u, 0x53},
    {0x4127ffffu, 0x52}, {0x41380000u, 0x54}, {0x41380001u, 0x54}, {0x4137ffffu, 0x53},
    {0x41480000u, 0x54}, {0x41480001u, 0x55}, {0x4147ffffu, 0x54}, {0x41580000u, 0x56},
    {0x41580001u, 0x56}, {0x4157ffffu, 0x55}, {0x41680000u, 0x56}, {0x41680001u, 0x57},
    {0x4167ffffu, 0x56}, {0x41780000u, 0x58}, {0x41780001u, 0x58}, {0x4177ffffu, 0x57},
    {0x41880000u, 0x58}, {0x41880001u, 0x59}, {0x4187ffffu, 0x58}, {0x41980000u, 0x5a},
    {0x41980001u, 0x5a}, {0x4197ffffu, 0x59}, {0x41a80000u, 0x5a}, {0x41a80001u, 0x5b},
    {0x41a7ffffu, 0x5a}, {0x41b80000u, 0x5c}, {0x41b80001u, 0x5c}, {0x41b7ffffu, 0x5b},
    {0x41c80000u, 0x5c}, {0x41c80001u, 0x5d}, {0x41c7ffffu, 0x5c}, {0x41d80000u, 0x5e},
    {0x41d80001u, 0x5e}, {0x41d7ffffu, 0x5d}, {0x41e80000u, 0x5e}, {0x41e80001u, 0x5f},
    {0x41e7ffffu, 0x5e}, {0x41f80000u, 0x60}, {0x41f80001u, 0x60}, {0x41f7ffffu, 0x5f},
    {0x42080000u, 0x60}, {0x42080001u, 0x61}, {0x4207ffffu, 0x60}, {0x42180000u, 0x62},
    {0x42180001u, 0x62}, {0x4217ffffu, 0x61}, {0x42280000u, 0x62}, {0x42280001u, 0x63},
    {0x4227ffffu, 0x62}, {0x42380000u, 0x64}, {0x42380001u, 0x64}, {0x4237ffffu, 0x63},
    {0x42480000u, 0x64}, {0x42480001u, 0x65}, {0x4247ffffu, 0x64}, {0x42580000u, 0x66},
    {0x42580001u, 0x66}, {0x4257ffffu, 0x65}, {0x42680000u, 0x66}, {0x42680001u, 0x67},
    {0x4267ffffu, 0x66}, {0x42780000u, 0x68}, {0x42780001u, 0x68}, {0x4277ffffu, 0x67},
    {0x42880000u, 0x68}, {0x42880001u, 0x69}, {0x4287ffffu, 0x68}, {0x42980000u, 0x6a},
    {0x42980001u, 0x6a}, {0x4297ffffu, 0x69}, {0x42a80000u, 0x6a}, {0x42a80001u, 0x6b},
};

static void test_e4m3_torch(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof torch_e4m3 / sizeof *torch_e4m3; i++) {
        float x = mq_f32_from_bits(torch_e4m3[i].bits);
        if (mq_f32_to_e4m3(x) != torch_e4m3[i].code)
            fail_msg("e4m3 of %a: 0x%02x, torch gives 0x%02x", x, mq_f32_to_e4m3(x),
                     torch_e4m3[i].code);
    }
}

/* Parameters and codes of the new kinds, by hand. */
static void test_kind_params(void **state)
{
    (void)state;
    mq_ref_stats st;
    float s;
    int8_t z;
    mq_ref_stats_init(&st);
    const float w[4] = {-1.5f, 7.5f, 0.5f, -7.5f};
    mq_ref_stats_update(&st, w, MQ_DTYPE_F32, 4);
    mq_ref_params(mq_qd(MQ_QK_INT4, true), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, 1.0f);
    uint8_t q[4];
    mq_ref_quantize_values(mq_qd(MQ_QK_INT4, true), w, MQ_DTYPE_F32, 4, s, 0, q);
    /* -1.5 -> -2 (even), 7.5 -> 8 clamped to 7, 0.5 -> 0, -7.5 -> -8 */
    assert_int_equal((int8_t)q[0], -2);
    assert_int_equal((int8_t)q[1], 7);
    assert_int_equal((int8_t)q[2], 0);
    assert_int_equal((int8_t)q[3], -8);
    uint8_t packed[4];
    const int8_t codes[3] = {-8, 7, 1};
    mq_ref_pack4(codes, 3, packed);
    assert_int_equal(packed[0], 0xf0);
    assert_int_equal(packed[1], 0x09);
    assert_int_equal(packed[2], 0);
    assert_int_equal(packed[3], 0);
    assert_int_equal(mq_qkind_row_bytes(MQ_QK_INT4, 9), 8);
    assert_int_equal(mq_qkind_row_bytes(MQ_QK_INT4, 8), 4);
    /* asymmetric int4: lo = -1.5, hi = 7.5, scale 9 / 15, zp = rint(-8 + 1.5 / s) */
    mq_ref_stats a;
    const float w2[3] = {-1.5f, 7.5f, 3.0f};
    mq_ref_stats_init(&a);
    mq_ref_stats_update(&a, w2, MQ_DTYPE_F32, 3);
    mq_ref_params(mq_qd(MQ_QK_INT4, false), &a, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, 9.0f / 15.0f);
    assert_int_equal(z, (int8_t)rintf(-8.0f + 1.5f / s));
    assert_true(z == -5 || z == -6);
    /* FP8: amax / 448, so the largest value maps to 448 exactly. */
    mq_ref_params(mq_qd(MQ_QK_FP8, true), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, 7.5f / 448.0f);
    mq_ref_quantize_values(mq_qd(MQ_QK_FP8, true), w, MQ_DTYPE_F32, 4, s, 0, q);
    assert_int_equal(q[1], 0x7e);
    assert_int_equal(q[3], 0xfe);
    /* An all-zero group: compressed-tensors' zero scale becomes the dtype's
     * epsilon; the asymmetric zero point is 0 (its 0 / 0). */
    mq_ref_stats_init(&st);
    const float zero[2] = {0.0f, -0.0f};
    mq_ref_stats_update(&st, zero, MQ_DTYPE_F32, 2);
    mq_ref_params(mq_qd(MQ_QK_FP8, true), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, FLT_EPSILON);
    mq_ref_params(mq_qd(MQ_QK_INT4, false), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, FLT_EPSILON);
    assert_int_equal(z, 0);
    mq_ref_params(mq_qd(MQ_QK_INT4, true), &st, MQ_DTYPE_BF16, &s, &z);
    assert_f32_bits(s, 0x1p-7f);
    mq_ref_params(mq_qd(MQ_QK_FP8, true), &st, MQ_DTYPE_F16, &s, &z);
    assert_f32_bits(s, 0x1p-10f);
    /* Tiny groups keep their tiny scales (compressed-tensors 0.20.1 gives
     * 1.33e-10 and 2.23e-12 for amax 1e-9), unlike int8's FLT_EPSILON floor. */
    const float tiny[2] = {-1e-9f, 1e-9f};
    mq_ref_stats_init(&st);
    mq_ref_stats_update(&st, tiny, MQ_DTYPE_F32, 2);
    mq_ref_params(mq_qd(MQ_QK_INT4, true), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, 1e-9f / 7.5f);
    mq_ref_params(mq_qd(MQ_QK_FP8, true), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, 1e-9f / 448.0f);
    mq_ref_params(mq_qd(MQ_QK_INT4, false), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, 2e-9f / 15.0f);
    assert_int_equal(z, 0); /* rint(-8 + 7.5) */
    /* A range whose scale underflows to 0 with lo < 0: zero point 7 (lo / 0 = -inf). */
    const float sub[1] = {-0x1p-149f};
    mq_ref_stats_init(&st);
    mq_ref_stats_update(&st, sub, MQ_DTYPE_F32, 1);
    mq_ref_params(mq_qd(MQ_QK_INT4, false), &st, MQ_DTYPE_F32, &s, &z);
    assert_f32_bits(s, FLT_EPSILON);
    assert_int_equal(z, 7);
}

/* One loop for every kind: INT8's code_xor relabels the stored bytes and
 * nothing else (the error statistics undo it), blocks group 2-D, and a row
 * group is a block of one row. */
static void test_one_loop_desc(void **state)
{
    (void)state;
    enum { R = 5, C = 7 };
    float w[R * C];
    for (int i = 0; i < R * C; i++)
        w[i] = (float)((i * 37) % 23 - 11) * 0.173f;
    int8_t q0[R * C], q1[R * C], z0[R], z1[R];
    float s0[R], s1[R];
    size_t bad = 99;
    mq_qdesc plain = mq_qd(MQ_QK_INT8, false);
    mq_qdesc flip = {.kind = MQ_QK_INT8, .symmetric = false, .code_xor = 0x80};
    assert_int_equal(mq_ref_quantize(plain, w, MQ_DTYPE_F32, R, C, q0, s0, z0, &bad), MQ_OK);
    assert_int_equal(mq_ref_quantize(flip, w, MQ_DTYPE_F32, R, C, q1, s1, z1, &bad), MQ_OK);
    for (int i = 0; i < R * C; i++)
        assert_int_equal((uint8_t)q1[i], (uint8_t)q0[i] ^ 0x80u);
    assert_memory_equal(s0, s1, sizeof s0);
    assert_memory_equal(z0, z1, sizeof z0);
    mq_err_acc e0, e1;
    mq_err_acc_init(&e0);
    mq_err_acc_init(&e1);
    mq_ref_error_stats(plain, w, MQ_DTYPE_F32, R, C, q0, s0, MQ_DTYPE_F32, z0, &e0);
    mq_ref_error_stats(flip, w, MQ_DTYPE_F32, R, C, q1, s1, MQ_DTYPE_F32, z1, &e1);
    assert_true(e0.err2 == e1.err2 && e0.sig == e1.sig && e0.clamped == e1.clamped);
    assert_true(e0.err2 > 0.0);

    /* FP8 blocks of 3 x 3 over 5 x 7: 2 x 3 blocks, the last of each
     * dimension partial; each block's scale is that of its values alone. */
    uint8_t qb[R * C], qr[C];
    float sb[6], sr[1];
    mq_qdesc blocks = mq_qd_blocks(3);
    assert_int_equal(mq_qdesc_scales(blocks, R, C), 6);
    assert_int_equal(mq_qdesc_scales(plain, R, C), R);
    assert_int_equal(mq_ref_quantize(blocks, w, MQ_DTYPE_F32, R, C, qb, sb, NULL, &bad), MQ_OK);
    /* Block (1, 2): rows 3-4, column 6, as one row-group call of 2 values. */
    float blk[2] = {w[3 * C + 6], w[4 * C + 6]};
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_FP8, true), blk, MQ_DTYPE_F32, 1, 2, qr, sr, NULL, &bad),
        MQ_OK);
    assert_true(sb[5] == sr[0]);
    assert_int_equal(qb[3 * C + 6], qr[0]);
    assert_int_equal(qb[4 * C + 6], qr[1]);
    /* A NaN names its block. */
    w[4 * C + 4] = NAN;
    assert_int_equal(mq_ref_quantize(blocks, w, MQ_DTYPE_F32, R, C, qb, sb, NULL, &bad),
                     MQ_STATUS_E_DATA);
    assert_int_equal(bad, 4);
}

/* FP8 block sources: every value times its own block's scale, partial blocks at
 * the right and bottom edges, a band starting inside a block row, the BF16
 * rounding (ties to even) after the one fp32 product, and NaN codes. */
static void test_fp8_block_dequant(void **state)
{
    (void)state;
    enum { R = 5, C = 7, BR = 2, BC = 3, SR = 3, SC = 3 };
    uint8_t q[R * C];
    float sc[SR * SC];
    tu_rng rng;
    tu_rng_seed(&rng, 22);
    for (size_t i = 0; i < R * C; i++)
        q[i] = (uint8_t)(tu_rng_u64(&rng) & 0xff);
    q[3] = 0x7f; /* NaN */
    for (size_t i = 0; i < SR * SC; i++)
        sc[i] = (float)(i + 1) * 0.0137f;
    float full[R * C];
    mq_ref_fp8_block_dequant(q, 0, R * C, C, BR, BC, sc, MQ_DTYPE_F32, MQ_DTYPE_F32, full);
    for (size_t r = 0; r < R; r++) {
        for (size_t c = 0; c < C; c++) {
            /* The block found by walking the block edges, not by division. */
            size_t bi = 0, bj = 0;
            while ((bi + 1) * BR <= r)
                bi++;
            while ((bj + 1) * BC <= c)
                bj++;
            float want = mq_e4m3_to_f32(q[r * C + c]) * sc[bi * SC + bj];
            if (isnan(want))
                assert_true(isnan(full[r * C + c]));
            else
                assert_int_equal(mq_f32_bits(full[r * C + c]), mq_f32_bits(want));
        }
    }
    /* Rows 3..4: the scale pointer at block row 1, the band starting mid-block. */
    float band[2 * C];
    mq_ref_fp8_block_dequant(q + 3 * C, 3 * C, 2 * C, C, BR, BC, sc + 1 * SC, MQ_DTYPE_F32,
                             MQ_DTYPE_F32, band);
    assert_memory_equal(band + C, full + 4 * C, C * sizeof(float)); /* row 4: block row 2 */
    for (size_t c = 0; c < C; c++)
        if (!isnan(full[3 * C + c]))
            assert_int_equal(mq_f32_bits(band[c]), mq_f32_bits(full[3 * C + c]));

    /* Values 9..25: starting and ending inside rows, the scale pointer at row 1's block row 0. */
    float mid[17];
    mq_ref_fp8_block_dequant(q + 9, 9, 17, C, BR, BC, sc, MQ_DTYPE_F32, MQ_DTYPE_F32, mid);
    for (size_t i = 0; i < 17; i++)
        if (!isnan(full[9 + i])) assert_int_equal(mq_f32_bits(mid[i]), mq_f32_bits(full[9 + i]));

    /* BF16 output and BF16 scales: 1.0 * (1 + 2^-8) ties to 1.0; 1.0 * (1 + 3 * 2^-8)
     * ties up to the even 1 + 2^-6. */
    uint8_t one[2] = {0x38, 0x38};
    float s2[2] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
    uint16_t b[2];
    mq_ref_fp8_block_dequant(one, 0, 2, 2, 128, 1, s2, MQ_DTYPE_F32, MQ_DTYPE_BF16, b);
    assert_int_equal(b[0], 0x3F80);
    assert_int_equal(b[1], 0x3F82);
    uint16_t sb[1] = {0x4000}; /* 2.0 in BF16 */
    uint8_t half[1] = {0x30};  /* 0.5 */
    float f;
    mq_ref_fp8_block_dequant(half, 0, 1, 1, 128, 128, sb, MQ_DTYPE_BF16, MQ_DTYPE_F32, &f);
    assert_true(f == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_widen_known),
        cmocka_unit_test(test_f16_roundtrip_exhaustive),
        cmocka_unit_test(test_f32_to_f16_known),
        cmocka_unit_test(test_f32_to_f16_vs_compiler),
        cmocka_unit_test(test_f64_to_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_load_store),
        cmocka_unit_test(test_stats_and_params),
        cmocka_unit_test(test_sym_basic),
        cmocka_unit_test(test_sym_ties),
        cmocka_unit_test(test_sym_zero_and_tiny),
        cmocka_unit_test(test_sym_extremes),
        cmocka_unit_test(test_sym_f16_scale_rounding),
        cmocka_unit_test(test_sym_bf16_scale_rounding),
        cmocka_unit_test(test_nonfinite_rows),
        cmocka_unit_test(test_multi_rows_and_empty),
        cmocka_unit_test(test_asym_basic),
        cmocka_unit_test(test_asym_flt_max),
        cmocka_unit_test(test_asym_zp_clamp),
        cmocka_unit_test(test_asym_bf16),
        cmocka_unit_test(test_cast_f32),
        cmocka_unit_test(test_cast_bf16),
        cmocka_unit_test(test_cast_f64),
        cmocka_unit_test(test_cast_f16_copy),
        cmocka_unit_test(test_dequantize),
        cmocka_unit_test(test_property_random),
        cmocka_unit_test(test_e2m1_codes_and_midpoints),
        cmocka_unit_test(test_mx_scales),
        cmocka_unit_test(test_nvfp4_scales),
        cmocka_unit_test(test_e4m3_round_trip),
        cmocka_unit_test(test_e4m3_midpoints),
        cmocka_unit_test(test_e4m3_edges),
        cmocka_unit_test(test_e4m3_torch),
        cmocka_unit_test(test_kind_params),
        cmocka_unit_test(test_one_loop_desc),
        cmocka_unit_test(test_fp8_block_dequant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
