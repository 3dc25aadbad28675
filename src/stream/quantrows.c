/* Whole rows of one weight quantized as its layout says (see quantrows.h). */
#include "quantrows.h"

#include "error.h"
#include "pool.h"

#include <stdint.h>
#include <stdlib.h>

/* Values below which the weighted search of groups runs on the calling
 * thread alone (as the observer's own scan). */
#define WEIGHTED_PARALLEL_MIN 65536

/* The band's first group in the whole tensor, and its number of scales. */
static void band_groups(const mq_qlayout *l, size_t first, size_t rows, size_t *g0, size_t *n)
{
    *g0 = l->block ? first / l->block * l->scale_cols : first;
    *n = l->block ? (rows + l->block - 1) / l->block * l->scale_cols : rows;
}

/* Packs the band's codes in place (int4 rows come back packed). */
static size_t pack_band(const mq_qlayout *l, void *codes, size_t first, size_t rows)
{
    uint64_t e0 = (uint64_t)first * l->cols;
    /* int4 and e2m1 rows come back packed; the other codes are packed here, in place. */
    return l->kind == MQ_QK_INT4 || l->kind == MQ_QK_MXFP4
               ? mq_qlayout_rows_bytes(l, rows)
               : mq_qlayout_pack_codes(l, codes, e0, rows * l->cols);
}

mq_status mq_quantize_band(mq_backend *be, const mq_qlayout *l, const void *src, mq_dtype dt,
                           size_t first, size_t rows, void *codes, void *scale, int8_t *zp,
                           size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err)
{
    size_t b = 0, g0;
    *code_bytes = *scales = 0;
    mq_status st = mq_be_quantize(be, mq_qlayout_desc(l), src, dt, rows, l->cols, codes, scale,
                                  l->block ? NULL : zp, &b, err);
    band_groups(l, first, rows, &g0, scales);
    *bad = g0 + b;
    if (st != MQ_OK) {
        *scales = 0;
        return st;
    }
    *code_bytes = pack_band(l, codes, first, rows);
    return MQ_OK;
}

static mq_status search_nomem(const mq_qlayout *l)
{
    return mq_set_error(MQ_STATUS_E_NOMEM,
                        "out of memory (the mse search's copy of a group of %zu values)",
                        l->block ? l->block * l->block : l->cols);
}

/* Groups of a row (l->group): each group is a row of the call, and its
 * importances start at its place in the weight's row, so the weighted search
 * runs one group at a time, the band's groups split over the CPU's threads,
 * each part with its own record of the tensor's improving steps (ORed after,
 * so the result does not depend on the split). */
typedef struct {
    const mq_qlayout *l;
    const mq_obs_mse *o;
    const float *imp;
    const unsigned char *src;
    mq_dtype dt;
    size_t first, rows, parts, steps;
    uint8_t *mask;
    bool *improved; /* parts x steps */
    size_t *bad;    /* per part: the first bad group, or SIZE_MAX */
    mq_status *st;  /* per part */
} weighted_job;

static void weighted_part(void *arg, unsigned part)
{
    weighted_job *j = arg;
    const mq_qlayout *l = j->l;
    size_t mb = mq_obs_mse_mask_bytes(j->o), es = mq_dtype_size(j->dt), b = 0;
    size_t r0 = j->rows * part / j->parts, r1 = j->rows * (part + 1) / j->parts;
    j->bad[part] = SIZE_MAX;
    j->st[part] = MQ_OK;
    for (size_t r = r0; r < r1; r++) {
        size_t g = j->first + r;
        mq_status st =
            mq_obs_mse_scan(mq_qlayout_desc(l), j->o, j->imp + g % l->scale_cols * l->group,
                            j->src + r * l->cols * es, j->dt, 1, l->cols, j->mask + g * mb,
                            j->improved + part * j->steps, &b);
        if (st != MQ_OK) {
            j->bad[part] = g;
            j->st[part] = st;
            return;
        }
    }
}

