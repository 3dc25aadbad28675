/* safetensors reader and writer: one crafted file per validation rule (each
 * must fail with a message naming file, tensor and rule), the valid edge
 * cases, byte-exact round trips, and refusal to overwrite the input. */
#include "testutil.h"

#include "error.h"
#include "model.h"
#include "safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *g_dir;

static int group_setup(void **state)
{
    (void)state;
    g_dir = tu_mkdtemp();
    return g_dir ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

/* Path of a fresh file name in the group directory (caller frees). */
static char *test_path(const char *name)
{
    char *p = tu_join(g_dir, name);
    assert_non_null(p);
    unlink(p);
    return p;
}

static void assert_error_has(const char *word)
{
    if (!strstr(mq_last_error(), word))
        fail_msg("error \"%s\" lacks \"%s\"", mq_last_error(), word);
}

/* Writes header + data under `name`, opens it, and checks that it fails with
 * `want`, naming the file, the tensor (when given) and the rule's word. */
static void expect_reject(const char *name, const char *header, const void *data, size_t n,
                          mq_status want, const char *tensor, const char *word)
{
    char *path = test_path(name);
    mq_model *m = (mq_model *)1;
    assert_true(tu_write_st(path, header, data, n));
    mq_status st = mq_model_open(path, &m);
    if (st != want)
        fail_msg("%s: status %s, want %s (%s)", name, mq_status_str(st), mq_status_str(want),
                 mq_last_error());
    assert_null(m);
    assert_error_has(path);
    if (tensor) {
        char quoted[256];
        snprintf(quoted, sizeof quoted, "tensor '%s'", tensor);
        assert_error_has(quoted);
    }
    assert_error_has(word);
    free(path);
}

static void expect_format(const char *name, const char *header, size_t data_len, const char *tensor,
                          const char *word)
{
    unsigned char *data = calloc(data_len ? data_len : 1, 1);
    assert_non_null(data);
    expect_reject(name, header, data, data_len, MQ_STATUS_E_FORMAT, tensor, word);
    free(data);
}

/* Raw bytes (for files too short or lying about their header length). */
static void expect_raw(const char *name, const void *bytes, size_t n, mq_status want,
                       const char *word)
{
    char *path = test_path(name);
    mq_model *m = NULL;
    assert_true(tu_write_file(path, bytes, n));
    assert_int_equal(mq_model_open(path, &m), want);
    assert_null(m);
    assert_error_has(path);
    assert_error_has(word);
    free(path);
}

static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_file_too_small(void **state)
{
    (void)state;
    expect_raw("empty.st", "", 0, MQ_STATUS_E_FORMAT, "too small");
    expect_raw("seven.st", "\x02\0\0\0\0\0\0", 7, MQ_STATUS_E_FORMAT, "too small");
}

static void test_header_length_bounds(void **state)
{
    (void)state;
    unsigned char b[32] = {0};
    le64(b, 100);
    memcpy(b + 8, "{}", 2);
    expect_raw("past_end.st", b, sizeof b, MQ_STATUS_E_FORMAT, "past the end");
    le64(b, UINT64_MAX);
    expect_raw("u64max.st", b, sizeof b, MQ_STATUS_E_FORMAT, "exceeds the limit");
    le64(b, MQ_ST_MAX_HEADER + 1);
    expect_raw("over_cap.st", b, sizeof b, MQ_STATUS_E_FORMAT, "exceeds the limit");
    le64(b, MQ_ST_MAX_HEADER); /* allowed length, but the file is far shorter */
    expect_raw("at_cap.st", b, sizeof b, MQ_STATUS_E_FORMAT, "past the end");
    le64(b, (uint64_t)1 << 63);
    expect_raw("2p63.st", b, sizeof b, MQ_STATUS_E_FORMAT, "exceeds the limit");
}

static void test_missing_and_directory(void **state)
{
    (void)state;
    mq_model *m = NULL;
    char *path = test_path("does-not-exist.st");
    assert_int_equal(mq_model_open(path, &m), MQ_STATUS_E_IO);
    assert_null(m);
    assert_error_has(path);
    assert_error_has("No such file");
    assert_int_equal(mq_model_open(g_dir, &m), MQ_STATUS_E_IO);
    assert_null(m);
    assert_error_has(g_dir);
    assert_error_has("is a directory");
    assert_int_equal(mq_model_open(NULL, &m), MQ_STATUS_E_INVALID_ARG);
    free(path);
}

static void test_header_not_utf8_or_json(void **state)
{
    (void)state;
    expect_format("utf8.st", "{\"w\xff\":{}}", 0, NULL, "UTF-8");
    expect_format("overlong.st", "{\"\xc0\xaf\":{}}", 0, NULL, "UTF-8");
    expect_format("surrogate.st", "{\"\xed\xa0\x80\":{}}", 0, NULL, "UTF-8");
    expect_format("cut_utf8.st", "{}\xe2\x82", 0, NULL, "UTF-8");
    expect_format("json.st", "{\"w\":", 0, NULL, "not valid JSON");
    expect_format("json2.st", "{} {}", 0, NULL, "not valid JSON");
    expect_format("empty_hdr.st", "", 0, NULL, "not valid JSON");
    expect_format("array.st", "[]", 0, NULL, "not a JSON object");
    expect_format("number.st", "42", 0, NULL, "not a JSON object");
}

static void test_duplicate_names(void **state)
{
    (void)state;
    expect_format("dup_same.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                  1, "w", "duplicate tensor name");
    expect_format("dup_diff.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
                  3, "w", "duplicate tensor name");
    expect_format("dup_field.st",
                  "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[1],"
                  "\"data_offsets\":[0,1]}}",
                  1, NULL, "duplicate key 'dtype'");
}

static void test_metadata_rules(void **state)
{
    (void)state;
    expect_format("meta_int.st", "{\"__metadata__\":{\"format\":\"pt\",\"n\":3}}", 0, NULL,
                  "__metadata__ key 'n': value is not a string");
    expect_format("meta_arr.st", "{\"__metadata__\":[\"pt\"]}", 0, NULL,
                  "__metadata__ is not an object");
    expect_format("meta_str.st", "{\"__metadata__\":\"pt\"}", 0, NULL,
                  "__metadata__ is not an object");
}

static void test_entry_and_dtype(void **state)
{
    (void)state;
    expect_format("entry.st", "{\"w\":[1,2]}", 0, "w", "not an object");
    expect_format("dtype_unknown.st",
                  "{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16, "w",
                  "unknown dtype 'F128'");
    expect_format("dtype_lower.st",
                  "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w",
                  "unknown dtype");
    expect_format("dtype_int.st", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "w", "dtype is not a string");
    expect_format("dtype_missing.st", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w",
                  "dtype is missing");
}

static void test_shape_rules(void **state)
{
    (void)state;
    expect_format("dim_neg.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0, "w",
                  "shape[1] is not a non-negative integer");
    expect_format("dim_real.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}}", 2, "w",
                  "shape[0] is not a non-negative integer");
    expect_format("dim_str.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", 2, "w",
                  "shape[0]");
    expect_format("shape_obj.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,0]}}",
                  0, "w", "shape");
    expect_format("shape_missing.st", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "w",
                  "shape is missing");
    expect_format("rank9.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                  "\"data_offsets\":[0,1]}}",
                  1, "w", "rank 9 exceeds 8");
    expect_format("overflow.st",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                  "\"data_offsets\":[0,0]}}",
                  0, "w", "overflow");
    expect_format("overflow2.st",
                  "{\"w\":{\"dtype\":\"F64\",\"shape\":[9223372036854775807],"
                  "\"data_offsets\":[0,8]}}",
                  8, "w", "overflow");
    expect_format("mismatch.st",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, "w",
                  "size mismatch");
}

static void test_offset_rules(void **state)
{
    (void)state;
    expect_format("off_neg.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}",
                  0, "w", "data_offsets");
    expect_format("off_real.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, "w",
                  "data_offsets are not non-negative integers");
    expect_format("off_one.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0]}}", 0,
                  "w", "exactly 2");
    expect_format("off_three.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2, "w",
                  "exactly 2");
    expect_format("off_missing.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "w",
                  "data_offsets");
    expect_format("off_reversed.st",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}}", 4, "w",
                  "end 2 is before begin 4");
}

