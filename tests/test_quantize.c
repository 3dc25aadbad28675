/* mq_dynamic_quantize and mq_dequantize on in-memory models: the output
 * layout, the skipped list, input immutability, errors and determinism. */
#include "testutil.h"

#include "monoquant.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* Linear(4,3) + bias, an embedding, lm_head, a conv, a norm and an int tensor. */
static mq_model *small_model(void)
{
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    tu_rng r;
    tu_rng_seed(&r, 7);
    float w[3 * 4], b[3], emb[5 * 4], head[5 * 4], conv[2 * 3 * 2 * 2], norm[4];
    for (size_t i = 0; i < 12; i++)
        w[i] = tu_rng_f32(&r);
    for (size_t i = 0; i < 3; i++)
        b[i] = tu_rng_f32(&r);
    for (size_t i = 0; i < 20; i++)
        emb[i] = tu_rng_f32(&r), head[i] = tu_rng_f32(&r);
    for (size_t i = 0; i < 24; i++)
        conv[i] = tu_rng_f32(&r);
    for (size_t i = 0; i < 4; i++)
        norm[i] = 1.0f + tu_rng_f32(&r) / 10;
    int64_t ids[5] = {0, 1, 2, 3, 4};
    assert_int_equal(
        mq_model_add_tensor(m, "embed_tokens.weight", MQ_DTYPE_F32, 2, (int64_t[]){5, 4}, emb),
        MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){3, 4}, w),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "fc.bias", MQ_DTYPE_F32, 1, (int64_t[]){3}, b), MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(m, "conv.weight", MQ_DTYPE_F32, 4, (int64_t[]){2, 3, 2, 2}, conv),
        MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "norm.weight", MQ_DTYPE_F32, 1, (int64_t[]){4}, norm),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "position_ids", MQ_DTYPE_I64, 1, (int64_t[]){5}, ids),
                     MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(m, "lm_head.weight", MQ_DTYPE_F32, 2, (int64_t[]){5, 4}, head), MQ_OK);
    return m;
}

static bool skipped_with(const mq_skip_list *s, const char *name, const char *word)
{
    for (size_t i = 0; i < mq_skip_list_count(s); i++)
        if (!strcmp(mq_skip_list_name(s, i), name))
            return strstr(mq_skip_list_reason(s, i), word) != NULL;
    return false;
}

static mq_config host_config(void)
{
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    return cfg;
}

static void test_layout_and_skips(void **state)
{
    (void)state;
    mq_model *in = small_model(), *out = NULL;
    mq_skip_list *sk = NULL;
    mq_config cfg = host_config();
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, &sk), MQ_OK);

    const mq_tensor *q = mq_model_find(out, "fc.weight");
    const mq_tensor *s = mq_model_find(out, "fc.weight_scale");
    assert_non_null(q);
    assert_non_null(s);
    assert_int_equal(q->dtype, MQ_DTYPE_I8);
    assert_int_equal(q->rank, 2);
    assert_int_equal(q->shape[0], 3);
    assert_int_equal(q->shape[1], 4);
    assert_int_equal(s->dtype, MQ_DTYPE_F32);
    assert_int_equal(s->rank, 2);
    assert_int_equal(s->shape[0], 3);
    assert_int_equal(s->shape[1], 1);
    assert_null(mq_model_find(out, "fc.weight_zero_point"));
    const mq_tensor *c = mq_model_find(out, "conv.weight");
    assert_int_equal(c->dtype, MQ_DTYPE_I8);
    assert_int_equal(mq_model_find(out, "conv.weight_scale")->shape[0], 2);

    /* Same numbers as the reference on the same rows. */
    int8_t eq[12];
    float es[3];
    size_t bad;
    const mq_tensor *w = mq_model_find(in, "fc.weight");
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, true), w->data, MQ_DTYPE_F32, 3, 4, eq, es, NULL, &bad),
        MQ_OK);
    assert_memory_equal(q->data, eq, 12);
    assert_memory_equal(s->data, es, sizeof es);

    assert_int_equal(mq_skip_list_count(sk), 5);
    assert_true(skipped_with(sk, "embed_tokens.weight", "embedding"));
    assert_true(skipped_with(sk, "lm_head.weight", "lm_head"));
    assert_true(skipped_with(sk, "fc.bias", "rank 1"));
    assert_true(skipped_with(sk, "norm.weight", "rank 1"));
    assert_true(skipped_with(sk, "position_ids", "rank 1"));
    /* Skipped tensors are copied byte for byte. */
    const mq_tensor *a = mq_model_find(in, "lm_head.weight"),
                    *b = mq_model_find(out, "lm_head.weight");
    assert_int_equal(b->dtype, MQ_DTYPE_F32);
    assert_memory_equal(a->data, b->data, a->nbytes);
    /* Output order: each quantized weight is followed by its scale. */
    assert_string_equal(mq_model_tensor(out, 1)->name, "fc.weight");
    assert_string_equal(mq_model_tensor(out, 2)->name, "fc.weight_scale");
    assert_int_equal(mq_model_count(out), mq_model_count(in) + 2);

    mq_skip_list_free(sk);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_input_untouched(void **state)
{
    (void)state;
    mq_model *in = small_model(), *out = NULL;
    size_t n = mq_model_count(in);
    unsigned char *copy[16];
    for (size_t i = 0; i < n; i++) {
        const mq_tensor *t = mq_model_tensor(in, i);
        copy[i] = malloc(t->nbytes);
        memcpy(copy[i], t->data, t->nbytes);
    }
    mq_config cfg = host_config();
    cfg.symmetric = false;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_OK);
    assert_int_equal(mq_model_count(in), n);
    for (size_t i = 0; i < n; i++) {
        const mq_tensor *t = mq_model_tensor(in, i);
        assert_memory_equal(copy[i], t->data, t->nbytes);
        free(copy[i]);
    }
    assert_int_equal(mq_model_find(in, "fc.weight")->dtype, MQ_DTYPE_F32);
    /* The copy outlives its input. */
    mq_model_free(in);
    /* Asymmetric weights are written pack-quantized, zero points packed too. */
    assert_int_equal(mq_model_find(out, "fc.weight_packed")->dtype, MQ_DTYPE_I32);
    assert_int_equal(mq_model_find(out, "fc.weight_zero_point")->dtype, MQ_DTYPE_I32);
    assert_null(mq_model_find(out, "fc.weight"));
    assert_int_equal(mq_model_find(out, "lm_head.weight")->dtype, MQ_DTYPE_F32);
    mq_model_free(out);
    mq_config_free(&cfg);
}

