/* Quantization. One fused body (mq_quantize_rows_body) does one row per `tpr`
 * work-items for every kind: min/max reduction in local memory, the
 * parameters, then the codes (int4 packed here); the int8 kernels pass the
 * kind as a constant, the int4/fp8 kernels as an argument. The split kernels
 * serve int8 rows too long for one work-group: partial statistics per
 * segment, combined on the host, then quantization with given parameters;
 * the values kernels take runs with fixed parameters for the other kinds, and
 * float8 also comes in 2-D blocks, one work-group a block. Needs numerics.cl
 * before it. */
#pragma OPENCL FP_CONTRACT OFF

/* Code bytes as stored: XOR cx, 0 or 0x80 (the unsigned bytes of
 * compressed-tensors' packed int32 words: packing 8-bit codes is this
 * relabelling, done here). */
inline char8 mq_x8(uint8 c, uchar cx)
{
    return as_char8(convert_uchar8(c) ^ (uchar8)(cx));
}

inline char mq_x1(uint c, uchar cx)
{
    return as_char((uchar)(c ^ cx));
}

/* Vectors a lane sums in fp32 before the block's sum is added, compensated,
 * to the running one: the error of a row's sums stays near that of 16 terms
 * however long the row. */
#define MQ_ERR_BLOCK 16

inline float mq_sum8(float8 a)
{
    float4 h = a.lo + a.hi;
    float2 g = h.lo + h.hi;
    return g.x + g.y;
}

/* Adds up the error terms of the `n` work-items (a power of two) of one group
 * of work-items that begins at lid - lid % n: the lanes of each, then a tree
 * in local memory; the first work-item of the group finds the totals at its
 * index in sig_s, err2_s, mx_s, ncl_s. Every work-item of the work-group must
 * call it. The local arrays may be in use before the call. */
inline void mq_err_reduce(float8 sig, float8 err2, float8 mx, uint8 ncl, float ts, float te,
                          float tm, uint tc, uint lid, uint n, local float *sig_s,
                          local float *err2_s, local float *mx_s, local uint *ncl_s)
{
    uint t = lid & (n - 1u);
    float4 m4 = fmax(mx.lo, mx.hi);
    float2 m2 = fmax(m4.lo, m4.hi);
    uint4 c4 = ncl.lo + ncl.hi;
    uint2 c2 = c4.lo + c4.hi;
    barrier(CLK_LOCAL_MEM_FENCE);
    sig_s[lid] = mq_sum8(sig) + ts;
    err2_s[lid] = mq_sum8(err2) + te;
    mx_s[lid] = fmax(fmax(m2.x, m2.y), tm);
    ncl_s[lid] = c2.x + c2.y + tc;
    for (uint s = n >> 1; s > 0u; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (t < s) {
            sig_s[lid] += sig_s[lid + s];
            err2_s[lid] += err2_s[lid + s];
            mx_s[lid] = fmax(mx_s[lid], mx_s[lid + s]);
            ncl_s[lid] += ncl_s[lid + s];
        }
    }
}

#define MQ_FUSED_LOCALS                                                                            \
    local float lo_s[MQ_WG], hi_s[MQ_WG], s_s[MQ_WG], zp_s[MQ_WG];                                 \
    local uint bad_s[MQ_WG]


/* The error exponent (mq_err_exp) of a work-group's values, eight a
 * work-item: the largest finite |w| of w when whole, else of values
 * [i, end) one by one, reduced in local memory mx_s. Every work-item of the
 * work-group calls it. */
