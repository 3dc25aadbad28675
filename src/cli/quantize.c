/* monoquant quantize: settings from flags > --config file > defaults, then the
 * run, the per-tensor lines, the totals, the skipped list and the report. */
#include "cli.h"
#include "coverage.h"
#include "dtype.h"
#include "outfile.h"
#include "scheme.h"
#include "timing.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char quantize_usage[] =
    "usage: monoquant quantize IN.safetensors -o OUT.safetensors [options]\n"
    "\n"
    "Quantizes every Linear (rank 2) and Conv (rank 3-5) weight per output channel\n"
    "to INT8 (or as --preset says), or casts float tensors to FP16. Embeddings,\n"
    "lm_head, biases and norms stay as they are and are listed with the reason.\n"
    "The input is never modified.\n"
    "\n"
    "  -o, --output FILE     output file (required; must not be the input)\n"
    "      --preset NAME     a compressed-tensors preset: W8A8 (= INT8, default),\n"
    "                        W8A16, W4A16, W4A16_ASYM, FP8_DYNAMIC, FP8_BLOCK,\n"
    "                        MXFP4A16, MXFP4, MXFP8A16, MXFP8, NVFP4A16;\n"
    "                        also W8A16_ASYM and FP16 (flags below refine it)\n"
    "      --group-size N    values per group along the input dimension (W8A16,\n"
    "                        W4A16: 128); -1 or 'channel' for per channel\n"
    "      --dtype T         int8 (default), int4, fp8, mxfp4, mxfp8, nvfp4 or fp16\n"
    "      --observer O      how each group's range is chosen: minmax (default) or\n"
    "                        mse (llm-compressor's MSE search of the clipping range)\n"
    "      --observer-maxshrink X, --observer-grid N, --observer-norm X,\n"
    "      --observer-patience N  the mse search's options (0.2, 100, 2.4, 5)\n"
    "      --imatrix FILE    mse: weigh each column's error by llama.cpp's importance\n"
    "                        matrix (GGUF or legacy .dat, from llama-imatrix)\n"
    "      --scheme S        sym (default) or asym (with zero points)\n"
    "      --per-tensor      one scale per tensor instead of per channel\n"
    "      --per-channel     one scale per output channel (default)\n"
    "      --weights-only    int8 sym: weights only (pack-quantized, vLLM WNA16)\n"
    "                        instead of W8A8 with dynamic int8 activations\n"
    "      --include PAT     also quantize tensors matching PAT (repeatable)\n"
    "      --exclude PAT     keep tensors matching PAT in float (repeatable, wins)\n"
    "                        PAT is a shell glob or re:REGEX (whole name)\n"
    "      --skip-nonfinite  skip tensors holding NaN/Inf instead of failing\n"
    "      --fp16-saturate   fp16: clamp overflow to +-65504 instead of +-inf\n"
    "      --dequant-dtype T a quantized source's values (FP8 blocks, MXFP4,\n"
    "                        compressed-tensors) before quantizing: model (its\n"
    "                        torch_dtype, default) or f32\n"
    "      --follow-symlinks follow symbolic links out of a model directory (by\n"
    "                        default only links inside it, or into the Hugging\n"
    "                        Face cache's blobs/, are followed; others are errors)\n"
    "      --device D        auto (default), host, opencl, gpu, cpu, P:D or a name;\n"
    "                        or several, comma-separated (0:0,0:1), or gpu:all,\n"
    "                        cpu:all, opencl:all, all (every GPU and accelerator):\n"
    "                        a model directory's shards are spread over them (the\n"
    "                        memory limit is shared); a single file runs on the\n"
    "                        first of them\n"
    "      --memory-limit N  peak staging memory, e.g. 512M or 2G (default 1G)\n"
    "      --config FILE     JSON settings; command-line flags win over it\n"
    "      --report FILE     write a JSON report of the run\n"
    "  -q, --quiet           print nothing but errors\n"
    "\n"
    "IN may also be a Hugging Face model directory (config.json, model.safetensors\n"
    "or shards with model.safetensors.index.json); OUT is then a new directory.\n"
    "On a terminal a progress bar runs on stderr; per-tensor lines go to stdout.\n"
    "  -h, --help            this text\n";

