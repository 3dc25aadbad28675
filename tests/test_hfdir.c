/* mq_hfdir_quantize on small llama-shaped Hugging Face directories written
 * here: the output directory's shards, index, config.json and copied files,
 * strict index checks, refusals, cleanup after errors and signals. */
#define _GNU_SOURCE /* copy_file_range and loff_t, for the wrappers */
#include "testutil.h"

#include "backend.h"
#include "devset.h"
#include "hfdir.h"
#include "hfmeta.h"
#include "monoquant.h"
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define H 8
#define FF 16
#define V 24
#define KV 4
#define NSHARDS 3

typedef struct {
    const char *name;
    int rank;
    int64_t shape[2];
    int shard;
} spec;

static const spec specs[] = {
    {"model.embed_tokens.weight", 2, {V, H}, 0},
    {"model.layers.0.input_layernorm.weight", 1, {H, 0}, 0},
    {"model.layers.0.self_attn.q_proj.weight", 2, {H, H}, 0},
    {"model.layers.0.self_attn.k_proj.weight", 2, {KV, H}, 0},
    {"model.layers.0.self_attn.v_proj.weight", 2, {KV, H}, 0},
    {"model.layers.0.self_attn.o_proj.weight", 2, {H, H}, 0},
    {"model.layers.0.post_attention_layernorm.weight", 1, {H, 0}, 0},
    {"model.layers.0.mlp.gate_proj.weight", 2, {FF, H}, 0},
    {"model.layers.0.mlp.up_proj.weight", 2, {FF, H}, 0},
    {"model.layers.0.mlp.down_proj.weight", 2, {H, FF}, 0},
    {"model.layers.1.input_layernorm.weight", 1, {H, 0}, 1},
    {"model.layers.1.self_attn.q_proj.weight", 2, {H, H}, 1},
    {"model.layers.1.self_attn.k_proj.weight", 2, {KV, H}, 1},
    {"model.layers.1.self_attn.v_proj.weight", 2, {KV, H}, 1},
    {"model.layers.1.self_attn.o_proj.weight", 2, {H, H}, 1},
    {"model.layers.1.post_attention_layernorm.weight", 1, {H, 0}, 1},
    {"model.layers.1.mlp.gate_proj.weight", 2, {FF, H}, 1},
    {"model.layers.1.mlp.up_proj.weight", 2, {FF, H}, 1},
    {"model.layers.1.mlp.down_proj.weight", 2, {H, FF}, 1},
    {"model.norm.weight", 1, {H, 0}, 2},
    {"lm_head.weight", 2, {V, H}, 2},
};
#define NSPECS (sizeof specs / sizeof *specs)

static const char config_text[] =
    "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n  \"hidden_size\": 8,\n"
    "  \"initializer_range\": 0.02,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n  \"vocab_size\": 24\n}\n";

typedef struct {
    int shards; /* 1: model.safetensors; NSHARDS: an index */
    mq_dtype dtype;
    bool tied;      /* no lm_head.weight, tie_word_embeddings true */
    bool no_config; /* no config.json */
    const char *nan_tensor;
    bool all_blobs; /* every top-level file a link into the cache's blobs/ */
} model_opts;

/* The input sits where the Hugging Face cache puts a snapshot. */
#define CACHE_REPO "models--org--tiny"
#define IN_REL CACHE_REPO "/snapshots/0123abcd"

static mq_backend *g_be;

/* ---- Fault injection (tests/test_hfdir.cmake wraps these calls). */

typedef enum { FAULT_NONE = 0, FAULT_NO_CFR, FAULT_CFR_EIO, FAULT_RENAME_DIR } fault_kind;
static fault_kind g_fault;
static int g_cfr_calls;
static const char *g_rename_target;

ssize_t __real_copy_file_range(int in, loff_t *in_off, int out, loff_t *out_off, size_t n,
                               unsigned flags);
ssize_t __wrap_copy_file_range(int in, loff_t *in_off, int out, loff_t *out_off, size_t n,
                               unsigned flags);
int __real_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);

ssize_t __wrap_copy_file_range(int in, loff_t *in_off, int out, loff_t *out_off, size_t n,
                               unsigned flags)
{
    g_cfr_calls++;
    if (g_fault == FAULT_NO_CFR) { /* as on a filesystem pair without support */
        errno = EXDEV;
        return -1;
    }
    if (g_fault == FAULT_CFR_EIO) {
        errno = EIO;
        return -1;
    }
    return __real_copy_file_range(in, in_off, out, out_off, n, flags);
}

int __wrap_rename(const char *from, const char *to)
{
    if (g_fault == FAULT_RENAME_DIR && g_rename_target && !strcmp(to, g_rename_target)) {
        errno = EXDEV;
        return -1;
    }
    return __real_rename(from, to);
}

static int group_setup(void **state)
{
    (void)state;
    return mq_backend_open_host(&g_be) == MQ_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    mq_backend_free(g_be);
    return 0;
}

static char *shard_name(int i, int n)
{
    char *s = malloc(64);
    if (n == 1)
        snprintf(s, 64, "model.safetensors");
    else
        snprintf(s, 64, "model-%05d-of-%05d.safetensors", i + 1, n);
    return s;
}

static char *path2(const char *a, const char *b)
{
    return tu_join(a, b);
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static void add_spec(mq_model *m, const spec *s, const model_opts *o, tu_rng *r)
{
    int64_t n = s->shape[0] * (s->rank == 2 ? s->shape[1] : 1);
    float *f = malloc((size_t)n * sizeof *f);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++) {
        f[i] = s->rank == 1 ? 1.0f + tu_rng_f32(r) / 20 : tu_rng_f32(r) / 20;
        h[i] = to_bf16(f[i]);
    }
    if (o->nan_tensor && !strcmp(o->nan_tensor, s->name)) f[n / 2] = NAN, h[n / 2] = 0x7FC0;
    const void *data = o->dtype == MQ_DTYPE_BF16 ? (const void *)h : (const void *)f;
    assert_int_equal(mq_model_add_tensor(m, s->name, o->dtype, s->rank, s->shape, data), MQ_OK);
    free(f);
    free(h);
}

/* Writes shard `k` (all tensors when there is one shard), plus tensor `extra`
 * of another shard when not NULL. */
static void write_shard(const char *in, int k, const model_opts *o, const char *extra)
{
    mq_model *m;
    tu_rng r;
    tu_rng_seed(&r, 100 + (uint64_t)k);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    for (size_t i = 0; i < NSPECS; i++) {
        bool tied_head = o->tied && !strcmp(specs[i].name, "lm_head.weight");
        bool mine =
            o->shards == 1 || specs[i].shard == k || (extra && !strcmp(extra, specs[i].name));
        if (mine && !tied_head) add_spec(m, &specs[i], o, &r);
    }
    char *name = shard_name(k, o->shards), *p = path2(in, name);
    assert_int_equal(mq_model_save(m, p), MQ_OK);
    mq_model_free(m);
    free(name);
    free(p);
}

static json_t *make_index(const model_opts *o)
{
    json_t *map = json_object();
    for (size_t i = 0; i < NSPECS; i++) {
        if (o->tied && !strcmp(specs[i].name, "lm_head.weight")) continue;
        char *s = shard_name(specs[i].shard, o->shards);
        json_object_set_new(map, specs[i].name, json_string(s));
        free(s);
    }
    return json_pack("{s:{s:i, s:s}, s:o}", "metadata", "total_size", 12345, "note", "kept",
                     "weight_map", map);
}

static void write_index(const char *in, json_t *index)
{
    char *p = path2(in, MQ_HF_INDEX);
    assert_int_equal(json_dump_file(index, p, JSON_INDENT(2)), 0);
    free(p);
}

static void write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
    char *p = path2(dir, name);
    assert_true(tu_write_file(p, text, strlen(text)));
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

/* <blobs>/<name>.blob in place of <in>/<name>, which becomes a link to it,
 * as the Hugging Face cache stores every file of a snapshot. */
