/* Linear-layer forward passes on an OpenCL backend through CLBlast SGEMM, for
 * measuring a quantized layer's output error on the device. Plain C (no
 * OpenCL types), so src/, tests and bench/ may include it. */
#ifndef MQ_CLGEMM_H
#define MQ_CLGEMM_H

#include "backend.h"

/* The OpenCL backend's mq_gemm (backend.h), reached through its table. */
typedef mq_gemm mq_clgemm;

/* Called with a one-line note before a step that can take long (CLBlast
 * compiles its kernels at the first GEMM of a context). */
typedef void (*mq_clgemm_note_fn)(const char *note, void *user);

/* True when `b` is an OpenCL backend (mq_clgemm_new accepts it). */
bool mq_clgemm_supported(const mq_backend *b);
/* A GEMM context on b's context and queue; `b` must outlive it. */
mq_status mq_clgemm_new(mq_backend *b, void (*note)(const char *note, void *user), void *user,
                        mq_clgemm **out);
/* Releases the device buffers; NULL does nothing. */
void mq_clgemm_free(mq_clgemm *g);

/* Uploads X [tokens, in] (row-major) for the calls that follow. */
mq_status mq_clgemm_set_input(mq_clgemm *g, const float *x, size_t tokens, size_t in);
/* y[t][o] = sum_i x[t][i] * w[o][i] for w [out, in]; y is [tokens, out]. */
mq_status mq_clgemm_linear(mq_clgemm *g, const float *w, size_t out, float *y);
/* The same for w[o][i] = (q[o][i] - zp[o]) * scale[o], computed in fp32 on
 * the device by the backend's dequantize kernel. zp may be NULL. */
mq_status mq_clgemm_linear_q8(mq_clgemm *g, const int8_t *q, const float *scale, const int8_t *zp,
                              size_t out, float *y);

/* "kInvalidDimension" etc. for a CLBlastStatusCode; "kUnknownStatus" otherwise. */
const char *mq_clblast_status_name(int code);

/* Compute units, maximum clock in MHz and whether the device is a CPU, for
 * peak-throughput estimates; zeros when `b` is not an OpenCL backend. */
void mq_clgemm_device_info(const mq_backend *b, unsigned *units, unsigned *mhz, bool *cpu);

/* Benchmark: seconds of one C[m,n] = A[m,k] * B[n,k]^T SGEMM on device
 * buffers: *first_s the first (untimed warm-up) call, *median_s the median of
 * `iters` more, each waited for with clFinish. */
mq_status mq_clgemm_time_sgemm(mq_clgemm *g, size_t m, size_t n, size_t k, int iters,
                               double *first_s, double *median_s);

#endif
