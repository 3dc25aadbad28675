/* The OpenCL backend's state and the small helpers its operations share
 * (buffers, transfers, launches: cl_buffers.c). host/-internal. */
#ifndef MQ_CL_STATE_H
#define MQ_CL_STATE_H

#include "backend.h"
#include "cl_api.h"

#include <CL/cl.h>
#include <pthread.h>
#include <string.h>

/* Device buffers kept from call to call (each at most `limit` bytes), so that
 * repeated calls do not pay for allocation and, on CPU devices, first-touch page
 * faults every time. */
enum {
    MQ_CL_SLOT_IN,    /* input values */
    MQ_CL_SLOT_OUT,   /* int8 values, fp16 bits, dequantized values */
    MQ_CL_SLOT_SCALE, /* per-row scales */
    MQ_CL_SLOT_ZP,    /* per-row zero points */
    MQ_CL_SLOT_FLAGS, /* per-row or per-segment NaN/Inf flags; the fp16 overflow count */
    MQ_CL_SLOT_LO,    /* split path: partial minima */
    MQ_CL_SLOT_HI,    /* split path: partial maxima */
    MQ_CL_SLOT_ESUM,  /* weight error sums per row or per work-group */
    MQ_CL_SLOT_ECL,   /* clamped counts per row or per work-group */
    MQ_CL_SLOT_SRC,   /* a quantized source's codes */
    MQ_CL_SLOT_SRCSC, /* a quantized source's scale rows */
    MQ_CL_SLOT_COUNT
};

typedef struct {
    cl_mem mem;
    size_t cap;
} mq_cl_slot;

/* A block of staging memory (cl_staging.c): ptr is what the pipeline uses;
 * host is our own allocation behind a zero-copy buffer (NULL when pinned);
 * mapped: the host may use it (no kernel may). */
#define MQ_CL_MAX_STAGES 32
typedef struct {
    void *ptr;
    size_t n;
    cl_mem mem;
    void *host;
    bool mapped;
} mq_cl_stage;

/* Device buffers of one overlapped chunk (cl_pipeline.c); two sets. */
enum {
    MQ_CL_PIPE_IN,
    MQ_CL_PIPE_Q,
    MQ_CL_PIPE_SCALE,
    MQ_CL_PIPE_ZP,
    MQ_CL_PIPE_BAD,
    MQ_CL_PIPE_ESUM,
    MQ_CL_PIPE_ECL,
    MQ_CL_PIPE_COUNT
};

/* Kernels per input dtype are indexed by mq_dtype: F32 = 0, F16 = 1, BF16 = 2 (F64 = 3). */
typedef struct {
    mq_backend base; /* first, so the table's mq_backend * is this */
    cl_context ctx;
    cl_command_queue queue;
    cl_device_id dev;
    cl_program prog;
    cl_kernel fused[3];     /* mq_quantize_rows_<dt> */
    cl_kernel fused_err[3]; /* mq_quantize_rows_err_<dt> */
    cl_kernel stats[3];     /* mq_row_stats_<dt> */
    cl_kernel fixed[3];     /* mq_quantize_fixed_<dt> */
    cl_kernel fixed_err[3]; /* mq_quantize_fixed_err_<dt> */
    cl_kernel dequant[3];   /* mq_dequantize_<dt> */
    cl_kernel cast[4];      /* mq_cast_f16_<dt>; none for F16 */
    cl_kernel rows_k[3];    /* mq_quantize_rows_k_<dt>: int4 and float8 rows */
    cl_kernel rows_k_err[3];
    cl_kernel values_k[3]; /* mq_quantize_values_k_<dt> */
    cl_kernel values_k_err[3];
    cl_kernel blocks[3]; /* mq_quantize_blocks_<dt>: float8 2-D blocks */
    cl_kernel blocks_err[3];
    cl_kernel source_fp8; /* mq_src_fp8_block (source.cl) */
    cl_kernel div_check;
    cl_kernel mse;   /* mq_mse_errors (every dtype: its argument) */
    size_t wg;       /* work-group size; MQ_WG in the kernels */
    size_t limit;    /* bytes of the largest buffer made */
    size_t per_item; /* values per work-item the fused kernel aims for */
    int div_mode;
    cl_uint compute_units;
    mq_cl_slot slots[MQ_CL_SLOT_COUNT];
    int staging;      /* mq_cl_staging_mode, never AUTO */
    size_t max_alloc; /* the device's largest buffer */
    mq_cl_stage stages[MQ_CL_MAX_STAGES];
    pthread_mutex_t stage_mu;
    size_t stage_takes; /* buffers handed to kernels in place (for the tests) */
    cl_command_queue_properties qprops;
    bool overlap;                         /* fused rows go through cl_pipeline.c */
    size_t overlap_chunk;                 /* input bytes per overlapped chunk */
    cl_command_queue pq[3];               /* upload, kernels, download (made when first used) */
    mq_cl_slot pipe[2][MQ_CL_PIPE_COUNT]; /* double-buffered chunk buffers */
    size_t overlap_calls, overlap_chunks; /* for the tests */
    cl_int fail_code;                     /* of the last mq_cl_failed: what the retry looks at */
} mq_cl_backend;

