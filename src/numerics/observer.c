/* The MSE observer's search (see observer.h for the exact rule). */
#include "observer.h"

#include "pool.h"
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

mq_obs_mse mq_obs_mse_defaults(void)
{
    return (mq_obs_mse){.maxshrink = 0.2, .grid = 100.0, .norm = 2.4, .patience = 5};
}

size_t mq_obs_mse_steps(const mq_obs_mse *o)
{
    double n = o->maxshrink * o->grid; /* Python's int() of the same double */
    return n >= 1.0 ? (size_t)n : 0;
}

float mq_obs_mse_factor(const mq_obs_mse *o, size_t i)
{
    return (float)(1.0 - (double)i / o->grid);
}

/* The statistics of a group shrunk by p, as torch multiplies an fp32 tensor
 * by a scalar: one fp32 product each. */
static mq_ref_stats shrink(const mq_ref_stats *st, float p)
{
    mq_ref_stats c = *st;
    c.lo = st->lo * p;
    c.hi = st->hi * p;
    c.amax = st->amax * p;
    return c;
}

typedef struct {
    mq_qdesc d;
    const unsigned char *in;
    mq_dtype dt;
    size_t rows, cols, r0, r1, c0, nc;
    float *vals; /* the group's values in fp32, gathered once for every step */
    size_t n;
} group_view;

static void view_group(group_view *v, size_t g)
{
    mq_qdesc_group(v->d, v->rows, v->cols, g, &v->r0, &v->r1, &v->c0, &v->nc);
}

static const unsigned char *row_at(const group_view *v, size_t r)
{
    return v->in + (r * v->cols + v->c0) * mq_dtype_size(v->dt);
}

/* The largest group of a call, for the gathered values. */
static size_t max_group(mq_qdesc d, size_t cols)
{
    return d.block ? d.block * d.block : cols;
}

/* The group's statistics and its values gathered; false on NaN/Inf. */
static bool group_stats(group_view *v, mq_ref_stats *st)
{
    mq_ref_stats_init(st);
    v->n = 0;
    for (size_t r = v->r0; r < v->r1; r++) {
        const unsigned char *row = row_at(v, r);
        mq_ref_stats_update(st, row, v->dt, v->nc);
        for (size_t i = 0; i < v->nc; i++)
            v->vals[v->n++] = mq_load_f32(row, v->dt, i);
    }
    return !st->nonfinite;
}

/* One value's error as the group's sum takes it: |w_hat - w|^norm, with
 * w_hat as group_error below describes. */
static float value_error(const group_view *v, float w, float s, float z, float norm)
{
    const float qmin = mq_qkind_qmin(v->d.kind), qmax = mq_qkind_qmax(v->d.kind);
    if (v->d.kind == MQ_QK_FP8) {
        float q = mq_e4m3_to_f32(mq_f32_to_e4m3(fminf(fmaxf(w / s, qmin), qmax)));
        return powf(fabsf(q * s - w), norm);
    }
    float q = fminf(fmaxf(rintf(w / s + z), qmin), qmax);
    return powf(fabsf((q - z) * s - w), norm);
}

/* The importance-weighted sum: imp[c] weighs the group's column c (imp
 * starts at the group's first column), each product rounded to fp32 before
 * the add (-ffp-contract=off keeps it from fusing), in value order. */
static float weighted_error(const group_view *v, const float *imp, float s, float z, float norm)
{
    float sum = 0.0f;
    for (size_t i = 0; i < v->n; i++) {
        float t = imp[i % v->nc] * value_error(v, v->vals[i], s, z, norm);
        sum += t;
    }
    return sum;
}

/* Sum of |fake_quantize(w) - w|^norm over the group, in fp32, in value order:
 * compressed-tensors' fake_quantize with fixed parameters (int: the code
 * clamp(rint(w / s + zp)) back to (q - zp) * s; FP8: the e4m3 value of
 * clamp(w / s, +-448) times s). */
