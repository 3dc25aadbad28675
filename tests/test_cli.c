/* The monoquant program end to end: exit codes, output files, the input left
 * untouched, the report, settings precedence, and clean failures. */
#include "testutil.h"

#include "monoquant.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXAMPLE MQ_SOURCE_DIR "/examples/tiny_mlp.safetensors"

typedef struct {
    char *dir;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_mkdtemp();
    *state = f;
    return f->dir ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static char *path_in(void **state, const char *name)
{
    return tu_join(((fixture *)*state)->dir, name);
}

/* A model with one NaN in channel 2 of "layer.weight". */
static void write_nan_model(const char *path)
{
    float w[4 * 3] = {0};
    w[2 * 3 + 1] = NAN;
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "layer.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 3}, w),
                     MQ_OK);
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
}

static void test_quantize_example(void **state)
{
    char *out = path_in(state, "q.safetensors"), *text = NULL;
    uint64_t before = tu_file_hash(EXAMPLE);
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host", EXAMPLE, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(text, "fc1.weight"));
    assert_non_null(strstr(text, "F32 -> I8"));
    assert_non_null(strstr(text, "skipped 5 tensors:"));
    assert_non_null(strstr(text, "fc1.bias: rank 1"));
    assert_non_null(strstr(text, "device: host"));
    assert_int_equal(tu_file_hash(EXAMPLE), before);

    mq_model *m = NULL;
    assert_int_equal(mq_model_open(out, &m), MQ_OK);
    assert_int_equal(mq_model_find(m, "fc1.weight")->dtype, MQ_DTYPE_I8);
    assert_int_equal(mq_model_find(m, "conv.weight")->dtype, MQ_DTYPE_I8);
    assert_int_equal(mq_model_find(m, "fc2.weight_scale")->shape[0], 10);
    assert_int_equal(mq_model_find(m, "norm.weight")->dtype, MQ_DTYPE_F32);
    bool has_scheme = false;
    for (size_t i = 0; i < mq_model_metadata_count(m); i++)
        if (!strcmp(mq_model_metadata_key(m, i), "quantization_scheme"))
            has_scheme = !strcmp(mq_model_metadata_value(m, i), "int8-sym-channel");
    assert_true(has_scheme);
    mq_model_free(m);
    free(text);
    free(out);
}

static void test_deterministic_and_device_independent(void **state)
{
    char *a = path_in(state, "a.safetensors"), *b = path_in(state, "b.safetensors");
    char *c = path_in(state, "c.safetensors");
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --scheme asym --device host -q", EXAMPLE, a), 0);
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --scheme asym --device host -q", EXAMPLE, b), 0);
    assert_int_equal(tu_file_hash(a), tu_file_hash(b));
    /* An OpenCL device gives the same bytes (CI has PoCL; skip where none exists). */
    char *text = NULL;
    int rc = tu_run_cli(&text, "quantize %s -o %s --scheme asym --device %s", EXAMPLE, c,
                        tu_cl_device());
    if (rc == 4) {
        free(text);
        free(a);
        free(b);
        free(c);
        skip();
    }
    assert_int_equal(rc, 0);
    assert_non_null(strstr(text, "device: opencl"));
    free(text);
    assert_int_equal(tu_file_hash(a), tu_file_hash(c));
    /* So does the default device, and MQ_DEVICE picks the backend when no flag does. */
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --scheme asym -q", EXAMPLE, c), 0);
    assert_int_equal(tu_file_hash(a), tu_file_hash(c));
    char *was = getenv("MQ_DEVICE") ? strdup(getenv("MQ_DEVICE")) : NULL;
    setenv("MQ_DEVICE", "host", 1);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --scheme asym", EXAMPLE, c), 0);
    if (was)
        setenv("MQ_DEVICE", was, 1);
    else
        unsetenv("MQ_DEVICE");
    free(was);
    assert_non_null(strstr(text, "device: host"));
    free(text);
    assert_int_equal(tu_file_hash(a), tu_file_hash(c));
    free(a);
    free(b);
    free(c);
}

/* --device with a list: a single file runs on the first device; a model
 * directory's shards are spread (here one shard, so one device works); a
 * device of the list that does not exist fails before any output. */
static void test_device_list(void **state)
{
    char *a = path_in(state, "a.safetensors"), *b = path_in(state, "b.safetensors");
    char *rep = path_in(state, "l.json"), *dir = path_in(state, "ldir");
    char *out = path_in(state, "lout"), *bad = path_in(state, "lbad"), *text = NULL;
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", EXAMPLE, a), 0);
    assert_int_equal(
        tu_run_cli(&text, "quantize %s -o %s --device host,host --report %s", EXAMPLE, b, rep), 0);
    assert_non_null(strstr(text, "device: host / reference\n"));
    free(text);
    assert_int_equal(tu_file_hash(a), tu_file_hash(b));
    json_t *j = json_load_file(rep, 0, NULL);
    assert_non_null(j);
    json_t *devs = json_object_get(j, "devices");
    assert_int_equal(json_array_size(devs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(devs, 0), "files")), 1);
    json_decref(j);

    assert_int_equal(mkdir(dir, 0755), 0);
    char *shard = tu_join(dir, "model.safetensors");
    size_t n = 0;
    unsigned char *bytes = tu_read_file(EXAMPLE, &n);
    assert_true(tu_write_file(shard, bytes, n));
    free(bytes);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host,host", dir, out), 0);
    /* Whichever pipeline takes the one shard first quantizes it. */
    assert_true(strstr(text, "devices: host / reference (1 file), host / reference (0 files)") ||
                strstr(text, "devices: host / reference (0 files), host / reference (1 file)"));
    free(text);
    /* A model directory plans differently (no Conv weight is quantized there):
     * compared with a one-device run of the directory. */
    char *q = tu_join(out, "model.safetensors"), *one = path_in(state, "lone");
    char *q1 = tu_join(one, "model.safetensors");
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", dir, one), 0);
    assert_int_equal(tu_file_hash(q1), tu_file_hash(q));
    free(q1);
    free(one);

    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host,no-such-device", dir, bad),
                     4);
    assert_non_null(strstr(text, "entry 2: device 'no-such-device'"));
    assert_false(tu_exists(bad));
    free(text);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device gpu:all,host", EXAMPLE, bad), 4);
    free(text);
    assert_false(tu_exists(bad));
    assert_int_equal(tu_run_cli(&text, "quantize --help"), 0);
    assert_non_null(strstr(text, "gpu:all"));
    free(text);
    free(q);
    free(shard);
    free(a);
    free(b);
    free(rep);
    free(dir);
    free(out);
    free(bad);
}

