/* mq_config: defaults, owned pattern lists, and the JSON config file: every
 * key, every way a file can be wrong, and that a failed load changes nothing. */
#include "testutil.h"

#include "error.h"
#include "monoquant.h"
#include "scheme.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmpdir;

static int group_setup(void **state)
{
    (void)state;
    tmpdir = tu_mkdtemp();
    return tmpdir ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

/* Writes `json` to a file in the group's directory; caller frees the path. */
static char *write_json(const char *name, const char *json)
{
    char *path = tu_join(tmpdir, name);
    assert_non_null(path);
    assert_true(tu_write_file(path, json, strlen(json)));
    return path;
}

static void assert_error_has(const char *part)
{
    if (!strstr(mq_last_error(), part)) fail_msg("error '%s' lacks '%s'", mq_last_error(), part);
}

static void assert_defaults(const mq_config *cfg)
{
    assert_int_equal(cfg->dtype, MQ_QINT8);
    assert_true(cfg->symmetric);
    assert_true(cfg->per_channel);
    assert_null(cfg->include);
    assert_int_equal(cfg->n_include, 0);
    assert_null(cfg->exclude);
    assert_int_equal(cfg->n_exclude, 0);
    assert_false(cfg->skip_nonfinite);
    assert_false(cfg->fp16_saturate);
    assert_null(cfg->device);
    assert_int_equal(cfg->max_alloc_override, 0);
}

static void test_init_defaults(void **state)
{
    (void)state;
    mq_config cfg;

    memset(&cfg, 0xa5, sizeof cfg);
    mq_config_init(&cfg);
    assert_defaults(&cfg);
    assert_int_equal(cfg.struct_size, sizeof cfg);
    mq_config_init(NULL);
    mq_config_free(NULL);
}

static void test_add_and_free(void **state)
{
    (void)state;
    mq_config cfg;
    char pat[32];

    mq_config_init(&cfg);
    assert_int_equal(mq_config_add_include(&cfg, "*.q_proj.weight"), MQ_OK);
    assert_int_equal(mq_config_add_include(&cfg, "re:.*lm_head"), MQ_OK);
    assert_int_equal(mq_config_add_exclude(&cfg, "model.layers.0.*"), MQ_OK);
    /* The config owns copies, not the caller's buffers. */
    strcpy(pat, "*norm*");
    assert_int_equal(mq_config_add_exclude(&cfg, pat), MQ_OK);
    strcpy(pat, "overwritten");
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    assert_int_equal(mq_config_set_device(&cfg, "0:1"), MQ_OK);

    assert_int_equal(cfg.n_include, 2);
    assert_string_equal(cfg.include[0], "*.q_proj.weight");
    assert_string_equal(cfg.include[1], "re:.*lm_head");
    assert_int_equal(cfg.n_exclude, 2);
    assert_string_equal(cfg.exclude[0], "model.layers.0.*");
    assert_string_equal(cfg.exclude[1], "*norm*");
    assert_string_equal(cfg.device, "0:1");

    assert_int_equal(mq_config_set_device(&cfg, NULL), MQ_OK);
    assert_null(cfg.device);
    assert_int_equal(mq_config_set_device(&cfg, "gpu"), MQ_OK);

    /* Free leaves the defaults (ASan's leak check sees the strings go). */
    cfg.dtype = MQ_FLOAT16;
    cfg.symmetric = false;
    mq_config_free(&cfg);
    assert_defaults(&cfg);
    mq_config_free(&cfg);
    assert_defaults(&cfg);
}

static void test_add_rejects_bad_patterns(void **state)
{
    (void)state;
    mq_config cfg;

    mq_config_init(&cfg);
    assert_int_equal(mq_config_add_include(&cfg, "ok.*"), MQ_OK);
    assert_int_equal(mq_config_add_include(&cfg, "re:layers.(0|1"), MQ_STATUS_E_CONFIG);
    assert_error_has("pattern 're:layers.(0|1'");
    assert_int_equal(mq_config_add_exclude(&cfg, ""), MQ_STATUS_E_CONFIG);
    assert_error_has("empty pattern");
    assert_int_equal(mq_config_add_exclude(&cfg, "re:"), MQ_STATUS_E_CONFIG);
    assert_int_equal(mq_config_add_exclude(&cfg, "re:+x"), MQ_STATUS_E_CONFIG);
    assert_error_has("'re:+x'");
    assert_int_equal(mq_config_add_include(&cfg, NULL), MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_config_add_exclude(NULL, "x"), MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_config_set_device(NULL, "x"), MQ_STATUS_E_INVALID_ARG);
    /* Nothing bad was kept. */
    assert_int_equal(cfg.n_include, 1);
    assert_int_equal(cfg.n_exclude, 0);
    mq_config_free(&cfg);
}

static void test_load_full(void **state)
{
    (void)state;
    char *path = write_json("full.json", "{\n"
                                         "  \"dtype\": \"fp16\",\n"
                                         "  \"scheme\": \"asym\",\n"
                                         "  \"per_channel\": false,\n"
                                         "  \"include\": [\"lm_head.weight\", \"re:.*embed.*\"],\n"
                                         "  \"exclude\": [\"*norm*\"],\n"
                                         "  \"ignore\": [\"re:.*mlp\\\\.gate$\"],\n"
                                         "  \"skip_nonfinite\": true,\n"
                                         "  \"fp16_saturate\": true,\n"
                                         "  \"device\": \"cpu\"\n"
                                         "}\n");
    mq_config cfg;

    mq_config_init(&cfg);
    assert_int_equal(mq_config_add_include(&cfg, "from_cli"), MQ_OK);
    assert_int_equal(mq_config_load_json(&cfg, path), MQ_OK);
    assert_int_equal(cfg.dtype, MQ_FLOAT16);
    assert_false(cfg.symmetric);
    assert_false(cfg.per_channel);
    assert_true(cfg.skip_nonfinite);
    assert_true(cfg.fp16_saturate);
    assert_string_equal(cfg.device, "cpu");
    /* Lists are appended to, not replaced. */
    assert_int_equal(cfg.n_include, 3);
    assert_string_equal(cfg.include[0], "from_cli");
    assert_string_equal(cfg.include[1], "lm_head.weight");
    assert_string_equal(cfg.include[2], "re:.*embed.*");
    /* "ignore" (compressed-tensors' name) lands in exclude. */
    assert_int_equal(cfg.n_exclude, 2);
    assert_string_equal(cfg.exclude[0], "*norm*");
    assert_string_equal(cfg.exclude[1], "re:.*mlp\\.gate$");

    /* Loading twice appends again and replaces the device without a leak. */
    assert_int_equal(mq_config_load_json(&cfg, path), MQ_OK);
    assert_int_equal(cfg.n_include, 5);
    assert_int_equal(cfg.n_exclude, 4);
    assert_string_equal(cfg.device, "cpu");
    mq_config_free(&cfg);
    free(path);
}

static void test_load_only_overrides_present_keys(void **state)
{
    (void)state;
    char *path = write_json("partial.json", "{\"scheme\": \"sym\", \"per_channel\": true}");
    char *empty = write_json("empty.json", "{}");
    mq_config cfg;

    /* A state unlike the defaults, as flags or an earlier file would leave it. */
    mq_config_init(&cfg);
    cfg.dtype = MQ_FLOAT16;
    cfg.symmetric = false;
    cfg.per_channel = false;
    cfg.skip_nonfinite = true;
    cfg.fp16_saturate = true;
    cfg.max_alloc_override = 4096;
    assert_int_equal(mq_config_add_exclude(&cfg, "keep.me"), MQ_OK);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);

    assert_int_equal(mq_config_load_json(&cfg, path), MQ_OK);
    assert_true(cfg.symmetric);
    assert_true(cfg.per_channel);
    assert_int_equal(cfg.dtype, MQ_FLOAT16);
    assert_true(cfg.skip_nonfinite);
    assert_true(cfg.fp16_saturate);
    assert_int_equal(cfg.max_alloc_override, 4096);
    assert_int_equal(cfg.n_include, 0);
    assert_int_equal(cfg.n_exclude, 1);
    assert_string_equal(cfg.exclude[0], "keep.me");
    assert_string_equal(cfg.device, "host");

    assert_int_equal(mq_config_load_json(&cfg, empty), MQ_OK);
    assert_int_equal(cfg.dtype, MQ_FLOAT16);
    assert_string_equal(cfg.device, "host");
    mq_config_free(&cfg);
    free(path);
    free(empty);
}

