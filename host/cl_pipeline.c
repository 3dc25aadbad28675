/* Fused row quantization with overlapped transfers, for devices with memory
 * of their own (a discrete GPU behind PCIe). The rows go in chunks of whole
 * rows (MQ_CL_OVERLAP_CHUNK input bytes by default); chunk c uses buffer set
 * c % 2, and three in-order queues carry its steps:
 *
 *   upload   (pq[0]): input c            after kernel c-2   (its input buffer is free)
 *   kernel   (pq[1]): quantize c         after upload c and download c-2 (its outputs are free)
 *   download (pq[2]): codes, scales, zero points, flags, error partials of c
 *                                        after kernel c
 *
 * so that upload c+1, kernel c and download c-1 run together, each engine
 * busy with one chunk. Everything is enqueued up front, linked by events; the
 * host waits once, at the end. The flags and error partials of every row are
 * read into host arrays and looked at after that wait, in row order, so the
 * first bad row and the error sums are those of the chunk-by-chunk path.
 * CPU and unified-memory devices keep cl_quantize.c's zero-copy path. */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <stdlib.h>

static mq_status nomem(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL quantize: out of memory");
}

static mq_status queues(mq_cl_backend *cb)
{
    for (int i = 0; i < 3; i++) {
        if (cb->pq[i]) continue;
        cl_int e;
        cb->pq[i] = clCreateCommandQueue(cb->ctx, cb->dev, cb->qprops, &e);
        if (e != CL_SUCCESS) {
            cb->pq[i] = NULL;
            return mq_cl_failed(cb, e, "clCreateCommandQueue");
        }
    }
    return MQ_OK;
}

static mq_status pipe_buffer(mq_cl_backend *cb, int set, int slot, size_t bytes, cl_mem *out)
{
    return mq_cl_slot_grow(cb, &cb->pipe[set][slot], bytes, out);
}

static void release_event(cl_event *e)
{
    if (*e) clReleaseEvent(*e);
    *e = NULL;
}

/* Enqueues a read of `bytes` from buf into dst on the download queue; *ev
 * (released first) becomes its event. */
static mq_status read_on(mq_cl_backend *cb, cl_mem buf, size_t bytes, void *dst, cl_uint nwait,
                         const cl_event *wait, cl_event *ev)
{
    cl_event e = NULL;
    cl_int r = clEnqueueReadBuffer(cb->pq[2], buf, CL_FALSE, 0, bytes, dst, nwait, wait, &e);
    if (r != CL_SUCCESS) return mq_cl_failed(cb, r, "clEnqueueReadBuffer");
    release_event(ev);
    *ev = e;
    return MQ_OK;
}

/* A command of the chain failed as it ran (the implementation marks the
 * commands after it failed too). */
static mq_status check_event(mq_cl_backend *cb, cl_event e)
{
    cl_int s = CL_COMPLETE;
    if (!e) return MQ_OK;
    cl_int r = clGetEventInfo(e, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof s, &s, NULL);
    if (r != CL_SUCCESS) return mq_cl_failed(cb, r, "clGetEventInfo");
    return s < 0 ? mq_cl_failed(cb, s, "overlapped quantize (a transfer or kernel)") : MQ_OK;
}

