/* mq_eval_files: pairs every quantized layer of QUANTIZED with its float
 * original, feeds both the same inputs X and measures how far X * Ŵ^T drifts
 * from X * W^T. Layers are read one at a time from the mapped files, in row
 * chunks, so memory stays bounded whatever the model size. */
#include "eval.h"

#include "devset.h"
#include "dtype.h"
#include "error.h"
#include "hfmeta.h"
#include "hfroot.h"
#include "infile.h"
#include "layout.h"
#include "path.h"
#include "reference.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Weight rows (as floats) handled per GEMM call: bounds host and device memory. */
#define EVAL_CHUNK_BYTES ((size_t)64 << 20)

/* A safetensors file, or a model directory with one file or indexed shards. */
typedef struct {
    const char *path;
    json_t *weight_map; /* indexed directory: tensor name -> shard name */
    char **shards;      /* paths of the files, sorted */
    size_t n_shards;
    mq_model *open; /* the shard last searched, kept for the next layer */
    size_t open_i;
} source;

static void source_free(source *s)
{
    for (size_t i = 0; i < s->n_shards; i++)
        free(s->shards[i]);
    free(s->shards);
    mq_model_free(s->open);
    json_decref(s->weight_map);
    memset(s, 0, sizeof *s);
}

static mq_status add_shard(source *s, char *path)
{
    char **n = path ? realloc(s->shards, (s->n_shards + 1) * sizeof *n) : NULL;
    if (!n) {
        free(path);
        return mq_set_error(MQ_STATUS_E_NOMEM, "'%s': out of memory", s->path);
    }
    s->shards = n;
    s->shards[s->n_shards++] = path;
    return MQ_OK;
}

/* A file, or a model directory found and checked as quantize finds one
 * (src/hf: its index, with every shard it names, or model.safetensors).
 * Reading only, so links are followed wherever they lead. */
static mq_status source_open(const char *path, source *s)
{
    struct stat sb;
    mq_hf_root root;
    mq_hf_shards shards = {0};
    json_t *index = NULL;
    memset(s, 0, sizeof *s);
    s->path = path;
    s->open_i = SIZE_MAX;
    if (stat(path, &sb) != 0)
        return mq_set_error(MQ_STATUS_E_IO, "'%s': %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return add_shard(s, strdup(path));
    mq_status st = mq_hf_root_init(&root, path, true);
    if (st != MQ_OK) return st;
    char *index_path = mq_path_join(path, MQ_HF_INDEX);
    char *single = mq_path_join(path, MQ_HF_SINGLE);
    if (!index_path || !single) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "'%s': out of memory", path);
    } else if (stat(index_path, &sb) == 0) {
        if ((st = mq_hf_index_load(&root, &index, &shards)) == MQ_OK)
            s->weight_map = json_incref(json_object_get(index, "weight_map"));
        for (size_t i = 0; i < shards.count && st == MQ_OK; i++)
            st = add_shard(s, mq_path_join(path, shards.names[i]));
    } else if (stat(single, &sb) == 0) {
        st = add_shard(s, single);
        single = NULL;
    } else {
        st = mq_set_error(MQ_STATUS_E_IO,
                          "'%s': a model directory needs " MQ_HF_SINGLE " or " MQ_HF_INDEX, path);
    }
    free(index_path);
    free(single);
    json_decref(index);
    mq_hf_shards_free(&shards);
    mq_hf_root_free(&root);
    return st;
}

/* The tensor `name` of the source, or *t = NULL when it has none. The shard
 * stays open (mapped) until another one is needed. */
