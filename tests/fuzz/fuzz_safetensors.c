/* libFuzzer target: the bytes are a whole safetensors file image. The length
 * prefix is checked as the reader does, the header goes through
 * mq_st_parse_header, and an accepted model is planned, its header rebuilt
 * and read back, and it is quantized on the host (int8 sym per channel, fp16,
 * int8 asym per tensor) both in memory and by the streaming file path, which
 * must fail alike or write the same bytes. mq_model_open on the same bytes
 * must agree on accept/reject. Built without LLVMFuzzerTestOneInput
 * (MQ_FUZZ_NO_MAIN) it serves the regression replay in tests/test_fuzzregress.c. */
#define _GNU_SOURCE /* memfd_create */
#include "fuzz.h"

#include "dtype.h"
#include "model.h"
#include "plan.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NCFG 5

/* Configs and planners built once: the fuzzer runs the entry millions of times. */
static struct {
    bool ready;
    /* int8 defaults, fp16, int8 asym per tensor, int4 asym in groups of 8,
     * FP8 in 2x2 blocks (small enough that fuzzed shapes divide) */
    mq_config cfg[NCFG];
    mq_planner *plan[NCFG];
    char dir[256]; /* outputs of the two paths (tmpfs where there is one) */
    char mem_out[300], stream_out[300];
} g;

static void remove_outputs(void)
{
    unlink(g.mem_out);
    unlink(g.stream_out);
    rmdir(g.dir);
}

