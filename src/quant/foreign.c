/* Foreign quantized layouts. Their tensors are integers or bytes that the
 * planner would otherwise copy as "not a float weight", so a GPTQ checkpoint
 * without a config.json came out as a model that loads into garbage. The
 * names below are the ones each tool writes: AutoGPTQ and AutoAWQ share
 * qweight/qzeros/scales(/g_idx); bitsandbytes stores a 4-bit weight's quant
 * state beside it (absmax, quant_map, nested_*, quant_state.bitsandbytes__*)
 * and an 8-bit weight's row scales as SCB (with weight_format). */
#include "foreign.h"

#include "error.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The last dotted component of a name. */
static const char *leaf(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Whether the module of `name` (all before its last '.') has a tensor `leaf2`. */
static bool sibling(const mq_model *m, const char *name, const char *leaf2)
{
    const char *dot = strrchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) + 1 : 0, k = strlen(leaf2);
    char *s = malloc(n + k + 1);
    if (!s) return false;
    memcpy(s, name, n);
    memcpy(s + n, leaf2, k + 1);
    bool yes = mq_model_index(m, s) >= 0;
    free(s);
    return yes;
}

const mq_tensor *mq_fp8_block_scale(const mq_model *m, const mq_tensor *t)
{
    if (t->dtype != MQ_DTYPE_F8_E4M3) return NULL;
    size_t n = strlen(t->name), k = strlen(MQ_SCALE_INV_SUFFIX);
    char *s = malloc(n + k + 1);
    if (!s) return NULL;
    memcpy(s, t->name, n);
    memcpy(s + n, MQ_SCALE_INV_SUFFIX, k + 1);
    const mq_tensor *sc = mq_model_find(m, s);
    free(s);
    return sc;
}

/* Whether t is the weight_scale_inv of an FP8 weight. */
static bool is_block_scale(const mq_model *m, const mq_tensor *t)
{
    size_t n = strlen(t->name), k = strlen(MQ_SCALE_INV_SUFFIX);
    if (!ends_with(t->name, MQ_SCALE_INV_SUFFIX)) return false;
    char *w = strndup(t->name, n - k);
    const mq_tensor *wt = w ? mq_model_find(m, w) : NULL;
    free(w);
    return wt && wt->dtype == MQ_DTYPE_F8_E4M3;
}

const char *mq_foreign_layout(const mq_model *m, const mq_tensor *t, bool fp8_blocks)
{
    const char *l = leaf(t->name);
    if (!fp8_blocks && (mq_fp8_block_scale(m, t) || is_block_scale(m, t)))
        return "FP8 block (weight_scale_inv; read only in a model directory whose config.json "
               "gives its weight_block_size)";
    if (!strcmp(l, "qweight") || !strcmp(l, "qzeros")) return "AutoGPTQ/AutoAWQ";
    /* scales and g_idx are ordinary names alone; beside packed words they are GPTQ's. */
    if ((!strcmp(l, "scales") || !strcmp(l, "g_idx")) &&
        (sibling(m, t->name, "qweight") || sibling(m, t->name, "qzeros")))
        return "AutoGPTQ/AutoAWQ";
    static const char *const bnb_suffixes[] = {".weight.absmax", ".weight.quant_map",
                                               ".weight.nested_absmax", ".weight.nested_quant_map"};
    for (size_t k = 0; k < sizeof bnb_suffixes / sizeof *bnb_suffixes; k++)
        if (ends_with(t->name, bnb_suffixes[k])) return "bitsandbytes";
    if (strstr(t->name, ".weight.quant_state.bitsandbytes__")) return "bitsandbytes";
    if (!strcmp(l, "SCB") || !strcmp(l, "weight_format")) return "bitsandbytes";
    return NULL;
}

mq_status mq_check_no_foreign(const mq_model *m, bool fp8_blocks)
{
    for (size_t i = 0; i < m->count; i++) {
        const char *what = mq_foreign_layout(m, &m->tensors[i], fp8_blocks);
        if (what)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "tensor '%s' is stored in the %s quantized layout, which is not "
                                "read; start from the float model",
                                m->tensors[i].name, what);
    }
    return MQ_OK;
}

mq_status mq_check_no_mxfp4(const mq_model *m)
{
    static const char blocks[] = "_blocks", scales[] = "_scales";
    for (size_t i = 0; i < m->count; i++) {
        const mq_tensor *t = &m->tensors[i];
        size_t n = strlen(t->name), k = sizeof blocks - 1;
        if (t->dtype != MQ_DTYPE_U8 || n <= k || strcmp(t->name + n - k, blocks) != 0) continue;
        char *s = malloc(n - k + sizeof scales);
        if (!s) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
        memcpy(s, t->name, n - k);
        memcpy(s + n - k, scales, sizeof scales);
        bool pair = mq_model_index(m, s) >= 0;
        free(s);
        if (pair)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "tensor '%s' is stored in gpt-oss's MXFP4 layout (with its "
                                "_scales), read only in a model directory whose config.json "
                                "says quant_method \"mxfp4\"; start from the float model",
                                t->name);
    }
    return MQ_OK;
}
