/* quantize_source on an OpenCL device: a band of a quantized source's codes
 * and its scale rows uploaded, dequantized by source.cl into the buffer the
 * fused rows kernel reads, quantized there, our codes and scales read back;
 * the float values never cross to the host. Calls the fused kernel cannot
 * take (2-D blocks, rows longer than it holds) take the two steps through
 * the host buffer the caller lends. */
#include "cl_qparts.h"

#include "error.h"
#include "reference.h"

#include <stdlib.h>

typedef struct {
    mq_qdesc d;
    mq_srcdesc sd;
    const uint8_t *codes;
    uint64_t e0;
    size_t src_cols;
    const uint8_t *scale;
    size_t rows, cols;
    uint8_t *q, *qscale;
    int8_t *zp;
    size_t *bad;
} qsource_job;

/* Rows of one launch: what the value, code and scale buffers hold, and no
 * more block rows of source scales than one buffer holds. 0: none fit. */
static size_t rows_per_chunk(const mq_cl_backend *cb, const qsource_job *j, bool with_err)
{
    size_t row_bytes = j->cols * mq_dtype_size(j->sd.dt);
    size_t es = mq_qkind_scale_size(j->d.kind, j->sd.dt);
    size_t srow = (j->src_cols + j->sd.block_c - 1) / j->sd.block_c * mq_dtype_size(j->sd.scale_dt);
    size_t rpc = cb->limit / row_bytes, max_rows = cb->limit / (with_err ? 4 * sizeof(float) : es);
    if (rpc > max_rows) rpc = max_rows;
    /* n rows of cols values span at most n * cols / (src_cols * br) + 2 block rows */
    size_t brows = cb->limit / srow;
    if (brows < 3) return 0;
    uint64_t fit = (uint64_t)(brows - 2) * j->sd.block_r * j->src_cols / j->cols;
    if (fit < rpc) rpc = (size_t)fit;
    return rpc < j->rows ? rpc : j->rows;
}

static bool fusable(const mq_cl_backend *cb, const qsource_job *j, bool with_err)
{
    return !j->d.block && j->cols < MQ_CL_SPLIT_COLS && rows_per_chunk(cb, j, with_err) > 0;
}

