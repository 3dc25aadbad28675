/* The progress totals of a run across several files, which the drivers
 * (src/run) keep and each file's stream adds to; beneath stream.h so that
 * the stream's internals need not include the header of its entry point. */
#ifndef MQ_STREAM_TOTALS_H
#define MQ_STREAM_TOTALS_H

#include <stddef.h>
#include <stdint.h>

/* Totals handed to the progress callback across several files (a sharded
 * directory); NULL for a single file. */
typedef struct {
    size_t tensors_done, tensors_total;
    uint64_t bytes_done, bytes_total;
} mq_stream_totals;

#endif
