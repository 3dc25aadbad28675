/* The mse observer's search (src/numerics/observer.h): the error of every
 * candidate step of every group, bit-identical to the reference's, one
 * work-item per (group, step). The host gathers each group's statistics once
 * and turns them into every step's scale and zero point (mq_ref_params
 * itself), so this file holds only the error sum; the host then keeps each
 * group's improving steps. Work-items of one group are neighbours and read
 * the same values, which the caches serve once. */

/* The exact power needs double precision: without cl_khr_fp64 the kernel
 * is left out and the host loop searches (host/cl_backend.c). */
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable

/* mq_obs_pow of src/numerics/obspow.h: the same double operations in the
 * same order (FP_CONTRACT is off for the whole program, see numerics.cl),
 * rounded to fp32 once. */
inline float mq_obs_pow(float x, float n)
{
    if (!(x > 0.0f)) return x == 0.0f ? 0.0f : x;
    if (x > 3.4028234664e38f) return x;
    double xd = (double)x;
    ulong b = as_ulong(xd);
    ulong frac = b & 0x000fffffffffffffUL;
    int up = frac > 0x6a09e667f3bcdUL;
    double m = as_double(frac | (up ? 0x3fe0000000000000UL : 0x3ff0000000000000UL));
    double e = (double)((int)((b >> 52) & 0x7ff) - 1023 + up);
    double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double s = 1.0 / 25.0;
    s = s * t2 + 1.0 / 23.0;
    s = s * t2 + 1.0 / 21.0;
    s = s * t2 + 1.0 / 19.0;
    s = s * t2 + 1.0 / 17.0;
    s = s * t2 + 1.0 / 15.0;
    s = s * t2 + 1.0 / 13.0;
    s = s * t2 + 1.0 / 11.0;
    s = s * t2 + 1.0 / 9.0;
    s = s * t2 + 1.0 / 7.0;
    s = s * t2 + 1.0 / 5.0;
    s = s * t2 + 1.0 / 3.0;
    s = s * t2 + 1.0;
    double l = 2.0 * t * s * 1.4426950408889634;
    double nd = (double)n, ne = nd * e;
    double k1 = (ne + 6755399441055744.0) - 6755399441055744.0;
    double f = (ne - k1) + nd * l;
    double k2 = (f + 6755399441055744.0) - 6755399441055744.0;
    double g = f - k2;
    double p = 6.778726354822545e-14;
    p = p * g + 1.3691488853904128e-12;
    p = p * g + 2.5678435993488206e-11;
    p = p * g + 4.4455382718708116e-10;
    p = p * g + 7.054911620801123e-09;
    p = p * g + 1.01780860092397e-07;
    p = p * g + 1.321548679014431e-06;
    p = p * g + 1.5252733804059841e-05;
    p = p * g + 0.0001540353039338161;
    p = p * g + 0.0013333558146428443;
    p = p * g + 0.009618129107628477;
    p = p * g + 0.05550410866482158;
    p = p * g + 0.24022650695910072;
    p = p * g + 0.6931471805599453;
    p = p * g + 1.0;
    double k = k1 + k2;
    k = k > -200.0 ? k : -200.0;
    k = k < 200.0 ? k : 200.0;
    return (float)(p * as_double((ulong)((long)k + 1023) << 52));
}

/* mq_obs_sum of src/numerics/observer.c (torch's order of an fp32 sum of n
 * terms, added in value order): the same steps. */
typedef struct {
    float acc[4][32];
    float tail;
    ulong n, i, rows, vecs, step;
    uint lp, stage;
} mq_tsum;

inline void mq_tsum_init(private mq_tsum *s, ulong n)
{
    for (int j = 0; j < 4; j++)
        for (int m = 0; m < 32; m++)
            s->acc[j][m] = 0.0f;
    s->tail = 0.0f;
    s->n = n;
    s->i = 0;
    s->vecs = n / 8;
    s->rows = s->vecs / 4;
    s->stage = 0;
    uint cl = 0;
    for (ulong r = s->rows > 1 ? s->rows - 1 : 0; r; r >>= 1)
        cl++;
    s->lp = cl / 4 > 4 ? cl / 4 : 4;
    s->step = (ulong)1 << s->lp;
}