inline int mq_group_err_exp(global const void *src, const int dt, bool whole, float8 w, ulong i,
                            ulong end, uint lid, local float *mx_s)
{
    float a = 0.0f;
    if (whole) {
        a = mq_amax8(w);
    } else {
        for (ulong j = i; j < end; j++) {
            float x = mq_load1(src, j, dt);
            a = isfinite(x) ? fmax(a, fabs(x)) : a;
        }
    }
    mx_s[lid] = a;
    for (uint h = MQ_WG >> 1; h > 0u; h >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < h) mx_s[lid] = fmax(mx_s[lid], mx_s[lid + h]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    return mq_err_exp(mx_s[0]);
}

/* Partial min/max of segment g % spr of row g / spr (segments of `seg` values,
 * a multiple of 8) into lo[g], hi[g], bad[g]. */
inline void mq_row_stats_body(global const void *src, const int dt, ulong cols, ulong seg, uint spr,
                              global float *lo_out, global float *hi_out, global uchar *bad_out,
                              local float *lo_s, local float *hi_s, local uint *bad_s)
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

#define MQ_STATS_LOCALS                                                                            \
    local float lo_s[MQ_WG], hi_s[MQ_WG];                                                          \
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
                                   uchar cx, global char *q)
{
    ulong i = (ulong)get_global_id(0) * 8;
    if (i >= n) return;
    ulong r = (col0 + i) / cols;
    if (i + 8 <= n && (col0 + i + 7) / cols == r) {
        vstore8(mq_x8(mq_quant8(mq_load8(src, i, dt), s[r], (float)zp[r], MQ_QK_INT8), cx), 0, q + i);
        return;
    }
    for (ulong j = i; j < min(i + 8, n); j++) {
        r = (col0 + j) / cols;
        q[j] = mq_x1(mq_quant1(mq_load1(src, j, dt), s[r], (float)zp[r], MQ_QK_INT8), cx);
    }
}

kernel void mq_quantize_fixed_f32(global const float *src, ulong n, ulong cols, ulong col0,
        global const float *s, global const char *zp, uchar cx, global char *q)
{
    mq_quantize_fixed_body(src, MQ_F32, n, cols, col0, s, zp, cx, q);
}

kernel void mq_quantize_fixed_f16(global const ushort *src, ulong n, ulong cols, ulong col0,
        global const float *s, global const char *zp, uchar cx, global char *q)
{
    mq_quantize_fixed_body(src, MQ_F16, n, cols, col0, s, zp, cx, q);
}

kernel void mq_quantize_fixed_bf16(global const ushort *src, ulong n, ulong cols, ulong col0,
        global const float *s, global const char *zp, uchar cx, global char *q)
{
    mq_quantize_fixed_body(src, MQ_BF16, n, cols, col0, s, zp, cx, q);
}

/* As mq_quantize_fixed_body, and the weight error of the work-group's values
 * in units of 2^2k, k from their largest |w|: work-group g puts its sums of
 * w^2 and (w - w_hat)^2, its max |w - w_hat| and k in esum[4g..4g+3] and its
 * clamped count in ecl[g]. */
inline void mq_quantize_fixed_err_body(global const void *src, const int dt, ulong n, ulong cols,
                                       ulong col0, global const float *s, global const char *zp,
                                       uchar cx, global char *q, global float *esum,
                                       global uint *ecl,
                                       local float *sig_s, local float *err2_s, local float *mx_s,
                                       local uint *ncl_s)
{
    uint lid = get_local_id(0);
    ulong i = (ulong)get_global_id(0) * 8;
    ulong end = min(i + 8, n);
    /* Eight values of one row load as a vector, once; others one by one. */
    bool whole = i + 8 <= n && (col0 + i) / cols == (col0 + i + 7) / cols;
    float8 w = whole ? mq_load8(src, i, dt) : (float8)(0.0f);
    int k = mq_group_err_exp(src, dt, whole, w, i, end, lid, mx_s);
    float tk = mq_pow2(-k);

    float8 sig = (float8)(0.0f), err2 = sig, mx = sig;
    uint8 ncl = (uint8)(0u);
    float ts = 0.0f, te = 0.0f, tm = 0.0f;
    uint tc = 0u;
    if (whole) {
        ulong r = (col0 + i) / cols;
        vstore8(mq_x8(mq_quant8_err(w, s[r], (float)zp[r], MQ_QK_INT8, tk, &sig, &err2, &mx, &ncl), cx), 0,
                q + i);
    } else {
        for (ulong j = i; j < end; j++) {
            ulong r = (col0 + j) / cols;
            q[j] = mq_x1(
                mq_quant1_err(mq_load1(src, j, dt), s[r], (float)zp[r], MQ_QK_INT8, tk, &ts, &te, &tm, &tc), cx);
        }
    }
    mq_err_reduce(sig, err2, mx, ncl, ts, te, tm, tc, lid, MQ_WG, sig_s, err2_s, mx_s, ncl_s);
    if (lid == 0u) {
        ulong g = get_group_id(0);
        vstore4((float4)(sig_s[0], err2_s[0], mx_s[0], (float)k), g, esum);
        ecl[g] = ncl_s[0];
    }
}

