/* bench_eval: time of `monoquant eval` per GB of weights for a generated
 * llama-ish layer set (device and host), and CLBlast SGEMM throughput (median
 * after an untimed warm-up) beside an estimate of the device's peak. */
#include "cl_gemm.h"
#include "devset.h"
#include "monoquant.h"
#include "reference.h"
#include "timing.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: bench_eval [--device SPEC] [--layers N] [--hidden N] [--ffn N] [--tokens N]\n"
    "                  [--dtype F32|BF16|F16] [--iters N] [--no-host] [--quick]\n"
    "Default: 8 layers of [2048,2048] and [5632,2048] BF16 weights, 64 tokens, 5 SGEMM runs.\n"
    "--quick: 2 layers of [512,512] and [1408,512].\n";

typedef struct {
    const char *device;
    size_t layers, hidden, ffn, tokens;
    mq_dtype dtype;
    int iters;
    bool host;
} bench_opts;

/* The layer set: per layer an o_proj-like [hidden, hidden] and an up_proj-like
 * [ffn, hidden] weight, N(0, 0.02) values. Returns the bytes of weights. */
static uint64_t write_model(const bench_opts *o, const char *path)
{
    mq_model *m = NULL;
    size_t es = mq_dtype_size(o->dtype), big = o->ffn * o->hidden;
    unsigned char *buf = malloc(big * es);
    uint64_t bytes = 0, s = 0x9E3779B97F4A7C15ULL;
    if (!buf || mq_model_new(&m) != MQ_OK) goto fail;
    for (size_t l = 0; l < o->layers; l++) {
        for (int k = 0; k < 2; k++) {
            size_t rows = k ? o->ffn : o->hidden, n = rows * o->hidden;
            char name[128];
            snprintf(name, sizeof name, "model.layers.%zu.%s.weight", l,
                     k ? "mlp.up_proj" : "self_attn.o_proj");
            for (size_t i = 0; i < n; i++) {
                /* Sum of four uniforms: near-normal, cheap. */
                float v = 0.0f;
                for (int j = 0; j < 4; j++) {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    v += (float)(s >> 40) / 16777216.0f - 0.5f;
                }
                v *= 0.02f * 1.7320508f;
                if (o->dtype == MQ_DTYPE_F32)
                    memcpy(buf + 4 * i, &v, 4);
                else {
                    uint16_t h = o->dtype == MQ_DTYPE_F16 ? mq_f32_to_f16(v) : mq_f32_to_bf16(v);
                    memcpy(buf + 2 * i, &h, 2);
                }
            }
            int64_t shape[2] = {(int64_t)rows, (int64_t)o->hidden};
            if (mq_model_add_tensor(m, name, o->dtype, 2, shape, buf) != MQ_OK) goto fail;
            bytes += n * es;
        }
    }
    if (mq_model_save(m, path) != MQ_OK) goto fail;
    mq_model_free(m);
    free(buf);
    return bytes;
fail:
    fprintf(stderr, "bench_eval: building the model failed: %s\n", mq_last_error());
    mq_model_free(m);
    free(buf);
    return 0;
}

static double time_eval(const char *orig, const char *quant, const bench_opts *o,
                        const char *device, char *dev_name, size_t cap)
{
    mq_eval_options opt;
    mq_eval_result *r = NULL;
    mq_eval_options_init(&opt);
    opt.tokens = o->tokens;
    opt.device = device;
    double t0 = mq_now_s();
    if (mq_eval_files(orig, quant, &opt, &r) != MQ_OK) {
        fprintf(stderr, "bench_eval: eval failed: %s\n", mq_last_error());
        return -1;
    }
    double dt = mq_now_s() - t0;
    snprintf(dev_name, cap, "%s%s%s%s%s (worst layer %.2f dB)", mq_eval_result_backend(r),
             *mq_eval_result_platform(r) ? " / " : "", mq_eval_result_platform(r),
             *mq_eval_result_device(r) ? " / " : "", mq_eval_result_device(r),
             mq_eval_result_worst(r)->sqnr_db);
    mq_eval_result_free(r);
    return dt;
}

/* FP32 flops per cycle per core of the host CPU (PoCL's device), and why. */
static double cpu_flops_per_cycle(const char **why)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        if (__builtin_cpu_is("amd")) {
            *why = "AMD with AVX-512 (Zen 4: 512-bit ops on two 256-bit FMA pipes) = 2 x 8 "
                   "lanes x 2";
            return 32;
        }
        *why = "AVX-512 with two 512-bit FMA units = 2 x 16 lanes x 2";
        return 64;
    }
    if (__builtin_cpu_supports("avx2")) {
        *why = "AVX2 with two 256-bit FMA units = 2 x 8 lanes x 2";
        return 32;
    }
#endif
    *why = "unknown CPU";
    return 0;
}

static int parse(int argc, char **argv, bench_opts *o)
{
    static const struct option opts[] = {
        {"device", required_argument, 0, 'd'},
        {"layers", required_argument, 0, 'l'},
        {"hidden", required_argument, 0, 'H'},
        {"ffn", required_argument, 0, 'f'},
        {"tokens", required_argument, 0, 't'},
        {"dtype", required_argument, 0, 'T'},
        {"iters", required_argument, 0, 'i'},
        {"no-host", no_argument, 0, 'n'},
        {"quick", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    *o = (bench_opts){NULL, 8, 2048, 5632, 64, MQ_DTYPE_BF16, 5, true};
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->device = optarg;
            break;
        case 'l':
            o->layers = strtoull(optarg, NULL, 10);
            break;
        case 'H':
            o->hidden = strtoull(optarg, NULL, 10);
            break;
        case 'f':
            o->ffn = strtoull(optarg, NULL, 10);
            break;
        case 't':
            o->tokens = strtoull(optarg, NULL, 10);
            break;
        case 'i':
            o->iters = atoi(optarg);
            break;
        case 'n':
            o->host = false;
            break;
        case 'q':
            o->layers = 2, o->hidden = 512, o->ffn = 1408;
            break;
        case 'T':
            if (!strcmp(optarg, "F32"))
                o->dtype = MQ_DTYPE_F32;
            else if (!strcmp(optarg, "F16"))
                o->dtype = MQ_DTYPE_F16;
            else if (!strcmp(optarg, "BF16"))
                o->dtype = MQ_DTYPE_BF16;
            else
                return 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            return 1;
        }
    }
    if (!o->layers || !o->hidden || !o->ffn || !o->tokens || o->iters < 5) {
        fputs("bench_eval: sizes must be positive and --iters at least 5\n", stderr);
        return 1;
    }
    return 0;
}