enum {
    OPT_DTYPE = 256,
    OPT_SCHEME,
    OPT_PER_TENSOR,
    OPT_PER_CHANNEL,
    OPT_WEIGHTS_ONLY,
    OPT_INCLUDE,
    OPT_EXCLUDE,
    OPT_SKIP_NONFINITE,
    OPT_SATURATE,
    OPT_DEVICE,
    OPT_CONFIG,
    OPT_REPORT,
    OPT_MEMORY,
    OPT_FOLLOW_SYMLINKS,
    OPT_DEQUANT_DTYPE,
    OPT_PRESET,
    OPT_GROUP_SIZE,
    OPT_OBSERVER,
    OPT_OBS_MAXSHRINK,
    OPT_OBS_GRID,
    OPT_OBS_NORM,
    OPT_OBS_PATIENCE,
    OPT_IMATRIX
};

/* Flags as given; applied over the config file so that they win. */
typedef struct {
    const char *in, *out, *config, *report, *device, *preset, *imatrix;
    long long group_size; /* -2: not given; 0: per channel */
    int dtype, symmetric, per_channel, weights_only, skip_nonfinite, saturate, follow,
        dequant_f32; /* -1: not given */
    const char **include, **exclude;
    size_t n_include, n_exclude;
    uint64_t memory_limit; /* 0: not given */
    bool quiet;
    int observer;                             /* -1: not given */
    double obs_maxshrink, obs_grid, obs_norm; /* 0: not given */
    long long obs_patience;                   /* 0: not given */
} quantize_args;

/* A positive finite number; false when malformed. */
static bool parse_positive(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v > 0.0) || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* "512M", "2G", "1048576" -> bytes; false when malformed or zero. */
static bool parse_size(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v, mul = 1;
    if (!mq_cli_parse_u64(s, &v, &end)) return false;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1ULL << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ULL << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ULL << 30;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' && mul > 1) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v == 0 || __builtin_mul_overflow(v, mul, out)) return false;
    return true;
}

/* msg may echo what the user typed (a library message naming a bad value):
 * escaped like arg. */
