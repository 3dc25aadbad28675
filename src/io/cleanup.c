/* The signal-cleanup table (see cleanup.h): readable from a signal handler,
 * so no allocation, no locks and no opendir there. A directory's entries are
 * "<type><path>\0" records appended to chunks allocated by the run; the
 * cleanup walks them newest first, so files go before the directories that
 * hold them, and temporary files (a shard being written inside a temporary
 * directory) before any directory. */
#define _GNU_SOURCE /* gettid */
#include "cleanup.h"

#include "error.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 80  /* more than a run of MQ_MAX_DEVICES pipelines holds at once */
#define SEATS 128 /* threads inside a section at once; more wait for a seat */
#define CHUNK_BYTES 65536

typedef struct chunk {
    struct chunk *prev;
    size_t used; /* bytes of complete records */
    size_t cap;  /* CHUNK_BYTES, or one longer record */
    char buf[];
} chunk;

/* The cleanup touches only SLOT_LIVE slots, which are complete. */
enum { SLOT_FREE = 0, SLOT_BUSY, SLOT_LIVE };
static volatile sig_atomic_t slot_state[SLOTS];
static bool slot_dir[SLOTS];
/* Copied when the slot opens, before it is live: paths of any length. A
 * slot keeps its buffer when closed (grown when a longer path needs it), so a
 * handler racing a close reads a stale path, never freed memory. */
static char *slot_path[SLOTS];
static size_t slot_cap[SLOTS];
static chunk *slot_head[SLOTS];

/* The thread id of each section in progress, 0 for a free seat. */
static volatile sig_atomic_t seat_tid[SEATS];
/* Set for good by the first cleanup: no section begins after it. */
static volatile sig_atomic_t gate_closed;
/* The thread that runs the cleanup (0: none yet), and whether it is done. */
static volatile sig_atomic_t cleaner_tid;
static volatile sig_atomic_t cleaned;

static bool closed(void)
{
    return __atomic_load_n(&gate_closed, __ATOMIC_SEQ_CST) != 0;
}

/* Room for a record of `path` in the slot's newest chunk, allocated here,
 * outside any section: a thread waiting inside one for the allocator's lock
 * could wait for ever on a thread that a handler interrupted holding it. */
static void reserve(int slot, const char *path)
{
    if (slot < 0 || !path || !slot_dir[slot]) return;
    size_t need = strlen(path) + 2;
    chunk *c = __atomic_load_n(&slot_head[slot], __ATOMIC_SEQ_CST);
    if (c && c->cap - c->used >= need) return;
    size_t cap = need > CHUNK_BYTES ? need : CHUNK_BYTES;
    chunk *fresh = malloc(sizeof *fresh + cap);
    if (!fresh) return;
    fresh->prev = c;
    fresh->used = 0;
    fresh->cap = cap;
    __atomic_store_n(&slot_head[slot], fresh, __ATOMIC_SEQ_CST);
}

bool mq_cleanup_enter(mq_cleanup_section *s, int slot, const char *path)
{
    s->seat = -1;
    if (closed()) return false;
    reserve(slot, path);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &s->old);
    int me = (int)gettid();
    while (s->seat < 0) {
        for (int i = 0; i < SEATS && s->seat < 0; i++) {
            sig_atomic_t expect = 0;
            if (__atomic_compare_exchange_n(&seat_tid[i], &expect, me, false, __ATOMIC_SEQ_CST,
                                            __ATOMIC_SEQ_CST))
                s->seat = i;
        }
        if (s->seat < 0) sched_yield();
    }
    /* Seat first, then the gate: the cleanup closes the gate, then looks at
     * the seats, so one of the two sees the other. */
    if (closed()) {
        mq_cleanup_leave(s);
        return false;
    }
    return true;
}

void mq_cleanup_leave(mq_cleanup_section *s)
{
    if (s->seat < 0) return;
    __atomic_store_n(&seat_tid[s->seat], 0, __ATOMIC_SEQ_CST);
    s->seat = -1;
    pthread_sigmask(SIG_SETMASK, &s->old, NULL);
}

mq_status mq_cleanup_interrupted(const char *what)
{
    return mq_set_error(MQ_STATUS_E_INTERRUPTED,
                        "'%s': interrupted by a signal; its temporaries are removed", what);
}

