/* Weight error statistics (weight SQNR, max |w - w_hat|, clamped count):
 * the reference against hand-computed values, the host kernel's and the
 * OpenCL kernels' fused statistics against the reference (random and edge
 * data), streaming against in-memory on both, and the CLI's per-tensor line
 * and JSON report.
 *
 * Tolerances. mq_ref_error_stats sums every term in double. The host kernel
 * (mq_hk_quantize with err) sums w^2 and (w - w_hat)^2 in fp32 over 16 lanes
 * for one block of at most 512 values (32 terms a lane), then adds the lane
 * sums to double accumulators. Each fp32 product and lane sum is within a
 * relative 33 * 2^-24 ~ 2e-6 of exact (all terms are non-negative, so no
 * cancellation), hence REL_SUM = 1e-5 on sig and err2 and 1e-4 dB on the
 * SQNR. w - w_hat is exact in fp32 for an unclamped value (Sterbenz), so
 * max_abs matches the reference up to one fp32 rounding (REL_MAX = 1e-6,
 * only clamped values can differ), and the clamped count is exact.
 *
 * The OpenCL kernels sum in fp32 in units of 2^2k (a power of two, which
 * changes no rounding): per lane blocks of at most 16 terms, blocks added
 * with Kahan compensation, then 8 lanes and at most log2(256) = 8 levels of
 * a tree, so each row's or work-group's sum is within about
 * (16 + 2 + 3 + 8 + 1) * 2^-24 ~ 2e-6 of exact before the host adds them in
 * double: the same REL_SUM, REL_MAX and DB_TOL hold. */
#include "testutil.h"

#include "backend.h"
#include "cpukern.h"
#include "cl_api.h"
#include "reference.h"
#include "report.h"
#include "stream.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXAMPLE MQ_SOURCE_DIR "/examples/tiny_mlp.safetensors"
#define REL_SUM 1e-5
#define REL_MAX 1e-6
#define DB_TOL 1e-4

static void assert_rel(double got, double want, double rel, const char *what)
{
    double tol = rel * fabs(want);
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.17g, want %.17g (relative tolerance %g)", what, got, want, rel);
}

/* ---- the reference against values computed by hand ---- */

static void test_reference_by_hand(void **state)
{
    (void)state;
    /* Symmetric, scale 1: errors 0, 0, 0.5 (0.5 rounds to even 0), 0 and, for
     * 200, code 200 clamped to 127: error 73. */
    const float w[5] = {1.0f, -2.0f, 0.5f, 3.0f, 200.0f};
    const int8_t q[5] = {1, -2, 0, 3, 127};
    float s = 1.0f;
    mq_err_acc a;
    mq_err_acc_init(&a);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), w, MQ_DTYPE_F32, 1, 5, q, &s, MQ_DTYPE_F32, NULL,
                       &a);
    assert_true(a.sig == 1.0 + 4.0 + 0.25 + 9.0 + 40000.0);
    assert_true(a.err2 == 0.25 + 73.0 * 73.0);
    assert_true(a.max_abs == 73.0);
    assert_int_equal(a.clamped, 1);
    assert_rel(mq_err_acc_sqnr_db(&a), 10.0 * log10(40014.25 / 5329.25), 1e-12, "sqnr");

    /* Asymmetric, scale 0.5, zero point -10: 0 -> code -10 (exact), 1 -> -8
     * (exact), -70 -> -150 clamped to -128, w_hat = (-128 + 10) * 0.5 = -59. */
    const float w2[3] = {0.0f, 1.0f, -70.0f};
    const int8_t q2[3] = {-10, -8, -128};
    const int8_t zp = -10;
    s = 0.5f;
    mq_err_acc_init(&a);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), w2, MQ_DTYPE_F32, 1, 3, q2, &s, MQ_DTYPE_F32, &zp,
                       &a);
    assert_true(a.sig == 4901.0);
    assert_true(a.err2 == 121.0);
    assert_true(a.max_abs == 11.0);
    assert_int_equal(a.clamped, 1);

    /* Exact: +inf dB; all zero: also +inf (no NaN). */
    const float w3[2] = {2.0f, -1.0f};
    const int8_t q3[2] = {2, -1};
    s = 1.0f;
    mq_err_acc_init(&a);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), w3, MQ_DTYPE_F32, 1, 2, q3, &s, MQ_DTYPE_F32, NULL,
                       &a);
    assert_true(isinf(mq_err_acc_sqnr_db(&a)) && mq_err_acc_sqnr_db(&a) > 0);
    mq_err_acc_init(&a);
    assert_true(isinf(mq_err_acc_sqnr_db(&a)) && mq_err_acc_sqnr_db(&a) > 0);
}

