/* Quality evaluation: CLBlast GEMMs against the host reference GEMM,
 * mq_linear_forward, mq_eval_files on files and directories (SQNR against the
 * weight SQNR, exact pairs, bad pairs, inputs files), the JSON and the CLI. */
#include "testutil.h"

#include "cl_api.h"
#include "cl_gemm.h"
#include "eval.h"
#include "monoquant.h"
#include "reference.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *dir;
    mq_backend *dev; /* an OpenCL device, or NULL: device tests skip */
} suite;

static int group_setup(void **state)
{
    suite *s = calloc(1, sizeof *s);
    bool none = false;
    s->dir = tu_mkdtemp();
    if (mq_opencl_backend_open(tu_cl_device(), 0, &none, &s->dev) != MQ_OK) {
        fprintf(stderr, "no OpenCL device (%s): device tests will skip\n", mq_last_error());
        s->dev = NULL;
    }
    *state = s;
    return s->dir ? 0 : -1;
}

static int group_teardown(void **state)
{
    suite *s = *state;
    mq_backend_free(s->dev);
    tu_rmtree(s->dir);
    free(s->dir);
    free(s);
    return 0;
}

#define NEED_DEVICE(s)                                                                             \
    do {                                                                                           \
        if (!(s)->dev) {                                                                           \
            fprintf(stderr, "no OpenCL device: skipped\n");                                        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static char *path_in(suite *s, const char *name)
{
    return tu_join(s->dir, name);
}

static void fill_normal(tu_rng *r, float *v, size_t n, float sd)
{
    for (size_t i = 0; i < n; i++)
        v[i] = sd * tu_rng_normal(r);
}

/*
 * Tolerance between two float GEMMs that sum in different orders (CLBlast's
 * tiling, possibly FMA, against the sequential host sum): for any order each
 * computed dot product of length k is within gamma_k * sum|x_i w_i| of the
 * exact one, gamma_k = k u / (1 - k u), u = 2^-24 (Higham, Accuracy and
 * Stability of Numerical Algorithms, 2nd ed., section 3.1; a fused
 * multiply-add only drops one rounding). So the two differ by at most
 * 2 gamma_k sum|x_i w_i|; a tiny absolute term covers underflow.
 */
static void assert_gemm_close(const float *x, const float *w, const float *y_ref, const float *y,
                              size_t tokens, size_t in, size_t out)
{
    double u = ldexp(1.0, -24), gamma = (double)in * u / (1.0 - (double)in * u);
    for (size_t t = 0; t < tokens; t++) {
        for (size_t o = 0; o < out; o++) {
            double mag = 0.0;
            for (size_t i = 0; i < in; i++)
                mag += fabs((double)x[t * in + i] * (double)w[o * in + i]);
            double d = fabs((double)y[t * out + o] - (double)y_ref[t * out + o]);
            if (d > 2.0 * gamma * mag + 1e-30)
                fail_msg("y[%zu][%zu] = %.9g, reference %.9g (|d| %.3g > bound %.3g)", t, o,
                         (double)y[t * out + o], (double)y_ref[t * out + o], d, 2.0 * gamma * mag);
        }
    }
}

/* The blocked host GEMM adds in the same order as a plain loop: bit-identical. */
static void test_ref_gemm_order(void **state)
{
    (void)state;
    const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 4, 4}, {9, 13, 31}, {17, 6, 64}};
    tu_rng r;
    tu_rng_seed(&r, 1);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t n = shapes[k][0], out = shapes[k][1], in = shapes[k][2];
        float *x = malloc(n * in * sizeof *x), *w = malloc(out * in * sizeof *w);
        float *y = malloc(n * out * sizeof *y);
        fill_normal(&r, x, n * in, 1.0f);
        fill_normal(&r, w, out * in, 1.0f);
        mq_ref_gemm_nt(x, n, in, w, out, y);
        for (size_t t = 0; t < n; t++)
            for (size_t o = 0; o < out; o++) {
                float acc = 0.0f;
                for (size_t i = 0; i < in; i++)
                    acc += x[t * in + i] * w[o * in + i];
                assert_memory_equal(&acc, &y[t * out + o], sizeof acc);
            }
        free(x);
        free(w);
        free(y);
    }
}

/* CLBlast SGEMM through the forward engine against the host GEMM. */
static void test_device_gemm(void **state)
{
    suite *s = *state;
    NEED_DEVICE(s);
    const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 130, 257}, {2, 300, 1}};
    tu_rng r;
    tu_rng_seed(&r, 2);
    mq_fwd *f;
    assert_int_equal(mq_fwd_new(s->dev, NULL, NULL, &f), MQ_OK);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t n = shapes[k][0], out = shapes[k][1], in = shapes[k][2];
        float *x = malloc(n * in * sizeof *x), *w = malloc(out * in * sizeof *w);
        float *y = malloc(n * out * sizeof *y), *yr = malloc(n * out * sizeof *yr);
        fill_normal(&r, x, n * in, 1.0f);
        fill_normal(&r, w, out * in, 0.1f);
        assert_int_equal(mq_fwd_set_input(f, x, n, in), MQ_OK);
        assert_int_equal(mq_fwd_linear(f, w, out, y), MQ_OK);
        mq_ref_gemm_nt(x, n, in, w, out, yr);
        assert_gemm_close(x, w, yr, y, n, in, out);
        free(x);
        free(w);
        free(y);
        free(yr);
    }
    mq_fwd_free(f);
}

/* Random int8 weights with per-row scales of dtype dt (and zero points). */
typedef struct {
    size_t out, in, tokens;
    int8_t *q, *zp;
    void *scale;
    float *scale_f32, *x, *w; /* w: the dequantized weight in fp32 */
} q8_case;

static q8_case make_case(tu_rng *r, size_t out, size_t in, size_t tokens, mq_dtype dt, bool asym)
{
    q8_case c = {out,
                 in,
                 tokens,
                 malloc(out * in),
                 asym ? malloc(out) : NULL,
                 malloc(out * 4),
                 malloc(out * sizeof(float)),
                 malloc(tokens * in * sizeof(float)),
                 malloc(out * in * sizeof(float))};
    for (size_t i = 0; i < out * in; i++)
        c.q[i] = (int8_t)(int)(tu_rng_u64(r) % 256 - 128);
    for (size_t o = 0; o < out; o++) {
        float sc = 1e-3f * (1.0f + (float)o);
        if (dt == MQ_DTYPE_F32) ((float *)c.scale)[o] = sc;
        if (dt == MQ_DTYPE_F16) ((uint16_t *)c.scale)[o] = mq_f32_to_f16(sc);
        if (dt == MQ_DTYPE_BF16) ((uint16_t *)c.scale)[o] = mq_f32_to_bf16(sc);
        c.scale_f32[o] = mq_load_f32(c.scale, dt, o);
        if (asym) c.zp[o] = (int8_t)(int)(tu_rng_u64(r) % 21 - 10);
    }
    fill_normal(r, c.x, tokens * in, 1.0f);
    mq_ref_dequantize_rows(c.q, out, in, c.scale_f32, c.zp, MQ_DTYPE_F32, c.w);
    return c;
}

