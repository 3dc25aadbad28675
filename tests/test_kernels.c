/* The OpenCL kernels against the reference (src/numerics/reference.c), byte for byte:
 * quantize (fused, split and piecewise paths, every input dtype, sym/asym),
 * fp16 cast, dequantize, NaN/Inf rows, chunking, and each division mode. */
#include "testutil.h"

#include "backend.h"
#include "cl_api.h"
#include "devset.h"
#include "reference.h"
#include "srccheck.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* One backend per configuration, opened on first use; NULL when unavailable. */
enum { BE_DEFAULT, BE_SMALL, BE_DOUBLE, BE_SOFT, BE_WIDE, BE_OVERLAP, BE_OVERLAP_WIDE, BE_COUNT };
static mq_backend *g_be[BE_COUNT];
static bool g_tried[BE_COUNT];
static bool g_skip[BE_COUNT];
static char g_why[BE_COUNT][2048];
static const char *const g_be_name[BE_COUNT] = {"default",
                                                "4096-byte buffers",
                                                "double division",
                                                "soft division",
                                                "GPU-like work-groups",
                                                "overlapped transfers",
                                                "overlapped transfers, GPU-like work-groups"};

/* Input bytes per overlapped chunk in the tests: many chunks from little data. */
#define OVERLAP_CHUNK 2048

#define SMALL_LIMIT 4096

static mq_backend *backend(int which)
{
    if (!g_tried[which]) {
        g_tried[which] = true;
        mq_cl_options o;
        mq_cl_options_init(&o);
        if (which == BE_SMALL) o.max_alloc_override = SMALL_LIMIT;
        if (which == BE_DOUBLE) o.div_mode = MQ_CL_DIV_DOUBLE;
        if (which == BE_SOFT) o.div_mode = MQ_CL_DIV_SOFT;
        if (which == BE_WIDE || which == BE_OVERLAP_WIDE) { /* 256 per group, up to 256 a row */
            o.work_group = 256;
            o.per_item = 16;
        }
        if (which == BE_OVERLAP || which == BE_OVERLAP_WIDE) { /* the discrete-GPU path */
            o.staging = MQ_CL_STAGING_PINNED;
            o.overlap = MQ_CL_OVERLAP_ON;
            o.overlap_chunk = OVERLAP_CHUNK;
        }
        bool none = false;
        if (mq_opencl_backend_open_opts(tu_cl_device(), &o, &none, &g_be[which]) != MQ_OK) {
            g_be[which] = NULL;
            snprintf(g_why[which], sizeof g_why[which], "%s", mq_last_error());
            /* no device, or one without what this mode needs: skip; anything else fails */
            g_skip[which] = none || (which == BE_DOUBLE && strstr(g_why[which], "cl_khr_fp64"));
        }
    }
    return g_be[which];
}

#define NEED(which)                                                                                \
    mq_backend *be = backend(which);                                                               \
    if (!be) {                                                                                     \
        if (!g_skip[which]) fail_msg("OpenCL backend (%s): %s", g_be_name[which], g_why[which]);   \
        print_message("no OpenCL device for '%s': %s\n", g_be_name[which], g_why[which]);          \
        skip();                                                                                    \
    }

static int group_setup(void **state)
{
    (void)state;
    mq_backend *be = backend(BE_DEFAULT);
    if (be)
        print_message("OpenCL device: %s / %s (division %s, work-group %zu)\n", be->platform,
                      be->device, mq_opencl_div_mode_name(be), mq_opencl_work_group(be));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < BE_COUNT; i++)
        mq_backend_free(g_be[i]);
    return 0;
}

/* ---- data ---- */

static float as_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* n values of dt from fp32 values (narrowed with the reference's rounding). */
static void *make_input(const float *v, size_t n, mq_dtype dt)
{
    void *p = malloc(n * mq_dtype_size(dt) + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        if (dt == MQ_DTYPE_F32)
            ((float *)p)[i] = v[i];
        else if (dt == MQ_DTYPE_F16) /* saturated, so that big values stay finite */
            ((uint16_t *)p)[i] =
                mq_f32_to_f16(isfinite(v[i]) ? fmaxf(fminf(v[i], 65504.0f), -65504.0f) : v[i]);
        else
            ((uint16_t *)p)[i] = mq_f32_to_bf16(v[i]);
    }
    return p;
}

/* Values for `rows` x `cols` in one of several patterns. */
enum { PAT_NORMAL, PAT_EDGES, PAT_OUTLIERS, PAT_NEGATIVE, PAT_TINY, PAT_COUNT };

static float *make_values(tu_rng *r, size_t rows, size_t cols, int pat)
{
    size_t n = rows * cols;
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        size_t row = cols ? i / cols : 0;
        float x = tu_rng_normal(r) * ldexpf(1.0f, (int)(row % 13) - 6);
        switch (pat) {
        case PAT_EDGES: {
            uint64_t k = tu_rng_u64(r) % 16;
            static const float sp[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, 127.5f, -127.5f};
            if (k < 8)
                x = sp[k];
            else if (k == 8)
                x = FLT_MAX;
            else if (k == 9)
                x = -FLT_MAX;
            else if (k == 10)
                x = as_float((uint32_t)(tu_rng_u64(r) & 0x807fffffu)); /* subnormal */
            else if (k == 11)
                x = (float)((int)(tu_rng_u64(r) % 511) - 255) * 0.5f; /* ties */
            if (row % 5 == 0) x = 0.0f;                               /* all-zero channels */
            if (row % 5 == 1) x = (float)((int)(tu_rng_u64(r) % 2001) - 1000) * 0.25f;
            break;
        }
        case PAT_OUTLIERS:
            if (tu_rng_u64(r) % 97 == 0) x *= 1e30f;
            break;
        case PAT_NEGATIVE:
            x = -fabsf(x) - 0.25f;
            break;
        case PAT_TINY:
            x *= 1e-30f;
            if (row % 3 == 0) x *= 1e-9f; /* f32 subnormals */
            break;
        default:
            break;
        }
        v[i] = x;
    }
    return v;
}

/* ---- quantize ---- */

static const mq_dtype k_dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};

/* Runs backend and reference on the same input and compares every output byte.
 * Every other call asks for the codes of compressed-tensors' packed words
 * (code XOR 0x80), so each shape and path runs both ways. */
static void check_quantize(mq_backend *be, const void *src, mq_dtype dt, size_t rows, size_t cols,
                           bool sym)
{
    static unsigned calls;
    uint8_t cx = (calls++ & 1u) ? 0x80 : 0;
    size_t n = rows * cols, es = mq_dtype_size(dt);
    int8_t *q1 = malloc(n + 1), *q2 = malloc(n + 1);
    uint8_t *s1 = malloc(rows * es + 1), *s2 = malloc(rows * es + 1);
    int8_t *z1 = malloc(rows + 1), *z2 = malloc(rows + 1);
    assert_true(q1 && q2 && s1 && s2 && z1 && z2);
    memset(q1, 0x5a, n + 1);
    memset(q2, 0x5a, n + 1);
    memset(s1, 0x5a, rows * es + 1);
    memset(s2, 0x5a, rows * es + 1);
    memset(z1, 0x5a, rows + 1);
    memset(z2, 0x5a, rows + 1);
    size_t bad1 = 12345, bad2 = 54321;
    mq_status st1 =
        be->ops->quantize(be, (mq_qdesc){.kind = MQ_QK_INT8, .symmetric = sym, .code_xor = cx}, src,
                          dt, rows, cols, q1, s1, sym ? NULL : z1, &bad1, NULL);
    mq_status st2 = mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q2, s2,
                                    sym ? NULL : z2, &bad2);
    if (st1 != st2)
        fail_msg("%zux%zu %s %s: status %d (%s) vs reference %d", rows, cols, mq_dtype_name(dt),
                 sym ? "sym" : "asym", st1, mq_last_error(), st2);
    if (st2 == MQ_STATUS_E_DATA) {
        assert_int_equal(bad1, bad2);
    } else {
        assert_int_equal(st1, MQ_OK);
        for (size_t r = 0; r < rows; r++) {
            if (memcmp(s1 + r * es, s2 + r * es, es) != 0)
                fail_msg("%zux%zu %s %s: scale of row %zu differs", rows, cols, mq_dtype_name(dt),
                         sym ? "sym" : "asym", r);
            if (!sym && z1[r] != z2[r])
                fail_msg("%zux%zu %s asym: zp of row %zu: %d vs %d", rows, cols, mq_dtype_name(dt),
                         r, z1[r], z2[r]);
        }
        for (size_t i = 0; i < n; i++)
            if ((uint8_t)q1[i] != ((uint8_t)q2[i] ^ cx))
                fail_msg("%zux%zu %s %s: q[%zu] (row %zu) = %d, reference %d XOR %d (w = %a)", rows,
                         cols, mq_dtype_name(dt), sym ? "sym" : "asym", i, i / cols, q1[i], q2[i],
                         cx, (double)mq_load_f32(src, dt, i));
        assert_int_equal(q1[n], 0x5a); /* nothing written past the end */
        assert_memory_equal(s1 + rows * es, s2 + rows * es, 1);
    }
    free(q1);
    free(q2);
    free(s1);
    free(s2);
    free(z1);
    free(z2);
}

