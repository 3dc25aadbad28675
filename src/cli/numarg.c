/* Numbers given on the command line, read strictly. strtoull skips leading
 * blanks and accepts a sign, so " -1" would become 2^64 - 1; here only
 * decimal digits count, and a value past 2^64 - 1 is refused. */
#include "cli.h"

bool mq_cli_parse_u64(const char *s, uint64_t *out, const char **rest)
{
    uint64_t v = 0;
    const char *p = s;
    if (!s || *p < '0' || *p > '9') return false;
    for (; *p >= '0' && *p <= '9'; p++)
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
            return false;
    if (rest)
        *rest = p;
    else if (*p)
        return false;
    *out = v;
    return true;
}
