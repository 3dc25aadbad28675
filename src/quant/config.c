/* mq_config: defaults, owned pattern lists and device string, and the JSON
 * config file. A file that fails to load leaves the config as it was, so a
 * caller never runs with half of a broken file applied. */
#include "monoquant.h"

#include "error.h"
#include "infile.h"
#include "plan.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void mq_config_init(mq_config *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->dtype = MQ_QINT8;
    cfg->symmetric = true;
    cfg->per_channel = true;
}

static void free_list(char **list, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        free(list[i]);
        list[i] = NULL;
    }
}

void mq_config_free(mq_config *cfg)
{
    if (!cfg) return;
    if (cfg->include) free_list(cfg->include, 0, cfg->n_include);
    if (cfg->exclude) free_list(cfg->exclude, 0, cfg->n_exclude);
    free(cfg->include);
    free(cfg->exclude);
    free(cfg->device);
    mq_config_init(cfg);
}

/* Validates first so a bad pattern is reported when it is given, not at run time. */
static mq_status list_append(char ***list, size_t *n, const char *pattern)
{
    char **grown;
    char *copy;
    mq_status st;

    if ((st = mq_pattern_check(pattern)) != MQ_OK) return st;
    if (*n >= SIZE_MAX / sizeof **list - 1)
        return mq_set_error(MQ_STATUS_E_NOMEM, "config: too many patterns");
    if (!(copy = strdup(pattern))) return mq_set_error(MQ_STATUS_E_NOMEM, "config: out of memory");
    if (!(grown = realloc(*list, (*n + 1) * sizeof **list))) {
        free(copy);
        return mq_set_error(MQ_STATUS_E_NOMEM, "config: out of memory");
    }
    grown[*n] = copy;
    *list = grown;
    (*n)++;
    return MQ_OK;
}

mq_status mq_config_add_include(mq_config *cfg, const char *pattern)
{
    mq_clear_error();
    if (!cfg || !pattern) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    return list_append(&cfg->include, &cfg->n_include, pattern);
}

mq_status mq_config_add_exclude(mq_config *cfg, const char *pattern)
{
    mq_clear_error();
    if (!cfg || !pattern) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    return list_append(&cfg->exclude, &cfg->n_exclude, pattern);
}

/* NULL means "auto": the backend then looks at $MQ_DEVICE. */
mq_status mq_config_set_device(mq_config *cfg, const char *device)
{
    mq_clear_error();
    char *copy = NULL;

    if (!cfg) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    if (device && !(copy = strdup(device)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "config: out of memory");
    free(cfg->device);
    cfg->device = copy;
    return MQ_OK;
}

/* ---- presets ---- */

typedef struct {
    const char *name;
    mq_qdtype dtype;
    bool symmetric, weights_only;
    size_t group_size, block_size;
} preset;

/* compressed-tensors' PRESET_SCHEMES of the same names (W8A16_ASYM and FP16
 * are ours); the first name of each scheme is the one mq_config_preset gives. */
static const preset presets[] = {
    {"W8A8", MQ_QINT8, true, false, 0, 0},       {"INT8", MQ_QINT8, true, false, 0, 0},
    {"W8A16", MQ_QINT8, true, true, 128, 0},     {"W8A16_ASYM", MQ_QINT8, false, true, 128, 0},
    {"W4A16", MQ_QINT4, true, true, 128, 0},     {"W4A16_ASYM", MQ_QINT4, false, true, 128, 0},
    {"FP8_DYNAMIC", MQ_QFP8, true, false, 0, 0}, {"FP8_BLOCK", MQ_QFP8, true, false, 0, 128},
    {"FP16", MQ_FLOAT16, true, false, 0, 0},
};

const char *mq_preset_names(void)
{
    return "W8A8, INT8, W8A16, W8A16_ASYM, W4A16, W4A16_ASYM, FP8_DYNAMIC, FP8_BLOCK, FP16";
}

mq_status mq_config_set_preset(mq_config *cfg, const char *name)
{
    mq_clear_error();
    if (!cfg || !name) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        const preset *p = &presets[i];
        if (strcasecmp(name, p->name) != 0) continue;
        cfg->dtype = p->dtype;
        cfg->symmetric = p->symmetric;
        cfg->per_channel = true;
        cfg->weights_only = p->weights_only;
        cfg->group_size = p->group_size;
        cfg->block_size = p->block_size;
        return MQ_OK;
    }
    return mq_set_error(MQ_STATUS_E_CONFIG, "unknown preset '%s'; valid presets: %s", name,
                        mq_preset_names());
}

/* Why cfg's scheme fields are no scheme the library writes, or NULL. The
 * reason is written into buf. */
