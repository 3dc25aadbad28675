/* The signal-cleanup table (see cleanup.h): readable from a signal handler,
 * so no allocation, no locks and no opendir there. A directory's entries are
 * "<type><path>\0" records appended to chunks allocated by the run; the
 * handler walks them newest first, so files go before the directories that
 * hold them, and temporary files (a shard being written inside a temporary
 * directory) before any directory. */
#include "cleanup.h"

#include "monoquant.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 80 /* more than a run of MQ_MAX_DEVICES pipelines holds at once */
#define CHUNK_BYTES 65536

typedef struct chunk {
    struct chunk *prev;
    size_t used; /* bytes of complete records */
    size_t cap;  /* CHUNK_BYTES, or one longer record */
    char buf[];
} chunk;

/* A signal handler touches only SLOT_LIVE slots, which are complete. */
enum { SLOT_FREE = 0, SLOT_BUSY, SLOT_LIVE };
static volatile sig_atomic_t slot_state[SLOTS];
static bool slot_dir[SLOTS];
/* Copied when the slot opens, before it is live: paths of any length. A
 * slot keeps its buffer when closed (grown when a longer path needs it), so a
 * handler racing a close reads a stale path, never freed memory. */
static char *slot_path[SLOTS];
static size_t slot_cap[SLOTS];
static chunk *slot_head[SLOTS];
static volatile sig_atomic_t cleaning;

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
    chunk *c = __atomic_load_n(&slot_head[slot], __ATOMIC_SEQ_CST);
    if (!c || c->cap - c->used < need) {
        size_t cap = need > CHUNK_BYTES ? need : CHUNK_BYTES;
        chunk *fresh = malloc(sizeof *fresh + cap);
        if (!fresh) return;
        fresh->prev = c;
        fresh->used = 0;
        fresh->cap = cap;
        __atomic_store_n(&slot_head[slot], fresh, __ATOMIC_SEQ_CST);
        c = fresh;
    }
    c->buf[c->used] = type;
    memcpy(c->buf + c->used + 1, path, n + 1);
    __atomic_store_n(&c->used, c->used + need, __ATOMIC_SEQ_CST);
}

void mq_cleanup_close(int slot)
{
    if (slot < 0) return;
    __atomic_store_n(&slot_state[slot], SLOT_BUSY, __ATOMIC_SEQ_CST);
    chunk *c = __atomic_exchange_n(&slot_head[slot], NULL, __ATOMIC_SEQ_CST);
    while (c) {
        chunk *prev = c->prev;
        free(c);
        c = prev;
    }
    __atomic_store_n(&slot_state[slot], SLOT_FREE, __ATOMIC_SEQ_CST);
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

void mq_signal_cleanup(void)
{
    /* Only async-signal-safe calls; the slots stay as they are, so the runs'
     * own clean-up later sees a plain ENOENT. The guard keeps a second
     * signal's handler from walking the records twice at once. */
    if (__atomic_exchange_n(&cleaning, 1, __ATOMIC_SEQ_CST)) return;
    for (int i = 0; i < SLOTS; i++)
        if (__atomic_load_n(&slot_state[i], __ATOMIC_SEQ_CST) == SLOT_LIVE && !slot_dir[i])
            unlink(slot_path[i]);
    for (int i = 0; i < SLOTS; i++) {
        if (__atomic_load_n(&slot_state[i], __ATOMIC_SEQ_CST) != SLOT_LIVE || !slot_dir[i])
            continue;
        remove_records(__atomic_load_n(&slot_head[i], __ATOMIC_SEQ_CST));
        rmdir(slot_path[i]);
    }
    __atomic_store_n(&cleaning, 0, __ATOMIC_SEQ_CST);
}
