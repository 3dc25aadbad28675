/* Linear-layer forward passes on an OpenCL backend through CLBlast SGEMM, for
 * measuring a quantized layer's output error on the device. The evaluation
 * reaches them through the backend's table (backend.h: gemm_*); the tests and
 * the benchmark reach the rest through the OpenCL registry entry
 * (get_proc_address), so they link without OpenCL too. Plain C (no OpenCL
 * types). */
#ifndef MQ_CLGEMM_H
#define MQ_CLGEMM_H

#include "backend.h"

/* The OpenCL backend's mq_gemm (backend.h), reached through its table. */
typedef mq_gemm mq_clgemm;

#define MQ_CLGEMM_HOOKS "mq_clgemm_hooks"
typedef struct {
    bool (*supported)(const mq_backend *b);
    mq_status (*create)(mq_backend *b, void (*note)(const char *note, void *user), void *user,
                        mq_clgemm **out);
    void (*free)(mq_clgemm *g);
    const char *(*status_name)(int code);
    void (*device_info)(const mq_backend *b, unsigned *units, unsigned *mhz, bool *cpu);
    mq_status (*time_sgemm)(mq_clgemm *g, size_t m, size_t n, size_t k, int iters, double *first_s,
                            double *median_s);
} mq_clgemm_hooks;

/* The hooks, or NULL in a build without OpenCL. */
static inline const mq_clgemm_hooks *mq_clgemm_hooks_get(void)
{
    return (const mq_clgemm_hooks *)mq_backend_get_proc("opencl", MQ_CLGEMM_HOOKS);
}

/* True when `b` is an OpenCL backend (mq_clgemm_new accepts it). */
static inline bool mq_clgemm_supported(const mq_backend *b)
{
    const mq_clgemm_hooks *h = mq_clgemm_hooks_get();
    return h && h->supported(b);
}

/* A GEMM context on b's context and queue (b must be supported and outlive
 * it); `note` hears of a step that can take long (CLBlast compiles its
 * kernels at the first GEMM of a context). */
static inline mq_status mq_clgemm_new(mq_backend *b, void (*note)(const char *note, void *user),
                                      void *user, mq_clgemm **out)
{
    return mq_clgemm_hooks_get()->create(b, note, user, out);
}

/* Releases the device buffers; NULL does nothing. */
static inline void mq_clgemm_free(mq_clgemm *g)
{
    if (g) mq_clgemm_hooks_get()->free(g);
}

/* "kInvalidDimension" etc. for a CLBlastStatusCode; "kUnknownStatus" otherwise. */
static inline const char *mq_clblast_status_name(int code)
{
    const mq_clgemm_hooks *h = mq_clgemm_hooks_get();
    return h ? h->status_name(code) : "kUnknownStatus";
}

/* Compute units, maximum clock in MHz and whether the device is a CPU, for
 * peak-throughput estimates; zeros when `b` is not an OpenCL backend. */
static inline void mq_clgemm_device_info(const mq_backend *b, unsigned *units, unsigned *mhz,
                                         bool *cpu)
{
    const mq_clgemm_hooks *h = mq_clgemm_hooks_get();
    *units = 0;
    *mhz = 0;
    *cpu = false;
    if (h) h->device_info(b, units, mhz, cpu);
}

/* Benchmark: seconds of one C[m,n] = A[m,k] * B[n,k]^T SGEMM on device
 * buffers: *first_s the first (untimed warm-up) call, *median_s the median of
 * `iters` more, each waited for with clFinish. */
static inline mq_status mq_clgemm_time_sgemm(mq_clgemm *g, size_t m, size_t n, size_t k, int iters,
                                             double *first_s, double *median_s)
{
    return mq_clgemm_hooks_get()->time_sgemm(g, m, n, k, iters, first_s, median_s);
}

#endif