static void test_layout_rules(void **state)
{
    (void)state;
    expect_format("overlap.st",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
                  6, "b", "overlap with tensor 'a'");
    expect_format("gap.st",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}",
                  10, "b", "gap of 2 bytes after tensor 'a'");
    expect_format("start.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6,
                  "a", "gap at the start");
    expect_format("trailing.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                  5, "a", "trailing bytes");
    expect_format("trailing0.st", "{}", 3, NULL, "trailing bytes");
    expect_format("truncated.st",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]}}",
                  12, "b", "truncated data");
    /* Far past the end: offsets near 2^63 must not wrap anywhere. */
    expect_format("huge_off.st",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
                  "\"data_offsets\":[9223372036854775807,9223372036854775807]}}",
                  0, "a", "gap at the start");
}

/* Opens a file made of header + data; fails the test on error. */
static mq_model *open_ok(const char *name, const char *header, const void *data, size_t n)
{
    char *path = test_path(name);
    mq_model *m = NULL;
    assert_true(tu_write_st(path, header, data, n));
    mq_status st = mq_model_open(path, &m);
    if (st != MQ_OK) fail_msg("%s: %s", name, mq_last_error());
    assert_non_null(m);
    assert_string_equal(m->path, path);
    free(path);
    return m;
}

static void test_valid_empty_and_metadata(void **state)
{
    (void)state;
    mq_model *m = open_ok("zero.st", "{}", NULL, 0);
    assert_int_equal(mq_model_count(m), 0);
    assert_int_equal(mq_model_metadata_count(m), 0);
    mq_model_free(m);

    m = open_ok("meta.st", "{\"__metadata__\":{\"format\":\"pt\",\"a\":\"\xc3\xa9\"}}", NULL, 0);
    assert_int_equal(mq_model_count(m), 0);
    assert_int_equal(mq_model_metadata_count(m), 2);
    assert_string_equal(mq_model_metadata_key(m, 0), "format");
    assert_string_equal(mq_model_metadata_value(m, 0), "pt");
    assert_string_equal(mq_model_metadata_key(m, 1), "a");
    assert_string_equal(mq_model_metadata_value(m, 1), "\xc3\xa9");
    mq_model_free(m);

    m = open_ok("meta_null.st", "{\"__metadata__\":null}", NULL, 0);
    assert_int_equal(mq_model_metadata_count(m), 0);
    mq_model_free(m);
}

