/* Plain scalar C versions of every kernel: the numerics of DESIGN.md written
 * once, the test oracle for the OpenCL kernels and the host fallback.
 *
 * Per channel (a contiguous row of `cols` values), all arithmetic in fp32:
 *   symmetric:  amax = max|w|; scale = max(amax / 127.5f, FLT_EPSILON);
 *               s = round_to_stored_dtype(scale); q = clamp(rint(w / s), -128, 127)
 *   asymmetric: lo = min(min w, 0); hi = max(max w, 0);
 *               scale = max((hi - lo) / 255.0f, FLT_EPSILON), where hi - lo
 *               overflows to inf it is hi / 255.0f - lo / 255.0f;
 *               s = round_to_stored_dtype(scale);
 *               zp = clamp(rint(-128.0f - lo / s), -128, 127);
 *               q = clamp(rint(w / s + zp), -128, 127)  (zp added before rounding)
 * rint rounds half to even. The stored dtype is the input dtype (F32/F16/BF16),
 * rounded to nearest even. */
#ifndef MQ_REFERENCE_H
#define MQ_REFERENCE_H

#include "monoquant.h"
#include "qkind.h"

#include <string.h>

/* The bits of an fp32 value, and back. */
static inline uint32_t mq_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float mq_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Exact widening and round-to-nearest-even narrowing. NaN keeps its sign and
 * top payload bits and becomes quiet. */
float mq_f16_to_f32(uint16_t h);
float mq_bf16_to_f32(uint16_t b);
uint16_t mq_f32_to_f16(float f);  /* overflow gives +-inf */
uint16_t mq_f64_to_f16(double d); /* one rounding, straight from double */
uint16_t mq_f32_to_bf16(float f);
/* Element i of a F32/F16/BF16 array, widened to fp32. */
float mq_load_f32(const void *src, mq_dtype dt, size_t i);

/* Running statistics of one channel. */
typedef struct mq_ref_stats {
    float lo, hi;   /* min and max of the values seen (+inf/-inf when none) */
    float amax;     /* max |w| */
    bool nonfinite; /* a NaN or Inf was seen */
} mq_ref_stats;

void mq_ref_stats_init(mq_ref_stats *s);
/* Folds n values of src (F32/F16/BF16) into s. */
void mq_ref_stats_update(mq_ref_stats *s, const void *src, mq_dtype dt, size_t n);
/* Scale (as fp32, already rounded to `scale_dt`) and zero point of kind d.kind
 * from the statistics (INT8: DESIGN.md's rule; the others below). */
void mq_ref_params(mq_qdesc d, const mq_ref_stats *s, mq_dtype scale_dt, float *scale, int8_t *zp);
/* One code per byte for n values with fixed parameters: INT8/INT4 the int8
 * code clamp(rint(w / scale + zp), qmin, qmax) (INT8 stored XOR d.code_xor),
 * FP8 the e4m3 byte of clamp(w / scale, -448, 448) (zp unused). NaN gives the
 * lower bound. */
void mq_ref_quantize_values(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float scale,
                            int8_t zp, void *q);
/* The end of a group's statistics, the same in every back end: NaN/Inf seen
 * gives MQ_STATUS_E_DATA with *bad = g (bad may be NULL); else the group's
 * scale and zero point (mq_ref_params, scale dtype dt) into *s and *z and
 * stored as group g of a call: scale[g] in dt, zp[g] where d has zero
 * points and zp is not NULL. */
mq_status mq_ref_group_params(mq_qdesc d, const mq_ref_stats *st, mq_dtype dt, size_t g,
                              void *scale, int8_t *zp, size_t *bad, float *s, int8_t *z);
/* The codes of the n values of one row of a group (columns c0.. of a row of
 * `cols`) with fixed parameters into the stored row `row` (INT4: nibbles, the
 * row zeroed where its first group starts). */
void mq_ref_put_codes(mq_qdesc d, const void *src, mq_dtype dt, size_t n, float s, int8_t z,
                      unsigned char *row, size_t c0, size_t cols);
/* Stores an fp32 scale (already representable) as one element of dtype dt at dst[i]. */
void mq_store_scale(void *dst, mq_dtype dt, size_t i, float scale);
/* The same for a group of kind d: the MX kinds store the e8m0 byte of their
 * power-of-two scale (127 + log2 s), NVFP4 the e4m3 byte of its scale (the
 * value before the global scale divides it); the others mq_store_scale. */
void mq_store_group_scale(mq_qdesc d, void *dst, mq_dtype dt, size_t i, float scale);
/* Scale i as a multiplier (e8m0 byte x: 2^(x - 127), 255 +inf; NVFP4 the
 * e4m3 value divided by d.gscale in fp32). */
float mq_load_group_scale(mq_qdesc d, const void *src, mq_dtype dt, size_t i);

