/* A compute backend: the scalar host reference or an OpenCL device. The
 * quantizer calls through this table, so src/ needs no OpenCL header. */
#ifndef MQ_BACKEND_H
#define MQ_BACKEND_H

#include "monoquant.h"
#include "observer.h"
#include "reference.h"

typedef struct mq_backend mq_backend;
typedef struct mq_gemm mq_gemm;

typedef struct {
    /* As mq_ref_quantize(d, ...) (reference.h): same inputs, byte-identical
     * outputs, for every kind and grouping. MQ_STATUS_E_DATA with *bad (the
     * row or block) for NaN/Inf; other errors set mq_last_error. With err
     * (NULL: none) the weight error of the values is added to *err in the
     * same pass: the sums of mq_ref_error_stats, matched to a relative 1e-5.
     * On an error *err may hold part of the call. A back end that lacks a
     * kernel for some d runs its own fallback. */
    mq_status (*quantize)(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t rows,
                          size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                          struct mq_err_acc *err);
    /* As mq_ref_quantize_values(d, ...) with fixed params (per-tensor mode,
     * the second pass of a row longer than one call): one code per byte,
     * int4 unpacked; err as for quantize (zp is the zero point the statistics
     * subtract: a symmetric call passes 0). */
    mq_status (*quantize_values)(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t n,
                                 float scale, int8_t zp, void *q, struct mq_err_acc *err);
    /* As mq_ref_cast_f16; the overflow count goes to *overflow. */
    mq_status (*cast_f16)(mq_backend *b, const void *src, mq_dtype dt, size_t n, bool saturate,
                          uint16_t *dst, uint64_t *overflow);
    /* As mq_ref_dequantize_rows. */
    mq_status (*dequantize_rows)(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                 const void *scale, const int8_t *zp, mq_dtype dt, void *dst);
    /* As mq_ref_src_dequant(d, ...) (reference.h), byte-identical: values
     * [e0, e0 + n) of a source weight of `cols` columns, from their codes and
     * the scale-grid rows they need (mq_srcdesc_scale_rows, the first at
     * scale), into dst in d.dt. Every kind of mq_srckind. */
    mq_status (*dequantize_source)(mq_backend *b, mq_srcdesc d, const void *codes, uint64_t e0,
                                   size_t n, size_t cols, const void *scale, void *dst);
    /* (optional) dequantize_source of values [e0, e0 + rows * cols) (of a
     * source weight of src_cols columns; scale: its grid rows from e0's on)
     * followed by quantize(d, those values in sd.dt, rows, cols, ...), with
     * the same bytes as the two calls, the values kept on the device where
     * it can (one read of the source codes, one write of ours). scratch
     * holds rows * cols values of sd.dt for a back end that needs them on
     * the host. NULL: the caller takes the two steps. */
    mq_status (*quantize_source)(mq_backend *b, mq_qdesc d, mq_srcdesc sd, const void *codes,
                                 uint64_t e0, size_t src_cols, const void *scale, size_t rows,
                                 size_t cols, void *q, void *qscale, int8_t *zp, size_t *bad,
                                 struct mq_err_acc *err, void *scratch);
    void (*free)(mq_backend *b);

    /* Folds n values into *st exactly as mq_ref_stats_update (the first pass
     * of a row longer than one call). */
    mq_status (*reduce)(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                        struct mq_ref_stats *st);
    /* Host memory the device reads and writes fastest (pinned / zero-copy);
     * NULL from staging_alloc means use plain memory. */
    void *(*staging_alloc)(mq_backend *b, size_t n);
    void (*staging_free)(mq_backend *b, void *p);

    /* Linear forward passes for evaluation (optional: NULL gemm_new means the
     * caller dequantizes with dequantize_rows and multiplies on the host).
     * note, when not NULL, hears of a step that may take long. */
    mq_status (*gemm_new)(mq_backend *b, void (*note)(const char *note, void *user), void *user,
                          mq_gemm **out);
    void (*gemm_free)(mq_gemm *g);
    /* Uploads X [tokens, in] (row-major) for the calls that follow. */
    mq_status (*gemm_set_input)(mq_gemm *g, const float *x, size_t tokens, size_t in);
    /* y[t][o] = sum_i x[t][i] * w[o][i] for w [out, in]; y is [tokens, out]. */
    mq_status (*gemm_linear)(mq_gemm *g, const float *w, size_t out, float *y);
    /* The same for w[o][i] = (q[o][i] - zp[o]) * scale[o] (zp may be NULL). */
    mq_status (*gemm_linear_q8)(mq_gemm *g, const int8_t *q, const float *scale, const int8_t *zp,
                                size_t out, float *y);

    /* (optional) The mse observer's first pass: as mq_obs_mse_scan
     * (observer.h), the same records bit for bit; NULL runs that. */
    mq_status (*mse_scan)(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                          const void *src, mq_dtype dt, size_t rows, size_t cols, uint8_t *mask,
                          bool *improved, size_t *bad);
    /* (optional) Its second pass: as mq_obs_mse_quantize, the same bytes,
     * with err as for quantize; NULL runs that and mq_ref_error_stats. */
    mq_status (*mse_quantize)(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                              size_t limit, const uint8_t *mask, const void *src, mq_dtype dt,
                              size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                              size_t *bad, struct mq_err_acc *err);
} mq_backend_ops;

