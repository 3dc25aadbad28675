/* The CPU kernel of source dequantization (backend.h's dequantize_source):
 * the reference's products, with the scale of each block run hoisted and the
 * store's dtype chosen once per run instead of once per value, so that the
 * loops over a run of one block are plain and the compiler vectorizes them. */
#include "cpukern.h"

#include <math.h>
#include <string.h>

#if defined(__clang__) && __clang_major__ < 15
#define HS_CLONES static
#else
#define HS_CLONES static __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

/* mq_f32_to_bf16, inlined: round to nearest even, NaN kept quiet with its sign. */
static inline uint16_t hs_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* The product of a NaN scale, as the host's multiply gives it: the first
 * operand when both are NaN (the code's quiet NaN), else the scale quieted. */
static inline float hs_nan_scale(float v, float s)
{
    uint32_t x;
    if (isnan(v)) return v;
    memcpy(&x, &s, sizeof x);
    x |= 0x00400000u;
    memcpy(&s, &x, sizeof x);
    return s;
}

/* n values of one block run: codes q, scale s, into dst (dtype dt) from element 0. */
static inline void hs_run(const uint8_t *restrict q, size_t n, float s, const float *restrict lut,
                          mq_dtype dt, unsigned char *restrict dst)
{
    if (isnan(s)) {
        /* Vectorized, the multiply may return either NaN operand: a NaN
         * scale (which only a damaged file holds) takes the scalar rule. */
        for (size_t k = 0; k < n; k++) {
            float w = hs_nan_scale(lut[q[k]], s);
            if (dt == MQ_DTYPE_F32)
                memcpy(dst + k * 4, &w, 4);
            else {
                uint16_t h = dt == MQ_DTYPE_BF16 ? hs_bf16(w) : mq_f32_to_f16(w);
                memcpy(dst + k * 2, &h, 2);
            }
        }
    } else if (dt == MQ_DTYPE_F32) {
        float *o = (float *)(void *)dst;
        for (size_t k = 0; k < n; k++)
            o[k] = lut[q[k]] * s;
    } else if (dt == MQ_DTYPE_BF16) {
        uint16_t *o = (uint16_t *)(void *)dst;
        for (size_t k = 0; k < n; k++)
            o[k] = hs_bf16(lut[q[k]] * s);
    } else {
        uint16_t *o = (uint16_t *)(void *)dst;
        for (size_t k = 0; k < n; k++)
            o[k] = mq_f32_to_f16(lut[q[k]] * s);
    }
}

HS_CLONES void hs_fp8_block(const uint8_t *q, uint64_t e0, size_t n, size_t cols, size_t br,
                            size_t bc, const void *scale, mq_dtype sdt, mq_dtype dt, void *dst)
{
    float lut[256];
    for (unsigned b = 0; b < 256; b++)
        lut[b] = mq_e4m3_to_f32((uint8_t)b);
    size_t es = mq_dtype_size(dt), scols = (cols + bc - 1) / bc;
    uint64_t first_srow = e0 / cols / br;
    unsigned char *out = dst;
    for (size_t i = 0; i < n;) {
        uint64_t r = (e0 + i) / cols;
        size_t c = (size_t)((e0 + i) % cols), len = cols - c < n - i ? cols - c : n - i;
        size_t base = (size_t)(r / br - first_srow) * scols;
        for (size_t k = 0; k < len;) {
            size_t bj = (c + k) / bc, end = (bj + 1) * bc - c;
            if (end > len) end = len;
            hs_run(q + i + k, end - k, mq_load_f32(scale, sdt, base + bj), lut, dt,
                   out + (i + k) * es);
            k = end;
        }
        i += len;
    }
}

void mq_hk_src_dequant(mq_srcdesc d, const void *codes, uint64_t e0, size_t n, size_t cols,
                       const void *scale, void *dst)
{
    switch (d.kind) {
    case MQ_SRC_FP8_BLOCK:
        hs_fp8_block(codes, e0, n, cols, d.block_r, d.block_c, scale, d.scale_dt, d.dt, dst);
        break;
    }
}
