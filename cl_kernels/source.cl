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

inline float mq_src_scale(global const void *scale, ulong i, int sdt)
{
    return sdt == MQ_F32 ? ((global const float *)scale)[i]
                         : as_float((uint)((global const ushort *)scale)[i] << 16);
}

/* Values [e0, e0 + n) (n counted from code 0 of this call) of a weight of
 * `cols` columns in br x bc blocks; scale holds the grid rows from block
 * row first_srow on, scols a row, in sdt; dst in dt. Eight consecutive
 * values per work-item: the divisions once, then a step along the row. */
kernel void mq_src_fp8_block(global const uchar *codes, ulong e0, ulong n, ulong cols, ulong br,
                             ulong bc, ulong scols, ulong first_srow, global const void *scale,
                             int sdt, int dt, global void *dst)
{
    ulong i0 = (ulong)get_global_id(0) * 8;
    if (i0 >= n) return;
    ulong e = e0 + i0, r = e / cols, c = e - r * cols;
    ulong base = (r / br - first_srow) * scols, bj = c / bc, bend = (bj + 1) * bc;
    float s = mq_src_scale(scale, base + bj, sdt);
    ulong end = min(i0 + 8, n);
    for (ulong i = i0; i < end; i++, c++) {
        if (c == cols) {
            r++;
            c = bj = 0;
            bend = bc;
            base = (r / br - first_srow) * scols;
            s = mq_src_scale(scale, base, sdt);
        } else if (c == bend) {
            bj++;
            bend += bc;
            s = mq_src_scale(scale, base + bj, sdt);
        }
        float w = mq_src_e4m3_times(codes[i], s);
        if (dt == MQ_F32)
            ((global float *)dst)[i] = w;
        else if (dt == MQ_F16)
            ((global ushort *)dst)[i] = mq_f32_to_f16(w);
        else
            ((global ushort *)dst)[i] = mq_f32_to_bf16(w);
    }
}
