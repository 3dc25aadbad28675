/* The MSE observer: a search of the clipping range per group that replaces
 * min-max scales, written to give exactly the scales, zero points and codes of
 * llm-compressor's memoryless MSE observer (observers/mse.py, the CPU path of
 * mse_quant.py's _grid_search_mse) followed by compressed-tensors' compressor,
 * for F32 weights.
 *
 * For each group, with lo, hi, amax its min-max statistics, and for step
 * i = 0, 1, ..., steps - 1 where steps = (int)(maxshrink * grid) (in double):
 *   p     = (float)(1.0 - (double)i / grid)       (torch rounds the Python
 *                                                  scalar to fp32 first)
 *   cand  = the statistics times p, each product rounded to fp32
 *   s, zp = mq_ref_params(cand)                    (calculate_qparams)
 *   w_hat = (code(w; s, zp) - zp) * s              (fake_quantize, fp32)
 *   err   = sum over the group, in fp32 in torch's order (mq_obs_sum), of
 *           imp[j] * mq_obs_pow(|w_hat - w|, (float)norm)  (obspow.h; each
 *           product rounded to fp32; without imp the plain powers)
 * Only an error strictly smaller than the group's best (initially FLT_MAX)
 * replaces it. The patience counter is one per tensor: step i "improved" when
 * any group of the tensor improved at i, and the search stops after the first
 * `patience` consecutive steps in which none did. The group then takes the
 * parameters of its best step.
 *
 * Because the stop is a property of the whole tensor, a tensor seen in pieces
 * takes two passes: mq_obs_mse_scan over every piece searches every step,
 * keeping each group's steps of improvement (a few bits) and the steps at
 * which some group improved; mq_obs_mse_limit turns the latter into the
 * number of steps run, and mq_obs_mse_quantize over every piece takes each
 * group's last improvement before it and writes the codes.
 *
 * The fp32 sum runs in the order of torch's CPU sum (its 8-lane kernels):
 * a serial sum in value order, as this search had before, decided near ties
 * otherwise than llm-compressor, whose three kernel sets all agree there
 * (bench/RESULTS.md). mq_obs_pow is the correctly rounded power nearly
 * always, as torch's (the C library's powf, or Sleef's) is. */
#ifndef MQ_OBSERVER_H
#define MQ_OBSERVER_H

#include "monoquant.h"
#include "qkind.h"

#include <stdbool.h>

/* A sum of n fp32 terms, added in value order, in the order of torch's CPU
 * sum of a contiguous dimension (SumKernel.cpp's cascade sum with 8-lane
 * vectors, its default and AVX2 kernels): n >= 8 values as vectors of 8
 * lanes, four vector accumulators (vector v into v % 4) over rows of four
 * vectors, those folded up a 4-level cascade every 2^lp rows (lp = max(4,
 * ceil(log2 rows) / 4)), the levels then added into the first, the vectors
 * past the last whole row into accumulator 0, the accumulators added in
 * order, and finally 0 + the values past the last whole vector + the
 * lanes in order; n < 8 values as four scalar accumulators the same way.
 * cl_kernels/mse.cl holds the same steps. */
typedef struct {
    float acc[4][32]; /* [level][accumulator * 8 + lane] */
    float tail;       /* 0 + the values past the last whole vector */
    size_t n, i, rows, vecs, step;
    unsigned lp, stage; /* stage 0: rows, 1: vectors past them, 2: tail */
} mq_obs_sum;

void mq_obs_sum_init(mq_obs_sum *s, size_t n);
void mq_obs_sum_add(mq_obs_sum *s, float x);
float mq_obs_sum_end(mq_obs_sum *s);
/* The most additions on any term's way to mq_obs_sum's result for n terms,
 * so that the sum of non-negative terms is within depth * 2^-24 (to first
 * order) of their exact sum: at most 16 rows in each of the cascade's first
 * three levels and one step up from each, the fourth level's rows / 4096
 * blocks, 3 to fold the levels, 3 for the vectors past the rows, 3 for the
 * accumulators, 8 lanes and fewer than 8 tail values; n itself when
 * smaller. */
double mq_obs_sum_depth(size_t n);
/* mq_obs_sum of t[0 .. n). */
float mq_obs_sum_of(const float *t, size_t n);

typedef struct {
    double maxshrink;  /* 0.2: the search reaches p > 1 - maxshrink */
    double grid;       /* 100: p falls by 1/grid a step */
    double norm;       /* 2.4: the error exponent (used as fp32) */
    unsigned patience; /* 5: steps without any improvement before stopping */
} mq_obs_mse;

/* The defaults above. */
mq_obs_mse mq_obs_mse_defaults(void);
/* Steps the search may take: (size_t)(maxshrink * grid), 0 when not positive. */
size_t mq_obs_mse_steps(const mq_obs_mse *o);
/* The shrink factor of step i. */
float mq_obs_mse_factor(const mq_obs_mse *o, size_t i);

/* Bytes of one group's record of the steps at which its error fell. */
size_t mq_obs_mse_mask_bytes(const mq_obs_mse *o);
/* Searches every step for each group of a rows x cols call (groups as
 * mq_ref_quantize takes them from d), with imp (NULL: unweighted) the
 * importance weight of each column, imp[j] for column j of the call, the same
 * for every row: group g's record of improving steps
 * into mask + g * mq_obs_mse_mask_bytes(o) (bit i % 8 of byte i / 8), and
 * improved[i] set (never cleared) where some group improved at step i, for
 * the whole tensor's stop. NaN/Inf: MQ_STATUS_E_DATA with *bad the group;
 * MQ_STATUS_E_NOMEM (no message) when a group's copy cannot be allocated. */
mq_status mq_obs_mse_scan(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                          mq_dtype dt, size_t rows, size_t cols, uint8_t *mask, bool *improved,
                          size_t *bad);
/* Group g's error at every step, err[i] for i < mq_obs_mse_steps(o), as the
 * scan computes them (the kernels' tests compare them bit for bit); false
 * when the group holds a NaN or an infinity, or on no memory. */
bool mq_obs_mse_errors(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                       mq_dtype dt, size_t rows, size_t cols, size_t g, float *err);
/* The number of steps the search runs, given the whole tensor's improved[]. */
size_t mq_obs_mse_limit(const mq_obs_mse *o, const bool *improved);
/* The step a group with record `mask` takes when the search ran `limit` steps. */
size_t mq_obs_mse_best(const mq_obs_mse *o, const uint8_t *mask, size_t limit);
/* As mq_ref_quantize, with each group's range that of its best step among
 * the first `limit` (mask: the groups' records from mq_obs_mse_scan). */
mq_status mq_obs_mse_quantize(mq_qdesc d, const mq_obs_mse *o, const float *imp, size_t limit,
                              const uint8_t *mask, const void *src, mq_dtype dt, size_t rows,
                              size_t cols, void *q, void *scale, int8_t *zp, size_t *bad);

#endif
