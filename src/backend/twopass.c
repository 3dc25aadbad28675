/* The one path for a group larger than a back end takes in one call (a row
 * or a block beyond one device buffer): its statistics through the back
 * end's reduce in pieces, its parameters on the host, then its codes through
 * quantize_values in pieces. The steps are public (mq_twopass_*): the
 * streaming driver feeds them chunk by chunk for a row larger than its slots
 * (streamexec.c), mq_be_quantize_two_pass below feeds them rows in memory. */
#include "backend.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

/* Values per piece when int4 codes are packed on the host: whole words. */
#define TWOPASS_PACK_PIECE ((size_t)1 << 20)

void mq_twopass_begin(mq_twopass *t, mq_qdesc d, mq_dtype dt)
{
    t->d = d;
    t->dt = dt;
    mq_ref_stats_init(&t->stats);
    t->scale = 0.0f;
    t->zp = 0;
}

mq_status mq_twopass_reduce(mq_backend *b, mq_twopass *t, const void *src, size_t n)
{
    return b->ops->reduce(b, src, t->dt, n, &t->stats);
}

mq_status mq_twopass_params(mq_twopass *t, size_t g, size_t *bad)
{
    if (t->stats.nonfinite) {
        if (bad) *bad = g;
        return MQ_STATUS_E_DATA;
    }
    mq_ref_params(t->d, &t->stats, t->dt, &t->scale, &t->zp);
    return MQ_OK;
}

mq_status mq_twopass_codes(mq_backend *b, const mq_twopass *t, const void *src, size_t n,
                           void *codes, mq_err_acc *err)
{
    return b->ops->quantize_values(b, t->d, src, t->dt, n, t->scale, t->zp, codes, err);
}

/* The codes of the n values of one row segment (columns c0..) into the stored
 * row `row`: one byte each in place, or int4 packed from pieces. */
static mq_status row_codes(mq_backend *b, const mq_twopass *t, const unsigned char *src, size_t n,
                           unsigned char *row, size_t c0, uint8_t *tmp, mq_err_acc *err)
{
    if (t->d.kind != MQ_QK_INT4) return mq_twopass_codes(b, t, src, n, row + c0, err);
    size_t es = mq_dtype_size(t->dt);
    for (size_t i = 0; i < n; i += TWOPASS_PACK_PIECE) {
        size_t m = n - i < TWOPASS_PACK_PIECE ? n - i : TWOPASS_PACK_PIECE;
        mq_status st = mq_twopass_codes(b, t, src + i * es, m, tmp, err);
        if (st != MQ_OK) return st;
        /* c0 + i is even (int4 comes in rows); the last piece pads its word. */
        mq_ref_pack4((const int8_t *)tmp, m, row + (c0 + i) / 2);
    }
    return MQ_OK;
}

mq_status mq_be_quantize_two_pass(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt,
                                  size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                                  size_t *bad, mq_err_acc *err)
{
    const unsigned char *in = src;
    unsigned char *out = q;
    size_t es = mq_dtype_size(dt), qb = mq_qkind_row_bytes(d.kind, cols);
    size_t groups = mq_qdesc_scales(d, rows, cols);
    uint8_t *tmp = NULL;
    mq_status st = MQ_OK;
    if (d.kind == MQ_QK_INT4 &&
        !(tmp = malloc(cols < TWOPASS_PACK_PIECE ? (cols ? cols : 1) : TWOPASS_PACK_PIECE)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "quantize: out of memory");
    for (size_t g = 0; g < groups && st == MQ_OK; g++) {
        size_t r0, r1, c0, nc;
        mq_qdesc_group(d, rows, cols, g, &r0, &r1, &c0, &nc);
        mq_twopass t;
        mq_twopass_begin(&t, d, dt);
        for (size_t r = r0; r < r1 && st == MQ_OK; r++)
            st = mq_twopass_reduce(b, &t, in + (r * cols + c0) * es, nc);
        if (st == MQ_OK) st = mq_twopass_params(&t, g, bad);
        if (st != MQ_OK) break;
        mq_store_scale(scale, dt, g, t.scale);
        if (zp && mq_qdesc_has_zp(d)) zp[g] = t.zp;
        for (size_t r = r0; r < r1 && st == MQ_OK; r++)
            st = row_codes(b, &t, in + (r * cols + c0) * es, nc, out + r * qb, c0, tmp, err);
    }
    free(tmp);
    return st;
}
