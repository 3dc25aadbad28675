/* The importance matrix: the Hugging Face to llama.cpp name table, the GGUF
 * reader on a file built here byte by byte (and on every truncation of it),
 * and the loader's importances (in_sum2 / count, per expert) and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"
#include "gguf.h"
#include "imatrix.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_key(const char *hf, const char *key, size_t expert)
{
    char got[128];
    size_t e = 7;
    if (!mq_imatrix_hf_key(hf, got, sizeof got, &e)) fail_msg("%s: no llama.cpp name", hf);
    assert_string_equal(got, key);
    assert_int_equal(e, expert);
    assert_true(mq_imatrix_key_known(got));
}

static void test_names(void **state)
{
    (void)state;
    const size_t none = SIZE_MAX;
    /* Llama, Mistral, Qwen2/3, Gemma */
    expect_key("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", none);
    expect_key("model.layers.12.self_attn.k_proj.weight", "blk.12.attn_k.weight", none);
    expect_key("model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight", none);
    expect_key("model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight", none);
    expect_key("model.layers.29.mlp.gate_proj.weight", "blk.29.ffn_gate.weight", none);
    expect_key("model.layers.29.mlp.up_proj.weight", "blk.29.ffn_up.weight", none);
    expect_key("model.layers.29.mlp.down_proj.weight", "blk.29.ffn_down.weight", none);
    expect_key("lm_head.weight", "output.weight", none);
    expect_key("model.embed_tokens.weight", "token_embd.weight", none);
    expect_key("model.language_model.layers.5.self_attn.q_proj.weight", "blk.5.attn_q.weight",
               none); /* Gemma 3 */
    /* Phi-3: fused, one entry for all rows */
    expect_key("model.layers.1.self_attn.qkv_proj.weight", "blk.1.attn_qkv.weight", none);
    expect_key("model.layers.1.mlp.gate_up_proj.weight", "blk.1.ffn_up.weight", none);
    /* Mixtral / Phi-3.5-MoE */
    expect_key("model.layers.2.block_sparse_moe.experts.7.w1.weight", "blk.2.ffn_gate_exps.weight",
               7);
    expect_key("model.layers.2.block_sparse_moe.experts.0.w2.weight", "blk.2.ffn_down_exps.weight",
               0);
    expect_key("model.layers.2.block_sparse_moe.experts.10.w3.weight", "blk.2.ffn_up_exps.weight",
               10);
    expect_key("model.layers.2.block_sparse_moe.gate.weight", "blk.2.ffn_gate_inp.weight", none);
    /* Qwen2/3-MoE */
    expect_key("model.layers.4.mlp.experts.127.gate_proj.weight", "blk.4.ffn_gate_exps.weight",
               127);
    expect_key("model.layers.4.mlp.experts.3.up_proj.weight", "blk.4.ffn_up_exps.weight", 3);
    expect_key("model.layers.4.mlp.experts.3.down_proj.weight", "blk.4.ffn_down_exps.weight", 3);
    expect_key("model.layers.4.mlp.gate.weight", "blk.4.ffn_gate_inp.weight", none);
    expect_key("model.layers.4.mlp.shared_expert.gate_proj.weight", "blk.4.ffn_gate_shexp.weight",
               none);
    expect_key("model.layers.4.mlp.shared_expert.down_proj.weight", "blk.4.ffn_down_shexp.weight",
               none);
    expect_key("model.layers.4.mlp.shared_expert_gate.weight", "blk.4.ffn_gate_inp_shexp.weight",
               none);
    /* BERT encoders, bare (BertModel) and under "bert." */
    expect_key("encoder.layer.0.attention.self.query.weight", "blk.0.attn_q.weight", none);
    expect_key("encoder.layer.5.attention.self.key.weight", "blk.5.attn_k.weight", none);
    expect_key("encoder.layer.5.attention.self.value.weight", "blk.5.attn_v.weight", none);
    expect_key("encoder.layer.11.attention.output.dense.weight", "blk.11.attn_output.weight", none);
    expect_key("encoder.layer.2.intermediate.dense.weight", "blk.2.ffn_up.weight", none);
    expect_key("bert.encoder.layer.2.output.dense.weight", "blk.2.ffn_down.weight", none);

    /* Not weights of a mapped module: no name. */
    static const char *const unmapped[] = {
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_proj.bias",
        "model.layers.01.self_attn.q_proj.weight",
        "model.layers.x.self_attn.q_proj.weight",
        "model.layers.0.mlp.experts.a.gate_proj.weight",
        "model.layers.0.mlp.experts..up_proj.weight",
        "model.layers.0..weight",
        "model.layers.0.weight",
        "layers.0.self_attn.q_proj.weight",
        "encoder.layer.0.self_attn.q_proj.weight", /* one family's module, another's prefix */
        "model.layers.0.attention.self.query.weight",
        "encoder.layer.0.attention.output.LayerNorm.weight",
        "pooler.dense.weight",
        "model.layers.99999999999999999999999.mlp.up_proj.weight",
        ".weight",
        ""};
    for (size_t i = 0; i < sizeof unmapped / sizeof *unmapped; i++) {
        char got[128];
        size_t e;
        if (mq_imatrix_hf_key(unmapped[i], got, sizeof got, &e))
            fail_msg("'%s' mapped to '%s'", unmapped[i], got);
    }
    /* A key that does not fit the buffer is no name, not a cut one. */
    char small[8];
    size_t e;
    assert_false(mq_imatrix_hf_key("model.layers.0.mlp.up_proj.weight", small, sizeof small, &e));

    static const char *const known[] = {"blk.0.attn_q.weight", "blk.7.ffn_down_exps.weight",
                                        "output.weight"};
    static const char *const unknown[] = {"blk.0.ssm_in.weight", "blk.0.attn_q",
                                          "blk..attn_q.weight",  "blk.0.attn_q.bias",
                                          "output_norm.weight",  "blk.0.weight"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        assert_true(mq_imatrix_key_known(known[i]));
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        if (mq_imatrix_key_known(unknown[i])) fail_msg("'%s' known", unknown[i]);
}