/* Rows at least this long go through the split (two-pass) path. */
#define MQ_CL_SPLIT_COLS ((size_t)1 << 18)
/* Buffers stay below this many bytes even on devices that allow more. */
#define MQ_CL_CHUNK_CAP ((size_t)256 << 20)

typedef struct {
    size_t size;
    const void *ptr;
} mq_cl_arg;
#define MQ_CL_ARG(x)                                                                               \
    {                                                                                              \
        sizeof(x), &(x)                                                                            \
    }

/* The fused rows kernel's two scheme arguments (arguments 4 and 5 of
 * quantize.cl's rows kernels): symmetric and code_xor for int8, kind and
 * symmetric for the other kinds. a4 and a5 point into the struct itself, so
 * it is filled where it is used and never copied. */
typedef struct {
    cl_int sym, kind;
    cl_uchar code_xor;
    mq_cl_arg a4, a5;
} mq_cl_kind_args;

/* numerics.cl numbers the kinds as qkind.h does: the descriptor's kind is
 * the kernel's kind argument as it is. */
_Static_assert(MQ_QK_INT8 == 0 && MQ_QK_INT4 == 1 && MQ_QK_FP8 == 2 && MQ_QK_MXFP4 == 3 &&
                   MQ_QK_MXFP8 == 4 && MQ_QK_NVFP4 == 5,
               "qkind.h and numerics.cl number the kinds alike");

static inline void mq_cl_kind_args_init(mq_cl_kind_args *k, mq_qdesc d)
{
    k->sym = d.symmetric ? 1 : 0;
    /* NVFP4 is symmetric only: the argument carries its global scale's fp32
     * bits instead (quantize.cl's rows body reads them back). */
    if (d.kind == MQ_QK_NVFP4) memcpy(&k->sym, &d.gscale, sizeof k->sym);
    k->kind = (cl_int)d.kind;
    k->code_xor = d.code_xor;
    if (d.kind == MQ_QK_INT8) {
        k->a4 = (mq_cl_arg)MQ_CL_ARG(k->sym);
        k->a5 = (mq_cl_arg)MQ_CL_ARG(k->code_xor);
    } else {
        k->a4 = (mq_cl_arg)MQ_CL_ARG(k->kind);
        k->a5 = (mq_cl_arg)MQ_CL_ARG(k->sym);
    }
}

mq_status mq_cl_buffer(mq_cl_backend *cb, cl_mem_flags flags, size_t bytes, cl_mem *out);
/* The kept buffer of `slot`, grown to hold `bytes`; the backend owns it. */
mq_status mq_cl_slot_get(mq_cl_backend *cb, int slot, size_t bytes, cl_mem *out);
/* Kept buffer s (a slot or a pipeline buffer), grown to hold `bytes`. */
mq_status mq_cl_slot_grow(mq_cl_backend *cb, mq_cl_slot *s, size_t bytes, cl_mem *out);
/* Non-blocking transfers on the in-order queue; mq_cl_finish waits for them. */
mq_status mq_cl_write(mq_cl_backend *cb, cl_mem buf, size_t bytes, const void *src);
mq_status mq_cl_read(mq_cl_backend *cb, cl_mem buf, size_t bytes, void *dst);
mq_status mq_cl_finish(mq_cl_backend *cb);
/* MQ_STATUS_E_INVALID_ARG naming `what` when rows x cols values of es bytes
 * overflow size_t. */
mq_status mq_cl_check_rows(const char *what, size_t rows, size_t cols, size_t es);
/* Sets the arguments and enqueues `items` work-items (rounded up to the work-group). */
mq_status mq_cl_launch(mq_cl_backend *cb, cl_kernel k, const mq_cl_arg *args, size_t nargs,
                       size_t items, cl_event *ev);