static void test_valid_scalar_and_zero_sized(void **state)
{
    (void)state;
    const float one_half = 1.5f;
    mq_model *m =
        open_ok("scalar.st", "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                &one_half, 4);
    const mq_tensor *t = mq_model_find(m, "s");
    assert_non_null(t);
    assert_int_equal(t->rank, 0);
    assert_int_equal(t->nbytes, 4);
    assert_memory_equal(t->data, &one_half, 4);
    mq_model_free(m);

    /* Zero-byte tensors at the start, middle and end, listed out of order. */
    const unsigned char d[6] = {1, 2, 3, 4, 0x34, 0x12};
    m = open_ok("zero_sized.st",
                "{\"b\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[4,6]},"
                "\"z1\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                "\"z2\":{\"dtype\":\"U8\",\"shape\":[2,0],\"data_offsets\":[6,6]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"z0\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                d, sizeof d);
    const char *order[] = {"z0", "a", "z1", "b", "z2"};
    assert_int_equal(mq_model_count(m), 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(mq_model_tensor(m, i)->name, order[i]);
    t = mq_model_find(m, "z1");
    assert_int_equal(t->nbytes, 0);
    assert_int_equal(t->rank, 2);
    assert_int_equal(t->shape[0], 0);
    assert_int_equal(t->shape[1], 3);
    t = mq_model_find(m, "b");
    assert_int_equal(t->dtype, MQ_DTYPE_I16);
    assert_memory_equal(t->data, d + 4, 2);
    assert_memory_equal(mq_model_find(m, "a")->data, d, 4);
    mq_model_free(m);
}

static void test_valid_unicode_rank8_padding(void **state)
{
    (void)state;
    const unsigned char d[8] = {9, 8, 7, 6, 5, 4, 3, 2};
    mq_model *m =
        open_ok("uni.st",
                "{\"w\xc3\xa9ight_\xce\xba\":{\"dtype\":\"U8\",\"shape\":[1,2,1,2,1,1,1,2],"
                "\"data_offsets\":[0,8]}}      ",
                d, sizeof d);
    const mq_tensor *t = mq_model_find(m, "w\xc3\xa9ight_\xce\xba");
    assert_non_null(t);
    assert_int_equal(t->rank, 8);
    const int64_t want[8] = {1, 2, 1, 2, 1, 1, 1, 2};
    assert_memory_equal(t->shape, want, sizeof want);
    assert_memory_equal(t->data, d, 8);
    mq_model_free(m);

    /* Tensors sorted by offset, not by header order; every dtype name parses. */
    m = open_ok("order.st",
                "{\"late\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[6,8]},"
                "\"early\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}",
                d, sizeof d);
    assert_string_equal(mq_model_tensor(m, 0)->name, "early");
    assert_int_equal(mq_model_tensor(m, 0)->dtype, MQ_DTYPE_BF16);
    assert_string_equal(mq_model_tensor(m, 1)->name, "late");
    assert_int_equal(mq_model_tensor(m, 1)->dtype, MQ_DTYPE_F8_E5M2);
    assert_memory_equal(mq_model_tensor(m, 1)->data, d + 6, 2);
    mq_model_free(m);
}

static void test_parse_header_validate_only(void **state)
{
    (void)state;
    const char *ok = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    assert_int_equal(mq_st_parse_header(NULL, ok, strlen(ok), NULL, 4, NULL, NULL), MQ_OK);
    assert_int_equal(mq_st_parse_header(NULL, ok, strlen(ok), NULL, 5, NULL, NULL),
                     MQ_STATUS_E_FORMAT);
    assert_int_equal(mq_st_parse_header("x", "", 0, NULL, 0, NULL, NULL), MQ_STATUS_E_FORMAT);
    /* On failure the model keeps what it had. */
    mq_model *m = NULL;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    const unsigned char d[4] = {0};
    assert_int_equal(mq_model_add_tensor(m, "a", MQ_DTYPE_U8, 0, NULL, d), MQ_OK);
    assert_int_not_equal(mq_st_parse_header("mem", ok, strlen(ok), d, 4, NULL, m), MQ_OK);
    assert_int_equal(mq_model_count(m), 1);
    assert_error_has("mem");
    mq_model_free(m);
}

/* A model with several dtypes, shapes and metadata. */
static mq_model *sample_model(void)
{
    mq_model *m = NULL;
    static const float w[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
    static const uint16_t bf[4] = {0x3f80, 0xbf80, 0x7f80, 0x0001};
    static const int8_t q[3] = {-128, 0, 127};
    static const uint8_t u = 200;
    static const double f64[2] = {3.141592653589793, -1e300};
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "layer.weight", MQ_DTYPE_F32, 2, (int64_t[]){2, 3}, w),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "b\xc3\xa9", MQ_DTYPE_BF16, 1, (int64_t[]){4}, bf),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "q", MQ_DTYPE_I8, 2, (int64_t[]){3, 1}, q), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "empty", MQ_DTYPE_BOOL, 1, (int64_t[]){0}, NULL),
                     MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "scalar", MQ_DTYPE_U8, 0, NULL, &u), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "d", MQ_DTYPE_F64, 1, (int64_t[]){2}, f64), MQ_OK);
    assert_int_equal(mq_model_set_metadata(m, "format", "pt"), MQ_OK);
    assert_int_equal(mq_model_set_metadata(m, "tool", "mono-quant \"test\""), MQ_OK);
    return m;
}