/*
 * Quantizes `rows` x `cols` values as d says: with d.block 0 each row is a
 * group (a channel, or a group the caller made a row), else each d.block x
 * d.block block (the last of each dimension may be partial). One scale per
 * group in dtype `dt`, group g at scale[g] (blocks: g = bi * ceil(cols / b)
 * + bj); `zp` (asymmetric int kinds only, else may be NULL) one int8 per
 * group; `q` rows of mq_qkind_row_bytes(d.kind, cols) bytes. NaN/Inf in a
 * group: MQ_STATUS_E_DATA with *bad its index (outputs then undefined); no
 * error message is set.
 */
mq_status mq_ref_quantize(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,
                          void *q, void *scale, int8_t *zp, size_t *bad);

/*
 * Weight error of a quantized tensor, accumulated over rows and chunks. For
 * each value w with the stored scale s (fp32, as read back from the file)
 * and zero point zp of its group, and the int8 code q that was written:
 *   w_hat = (float)(q - zp) * s            (fp32, as mq_ref_dequantize_rows)
 *   err   = (double)w - (double)w_hat      (double)
 *   sig  += (double)w * (double)w          (exact product in double)
 *   err2 += err * err;  max_abs = max(max_abs, |err|)
 *   clamped += 1 when rintf(w / s) + (float)zp, computed in fp32 exactly as
 *              mq_ref_quantize_values does before its clamp, lies outside
 *              [-128, 127] (so the stored q is a saturated bound).
 * Symmetric scales are amax / 127.5, so the largest |w| of a group maps to
 * about +-127.5; where the rounded scale makes it >= 127.5 it rounds (half
 * to even) to +-128: +128 is clamped to 127, so a group whose maximum is
 * positive often counts that element. This is expected, not an outlier. The sums are in double and
 * the order of terms differs between kernels, so results agree to double rounding only.
 */
typedef struct mq_err_acc {
    double sig;       /* sum of w^2 */
    double err2;      /* sum of (w - w_hat)^2 */
    double max_abs;   /* max |w - w_hat| */
    uint64_t clamped; /* values whose unclamped code was outside [-128, 127] */
} mq_err_acc;

void mq_err_acc_init(mq_err_acc *a);
/* Adds b's sums and count to a's, and keeps the larger maximum. */
void mq_err_acc_add(mq_err_acc *a, const mq_err_acc *b);
/* 10 log10(sig / err2) in dB; +inf when err2 is 0 (NaN when both are 0 is
 * avoided: an all-zero tensor is exact, +inf). */
double mq_err_acc_sqnr_db(const mq_err_acc *a);
/*
 * Folds the rows x cols values of src (F32/F16/BF16) into acc, with q the
 * stored codes of mq_ref_quantize(d, ...) (INT8 XOR d.code_xor), scale its
 * scales in scale_dt (widened exactly) and zp its zero points (NULL: 0).
 * INT4/FP8: w_hat = (q - zp) * s for int, e4m3(q) * s for FP8; clamped counts
 * codes outside [qmin, qmax] before the clamp (FP8: |w / s| > 448).
 */
void mq_ref_error_stats(mq_qdesc d, const void *src, mq_dtype dt, size_t rows, size_t cols,
                        const void *q, const void *scale, mq_dtype scale_dt, const int8_t *zp,
                        mq_err_acc *acc);

/* n values of F32/F64/BF16/F16 to F16. Returns the number of finite values
 * that rounded beyond +-65504; with `saturate` they become +-65504. */
uint64_t mq_ref_cast_f16(const void *src, mq_dtype dt, size_t n, bool saturate, uint16_t *dst);

/* w = (q - zp) * scale in fp32, stored in `dt` (the scale's dtype). zp may be NULL. */
void mq_ref_dequantize_rows(const int8_t *q, size_t rows, size_t cols, const void *scale,
                            const int8_t *zp, mq_dtype dt, void *dst);

/* ---- the other code formats: int4 and float8 e4m3 (compressed-tensors' numerics) ----
 *
 * Per group of values (a row of the call, or a 2-D block), all in fp32, as
 * compressed-tensors 0.20.1's calculate_qparams (not int8's FLT_EPSILON floor):
 *   INT4 symmetric:  s = amax / 7.5f rounded to the stored dtype;
 *                    q = clamp(rint(w / s), -8, 7)
 *   INT4 asymmetric: s = (hi - lo) / 15.0f (lo <= 0 <= hi as for int8), rounded;
 *                    zp = clamp(rint(-8.0f - lo / s), -8, 7);
 *                    q = clamp(rint(w / s + zp), -8, 7)
 *   FP8 (symmetric only): s = amax / 448.0f, rounded;
 *                    q = e4m3(clamp(w / s, -448, 448)), rounded to nearest even
 *   A scale that rounds to 0 becomes the stored dtype's epsilon (FLT_EPSILON,
 *   2^-10 for F16, 2^-7 for BF16), after the zero point was taken from the
 *   zero scale: 0 when lo is 0 (compressed-tensors' NaN cast to an integer),
 *   7 when lo < 0. Tiny nonzero scales stay as they are.
 * Stored codes: INT4 packed as compressed-tensors' pack_to_int32 does, code + 8
 * in nibble i % 8 of the little-endian int32 word i / 8 (so two codes per byte,
 * the even one in the low nibble), each row of a call padded to whole words with
 * zero nibbles; FP8 one e4m3fn byte per value; FP8 may also be grouped in 2-D
 * blocks (mq_qdesc.block). */