static void test_report_json(void **state)
{
    char *out = path_in(state, "r.safetensors"), *rep = path_in(state, "r.json");
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --report %s --device host -q", EXAMPLE, out, rep), 0);
    json_error_t err;
    json_t *j = json_load_file(rep, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "input")), EXAMPLE);
    assert_string_equal(json_string_value(json_object_get(j, "output")), out);
    assert_string_equal(json_string_value(json_object_get(j, "dtype")), "int8");
    assert_string_equal(json_string_value(json_object_get(j, "scheme")), "sym");
    assert_true(json_is_true(json_object_get(j, "per_channel")));
    json_t *dev = json_object_get(j, "device");
    assert_string_equal(json_string_value(json_object_get(dev, "backend")), "host");
    json_t *q = json_object_get(j, "quantized"), *s = json_object_get(j, "skipped");
    assert_int_equal(json_array_size(q), 3);
    assert_int_equal(json_array_size(s), 5);
    json_t *first = json_array_get(q, 0);
    assert_string_equal(json_string_value(json_object_get(first, "name")), "conv.weight");
    assert_int_equal(json_integer_value(json_object_get(first, "bytes_in")), 16 * 27 * 4);
    assert_int_equal(json_integer_value(json_object_get(first, "bytes_out")), 16 * 27 + 16 * 4);
    json_t *shape = json_object_get(first, "shape");
    assert_int_equal(json_array_size(shape), 4);
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), 16);
    bool found = false;
    for (size_t i = 0; i < json_array_size(s); i++) {
        json_t *e = json_array_get(s, i);
        if (!strcmp(json_string_value(json_object_get(e, "name")), "norm.weight"))
            found = strstr(json_string_value(json_object_get(e, "reason")), "rank 1") != NULL;
    }
    assert_true(found);
    assert_true(json_integer_value(json_object_get(j, "bytes_in")) > 140000);
    assert_true(json_is_number(json_object_get(j, "seconds")));
    json_decref(j);
    free(out);
    free(rep);
}

static void test_config_precedence(void **state)
{
    char *cfg = path_in(state, "cfg.json"), *out = path_in(state, "p.safetensors");
    const char *text = "{\"scheme\": \"asym\", \"per_channel\": false, \"exclude\": [\"fc2.*\"]}";
    assert_true(tu_write_file(cfg, text, strlen(text)));
    /* Config alone: asymmetric, per tensor, fc2 excluded. */
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --config %s --device host -q", EXAMPLE, out, cfg), 0);
    mq_model *m = NULL;
    assert_int_equal(mq_model_open(out, &m), MQ_OK);
    assert_non_null(mq_model_find(m, "fc1.weight_zero_point"));
    assert_int_equal(mq_model_find(m, "fc1.weight_scale")->rank, 1);
    assert_int_equal(mq_model_find(m, "fc2.weight")->dtype, MQ_DTYPE_F32);
    mq_model_free(m);
    /* A flag wins over the config; the config's other keys still apply. */
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --config %s --scheme sym --device host -q",
                                EXAMPLE, out, cfg),
                     0);
    assert_int_equal(mq_model_open(out, &m), MQ_OK);
    assert_null(mq_model_find(m, "fc1.weight_zero_point"));
    assert_int_equal(mq_model_find(m, "fc1.weight_scale")->rank, 1);
    assert_int_equal(mq_model_find(m, "fc2.weight")->dtype, MQ_DTYPE_F32);
    mq_model_free(m);
    free(cfg);
    free(out);
}

static void test_usage_errors(void **state)
{
    char *out = path_in(state, "u.safetensors"), *text = NULL;
    assert_int_equal(tu_run_cli(NULL, "%s", ""), 1);
    assert_int_equal(tu_run_cli(NULL, "frobnicate"), 1);
    assert_int_equal(tu_run_cli(NULL, "quantize %s", EXAMPLE), 1);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --dtype int2", EXAMPLE, out), 1);
    assert_non_null(strstr(text, "int2"));
    free(text);
    /* An unknown preset lists the valid names; a scheme the flags cannot form
     * says why; both are usage errors that write nothing. */
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --preset W3A5", EXAMPLE, out), 1);
    assert_non_null(strstr(text, "W3A5"));
    assert_non_null(strstr(text, "FP8_BLOCK"));
    assert_non_null(strstr(text, "W4A16_ASYM"));
    free(text);
    assert_int_equal(
        tu_run_cli(&text, "quantize %s -o %s --preset FP8_DYNAMIC --scheme asym", EXAMPLE, out), 1);
    assert_non_null(strstr(text, "symmetric"));
    free(text);
    assert_int_equal(
        tu_run_cli(&text, "quantize %s -o %s --preset W4A16 --group-size 100", EXAMPLE, out), 1);
    assert_non_null(strstr(text, "multiple of 8"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --group-size 128", EXAMPLE, out), 1);
    assert_non_null(strstr(text, "W8A16"));
    free(text);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --group-size x", EXAMPLE, out), 1);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --bogus", EXAMPLE, out), 1);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --scheme", EXAMPLE, out), 1);
    assert_false(tu_exists(out));
    const char *cmds[] = {"quantize", "inspect", "dequantize", "devices"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(tu_run_cli(&text, "%s --help", cmds[i]), 0);
        assert_non_null(strstr(text, "usage: monoquant"));
        free(text);
    }
    assert_int_equal(tu_run_cli(&text, "--version"), 0);
    assert_non_null(strstr(text, "monoquant " MQ_VERSION));
    free(text);
    free(out);
}