static void assert_models_equal(const mq_model *a, const mq_model *b)
{
    assert_int_equal(mq_model_count(a), mq_model_count(b));
    for (size_t i = 0; i < mq_model_count(a); i++) {
        const mq_tensor *x = mq_model_tensor(a, i), *y = mq_model_tensor(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->rank, y->rank);
        for (int d = 0; d < x->rank; d++)
            assert_int_equal(x->shape[d], y->shape[d]);
        assert_int_equal(x->nbytes, y->nbytes);
        if (x->nbytes) assert_memory_equal(x->data, y->data, x->nbytes);
    }
    assert_int_equal(mq_model_metadata_count(a), mq_model_metadata_count(b));
    for (size_t i = 0; i < mq_model_metadata_count(a); i++) {
        assert_string_equal(mq_model_metadata_key(a, i), mq_model_metadata_key(b, i));
        assert_string_equal(mq_model_metadata_value(a, i), mq_model_metadata_value(b, i));
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    mq_model *m = sample_model(), *r = NULL, *r2 = NULL;
    char *p1 = test_path("rt1.st"), *p2 = test_path("rt2.st"), *p3 = test_path("rt3.st");
    assert_int_equal(mq_model_save(m, p1), MQ_OK);
    assert_int_equal(mq_model_open(p1, &r), MQ_OK);
    assert_models_equal(m, r);

    /* Layout: 8-byte length, '{', length a multiple of 8, file = 8 + N + data. */
    size_t n;
    unsigned char *bytes = tu_read_file(p1, &n);
    assert_non_null(bytes);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | bytes[i];
    assert_int_equal(hl % 8, 0);
    assert_int_equal(bytes[8], '{');
    assert_int_equal(n, 8 + hl + 24 + 8 + 3 + 0 + 1 + 16);
    const char *want =
        "{\"__metadata__\":{\"format\":\"pt\",\"tool\":\"mono-quant \\\"test\\\"\"},"
        "\"layer.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\xc3\xa9\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"q\":{\"dtype\":\"I8\",\"shape\":[3,1],\"data_offsets\":[32,35]},"
        "\"empty\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[35,35]},"
        "\"scalar\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[35,36]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[36,52]}}";
    assert_true(hl >= strlen(want) && hl < strlen(want) + 8);
    assert_memory_equal(bytes + 8, want, strlen(want));
    for (size_t i = 8 + strlen(want); i < 8 + hl; i++)
        assert_int_equal(bytes[i], ' ');
    free(bytes);

    /* Same model, same bytes; a model read from the file writes it back exactly. */
    assert_int_equal(mq_model_save(m, p2), MQ_OK);
    assert_int_equal(mq_model_save(r, p3), MQ_OK);
    assert_true(tu_file_hash(p1) != 0);
    assert_true(tu_file_hash(p1) == tu_file_hash(p2));
    assert_true(tu_file_hash(p1) == tu_file_hash(p3));
    assert_int_equal(mq_model_open(p3, &r2), MQ_OK);
    assert_models_equal(m, r2);
    mq_model_free(r2);
    mq_model_free(r);
    mq_model_free(m);
    free(p1);
    free(p2);
    free(p3);
}

static void test_build_header_no_metadata(void **state)
{
    (void)state;
    mq_model *m = NULL;
    char *h = NULL;
    size_t n = 0;
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_st_build_header(m, &h, &n), MQ_OK);
    assert_int_equal(n, 8);
    assert_string_equal(h, "{}      ");
    free(h);
    const uint8_t b[5] = {1, 2, 3, 4, 5};
    assert_int_equal(mq_model_add_tensor(m, "x", MQ_DTYPE_U8, 1, (int64_t[]){5}, b), MQ_OK);
    assert_int_equal(mq_st_build_header(m, &h, &n), MQ_OK);
    assert_null(strstr(h, "__metadata__"));
    assert_int_equal(n % 8, 0);
    assert_int_equal(n, strlen(h));
    assert_int_equal(mq_st_parse_header("hdr", h, n, b, 5, NULL, NULL), MQ_OK);
    free(h);
    /* A tensor may not take the reserved name. */
    assert_int_equal(mq_model_add_tensor(m, "__metadata__", MQ_DTYPE_U8, 1, (int64_t[]){5}, b),
                     MQ_OK);
    assert_int_equal(mq_st_build_header(m, &h, &n), MQ_STATUS_E_INVALID_ARG);
    assert_null(h);
    mq_model_truncate(m, 1);
    /* A hand-edited tensor whose bytes disagree with its header is refused. */
    char *p = test_path("inconsistent.st");
    m->tensors[0].data = NULL;
    assert_int_equal(mq_model_save(m, p), MQ_STATUS_E_INVALID_ARG);
    assert_error_has("tensor 'x'");
    assert_error_has(p);
    m->tensors[0].data = b;
    m->tensors[0].nbytes = 4;
    assert_int_equal(mq_model_save(m, p), MQ_STATUS_E_INVALID_ARG);
    assert_false(tu_exists(p));
    free(p);
    mq_model_free(m);
}