static void free_case(q8_case *c)
{
    free(c->q);
    free(c->zp);
    free(c->scale);
    free(c->scale_f32);
    free(c->x);
    free(c->w);
}

/* mq_linear_forward against dequantize + the reference GEMM: exact on the host,
 * within the GEMM bound on the device (also with buffers small enough to need
 * several row chunks). */
static void linear_forward_cases(suite *s, const char *device, size_t max_alloc)
{
    const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    tu_rng r;
    tu_rng_seed(&r, 3);
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, device), MQ_OK);
    cfg.max_alloc_override = max_alloc;
    for (int d = 0; d < 3; d++) {
        for (int asym = 0; asym < 2; asym++) {
            q8_case c = make_case(&r, 37, 64, 8, dts[d], asym);
            float *y = malloc(c.tokens * c.out * sizeof *y);
            float *yr = malloc(c.tokens * c.out * sizeof *yr);
            assert_int_equal(
                mq_linear_forward(&cfg, c.q, c.scale, c.zp, dts[d], c.out, c.in, c.x, c.tokens, y),
                MQ_OK);
            mq_ref_gemm_nt(c.x, c.tokens, c.in, c.w, c.out, yr);
            if (!strcmp(device, "host"))
                assert_memory_equal(y, yr, c.tokens * c.out * sizeof *y);
            else
                assert_gemm_close(c.x, c.w, yr, y, c.tokens, c.in, c.out);
            free(y);
            free(yr);
            free_case(&c);
        }
    }
    mq_config_free(&cfg);
    (void)s;
}

static void test_linear_forward_host(void **state)
{
    linear_forward_cases(*state, "host", 0);
}

static void test_linear_forward_device(void **state)
{
    suite *s = *state;
    NEED_DEVICE(s);
    linear_forward_cases(s, tu_cl_device(), 0);
    linear_forward_cases(s, tu_cl_device(), 4096); /* 4 rows of 64 floats per chunk */
}

static void test_linear_forward_errors(void **state)
{
    (void)state;
    int8_t q[4] = {1, 2, 3, 4};
    float sc[2] = {1, 1}, x[2] = {1, 1}, y[2];
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_linear_forward(&cfg, q, sc, NULL, MQ_DTYPE_I8, 2, 2, x, 1, y),
                     MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_linear_forward(&cfg, NULL, sc, NULL, MQ_DTYPE_F32, 2, 2, x, 1, y),
                     MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_linear_forward(&cfg, q, sc, NULL, MQ_DTYPE_F32, SIZE_MAX / 2, 4, x, 1, y),
                     MQ_STATUS_E_INVALID_ARG);
    mq_config_free(&cfg);
}

/* ---- files ---- */

static void save(mq_model *m, const char *path)
{
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
}

enum { SYM = 0, ASYM = 1, SYM_PER_TENSOR = 2 };

/* Quantizes the file at `in` into `out` with the in-memory API. */
static void quantize_to(const char *in, const char *out, int scheme)
{
    mq_model *m, *q;
    mq_config cfg;
    mq_config_init(&cfg);
    cfg.symmetric = scheme != ASYM;
    cfg.per_channel = scheme != SYM_PER_TENSOR;
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_model_open(in, &m), MQ_OK);
    assert_int_equal(mq_dynamic_quantize(m, &cfg, &q, NULL), MQ_OK);
    save(q, out);
    mq_model_free(m);
    mq_config_free(&cfg);
}

/* 10 log10(|W|^2 / |W - Ŵ|^2) on the host, from the two files (Ŵ by
 * mq_dequantize, so every output layout is read the same way). */
static double weight_sqnr(const char *orig, const char *quant, const char *name)
{
    mq_model *o, *q, *d;
    assert_int_equal(mq_model_open(orig, &o), MQ_OK);
    assert_int_equal(mq_model_open(quant, &q), MQ_OK);
    assert_int_equal(mq_dequantize(q, &d), MQ_OK);
    const mq_tensor *w = mq_model_find(o, name), *wh = mq_model_find(d, name);
    assert_non_null(wh);
    uint64_t n = w->nbytes / mq_dtype_size(w->dtype);
    double sw = 0, se = 0;
    for (uint64_t i = 0; i < n; i++) {
        double wv = mq_load_f32(w->data, w->dtype, i);
        double hv = mq_load_f32(wh->data, wh->dtype, i);
        sw += wv * wv;
        se += (wv - hv) * (wv - hv);
    }
    mq_model_free(d);
    mq_model_free(o);
    mq_model_free(q);
    return 10.0 * log10(sw / se);
}

/* Gaussian weights: a Linear [96, 256] (F32) and a Conv [24, 8, 3, 3] (BF16). */
static void gaussian_model(const char *path, uint64_t seed)
{
    mq_model *m;
    tu_rng r;
    tu_rng_seed(&r, seed);
    float *w = malloc(96 * 256 * sizeof *w);
    uint16_t *cw = malloc(24 * 72 * sizeof *cw);
    fill_normal(&r, w, 96 * 256, 0.02f);
    for (size_t i = 0; i < 24 * 72; i++)
        cw[i] = mq_f32_to_bf16(0.1f * tu_rng_normal(&r));
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(m, "mlp.up.weight", MQ_DTYPE_F32, 2, (int64_t[]){96, 256}, w), MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(m, "conv.weight", MQ_DTYPE_BF16, 4, (int64_t[]){24, 8, 3, 3}, cw),
        MQ_OK);
    save(m, path);
    free(w);
    free(cw);
}

static const mq_eval_layer *find_layer(const mq_eval_result *r, const char *name)
{
    for (size_t i = 0; i < mq_eval_result_count(r); i++)
        if (!strcmp(mq_eval_result_layer(r, i)->name, name)) return mq_eval_result_layer(r, i);
    fail_msg("layer %s not in the result", name);
    return NULL;
}