static void test_bad_input(void **state)
{
    char *out = path_in(state, "bad-out.safetensors"), *junk = path_in(state, "junk.safetensors");
    char *nan = path_in(state, "nan.safetensors"), *missing = path_in(state, "missing.safetensors");
    char *text = NULL;
    fixture *f = *state;
    int entries;

    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s", missing, out), 2);
    assert_non_null(strstr(text, missing));
    free(text);
    assert_true(tu_write_file(junk, "\x10\0\0\0\0\0\0\0{not json}", 18));
    entries = tu_count_entries(f->dir);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s", junk, out), 2);
    assert_non_null(strstr(text, junk));
    free(text);
    assert_int_equal(tu_count_entries(f->dir), entries);

    write_nan_model(nan);
    uint64_t h = tu_file_hash(nan);
    entries = tu_count_entries(f->dir);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", nan, out), 2);
    assert_non_null(strstr(text, "layer.weight"));
    assert_non_null(strstr(text, "channel 2"));
    assert_non_null(strstr(text, nan));
    free(text);
    assert_false(tu_exists(out));
    assert_int_equal(tu_count_entries(f->dir), entries);
    assert_int_equal(tu_file_hash(nan), h);
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --skip-nonfinite --device host -q", nan, out), 0);
    assert_true(tu_exists(out));
    assert_int_equal(tu_run_cli(NULL, "inspect %s", junk), 2);
    assert_int_equal(tu_run_cli(NULL, "inspect %s", f->dir), 2);
    free(out);
    free(junk);
    free(nan);
    free(missing);
}

static void test_output_failures(void **state)
{
    fixture *f = *state;
    char *in = path_in(state, "in.safetensors"), *sym = path_in(state, "link.safetensors");
    char *hard = path_in(state, "hard.safetensors"), *text = NULL;
    char *nodir = path_in(state, "no/such/dir/out.safetensors");
    size_t n;
    unsigned char *bytes = tu_read_file(EXAMPLE, &n);
    assert_true(tu_write_file(in, bytes, n));
    free(bytes);
    uint64_t h = tu_file_hash(in);
    assert_int_equal(symlink(in, sym), 0);
    assert_int_equal(link(in, hard), 0);
    int entries = tu_count_entries(f->dir);

    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s", in, in), 1);
    assert_non_null(strstr(text, "input"));
    free(text);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s", in, sym), 1);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s", sym, hard), 1);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s", in, nodir), 3);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s", in, f->dir), 3);
    assert_int_equal(tu_file_hash(in), h);
    assert_int_equal(tu_file_hash(hard), h);
    assert_int_equal(tu_count_entries(f->dir), entries);
    free(in);
    free(sym);
    free(hard);
    free(nodir);
}

