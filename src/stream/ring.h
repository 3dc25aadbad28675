/* The staging ring of the streaming pipeline: a reader thread brings input
 * chunks in, in the order a generator gives (pread into a ring of fixed-size
 * buffers, or prefaulting a window of the file's mapping), while the calling
 * thread computes on the ready ones, oldest first. */
#ifndef MQ_RING_H
#define MQ_RING_H

#include "backend.h"

/* One read: `bytes` at file offset `off`. The other fields are the
 * generator's own, handed back unchanged with the data. */
typedef struct {
    uint64_t off;
    size_t bytes;
    size_t tensor; /* index of the plan entry */
    size_t group;  /* split path: the channel (or 0 for a whole tensor) */
    size_t first;  /* first row, or first element within the group */
    size_t count;  /* rows, or elements */
    int pass;      /* split path: 0 statistics, 1 quantization */
} mq_chunk;

/* Writes the next chunk to *c and returns true, or returns false at the end.
 * Called on the reader thread only. */
typedef bool (*mq_chunk_next)(void *gen, mq_chunk *c);

typedef struct mq_ring mq_ring;

/* `slots` chunks in flight of at most `slot_bytes` each. With `map` NULL the
 * chunks are read into buffers from be->ops->staging_alloc where the backend
 * has one (else 64-byte aligned heap memory). Otherwise `map` is a read-only
 * mapping of the whole input (map_len bytes): the reader prefaults each
 * chunk's pages and the consumer reads them in place, and releasing a chunk
 * unmaps its pages again (MADV_DONTNEED), so they never pile up in RSS. */
mq_status mq_ring_new(mq_backend *be, unsigned slots, size_t slot_bytes, const unsigned char *map,
                      size_t map_len, mq_ring **out);
/* Starts the reader on `fd` (named `path` in errors). One run at a time. */
mq_status mq_ring_start(mq_ring *r, int fd, const char *path, mq_chunk_next next, void *gen);
/* Waits for the next chunk in order. MQ_OK with *c NULL at the end; a failed
 * read is MQ_STATUS_E_IO naming the path and offset. The data stays valid
 * until mq_ring_release. */
mq_status mq_ring_next(mq_ring *r, const mq_chunk **c, const unsigned char **data);
/* Hands the oldest chunk mq_ring_next returned back to the reader; chunks
 * go back in the order they came, from one thread at a time. */
void mq_ring_release(mq_ring *r);
/* Stops the reader (at once, whatever it was doing) and joins it. */
void mq_ring_stop(mq_ring *r);
/* Stops the reader if needed and frees the buffers. NULL is a no-op. */
void mq_ring_free(mq_ring *r);

/* A heap or staging buffer of the backend, and its release. */
void *mq_staging_alloc(mq_backend *be, size_t n, bool *from_backend);
void mq_staging_free(mq_backend *be, void *p, bool from_backend);

#endif
