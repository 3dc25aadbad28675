/* libFuzzer target: the bytes are written as both config.json and
 * model.safetensors.index.json of a model directory that holds two valid
 * shards, then read with the hfmeta.h loaders. An accepted config is rendered
 * for INT8 and FP16 and an accepted index is rebuilt; each rendering must
 * parse back, keep the input's values, and (for the Python-style dumper)
 * round-trip exactly. The same bytes also go through mq_config_load_json.
 * Built with MQ_FUZZ_NO_MAIN it serves the regression replay. */
#define _GNU_SOURCE /* memmem */
#include "fuzz.h"

#include "hfmeta.h"
#include "report.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static struct {
    bool ready;
    char dir[4096];
    char config_path[4200], index_path[4200];
    mq_config cfg[2];    /* int8 defaults, fp16 */
    mq_scheme scheme[2]; /* theirs */
    mq_report *rep;
    mq_hf_root root;
} g;

static void remove_dir(void)
{
    static const char *const files[] = {MQ_HF_CONFIG, MQ_HF_INDEX, SHARD1, SHARD2};
    char p[4200];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", g.dir, files[i]);
        unlink(p);
    }
    rmdir(g.dir);
}

static void write_shard(const char *name, const char *const *tensors, const int *ranks,
                        int64_t (*shapes)[2], size_t n)
{
    static const float zeros[64];
    char path[4200];
    mq_model *m = NULL;
    if (mq_model_new(&m) != MQ_OK) fuzz_fail("out of memory");
    for (size_t i = 0; i < n; i++)
        if (mq_model_add_tensor(m, tensors[i], MQ_DTYPE_F32, ranks[i], shapes[i], zeros) != MQ_OK)
            fuzz_fail("add_tensor: %s", mq_last_error());
    snprintf(path, sizeof path, "%s/%s", g.dir, name);
    if (mq_model_save(m, path) != MQ_OK) fuzz_fail("save shard: %s", mq_last_error());
    mq_model_free(m);
}

/* The directory, its shards, and a report as a run over them would give. */
static void setup(void)
{
    if (g.ready) return;
    const char *base = getenv("TMPDIR");
    snprintf(g.dir, sizeof g.dir, "%s/mqfuzz-hf-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g.dir)) fuzz_fail("mkdtemp %s failed", g.dir);
    atexit(remove_dir);
    if (mq_hf_root_init(&g.root, g.dir, false) != MQ_OK) fuzz_fail("%s", mq_last_error());
    snprintf(g.config_path, sizeof g.config_path, "%s/%s", g.dir, MQ_HF_CONFIG);
    snprintf(g.index_path, sizeof g.index_path, "%s/%s", g.dir, MQ_HF_INDEX);

    const char *t1[] = {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.bias"};
    const char *t2[] = {"lm_head.weight"};
    int r1[] = {2, 1}, r2[] = {2};
    int64_t s1[][2] = {{4, 8}, {4, 0}}, s2[][2] = {{2, 8}};
    write_shard(SHARD1, t1, r1, s1, 2);
    write_shard(SHARD2, t2, r2, s2, 1);

    for (int i = 0; i < 2; i++)
        mq_config_init(&g.cfg[i]);
    g.cfg[1].dtype = MQ_FLOAT16;
    for (int i = 0; i < 2; i++)
        if (mq_scheme_init(&g.scheme[i], &g.cfg[i]) != MQ_OK)
            fuzz_fail("scheme_init: %s", mq_last_error());
    if (!(g.rep = mq_report_new())) fuzz_fail("out of memory");
    mq_tensor up = {.name = t1[0], .dtype = MQ_DTYPE_F32, .rank = 2, .shape = {4, 8}};
    mq_tensor bias = {.name = t1[1], .dtype = MQ_DTYPE_F32, .rank = 1, .shape = {4}};
    mq_tensor head = {.name = t2[0], .dtype = MQ_DTYPE_F32, .rank = 2, .shape = {2, 8}};
    if (mq_report_add(g.rep, &up, MQ_ACTION_QUANTIZE, MQ_DTYPE_I8, 36, 0, NULL) != MQ_OK ||
        mq_report_add(g.rep, &bias, MQ_ACTION_SKIP, MQ_DTYPE_F32, 16, 0, "rank 1") != MQ_OK ||
        mq_report_add(g.rep, &head, MQ_ACTION_SKIP, MQ_DTYPE_F32, 64, 0, "lm_head") != MQ_OK)
        fuzz_fail("report_add: %s", mq_last_error());
    g.ready = true;
}

static const char *str_or_empty(json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : "";
}

static void put_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fuzz_fail("cannot write %s", path);
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) fuzz_fail("write %s failed", path);
        done += (size_t)w;
    }
    close(fd);
}

/* Text the library rendered: valid JSON with an object at the top. */
static json_t *reparse(const char *text, size_t len, const char *what)
{
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!j) fuzz_fail("%s does not parse back: %s", what, err.text);
    if (!json_is_object(j)) fuzz_fail("%s is not an object", what);
    return j;
}

