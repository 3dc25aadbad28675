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

#endif
