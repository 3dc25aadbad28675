/* Streaming quantization of one safetensors file: the output header is
 * planned from the input header alone, then tensors move through a ring of
 * staging buffers in row chunks (read with pread, computed on the backend,
 * written with pwrite at their final offsets), so memory stays bounded by
 * the settings' memory_limit whatever the model size. */
#ifndef MQ_STREAM_H
#define MQ_STREAM_H

#include "backend.h"
#include "monoquant.h"
#include "plan.h"
#include "scheme.h"
#include "totals.h"

#define MQ_DEFAULT_MEMORY_LIMIT (1ULL << 30)


/*
 * Quantizes `in_path` into `out_path` (written atomically through
 * mq_outfile), appending one entry per input tensor to `rep` (which also gets
 * the device). Output bytes are identical to mq_dynamic_quantize followed by
 * mq_model_save. Errors name the file, the tensor and the cause; on error no
 * file exists under out_path. `set` NULL: the default settings. `planner`
 * decides what is quantized (NULL: one made from set, as for a single file).
 */
mq_status mq_stream_file(const char *in_path, const char *out_path, const mq_settings *set,
                         mq_planner *planner, mq_backend *be, mq_report *rep,
                         mq_stream_totals *totals);

/* Input bytes and tensor count of a file's header, for progress totals. */
mq_status mq_stream_measure(const char *in_path, uint64_t *bytes, size_t *tensors);

#endif
