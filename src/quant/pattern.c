/* Include and exclude patterns: a shell glob or "re:" and a Python re regex
 * through PCRE2. The configuration checks them when they are set, the
 * planner compiles and matches them (plan.c). */
#include "pattern.h"

#include "error.h"

#include <string.h>

#define RE_PREFIX "re:"
#define RE_PREFIX_LEN 3

bool mq_pattern_is_regex(const char *p)
{
    return strncmp(p, RE_PREFIX, RE_PREFIX_LEN) == 0;
}

mq_status mq_pattern_compile(const char *pat, pcre2_code **re)
{
    const char *body = pat + RE_PREFIX_LEN;
    int code;
    PCRE2_SIZE at;
    *re = NULL;
    if (*body == '\0') return mq_set_error(MQ_STATUS_E_CONFIG, "pattern '%s': empty regex", pat);
    *re = pcre2_compile((PCRE2_SPTR)body, PCRE2_ZERO_TERMINATED, 0, &code, &at, NULL);
    if (!*re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return mq_set_error(MQ_STATUS_E_CONFIG, "pattern '%s': %s at offset %zu", pat,
                            (const char *)msg, (size_t)at);
    }
    return MQ_OK;
}

mq_status mq_pattern_check(const char *pat)
{
    pcre2_code *re;
    mq_status st;

    if (!pat) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "pattern: NULL");
    if (*pat == '\0') return mq_set_error(MQ_STATUS_E_CONFIG, "pattern '': empty pattern");
    if (!mq_pattern_is_regex(pat)) return MQ_OK;
    if ((st = mq_pattern_compile(pat, &re)) != MQ_OK) return st;
    pcre2_code_free(re);
    return MQ_OK;
}

/* Unlike mq_pattern_check, leaves the last error alone: a query is not a failure. */
bool mq_pattern_valid(const char *pat)
{
    int code;
    PCRE2_SIZE at;
    if (!pat || *pat == '\0') return false;
    if (!mq_pattern_is_regex(pat)) return true;
    if (pat[RE_PREFIX_LEN] == '\0') return false;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pat + RE_PREFIX_LEN), PCRE2_ZERO_TERMINATED, 0,
                                   &code, &at, NULL);
    pcre2_code_free(re);
    return re != NULL;
}
