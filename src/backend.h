/* A compute backend: the scalar host reference or an OpenCL device. The
 * quantizer calls through this table, so src/ needs no OpenCL header. */
#ifndef MQ_BACKEND_H
#define MQ_BACKEND_H

#include "monoquant.h"

typedef struct mq_backend mq_backend;
struct mq_ref_stats;
struct mq_err_acc;

typedef struct {
    /* As mq_ref_quantize_rows (reference.h): same inputs, byte-identical outputs.
     * MQ_STATUS_E_DATA with *bad_row for NaN/Inf; other errors set mq_last_error.
     * With err (NULL: none) the weight error of the values is added to *err
     * in the same pass (the host loop, the OpenCL _err kernels): the sums of
     * mq_ref_error_stats, matched to a relative 1e-5. On an error *err may
     * hold part of the call. Each code is stored XOR code_xor: 0, or 0x80
     * for the unsigned bytes of compressed-tensors' packed words (the
     * packing done where the codes are made; see layout.h). */
    mq_status (*quantize_rows)(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                               size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                               uint8_t code_xor, size_t *bad_row, struct mq_err_acc *err);
    /* As mq_ref_cast_f16; the overflow count goes to *overflow. */
    mq_status (*cast_f16)(mq_backend *b, const void *src, mq_dtype dt, size_t n, bool saturate,
                          uint16_t *dst, uint64_t *overflow);
    /* As mq_ref_dequantize_rows. */
    mq_status (*dequantize_rows)(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                 const void *scale, const int8_t *zp, mq_dtype dt, void *dst);
    void (*free)(mq_backend *b);

    /* Streaming support (may be NULL in a backend; the caller then uses the
     * host reference for that step). */
    /* Folds n values into *st exactly as mq_ref_stats_update. */
    mq_status (*reduce)(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                        struct mq_ref_stats *st);
    /* As mq_ref_quantize_values with fixed params (per-tensor mode, second
     * pass); err as for quantize_rows (symmetric: zp is no zero point for
     * the statistics). */
    mq_status (*quantize_values)(mq_backend *b, const void *src, mq_dtype dt, size_t n, float scale,
                                 int8_t zp, bool symmetric, uint8_t code_xor, int8_t *q,
                                 struct mq_err_acc *err);
    /* Host memory the device reads and writes fastest (pinned / zero-copy);
     * NULL from staging_alloc means use plain memory. */
    void *(*staging_alloc)(mq_backend *b, size_t n);
    void (*staging_free)(mq_backend *b, void *p);

} mq_backend_ops;

struct mq_backend {
    const mq_backend_ops *ops;
    char backend[16];   /* "host" or "opencl" */
    char platform[256]; /* "" for host */
    char device[256];   /* device name; "reference" for host */
};

/*
 * Opens the backend that cfg->device names (NULL or "auto": first GPU, else
 * first OpenCL device, else the host reference with a notice on stderr;
 * "host": the reference). The caller frees it with mq_backend_free.
 */
mq_status mq_backend_open(const mq_config *cfg, mq_backend **out);
mq_status mq_backend_open_host(mq_backend **out);
void mq_backend_free(mq_backend *b);

/*
 * Implemented in host/ (in a build without OpenCL, src/noopencl.c fails every
 * spec with *none_found = true): opens an OpenCL device for `spec` ("auto", "opencl",
 * "gpu", "cpu", "P:D" or a name substring). For "auto", MQ_STATUS_E_DEVICE
 * with *none_found = true means no usable OpenCL device exists (not an error
 * for auto). `max_alloc_override` caps one device buffer (0 = device limit).
 */
mq_status mq_opencl_backend_open(const char *spec, size_t max_alloc_override, bool *none_found,
                                 mq_backend **out);

#endif
