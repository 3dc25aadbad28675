/* A back end's dequantize_source against the reference (mq_ref_src_dequant),
 * byte for byte: the check test_hostkern and test_kernels share. */
#ifndef MQ_SRCCHECK_H
#define MQ_SRCCHECK_H

#include "backend.h"

/* Values [e0, e0 + n) of a random rows x cols FP8 block source (br x bc
 * blocks; codes and scales with edge values when `edges`), every scale dtype
 * and value dtype, through be and through the reference; fails on the first
 * byte that differs. */
void sc_check_fp8_block(mq_backend *be, uint64_t seed, size_t rows, size_t cols, size_t br,
                        size_t bc, uint64_t e0, size_t n, bool edges);
/* sc_check_fp8_block over the shapes and ranges every back end must meet:
 * partial edge blocks, bands, ranges that start and end inside rows, all 256
 * codes, NaN/Inf/zero/subnormal-producing scales. */
void sc_check_fp8_block_suite(mq_backend *be, uint64_t seed);

/* be's quantize_source against the reference's two steps (dequantize the
 * source, quantize the values), byte for byte in codes, scales and zero
 * points, and the weight error within a relative 1e-4: a band of `rows`
 * groups of `cols` values (src_cols a multiple of cols, or cols a multiple
 * of src_cols: groups from mid-row, or bands of whole rows) from group
 * `first`, for the kinds of every preset that reads rows, and 2-D blocks. */
void sc_check_quantize_source(mq_backend *be, uint64_t seed, size_t src_rows, size_t src_cols,
                              size_t cols, size_t first, size_t rows);

#endif
