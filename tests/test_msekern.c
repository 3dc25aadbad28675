/* The mse observer's scan through the back ends (the host loop of
 * backend/cpumse.c, the OpenCL kernel) against the reference
 * (mq_obs_mse_scan): the same records, bit for bit, on random and edge data,
 * every kind and layout, with and without importance weights. */
#include "testutil.h"

#include "backend.h"
#include "cl_api.h"
#include "cpukern.h"
#include "observer.h"
#include "obspow.h"
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static mq_backend *host_be; /* the host back end, whose loop has an errors hook */

typedef struct {
    mq_backend *be[2]; /* host, OpenCL (NULL when no device) */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (mq_backend_open_host(&f->be[0]) != MQ_OK) return -1;
    host_be = f->be[0];
    if (mq_backend_open_spec("cpu", 0, &f->be[1]) != MQ_OK) f->be[1] = NULL;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 2; i++)
        if (f->be[i]) mq_backend_free(f->be[i]);
    free(f);
    return 0;
}

enum {
    DATA_RANDOM,
    DATA_TIES,
    DATA_ZEROS,
    DATA_CONST,
    DATA_MAX,
    DATA_SPREAD,
    DATA_SUB,
    DATA_MIXED,
    DATA_LOW,
    DATA_COUNT
};

/* rows x cols values of one kind of data. */
static void fill(float *w, size_t n, int kind, tu_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float g = tu_rng_normal(r);
        switch (kind) {
        case DATA_RANDOM:
            w[i] = g * (i % 29 == 0 ? 7.0f : 1.0f) + (i % 3 == 0 ? 0.3f : 0.0f);
            break;
        case DATA_TIES: /* a few values, many repeats: equal errors between steps */
            w[i] = (float)((int)(g * 4.0f)) * 0.25f;
            break;
        case DATA_ZEROS:
            w[i] = i % 4 == 0 ? g : 0.0f;
            break;
        case DATA_CONST:
            w[i] = i % 2 == 0 ? 0.0f : 1.5f; /* rows of one value after the reshape below */
            break;
        case DATA_MAX:
            w[i] = i % 5 == 0 ? (g < 0 ? -FLT_MAX : FLT_MAX) : g * 1e37f;
            break;
        case DATA_SPREAD: /* magnitudes over 2^-24 .. 1: FP8's subnormal codes too */
            w[i] = g * ldexpf(1.0f, -(int)(tu_rng_u64(r) % 25));
            break;
        case DATA_SUB:
            w[i] = g * 0x1p-130f; /* subnormals */
            break;
        case DATA_MIXED: /* a third far below the screening power's range, and 0s */
            w[i] = i % 3 == 0 ? g * 0x1p-60f : i % 7 == 0 ? 0.0f : g;
            break;
        default: /* differences on both sides of the power's range's start (2^-39) */
            w[i] = g * 0x1p-36f;
            break;
        }
    }
    if (kind == DATA_CONST)
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(i / 64 % 3) - 1.0f;
}