static void setup(void)
{
    if (g.ready) return;
    for (int i = 0; i < NCFG; i++) {
        mq_config_init(&g.cfg[i]);
        if (mq_config_set_device(&g.cfg[i], "host") != MQ_OK)
            fuzz_fail("set_device: %s", mq_last_error());
    }
    g.cfg[1].dtype = MQ_FLOAT16;
    g.cfg[2].symmetric = false;
    g.cfg[2].per_channel = false;
    if (mq_config_set_preset(&g.cfg[3], "W4A16_ASYM") != MQ_OK ||
        mq_config_set_preset(&g.cfg[4], "FP8_BLOCK") != MQ_OK)
        fuzz_fail("set_preset: %s", mq_last_error());
    g.cfg[3].group_size = 8;
    g.cfg[4].block_size = 2;
    for (int i = 0; i < NCFG; i++) {
        mq_settings set;
        if (mq_settings_init(&set, &g.cfg[i]) != MQ_OK || mq_planner_new(&set, &g.plan[i]) != MQ_OK)
            fuzz_fail("planner_new: %s", mq_last_error());
    }
    struct stat st;
    const char *base = getenv("TMPDIR");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        base = "/dev/shm"; /* the writer's fsyncs cost nothing there */
    snprintf(g.dir, sizeof g.dir, "%s/mqfuzz-st-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g.dir)) fuzz_fail("mkdtemp %s failed", g.dir);
    snprintf(g.mem_out, sizeof g.mem_out, "%s/mem.safetensors", g.dir);
    snprintf(g.stream_out, sizeof g.stream_out, "%s/stream.safetensors", g.dir);
    atexit(remove_outputs);
    g.ready = true;
}

/* The length-prefix rules of the reader: *n is the header length. */
static bool prefix_ok(const uint8_t *data, size_t size, uint64_t *n)
{
    uint64_t v = 0;
    if (size < 8) return false;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | data[i];
    *n = v;
    return v <= MQ_ST_MAX_HEADER && 8 + v <= size;
}

static void check_plan(const mq_model *m)
{
    char reason[256];
    for (size_t i = 0; i < mq_model_count(m); i++) {
        const mq_tensor *t = mq_model_tensor(m, i);
        for (int c = 0; c < NCFG; c++) {
            memset(reason, 'x', sizeof reason);
            mq_action a = mq_planner_decide(g.plan[c], t->name, t->dtype, t->rank, t->shape, reason,
                                            sizeof reason);
            if (a != MQ_ACTION_QUANTIZE && a != MQ_ACTION_CAST && a != MQ_ACTION_SKIP)
                fuzz_fail("planner returned action %d", (int)a);
            if (a == MQ_ACTION_SKIP && !memchr(reason, '\0', sizeof reason))
                fuzz_fail("skip reason is not terminated");
            /* With no patterns, int8 quantizes only non-empty F32/F16/BF16 Linear/Conv
             * weights and casts nothing; fp16 casts F32/F64/BF16 and quantizes nothing. */
            bool fits =
                g.cfg[c].dtype != MQ_FLOAT16
                    ? (a != MQ_ACTION_CAST &&
                       (a != MQ_ACTION_QUANTIZE || (t->rank >= 2 && t->rank <= 5 && t->nbytes > 0 &&
                                                    mq_dtype_is_quantizable(t->dtype))))
                    : (a != MQ_ACTION_QUANTIZE &&
                       (a != MQ_ACTION_CAST || t->dtype == MQ_DTYPE_F32 ||
                        t->dtype == MQ_DTYPE_F64 || t->dtype == MQ_DTYPE_BF16));
            if (!fits)
                fuzz_fail("%s planner: action %d for '%s' (%s, rank %d, %zu bytes)",
                          g.cfg[c].dtype != MQ_FLOAT16 ? "quantize" : "fp16", (int)a, t->name,
                          mq_dtype_name(t->dtype), t->rank, t->nbytes);
        }
    }
}

/* The writer's header for a model (read or quantized) must be accepted by the reader. */
static void check_rebuild(const mq_model *m)
{
    char *hdr = NULL;
    size_t n = 0;
    uint64_t data_len = 0;
    for (size_t i = 0; i < mq_model_count(m); i++)
        data_len += mq_model_tensor(m, i)->nbytes;
    if (mq_st_build_header(m, &hdr, &n) != MQ_OK)
        fuzz_fail("rebuilding an accepted header failed: %s", mq_last_error());
    if (n % 8) fuzz_fail("rebuilt header is %zu bytes, not padded to 8", n);
    if (mq_st_parse_header(NULL, hdr, n, NULL, data_len, NULL, NULL) != MQ_OK)
        fuzz_fail("rebuilt header rejected: %s", mq_last_error());
    free(hdr);
}

static bool same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        same = x == y;
        if (x == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Quantizes in memory and through the streaming file path (`path` holds the
 * same bytes as `m`): bad data is a returned error, never a crash, and both
 * paths give the same status and, on success, the same file. */
static void check_quantize(const mq_model *m, const char *path)
{
    for (int c = 0; c < NCFG; c++) {
        mq_model *out = NULL;
        mq_skip_list *skipped = NULL;
        unlink(g.mem_out);
        unlink(g.stream_out);
        mq_status st = mq_dynamic_quantize(m, &g.cfg[c], &out, &skipped);
        if (st == MQ_OK) {
            if (!out || !skipped) fuzz_fail("quantize returned MQ_OK without its outputs");
            check_rebuild(out);
            if (mq_model_save(out, g.mem_out) != MQ_OK)
                fuzz_fail("saving the quantized model: %s", mq_last_error());
        } else if (st != MQ_STATUS_E_DATA && st != MQ_STATUS_E_FORMAT) {
            fuzz_fail("quantize: unexpected status %s: %s", mq_status_str(st), mq_last_error());
        }
        mq_model_free(out);
        mq_skip_list_free(skipped);

        mq_status fs = mq_quantize_file(path, g.stream_out, &g.cfg[c], NULL);
        if (fs != st)
            fuzz_fail("config %d: in memory %s, streamed %s (%s)", c, mq_status_str(st),
                      mq_status_str(fs), fs != MQ_OK ? mq_last_error() : "");
        if (fs != MQ_OK && access(g.stream_out, F_OK) == 0)
            fuzz_fail("config %d: a failed streamed run left its output", c);
        if (fs == MQ_OK && !same_bytes(g.mem_out, g.stream_out))
            fuzz_fail("config %d: the streamed file differs from the in-memory one", c);
    }
}

/* The same bytes as a file: a memory file, named through /proc. */
static int memory_file(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memfd_create("mq_fuzz_st", MFD_CLOEXEC);
    if (fd < 0) fuzz_fail("memfd_create failed");
    if (size && write(fd, data, size) != (ssize_t)size) fuzz_fail("memfd write failed");
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

static bool open_accepts(const char *path)
{
    mq_model *m = NULL;
    bool ok = mq_model_open(path, &m) == MQ_OK;
    mq_model_free(m);
    return ok;
}

int mq_fuzz_safetensors(const uint8_t *data, size_t size)
{
    uint64_t n;
    int accepted = 0;
    char path[64];
    setup();
    int fd = memory_file(data, size, path, sizeof path);
    if (prefix_ok(data, size, &n)) {
        mq_blob *blob = mq_blob_new_heap(size);
        mq_model *m = NULL;
        if (!blob || mq_model_new(&m) != MQ_OK) fuzz_fail("out of memory");
        unsigned char *img = mq_blob_data(blob);
        if (size) memcpy(img, data, size);
        const char *hdr = (const char *)img + 8;
        mq_status st = mq_st_parse_header("fuzz.safetensors", hdr, (size_t)n, img + 8 + n,
                                          size - 8 - n, blob, m);
        if (st == MQ_OK) {
            accepted = 1;
            check_plan(m);
            check_rebuild(m);
            check_quantize(m, path);
        } else if (mq_model_count(m) != 0) {
            fuzz_fail("rejected header left %zu tensors in the model", mq_model_count(m));
        } else if (!strstr(mq_last_error(), "fuzz.safetensors")) {
            fuzz_fail("error does not name the file: %s", mq_last_error());
        }
        mq_model_free(m);
        mq_blob_unref(blob);
    }
    if (open_accepts(path) != (accepted == 1))
        fuzz_fail("mq_model_open %s what mq_st_parse_header %s", accepted ? "rejects" : "accepts",
                  accepted ? "accepts" : "rejects");
    close(fd);
    return accepted;
}

#ifndef MQ_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mq_fuzz_safetensors(data, size);
    return 0;
}
#endif