#define MQ_FIXED_ERR_LOCALS                                                                        \
    local float sig_s[MQ_WG], err2_s[MQ_WG], mx_s[MQ_WG];                                          \
    local uint ncl_s[MQ_WG]

#define MQ_FIXED_ERR_KERNEL(SFX, DT, T)                                                            \
    kernel void mq_quantize_fixed_err_##SFX(                                                       \
        global const T *src, ulong n, ulong cols, ulong col0, global const float *s,               \
        global const char *zp, uchar cx, global char *q, global float *esum, global uint *ecl)     \
    {                                                                                              \
        MQ_FIXED_ERR_LOCALS;                                                                       \
        mq_quantize_fixed_err_body(src, DT, n, cols, col0, s, zp, cx, q, esum, ecl, sig_s, err2_s, \
                                   mx_s, ncl_s);                                                   \
    }

MQ_FIXED_ERR_KERNEL(f32, MQ_F32, float)
MQ_FIXED_ERR_KERNEL(f16, MQ_F16, ushort)
MQ_FIXED_ERR_KERNEL(bf16, MQ_BF16, ushort)

/* ---- int4 and float8 e4m3 (kind MQ_QK_INT4 or MQ_QK_FP8) ----
 * Rows as the fused kernels do them, one row per `tpr` work-items; codes
 * stored as the reference stores them: FP8 one byte per value, INT4 packed
 * eight to a word (mq_pack4), each row padded to whole words. A work-item's
 * eight values make exactly one word; the last, short word of a row is made
 * by the row's first work-item. */

/* The codes of a row's last cols % 8 values (from i0), one word for INT4. */
inline void mq_tail_k(global const void *src, const int dt, ulong base, ulong i0, ulong cols,
                      float s, float z, int kind, global uchar *out, const int want_err, float tk,
                      float *ts, float *te, float *tm, uint *tc)
{
    uchar4 word = (uchar4)(0);
    /* int4 nibbles are code + 8, e2m1's the code */
    uint off = kind == MQ_QK_INT4 ? 8u : 0u;
    for (ulong i = i0; i < cols; i++) {
        float w = mq_load1(src, base + i, dt);
        uint c = want_err ? mq_quant1_err(w, s, z, kind, tk, ts, te, tm, tc)
                          : mq_quant1(w, s, z, kind);
        if (kind == MQ_QK_FP8 || kind == MQ_QK_MXFP8) {
            out[i - i0] = (uchar)c;
        } else {
            uint j = (uint)(i - i0);
            uchar n = (uchar)((c + off) & 15u) << (4u * (j & 1u));
            if (j / 2u == 0u) word.s0 |= n;
            else if (j / 2u == 1u) word.s1 |= n;
            else if (j / 2u == 2u) word.s2 |= n;
            else word.s3 |= n;
        }
    }
    if (kind == MQ_QK_INT4) {
        vstore4(word, 0, out);
    } else if (kind == MQ_QK_MXFP4) {
        /* A row of e2m1 codes ends at its last byte, not a word. */
        uint nb = (uint)((cols - i0 + 1) / 2);
        out[0] = word.s0;
        if (nb > 1u) out[1] = word.s1;
        if (nb > 2u) out[2] = word.s2;
        if (nb > 3u) out[3] = word.s3;
    }
}