/* Scans with back end be and with the reference; the records must agree. */
static void check(mq_backend *be, mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *w,
                  mq_dtype dt, size_t rows, size_t cols)
{
    size_t groups = mq_qdesc_scales(d, rows, cols), mb = mq_obs_mse_mask_bytes(o);
    size_t steps = mq_obs_mse_steps(o), bad_ref = 0, bad = 0;
    uint8_t *m_ref = malloc(groups * mb + 1), *m = malloc(groups * mb + 1);
    bool *i_ref = calloc(steps + 1, 1), *im = calloc(steps + 1, 1);
    mq_status s_ref = mq_obs_mse_scan(d, o, imp, w, dt, rows, cols, m_ref, i_ref, &bad_ref);
    mq_status s = mq_be_mse_scan(be, d, o, imp, w, dt, rows, cols, m, im, &bad);
    assert_int_equal(s, s_ref);
    if (s == MQ_OK) {
        assert_memory_equal(m, m_ref, groups * mb);
        assert_memory_equal(im, i_ref, steps);
        /* The errors themselves, bit for bit: the records alone would hide
         * a last-bit difference that no step's choice depends on. */
        float *e_ref = malloc(steps * sizeof(float) + 1), *e = malloc(steps * sizeof(float) + 1);
        float *all = NULL;
        const mq_opencl_hooks *h = mq_opencl_hooks_get();
        if (be != host_be && h) {
            all = malloc(groups * steps * sizeof(float) + 1);
            assert_int_equal(h->mse_errors(be, d, o, imp, w, dt, rows, cols, all, &bad), MQ_OK);
        }
        for (size_t g = 0; g < groups; g++) {
            assert_true(mq_obs_mse_errors(d, o, imp, w, dt, rows, cols, g, e_ref));
            if (be == host_be) {
                assert_true(mq_hk_mse_errors(d, o, imp, w, dt, rows, cols, g, e));
                assert_memory_equal(e, e_ref, steps * sizeof(float));
            } else if (all) {
                assert_memory_equal(all + g * steps, e_ref, steps * sizeof(float));
            }
        }
        free(all);
        /* The second pass: the same codes, scales and zero points, and the
         * weight error as the reference counts it (to a relative 1e-5). */
        size_t limit = mq_obs_mse_limit(o, i_ref), qb = mq_qkind_row_bytes(d.kind, cols);
        size_t sb = groups * sizeof(float);
        uint8_t *q_ref = calloc(rows * qb + 1, 1), *q = calloc(rows * qb + 1, 1);
        float *sc_ref = calloc(groups + 1, sizeof(float)), *sc = calloc(groups + 1, sizeof(float));
        int8_t *z_ref = calloc(groups + 1, 1), *zp = calloc(groups + 1, 1);
        int8_t *zr = d.block ? NULL : z_ref, *zb = d.block ? NULL : zp;
        assert_int_equal(mq_obs_mse_quantize(d, o, imp, limit, m_ref, w, dt, rows, cols, q_ref,
                                             sc_ref, zr, &bad_ref),
                         MQ_OK);
        mq_err_acc a_ref, a;
        mq_err_acc_init(&a_ref);
        mq_err_acc_init(&a);
        mq_ref_error_stats(d, w, dt, rows, cols, q_ref, sc_ref, dt, zr, &a_ref);
        assert_int_equal(
            mq_be_mse_quantize(be, d, o, imp, limit, m, w, dt, rows, cols, q, sc, zb, &bad, &a),
            MQ_OK);
        assert_memory_equal(q, q_ref, rows * qb);
        assert_memory_equal(sc, sc_ref, dt == MQ_DTYPE_F32 ? sb : groups * 2);
        assert_memory_equal(zp, z_ref, groups);
        /* The host kernels sum squares in fp32 blocks first: exact enough
         * except where those overflow or underflow (the +-max and
         * subnormal data), as for min-max. */
        if (a_ref.sig > 1e-20 && a_ref.sig < 1e30) {
            assert_true(fabs(a.err2 - a_ref.err2) <= 1e-5 * a_ref.err2 + 1e-30);
            assert_true(fabs(a.sig - a_ref.sig) <= 1e-5 * a_ref.sig);
        }
        assert_int_equal(a.clamped, a_ref.clamped);
        free(q_ref);
        free(q);
        free(sc_ref);
        free(sc);
        free(z_ref);
        free(zp);
        free(e_ref);
        free(e);
    } else {
        assert_int_equal(bad, bad_ref);
    }
    free(m_ref);
    free(m);
    free(i_ref);
    free(im);
}

