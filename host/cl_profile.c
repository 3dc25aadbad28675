/* Kernel timing for the benchmark: the fused quantize kernels (int8, int4,
 * float8 rows and blocks), each with its variant with the weight error
 * statistics, and a buffer copy of the same traffic, timed with OpenCL profiling
 * events (clpeak's way: untimed warm-up, then medians). Lives in host/ so bench/ needs no OpenCL
 * header. */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"
#include "timing.h"

#include <stdlib.h>
#include <string.h>

/* Seconds between the start and end of a finished command. */
static mq_status event_seconds(cl_event ev, double *s)
{
    cl_ulong t0 = 0, t1 = 0;
    cl_int err = clWaitForEvents(1, &ev);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(ev);
    if (err != CL_SUCCESS) return mq_cl_fail(err, "clGetEventProfilingInfo");
    *s = (double)(t1 - t0) * 1e-9;
    return MQ_OK;
}

mq_status mq_cl_profile_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                 size_t rows, size_t cols, int iters, mq_cl_profile *out)
{
    const mq_qkind kind = d.kind;
    const bool symmetric = !mq_qdesc_has_zp(d), int8 = kind == MQ_QK_INT8;
    const size_t bs = d.block;
    mq_cl_backend *cb = (mq_cl_backend *)b;
    mq_status st = MQ_OK;
    cl_mem in = NULL, q = NULL, scale = NULL, zp = NULL, bad = NULL, c0 = NULL, c1 = NULL;
    cl_mem esum = NULL, ecl = NULL;
    double *kt = NULL, *et = NULL, *ct = NULL;
    memset(out, 0, sizeof *out);
    size_t es = mq_dtype_size(dt);
    bool blocks = bs > 0;
    if ((dt != MQ_DTYPE_F32 && dt != MQ_DTYPE_F16 && dt != MQ_DTYPE_BF16) || rows == 0 ||
        cols == 0 || cols >= MQ_CL_SPLIT_COLS || iters < 1 || (blocks && kind != MQ_QK_FP8) ||
        (blocks ? bs > UINT32_MAX || cols * es > cb->limit / bs : cols * es > cb->limit))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "profile: unsupported shape, kind or dtype");
    cl_command_queue_properties qp = 0;
    clGetCommandQueueInfo(cb->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
    if (!(qp & CL_QUEUE_PROFILING_ENABLE))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "profile: backend opened without profiling");

    /* A chunk: whole rows, or whole bands of bs rows. */
    size_t unit = blocks ? bs : 1, row_bytes = cols * es, rb = mq_qkind_row_bytes(kind, cols);
    size_t rpc = cb->limit / (row_bytes * unit) * unit;
    if (rpc > rows) rpc = rows;
    size_t nbc = blocks ? (cols + bs - 1) / bs : 0;
    size_t groups_max = blocks ? (rpc + bs - 1) / bs * nbc : rpc; /* scales per chunk */
    size_t chunks = (rows + rpc - 1) / rpc;
    size_t tpr = mq_cl_threads_per_row(cb, cols);
    cl_uint tpr_a = (cl_uint)tpr, bs_a = (cl_uint)bs;
    /* The fused kernel's two scheme arguments, as cl_qrows.c passes them
     * (codes as they are). */
    mq_qdesc kd = mq_qd(kind, symmetric);
    kd.gscale = d.gscale;
    mq_cl_kind_args ka;
    mq_cl_kind_args_init(&ka, kd);
    cl_ulong cols_a = cols, nbc_a = nbc;
    size_t n_scales = blocks ? (rows + bs - 1) / bs * nbc : rows;
    /* Input, codes, scales and zero points; the int8 figures have always
     * counted the per-row NaN flags as well (bench/RESULTS.md). */
    out->bytes =
        (uint64_t)rows * cols * es + (uint64_t)rows * rb +
        (uint64_t)n_scales * (mq_qkind_scale_size(kind, dt) + (symmetric ? 0 : 1) + (int8 ? 1 : 0));
    out->chunks = chunks;
    size_t copy_total = (size_t)(out->bytes / 2),
           copy_chunk = copy_total < cb->limit ? copy_total : cb->limit;

    kt = calloc((size_t)iters, sizeof *kt);
    et = calloc((size_t)iters, sizeof *et);
    ct = calloc((size_t)iters, sizeof *ct);
    if (!kt || !et || !ct) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "profile: out of memory");
        goto done;
    }
    if ((st = mq_cl_buffer(cb, CL_MEM_READ_ONLY, rpc * row_bytes, &in)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, rpc * (blocks ? cols : rb), &q)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, groups_max * es, &scale)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, groups_max, &zp)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, groups_max, &bad)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, groups_max * 4 * sizeof(float), &esum)) !=
            MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, groups_max * sizeof(cl_uint), &ecl)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, copy_chunk, &c0)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, copy_chunk, &c1)) != MQ_OK ||
        (st = mq_cl_write(cb, in, rpc * row_bytes, src)) != MQ_OK ||
        (st = mq_cl_write(cb, c0, copy_chunk < rows * row_bytes ? copy_chunk : rows * row_bytes,
                          src)) != MQ_OK ||
        (st = mq_cl_finish(cb)) != MQ_OK)
        goto done;

    for (int it = -1; it < iters; it++) { /* it == -1: warm-up */
        double ksum = 0, esum_s = 0, csum = 0, s;
        for (size_t r0 = 0; r0 < rows; r0 += rpc) {
            cl_ulong n_a = rows - r0 < rpc ? rows - r0 : rpc;
            size_t items;
            cl_kernel k, ke;
            mq_cl_arg rargs[] = {MQ_CL_ARG(in), MQ_CL_ARG(n_a), MQ_CL_ARG(cols_a), MQ_CL_ARG(tpr_a),
                                 ka.a4,         ka.a5,          MQ_CL_ARG(q),      MQ_CL_ARG(scale),
                                 MQ_CL_ARG(zp), MQ_CL_ARG(bad), MQ_CL_ARG(esum),   MQ_CL_ARG(ecl)};
            mq_cl_arg bargs[] = {MQ_CL_ARG(in),     MQ_CL_ARG(n_a),   MQ_CL_ARG(cols_a),
                                 MQ_CL_ARG(cols_a), MQ_CL_ARG(bs_a),  MQ_CL_ARG(nbc_a),
                                 MQ_CL_ARG(q),      MQ_CL_ARG(scale), MQ_CL_ARG(bad),
                                 MQ_CL_ARG(esum),   MQ_CL_ARG(ecl)};
            const mq_cl_arg *args = blocks ? bargs : rargs;
            size_t na = blocks ? 9 : 10;
            if (blocks) {
                items = ((size_t)n_a + bs - 1) / bs * nbc * cb->wg;
                k = cb->blocks[dt];
                ke = cb->blocks_err[dt];
            } else {
                items = ((size_t)n_a + cb->wg / tpr - 1) / (cb->wg / tpr) * cb->wg;
                k = int8 ? cb->fused[dt] : cb->rows_k[dt];
                ke = int8 ? cb->fused_err[dt] : cb->rows_k_err[dt];
            }
            cl_event ev = NULL;
            if ((st = mq_cl_launch(cb, k, args, na, items, &ev)) != MQ_OK ||
                (st = event_seconds(ev, &s)) != MQ_OK)
                goto done;
            ksum += s;
            if ((st = mq_cl_launch(cb, ke, args, na + 2, items, &ev)) != MQ_OK ||
                (st = event_seconds(ev, &s)) != MQ_OK)
                goto done;
            esum_s += s;
        }
        for (size_t done_bytes = 0; done_bytes < copy_total; done_bytes += copy_chunk) {
            size_t m = copy_total - done_bytes < copy_chunk ? copy_total - done_bytes : copy_chunk;
            cl_event ev = NULL;
            cl_int err = clEnqueueCopyBuffer(cb->queue, c0, c1, 0, 0, m, 0, NULL, &ev);
            if (err != CL_SUCCESS) {
                st = mq_cl_fail(err, "clEnqueueCopyBuffer");
                goto done;
            }
            if ((st = event_seconds(ev, &s)) != MQ_OK) goto done;
            csum += s;
        }
        if (it >= 0) {
            kt[it] = ksum;
            et[it] = esum_s;
            ct[it] = csum;
        }
    }
    out->kernel_s = mq_median(kt, (size_t)iters);
    out->kernel_err_s = mq_median(et, (size_t)iters);
    out->copy_s = mq_median(ct, (size_t)iters);
