/* The weights a loader fuses into one matrix, and the global amax NVFP4
 * shares across them. vLLM runs q/k/v_proj as one qkv_proj and gate/up_proj
 * as one gate_up_proj (MoE experts' w1/w3 likewise) with one global scale,
 * and warns when the members' differ; llm-compressor gives each such set the
 * global scale of all its members' values (its FUSED_LAYER_NAMES and
 * model_free_ptq's fused mappings). The sets, by weight name:
 *   P + {q,k,v}_proj.weight        P ending in "attn." or "attention."
 *   P + {wq_a,wkv_a_with_mqa}.weight  (DeepSeek's latent attention) likewise
 *   P + {gate,up}_proj.weight      P ending in "mlp."
 *   P + {w1,w3}.weight             any P
 * A set is the weights of one P that the run quantizes. */
#ifndef MQ_FUSED_H
#define MQ_FUSED_H

#include "backend.h"
#include "monoquant.h"
#include "plan.h"

/* Bytes of the prefix P of a fused set's member `name` plus one byte that
 * tells the kind of set apart (the key is name[0..n) + that byte), or 0
 * when the weight is in no set. */
size_t mq_fused_key(const char *name, char *kind);

/* The members' amax of every fused set of a model, reduced before any is
 * quantized. */
typedef struct mq_fused mq_fused;

mq_fused *mq_fused_new(void);
void mq_fused_free(mq_fused *f);
/* Records a weight's own amax and folds it into its set's, if it has one. */
mq_status mq_fused_add(mq_fused *f, const char *name, float amax);
/* The fused_amax hook of mq_settings (user: an mq_fused): into *amax the
 * weight's recorded amax (else *amax as it is), raised to its set's for a
 * member; *known (may be NULL) whether the weight itself was recorded. */
mq_status mq_fused_amax(void *user, const char *weight, float *amax, bool *known);

/*
 * The reduction pass over a model's shards (paths[0..n)): every float weight
 * the planner quantizes is read from its file in pieces of a bounded buffer
 * (a sixteenth of memory_limit, at most 64 MiB) and folded by be's reduce,
 * so that memory stays within the limit whatever the shards hold; each
 * weight's amax is recorded (the files then need no pass of their own) and
 * folded into its set's. With src_block[0] (an FP8 block source,
 * mq_settings.src_block) an F8_E4M3 weight with its scales beside it is
 * planned and reduced as its values dequantized to src_dt, as the
 * quantizing pass reads it, so that sets split across shards share too. A
 * weight holding NaN or Inf (or whose scales the pass will refuse) is not
 * recorded: the file's own pass finds it, and the quantizer refuses or keeps
 * it. Errors name the file.
 */
mq_status mq_fused_scan(mq_fused *f, const char *const *paths, size_t n, mq_planner *pl,
                        mq_backend *be, uint64_t memory_limit, const size_t src_block[2],
                        mq_dtype src_dt);

#endif