static void check_shape(mq_backend *be, tu_rng *r, size_t rows, size_t cols, int pat)
{
    float *v = make_values(r, rows, cols, pat);
    for (int d = 0; d < 3; d++) {
        void *src = make_input(v, rows * cols, k_dts[d]);
        check_quantize(be, src, k_dts[d], rows, cols, true);
        check_quantize(be, src, k_dts[d], rows, cols, false);
        free(src);
    }
    free(v);
}

static const size_t k_shapes[][2] = {
    {1, 1},     {1, 3},    {3, 1},     {7, 13},  {2, 8},     {5, 16},   {4, 1023},   {3, 4097},
    {2, 70001}, {3000, 3}, {1000, 17}, {300, 1}, {64, 4096}, {33, 257}, {1, 100003},
};

static void run_shapes(mq_backend *be, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        check_shape(be, &r, k_shapes[i][0], k_shapes[i][1], PAT_NORMAL);
}

static void test_quantize_shapes(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    run_shapes(be, 1);
}

static void test_quantize_edges(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    tu_rng r;
    tu_rng_seed(&r, 2);
    for (int pat = PAT_EDGES; pat < PAT_COUNT; pat++) {
        check_shape(be, &r, 40, 33, pat);
        check_shape(be, &r, 10, 4096, pat);
        check_shape(be, &r, 1, 5000, pat);
    }
}

/* Rows whose values sit exactly on the .5 boundaries of w / scale. */
static void test_quantize_ties(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    size_t rows = 64, cols = 256;
    float *v = malloc(rows * cols * sizeof *v);
    assert_non_null(v);
    for (size_t rr = 0; rr < rows; rr++) {
        float unit = ldexpf(1.0f, (int)rr % 20 - 10); /* scale = unit when amax = 127.5 unit */
        for (size_t c = 0; c < cols; c++)
            v[rr * cols + c] = ((float)c - 128.0f) * 0.5f * unit * (rr % 2 ? 1.0f : 0.99f);
        v[rr * cols] = -127.5f * unit;
    }
    for (int d = 0; d < 3; d++) {
        void *src = make_input(v, rows * cols, k_dts[d]);
        check_quantize(be, src, k_dts[d], rows, cols, true);
        check_quantize(be, src, k_dts[d], rows, cols, false);
        free(src);
    }
    free(v);
}

/* Long rows: the split path (cols >= 2^18) and per-tensor (rows = 1). */
static void test_quantize_long_rows(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    tu_rng r;
    tu_rng_seed(&r, 3);
    check_shape(be, &r, 1, 300001, PAT_NORMAL);
    check_shape(be, &r, 3, 262144, PAT_OUTLIERS);
    check_shape(be, &r, 1, 1 << 20, PAT_NEGATIVE);
}

/* A NaN or Inf in some row: E_DATA naming the first such row, on every path. */
static void test_quantize_nonfinite(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    mq_backend *small = backend(BE_SMALL);
    static const size_t shapes[][2] = {{9, 13}, {50, 4096}, {4, 300000}, {2000, 3}};
    const float bad_vals[] = {NAN, INFINITY, -INFINITY, -NAN};
    tu_rng r;
    tu_rng_seed(&r, 4);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1];
        float *v = make_values(&r, rows, cols, PAT_NORMAL);
        for (size_t k = 0; k < 4; k++) {
            size_t row1 = (rows * (k + 1)) / 5, row2 = rows - 1;
            v[row1 * cols + (cols - 1) * (k % 2)] = bad_vals[k];
            v[row2 * cols + cols / 2] = bad_vals[3 - k];
            for (int d = 0; d < 3; d++) {
                void *src = make_input(v, rows * cols, k_dts[d]);
                size_t bad = 0;
                int8_t *q = malloc(rows * cols);
                uint8_t *sc = malloc(rows * 4);
                int8_t *zp = malloc(rows);
                mq_status st = be->ops->quantize(be, mq_qd(MQ_QK_INT8, k % 2), src, k_dts[d], rows,
                                                 cols, q, sc, zp, &bad, NULL);
                assert_int_equal(st, MQ_STATUS_E_DATA);
                assert_int_equal(bad, row1);
                if (small && rows * cols < 300000) {
                    bad = 0;
                    st = small->ops->quantize(small, mq_qd(MQ_QK_INT8, k % 2), src, k_dts[d], rows,
                                              cols, q, sc, zp, &bad, NULL);
                    assert_int_equal(st, MQ_STATUS_E_DATA);
                    assert_int_equal(bad, row1);
                }
                check_quantize(be, src, k_dts[d], rows, cols, true);
                free(q);
                free(sc);
                free(zp);
                free(src);
            }
            v[row1 * cols + (cols - 1) * (k % 2)] = 1.0f;
            v[row2 * cols + cols / 2] = 1.0f;
        }
        free(v);
    }
}

/* 4096-byte buffers: row chunks, and rows larger than a buffer (two passes in pieces). */
static void test_quantize_chunked(void **state)
{
    (void)state;
    NEED(BE_SMALL);
    tu_rng r;
    tu_rng_seed(&r, 5);
    static const size_t shapes[][2] = {{100, 1000}, {1000, 3}, {50, 1024}, {5, 1025}, {1, 70001},
                                       {3, 5000},   {2, 4097}, {7, 2049},  {1, 4096}, {2, 2048}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_shape(be, &r, shapes[i][0], shapes[i][1], PAT_NORMAL);
        check_shape(be, &r, shapes[i][0], shapes[i][1], PAT_EDGES);
    }
}

/* The random shapes, then every edge pattern on 40 rows of `cols` values:
 * the checks each backend configuration gets. */
static void run_shapes_and_edges(mq_backend *be, int seed, size_t cols)
{
    run_shapes(be, seed);
    tu_rng r;
    tu_rng_seed(&r, (uint64_t)seed * 10);
    for (int pat = PAT_EDGES; pat < PAT_COUNT; pat++)
        check_shape(be, &r, 40, cols, pat);
}

/* The work-group shape a GPU gets (many work-items per row), run on any device. */
static void test_quantize_wide_groups(void **state)
{
    (void)state;
    NEED(BE_WIDE);
    if (mq_opencl_work_group(be) < 256)
        print_message("work-group only %zu\n", mq_opencl_work_group(be));
    run_shapes_and_edges(be, 14, 333);
    tu_rng r;
    tu_rng_seed(&r, 141);
    check_shape(be, &r, 2, 300000, PAT_NORMAL);
}