/* A GGUF file built here: one kv string, general.alignment, an array of
 * strings, and the tensors of two entries. */
typedef struct {
    unsigned char *b;
    size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->b = realloc(b->b, b->cap);
        assert_non_null(b->b);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put_u32(buf *b, uint32_t v)
{
    unsigned char x[4] = {v & 255, v >> 8 & 255, v >> 16 & 255, v >> 24};
    put(b, x, 4);
}

static void put_u64(buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void put_f32(buf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}

typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[2];
    const float *vals;
} tdesc;

static buf make_gguf(const tdesc *t, size_t nt, uint32_t align)
{
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, nt);
    put_u64(&b, 3);
    put_str(&b, "general.type");
    put_u32(&b, 8);
    put_str(&b, "imatrix");
    put_str(&b, "general.alignment");
    put_u32(&b, 4);
    put_u32(&b, align);
    put_str(&b, "imatrix.datasets");
    put_u32(&b, 9);
    put_u32(&b, 8);
    put_u64(&b, 2);
    put_str(&b, "a.txt");
    put_str(&b, "b.txt");
    uint64_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        put_str(&b, t[i].name);
        put_u32(&b, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            put_u64(&b, t[i].ne[d]);
        put_u32(&b, 0);
        put_u64(&b, off);
        uint64_t bytes = 4 * t[i].ne[0] * (t[i].n_dims > 1 ? t[i].ne[1] : 1);
        off += (bytes + align - 1) / align * align;
    }
    while (b.n % align)
        put(&b, "", 1);
    for (size_t i = 0; i < nt; i++) {
        uint64_t n = t[i].ne[0] * (t[i].n_dims > 1 ? t[i].ne[1] : 1);
        for (uint64_t j = 0; j < n; j++)
            put_f32(&b, t[i].vals[j]);
        while (b.n % align)
            put(&b, "", 1);
    }
    return b;
}

static const float sums_q[4] = {2.0f, 4.0f, 6.0f, 8.0f}, counts_q[1] = {2.0f};
static const float sums_x[6] = {1.0f, 2.0f, 3.0f, 9.0f, 9.0f, 9.0f}, counts_x[2] = {1.0f, 0.0f};
static const tdesc entries[] = {
    {"blk.0.attn_q.weight.in_sum2", 2, {4, 1}, sums_q},
    {"blk.0.attn_q.weight.counts", 2, {1, 1}, counts_q},
    {"blk.1.ffn_up_exps.weight.in_sum2", 2, {3, 2}, sums_x},
    {"blk.1.ffn_up_exps.weight.counts", 2, {1, 2}, counts_x},
};

