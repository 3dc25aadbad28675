/* The mse observer's search (numerics/observer.c): the stop rule of one
 * patience counter per tensor, the step each group takes, the search written
 * again here from its definition for every kind, a one-step search being
 * min-max, and the config, CLI and report that reach it. Byte identity with
 * llm-compressor's own observer is tests/py/test_observer_llmc.py. */
#include "testutil.h"

#include "observer.h"
#include "obspow.h"
#include "reference.h"
#include "scheme.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_limit(void **state)
{
    (void)state;
    mq_obs_mse o = mq_obs_mse_defaults();
    assert_int_equal(mq_obs_mse_steps(&o), 20); /* int(0.2 * 100) = int(20.000000000000004) */
    bool imp[20] = {0};
    /* No step improved anywhere: steps 0..4 ran, the fifth idle one stops it. */
    assert_int_equal(mq_obs_mse_limit(&o, imp), 5);
    imp[0] = imp[3] = true;
    assert_int_equal(mq_obs_mse_limit(&o, imp), 9);
    for (int i = 0; i < 20; i++)
        imp[i] = i % 5 == 0; /* four idle steps between improvements never stop it */
    assert_int_equal(mq_obs_mse_limit(&o, imp), 20);
    o.patience = 1;
    assert_int_equal(mq_obs_mse_limit(&o, imp), 2);
    o.maxshrink = 0.5;
    o.grid = 10;
    assert_int_equal(mq_obs_mse_steps(&o), 5);
    o.maxshrink = 0.001;
    assert_int_equal(mq_obs_mse_steps(&o), 0);
    /* torch multiplies by the factor rounded to fp32 first. */
    o = mq_obs_mse_defaults();
    assert_true(mq_obs_mse_factor(&o, 3) == (float)(1.0 - 3.0 / 100.0));
}

static void test_best(void **state)
{
    (void)state;
    mq_obs_mse o = mq_obs_mse_defaults();
    uint8_t mask[3] = {0x0b, 0x10, 0x01}; /* steps 0, 1, 3, 12, 16 */
    assert_int_equal(mq_obs_mse_best(&o, mask, 20), 16);
    assert_int_equal(mq_obs_mse_best(&o, mask, 16), 12);
    assert_int_equal(mq_obs_mse_best(&o, mask, 12), 3);
    assert_int_equal(mq_obs_mse_best(&o, mask, 1), 0);
    uint8_t none[3] = {0};
    assert_int_equal(mq_obs_mse_best(&o, none, 20), 0);
}

/* The importance-weighted search, worked by hand: int4 symmetric, norm 2,
 * two steps (p = 1 and p = 0.5), rows {7.5, 0.3} and {0.3, 7.5}. At p = 1
 * the scale is 7.5 / 7.5 = 1: 7.5 clamps to code 7 (error 0.5^2 = 0.25) and
 * 0.3 rounds to 0 (0.09). At p = 0.5 the scale is 0.5: 7.5 clamps to 3.5
 * (16) and 0.3 rounds to 0.5 (0.04). Unweighted, both rows take p = 1
 * (0.34 < 16.04). With imp = {0.001, 1} row 0 sums 0.00025 + 0.09 against
 * 0.016 + 0.04 and takes p = 0.5, while row 1, whose 7.5 now weighs 1,
 * keeps p = 1: the same importances for every row, by column. */