static void run_all(mq_backend *be)
{
    const mq_qdesc kinds[] = {mq_qd(MQ_QK_INT8, true), mq_qd(MQ_QK_INT8, false),
                              mq_qd(MQ_QK_INT4, true), mq_qd(MQ_QK_INT4, false),
                              mq_qd(MQ_QK_FP8, true),  mq_qd_blocks(16)};
    /* Groups of 64 as rows, whole channels of odd lengths, a ragged block edge. */
    const size_t shapes[][2] = {{48, 64}, {7, 333}, {37, 45}, {3, 1}};
    enum { MAXN = 48 * 333 };
    float *w = malloc(sizeof(float) * MAXN), imp[400];
    uint16_t *h = malloc(2 * MAXN);
    tu_rng r;
    tu_rng_seed(&r, 17);
    for (size_t j = 0; j < 400; j++)
        imp[j] = j % 11 == 0 ? 0.0f : (float)(j % 9) * 0.37f + 0.01f;
    mq_obs_mse o = mq_obs_mse_defaults();
    mq_obs_mse wide = {.maxshrink = 0.55, .grid = 20, .norm = 3.0, .patience = 3};
    /* A steep power: the host loop's shorter power covers only 2^-11 .. 2^11. */
    mq_obs_mse steep = {.maxshrink = 0.2, .grid = 100, .norm = 7.5, .patience = 5};
    for (int data = 0; data < DATA_COUNT; data++) {
        for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
            size_t rows = shapes[sh][0], cols = shapes[sh][1];
            fill(w, rows * cols, data, &r);
            for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
                check(be, kinds[k], &o, NULL, w, MQ_DTYPE_F32, rows, cols);
                check(be, kinds[k], &o, imp, w, MQ_DTYPE_F32, rows, cols);
                check(be, kinds[k], &wide, imp, w, MQ_DTYPE_F32, rows, cols);
            }
            check(be, mq_qd(MQ_QK_INT4, true), &steep, NULL, w, MQ_DTYPE_F32, rows, cols);
            check(be, mq_qd(MQ_QK_INT4, false), &steep, imp, w, MQ_DTYPE_F32, rows, cols);
            if (data == DATA_MAX) continue; /* beyond BF16/F16 */
            for (size_t i = 0; i < rows * cols; i++)
                h[i] = mq_f32_to_bf16(w[i]);
            check(be, mq_qd(MQ_QK_INT4, false), &o, NULL, h, MQ_DTYPE_BF16, rows, cols);
            check(be, mq_qd_blocks(16), &o, imp, h, MQ_DTYPE_BF16, rows, cols);
            for (size_t i = 0; i < rows * cols; i++)
                h[i] = mq_f32_to_f16(w[i] * 1e-2f);
            check(be, mq_qd(MQ_QK_INT8, true), &o, imp, h, MQ_DTYPE_F16, rows, cols);
        }
    }
    /* NaN and Inf: the first bad group, as the reference reports it. */
    fill(w, 48 * 64, DATA_RANDOM, &r);
    w[30 * 64 + 5] = NAN;
    w[41 * 64] = INFINITY;
    check(be, mq_qd(MQ_QK_INT4, true), &o, NULL, w, MQ_DTYPE_F32, 48, 64);
    check(be, mq_qd_blocks(16), &o, NULL, w, MQ_DTYPE_F32, 48, 64);
    free(w);
    free(h);
}

static void test_host(void **state)
{
    fixture *f = *state;
    /* The search screens steps with its cheaper power and decides near ties
     * with the exact one: as derived (the data's exact ties and near ties
     * take the exact power), then with bounds a thousand times wider, so
     * that most steps of every kind go to it. */
    size_t before = mq_hk_mse_rechecks;
    run_all(f->be[0]);
    assert_true(mq_hk_mse_rechecks > before);
    before = mq_hk_mse_rechecks;
    mq_hk_mse_slack = 1000.0;
    run_all(f->be[0]);
    mq_hk_mse_slack = 1.0;
    assert_true(mq_hk_mse_rechecks > before + 1000);
}

/* The screening power within its relative bound of x^n (computed in
 * double) for magnitudes over the loop's middle range, and within its
 * absolute bound below it (0, subnormals, tiny normals). */
static void test_pow_fast(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a);
    tu_rng r;
    tu_rng_seed(&r, 13);
    const float ns[] = {2.4f, 2.0f, 1.0f, 0.3f, 3.0f, 7.5f};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int L = (int)floor(96.0 / ns[k]) - 1;
        if (L > 120) L = 120;
        for (size_t i = 0; i < N; i++) {
            /* Every exponent of the range, uniform mantissas; and the ends. */
            int ex = (int)(tu_rng_u64(&r) % (uint64_t)(2 * L)) - L;
            float f = 1.0f + (float)(tu_rng_u64(&r) >> 41) * 0x1p-23f;
            x[i] = ldexpf(f, ex);
        }
        x[0] = 0.0f;
        x[1] = ldexpf(1.0f, -L);
        x[2] = nextafterf(ldexpf(1.0f, L), 0.0f);
        x[3] = 1.0f;
        x[4] = nextafterf(1.0f, 0.0f);
        x[5] = 0x1.6a09e6p0f; /* sqrt(2) */
        double rel = 0.0, worst = 0.0, tiny = 0.0;
        float lo = 0.0f;
        mq_hk_obs_pow_fast(x, N, ns[k], a, &rel, &lo, &tiny);
        assert_true(rel > 0.0 && rel < 1e-3);
        assert_true(lo == ldexpf(1.0f, -L));
        assert_true(tiny > 0.0 && tiny < 1e-9);
        assert_true(a[0] >= 0.0f && (double)a[0] <= tiny);
        for (size_t i = 1; i < N; i++) {
            double t = pow((double)x[i], (double)ns[k]);
            double d = fabs((double)a[i] - t) / t;
            if (d > worst) worst = d;
            assert_true(d <= rel);
        }
        /* The bound is not loose by orders of magnitude either. */
        assert_true(worst > rel / 100.0);
        /* Below lo: every exponent down to the subnormals' and 0. */
        for (size_t i = 0; i < N; i++) {
            int ex = -L - 1 - (int)(tu_rng_u64(&r) % (uint64_t)(150 - L));
            float f = 1.0f + (float)(tu_rng_u64(&r) >> 41) * 0x1p-23f;
            x[i] = ldexpf(f, ex);
        }
        x[0] = 0.0f;
        x[1] = 0x1p-149f;
        x[2] = nextafterf(0x1p-126f, 0.0f);
        x[3] = 0x1p-126f;
        x[4] = nextafterf(lo, 0.0f);
        mq_hk_obs_pow_fast(x, N, ns[k], a, &rel, &lo, &tiny);
        for (size_t i = 0; i < N; i++) {
            double t = pow((double)x[i], (double)ns[k]);
            assert_true(x[i] < lo);
            assert_true(a[i] > 0.0f && isfinite(a[i]));
            assert_true(fabs((double)a[i] - t) <= tiny);
        }
    }
    free(x);
    free(a);
}

