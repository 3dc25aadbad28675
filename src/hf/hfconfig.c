/* config.json of the output: the input's keys in their order, plus the
 * compressed-tensors quantization_config that vLLM and transformers read to
 * load an INT8 model (or torch_dtype float16 for FP16), and a JSON writer
 * that formats numbers as Python does, so untouched values read the same. */
#include "hfmeta.h"

#include "dtype.h"
#include "error.h"
#include "hfrenames.h"
#include "infile.h"
#include "layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* model_type values of the GPT-2 family, whose Linear layers are Conv1D
 * modules stored [in, out]. */
static const char *const conv1d_model_types[] = {"gpt2", "openai-gpt", "imagegpt",
                                                 "decision_transformer"};

/* The output head a model class builds when the checkpoint holds no tensor
 * for it (tied to the embeddings): (suffix of the architecture, module). */
static const char *const tied_heads[][2] = {
    {"WhisperForConditionalGeneration", "proj_out"},
    {"ForCausalLM", "lm_head"},
    {"LMHeadModel", "lm_head"},
    {"ForConditionalGeneration", "lm_head"},
};

static mq_status no_memory(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "config.json: out of memory");
}

/* The tool behind a quant_method, as users know it. */
static const char *const quant_methods[][2] = {
    {"gptq", "AutoGPTQ"},
    {"awq", "AutoAWQ"},
    {"bitsandbytes", "bitsandbytes"},
    {"compressed-tensors", NULL},
    {"fp8", "FP8"},
    {"mxfp4", "MXFP4"},
    {"gguf", "GGUF"},
    {"hqq", "HQQ"},
    {"quanto", "Quanto"},
    {"eetq", "EETQ"},
    {"aqlm", "AQLM"},
    {"modelopt", "ModelOpt"},
    {"torchao", "torchao"},
    {"fbgemm_fp8", "FBGEMM FP8"},
    {"higgs", "HIGGS"},
};

/* A native AutoGPTQ directory describes its packing only in
 * quantize_config.json, so config.json alone looks like a float model's. */
static mq_status refuse_autogptq(const mq_hf_root *root)
{
    size_t n = strlen(root->dir) + sizeof "/" MQ_HF_GPTQ_CONFIG;
    char *p = malloc(n);
    struct stat st;
    if (!p) return no_memory();
    snprintf(p, n, "%s/%s", root->dir, MQ_HF_GPTQ_CONFIG);
    bool there = lstat(p, &st) == 0;
    mq_status rc = there ? mq_set_error(MQ_STATUS_E_FORMAT,
                                        "%s: the model is already quantized in the AutoGPTQ "
                                        "layout, which is not read; start from the float model",
                                        p)
                         : MQ_OK;
    free(p);
    return rc;
}

/* Whether qc describes FP8 E4M3 block weights as DeepSeek-V3 and
 * transformers' fine-grained FP8 write them: quant_method "fp8" (fmt "e4m3"
 * when given) with a weight_block_size of two positive integers. */
static bool fp8_blocks(json_t *qc, size_t block[2])
{
    const char *method = json_string_value(json_object_get(qc, "quant_method"));
    const char *fmt = json_string_value(json_object_get(qc, "fmt"));
    json_t *bs = json_object_get(qc, "weight_block_size");
    if (!method || strcmp(method, "fp8") != 0 || (fmt && strcmp(fmt, "e4m3") != 0) ||
        !json_is_array(bs) || json_array_size(bs) != 2)
        return false;
    for (size_t k = 0; k < 2; k++) {
        json_t *v = json_array_get(bs, k);
        if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 20))
            return false;
        block[k] = (size_t)json_integer_value(v);
    }
    return true;
}

/* The model's declared dtype (torch_dtype, or transformers 5's dtype); BF16
 * when absent. */
static mq_dtype model_dtype(json_t *config)
{
    const char *td = json_string_value(json_object_get(config, "torch_dtype"));
    if (!td) td = json_string_value(json_object_get(config, "dtype"));
    return td && !strcmp(td, "float16")   ? MQ_DTYPE_F16
           : td && !strcmp(td, "float32") ? MQ_DTYPE_F32
                                          : MQ_DTYPE_BF16;
}

bool mq_hf_fp8_source(json_t *config, size_t block[2], mq_dtype *dt)
{
    json_t *qc = json_object_get(config, "quantization_config");
    block[0] = block[1] = 0;
    if (!qc || !fp8_blocks(qc, block)) return false;
    *dt = model_dtype(config);
    return true;
}

