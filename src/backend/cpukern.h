/* The CPU kernels (the host path, `--device host`): the same results as
 * reference.c, bit for bit, from loops over blocks of widened floats that the
 * compiler vectorizes (AVX-512, AVX2 or plain SSE2, chosen at run time).
 * reference.c stays the oracle. */
#ifndef MQ_CPUKERN_H
#define MQ_CPUKERN_H

#include "observer.h"
#include "pool.h"
#include "reference.h"

/* As mq_ref_stats_update (lo/hi may differ only in the sign of a zero, which
 * mq_ref_params never sees). */
void mq_hk_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n);
/* n halves as fp32 into dst, each as mq_f16_to_f32 gives it (a signalling
 * NaN made quiet), by the CPU's conversion instruction where it has one. */
void mq_hk_widen_f16(const void *src, size_t n, float *dst);
/* As mq_ref_cast_f16. */
uint64_t mq_hk_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst);

/*
 * As mq_ref_quantize (the same bytes, for every kind and grouping), and with
 * err (NULL: none) adds the weight error of the values to *err as
 * mq_ref_error_stats would, in the quantize loop itself (nearly free):
 * clamped matches the reference, max_abs up to one fp32 rounding where a
 * value was clamped; sig and err2 are summed in fp32 over blocks of at most
 * 512 values, then in double, so they agree with the reference to a relative
 * 1e-5. MQ_STATUS_E_INVALID_ARG for blocks of a kind other than FP8.
 */
mq_status mq_hk_quantize(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,
                         void *q, void *scale, int8_t *zp, size_t *bad, mq_err_acc *err);
/* As mq_ref_quantize_values (one code per byte, int4 unpacked), err as above
 * (the zero point counts as given: a symmetric call passes 0). */
void mq_hk_quantize_values(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float scale,
                           int8_t zp, void *q, mq_err_acc *err);

/* As mq_ref_src_dequant, byte for byte (cpusrc.c). */
void mq_hk_src_dequant(mq_srcdesc d, const void *codes, uint64_t e0, size_t n, size_t cols,
                       const void *scale, void *dst);
/* As mq_obs_mse_scan (the same records, bit for bit), its groups spread over
 * pool's threads (NULL: the calling thread); kinds other than INT8, INT4 and
 * FP8 go to mq_obs_mse_scan itself. */
mq_status mq_hk_mse_scan(mq_pool *pool, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                         const void *src, mq_dtype dt, size_t rows, size_t cols, uint8_t *mask,
                         bool *improved, size_t *bad);
/* As mq_obs_mse_quantize (the same bytes), with the codes from the host
 * kernels' quantize loop and err (NULL: none) as mq_hk_quantize adds it. */
mq_status mq_hk_mse_quantize(mq_qdesc d, const mq_obs_mse *o, const float *imp, size_t limit,
                             const uint8_t *mask, const void *src, mq_dtype dt, size_t rows,
                             size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                             mq_err_acc *err);
/* out[i] = mq_obs_pow(x[i], norm) by the loop's exact lanes, for n a
 * multiple of 8 (for its tests). */
void mq_hk_obs_pow(const float *x, size_t n, float norm, float *out);
/* The search's screening power, ms_pow_fast, by the same vector code, for
 * x below the loop's middle range's end (as above); *rel its bound
 * relative to x^n within that range, *lo the range's start and *tiny its
 * absolute bound below it (for its tests). */
void mq_hk_obs_pow_fast(const float *x, size_t n, float norm, float *out, double *rel, float *lo,
                        double *tiny);
/* For the tests of the screening only: a factor on its bounds (1: as
 * derived; larger sends more steps to the exact power, up to all but those
 * 3x apart) and the count of its exact rechecks so far. */
extern double mq_hk_mse_slack;
extern size_t mq_hk_mse_rechecks;
/* Always 0: the screening's fence against contraction (cpumse.c), a
 * variable so that the compiler cannot fold it away. */
extern int32_t mq_hk_mse_fence;
/* As mq_obs_mse_errors, from the loop above (for its tests). */
bool mq_hk_mse_errors(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                      mq_dtype dt, size_t rows, size_t cols, size_t g, float *err);

#endif