/* For X with iid N(0,1) entries E|X(W-Ŵ)^T|^2 / E|XW^T|^2 = |W-Ŵ|^2 / |W|^2,
 * so with 2048 tokens the output SQNR is the weight SQNR within ~0.5 dB. */
static void sqnr_matches_weights(suite *s, const char *device)
{
    char *orig = path_in(s, "gauss.safetensors"), *quant = path_in(s, "gauss-q.safetensors");
    const char *names[2] = {"mlp.up.weight", "conv.weight"};
    gaussian_model(orig, 11);
    for (int scheme = SYM; scheme <= SYM_PER_TENSOR; scheme++) {
        quantize_to(orig, quant, scheme);
        mq_eval_options opt;
        mq_eval_options_init(&opt);
        opt.tokens = 2048;
        opt.device = device;
        mq_eval_result *res;
        assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
        assert_int_equal(mq_eval_result_count(res), 2);
        assert_string_equal(mq_eval_result_backend(res),
                            strcmp(device, "host") ? "opencl" : "host");
        for (int k = 0; k < 2; k++) {
            const mq_eval_layer *l = find_layer(res, names[k]);
            double ws = weight_sqnr(orig, quant, names[k]);
            assert_int_equal(l->tokens, 2048);
            assert_true(l->sqnr_db > 35.0);
            print_message("%s scheme %d: output %.3f dB, weights %.3f dB\n", names[k], scheme,
                          l->sqnr_db, ws);
            if (fabs(l->sqnr_db - ws) > 0.5)
                fail_msg("%s (scheme %d): output SQNR %.3f dB, weight SQNR %.3f dB", names[k],
                         scheme, l->sqnr_db, ws);
            assert_true(fabs(l->rel_error - pow(10.0, -l->sqnr_db / 20.0)) < 1e-9);
            assert_true(l->max_abs_error > 0.0);
        }
        /* Worst first. */
        assert_true(mq_eval_result_layer(res, 0)->sqnr_db <= mq_eval_result_layer(res, 1)->sqnr_db);
        assert_ptr_equal(mq_eval_result_worst(res), mq_eval_result_layer(res, 0));
        mq_eval_result_free(res);
    }
    free(orig);
    free(quant);
}

static void test_sqnr_host(void **state)
{
    sqnr_matches_weights(*state, "host");
}

static void test_sqnr_device(void **state)
{
    suite *s = *state;
    NEED_DEVICE(s);
    sqnr_matches_weights(s, tu_cl_device());
}

/* Host and device agree on the metrics (they differ only in float summation order),
 * and small weight chunks give the same numbers as one chunk. */
static void test_host_device_agree(void **state)
{
    suite *s = *state;
    NEED_DEVICE(s);
    char *orig = path_in(s, "agree.safetensors"), *quant = path_in(s, "agree-q.safetensors");
    gaussian_model(orig, 12);
    quantize_to(orig, quant, SYM);
    mq_eval_options opt;
    mq_eval_options_init(&opt);
    mq_eval_result *rh, *rd, *rc;
    opt.device = "host";
    assert_int_equal(mq_eval_files(orig, quant, &opt, &rh), MQ_OK);
    opt.max_alloc_override = 4096; /* 4 weight rows per chunk */
    assert_int_equal(mq_eval_files(orig, quant, &opt, &rc), MQ_OK);
    opt.device = tu_cl_device();
    opt.max_alloc_override = 65536; /* X fits; 64 weight rows per chunk */
    assert_int_equal(mq_eval_files(orig, quant, &opt, &rd), MQ_OK);
    for (size_t i = 0; i < 2; i++) {
        const mq_eval_layer *h = mq_eval_result_layer(rh, i);
        const mq_eval_layer *d = find_layer(rd, h->name), *c = find_layer(rc, h->name);
        assert_int_equal(h->tokens, 64);
        assert_true(fabs(h->sqnr_db - d->sqnr_db) < 0.01);
        assert_true(fabs(h->sqnr_db - c->sqnr_db) < 1e-9);
        assert_true(h->max_abs_error == c->max_abs_error);
    }
    mq_eval_result_free(rh);
    mq_eval_result_free(rd);
    mq_eval_result_free(rc);
    free(orig);
    free(quant);
}

/* Integer weights with scale 1: the "quantized" weight is the original exactly. */
static void exact_pair(const char *orig, const char *quant)
{
    mq_model *o, *q;
    int8_t qv[6 * 10];
    float wv[6 * 10], one[6] = {1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 60; i++) {
        qv[i] = (int8_t)((i * 37) % 255 - 127);
        wv[i] = (float)qv[i];
    }
    assert_int_equal(mq_model_new(&o), MQ_OK);
    assert_int_equal(mq_model_add_tensor(o, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){6, 10}, wv),
                     MQ_OK);
    save(o, orig);
    assert_int_equal(mq_model_new(&q), MQ_OK);
    assert_int_equal(mq_model_add_tensor(q, "fc.weight", MQ_DTYPE_I8, 2, (int64_t[]){6, 10}, qv),
                     MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(q, "fc.weight_scale", MQ_DTYPE_F32, 2, (int64_t[]){6, 1}, one), MQ_OK);
    save(q, quant);
}

static void test_exact_pair(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "exact.safetensors"), *quant = path_in(s, "exact-q.safetensors");
    char *json = path_in(s, "exact.json");
    exact_pair(orig, quant);
    for (int dev = 0; dev < 2; dev++) {
        if (dev && !s->dev) continue;
        mq_eval_options opt;
        mq_eval_options_init(&opt);
        opt.device = dev ? tu_cl_device() : "host";
        mq_eval_result *res;
        assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
        const mq_eval_layer *l = mq_eval_result_layer(res, 0);
        assert_true(isinf(l->sqnr_db) && l->sqnr_db > 0);
        assert_true(l->rel_error == 0.0 && l->max_abs_error == 0.0);
        assert_true(isinf(mq_eval_result_mean_sqnr_db(res)));
        /* JSON has no infinity: null. */
        assert_int_equal(mq_eval_write_json(res, json), MQ_OK);
        json_error_t err;
        json_t *root = json_load_file(json, 0, &err);
        assert_non_null(root);
        json_t *jl = json_array_get(json_object_get(root, "layers"), 0);
        assert_true(json_is_null(json_object_get(jl, "sqnr_db")));
        assert_true(
            json_is_null(json_object_get(json_object_get(root, "summary"), "mean_sqnr_db")));
        json_decref(root);
        mq_eval_result_free(res);
    }
    free(orig);
    free(quant);
    free(json);
}

