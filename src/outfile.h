/* Atomic output files: data goes to a temporary file beside the target, which
 * is fsynced and renamed over the target only when complete. A failed or
 * interrupted write leaves the target as it was and no temporary behind. */
#ifndef MQ_OUTFILE_H
#define MQ_OUTFILE_H

#include "monoquant.h"

#include <sys/types.h>

typedef struct mq_outfile mq_outfile;

/* Creates the temporary file "<dir>/.<base>.mqtmp-XXXXXX" and registers it
 * for mq_signal_cleanup(). Fails when the directory is missing or the target
 * is a directory. */
mq_status mq_outfile_open(const char *target, mq_outfile **out);
/* Sequential write of all n bytes (retries short writes, EINTR). */
mq_status mq_outfile_write(mq_outfile *f, const void *buf, size_t n);
/* Positioned write of all n bytes. */
mq_status mq_outfile_pwrite(mq_outfile *f, const void *buf, size_t n, uint64_t off);
/* fsync, rename over the target, fsync the directory, free. On failure the
 * temporary is removed. Always frees f. */
mq_status mq_outfile_commit(mq_outfile *f);
/* Removes the temporary and frees f. NULL is a no-op. */
void mq_outfile_abort(mq_outfile *f);

/* MQ_STATUS_E_OUTPUT when `target` exists and is the same file (device and
 * inode, so symlinks and hard links count) as `input`. */
mq_status mq_check_not_same_file(const char *input, const char *target);

#endif
