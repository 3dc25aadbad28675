/* Plain scalar C versions of every kernel (see reference.h for the formulas):
 * the oracle the OpenCL kernels must match bit for bit, and the host fallback.
 * Float formats are converted with integer bit operations so no compiler or
 * FPU half-precision support is involved. */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* m >> shift rounded to nearest, ties to even (1 <= shift <= 63). */
static uint64_t shift_rne(uint64_t m, unsigned shift)
{
    uint64_t h = m >> shift;
    uint64_t rem = m & ((UINT64_C(1) << shift) - 1);
    uint64_t half = UINT64_C(1) << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return h;
}

float mq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f) /* inf, or NaN made quiet as hardware conversions do */
        return mq_f32_from_bits(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
    if (e == 0) {
        if (m == 0) return mq_f32_from_bits(sign);
        /* Subnormal m * 2^-24: normalise so the leading one becomes implicit. */
        uint32_t fe = 113; /* biased fp32 exponent of 2^-14 */
        while (!(m & 0x400u)) {
            m <<= 1;
            fe--;
        }
        return mq_f32_from_bits(sign | (fe << 23) | ((m & 0x3ffu) << 13));
    }
    return mq_f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

float mq_bf16_to_f32(uint16_t b)
{
    return mq_f32_from_bits((uint32_t)b << 16);
}

uint16_t mq_f32_to_f16(float f)
{
    uint32_t x = mq_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* >= 65520, the midpoint above 65504: inf (inf included) */
        return (uint16_t)(sign | 0x7c00u);
    uint32_t e = ax >> 23;
    uint64_t m = (ax & 0x7fffffu) | 0x800000u;
    if (e >= 113) /* normal result; a carry out of the mantissa bumps the exponent */
        return (uint16_t)(sign | (((e - 112) << 10) + (uint32_t)shift_rne(m, 13) - 0x400u));
    if (e < 102) /* below 2^-25: rounds to zero (2^-25 itself is a tie to even 0) */
        return sign;
    /* Subnormal result in units of 2^-24; rounding up to 0x400 gives the smallest normal. */
    return (uint16_t)(sign | (uint32_t)shift_rne(m, 126 - e));
}

uint16_t mq_f64_to_f16(double d)
{
    uint64_t x;
    memcpy(&x, &d, sizeof x);
    uint16_t sign = (uint16_t)((x >> 48) & 0x8000u);
    uint64_t ax = x & UINT64_C(0x7fffffffffffffff);
    if (ax > UINT64_C(0x7ff0000000000000))
        return (uint16_t)(sign | 0x7e00u | (uint32_t)((ax >> 42) & 0x3ffu));
    if (ax >= UINT64_C(0x40effe0000000000)) /* >= 65520 */
        return (uint16_t)(sign | 0x7c00u);
    uint32_t e = (uint32_t)(ax >> 52);
    uint64_t m = (ax & UINT64_C(0xfffffffffffff)) | (UINT64_C(1) << 52);
    if (e >= 1009) /* >= 2^-14 */
        return (uint16_t)(sign | (((e - 1008) << 10) + (uint32_t)shift_rne(m, 42) - 0x400u));
    if (e < 998) /* below 2^-25 */
        return sign;
    return (uint16_t)(sign | (uint32_t)shift_rne(m, 1051 - e));
}

uint16_t mq_f32_to_bf16(float f)
{
    uint32_t x = mq_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    /* Adding just under half an ulp (plus the lsb for ties) rounds to nearest even;
     * the carry turns values above the bf16 maximum into inf. */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float mq_load_f32(const void *src, mq_dtype dt, size_t i)
{
    const unsigned char *p = src;
    uint16_t h;
    float f;
    switch (dt) {
    case MQ_DTYPE_F32:
        memcpy(&f, p + i * 4, sizeof f);
        return f;
    case MQ_DTYPE_F16:
        memcpy(&h, p + i * 2, sizeof h);
        return mq_f16_to_f32(h);
    case MQ_DTYPE_BF16:
        memcpy(&h, p + i * 2, sizeof h);
        return mq_bf16_to_f32(h);
    default:
        return NAN; /* not a quantizable dtype: callers never pass one */
    }
}

void mq_store_scale(void *dst, mq_dtype dt, size_t i, float scale)
{
    unsigned char *p = dst;
    uint16_t h;
    switch (dt) {
    case MQ_DTYPE_F16:
        h = mq_f32_to_f16(scale);
        memcpy(p + i * 2, &h, sizeof h);
        break;
    case MQ_DTYPE_BF16:
        h = mq_f32_to_bf16(scale);
        memcpy(p + i * 2, &h, sizeof h);
        break;
    default:
        memcpy(p + i * 4, &scale, sizeof scale);
        break;
    }
}

void mq_ref_stats_init(mq_ref_stats *s)
{
    s->lo = INFINITY;
    s->hi = -INFINITY;
    s->amax = 0.0f;
    s->nonfinite = false;
}

void mq_ref_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = mq_load_f32(src, dt, i);
        if (!isfinite(v)) {
            s->nonfinite = true; /* the row is rejected; its range no longer matters */
            continue;
        }
        if (v < s->lo) s->lo = v;
        if (v > s->hi) s->hi = v;
        if (fabsf(v) > s->amax) s->amax = fabsf(v);
    }
}