static void expect_error(const char *orig, const char *quant, mq_status want,
                         const char *const *words)
{
    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    mq_eval_result *res = NULL;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), want);
    assert_null(res);
    for (; *words; words++)
        if (!strstr(mq_last_error(), *words))
            fail_msg("error '%s' lacks '%s'", mq_last_error(), *words);
}

static void test_bad_pairs(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "bad.safetensors"), *quant = path_in(s, "bad-q.safetensors");
    char *other = path_in(s, "bad-other.safetensors"), *extra = path_in(s, "bad-extra.safetensors");
    float w[32];
    for (int i = 0; i < 32; i++)
        w[i] = (float)i / 32.0f - 0.5f;
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w),
                     MQ_OK);
    save(m, orig);
    quantize_to(orig, quant, SYM);

    /* Same name, other shape. */
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){8, 4}, w),
                     MQ_OK);
    save(m, other);
    expect_error(other, quant, MQ_STATUS_E_FORMAT,
                 (const char *const[]){"fc.weight", "[8, 4]", "[4, 8]", other, quant, NULL});

    /* A layer the original lacks. */
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "other.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w),
                     MQ_OK);
    save(m, extra);
    quantize_to(extra, other, SYM);
    expect_error(orig, other, MQ_STATUS_E_FORMAT,
                 (const char *const[]){"other.weight", "missing", orig, other, NULL});

    /* The original is not float (here: the quantized file twice). */
    expect_error(quant, quant, MQ_STATUS_E_FORMAT,
                 (const char *const[]){"fc.weight", "I8", "not a float", NULL});
    /* Swapped arguments: no quantized layers in the second. */
    expect_error(quant, orig, MQ_STATUS_E_FORMAT,
                 (const char *const[]){"no quantized", "swapped", NULL});
    /* Missing files. */
    char *none = path_in(s, "none.safetensors");
    expect_error(orig, none, MQ_STATUS_E_IO, (const char *const[]){none, NULL});
    expect_error(none, quant, MQ_STATUS_E_IO, (const char *const[]){none, NULL});
    free(none);
    free(orig);
    free(quant);
    free(other);
    free(extra);
}

/* A quantized fc.weight [4, 8] whose scale (and zero point) is given. */
typedef struct {
    const char *label;
    mq_dtype sdt;
    int srank;
    int64_t sshape[2];
    float scale[8];
    mq_dtype zdt; /* MQ_DTYPE_COUNT_: no zero point */
    int zrank;
    int64_t zshape[2];
    const char *needle;
} params_case;

static void write_params(const char *path, const params_case *c)
{
    int8_t q[32], zp[8] = {0};
    int32_t zwide[8] = {0};
    uint16_t sh[8];
    for (int i = 0; i < 32; i++)
        q[i] = (int8_t)(i * 7 % 255 - 127);
    for (int i = 0; i < 8; i++)
        sh[i] = mq_f32_to_f16(c->scale[i]);
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_I8, 2, (int64_t[]){4, 8}, q),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight_scale", c->sdt, c->srank, c->sshape,
                                         c->sdt == MQ_DTYPE_F16 ? (const void *)sh : c->scale),
                     MQ_OK);
    if (c->zdt != MQ_DTYPE_COUNT_)
        assert_int_equal(mq_model_add_tensor(m, "fc.weight_zero_point", c->zdt, c->zrank, c->zshape,
                                             c->zdt == MQ_DTYPE_I8 ? (const void *)zp : zwide),
                         MQ_OK);
    save(m, path);
}

#define NOZP                                                                                       \
    MQ_DTYPE_COUNT_, 0,                                                                            \
    {                                                                                              \
        0, 0                                                                                       \
    }
static const params_case params_cases[] = {
    {"NaN scale", MQ_DTYPE_F32, 2, {4, 1}, {0.01f, NAN, 0.01f, 0.01f}, NOZP, "value 1 is nan"},
    {"infinite scale",
     MQ_DTYPE_F32,
     2,
     {4, 1},
     {0.01f, 0.01f, INFINITY, 0.01f},
     NOZP,
     "value 2 is inf"},
    {"zero scale", MQ_DTYPE_F16, 2, {4, 1}, {0.01f, 0.01f, 0.01f, 0.0f}, NOZP, "value 3 is 0"},
    {"negative scale", MQ_DTYPE_F32, 1, {1, 0}, {-0.5f}, NOZP, "value 0 is -0.5"},
    {"too few scales", MQ_DTYPE_F32, 2, {3, 1}, {0.1f, 0.1f, 0.1f}, NOZP, "[3, 1] fits neither"},
    {"scales of the wrong shape",
     MQ_DTYPE_F32,
     2,
     {2, 2},
     {0.1f, 0.1f, 0.1f, 0.1f},
     NOZP,
     "[2, 2] fits neither"},
    {"integer scale", MQ_DTYPE_I32, 2, {4, 1}, {0}, NOZP, "I32 is not F32"},
    {"zero point of another shape",
     MQ_DTYPE_F32,
     2,
     {4, 1},
     {0.1f, 0.1f, 0.1f, 0.1f},
     MQ_DTYPE_I8,
     1,
     {1, 0},
     "weight_zero_point"},
    {"zero point not I8",
     MQ_DTYPE_F32,
     2,
     {4, 1},
     {0.1f, 0.1f, 0.1f, 0.1f},
     MQ_DTYPE_I32,
     2,
     {4, 1},
     "I32 of shape [4, 1]"},
};

/* Scales and zero points that no quantizer writes: eval and dequantize fail
 * naming the file, tensor and cause (exit 2), never a verdict. */
