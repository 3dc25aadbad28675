/* Buffers, transfers and launches on the OpenCL backend's queue: the helpers
 * every operation of host/ uses (declared in cl_state.h). */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mq_status mq_cl_buffer(mq_cl_backend *cb, cl_mem_flags flags, size_t bytes, cl_mem *out)
{
    cl_int err;
    *out = clCreateBuffer(cb->ctx, flags, bytes ? bytes : 1, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return mq_cl_fail(err, "clCreateBuffer");
    }
    return MQ_OK;
}

mq_status mq_cl_slot_get(mq_cl_backend *cb, int slot, size_t bytes, cl_mem *out)
{
    mq_cl_slot *s = &cb->slots[slot];
    if (!s->mem || s->cap < bytes) {
        mq_cl_release(&s->mem);
        s->cap = 0;
        mq_status st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, bytes, &s->mem);
        if (st != MQ_OK) return st;
        s->cap = bytes;
    }
    *out = s->mem;
    return MQ_OK;
}

mq_status mq_cl_write(mq_cl_backend *cb, cl_mem buf, size_t bytes, const void *src)
{
    if (bytes == 0) return MQ_OK;
    cl_int err = clEnqueueWriteBuffer(cb->queue, buf, CL_FALSE, 0, bytes, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? MQ_OK : mq_cl_fail(err, "clEnqueueWriteBuffer");
}

mq_status mq_cl_read(mq_cl_backend *cb, cl_mem buf, size_t bytes, void *dst)
{
    if (bytes == 0) return MQ_OK;
    cl_int err = clEnqueueReadBuffer(cb->queue, buf, CL_FALSE, 0, bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? MQ_OK : mq_cl_fail(err, "clEnqueueReadBuffer");
}

mq_status mq_cl_check_rows(const char *what, size_t rows, size_t cols, size_t es)
{
    if (cols != 0 && (rows > SIZE_MAX / cols || rows * cols > SIZE_MAX / es))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL %s: %zu x %zu is too large", what,
                            rows, cols);
    return MQ_OK;
}

mq_status mq_cl_finish(mq_cl_backend *cb)
{
    cl_int err = clFinish(cb->queue);
    return err == CL_SUCCESS ? MQ_OK : mq_cl_fail(err, "clFinish");
}

mq_status mq_cl_launch_on(mq_cl_backend *cb, cl_command_queue q, cl_kernel k, const mq_cl_arg *args,
                          size_t nargs, size_t items, cl_uint nwait, const cl_event *wait,
                          cl_event *ev)
{
    char name[64] = "kernel", call[128];
    cl_int err = CL_SUCCESS;
    for (size_t i = 0; i < nargs && err == CL_SUCCESS; i++)
        err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].ptr);
    const char *what = "clSetKernelArg";
    if (err == CL_SUCCESS) {
        size_t global = (items + cb->wg - 1) / cb->wg * cb->wg;
        if (global == 0) global = cb->wg;
        err = clEnqueueNDRangeKernel(q, k, 1, NULL, &global, &cb->wg, nwait, wait, ev);
        what = "clEnqueueNDRangeKernel";
    }
    if (err == CL_SUCCESS) return MQ_OK;
    if (clGetKernelInfo(k, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL) != CL_SUCCESS)
        snprintf(name, sizeof name, "kernel");
    name[sizeof name - 1] = '\0';
    snprintf(call, sizeof call, "%s(%s)", what, name);
    return mq_cl_fail(err, call);
}

mq_status mq_cl_launch(mq_cl_backend *cb, cl_kernel k, const mq_cl_arg *args, size_t nargs,
                       size_t items, cl_event *ev)
{
    return mq_cl_launch_on(cb, cb->queue, k, args, nargs, items, 0, NULL, ev);
}

void mq_cl_release(cl_mem *m)
{
    if (*m) clReleaseMemObject(*m);
    *m = NULL;
}

bool mq_cl_retry_smaller(mq_cl_backend *cb, mq_status st, size_t total, size_t row_bytes)
{
    if (st != MQ_STATUS_E_DEVICE || !mq_cl_is_oom(mq_cl_last_code())) return false;
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
    mq_cl_clear_code();
    mq_clear_error(); /* handled: the caller tries again */
    return true;
}

size_t mq_cl_threads_per_row(const mq_cl_backend *cb, size_t cols)
{
    size_t want = (cols + cb->per_item - 1) / cb->per_item, tpr = 1;
    while (tpr < want && tpr < cb->wg)
        tpr *= 2;
    return tpr;
}
