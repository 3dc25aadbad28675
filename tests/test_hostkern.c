/* The fast host kernels (src/backend/cpukern.c) and the threaded host backend against
 * the scalar reference, byte for byte: every half, wide samples of fp32 bit
 * patterns, random rows of every dtype, ties, zeros, subnormals, +-FLT_MAX,
 * NaN/Inf, odd lengths and unaligned inputs. */
#define _GNU_SOURCE /* mincore */
#include "testutil.h"

#include "backend.h"
#include "cpukern.h"
#include "reference.h"
#include "srccheck.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const mq_dtype qdtypes[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};

/* Stores fp32 value v as element i of a dtype array (narrowed as the reference does). */
static void put(void *dst, mq_dtype dt, size_t i, float v)
{
    unsigned char *p = dst;
    uint16_t h;
    if (dt == MQ_DTYPE_F32) {
        memcpy(p + i * 4, &v, 4);
        return;
    }
    h = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(v) : mq_f32_to_bf16(v);
    memcpy(p + i * 2, &h, 2);
}

/* Edge-heavy values: ties of the scale 1 grid, zeros, subnormals, extremes. */
static float edge_value(tu_rng *r)
{
    static const float fixed[] = {0.0f,     -0.0f,    0.5f,      -0.5f,    1.5f,   -1.5f,
                                  2.5f,     -2.5f,    127.5f,    -127.5f,  128.5f, -128.5f,
                                  FLT_MAX,  -FLT_MAX, FLT_MIN,   -FLT_MIN, 1e-45f, -1e-45f,
                                  65504.0f, 65520.0f, -65520.0f, 6e-8f,    3e-8f,  1e-40f};
    uint64_t k = tu_rng_u64(r);
    switch (k % 4) {
    case 0:
        return fixed[(k >> 8) % (sizeof fixed / sizeof fixed[0])];
    case 1:
        return (float)((int)((k >> 8) % 512) - 256) * 0.5f; /* many exact ties */
    case 2:
        return mq_f32_from_bits((uint32_t)(k >> 16) & 0x807fffffu); /* fp32 subnormals */
    default:
        return tu_rng_normal(r) * ldexpf(1.0f, (int)((k >> 8) % 60) - 30);
    }
}

static void fill(void *dst, mq_dtype dt, size_t n, tu_rng *r, bool edges)
{
    for (size_t i = 0; i < n; i++)
        put(dst, dt, i, edges ? edge_value(r) : tu_rng_normal(r));
}

static void assert_bytes(const void *a, const void *b, size_t n, const char *what)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) fail_msg("%s: byte %zu differs (%d vs %d)", what, i, x[i], y[i]);
}

static void assert_stats_equal(const mq_ref_stats *a, const mq_ref_stats *b)
{
    assert_int_equal(a->nonfinite, b->nonfinite);
    if (a->nonfinite) return; /* the range of a rejected row is not used */
    /* == so that -0 and +0 agree: mq_ref_params never sees the difference. */
    if (!(a->lo == b->lo && a->hi == b->hi && a->amax == b->amax))
        fail_msg("stats differ: lo %a/%a hi %a/%a amax %a/%a", a->lo, b->lo, a->hi, b->hi, a->amax,
                 b->amax);
}

/* Every half, each repeated to fill a block: the block's range is the value. */
static void test_f16_widen_all(void **state)
{
    (void)state;
    uint16_t blk[600];
    for (uint32_t h = 0; h < 65536; h++) {
        for (size_t i = 0; i < 600; i++)
            blk[i] = (uint16_t)h;
        mq_ref_stats a, b;
        mq_ref_stats_init(&a);
        mq_ref_stats_init(&b);
        mq_hk_stats_update(&a, blk, MQ_DTYPE_F16, 600);
        mq_ref_stats_update(&b, blk, MQ_DTYPE_F16, 600);
        assert_stats_equal(&a, &b);
        if (!a.nonfinite && mq_f32_bits(a.lo) != mq_f32_bits(mq_f16_to_f32((uint16_t)h)))
            fail_msg("half 0x%04x widened to %a", h, a.lo);
    }
}

/* mq_hk_widen_f16 (the conversion instruction where there is one): every
 * half bit for bit as mq_f16_to_f32, from an address 2 bytes past alignment, and short runs
 * that end in the scalar tail. */
static void test_f16_widen_row(void **state)
{
    (void)state;
    uint16_t *h = malloc((65536 + 1) * 2);
    float *f = malloc(65536 * 4);
    assert_true(h && f);
    for (uint32_t i = 0; i < 65536; i++)
        h[i + 1] = (uint16_t)(i * 40503u); /* every half once, in a scattered order */
    for (size_t n = 0; n < 20; n++) {
        mq_hk_widen_f16(h + 1 + 1000 * n, n, f);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(mq_f32_bits(f[i]), mq_f32_bits(mq_f16_to_f32(h[1 + 1000 * n + i])));
    }
    mq_hk_widen_f16(h + 1, 65536, f);
    for (uint32_t i = 0; i < 65536; i++)
        if (mq_f32_bits(f[i]) != mq_f32_bits(mq_f16_to_f32(h[i + 1])))
            fail_msg("half 0x%04x widened to 0x%08x", h[i + 1], mq_f32_bits(f[i]));
    free(h);
    free(f);
}

static void check_stats(const void *src, mq_dtype dt, size_t n)
{
    mq_ref_stats a, b;
    mq_ref_stats_init(&a);
    mq_ref_stats_init(&b);
    mq_hk_stats_update(&a, src, dt, n);
    mq_ref_stats_update(&b, src, dt, n);
    assert_stats_equal(&a, &b);
    /* Folding onto an existing state, as the streaming reduce does. */
    mq_hk_stats_update(&a, src, dt, n / 2);
    mq_ref_stats_update(&b, src, dt, n / 2);
    assert_stats_equal(&a, &b);
}

/* Every other call asks for packed codes (XOR 0x80): the block loop, the
 * reference run for short inputs and the padded tail each run both ways. */
static uint8_t next_xor(void)
{
    static unsigned calls;
    return (calls++ & 1u) ? 0x80 : 0;
}

static void check_values(const void *src, mq_dtype dt, size_t n, float scale, int8_t zp)
{
    int8_t *a = malloc(n + 1), *b = malloc(n + 1);
    uint8_t cx = next_xor();
    assert_non_null(a);
    assert_non_null(b);
    mq_hk_quantize_values((mq_qdesc){.kind = MQ_QK_INT8, .symmetric = true, .code_xor = cx}, src,
                          dt, n, scale, zp, a, NULL);
    mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), src, dt, n, scale, zp, b);
    for (size_t i = 0; i < n; i++)
        b[i] = (int8_t)((uint8_t)b[i] ^ cx);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            fail_msg("dtype %d n %zu scale %a zp %d: q[%zu] = %d, want %d (w = %a)", dt, n, scale,
                     zp, i, a[i], b[i], mq_load_f32(src, dt, i));
    free(a);
    free(b);
}