static void test_bad_params(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "params.safetensors"), *quant = path_in(s, "params-q.safetensors");
    char *deq = path_in(s, "params-d.safetensors");
    float w[32];
    for (int i = 0; i < 32; i++)
        w[i] = (float)i / 32.0f - 0.5f;
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w),
                     MQ_OK);
    save(m, orig);
    for (size_t i = 0; i < sizeof params_cases / sizeof *params_cases; i++) {
        const params_case *c = &params_cases[i];
        write_params(quant, c);
        mq_eval_options opt;
        mq_eval_options_init(&opt);
        opt.device = "host";
        mq_eval_result *res = NULL;
        mq_status st = mq_eval_files(orig, quant, &opt, &res);
        const char *msg = mq_last_error();
        if (st != MQ_STATUS_E_FORMAT || !strstr(msg, quant) || !strstr(msg, "fc.weight") ||
            !strstr(msg, c->needle))
            fail_msg("%s: eval: status %s: %s", c->label, mq_status_str(st), msg);
        assert_null(res);
        mq_model *qm, *d = NULL;
        assert_int_equal(mq_model_open(quant, &qm), MQ_OK);
        st = mq_dequantize(qm, &d);
        msg = mq_last_error();
        if (st != MQ_STATUS_E_FORMAT || !strstr(msg, quant) || !strstr(msg, c->needle))
            fail_msg("%s: dequantize: status %s: %s", c->label, mq_status_str(st), msg);
        assert_null(d);
        mq_model_free(qm);
    }
    /* The command line: exit 2 and the cause, no output file. */
    write_params(quant, &params_cases[0]);
    char *out = NULL;
    int rc = tu_run_cli(&out, "eval %s %s --device host", orig, quant);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "fc.weight_scale"));
    assert_null(strstr(out, "mean SQNR"));
    free(out);
    rc = tu_run_cli(&out, "dequantize %s -o %s", quant, deq);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "value 1 is nan"));
    assert_false(tu_exists(deq));
    free(out);
    free(orig);
    free(quant);
    free(deq);
}

/* NaN or Inf in the original weight or the inputs gives no SQNR: an error
 * naming the layer, not a NaN that reads as a result. A NaN layer in a
 * result is its worst and makes the mean NaN. */
static void test_nonfinite_outputs(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "nf.safetensors"), *quant = path_in(s, "nf-q.safetensors");
    char *bad = path_in(s, "nf-bad.safetensors"), *inputs = path_in(s, "nf-in.safetensors");
    float w[32], x[2 * 8];
    for (int i = 0; i < 32; i++)
        w[i] = (float)i / 32.0f - 0.5f;
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w),
                     MQ_OK);
    save(m, orig);
    quantize_to(orig, quant, SYM);
    w[5] = NAN;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w),
                     MQ_OK);
    save(m, bad);
    expect_error(bad, quant, MQ_STATUS_E_DATA,
                 (const char *const[]){"fc.weight", bad, "not finite", NULL});
    x[3] = INFINITY;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "x", MQ_DTYPE_F32, 2, (int64_t[]){2, 8}, x), MQ_OK);
    save(m, inputs);
    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    opt.inputs = inputs;
    mq_eval_result *res = NULL;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_STATUS_E_DATA);
    assert_null(res);
    assert_non_null(strstr(mq_last_error(), "not finite"));

    mq_eval_options_init(&opt);
    assert_int_equal(mq_eval_result_new(orig, quant, &opt, &res), MQ_OK);
    mq_eval_layer a = {.name = "a.weight", .sqnr_db = 40.0}, b = {.name = "b.weight"};
    b.sqnr_db = NAN;
    mq_eval_layer c = {.name = "c.weight", .sqnr_db = INFINITY};
    assert_int_equal(mq_eval_result_add(res, &a), MQ_OK);
    assert_int_equal(mq_eval_result_add(res, &b), MQ_OK);
    assert_int_equal(mq_eval_result_add(res, &c), MQ_OK);
    mq_eval_result_sort(res);
    assert_string_equal(mq_eval_result_worst(res)->name, "b.weight");
    assert_true(isnan(mq_eval_result_mean_sqnr_db(res)));
    mq_eval_result_free(res);
    free(orig);
    free(quant);
    free(bad);
    free(inputs);
}

/* Writes <dir>/model.safetensors.index.json mapping each name to its shard. */
static void write_index(const char *dir, const char *const *names, const char *const *shards,
                        size_t n)
{
    json_t *map = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(map, names[i], json_string(shards[i]));
    json_t *root = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
    char *p = tu_join(dir, "model.safetensors.index.json");
    assert_int_equal(json_dump_file(root, p, 0), 0);
    json_decref(root);
    free(p);
}

/* Sharded directories (grouped differently on the two sides) give the same
 * numbers as the single files: inputs depend on the layer name, not its place. */
static void test_directories(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "dir.safetensors"), *quant = path_in(s, "dir-q.safetensors");
    char *od = path_in(s, "orig-dir"), *qd = path_in(s, "quant-dir");
    gaussian_model(orig, 13);
    quantize_to(orig, quant, ASYM);
    assert_int_equal(mkdir(od, 0755), 0);
    assert_int_equal(mkdir(qd, 0755), 0);

    /* Original: one tensor per shard. */
    mq_model *src, *a, *b;
    assert_int_equal(mq_model_open(orig, &src), MQ_OK);
    assert_int_equal(mq_model_new(&a), MQ_OK);
    assert_int_equal(mq_model_new(&b), MQ_OK);
    const mq_tensor *t0 = mq_model_find(src, "mlp.up.weight"),
                    *t1 = mq_model_find(src, "conv.weight");
    assert_int_equal(mq_model_add_tensor(a, t0->name, t0->dtype, t0->rank, t0->shape, t0->data),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(b, t1->name, t1->dtype, t1->rank, t1->shape, t1->data),
                     MQ_OK);
    char *p = tu_join(od, "model-00001-of-00002.safetensors");
    save(a, p);
    free(p);
    p = tu_join(od, "model-00002-of-00002.safetensors");
    save(b, p);
    free(p);
    mq_model_free(src);
    write_index(od, (const char *const[]){"mlp.up.weight", "conv.weight"},
                (const char *const[]){"model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"},
                2);
    /* Quantized: one file, model.safetensors. */
    p = tu_join(qd, "model.safetensors");
    mq_model *qm;
    assert_int_equal(mq_model_open(quant, &qm), MQ_OK);
    assert_int_equal(mq_model_save(qm, p), MQ_OK);
    mq_model_free(qm);
    free(p);

    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    mq_eval_result *rf, *rd, *rx;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &rf), MQ_OK);
    assert_int_equal(mq_eval_files(od, qd, &opt, &rd), MQ_OK);
    assert_int_equal(mq_eval_files(od, quant, &opt, &rx), MQ_OK);
    assert_int_equal(mq_eval_result_count(rd), 2);
    for (size_t i = 0; i < 2; i++) {
        const mq_eval_layer *f = mq_eval_result_layer(rf, i), *d = mq_eval_result_layer(rd, i);
        const mq_eval_layer *x = mq_eval_result_layer(rx, i);
        assert_string_equal(f->name, d->name);
        assert_true(f->sqnr_db == d->sqnr_db && f->sqnr_db == x->sqnr_db);
    }
    mq_eval_result_free(rf);
    mq_eval_result_free(rd);
    mq_eval_result_free(rx);

    /* A directory with neither file. */
    char *empty = path_in(s, "empty-dir");
    assert_int_equal(mkdir(empty, 0755), 0);
    expect_error(orig, empty, MQ_STATUS_E_IO, (const char *const[]){"model.safetensors", NULL});
    free(empty);
    free(orig);
    free(quant);
    free(od);
    free(qd);
}