/* The packed bytes of int8 codes as compressed-tensors' pack_to_int32 lays
 * them out, written here independently: along the last dimension (length
 * inner), four codes + 128 per little-endian int32, a row's last word padded
 * with zeros. */
static size_t expect_packed(const int8_t *q, size_t numel, size_t inner, unsigned char *out)
{
    size_t words = (inner + 3) / 4, n = 0;
    for (size_t r = 0; r < numel / inner; r++)
        for (size_t i = 0; i < 4 * words; i++)
            out[n++] = i < inner ? (unsigned char)(q[r * inner + i] + 128) : 0;
    return n;
}

static void check_packed(const mq_model *in, const mq_model *out, const char *name, size_t rows,
                         size_t cols, bool sym, bool per_channel)
{
    char buf[128];
    const mq_tensor *w = mq_model_find(in, name);
    int8_t q[64], zp[8];
    float sc[8];
    unsigned char expect[256];
    size_t bad;
    assert_int_equal(
        mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), w->data, MQ_DTYPE_F32, rows, cols, q, sc, zp, &bad),
        MQ_OK);
    snprintf(buf, sizeof buf, "%s_packed", name);
    const mq_tensor *p = mq_model_find(out, buf);
    assert_non_null(p);
    assert_int_equal(p->dtype, MQ_DTYPE_I32);
    assert_int_equal(p->rank, w->rank);
    size_t inner = (size_t)w->shape[w->rank - 1];
    assert_int_equal(p->shape[w->rank - 1], (int64_t)((inner + 3) / 4));
    size_t n = expect_packed(q, rows * cols, inner, expect);
    assert_int_equal(p->nbytes, n);
    assert_memory_equal(p->data, expect, n);
    snprintf(buf, sizeof buf, "%s_shape", name);
    const mq_tensor *sh = mq_model_find(out, buf);
    assert_int_equal(sh->dtype, MQ_DTYPE_I64);
    assert_int_equal(sh->shape[0], w->rank);
    for (int k = 0; k < w->rank; k++)
        assert_int_equal(((const int64_t *)sh->data)[k], w->shape[k]);
    snprintf(buf, sizeof buf, "%s_scale", name);
    assert_memory_equal(mq_model_find(out, buf)->data, sc, rows * 4);
    snprintf(buf, sizeof buf, "%s_zero_point", name);
    const mq_tensor *z = mq_model_find(out, buf);
    if (sym) {
        assert_null(z);
    } else if (per_channel) {
        /* Packed along dimension 0: [ceil(rows / 4), 1]. */
        assert_int_equal(z->dtype, MQ_DTYPE_I32);
        assert_int_equal(z->shape[0], (int64_t)((rows + 3) / 4));
        assert_int_equal(z->shape[1], 1);
        n = expect_packed(zp, rows, rows, expect);
        assert_memory_equal(z->data, expect, n);
    } else {
        assert_int_equal(z->dtype, MQ_DTYPE_I8);
        assert_memory_equal(z->data, zp, 1);
    }
    snprintf(buf, sizeof buf, "%s", name);
    assert_null(mq_model_find(out, buf));
}