static void move_to_blob(const char *in, const char *blobs, const char *name)
{
    char blob[512], target[512];
    snprintf(blob, sizeof blob, "%s/%s.blob", blobs, name);
    snprintf(target, sizeof target, "../../blobs/%s.blob", name);
    char *p = path2(in, name);
    assert_int_equal(rename(p, blob), 0);
    assert_int_equal(symlink(target, p), 0);
    free(p);
}

/* A model directory at <root>/IN_REL as the Hub has them: weights, config,
 * tokenizer files (one a symbolic link into the cache's blobs/, or all with
 * all_blobs) and a sentence-transformers style subdirectory. */
static char *make_model(const char *root, const model_opts *o)
{
    char *repo = path2(root, CACHE_REPO), *snaps = path2(repo, "snapshots");
    char *in = path2(root, IN_REL), *blobs = path2(repo, "blobs");
    char cfg[1024];
    assert_int_equal(mkdir(repo, 0755), 0);
    assert_int_equal(mkdir(snaps, 0755), 0);
    assert_int_equal(mkdir(in, 0755), 0);
    assert_int_equal(mkdir(blobs, 0755), 0);
    for (int k = 0; k < o->shards; k++)
        write_shard(in, k, o, NULL);
    if (o->shards > 1) {
        json_t *index = make_index(o);
        write_index(in, index);
        json_decref(index);
    }
    snprintf(cfg, sizeof cfg, config_text, o->tied ? "true" : "false",
             o->dtype == MQ_DTYPE_BF16 ? "bfloat16" : "float32");
    if (!o->no_config) write_text(in, "config.json", cfg, 0644);
    write_text(in, "tokenizer.json", "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n",
               0640);
    write_text(in, "tokenizer_config.json", "{\"model_max_length\": 2048}\n", 0644);
    write_text(in, "generation_config.json", "{\"do_sample\": false}\n", 0644);
    write_text(blobs, "a1b2c3", "[PAD]\n[UNK]\nhello\n", 0644);
    char *link = path2(in, "vocab.txt");
    assert_int_equal(symlink("../../blobs/a1b2c3", link), 0);
    free(link);
    char *sub = path2(in, "1_Pooling");
    assert_int_equal(mkdir(sub, 0750), 0);
    write_text(sub, "config.json", "{\"word_embedding_dimension\": 8}\n", 0644);
    free(sub);
    if (o->all_blobs) {
        for (int k = 0; k < o->shards; k++) {
            char *s = shard_name(k, o->shards);
            move_to_blob(in, blobs, s);
            free(s);
        }
        if (o->shards > 1) move_to_blob(in, blobs, MQ_HF_INDEX);
        if (!o->no_config) move_to_blob(in, blobs, "config.json");
        move_to_blob(in, blobs, "tokenizer.json");
    }
    free(blobs);
    free(snaps);
    free(repo);
    return in;
}

/* ---- Checks shared by the cases. */

static void digest_add(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 1099511628211ULL;
}

/* Names, kinds, modes and contents of a tree (links followed; a dangling
 * one by its text). */
static void tree_digest(const char *path, uint64_t *h)
{
    struct dirent **list;
    int n = scandir(path, &list, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        if (strcmp(name, ".") && strcmp(name, "..")) {
            char *p = path2(path, name);
            struct stat st;
            char link[1024] = "";
            if (stat(p, &st) != 0) { /* a dangling link: its text */
                assert_int_equal(lstat(p, &st), 0);
                assert_true(readlink(p, link, sizeof link - 1) > 0);
            }
            digest_add(h, name, strlen(name) + 1);
            digest_add(h, &st.st_mode, sizeof st.st_mode);
            if (*link) {
                digest_add(h, link, strlen(link));
            } else if (S_ISDIR(st.st_mode)) {
                tree_digest(p, h);
            } else if (S_ISREG(st.st_mode)) { /* a FIFO would wait for a writer */
                uint64_t f = tu_file_hash(p);
                digest_add(h, &f, sizeof f);
            }
            free(p);
        }
        free(list[i]);
    }
    free(list);
}

static uint64_t digest(const char *path)
{
    uint64_t h = 1469598103934665603ULL;
    tree_digest(path, &h);
    return h;
}

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".mqtmp-")) n++;
    closedir(d);
    return n;
}

static json_t *load_json(const char *dir, const char *name)
{
    char *p = path2(dir, name);
    json_error_t err;
    json_t *j = json_load_file(p, 0, &err);
    if (!j) fail_msg("%s: %s", p, err.text);
    free(p);
    return j;
}

static mq_model *open_in(const char *dir, const char *name)
{
    mq_model *m;
    char *p = path2(dir, name);
    assert_int_equal(mq_model_open(p, &m), MQ_OK);
    free(p);
    return m;
}

