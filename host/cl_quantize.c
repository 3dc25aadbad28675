/* The OpenCL back end's quantize entries (backend.h: quantize,
 * quantize_values, reduce): which path a call takes, each attempt under the
 * one out-of-memory retry (cl_retry.c). Rows that fit a buffer take the fused
 * kernel (cl_qrows.c); int8 rows too long for its work-groups the two passes
 * on the device (cl_qsplit.c); FP8 blocks the block kernel (cl_qblocks.c);
 * a row or block larger than a buffer, and the other kinds' long rows, the
 * back end's two-pass path over reduce and quantize_values
 * (mq_be_quantize_two_pass). */
#include "cl_qparts.h"

#include "cpukern.h"
#include "error.h"
#include "reference.h"

/* One quantize call, as the attempts take it. */
typedef struct {
    mq_qdesc d;
    const uint8_t *src;
    mq_dtype dt;
    size_t rows, cols;
    uint8_t *q, *scale;
    int8_t *zp;
    size_t *bad;
} quant_job;

/* One attempt: the path is chosen again each time, as an out-of-memory
 * retry may have made the buffers smaller than a row or a block. */
static mq_status attempt_quantize(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const quant_job *j = job;
    size_t es = mq_dtype_size(j->dt), bs = j->d.block;
    bool long_rows = j->cols >= MQ_CL_SPLIT_COLS;
    if (bs ? bs > cb->limit / es / bs /* a block larger than a buffer */
           : j->cols * es > cb->limit || (long_rows && j->d.kind != MQ_QK_INT8)) {
        /* The two passes pack int4 only: MX rows that long run on the host. */
        if (mq_qkind_byte_scale(j->d.kind))
            return mq_hk_quantize(j->d, j->src, j->dt, j->rows, j->cols, j->q, j->scale, j->zp,
                                  j->bad, err);
        return mq_be_quantize_two_pass(&cb->base, j->d, j->src, j->dt, j->rows, j->cols, j->q,
                                       j->scale, j->zp, j->bad, err);
    }
    if (bs)
        return mq_cl_blocks_once(cb, j->src, j->dt, j->rows, j->cols, bs, j->q, j->scale, j->bad,
                                 err);
    if (long_rows)
        return mq_cl_quantize_split(cb, j->src, j->dt, j->rows, j->cols, j->d.symmetric,
                                    (int8_t *)j->q, j->scale, j->zp, j->d.code_xor, j->bad, err);
    return mq_cl_rows_fused(cb, j->d, j->src, j->dt, j->rows, j->cols, j->q, j->scale, j->zp,
                            j->bad, err);
}

mq_status mq_cl_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t rows,
                         size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                         mq_err_acc *err)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    size_t es = mq_dtype_size(dt), ignored_bad;
    mq_status st = mq_cl_check_dtype(dt, "quantize");
    if (st == MQ_OK && d.block && (d.kind != MQ_QK_FP8 || d.block > UINT32_MAX))
        st = mq_set_error(MQ_STATUS_E_INVALID_ARG,
                          "OpenCL quantize: blocks of %zu (FP8 only, at most 2^32 - 1)", d.block);
    if (st == MQ_OK) st = mq_cl_check_rows("quantize", rows, cols, es);
    if (st != MQ_OK || rows == 0) return st;
    if (!bad) bad = &ignored_bad;
    if (cols == 0) /* nothing for a device to do: every row gets the empty-row parameters */
        return d.block ? MQ_OK : mq_ref_quantize(d, src, dt, rows, cols, q, scale, zp, bad);
    quant_job j = {d, src, dt, rows, cols, q, scale, d.symmetric ? NULL : zp, bad};
    return mq_cl_retry(cb, attempt_quantize, &j, rows * cols * es,
                       d.block ? d.block * d.block * es : cols * es, err, NULL);
}

/* ---- runs of values: the steps of the two-pass paths ---- */

typedef struct {
    mq_qdesc d;
    const void *src;
    mq_dtype dt;
    size_t n;
    float scale;
    int8_t zp;
    void *q;
    mq_ref_stats *stats;
} run_job;

static mq_status attempt_values(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const run_job *j = job;
    return mq_cl_values_once(cb, j->d, j->src, j->dt, j->n, j->scale, j->zp, j->q, err);
}

/* Folding a value twice changes no statistic (min, max, max |w|, a flag), so a
 * retry may fold what a failed attempt already folded. */
static mq_status attempt_reduce(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const run_job *j = job;
    (void)err;
    return mq_cl_reduce_once(&cb->base, j->src, j->dt, j->n, j->stats);
}

mq_status mq_cl_quantize_values(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t n,
                                float scale, int8_t zp, void *q, mq_err_acc *err)
{
    if (mq_qkind_byte_scale(d.kind)) { /* fixed MX/NVFP4 parameters (long rows): on the host */
        mq_hk_quantize_values(d, src, dt, n, scale, zp, q, err);
        return MQ_OK;
    }
    /* The zero point decides alone: a symmetric call passes 0, which subtracts nothing. */
    run_job j = {.d = d, .src = src, .dt = dt, .n = n, .scale = scale, .zp = zp, .q = q};
    return mq_cl_retry((mq_cl_backend *)b, attempt_values, &j, n * mq_dtype_size(dt), 0, err, NULL);
}

mq_status mq_cl_reduce(mq_backend *b, const void *src, mq_dtype dt, size_t n, mq_ref_stats *st)
{
    run_job j = {.src = src, .dt = dt, .n = n, .stats = st};
    return mq_cl_retry((mq_cl_backend *)b, attempt_reduce, &j, n * mq_dtype_size(dt), 0, NULL,
                       NULL);
}