static void test_per_tensor_and_asym(void **state)
{
    (void)state;
    mq_model *in = small_model(), *out = NULL;
    mq_config cfg = host_config();
    cfg.per_channel = false;
    cfg.symmetric = false;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_OK);
    const mq_tensor *s = mq_model_find(out, "fc.weight_scale");
    assert_int_equal(s->rank, 1);
    assert_int_equal(s->shape[0], 1);
    check_packed(in, out, "fc.weight", 1, 12, false, false);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

/* Pack-quantized layouts: asymmetric per channel (zero points packed) and
 * symmetric weights only, on a Linear weight whose rows fill whole words and
 * a Conv weight whose last dimension (2) leaves half of each word padding. */
static void test_pack_quantized(void **state)
{
    (void)state;
    for (int sym = 0; sym < 2; sym++) {
        mq_model *in = small_model(), *out = NULL;
        mq_config cfg = host_config();
        cfg.symmetric = sym;
        cfg.weights_only = true;
        assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_OK);
        check_packed(in, out, "fc.weight", 3, 4, sym, true);
        check_packed(in, out, "conv.weight", 2, 12, sym, true);
        /* The weight error, measured as the packed codes are made, is the
         * unpacked codes' error (W8A8 has the same codes when symmetric). */
        if (sym) {
            mq_model *o2 = NULL;
            mq_report *r1 = NULL, *r2 = NULL;
            mq_config c2 = host_config();
            assert_int_equal(mq_dynamic_quantize_report(in, &cfg, &o2, NULL, &r1), MQ_OK);
            mq_model_free(o2);
            assert_int_equal(mq_dynamic_quantize_report(in, &c2, &o2, NULL, &r2), MQ_OK);
            assert_int_equal(mq_report_count(r1), mq_report_count(r2));
            for (size_t i = 0; i < mq_report_count(r1); i++) {
                const mq_report_entry *a = mq_report_entry_at(r1, i),
                                      *b = mq_report_entry_at(r2, i);
                if (a->action != MQ_ACTION_QUANTIZE) continue;
                assert_true(a->weight_sqnr_db == b->weight_sqnr_db);
                assert_true(a->max_abs_error == b->max_abs_error);
                assert_int_equal(a->clamped, b->clamped);
            }
            mq_report_free(r1);
            mq_report_free(r2);
            mq_model_free(o2);
            mq_config_free(&c2);
        }
        mq_model_free(out);
        mq_model_free(in);
        mq_config_free(&cfg);
    }
}