static const size_t lengths[] = {0, 1, 7, 63, 64, 65, 127, 511, 512, 513, 600, 1000, 1027, 4099};

static void test_stats_random(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 1);
    unsigned char *buf = malloc(4100 * 4 + 1);
    for (int d = 0; d < 3; d++) {
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            for (int edges = 0; edges < 2; edges++) {
                size_t n = lengths[li];
                fill(buf, qdtypes[d], n, &r, edges);
                check_stats(buf, qdtypes[d], n);
                /* Unaligned source. */
                memmove(buf + 1, buf, n * mq_dtype_size(qdtypes[d]));
                check_stats(buf + 1, qdtypes[d], n);
            }
        }
    }
    free(buf);
}

static void test_stats_nonfinite(void **state)
{
    (void)state;
    float v[700];
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        for (size_t pos = 0; pos < 700; pos += 97) {
            for (size_t i = 0; i < 700; i++)
                v[i] = (float)i - 300.0f;
            v[pos] = bad[k];
            check_stats(v, MQ_DTYPE_F32, 700);
            mq_ref_stats s;
            mq_ref_stats_init(&s);
            mq_hk_stats_update(&s, v, MQ_DTYPE_F32, 700);
            assert_true(s.nonfinite);
        }
    }
}

static void test_values_random(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 2);
    unsigned char *buf = malloc(4100 * 4 + 1);
    const float scales[] = {1.0f, 0.5f,        0.25f, 1.0f / 127.5f,    3.1e-3f,
                            7.0f, FLT_EPSILON, 1e30f, ldexpf(1.0f, -24)};
    for (int d = 0; d < 3; d++) {
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
                size_t n = lengths[li];
                fill(buf, qdtypes[d], n, &r, (si & 1) != 0);
                int8_t zp = (int8_t)(tu_rng_u64(&r) & 0xff);
                check_values(buf, qdtypes[d], n, scales[si], 0);
                check_values(buf, qdtypes[d], n, scales[si], zp);
                check_values(buf, qdtypes[d], n, scales[si], 127);
                check_values(buf, qdtypes[d], n, scales[si], -128);
                memmove(buf + 1, buf, n * mq_dtype_size(qdtypes[d]));
                check_values(buf + 1, qdtypes[d], n, scales[si], zp);
            }
        }
    }
    free(buf);
}

/* NaN and Inf reaching quantize_values (the reference's clamp defines them). */
static void test_values_nonfinite(void **state)
{
    (void)state;
    float v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    for (int zp = -128; zp <= 127; zp += 17) {
        check_values(v, MQ_DTYPE_F32, 100, 0.5f, (int8_t)zp);
        check_values(v, MQ_DTYPE_F32, 100, FLT_EPSILON, (int8_t)zp);
    }
}

/* Every half through quantize_values at scales from the smallest subnormal up. */
static void test_values_all_halves(void **state)
{
    (void)state;
    uint16_t *h = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int e = -24; e <= 16; e += 2) {
        check_values(h, MQ_DTYPE_F16, 65536, ldexpf(1.0f, e), 0);
        check_values(h, MQ_DTYPE_F16, 65536, ldexpf(1.37f, e), -3);
        check_values(h, MQ_DTYPE_BF16, 65536, ldexpf(1.0f, e * 5), 11);
    }
    free(h);
}

static void check_rows(const void *src, mq_dtype dt, size_t rows, size_t cols, bool sym)
{
    size_t es = mq_dtype_size(dt), n = rows * cols;
    int8_t *qa = malloc(n + 1), *qb = malloc(n + 1), *za = malloc(rows + 1), *zb = malloc(rows + 1);
    unsigned char *sa = malloc(rows * es + 1), *sb = malloc(rows * es + 1);
    size_t ba = 7, bb = 7;
    uint8_t cx = next_xor();
    mq_status a = mq_hk_quantize((mq_qdesc){.kind = MQ_QK_INT8, .symmetric = sym, .code_xor = cx},
                                 src, dt, rows, cols, qa, sa, za, &ba, NULL);
    mq_status b = mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, qb, sb, zb, &bb);
    assert_int_equal(a, b);
    if (a == MQ_OK) {
        for (size_t i = 0; i < n; i++)
            qb[i] = (int8_t)((uint8_t)qb[i] ^ cx);
        assert_bytes(qa, qb, n, "q");
        assert_bytes(sa, sb, rows * es, "scale");
        if (!sym) assert_bytes(za, zb, rows, "zero point");
    } else {
        assert_int_equal(ba, bb);
    }
    free(qa);
    free(qb);
    free(za);
    free(zb);
    free(sa);
    free(sb);
}

static void test_rows_random(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 3);
    const size_t shapes[][2] = {{1, 1},    {3, 5},    {4, 64},   {5, 100}, {2, 513},
                                {7, 1027}, {1, 4099}, {16, 600}, {64, 3},  {3, 2048}};
    unsigned char *buf = malloc(64 * 4100 * 4 + 1);
    for (int d = 0; d < 3; d++) {
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            for (int sym = 0; sym < 2; sym++) {
                for (int edges = 0; edges < 2; edges++) {
                    size_t rows = shapes[k][0], cols = shapes[k][1];
                    fill(buf, qdtypes[d], rows * cols, &r, edges);
                    check_rows(buf, qdtypes[d], rows, cols, sym);
                    /* All-positive and all-negative rows move the asymmetric zero point. */
                    for (size_t i = 0; i < rows * cols; i++)
                        put(buf, qdtypes[d], i, fabsf(mq_load_f32(buf, qdtypes[d], i)) + 1.0f);
                    check_rows(buf, qdtypes[d], rows, cols, sym);
                    for (size_t i = 0; i < rows * cols; i++)
                        put(buf, qdtypes[d], i, -mq_load_f32(buf, qdtypes[d], i) * 3.0f);
                    check_rows(buf, qdtypes[d], rows, cols, sym);
                }
            }
        }
    }
    /* A NaN in row 2 of 4. */
    fill(buf, MQ_DTYPE_F32, 4 * 700, &r, false);
    put(buf, MQ_DTYPE_F32, 2 * 700 + 650, NAN);
    check_rows(buf, MQ_DTYPE_F32, 4, 700, true);
    free(buf);
}

