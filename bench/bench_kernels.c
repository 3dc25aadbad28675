/* bench_kernels: the fused per-channel quantize kernel (OpenCL profiling events,
 * medians after an untimed warm-up) against a device buffer copy of the same
 * traffic and against the host reference, for LLM-sized weight shapes; with
 * --kinds, the int4 (groups), float8 (per channel and 128 x 128 blocks) and
 * MX (groups of 32) and NVFP4 (groups of 16) kernels the same way, against the host backend's CPU
 * kernels. */
#include "cl_api.h"
#include "reference.h"
#include "timing.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: bench_kernels [--quick] [--shapes RxC[,RxC...]] [--dtypes f32,f16,bf16]\n"
    "                     [--schemes sym,asym] [--iters N] [--host-iters N] [--no-host]\n"
    "                     [--no-ref] [--asym] [--device SPEC] [--wg N]\n"
    "                     [--kinds int8,int4,int4-asym,fp8,fp8-block,mxfp4,mxfp8,nvfp4] [--group "
    "N]\n"
    "Default shapes: 4096x4096,14336x4096,4096x14336,128256x4096; --quick: 1024x1024,4096x4096.\n"
    "Default scheme: sym (--asym: asym only). --no-host: neither end-to-end nor host reference;\n"
    "--no-ref: end-to-end but no host reference. --kinds: which code kinds (default int8);\n"
    "int4 in groups of --group values (default 128), fp8 per channel and in 128x128 blocks.\n";

typedef struct {
    size_t rows, cols;
} shape;

static size_t parse_shapes(const char *s, shape *out, size_t cap)
{
    size_t n = 0;
    while (*s && n < cap) {
        char *end;
        unsigned long long r = strtoull(s, &end, 10);
        if (*end != 'x') return 0;
        unsigned long long c = strtoull(end + 1, &end, 10);
        if (r == 0 || c == 0 || (*end && *end != ',')) return 0;
        out[n++] = (shape){(size_t)r, (size_t)c};
        s = *end ? end + 1 : end;
    }
    return n;
}

static void fill(void *p, mq_dtype dt, size_t n)
{
    uint64_t s = 0x2545f4914f6cdd1dULL;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float v = (float)(int32_t)(s >> 32) * (1.0f / 1073741824.0f);
        if (dt == MQ_DTYPE_F32)
            ((float *)p)[i] = v;
        else
            ((uint16_t *)p)[i] = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(v) : mq_f32_to_bf16(v);
    }
}

/* Median wall time of `iters` runs of the reference (be == NULL) or of the
 * backend's whole quantize_rows call, transfers included. */
static double time_quantize(mq_backend *be, const void *src, mq_dtype dt, size_t rows, size_t cols,
                            bool sym, int iters)
{
    size_t es = mq_dtype_size(dt);
    int8_t *q = malloc(rows * cols), *zp = malloc(rows);
    void *scale = malloc(rows * es);
    double *t = calloc((size_t)iters, sizeof *t), med = -1;
    if (!q || !zp || !scale || !t) goto done;
    for (int i = -1; i < iters; i++) { /* i == -1: untimed warm-up */
        size_t bad = 0;
        double t0 = mq_now_s();
        mq_status st =
            be ? be->ops->quantize(be, mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q, scale, zp,
                                   &bad, NULL)
               : mq_ref_quantize(mq_qd(MQ_QK_INT8, sym), src, dt, rows, cols, q, scale, zp, &bad);
        if (i >= 0) t[i] = mq_now_s() - t0;
        if (st != MQ_OK) goto done;
    }
    med = mq_median(t, (size_t)iters);
done:
    free(t);
    free(scale);
    free(zp);
    free(q);
    return med;
}

/* Host memory as the streaming pipeline gets it: the backend's staging
 * memory (pinned, or zero-copy) when it has any, else plain. */
static void *stage(mq_backend *be, size_t n, bool *staged)
{
    void *p = be->ops->staging_alloc ? be->ops->staging_alloc(be, n) : NULL;
    *staged = p != NULL;
    return p ? p : malloc(n);
}

