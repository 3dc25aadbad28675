/* Quantized sources: checkpoints in a layout that is not read (AutoGPTQ,
 * AutoAWQ, bitsandbytes, an unknown quant_method) are refused before any
 * work, naming the layout and the tensor or file that shows it. */
#include "testutil.h"

#include "backend.h"
#include "devset.h"
#include "model.h"
#include "reference.h"
#include "srcref.h"

#include <monoquant.h>

#include <jansson.h>

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
static const tspec mxfp4[] = {
    {"model.layers.0.mlp.experts.down_proj_blocks", MQ_DTYPE_U8, 4, 16},
    {"model.layers.0.mlp.experts.down_proj_scales", MQ_DTYPE_U8, 4, 1},
    {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
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
    {"compressed-tensors format not written by us",
     bnb8,
     N(bnb8),
     true,
     ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "
     "\"naive-quantized\", \"quantization_status\": \"compressed\"}",
     false,
     {"config.json", "already quantized", "\"naive-quantized\""}},
    {"MXFP4 tensors, no config",
     mxfp4,
     N(mxfp4),
     true,
     NULL,
     false,
     {"model.safetensors", "model.layers.0.mlp.experts.down_proj_blocks", "MXFP4"}},
    {"MXFP4 tensors in a file",
     mxfp4,
     N(mxfp4),
     false,
     NULL,
     false,
     {"model.layers.0.mlp.experts.down_proj_blocks", "MXFP4", "\"mxfp4\""}},
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

/* ---- FP8 block sources ---- */

#define FP8_QC                                                                                     \
    ", \"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\", "          \
    "\"quant_method\": \"fp8\", \"weight_block_size\": [4, 4]}"
#define BF16_CONFIG                                                                                \
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"torch_dtype\": "            \
    "\"bfloat16\"%s}"

typedef struct {
    const char *name;
    int64_t rows, cols;
    mq_dtype scale_dt; /* F32 or BF16: an FP8 block weight; else a BF16 tensor */
} srcspec;

/* Partial blocks at the bottom and right edges (10 x 6 in blocks of 4 x 4),
 * whole ones, BF16 scales, a weight W4A16 quantizes in groups, and float
 * tensors the source kept. */
static const srcspec src_tensors[] = {
    {"lm_head.weight", 24, 8, MQ_DTYPE_COUNT_},
    {"model.layers.0.mlp.down_proj.weight", 10, 6, MQ_DTYPE_F32},
    {"model.layers.0.mlp.up_proj.weight", 8, 8, MQ_DTYPE_BF16},
    {"model.layers.0.self_attn.q_proj.weight", 8, 12, MQ_DTYPE_F32},
    /* Groups of 128 (W4A16) three to a row: chunks of groups start mid-row. */
    {"model.layers.0.mlp.gate_proj.weight", 100, 384, MQ_DTYPE_BF16},
    {"model.norm.weight", 1, 8, MQ_DTYPE_COUNT_},
};

/* Rows longer than a slot of --memory-limit 1M (64 KiB: 32768 BF16 values),
 * quantized per channel in the two passes of the split path. */
static const srcspec wide_tensors[] = {
    {"lm_head.weight", 24, 8, MQ_DTYPE_COUNT_},
    {"model.layers.0.mlp.down_proj.weight", 6, 40002, MQ_DTYPE_BF16},
    {"model.layers.0.mlp.up_proj.weight", 10, 6, MQ_DTYPE_F32},
};

/* Two model directories under root: "fp8" (the FP8 block source) and "bf16",
 * the same model with every FP8 weight dequantized by the reference, as the
 * float checkpoint the source stands for. */
static bool g_nan; /* a NaN code in the first FP8 weight */
static bool g_f32; /* the float model holds the FP8 weights dequantized to F32 */
static const srcspec *g_spec = src_tensors; /* the tensors of the pair */
static size_t g_nspec = N(src_tensors);

static void make_fp8_pair(const char *root)
{
    char *fp8 = tu_join(root, "fp8"), *bf = tu_join(root, "bf16");
    mq_model *a, *b;
    tu_rng r;
    tu_rng_seed(&r, 2222);
    assert_int_equal(mkdir(fp8, 0755), 0);
    assert_int_equal(mkdir(bf, 0755), 0);
    assert_int_equal(mq_model_new(&a), MQ_OK);
    assert_int_equal(mq_model_new(&b), MQ_OK);
    for (size_t i = 0; i < g_nspec; i++) {
        const srcspec *t = &g_spec[i];
        size_t n = (size_t)(t->rows * t->cols);
        int64_t shape[2] = {t->rows, t->cols};
        uint16_t *vals = malloc(n * 2);
        if (t->scale_dt == MQ_DTYPE_COUNT_) {
            for (size_t k = 0; k < n; k++)
                vals[k] = mq_f32_to_bf16(tu_rng_f32(&r) / 4);
            assert_int_equal(mq_model_add_tensor(a, t->name, MQ_DTYPE_BF16, 2, shape, vals), MQ_OK);
        } else {
            uint8_t *q = malloc(n);
            int64_t sshape[2] = {(t->rows + 3) / 4, (t->cols + 3) / 4};
            size_t ns = (size_t)(sshape[0] * sshape[1]);
            float *sf = malloc(ns * 4);
            uint16_t *sb = malloc(ns * 2);
            for (size_t k = 0; k < n; k++) {
                q[k] = (uint8_t)(tu_rng_u64(&r) & 0xff);
                if ((q[k] & 0x7f) == 0x7f) q[k] ^= 1; /* no NaN */
            }
            if (g_nan && i == 1) q[n / 2] = 0x7f;
            for (size_t k = 0; k < ns; k++) {
                sf[k] = 1e-3f + (tu_rng_f32(&r) + 1) * 1e-3f;
                sb[k] = mq_f32_to_bf16(sf[k]);
            }
            const void *scale = t->scale_dt == MQ_DTYPE_F32 ? (const void *)sf : (const void *)sb;
            char sname[128];
            snprintf(sname, sizeof sname, "%s_scale_inv", t->name);
            assert_int_equal(mq_model_add_tensor(a, t->name, MQ_DTYPE_F8_E4M3, 2, shape, q), MQ_OK);
            assert_int_equal(mq_model_add_tensor(a, sname, t->scale_dt, 2, sshape, scale), MQ_OK);
            float *f32 = malloc(n * 4);
            mq_ref_fp8_block_dequant(q, 0, n, (size_t)t->cols, 4, 4, scale, t->scale_dt,
                                     MQ_DTYPE_BF16, vals);
            mq_ref_fp8_block_dequant(q, 0, n, (size_t)t->cols, 4, 4, scale, t->scale_dt,
                                     MQ_DTYPE_F32, f32);
            if (g_f32)
                assert_int_equal(mq_model_add_tensor(b, t->name, MQ_DTYPE_F32, 2, shape, f32),
                                 MQ_OK);
            free(f32);
            free(q);
            free(sf);
            free(sb);
        }
        if (!g_f32 || t->scale_dt == MQ_DTYPE_COUNT_)
            assert_int_equal(mq_model_add_tensor(b, t->name, MQ_DTYPE_BF16, 2, shape, vals), MQ_OK);
        free(vals);
    }
    char *pa = tu_join(fp8, "model.safetensors"), *pb = tu_join(bf, "model.safetensors");
    assert_int_equal(mq_model_save(a, pa), MQ_OK);
    assert_int_equal(mq_model_save(b, pb), MQ_OK);
    char cfg[512];
    snprintf(cfg, sizeof cfg, BF16_CONFIG, FP8_QC);
    write_text(fp8, "config.json", cfg);
    snprintf(cfg, sizeof cfg, BF16_CONFIG, "");
    write_text(bf, "config.json", cfg);
    mq_model_free(a);
    mq_model_free(b);
    free(pa);
    free(pb);
    free(fp8);
    free(bf);
}

static void assert_same_bytes(const char *a_dir, const char *b_dir, const char *name,
                              const char *label)
{
    char *a = tu_join(a_dir, name), *b = tu_join(b_dir, name);
    size_t na = 0, nb = 0;
    unsigned char *da = tu_read_file(a, &na), *db = tu_read_file(b, &nb);
    if (!da || !db || na != nb || memcmp(da, db, na) != 0)
        fail_msg("%s: %s differs from the float source's output", label, name);
    free(da);
    free(db);
    free(a);
    free(b);
}

/* Each FP8 weight is dequantized exactly and quantized in the same pass: the
 * output is byte for byte the one of the float model it stands for, for
 * every preset, the cast, and a layer left out (written dequantized); the
 * scales are not written and config.json's quantization_config is ours. */
static void test_fp8_blocks_as_float(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--preset W8A8",
        "--preset W4A16",
        "--preset FP8_DYNAMIC",
        "--preset FP8_BLOCK",
        "--dtype fp16",
        "--preset W8A8 --exclude *down_proj*",
        "--preset W4A16 --memory-limit 64K",
        "--preset W4A16 --observer mse",
        "--preset W8A8 --observer mse --memory-limit 64K",
    };
    for (size_t i = 0; i < N(flags); i++) {
        char *root = tu_mkdtemp(), *text = NULL;
        make_fp8_pair(root);
        char *fp8 = tu_join(root, "fp8"), *bf = tu_join(root, "bf16");
        char *o1 = tu_join(root, "o1"), *o2 = tu_join(root, "o2");
        int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q %s", bf, o2, flags[i]);
        if (rc != 0) fail_msg("%s (float): exit %d: %s", flags[i], rc, text);
        free(text);
        rc = tu_run_cli(&text, "quantize %s -o %s --device host -q %s", fp8, o1, flags[i]);
        if (rc != 0) fail_msg("%s (FP8 blocks): exit %d: %s", flags[i], rc, text);
        free(text);
        assert_same_bytes(o1, o2, "model.safetensors", flags[i]);
        assert_same_bytes(o1, o2, "config.json", flags[i]);
        char *st = tu_join(o1, "model.safetensors");
        mq_model *m = NULL;
        assert_int_equal(mq_model_open(st, &m), MQ_OK);
        for (size_t k = 0; k < mq_model_count(m); k++)
            assert_null(strstr(mq_model_tensor(m, k)->name, "_scale_inv"));
        mq_model_free(m);
        free(st);
        tu_rmtree(root);
        free(fp8);
        free(bf);
        free(o1);
        free(o2);
        free(root);
    }
}

/* Rows longer than a slot: each chunk of codes is dequantized into the
 * staging and fed to the split path's two passes (statistics, then codes),
 * giving the float model's output byte for byte. */
static void test_fp8_blocks_split(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--preset W8A8 --memory-limit 1M",
        "--preset W8A8 --memory-limit 1M --scheme asym",
        "--preset W8A8 --memory-limit 1M --dequant-dtype f32",
    };
    g_spec = wide_tensors;
    g_nspec = N(wide_tensors);
    for (size_t i = 0; i < N(flags); i++) {
        char *root = tu_mkdtemp(), *text = NULL;
        g_f32 = strstr(flags[i], "f32") != NULL;
        make_fp8_pair(root);
        char *fp8 = tu_join(root, "fp8"), *bf = tu_join(root, "bf16");
        char *o1 = tu_join(root, "o1"), *o2 = tu_join(root, "o2");
        const char *fl = g_f32 ? "--preset W8A8 --memory-limit 1M" : flags[i];
        int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q %s", bf, o2, fl);
        if (rc != 0) fail_msg("%s (float): exit %d: %s", flags[i], rc, text);
        free(text);
        rc = tu_run_cli(&text, "quantize %s -o %s --device host -q %s", fp8, o1, flags[i]);
        if (rc != 0) fail_msg("%s (FP8 blocks): exit %d: %s", flags[i], rc, text);
        free(text);
        assert_same_bytes(o1, o2, "model.safetensors", flags[i]);
        tu_rmtree(root);
        free(fp8);
        free(bf);
        free(o1);
        free(o2);
        free(root);
    }
    g_f32 = false;
    g_spec = src_tensors;
    g_nspec = N(src_tensors);
}