inline void mq_tsum_rows_done(private mq_tsum *s)
{
    for (int j = 1; j < 4; j++)
        for (int m = 0; m < 32; m++)
            s->acc[0][m] += s->acc[j][m];
    s->stage = 1;
}

inline void mq_tsum_vecs_done(private mq_tsum *s)
{
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < 8; l++)
            s->acc[0][l] += s->acc[0][8 * k + l];
    s->stage = 2;
}

inline void mq_tsum_add(private mq_tsum *s, float x)
{
    ulong i = s->i++;
    if (s->n < 8) {
        s->acc[0][i < s->n / 4 * 4 ? i % 4 : 0] += x;
        return;
    }
    if (i < s->rows * 32) {
        s->acc[0][i % 32] += x;
        ulong r = i / 32 + 1;
        if (i % 32 == 31 && r % s->step == 0) {
            for (uint j = 1; j < 4; j++) {
                for (int m = 0; m < 32; m++) {
                    s->acc[j][m] += s->acc[j - 1][m];
                    s->acc[j - 1][m] = 0.0f;
                }
                if ((r & ((s->step - 1) << (j * s->lp))) != 0) break;
            }
        }
        return;
    }
    if (s->stage == 0) mq_tsum_rows_done(s);
    if (i < s->vecs * 8) {
        s->acc[0][i % 8] += x;
        return;
    }
    if (s->stage == 1) mq_tsum_vecs_done(s);
    s->tail += x;
}

inline float mq_tsum_end(private mq_tsum *s)
{
    if (s->n < 8) return ((s->acc[0][0] + s->acc[0][1]) + s->acc[0][2]) + s->acc[0][3];
    if (s->stage == 0) mq_tsum_rows_done(s);
    if (s->stage == 1) mq_tsum_vecs_done(s);
    float f = s->tail;
    for (int l = 0; l < 8; l++)
        f += s->acc[0][l];
    return f;
}

/* For item (g, i) = (id / steps, id % steps): err[id] = the sum over group
 * g (rows of the call, or block x block blocks), in torch's order (mq_tsum), of
 * imp[column] * mq_obs_pow(|fake_quantize(w) - w|, norm), with the step's
 * scale s[id] and zero point z[id] (has_imp 0: a weight of 1, exactly). */
kernel void mq_mse_errors(global const void *src, const int dt, ulong rows, ulong cols, ulong block,
                          const int kind, uint steps, ulong groups, global const float *sc,
                          global const float *zp, global const float *imp, const int has_imp,
                          float norm, global float *err)
{
    ulong id = get_global_id(0);
    if (id >= groups * steps) return;
    ulong g = id / steps, r0, r1, c0, nc;
    if (block == 0) {
        r0 = g, r1 = g + 1, c0 = 0, nc = cols;
    } else {
        ulong nbc = (cols + block - 1) / block;
        r0 = g / nbc * block;
        r1 = rows - r0 < block ? rows : r0 + block;
        c0 = g % nbc * block;
        nc = cols - c0 < block ? cols - c0 : block;
    }
    float s = sc[id], z = zp[id];
    mq_tsum sum;
    mq_tsum_init(&sum, (r1 - r0) * nc);
    float qmin = kind == MQ_QK_FP8 ? -448.0f : MQ_QMIN(kind);
    float qmax = kind == MQ_QK_FP8 ? 448.0f : MQ_QMAX(kind);
    for (ulong r = r0; r < r1; r++) {
        for (ulong j = 0; j < nc; j++) {
            float w = mq_load1(src, r * cols + c0 + j, dt), d;
            if (kind == MQ_QK_FP8) {
                float v = fmin(fmax(mq_div(w, s), qmin), qmax);
                d = fabs(mq_e4m3_value(mq_e4m3(v)) * s - w);
            } else {
                float q = fmin(fmax(rint(mq_div(w, s) + z), qmin), qmax);
                d = fabs((q - z) * s - w);
            }
            float c = has_imp ? imp[c0 + j] : 1.0f;
            mq_tsum_add(&sum, c * mq_obs_pow(d, norm));
        }
    }
    err[id] = mq_tsum_end(&sum);
}

#endif /* cl_khr_fp64 */