static void test_hand_computed(void **state)
{
    (void)state;
    /* Channel 0: amax 127.5 so the scale is exactly 1 and ties round to even.
     * Channel 1: all zeros -> scale FLT_EPSILON, q 0. */
    float w[2 * 4] = {127.5f, 0.5f, 1.5f, -2.5f, 0, 0, 0, 0};
    mq_model *in, *out;
    assert_int_equal(mq_model_new(&in), MQ_OK);
    assert_int_equal(mq_model_add_tensor(in, "l.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 4}, w),
                     MQ_OK);
    mq_config cfg = host_config();
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_OK);
    const int8_t expect_q[8] = {127, 0, 2, -2, 0, 0, 0, 0};
    const float expect_s[2] = {1.0f, 1.1920928955078125e-07f};
    assert_memory_equal(mq_model_find(out, "l.weight")->data, expect_q, 8);
    assert_memory_equal(mq_model_find(out, "l.weight_scale")->data, expect_s, 8);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_nonfinite(void **state)
{
    (void)state;
    float w[3 * 2] = {1, 2, 3, NAN, 5, 6};
    mq_model *in, *out = (mq_model *)1;
    mq_skip_list *sk = NULL;
    assert_int_equal(mq_model_new(&in), MQ_OK);
    assert_int_equal(mq_model_add_tensor(in, "bad.weight", MQ_DTYPE_F32, 2, (int64_t[]){3, 2}, w),
                     MQ_OK);
    mq_config cfg = host_config();
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, &sk), MQ_STATUS_E_DATA);
    assert_null(out);
    assert_non_null(strstr(mq_last_error(), "bad.weight"));
    assert_non_null(strstr(mq_last_error(), "channel 1"));
    assert_non_null(strstr(mq_last_error(), "NaN"));

    cfg.skip_nonfinite = true;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, &sk), MQ_OK);
    assert_int_equal(mq_model_find(out, "bad.weight")->dtype, MQ_DTYPE_F32);
    assert_null(mq_model_find(out, "bad.weight_scale"));
    assert_true(skipped_with(sk, "bad.weight", "NaN"));
    mq_skip_list_free(sk);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_name_clash(void **state)
{
    (void)state;
    float w[4] = {1, 2, 3, 4}, s[2] = {1, 1};
    mq_model *in, *out = NULL;
    assert_int_equal(mq_model_new(&in), MQ_OK);
    assert_int_equal(mq_model_add_tensor(in, "l.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 2}, w),
                     MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(in, "l.weight_scale", MQ_DTYPE_F32, 2, (int64_t[]){2, 1}, s), MQ_OK);
    mq_config cfg = host_config();
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_STATUS_E_DATA);
    assert_non_null(strstr(mq_last_error(), "l.weight_scale"));
    assert_null(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_fp16(void **state)
{
    (void)state;
    mq_model *in = small_model(), *out = NULL;
    mq_skip_list *sk = NULL;
    mq_report *rep = NULL;
    float big[4] = {1.0f, 70000.0f, -1e6f, 65504.0f};
    assert_int_equal(mq_model_add_tensor(in, "big.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 2}, big),
                     MQ_OK);
    mq_config cfg = host_config();
    cfg.dtype = MQ_FLOAT16;
    assert_int_equal(mq_dynamic_quantize_report(in, &cfg, &out, &sk, &rep), MQ_OK);
    for (size_t i = 0; i < mq_model_count(out); i++) {
        const mq_tensor *t = mq_model_tensor(out, i);
        const mq_tensor *o = mq_model_find(in, t->name);
        assert_non_null(o); /* every name kept, none added */
        assert_int_equal(t->dtype, o->dtype == MQ_DTYPE_F32 ? MQ_DTYPE_F16 : o->dtype);
    }
    assert_int_equal(mq_model_count(out), mq_model_count(in));
    const uint16_t *h = mq_model_find(out, "big.weight")->data;
    assert_int_equal(h[0], 0x3C00);
    assert_int_equal(h[1], 0x7C00);
    assert_int_equal(h[2], 0xFC00);
    assert_int_equal(h[3], 0x7BFF);
    assert_int_equal(mq_report_fp16_overflow(rep), 2);
    assert_true(skipped_with(sk, "position_ids", "I64"));
    assert_int_equal(mq_skip_list_count(sk), 1);
    mq_skip_list_free(sk);
    mq_report_free(rep);
    mq_model_free(out);

    cfg.fp16_saturate = true;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_OK);
    h = mq_model_find(out, "big.weight")->data;
    assert_int_equal(h[1], 0x7BFF);
    assert_int_equal(h[2], 0xFBFF);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_dequantize_round_trip(void **state)
{
    (void)state;
    mq_model *in = small_model(), *q = NULL, *d = NULL;
    mq_config cfg = host_config();
    cfg.symmetric = false;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &q, NULL), MQ_OK);
    assert_int_equal(mq_dequantize(q, &d), MQ_OK);
    assert_int_equal(mq_model_count(d), mq_model_count(in));
    assert_null(mq_model_find(d, "fc.weight_scale"));
    const mq_tensor *w = mq_model_find(in, "fc.weight"), *dw = mq_model_find(d, "fc.weight");
    const float *s = mq_model_find(q, "fc.weight_scale")->data;
    assert_int_equal(dw->dtype, MQ_DTYPE_F32);
    for (size_t i = 0; i < 12; i++) {
        float err = fabsf(((const float *)w->data)[i] - ((const float *)dw->data)[i]);
        assert_true(err <= s[i / 4] * 0.5f * 1.0001f);
    }
    assert_memory_equal(mq_model_find(in, "lm_head.weight")->data,
                        mq_model_find(d, "lm_head.weight")->data, 80);
    mq_model_free(d);
    mq_model_free(q);
    mq_model_free(in);
    mq_config_free(&cfg);
}

/* The MX presets: codes and e8m0 scales as the reference makes them, in
 * compressed-tensors' tensors (MXFP4: uint8 weight_packed, no shape tensor;
 * MXFP8: an e4m3 weight), ragged groups kept in float, and dequantize giving
 * code x 2^(x - 127) in BF16. */
static void test_mx_presets(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 31);
    float w[4 * 64], rag[2 * 40];
    for (size_t i = 0; i < 4 * 64; i++)
        w[i] = tu_rng_f32(&r) * (i % 64 == 3 ? 40.0f : 1.0f);
    for (size_t i = 0; i < 2 * 40; i++)
        rag[i] = tu_rng_f32(&r);
    for (int k = 0; k < 2; k++) {
        bool fp4 = k == 0;
        mq_qkind kind = fp4 ? MQ_QK_MXFP4 : MQ_QK_MXFP8;
        mq_model *in, *out = NULL, *d = NULL;
        mq_skip_list *sk = NULL;
        assert_int_equal(mq_model_new(&in), MQ_OK);
        assert_int_equal(
            mq_model_add_tensor(in, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 64}, w), MQ_OK);
        assert_int_equal(
            mq_model_add_tensor(in, "r.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 40}, rag), MQ_OK);
        mq_config cfg = host_config();
        assert_int_equal(mq_config_set_preset(&cfg, fp4 ? "MXFP4A16" : "MXFP8"), MQ_OK);
        assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, &sk), MQ_OK);
        assert_true(skipped_with(sk, "r.weight", "group size"));
        assert_non_null(mq_model_find(out, "r.weight"));
        const mq_tensor *c = mq_model_find(out, fp4 ? "fc.weight_packed" : "fc.weight");
        const mq_tensor *sc = mq_model_find(out, "fc.weight_scale");
        assert_non_null(c);
        assert_non_null(sc);
        assert_null(mq_model_find(out, "fc.weight_shape"));
        assert_null(mq_model_find(out, "fc.weight_zero_point"));
        assert_int_equal(c->dtype, fp4 ? MQ_DTYPE_U8 : MQ_DTYPE_F8_E4M3);
        assert_int_equal(c->shape[1], fp4 ? 32 : 64);
        assert_int_equal(sc->dtype, MQ_DTYPE_U8);
        assert_int_equal(sc->shape[0], 4);
        assert_int_equal(sc->shape[1], 2);
        /* Groups of 32 are rows of the reference's call. */
        uint8_t q[8 * 32], s[8];
        assert_int_equal(
            mq_ref_quantize(mq_qd(kind, true), w, MQ_DTYPE_F32, 8, 32, q, s, NULL, NULL), MQ_OK);
        assert_memory_equal(c->data, q, fp4 ? 4 * 32 : 4 * 64);
        assert_memory_equal(sc->data, s, 8);
        assert_int_equal(mq_dequantize(out, &d), MQ_OK);
        const mq_tensor *dw = mq_model_find(d, "fc.weight");
        assert_non_null(dw);
        assert_int_equal(dw->dtype, MQ_DTYPE_BF16);
        for (size_t i = 0; i < 4 * 64; i++) {
            float m = ldexpf(1.0f, (int)s[i / 32] - 127);
            float v = fp4 ? mq_e2m1_to_f32((uint8_t)((q[i / 2] >> (4 * (i & 1))) & 15u)) * m
                          : mq_e4m3_to_f32(q[i]) * m;
            assert_int_equal(((const uint16_t *)dw->data)[i], mq_f32_to_bf16(v));
        }
        mq_model_free(d);
        mq_skip_list_free(sk);
        mq_model_free(out);
        mq_model_free(in);
        mq_config_free(&cfg);
    }
}