typedef struct {
    const char *json;
    const char *expect[3]; /* substrings of mq_last_error() besides the path */
} bad_case;

static const bad_case bad_cases[] = {
    {"{\"dtypes\": \"int8\"}", {"key 'dtypes'", "unknown key"}},
    {"{\"dtype\": \"int2\"}", {"key 'dtype'", "'int2'", "int8, fp16, int4, fp8"}},
    {"{\"preset\": \"W9A9\"}", {"key 'preset'", "'W9A9'", "FP8_BLOCK"}},
    {"{\"preset\": 4}", {"key 'preset'", "expected a string"}},
    {"{\"group_size\": 0}", {"key 'group_size'", "positive integer"}},
    {"{\"group_size\": \"big\"}", {"key 'group_size'", "channel"}},
    /* Numbers are JSON integers, read strictly: no sign but -1, no real, no
     * string holding digits, nothing past int64. */
    {"{\"group_size\": -2}", {"key 'group_size'", "positive integer"}},
    {"{\"group_size\": 128.0}", {"key 'group_size'", "positive integer"}},
    {"{\"group_size\": \" 128\"}", {"key 'group_size'", "channel"}},
    {"{\"group_size\": 18446744073709551615}", {"too big"}},
    {"{\"dtype\": 8}", {"key 'dtype'", "expected a string"}},
    {"{\"scheme\": \"symmetric\"}", {"key 'scheme'", "'symmetric'", "sym, asym"}},
    {"{\"per_channel\": \"yes\"}", {"key 'per_channel'", "expected true or false"}},
    {"{\"per_channel\": 1}", {"key 'per_channel'", "true or false"}},
    {"{\"skip_nonfinite\": null}", {"key 'skip_nonfinite'"}},
    {"{\"fp16_saturate\": [true]}", {"key 'fp16_saturate'"}},
    {"{\"include\": \"*.weight\"}", {"key 'include'", "array of strings"}},
    {"{\"exclude\": [\"ok\", 3]}", {"key 'exclude'", "element 1 is not a string"}},
    {"{\"exclude\": [\"re:(x\"]}", {"key 'exclude'", "pattern 're:(x'"}},
    {"{\"ignore\": [\"\"]}", {"key 'ignore'", "empty pattern"}},
    {"{\"include\": [\"re:\"]}", {"key 'include'", "'re:'"}},
    {"{\"device\": 0}", {"key 'device'", "expected a string"}},
    {"{\"device\": \"\"}", {"key 'device'", "empty"}},
    {"{\"dtype\": \"int8\",\n \"dtype\": \"fp16\"}", {"line 2", "dtype"}},
    {"{\"dtype\": \"int8\",\n  \"scheme\": }", {"line 2", "column"}},
    {"", {"line"}},
    {"[\"int8\"]", {"JSON object"}},
};