static void assert_same_file(const char *a_dir, const char *b_dir, const char *name)
{
    char *a = path2(a_dir, name), *b = path2(b_dir, name);
    struct stat sa, sb;
    assert_int_equal(stat(a, &sa), 0);
    assert_int_equal(lstat(b, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sa.st_mode & 0777, sb.st_mode & 0777);
    assert_int_equal(sa.st_size, sb.st_size);
    assert_true(tu_file_hash(a) == tu_file_hash(b));
    free(a);
    free(b);
}

/* The output shard holds what mq_dynamic_quantize makes of the input shard,
 * tensor for tensor. */
static void assert_shard_matches(const char *in, const char *out, const char *name,
                                 const mq_config *cfg)
{
    mq_model *mi = open_in(in, name), *mo = open_in(out, name), *ref;
    assert_int_equal(mq_dynamic_quantize(mi, cfg, &ref, NULL), MQ_OK);
    assert_int_equal(mq_model_count(mo), mq_model_count(ref));
    for (size_t i = 0; i < mq_model_count(ref); i++) {
        const mq_tensor *r = mq_model_tensor(ref, i), *o = mq_model_find(mo, r->name);
        if (!o) fail_msg("%s: no tensor '%s'", name, r->name);
        assert_int_equal(o->dtype, r->dtype);
        assert_int_equal(o->rank, r->rank);
        assert_memory_equal(o->shape, r->shape, sizeof(int64_t) * (size_t)r->rank);
        assert_int_equal(o->nbytes, r->nbytes);
        assert_memory_equal(o->data, r->data, r->nbytes);
    }
    /* Every input tensor is in the output, under its name or (packed) as NAME_packed. */
    for (size_t i = 0; i < mq_model_count(mi); i++) {
        char packed[512];
        const char *n = mq_model_tensor(mi, i)->name;
        snprintf(packed, sizeof packed, "%s_packed", n);
        if (!mq_model_find(mo, n) && !mq_model_find(mo, packed))
            fail_msg("%s: input tensor '%s' is not in the output", name, n);
    }
    mq_model_free(ref);
    mq_model_free(mo);
    mq_model_free(mi);
}

/* Data bytes of a safetensors file: its size less the 8-byte prefix and the header. */
static uint64_t data_bytes(const char *dir, const char *name)
{
    size_t n;
    char *p = path2(dir, name);
    unsigned char *b = tu_read_file(p, &n);
    assert_non_null(b);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | b[i];
    free(b);
    free(p);
    return (uint64_t)n - 8 - hl;
}

static void assert_index(const char *out, int shards)
{
    json_t *idx = load_json(out, MQ_HF_INDEX), *map = json_object_get(idx, "weight_map");
    json_t *meta = json_object_get(idx, "metadata");
    uint64_t total = 0;
    size_t tensors = 0;
    for (int k = 0; k < shards; k++) {
        char *s = shard_name(k, shards);
        mq_model *m = open_in(out, s);
        for (size_t i = 0; i < mq_model_count(m); i++) {
            json_t *v = json_object_get(map, mq_model_tensor(m, i)->name);
            assert_non_null(v);
            assert_string_equal(json_string_value(v), s);
        }
        tensors += mq_model_count(m);
        total += data_bytes(out, s);
        mq_model_free(m);
        free(s);
    }
    assert_int_equal(json_object_size(map), tensors);
    assert_int_equal(json_integer_value(json_object_get(meta, "total_size")), total);
    assert_string_equal(json_string_value(json_object_get(meta, "note")), "kept");
    const char *key, *prev = "";
    json_t *v;
    json_object_foreach(map, key, v)
    {
        assert_true(strcmp(prev, key) < 0); /* sorted, as transformers writes it */
        prev = key;
    }
    json_decref(idx);
}

/* The block compressed-tensors 0.20.1 writes for the same scheme (its
 * ModelCompressor.update_config output, keys as it dumps them): W8A8 for
 * symmetric int8, int8 weights only (pack-quantized) otherwise. */
static const char expected_qc[] =
    "{\"config_groups\": {\"group_0\": {\"format\": \"%s\", \"input_activations\": %s,"
    " \"output_activations\": null, \"targets\": [\"Linear\"], \"weights\": {\"dynamic\": false,"
    " \"group_size\": null, \"num_bits\": 8, \"strategy\": \"%s\", \"symmetric\": %s,"
    " \"type\": \"int\"}}}, \"format\": \"%s\", \"global_compression_ratio\": null,"
    " \"ignore\": [\"lm_head\"], \"kv_cache_scheme\": null, \"moe_sparsity_config\": null,"
    " \"quant_method\": \"compressed-tensors\", \"quantization_status\": \"compressed\","
    " \"sparsity_config\": {}, \"transform_config\": {}, \"version\": \"0.20.1\"}";
static const char w8a8_acts[] = "{\"dynamic\": true, \"group_size\": null, \"num_bits\": 8,"
                                " \"strategy\": \"token\", \"symmetric\": true, \"type\": \"int\"}";

/* The output config: the input's keys, values and order, then the block. */
static void assert_config(const char *in, const char *out, const mq_config *cfg)
{
    json_t *ji = load_json(in, "config.json"), *jo = load_json(out, "config.json");
    void *it = json_object_iter(jo);
    const char *key;
    json_t *v;
    json_object_foreach(ji, key, v)
    {
        assert_non_null(it);
        assert_string_equal(json_object_iter_key(it), key);
        if (!(cfg->dtype == MQ_FLOAT16 && !strcmp(key, "torch_dtype")))
            assert_true(json_equal(json_object_iter_value(it), v));
        it = json_object_iter_next(jo, it);
    }
    if (cfg->dtype == MQ_FLOAT16) {
        assert_null(it);
        assert_string_equal(json_string_value(json_object_get(jo, "torch_dtype")), "float16");
    } else {
        char want[2048];
        bool w8a8 = cfg->symmetric && !cfg->weights_only;
        const char *fmt = w8a8 ? "int-quantized" : "pack-quantized";
        snprintf(want, sizeof want, expected_qc, fmt, w8a8 ? w8a8_acts : "null",
                 cfg->per_channel ? "channel" : "tensor", cfg->symmetric ? "true" : "false", fmt);
        json_t *jw = json_loads(want, 0, NULL);
        assert_non_null(jw);
        assert_non_null(it);
        assert_string_equal(json_object_iter_key(it), "quantization_config");
        if (!json_equal(json_object_iter_value(it), jw)) {
            char *got = json_dumps(json_object_iter_value(it), 0);
            fail_msg("quantization_config: %s", got);
        }
        assert_null(json_object_iter_next(jo, it));
        json_decref(jw);
    }
    /* Untouched numbers keep Python's spelling. */
    char *p = path2(out, "config.json");
    char *text = (char *)tu_read_file(p, NULL);
    assert_non_null(strstr(text, "\n  \"rms_norm_eps\": 1e-05,\n"));
    assert_non_null(strstr(text, "\n  \"rope_theta\": 10000.0,\n"));
    assert_non_null(strstr(text, "\n  \"initializer_range\": 0.02,\n"));
    free(text);
    free(p);
    json_decref(ji);
    json_decref(jo);
}

static void assert_other_files(const char *in, const char *out)
{
    assert_same_file(in, out, "tokenizer.json");
    assert_same_file(in, out, "tokenizer_config.json");
    assert_same_file(in, out, "generation_config.json");
    assert_same_file(in, out, "vocab.txt");
    char *si = path2(in, "1_Pooling"), *so = path2(out, "1_Pooling");
    struct stat st;
    assert_int_equal(stat(so, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0750);
    assert_same_file(si, so, "config.json");
    free(si);
    free(so);
}

/* Every quantized weight read back is within half a step of the input. */
static void assert_dequantizes(const char *in, const char *out, const char *name)
{
    mq_model *mi = open_in(in, name), *mo = open_in(out, name), *deq;
    size_t checked = 0;
    assert_int_equal(mq_dequantize(mo, &deq), MQ_OK);
    for (size_t i = 0; i < mq_model_count(mi); i++) {
        const mq_tensor *w = mq_model_tensor(mi, i);
        char sname[256];
        snprintf(sname, sizeof sname, "%s_scale", w->name);
        const mq_tensor *s = mq_model_find(mo, sname), *d = mq_model_find(deq, w->name);
        if (!s) continue;
        assert_int_equal(d->dtype, MQ_DTYPE_F32);
        size_t rows = (size_t)w->shape[0], cols = w->nbytes / 4 / rows;
        const float *wf = w->data, *df = d->data, *sf = s->data;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++)
                assert_true(fabsf(df[r * cols + c] - wf[r * cols + c]) <= sf[r] * 0.5f * 1.0001f);
        checked++;
    }
    assert_true(checked > 0);
    mq_model_free(deq);
    mq_model_free(mo);
    mq_model_free(mi);
}

typedef struct {
    char *root, *in, *out;
    uint64_t in_digest;
} fixture;

static void fixture_make(fixture *f, const model_opts *o)
{
    f->root = tu_mkdtemp();
    assert_non_null(f->root);
    f->in = make_model(f->root, o);
    f->out = path2(f->root, "out");
    f->in_digest = digest(f->in);
}

static void fixture_free(fixture *f)
{
    assert_true(digest(f->in) == f->in_digest); /* the input is never touched */
    tu_rmtree(f->root);
    free(f->root);
    free(f->in);
    free(f->out);
}

static mq_status run_dir(fixture *f, const mq_config *cfg, mq_report *rep)
{
    return mq_hfdir_quantize(f->in, f->out, cfg, g_be, rep);
}

/* ---- Cases. */

static void test_sharded_int8(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    mq_config cfg;
    mq_report *rep = mq_report_new();
    fixture_make(&f, &o);
    mq_config_init(&cfg);
    assert_int_equal(run_dir(&f, &cfg, rep), MQ_OK);

    assert_int_equal(count_temps(f.root), 0);
    /* 3 shards, index, config, 3 tokenizer/generation files, vocab.txt, 1_Pooling */
    assert_int_equal(tu_count_entries(f.out), NSHARDS + 2 + 3 + 1 + 1);
    for (int k = 0; k < NSHARDS; k++) {
        char *s = shard_name(k, NSHARDS);
        assert_shard_matches(f.in, f.out, s, &cfg);
        free(s);
    }
    assert_index(f.out, NSHARDS);
    assert_config(f.in, f.out, &cfg);
    assert_other_files(f.in, f.out);
    char *s2 = shard_name(1, NSHARDS);
    assert_dequantizes(f.in, f.out, s2);
    free(s2);
    assert_int_equal(mq_report_count(rep), NSPECS);
    assert_string_equal(mq_report_backend(rep), "host");

    mq_report_free(rep);
    mq_config_free(&cfg);
    fixture_free(&f);
}

static void test_fp16(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_BF16};
    fixture f;
    mq_config cfg;
    fixture_make(&f, &o);
    mq_config_init(&cfg);
    cfg.dtype = MQ_FLOAT16;
    assert_int_equal(run_dir(&f, &cfg, NULL), MQ_OK);
    assert_config(f.in, f.out, &cfg);
    json_t *jo = load_json(f.out, "config.json");
    assert_null(json_object_get(jo, "quantization_config"));
    json_decref(jo);
    for (int k = 0; k < NSHARDS; k++) {
        char *s = shard_name(k, NSHARDS);
        mq_model *mi = open_in(f.in, s), *mo = open_in(f.out, s);
        assert_int_equal(mq_model_count(mo), mq_model_count(mi));
        for (size_t i = 0; i < mq_model_count(mo); i++)
            assert_int_equal(mq_model_tensor(mo, i)->dtype, MQ_DTYPE_F16);
        mq_model_free(mi);
        mq_model_free(mo);
        free(s);
    }
    json_t *ii = load_json(f.in, MQ_HF_INDEX), *io = load_json(f.out, MQ_HF_INDEX);
    assert_true(json_equal(json_object_get(ii, "weight_map"), json_object_get(io, "weight_map")));
    json_decref(ii);
    json_decref(io);
    assert_index(f.out, NSHARDS);
    mq_config_free(&cfg);
    fixture_free(&f);
}