/* The scale as it will be read back from the file. */
static float round_to_dtype(float v, mq_dtype dt)
{
    if (dt == MQ_DTYPE_F16) return mq_f16_to_f32(mq_f32_to_f16(v));
    if (dt == MQ_DTYPE_BF16) return mq_bf16_to_f32(mq_f32_to_bf16(v));
    return v;
}

size_t mq_qkind_row_bytes(mq_qkind k, size_t cols)
{
    if (mq_qkind_is_fp4(k)) return cols / 2 + (cols % 2);
    return k == MQ_QK_INT4 ? (cols / 8 + (cols % 8 != 0)) * 4 : cols;
}

size_t mq_qkind_scale_size(mq_qkind k, mq_dtype dt)
{
    return mq_qkind_byte_scale(k) ? 1 : mq_dtype_size(dt);
}

float mq_qkind_qmin(mq_qkind k)
{
    return k == MQ_QK_INT8 ? -128.0f : k == MQ_QK_INT4 ? -8.0f : -mq_qkind_qmax(k);
}

float mq_qkind_qmax(mq_qkind k)
{
    if (k == MQ_QK_INT8) return 127.0f;
    if (k == MQ_QK_INT4) return 7.0f;
    return mq_qkind_is_fp4(k) ? 6.0f : 448.0f;
}

float mq_nvfp4_global_scale(float amax, mq_dtype dt)
{
    /* finfo(dt).tiny: F16's smallest normal is 2^-14, BF16's and F32's 2^-126. */
    float tiny = dt == MQ_DTYPE_F16 ? 0x1p-14f : FLT_MIN;
    /* torch divides a number by a tensor as the tensor's reciprocal times
     * the number: two roundings, each to the weight's dtype. */
    float r = round_to_dtype(1.0f / (amax > tiny ? amax : tiny), dt);
    float g = round_to_dtype(r * 2688.0f, dt);
    return isfinite(g) ? g : 1.0f;
}

/* The e2m1 code of v (already clamped to +-6) as compressed-tensors'
 * cast_to_fp4 and pack_fp4_to_uint8 give it: magnitudes by its thresholds
 * (ties 0.25, 1.25, 2.5 and 5 go down, 0.75, 1.75 and 3.5 up: to the even
 * code), the sign bit only for a value below zero (so -0 and a negative that
 * rounds to zero differ: -0 gives 0, -0.1 gives 8). A NaN gives 0. */
uint8_t mq_f32_to_e2m1(float v)
{
    float a = fabsf(v);
    uint8_t m = a <= 0.25f   ? 0
                : a < 0.75f  ? 1
                : a <= 1.25f ? 2
                : a < 1.75f  ? 3
                : a <= 2.5f  ? 4
                : a < 3.5f   ? 5
                : a <= 5.0f  ? 6
                : a > 5.0f   ? 7
                             : 0;
    return (uint8_t)(m | (v < 0.0f ? 8u : 0u));
}

