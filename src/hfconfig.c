/* config.json of the output: the input's keys in their order, plus the
 * compressed-tensors quantization_config that vLLM and transformers read to
 * load an INT8 model (or torch_dtype float16 for FP16), and a JSON writer
 * that formats numbers as Python does, so untouched values read the same. */
#include "hfmeta.h"

#include "dtype.h"
#include "error.h"
#include "infile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Substrings that mark an embedding (as the planner's list): an Embedding
 * module is no Linear target, so it needs no "ignore" entry. */
static const char *const embedding_markers[] = {
    "embed", "wte", "wpe", "word_embeddings", "position_embeddings",
};

static mq_status no_memory(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "config.json: out of memory");
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
        rc = mq_set_error(MQ_STATUS_E_FORMAT,
                          "%s: the model is already quantized (it has a \"quantization_config\"); "
                          "start from the float model",
                          path);
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

static bool is_embedding(const char *name)
{
    for (size_t i = 0; i < sizeof embedding_markers / sizeof *embedding_markers; i++)
        if (strstr(name, embedding_markers[i])) return true;
    return false;
}

/* compressed-tensors matches targets by module class; a weight's rank tells
 * which class it came from (Linear 2, ConvNd N+2). */
static const char *module_class(int rank)
{
    static const char *const names[] = {NULL, NULL, "Linear", "Conv1d", "Conv2d", "Conv3d"};
    return rank >= 2 && rank <= 5 ? names[rank] : NULL;
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

/* Module classes that hold a quantized weight ("Linear" always: an empty
 * target list would make loaders quantize nothing, or everything). */
static json_t *build_targets(const mq_report *rep, size_t first, bool targeted[6])
{
    json_t *t = json_array();
    memset(targeted, 0, 6 * sizeof *targeted);
    targeted[2] = true;
    for (size_t i = first; i < mq_report_count(rep); i++) {
        const mq_report_entry *e = mq_report_entry_at(rep, i);
        if (e->action == MQ_ACTION_QUANTIZE && module_class(e->rank)) targeted[e->rank] = true;
    }
    for (int r = 2; t && r <= 5; r++)
        if (targeted[r] && json_array_append_new(t, json_string(module_class(r))) != 0) {
            json_decref(t);
            return NULL;
        }
    return t;
}

/*
 * Modules of a targeted class whose weight stayed in float: a loader would
 * otherwise expect a weight_scale for them. A tied lm_head has no tensor of
 * its own but is still a Linear module, so it is listed as llm-compressor does.
 */
static json_t *build_ignore(const mq_report *rep, size_t first, const bool targeted[6], bool tied)
{
    json_t *ig = json_array();
    bool has_head = false;
    for (size_t i = first; ig && i < mq_report_count(rep); i++) {
        const mq_report_entry *e = mq_report_entry_at(rep, i);
        if (strncmp(e->name, "lm_head.", 8) == 0) has_head = true;
        if (e->action != MQ_ACTION_SKIP || !mq_dtype_is_float(e->dtype_in) || e->rank < 2 ||
            e->rank > 5 || !targeted[e->rank] || !ends_with(e->name, "weight") ||
            is_embedding(e->name))
            continue;
        json_t *m = module_of(e->name);
        if (m && add_unique(ig, m) != 0) goto fail;
    }
    if (ig && tied && !has_head && add_unique(ig, json_string("lm_head")) != 0) goto fail;
    return ig;
fail:
    json_decref(ig);
    return NULL;
}

static json_t *build_quantization_config(const mq_config *cfg, const mq_report *rep, size_t first,
                                         bool tied)
{
    bool targeted[6];
    json_t *targets = build_targets(rep, first, targeted);
    json_t *ignore = targets ? build_ignore(rep, first, targeted, tied) : NULL;
    if (!targets || !ignore) {
        json_decref(targets);
        return NULL;
    }
    /* json_pack's "o" takes the references, also when it fails. */
    return json_pack("{s:s, s:s, s:s, s:{s:{s:o, s:{s:i, s:s, s:b, s:s, s:b, s:n, s:s}, s:n, "
                     "s:n}}, s:o, s:n}",
                     "quant_method", "compressed-tensors", "format", "int-quantized",
                     "quantization_status", "compressed", "config_groups", "group_0", "targets",
                     targets, "weights", "num_bits", 8, "type", "int", "symmetric",
                     (int)cfg->symmetric, "strategy", cfg->per_channel ? "channel" : "tensor",
                     "dynamic", 0, "group_size", "observer", "minmax", "input_activations",
                     "output_activations", "ignore", ignore, "kv_cache_scheme");
}

mq_status mq_hf_config_render(json_t *config, const mq_config *cfg, const mq_report *rep,
                              size_t first, char **text, size_t *len)
{
    *text = NULL;
    if (cfg->dtype == MQ_FLOAT16) {
        /* transformers 4.56 renamed torch_dtype to dtype; keep both in step. */
        if (json_object_set_new(config, "torch_dtype", json_string("float16")) != 0 ||
            (json_is_string(json_object_get(config, "dtype")) &&
             json_object_set_new(config, "dtype", json_string("float16")) != 0))
            return no_memory();
    } else {
        bool tied = json_is_true(json_object_get(config, "tie_word_embeddings"));
        json_t *qc = build_quantization_config(cfg, rep, first, tied);
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