/* The compressed-tensors formats we write, and so read back. */
static const char *const ct_formats[] = {"int-quantized",   "pack-quantized",
                                         "float-quantized", "mxfp4-pack-quantized",
                                         "mxfp8-quantized", "nvfp4-pack-quantized"};

static mq_src_format other_source(json_t *qc)
{
    const char *method = json_string_value(json_object_get(qc, "quant_method"));
    if (!method) return MQ_SRC_FORMAT_NONE;
    if (!strcmp(method, "mxfp4")) return MQ_SRC_FORMAT_MXFP4;
    if (strcmp(method, "compressed-tensors") != 0) return MQ_SRC_FORMAT_NONE;
    /* A checkpoint saved uncompressed (frozen) holds float weights already. */
    const char *status = json_string_value(json_object_get(qc, "quantization_status"));
    const char *fmt = json_string_value(json_object_get(qc, "format"));
    if (!fmt || (status && strcmp(status, "compressed") != 0)) return MQ_SRC_FORMAT_NONE;
    for (size_t i = 0; i < sizeof ct_formats / sizeof *ct_formats; i++)
        if (!strcmp(fmt, ct_formats[i])) return MQ_SRC_FORMAT_CT;
    return MQ_SRC_FORMAT_NONE;
}

mq_src_format mq_hf_other_source(json_t *config, mq_dtype *dt)
{
    json_t *qc = json_object_get(config, "quantization_config");
    mq_src_format f = qc ? other_source(qc) : MQ_SRC_FORMAT_NONE;
    if (f != MQ_SRC_FORMAT_NONE) *dt = model_dtype(config);
    return f;
}

/* The refusal of a config.json that says its model is already quantized:
 * naming the layout, and whether it is one we know at all. */
static mq_status refuse_quantized(const char *path, json_t *qc)
{
    const char *method = json_string_value(json_object_get(qc, "quant_method"));
    if (!method)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: the model is already quantized (it has a \"quantization_config\" "
                            "with no \"quant_method\": an unknown layout); start from the float "
                            "model",
                            path);
    size_t block[2];
    if (fp8_blocks(qc, block)) return MQ_OK;                  /* read: see mq_hf_fp8_source */
    if (other_source(qc) != MQ_SRC_FORMAT_NONE) return MQ_OK; /* mq_hf_other_source */
    for (size_t i = 0; i < sizeof quant_methods / sizeof *quant_methods; i++) {
        if (strcmp(method, quant_methods[i][0]) != 0) continue;
        if (!quant_methods[i][1]) {
            /* compressed-tensors: read in the formats we write, compressed. */
            const char *fmt = json_string_value(json_object_get(qc, "format"));
            const char *status = json_string_value(json_object_get(qc, "quantization_status"));
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "%s: the model is already quantized (compressed-tensors, format "
                                "\"%s\", status \"%s\": only the compressed formats that we "
                                "write are read); start from the float model",
                                path, fmt ? fmt : "none", status ? status : "none");
        }
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: the model is already quantized in the %s layout "
                            "(\"quant_method\": \"%s\"), which is not read; start from the "
                            "float model",
                            path, quant_methods[i][1], method);
    }
    return mq_set_error(MQ_STATUS_E_FORMAT,
                        "%s: the model is already quantized in a layout that is not known "
                        "(\"quant_method\": \"%s\"); start from the float model",
                        path, method);
}