static void unstage(mq_backend *be, void *p, bool staged)
{
    if (staged)
        be->ops->staging_free(be, p);
    else
        free(p);
}

/* Median wall time of the device's whole quantize_rows call with input and
 * outputs in staging memory, as the pipeline runs it (on a discrete device:
 * transfers overlapped with the kernel), and in *copies_s that of the blocking
 * upload of its input plus the download of its outputs from and to the same
 * memory, without the kernel; -1 on failure. */
static double time_e2e(mq_backend *be, const void *src, mq_dtype dt, size_t rows, size_t cols,
                       bool sym, int iters, double *copies_s)
{
    size_t es = mq_dtype_size(dt), n_in = rows * cols * es, n_out = rows * cols + rows * (es + 1);
    bool si = false, so = false;
    uint8_t *in = stage(be, n_in, &si), *out = stage(be, n_out, &so);
    double *t = calloc((size_t)iters, sizeof *t), med = -1, h2d = 0, d2h = 0;
    *copies_s = -1;
    if (!in || !out || !t) goto done;
    memcpy(in, src, n_in);
    for (int i = -1; i < iters; i++) { /* i == -1: untimed warm-up */
        size_t bad = 0;
        double t0 = mq_now_s();
        mq_status st =
            be->ops->quantize(be, mq_qd(MQ_QK_INT8, sym), in, dt, rows, cols, (int8_t *)out,
                              out + rows * cols, (int8_t *)out + rows * (cols + es), &bad, NULL);
        if (i >= 0) t[i] = mq_now_s() - t0;
        if (st != MQ_OK) goto done;
    }
    med = mq_median(t, (size_t)iters);
    if (mq_opencl_profile_transfer(be, in, n_in, out, n_out, iters, &h2d, &d2h) == MQ_OK)
        *copies_s = h2d + d2h;
done:
    free(t);
    if (in) unstage(be, in, si);
    if (out) unstage(be, out, so);
    return med;
}

enum { K_INT8, K_INT4, K_INT4_ASYM, K_FP8, K_FP8_BLOCK, K_MXFP4, K_MXFP8, K_NVFP4, K_COUNT };
static const char *const kind_names[K_COUNT] = {"int8",      "int4",  "int4-asym", "fp8",
                                                "fp8-block", "mxfp4", "mxfp8",     "nvfp4"};

/* What the table's kind k quantizes (FP8 blocks: 128 x 128). */
static mq_qdesc kind_desc(int k)
{
    switch (k) {
    case K_INT8:
        return mq_qd(MQ_QK_INT8, true);
    case K_INT4:
        return mq_qd(MQ_QK_INT4, true);
    case K_INT4_ASYM:
        return mq_qd(MQ_QK_INT4, false);
    case K_FP8:
        return mq_qd(MQ_QK_FP8, true);
    case K_MXFP4:
        return mq_qd(MQ_QK_MXFP4, true);
    case K_MXFP8:
        return mq_qd(MQ_QK_MXFP8, true);
    case K_NVFP4: {
        /* A global scale that is no power of two, as a real weight's. */
        mq_qdesc d = mq_qd(MQ_QK_NVFP4, true);
        d.gscale = mq_nvfp4_global_scale(3.7f, MQ_DTYPE_F32);
        return d;
    }
    default:
        return mq_qd_blocks(128);
    }
}

/* Median wall time of the host backend's call for d (its CPU kernels,
 * threaded) over rows x cols. */
