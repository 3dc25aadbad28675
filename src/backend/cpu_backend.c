/* The CPU back end ("host"): the CPU kernels (cpukern.c, bit-identical to the
 * reference), spread over up to 8 cores for large calls. It registers in
 * backend.c's table as the OpenCL back end does, last: "auto" takes it when
 * no other back end has a device for auto. */
#include "backend.h"

#include "cpukern.h"
#include "error.h"
#include "bigbuf.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls that touch less than this many input bytes stay on one thread: the
 * hand-off costs tens of microseconds. */
#define HOST_SPLIT_BYTES ((size_t)1 << 20)
#define HOST_MAX_THREADS 8u

typedef struct {
    mq_backend base; /* first, so the table's mq_backend * is this */
    mq_pool *pool;
    bool pool_tried;
} host_backend;

/* The pool, started on first need; NULL runs everything on the caller. */
static mq_pool *host_pool(mq_backend *b)
{
    host_backend *h = (host_backend *)b;
    if (!h->pool_tried) {
        h->pool_tried = true;
        h->pool = mq_pool_new(mq_cpu_count(HOST_MAX_THREADS));
    }
    return h->pool;
}

/* Parts for a call of `rows` rows over `bytes` input bytes: 1 when small. */
static unsigned host_parts(mq_backend *b, size_t rows, size_t bytes)
{
    if (rows < 2 || bytes < HOST_SPLIT_BYTES) return 1;
    unsigned n = mq_pool_threads(host_pool(b));
    return rows < n ? (unsigned)rows : n;
}

/* Rows [first, end) of part k when `rows` are split in `parts`. */
static void part_range(size_t rows, unsigned parts, unsigned k, size_t *first, size_t *end)
{
    *first = rows / parts * k + (k < rows % parts ? k : rows % parts);
    *end = *first + rows / parts + (k < rows % parts ? 1 : 0);
}

/* One quantize call split in parts of whole bands (a row, or a band of
 * block rows), one per thread. */
typedef struct {
    mq_qdesc d;
    const unsigned char *src;
    mq_dtype dt;
    size_t rows, cols;
    unsigned char *q, *scale;
    int8_t *zp;
    unsigned parts;
    mq_status st[HOST_MAX_THREADS];
    size_t bad[HOST_MAX_THREADS];
    bool want_err;
    mq_err_acc err[HOST_MAX_THREADS];
} quant_job;

static void quant_part(void *arg, unsigned k)
{
    quant_job *j = arg;
    size_t gr = j->d.block ? j->d.block : 1, nbr = (j->rows + gr - 1) / gr;
    size_t per_band = mq_qdesc_scales(j->d, gr, j->cols); /* scales in one band */
    size_t es = mq_dtype_size(j->dt), qb = mq_qkind_row_bytes(j->d.kind, j->cols), u0, u1;
    size_t ss = mq_qkind_scale_size(j->d.kind, j->dt); /* one e8m0 byte for the MX kinds */
    part_range(nbr, j->parts, k, &u0, &u1);
    size_t r0 = u0 * gr, r1 = u1 * gr < j->rows ? u1 * gr : j->rows, g0 = u0 * per_band;
    j->st[k] = mq_hk_quantize(j->d, j->src + r0 * j->cols * es, j->dt, r1 - r0, j->cols,
                              j->q + r0 * qb, j->scale + g0 * ss, j->zp ? j->zp + g0 : NULL,
                              &j->bad[k], j->want_err ? &j->err[k] : NULL);
    j->bad[k] += g0;
}

/* err NULL skips the weight error. Each part sums its own rows; the parts
 * are added in order, so the result does not depend on timing, and the first
 * failing part gives the bad row or block, as a single pass would find it. */
static mq_status host_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t rows,
                               size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                               mq_err_acc *err)
{
    if (d.block && d.kind != MQ_QK_FP8)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "quantize: blocks of a kind other than FP8");
    size_t gr = d.block ? d.block : 1;
    quant_job j = {.d = d,
                   .src = src,
                   .dt = dt,
                   .rows = rows,
                   .cols = cols,
                   .q = q,
                   .scale = scale,
                   .zp = mq_qdesc_has_zp(d) ? zp : NULL,
                   .parts = host_parts(b, (rows + gr - 1) / gr, rows * cols * mq_dtype_size(dt)),
                   .want_err = err != NULL};
    for (unsigned k = 0; k < j.parts; k++) {
        j.st[k] = MQ_OK;
        j.bad[k] = 0;
        mq_err_acc_init(&j.err[k]);
    }
    if (j.parts == 1)
        quant_part(&j, 0);
    else
        mq_pool_run(host_pool(b), quant_part, &j, j.parts);
    for (unsigned k = 0; k < j.parts; k++) {
        if (j.st[k] != MQ_OK) {
            if (bad) *bad = j.bad[k];
            return j.st[k];
        }
    }
    for (unsigned k = 0; err && k < j.parts; k++)
        mq_err_acc_add(err, &j.err[k]);
    return MQ_OK;
}