float mq_e2m1_to_f32(uint8_t c)
{
    static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    return (c & 8u) ? -mag[c & 7u] : mag[c & 7u];
}

/* The e8m0 exponent compressed-tensors' generate_mx_scales gives a group
 * whose max |w| is amax, in the weight's dtype dt: amax rounded to a power
 * of two by adding half a unit of e2m1's one mantissa bit below the
 * exponent field and keeping sign and exponent (its round_to_power_2, done
 * on dt's bits), then 127 + log2 of it - floor(log2(qmax)) (2 for e2m1, 8
 * for e4m3), clamped to [0, 255] (a zero power, log2 = -inf, gives 0;
 * infinity 255). */
static int mx_exponent(float amax, mq_dtype dt, int offset)
{
    int e; /* log2 of the power of two; INT_MIN for zero, INT_MAX for inf */
    if (dt == MQ_DTYPE_F16) {
        uint32_t p = ((uint32_t)mq_f32_to_f16(amax) + (1u << 8)) & 0xfc00u;
        e = p == 0 ? -1000 : (p >> 10) == 31 ? 1000 : (int)(p >> 10) - 15;
    } else {
        /* BF16's bits are the top half of F32's: the same sum and mask. */
        uint32_t p = (mq_f32_bits(amax) + (1u << 21)) & 0xff800000u;
        e = p == 0 ? -1000 : (p >> 23) == 255 ? 1000 : (int)(p >> 23) - 127;
    }
    int x = 127 + e - offset;
    return x < 0 ? 0 : x > 255 ? 255 : x;
}

/* 2^(x - 127) in fp32 (x = 255: +inf; x = 0: the subnormal 2^-127). */
static float e8m0_value(int x)
{
    if (x >= 255) return INFINITY;
    return ldexpf(1.0f, x - 127);
}

/* The e8m0 byte of a stored MX scale s (a power of two, or +inf): 127 +
 * floor(log2(s)), as compressed-tensors' compress_mx_scale. */
static uint8_t e8m0_byte(float s)
{
    if (isinf(s)) return 255;
    int e;
    (void)frexpf(s, &e);
    int x = 127 + e - 1;
    return (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : x);
}

uint8_t mq_f32_to_e4m3(float f)
{
    uint32_t x = mq_f32_bits(f);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
    if (ax >= 0x43e80000u) /* >= 464, the midpoint above 448 (ties go to 448, even) */
        return (uint8_t)(sign | 0x7eu);
    int e = (int)(ax >> 23) - 127;
    uint64_t m = (ax & 0x7fffffu) | 0x800000u;
    if (e >= -6) /* normal; a carry out of the mantissa bumps the exponent */
        return (uint8_t)(sign | ((((uint32_t)(e + 7)) << 3) + (uint32_t)shift_rne(m, 20) - 8u));
    if (e < -10) /* below 2^-10: rounds to zero (2^-10 itself is a tie to even 0) */
        return sign;
    /* Subnormal result in units of 2^-9; rounding up to 8 gives the smallest normal. */
    return (uint8_t)(sign | (uint32_t)shift_rne(m, (unsigned)(14 - e)));
}

float mq_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t e = (b >> 3) & 15u, m = b & 7u;
    if (e == 15 && m == 7) return mq_f32_from_bits(sign | 0x7fc00000u);
    if (e == 0) return mq_f32_from_bits(mq_f32_bits((float)m * 0x1p-9f) | sign);
    return mq_f32_from_bits(sign | ((e + 120) << 23) | (m << 20));
}

/* compressed-tensors' stand-in for a zero scale: the scale dtype's epsilon. */
static float dtype_eps(mq_dtype dt)
{
    return dt == MQ_DTYPE_F16 ? 0x1p-10f : dt == MQ_DTYPE_BF16 ? 0x1p-7f : FLT_EPSILON;
}

size_t mq_qdesc_scales(mq_qdesc d, size_t rows, size_t cols)
{
    if (!d.block) return rows;
    return ((rows + d.block - 1) / d.block) * ((cols + d.block - 1) / d.block);
}

