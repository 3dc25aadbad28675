/* Thread-local error message behind mq_last_error(). Every failing path sets
 * it with the file, tensor and cause, and returns the status it passes in. */
#ifndef MQ_ERROR_H
#define MQ_ERROR_H

#include "monoquant.h"

#include <stdarg.h>

/* Formats the message, stores it for mq_last_error() and returns `s`. */
mq_status mq_set_error(mq_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a va_list (for functions that add context with mq_error_prefix). */
mq_status mq_set_error_va(mq_status s, const char *fmt, va_list ap);
/* Prepends "prefix: " to the current message (adds context on the way up). */
void mq_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Empties the message. Every MQ_API function that returns mq_status calls it
 * first, so a success leaves no message behind; so does code that handles a
 * failure itself (a fallback, a retry, a best-effort step). */
void mq_clear_error(void);

#endif