static void check_cast(const void *src, mq_dtype dt, size_t n, bool sat)
{
    uint16_t *a = malloc(n * 2 + 2), *b = malloc(n * 2 + 2);
    uint64_t oa = mq_hk_cast_f16(src, dt, n, sat, a);
    uint64_t ob = mq_ref_cast_f16(src, dt, n, sat, b);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            fail_msg("cast dtype %d sat %d: [%zu] = 0x%04x, want 0x%04x (from %a)", dt, sat, i,
                     a[i], b[i], dt == MQ_DTYPE_F64 ? 0.0 : (double)mq_load_f32(src, dt, i));
    assert_int_equal(oa, ob);
    free(a);
    free(b);
}

/* fp32 bit patterns: a wide stride over all of them plus every pattern near
 * the boundaries of the conversion (2^-25, 2^-14, 65504..65520, inf). */
static void test_cast_f32_patterns(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    uint32_t *u = malloc(N * 4);
    const uint32_t centers[] = {0x33000000u, 0x33800000u, 0x38800000u, 0x387fe000u, 0x477fe000u,
                                0x477ff000u, 0x7f800000u, 0x7f7fffffu, 0u};
    for (int sat = 0; sat < 2; sat++) {
        for (uint64_t base = 0; base < 4099; base += 1024) {
            for (uint32_t i = 0; i < N; i++)
                u[i] = (uint32_t)((base + (uint64_t)i * 4099) * 1u);
            check_cast(u, MQ_DTYPE_F32, N, sat);
        }
        for (size_t c = 0; c < sizeof centers / sizeof centers[0]; c++) {
            for (uint32_t i = 0; i < N; i++) {
                uint32_t x = centers[c] + i - N / 2;
                u[i] = (i & 1) ? x | 0x80000000u : x;
            }
            check_cast(u, MQ_DTYPE_F32, N, sat);
        }
        /* All fp16-subnormal results, sampled. */
        for (uint32_t i = 0; i < N; i++)
            u[i] = 0x33000000u + i * 83u;
        check_cast(u, MQ_DTYPE_F32, N, sat);
    }
    free(u);
}

static void test_cast_dtypes(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 4);
    uint16_t *h = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int sat = 0; sat < 2; sat++) {
        check_cast(h, MQ_DTYPE_BF16, 65536, sat); /* every bf16 */
        check_cast(h, MQ_DTYPE_F16, 65536, sat);
        check_cast((unsigned char *)h + 1, MQ_DTYPE_BF16, 1000, sat);
    }
    double d[777];
    for (int i = 0; i < 777; i++)
        d[i] = (double)tu_rng_normal(&r) * ldexp(1.0, i % 40 - 20);
    check_cast(d, MQ_DTYPE_F64, 777, false);
    float f[1031];
    for (int i = 0; i < 1031; i++)
        f[i] = edge_value(&r) * 1e3f;
    check_cast(f, MQ_DTYPE_F32, 1031, false);
    check_cast(f, MQ_DTYPE_F32, 1031, true);
    check_cast((unsigned char *)f + 2, MQ_DTYPE_F32, 1000, true);
    free(h);
}

/* The host backend splits big calls over threads; results must not move. */
static void test_backend_threads(void **state)
{
    (void)state;
    mq_backend *be;
    tu_rng r;
    tu_rng_seed(&r, 5);
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    const size_t rows = 301, cols = 2053;
    for (int d = 0; d < 3; d++) {
        mq_dtype dt = qdtypes[d];
        size_t es = mq_dtype_size(dt), n = rows * cols;
        unsigned char *src = malloc(n * es), *sa = malloc(rows * es), *sb = malloc(rows * es);
        int8_t *qa = malloc(n), *qb = malloc(n), *za = malloc(rows), *zb = malloc(rows);
        uint16_t *ha = malloc(n * 2), *hb = malloc(n * 2);
        unsigned char *da = malloc(n * es), *db = malloc(n * es);
        fill(src, dt, n, &r, false);
        for (int sym = 0; sym < 2; sym++) {
            size_t bad = 0;
            assert_int_equal(be->ops->quantize(be, mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, qa,
                                               sa, za, &bad, NULL),
                             MQ_OK);
            assert_int_equal(
                mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, qb, sb, zb, &bad),
                MQ_OK);
            assert_bytes(qa, qb, n, "threaded q");
            assert_bytes(sa, sb, rows * es, "threaded scale");
            if (!sym) assert_bytes(za, zb, rows, "threaded zp");
            assert_int_equal(
                be->ops->dequantize_rows(be, qa, rows, cols, sa, sym ? NULL : za, dt, da), MQ_OK);
            mq_ref_dequantize_rows(qb, rows, cols, sb, sym ? NULL : zb, dt, db);
            assert_bytes(da, db, n * es, "threaded dequantize");
        }
        for (int sat = 0; sat < 2; sat++) {
            uint64_t oa = 0, ob;
            assert_int_equal(be->ops->cast_f16(be, src, dt, n, sat, ha, &oa), MQ_OK);
            ob = mq_ref_cast_f16(src, dt, n, sat, hb);
            assert_bytes(ha, hb, n * 2, "threaded cast");
            assert_int_equal(oa, ob);
        }
        mq_ref_stats a, b;
        mq_ref_stats_init(&a);
        mq_ref_stats_init(&b);
        assert_int_equal(be->ops->reduce(be, src, dt, n, &a), MQ_OK);
        mq_ref_stats_update(&b, src, dt, n);
        assert_stats_equal(&a, &b);
        assert_int_equal(
            be->ops->quantize_values(be, mq_qd(MQ_QK_INT8, false), src, dt, n, 0.01f, -5, qa, NULL),
            MQ_OK);
        mq_ref_quantize_values(mq_qd(MQ_QK_INT8, true), src, dt, n, 0.01f, -5, qb);
        assert_bytes(qa, qb, n, "quantize_values");
        /* Bad rows in both halves: the first one is reported. */
        if (dt == MQ_DTYPE_F32) {
            put(src, dt, 250 * cols + 3, NAN);
            put(src, dt, 40 * cols + 2000, -INFINITY);
            size_t bad = 0;
            assert_int_equal(be->ops->quantize(be, mq_qd(MQ_QK_INT8, true), src, dt, rows, cols, qa,
                                               sa, NULL, &bad, NULL),
                             MQ_STATUS_E_DATA);
            assert_int_equal(bad, 40);
        }
        free(src);
        free(sa);
        free(sb);
        free(qa);
        free(qb);
        free(za);
        free(zb);
        free(ha);
        free(hb);
        free(da);
        free(db);
    }
    void *p = be->ops->staging_alloc(be, 1000);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    be->ops->staging_free(be, p);
    /* A staging buffer leaves the process when freed (not kept in malloc's
     * heap, where a sharded run's buffers added up): its pages are unmapped. */
    size_t big = (size_t)4 << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    for (int k = 0; k < 3; k++) {
        unsigned char *b = be->ops->staging_alloc(be, big), vec[1];
        assert_non_null(b);
        assert_int_equal((uintptr_t)b % 64, 0);
        memset(b, 1, big);
        unsigned char *mid = (unsigned char *)((uintptr_t)(b + big / 2) / page * page);
        assert_int_equal(mincore(mid, page, vec), 0);
        be->ops->staging_free(be, b);
        assert_int_equal(mincore(mid, page, vec), -1);
        assert_int_equal(errno, ENOMEM);
    }
    mq_backend_free(be);
}