/* The same on queue `q` after the nwait events of `wait`. */
mq_status mq_cl_launch_on(mq_cl_backend *cb, cl_command_queue q, cl_kernel k, const mq_cl_arg *args,
                          size_t nargs, size_t items, cl_uint nwait, const cl_event *wait,
                          cl_event *ev);
void mq_cl_release(cl_mem *m);

/* mq_cl_fail for a call made for cb's operations; the code is kept in
 * cb->fail_code, where the out-of-memory retry reads it. */
mq_status mq_cl_failed(mq_cl_backend *cb, cl_int err, const char *call);

/* The out-of-memory retry halves the buffers down to one row of the data, or
 * to pieces of this many bytes of a longer row or of a run of values. */
#define MQ_CL_OOM_PIECE ((size_t)64 << 10)
/* One attempt of an operation (cl_retry.c): writes every output from scratch
 * and adds its weight error (if any) to err. */
typedef mq_status (*mq_cl_attempt)(mq_cl_backend *cb, const void *job, struct mq_err_acc *err);
/*
 * The one out-of-memory retry (cl_retry.c): runs attempt on an operation of
 * `total` bytes of rows of `row_bytes` bytes (0: a run of values, which may
 * be split anywhere). While an attempt fails because the device ran out of
 * memory (the code it failed with, kept by mq_cl_failed) and the buffers can
 * be halved without going below that floor, it waits for the queue, releases
 * the kept buffers, halves the buffer limit and runs the attempt again. Each
 * attempt sums its own weight error, which is added to *err (NULL: none) only
 * when it succeeds. Returns the last attempt's status; an out-of-memory
 * failure that is not retried also says how small the buffers were. With
 * retried_on (NULL: not wanted) the code of the last failure retried on, or
 * CL_SUCCESS.
 */
mq_status mq_cl_retry(mq_cl_backend *cb, mq_cl_attempt attempt, const void *job, size_t total,
                      size_t row_bytes, struct mq_err_acc *err, cl_int *retried_on);
/* Work-items per row for the fused kernel: a power of two <= wg. */
size_t mq_cl_threads_per_row(const mq_cl_backend *cb, size_t cols);

/* Weight error partials (four floats and a count each, as the _err kernels
 * write them) added to *acc in order. */
void mq_cl_fold_err(struct mq_err_acc *acc, const float *es, const cl_uint *ecl, size_t parts);

/*
 * One fused rows call with overlapped transfers (cl_pipeline.c): the rows in
 * chunks of `rpc` rows, each uploaded on one queue, quantized by kernel `k`
 * on a second and downloaded on a third, with two sets of device buffers, so
 * that the upload of chunk c+1, the kernel of chunk c and the download of
 * chunk c-1 can run at once. The kernel's arguments are those of the fused
 * kernels: (in, rows, cols, tpr, a4, a5, q, scale, zp, bad[, esum, ecl]).
 */
typedef struct {
    cl_kernel k;
    mq_cl_arg a4, a5; /* the kind's or scheme's two arguments after tpr */
    size_t tpr, rows, cols, rpc;
    size_t in_row, q_row, scale_row; /* bytes per row of input, codes, scale */
    const uint8_t *src;
    uint8_t *q, *scale;
    int8_t *zp; /* NULL: zero points not read */
} mq_cl_rows_job;
mq_status mq_cl_rows_overlapped(mq_cl_backend *cb, const mq_cl_rows_job *j, size_t *bad_row,
                                struct mq_err_acc *err);
/* Waits for and releases the overlap queues' buffers (queues stay). */
void mq_cl_pipeline_release(mq_cl_backend *cb);
/* mq_cl_pipeline_release, then the queues. */
void mq_cl_pipeline_free(mq_cl_backend *cb);

/* Staging memory (backend.h: staging_alloc / staging_free); NULL when none can
 * be made, and the caller uses plain memory. */
void *mq_cl_staging_alloc(mq_backend *b, size_t n);
void mq_cl_staging_free(mq_backend *b, void *p);
void mq_cl_stages_free(mq_cl_backend *cb);
/* The zero-copy buffer that starts at p and holds `bytes`, handed to the
 * device (unmapped) for kernels to use; NULL when p is not such a block (the
 * caller copies). mq_cl_stage_give(m) maps it back, after the kernels: a
 * blocking map, so their results are then visible to the host. */
cl_mem mq_cl_stage_take(mq_cl_backend *cb, const void *p, size_t bytes);
mq_status mq_cl_stage_give(mq_cl_backend *cb, cl_mem m);

/* backend.h: quantize and quantize_values, every kind; the weight error
 * (err) computed by the _err kernels in the same pass. */