/* One model.safetensors, tied embeddings (lm_head has no tensor but is still
 * ignored), asymmetric per-tensor, output named with a trailing slash. */
static void test_single_file(void **state)
{
    (void)state;
    model_opts o = {.shards = 1, .dtype = MQ_DTYPE_F32, .tied = true};
    fixture f;
    mq_config cfg;
    fixture_make(&f, &o);
    mq_config_init(&cfg);
    cfg.symmetric = false;
    cfg.per_channel = false;
    char *slashed = malloc(strlen(f.out) + 2);
    sprintf(slashed, "%s/", f.out);
    assert_int_equal(mq_hfdir_quantize(f.in, slashed, &cfg, g_be, NULL), MQ_OK);
    free(slashed);
    assert_int_equal(tu_count_entries(f.out), 1 + 1 + 3 + 1 + 1);
    char *p = path2(f.out, MQ_HF_INDEX);
    assert_false(tu_exists(p));
    free(p);
    assert_shard_matches(f.in, f.out, MQ_HF_SINGLE, &cfg);
    mq_model *mo = open_in(f.out, MQ_HF_SINGLE);
    assert_non_null(mq_model_find(mo, "model.layers.0.mlp.up_proj.weight_zero_point"));
    mq_model_free(mo);
    assert_config(f.in, f.out, &cfg);
    assert_other_files(f.in, f.out);
    mq_config_free(&cfg);
    fixture_free(&f);
}

static void test_no_config(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32, .no_config = true};
    fixture f;
    fixture_make(&f, &o);
    /* Relative names: the output's parent is ".". */
    char *cwd = getcwd(NULL, 0);
    assert_int_equal(chdir(f.root), 0);
    mq_status st = mq_hfdir_quantize(IN_REL, "out", NULL, g_be, NULL);
    assert_int_equal(chdir(cwd), 0);
    free(cwd);
    assert_int_equal(st, MQ_OK);
    char *p = path2(f.out, "config.json");
    assert_false(tu_exists(p));
    free(p);
    assert_index(f.out, NSHARDS);
    fixture_free(&f);
}

/* Mistral's consolidated*.safetensors beside the Hugging Face files (sharded
 * or not) is left out of the output and named in the report, in its JSON
 * and on the command line; any other unlisted shard is still an error. */
static void check_consolidated(int shards, const char *name)
{
    model_opts o = {.shards = shards, .dtype = MQ_DTYPE_F32};
    fixture f;
    fixture_make(&f, &o);
    mq_model *m;
    float x[4] = {1, 2, 3, 4};
    char *p = path2(f.in, name);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "layers.0.attention.wq.weight", MQ_DTYPE_F32, 2,
                                         (int64_t[]){2, 2}, x),
                     MQ_OK);
    assert_int_equal(mq_model_save(m, p), MQ_OK);
    mq_model_free(m);
    free(p);
    f.in_digest = digest(f.in);

    mq_report *rep = mq_report_new();
    assert_int_equal(run_dir(&f, NULL, rep), MQ_OK);
    p = path2(f.out, name);
    assert_false(tu_exists(p));
    free(p);
    if (shards > 1) assert_index(f.out, shards);
    assert_int_equal(mq_report_left_out_count(rep), 1);
    assert_string_equal(mq_report_left_out_file(rep, 0), name);
    assert_non_null(strstr(mq_report_left_out_reason(rep, 0), "Mistral"));
    mq_config cfg;
    mq_config_init(&cfg);
    char *json = path2(f.root, "r.json");
    assert_int_equal(mq_report_write_json(rep, &cfg, f.in, f.out, 0.0, json), MQ_OK);
    json_t *j = json_load_file(json, 0, NULL);
    json_t *left = json_object_get(j, "left_out");
    assert_int_equal(json_array_size(left), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(left, 0), "file")), name);
    json_decref(j);
    unlink(json);
    free(json);
    mq_config_free(&cfg);
    mq_report_free(rep);

    char *out2 = path2(f.root, "out2"), *text = NULL;
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host", f.in, out2);
    if (rc != 0) fail_msg("cli: rc %d: %s", rc, text ? text : "");
    assert_non_null(strstr(text, "left out 1 file of the input directory:"));
    assert_non_null(strstr(text, name));
    free(text);
    tu_rmtree(out2);
    free(out2);
    fixture_free(&f);
}

static void test_consolidated_left_out(void **state)
{
    (void)state;
    check_consolidated(NSHARDS, "consolidated.safetensors");
    check_consolidated(1, "consolidated-00001-of-00002.safetensors");
}

/* ---- Broken inputs: each fails with E_FORMAT naming file and tensor, and
 * leaves neither output nor temporary. */

typedef void (*breaker)(const char *in, const model_opts *o);

static void rewrite_index(const char *in, const char *tensor, const char *shard)
{
    json_t *idx = load_json(in, MQ_HF_INDEX), *map = json_object_get(idx, "weight_map");
    if (shard)
        json_object_set_new(map, tensor, json_string(shard));
    else
        json_object_del(map, tensor);
    write_index(in, idx);
    json_decref(idx);
}

static void break_missing_shard(const char *in, const model_opts *o)
{
    (void)o;
    char *p = path2(in, "model-00002-of-00003.safetensors");
    assert_int_equal(unlink(p), 0);
    free(p);
}

static void break_two_shards(const char *in, const model_opts *o)
{
    char *p = path2(in, "model-00003-of-00003.safetensors");
    assert_int_equal(unlink(p), 0);
    free(p);
    write_shard(in, 2, o, "model.layers.0.self_attn.q_proj.weight");
}

static void break_stray_shard(const char *in, const model_opts *o)
{
    (void)o;
    mq_model *m;
    float x = 1.0f;
    char *p = path2(in, "model-00004-of-00004.safetensors");
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "extra.weight", MQ_DTYPE_F32, 1, (int64_t[]){1}, &x),
                     MQ_OK);
    assert_int_equal(mq_model_save(m, p), MQ_OK);
    mq_model_free(m);
    free(p);
}

static void break_wrong_shard(const char *in, const model_opts *o)
{
    (void)o;
    rewrite_index(in, "model.norm.weight", "model-00001-of-00003.safetensors");
}

static void break_unlisted(const char *in, const model_opts *o)
{
    (void)o;
    rewrite_index(in, "model.layers.1.mlp.up_proj.weight", NULL);
}

static void break_ghost(const char *in, const model_opts *o)
{
    (void)o;
    rewrite_index(in, "model.layers.9.ghost.weight", "model-00001-of-00003.safetensors");
}

static void break_not_json(const char *in, const model_opts *o)
{
    (void)o;
    write_text(in, MQ_HF_INDEX, "{\"weight_map\": {\"a\": ", 0644);
}

static void break_map_type(const char *in, const model_opts *o)
{
    (void)o;
    write_text(in, MQ_HF_INDEX, "{\"metadata\": {}, \"weight_map\": [\"a\"]}", 0644);
}

static void break_path_shard(const char *in, const model_opts *o)
{
    (void)o;
    rewrite_index(in, "model.norm.weight", "../model-00003-of-00003.safetensors");
}

static void break_long_shard_name(const char *in, const model_opts *o)
{
    (void)o;
    char name[320];
    memset(name, 'm', 300);
    strcpy(name + 300, ".safetensors");
    rewrite_index(in, "model.norm.weight", name);
}

