/* The staging ring: a reader thread fills slots, one consumer takes them in
 * order and one thread (the consumer, or the writer) hands them back in the
 * same order; they pass between threads under a mutex. Input pages never
 * stay mapped into the process: pread copies from the page cache into our
 * buffers, and in map mode a chunk's pages are unmapped when its slot is
 * reused, so the resident size stays at the ring's size whatever the model's. */
#define _GNU_SOURCE /* madvise, MADV_POPULATE_READ */
#include "ring.h"

#include "bigbuf.h"
#include "error.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels answer EINVAL */
#endif

typedef struct {
    unsigned char *buf; /* NULL in map mode */
    bool from_backend;
    bool full;
    bool mapped; /* map mode: its last chunk's pages may still be mapped */
    int err;     /* 0, an errno, or -1: the file ended early */
    mq_chunk c;
} ring_slot;

struct mq_ring {
    mq_backend *be;
    ring_slot *slots;
    unsigned n;
    size_t slot_bytes;
    const unsigned char *map;
    size_t map_len, page;
    bool populate;    /* MADV_POPULATE_READ works here */
    size_t kept_page; /* map mode: a partly consumed page left mapped, or SIZE_MAX */
    pthread_mutex_t mu;
    pthread_cond_t filled, freed;
    pthread_t tid;
    bool running, stop, done; /* done: the generator has no more chunks */
    uint64_t head, cur, tail; /* chunks filled / taken / handed back so far */
    int fd;
    const char *path;
    mq_chunk_next next;
    void *gen;
};

void *mq_staging_alloc(mq_backend *be, size_t n, bool *from_backend)
{
    void *p = NULL;
    *from_backend = false;
    if (be && be->ops->staging_alloc && (p = be->ops->staging_alloc(be, n))) {
        *from_backend = true;
        return p;
    }
    return mq_bigbuf_alloc(n); /* 64-byte aligned, and unmapped when freed */
}

void mq_staging_free(mq_backend *be, void *p, bool from_backend)
{
    if (!p) return;
    if (from_backend)
        be->ops->staging_free(be, p);
    else
        mq_bigbuf_free(p);
}

mq_status mq_ring_new(mq_backend *be, unsigned slots, size_t slot_bytes, const unsigned char *map,
                      size_t map_len, mq_ring **out)
{
    *out = NULL;
    mq_ring *r = calloc(1, sizeof *r);
    if (!r || !(r->slots = calloc(slots, sizeof *r->slots))) {
        free(r);
        return mq_set_error(MQ_STATUS_E_NOMEM, "staging ring: out of memory");
    }
    r->be = be;
    r->n = slots;
    r->slot_bytes = slot_bytes;
    r->map = map;
    r->map_len = map_len;
    r->page = (size_t)sysconf(_SC_PAGESIZE);
    r->populate = true;
    r->kept_page = SIZE_MAX;
    r->fd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->filled, NULL);
    pthread_cond_init(&r->freed, NULL);
    for (unsigned i = 0; i < slots && !map; i++) {
        r->slots[i].buf = mq_staging_alloc(be, slot_bytes, &r->slots[i].from_backend);
        if (!r->slots[i].buf) {
            mq_ring_free(r);
            return mq_set_error(MQ_STATUS_E_NOMEM, "staging ring: out of memory (%u x %zu bytes)",
                                slots, slot_bytes);
        }
    }
    *out = r;
    return MQ_OK;
}

