/* What the loop benchmarks (bench_hostkern, bench_msekern) share: the
 * calling thread's CPU time, and a xorshift generator for their weights. */
#ifndef MQ_BENCHCPU_H
#define MQ_BENCHCPU_H

#include <stdint.h>
#include <time.h>

static inline double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline uint64_t rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

#endif
