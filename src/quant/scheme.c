/* The scheme value (see scheme.h): the one place that reads mq_config's
 * scheme fields, checks that they form a scheme the library writes, and
 * derives the format, packing, activations, preset and label from them. */
#include "scheme.h"

#include "config.h"
#include "error.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Whether the caller's config has the observer fields (a smaller, older one
 * lacks them: min-max). */
static bool has_observer(const mq_config *cfg)
{
    return MQ_CONFIG_HAS(cfg, observer_patience);
}

/* The observer of cfg and its options, 0 taking the defaults. */
static void set_observer(mq_scheme *s, const mq_config *cfg)
{
    s->mse = mq_obs_mse_defaults();
    s->observer = MQ_OBSERVER_MINMAX;
    if (!has_observer(cfg) || cfg->observer != MQ_OBSERVER_MSE || s->kind == MQ_SCHEME_FP16) return;
    s->observer = MQ_OBSERVER_MSE;
    if (cfg->observer_maxshrink > 0.0) s->mse.maxshrink = cfg->observer_maxshrink;
    if (cfg->observer_grid > 0.0) s->mse.grid = cfg->observer_grid;
    if (cfg->observer_norm > 0.0) s->mse.norm = cfg->observer_norm;
    if (cfg->observer_patience > 0) s->mse.patience = cfg->observer_patience;
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
    case MQ_QMXFP4:
    case MQ_QMXFP8:
        /* The MX formats are defined by their groups of 32 with e8m0 scales. */
        if (!cfg->symmetric) BAD("the MX formats are symmetric (no zero points)");
        if (cfg->block_size) BAD("the MX formats take groups of 32, not blocks");
        if (cfg->group_size != 32 || !cfg->per_channel)
            BAD("the MX formats take groups of 32 values, not %s",
                cfg->per_channel ? "another group size" : "one scale per tensor");
        break;
    case MQ_QNVFP4:
        /* compressed-tensors' NVFP4A16: groups of 16 under one global scale. */
        if (!cfg->symmetric) BAD("NVFP4 is symmetric (no zero points)");
        if (cfg->block_size) BAD("NVFP4 takes groups of 16, not blocks");
        if (cfg->group_size != 16 || !cfg->per_channel)
            BAD("NVFP4 takes groups of 16 values, not %s",
                cfg->per_channel ? "another group size" : "one scale per tensor");
        if (!cfg->weights_only)
            BAD("NVFP4 with quantized activations (W4A4) needs an activation global scale from "
                "calibration data; NVFP4A16 (weights only) needs none");
        if (has_observer(cfg) && cfg->observer == MQ_OBSERVER_MSE)
            BAD("the mse observer does not search NVFP4's scales (min-max only)");
        break;
    default:
        BAD("unknown dtype %d", (int)cfg->dtype);
    }
    if (cfg->group_size && !cfg->per_channel) BAD("groups and per-tensor exclude each other");
    if (has_observer(cfg) && cfg->observer == MQ_OBSERVER_MSE && cfg->dtype != MQ_FLOAT16) {
        if (!cfg->per_channel)
            BAD("the mse observer takes per-channel, group or block scales, not one per tensor");
        if (cfg->observer_maxshrink < 0.0 || cfg->observer_maxshrink > 1.0 ||
            cfg->observer_grid < 0.0 || cfg->observer_norm < 0.0 || !isfinite(cfg->observer_grid) ||
            !isfinite(cfg->observer_norm))
            BAD("observer options: maxshrink in (0, 1], grid and norm positive");
    } else if (has_observer(cfg) && cfg->observer != MQ_OBSERVER_MINMAX &&
               cfg->observer != MQ_OBSERVER_MSE) {
        BAD("unknown observer %d", (int)cfg->observer);
    }
    /* The matrix weighs the search's error: without the search it would be
     * silently unused. */
    if (MQ_CONFIG_HAS(cfg, imatrix) && cfg->imatrix && cfg->observer != MQ_OBSERVER_MSE)
        BAD("an importance matrix (imatrix) weighs the mse observer's search: it takes "
            "observer mse");
#undef BAD
    return NULL;
}

/* The code kind, its width and its unpacked element type. */
static void set_kind(mq_scheme *s, mq_qdtype d)
{
    switch (d) {
    case MQ_QINT4:
        s->kind = MQ_SCHEME_INT4;
        s->qkind = MQ_QK_INT4;
        s->bits = 4;
        s->code_dtype = MQ_DTYPE_I8;
        break;
    case MQ_QFP8:
        s->kind = MQ_SCHEME_FP8_E4M3;
        s->qkind = MQ_QK_FP8;
        s->bits = 8;
        s->float_codes = true;
        s->code_dtype = MQ_DTYPE_F8_E4M3;
        break;
    case MQ_QMXFP4:
        s->kind = MQ_SCHEME_MXFP4;
        s->qkind = MQ_QK_MXFP4;
        s->bits = 4;
        s->float_codes = true;
        s->code_dtype = MQ_DTYPE_U8;
        break;
    case MQ_QMXFP8:
        s->kind = MQ_SCHEME_MXFP8;
        s->qkind = MQ_QK_MXFP8;
        s->bits = 8;
        s->float_codes = true;
        s->code_dtype = MQ_DTYPE_F8_E4M3;
        break;
    case MQ_QNVFP4:
        s->kind = MQ_SCHEME_NVFP4;
        s->qkind = MQ_QK_NVFP4;
        s->bits = 4;
        s->float_codes = true;
        s->code_dtype = MQ_DTYPE_U8;
        break;
    case MQ_FLOAT16:
        s->kind = MQ_SCHEME_FP16;
        s->qkind = MQ_QK_INT8; /* unused: the cast runs no quantize kernel */
        s->bits = 16;
        s->float_codes = true;
        s->code_dtype = MQ_DTYPE_F16;
        break;
    default:
        s->kind = MQ_SCHEME_INT8;
        s->qkind = MQ_QK_INT8;
        s->bits = 8;
        s->code_dtype = MQ_DTYPE_I8;
        break;
    }
}