static float group_error(const group_view *v, const float *imp, float s, int8_t zp, float norm)
{
    const float qmin = mq_qkind_qmin(v->d.kind), qmax = mq_qkind_qmax(v->d.kind), z = (float)zp;
    const float *w = v->vals;
    float sum = 0.0f;
    if (imp) return weighted_error(v, imp + v->c0, s, z, norm);
    if (v->d.kind == MQ_QK_FP8) {
        for (size_t i = 0; i < v->n; i++) {
            float q = mq_e4m3_to_f32(mq_f32_to_e4m3(fminf(fmaxf(w[i] / s, qmin), qmax)));
            sum += powf(fabsf(q * s - w[i]), norm);
        }
        return sum;
    }
    for (size_t i = 0; i < v->n; i++) {
        float q = fminf(fmaxf(rintf(w[i] / s + z), qmin), qmax);
        sum += powf(fabsf((q - z) * s - w[i]), norm);
    }
    return sum;
}

size_t mq_obs_mse_mask_bytes(const mq_obs_mse *o)
{
    return (mq_obs_mse_steps(o) + 7) / 8;
}

/* Searches every step of one group; sets bit i of mask (mask_bytes of them)
 * and improved[i] where its error fell below its best so far. */
static void search(const group_view *v, const mq_obs_mse *o, const float *imp,
                   const mq_ref_stats *st, mq_dtype sdt, uint8_t *mask, bool *improved)
{
    float best = FLT_MAX, norm = (float)o->norm;
    size_t steps = mq_obs_mse_steps(o);
    for (size_t i = 0; i < steps; i++) {
        mq_ref_stats c = shrink(st, mq_obs_mse_factor(o, i));
        float s;
        int8_t z;
        mq_ref_params(v->d, &c, sdt, &s, &z);
        float e = group_error(v, imp, s, z, norm);
        if (e < best) {
            best = e;
            mask[i / 8] |= (uint8_t)(1u << (i % 8));
            if (improved) improved[i] = true;
        }
    }
}

/* One part of a scan: groups [g0, g1), with its own copy buffer and its
 * own record of the tensor's improving steps (ORed afterwards, so the result
 * does not depend on how the groups were split). */
typedef struct {
    group_view v;
    const mq_obs_mse *o;
    const float *imp;
    uint8_t *mask;
    size_t mb, groups, parts;
    bool *improved; /* parts x steps */
    size_t *bad;    /* per part: the first bad group, or SIZE_MAX */
    float *vals;    /* parts x the largest group */
    size_t vals_per_part;
} scan_job;

static void scan_part(void *arg, unsigned part)
{
    scan_job *j = arg;
    group_view v = j->v;
    size_t steps = mq_obs_mse_steps(j->o);
    size_t g0 = j->groups * part / j->parts, g1 = j->groups * (part + 1) / j->parts;
    v.vals = j->vals + part * j->vals_per_part;
    j->bad[part] = SIZE_MAX;
    for (size_t g = g0; g < g1; g++) {
        mq_ref_stats gs;
        view_group(&v, g);
        if (!group_stats(&v, &gs)) {
            j->bad[part] = g;
            return;
        }
        search(&v, j->o, j->imp, &gs, v.dt, j->mask + g * j->mb, j->improved + part * steps);
    }
}

/* Values below which a scan runs on the calling thread alone. */
#define SCAN_PARALLEL_MIN 65536

