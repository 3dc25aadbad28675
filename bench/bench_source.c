/* bench_source: the dequantization of an FP8 block source (dequantize_source)
 * on the host back end and on an OpenCL device against the scalar reference,
 * and OpenCL's quantize_source (the values kept on the device) against its
 * two steps (dequantize_source into host memory, then quantize). Wall and
 * process CPU time, medians of alternating runs. */
#include "backend.h"
#include "devset.h"
#include "reference.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: bench_source [--rows R] [--cols C] [--iters N] [--device SPEC]\n"
    "An R x C (default 5632 x 2048) FP8 source in 128 x 128 blocks of F32 scales,\n"
    "read as BF16; the OpenCL rows need a device SPEC (default \"opencl\").\n";

typedef struct {
    double wall, cpu;
} tm2;

static tm2 now(void)
{
    struct timespec w, c;
    clock_gettime(CLOCK_MONOTONIC, &w);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
    return (tm2){w.tv_sec + w.tv_nsec * 1e-9, c.tv_sec + c.tv_nsec * 1e-9};
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum { M_REF, M_HOST, M_CL_DEQ, M_CL_TWO, M_CL_FUSED, M_COUNT };
static const char *const names[M_COUNT] = {
    "reference mq_ref_src_dequant", "host dequantize_source", "OpenCL dequantize_source",
    "OpenCL dequantize_source + quantize (W8A8 rows)", "OpenCL quantize_source (W8A8 rows)"};

int main(int argc, char **argv)
{
    size_t rows = 5632, cols = 2048;
    int iters = 5;
    const char *spec = "opencl";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
            cols = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            spec = argv[++i];
        else {
            fputs(usage, strcmp(argv[i], "--help") ? stderr : stdout);
            return strcmp(argv[i], "--help") ? 1 : 0;
        }
    }
    if (!rows || !cols || iters < 1 || iters > 1000) {
        fputs(usage, stderr);
        return 1;
    }
    size_t n = rows * cols, sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    uint8_t *codes = malloc(n), *q = malloc(n);
    float *scale = malloc(sr * sc * 4);
    uint16_t *vals = malloc(n * 2), *qs = malloc(rows * 2);
    int8_t *zp = malloc(rows);
    double *t[M_COUNT][2];
    if (!codes || !q || !scale || !vals || !qs || !zp) return 2;
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        codes[i] = (uint8_t)(x >> 56);
        if ((codes[i] & 0x7f) == 0x7f) codes[i] ^= 1;
    }
    for (size_t i = 0; i < sr * sc; i++)
        scale[i] = 1e-4f * (1.0f + (float)(i % 7) / 8);
    mq_srcdesc sd = mq_sd_fp8_block(128, 128, MQ_DTYPE_F32, MQ_DTYPE_BF16);
    mq_backend *host = NULL, *cl = NULL;
    const mq_device_sel sel = {.spec = spec};
    if (mq_backend_open_host(&host) != MQ_OK) return 2;
    if (mq_backend_open(&sel, &cl) != MQ_OK || strcmp(cl->backend, "opencl") != 0) {
        fprintf(stderr, "bench_source: no OpenCL device '%s': the OpenCL rows are left out\n",
                spec);
        mq_backend_free(cl);
        cl = NULL;
    }
    for (int m = 0; m < M_COUNT; m++)
        for (int k = 0; k < 2; k++)
            t[m][k] = calloc((size_t)iters, sizeof(double));
    for (int it = -1; it < iters; it++) { /* the first round is a warm-up */
        for (int m = 0; m < M_COUNT; m++) {
            if (m >= M_CL_DEQ && !cl) continue;
            size_t bad = 0;
            mq_status st = MQ_OK;
            tm2 a = now();
            if (m == M_REF)
                mq_ref_src_dequant(sd, codes, 0, n, cols, scale, vals);
            else if (m == M_HOST)
                st = mq_be_dequantize_source(host, sd, codes, 0, n, cols, scale, vals);
            else if (m == M_CL_DEQ)
                st = mq_be_dequantize_source(cl, sd, codes, 0, n, cols, scale, vals);
            else if (m == M_CL_TWO) {
                st = mq_be_dequantize_source(cl, sd, codes, 0, n, cols, scale, vals);
                if (st == MQ_OK)
                    st = mq_be_quantize(cl, mq_qd(MQ_QK_INT8, true), vals, MQ_DTYPE_BF16, rows,
                                        cols, q, qs, zp, &bad, NULL);
            } else {
                st = cl->ops->quantize_source(cl, mq_qd(MQ_QK_INT8, true), sd, codes, 0, cols,
                                              scale, rows, cols, q, qs, zp, &bad, NULL, vals);
            }
            tm2 b = now();
            if (st != MQ_OK) {
                fprintf(stderr, "bench_source: %s: %s\n", names[m], mq_last_error());
                return 2;
            }
            if (it >= 0) {
                t[m][0][it] = b.wall - a.wall;
                t[m][1][it] = b.cpu - a.cpu;
            }
        }
    }
    printf("%zu x %zu FP8 codes in 128 x 128 blocks (F32 scales) to BF16, %d alternating runs\n\n",
           rows, cols, iters);
    printf("| step | median ms | median CPU ms | M values/s |\n|---|---:|---:|---:|\n");
    for (int m = 0; m < M_COUNT; m++) {
        if (m >= M_CL_DEQ && !cl) continue;
        double w = median(t[m][0], iters), c = median(t[m][1], iters);
        printf("| %s | %.1f | %.1f | %.0f |\n", names[m], w * 1e3, c * 1e3, n / w / 1e6);
    }
    if (cl) printf("\nOpenCL device: %s\n", cl->device);
    for (int m = 0; m < M_COUNT; m++) {
        free(t[m][0]);
        free(t[m][1]);
    }
    mq_backend_free(host);
    mq_backend_free(cl);
    free(codes);
    free(q);
    free(scale);
    free(vals);
    free(qs);
    free(zp);
    return 0;
}
