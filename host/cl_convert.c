/* cast_f16 and dequantize_rows on an OpenCL device, in chunks that fit one
 * buffer (whole rows where they fit, else pieces of a row). */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <stdlib.h>

/* Elements per cast launch, so that one launch's 32-bit overflow count cannot wrap. */
#define MQ_CL_CAST_MAX ((size_t)1 << 31)

static mq_status cast_f16_once(mq_backend *b, const void *src, mq_dtype dt, size_t n, bool saturate,
                               uint16_t *dst, uint64_t *overflow)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    *overflow = 0;
    if (dt != MQ_DTYPE_F32 && dt != MQ_DTYPE_F16 && dt != MQ_DTYPE_BF16 && dt != MQ_DTYPE_F64)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL cast: dtype %s cannot become F16",
                            mq_dtype_name(dt) ? mq_dtype_name(dt) : "?");
    if (n == 0) return MQ_OK;
    size_t es = mq_dtype_size(dt);
    if (n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL cast: %zu values is too many", n);
    if (dt == MQ_DTYPE_F16) { /* a copy: nothing for a device to do */
        *overflow = mq_ref_cast_f16(src, dt, n, saturate, dst);
        return MQ_OK;
    }
    size_t chunk = cb->limit / es;
    if (chunk > MQ_CL_CAST_MAX) chunk = MQ_CL_CAST_MAX;
    if (chunk >= 8) chunk -= chunk % 8;
    if (chunk > n) chunk = n;
    if (chunk == 0)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "OpenCL: buffer limit of %zu bytes is too small", cb->limit);
    /* Zero-copy staging memory: the kernel reads and writes in place, in one
     * launch when the count cannot wrap. */
    cl_mem in_st = n <= MQ_CL_CAST_MAX ? mq_cl_stage_take(cb, src, n * es) : NULL;
    if (in_st) chunk = n;
    cl_mem out_st = chunk == n ? mq_cl_stage_take(cb, dst, n * 2) : NULL;
    cl_mem in = in_st, out = out_st, count = NULL;
    cl_int sat = saturate ? 1 : 0;
    mq_status st = MQ_OK;
    if ((!in_st && (st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, chunk * es, &in)) != MQ_OK) ||
        (!out_st && (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, chunk * 2, &out)) != MQ_OK) ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, sizeof(cl_uint), &count)) != MQ_OK)
        goto done;
    const uint8_t *s = src;
    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        size_t m = n - i0 < chunk ? n - i0 : chunk;
        cl_ulong m_arg = m;
        cl_uint zero = 0, got = 0;
        mq_cl_arg args[] = {MQ_CL_ARG(in), MQ_CL_ARG(m_arg), MQ_CL_ARG(sat), MQ_CL_ARG(out),
                            MQ_CL_ARG(count)};
        if ((!in_st && (st = mq_cl_write(cb, in, m * es, s + i0 * es)) != MQ_OK) ||
            (st = mq_cl_write(cb, count, sizeof zero, &zero)) != MQ_OK ||
            (st = mq_cl_launch(cb, cb->cast[dt], args, 5, (m + 7) / 8, NULL)) != MQ_OK ||
            (!out_st && (st = mq_cl_read(cb, out, m * 2, dst + i0)) != MQ_OK) ||
            (st = mq_cl_read(cb, count, sizeof got, &got)) != MQ_OK ||
            (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        *overflow += got;
    }
done:
    clFinish(cb->queue); /* no transfer may still target the caller's memory */
    mq_status gi = mq_cl_stage_give(cb, in_st), go = mq_cl_stage_give(cb, out_st);
    if (st == MQ_OK) st = gi != MQ_OK ? gi : go;
    return st;
}