/* Exit 1 before any work, with a message naming both paths. */
static void expect_clash(const char *a, const char *b, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void expect_clash(const char *a, const char *b, const char *fmt, ...)
{
    char cmd[8192], *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = tu_run_cli(&text, "%s", cmd);
    if (rc != 1 || !strstr(text, a) || !strstr(text, b))
        fail_msg("%s: exit %d, want 1 naming '%s' and '%s':\n%s", cmd, rc, a, b, text);
    free(text);
}

/* No file a run writes may be one it reads, lie inside an input directory, or
 * be another of its outputs: the input, the config, the model just written
 * and eval's models all survive a report or JSON path that names them. */
static void test_output_collisions(void **state)
{
    fixture *f = *state;
    char *in = path_in(state, "in.safetensors"), *out = path_in(state, "out.safetensors");
    char *cfg = path_in(state, "cfg.json"), *md = path_in(state, "md");
    char *mdw = path_in(state, "md/model.safetensors"), *mdc = path_in(state, "md/config.json");
    char *mdnew = path_in(state, "md/report.json"), *od = path_in(state, "od");
    char *odr = path_in(state, "od/r.json"), *link = path_in(state, "link.safetensors");
    char *dot = path_in(state, "./fresh.json"), *fresh = path_in(state, "fresh.json");
    char *q = path_in(state, "q.safetensors");
    size_t n;
    unsigned char *bytes = tu_read_file(EXAMPLE, &n);
    assert_true(tu_write_file(in, bytes, n));
    assert_int_equal(mkdir(md, 0755), 0);
    assert_true(tu_write_file(mdw, bytes, n));
    free(bytes);
    assert_true(tu_write_file(mdc, "{}\n", 3));
    assert_true(tu_write_file(cfg, "{}\n", 3));
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", in, out), 0);
    assert_int_equal(symlink(out, link), 0);
    assert_int_equal(mkdir(od, 0755), 0);
    uint64_t h_in = tu_file_hash(in), h_out = tu_file_hash(out), h_cfg = tu_file_hash(cfg);
    uint64_t h_mdw = tu_file_hash(mdw);
    int entries = tu_count_entries(f->dir);

    expect_clash(in, "--report", "quantize %s -o %s --report %s --device host", in, q, in);
    expect_clash(out, "--report", "quantize %s -o %s --report %s --device host", in, out, out);
    expect_clash(link, out, "quantize %s -o %s --report %s --device host", in, out, link);
    expect_clash(cfg, "--config", "quantize %s -o %s --config %s --device host", in, cfg, cfg);
    expect_clash(cfg, "--report", "quantize %s -o %s --config %s --report %s --device host", in, q,
                 cfg, cfg);
    /* Not there yet: the same directory and name. */
    expect_clash(dot, fresh, "quantize %s -o %s --report %s --device host", in, fresh, dot);
    /* Directory runs: anything inside the input directory is the input. */
    expect_clash(mdw, md, "quantize %s -o %s --report %s --device host", md, od, mdw);
    expect_clash(mdnew, md, "quantize %s -o %s --report %s --device host", md, od, mdnew);
    expect_clash(odr, od, "quantize %s -o %s --report %s --device host", md, od, odr);
    /* eval's JSON and dequantize's output. */
    expect_clash(in, "--json", "eval %s %s --json %s --device host", in, out, in);
    expect_clash(out, "--json", "eval %s %s --json %s --device host", in, out, out);
    expect_clash(link, out, "eval %s %s --json %s --device host", in, out, link);
    expect_clash(cfg, "--inputs", "eval %s %s --inputs %s --json %s", in, out, cfg, cfg);
    expect_clash(out, "-o", "dequantize %s -o %s", out, out);
    expect_clash(link, out, "dequantize %s -o %s", out, link);

    assert_int_equal(tu_file_hash(in), h_in);
    assert_int_equal(tu_file_hash(out), h_out);
    assert_int_equal(tu_file_hash(cfg), h_cfg);
    assert_int_equal(tu_file_hash(mdw), h_mdw);
    assert_int_equal(tu_count_entries(md), 2);
    assert_int_equal(tu_count_entries(od), 0);
    assert_int_equal(tu_count_entries(f->dir), entries);
    char *paths[] = {in, out, cfg, md, mdw, mdc, mdnew, od, odr, link, dot, fresh, q};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        free(paths[i]);
}

/* Runs the CLI with the descriptors in `closed` (0-2, -1 ends) closed, the
 * rest on /dev/null; returns the exit code. */
static int run_closed(const int *closed, const char *const *args)
{
    const char *argv[16] = {MQ_CLI_PATH};
    for (int i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        for (int fd = 0; fd <= 2; fd++)
            dup2(null, fd);
        if (null > 2) close(null);
        for (; *closed >= 0; closed++)
            close(*closed);
        execv(MQ_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Started with stdin, stdout (and stderr) closed, the program must not write
 * its lines into the first file it opens: the output is the same as usual. */
static void test_closed_std_fds(void **state)
{
    char *ref = path_in(state, "ref.safetensors"), *out = path_in(state, "closed.safetensors");
    char *rep = path_in(state, "closed.json"), *json = path_in(state, "eval.json");
    char *deq = path_in(state, "deq.safetensors"), *missing = path_in(state, "missing");
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", EXAMPLE, ref), 0);
    const int sets[][4] = {{0, 1, -1}, {1, -1}, {0, 1, 2, -1}, {1, 2, -1}};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        const char *q[] = {"quantize", EXAMPLE,    "-o", out, "--device",
                           "host",     "--report", rep,  NULL};
        assert_int_equal(run_closed(sets[i], q), 0);
        assert_int_equal(tu_file_hash(out), tu_file_hash(ref));
        json_t *j = json_load_file(rep, 0, NULL);
        assert_non_null(j);
        json_decref(j);
        const char *e[] = {"eval", EXAMPLE, ref, "--device", "host", "--json", json, NULL};
        assert_int_equal(run_closed(sets[i], e), 0);
        assert_non_null(j = json_load_file(json, 0, NULL));
        json_decref(j);
        const char *d[] = {"dequantize", ref, "-o", deq, NULL};
        assert_int_equal(run_closed(sets[i], d), 0);
        mq_model *m = NULL;
        assert_int_equal(mq_model_open(deq, &m), MQ_OK);
        mq_model_free(m);
        const char *bad[] = {"quantize", missing, "-o", out, NULL};
        assert_int_equal(run_closed(sets[i], bad), 2);
        unlink(out);
        unlink(rep);
        unlink(json);
        unlink(deq);
    }
    free(ref);
    free(out);
    free(rep);
    free(json);
    free(deq);
    free(missing);
}

/* Runs the CLI with stdout on `stdout_path`; its stderr into *err. Returns
 * the exit code. */
static int run_stdout_to(const char *stdout_path, char **err, const char *const *args)
{
    const char *argv[16] = {MQ_CLI_PATH};
    for (int i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int o = open(stdout_path, O_WRONLY);
        if (o < 0) _exit(126);
        dup2(o, 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(MQ_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t got;
    while ((got = read(fds[0], buf + len, cap - len - 1)) > 0)
        if ((len += (size_t)got) + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[len] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    *err = buf;
    return WEXITSTATUS(status);
}

/* Standard output on a full disk: every command whose product is what it
 * prints fails with exit 3 and says so, instead of exiting 0 with it lost;
 * quantize and dequantize, whose product is a file, note the lost log on
 * stderr and write their file completely (exit 0). */
static void test_stdout_full(void **state)
{
    char *q = path_in(state, "full-q.safetensors"), *d = path_in(state, "full-d.safetensors");
    char *text = NULL;
    if (access("/dev/full", W_OK) != 0) skip();
    const char *const writers[][10] = {
        {"quantize", EXAMPLE, "-o", q, "--device", "host", NULL},
        {"dequantize", q, "-o", d, NULL},
    };
    const char *outs[] = {q, d};
    for (size_t i = 0; i < 2; i++) {
        int rc = run_stdout_to("/dev/full", &text, writers[i]);
        if (rc != 0 || !strstr(text, "standard output") || !strstr(text, "the run goes on"))
            fail_msg("%s: exit %d, want 0 with a note on standard output:\n%s", writers[i][0], rc,
                     text);
        free(text);
        char *listing = NULL;
        assert_int_equal(tu_run_cli(&listing, "inspect %s", outs[i]), 0);
        free(listing);
    }
    /* eval --json: the file is the product, the table a log. */
    char *json = path_in(state, "full-eval.json");
    const char *const eval_json[] = {"eval", EXAMPLE, q, "--device", "host", "--json", json, NULL};
    int erc = run_stdout_to("/dev/full", &text, eval_json);
    if (erc != 0 || !strstr(text, "the run goes on"))
        fail_msg("eval --json: exit %d, want 0 with a note on standard output:\n%s", erc, text);
    free(text);
    assert_true(tu_exists(json));
    free(json);
    const char *const runs[][10] = {
        {"inspect", q, NULL}, {"eval", EXAMPLE, q, "--device", "host", NULL},
        {"devices", NULL},    {"--help", NULL},
        {"--version", NULL},  {"quantize", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        int rc = run_stdout_to("/dev/full", &text, runs[i]);
        if (rc != 3 || !strstr(text, "standard output"))
            fail_msg("%s %s: exit %d, want 3 naming standard output:\n%s", runs[i][0],
                     runs[i][1] ? runs[i][1] : "", rc, text);
        free(text);
    }
    /* quiet prints nothing, so nothing is lost */
    const char *const quiet[] = {"quantize", EXAMPLE, "-o", q, "--device", "host", "-q", NULL};
    assert_int_equal(run_stdout_to("/dev/full", &text, quiet), 0);
    free(text);
    free(q);
    free(d);
}

/* No byte a terminal acts on: C0 controls but the line breaks, DEL, or a C1
 * control (U+009B, the one-byte CSI, is C2 9B in UTF-8). */
static void assert_no_raw_controls(const char *what, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f ||
            (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            fail_msg("%s: raw control byte 0x%02x at offset %zu:\n%s", what, *p,
                     (size_t)(p - (const unsigned char *)text), text);
}

/* Tensor names, metadata and file names are untrusted: their escape
 * sequences and newlines reach the terminal escaped, from every command and
 * from error messages; the JSON report escapes them as JSON does. */
/* Tensor names of 5000+ characters: no fixed buffer drops them. The
 * quantized layer is found as such by dequantize (which must leave no codes
 * or scale behind), by quantize (which must refuse it, --dtype fp16 too) and
 * by eval; a stray companion is still a clash; and each message keeps its
 * cause after the name. */
static void test_long_names(void **state)
{
    char *orig = path_in(state, "long.safetensors"), *q = path_in(state, "long-q.safetensors");
    char *d = path_in(state, "long-d.safetensors"), *x = path_in(state, "long-x.safetensors");
    char *stray = path_in(state, "long-stray.safetensors"), *text = NULL;
    size_t n = 5000;
    char *name = malloc(n + 32), *zp = malloc(n + 64), *sc = malloc(n + 64);
    strcpy(name, "model.layers.0.");
    memset(name + 15, 'a', n);
    strcpy(name + 15 + n, ".weight");
    sprintf(zp, "%s_zero_point", name);
    sprintf(sc, "%s_scale", name);
    float w[8 * 16];
    int8_t z[8] = {0};
    for (int i = 0; i < 8 * 16; i++)
        w[i] = (float)(i % 13) / 7.0f - 0.9f;
    mq_model *m;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, name, MQ_DTYPE_F32, 2, (int64_t[]){8, 16}, w), MQ_OK);
    assert_int_equal(mq_model_save(m, orig), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, zp, MQ_DTYPE_I8, 2, (int64_t[]){8, 1}, z), MQ_OK);
    assert_int_equal(mq_model_save(m, stray), MQ_OK);
    mq_model_free(m);

    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", orig, q), 0);
    assert_int_equal(mq_model_open(q, &m), MQ_OK);
    assert_int_equal(mq_model_find(m, name)->dtype, MQ_DTYPE_I8);
    assert_non_null(mq_model_find(m, sc));
    mq_model_free(m);

    assert_int_equal(tu_run_cli(&text, "dequantize %s -o %s", q, d), 0);
    free(text);
    assert_int_equal(mq_model_open(d, &m), MQ_OK);
    assert_int_equal(mq_model_count(m), 1);
    assert_true(mq_model_find(m, name)->dtype == MQ_DTYPE_F32);
    assert_null(mq_model_find(m, sc));
    mq_model_free(m);

    for (int fp16 = 0; fp16 < 2; fp16++) {
        assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host%s", q, x,
                                    fp16 ? " --dtype fp16" : ""),
                         2);
        assert_non_null(strstr(text, "aaaa.weight' is already quantized"));
        assert_non_null(strstr(text, "start from the float model"));
        free(text);
        assert_false(tu_exists(x));
    }
    assert_int_equal(tu_run_cli(&text, "eval %s %s --device host", orig, q), 0);
    assert_non_null(strstr(text, "1 layer: mean SQNR"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", stray, x), 2);
    assert_non_null(strstr(text, "aaaa.weight_zero_point'"));
    assert_non_null(strstr(text, "remove it or leave the weight out"));
    free(text);
    assert_false(tu_exists(x));
    free(name);
    free(zp);
    free(sc);
    free(orig);
    free(q);
    free(d);
    free(x);
    free(stray);
}

/* Numbers on the command line are digits only: strtoull alone would read
 * " -1" (a leading blank) as 2^64 - 1, and " 5" or "+5" as 5. */
static void test_strict_numbers(void **state)
{
    char *out = path_in(state, "n.safetensors"), *text = NULL;
    static const char *const bad_sizes[] = {
        " -1",          "-1", " 512M", "+512M", "\t1G", "0x100", "18446744073709551616",
        "17179869184G", "",   "1 G"};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof *bad_sizes; i++) {
        char *argv[] = {
            "monoquant",      "quantize",           EXAMPLE, "-o", out, "--device", "host",
            "--memory-limit", (char *)bad_sizes[i], NULL};
        assert_int_equal(tu_run_cli_argv(&text, argv), 1);
        assert_non_null(strstr(text, "--memory-limit wants a size"));
        free(text);
    }
    static const char *const bad_groups[] = {
        " 128", "+128", " -1", "-2", "0", "1e3", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_groups / sizeof *bad_groups; i++) {
        char *argv[] = {"monoquant",
                        "quantize",
                        EXAMPLE,
                        "-o",
                        out,
                        "--preset",
                        "W8A16",
                        "--group-size",
                        (char *)bad_groups[i],
                        NULL};
        assert_int_equal(tu_run_cli_argv(&text, argv), 1);
        assert_non_null(strstr(text, "--group-size wants"));
        free(text);
    }
    static const char *const bad_counts[] = {" 5", "+5", " -1", "-1", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad_counts / sizeof *bad_counts; i++) {
        for (int seed = 0; seed < 2; seed++) {
            char *argv[] = {
                "monoquant",           "eval", EXAMPLE, EXAMPLE, seed ? "--seed" : "--tokens",
                (char *)bad_counts[i], NULL};
            assert_int_equal(tu_run_cli_argv(&text, argv), 1);
            assert_non_null(strstr(text, "wants a whole number"));
            free(text);
        }
    }
    assert_false(tu_exists(out));
    /* What stays valid: units, -1 and 'channel' for groups, the largest seed. */
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --device host -q --memory-limit 64MiB", EXAMPLE, out),
        0);
    assert_int_equal(tu_run_cli(NULL,
                                "quantize %s -o %s --device host -q --group-size -1 "
                                "--memory-limit 1073741824",
                                EXAMPLE, out),
                     0);
    assert_int_equal(tu_run_cli(&text,
                                "eval --seed 18446744073709551615 --tokens 8 --device host"
                                " %s %s",
                                EXAMPLE, out),
                     0);
    free(text);
    free(out);
}

/* Every usage error that echoes what was typed escapes it: presets, dtypes,
 * schemes, group sizes, devices and sizes with terminal escape sequences. */
static void test_usage_echoes_escaped(void **state)
{
    char *out = path_in(state, "e.safetensors"), *text = NULL;
    static const char *const opts[][2] = {
        {"--preset", "W4\x1b]0;x\aA16"}, {"--dtype", "int\x1b[2J8"},
        {"--scheme", "sym\x1b[31m"},     {"--group-size", "12\x1b[2J8"},
        {"--device", "gpu\x1b[2J:9"},    {"--memory-limit", "1\x1b[2JG"},
        {"--bogus\x1b[2J", NULL},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        char *argv[] = {"monoquant",        "quantize",         EXAMPLE, "-o", out,
                        (char *)opts[i][0], (char *)opts[i][1], NULL};
        int rc = tu_run_cli_argv(&text, argv);
        assert_true(rc == 1 || rc == 4);
        assert_null(strchr(text, 0x1b));
        assert_null(strchr(text, '\a'));
        assert_non_null(strstr(text, "\\x1b"));
        free(text);
    }
    char *argv[] = {"monoquant", "eval", EXAMPLE, EXAMPLE, "--tokens", "\x1b[2J", NULL};
    assert_int_equal(tu_run_cli_argv(&text, argv), 1);
    assert_null(strchr(text, 0x1b));
    assert_non_null(strstr(text, "\\x1b[2J"));
    free(text);
    assert_false(tu_exists(out));
    free(out);
}

static void test_terminal_escapes(void **state)
{
    char *in = path_in(state, "evil.safetensors"), *q = path_in(state, "evil-q.safetensors");
    char *rep = path_in(state, "evil.json"), *nan = path_in(state, "evilnan.safetensors");
    char *missing = path_in(state, "no\x1b[2Jsuch\n.safetensors"), *text = NULL;
    const char *hdr =
        "{\"__metadata__\": {\"k\\u001b[1m\": \"v\\n\\u001b]0;title\\u0007\"},"
        " \"evil\\u001b[31m\\n\\t\\u009b2J\\u202e.weight\": {\"dtype\": \"F32\", \"shape\": [4, 3],"
        " \"data_offsets\": [0, 48]},"
        " \"bias\\u001b[2J\\u007f\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [48, "
        "64]}}";
    float data[16];
    for (int i = 0; i < 16; i++)
        data[i] = (float)i / 7.0f - 1.0f;
    assert_true(tu_write_st(in, hdr, data, sizeof data));
    const char *nan_hdr = "{\"x\\u001b[2J.weight\": {\"dtype\": \"F32\", \"shape\": [4, 3],"
                          " \"data_offsets\": [0, 48]}}";
    data[5] = NAN;
    assert_true(tu_write_st(nan, nan_hdr, data, 48));

    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --report %s --device host", in, q, rep),
                     0);
    assert_no_raw_controls("quantize", text);
    assert_non_null(strstr(text, "evil\\x1b[31m\\n\\t\\xc2\\x9b2J\\xe2\\x80\\xae.weight"));
    assert_non_null(strstr(text, "bias\\x1b[2J\\x7f"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "inspect %s", q), 0);
    assert_no_raw_controls("inspect", text);
    assert_non_null(strstr(text, "k\\x1b[1m: v\\n\\x1b]0;title\\x07"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "eval %s %s --device host", in, q), 0);
    assert_no_raw_controls("eval", text);
    assert_non_null(strstr(text, "evil\\x1b[31m"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "quantize %s -o %s --device host", nan, q), 2);
    assert_no_raw_controls("error", text);
    assert_non_null(strstr(text, "x\\x1b[2J.weight"));
    free(text);
    assert_int_equal(tu_run_cli(&text, "inspect %s", missing), 2);
    assert_no_raw_controls("missing file", text);
    assert_non_null(strstr(text, "no\\x1b[2Jsuch\\n.safetensors"));
    free(text);
    /* The JSON report: valid, with the names intact and the controls escaped. */
    size_t n;
    char *raw = (char *)tu_read_file(rep, &n);
    assert_non_null(raw);
    assert_null(memchr(raw, 0x1b, n));
    assert_non_null(strstr(raw, "evil\\u001B[31m\\n\\t"));
    free(raw);
    json_t *j = json_load_file(rep, 0, NULL);
    assert_non_null(j);
    const char *name = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "quantized"), 0), "name"));
    assert_string_equal(name, "evil\x1b[31m\n\t\xc2\x9b"
                              "2J\xe2\x80\xae.weight");
    json_decref(j);
    free(in);
    free(q);
    free(rep);
    free(nan);
    free(missing);
}