/* compressed-tensors' preset family of a valid scheme (the first name of
 * each in mq_config_set_preset's table). */
static const char *preset_of(const mq_scheme *s, bool weights_only)
{
    switch (s->kind) {
    case MQ_SCHEME_FP16:
        return "FP16";
    case MQ_SCHEME_FP8_E4M3:
        return s->block ? "FP8_BLOCK" : "FP8_DYNAMIC";
    case MQ_SCHEME_INT4:
        return s->symmetric ? "W4A16" : "W4A16_ASYM";
    case MQ_SCHEME_MXFP4:
        return weights_only ? "MXFP4A16" : "MXFP4";
    case MQ_SCHEME_MXFP8:
        return weights_only ? "MXFP8A16" : "MXFP8";
    case MQ_SCHEME_NVFP4:
        return "NVFP4A16";
    default:
        if (!s->symmetric) return "W8A16_ASYM";
        return weights_only ? "W8A16" : "W8A8";
    }
}

static void set_label(mq_scheme *s, bool weights_only)
{
    char strat[24];
    if (s->kind == MQ_SCHEME_FP16) {
        snprintf(s->label, sizeof s->label, "fp16");
        return;
    }
    if (s->gran == MQ_GRAN_BLOCK)
        snprintf(strat, sizeof strat, "block%zu", s->block);
    else if (s->gran == MQ_GRAN_GROUP)
        snprintf(strat, sizeof strat, "group%zu", s->group);
    else
        snprintf(strat, sizeof strat, "%s", s->gran == MQ_GRAN_CHANNEL ? "channel" : "tensor");
    if (s->kind == MQ_SCHEME_FP8_E4M3)
        snprintf(s->label, sizeof s->label, "fp8-e4m3-%s", strat);
    else if (s->kind == MQ_SCHEME_NVFP4)
        snprintf(s->label, sizeof s->label, "nvfp4-%s-weights-only", strat);
    else if (s->kind == MQ_SCHEME_MXFP4 || s->kind == MQ_SCHEME_MXFP8)
        snprintf(s->label, sizeof s->label, "%s-%s%s",
                 s->kind == MQ_SCHEME_MXFP4 ? "mxfp4" : "mxfp8", strat,
                 weights_only ? "-weights-only" : "");
    else
        snprintf(s->label, sizeof s->label, "%s-%s-%s%s",
                 s->kind == MQ_SCHEME_INT4 ? "int4" : "int8", s->symmetric ? "sym" : "asym", strat,
                 s->kind == MQ_SCHEME_INT8 && s->symmetric && weights_only ? "-weights-only" : "");
}

/* Fills s from a config of a known size; returns why its scheme fields form
 * no scheme (written into why), or NULL. Sets no message. */
