/* Rows that fit a buffer, every kind: the fused kernel (statistics,
 * parameters, codes, int4 packing and with err the weight error, one launch
 * per chunk of whole rows), in place in zero-copy staging memory where the
 * device shares it, or overlapped with its transfers on three queues
 * (cl_pipeline.c). */
#include "cl_qparts.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows of an overlapped call: at most `rpc` (what one buffer holds), whole
 * rows of about the backend's overlap chunk. */
static size_t overlap_rows(const mq_cl_backend *cb, size_t rpc, size_t row_bytes)
{
    size_t n = cb->overlap_chunk / row_bytes;
    if (n == 0) n = 1;
    return n < rpc ? n : rpc;
}

/* The fused kernel `k` of any kind over chunks of whole rows: arguments 4 and
 * 5 (the scheme's: symmetric and code_xor for int8, kind and symmetric for
 * int4/fp8) differ, the rest are the same. `rb` bytes of codes per row; `zp`
 * NULL when there are no zero points to keep. */
static mq_status rows_fused(mq_cl_backend *cb, cl_kernel k, bool k_err, mq_cl_arg a4, mq_cl_arg a5,
                            const uint8_t *src, mq_dtype dt, size_t rows, size_t cols, size_t rb,
                            size_t es, uint8_t *q, uint8_t *scale, int8_t *zp, size_t *bad_row,
                            mq_err_acc *err)
{
    /* es: bytes of one scale (one e8m0 byte for the MX kinds) */
    size_t row_bytes = cols * mq_dtype_size(dt);
    /* The per-row buffers (scales, or 16 bytes of error sums) stay within
     * the limit too, which matters for very short rows. */
    size_t max_rows = cb->limit / (k_err ? 4 * sizeof(float) : es);
    size_t rpc = cb->limit / row_bytes;
    if (rpc > max_rows) rpc = max_rows;
    if (rpc > rows) rpc = rows;
    /* Input and codes in zero-copy staging memory: the kernel reads and
     * writes them in place, all rows in one launch. */
    cl_mem in_st = rows <= max_rows ? mq_cl_stage_take(cb, src, rows * row_bytes) : NULL;
    if (in_st) rpc = rows;
    cl_mem q_st = rpc == rows ? mq_cl_stage_take(cb, q, rows * rb) : NULL;
    /* The scales and zero points may lie in the block that holds q (the
     * pipeline's output buffers do), which the host may not write while the
     * device has it: they are read into host memory and copied after. */
    uint8_t *scale_out = scale;
    int8_t *zp_out = zp;
    size_t tpr = mq_cl_threads_per_row(cb, cols);
    size_t rows_per_group = cb->wg / tpr;
    cl_uint tpr_arg = (cl_uint)tpr;
    if (cb->overlap && !in_st && !q_st) {
        mq_cl_rows_job j = {.k = k,
                            .a4 = a4,
                            .a5 = a5,
                            .tpr = tpr,
                            .rows = rows,
                            .cols = cols,
                            .rpc = overlap_rows(cb, rpc, row_bytes),
                            .in_row = row_bytes,
                            .q_row = rb,
                            .scale_row = es,
                            .src = src,
                            .q = q,
                            .scale = scale,
                            .zp = zp};
        return mq_cl_rows_overlapped(cb, &j, bad_row, err);
    }
    mq_cl_qbufs w = {.in = in_st, .q = q_st};
    mq_status st = MQ_OK;
    if ((!in_st && (st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, rpc * row_bytes, &w.in)) != MQ_OK) ||
        (!q_st && (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, rpc * rb, &w.q)) != MQ_OK) ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, rpc * es, &w.scale)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ZP, rpc, &w.zp)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, rpc, &w.bad)) != MQ_OK ||
        (err && (st = mq_cl_err_buffers(cb, &w, rpc)) != MQ_OK))
        goto done;
    if (!(w.hbad = malloc(rpc)) || (q_st && !(w.hscale = malloc(rows * (es + 1))))) {
        st = mq_cl_qnomem();
        goto done;
    }
    if (q_st) {
        scale = w.hscale;
        zp = zp ? (int8_t *)w.hscale + rows * es : NULL;
    }
    for (size_t r0 = 0; r0 < rows; r0 += rpc) {
        size_t n = rows - r0 < rpc ? rows - r0 : rpc;
        cl_ulong n_arg = n, cols_arg = cols;
        mq_cl_arg args[] = {MQ_CL_ARG(w.in),
                            MQ_CL_ARG(n_arg),
                            MQ_CL_ARG(cols_arg),
                            MQ_CL_ARG(tpr_arg),
                            a4,
                            a5,
                            MQ_CL_ARG(w.q),
                            MQ_CL_ARG(w.scale),
                            MQ_CL_ARG(w.zp),
                            MQ_CL_ARG(w.bad),
                            MQ_CL_ARG(w.esum),
                            MQ_CL_ARG(w.ecl)};
        size_t groups = (n + rows_per_group - 1) / rows_per_group;
        if ((!in_st &&
             (st = mq_cl_write(cb, w.in, n * row_bytes, src + r0 * row_bytes)) != MQ_OK) ||
            (st = mq_cl_launch(cb, k, args, k_err ? 12 : 10, groups * cb->wg, NULL)) != MQ_OK ||
            (!q_st && (st = mq_cl_read(cb, w.q, n * rb, q + r0 * rb)) != MQ_OK) ||
            (st = mq_cl_read(cb, w.scale, n * es, scale + r0 * es)) != MQ_OK ||
            (zp && (st = mq_cl_read(cb, w.zp, n, zp + r0)) != MQ_OK) ||
            (st = mq_cl_read(cb, w.bad, n, w.hbad)) != MQ_OK ||
            (err && (st = mq_cl_read_err(cb, &w, n)) != MQ_OK) || (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        for (size_t i = 0; i < n; i++) {
            if (w.hbad[i]) {
                *bad_row = r0 + i;
                st = MQ_STATUS_E_DATA;
                goto done;
            }
        }
        if (err) mq_cl_qbufs_fold(err, &w, n);
    }
done:
    mq_cl_qbufs_free(cb, &w); /* waits for the queue */
    mq_status gi = mq_cl_stage_give(cb, in_st), gq = mq_cl_stage_give(cb, q_st);
    if (st == MQ_OK) st = gi != MQ_OK ? gi : gq;
    if (st == MQ_OK && q_st) {
        memcpy(scale_out, w.hscale, rows * es);
        if (zp_out) memcpy(zp_out, w.hscale + rows * es, rows);
    }
    free(w.hscale);
    return st;
}

/* The fused kernel of kind d: int8's own (its codes relabelled in place) or
 * the one of every other kind, with the scheme arguments of
 * mq_cl_kind_args. */
mq_status mq_cl_rows_fused(mq_cl_backend *cb, mq_qdesc d, const uint8_t *src, mq_dtype dt,
                           size_t rows, size_t cols, uint8_t *q, uint8_t *scale, int8_t *zp,
                           size_t *bad_row, mq_err_acc *err)
{
    bool want_zp = mq_qdesc_has_zp(d);
    mq_cl_kind_args ka;
    mq_cl_kind_args_init(&ka, d);
    cl_kernel k = d.kind == MQ_QK_INT8 ? (err ? cb->fused_err[dt] : cb->fused[dt])
                                       : (err ? cb->rows_k_err[dt] : cb->rows_k[dt]);
    return rows_fused(cb, k, err != NULL, ka.a4, ka.a5, src, dt, rows, cols,
                      mq_qkind_row_bytes(d.kind, cols), mq_qkind_scale_size(d.kind, dt), q, scale,
                      want_zp ? zp : NULL, bad_row, err);
}