mq_status mq_cl_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t rows,
                         size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                         struct mq_err_acc *err);
mq_status mq_cl_quantize_values(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t n,
                                float scale, int8_t zp, void *q, struct mq_err_acc *err);
/* The first pass of a row longer than one call: statistics of a run of
 * values folded into *st. */
mq_status mq_cl_reduce(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                       struct mq_ref_stats *st);
mq_status mq_cl_cast_f16(mq_backend *b, const void *src, mq_dtype dt, size_t n, bool saturate,
                         uint16_t *dst, uint64_t *overflow);
mq_status mq_cl_dequantize_rows(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                const void *scale, const int8_t *zp, mq_dtype dt, void *dst);

/* backend.h: dequantize_source (cl_source.c) and quantize_source
 * (cl_qsource.c). mq_cl_source_launch enqueues the source kernel on values
 * [e0, e0 + n) whose codes and scale rows (from grid row first_srow) are in
 * device buffers, into `out` (no wait). */
mq_status mq_cl_dequantize_source(mq_backend *b, mq_srcdesc d, const void *codes, uint64_t e0,
                                  size_t n, size_t cols, const void *scale, void *dst);
/* MQ_STATUS_E_INVALID_ARG for a source the kernel does not read. */
mq_status mq_cl_check_source(mq_srcdesc d, size_t cols);
mq_status mq_cl_source_launch(mq_cl_backend *cb, mq_srcdesc d, cl_mem codes, uint64_t e0, size_t n,
                              size_t cols, cl_mem scale, uint64_t first_srow, cl_mem out);
mq_status mq_cl_quantize_source(mq_backend *b, mq_qdesc d, mq_srcdesc sd, const void *codes,
                                uint64_t e0, size_t src_cols, const void *scale, size_t rows,
                                size_t cols, void *q, void *qscale, int8_t *zp, size_t *bad,
                                struct mq_err_acc *err, void *scratch);
/* backend.h: mse_scan and mse_quantize (cl_mse.c). mq_cl_mse_errors is the
 * scan's device part, the error of every step of every group (groups x
 * steps floats), also a test hook. */
mq_status mq_cl_mse_scan(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                         const void *src, mq_dtype dt, size_t rows, size_t cols, uint8_t *mask,
                         bool *improved, size_t *bad);
mq_status mq_cl_mse_quantize(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                             size_t limit, const uint8_t *mask, const void *src, mq_dtype dt,
                             size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                             size_t *bad, struct mq_err_acc *err);
mq_status mq_cl_mse_errors(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                           const void *src, mq_dtype dt, size_t rows, size_t cols, float *err,
                           size_t *bad);

/* The hooks of cl_api.h and cl_gemm.h (the registry entry in cl_backend.c
 * hands them out): cl_staging.c, cl_pipeline.c, cl_profile.c, cl_gemm.c. */
size_t mq_cl_zero_copy_count(const mq_backend *b);
bool mq_cl_overlaps(const mq_backend *b);
size_t mq_cl_overlap_calls(const mq_backend *b);
size_t mq_cl_overlap_chunks(const mq_backend *b);
mq_status mq_cl_profile_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                 size_t rows, size_t cols, int iters, mq_cl_profile *out);
mq_status mq_cl_profile_transfer(mq_backend *b, const void *in, size_t in_bytes, void *out,
                                 size_t out_bytes, int iters, double *h2d_s, double *d2h_s);
bool mq_cl_gemm_supported(const mq_backend *b);
mq_status mq_cl_gemm_new(mq_backend *b, void (*note)(const char *note, void *user), void *user,
                         mq_gemm **out);
void mq_cl_gemm_free(mq_gemm *g);
mq_status mq_cl_gemm_set_input(mq_gemm *g, const float *x, size_t tokens, size_t in);
mq_status mq_cl_gemm_linear(mq_gemm *g, const float *w, size_t out, float *y);
mq_status mq_cl_gemm_linear_q8(mq_gemm *g, const int8_t *q, const float *scale, const int8_t *zp,
                               size_t out, float *y);
const char *mq_cl_blast_status_name(int code);
void mq_cl_gemm_device_info(const mq_backend *b, unsigned *units, unsigned *mhz, bool *cpu);
mq_status mq_cl_gemm_time_sgemm(mq_gemm *g, size_t m, size_t n, size_t k, int iters,
                                double *first_s, double *median_s);

/* The devices of every platform as the public mq_device_list (cl_inventory.c). */
mq_status mq_cl_device_list(mq_device_list *out);

#endif