static void test_search_weighted_by_hand(void **state)
{
    (void)state;
    const float w[4] = {7.5f, 0.3f, 0.3f, 7.5f}, imp[2] = {0.001f, 1.0f}, ones[2] = {1.0f, 1.0f};
    mq_obs_mse o = {.maxshrink = 1.0, .grid = 2.0, .norm = 2.0, .patience = 5};
    mq_qdesc d = mq_qd(MQ_QK_INT4, true);
    size_t mb = mq_obs_mse_mask_bytes(&o), bad = 0;
    uint8_t mask[2 * 1], q[16]; /* int4 rows are padded: room for two */
    bool improved[2];
    float sc[2];
    int8_t zp[2];
    assert_int_equal(mq_obs_mse_steps(&o), 2);
    assert_int_equal(mb, 1);

    memset(improved, 0, sizeof improved);
    assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, 2, 2, mask, improved, &bad),
                     MQ_OK);
    assert_int_equal(mq_obs_mse_best(&o, mask, 2), 0);
    assert_int_equal(mq_obs_mse_best(&o, mask + mb, 2), 0);

    memset(improved, 0, sizeof improved);
    assert_int_equal(mq_obs_mse_scan(d, &o, imp, w, MQ_DTYPE_F32, 2, 2, mask, improved, &bad),
                     MQ_OK);
    assert_int_equal(mq_obs_mse_best(&o, mask, 2), 1);
    assert_int_equal(mq_obs_mse_best(&o, mask + mb, 2), 0);
    assert_true(improved[0] && improved[1]);
    assert_int_equal(mq_obs_mse_quantize(d, &o, imp, mq_obs_mse_limit(&o, improved), mask, w,
                                         MQ_DTYPE_F32, 2, 2, q, sc, zp, &bad),
                     MQ_OK);
    assert_true(sc[0] == 0.5f);
    assert_true(sc[1] == 1.0f);

    /* Weights of one give the unweighted search's records exactly. */
    bool imp_a[20] = {0}, imp_b[20] = {0};
    float many[8 * 16];
    tu_rng r;
    tu_rng_seed(&r, 5);
    for (size_t i = 0; i < 8 * 16; i++)
        many[i] = tu_rng_normal(&r);
    float ones16[16];
    for (size_t i = 0; i < 16; i++)
        ones16[i] = ones[0];
    mq_obs_mse def = mq_obs_mse_defaults();
    uint8_t mp[8 * 3], mw[8 * 3]; /* 20 steps: 3 bytes a group */
    assert_int_equal(mq_obs_mse_mask_bytes(&def), 3);
    assert_int_equal(mq_obs_mse_scan(d, &def, NULL, many, MQ_DTYPE_F32, 8, 16, mp, imp_a, &bad),
                     MQ_OK);
    assert_int_equal(mq_obs_mse_scan(d, &def, ones16, many, MQ_DTYPE_F32, 8, 16, mw, imp_b, &bad),
                     MQ_OK);
    assert_memory_equal(mp, mw, 8 * mq_obs_mse_mask_bytes(&def));
    assert_memory_equal(imp_a, imp_b, sizeof imp_a);
}

/* The search of one group written out from the definition. */
static size_t brute_step(mq_qdesc d, const float *w, const float *imp, size_t n,
                         const mq_obs_mse *o)
{
    mq_ref_stats st;
    mq_ref_stats_init(&st);
    mq_ref_stats_update(&st, w, MQ_DTYPE_F32, n);
    float best = FLT_MAX;
    size_t best_i = 0;
    for (size_t i = 0; i < mq_obs_mse_steps(o); i++) {
        float p = (float)(1.0 - (double)i / o->grid);
        mq_ref_stats c = st;
        c.lo = st.lo * p;
        c.hi = st.hi * p;
        c.amax = st.amax * p;
        float s;
        int8_t z;
        mq_ref_params(d, &c, MQ_DTYPE_F32, &s, &z);
        float e = 0.0f;
        for (size_t j = 0; j < n; j++) {
            float wh;
            if (d.kind == MQ_QK_FP8) {
                float v = fminf(fmaxf(w[j] / s, -448.0f), 448.0f);
                wh = mq_e4m3_to_f32(mq_f32_to_e4m3(v)) * s;
            } else {
                float q = fminf(fmaxf(rintf(w[j] / s + (float)z), mq_qkind_qmin(d.kind)),
                                mq_qkind_qmax(d.kind));
                wh = (q - (float)z) * s;
            }
            float t = mq_obs_pow(fabsf(wh - w[j]), (float)o->norm);
            e += imp ? imp[j] * t : t;
        }
        if (e < best) best = e, best_i = i;
    }
    return best_i;
}

