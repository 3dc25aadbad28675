/* Thread-local last-error message and the status names. The message is as
 * long as it needs to be: a tensor name or path of any length, and the cause
 * after it, survive whole. */
#include "error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What mq_last_error() says when the message itself could not be stored. */
static const char no_memory_msg[] = "out of memory (while recording an error message)";

static _Thread_local char *mq_error_msg; /* heap; NULL: no message */
static _Thread_local bool mq_error_lost; /* the last message could not be stored */
static pthread_key_t msg_key;
static bool msg_key_made;
static pthread_once_t msg_key_once = PTHREAD_ONCE_INIT;

/* A thread's last message is freed when the thread ends (the key's
 * destructor); the main thread's lives until exit. */
static void make_key(void)
{
    msg_key_made = pthread_key_create(&msg_key, free) == 0;
}

static void store(char *msg)
{
    char *old = mq_error_msg;
    pthread_once(&msg_key_once, make_key);
    mq_error_msg = msg;
    mq_error_lost = msg == NULL;
    if (msg_key_made) pthread_setspecific(msg_key, msg);
    free(old);
}

/* fmt and ap into a new string, or NULL when out of memory. */
static char *format(const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    return s;
}

mq_status mq_set_error_va(mq_status s, const char *fmt, va_list ap)
{
    /* Formatted before the old message goes: it may be one of the arguments. */
    store(format(fmt, ap));
    return s;
}

mq_status mq_set_error(mq_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mq_set_error_va(s, fmt, ap);
    va_end(ap);
    return s;
}

void mq_error_prefix(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *prefix = format(fmt, ap);
    va_end(ap);
    const char *old = mq_last_error();
    size_t np = prefix ? strlen(prefix) : 0, no = strlen(old);
    char *msg = prefix ? malloc(np + 2 + no + 1) : NULL;
    if (msg) {
        memcpy(msg, prefix, np);
        memcpy(msg + np, ": ", 2);
        memcpy(msg + np + 2, old, no + 1);
    }
    free(prefix);
    store(msg);
}

void mq_clear_error(void)
{
    /* An empty message, without allocating: a success path never fails. */
    if (mq_error_msg) mq_error_msg[0] = '\0';
    mq_error_lost = false;
}

const char *mq_last_error(void)
{
    if (!mq_error_msg) return mq_error_lost ? no_memory_msg : "";
    return mq_error_msg;
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