/* ---- int4 and float8 ---- */

static const mq_qkind kinds[5] = {MQ_QK_INT4, MQ_QK_FP8, MQ_QK_MXFP4, MQ_QK_MXFP8, MQ_QK_NVFP4};
#define N_KINDS 5

/* The descriptor of kind k; NVFP4's with a global scale that is no power of
 * two, so that the group scales and the codes' divisions round. */
static mq_qdesc qd_k(mq_qkind k, bool sym)
{
    mq_qdesc d = mq_qd(k, sym);
    if (k == MQ_QK_NVFP4) d.gscale = 0x1.70f2p+8f;
    return d;
}

/* Edge values of the new kinds besides edge_value's: ties of the int4 grid
 * (scale 1 where a row's amax is 7.5) and e4m3 midpoints (scale 1 where amax
 * is 448), subnormal e4m3 steps. */
static float kind_edge_value(tu_rng *r)
{
    static const float fixed[] = {
        7.5f,       -7.5f,       6.5f,        -6.5f,        0.5f,           448.0f,
        -448.0f,    464.0f,      1.0625f,     -1.1875f,     0x1p-10f,       -0x1p-10f,
        0x1.8p-9f,  0x1.4p-7f,   240.0f,      0x1p-126f,    0x1.fffffep-1f, 3.0f * 0x1p-10f,
        0x1.08p+3f, -0x1.18p+8f, 0x1.fep127f, -0x1.fep127f, 0x1p-24f,       -0x1.ff8p-15f};
    uint64_t k = tu_rng_u64(r);
    if (k % 3 == 0) return fixed[(k >> 8) % (sizeof fixed / sizeof fixed[0])];
    return edge_value(r);
}

/* n codes of one byte each against the reference's, naming the value on a difference. */
static void assert_codes(const uint8_t *a, const uint8_t *b, size_t n, const void *src, mq_dtype dt,
                         float scale, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            fail_msg("%s: dtype %d n %zu [%zu] of %a (scale %a) is 0x%02x, want 0x%02x", what,
                     (int)dt, n, i, (double)mq_load_f32(src, dt, i), (double)scale, a[i], b[i]);
}

static void fill_k(void *dst, mq_dtype dt, size_t n, tu_rng *r, int mode)
{
    for (size_t i = 0; i < n; i++)
        put(dst, dt, i, mode == 0 ? tu_rng_normal(r) : mode == 1 ? kind_edge_value(r) : 0.0f);
}

/* mq_hk_quantize of kind k, with and without its weight error, against mq_ref_quantize. */
static void check_rows_k(const void *src, mq_dtype dt, size_t rows, size_t cols, mq_qkind k,
                         bool sym)
{
    size_t es = mq_qkind_scale_size(k, dt), qb = rows * mq_qkind_row_bytes(k, cols);
    uint8_t *qa = malloc(qb + 1), *qr = malloc(qb + 1);
    int8_t *za = calloc(rows + 1, 1), *zr = calloc(rows + 1, 1);
    unsigned char *sa = malloc(rows * es + 1), *sr = malloc(rows * es + 1);
    assert_true(qa && qr && za && zr && sa && sr);
    for (int with_err = 0; with_err < 2; with_err++) {
        size_t ba = 7, br = 7;
        mq_err_acc e;
        mq_err_acc_init(&e);
        memset(qa, 0x5a, qb);
        mq_status a = mq_hk_quantize(qd_k(k, sym), src, dt, rows, cols, qa, sa, za, &ba,
                                     with_err ? &e : NULL);
        mq_status b = mq_ref_quantize(qd_k(k, sym), src, dt, rows, cols, qr, sr, zr, &br);
        assert_int_equal(a, b);
        if (a != MQ_OK) {
            assert_int_equal(ba, br);
            continue;
        }
        assert_bytes(qa, qr, qb, k == MQ_QK_INT4 ? "int4 packed q" : "fp8 or mx q");
        assert_bytes(sa, sr, rows * es, "scale");
        if (!sym && k == MQ_QK_INT4) assert_bytes(za, zr, rows, "zero point");
    }
    free(qa);
    free(qr);
    free(za);
    free(zr);
    free(sa);
    free(sr);
}

/* Group sizes 32 and 128 (rows of a call are groups), odd lengths for the
 * int4 padding, lengths around each block size; random, edge and zero data,
 * all-positive and all-negative rows. */
static void test_rows_k(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 13);
    const size_t shapes[][2] = {{1, 1},    {3, 5},   {4, 7},   {2, 8},    {5, 9},    {3, 15},
                                {4, 16},   {6, 17},  {64, 32}, {8, 33},   {5, 63},   {3, 65},
                                {32, 128}, {4, 130}, {2, 513}, {3, 1029}, {1, 4099}, {40, 256}};
    unsigned char *buf = malloc(64 * 4100 * 4 + 1);
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int kk = 0; kk < N_KINDS; kk++)
                for (int sym = 0; sym < 2; sym++) {
                    if (kinds[kk] >= MQ_QK_FP8 && !sym) continue;
                    for (int mode = 0; mode < 3; mode++) {
                        size_t rows = shapes[s][0], cols = shapes[s][1];
                        fill_k(buf, qdtypes[d], rows * cols, &r, mode);
                        check_rows_k(buf, qdtypes[d], rows, cols, kinds[kk], sym);
                        if (mode == 2) continue;
                        for (size_t i = 0; i < rows * cols; i++)
                            put(buf, qdtypes[d], i, fabsf(mq_load_f32(buf, qdtypes[d], i)) + 1.0f);
                        check_rows_k(buf, qdtypes[d], rows, cols, kinds[kk], sym);
                        for (size_t i = 0; i < rows * cols; i++)
                            put(buf, qdtypes[d], i, -mq_load_f32(buf, qdtypes[d], i) * 3.0f);
                        check_rows_k(buf, qdtypes[d], rows, cols, kinds[kk], sym);
                    }
                }
    /* NaN or Inf in row 2 of 4 (in the vector part, then in the tail). */
    for (int kk = 0; kk < N_KINDS; kk++) {
        fill_k(buf, MQ_DTYPE_F32, 4 * 700, &r, 0);
        put(buf, MQ_DTYPE_F32, 2 * 700 + 650, NAN);
        check_rows_k(buf, MQ_DTYPE_F32, 4, 700, kinds[kk], true);
        fill_k(buf, MQ_DTYPE_F16, 4 * 37, &r, 0);
        put(buf, MQ_DTYPE_F16, 2 * 37 + 36, INFINITY);
        check_rows_k(buf, MQ_DTYPE_F16, 4, 37, kinds[kk], true);
    }
    free(buf);
}

