/* Element-wise conversions: the fp16 cast (with the overflow count and the
 * saturate option) and int8 dequantization. Eight values per work-item; the bit
 * rules live in numerics.cl, which comes first in the program. */
#pragma OPENCL FP_CONTRACT OFF

/* fp16 bits of one value given as fp32 bits, and whether a finite value overflowed. */
inline ushort mq_cast_one(uint x, int saturate, uint *overflow)
{
    ushort h = mq_f32_to_f16(as_float(x));
    if ((h & 0x7fffu) == 0x7c00u && (x & 0x7f800000u) != 0x7f800000u) {
        *overflow += 1u;
        if (saturate) h = (ushort)((h & 0x8000u) | 0x7bffu);
    }
    return h;
}

inline ushort mq_cast_one_f64(ulong x, int saturate, uint *overflow)
{
    ushort h = mq_f64_bits_to_f16(x);
    if ((h & 0x7fffu) == 0x7c00u && (x & 0x7ff0000000000000UL) != 0x7ff0000000000000UL) {
        *overflow += 1u;
        if (saturate) h = (ushort)((h & 0x8000u) | 0x7bffu);
    }
    return h;
}

/* Adds the work-group's overflow count to *count with one atomic. */
inline void mq_count_overflow(uint mine, global uint *count, local uint *acc)
{
    uint lid = get_local_id(0);
    acc[lid] = mine;
    for (uint s = MQ_WG >> 1; s > 0u; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) acc[lid] += acc[lid + s];
    }
    if (lid == 0u && acc[0] != 0u) atomic_add(count, acc[0]);
}

/* dt: MQ_F32 or MQ_BF16 (widened to fp32 bits first). F16 input is a plain copy,
 * done by the host. */
inline void mq_cast_f16_body(global const void *src, const int dt, ulong n, int saturate,
                             global ushort *dst, global uint *count, local uint *acc)
{
    ulong i = (ulong)get_global_id(0) * 8;
    uint overflow = 0u;
    if (i + 8 <= n) {
        uint8 x = mq_load_bits8(src, i, dt);
        ushort8 h = (ushort8)(mq_cast_one(x.s0, saturate, &overflow),
                              mq_cast_one(x.s1, saturate, &overflow),
                              mq_cast_one(x.s2, saturate, &overflow),
                              mq_cast_one(x.s3, saturate, &overflow),
                              mq_cast_one(x.s4, saturate, &overflow),
                              mq_cast_one(x.s5, saturate, &overflow),
                              mq_cast_one(x.s6, saturate, &overflow),
                              mq_cast_one(x.s7, saturate, &overflow));
        vstore8(h, 0, dst + i);
    } else {
        for (ulong j = i; j < n; j++)
            dst[j] = mq_cast_one(mq_load_bits1(src, j, dt), saturate, &overflow);
    }
    mq_count_overflow(overflow, count, acc);
}

kernel void mq_cast_f16_f32(global const float *src, ulong n, int saturate, global ushort *dst,
                            global uint *count)
{
    local uint acc[MQ_WG];
    mq_cast_f16_body(src, MQ_F32, n, saturate, dst, count, acc);
}

kernel void mq_cast_f16_bf16(global const ushort *src, ulong n, int saturate,
                             global ushort *dst, global uint *count)
{
    local uint acc[MQ_WG];
    mq_cast_f16_body(src, MQ_BF16, n, saturate, dst, count, acc);
}

/* F64 is read as raw bits and rounded once with integer operations, so it needs
 * no cl_khr_fp64. */
kernel void mq_cast_f16_f64(global const ulong *src, ulong n, int saturate, global ushort *dst,
                            global uint *count)
{
    local uint acc[MQ_WG];
    ulong i = (ulong)get_global_id(0) * 8;
    uint overflow = 0u;
    for (ulong j = i; j < min(i + 8, n); j++)
        dst[j] = mq_cast_one_f64(src[j], saturate, &overflow);
    mq_count_overflow(overflow, count, acc);
}

/* w = (q - zp) * scale in fp32, stored in dt. n values that start at column col0
 * of row 0 of `cols`-long rows; scale and zp are indexed by that row. */
inline void mq_store1(global void *dst, ulong i, float w, const int dt)
{
    if (dt == MQ_F32)
        ((global float *)dst)[i] = w;
    else if (dt == MQ_F16)
        ((global ushort *)dst)[i] = mq_f32_to_f16(w);
    else
        ((global ushort *)dst)[i] = mq_f32_to_bf16(w);
}

inline float mq_load_scale(global const void *scale, ulong r, const int dt)
{
    return mq_load1(scale, r, dt);
}

inline void mq_dequantize_body(global const char *q, ulong n, ulong cols, ulong col0,
                               global const void *scale, global const char *zp, int has_zp,
                               const int dt, global void *dst)
{
    ulong i = (ulong)get_global_id(0) * 8;
    if (i >= n) return;
    ulong r = (col0 + i) / cols;
    ulong c = (col0 + i) - r * cols;
    for (ulong j = i; j < min(i + 8, n); j++, c++) {
        if (c == cols) {
            r++;
            c = 0;
        }
        int z = has_zp ? zp[r] : 0;
        float w = (float)((int)q[j] - z) * mq_load_scale(scale, r, dt);
        mq_store1(dst, j, w, dt);
    }
}

kernel void mq_dequantize_f32(global const char *q, ulong n, ulong cols, ulong col0,
                              global const float *scale, global const char *zp, int has_zp,
                              global float *dst)
{
    mq_dequantize_body(q, n, cols, col0, scale, zp, has_zp, MQ_F32, dst);
}

kernel void mq_dequantize_f16(global const char *q, ulong n, ulong cols, ulong col0,
                              global const ushort *scale, global const char *zp, int has_zp,
                              global ushort *dst)
{
    mq_dequantize_body(q, n, cols, col0, scale, zp, has_zp, MQ_F16, dst);
}

kernel void mq_dequantize_bf16(global const char *q, ulong n, ulong cols, ulong col0,
                               global const ushort *scale, global const char *zp, int has_zp,
                               global ushort *dst)
{
    mq_dequantize_body(q, n, cols, col0, scale, zp, has_zp, MQ_BF16, dst);
}