static void break_no_model(const char *in, const model_opts *o)
{
    for (int k = 0; k < o->shards; k++) {
        char *s = shard_name(k, o->shards), *p = path2(in, s);
        assert_int_equal(unlink(p), 0);
        free(p);
        free(s);
    }
    char *p = path2(in, MQ_HF_INDEX);
    assert_int_equal(unlink(p), 0);
    free(p);
}

typedef struct {
    const char *label;
    breaker fn;
    const char *needles[4];
} broken_case;

static const broken_case broken_cases[] = {
    {"missing shard",
     break_missing_shard,
     {MQ_HF_INDEX, "model.layers.1.input_layernorm.weight", "model-00002-of-00003.safetensors",
      "does not exist"}},
    {"tensor in two shards",
     break_two_shards,
     {MQ_HF_INDEX, "model.layers.0.self_attn.q_proj.weight",
      "'model-00001-of-00003.safetensors' and 'model-00003-of-00003.safetensors'", "two shards"}},
    {"stray shard",
     break_stray_shard,
     {"model-00004-of-00004.safetensors", "not listed", MQ_HF_INDEX, NULL}},
    {"mapped to the wrong shard",
     break_wrong_shard,
     {MQ_HF_INDEX, "model.norm.weight", "mapped to shard 'model-00001-of-00003.safetensors'",
      "is in shard 'model-00003-of-00003.safetensors'"}},
    {"tensor not listed",
     break_unlisted,
     {"model-00002-of-00003.safetensors", "model.layers.1.mlp.up_proj.weight", "not listed",
      MQ_HF_INDEX}},
    {"listed tensor missing",
     break_ghost,
     {MQ_HF_INDEX, "model.layers.9.ghost.weight", "model-00001-of-00003.safetensors",
      "does not contain it"}},
    {"index not JSON", break_not_json, {MQ_HF_INDEX, "not valid JSON", NULL, NULL}},
    {"weight_map not an object",
     break_map_type,
     {MQ_HF_INDEX, "\"weight_map\" is not an object", NULL, NULL}},
    {"shard outside the directory",
     break_path_shard,
     {MQ_HF_INDEX, "model.norm.weight", "not a plain file name", NULL}},
    {"shard name too long for a file",
     break_long_shard_name,
     {MQ_HF_INDEX, "model.norm.weight", "longer than 255 bytes", NULL}},
    {"no model file",
     break_no_model,
     {"no model.safetensors or model.safetensors.index.json", NULL, NULL, NULL}},
};

static void test_broken_inputs(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    for (size_t i = 0; i < sizeof broken_cases / sizeof *broken_cases; i++) {
        const broken_case *c = &broken_cases[i];
        fixture f;
        fixture_make(&f, &o);
        c->fn(f.in, &o);
        f.in_digest = digest(f.in);
        mq_status st = run_dir(&f, NULL, NULL);
        const char *msg = mq_last_error();
        if (st != MQ_STATUS_E_FORMAT)
            fail_msg("%s: status %s: %s", c->label, mq_status_str(st), msg);
        for (int k = 0; k < 4 && c->needles[k]; k++)
            if (!strstr(msg, c->needles[k]))
                fail_msg("%s: '%s' not in message: %s", c->label, c->needles[k], msg);
        assert_false(tu_exists(f.out));
        assert_int_equal(count_temps(f.root), 0);
        fixture_free(&f);
    }
}

/* NaN in the second shard: the first is already written when the run fails. */
static void test_error_midway(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS,
                    .dtype = MQ_DTYPE_F32,
                    .nan_tensor = "model.layers.1.mlp.gate_proj.weight"};
    fixture f;
    fixture_make(&f, &o);
    assert_int_equal(run_dir(&f, NULL, NULL), MQ_STATUS_E_DATA);
    assert_non_null(strstr(mq_last_error(), "model.layers.1.mlp.gate_proj.weight"));
    assert_false(tu_exists(f.out));
    assert_int_equal(count_temps(f.root), 0);
    fixture_free(&f);
}

static void test_output_refused(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    fixture_make(&f, &o);

    /* Not empty: its file survives. */
    assert_int_equal(mkdir(f.out, 0755), 0);
    write_text(f.out, "keep.txt", "precious\n", 0644);
    assert_int_equal(run_dir(&f, NULL, NULL), MQ_STATUS_E_OUTPUT);
    assert_non_null(strstr(mq_last_error(), "not empty"));
    assert_int_equal(tu_count_entries(f.out), 1);

    /* The input itself, and a directory inside it (also through "/.."). */
    assert_int_equal(mq_hfdir_quantize(f.in, f.in, NULL, g_be, NULL), MQ_STATUS_E_OUTPUT);
    char *inside = path2(f.in, "1_Pooling/../quantized");
    assert_int_equal(mq_hfdir_quantize(f.in, inside, NULL, g_be, NULL), MQ_STATUS_E_OUTPUT);
    assert_non_null(strstr(mq_last_error(), "inside the input"));
    free(inside);

    /* A regular file. */
    char *file = path2(f.root, "file");
    write_text(f.root, "file", "x", 0644);
    assert_int_equal(mq_hfdir_quantize(f.in, file, NULL, g_be, NULL), MQ_STATUS_E_OUTPUT);
    free(file);

    /* An empty directory is taken over. */
    char *keep = path2(f.out, "keep.txt");
    assert_int_equal(unlink(keep), 0);
    free(keep);
    assert_int_equal(run_dir(&f, NULL, NULL), MQ_OK);
    assert_index(f.out, NSHARDS);
    assert_int_equal(count_temps(f.root), 0);
    assert_int_equal(count_temps(f.in), 0);
    fixture_free(&f);
}

/* A signal mid-run: the handler's cleanup removes the temporary directory
 * while shard 2 is being written; the run then fails and leaves nothing. */
typedef struct {
    const char *root;
    bool fired;
    int temps_after;
} signal_probe;

static void fire_cleanup(const mq_progress *p, void *user)
{
    signal_probe *s = user;
    if (s->fired || !p->file || !strstr(p->file, "model-00002-of")) return;
    s->fired = true;
    mq_signal_cleanup(); /* the public call alone */
    s->temps_after = count_temps(s->root);
}

