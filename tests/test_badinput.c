/* Bad input through the monoquant program: one crafted file (or directory)
 * per failure class. Each must exit 2 with a message naming the file, the
 * tensor where there is one, and the rule; leave no output and no temporary
 * anywhere; and leave the input byte for byte as it was. The valid edge cases
 * beside them must succeed and give a file the reader accepts. */
#include "testutil.h"

#include "monoquant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WORDS 4

typedef struct {
    char *root; /* holds in/ (crafted inputs) and out/ (always empty after a failure) */
    char *in, *out;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->root = tu_mkdtemp())) return -1;
    f->in = tu_join(f->root, "in");
    f->out = tu_join(f->root, "out");
    if (mkdir(f->in, 0755) != 0 || mkdir(f->out, 0755) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->root);
    free(f->root);
    free(f->in);
    free(f->out);
    free(f);
    return 0;
}

/* ---- crafting inputs ---- */

static char *raw_file(const fixture *f, const char *name, const void *bytes, size_t n)
{
    char *p = tu_join(f->in, name);
    assert_true(tu_write_file(p, bytes, n));
    return p;
}

static char *st_file(const fixture *f, const char *name, const char *header, const void *data,
                     size_t n)
{
    char *p = tu_join(f->in, name);
    assert_true(tu_write_st(p, header, data, n));
    return p;
}

/* An 8-byte little-endian length followed by `tail`. */
static char *prefixed_file(const fixture *f, const char *name, uint64_t len, const char *tail)
{
    unsigned char buf[64];
    size_t k = strlen(tail);
    assert_true(k <= sizeof buf - 8);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, tail, k);
    return raw_file(f, name, buf, 8 + k);
}

static void save_model(const char *path, const char *const *names, const int64_t (*shapes)[2],
                       size_t n, const float *values)
{
    mq_model *m = NULL;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mq_model_add_tensor(m, names[i], MQ_DTYPE_F32, 2, shapes[i], values),
                         MQ_OK);
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
}

/* FNV-1a over the names and bytes of a file, or of every file in a directory
 * (one level), so "unchanged" covers both kinds of input. */
static uint64_t input_digest(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return tu_file_hash(path);
    static const char *const names[] = {"model.safetensors.index.json", "config.json",
                                        "a.safetensors", "b.safetensors", "c.safetensors"};
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)tu_count_entries(path);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = tu_join(path, names[i]);
        h = (h ^ tu_file_hash(p)) * 1099511628211ULL;
        free(p);
    }
    return h;
}

/* ---- the check every failure class goes through ---- */

/*
 * Runs "quantize IN -o OUT --device <device>" and checks: exit code 2; each of
 * `words` (NULL-terminated, up to MAX_WORDS) in the output; nothing new in the
 * output directory or beside the input; the input unchanged.
 */
static void expect_bad_dev(const fixture *f, const char *in, const char *device,
                           const char *const words[MAX_WORDS + 1])
{
    char *out = tu_join(f->out, "result.safetensors"), *text = NULL;
    uint64_t before = input_digest(in);
    int in_entries = tu_count_entries(f->in);
    assert_int_equal(tu_count_entries(f->out), 0);

    int rc = tu_run_cli(&text, "quantize %s -o %s --device %s", in, out, device);
    if (rc != 2) fail_msg("%s: exit %d, want 2; output:\n%s", in, rc, text);
    for (int i = 0; i < MAX_WORDS && words[i]; i++)
        if (!strstr(text, words[i])) fail_msg("%s: message lacks \"%s\":\n%s", in, words[i], text);
    if (!strstr(text, "monoquant: error: ")) fail_msg("%s: no error line:\n%s", in, text);
    assert_false(tu_exists(out));
    assert_int_equal(tu_count_entries(f->out), 0);
    assert_int_equal(tu_count_entries(f->in), in_entries);
    assert_int_equal(input_digest(in), before);
    free(text);
    free(out);
}

static void expect_bad(const fixture *f, const char *in, const char *const words[MAX_WORDS + 1])
{
    expect_bad_dev(f, in, "host", words);
}

#define WORDS(...)                                                                                 \
    (const char *const[MAX_WORDS + 1])                                                             \
    {                                                                                              \
        __VA_ARGS__, NULL                                                                          \
    }