/* Rows of `cols` values of kind `kind` (a constant in the int8 kernels),
 * `tpr` (a power of two dividing MQ_WG) work-items per row, MQ_WG / tpr rows
 * per work-group: min/max reduction in local memory, the parameters, then the
 * codes (int8 XOR cx), and with want_err the row's weight error: fp32 sums
 * over blocks of MQ_ERR_BLOCK vectors per lane, blocks added with
 * compensation, then the lanes and the row's work-items added pairwise. */
inline void mq_quantize_rows_body(global const void *src, const int dt, ulong rows, ulong cols,
                                  uint tpr, int kind, int symmetric, uchar cx,
                                  global uchar *q, global void *scale, global char *zp,
                                  global uchar *bad, const int want_err, global float *esum,
                                  global uint *ecl, local float *lo_s, local float *hi_s,
                                  local uint *bad_s, local float *s_s, local float *zp_s)
{
    uint lid = get_local_id(0);
    uint slot = lid / tpr;
    uint t = lid - slot * tpr;
    ulong row = (ulong)get_group_id(0) * (MQ_WG / tpr) + slot;
    bool active = row < rows;
    ulong base = row * cols;
    ulong nv = cols / 8;
    ulong rb = kind == MQ_QK_INT4    ? (cols + 7) / 8 * 4
               : kind == MQ_QK_MXFP4 || kind == MQ_QK_NVFP4 ? (cols + 1) / 2
                                     : cols; /* bytes of a stored row */
    global uchar *qrow = q + row * rb;

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
        float z = 0.0f, s;
        if (kind == MQ_QK_NVFP4) {
            /* The e4m3 scale byte; the codes take it divided by the global
             * scale (symmetric holds its fp32 bits), as MXFP4's codes. */
            float g = as_float(symmetric);
            s = mq_params_nvfp4(lo_s[lid], hi_s[lid], g, dt);
            ((global uchar *)scale)[row] = (uchar)mq_e4m3(s);
            s = mq_div(s, g);
        } else {
            s = mq_params(lo_s[lid], hi_s[lid], kind, symmetric, dt, &z);
        }
        if (kind == MQ_QK_MXFP4 || kind == MQ_QK_MXFP8) /* one e8m0 byte */
            ((global uchar *)scale)[row] = (uchar)mq_e8m0_byte(s);
        else if (kind != MQ_QK_NVFP4)
            mq_store_scale(scale, row, s, dt);
        zp[row] = (char)z;
        bad[row] = bad_s[lid] >= MQ_NONFINITE_BITS ? 1 : 0;
        s_s[slot] = s;
        zp_s[slot] = z;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (kind == MQ_QK_NVFP4) kind = MQ_QK_MXFP4; /* the same codes from here */
    float s = active ? s_s[slot] : 1.0f, z = active ? zp_s[slot] : 0.0f;
    int k = active && want_err ? mq_err_exp(fmax(fabs(lo_s[slot * tpr]), fabs(hi_s[slot * tpr])))
                               : 0;
    float tk = mq_pow2(-k);
    float8 sig = (float8)(0.0f), sigc = sig, err2 = sig, err2c = sig, mx = sig;
    uint8 ncl = (uint8)(0u);
    ulong nva = active ? nv : 0;
    /* Without want_err one block spans the row (the sums are not kept). */
    ulong block = want_err ? MQ_ERR_BLOCK * (ulong)tpr : nva + tpr;
    for (ulong v0 = t; v0 < nva; v0 += block) {
        float8 bs = (float8)(0.0f), be = bs;
        ulong vend = min(v0 + block, nva);
        for (ulong v = v0; v < vend; v += tpr) {
            float8 w = mq_load8(src, base + v * 8, dt);
            uint8 c = want_err ? mq_quant8_err(w, s, z, kind, tk, &bs, &be, &mx, &ncl)
                               : mq_quant8(w, s, z, kind);
            if (kind == MQ_QK_INT4)
                vstore4(mq_pack4(c), 0, qrow + v * 4);
            else if (kind == MQ_QK_MXFP4)
                vstore4(mq_pack_e2m1(c), 0, qrow + v * 4);
            else
                vstore8(as_uchar8(mq_x8(c, kind == MQ_QK_INT8 ? cx : 0)), 0, qrow + v * 8);
        }
        if (want_err) {
            mq_kahan8(bs, &sig, &sigc);
            mq_kahan8(be, &err2, &err2c);
        }
    }
    /* The row's last cols % 8 values: spread over the work-items for byte
     * codes, one word made by the first work-item for INT4 (and for FP8,
     * whose error sums have always been taken that way). */
    float ts = 0.0f, te = 0.0f, tm = 0.0f;
    uint tc = 0u;
    if (kind == MQ_QK_INT8) {
        for (ulong i = nv * 8 + t; active && i < cols; i += tpr) {
            float w = mq_load1(src, base + i, dt);
            uint c = want_err ? mq_quant1_err(w, s, z, kind, tk, &ts, &te, &tm, &tc)
                              : mq_quant1(w, s, z, kind);
            qrow[i] = (uchar)(c ^ cx);
        }
    } else if (active && t == 0u && nv * 8 < cols) {
        mq_tail_k(src, dt, base, nv * 8, cols, s, z, kind,
                  qrow + (kind == MQ_QK_FP8 || kind == MQ_QK_MXFP8 ? nv * 8 : nv * 4), want_err, tk,
                  &ts, &te, &tm, &tc);
    }
    if (!want_err) return;
    mq_err_reduce(sig, err2, mx, ncl, ts, te, tm, tc, lid, tpr, lo_s, hi_s, zp_s, bad_s);
    if (active && t == 0u) {
        vstore4((float4)(lo_s[lid], hi_s[lid], zp_s[lid], (float)k), row, esum);
        ecl[row] = bad_s[lid];
    }
}