static const struct {
    const char *name;
    const char *entry;
} prefix_keys[] = {
    {"\"include\"", "\"include\": [\"added\"]"},
    {"\"dtype\"", "\"dtype\": \"fp16\""},
    {"\"scheme\"", "\"scheme\": \"asym\""},
    {"\"device\"", "\"device\": \"gpu\""},
};

/* Each bad file fails with E_CONFIG, names path and key, and leaves the
 * config exactly as it was even when earlier keys had been applied. */
static void test_load_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        char name[32], json[256];
        char *path;
        mq_config cfg;

        snprintf(name, sizeof name, "bad%zu.json", i);
        /* Valid keys ahead of the bad one are applied first, then rolled back. */
        snprintf(json, sizeof json, "%s", bad_cases[i].json);
        if (json[0] == '{') {
            size_t used = (size_t)snprintf(json, sizeof json, "{");
            for (size_t k = 0; k < sizeof prefix_keys / sizeof *prefix_keys; k++)
                if (!strstr(bad_cases[i].json, prefix_keys[k].name))
                    used += (size_t)snprintf(json + used, sizeof json - used, "%s, ",
                                             prefix_keys[k].entry);
            snprintf(json + used, sizeof json - used, "%s", bad_cases[i].json + 1);
        }
        path = write_json(name, json);

        mq_config_init(&cfg);
        assert_int_equal(mq_config_add_include(&cfg, "mine"), MQ_OK);
        assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
        mq_clear_error();
        if (mq_config_load_json(&cfg, path) != MQ_STATUS_E_CONFIG)
            fail_msg("case %zu (%s) did not fail with E_CONFIG", i, json);
        if (strncmp(mq_last_error(), path, strlen(path)) != 0)
            fail_msg("case %zu: error '%s' does not start with the path", i, mq_last_error());
        for (int k = 0; k < 3 && bad_cases[i].expect[k]; k++)
            if (!strstr(mq_last_error(), bad_cases[i].expect[k]))
                fail_msg("case %zu: error '%s' lacks '%s'", i, mq_last_error(),
                         bad_cases[i].expect[k]);
        assert_int_equal(cfg.dtype, MQ_QINT8);
        assert_true(cfg.symmetric);
        assert_int_equal(cfg.n_include, 1);
        assert_string_equal(cfg.include[0], "mine");
        assert_int_equal(cfg.n_exclude, 0);
        assert_string_equal(cfg.device, "host");
        mq_config_free(&cfg);
        free(path);
    }
}