/* NVFP4A16 in memory: q/k/v share the global scale of their largest max
 * |w| (computed before any of them is quantized), o_proj keeps its own;
 * codes and e4m3 scales as the reference makes them under that scale; a
 * ragged weight kept; dequantize gives code x (scale / global) in BF16. */
static void test_nvfp4_preset(void **state)
{
    (void)state;
    static const char *const names[] = {"l.self_attn.q_proj.weight", "l.self_attn.k_proj.weight",
                                        "l.self_attn.v_proj.weight", "l.self_attn.o_proj.weight"};
    static const float mags[] = {1.0f, 7.0f, 0.5f, 3.0f};
    tu_rng r;
    tu_rng_seed(&r, 23);
    float w[4][2 * 32], rag[2 * 40];
    mq_model *in, *out = NULL, *d = NULL;
    mq_skip_list *sk = NULL;
    assert_int_equal(mq_model_new(&in), MQ_OK);
    for (int t = 0; t < 4; t++) {
        for (size_t i = 0; i < 64; i++)
            w[t][i] = tu_rng_f32(&r) * mags[t];
        w[t][5] = mags[t]; /* the weight's max |w| */
        assert_int_equal(
            mq_model_add_tensor(in, names[t], MQ_DTYPE_F32, 2, (int64_t[]){2, 32}, w[t]), MQ_OK);
    }
    for (size_t i = 0; i < 2 * 40; i++)
        rag[i] = tu_rng_f32(&r);
    assert_int_equal(mq_model_add_tensor(in, "r.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 40}, rag),
                     MQ_OK);
    mq_config cfg = host_config();
    assert_int_equal(mq_config_set_preset(&cfg, "NVFP4A16"), MQ_OK);
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, &sk), MQ_OK);
    assert_true(skipped_with(sk, "r.weight", "group size"));
    for (int t = 0; t < 4; t++) {
        char n[64];
        float g = mq_nvfp4_global_scale(t < 3 ? 7.0f : 3.0f, MQ_DTYPE_F32), got;
        snprintf(n, sizeof n, "%.*s_global_scale", (int)strlen(names[t]), names[t]);
        const mq_tensor *gs = mq_model_find(out, n);
        assert_non_null(gs);
        assert_int_equal(gs->dtype, MQ_DTYPE_F32);
        memcpy(&got, gs->data, 4);
        assert_true(mq_f32_bits(got) == mq_f32_bits(g));
        snprintf(n, sizeof n, "%s_packed", names[t]);
        const mq_tensor *c = mq_model_find(out, n);
        snprintf(n, sizeof n, "%s_scale", names[t]);
        const mq_tensor *sc = mq_model_find(out, n);
        assert_non_null(c);
        assert_non_null(sc);
        assert_int_equal(c->dtype, MQ_DTYPE_U8);
        assert_int_equal(sc->dtype, MQ_DTYPE_F8_E4M3);
        assert_int_equal(sc->shape[1], 2);
        mq_qdesc qd = mq_qd(MQ_QK_NVFP4, true);
        qd.gscale = g;
        uint8_t q[4 * 8], s[4];
        assert_int_equal(mq_ref_quantize(qd, w[t], MQ_DTYPE_F32, 4, 16, q, s, NULL, NULL), MQ_OK);
        assert_memory_equal(c->data, q, 32);
        assert_memory_equal(sc->data, s, 4);
    }
    assert_int_equal(mq_dequantize(out, &d), MQ_OK);
    const mq_tensor *dw = mq_model_find(d, names[3]);
    assert_non_null(dw);
    assert_int_equal(dw->dtype, MQ_DTYPE_BF16);
    assert_null(mq_model_find(d, "l.self_attn.o_proj.weight_global_scale"));
    const mq_tensor *c = mq_model_find(out, "l.self_attn.o_proj.weight_packed");
    const mq_tensor *sc = mq_model_find(out, "l.self_attn.o_proj.weight_scale");
    float g = mq_nvfp4_global_scale(3.0f, MQ_DTYPE_F32);
    for (size_t i = 0; i < 64; i++) {
        uint8_t code = (uint8_t)((((const uint8_t *)c->data)[i / 2] >> (4 * (i & 1))) & 15u);
        float v = mq_e2m1_to_f32(code) * (mq_e4m3_to_f32(((const uint8_t *)sc->data)[i / 16]) / g);
        assert_int_equal(((const uint16_t *)dw->data)[i], mq_f32_to_bf16(v));
    }
    mq_model_free(d);
    mq_skip_list_free(sk);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_report(void **state)
{
    (void)state;
    mq_model *in = small_model(), *out = NULL;
    mq_report *rep = NULL;
    mq_config cfg = host_config();
    assert_int_equal(mq_dynamic_quantize_report(in, &cfg, &out, NULL, &rep), MQ_OK);
    assert_int_equal(mq_report_count(rep), mq_model_count(in));
    assert_string_equal(mq_report_backend(rep), "host");
    const mq_report_entry *e = mq_report_entry_at(rep, 1);
    assert_string_equal(e->name, "fc.weight");
    assert_int_equal(e->action, MQ_ACTION_QUANTIZE);
    assert_int_equal(e->bytes_in, 48);
    assert_int_equal(e->bytes_out, 12 + 12);
    uint64_t in_total = 0;
    for (size_t i = 0; i < mq_model_count(in); i++)
        in_total += mq_model_tensor(in, i)->nbytes;
    assert_int_equal(mq_report_bytes_in(rep), in_total);
    mq_report_free(rep);
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
}