/* A file name need not be UTF-8; the JSON report and eval JSON name it with
 * U+FFFD for the stray bytes instead of failing with "out of memory". */
static void test_json_non_utf8_paths(void **state)
{
    char *q = path_in(state, "\xff\x1b-q.safetensors"), *rep = path_in(state, "u.json");
    char *ej = path_in(state, "e.json");
    assert_int_equal(
        tu_run_cli(NULL, "quantize %s -o %s --report %s --device host -q", EXAMPLE, q, rep), 0);
    assert_int_equal(tu_run_cli(NULL, "eval %s %s --json %s --device host", EXAMPLE, q, ej), 0);
    json_t *j = json_load_file(rep, 0, NULL);
    assert_non_null(j);
    assert_non_null(strstr(json_string_value(json_object_get(j, "output")), "\xef\xbf\xbd\x1b-q"));
    json_decref(j);
    assert_non_null(j = json_load_file(ej, 0, NULL));
    assert_non_null(
        strstr(json_string_value(json_object_get(j, "quantized")), "\xef\xbf\xbd\x1b-q"));
    json_decref(j);
    free(q);
    free(rep);
    free(ej);
}

/* Exit 3 naming `a` and `b`, and no output at `out`: the run stopped before
 * writing anything. */
static void expect_refused(const char *out, const char *a, const char *b, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect_refused(const char *out, const char *a, const char *b, const char *fmt, ...)
{
    char cmd[8192], *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = tu_run_cli(&text, "%s", cmd);
    if (rc != 3 || !strstr(text, a) || !strstr(text, b) || tu_exists(out))
        fail_msg("%s: exit %d (want 3 naming '%s' and '%s'), output %s:\n%s", cmd, rc, a, b,
                 tu_exists(out) ? "written" : "absent", text);
    free(text);
}

/* A report (or eval JSON, or dequantize output) that cannot be written is
 * found before the run, not after the model was written. */
static void test_report_checked_first(void **state)
{
    char *q = path_in(state, "q.safetensors"), *ref = path_in(state, "ref.safetensors");
    char *nodir = path_in(state, "nodir/r.json"), *md = path_in(state, "md");
    char *mdw = path_in(state, "md/model.safetensors"), *od = path_in(state, "od");
    char *sub = path_in(state, "sub");
    size_t n;
    unsigned char *bytes = tu_read_file(EXAMPLE, &n);
    assert_int_equal(mkdir(md, 0755), 0);
    assert_true(tu_write_file(mdw, bytes, n));
    free(bytes);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", EXAMPLE, ref), 0);
    if (access("/dev/full", F_OK) == 0) {
        expect_refused(q, "report", "/dev/full", "quantize %s -o %s --report /dev/full", EXAMPLE,
                       q);
        expect_refused(od, "report", "/dev/full", "quantize %s -o %s --report /dev/full", md, od);
        expect_refused(q, "evaluation report", "/dev/full", "eval %s %s --json /dev/full", EXAMPLE,
                       ref);
        expect_refused(q, "output", "/dev/full", "dequantize %s -o /dev/full", ref);
    }
    expect_refused(q, "report directory", "nodir", "quantize %s -o %s --report %s", EXAMPLE, q,
                   nodir);
    expect_refused(od, "report directory", "nodir", "quantize %s -o %s --report %s", md, od, nodir);
    expect_refused(q, "report", "is a directory", "quantize %s -o %s --report %s", EXAMPLE, q, sub);
    expect_refused(q, "output directory", "nodir", "dequantize %s -o %s", ref, nodir);
    assert_int_equal(tu_count_entries(sub), 0);
    char *paths[] = {q, ref, nodir, md, mdw, od, sub};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        free(paths[i]);
}

static unsigned mode_of(const char *dir, const char *name)
{
    char *p = tu_join(dir, name);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    free(p);
    return st.st_mode & 07777;
}

/* New files get 0666 and new directories 0777 less the umask, as cp gives;
 * copied files keep their mode less the umask; a replaced file keeps its own. */
static void test_umask(void **state)
{
    fixture *f = *state;
    char *md = path_in(state, "md"), *mdw = path_in(state, "md/model.safetensors");
    char *sub = path_in(state, "md/extra"), *tok = path_in(state, "md/tokenizer.json");
    char *sh = path_in(state, "md/run.sh"), *cfg = path_in(state, "md/config.json");
    char *nested = path_in(state, "md/extra/notes.txt");
    size_t n;
    unsigned char *bytes = tu_read_file(EXAMPLE, &n);
    assert_int_equal(mkdir(md, 0755), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_true(tu_write_file(mdw, bytes, n));
    free(bytes);
    assert_true(tu_write_file(cfg, "{}\n", 3));
    assert_true(tu_write_file(tok, "{}\n", 3));
    assert_true(tu_write_file(nested, "x\n", 2));
    assert_true(tu_write_file(sh, "#!/bin/sh\n", 10));
    assert_int_equal(chmod(md, 0755), 0);
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(chmod(mdw, 0644), 0);
    assert_int_equal(chmod(cfg, 0644), 0);
    assert_int_equal(chmod(tok, 0644), 0);
    assert_int_equal(chmod(nested, 0644), 0);
    assert_int_equal(chmod(sh, 0755), 0);
    const struct {
        mode_t mask;
        unsigned file, dir, script;
    } cases[] = {{077, 0600, 0700, 0700}, {002, 0664, 0775, 0755}, {027, 0640, 0750, 0750}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mode_t old = umask(cases[i].mask);
        int rc = tu_run_cli(NULL, "quantize %s -o %s/q.safetensors --report %s/q.json -q", EXAMPLE,
                            f->dir, f->dir);
        int rc2 = tu_run_cli(NULL, "quantize %s -o %s/od -q", md, f->dir);
        int rc3 =
            tu_run_cli(NULL, "dequantize %s/q.safetensors -o %s/d.safetensors", f->dir, f->dir);
        umask(old);
        assert_int_equal(rc, 0);
        assert_int_equal(rc2, 0);
        assert_int_equal(rc3, 0);
        assert_int_equal(mode_of(f->dir, "q.safetensors"), cases[i].file);
        assert_int_equal(mode_of(f->dir, "q.json"), cases[i].file);
        assert_int_equal(mode_of(f->dir, "d.safetensors"), cases[i].file);
        assert_int_equal(mode_of(f->dir, "od"), cases[i].dir);
        assert_int_equal(mode_of(f->dir, "od/model.safetensors"), cases[i].file);
        assert_int_equal(mode_of(f->dir, "od/config.json"), cases[i].file);
        assert_int_equal(mode_of(f->dir, "od/tokenizer.json"), cases[i].file & 0644);
        assert_int_equal(mode_of(f->dir, "od/run.sh"), cases[i].script);
        assert_int_equal(mode_of(f->dir, "od/extra"), cases[i].dir & 0755);
        assert_int_equal(mode_of(f->dir, "od/extra/notes.txt"), cases[i].file & 0644);
        /* A file that is replaced keeps its own mode. */
        char *q = tu_join(f->dir, "q.safetensors");
        assert_int_equal(chmod(q, 0604), 0);
        assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s -q", EXAMPLE, q), 0);
        assert_int_equal(mode_of(f->dir, "q.safetensors"), 0604);
        unlink(q);
        free(q);
        const char *made[] = {"q.json", "d.safetensors"};
        for (int k = 0; k < 2; k++) {
            char *p = tu_join(f->dir, made[k]);
            unlink(p);
            free(p);
        }
        char *od = tu_join(f->dir, "od");
        tu_rmtree(od);
        free(od);
    }
    char *paths[] = {md, mdw, sub, tok, sh, cfg, nested};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        free(paths[i]);
}

static void test_inspect_and_dequantize(void **state)
{
    char *q = path_in(state, "iq.safetensors"), *d = path_in(state, "id.safetensors");
    char *text = NULL;
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", EXAMPLE, q), 0);
    assert_int_equal(tu_run_cli(&text, "inspect %s", q), 0);
    assert_non_null(strstr(text, "fc1.weight_scale"));
    assert_non_null(strstr(text, "[256, 1]"));
    assert_non_null(strstr(text, "quantized_by: monoquant"));
    free(text);
    assert_int_equal(tu_run_cli(NULL, "dequantize %s -o %s", q, d), 0);
    mq_model *orig = NULL, *deq = NULL, *qm = NULL;
    assert_int_equal(mq_model_open(EXAMPLE, &orig), MQ_OK);
    assert_int_equal(mq_model_open(d, &deq), MQ_OK);
    assert_int_equal(mq_model_open(q, &qm), MQ_OK);
    assert_int_equal(mq_model_count(deq), mq_model_count(orig));
    const mq_tensor *a = mq_model_find(orig, "fc1.weight"), *b = mq_model_find(deq, "fc1.weight");
    const float *s = mq_model_find(qm, "fc1.weight_scale")->data;
    assert_int_equal(b->dtype, MQ_DTYPE_F32);
    for (size_t i = 0; i < 256 * 128; i++) {
        float err = fabsf(((const float *)a->data)[i] - ((const float *)b->data)[i]);
        assert_true(err <= 0.5001f * s[i / 128]);
    }
    mq_model_free(orig);
    mq_model_free(deq);
    mq_model_free(qm);
    free(q);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quantize_example, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic_and_device_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_std_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_echoes_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminal_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_non_utf8_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_checked_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspect_and_dequantize, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
