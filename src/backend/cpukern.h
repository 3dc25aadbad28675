/* The CPU kernels (the host path, `--device host`): the same results as
 * reference.c, bit for bit, from loops over blocks of widened floats that the
 * compiler vectorizes (AVX-512, AVX2 or plain SSE2, chosen at run time).
 * reference.c stays the oracle. */
#ifndef MQ_CPUKERN_H
#define MQ_CPUKERN_H

#include "reference.h"

/* As mq_ref_stats_update (lo/hi may differ only in the sign of a zero, which
 * mq_ref_params never sees). */
void mq_hk_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n);
/* As mq_ref_quantize_values, each code stored XOR code_xor (0, or 0x80 for
 * compressed-tensors' packed unsigned bytes, see layout.h). */
void mq_hk_quantize_values(const void *src, mq_dtype dt, size_t n, float scale, int8_t zp,
                           uint8_t code_xor, int8_t *q);
/* As mq_ref_quantize_rows, codes stored XOR code_xor. */
mq_status mq_hk_quantize_rows(const void *src, mq_dtype dt, size_t rows, size_t cols,
                              bool symmetric, int8_t *q, void *scale, int8_t *zp, uint8_t code_xor,
                              size_t *bad_row);
/* As mq_ref_cast_f16. */
uint64_t mq_hk_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst);

/*
 * As mq_hk_quantize_rows / mq_hk_quantize_values (the same bytes), and adds
 * the weight error of the values to *err as mq_ref_error_stats would, in
 * the quantize loop itself (nearly free). clamped and max_abs match the
 * reference (max_abs up to one fp32 rounding where a value was clamped);
 * sig and err2 are summed in fp32 over blocks of at most 512 values, then
 * in double, so they agree with the reference to a relative 1e-5.
 */
mq_status mq_hk_quantize_rows_err(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                  bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                  uint8_t code_xor, size_t *bad_row, mq_err_acc *err);
void mq_hk_quantize_values_err(const void *src, mq_dtype dt, size_t n, float scale, int8_t zp,
                               bool symmetric, uint8_t code_xor, int8_t *q, mq_err_acc *err);

/*
 * The int4 and float8 kinds (reference.h), bit-identical to mq_ref_quantize_rows_k,
 * mq_ref_quantize_values_k and mq_ref_quantize_blocks; with err (NULL: none)
 * the weight error is added as mq_ref_error_stats_k / _blocks would, to the
 * tolerances of the int8 _err kernels above. Rows of kind INT8 go to those;
 * values take INT4 (one code per byte) or FP8 only.
 */
mq_status mq_hk_quantize_rows_k(const void *src, mq_dtype dt, size_t rows, size_t cols,
                                mq_qkind kind, bool symmetric, void *q, void *scale, int8_t *zp,
                                size_t *bad_row, mq_err_acc *err);
void mq_hk_quantize_values_k(const void *src, mq_dtype dt, size_t n, mq_qkind kind, float scale,
                             int8_t zp, uint8_t *q, mq_err_acc *err);
mq_status mq_hk_quantize_blocks(const void *src, mq_dtype dt, size_t rows, size_t cols, size_t bs,
                                uint8_t *q, void *scale, size_t *bad_block, mq_err_acc *err);

#endif
