/* The one out-of-memory retry of the OpenCL back end: an operation that ran
 * out of device memory runs again with buffers half as large. It sits above
 * the buffers (cl_buffers.c) and the overlapped pipeline (cl_pipeline.c),
 * whose kept buffers it releases, and below the operations that use it. */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

/* Halves the buffers for another attempt, if that stays above the floor. */
static bool smaller_buffers(mq_cl_backend *cb, size_t total, size_t row_bytes)
{
    size_t floor = row_bytes && row_bytes < MQ_CL_OOM_PIECE ? row_bytes : MQ_CL_OOM_PIECE;
    /* Buffers never held more than the data: halve from there. */
    size_t used = total < cb->limit ? total : cb->limit;
    if (used / 2 < floor) {
        if (row_bytes && row_bytes <= used)
            mq_error_prefix("out of device memory with buffers of %zu bytes (one row of %zu bytes)",
                            used, row_bytes);
        else
            mq_error_prefix("out of device memory with buffers of %zu bytes", used);
        return false;
    }
    /* Nothing may still use the buffers, and a failed command may have left
     * work in the queue. */
    clFinish(cb->queue);
    mq_cl_pipeline_release(cb);
    for (int i = 0; i < MQ_CL_SLOT_COUNT; i++) {
        mq_cl_release(&cb->slots[i].mem);
        cb->slots[i].cap = 0;
    }
    cb->limit = used / 2;
    mq_clear_error(); /* handled: the caller tries again */
    return true;
}

mq_status mq_cl_retry(mq_cl_backend *cb, mq_cl_attempt attempt, const void *job, size_t total,
                      size_t row_bytes, mq_err_acc *err, cl_int *retried_on)
{
    mq_status st;
    mq_err_acc part;
    if (retried_on) *retried_on = CL_SUCCESS;
    for (;;) {
        cb->fail_code = CL_SUCCESS;
        mq_err_acc_init(&part);
        st = attempt(cb, job, err ? &part : NULL);
        cl_int code = cb->fail_code;
        if (st != MQ_STATUS_E_DEVICE || !mq_cl_is_oom(code)) break;
        if (!smaller_buffers(cb, total, row_bytes)) break;
        if (retried_on) *retried_on = code;
    }
    if (st == MQ_OK && err) mq_err_acc_add(err, &part);
    return st;
}