static mq_imatrix *load_bytes(const buf *b, const char *name, mq_status want)
{
    char *dir = tu_mkdtemp(), *path = tu_join(dir, name);
    mq_imatrix *im = NULL;
    assert_true(tu_write_file(path, b->b, b->n));
    mq_status st = mq_imatrix_load(path, &im);
    if (st != want) fail_msg("%s: status %d, want %d: %s", name, st, want, mq_last_error());
    if (st != MQ_OK) assert_non_null(strstr(mq_last_error(), name));
    remove(path);
    remove(dir);
    free(path);
    free(dir);
    return im;
}

static void test_gguf_entries(void **state)
{
    (void)state;
    for (uint32_t align = 8; align <= 64; align *= 8) {
        buf b = make_gguf(entries, 4, align);
        mq_imatrix *im = load_bytes(&b, "m.gguf", MQ_OK);
        const float *imp;
        assert_int_equal(mq_imatrix_count(im), 2);
        assert_int_equal(mq_imatrix_find(im, "model.layers.0.self_attn.q_proj.weight", 4, &imp),
                         MQ_OK);
        assert_non_null(imp);
        for (int j = 0; j < 4; j++)
            assert_true(imp[j] == sums_q[j] / 2.0f);
        /* Expert 0 takes row 0; expert 1's count is 0: none. */
        assert_int_equal(
            mq_imatrix_find(im, "model.layers.1.mlp.experts.0.up_proj.weight", 3, &imp), MQ_OK);
        assert_non_null(imp);
        assert_true(imp[0] == 1.0f && imp[2] == 3.0f);
        assert_int_equal(
            mq_imatrix_find(im, "model.layers.1.mlp.experts.1.up_proj.weight", 3, &imp), MQ_OK);
        assert_null(imp);
        /* No entry, and an unmapped name: none. */
        assert_int_equal(mq_imatrix_find(im, "model.layers.0.self_attn.k_proj.weight", 4, &imp),
                         MQ_OK);
        assert_null(imp);
        assert_int_equal(mq_imatrix_find(im, "model.norm.weight", 4, &imp), MQ_OK);
        assert_null(imp);
        /* Sizes that do not fit: errors naming both. */
        assert_int_equal(mq_imatrix_find(im, "model.layers.0.self_attn.q_proj.weight", 8, &imp),
                         MQ_STATUS_E_FORMAT);
        assert_non_null(strstr(mq_last_error(), "blk.0.attn_q.weight"));
        assert_non_null(strstr(mq_last_error(), "model.layers.0.self_attn.q_proj.weight"));
        assert_int_equal(
            mq_imatrix_find(im, "model.layers.1.mlp.experts.2.up_proj.weight", 3, &imp),
            MQ_STATUS_E_FORMAT);
        mq_imatrix_free(im);
        free(b.b);
    }
}

/* Every prefix of a valid file fails cleanly (never a read past it, which
 * the sanitizer builds would catch), and so do a few corrupted fields. */
static void test_gguf_truncated_and_corrupt(void **state)
{
    (void)state;
    buf b = make_gguf(entries, 4, 32);
    for (size_t n = 0; n < b.n; n++) {
        mq_gguf g;
        mq_status st = mq_gguf_parse(b.b, n, "t.gguf", &g);
        /* The last tensor's padding is the only part whose loss still parses. */
        if (st == MQ_OK) {
            assert_true(n >= b.n - 32);
            mq_gguf_free(&g);
            continue;
        }
        assert_int_equal(st, MQ_STATUS_E_FORMAT);
        assert_non_null(strstr(mq_last_error(), "t.gguf"));
    }
    /* A huge tensor count (at byte 8), a huge key length (byte 24), and
     * below a tensor of 5 dimensions. */
    unsigned char *c = malloc(b.n);
    static const size_t fields[] = {8, 24};
    for (size_t f = 0; f < 2; f++) {
        mq_gguf g;
        memcpy(c, b.b, b.n);
        memset(c + fields[f], 0xff, 8);
        assert_int_equal(mq_gguf_parse(c, b.n, "c.gguf", &g), MQ_STATUS_E_FORMAT);
    }
    free(c);
    free(b.b);

    buf bad = {0};
    put(&bad, "GGUF", 4);
    put_u32(&bad, 3);
    put_u64(&bad, 1);
    put_u64(&bad, 0);
    put_str(&bad, "x.in_sum2");
    put_u32(&bad, 5);
    for (int i = 0; i < 8; i++) /* the dimensions the count promises */
        put_u64(&bad, 1);
    mq_gguf g;
    assert_int_equal(mq_gguf_parse(bad.b, bad.n, "d.gguf", &g), MQ_STATUS_E_FORMAT);
    assert_non_null(strstr(mq_last_error(), "x.in_sum2"));
    free(bad.b);
}

