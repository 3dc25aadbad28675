/* The device buffers and host memory of one quantize call, the weight-error
 * partials the _err kernels leave, and the two device steps of a two-pass
 * quantization: statistics partials (folded on the host) and codes with
 * fixed parameters. Shared by the quantize files (cl_qparts.h). */
#include "cl_qparts.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mq_cl_qbufs_free(mq_cl_backend *cb, mq_cl_qbufs *w)
{
    clFinish(cb->queue); /* no transfer may still target host memory we return */
    free(w->hlo);
    free(w->hhi);
    free(w->hs);
    free(w->hbad);
    free(w->hzp);
    free(w->hes);
    free(w->hecl); /* hscale: the caller's, after its copy */
}

mq_status mq_cl_qnomem(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL quantize: out of memory");
}

mq_status mq_cl_check_dtype(mq_dtype dt, const char *what)
{
    if (dt == MQ_DTYPE_F32 || dt == MQ_DTYPE_F16 || dt == MQ_DTYPE_BF16) return MQ_OK;
    return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL %s: dtype %s is not F32/F16/BF16", what,
                        mq_dtype_name(dt) ? mq_dtype_name(dt) : "?");
}

/* Room for `parts` partials: four floats (sig, err2, max, k) and a count each. */
mq_status mq_cl_err_buffers(mq_cl_backend *cb, mq_cl_qbufs *w, size_t parts)
{
    mq_status st;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_ESUM, parts * 4 * sizeof(float), &w->esum)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ECL, parts * sizeof(cl_uint), &w->ecl)) != MQ_OK)
        return st;
    w->hes = malloc(parts * 4 * sizeof(float));
    w->hecl = malloc(parts * sizeof(cl_uint));
    return w->hes && w->hecl ? MQ_OK : mq_cl_qnomem();
}

mq_status mq_cl_read_err(mq_cl_backend *cb, mq_cl_qbufs *w, size_t parts)
{
    mq_status st = mq_cl_read(cb, w->esum, parts * 4 * sizeof(float), w->hes);
    return st == MQ_OK ? mq_cl_read(cb, w->ecl, parts * sizeof(cl_uint), w->hecl) : st;
}

/* Partials read back (after the queue finished) into *acc, in order. */
void mq_cl_qbufs_fold(mq_err_acc *acc, const mq_cl_qbufs *w, size_t parts)
{
    mq_cl_fold_err(acc, w->hes, w->hecl, parts);
}

/* Values per piece of a run that must fit one buffer (a multiple of 8 when possible). */
size_t mq_cl_piece_len(const mq_cl_backend *cb, size_t es)
{
    size_t piece = cb->limit / es;
    if (piece >= 8) piece -= piece % 8;
    return piece;
}

/* Values one stats work-group reduces (a multiple of 8). */
size_t mq_cl_stats_segment(const mq_cl_backend *cb)
{
    return cb->wg * 8 * 16;
}

/* Partial min/max of `n` rows of `cols` values already in w->in, read back into w->h*. */
mq_status mq_cl_run_stats(mq_cl_backend *cb, mq_dtype dt, mq_cl_qbufs *w, size_t n, size_t cols)
{
    size_t seg = mq_cl_stats_segment(cb), spr = (cols + seg - 1) / seg;
    cl_ulong cols_arg = cols, seg_arg = seg;
    cl_uint spr_arg = (cl_uint)spr;
    mq_cl_arg args[] = {MQ_CL_ARG(w->in),   MQ_CL_ARG(cols_arg), MQ_CL_ARG(seg_arg),
                        MQ_CL_ARG(spr_arg), MQ_CL_ARG(w->lo),    MQ_CL_ARG(w->hi),
                        MQ_CL_ARG(w->pbad)};
    mq_status st;
    if ((st = mq_cl_launch(cb, cb->stats[dt], args, 7, n * spr * cb->wg, NULL)) != MQ_OK ||
        (st = mq_cl_read(cb, w->lo, n * spr * sizeof(float), w->hlo)) != MQ_OK ||
        (st = mq_cl_read(cb, w->hi, n * spr * sizeof(float), w->hhi)) != MQ_OK ||
        (st = mq_cl_read(cb, w->pbad, n * spr, w->hbad)) != MQ_OK)
        return st;
    return mq_cl_finish(cb);
}