/* The fused kernels of one input dtype T (scales are stored as T too):
 * mq_quantize_rows_<sfx>, and mq_quantize_rows_err_<sfx>, which also puts per
 * row r esum[4r..4r+3] = the sums of w^2 and (w - w_hat)^2 in units of 2^2k
 * (k from the row's largest |w|, see mq_err_exp), max |w - w_hat| and k, and
 * ecl[r] = the values clamped. */
#define MQ_ROWS_KERNELS(SFX, DT, T)                                                                \
    kernel void mq_quantize_rows_##SFX(global const T *src, ulong rows, ulong cols, uint tpr,      \
                                       int symmetric, uchar cx, global char *q, global T *scale,   \
                                       global char *zp, global uchar *bad)                         \
    {                                                                                              \
        MQ_FUSED_LOCALS;                                                                           \
        mq_quantize_rows_body(src, DT, rows, cols, tpr, MQ_QK_INT8, symmetric, cx,                 \
                              (global uchar *)q, scale, zp, bad, 0, 0, 0, lo_s, hi_s, bad_s, s_s,  \
                              zp_s);                                                               \
    }                                                                                              \
    kernel void mq_quantize_rows_err_##SFX(global const T *src, ulong rows, ulong cols, uint tpr,  \
                                           int symmetric, uchar cx, global char *q,                \
                                           global T *scale, global char *zp, global uchar *bad,    \
                                           global float *esum, global uint *ecl)                   \
    {                                                                                              \
        MQ_FUSED_LOCALS;                                                                           \
        mq_quantize_rows_body(src, DT, rows, cols, tpr, MQ_QK_INT8, symmetric, cx,                 \
                              (global uchar *)q, scale, zp, bad, 1, esum, ecl, lo_s, hi_s, bad_s,  \
                              s_s, zp_s);                                                          \
    }

MQ_ROWS_KERNELS(f32, MQ_F32, float)
MQ_ROWS_KERNELS(f16, MQ_F16, ushort)
MQ_ROWS_KERNELS(bf16, MQ_BF16, ushort)

