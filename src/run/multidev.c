/* mq_stream_files (see multidev.h): the worker threads, their shared queue of
 * files, and the progress calls handed from the workers to the calling thread. */
#include "multidev.h"

#include "error.h"
#include "report.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct multi multi;

typedef struct {
    multi *m;
    mq_backend *be;
    mq_settings set; /* the caller's, with this worker's memory share and progress hook */
    mq_planner *planner;
    mq_stream_totals totals; /* this worker's files only, with the run's totals */
    size_t done_tensors;     /* as its last progress call said */
    uint64_t done_bytes;
    size_t files;
    pthread_t tid;
    bool started;
} worker;

struct multi {
    const char *const *in, *const *out;
    size_t n, next; /* files, and the next one to take */
    const mq_settings *set;
    mq_report **reps; /* one per file */
    worker *w;
    size_t n_w, running;
    pthread_mutex_t mu;
    pthread_cond_t posted;   /* a progress call is waiting, or a worker ended */
    pthread_cond_t consumed; /* the calling thread made the call */
    const mq_progress *event;
    size_t tensors_total;
    uint64_t bytes_total;
    mq_status st; /* the first failure, with its message */
    char *msg;    /* its message (NULL: out of memory) */
};

/* On a worker: waits until the calling thread has passed the call on. */
static void progress_hook(const mq_progress *p, void *user)
{
    worker *w = user;
    multi *m = w->m;
    pthread_mutex_lock(&m->mu);
    while (m->event)
        pthread_cond_wait(&m->consumed, &m->mu);
    w->done_tensors = p->tensors_done;
    w->done_bytes = p->bytes_done;
    m->event = p;
    pthread_cond_signal(&m->posted);
    while (m->event == p)
        pthread_cond_wait(&m->consumed, &m->mu);
    pthread_mutex_unlock(&m->mu);
}

static void fail(multi *m, mq_status st)
{
    pthread_mutex_lock(&m->mu);
    if (m->st == MQ_OK) {
        m->st = st;
        m->msg = strdup(mq_last_error());
    }
    pthread_mutex_unlock(&m->mu);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    multi *m = w->m;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        size_t i = m->st == MQ_OK && m->next < m->n ? m->next++ : m->n;
        pthread_mutex_unlock(&m->mu);
        if (i == m->n) break;
        mq_status st =
            mq_stream_file(m->in[i], m->out[i], &w->set, w->planner, w->be, m->reps[i], &w->totals);
        if (st != MQ_OK) {
            fail(m, st);
            break;
        }
        w->files++;
    }
    pthread_mutex_lock(&m->mu);
    m->running--;
    pthread_cond_signal(&m->posted);
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* On the calling thread until every worker has ended: each waiting progress
 * call, with the sums over the workers. */
static void relay_progress(multi *m)
{
    pthread_mutex_lock(&m->mu);
    while (m->running > 0 || m->event) {
        if (!m->event) {
            pthread_cond_wait(&m->posted, &m->mu);
            continue;
        }
        mq_progress p = *m->event;
        p.tensors_done = 0;
        p.bytes_done = 0;
        for (size_t k = 0; k < m->n_w; k++) {
            p.tensors_done += m->w[k].done_tensors;
            p.bytes_done += m->w[k].done_bytes;
        }
        p.tensors_total = m->tensors_total;
        p.bytes_total = m->bytes_total;
        pthread_mutex_unlock(&m->mu);
        m->set->progress(&p, m->set->progress_user);
        pthread_mutex_lock(&m->mu);
        m->event = NULL;
        pthread_cond_broadcast(&m->consumed);
    }
    pthread_mutex_unlock(&m->mu);
}

