/* Backend choice and the CPU backend ("host"): the CPU kernels (cpukern.c,
 * bit-identical to the reference), spread over up to 8 cores for large calls. */
#include "backend.h"

#include "error.h"
#include "cpukern.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls that touch less than this many input bytes stay on one thread: the
 * hand-off costs tens of microseconds. */
#define HOST_SPLIT_BYTES ((size_t)1 << 20)
#define HOST_MAX_THREADS 8u
#define HOST_ALIGN 64

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

typedef struct {
    const unsigned char *src;
    mq_dtype dt;
    size_t rows, cols;
    bool symmetric;
    int8_t *q;
    unsigned char *scale;
    int8_t *zp;
    uint8_t code_xor;
    unsigned parts;
    mq_status st[HOST_MAX_THREADS];
    size_t bad[HOST_MAX_THREADS];
    bool want_err;
    mq_err_acc err[HOST_MAX_THREADS];
} quant_job;

static void quant_part(void *arg, unsigned k)
{
    quant_job *j = arg;
    size_t r0, r1, es = mq_dtype_size(j->dt);
    part_range(j->rows, j->parts, k, &r0, &r1);
    if (j->want_err)
        j->st[k] = mq_hk_quantize_rows_err(
            j->src + r0 * j->cols * es, j->dt, r1 - r0, j->cols, j->symmetric, j->q + r0 * j->cols,
            j->scale + r0 * es, j->zp ? j->zp + r0 : NULL, j->code_xor, &j->bad[k], &j->err[k]);
    else
        j->st[k] = mq_hk_quantize_rows(j->src + r0 * j->cols * es, j->dt, r1 - r0, j->cols,
                                       j->symmetric, j->q + r0 * j->cols, j->scale + r0 * es,
                                       j->zp ? j->zp + r0 : NULL, j->code_xor, &j->bad[k]);
    j->bad[k] += r0;
}

/* err NULL skips the weight error. Each part sums its own rows; the parts
 * are added in order, so the result does not depend on timing. */
