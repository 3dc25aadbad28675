/* libmonoquant: per-channel INT8 / FP16 quantization of neural-network weights.
 * This is the whole public interface; every other header under src/ and host/
 * is internal. */
#ifndef MONOQUANT_H
#define MONOQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MQ_VERSION "0.1.0"
/** Highest tensor rank the library handles (safetensors has no limit; 8 covers every real model). */
#define MQ_MAX_RANK 8

/** Result of every public function that can fail. */
typedef enum {
    MQ_OK = 0,
    MQ_STATUS_E_INVALID_ARG, /**< caller passed a NULL or out-of-range argument */
    MQ_STATUS_E_NOMEM,       /**< host allocation failed */
    MQ_STATUS_E_IO,          /**< reading the input failed (missing file, read error, ...) */
    MQ_STATUS_E_FORMAT,      /**< the input is not a valid model (bad header, bad offsets, ...) */
    MQ_STATUS_E_DATA,        /**< tensor data unfit for quantization (NaN/Inf, ...) */
    MQ_STATUS_E_CONFIG,      /**< bad configuration (config file, pattern, option value) */
    MQ_STATUS_E_OUTPUT,      /**< writing the output failed, or the output would overwrite the input */
    MQ_STATUS_E_DEVICE,      /**< the compute device failed (OpenCL error, build failure) */
    MQ_STATUS_E_INTERRUPTED, /**< the run was interrupted by a signal */
    MQ_STATUS_COUNT_
} mq_status;

/** Element types of safetensors, in the order of the format's dtype strings. */
typedef enum {
    MQ_DTYPE_F32 = 0,
    MQ_DTYPE_F16,
    MQ_DTYPE_BF16,
    MQ_DTYPE_F64,
    MQ_DTYPE_I8,
    MQ_DTYPE_U8,
    MQ_DTYPE_I16,
    MQ_DTYPE_U16,
    MQ_DTYPE_I32,
    MQ_DTYPE_U32,
    MQ_DTYPE_I64,
    MQ_DTYPE_U64,
    MQ_DTYPE_BOOL,
    MQ_DTYPE_F8_E4M3,
    MQ_DTYPE_F8_E5M2,
    MQ_DTYPE_COUNT_
} mq_dtype;

/** Target of a quantization run. */
typedef enum { MQ_QINT8 = 0, MQ_FLOAT16 } mq_qdtype;

/** A named tensor. `data` points at `nbytes` bytes, row-major, little-endian. */
typedef struct {
    const char *name;
    mq_dtype dtype;
    int rank;
    int64_t shape[MQ_MAX_RANK];
    const void *data;
    size_t nbytes;
} mq_tensor;

struct mq_progress;
struct mq_report_entry;

/**
 * Settings of a run. Fill with mq_config_init(), then change fields; free the
 * pattern lists with mq_config_free(). Patterns are shell globs or "re:REGEX"
 * (POSIX extended, anchored at both ends), matched against tensor names.
 */
typedef struct {
    mq_qdtype dtype;      /**< MQ_QINT8 (default) or MQ_FLOAT16 */
    bool symmetric;       /**< int8: symmetric (default) or asymmetric with zero points */
    bool per_channel;     /**< int8: one scale per output channel (default) or per tensor */
    char **include;       /**< patterns forced into quantization (owned; mq_config_add_include) */
    size_t n_include;
    char **exclude;       /**< patterns kept in float; win over include (owned) */
    size_t n_exclude;
    bool skip_nonfinite;  /**< int8: skip a tensor holding NaN/Inf instead of failing */
    bool fp16_saturate;   /**< fp16: clamp overflow to +-65504 instead of +-inf */
    char *device;         /**< "auto" (NULL), "host", "opencl", "gpu", "cpu", "P:D" or a name (owned) */
    size_t max_alloc_override; /**< testing: cap on one device buffer in bytes (0 = device limit) */
    uint64_t memory_limit; /**< peak host memory for staging buffers in bytes (0 = 1 GiB) */
    /** Called from the calling thread after each tensor and between chunks (may be NULL). */
    void (*progress)(const struct mq_progress *p, void *user);
    void *progress_user;
} mq_config;

/** Where a streaming run stands; handed to mq_config.progress. */
typedef struct mq_progress {
    size_t tensors_done, tensors_total;
    uint64_t bytes_done, bytes_total; /**< input bytes */
    const char *file;                 /**< input file being processed */
    const struct mq_report_entry *finished; /**< the tensor just finished, or NULL */
} mq_progress;

typedef struct mq_model mq_model;
typedef struct mq_skip_list mq_skip_list;
typedef struct mq_report mq_report;

/** Defaults: QINT8, symmetric, per channel, no patterns, device auto. */
void mq_config_init(mq_config *cfg);
/** Frees the pattern lists and device string; the config is then as after mq_config_init(). */
void mq_config_free(mq_config *cfg);
mq_status mq_config_add_include(mq_config *cfg, const char *pattern);
mq_status mq_config_add_exclude(mq_config *cfg, const char *pattern);
mq_status mq_config_set_device(mq_config *cfg, const char *device);
/**
 * Applies a JSON config file over `cfg`. Keys: "dtype" ("int8"|"fp16"),
 * "scheme" ("sym"|"asym"), "per_channel" (bool), "include"/"exclude" (string
 * arrays, appended), "skip_nonfinite", "fp16_saturate" (bool), "device" (string).
 * Unknown keys are an error.
 */