static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "monoquant quantize: %s%s%s\n", mq_cli_esc(msg), arg ? " " : "",
            arg ? mq_cli_esc(arg) : "");
    fprintf(stderr, "try 'monoquant quantize --help'\n");
    return MQ_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, quantize_args *a)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},
        {"dtype", required_argument, 0, OPT_DTYPE},
        {"scheme", required_argument, 0, OPT_SCHEME},
        {"per-tensor", no_argument, 0, OPT_PER_TENSOR},
        {"per-channel", no_argument, 0, OPT_PER_CHANNEL},
        {"weights-only", no_argument, 0, OPT_WEIGHTS_ONLY},
        {"include", required_argument, 0, OPT_INCLUDE},
        {"exclude", required_argument, 0, OPT_EXCLUDE},
        {"skip-nonfinite", no_argument, 0, OPT_SKIP_NONFINITE},
        {"fp16-saturate", no_argument, 0, OPT_SATURATE},
        {"device", required_argument, 0, OPT_DEVICE},
        {"config", required_argument, 0, OPT_CONFIG},
        {"report", required_argument, 0, OPT_REPORT},
        {"memory-limit", required_argument, 0, OPT_MEMORY},
        {"follow-symlinks", no_argument, 0, OPT_FOLLOW_SYMLINKS},
        {"dequant-dtype", required_argument, 0, OPT_DEQUANT_DTYPE},
        {"preset", required_argument, 0, OPT_PRESET},
        {"group-size", required_argument, 0, OPT_GROUP_SIZE},
        {"observer", required_argument, 0, OPT_OBSERVER},
        {"observer-maxshrink", required_argument, 0, OPT_OBS_MAXSHRINK},
        {"observer-grid", required_argument, 0, OPT_OBS_GRID},
        {"observer-norm", required_argument, 0, OPT_OBS_NORM},
        {"observer-patience", required_argument, 0, OPT_OBS_PATIENCE},
        {"imatrix", required_argument, 0, OPT_IMATRIX},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    memset(a, 0, sizeof *a);
    a->dtype = a->symmetric = a->per_channel = a->weights_only = a->skip_nonfinite = a->saturate =
        a->follow = a->dequant_f32 = -1;
    a->group_size = -2;
    a->observer = -1;
    a->include = calloc((size_t)argc, sizeof *a->include);
    a->exclude = calloc((size_t)argc, sizeof *a->exclude);
    if (!a->include || !a->exclude) return usage_error("out of memory", NULL);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            a->out = optarg;
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'h':
            fputs(quantize_usage, stdout);
            return -1;
        case OPT_DTYPE: {
            mq_qdtype d;
            if (!mq_qdtype_parse(optarg, &d))
                return usage_error("--dtype must be int8, int4, fp8 or fp16, not", optarg);
            a->dtype = (int)d;
            break;
        }
        case OPT_PRESET: {
            mq_config probe;
            mq_config_init(&probe);
            if (mq_config_set_preset(&probe, optarg) != MQ_OK)
                return usage_error(mq_last_error(), NULL);
            a->preset = optarg;
            break;
        }
        case OPT_GROUP_SIZE: {
            uint64_t g = 0;
            if (!strcmp(optarg, "channel") || !strcmp(optarg, "-1"))
                a->group_size = 0;
            else if (mq_cli_parse_u64(optarg, &g, NULL) && g > 0 && g <= INT64_MAX)
                a->group_size = (long long)g;
            else
                return usage_error("--group-size wants a positive number, -1 or 'channel', not",
                                   optarg);
            break;
        }
        case OPT_SCHEME:
            if (!strcmp(optarg, "sym"))
                a->symmetric = 1;
            else if (!strcmp(optarg, "asym"))
                a->symmetric = 0;
            else
                return usage_error("--scheme must be sym or asym, not", optarg);
            break;
        case OPT_PER_TENSOR:
            a->per_channel = 0;
            break;
        case OPT_PER_CHANNEL:
            a->per_channel = 1;
            break;
        case OPT_WEIGHTS_ONLY:
            a->weights_only = 1;
            break;
        case OPT_INCLUDE:
            a->include[a->n_include++] = optarg;
            break;
        case OPT_EXCLUDE:
            a->exclude[a->n_exclude++] = optarg;
            break;
        case OPT_SKIP_NONFINITE:
            a->skip_nonfinite = 1;
            break;
        case OPT_SATURATE:
            a->saturate = 1;
            break;
        case OPT_FOLLOW_SYMLINKS:
            a->follow = 1;
            break;
        case OPT_DEQUANT_DTYPE:
            if (strcmp(optarg, "f32") != 0 && strcmp(optarg, "model") != 0)
                return usage_error("--dequant-dtype takes model or f32, not", optarg);
            a->dequant_f32 = strcmp(optarg, "f32") == 0;
            break;
        case OPT_DEVICE:
            a->device = optarg;
            break;
        case OPT_CONFIG:
            a->config = optarg;
            break;
        case OPT_REPORT:
            a->report = optarg;
            break;
        case OPT_MEMORY:
            if (!parse_size(optarg, &a->memory_limit))
                return usage_error("--memory-limit wants a size like 512M or 2G, not", optarg);
            break;
        case OPT_OBSERVER:
            if (!strcmp(optarg, "minmax"))
                a->observer = MQ_OBSERVER_MINMAX;
            else if (!strcmp(optarg, "mse"))
                a->observer = MQ_OBSERVER_MSE;
            else
                return usage_error("--observer must be minmax or mse, not", optarg);
            break;
        case OPT_OBS_MAXSHRINK:
            if (!parse_positive(optarg, &a->obs_maxshrink) || a->obs_maxshrink > 1.0)
                return usage_error("--observer-maxshrink wants a number in (0, 1], not", optarg);
            break;
        case OPT_OBS_GRID:
            if (!parse_positive(optarg, &a->obs_grid))
                return usage_error("--observer-grid wants a positive number, not", optarg);
            break;
        case OPT_OBS_NORM:
            if (!parse_positive(optarg, &a->obs_norm))
                return usage_error("--observer-norm wants a positive number, not", optarg);
            break;
        case OPT_OBS_PATIENCE: {
            uint64_t p = 0;
            if (!mq_cli_parse_u64(optarg, &p, NULL) || p == 0 || p > 1000000)
                return usage_error("--observer-patience wants a positive integer, not", optarg);
            a->obs_patience = (long long)p;
            break;
        }
        case OPT_IMATRIX:
            if (!*optarg) return usage_error("--imatrix wants a file, not", "''");
            a->imatrix = optarg;
            break;
        case ':':
            return usage_error("missing value for", argv[optind - 1]);
        default:
            return usage_error("unknown option", argv[optind - 1]);
        }
    }
    if (optind >= argc) return usage_error("missing input file", NULL);
    if (optind + 1 < argc) return usage_error("unexpected argument", argv[optind + 1]);
    a->in = argv[optind];
    if (!a->out) return usage_error("missing -o OUTPUT", NULL);
    return 0;
}

