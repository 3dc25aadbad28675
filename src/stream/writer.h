/* The output side of the streaming pipeline: a thread that writes finished
 * output at its offsets, so that writing (on a page-cache path the costliest
 * step, and one that the inode lock keeps to one thread) overlaps computing.
 * Tensors kept as they are go to it whole and are copied whenever no
 * computed output is waiting, so the copying fills the time the writer would
 * otherwise spend waiting for the compute. It also hands input chunks back to
 * the ring once their output is queued, and starts the disk's writeback as
 * the file grows. */
#ifndef MQ_WRITER_H
#define MQ_WRITER_H

#include "outfile.h"
#include "ring.h"

/* Bytes for one positioned write. */
typedef struct {
    const void *ptr;
    size_t n;
    uint64_t off; /* file offset */
} mq_piece;

/* One unit of computed output: up to three pieces (values, scales, zero
 * points) in one output buffer. */
typedef struct {
    unsigned char *buf; /* output buffer to hand back afterwards, or NULL */
    mq_piece piece[3];
    int pieces;
    bool release_input; /* then hand the oldest input chunk back to the ring */
} mq_write_job;

/* Where kept tensors are copied from. */
typedef struct {
    int fd;                   /* the input file */
    const unsigned char *map; /* its mapping, or NULL: pread through a bounce buffer */
    size_t map_len;
    bool in_kernel;   /* copy_file_range (the filesystem copies on the server) */
    const char *path; /* the input, for errors */
} mq_copy_source;

typedef struct mq_writer mq_writer;

/* Starts the thread with `nbuf` output buffers of `buf_bytes` each. */
mq_status mq_writer_new(mq_outfile *f, mq_ring *ring, mq_backend *be, const mq_copy_source *src,
                        unsigned nbuf, size_t buf_bytes, mq_writer **out);
/* A free output buffer, waiting for the thread to hand one back. Fails with
 * the writer's error once a write has failed. */
mq_status mq_writer_buffer(mq_writer *w, unsigned char **buf);
/* Queues a job (copied). Fails with the writer's error once a write has failed. */
mq_status mq_writer_submit(mq_writer *w, const mq_write_job *job);
/* Queues a copy of n input bytes at in_off to file offset out_off. */
mq_status mq_writer_copy(mq_writer *w, uint64_t in_off, uint64_t n, uint64_t out_off);
/* Waits until everything queued is written; the first write error, if any. */
mq_status mq_writer_finish(mq_writer *w);
/* Drops what is still queued, stops the thread, frees the buffers. NULL is a no-op. */
void mq_writer_free(mq_writer *w);

#endif