mq_status mq_config_load_json(mq_config *cfg, const char *path);

mq_status mq_model_new(mq_model **out);
/** Copies name, shape and data. nbytes is derived from shape and dtype. */
mq_status mq_model_add_tensor(mq_model *m, const char *name, mq_dtype dtype, int rank,
                              const int64_t *shape, const void *data);
size_t mq_model_count(const mq_model *m);
const mq_tensor *mq_model_tensor(const mq_model *m, size_t i);
/** NULL when absent. */
const mq_tensor *mq_model_find(const mq_model *m, const char *name);
/** `__metadata__` entries (string -> string), in file order. */
size_t mq_model_metadata_count(const mq_model *m);
const char *mq_model_metadata_key(const mq_model *m, size_t i);
const char *mq_model_metadata_value(const mq_model *m, size_t i);
/** Adds or replaces one metadata entry. */
mq_status mq_model_set_metadata(mq_model *m, const char *key, const char *value);
/** Opens and validates a safetensors file; data is memory-mapped read-only. */
mq_status mq_model_open(const char *path, mq_model **out);
/** Writes a safetensors file atomically (temporary file, fsync, rename). */
mq_status mq_model_save(const mq_model *m, const char *path);
void mq_model_free(mq_model *m);

/**
 * Quantizes (or casts) a copy of `in`. `in` is never modified. On success
 * `*out` is a new model and `*skipped` the tensors left as they were, with
 * reasons. `skipped` may be NULL.
 */
mq_status mq_dynamic_quantize(const mq_model *in, const mq_config *cfg, mq_model **out,
                              mq_skip_list **skipped);
/** As mq_dynamic_quantize, and also returns the per-tensor report (may be NULL). */
mq_status mq_dynamic_quantize_report(const mq_model *in, const mq_config *cfg, mq_model **out,
                                     mq_skip_list **skipped, mq_report **report);

size_t mq_skip_list_count(const mq_skip_list *s);
const char *mq_skip_list_name(const mq_skip_list *s, size_t i);
const char *mq_skip_list_reason(const mq_skip_list *s, size_t i);
void mq_skip_list_free(mq_skip_list *s);

/** What happened to one input tensor. */
typedef enum { MQ_ACTION_QUANTIZE = 0, MQ_ACTION_CAST, MQ_ACTION_SKIP } mq_action;

/** One line of the report: an input tensor and what became of it. */
typedef struct mq_report_entry {
    const char *name;
    mq_action action;
    int rank;
    int64_t shape[MQ_MAX_RANK];
    mq_dtype dtype_in;
    mq_dtype dtype_out;
    uint64_t bytes_in;
    uint64_t bytes_out;     /**< including the scale and zero-point tensors */
    uint64_t fp16_overflow; /**< fp16: finite values that did not fit in half */
    const char *reason;     /**< MQ_ACTION_SKIP: why; else NULL */
} mq_report_entry;

size_t mq_report_count(const mq_report *r);
const mq_report_entry *mq_report_entry_at(const mq_report *r, size_t i);
uint64_t mq_report_bytes_in(const mq_report *r);
uint64_t mq_report_bytes_out(const mq_report *r);
uint64_t mq_report_fp16_overflow(const mq_report *r);
/** Backend and device that did the work: "host" or "opencl", platform and device names. */
const char *mq_report_backend(const mq_report *r);
const char *mq_report_platform(const mq_report *r);
const char *mq_report_device(const mq_report *r);
/** Writes the run report as JSON (see the README for its fields). */
mq_status mq_report_write_json(const mq_report *r, const mq_config *cfg, const char *input,
                               const char *output, double seconds, const char *path);
void mq_report_free(mq_report *r);

/**
 * File to file, or model directory to directory: streams `in_path` through
 * the device with bounded memory (cfg->memory_limit) and writes `out_path`
 * atomically (a temporary beside it, renamed when complete). Refuses an
 * output that is the input. `report` may be NULL.
 */
mq_status mq_quantize_file(const char *in_path, const char *out_path, const mq_config *cfg,
                           mq_report **report);
/** Turns a quantized model back into float weights of the scale's dtype. */
mq_status mq_dequantize(const mq_model *in, mq_model **out);

const char *mq_status_str(mq_status s);
/** Safetensors dtype string ("F32", ...) or NULL. */
const char *mq_dtype_name(mq_dtype d);
/** Bytes per element. */
size_t mq_dtype_size(mq_dtype d);
/** Message of the last failure in this thread: file, tensor and cause. */
const char *mq_last_error(void);

/**
 * Async-signal-safe: removes the temporary file of a write in progress. A
 * program's SIGINT/SIGTERM handler calls it before re-raising the signal.
 */
void mq_signal_cleanup(void);

#ifdef __cplusplus
}
#endif
#endif