mq_status mq_hf_config_load(const mq_hf_root *root, json_t **config)
{
    const char *dir = root->dir;
    size_t n = strlen(dir) + sizeof "/" MQ_HF_CONFIG;
    char *path = malloc(n);
    json_error_t err;
    struct stat st;
    mq_status rc = MQ_OK;

    *config = NULL;
    if (!path) return no_memory();
    if ((rc = refuse_autogptq(root)) != MQ_OK) goto done;
    snprintf(path, n, "%s/%s", dir, MQ_HF_CONFIG);
    /* lstat: a dangling link is no missing file, but one the output would lack. */
    if (lstat(path, &st) != 0 && errno == ENOENT) goto done; /* optional */
    if ((rc = mq_hf_root_check(root, path)) != MQ_OK) goto done;
    json_t *j = NULL;
    if ((rc = mq_infile_json(path, 0, MQ_STATUS_E_IO, &j, &err)) != MQ_OK) goto done;
    if (!j) {
        rc = mq_set_error(MQ_STATUS_E_FORMAT, "%s: %s (line %d, column %d)", path, err.text,
                          err.line, err.column);
    } else if (!json_is_object(j)) {
        rc = mq_set_error(MQ_STATUS_E_FORMAT, "%s: not a JSON object", path);
    } else if (!json_is_null(json_object_get(j, "quantization_config")) &&
               json_object_get(j, "quantization_config")) {
        /* Its tensors are already packed; re-quantizing would describe them wrongly. */
        rc = refuse_quantized(path, json_object_get(j, "quantization_config"));
    }
    if (rc == MQ_OK)
        *config = j;
    else
        json_decref(j);
done:
    free(path);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

void mq_hf_plan_hints(json_t *config, mq_plan_hints *h)
{
    memset(h, 0, sizeof *h);
    h->linear_only = true;
    const char *type = json_string_value(json_object_get(config, "model_type"));
    for (size_t i = 0; type && i < sizeof conv1d_model_types / sizeof *conv1d_model_types; i++)
        if (strcmp(type, conv1d_model_types[i]) == 0) h->conv1d_family = true;
}

/* Module name of a parameter: the name without its last ".param". */
static json_t *module_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? json_stringn(name, (size_t)(dot - name)) : NULL;
}

/* Appends `module` unless it is already there. Takes the reference. */
static int add_unique(json_t *list, json_t *module)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_equal(v, module)) {
            json_decref(module);
            return 0;
        }
    }
    return json_array_append_new(list, module);
}

/* The head module the architecture builds, or NULL. */
static const char *head_module(json_t *config)
{
    json_t *archs = json_object_get(config, "architectures");
    const char *arch = json_string_value(json_array_get(archs, 0));
    for (size_t i = 0; arch && i < sizeof tied_heads / sizeof *tied_heads; i++)
        if (ends_with(arch, tied_heads[i][0])) return tied_heads[i][1];
    return NULL;
}

/* Adds the module of the checkpoint tensor `name` and the modules transformers
 * builds from it (renamed on load, or split by a converter). */
static int add_modules(json_t *ig, const mq_hf_renames *rn, const char *name)
{
    json_t *built = json_array();
    size_t i;
    json_t *v;
    int rc = -1;
    json_t *own = module_of(name);
    if (!built || !own || add_unique(ig, own) != 0) goto done;
    if (mq_hf_renames_apply(rn, name, built) != MQ_OK) goto done;
    json_array_foreach(built, i, v)
    {
        json_t *m = module_of(json_string_value(v));
        if (m && add_unique(ig, m) != 0) goto done;
    }
    rc = 0;
done:
    json_decref(built);
    return rc;
}

/*
 * The Linear modules whose weight stayed in float: lm_head, router gates,
 * GPT-2 Conv1D modules, excluded and non-finite layers, under their
 * checkpoint names and the names transformers builds them under (which
 * compressed-tensors matches). An output head tied to the embeddings has no
 * tensor of its own but is still a Linear module, so it is listed too (as
 * llm-compressor does).
 */
static json_t *build_ignore(json_t *config, const mq_planner *pl, const mq_report *rep,
                            size_t first, const mq_hf_renames *rn)
{
    json_t *ig = json_array();
    const char *head = head_module(config);
    bool head_seen = false;
    size_t head_len = head ? strlen(head) : 0;
    for (size_t i = first; ig && i < mq_report_count(rep); i++) {
        const mq_report_entry *e = mq_report_entry_at(rep, i);
        if (head && strncmp(e->name, head, head_len) == 0 && e->name[head_len] == '.')
            head_seen = true;
        if (e->action != MQ_ACTION_SKIP || !mq_planner_is_linear(pl, e->name, e->dtype_in, e->rank))
            continue;
        if (add_modules(ig, rn, e->name) != 0) goto fail;
    }
    if (ig && head && !head_seen && add_unique(ig, json_string(head)) != 0) goto fail;
    return ig;
fail:
    json_decref(ig);
    return NULL;
}

/* compressed-tensors' QuantizationArgs as it dumps them: group_size null
 * unless grouped, block_structure only for blocks. */
