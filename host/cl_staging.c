/* Host staging memory for the streaming pipeline. On a device that shares
 * memory with the host (CL_DEVICE_HOST_UNIFIED_MEMORY: CPU devices such as
 * PoCL, integrated GPUs) a staging block is page-aligned host memory wrapped
 * in a CL_MEM_USE_HOST_PTR buffer, and the kernels read the input and write
 * the codes where they are, with no copy. On other devices it is a
 * CL_MEM_ALLOC_HOST_PTR buffer mapped once: pinned memory, which the
 * transfers to and from the device read and write at full DMA speed.
 *
 * A zero-copy block is mapped (the host's) except between mq_cl_stage_take
 * and mq_cl_stage_give, when a kernel may use it: the map and unmap are the
 * synchronisation OpenCL requires, and for a USE_HOST_PTR buffer the map
 * returns the same pointer every time. */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#define STAGE_ALIGN 4096

static mq_cl_stage *stage_find(mq_cl_backend *cb, const void *p)
{
    for (size_t i = 0; i < MQ_CL_MAX_STAGES; i++)
        if (cb->stages[i].ptr == p && p) return &cb->stages[i];
    return NULL;
}

/* A buffer of n bytes made with `flags` (over `host` when given), mapped for
 * the host; NULL when a step fails. */
static void *make_mapped(mq_cl_backend *cb, cl_mem_flags flags, size_t n, void *host, cl_mem *out)
{
    cl_int err;
    cl_mem m = clCreateBuffer(cb->ctx, CL_MEM_READ_WRITE | flags, n, host, &err);
    if (!m) return NULL;
    void *p = clEnqueueMapBuffer(cb->queue, m, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, n, 0, NULL,
                                 NULL, &err);
    if (p && (!host || p == host)) {
        *out = m;
        return p;
    }
    /* A zero-copy buffer must map to our own memory, or the mode cannot work. */
    if (p) clEnqueueUnmapMemObject(cb->queue, m, p, 0, NULL, NULL);
    clFinish(cb->queue);
    clReleaseMemObject(m);
    return NULL;
}

void *mq_cl_staging_alloc(mq_backend *b, size_t n)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    if (cb->staging == MQ_CL_STAGING_NONE || n == 0 || n > cb->max_alloc) return NULL;
    pthread_mutex_lock(&cb->stage_mu);
    mq_cl_stage *s = NULL;
    for (size_t i = 0; i < MQ_CL_MAX_STAGES && !s; i++)
        if (!cb->stages[i].ptr) s = &cb->stages[i];
    void *p = NULL;
    cl_mem m = NULL;
    if (s && cb->staging == MQ_CL_STAGING_ZERO_COPY) {
        size_t len = (n + STAGE_ALIGN - 1) / STAGE_ALIGN * STAGE_ALIGN;
        void *host = aligned_alloc(STAGE_ALIGN, len);
        /* The whole pages: some devices share memory only for such sizes. */
        size_t size = len <= cb->max_alloc ? len : n;
        if (host && (p = make_mapped(cb, CL_MEM_USE_HOST_PTR, size, host, &m)))
            *s = (mq_cl_stage){p, size, m, host, true};
        else
            free(host);
    } else if (s && (p = make_mapped(cb, CL_MEM_ALLOC_HOST_PTR, n, NULL, &m))) {
        *s = (mq_cl_stage){p, n, m, NULL, true};
    }
    pthread_mutex_unlock(&cb->stage_mu);
    return p; /* NULL: the caller uses plain memory */
}

void mq_cl_staging_free(mq_backend *b, void *p)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    pthread_mutex_lock(&cb->stage_mu);
    mq_cl_stage *s = stage_find(cb, p);
    if (s) {
        if (s->mapped) clEnqueueUnmapMemObject(cb->queue, s->mem, s->ptr, 0, NULL, NULL);
        clFinish(cb->queue);
        clReleaseMemObject(s->mem);
        free(s->host);
        memset(s, 0, sizeof *s);
    }
    pthread_mutex_unlock(&cb->stage_mu);
}

cl_mem mq_cl_stage_take(mq_cl_backend *cb, const void *p, size_t bytes)
{
    if (cb->staging != MQ_CL_STAGING_ZERO_COPY || !p) return NULL;
    pthread_mutex_lock(&cb->stage_mu);
    mq_cl_stage *s = stage_find(cb, p);
    cl_mem m = NULL;
    if (s && s->mapped && bytes <= s->n &&
        clEnqueueUnmapMemObject(cb->queue, s->mem, s->ptr, 0, NULL, NULL) == CL_SUCCESS) {
        s->mapped = false;
        m = s->mem;
        cb->stage_takes++;
    }
    pthread_mutex_unlock(&cb->stage_mu);
    return m;
}

mq_status mq_cl_stage_give(mq_cl_backend *cb, cl_mem m)
{
    if (!m) return MQ_OK;
    pthread_mutex_lock(&cb->stage_mu);
    mq_status st = MQ_OK;
    for (size_t i = 0; i < MQ_CL_MAX_STAGES; i++) {
        mq_cl_stage *s = &cb->stages[i];
        if (s->mem != m || s->mapped) continue;
        cl_int err;
        void *p = clEnqueueMapBuffer(cb->queue, m, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, s->n, 0,
                                     NULL, NULL, &err);
        if (p == s->ptr) {
            s->mapped = true;
        } else {
            st = err != CL_SUCCESS ? mq_cl_failed(cb, err, "clEnqueueMapBuffer")
                                   : mq_set_error(MQ_STATUS_E_DEVICE,
                                                  "OpenCL: a staging buffer mapped elsewhere");
        }
        break;
    }
    pthread_mutex_unlock(&cb->stage_mu);
    return st;
}

void mq_cl_stages_free(mq_cl_backend *cb)
{
    for (size_t i = 0; i < MQ_CL_MAX_STAGES; i++)
        if (cb->stages[i].ptr) mq_cl_staging_free(&cb->base, cb->stages[i].ptr);
}

size_t mq_cl_zero_copy_count(const mq_backend *b)
{
    const mq_cl_backend *cb = (const mq_cl_backend *)b;
    return cb->stage_takes;
}