/* With --skip-nonfinite a source weight holding a NaN code is kept, written
 * as its dequantized values as the float model's copy has them. */
static void test_fp8_blocks_nonfinite(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *text = NULL;
    g_nan = true;
    make_fp8_pair(root);
    g_nan = false;
    char *fp8 = tu_join(root, "fp8"), *bf = tu_join(root, "bf16");
    char *o1 = tu_join(root, "o1"), *o2 = tu_join(root, "o2");
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --skip-nonfinite", bf, o2);
    if (rc != 0) fail_msg("float: exit %d: %s", rc, text);
    free(text);
    rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --skip-nonfinite", fp8, o1);
    if (rc != 0) fail_msg("FP8 blocks: exit %d: %s", rc, text);
    free(text);
    assert_same_bytes(o1, o2, "model.safetensors", "--skip-nonfinite");
    /* Without it, the NaN is an error naming the weight, as for a float model. */
    char *o3 = tu_join(root, "o3");
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host -q", fp8, o3), 2);
    assert_non_null(strstr(text, "model.layers.0.mlp.down_proj.weight"));
    assert_false(tu_exists(o3));
    free(text);
    tu_rmtree(root);
    free(fp8);
    free(bf);
    free(o1);
    free(o2);
    free(o3);
    free(root);
}

