/* Quantizing whole rows of one weight as its layout says: the one routine
 * under both the in-memory path (the whole tensor at once, run/quantize.c)
 * and the stream (a chunk of rows at a time, streamexec.c), so that the two
 * write the same bytes by construction. */
#ifndef MQ_QUANTROWS_H
#define MQ_QUANTROWS_H

#include "backend.h"
#include "layout.h"
#include "observer.h"
#include "scheme.h"

/*
 * Quantizes rows [first, first + rows) of the weight laid out by `l` (whole
 * block rows with a block layout), `src` pointing at row `first`, on `be`:
 * the codes into `codes`, packed as the output holds them from row `first`
 * on, *code_bytes of them; that band's scales into `scale` in the weight's
 * dtype, *scales of them; one zero point a row into `zp` (asymmetric only,
 * else NULL). The weight error folds into `err`. A NaN or Inf is
 * MQ_STATUS_E_DATA with *bad the index, in the whole tensor, of the group
 * (row or block) that holds it, as mq_nonfinite_error takes it.
 */
mq_status mq_quantize_band(mq_backend *be, const mq_qlayout *l, const void *src, mq_dtype dt,
                           size_t first, size_t rows, void *codes, void *scale, int8_t *zp,
                           size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err);

/* mq_quantize_band of the band whose values are a quantized source's (sd):
 * the band's codes at `codes` (values [first * l->cols, ...) of a weight of
 * src_cols columns), the scale rows they need at `src_scale`, through the
 * back end's quantize_source (which b must have); `scratch` holds the band
 * as values for a back end that needs them on the host. The same bytes as
 * dequantizing the band and mq_quantize_band. */
mq_status mq_quantize_band_source(mq_backend *be, const mq_qlayout *l, mq_srcdesc sd,
                                  const void *codes, size_t src_cols, const void *src_scale,
                                  void *scratch, size_t first, size_t rows, void *q, void *scale,
                                  int8_t *zp, size_t *code_bytes, size_t *scales, size_t *bad,
                                  mq_err_acc *err);

/*
 * The mse observer on the same band (see observer.h): mq_scan_band_mse
 * searches every step of the band's groups, their records into `mask` (the
 * whole tensor's, indexed by group, mq_obs_mse_mask_bytes each) and the
 * tensor's improving steps into `improved`; once every band was scanned,
 * mq_quantize_band_mse writes the band as mq_quantize_band does, each group
 * with its best range among the first `limit` steps (mq_obs_mse_limit). The
 * search and the codes run through the back end's mse_scan and mse_quantize
 * (bit-identical to the reference's), so every back end writes the same
 * bytes. `imp` (NULL: none) holds the weight's importances, one per column
 * of a weight row (l->inner of them), which weigh the search's error
 * (observer.h).
 */
mq_status mq_scan_band_mse(mq_backend *be, const mq_qlayout *l, const mq_obs_mse *o,
                           const float *imp, const void *src, mq_dtype dt, size_t first,
                           size_t rows, uint8_t *mask, bool *improved, size_t *bad);
mq_status mq_quantize_band_mse(mq_backend *be, const mq_qlayout *l, const mq_obs_mse *o,
                               size_t limit, const uint8_t *mask, const void *src, mq_dtype dt,
                               size_t first, size_t rows, void *codes, void *scale, int8_t *zp,
                               size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err);

/* The whole weight at once (the in-memory path), with the scheme's observer:
 * mq_quantize_band over every row for min-max, the two mse steps above for
 * mse (imp as there). Other arguments as mq_quantize_band's. */
mq_status mq_quantize_whole(mq_backend *be, const mq_qlayout *l, const mq_scheme *sc,
                            const float *imp, const void *src, mq_dtype dt, void *codes,
                            void *scale, int8_t *zp, size_t *bad, mq_err_acc *err);

#endif
