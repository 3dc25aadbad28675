/* The OpenCL back end's entry points beyond the mq_backend table: open
 * options, a division check for the tests and kernel timing for the benchmark.
 * They are reached through the back end's registry entry (get_proc_address,
 * backend.h), so a build without OpenCL links the tests and benchmarks
 * unchanged and each call there answers that no OpenCL device exists. No
 * OpenCL types here, so tests and bench/ may include it. */
#ifndef MQ_OPENCL_H
#define MQ_OPENCL_H

#include "backend.h"
#include "error.h"

#include <string.h>

/* How kernels divide (see cl_kernels/numerics.cl). */
typedef enum {
    MQ_CL_DIV_AUTO =
        -1, /* native if the device divides correctly rounded, else double, else soft */
    MQ_CL_DIV_NATIVE = 0,
    MQ_CL_DIV_DOUBLE = 1,
    MQ_CL_DIV_SOFT = 2,
} mq_cl_div_mode;

/* What the streaming pipeline's staging memory is (cl_staging.c). */
typedef enum {
    MQ_CL_STAGING_AUTO = -1, /* zero copy where the device shares host memory, else pinned */
    MQ_CL_STAGING_NONE = 0,  /* plain host memory; every chunk is copied */
    MQ_CL_STAGING_PINNED = 1,
    MQ_CL_STAGING_ZERO_COPY = 2,
} mq_cl_staging_mode;

/* Whether fused row quantization overlaps its transfers with its kernels
 * (cl_pipeline.c): chunks of rows on three queues linked by events. */
typedef enum {
    MQ_CL_OVERLAP_AUTO = -1, /* on for devices with memory of their own (not CPU, not unified) */
    MQ_CL_OVERLAP_OFF = 0,
    MQ_CL_OVERLAP_ON = 1, /* also on CPU devices (the tests force it on PoCL) */
} mq_cl_overlap_mode;

/* Input bytes per overlapped chunk when mq_cl_options.overlap_chunk is 0: large
 * enough for PCIe transfers to run near their peak. */
#define MQ_CL_OVERLAP_CHUNK ((size_t)16 << 20)

typedef struct {
    size_t max_alloc_override; /* cap on one device buffer in bytes (0 = device limit) */
    mq_cl_staging_mode staging;
    mq_cl_div_mode div_mode;
    bool profiling;            /* command queue with profiling (the benchmark) */
    size_t work_group;         /* 0 = chosen from the device */
    size_t per_item;           /* values per work-item in the fused kernel (0 = by device) */
    const char *build_options; /* appended to the program's build options (tests) */
    mq_cl_overlap_mode overlap;
    size_t
        overlap_chunk; /* input bytes per overlapped chunk, whole rows (0 = MQ_CL_OVERLAP_CHUNK) */
} mq_cl_options;

static inline void mq_cl_options_init(mq_cl_options *o)
{
    memset(o, 0, sizeof *o);
    o->div_mode = MQ_CL_DIV_AUTO;
    o->staging = MQ_CL_STAGING_AUTO;
    o->overlap = MQ_CL_OVERLAP_AUTO;
}

/* Benchmark: medians over `iters` timed runs (after one untimed warm-up), in
 * seconds, of the fused quantize kernel and of its variant that also computes
 * the weight error statistics (kernel_err_s) on the rows x cols tensor `src` of
 * dtype dt (in chunks of whole rows when it exceeds one buffer: every chunk
 * runs over the first chunk's rows, uploaded once), and of
 * clEnqueueCopyBuffer moving the same number of bytes. *bytes is what the kernel
 * reads and writes (input, codes as stored, scales, zero points, and for int8 the per-row NaN
 * flags). The backend must be opened with profiling. */
typedef struct {
    double kernel_s;
    double kernel_err_s;
    double copy_s;
    uint64_t bytes;
    size_t chunks; /* kernel launches per run */
} mq_cl_profile;

/* The hooks, as get_proc_address(MQ_OPENCL_HOOKS) of the "opencl" registry
 * entry returns them; each is described at its wrapper below. */
#define MQ_OPENCL_HOOKS "mq_opencl_hooks"
typedef struct {
    mq_status (*open)(const char *spec, size_t max_alloc_override, bool *none_found,
                      mq_backend **out);
    mq_status (*open_opts)(const char *spec, const mq_cl_options *o, bool *none_found,
                           mq_backend **out);
    const char *(*div_mode_name)(const mq_backend *b);
    size_t (*work_group)(const mq_backend *b);
    size_t (*zero_copy_count)(const mq_backend *b);
    bool (*overlaps)(const mq_backend *b);
    size_t (*overlap_calls)(const mq_backend *b);
    size_t (*overlap_chunks)(const mq_backend *b);
    mq_status (*divide)(mq_backend *b, const float *a, const float *d, float *out, size_t n);
    mq_status (*profile_quantize)(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                  size_t rows, size_t cols, int iters, mq_cl_profile *out);
    mq_status (*profile_transfer)(mq_backend *b, const void *in, size_t in_bytes, void *out,
                                  size_t out_bytes, int iters, double *h2d_s, double *d2h_s);
    /* The mse search's error of every step of every group (groups x steps
     * floats), as the device computes them for mse_scan. */
    mq_status (*mse_errors)(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                            const void *src, mq_dtype dt, size_t rows, size_t cols, float *err,
                            size_t *bad);
} mq_opencl_hooks;