done:
    clFinish(cb->queue);
    cl_mem *all[] = {&c1, &c0, &ecl, &esum, &bad, &zp, &scale, &q, &in};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        mq_cl_release(all[i]);
    free(ct);
    free(et);
    free(kt);
    return st;
}

/* Wall time of the blocking upload of in_bytes from `in` into a device buffer,
 * then of the download of out_bytes into `out`, in chunks of one buffer. */
static mq_status transfer_once(mq_cl_backend *cb, cl_mem m, const uint8_t *in, size_t in_bytes,
                               uint8_t *out, size_t out_bytes, double *h2d, double *d2h)
{
    size_t chunk = cb->limit;
    double t0 = mq_now_s();
    for (size_t o = 0; o < in_bytes; o += chunk) {
        size_t n = in_bytes - o < chunk ? in_bytes - o : chunk;
        cl_int e = clEnqueueWriteBuffer(cb->queue, m, CL_TRUE, 0, n, in + o, 0, NULL, NULL);
        if (e != CL_SUCCESS) return mq_cl_fail(e, "clEnqueueWriteBuffer");
    }
    double t1 = mq_now_s();
    for (size_t o = 0; o < out_bytes; o += chunk) {
        size_t n = out_bytes - o < chunk ? out_bytes - o : chunk;
        cl_int e = clEnqueueReadBuffer(cb->queue, m, CL_TRUE, 0, n, out + o, 0, NULL, NULL);
        if (e != CL_SUCCESS) return mq_cl_fail(e, "clEnqueueReadBuffer");
    }
    *h2d = t1 - t0;
    *d2h = mq_now_s() - t1;
    return MQ_OK;
}

