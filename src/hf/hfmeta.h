/* The JSON files of a Hugging Face model directory: the shard index
 * (model.safetensors.index.json), checked strictly against the shards on disk
 * and rebuilt for the output, and config.json with its quantization_config. */
#ifndef MQ_HFMETA_H
#define MQ_HFMETA_H

#include "hfroot.h"
#include "monoquant.h"
#include "plan.h"
#include "scheme.h"

#include <jansson.h>

#define MQ_HF_INDEX "model.safetensors.index.json"
#define MQ_HF_SINGLE "model.safetensors"
#define MQ_HF_CONFIG "config.json"
#define MQ_HF_GPTQ_CONFIG "quantize_config.json" /* native AutoGPTQ */

/* Shard file names, sorted. */
typedef struct {
    char **names;
    size_t count;
} mq_hf_shards;

void mq_hf_shards_free(mq_hf_shards *s);

/* Mistral's own-format copy of the weights ("consolidated.safetensors",
 * "consolidated-00001-of-00002.safetensors"), which some repositories ship
 * beside the Hugging Face files; transformers and vLLM's Hugging Face loader
 * do not read it. */
bool mq_hf_is_consolidated(const char *name);

/*
 * Loads <dir>/model.safetensors.index.json of root->dir and checks it against
 * the shards (the index and each shard under mq_hf_root_check's rule):
 * an object whose "weight_map" is a non-empty object of plain file names; each
 * listed shard exists and is valid; each tensor of a shard is listed and
 * mapped to that shard; each listed tensor is in its shard; no *.safetensors
 * in `dir` is left out of the index but Mistral's consolidated copies
 * (mq_hf_is_consolidated). Errors are MQ_STATUS_E_FORMAT naming the
 * file, the tensor and the rule. *index is the parsed index (json_decref).
 */
mq_status mq_hf_index_load(const mq_hf_root *root, json_t **index, mq_hf_shards *shards);

/*
 * The index of the output shards already written in `out_dir`: every output
 * tensor mapped to its shard, "metadata" as in `in_index` with "total_size"
 * (bytes of tensor data) and, when present, "total_parameters" recomputed.
 * Keys sorted, as transformers writes it. Caller frees *text.
 */
mq_status mq_hf_index_render(const char *out_dir, const mq_hf_shards *shards, json_t *in_index,
                             char **text, size_t *len);

/* config.json of root->dir, or *config = NULL when there is none (a dangling
 * link is an error, as is one that mq_hf_root_check refuses).
 * MQ_STATUS_E_FORMAT when it is not a JSON object or already holds a
 * quantization_config of a layout that is not read (see mq_hf_fp8_source and
 * mq_hf_other_source). */
mq_status mq_hf_config_load(const mq_hf_root *root, json_t **config);
/* Whether config.json describes FP8 E4M3 block weights (quant_method "fp8"
 * with a weight_block_size), a quantized source that is read: the block's
 * rows and columns, and the model's dtype (torch_dtype; BF16 when absent),
 * which the values are dequantized to. */
bool mq_hf_fp8_source(json_t *config, size_t block[2], mq_dtype *dt);
/* Whether config.json describes another quantized source that is read: gpt-oss
 * MXFP4 experts (quant_method "mxfp4") or a compressed-tensors checkpoint,
 * compressed, in a format we write; and the model's dtype. */
mq_src_format mq_hf_other_source(json_t *config, mq_dtype *dt);

/* What config.json tells the planner (model directories quantize Linear
 * layers only; GPT-2-family Conv1D modules are recognised by model_type). */
void mq_hf_plan_hints(json_t *config, mq_plan_hints *h);

/*
 * Updates `config` for the run and renders it: a quantizing scheme adds the compressed-tensors
 * "quantization_config" (its "ignore" lists the Linear modules, by `pl`'s
 * judgement, that report entries from `first` on left in float, and a tied
 * output head); FP16 sets "torch_dtype" to "float16". Keys keep their order.
 * Caller frees *text.
 */
mq_status mq_hf_config_render(json_t *config, const mq_scheme *s, const mq_planner *pl,
                              const mq_report *rep, size_t first, char **text, size_t *len);

/* `v` as Python's json.dumps(v, indent=2) writes it (floats in their shortest
 * round-trip form: 1e-05, 10000.0), plus a final newline. Caller frees *text. */
mq_status mq_hf_json_dump(json_t *v, bool sort_keys, char **text, size_t *len);

#endif
