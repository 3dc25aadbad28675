/* The mse observer's scan on an OpenCL device (backend.h: mse_scan): the
 * host takes each group's statistics once (the vectorized host kernel) and
 * every step's scale and zero point from them (mq_ref_params, the reference
 * itself), the device sums every (group, step) error at once (mse.cl), and
 * the host keeps each group's improving steps from those errors, as
 * mq_obs_mse_scan does. A call whose values or errors do not fit one buffer,
 * or a kind the kernel lacks, runs the host loop instead. */
#include "cl_qparts.h"

#include "cpukern.h"
#include "error.h"
#include "reference.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

/* Every step's scale and zero point for every group, from the groups'
 * statistics; MQ_STATUS_E_DATA with *bad the first group holding a NaN or an
 * infinity. */
static mq_status step_params(mq_qdesc d, const mq_obs_mse *o, const void *src, mq_dtype dt,
                             size_t rows, size_t cols, float *sc, float *zp, size_t *bad)
{
    size_t groups = mq_qdesc_scales(d, rows, cols), steps = mq_obs_mse_steps(o);
    size_t es = mq_dtype_size(dt);
    for (size_t g = 0; g < groups; g++) {
        size_t r0, r1, c0, nc;
        mq_ref_stats st;
        mq_qdesc_group(d, rows, cols, g, &r0, &r1, &c0, &nc);
        mq_ref_stats_init(&st);
        for (size_t r = r0; r < r1; r++)
            mq_hk_stats_update(&st, (const unsigned char *)src + (r * cols + c0) * es, dt, nc);
        if (st.nonfinite) {
            *bad = g;
            return MQ_STATUS_E_DATA;
        }
        for (size_t i = 0; i < steps; i++) {
            float p = mq_obs_mse_factor(o, i);
            mq_ref_stats c = st;
            c.lo = st.lo * p;
            c.hi = st.hi * p;
            c.amax = st.amax * p;
            int8_t z;
            mq_ref_params(d, &c, dt, &sc[g * steps + i], &z);
            zp[g * steps + i] = (float)z;
        }
    }
    return MQ_OK;
}

static mq_status nomem(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL mse search: out of host memory");
}

mq_status mq_cl_mse_errors(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                           const void *src, mq_dtype dt, size_t rows, size_t cols, float *err,
                           size_t *bad)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    size_t groups = mq_qdesc_scales(d, rows, cols), steps = mq_obs_mse_steps(o);
    size_t es = mq_dtype_size(dt), n = groups * steps;
    float *sc = malloc(n * sizeof *sc + 1), *zp = malloc(n * sizeof *zp + 1);
    cl_mem in, s_m, z_m, i_m, e_m;
    mq_status st = MQ_OK;
    if (!sc || !zp) {
        st = nomem();
        goto done;
    }
    if ((st = step_params(d, o, src, dt, rows, cols, sc, zp, bad)) != MQ_OK || n == 0) goto done;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, rows * cols * es, &in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, n * sizeof(float), &s_m)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_LO, n * sizeof(float), &z_m)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_HI, (imp ? cols : 1) * sizeof(float), &i_m)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ESUM, n * sizeof(float), &e_m)) != MQ_OK)
        goto done;
    cl_int dt_a = (cl_int)dt, kind_a = (cl_int)d.kind, imp_a = imp ? 1 : 0;
    cl_ulong rows_a = rows, cols_a = cols, block_a = d.block, groups_a = groups;
    cl_uint steps_a = (cl_uint)steps;
    cl_float norm_a = (float)o->norm;
    mq_cl_arg args[] = {MQ_CL_ARG(in),      MQ_CL_ARG(dt_a),     MQ_CL_ARG(rows_a),
                        MQ_CL_ARG(cols_a),  MQ_CL_ARG(block_a),  MQ_CL_ARG(kind_a),
                        MQ_CL_ARG(steps_a), MQ_CL_ARG(groups_a), MQ_CL_ARG(s_m),
                        MQ_CL_ARG(z_m),     MQ_CL_ARG(i_m),      MQ_CL_ARG(imp_a),
                        MQ_CL_ARG(norm_a),  MQ_CL_ARG(e_m)};
    if ((st = mq_cl_write(cb, in, rows * cols * es, src)) != MQ_OK ||
        (st = mq_cl_write(cb, s_m, n * sizeof(float), sc)) != MQ_OK ||
        (st = mq_cl_write(cb, z_m, n * sizeof(float), zp)) != MQ_OK ||
        (imp && (st = mq_cl_write(cb, i_m, cols * sizeof(float), imp)) != MQ_OK) ||
        (st = mq_cl_launch(cb, cb->mse, args, sizeof args / sizeof args[0], n, NULL)) != MQ_OK ||
        (st = mq_cl_read(cb, e_m, n * sizeof(float), err)) != MQ_OK ||
        (st = mq_cl_finish(cb)) != MQ_OK)
        goto done;