typedef struct {
    const unsigned char *src;
    mq_dtype dt;
    size_t n;
    bool saturate;
    uint16_t *dst;
    unsigned parts;
    uint64_t overflow[HOST_MAX_THREADS];
} cast_job;

static void cast_part(void *arg, unsigned k)
{
    cast_job *j = arg;
    size_t i0, i1;
    part_range(j->n, j->parts, k, &i0, &i1);
    j->overflow[k] = mq_hk_cast_f16(j->src + i0 * mq_dtype_size(j->dt), j->dt, i1 - i0, j->saturate,
                                    j->dst + i0);
}

static mq_status host_cast_f16(mq_backend *b, const void *src, mq_dtype dt, size_t n, bool saturate,
                               uint16_t *dst, uint64_t *overflow)
{
    unsigned parts = host_parts(b, n, n * mq_dtype_size(dt));
    cast_job j = {src, dt, n, saturate, dst, parts, {0}};
    if (parts == 1) {
        *overflow = mq_hk_cast_f16(src, dt, n, saturate, dst);
        return MQ_OK;
    }
    mq_pool_run(host_pool(b), cast_part, &j, parts);
    *overflow = 0;
    for (unsigned k = 0; k < parts; k++)
        *overflow += j.overflow[k];
    return MQ_OK;
}

typedef struct {
    const int8_t *q;
    size_t rows, cols;
    const unsigned char *scale;
    const int8_t *zp;
    mq_dtype dt;
    unsigned char *dst;
    unsigned parts;
} dequant_job;

static void dequant_part(void *arg, unsigned k)
{
    dequant_job *j = arg;
    size_t r0, r1, es = mq_dtype_size(j->dt);
    part_range(j->rows, j->parts, k, &r0, &r1);
    mq_ref_dequantize_rows(j->q + r0 * j->cols, r1 - r0, j->cols, j->scale + r0 * es,
                           j->zp ? j->zp + r0 : NULL, j->dt, j->dst + r0 * j->cols * es);
}

static mq_status host_dequantize_rows(mq_backend *b, const int8_t *q, size_t rows, size_t cols,
                                      const void *scale, const int8_t *zp, mq_dtype dt, void *dst)
{
    dequant_job j = {q, rows, cols, scale, zp, dt, dst, host_parts(b, rows, rows * cols)};
    mq_pool_run(j.parts > 1 ? host_pool(b) : NULL, dequant_part, &j, j.parts);
    return MQ_OK;
}

/* A source dequantization split in runs of whole rows, one per thread; each
 * part's scale rows start at its own first value's. */
typedef struct {
    mq_srcdesc d;
    const unsigned char *codes;
    uint64_t e0;
    size_t n, cols;
    const unsigned char *scale;
    unsigned char *dst;
    unsigned parts;
} source_job;

static void source_part(void *arg, unsigned k)
{
    source_job *j = arg;
    uint64_t r_first = j->e0 / j->cols, r_last = (j->e0 + j->n - 1) / j->cols;
    size_t a, b;
    part_range((size_t)(r_last - r_first + 1), j->parts, k, &a, &b);
    uint64_t lo = (r_first + a) * j->cols, hi = (r_first + b) * j->cols;
    if (lo < j->e0) lo = j->e0;
    if (hi > j->e0 + j->n) hi = j->e0 + j->n;
    if (lo >= hi) return;
    uint64_t s0, s1, p0, p1;
    mq_srcdesc_scale_rows(j->d, j->e0, j->n, j->cols, &s0, &s1);
    mq_srcdesc_scale_rows(j->d, lo, (size_t)(hi - lo), j->cols, &p0, &p1);
    size_t srow = (j->cols + j->d.block_c - 1) / j->d.block_c * mq_dtype_size(j->d.scale_dt);
    size_t off = (size_t)(lo - j->e0);
    mq_hk_src_dequant(j->d, j->codes + off, lo, (size_t)(hi - lo), j->cols,
                      j->scale + (size_t)(p0 - s0) * srow, j->dst + off * mq_dtype_size(j->d.dt));
}