static void test_load_missing_and_unreadable(void **state)
{
    (void)state;
    char *missing = tu_join(tmpdir, "does-not-exist.json");
    mq_config cfg;

    mq_config_init(&cfg);
    assert_int_equal(mq_config_load_json(&cfg, missing), MQ_STATUS_E_CONFIG);
    assert_error_has(missing);
    assert_error_has("No such file");
    /* A directory, and a FIFO, which must not hang the run (the alarm fails
     * the test if it does). */
    assert_int_equal(mq_config_load_json(&cfg, tmpdir), MQ_STATUS_E_CONFIG);
    assert_error_has(tmpdir);
    assert_error_has("is a directory, not a regular file");
    assert_defaults(&cfg);
    char *fifo = tu_join(tmpdir, "fifo.json");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(20);
    assert_int_equal(mq_config_load_json(&cfg, fifo), MQ_STATUS_E_CONFIG);
    alarm(0);
    assert_error_has(fifo);
    assert_error_has("is a FIFO, not a regular file");
    assert_defaults(&cfg);
    unlink(fifo);
    free(fifo);
    assert_int_equal(mq_config_load_json(&cfg, NULL), MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(mq_config_load_json(NULL, missing), MQ_STATUS_E_INVALID_ARG);
    free(missing);
}

/* Each preset sets the scheme fields compressed-tensors' preset of that name
 * means, reads back under its first name, and passes the check. */
static void test_presets(void **state)
{
    (void)state;
    static const struct {
        const char *name, *back;
        mq_qdtype dtype;
        bool sym, weights_only;
        size_t group, block;
    } want[] = {
        {"W8A8", "W8A8", MQ_QINT8, true, false, 0, 0},
        {"int8", "W8A8", MQ_QINT8, true, false, 0, 0},
        {"W8A16", "W8A16", MQ_QINT8, true, true, 128, 0},
        {"W8A16_ASYM", "W8A16_ASYM", MQ_QINT8, false, true, 128, 0},
        {"w4a16", "W4A16", MQ_QINT4, true, true, 128, 0},
        {"W4A16_ASYM", "W4A16_ASYM", MQ_QINT4, false, true, 128, 0},
        {"FP8_DYNAMIC", "FP8_DYNAMIC", MQ_QFP8, true, false, 0, 0},
        {"FP8_BLOCK", "FP8_BLOCK", MQ_QFP8, true, false, 0, 128},
        {"MXFP4A16", "MXFP4A16", MQ_QMXFP4, true, true, 32, 0},
        {"mxfp4", "MXFP4", MQ_QMXFP4, true, false, 32, 0},
        {"MXFP8A16", "MXFP8A16", MQ_QMXFP8, true, true, 32, 0},
        {"MXFP8", "MXFP8", MQ_QMXFP8, true, false, 32, 0},
        {"nvfp4a16", "NVFP4A16", MQ_QNVFP4, true, true, 16, 0},
        {"FP16", "FP16", MQ_FLOAT16, true, false, 0, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        mq_config cfg;
        mq_config_init(&cfg);
        cfg.per_channel = false;
        assert_int_equal(mq_config_set_preset(&cfg, want[i].name), MQ_OK);
        assert_int_equal(cfg.dtype, want[i].dtype);
        assert_int_equal(cfg.symmetric, want[i].sym);
        assert_true(cfg.per_channel);
        assert_int_equal(cfg.weights_only, want[i].weights_only);
        assert_int_equal(cfg.group_size, want[i].group);
        assert_int_equal(cfg.block_size, want[i].block);
        assert_int_equal(mq_config_check(&cfg), MQ_OK);
        assert_string_equal(mq_config_preset(&cfg), want[i].back);
    }
    mq_config cfg;
    mq_config_init(&cfg);
    assert_string_equal(mq_config_preset(&cfg), "W8A8");
    assert_int_equal(mq_config_set_preset(&cfg, "W4A4"), MQ_STATUS_E_CONFIG);
    assert_error_has("W4A4");
    assert_error_has(mq_preset_names());
    assert_int_equal(cfg.dtype, MQ_QINT8); /* unchanged */
    /* NVFP4 (W4A4) needs calibration data for its activations' global
     * scale: refused, naming the preset that needs none. */
    assert_int_equal(mq_config_set_preset(&cfg, "NVFP4"), MQ_STATUS_E_CONFIG);
    assert_error_has("calibration");
    assert_error_has("NVFP4A16");
    assert_int_equal(cfg.dtype, MQ_QINT8);
    /* The old flags are presets too. */
    cfg.weights_only = true;
    assert_string_equal(mq_config_preset(&cfg), "W8A16");
    cfg.symmetric = false;
    assert_string_equal(mq_config_preset(&cfg), "W8A16_ASYM");
    /* Combinations no loader runs are refused, with the reason. */
    static const struct {
        mq_qdtype dtype;
        bool sym, per_channel, weights_only;
        size_t group, block;
        const char *why;
    } bad[] = {
        {MQ_QINT8, true, true, false, 128, 0, "W8A16"},
        {MQ_QINT8, true, true, true, 0, 128, "FP8"},
        {MQ_QINT4, true, false, true, 0, 0, "per-channel"},
        {MQ_QINT4, true, true, true, 100, 0, "multiple of 8"},
        {MQ_QFP8, false, true, false, 0, 0, "symmetric"},
        {MQ_QFP8, true, true, true, 0, 0, "weights only"},
        {MQ_QFP8, true, true, false, 64, 0, "groups"},
        {MQ_QINT8, false, false, true, 128, 0, "per-tensor"},
        {MQ_QNVFP4, true, true, false, 16, 0, "calibration"},
        {MQ_QNVFP4, true, true, true, 32, 0, "groups of 16"},
        {MQ_QNVFP4, false, true, true, 16, 0, "symmetric"},
        {MQ_QNVFP4, true, false, true, 0, 0, "one scale per tensor"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mq_config c;
        mq_config_init(&c);
        c.dtype = bad[i].dtype;
        c.symmetric = bad[i].sym;
        c.per_channel = bad[i].per_channel;
        c.weights_only = bad[i].weights_only;
        c.group_size = bad[i].group;
        c.block_size = bad[i].block;
        assert_int_equal(mq_config_check(&c), MQ_STATUS_E_CONFIG);
        assert_error_has(bad[i].why);
        assert_null(mq_config_preset(&c));
    }
    /* In a file the preset applies first, whatever the key order; the other
     * keys refine it. */
    char *path = write_json("preset.json", "{\"scheme\": \"asym\", \"preset\": \"W4A16\", "
                                           "\"group_size\": 64}");
    mq_config_init(&cfg);
    assert_int_equal(mq_config_load_json(&cfg, path), MQ_OK);
    assert_int_equal(cfg.dtype, MQ_QINT4);
    assert_false(cfg.symmetric);
    assert_int_equal(cfg.group_size, 64);
    assert_string_equal(mq_config_preset(&cfg), "W4A16_ASYM");
    mq_config_free(&cfg);
    free(path);
    path = write_json("channel.json", "{\"preset\": \"W8A16\", \"group_size\": \"channel\"}");
    assert_int_equal(mq_config_load_json(&cfg, path), MQ_OK);
    assert_int_equal(cfg.group_size, 0);
    assert_true(cfg.weights_only);
    mq_config_free(&cfg);
    free(path);
}

/* Configs of every released size: 0.2.0's (up to the observer fields), the
 * observer's (up to observer_patience, padded) and ours (dequant_f32 last).
 * Each is usable; a key whose field the caller's struct lacks is refused,
 * and nothing past struct_size is written. */
static void test_earlier_sizes(void **state)
{
    (void)state;
    const size_t align = _Alignof(mq_config);
    const size_t obs_end = offsetof(mq_config, observer_patience) + sizeof(unsigned);
    const size_t sizes[] = {offsetof(mq_config, observer), (obs_end + align - 1) / align * align,
                            offsetof(mq_config, imatrix), sizeof(mq_config)};
    char *plain = write_json("sized-plain.json", "{\"dtype\": \"fp16\"}");
    char *obs = write_json("sized-obs.json", "{\"observer\": \"minmax\"}");
    char *deq = write_json("sized-deq.json", "{\"dequant_dtype\": \"f32\"}");
    char *imx = write_json("sized-imx.json", "{\"imatrix\": \"m.gguf\"}");
    /* A file that fails after its imatrix key: the caller's path is kept. */
    char *imx_bad = write_json("sized-imx-bad.json", "{\"imatrix\": \"n.gguf\", \"dtype\": 3}");
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        union {
            mq_config c;
            unsigned char b[sizeof(mq_config) + 16];
        } u;
        unsigned char *raw = u.b;
        mq_config *cfg = &u.c;
        memset(raw, 0xa5, sizeof u);
        mq_config_init_sized(cfg, sizes[i]);
        assert_int_equal(cfg->struct_size, sizes[i]);
        assert_int_equal(cfg->dtype, MQ_QINT8);
        assert_int_equal(mq_config_check(cfg), MQ_OK);
        assert_int_equal(mq_config_load_json(cfg, plain), MQ_OK);
        assert_int_equal(cfg->dtype, MQ_FLOAT16);
        bool has_obs = sizes[i] >= obs_end;
        bool has_deq = sizes[i] >= offsetof(mq_config, dequant_f32) + sizeof(bool);
        assert_int_equal(mq_config_load_json(cfg, obs), has_obs ? MQ_OK : MQ_STATUS_E_CONFIG);
        if (!has_obs) assert_error_has("not known to this caller's mq_config");
        assert_int_equal(mq_config_load_json(cfg, deq), has_deq ? MQ_OK : MQ_STATUS_E_CONFIG);
        if (!has_deq) assert_error_has("not known to this caller's mq_config");
        if (has_deq) assert_true(cfg->dequant_f32);
        bool has_imx = sizes[i] >= offsetof(mq_config, imatrix) + sizeof(char *);
        assert_int_equal(mq_config_load_json(cfg, imx), has_imx ? MQ_OK : MQ_STATUS_E_CONFIG);
        assert_int_equal(mq_config_set_imatrix(cfg, "m.gguf"),
                         has_imx ? MQ_OK : MQ_STATUS_E_INVALID_ARG);
        if (has_imx) {
            assert_string_equal(cfg->imatrix, "m.gguf");
            assert_int_equal(mq_config_load_json(cfg, imx_bad), MQ_STATUS_E_CONFIG);
            assert_string_equal(cfg->imatrix, "m.gguf");
            /* The matrix weighs the mse search: min-max refuses it (fp16
             * ignores the observer's settings, this one too). */
            assert_int_equal(mq_config_check(cfg), MQ_OK);
            cfg->dtype = MQ_QINT8;
            assert_int_equal(mq_config_check(cfg), MQ_STATUS_E_CONFIG);
            assert_error_has("imatrix");
            cfg->observer = MQ_OBSERVER_MSE;
            assert_int_equal(mq_config_check(cfg), MQ_OK);
        }
        for (size_t k = sizes[i]; k < sizeof u; k++)
            assert_int_equal(raw[k], 0xa5);
        mq_config_free(cfg);
    }
    free(plain);
    free(obs);
    free(deq);
    free(imx);
    free(imx_bad);
}

/* Every call that takes a config refuses one whose struct_size this library
 * does not know (a header of another version, or no mq_config_init at all),
 * naming both sizes, and touches nothing of it. */
static void test_struct_size_checked(void **state)
{
    (void)state;
    char *path = write_json("size.json", "{\"dtype\": \"fp16\"}");
    const size_t sizes[] = {0, sizeof(size_t), sizeof(mq_config) - 1, sizeof(mq_config) + 8};
    char *report_path = tu_join(tmpdir, "size-report.json");
    mq_model *in = NULL, *out = NULL, *empty = NULL;
    mq_report *rep = NULL;
    mq_config host;
    mq_config_init(&host);
    assert_int_equal(mq_config_set_device(&host, "host"), MQ_OK);
    assert_int_equal(mq_model_new(&in), MQ_OK);
    assert_int_equal(mq_dynamic_quantize_report(in, &host, &empty, NULL, &rep), MQ_OK);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        mq_config cfg;
        mq_config_init(&cfg);
        cfg.struct_size = sizes[i];
        char want[32];
        snprintf(want, sizeof want, "struct_size is %zu", sizes[i]);
#define REFUSED(call)                                                                              \
    do {                                                                                           \
        assert_int_equal((call), MQ_STATUS_E_INVALID_ARG);                                         \
        assert_error_has(want);                                                                    \
    } while (0)
        REFUSED(mq_config_check(&cfg));
        REFUSED(mq_config_set_preset(&cfg, "W4A16"));
        REFUSED(mq_config_add_include(&cfg, "*"));
        REFUSED(mq_config_add_exclude(&cfg, "*"));
        REFUSED(mq_config_set_device(&cfg, "host"));
        REFUSED(mq_config_load_json(&cfg, path));
        REFUSED(mq_dynamic_quantize(in, &cfg, &out, NULL));
        REFUSED(mq_quantize_file(path, "unused.safetensors", &cfg, NULL));
        REFUSED(mq_report_write_json(rep, &cfg, "in", "out", 0, report_path));
        float y = 0, x = 1;
        int8_t q = 1;
        REFUSED(mq_linear_forward(&cfg, &q, &x, NULL, MQ_DTYPE_F32, 1, 1, &x, 1, &y));
#undef REFUSED
        assert_null(out);
        assert_null(mq_config_preset(&cfg));
        assert_int_equal(cfg.dtype, MQ_QINT8);
        assert_null(cfg.include);
        assert_null(cfg.device);
        mq_config_free(&cfg); /* refused too: nothing was allocated, and nothing is freed */
        assert_int_equal(cfg.struct_size, sizes[i]);
    }
    /* A size the library does not know: only struct_size is written, so the
     * first call fails instead of running on uninitialized fields. */
    mq_config cfg;
    memset(&cfg, 0xa5, sizeof cfg);
    mq_config_init_sized(&cfg, sizeof cfg + 16);
    assert_int_equal(cfg.struct_size, sizeof cfg + 16);
    assert_int_not_equal(cfg.dtype, MQ_QINT8);
    assert_int_equal(mq_config_check(&cfg), MQ_STATUS_E_INVALID_ARG);
    char took[32];
    snprintf(took, sizeof took, "of %zu bytes", sizeof cfg);
    assert_error_has(took);
    mq_config_init_sized(&cfg, 1); /* smaller than struct_size itself: nothing written */
    assert_int_equal(cfg.struct_size, sizeof cfg + 16);
    assert_false(tu_exists(report_path));
    assert_int_equal(mq_report_write_json(rep, &host, "in", "out", 0, report_path), MQ_OK);
    assert_true(tu_exists(report_path));
    mq_report_free(rep);
    mq_model_free(empty);
    mq_model_free(in);
    mq_config_free(&host);
    free(report_path);
    free(path);
}

/* The scheme each preset (and a few refinements of one) builds: every field
 * the layers below read instead of the config. */
static void test_scheme_fields(void **state)
{
    (void)state;
    static const struct {
        const char *preset;
        bool per_tensor;
        size_t group; /* a group size set after the preset (0: the preset's) */
        mq_scheme_kind kind;
        unsigned bits, per_word;
        bool sym;
        mq_granularity gran;
        size_t g, b;
        mq_dtype code;
        mq_qformat format;
        mq_act acts;
        const char *label;
    } want[] = {
        {"W8A8", false, 0, MQ_SCHEME_INT8, 8, 0, true, MQ_GRAN_CHANNEL, 0, 0, MQ_DTYPE_I8,
         MQ_FORMAT_INT_QUANTIZED, MQ_ACT_INT8_TOKEN, "int8-sym-channel"},
        {"W8A8", true, 0, MQ_SCHEME_INT8, 8, 0, true, MQ_GRAN_TENSOR, 0, 0, MQ_DTYPE_I8,
         MQ_FORMAT_INT_QUANTIZED, MQ_ACT_INT8_TOKEN, "int8-sym-tensor"},
        {"W8A16", false, 0, MQ_SCHEME_INT8, 8, 4, true, MQ_GRAN_GROUP, 128, 0, MQ_DTYPE_I8,
         MQ_FORMAT_PACK_QUANTIZED, MQ_ACT_NONE, "int8-sym-group128-weights-only"},
        {"W8A16_ASYM", false, 64, MQ_SCHEME_INT8, 8, 4, false, MQ_GRAN_GROUP, 64, 0, MQ_DTYPE_I8,
         MQ_FORMAT_PACK_QUANTIZED, MQ_ACT_NONE, "int8-asym-group64"},
        {"W4A16", false, 0, MQ_SCHEME_INT4, 4, 8, true, MQ_GRAN_GROUP, 128, 0, MQ_DTYPE_I8,
         MQ_FORMAT_PACK_QUANTIZED, MQ_ACT_NONE, "int4-sym-group128"},
        {"W4A16_ASYM", false, 0, MQ_SCHEME_INT4, 4, 8, false, MQ_GRAN_GROUP, 128, 0, MQ_DTYPE_I8,
         MQ_FORMAT_PACK_QUANTIZED, MQ_ACT_NONE, "int4-asym-group128"},
        {"FP8_DYNAMIC", false, 0, MQ_SCHEME_FP8_E4M3, 8, 0, true, MQ_GRAN_CHANNEL, 0, 0,
         MQ_DTYPE_F8_E4M3, MQ_FORMAT_FLOAT_QUANTIZED, MQ_ACT_FP8_TOKEN, "fp8-e4m3-channel"},
        {"FP8_BLOCK", false, 0, MQ_SCHEME_FP8_E4M3, 8, 0, true, MQ_GRAN_BLOCK, 0, 128,
         MQ_DTYPE_F8_E4M3, MQ_FORMAT_FLOAT_QUANTIZED, MQ_ACT_FP8_GROUP_128, "fp8-e4m3-block128"},
        {"MXFP4A16", false, 0, MQ_SCHEME_MXFP4, 4, 0, true, MQ_GRAN_GROUP, 32, 0, MQ_DTYPE_U8,
         MQ_FORMAT_MXFP4_PACK_QUANTIZED, MQ_ACT_NONE, "mxfp4-group32-weights-only"},
        {"MXFP4", false, 0, MQ_SCHEME_MXFP4, 4, 0, true, MQ_GRAN_GROUP, 32, 0, MQ_DTYPE_U8,
         MQ_FORMAT_MXFP4_PACK_QUANTIZED, MQ_ACT_MXFP4_GROUP_32, "mxfp4-group32"},
        {"MXFP8A16", false, 0, MQ_SCHEME_MXFP8, 8, 0, true, MQ_GRAN_GROUP, 32, 0, MQ_DTYPE_F8_E4M3,
         MQ_FORMAT_MXFP8_QUANTIZED, MQ_ACT_NONE, "mxfp8-group32-weights-only"},
        {"MXFP8", false, 0, MQ_SCHEME_MXFP8, 8, 0, true, MQ_GRAN_GROUP, 32, 0, MQ_DTYPE_F8_E4M3,
         MQ_FORMAT_MXFP8_QUANTIZED, MQ_ACT_MXFP8_GROUP_32, "mxfp8-group32"},
        {"NVFP4A16", false, 0, MQ_SCHEME_NVFP4, 4, 0, true, MQ_GRAN_GROUP, 16, 0, MQ_DTYPE_U8,
         MQ_FORMAT_NVFP4_PACK_QUANTIZED, MQ_ACT_NONE, "nvfp4-group16-weights-only"},
        /* The cast has no groups, whatever group_size says. */
        {"FP16", false, 32, MQ_SCHEME_FP16, 16, 0, true, MQ_GRAN_CHANNEL, 0, 0, MQ_DTYPE_F16,
         MQ_FORMAT_NONE, MQ_ACT_NONE, "fp16"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        mq_config cfg;
        mq_scheme s;
        mq_config_init(&cfg);
        assert_int_equal(mq_config_set_preset(&cfg, want[i].preset), MQ_OK);
        if (want[i].per_tensor) cfg.per_channel = false;
        if (want[i].group) cfg.group_size = want[i].group;
        assert_int_equal(mq_scheme_init(&s, &cfg), MQ_OK);
        assert_int_equal(s.target, cfg.dtype);
        assert_int_equal(s.kind, want[i].kind);
        assert_int_equal(mq_scheme_quantizes(&s), want[i].kind != MQ_SCHEME_FP16);
        assert_int_equal(s.bits, want[i].bits);
        assert_int_equal(s.codes_per_word, want[i].per_word);
        assert_int_equal(s.symmetric, want[i].sym);
        assert_int_equal(s.gran, want[i].gran);
        assert_int_equal(s.group, want[i].g);
        assert_int_equal(s.block, want[i].b);
        assert_int_equal(s.code_dtype, want[i].code);
        assert_int_equal(s.format, want[i].format);
        assert_int_equal(s.acts, want[i].acts);
        assert_string_equal(s.label, want[i].label);
        assert_string_equal(s.preset, mq_config_preset(&cfg));
        bool mx = s.kind == MQ_SCHEME_MXFP4 || s.kind == MQ_SCHEME_MXFP8;
        bool nv = s.kind == MQ_SCHEME_NVFP4;
        assert_int_equal(mq_scheme_scale_dtype(&s, MQ_DTYPE_BF16), mx   ? MQ_DTYPE_U8
                                                                   : nv ? MQ_DTYPE_F8_E4M3
                                                                        : MQ_DTYPE_BF16);
        assert_int_equal(s.scale_enc, mx   ? MQ_SCALE_E8M0
                                      : nv ? MQ_SCALE_E4M3_GLOBAL
                                           : MQ_SCALE_LINEAR);
    }
    /* The MX formats are groups of 32, symmetric. */
    {
        mq_config cfg;
        mq_config_init(&cfg);
        assert_int_equal(mq_config_set_preset(&cfg, "MXFP4A16"), MQ_OK);
        cfg.group_size = 64;
        assert_int_equal(mq_config_check(&cfg), MQ_STATUS_E_CONFIG);
        assert_error_has("groups of 32");
        cfg.group_size = 32;
        cfg.symmetric = false;
        assert_int_equal(mq_config_check(&cfg), MQ_STATUS_E_CONFIG);
        assert_error_has("symmetric");
    }
    /* A refused scheme is refused here too, with the public check's reason;
     * the settings borrow the config's strings and copy its other fields. */
    mq_config cfg;
    mq_scheme s;
    mq_settings set;
    mq_config_init(&cfg);
    cfg.dtype = MQ_QFP8;
    cfg.symmetric = false;
    assert_int_equal(mq_scheme_init(&s, &cfg), MQ_STATUS_E_CONFIG);
    assert_error_has("symmetric");
    assert_int_equal(mq_settings_init(&set, &cfg), MQ_STATUS_E_CONFIG);
    mq_config_init(&cfg);
    assert_int_equal(mq_config_add_exclude(&cfg, "lm_head"), MQ_OK);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    cfg.memory_limit = 12345;
    cfg.skip_nonfinite = true;
    assert_int_equal(mq_settings_init(&set, &cfg), MQ_OK);
    assert_int_equal(set.n_exclude, 1);
    assert_ptr_equal(set.exclude[0], cfg.exclude[0]);
    assert_int_equal(set.n_include, 0);
    assert_ptr_equal(set.device.spec, cfg.device);
    assert_int_equal(set.memory_limit, 12345);
    assert_true(set.skip_nonfinite);
    assert_false(set.fp16_saturate);
    assert_string_equal(set.scheme.label, "int8-sym-channel");
    mq_config_free(&cfg);
    assert_int_equal(mq_settings_init(&set, NULL), MQ_OK);
    assert_string_equal(set.scheme.preset, "W8A8");
    assert_null(set.device.spec);
}

/* The one table of target names, in both directions. */
static void test_qdtype_names(void **state)
{
    (void)state;
    const mq_qdtype all[] = {MQ_QINT8,  MQ_FLOAT16, MQ_QINT4, MQ_QFP8,
                             MQ_QMXFP4, MQ_QMXFP8,  MQ_QNVFP4};
    char list[64] = "";
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        const char *name = mq_qdtype_name(all[i]);
        mq_qdtype back = MQ_QINT8;
        assert_non_null(name);
        assert_true(mq_qdtype_parse(name, &back));
        assert_int_equal(back, all[i]);
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", name);
    }
    assert_string_equal(list, mq_qdtype_names());
    assert_string_equal(mq_qdtype_name(MQ_QFP8), "fp8");
    assert_string_equal(mq_qdtype_name(MQ_QMXFP4), "mxfp4");
    assert_string_equal(mq_qdtype_name(MQ_QNVFP4), "nvfp4");
    assert_null(mq_qdtype_name((mq_qdtype)7));
    assert_null(mq_qdtype_name((mq_qdtype)-1));
    mq_qdtype d = MQ_QFP8;
    assert_false(mq_qdtype_parse("INT8", &d));
    assert_false(mq_qdtype_parse("int2", &d));
    assert_false(mq_qdtype_parse(NULL, &d));
    assert_int_equal(d, MQ_QFP8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_add_and_free),
        cmocka_unit_test(test_add_rejects_bad_patterns),
        cmocka_unit_test(test_load_full),
        cmocka_unit_test(test_load_only_overrides_present_keys),
        cmocka_unit_test(test_load_bad_files),
        cmocka_unit_test(test_load_missing_and_unreadable),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_struct_size_checked),
        cmocka_unit_test(test_earlier_sizes),
        cmocka_unit_test(test_scheme_fields),
        cmocka_unit_test(test_qdtype_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