void mq_ref_params(mq_qdesc d, const mq_ref_stats *s, mq_dtype scale_dt, float *scale, int8_t *zp)
{
    const float qmin = mq_qkind_qmin(d.kind), qmax = mq_qkind_qmax(d.kind), span = qmax - qmin;
    /* INT8 follows DESIGN.md: the scale is clamped below by FLT_EPSILON
     * before it is rounded (so it never rounds to 0). INT4 and FP8 follow
     * compressed-tensors' calculate_qparams exactly: only a scale that is 0
     * as stored becomes the dtype's epsilon, and the zero point is taken
     * before that, from the zero scale: 0 / 0 is NaN, which becomes 0, and
     * lo / 0 = -inf clamps to qmax. */
    const bool eps_floor = d.kind == MQ_QK_INT8;
    float sc;
    if (mq_qkind_is_mx(d.kind)) {
        /* The power of two as the weight's dtype holds it (F16 loses the
         * smallest to 0, which becomes the e8m0 byte's epsilon, 1). */
        int x = mx_exponent(s->amax, scale_dt, d.kind == MQ_QK_MXFP4 ? 2 : 8);
        sc = round_to_dtype(e8m0_value(x), scale_dt);
        *scale = sc == 0.0f ? 1.0f : sc;
        *zp = 0;
        return;
    }
    if (d.kind == MQ_QK_NVFP4) {
        /* amax / 6 in the weight's dtype, times the global scale in fp32,
         * clamped to e4m3's range and rounded to it; a zero becomes e4m3's
         * epsilon, 2^-3. */
        sc = d.gscale * round_to_dtype(s->amax / 6.0f, scale_dt);
        sc = mq_e4m3_to_f32(mq_f32_to_e4m3(fminf(fmaxf(sc, -448.0f), 448.0f)));
        *scale = sc == 0.0f ? 0.125f : sc;
        *zp = 0;
        return;
    }
    if (d.symmetric || d.kind == MQ_QK_FP8) {
        sc = s->amax / (span / 2.0f); /* 127.5, 7.5 or 448 */
        if (eps_floor && !(sc >= FLT_EPSILON)) sc = FLT_EPSILON;
        sc = round_to_dtype(sc, scale_dt);
        *scale = sc == 0.0f ? dtype_eps(scale_dt) : sc;
        *zp = 0;
        return;
    }
    /* The range always holds 0 so that 0 is exactly representable; an empty
     * range (+inf/-inf) becomes [0, 0] here as well. */
    float lo = s->lo < 0.0f ? s->lo : 0.0f;
    float hi = s->hi > 0.0f ? s->hi : 0.0f;
    float range = hi - lo;
    /* Near +-FLT_MAX the difference overflows while the scale itself is finite. */
    sc = isinf(range) ? hi / span - lo / span : range / span;
    if (eps_floor && !(sc >= FLT_EPSILON)) sc = FLT_EPSILON;
    sc = round_to_dtype(sc, scale_dt);
    if (sc == 0.0f) {
        *scale = dtype_eps(scale_dt);
        *zp = (int8_t)(lo < 0.0f ? qmax : 0.0f);
        return;
    }
    *scale = sc;
    /* Rounding the scale down (F16/BF16) can push the zero point past qmax. */
    *zp = (int8_t)fminf(fmaxf(rintf(qmin - lo / sc), qmin), qmax);
}

void mq_err_acc_init(mq_err_acc *a)
{
    a->sig = 0.0;
    a->err2 = 0.0;
    a->max_abs = 0.0;
    a->clamped = 0;
}

void mq_err_acc_add(mq_err_acc *a, const mq_err_acc *b)
{
    a->sig += b->sig;
    a->err2 += b->err2;
    if (b->max_abs > a->max_abs) a->max_abs = b->max_abs;
    a->clamped += b->clamped;
}

double mq_err_acc_sqnr_db(const mq_err_acc *a)
{
    if (!(a->err2 > 0.0)) return INFINITY;
    return 10.0 * log10(a->sig / a->err2);
}