static const char *scheme_problem(const mq_config *cfg, char *buf, size_t cap)
{
#define BAD(...) return snprintf(buf, cap, __VA_ARGS__), buf
    switch (cfg->dtype) {
    case MQ_FLOAT16:
        return NULL;
    case MQ_QINT8:
        if (cfg->block_size) BAD("blocks are for FP8 (FP8_BLOCK), not int8");
        if (cfg->group_size && cfg->symmetric && !cfg->weights_only)
            BAD("groups need int8 weights only (W8A16): vLLM's W8A8 int8 kernels take per-channel "
                "or per-tensor weights");
        break;
    case MQ_QINT4:
        if (cfg->block_size) BAD("blocks are for FP8 (FP8_BLOCK), not int4");
        if (!cfg->per_channel) BAD("int4 takes groups or per-channel scales, not one per tensor");
        if (cfg->group_size % 8 != 0)
            BAD("the int4 group size must be a multiple of 8 (a group packs into whole int32 "
                "words), not %zu",
                cfg->group_size);
        break;
    case MQ_QFP8:
        if (!cfg->symmetric) BAD("FP8 is symmetric (no zero points)");
        if (cfg->weights_only) BAD("the FP8 presets quantize activations too; weights only is int");
        if (cfg->group_size) BAD("FP8 takes per-channel scales or 128x128 blocks, not groups");
        if (cfg->block_size && !cfg->per_channel) BAD("blocks and per-tensor exclude each other");
        break;
    default:
        BAD("unknown dtype %d", (int)cfg->dtype);
    }
    if (cfg->group_size && !cfg->per_channel) BAD("groups and per-tensor exclude each other");
#undef BAD
    return NULL;
}

mq_status mq_config_check(const mq_config *cfg)
{
    mq_clear_error();
    char why[192];
    if (!cfg) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    const char *problem = scheme_problem(cfg, why, sizeof why);
    return problem ? mq_set_error(MQ_STATUS_E_CONFIG, "%s", problem) : MQ_OK;
}

const char *mq_config_preset(const mq_config *cfg)
{
    char why[192];
    if (!cfg || scheme_problem(cfg, why, sizeof why)) return NULL;
    switch (cfg->dtype) {
    case MQ_FLOAT16:
        return "FP16";
    case MQ_QFP8:
        return cfg->block_size ? "FP8_BLOCK" : "FP8_DYNAMIC";
    case MQ_QINT4:
        return cfg->symmetric ? "W4A16" : "W4A16_ASYM";
    default:
        if (!cfg->symmetric) return "W8A16_ASYM";
        return cfg->weights_only ? "W8A16" : "W8A8";
    }
}

/* ---- JSON file ---- */

typedef struct {
    const char *path;
    const char *key;
} json_ctx;

static mq_status key_error(const json_ctx *c, const char *cause)
{
    return mq_set_error(MQ_STATUS_E_CONFIG, "%s: key '%s': %s", c->path, c->key, cause);
}

static mq_status get_bool(const json_ctx *c, json_t *v, bool *out)
{
    if (!json_is_boolean(v)) return key_error(c, "expected true or false");
    *out = json_is_true(v);
    return MQ_OK;
}

/* One string out of `n` choices; *index is its position. */
static mq_status get_choice(const json_ctx *c, json_t *v, const char *const *choices, size_t n,
                            size_t *index)
{
    const char *s;

    if (!json_is_string(v)) return key_error(c, "expected a string");
    s = json_string_value(v);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, choices[i]) == 0) {
            *index = i;
            return MQ_OK;
        }
    }
    char list[128] = "";
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", choices[i]);
    }
    return mq_set_error(MQ_STATUS_E_CONFIG, "%s: key '%s': '%s' is not one of %s", c->path, c->key,
                        s, list);
}

static mq_status add_patterns(const json_ctx *c, json_t *v, mq_config *cfg, bool include)
{
    size_t i;
    json_t *item;
    mq_status st;

    if (!json_is_array(v)) return key_error(c, "expected an array of strings");
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item)) {
            char cause[64];
            snprintf(cause, sizeof cause, "element %zu is not a string", i);
            return key_error(c, cause);
        }
        st = include ? mq_config_add_include(cfg, json_string_value(item))
                     : mq_config_add_exclude(cfg, json_string_value(item));
        if (st != MQ_OK) {
            mq_error_prefix("%s: key '%s'", c->path, c->key);
            return st;
        }
    }
    return MQ_OK;
}

