/* Two passes on the device: int8 rows too long for the fused kernel's
 * work-groups but inside a buffer (statistics partials for chunks of whole
 * rows, parameters on the host, then codes), and the steps over one run of
 * values in pieces of a buffer: its statistics (reduce) and its codes with
 * fixed parameters (every kind). */
#include "cl_qparts.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Long rows that still fit a buffer: chunks of whole rows, two kernels each. */
mq_status mq_cl_quantize_split(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                               size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                               uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt), row_bytes = cols * es;
    size_t seg = mq_cl_stats_segment(cb), spr = (cols + seg - 1) / seg;
    size_t rpc = cb->limit / row_bytes;
    if (rpc > rows) rpc = rows;
    mq_cl_qbufs w = {0};
    mq_status st = mq_cl_split_buffers(cb, &w, rpc * row_bytes, rpc * cols, rpc * spr, rpc);
    if (st == MQ_OK && err) st = mq_cl_err_buffers(cb, &w, mq_cl_fixed_groups(cb, rpc * cols));
    for (size_t r0 = 0; st == MQ_OK && r0 < rows; r0 += rpc) {
        size_t n = rows - r0 < rpc ? rows - r0 : rpc;
        if ((st = mq_cl_write(cb, w.in, n * row_bytes, src + r0 * row_bytes)) != MQ_OK ||
            (st = mq_cl_run_stats(cb, dt, &w, n, cols)) != MQ_OK)
            break;
        for (size_t i = 0; i < n; i++) {
            mq_ref_stats s;
            mq_ref_stats_init(&s);
            mq_cl_fold_partials(&s, w.hlo + i * spr, w.hhi + i * spr, w.hbad + i * spr, spr);
            if (s.nonfinite) {
                *bad_row = r0 + i;
                st = MQ_STATUS_E_DATA;
                goto done;
            }
            mq_ref_params(mq_qd(MQ_QK_INT8, symmetric), &s, dt, &w.hs[i], &w.hzp[i]);
            if (symmetric) w.hzp[i] = 0;
            mq_store_scale(scale, dt, r0 + i, w.hs[i]);
            if (!symmetric && zp) zp[r0 + i] = w.hzp[i];
        }
        if ((st = mq_cl_write(cb, w.ps, n * sizeof(float), w.hs)) != MQ_OK ||
            (st = mq_cl_write(cb, w.pzp, n, w.hzp)) != MQ_OK)
            break;
        st = mq_cl_run_fixed(cb, dt, &w, n * cols, cols, 0, code_xor, q + r0 * cols, err);
    }
done:
    mq_cl_qbufs_free(cb, &w);
    return st;
}

mq_status mq_cl_reduce_once(mq_backend *b, const void *src, mq_dtype dt, size_t n, mq_ref_stats *st)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    mq_status s0 = mq_cl_check_dtype(dt, "reduce");
    if (s0 != MQ_OK || n == 0) return s0;
    size_t es = mq_dtype_size(dt), piece = mq_cl_piece_len(cb, es), seg = mq_cl_stats_segment(cb);
    if (piece == 0 || n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL reduce: %zu values do not fit", n);
    size_t spr = ((piece < n ? piece : n) + seg - 1) / seg;
    mq_cl_qbufs w = {0};
    mq_status st2 = mq_cl_split_buffers(cb, &w, (piece < n ? piece : n) * es, 1, spr, 1);
    const uint8_t *p = src;
    for (size_t c0 = 0; st2 == MQ_OK && c0 < n; c0 += piece) {
        size_t m = n - c0 < piece ? n - c0 : piece;
        if ((st2 = mq_cl_write(cb, w.in, m * es, p + c0 * es)) != MQ_OK ||
            (st2 = mq_cl_run_stats(cb, dt, &w, 1, m)) != MQ_OK)
            break;
        mq_cl_fold_partials(st, w.hlo, w.hhi, w.hbad, (m + seg - 1) / seg);
    }
    mq_cl_qbufs_free(cb, &w);
    return st2;
}

