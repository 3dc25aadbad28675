/* The writer thread: a FIFO of computed output, a list of copies, and a free
 * list of output buffers, all under one mutex. It alone touches the output
 * file while it runs (mq_outfile is not thread-safe), and it hands input
 * chunks back to the ring in the order they were taken, which the ring
 * requires. Computed output goes first: it frees buffers the compute waits
 * for; copies move in steps between. */
#define _GNU_SOURCE /* madvise */
#include "writer.h"

#include "error.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels fault page by page */
#endif

#define QUEUE_CAP 64
/* Writeback is started every this many written bytes (see mq_outfile_writeback). */
#define WRITEBACK_STEP ((uint64_t)32 << 20)

typedef struct {
    uint64_t in_off, n, out_off;
} copy_item;

struct mq_writer {
    mq_outfile *f;
    mq_ring *ring;
    mq_backend *be;
    mq_copy_source src;
    pthread_mutex_t mu;
    pthread_cond_t job, space, freed, idle;
    pthread_t tid;
    bool running, quit, cancel, busy;
    mq_write_job q[QUEUE_CAP];
    unsigned head, tail;
    copy_item *copies;
    size_t ncopies, copy_cap, copy_next; /* copies[copy_next..] are pending */
    uint64_t copy_done;                  /* bytes of copies[copy_next] done */
    unsigned char **bufs;                /* all buffers, for freeing */
    bool *from_be;
    unsigned nbuf;
    size_t buf_bytes;
    unsigned char **free_list;
    unsigned nfree;
    unsigned char *bounce; /* for copies without a mapping */
    bool bounce_from_be;
    mq_status err;
    char *errmsg;
    uint64_t wb_lo, wb_hi, wb_bytes; /* written since writeback was last started */
    size_t page;
    /* The helper thread: starting writeback submits the I/O in the calling
     * thread and can block on a full device queue, and mapping the pages of
     * the next copy step is work the writer need not wait for. */
    pthread_t helper_tid;
    bool helper_running, helper_quit;
    pthread_cond_t helper_cv, mapped_cv;
    uint64_t flush_lo, flush_hi; /* writeback to start; empty when equal */
    size_t map_lo, map_hi;       /* pages to map in; empty when equal */
    size_t busy_lo, busy_hi;     /* being mapped in now */
    size_t done_lo, done_hi;     /* last mapped in */
};

/* The disk starts on what is written while we go on, so the final fsync
 * has little left to wait for. */
static void note_written(mq_writer *w, uint64_t off, uint64_t n)
{
    if (!n) return;
    if (!w->wb_bytes || off < w->wb_lo) w->wb_lo = off;
    if (!w->wb_bytes || off + n > w->wb_hi) w->wb_hi = off + n;
    w->wb_bytes += n;
    if (w->wb_bytes < WRITEBACK_STEP) return;
    w->wb_bytes = 0;
    pthread_mutex_lock(&w->mu);
    if (w->flush_lo == w->flush_hi) {
        w->flush_lo = w->wb_lo;
        w->flush_hi = w->wb_hi;
    } else { /* the helper is behind: one range covers both */
        if (w->wb_lo < w->flush_lo) w->flush_lo = w->wb_lo;
        if (w->wb_hi > w->flush_hi) w->flush_hi = w->wb_hi;
    }
    pthread_cond_signal(&w->helper_cv);
    pthread_mutex_unlock(&w->mu);
}

static void *helper_main(void *arg)
{
    mq_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->helper_quit && w->flush_lo == w->flush_hi && w->map_lo == w->map_hi)
            pthread_cond_wait(&w->helper_cv, &w->mu);
        if (w->helper_quit) break;
        if (w->map_lo != w->map_hi) {
            w->busy_lo = w->map_lo;
            w->busy_hi = w->map_hi;
            w->map_lo = w->map_hi = 0;
            pthread_mutex_unlock(&w->mu);
            (void)madvise((void *)(uintptr_t)(w->src.map + w->busy_lo), w->busy_hi - w->busy_lo,
                          MADV_POPULATE_READ);
            pthread_mutex_lock(&w->mu);
            w->done_lo = w->busy_lo;
            w->done_hi = w->busy_hi;
            w->busy_lo = w->busy_hi = 0;
            pthread_cond_broadcast(&w->mapped_cv);
            continue;
        }
        uint64_t lo = w->flush_lo, hi = w->flush_hi;
        w->flush_lo = w->flush_hi = 0;
        pthread_mutex_unlock(&w->mu);
        mq_outfile_writeback(w->f, lo, hi - lo);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The page range [*lo, *hi) of the mapping that n input bytes at off touch. */
