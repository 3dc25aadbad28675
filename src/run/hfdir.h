/* Hugging Face model directories: config.json, model.safetensors or shards
 * listed by model.safetensors.index.json, tokenizer and other files. The
 * output is a new directory, built beside the target and renamed in place
 * only when complete. */
#ifndef MQ_HFDIR_H
#define MQ_HFDIR_H

#include "backend.h"
#include "monoquant.h"
#include "scheme.h"

/* Quantizes directory `in_dir` into a new directory `out_dir` (must not
 * exist, or be an empty directory) with the settings of cfg (NULL: the
 * defaults), checked first. Shards go through mq_stream_file. */
mq_status mq_hfdir_quantize(const char *in_dir, const char *out_dir, const mq_config *cfg,
                            mq_backend *be, mq_report *rep);
/* The same with settings already built, on n_be devices (bes[0] alone when
 * n_be is 1; none: one opened as set->device says): with several, each shard
 * goes to the next free device (mq_stream_files), and the output is byte for
 * byte a one-device run's. */
mq_status mq_hfdir_quantize_on(const char *in_dir, const char *out_dir, const mq_settings *set,
                               mq_backend *const *bes, size_t n_be, mq_report *rep);

/* The temporary directories of runs in progress are removed, with what was
 * written into them, by the public mq_signal_cleanup() (io/cleanup.c). */

#endif