/* ---- the length prefix ---- */

static void test_prefix(void **state)
{
    fixture *f = *state;
    char *p = raw_file(f, "empty.safetensors", "", 0);
    expect_bad(f, p, WORDS(p, "0 bytes", "too small for the 8-byte header length"));
    free(p);
    p = raw_file(f, "short.safetensors", "\x02\0\0\0\0", 5);
    expect_bad(f, p, WORDS(p, "5 bytes", "too small"));
    free(p);
    p = prefixed_file(f, "past.safetensors", 1000, "{}");
    expect_bad(f, p, WORDS(p, "header length 1000", "runs past the end of the file"));
    free(p);
    p = prefixed_file(f, "max.safetensors", UINT64_MAX, "{}");
    expect_bad(f, p, WORDS(p, "18446744073709551615", "exceeds the limit"));
    free(p);
    p = prefixed_file(f, "cap.safetensors", 100000001, "{}");
    expect_bad(f, p, WORDS(p, "100000001", "exceeds the limit of 100000000"));
    free(p);
}

/* ---- the header as JSON ---- */

static void test_header_text(void **state)
{
    fixture *f = *state;
    char *p = st_file(f, "utf8.safetensors", "{\"a\xff\":1}", NULL, 0);
    expect_bad(f, p, WORDS(p, "not valid UTF-8", "0xff"));
    free(p);
    p = st_file(f, "json.safetensors", "{\"a\": {\"dtype\": ", NULL, 0);
    expect_bad(f, p, WORDS(p, "not valid JSON"));
    free(p);
    p = st_file(f, "array.safetensors", "[1, 2, 3]", NULL, 0);
    expect_bad(f, p, WORDS(p, "top level is not a JSON object"));
    free(p);
    p = st_file(f, "string.safetensors", "\"tensors\"", NULL, 0);
    expect_bad(f, p, WORDS(p, "top level is not a JSON object"));
    free(p);
}

static void test_duplicates_and_metadata(void **state)
{
    fixture *f = *state;
    const char *e = "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}";
    char hdr[512];
    snprintf(hdr, sizeof hdr, "{\"dup.weight\":%s,\"dup.weight\":%s}", e, e);
    char *p = st_file(f, "dup_same.safetensors", hdr, "x", 1);
    expect_bad(f, p, WORDS(p, "dup.weight", "duplicate tensor name"));
    free(p);
    snprintf(hdr, sizeof hdr,
             "{\"dup.weight\":%s,\"dup.weight\":{\"dtype\":\"I8\",\"shape\":[2],"
             "\"data_offsets\":[1,3]}}",
             e);
    p = st_file(f, "dup_diff.safetensors", hdr, "xyz", 3);
    expect_bad(f, p, WORDS(p, "dup.weight", "duplicate tensor name"));
    free(p);
    p = st_file(f, "meta_num.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}",
                NULL, 0);
    expect_bad(f, p, WORDS(p, "__metadata__", "epoch", "value is not a string"));
    free(p);
    p = st_file(f, "meta_arr.safetensors", "{\"__metadata__\":[\"pt\"]}", NULL, 0);
    expect_bad(f, p, WORDS(p, "__metadata__ is not an object"));
    free(p);
}

static void test_dtype(void **state)
{
    fixture *f = *state;
    char *p = st_file(f, "dt_unknown.safetensors",
                      "{\"w.weight\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}",
                      "0123456789abcdef", 16);
    expect_bad(f, p, WORDS(p, "w.weight", "unknown dtype 'F128'"));
    free(p);
    p = st_file(f, "dt_number.safetensors",
                "{\"w.weight\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4);
    expect_bad(f, p, WORDS(p, "w.weight", "dtype is not a string"));
    free(p);
    p = st_file(f, "dt_missing.safetensors",
                "{\"w.weight\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "abcd", 4);
    expect_bad(f, p, WORDS(p, "w.weight", "dtype is missing"));
    free(p);
}

static void test_offsets(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *file, *offsets, *rule;
    } cases[] = {
        {"off_negative.safetensors", "[-4,0]", "not non-negative integers"},
        {"off_real.safetensors", "[0,4.0]", "not non-negative integers"},
        {"off_string.safetensors", "[\"0\",\"4\"]", "not non-negative integers"},
        {"off_one.safetensors", "[4]", "not an array of exactly 2 integers"},
        {"off_three.safetensors", "[0,4,8]", "not an array of exactly 2 integers"},
        {"off_reversed.safetensors", "[4,0]", "end 0 is before begin 4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char hdr[256];
        snprintf(hdr, sizeof hdr,
                 "{\"t.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":%s}}",
                 cases[i].offsets);
        char *p = st_file(f, cases[i].file, hdr, "abcd", 4);
        expect_bad(f, p, WORDS(p, "t.weight", cases[i].rule));
        free(p);
    }
}