static void test_search_all_kinds(void **state)
{
    (void)state;
    const mq_qdesc kinds[] = {mq_qd(MQ_QK_INT8, true), mq_qd(MQ_QK_INT8, false),
                              mq_qd(MQ_QK_INT4, true), mq_qd(MQ_QK_INT4, false),
                              mq_qd(MQ_QK_FP8, true)};
    enum { ROWS = 40, COLS = 64 };
    float *w = malloc(sizeof(float) * ROWS * COLS);
    tu_rng r;
    tu_rng_seed(&r, 11);
    for (size_t i = 0; i < ROWS * COLS; i++)
        w[i] = tu_rng_normal(&r) * (i % 53 == 0 ? 8.0f : 1.0f) + (i / COLS % 3 == 0 ? 0.7f : 0.0f);
    mq_obs_mse o = mq_obs_mse_defaults();
    size_t mb = mq_obs_mse_mask_bytes(&o), clipped = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        mq_qdesc d = kinds[k];
        uint8_t *mask = malloc(ROWS * mb), q[ROWS * COLS], q_ref[ROWS * COLS];
        bool imp[20] = {0};
        float sc[ROWS], sc_ref[ROWS];
        int8_t zp[ROWS], zp_ref[ROWS];
        size_t bad = 0;
        assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS, mask, imp, &bad),
                         MQ_OK);
        size_t limit = mq_obs_mse_limit(&o, imp);
        assert_int_equal(mq_obs_mse_quantize(d, &o, NULL, limit, mask, w, MQ_DTYPE_F32, ROWS, COLS,
                                             q, sc, zp, &bad),
                         MQ_OK);
        for (size_t g = 0; g < ROWS; g++) {
            size_t want = brute_step(d, w + g * COLS, NULL, COLS, &o);
            /* With every step run, the record's last improvement is the brute force's. */
            if (limit == mq_obs_mse_steps(&o))
                assert_int_equal(mq_obs_mse_best(&o, mask + g * mb, limit), want);
            clipped += want > 0;
            /* Its codes are those of min-max's formulas on the shrunk range. */
            mq_ref_stats st;
            mq_ref_stats_init(&st);
            mq_ref_stats_update(&st, w + g * COLS, MQ_DTYPE_F32, COLS);
            float p = mq_obs_mse_factor(&o, mq_obs_mse_best(&o, mask + g * mb, limit));
            st.lo *= p, st.hi *= p, st.amax *= p;
            mq_ref_params(d, &st, MQ_DTYPE_F32, &sc_ref[g], &zp_ref[g]);
            size_t rb = mq_qkind_row_bytes(d.kind, COLS);
            mq_ref_put_codes(d, w + g * COLS, MQ_DTYPE_F32, COLS, sc_ref[g], zp_ref[g],
                             q_ref + g * rb, 0, COLS);
            assert_memory_equal(&sc[g], &sc_ref[g], sizeof(float));
            if (!d.symmetric && d.kind != MQ_QK_FP8) assert_int_equal(zp[g], zp_ref[g]);
        }
        assert_memory_equal(q, q_ref, ROWS * mq_qkind_row_bytes(d.kind, COLS));
        free(mask);
    }
    assert_true(clipped > 0); /* the data makes the search clip somewhere */
    free(w);
}

/* Importance weights: each group's step is the brute force's weighted one,
 * with imp[j] the weight of the call's column j in every row and every
 * layout; weights of 1 are the unweighted search, bit for bit. */
