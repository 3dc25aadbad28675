/* The planner: decides for each tensor whether it is quantized, cast or
 * skipped, and why. Name-based defaults, then --include, then --exclude. */
#ifndef MQ_PLAN_H
#define MQ_PLAN_H

#include "monoquant.h"

typedef struct mq_planner mq_planner;

/* Compiles the config's include/exclude patterns; a bad regex is
 * MQ_STATUS_E_CONFIG naming the pattern. */
mq_status mq_planner_new(const mq_config *cfg, mq_planner **out);
/*
 * Decides for one tensor. For MQ_ACTION_SKIP a reason is written to `reason`
 * (always NUL-terminated; e.g. "rank 1 (bias or norm)", "embedding",
 * "excluded by pattern 're:.*mlp.*'").
 */
mq_action mq_planner_decide(const mq_planner *p, const char *name, mq_dtype dtype, int rank,
                            const int64_t *shape, char *reason, size_t reason_cap);
void mq_planner_free(mq_planner *p);

/* Shell glob (fnmatch, '*' crosses '.') or "re:REGEX" (POSIX ERE, whole name).
 * The planner tries a pattern on the tensor name and on its module name (the
 * name without its last ".param"), so "lm_head" matches "lm_head.weight". */
bool mq_pattern_valid(const char *pattern);
/* As mq_pattern_valid, but returns MQ_STATUS_E_CONFIG with a message naming
 * the pattern and the cause (regerror's text, or "empty pattern"). */
mq_status mq_pattern_check(const char *pattern);

#endif