/* A symmetric scale is amax / 127.5 (rounded to the scale's dtype): the
 * largest |w| of a group maps to about +-127.5. When the rounded scale makes
 * it 127.5 or more (amax 3: 3 / fl(3 / 127.5) = 127.5 in fp32) it rounds
 * half to even to +-128: +128 does not fit and is clamped to 127 (counted),
 * -128 fits. So a group whose maximum is positive often counts one clamped
 * value, and that is expected; when the scale rounds up (amax 2: 127.49999)
 * nothing is clamped. */
static void test_symmetric_positive_max_clamped(void **state)
{
    (void)state;
    const float pos[4] = {0.25f, -0.5f, 3.0f, 1.0f};  /* max +3 */
    const float neg[4] = {0.25f, 0.5f, -3.0f, 1.0f};  /* max |w| is -3 */
    const float pos2[4] = {0.25f, -0.5f, 2.0f, 1.0f}; /* max +2: the scale rounds up */
    int8_t q[4];
    float s;
    size_t bad = 0;
    mq_err_acc a;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), pos, MQ_DTYPE_F32, 1, 4, q, &s, NULL, &bad),
        MQ_OK);
    assert_int_equal(q[2], 127);
    mq_err_acc_init(&a);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), pos, MQ_DTYPE_F32, 1, 4, q, &s, MQ_DTYPE_F32, NULL,
                       &a);
    assert_int_equal(a.clamped, 1);
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), neg, MQ_DTYPE_F32, 1, 4, q, &s, NULL, &bad),
        MQ_OK);
    assert_int_equal(q[2], -128);
    mq_err_acc_init(&a);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), neg, MQ_DTYPE_F32, 1, 4, q, &s, MQ_DTYPE_F32, NULL,
                       &a);
    assert_int_equal(a.clamped, 0);
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), pos2, MQ_DTYPE_F32, 1, 4, q, &s, NULL, &bad),
        MQ_OK);
    assert_int_equal(q[2], 127);
    mq_err_acc_init(&a);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), pos2, MQ_DTYPE_F32, 1, 4, q, &s, MQ_DTYPE_F32, NULL,
                       &a);
    assert_int_equal(a.clamped, 0);
    /* The fused host kernel counts the same (a row of 64 runs the blocks). */
    float row[64];
    int8_t q64[64];
    for (int i = 0; i < 64; i++)
        row[i] = (float)(i % 7) * 0.1f - 0.3f;
    row[10] = 3.0f;
    mq_err_acc_init(&a);
    assert_int_equal(
        mq_hk_quantize(mq_qd(MQ_QK_INT8, true), row, MQ_DTYPE_F32, 1, 64, q64, &s, NULL, &bad, &a),
        MQ_OK);
    assert_int_equal(a.clamped, 1);
}

/* ---- the host kernel's fused statistics against the reference ---- */

/* Element i of an F32/F16/BF16 array set to v (rounded to nearest even). */
static void store_value(unsigned char *p, mq_dtype dt, size_t i, float v)
{
    if (dt == MQ_DTYPE_F32) {
        memcpy(p + i * 4, &v, 4);
    } else {
        uint16_t h = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(v) : mq_f32_to_bf16(v);
        memcpy(p + i * 2, &h, 2);
    }
}

/* rows x cols values of dtype dt: normal values, an outlier per row. */
static void *make_values(mq_dtype dt, size_t rows, size_t cols, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    size_t n = rows * cols, es = mq_dtype_size(dt);
    unsigned char *p = malloc(n * es);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        float v = tu_rng_normal(&r) * 0.02f;
        if (i % cols == (i / cols * 37) % cols) v = (i & 1 ? -1.0f : 1.0f) * 0.3f;
        if (i % 11 == 0) v += 0.05f; /* asymmetric shift */
        store_value(p, dt, i, v);
    }
    return p;
}

