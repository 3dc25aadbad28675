/* Device faults on the OpenCL backend, injected by wrapping clCreateBuffer and
 * clEnqueueNDRangeKernel (see test_devfault.cmake): a device out of memory
 * makes an operation retry with buffers half as large, down to one row, with
 * outputs byte-identical to the reference; below one row it fails cleanly,
 * naming the tensor and the OpenCL error. Other errors are not retried. */
#define CL_TARGET_OPENCL_VERSION 120
#include "testutil.h"

#include "backend.h"
#include "cl_api.h"
#include "reference.h"

#include <CL/cl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the injected faults ---- */

static size_t g_fail_above; /* clCreateBuffer of more bytes fails; 0: never */
static cl_int g_fail_code = CL_MEM_OBJECT_ALLOCATION_FAILURE;
static int g_launch_failures; /* the next launches to fail with g_fail_code */
static int g_launch_skip;     /* launches that succeed before those failures */
static int g_injected;        /* failures injected so far */
static size_t g_largest;      /* largest buffer created */

cl_mem __real_clCreateBuffer(cl_context ctx, cl_mem_flags flags, size_t size, void *host,
                             cl_int *err);
cl_mem __wrap_clCreateBuffer(cl_context ctx, cl_mem_flags flags, size_t size, void *host,
                             cl_int *err);
cl_int __real_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dim,
                                     const size_t *offset, const size_t *global,
                                     const size_t *local, cl_uint nwait, const cl_event *wait,
                                     cl_event *ev);
cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dim,
                                     const size_t *offset, const size_t *global,
                                     const size_t *local, cl_uint nwait, const cl_event *wait,
                                     cl_event *ev);

cl_mem __wrap_clCreateBuffer(cl_context ctx, cl_mem_flags flags, size_t size, void *host,
                             cl_int *err)
{
    if (g_fail_above && size > g_fail_above) {
        g_injected++;
        if (err) *err = g_fail_code;
        return NULL;
    }
    if (size > g_largest) g_largest = size;
    return __real_clCreateBuffer(ctx, flags, size, host, err);
}

cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dim,
                                     const size_t *offset, const size_t *global,
                                     const size_t *local, cl_uint nwait, const cl_event *wait,
                                     cl_event *ev)
{
    if (g_launch_skip > 0) {
        g_launch_skip--;
    } else if (g_launch_failures > 0) {
        g_launch_failures--;
        g_injected++;
        return g_fail_code;
    }
    return __real_clEnqueueNDRangeKernel(q, k, dim, offset, global, local, nwait, wait, ev);
}

static void faults(size_t fail_above, cl_int code, int launch_failures)
{
    g_fail_above = fail_above;
    g_fail_code = code;
    g_launch_failures = launch_failures;
    g_launch_skip = 0;
    g_injected = 0;
    g_largest = 0;
}

static int reset(void **state)
{
    (void)state;
    faults(0, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    return 0;
}

/* A fresh backend for each test: the retry lowers its buffer limit for good.
 * `limit` caps its buffers (0: the device's own limit). */
static mq_backend *open_device(size_t limit)
{
    bool none = false;
    mq_backend *b = NULL;
    mq_status st = mq_opencl_backend_open("opencl", limit, &none, &b);
    if (st != MQ_OK) {
        if (!none) fail_msg("OpenCL backend: %s", mq_last_error());
        print_message("no OpenCL device: %s\n", mq_last_error());
        return NULL;
    }
    return b;
}

#define NEED_DEVICE_LIMIT(b, limit)                                                                \
    mq_backend *b = open_device(limit);                                                            \
    if (!b) skip()
#define NEED_DEVICE(b) NEED_DEVICE_LIMIT(b, 0)

static void assert_error_has(const char *word)
{
    if (!strstr(mq_last_error(), word))
        fail_msg("error \"%s\" lacks \"%s\"", mq_last_error(), word);
}

#define ROWS 96
#define COLS 300 /* one F32 row: 1200 bytes */
#define ROW_BYTES (COLS * 4)

static float *random_rows(size_t n, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    float *w = malloc(n * sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w[i] = tu_rng_normal(&r) * (1 + (float)(i % 7));
    return w;
}

/* quantize_rows on the device equals the reference, sym and asym. */
static void check_quantize(mq_backend *b, const float *w)
{
    for (int sym = 0; sym < 2; sym++) {
        int8_t q[ROWS * COLS], rq[ROWS * COLS], zp[ROWS], rzp[ROWS];
        float s[ROWS], rs[ROWS];
        size_t bad = 0;
        memset(q, 0x55, sizeof q);
        memset(zp, 0x55, sizeof zp);
        mq_status st = b->ops->quantize(b, mq_qd(MQ_QK_INT8, sym), w, MQ_DTYPE_F32, ROWS, COLS, q,
                                        s, sym ? NULL : zp, &bad, NULL);
        if (st != MQ_OK) fail_msg("quantize_rows: %s", mq_last_error());
        assert_int_equal(mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), w, MQ_DTYPE_F32, ROWS, COLS, rq,
                                         rs, sym ? NULL : rzp, &bad),
                         MQ_OK);
        assert_memory_equal(q, rq, sizeof q);
        assert_memory_equal(s, rs, sizeof s);
        if (!sym) assert_memory_equal(zp, rzp, sizeof zp);
    }
}