/* float8 e4m3fn (bias 7, no infinities, 0x7f/0xff NaN, largest 448): round to
 * nearest even with integer operations; magnitudes from 464 up saturate to
 * +-448 (callers clamp first), NaN becomes 0x7f with its sign. */
uint8_t mq_f32_to_e4m3(float f);
float mq_e4m3_to_f32(uint8_t b); /* exact */
/* fp4 e2m1 (0, 0.5, 1, 1.5, 2, 3, 4, 6 and the sign bit 8), rounded as
 * compressed-tensors' cast_to_fp4 (reference.c). MX kinds (MXFP4, MXFP8), as
 * compressed-tensors 0.20.1's generate_mx_scales: the scale of a group is
 * 2^(x - 127), x = clamp(127 + log2(p) - floor(log2(qmax)), 0, 255), p the
 * group's amax rounded to a power of two on the weight dtype's bits (half a
 * unit of e2m1's mantissa bit added, the mantissa dropped), held in the
 * weight's dtype (an F16 zero becomes 1); codes e2m1(clamp(w / s, +-6)) or
 * e4m3(clamp(w / s, +-448)); the file holds the byte x. */
uint8_t mq_f32_to_e2m1(float v);
float mq_e2m1_to_f32(uint8_t c);
/* NVFP4, as compressed-tensors 0.20.1's generate_gparam, calculate_qparams
 * and _quantize: the tensor's global scale g = 448 * 6 / max(amax, tiny) in
 * the weight's dtype, computed as torch does (the reciprocal, rounded, times
 * 2688, rounded; tiny the dtype's smallest normal; a result that is not
 * finite becomes 1), held as fp32; a group's scale s = e4m3(clamp(g *
 * (amax_group / 6), +-448)), amax_group / 6 rounded to the weight's dtype
 * and the product in fp32 (a zero s becomes 2^-3); codes e2m1(clamp(w / (s
 * / g), +-6)), both divisions in fp32. The file holds s's e4m3 byte and g. */
float mq_nvfp4_global_scale(float amax, mq_dtype dt);

/* ---- FP8 block sources (DeepSeek-V3's layout: weight_scale_inv) ----
 *
 * Values [e0, e0 + n) (row-major) of a weight of `cols` columns stored as
 * e4m3fn bytes (q: those values), dequantized as DeepSeek's reference
 * weight_dequant and transformers' fine-grained FP8 integration do:
 * w = e4m3(q) * s in fp32 (one rounding), s the scale of the value's
 * block_r x block_c block, then stored in `dt` (F32 as it is; BF16 or F16
 * rounded to nearest even). The last block of a row or column may be partial:
 * block (i, j) covers rows i * block_r up to min((i + 1) * block_r, out) and
 * likewise columns. `scale` points at scale row (e0 / cols) / block_r of the
 * [ceil(out / block_r), ceil(cols / block_c)] grid, in scale_dt (F32 or BF16). */
void mq_ref_fp8_block_dequant(const uint8_t *q, uint64_t e0, size_t n, size_t cols, size_t block_r,
                              size_t block_c, const void *scale, mq_dtype scale_dt, mq_dtype dt,
                              void *dst);

/* Values [e0, e0 + n) of a source weight of kind d and `cols` columns
 * dequantized into dst (d.dt): FP8_BLOCK as mq_ref_fp8_block_dequant. codes
 * are those values' stored bytes, scale the grid rows they need
 * (mq_srcdesc_scale_rows), from the first. The oracle of every back end's
 * dequantize_source. */
void mq_ref_src_dequant(mq_srcdesc d, const void *codes, uint64_t e0, size_t n, size_t cols,
                        const void *scale, void *dst);

/* n int4 codes (int8 in [-8, 7]) packed into mq_qkind_row_bytes(MQ_QK_INT4, n) bytes. */
void mq_ref_pack4(const int8_t *codes, size_t n, uint8_t *dst);
/* Code i of a packed int4 row. */
static inline int8_t mq_unpack4(const uint8_t *row, size_t i)
{
    return (int8_t)(((row[i / 2] >> (4 * (i & 1))) & 15) - 8);
}

#endif