int mq_cleanup_open(const char *path, bool dir)
{
    size_t n = strlen(path);
    for (int i = 0; i < SLOTS; i++) {
        sig_atomic_t expect = SLOT_FREE;
        if (!__atomic_compare_exchange_n(&slot_state[i], &expect, SLOT_BUSY, false,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            continue;
        if (slot_cap[i] < n + 1) {
            char *grown = malloc(n + 1);
            if (!grown) {
                __atomic_store_n(&slot_state[i], SLOT_FREE, __ATOMIC_SEQ_CST);
                return -1;
            }
            free(slot_path[i]);
            slot_path[i] = grown;
            slot_cap[i] = n + 1;
        }
        memcpy(slot_path[i], path, n + 1);
        slot_dir[i] = dir;
        __atomic_store_n(&slot_head[i], NULL, __ATOMIC_SEQ_CST);
        __atomic_store_n(&slot_state[i], SLOT_LIVE, __ATOMIC_SEQ_CST);
        return i;
    }
    return -1;
}

void mq_cleanup_add(int slot, char type, const char *path)
{
    if (slot < 0 || !slot_dir[slot]) return;
    size_t n = strlen(path), need = n + 2;
    reserve(slot, path);
    chunk *c = __atomic_load_n(&slot_head[slot], __ATOMIC_SEQ_CST);
    if (!c || need > c->cap - c->used) return;
    c->buf[c->used] = type;
    memcpy(c->buf + c->used + 1, path, n + 1);
    __atomic_store_n(&c->used, c->used + need, __ATOMIC_SEQ_CST);
}

void mq_cleanup_close(int slot)
{
    if (slot < 0) return;
    /* In a section, so that the cleanup never walks chunks being freed; once
     * it has begun, the slot is its own. */
    mq_cleanup_section s;
    if (!mq_cleanup_enter(&s, -1, NULL)) return;
    __atomic_store_n(&slot_state[slot], SLOT_BUSY, __ATOMIC_SEQ_CST);
    chunk *c = __atomic_exchange_n(&slot_head[slot], NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&slot_state[slot], SLOT_FREE, __ATOMIC_SEQ_CST);
    mq_cleanup_leave(&s);
    while (c) {
        chunk *prev = c->prev;
        free(c);
        c = prev;
    }
}

static void remove_records(const chunk *c)
{
    for (; c; c = c->prev) {
        size_t end = __atomic_load_n(&c->used, __ATOMIC_SEQ_CST);
        while (end > 0) {
            size_t s = end - 1; /* the record's terminating NUL */
            while (s > 0 && c->buf[s - 1] != '\0')
                s--;
            if (c->buf[s] == 'd')
                rmdir(c->buf + s + 1);
            else
                unlink(c->buf + s + 1);
            end = s;
        }
    }
}

/* Every section in progress, but one of this thread (a signal that a fault
 * forces through its blocked mask), has ended. */
static void wait_for_sections(sig_atomic_t me)
{
    for (int i = 0; i < SEATS; i++)
        for (;;) {
            sig_atomic_t t = __atomic_load_n(&seat_tid[i], __ATOMIC_SEQ_CST);
            if (t == 0 || t == me) break;
            sched_yield();
        }
}

void mq_signal_cleanup(void)
{
    /* Only async-signal-safe calls; the slots stay as they are, so the runs'
     * own clean-up later sees a plain ENOENT. */
    sig_atomic_t me = (sig_atomic_t)gettid();
    __atomic_store_n(&gate_closed, 1, __ATOMIC_SEQ_CST);
    sig_atomic_t first = 0;
    if (!__atomic_compare_exchange_n(&cleaner_tid, &first, me, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST)) {
        /* A second signal: in the cleaning thread itself, its cleanup goes
         * on after this returns; elsewhere, this thread must not end the
         * process before that cleanup is done. */
        if (first != me)
            while (!__atomic_load_n(&cleaned, __ATOMIC_SEQ_CST))
                sched_yield();
        return;
    }
    wait_for_sections(me);
    for (int i = 0; i < SLOTS; i++)
        if (__atomic_load_n(&slot_state[i], __ATOMIC_SEQ_CST) == SLOT_LIVE && !slot_dir[i])
            unlink(slot_path[i]);
    for (int i = 0; i < SLOTS; i++) {
        if (__atomic_load_n(&slot_state[i], __ATOMIC_SEQ_CST) != SLOT_LIVE || !slot_dir[i])
            continue;
        remove_records(__atomic_load_n(&slot_head[i], __ATOMIC_SEQ_CST));
        rmdir(slot_path[i]);
    }
    __atomic_store_n(&cleaned, 1, __ATOMIC_SEQ_CST);
}