mq_status mq_cl_profile_transfer(mq_backend *b, const void *in, size_t in_bytes, void *out,
                                 size_t out_bytes, int iters, double *h2d_s, double *d2h_s)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    size_t big = in_bytes > out_bytes ? in_bytes : out_bytes;
    cl_mem m = NULL;
    double *h = calloc((size_t)(iters > 0 ? iters : 1), sizeof *h);
    double *d = calloc((size_t)(iters > 0 ? iters : 1), sizeof *d);
    mq_status st = h && d ? MQ_OK : mq_set_error(MQ_STATUS_E_NOMEM, "profile: out of memory");
    if (st == MQ_OK && iters < 1) st = mq_set_error(MQ_STATUS_E_INVALID_ARG, "profile: iters");
    if (st == MQ_OK)
        st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, big < cb->limit ? big : cb->limit, &m);
    for (int i = -1; st == MQ_OK && i < iters; i++) { /* i == -1: untimed warm-up */
        double a = 0, c = 0;
        st = transfer_once(cb, m, in, in_bytes, out, out_bytes, &a, &c);
        if (st == MQ_OK && i >= 0) h[i] = a, d[i] = c;
    }
    if (st == MQ_OK) {
        *h2d_s = mq_median(h, (size_t)iters);
        *d2h_s = mq_median(d, (size_t)iters);
    }
    mq_cl_release(&m);
    free(h);
    free(d);
    return st;
}
