/* Checks of a quantized weight's scale and zero point (see qparams.h). */
#include "qparams.h"

#include "dtype.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

__attribute__((format(printf, 4, 5))) static mq_status bad(const char *file, const char *tensor,
                                                           const char *suffix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mq_set_error_va(MQ_STATUS_E_FORMAT, fmt, ap);
    va_end(ap);
    mq_error_prefix("%s%stensor '%s%s'", file ? file : "", file ? ": " : "", tensor, suffix);
    return MQ_STATUS_E_FORMAT;
}

static bool same_shape(const mq_tensor *a, const mq_tensor *b)
{
    if (a->rank != b->rank) return false;
    for (int k = 0; k < a->rank; k++)
        if (a->shape[k] != b->shape[k]) return false;
    return true;
}

mq_status mq_qparams_check(const char *file, const mq_tensor *w, const mq_tensor *s,
                           const mq_tensor *z, size_t *groups)
{
    char ws[160], ss[160];
    uint64_t ns = 0;
    mq_shape_numel(s->rank, s->shape, &ns);
    mq_shape_format(w->rank, w->shape, ws, sizeof ws);
    mq_shape_format(s->rank, s->shape, ss, sizeof ss);
    if (!mq_dtype_is_quantizable(s->dtype))
        return bad(file, w->name, "_scale", "dtype %s is not F32, F16 or BF16",
                   mq_dtype_name(s->dtype));
    int64_t out = w->rank >= 1 ? w->shape[0] : 1;
    bool per_channel = w->rank >= 1 && (uint64_t)out == ns && s->rank >= 1 && s->rank <= 2 &&
                       (s->rank == 1 || s->shape[1] == 1);
    if (ns == 0 || (ns != 1 && !per_channel))
        return bad(file, w->name, "_scale",
                   "shape %s fits neither one scale per output channel of the weight %s "
                   "([%lld, 1]) nor one in all",
                   ss, ws, (long long)out);
    for (uint64_t i = 0; i < ns; i++) {
        float v = mq_load_f32(s->data, s->dtype, (size_t)i);
        if (!isfinite(v) || !(v > 0.0f))
            return bad(file, w->name, "_scale",
                       "value %llu is %g; a scale must be finite and positive",
                       (unsigned long long)i, (double)v);
    }
    if (z && (z->dtype != MQ_DTYPE_I8 || !same_shape(z, s))) {
        char zs[160];
        mq_shape_format(z->rank, z->shape, zs, sizeof zs);
        return bad(file, w->name, "_zero_point",
                   "%s of shape %s, but a zero point is I8 of the scale's shape %s",
                   mq_dtype_name(z->dtype), zs, ss);
    }
    *groups = (size_t)ns;
    return MQ_OK;
}
