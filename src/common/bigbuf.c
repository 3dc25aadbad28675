/* Staging buffers of megabytes come from mmap, not malloc: once glibc has
 * freed a mapped block of that size it raises its mmap threshold above it
 * and serves the next such blocks from the heap, whose freed middle is
 * never returned, so each shard's ring and output buffers added to the
 * resident size of a run over a sharded model (59 MB against 45 MB after
 * four shards of the 1b model). */
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#include "bigbuf.h"

#include <stdint.h>
#include <sys/mman.h>

/* The mapping's length is kept in front of the buffer, one alignment unit. */
#define BIGBUF_HEAD 64

void *mq_bigbuf_alloc(size_t n)
{
    size_t len = n + BIGBUF_HEAD;
    if (len < n) return NULL;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    *(size_t *)m = len;
    return (unsigned char *)m + BIGBUF_HEAD;
}

void mq_bigbuf_free(void *p)
{
    if (!p) return;
    unsigned char *m = (unsigned char *)p - BIGBUF_HEAD;
    (void)munmap(m, *(size_t *)(void *)m);
}
