/* The mse observer's search (src/numerics/observer.h): the error of every
 * candidate step of every group, bit-identical to the reference's, one
 * work-item per (group, step). The host gathers each group's statistics once
 * and turns them into every step's scale and zero point (mq_ref_params
 * itself), so this file holds only the error sum; the host then keeps each
 * group's improving steps. Work-items of one group are neighbours and read
 * the same values, which the caches serve once. */

/* mq_obs_pow of src/numerics/obspow.h: the same fp32 operations in the same
 * order (FP_CONTRACT is off for the whole program, see numerics.cl). */
inline float mq_obs_pow_two(float k)
{
    return as_float((uint)((int)k + 127) << 23);
}

inline float mq_obs_pow(float x, float n)
{
    uint tiny = as_uint(x) < 0x00800000u ? 0xffffffffu : 0u;
    uint b = (as_uint(x * 0x1p23f) & tiny) | (as_uint(x) & ~tiny);
    uint frac = b & 0x007fffffu;
    uint up = frac > 0x003504f3u ? 0xffffffffu : 0u;
    float m = as_float(frac | (0x3f000000u & up) | (0x3f800000u & ~up));
    float e = (float)((int)((b >> 23) & 0xffu) - 127 + (int)(up & 1u) - (int)(tiny & 23u));
    float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float s = 1.0f / 11.0f;
    s = s * t2 + 1.0f / 9.0f;
    s = s * t2 + 1.0f / 7.0f;
    s = s * t2 + 1.0f / 5.0f;
    s = s * t2 + 1.0f / 3.0f;
    s = s * t2 + 1.0f;
    float l = 2.0f * t * s * 1.44269504f;
    float nh = as_float(as_uint(n) & 0xfffff000u), nl = n - nh;
    float a = nh * e;
    float k1 = (a + 12582912.0f) - 12582912.0f;
    float f = (a - k1) + (nl * e + n * l);
    float k2 = (f + 12582912.0f) - 12582912.0f;
    float g = f - k2;
    float p = 1.5252734e-5f;
    p = p * g + 1.5403530e-4f;
    p = p * g + 1.3333558e-3f;
    p = p * g + 9.6181291e-3f;
    p = p * g + 5.5504109e-2f;
    p = p * g + 2.4022651e-1f;
    p = p * g + 6.9314718e-1f;
    p = p * g + 1.0f;
    float k = k1 + k2;
    k = k > -226.0f ? k : -226.0f;
    k = k < 254.0f ? k : 254.0f;
    float ka = k > -100.0f ? k : -100.0f;
    ka = ka < 127.0f ? ka : 127.0f;
    float res = p * mq_obs_pow_two(ka) * mq_obs_pow_two(k - ka);
    res = x == 0.0f ? 0.0f : res;
    res = x == INFINITY ? x : res;
    return x == x ? res : x;
}

/* For item (g, i) = (id / steps, id % steps): err[id] = the sum over group
 * g (rows of the call, or block x block blocks), in value order, of
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
    float s = sc[id], z = zp[id], sum = 0.0f;
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
            sum += c * mq_obs_pow(d, norm);
        }
    }
    err[id] = sum;
}