/* The weight error of mq_hk_quantize against mq_ref_error_stats of the
 * reference's outputs: the clamp count exactly, the sums to a relative 1e-5,
 * the largest error to one fp32 rounding. */
static void check_err_k(const void *src, mq_dtype dt, size_t rows, size_t cols, mq_qkind k,
                        bool sym)
{
    size_t es = mq_qkind_scale_size(k, dt), qb = rows * mq_qkind_row_bytes(k, cols);
    uint8_t *q = malloc(qb + 1), *qr = malloc(qb + 1);
    int8_t *z = calloc(rows + 1, 1);
    unsigned char *sc = malloc(rows * es + 1);
    assert_true(q && qr && z && sc);
    mq_err_acc a, b;
    mq_err_acc_init(&a);
    mq_err_acc_init(&b);
    size_t bad = 0;
    assert_int_equal(mq_hk_quantize(qd_k(k, sym), src, dt, rows, cols, q, sc, z, &bad, &a), MQ_OK);
    assert_int_equal(mq_ref_quantize(qd_k(k, sym), src, dt, rows, cols, qr, sc, z, &bad), MQ_OK);
    mq_ref_error_stats(qd_k(k, sym), src, dt, rows, cols, qr, sc, dt, sym ? NULL : z, &b);
    assert_int_equal(a.clamped, b.clamped);
    if (!(fabs(a.sig - b.sig) <= 1e-5 * b.sig && fabs(a.err2 - b.err2) <= 1e-5 * b.err2 &&
          fabs(a.max_abs - b.max_abs) <= 0x1p-23 * b.max_abs))
        fail_msg("kind %d dtype %d %zu x %zu: error sums %a %a %a, want %a %a %a", (int)k, (int)dt,
                 rows, cols, a.sig, a.err2, a.max_abs, b.sig, b.err2, b.max_abs);
    free(q);
    free(qr);
    free(z);
    free(sc);
}

/* Groups of 16, 32, 64 and 128 values are quantized 16 groups at a time, for
 * every kind (INT8 with its code XOR): whole tiles and a ragged last one
 * (rows not a multiple of 16); other lengths (8, 48, 80, 256) group by
 * group beside them; each group of a tile scaled by its own power of two
 * (subnormal and huge groups beside ordinary ones), zero groups among them,
 * ties and extremes (edge data), all-positive and all-negative groups (the
 * asymmetric zero point at both ends); NaN and Inf in the first, a middle
 * and the last tile, the refusal naming that group. */
static void test_rows_tiles(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 29);
    const size_t shapes[][2] = {{16, 16}, {33, 16},  {17, 32}, {35, 128}, {48, 64},
                                {64, 32}, {32, 256}, {21, 48}, {40, 80},  {18, 8}};
    unsigned char *buf = malloc(64 * 256 * 4 + 1);
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int kk = 0; kk < N_KINDS; kk++)
                for (int sym = 0; sym < 2; sym++) {
                    if (kinds[kk] >= MQ_QK_FP8 && !sym) continue;
                    mq_dtype dt = qdtypes[d];
                    size_t rows = shapes[s][0], cols = shapes[s][1];
                    for (int mode = 0; mode < 4; mode++) {
                        fill_k(buf, dt, rows * cols, &r, mode == 3 ? 0 : mode);
                        if (mode == 3) /* a power of two a group, some groups zero */
                            for (size_t g = 0; g < rows; g++)
                                for (size_t i = 0; i < cols; i++) {
                                    int e = (int)(g * 37 % 61) - 30;
                                    float v = mq_load_f32(buf, dt, g * cols + i);
                                    v = g % 7 == 3 ? 0.0f
                                                   : ldexpf(v, dt == MQ_DTYPE_F32 ? 4 * e : e);
                                    put(buf, dt, g * cols + i, v);
                                }
                        check_rows_k(buf, dt, rows, cols, kinds[kk], sym);
                        if (kk == 0) check_rows(buf, dt, rows, cols, sym); /* INT8 */
                        if (mode == 0 && kinds[kk] <= MQ_QK_FP8)
                            check_err_k(buf, dt, rows, cols, kinds[kk], sym);
                        if (mode == 0 && kk == 0) check_err_k(buf, dt, rows, cols, MQ_QK_INT8, sym);
                        if (mode == 2) continue;
                        for (size_t i = 0; i < rows * cols; i++)
                            put(buf, dt, i, fabsf(mq_load_f32(buf, dt, i)) + 1.0f);
                        check_rows_k(buf, dt, rows, cols, kinds[kk], sym);
                        if (kk == 0) check_rows(buf, dt, rows, cols, sym);
                        for (size_t i = 0; i < rows * cols; i++)
                            put(buf, dt, i, -mq_load_f32(buf, dt, i) * 3.0f);
                        check_rows_k(buf, dt, rows, cols, kinds[kk], sym);
                        if (kk == 0) check_rows(buf, dt, rows, cols, sym);
                    }
                }
    /* A NaN or an Inf in group 0, 20 or 47 of 48 groups of 64. */
    const size_t at[] = {0, 20, 47};
    for (int kk = 0; kk < N_KINDS; kk++)
        for (int d = 0; d < 3; d++)
            for (size_t a = 0; a < 3; a++) {
                fill_k(buf, qdtypes[d], 48 * 64, &r, 0);
                put(buf, qdtypes[d], at[a] * 64 + (a * 29) % 64, a == 1 ? INFINITY : NAN);
                check_rows_k(buf, qdtypes[d], 48, 64, kinds[kk], true);
                if (kinds[kk] == MQ_QK_INT4) {
                    check_rows_k(buf, qdtypes[d], 48, 64, kinds[kk], false);
                    check_rows(buf, qdtypes[d], 48, 64, true);
                    check_rows(buf, qdtypes[d], 48, 64, false);
                }
            }
    free(buf);
}