/* What a backend can do, so that callers ask instead of comparing names. */
typedef struct {
    /* Computes on the host's own CPU threads: chunks sized for its caches. */
    bool host_threads;
    /* The device reads and writes host memory in place (zero-copy staging). */
    bool shares_host_memory;
    /* gemm_* are there. */
    bool has_gemm;
    /* Largest buffer one call hands the device, in bytes (0: no limit). */
    size_t max_buffer;
} mq_backend_caps;

struct mq_backend {
    const mq_backend_ops *ops;
    char backend[16];   /* "host" or "opencl": for reports, never for decisions */
    char platform[256]; /* "" for host */
    char device[256];   /* device name; "reference" for host */
    mq_backend_caps caps;
    /* Opened by the caller (mq_device_open) and lent to this call:
     * mq_backend_free leaves it open. */
    bool borrowed;
};

/* Which device a call runs on: the part of the public settings (mq_config,
 * mq_eval_options) that the back ends read. */
typedef struct {
    const char *spec;          /* as mq_config.device; NULL: "auto" */
    mq_device *handle;         /* an opened device to lend instead (NULL: none) */
    size_t max_alloc_override; /* testing: cap on one device buffer (0: the device's) */
} mq_device_sel;

/*
 * Opens the backend one single spec names (not a list: devset.h): "auto" the
 * first GPU or accelerator OpenCL device, else the host path; "host" the host
 * path; "opencl", "gpu", "cpu", "P:D" or a name: that OpenCL device.
 * `max_alloc_override` caps one device buffer (0 = device limit). The caller
 * frees it with mq_backend_free. The library reads no environment variable
 * and prints nothing here.
 */
mq_status mq_backend_open_spec(const char *spec, size_t max_alloc_override, mq_backend **out);
/* The CPU back end (cpu_backend.c), as spec "host" opens it. */
mq_status mq_backend_open_host(mq_backend **out);
void mq_backend_free(mq_backend *b);

/* The quantizer's entry points: every kind through the back end's one
 * quantize path (see the ops above). */
static inline mq_status mq_be_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                       size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                                       size_t *bad, struct mq_err_acc *err)
{
    return b->ops->quantize(b, d, src, dt, rows, cols, q, scale, zp, bad, err);
}

static inline mq_status mq_be_dequantize_source(mq_backend *b, mq_srcdesc d, const void *codes,
                                                uint64_t e0, size_t n, size_t cols,
                                                const void *scale, void *dst)
{
    return b->ops->dequantize_source(b, d, codes, e0, n, cols, scale, dst);
}

static inline mq_status mq_be_quantize_values(mq_backend *b, mq_qdesc d, const void *src,
                                              mq_dtype dt, size_t n, float scale, int8_t zp,
                                              void *q, struct mq_err_acc *err)
{
    return b->ops->quantize_values(b, d, src, dt, n, scale, zp, q, err);
}

/* The mse observer's scan of a call through b, or the reference's where b
 * has none. */
static inline mq_status mq_be_mse_scan(mq_backend *b, mq_qdesc d, const mq_obs_mse *o,
                                       const float *imp, const void *src, mq_dtype dt, size_t rows,
                                       size_t cols, uint8_t *mask, bool *improved, size_t *bad)
{
    if (!b->ops->mse_scan)
        return mq_obs_mse_scan(d, o, imp, src, dt, rows, cols, mask, improved, bad);
    return b->ops->mse_scan(b, d, o, imp, src, dt, rows, cols, mask, improved, bad);
}