/* Rows of an inputs file: the first tensor whose last dimension fits each layer. */
static void test_inputs_file(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "in.safetensors"), *quant = path_in(s, "in-q.safetensors");
    char *inputs = path_in(s, "inputs.safetensors"), *narrow = path_in(s, "narrow.safetensors");
    gaussian_model(orig, 14);
    quantize_to(orig, quant, SYM);
    tu_rng r;
    tu_rng_seed(&r, 5);
    float a[3 * 7 * 256], b[5 * 72], c[2 * 72];
    fill_normal(&r, a, 3 * 7 * 256, 1.0f);
    fill_normal(&r, b, 5 * 72, 1.0f);
    fill_normal(&r, c, 2 * 72, 1.0f);
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "h256", MQ_DTYPE_F32, 3, (int64_t[]){3, 7, 256}, a),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "h72", MQ_DTYPE_F32, 2, (int64_t[]){5, 72}, b), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "h72b", MQ_DTYPE_F32, 2, (int64_t[]){2, 72}, c), MQ_OK);
    save(m, inputs);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "h72", MQ_DTYPE_F32, 2, (int64_t[]){5, 72}, b), MQ_OK);
    save(m, narrow);

    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    opt.inputs = inputs;
    mq_eval_result *res;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
    assert_int_equal(find_layer(res, "mlp.up.weight")->tokens, 21);
    assert_int_equal(find_layer(res, "conv.weight")->tokens, 5);
    assert_true(isfinite(find_layer(res, "conv.weight")->sqnr_db));
    mq_eval_result_free(res);
    opt.tokens = 4; /* caps the rows */
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
    assert_int_equal(find_layer(res, "mlp.up.weight")->tokens, 4);
    assert_int_equal(find_layer(res, "conv.weight")->tokens, 4);
    mq_eval_result_free(res);

    opt.inputs = narrow;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_STATUS_E_FORMAT);
    assert_non_null(strstr(mq_last_error(), "mlp.up.weight"));
    assert_non_null(strstr(mq_last_error(), "256"));
    free(orig);
    free(quant);
    free(inputs);
    free(narrow);
}

/* Inputs with no rows, or all zero, give Y = 0: an SQNR of 0/0, which is no
 * verdict. No rows is an error naming the inputs; all-zero rows make the
 * layer's SQNR undefined (NaN with a reason), written as such in the JSON and
 * the text, and left out of the mean. */
static void test_undefined_sqnr(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "u.safetensors"), *quant = path_in(s, "u-q.safetensors");
    char *empty = path_in(s, "u-empty.safetensors"), *zeros = path_in(s, "u-zeros.safetensors");
    char *json = path_in(s, "u.json"), *text = NULL;
    float z[3 * 10] = {0};
    exact_pair(orig, quant);
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "x", MQ_DTYPE_F32, 2, (int64_t[]){0, 10}, z), MQ_OK);
    save(m, empty);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "x", MQ_DTYPE_F32, 2, (int64_t[]){3, 10}, z), MQ_OK);
    save(m, zeros);

    for (int dev = 0; dev < 2; dev++) {
        if (dev && !s->dev) continue;
        mq_eval_options opt;
        mq_eval_options_init(&opt);
        opt.device = dev ? tu_cl_device() : "host";
        opt.inputs = empty;
        mq_eval_result *res = NULL;
        assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_STATUS_E_FORMAT);
        assert_null(res);
        assert_non_null(strstr(mq_last_error(), "no rows"));
        assert_non_null(strstr(mq_last_error(), empty));
        opt.inputs = zeros;
        assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
        const mq_eval_layer *l = mq_eval_result_layer(res, 0);
        assert_true(isnan(l->sqnr_db) && isnan(l->rel_error));
        assert_non_null(l->sqnr_undefined);
        assert_non_null(strstr(l->sqnr_undefined, "all zero"));
        assert_true(isnan(mq_eval_result_mean_sqnr_db(res)));
        assert_int_equal(mq_eval_write_json(res, json), MQ_OK);
        json_t *root = json_load_file(json, 0, NULL);
        assert_non_null(root);
        json_t *jl = json_array_get(json_object_get(root, "layers"), 0);
        json_t *sum = json_object_get(root, "summary");
        assert_true(json_is_null(json_object_get(jl, "sqnr_db")));
        assert_true(json_is_null(json_object_get(jl, "rel_error")));
        assert_non_null(strstr(json_string_value(json_object_get(jl, "sqnr_undefined")), "zero"));
        assert_true(json_is_null(json_object_get(sum, "mean_sqnr_db")));
        assert_true(json_is_string(json_object_get(sum, "mean_sqnr_undefined")));
        assert_int_equal(json_integer_value(json_object_get(sum, "undefined_layers")), 1);
        json_decref(root);
        mq_eval_result_free(res);
    }
    /* An exact layer with real inputs stays +inf, with no reason. */
    mq_eval_result *res = NULL;
    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
    assert_null(mq_eval_result_layer(res, 0)->sqnr_undefined);
    assert_true(isinf(mq_eval_result_layer(res, 0)->sqnr_db));
    mq_eval_result_free(res);

    /* Mixed: the mean and the worst layer come from the defined layers. */
    assert_int_equal(mq_eval_result_new(orig, quant, &opt, &res), MQ_OK);
    mq_eval_layer a = {.name = "a.weight", .sqnr_db = 40.0, .rel_error = 0.01};
    mq_eval_layer b = {.name = "b.weight", .sqnr_db = NAN, .rel_error = NAN};
    mq_eval_layer c = {.name = "c.weight", .sqnr_db = 20.0, .rel_error = 0.1};
    b.sqnr_undefined = "no signal";
    assert_int_equal(mq_eval_result_add(res, &a), MQ_OK);
    assert_int_equal(mq_eval_result_add(res, &b), MQ_OK);
    assert_int_equal(mq_eval_result_add(res, &c), MQ_OK);
    mq_eval_result_sort(res);
    assert_string_equal(mq_eval_result_worst(res)->name, "c.weight");
    assert_string_equal(mq_eval_result_layer(res, 2)->name, "b.weight");
    assert_true(fabs(mq_eval_result_mean_sqnr_db(res) - 30.0) < 1e-12);
    assert_int_equal(mq_eval_write_json(res, json), MQ_OK);
    json_t *root = json_load_file(json, 0, NULL);
    json_t *sum = json_object_get(root, "summary");
    assert_true(fabs(json_real_value(json_object_get(sum, "mean_sqnr_db")) - 30.0) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(sum, "max_rel_error")) - 0.1) < 1e-9);
    assert_true(json_is_null(json_object_get(sum, "mean_sqnr_undefined")));
    assert_int_equal(json_integer_value(json_object_get(sum, "undefined_layers")), 1);
    json_decref(root);
    mq_eval_result_free(res);

    /* A layer whose weight is all zero beside a normal one: the normal one
     * gives the mean and the worst, the zero one is listed last, undefined. */
    char *mixed = path_in(s, "u-mixed.safetensors"), *mixed_q = path_in(s, "u-mixed-q.safetensors");
    static float wz[8 * 16], wn[8 * 16];
    for (int i = 0; i < 8 * 16; i++)
        wn[i] = (float)(i % 11) / 5.0f - 1.0f;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "a.weight", MQ_DTYPE_F32, 2, (int64_t[]){8, 16}, wz),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "b.weight", MQ_DTYPE_F32, 2, (int64_t[]){8, 16}, wn),
                     MQ_OK);
    save(m, mixed);
    quantize_to(mixed, mixed_q, SYM);
    assert_int_equal(mq_eval_files(mixed, mixed_q, &opt, &res), MQ_OK);
    assert_string_equal(mq_eval_result_worst(res)->name, "b.weight");
    assert_non_null(mq_eval_result_layer(res, 1)->sqnr_undefined);
    assert_true(mq_eval_result_mean_sqnr_db(res) == mq_eval_result_worst(res)->sqnr_db);
    mq_eval_result_free(res);
    assert_int_equal(tu_run_cli(&text, "eval %s %s --device host", mixed, mixed_q), 0);
    assert_non_null(strstr(text, "undefined"));
    assert_non_null(strstr(text, "worst b.weight"));
    assert_non_null(strstr(text, "SQNR undefined for 1 layer, left out of the mean"));
    free(text);
    free(mixed);
    free(mixed_q);

    /* The CLI: no "inf" verdict; the word "undefined", and exit 2 for no rows. */
    assert_int_equal(tu_run_cli(&text, "eval %s %s --device host --inputs %s", orig, quant, zeros),
                     0);
    assert_null(strstr(text, "inf"));
    assert_non_null(strstr(text, "undefined for every layer"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "eval %s %s --device host --inputs %s", orig, quant, empty),
                     2);
    assert_non_null(strstr(text, "no rows"));
    free(text);
    free(orig);
    free(quant);
    free(empty);
    free(zeros);
    free(json);
}