/* --dequant-dtype f32: the values are quantized from F32 (the output is the
 * one of a model holding them in F32), and a weight kept in float is still
 * written in the model's BF16. */
static void test_fp8_blocks_dequant_f32(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *text = NULL;
    g_f32 = true;
    make_fp8_pair(root);
    g_f32 = false;
    char *fp8 = tu_join(root, "fp8"), *f32 = tu_join(root, "bf16");
    char *o1 = tu_join(root, "o1"), *o2 = tu_join(root, "o2"), *o3 = tu_join(root, "o3");
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --preset W8A8", f32, o2);
    if (rc != 0) fail_msg("float: exit %d: %s", rc, text);
    free(text);
    rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --preset W8A8 --dequant-dtype f32",
                    fp8, o1);
    if (rc != 0) fail_msg("FP8 blocks: exit %d: %s", rc, text);
    free(text);
    assert_same_bytes(o1, o2, "model.safetensors", "--dequant-dtype f32");
    rc = tu_run_cli(&text,
                    "quantize %s -o %s --device host -q --dequant-dtype f32 --exclude "
                    "*down_proj*",
                    fp8, o3);
    if (rc != 0) fail_msg("FP8 blocks, excluded: exit %d: %s", rc, text);
    free(text);
    char *st = tu_join(o3, "model.safetensors");
    mq_model *m = NULL;
    assert_int_equal(mq_model_open(st, &m), MQ_OK);
    const mq_tensor *t = mq_model_find(m, "model.layers.0.mlp.down_proj.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MQ_DTYPE_BF16);
    mq_model_free(m);
    free(st);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --dequant-dtype f16", fp8, o3), 1);
    assert_non_null(strstr(text, "--dequant-dtype"));
    free(text);
    tu_rmtree(root);
    free(fp8);
    free(f32);
    free(o1);
    free(o2);
    free(o3);
    free(root);
}