static void test_layout(void **state)
{
    fixture *f = *state;
    const char *two = "{\"a.weight\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                      "\"b.weight\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[%d,%d]}}";
    char hdr[256];
    snprintf(hdr, sizeof hdr, two, 2, 6);
    char *p = st_file(f, "overlap.safetensors", hdr, "abcdef", 6);
    expect_bad(f, p, WORDS(p, "b.weight", "overlap with tensor 'a.weight'"));
    free(p);
    snprintf(hdr, sizeof hdr, two, 6, 10);
    p = st_file(f, "gap.safetensors", hdr, "abcdefghij", 10);
    expect_bad(f, p, WORDS(p, "b.weight", "gap of 2 bytes after tensor 'a.weight'"));
    free(p);
    p = st_file(f, "gap_start.safetensors",
                "{\"a.weight\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", "abcd",
                4);
    expect_bad(f, p, WORDS(p, "a.weight", "gap at the start of the data"));
    free(p);
    snprintf(hdr, sizeof hdr, two, 4, 8);
    p = st_file(f, "trailing.safetensors", hdr, "abcdefghXY", 10);
    expect_bad(f, p, WORDS(p, "b.weight", "trailing bytes", "holds 10"));
    free(p);
    p = st_file(f, "truncated.safetensors", hdr, "abcdef", 6);
    expect_bad(f, p, WORDS(p, "b.weight", "truncated data", "holds only 6"));
    free(p);
}

static void test_shapes(void **state)
{
    fixture *f = *state;
    char *p = st_file(f, "shape_overflow.safetensors",
                      "{\"big.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,0]}}",
                      NULL, 0);
    expect_bad(f, p, WORDS(p, "big.weight", "overflows the size arithmetic"));
    free(p);
    p = st_file(f, "shape_bytes.safetensors",
                "{\"m.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
                "01234567890123456789", 20);
    expect_bad(f, p, WORDS(p, "m.weight", "size mismatch", "needs 24 bytes"));
    free(p);
    p = st_file(f, "shape_negative.safetensors",
                "{\"n.weight\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", NULL,
                0);
    expect_bad(f, p, WORDS(p, "n.weight", "shape[1] is not a non-negative integer"));
    free(p);
    p = st_file(f, "shape_rank9.safetensors",
                "{\"r.weight\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                "\"data_offsets\":[0,1]}}",
                "z", 1);
    expect_bad(f, p, WORDS(p, "r.weight", "rank 9 exceeds 8"));
    free(p);
}

/* NaN or Inf in a weight to quantize, on the host and on the default device. */
static void test_nonfinite(void **state)
{
    fixture *f = *state;
    const char *names[] = {"ok.weight", "layer.weight"};
    const int64_t shapes[][2] = {{2, 3}, {4, 3}};
    float w[12] = {0.5f, -1, 2, 3, -4, 5, 6, 7, 8, 9, 10, 11};
    w[2 * 3 + 1] = NAN;
    char *p = tu_join(f->in, "nan.safetensors");
    save_model(p, names, shapes, 2, w);
    expect_bad(f, p, WORDS(p, "layer.weight", "channel 2", "NaN or Inf"));
    expect_bad_dev(f, p, "auto", WORDS(p, "layer.weight", "channel 2", "NaN or Inf"));
    free(p);
    w[2 * 3 + 1] = 7;
    w[3 * 3 + 2] = -INFINITY; /* past the 6 values ok.weight takes */
    p = tu_join(f->in, "inf.safetensors");
    save_model(p, names, shapes, 2, w);
    expect_bad(f, p, WORDS(p, "layer.weight", "channel 3", "NaN or Inf"));
    expect_bad_dev(f, p, "auto", WORDS(p, "layer.weight", "channel 3", "NaN or Inf"));
    free(p);
}