static double time_host_kind(mq_backend *host, const void *src, mq_dtype dt, size_t rows,
                             size_t cols, mq_qdesc d, int iters)
{
    size_t es = mq_dtype_size(dt), nsc = mq_qdesc_scales(d, rows, cols);
    uint8_t *q = malloc(rows * cols);
    int8_t *zp = malloc(nsc);
    void *scale = malloc(nsc * es);
    double *t = calloc((size_t)iters, sizeof *t), med = -1;
    if (!q || !zp || !scale || !t) goto done;
    for (int i = -1; i < iters; i++) {
        size_t bad = 0;
        double t0 = mq_now_s();
        mq_status st = mq_be_quantize(host, d, src, dt, rows, cols, q, scale, zp, &bad, NULL);
        if (i >= 0) t[i] = mq_now_s() - t0;
        if (st != MQ_OK) goto done;
    }
    med = mq_median(t, (size_t)iters);
done:
    free(t);
    free(scale);
    free(zp);
    free(q);
    return med;
}

/* One line of the kinds table for a weight [out, in] = rows x cols. */
static int bench_kind(mq_backend *be, mq_backend *host, const void *src, mq_dtype dt, size_t rows,
                      size_t cols, int k, size_t group, int iters, int host_iters)
{
    size_t r = rows, c = cols;
    mq_qdesc d = kind_desc(k);
    if (k == K_INT4 || k == K_INT4_ASYM) {
        if (cols % group) {
            fprintf(stderr, "bench_kernels: %zu columns are not groups of %zu\n", cols, group);
            return 1;
        }
        r = rows * (cols / group); /* a row of the call is a group */
        c = group;
    }
    if (k == K_MXFP4 || k == K_MXFP8 || k == K_NVFP4) { /* 32 (16), whatever --group says */
        size_t g = k == K_NVFP4 ? 16 : 32;
        if (cols % g) {
            fprintf(stderr, "bench_kernels: %zu columns are not groups of %zu\n", cols, g);
            return 1;
        }
        r = rows * (cols / g);
        c = g;
    }
    mq_cl_profile p;
    if (mq_opencl_profile_quantize(be, d, src, dt, r, c, iters, &p) != MQ_OK) {
        fprintf(stderr, "bench_kernels: %zux%zu %s %s: %s\n", rows, cols, mq_dtype_name(dt),
                kind_names[k], mq_last_error());
        return 1;
    }
    double gb = (double)p.bytes * 1e-9;
    double ht = host ? time_host_kind(host, src, dt, r, c, d, host_iters) : -1;
    printf("| %zux%zu | %s | %s | %.0f | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | ", rows,
           cols, mq_dtype_name(dt), kind_names[k], gb * 1e3, p.chunks, p.kernel_s * 1e3,
           gb / p.kernel_s, gb / p.copy_s, p.copy_s / p.kernel_s, p.kernel_err_s * 1e3,
           p.kernel_err_s / p.kernel_s);
    if (ht > 0)
        printf("%.1f | %.2f | %.2fx |\n", ht * 1e3, gb / ht, ht / p.kernel_s);
    else
        printf("- | - | - |\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    shape shapes[16] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
    size_t n_shapes = 4;
    bool dts_on[3] = {true, true, true};
    int iters = 10, host_iters = 3;
    bool host = true, ref = true, schemes_on[2] = {true, false}; /* sym, asym */
    const char *device = "opencl";
    size_t wg = 0, group = 128;
    bool kinds_on[K_COUNT] = {true};
    static const struct option opts[] = {{"quick", no_argument, NULL, 'q'},
                                         {"shapes", required_argument, NULL, 's'},
                                         {"dtypes", required_argument, NULL, 'd'},
                                         {"iters", required_argument, NULL, 'i'},
                                         {"host-iters", required_argument, NULL, 'H'},
                                         {"no-host", no_argument, NULL, 'n'},
                                         {"asym", no_argument, NULL, 'a'},
                                         {"schemes", required_argument, NULL, 'S'},
                                         {"no-ref", no_argument, NULL, 'r'},
                                         {"device", required_argument, NULL, 'D'},
                                         {"wg", required_argument, NULL, 'w'},
                                         {"kinds", required_argument, NULL, 'k'},
                                         {"group", required_argument, NULL, 'g'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            shapes[0] = (shape){1024, 1024};
            shapes[1] = (shape){4096, 4096};
            n_shapes = 2;
            break;
        case 's':
            if (!(n_shapes = parse_shapes(optarg, shapes, 16))) {
                fprintf(stderr, "bench_kernels: bad --shapes '%s'\n", optarg);
                return 1;
            }
            break;
        case 'd': {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            memset(dts_on, 0, sizeof dts_on);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (!strcmp(t, "f32"))
                    dts_on[0] = true;
                else if (!strcmp(t, "f16"))
                    dts_on[1] = true;
                else if (!strcmp(t, "bf16"))
                    dts_on[2] = true;
                else {
                    fprintf(stderr, "bench_kernels: unknown dtype '%s'\n", t);
                    return 1;
                }
            }
            break;
        }
        case 'i':
            iters = atoi(optarg);
            break;
        case 'H':
            host_iters = atoi(optarg);
            break;
        case 'n':
            host = false;
            break;
        case 'a':
            schemes_on[0] = false;
            schemes_on[1] = true;
            break;
        case 'S': {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            memset(schemes_on, 0, sizeof schemes_on);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (!strcmp(t, "sym"))
                    schemes_on[0] = true;
                else if (!strcmp(t, "asym"))
                    schemes_on[1] = true;
                else {
                    fprintf(stderr, "bench_kernels: unknown scheme '%s'\n", t);
                    return 1;
                }
            }
            break;
        }
        case 'r':
            ref = false;
            break;
        case 'D':
            device = optarg;
            break;
        case 'w':
            wg = (size_t)atol(optarg);
            break;
        case 'k': {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", optarg);
            memset(kinds_on, 0, sizeof kinds_on);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                int f = -1;
                for (int i = 0; i < K_COUNT; i++)
                    if (!strcmp(t, kind_names[i])) f = i;
                if (f < 0) {
                    fprintf(stderr, "bench_kernels: unknown kind '%s'\n", t);
                    return 1;
                }
                kinds_on[f] = true;
            }
            break;
        }
        case 'g':
            group = (size_t)strtoull(optarg, NULL, 10);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 1;
        }
    }
    if (iters < 1 || host_iters < 1) {
        fputs(usage, stderr);
        return 1;
    }
    mq_cl_options o;
    mq_cl_options_init(&o);
    o.profiling = true;
    o.work_group = wg;
    bool none = false;
    mq_backend *be = NULL;
    if (mq_opencl_backend_open_opts(device, &o, &none, &be) != MQ_OK) {
        fprintf(stderr, "bench_kernels: %s\n", mq_last_error());
        return none ? 77 : 1;
    }
    printf("device: %s / %s (division %s, work-group %zu)\n", be->platform, be->device,
           mq_opencl_div_mode_name(be), mq_opencl_work_group(be));
    if (kinds_on[K_INT8]) {
        printf("int8 per channel; kernel and copy: median of %d profiled runs; host and "
               "end-to-end: median of %d wall-clock runs\n",
               iters, host_iters);
        printf(
            "end-to-end: quantize_rows from and to staging memory (%s); H2D+D2H: blocking "
            "upload of its input, then download of its outputs, same memory (target: kernel/copy "
            ">= 0.85; end-to-end/(H2D+D2H) < 1 when transfers overlap)\n\n",
            mq_opencl_overlaps(be) ? "transfers overlapped with kernels" : "no overlap");
        printf("| shape | dtype | scheme | MB moved | chunks | kernel ms | kernel GB/s | copy GB/s "
               "| kernel/copy | +stats ms | +stats/kernel | end-to-end GB/s | H2D+D2H ms | "
               "end-to-end/(H2D+D2H) | host ref ms | host ref GB/s | kernel vs host |\n");
        printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
               "|\n");
    }
    static const mq_dtype dts[3] = {MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16};
    int rc = 0;
    for (size_t s = 0; kinds_on[K_INT8] && s < n_shapes; s++) {
        for (int d = 0; d < 3; d++) {
            if (!dts_on[d]) continue;
            /* One tensor for every timing, so all of them see the same bytes. */
            size_t rows = shapes[s].rows, cols = shapes[s].cols;
            void *src = malloc(rows * cols * mq_dtype_size(dts[d]));
            if (!src) {
                fprintf(stderr, "bench_kernels: %zux%zu: out of memory\n", rows, cols);
                rc = 1;
                continue;
            }
            fill(src, dts[d], rows * cols);
            for (int k = 0; k < 2; k++) {
                if (!schemes_on[k]) continue;
                bool sym = k == 0;
                mq_cl_profile p;
                if (mq_opencl_profile_quantize(be, mq_qd(MQ_QK_INT8, sym), src, dts[d], rows, cols,
                                               iters, &p) != MQ_OK) {
                    fprintf(stderr, "bench_kernels: %zux%zu %s %s: %s\n", rows, cols,
                            mq_dtype_name(dts[d]), sym ? "sym" : "asym", mq_last_error());
                    rc = 1;
                    continue;
                }
                double gb = (double)p.bytes * 1e-9;
                double copies = -1;
                double e2e =
                    host ? time_e2e(be, src, dts[d], rows, cols, sym, host_iters, &copies) : -1;
                double hr = host && ref
                                ? time_quantize(NULL, src, dts[d], rows, cols, sym, host_iters)
                                : -1;
                printf("| %zux%zu | %s | %s | %.0f | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f "
                       "| ",
                       rows, cols, mq_dtype_name(dts[d]), sym ? "sym" : "asym", gb * 1e3, p.chunks,
                       p.kernel_s * 1e3, gb / p.kernel_s, gb / p.copy_s, p.copy_s / p.kernel_s,
                       p.kernel_err_s * 1e3, p.kernel_err_s / p.kernel_s);
                if (e2e > 0)
                    printf("%.2f | ", gb / e2e);
                else
                    printf("- | ");
                if (e2e > 0 && copies > 0)
                    printf("%.2f | %.2f | ", copies * 1e3, e2e / copies);
                else
                    printf("- | - | ");
                if (hr > 0)
                    printf("%.1f | %.2f | %.2fx |\n", hr * 1e3, gb / hr, hr / p.kernel_s);
                else
                    printf("- | - | - |\n");
                fflush(stdout);
            }
            free(src);
        }
    }
    bool other = false;
    for (int k = K_INT4; k < K_COUNT; k++)
        other = other || kinds_on[k];
    if (other) {
        mq_backend *hb = NULL;
        if (host && mq_backend_open_host(&hb) != MQ_OK) hb = NULL;
        printf("\nint4 (groups of %zu), fp8 (per channel, 128x128 blocks) MX (groups of 32) and "
               "NVFP4 (16); "
               "kernel and copy: "
               "median of %d profiled runs; host: the host backend's CPU kernels, median of %d "
               "wall-clock runs\n\n",
               group, iters, host_iters);
        printf("| shape | dtype | kind | MB moved | chunks | kernel ms | kernel GB/s | copy GB/s | "
               "kernel/copy | +stats ms | +stats/kernel | host ms | host GB/s | kernel vs host "
               "|\n");
        printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (size_t s = 0; s < n_shapes; s++)
            for (int d = 0; d < 3; d++) {
                if (!dts_on[d]) continue;
                size_t rows = shapes[s].rows, cols = shapes[s].cols;
                void *src = malloc(rows * cols * mq_dtype_size(dts[d]));
                if (!src) {
                    fprintf(stderr, "bench_kernels: %zux%zu: out of memory\n", rows, cols);
                    rc = 1;
                    continue;
                }
                fill(src, dts[d], rows * cols);
                for (int k = K_INT4; k < K_COUNT; k++)
                    if (kinds_on[k] &&
                        bench_kind(be, hb, src, dts[d], rows, cols, k, group, iters, host_iters))
                        rc = 1;
                free(src);
            }
        mq_backend_free(hb);
    }
    mq_backend_free(be);
    return rc;
}
