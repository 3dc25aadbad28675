/* What a quantize call makes, as one small value every back end takes: the
 * kind of code, symmetric or not, the grouping (rows of the call, or 2-D
 * blocks) and the stored code bytes' relabelling. INT8 is one kind among the
 * others; a new kind is a new enum value here and a case in each back end's
 * one quantize loop. */
#ifndef MQ_QKIND_H
#define MQ_QKIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "monoquant.h"

/* The codes (reference.h gives each kind's formulas):
 *   INT8  one int8 code per value, DESIGN.md's scale rule;
 *   INT4  codes in [-8, 7], packed eight to a little-endian int32 word as
 *         compressed-tensors' pack_to_int32 does;
 *   FP8   one float8 e4m3fn byte per value (symmetric only);
 *   MXFP4 fp4 e2m1 codes, two to a byte (the even one in the low nibble),
 *         one e8m0 scale byte (a power of two) per group;
 *   MXFP8 one e4m3fn byte per value, one e8m0 scale byte per group;
 *   NVFP4 e2m1 codes packed as MXFP4's, one e4m3fn scale byte per group,
 *         under the tensor's fp32 global scale (mq_qdesc.gscale).
 * The MX kinds and NVFP4 are symmetric and their groups are rows of the call. */
typedef enum {
    MQ_QK_INT8 = 0,
    MQ_QK_INT4,
    MQ_QK_FP8,
    MQ_QK_MXFP4,
    MQ_QK_MXFP8,
    MQ_QK_NVFP4
} mq_qkind;

/* The kinds whose scales are e8m0 bytes rather than the weight's dtype. */
static inline bool mq_qkind_is_mx(mq_qkind k)
{
    return k == MQ_QK_MXFP4 || k == MQ_QK_MXFP8;
}

/* The kinds whose codes are e2m1, two to a byte. */
static inline bool mq_qkind_is_fp4(mq_qkind k)
{
    return k == MQ_QK_MXFP4 || k == MQ_QK_NVFP4;
}

/* The kinds whose scales are one byte (e8m0, or NVFP4's e4m3). */
static inline bool mq_qkind_byte_scale(mq_qkind k)
{
    return mq_qkind_is_mx(k) || k == MQ_QK_NVFP4;
}

typedef struct {
    mq_qkind kind;
    /* No zero point (FP8 and the MX kinds are always symmetric, whatever
     * this says). */
    bool symmetric;
    /* Each stored INT8 code XOR this: 0, or 0x80 for the unsigned bytes of
     * compressed-tensors' packed words (layout.h); the other kinds take 0. */
    uint8_t code_xor;
    /* 0: one scale per row of the call (a channel, or a group the caller
     * made a row); b > 0: one per 2-D block of b x b values (FP8 only). */
    size_t block;
    /* NVFP4: the tensor's global scale (compressed-tensors' generate_gparam,
     * mq_nvfp4_global_scale), which every group scale is multiplied by
     * before its e4m3 rounding and divided by again to make the codes;
     * the other kinds ignore it. */
    float gscale;
} mq_qdesc;

/* Whether kind k has zero points when asymmetric (FP8, the MX kinds and
 * NVFP4 are symmetric only). */
static inline bool mq_qkind_has_zp(mq_qkind k)
{
    return k == MQ_QK_INT8 || k == MQ_QK_INT4;
}

/* Whether a call of d writes zero points. */
static inline bool mq_qdesc_has_zp(mq_qdesc d)
{
    return !d.symmetric && mq_qkind_has_zp(d.kind);
}

/* The plain descriptor of kind k: rows, no relabelling (NVFP4: a global
 * scale of 1 until the caller sets the tensor's). */
static inline mq_qdesc mq_qd(mq_qkind k, bool symmetric)
{
    return (mq_qdesc){.kind = k, .symmetric = symmetric || !mq_qkind_has_zp(k), .gscale = 1.0f};
}

/* FP8 in bs x bs blocks. */
static inline mq_qdesc mq_qd_blocks(size_t bs)
{
    return (mq_qdesc){.kind = MQ_QK_FP8, .symmetric = true, .block = bs};
}

/* ---- sources: a quantized input read as the float weight it stands for ----
 *
 * The kinds of source weight (reference.h gives each one's formula):
 *   FP8_BLOCK  one e4m3fn byte per value, one scale per block_r x block_c
 *              block of a 2-D weight ([ceil(out / block_r), ceil(in /
 *              block_c)] in scale_dt, F32 or BF16; the last block of a row
 *              or column may be partial).
 * A new source kind is a new enum value here and a case in the reference's
 * and each back end's dequantize_source. */
typedef enum { MQ_SRC_FP8_BLOCK = 0 } mq_srckind;

typedef struct {
    mq_srckind kind;
    size_t block_r, block_c; /* the scale block */
    mq_dtype scale_dt;       /* the stored scales' dtype */
    mq_dtype dt;             /* the values' dtype once dequantized (F32, F16, BF16) */
} mq_srcdesc;

/* An FP8 block source of br x bc blocks, scales in scale_dt, values as dt. */
static inline mq_srcdesc mq_sd_fp8_block(size_t br, size_t bc, mq_dtype scale_dt, mq_dtype dt)
{
    return (mq_srcdesc){
        .kind = MQ_SRC_FP8_BLOCK, .block_r = br, .block_c = bc, .scale_dt = scale_dt, .dt = dt};
}

/* The scale-grid rows [*r0, *r1) that values [e0, e0 + n) (n > 0) of a
 * weight of `cols` columns need. */
static inline void mq_srcdesc_scale_rows(mq_srcdesc d, uint64_t e0, size_t n, size_t cols,
                                         uint64_t *r0, uint64_t *r1)
{
    *r0 = e0 / cols / d.block_r;
    *r1 = (e0 + n - 1) / cols / d.block_r + 1;
}

/* Bytes one row of `cols` codes takes as stored. */
size_t mq_qkind_row_bytes(mq_qkind k, size_t cols);
/* Smallest and largest code (the FP8 bounds are +-448). */
float mq_qkind_qmin(mq_qkind k);
float mq_qkind_qmax(mq_qkind k);
/* Bytes one stored scale takes: one for the MX kinds and NVFP4, else the dtype's. */
size_t mq_qkind_scale_size(mq_qkind k, mq_dtype dt);
/* Scale values a call of rows x cols writes (one per row, or per block). */
size_t mq_qdesc_scales(mq_qdesc d, size_t rows, size_t cols);
/* Group g (g < mq_qdesc_scales) of such a call: rows [*r0, *r1), columns
 * [*c0, *c0 + *nc). */
void mq_qdesc_group(mq_qdesc d, size_t rows, size_t cols, size_t g, size_t *r0, size_t *r1,
                    size_t *c0, size_t *nc);

#endif