static mq_status source_find(source *s, const char *name, const mq_tensor **t, const char **file)
{
    size_t i = 0;
    *t = NULL;
    if (s->weight_map) {
        const char *f = json_string_value(json_object_get(s->weight_map, name));
        if (!f) return MQ_OK;
        char *want = mq_path_join(s->path, f);
        if (!want) return mq_set_error(MQ_STATUS_E_NOMEM, "'%s': out of memory", s->path);
        for (i = 0; i < s->n_shards && strcmp(s->shards[i], want) != 0; i++) {
        }
        free(want);
        if (i == s->n_shards) return MQ_OK;
    }
    if (i != s->open_i) {
        mq_model_free(s->open);
        s->open = NULL;
        s->open_i = SIZE_MAX;
        mq_status st = mq_model_open(s->shards[i], &s->open);
        if (st != MQ_OK) return st;
        s->open_i = i;
    }
    *file = s->shards[i];
    *t = mq_model_find(s->open, name);
    return MQ_OK;
}

typedef struct {
    const mq_eval_options *opt;
    const char *orig_path, *quant_path;
    source orig;
    mq_model *inputs;
    mq_fwd *fwd;
    size_t chunk_bytes;
    size_t done, total;
    /* Buffers reused from layer to layer. */
    float *x, *w, *y, *yq, *scale;
    int8_t *zp;
    size_t x_cap, w_cap, y_cap, yq_cap, s_cap;
} eval_ctx;

static mq_status grow(float **p, size_t *cap, size_t n)
{
    if (n <= *cap) return MQ_OK;
    float *q = realloc(*p, n * sizeof *q);
    if (!q) return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
    *p = q;
    *cap = n;
    return MQ_OK;
}

/* n values of a float tensor (any alignment) as fp32. */
static void widen(const void *src, mq_dtype dt, size_t n, float *dst)
{
    const unsigned char *b = src;
    if (dt == MQ_DTYPE_F32) {
        memcpy(dst, src, n * sizeof *dst);
    } else if (dt == MQ_DTYPE_F64) {
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, b + 8 * i, sizeof d);
            dst[i] = (float)d;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, sizeof h);
            dst[i] = dt == MQ_DTYPE_F16 ? mq_f16_to_f32(h) : mq_bf16_to_f32(h);
        }
    }
}

static bool is_eval_float(mq_dtype d)
{
    return mq_dtype_is_quantizable(d) || d == MQ_DTYPE_F64;
}

/* X for a layer with `in` inputs: rows of the inputs file, or generated. */
static mq_status make_input(eval_ctx *c, const char *name, size_t in, size_t *tokens)
{
    size_t n = c->opt->tokens ? c->opt->tokens : MQ_EVAL_DEFAULT_TOKENS;
    const mq_tensor *src = NULL;
    if (c->inputs) {
        for (size_t i = 0; i < mq_model_count(c->inputs) && !src; i++) {
            const mq_tensor *t = mq_model_tensor(c->inputs, i);
            if (is_eval_float(t->dtype) && t->rank >= 1 && (uint64_t)t->shape[t->rank - 1] == in)
                src = t;
        }
        if (!src)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "inputs '%s': no float tensor with last dimension %zu, which "
                                "layer '%s' needs",
                                c->opt->inputs, in, name);
        size_t rows = in ? src->nbytes / mq_dtype_size(src->dtype) / in : 0;
        if (rows == 0)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "inputs '%s': tensor '%s' has no rows, so layer '%s' has no "
                                "outputs to compare (an SQNR of 0/0)",
                                c->opt->inputs, src->name, name);
        n = c->opt->tokens && c->opt->tokens < rows ? c->opt->tokens : rows;
    }
    if (in && n > SIZE_MAX / sizeof(float) / in)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "layer '%s': %zu tokens are too many", name,
                            n);
    mq_status st = grow(&c->x, &c->x_cap, n * in);
    if (st != MQ_OK) return st;
    if (src)
        widen(src->data, src->dtype, n * in, c->x);
    else
        mq_eval_normal(c->opt->seed, name, c->x, n * in);
    *tokens = n;
    return MQ_OK;
}