static void test_search_weighted(void **state)
{
    (void)state;
    enum { ROWS = 24, COLS = 96 };
    float *w = malloc(sizeof(float) * ROWS * COLS), imp[COLS], ones[COLS];
    tu_rng r;
    tu_rng_seed(&r, 21);
    for (size_t i = 0; i < ROWS * COLS; i++)
        w[i] = tu_rng_normal(&r) * (i % 37 == 0 ? 6.0f : 1.0f);
    for (size_t j = 0; j < COLS; j++) {
        imp[j] = j % 7 == 0 ? 50.0f : 0.01f * (float)(j % 5); /* zeros too */
        ones[j] = 1.0f;
    }
    mq_obs_mse o = mq_obs_mse_defaults();
    o.patience = 100; /* every step runs, so the record's last bit is the brute force's */
    size_t mb = mq_obs_mse_mask_bytes(&o), bad = 0, moved = 0;
    const mq_qdesc kinds[] = {mq_qd(MQ_QK_INT4, true), mq_qd(MQ_QK_INT4, false),
                              mq_qd(MQ_QK_INT8, true), mq_qd(MQ_QK_FP8, true), mq_qd_blocks(8)};
    float gw[COLS * 8], gi[COLS * 8];
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        mq_qdesc d = kinds[k];
        size_t groups = mq_qdesc_scales(d, ROWS, COLS);
        uint8_t *mask = calloc(groups, mb), *plain = calloc(groups, mb), *unit = calloc(groups, mb);
        bool im[20] = {0};
        assert_int_equal(mq_obs_mse_scan(d, &o, imp, w, MQ_DTYPE_F32, ROWS, COLS, mask, im, &bad),
                         MQ_OK);
        assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS, plain, im, &bad),
                         MQ_OK);
        assert_int_equal(mq_obs_mse_scan(d, &o, ones, w, MQ_DTYPE_F32, ROWS, COLS, unit, im, &bad),
                         MQ_OK);
        assert_memory_equal(plain, unit, groups * mb);
        for (size_t g = 0; g < groups; g++) {
            size_t r0, r1, c0, nc, n = 0;
            mq_qdesc_group(d, ROWS, COLS, g, &r0, &r1, &c0, &nc);
            for (size_t rr = r0; rr < r1; rr++)
                for (size_t j = 0; j < nc; j++, n++) {
                    gw[n] = w[rr * COLS + c0 + j];
                    gi[n] = imp[c0 + j];
                }
            size_t want = brute_step(d, gw, gi, n, &o);
            assert_int_equal(mq_obs_mse_best(&o, mask + g * mb, 20), want);
            moved += want != mq_obs_mse_best(&o, plain + g * mb, 20);
        }
        free(mask);
        free(plain);
        free(unit);
    }
    assert_true(moved > 0); /* the weights changed some group's choice */
    free(w);
}

/* The observer's own power: the correctly rounded x^n (libm's double pow
 * rounded to fp32) for all but a handful of x, never more than an ulp from
 * it, and exact at the ends (0, +inf, NaN, the smallest subnormal). */
static void test_pow(void **state)
{
    (void)state;
    const float ns[] = {2.4f, 2.0f, 1.0f, 0.5f, 3.7f};
    tu_rng r;
    tu_rng_seed(&r, 4);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int off = 0;
        for (int i = 0; i < 200000; i++) {
            uint32_t u = (uint32_t)(tu_rng_u64(&r) % 0x7f800000u);
            float x, a, b;
            memcpy(&x, &u, sizeof x);
            a = (float)pow((double)x, (double)ns[k]);
            b = mq_obs_pow(x, ns[k]);
            uint32_t ua, ub;
            memcpy(&ua, &a, sizeof ua);
            memcpy(&ub, &b, sizeof ub);
            assert_true(ua - ub + 1u <= 2u);
            off += ua != ub;
        }
        assert_true(off <= 2); /* of 200,000 */
        assert_true(mq_obs_pow(0.0f, ns[k]) == 0.0f);
        assert_true(isinf(mq_obs_pow(INFINITY, ns[k])));
        assert_true(isnan(mq_obs_pow(NAN, ns[k])));
        assert_true(mq_obs_pow(1.0f, ns[k]) == 1.0f);
    }
    assert_true(mq_obs_pow(2.0f, 2.0f) == 4.0f);
    assert_true(mq_obs_pow(0x1p-149f, 2.4f) == 0.0f);
    assert_true(mq_obs_pow(0x1p-20f, 2.0f) == 0x1p-40f);
}

