/* INT8 quantization. The fused kernels do one channel (row) per `tpr` work-items:
 * min/max reduction in local memory, the parameters, then the int8 values. The
 * split kernels serve rows too long for one work-group (or one buffer): partial
 * statistics per segment, combined on the host, then quantization with given
 * parameters. Needs numerics.cl before it. */
#pragma OPENCL FP_CONTRACT OFF

/* Rows of `cols` values; `tpr` (a power of two dividing MQ_WG) work-items per row,
 * MQ_WG / tpr rows per work-group. */
inline void mq_quantize_rows_body(global const void *src, const int dt, ulong rows, ulong cols,
                                  uint tpr, int symmetric, global char *q, global void *scale,
                                  global char *zp, global uchar *bad, local float *lo_s,
                                  local float *hi_s, local uint *bad_s, local float *s_s,
                                  local float *zp_s)
{
    uint lid = get_local_id(0);
    uint slot = lid / tpr;
    uint t = lid - slot * tpr;
    ulong row = (ulong)get_group_id(0) * (MQ_WG / tpr) + slot;
    bool active = row < rows;
    ulong base = row * cols;
    ulong nv = cols / 8;

    float lo = INFINITY, hi = -INFINITY;
    uint abits = 0u;
    if (active) {
        float8 lo8 = (float8)(INFINITY), hi8 = (float8)(-INFINITY);
        uint8 ab8 = (uint8)(0u);
        for (ulong v = t; v < nv; v += tpr)
            mq_fold8(mq_load8(src, base + v * 8, dt), &lo8, &hi8, &ab8);
        mq_fold_lanes(lo8, hi8, ab8, &lo, &hi, &abits);
        for (ulong i = nv * 8 + t; i < cols; i += tpr)
            mq_fold1(mq_load1(src, base + i, dt), &lo, &hi, &abits);
    }
    lo_s[lid] = lo;
    hi_s[lid] = hi;
    bad_s[lid] = abits;
    for (uint s = tpr >> 1; s > 0u; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (t < s) {
            lo_s[lid] = fmin(lo_s[lid], lo_s[lid + s]);
            hi_s[lid] = fmax(hi_s[lid], hi_s[lid + s]);
            bad_s[lid] = max(bad_s[lid], bad_s[lid + s]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active && t == 0u) {
        float z;
        float s = mq_params(lo_s[lid], hi_s[lid], symmetric, dt, &z);
        mq_store_scale(scale, row, s, dt);
        zp[row] = (char)z;
        bad[row] = bad_s[lid] >= MQ_NONFINITE_BITS ? 1 : 0;
        s_s[slot] = s;
        zp_s[slot] = z;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!active) return;
    float s = s_s[slot], z = zp_s[slot];
    for (ulong v = t; v < nv; v += tpr)
        vstore8(mq_quant8(mq_load8(src, base + v * 8, dt), s, z), 0, q + base + v * 8);
    for (ulong i = nv * 8 + t; i < cols; i += tpr)
        q[base + i] = mq_quant1(mq_load1(src, base + i, dt), s, z);
}

#define MQ_FUSED_LOCALS                                                                           \
    local float lo_s[MQ_WG], hi_s[MQ_WG], s_s[MQ_WG], zp_s[MQ_WG];                                \
    local uint bad_s[MQ_WG]

kernel void mq_quantize_rows_f32(global const float *src, ulong rows, ulong cols, uint tpr,
                                 int symmetric, global char *q, global float *scale,
                                 global char *zp, global uchar *bad)
{
    MQ_FUSED_LOCALS;
    mq_quantize_rows_body(src, MQ_F32, rows, cols, tpr, symmetric, q, scale, zp, bad, lo_s, hi_s,
                          bad_s, s_s, zp_s);
}

kernel void mq_quantize_rows_f16(global const ushort *src, ulong rows, ulong cols, uint tpr,
                                 int symmetric, global char *q, global ushort *scale,
                                 global char *zp, global uchar *bad)
{
    MQ_FUSED_LOCALS;
    mq_quantize_rows_body(src, MQ_F16, rows, cols, tpr, symmetric, q, scale, zp, bad, lo_s, hi_s,
                          bad_s, s_s, zp_s);
}

kernel void mq_quantize_rows_bf16(global const ushort *src, ulong rows, ulong cols, uint tpr,
                                  int symmetric, global char *q, global ushort *scale,
                                  global char *zp, global uchar *bad)
{
    MQ_FUSED_LOCALS;
    mq_quantize_rows_body(src, MQ_BF16, rows, cols, tpr, symmetric, q, scale, zp, bad, lo_s,
                          hi_s, bad_s, s_s, zp_s);
}

/* Partial min/max of segment g % spr of row g / spr (segments of `seg` values,
 * a multiple of 8) into lo[g], hi[g], bad[g]. */
inline void mq_row_stats_body(global const void *src, const int dt, ulong cols, ulong seg,
                              uint spr, global float *lo_out, global float *hi_out,
                              global uchar *bad_out, local float *lo_s, local float *hi_s,
                              local uint *bad_s)
{
    uint lid = get_local_id(0);
    ulong g = get_group_id(0);
    ulong row = g / spr;
    ulong start = (g - row * spr) * seg;
    ulong end = min(start + seg, cols);
    ulong base = row * cols;
    float lo = INFINITY, hi = -INFINITY;
    uint abits = 0u;
    ulong nv = (end - start) / 8;
    float8 lo8 = (float8)(INFINITY), hi8 = (float8)(-INFINITY);
    uint8 ab8 = (uint8)(0u);
    for (ulong v = lid; v < nv; v += MQ_WG)
        mq_fold8(mq_load8(src, base + start + v * 8, dt), &lo8, &hi8, &ab8);
    mq_fold_lanes(lo8, hi8, ab8, &lo, &hi, &abits);
    for (ulong i = start + nv * 8 + lid; i < end; i += MQ_WG)
        mq_fold1(mq_load1(src, base + i, dt), &lo, &hi, &abits);
    lo_s[lid] = lo;
    hi_s[lid] = hi;
    bad_s[lid] = abits;
    for (uint s = MQ_WG >> 1; s > 0u; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s) {
            lo_s[lid] = fmin(lo_s[lid], lo_s[lid + s]);
            hi_s[lid] = fmax(hi_s[lid], hi_s[lid + s]);
            bad_s[lid] = max(bad_s[lid], bad_s[lid + s]);
        }
    }
    if (lid == 0u) {
        lo_out[g] = lo_s[0];
        hi_out[g] = hi_s[0];
        bad_out[g] = bad_s[0] >= MQ_NONFINITE_BITS ? 1 : 0;
    }
}

#define MQ_STATS_LOCALS                                                                           \
    local float lo_s[MQ_WG], hi_s[MQ_WG];                                                         \
    local uint bad_s[MQ_WG]

kernel void mq_row_stats_f32(global const float *src, ulong cols, ulong seg, uint spr,
                             global float *lo, global float *hi, global uchar *bad)
{
    MQ_STATS_LOCALS;
    mq_row_stats_body(src, MQ_F32, cols, seg, spr, lo, hi, bad, lo_s, hi_s, bad_s);
}

kernel void mq_row_stats_f16(global const ushort *src, ulong cols, ulong seg, uint spr,
                             global float *lo, global float *hi, global uchar *bad)
{
    MQ_STATS_LOCALS;
    mq_row_stats_body(src, MQ_F16, cols, seg, spr, lo, hi, bad, lo_s, hi_s, bad_s);
}

kernel void mq_row_stats_bf16(global const ushort *src, ulong cols, ulong seg, uint spr,
                              global float *lo, global float *hi, global uchar *bad)
{
    MQ_STATS_LOCALS;
    mq_row_stats_body(src, MQ_BF16, cols, seg, spr, lo, hi, bad, lo_s, hi_s, bad_s);
}

/* q for n values that start at column `col0` of row 0 of `cols`-long rows, with
 * the scale s[r] and zero point zp[r] of each row r. Eight values per work-item. */
inline void mq_quantize_fixed_body(global const void *src, const int dt, ulong n, ulong cols,
                                   ulong col0, global const float *s, global const char *zp,
                                   global char *q)
{
    ulong i = (ulong)get_global_id(0) * 8;
    if (i >= n) return;
    ulong r = (col0 + i) / cols;
    if (i + 8 <= n && (col0 + i + 7) / cols == r) {
        vstore8(mq_quant8(mq_load8(src, i, dt), s[r], (float)zp[r]), 0, q + i);
        return;
    }
    for (ulong j = i; j < min(i + 8, n); j++) {
        r = (col0 + j) / cols;
        q[j] = mq_quant1(mq_load1(src, j, dt), s[r], (float)zp[r]);
    }
}

kernel void mq_quantize_fixed_f32(global const float *src, ulong n, ulong cols, ulong col0,
                                  global const float *s, global const char *zp, global char *q)
{
    mq_quantize_fixed_body(src, MQ_F32, n, cols, col0, s, zp, q);
}

kernel void mq_quantize_fixed_f16(global const ushort *src, ulong n, ulong cols, ulong col0,
                                  global const float *s, global const char *zp, global char *q)
{
    mq_quantize_fixed_body(src, MQ_F16, n, cols, col0, s, zp, q);
}

kernel void mq_quantize_fixed_bf16(global const ushort *src, ulong n, ulong cols, ulong col0,
                                   global const float *s, global const char *zp, global char *q)
{
    mq_quantize_fixed_body(src, MQ_BF16, n, cols, col0, s, zp, q);
}
