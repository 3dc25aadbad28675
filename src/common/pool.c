/* Worker threads for split jobs. Parts are handed out under one mutex: a job
 * has a handful of parts, each milliseconds long, so the lock never matters. */
#include "pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct mq_pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t *tids;
    unsigned started; /* workers running */
    bool quit;
    void (*fn)(void *arg, unsigned part);
    void *arg;
    unsigned parts, next, finished;
};

static void *worker(void *vp)
{
    mq_pool *p = vp;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->next >= p->parts)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->quit) break;
        unsigned k = p->next++;
        void (*fn)(void *, unsigned) = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, k);
        pthread_mutex_lock(&p->mu);
        if (++p->finished == p->parts) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

mq_pool *mq_pool_new(unsigned threads)
{
    if (threads < 2) return NULL;
    mq_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (!(p->tids = calloc(threads - 1, sizeof *p->tids))) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    /* Workers take no signals: a Ctrl-C handler then always runs on a thread
     * of the program's own, as it would without the pool. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i + 1 < threads; i++) {
        if (pthread_create(&p->tids[i], NULL, worker, p) != 0) break;
        p->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->started == 0) {
        mq_pool_free(p);
        return NULL;
    }
    return p;
}

unsigned mq_pool_threads(const mq_pool *p)
{
    return p ? p->started + 1 : 1;
}

void mq_pool_run(mq_pool *p, void (*fn)(void *arg, unsigned part), void *arg, unsigned parts)
{
    if (!p) {
        for (unsigned k = 0; k < parts; k++)
            fn(arg, k);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->parts = parts;
    p->next = 0;
    p->finished = 0;
    pthread_cond_broadcast(&p->work);
    while (p->next < p->parts) {
        unsigned k = p->next++;
        pthread_mutex_unlock(&p->mu);
        fn(arg, k);
        pthread_mutex_lock(&p->mu);
        p->finished++;
    }
    while (p->finished < p->parts)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void mq_pool_free(mq_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->started; i++)
        pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}

unsigned mq_cpu_count(unsigned cap)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return (unsigned)n < cap ? (unsigned)n : cap;
}