done:
    free(sc);
    free(zp);
    return st;
}

/* One scan call, as the out-of-memory retry's attempts take it. */
typedef struct {
    mq_qdesc d;
    const mq_obs_mse *o;
    const float *imp;
    const void *src;
    mq_dtype dt;
    size_t rows, cols;
    uint8_t *mask;
    bool *improved;
    size_t *bad;
} scan_job;

/* Writes every record from scratch: a retry may follow a failed attempt.
 * The fit is checked again each time, as a retry halves the buffers. */
static mq_status attempt_scan(mq_cl_backend *cb, const void *job, mq_err_acc *err)
{
    const scan_job *j = job;
    size_t groups = mq_qdesc_scales(j->d, j->rows, j->cols), steps = mq_obs_mse_steps(j->o);
    size_t mb = mq_obs_mse_mask_bytes(j->o), es = mq_dtype_size(j->dt);
    (void)err;
    if (j->rows * j->cols > cb->limit / es || groups * steps > cb->limit / sizeof(float))
        return mq_hk_mse_scan(NULL, j->d, j->o, j->imp, j->src, j->dt, j->rows, j->cols, j->mask,
                              j->improved, j->bad);
    float *e = malloc(groups * steps * sizeof *e + 1);
    if (!e) return nomem();
    mq_status st =
        mq_cl_mse_errors(&cb->base, j->d, j->o, j->imp, j->src, j->dt, j->rows, j->cols, e, j->bad);
    if (st == MQ_OK) {
        memset(j->mask, 0, groups * mb);
        for (size_t g = 0; g < groups; g++) {
            float best = FLT_MAX;
            for (size_t i = 0; i < steps; i++) {
                if (e[g * steps + i] < best) {
                    best = e[g * steps + i];
                    j->mask[g * mb + i / 8] |= (uint8_t)(1u << (i % 8));
                    j->improved[i] = true;
                }
            }
        }
    }
    free(e);
    return st;
}

mq_status mq_cl_mse_scan(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                         const void *src, mq_dtype dt, size_t rows, size_t cols, uint8_t *mask,
                         bool *improved, size_t *bad)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    size_t ignored_bad;
    if (!bad) bad = &ignored_bad;
    bool kernel_kind = d.kind == MQ_QK_INT8 || d.kind == MQ_QK_INT4 || d.kind == MQ_QK_FP8;
    if (!kernel_kind || dt > MQ_DTYPE_BF16 || !cb->mse || mq_obs_mse_steps(o) > UINT32_MAX ||
        mq_cl_check_rows("mse search", rows, cols, mq_dtype_size(dt)) != MQ_OK)
        return mq_hk_mse_scan(NULL, d, o, imp, src, dt, rows, cols, mask, improved, bad);
    /* Records of a failed attempt are only ever ORed into improved: a step
     * some group improved at stays so; the retry sets the same ones again. */
    scan_job j = {d, o, imp, src, dt, rows, cols, mask, improved, bad};
    size_t es = mq_dtype_size(dt);
    return mq_cl_retry(cb, attempt_scan, &j, rows * cols * es,
                       d.block ? d.block * d.block * es : cols * es, NULL, NULL);
}

/* The codes of the second pass take one pass over the values with fixed
 * parameters, which the host's vector loop does at about the speed of reading
 * them, faster than copying them to a device and back. */
mq_status mq_cl_mse_quantize(mq_backend *b, mq_qdesc d, const mq_obs_mse *o, const float *imp,
                             size_t limit, const uint8_t *mask, const void *src, mq_dtype dt,
                             size_t rows, size_t cols, void *q, void *scale, int8_t *zp,
                             size_t *bad, mq_err_acc *err)
{
    (void)b;
    return mq_hk_mse_quantize(d, o, imp, limit, mask, src, dt, rows, cols, q, scale, zp, bad, err);
}