uint64_t mq_ref_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst)
{
    const unsigned char *p = src;
    uint64_t overflow = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        bool can_overflow;
        if (dt == MQ_DTYPE_F64) {
            double d;
            memcpy(&d, p + i * 8, sizeof d);
            can_overflow = isfinite(d);
            h = mq_f64_to_f16(d);
        } else if (dt == MQ_DTYPE_F16) {
            memcpy(&h, p + i * 2, sizeof h);
            can_overflow = false; /* a copy; an inf there was inf before */
        } else {
            float f = mq_load_f32(src, dt, i);
            can_overflow = isfinite(f);
            h = mq_f32_to_f16(f);
        }
        if (can_overflow && (h & 0x7fffu) == 0x7c00u) {
            overflow++;
            if (saturate) h = (uint16_t)((h & 0x8000u) | 0x7bffu);
        }
        dst[i] = h;
    }
    return overflow;
}

void mq_ref_dequantize_rows(const int8_t *q, size_t rows, size_t cols, const void *scale,
                            const int8_t *zp, mq_dtype dt, void *dst)
{
    unsigned char *out = dst;
    size_t esz = mq_dtype_size(dt);
    for (size_t r = 0; r < rows; r++) {
        float s = mq_load_f32(scale, dt, r);
        float z = zp ? (float)zp[r] : 0.0f;
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            float w = ((float)q[i] - z) * s;
            if (dt == MQ_DTYPE_F32) {
                memcpy(out + i * esz, &w, sizeof w);
            } else {
                uint16_t h = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(w) : mq_f32_to_bf16(w);
                memcpy(out + i * esz, &h, sizeof h);
            }
        }
    }
}

void mq_store_group_scale(mq_qdesc d, void *dst, mq_dtype dt, size_t i, float scale)
{
    if (mq_qkind_is_mx(d.kind))
        ((uint8_t *)dst)[i] = e8m0_byte(scale);
    else if (d.kind == MQ_QK_NVFP4)
        ((uint8_t *)dst)[i] = mq_f32_to_e4m3(scale);
    else
        mq_store_scale(dst, dt, i, scale);
}

float mq_load_group_scale(mq_qdesc d, const void *src, mq_dtype dt, size_t i)
{
    if (mq_qkind_is_mx(d.kind)) return e8m0_value(((const uint8_t *)src)[i]);
    if (d.kind == MQ_QK_NVFP4) return mq_e4m3_to_f32(((const uint8_t *)src)[i]) / d.gscale;
    return mq_load_f32(src, dt, i);
}

static void store_value(unsigned char *out, mq_dtype dt, size_t i, float w)
{
    if (dt == MQ_DTYPE_F32) {
        memcpy(out + i * 4, &w, sizeof w);
    } else {
        uint16_t h = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(w) : mq_f32_to_bf16(w);
        memcpy(out + i * 2, &h, sizeof h);
    }
}

void mq_ref_fp8_block_dequant(const uint8_t *q, uint64_t e0, size_t n, size_t cols, size_t block_r,
                              size_t block_c, const void *scale, mq_dtype scale_dt, mq_dtype dt,
                              void *dst)
{
    /* The same products as value by value, walked by row segments and blocks
     * so that each scale is loaded once and no value needs a division. */
    float lut[256];
    for (unsigned b = 0; b < 256; b++)
        lut[b] = mq_e4m3_to_f32((uint8_t)b);
    size_t scols = (cols + block_c - 1) / block_c;
    uint64_t first_srow = e0 / cols / block_r;
    for (size_t i = 0; i < n;) {
        uint64_t r = (e0 + i) / cols;
        size_t c = (size_t)((e0 + i) % cols), len = cols - c < n - i ? cols - c : n - i;
        size_t base = (size_t)(r / block_r - first_srow) * scols;
        for (size_t k = 0; k < len;) {
            size_t bj = (c + k) / block_c, end = (bj + 1) * block_c - c;
            if (end > len) end = len;
            float s = mq_load_f32(scale, scale_dt, base + bj);
            for (; k < end; k++)
                store_value(dst, dt, i + k, lut[q[i + k]] * s);
        }
        i += len;
    }
}

