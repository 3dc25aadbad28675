/* Quantized sources: checkpoints in a layout that is not read (AutoGPTQ,
 * AutoAWQ, bitsandbytes, an unknown quant_method) are refused before any
 * work, naming the layout and the tensor or file that shows it. */
#include "testutil.h"

#include "model.h"

#include <monoquant.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FLOAT_CONFIG                                                                               \
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"torch_dtype\": "            \
    "\"float32\"%s}"

typedef struct {
    const char *name;
    mq_dtype dtype;
    int64_t rows, cols;
} tspec;

/* Writes the tensors (values from a fixed seed) to `path`. */
static void write_tensors(const char *path, const tspec *t, size_t n)
{
    mq_model *m;
    tu_rng r;
    tu_rng_seed(&r, 7);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    for (size_t i = 0; i < n; i++) {
        size_t bytes = (size_t)(t[i].rows * t[i].cols) * 4;
        float *d = malloc(bytes);
        for (size_t k = 0; k < bytes / 4; k++)
            d[k] = tu_rng_f32(&r) / 8;
        int64_t shape[2] = {t[i].rows, t[i].cols};
        assert_int_equal(mq_model_add_tensor(m, t[i].name, t[i].dtype, 2, shape, d), MQ_OK);
        free(d);
    }
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = tu_join(dir, name);
    assert_true(tu_write_file(p, text, strlen(text)));
    free(p);
}