/* Exactly n bytes at off: 0, an errno, or -1 when the file ends first. */
static int read_full(int fd, unsigned char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return got < 0 ? errno : -1;
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

/* Maps a chunk's pages in ahead of the consumer. A page past the end of a
 * truncated file fails here (EFAULT) instead of raising SIGBUS later. */
static int prefault(mq_ring *r, const mq_chunk *c)
{
    if (c->off > r->map_len || c->bytes > r->map_len - c->off) return -1;
    if (!c->bytes) return 0;
    size_t a = (size_t)c->off / r->page * r->page, len = (size_t)c->off + c->bytes - a;
    void *p = (void *)(uintptr_t)(r->map + a);
    if (r->populate && madvise(p, len, MADV_POPULATE_READ) == 0) return 0;
    if (r->populate && errno == EINVAL) r->populate = false; /* kernel before 5.14 */
    if (r->populate) return errno == EFAULT ? -1 : errno;
    (void)madvise(p, len, MADV_WILLNEED); /* start readahead; the consumer faults */
    return 0;
}

static void unmap_pages(mq_ring *r, size_t first, size_t end)
{
    if (end > first) (void)madvise((void *)(uintptr_t)(r->map + first), end - first, MADV_DONTNEED);
}

/* Drops a consumed chunk's pages: all but a last page that the next chunk
 * may share, which is dropped with that chunk, or here when the next chunk
 * turns out to start elsewhere. Chunks come here in the order they were read. */
static void unmap_chunk(mq_ring *r, const mq_chunk *c)
{
    size_t first = (size_t)c->off / r->page * r->page;
    size_t end = ((size_t)c->off + c->bytes) / r->page * r->page;
    if (r->kept_page != SIZE_MAX && r->kept_page != first)
        unmap_pages(r, r->kept_page, r->kept_page + r->page);
    unmap_pages(r, first, end);
    r->kept_page = (c->off + c->bytes) % r->page ? end : SIZE_MAX;
}

static void *reader(void *arg)
{
    mq_ring *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        ring_slot *s = &r->slots[r->head % r->n];
        while (!r->stop && s->full)
            pthread_cond_wait(&r->freed, &r->mu);
        if (r->stop) break;
        pthread_mutex_unlock(&r->mu);
        /* Consumed chunks are unmapped here, in order, off the consumer's path. */
        if (r->map && s->mapped) unmap_chunk(r, &s->c);
        s->mapped = false;
        mq_chunk c;
        bool more = r->next(r->gen, &c);
        int err = 0;
        if (more) {
            s->c = c;
            s->mapped = r->map != NULL;
            if (r->map)
                err = prefault(r, &c);
            else /* a generator bug must not overrun a buffer */
                err =
                    c.bytes > r->slot_bytes ? EOVERFLOW : read_full(r->fd, s->buf, c.bytes, c.off);
        }
        pthread_mutex_lock(&r->mu);
        if (!more) {
            r->done = true;
            pthread_cond_signal(&r->filled);
            break;
        }
        s->err = err;
        s->full = true;
        r->head++;
        pthread_cond_signal(&r->filled);
        if (err) break;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

mq_status mq_ring_start(mq_ring *r, int fd, const char *path, mq_chunk_next next, void *gen)
{
    if (r->running) mq_ring_stop(r);
    for (unsigned i = 0; i < r->n; i++)
        r->slots[i].full = r->slots[i].mapped = false;
    r->head = r->cur = r->tail = 0;
    r->stop = r->done = false;
    r->fd = fd;
    r->path = path;
    r->next = next;
    r->gen = gen;
    /* The reader takes no signals, so a Ctrl-C handler runs on the caller's
     * thread and the reader never sees an interrupted read. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&r->tid, NULL, reader, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return mq_set_error(MQ_STATUS_E_NOMEM, "%s: cannot start the reader thread: %s", path,
                            strerror(e));
    r->running = true;
    return MQ_OK;
}

mq_status mq_ring_next(mq_ring *r, const mq_chunk **c, const unsigned char **data)
{
    ring_slot *s = &r->slots[r->cur % r->n];
    *c = NULL;
    *data = NULL;
    pthread_mutex_lock(&r->mu);
    /* Slots fill in order, so the one after the last taken is next. */
    while (r->head == r->cur && !r->done)
        pthread_cond_wait(&r->filled, &r->mu);
    bool ready = r->head != r->cur;
    if (ready) r->cur++;
    pthread_mutex_unlock(&r->mu);
    if (!ready) return MQ_OK; /* the generator ended */
    if (s->err)
        return s->err < 0 ? mq_set_error(MQ_STATUS_E_IO,
                                         "input '%s' changed while being read: it ends before "
                                         "the %zu bytes at offset %llu (shorter than its header "
                                         "says)",
                                         r->path, s->c.bytes, (unsigned long long)s->c.off)
                          : mq_set_error(MQ_STATUS_E_IO, "%s: reading %zu bytes at offset %llu: %s",
                                         r->path, s->c.bytes, (unsigned long long)s->c.off,
                                         strerror(s->err));
    *c = &s->c;
    *data = r->map ? r->map + s->c.off : s->buf;
    return MQ_OK;
}

void mq_ring_release(mq_ring *r)
{
    ring_slot *s = &r->slots[r->tail % r->n];
    pthread_mutex_lock(&r->mu);
    s->full = false;
    r->tail++;
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->mu);
}

void mq_ring_stop(mq_ring *r)
{
    if (!r->running) return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->tid, NULL);
    r->running = false;
    /* Whatever the reader had prefaulted and nobody consumed. */
    if (r->map)
        unmap_pages(r, 0, r->map_len / r->page * r->page + (r->map_len % r->page ? r->page : 0));
    r->kept_page = SIZE_MAX;
}

void mq_ring_free(mq_ring *r)
{
    if (!r) return;
    mq_ring_stop(r);
    for (unsigned i = 0; i < r->n; i++)
        mq_staging_free(r->be, r->slots[i].buf, r->slots[i].from_backend);
    pthread_cond_destroy(&r->freed);
    pthread_cond_destroy(&r->filled);
    pthread_mutex_destroy(&r->mu);
    free(r->slots);
    free(r);
}