static void test_overwrite_existing(void **state)
{
    (void)state;
    mq_model *a = sample_model(), *b = NULL, *r = NULL;
    char *p = test_path("over.st");
    assert_int_equal(mq_model_save(a, p), MQ_OK);
    assert_int_equal(mq_model_new(&b), MQ_OK);
    assert_int_equal(mq_model_add_tensor(b, "only", MQ_DTYPE_I32, 1, (int64_t[]){1}, &(int32_t){7}),
                     MQ_OK);
    assert_int_equal(mq_model_save(b, p), MQ_OK);
    assert_int_equal(mq_model_open(p, &r), MQ_OK);
    assert_models_equal(b, r);
    mq_model_free(r);
    mq_model_free(b);
    mq_model_free(a);
    free(p);
}

static void expect_refused(const mq_model *m, const char *target, const char *real, uint64_t hash)
{
    int before = tu_count_entries(g_dir);
    assert_int_equal(mq_model_save(m, target), MQ_STATUS_E_OUTPUT);
    assert_error_has(target);
    assert_error_has("input");
    assert_true(tu_file_hash(real) == hash);
    assert_int_equal(tu_count_entries(g_dir), before);
}

static void test_refuse_output_is_input(void **state)
{
    (void)state;
    mq_model *m = sample_model(), *in = NULL, *empty = NULL, *in_empty = NULL;
    char *p = test_path("self.st"), *sym = test_path("self.link"), *hard = test_path("self.hard");
    char *pe = test_path("self_empty.st");
    assert_int_equal(mq_model_save(m, p), MQ_OK);
    uint64_t h = tu_file_hash(p);
    assert_int_equal(mq_model_open(p, &in), MQ_OK);
    assert_int_equal(symlink(p, sym), 0);
    assert_int_equal(link(p, hard), 0);
    expect_refused(in, p, p, h);
    expect_refused(in, sym, p, h);
    expect_refused(in, hard, p, h);
    assert_models_equal(m, in); /* the mapping still reads the original bytes */

    /* A model made from the input (as dequantize makes one) has no path of
     * its own but shares the input's mapping: the error names the input. */
    mq_model *derived = NULL;
    assert_int_equal(mq_model_new(&derived), MQ_OK);
    const mq_tensor *t = mq_model_tensor(in, 0);
    assert_int_equal(mq_model_append(derived, t->name, t->dtype, t->rank, t->shape, t->data,
                                     t->nbytes, in->blobs[0]),
                     MQ_OK);
    expect_refused(derived, hard, p, h);
    assert_error_has(p);
    expect_refused(derived, sym, p, h);
    assert_error_has(p);
    mq_model_free(derived);

    /* No tensor maps a zero-tensor file, but its path still names it. */
    assert_int_equal(mq_model_new(&empty), MQ_OK);
    assert_int_equal(mq_model_save(empty, pe), MQ_OK);
    assert_int_equal(mq_model_open(pe, &in_empty), MQ_OK);
    expect_refused(in_empty, pe, pe, tu_file_hash(pe));

    mq_model_free(in_empty);
    mq_model_free(empty);
    mq_model_free(in);
    mq_model_free(m);
    free(pe);
    free(hard);
    free(sym);
    free(p);
}

