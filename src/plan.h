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

/* Shell glob (fnmatch, '*' crosses '.') or "re:REGEX" (POSIX ERE, whole name). */
bool mq_pattern_valid(const char *pattern);

#endif
