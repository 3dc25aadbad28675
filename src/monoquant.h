/* libmonoquant: quantization of neural-network weights to INT8, INT4 or FP8
 * (per channel, tensor, group or block) or a cast to FP16, in the
 * compressed-tensors layout.
 * This is the whole public interface; every other header under src/ and host/
 * is internal.
 *
 * Errors: a function that returns mq_status empties mq_last_error() when it
 * starts, and on failure leaves a message there naming the file, tensor and
 * cause; functions without a status leave the message as it is.
 *
 * Threads: any function may be called from several threads at once, within
 * these rules.
 * - mq_last_error() is per thread: each thread reads its own calls' message.
 * - A model, skip list, report or eval result is read-only once the call that
 *   made it has returned: any number of threads may read it or pass it as an
 *   input at once (mq_dynamic_quantize, mq_model_save, mq_dequantize, ...).
 *   Changing a model (mq_model_add_tensor, mq_model_set_metadata) or freeing
 *   any of them must not overlap another thread's use of it. A model and the
 *   models made from it share tensor data, counted atomically, so each may be
 *   freed on any thread whenever its own users are done.
 * - Concurrent calls may share a config as long as no thread changes it
 *   (its fields, mq_config_add_*, mq_config_set_device, mq_config_load_json,
 *   mq_config_free); its progress callback then runs on each calling thread.
 * - Each call opens its own device, unless the config lends it one opened with
 *   mq_device_open (mq_config.device_handle), and ends every thread it starts
 *   before it returns (on the host path up to 7 workers, plus the streaming
 *   pipeline's reader and writer threads; with a device list, one thread per
 *   device, each running such a pipeline); an OpenCL device gets a context of
 *   its own. A device handle serves one call at a time.
 *   CLBlast before 1.6.1 can fail when two threads build the same GEMM kernel
 *   at once (CLBlast issue #486): with it, run mq_eval_files and
 *   mq_linear_forward on OpenCL devices one thread at a time.
 * - Process-wide state: the temporaries that mq_signal_cleanup() removes, in
 *   one lock-free table (80 temporary files or model directories at a time
 *   have signal cleanup; writes beyond those still work without it); the
 *   umask, read once at the first write. The library reads no environment
 *   variable and prints nothing (the monoquant program reads MQ_DEVICE). */
#ifndef MONOQUANT_H
#define MONOQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MQ_VERSION_MAJOR/MINOR/PATCH, MQ_VERSION_NUMBER and MQ_VERSION_STRING,
 * generated from the build's project version. */
#include "monoquant_version.h"

/** The version as a string literal: MQ_VERSION_STRING, under its older name. */
#define MQ_VERSION MQ_VERSION_STRING

/* MQ_API marks every function of this header: the library is built with
 * hidden visibility, so nothing else is exported from the shared library. */
#ifndef MQ_API
#if defined(__GNUC__) && __GNUC__ >= 4
#define MQ_API __attribute__((visibility("default")))
#else
#define MQ_API
#endif
#endif

/** Highest tensor rank the library handles (safetensors has no limit; 8 covers every real model).
 */
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
    MQ_STATUS_E_OUTPUT, /**< writing the output failed, or the output would overwrite the input */
    MQ_STATUS_E_DEVICE, /**< the compute device failed (OpenCL error, build failure) */
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

/** Target of a quantization run: int8 codes, a cast to fp16, int4 codes
 * (weights only, packed 8 per int32), float8 e4m3 codes (with dynamic fp8
 * activations), the microscaling formats: fp4 e2m1 (MXFP4) or float8
 * e4m3 (MXFP8) codes with a power-of-two (e8m0) scale per 32 values, or
 * NVFP4 (weights only): fp4 e2m1 codes with an e4m3 scale per 16 values
 * under an fp32 global scale per tensor. */
typedef enum {
    MQ_QINT8 = 0,
    MQ_FLOAT16,
    MQ_QINT4,
    MQ_QFP8,
    MQ_QMXFP4,
    MQ_QMXFP8,
    MQ_QNVFP4
} mq_qdtype;

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
/** A compute device opened once (mq_device_open) and lent to any number of
 * calls through mq_config.device_handle, so that OpenCL kernels are built
 * once. One call at a time may use a device. */
