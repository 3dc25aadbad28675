/* Whole rows of one weight quantized as its layout says (see quantrows.h). */
#include "quantrows.h"

#include "error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    return l->kind == MQ_QK_INT4 || mq_qkind_is_fp4(l->kind)
               ? mq_qlayout_rows_bytes(l, rows)
               : mq_qlayout_pack_codes(l, codes, e0, rows * l->cols);
}

/* A band's quantize call done: where its scales go, its bad group in the
 * whole tensor, its codes packed. */
static mq_status band_done(const mq_qlayout *l, mq_status st, size_t b, size_t first, size_t rows,
                           void *codes, size_t *code_bytes, size_t *scales, size_t *bad)
{
    size_t g0;
    *code_bytes = 0;
    band_groups(l, first, rows, &g0, scales);
    *bad = g0 + b;
    if (st != MQ_OK) {
        *scales = 0;
        return st;
    }
    *code_bytes = pack_band(l, codes, first, rows);
    return MQ_OK;
}

mq_status mq_quantize_band(mq_backend *be, const mq_qlayout *l, const void *src, mq_dtype dt,
                           size_t first, size_t rows, void *codes, void *scale, int8_t *zp,
                           size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err)
{
    size_t b = 0;
    mq_status st = mq_be_quantize(be, mq_qlayout_desc(l), src, dt, rows, l->cols, codes, scale,
                                  l->block ? NULL : zp, &b, err);
    return band_done(l, st, b, first, rows, codes, code_bytes, scales, bad);
}

mq_status mq_quantize_band_source(mq_backend *be, const mq_qlayout *l, mq_srcdesc sd,
                                  const void *codes, size_t src_cols, const void *src_scale,
                                  void *scratch, size_t first, size_t rows, void *q, void *scale,
                                  int8_t *zp, size_t *code_bytes, size_t *scales, size_t *bad,
                                  mq_err_acc *err)
{
    size_t b = 0;
    mq_status st = be->ops->quantize_source(
        be, mq_qlayout_desc(l), sd, codes, (uint64_t)first * l->cols, src_cols, src_scale, rows,
        l->cols, q, scale, l->block ? NULL : zp, &b, err, scratch);
    return band_done(l, st, b, first, rows, q, code_bytes, scales, bad);
}

static mq_status search_nomem(const mq_qlayout *l)
{
    return mq_set_error(MQ_STATUS_E_NOMEM,
                        "out of memory (the mse search's copy of a group of %zu values)",
                        l->block ? l->block * l->block : l->cols);
}

/* Groups of a row (l->group): each group is a row of the call, and its
 * importances start at its place in the weight's row. The back end's scan
 * weighs every row of a call alike, so the band's groups go to it in
 * classes, one per place in the row (every scale_cols-th group), each class
 * gathered into one contiguous call with its importances, its records
 * scattered back to the groups' places. Records and improving steps are
 * those of a call per group: the scan's records of a group do not depend on
 * the others in its call, and improved[] is only ever ORed. */
static mq_status scan_groups_weighted(mq_backend *be, const mq_qlayout *l, const mq_obs_mse *o,
                                      const float *imp, const void *src, mq_dtype dt,
                                      size_t first, size_t rows, uint8_t *mask, bool *improved,
                                      size_t *bad)
{
    const size_t S = l->scale_cols, es = mq_dtype_size(dt), rb = l->cols * es;
    const size_t mb = mq_obs_mse_mask_bytes(o), most = (rows + S - 1) / S;
    const unsigned char *in = src;
    unsigned char *buf = malloc(most * rb + 1);
    uint8_t *m = malloc(most * mb + 1);
    mq_status st = MQ_OK;
    size_t first_bad = SIZE_MAX;
    mq_status bad_st = MQ_OK;
    if (!buf || !m) {
        st = MQ_STATUS_E_NOMEM;
        goto done;
    }
    for (size_t k = 0; k < S && k < rows; k++) {
        /* the band's groups at place (first + r) % S == k */
        size_t r0 = (k + S - first % S) % S, n = 0;
        if (r0 >= rows) continue;
        for (size_t r = r0; r < rows; r += S) memcpy(buf + n++ * rb, in + r * rb, rb);
        size_t b = 0;
        mq_status cs = mq_be_mse_scan(be, mq_qlayout_desc(l), o, imp + k * l->group, buf, dt, n,
                                      l->cols, m, improved, &b);
        if (cs != MQ_OK) {
            size_t g = first + r0 + b * S;
            if (cs == MQ_STATUS_E_NOMEM) {
                st = cs;
                goto done;
            }
            if (g < first_bad) {
                first_bad = g;
                bad_st = cs;
            }
            continue;
        }
        for (size_t i = 0; i < n; i++) memcpy(mask + (first + r0 + i * S) * mb, m + i * mb, mb);
    }
    if (bad_st != MQ_OK) {
        *bad = first_bad;
        st = bad_st;
    }
done:
    free(buf);
    free(m);
    return st;
}

mq_status mq_scan_band_mse(mq_backend *be, const mq_qlayout *l, const mq_obs_mse *o,
                           const float *imp, const void *src, mq_dtype dt, size_t first,
                           size_t rows, uint8_t *mask, bool *improved, size_t *bad)
{
    size_t b = 0, g0, n;
    mq_status st;
    band_groups(l, first, rows, &g0, &n);
    if (imp && l->group) {
        st = scan_groups_weighted(be, l, o, imp, src, dt, first, rows, mask, improved, bad);
        return st == MQ_STATUS_E_NOMEM ? search_nomem(l) : st;
    }
    st = mq_be_mse_scan(be, mq_qlayout_desc(l), o, imp, src, dt, rows, l->cols,
                        mask + g0 * mq_obs_mse_mask_bytes(o), improved, &b);
    *bad = g0 + b;
    return st == MQ_STATUS_E_NOMEM ? search_nomem(l) : st;
}

mq_status mq_quantize_band_mse(mq_backend *be, const mq_qlayout *l, const mq_obs_mse *o,
                               size_t limit, const uint8_t *mask, const void *src, mq_dtype dt,
                               size_t first, size_t rows, void *codes, void *scale, int8_t *zp,
                               size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err)
{
    size_t b = 0, g0;
    mq_qdesc d = mq_qlayout_desc(l);
    *code_bytes = *scales = 0;
    band_groups(l, first, rows, &g0, scales);
    int8_t *z = l->block ? NULL : zp;
    /* The codes of a range do not depend on the weights: no importances. */
    mq_status st = mq_be_mse_quantize(be, d, o, NULL, limit, mask + g0 * mq_obs_mse_mask_bytes(o),
                                      src, dt, rows, l->cols, codes, scale, z, &b, err);
    *bad = g0 + b;
    if (st != MQ_OK) {
        *scales = 0;
        return st == MQ_STATUS_E_NOMEM ? search_nomem(l) : st;
    }
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
    st = mq_scan_band_mse(be, l, &sc->mse, imp, src, dt, 0, l->rows, mask, improved, bad);
    if (st == MQ_OK)
        st = mq_quantize_band_mse(be, l, &sc->mse, mq_obs_mse_limit(&sc->mse, improved), mask, src,
                                  dt, 0, l->rows, codes, scale, zp, &code_bytes, &scales, bad, err);
done:
    free(mask);
    free(improved);
    return st;
}