static mq_status apply_key(const json_ctx *c, json_t *v, mq_config *cfg)
{
    static const char *const dtypes[] = {"int8", "fp16", "int4", "fp8"};
    static const mq_qdtype dtype_values[] = {MQ_QINT8, MQ_FLOAT16, MQ_QINT4, MQ_QFP8};
    static const char *const schemes[] = {"sym", "asym"};
    size_t idx;
    mq_status st;

    if (strcmp(c->key, "dtype") == 0) {
        if ((st = get_choice(c, v, dtypes, 4, &idx)) == MQ_OK) cfg->dtype = dtype_values[idx];
        return st;
    }
    if (strcmp(c->key, "scheme") == 0) {
        if ((st = get_choice(c, v, schemes, 2, &idx)) == MQ_OK) cfg->symmetric = idx == 0;
        return st;
    }
    if (strcmp(c->key, "preset") == 0) return MQ_OK; /* applied first, see mq_config_load_json */
    if (strcmp(c->key, "group_size") == 0) {
        if (json_is_string(v) && strcmp(json_string_value(v), "channel") == 0) {
            cfg->group_size = 0;
            return MQ_OK;
        }
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) == 0)
            return key_error(c, "expected a positive integer, -1 or \"channel\"");
        cfg->group_size = json_integer_value(v) < 0 ? 0 : (size_t)json_integer_value(v);
        return MQ_OK;
    }
    if (strcmp(c->key, "per_channel") == 0) return get_bool(c, v, &cfg->per_channel);
    if (strcmp(c->key, "skip_nonfinite") == 0) return get_bool(c, v, &cfg->skip_nonfinite);
    if (strcmp(c->key, "fp16_saturate") == 0) return get_bool(c, v, &cfg->fp16_saturate);
    if (strcmp(c->key, "weights_only") == 0) return get_bool(c, v, &cfg->weights_only);
    if (strcmp(c->key, "follow_symlinks") == 0) return get_bool(c, v, &cfg->follow_symlinks);
    if (strcmp(c->key, "include") == 0) return add_patterns(c, v, cfg, true);
    /* "ignore" is what compressed-tensors' quantization_config calls exclude. */
    if (strcmp(c->key, "exclude") == 0 || strcmp(c->key, "ignore") == 0)
        return add_patterns(c, v, cfg, false);
    if (strcmp(c->key, "device") == 0) {
        if (!json_is_string(v)) return key_error(c, "expected a string");
        if (json_string_length(v) == 0) return key_error(c, "empty device name");
        return mq_config_set_device(cfg, json_string_value(v));
    }
    return key_error(c, "unknown key");
}

/* Undoes a partial load: drops appended patterns and the new device string and
 * restores the scalars. The arrays may have moved in realloc, so their current
 * pointers are kept; the extra slots are harmless. */
static void rollback(mq_config *cfg, const mq_config *saved)
{
    char **include = cfg->include, **exclude = cfg->exclude;

    if (include) free_list(include, saved->n_include, cfg->n_include);
    if (exclude) free_list(exclude, saved->n_exclude, cfg->n_exclude);
    free(cfg->device);
    *cfg = *saved;
    cfg->include = include;
    cfg->exclude = exclude;
}

mq_status mq_config_load_json(mq_config *cfg, const char *path)
{
    mq_clear_error();
    mq_config saved;
    json_ctx c = {path, NULL};
    json_error_t jerr;
    json_t *root = NULL, *v;
    mq_status st = MQ_OK;

    if (!cfg || !path) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    if ((st = mq_infile_json(path, JSON_REJECT_DUPLICATES, MQ_STATUS_E_CONFIG, &root, &jerr)) !=
        MQ_OK) {
        mq_error_prefix("config file");
        goto done;
    }
    if (!root) {
        st = mq_set_error(MQ_STATUS_E_CONFIG, "%s: line %d, column %d: %s", path, jerr.line,
                          jerr.column, jerr.text);
        goto done;
    }
    if (!json_is_object(root)) {
        st = mq_set_error(MQ_STATUS_E_CONFIG, "%s: expected a JSON object at the top level", path);
        goto done;
    }
    /* The old device string is kept aside, not freed, until the whole file applied. */
    saved = *cfg;
    cfg->device = NULL;
    if ((v = json_object_get(root, "preset"))) {
        c.key = "preset";
        if (!json_is_string(v)) {
            st = key_error(&c, "expected a string");
        } else if ((st = mq_config_set_preset(cfg, json_string_value(v))) != MQ_OK) {
            mq_error_prefix("%s: key 'preset'", path);
        }
        if (st != MQ_OK) {
            rollback(cfg, &saved);
            goto done;
        }
    }
    json_object_foreach(root, c.key, v)
    {
        if ((st = apply_key(&c, v, cfg)) != MQ_OK) break;
    }
    if (st != MQ_OK) {
        rollback(cfg, &saved);
    } else if (json_object_get(root, "device")) {
        free(saved.device);
    } else {
        cfg->device = saved.device;
    }
done:
    json_decref(root);
    return st;
}