static void test_load_errors(void **state)
{
    (void)state;
    static const float counts_bad[1] = {-1.0f}, sums_nan[4] = {1.0f, NAN, 1.0f, 1.0f};
    const tdesc unknown[] = {{"blk.0.ssm_in.weight.in_sum2", 2, {4, 1}, sums_q},
                             {"blk.0.ssm_in.weight.counts", 2, {1, 1}, counts_q}};
    const tdesc no_counts[] = {{"blk.0.attn_q.weight.in_sum2", 2, {4, 1}, sums_q}};
    const tdesc neg[] = {{"blk.0.attn_q.weight.in_sum2", 2, {4, 1}, sums_q},
                         {"blk.0.attn_q.weight.counts", 2, {1, 1}, counts_bad}};
    const tdesc nan[] = {{"blk.0.attn_q.weight.in_sum2", 2, {4, 1}, sums_nan},
                         {"blk.0.attn_q.weight.counts", 2, {1, 1}, counts_q}};
    const tdesc shape[] = {{"blk.0.attn_q.weight.in_sum2", 2, {4, 1}, sums_q},
                           {"blk.0.attn_q.weight.counts", 2, {1, 2}, sums_q}};
    struct {
        const tdesc *t;
        size_t n;
        const char *word;
    } cases[] = {{unknown, 2, "blk.0.ssm_in.weight"},
                 {no_counts, 1, "counts"},
                 {neg, 2, "count 0"},
                 {nan, 2, "value 1"},
                 {shape, 2, "shape"},
                 {NULL, 0, "no entries"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf b = make_gguf(cases[i].t, cases[i].n, 32);
        assert_null(load_bytes(&b, "bad.gguf", MQ_STATUS_E_FORMAT));
        if (!strstr(mq_last_error(), cases[i].word))
            fail_msg("case %zu: '%s' lacks '%s'", i, mq_last_error(), cases[i].word);
        free(b.b);
    }
    /* The legacy layout: a count beyond the file, a name beyond it. */
    buf d = {0};
    put_u32(&d, 1);
    put_u32(&d, 1000);
    put(&d, "blk.0", 5);
    assert_null(load_bytes(&d, "bad.dat", MQ_STATUS_E_FORMAT));
    assert_non_null(strstr(mq_last_error(), "entry 0"));
    free(d.b);
}

static void test_legacy(void **state)
{
    (void)state;
    buf d = {0};
    put_u32(&d, 2);
    put_u32(&d, 19);
    put(&d, "blk.3.ffn_down.weight", 19); /* cut: "blk.3.ffn_down.weig" is unknown */
    put_u32(&d, 4);
    put_u32(&d, 2);
    put_f32(&d, 8.0f);
    put_f32(&d, 4.0f);
    put_u32(&d, 21);
    put(&d, "blk.3.ffn_down.weight", 21);
    put_u32(&d, 4);
    put_u32(&d, 2);
    put_f32(&d, 8.0f);
    put_f32(&d, 4.0f);
    assert_null(load_bytes(&d, "cut.dat", MQ_STATUS_E_FORMAT));
    assert_non_null(strstr(mq_last_error(), "blk.3.ffn_down.weig"));
    free(d.b);

    buf ok = {0};
    put_u32(&ok, 1);
    put_u32(&ok, 21);
    put(&ok, "blk.3.ffn_down.weight", 21);
    put_u32(&ok, 4); /* ncall: values are the mean times 4 */
    put_u32(&ok, 2);
    put_f32(&ok, 8.0f);
    put_f32(&ok, 4.0f);
    put_u32(&ok, 10); /* the last call and the dataset's name follow */
    put_u32(&ok, 3);
    put(&ok, "a.t", 3);
    mq_imatrix *im = load_bytes(&ok, "ok.dat", MQ_OK);
    const float *imp;
    assert_int_equal(mq_imatrix_find(im, "model.layers.3.mlp.down_proj.weight", 2, &imp), MQ_OK);
    assert_non_null(imp);
    assert_true(imp[0] == 2.0f && imp[1] == 1.0f);
    mq_imatrix_free(im);
    free(ok.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_gguf_entries),
        cmocka_unit_test(test_gguf_truncated_and_corrupt),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_legacy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
