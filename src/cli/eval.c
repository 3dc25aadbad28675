/* monoquant eval: the output error of every quantized layer against its
 * original for the same inputs, as a table worst first, with the device that
 * ran the GEMMs and an optional JSON copy. */
#include "cli.h"
#include "dtype.h"
#include "outfile.h"
#include "timing.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char eval_usage[] =
    "usage: monoquant eval ORIGINAL QUANTIZED [options]\n"
    "\n"
    "Measures how much quantization changes each layer's output: for every INT8\n"
    "layer of QUANTIZED, Y = X W^T with the original weight and Y' = X W'^T with the\n"
    "dequantized one, for the same inputs X, computed on the device (CLBlast SGEMM).\n"
    "Layers are listed worst first with SQNR = 10 log10(|Y|^2 / |Y - Y'|^2) in dB,\n"
    "the relative error |Y - Y'| / |Y| and the largest |Y - Y'|.\n"
    "\n"
    "      --tokens N     rows of X per layer (default 64; with --inputs, every row)\n"
    "      --seed S       seed of the generated N(0,1) inputs (default 0)\n"
    "      --inputs FILE  safetensors file of real activations: each layer uses the\n"
    "                     first float tensor whose last dimension is its input width\n"
    "      --json FILE    also write the results as JSON\n"
    "      --device D     auto (default), host, opencl, gpu, cpu, P:D or a name\n"
    "  -h, --help         this text\n"
    "\n"
    "ORIGINAL and QUANTIZED may be safetensors files or model directories.\n";

enum { OPT_TOKENS = 256, OPT_SEED, OPT_INPUTS, OPT_JSON, OPT_DEVICE };

typedef struct {
    const char *original, *quantized, *json;
    mq_eval_options opt;
} eval_args;

/* msg may echo what the user typed (a library message naming a bad value):
 * escaped like arg. */
static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "monoquant eval: %s%s%s\n", mq_cli_esc(msg), arg ? " " : "",
            arg ? mq_cli_esc(arg) : "");
    fprintf(stderr, "try 'monoquant eval --help'\n");
    return MQ_EXIT_USAGE;
}

/* 0 to run, -1 after --help, else the exit code. */
static int parse_args(int argc, char **argv, eval_args *a)
{
    static const struct option opts[] = {
        {"tokens", required_argument, 0, OPT_TOKENS},
        {"seed", required_argument, 0, OPT_SEED},
        {"inputs", required_argument, 0, OPT_INPUTS},
        {"json", required_argument, 0, OPT_JSON},
        {"device", required_argument, 0, OPT_DEVICE},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    uint64_t v;
    int c;
    memset(a, 0, sizeof *a);
    mq_eval_options_init(&a->opt);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(eval_usage, stdout);
            return -1;
        case OPT_TOKENS:
            if (!mq_cli_parse_u64(optarg, &v, NULL) || v == 0 || v > (1ULL << 30))
                return usage_error("--tokens wants a whole number from 1 to 2^30, not", optarg);
            a->opt.tokens = (size_t)v;
            break;
        case OPT_SEED:
            if (!mq_cli_parse_u64(optarg, &v, NULL))
                return usage_error("--seed wants a whole number, not", optarg);
            a->opt.seed = v;
            break;
        case OPT_INPUTS:
            a->opt.inputs = optarg;
            break;
        case OPT_JSON:
            a->json = optarg;
            break;
        case OPT_DEVICE:
            a->opt.device = optarg;
            break;
        case ':':
            return usage_error("missing value for", argv[optind - 1]);
        default:
            return usage_error("unknown option", argv[optind - 1]);
        }
    }
    if (argc - optind < 2) return usage_error("needs ORIGINAL and QUANTIZED", NULL);
    if (argc - optind > 2) return usage_error("unexpected argument", argv[optind + 2]);
    a->original = argv[optind];
    a->quantized = argv[optind + 1];
    return 0;
}

typedef struct {
    bool tty; /* stderr is a terminal: a progress line runs there */
    bool drawn;
} progress_state;

static void on_progress(const mq_eval_progress *p, void *user)
{
    progress_state *s = user;
    if (s->drawn) {
        fputs("\r\033[K", stderr);
        s->drawn = false;
    }
    if (p->note) {
        fprintf(stderr, "monoquant: %s\n", mq_cli_esc(p->note));
    } else if (p->layer && s->tty) {
        fprintf(stderr, "[%zu/%zu] %s", p->layers_done + 1, p->layers_total, mq_cli_esc(p->layer));
        s->drawn = true;
    }
    fflush(stderr);
}