typedef struct mq_device mq_device;

/**
 * Settings of a run. Fill with mq_config_init(), then change fields; free the
 * pattern lists with mq_config_free(). Patterns are shell globs or "re:REGEX"
 * (POSIX extended, anchored at both ends), matched against tensor names.
 *
 * What stays stable: struct_size comes first in every version, and new fields
 * are only ever added at the end. mq_config_init() records the size of the
 * struct as the caller's header declares it, and every call that takes a
 * config checks it: a config from a header the linked library does not know
 * (or, almost always, one never initialized) is MQ_STATUS_E_INVALID_ARG naming
 * both sizes, never a read past the caller's struct.
 */
/** How a group's scale range is chosen (mq_config.observer). */
typedef enum { MQ_OBSERVER_MINMAX = 0, MQ_OBSERVER_MSE = 1 } mq_observer;

typedef struct {
    /** sizeof(mq_config) of the caller's header; set by mq_config_init(), never by hand. */
    size_t struct_size;
    mq_qdtype dtype;  /**< MQ_QINT8 (default), MQ_QINT4, MQ_QFP8 or MQ_FLOAT16 */
    bool symmetric;   /**< symmetric (default) or asymmetric with zero points (int only) */
    bool per_channel; /**< one scale per output channel (default) or per tensor (not int4) */
    /** int8 symmetric: quantize the weights only (compressed-tensors "pack-quantized",
     * vLLM's WNA16 kernels) instead of W8A8 with dynamic int8 activations
     * ("int-quantized", the default). Asymmetric weights are always weights only. */
    bool weights_only;
    char **include; /**< patterns forced into quantization (owned; mq_config_add_include) */
    size_t n_include;
    char **exclude; /**< patterns kept in float; win over include (owned) */
    size_t n_exclude;
    bool skip_nonfinite; /**< int8: skip a tensor holding NaN/Inf instead of failing */
    bool fp16_saturate;  /**< fp16: clamp overflow to +-65504 instead of +-inf */
    /** "auto" (NULL: the first GPU or accelerator OpenCL device, else the host
     * path; a CPU OpenCL device only when named), "host", "opencl", "gpu", "cpu",
     * "P:D" or a name (owned). The library reads no environment variable.
     * Or several devices: a comma-separated list of those ("0:0,0:1"; a device
     * named twice gets two contexts), "gpu:all", "cpu:all", "opencl:all" or
     * "all" (every GPU and accelerator, else the host path). mq_quantize_file
     * opens every device of a list first, then spreads a model directory's
     * shards over them, one pipeline each, with memory_limit shared and the
     * output identical to a one-device run; a single file, and every other
     * call (mq_dynamic_quantize, mq_eval_files, mq_device_open, ...), use the
     * list's first device. */
    char *device;
    /** An opened device to use instead of opening `device` (borrowed; NULL: none). */
    mq_device *device_handle;
    size_t max_alloc_override; /**< testing: cap on one device buffer in bytes (0 = device limit) */
    uint64_t memory_limit;     /**< peak host memory for staging buffers in bytes (0 = 1 GiB) */
    /** Called from the calling thread after each tensor and between chunks (may be NULL);
     * with a device list too, one call at a time, totals over every device. */
    void (*progress)(const struct mq_progress *p, void *user);
    void *progress_user;
    /**
     * Model directories: follow symbolic links wherever they lead. By default
     * (false) a link is followed only when its target lies inside the input
     * directory, or inside the blobs/ folder of the Hugging Face cache
     * repository that holds it (models--ORG--NAME/snapshots/REV/x ->
     * ../../blobs/HASH); any other link, or a dangling one, is an error
     * naming the link and its target, so that no file from elsewhere on the
     * machine lands in the output.
     */
    bool follow_symlinks;
    /**
     * Int8 weights only and int4: groups of this many consecutive values along
     * the input (last) dimension of a 2-D weight, each with its own scale (and
     * zero point); 0: per channel or per tensor as per_channel says. A multiple
     * of 8 for int4. A weight whose last dimension it does not divide, or one
     * of another rank, is kept in float (listed in the skipped list and in
     * config.json's ignore), since no loader runs ragged groups.
     */
    size_t group_size;
    /** FP8: square blocks of block_size x block_size values of a 2-D weight,
     * one scale each (FP8_BLOCK: 128); 0: per channel. Weights with partial
     * blocks are kept in float. */
    size_t block_size;
    /**
     * How each group's range is chosen: MQ_OBSERVER_MINMAX (default) or
     * MQ_OBSERVER_MSE, llm-compressor's memoryless MSE observer: a search
     * over the clipping factors p = 1 - i / grid (i = 0, 1, ... while
     * i < (int)(maxshrink * grid)) for the smallest sum |q(w) - w|^norm per
     * group, stopping after `patience` steps in which no group of the weight
     * improved. The parameters below are its options; 0 takes the default.
     */
    mq_observer observer;
    double observer_maxshrink;  /**< 0: 0.2 */
    double observer_grid;       /**< 0: 100 */
    double observer_norm;       /**< 0: 2.4 */
    unsigned observer_patience; /**< 0: 5 */
    /** A quantized source (a model directory of FP8 blocks, gpt-oss MXFP4
     * experts or compressed-tensors layers): its values are
     * dequantized to F32 before they are quantized, instead of to the model's
     * torch_dtype (the default, as llm-compressor's converters do); an NVFP4
     * layer's values are the BF16 ones compressed-tensors' decompressor
     * gives, widened. Layers kept in float are written in the model's dtype
     * either way. */
    bool dequant_f32;
    /**
     * The mse observer: llama.cpp's importance matrix (the path of its GGUF
     * or legacy .dat file, owned; mq_config_set_imatrix; NULL: none). Each
     * weight with an entry has its search minimize sum_j imp_j |q(w_j) -
     * w_j|^norm over each group, imp_j = in_sum2_j / count the mean square of
     * input column j on the calibration text (per expert for an expert's
     * weight); weights without an entry take the plain search. llama.cpp's
     * names are mapped to Hugging Face's for Llama, Mistral, Mixtral,
     * Qwen2/3 (and MoE), Gemma and Phi-3; an entry that does not map is an
     * error naming it. Ignored under min-max.
     */
    char *imatrix;
} mq_config;

