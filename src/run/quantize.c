/* mq_dynamic_quantize: plans every tensor, runs the chosen backend on the
 * ones to quantize or cast, and assembles the output model (compressed-tensors
 * layout), the skipped list and the per-tensor report. mq_quantize_file: the
 * same on disk, streamed with bounded memory (stream.c, hfdir.c). */
#include "imatrix.h"
#include "backend.h"
#include "devset.h"
#include "dtype.h"
#include "error.h"
#include "fused.h"
#include "hfdir.h"
#include "layout.h"
#include "model.h"
#include "outfile.h"
#include "plan.h"
#include "quantrows.h"
#include "reference.h"
#include "report.h"
#include "scheme.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Adds a tensor backed by a fresh heap blob of `nbytes`; returns its data. */
static void *append_new(mq_model *m, const char *name, mq_dtype dt, int rank, const int64_t *shape,
                        size_t nbytes, mq_status *st)
{
    mq_blob *b = mq_blob_new_heap(nbytes);
    if (!b) {
        *st =
            mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory (%zu bytes)", name, nbytes);
        return NULL;
    }
    void *data = mq_blob_data(b);
    *st = mq_model_append(m, name, dt, rank, shape, data, nbytes, b);
    mq_blob_unref(b);
    return *st == MQ_OK ? data : NULL;
}

static mq_status copy_tensor(mq_model *out, const mq_model *in, size_t i)
{
    const mq_tensor *t = &in->tensors[i];
    return mq_model_append(out, t->name, t->dtype, t->rank, t->shape, t->data, t->nbytes,
                           in->blobs[i]);
}

typedef struct {
    const mq_settings *set;
    mq_backend *be;
    mq_model *out;
    mq_report *rep;
    mq_skip_list *skips;
} run_ctx;

static mq_status skip_tensor(run_ctx *c, const mq_model *in, size_t i, const char *reason)
{
    const mq_tensor *t = &in->tensors[i];
    mq_status st = copy_tensor(c->out, in, i);
    if (st == MQ_OK) st = mq_skip_list_add(c->skips, t->name, reason);
    if (st == MQ_OK) st = mq_report_add(c->rep, t, MQ_ACTION_SKIP, t->dtype, t->nbytes, 0, reason);
    return st;
}

/* NVFP4: the weight's global scale from its amax (or its fused set's),
 * before any group is quantized, and its F32 tensor. */
static mq_status set_global_scale(run_ctx *c, const mq_tensor *t, mq_qlayout *l,
                                  void *data[MQ_QOUT_COUNT])
{
    uint64_t numel = 1;
    for (int k = 0; k < t->rank; k++)
        numel *= (uint64_t)t->shape[k];
    mq_ref_stats st;
    mq_ref_stats_init(&st);
    mq_status s = c->be->ops->reduce(c->be, t->data, t->dtype, (size_t)numel, &st);
    if (s != MQ_OK) return s;
    float amax = st.amax;
    if (c->set->fused_amax &&
        (s = c->set->fused_amax(c->set->fused_user, t->name, &amax, NULL)) != MQ_OK)
        return s;
    l->gscale = mq_nvfp4_global_scale(amax, t->dtype);
    mq_qlayout_gscale_bytes(l, data[MQ_QOUT_GSCALE]);
    return MQ_OK;
}

/* NVFP4: the amax of each fused set of the model's weights to quantize
 * (fused.h), before any of them is. */
static mq_status fused_sets(run_ctx *c, const mq_model *in, mq_planner *pl, mq_fused **out)
{
    mq_fused *f = mq_fused_new();
    mq_status st = f ? MQ_OK : mq_set_error(MQ_STATUS_E_NOMEM, "quantize: out of memory");
    for (size_t i = 0; st == MQ_OK && i < in->count; i++) {
        const mq_tensor *t = &in->tensors[i];
        char kind, reason[256];
        if (!mq_fused_key(t->name, &kind) || !mq_dtype_is_quantizable(t->dtype)) continue;
        mq_action a =
            mq_planner_decide(pl, t->name, t->dtype, t->rank, t->shape, reason, sizeof reason);
        if ((st = mq_planner_error(pl)) != MQ_OK || a != MQ_ACTION_QUANTIZE) continue;
        mq_ref_stats rs;
        mq_ref_stats_init(&rs);
        st = c->be->ops->reduce(c->be, t->data, t->dtype, t->nbytes / mq_dtype_size(t->dtype), &rs);
        if (st == MQ_OK && !rs.nonfinite) st = mq_fused_add(f, t->name, rs.amax);
    }
    if (st != MQ_OK) {
        mq_fused_free(f);
        f = NULL;
    }
    *out = f;
    return st;
}

