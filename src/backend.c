/* Backend choice and the host reference backend. */
#include "backend.h"

#include "error.h"
#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mq_status host_quantize_rows(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                    size_t cols, bool symmetric, int8_t *q, void *scale,
                                    int8_t *zp, size_t *bad_row)
{
    (void)b;
    return mq_ref_quantize_rows(src, dt, rows, cols, symmetric, q, scale, zp, bad_row);
}

static mq_status host_cast_f16(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                               bool saturate, uint16_t *dst, uint64_t *overflow)
{
    (void)b;
    *overflow = mq_ref_cast_f16(src, dt, n, saturate, dst);
    return MQ_OK;
}

static mq_status host_dequantize_rows(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                      const void *scale, const int8_t *zp, mq_dtype dt,
                                      void *dst)
{
    (void)b;
    mq_ref_dequantize_rows(q, rows, cols, scale, zp, dt, dst);
    return MQ_OK;
}

static void host_free(mq_backend *b)
{
    free(b);
}

static const mq_backend_ops host_ops = {
    .quantize_rows = host_quantize_rows,
    .cast_f16 = host_cast_f16,
    .dequantize_rows = host_dequantize_rows,
    .free = host_free,
};

mq_status mq_backend_open_host(mq_backend **out)
{
    mq_backend *b = calloc(1, sizeof *b);
    if (!b) return mq_set_error(MQ_STATUS_E_NOMEM, "backend: out of memory");
    b->ops = &host_ops;
    snprintf(b->backend, sizeof b->backend, "host");
    snprintf(b->device, sizeof b->device, "reference");
    *out = b;
    return MQ_OK;
}

mq_status mq_backend_open(const mq_config *cfg, mq_backend **out)
{
    const char *spec = cfg->device;
    if (!spec || !*spec) spec = getenv("MQ_DEVICE");
    if (!spec || !*spec) spec = "auto";
    if (strcmp(spec, "host") == 0) return mq_backend_open_host(out);
    bool none = false;
    mq_status st = mq_opencl_backend_open(spec, cfg->max_alloc_override, &none, out);
    if (st == MQ_OK || strcmp(spec, "auto") != 0 || !none) return st;
    fprintf(stderr, "monoquant: no OpenCL device found; using the host reference\n");
    return mq_backend_open_host(out);
}

void mq_backend_free(mq_backend *b)
{
    if (b) b->ops->free(b);
}