/** Where a streaming run stands; handed to mq_config.progress. */
typedef struct mq_progress {
    size_t tensors_done, tensors_total;
    uint64_t bytes_done, bytes_total;       /**< input bytes */
    const char *file;                       /**< input file being processed */
    const struct mq_report_entry *finished; /**< the tensor just finished, or NULL */
} mq_progress;

typedef struct mq_model mq_model;
typedef struct mq_skip_list mq_skip_list;
typedef struct mq_report mq_report;

/**
 * Opens a device as mq_config.device names it (NULL: "auto"). The handle is
 * used by setting mq_config.device_handle; close it with mq_device_close after
 * the last call that uses it.
 */
MQ_API mq_status mq_device_open(const char *spec, mq_device **out);
MQ_API void mq_device_close(mq_device *d);
/** "host" or "opencl", the platform ("" for host) and the device name. */
MQ_API const char *mq_device_kind(const mq_device *d);
MQ_API const char *mq_device_platform(const mq_device *d);
MQ_API const char *mq_device_name(const mq_device *d);

/** One OpenCL device, as `monoquant devices` lists it. */
typedef struct mq_device_info {
    unsigned platform, index; /**< the "P:D" spec that selects it */
    char name[256];
    char version[256];
    char driver[256];
    const char *type; /**< "GPU", "CPU", "ACCELERATOR", ... (static) */
    unsigned compute_units;
    uint64_t global_mem;
    uint64_t max_alloc;
    bool fp16, fp64;
    bool unified;               /**< shares memory with the host: zero-copy staging */
    bool correctly_rounded_div; /**< CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT */
    bool is_auto;               /**< the device "auto" picks (a GPU, else an accelerator) */
} mq_device_info;