static mq_status quantize_tensor(run_ctx *c, const mq_model *in, size_t i, bool *nonfinite)
{
    const mq_tensor *t = &in->tensors[i];
    mq_qlayout l;
    mq_status st;
    size_t mark = c->out->count;
    void *data[MQ_QOUT_COUNT] = {0};
    int8_t *zp = NULL;

    *nonfinite = false;
    if ((st = mq_qlayout_init(&l, t, &c->set->scheme)) != MQ_OK) return st;
    if ((st = mq_qlayout_check_names(&l, in, t->name)) != MQ_OK) goto done;
    for (int k = 0; k < MQ_QOUT_COUNT; k++) {
        const mq_qout *o = &l.out[k];
        if (o->name && !(data[k] = append_new(c->out, o->name, o->dtype, o->rank, o->shape,
                                              (size_t)o->nbytes, &st)))
            goto done;
    }
    if (!l.symmetric && !(zp = malloc(l.rows))) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", t->name);
        goto done;
    }
    if (l.kind == MQ_QK_NVFP4 && (st = set_global_scale(c, t, &l, data)) != MQ_OK) goto done;
    /* The codes are computed into the codes tensor and packed there. */
    size_t bad = 0;
    mq_err_acc acc;
    mq_err_acc_init(&acc);
    const float *imp = NULL;
    if (c->set->scheme.observer == MQ_OBSERVER_MSE && c->set->imatrix && t->rank == 2 &&
        (st = mq_imatrix_find(c->set->imatrix, t->name, l.inner, &imp)) != MQ_OK)
        goto done;
    st = mq_quantize_whole(c->be, &l, &c->set->scheme, imp, t->data, t->dtype, data[MQ_QOUT_CODES],
                           data[MQ_QOUT_SCALE], zp, &bad, &acc);
    if (st == MQ_STATUS_E_DATA) {
        if (c->set->skip_nonfinite) {
            *nonfinite = true;
            st = MQ_OK;
        } else {
            st = mq_nonfinite_error(&l, t->name, bad);
        }
    } else if (st != MQ_OK) {
        mq_error_prefix("tensor '%s'", t->name);
    }
    if (st == MQ_OK && !*nonfinite) {
        if (data[MQ_QOUT_ZP]) mq_qlayout_store_zp(&l, zp, data[MQ_QOUT_ZP]);
        if (data[MQ_QOUT_SHAPE]) mq_qlayout_shape_bytes(&l, data[MQ_QOUT_SHAPE]);
        st = mq_report_add(c->rep, t, MQ_ACTION_QUANTIZE, mq_qlayout_code_dtype(&l),
                           mq_qlayout_bytes(&l), 0, NULL);
        if (st == MQ_OK) {
            mq_report_set_error_stats(c->rep, mq_err_acc_sqnr_db(&acc), acc.max_abs, acc.clamped);
            mq_report_set_imatrix(c->rep, imp != NULL);
        }
    }
done:
    if (st != MQ_OK || *nonfinite) mq_model_truncate(c->out, mark);
    free(zp);
    mq_qlayout_free(&l);
    return st;
}

static mq_status cast_tensor(run_ctx *c, const mq_model *in, size_t i)
{
    const mq_tensor *t = &in->tensors[i];
    uint64_t numel, overflow = 0;
    mq_status st;
    mq_shape_numel(t->rank, t->shape, &numel);
    uint16_t *dst =
        append_new(c->out, t->name, MQ_DTYPE_F16, t->rank, t->shape, (size_t)numel * 2, &st);
    if (!dst) return st;
    st = c->be->ops->cast_f16(c->be, t->data, t->dtype, (size_t)numel, c->set->fp16_saturate, dst,
                              &overflow);
    if (st != MQ_OK) {
        mq_error_prefix("tensor '%s'", t->name);
        return st;
    }
    return mq_report_add(c->rep, t, MQ_ACTION_CAST, MQ_DTYPE_F16, numel * 2, overflow, NULL);
}

static mq_status set_output_metadata(mq_model *out, const mq_model *in, const mq_scheme *s)
{
    mq_status st = MQ_OK;
    for (size_t i = 0; i < in->meta_count && st == MQ_OK; i++)
        st = mq_model_set_metadata(out, in->meta_keys[i], in->meta_values[i]);
    const char *ours[MQ_OUTPUT_META][2];
    int n = mq_output_metadata(s, ours);
    for (int k = 0; k < n && st == MQ_OK; k++)
        st = mq_model_set_metadata(out, ours[k][0], ours[k][1]);
    return st;
}

/* The config's importance matrix into s->imatrix (owned by *own). */
static mq_status load_imatrix(mq_settings *s, mq_imatrix **own)
{
    *own = NULL;
    if (!s->imatrix_path || s->scheme.observer != MQ_OBSERVER_MSE) return MQ_OK; /* fp16 */
    mq_status st = mq_imatrix_load(s->imatrix_path, own);
    if (st != MQ_OK) mq_error_prefix("importance matrix");
    s->imatrix = *own;
    return st;
}