static mq_status quantize_values_once(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                      float scale, int8_t zp, uint8_t code_xor, int8_t *q,
                                      mq_err_acc *err)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    mq_status st = mq_cl_check_dtype(dt, "quantize");
    if (st != MQ_OK || n == 0) return st;
    size_t es = mq_dtype_size(dt), piece = mq_cl_piece_len(cb, es);
    if (piece == 0 || n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize: %zu values do not fit", n);
    size_t first = piece < n ? piece : n;
    mq_cl_qbufs w = {0};
    st = mq_cl_split_buffers(cb, &w, first * es, first, 1, 1);
    if (st == MQ_OK && err) st = mq_cl_err_buffers(cb, &w, mq_cl_fixed_groups(cb, first));
    if (st == MQ_OK) {
        w.hs[0] = scale;
        w.hzp[0] = zp;
        if ((st = mq_cl_write(cb, w.ps, sizeof(float), w.hs)) == MQ_OK)
            st = mq_cl_write(cb, w.pzp, 1, w.hzp);
    }
    const uint8_t *p = src;
    for (size_t c0 = 0; st == MQ_OK && c0 < n; c0 += piece) {
        size_t m = n - c0 < piece ? n - c0 : piece;
        if ((st = mq_cl_write(cb, w.in, m * es, p + c0 * es)) == MQ_OK)
            st = mq_cl_run_fixed(cb, dt, &w, m, n, c0, code_xor, q + c0, err);
    }
    mq_cl_qbufs_free(cb, &w);
    return st;
}

/* n int4 or fp8 values with fixed parameters, in pieces of a buffer: one
 * code byte each into q (the kernel's packing is left off: a caller packs
 * int4 rows, mq_be_quantize_two_pass). */
static mq_status values_k_once(mq_cl_backend *cb, const void *src, mq_dtype dt, size_t n,
                               mq_qkind kind, float scale, int8_t zp, uint8_t *q, mq_err_acc *err)
{
    mq_status st = mq_cl_check_dtype(dt, "quantize");
    if (st != MQ_OK || n == 0) return st;
    size_t es = mq_dtype_size(dt), piece = mq_cl_piece_len(cb, es);
    if (piece < 8 || n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize: %zu values do not fit", n);
    size_t first = piece < n ? piece : n;
    mq_cl_qbufs w = {0};
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, first * es, &w.in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, (first + 7) / 8 * 8, &w.q)) != MQ_OK ||
        (err && (st = mq_cl_err_buffers(cb, &w, mq_cl_fixed_groups(cb, first))) != MQ_OK))
        goto done;
    cl_int kind_a = (cl_int)kind, pack_a = 0; /* numerics.cl numbers kinds as qkind.h */
    cl_float s_a = scale, z_a = (float)zp;
    const uint8_t *p = src;
    for (size_t c0 = 0; c0 < n; c0 += piece) {
        size_t m = n - c0 < piece ? n - c0 : piece, groups = mq_cl_fixed_groups(cb, m);
        cl_ulong m_a = m;
        mq_cl_arg args[] = {MQ_CL_ARG(w.in),   MQ_CL_ARG(m_a),    MQ_CL_ARG(kind_a),
                            MQ_CL_ARG(pack_a), MQ_CL_ARG(s_a),    MQ_CL_ARG(z_a),
                            MQ_CL_ARG(w.q),    MQ_CL_ARG(w.esum), MQ_CL_ARG(w.ecl)};
        cl_kernel k = err ? cb->values_k_err[dt] : cb->values_k[dt];
        if ((st = mq_cl_write(cb, w.in, m * es, p + c0 * es)) != MQ_OK ||
            (st = mq_cl_launch(cb, k, args, err ? 9 : 7, (m + 7) / 8, NULL)) != MQ_OK ||
            (st = mq_cl_read(cb, w.q, m, q + c0)) != MQ_OK ||
            (err && (st = mq_cl_read_err(cb, &w, groups)) != MQ_OK) ||
            (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        if (err) mq_cl_qbufs_fold(err, &w, groups);
    }
done:
    mq_cl_qbufs_free(cb, &w);
    return st;
}

mq_status mq_cl_values_once(mq_cl_backend *cb, mq_qdesc d, const void *src, mq_dtype dt, size_t n,
                            float scale, int8_t zp, void *q, mq_err_acc *err)
{
    if (d.kind == MQ_QK_INT8)
        return quantize_values_once(&cb->base, src, dt, n, scale, zp, d.code_xor, q, err);
    return values_k_once(cb, src, dt, n, d.kind, scale, zp, q, err);
}