static void test_opencl(void **state)
{
    fixture *f = *state;
    if (!f->be[1]) skip();
    run_all(f->be[1]);
    /* Buffers of 16 KiB: calls larger than one take the host loop, the
     * others the kernel; the records are the reference's either way. */
    mq_backend *small;
    assert_int_equal(mq_backend_open_spec("cpu", 16384, &small), MQ_OK);
    enum { ROWS = 64, COLS = 96 };
    float *w = malloc(sizeof(float) * ROWS * COLS);
    tu_rng r;
    tu_rng_seed(&r, 41);
    fill(w, ROWS * COLS, DATA_RANDOM, &r);
    mq_obs_mse o = mq_obs_mse_defaults();
    check(small, mq_qd(MQ_QK_INT4, false), &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS);
    check(small, mq_qd(MQ_QK_INT4, false), &o, NULL, w, MQ_DTYPE_F32, 8, COLS);
    mq_backend_free(small);
    free(w);
}

/* The vector power against obspow.h's, bit for bit, over random fp32
 * magnitudes of every exponent and the ends. */
static void test_pow(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *a = malloc(N * sizeof *a);
    tu_rng r;
    tu_rng_seed(&r, 12);
    const float ns[] = {2.4f, 2.0f, 1.0f, 0.3f, 7.5f};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        for (size_t i = 0; i < N; i++) {
            uint32_t u = (uint32_t)(tu_rng_u64(&r) % 0x7f800001u);
            memcpy(&x[i], &u, sizeof u);
        }
        x[0] = 0.0f;
        x[1] = INFINITY;
        x[2] = NAN;
        x[3] = 0x1p-149f;
        x[4] = 1.0f;
        mq_hk_obs_pow(x, N, ns[k], a);
        for (size_t i = 0; i < N; i++) {
            float b = mq_obs_pow(x[i], ns[k]);
            assert_memory_equal(&a[i], &b, sizeof b);
        }
        /* Runs of eight magnitudes within a few binades of each other, the
         * runs' centres over every exponent: whole vectors inside the
         * loop's middle range (its shorter power) and vectors across its
         * ends, for each power. */
        for (size_t i = 0; i < N; i += 8) {
            int c = (int)(tu_rng_u64(&r) % 261) - 130;
            for (size_t l = 0; l < 8; l++) {
                int ex = c + (int)(tu_rng_u64(&r) % 7) - 3;
                float f = 1.0f + (float)(tu_rng_u64(&r) >> 41) * 0x1p-23f;
                x[i + l] = ex > 127 ? INFINITY : ldexpf(f, ex);
                if (tu_rng_u64(&r) % 64 == 0) x[i + l] = 0.0f;
            }
        }
        mq_hk_obs_pow(x, N, ns[k], a);
        for (size_t i = 0; i < N; i++) {
            float b = mq_obs_pow(x[i], ns[k]);
            assert_memory_equal(&a[i], &b, sizeof b);
        }
    }
    free(x);
    free(a);
}

/* A large call, spread over the host's threads, gives the records of the
 * reference too. */