static void test_quantize_div_double(void **state)
{
    (void)state;
    NEED(BE_DOUBLE);
    run_shapes_and_edges(be, 6, 33);
}

static void test_quantize_div_soft(void **state)
{
    (void)state;
    NEED(BE_SOFT);
    run_shapes_and_edges(be, 7, 33);
}

/* The kernels' division against the host's IEEE division, in every mode, for
 * random finite dividends and normal divisors (all the kernels divide by). */
static void check_division(mq_backend *be, uint64_t seed)
{
    size_t n = 1 << 18;
    float *a = malloc(n * sizeof *a), *d = malloc(n * sizeof *d), *o = malloc(n * sizeof *o);
    assert_true(a && d && o);
    tu_rng r;
    tu_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        uint32_t ua, ud;
        do
            ua = (uint32_t)tu_rng_u64(&r);
        while ((ua & 0x7f800000u) == 0x7f800000u);
        do
            ud = (uint32_t)tu_rng_u64(&r);
        while ((ud & 0x7f800000u) == 0x7f800000u || (ud & 0x7f800000u) == 0);
        if (i % 4 == 1) ud = (ud & 0x807fffffu) | (127u << 23); /* divisor in [1, 2) */
        if (i % 4 == 2) ua = (ua & 0x807fffffu) | ((uint32_t)(tu_rng_u64(&r) % 20 + 120) << 23);
        if (i % 8 == 3) ua &= 0x807fffffu; /* subnormal dividend */
        if (i % 16 == 5) ud = 0x42ff0000u; /* 127.5 */
        if (i % 16 == 7) ud = 0x437f0000u; /* 255 */
        if (i % 16 == 9) ud = 0x34000000u; /* FLT_EPSILON */
        if (i % 16 == 11) /* a subnormal divisor (int4/fp8 scales of tiny groups) */
            ud = ((uint32_t)tu_rng_u64(&r) & 0x807fffffu) | 1u;
        if (i % 16 == 13) ud = 0x40f00000u; /* 7.5 */
        if (i % 16 == 15) ud = 0x43e00000u; /* 448 */
        memcpy(&a[i], &ua, 4);
        memcpy(&d[i], &ud, 4);
    }
    assert_int_equal(mq_opencl_divide(be, a, d, o, n), MQ_OK);
    for (size_t i = 0; i < n; i++) {
        volatile float want = a[i] / d[i];
        if (memcmp((const void *)&want, &o[i], 4) != 0)
            fail_msg("%s division: %a / %a = %a, IEEE %a", mq_opencl_div_mode_name(be),
                     (double)a[i], (double)d[i], (double)o[i], (double)want);
    }
    free(a);
    free(d);
    free(o);
}

static void test_division(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    check_division(be, 8);
    if (backend(BE_DOUBLE)) check_division(backend(BE_DOUBLE), 9);
    if (backend(BE_SOFT)) check_division(backend(BE_SOFT), 10);
}

/* ---- streaming steps: reduce and quantize_values ---- */

static void check_reduce(mq_backend *be, const void *src, mq_dtype dt, size_t n)
{
    mq_ref_stats a, b;
    mq_ref_stats_init(&a);
    mq_ref_stats_init(&b);
    size_t half = n / 3, es = mq_dtype_size(dt);
    /* in two calls, to fold into statistics that already hold values */
    assert_int_equal(be->ops->reduce(be, src, dt, half, &a), MQ_OK);
    assert_int_equal(be->ops->reduce(be, (const uint8_t *)src + half * es, dt, n - half, &a),
                     MQ_OK);
    mq_ref_stats_update(&b, src, dt, n);
    /* == rather than bits: which zero a min or max keeps is left open */
    if (a.lo != b.lo || a.hi != b.hi || a.amax != b.amax || a.nonfinite != b.nonfinite)
        fail_msg("reduce %s n=%zu: lo %a hi %a amax %a bad %d; reference %a %a %a %d",
                 mq_dtype_name(dt), n, (double)a.lo, (double)a.hi, (double)a.amax, a.nonfinite,
                 (double)b.lo, (double)b.hi, (double)b.amax, b.nonfinite);
    if (b.nonfinite) return;
    float s;
    int8_t zp;
    mq_ref_params(mq_qd(MQ_QK_INT8, n % 2 == 0), &b, dt, &s, &zp);
    int8_t *q1 = malloc(n + 1), *q2 = malloc(n + 1);
    assert_true(q1 && q2);
    q1[n] = q2[n] = 0x33;
    assert_int_equal(
        be->ops->quantize_values(be, mq_qd(MQ_QK_INT8, false), src, dt, n, s, zp, q1, NULL), MQ_OK);
    mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), src, dt, n, s, zp, q2);
    assert_memory_equal(q1, q2, n + 1);
    /* parameters that saturate most values, codes as packed bytes (XOR 0x80) */
    assert_int_equal(be->ops->quantize_values(
                         be, (mq_qdesc){.kind = MQ_QK_INT8, .symmetric = false, .code_xor = 0x80},
                         src, dt, n, s / 64.0f, -100, q1, NULL),
                     MQ_OK);
    mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), src, dt, n, s / 64.0f, -100, q2);
    for (size_t i = 0; i < n; i++)
        q2[i] = (int8_t)((uint8_t)q2[i] ^ 0x80);
    assert_memory_equal(q1, q2, n + 1);
    free(q1);
    free(q2);
}

static void test_reduce_and_quantize_values(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    mq_backend *small = backend(BE_SMALL);
    tu_rng r;
    tu_rng_seed(&r, 15);
    static const size_t sizes[] = {1, 2, 7, 9, 1000, 4097, 70001, 300001};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        for (int pat = 0; pat < PAT_COUNT; pat++) {
            float *v = make_values(&r, 1, n, pat);
            for (int d = 0; d < 3; d++) {
                void *src = make_input(v, n, k_dts[d]);
                check_reduce(be, src, k_dts[d], n);
                if (small && n < 100000) check_reduce(small, src, k_dts[d], n);
                free(src);
            }
            if (pat == PAT_NORMAL) { /* NaN and Inf: flagged, and left out of lo/hi/amax */
                v[n / 2] = INFINITY;
                v[n - 1] = NAN;
                void *src = make_input(v, n, MQ_DTYPE_F32);
                check_reduce(be, src, MQ_DTYPE_F32, n);
                if (small && n < 100000) check_reduce(small, src, MQ_DTYPE_F32, n);
                free(src);
            }
            free(v);
        }
    }
    mq_ref_stats st;
    mq_ref_stats_init(&st);
    assert_int_equal(be->ops->reduce(be, NULL, MQ_DTYPE_F32, 0, &st), MQ_OK);
    assert_true(isinf(st.lo) && st.lo > 0 && st.amax == 0.0f && !st.nonfinite);
}

/* ---- fp16 cast ---- */

/* ---- int4 and float8 e4m3 ---- */

/* The first three in every kind test; the MX kinds and NVFP4 (groups of the call's
 * rows, one-byte scales) in the row tests. */
static const mq_qkind k_kinds[6] = {MQ_QK_INT4,  MQ_QK_INT4,  MQ_QK_FP8,
                                    MQ_QK_MXFP4, MQ_QK_MXFP8, MQ_QK_NVFP4};
static const bool k_kind_sym[6] = {true, false, true, true, true, true};
#define K_ROW_KINDS 6

/* The descriptor of a kind; NVFP4's with a global scale that is no power of
 * two, so that the group scales and the codes' divisions round. */
static mq_qdesc qd_k(mq_qkind k, bool sym)
{
    mq_qdesc d = mq_qd(k, sym);
    if (k == MQ_QK_NVFP4) d.gscale = 0x1.70f2p+8f;
    return d;
}

