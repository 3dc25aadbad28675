/* Numerics shared by every kernel: exact fp16/bf16 widening, round-to-nearest-even
 * narrowing done with integer bit operations (identical to src/reference.c), a
 * correctly rounded fp32 division, and the per-channel parameter rule. The host
 * puts this file first in the program and passes MQ_WG and MQ_DIV_MODE as -D. */
#pragma OPENCL FP_CONTRACT OFF

#ifndef MQ_WG
#error "MQ_WG (work-group size) must be defined by the host"
#endif
#ifndef MQ_DIV_MODE
#error "MQ_DIV_MODE must be defined by the host"
#endif
#ifdef MQ_TEST_BUILD_FAILURE
#error "build failure requested by the test suite"
#endif

/* Input dtypes, as in mq_dtype. */
#define MQ_F32 0
#define MQ_F16 1
#define MQ_BF16 2

/* How a/b is computed: 0 = the device's division, built with
 * -cl-fp32-correctly-rounded-divide-sqrt; 1 = in double (53 >= 2*24 + 2, so the
 * double rounding is innocuous: Figueroa 1995); 2 = exact integer long division. */
#define MQ_DIV_NATIVE 0
#define MQ_DIV_DOUBLE 1
#define MQ_DIV_SOFT 2

#if MQ_DIV_MODE == MQ_DIV_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

/* ---- widening (exact) ---- */

inline uint mq_f16_bits_to_f32(uint h)
{
    uint sign = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1fu;
    uint m = h & 0x3ffu;
    if (e == 0x1fu) return sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u);
    if (e == 0u) {
        if (m == 0u) return sign;
        uint sh = clz(m) - 21u; /* moves the leading one to bit 10 */
        return sign | ((113u - sh) << 23) | (((m << sh) & 0x3ffu) << 13);
    }
    return sign | ((e + 112u) << 23) | (m << 13);
}

inline uint8 mq_f16x8_bits_to_f32(uint8 h)
{
    uint8 sign = (h & 0x8000u) << 16;
    uint8 e = (h >> 10) & 0x1fu;
    uint8 m = h & 0x3ffu;
    uint8 r = ((e + 112u) << 23) | (m << 13);
    uint8 nan_quiet = select((uint8)0u, (uint8)0x400000u, m != 0u);
    r = select(r, 0x7f800000u | (m << 13) | nan_quiet, e == 0x1fu);
    uint8 sh = clz(m) - 21u;
    uint8 sub = ((113u - sh) << 23) | (((m << sh) & 0x3ffu) << 13);
    sub = select(sub, (uint8)0u, m == 0u);
    r = select(r, sub, e == 0u);
    return r | sign;
}

/* Values widened to fp32. vload_half is exact for every half (only a NaN's payload
 * may change, and NaN rows are rejected anyway) and fast where the device has a
 * half converter. */
inline float mq_load1(global const void *src, ulong i, const int dt)
{
    if (dt == MQ_F32) return ((global const float *)src)[i];
    if (dt == MQ_F16) return vload_half(0, (global const half *)src + i);
    return as_float((uint)((global const ushort *)src)[i] << 16);
}

/* Eight values from element i on; vloadn needs only element alignment. */
inline float8 mq_load8(global const void *src, ulong i, const int dt)
{
    if (dt == MQ_F32) return vload8(0, (global const float *)src + i);
    if (dt == MQ_F16) return vload_half8(0, (global const half *)src + i);
    return as_float8(convert_uint8(vload8(0, (global const ushort *)src + i)) << 16);
}

/* The same as fp32 bit patterns, NaN payloads kept as mq_f16_to_f32 keeps them. */
inline uint mq_load_bits1(global const void *src, ulong i, const int dt)
{
    if (dt == MQ_F16) return mq_f16_bits_to_f32(((global const ushort *)src)[i]);
    return as_uint(mq_load1(src, i, dt));
}

inline uint8 mq_load_bits8(global const void *src, ulong i, const int dt)
{
    if (dt == MQ_F16)
        return mq_f16x8_bits_to_f32(convert_uint8(vload8(0, (global const ushort *)src + i)));
    return as_uint8(mq_load8(src, i, dt));
}

/* ---- narrowing (round to nearest even; NaN keeps sign and top payload, quiet) ---- */

