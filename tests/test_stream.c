/* The streaming quantizer (src/stream/stream.c) against the in-memory path:
 * byte-identical files and equal reports for every setting, on the host
 * backend and the default device, with staging slots far smaller than the
 * tensors, in every kind of device staging memory; NaN errors, progress, and a real run of the CLI
 * for peak memory and Ctrl-C. */
#define _DEFAULT_SOURCE /* wait4 */
#include "testutil.h"

#include "backend.h"
#include "cl_api.h"
#include "devset.h"
#include "outfile.h"
#include "reference.h"
#include "report.h"
#include "ring.h"
#include "safetensors.h"
#include "stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *dir;
    char *model;     /* every dtype and shape */
    char *nan_model; /* the same plus a tensor holding a NaN */
    mq_backend *dev; /* the default device (NULL when it did not open) */
} fixture;

static fixture fx;

/* mq_stream_file with the settings of cfg, as mq_quantize_file builds them. */
static mq_status stream_cfg(const char *in, const char *out, const mq_config *cfg, mq_backend *be,
                            mq_stream_totals *totals)
{
    mq_settings set;
    mq_status st = mq_settings_init(&set, cfg);
    return st == MQ_OK ? mq_stream_file(in, out, &set, NULL, be, NULL, totals) : st;
}

static void put_f(void *dst, mq_dtype dt, size_t i, float v)
{
    unsigned char *p = dst;
    uint16_t h;
    if (dt == MQ_DTYPE_F32) {
        memcpy(p + i * 4, &v, 4);
    } else if (dt == MQ_DTYPE_F64) {
        double d = v;
        memcpy(p + i * 8, &d, 8);
    } else {
        h = dt == MQ_DTYPE_BF16 ? mq_f32_to_bf16(v) : mq_f32_to_f16(v);
        memcpy(p + i * 2, &h, 2);
    }
}

static void add(mq_model *m, tu_rng *r, const char *name, mq_dtype dt, int rank,
                const int64_t *shape, float amp)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)shape[i];
    size_t es = mq_dtype_size(dt);
    unsigned char *d = calloc(n ? n * es : 1, 1);
    for (size_t i = 0; i < n; i++) {
        if (dt == MQ_DTYPE_I8)
            d[i] = (unsigned char)tu_rng_u64(r);
        else
            put_f(d, dt, i, tu_rng_normal(r) * amp * (1.0f + (float)(i % 7)));
    }
    assert_int_equal(mq_model_add_tensor(m, name, dt, rank, shape, d), MQ_OK);
    free(d);
}

/* Odd sizes first so later tensors start at unaligned offsets; tensors up to
 * 4 MiB and rows up to 280 KB, larger than the 64 KiB slots of a 1 MiB limit. */
