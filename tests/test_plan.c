/* The planner: default decisions on llama-, BERT-, GPT-2- and conv-style
 * tensor names, include/exclude precedence, glob and regex patterns, fp16
 * mode, and the reason strings a user reads. */
#include "testutil.h"

#include "error.h"
#include "fused.h"
#include "plan.h"
#include "timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define RANK(...) ((int)(sizeof SHAPE(__VA_ARGS__) / sizeof(int64_t)))

static char reason[256];

/* Decides with the reason buffer above; rank taken from the shape literal. */
#define DECIDE(p, name, dt, ...)                                                                   \
    mq_planner_decide((p), (name), (dt), RANK(__VA_ARGS__), SHAPE(__VA_ARGS__), reason,            \
                      sizeof reason)

static void assert_skip(mq_action a, const char *expect_in_reason)
{
    assert_int_equal(a, MQ_ACTION_SKIP);
    if (!strstr(reason, expect_in_reason))
        fail_msg("reason '%s' lacks '%s'", reason, expect_in_reason);
}

/* mq_planner_new with the settings of cfg, as the quantizers build them. */
static mq_status planner_new_cfg(const mq_config *cfg, mq_planner **out)
{
    mq_settings set;
    mq_status st = mq_settings_init(&set, cfg);
    return st == MQ_OK ? mq_planner_new(&set, out) : st;
}

static mq_planner *planner_with(mq_qdtype dt, const char *const *inc, size_t n_inc,
                                const char *const *exc, size_t n_exc)
{
    mq_config cfg;
    mq_planner *p = NULL;

    mq_config_init(&cfg);
    cfg.dtype = dt;
    for (size_t i = 0; i < n_inc; i++)
        assert_int_equal(mq_config_add_include(&cfg, inc[i]), MQ_OK);
    for (size_t i = 0; i < n_exc; i++)
        assert_int_equal(mq_config_add_exclude(&cfg, exc[i]), MQ_OK);
    assert_int_equal(planner_new_cfg(&cfg, &p), MQ_OK);
    /* The planner must not keep pointers into the config. */
    mq_config_free(&cfg);
    return p;
}

static mq_planner *default_planner(void)
{
    return planner_with(MQ_QINT8, NULL, 0, NULL, 0);
}

static void test_llama_defaults(void **state)
{
    (void)state;
    mq_planner *p = default_planner();

    strcpy(reason, "stale");
    assert_int_equal(DECIDE(p, "model.layers.0.self_attn.q_proj.weight", MQ_DTYPE_F32, 64, 64),
                     MQ_ACTION_QUANTIZE);
    assert_string_equal(reason, "");
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.down_proj.weight", MQ_DTYPE_BF16, 64, 172),
                     MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.gate_proj.weight", MQ_DTYPE_F16, 172, 64),
                     MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "model.layers.0.self_attn.q_proj.bias", MQ_DTYPE_F32, 64), "rank 1");
    assert_skip(DECIDE(p, "model.layers.0.input_layernorm.weight", MQ_DTYPE_BF16, 64), "rank 1");
    assert_skip(DECIDE(p, "model.norm.weight", MQ_DTYPE_F32, 64), "rank 1");
    assert_skip(DECIDE(p, "model.embed_tokens.weight", MQ_DTYPE_BF16, 32000, 64), "embedding");
    assert_skip(DECIDE(p, "lm_head.weight", MQ_DTYPE_BF16, 32000, 64), "lm_head");
    assert_skip(DECIDE(p, "model.layers.0.self_attn.rotary_emb.inv_freq", MQ_DTYPE_F32, 32),
                "rank 1");
    mq_planner_free(p);
}

