/* A scheme that quantizes none of a model's Linear layers, or under half of
 * them, says so on stderr and in the report, with the reason and the setting
 * that would fit; a run that quantizes most of them says nothing. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A llama-shaped model directory whose three MLP layers are [rows, cols]
 * and whose lm_head is [32, cols]. */
static char *model_dir(int64_t rows, int64_t cols)
{
    char *dir = tu_mkdtemp();
    static const char *const names[] = {"model.layers.0.mlp.down_proj.weight",
                                        "model.layers.0.mlp.gate_proj.weight",
                                        "model.layers.0.mlp.up_proj.weight", "lm_head.weight"};
    char header[2048];
    size_t off = 0, n_all = 0;
    int len = snprintf(header, sizeof header, "{");
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)(i == 3 ? 32 : rows) * (size_t)cols;
        len += snprintf(header + len, sizeof header - (size_t)len,
                        "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],"
                        "\"data_offsets\":[%zu,%zu]}",
                        i ? "," : "", names[i], (long long)(i == 3 ? 32 : rows), (long long)cols,
                        off * 4, (off + n) * 4);
        off += n;
    }
    snprintf(header + len, sizeof header - (size_t)len, "}");
    n_all = off;
    float *data = malloc(n_all * sizeof *data);
    assert_non_null(data);
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    for (size_t i = 0; i < n_all; i++)
        data[i] = tu_rng_f32(&rng);
    char *st = tu_join(dir, "model.safetensors"), *cfg = tu_join(dir, "config.json");
    assert_true(tu_write_st(st, header, data, n_all * sizeof *data));
    const char *config = "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}";
    assert_true(tu_write_file(cfg, config, strlen(config)));
    free(st);
    free(cfg);
    free(data);
    return dir;
}

/* Quantizes `dir` with `flags`; returns the CLI's output and the report's
 * coverage object (a new reference). */
static json_t *run(const char *dir, const char *flags, char **text)
{
    char *tmp = tu_mkdtemp();
    char *out = tu_join(tmp, "out"), *rep = tu_join(tmp, "report.json");
    int rc =
        tu_run_cli(text, "quantize %s -o %s -q --device host --report %s %s", dir, out, rep, flags);
    if (rc != 0) fail_msg("quantize %s: exit %d: %s", flags, rc, *text);
    json_t *j = json_load_file(rep, 0, NULL);
    assert_non_null(j);
    json_t *c = json_incref(json_object_get(j, "coverage"));
    assert_non_null(c);
    json_decref(j);
    tu_rmtree(tmp);
    free(out);
    free(rep);
    free(tmp);
    return c;
}

static void expect_warning(json_t *c, const char *text, const char *const *parts, size_t n)
{
    const char *w = json_string_value(json_object_get(c, "warning"));
    assert_non_null(w);
    for (size_t i = 0; i < n; i++) {
        if (!strstr(w, parts[i])) fail_msg("report warning '%s' lacks '%s'", w, parts[i]);
        if (!strstr(text, parts[i])) fail_msg("stderr '%s' lacks '%s'", text, parts[i]);
    }
    assert_non_null(strstr(text, "monoquant: warning: "));
}

/* Hidden size 576 (SmolLM2-135M's): no 128x128 block fits, so FP8_BLOCK
 * keeps every layer in float; FP8_DYNAMIC fits them. */
static void test_fp8_block_nothing(void **state)
{
    (void)state;
    char *dir = model_dir(1536, 576), *text = NULL;
    json_t *c = run(dir, "--preset FP8_BLOCK", &text);
    assert_int_equal(json_integer_value(json_object_get(c, "linear_layers")), 4);
    assert_int_equal(json_integer_value(json_object_get(c, "quantized")), 0);
    const char *parts[] = {"preset FP8_BLOCK quantized 0 of 4 Linear layers",
                           "partial 128x128 blocks", "FP8_DYNAMIC"};
    expect_warning(c, text, parts, 3);
    json_decref(c);
    free(text);

    /* The preset it names quantizes them, and says nothing. */
    c = run(dir, "--preset FP8_DYNAMIC", &text);
    assert_int_equal(json_integer_value(json_object_get(c, "quantized")), 3);
    assert_true(json_is_null(json_object_get(c, "warning")));
    assert_null(strstr(text, "warning"));
    json_decref(c);
    free(text);
    tu_rmtree(dir);
    free(dir);
}

/* Groups of 128 on in-features 192: a group size of 64 divides every layer;
 * on in-features 100 none of a multiple of 8 does, so one scale per channel. */
static void test_groups_suggest_size(void **state)
{
    (void)state;
    char *dir = model_dir(256, 192), *text = NULL;
    json_t *c = run(dir, "--preset W4A16", &text);
    assert_int_equal(json_integer_value(json_object_get(c, "quantized")), 0);
    const char *parts[] = {"preset W4A16 quantized 0 of 4", "not a multiple of the group size 128",
                           "W4A16 with --group-size 64"};
    expect_warning(c, text, parts, 3);
    json_decref(c);
    free(text);
    c = run(dir, "--preset W4A16 --group-size 64", &text);
    assert_int_equal(json_integer_value(json_object_get(c, "quantized")), 3);
    assert_true(json_is_null(json_object_get(c, "warning")));
    json_decref(c);
    free(text);
    tu_rmtree(dir);
    free(dir);

    dir = model_dir(256, 100);
    c = run(dir, "--preset W8A16", &text);
    const char *chan[] = {"preset W8A16 quantized 0 of 4", "--group-size channel"};
    expect_warning(c, text, chan, 2);
    json_decref(c);
    free(text);
    tu_rmtree(dir);
    free(dir);
}

/* Three of four Linear layers quantized (lm_head kept): no warning. */
static void test_most_quantized_quiet(void **state)
{
    (void)state;
    char *dir = model_dir(256, 256), *text = NULL;
    json_t *c = run(dir, "--preset FP8_BLOCK", &text);
    assert_int_equal(json_integer_value(json_object_get(c, "linear_layers")), 4);
    assert_int_equal(json_integer_value(json_object_get(c, "quantized")), 3);
    assert_true(json_is_null(json_object_get(c, "warning")));
    assert_null(strstr(text, "warning"));
    json_decref(c);
    free(text);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp8_block_nothing),
        cmocka_unit_test(test_groups_suggest_size),
        cmocka_unit_test(test_most_quantized_quiet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