static void test_api_misuse(void **state)
{
    (void)state;
    mq_model *m = NULL, *out = NULL;
    float x = 1;
    assert_int_equal(mq_dynamic_quantize(NULL, NULL, &out, NULL), MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "a", MQ_DTYPE_F32, 0, NULL, &x), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "a", MQ_DTYPE_F32, 0, NULL, &x),
                     MQ_STATUS_E_INVALID_ARG);
    assert_non_null(strstr(mq_last_error(), "duplicate"));
    assert_int_equal(mq_model_add_tensor(m, "b", MQ_DTYPE_F32, 1, (int64_t[]){-1}, &x),
                     MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_model_add_tensor(m, "c", MQ_DTYPE_F32, 9, (int64_t[9]){0}, &x),
                     MQ_STATUS_E_INVALID_ARG);
    /* Defaults when cfg is NULL: the scalar is skipped, nothing fails. */
    assert_int_equal(mq_dynamic_quantize(m, NULL, &out, NULL), MQ_OK);
    mq_model_free(out);
    mq_model_free(m);
    mq_model_free(NULL);
    mq_skip_list_free(NULL);
    mq_report_free(NULL);
}

/* A quantized input (ours, int-quantized or packed) is refused, in memory
 * and file to file, whatever the settings; it is never quantized again. */