mq_status mq_cl_rows_overlapped(mq_cl_backend *cb, const mq_cl_rows_job *j, size_t *bad_row,
                                mq_err_acc *err)
{
    size_t rpc = j->rpc < j->rows ? j->rpc : j->rows;
    cl_mem m[2][MQ_CL_PIPE_COUNT] = {{0}};
    cl_event up[2] = {0}, kr[2] = {0}, down[2] = {0};
    uint8_t *hbad = malloc(j->rows);
    float *hes = err ? malloc(j->rows * 4 * sizeof(float)) : NULL;
    cl_uint *hecl = err ? malloc(j->rows * sizeof(cl_uint)) : NULL;
    size_t nchunks = (j->rows + rpc - 1) / rpc;
    mq_status st = MQ_OK;
    if (!hbad || (err && (!hes || !hecl))) st = nomem();
    if (st == MQ_OK) st = queues(cb);
    for (int b = 0; b < 2 && st == MQ_OK && (b == 0 || nchunks > 1); b++) {
        size_t sizes[MQ_CL_PIPE_COUNT] = {
            rpc * j->in_row,         rpc * j->q_row,       rpc * j->scale_row, rpc, rpc,
            rpc * 4 * sizeof(float), rpc * sizeof(cl_uint)};
        for (int s = 0; s < MQ_CL_PIPE_COUNT && st == MQ_OK; s++)
            if (err || s < MQ_CL_PIPE_ESUM) st = pipe_buffer(cb, b, s, sizes[s], &m[b][s]);
    }
    cl_uint tpr = (cl_uint)j->tpr;
    cl_ulong cols = j->cols;
    size_t rows_per_group = cb->wg / j->tpr;
    for (size_t c = 0; c < nchunks && st == MQ_OK; c++) {
        int b = (int)(c & 1);
        size_t r0 = c * rpc, n = j->rows - r0 < rpc ? j->rows - r0 : rpc;
        cl_mem *mb = m[b];
        /* Upload: the input buffer is free once kernel c-2 has run. */
        cl_event e = NULL;
        cl_int r =
            clEnqueueWriteBuffer(cb->pq[0], mb[MQ_CL_PIPE_IN], CL_FALSE, 0, n * j->in_row,
                                 j->src + r0 * j->in_row, kr[b] ? 1 : 0, kr[b] ? &kr[b] : NULL, &e);
        if (r != CL_SUCCESS) {
            st = mq_cl_failed(cb, r, "clEnqueueWriteBuffer");
            break;
        }
        release_event(&up[b]);
        up[b] = e;
        /* Kernel: after its upload, and after download c-2 read its outputs. */
        cl_ulong n_a = n;
        mq_cl_arg args[] = {MQ_CL_ARG(mb[MQ_CL_PIPE_IN]),
                            MQ_CL_ARG(n_a),
                            MQ_CL_ARG(cols),
                            MQ_CL_ARG(tpr),
                            j->a4,
                            j->a5,
                            MQ_CL_ARG(mb[MQ_CL_PIPE_Q]),
                            MQ_CL_ARG(mb[MQ_CL_PIPE_SCALE]),
                            MQ_CL_ARG(mb[MQ_CL_PIPE_ZP]),
                            MQ_CL_ARG(mb[MQ_CL_PIPE_BAD]),
                            MQ_CL_ARG(mb[MQ_CL_PIPE_ESUM]),
                            MQ_CL_ARG(mb[MQ_CL_PIPE_ECL])};
        cl_event kw[2] = {up[b], down[b]};
        size_t groups = (n + rows_per_group - 1) / rows_per_group;
        e = NULL;
        if ((st = mq_cl_launch_on(cb, cb->pq[1], j->k, args, err ? 12 : 10, groups * cb->wg,
                                  down[b] ? 2 : 1, kw, &e)) != MQ_OK)
            break;
        release_event(&kr[b]);
        kr[b] = e;
        /* Download, in order on its queue: the first read waits for the kernel. */
        if ((st = read_on(cb, mb[MQ_CL_PIPE_Q], n * j->q_row, j->q + r0 * j->q_row, 1, &kr[b],
                          &down[b])) != MQ_OK ||
            (st = read_on(cb, mb[MQ_CL_PIPE_SCALE], n * j->scale_row, j->scale + r0 * j->scale_row,
                          0, NULL, &down[b])) != MQ_OK ||
            (j->zp &&
             (st = read_on(cb, mb[MQ_CL_PIPE_ZP], n, j->zp + r0, 0, NULL, &down[b])) != MQ_OK) ||
            (st = read_on(cb, mb[MQ_CL_PIPE_BAD], n, hbad + r0, 0, NULL, &down[b])) != MQ_OK ||
            (err && (st = read_on(cb, mb[MQ_CL_PIPE_ESUM], n * 4 * sizeof(float), hes + 4 * r0, 0,
                                  NULL, &down[b])) != MQ_OK) ||
            (err && (st = read_on(cb, mb[MQ_CL_PIPE_ECL], n * sizeof(cl_uint), hecl + r0, 0, NULL,
                                  &down[b])) != MQ_OK))
            break;
        cb->overlap_chunks++;
    }
    /* The one wait: every command enqueued has run (after a failed enqueue
     * too, so no transfer still targets the caller's memory or ours). */
    for (int i = 0; i < 3; i++)
        if (cb->pq[i]) clFinish(cb->pq[i]);
    for (int b = 0; b < 2; b++) {
        mq_status se = check_event(cb, down[b]);
        if (se == MQ_OK) se = check_event(cb, kr[b]);
        if (se == MQ_OK) se = check_event(cb, up[b]);
        if (st == MQ_OK) st = se;
        release_event(&up[b]);
        release_event(&kr[b]);
        release_event(&down[b]);
    }
    cb->overlap_calls++;
    for (size_t i = 0; st == MQ_OK && i < j->rows; i++) {
        if (hbad[i]) {
            *bad_row = i;
            st = MQ_STATUS_E_DATA;
        }
    }
    if (st == MQ_OK && err) mq_cl_fold_err(err, hes, hecl, j->rows);
    free(hbad);
    free(hes);
    free(hecl);
    return st;
}

void mq_cl_pipeline_release(mq_cl_backend *cb)
{
    for (int i = 0; i < 3; i++)
        if (cb->pq[i]) clFinish(cb->pq[i]);
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < MQ_CL_PIPE_COUNT; s++) {
            mq_cl_release(&cb->pipe[b][s].mem);
            cb->pipe[b][s].cap = 0;
        }
}

void mq_cl_pipeline_free(mq_cl_backend *cb)
{
    mq_cl_pipeline_release(cb);
    for (int i = 0; i < 3; i++) {
        if (cb->pq[i]) clReleaseCommandQueue(cb->pq[i]);
        cb->pq[i] = NULL;
    }
}

bool mq_cl_overlaps(const mq_backend *b)
{
    return ((const mq_cl_backend *)b)->overlap;
}

size_t mq_cl_overlap_calls(const mq_backend *b)
{
    return ((const mq_cl_backend *)b)->overlap_calls;
}

size_t mq_cl_overlap_chunks(const mq_backend *b)
{
    return ((const mq_cl_backend *)b)->overlap_chunks;
}