/* Rows at the rounding boundaries of the kinds: int4 halves with a row
 * maximum of 7.5 (scale 1), e4m3 values and midpoints with a maximum of 448
 * (scale 1), e4m3 subnormal steps, F16 subnormals, the BF16 maximum; other
 * rows as make_values' edges. */
static float *make_kind_values(tu_rng *r, size_t rows, size_t cols)
{
    float *v = make_values(r, rows, cols, PAT_EDGES);
    for (size_t i = 0; i < rows * cols; i++) {
        size_t row = i / cols, c = i % cols;
        uint64_t k = tu_rng_u64(r);
        if (row % 4 == 2) v[i] = c == 0 ? 7.5f : (float)((int)(k % 31) - 15) * 0.5f;
        if (row % 8 == 1) /* F16 subnormals (exact in every dtype's range) */
            v[i] = (float)((int)(k % 2047) - 1023) * 0x1p-24f;
        if (row % 8 == 5 && c == 1) /* the BF16 maximum (F16: saturated to 65504) */
            v[i] = (k >> 10) & 1 ? 0x1.fep127f : -0x1.fep127f;
        if (row % 4 == 3) {
            float lo = mq_e4m3_to_f32((uint8_t)(k % 126)),
                  hi = mq_e4m3_to_f32((uint8_t)(k % 126 + 1));
            v[i] = c == 0 ? 448.0f : ((k >> 8) & 1 ? (lo + hi) / 2 : lo) * ((k >> 9) & 1 ? -1 : 1);
        }
    }
    return v;
}

static void check_rows_k(mq_backend *be, const void *src, mq_dtype dt, size_t rows, size_t cols,
                         int kk)
{
    mq_qkind kind = k_kinds[kk];
    bool sym = k_kind_sym[kk];
    size_t es = mq_qkind_scale_size(kind, dt), qn = rows * mq_qkind_row_bytes(kind, cols);
    uint8_t *q1 = malloc(qn + 1), *q2 = malloc(qn + 1);
    unsigned char *s1 = malloc(rows * es + 1), *s2 = malloc(rows * es + 1);
    int8_t *z1 = calloc(rows + 1, 1), *z2 = calloc(rows + 1, 1);
    assert_true(q1 && q2 && s1 && s2 && z1 && z2);
    size_t b2 = 0;
    mq_status want = mq_ref_quantize(qd_k(kind, sym), src, dt, rows, cols, q2, s2, z2, &b2);
    for (int with_err = 0; with_err < 2; with_err++) {
        size_t b1 = 0;
        mq_err_acc e;
        mq_err_acc_init(&e);
        memset(q1, 0xa5, qn);
        mq_status got = be->ops->quantize(be, qd_k(kind, sym), src, dt, rows, cols, q1, s1, z1, &b1,
                                          with_err ? &e : NULL);
        if (got != want)
            fail_msg("kind %d dt %d %zux%zu: status %d, want %d (%s)", kk, dt, rows, cols, got,
                     want, mq_last_error());
        if (want != MQ_OK) {
            assert_int_equal(b1, b2);
            continue;
        }
        for (size_t i = 0; i < qn; i++)
            if (q1[i] != q2[i])
                fail_msg("kind %d dt %d %zux%zu err %d: code byte %zu is 0x%02x, want 0x%02x", kk,
                         dt, rows, cols, with_err, i, q1[i], q2[i]);
        assert_memory_equal(s1, s2, rows * es);
        if (!sym) assert_memory_equal(z1, z2, rows);
    }
    free(q1), free(q2), free(s1), free(s2), free(z1), free(z2);
}

/* Group sizes 32 and 128, odd lengths (int4 padding), tails of < 8 values. */
static const size_t k_kind_shapes[][2] = {{3, 5},   {4, 7},    {64, 32},  {8, 33}, {32, 128},
                                          {5, 203}, {4, 1500}, {2, 4099}, {1, 1},  {300, 16}};

static void run_kind_rows(mq_backend *be, uint64_t seed, size_t max_cols, int n_dts)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    for (size_t k = 0; k < sizeof k_kind_shapes / sizeof *k_kind_shapes; k++) {
        size_t rows = k_kind_shapes[k][0], cols = k_kind_shapes[k][1];
        if (cols > max_cols) continue;
        for (int pat = 0; pat <= PAT_COUNT; pat++) {
            float *v = pat == PAT_COUNT ? make_kind_values(&r, rows, cols)
                                        : make_values(&r, rows, cols, pat);
            for (int d = 0; d < n_dts; d++) {
                void *src = make_input(v, rows * cols, k_dts[d]);
                for (int kk = 0; kk < K_ROW_KINDS; kk++)
                    check_rows_k(be, src, k_dts[d], rows, cols, kk);
                free(src);
            }
            free(v);
        }
    }
}

static void test_kinds_rows(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    run_kind_rows(be, 71, SIZE_MAX, 3);
}

/* GPU-like work-groups (many work-items per row) and the soft division, on
 * F32 (and F16) only: each kernel of another build costs a compile, and the
 * dtypes take the same paths there (the soft division itself: test_division). */
static void test_kinds_rows_wide_soft(void **state)
{
    (void)state;
    {
        NEED(BE_WIDE);
        run_kind_rows(be, 72, 1500, 2);
    }
    NEED(BE_SOFT);
    run_kind_rows(be, 73, 1500, 1);
}

/* 4096-byte buffers: many chunks of short rows, rows longer than a buffer
 * (statistics and codes in pieces, int4 words across pieces), and on the
 * default device a row of the split length. */
static void test_kinds_rows_large(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 74);
    {
        NEED(BE_SMALL);
        const size_t shapes[][2] = {{700, 32}, {3, 1029}, {2, 2003}, {1, 5000}};
        for (size_t k = 0; k < 4; k++) {
            size_t rows = shapes[k][0], cols = shapes[k][1];
            float *v = make_kind_values(&r, rows, cols);
            for (int d = 0; d < 3; d++) {
                void *src = make_input(v, rows * cols, k_dts[d]);
                for (int kk = 0; kk < K_ROW_KINDS; kk++)
                    check_rows_k(be, src, k_dts[d], rows, cols, kk);
                free(src);
            }
            free(v);
        }
    }
    NEED(BE_DEFAULT);
    size_t cols = ((size_t)1 << 18) + 5;
    float *v = make_values(&r, 1, cols, PAT_NORMAL);
    void *src = make_input(v, cols, MQ_DTYPE_BF16);
    for (int kk = 0; kk < K_ROW_KINDS; kk++)
        check_rows_k(be, src, MQ_DTYPE_BF16, 1, cols, kk);
    free(src);
    free(v);
}

/* NaN/Inf: E_DATA naming the first bad row, on the fused and piecewise paths. */
static void test_kinds_nonfinite(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 75);
    for (int which = BE_DEFAULT; which <= BE_SMALL; which++) {
        NEED(which);
        const size_t shapes[][2] = {{6, 37}, {5, 1500}};
        for (size_t k = 0; k < 2; k++) {
            size_t rows = shapes[k][0], cols = shapes[k][1];
            float *v = make_values(&r, rows, cols, PAT_NORMAL);
            v[3 * cols + cols - 1] = NAN;
            v[4 * cols + 2] = -INFINITY;
            for (int d = 0; d < 3; d++) {
                void *src = make_input(v, rows * cols, k_dts[d]);
                for (int kk = 0; kk < K_ROW_KINDS; kk++)
                    check_rows_k(be, src, k_dts[d], rows, cols, kk);
                free(src);
            }
            free(v);
        }
    }
}

/* Fixed parameters: every e4m3 rounding case over a sweep of fp32 bit
 * patterns (scale 1), int4 codes with zero points, runs over the buffer. */
/* ---- overlapped transfers (cl_pipeline.c) ---- */