static void test_bert_gpt2_defaults(void **state)
{
    (void)state;
    mq_planner *p = default_planner();

    assert_int_equal(
        DECIDE(p, "bert.encoder.layer.0.attention.self.query.weight", MQ_DTYPE_F32, 768, 768),
        MQ_ACTION_QUANTIZE);
    assert_int_equal(
        DECIDE(p, "bert.encoder.layer.11.output.dense.weight", MQ_DTYPE_F32, 768, 3072),
        MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "bert.embeddings.word_embeddings.weight", MQ_DTYPE_F32, 30522, 768),
                "embedding");
    assert_skip(DECIDE(p, "bert.embeddings.position_embeddings.weight", MQ_DTYPE_F32, 512, 768),
                "embedding");
    assert_skip(DECIDE(p, "bert.embeddings.token_type_embeddings.weight", MQ_DTYPE_F32, 2, 768),
                "embedding");
    assert_skip(DECIDE(p, "bert.embeddings.LayerNorm.weight", MQ_DTYPE_F32, 768), "rank 1");
    assert_skip(DECIDE(p, "bert.embeddings.position_ids", MQ_DTYPE_I64, 1, 512), "dtype I64");
    assert_skip(DECIDE(p, "transformer.wte.weight", MQ_DTYPE_F32, 50257, 768), "embedding");
    assert_skip(DECIDE(p, "transformer.wpe.weight", MQ_DTYPE_F32, 1024, 768), "embedding");
    assert_int_equal(DECIDE(p, "transformer.h.0.attn.c_attn.weight", MQ_DTYPE_F32, 768, 2304),
                     MQ_ACTION_QUANTIZE);
    /* GPT-2's causal mask buffer: not float, rank 4. */
    assert_skip(DECIDE(p, "transformer.h.0.attn.bias", MQ_DTYPE_BOOL, 1, 1, 1024, 1024),
                "dtype BOOL");
    mq_planner_free(p);
}

/* In a model directory, MoE routers of every family stay in float, whatever
 * class transformers builds them with (gpt-oss's mlp.router is no nn.Linear:
 * quantized, the output does not load); their experts and a dense MLP's
 * gate_proj are quantized. A single file keeps the name-based defaults. */
static void test_moe_routers(void **state)
{
    (void)state;
    mq_planner *p = default_planner();
    const char *routers[] = {
        "model.layers.0.mlp.router.weight",                     /* gpt-oss */
        "model.layers.0.block_sparse_moe.gate.weight",          /* Mixtral, PhiMoE */
        "model.layers.0.mlp.gate.weight",                       /* Qwen-MoE, DeepSeek, OLMoE */
        "model.layers.0.mlp.shared_expert_gate.weight",         /* Qwen2-MoE, Qwen3-Next */
        "model.layers.0.feed_forward.router.weight",            /* Jamba, Llama 4 */
        "model.layers.0.block_sparse_moe.router.layer.weight",  /* GraniteMoE, JetMoE */
        "transformer.blocks.0.ffn.router.layer.weight",         /* DBRX */
        "encoder.block.1.layer.1.mlp.router.classifier.weight", /* Switch */
        "model.layers.0.mlp.gate.wg.weight",                    /* Hunyuan */
    };
    const mq_plan_hints dir = {.linear_only = true};
    mq_planner_set_hints(p, &dir);
    for (size_t i = 0; i < sizeof routers / sizeof *routers; i++)
        assert_skip(DECIDE(p, routers[i], MQ_DTYPE_BF16, 8, 64), "MoE router");
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.gate_proj.weight", MQ_DTYPE_BF16, 8, 64),
                     MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.experts.3.w1.weight", MQ_DTYPE_BF16, 8, 64),
                     MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.layers.0.self_attn.o_proj.weight", MQ_DTYPE_BF16, 8, 64),
                     MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.forget_gate.proj.weight", MQ_DTYPE_BF16, 8, 64),
                     MQ_ACTION_QUANTIZE);
    const mq_plan_hints file = {.linear_only = false};
    mq_planner_set_hints(p, &file);
    assert_int_equal(DECIDE(p, routers[0], MQ_DTYPE_BF16, 8, 64), MQ_ACTION_QUANTIZE);
    mq_planner_free(p);
}

static void test_conv_ranks(void **state)
{
    (void)state;
    mq_planner *p = default_planner();

    assert_int_equal(DECIDE(p, "conv1d.weight", MQ_DTYPE_F32, 16, 8, 3), MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "features.0.weight", MQ_DTYPE_F32, 64, 3, 7, 7), MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "conv3d.weight", MQ_DTYPE_F16, 8, 4, 3, 3, 3), MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "odd.weight", MQ_DTYPE_F32, 2, 2, 2, 2, 2, 2), "rank 6");
    assert_skip(DECIDE(p, "odd.weight", MQ_DTYPE_F32, 2, 2, 2, 2, 2, 2), "neither Linear");
    assert_skip(DECIDE(p, "odd8.weight", MQ_DTYPE_F32, 1, 1, 1, 1, 1, 1, 1, 1), "rank 8");
    mq_planner_free(p);
}