void mq_ref_src_dequant(mq_srcdesc d, const void *codes, uint64_t e0, size_t n, size_t cols,
                        const void *scale, void *dst)
{
    switch (d.kind) {
    case MQ_SRC_FP8_BLOCK:
        mq_ref_fp8_block_dequant(codes, e0, n, cols, d.block_r, d.block_c, scale, d.scale_dt, d.dt,
                                 dst);
        break;
    }
}

/* ---- the one quantize loop ---- */

void mq_ref_quantize_values(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float scale,
                            int8_t zp, void *q)
{
    const float qmin = mq_qkind_qmin(d.kind), qmax = mq_qkind_qmax(d.kind), z = (float)zp;
    uint8_t *out = q;
    for (size_t i = 0; i < n; i++) {
        float w = mq_load_f32(src, dt, i);
        if (d.kind == MQ_QK_MXFP4) {
            out[i] = mq_f32_to_e2m1(fminf(fmaxf(w / scale, qmin), qmax));
            continue;
        }
        if (d.kind == MQ_QK_NVFP4) {
            /* compressed-tensors divides the e4m3 scale by the global scale,
             * then the weight by that (two fp32 divisions, not one product). */
            out[i] = mq_f32_to_e2m1(fminf(fmaxf(w / (scale / d.gscale), qmin), qmax));
            continue;
        }
        if (d.kind == MQ_QK_MXFP8) {
            /* Its compressor adds the zero point (0) before the cast, which
             * makes -0 (a negative zero weight, or a BF16 one flushed) +0. */
            out[i] = mq_f32_to_e4m3(fminf(fmaxf(w / scale + 0.0f, qmin), qmax));
            continue;
        }
        if (d.kind == MQ_QK_FP8) {
            /* compressed-tensors clamps w / s to +-448, then casts to e4m3. */
            out[i] = mq_f32_to_e4m3(fminf(fmaxf(w / scale, qmin), qmax));
            continue;
        }
        /* The zero point is added before rounding, as compressed-tensors
         * does; fmin(fmax()) is OpenCL's clamp, and it keeps the conversion
         * defined (a NaN becomes qmin rather than undefined behaviour). */
        float v = fminf(fmaxf(rintf(w / scale + z), qmin), qmax);
        out[i] = (uint8_t)((uint8_t)(int8_t)v ^ d.code_xor);
    }
}

void mq_ref_pack4(const int8_t *codes, size_t n, uint8_t *dst)
{
    size_t nb = mq_qkind_row_bytes(MQ_QK_INT4, n);
    memset(dst, 0, nb);
    for (size_t i = 0; i < n; i++)
        dst[i / 2] |= (uint8_t)(((unsigned)(codes[i] + 8) & 15u) << (4 * (i & 1)));
}