/* mq_quantize_rows_k_<sfx> and its _err variant (esum and ecl as for the
 * int8 _err kernels). */
#define MQ_ROWS_K_KERNELS(SFX, DT, T)                                                              \
    kernel void mq_quantize_rows_k_##SFX(global const T *src, ulong rows, ulong cols, uint tpr,    \
                                         int kind, int symmetric, global uchar *q,                 \
                                         global T *scale, global char *zp, global uchar *bad)      \
    {                                                                                              \
        MQ_FUSED_LOCALS;                                                                           \
        mq_quantize_rows_body(src, DT, rows, cols, tpr, kind, symmetric, 0, q, scale, zp, bad, 0,  \
                              0, 0, lo_s, hi_s, bad_s, s_s, zp_s);                                 \
    }                                                                                              \
    kernel void mq_quantize_rows_k_err_##SFX(                                                      \
        global const T *src, ulong rows, ulong cols, uint tpr, int kind, int symmetric,            \
        global uchar *q, global T *scale, global char *zp, global uchar *bad, global float *esum,  \
        global uint *ecl)                                                                          \
    {                                                                                              \
        MQ_FUSED_LOCALS;                                                                           \
        mq_quantize_rows_body(src, DT, rows, cols, tpr, kind, symmetric, 0, q, scale, zp, bad, 1,  \
                              esum, ecl, lo_s, hi_s, bad_s, s_s, zp_s);                            \
    }

MQ_ROWS_K_KERNELS(f32, MQ_F32, float)
MQ_ROWS_K_KERNELS(f16, MQ_F16, ushort)
MQ_ROWS_K_KERNELS(bf16, MQ_BF16, ushort)

/* n values with fixed parameters, eight per work-item: one code byte each,
 * or with `pack` (INT4) packed words from word 0 on, the last one padded. With
 * want_err the work-group's error sums go to esum[4g..4g+3] and ecl[g] as
 * in mq_quantize_fixed_err_body. */
inline void mq_quantize_values_k_body(global const void *src, const int dt, ulong n, int kind,
                                      int pack, float s, float z, global uchar *q,
                                      const int want_err, global float *esum, global uint *ecl,
                                      local float *sig_s, local float *err2_s, local float *mx_s,
                                      local uint *ncl_s)
{
    uint lid = get_local_id(0);
    ulong i = (ulong)get_global_id(0) * 8;
    bool whole = i + 8 <= n;
    int k = 0;
    float tk = 1.0f;
    float8 w = (float8)(0.0f);
    if (whole) w = mq_load8(src, i, dt);
    if (want_err) {
        k = mq_group_err_exp(src, dt, whole, w, i, n, lid, mx_s);
        tk = mq_pow2(-k);
    }
    float8 sig = (float8)(0.0f), err2 = sig, mx = sig;
    uint8 ncl = (uint8)(0u);
    float ts = 0.0f, te = 0.0f, tm = 0.0f;
    uint tc = 0u;
    if (whole) {
        uint8 c = want_err ? mq_quant8_err(w, s, z, kind, tk, &sig, &err2, &mx, &ncl)
                           : mq_quant8(w, s, z, kind);
        if (pack)
            vstore4(mq_pack4(c), 0, q + i / 2);
        else
            vstore8(convert_uchar8(c), 0, q + i);
    } else if (i < n) {
        if (pack) {
            mq_tail_k(src, dt, 0, i, n, s, z, kind, q + i / 2, want_err, tk, &ts, &te, &tm, &tc);
        } else {
            for (ulong j = i; j < n; j++) {
                float x = mq_load1(src, j, dt);
                q[j] = (uchar)(want_err ? mq_quant1_err(x, s, z, kind, tk, &ts, &te, &tm, &tc)
                                        : mq_quant1(x, s, z, kind));
            }
        }
    }
    if (!want_err) return;
    mq_err_reduce(sig, err2, mx, ncl, ts, te, tm, tc, lid, MQ_WG, sig_s, err2_s, mx_s, ncl_s);
    if (lid == 0u) {
        ulong g = get_group_id(0);
        vstore4((float4)(sig_s[0], err2_s[0], mx_s[0], (float)k), g, esum);
        ecl[g] = ncl_s[0];
    }
}

