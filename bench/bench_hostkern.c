/* The host quantize loop (mq_hk_quantize) alone, by the CPU time of the
 * calling thread: the least of N runs over one weight, so that another
 * program's load on the machine shows as little as it can. One line per
 * dtype, kind and error statistics on or off, in ns per value. */
#include "benchcpu.h"
#include "cpukern.h"
#include "dtype.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Normal-ish weights of about 0.02, as a model's, in dtype dt. */
static void fill(unsigned char *p, mq_dtype dt, size_t n)
{
    uint64_t s = 1;
    for (size_t i = 0; i < n; i++) {
        float v = ((float)(rng(&s) >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
        v += ((float)(rng(&s) >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
        uint32_t u;
        memcpy(&u, &v, 4);
        if (dt == MQ_DTYPE_F32) {
            memcpy(p + 4 * i, &v, 4);
        } else {
            uint16_t h = dt == MQ_DTYPE_BF16 ? (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)
                                             : mq_f32_to_f16(v);
            memcpy(p + 2 * i, &h, 2);
        }
    }
}

int main(int argc, char **argv)
{
    size_t rows = 5632, cols = 2048;
    int iters = argc > 1 ? atoi(argv[1]) : 9;
    static const mq_dtype dts[] = {MQ_DTYPE_F32, MQ_DTYPE_BF16, MQ_DTYPE_F16};
    static const char *const dtn[] = {"F32", "BF16", "F16"};
    static const struct {
        const char *name;
        mq_qkind k;
        size_t group; /* 0: per channel */
    } kinds[] = {{"int8 channel", MQ_QK_INT8, 0},     {"int4 group 128", MQ_QK_INT4, 128},
                 {"int4 group 32", MQ_QK_INT4, 32},   {"mxfp4 group 32", MQ_QK_MXFP4, 32},
                 {"nvfp4 group 16", MQ_QK_NVFP4, 16}, {"fp8 channel", MQ_QK_FP8, 0}};
    size_t n = rows * cols;
    unsigned char *src = malloc(n * 4), *q = malloc(n), *scale = malloc(n / 32 * 4 + 64);
    int8_t *zp = malloc(n / 16 + 64);
    if (!src || !q || !scale || !zp || iters < 1) return 1;
    printf("%-5s %-15s %-4s %9s\n", "dtype", "kind", "err", "ns/value");
    for (size_t di = 0; di < 3; di++) {
        fill(src, dts[di], n);
        for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
            size_t r = kinds[ki].group ? n / kinds[ki].group : rows;
            size_t c = kinds[ki].group ? kinds[ki].group : cols;
            mq_qdesc d = mq_qd(kinds[ki].k, true);
            /* NVFP4's global scale as a tensor of these weights gets it:
             * 448 * 6 / amax, amax about 0.04 */
            if (kinds[ki].k == MQ_QK_NVFP4) d.gscale = 448.0f * 6.0f / 0.04f;
            for (int e = 0; e < 2; e++) {
                double best = 1e30;
                for (int it = 0; it < iters; it++) {
                    mq_err_acc acc;
                    size_t bad = 0;
                    mq_err_acc_init(&acc);
                    double t0 = thread_cpu_s();
                    if (mq_hk_quantize(d, src, dts[di], r, c, q, scale, zp, &bad,
                                       e ? &acc : NULL) != MQ_OK)
                        return 1;
                    double t = thread_cpu_s() - t0;
                    if (t < best) best = t;
                }
                printf("%-5s %-15s %-4s %9.3f\n", dtn[di], kinds[ki].name, e ? "yes" : "no",
                       best * 1e9 / (double)n);
            }
        }
    }
    free(src);
    free(q);
    free(scale);
    free(zp);
    return 0;
}