/* Defaults, then the config file, then the flags given. */
static mq_status resolve_config(const quantize_args *a, mq_config *cfg)
{
    mq_status st = MQ_OK;
    mq_config_init(cfg);
    if (a->config && (st = mq_config_load_json(cfg, a->config)) != MQ_OK) return st;
    /* The preset sets the scheme; the scheme flags given refine it. */
    if (a->preset && (st = mq_config_set_preset(cfg, a->preset)) != MQ_OK) return st;
    if (a->dtype >= 0) cfg->dtype = (mq_qdtype)a->dtype;
    if (a->group_size >= 0) cfg->group_size = (size_t)a->group_size;
    if (a->symmetric >= 0) cfg->symmetric = a->symmetric;
    if (a->per_channel >= 0) cfg->per_channel = a->per_channel;
    if (a->weights_only >= 0) cfg->weights_only = a->weights_only;
    if (a->skip_nonfinite >= 0) cfg->skip_nonfinite = a->skip_nonfinite;
    if (a->saturate >= 0) cfg->fp16_saturate = a->saturate;
    if (a->follow >= 0) cfg->follow_symlinks = a->follow;
    if (a->observer >= 0) cfg->observer = (mq_observer)a->observer;
    if (a->obs_maxshrink > 0.0) cfg->observer_maxshrink = a->obs_maxshrink;
    if (a->obs_grid > 0.0) cfg->observer_grid = a->obs_grid;
    if (a->obs_norm > 0.0) cfg->observer_norm = a->obs_norm;
    if (a->obs_patience > 0) cfg->observer_patience = (unsigned)a->obs_patience;
    if (a->dequant_f32 >= 0) cfg->dequant_f32 = a->dequant_f32;
    for (size_t i = 0; i < a->n_include && st == MQ_OK; i++)
        st = mq_config_add_include(cfg, a->include[i]);
    for (size_t i = 0; i < a->n_exclude && st == MQ_OK; i++)
        st = mq_config_add_exclude(cfg, a->exclude[i]);
    if (st == MQ_OK && a->device) st = mq_config_set_device(cfg, a->device);
    if (st == MQ_OK && a->imatrix) st = mq_config_set_imatrix(cfg, a->imatrix);
    /* MQ_DEVICE sets the device when neither a flag nor the config file does. */
    if (st == MQ_OK && !cfg->device && getenv("MQ_DEVICE") && *getenv("MQ_DEVICE"))
        st = mq_config_set_device(cfg, getenv("MQ_DEVICE"));
    if (a->memory_limit) cfg->memory_limit = a->memory_limit;
    /* A scheme the flags cannot form is a usage error, as a bad flag is. */
    if (st == MQ_OK && mq_config_check(cfg) != MQ_OK) st = MQ_STATUS_E_INVALID_ARG;
    return st;
}