static char *write_model(const char *name, bool with_nan)
{
    mq_model *m;
    tu_rng r;
    tu_rng_seed(&r, 42);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    add(m, &r, "tok.ids", MQ_DTYPE_I8, 1, (int64_t[]){3}, 1);
    add(m, &r, "a.bias", MQ_DTYPE_F32, 1, (int64_t[]){7}, 1);
    add(m, &r, "layers.0.q.weight", MQ_DTYPE_F32, 2, (int64_t[]){37, 129}, 0.1f);
    add(m, &r, "layers.0.k.weight", MQ_DTYPE_F16, 2, (int64_t[]){64, 300}, 0.5f);
    add(m, &r, "layers.0.v.weight", MQ_DTYPE_BF16, 2, (int64_t[]){17, 1001}, 2.0f);
    add(m, &r, "conv.weight", MQ_DTYPE_F32, 4, (int64_t[]){8, 3, 3, 3}, 1);
    add(m, &r, "scalar", MQ_DTYPE_F32, 0, NULL, 1);
    add(m, &r, "empty.weight", MQ_DTYPE_F32, 2, (int64_t[]){0, 5}, 1);
    add(m, &r, "big.weight", MQ_DTYPE_F32, 2, (int64_t[]){256, 4096}, 0.02f);
    add(m, &r, "wide.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 70000}, 3e4f); /* fp16 overflow */
    add(m, &r, "bfwide.weight", MQ_DTYPE_BF16, 2, (int64_t[]){3, 70001}, 1);
    add(m, &r, "embed_tokens.weight", MQ_DTYPE_F32, 2, (int64_t[]){100, 64}, 1);
    add(m, &r, "f64.weight", MQ_DTYPE_F64, 2, (int64_t[]){4, 5}, 1);
    add(m, &r, "lm_head.weight", MQ_DTYPE_F16, 2, (int64_t[]){10, 64}, 1);
    add(m, &r, "many.weight", MQ_DTYPE_F32, 2, (int64_t[]){20000, 3}, 1); /* many short rows */
    if (with_nan) {
        float v[400];
        for (int i = 0; i < 400; i++)
            v[i] = (float)i;
        v[2 * 100 + 50] = NAN;
        assert_int_equal(
            mq_model_add_tensor(m, "nan.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 100}, v), MQ_OK);
        add(m, &r, "after.weight", MQ_DTYPE_F32, 2, (int64_t[]){5, 9}, 1);
    }
    assert_int_equal(mq_model_set_metadata(m, "format", "pt"), MQ_OK);
    assert_int_equal(mq_model_set_metadata(m, "quantized_by", "someone else"), MQ_OK);
    char *path = tu_join(fx.dir, name);
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
    return path;
}

static int setup(void **state)
{
    (void)state;
    fx.dir = tu_mkdtemp();
    if (!fx.dir) return -1;
    fx.model = write_model("in.safetensors", false);
    fx.nan_model = write_model("nan.safetensors", true);
    const mq_device_sel auto_sel = {0};
    if (mq_backend_open(&auto_sel, &fx.dev) != MQ_OK) fx.dev = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mq_backend_free(fx.dev);
    tu_rmtree(fx.dir);
    free(fx.dir);
    free(fx.model);
    free(fx.nan_model);
    return 0;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    if (na != nb) fail_msg("%s is %zu bytes, %s is %zu", a, na, b, nb);
    for (size_t i = 0; i < na; i++)
        if (x[i] != y[i]) fail_msg("%s and %s differ at byte %zu", a, b, i);
    free(x);
    free(y);
}

static void assert_same_report(const mq_report *a, const mq_report *b)
{
    assert_int_equal(mq_report_count(a), mq_report_count(b));
    for (size_t i = 0; i < mq_report_count(a); i++) {
        const mq_report_entry *x = mq_report_entry_at(a, i), *y = mq_report_entry_at(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->action, y->action);
        assert_int_equal(x->dtype_out, y->dtype_out);
        assert_int_equal(x->bytes_in, y->bytes_in);
        assert_int_equal(x->bytes_out, y->bytes_out);
        assert_int_equal(x->fp16_overflow, y->fp16_overflow);
        if (x->reason || y->reason) assert_string_equal(x->reason, y->reason);
    }
    assert_int_equal(mq_report_fp16_overflow(a), mq_report_fp16_overflow(b));
}

typedef struct {
    size_t calls, finished, last_done, last_total;
    uint64_t last_bytes, bytes_total;
    bool monotonic;
} progress_log;

static void on_progress(const mq_progress *p, void *user)
{
    progress_log *l = user;
    if (p->bytes_done < l->last_bytes || p->tensors_done < l->last_done) l->monotonic = false;
    l->calls++;
    if (p->finished) l->finished++;
    l->last_done = p->tensors_done;
    l->last_total = p->tensors_total;
    l->last_bytes = p->bytes_done;
    l->bytes_total = p->bytes_total;
}

/* In-memory reference on ref_dev, then the stream on `be`; files and reports must agree. */
static void check_config_ref(const char *in, mq_config *cfg, mq_backend *be, const char *tag,
                             const char *ref_dev)
{
    char *ref = tu_join(fx.dir, "ref.safetensors"), *out = tu_join(fx.dir, "out.safetensors");
    mq_model *m, *q;
    mq_report *want, *got = mq_report_new();
    char *saved_dev = cfg->device;
    cfg->device = (char *)ref_dev;
    assert_int_equal(mq_model_open(in, &m), MQ_OK);
    assert_int_equal(mq_dynamic_quantize_report(m, cfg, &q, NULL, &want), MQ_OK);
    cfg->device = saved_dev;
    assert_int_equal(mq_model_save(q, ref), MQ_OK);
    progress_log log = {.monotonic = true};
    cfg->progress = on_progress;
    cfg->progress_user = &log;
    mq_settings set;
    assert_int_equal(mq_settings_init(&set, cfg), MQ_OK);
    mq_status st = mq_stream_file(in, out, &set, NULL, be, got, NULL);
    if (st != MQ_OK) fail_msg("%s: %s", tag, mq_last_error());
    cfg->progress = NULL;
    assert_same_file(ref, out);
    assert_same_report(want, got);
    assert_string_equal(mq_report_backend(got), be->backend);
    assert_int_equal(log.finished, mq_model_count(m));
    assert_true(log.monotonic);
    assert_int_equal(log.last_done, log.last_total);
    assert_int_equal(log.last_bytes, log.bytes_total);
    assert_int_equal(tu_count_entries(fx.dir), 4); /* in, nan, ref, out: no temporaries */
    unlink(out);
    unlink(ref);
    mq_report_free(want);
    mq_report_free(got);
    mq_model_free(q);
    mq_model_free(m);
    free(ref);
    free(out);
}

static void check_config(const char *in, mq_config *cfg, mq_backend *be, const char *tag)
{
    check_config_ref(in, cfg, be, tag, "host");
}

static void run_configs(mq_backend *be)
{
    static const uint64_t limits[] = {0, 1 << 20, 8 << 20};
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        for (int k = 0; k < 11; k++) {
            mq_config cfg;
            char tag[128];
            mq_config_init(&cfg);
            cfg.memory_limit = limits[li];
            switch (k) {
            case 0:
                break;
            case 1:
                cfg.symmetric = false;
                break;
            case 2:
                cfg.per_channel = false;
                break;
            case 3:
                cfg.per_channel = false;
                cfg.symmetric = false;
                break;
            case 4:
                cfg.dtype = MQ_FLOAT16;
                break;
            case 5:
                cfg.dtype = MQ_FLOAT16;
                cfg.fp16_saturate = true;
                break;
            case 6:
                assert_int_equal(mq_config_add_include(&cfg, "embed_tokens"), MQ_OK);
                assert_int_equal(mq_config_add_exclude(&cfg, "re:layers\\.0\\.k.*"), MQ_OK);
                break;
            case 7:
                cfg.symmetric = false;
                assert_int_equal(mq_config_add_include(&cfg, "lm_head"), MQ_OK);
                break;
            default:
                /* The mse observer: two passes over each tensor's chunks,
                 * one stop for the whole tensor, as the in-memory path. Its
                 * groups must fit a chunk: the wide rows stay out. */
                cfg.observer = MQ_OBSERVER_MSE;
                assert_int_equal(mq_config_add_exclude(&cfg, "re:.*wide\\.weight"), MQ_OK);
                if (k == 9) {
                    cfg.dtype = MQ_QINT4;
                    cfg.symmetric = false;
                    cfg.group_size = 16;
                } else if (k == 10) {
                    cfg.dtype = MQ_QFP8;
                    cfg.observer_maxshrink = 0.5;
                    cfg.observer_grid = 40;
                    cfg.observer_patience = 2;
                }
                break;
            }
            snprintf(tag, sizeof tag, "%s config %d limit %llu", be->backend, k,
                     (unsigned long long)limits[li]);
            check_config(fx.model, &cfg, be, tag);
            mq_config_free(&cfg);
        }
    }
}

static void test_host_matches_memory(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    run_configs(be);
    mq_backend_free(be);
}

static void test_device_matches_memory(void **state)
{
    (void)state;
    if (!fx.dev) skip();
    run_configs(fx.dev);
}

/* Every kind of staging memory on the device gives the same bytes: plain
 * memory (copied), pinned buffers, and zero-copy buffers that the kernels
 * use in place (which they must have done). */
static void test_staging_modes(void **state)
{
    (void)state;
    /* The last: pinned memory with transfers overlapped with the kernels in
     * small chunks, the path of a discrete GPU. */
    static const mq_cl_staging_mode modes[] = {MQ_CL_STAGING_NONE, MQ_CL_STAGING_PINNED,
                                               MQ_CL_STAGING_ZERO_COPY, MQ_CL_STAGING_PINNED};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        bool overlap = i == 3;
        mq_cl_options o;
        mq_cl_options_init(&o);
        o.staging = modes[i];
        o.overlap = overlap ? MQ_CL_OVERLAP_ON : MQ_CL_OVERLAP_OFF;
        o.overlap_chunk = 4096;
        bool none = false;
        mq_backend *be = NULL;
        if (mq_opencl_backend_open_opts(tu_cl_device(), &o, &none, &be) != MQ_OK) {
            if (!none) fail_msg("OpenCL backend: %s", mq_last_error());
            skip();
        }
        run_configs(be);
        if (modes[i] == MQ_CL_STAGING_ZERO_COPY)
            assert_true(mq_opencl_zero_copy_count(be) > 0);
        else
            assert_int_equal(mq_opencl_zero_copy_count(be), 0);
        if (overlap)
            assert_true(mq_opencl_overlap_chunks(be) > mq_opencl_overlap_calls(be));
        else
            assert_int_equal(mq_opencl_overlap_calls(be), 0);
        mq_backend_free(be);
    }
}

/* The mse search needs each group in memory: a row wider than a chunk is a
 * config error naming the tensor, not a silent fall back to min-max. */
static void test_mse_whole_groups(void **state)
{
    (void)state;
    char *out = tu_join(fx.dir, "out.safetensors");
    mq_config cfg;
    mq_backend *be;
    mq_config_init(&cfg);
    cfg.observer = MQ_OBSERVER_MSE;
    cfg.memory_limit = 1 << 20;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    assert_int_equal(stream_cfg(fx.model, out, &cfg, be, NULL), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "wide.weight"));
    assert_non_null(strstr(mq_last_error(), "mse observer"));
    assert_false(tu_exists(out));
    mq_backend_free(be);
    mq_config_free(&cfg);
    free(out);
}

