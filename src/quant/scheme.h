/* The quantization scheme as one value, built once from the public mq_config
 * and checked there, and the settings of a run around it. Everything below
 * the public API (layout, planner, stream, multi-device, config.json, report,
 * eval) takes these, never the config, so a new kind of code is a new row of
 * the scheme table rather than a new test of mq_config's fields everywhere. */
#ifndef MQ_SCHEME_H
#define MQ_SCHEME_H

#include "backend.h"
#include "config.h"
#include "monoquant.h"
#include "observer.h"
#include "reference.h"

/* What the codes are. The FP16 cast writes no codes and no scales. */
typedef enum {
    MQ_SCHEME_INT8 = 0,
    MQ_SCHEME_INT4,
    MQ_SCHEME_FP8_E4M3,
    MQ_SCHEME_FP16,
    MQ_SCHEME_MXFP4, /* e2m1 codes, e8m0 scales per 32 */
    MQ_SCHEME_MXFP8, /* e4m3 codes, e8m0 scales per 32 */
    MQ_SCHEME_NVFP4, /* e2m1 codes, e4m3 scales per 16 under an fp32 global scale */
} mq_scheme_kind;

/* How many values share one scale (and zero point). */
typedef enum {
    MQ_GRAN_TENSOR = 0, /* one in all */
    MQ_GRAN_CHANNEL,    /* one per output channel (the first dimension) */
    MQ_GRAN_GROUP,      /* `group` consecutive values of the last dimension */
    MQ_GRAN_BLOCK,      /* `block` x `block` squares of a 2-D weight */
} mq_granularity;

/* compressed-tensors' format of the output; NONE for the cast. */
typedef enum {
    MQ_FORMAT_INT_QUANTIZED = 0,
    MQ_FORMAT_PACK_QUANTIZED,
    MQ_FORMAT_FLOAT_QUANTIZED,
    MQ_FORMAT_NONE,
    MQ_FORMAT_MXFP4_PACK_QUANTIZED, /* two e2m1 codes a byte in weight_packed */
    MQ_FORMAT_MXFP8_QUANTIZED,      /* e4m3 codes in weight */
    MQ_FORMAT_NVFP4_PACK_QUANTIZED, /* as MXFP4's, with weight_global_scale */
} mq_qformat;

/* How a stored scale becomes a multiplier: a plain float of scale_dtype,
 * (the MX kinds) a U8 power-of-two exponent x, 2^(x - 127) (e8m0), or
 * (NVFP4) an e4m3 value divided by the tensor's fp32 global scale. */
typedef enum { MQ_SCALE_LINEAR = 0, MQ_SCALE_E8M0, MQ_SCALE_E4M3_GLOBAL } mq_scale_encoding;

/* The input activations a loader quantizes at run time (config.json). */
typedef enum {
    MQ_ACT_NONE = 0,       /* weights only */
    MQ_ACT_INT8_TOKEN,     /* dynamic int8, one scale per token (W8A8) */
    MQ_ACT_FP8_TOKEN,      /* dynamic fp8, one scale per token (FP8_DYNAMIC) */
    MQ_ACT_FP8_GROUP_128,  /* dynamic fp8, groups of 128 (FP8_BLOCK) */
    MQ_ACT_MXFP4_GROUP_32, /* dynamic MX fp4, groups of 32 with e8m0 scales (MXFP4) */
    MQ_ACT_MXFP8_GROUP_32, /* dynamic MX fp8, groups of 32 with e8m0 scales (MXFP8) */
} mq_act;

/* mq_scheme.scale_dtype: the scales take the dtype of the weight they scale. */
#define MQ_SCALE_LIKE_WEIGHT MQ_DTYPE_COUNT_