/* Weight error sums of the quantize op on be, kind INT8 or another. */
static mq_status quantize_err(mq_backend *be, const void *src, mq_dtype dt, size_t rows,
                              size_t cols, mq_qkind kind, bool sym, uint8_t *q, void *scale,
                              int8_t *zp, mq_err_acc *e)
{
    size_t bad = 0;
    mq_err_acc_init(e);
    if (kind == MQ_QK_INT8)
        return be->ops->quantize(be, mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, (int8_t *)q,
                                 scale, sym ? NULL : zp, &bad, e);
    return be->ops->quantize(be, qd_k(kind, sym), src, dt, rows, cols, q, scale, zp, &bad, e);
}

/* The overlapped path against the chunk-by-chunk one (whose error sums the
 * errstats tests hold to the reference): the same codes, scales, zero points
 * and error sums, bit for bit. */
static void check_overlap_err(mq_backend *ov, mq_backend *plain, const void *src, mq_dtype dt,
                              size_t rows, size_t cols, mq_qkind kind, bool sym)
{
    size_t es = mq_dtype_size(dt), qn = rows * mq_qkind_row_bytes(kind, cols);
    uint8_t *q1 = malloc(qn), *q2 = malloc(qn), *s1 = malloc(rows * es), *s2 = malloc(rows * es);
    int8_t *z1 = calloc(rows, 1), *z2 = calloc(rows, 1);
    assert_true(q1 && q2 && s1 && s2 && z1 && z2);
    mq_err_acc e1, e2;
    mq_status st1 = quantize_err(ov, src, dt, rows, cols, kind, sym, q1, s1, z1, &e1);
    mq_status st2 = quantize_err(plain, src, dt, rows, cols, kind, sym, q2, s2, z2, &e2);
    if (st1 != MQ_OK || st2 != MQ_OK)
        fail_msg("%zux%zu kind %d: status %d / %d (%s)", rows, cols, kind, st1, st2,
                 mq_last_error());
    assert_memory_equal(q1, q2, qn);
    assert_memory_equal(s1, s2, rows * es);
    assert_memory_equal(z1, z2, rows);
    if (e1.sig != e2.sig || e1.err2 != e2.err2 || e1.max_abs != e2.max_abs ||
        e1.clamped != e2.clamped)
        fail_msg("%zux%zu %s kind %d %s: error sums %a %a %a %llu, chunk by chunk %a %a %a %llu",
                 rows, cols, mq_dtype_name(dt), kind, sym ? "sym" : "asym", e1.sig, e1.err2,
                 e1.max_abs, (unsigned long long)e1.clamped, e2.sig, e2.err2, e2.max_abs,
                 (unsigned long long)e2.clamped);
    free(q1), free(q2), free(s1), free(s2), free(z1), free(z2);
}

/* Shapes of one chunk and of many (OVERLAP_CHUNK input bytes each: odd row
 * counts, a last chunk shorter than the others, rows larger than a chunk). */
static const size_t k_overlap_shapes[][2] = {{1, 3},    {7, 13},   {40, 256}, {1000, 17},
                                             {300, 1},  {33, 257}, {5, 1025}, {64, 4096},
                                             {3000, 3}, {2, 70001}};

static void run_overlap(int which, uint64_t seed)
{
    NEED(which);
    /* The same work-group shape, so the same order of summation. */
    mq_backend *plain = backend(which == BE_OVERLAP_WIDE ? BE_WIDE : BE_DEFAULT);
    assert_non_null(plain);
    size_t calls = mq_opencl_overlap_calls(be), chunks = mq_opencl_overlap_chunks(be);
    tu_rng r;
    tu_rng_seed(&r, seed);
    for (size_t i = 0; i < sizeof k_overlap_shapes / sizeof *k_overlap_shapes; i++) {
        size_t rows = k_overlap_shapes[i][0], cols = k_overlap_shapes[i][1];
        check_shape(be, &r, rows, cols, PAT_NORMAL);
        if (cols < ((size_t)1 << 18)) {
            float *v = make_values(&r, rows, cols, PAT_OUTLIERS);
            for (int d = 0; d < 3; d++) {
                void *src = make_input(v, rows * cols, k_dts[d]);
                for (int sym = 0; sym < 2; sym++)
                    check_overlap_err(be, plain, src, k_dts[d], rows, cols, MQ_QK_INT8, sym);
                check_overlap_err(be, plain, src, k_dts[d], rows, cols, MQ_QK_INT4, true);
                check_overlap_err(be, plain, src, k_dts[d], rows, cols, MQ_QK_INT4, false);
                check_overlap_err(be, plain, src, k_dts[d], rows, cols, MQ_QK_FP8, true);
                free(src);
            }
            free(v);
        }
    }
    run_kind_rows(be, seed + 1, SIZE_MAX, 3);
    /* The fused rows went through the pipeline, most of them in several chunks. */
    size_t dc = mq_opencl_overlap_calls(be) - calls, dk = mq_opencl_overlap_chunks(be) - chunks;
    print_message("overlapped (%s): %zu calls, %zu chunks\n", g_be_name[which], dc, dk);
    assert_true(dc > 0);
    assert_true(dk > 2 * dc);
}

static void test_overlap_rows(void **state)
{
    (void)state;
    run_overlap(BE_OVERLAP, 91);
}

static void test_overlap_rows_wide(void **state)
{
    (void)state;
    run_overlap(BE_OVERLAP_WIDE, 92);
}

/* A NaN or Inf in a later chunk: E_DATA naming the first such row, all
 * chunks having run. */
static void test_overlap_nonfinite(void **state)
{
    (void)state;
    NEED(BE_OVERLAP);
    size_t rows = 500, cols = 37;
    tu_rng r;
    tu_rng_seed(&r, 93);
    float *v = make_values(&r, rows, cols, PAT_NORMAL);
    v[431 * cols + 5] = NAN;
    v[477 * cols] = INFINITY;
    for (int d = 0; d < 3; d++) {
        void *src = make_input(v, rows * cols, k_dts[d]);
        check_quantize(be, src, k_dts[d], rows, cols, false);
        for (int kk = 0; kk < 3; kk++)
            check_rows_k(be, src, k_dts[d], rows, cols, kk);
        free(src);
    }
    free(v);
}

static void test_kinds_values(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 76);
    for (int which = BE_DEFAULT; which <= BE_SMALL; which++) {
        NEED(which);
        size_t n = which == BE_DEFAULT ? (size_t)1 << 20 : 20000;
        float *x = malloc(n * sizeof *x);
        uint8_t *a = malloc(n), *b = malloc(n);
        for (size_t i = 0; i < n; i++)
            x[i] = as_float((uint32_t)(i * 4099u + (i >> 7)));
        assert_int_equal(be->ops->quantize_values(be, mq_qd(MQ_QK_FP8, true), x, MQ_DTYPE_F32, n,
                                                  1.0f, 0, a, NULL),
                         MQ_OK);
        mq_ref_quantize_values(mq_qd(MQ_QK_FP8, true), x, MQ_DTYPE_F32, n, 1.0f, 0, b);
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i]) fail_msg("fp8 of %a: 0x%02x, want 0x%02x", x[i], a[i], b[i]);
        float *v = make_kind_values(&r, 4, 3001);
        for (int d = 0; d < 3; d++) {
            void *src = make_input(v, 4 * 3001, k_dts[d]);
            const size_t lens[] = {1, 7, 8, 9, 1000, 12004};
            for (size_t li = 0; li < 6; li++)
                for (int kk = 0; kk < 3; kk++) {
                    int8_t zp = k_kind_sym[kk] ? 0 : -3;
                    float sc = k_kinds[kk] == MQ_QK_FP8 ? 0.013f : 0.37f;
                    mq_err_acc e;
                    mq_err_acc_init(&e);
                    assert_int_equal(be->ops->quantize_values(
                                         be, mq_qd(k_kinds[kk], k_kind_sym[kk]), src, k_dts[d],
                                         lens[li], sc, zp, a, kk == 1 ? &e : NULL),
                                     MQ_OK);
                    mq_ref_quantize_values(mq_qd(k_kinds[kk], true), src, k_dts[d], lens[li], sc,
                                           zp, b);
                    assert_memory_equal(a, b, lens[li]);
                }
            free(src);
        }
        free(v);
        free(x);
        free(a);
        free(b);
    }
}