/* ---- paths that are no model ---- */

static void test_not_a_model(void **state)
{
    fixture *f = *state;
    char *dir = tu_join(f->in, "emptydir");
    assert_int_equal(mkdir(dir, 0755), 0);
    char *junk = tu_join(dir, "README.md");
    assert_true(tu_write_file(junk, "# no weights here\n", 18));
    expect_bad(f, dir, WORDS(dir, "no model.safetensors or model.safetensors.index.json"));
    char *missing = tu_join(f->in, "missing.safetensors");
    expect_bad(f, missing, WORDS(missing, "No such file"));
    free(missing);
    free(junk);
    free(dir);
}

/* A sharded directory: a.safetensors {x.weight, y.weight}, b.safetensors {z.weight}. */
static char *make_sharded(const fixture *f, const char *name)
{
    static const float v[16];
    const int64_t shapes[][2] = {{2, 2}, {2, 2}};
    char *dir = tu_join(f->in, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    char *a = tu_join(dir, "a.safetensors"), *b = tu_join(dir, "b.safetensors");
    save_model(a, (const char *[]){"x.weight", "y.weight"}, shapes, 2, v);
    save_model(b, (const char *[]){"z.weight"}, shapes, 1, v);
    free(a);
    free(b);
    return dir;
}

static void write_index(const char *dir, const char *map)
{
    char text[512];
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {%s}}", map);
    char *p = tu_join(dir, "model.safetensors.index.json");
    assert_true(tu_write_file(p, text, strlen(text)));
    free(p);
}

static void test_broken_index(void **state)
{
    fixture *f = *state;
    const char *good = "\"x.weight\": \"a.safetensors\", \"y.weight\": \"a.safetensors\", "
                       "\"z.weight\": \"b.safetensors\"";
    /* The index is sound, so what fails below is the one thing each case breaks. */
    char *ok = make_sharded(f, "ok");
    write_index(ok, good);
    char *out = tu_join(f->out, "okmodel");
    assert_int_equal(tu_run_cli(NULL, "quantize %s -o %s --device host -q", ok, out), 0);
    tu_rmtree(out);
    free(out);

    char *d = make_sharded(f, "missing_shard");
    write_index(d, "\"x.weight\": \"a.safetensors\", \"y.weight\": \"a.safetensors\", "
                   "\"z.weight\": \"c.safetensors\"");
    expect_bad(f, d,
               WORDS(d, "model.safetensors.index.json", "z.weight",
                     "'c.safetensors', which does not exist"));
    free(d);

    d = make_sharded(f, "two_shards");
    char *c = tu_join(d, "c.safetensors");
    save_model(c, (const char *[]){"x.weight"}, (const int64_t[][2]){{2, 2}}, 1,
               (const float[4]){0});
    write_index(d, "\"x.weight\": \"a.safetensors\", \"y.weight\": \"a.safetensors\", "
                   "\"z.weight\": \"b.safetensors\", \"w.weight\": \"c.safetensors\"");
    expect_bad(f, d, WORDS(d, "x.weight", "two shards", "'a.safetensors' and 'c.safetensors'"));
    free(c);
    free(d);

    d = make_sharded(f, "unlisted_shard");
    c = tu_join(d, "c.safetensors");
    save_model(c, (const char *[]){"w.weight"}, (const int64_t[][2]){{2, 2}}, 1,
               (const float[4]){0});
    write_index(d, good);
    expect_bad(f, d, WORDS(d, "c.safetensors", "not listed in the index"));
    free(c);
    free(d);
    free(ok);
}

/* ---- companions of a weight we quantize ---- */

static const char *const presets[] = {"W8A8",       "W8A16",       "W8A16_ASYM", "W4A16",
                                      "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK"};

/* A stray tensor under a name the quantized layer has (x.weight_zero_point
 * beside a float x.weight, and so on): `extra` holds one or two of them. */