static void assert_acc_close(const mq_err_acc *got, const mq_err_acc *want, const char *tag)
{
    char what[96];
    snprintf(what, sizeof what, "%s sig", tag);
    assert_rel(got->sig, want->sig, REL_SUM, what);
    snprintf(what, sizeof what, "%s err2", tag);
    assert_rel(got->err2, want->err2, REL_SUM, what);
    snprintf(what, sizeof what, "%s max_abs", tag);
    assert_rel(got->max_abs, want->max_abs, REL_MAX, what);
    if (got->clamped != want->clamped)
        fail_msg("%s clamped: got %llu, want %llu", tag, (unsigned long long)got->clamped,
                 (unsigned long long)want->clamped);
    double dg = mq_err_acc_sqnr_db(got), dw = mq_err_acc_sqnr_db(want);
    if (!(fabs(dg - dw) <= DB_TOL)) fail_msg("%s sqnr: got %.9f, want %.9f dB", tag, dg, dw);
}

/* Reference quantize + reference stats against the host backend's fused
 * op (threaded for large calls) and mq_hk_quantize itself. */
static void check_fused(mq_backend *be, mq_dtype dt, size_t rows, size_t cols, bool sym,
                        uint64_t seed)
{
    char tag[96];
    snprintf(tag, sizeof tag, "%s %zux%zu %s", mq_dtype_name(dt), rows, cols, sym ? "sym" : "asym");
    size_t n = rows * cols, es = mq_dtype_size(dt), bad = 0;
    void *src = make_values(dt, rows, cols, seed);
    int8_t *q0 = malloc(n), *q1 = malloc(n), *q2 = malloc(n);
    unsigned char *s0 = malloc(rows * es), *s1 = malloc(rows * es), *s2 = malloc(rows * es);
    int8_t *z0 = calloc(rows, 1), *z1 = calloc(rows, 1), *z2 = calloc(rows, 1);
    assert_true(q0 && q1 && q2 && s0 && s1 && s2 && z0 && z1 && z2);
    mq_err_acc want, got1, got2;
    mq_err_acc_init(&want);
    mq_err_acc_init(&got1);
    mq_err_acc_init(&got2);

    assert_int_equal(mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q0, s0, z0, &bad),
                     MQ_OK);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), src, dt, rows, cols, q0, s0, dt, sym ? NULL : z0,
                       &want);
    assert_int_equal(mq_hk_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q1, s1,
                                    sym ? NULL : z1, &bad, &got1),
                     MQ_OK);
    assert_non_null(be->ops->quantize);
    assert_int_equal(be->ops->quantize(be, mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q2, s2,
                                       sym ? NULL : z2, &bad, &got2),
                     MQ_OK);
    /* Output bytes unchanged by the statistics. */
    assert_memory_equal(q0, q1, n);
    assert_memory_equal(q0, q2, n);
    assert_memory_equal(s0, s1, rows * es);
    assert_memory_equal(s0, s2, rows * es);
    if (!sym) {
        assert_memory_equal(z0, z1, rows);
        assert_memory_equal(z0, z2, rows);
    }
    assert_acc_close(&got1, &want, tag);
    assert_acc_close(&got2, &want, tag);

    /* Per tensor, values path: one group with a fixed scale. */
    if (rows > 1) {
        mq_ref_stats st;
        float sc;
        int8_t zp;
        mq_ref_stats_init(&st);
        mq_ref_stats_update(&st, src, dt, n);
        mq_ref_params(mq_qd(MQ_QK_INT8, sym), &st, MQ_DTYPE_F32, &sc, &zp);
        mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), src, dt, n, sc, zp, q0);
        mq_err_acc_init(&want);
        mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), src, dt, 1, n, q0, &sc, MQ_DTYPE_F32,
                           sym ? NULL : &zp, &want);
        mq_err_acc_init(&got1);
        assert_non_null(be->ops->quantize_values);
        assert_int_equal(
            be->ops->quantize_values(be, mq_qd(MQ_QK_INT8, sym), src, dt, n, sc, zp, q1, &got1),
            MQ_OK);
        assert_memory_equal(q0, q1, n);
        snprintf(tag, sizeof tag, "%s %zu values %s", mq_dtype_name(dt), n, sym ? "sym" : "asym");
        assert_acc_close(&got1, &want, tag);
    }
    free(src);
    free(q0), free(q1), free(q2), free(s0), free(s1), free(s2), free(z0), free(z1), free(z2);
}