static void test_signal_cleanup(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    fixture_make(&f, &o);
    /* In a child: the cleanup closes the table for good, as the process is
     * on its way out. Its exit code is the first check that failed. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mq_config cfg;
        signal_probe probe = {.root = f.root, .temps_after = -1};
        mq_config_init(&cfg);
        cfg.progress = fire_cleanup;
        cfg.progress_user = &probe;
        mq_status st = run_dir(&f, &cfg, NULL);
        if (st == MQ_OK) _exit(10);
        if (!probe.fired) _exit(11);
        if (probe.temps_after != 0) _exit(12);
        if (count_temps(f.root) != 0) _exit(13);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(tu_exists(f.out));
    assert_int_equal(count_temps(f.root), 0);
    fixture_free(&f);
}

/* Without copy_file_range the files are copied by read and write. */
static void test_copy_fallback(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    fixture_make(&f, &o);
    g_fault = FAULT_NO_CFR;
    g_cfr_calls = 0;
    mq_status st = run_dir(&f, NULL, NULL);
    g_fault = FAULT_NONE;
    assert_int_equal(st, MQ_OK);
    assert_true(g_cfr_calls > 0);
    assert_other_files(f.in, f.out);
    fixture_free(&f);
}

/* A copy that fails, and a final rename that fails: no output, no temporary. */
static void test_io_faults(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    fixture_make(&f, &o);
    g_fault = FAULT_CFR_EIO;
    mq_status st = run_dir(&f, NULL, NULL);
    g_fault = FAULT_NONE;
    assert_int_equal(st, MQ_STATUS_E_IO);
    assert_non_null(strstr(mq_last_error(), "Input/output error"));
    assert_false(tu_exists(f.out));
    assert_int_equal(count_temps(f.root), 0);

    g_fault = FAULT_RENAME_DIR;
    g_rename_target = f.out;
    st = run_dir(&f, NULL, NULL);
    g_fault = FAULT_NONE;
    g_rename_target = NULL;
    assert_int_equal(st, MQ_STATUS_E_OUTPUT);
    assert_non_null(strstr(mq_last_error(), "renaming"));
    assert_false(tu_exists(f.out));
    assert_int_equal(count_temps(f.root), 0);
    fixture_free(&f);
}

/* ---- Symbolic links: followed inside the directory and into the cache's
 * blobs/, refused elsewhere (unless follow_symlinks) and when dangling. */

/* The real Hugging Face cache: every file of the snapshot is a link. */
static void test_cache_snapshot(void **state)
{
    (void)state;
    for (int shards = 1; shards <= NSHARDS; shards += NSHARDS - 1) {
        model_opts o = {.shards = shards, .dtype = MQ_DTYPE_F32, .all_blobs = true};
        fixture f;
        mq_config cfg;
        fixture_make(&f, &o);
        mq_config_init(&cfg);
        mq_status st = run_dir(&f, &cfg, NULL);
        if (st != MQ_OK) fail_msg("%d shards: %s", shards, mq_last_error());
        for (int k = 0; k < shards; k++) {
            char *s = shard_name(k, shards);
            assert_shard_matches(f.in, f.out, s, &cfg);
            free(s);
        }
        if (shards > 1) assert_index(f.out, shards);
        assert_config(f.in, f.out, &cfg);
        assert_other_files(f.in, f.out);
        mq_config_free(&cfg);
        fixture_free(&f);
    }
}

typedef struct {
    const char *label;
    const char *name;   /* the link, in the input directory */
    const char *target; /* its text; "@" stands for the fixture's root */
    mq_status status;
    const char *needle; /* besides the link's name and target */
    bool no_cache;      /* the repository renamed: no longer models--ORG--NAME */
} link_case;

static const link_case link_cases[] = {
    {"directory out of the input", "extras", "../../../outside", MQ_STATUS_E_FORMAT,
     "outside the model directory", false},
    {"absolute path", "tokenizer.json", "@/passwd", MQ_STATUS_E_FORMAT,
     "outside the model directory", false},
    {"config.json out of the input", "config.json", "@/outside/config.json", MQ_STATUS_E_FORMAT,
     "outside the model directory", false},
    {"shard out of the input", "model-00002-of-00003.safetensors",
     "@/outside/model-00002-of-00003.safetensors", MQ_STATUS_E_FORMAT,
     "outside the model directory", false},
    {"index out of the input", MQ_HF_INDEX, "@/outside/" MQ_HF_INDEX, MQ_STATUS_E_FORMAT,
     "outside the model directory", false},
    {"blobs/ of a directory that is no cache snapshot", "vocab.txt", "../../blobs/a1b2c3",
     MQ_STATUS_E_FORMAT, "outside the model directory", true},
    {"dangling extra file", "special_tokens_map.json", "gone.json", MQ_STATUS_E_IO, "No such file",
     false},
    {"dangling config.json", "config.json", "../../blobs/gone", MQ_STATUS_E_IO, "No such file",
     false},
    {"dangling index", MQ_HF_INDEX, "../../blobs/gone", MQ_STATUS_E_IO, "No such file", false},
};

/* <root>/outside/secret/id_rsa, <root>/passwd, and outside copies of the
 * files the cases link to. */
static void write_outside(const fixture *f)
{
    char *out = path2(f->root, "outside"), *secret = path2(out, "secret");
    assert_int_equal(mkdir(out, 0755), 0);
    assert_int_equal(mkdir(secret, 0755), 0);
    write_text(secret, "id_rsa", "PRIVATE KEY\n", 0600);
    write_text(f->root, "passwd", "root:x:0:0\n", 0644);
    const char *copies[] = {"config.json", "model-00002-of-00003.safetensors", MQ_HF_INDEX};
    for (size_t i = 0; i < 3; i++) {
        char *from = path2(f->in, copies[i]), *to = path2(out, copies[i]);
        size_t n;
        unsigned char *b = tu_read_file(from, &n);
        assert_non_null(b);
        assert_true(tu_write_file(to, b, n));
        free(b);
        free(from);
        free(to);
    }
    free(secret);
    free(out);
}

static void make_link(const fixture *f, const link_case *c, char *target, size_t cap)
{
    if (c->target[0] == '@')
        snprintf(target, cap, "%s%s", f->root, c->target + 1);
    else
        snprintf(target, cap, "%s", c->target);
    char *p = path2(f->in, c->name);
    (void)unlink(p);
    assert_int_equal(symlink(target, p), 0);
    free(p);
}

static void test_symlinks_refused(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    for (size_t i = 0; i < sizeof link_cases / sizeof *link_cases; i++) {
        const link_case *c = &link_cases[i];
        fixture f;
        char target[1024];
        fixture_make(&f, &o);
        write_outside(&f);
        make_link(&f, c, target, sizeof target);
        if (c->no_cache) {
            char *repo = path2(f.root, CACHE_REPO), *mirror = path2(f.root, "mirror");
            assert_int_equal(rename(repo, mirror), 0);
            free(f.in);
            f.in = path2(mirror, "snapshots/0123abcd");
            free(repo);
            free(mirror);
        }
        f.in_digest = digest(f.in);
        mq_status st = run_dir(&f, NULL, NULL);
        const char *msg = mq_last_error();
        if (st != c->status) fail_msg("%s: status %s: %s", c->label, mq_status_str(st), msg);
        if (!strstr(msg, c->name) || !strstr(msg, target) || !strstr(msg, c->needle))
            fail_msg("%s: message lacks '%s', '%s' or '%s': %s", c->label, c->name, target,
                     c->needle, msg);
        assert_false(tu_exists(f.out));
        assert_int_equal(count_temps(f.root), 0);
        fixture_free(&f);
    }
}

/* Links that stay inside are followed; with follow_symlinks (the library's
 * field, the CLI's flag, the config file's key) so are the others. */
static void test_symlinks_followed(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    char target[1024];
    fixture_make(&f, &o);
    write_outside(&f);
    char *alias = path2(f.in, "tokenizer.model");
    assert_int_equal(symlink("./1_Pooling/../tokenizer.json", alias), 0);
    free(alias);
    f.in_digest = digest(f.in);
    assert_int_equal(run_dir(&f, NULL, NULL), MQ_OK);
    assert_same_file(f.in, f.out, "tokenizer.model");
    tu_rmtree(f.out);

    make_link(&f, &link_cases[0], target, sizeof target); /* extras -> ../../../outside */
    make_link(&f, &link_cases[1], target, sizeof target); /* tokenizer.json -> <root>/passwd */
    f.in_digest = digest(f.in);
    mq_config cfg;
    mq_config_init(&cfg);
    cfg.follow_symlinks = true;
    assert_int_equal(run_dir(&f, &cfg, NULL), MQ_OK);
    char *copied = path2(f.out, "extras/secret/id_rsa");
    assert_true(tu_exists(copied));
    free(copied);
    assert_same_file(f.in, f.out, "tokenizer.json");
    tu_rmtree(f.out);
    mq_config_free(&cfg);

    /* The command line: exit 2 naming the link, then the flag, then the key. */
    char *text = NULL, *json = path2(f.root, "follow.json");
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q", f.in, f.out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(text, "outside the model directory"));
    assert_non_null(strstr(text, "--follow-symlinks"));
    free(text);
    assert_false(tu_exists(f.out));
    rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --follow-symlinks", f.in, f.out);
    if (rc != 0) fail_msg("--follow-symlinks: rc %d: %s", rc, text);
    free(text);
    tu_rmtree(f.out);
    write_text(f.root, "follow.json", "{\"follow_symlinks\": true}\n", 0644);
    rc = tu_run_cli(&text, "quantize %s -o %s --device host -q --config %s", f.in, f.out, json);
    if (rc != 0) fail_msg("follow_symlinks key: rc %d: %s", rc, text);
    free(text);
    free(json);
    fixture_free(&f);
}

/* ---- FIFOs: never a hang. One that the run must read is an error naming
 * it; one among the other files is left out, in the report and on stderr.
 * The alarm turns a hang into a failure. */

static void make_fifo(const char *dir, const char *name)
{
    char *p = path2(dir, name);
    (void)unlink(p);
    assert_int_equal(mkfifo(p, 0644), 0);
    free(p);
}

static void test_fifos_refused(void **state)
{
    (void)state;
    static const struct {
        int shards;
        const char *name;
    } cases[] = {
        {NSHARDS, "config.json"},
        {NSHARDS, MQ_HF_INDEX},
        {NSHARDS, "model-00002-of-00003.safetensors"},
        {1, MQ_HF_SINGLE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        model_opts o = {.shards = cases[i].shards, .dtype = MQ_DTYPE_F32};
        fixture f;
        fixture_make(&f, &o);
        make_fifo(f.in, cases[i].name);
        f.in_digest = digest(f.in);
        alarm(20);
        mq_status st = run_dir(&f, NULL, NULL);
        alarm(0);
        const char *msg = mq_last_error();
        if (st == MQ_OK || !strstr(msg, cases[i].name) || !strstr(msg, "FIFO"))
            fail_msg("%s: status %s: %s", cases[i].name, mq_status_str(st), msg);
        assert_false(tu_exists(f.out));
        assert_int_equal(count_temps(f.root), 0);
        fixture_free(&f);
    }
}

static void test_fifos_left_out(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    fixture_make(&f, &o);
    make_fifo(f.in, "tokenizer.json");
    char *sub = path2(f.in, "1_Pooling");
    make_fifo(sub, "pipe");
    free(sub);
    f.in_digest = digest(f.in);
    mq_report *rep = mq_report_new();
    alarm(20);
    mq_status st = run_dir(&f, NULL, rep);
    alarm(0);
    if (st != MQ_OK) fail_msg("%s", mq_last_error());
    char *p = path2(f.out, "tokenizer.json");
    assert_false(tu_exists(p));
    free(p);
    assert_int_equal(mq_report_left_out_count(rep), 2);
    for (size_t i = 0; i < 2; i++) {
        const char *file = mq_report_left_out_file(rep, i);
        assert_true(!strcmp(file, "tokenizer.json") || !strcmp(file, "1_Pooling/pipe"));
        assert_string_equal(mq_report_left_out_reason(rep, i),
                            "a FIFO, not a regular file: nothing to copy");
    }
    mq_report_free(rep);
    tu_rmtree(f.out);

    char *text = NULL;
    alarm(20);
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host -q", f.in, f.out);
    alarm(0);
    if (rc != 0) fail_msg("cli: rc %d: %s", rc, text ? text : "");
    assert_non_null(strstr(text, "warning: left out 2 files of the input directory:"));
    assert_non_null(strstr(text, "tokenizer.json: a FIFO"));
    free(text);
    fixture_free(&f);
}

/* Numbers come out as Python's json.dumps(indent=2) writes them. */
static void test_json_dump(void **state)
{
    (void)state;
    json_t *v = json_loads("[1e-05, 10000.0, 0.02, -0.0, 1e16, 1.5e-07, 123.456, 0.0001, 1e22, 3,"
                           " 0.30000000000000004, 5e-324, 1.7976931348623157e308, \"a/b\\\"\\\\\","
                           " {}, [], {\"b\": 1, \"a\": {\"d\": true, \"c\": null}}]",
                           0, NULL);
    char *text;
    size_t len;
    assert_non_null(v);
    assert_int_equal(mq_hf_json_dump(v, false, &text, &len), MQ_OK);
    assert_string_equal(text, "[\n  1e-05,\n  10000.0,\n  0.02,\n  -0.0,\n  1e+16,\n  1.5e-07,\n"
                              "  123.456,\n  0.0001,\n  1e+22,\n  3,\n  0.30000000000000004,\n"
                              "  5e-324,\n  1.7976931348623157e+308,\n  \"a/b\\\"\\\\\",\n  {},\n"
                              "  [],\n  {\n    \"b\": 1,\n    \"a\": {\n      \"d\": true,\n"
                              "      \"c\": null\n    }\n  }\n]\n");
    assert_int_equal(len, strlen(text));
    free(text);
    assert_int_equal(mq_hf_json_dump(json_array_get(v, 16), true, &text, &len), MQ_OK);
    assert_string_equal(text, "{\n  \"a\": {\n    \"c\": null,\n    \"d\": true\n  },\n"
                              "  \"b\": 1\n}\n");
    free(text);
    json_decref(v);
}

/* A name quantizing adds that another shard already holds (a.weight in one
 * shard, a.weight_scale in the next) is found while planning, before any
 * output, and the message names both shards. */
static void test_shard_name_clash(void **state)
{
    (void)state;
    char *root = tu_mkdtemp(), *in = tu_join(root, "in"), *out = tu_join(root, "out");
    assert_int_equal(mkdir(in, 0755), 0);
    float w[4 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}, sc[4] = {1, 1, 1, 1};
    mq_model *a, *b;
    assert_int_equal(mq_model_new(&a), MQ_OK);
    assert_int_equal(mq_model_add_tensor(a, "a.weight", MQ_DTYPE_F32, 2, (int64_t[]){4, 4}, w),
                     MQ_OK);
    assert_int_equal(mq_model_new(&b), MQ_OK);
    assert_int_equal(
        mq_model_add_tensor(b, "a.weight_scale", MQ_DTYPE_F32, 2, (int64_t[]){4, 1}, sc), MQ_OK);
    char *s1 = tu_join(in, "model-00001-of-00002.safetensors");
    char *s2 = tu_join(in, "model-00002-of-00002.safetensors");
    assert_int_equal(mq_model_save(a, s1), MQ_OK);
    assert_int_equal(mq_model_save(b, s2), MQ_OK);
    const char idx[] = "{\"metadata\": {}, \"weight_map\": {"
                       "\"a.weight\": \"model-00001-of-00002.safetensors\", "
                       "\"a.weight_scale\": \"model-00002-of-00002.safetensors\"}}";
    char *ip = tu_join(in, "model.safetensors.index.json");
    assert_true(tu_write_file(ip, idx, strlen(idx)));
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_quantize_file(in, out, &cfg, NULL), MQ_STATUS_E_DATA);
    const char *msg = mq_last_error();
    assert_non_null(strstr(msg, "'a.weight'"));
    assert_non_null(strstr(msg, "model-00001-of-00002.safetensors"));
    assert_non_null(strstr(msg, "model-00002-of-00002.safetensors"));
    assert_non_null(strstr(msg, "a.weight_scale"));
    assert_false(tu_exists(out));
    assert_int_equal(tu_count_entries(root), 1); /* no temporary left */
    mq_config_free(&cfg);
    mq_model_free(a);
    mq_model_free(b);
    free(s1);
    free(s2);
    free(ip);
    tu_rmtree(root);
    free(in);
    free(out);
    free(root);
}

/* ---- Several devices: shards spread over a device list. */

typedef struct {
    pthread_t caller;
    bool other_thread;
    size_t calls, last_done, finished;
    uint64_t last_bytes;
    bool backwards;
} progress_seen;

static void note_progress(const mq_progress *p, void *user)
{
    progress_seen *s = user;
    if (!pthread_equal(pthread_self(), s->caller)) s->other_thread = true;
    if (p->tensors_done < s->last_done || p->bytes_done < s->last_bytes) s->backwards = true;
    s->last_done = p->tensors_done;
    s->last_bytes = p->bytes_done;
    s->calls++;
    if (p->finished) s->finished++;
}

/* mq_quantize_file of f->in into root/name on `device`: the output's digest. */
static uint64_t run_on(const fixture *f, const char *name, const char *device, mq_report **rep,
                       progress_seen *seen)
{
    mq_config cfg;
    mq_config_init(&cfg);
    cfg.symmetric = false; /* zero points too */
    assert_int_equal(mq_config_set_device(&cfg, device), MQ_OK);
    if (seen) {
        cfg.progress = note_progress;
        cfg.progress_user = seen;
    }
    char *out = path2(f->root, name);
    mq_status st = mq_quantize_file(f->in, out, &cfg, rep);
    if (st != MQ_OK) fail_msg("--device %s: %s", device, mq_last_error());
    uint64_t h = digest(out);
    free(out);
    mq_config_free(&cfg);
    return h;
}

/* The reports of two runs list the same tensors with the same results. */
static void assert_same_entries(const mq_report *a, const mq_report *b)
{
    assert_int_equal(mq_report_count(a), mq_report_count(b));
    for (size_t i = 0; i < mq_report_count(a); i++) {
        const mq_report_entry *x = mq_report_entry_at(a, i), *y = mq_report_entry_at(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->action, y->action);
        assert_int_equal(x->bytes_out, y->bytes_out);
        assert_true(memcmp(&x->weight_sqnr_db, &y->weight_sqnr_db, sizeof(double)) == 0);
        assert_int_equal(x->clamped, y->clamped);
    }
}

static size_t files_run(const mq_report *r)
{
    size_t n = 0;
    for (size_t i = 0; i < mq_report_device_count(r); i++)
        n += mq_report_device_files_at(r, i);
    return n;
}

/* The host path twice, three times: one pipeline per entry, on worker
 * threads, gives a one-device run's bytes; progress comes on the calling
 * thread with totals over every device. Runs in every build. */
static void test_multi_device_host(void **state)
{
    (void)state;
    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_BF16};
    fixture f;
    mq_report *one = NULL, *two = NULL, *three = NULL;
    progress_seen seen = {.caller = pthread_self()};
    fixture_make(&f, &o);
    uint64_t h1 = run_on(&f, "one", "host", &one, NULL);
    assert_true(run_on(&f, "two", "host,host", &two, &seen) == h1);
    assert_true(run_on(&f, "three", " host , host,host", &three, NULL) == h1);
    assert_same_entries(one, two);
    assert_same_entries(one, three);
    assert_int_equal(mq_report_device_count(one), 1);
    assert_int_equal(mq_report_device_files_at(one, 0), NSHARDS);
    assert_int_equal(mq_report_device_count(two), 2);
    assert_int_equal(mq_report_device_count(three), 3);
    assert_int_equal(files_run(two), NSHARDS);
    assert_int_equal(files_run(three), NSHARDS);
    assert_string_equal(mq_report_device_backend_at(two, 1), "host");
    assert_null(mq_report_device_name_at(two, 2));
    assert_false(seen.other_thread);
    assert_false(seen.backwards);
    assert_int_equal(seen.finished, NSPECS);
    assert_int_equal(seen.last_done, NSPECS);
    assert_int_equal(count_temps(f.root), 0);

    /* A failure on one device fails the run: no output, no temporary. */
    char *bad = path2(f.root, "bad");
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host,,host"), MQ_OK);
    assert_int_equal(mq_quantize_file(f.in, bad, &cfg, NULL), MQ_STATUS_E_CONFIG);
    assert_non_null(strstr(mq_last_error(), "empty entry"));
    assert_false(tu_exists(bad));
    mq_config_free(&cfg);
    free(bad);
    mq_report_free(one);
    mq_report_free(two);
    mq_report_free(three);
    fixture_free(&f);

    model_opts nan = {.shards = NSHARDS,
                      .dtype = MQ_DTYPE_F32,
                      .nan_tensor = "model.layers.1.mlp.gate_proj.weight"};
    fixture_make(&f, &nan);
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host,host"), MQ_OK);
    assert_int_equal(mq_quantize_file(f.in, f.out, &cfg, NULL), MQ_STATUS_E_DATA);
    assert_non_null(strstr(mq_last_error(), "model.layers.1.mlp.gate_proj.weight"));
    assert_false(tu_exists(f.out));
    assert_int_equal(count_temps(f.root), 0);
    mq_config_free(&cfg);
    fixture_free(&f);
}