static void test_quantized_input_refused(void **state)
{
    (void)state;
    for (int sym = 0; sym < 2; sym++) {
        mq_model *in = small_model(), *q = NULL, *again = (mq_model *)1;
        mq_config cfg = host_config();
        cfg.symmetric = sym;
        assert_int_equal(mq_dynamic_quantize(in, &cfg, &q, NULL), MQ_OK);
        for (int dt = 0; dt < 2; dt++) {
            mq_config c2 = host_config();
            c2.dtype = dt ? MQ_FLOAT16 : MQ_QINT8;
            assert_int_equal(mq_config_add_include(&c2, "re:.*"), MQ_OK);
            assert_int_equal(mq_dynamic_quantize(q, &c2, &again, NULL), MQ_STATUS_E_FORMAT);
            assert_null(again);
            assert_non_null(strstr(mq_last_error(), "already quantized"));
            assert_non_null(strstr(mq_last_error(), "fc.weight"));
            again = (mq_model *)1;
            mq_config_free(&c2);
        }
        char *dir = tu_mkdtemp(), *qp = tu_join(dir, "q.safetensors"), *o = tu_join(dir, "o.st");
        assert_int_equal(mq_model_save(q, qp), MQ_OK);
        assert_int_equal(mq_quantize_file(qp, o, &cfg, NULL), MQ_STATUS_E_FORMAT);
        assert_non_null(strstr(mq_last_error(), "q.safetensors"));
        assert_false(tu_exists(o));
        tu_rmtree(dir);
        free(dir);
        free(qp);
        free(o);
        mq_model_free(q);
        mq_model_free(in);
        mq_config_free(&cfg);
    }
}

/* A device opened once serves several calls (its kernels built once) and is
 * closed by its owner only; the results are those of a per-call device. */
static void test_device_handle(void **state)
{
    (void)state;
    const char *specs[] = {"host", "opencl"};
    mq_model *in = small_model(), *ref = NULL;
    mq_config base = host_config();
    assert_int_equal(mq_dynamic_quantize(in, &base, &ref, NULL), MQ_OK);
    for (int k = 0; k < 2; k++) {
        mq_device *dev = NULL;
        if (mq_device_open(specs[k], &dev) != MQ_OK) {
            assert_int_equal(k, 1); /* no OpenCL device here: the host part ran */
            break;
        }
        assert_string_equal(mq_device_kind(dev), specs[k]);
        mq_config cfg;
        mq_config_init(&cfg);
        cfg.device_handle = dev;
        for (int run = 0; run < 2; run++) {
            mq_model *out = NULL;
            mq_report *rep = NULL;
            assert_int_equal(mq_dynamic_quantize_report(in, &cfg, &out, NULL, &rep), MQ_OK);
            assert_string_equal(mq_report_backend(rep), specs[k]);
            assert_int_equal(mq_model_count(out), mq_model_count(ref));
            for (size_t i = 0; i < mq_model_count(ref); i++) {
                const mq_tensor *a = mq_model_tensor(ref, i);
                const mq_tensor *b = mq_model_find(out, a->name);
                assert_non_null(b);
                assert_int_equal(a->nbytes, b->nbytes);
                assert_memory_equal(a->data, b->data, a->nbytes);
            }
            mq_report_free(rep);
            mq_model_free(out);
        }
        mq_config_free(&cfg);
        mq_device_close(dev);
    }
    mq_device_close(NULL);
    mq_model_free(ref);
    mq_model_free(in);
    mq_config_free(&base);
}

/* mq_device_open takes a spec as the device setting does: a list opens its
 * first entry, and a malformed list fails naming it. */
static void test_device_open_spec(void **state)
{
    (void)state;
    mq_device *dev = NULL;
    assert_int_equal(mq_device_open(" host , host", &dev), MQ_OK);
    assert_string_equal(mq_device_kind(dev), "host");
    mq_device_close(dev);
    dev = (mq_device *)&dev;
    assert_int_equal(mq_device_open("host,,host", &dev), MQ_STATUS_E_CONFIG);
    assert_null(dev);
    assert_non_null(strstr(mq_last_error(), "device list 'host,,host': an empty entry"));
    assert_int_equal(mq_device_open("host", NULL), MQ_STATUS_E_INVALID_ARG);
}