static void sgemm_table(mq_backend *be, const bench_opts *o)
{
    unsigned units, mhz;
    bool cpu;
    const char *why = "";
    mq_clgemm_device_info(be, &units, &mhz, &cpu);
    double fpc = cpu ? cpu_flops_per_cycle(&why) : 0;
    double peak = (double)units * (double)mhz * 1e6 * fpc;
    const size_t shapes[][3] = {{o->tokens, o->hidden, o->hidden},
                                {o->tokens, o->ffn, o->hidden},
                                {o->hidden, o->hidden, o->hidden},
                                {o->hidden, o->ffn, o->hidden}};
    mq_clgemm *g = NULL;
    if (mq_clgemm_new(be, NULL, NULL, &g) != MQ_OK) {
        fprintf(stderr, "bench_eval: %s\n", mq_last_error());
        return;
    }
    printf("\nCLBlast SGEMM C[m,n] = A[m,k] B[n,k]^T on %s (median of %d after a warm-up)\n",
           be->device, o->iters);
    printf("%-22s %10s %12s %10s %10s\n", "m x n x k", "first s", "median ms", "TFLOP/s",
           "of peak");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
        double first, med;
        if (mq_clgemm_time_sgemm(g, m, n, k, o->iters, &first, &med) != MQ_OK) {
            fprintf(stderr, "bench_eval: %s\n", mq_last_error());
            continue;
        }
        double tf = 2.0 * (double)m * (double)n * (double)k / med / 1e12;
        char dims[48], pct[16] = "n/a";
        snprintf(dims, sizeof dims, "%zu x %zu x %zu", m, n, k);
        if (peak > 0) snprintf(pct, sizeof pct, "%.1f%%", 100.0 * tf * 1e12 / peak);
        printf("%-22s %10.3f %12.3f %10.4f %10s\n", dims, first, med * 1e3, tf, pct);
    }
    if (peak > 0)
        printf("peak estimate: %u compute units x %.3f GHz x %.0f FP32 flops/cycle (%s) = "
               "%.3f TFLOP/s\n",
               units, mhz / 1e3, fpc, why, peak / 1e12);
    else
        printf("peak estimate: n/a (%s device: no per-architecture table)\n",
               cpu ? "unknown CPU" : "non-CPU");
    mq_clgemm_free(g);
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) {
        if (rc > 0) fputs(usage, stderr);
        return rc < 0 ? 0 : 2;
    }
    const char *tmp = getenv("TMPDIR");
    char dir[4096], orig[4200], quant[4200], name[600];
    snprintf(dir, sizeof dir, "%s/bench-eval-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("bench_eval: mkdtemp");
        return 1;
    }
    snprintf(orig, sizeof orig, "%s/orig.safetensors", dir);
    snprintf(quant, sizeof quant, "%s/int8.safetensors", dir);
    rc = 1;
    mq_backend *be = NULL;
    uint64_t bytes = write_model(&o, orig);
    mq_config cfg;
    mq_config_init(&cfg);
    if (o.device) mq_config_set_device(&cfg, o.device);
    if (!bytes || mq_quantize_file(orig, quant, &cfg, NULL) != MQ_OK) {
        fprintf(stderr, "bench_eval: %s\n", mq_last_error());
        goto done;
    }
    double gb = (double)bytes / 1e9;
    double flops = 4.0 * (double)o.tokens * (double)bytes / (double)mq_dtype_size(o.dtype);
    printf("weights: %zu x [%zu,%zu] + %zu x [%zu,%zu] %s = %.3f GB; %zu tokens per layer\n",
           o.layers, o.hidden, o.hidden, o.layers, o.ffn, o.hidden, mq_dtype_name(o.dtype), gb,
           o.tokens);
    printf("%-26s %9s %9s %12s  %s\n", "eval run", "seconds", "s/GB", "GEMM GFLOP/s", "device");
    const char *dev = o.device ? o.device : "auto";
    for (int run = 0; run < 3; run++) {
        if (run == 2 && !o.host) break;
        double t = time_eval(orig, quant, &o, run == 2 ? "host" : dev, name, sizeof name);
        if (t < 0) goto done;
        printf("%-26s %9.3f %9.3f %12.2f  %s\n",
               run == 0   ? "device (first: builds)"
               : run == 1 ? "device"
                          : "host reference",
               t, t / gb, flops / t / 1e9, name);
    }
    const mq_device_sel sel = {.spec = cfg.device};
    if (mq_backend_open(&sel, &be) == MQ_OK && mq_clgemm_supported(be))
        sgemm_table(be, &o);
    else
        printf("\nno OpenCL device: no SGEMM table\n");
    rc = 0;
done:
    mq_backend_free(be);
    mq_config_free(&cfg);
    unlink(orig);
    unlink(quant);
    rmdir(dir);
    return rc;
}
