/* dequantize_source on an OpenCL device: a source's codes and the scale rows
 * they need uploaded, dequantized by source.cl, the values read back, in
 * chunks that fit one buffer. */
#include "cl_state.h"

#include "error.h"

mq_status mq_cl_check_source(mq_srcdesc d, size_t cols)
{
    if (d.kind != MQ_SRC_FP8_BLOCK || (d.scale_dt != MQ_DTYPE_F32 && d.scale_dt != MQ_DTYPE_BF16) ||
        (d.dt != MQ_DTYPE_F32 && d.dt != MQ_DTYPE_F16 && d.dt != MQ_DTYPE_BF16) || !d.block_r ||
        !d.block_c || !cols)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "OpenCL: a source must be FP8 blocks with F32/BF16 scales, read as "
                            "F32/F16/BF16 values");
    return MQ_OK;
}

mq_status mq_cl_source_launch(mq_cl_backend *cb, mq_srcdesc d, cl_mem codes, uint64_t e0, size_t n,
                              size_t cols, cl_mem scale, uint64_t first_srow, cl_mem out)
{
    cl_int sdt = (cl_int)d.scale_dt, dt = (cl_int)d.dt;
    cl_ulong e_a = e0, n_a = n, cols_a = cols, br_a = d.block_r, bc_a = d.block_c;
    cl_ulong scols_a = (cols + d.block_c - 1) / d.block_c, first_a = first_srow;
    mq_cl_arg args[] = {MQ_CL_ARG(codes), MQ_CL_ARG(e_a),  MQ_CL_ARG(n_a),     MQ_CL_ARG(cols_a),
                        MQ_CL_ARG(br_a),  MQ_CL_ARG(bc_a), MQ_CL_ARG(scols_a), MQ_CL_ARG(first_a),
                        MQ_CL_ARG(scale), MQ_CL_ARG(sdt),  MQ_CL_ARG(dt),      MQ_CL_ARG(out)};
    return mq_cl_launch(cb, cb->source_fp8, args, 12, (n + 7) / 8, NULL);
}

static mq_status source_once(mq_cl_backend *cb, mq_srcdesc d, const uint8_t *codes, uint64_t e0,
                             size_t n, size_t cols, const uint8_t *scale, void *dst)
{
    mq_status st = mq_cl_check_source(d, cols);
    if (st != MQ_OK) return st;
    size_t es = mq_dtype_size(d.dt), ses = mq_dtype_size(d.scale_dt);
    size_t scols = (cols + d.block_c - 1) / d.block_c, srow = scols * ses;
    size_t chunk = cb->limit / es;
    if (chunk > n) chunk = n;
    if (chunk == 0 || srow > cb->limit)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "OpenCL: buffer limit of %zu bytes is too small", cb->limit);
    uint64_t s_first, s_end, p0, p1;
    mq_srcdesc_scale_rows(d, e0, n, cols, &s_first, &s_end);
    /* The scale buffer holds the grid rows of brows block rows; a chunk that
     * would span more is cut at the last one it holds. */
    size_t brows = cb->limit / srow;
    if (brows > s_end - s_first) brows = (size_t)(s_end - s_first);
    cl_mem bq = NULL, bs = NULL, bo = NULL;
    uint8_t *out = dst;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, chunk, &bq)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, brows * srow, &bs)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, chunk * es, &bo)) != MQ_OK)
        goto done;
    for (size_t i0 = 0; i0 < n;) {
        size_t m = n - i0 < chunk ? n - i0 : chunk;
        mq_srcdesc_scale_rows(d, e0 + i0, m, cols, &p0, &p1);
        if (p1 - p0 > brows) {
            m = (size_t)((p0 + brows) * d.block_r * cols - (e0 + i0));
            p1 = p0 + brows;
        }
        if ((st = mq_cl_write(cb, bq, m, codes + i0)) != MQ_OK ||
            (st = mq_cl_write(cb, bs, (size_t)(p1 - p0) * srow,
                              scale + (size_t)(p0 - s_first) * srow)) != MQ_OK ||
            (st = mq_cl_source_launch(cb, d, bq, e0 + i0, m, cols, bs, p0, bo)) != MQ_OK ||
            (st = mq_cl_read(cb, bo, m * es, out + i0 * es)) != MQ_OK ||
            (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        i0 += m;
    }
done:
    clFinish(cb->queue); /* no transfer may still target the caller's memory */
    return st;
}

typedef struct {
    mq_srcdesc d;
    const void *codes;
    uint64_t e0;
    size_t n, cols;
    const void *scale;
    void *dst;
} source_job;

static mq_status attempt_source(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const source_job *j = job;
    (void)err;
    return source_once(cb, j->d, j->codes, j->e0, j->n, j->cols, j->scale, j->dst);
}

/* A device out of memory gets the same work again in smaller chunks. */
mq_status mq_cl_dequantize_source(mq_backend *b, mq_srcdesc d, const void *codes, uint64_t e0,
                                  size_t n, size_t cols, const void *scale, void *dst)
{
    if (n == 0) return MQ_OK;
    source_job j = {d, codes, e0, n, cols, scale, dst};
    return mq_cl_retry((mq_cl_backend *)b, attempt_source, &j, n * mq_dtype_size(d.dt), 0, NULL,
                       NULL);
}