static void print_table(const mq_eval_result *r, const eval_args *a, double seconds)
{
    size_t n = mq_eval_result_count(r);
    int w = 5;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(mq_cli_esc(mq_eval_result_layer(r, i)->name));
        if (len > w) w = len < 72 ? len : 72;
    }
    printf("%-*s  %-20s %9s %11s %13s\n", w, "layer", "shape", "SQNR dB", "rel error",
           "max abs err");
    size_t undefined = 0;
    for (size_t i = 0; i < n; i++) {
        const mq_eval_layer *l = mq_eval_result_layer(r, i);
        char shape[160];
        mq_shape_format(l->rank, l->shape, shape, sizeof shape);
        if (l->sqnr_undefined) {
            undefined++;
            printf("%-*s  %-20s %9s %11s %13.3e\n", w, mq_cli_esc(l->name), shape, "undefined", "-",
                   l->max_abs_error);
            continue;
        }
        printf("%-*s  %-20s %9.2f %11.3e %13.3e\n", w, mq_cli_esc(l->name), shape, l->sqnr_db,
               l->rel_error, l->max_abs_error);
    }
    const mq_eval_layer *worst = mq_eval_result_worst(r);
    if (undefined == n) {
        /* 0/0 everywhere: no mean and no worst layer, said in words. */
        printf("%zu layer%s: SQNR undefined for every layer: %s\n", n, n == 1 ? "" : "s",
               mq_cli_esc(worst->sqnr_undefined));
    } else {
        printf("%zu layer%s: mean SQNR %.2f dB, worst %s (%.2f dB)\n", n, n == 1 ? "" : "s",
               mq_eval_result_mean_sqnr_db(r), mq_cli_esc(worst->name), worst->sqnr_db);
        if (undefined)
            printf("SQNR undefined for %zu layer%s, left out of the mean: %s\n", undefined,
                   undefined == 1 ? "" : "s",
                   mq_cli_esc(mq_eval_result_layer(r, n - 1)->sqnr_undefined));
    }
    if (a->opt.inputs)
        printf("inputs: rows of %s (%zu for the worst layer)\n", mq_cli_esc(a->opt.inputs),
               worst->tokens);
    else
        printf("inputs: %zu tokens per layer, N(0,1), seed %llu\n", worst->tokens,
               (unsigned long long)a->opt.seed);
    printf("device: %s%s%s%s%s; %.2f s\n", mq_cli_esc(mq_eval_result_backend(r)),
           *mq_eval_result_platform(r) ? " / " : "", mq_cli_esc(mq_eval_result_platform(r)),
           *mq_eval_result_device(r) ? " / " : "", mq_cli_esc(mq_eval_result_device(r)), seconds);
}

int mq_cli_eval(int argc, char **argv)
{
    eval_args a;
    mq_eval_result *res = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) return rc < 0 ? MQ_EXIT_OK : rc;
    const mq_cli_path paths[] = {
        {"ORIGINAL", a.original, false, false},
        {"QUANTIZED", a.quantized, false, false},
        {"--inputs", a.opt.inputs, false, false},
        {"--json", a.json, true, false},
    };
    if ((rc = mq_cli_check_paths("eval", paths, 4)) != MQ_EXIT_OK) return rc;
    mq_status st = MQ_OK;
    if (a.json && (st = mq_outfile_check(a.json, "evaluation report")) != MQ_OK)
        return mq_cli_fail(st);
    mq_cli_remove_stale(a.json);
    progress_state ps = {.tty = isatty(2) != 0, .drawn = false};
    /* MQ_DEVICE sets the device when no flag does. */
    if (!a.opt.device && getenv("MQ_DEVICE") && *getenv("MQ_DEVICE"))
        a.opt.device = getenv("MQ_DEVICE");
    a.opt.progress = on_progress;
    a.opt.progress_user = &ps;
    double t0 = mq_now_s();
    st = mq_eval_files(a.original, a.quantized, &a.opt, &res);
    if (ps.drawn) fputs("\r\033[K", stderr); /* a failed run leaves its progress line */
    if (st == MQ_OK && a.json) st = mq_eval_write_json(res, a.json);
    if (st != MQ_OK) {
        rc = mq_cli_fail(st);
    } else {
        print_table(res, &a, mq_now_s() - t0);
        if (a.json) {
            printf("wrote %s\n", mq_cli_esc(a.json));
            mq_cli_log_check(); /* the file is the product, the table only a log */
        }
    }
    mq_eval_result_free(res);
    return rc;
}
