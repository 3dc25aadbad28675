/* Quantizing whole rows of one weight as its layout says: the one routine
 * under both the in-memory path (the whole tensor at once, run/quantize.c)
 * and the stream (a chunk of rows at a time, streamexec.c), so that the two
 * write the same bytes by construction. */
#ifndef MQ_QUANTROWS_H
#define MQ_QUANTROWS_H

#include "backend.h"
#include "layout.h"

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

#endif
