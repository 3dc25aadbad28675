/* Buffers, transfers and launches on the OpenCL backend's queue: the helpers
 * every operation of host/ uses (declared in cl_state.h). */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mq_status mq_cl_buffer(mq_cl_backend *cb, cl_mem_flags flags, size_t bytes, cl_mem *out)
{
    cl_int err;
    *out = clCreateBuffer(cb->ctx, flags, bytes ? bytes : 1, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return mq_cl_failed(cb, err, "clCreateBuffer");
    }
    return MQ_OK;
}

mq_status mq_cl_slot_get(mq_cl_backend *cb, int slot, size_t bytes, cl_mem *out)
{
    return mq_cl_slot_grow(cb, &cb->slots[slot], bytes, out);
}

mq_status mq_cl_slot_grow(mq_cl_backend *cb, mq_cl_slot *s, size_t bytes, cl_mem *out)
{
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
    return err == CL_SUCCESS ? MQ_OK : mq_cl_failed(cb, err, "clEnqueueWriteBuffer");
}

mq_status mq_cl_read(mq_cl_backend *cb, cl_mem buf, size_t bytes, void *dst)
{
    if (bytes == 0) return MQ_OK;
    cl_int err = clEnqueueReadBuffer(cb->queue, buf, CL_FALSE, 0, bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? MQ_OK : mq_cl_failed(cb, err, "clEnqueueReadBuffer");
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
    return err == CL_SUCCESS ? MQ_OK : mq_cl_failed(cb, err, "clFinish");
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
    return mq_cl_failed(cb, err, call);
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

mq_status mq_cl_failed(mq_cl_backend *cb, cl_int err, const char *call)
{
    cb->fail_code = err;
    return mq_cl_fail(err, call);
}

void mq_cl_fold_err(mq_err_acc *acc, const float *es, const cl_uint *ecl, size_t parts)
{
    for (size_t i = 0; i < parts; i++) {
        const float *e = es + 4 * i;
        double unit = ldexp(1.0, 2 * (int)e[3]);
        acc->sig += (double)e[0] * unit;
        acc->err2 += (double)e[1] * unit;
        if ((double)e[2] > acc->max_abs) acc->max_abs = (double)e[2];
        acc->clamped += ecl[i];
    }
}

size_t mq_cl_threads_per_row(const mq_cl_backend *cb, size_t cols)
{
    size_t want = (cols + cb->per_item - 1) / cb->per_item, tpr = 1;
    while (tpr < want && tpr < cb->wg)
        tpr *= 2;
    return tpr;
}
