/* mq_config: defaults, owned pattern lists and device string, and the JSON
 * config file. A file that fails to load leaves the config as it was, so a
 * caller never runs with half of a broken file applied. */
#include "config.h"
#include "monoquant.h"

#include "error.h"
#include "infile.h"
#include "pattern.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The sizes of every released mq_config, each a prefix of ours, the fields
 * a smaller config lacks taking their defaults (all of them 0); so the
 * whole-struct copies in mq_config_load_json (saved, rollback) copy
 * struct_size bytes, not sizeof(mq_config), and a key whose field the
 * caller's struct lacks is refused (MQ_CONFIG_HAS).
 *   0.2.0: everything up to the observer fields (block_size, a size_t, ends
 *          it, so no tail padding);
 *   the observer: up to observer_patience, padded to the struct's alignment
 *          (the same as ours: dequant_f32 adds no stricter member);
 *   dequant_f32: with dequant_f32 last. On an ABI where dequant_f32 fits
 *          in the observer config's tail padding the two sizes are equal;
 *          that padding was zeroed by that caller's mq_config_init(), so it
 *          reads as dequant_f32 = false, the default;
 *   ours: with imatrix last. */
#define CONFIG_SIZE_0_2 offsetof(mq_config, observer)
#define CONFIG_END_OBSERVER (offsetof(mq_config, observer_patience) + sizeof(unsigned))
#define CONFIG_SIZE_OBSERVER                                                                       \
    ((CONFIG_END_OBSERVER + _Alignof(mq_config) - 1) / _Alignof(mq_config) * _Alignof(mq_config))

#define CONFIG_SIZE_DEQUANT offsetof(mq_config, imatrix)

static bool known_size(size_t size)
{
    return size == CONFIG_SIZE_0_2 || size == CONFIG_SIZE_OBSERVER || size == CONFIG_SIZE_DEQUANT ||
           size == sizeof(mq_config);
}

/* The owned imatrix path, NULL in a config too small to hold it. */
static char **imatrix_field(mq_config *cfg)
{
    return MQ_CONFIG_HAS(cfg, imatrix) ? &cfg->imatrix : NULL;
}

bool mq_config_size_ok(const mq_config *cfg)
{
    return cfg && known_size(cfg->struct_size);
}

void mq_config_init_sized(mq_config *cfg, size_t struct_size)
{
    if (!cfg || struct_size < sizeof cfg->struct_size) return;
    if (!known_size(struct_size)) {
        /* Only the first member is common to every version: the rest of the
         * caller's struct may be smaller than ours. */
        cfg->struct_size = struct_size;
        return;
    }
    memset(cfg, 0, struct_size);
    cfg->struct_size = struct_size;
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

mq_status mq_config_usable(const mq_config *cfg)
{
    if (!cfg) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    if (!known_size(cfg->struct_size))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "config: struct_size is %zu, but libmonoquant %s takes a mq_config of "
                            "%zu bytes (was it filled by mq_config_init() from another version's "
                            "header, or not at all?)",
                            cfg->struct_size, MQ_VERSION_STRING, sizeof(mq_config));
    return MQ_OK;
}

void mq_config_free(mq_config *cfg)
{
    if (!cfg || !known_size(cfg->struct_size)) return;
    if (cfg->include) free_list(cfg->include, 0, cfg->n_include);
    if (cfg->exclude) free_list(cfg->exclude, 0, cfg->n_exclude);
    free(cfg->include);
    free(cfg->exclude);
    free(cfg->device);
    if (imatrix_field(cfg)) free(cfg->imatrix);
    mq_config_init_sized(cfg, cfg->struct_size);
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
    mq_status st = mq_config_usable(cfg);
    if (st != MQ_OK) return st;
    if (!pattern) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    return list_append(&cfg->include, &cfg->n_include, pattern);
}

mq_status mq_config_add_exclude(mq_config *cfg, const char *pattern)
{
    mq_clear_error();
    mq_status st = mq_config_usable(cfg);
    if (st != MQ_OK) return st;
    if (!pattern) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    return list_append(&cfg->exclude, &cfg->n_exclude, pattern);
}

/* NULL means "auto": the backend then looks at $MQ_DEVICE. */
mq_status mq_config_set_device(mq_config *cfg, const char *device)
{
    mq_clear_error();
    char *copy = NULL;
    mq_status st = mq_config_usable(cfg);

    if (st != MQ_OK) return st;
    if (device && !(copy = strdup(device)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "config: out of memory");
    free(cfg->device);
    cfg->device = copy;
    return MQ_OK;
}

mq_status mq_config_set_imatrix(mq_config *cfg, const char *path)
{
    mq_clear_error();
    char *copy = NULL;
    mq_status st = mq_config_usable(cfg);

    if (st != MQ_OK) return st;
    if (!imatrix_field(cfg))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "config: this caller's mq_config has no imatrix field");
    if (path && !(copy = strdup(path)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "config: out of memory");
    free(cfg->imatrix);
    cfg->imatrix = copy;
    return MQ_OK;
}

/* ---- presets ---- */

/* compressed-tensors' NVFP4 preset quantizes activations to e2m1 under a
 * static global scale, which only calibration data gives. */
#define NVFP4_W4A4                                                                                 \
    "preset NVFP4 (W4A4) needs a global scale for the input activations, which only calibration "  \
    "data gives (monoquant quantizes without data); NVFP4A16 writes the same weights with "        \
    "activations left in float"

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
    {"MXFP4A16", MQ_QMXFP4, true, true, 32, 0},  {"MXFP4", MQ_QMXFP4, true, false, 32, 0},
    {"MXFP8A16", MQ_QMXFP8, true, true, 32, 0},  {"MXFP8", MQ_QMXFP8, true, false, 32, 0},
    {"NVFP4A16", MQ_QNVFP4, true, true, 16, 0},  {"FP16", MQ_FLOAT16, true, false, 0, 0},
};