static void test_dtypes_and_shapes(void **state)
{
    (void)state;
    mq_planner *p = default_planner();

    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F64, 4, 4), "F64 is not supported for int8");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_I8, 4, 4), "dtype I8 is not a float type");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_I32, 4, 4), "dtype I32");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F8_E4M3, 4, 4), "dtype F8_E4M3");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F32, 0, 16), "empty tensor");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F32, 16, 0, 3, 3), "empty tensor");
    /* Empty is reported before rank: a [0] bias is empty first. */
    assert_skip(DECIDE(p, "a.bias", MQ_DTYPE_F32, 0), "empty tensor");
    assert_skip(mq_planner_decide(p, "scale", MQ_DTYPE_F32, 0, NULL, reason, sizeof reason),
                "rank 0");
    /* Only names ending in "weight" are weights. */
    assert_skip(DECIDE(p, "foo.weight_scale", MQ_DTYPE_F32, 4, 1), "not a weight");
    assert_skip(DECIDE(p, "foo.weight_zero_point", MQ_DTYPE_F32, 4, 1), "not a weight");
    assert_skip(DECIDE(p, "model.buffers.table", MQ_DTYPE_F32, 4, 4), "not a weight");
    mq_planner_free(p);
}

static void test_include_forces_defaults(void **state)
{
    (void)state;
    const char *inc[] = {"lm_head.weight", "re:.*embed_tokens.*", "*.weight_scale"};
    mq_planner *p = planner_with(MQ_QINT8, inc, 3, NULL, 0);

    assert_int_equal(DECIDE(p, "lm_head.weight", MQ_DTYPE_BF16, 100, 8), MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.embed_tokens.weight", MQ_DTYPE_BF16, 100, 8),
                     MQ_ACTION_QUANTIZE);
    /* No pattern selects a quantization parameter. */
    assert_skip(DECIDE(p, "x.weight_scale", MQ_DTYPE_F32, 8, 8), "quantization parameter");
    /* Include adds; what it does not name keeps the defaults. */
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.up_proj.weight", MQ_DTYPE_BF16, 8, 8),
                     MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "transformer.wte.weight", MQ_DTYPE_F32, 100, 8), "embedding");
    assert_skip(DECIDE(p, "model.lm_head.weight", MQ_DTYPE_F32, 100, 8), "lm_head");
    mq_planner_free(p);
}