static void page_range(const mq_writer *w, uint64_t off, uint64_t n, size_t *lo, size_t *hi)
{
    *lo = (size_t)off / w->page * w->page;
    *hi = ((size_t)(off + n) + w->page - 1) / w->page * w->page;
}

/* Asks the helper to map in the pages of the next copy step. */
static void prefetch(mq_writer *w, uint64_t in_off, uint64_t n)
{
    if (!w->helper_running || !w->src.map || w->src.in_kernel || !n) return;
    if (in_off > w->src.map_len || n > w->src.map_len - in_off) return;
    pthread_mutex_lock(&w->mu);
    page_range(w, in_off, n, &w->map_lo, &w->map_hi);
    pthread_cond_signal(&w->helper_cv);
    pthread_mutex_unlock(&w->mu);
}

/* True when the helper has mapped [lo, hi) in; waits if it is at it. */
static bool prefetched(mq_writer *w, size_t lo, size_t hi)
{
    pthread_mutex_lock(&w->mu);
    while (w->busy_lo == lo && w->busy_hi == hi && lo != hi)
        pthread_cond_wait(&w->mapped_cv, &w->mu);
    bool ok = w->done_lo == lo && w->done_hi == hi;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static mq_status do_job(mq_writer *w, const mq_write_job *j)
{
    mq_status st = MQ_OK;
    for (int k = 0; k < j->pieces && st == MQ_OK; k++) {
        const mq_piece *p = &j->piece[k];
        st = mq_outfile_pwrite(w->f, p->ptr, p->n, p->off);
        note_written(w, p->off, p->n);
    }
    return st;
}

/* Up to one buffer's worth of a copy. From the mapping, the pages are
 * unmapped again at once (all that the step touched, shared edges too: a
 * neighbour that needs one faults it back in), so they never pile up in RSS. */
static mq_status copy_step(mq_writer *w, uint64_t in_off, uint64_t n, uint64_t out_off,
                           uint64_t next_in, uint64_t next_n)
{
    const mq_copy_source *s = &w->src;
    mq_status st;
    if (s->in_kernel)
        return mq_outfile_copy_from(w->f, s->fd, in_off, n, out_off, w->bounce, w->buf_bytes,
                                    s->path);
    if (s->map) {
        if (in_off > s->map_len || n > s->map_len - in_off)
            return mq_set_error(MQ_STATUS_E_IO,
                                "%s: reading %llu bytes at offset %llu: the file "
                                "is shorter than its header says",
                                s->path, (unsigned long long)n, (unsigned long long)in_off);
        size_t a, b;
        page_range(w, in_off, n, &a, &b);
        void *pages = (void *)(uintptr_t)(s->map + a);
        /* Mapped first in one call (by the helper, ahead): a write from
         * unmapped pages takes a fault and a retry for every page. */
        if (!prefetched(w, a, b)) (void)madvise(pages, b - a, MADV_POPULATE_READ);
        prefetch(w, next_in, next_n);
        st = mq_outfile_pwrite(w->f, s->map + in_off, (size_t)n, out_off);
        (void)madvise(pages, b - a, MADV_DONTNEED);
        return st;
    }
    /* Exactly n bytes, or an input error. */
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(s->fd, w->bounce + got, (size_t)n - got, (off_t)(in_off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return r < 0 ? mq_set_error(MQ_STATUS_E_IO, "%s: reading %llu bytes at offset %llu: %s",
                                        s->path, (unsigned long long)n, (unsigned long long)in_off,
                                        strerror(errno))
                         : mq_set_error(MQ_STATUS_E_IO,
                                        "input '%s' changed while being read: it ends before the "
                                        "%llu bytes at offset %llu (shorter than its header says)",
                                        s->path, (unsigned long long)n, (unsigned long long)in_off);
        got += (size_t)r;
    }
    return mq_outfile_pwrite(w->f, w->bounce, (size_t)n, out_off);
}

static void record_error(mq_writer *w, mq_status st)
{
    if (st != MQ_OK && w->err == MQ_OK) {
        w->err = st;
        w->errmsg = strdup(mq_last_error());
    }
}

static void *writer_main(void *arg)
{
    mq_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        bool skip = w->cancel || w->err != MQ_OK;
        bool copying = !skip && w->copy_next < w->ncopies;
        while (!w->quit && w->head == w->tail && !copying) {
            pthread_cond_wait(&w->job, &w->mu);
            skip = w->cancel || w->err != MQ_OK;
            copying = !skip && w->copy_next < w->ncopies;
        }
        if (w->head != w->tail) {
            mq_write_job j = w->q[w->head % QUEUE_CAP];
            w->busy = true;
            pthread_mutex_unlock(&w->mu);
            mq_status st = skip ? MQ_OK : do_job(w, &j);
            if (j.release_input) mq_ring_release(w->ring);
            pthread_mutex_lock(&w->mu);
            record_error(w, st);
            if (j.buf) {
                w->free_list[w->nfree++] = j.buf;
                pthread_cond_signal(&w->freed);
            }
            w->head++;
            pthread_cond_signal(&w->space);
        } else if (copying) {
            copy_item c = w->copies[w->copy_next];
            uint64_t step = c.n - w->copy_done < w->buf_bytes ? c.n - w->copy_done : w->buf_bytes;
            /* The step after this one, for the helper to map in meanwhile. */
            uint64_t next_in = c.in_off + w->copy_done + step, next_n = c.n - w->copy_done - step;
            if (!next_n && w->copy_next + 1 < w->ncopies) {
                next_in = w->copies[w->copy_next + 1].in_off;
                next_n = w->copies[w->copy_next + 1].n;
            }
            if (next_n > w->buf_bytes) next_n = w->buf_bytes;
            w->busy = true;
            pthread_mutex_unlock(&w->mu);
            mq_status st = copy_step(w, c.in_off + w->copy_done, step, c.out_off + w->copy_done,
                                     next_in, next_n);
            if (st == MQ_OK) note_written(w, c.out_off + w->copy_done, step);
            pthread_mutex_lock(&w->mu);
            record_error(w, st);
            if ((w->copy_done += step) == c.n) {
                w->copy_next++;
                w->copy_done = 0;
            }
        } else {
            break; /* quit, and nothing left to do */
        }
        w->busy = false;
        if (w->head == w->tail && (w->copy_next == w->ncopies || w->err != MQ_OK || w->cancel))
            pthread_cond_broadcast(&w->idle);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static mq_status start_threads(mq_writer *w)
{
    /* Signals stay with the program's own threads (see ring.c). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&w->tid, NULL, writer_main, w);
    w->running = e == 0;
    /* Without a helper the writer does its work itself. */
    if (e == 0) w->helper_running = pthread_create(&w->helper_tid, NULL, helper_main, w) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return mq_set_error(MQ_STATUS_E_NOMEM, "%s: cannot start the writer thread: %s",
                            w->src.path, strerror(e));
    return MQ_OK;
}

mq_status mq_writer_new(mq_outfile *f, mq_ring *ring, mq_backend *be, const mq_copy_source *src,
                        unsigned nbuf, size_t buf_bytes, mq_writer **out)
{
    *out = NULL;
    mq_writer *w = calloc(1, sizeof *w);
    if (!w) return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", src->path);
    w->f = f;
    w->ring = ring;
    w->be = be;
    w->src = *src;
    w->buf_bytes = buf_bytes;
    w->page = (size_t)sysconf(_SC_PAGESIZE);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->job, NULL);
    pthread_cond_init(&w->space, NULL);
    pthread_cond_init(&w->freed, NULL);
    pthread_cond_init(&w->idle, NULL);
    pthread_cond_init(&w->helper_cv, NULL);
    pthread_cond_init(&w->mapped_cv, NULL);
    w->bufs = calloc(nbuf, sizeof *w->bufs);
    w->from_be = calloc(nbuf, sizeof *w->from_be);
    w->free_list = calloc(nbuf, sizeof *w->free_list);
    if (!w->bufs || !w->from_be || !w->free_list) goto nomem;
    for (w->nbuf = 0; w->nbuf < nbuf; w->nbuf++) {
        if (!(w->bufs[w->nbuf] = mq_staging_alloc(be, buf_bytes, &w->from_be[w->nbuf]))) goto nomem;
        w->free_list[w->nfree++] = w->bufs[w->nbuf];
    }
    if ((!src->map || src->in_kernel) &&
        !(w->bounce = mq_staging_alloc(NULL, buf_bytes, &w->bounce_from_be)))
        goto nomem;
    mq_status st = start_threads(w);
    if (st != MQ_OK) {
        mq_writer_free(w);
        return st;
    }
    *out = w;
    return MQ_OK;
nomem:
    mq_writer_free(w);
    return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory for %u output buffers of %zu bytes",
                        src->path, nbuf, buf_bytes);
}

/* The writer's error in this thread's message; call with the lock held. */
static mq_status rethrow(mq_writer *w)
{
    return mq_set_error(w->err, "%s", w->errmsg ? w->errmsg : "writing the output failed");
}

mq_status mq_writer_buffer(mq_writer *w, unsigned char **buf)
{
    mq_status st = MQ_OK;
    pthread_mutex_lock(&w->mu);
    while (w->nfree == 0 && w->err == MQ_OK)
        pthread_cond_wait(&w->freed, &w->mu);
    if (w->err != MQ_OK)
        st = rethrow(w);
    else
        *buf = w->free_list[--w->nfree];
    pthread_mutex_unlock(&w->mu);
    return st;
}

mq_status mq_writer_submit(mq_writer *w, const mq_write_job *job)
{
    mq_status st = MQ_OK;
    pthread_mutex_lock(&w->mu);
    while (w->tail - w->head == QUEUE_CAP && w->err == MQ_OK)
        pthread_cond_wait(&w->space, &w->mu);
    if (w->err != MQ_OK) {
        st = rethrow(w);
    } else {
        w->q[w->tail % QUEUE_CAP] = *job;
        w->tail++;
        pthread_cond_signal(&w->job);
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}

mq_status mq_writer_copy(mq_writer *w, uint64_t in_off, uint64_t n, uint64_t out_off)
{
    mq_status st = MQ_OK;
    if (!n) return MQ_OK;
    pthread_mutex_lock(&w->mu);
    if (w->err != MQ_OK) {
        st = rethrow(w);
    } else if (w->ncopies == w->copy_cap) {
        size_t cap = w->copy_cap ? 2 * w->copy_cap : 64;
        copy_item *c = realloc(w->copies, cap * sizeof *c);
        if (!c) st = mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", w->src.path);
        if (c) {
            w->copies = c;
            w->copy_cap = cap;
        }
    }
    if (st == MQ_OK) {
        w->copies[w->ncopies++] = (copy_item){in_off, n, out_off};
        pthread_cond_signal(&w->job);
    }
    pthread_mutex_unlock(&w->mu);
    return st;
}

mq_status mq_writer_finish(mq_writer *w)
{
    mq_status st = MQ_OK;
    pthread_mutex_lock(&w->mu);
    while (w->busy || w->head != w->tail || (w->copy_next < w->ncopies && w->err == MQ_OK))
        pthread_cond_wait(&w->idle, &w->mu);
    if (w->err != MQ_OK) st = rethrow(w);
    pthread_mutex_unlock(&w->mu);
    return st;
}

void mq_writer_free(mq_writer *w)
{
    if (!w) return;
    if (w->running) {
        /* Queued jobs are skipped but still hand their input chunks back. */
        pthread_mutex_lock(&w->mu);
        w->quit = w->cancel = true;
        pthread_cond_signal(&w->job);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->tid, NULL);
    }
    if (w->helper_running) {
        pthread_mutex_lock(&w->mu);
        w->helper_quit = true;
        pthread_cond_signal(&w->helper_cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->helper_tid, NULL);
    }
    for (unsigned i = 0; w->bufs && i < w->nbuf; i++)
        mq_staging_free(w->be, w->bufs[i], w->from_be[i]);
    mq_staging_free(NULL, w->bounce, false);
    pthread_cond_destroy(&w->mapped_cv);
    pthread_cond_destroy(&w->helper_cv);
    pthread_cond_destroy(&w->idle);
    pthread_cond_destroy(&w->freed);
    pthread_cond_destroy(&w->space);
    pthread_cond_destroy(&w->job);
    pthread_mutex_destroy(&w->mu);
    free(w->copies);
    free(w->bufs);
    free(w->from_be);
    free(w->free_list);
    free(w->errmsg);
    free(w);
}