/* Input and codes in the backend's staging memory (zero-copy on a device that
 * shares host memory: the kernel works in place), the scales and zero points
 * in the codes' block after them, as the streaming pipeline lays them out. */
static void test_kinds_staging(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    tu_rng r;
    tu_rng_seed(&r, 78);
    const size_t rows = 96, cols = 203;
    float *v = make_kind_values(&r, rows, cols);
    for (size_t i = 0; i < rows * cols; i++) /* finite in BF16 too: every row quantizes */
        v[i] = fmaxf(fminf(v[i], 1e30f), -1e30f);
    for (int d = 0; d < 3; d++) {
        size_t es = mq_dtype_size(k_dts[d]);
        void *host = make_input(v, rows * cols, k_dts[d]);
        for (int kk = 0; kk < 3; kk++) {
            size_t qn = rows * mq_qkind_row_bytes(k_kinds[kk], cols), bad = 0;
            size_t before = mq_opencl_zero_copy_count(be);
            void *in = be->ops->staging_alloc(be, rows * cols * es);
            uint8_t *out = be->ops->staging_alloc(be, qn + rows * (es + 1));
            if (!in || !out) {
                be->ops->staging_free(be, in);
                be->ops->staging_free(be, out);
                skip();
            }
            memcpy(in, host, rows * cols * es);
            uint8_t *q2 = malloc(qn), *s2 = malloc(rows * es);
            int8_t *z2 = calloc(rows, 1);
            mq_err_acc e;
            mq_err_acc_init(&e);
            assert_int_equal(be->ops->quantize(be, mq_qd(k_kinds[kk], k_kind_sym[kk]), in, k_dts[d],
                                               rows, cols, out, out + qn,
                                               (int8_t *)out + qn + rows * es, &bad, &e),
                             MQ_OK);
            assert_int_equal(mq_ref_quantize(mq_qd(k_kinds[kk], k_kind_sym[kk]), host, k_dts[d],
                                             rows, cols, q2, s2, z2, &bad),
                             MQ_OK);
            assert_memory_equal(out, q2, qn);
            assert_memory_equal(out + qn, s2, rows * es);
            if (!k_kind_sym[kk]) assert_memory_equal(out + qn + rows * es, z2, rows);
            if (be->caps.shares_host_memory)
                assert_true(mq_opencl_zero_copy_count(be) >= before + 2);
            be->ops->staging_free(be, in);
            be->ops->staging_free(be, out);
            free(q2), free(s2), free(z2);
        }
        free(host);
    }
    free(v);
}

static void check_blocks(mq_backend *be, const void *src, mq_dtype dt, size_t rows, size_t cols,
                         size_t bs)
{
    size_t es = mq_dtype_size(dt), nb = ((rows + bs - 1) / bs) * ((cols + bs - 1) / bs);
    uint8_t *q1 = malloc(rows * cols + 1), *q2 = malloc(rows * cols + 1);
    unsigned char *s1 = malloc(nb * es + 1), *s2 = malloc(nb * es + 1);
    size_t b2 = 0;
    mq_status want = mq_ref_quantize(mq_qd_blocks(bs), src, dt, rows, cols, q2, s2, NULL, &b2);
    for (int with_err = 0; with_err < 2; with_err++) {
        size_t b1 = 0;
        mq_err_acc e;
        mq_err_acc_init(&e);
        mq_status got = be->ops->quantize(be, mq_qd_blocks(bs), src, dt, rows, cols, q1, s1, NULL,
                                          &b1, with_err ? &e : NULL);
        if (got != want)
            fail_msg("blocks dt %d %zux%zu/%zu: status %d, want %d (%s)", dt, rows, cols, bs, got,
                     want, mq_last_error());
        if (want != MQ_OK) {
            assert_int_equal(b1, b2);
            continue;
        }
        for (size_t i = 0; i < rows * cols; i++)
            if (q1[i] != q2[i])
                fail_msg("blocks dt %d %zux%zu/%zu: code %zu is 0x%02x, want 0x%02x", dt, rows,
                         cols, bs, i, q1[i], q2[i]);
        assert_memory_equal(s1, s2, nb * es);
    }
    free(q1), free(q2), free(s1), free(s2);
}

/* FP8 2-D blocks: whole and partial, bands wider than a 4096-byte buffer
 * (slabs), blocks larger than it (row segments), NaN/Inf in a block. */
static void test_kinds_blocks(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 77);
    const size_t shapes[][3] = {{128, 256, 128}, {130, 300, 128}, {5, 7, 4},
                                {33, 65, 16},    {40, 1000, 32},  {20, 300, 16}};
    for (int which = BE_DEFAULT; which <= BE_SMALL; which++) {
        NEED(which);
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            size_t rows = shapes[k][0], cols = shapes[k][1], bs = shapes[k][2];
            for (int pat = 0; pat < 2; pat++) {
                float *v = pat ? make_kind_values(&r, rows, cols)
                               : make_values(&r, rows, cols, PAT_NORMAL);
                for (int d = 0; d < 3; d++) {
                    void *src = make_input(v, rows * cols, k_dts[d]);
                    check_blocks(be, src, k_dts[d], rows, cols, bs);
                    free(src);
                }
                free(v);
            }
        }
        float *v = make_values(&r, 40, 100, PAT_NORMAL);
        v[20 * 100 + 70] = NAN;
        v[35 * 100 + 3] = -INFINITY;
        for (int d = 0; d < 3; d++) {
            void *src = make_input(v, 40 * 100, k_dts[d]);
            check_blocks(be, src, k_dts[d], 40, 100, 16);
            check_blocks(be, src, k_dts[d], 40, 100, 64);
            free(src);
        }
        free(v);
    }
}

static void check_cast(mq_backend *be, const void *src, mq_dtype dt, size_t n)
{
    for (int sat = 0; sat < 2; sat++) {
        uint16_t *h1 = malloc(n * 2 + 2), *h2 = malloc(n * 2 + 2);
        assert_true(h1 && h2);
        memset(h1, 0x5a, n * 2 + 2);
        memset(h2, 0x5a, n * 2 + 2);
        uint64_t ov1 = 777, ov2 = mq_ref_cast_f16(src, dt, n, sat, h2);
        assert_int_equal(be->ops->cast_f16(be, src, dt, n, sat, h1, &ov1), MQ_OK);
        if (ov1 != ov2)
            fail_msg("cast %s n=%zu sat=%d: %llu overflows, reference %llu", mq_dtype_name(dt), n,
                     sat, (unsigned long long)ov1, (unsigned long long)ov2);
        for (size_t i = 0; i < n + 1; i++)
            if (h1[i] != h2[i])
                fail_msg("cast %s n=%zu sat=%d: [%zu] = 0x%04x, reference 0x%04x",
                         mq_dtype_name(dt), n, sat, i, h1[i], h2[i]);
        free(h1);
        free(h2);
    }
}

/* fp32 bit patterns across the half range: normals, subnormal results,
 * overflow, ties, NaN payloads, infinities, zeros. */
