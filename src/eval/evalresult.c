/* The result of mq_eval_files: per-layer output errors, worst first, their
 * summary, the device that ran the GEMMs, and the JSON report. */
#include "evalresult.h"

#include "error.h"
#include "outfile.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

mq_status mq_eval_result_new(const char *original, const char *quantized,
                             const mq_eval_options *opt, mq_eval_result **out)
{
    mq_eval_result *r = calloc(1, sizeof *r);
    if (!r) return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
    r->original = dup_or_null(original);
    r->quantized = dup_or_null(quantized);
    r->inputs = dup_or_null(opt->inputs);
    r->tokens = opt->tokens || opt->inputs ? opt->tokens : MQ_EVAL_DEFAULT_TOKENS;
    r->seed = opt->seed;
    if (!r->original || !r->quantized || (opt->inputs && !r->inputs)) {
        mq_eval_result_free(r);
        return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
    }
    *out = r;
    return MQ_OK;
}

mq_status mq_eval_result_add(mq_eval_result *r, const mq_eval_layer *l)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        mq_eval_layer *n = realloc(r->layers, cap * sizeof *n);
        if (!n) return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
        r->layers = n;
        r->cap = cap;
    }
    mq_eval_layer *dst = &r->layers[r->count];
    *dst = *l;
    if (!(dst->name = strdup(l->name)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
    r->count++;
    return MQ_OK;
}

static int cmp_layer(const void *pa, const void *pb)
{
    const mq_eval_layer *a = pa, *b = pb;
    bool ua = a->sqnr_undefined != NULL, ub = b->sqnr_undefined != NULL;
    if (ua != ub) return ua ? 1 : -1; /* no verdict: after every layer that has one */
    if (ua) return strcmp(a->name, b->name);
    bool na = isnan(a->sqnr_db), nb = isnan(b->sqnr_db);
    if (na != nb) return na ? -1 : 1; /* NaN: something is badly wrong; show it first */
    if (!na && a->sqnr_db != b->sqnr_db) return a->sqnr_db < b->sqnr_db ? -1 : 1;
    return strcmp(a->name, b->name);
}

void mq_eval_result_sort(mq_eval_result *r)
{
    if (r->count > 1) qsort(r->layers, r->count, sizeof *r->layers, cmp_layer);
}

size_t mq_eval_result_count(const mq_eval_result *r)
{
    return r ? r->count : 0;
}

const mq_eval_layer *mq_eval_result_layer(const mq_eval_result *r, size_t i)
{
    return r && i < r->count ? &r->layers[i] : NULL;
}

const mq_eval_layer *mq_eval_result_worst(const mq_eval_result *r)
{
    return mq_eval_result_layer(r, 0);
}

double mq_eval_result_mean_sqnr_db(const mq_eval_result *r)
{
    double sum = 0.0;
    size_t n = 0, undefined = 0;
    for (size_t i = 0; r && i < r->count; i++) {
        if (r->layers[i].sqnr_undefined) {
            undefined++;
            continue;
        }
        /* A NaN layer is a failure: it must not vanish from the mean. */
        if (isnan(r->layers[i].sqnr_db)) return NAN;
        if (!isfinite(r->layers[i].sqnr_db)) continue;
        sum += r->layers[i].sqnr_db;
        n++;
    }
    if (n) return sum / (double)n;
    return undefined && undefined == (r ? r->count : 0) ? NAN : INFINITY;
}

const char *mq_eval_result_backend(const mq_eval_result *r)
{
    return r ? r->backend : "";
}

const char *mq_eval_result_platform(const mq_eval_result *r)
{
    return r ? r->platform : "";
}

const char *mq_eval_result_device(const mq_eval_result *r)
{
    return r ? r->device : "";
}

void mq_eval_result_free(mq_eval_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->count; i++)
        free((char *)r->layers[i].name);
    free(r->layers);
    free(r->original);
    free(r->quantized);
    free(r->inputs);
    free(r);
}

/* JSON has no infinity: an exact layer's SQNR is null. */
static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *layer_json(const mq_eval_layer *l)
{
    json_t *shape = json_array();
    for (int k = 0; shape && k < l->rank; k++)
        json_array_append_new(shape, json_integer(l->shape[k]));
    return json_pack("{s:o, s:o, s:I, s:o, s:o, s:o, s:o}", "name", mq_json_str(l->name), "shape",
                     shape, "tokens", (json_int_t)l->tokens, "sqnr_db", real_or_null(l->sqnr_db),
                     "sqnr_undefined",
                     l->sqnr_undefined ? mq_json_str(l->sqnr_undefined) : json_null(), "rel_error",
                     real_or_null(l->rel_error), "max_abs_error", real_or_null(l->max_abs_error));
}

static json_t *result_json(const mq_eval_result *r)
{
    json_t *layers = json_array();
    double max_rel = 0.0;
    size_t undefined = 0;
    for (size_t i = 0; layers && i < r->count; i++) {
        json_array_append_new(layers, layer_json(&r->layers[i]));
        if (r->layers[i].sqnr_undefined)
            undefined++;
        else if (r->layers[i].rel_error > max_rel || isnan(r->layers[i].rel_error))
            max_rel = r->layers[i].rel_error;
    }
    const mq_eval_layer *w = mq_eval_result_worst(r);
    /* Sorted last, an undefined layer is the worst only when all are. */
    bool none_defined = r->count && undefined == r->count;
    json_t *summary = json_pack(
        "{s:I, s:o, s:o, s:I, s:o, s:o, s:o}", "layers", (json_int_t)r->count, "mean_sqnr_db",
        real_or_null(mq_eval_result_mean_sqnr_db(r)), "mean_sqnr_undefined",
        none_defined ? mq_json_str(w->sqnr_undefined) : json_null(), "undefined_layers",
        (json_int_t)undefined, "worst_layer", w ? mq_json_str(w->name) : json_null(),
        "worst_sqnr_db", w ? real_or_null(w->sqnr_db) : json_null(), "max_rel_error",
        none_defined ? json_null() : real_or_null(max_rel));
    json_t *dev = json_pack("{s:o, s:o, s:o}", "backend", mq_json_str(r->backend), "platform",
                            mq_json_str(r->platform), "name", mq_json_str(r->device));
    return json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o}", "original",
                     mq_json_str(r->original), "quantized", mq_json_str(r->quantized), "tokens",
                     r->tokens ? json_integer((json_int_t)r->tokens) : json_null(), "seed",
                     (json_int_t)r->seed, "inputs",
                     r->inputs ? mq_json_str(r->inputs) : json_null(), "device", dev, "layers",
                     layers, "summary", summary);
}

mq_status mq_eval_write_json(const mq_eval_result *r, const char *path)
{
    mq_clear_error();
    mq_status st;
    if (!r || !path) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "evaluation: NULL argument");
    json_t *root = result_json(r);
    if (!root)
        return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation report '%s': out of memory", path);
    st = mq_outfile_write_json(path, root, JSON_INDENT(2) | JSON_REAL_PRECISION(10),
                               "evaluation report");
    json_decref(root);
    return st;
}
