/* The temporaries of the runs in progress, in one table that the public
 * mq_signal_cleanup() walks from a signal handler: temporary files (an output
 * being written) and temporary directories (a model-directory run) with the
 * entries created in them. */
#ifndef MQ_CLEANUP_H
#define MQ_CLEANUP_H

#include <stdbool.h>

/* Registers the temporary file or directory `path` (any length); the returned
 * slot is passed to mq_cleanup_add/close. -1 when the table is full or out of
 * memory: the run still works, only without signal cleanup. */
int mq_cleanup_open(const char *path, bool dir);
/* Records a file ('f') or directory ('d') about to be created inside a
 * registered directory. Without memory the path goes unrecorded: a signal
 * would then leave it behind. */
void mq_cleanup_add(int slot, char type, const char *path);
/* The temporary is gone (renamed into place or removed): forget it. -1 is a no-op. */
void mq_cleanup_close(int slot);

#endif