/* What the progress callback needs between calls. */
typedef struct {
    bool bar; /* stderr is a terminal: draw a bar there */
    bool lines;
    double t0, last_draw;
    int bar_drawn;
    const char *preset;   /* named on each quantized tensor's line */
    const char *observer; /* likewise */
    bool imatrix;         /* an importance matrix weighs the search */
    bool fp8;             /* clamped codes are saturated ones */
} progress_state;

static void print_line(const mq_progress *p, const progress_state *ps)
{
    const mq_report_entry *e = p->finished;
    char shape[160], bin[32], bout[32];
    mq_shape_format(e->rank, e->shape, shape, sizeof shape);
    int digits = snprintf(NULL, 0, "%zu", p->tensors_total);
    printf("[%*zu/%zu] %-40s %-16s %5s -> %-4s %10s -> %s", digits, p->tensors_done,
           p->tensors_total, mq_cli_esc(e->name), shape, mq_dtype_name(e->dtype_in),
           e->action == MQ_ACTION_SKIP ? mq_dtype_name(e->dtype_in) : mq_dtype_name(e->dtype_out),
           mq_cli_bytes(e->bytes_in, bin, sizeof bin),
           mq_cli_bytes(e->bytes_out, bout, sizeof bout));
    if (e->action == MQ_ACTION_SKIP) printf("  kept: %s", mq_cli_esc(e->reason));
    if (e->fp16_overflow)
        printf("  %llu values overflowed fp16", (unsigned long long)e->fp16_overflow);
    if (e->action == MQ_ACTION_QUANTIZE) {
        printf("  %s %s", ps->preset ? ps->preset : "", ps->observer ? ps->observer : "");
        if (isinf(e->weight_sqnr_db) && e->weight_sqnr_db > 0)
            printf(" SQNR inf dB");
        else
            printf(" SQNR %.1f dB", e->weight_sqnr_db);
        if (e->clamped)
            printf(" %s %llu", ps->fp8 ? "saturated" : "clamped", (unsigned long long)e->clamped);
        if (ps->imatrix) printf(" %s", e->imatrix ? "imatrix" : "no imatrix entry");
    }
    putchar('\n');
}

static void draw_bar(progress_state *s, const mq_progress *p, double now)
{
    const int width = 30;
    double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 1.0;
    double secs = now - s->t0, rate = secs > 0 ? (double)p->bytes_done / secs : 0.0;
    double eta = rate > 0 ? (double)(p->bytes_total - p->bytes_done) / rate : 0.0;
    char bar[64], done[32], total[32];
    int fill = (int)(frac * width);
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %zu/%zu tensors  %s / %s  %.2f GB/s  ETA %.0fs \033[K", bar,
            p->tensors_done, p->tensors_total, mq_cli_bytes(p->bytes_done, done, sizeof done),
            mq_cli_bytes(p->bytes_total, total, sizeof total), rate / 1e9, eta);
    fflush(stderr);
    s->bar_drawn = 1;
    s->last_draw = now;
}

static void on_progress(const mq_progress *p, void *user)
{
    progress_state *s = user;
    double now = mq_now_s();
    if (p->finished && s->lines) {
        if (s->bar_drawn) {
            fputs("\r\033[K", stderr);
            s->bar_drawn = 0;
        }
        print_line(p, s);
        if (!mq_cli_log_check()) s->lines = false;
    }
    if (s->bar && (now - s->last_draw >= 0.1 || p->tensors_done == p->tensors_total))
        draw_bar(s, p, now);
}

static void end_progress(progress_state *s)
{
    if (s->bar_drawn) fputs("\r\033[K", stderr);
    s->bar_drawn = 0;
}