/** One OpenCL platform and the range of its devices in mq_device_list.devices. */
typedef struct mq_platform_info {
    char name[256];
    char vendor[256];
    char version[256];
    char error[192]; /**< "" or why the platform was skipped */
    size_t first;    /**< its devices: devices[first .. first + count) */
    size_t count;
} mq_platform_info;

typedef struct mq_device_list {
    mq_platform_info *platforms;
    size_t n_platforms;
    mq_device_info *devices;
    size_t n_devices;
} mq_device_list;

/** Every OpenCL platform and device (empty when there is none: not an error;
 * the host path is always there as "host"). Free with mq_device_list_free. */
MQ_API mq_status mq_device_list_get(mq_device_list *out);
MQ_API void mq_device_list_free(mq_device_list *l);

/**
 * Defaults: QINT8, symmetric, per channel, no patterns, device auto; and
 * cfg->struct_size set to `struct_size`. Programs call mq_config_init(), which
 * passes the size of their header's mq_config. When the linked library does
 * not know that size it writes only cfg->struct_size, so that every later
 * call fails naming it. Does nothing when cfg is NULL or struct_size is
 * smaller than a size_t.
 */
MQ_API void mq_config_init_sized(mq_config *cfg, size_t struct_size);
static inline void mq_config_init(mq_config *cfg)
{
    mq_config_init_sized(cfg, sizeof *cfg);
}
/**
 * Sets the scheme fields of `cfg` (dtype, symmetric, per_channel, weights_only,
 * group_size, block_size) to a compressed-tensors preset: "W8A8" (or "INT8";
 * the default), "W8A16", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK",
 * or "W8A16_ASYM" (ours: int8 asymmetric weights only, groups of 128) and
 * "FP16" (a cast). Case-insensitive. An unknown name is MQ_STATUS_E_CONFIG with a
 * message listing the valid names; other fields are left as they are.
 */
MQ_API mq_status mq_config_set_preset(mq_config *cfg, const char *name);
/** The preset name that describes cfg's scheme fields ("W8A8", "W4A16", ...:
 * the family, whatever its group size), or NULL when they are not a valid
 * combination. */
MQ_API const char *mq_config_preset(const mq_config *cfg);
/** The valid preset names, comma-separated (static). */
MQ_API const char *mq_preset_names(void);
/** MQ_OK when cfg's scheme fields form a scheme the library writes, else
 * MQ_STATUS_E_CONFIG saying why (e.g. groups with W8A8, asymmetric FP8). */
MQ_API mq_status mq_config_check(const mq_config *cfg);
/** Frees the pattern lists and device string; the config is then as after mq_config_init().
 * A config whose struct_size the library does not know is left alone. */
MQ_API void mq_config_free(mq_config *cfg);
MQ_API mq_status mq_config_add_include(mq_config *cfg, const char *pattern);
MQ_API mq_status mq_config_add_exclude(mq_config *cfg, const char *pattern);
MQ_API mq_status mq_config_set_device(mq_config *cfg, const char *device);
/** Sets mq_config.imatrix to a copy of `path` (NULL: none). */
MQ_API mq_status mq_config_set_imatrix(mq_config *cfg, const char *path);
/**
 * Applies a JSON config file over `cfg`. Keys: "preset" (a name as for
 * mq_config_set_preset, applied before the other keys whatever their order),
 * "group_size" (an integer, or "channel"), "dtype" ("int8"|"fp16"|"int4"|"fp8"),
 * "scheme" ("sym"|"asym"), "per_channel" (bool), "include"/"exclude" (string
 * arrays, appended), "skip_nonfinite", "fp16_saturate", "weights_only", "follow_symlinks"
 * (bool), "device" (string), "observer" ("minmax"|"mse"), "observer_maxshrink",
 * "observer_grid", "observer_norm" (positive numbers), "observer_patience" (a
 * positive integer).
 * Unknown keys are an error.
 */
MQ_API mq_status mq_config_load_json(mq_config *cfg, const char *path);

MQ_API mq_status mq_model_new(mq_model **out);
/** Copies name, shape and data. nbytes is derived from shape and dtype. */
MQ_API mq_status mq_model_add_tensor(mq_model *m, const char *name, mq_dtype dtype, int rank,
                                     const int64_t *shape, const void *data);