static void test_skip_nonfinite(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    for (int k = 0; k < 4; k++) {
        mq_config cfg;
        mq_config_init(&cfg);
        cfg.skip_nonfinite = true;
        cfg.symmetric = k % 2 == 0;
        cfg.memory_limit = k < 2 ? 0 : 1 << 20;
        check_config(fx.nan_model, &cfg, k == 3 && fx.dev ? fx.dev : be, "skip_nonfinite");
        mq_config_free(&cfg);
    }
    mq_backend_free(be);
}

/* Without --skip-nonfinite a NaN fails the run: the message names the file,
 * the tensor and the channel, and nothing is left in the output directory. */
static void test_nan_error(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    char *out = tu_join(fx.dir, "nan-out.safetensors");
    for (int k = 0; k < 4; k++) {
        mq_config cfg;
        mq_config_init(&cfg);
        cfg.per_channel = k < 2;
        cfg.memory_limit = k % 2 ? 1 << 20 : 0;
        mq_backend *use = k == 1 && fx.dev ? fx.dev : be;
        assert_int_equal(stream_cfg(fx.nan_model, out, &cfg, use, NULL), MQ_STATUS_E_DATA);
        const char *e = mq_last_error();
        assert_non_null(strstr(e, fx.nan_model));
        assert_non_null(strstr(e, "nan.weight"));
        assert_non_null(
            strstr(e, cfg.per_channel ? "channel 2 holds NaN or Inf" : "holds NaN or Inf"));
        assert_false(tu_exists(out));
        assert_int_equal(tu_count_entries(fx.dir), 2);
        mq_config_free(&cfg);
    }
    free(out);
    mq_backend_free(be);
}