static mq_status scan_groups_weighted(const mq_qlayout *l, const mq_obs_mse *o, const float *imp,
                                      const void *src, mq_dtype dt, size_t first, size_t rows,
                                      uint8_t *mask, bool *improved, size_t *bad)
{
    weighted_job j = {.l = l,
                      .o = o,
                      .imp = imp,
                      .src = src,
                      .dt = dt,
                      .first = first,
                      .rows = rows,
                      .steps = mq_obs_mse_steps(o),
                      .mask = mask};
    mq_pool *pool = NULL;
    mq_status st = MQ_OK;
    if ((uint64_t)rows * l->cols >= WEIGHTED_PARALLEL_MIN) pool = mq_pool_new(mq_cpu_count(64));
    j.parts = mq_pool_threads(pool);
    if (j.parts > rows) j.parts = rows ? rows : 1;
    j.improved = calloc(j.parts * j.steps + 1, sizeof *j.improved);
    j.bad = calloc(j.parts, sizeof *j.bad);
    j.st = calloc(j.parts, sizeof *j.st);
    if (!j.improved || !j.bad || !j.st) {
        st = MQ_STATUS_E_NOMEM;
        goto done;
    }
    mq_pool_run(pool, weighted_part, &j, (unsigned)j.parts);
    for (size_t p = 0; p < j.parts; p++) {
        if (j.st[p] != MQ_OK) {
            *bad = j.bad[p]; /* parts in group order: the first bad group */
            st = j.st[p];
            goto done;
        }
        for (size_t i = 0; i < j.steps; i++)
            if (j.improved[p * j.steps + i]) improved[i] = true;
    }
done:
    mq_pool_free(pool);
    free(j.improved);
    free(j.bad);
    free(j.st);
    return st;
}

mq_status mq_scan_band_mse(const mq_qlayout *l, const mq_obs_mse *o, const float *imp,
                           const void *src, mq_dtype dt, size_t first, size_t rows, uint8_t *mask,
                           bool *improved, size_t *bad)
{
    size_t b = 0, g0, n;
    mq_status st;
    band_groups(l, first, rows, &g0, &n);
    if (imp && l->group) {
        st = scan_groups_weighted(l, o, imp, src, dt, first, rows, mask, improved, bad);
        return st == MQ_STATUS_E_NOMEM ? search_nomem(l) : st;
    }
    st = mq_obs_mse_scan(mq_qlayout_desc(l), o, imp, src, dt, rows, l->cols,
                         mask + g0 * mq_obs_mse_mask_bytes(o), improved, &b);
    *bad = g0 + b;
    return st == MQ_STATUS_E_NOMEM ? search_nomem(l) : st;
}

mq_status mq_quantize_band_mse(const mq_qlayout *l, const mq_obs_mse *o, size_t limit,
                               const uint8_t *mask, const void *src, mq_dtype dt, size_t first,
                               size_t rows, void *codes, void *scale, int8_t *zp,
                               size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err)
{
    size_t b = 0, g0;
    mq_qdesc d = mq_qlayout_desc(l);
    *code_bytes = *scales = 0;
    band_groups(l, first, rows, &g0, scales);
    int8_t *z = l->block ? NULL : zp;
    /* The codes of a range do not depend on the weights: no importances. */
    mq_status st = mq_obs_mse_quantize(d, o, NULL, limit, mask + g0 * mq_obs_mse_mask_bytes(o), src,
                                       dt, rows, l->cols, codes, scale, z, &b);
    *bad = g0 + b;
    if (st != MQ_OK) {
        *scales = 0;
        return st == MQ_STATUS_E_NOMEM ? search_nomem(l) : st;
    }
    if (err) mq_ref_error_stats(d, src, dt, rows, l->cols, codes, scale, dt, z, err);
    *code_bytes = pack_band(l, codes, first, rows);
    return MQ_OK;
}

mq_status mq_quantize_whole(mq_backend *be, const mq_qlayout *l, const mq_scheme *sc,
                            const float *imp, const void *src, mq_dtype dt, void *codes,
                            void *scale, int8_t *zp, size_t *bad, mq_err_acc *err)
{
    size_t code_bytes, scales;
    if (sc->observer != MQ_OBSERVER_MSE)
        return mq_quantize_band(be, l, src, dt, 0, l->rows, codes, scale, zp, &code_bytes, &scales,
                                bad, err);
    size_t groups = mq_qdesc_scales(mq_qlayout_desc(l), l->rows, l->cols);
    size_t steps = mq_obs_mse_steps(&sc->mse);
    uint8_t *mask = malloc(groups * mq_obs_mse_mask_bytes(&sc->mse) + 1);
    bool *improved = calloc(steps + 1, sizeof *improved);
    mq_status st;
    if (!mask || !improved) {
        st =
            mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (the mse search of %zu groups)", groups);
        goto done;
    }
    st = mq_scan_band_mse(l, &sc->mse, imp, src, dt, 0, l->rows, mask, improved, bad);
    if (st == MQ_OK)
        st = mq_quantize_band_mse(l, &sc->mse, mq_obs_mse_limit(&sc->mse, improved), mask, src, dt,
                                  0, l->rows, codes, scale, zp, &code_bytes, &scales, bad, err);
done:
    free(mask);
    free(improved);
    return st;
}
