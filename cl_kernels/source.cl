/* Source dequantization (backend.h's dequantize_source): a quantized input's
 * codes and block scales turned into the float values it stands for, exactly
 * as reference.c's mq_ref_src_dequant. The bit rules live in numerics.cl. */
#pragma OPENCL FP_CONTRACT OFF

/* The e4m3fn byte c times s, as the host computes it: a NaN code stays the
 * quiet NaN of its sign, a NaN scale comes back quieted, else one fp32
 * product (a device may pick either NaN operand or make its own; the host's
 * multiply returns the first, so the rule is spelled out). */
inline float mq_src_e4m3_times(uint c, float s)
{
    if ((c & 0x7fu) == 0x7fu) return as_float(((c & 0x80u) << 24) | 0x7fc00000u);
    if (isnan(s)) return as_float(as_uint(s) | 0x00400000u);
    return mq_e4m3_value(c) * s;
}

/* Values [e0, e0 + n) (n counted from code 0 of this call) of a weight of
 * `cols` columns in br x bc blocks; scale holds the grid rows from block
 * row first_srow on, scols a row, in sdt; dst in dt. One value per
 * work-item. */
kernel void mq_src_fp8_block(global const uchar *codes, ulong e0, ulong n, ulong cols, ulong br,
                             ulong bc, ulong scols, ulong first_srow, global const void *scale,
                             int sdt, int dt, global void *dst)
{
    ulong i = get_global_id(0);
    if (i >= n) return;
    ulong e = e0 + i, r = e / cols, c = e - r * cols;
    ulong si = (r / br - first_srow) * scols + c / bc;
    float s = sdt == MQ_F32 ? ((global const float *)scale)[si]
                            : as_float((uint)((global const ushort *)scale)[si] << 16);
    float w = mq_src_e4m3_times(codes[i], s);
    if (dt == MQ_F32)
        ((global float *)dst)[i] = w;
    else if (dt == MQ_F16)
        ((global ushort *)dst)[i] = mq_f32_to_f16(w);
    else
        ((global ushort *)dst)[i] = mq_f32_to_bf16(w);
}