#define MQ_VALUES_K_KERNELS(SFX, DT, T)                                                            \
    kernel void mq_quantize_values_k_##SFX(global const T *src, ulong n, int kind, int pack,       \
                                           float s, float z, global uchar *q)                      \
    {                                                                                              \
        mq_quantize_values_k_body(src, DT, n, kind, pack, s, z, q, 0, 0, 0, 0, 0, 0, 0);           \
    }                                                                                              \
    kernel void mq_quantize_values_k_err_##SFX(global const T *src, ulong n, int kind, int pack,   \
                                               float s, float z, global uchar *q,                  \
                                               global float *esum, global uint *ecl)               \
    {                                                                                              \
        MQ_FIXED_ERR_LOCALS;                                                                       \
        mq_quantize_values_k_body(src, DT, n, kind, pack, s, z, q, 1, esum, ecl, sig_s, err2_s,    \
                                  mx_s, ncl_s);                                                    \
    }

MQ_VALUES_K_KERNELS(f32, MQ_F32, float)
MQ_VALUES_K_KERNELS(f16, MQ_F16, ushort)
MQ_VALUES_K_KERNELS(bf16, MQ_BF16, ushort)

/* FP8 in bs x bs blocks of a rows x cols matrix whose rows lie `ld` values
 * apart (the codes too, one byte each): work-group g takes block
 * (g / nbc, g % nbc), reduces its min/max in local memory, puts its scale in
 * scale[g] and its NaN/Inf flag in bad[g], then its codes; the _err variant
 * its error sums in esum[4g..4g+3] and ecl[g]. */