/* The mse observer's second pass of a call through b, or the reference's. */
static inline mq_status mq_be_mse_quantize(mq_backend *b, mq_qdesc d, const mq_obs_mse *o,
                                           const float *imp, size_t limit, const uint8_t *mask,
                                           const void *src, mq_dtype dt, size_t rows, size_t cols,
                                           void *q, void *scale, int8_t *zp, size_t *bad,
                                           struct mq_err_acc *err)
{
    if (b->ops->mse_quantize)
        return b->ops->mse_quantize(b, d, o, imp, limit, mask, src, dt, rows, cols, q, scale, zp,
                                    bad, err);
    mq_status st =
        mq_obs_mse_quantize(d, o, imp, limit, mask, src, dt, rows, cols, q, scale, zp, bad);
    if (st == MQ_OK && err) mq_ref_error_stats(d, src, dt, rows, cols, q, scale, dt, zp, err);
    return st;
}

/*
 * The two-pass path (twopass.c) for groups larger than one call of b: the
 * statistics of each group through b's reduce, the parameters on the host,
 * the codes through b's quantize_values, each in pieces; the same inputs
 * and outputs as quantize. A back end calls it for what its buffers cannot
 * hold, and the streaming driver takes the same steps (mq_twopass_*) chunk by
 * chunk for a group larger than its staging slots, so that path exists once.
 */
mq_status mq_be_quantize_two_pass(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                  size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                                  size_t *bad, struct mq_err_acc *err);

/* One group in two passes, fed a piece at a time: mq_twopass_begin, then
 * mq_twopass_reduce over every piece of the group, mq_twopass_params once,
 * then mq_twopass_codes over every piece again. */
typedef struct {
    mq_qdesc d;
    mq_dtype dt;
    mq_ref_stats stats;
    float scale; /* set by mq_twopass_params */
    int8_t zp;
} mq_twopass;

void mq_twopass_begin(mq_twopass *t, mq_qdesc d, mq_dtype dt);
/* Folds n more values of the group into its statistics. */
mq_status mq_twopass_reduce(mq_backend *b, mq_twopass *t, const void *src, size_t n);
/* The group's scale and zero point from its statistics; MQ_STATUS_E_DATA with
 * *bad = g when the group holds a NaN or an infinity (the caller names it). */
mq_status mq_twopass_params(mq_twopass *t, size_t g, size_t *bad);
/* The codes of n values of the group, one per byte (int4 unpacked), with
 * their weight error into *err. */
mq_status mq_twopass_codes(mq_backend *b, const mq_twopass *t, const void *src, size_t n,
                           void *codes, struct mq_err_acc *err);

/*
 * A back end as the core knows it (ggml-backend's "reg"): its name, how to
 * open one of its devices, how to list them and its entry points beyond the
 * ops table. Back ends register in backend.c's table when they are built
 * (the CPU one in cpu_backend.c, the OpenCL one in host/cl_backend.c);
 * nothing else of a back end is visible to src/.
 * open: the device `spec` names (the back end's own name, "auto", or for
 * OpenCL "gpu", "cpu", "P:D" or a name substring). MQ_STATUS_E_DEVICE with
 * *none_found = true means it has no such device (for "auto", not an
 * error: the next back end is asked). `max_alloc_override` caps one device
 * buffer (0 = device limit).
 */
typedef struct {
    const char *name;
    mq_status (*open)(const char *spec, size_t max_alloc_override, bool *none_found,
                      mq_backend **out);
    mq_status (*list)(mq_device_list *out); /* (optional) */
    /* (optional) A named table of entry points beyond the ops (the test and
     * benchmark hooks of host/cl_api.h and cl_gemm.h), as ggml-backend's
     * get_proc_address; NULL for a name it does not know. */
    const void *(*get_proc_address)(const char *name);
} mq_backend_reg;

/* The registered back end called `name` ("host", "opencl"), or NULL when
 * this library was built without it. */
const mq_backend_reg *mq_backend_reg_by_name(const char *name);
/* get_proc_address(name) of back end `reg`; NULL when it is not built or
 * has no such entry. */
const void *mq_backend_get_proc(const char *reg, const char *name);

#endif