static void test_refusals(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    assert_int_equal(mq_stream_file(fx.model, fx.model, NULL, NULL, be, NULL, NULL),
                     MQ_STATUS_E_OUTPUT);
    char *missing = tu_join(fx.dir, "missing.safetensors");
    char *out = tu_join(fx.dir, "o.safetensors");
    assert_int_equal(mq_stream_file(missing, out, NULL, NULL, be, NULL, NULL), MQ_STATUS_E_IO);
    assert_int_equal(mq_stream_file(NULL, out, NULL, NULL, be, NULL, NULL),
                     MQ_STATUS_E_INVALID_ARG);
    assert_false(tu_exists(out));
    assert_int_equal(tu_count_entries(fx.dir), 2);
    uint64_t bytes;
    size_t tensors;
    assert_int_equal(mq_stream_measure(fx.model, &bytes, &tensors), MQ_OK);
    assert_int_equal(tensors, 15);
    free(missing);
    free(out);
    mq_backend_free(be);
}

/* A disk too small (here: a file size limit) fails before any data moves,
 * naming the output, and leaves nothing behind. Run in a child, since the
 * limit and the signal it raises belong to the process. */
static void test_output_too_big(void **state)
{
    (void)state;
    char *out = tu_join(fx.dir, "big-out.safetensors");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mq_backend *be;
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1 << 20, 1 << 20};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0 || mq_backend_open_host(&be) != MQ_OK) _exit(2);
        mq_status st = mq_stream_file(fx.model, out, NULL, NULL, be, NULL, NULL);
        bool named = strstr(mq_last_error(), out) != NULL;
        mq_backend_free(be);
        _exit(st == MQ_STATUS_E_OUTPUT && named ? 0 : 1);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(tu_exists(out));
    assert_int_equal(tu_count_entries(fx.dir), 2);
    free(out);
}

/* Progress across files: counts continue from the totals handed in. */
static void test_totals(void **state)
{
    (void)state;
    mq_backend *be;
    assert_int_equal(mq_backend_open_host(&be), MQ_OK);
    uint64_t bytes;
    size_t tensors;
    assert_int_equal(mq_stream_measure(fx.model, &bytes, &tensors), MQ_OK);
    mq_stream_totals t = {5, 5 + tensors + 3, 1000, 1000 + bytes + 77};
    progress_log log = {.monotonic = true};
    mq_config cfg;
    mq_config_init(&cfg);
    cfg.progress = on_progress;
    cfg.progress_user = &log;
    char *out = tu_join(fx.dir, "t.safetensors");
    assert_int_equal(stream_cfg(fx.model, out, &cfg, be, &t), MQ_OK);
    assert_int_equal(t.tensors_done, 5 + tensors);
    assert_int_equal(t.bytes_done, 1000 + bytes);
    assert_int_equal(log.last_done, 5 + tensors);
    assert_int_equal(log.last_total, 5 + tensors + 3);
    assert_int_equal(log.last_bytes, 1000 + bytes);
    assert_int_equal(log.bytes_total, 1000 + bytes + 77);
    unlink(out);
    free(out);
    mq_backend_free(be);
}

/* The kernel copy and its fallback (a source on another filesystem, or one
 * that copy_file_range cannot read). */
static void test_copy_from(void **state)
{
    (void)state;
    size_t n;
    unsigned char *want = tu_read_file(fx.model, &n);
    const char *sources[2] = {fx.model, "/proc/self/status"};
    for (int k = 0; k < 2; k++) {
        char *out = tu_join(fx.dir, "copy.bin");
        mq_outfile *f;
        unsigned char bounce[1000];
        int fd = open(sources[k], O_RDONLY);
        assert_true(fd >= 0);
        size_t len = k == 0 ? n - 5 : 200;
        assert_int_equal(mq_outfile_open(out, &f), MQ_OK);
        assert_int_equal(mq_outfile_pwrite(f, "abc", 3, 0), MQ_OK);
        assert_int_equal(mq_outfile_copy_from(f, fd, 5, len, 3, bounce, sizeof bounce, "src"),
                         MQ_OK);
        assert_int_equal(mq_outfile_commit(f), MQ_OK);
        size_t got_n;
        unsigned char *got = tu_read_file(out, &got_n);
        assert_int_equal(got_n, 3 + len);
        assert_memory_equal(got, "abc", 3);
        if (k == 0) assert_memory_equal(got + 3, want + 5, len);
        free(got);
        /* A source shorter than asked for is an input error. */
        assert_int_equal(mq_outfile_open(out, &f), MQ_OK);
        assert_int_equal(
            mq_outfile_copy_from(f, fd, 0, (uint64_t)n + 100000, 0, bounce, sizeof bounce, "src"),
            k == 0 ? MQ_STATUS_E_IO : MQ_STATUS_E_IO);
        mq_outfile_abort(f);
        close(fd);
        unlink(out);
        free(out);
    }
    free(want);
}

typedef struct {
    int left;
    uint64_t off;
} short_gen;

static bool gen_past_end(void *arg, mq_chunk *c)
{
    short_gen *g = arg;
    if (g->left-- <= 0) return false;
    memset(c, 0, sizeof *c);
    c->off = g->off;
    c->bytes = 100;
    g->off += 100;
    return true;
}