/**
 * As mq_model_add_tensor, without the copy: the model (and every model made
 * from it that keeps the tensor) reads `data` in place. The memory must stay
 * valid and unchanged until release(user) is called, once, when the last of
 * those models lets go of it (release may be NULL). Also called when adding
 * fails.
 */
MQ_API mq_status mq_model_add_tensor_ref(mq_model *m, const char *name, mq_dtype dtype, int rank,
                                         const int64_t *shape, const void *data,
                                         void (*release)(void *user), void *user);
MQ_API size_t mq_model_count(const mq_model *m);
MQ_API const mq_tensor *mq_model_tensor(const mq_model *m, size_t i);
/** NULL when absent. */
MQ_API const mq_tensor *mq_model_find(const mq_model *m, const char *name);
/** `__metadata__` entries (string -> string), in file order. */
MQ_API size_t mq_model_metadata_count(const mq_model *m);
MQ_API const char *mq_model_metadata_key(const mq_model *m, size_t i);
MQ_API const char *mq_model_metadata_value(const mq_model *m, size_t i);
/** Adds or replaces one metadata entry. */
MQ_API mq_status mq_model_set_metadata(mq_model *m, const char *key, const char *value);
/** Opens and validates a safetensors file; data is memory-mapped read-only. */
MQ_API mq_status mq_model_open(const char *path, mq_model **out);
/** Writes a safetensors file atomically (temporary file, fsync, rename). */
MQ_API mq_status mq_model_save(const mq_model *m, const char *path);
MQ_API void mq_model_free(mq_model *m);

/**
 * Quantizes (or casts) a copy of `in`. `in` is never modified. On success
 * `*out` is a new model and `*skipped` the tensors left as they were, with
 * reasons. `skipped` may be NULL.
 */
MQ_API mq_status mq_dynamic_quantize(const mq_model *in, const mq_config *cfg, mq_model **out,
                                     mq_skip_list **skipped);
/** As mq_dynamic_quantize, and also returns the per-tensor report (may be NULL). */
MQ_API mq_status mq_dynamic_quantize_report(const mq_model *in, const mq_config *cfg,
                                            mq_model **out, mq_skip_list **skipped,
                                            mq_report **report);

MQ_API size_t mq_skip_list_count(const mq_skip_list *s);
MQ_API const char *mq_skip_list_name(const mq_skip_list *s, size_t i);
MQ_API const char *mq_skip_list_reason(const mq_skip_list *s, size_t i);
MQ_API void mq_skip_list_free(mq_skip_list *s);

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
    /* Weight error, MQ_ACTION_QUANTIZE only (else NaN, 0, 0), with w_hat =
     * (q - zp) * s in fp32 from the stored scale s. */
    double weight_sqnr_db; /**< 10 log10(sum w^2 / sum (w - w_hat)^2); +inf when exact */
    double max_abs_error;  /**< max |w - w_hat| */
    /** Values whose code rint(w / s + zp) lay outside [-128, 127] before the
     * clamp. Symmetric scales map a group's largest |w| to about +-127.5,
     * which often rounds to +-128 (depending on the scale's rounding), so a
     * positive maximum is often counted: expected, not an outlier. */
    uint64_t clamped;
    /** The mse observer with an importance matrix (mq_config.imatrix): true
     * when the search was weighted by the matrix's entry for this weight,
     * false when the matrix had none and the plain search ran. */
    bool imatrix;
} mq_report_entry;

MQ_API size_t mq_report_count(const mq_report *r);
MQ_API const mq_report_entry *mq_report_entry_at(const mq_report *r, size_t i);
MQ_API uint64_t mq_report_bytes_in(const mq_report *r);
MQ_API uint64_t mq_report_bytes_out(const mq_report *r);
MQ_API uint64_t mq_report_fp16_overflow(const mq_report *r);
/** Backend and device that did the work: "host" or "opencl", platform and device names. */
MQ_API const char *mq_report_backend(const mq_report *r);
MQ_API const char *mq_report_platform(const mq_report *r);
MQ_API const char *mq_report_device(const mq_report *r);
/** Every device that ran: one, or with a device list ("0:0,0:1", "gpu:all")
 * the devices that shared the run, device 0 being the one above. For each its
 * backend, platform and name (NULL past the count) and the files (shards) it
 * quantized (0 when not recorded, as for mq_dynamic_quantize_report). */