static uint32_t cast_pattern(tu_rng *r, size_t i)
{
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u,
        0x7f800001u, 0x7fa00000u, 0xff812345u, 0x7fffffffu, 0x477fe000u, 0x477fefffu,
        0x477ff000u, 0xc77ff000u, 0x477fffffu, 0x47800000u, 0x7f7fffffu, 0x33000000u,
        0x33000001u, 0x33800000u, 0x337fffffu, 0x38800000u, 0x387fffffu, 0x38801000u,
        0x3f801000u, 0x3f803000u, 0x3f802fffu, 0x00000001u, 0x807fffffu, 0x34000000u};
    uint32_t u = (uint32_t)tu_rng_u64(r);
    switch (i % 4) {
    case 0:
        return special[(tu_rng_u64(r) >> 7) % (sizeof special / sizeof special[0])];
    case 1: /* exponent within the half range and a little beyond */
        return (u & 0x807fffffu) | ((uint32_t)(tu_rng_u64(r) % 48 + 96) << 23);
    case 2: /* ties: the 13 dropped bits are 0x1000 */
        return (u & 0x807fe000u) | 0x1000u | ((uint32_t)(tu_rng_u64(r) % 48 + 96) << 23);
    default:
        return u;
    }
}

static void test_cast_f16(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    tu_rng r;
    tu_rng_seed(&r, 11);
    static const size_t sizes[] = {1, 7, 8, 9, 1000, 4099, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint32_t *f = malloc(n * 4), *b16 = malloc(n * 2), *h16 = malloc(n * 2);
        uint64_t *f64 = malloc(n * 8);
        assert_true(f && b16 && h16 && f64);
        for (size_t i = 0; i < n; i++) {
            f[i] = cast_pattern(&r, i);
            ((uint16_t *)b16)[i] = (uint16_t)(cast_pattern(&r, i) >> 16);
            ((uint16_t *)h16)[i] = (uint16_t)tu_rng_u64(&r);
            uint64_t u = tu_rng_u64(&r);
            if (i % 3 == 0) /* near the half range, incl. ties at bit 41 */
                u = (u & 0x800fffffffffffffULL) | ((uint64_t)(tu_rng_u64(&r) % 48 + 992) << 52);
            if (i % 6 == 1) u = (u & 0xfffffc0000000000ULL) | 0x20000000000ULL;
            if (i % 9 == 2) u |= 0x7ff0000000000000ULL; /* inf / NaN payloads */
            f64[i] = u;
        }
        check_cast(be, f, MQ_DTYPE_F32, n);
        check_cast(be, b16, MQ_DTYPE_BF16, n);
        check_cast(be, h16, MQ_DTYPE_F16, n);
        check_cast(be, f64, MQ_DTYPE_F64, n);
        free(f);
        free(b16);
        free(h16);
        free(f64);
    }
}

static void test_cast_chunked(void **state)
{
    (void)state;
    NEED(BE_SMALL);
    tu_rng r;
    tu_rng_seed(&r, 12);
    size_t n = 10007;
    uint32_t *f = malloc(n * 4);
    uint64_t *f64 = malloc(n * 8);
    assert_true(f && f64);
    for (size_t i = 0; i < n; i++) {
        f[i] = cast_pattern(&r, i);
        double d = (double)tu_rng_normal(&r) * 70000.0;
        memcpy(&f64[i], &d, 8);
    }
    check_cast(be, f, MQ_DTYPE_F32, n);
    check_cast(be, f64, MQ_DTYPE_F64, n);
    free(f);
    free(f64);
}

/* ---- dequantize ---- */

static void check_dequantize(mq_backend *be, tu_rng *r, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    int8_t *q = malloc(n + 1), *zp = malloc(rows + 1);
    float *sf = malloc(rows * sizeof *sf);
    assert_true(q && zp && sf);
    for (size_t i = 0; i < n; i++)
        q[i] = (int8_t)(tu_rng_u64(r) & 0xff);
    for (size_t i = 0; i < rows; i++) {
        zp[i] = (int8_t)(tu_rng_u64(r) & 0xff);
        sf[i] = fabsf(tu_rng_normal(r)) * ldexpf(1.0f, (int)(tu_rng_u64(r) % 40) - 30);
        if (i % 7 == 3) sf[i] = 600.0f; /* overflows fp16 for |q - zp| > 109 */
        if (i % 11 == 4) sf[i] = FLT_EPSILON;
    }
    for (int d = 0; d < 3; d++) {
        mq_dtype dt = k_dts[d];
        size_t es = mq_dtype_size(dt);
        void *scale = make_input(sf, rows, dt);
        uint8_t *o1 = malloc(n * es + 1), *o2 = malloc(n * es + 1);
        assert_true(o1 && o2);
        for (int withzp = 0; withzp < 2; withzp++) {
            memset(o1, 0x5a, n * es + 1);
            memset(o2, 0x5a, n * es + 1);
            const int8_t *z = withzp ? zp : NULL;
            assert_int_equal(be->ops->dequantize_rows(be, q, rows, cols, scale, z, dt, o1), MQ_OK);
            mq_ref_dequantize_rows(q, rows, cols, scale, z, dt, o2);
            if (memcmp(o1, o2, n * es + 1) != 0)
                fail_msg("dequantize %zux%zu %s zp=%d differs", rows, cols, mq_dtype_name(dt),
                         withzp);
        }
        free(o1);
        free(o2);
        free(scale);
    }
    free(q);
    free(zp);
    free(sf);
}

static void test_dequantize(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    tu_rng r;
    tu_rng_seed(&r, 13);
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        check_dequantize(be, &r, k_shapes[i][0], k_shapes[i][1]);
    mq_backend *small = backend(BE_SMALL);
    if (small) {
        check_dequantize(small, &r, 100, 1000);
        check_dequantize(small, &r, 3, 5000);
        check_dequantize(small, &r, 1, 70001);
        check_dequantize(small, &r, 3000, 3);
    }
}

/* dequantize_source (source.cl) against the reference; with 4096-byte
 * buffers in many chunks, some cut where their scale rows fill the buffer. */
static void test_source_fp8_block(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    sc_check_fp8_block_suite(be, 81);
    sc_check_fp8_block(be, 82, 300, 1100, 128, 128, 128 * 1100 + 7, 170 * 1100, true);
    mq_backend *small = backend(BE_SMALL);
    if (small) {
        sc_check_fp8_block_suite(small, 83);
        sc_check_fp8_block(small, 84, 3000, 3, 1, 1, 0, 9000, false);
        sc_check_fp8_block(small, 85, 20, 5000, 2, 128, 1234, 80000, true);
    }
    mq_backend *wide = backend(BE_WIDE);
    if (wide) sc_check_fp8_block_suite(wide, 86);
}

/* quantize_source: the source kernel into the buffer the fused rows kernel
 * reads, the same bytes as the reference's two steps; groups of 128 from
 * mid-row, bands of whole rows, bands whose groups are whole rows; in many
 * chunks with 4096-byte buffers; blocks and rows too long for the fused
 * kernel through the host buffer. */
static void test_quantize_source(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    sc_check_quantize_source(be, 91, 40, 384, 128, 7, 60);
    sc_check_quantize_source(be, 92, 40, 384, 384, 5, 30);
    sc_check_quantize_source(be, 93, 24, 20, 20, 0, 24);
    sc_check_quantize_source(be, 94, 2, (size_t)1 << 18, (size_t)1 << 18, 1, 1);
    mq_backend *small = backend(BE_SMALL);
    if (small) {
        sc_check_quantize_source(small, 95, 40, 384, 128, 7, 100);
        sc_check_quantize_source(small, 96, 300, 8, 8, 3, 290);
    }
    mq_backend *wide = backend(BE_WIDE);
    if (wide) sc_check_quantize_source(wide, 97, 40, 384, 128, 2, 100);
}

/* ---- device choice and argument errors ---- */