static void test_fused_matches_reference(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    /* Column counts: scalar rows (< 64), 64-blocks with a tail, 512-blocks
     * with a tail; 1 row (per tensor) and a call large enough to thread. */
    const size_t shapes[][2] = {{3, 40}, {5, 200}, {4, 1500}, {1, 5000}, {96, 4099}};
    for (int d = 0; d < 3; d++)
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
            for (int sym = 0; sym < 2; sym++)
                check_fused(be, dts[d], shapes[k][0], shapes[k][1], sym, 1000 + 10 * k + d);
    mq_backend_free(be);
}

/* ---- the OpenCL kernels' statistics against the reference ---- */

/* The OpenCL backend with default buffers, with 4096-byte buffers (rows
 * longer than a buffer take the piecewise path) or with GPU-like work-groups;
 * NULL (and a message) when no device is there, a failure otherwise. */
enum { CL_DEFAULT, CL_SMALL, CL_WIDE, CL_COUNT };

static mq_backend *cl_open(int which)
{
    mq_cl_options o;
    mq_cl_options_init(&o);
    if (which == CL_SMALL) o.max_alloc_override = 4096;
    if (which == CL_WIDE) {
        o.work_group = 256;
        o.per_item = 16;
    }
    bool none = false;
    mq_backend *be = NULL;
    mq_status st = mq_opencl_backend_open_opts(tu_cl_device(), &o, &none, &be);
    if (st == MQ_OK) return be;
    if (!none) fail_msg("OpenCL backend: %s", mq_last_error());
    print_message("no OpenCL device: %s\n", mq_last_error());
    return NULL;
}

static void test_opencl_matches_reference(void **state)
{
    (void)state;
    const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    /* Short rows, rows with a tail of < 8 values, a call of several row
     * chunks, and rows of 2^18 + 5 values (the split path). */
    const size_t shapes[][2] = {{3, 40}, {5, 203}, {4, 1500}, {1, 5000}, {96, 4099}, {2, 262149}};
    for (int which = 0; which < CL_COUNT; which++) {
        mq_backend *be = cl_open(which);
        if (!be) skip();
        for (int d = 0; d < 3; d++)
            for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
                if (which != CL_DEFAULT && shapes[k][1] > 5000) continue; /* time */
                for (int sym = 0; sym < 2; sym++)
                    check_fused(be, dts[d], shapes[k][0], shapes[k][1], sym,
                                2000 + 100 * which + 10 * k + d);
            }
        mq_backend_free(be);
    }
}

/* rows x cols values of one kind: 0 large (|w| up to FLT_MAX / 4 in F32 and
 * BF16, whose squares overflow fp32), 1 zeros, 2 subnormals (whose squares
 * underflow fp32), 3 ties (halves with a scale of 1; the last of each row
 * rounds to 128 and is clamped). */
static void *make_edge(mq_dtype dt, int kind, size_t rows, size_t cols, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    size_t n = rows * cols, es = mq_dtype_size(dt);
    unsigned char *p = malloc(n * es);
    assert_non_null(p);
    float big = dt == MQ_DTYPE_F16 ? 65504.0f : FLT_MAX / 4;
    float tiny = dt == MQ_DTYPE_F16 ? 5.9604645e-8f : 1e-39f; /* the smallest halves; fp32 */
    for (size_t i = 0; i < n; i++) {
        float v;
        if (kind == 0)
            v = big * tu_rng_f32(&r);
        else if (kind == 1)
            v = 0.0f;
        else if (kind == 2)
            v = tiny * (float)(tu_rng_u64(&r) % 1000) * (i & 1 ? -1.0f : 1.0f);
        else
            v = (float)((int)(i % 256) - 128) + 0.5f;
        if (kind == 0 && i % cols == 0) v = big;
        if (kind == 3 && i % cols == cols - 1) v = 127.5f; /* clamped, in the scalar tail */
        store_value(p, dt, i, v);
    }
    return p;
}