static mq_status host_dequantize_source(mq_backend *b, mq_srcdesc d, const void *codes, uint64_t e0,
                                        size_t n, size_t cols, const void *scale, void *dst)
{
    if (n == 0) return MQ_OK;
    uint64_t rows = (e0 + n - 1) / cols - e0 / cols + 1;
    source_job j = {d, codes, e0, n, cols, scale, dst, host_parts(b, (size_t)rows, n)};
    mq_pool_run(j.parts > 1 ? host_pool(b) : NULL, source_part, &j, j.parts);
    return MQ_OK;
}

static mq_status host_reduce(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                             mq_ref_stats *st)
{
    (void)b;
    mq_hk_stats_update(st, src, dt, n);
    return MQ_OK;
}

static mq_status host_quantize_values(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                      size_t n, float scale, int8_t zp, void *q, mq_err_acc *err)
{
    (void)b;
    mq_hk_quantize_values(d, src, dt, n, scale, zp, q, err);
    return MQ_OK;
}

/* Mapped, not malloc'd, 64-byte aligned: see bigbuf.c. */
static void *host_staging_alloc(mq_backend *b, size_t n)
{
    (void)b;
    return mq_bigbuf_alloc(n);
}

static mq_status host_mse_scan(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                               const void *src, mq_dtype dt, size_t rows, size_t cols,
                               uint8_t *mask, bool *improved, size_t *bad)
{
    return mq_hk_mse_scan(host_pool(b), d, o, imp, src, dt, rows, cols, mask, improved, bad);
}

static mq_status host_mse_quantize(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                                   size_t limit, const uint8_t *mask, const void *src, mq_dtype dt,
                                   size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                                   size_t *bad, mq_err_acc *err)
{
    (void)b;
    return mq_hk_mse_quantize(d, o, imp, limit, mask, src, dt, rows, cols, q, scale, zp, bad, err);
}

static void host_staging_free(mq_backend *b, void *p)
{
    (void)b;
    mq_bigbuf_free(p);
}

static void host_free(mq_backend *b)
{
    host_backend *h = (host_backend *)b;
    mq_pool_free(h->pool);
    free(h);
}

static const mq_backend_ops host_ops = {
    .quantize = host_quantize,
    .quantize_values = host_quantize_values,
    .cast_f16 = host_cast_f16,
    .dequantize_rows = host_dequantize_rows,
    .dequantize_source = host_dequantize_source,
    .free = host_free,
    .reduce = host_reduce,
    .staging_alloc = host_staging_alloc,
    .staging_free = host_staging_free,
    .mse_scan = host_mse_scan,
    .mse_quantize = host_mse_quantize,
};

mq_status mq_backend_open_host(mq_backend **out)
{
    host_backend *h = calloc(1, sizeof *h);
    if (!h) return mq_set_error(MQ_STATUS_E_NOMEM, "backend: out of memory");
    h->base.ops = &host_ops;
    snprintf(h->base.backend, sizeof h->base.backend, "host");
    snprintf(h->base.device, sizeof h->base.device, "reference");
    h->base.caps = (mq_backend_caps){
        .host_threads = true, .shares_host_memory = true, .has_gemm = false, .max_buffer = 0};
    *out = &h->base;
    return MQ_OK;
}

/* "host", and "auto" (asked last); no other spec names a CPU device. */
static mq_status cpu_open(const char *spec, size_t max_alloc_override, bool *none_found,
                          mq_backend **out)
{
    (void)max_alloc_override;
    *none_found = false;
    if (strcmp(spec, "host") == 0 || strcmp(spec, "auto") == 0) return mq_backend_open_host(out);
    *none_found = true;
    return mq_set_error(MQ_STATUS_E_DEVICE,
                        "device '%s': no back end of this libmonoquant has it (the host device is "
                        "'host'; built without OpenCL, MQ_OPENCL=OFF, there is no other)",
                        spec);
}

static const void *cpu_get_proc_address(const char *name)
{
    (void)name; /* no hooks beyond the table */
    return NULL;
}

const mq_backend_reg mq_cpu_reg = {
    .name = "host", .open = cpu_open, .list = NULL, .get_proc_address = cpu_get_proc_address};