typedef struct {
    const char *names[2];
    mq_dtype dtypes[2];
    int64_t shapes[2][2];
    int ranks[2];
} stray;

static const stray strays[] = {
    {{"x.weight_zero_point"}, {MQ_DTYPE_I8}, {{128, 1}}, {2}},
    {{"x.weight_scale"}, {MQ_DTYPE_F32}, {{128, 1}}, {2}},
    {{"x.weight_packed", "x.weight_shape"}, {MQ_DTYPE_I32, MQ_DTYPE_I64}, {{128, 32}, {2}}, {2, 1}},
    {{"x.weight_global_scale"}, {MQ_DTYPE_F32}, {{1}}, {1}},
    {{"x.weight_g_idx"}, {MQ_DTYPE_I32}, {{128}}, {1}},
};

/* x.weight F32 [128, 128] (every preset quantizes it) and, when s is given,
 * its stray companions; without the weight, the companions alone. */
static void save_layer(const char *path, const stray *s, bool with_weight)
{
    static float w[128 * 128];
    static unsigned char zeros[128 * 128 * 4];
    for (size_t i = 0; i < 128 * 128; i++)
        w[i] = (float)((int)(i * 37 % 201) - 100) / 100.0f;
    mq_model *m = NULL;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    if (with_weight)
        assert_int_equal(
            mq_model_add_tensor(m, "x.weight", MQ_DTYPE_F32, 2, (int64_t[]){128, 128}, w), MQ_OK);
    for (int k = 0; s && k < 2 && s->names[k]; k++) {
        void *data = zeros;
        if (s->dtypes[k] == MQ_DTYPE_I64) data = (int64_t[]){128, 128};
        if (s->dtypes[k] == MQ_DTYPE_I8) memset(zeros, 100, 128); /* the zero point */
        assert_int_equal(
            mq_model_add_tensor(m, s->names[k], s->dtypes[k], s->ranks[k], s->shapes[k], data),
            MQ_OK);
        memset(zeros, 0, 128);
    }
    assert_int_equal(mq_model_save(m, path), MQ_OK);
    mq_model_free(m);
}

static void expect_bad_preset(const fixture *f, const char *in, const char *preset,
                              const char *const words[MAX_WORDS + 1])
{
    char device[64];
    snprintf(device, sizeof device, "host --preset %s", preset);
    expect_bad_dev(f, in, device, words);
}

/* A tensor the output would give a quantized layer, already in the input
 * beside its float weight, is a clash for every preset: refused before any
 * work (exit 2) naming both tensors, in a file, in a one-file model
 * directory and across shards. The same file without the stray quantizes. */
static void test_stray_companions(void **state)
{
    fixture *f = *state;
    char *p = tu_join(f->in, "plain.safetensors");
    save_layer(p, NULL, true);
    for (size_t k = 0; k < sizeof presets / sizeof *presets; k++) {
        char *out = tu_join(f->out, "plain-q.safetensors");
        assert_int_equal(
            tu_run_cli(NULL, "quantize %s -o %s --device host -q --preset %s", p, out, presets[k]),
            0);
        unlink(out);
        free(out);
    }
    unlink(p);
    free(p);

    for (size_t s = 0; s < sizeof strays / sizeof *strays; s++) {
        const char *name = strays[s].names[0];
        char *file = tu_join(f->in, "stray.safetensors");
        save_layer(file, &strays[s], true);
        char *dir = tu_join(f->in, "stray-dir"), *single = tu_join(dir, "model.safetensors");
        assert_int_equal(mkdir(dir, 0755), 0);
        save_layer(single, &strays[s], true);
        char *sharded = tu_join(f->in, "stray-shards");
        char *a = tu_join(sharded, "a.safetensors"), *b = tu_join(sharded, "b.safetensors");
        assert_int_equal(mkdir(sharded, 0755), 0);
        save_layer(a, NULL, true);
        save_layer(b, &strays[s], false);
        char map[512];
        snprintf(map, sizeof map, "\"x.weight\": \"a.safetensors\"%s%s%s%s%s", ", \"", name,
                 "\": \"b.safetensors\"", strays[s].names[1] ? ", \"" : "",
                 strays[s].names[1] ? strays[s].names[1] : "");
        if (strays[s].names[1]) strncat(map, "\": \"b.safetensors\"", sizeof map - strlen(map) - 1);
        write_index(sharded, map);
        for (size_t k = 0; k < sizeof presets / sizeof *presets; k++) {
            expect_bad_preset(f, file, presets[k], WORDS(file, "'x.weight'", name));
            expect_bad_preset(f, dir, presets[k],
                              WORDS(dir, "'x.weight'", name, "model.safetensors"));
            expect_bad_preset(f, sharded, presets[k],
                              WORDS("'x.weight' in 'a.safetensors'", name, "'b.safetensors'"));
        }
        tu_rmtree(dir);
        tu_rmtree(sharded);
        unlink(file);
        free(file);
        free(dir);
        free(single);
        free(sharded);
        free(a);
        free(b);
    }
}