/* Each out-of-memory code, from clCreateBuffer: smaller buffers, same bytes. */
static void test_quantize_retry(void **state)
{
    (void)state;
    static const cl_int codes[] = {CL_MEM_OBJECT_ALLOCATION_FAILURE, CL_OUT_OF_RESOURCES,
                                   CL_OUT_OF_HOST_MEMORY};
    float *w = random_rows(ROWS * COLS, 1);
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        NEED_DEVICE(b);
        faults(8 * ROW_BYTES, codes[i], 0);
        check_quantize(b, w);
        assert_true(g_injected > 0);
        assert_string_equal(mq_last_error(), ""); /* a retry that succeeds leaves no message */
        assert_true(g_largest <= 8 * ROW_BYTES);
        /* The lowered limit stays: the next call needs no retry. */
        g_injected = 0;
        check_quantize(b, w);
        assert_int_equal(g_injected, 0);
        mq_backend_free(b);
    }
    free(w);
}

/* Less memory than one row: a clean error with the OpenCL code and the size. */
static void test_below_one_row(void **state)
{
    (void)state;
    NEED_DEVICE(b);
    float *w = random_rows(ROWS * COLS, 2);
    int8_t *q = malloc(ROWS * COLS);
    float s[ROWS];
    size_t bad = 0;
    faults(ROW_BYTES - 1, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    mq_status st = b->ops->quantize(b, mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, q, s,
                                    NULL, &bad, NULL);
    assert_int_equal(st, MQ_STATUS_E_DEVICE);
    assert_error_has("out of device memory");
    assert_error_has("one row of 1200 bytes");
    assert_error_has("clCreateBuffer");
    assert_error_has("CL_MEM_OBJECT_ALLOCATION_FAILURE");
    assert_true(g_injected > 1); /* it did retry before giving up */
    /* The backend still works once memory is back. */
    faults(0, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    check_quantize(b, w);
    mq_backend_free(b);
    free(q);
    free(w);
}

/* Rows longer than the retry's floor (64 KiB): halving the buffers below one
 * row sends the next attempt through the two-pass path, which gives the same
 * bytes, int8 and int4 alike (with the weight error summed once). */
static void test_retry_below_a_long_row(void **state)
{
    (void)state;
    enum { LR = 3, LC = 32768 }; /* rows of 128 KiB */
    float *w = random_rows((size_t)LR * LC, 5);
    uint8_t *q = malloc((size_t)LR * LC), *rq = malloc((size_t)LR * LC);
    assert_true(q && rq);
    static const mq_qkind kinds[] = {MQ_QK_INT8, MQ_QK_INT4};
    for (size_t k = 0; k < 2; k++) {
        NEED_DEVICE(b);
        mq_qdesc d = mq_qd(kinds[k], false);
        float s[LR], rs[LR];
        int8_t zp[LR], rzp[LR];
        size_t bad = 0, qb = mq_qkind_row_bytes(d.kind, LC) * LR;
        mq_err_acc e, re;
        mq_err_acc_init(&e);
        mq_err_acc_init(&re);
        faults(96 << 10, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
        mq_status st = b->ops->quantize(b, d, w, MQ_DTYPE_F32, LR, LC, q, s, zp, &bad, &e);
        if (st != MQ_OK) fail_msg("quantize: %s", mq_last_error());
        assert_true(g_injected > 0);
        assert_true(g_largest <= 96 << 10);
        assert_int_equal(mq_ref_quantize(d, w, MQ_DTYPE_F32, LR, LC, rq, rs, rzp, &bad), MQ_OK);
        assert_memory_equal(q, rq, qb);
        assert_memory_equal(s, rs, sizeof s);
        assert_memory_equal(zp, rzp, sizeof zp);
        mq_ref_error_stats(d, w, MQ_DTYPE_F32, LR, LC, rq, rs, MQ_DTYPE_F32, rzp, &re);
        assert_true(fabs(e.err2 - re.err2) <= 1e-5 * re.err2);
        assert_int_equal(e.clamped, re.clamped);
        mq_backend_free(b);
    }
    free(rq);
    free(q);
    free(w);
}

/* A launch that fails for want of resources is retried as well. */
static void test_launch_retry(void **state)
{
    (void)state;
    NEED_DEVICE(b);
    float *w = random_rows(ROWS * COLS, 3);
    faults(0, CL_OUT_OF_RESOURCES, 3);
    check_quantize(b, w);
    assert_int_equal(g_launch_failures, 0);
    assert_int_equal(g_injected, 3);
    mq_backend_free(b);
    free(w);
}

/* The weight error statistics of an attempt that failed part-way are
 * dropped: after the retry each value counts once. Buffers of 8 rows make
 * 12 launches; the 6th fails, after 5 chunks' statistics were summed. */
static void test_error_stats_retry(void **state)
{
    (void)state;
    NEED_DEVICE_LIMIT(b, 8 * ROW_BYTES);
    float *w = random_rows(ROWS * COLS, 4);
    int8_t *q = malloc(ROWS * COLS), *rq = malloc(ROWS * COLS);
    float s[ROWS], rs[ROWS];
    size_t bad = 0;
    assert_true(q && rq);
    mq_err_acc got, want;
    mq_err_acc_init(&got);
    mq_err_acc_init(&want);
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, rq, rs, NULL, &bad),
        MQ_OK);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, rq, rs, MQ_DTYPE_F32,
                       NULL, &want);
    faults(0, CL_OUT_OF_RESOURCES, 1);
    g_launch_skip = 5;
    mq_status st = b->ops->quantize(b, mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, q, s,
                                    NULL, &bad, &got);
    if (st != MQ_OK) fail_msg("quantize_rows with statistics: %s", mq_last_error());
    assert_int_equal(g_injected, 1);
    assert_memory_equal(q, rq, ROWS * COLS);
    assert_memory_equal(s, rs, sizeof s);
    assert_true(fabs(got.sig - want.sig) <= 1e-5 * want.sig);
    assert_true(fabs(got.err2 - want.err2) <= 1e-5 * want.err2);
    assert_int_equal(got.clamped, want.clamped);
    mq_backend_free(b);
    free(q);
    free(rq);
    free(w);
}