/* dequantize of the directory: the float model, tensor for tensor, and a
 * config.json without the quantization_config. */
static void test_fp8_blocks_dequantize_dir(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *text = NULL;
    make_fp8_pair(root);
    char *fp8 = tu_join(root, "fp8"), *bf = tu_join(root, "bf16"), *out = tu_join(root, "out");
    int rc = tu_run_cli(&text, "dequantize %s -o %s", fp8, out);
    if (rc != 0) fail_msg("exit %d: %s", rc, text);
    free(text);
    char *pa = tu_join(out, "model.safetensors"), *pb = tu_join(bf, "model.safetensors");
    mq_model *a = NULL, *b = NULL;
    assert_int_equal(mq_model_open(pa, &a), MQ_OK);
    assert_int_equal(mq_model_open(pb, &b), MQ_OK);
    assert_int_equal(mq_model_count(a), mq_model_count(b));
    for (size_t i = 0; i < mq_model_count(b); i++) {
        const mq_tensor *tb = mq_model_tensor(b, i), *ta = mq_model_find(a, tb->name);
        assert_non_null(ta);
        assert_int_equal(ta->dtype, tb->dtype);
        assert_int_equal(ta->nbytes, tb->nbytes);
        assert_memory_equal(ta->data, tb->data, tb->nbytes);
    }
    for (size_t i = 0; i < mq_model_metadata_count(a); i++)
        assert_null(strstr(mq_model_metadata_key(a, i), "quantiz"));
    mq_model_free(a);
    mq_model_free(b);
    char *cp = tu_join(out, "config.json");
    size_t n = 0;
    char *cfg = (char *)tu_read_file(cp, &n);
    assert_non_null(cfg);
    assert_null(strstr(cfg, "quantization_config"));
    assert_non_null(strstr(cfg, "\"torch_dtype\": \"bfloat16\""));
    free(cfg);
    free(cp);
    free(pa);
    free(pb);
    tu_rmtree(root);
    free(fp8);
    free(bf);
    free(out);
    free(root);
}

/* Scales of the wrong grid for config.json's block size, and FP8 blocks
 * with no config.json to give it, are refused before any work. */
static void test_fp8_blocks_refused(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *text = NULL;
    make_fp8_pair(root);
    char *fp8 = tu_join(root, "fp8"), *out = tu_join(root, "out");
    char cfg[512];
    snprintf(cfg, sizeof cfg, BF16_CONFIG,
             ", \"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [2, "
             "4]}");
    write_text(fp8, "config.json", cfg);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", fp8, out), 2);
    assert_non_null(strstr(text, "model.layers.0.mlp.down_proj.weight_scale_inv"));
    assert_non_null(strstr(text, "blocks of 2 x 4"));
    assert_false(tu_exists(out));
    free(text);
    char *c = tu_join(fp8, "config.json");
    assert_int_equal(unlink(c), 0);
    free(c);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", fp8, out), 2);
    assert_non_null(strstr(text, "FP8 block"));
    assert_non_null(strstr(text, "weight_block_size"));
    assert_false(tu_exists(out));
    free(text);
    tu_rmtree(root);
    free(fp8);
    free(out);
    free(root);
}

/* The source's model.safetensors in two shards with an index: the tensors
 * whose name holds `second` go to the second. */