/* The scheme in words, with the compressed-tensors preset a loader sees. */
static const char *scheme_label(const mq_scheme *s, char *buf, size_t cap)
{
    char strat[64];
    if (!mq_scheme_quantizes(s)) return "fp16";
    if (s->gran == MQ_GRAN_BLOCK)
        snprintf(strat, sizeof strat, "%zux%zu blocks", s->block, s->block);
    else if (s->gran == MQ_GRAN_GROUP)
        snprintf(strat, sizeof strat, "groups of %zu", s->group);
    else
        snprintf(strat, sizeof strat, "per-%s", s->gran == MQ_GRAN_CHANNEL ? "channel" : "tensor");
    snprintf(buf, cap, "%s%s %s %s, %s%s", mq_qdtype_name(s->target),
             s->kind == MQ_SCHEME_FP8_E4M3 ? " e4m3" : "", s->symmetric ? "sym" : "asym", strat,
             s->preset, s->observer == MQ_OBSERVER_MSE ? ", mse observer" : "");
    return buf;
}

static void print_summary(const mq_report *r, const mq_scheme *sc, bool saturate, double seconds,
                          const char *imatrix)
{
    size_t n = mq_report_count(r), done = 0, skipped = 0, weighted = 0;
    char bin[32], bout[32], label[128];
    for (size_t i = 0; i < n; i++) {
        const mq_report_entry *e = mq_report_entry_at(r, i);
        if (e->action == MQ_ACTION_SKIP)
            skipped++;
        else
            done++;
        weighted += e->action == MQ_ACTION_QUANTIZE && e->imatrix;
    }
    uint64_t in = mq_report_bytes_in(r), out = mq_report_bytes_out(r);
    size_t n_dev = mq_report_device_count(r);
    for (size_t i = 0; i < n_dev; i++) {
        const char *plat = mq_report_device_platform_at(r, i),
                   *dev = mq_report_device_name_at(r, i);
        size_t files = mq_report_device_files_at(r, i);
        printf("%s%s%s%s%s%s", i ? ", " : (n_dev > 1 ? "devices: " : "device: "),
               mq_cli_esc(mq_report_device_backend_at(r, i)), *plat ? " / " : "", mq_cli_esc(plat),
               *dev ? " / " : "", mq_cli_esc(dev));
        if (n_dev > 1) printf(" (%zu file%s)", files, files == 1 ? "" : "s");
    }
    putchar('\n');
    printf("%s %zu of %zu tensors (%s); size %s -> %s (%.2fx) in %.2f s\n",
           mq_scheme_quantizes(sc) ? "quantized" : "cast", done, n,
           scheme_label(sc, label, sizeof label), mq_cli_bytes(in, bin, sizeof bin),
           mq_cli_bytes(out, bout, sizeof bout), out ? (double)in / (double)out : 0.0, seconds);
    /* Weights without an entry ran the plain search: say how many. */
    if (imatrix)
        printf("importance matrix %s: %zu of %zu quantized tensors weighted, %zu without an entry "
               "(plain search)\n",
               mq_cli_esc(imatrix), weighted, done, done - weighted);
    if (mq_report_fp16_overflow(r))
        printf("warning: %llu values beyond +-65504 became %s\n",
               (unsigned long long)mq_report_fp16_overflow(r), saturate ? "+-65504" : "+-inf");
    printf("skipped %zu tensor%s%s\n", skipped, skipped == 1 ? "" : "s", skipped ? ":" : "");
    for (size_t i = 0; i < n; i++) {
        const mq_report_entry *e = mq_report_entry_at(r, i);
        if (e->action == MQ_ACTION_SKIP)
            printf("  %s: %s\n", mq_cli_esc(e->name), mq_cli_esc(e->reason));
    }
}

/* Files of the input directory missing from the output: on stderr, even with
 * --quiet, as the output is not the whole input. */
static void warn_left_out(const mq_report *r)
{
    size_t left = mq_report_left_out_count(r);
    if (left)
        fprintf(stderr, "monoquant: warning: left out %zu file%s of the input directory:\n", left,
                left == 1 ? "" : "s");
    for (size_t i = 0; i < left; i++)
        fprintf(stderr, "  %s: %s\n", mq_cli_esc(mq_report_left_out_file(r, i)),
                mq_cli_esc(mq_report_left_out_reason(r, i)));
}

