/* The module renames of transformers' checkpoint conversion mappings
 * (hfrenames_table.c): every regex of the generated table compiles, and the
 * renames of a few families give the names transformers builds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hfrenames.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

static void test_table_compiles(void **state)
{
    (void)state;
    size_t n = 0;
    assert_true(mq_hf_rename_set_count > 100);
    for (size_t i = 0; i < mq_hf_rename_set_count; i++) {
        const mq_hf_rename_set *s = &mq_hf_rename_sets[i];
        for (int j = 0; j < s->n_rules; j++) {
            int code;
            PCRE2_SIZE at;
            pcre2_code *re = pcre2_compile((PCRE2_SPTR)s->rules[j].regex, PCRE2_ZERO_TERMINATED, 0,
                                           &code, &at, NULL);
            if (!re) fail_msg("set %s: regex %s does not compile", s->name, s->rules[j].regex);
            pcre2_code_free(re);
            assert_true(s->rules[j].n_targets >= 1);
            n++;
        }
    }
    assert_true(n > 1000);
}

/* The names built for `name` under a config.json of `arch` and `type`,
 * joined by spaces. */
static char *built(const char *arch, const char *type, const char *name)
{
    static char buf[1024];
    json_t *cfg = json_pack("{s:[s], s:s}", "architectures", arch, "model_type", type);
    json_t *out = json_array();
    mq_hf_renames *r = NULL;
    size_t i;
    json_t *v;
    assert_non_null(cfg);
    assert_int_equal(mq_hf_renames_new(cfg, &r), MQ_OK);
    assert_int_equal(mq_hf_renames_apply(r, name, out), MQ_OK);
    buf[0] = '\0';
    json_array_foreach(out, i, v)
    {
        if (i) strcat(buf, " ");
        strcat(buf, json_string_value(v));
    }
    mq_hf_renames_free(r);
    json_decref(out);
    json_decref(cfg);
    return buf;
}

static void test_vit(void **state)
{
    (void)state;
    const char *a = "ViTForImageClassification";
    /* The base model's renames, under its prefix "vit"; chained in order, so
     * attention.output.dense is taken before output.dense. */
    assert_string_equal(built(a, "vit", "vit.encoder.layer.3.output.dense.weight"),
                        "vit.layers.3.mlp.fc2.weight");
    assert_string_equal(built(a, "vit", "vit.encoder.layer.0.attention.output.dense.weight"),
                        "vit.layers.0.attention.o_proj.weight");
    assert_string_equal(built(a, "vit", "vit.encoder.layer.1.attention.attention.query.weight"),
                        "vit.layers.1.attention.q_proj.weight");
    assert_string_equal(built(a, "vit", "classifier.weight"), "classifier.weight");
    /* The base model saved on its own: unscoped. */
    assert_string_equal(built("ViTModel", "vit", "encoder.layer.2.intermediate.dense.weight"),
                        "layers.2.mlp.fc1.weight");
}

static void test_other_families(void **state)
{
    (void)state;
    /* Mixtral's routers are built under mlp. */
    assert_string_equal(
        built("MixtralForCausalLM", "mixtral", "model.layers.1.block_sparse_moe.gate.weight"),
        "model.layers.1.mlp.gate.weight");
    /* No mapping: the name itself. */
    assert_string_equal(built("LlamaForCausalLM", "llama", "model.layers.0.mlp.down_proj.weight"),
                        "model.layers.0.mlp.down_proj.weight");
    assert_string_equal(built("Unknown", "unknown", "a.b.weight"), "a.b.weight");
    /* A converter that splits one checkpoint tensor into two modules. */
    assert_string_equal(built("Dinov2Backbone", "dinov2", "encoder.layer.0.mlp.weights_in.weight"),
                        "encoder.layer.0.mlp.gate_proj.weight encoder.layer.0.mlp.up_proj.weight");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_compiles),
        cmocka_unit_test(test_vit),
        cmocka_unit_test(test_other_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