inline ushort mq_f32_to_f16(float f)
{
    uint x = as_uint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (ushort)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (ushort)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                                /* normal halfway */
        uint r = ax - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return (ushort)(sign | (r >> 13));
    }
    uint e = ax >> 23;
    if (e < 102u) return (ushort)sign; /* below 2^-25: rounds to zero */
    uint m = (ax & 0x7fffffu) | 0x800000u;
    uint shift = 126u - e; /* 14..24: value in units of 2^-24 is m >> shift */
    uint h = m >> shift;
    uint rem = m & ((1u << shift) - 1u);
    uint halfway = 1u << (shift - 1u);
    h += (rem > halfway || (rem == halfway && (h & 1u))) ? 1u : 0u;
    return (ushort)(sign | h);
}

inline ushort mq_f32_to_bf16(float f)
{
    uint x = as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (ushort)((x >> 16) | 0x40u);
    return (ushort)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* One rounding straight from the double's bits; needs no fp64 support. */
inline ushort mq_f64_bits_to_f16(ulong x)
{
    uint sign = (uint)(x >> 48) & 0x8000u;
    ulong ax = x & 0x7fffffffffffffffUL;
    if (ax > 0x7ff0000000000000UL) return (ushort)(sign | 0x7e00u | (uint)((ax >> 42) & 0x3ffu));
    if (ax >= 0x40effe0000000000UL) return (ushort)(sign | 0x7c00u); /* >= 65520 */
    if (ax >= 0x3f10000000000000UL) {                                /* >= 2^-14 */
        ulong r = ax - 0x3f00000000000000UL;
        r += 0x1ffffffffffUL + ((r >> 42) & 1UL);
        return (ushort)(sign | (uint)(r >> 42));
    }
    uint e = (uint)(ax >> 52);
    if (e < 998u) return (ushort)sign; /* below 2^-25 */
    ulong m = (ax & 0xfffffffffffffUL) | 0x10000000000000UL;
    uint shift = 1051u - e; /* 43..53 */
    ulong h = m >> shift;
    ulong rem = m & ((1UL << shift) - 1UL);
    ulong halfway = 1UL << (shift - 1u);
    h += (rem > halfway || (rem == halfway && (h & 1UL))) ? 1UL : 0UL;
    return (ushort)(sign | (uint)h);
}

inline float mq_round_to_dtype(float v, const int dt)
{
    if (dt == MQ_F16) return as_float(mq_f16_bits_to_f32(mq_f32_to_f16(v)));
    if (dt == MQ_BF16) return as_float((uint)mq_f32_to_bf16(v) << 16);
    return v;
}

/* ---- correctly rounded division ---- */

#if MQ_DIV_MODE == MQ_DIV_SOFT
/* a / b by integer long division with round to nearest even. Exact for finite a
 * and a positive b, normal or subnormal (every divisor here: 127.5, 255, 7.5,
 * 15, 448 and scales); other operands only occur in rows already flagged. */
inline float mq_div_soft(float a, float b)
{
    uint ua = as_uint(a), ub = as_uint(b);
    uint sign = (ua ^ ub) & 0x80000000u;
    int ea = (int)((ua >> 23) & 0xffu), eb = (int)((ub >> 23) & 0xffu);
    if (ea == 0xff || eb == 0xff || (ub & 0x7fffffffu) == 0u) return a / b;
    uint ma = ua & 0x7fffffu, mb = ub & 0x7fffffu;
    if (eb == 0) { /* a subnormal divisor (int4/fp8 scales may be): normalised */
        int sh = (int)clz(mb) - 8;
        mb <<= sh;
        eb = 1 - sh;
    } else {
        mb |= 0x800000u;
    }
    if (ea == 0) {
        if (ma == 0u) return as_float(sign);
        int sh = (int)clz(ma) - 8;
        ma <<= sh;
        ea = 1 - sh;
    } else {
        ma |= 0x800000u;
    }
    int e = ea - eb + 127; /* biased exponent of the quotient */
    if (ma < mb) {
        ma <<= 1;
        e -= 1;
    }
    ulong num = (ulong)ma << 26;
    ulong quo = num / mb; /* in [2^26, 2^27): 24 bits and 3 rounding bits */
    bool sticky = (num % mb) != 0UL;
    if (e >= 255) return as_float(sign | 0x7f800000u);
    int shift = e >= 1 ? 3 : 4 - e;
    if (shift > 28) return as_float(sign);
    ulong m = quo >> shift;
    ulong rem = quo & ((1UL << shift) - 1UL);
    ulong halfway = 1UL << (shift - 1);
    if (rem > halfway || (rem == halfway && (sticky || (m & 1UL)))) m += 1UL;
    if (e < 1) return as_float(sign | (uint)m); /* subnormal, or carried to 2^-126 */
    uint bits = ((uint)(e - 1) << 23) + (uint)m;
    if (bits >= 0x7f800000u) bits = 0x7f800000u;
    return as_float(sign | bits);
}
#endif

inline float mq_div(float a, float b)
{
#if MQ_DIV_MODE == MQ_DIV_NATIVE
    return a / b;
#elif MQ_DIV_MODE == MQ_DIV_DOUBLE
    return (float)((double)a / (double)b);
#else
    return mq_div_soft(a, b);
#endif
}

inline float8 mq_div8(float8 a, float b)
{
#if MQ_DIV_MODE == MQ_DIV_NATIVE
    return a / b;
#elif MQ_DIV_MODE == MQ_DIV_DOUBLE
    return convert_float8(convert_double8(a) / (double)b);
#else
    return (float8)(mq_div_soft(a.s0, b), mq_div_soft(a.s1, b), mq_div_soft(a.s2, b),
                    mq_div_soft(a.s3, b), mq_div_soft(a.s4, b), mq_div_soft(a.s5, b),
                    mq_div_soft(a.s6, b), mq_div_soft(a.s7, b));
#endif
}

inline void mq_store_scale(global void *dst, ulong i, float s, const int dt)
{
    if (dt == MQ_F32)
        ((global float *)dst)[i] = s;
    else if (dt == MQ_F16)
        ((global ushort *)dst)[i] = mq_f32_to_f16(s);
    else
        ((global ushort *)dst)[i] = mq_f32_to_bf16(s);
}

/* ---- weight error statistics ---- */

/* The error sums are taken in units of 2^2k, with k = ilogb(amax) + 1 in
 * [-126, 126] and amax the largest finite |w| of the values summed: then
 * |w| 2^-k < 2 and |w - w_hat| 2^-k < 4, so no square overflows (weights near
 * FLT_MAX) or underflows (subnormal weights), and scaling by a power of two
 * changes no rounding. The host multiplies the sums back by 2^2k. */
inline int mq_err_exp(float amax)
{
    return clamp(ilogb(amax), -127, 125) + 1;
}

/* The largest finite |w| of eight values (0 when none is finite). */
inline float mq_amax8(float8 w)
{
    float8 a = select((float8)(0.0f), fabs(w), isfinite(w));
    float4 a4 = fmax(a.lo, a.hi);
    float2 a2 = fmax(a4.lo, a4.hi);
    return fmax(a2.x, a2.y);
}

inline float mq_pow2(int e) /* 2^e for e in [-126, 127] */
{
    return as_float((uint)(e + 127) << 23);
}

/* Compensated (Kahan) addition of x to the running sum *sum / *comp. */
inline void mq_kahan8(float8 x, float8 *sum, float8 *comp)
{
    float8 y = x - *comp;
    float8 t = *sum + y;
    *comp = (t - *sum) - y;
    *sum = t;
}

/* Running statistics as mq_ref_stats_update keeps them: min and max of the
 * finite values, and the largest |w| as bits, which is >= 0x7f800000 exactly
 * when a NaN or Inf was seen. */
inline void mq_fold8(float8 x, float8 *lo, float8 *hi, uint8 *abits)
{
    uint8 a = as_uint8(x) & 0x7fffffffu;
    int8 finite = a < 0x7f800000u;
    *lo = select(*lo, x, finite & (x < *lo));
    *hi = select(*hi, x, finite & (x > *hi));
    *abits = max(*abits, a);
}

inline void mq_fold1(float x, float *lo, float *hi, uint *abits)
{
    uint a = as_uint(x) & 0x7fffffffu;
    if (a < 0x7f800000u) {
        *lo = x < *lo ? x : *lo;
        *hi = x > *hi ? x : *hi;
    }
    *abits = max(*abits, a);
}

/* Lanes of the vector statistics folded into the scalar ones. */
inline void mq_fold_lanes(float8 lo8, float8 hi8, uint8 ab8, float *lo, float *hi, uint *abits)
{
    float4 l4 = fmin(lo8.lo, lo8.hi), h4 = fmax(hi8.lo, hi8.hi);
    float2 l2 = fmin(l4.lo, l4.hi), h2 = fmax(h4.lo, h4.hi);
    uint4 a4 = max(ab8.lo, ab8.hi);
    uint2 a2 = max(a4.lo, a4.hi);
    *lo = fmin(*lo, fmin(l2.x, l2.y));
    *hi = fmax(*hi, fmax(h2.x, h2.y));
    *abits = max(*abits, max(a2.x, a2.y));
}

#define MQ_NONFINITE_BITS 0x7f800000u

/* Test hook: out[i] = a[i] / b[i] as the kernels divide. */
kernel void mq_div_check(global const float *a, global const float *b, global float *out, ulong n)
{
    ulong i = get_global_id(0);
    if (i < n) out[i] = mq_div(a[i], b[i]);
}

/* ---- the codes: every kind of qkind.h, as reference.c makes them ---- */

#define MQ_QK_INT8 0
#define MQ_QK_INT4 1
#define MQ_QK_FP8 2
#define MQ_QK_MXFP4 3
#define MQ_QK_MXFP8 4
#define MQ_QK_NVFP4 5

/* The smallest and largest integer code (FP8 clamps w / s to +-448). */
#define MQ_QMIN(kind) ((kind) == MQ_QK_INT4 ? -8.0f : -128.0f)
#define MQ_QMAX(kind) ((kind) == MQ_QK_INT4 ? 7.0f : 127.0f)

/* The parameter rule of mq_ref_params, from a finite group's min and max:
 * the scale rounded to the stored dtype, returned as fp32, and the zero point
 * (0 when symmetric; FP8 is). INT8 clamps the scale below by FLT_EPSILON
 * before rounding (DESIGN.md); INT4 and FP8 follow compressed-tensors (a
 * scale that rounds to 0 becomes the dtype's epsilon, the zero point taken
 * from the zero scale first). */
inline float mq_params(float lo, float hi, int kind, int symmetric, const int dt, float *zp)
{
    if (kind == MQ_QK_MXFP4 || kind == MQ_QK_MXFP8) {
        /* reference.c's mx_exponent: the max rounded to a power of two on
         * the weight dtype's bits, the e8m0 exponent x, then 2^(x - 127) as
         * the weight's dtype holds it (an F16 zero becomes 1). */
        float amax = fabs(fmax(hi, -lo));
        int e;
        if (dt == MQ_F16) {
            uint p = ((uint)mq_f32_to_f16(amax) + 0x100u) & 0xfc00u;
            e = p == 0u ? -1000 : (p >> 10) == 31u ? 1000 : (int)(p >> 10) - 15;
        } else {
            uint p = (as_uint(amax) + 0x200000u) & 0xff800000u;
            e = p == 0u ? -1000 : (p >> 23) == 255u ? 1000 : (int)(p >> 23) - 127;
        }
        int x = clamp(127 + e - (kind == MQ_QK_MXFP4 ? 2 : 8), 0, 255);
        float s = x == 255 ? INFINITY : x == 0 ? as_float(0x00400000u) : as_float((uint)x << 23);
        s = mq_round_to_dtype(s, dt);
        *zp = 0.0f;
        return s == 0.0f ? 1.0f : s;
    }
    float eps = dt == MQ_F16 ? 0x1p-10f : dt == MQ_BF16 ? 0x1p-7f : FLT_EPSILON;
    float qmin = kind == MQ_QK_FP8 ? -448.0f : MQ_QMIN(kind);
    float qmax = kind == MQ_QK_FP8 ? 448.0f : MQ_QMAX(kind), span = qmax - qmin;
    float s;
    if (symmetric || kind == MQ_QK_FP8) {
        float amax = fmax(hi, -lo);
        s = mq_div(amax, span / 2.0f); /* 127.5, 7.5 or 448 */
        if (kind == MQ_QK_INT8) s = fmax(s, FLT_EPSILON);
        s = mq_round_to_dtype(s, dt);
        *zp = 0.0f;
        return s == 0.0f ? eps : s;
    }
    lo = fmin(lo, 0.0f);
    hi = fmax(hi, 0.0f);
    float d = hi - lo;
    if (isinf(d))
        s = mq_div(hi, span) - mq_div(lo, span);
    else
        s = mq_div(d, span);
    if (kind == MQ_QK_INT8) s = fmax(s, FLT_EPSILON);
    s = mq_round_to_dtype(s, dt);
    if (s == 0.0f) {
        *zp = lo < 0.0f ? qmax : 0.0f;
        return eps;
    }
    *zp = fmin(fmax(rint(qmin - mq_div(lo, s)), qmin), qmax);
    return s;
}

/* The e4m3fn byte of v as mq_f32_to_e4m3, with integer operations (OpenCL C
 * has no fp8 type): normal results by rebias-and-round (a mantissa carry
 * bumps the exponent), subnormal ones (below 2^-6) by a shift rounded half to
 * even, magnitudes from 464 up saturated, NaN 0x7f. Shift counts past 31 only
 * occur in lanes another case selects; OpenCL takes them modulo 32. */
inline uint mq_e4m3(float v)
{
    uint x = as_uint(v), ax = x & 0x7fffffffu;
    uint normal = (ax - 0x3c000000u + 0x7ffffu + ((ax >> 20) & 1u)) >> 20;
    uint m = (ax & 0x7fffffu) | 0x800000u;
    uint sh = min(141u - (ax >> 23), 25u);
    uint h = m >> sh, rem = m & ((1u << sh) - 1u), hw = 1u << (sh - 1u);
    h += (rem > hw || (rem == hw && (h & 1u))) ? 1u : 0u;
    uint r = ax < 0x3c800000u ? h : normal;
    r = ax >= 0x43e80000u ? 0x7eu : r;
    r = ax > 0x7f800000u ? 0x7fu : r;
    return r | ((x >> 24) & 0x80u);
}

inline uint8 mq_e4m3_8(float8 v)
{
    uint8 x = as_uint8(v), ax = x & 0x7fffffffu;
    uint8 normal = (ax - 0x3c000000u + 0x7ffffu + ((ax >> 20) & 1u)) >> 20;
    uint8 m = (ax & 0x7fffffu) | 0x800000u;
    uint8 sh = min((uint8)(141u) - (ax >> 23), (uint8)(25u));
    uint8 h = m >> sh, rem = m & (((uint8)(1u) << sh) - 1u), hw = (uint8)(1u) << (sh - 1u);
    h += select((uint8)(0u), (uint8)(1u), (rem > hw) | ((rem == hw) & ((h & 1u) != 0u)));
    uint8 r = select(normal, h, ax < 0x3c800000u);
    r = select(r, (uint8)(0x7eu), ax >= 0x43e80000u);
    r = select(r, (uint8)(0x7fu), ax > 0x7f800000u);
    return r | ((x >> 24) & 0x80u);
}

/* The value of an e4m3fn byte other than NaN, exactly. */
inline float mq_e4m3_value(uint c)
{
    uint e = (c >> 3) & 15u, m = c & 7u;
    uint v = e == 0u ? as_uint((float)m * 0x1p-9f) : ((e + 120u) << 23) | (m << 20);
    return as_float(v | ((c & 0x80u) << 24));
}

inline float8 mq_e4m3_value8(uint8 c)
{
    uint8 e = (c >> 3) & 15u, m = c & 7u;
    uint8 sub = as_uint8(convert_float8(m) * 0x1p-9f);
    uint8 v = select(((e + 120u) << 23) | (m << 20), sub, e == 0u);
    return as_float8(v | ((c & 0x80u) << 24));
}

/* NVFP4's group scale as mq_ref_params makes it: amax / 6 in the weight's
 * dtype, times the global scale g in fp32, clamped to +-448 and rounded to
 * e4m3 (returned as its value; a zero becomes 2^-3). */
inline float mq_params_nvfp4(float lo, float hi, float g, const int dt)
{
    float amax = fabs(fmax(hi, -lo));
    float s = g * mq_round_to_dtype(mq_div(amax, 6.0f), dt);
    s = mq_e4m3_value(mq_e4m3(fmin(fmax(s, -448.0f), 448.0f)));
    return s == 0.0f ? 0.125f : s;
}

/* The e8m0 byte of an MX scale (a power of two, or +inf): its exponent
 * field (2^-127, the one subnormal, gives 0). */
inline uint mq_e8m0_byte(float s)
{
    return isinf(s) ? 255u : as_uint(s) >> 23;
}

/* The e2m1 code of v (clamped to +-6) as reference.c's mq_f32_to_e2m1:
 * compressed-tensors' thresholds, the sign bit only below zero. */
inline uint mq_e2m1(float v)
{
    /* The magnitude code counts the thresholds passed (a NaN passes none). */
    float a = fabs(v);
    uint m = (uint)(a > 0.25f) + (uint)(a >= 0.75f) + (uint)(a > 1.25f) + (uint)(a >= 1.75f) +
             (uint)(a > 2.5f) + (uint)(a >= 3.5f) + (uint)(a > 5.0f);
    return m | (v < 0.0f ? 8u : 0u);
}

inline uint8 mq_e2m1_8(float8 v)
{
    /* Vector comparisons give -1 for true. */
    float8 a = fabs(v);
    int8 m = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
             (a >= 3.5f) + (a > 5.0f);
    return as_uint8(-m) | as_uint8((v < 0.0f) & 8);
}

inline float mq_e2m1_value(uint c)
{
    uint i = c & 7u;
    float m = i < 4u ? (float)i * 0.5f : i == 4u ? 2.0f : i == 5u ? 3.0f : i == 6u ? 4.0f : 6.0f;
    return (c & 8u) ? -m : m;
}

inline float8 mq_e2m1_value8(uint8 c)
{
    /* 0, 0.5, 1, 1.5 are i / 2; 2, 3, 4 are i - 2; 7 is 6. */
    float8 i = convert_float8(c & 7u);
    float8 m = select(i - 2.0f, i * 0.5f, isless(i, 4.0f));
    m = select(m, (float8)(6.0f), isequal(i, 7.0f));
    return as_float8(as_uint8(m) | ((c & 8u) << 28));
}

/* Codes of kind INT8 or INT4 (the integer code's byte) or FP8 (the e4m3
 * byte), as mq_ref_quantize_values: the zero point is added before the
 * rounding, as compressed-tensors does; fmin(fmax()) is the reference's
 * clamp, a NaN falling to the lower bound. */
inline uint8 mq_quant8(float8 w, float s, float zp, int kind)
{
    if (kind == MQ_QK_MXFP4) return mq_e2m1_8(fmin(fmax(mq_div8(w, s), -6.0f), 6.0f));
    /* + 0 as compressed-tensors' compressor adds the zero point: -0 becomes +0. */
    if (kind == MQ_QK_MXFP8)
        return mq_e4m3_8(fmin(fmax(mq_div8(w, s) + 0.0f, -448.0f), 448.0f));
    if (kind == MQ_QK_FP8) return mq_e4m3_8(fmin(fmax(mq_div8(w, s), -448.0f), 448.0f));
    float8 r = fmin(fmax(rint(mq_div8(w, s) + zp), MQ_QMIN(kind)), MQ_QMAX(kind));
    return as_uint8(convert_int8(r)) & 0xffu;
}

inline uint mq_quant1(float w, float s, float zp, int kind)
{
    if (kind == MQ_QK_MXFP4) return mq_e2m1(fmin(fmax(mq_div(w, s), -6.0f), 6.0f));
    if (kind == MQ_QK_MXFP8) return mq_e4m3(fmin(fmax(mq_div(w, s) + 0.0f, -448.0f), 448.0f));
    if (kind == MQ_QK_FP8) return mq_e4m3(fmin(fmax(mq_div(w, s), -448.0f), 448.0f));
    float r = fmin(fmax(rint(mq_div(w, s) + zp), MQ_QMIN(kind)), MQ_QMAX(kind));
    return as_uint(convert_int(r)) & 0xffu;
}

/* The same with the error terms: the error e = w - w_hat (w_hat = (q - zp) s
 * or e4m3(q) s; exact in fp32 unless the value was clamped), its square and
 * that of w in units of 2^k (tk = 2^-k) added to *sig / *err2, |e| folded
 * into *mx and the values clamped (outside the bounds before the clamp, not
 * a NaN) counted in *ncl, as mq_ref_error_stats counts them. */
inline uint8 mq_quant8_err(float8 w, float s, float zp, int kind, float tk, float8 *sig,
                             float8 *err2, float8 *mx, uint8 *ncl)
{
    uint8 c;
    float8 e;
    int8 out;
    if (kind == MQ_QK_MXFP4) {
        float8 v = mq_div8(w, s);
        c = mq_e2m1_8(fmin(fmax(v, -6.0f), 6.0f));
        e = w - mq_e2m1_value8(c) * s;
        out = isless(v, -6.0f) | isgreater(v, 6.0f);
    } else if (kind == MQ_QK_FP8 || kind == MQ_QK_MXFP8) {
        float8 v = mq_div8(w, s) + (kind == MQ_QK_MXFP8 ? 0.0f : -0.0f);
        c = mq_e4m3_8(fmin(fmax(v, -448.0f), 448.0f));
        e = w - mq_e4m3_value8(c) * s;
        out = isless(v, -448.0f) | isgreater(v, 448.0f);
    } else {
        float8 r = rint(mq_div8(w, s) + zp);
        float8 rc = fmin(fmax(r, MQ_QMIN(kind)), MQ_QMAX(kind));
        c = as_uint8(convert_int8(rc)) & 0xffu;
        e = w - (rc - zp) * s;
        out = isless(r, MQ_QMIN(kind)) | isgreater(r, MQ_QMAX(kind));
    }
    float8 ws = w * tk, es = e * tk;
    *sig += ws * ws;
    *err2 += es * es;
    *mx = fmax(*mx, fabs(e));
    *ncl += select((uint8)(0u), (uint8)(1u), out);
    return c;
}

inline uint mq_quant1_err(float w, float s, float zp, int kind, float tk, float *sig, float *err2,
                            float *mx, uint *ncl)
{
    uint c;
    float e;
    bool out;
    if (kind == MQ_QK_MXFP4) {
        float v = mq_div(w, s);
        c = mq_e2m1(fmin(fmax(v, -6.0f), 6.0f));
        e = w - mq_e2m1_value(c) * s;
        out = v < -6.0f || v > 6.0f;
    } else if (kind == MQ_QK_FP8 || kind == MQ_QK_MXFP8) {
        float v = mq_div(w, s) + (kind == MQ_QK_MXFP8 ? 0.0f : -0.0f);
        c = mq_e4m3(fmin(fmax(v, -448.0f), 448.0f));
        e = w - mq_e4m3_value(c) * s;
        out = v < -448.0f || v > 448.0f;
    } else {
        float r = rint(mq_div(w, s) + zp);
        float rc = fmin(fmax(r, MQ_QMIN(kind)), MQ_QMAX(kind));
        c = as_uint(convert_int(rc)) & 0xffu;
        e = w - (rc - zp) * s;
        out = r < MQ_QMIN(kind) || r > MQ_QMAX(kind);
    }
    float ws = w * tk, es = e * tk;
    *sig += ws * ws;
    *err2 += es * es;
    *mx = fmax(*mx, fabs(e));
    *ncl += out ? 1u : 0u;
    return c;
}

/* Eight int4 code bytes packed as compressed-tensors' pack_to_int32 does:
 * code + 8 in nibble i of a little-endian word, written as its four bytes. */
/* Eight e2m1 codes, two a byte, the even one in the low nibble (MXFP4). */
inline uchar4 mq_pack_e2m1(uint8 c)
{
    uint8 n = c & 15u;
    return (uchar4)((uchar)(n.s0 | (n.s1 << 4)), (uchar)(n.s2 | (n.s3 << 4)),
                    (uchar)(n.s4 | (n.s5 << 4)), (uchar)(n.s6 | (n.s7 << 4)));
}

inline uchar4 mq_pack4(uint8 c)
{
    uint8 n = (c + 8u) & 15u;
    return (uchar4)((uchar)(n.s0 | (n.s1 << 4)), (uchar)(n.s2 | (n.s3 << 4)),
                    (uchar)(n.s4 | (n.s5 << 4)), (uchar)(n.s6 | (n.s7 << 4)));
}