/* A FIFO as a directory's index or as the inputs file: an error naming it,
 * not a hang (the alarm fails the test if it hangs). */
static void test_fifos(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "fifo.safetensors"), *quant = path_in(s, "fifo-q.safetensors");
    char *dir = path_in(s, "fifo-dir"), *pipe = path_in(s, "inputs.fifo");
    char *index = tu_join(dir, "model.safetensors.index.json");
    gaussian_model(orig, 15);
    quantize_to(orig, quant, SYM);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkfifo(index, 0644), 0);
    assert_int_equal(mkfifo(pipe, 0644), 0);
    alarm(20);
    expect_error(orig, dir, MQ_STATUS_E_IO, (const char *const[]){index, "a FIFO", NULL});
    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    opt.inputs = pipe;
    mq_eval_result *res = NULL;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_STATUS_E_IO);
    alarm(0);
    assert_null(res);
    assert_non_null(strstr(mq_last_error(), pipe));
    assert_non_null(strstr(mq_last_error(), "a FIFO"));
    free(orig);
    free(quant);
    free(dir);
    free(pipe);
    free(index);
}

static void test_json(void **state)
{
    suite *s = *state;
    char *orig = path_in(s, "js.safetensors"), *quant = path_in(s, "js-q.safetensors");
    char *json = path_in(s, "eval.json");
    gaussian_model(orig, 15);
    quantize_to(orig, quant, SYM);
    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    opt.seed = 42;
    mq_eval_result *res;
    assert_int_equal(mq_eval_files(orig, quant, &opt, &res), MQ_OK);
    assert_int_equal(mq_eval_write_json(res, json), MQ_OK);
    json_error_t err;
    json_t *root = json_load_file(json, 0, &err);
    assert_non_null(root);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(root, "device"), "backend")), "host");
    assert_int_equal(json_integer_value(json_object_get(root, "seed")), 42);
    json_t *layers = json_object_get(root, "layers");
    assert_int_equal(json_array_size(layers), 2);
    json_t *l0 = json_array_get(layers, 0);
    assert_string_equal(json_string_value(json_object_get(l0, "name")),
                        mq_eval_result_worst(res)->name);
    assert_true(fabs(json_real_value(json_object_get(l0, "sqnr_db")) -
                     mq_eval_result_worst(res)->sqnr_db) < 1e-6);
    assert_non_null(json_object_get(l0, "rel_error"));
    assert_non_null(json_object_get(l0, "max_abs_error"));
    assert_true(json_is_array(json_object_get(l0, "shape")));
    json_t *sum = json_object_get(root, "summary");
    assert_string_equal(json_string_value(json_object_get(sum, "worst_layer")),
                        mq_eval_result_worst(res)->name);
    assert_true(fabs(json_real_value(json_object_get(sum, "mean_sqnr_db")) -
                     mq_eval_result_mean_sqnr_db(res)) < 1e-6);
    json_decref(root);
    /* A missing directory fails. */
    char *bad = path_in(s, "no-such-dir/eval.json");
    assert_int_equal(mq_eval_write_json(res, bad), MQ_STATUS_E_OUTPUT);
    free(bad);
    mq_eval_result_free(res);
    free(orig);
    free(quant);
    free(json);
}

