/* Whole rows of one weight quantized as its layout says (see quantrows.h). */
#include "quantrows.h"

mq_status mq_quantize_band(mq_backend *be, const mq_qlayout *l, const void *src, mq_dtype dt,
                           size_t first, size_t rows, void *codes, void *scale, int8_t *zp,
                           size_t *code_bytes, size_t *scales, size_t *bad, mq_err_acc *err)
{
    size_t b = 0;
    *code_bytes = *scales = 0;
    mq_status st = mq_be_quantize(be, mq_qlayout_desc(l), src, dt, rows, l->cols, codes, scale,
                                  l->block ? NULL : zp, &b, err);
    if (l->block) {
        /* Bands of block rows: a row of scales per band. */
        *bad = first / l->block * l->scale_cols + b;
        *scales = rows / l->block * l->scale_cols;
    } else {
        *bad = first + b;
        *scales = rows;
    }
    if (st != MQ_OK) return st;
    /* int4 and e2m1 rows come back packed; the other codes are packed here, in place. */
    uint64_t e0 = (uint64_t)first * l->cols;
    *code_bytes = l->kind == MQ_QK_INT4 || l->kind == MQ_QK_MXFP4
                      ? mq_qlayout_rows_bytes(l, rows)
                      : mq_qlayout_pack_codes(l, codes, e0, rows * l->cols);
    return MQ_OK;
}