/* mq_hf_json_dump promises Python's json.dumps: the text must read back to
 * the same value (numbers included), sorted or not. */
static void check_dump(json_t *v)
{
    for (int sort = 0; sort < 2; sort++) {
        char *text = NULL;
        size_t len = 0;
        if (mq_hf_json_dump(v, sort, &text, &len) != MQ_OK)
            fuzz_fail("json_dump: %s", mq_last_error());
        json_t *back = reparse(text, len, "mq_hf_json_dump output");
        if (!json_equal(back, v)) fuzz_fail("mq_hf_json_dump changed a value: %s", text);
        json_decref(back);
        free(text);
    }
}

/* Every key of the input other than those the rendering owns keeps its value. */
static void check_kept(json_t *in, json_t *out)
{
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        if (!strcmp(key, "quantization_config") || !strcmp(key, "torch_dtype") ||
            !strcmp(key, "dtype"))
            continue;
        if (!json_equal(json_object_get(out, key), v))
            fuzz_fail("config.json key '%s' changed in the output", key);
    }
}

static int fuzz_config(void)
{
    json_t *config = NULL;
    mq_status st = mq_hf_config_load(&g.root, &config);
    if (st != MQ_OK) {
        if (config) fuzz_fail("config_load failed but returned a config");
        if (st != MQ_STATUS_E_FORMAT) fuzz_fail("config_load: status %s", mq_status_str(st));
        if (!strstr(mq_last_error(), MQ_HF_CONFIG)) fuzz_fail("error lacks the file name");
        return 0;
    }
    if (!json_is_object(config)) fuzz_fail("config_load accepted a non-object");
    check_dump(config);
    for (int c = 0; c < 2; c++) {
        json_t *copy = json_deep_copy(config);
        char *text = NULL;
        size_t len = 0;
        if (!copy) fuzz_fail("out of memory");
        if (mq_hf_config_render(copy, &g.scheme[c], NULL, g.rep, 0, &text, &len) != MQ_OK)
            fuzz_fail("config_render: %s", mq_last_error());
        json_t *out = reparse(text, len, "rendered config.json");
        check_kept(config, out);
        json_t *qc = json_object_get(out, "quantization_config");
        if (c == 0 && !json_is_object(qc)) fuzz_fail("int8 config lacks quantization_config");
        if (c == 1 && strcmp(str_or_empty(json_object_get(out, "torch_dtype")), "float16") != 0)
            fuzz_fail("fp16 config lacks torch_dtype float16");
        json_decref(out);
        json_decref(copy);
        free(text);
    }
    json_decref(config);
    return 1;
}

static int fuzz_index(void)
{
    json_t *index = NULL;
    mq_hf_shards shards = {0};
    mq_status st = mq_hf_index_load(&g.root, &index, &shards);
    if (st != MQ_OK) {
        if (index || shards.count) fuzz_fail("index_load failed but returned results");
        if (st != MQ_STATUS_E_FORMAT) fuzz_fail("index_load: status %s", mq_status_str(st));
        return 0;
    }
    if (shards.count != 2 || strcmp(shards.names[0], SHARD1) || strcmp(shards.names[1], SHARD2))
        fuzz_fail("index_load accepted an index that does not name both shards");
    char *text = NULL;
    size_t len = 0;
    if (mq_hf_index_render(g.dir, &shards, index, &text, &len) != MQ_OK)
        fuzz_fail("index_render: %s", mq_last_error());
    json_t *out = reparse(text, len, "rendered index");
    json_t *map = json_object_get(out, "weight_map");
    if (json_object_size(map) != 3 ||
        strcmp(str_or_empty(json_object_get(map, "lm_head.weight")), SHARD2) != 0)
        fuzz_fail("rendered weight_map is wrong: %s", text);
    json_t *total = json_object_get(json_object_get(out, "metadata"), "total_size");
    if (json_integer_value(total) != (4 * 8 + 4 + 2 * 8) * 4)
        fuzz_fail("rendered total_size is wrong: %s", text);
    json_decref(out);
    free(text);
    json_decref(index);
    mq_hf_shards_free(&shards);
    return 1;
}

/* The --config file reader. Inputs with "re:" are left out: glibc's regcomp
 * time and memory on adversarial regexes are not this library's to bound. */
static void fuzz_user_config(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "re:", 3)) return;
    mq_config c;
    mq_config_init(&c);
    mq_status st = mq_config_load_json(&c, g.config_path);
    if (st != MQ_OK && st != MQ_STATUS_E_CONFIG && st != MQ_STATUS_E_FORMAT)
        fuzz_fail("config_load_json: status %s", mq_status_str(st));
    mq_config_free(&c);
}

int mq_fuzz_hfjson(const uint8_t *data, size_t size)
{
    setup();
    put_file(g.config_path, data, size);
    put_file(g.index_path, data, size);
    int accepted = fuzz_config();
    accepted |= fuzz_index() << 1;
    fuzz_user_config(data, size);
    return accepted;
}

#ifndef MQ_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mq_fuzz_hfjson(data, size);
    return 0;
}
#endif