static mq_status setup_workers(multi *m, const mq_plan_hints *hints, mq_backend *const *bes,
                               size_t n_be, const mq_stream_totals *totals)
{
    uint64_t limit = m->set->memory_limit ? m->set->memory_limit : MQ_DEFAULT_MEMORY_LIMIT;
    for (size_t k = 0; k < n_be; k++) {
        worker *w = &m->w[k];
        w->m = m;
        w->be = bes[k];
        w->set = *m->set;
        w->set.device.handle = NULL;
        w->set.memory_limit = limit / n_be ? limit / n_be : 1;
        w->set.progress = m->set->progress ? progress_hook : NULL;
        w->set.progress_user = w;
        w->totals.tensors_total = totals->tensors_total;
        w->totals.bytes_total = totals->bytes_total;
        mq_status st = mq_planner_new(m->set, &w->planner);
        if (st != MQ_OK) return st;
        if (hints) mq_planner_set_hints(w->planner, hints);
    }
    return MQ_OK;
}

/* Workers block every signal, as the pipeline's own threads do: a handler
 * runs on the calling thread. */
static mq_status start_workers(multi *m)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    mq_status st = MQ_OK;
    for (size_t k = 0; k < m->n_w && st == MQ_OK; k++) {
        pthread_mutex_lock(&m->mu);
        m->running++;
        pthread_mutex_unlock(&m->mu);
        m->w[k].started = pthread_create(&m->w[k].tid, NULL, worker_main, &m->w[k]) == 0;
        if (!m->w[k].started) {
            pthread_mutex_lock(&m->mu);
            m->running--;
            pthread_mutex_unlock(&m->mu);
            st = mq_set_error(MQ_STATUS_E_NOMEM, "starting a thread for device %zu", k + 1);
            fail(m, st);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return st;
}

mq_status mq_stream_files(const char *const *in_paths, const char *const *out_paths, size_t n,
                          const mq_settings *set, const mq_plan_hints *hints,
                          mq_backend *const *bes, size_t n_be, mq_report *rep,
                          mq_stream_totals *totals)
{
    multi m = {.in = in_paths, .out = out_paths, .n = n, .set = set, .n_w = n_be, .st = MQ_OK};
    mq_status st = MQ_OK;
    if (!n_be || !totals)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_stream_files: no device or totals");
    m.tensors_total = totals->tensors_total;
    m.bytes_total = totals->bytes_total;
    m.reps = calloc(n ? n : 1, sizeof *m.reps);
    m.w = calloc(n_be, sizeof *m.w);
    pthread_mutex_init(&m.mu, NULL);
    pthread_cond_init(&m.posted, NULL);
    pthread_cond_init(&m.consumed, NULL);
    if (!m.reps || !m.w) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "quantizing on %zu devices: out of memory", n_be);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(m.reps[i] = mq_report_new())) {
            st = mq_set_error(MQ_STATUS_E_NOMEM, "quantizing on %zu devices: out of memory", n_be);
            goto done;
        }
    }
    if ((st = setup_workers(&m, hints, bes, n_be, totals)) != MQ_OK) goto done;
    st = start_workers(&m);
    if (set->progress) relay_progress(&m);
    for (size_t k = 0; k < n_be; k++)
        if (m.w[k].started) pthread_join(m.w[k].tid, NULL);
    if (m.st != MQ_OK) {
        st = mq_set_error(m.st, "%s", m.msg ? m.msg : mq_status_str(m.st));
        goto done;
    }
    for (size_t i = 0; i < n && st == MQ_OK; i++)
        st = mq_report_append(rep, m.reps[i]);
    for (size_t k = 0; k < n_be && st == MQ_OK; k++) {
        mq_backend *be = bes[k];
        st = mq_report_add_device(rep, be->backend, be->platform, be->device, m.w[k].files);
        totals->tensors_done += m.w[k].totals.tensors_done;
        totals->bytes_done += m.w[k].totals.bytes_done;
    }
done:
    for (size_t k = 0; m.w && k < n_be; k++)
        mq_planner_free(m.w[k].planner);
    for (size_t i = 0; m.reps && i < n; i++)
        mq_report_free(m.reps[i]);
    free(m.reps);
    free(m.w);
    pthread_cond_destroy(&m.consumed);
    pthread_cond_destroy(&m.posted);
    pthread_mutex_destroy(&m.mu);
    free(m.msg);
    return st;
}