/* The reference codes, scales and statistics against the OpenCL op's. */
static void check_edge(mq_backend *be, mq_dtype dt, int kind, size_t rows, size_t cols, bool sym)
{
    char tag[96];
    snprintf(tag, sizeof tag, "%s kind %d %zux%zu %s", mq_dtype_name(dt), kind, rows, cols,
             sym ? "sym" : "asym");
    size_t n = rows * cols, es = mq_dtype_size(dt), bad = 0;
    void *src = make_edge(dt, kind, rows, cols, 500 + (uint64_t)kind);
    int8_t *q0 = malloc(n), *q1 = malloc(n), *z0 = calloc(rows, 1), *z1 = calloc(rows, 1);
    unsigned char *s0 = malloc(rows * es), *s1 = malloc(rows * es);
    assert_true(q0 && q1 && z0 && z1 && s0 && s1);
    mq_err_acc want, got;
    mq_err_acc_init(&want);
    mq_err_acc_init(&got);
    assert_int_equal(mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q0, s0, z0, &bad),
                     MQ_OK);
    mq_ref_error_stats(mq_qd(MQ_QK_INT8, true), src, dt, rows, cols, q0, s0, dt, sym ? NULL : z0,
                       &want);
    assert_int_equal(be->ops->quantize(be, mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q1, s1,
                                       sym ? NULL : z1, &bad, &got),
                     MQ_OK);
    assert_memory_equal(q0, q1, n);
    assert_memory_equal(s0, s1, rows * es);
    if (!sym) assert_memory_equal(z0, z1, rows);
    assert_true(isfinite(got.sig) && isfinite(got.err2));
    if (kind == 1) { /* exact: nothing to compare relatively */
        assert_true(got.sig == 0.0 && got.err2 == 0.0 && got.max_abs == 0.0 && got.clamped == 0);
    } else {
        assert_true(want.sig > 0.0);
        assert_acc_close(&got, &want, tag);
    }
    free(src);
    free(q0), free(q1), free(z0), free(z1), free(s0), free(s1);
}

static void test_opencl_edge_values(void **state)
{
    (void)state;
    const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    for (int which = 0; which < CL_COUNT; which++) {
        if (which == CL_WIDE) continue;
        mq_backend *be = cl_open(which);
        if (!be) skip();
        for (int d = 0; d < 3; d++)
            for (int kind = 0; kind < 4; kind++)
                for (int sym = 0; sym < 2; sym++) {
                    /* Asymmetric large rows dequantize beyond FLT_MAX (inf in
                     * the reference too): symmetric only. */
                    if (kind == 0 && !sym) continue;
                    check_edge(be, dts[d], kind, 4, 1027, sym);
                }
        mq_backend_free(be);
    }
}

/* ---- int4 and float8: the statistics of the one quantize op against mq_ref_error_stats ---- */

/* The descriptor of kind k; NVFP4's with a global scale that is no power of
 * two. */
static mq_qdesc qd_k(mq_qkind k, bool sym)
{
    mq_qdesc d = mq_qd(k, sym);
    if (k == MQ_QK_NVFP4) d.gscale = 0x1.70f2p+8f;
    return d;
}