static const char *build(mq_scheme *s, const mq_config *cfg, char *why, size_t cap)
{
    const char *problem = scheme_problem(cfg, why, cap);
    if (problem) return problem;
    memset(s, 0, sizeof *s);
    s->target = cfg->dtype;
    set_kind(s, cfg->dtype);
    bool cast = s->kind == MQ_SCHEME_FP16;
    s->symmetric = cfg->symmetric; /* FP8's is true: the check above says so */
    /* The cast has no groups or blocks; its per_channel reaches only the report. */
    if (!cast && s->kind == MQ_SCHEME_FP8_E4M3 && cfg->block_size) {
        s->gran = MQ_GRAN_BLOCK;
        s->block = cfg->block_size;
    } else if (!cast && cfg->group_size) {
        s->gran = MQ_GRAN_GROUP;
        s->group = cfg->group_size;
    } else {
        s->gran = cfg->per_channel ? MQ_GRAN_CHANNEL : MQ_GRAN_TENSOR;
    }
    bool mx = s->kind == MQ_SCHEME_MXFP4 || s->kind == MQ_SCHEME_MXFP8;
    bool nv = s->kind == MQ_SCHEME_NVFP4;
    if (cast)
        s->format = MQ_FORMAT_NONE;
    else if (nv)
        s->format = MQ_FORMAT_NVFP4_PACK_QUANTIZED;
    else if (mx)
        s->format =
            s->kind == MQ_SCHEME_MXFP4 ? MQ_FORMAT_MXFP4_PACK_QUANTIZED : MQ_FORMAT_MXFP8_QUANTIZED;
    else if (s->kind == MQ_SCHEME_FP8_E4M3)
        s->format = MQ_FORMAT_FLOAT_QUANTIZED;
    else if (s->kind == MQ_SCHEME_INT8 && s->symmetric && !cfg->weights_only && !s->group)
        s->format = MQ_FORMAT_INT_QUANTIZED;
    else
        s->format = MQ_FORMAT_PACK_QUANTIZED;
    s->codes_per_word = s->format == MQ_FORMAT_PACK_QUANTIZED ? 32 / s->bits : 0;
    s->scale_dtype = mx ? MQ_DTYPE_U8 : nv ? MQ_DTYPE_F8_E4M3 : MQ_SCALE_LIKE_WEIGHT;
    s->scale_enc = mx ? MQ_SCALE_E8M0 : nv ? MQ_SCALE_E4M3_GLOBAL : MQ_SCALE_LINEAR;
    if (mx)
        s->acts = cfg->weights_only            ? MQ_ACT_NONE
                  : s->kind == MQ_SCHEME_MXFP4 ? MQ_ACT_MXFP4_GROUP_32
                                               : MQ_ACT_MXFP8_GROUP_32;
    else if (s->kind == MQ_SCHEME_FP8_E4M3)
        s->acts = s->block ? MQ_ACT_FP8_GROUP_128 : MQ_ACT_FP8_TOKEN;
    else
        s->acts = s->format == MQ_FORMAT_INT_QUANTIZED ? MQ_ACT_INT8_TOKEN : MQ_ACT_NONE;
    s->preset = preset_of(s, cfg->weights_only);
    set_label(s, cfg->weights_only);
    set_observer(s, cfg);
    return NULL;
}

mq_status mq_scheme_init(mq_scheme *s, const mq_config *cfg)
{
    char why[192];
    mq_status st = mq_config_usable(cfg);
    if (st != MQ_OK) return st;
    const char *problem = build(s, cfg, why, sizeof why);
    return problem ? mq_set_error(MQ_STATUS_E_CONFIG, "%s", problem) : MQ_OK;
}

mq_status mq_config_check(const mq_config *cfg)
{
    mq_clear_error();
    mq_scheme s;
    return mq_scheme_init(&s, cfg);
}

const char *mq_config_preset(const mq_config *cfg)
{
    char why[192];
    mq_scheme s;
    if (!mq_config_size_ok(cfg) || build(&s, cfg, why, sizeof why)) return NULL;
    return s.preset;
}

bool mq_scheme_quantizes(const mq_scheme *s)
{
    return s->kind != MQ_SCHEME_FP16;
}

mq_dtype mq_scheme_scale_dtype(const mq_scheme *s, mq_dtype w)
{
    return s->scale_dtype == MQ_SCALE_LIKE_WEIGHT ? w : s->scale_dtype;
}

const char *mq_qformat_name(mq_qformat f)
{
    switch (f) {
    case MQ_FORMAT_INT_QUANTIZED:
        return "int-quantized";
    case MQ_FORMAT_FLOAT_QUANTIZED:
        return "float-quantized";
    case MQ_FORMAT_PACK_QUANTIZED:
        return "pack-quantized";
    case MQ_FORMAT_MXFP4_PACK_QUANTIZED:
        return "mxfp4-pack-quantized";
    case MQ_FORMAT_MXFP8_QUANTIZED:
        return "mxfp8-quantized";
    case MQ_FORMAT_NVFP4_PACK_QUANTIZED:
        return "nvfp4-pack-quantized";
    default:
        return "none";
    }
}

mq_status mq_settings_init(mq_settings *s, const mq_config *cfg)
{
    mq_config defaults;
    memset(s, 0, sizeof *s);
    if (!cfg) {
        mq_config_init(&defaults);
        return mq_scheme_init(&s->scheme, &defaults);
    }
    mq_status st = mq_scheme_init(&s->scheme, cfg);
    if (st != MQ_OK) return st;
    s->include = (const char *const *)cfg->include;
    s->n_include = cfg->n_include;
    s->exclude = (const char *const *)cfg->exclude;
    s->n_exclude = cfg->n_exclude;
    s->skip_nonfinite = cfg->skip_nonfinite;
    s->fp16_saturate = cfg->fp16_saturate;
    s->follow_symlinks = cfg->follow_symlinks;
    s->dequant_f32 = MQ_CONFIG_HAS(cfg, dequant_f32) && cfg->dequant_f32;
    s->memory_limit = cfg->memory_limit;
    s->progress = cfg->progress;
    s->progress_user = cfg->progress_user;
    s->device.spec = cfg->device;
    s->device.handle = cfg->device_handle;
    s->device.max_alloc_override = cfg->max_alloc_override;
    s->imatrix_path = MQ_CONFIG_HAS(cfg, imatrix) ? cfg->imatrix : NULL;
    return MQ_OK;
}

const char *mq_observer_name(mq_observer o)
{
    return o == MQ_OBSERVER_MSE ? "mse" : "minmax";
}