static void test_include_keeps_structural_checks(void **state)
{
    (void)state;
    const char *inc[] = {"*"};
    mq_planner *p = planner_with(MQ_QINT8, inc, 1, NULL, 0);

    assert_skip(DECIDE(p, "model.layers.0.self_attn.q_proj.bias", MQ_DTYPE_F32, 64), "rank 1");
    assert_skip(DECIDE(p, "position_ids", MQ_DTYPE_I64, 1, 512), "dtype I64");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F64, 4, 4), "F64");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F32, 0, 4), "empty tensor");
    assert_skip(DECIDE(p, "a.weight", MQ_DTYPE_F32, 2, 2, 2, 2, 2, 2), "rank 6");
    assert_int_equal(DECIDE(p, "model.embed_tokens.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    mq_planner_free(p);
}

static void test_exclude_wins(void **state)
{
    (void)state;
    const char *inc[] = {"re:.*"};
    const char *exc[] = {"*.q_proj.*", "re:model\\.layers\\.1\\..*"};
    mq_planner *p = planner_with(MQ_QINT8, inc, 1, exc, 2);

    assert_skip(DECIDE(p, "model.layers.0.self_attn.q_proj.weight", MQ_DTYPE_F32, 8, 8),
                "excluded by pattern '*.q_proj.*'");
    assert_skip(DECIDE(p, "model.layers.1.self_attn.k_proj.weight", MQ_DTYPE_F32, 8, 8),
                "excluded by pattern 're:model\\.layers\\.1\\..*'");
    assert_int_equal(DECIDE(p, "model.layers.0.self_attn.k_proj.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    /* Exclude is checked first, so it names itself even for a bias. */
    assert_skip(DECIDE(p, "model.layers.0.self_attn.q_proj.bias", MQ_DTYPE_F32, 8),
                "excluded by pattern");
    mq_planner_free(p);
}

static void test_glob_and_regex(void **state)
{
    (void)state;
    const char *exc[] = {"model.layers.*.mlp.*", "blk.[0-1].*", "re:enc\\.[0-9]+\\.attn\\..*"};
    mq_planner *p = planner_with(MQ_QINT8, NULL, 0, exc, 3);

    /* fnmatch without FNM_PATHNAME: '*' crosses '.'. */
    assert_skip(DECIDE(p, "model.layers.12.mlp.up_proj.weight", MQ_DTYPE_F32, 8, 8),
                "'model.layers.*.mlp.*'");
    assert_int_equal(DECIDE(p, "model.layers.12.self_attn.o_proj.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "blk.1.ffn.weight", MQ_DTYPE_F32, 8, 8), "'blk.[0-1].*'");
    assert_int_equal(DECIDE(p, "blk.2.ffn.weight", MQ_DTYPE_F32, 8, 8), MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "enc.10.attn.out.weight", MQ_DTYPE_F32, 8, 8), "re:enc");
    /* "[0-9]+" is regex syntax: it wants digits there. */
    assert_int_equal(DECIDE(p, "enc.x.attn.out.weight", MQ_DTYPE_F32, 8, 8), MQ_ACTION_QUANTIZE);
    mq_planner_free(p);
}

/* "re:" patterns mean what Python's re.match means, as compressed-tensors
 * matches its ignore lists: anchored at the start, not at the end. */
static void test_regex_anchoring(void **state)
{
    (void)state;
    const char *bare[] = {"re:q_proj"};
    const char *wide[] = {"re:.*q_proj.*"};
    const char *head[] = {"re:.*lm_head"};
    const char *end[] = {"re:.*mlp\\.gate$"};
    mq_planner *p;

    p = planner_with(MQ_QINT8, NULL, 0, bare, 1);
    assert_int_equal(DECIDE(p, "a.q_proj.weight", MQ_DTYPE_F32, 8, 8), MQ_ACTION_QUANTIZE);
    assert_skip(DECIDE(p, "q_proj", MQ_DTYPE_F32, 8, 8), "excluded");
    assert_skip(DECIDE(p, "q_proj_extra.weight", MQ_DTYPE_F32, 8, 8), "excluded");
    mq_planner_free(p);

    p = planner_with(MQ_QINT8, NULL, 0, wide, 1);
    assert_skip(DECIDE(p, "a.q_proj.weight", MQ_DTYPE_F32, 8, 8), "excluded");
    mq_planner_free(p);

    /* compressed-tensors' ignore entries, and module names in general. */
    p = planner_with(MQ_QINT8, head, 1, NULL, 0);
    assert_int_equal(DECIDE(p, "lm_head", MQ_DTYPE_F32, 8, 8), MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.lm_head", MQ_DTYPE_F32, 8, 8), MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "lm_head.weight", MQ_DTYPE_F32, 8, 8), MQ_ACTION_QUANTIZE);
    /* re.match needs no match to the end. */
    assert_int_equal(DECIDE(p, "model.lm_head_extra.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    mq_planner_free(p);

    /* "$" anchors the end: the gate module, not gate_proj. */
    p = planner_with(MQ_QINT8, NULL, 0, end, 1);
    assert_skip(DECIDE(p, "model.layers.1.mlp.gate.weight", MQ_DTYPE_F32, 8, 8), "excluded");
    assert_int_equal(DECIDE(p, "model.layers.1.mlp.gate_proj.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    mq_planner_free(p);
}

/* Matching is bounded: a pattern with nested repetition on a long name is a
 * clear error, quickly, not a hang; a plain one on a long name still works. */
static void test_regex_bounded(void **state)
{
    (void)state;
    const char *nested[] = {"re:(a+)+$"};
    const char *gate[] = {"re:.*mlp.gate$"};
    size_t n = 100000;
    char *name = malloc(n + 16);
    char why[256];
    assert_non_null(name);
    memset(name, 'a', n);
    strcpy(name + n, "b.weight");
    mq_planner *p = planner_with(MQ_QINT8, NULL, 0, nested, 1);
    double t0 = mq_now_s();
    assert_int_equal(mq_planner_decide(p, name, MQ_DTYPE_F32, 2, SHAPE(4, 4), why, sizeof why),
                     MQ_ACTION_QUANTIZE);
    assert_int_equal(mq_planner_error(p), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "(a+)+$"));
    assert_true(mq_now_s() - t0 < 5.0);
    mq_planner_free(p);

    p = planner_with(MQ_QINT8, NULL, 0, gate, 1);
    t0 = mq_now_s();
    (void)mq_planner_decide(p, name, MQ_DTYPE_F32, 2, SHAPE(4, 4), why, sizeof why);
    assert_true(mq_now_s() - t0 < 5.0);
    mq_status err = mq_planner_error(p);
    assert_true(err == MQ_OK || err == MQ_STATUS_E_CONFIG);
    mq_planner_free(p);
    p = planner_with(MQ_QINT8, NULL, 0, gate, 1);
    assert_skip(DECIDE(p, "model.layers.2.mlp.gate.weight", MQ_DTYPE_F32, 8, 8), "excluded");
    assert_int_equal(mq_planner_error(p), MQ_OK);
    mq_planner_free(p);
    free(name);
}

static void test_module_name_match(void **state)
{
    (void)state;
    const char *exc[] = {"model.layers.0.mlp.down_proj", "re:.*mlp\\.gate$"};
    mq_planner *p = planner_with(MQ_QINT8, NULL, 0, exc, 2);

    assert_skip(DECIDE(p, "model.layers.0.mlp.down_proj.weight", MQ_DTYPE_F32, 8, 8), "excluded");
    assert_skip(DECIDE(p, "model.layers.3.mlp.gate.weight", MQ_DTYPE_F32, 8, 8), "excluded");
    /* Only the last component is dropped: a layer prefix is no module name. */
    assert_int_equal(DECIDE(p, "model.layers.0.mlp.down_proj.sub.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    assert_int_equal(DECIDE(p, "model.layers.3.mlp.gate_proj.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_QUANTIZE);
    mq_planner_free(p);
}

static void test_bad_patterns(void **state)
{
    (void)state;
    char *bad_re[] = {"*.ok", "re:model.(layers"};
    char *empty[] = {""};
    char *empty_re[] = {"re:"};
    mq_config cfg;
    mq_planner *p = (mq_planner *)&cfg; /* must be reset to NULL on failure */

    /* Patterns put in the struct directly bypass mq_config_add_*: the planner checks too. */
    mq_config_init(&cfg);
    cfg.exclude = bad_re;
    cfg.n_exclude = 2;
    mq_clear_error();
    assert_int_equal(planner_new_cfg(&cfg, &p), MQ_STATUS_E_CONFIG);
    assert_null(p);
    assert_non_null(strstr(mq_last_error(), "pattern 're:model.(layers'"));
    /* regerror's text follows the pattern. */
    assert_true(strlen(mq_last_error()) > strlen("pattern 're:model.(layers': "));

    mq_config_init(&cfg);
    cfg.include = empty;
    cfg.n_include = 1;
    assert_int_equal(planner_new_cfg(&cfg, &p), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "empty pattern"));

    mq_config_init(&cfg);
    cfg.include = empty_re;
    cfg.n_include = 1;
    assert_int_equal(planner_new_cfg(&cfg, &p), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "'re:'"));

    assert_int_equal(mq_planner_new(NULL, &p), MQ_STATUS_E_INVALID_ARG);
    mq_config_init(&cfg);
    assert_int_equal(planner_new_cfg(&cfg, NULL), MQ_STATUS_E_INVALID_ARG);
    mq_planner_free(NULL);
}

static void test_pattern_valid(void **state)
{
    (void)state;
    assert_true(mq_pattern_valid("*.weight"));
    assert_true(mq_pattern_valid("[")); /* fnmatch treats an unclosed '[' literally */
    assert_true(mq_pattern_valid("re:.*lm_head"));
    assert_true(mq_pattern_valid("re:a|b"));
    assert_false(mq_pattern_valid(""));
    assert_false(mq_pattern_valid(NULL));
    assert_false(mq_pattern_valid("re:"));
    assert_false(mq_pattern_valid("re:("));
    assert_false(mq_pattern_valid("re:*x"));
    /* Python's re syntax: an unbalanced ')' is an error, "a{" a literal. */
    assert_false(mq_pattern_valid("re:a)|b"));
    assert_true(mq_pattern_valid("re:a{"));

    /* A query leaves the last error alone; a check sets it. */
    mq_set_error(MQ_STATUS_E_IO, "earlier");
    assert_false(mq_pattern_valid("re:("));
    assert_string_equal(mq_last_error(), "earlier");
    assert_int_equal(mq_pattern_check("re:("), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "pattern 're:('"));
    assert_int_equal(mq_pattern_check("*.weight"), MQ_OK);
}

static void test_fp16_mode(void **state)
{
    (void)state;
    const char *exc[] = {"*norm*"};
    mq_planner *p = planner_with(MQ_FLOAT16, NULL, 0, exc, 1);

    strcpy(reason, "stale");
    assert_int_equal(DECIDE(p, "model.layers.0.self_attn.q_proj.weight", MQ_DTYPE_F32, 8, 8),
                     MQ_ACTION_CAST);
    assert_string_equal(reason, "");
    /* No name or rank defaults in fp16 mode: every float tensor shrinks. */
    assert_int_equal(DECIDE(p, "model.layers.0.self_attn.q_proj.bias", MQ_DTYPE_F32, 8),
                     MQ_ACTION_CAST);
    assert_int_equal(DECIDE(p, "model.embed_tokens.weight", MQ_DTYPE_BF16, 8, 8), MQ_ACTION_CAST);
    assert_int_equal(DECIDE(p, "lm_head.weight", MQ_DTYPE_F64, 8, 8), MQ_ACTION_CAST);
    assert_int_equal(DECIDE(p, "odd", MQ_DTYPE_F32, 2, 2, 2, 2, 2, 2), MQ_ACTION_CAST);
    assert_int_equal(DECIDE(p, "empty.weight", MQ_DTYPE_F32, 0, 8), MQ_ACTION_CAST);
    assert_int_equal(mq_planner_decide(p, "s", MQ_DTYPE_F32, 0, NULL, reason, sizeof reason),
                     MQ_ACTION_CAST);
    assert_skip(DECIDE(p, "half.weight", MQ_DTYPE_F16, 8, 8), "already F16");
    assert_skip(DECIDE(p, "position_ids", MQ_DTYPE_I64, 1, 8), "dtype I64 is not a float type");
    assert_skip(DECIDE(p, "mask", MQ_DTYPE_BOOL, 8), "dtype BOOL");
    assert_skip(DECIDE(p, "f8.weight", MQ_DTYPE_F8_E5M2, 8, 8), "dtype F8_E5M2");
    assert_skip(DECIDE(p, "model.norm.weight", MQ_DTYPE_F32, 8), "excluded by pattern '*norm*'");
    mq_planner_free(p);
}

static void test_reason_buffer(void **state)
{
    (void)state;
    mq_planner *p = default_planner();
    char small[8];
    char one[1] = {'x'};

    memset(small, 'x', sizeof small);
    assert_int_equal(mq_planner_decide(p, "b", MQ_DTYPE_F32, 1, SHAPE(4), small, sizeof small),
                     MQ_ACTION_SKIP);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, "rank 1 ", 7);
    assert_int_equal(mq_planner_decide(p, "b", MQ_DTYPE_F32, 1, SHAPE(4), one, sizeof one),
                     MQ_ACTION_SKIP);
    assert_int_equal(one[0], '\0');
    assert_int_equal(mq_planner_decide(p, "b", MQ_DTYPE_F32, 1, SHAPE(4), NULL, 0), MQ_ACTION_SKIP);
    assert_int_equal(mq_planner_decide(p, "a.weight", MQ_DTYPE_F32, 2, SHAPE(4, 4), NULL, 0),
                     MQ_ACTION_QUANTIZE);
    /* The full reason fits in the 256 bytes the quantizer gives. */
    assert_skip(DECIDE(p, "lm_head.weight", MQ_DTYPE_F32, 8, 8),
                "lm_head (kept in float by default, as llm-compressor's ignore)");
    mq_planner_free(p);
}

/* NVFP4's fused sets by name: q/k/v under an attention prefix, gate/up under
 * an MLP, w1/w3 anywhere; each set's amax is its members' largest, other
 * weights keep their own. */
static void test_fused_sets(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t prefix; /* 0: in no set */
    } names[] = {
        {"model.layers.0.self_attn.q_proj.weight", 25},
        {"model.layers.0.self_attn.v_proj.weight", 25},
        {"model.layers.0.attention.k_proj.weight", 25},
        {"model.layers.0.mlp.gate_proj.weight", 19},
        {"model.layers.0.mlp.up_proj.weight", 19},
        {"model.layers.0.block_sparse_moe.experts.3.w1.weight", 42},
        {"model.layers.0.self_attn.wq_a.weight", 25},
        {"model.layers.0.self_attn.o_proj.weight", 0},
        {"model.layers.0.mlp.down_proj.weight", 0},
        {"model.layers.0.experts.3.w2.weight", 0},
        {"model.layers.0.q_proj.weight", 0}, /* no attention prefix */
        {"model.layers.0.self_attn.q_proj.bias", 0},
        {"w1.weight", 0},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char kind = 0;
        size_t got = mq_fused_key(names[i].name, &kind);
        if (got != names[i].prefix)
            fail_msg("%s: prefix %zu, want %zu", names[i].name, got, names[i].prefix);
    }
    mq_fused *f = mq_fused_new();
    assert_non_null(f);
    assert_int_equal(mq_fused_add(f, "a.self_attn.q_proj.weight", 2.0f), MQ_OK);
    assert_int_equal(mq_fused_add(f, "a.self_attn.k_proj.weight", 5.0f), MQ_OK);
    assert_int_equal(mq_fused_add(f, "b.self_attn.q_proj.weight", 1.0f), MQ_OK);
    assert_int_equal(mq_fused_add(f, "a.mlp.gate_proj.weight", 3.0f), MQ_OK);
    assert_int_equal(mq_fused_add(f, "a.self_attn.o_proj.weight", 9.0f), MQ_OK);
    float amax = 0.5f;
    bool known = true;
    assert_int_equal(mq_fused_amax(f, "a.self_attn.v_proj.weight", &amax, &known), MQ_OK);
    assert_true(amax == 5.0f); /* the set's, though v itself was not added */
    assert_false(known);
    amax = 0.5f;
    assert_int_equal(mq_fused_amax(f, "b.self_attn.k_proj.weight", &amax, NULL), MQ_OK);
    assert_true(amax == 1.0f);
    amax = 0.5f;
    assert_int_equal(mq_fused_amax(f, "a.mlp.up_proj.weight", &amax, NULL), MQ_OK);
    assert_true(amax == 3.0f);
    amax = 0.5f;
    assert_int_equal(mq_fused_amax(f, "a.self_attn.q_proj.weight", &amax, &known), MQ_OK);
    assert_true(amax == 5.0f && known); /* its own 2 raised to its set's */
    amax = 0.5f;
    assert_int_equal(mq_fused_amax(f, "a.self_attn.o_proj.weight", &amax, &known), MQ_OK);
    assert_true(amax == 9.0f && known); /* in no set: its own, as recorded */
    amax = 0.5f;
    assert_int_equal(mq_fused_amax(f, "c.mlp.down_proj.weight", &amax, &known), MQ_OK);
    assert_true(amax == 0.5f && !known); /* never seen: as it was */
    /* Many sets and weights (the table grows). */
    for (int i = 0; i < 3000; i++) {
        char n[64];
        snprintf(n, sizeof n, "m.%d.self_attn.%c_proj.weight", i / 3, "qkv"[i % 3]);
        assert_int_equal(mq_fused_add(f, n, (float)i), MQ_OK);
    }
    amax = 0.0f;
    assert_int_equal(mq_fused_amax(f, "m.500.self_attn.q_proj.weight", &amax, &known), MQ_OK);
    assert_true(amax == 1502.0f && known);
    mq_fused_free(f);
    mq_fused_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_defaults),
        cmocka_unit_test(test_bert_gpt2_defaults),
        cmocka_unit_test(test_moe_routers),
        cmocka_unit_test(test_conv_ranks),
        cmocka_unit_test(test_dtypes_and_shapes),
        cmocka_unit_test(test_include_forces_defaults),
        cmocka_unit_test(test_include_keeps_structural_checks),
        cmocka_unit_test(test_exclude_wins),
        cmocka_unit_test(test_glob_and_regex),
        cmocka_unit_test(test_regex_anchoring),
        cmocka_unit_test(test_regex_bounded),
        cmocka_unit_test(test_module_name_match),
        cmocka_unit_test(test_bad_patterns),
        cmocka_unit_test(test_pattern_valid),
        cmocka_unit_test(test_fp16_mode),
        cmocka_unit_test(test_reason_buffer),
        cmocka_unit_test(test_fused_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