/* The original weight of quantized tensor t: same shape, a float dtype. */
static mq_status find_original(eval_ctx *c, const char *qfile, const mq_tensor *t,
                               const mq_tensor **o, const char **file)
{
    char a[160], b[160];
    mq_status st = source_find(&c->orig, t->name, o, file);
    if (st != MQ_OK) return st;
    if (!*o)
        return mq_set_error(MQ_STATUS_E_FORMAT, "layer '%s' of '%s' is missing from '%s'", t->name,
                            qfile, c->orig_path);
    if (!is_eval_float((*o)->dtype))
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "layer '%s': '%s' holds it as %s, not a float dtype, so it cannot be "
                            "the original of '%s' (are the arguments swapped?)",
                            t->name, *file, mq_dtype_name((*o)->dtype), qfile);
    bool same = (*o)->rank == t->rank;
    for (int k = 0; same && k < t->rank; k++)
        same = (*o)->shape[k] == t->shape[k];
    if (!same) {
        mq_shape_format((*o)->rank, (*o)->shape, a, sizeof a);
        mq_shape_format(t->rank, t->shape, b, sizeof b);
        return mq_set_error(MQ_STATUS_E_FORMAT, "layer '%s': shape %s in '%s' but %s in '%s'",
                            t->name, a, *file, b, qfile);
    }
    return MQ_OK;
}

/* Scales (and zero points) widened to one per output row. */
static mq_status load_params(eval_ctx *c, const mq_qlayer *ql, size_t out)
{
    mq_status st = grow(&c->scale, &c->s_cap, out);
    if (st != MQ_OK) return st;
    free(c->zp);
    c->zp = NULL;
    if (ql->zp && !(c->zp = malloc(out ? out : 1)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "evaluation: out of memory");
    for (size_t o = 0; o < out; o++) {
        size_t k = ql->n_scale == 1 ? 0 : o;
        c->scale[o] = mq_load_f32(ql->scale->data, ql->scale->dtype, k);
        if (ql->zp) c->zp[o] = ql->zp[k];
    }
    return MQ_OK;
}

typedef struct {
    double sy, se, max_abs;
} err_sums;

static void fold(err_sums *e, const float *y, const float *yq, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)yq[i], ad = fabs(d);
        e->sy += (double)y[i] * (double)y[i];
        e->se += d * d;
        if (!(ad <= e->max_abs)) e->max_abs = ad; /* keeps a NaN */
    }
}

/* Y and Ŷ row chunk by row chunk of the weight, folded into the error sums. */
static mq_status run_chunks(eval_ctx *c, const mq_tensor *o, const mq_tensor *t,
                            const mq_qlayer *ql, size_t out, size_t in, size_t tokens, err_sums *e)
{
    size_t wide = in > tokens ? in : tokens;
    size_t rpc = wide ? c->chunk_bytes / sizeof(float) / wide : out;
    if (rpc == 0) rpc = 1;
    if (rpc > out) rpc = out;
    bool direct = o->dtype == MQ_DTYPE_F32 && (uintptr_t)o->data % _Alignof(float) == 0;
    mq_status st;
    if ((!direct && (st = grow(&c->w, &c->w_cap, rpc * in)) != MQ_OK) ||
        (st = grow(&c->y, &c->y_cap, rpc * tokens)) != MQ_OK ||
        (st = grow(&c->yq, &c->yq_cap, rpc * tokens)) != MQ_OK)
        return st;
    size_t es = mq_dtype_size(o->dtype);
    for (size_t o0 = 0; o0 < out; o0 += rpc) {
        size_t nr = out - o0 < rpc ? out - o0 : rpc;
        const unsigned char *wsrc = (const unsigned char *)o->data + o0 * in * es;
        const float *w = (const float *)(const void *)wsrc;
        if (!direct) {
            widen(wsrc, o->dtype, nr * in, c->w);
            w = c->w;
        }
        if ((st = mq_fwd_linear(c->fwd, w, nr, c->y)) != MQ_OK) return st;
        if (ql && !mq_qlayer_is_simple(ql)) {
            /* Groups, blocks, int4 and FP8: the weight dequantized here. */
            if ((st = grow(&c->w, &c->w_cap, rpc * in)) != MQ_OK) return st;
            for (size_t r = 0; r < nr; r++)
                mq_qlayer_row_f32(ql, o0 + r, c->w + r * in);
            st = mq_fwd_linear(c->fwd, c->w, nr, c->yq);
        } else {
            st = mq_fwd_linear_q8(c->fwd, (const int8_t *)t->data + o0 * in, c->scale + o0,
                                  c->zp ? c->zp + o0 : NULL, nr, c->yq);
        }
        if (st != MQ_OK) return st;
        fold(e, c->y, c->yq, nr * tokens);
    }
    return MQ_OK;
}

