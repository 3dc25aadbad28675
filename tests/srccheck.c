/* A back end's dequantize_source against the reference, byte for byte, for
 * the suites of both back ends (srccheck.h). */
#include "testutil.h"

#include "srccheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float edge_scale(tu_rng *r, size_t i)
{
    switch (i % 13) {
    case 3:
        return 0.0f;
    case 5:
        return ldexpf(1.0f, -140); /* products below FLT_MIN: subnormal or zero */
    case 7:
        return 3e38f; /* products beyond FLT_MAX: inf */
    case 9:
        return -0.0625f;
    case 11:
        return i % 2 ? NAN : -INFINITY;
    case 12:
        return 1.0e-30f;
    default:
        return fabsf(tu_rng_normal(r)) * ldexpf(1.0f, (int)(tu_rng_u64(r) % 30) - 20);
    }
}

static void store_scale(unsigned char *p, mq_dtype dt, size_t i, float v)
{
    if (dt == MQ_DTYPE_F32) {
        memcpy(p + i * 4, &v, 4);
    } else {
        uint16_t h = mq_f32_to_bf16(v);
        memcpy(p + i * 2, &h, 2);
    }
}

void sc_check_fp8_block(mq_backend *be, uint64_t seed, size_t rows, size_t cols, size_t br,
                        size_t bc, uint64_t e0, size_t n, bool edges)
{
    static const mq_dtype sdts[2] = {MQ_DTYPE_F32, MQ_DTYPE_BF16};
    static const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    tu_rng r;
    tu_rng_seed(&r, seed);
    size_t numel = rows * cols, sr = (rows + br - 1) / br, scn = (cols + bc - 1) / bc;
    uint8_t *codes = malloc(numel + 1);
    float *sf = malloc(sr * scn * sizeof *sf);
    unsigned char *scale = malloc(sr * scn * 4 + 1);
    unsigned char *o1 = malloc(n * 4 + 1), *o2 = malloc(n * 4 + 1);
    assert_true(codes && sf && scale && o1 && o2);
    for (size_t i = 0; i < numel; i++)
        codes[i] = edges ? (uint8_t)i : (uint8_t)(tu_rng_u64(&r) & 0xff);
    for (size_t i = 0; i < sr * scn; i++)
        sf[i] = edges ? edge_scale(&r, i) : ldexpf(1.0f + tu_rng_f32(&r) / 2, -8);
    uint64_t s0, s1;
    mq_srcdesc_scale_rows(mq_sd_fp8_block(br, bc, MQ_DTYPE_F32, MQ_DTYPE_F32), e0, n ? n : 1, cols,
                          &s0, &s1);
    for (int a = 0; a < 2; a++) {
        for (size_t i = 0; i < sr * scn; i++)
            store_scale(scale, sdts[a], i, sf[i]);
        const unsigned char *band = scale + s0 * scn * mq_dtype_size(sdts[a]);
        for (int b = 0; b < 3; b++) {
            mq_srcdesc d = mq_sd_fp8_block(br, bc, sdts[a], dts[b]);
            size_t bytes = n * mq_dtype_size(dts[b]);
            memset(o1, 0x5a, bytes + 1);
            memset(o2, 0x5a, bytes + 1);
            assert_int_equal(mq_be_dequantize_source(be, d, codes + e0, e0, n, cols, band, o1),
                             MQ_OK);
            mq_ref_src_dequant(d, codes + e0, e0, n, cols, band, o2);
            for (size_t i = 0; i <= bytes; i++)
                if (o1[i] != o2[i])
                    fail_msg("%s: %zux%zu in %zux%zu blocks, values [%llu, +%zu), %s scales to "
                             "%s: byte %zu is %02x, reference %02x",
                             be->backend, rows, cols, br, bc, (unsigned long long)e0, n,
                             mq_dtype_name(sdts[a]), mq_dtype_name(dts[b]), i, o1[i], o2[i]);
        }
    }
    free(codes);
    free(sf);
    free(scale);
    free(o1);
    free(o2);
}

void sc_check_fp8_block_suite(mq_backend *be, uint64_t seed)
{
    /* rows, cols, block rows, block cols; the last three as compressed-tensors'
     * FP8 layers are read: per channel, per tensor, per group. */
    static const size_t shapes[][4] = {
        {1, 1, 128, 128},     {5, 7, 2, 3},     {130, 257, 128, 128}, {17, 33, 4, 8},
        {256, 384, 128, 128}, {3, 1000, 1, 7},  {40, 3, 1, 1},        {9, 300, 3, 256},
        {6, 1000, 1, 1000},   {7, 300, 7, 300}, {5, 64, 1, 16},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t rows = shapes[k][0], cols = shapes[k][1], br = shapes[k][2], bc = shapes[k][3];
        size_t numel = rows * cols;
        tu_rng r;
        tu_rng_seed(&r, seed + k);
        for (int edges = 0; edges < 2; edges++) {
            /* The whole weight, a band of whole rows from a later block row,
             * and a range starting and ending inside rows (the split path). */
            sc_check_fp8_block(be, seed + k, rows, cols, br, bc, 0, numel, edges);
            size_t r0 = rows / 2;
            sc_check_fp8_block(be, seed + k, rows, cols, br, bc, (uint64_t)r0 * cols,
                               (rows - r0) * cols, edges);
            uint64_t e0 = tu_rng_u64(&r) % numel;
            size_t n = (size_t)(1 + tu_rng_u64(&r) % (numel - e0));
            sc_check_fp8_block(be, seed + k, rows, cols, br, bc, e0, n, edges);
        }
    }
}