mq_status mq_obs_mse_scan(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                          mq_dtype dt, size_t rows, size_t cols, uint8_t *mask, bool *improved,
                          size_t *bad)
{
    size_t groups = mq_qdesc_scales(d, rows, cols), steps = mq_obs_mse_steps(o);
    scan_job j = {.v = {.d = d, .in = src, .dt = dt, .rows = rows, .cols = cols},
                  .o = o,
                  .imp = imp,
                  .mask = mask,
                  .mb = mq_obs_mse_mask_bytes(o),
                  .groups = groups,
                  .vals_per_part = max_group(d, cols)};
    mq_pool *pool = NULL;
    mq_status st = MQ_OK;
    memset(mask, 0, groups * j.mb);
    if ((uint64_t)rows * cols >= SCAN_PARALLEL_MIN) pool = mq_pool_new(mq_cpu_count(64));
    j.parts = mq_pool_threads(pool);
    if (j.parts > groups) j.parts = groups ? groups : 1;
    j.improved = calloc(j.parts * steps + 1, sizeof *j.improved);
    j.bad = calloc(j.parts, sizeof *j.bad);
    j.vals = malloc(j.parts * j.vals_per_part * sizeof *j.vals + 1);
    if (!j.improved || !j.bad || !j.vals) {
        st = MQ_STATUS_E_NOMEM;
        goto done;
    }
    mq_pool_run(pool, scan_part, &j, (unsigned)j.parts);
    for (size_t p = 0; p < j.parts; p++) {
        if (j.bad[p] != SIZE_MAX) {
            if (bad) *bad = j.bad[p]; /* parts in group order: the first bad group */
            st = MQ_STATUS_E_DATA;
            goto done;
        }
        for (size_t i = 0; i < steps; i++)
            if (j.improved[p * steps + i]) improved[i] = true;
    }
done:
    mq_pool_free(pool);
    free(j.improved);
    free(j.bad);
    free(j.vals);
    return st;
}

size_t mq_obs_mse_limit(const mq_obs_mse *o, const bool *improved)
{
    size_t steps = mq_obs_mse_steps(o);
    unsigned idle = 0;
    for (size_t i = 0; i < steps; i++) {
        if (improved[i]) {
            idle = 0;
        } else if (++idle >= o->patience) {
            return i + 1; /* step i ran; the loop breaks after it */
        }
    }
    return steps;
}

size_t mq_obs_mse_best(const mq_obs_mse *o, const uint8_t *mask, size_t limit)
{
    (void)o;
    /* The last improvement before the stop is the group's smallest error;
     * none (every error inf or NaN) keeps the unshrunk range, step 0. */
    for (size_t i = limit; i-- > 0;)
        if (mask[i / 8] & (1u << (i % 8))) return i;
    return 0;
}

mq_status mq_obs_mse_quantize(mq_qdesc d, const mq_obs_mse *o, const float *imp, size_t limit,
                              const uint8_t *mask, const void *src, mq_dtype dt, size_t rows,
                              size_t cols, void *q, void *scale, int8_t *zp, size_t *bad)
{
    (void)imp; /* the search chose the ranges; the codes of a range do not depend on it */
    group_view v = {.d = d, .in = src, .dt = dt, .rows = rows, .cols = cols};
    unsigned char *out = q;
    size_t groups = mq_qdesc_scales(d, rows, cols), qb = mq_qkind_row_bytes(d.kind, cols);
    size_t mb = mq_obs_mse_mask_bytes(o);
    mq_status ret = MQ_OK;
    if (!(v.vals = malloc(max_group(d, cols) * sizeof *v.vals + 1))) return MQ_STATUS_E_NOMEM;
    for (size_t g = 0; g < groups; g++) {
        mq_ref_stats st;
        view_group(&v, g);
        if (!group_stats(&v, &st)) {
            if (bad) *bad = g;
            ret = MQ_STATUS_E_DATA;
            break;
        }
        /* The observer keeps the best (p lo, p hi); the compressor takes
         * calculate_qparams of them again, which is the candidate's own. */
        mq_ref_stats c =
            shrink(&st, mq_obs_mse_factor(o, mq_obs_mse_best(o, mask + g * mb, limit)));
        float s;
        int8_t z;
        mq_ref_group_params(d, &c, dt, g, scale, zp, bad, &s, &z);
        for (size_t r = v.r0; r < v.r1; r++)
            mq_ref_put_codes(d, row_at(&v, r), dt, v.nc, s, z, out + r * qb, v.c0, cols);
    }
    free(v.vals);
    return ret;
}