/* One step (p = 1 only) is min-max: the bytes of mq_ref_quantize. */
static void test_one_step_is_minmax(void **state)
{
    (void)state;
    const mq_qdesc kinds[] = {mq_qd(MQ_QK_INT8, true), mq_qd(MQ_QK_INT4, false),
                              mq_qd(MQ_QK_FP8, true), mq_qd_blocks(8)};
    enum { ROWS = 16, COLS = 24 };
    float w[ROWS * COLS];
    tu_rng r;
    tu_rng_seed(&r, 5);
    for (size_t i = 0; i < ROWS * COLS; i++)
        w[i] = tu_rng_normal(&r);
    mq_obs_mse o = {.maxshrink = 0.01, .grid = 100, .norm = 2.4, .patience = 5};
    assert_int_equal(mq_obs_mse_steps(&o), 1);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        mq_qdesc d = kinds[k];
        size_t groups = mq_qdesc_scales(d, ROWS, COLS);
        uint8_t mask[ROWS * 8], q[ROWS * COLS], q_ref[ROWS * COLS];
        float sc[ROWS * 8], sc_ref[ROWS * 8];
        int8_t zp[ROWS * 8], zp_ref[ROWS * 8];
        bool imp[1] = {0};
        size_t bad;
        assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS, mask, imp, &bad),
                         MQ_OK);
        assert_int_equal(mq_obs_mse_quantize(d, &o, NULL, mq_obs_mse_limit(&o, imp), mask, w,
                                             MQ_DTYPE_F32, ROWS, COLS, q, sc, zp, &bad),
                         MQ_OK);
        assert_int_equal(
            mq_ref_quantize(d, w, MQ_DTYPE_F32, ROWS, COLS, q_ref, sc_ref, zp_ref, &bad), MQ_OK);
        assert_memory_equal(sc, sc_ref, groups * sizeof(float));
        assert_memory_equal(q, q_ref, ROWS * mq_qkind_row_bytes(d.kind, COLS));
        if (!d.symmetric) assert_memory_equal(zp, zp_ref, groups);
    }
}

/* A large call is split over threads: the records are those of scanning
 * each row alone, and a NaN is reported at its group whatever part saw it. */
static void test_scan_threads(void **state)
{
    (void)state;
    enum { ROWS = 600, COLS = 160 };
    float *w = malloc(sizeof(float) * ROWS * COLS);
    tu_rng r;
    tu_rng_seed(&r, 3);
    for (size_t i = 0; i < ROWS * COLS; i++)
        w[i] = tu_rng_normal(&r) * (i % 41 == 0 ? 5.0f : 1.0f);
    mq_obs_mse o = mq_obs_mse_defaults();
    size_t mb = mq_obs_mse_mask_bytes(&o), bad = 0;
    uint8_t *mask = malloc(ROWS * mb), *one = malloc(ROWS * mb);
    bool imp[20] = {0}, imp_one[20] = {0};
    mq_qdesc d = mq_qd(MQ_QK_INT4, false);
    assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS, mask, imp, &bad),
                     MQ_OK);
    for (size_t g = 0; g < ROWS; g++)
        assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w + g * COLS, MQ_DTYPE_F32, 1, COLS,
                                         one + g * mb, imp_one, &bad),
                         MQ_OK);
    assert_memory_equal(mask, one, ROWS * mb);
    assert_memory_equal(imp, imp_one, sizeof imp);
    w[417 * COLS + 3] = INFINITY;
    w[590 * COLS + 3] = NAN;
    assert_int_equal(mq_obs_mse_scan(d, &o, NULL, w, MQ_DTYPE_F32, ROWS, COLS, mask, imp, &bad),
                     MQ_STATUS_E_DATA);
    assert_int_equal(bad, 417);
    free(mask);
    free(one);
    free(w);
}

static void test_nonfinite(void **state)
{
    (void)state;
    float w[4 * 8];
    for (int i = 0; i < 32; i++)
        w[i] = (float)i;
    w[2 * 8 + 5] = NAN;
    mq_obs_mse o = mq_obs_mse_defaults();
    uint8_t mask[4 * 3];
    bool imp[20] = {0};
    size_t bad = 0;
    assert_int_equal(
        mq_obs_mse_scan(mq_qd(MQ_QK_INT8, true), &o, NULL, w, MQ_DTYPE_F32, 4, 8, mask, imp, &bad),
        MQ_STATUS_E_DATA);
    assert_int_equal(bad, 2);
}