/* Every e2m1 value and midpoint, and the fp32 values beside each, of both
 * signs, in groups whose largest magnitude is 6 (an MX scale of 1) or 6
 * times a power of two, for MXFP4 and NVFP4 (its global scale no power of
 * two): codes, scales and the weight error against the reference, through
 * tiles (groups of 16, 32 and 64) and group by group (33 and 96). */
static void test_rows_e2m1_grid(void **state)
{
    (void)state;
    static const float grid[] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f,
                                 2.0f, 2.5f,  3.0f, 3.5f,  4.0f, 5.0f,  6.0f};
    enum { NG = sizeof grid / sizeof grid[0] };
    float vals[NG * 3 * 2 + 2];
    size_t nv = 0;
    for (size_t i = 0; i < NG; i++)
        for (int sg = 0; sg < 2; sg++) {
            float v = sg ? -grid[i] : grid[i];
            vals[nv++] = v;
            vals[nv++] = nextafterf(v, 0.0f);
            vals[nv++] = nextafterf(v, sg ? -6.0f : 6.0f);
        }
    vals[nv++] = -0.0f;
    vals[nv++] = 0x1p-140f;
    const size_t shapes[][2] = {{40, 16}, {48, 32}, {20, 64}, {7, 33}, {5, 96}};
    const mq_qkind fp4[] = {MQ_QK_MXFP4, MQ_QK_NVFP4};
    const int pow2[] = {0, -10, 5, -3};
    unsigned char *buf = malloc(48 * 96 * 4);
    assert_non_null(buf);
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            size_t rows = shapes[s][0], cols = shapes[s][1];
            for (size_t g = 0; g < rows; g++)
                for (size_t i = 0; i < cols; i++) {
                    float v = i == 0 ? (g & 1 ? -6.0f : 6.0f) : vals[(g * 7 + i) % nv];
                    put(buf, qdtypes[d], g * cols + i, ldexpf(v, pow2[g % 4]));
                }
            for (size_t k = 0; k < 2; k++) {
                check_rows_k(buf, qdtypes[d], rows, cols, fp4[k], true);
                check_err_k(buf, qdtypes[d], rows, cols, fp4[k], true);
            }
        }
    free(buf);
}

/* F16 and BF16 rows from 64 to 8192 values are widened once for both passes;
 * longer ones block by block. Raw 16-bit words of every class (subnormal,
 * largest, infinities, NaNs of both signs and payloads) in such rows, for
 * int8 (both symmetries) and every other kind, against the reference: the
 * same codes and scales, or the same refusal naming the same row. */
static void test_rows_16bit_words(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 29);
    static const uint16_t f16w[] = {0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3c00, 0xb800};
    static const uint16_t bf16w[] = {0x0001, 0x8001, 0x007f, 0x0080,
                                     0x7f7f, 0xff7f, 0x3f80, 0xbf00};
    static const uint16_t bad16[2][4] = {{0x7c00, 0xfc00, 0x7e00, 0xfc01},
                                         {0x7f80, 0xff80, 0x7fc0, 0xff81}};
    const size_t shapes[][2] = {{3, 64}, {2, 700}, {2, 2048}, {1, 8192}, {1, 8193}};
    uint16_t *buf = malloc(3 * 8193 * 2);
    assert_non_null(buf);
    for (int d = 0; d < 2; d++) {
        mq_dtype dt = d ? MQ_DTYPE_BF16 : MQ_DTYPE_F16;
        const uint16_t *words = d ? bf16w : f16w;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            size_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
            for (int bad = -1; bad < 4; bad++) {
                for (size_t i = 0; i < n; i++) {
                    uint64_t k = tu_rng_u64(&r);
                    if (k % 4 == 0)
                        buf[i] = words[(k >> 8) % 8];
                    else
                        put(buf, dt, i, tu_rng_normal(&r));
                }
                /* one non-finite word in the last row, away from the ends */
                if (bad >= 0) buf[n - cols / 3 - 1] = bad16[d][bad];
                for (int sym = 0; sym < 2; sym++)
                    check_rows(buf, dt, rows, cols, sym);
                for (int kk = 0; kk < N_KINDS; kk++)
                    check_rows_k(buf, dt, rows, cols, kinds[kk], true);
                check_rows_k(buf, dt, rows, cols, MQ_QK_INT4, false);
            }
        }
    }
    free(buf);
}

/* Fixed parameters: every FP8 code through a sweep of fp32 bit patterns with
 * scale 1 (every rounding case of the e4m3 conversion, saturation, NaN), and
 * int4 codes with zero points. */
static void test_values_k(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    float *x = malloc(n * 4);
    uint8_t *a = malloc(n), *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        x[i] = mq_f32_from_bits((uint32_t)(i * 4099u + (i >> 7)));
    mq_hk_quantize_values(mq_qd(MQ_QK_FP8, true), x, MQ_DTYPE_F32, n, 1.0f, 0, a, NULL);
    mq_ref_quantize_values(mq_qd(MQ_QK_FP8, true), x, MQ_DTYPE_F32, n, 1.0f, 0, b);
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) fail_msg("fp8 of %a: 0x%02x, want 0x%02x", x[i], a[i], b[i]);
    /* Every e4m3 value and every midpoint, scaled. */
    for (size_t i = 0; i < 512; i++) {
        float lo = mq_e4m3_to_f32((uint8_t)(i / 2)), hi = mq_e4m3_to_f32((uint8_t)(i / 2 + 1));
        x[i] = i & 1 && (i / 2) % 128 < 126 ? (lo + hi) / 2 : lo;
        if (x[i] != x[i]) x[i] = 0.0f;
    }
    const float scales[] = {1.0f, 0.5f, 0x1p-20f, 3.0f};
    for (size_t k = 0; k < 4; k++) {
        mq_hk_quantize_values(mq_qd(MQ_QK_FP8, true), x, MQ_DTYPE_F32, 512, scales[k], 0, a, NULL);
        mq_ref_quantize_values(mq_qd(MQ_QK_FP8, true), x, MQ_DTYPE_F32, 512, scales[k], 0, b);
        assert_bytes(a, b, 512, "fp8 grid");
    }
    tu_rng r;
    tu_rng_seed(&r, 17);
    for (int d = 0; d < 3; d++) {
        unsigned char *src = malloc(5000 * 4);
        fill_k(src, qdtypes[d], 5000, &r, 1);
        const int8_t zps[] = {0, -8, 7, 3};
        for (size_t z = 0; z < 4; z++)
            for (size_t len = 1; len < 5000; len = len * 3 + 1) {
                mq_hk_quantize_values(mq_qd(MQ_QK_INT4, true), src, qdtypes[d], len, 0.37f, zps[z],
                                      a, NULL);
                mq_ref_quantize_values(mq_qd(MQ_QK_INT4, true), src, qdtypes[d], len, 0.37f, zps[z],
                                       b);
                assert_codes(a, b, len, src, qdtypes[d], 0.37f, "int4 values");
                mq_hk_quantize_values(mq_qd(MQ_QK_FP8, true), src, qdtypes[d], len, 0.01f, 0, a,
                                      NULL);
                mq_ref_quantize_values(mq_qd(MQ_QK_FP8, true), src, qdtypes[d], len, 0.01f, 0, b);
                assert_codes(a, b, len, src, qdtypes[d], 0.01f, "fp8 values");
            }
        free(src);
    }
    free(x);
    free(a);
    free(b);
}