/* Rows shorter than their 16 bytes of error sums: those buffers keep within
 * the buffer limit too (a device refusing anything larger sees no request
 * beyond it). */
static void test_short_rows_within_limit(void **state)
{
    (void)state;
    NEED_DEVICE_LIMIT(b, 4096);
    enum { R = 3000, C = 2 };
    float *w = random_rows(R * C, 5), s[R], rs[R];
    int8_t q[R * C], rq[R * C];
    size_t bad = 0;
    mq_err_acc got, want;
    mq_err_acc_init(&got);
    mq_err_acc_init(&want);
    faults(4096, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    mq_status st =
        b->ops->quantize(b, mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, R, C, q, s, NULL, &bad, &got);
    if (st != MQ_OK) fail_msg("quantize_rows with statistics: %s", mq_last_error());
    assert_int_equal(g_injected, 0);
    assert_true(g_largest <= 4096);
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, R, C, rq, rs, NULL, &bad), MQ_OK);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, R, C, rq, rs, MQ_DTYPE_F32, NULL,
                       &want);
    assert_memory_equal(q, rq, sizeof q);
    assert_memory_equal(s, rs, sizeof s);
    assert_true(fabs(got.sig - want.sig) <= 1e-5 * want.sig);
    assert_int_equal(got.clamped, want.clamped);
    mq_backend_free(b);
    free(w);
}

/* Any other error is reported at once, without a retry. */
static void test_other_error_not_retried(void **state)
{
    (void)state;
    NEED_DEVICE(b);
    float *w = random_rows(ROWS * COLS, 4);
    int8_t *q = malloc(ROWS * COLS);
    float s[ROWS];
    size_t bad = 0;
    faults(1, CL_INVALID_VALUE, 0);
    mq_status st = b->ops->quantize(b, mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, q, s,
                                    NULL, &bad, NULL);
    assert_int_equal(st, MQ_STATUS_E_DEVICE);
    assert_int_equal(g_injected, 1);
    assert_error_has("CL_INVALID_VALUE");
    assert_null(strstr(mq_last_error(), "out of device memory"));
    faults(0, CL_INVALID_VALUE, 1);
    st = b->ops->quantize(b, mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, q, s, NULL, &bad,
                          NULL);
    assert_int_equal(st, MQ_STATUS_E_DEVICE);
    assert_int_equal(g_injected, 1);
    assert_error_has("clEnqueueNDRangeKernel");
    mq_backend_free(b);
    free(q);
    free(w);
}