/* The OpenCL device (PoCL in CI) opened twice, and beside the host path:
 * every file of the output is byte for byte the one-device run's. */
static void test_multi_device_opencl(void **state)
{
    (void)state;
    const char *cl = tu_cl_device();
    mq_backend *probe = NULL;
    const mq_device_sel pc = {.spec = cl};
    if (mq_backend_open(&pc, &probe) != MQ_OK) {
        /* As the kernel suites: no OpenCL device (or a build without OpenCL) skips. */
        print_message("no OpenCL device '%s': %s\n", cl, mq_last_error());
        skip();
    }
    mq_backend_free(probe);

    model_opts o = {.shards = NSHARDS, .dtype = MQ_DTYPE_F32};
    fixture f;
    mq_report *one = NULL, *two = NULL, *mixed = NULL;
    char twice[256], mix[256], bad_list[256];
    snprintf(twice, sizeof twice, "%s,%s", cl, cl);
    snprintf(mix, sizeof mix, "host, %s", cl);
    snprintf(bad_list, sizeof bad_list, "%s,99:99", cl);
    fixture_make(&f, &o);
    uint64_t h = run_on(&f, "host", "host", NULL, NULL);
    assert_true(run_on(&f, "one", cl, &one, NULL) == h);
    assert_true(run_on(&f, "two", twice, &two, NULL) == h);
    assert_true(run_on(&f, "mixed", mix, &mixed, NULL) == h);
    assert_same_entries(one, two);
    assert_int_equal(mq_report_device_count(two), 2);
    assert_int_equal(files_run(two), NSHARDS);
    assert_int_equal(files_run(mixed), NSHARDS);
    assert_string_equal(mq_report_device_backend_at(two, 0), "opencl");
    assert_string_equal(mq_report_device_backend_at(two, 1), "opencl");
    assert_string_equal(mq_report_device_backend_at(mixed, 0), "host");
    assert_string_equal(mq_report_backend(two), "opencl");

    /* A device of the list that does not exist: an error naming it, no output. */
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, bad_list), MQ_OK);
    assert_int_equal(mq_quantize_file(f.in, f.out, &cfg, NULL), MQ_STATUS_E_DEVICE);
    assert_non_null(strstr(mq_last_error(), "99:99"));
    assert_false(tu_exists(f.out));
    assert_int_equal(count_temps(f.root), 0);

    /* A single file runs on the list's first device, with the same bytes. */
    char *shard = shard_name(1, NSHARDS), *in = path2(f.in, shard);
    char *a = path2(f.root, "a.safetensors"), *b = path2(f.root, "b.safetensors");
    mq_report *rep = NULL;
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_quantize_file(in, a, &cfg, NULL), MQ_OK);
    assert_int_equal(mq_config_set_device(&cfg, twice), MQ_OK);
    assert_int_equal(mq_quantize_file(in, b, &cfg, &rep), MQ_OK);
    assert_true(tu_file_hash(a) == tu_file_hash(b));
    assert_int_equal(mq_report_device_count(rep), 1);
    assert_int_equal(mq_report_device_files_at(rep, 0), 1);
    mq_report_free(rep);
    free(shard);
    free(in);
    free(a);
    free(b);
    mq_config_free(&cfg);
    mq_report_free(one);
    mq_report_free(two);
    mq_report_free(mixed);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_dump),
        cmocka_unit_test(test_sharded_int8),
        cmocka_unit_test(test_fp16),
        cmocka_unit_test(test_single_file),
        cmocka_unit_test(test_no_config),
        cmocka_unit_test(test_consolidated_left_out),
        cmocka_unit_test(test_broken_inputs),
        cmocka_unit_test(test_error_midway),
        cmocka_unit_test(test_output_refused),
        cmocka_unit_test(test_signal_cleanup),
        cmocka_unit_test(test_copy_fallback),
        cmocka_unit_test(test_io_faults),
        cmocka_unit_test(test_cache_snapshot),
        cmocka_unit_test(test_symlinks_refused),
        cmocka_unit_test(test_symlinks_followed),
        cmocka_unit_test(test_fifos_refused),
        cmocka_unit_test(test_fifos_left_out),
        cmocka_unit_test(test_shard_name_clash),
        cmocka_unit_test(test_multi_device_host),
        cmocka_unit_test(test_multi_device_opencl),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