static void check_blocks(const void *src, mq_dtype dt, size_t rows, size_t cols, size_t bs)
{
    size_t es = mq_dtype_size(dt), nb = ((rows + bs - 1) / bs) * ((cols + bs - 1) / bs);
    uint8_t *qa = malloc(rows * cols + 1), *qr = malloc(rows * cols + 1);
    unsigned char *sa = malloc(nb * es + 1), *sr = malloc(nb * es + 1);
    size_t ba = 7, br = 7;
    mq_status a = mq_hk_quantize(mq_qd_blocks(bs), src, dt, rows, cols, qa, sa, NULL, &ba, NULL);
    mq_status b = mq_ref_quantize(mq_qd_blocks(bs), src, dt, rows, cols, qr, sr, NULL, &br);
    assert_int_equal(a, b);
    if (a == MQ_OK) {
        assert_bytes(qa, qr, rows * cols, "block q");
        assert_bytes(sa, sr, nb * es, "block scale");
    } else {
        assert_int_equal(ba, br);
    }
    free(qa);
    free(qr);
    free(sa);
    free(sr);
}

/* 2-D blocks, whole and partial in either dimension. */
static void test_blocks(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 19);
    const size_t shapes[][3] = {{128, 256, 128}, {130, 300, 128}, {5, 7, 4},
                                {33, 65, 16},    {1, 1, 128},     {40, 1000, 32}};
    unsigned char *buf = malloc(130 * 1000 * 4);
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int mode = 0; mode < 3; mode++) {
                size_t rows = shapes[s][0], cols = shapes[s][1], bs = shapes[s][2];
                fill_k(buf, qdtypes[d], rows * cols, &r, mode);
                check_blocks(buf, qdtypes[d], rows, cols, bs);
            }
    /* NaN in block (1, 2) and Inf in block (2, 0): the first is reported. */
    fill_k(buf, MQ_DTYPE_F32, 40 * 100, &r, 0);
    put(buf, MQ_DTYPE_F32, 20 * 100 + 70, NAN);
    put(buf, MQ_DTYPE_F32, 35 * 100 + 3, -INFINITY);
    check_blocks(buf, MQ_DTYPE_F32, 40, 100, 16);
    free(buf);
}

/* The host backend's ops (threaded for large calls) and the mq_be_* wrappers. */
static void test_backend_kinds(void **state)
{
    (void)state;
    mq_backend *be;
    tu_rng r;
    tu_rng_seed(&r, 23);
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    const size_t rows = 2000, cols = 384, bs = 128;
    for (int d = 0; d < 3; d++) {
        mq_dtype dt = qdtypes[d];
        size_t es = mq_dtype_size(dt), n = rows * cols;
        unsigned char *src = malloc(n * es), *sa = malloc(rows * es), *sr = malloc(rows * es);
        uint8_t *qa = malloc(n), *qr = malloc(n);
        int8_t *za = malloc(rows), *zr = malloc(rows);
        fill_k(src, dt, n, &r, 0);
        for (int kk = 0; kk < N_KINDS; kk++)
            for (int sym = 0; sym < 2; sym++) {
                size_t bad = 0, qb = rows * mq_qkind_row_bytes(kinds[kk], cols);
                if (kinds[kk] >= MQ_QK_FP8 && !sym) continue;
                assert_int_equal(mq_be_quantize(be, qd_k(kinds[kk], sym), src, dt, rows, cols, qa,
                                                sa, za, &bad, NULL),
                                 MQ_OK);
                assert_int_equal(
                    mq_ref_quantize(qd_k(kinds[kk], sym), src, dt, rows, cols, qr, sr, zr, &bad),
                    MQ_OK);
                assert_bytes(qa, qr, qb, "threaded kind q");
                assert_bytes(sa, sr, rows * mq_qkind_scale_size(kinds[kk], dt),
                             "threaded kind scale");
                if (!sym && kinds[kk] == MQ_QK_INT4) assert_bytes(za, zr, rows, "threaded kind zp");
                assert_int_equal(mq_be_quantize_values(be, qd_k(kinds[kk], sym), src, dt, n, 0.02f,
                                                       sym ? 0 : -3, qa, NULL),
                                 MQ_OK);
                mq_ref_quantize_values(qd_k(kinds[kk], true), src, dt, n, 0.02f, sym ? 0 : -3, qr);
                assert_bytes(qa, qr, n, "kind values");
            }
        size_t nbk = (rows / bs + 1) * (cols / bs), bad = 0;
        unsigned char *ba = malloc(nbk * es), *br = malloc(nbk * es);
        assert_int_equal(
            mq_be_quantize(be, mq_qd_blocks(bs), src, dt, rows, cols, qa, ba, NULL, &bad, NULL),
            MQ_OK);
        assert_int_equal(mq_ref_quantize(mq_qd_blocks(bs), src, dt, rows, cols, qr, br, NULL, &bad),
                         MQ_OK);
        assert_bytes(qa, qr, n, "threaded block q");
        assert_bytes(ba, br, nbk * es, "threaded block scale");
        if (dt == MQ_DTYPE_F32) { /* bad rows and blocks in two parts: the first */
            put(src, dt, 1500 * cols + 3, NAN);
            put(src, dt, 300 * cols + 200, -INFINITY);
            assert_int_equal(mq_be_quantize(be, mq_qd(MQ_QK_INT4, true), src, dt, rows, cols, qa,
                                            sa, NULL, &bad, NULL),
                             MQ_STATUS_E_DATA);
            assert_int_equal(bad, 300);
            assert_int_equal(
                mq_be_quantize(be, mq_qd_blocks(bs), src, dt, rows, cols, qa, ba, NULL, &bad, NULL),
                MQ_STATUS_E_DATA);
            assert_int_equal(bad, 300 / bs * 3 + 1);
        }
        free(ba);
        free(br);
        free(src);
        free(sa);
        free(sr);
        free(qa);
        free(qr);
        free(za);
        free(zr);
    }
    mq_backend_free(be);
}