/* A layer quantized across shards (codes in one, the scale in the next) is
 * refused before any output even when config.json has no
 * quantization_config, whatever the flags (--dtype fp16 too), naming both
 * tensors and shards. */
static void test_quantized_across_shards(void **state)
{
    fixture *f = *state;
    static const int8_t codes[8 * 8];
    static const int32_t packed[8 * 2];
    static const int64_t shape[2] = {8, 8};
    static const float scale[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int kind = 0; kind < 3; kind++) {
        char *d = tu_join(f->in, "q-shards");
        char *a = tu_join(d, "a.safetensors"), *b = tu_join(d, "b.safetensors");
        char *cfg = tu_join(d, "config.json");
        assert_int_equal(mkdir(d, 0755), 0);
        assert_true(tu_write_file(cfg, "{\"model_type\": \"llama\"}", 23));
        mq_model *ma, *mb;
        assert_int_equal(mq_model_new(&ma), MQ_OK);
        assert_int_equal(mq_model_new(&mb), MQ_OK);
        const char *codes_name = "layers.1.weight", *codes_shard = "a.safetensors";
        if (kind == 0) { /* int-quantized: I8 codes, the scale elsewhere */
            assert_int_equal(mq_model_add_tensor(ma, "layers.1.weight", MQ_DTYPE_I8, 2,
                                                 (int64_t[]){8, 8}, codes),
                             MQ_OK);
            write_index(d, "\"layers.1.weight\": \"a.safetensors\", "
                           "\"layers.1.weight_scale\": \"b.safetensors\"");
        } else { /* packed, with its shape beside it (1) or beside the scale (2) */
            codes_name = "layers.1.weight_packed";
            assert_int_equal(mq_model_add_tensor(ma, "layers.1.weight_packed", MQ_DTYPE_I32, 2,
                                                 (int64_t[]){8, 2}, packed),
                             MQ_OK);
            assert_int_equal(mq_model_add_tensor(kind == 1 ? ma : mb, "layers.1.weight_shape",
                                                 MQ_DTYPE_I64, 1, (int64_t[]){2}, shape),
                             MQ_OK);
            write_index(d, kind == 1 ? "\"layers.1.weight_packed\": \"a.safetensors\", "
                                       "\"layers.1.weight_shape\": \"a.safetensors\", "
                                       "\"layers.1.weight_scale\": \"b.safetensors\""
                                     : "\"layers.1.weight_packed\": \"a.safetensors\", "
                                       "\"layers.1.weight_shape\": \"b.safetensors\", "
                                       "\"layers.1.weight_scale\": \"b.safetensors\"");
        }
        assert_int_equal(mq_model_add_tensor(mb, "layers.1.weight_scale", MQ_DTYPE_F32, 2,
                                             (int64_t[]){8, 1}, scale),
                         MQ_OK);
        assert_int_equal(mq_model_save(ma, a), MQ_OK);
        assert_int_equal(mq_model_save(mb, b), MQ_OK);
        mq_model_free(ma);
        mq_model_free(mb);
        expect_bad_dev(f, d, "host --dtype fp16",
                       WORDS(codes_name, codes_shard,
                             "'layers.1.weight_scale' is in 'b.safetensors'", "already quantized"));
        for (size_t k = 0; k < sizeof presets / sizeof *presets; k++)
            expect_bad_preset(f, d, presets[k],
                              WORDS(codes_name, "b.safetensors", "already quantized"));
        tu_rmtree(d);
        free(d);
        free(a);
        free(b);
        free(cfg);
    }
}