static void count_release(void *user)
{
    (*(int *)user)++;
}

/* A tensor added by reference is read in place: the input model and the
 * tensors its output keeps point at the caller's memory, and the release
 * callback runs once, when the last model lets go of it (and on failure). */
static void test_add_tensor_ref(void **state)
{
    (void)state;
    float w[4 * 8], bias[4];
    for (int i = 0; i < 32; i++)
        w[i] = (float)(i - 16) / 8.0f;
    for (int i = 0; i < 4; i++)
        bias[i] = (float)i;
    int released_w = 0, released_b = 0, released_bad = 0;
    mq_model *in, *out = NULL, *copy_ref = NULL;
    assert_int_equal(mq_model_new(&in), MQ_OK);
    assert_int_equal(mq_model_add_tensor_ref(in, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w,
                                             count_release, &released_w),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor_ref(in, "fc.bias", MQ_DTYPE_F32, 1, (int64_t[]){4}, bias,
                                             count_release, &released_b),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor_ref(in, "bad", MQ_DTYPE_F32, 1, (int64_t[]){-1}, bias,
                                             count_release, &released_bad),
                     MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(released_bad, 1);
    assert_ptr_equal(mq_model_find(in, "fc.weight")->data, w);
    /* The same bytes as a copied input. */
    assert_int_equal(mq_model_new(&copy_ref), MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(copy_ref, "fc.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 8}, w), MQ_OK);
    mq_config cfg = host_config();
    mq_model *o2 = NULL;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_OK);
    assert_int_equal(mq_dynamic_quantize(copy_ref, &cfg, &o2, NULL), MQ_OK);
    assert_memory_equal(mq_model_find(out, "fc.weight")->data, mq_model_find(o2, "fc.weight")->data,
                        32);
    /* The kept bias is shared with the input, not copied. */
    assert_ptr_equal(mq_model_find(out, "fc.bias")->data, bias);
    mq_model_free(in);
    assert_int_equal(released_w, 1); /* no model keeps the weight: out has its codes */
    assert_int_equal(released_b, 0); /* out still reads the bias in place */
    mq_model_free(out);
    assert_int_equal(released_w, 1);
    assert_int_equal(released_b, 1);
    mq_model_free(o2);
    mq_model_free(copy_ref);
    mq_config_free(&cfg);
}

/* A float weight whose scale name is already taken: an error naming the
 * weight and the name, in memory and file to file, and no output. */
static void test_companion_clash(void **state)
{
    (void)state;
    float w[4 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}, sc[4] = {1, 1, 1, 1};
    mq_model *in, *out = NULL;
    assert_int_equal(mq_model_new(&in), MQ_OK);
    assert_int_equal(mq_model_add_tensor(in, "a.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 4}, w),
                     MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(in, "a.weight_scale", MQ_DTYPE_F32, 2, (int64_t[]){4, 1}, sc), MQ_OK);
    mq_config cfg = host_config();
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &out, NULL), MQ_STATUS_E_DATA);
    assert_null(out);
    assert_non_null(strstr(mq_last_error(), "tensor 'a.weight'"));
    assert_non_null(strstr(mq_last_error(), "'a.weight_scale'"));
    char *dir = tu_mkdtemp(), *ip = tu_join(dir, "in.safetensors"), *op = tu_join(dir, "o.st");
    assert_int_equal(mq_model_save(in, ip), MQ_OK);
    assert_int_equal(mq_quantize_file(ip, op, &cfg, NULL), MQ_STATUS_E_DATA);
    assert_non_null(strstr(mq_last_error(), "tensor 'a.weight'"));
    assert_false(tu_exists(op));
    tu_rmtree(dir);
    free(dir);
    free(ip);
    free(op);
    mq_model_free(in);
    mq_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_skips),
        cmocka_unit_test(test_input_untouched),
        cmocka_unit_test(test_per_tensor_and_asym),
        cmocka_unit_test(test_pack_quantized),
        cmocka_unit_test(test_quantized_input_refused),
        cmocka_unit_test(test_device_handle),
        cmocka_unit_test(test_device_open_spec),
        cmocka_unit_test(test_add_tensor_ref),
        cmocka_unit_test(test_companion_clash),
        cmocka_unit_test(test_hand_computed),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_name_clash),
        cmocka_unit_test(test_fp16),
        cmocka_unit_test(test_dequantize_round_trip),
        cmocka_unit_test(test_mx_presets),
        cmocka_unit_test(test_nvfp4_preset),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_api_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
