/* The temporaries of the runs in progress, in one table that the public
 * mq_signal_cleanup() walks from a signal handler: temporary files (an output
 * being written) and temporary directories (a model-directory run) with the
 * entries created in them.
 *
 * Several threads create temporaries at once (one per device), and the
 * cleanup may run in yet another thread while they do. Every creation, with
 * its registration, and every rename of a temporary into place happens inside
 * a section (mq_cleanup_enter/leave): the cleanup first closes the gate, so
 * that no section can begin, then waits for the sections already inside, and
 * only then removes what is registered. What a section made is thus either
 * complete and registered or not made at all, whatever the timing. Once the
 * gate is closed it stays closed: the process is on its way out, and the runs
 * still going fail (MQ_STATUS_E_INTERRUPTED) instead of creating anything. */
#ifndef MQ_CLEANUP_H
#define MQ_CLEANUP_H

#include "monoquant.h"

#include <signal.h>
#include <stdbool.h>

typedef struct {
    sigset_t old; /* the thread's signal mask before the section */
    int seat;
} mq_cleanup_section;

/* Begins a section: blocks every signal in this thread (a handler running
 * here could not wait for its own thread) and takes a seat the cleanup waits
 * for. `slot` and `path` (either may be -1/NULL) reserve room for the record
 * mq_cleanup_add will write inside the section, so that nothing allocates
 * there. false when the cleanup has begun: nothing may be created, and the
 * caller fails with mq_cleanup_interrupted(). */
bool mq_cleanup_enter(mq_cleanup_section *s, int slot, const char *path);
void mq_cleanup_leave(mq_cleanup_section *s);
/* Sets and returns the error of a run whose temporaries the cleanup took:
 * MQ_STATUS_E_INTERRUPTED naming `what` (a path). */
mq_status mq_cleanup_interrupted(const char *what);

/* Registers the temporary file or directory `path`, which the caller creates
 * in the same section; the returned slot is passed to mq_cleanup_add/close.
 * -1 when the table is full or out of memory: the run still works, only
 * without signal cleanup. */
int mq_cleanup_open(const char *path, bool dir);
/* Records a file ('f') or directory ('d') about to be created inside a
 * registered directory, in the section that creates it (or, for a file that
 * a later section renames into place, at any time before). One thread writes
 * a slot's records. Without memory the path goes unrecorded: a signal would
 * then leave it behind. */
void mq_cleanup_add(int slot, char type, const char *path);
/* The temporary is gone (renamed into place or removed): forget it. -1 is a
 * no-op; after the cleanup has begun the slot stays as it is. */
void mq_cleanup_close(int slot);

#endif