static void test_device_specs(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    assert_string_equal(be->backend, "opencl");
    assert_true(be->platform[0] != '\0' && be->device[0] != '\0');

    char sub[8] = {0};
    memcpy(sub, be->device, strlen(be->device) < 4 ? strlen(be->device) : 4);
    for (char *p = sub; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A'); /* names match ignoring case */
    const char *specs[] = {"opencl", "0:0", sub};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        bool none = true;
        mq_backend *b = NULL;
        mq_status st = mq_opencl_backend_open(specs[i], 0, &none, &b);
        if (st != MQ_OK) fail_msg("spec '%s': %s", specs[i], mq_last_error());
        assert_false(none);
        mq_backend_free(b);
    }
    /* "auto" takes a GPU or an accelerator, never a CPU device: without one,
     * mq_backend_open gives the host path. */
    bool none = true, gpu_none = true;
    mq_backend *b = NULL;
    bool gpu = mq_opencl_backend_open("gpu", 0, &gpu_none, &b) == MQ_OK;
    mq_backend_free(b);
    b = NULL;
    mq_status st = mq_opencl_backend_open("auto", 0, &none, &b);
    if (gpu) {
        assert_int_equal(st, MQ_OK);
        mq_backend_free(b);
    } else {
        assert_int_equal(st, MQ_STATUS_E_DEVICE);
        assert_true(none);
        const mq_device_sel auto_sel = {0};
        assert_int_equal(mq_backend_open(&auto_sel, &b), MQ_OK);
        assert_string_equal(b->backend, "host");
        assert_true(b->caps.host_threads);
        mq_backend_free(b);
    }
    none = true;
    b = NULL;
    assert_int_equal(mq_opencl_backend_open("no-such-device-xyz", 0, &none, &b),
                     MQ_STATUS_E_DEVICE);
    assert_false(none);
    assert_non_null(strstr(mq_last_error(), "available"));
    assert_non_null(strstr(mq_last_error(), be->device));
    assert_int_equal(mq_opencl_backend_open("77:3", 0, &none, &b), MQ_STATUS_E_DEVICE);
    assert_non_null(strstr(mq_last_error(), "0:0"));
}

/* A program that fails to build: E_DEVICE with the compiler's log in the message. */
static void test_build_failure(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    mq_cl_options o;
    mq_cl_options_init(&o);
    o.build_options = "-DMQ_TEST_BUILD_FAILURE";
    bool none = true;
    mq_backend *b = NULL;
    assert_int_equal(mq_opencl_backend_open_opts("opencl", &o, &none, &b), MQ_STATUS_E_DEVICE);
    assert_false(none);
    assert_null(b);
    assert_non_null(strstr(mq_last_error(), "clBuildProgram failed: CL_BUILD_PROGRAM_FAILURE"));
    assert_non_null(strstr(mq_last_error(), "requested by the test suite"));
}

static void test_bad_arguments(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    int8_t q[4];
    uint8_t s[8];
    int8_t zp[2];
    size_t bad;
    float src[4] = {1, 2, 3, 4};
    assert_int_equal(be->ops->quantize(be, mq_qd(MQ_QK_INT8, true), src, MQ_DTYPE_I32, 1, 4, q, s,
                                       NULL, &bad, NULL),
                     MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(be->ops->quantize(be, mq_qd(MQ_QK_INT8, true), src, MQ_DTYPE_F32, 0, 4, q, s,
                                       NULL, &bad, NULL),
                     MQ_OK);
    check_quantize(be, src, MQ_DTYPE_F32, 2, 0, false); /* empty rows: reference's parameters */
    uint16_t h[4];
    uint64_t ov = 9;
    assert_int_equal(be->ops->cast_f16(be, src, MQ_DTYPE_I8, 4, false, h, &ov),
                     MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(be->ops->cast_f16(be, src, MQ_DTYPE_F32, 0, false, h, &ov), MQ_OK);
    assert_int_equal(ov, 0);
    assert_int_equal(be->ops->dequantize_rows(be, q, 1, 4, s, zp, MQ_DTYPE_F64, src),
                     MQ_STATUS_E_INVALID_ARG);
}

/* Run in a child process whose ICD loader finds no platform (OCL_ICD_VENDORS
 * points nowhere): "auto" reports none_found, an explicit spec says so. */
static int no_platform_child(void)
{
    bool none = false;
    mq_backend *b = NULL;
    mq_status st = mq_opencl_backend_open("auto", 0, &none, &b);
    if (st == MQ_OK) {
        mq_backend_free(b);
        return 77; /* this loader ignores OCL_ICD_VENDORS */
    }
    if (st != MQ_STATUS_E_DEVICE || !none) return 1;
    st = mq_opencl_backend_open("gpu", 0, &none, &b);
    if (st != MQ_STATUS_E_DEVICE || !strstr(mq_last_error(), "no OpenCL")) return 2;
    return 0;
}

static const char *g_self;

static void test_no_platform(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("OCL_ICD_VENDORS", "/nonexistent-mq-vendors", 1);
        execl("/proc/self/exe", g_self, "--no-platform-child", (char *)NULL);
        execl(g_self, g_self, "--no-platform-child", (char *)NULL);
        _exit(126);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* `monoquant devices`: lists the device and marks the one auto picks; with no
 * platform it says so and still succeeds. */
static void test_cli_devices(void **state)
{
    (void)state;
    NEED(BE_DEFAULT);
    if (access(MQ_CLI_PATH, X_OK) != 0 || strstr(MQ_CLI_PATH, "/bin/false")) skip();
    char *out = NULL;
    assert_int_equal(tu_run_cli(&out, "devices"), 0);
    assert_non_null(strstr(out, be->device));
    assert_non_null(strstr(out, "Platform #0"));
    /* A CPU OpenCL device is listed but not what auto takes. */
    bool none = true;
    mq_backend *g = NULL;
    if (mq_opencl_backend_open("gpu", 0, &none, &g) == MQ_OK) {
        mq_backend_free(g);
        assert_non_null(strstr(out, " * Device #"));
    } else {
        assert_null(strstr(out, " * Device #"));
        assert_non_null(strstr(out, "--device auto uses the host path"));
    }
    assert_non_null(strstr(out, "fp64"));
    assert_true(strstr(out, "(zero-copy staging)") || strstr(out, "(pinned staging)"));
    free(out);
    assert_int_equal(tu_run_cli(&out, "devices --help"), 0);
    assert_non_null(strstr(out, "usage"));
    free(out);
    assert_int_equal(tu_run_cli(&out, "devices --bogus"), 1);
    free(out);
    setenv("OCL_ICD_VENDORS", "/nonexistent-mq-vendors", 1);
    int rc = tu_run_cli(&out, "devices");
    unsetenv("OCL_ICD_VENDORS");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "no OpenCL platform found"));
    free(out);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--no-platform-child") == 0) return no_platform_child();
    g_self = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_division),
        cmocka_unit_test(test_quantize_shapes),
        cmocka_unit_test(test_quantize_edges),
        cmocka_unit_test(test_quantize_ties),
        cmocka_unit_test(test_quantize_long_rows),
        cmocka_unit_test(test_quantize_nonfinite),
        cmocka_unit_test(test_quantize_chunked),
        cmocka_unit_test(test_quantize_wide_groups),
        cmocka_unit_test(test_quantize_div_double),
        cmocka_unit_test(test_quantize_div_soft),
        cmocka_unit_test(test_reduce_and_quantize_values),
        cmocka_unit_test(test_kinds_rows),
        cmocka_unit_test(test_kinds_rows_wide_soft),
        cmocka_unit_test(test_kinds_rows_large),
        cmocka_unit_test(test_kinds_nonfinite),
        cmocka_unit_test(test_kinds_values),
        cmocka_unit_test(test_kinds_staging),
        cmocka_unit_test(test_overlap_rows),
        cmocka_unit_test(test_overlap_rows_wide),
        cmocka_unit_test(test_overlap_nonfinite),
        cmocka_unit_test(test_kinds_blocks),
        cmocka_unit_test(test_cast_f16),
        cmocka_unit_test(test_cast_chunked),
        cmocka_unit_test(test_dequantize),
        cmocka_unit_test(test_source_fp8_block),
        cmocka_unit_test(test_quantize_source),
        cmocka_unit_test(test_device_specs),
        cmocka_unit_test(test_build_failure),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_no_platform),
        cmocka_unit_test(test_cli_devices),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
