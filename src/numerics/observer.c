/* The MSE observer's search (see observer.h for the exact rule). */
#include "observer.h"

#include "obspow.h"
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

void mq_obs_sum_init(mq_obs_sum *s, size_t n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->vecs = n / 8;
    s->rows = s->vecs / 4;
    unsigned cl = 0;
    for (size_t r = s->rows > 1 ? s->rows - 1 : 0; r; r >>= 1)
        cl++; /* ceil(log2 rows) for rows >= 2, else 0 */
    s->lp = cl / 4 > 4 ? cl / 4 : 4;
    s->step = (size_t)1 << s->lp;
}

/* The cascade's levels added into the first (after the last whole row). */
static void sum_rows_done(mq_obs_sum *s)
{
    for (int j = 1; j < 4; j++)
        for (int m = 0; m < 32; m++)
            s->acc[0][m] += s->acc[j][m];
    s->stage = 1;
}

/* The four accumulators added into the first (after the last whole vector). */
static void sum_vecs_done(mq_obs_sum *s)
{
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < 8; l++)
            s->acc[0][l] += s->acc[0][8 * k + l];
    s->stage = 2;
}

void mq_obs_sum_add(mq_obs_sum *s, float x)
{
    size_t i = s->i++;
    if (s->n < 8) { /* four scalar accumulators */
        s->acc[0][i < s->n / 4 * 4 ? i % 4 : 0] += x;
        return;
    }
    if (i < s->rows * 32) {
        s->acc[0][i % 32] += x;
        size_t r = i / 32 + 1; /* rows done */
        if (i % 32 == 31 && r % s->step == 0) {
            for (unsigned j = 1; j < 4; j++) {
                for (int m = 0; m < 32; m++) {
                    s->acc[j][m] += s->acc[j - 1][m];
                    s->acc[j - 1][m] = 0.0f;
                }
                if ((r & ((s->step - 1) << (j * s->lp))) != 0) break;
            }
        }
        return;
    }
    if (s->stage == 0) sum_rows_done(s);
    if (i < s->vecs * 8) {
        s->acc[0][i % 8] += x;
        return;
    }
    if (s->stage == 1) sum_vecs_done(s);
    s->tail += x;
}

float mq_obs_sum_end(mq_obs_sum *s)
{
    if (s->n < 8) return ((s->acc[0][0] + s->acc[0][1]) + s->acc[0][2]) + s->acc[0][3];
    if (s->stage == 0) sum_rows_done(s);
    if (s->stage == 1) sum_vecs_done(s);
    float f = s->tail;
    for (int l = 0; l < 8; l++)
        f += s->acc[0][l];
    return f;
}

double mq_obs_sum_depth(size_t n)
{
    double d = 3.0 * 17.0 + (double)n / 131072.0 + 3.0 + 3.0 + 3.0 + 8.0 + 8.0;
    return d < (double)n ? d : (double)n;
}

float mq_obs_sum_of(const float *t, size_t n)
{
    mq_obs_sum s;
    mq_obs_sum_init(&s, n);
    for (size_t i = 0; i < n; i++)
        mq_obs_sum_add(&s, t[i]);
    return mq_obs_sum_end(&s);
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
    const float *imp; /* the columns' importance weights, or NULL */
    float *vals;      /* the group's values in fp32, gathered once for every step */
    float *wts;       /* each value's weight (1 without imp): vals' twin */
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
        for (size_t i = 0; i < v->nc; i++) {
            v->wts[v->n] = v->imp ? v->imp[v->c0 + i] : 1.0f;
            v->vals[v->n++] = mq_load_f32(row, v->dt, i);
        }
    }
    return !st->nonfinite;
}

/* Sum of imp * |fake_quantize(w) - w|^norm over the group, in fp32, in
 * torch's order (mq_obs_sum; each product rounded to fp32; a weight of 1 is
 * exact, so the sum without imp is the plain one):
 * compressed-tensors' fake_quantize with fixed parameters (int: the code
 * clamp(rint(w / s + zp)) back to (q - zp) * s; FP8: the e4m3 value of
 * clamp(w / s, +-448) times s). */
static float group_error(const group_view *v, float s, int8_t zp, float norm)
{
    const float qmin = mq_qkind_qmin(v->d.kind), qmax = mq_qkind_qmax(v->d.kind), z = (float)zp;
    const float *w = v->vals, *c = v->wts;
    mq_obs_sum sum;
    mq_obs_sum_init(&sum, v->n);
    if (v->d.kind == MQ_QK_FP8) {
        for (size_t i = 0; i < v->n; i++) {
            float q = mq_e4m3_to_f32(mq_f32_to_e4m3(fminf(fmaxf(w[i] / s, qmin), qmax)));
            mq_obs_sum_add(&sum, c[i] * mq_obs_pow(fabsf(q * s - w[i]), norm));
        }
        return mq_obs_sum_end(&sum);
    }
    for (size_t i = 0; i < v->n; i++) {
        float q = fminf(fmaxf(rintf(w[i] / s + z), qmin), qmax);
        mq_obs_sum_add(&sum, c[i] * mq_obs_pow(fabsf((q - z) * s - w[i]), norm));
    }
    return mq_obs_sum_end(&sum);
}