/* The hooks, or NULL in a build without OpenCL. */
static inline const mq_opencl_hooks *mq_opencl_hooks_get(void)
{
    return (const mq_opencl_hooks *)mq_backend_get_proc("opencl", MQ_OPENCL_HOOKS);
}

/* What every hook answers in a build without OpenCL. */
static inline mq_status mq_opencl_absent(bool *none_found)
{
    if (none_found) *none_found = true;
    return mq_set_error(MQ_STATUS_E_DEVICE,
                        "this libmonoquant was built without OpenCL (MQ_OPENCL=OFF); only the "
                        "host device is available");
}

/* The device `spec` names, as the registry opens it; none_found as there. */
static inline mq_status mq_opencl_backend_open(const char *spec, size_t max_alloc_override,
                                               bool *none_found, mq_backend **out)
{
    const mq_opencl_hooks *h = mq_opencl_hooks_get();
    return h ? h->open(spec, max_alloc_override, none_found, out) : mq_opencl_absent(none_found);
}

/* The same with options. A backend serves one thread at a time; it keeps its
 * device buffers between calls (freed with the backend). */
static inline mq_status mq_opencl_backend_open_opts(const char *spec, const mq_cl_options *o,
                                                    bool *none_found, mq_backend **out)
{
    const mq_opencl_hooks *h = mq_opencl_hooks_get();
    return h ? h->open_opts(spec, o, none_found, out) : mq_opencl_absent(none_found);
}

/* The queries below take a backend the hooks opened (none exists without
 * OpenCL, so they need no stand-in). "native", "double" or "soft". */
static inline const char *mq_opencl_div_mode_name(const mq_backend *b)
{
    return mq_opencl_hooks_get()->div_mode_name(b);
}

static inline size_t mq_opencl_work_group(const mq_backend *b)
{
    return mq_opencl_hooks_get()->work_group(b);
}

/* Test hook: how many times a kernel used staging memory in place. */
static inline size_t mq_opencl_zero_copy_count(const mq_backend *b)
{
    return mq_opencl_hooks_get()->zero_copy_count(b);
}

/* Whether fused rows overlap transfers with kernels (mq_cl_options.overlap). */
static inline bool mq_opencl_overlaps(const mq_backend *b)
{
    return mq_opencl_hooks_get()->overlaps(b);
}

/* Test hook: overlapped calls made, and the chunks they ran. */
static inline size_t mq_opencl_overlap_calls(const mq_backend *b)
{
    return mq_opencl_hooks_get()->overlap_calls(b);
}

static inline size_t mq_opencl_overlap_chunks(const mq_backend *b)
{
    return mq_opencl_hooks_get()->overlap_chunks(b);
}

/* Test hook: out[i] = a[i] / d[i] computed as the kernels divide. */
static inline mq_status mq_opencl_divide(mq_backend *b, const float *a, const float *d, float *out,
                                         size_t n)
{
    return mq_opencl_hooks_get()->divide(b, a, d, out, n);
}

/* Benchmark (above) of the fused quantize kernel for d on a rows x cols
 * tensor: with d.block 0 a row is a group (a channel, or an int4 group),
 * else the FP8 kernel over d.block x d.block blocks (whose band of rows must
 * fit a buffer). */
static inline mq_status mq_opencl_profile_quantize(mq_backend *b, mq_qdesc d, const void *src,
                                                   mq_dtype dt, size_t rows, size_t cols, int iters,
                                                   mq_cl_profile *out)
{
    return mq_opencl_hooks_get()->profile_quantize(b, d, src, dt, rows, cols, iters, out);
}

/* Benchmark: medians over `iters` wall-clock runs (after a warm-up) of a
 * blocking upload of in_bytes from `in` and of a blocking download of
 * out_bytes into `out`, one after the other on the backend's queue, in chunks
 * of one buffer: the transfers of a quantize call without the overlap. */
static inline mq_status mq_opencl_profile_transfer(mq_backend *b, const void *in, size_t in_bytes,
                                                   void *out, size_t out_bytes, int iters,
                                                   double *h2d_s, double *d2h_s)
{
    return mq_opencl_hooks_get()->profile_transfer(b, in, in_bytes, out, out_bytes, iters, h2d_s,
                                                   d2h_s);
}

#endif