/* A file shorter than the chunks asked of it (truncated after its header
 * was read): an input error in both ring modes, never a crash. */
static void test_ring_short_file(void **state)
{
    (void)state;
    char *path = tu_join(fx.dir, "short.bin");
    unsigned char bytes[150] = {0};
    assert_true(tu_write_file(path, bytes, sizeof bytes));
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    void *m = mmap(NULL, sizeof bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    assert_true(m != MAP_FAILED);
    for (int map = 0; map < 2; map++) {
        mq_ring *r;
        const mq_chunk *c;
        const unsigned char *d;
        short_gen g = {3, 0};
        assert_int_equal(mq_ring_new(NULL, 3, 4096, map ? m : NULL, sizeof bytes, &r), MQ_OK);
        assert_int_equal(mq_ring_start(r, fd, path, gen_past_end, &g), MQ_OK);
        assert_int_equal(mq_ring_next(r, &c, &d), MQ_OK);
        assert_non_null(c);
        assert_int_equal(c->bytes, 100);
        mq_ring_release(r);
        assert_int_equal(mq_ring_next(r, &c, &d), MQ_STATUS_E_IO);
        assert_non_null(strstr(mq_last_error(), "shorter than its header says"));
        assert_non_null(strstr(mq_last_error(), path));
        mq_ring_free(r);
    }
    munmap(m, sizeof bytes);
    close(fd);
    unlink(path);
    free(path);
}

/* Another program truncates or rewrites the input during the run: never
 * SIGBUS, and never an error that blames the output; "input ... changed
 * while being read", and no output or temporary left. */
typedef struct {
    const char *path;
    int how; /* 0 truncate to half, 1 truncate to 8 bytes, 2 rewrite one byte in place */
    size_t after;
    bool done;
} change_probe;

static void change_midway(const mq_progress *p, void *user)
{
    change_probe *c = user;
    if (c->done || p->tensors_done < c->after) return;
    c->done = true;
    struct stat st;
    assert_int_equal(stat(c->path, &st), 0);
    if (c->how < 2) {
        assert_int_equal(truncate(c->path, c->how == 0 ? st.st_size / 2 : 8), 0);
    } else {
        int fd = open(c->path, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "x", 1, st.st_size - 1), 1);
        close(fd);
    }
}

static void test_input_changed(void **state)
{
    (void)state;
    size_t n;
    unsigned char *bytes = tu_read_file(fx.model, &n);
    char *in = tu_join(fx.dir, "changing.safetensors"), *out = tu_join(fx.dir, "changed-out.st");
    assert_non_null(bytes);
    for (int dev = 0; dev < 2; dev++) {
        mq_backend *be = fx.dev;
        if (!dev) assert_int_equal(mq_backend_open_host(&be), MQ_OK);
        if (!be) continue;
        for (int how = 0; how < 3; how++) {
            for (size_t after = 1; after <= 9; after += 8) {
                assert_true(tu_write_file(in, bytes, n));
                change_probe c = {in, how, after, false};
                mq_config cfg;
                mq_config_init(&cfg);
                cfg.progress = change_midway;
                cfg.progress_user = &c;
                mq_status st = stream_cfg(in, out, &cfg, be, NULL);
                const char *msg = mq_last_error();
                assert_true(c.done);
                if (st != MQ_STATUS_E_IO || !strstr(msg, in) ||
                    !strstr(msg, "changed while being read"))
                    fail_msg("%s, change %d after %zu tensors: %s: %s", be->backend, how, after,
                             mq_status_str(st), msg);
                assert_false(tu_exists(out));
                assert_int_equal(tu_count_entries(fx.dir), 3); /* no temporary either */
                mq_config_free(&cfg);
            }
        }
        if (!dev) mq_backend_free(be);
    }
    unlink(in);
    free(in);
    free(out);
    free(bytes);
}

/* ---- the CLI on a large model ---- */

#define BIG_TENSORS 14
#define BIG_ROWS 2048
#define BIG_COLS 2304 /* 18 MiB a tensor, ~250 MiB in all */

/* Writes the model piece by piece so this process never holds it. */
static char *write_big_model(void)
{
    static const char *const kinds[2] = {"mlp.weight", "embed_tokens.weight"};
    char *path = tu_join(fx.dir, "big.safetensors");
    mq_st_desc d[BIG_TENSORS];
    char names[BIG_TENSORS][64];
    int64_t shape[2] = {BIG_ROWS, BIG_COLS};
    for (int i = 0; i < BIG_TENSORS; i++) {
        snprintf(names[i], sizeof names[i], "layers.%d.%s", i, kinds[i == 3]);
        d[i] = (mq_st_desc){names[i], MQ_DTYPE_F32, 2, shape, (uint64_t)BIG_ROWS * BIG_COLS * 4};
    }
    char *header;
    size_t hlen;
    assert_int_equal(mq_st_build_header_desc(d, BIG_TENSORS, NULL, NULL, 0, &header, &hlen), MQ_OK);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    assert_int_equal(fwrite(len8, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, hlen, f), hlen);
    tu_rng r;
    tu_rng_seed(&r, 7);
    float *row = malloc(BIG_COLS * sizeof *row);
    for (long k = 0; k < (long)BIG_TENSORS * BIG_ROWS; k++) {
        for (int j = 0; j < BIG_COLS; j++)
            row[j] = (float)(int32_t)tu_rng_u64(&r) * 1e-10f;
        assert_int_equal(fwrite(row, sizeof *row, BIG_COLS, f), BIG_COLS);
    }
    assert_int_equal(fclose(f), 0);
    free(row);
    free(header);
    return path;
}