static void test_save_bad_targets(void **state)
{
    (void)state;
    mq_model *m = sample_model();
    char *sub = test_path("subdir");
    char *missing = test_path("nodir/out.st");
    assert_int_equal(mkdir(sub, 0755), 0);
    int before = tu_count_entries(g_dir);

    assert_int_equal(mq_model_save(m, missing), MQ_STATUS_E_OUTPUT);
    assert_error_has("does not exist");
    assert_error_has("nodir");
    assert_false(tu_exists(missing));

    assert_int_equal(mq_model_save(m, sub), MQ_STATUS_E_OUTPUT);
    assert_error_has(sub);
    assert_error_has("is a directory");
    assert_int_equal(tu_count_entries(sub), 0);
    assert_int_equal(tu_count_entries(g_dir), before);
    assert_int_equal(mq_model_save(NULL, sub), MQ_STATUS_E_INVALID_ARG);

    mq_model_free(m);
    rmdir(sub);
    free(missing);
    free(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_too_small),
        cmocka_unit_test(test_header_length_bounds),
        cmocka_unit_test(test_missing_and_directory),
        cmocka_unit_test(test_header_not_utf8_or_json),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_metadata_rules),
        cmocka_unit_test(test_entry_and_dtype),
        cmocka_unit_test(test_shape_rules),
        cmocka_unit_test(test_offset_rules),
        cmocka_unit_test(test_layout_rules),
        cmocka_unit_test(test_valid_empty_and_metadata),
        cmocka_unit_test(test_valid_scalar_and_zero_sized),
        cmocka_unit_test(test_valid_unicode_rank8_padding),
        cmocka_unit_test(test_parse_header_validate_only),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_build_header_no_metadata),
        cmocka_unit_test(test_overwrite_existing),
        cmocka_unit_test(test_refuse_output_is_input),
        cmocka_unit_test(test_save_bad_targets),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