static mq_status eval_layer(eval_ctx *c, const mq_model *qm, const char *qfile,
                            const mq_tensor *codes, mq_eval_result *res)
{
    mq_eval_layer layer, *l = &layer;
    const mq_tensor *o;
    const char *ofile = NULL;
    uint64_t numel = 0;
    size_t tokens = 0;
    err_sums e = {0, 0, 0};
    mq_qlayer ql;
    mq_status st = mq_qlayer_open(qm, codes, &ql);
    if (st != MQ_OK) {
        mq_error_prefix("'%s'", qfile);
        return st;
    }
    const mq_tensor *t = &ql.w;
    if ((st = find_original(c, qfile, t, &o, &ofile)) != MQ_OK) goto done;
    mq_shape_numel(t->rank, t->shape, &numel);
    size_t out = t->rank >= 1 ? (size_t)t->shape[0] : 1; /* Conv: [out, in * k...] */
    size_t in = out ? (size_t)numel / out : 0;
    if ((mq_qlayer_is_simple(&ql) && (st = load_params(c, &ql, out)) != MQ_OK) ||
        (st = make_input(c, t->name, in, &tokens)) != MQ_OK)
        goto done;
    if ((st = mq_fwd_set_input(c->fwd, c->x, tokens, in)) != MQ_OK ||
        (st = run_chunks(c, o, t, &ql, out, in, tokens, &e)) != MQ_OK) {
        mq_error_prefix("layer '%s'", t->name);
        goto done;
    }
    /* NaN would read as "no error" where infinity means exact: no verdict. */
    if (!isfinite(e.sy) || !isfinite(e.se)) {
        st = mq_set_error(MQ_STATUS_E_DATA,
                          "layer '%s': the outputs are not finite (NaN or Inf in the weight in "
                          "'%s' or '%s', or in the inputs), so no SQNR can be given",
                          t->name, ofile, qfile);
        goto done;
    }
    memset(l, 0, sizeof *l);
    l->name = t->name;
    l->rank = t->rank;
    memcpy(l->shape, t->shape, sizeof l->shape);
    l->tokens = tokens;
    if (e.sy == 0.0) {
        /* No signal: 0/0 when exact, and no scale for an error otherwise.
         * Neither is a verdict, least of all "infinitely good". */
        l->sqnr_db = NAN;
        l->rel_error = NAN;
        l->sqnr_undefined = "the original outputs are all zero (all-zero inputs or weight)";
    } else {
        l->sqnr_db = e.se == 0.0 ? INFINITY : 10.0 * log10(e.sy / e.se);
        l->rel_error = sqrt(e.se / e.sy);
    }
    l->max_abs_error = e.max_abs;
    st = mq_eval_result_add(res, l);
done:
    mq_qlayer_free(&ql);
    return st;
}

static void progress(eval_ctx *c, const char *note, const char *layer)
{
    if (!c->opt->progress) return;
    mq_eval_progress p = {note, layer, c->done, c->total};
    c->opt->progress(&p, c->opt->progress_user);
}

static void on_note(const char *note, void *user)
{
    progress(user, note, NULL);
}

