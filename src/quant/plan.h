/* The planner: decides for each tensor whether it is quantized, cast or
 * skipped, and why. Name-based defaults, then --include, then --exclude. */
#ifndef MQ_PLAN_H
#define MQ_PLAN_H

#include "monoquant.h"
#include "pattern.h"
#include "scheme.h"

typedef struct mq_planner mq_planner;

/* What a model directory's config.json tells the planner. */
typedef struct {
    /* Quantize only what transformers and vLLM build as quantized Linear
     * layers: no Conv weights, no MoE router gates. */
    bool linear_only;
    /* GPT-2 family: c_attn/c_proj/c_fc/q_attn are Conv1D modules stored
     * [in, out], which no loader quantizes. */
    bool conv1d_family;
} mq_plan_hints;

/* A planner for the scheme of `set` that compiles its include/exclude
 * patterns; a bad regex is MQ_STATUS_E_CONFIG naming the pattern. */
mq_status mq_planner_new(const mq_settings *set, mq_planner **out);
void mq_planner_set_hints(mq_planner *p, const mq_plan_hints *h);
/*
 * Decides for one tensor. For MQ_ACTION_SKIP a reason is written to `reason`
 * (always NUL-terminated; e.g. "rank 1 (bias or norm)", "embedding",
 * "excluded by pattern 're:.*mlp.*'"). A regex that exceeds its match
 * limits leaves its error in mq_planner_error(): check it after deciding.
 */
mq_action mq_planner_decide(mq_planner *p, const char *name, mq_dtype dtype, int rank,
                            const int64_t *shape, char *reason, size_t reason_cap);
/* MQ_OK, or the first pattern-matching failure (MQ_STATUS_E_CONFIG). */
mq_status mq_planner_error(const mq_planner *p);
/* Whether `name` is the weight of a module the loaders build as a Linear
 * layer (rank 2 float "<module>.weight", not an embedding): one that must be
 * listed in compressed-tensors' ignore when it stays in float. */
bool mq_planner_is_linear(const mq_planner *p, const char *name, mq_dtype dtype, int rank);
void mq_planner_free(mq_planner *p);

#endif