inline void mq_quantize_blocks_body(global const void *src, const int dt, ulong rows, ulong cols,
                                    ulong ld, uint bs, ulong nbc, global uchar *q,
                                    global void *scale, global uchar *bad, const int want_err,
                                    global float *esum, global uint *ecl, local float *lo_s,
                                    local float *hi_s, local uint *bad_s, local float *s_s,
                                    local float *zp_s)
{
    uint lid = get_local_id(0);
    ulong g = get_group_id(0);
    ulong r0 = g / nbc * bs, c0 = g % nbc * bs;
    ulong nr = min((ulong)bs, rows - r0), nc = min((ulong)bs, cols - c0);
    ulong nv = nc / 8, nt = nc - nv * 8;
    float lo = INFINITY, hi = -INFINITY;
    uint abits = 0u;
    float8 lo8 = (float8)(INFINITY), hi8 = (float8)(-INFINITY);
    uint8 ab8 = (uint8)(0u);
    for (ulong j = lid; j < nr * nv; j += MQ_WG)
        mq_fold8(mq_load8(src, (r0 + j / nv) * ld + c0 + j % nv * 8, dt), &lo8, &hi8, &ab8);
    mq_fold_lanes(lo8, hi8, ab8, &lo, &hi, &abits);
    for (ulong j = lid; j < nr * nt; j += MQ_WG)
        mq_fold1(mq_load1(src, (r0 + j / nt) * ld + c0 + nv * 8 + j % nt, dt), &lo, &hi, &abits);
    lo_s[lid] = lo;
    hi_s[lid] = hi;
    bad_s[lid] = abits;
    for (uint h = MQ_WG >> 1; h > 0u; h >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < h) {
            lo_s[lid] = fmin(lo_s[lid], lo_s[lid + h]);
            hi_s[lid] = fmax(hi_s[lid], hi_s[lid + h]);
            bad_s[lid] = max(bad_s[lid], bad_s[lid + h]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0u) {
        float z;
        float s = mq_params(lo_s[0], hi_s[0], MQ_QK_FP8, 1, dt, &z);
        mq_store_scale(scale, g, s, dt);
        bad[g] = bad_s[0] >= MQ_NONFINITE_BITS ? 1 : 0;
        s_s[0] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float s = s_s[0];
    int k = mq_err_exp(fmax(fabs(lo_s[0]), fabs(hi_s[0])));
    float tk = mq_pow2(-k);
    float8 sig = (float8)(0.0f), sigc = sig, err2 = sig, err2c = sig, mx = sig;
    uint8 ncl = (uint8)(0u);
    float8 bsig = sig, berr = sig;
    uint nb = 0u;
    for (ulong j = lid; j < nr * nv; j += MQ_WG) {
        ulong at = (r0 + j / nv) * ld + c0 + j % nv * 8;
        float8 w = mq_load8(src, at, dt);
        uint8 c = want_err ? mq_quant8_err(w, s, 0.0f, MQ_QK_FP8, tk, &bsig, &berr, &mx, &ncl)
                           : mq_quant8(w, s, 0.0f, MQ_QK_FP8);
        vstore8(convert_uchar8(c), 0, q + at);
        if (++nb == MQ_ERR_BLOCK) {
            mq_kahan8(bsig, &sig, &sigc);
            mq_kahan8(berr, &err2, &err2c);
            bsig = berr = (float8)(0.0f);
            nb = 0u;
        }
    }
    mq_kahan8(bsig, &sig, &sigc);
    mq_kahan8(berr, &err2, &err2c);
    float ts = 0.0f, te = 0.0f, tm = 0.0f;
    uint tc = 0u;
    for (ulong j = lid; j < nr * nt; j += MQ_WG) {
        ulong at = (r0 + j / nt) * ld + c0 + nv * 8 + j % nt;
        float x = mq_load1(src, at, dt);
        q[at] = (uchar)(want_err ? mq_quant1_err(x, s, 0.0f, MQ_QK_FP8, tk, &ts, &te, &tm, &tc)
                                 : mq_quant1(x, s, 0.0f, MQ_QK_FP8));
    }
    if (!want_err) return;
    mq_err_reduce(sig, err2, mx, ncl, ts, te, tm, tc, lid, MQ_WG, lo_s, hi_s, zp_s, bad_s);
    if (lid == 0u) {
        vstore4((float4)(lo_s[0], hi_s[0], zp_s[0], (float)k), g, esum);
        ecl[g] = bad_s[0];
    }
}

#define MQ_BLOCKS_KERNELS(SFX, DT, T)                                                              \
    kernel void mq_quantize_blocks_##SFX(global const T *src, ulong rows, ulong cols, ulong ld,    \
                                         uint bs, ulong nbc, global uchar *q, global T *scale,     \
                                         global uchar *bad)                                        \
    {                                                                                              \
        MQ_FUSED_LOCALS;                                                                           \
        mq_quantize_blocks_body(src, DT, rows, cols, ld, bs, nbc, q, scale, bad, 0, 0, 0, lo_s,    \
                                hi_s, bad_s, s_s, zp_s);                                           \
    }                                                                                              \
    kernel void mq_quantize_blocks_err_##SFX(global const T *src, ulong rows, ulong cols,          \
                                             ulong ld, uint bs, ulong nbc, global uchar *q,        \
                                             global T *scale, global uchar *bad,                   \
                                             global float *esum, global uint *ecl)                 \
    {                                                                                              \
        MQ_FUSED_LOCALS;                                                                           \
        mq_quantize_blocks_body(src, DT, rows, cols, ld, bs, nbc, q, scale, bad, 1, esum, ecl,     \
                                lo_s, hi_s, bad_s, s_s, zp_s);                                     \
    }

MQ_BLOCKS_KERNELS(f32, MQ_F32, float)
MQ_BLOCKS_KERNELS(f16, MQ_F16, ushort)
MQ_BLOCKS_KERNELS(bf16, MQ_BF16, ushort)