static void test_clblast_names(void **state)
{
    (void)state;
#ifndef MQ_HAVE_OPENCL
    skip(); /* built without OpenCL: no CLBlast */
#endif
    assert_string_equal(mq_clblast_status_name(-1017), "kInvalidDimension");
    assert_string_equal(mq_clblast_status_name(-2046), "kInvalidLocalMemUsage");
    assert_string_equal(mq_clblast_status_name(-5), "kOpenCLOutOfResources");
    assert_string_equal(mq_clblast_status_name(12345), "kUnknownStatus");
}

/* The CLI, once `eval` is wired into main.c (skips before). */
static void test_cli(void **state)
{
    suite *s = *state;
    char *out = NULL;
    int rc = tu_run_cli(&out, "eval --help");
    if (rc != 0 && out && strstr(out, "unknown command")) {
        free(out);
        fprintf(stderr, "monoquant has no eval command yet: skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "usage: monoquant eval"));
    free(out);
    char *orig = path_in(s, "cli.safetensors"), *quant = path_in(s, "cli-q.safetensors");
    char *json = path_in(s, "cli.json");
    gaussian_model(orig, 16);
    quantize_to(orig, quant, SYM);
    rc = tu_run_cli(&out, "eval %s %s --device host --tokens 32 --json %s", orig, quant, json);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "mlp.up.weight"));
    assert_non_null(strstr(out, "SQNR"));
    assert_non_null(strstr(out, "device: host"));
    assert_true(tu_exists(json));
    free(out);
    assert_int_equal(tu_run_cli(NULL, "eval %s", orig), 1);
    assert_int_equal(tu_run_cli(NULL, "eval %s %s --tokens 0", orig, quant), 1);
    assert_int_equal(tu_run_cli(NULL, "eval %s %s --device host", quant, quant), 2);
    assert_int_equal(
        tu_run_cli(NULL, "eval %s %s --device host --json %s/x/y.json", orig, quant, s->dir), 3);
    assert_int_equal(tu_run_cli(NULL, "eval %s %s --device no-such-device", orig, quant), 4);
    free(orig);
    free(quant);
    free(json);
}

/* Crafted int4/FP8 layers: an error naming the layer and the cause, never a
 * crash (empty weights or scales, a rank-0 packed tensor, a width that does
 * not fit the claimed shape, a zero point beside FP8, a zero point of the
 * wrong size). */
static void test_bad_kind_layers(void **state)
{
    (void)state;
    static const unsigned char codes[64] = {0x38, 0x40, 0xb8, 0x00};
    static const float one[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    static const int64_t shape_100[2] = {2, 100}, shape_16[2] = {2, 16}, shape_0[1] = {0};
    static const int32_t words[8] = {0};
    static const struct {
        const char *label, *needle;
        int kind; /* 0: FP8 codes, 1: packed */
        int crank;
        int64_t cshape[2];
        int srank;
        int64_t sshape[2];
        const int64_t *wshape; /* packed: the _shape tensor's values */
        int wrank;
        int zp; /* 0: none; 1: F32 [1] beside FP8; 2: I32 of the wrong size */
    } cases[] = {
        {"fp8 empty scale", "must not be empty", 0, 2, {2, 4}, 2, {1, 0}, NULL, 0, 0},
        {"fp8 no rows", "must not be empty", 0, 2, {0, 4}, 1, {1, 0}, NULL, 0, 0},
        {"fp8 zero point", "no zero point", 0, 2, {2, 4}, 2, {2, 1}, NULL, 0, 1},
        {"packed rank 0", "at least one dimension", 1, 0, {0, 0}, 1, {1, 0}, shape_0, 1, 0},
        {"packed too narrow", "width", 1, 2, {2, 1}, 2, {2, 1}, shape_100, 2, 0},
        {"packed zero point size", "zero point", 1, 2, {2, 2}, 2, {2, 1}, shape_16, 2, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mq_model *m, *d = NULL;
        assert_int_equal(mq_model_new(&m), MQ_OK);
        if (cases[i].kind == 0) {
            assert_int_equal(mq_model_add_tensor(m, "l.weight", MQ_DTYPE_F8_E4M3, cases[i].crank,
                                                 cases[i].cshape, codes),
                             MQ_OK);
        } else {
            assert_int_equal(mq_model_add_tensor(m, "l.weight_packed", MQ_DTYPE_I32, cases[i].crank,
                                                 cases[i].cshape, words),
                             MQ_OK);
            int64_t n = cases[i].wrank;
            assert_int_equal(
                mq_model_add_tensor(m, "l.weight_shape", MQ_DTYPE_I64, 1, &n, cases[i].wshape),
                MQ_OK);
        }
        assert_int_equal(mq_model_add_tensor(m, "l.weight_scale", MQ_DTYPE_F32, cases[i].srank,
                                             cases[i].sshape, one),
                         MQ_OK);
        if (cases[i].zp == 1)
            assert_int_equal(
                mq_model_add_tensor(m, "l.weight_zero_point", MQ_DTYPE_F32, 1, (int64_t[]){1}, one),
                MQ_OK);
        if (cases[i].zp == 2)
            assert_int_equal(mq_model_add_tensor(m, "l.weight_zero_point", MQ_DTYPE_I32, 2,
                                                 (int64_t[]){2, 1}, words),
                             MQ_OK);
        mq_status st = mq_dequantize(m, &d);
        const char *msg = mq_last_error();
        if (st != MQ_STATUS_E_FORMAT || !strstr(msg, "'l.weight'") || !strstr(msg, cases[i].needle))
            fail_msg("%s: status %s: %s", cases[i].label, mq_status_str(st), msg);
        assert_null(d);
        mq_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_gemm_order),
        cmocka_unit_test(test_device_gemm),
        cmocka_unit_test(test_linear_forward_host),
        cmocka_unit_test(test_linear_forward_device),
        cmocka_unit_test(test_linear_forward_errors),
        cmocka_unit_test(test_sqnr_host),
        cmocka_unit_test(test_sqnr_device),
        cmocka_unit_test(test_host_device_agree),
        cmocka_unit_test(test_exact_pair),
        cmocka_unit_test(test_bad_pairs),
        cmocka_unit_test(test_directories),
        cmocka_unit_test(test_inputs_file),
        cmocka_unit_test(test_undefined_sqnr),
        cmocka_unit_test(test_fifos),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_bad_kind_layers),
        cmocka_unit_test(test_nonfinite_outputs),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_clblast_names),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