/* ---- valid edge cases ---- */

/* Quantizes `in` (exit 0) and opens the output; the caller frees it. */
static mq_model *expect_ok(const fixture *f, const char *in)
{
    char *out = tu_join(f->out, "ok.safetensors"), *text = NULL;
    uint64_t before = tu_file_hash(in);
    int rc = tu_run_cli(&text, "quantize %s -o %s --device host", in, out);
    if (rc != 0) fail_msg("%s: exit %d, want 0:\n%s", in, rc, text);
    assert_int_equal(tu_file_hash(in), before);
    mq_model *m = NULL;
    if (mq_model_open(out, &m) != MQ_OK) fail_msg("%s: output rejected: %s", in, mq_last_error());
    assert_int_equal(tu_count_entries(f->out), 1); /* the output and no temporary */
    unlink(out);
    free(out);
    free(text);
    return m;
}

static void test_valid_edges(void **state)
{
    fixture *f = *state;
    char *p = st_file(f, "none.safetensors", "{}", NULL, 0);
    mq_model *m = expect_ok(f, p);
    assert_int_equal(mq_model_count(m), 0);
    mq_model_free(m);
    free(p);

    p = st_file(f, "meta_only.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}}", NULL, 0);
    m = expect_ok(f, p);
    assert_int_equal(mq_model_count(m), 0);
    mq_model_free(m);
    free(p);

    float two[2] = {1.5f, -2.0f};
    p = st_file(f, "scalars.safetensors",
                "{\"s.weight\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                "\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}",
                two, sizeof two);
    m = expect_ok(f, p);
    assert_int_equal(mq_model_count(m), 2);
    assert_int_equal(mq_model_find(m, "s.weight")->rank, 0);
    assert_true(*(const float *)mq_model_find(m, "s.weight")->data == 1.5f);
    mq_model_free(m);
    free(p);

    p = st_file(f, "zero.safetensors",
                "{\"z.weight\":{\"dtype\":\"F32\",\"shape\":[0,16],\"data_offsets\":[0,0]},"
                "\"c.weight\":{\"dtype\":\"F16\",\"shape\":[4,0,3,3],\"data_offsets\":[0,0]}}",
                NULL, 0);
    m = expect_ok(f, p);
    assert_int_equal(mq_model_count(m), 2);
    assert_int_equal(mq_model_find(m, "c.weight")->shape[1], 0);
    mq_model_free(m);
    free(p);

    float eight[6] = {1, 2, 3, 4, 5, 6};
    p = st_file(f, "rank8.safetensors",
                "{\"r.weight\":{\"dtype\":\"F32\",\"shape\":[1,2,1,1,3,1,1,1],"
                "\"data_offsets\":[0,24]}}",
                eight, sizeof eight);
    m = expect_ok(f, p);
    const mq_tensor *t = mq_model_find(m, "r.weight");
    assert_non_null(t);
    assert_int_equal(t->rank, 8);
    assert_int_equal(t->shape[4], 3);
    mq_model_free(m);
    free(p);

    /* "modèle.层.weight" (2-D: quantized) and an emoji-named bias. */
    float w[4] = {0.25f, -0.5f, 1, 2};
    p = st_file(f, "unicode.safetensors",
                "{\"mod\xc3\xa8le.\xe5\xb1\x82.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],"
                "\"data_offsets\":[0,8]},\"\xf0\x9f\x98\x80.bias\":{\"dtype\":\"F32\","
                "\"shape\":[2],\"data_offsets\":[8,16]}}",
                w, sizeof w);
    m = expect_ok(f, p);
    t = mq_model_find(m, "mod\xc3\xa8le.\xe5\xb1\x82.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MQ_DTYPE_I8);
    assert_non_null(mq_model_find(m, "mod\xc3\xa8le.\xe5\xb1\x82.weight_scale"));
    assert_non_null(mq_model_find(m, "\xf0\x9f\x98\x80.bias"));
    mq_model_free(m);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_and_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_companions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quantized_across_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_edges, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