static void test_config(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), *path = tu_join(dir, "c.json");
    const char *good =
        "{\"preset\": \"W4A16\", \"observer\": \"mse\", \"observer_grid\": 50,"
        " \"observer_maxshrink\": 0.5, \"observer_norm\": 2, \"observer_patience\": 3}";
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(cfg.observer, MQ_OBSERVER_MINMAX);
    assert_true(tu_write_file(path, good, strlen(good)));
    assert_int_equal(mq_config_load_json(&cfg, path), MQ_OK);
    mq_scheme sc;
    assert_int_equal(mq_scheme_init(&sc, &cfg), MQ_OK);
    assert_int_equal(sc.observer, MQ_OBSERVER_MSE);
    assert_true(sc.mse.grid == 50 && sc.mse.maxshrink == 0.5 && sc.mse.norm == 2);
    assert_int_equal(sc.mse.patience, 3);
    assert_string_equal(mq_observer_name(sc.observer), "mse");
    const char *bad[] = {"{\"observer\": \"gptq\"}", "{\"observer_grid\": -1}",
                         "{\"observer_maxshrink\": 1.5}", "{\"observer_patience\": 0}",
                         "{\"observer_foo\": 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_true(tu_write_file(path, bad[i], strlen(bad[i])));
        assert_int_equal(mq_config_load_json(&cfg, path), MQ_STATUS_E_CONFIG);
        assert_int_equal(cfg.observer, MQ_OBSERVER_MSE); /* left as it was */
        assert_true(cfg.observer_grid == 50);
    }
    /* Per tensor has no groups to search. */
    cfg.per_channel = false;
    cfg.dtype = MQ_QINT8;
    cfg.group_size = 0;
    assert_int_equal(mq_config_check(&cfg), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "mse"));
    mq_config_free(&cfg);
    /* A config of the size before the observer fields is min-max. */
    mq_config old;
    mq_config_init_sized(&old, offsetof(mq_config, observer));
    assert_int_equal(mq_scheme_init(&sc, &old), MQ_OK);
    assert_int_equal(sc.observer, MQ_OBSERVER_MINMAX);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* The CLI: the flag, the per-tensor lines naming the observer, the report. */
static void test_cli(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), *in = tu_join(dir, "in.safetensors");
    char *out = tu_join(dir, "out.safetensors"), *rep = tu_join(dir, "r.json");
    mq_model *m;
    float w[32 * 64];
    tu_rng r;
    tu_rng_seed(&r, 9);
    for (int i = 0; i < 32 * 64; i++)
        w[i] = tu_rng_normal(&r);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "l.weight", MQ_DTYPE_F32, 2, (int64_t[]){32, 64}, w),
                     MQ_OK);
    assert_int_equal(mq_model_save(m, in), MQ_OK);
    mq_model_free(m);
    char *log = NULL;
    assert_int_equal(tu_run_cli(&log,
                                "quantize %s -o %s --preset W4A16 --group-size 32 "
                                "--observer mse --observer-grid 50 --device host --report %s",
                                in, out, rep),
                     0);
    assert_non_null(strstr(log, "W4A16 mse SQNR"));
    free(log);
    size_t n;
    char *json = (char *)tu_read_file(rep, &n);
    assert_non_null(strstr(json, "\"observer\": \"mse\""));
    assert_non_null(strstr(json, "\"grid\": 50"));
    free(json);
    assert_int_equal(tu_run_cli(&log, "quantize %s -o %s --observer kmeans", in, out), 1);
    assert_non_null(strstr(log, "--observer must be minmax or mse"));
    free(log);
    assert_int_equal(tu_run_cli(&log, "quantize %s -o %s --observer-maxshrink 2", in, out), 1);
    free(log);
    tu_rmtree(dir);
    free(in);
    free(out);
    free(rep);
    free(dir);
}

/* torch's CPU sum of a contiguous row of n fp32 values with its 8-lane
 * vectors (SumKernel.cpp: vectorized_inner_sum over row_sum over
 * multi_row_sum; below 8 values the scalar row_sum), written out over the
 * whole array as torch runs it: the oracle for the streaming mq_obs_sum.
 * The same steps in Python matched torch.sum bit for bit under
 * ATEN_CPU_CAPABILITY=default and avx2 for every size tried (8 to 70000). */