MQ_API size_t mq_report_device_count(const mq_report *r);
MQ_API const char *mq_report_device_backend_at(const mq_report *r, size_t i);
MQ_API const char *mq_report_device_platform_at(const mq_report *r, size_t i);
MQ_API const char *mq_report_device_name_at(const mq_report *r, size_t i);
MQ_API size_t mq_report_device_files_at(const mq_report *r, size_t i);
/** Files of an input model directory that the output directory leaves out
 * (Mistral's consolidated*.safetensors), with the reason for each. */
MQ_API size_t mq_report_left_out_count(const mq_report *r);
MQ_API const char *mq_report_left_out_file(const mq_report *r, size_t i);
MQ_API const char *mq_report_left_out_reason(const mq_report *r, size_t i);
/** Writes the run report as JSON (see the README for its fields). */
MQ_API mq_status mq_report_write_json(const mq_report *r, const mq_config *cfg, const char *input,
                                      const char *output, double seconds, const char *path);
MQ_API void mq_report_free(mq_report *r);

/**
 * File to file, or model directory to directory: streams `in_path` through
 * the device with bounded memory (cfg->memory_limit) and writes `out_path`
 * atomically (a temporary beside it, renamed when complete). Refuses an
 * output that is the input. `report` may be NULL.
 */
MQ_API mq_status mq_quantize_file(const char *in_path, const char *out_path, const mq_config *cfg,
                                  mq_report **report);
/** Turns a quantized model back into float weights of the scale's dtype. Scales
 * must be finite and positive, one per output channel or one in all, and zero
 * points I8 of the scale's shape: else MQ_STATUS_E_FORMAT naming the tensor. */
MQ_API mq_status mq_dequantize(const mq_model *in, mq_model **out);
/**
 * A quantized model directory that is read as a source (config.json
 * quant_method "fp8" with a weight_block_size; "mxfp4", gpt-oss's experts;
 * "compressed-tensors" in a format this library writes) to a plain float
 * one: every quantized weight dequantized to the model's torch_dtype, its
 * scales (zero points, shapes) left out, every other file and tensor copied,
 * config.json without its quantization_config. A float model directory is
 * copied as it is. cfg: the device, memory limit and
 * links (NULL: the defaults).
 */
MQ_API mq_status mq_dequantize_dir(const char *in_dir, const char *out_dir, const mq_config *cfg);

/** Version of the library linked at run time, "MAJOR.MINOR.PATCH": MQ_VERSION_STRING of
 * its build, which may differ from the header a program was compiled with. */
MQ_API const char *mq_version(void);
/** MQ_VERSION_NUMBER of the linked library's build (MAJOR * 10000 + MINOR * 100 + PATCH). */
MQ_API unsigned mq_version_number(void);

MQ_API const char *mq_status_str(mq_status s);
/** The name of a quantization target: "int8", "fp16", "int4" or "fp8", as the
 * config file's "dtype" key, the monoquant program's --dtype and the Python
 * package take it; NULL for a value out of range. */
MQ_API const char *mq_qdtype_name(mq_qdtype d);
/** The target of a name mq_qdtype_name gives (case-sensitive); false, with
 * *out unchanged, for any other string or NULL. */
MQ_API bool mq_qdtype_parse(const char *name, mq_qdtype *out);
/** The valid names, comma-separated ("int8, fp16, int4, fp8"; static). */
MQ_API const char *mq_qdtype_names(void);
/** Safetensors dtype string ("F32", ...) or NULL. */
MQ_API const char *mq_dtype_name(mq_dtype d);
/** Bytes per element. */
MQ_API size_t mq_dtype_size(mq_dtype d);
/** Message of the last failure in this thread: file, tensor and cause; "" after a
 * call that returned MQ_OK. The text changes with this thread's next call that returns
 * mq_status. */
MQ_API const char *mq_last_error(void);

