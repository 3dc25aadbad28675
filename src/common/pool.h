/* A few worker threads that run one split job at a time, so the host backend
 * can spread a large call over the cores. One caller at a time. */
#ifndef MQ_POOL_H
#define MQ_POOL_H

#include "monoquant.h"

typedef struct mq_pool mq_pool;

/* `threads` counts the calling thread too; NULL when threads < 2 or when no
 * worker could be started (callers then run the job alone). */
mq_pool *mq_pool_new(unsigned threads);
/* Threads that share a job, the caller included (1 for NULL). */
unsigned mq_pool_threads(const mq_pool *p);
/* Runs fn(arg, k) for every k in [0, parts) on the workers and the calling
 * thread, and returns when all have finished. With p NULL it runs them here. */
void mq_pool_run(mq_pool *p, void (*fn)(void *arg, unsigned part), void *arg, unsigned parts);
void mq_pool_free(mq_pool *p);

/* Online processors, at least 1 and at most `cap`. */
unsigned mq_cpu_count(unsigned cap);

#endif
