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
 *   err   = sum over the group of powf(|w_hat - w|, (float)norm), in fp32
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
 * group's last improvement before it and writes the codes. The fp32 sum runs in value order; torch
 * sums in another order and its pow may differ in the last bit, so the two can disagree only where
 * two candidates' errors agree to an ulp or so. */
#ifndef MQ_OBSERVER_H
#define MQ_OBSERVER_H

#include "monoquant.h"
#include "qkind.h"

#include <stdbool.h>

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

/* Importance weights (imp, NULL for none): imp[j] weighs column j, counted
 * from the call's first column, the same for every row; the error of a
 * candidate is then the sum over the group, in value order, in fp32, of
 * imp[j] * powf(|w_hat - w|, (float)norm), each product rounded to fp32
 * before the add. NULL gives exactly the unweighted search above. */

/* Bytes of one group's record of the steps at which its error fell. */
size_t mq_obs_mse_mask_bytes(const mq_obs_mse *o);
/* Searches every step for each group of a rows x cols call (groups as
 * mq_ref_quantize takes them from d): group g's record of improving steps
 * into mask + g * mq_obs_mse_mask_bytes(o) (bit i % 8 of byte i / 8), and
 * improved[i] set (never cleared) where some group improved at step i, for
 * the whole tensor's stop. NaN/Inf: MQ_STATUS_E_DATA with *bad the group;
 * MQ_STATUS_E_NOMEM (no message) when a group's copy cannot be allocated. */
mq_status mq_obs_mse_scan(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                          mq_dtype dt, size_t rows, size_t cols, uint8_t *mask, bool *improved,
                          size_t *bad);
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
