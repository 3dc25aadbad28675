/* The mse observer's host search (mq_hk_mse_scan) alone, on the calling
 * thread, by its CPU time: the least of N runs over one weight, so that
 * another program's load on the machine shows as little as it can. One line
 * per kind and group, in ns per weight value (all the candidate steps);
 * "+imp" rows weigh the terms by an importance per column (--imatrix). */
#include "benchcpu.h"
#include "cpukern.h"
#include "observer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Normal-ish F32 weights of about 0.02, as a model's, with a few outliers
 * (which is what makes the search shrink the range). */
static void fill(float *p, size_t n)
{
    uint64_t s = 1;
    for (size_t i = 0; i < n; i++) {
        float v = 0.0f;
        for (int k = 0; k < 4; k++)
            v += ((float)(rng(&s) >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
        p[i] = rng(&s) % 997 == 0 ? v * 6.0f : v;
    }
}

int main(int argc, char **argv)
{
    size_t rows = 1024, cols = 1024;
    int iters = argc > 1 ? atoi(argv[1]) : 5;
    static const struct {
        const char *name;
        mq_qkind k;
        bool sym;
        size_t group; /* 0: per channel */
        bool imp;
    } kinds[] = {{"int4 channel", MQ_QK_INT4, true, 0, false},
                 {"int4 group 64", MQ_QK_INT4, true, 64, false},
                 {"int4a group 64", MQ_QK_INT4, false, 64, false},
                 {"int4 group 128", MQ_QK_INT4, true, 128, false},
                 {"int8 channel", MQ_QK_INT8, true, 0, false},
                 {"fp8 channel", MQ_QK_FP8, true, 0, false},
                 {"int4 ch +imp", MQ_QK_INT4, true, 0, true},
                 {"int4 g64 +imp", MQ_QK_INT4, true, 64, true}};
    size_t n = rows * cols;
    mq_obs_mse o = mq_obs_mse_defaults();
    size_t steps = mq_obs_mse_steps(&o), mb = mq_obs_mse_mask_bytes(&o);
    float *src = malloc(n * sizeof *src), *imp = malloc(cols * sizeof *imp);
    uint8_t *mask = malloc(n * mb);
    bool *improved = calloc(steps, 1);
    if (!src || !imp || !mask || !improved || iters < 1) return 1;
    fill(src, n);
    uint64_t seed = 7;
    for (size_t i = 0; i < cols; i++) /* positive, spread over two decades */
        imp[i] = 0.1f + (float)(rng(&seed) >> 40) / (float)(1 << 24) * (float)(1 + i % 10);
    printf("%-15s %9s\n", "kind", "ns/value");
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        size_t r = kinds[ki].group ? n / kinds[ki].group : rows;
        size_t c = kinds[ki].group ? kinds[ki].group : cols;
        mq_qdesc d = mq_qd(kinds[ki].k, kinds[ki].sym);
        double best = 1e30;
        for (int it = 0; it < iters; it++) {
            size_t bad = 0;
            double t0 = thread_cpu_s();
            const float *w = kinds[ki].imp ? imp : NULL;
            if (mq_hk_mse_scan(NULL, d, &o, w, src, MQ_DTYPE_F32, r, c, mask, improved, &bad) !=
                MQ_OK)
                return 1;
            double t = thread_cpu_s() - t0;
            if (t < best) best = t;
        }
        printf("%-15s %9.3f\n", kinds[ki].name, best * 1e9 / (double)n);
    }
    free(src);
    free(imp);
    free(mask);
    free(improved);
    return 0;
}
