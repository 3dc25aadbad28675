/* Include and exclude patterns (pattern.c), below the configuration that
 * checks them and the planner that matches them. */
#ifndef MQ_PATTERN_H
#define MQ_PATTERN_H

#include "monoquant.h"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stdbool.h>

/* Shell glob (fnmatch, '*' crosses '.'; a name without wildcards matches
 * exactly) or "re:REGEX" (Python re syntax through PCRE2, anchored at the
 * start as re.match, as compressed-tensors matches). The planner tries a
 * pattern on the tensor name and on its module name (the name without its
 * last ".param"), so "lm_head" matches "lm_head.weight". */
bool mq_pattern_valid(const char *pattern);
/* As mq_pattern_valid, but returns MQ_STATUS_E_CONFIG with a message naming
 * the pattern and the cause (regerror's text, or "empty pattern"). */
mq_status mq_pattern_check(const char *pattern);
/* Whether the pattern is a regex ("re:..."). */
bool mq_pattern_is_regex(const char *pattern);
/* Compiles the regex of an "re:" pattern with Python re's meaning for the
 * common syntax; anchoring at the start only happens at match time.
 * MQ_STATUS_E_CONFIG naming the pattern and PCRE2's message when it does
 * not compile. */
mq_status mq_pattern_compile(const char *pattern, pcre2_code **re);

#endif