static void assert_close(double a, double b, const char *what, const char *ctx)
{
    if (fabs(a - b) > 1e-4 * fabs(b) + 1e-30)
        fail_msg("%s: %s %.9g, reference %.9g", ctx, what, a, b);
}

void sc_check_quantize_source(mq_backend *be, uint64_t seed, size_t src_rows, size_t src_cols,
                              size_t cols, size_t first, size_t rows)
{
    static const mq_dtype dts[2] = {MQ_DTYPE_BF16, MQ_DTYPE_F32};
    const mq_qdesc descs[] = {mq_qd(MQ_QK_INT8, true),  mq_qd(MQ_QK_INT8, false),
                              mq_qd(MQ_QK_INT4, true),  mq_qd(MQ_QK_INT4, false),
                              mq_qd(MQ_QK_FP8, true),   mq_qd(MQ_QK_MXFP4, true),
                              mq_qd(MQ_QK_MXFP8, true), mq_qd_blocks(4)};
    tu_rng r;
    tu_rng_seed(&r, seed);
    size_t numel = src_rows * src_cols, br = 3, bc = 5;
    size_t sr = (src_rows + br - 1) / br, scn = (src_cols + bc - 1) / bc, n = rows * cols;
    uint8_t *codes = malloc(numel);
    float *sf = malloc(sr * scn * 4);
    unsigned char *vals = malloc(n * 4 + 1), *scratch = malloc(n * 4 + 1);
    uint8_t *q1 = malloc(n + 8), *q2 = malloc(n + 8), *s1 = malloc(n * 4 + 8),
            *s2 = malloc(n * 4 + 8);
    int8_t *z1 = malloc(rows + 1), *z2 = malloc(rows + 1);
    assert_true(codes && sf && vals && scratch && q1 && q2 && s1 && s2 && z1 && z2);
    for (size_t i = 0; i < numel; i++) {
        codes[i] = (uint8_t)(tu_rng_u64(&r) & 0xff);
        if ((codes[i] & 0x7f) == 0x7f) codes[i] ^= 1; /* no NaN */
    }
    for (size_t i = 0; i < sr * scn; i++)
        sf[i] = ldexpf(1.0f + tu_rng_f32(&r) / 2, (int)(tu_rng_u64(&r) % 8) - 10);
    uint64_t e0 = (uint64_t)first * cols, s0, s1r;
    mq_srcdesc_scale_rows(mq_sd_fp8_block(br, bc, MQ_DTYPE_F32, MQ_DTYPE_F32), e0, n, src_cols, &s0,
                          &s1r);
    const float *band = sf + s0 * scn;
    for (int a = 0; a < 2; a++) {
        mq_srcdesc sd = mq_sd_fp8_block(br, bc, MQ_DTYPE_F32, dts[a]);
        mq_ref_src_dequant(sd, codes + e0, e0, n, src_cols, band, vals);
        for (size_t k = 0; k < sizeof descs / sizeof descs[0]; k++) {
            mq_qdesc d = descs[k];
            if (d.block && (rows % 4 || cols % 4)) continue;
            char ctx[160];
            snprintf(ctx, sizeof ctx, "%s: quantize_source kind %d sym %d block %zu, %s, %zux%zu",
                     be->backend, (int)d.kind, (int)d.symmetric, d.block, mq_dtype_name(dts[a]),
                     rows, cols);
            size_t ns = mq_qdesc_scales(d, rows, cols), es = mq_qkind_scale_size(d.kind, dts[a]);
            size_t nq = d.block ? n : mq_qkind_row_bytes(d.kind, cols) * rows;
            size_t b1 = 0, b2 = 0;
            memset(q1, 0x5a, n + 8);
            memset(q2, 0x5a, n + 8);
            memset(s1, 0x5a, n * 4 + 8);
            memset(s2, 0x5a, n * 4 + 8);
            memset(z1, 0, rows + 1);
            memset(z2, 0, rows + 1);
            mq_err_acc e1, e2;
            mq_err_acc_init(&e1);
            mq_err_acc_init(&e2);
            assert_int_equal(be->ops->quantize_source(be, d, sd, codes + e0, e0, src_cols, band,
                                                      rows, cols, q1, s1, z1, &b1, &e1, scratch),
                             MQ_OK);
            assert_int_equal(mq_ref_quantize(d, vals, dts[a], rows, cols, q2, s2, z2, &b2), MQ_OK);
            mq_ref_error_stats(d, vals, dts[a], rows, cols, q2, s2, dts[a],
                               mq_qdesc_has_zp(d) ? z2 : NULL, &e2);
            if (memcmp(q1, q2, nq) != 0) fail_msg("%s: codes differ", ctx);
            if (memcmp(s1, s2, ns * es) != 0) fail_msg("%s: scales differ", ctx);
            if (mq_qdesc_has_zp(d) && memcmp(z1, z2, rows) != 0)
                fail_msg("%s: zero points differ", ctx);
            assert_close(e1.sig, e2.sig, "sum w^2", ctx);
            assert_close(e1.err2, e2.err2, "sum of squared errors", ctx);
            if (e1.clamped != e2.clamped) fail_msg("%s: clamped counts differ", ctx);
        }
    }
    free(codes);
    free(sf);
    free(vals);
    free(scratch);
    free(q1);
    free(q2);
    free(s1);
    free(s2);
    free(z1);
    free(z2);
}