/**
 * Async-signal-safe: removes the temporary file of every write in progress
 * and the temporary directory (with its contents) of every model-directory
 * run in progress. A program's SIGINT/SIGTERM handler (or the thread that
 * waits for its signals) calls it before re-raising the signal. It may run
 * while other threads write: it first stops every run from creating or
 * renaming a temporary, waits for those creations and renames in progress,
 * then removes. The stop is for good, as the process is expected to end:
 * the interrupted calls, and every later write, fail with
 * MQ_STATUS_E_INTERRUPTED (or another error) without output. A second call,
 * from another thread, returns once the first one's removal is done.
 */
MQ_API void mq_signal_cleanup(void);

/**
 * Removes what runs killed before they could clean up (SIGKILL, a crash, a
 * power cut) left beside `target`: hidden temporaries named
 * ".<name>.mqtmp-<pid>-XXXXXX" (files, or directories of model-directory runs)
 * in target's directory, for target's name only, whose process is gone and
 * whose lock (a live run holds flock LOCK_EX on its temporary) is free.
 * `removed` (may be NULL) is called with the path of each one removed. Every
 * write of a file or directory calls it first without a callback; a program
 * calls it itself to tell the user.
 */
MQ_API mq_status mq_remove_stale_temps(const char *target,
                                       void (*removed)(const char *path, void *user), void *user);

/* ---- Quality evaluation: output error of quantized layers ---- */

/**
 * y[t][o] = sum_i x[t][i] * ((q[o][i] - zp[o]) * scale[o]): a Linear layer
 * (no bias) with the dequantized weight, for x [tokens, in_features] and y
 * [tokens, out_features], row-major. The weight is dequantized in fp32 (exact
 * for F16/BF16 scales). On an OpenCL device (cfg->device; NULL cfg = auto) it
 * is dequantized there and multiplied with CLBlast SGEMM; on the host backend
 * each y[t][o] is the float sum of the float products, added in order of i
 * from 0 (no FMA). `scale` holds out_features values of `scale_dtype`
 * (F32/F16/BF16); `zp` is NULL for symmetric weights.
 */
MQ_API mq_status mq_linear_forward(const mq_config *cfg, const int8_t *q, const void *scale,
                                   const int8_t *zp, mq_dtype scale_dtype, size_t out_features,
                                   size_t in_features, const float *x, size_t tokens, float *y);

/** Where mq_eval_files stands; handed to mq_eval_options.progress. */
typedef struct mq_eval_progress {
    const char *note;  /**< a one-line note (e.g. kernels compiling), or NULL */
    const char *layer; /**< the layer about to be evaluated, or NULL with a note */
    size_t layers_done, layers_total;
} mq_eval_progress;

/** Settings of mq_eval_files. Fill with mq_eval_options_init(), then change fields. */
typedef struct mq_eval_options {
    /** Rows of X per layer; 0 (default) = 64 generated rows, or every row of the inputs tensor. */
    size_t tokens;
    /** Seed of the generated N(0,1) inputs; each layer's stream comes from it and its name. */
    uint64_t seed;
    /**
     * Optional safetensors file of real activations: for each layer, X is the
     * first float tensor whose last dimension equals the layer's in_features
     * (leading dimensions are rows). NULL = generated inputs.
     */
    const char *inputs;
    const char *device;       /**< as mq_config.device; NULL = auto */
    mq_device *device_handle; /**< as mq_config.device_handle (borrowed; NULL: none) */
    /** Testing: cap in bytes on one device buffer and on the weight rows per GEMM (0 = default). */
    size_t max_alloc_override;
    void (*progress)(const mq_eval_progress *p, void *user); /**< may be NULL */
    void *progress_user;
} mq_eval_options;

/** One evaluated layer: Y = X W^T (original weight) against X W'^T (dequantized weight). */
typedef struct mq_eval_layer {
    const char *name; /**< the weight's name, e.g. "model.layers.0.mlp.up_proj.weight" */
    int rank;
    int64_t shape[MQ_MAX_RANK];
    size_t tokens;        /**< rows of X used */
    double sqnr_db;       /**< 10 log10(|Y|^2 / |Y - Y'|^2); +inf when Y' == Y != 0 */
    double rel_error;     /**< |Y - Y'|_F / |Y|_F */
    double max_abs_error; /**< max |Y - Y'| */
    /** NULL, or why the SQNR is undefined (sqnr_db and rel_error are NaN then):
     * Y is all zero (all-zero inputs or weight), so 0/0 is no verdict. */
    const char *sqnr_undefined;
} mq_eval_layer;