/* A scheme that took under half of the Linear layers: on stderr, even with
 * --quiet, as the run is not what the user asked for. */
static void warn_coverage(const mq_report *r, const mq_scheme *sc)
{
    char *w = mq_coverage_warning(r, sc);
    if (w) fprintf(stderr, "monoquant: warning: %s\n", mq_cli_esc(w));
    free(w);
}

int mq_cli_quantize(int argc, char **argv)
{
    quantize_args a;
    mq_config cfg;
    mq_report *rep = NULL;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        free(a.include);
        free(a.exclude);
        return rc < 0 ? MQ_EXIT_OK : rc;
    }
    struct stat in_st;
    bool dir_run = stat(a.in, &in_st) == 0 && S_ISDIR(in_st.st_mode);
    const mq_cli_path paths[] = {
        {"the input", a.in, false, false},
        {"--config", a.config, false, false},
        {"-o", a.out, true, dir_run},
        {"--report", a.report, true, false},
    };
    if ((rc = mq_cli_check_paths("quantize", paths, 4)) != MQ_EXIT_OK) {
        free(a.include);
        free(a.exclude);
        return rc;
    }
    mq_status st = resolve_config(&a, &cfg);
    /* What the run will write is checked now, not after the work (a model
     * directory's output is checked by the library before it starts). */
    if (st == MQ_OK && !dir_run) st = mq_outfile_check(a.out, "output");
    if (st == MQ_OK && a.report) st = mq_outfile_check(a.report, "report");
    if (st == MQ_OK) {
        mq_cli_remove_stale(a.out);
        mq_cli_remove_stale(a.report);
    }
    double t0 = mq_now_s();
    progress_state ps = {.bar = !a.quiet && isatty(2), .lines = !a.quiet, .t0 = t0};
    ps.preset = mq_config_preset(&cfg);
    ps.observer = mq_observer_name(cfg.observer);
    ps.imatrix = cfg.imatrix != NULL;
    ps.fp8 = cfg.dtype == MQ_QFP8;
    if (st == MQ_OK && cfg.dtype != MQ_FLOAT16 && !cfg.per_channel &&
        (!cfg.symmetric || cfg.weights_only))
        fprintf(stderr, "monoquant: warning: vLLM has no kernel for int8 weights-only per-tensor "
                        "quantization (its WNA16 kernels take per-channel or grouped scales); "
                        "transformers loads the output\n");
    cfg.progress = on_progress;
    cfg.progress_user = &ps;
    if (st == MQ_OK) st = mq_quantize_file(a.in, a.out, &cfg, &rep);
    end_progress(&ps);
    double seconds = mq_now_s() - t0;
    bool written = st == MQ_OK;
    if (st == MQ_OK && a.report)
        st = mq_report_write_json(rep, &cfg, a.in, a.out, seconds, a.report);
    if (st != MQ_OK) {
        rc = mq_cli_fail(st);
        /* All or nothing: a model without the report asked for is removed. */
        if (written) mq_cli_remove_output(a.out, dir_run, "its report could not be written");
    } else {
        mq_scheme sc;
        /* The run checked the config: this cannot fail. */
        bool have_sc = mq_scheme_init(&sc, &cfg) == MQ_OK;
        if (!a.quiet && have_sc && mq_cli_log_check())
            print_summary(rep, &sc, cfg.fp16_saturate, seconds, cfg.imatrix);
        warn_left_out(rep);
        if (have_sc) warn_coverage(rep, &sc);
        if (!a.quiet && mq_cli_log_check()) printf("wrote %s\n", mq_cli_esc(a.out));
        mq_cli_log_check();
    }
    mq_report_free(rep);
    mq_config_free(&cfg);
    free(a.include);
    free(a.exclude);
    return rc;
}