static pid_t spawn_cli(const char *in, const char *out, const char *device, const char *limit)
{
#ifdef __GLIBC__
    /* The child's peak resident size (wait4's ru_maxrss) counts the pages it
     * shares with this process between fork and exec: heap the earlier tests
     * freed goes back to the system first, so that the peak is the CLI's. */
    malloc_trim(0);
#endif
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(MQ_CLI_PATH, MQ_CLI_PATH, "quantize", in, "-o", out, "--device", device,
              "--memory-limit", limit, "--quiet", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Peak resident size (KiB) of one CLI run, and its exit status. */
static long cli_peak_kib(const char *in, const char *out, const char *device, const char *limit,
                         int *status)
{
    struct rusage ru;
    pid_t pid = spawn_cli(in, out, device, limit);
    assert_true(pid > 0);
    while (wait4(pid, status, 0, &ru) < 0 && errno == EINTR) {
    }
    return ru.ru_maxrss;
}

/*
 * Peak memory with --memory-limit 32M stays under the limit plus 48 MiB of
 * code, libraries and allocator. The host backend is the measure: its
 * baseline is ~8 MiB. PoCL alone takes ~85 MiB (LLVM and its runtime) before
 * any data moves, so for the default device the bound is its own baseline
 * (measured on the tiny example) plus the limit plus the same allowance.
 */
static void test_cli_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__) /* gcc */
    skip();                  /* ASan's quarantine and shadow memory dwarf what is measured here */
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
    skip();
#endif
#endif
    char *big = write_big_model();
    char *out = tu_join(fx.dir, "big-out.safetensors");
    int status;
    long host = cli_peak_kib(big, out, "host", "32M", &status);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    print_message("peak RSS, host, 32 MiB limit, 250 MiB model: %ld KiB\n", host);
    assert_true(host <= (32 + 48) * 1024);
    unlink(out);
    if (fx.dev) {
        char *tiny = tu_join(MQ_SOURCE_DIR, "examples/tiny_mlp.safetensors");
        long base = cli_peak_kib(tiny, out, "auto", "32M", &status);
        unlink(out);
        long dev = cli_peak_kib(big, out, "auto", "32M", &status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        print_message("peak RSS, default device, 32 MiB limit: %ld KiB (baseline %ld KiB)\n", dev,
                      base);
        assert_true(dev <= base + (32 + 48) * 1024);
        unlink(out);
        free(tiny);
    }
    free(out);
    /* Left for the Ctrl-C test. */
    free(big);
}

/* Has the directory a temporary of ours? */
static bool has_temp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    while (d && !found && (e = readdir(d)))
        found = strstr(e->d_name, ".mqtmp-") != NULL;
    if (d) closedir(d);
    return found;
}

/* Runs the CLI and sends SIGINT once its temporary exists plus `delay_ms`.
 * Returns false when the run finished first (nothing was interrupted). */
static bool interrupt_run(const char *in, const char *out, long delay_ms)
{
    pid_t pid = spawn_cli(in, out, "host", "2M");
    assert_true(pid > 0);
    struct timespec t0, now;
    int status = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!has_temp(fx.dir)) {
        if (waitpid(pid, &status, WNOHANG) == pid) return false;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20) fail_msg("no temporary appeared in 20 s");
    }
    nanosleep(&(struct timespec){0, delay_ms * 1000000L}, NULL);
    kill(pid, SIGINT);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return false;
    /* The CLI's handler removes the temporary and re-raises the signal. */
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    return true;
}

/* Ctrl-C in the middle of a run: no output, no temporary. The run lasts
 * ~0.1-0.3 s here; should a fast machine finish before the signal, the
 * attempt is repeated with less delay. */
static void test_cli_sigint(void **state)
{
    (void)state;
    char *big = tu_join(fx.dir, "big.safetensors");
    char *out = tu_join(fx.dir, "int-out.safetensors");
    if (!tu_exists(big)) free(write_big_model());
    static const long delays[] = {20, 5, 0, 0, 0};
    bool interrupted = false;
    for (size_t k = 0; k < sizeof delays / sizeof delays[0] && !interrupted; k++) {
        interrupted = interrupt_run(big, out, delays[k]);
        if (!interrupted) unlink(out);
    }
    assert_true(interrupted);
    assert_false(tu_exists(out));
    assert_false(has_temp(fx.dir));
    unlink(big);
    free(out);
    free(big);
}

/* ---- the presets ---- */

/* Layers that divide into groups of 128 and 128x128 blocks, ones that do not
 * (kept in float), odd row lengths for int4, rows larger than a slot, and
 * edge values: a zero row, subnormals, huge values, ties. */