static void shard_source(const char *dir, const char *second)
{
    char *p = tu_join(dir, "model.safetensors");
    mq_model *in = NULL, *part[2];
    assert_int_equal(mq_model_open(p, &in), MQ_OK);
    assert_int_equal(mq_model_new(&part[0]), MQ_OK);
    assert_int_equal(mq_model_new(&part[1]), MQ_OK);
    json_t *map = json_object();
    static const char *const names[2] = {"model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < mq_model_count(in); i++) {
        const mq_tensor *t = mq_model_tensor(in, i);
        int k = strstr(t->name, second) != NULL;
        assert_int_equal(
            mq_model_add_tensor(part[k], t->name, t->dtype, t->rank, t->shape, t->data), MQ_OK);
        json_object_set_new(map, t->name, json_string(names[k]));
    }
    for (int k = 0; k < 2; k++) {
        char *sp = tu_join(dir, names[k]);
        assert_int_equal(mq_model_save(part[k], sp), MQ_OK);
        mq_model_free(part[k]);
        free(sp);
    }
    mq_model_free(in);
    assert_int_equal(unlink(p), 0);
    free(p);
    json_t *idx = json_pack("{s:{}, s:o}", "metadata", "weight_map", map);
    char *ip = tu_join(dir, "model.safetensors.index.json");
    assert_int_equal(json_dump_file(idx, ip, 0), 0);
    json_decref(idx);
    free(ip);
}

/* Shards: a weight and its scales in one shard are read as in one file, the
 * index rebuilt without the scales; a pair split over two is refused. */
static void test_fp8_blocks_sharded(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *text = NULL;
    make_fp8_pair(root);
    char *fp8 = tu_join(root, "fp8"), *out = tu_join(root, "out");
    shard_source(fp8, "up_proj");
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --preset W8A8", fp8, out);
    if (rc != 0) fail_msg("exit %d: %s", rc, text);
    free(text);
    char *ip = tu_join(out, "model.safetensors.index.json");
    size_t n = 0;
    char *idx = (char *)tu_read_file(ip, &n);
    assert_non_null(idx);
    assert_null(strstr(idx, "_scale_inv"));
    assert_non_null(strstr(idx, "\"model.layers.0.mlp.up_proj.weight_scale\""));
    free(idx);
    free(ip);
    tu_rmtree(root);
    free(root);
    free(fp8);
    free(out);

    root = tu_mkdtemp();
    make_fp8_pair(root);
    fp8 = tu_join(root, "fp8");
    out = tu_join(root, "out");
    shard_source(fp8, "up_proj.weight_scale_inv");
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", fp8, out), 2);
    assert_non_null(strstr(text, "model.layers.0.mlp.up_proj.weight"));
    assert_non_null(strstr(text, "different shards"));
    assert_false(tu_exists(out));
    free(text);
    tu_rmtree(root);
    free(root);
    free(fp8);
    free(out);
}

/* On an OpenCL device the band's codes are dequantized by the device's
 * dequantize_source and quantized there: the output is byte for byte the
 * host's and the float model's (today's), for every path a source weight
 * takes (rows, groups from mid-row, blocks, the cast, a weight kept and
 * written dequantized, F32 values, rows longer than a slot). */
static void test_fp8_blocks_opencl(void **state)
{
    (void)state;
    const char *cl = tu_cl_device();
    mq_backend *probe = NULL;
    const mq_device_sel pc = {.spec = cl};
    if (mq_backend_open(&pc, &probe) != MQ_OK) {
        print_message("no OpenCL device '%s': %s\n", cl, mq_last_error());
        skip();
    }
    mq_backend_free(probe);
    static const char *const flags[] = {
        "--preset W8A8",
        "--preset W4A16",
        "--preset FP8_BLOCK",
        "--dtype fp16",
        "--preset W8A8 --exclude *down_proj*",
        "--preset W4A16 --memory-limit 64K",
        "--preset W8A8 --dequant-dtype f32",
        "--preset W8A8 --memory-limit 1M",
    };
    for (size_t i = 0; i < N(flags); i++) {
        char *root = tu_mkdtemp(), *text = NULL;
        bool wide = strstr(flags[i], "1M") != NULL;
        g_spec = wide ? wide_tensors : src_tensors;
        g_nspec = wide ? N(wide_tensors) : N(src_tensors);
        g_f32 = strstr(flags[i], "f32") != NULL;
        make_fp8_pair(root);
        char *fp8 = tu_join(root, "fp8"), *bf = tu_join(root, "bf16");
        char *o1 = tu_join(root, "o1"), *o2 = tu_join(root, "o2"), *o3 = tu_join(root, "o3");
        const char *ffl = g_f32 ? "--preset W8A8" : flags[i];
        int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q %s", bf, o3, ffl);
        if (rc != 0) fail_msg("%s (float): exit %d: %s", flags[i], rc, text);
        free(text);
        rc = tu_run_cli(&text, "quantize %s -o %s --device host -q %s", fp8, o1, flags[i]);
        if (rc != 0) fail_msg("%s (host): exit %d: %s", flags[i], rc, text);
        free(text);
        rc = tu_run_cli(&text, "quantize %s -o %s --device %s -q %s", fp8, o2, cl, flags[i]);
        if (rc != 0) fail_msg("%s (%s): exit %d: %s", flags[i], cl, rc, text);
        free(text);
        assert_same_bytes(o1, o2, "model.safetensors", flags[i]);
        assert_same_bytes(o3, o2, "model.safetensors", flags[i]);
        tu_rmtree(root);
        free(fp8);
        free(bf);
        free(o1);
        free(o2);
        free(o3);
        free(root);
    }
    g_f32 = false;
    g_spec = src_tensors;
    g_nspec = N(src_tensors);
}

