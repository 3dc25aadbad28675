/* mq_dequantize: turns a compressed-tensors INT8 model back into float
 * weights of the scale's dtype, for round-trip checks and evaluation. */
#include "dtype.h"
#include "error.h"
#include "model.h"
#include "qparams.h"
#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const mq_tensor *companion(const mq_model *m, const char *name, const char *suffix)
{
    char buf[4096];
    if ((size_t)snprintf(buf, sizeof buf, "%s%s", name, suffix) >= sizeof buf) return NULL;
    return mq_model_find(m, buf);
}

/* A companion of a quantized weight: dropped from the output. */
static bool is_companion(const mq_model *m, const mq_tensor *t)
{
    const char *suffixes[2] = {"_scale", "_zero_point"};
    for (int k = 0; k < 2; k++) {
        if (!has_suffix(t->name, suffixes[k])) continue;
        char base[4096];
        size_t n = strlen(t->name) - strlen(suffixes[k]);
        if (n >= sizeof base) continue;
        memcpy(base, t->name, n);
        base[n] = '\0';
        const mq_tensor *w = mq_model_find(m, base);
        if (w && w->dtype == MQ_DTYPE_I8 && companion(m, base, "_scale")) return true;
    }
    return false;
}

static mq_status dequantize_one(const mq_model *in, const mq_tensor *t, const mq_tensor *s,
                                mq_model *out)
{
    const mq_tensor *z = companion(in, t->name, "_zero_point");
    uint64_t numel;
    size_t rows;
    /* The file's path is added by the caller. */
    mq_status st = mq_qparams_check(NULL, t, s, z, &rows);
    if (st != MQ_OK) return st;
    mq_shape_numel(t->rank, t->shape, &numel);
    size_t nbytes = (size_t)numel * mq_dtype_size(s->dtype);
    mq_blob *b = mq_blob_new_heap(nbytes);
    if (!b) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", t->name);
    mq_ref_dequantize_rows(t->data, rows, (size_t)(numel / rows), s->data, z ? z->data : NULL,
                           s->dtype, mq_blob_data(b));
    st = mq_model_append(out, t->name, s->dtype, t->rank, t->shape, mq_blob_data(b), nbytes, b);
    mq_blob_unref(b);
    return st;
}

mq_status mq_dequantize(const mq_model *in, mq_model **out)
{
    mq_model *m = NULL;
    mq_status st;
    if (!in || !out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "dequantize: NULL argument");
    *out = NULL;
    if ((st = mq_model_new(&m)) != MQ_OK) return st;
    for (size_t i = 0; i < in->meta_count && st == MQ_OK; i++) {
        if (strcmp(in->meta_keys[i], "quantized_by") == 0 ||
            strcmp(in->meta_keys[i], "quantization_scheme") == 0)
            continue;
        st = mq_model_set_metadata(m, in->meta_keys[i], in->meta_values[i]);
    }
    for (size_t i = 0; i < in->count && st == MQ_OK; i++) {
        const mq_tensor *t = &in->tensors[i];
        const mq_tensor *s = t->dtype == MQ_DTYPE_I8 ? companion(in, t->name, "_scale") : NULL;
        if (s)
            st = dequantize_one(in, t, s, m);
        else if (!is_companion(in, t))
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