mq_status mq_dynamic_quantize_report(const mq_model *in, const mq_config *cfg_in, mq_model **out,
                                     mq_skip_list **skipped, mq_report **report)
{
    mq_clear_error();
    mq_settings set;
    mq_planner *planner = NULL;
    mq_imatrix *imatrix = NULL;
    run_ctx c = {.set = &set};
    mq_fused *fused = NULL;
    mq_status st;

    if (out) *out = NULL;
    if (skipped) *skipped = NULL;
    if (report) *report = NULL;
    if (!in || !out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "quantize: NULL model or out");
    if ((st = mq_settings_init(&set, cfg_in)) != MQ_OK) goto done;
    if ((st = mq_check_not_quantized(in, false)) != MQ_OK) goto done;
    if ((st = load_imatrix(&set, &imatrix)) != MQ_OK) goto done;
    if ((st = mq_planner_new(&set, &planner)) != MQ_OK) goto done;
    if ((st = mq_backend_open(&set.device, &c.be)) != MQ_OK) goto done;
    if ((st = mq_model_new(&c.out)) != MQ_OK) goto done;
    if (!(c.rep = mq_report_new()) || !(c.skips = mq_skip_list_new())) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "quantize: out of memory");
        goto done;
    }
    mq_report_set_device(c.rep, c.be->backend, c.be->platform, c.be->device);
    if ((st = set_output_metadata(c.out, in, &set.scheme)) != MQ_OK) goto done;
    if (set.scheme.qkind == MQ_QK_NVFP4 && mq_scheme_quantizes(&set.scheme) && !set.fused_amax) {
        if ((st = fused_sets(&c, in, planner, &fused)) != MQ_OK) goto done;
        set.fused_amax = mq_fused_amax;
        set.fused_user = fused;
    }
    uint64_t total_bytes = 0, done_bytes = 0;
    for (size_t i = 0; i < in->count; i++)
        total_bytes += in->tensors[i].nbytes;

    for (size_t i = 0; i < in->count && st == MQ_OK; i++) {
        const mq_tensor *t = &in->tensors[i];
        char reason[256];
        mq_action a =
            mq_planner_decide(planner, t->name, t->dtype, t->rank, t->shape, reason, sizeof reason);
        if ((st = mq_planner_error(planner)) != MQ_OK) break;
        if (a == MQ_ACTION_QUANTIZE) {
            bool nonfinite;
            st = quantize_tensor(&c, in, i, &nonfinite);
            if (st == MQ_OK && nonfinite) st = skip_tensor(&c, in, i, "holds NaN or Inf");
        } else if (a == MQ_ACTION_CAST) {
            st = cast_tensor(&c, in, i);
        } else {
            st = skip_tensor(&c, in, i, reason);
        }
        if (st == MQ_OK && set.progress) {
            done_bytes += t->nbytes;
            mq_progress p = {i + 1,      in->count,
                             done_bytes, total_bytes,
                             in->path,   mq_report_entry_at(c.rep, mq_report_count(c.rep) - 1)};
            set.progress(&p, set.progress_user);
        }
    }
done:
    if (st != MQ_OK && in->path) mq_error_prefix("%s", in->path);
    if (st == MQ_OK) {
        *out = c.out;
        c.out = NULL;
        if (skipped) {
            *skipped = c.skips;
            c.skips = NULL;
        }
        if (report) {
            *report = c.rep;
            c.rep = NULL;
        }
    }
    mq_model_free(c.out);
    mq_fused_free(fused);
    mq_skip_list_free(c.skips);
    mq_report_free(c.rep);
    mq_backend_free(c.be);
    mq_planner_free(planner);
    mq_imatrix_free(imatrix);
    return st;
}

mq_status mq_dynamic_quantize(const mq_model *in, const mq_config *cfg, mq_model **out,
                              mq_skip_list **skipped)
{
    mq_clear_error();
    return mq_dynamic_quantize_report(in, cfg, out, skipped, NULL);
}

mq_status mq_quantize_file(const char *in_path, const char *out_path, const mq_config *cfg_in,
                           mq_report **report)
{
    mq_clear_error();
    mq_settings settings;
    mq_backend_set set = {0};
    mq_report *rep = NULL;
    mq_imatrix *imatrix = NULL;
    struct stat sb;
    mq_status st;
    if (report) *report = NULL;
    if (!in_path || !out_path) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "quantize: NULL path");
    if ((st = mq_check_not_same_file(in_path, out_path)) != MQ_OK) return st;
    if ((st = mq_settings_init(&settings, cfg_in)) != MQ_OK) goto done;
    if ((st = load_imatrix(&settings, &imatrix)) != MQ_OK) goto done;
    /* Every device of a list is opened first: a bad entry fails before any output. */
    if ((st = mq_backend_set_open(&settings.device, &set)) != MQ_OK) goto done;
    mq_backend *be = set.be[0];
    if (!(rep = mq_report_new())) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "quantize: out of memory");
        goto done;
    }
    mq_report_set_device(rep, be->backend, be->platform, be->device);
    if (stat(in_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        st = mq_hfdir_quantize_on(in_path, out_path, &settings, set.be, set.count, rep);
    } else {
        /* One file runs on the first device of a list. */
        st = mq_stream_file(in_path, out_path, &settings, NULL, be, rep, NULL);
        if (st == MQ_OK) st = mq_report_add_device(rep, be->backend, be->platform, be->device, 1);
    }
    if (st == MQ_OK && report) {
        *report = rep;
        rep = NULL;
    }
done:
    mq_report_free(rep);
    mq_backend_set_free(&set);
    mq_imatrix_free(imatrix);
    return st;
}