static char *write_preset_model(const char *dir)
{
    mq_model *m;
    tu_rng r;
    tu_rng_seed(&r, 7);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    add(m, &r, "p.k.weight", MQ_DTYPE_BF16, 2, (int64_t[]){128, 256}, 0.3f);
    add(m, &r, "p.v.weight", MQ_DTYPE_F16, 2, (int64_t[]){130, 203}, 0.5f);
    add(m, &r, "p.wide.weight", MQ_DTYPE_F32, 2, (int64_t[]){3, 70016}, 0.01f);
    add(m, &r, "p.band.weight", MQ_DTYPE_F32, 2, (int64_t[]){256, 1024}, 0.02f);
    add(m, &r, "conv.weight", MQ_DTYPE_F32, 4, (int64_t[]){8, 3, 3, 3}, 1);
    add(m, &r, "embed_tokens.weight", MQ_DTYPE_F32, 2, (int64_t[]){100, 64}, 1);
    float *q = calloc(256 * 384, sizeof *q);
    for (size_t i = 0; i < 256 * 384; i++)
        q[i] = tu_rng_normal(&r) * 0.1f;
    for (size_t c = 0; c < 384; c++) {
        q[1 * 384 + c] = 0.0f;                              /* a zero row */
        q[2 * 384 + c] = (float)(c % 5) * 1e-40f;           /* subnormals */
        q[3 * 384 + c] = (c % 2 ? 1.0f : -1.0f) * 3.0e38f;  /* near FLT_MAX */
        q[4 * 384 + c] = (float)((int)(c % 17) - 8) * 0.5f; /* ties at half codes */
        q[5 * 384 + c] = c < 128 ? 448.0f * (float)(c % 9) / 8.0f : 1e-3f;
    }
    assert_int_equal(
        mq_model_add_tensor(m, "p.q.weight", MQ_DTYPE_F32, 2, (int64_t[]){256, 384}, q), MQ_OK);
    free(q);
    char *path = tu_join(dir, "presets.safetensors");
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
    return path;
}

/* The scheme of case k: every preset, and the variations of each knob. */
static bool preset_case(int k, mq_config *cfg, char *tag, size_t cap)
{
    static const char *const names[] = {"W8A8",       "W8A16",       "W8A16_ASYM", "W4A16",
                                        "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK"};
    mq_config_init(cfg);
    if (k < 7) {
        assert_int_equal(mq_config_set_preset(cfg, names[k]), MQ_OK);
        snprintf(tag, cap, "%s", names[k]);
        return true;
    }
    switch (k) {
    case 7: /* int4 per channel: odd rows, padded words, rows over a slot */
        assert_int_equal(mq_config_set_preset(cfg, "W4A16_ASYM"), MQ_OK);
        cfg->group_size = 0;
        break;
    case 8:
        assert_int_equal(mq_config_set_preset(cfg, "W8A16"), MQ_OK);
        cfg->group_size = 32;
        break;
    case 9:
        assert_int_equal(mq_config_set_preset(cfg, "FP8_DYNAMIC"), MQ_OK);
        cfg->per_channel = false;
        break;
    case 10:
        assert_int_equal(mq_config_set_preset(cfg, "W4A16"), MQ_OK);
        cfg->group_size = 64;
        break;
    default:
        return false;
    }
    snprintf(tag, cap, "case %d", k);
    return true;
}

/* Every preset: the stream on the host and on the device writes the bytes of
 * the in-memory path on the host, at every memory limit, and the in-memory
 * path on the device writes the same model. */
static void test_presets(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *in = write_preset_model(dir);
    mq_backend *host, *dev = NULL;
    assert_int_equal(mq_backend_open_host(&host), MQ_OK);
    /* The OpenCL device (PoCL in CI; the default device is the host path
     * where there is no GPU). A build without OpenCL tests the host alone. */
    const mq_device_sel dc = {.spec = tu_cl_device()};
    if (mq_backend_open(&dc, &dev) != MQ_OK) {
        print_message("presets: no OpenCL device (%s): host only\n", mq_last_error());
        dev = NULL;
    }
    static const uint64_t limits[] = {0, 1 << 20, 8 << 20};
    mq_config cfg;
    char tag[160], name[64];
    for (int k = 0; preset_case(k, &cfg, name, sizeof name); k++) {
        mq_model *m, *qh, *qd;
        assert_int_equal(mq_model_open(in, &m), MQ_OK);
        assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
        assert_int_equal(mq_dynamic_quantize(m, &cfg, &qh, NULL), MQ_OK);
        if (dev) {
            assert_int_equal(mq_config_set_device(&cfg, tu_cl_device()), MQ_OK);
            if (mq_dynamic_quantize(m, &cfg, &qd, NULL) != MQ_OK)
                fail_msg("%s on the device: %s", name, mq_last_error());
            assert_int_equal(mq_model_count(qd), mq_model_count(qh));
            for (size_t i = 0; i < mq_model_count(qh); i++) {
                const mq_tensor *a = mq_model_tensor(qh, i), *b = mq_model_tensor(qd, i);
                assert_string_equal(a->name, b->name);
                assert_int_equal(a->dtype, b->dtype);
                assert_int_equal(a->nbytes, b->nbytes);
                if (memcmp(a->data, b->data, a->nbytes) != 0)
                    fail_msg("%s: %s differs between host and device", name, a->name);
            }
            mq_model_free(qd);
        }
        mq_model_free(qh);
        mq_model_free(m);
        for (size_t li = 0; li < sizeof limits / sizeof *limits; li++) {
            /* One band of 128 rows of the widest layer needs more than 1 MiB in all. */
            if (cfg.block_size && limits[li] == 1 << 20) continue;
            cfg.memory_limit = limits[li];
            for (int d = 0; d < 2; d++) {
                mq_backend *be = d ? dev : host;
                if (!be) continue;
                snprintf(tag, sizeof tag, "%s %s limit %llu", name, be->backend,
                         (unsigned long long)limits[li]);
                check_config(in, &cfg, be, tag);
            }
        }
        mq_config_free(&cfg);
    }
    /* --skip-nonfinite reads every tensor to quantize first (in element
     * chunks, whatever the scheme's own chunks are). */
    static const char *const scanned[] = {"FP8_BLOCK", "W4A16_ASYM", "W8A16"};
    for (size_t k = 0; k < sizeof scanned / sizeof *scanned; k++) {
        mq_config_init(&cfg);
        assert_int_equal(mq_config_set_preset(&cfg, scanned[k]), MQ_OK);
        cfg.skip_nonfinite = true;
        for (int d = 0; d < 2; d++) {
            mq_backend *be = d ? dev : host;
            if (!be) continue;
            snprintf(tag, sizeof tag, "%s skip_nonfinite %s", scanned[k], be->backend);
            check_config(in, &cfg, be, tag);
        }
        mq_config_free(&cfg);
    }
    /* FP8 blocks that cannot fit the memory limit: an error saying so, no output. */
    assert_int_equal(mq_config_set_preset(&cfg, "FP8_BLOCK"), MQ_OK);
    cfg.memory_limit = 1 << 20;
    char *out = tu_join(dir, "out.safetensors");
    assert_int_equal(mq_quantize_file(in, out, &cfg, NULL), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "memory limit"));
    assert_false(tu_exists(out));
    mq_config_free(&cfg);
    free(out);
    mq_backend_free(dev);
    mq_backend_free(host);
    tu_rmtree(dir);
    free(dir);
    free(in);
}