typedef struct mq_eval_result mq_eval_result;

/** Defaults: 64 generated tokens, seed 0, no inputs file, device auto. */
MQ_API void mq_eval_options_init(mq_eval_options *opt);
/**
 * Measures the output error of every quantized layer of `quantized` (as
 * mq_quantize_file writes them: an I8 or F8_E4M3 `<layer>.weight`, or an INT4
 * `<layer>.weight_packed` with `weight_shape`, with `<layer>.weight_scale` per
 * channel, tensor, group or block, optionally `_weight_zero_point`) against the
 * float weight of the same name and shape in `original`. Each argument is a
 * safetensors file or a model directory (model.safetensors or a
 * model.safetensors.index.json with shards). Conv weights [out, in, k...] count
 * as [out, in*k...] matrices. Layers are read one at a time from the mapped
 * files, and the GEMMs run on the device (CLBlast) or on the host backend.
 * `opt` may be NULL (defaults). Layers come out worst (lowest SQNR) first,
 * layers whose SQNR is undefined (all-zero original outputs) last. An inputs
 * file whose tensor has no rows is MQ_STATUS_E_FORMAT.
 * Mismatched pairs, and scales or zero points that are not valid (not finite
 * and positive, shapes that do not fit the weight), are MQ_STATUS_E_FORMAT
 * naming the files and the layer; outputs that are not finite (NaN or Inf in a
 * weight or the inputs) are MQ_STATUS_E_DATA.
 */
MQ_API mq_status mq_eval_files(const char *original, const char *quantized,
                               const mq_eval_options *opt, mq_eval_result **out);
MQ_API size_t mq_eval_result_count(const mq_eval_result *r);
/** Layer i, worst (lowest SQNR) first. */
MQ_API const mq_eval_layer *mq_eval_result_layer(const mq_eval_result *r, size_t i);
/** Mean of the finite per-layer SQNRs in dB, layers whose SQNR is undefined
 * (sqnr_undefined) left out; +inf when every other layer is exact; NaN when
 * no layer has a defined SQNR, or when a defined layer's SQNR is NaN (a
 * failure; mq_eval_files does not return such layers, it fails naming them). */
MQ_API double mq_eval_result_mean_sqnr_db(const mq_eval_result *r);
/** The layer with the lowest SQNR, a NaN one first (NULL when there are none). */
MQ_API const mq_eval_layer *mq_eval_result_worst(const mq_eval_result *r);
/** Backend ("host" or "opencl"), platform and device that ran the GEMMs. */
MQ_API const char *mq_eval_result_backend(const mq_eval_result *r);
MQ_API const char *mq_eval_result_platform(const mq_eval_result *r);
MQ_API const char *mq_eval_result_device(const mq_eval_result *r);
/**
 * Writes {"original", "quantized", "tokens" (null: every row of the inputs), "seed",
 * "inputs", "device": {"backend", "platform", "name"}, "layers": [{"name", "shape", "tokens",
 * "sqnr_db", "rel_error", "max_abs_error"}, ...] (worst first), "summary":
 * {"layers", "mean_sqnr_db", "worst_layer", "worst_sqnr_db", "max_rel_error"}}
 * atomically. An infinite SQNR (exact layer) is written as null. A layer whose
 * SQNR is undefined has "sqnr_db" and "rel_error" null and its reason in
 * "sqnr_undefined" (null for the others); the summary adds "undefined_layers"
 * and, when no layer has a defined SQNR, the reason in "mean_sqnr_undefined"
 * (else null); the mean and max_rel_error leave undefined layers out.
 */
MQ_API mq_status mq_eval_write_json(const mq_eval_result *r, const char *path);
MQ_API void mq_eval_result_free(mq_eval_result *r);

#ifdef __cplusplus
}
#endif
#endif