/* data: 0 make_values, else make_edge's kind data - 1 (large, zeros, subnormals, ties). */
static void check_kind_err(mq_backend *be, mq_dtype dt, mq_qkind k, bool sym, size_t rows,
                           size_t cols, int data)
{
    char tag[128];
    snprintf(tag, sizeof tag, "%s %s %s %zux%zu data %d on %s", mq_dtype_name(dt),
             k == MQ_QK_INT4    ? "int4"
             : k == MQ_QK_FP8   ? "fp8"
             : k == MQ_QK_MXFP4 ? "mxfp4"
             : k == MQ_QK_MXFP8 ? "mxfp8"
                                : "nvfp4",
             sym ? "sym" : "asym", rows, cols, data, be->backend);
    size_t n = rows * cols, es = mq_dtype_size(dt), bad = 0,
           qn = rows * mq_qkind_row_bytes(k, cols), ss = mq_qkind_scale_size(k, dt);
    void *src = data ? make_edge(dt, data - 1, rows, cols, 700 + (uint64_t)data)
                     : make_values(dt, rows, cols, 800 + rows);
    uint8_t *q0 = malloc(qn), *q1 = malloc(qn), *v0 = malloc(n), *v1 = malloc(n);
    int8_t *z0 = calloc(rows, 1), *z1 = calloc(rows, 1);
    unsigned char *s0 = malloc(rows * ss), *s1 = malloc(rows * ss);
    assert_true(q0 && q1 && v0 && v1 && z0 && z1 && s0 && s1);
    mq_err_acc want, got;
    mq_err_acc_init(&want);
    mq_err_acc_init(&got);
    assert_int_equal(mq_ref_quantize(qd_k(k, sym), src, dt, rows, cols, q0, s0, z0, &bad), MQ_OK);
    mq_ref_error_stats(qd_k(k, true), src, dt, rows, cols, q0, s0, dt, sym ? NULL : z0, &want);
    assert_int_equal(
        mq_be_quantize(be, qd_k(k, sym), src, dt, rows, cols, q1, s1, sym ? NULL : z1, &bad, &got),
        MQ_OK);
    assert_memory_equal(q0, q1, qn);
    assert_memory_equal(s0, s1, rows * ss);
    if (data == 2) {
        assert_true(got.sig == 0.0 && got.err2 == 0.0 && got.max_abs == 0.0 && got.clamped == 0);
    } else {
        assert_acc_close(&got, &want, tag);
    }

    /* One group, fixed parameters (the values op). */
    mq_ref_stats st;
    float sc;
    int8_t zp;
    mq_ref_stats_init(&st);
    mq_ref_stats_update(&st, src, dt, n);
    mq_ref_params(qd_k(k, sym), &st, MQ_DTYPE_F32, &sc, &zp);
    mq_ref_quantize_values(qd_k(k, true), src, dt, n, sc, zp, v0);
    mq_err_acc_init(&want);
    mq_err_acc_init(&got);
    /* The scale as stored: an F32, the MX kinds' e8m0 byte or NVFP4's e4m3. */
    unsigned char sst[4];
    mq_store_group_scale(qd_k(k, true), sst, MQ_DTYPE_F32, 0, sc);
    for (size_t i = 0; i < n; i++) { /* stored form: int4 packed one code a row */
        uint8_t c[4] = {v0[i], 0, 0, 0};
        if (k == MQ_QK_INT4) mq_ref_pack4((const int8_t *)&v0[i], 1, c);
        mq_ref_error_stats(qd_k(k, true), (const unsigned char *)src + i * es, dt, 1, 1, c, sst,
                           MQ_DTYPE_F32, sym ? NULL : &zp, &want);
    }
    assert_int_equal(mq_be_quantize_values(be, qd_k(k, sym), src, dt, n, sc, zp, v1, &got), MQ_OK);
    assert_memory_equal(v0, v1, n);
    if (data != 2) assert_acc_close(&got, &want, tag);
    free(src);
    free(q0), free(q1), free(v0), free(v1), free(z0), free(z1), free(s0), free(s1);
}

static void check_blocks_err(mq_backend *be, mq_dtype dt, size_t rows, size_t cols, size_t bs,
                             int data)
{
    char tag[128];
    snprintf(tag, sizeof tag, "%s blocks %zux%zu/%zu data %d on %s", mq_dtype_name(dt), rows, cols,
             bs, data, be->backend);
    size_t n = rows * cols, es = mq_dtype_size(dt), bad = 0;
    size_t nb = ((rows + bs - 1) / bs) * ((cols + bs - 1) / bs);
    void *src = data ? make_edge(dt, data - 1, rows, cols, 900 + (uint64_t)data)
                     : make_values(dt, rows, cols, 950 + rows);
    uint8_t *q0 = malloc(n), *q1 = malloc(n);
    unsigned char *s0 = malloc(nb * es), *s1 = malloc(nb * es);
    mq_err_acc want, got;
    mq_err_acc_init(&want);
    mq_err_acc_init(&got);
    assert_int_equal(mq_ref_quantize(mq_qd_blocks(bs), src, dt, rows, cols, q0, s0, NULL, &bad),
                     MQ_OK);
    mq_ref_error_stats(mq_qd_blocks(bs), src, dt, rows, cols, q0, s0, dt, NULL, &want);
    assert_int_equal(
        mq_be_quantize(be, mq_qd_blocks(bs), src, dt, rows, cols, q1, s1, NULL, &bad, &got), MQ_OK);
    assert_memory_equal(q0, q1, n);
    assert_memory_equal(s0, s1, nb * es);
    if (data == 2)
        assert_true(got.sig == 0.0 && got.err2 == 0.0 && got.max_abs == 0.0 && got.clamped == 0);
    else
        assert_acc_close(&got, &want, tag);
    free(src);
    free(q0), free(q1), free(s0), free(s1);
}