static float torch_sum(const float *x, size_t n)
{
    if (n < 8) {
        float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        size_t rows = n / 4;
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < 4; k++)
                p[k] += x[4 * r + (size_t)k];
        for (size_t i = rows * 4; i < n; i++)
            p[0] += x[i];
        return ((p[0] + p[1]) + p[2]) + p[3];
    }
    size_t vecs = n / 8, rows = vecs / 4;
    int cl = 0;
    while (rows >= 2 && ((size_t)1 << cl) < rows)
        cl++;
    int lp = cl / 4 > 4 ? cl / 4 : 4;
    size_t step = (size_t)1 << lp, mask = step - 1, r = 0;
    static float acc[4][4][8];
    memset(acc, 0, sizeof acc);
    while (r + step <= rows) {
        for (size_t j = 0; j < step; j++, r++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 8; l++)
                    acc[0][k][l] += x[(4 * r + (size_t)k) * 8 + (size_t)l];
        for (int j = 1; j < 4; j++) {
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 8; l++) {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0f;
                }
            if ((r & (mask << (j * lp))) != 0) break;
        }
    }
    for (; r < rows; r++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 8; l++)
                acc[0][k][l] += x[(4 * r + (size_t)k) * 8 + (size_t)l];
    for (int j = 1; j < 4; j++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 8; l++)
                acc[0][k][l] += acc[j][k][l];
    for (size_t v = rows * 4; v < vecs; v++)
        for (int l = 0; l < 8; l++)
            acc[0][0][l] += x[v * 8 + (size_t)l];
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < 8; l++)
            acc[0][0][l] += acc[0][k][l];
    float f = 0.0f;
    for (size_t i = vecs * 8; i < n; i++)
        f += x[i];
    for (int l = 0; l < 8; l++)
        f += acc[0][0][l];
    return f;
}

/* The streaming sum against the oracle, bit for bit, for sizes around
 * every boundary of torch's order (the scalar path, whole and partial
 * vectors and rows, the cascade's blocks of 16 rows and their levels). */
static void test_torch_sum_order(void **state)
{
    (void)state;
    enum { N = 65600 };
    float *x = malloc(N * sizeof *x);
    tu_rng r;
    tu_rng_seed(&r, 23);
    for (size_t i = 0; i < N; i++) {
        float u = (float)(tu_rng_u64(&r) >> 40) * 0x1p-24f;
        x[i] = u * u * u * (i % 7 == 0 ? 1000.0f : 1.0f); /* terms of many magnitudes */
    }
    const size_t sizes[] = {1,     2,     3,     4,     5,     7,        8,    9,    15,
                            31,    32,    33,    63,    64,    100,      128,  511,  512,
                            513,   544,   576,   1023,  1536,  2048,     4095, 4096, 8192,
                            16384, 16385, 32768, 65536, 65577, (size_t)N};
    bool serial_differs = false;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float want = torch_sum(x, n), got = mq_obs_sum_of(x, n);
        if (memcmp(&want, &got, sizeof want) != 0)
            fail_msg("n %zu: streaming sum %a, torch's order %a", n, (double)got, (double)want);
        float serial = 0.0f;
        double exact = 0.0;
        for (size_t i = 0; i < n; i++) {
            serial += x[i];
            exact += (double)x[i];
        }
        /* Within its stated depth of rounding (the screening's bound). */
        assert_true(fabs((double)got - exact) <= 1.01 * mq_obs_sum_depth(n) * 0x1p-24 * exact);
        serial_differs |= serial != want;
    }
    /* The order matters: a serial sum gives other bits somewhere. */
    assert_true(serial_differs);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_best),
        cmocka_unit_test(test_search_all_kinds),
        cmocka_unit_test(test_search_weighted),
        cmocka_unit_test(test_search_weighted_by_hand),
        cmocka_unit_test(test_pow),
        cmocka_unit_test(test_torch_sum_order),
        cmocka_unit_test(test_one_step_is_minmax),
        cmocka_unit_test(test_scan_threads),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
