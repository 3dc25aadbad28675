/* mq_dequantize: turns a compressed-tensors model (int8, int4, FP8) back into float
 * weights of the scale's dtype, for round-trip checks and evaluation. */
#include "dtype.h"
#include "error.h"
#include "foreign.h"
#include "layout.h"
#include "model.h"
#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mq_status dequantize_one(const mq_model *in, const mq_tensor *t, mq_model *out)
{
    mq_qlayer l;
    mq_status st = mq_qlayer_open(in, t, &l);
    if (st != MQ_OK) return st;
    uint64_t numel;
    mq_shape_numel(l.w.rank, l.w.shape, &numel);
    size_t rows = l.n_scale;
    mq_dtype vdt = mq_qlayer_value_dtype(&l);
    size_t nbytes = (size_t)numel * mq_dtype_size(vdt);
    mq_blob *b = mq_blob_new_heap(nbytes);
    if (!b) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", l.w.name);
        goto done;
    }
    if (mq_qlayer_is_simple(&l)) {
        mq_ref_dequantize_rows(l.w.data, rows, (size_t)(numel / rows), l.scale->data, l.zp,
                               l.scale->dtype, mq_blob_data(b));
    } else {
        /* Groups, blocks, int4, FP8 and MX: row by row in fp32, stored in
         * the value dtype. */
        size_t out_rows = (size_t)l.w.shape[0], cols = (size_t)(numel / out_rows);
        float *row = malloc(cols ? cols * sizeof *row : 1);
        if (!row) {
            mq_blob_unref(b);
            st = mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", l.w.name);
            goto done;
        }
        for (size_t r = 0; r < out_rows; r++) {
            mq_qlayer_row_f32(&l, r, row);
            for (size_t c = 0; c < cols; c++)
                mq_store_scale(mq_blob_data(b), vdt, r * cols + c, row[c]);
        }
        free(row);
    }
    st = mq_model_append(out, l.w.name, vdt, l.w.rank, l.w.shape, mq_blob_data(b), nbytes, b);
    mq_blob_unref(b);
done:
    mq_qlayer_free(&l);
    return st;
}

mq_status mq_dequantize(const mq_model *in, mq_model **out)
{
    mq_clear_error();
    mq_model *m = NULL;
    mq_status st;
    if (!in || !out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "dequantize: NULL argument");
    *out = NULL;
    /* A foreign layout's packed words would be copied as if they were weights. */
    if ((st = mq_check_no_foreign(in, false)) != MQ_OK || (st = mq_check_no_mxfp4(in)) != MQ_OK) {
        if (in->path) mq_error_prefix("%s", in->path);
        return st;
    }
    if ((st = mq_model_new(&m)) != MQ_OK) return st;
    for (size_t i = 0; i < in->meta_count && st == MQ_OK; i++) {
        if (strcmp(in->meta_keys[i], "quantized_by") == 0 ||
            strcmp(in->meta_keys[i], "quantization_scheme") == 0 ||
            strcmp(in->meta_keys[i], "quantization_format") == 0)
            continue;
        st = mq_model_set_metadata(m, in->meta_keys[i], in->meta_values[i]);
    }
    for (size_t i = 0; i < in->count && st == MQ_OK; i++) {
        const mq_tensor *t = &in->tensors[i];
        if (mq_qlayer_is_codes(in, t))
            st = dequantize_one(in, t, m);
        else if (!mq_qlayer_is_param(in, t))
            st = mq_model_append(m, t->name, t->dtype, t->rank, t->shape, t->data, t->nbytes,
                                 in->blobs[i]);
    }
    if (st != MQ_OK) {
        if (in->path) mq_error_prefix("%s", in->path);
        mq_model_free(m);
        return st;
    }
    *out = m;
    return MQ_OK;
}