static json_t *qargs(int bits, const char *type, bool symmetric, const char *strategy, size_t group,
                     size_t block, bool dynamic)
{
    json_t *a = json_pack("{s:b, s:o, s:i, s:s, s:b, s:s}", "dynamic", (int)dynamic, "group_size",
                          group ? json_integer((json_int_t)group) : json_null(), "num_bits", bits,
                          "strategy", strategy, "symmetric", (int)symmetric, "type", type);
    if (a && block &&
        json_object_set_new(a, "block_structure",
                            json_pack("[I, I]", (json_int_t)block, (json_int_t)block)) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* The MX arguments name their e8m0 scales as compressed-tensors dumps them. */
static json_t *with_e8m0(json_t *a)
{
    if (a && json_object_set_new(a, "scale_dtype", json_string("torch.uint8")) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* NVFP4's arguments: groups under a global scale ("tensor_group") with e4m3
 * scales, as compressed-tensors dumps its NVFP4A16 preset. */
static json_t *nvfp4_args(void)
{
    json_t *a = qargs(4, "float", true, "tensor_group", 16, 0, false);
    if (a && json_object_set_new(a, "scale_dtype", json_string("torch.float8_e4m3fn")) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* The weights' arguments of the scheme. */
static json_t *weight_args(const mq_scheme *s)
{
    static const char *const strategies[] = {
        [MQ_GRAN_TENSOR] = "tensor",
        [MQ_GRAN_CHANNEL] = "channel",
        [MQ_GRAN_GROUP] = "group",
        [MQ_GRAN_BLOCK] = "block",
    };
    if (s->scale_enc == MQ_SCALE_E4M3_GLOBAL) return nvfp4_args();
    json_t *a = qargs((int)s->bits, s->float_codes ? "float" : "int", s->symmetric,
                      strategies[s->gran], s->group, s->block, false);
    return s->scale_enc == MQ_SCALE_E8M0 ? with_e8m0(a) : a;
}

/* The input activations' arguments: dynamic per-token int8 for W8A8, dynamic
 * per-token fp8 for FP8_DYNAMIC, dynamic fp8 groups of 128 for FP8_BLOCK,
 * none (JSON null) for the weights-only schemes. */
static json_t *activation_args(const mq_scheme *s)
{
    switch (s->acts) {
    case MQ_ACT_INT8_TOKEN:
        return qargs(8, "int", true, "token", 0, 0, true);
    case MQ_ACT_FP8_TOKEN:
        return qargs(8, "float", true, "token", 0, 0, true);
    case MQ_ACT_FP8_GROUP_128:
        return qargs(8, "float", true, "group", 128, 0, true);
    case MQ_ACT_MXFP4_GROUP_32:
        return with_e8m0(qargs(4, "float", true, "group", 32, 0, true));
    case MQ_ACT_MXFP8_GROUP_32:
        return with_e8m0(qargs(8, "float", true, "group", 32, 0, true));
    default:
        return json_null();
    }
}

/*
 * The block compressed-tensors' ModelCompressor.update_config writes for the
 * same preset. The format is in the group as well as at the top: loaders
 * read the group's.
 */
static json_t *build_quantization_config(json_t *config, const mq_scheme *s, const mq_planner *pl,
                                         const mq_report *rep, size_t first,
                                         const mq_hf_renames *rn)
{
    json_t *ignore = build_ignore(config, pl, rep, first, rn);
    if (!ignore) return NULL;
    const char *fmt = mq_qformat_name(s->format);
    json_t *weights = weight_args(s);
    json_t *acts = activation_args(s);
    /* json_pack's "o" takes the references, also when it fails. */
    return json_pack("{s:{s:{s:s, s:o, s:n, s:[s], s:o}}, s:s, s:n, s:o, s:n, s:n, s:s, s:s, "
                     "s:{}, s:{}, s:s}",
                     "config_groups", "group_0", "format", fmt, "input_activations", acts,
                     "output_activations", "targets", "Linear", "weights", weights, "format", fmt,
                     "global_compression_ratio", "ignore", ignore, "kv_cache_scheme",
                     "moe_sparsity_config", "quant_method", "compressed-tensors",
                     "quantization_status", "compressed", "sparsity_config", "transform_config",
                     "version", MQ_CT_VERSION);
}

mq_status mq_hf_config_render(json_t *config, const mq_scheme *s, const mq_planner *pl,
                              const mq_report *rep, size_t first, char **text, size_t *len)
{
    *text = NULL;
    /* A quantized source's own description goes: its weights are dequantized
     * (and, quantizing, ours is written last, where a float source has it). */
    json_object_del(config, "quantization_config");
    if (!mq_scheme_quantizes(s)) {
        /* transformers 4.56 renamed torch_dtype to dtype; keep both in step. */
        if (json_object_set_new(config, "torch_dtype", json_string("float16")) != 0 ||
            (json_is_string(json_object_get(config, "dtype")) &&
             json_object_set_new(config, "dtype", json_string("float16")) != 0))
            return no_memory();
    } else {
        mq_hf_renames *rn = NULL;
        mq_status st = mq_hf_renames_new(config, &rn);
        if (st != MQ_OK) return st;
        json_t *qc = build_quantization_config(config, s, pl, rep, first, rn);
        mq_hf_renames_free(rn);
        if (!qc || json_object_set_new(config, "quantization_config", qc) != 0) return no_memory();
    }
    return mq_hf_json_dump(config, false, text, len);
}

/* Python's repr(float): the fewest significant digits that read back to the
 * same double, positional for exponents -4..15, else 1e-05 style. */
static void format_real(double x, char *buf, size_t cap)
{
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    const char *mark = strchr(e, 'e');
    int exp10 = mark ? atoi(mark + 1) : 0;
    if (exp10 >= -4 && exp10 < 16) {
        int decimals = p - 1 - exp10;
        snprintf(buf, cap, "%.*f", decimals < 1 ? 1 : decimals, x);
    } else {
        snprintf(buf, cap, "%s", e);
    }
}

static void put_indent(FILE *f, int depth)
{
    for (int i = 0; i < depth; i++)
        fputs("  ", f);
}

/* jansson escapes the string; only its layout of containers is replaced. */
static int put_string(FILE *f, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!t) return -1;
    fputs(t, f);
    free(t);
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_value(FILE *f, json_t *v, int depth, bool sort);

static int put_object(FILE *f, json_t *v, int depth, bool sort)
{
    size_t n = json_object_size(v), i = 0;
    const char *key, **keys;
    json_t *item;
    if (n == 0) return fputs("{}", f) < 0 ? -1 : 0;
    if (!(keys = malloc(n * sizeof *keys))) return -1;
    json_object_foreach(v, key, item) keys[i++] = key;
    if (sort) qsort(keys, n, sizeof *keys, key_cmp);
    int rc = 0;
    fputs("{\n", f);
    for (i = 0; i < n && rc == 0; i++) {
        put_indent(f, depth + 1);
        rc = put_string(f, keys[i]);
        fputs(": ", f);
        if (rc == 0) rc = put_value(f, json_object_get(v, keys[i]), depth + 1, sort);
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    put_indent(f, depth);
    fputc('}', f);
    free(keys);
    return rc;
}

static int put_array(FILE *f, json_t *v, int depth, bool sort)
{
    size_t n = json_array_size(v);
    int rc = 0;
    if (n == 0) return fputs("[]", f) < 0 ? -1 : 0;
    fputs("[\n", f);
    for (size_t i = 0; i < n && rc == 0; i++) {
        put_indent(f, depth + 1);
        rc = put_value(f, json_array_get(v, i), depth + 1, sort);
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    put_indent(f, depth);
    fputc(']', f);
    return rc;
}

static int put_value(FILE *f, json_t *v, int depth, bool sort)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return put_object(f, v, depth, sort);
    case JSON_ARRAY:
        return put_array(f, v, depth, sort);
    case JSON_STRING:
        return put_string(f, json_string_value(v));
    case JSON_INTEGER:
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return 0;
    case JSON_REAL:
        format_real(json_real_value(v), num, sizeof num);
        fputs(num, f);
        return 0;
    case JSON_TRUE:
        fputs("true", f);
        return 0;
    case JSON_FALSE:
        fputs("false", f);
        return 0;
    default:
        fputs("null", f);
        return 0;
    }
}

mq_status mq_hf_json_dump(json_t *v, bool sort_keys, char **text, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    *text = NULL;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return no_memory();
    int rc = put_value(f, v, 0, sort_keys);
    fputc('\n', f);
    if (ferror(f)) rc = -1;
    if (fclose(f) != 0) rc = -1;
    if (rc != 0) {
        free(buf);
        return no_memory();
    }
    *text = buf;
    if (len) *len = n;
    return MQ_OK;
}
