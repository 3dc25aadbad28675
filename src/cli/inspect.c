/* monoquant inspect and dequantize: look inside a safetensors file, and turn
 * a quantized one back into float weights. */
#include "cli.h"
#include "dtype.h"
#include "outfile.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char inspect_usage[] =
    "usage: monoquant inspect FILE.safetensors\n"
    "\n"
    "Validates the file and prints its tensors (name, dtype, shape, bytes),\n"
    "its metadata and the totals. Exit code 2 when the file is invalid.\n";

static const char dequantize_usage[] =
    "usage: monoquant dequantize IN.safetensors -o OUT.safetensors\n"
    "       monoquant dequantize MODEL_DIR -o OUT_DIR\n"
    "\n"
    "Replaces every INT8 weight that has a <name>_scale (and <name>_zero_point)\n"
    "by (q - zero_point) * scale in the scale's dtype, and drops the scale and\n"
    "zero-point tensors. Other tensors are copied byte for byte.\n"
    "A quantized model directory that is read as a source (config.json\n"
    "quant_method \"fp8\" with a weight_block_size, \"mxfp4\", or\n"
    "\"compressed-tensors\" in a format monoquant writes) becomes a plain float\n"
    "one: each quantized weight as its values in the model's dtype, without its\n"
    "scales or the quantization_config.\n";

static bool wants_help(int argc, char **argv, const char *text)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(text, stdout);
            return true;
        }
    }
    return false;
}

int mq_cli_inspect(int argc, char **argv)
{
    mq_model *m = NULL;
    if (wants_help(argc, argv, inspect_usage)) return MQ_EXIT_OK;
    if (argc != 2 || argv[1][0] == '-') {
        fputs(inspect_usage, stderr);
        return MQ_EXIT_USAGE;
    }
    mq_status st = mq_model_open(argv[1], &m);
    if (st != MQ_OK) return mq_cli_fail(st);
    size_t n = mq_model_count(m), width = 4;
    uint64_t total = 0, elements = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(mq_cli_esc(mq_model_tensor(m, i)->name));
        if (len > width) width = len;
    }
    printf("%s\n", mq_cli_esc(argv[1]));
    printf("%-*s  %-7s  %-20s  %s\n", (int)width, "name", "dtype", "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        const mq_tensor *t = mq_model_tensor(m, i);
        char shape[160];
        uint64_t numel = 0;
        mq_shape_format(t->rank, t->shape, shape, sizeof shape);
        mq_shape_numel(t->rank, t->shape, &numel); /* validated by mq_model_open */
        printf("%-*s  %-7s  %-20s  %zu\n", (int)width, mq_cli_esc(t->name), mq_dtype_name(t->dtype),
               shape, t->nbytes);
        total += t->nbytes;
        elements += numel;
    }
    if (mq_model_metadata_count(m)) printf("metadata:\n");
    for (size_t i = 0; i < mq_model_metadata_count(m); i++)
        printf("  %s: %s\n", mq_cli_esc(mq_model_metadata_key(m, i)),
               mq_cli_esc(mq_model_metadata_value(m, i)));
    char buf[32];
    printf("%zu tensors, %llu elements, %s of tensor data\n", n, (unsigned long long)elements,
           mq_cli_bytes(total, buf, sizeof buf));
    mq_model_free(m);
    return MQ_EXIT_OK;
}

int mq_cli_dequantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    mq_model *m = NULL, *d = NULL;
    int rc = MQ_EXIT_OK;
    if (wants_help(argc, argv, dequantize_usage)) return MQ_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' || in) {
            fprintf(stderr, "monoquant dequantize: unexpected argument '%s'\n%s",
                    mq_cli_esc(argv[i]), dequantize_usage);
            return MQ_EXIT_USAGE;
        } else {
            in = argv[i];
        }
    }
    if (!in || !out) {
        fputs(dequantize_usage, stderr);
        return MQ_EXIT_USAGE;
    }
    struct stat in_st;
    bool dir_run = stat(in, &in_st) == 0 && S_ISDIR(in_st.st_mode);
    const mq_cli_path paths[] = {{"the input", in, false, false}, {"-o", out, true, dir_run}};
    if ((rc = mq_cli_check_paths("dequantize", paths, 2)) != MQ_EXIT_OK) return rc;
    if (dir_run) {
        /* A model directory: its FP8 block weights as plain float, on the host. */
        mq_config cfg;
        mq_config_init(&cfg);
        mq_status st = mq_config_set_device(&cfg, "host");
        if (st == MQ_OK) st = mq_dequantize_dir(in, out, &cfg);
        mq_config_free(&cfg);
        if (st != MQ_OK) return mq_cli_fail(st);
        printf("wrote %s\n", mq_cli_esc(out));
        mq_cli_log_check();
        return MQ_EXIT_OK;
    }
    mq_status st = mq_outfile_check(out, "output");
    if (st == MQ_OK) mq_cli_remove_stale(out);
    if (st == MQ_OK) st = mq_model_open(in, &m);
    if (st == MQ_OK) st = mq_dequantize(m, &d);
    if (st == MQ_OK) st = mq_model_save(d, out);
    if (st != MQ_OK)
        rc = mq_cli_fail(st);
    else {
        printf("wrote %s (%zu tensors)\n", mq_cli_esc(out), mq_model_count(d));
        mq_cli_log_check(); /* the file is written: a lost line is only a note */
    }
    mq_model_free(d);
    mq_model_free(m);
    return rc;
}