typedef struct {
    mq_qdtype target; /* the public target it was built from (its name is the report's dtype) */
    mq_scheme_kind kind;
    mq_qkind qkind; /* the kernels' kind (quantizing kinds only) */
    unsigned bits;  /* code width: 8 or 4; 16 for the cast */
    bool float_codes;
    bool symmetric; /* no zero points */
    mq_granularity gran;
    size_t group;        /* MQ_GRAN_GROUP: values per group, else 0 */
    size_t block;        /* MQ_GRAN_BLOCK: the edge of a block, else 0 */
    mq_dtype code_dtype; /* one unpacked code: I8 or F8_E4M3 (F16 for the cast) */
    /* Codes per I32 word of the output (pack-quantized); 0: one code per
     * element of code_dtype. */
    unsigned codes_per_word;
    mq_dtype scale_dtype; /* MQ_SCALE_LIKE_WEIGHT today */
    mq_scale_encoding scale_enc;
    mq_qformat format;
    mq_act acts;
    const char *preset; /* the compressed-tensors preset family: "W8A8", "W4A16", ... */
    /* "int8-sym-channel", "int4-sym-group128", "fp8-e4m3-block128", "fp16",
     * ...: the output's quantization_scheme metadata and the report's. */
    char label[48];
    /* How each group's range is chosen; the MSE search's options (the
     * defaults under min-max). */
    mq_observer observer;
    mq_obs_mse mse;
} mq_scheme;

/* A quantized model directory read as the float model it stands for, other
 * than FP8 blocks (mq_settings.src_block): gpt-oss's MXFP4 experts
 * (quant_method "mxfp4"), or a compressed-tensors checkpoint in a format we
 * write ourselves. */
typedef enum {
    MQ_SRC_FORMAT_NONE,
    MQ_SRC_FORMAT_MXFP4,
    MQ_SRC_FORMAT_CT,
} mq_src_format;

/* The settings of one run below the public API: the scheme and what else the
 * layers need of mq_config. Strings and lists are borrowed from the config,
 * which outlives the run. */
typedef struct {
    mq_scheme scheme;
    const char *const *include;
    size_t n_include;
    const char *const *exclude;
    size_t n_exclude;
    bool skip_nonfinite, fp16_saturate, follow_symlinks;
    uint64_t memory_limit; /* 0: MQ_DEFAULT_MEMORY_LIMIT */
    void (*progress)(const mq_progress *p, void *user);
    void *progress_user;
    mq_device_sel device;
    /* A model directory whose config.json says its Linear weights are FP8
     * E4M3 blocks (quant_method "fp8", weight_block_size): the block's rows
     * and columns, 0 when the source is float; and the dtype the values are
     * dequantized to before the scheme quantizes them (the model's). */
    size_t src_block[2];
    /* Other quantized sources, read the same way (stream/srcread.c). */
    mq_src_format src_format;
    mq_dtype src_dtype;
    mq_dtype src_model_dtype; /* the model's: what a kept source weight is written in */
    bool dequant_f32;         /* src_dtype F32 rather than the model's */
    /* dequantize of a model directory: every tensor kept (a source weight as
     * its float values) and config.json without a quantization_config. */
    bool plain_float;
    /* NVFP4 (optional, NULL: each file's weights among themselves): the
     * weight's amax as the run read it before any file (*known, which may be
     * NULL, says whether it did; else *amax as it is), raised to its fused
     * set's (q/k/v_proj, gate/up_proj, w1/w3) for a member (fused.h).
     * Errors are the run's. */
    mq_status (*fused_amax)(void *user, const char *weight, float *amax, bool *known);
    void *fused_user;
    /* The mse observer's importance matrix: the config's path, and the
     * matrix the run layer loaded from it (borrowed; NULL: none). */
    const char *imatrix_path;
    const struct mq_imatrix *imatrix;
} mq_settings;

/* Builds the scheme of cfg's scheme fields; MQ_STATUS_E_CONFIG saying why
 * when they form no scheme the library writes (e.g. groups with W8A8). */
mq_status mq_scheme_init(mq_scheme *s, const mq_config *cfg);
/* Whether the scheme writes codes (int8, int4, fp8) rather than casting. */
bool mq_scheme_quantizes(const mq_scheme *s);
/* The scale dtype for a weight of dtype w. */
mq_dtype mq_scheme_scale_dtype(const mq_scheme *s, mq_dtype w);
/* "minmax" or "mse". */
const char *mq_observer_name(mq_observer o);
const char *mq_qformat_name(mq_qformat f);

/* The scheme of cfg (checked) and the rest of the settings, borrowing cfg's
 * strings; NULL cfg: the defaults (then nothing is borrowed). */
mq_status mq_settings_init(mq_settings *s, const mq_config *cfg);

#endif