static mq_status host_quantize_rows(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                    size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                    uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    unsigned parts = host_parts(b, rows, rows * cols * mq_dtype_size(dt));
    if (parts == 1) {
        if (err)
            return mq_hk_quantize_rows_err(src, dt, rows, cols, symmetric, q, scale, zp, code_xor,
                                           bad_row, err);
        return mq_hk_quantize_rows(src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row);
    }
    quant_job j = {
        src,   dt,      rows, cols,        symmetric,     q, scale, symmetric ? NULL : zp, code_xor,
        parts, {MQ_OK}, {0},  err != NULL, {{0, 0, 0, 0}}};
    for (unsigned k = 0; k < parts; k++)
        mq_err_acc_init(&j.err[k]);
    mq_pool_run(host_pool(b), quant_part, &j, parts);
    /* The first bad row, as a single pass would have found it. */
    for (unsigned k = 0; k < parts; k++) {
        if (j.st[k] != MQ_OK) {
            if (bad_row) *bad_row = j.bad[k];
            return j.st[k];
        }
    }
    for (unsigned k = 0; err && k < parts; k++)
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

static mq_status host_reduce(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                             mq_ref_stats *st)
{
    (void)b;
    mq_hk_stats_update(st, src, dt, n);
    return MQ_OK;
}

static mq_status host_quantize_values(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                      float scale, int8_t zp, bool symmetric, uint8_t code_xor,
                                      int8_t *q, mq_err_acc *err)
{
    (void)b;
    if (err)
        mq_hk_quantize_values_err(src, dt, n, scale, zp, symmetric, code_xor, q, err);
    else
        mq_hk_quantize_values(src, dt, n, scale, zp, code_xor, q);
    return MQ_OK;
}

/* ---- the int4 and float8 kinds ---- */

typedef struct {
    const unsigned char *src;
    mq_dtype dt;
    size_t rows, cols;
    size_t bs; /* blocks: the call is split in bands of bs rows; 0: in rows */
    mq_qkind kind;
    bool symmetric;
    unsigned char *q, *scale;
    int8_t *zp;
    unsigned parts;
    mq_status st[HOST_MAX_THREADS];
    size_t bad[HOST_MAX_THREADS];
    bool want_err;
    mq_err_acc err[HOST_MAX_THREADS];
} kind_job;

static void kind_part(void *arg, unsigned k)
{
    kind_job *j = arg;
    size_t u0, u1, es = mq_dtype_size(j->dt);
    mq_err_acc *e = j->want_err ? &j->err[k] : NULL;
    if (j->bs) {
        size_t nbr = (j->rows + j->bs - 1) / j->bs, nbc = (j->cols + j->bs - 1) / j->bs;
        part_range(nbr, j->parts, k, &u0, &u1);
        size_t r0 = u0 * j->bs, r1 = u1 * j->bs < j->rows ? u1 * j->bs : j->rows;
        j->st[k] =
            mq_hk_quantize_blocks(j->src + r0 * j->cols * es, j->dt, r1 - r0, j->cols, j->bs,
                                  j->q + r0 * j->cols, j->scale + u0 * nbc * es, &j->bad[k], e);
        j->bad[k] += u0 * nbc;
        return;
    }
    size_t qb = mq_qkind_row_bytes(j->kind, j->cols);
    part_range(j->rows, j->parts, k, &u0, &u1);
    j->st[k] = mq_hk_quantize_rows_k(j->src + u0 * j->cols * es, j->dt, u1 - u0, j->cols, j->kind,
                                     j->symmetric, j->q + u0 * qb, j->scale + u0 * es,
                                     j->zp ? j->zp + u0 : NULL, &j->bad[k], e);
    j->bad[k] += u0;
}

/* Runs a kind job over its parts: the first failing part's status and bad
 * index, as one pass would find them; the error sums added in order. */
static mq_status kind_run(mq_backend *b, kind_job *j, size_t *bad, mq_err_acc *err)
{
    for (unsigned k = 0; k < j->parts; k++) {
        j->st[k] = MQ_OK;
        j->bad[k] = 0;
        mq_err_acc_init(&j->err[k]);
    }
    mq_pool_run(j->parts > 1 ? host_pool(b) : NULL, kind_part, j, j->parts);
    for (unsigned k = 0; k < j->parts; k++) {
        if (j->st[k] != MQ_OK) {
            if (bad) *bad = j->bad[k];
            return j->st[k];
        }
    }
    for (unsigned k = 0; err && k < j->parts; k++)
        mq_err_acc_add(err, &j->err[k]);
    return MQ_OK;
}

static mq_status host_quantize_rows_k(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                      size_t cols, mq_qkind kind, bool symmetric, void *q,
                                      void *scale, int8_t *zp, size_t *bad_row, mq_err_acc *err)
{
    kind_job j = {.src = src,
                  .dt = dt,
                  .rows = rows,
                  .cols = cols,
                  .kind = kind,
                  .symmetric = symmetric,
                  .q = q,
                  .scale = scale,
                  .zp = symmetric || kind == MQ_QK_FP8 ? NULL : zp,
                  .parts = host_parts(b, rows, rows * cols * mq_dtype_size(dt)),
                  .want_err = err != NULL};
    return kind_run(b, &j, bad_row, err);
}

static mq_status host_quantize_values_k(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                        mq_qkind kind, float scale, int8_t zp, bool symmetric,
                                        uint8_t *q, mq_err_acc *err)
{
    (void)b;
    /* The zero point decides alone: a symmetric call passes 0. */
    (void)symmetric;
    mq_hk_quantize_values_k(src, dt, n, kind, scale, zp, q, err);
    return MQ_OK;
}

static mq_status host_quantize_blocks(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                      size_t cols, size_t bs, uint8_t *q, void *scale,
                                      size_t *bad_block, mq_err_acc *err)
{
    if (bs == 0) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "quantize blocks: block size 0");
    size_t nbr = (rows + bs - 1) / bs;
    kind_job j = {.src = src,
                  .dt = dt,
                  .rows = rows,
                  .cols = cols,
                  .bs = bs,
                  .kind = MQ_QK_FP8,
                  .symmetric = true,
                  .q = q,
                  .scale = scale,
                  .parts = host_parts(b, nbr, rows * cols * mq_dtype_size(dt)),
                  .want_err = err != NULL};
    return kind_run(b, &j, bad_block, err);
}

mq_status mq_be_quantize_rows(mq_backend *b, const void *src, mq_dtype dt, size_t rows, size_t cols,
                              mq_qkind kind, bool symmetric, void *q, void *scale, int8_t *zp,
                              uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    if (kind == MQ_QK_INT8)
        return b->ops->quantize_rows(b, src, dt, rows, cols, symmetric, q, scale, zp, code_xor,
                                     bad_row, err);
    if (b->ops->quantize_rows_k)
        return b->ops->quantize_rows_k(b, src, dt, rows, cols, kind, symmetric, q, scale, zp,
                                       bad_row, err);
    mq_status st =
        mq_ref_quantize_rows_k(src, dt, rows, cols, kind, symmetric, q, scale, zp, bad_row);
    if (st == MQ_OK && err)
        mq_ref_error_stats_k(src, dt, rows, cols, kind, q, scale, dt, symmetric ? NULL : zp, err);
    return st;
}

