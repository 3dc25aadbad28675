/* Wall-clock seconds and medians, for the timings the CLI prints and the
 * benchmarks report. */
#ifndef MQ_TIMING_H
#define MQ_TIMING_H

#include <stddef.h>

/* Seconds on the monotonic clock. */
double mq_now_s(void);
/* The median of v[0..n) (the mean of the middle two when n is even); sorts v.
 * n must be at least 1. */
double mq_median(double *v, size_t n);

#endif