void mq_ref_put_codes(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float s, int8_t z,
                      unsigned char *row, size_t c0, size_t cols)
{
    if (d.kind != MQ_QK_INT4 && !mq_qkind_is_fp4(d.kind)) {
        mq_ref_quantize_values(d, src, dt, n, s, z, row + c0);
        return;
    }
    if (c0 == 0) memset(row, 0, mq_qkind_row_bytes(d.kind, cols));
    if (mq_qkind_is_fp4(d.kind)) {
        for (size_t i = 0; i < n; i++) {
            uint8_t c;
            mq_ref_quantize_values(d, (const unsigned char *)src + i * mq_dtype_size(dt), dt, 1, s,
                                   z, &c);
            row[(c0 + i) / 2] |= (uint8_t)(c << (4 * ((c0 + i) & 1)));
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c;
        mq_ref_quantize_values(d, (const unsigned char *)src + i * mq_dtype_size(dt), dt, 1, s, z,
                               &c);
        row[(c0 + i) / 2] |= (uint8_t)(((unsigned)((int8_t)c + 8) & 15u) << (4 * ((c0 + i) & 1)));
    }
}

void mq_qdesc_group(mq_qdesc d, size_t rows, size_t cols, size_t g, size_t *r0, size_t *r1,
                    size_t *c0, size_t *nc)
{
    if (!d.block) {
        *r0 = g, *r1 = g + 1, *c0 = 0, *nc = cols;
        return;
    }
    size_t nbc = (cols + d.block - 1) / d.block, bi = g / nbc, bj = g % nbc;
    *r0 = bi * d.block;
    *r1 = rows - *r0 < d.block ? rows : *r0 + d.block;
    *c0 = bj * d.block;
    *nc = cols - *c0 < d.block ? cols - *c0 : d.block;
}

mq_status mq_ref_group_params(mq_qdesc d, const mq_ref_stats *st, mq_dtype dt, size_t g,
                              void *scale, int8_t *zp, size_t *bad, float *s, int8_t *z)
{
    if (st->nonfinite) {
        if (bad) *bad = g;
        return MQ_STATUS_E_DATA;
    }
    mq_ref_params(d, st, dt, s, z);
    mq_store_group_scale(d, scale, dt, g, *s);
    if (zp && mq_qdesc_has_zp(d)) zp[g] = *z;
    return MQ_OK;
}

mq_status mq_ref_quantize(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,
                          void *q, void *scale, int8_t *zp, size_t *bad)
{
    const unsigned char *in = src;
    unsigned char *out = q;
    size_t es = mq_dtype_size(dt), qb = mq_qkind_row_bytes(d.kind, cols);
    size_t groups = mq_qdesc_scales(d, rows, cols);
    for (size_t g = 0; g < groups; g++) {
        size_t r0, r1, c0, nc;
        mq_qdesc_group(d, rows, cols, g, &r0, &r1, &c0, &nc);
        mq_ref_stats st;
        mq_ref_stats_init(&st);
        for (size_t r = r0; r < r1; r++)
            mq_ref_stats_update(&st, in + (r * cols + c0) * es, dt, nc);
        float s;
        int8_t z;
        mq_status ps = mq_ref_group_params(d, &st, dt, g, scale, zp, bad, &s, &z);
        if (ps != MQ_OK) return ps;
        for (size_t r = r0; r < r1; r++)
            mq_ref_put_codes(d, in + (r * cols + c0) * es, dt, nc, s, z, out + r * qb, c0, cols);
    }
    return MQ_OK;
}

void mq_ref_error_stats(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,
                        const void *q, const void *scale, mq_dtype scale_dt, const int8_t *zp,
                        mq_err_acc *acc)
{
    const unsigned char *qb = q;
    size_t rb = mq_qkind_row_bytes(d.kind, cols);
    size_t nbc = d.block ? (cols + d.block - 1) / d.block : 1;
    const float qmin = mq_qkind_qmin(d.kind), qmax = mq_qkind_qmax(d.kind);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = qb + r * rb;
        for (size_t i = 0; i < cols; i++) {
            size_t g = d.block ? r / d.block * nbc + i / d.block : r;
            float s = mq_load_group_scale(d, scale, scale_dt, g);
            float z = zp && d.kind < MQ_QK_FP8 ? (float)zp[g] : 0.0f;
            float w = mq_load_f32(src, dt, r * cols + i), w_hat;
            if (mq_qkind_is_fp4(d.kind)) {
                float v = w / s;
                if (v < -6.0f || v > 6.0f) acc->clamped++;
                w_hat = mq_e2m1_to_f32((uint8_t)(row[i / 2] >> (4 * (i & 1)))) * s;
            } else if (d.kind == MQ_QK_FP8 || d.kind == MQ_QK_MXFP8) {
                float v = w / s;
                if (v < -448.0f || v > 448.0f) acc->clamped++;
                w_hat = mq_e4m3_to_f32(row[i]) * s;
            } else {
                int8_t c = d.kind == MQ_QK_INT4 ? mq_unpack4(row, i)
                                                : (int8_t)(uint8_t)(row[i] ^ d.code_xor);
                float code = rintf(w / s + z);
                if (code < qmin || code > qmax) acc->clamped++;
                w_hat = ((float)c - z) * s;
            }
            double e = (double)w - (double)w_hat;
            acc->sig += (double)w * (double)w;
            acc->err2 += e * e;
            if (fabs(e) > acc->max_abs) acc->max_abs = fabs(e);
        }
    }
}