static void test_host_large(void **state)
{
    fixture *f = *state;
    enum { ROWS = 512, COLS = 256 };
    float *w = malloc(sizeof(float) * ROWS * COLS);
    tu_rng r;
    tu_rng_seed(&r, 8);
    fill(w, ROWS * COLS, DATA_RANDOM, &r);
    mq_obs_mse o = mq_obs_mse_defaults();
    check(f->be[0], mq_qd(MQ_QK_INT4, true), &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS);
    check(f->be[0], mq_qd(MQ_QK_FP8, true), &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS);
    free(w);
}

/* The stream's bytes: the CLI on the host path and on an OpenCL device write
 * the same files for every layout, and per channel they are the reference's
 * own codes and scales (mq_obs_mse_scan, _limit, _quantize). */
static void test_stream_bytes(void **state)
{
    fixture *f = *state;
    char *dir = tu_mkdtemp(), *in = tu_join(dir, "in.safetensors");
    char *oh = tu_join(dir, "host.safetensors"), *oc = tu_join(dir, "cl.safetensors");
    enum { R = 48, C = 256, R2 = 40, C2 = 200 };
    float *w = malloc(sizeof(float) * R * C), *w2 = malloc(sizeof(float) * R2 * C2);
    tu_rng r;
    tu_rng_seed(&r, 31);
    fill(w, R * C, DATA_RANDOM, &r);
    fill(w2, R2 * C2, DATA_SPREAD, &r);
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "a.weight", MQ_DTYPE_F32, 2, (int64_t[]){R, C}, w),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "b.weight", MQ_DTYPE_F32, 2, (int64_t[]){R2, C2}, w2),
                     MQ_OK);
    assert_int_equal(mq_model_save(m, in), MQ_OK);
    mq_model_free(m);
    const char *presets[] = {"W8A8", "FP8_DYNAMIC", "W4A16 --group-size 64",
                             "W4A16_ASYM --group-size channel", "FP8_BLOCK"};
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
        char *log = NULL;
        assert_int_equal(tu_run_cli(&log,
                                    "quantize %s -o %s --preset %s --observer mse -q "
                                    "--device host",
                                    in, oh, presets[p]),
                         0);
        free(log);
        if (p < 2) { /* per channel, one byte a code: the reference's own */
            mq_qdesc d = p == 0 ? mq_qd(MQ_QK_INT8, true) : mq_qd(MQ_QK_FP8, true);
            mq_obs_mse o = mq_obs_mse_defaults();
            size_t mb = mq_obs_mse_mask_bytes(&o), bad = 0;
            uint8_t *mask = malloc(R * mb), *q = malloc(R * C);
            float sc[R];
            int8_t zp[R];
            bool im[20] = {0};
            assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, R, C, mask, im, &bad),
                             MQ_OK);
            assert_int_equal(mq_obs_mse_quantize(d, &o, NULL, mq_obs_mse_limit(&o, im), mask, w,
                                                 MQ_DTYPE_F32, R, C, q, sc, zp, &bad),
                             MQ_OK);
            assert_int_equal(mq_model_open(oh, &m), MQ_OK);
            const mq_tensor *tq = mq_model_find(m, "a.weight");
            const mq_tensor *ts = mq_model_find(m, "a.weight_scale");
            assert_non_null(tq);
            assert_non_null(ts);
            assert_int_equal(tq->nbytes, R * C);
            assert_memory_equal(tq->data, q, R * C);
            assert_int_equal(ts->nbytes, sizeof sc);
            assert_memory_equal(ts->data, sc, sizeof sc);
            mq_model_free(m);
            free(mask);
            free(q);
        }
        if (!f->be[1]) continue;
        assert_int_equal(tu_run_cli(&log,
                                    "quantize %s -o %s --preset %s --observer mse -q "
                                    "--device cpu",
                                    in, oc, presets[p]),
                         0);
        free(log);
        size_t nh, nc;
        unsigned char *bh = tu_read_file(oh, &nh), *bc = tu_read_file(oc, &nc);
        assert_int_equal(nh, nc);
        assert_memory_equal(bh, bc, nh);
        free(bh);
        free(bc);
    }
    free(w);
    free(w2);
    tu_rmtree(dir);
    free(in);
    free(oh);
    free(oc);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pow),    cmocka_unit_test(test_pow_fast),
        cmocka_unit_test(test_host),   cmocka_unit_test(test_host_large),
        cmocka_unit_test(test_opencl), cmocka_unit_test(test_stream_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