/* A NaN code met on the device: the same error as the host's, naming the
 * weight and its channel; kept with --skip-nonfinite, as on the host. */
static void test_fp8_blocks_opencl_nonfinite(void **state)
{
    (void)state;
    const char *cl = tu_cl_device();
    mq_backend *probe = NULL;
    const mq_device_sel pc = {.spec = cl};
    if (mq_backend_open(&pc, &probe) != MQ_OK) {
        print_message("no OpenCL device '%s': %s\n", cl, mq_last_error());
        skip();
    }
    mq_backend_free(probe);
    char *root = tu_mkdtemp(), *t1 = NULL, *t2 = NULL;
    g_nan = true;
    make_fp8_pair(root);
    g_nan = false;
    char *fp8 = tu_join(root, "fp8"), *o1 = tu_join(root, "o1"), *o2 = tu_join(root, "o2");
    assert_int_equal(tu_run_cli(&t1, "quantize %s -o %s --device host -q", fp8, o1), 2);
    assert_int_equal(tu_run_cli(&t2, "quantize %s -o %s --device %s -q", fp8, o2, cl), 2);
    const char *m1 = strstr(t1, "model.layers.0.mlp.down_proj.weight");
    const char *m2 = strstr(t2, "model.layers.0.mlp.down_proj.weight");
    assert_non_null(m1);
    assert_non_null(m2);
    assert_string_equal(m1, m2);
    assert_false(tu_exists(o2));
    free(t1);
    free(t2);
    int rc = tu_run_cli(&t1, "quantize %s -o %s --device host -q --skip-nonfinite", fp8, o1);
    if (rc != 0) fail_msg("host: exit %d: %s", rc, t1);
    rc = tu_run_cli(&t2, "quantize %s -o %s --device %s -q --skip-nonfinite", fp8, o2, cl);
    if (rc != 0) fail_msg("%s: exit %d: %s", cl, rc, t2);
    assert_same_bytes(o1, o2, "model.safetensors", "--skip-nonfinite");
    free(t1);
    free(t2);
    tu_rmtree(root);
    free(fp8);
    free(o1);
    free(o2);
    free(root);
}

/* A compressed-tensors source (ours, FP8 per channel) holding a NaN code:
 * with --skip-nonfinite the scan finds it in the dequantized values and the
 * weight is kept, dequantized in the model's dtype; without, the run stops
 * naming it, with no output. */
static void test_ct_source_nonfinite(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *text = NULL;
    make_fp8_pair(root);
    char *bf = tu_join(root, "bf16"), *ct = tu_join(root, "ct"), *o1 = tu_join(root, "o1");
    char *o2 = tu_join(root, "o2"), *st = tu_join(ct, "model.safetensors");
    const char *w = "model.layers.0.mlp.up_proj.weight";
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --preset FP8_DYNAMIC", bf, ct);
    if (rc != 0) fail_msg("source: exit %d: %s", rc, text);
    free(text);
    mq_model *m;
    assert_int_equal(mq_model_open(st, &m), MQ_OK);
    long i = mq_model_index(m, w);
    assert_true(i >= 0);
    assert_int_equal(m->tensors[i].dtype, MQ_DTYPE_F8_E4M3);
    long off = (long)((const unsigned char *)m->tensors[i].data -
                      (const unsigned char *)mq_blob_data(m->blobs[i]));
    mq_model_free(m);
    FILE *f = fopen(st, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off + 5, SEEK_SET), 0);
    assert_int_equal(fputc(0x7f, f), 0x7f);
    assert_int_equal(fclose(f), 0);
    rc =
        tu_run_cli(&text, "quantize %s -o %s --device host --preset W8A8 --skip-nonfinite", ct, o1);
    if (rc != 0) fail_msg("--skip-nonfinite: exit %d: %s", rc, text);
    assert_non_null(strstr(text, "NaN or Inf"));
    free(text);
    char *out = tu_join(o1, "model.safetensors");
    assert_int_equal(mq_model_open(out, &m), MQ_OK);
    i = mq_model_index(m, w);
    assert_true(i >= 0);
    assert_int_equal(m->tensors[i].dtype, MQ_DTYPE_BF16);
    assert_true(mq_model_index(m, "model.layers.0.mlp.gate_proj.weight_scale") >= 0);
    mq_model_free(m);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host -q --preset W8A8", ct, o2),
                     2);
    assert_non_null(strstr(text, w));
    assert_false(tu_exists(o2));
    free(text);
    tu_rmtree(root);
    free(out);
    free(bf);
    free(ct);
    free(o1);
    free(o2);
    free(st);
    free(root);
}