static const tspec gptq[] = {
    {"model.layers.0.mlp.down_proj.qweight", MQ_DTYPE_I32, 4, 16},
    {"model.layers.0.mlp.down_proj.qzeros", MQ_DTYPE_I32, 1, 2},
    {"model.layers.0.mlp.down_proj.scales", MQ_DTYPE_F16, 1, 16},
    {"model.layers.0.mlp.down_proj.g_idx", MQ_DTYPE_I32, 1, 32},
    {"model.norm.weight", MQ_DTYPE_F32, 1, 8},
    {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
};
static const tspec bnb4[] = {
    {"model.layers.0.mlp.up_proj.weight", MQ_DTYPE_U8, 64, 1},
    {"model.layers.0.mlp.up_proj.weight.absmax", MQ_DTYPE_F32, 1, 2},
    {"model.layers.0.mlp.up_proj.weight.quant_map", MQ_DTYPE_F32, 1, 16},
    {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
};
static const tspec bnb8[] = {
    {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
    {"model.layers.0.mlp.up_proj.weight", MQ_DTYPE_I8, 16, 8},
    {"model.layers.0.mlp.up_proj.SCB", MQ_DTYPE_F32, 1, 16},
};

typedef struct {
    const char *label;
    const tspec *tensors;
    size_t count;
    bool dir;         /* a model directory, else one .safetensors file */
    const char *qc;   /* config.json's extra keys; NULL: no config.json */
    bool gptq_config; /* a quantize_config.json beside it */
    const char *needles[3];
} refusal;

#define N(a) (sizeof a / sizeof *a)

static const refusal refusals[] = {
    {"GPTQ config",
     gptq,
     N(gptq),
     true,
     ", \"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}",
     false,
     {"config.json", "AutoGPTQ", "\"gptq\""}},
    {"AWQ config",
     gptq,
     N(gptq),
     true,
     ", \"quantization_config\": {\"quant_method\": \"awq\"}",
     false,
     {"config.json", "AutoAWQ", NULL}},
    {"native AutoGPTQ", gptq, N(gptq), true, "", true, {"quantize_config.json", "AutoGPTQ", NULL}},
    {"GPTQ tensors, no config",
     gptq,
     N(gptq),
     true,
     NULL,
     false,
     {"model.safetensors", "model.layers.0.mlp.down_proj.qweight", "AutoGPTQ/AutoAWQ"}},
    {"GPTQ tensors in a file",
     gptq,
     N(gptq),
     false,
     NULL,
     false,
     {"model.layers.0.mlp.down_proj.qweight", "AutoGPTQ/AutoAWQ", NULL}},
    {"bitsandbytes 4-bit",
     bnb4,
     N(bnb4),
     false,
     NULL,
     false,
     {"model.layers.0.mlp.up_proj.weight.absmax", "bitsandbytes", NULL}},
    {"bitsandbytes 8-bit",
     bnb8,
     N(bnb8),
     true,
     "",
     false,
     {"model.layers.0.mlp.up_proj.SCB", "bitsandbytes", NULL}},
    {"bitsandbytes config",
     bnb4,
     N(bnb4),
     true,
     ", \"quantization_config\": {\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true}",
     false,
     {"config.json", "bitsandbytes", NULL}},
    {"unknown quant_method",
     bnb8,
     N(bnb8),
     true,
     ", \"quantization_config\": {\"quant_method\": \"zq-7\"}",
     false,
     {"config.json", "not known", "\"zq-7\""}},
    {"no quant_method",
     bnb8,
     N(bnb8),
     true,
     ", \"quantization_config\": {\"bits\": 4}",
     false,
     {"config.json", "no \"quant_method\"", "unknown layout"}},
};

/* The input of case c under `root`: a directory "in" or a file "in.safetensors". */
static char *make_input(const char *root, const refusal *c)
{
    if (!c->dir) {
        char *p = tu_join(root, "in.safetensors");
        write_tensors(p, c->tensors, c->count);
        return p;
    }
    char *in = tu_join(root, "in"), *st = NULL;
    assert_int_equal(mkdir(in, 0755), 0);
    st = tu_join(in, "model.safetensors");
    write_tensors(st, c->tensors, c->count);
    free(st);
    if (c->qc) {
        char cfg[512];
        snprintf(cfg, sizeof cfg, FLOAT_CONFIG, c->qc);
        write_text(in, "config.json", cfg);
    }
    if (c->gptq_config)
        write_text(in, "quantize_config.json", "{\"bits\": 4, \"group_size\": 128}");
    return in;
}

static const char *const runs[] = {"quantize %s -o %s --device host",
                                   "quantize %s -o %s --device host --preset W4A16",
                                   "quantize %s -o %s --device host --dtype fp16"};

static void test_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(refusals); i++) {
        const refusal *c = &refusals[i];
        for (size_t k = 0; k < N(runs); k++) {
            char *root = tu_mkdtemp(), *in = make_input(root, c);
            char *out = tu_join(root, c->dir ? "out" : "out.safetensors"), *text = NULL;
            int rc = tu_run_cli(&text, runs[k], in, out);
            if (rc != 2) fail_msg("%s (%s): exit %d: %s", c->label, runs[k], rc, text);
            for (int n = 0; n < 3 && c->needles[n]; n++)
                if (!strstr(text, c->needles[n]))
                    fail_msg("%s: '%s' not in: %s", c->label, c->needles[n], text);
            assert_non_null(strstr(text, "start from the float model"));
            assert_false(tu_exists(out));
            assert_int_equal(tu_count_entries(root), 1); /* no temporary left */
            free(text);
            tu_rmtree(root);
            free(out);
            free(in);
            free(root);
        }
    }
}

/* dequantize reads our layout only: a GPTQ file is refused, not copied. */
static void test_dequantize_refused(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *in = tu_join(root, "in.safetensors");
    char *out = tu_join(root, "out.safetensors"), *text = NULL;
    write_tensors(in, gptq, N(gptq));
    assert_int_equal(tu_run_cli(&text, "dequantize %s -o %s", in, out), 2);
    assert_non_null(strstr(text, "AutoGPTQ/AutoAWQ"));
    assert_non_null(strstr(text, "down_proj.qweight"));
    assert_false(tu_exists(out));
    free(text);
    tu_rmtree(root);
    free(in);
    free(out);
    free(root);
}

/* "scales" and "g_idx" are ordinary names without GPTQ's packed words beside them. */
static void test_plain_names_kept(void **state)
{
    (void)state;
    static const tspec plain[] = {
        {"model.layers.0.mlp.up_proj.weight", MQ_DTYPE_F32, 16, 8},
        {"model.layers.0.mlp.up_proj.scales", MQ_DTYPE_F32, 1, 16},
        {"model.layers.0.attn.g_idx", MQ_DTYPE_F32, 1, 4},
    };
    char *root = tu_mkdtemp(), *in = tu_join(root, "in.safetensors");
    char *out = tu_join(root, "out.safetensors"), *text = NULL;
    write_tensors(in, plain, N(plain));
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host", in, out);
    if (rc != 0) fail_msg("exit %d: %s", rc, text);
    assert_true(tu_exists(out));
    free(text);
    tu_rmtree(root);
    free(in);
    free(out);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_dequantize_refused),
        cmocka_unit_test(test_plain_names_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