static void run_kind_err(mq_backend *be, bool small)
{
    const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    /* Groups of 32 and 128, odd lengths, long rows (over a small buffer). */
    const size_t shapes[][2] = {{64, 32}, {24, 128}, {5, 203}, {3, 1500}};
    for (int d = 0; d < 3; d++) {
        for (size_t sh = 0; sh < 4; sh++)
            for (int data = 0; data < 5; data++)
                for (int kk = 0; kk < 6; kk++) {
                    static const mq_qkind kinds[6] = {MQ_QK_INT4,  MQ_QK_INT4,  MQ_QK_FP8,
                                                      MQ_QK_MXFP4, MQ_QK_MXFP8, MQ_QK_NVFP4};
                    mq_qkind k = kinds[kk];
                    bool sym = kk != 1;
                    /* Large asymmetric groups dequantize beyond FLT_MAX: symmetric only. */
                    if (data == 1 && !sym) continue;
                    /* F16 maxima from 57344 up give MX an infinite scale (README). */
                    if (data == 1 && (kk == 3 || kk == 4) && dts[d] == MQ_DTYPE_F16) continue;
                    if (small && data > 0 && sh < 2) continue; /* time */
                    check_kind_err(be, dts[d], k, sym, shapes[sh][0], shapes[sh][1], data);
                }
        for (int data = 0; data < 5; data++) {
            check_blocks_err(be, dts[d], 130, 300, 128, data);
            check_blocks_err(be, dts[d], 33, 65, 16, data);
        }
    }
}

static void test_kinds_host(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    run_kind_err(be, false);
    mq_backend_free(be);
}

static void test_kinds_opencl(void **state)
{
    (void)state;
    for (int which = 0; which < CL_COUNT; which++) {
        mq_backend *be = cl_open(which);
        if (!be) skip();
        run_kind_err(be, which != CL_DEFAULT);
        mq_backend_free(be);
    }
}

/* ---- streaming against in-memory ---- */

static void check_entries(const mq_report *want, const mq_report *got, const char *tag)
{
    assert_int_equal(mq_report_count(want), mq_report_count(got));
    size_t quantized = 0;
    for (size_t i = 0; i < mq_report_count(want); i++) {
        const mq_report_entry *a = mq_report_entry_at(want, i), *b = mq_report_entry_at(got, i);
        assert_int_equal(a->action, b->action);
        if (a->action != MQ_ACTION_QUANTIZE) {
            assert_true(isnan(a->weight_sqnr_db) && isnan(b->weight_sqnr_db));
            continue;
        }
        quantized++;
        char what[160];
        snprintf(what, sizeof what, "%s %s max_abs", tag, a->name);
        assert_rel(b->max_abs_error, a->max_abs_error, REL_MAX, what);
        if (a->clamped != b->clamped) fail_msg("%s %s: clamped differs", tag, a->name);
        if (!(fabs(a->weight_sqnr_db - b->weight_sqnr_db) <= DB_TOL))
            fail_msg("%s %s: sqnr %.9f vs %.9f", tag, a->name, a->weight_sqnr_db,
                     b->weight_sqnr_db);
        assert_true(isfinite(a->weight_sqnr_db) && a->weight_sqnr_db > 20.0);
    }
    assert_true(quantized >= 3);
}