static mq_status fused_once(mq_cl_backend *cb, const qsource_job *j, mq_err_acc *err)
{
    mq_dtype dt = j->sd.dt;
    size_t cols = j->cols, row_bytes = cols * mq_dtype_size(dt);
    size_t rb = mq_qkind_row_bytes(j->d.kind, cols), es = mq_qkind_scale_size(j->d.kind, dt);
    size_t srow = (j->src_cols + j->sd.block_c - 1) / j->sd.block_c * mq_dtype_size(j->sd.scale_dt);
    size_t rpc = rows_per_chunk(cb, j, err != NULL);
    size_t tpr = mq_cl_threads_per_row(cb, cols), rows_per_group = cb->wg / tpr;
    cl_uint tpr_arg = (cl_uint)tpr;
    uint64_t s_first, s_end, p0, p1;
    mq_srcdesc_scale_rows(j->sd, j->e0, j->rows * cols, j->src_cols, &s_first, &s_end);
    /* The most block rows of scales one chunk spans. */
    uint64_t scale_rows = (uint64_t)rpc * cols / j->src_cols / j->sd.block_r + 2;
    if (scale_rows > s_end - s_first) scale_rows = s_end - s_first;
    mq_cl_kind_args ka;
    mq_cl_kind_args_init(&ka, j->d);
    cl_kernel k = j->d.kind == MQ_QK_INT8 ? (err ? cb->fused_err[dt] : cb->fused[dt])
                                          : (err ? cb->rows_k_err[dt] : cb->rows_k[dt]);
    int8_t *zp = mq_qdesc_has_zp(j->d) ? j->zp : NULL;
    mq_cl_qbufs w = {0};
    cl_mem bc = NULL, bs = NULL;
    mq_status st = MQ_OK;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_SRC, rpc * cols, &bc)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SRCSC, scale_rows * srow, &bs)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, rpc * row_bytes, &w.in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, rpc * rb, &w.q)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, rpc * es, &w.scale)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ZP, rpc, &w.zp)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, rpc, &w.bad)) != MQ_OK ||
        (err && (st = mq_cl_err_buffers(cb, &w, rpc)) != MQ_OK))
        goto done;
    if (!(w.hbad = malloc(rpc))) {
        st = mq_cl_qnomem();
        goto done;
    }
    for (size_t r0 = 0; r0 < j->rows; r0 += rpc) {
        size_t n = j->rows - r0 < rpc ? j->rows - r0 : rpc;
        uint64_t e = j->e0 + (uint64_t)r0 * cols;
        mq_srcdesc_scale_rows(j->sd, e, n * cols, j->src_cols, &p0, &p1);
        cl_ulong n_arg = n, cols_arg = cols;
        mq_cl_arg args[] = {MQ_CL_ARG(w.in),
                            MQ_CL_ARG(n_arg),
                            MQ_CL_ARG(cols_arg),
                            MQ_CL_ARG(tpr_arg),
                            ka.a4,
                            ka.a5,
                            MQ_CL_ARG(w.q),
                            MQ_CL_ARG(w.scale),
                            MQ_CL_ARG(w.zp),
                            MQ_CL_ARG(w.bad),
                            MQ_CL_ARG(w.esum),
                            MQ_CL_ARG(w.ecl)};
        size_t groups = (n + rows_per_group - 1) / rows_per_group;
        if ((st = mq_cl_write(cb, bc, n * cols, j->codes + (size_t)r0 * cols)) != MQ_OK ||
            (st = mq_cl_write(cb, bs, (size_t)(p1 - p0) * srow,
                              j->scale + (size_t)(p0 - s_first) * srow)) != MQ_OK ||
            (st = mq_cl_source_launch(cb, j->sd, bc, e, n * cols, j->src_cols, bs, p0, w.in)) !=
                MQ_OK ||
            (st = mq_cl_launch(cb, k, args, err ? 12 : 10, groups * cb->wg, NULL)) != MQ_OK ||
            (st = mq_cl_read(cb, w.q, n * rb, j->q + r0 * rb)) != MQ_OK ||
            (st = mq_cl_read(cb, w.scale, n * es, j->qscale + r0 * es)) != MQ_OK ||
            (zp && (st = mq_cl_read(cb, w.zp, n, zp + r0)) != MQ_OK) ||
            (st = mq_cl_read(cb, w.bad, n, w.hbad)) != MQ_OK ||
            (err && (st = mq_cl_read_err(cb, &w, n)) != MQ_OK) || (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        for (size_t i = 0; i < n; i++) {
            if (w.hbad[i]) {
                *j->bad = r0 + i;
                st = MQ_STATUS_E_DATA;
                goto done;
            }
        }
        if (err) mq_cl_qbufs_fold(err, &w, n);
    }
done:
    mq_cl_qbufs_free(cb, &w); /* waits for the queue */
    return st;
}

static mq_status attempt_fused(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const qsource_job *j = job;
    if (!fusable(cb, j, err != NULL)) /* buffers halved by a retry below what it needs */
        return mq_set_error(MQ_STATUS_E_DEVICE,
                            "OpenCL quantize_source: buffers of %zu bytes hold no band", cb->limit);
    return fused_once(cb, j, err);
}

mq_status mq_cl_quantize_source(mq_backend *b, mq_qdesc d, mq_srcdesc sd, const void *codes,
                                uint64_t e0, size_t src_cols, const void *scale, size_t rows,
                                size_t cols, void *q, void *qscale, int8_t *zp, size_t *bad,
                                mq_err_acc *err, void *scratch)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    size_t ignored_bad;
    mq_status st = mq_cl_check_source(sd, src_cols);
    if (st == MQ_OK) st = mq_cl_check_rows("quantize", rows, cols, mq_dtype_size(sd.dt));
    if (st != MQ_OK || rows == 0) return st;
    if (!bad) bad = &ignored_bad;
    qsource_job j = {d, sd, codes, e0, src_cols, scale, rows, cols, q, qscale, zp, bad};
    if (!fusable(cb, &j, err != NULL)) {
        st = mq_cl_dequantize_source(b, sd, codes, e0, rows * cols, src_cols, scale, scratch);
        if (st == MQ_OK)
            st = mq_cl_quantize(b, d, scratch, sd.dt, rows, cols, q, qscale, zp, bad, err);
        return st;
    }
    return mq_cl_retry(cb, attempt_fused, &j, rows * cols * mq_dtype_size(sd.dt),
                       cols * mq_dtype_size(sd.dt), err, NULL);
}