/* Every quantized layer of one shard of QUANTIZED; count_only just counts them. */
static mq_status eval_shard(eval_ctx *c, const char *qfile, bool count_only, mq_eval_result *res)
{
    mq_model *qm = NULL;
    mq_status st = mq_model_open(qfile, &qm);
    for (size_t i = 0; st == MQ_OK && i < mq_model_count(qm); i++) {
        const mq_tensor *t = mq_model_tensor(qm, i);
        if (!mq_qlayer_is_codes(qm, t)) continue;
        if (count_only) {
            c->total++;
            continue;
        }
        progress(c, NULL, t->name);
        st = eval_layer(c, qm, qfile, t, res);
        c->done++;
    }
    mq_model_free(qm);
    return st;
}

void mq_eval_options_init(mq_eval_options *opt)
{
    memset(opt, 0, sizeof *opt);
}

static mq_status open_backend(const mq_eval_options *opt, mq_backend **be)
{
    const mq_device_sel sel = {.spec = opt->device,
                               .handle = opt->device_handle,
                               .max_alloc_override = opt->max_alloc_override};
    return mq_backend_open(&sel, be);
}

mq_status mq_eval_files(const char *original, const char *quantized, const mq_eval_options *opt,
                        mq_eval_result **out)
{
    mq_clear_error();
    mq_eval_options defaults;
    source quant;
    mq_backend *be = NULL;
    mq_eval_result *res = NULL;
    eval_ctx c;
    mq_status st;
    if (!original || !quantized || !out)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "evaluation: NULL argument");
    *out = NULL;
    if (!opt) {
        mq_eval_options_init(&defaults);
        opt = &defaults;
    }
    memset(&c, 0, sizeof c);
    memset(&quant, 0, sizeof quant);
    c.opt = opt;
    c.orig_path = original;
    c.quant_path = quantized;
    c.chunk_bytes = opt->max_alloc_override ? opt->max_alloc_override : EVAL_CHUNK_BYTES;
    if ((st = source_open(original, &c.orig)) != MQ_OK ||
        (st = source_open(quantized, &quant)) != MQ_OK ||
        (opt->inputs && (st = mq_model_open(opt->inputs, &c.inputs)) != MQ_OK))
        goto done;
    for (size_t i = 0; i < quant.n_shards && st == MQ_OK; i++)
        st = eval_shard(&c, quant.shards[i], true, NULL);
    if (st != MQ_OK) goto done;
    if (c.total == 0) {
        /* Quantized layers in ORIGINAL: the user swapped the two. */
        for (size_t i = 0; i < c.orig.n_shards && st == MQ_OK; i++)
            st = eval_shard(&c, c.orig.shards[i], true, NULL);
        st = mq_set_error(
            MQ_STATUS_E_FORMAT,
            "'%s': no quantized layers (an I8 tensor NAME with NAME_scale, or NAME_packed)%s",
            quantized, st == MQ_OK && c.total ? "; ORIGINAL has some: are the two swapped?" : "");
        goto done;
    }
    if ((st = mq_eval_result_new(original, quantized, opt, &res)) != MQ_OK) goto done;
    if ((st = open_backend(opt, &be)) != MQ_OK) goto done;
    snprintf(res->backend, sizeof res->backend, "%s", be->backend);
    snprintf(res->platform, sizeof res->platform, "%s", be->platform);
    snprintf(res->device, sizeof res->device, "%s", be->device);
    if ((st = mq_fwd_new(be, on_note, &c, &c.fwd)) != MQ_OK) goto done;
    for (size_t i = 0; i < quant.n_shards && st == MQ_OK; i++)
        st = eval_shard(&c, quant.shards[i], false, res);
    if (st == MQ_OK) progress(&c, NULL, NULL);
done:
    mq_fwd_free(c.fwd);
    mq_backend_free(be);
    free(c.x);
    free(c.w);
    free(c.y);
    free(c.yq);
    free(c.scale);
    free(c.zp);
    mq_model_free(c.inputs);
    source_free(&c.orig);
    source_free(&quant);
    if (st != MQ_OK) {
        mq_eval_result_free(res);
        return st;
    }
    mq_eval_result_sort(res);
    *out = res;
    return MQ_OK;
}
