/* Reference dequantization of quantized layouts of other tools that are read
 * as sources (FP8 blocks are in reference.h). */
#ifndef MQ_SRCREF_H
#define MQ_SRCREF_H

#include "dtype.h"

#include <stddef.h>
#include <stdint.h>

/*
 * gpt-oss MXFP4 experts, as transformers' gpt-oss integration dequantizes
 * them (integrations/mxfp4.py, _convert_moe_packed_tensors): one expert's
 * `blocks` [out, in / 32, 16] hold two e2m1 codes a byte (value 2k in the low
 * nibble, 2k + 1 in the high one) and `scales` [out, in / 32] an e8m0
 * exponent per 32 values; value (j, h) is e2m1 * 2^(scale - 127) in fp32
 * (255: +inf), stored in `dt` (BF16 or F16 rounded to nearest even), and the
 * weight is the transpose, [in, out]. Writes values [e0, e0 + n) of that
 * transpose, row-major, into dst.
 */
void mq_ref_mxfp4_expert(const uint8_t *blocks, const uint8_t *scales, size_t out, size_t in,
                         uint64_t e0, size_t n, mq_dtype dt, void *dst);

#endif