/* A compressed-tensors source is read a file at a time: a layer whose codes
 * are in one shard and its scale in the next is refused before any output,
 * naming both shards; within one shard it is read. */
static void test_ct_source_split(void **state)
{
    (void)state;
    static const int8_t codes[8 * 8] = {1, -2, 3};
    static const float scale[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    static const float norm[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int split = 0; split < 2; split++) {
        char *root = tu_mkdtemp(), *d = tu_join(root, "in"), *out = tu_join(root, "out");
        char *a = tu_join(d, "a.safetensors"), *b = tu_join(d, "b.safetensors"), *text = NULL;
        char cfg[512], index[512];
        assert_int_equal(mkdir(d, 0755), 0);
        snprintf(cfg, sizeof cfg, FLOAT_CONFIG,
                 ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", "
                 "\"format\": \"int-quantized\", \"quantization_status\": \"compressed\"}");
        write_text(d, "config.json", cfg);
        mq_model *ma, *mb;
        assert_int_equal(mq_model_new(&ma), MQ_OK);
        assert_int_equal(mq_model_new(&mb), MQ_OK);
        assert_int_equal(
            mq_model_add_tensor(ma, "layers.1.weight", MQ_DTYPE_I8, 2, (int64_t[]){8, 8}, codes),
            MQ_OK);
        assert_int_equal(mq_model_add_tensor(split ? mb : ma, "layers.1.weight_scale", MQ_DTYPE_F32,
                                             2, (int64_t[]){8, 1}, scale),
                         MQ_OK);
        assert_int_equal(
            mq_model_add_tensor(mb, "norm.weight", MQ_DTYPE_F32, 1, (int64_t[]){8}, norm), MQ_OK);
        snprintf(index, sizeof index,
                 "{\"metadata\": {}, \"weight_map\": {\"layers.1.weight\": "
                 "\"a.safetensors\", \"layers.1.weight_scale\": \"%s\", \"norm.weight\": "
                 "\"b.safetensors\"}}",
                 split ? "b.safetensors" : "a.safetensors");
        write_text(d, "model.safetensors.index.json", index);
        assert_int_equal(mq_model_save(ma, a), MQ_OK);
        assert_int_equal(mq_model_save(mb, b), MQ_OK);
        mq_model_free(ma);
        mq_model_free(mb);
        int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --preset W4A16", d, out);
        if (split) {
            if (rc != 2) fail_msg("split: exit %d: %s", rc, text);
            assert_non_null(strstr(text, "split over shards"));
            assert_non_null(strstr(text, "'b.safetensors'"));
            assert_false(tu_exists(out));
        } else if (rc != 0) {
            fail_msg("one shard: exit %d: %s", rc, text);
        }
        free(text);
        tu_rmtree(root);
        free(a);
        free(b);
        free(d);
        free(out);
        free(root);
    }
}

/* gpt-oss MXFP4: code 2k of a group in the low nibble, 2k + 1 in the high
 * one; e2m1 * 2^(scale - 127) in fp32 (255: +inf), rounded once to the dtype;
 * the weight is the transpose of the stored [out, in]. */
static void test_mxfp4_reference(void **state)
{
    (void)state;
    enum { OUT = 2, IN = 64 };
    uint8_t blocks[OUT * IN / 2] = {0}, scales[OUT * IN / 32];
    blocks[0] = 0x2f;           /* row 0: h = 0 -> code 0xf (-6), h = 1 -> code 2 (1.0) */
    blocks[16] = 0x07;          /* row 0, second group: h = 32 -> code 7 (6.0) */
    blocks[IN / 2 + 1] = 0x30;  /* row 1: h = 2 -> 0, h = 3 -> code 3 (1.5) */
    blocks[IN / 2 + 16] = 0x01; /* row 1, second group: h = 32 -> code 1 (0.5) */
    scales[0] = 127;            /* row 0, group 0: 1 */
    scales[1] = 255;            /* row 0, group 1: +inf */
    scales[2] = 130;            /* row 1, group 0: 8 */
    scales[3] = 0;              /* row 1, group 1: 2^-127 */
    float f[IN * OUT];
    mq_ref_mxfp4_expert(blocks, scales, OUT, IN, 0, IN * OUT, MQ_DTYPE_F32, f);
    assert_true(f[0 * OUT + 0] == -6.0f);
    assert_true(f[1 * OUT + 0] == 1.0f);
    assert_true(f[32 * OUT + 0] == INFINITY);
    assert_true(isnan(f[33 * OUT + 0])); /* 0 * inf */
    assert_true(f[3 * OUT + 1] == 12.0f);
    assert_true(f[2 * OUT + 1] == 0.0f);
    assert_true(f[32 * OUT + 1] == ldexpf(1.0f, -128));
    /* A range from the middle, in BF16: the same values rounded. */
    uint16_t b[3];
    mq_ref_mxfp4_expert(blocks, scales, OUT, IN, 2 * OUT + 1, 3, MQ_DTYPE_BF16, b);
    assert_int_equal(b[0], mq_f32_to_bf16(f[2 * OUT + 1]));
    assert_int_equal(b[1], mq_f32_to_bf16(f[3 * OUT + 0]));
    assert_int_equal(b[2], mq_f32_to_bf16(12.0f));
}

/* An MXFP4 model's blocks without their scales, or of a shape that is not
 * gpt-oss's, are refused before any output, naming the tensor. */
static void test_mxfp4_refused(void **state)
{
    (void)state;
    static const tspec lone[] = {
        {"model.layers.0.mlp.experts.gate_up_proj_blocks", MQ_DTYPE_U8, 4, 16},
        {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
    };
    static const tspec flat[] = {
        {"model.layers.0.mlp.experts.down_proj_blocks", MQ_DTYPE_U8, 4, 16},
        {"model.layers.0.mlp.experts.down_proj_scales", MQ_DTYPE_U8, 4, 1},
        {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
    };
    const struct {
        const tspec *t;
        size_t n;
        const char *needle;
    } cases[] = {{lone, N(lone), "without their 'model.layers.0.mlp.experts.gate_up_proj_scales'"},
                 {flat, N(flat), "must be U8 [experts, out, in / 32, 16]"}};
    for (size_t i = 0; i < N(cases); i++) {
        char *root = tu_mkdtemp(), *in = tu_join(root, "in"), *out = tu_join(root, "out");
        char *st = tu_join(in, "model.safetensors"), *text = NULL, cfg[512];
        assert_int_equal(mkdir(in, 0755), 0);
        write_tensors(st, cases[i].t, cases[i].n);
        snprintf(cfg, sizeof cfg, FLOAT_CONFIG,
                 ", \"quantization_config\": {\"quant_method\": \"mxfp4\"}");
        write_text(in, "config.json", cfg);
        assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", in, out), 2);
        if (!strstr(text, cases[i].needle)) fail_msg("'%s' not in: %s", cases[i].needle, text);
        assert_non_null(strstr(text, cases[i].t[0].name));
        assert_false(tu_exists(out));
        free(text);
        tu_rmtree(root);
        free(st);
        free(in);
        free(out);
        free(root);
    }
}

/* A compressed-tensors source whose layer is broken (scales that are not
 * finite and positive) is refused before any output, naming the layer. */
static void test_ct_source_refused(void **state)
{
    (void)state;
    static const tspec bad[] = {
        {"model.layers.0.mlp.up_proj.weight", MQ_DTYPE_I8, 16, 8},
        {"model.layers.0.mlp.up_proj.weight_scale", MQ_DTYPE_F32, 16, 1},
        {"lm_head.weight", MQ_DTYPE_F32, 24, 8},
    };
    char *root = tu_mkdtemp(), *in = tu_join(root, "in"), *out = tu_join(root, "out");
    char *st = tu_join(in, "model.safetensors"), *text = NULL, cfg[512];
    assert_int_equal(mkdir(in, 0755), 0);
    write_tensors(st, bad, N(bad));
    snprintf(cfg, sizeof cfg, FLOAT_CONFIG,
             ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", "
             "\"format\": \"int-quantized\", \"quantization_status\": \"compressed\"}");
    write_text(in, "config.json", cfg);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host --preset W4A16", in, out),
                     2);
    assert_non_null(strstr(text, "model.layers.0.mlp.up_proj.weight"));
    assert_non_null(strstr(text, "finite and positive"));
    assert_false(tu_exists(out));
    free(text);
    tu_rmtree(root);
    free(st);
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
        cmocka_unit_test(test_fp8_blocks_as_float),
        cmocka_unit_test(test_fp8_blocks_split),
        cmocka_unit_test(test_fp8_blocks_nonfinite),
        cmocka_unit_test(test_fp8_blocks_dequant_f32),
        cmocka_unit_test(test_fp8_blocks_dequantize_dir),
        cmocka_unit_test(test_fp8_blocks_refused),
        cmocka_unit_test(test_fp8_blocks_sharded),
        cmocka_unit_test(test_fp8_blocks_opencl),
        cmocka_unit_test(test_fp8_blocks_opencl_nonfinite),
        cmocka_unit_test(test_mxfp4_reference),
        cmocka_unit_test(test_mxfp4_refused),
        cmocka_unit_test(test_ct_source_refused),
        cmocka_unit_test(test_ct_source_nonfinite),
        cmocka_unit_test(test_ct_source_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