static mq_status dequantize_rows_once(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                      const void *scale, const int8_t *zp, mq_dtype dt, void *dst)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    if (dt != MQ_DTYPE_F32 && dt != MQ_DTYPE_F16 && dt != MQ_DTYPE_BF16)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "OpenCL dequantize: scale dtype %s is not F32/F16/BF16",
                            mq_dtype_name(dt) ? mq_dtype_name(dt) : "?");
    size_t es = mq_dtype_size(dt);
    mq_status st0 = mq_cl_check_rows("dequantize", rows, cols, es);
    if (st0 != MQ_OK) return st0;
    if (rows == 0 || cols == 0) return MQ_OK;
    /* Whole rows per chunk where a row's output fits a buffer, else pieces of one row. */
    size_t row_out = cols * es;
    bool whole = row_out <= cb->limit;
    size_t rpc = whole ? cb->limit / row_out : 1;
    if (rpc > rows) rpc = rows;
    size_t piece = whole ? cols : cb->limit / es;
    if (!whole && piece >= 8) piece -= piece % 8;
    if (piece == 0)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "OpenCL: buffer limit of %zu bytes is too small", cb->limit);
    size_t elems = whole ? rpc * cols : piece;
    cl_mem bq = NULL, bs = NULL, bz = NULL, bo = NULL;
    cl_int has_zp = zp ? 1 : 0;
    const uint8_t *sc = scale;
    uint8_t *out = dst;
    mq_status st;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, elems, &bq)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, rpc * es, &bs)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ZP, rpc, &bz)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, elems * es, &bo)) != MQ_OK)
        goto done;
    for (size_t r0 = 0; r0 < rows; r0 += rpc) {
        size_t nr = rows - r0 < rpc ? rows - r0 : rpc;
        if ((st = mq_cl_write(cb, bs, nr * es, sc + r0 * es)) != MQ_OK ||
            (zp && (st = mq_cl_write(cb, bz, nr, zp + r0)) != MQ_OK))
            goto done;
        for (size_t c0 = 0; c0 < cols; c0 += piece) {
            size_t m = whole ? nr * cols : (cols - c0 < piece ? cols - c0 : piece);
            size_t at = r0 * cols + c0;
            cl_ulong m_arg = m, cols_arg = cols, col0_arg = whole ? 0 : c0;
            mq_cl_arg args[] = {MQ_CL_ARG(bq),       MQ_CL_ARG(m_arg), MQ_CL_ARG(cols_arg),
                                MQ_CL_ARG(col0_arg), MQ_CL_ARG(bs),    MQ_CL_ARG(bz),
                                MQ_CL_ARG(has_zp),   MQ_CL_ARG(bo)};
            if ((st = mq_cl_write(cb, bq, m, q + at)) != MQ_OK ||
                (st = mq_cl_launch(cb, cb->dequant[dt], args, 8, (m + 7) / 8, NULL)) != MQ_OK ||
                (st = mq_cl_read(cb, bo, m * es, out + at * es)) != MQ_OK ||
                (st = mq_cl_finish(cb)) != MQ_OK)
                goto done;
        }
    }
done:
    clFinish(cb->queue);
    return st;
}

typedef struct {
    const void *src;
    mq_dtype dt;
    size_t n;
    bool saturate;
    uint16_t *dst;
    uint64_t *overflow;
} cast_job;

static mq_status attempt_cast(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const cast_job *j = job;
    (void)err;
    return cast_f16_once(&cb->base, j->src, j->dt, j->n, j->saturate, j->dst, j->overflow);
}

typedef struct {
    const int8_t *q;
    size_t rows, cols;
    const void *scale;
    const int8_t *zp;
    mq_dtype dt;
    void *dst;
} dequant_job;

static mq_status attempt_dequantize(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const dequant_job *j = job;
    (void)err;
    return dequantize_rows_once(&cb->base, j->q, j->rows, j->cols, j->scale, j->zp, j->dt, j->dst);
}

/* A device out of memory gets the same work again in smaller chunks. */
mq_status mq_cl_cast_f16(mq_backend *b, const void *src, mq_dtype dt, size_t n, bool saturate,
                         uint16_t *dst, uint64_t *overflow)
{
    cast_job j = {src, dt, n, saturate, dst, overflow};
    return mq_cl_retry((mq_cl_backend *)b, attempt_cast, &j, n * mq_dtype_size(dt), 0, NULL, NULL);
}

mq_status mq_cl_dequantize_rows(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                const void *scale, const int8_t *zp, mq_dtype dt, void *dst)
{
    dequant_job j = {q, rows, cols, scale, zp, dt, dst};
    return mq_cl_retry((mq_cl_backend *)b, attempt_dequantize, &j, rows * cols * mq_dtype_size(dt),
                       cols * mq_dtype_size(dt), NULL, NULL);
}