/* INT8 with compressed-tensors' relabelled bytes (code_xor 0x80) through the
 * one loop: every run length (whole blocks written in place, the short end
 * packed from a scratch block) gives the reference's codes XOR 0x80, with and
 * without the weight error; blocks of a kind other than FP8 are refused. */
static void test_int8_code_xor(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, 41);
    static const size_t lens[] = {1, 15, 16, 17, 63, 64, 65, 511, 512, 700, 1100};
    mq_qdesc flip = {.kind = MQ_QK_INT8, .symmetric = false, .code_xor = 0x80};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t cols = lens[li], rows = 3, n = rows * cols;
        float *w = malloc(n * sizeof *w), s0[3], s1[3];
        int8_t *q0 = malloc(n), *q1 = malloc(n), z0[3], z1[3];
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            w[i] = tu_rng_normal(&r);
        assert_int_equal(mq_ref_quantize(flip, w, MQ_DTYPE_F32, rows, cols, q0, s0, z0, &bad),
                         MQ_OK);
        for (int e = 0; e < 2; e++) {
            mq_err_acc acc;
            mq_err_acc_init(&acc);
            assert_int_equal(mq_hk_quantize(flip, w, MQ_DTYPE_F32, rows, cols, q1, s1, z1, &bad,
                                            e ? &acc : NULL),
                             MQ_OK);
            assert_memory_equal(q0, q1, n);
            assert_memory_equal(s0, s1, sizeof s0);
            assert_memory_equal(z0, z1, sizeof z0);
        }
        memset(q1, 0, n);
        mq_hk_quantize_values(flip, w, MQ_DTYPE_F32, cols, s0[0], z0[0], q1, NULL);
        assert_memory_equal(q0, q1, cols);
        free(w);
        free(q0);
        free(q1);
    }
    float x[4] = {1, 2, 3, 4}, sc[4];
    uint8_t q[4];
    mq_qdesc int4_blocks = {.kind = MQ_QK_INT4, .symmetric = true, .block = 2};
    assert_int_equal(mq_hk_quantize(int4_blocks, x, MQ_DTYPE_F32, 2, 2, q, sc, NULL, NULL, NULL),
                     MQ_STATUS_E_INVALID_ARG);
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    assert_int_equal(
        be->ops->quantize(be, int4_blocks, x, MQ_DTYPE_F32, 2, 2, q, sc, NULL, NULL, NULL),
        MQ_STATUS_E_INVALID_ARG);
    mq_backend_free(be);
}

/* The CPU back end is a registry entry like the OpenCL one: "host" opens it
 * by name, it has no hooks beyond its table, and the OpenCL hooks are there
 * exactly when OpenCL was built. */
/* dequantize_source: the host back end's kernel, alone and across its
 * threads (calls above the split size), against the reference. */
static void test_source_fp8_block(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    sc_check_fp8_block_suite(be, 71);
    /* 2 M values: split over the threads in runs of rows, each part with its
     * own first scale row; a band from an odd row, a range inside rows. */
    sc_check_fp8_block(be, 72, 1030, 2050, 128, 128, 0, 1030 * 2050, false);
    sc_check_fp8_block(be, 73, 1030, 2050, 128, 128, 129 * 2050, 800 * 2050, true);
    sc_check_fp8_block(be, 74, 1030, 2050, 128, 128, 77 * 2050 + 5, 900 * 2050 + 3, false);
    mq_backend_free(be);
}

static void test_registry(void **state)
{
    (void)state;
    const mq_backend_reg *cpu = mq_backend_reg_by_name("host");
    assert_non_null(cpu);
    assert_null(mq_backend_reg_by_name("no-such-back-end"));
    assert_null(mq_backend_get_proc("host", "mq_opencl_hooks"));
    assert_null(mq_backend_get_proc("no-such-back-end", "mq_opencl_hooks"));
    mq_backend *be = NULL;
    bool none = true;
    assert_int_equal(cpu->open("host", 0, &none, &be), MQ_OK);
    assert_false(none);
    assert_string_equal(be->backend, "host");
    assert_true(be->caps.host_threads);
    mq_backend_free(be);
    assert_int_equal(cpu->open("gpu", 0, &none, &be), MQ_STATUS_E_DEVICE);
    assert_true(none);
    assert_int_equal(mq_backend_open_spec("host", 0, &be), MQ_OK);
    assert_string_equal(be->backend, "host");
    mq_backend_free(be);
#ifdef MQ_HAVE_OPENCL
    assert_non_null(mq_backend_get_proc("opencl", "mq_opencl_hooks"));
    assert_non_null(mq_backend_get_proc("opencl", "mq_clgemm_hooks"));
    assert_null(mq_backend_get_proc("opencl", "no-such-hook"));
#else
    assert_null(mq_backend_reg_by_name("opencl"));
    /* auto has only the CPU to take, and an OpenCL spec names nothing. */
    assert_int_equal(mq_backend_open_spec("auto", 0, &be), MQ_OK);
    assert_string_equal(be->backend, "host");
    mq_backend_free(be);
    assert_int_equal(mq_backend_open_spec("gpu", 0, &be), MQ_STATUS_E_DEVICE);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_widen_all),     cmocka_unit_test(test_f16_widen_row),
        cmocka_unit_test(test_stats_random),      cmocka_unit_test(test_stats_nonfinite),
        cmocka_unit_test(test_values_random),     cmocka_unit_test(test_values_nonfinite),
        cmocka_unit_test(test_values_all_halves), cmocka_unit_test(test_rows_random),
        cmocka_unit_test(test_cast_f32_patterns), cmocka_unit_test(test_cast_dtypes),
        cmocka_unit_test(test_backend_threads),   cmocka_unit_test(test_rows_k),
        cmocka_unit_test(test_values_k),          cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_backend_kinds),     cmocka_unit_test(test_int8_code_xor),
        cmocka_unit_test(test_registry),          cmocka_unit_test(test_rows_16bit_words),
        cmocka_unit_test(test_source_fp8_block),  cmocka_unit_test(test_rows_tiles),
        cmocka_unit_test(test_rows_e2m1_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