const char *mq_preset_names(void)
{
    return "W8A8, INT8, W8A16, W8A16_ASYM, W4A16, W4A16_ASYM, FP8_DYNAMIC, FP8_BLOCK, MXFP4A16, "
           "MXFP4, MXFP8A16, MXFP8, NVFP4A16, FP16";
}

mq_status mq_config_set_preset(mq_config *cfg, const char *name)
{
    mq_clear_error();
    mq_status st = mq_config_usable(cfg);
    if (st != MQ_OK) return st;
    if (!name) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
    if (strcasecmp(name, "NVFP4") == 0) return mq_set_error(MQ_STATUS_E_CONFIG, "%s", NVFP4_W4A4);
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

/* A positive finite number of a key. */
static mq_status get_positive(const json_ctx *c, json_t *v, double *out)
{
    double x = json_is_number(v) ? json_number_value(v) : -1.0;
    if (!(x > 0.0) || !isfinite(x)) return key_error(c, "expected a positive number");
    *out = x;
    return MQ_OK;
}

/* "observer" and its options; each option needs the field in the caller's
 * struct (a smaller, older config lacks them). */
static mq_status apply_observer(const json_ctx *c, json_t *v, mq_config *cfg)
{
    static const char *const observers[] = {"minmax", "mse"};
    size_t idx = 0;
    mq_status st;
    if (!MQ_CONFIG_HAS(cfg, observer_patience))
        return key_error(c, "not known to this caller's mq_config");
    if (strcmp(c->key, "observer") == 0) {
        if ((st = get_choice(c, v, observers, 2, &idx)) == MQ_OK)
            cfg->observer = idx ? MQ_OBSERVER_MSE : MQ_OBSERVER_MINMAX;
        return st;
    }
    if (strcmp(c->key, "observer_maxshrink") == 0) {
        if ((st = get_positive(c, v, &cfg->observer_maxshrink)) == MQ_OK &&
            cfg->observer_maxshrink > 1.0)
            return key_error(c, "expected a number in (0, 1]");
        return st;
    }
    if (strcmp(c->key, "observer_grid") == 0) return get_positive(c, v, &cfg->observer_grid);
    if (strcmp(c->key, "observer_norm") == 0) return get_positive(c, v, &cfg->observer_norm);
    if (strcmp(c->key, "observer_patience") == 0) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000)
            return key_error(c, "expected a positive integer");
        cfg->observer_patience = (unsigned)json_integer_value(v);
        return MQ_OK;
    }
    return key_error(c, "unknown key");
}

static mq_status apply_key(const json_ctx *c, json_t *v, mq_config *cfg)
{
    static const char *const schemes[] = {"sym", "asym"};
    size_t idx = 0;
    mq_status st;

    if (strcmp(c->key, "dtype") == 0) {
        if (!json_is_string(v)) return key_error(c, "expected a string");
        if (!mq_qdtype_parse(json_string_value(v), &cfg->dtype))
            return mq_set_error(MQ_STATUS_E_CONFIG, "%s: key '%s': '%s' is not one of %s", c->path,
                                c->key, json_string_value(v), mq_qdtype_names());
        return MQ_OK;
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
    if (strncmp(c->key, "observer", 8) == 0) return apply_observer(c, v, cfg);
    if (strcmp(c->key, "dequant_dtype") == 0) {
        const char *d = json_string_value(v);
        if (!MQ_CONFIG_HAS(cfg, dequant_f32))
            return key_error(c, "not known to this caller's mq_config");
        if (!d || (strcmp(d, "f32") != 0 && strcmp(d, "model") != 0))
            return key_error(c, "expected \"f32\" or \"model\"");
        cfg->dequant_f32 = strcmp(d, "f32") == 0;
        return MQ_OK;
    }
    if (strcmp(c->key, "include") == 0) return add_patterns(c, v, cfg, true);
    /* "ignore" is what compressed-tensors' quantization_config calls exclude. */
    if (strcmp(c->key, "exclude") == 0 || strcmp(c->key, "ignore") == 0)
        return add_patterns(c, v, cfg, false);
    if (strcmp(c->key, "device") == 0) {
        if (!json_is_string(v)) return key_error(c, "expected a string");
        if (json_string_length(v) == 0) return key_error(c, "empty device name");
        return mq_config_set_device(cfg, json_string_value(v));
    }
    if (strcmp(c->key, "imatrix") == 0) {
        if (!imatrix_field(cfg)) return key_error(c, "not known to this caller's mq_config");
        if (!json_is_string(v) || json_string_length(v) == 0)
            return key_error(c, "expected the path of an importance matrix");
        return mq_config_set_imatrix(cfg, json_string_value(v));
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
    if (imatrix_field(cfg)) free(cfg->imatrix);
    memcpy(cfg, saved, saved->struct_size);
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

    if ((st = mq_config_usable(cfg)) != MQ_OK) return st;
    if (!path) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "config: NULL argument");
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
    memset(&saved, 0, sizeof saved);
    memcpy(&saved, cfg, cfg->struct_size);
    cfg->device = NULL;
    if (imatrix_field(cfg)) cfg->imatrix = NULL;
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
    if (st == MQ_OK && imatrix_field(cfg)) {
        if (json_object_get(root, "imatrix")) {
            free(saved.imatrix);
        } else {
            cfg->imatrix = saved.imatrix;
        }
    }
done:
    json_decref(root);
    return st;
}