/* The other operations retry too: cast, dequantize, reduce, fixed-parameter
 * quantize. Runs of values go down to pieces of 64 KiB. */
static void test_other_ops_retry(void **state)
{
    (void)state;
    NEED_DEVICE(b);
    enum { N = 100000 }; /* 400 KB of F32 */
    const size_t fail_above = 128 << 10;
    float *w = random_rows(N, 5);
    w[7] = 70000.0f; /* one fp16 overflow */
    uint16_t *h = malloc(N * 2), *rh = malloc(N * 2);
    uint64_t over = 0;
    faults(fail_above, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    assert_int_equal(b->ops->cast_f16(b, w, MQ_DTYPE_F32, N, false, h, &over), MQ_OK);
    assert_int_equal(over, mq_ref_cast_f16(w, MQ_DTYPE_F32, N, false, rh));
    assert_int_equal(over, 1);
    assert_memory_equal(h, rh, N * 2);
    assert_true(g_injected > 0);
    assert_true(g_largest <= fail_above);
    mq_backend_free(b);

    /* dequantize: 50 rows of 100 (400-byte rows), F32 scales and zero points */
    b = open_device(0);
    int8_t q[5000], zp[50];
    float sc[50], out[5000], rout[5000];
    for (int i = 0; i < 5000; i++)
        q[i] = (int8_t)(i * 37);
    for (int r = 0; r < 50; r++) {
        sc[r] = 0.01f * (float)(r + 1);
        zp[r] = (int8_t)(r - 25);
    }
    faults(1024, CL_OUT_OF_RESOURCES, 0);
    assert_int_equal(b->ops->dequantize_rows(b, q, 50, 100, sc, zp, MQ_DTYPE_F32, out), MQ_OK);
    mq_ref_dequantize_rows(q, 50, 100, sc, zp, MQ_DTYPE_F32, rout);
    assert_memory_equal(out, rout, sizeof out);
    assert_true(g_injected > 0);
    mq_backend_free(b);

    /* the streaming steps, when the backend has them */
    b = open_device(0);
    if (b->ops->reduce && b->ops->quantize_values) {
        mq_ref_stats st, rst;
        mq_ref_stats_init(&st);
        mq_ref_stats_init(&rst);
        faults(fail_above, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
        assert_int_equal(b->ops->reduce(b, w, MQ_DTYPE_F32, N, &st), MQ_OK);
        mq_ref_stats_update(&rst, w, MQ_DTYPE_F32, N);
        assert_true(st.lo == rst.lo && st.hi == rst.hi && st.amax == rst.amax);
        assert_int_equal(st.nonfinite, rst.nonfinite);
        assert_true(g_injected > 0);
        mq_backend_free(b);
        b = open_device(0);
        int8_t *v = malloc(N), *rv = malloc(N);
        faults(fail_above, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
        assert_int_equal(b->ops->quantize_values(b, mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_F32, N,
                                                 0.05f, 3, v, NULL),
                         MQ_OK);
        mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, N, 0.05f, 3, rv);
        assert_memory_equal(v, rv, N);
        assert_true(g_injected > 0);
        /* below the 64 KiB floor a run fails cleanly */
        mq_backend_free(b);
        b = open_device(0);
        faults(1000, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
        assert_int_equal(b->ops->quantize_values(b, mq_qd(MQ_QK_INT8, false), w, MQ_DTYPE_F32, N,
                                                 0.05f, 3, v, NULL),
                         MQ_STATUS_E_DEVICE);
        assert_error_has("out of device memory with buffers of");
        assert_error_has("CL_MEM_OBJECT_ALLOCATION_FAILURE");
        free(v);
        free(rv);
    }
    mq_backend_free(b);
    free(h);
    free(rh);
    free(w);
}

/* Through mq_quantize_file: with a little memory the file equals the host's;
 * with less than a row the error names the file, the tensor and the code. */
static void test_file_run(void **state)
{
    (void)state;
    mq_backend *probe = open_device(0);
    if (!probe) skip();
    mq_backend_free(probe);
    char *dir = tu_mkdtemp();
    char *in = tu_join(dir, "in.safetensors"), *host = tu_join(dir, "host.safetensors");
    char *dev = tu_join(dir, "dev.safetensors");
    float *w = random_rows(64 * 512, 6);
    mq_model *m = NULL;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(m, "blocks.0.mlp.weight", MQ_DTYPE_F32, 2, (int64_t[]){64, 512}, w),
        MQ_OK);
    assert_int_equal(mq_model_save(m, in), MQ_OK);
    mq_model_free(m);

    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_quantize_file(in, host, &cfg, NULL), MQ_OK);
    assert_int_equal(mq_config_set_device(&cfg, "opencl"), MQ_OK);
    faults(16 * 512 * 4, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    if (mq_quantize_file(in, dev, &cfg, NULL) != MQ_OK)
        fail_msg("device run with little memory: %s", mq_last_error());
    assert_true(g_injected > 0);
    assert_int_equal(tu_file_hash(dev), tu_file_hash(host));
    unlink(dev);

    faults(512 * 4 - 1, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    assert_int_equal(mq_quantize_file(in, dev, &cfg, NULL), MQ_STATUS_E_DEVICE);
    assert_error_has(in);
    assert_error_has("tensor 'blocks.0.mlp.weight'");
    assert_error_has("out of device memory");
    assert_error_has("CL_MEM_OBJECT_ALLOCATION_FAILURE");
    assert_false(tu_exists(dev));
    assert_int_equal(tu_count_entries(dir), 2);
    faults(0, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);

    mq_config_free(&cfg);
    tu_rmtree(dir);
    free(dir);
    free(in);
    free(host);
    free(dev);
    free(w);
}

/* The overlapped path (forced on): a launch failing mid-pipeline, after
 * chunks already on their way, returns the error at once (no retry, no hang),
 * and the backend then quantizes correctly; an out-of-memory retry of the
 * pipeline gives the same bytes. */
static void test_overlap_fault(void **state)
{
    (void)state;
    mq_cl_options o;
    mq_cl_options_init(&o);
    o.staging = MQ_CL_STAGING_PINNED;
    o.overlap = MQ_CL_OVERLAP_ON;
    o.overlap_chunk = 4 * ROW_BYTES; /* 24 chunks */
    bool none = false;
    mq_backend *b = NULL;
    if (mq_opencl_backend_open_opts("opencl", &o, &none, &b) != MQ_OK) {
        if (!none) fail_msg("OpenCL backend: %s", mq_last_error());
        skip();
    }
    float *w = random_rows(ROWS * COLS, 6);
    int8_t *q = malloc(ROWS * COLS);
    float s[ROWS];
    size_t bad = 0;
    for (int with_err = 0; with_err < 2; with_err++) {
        mq_err_acc e;
        mq_err_acc_init(&e);
        size_t chunks = mq_opencl_overlap_chunks(b);
        faults(0, CL_INVALID_VALUE, 1);
        g_launch_skip = 5;
        mq_status st = b->ops->quantize(b, mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, ROWS, COLS, q,
                                        s, NULL, &bad, with_err ? &e : NULL);
        assert_int_equal(st, MQ_STATUS_E_DEVICE);
        assert_int_equal(g_injected, 1);
        assert_error_has("clEnqueueNDRangeKernel");
        assert_int_equal(mq_opencl_overlap_chunks(b) - chunks, 5);
        faults(0, CL_INVALID_VALUE, 0);
        check_quantize(b, w);
    }
    faults(16 * ROW_BYTES, CL_MEM_OBJECT_ALLOCATION_FAILURE, 0);
    o.overlap_chunk = 32 * ROW_BYTES; /* buffers past the limit: the retry halves them */
    mq_backend_free(b);
    assert_int_equal(mq_opencl_backend_open_opts("opencl", &o, &none, &b), MQ_OK);
    check_quantize(b, w);
    assert_true(g_injected > 0);
    assert_true(g_largest <= 16 * ROW_BYTES);
    assert_true(mq_opencl_overlap_calls(b) > 0);
    mq_backend_free(b);
    free(q);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_quantize_retry, reset),
        cmocka_unit_test_setup(test_below_one_row, reset),
        cmocka_unit_test_setup(test_retry_below_a_long_row, reset),
        cmocka_unit_test_setup(test_launch_retry, reset),
        cmocka_unit_test_setup(test_error_stats_retry, reset),
        cmocka_unit_test_setup(test_short_rows_within_limit, reset),
        cmocka_unit_test_setup(test_other_error_not_retried, reset),
        cmocka_unit_test_setup(test_other_ops_retry, reset),
        cmocka_unit_test_setup(test_file_run, reset),
        cmocka_unit_test_setup(test_overlap_fault, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
