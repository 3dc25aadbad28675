/* Thread-local last-error message and the status names. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MQ_ERROR_CAP 2048

static _Thread_local char mq_error_buf[MQ_ERROR_CAP];

mq_status mq_set_error(mq_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mq_error_buf, sizeof mq_error_buf, fmt, ap);
    va_end(ap);
    return s;
}

void mq_error_prefix(const char *fmt, ...)
{
    char prefix[512];
    char old[MQ_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, mq_error_buf, sizeof old);
    /* Truncating a long message is fine: the cause stays at its start. */
    int n = snprintf(mq_error_buf, sizeof mq_error_buf, "%.*s: %.*s", 500, prefix,
                     (int)(sizeof mq_error_buf - 504), old);
    (void)n;
}

void mq_clear_error(void)
{
    mq_error_buf[0] = '\0';
}

const char *mq_last_error(void)
{
    return mq_error_buf;
}

const char *mq_status_str(mq_status s)
{
    static const char *const names[MQ_STATUS_COUNT_] = {
        [MQ_OK] = "ok",
        [MQ_STATUS_E_INVALID_ARG] = "invalid argument",
        [MQ_STATUS_E_NOMEM] = "out of memory",
        [MQ_STATUS_E_IO] = "input error",
        [MQ_STATUS_E_FORMAT] = "invalid format",
        [MQ_STATUS_E_DATA] = "invalid tensor data",
        [MQ_STATUS_E_CONFIG] = "invalid configuration",
        [MQ_STATUS_E_OUTPUT] = "output error",
        [MQ_STATUS_E_DEVICE] = "device error",
        [MQ_STATUS_E_INTERRUPTED] = "interrupted",
    };
    if ((unsigned)s >= MQ_STATUS_COUNT_) return "unknown status";
    return names[s];
}
