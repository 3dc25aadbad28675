/* Large buffers (the stream's staging) mapped from the kernel and unmapped
 * when freed, so that they leave the resident size with the run that used
 * them. */
#ifndef MQ_BIGBUF_H
#define MQ_BIGBUF_H

#include <stddef.h>

/* n bytes aligned to 64, or NULL. */
void *mq_bigbuf_alloc(size_t n);
/* Frees a buffer of mq_bigbuf_alloc; NULL does nothing. */
void mq_bigbuf_free(void *p);

#endif