mq_status mq_be_quantize_values(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                mq_qkind kind, float scale, int8_t zp, bool symmetric,
                                uint8_t code_xor, void *q, mq_err_acc *err)
{
    if (kind == MQ_QK_INT8)
        return b->ops->quantize_values(b, src, dt, n, scale, zp, symmetric, code_xor, q, err);
    if (b->ops->quantize_values_k)
        return b->ops->quantize_values_k(b, src, dt, n, kind, scale, zp, symmetric, q, err);
    mq_ref_quantize_values_k(src, dt, n, kind, scale, zp, q);
    if (err) {
        /* The error statistics take stored rows: int4 codes packed. */
        for (size_t i = 0; i < n; i++) {
            uint8_t c = ((uint8_t *)q)[i], packed[4];
            if (kind == MQ_QK_INT4) mq_ref_pack4((const int8_t *)&c, 1, packed);
            mq_ref_error_stats_k((const unsigned char *)src + i * mq_dtype_size(dt), dt, 1, 1, kind,
                                 kind == MQ_QK_INT4 ? packed : &c, &scale, MQ_DTYPE_F32,
                                 symmetric ? NULL : &zp, err);
        }
    }
    return MQ_OK;
}

mq_status mq_be_quantize_blocks(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                size_t cols, size_t bs, uint8_t *q, void *scale, size_t *bad_block,
                                mq_err_acc *err)
{
    if (b->ops->quantize_blocks)
        return b->ops->quantize_blocks(b, src, dt, rows, cols, bs, q, scale, bad_block, err);
    mq_status st = mq_ref_quantize_blocks(src, dt, rows, cols, bs, q, scale, bad_block);
    if (st == MQ_OK && err) mq_ref_error_stats_blocks(src, dt, rows, cols, bs, q, scale, dt, err);
    return st;
}

static void *host_staging_alloc(mq_backend *b, size_t n)
{
    void *p = NULL;
    (void)b;
    /* Rounded up: aligned_alloc wants a multiple of the alignment. */
    size_t len = (n + HOST_ALIGN - 1) / HOST_ALIGN * HOST_ALIGN;
    if (len >= n) p = aligned_alloc(HOST_ALIGN, len ? len : HOST_ALIGN);
    return p;
}

static void host_staging_free(mq_backend *b, void *p)
{
    (void)b;
    free(p);
}

static void host_free(mq_backend *b)
{
    host_backend *h = (host_backend *)b;
    mq_pool_free(h->pool);
    free(h);
}

static const mq_backend_ops host_ops = {
    .quantize_rows = host_quantize_rows,
    .cast_f16 = host_cast_f16,
    .dequantize_rows = host_dequantize_rows,
    .free = host_free,
    .reduce = host_reduce,
    .quantize_values = host_quantize_values,
    .quantize_rows_k = host_quantize_rows_k,
    .quantize_values_k = host_quantize_values_k,
    .quantize_blocks = host_quantize_blocks,
    .staging_alloc = host_staging_alloc,
    .staging_free = host_staging_free,
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

/* ---- the registry of back ends besides the CPU one ---- */

#ifdef MQ_HAVE_OPENCL
extern const mq_backend_reg mq_opencl_reg;
static const mq_backend_reg *const regs[] = {&mq_opencl_reg};
#else
static const mq_backend_reg *const regs[] = {NULL};
#endif
#define N_REGS (sizeof regs / sizeof *regs)

size_t mq_backend_reg_count(void)
{
    return regs[0] ? N_REGS : 0;
}

mq_status mq_backend_open_spec(const char *spec, size_t max_alloc_override, mq_backend **out)
{
    if (strcmp(spec, "host") == 0) return mq_backend_open_host(out);
    bool is_auto = strcmp(spec, "auto") == 0;
    mq_status st = MQ_OK;
    for (size_t i = 0; i < mq_backend_reg_count(); i++) {
        bool none = false;
        st = regs[i]->open(spec, max_alloc_override, &none, out);
        if (st == MQ_OK || !is_auto || !none) return st;
    }
    if (!is_auto)
        return mq_set_error(MQ_STATUS_E_DEVICE,
                            "device '%s': this libmonoquant was built without a device back end "
                            "(MQ_OPENCL=OFF); only the host device is available",
                            spec);
    /* auto without a GPU or accelerator: the host path (the report says so). */
    mq_clear_error(); /* no device is no failure for auto */
    return mq_backend_open_host(out);
}

mq_status mq_device_list_get(mq_device_list *out)
{
    mq_clear_error();
    if (!out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_device_list_get: NULL out");
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < mq_backend_reg_count(); i++)
        if (regs[i]->list) return regs[i]->list(out);
    return MQ_OK;
}

void mq_device_list_free(mq_device_list *l)
{
    if (!l) return;
    free(l->platforms);
    free(l->devices);
    memset(l, 0, sizeof *l);
}

void mq_backend_free(mq_backend *b)
{
    if (b && !b->borrowed) b->ops->free(b);
}