size_t mq_obs_mse_mask_bytes(const mq_obs_mse *o)
{
    return (mq_obs_mse_steps(o) + 7) / 8;
}

/* Searches every step of one group; sets bit i of mask (mask_bytes of them)
 * and improved[i] where its error fell below its best so far. */
static void search(const group_view *v, const mq_obs_mse *o, const mq_ref_stats *st, mq_dtype sdt,
                   uint8_t *mask, bool *improved)
{
    float best = FLT_MAX, norm = (float)o->norm;
    size_t steps = mq_obs_mse_steps(o);
    for (size_t i = 0; i < steps; i++) {
        mq_ref_stats c = shrink(st, mq_obs_mse_factor(o, i));
        float s;
        int8_t z;
        mq_ref_params(v->d, &c, sdt, &s, &z);
        float e = group_error(v, s, z, norm);
        if (e < best) {
            best = e;
            mask[i / 8] |= (uint8_t)(1u << (i % 8));
            if (improved) improved[i] = true;
        }
    }
}

bool mq_obs_mse_errors(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                       mq_dtype dt, size_t rows, size_t cols, size_t g, float *err)
{
    group_view v = {.d = d, .in = src, .dt = dt, .rows = rows, .cols = cols, .imp = imp};
    size_t mg = max_group(d, cols);
    float *buf = malloc(2 * mg * sizeof *buf + 1);
    mq_ref_stats st;
    bool ok = buf != NULL;
    if (ok) {
        v.vals = buf;
        v.wts = buf + mg;
        view_group(&v, g);
        ok = group_stats(&v, &st);
    }
    for (size_t i = 0; ok && i < mq_obs_mse_steps(o); i++) {
        mq_ref_stats c = shrink(&st, mq_obs_mse_factor(o, i));
        float s;
        int8_t z;
        mq_ref_params(d, &c, dt, &s, &z);
        err[i] = group_error(&v, s, z, (float)o->norm);
    }
    free(buf);
    return ok;
}

/* One part of a scan: groups [g0, g1), with its own copy buffer and its
 * own record of the tensor's improving steps (ORed afterwards, so the result
 * does not depend on how the groups were split). */
typedef struct {
    group_view v;
    const mq_obs_mse *o;
    uint8_t *mask;
    size_t mb, groups, parts;
    bool *improved; /* parts x steps */
    size_t *bad;    /* per part: the first bad group, or SIZE_MAX */
    float *vals;    /* parts x the largest group, then as many weights */
    size_t vals_per_part;
} scan_job;

static void scan_part(void *arg, unsigned part)
{
    scan_job *j = arg;
    group_view v = j->v;
    size_t steps = mq_obs_mse_steps(j->o);
    size_t g0 = j->groups * part / j->parts, g1 = j->groups * (part + 1) / j->parts;
    v.vals = j->vals + part * 2 * j->vals_per_part;
    v.wts = v.vals + j->vals_per_part;
    j->bad[part] = SIZE_MAX;
    for (size_t g = g0; g < g1; g++) {
        mq_ref_stats gs;
        view_group(&v, g);
        if (!group_stats(&v, &gs)) {
            j->bad[part] = g;
            return;
        }
        search(&v, j->o, &gs, v.dt, j->mask + g * j->mb, j->improved + part * steps);
    }
}

/* Values below which a scan runs on the calling thread alone. */
#define SCAN_PARALLEL_MIN 65536

mq_status mq_obs_mse_scan(mq_qdesc d, const mq_obs_mse *o, const float *imp, const void *src,
                          mq_dtype dt, size_t rows, size_t cols, uint8_t *mask, bool *improved,
                          size_t *bad)
{
    size_t groups = mq_qdesc_scales(d, rows, cols), steps = mq_obs_mse_steps(o);
    scan_job j = {.v = {.d = d, .in = src, .dt = dt, .rows = rows, .cols = cols, .imp = imp},
                  .o = o,
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
    j.vals = malloc(j.parts * 2 * j.vals_per_part * sizeof *j.vals + 1);
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
    /* The weights chose the step in the scan; the codes do not depend on them. */
    group_view v = {.d = d, .in = src, .dt = dt, .rows = rows, .cols = cols, .imp = imp};
    unsigned char *out = q;
    size_t groups = mq_qdesc_scales(d, rows, cols), qb = mq_qkind_row_bytes(d.kind, cols);
    size_t mb = mq_obs_mse_mask_bytes(o);
    mq_status ret = MQ_OK;
    if (!(v.vals = malloc(2 * max_group(d, cols) * sizeof *v.vals + 1))) return MQ_STATUS_E_NOMEM;
    v.wts = v.vals + max_group(d, cols);
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