/* Partials hold the min and max of their finite values (+inf/-inf when none), as
 * mq_ref_stats does; max |w| over [lo, hi] is max(|lo|, |hi|). */
void mq_cl_fold_partials(mq_ref_stats *s, const float *lo, const float *hi, const uint8_t *bad,
                         size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s->nonfinite = s->nonfinite || bad[i];
        if (!(lo[i] <= hi[i])) continue; /* no finite value in this segment */
        s->lo = fminf(s->lo, lo[i]);
        s->hi = fmaxf(s->hi, hi[i]);
        s->amax = fmaxf(s->amax, fmaxf(fabsf(lo[i]), fabsf(hi[i])));
    }
}

/* Work-groups of the fixed kernel for n values (the error partials it makes). */
size_t mq_cl_fixed_groups(const mq_cl_backend *cb, size_t n)
{
    return ((n + 7) / 8 + cb->wg - 1) / cb->wg;
}

/* q for `n` values in w->in starting at column col0 of the first row, with the
 * parameters already in w->ps / w->pzp; with err, their weight error as well. */
mq_status mq_cl_run_fixed(mq_cl_backend *cb, mq_dtype dt, mq_cl_qbufs *w, size_t n, size_t cols,
                          size_t col0, uint8_t code_xor, int8_t *q, mq_err_acc *err)
{
    cl_ulong n_arg = n, cols_arg = cols, col0_arg = col0;
    cl_uchar cx_arg = code_xor;
    mq_cl_arg args[] = {MQ_CL_ARG(w->in),    MQ_CL_ARG(n_arg), MQ_CL_ARG(cols_arg),
                        MQ_CL_ARG(col0_arg), MQ_CL_ARG(w->ps), MQ_CL_ARG(w->pzp),
                        MQ_CL_ARG(cx_arg),   MQ_CL_ARG(w->q),  MQ_CL_ARG(w->esum),
                        MQ_CL_ARG(w->ecl)};
    size_t groups = mq_cl_fixed_groups(cb, n);
    mq_status st;
    if ((st = mq_cl_launch(cb, err ? cb->fixed_err[dt] : cb->fixed[dt], args, err ? 10 : 8,
                           (n + 7) / 8, NULL)) != MQ_OK ||
        (st = mq_cl_read(cb, w->q, n, q)) != MQ_OK ||
        (err && (st = mq_cl_read_err(cb, w, groups)) != MQ_OK) || (st = mq_cl_finish(cb)) != MQ_OK)
        return st;
    if (err) mq_cl_qbufs_fold(err, w, groups);
    return MQ_OK;
}

mq_status mq_cl_split_buffers(mq_cl_backend *cb, mq_cl_qbufs *w, size_t in_bytes, size_t q_bytes,
                              size_t partials, size_t params)
{
    mq_status st;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, in_bytes, &w->in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, q_bytes, &w->q)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_LO, partials * sizeof(float), &w->lo)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_HI, partials * sizeof(float), &w->hi)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, partials, &w->pbad)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, params * sizeof(float), &w->ps)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ZP, params, &w->pzp)) != MQ_OK)
        return st;
    w->hlo = malloc(partials * sizeof(float));
    w->hhi = malloc(partials * sizeof(float));
    w->hbad = malloc(partials);
    w->hs = malloc(params * sizeof(float));
    w->hzp = malloc(params);
    if (!w->hlo || !w->hhi || !w->hbad || !w->hs || !w->hzp) return mq_cl_qnomem();
    return MQ_OK;
}