/* A row larger than one device buffer: the in-memory path on a device whose
 * buffers are capped below one row (backend.h, mq_be_quantize_two_pass) and
 * the stream whose slots are smaller than one row (its split chunks) take the
 * same two passes, and write the same bytes, for every kind and both
 * symmetries. */
static void test_long_rows_two_pass(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    char *in = write_preset_model(dir);
    mq_backend *host, *dev = NULL;
    assert_int_equal(mq_backend_open_host(&host), MQ_OK);
    const mq_device_sel dc = {.spec = tu_cl_device()};
    if (mq_backend_open(&dc, &dev) != MQ_OK || strcmp(dev->backend, "opencl") != 0) {
        mq_backend_free(dev);
        mq_backend_free(host);
        tu_rmtree(dir);
        free(dir);
        free(in);
        skip();
    }
    /* W8A16, W8A16_ASYM, FP8_DYNAMIC, int4 per channel. */
    static const int cases[] = {1, 2, 5, 7};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        mq_config cfg;
        char tag[160], name[64];
        assert_true(preset_case(cases[k], &cfg, name, sizeof name));
        /* p.wide.weight's rows are 280 KB: over 16 KiB buffers and the
         * 64 KiB slots of a 1 MiB limit. */
        cfg.max_alloc_override = 16384;
        cfg.memory_limit = 1 << 20;
        for (int d = 0; d < 2; d++) {
            mq_backend *be = d ? dev : host;
            snprintf(tag, sizeof tag, "%s two-pass, stream on %s", name, be->backend);
            check_config_ref(in, &cfg, be, tag, tu_cl_device());
        }
        mq_config_free(&cfg);
    }
    mq_backend_free(dev);
    mq_backend_free(host);
    tu_rmtree(dir);
    free(dir);
    free(in);
}

/* NaN in a group or a block: the error names the tensor, channel and group
 * (or block). */
static void test_preset_nan(void **state)
{
    (void)state;
    mq_model *m, *q = NULL;
    float *w = calloc(256 * 256, sizeof *w);
    w[130 * 256 + 200] = NAN;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "x.weight", MQ_DTYPE_F32, 2, (int64_t[]){256, 256}, w),
                     MQ_OK);
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_preset(&cfg, "W4A16"), MQ_OK);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_dynamic_quantize(m, &cfg, &q, NULL), MQ_STATUS_E_DATA);
    assert_non_null(strstr(mq_last_error(), "'x.weight': channel 130 (group 1)"));
    assert_int_equal(mq_config_set_preset(&cfg, "FP8_BLOCK"), MQ_OK);
    assert_int_equal(mq_dynamic_quantize(m, &cfg, &q, NULL), MQ_STATUS_E_DATA);
    assert_non_null(strstr(mq_last_error(), "'x.weight': block 1,1"));
    assert_null(q);
    mq_config_free(&cfg);
    mq_model_free(m);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_preset_nan),
        cmocka_unit_test(test_long_rows_two_pass),
        cmocka_unit_test(test_host_matches_memory),
        cmocka_unit_test(test_device_matches_memory),
        cmocka_unit_test(test_staging_modes),
        cmocka_unit_test(test_mse_whole_groups),
        cmocka_unit_test(test_skip_nonfinite),
        cmocka_unit_test(test_nan_error),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_output_too_big),
        cmocka_unit_test(test_totals),
        cmocka_unit_test(test_copy_from),
        cmocka_unit_test(test_ring_short_file),
        cmocka_unit_test(test_input_changed),
        cmocka_unit_test(test_cli_memory),
        cmocka_unit_test(test_cli_sigint),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