static void test_stream_matches_memory(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), *in = tu_join(dir, "in.safetensors");
    char *out = tu_join(dir, "out.safetensors");
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    const char *names[3] = {"a.weight", "b.weight", "c.weight"};
    for (int d = 0; d < 3; d++) {
        int64_t shape[2] = {300, 1100 + 17 * d}; /* larger than the 1 MiB budget's slots */
        void *v = make_values(dts[d], 300, (size_t)shape[1], 77 + d);
        assert_int_equal(mq_model_add_tensor(m, names[d], dts[d], 2, shape, v), MQ_OK);
        free(v);
    }
    int64_t bshape[1] = {4};
    const float bias[4] = {1, 2, 3, 4};
    assert_int_equal(mq_model_add_tensor(m, "a.bias", MQ_DTYPE_F32, 1, bshape, bias), MQ_OK);
    assert_int_equal(mq_model_save(m, in), MQ_OK);
    mq_model_free(m);

    /* The host's in-memory report is the reference for streaming on the
     * host and for in-memory and streaming on the OpenCL device (whose
     * per-tensor mode runs the values kernel with statistics). */
    mq_backend *host, *cl = cl_open(CL_DEFAULT);
    assert_int_equal(mq_backend_open_host(&host), MQ_OK);
    for (int k = 0; k < 4; k++) {
        mq_config cfg;
        mq_config_init(&cfg);
        cfg.symmetric = k & 1;
        cfg.per_channel = !(k & 2);
        cfg.memory_limit = 1 << 20;
        cfg.device = (char *)"host";
        mq_model *mi, *q;
        mq_report *want, *got = mq_report_new();
        assert_int_equal(mq_model_open(in, &mi), MQ_OK);
        assert_int_equal(mq_dynamic_quantize_report(mi, &cfg, &q, NULL, &want), MQ_OK);
        mq_model_free(q);
        mq_settings set;
        assert_int_equal(mq_settings_init(&set, &cfg), MQ_OK);
        mq_status st = mq_stream_file(in, out, &set, NULL, host, got, NULL);
        if (st != MQ_OK) fail_msg("stream: %s", mq_last_error());
        char tag[64];
        snprintf(tag, sizeof tag, "%s %s", k & 1 ? "sym" : "asym",
                 k & 2 ? "per tensor" : "per channel");
        check_entries(want, got, tag);
        mq_report_free(got);
        if (cl) {
            mq_report *mem;
            cfg.device = (char *)tu_cl_device();
            assert_int_equal(mq_dynamic_quantize_report(mi, &cfg, &q, NULL, &mem), MQ_OK);
            mq_model_free(q);
            check_entries(want, mem, tag);
            mq_report_free(mem);
            got = mq_report_new();
            assert_int_equal(mq_settings_init(&set, &cfg), MQ_OK);
            if ((st = mq_stream_file(in, out, &set, NULL, cl, got, NULL)) != MQ_OK)
                fail_msg("stream (OpenCL): %s", mq_last_error());
            check_entries(want, got, tag);
            mq_report_free(got);
        }
        mq_report_free(want);
        mq_model_free(mi);
        cfg.device = NULL;
        mq_config_free(&cfg);
    }
    mq_backend_free(host);
    mq_backend_free(cl);
    tu_rmtree(dir);
    free(dir), free(in), free(out);
}

/* ---- the CLI ---- */

/* The per-tensor lines of a run on `device` (their "SQNR ... dB [clamped N]" parts
 * only, one per quantized tensor, in order), or NULL when the run failed. */
static char *cli_error_lines(const char *device, const char *out, const char *rep)
{
    char *text = NULL;
    int rc =
        tu_run_cli(&text, "quantize %s -o %s --device %s --report %s", EXAMPLE, out, device, rep);
    if (rc != 0) {
        print_message("--device %s: rc %d: %s\n", device, rc, text ? text : "");
        free(text);
        return NULL;
    }
    size_t cap = strlen(text) + 1, len = 0;
    char *lines = calloc(cap, 1);
    assert_non_null(lines);
    for (const char *p = text; (p = strstr(p, "SQNR ")) != NULL; p++) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        memcpy(lines + len, p, n);
        len += n;
        lines[len++] = '\n';
    }
    free(text);
    return lines;
}

static void test_cli_line_and_report(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), *out = tu_join(dir, "q.safetensors");
    char *rep = tu_join(dir, "r.json");
    char *host = cli_error_lines("host", out, rep);
    assert_non_null(host);
    /* conv, fc1 and fc2, each with a plausible SQNR for 8 bits */
    int n = 0;
    for (const char *p = host; (p = strstr(p, "SQNR ")) != NULL; p++, n++) {
        double db = atof(p + 5);
        assert_true(db > 40.0 && db < 60.0);
        assert_non_null(strstr(p, " dB"));
    }
    assert_int_equal(n, 3);
    size_t len;
    char *json = (char *)tu_read_file(rep, &len);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"weight_sqnr_db\""));
    assert_non_null(strstr(json, "\"max_abs_error\""));
    assert_non_null(strstr(json, "\"clamped\""));
    free(json);
    /* The OpenCL kernels' statistics print the same lines. */
    mq_backend *cl = cl_open(CL_DEFAULT);
    if (cl) {
        mq_backend_free(cl);
        char *dev = cli_error_lines(tu_cl_device(), out, rep);
        assert_non_null(dev);
        assert_string_equal(dev, host);
        free(dev);
    }
    free(host);
    tu_rmtree(dir);
    free(dir), free(out), free(rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_by_hand),
        cmocka_unit_test(test_symmetric_positive_max_clamped),
        cmocka_unit_test(test_fused_matches_reference),
        cmocka_unit_test(test_opencl_matches_reference),
        cmocka_unit_test(test_opencl_edge_values),
        cmocka_unit_test(test_kinds_host),
        cmocka_unit_test(test_kinds_opencl),
        cmocka_unit_test(test_stream_matches_memory),
        cmocka_unit_test(test_cli_line_and_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
