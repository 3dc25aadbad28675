/* Replays the fuzz targets' seed corpus and every saved crasher
 * (tests/fuzz/regressions/<target>/) through the same entry points the
 * fuzzers call, in the ordinary build: a broken property aborts the test. The
 * seeds' names say what the parsers must decide: valid_* accepted, bad_*
 * rejected. */
#include "testutil.h"

#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*entry_fn)(const uint8_t *data, size_t size);

/* Runs `fn` over every file of MQ_FUZZ_DIR/<sub>/<target>; check() judges each
 * result by the file's name. Returns the number of files replayed. */
static int replay(const char *sub, const char *target, entry_fn fn,
                  void (*check)(const char *name, int result))
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s/%s", MQ_FUZZ_DIR, sub, target);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "README")) continue;
        char *path = tu_join(dir, e->d_name);
        size_t len = 0;
        unsigned char *data = tu_read_file(path, &len);
        if (!data) fail_msg("cannot read %s", path);
        int r = fn(data, len);
        if (check) check(e->d_name, r);
        free(data);
        free(path);
        n++;
    }
    closedir(d);
    return n;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static void check_safetensors(const char *name, int r)
{
    if (has_prefix(name, "valid_") && r != 1) fail_msg("seed %s was rejected", name);
    if (has_prefix(name, "bad_") && r != 0) fail_msg("seed %s was accepted", name);
}

/* Bit 0: config.json accepted; bit 1: index accepted. Every bad_ seed is a
 * broken index; some are also broken configs. */
static void check_hfjson(const char *name, int r)
{
    if (has_prefix(name, "valid_index") && !(r & 2)) fail_msg("seed %s: index rejected", name);
    if (has_prefix(name, "valid_config") && !(r & 1)) fail_msg("seed %s: config rejected", name);
    if (has_prefix(name, "bad_") && (r & 2)) fail_msg("seed %s: index accepted", name);
    bool bad_config = has_prefix(name, "bad_array") || has_prefix(name, "bad_truncated") ||
                      has_prefix(name, "bad_quantized_config");
    if (bad_config && (r & 1)) fail_msg("seed %s: config accepted", name);
}

static void test_safetensors_corpus(void **state)
{
    (void)state;
    int n = replay("corpus", "fuzz_safetensors", mq_fuzz_safetensors, check_safetensors);
    assert_true(n >= 10);
}

static void test_hfjson_corpus(void **state)
{
    (void)state;
    int n = replay("corpus", "fuzz_hfjson", mq_fuzz_hfjson, check_hfjson);
    assert_true(n >= 8);
}

/* Inputs that once crashed a target: surviving them is the test. */
static void test_regressions(void **state)
{
    (void)state;
    int n = replay("regressions", "fuzz_safetensors", mq_fuzz_safetensors, NULL);
    n += replay("regressions", "fuzz_hfjson", mq_fuzz_hfjson, NULL);
    printf("replayed %d saved crasher(s)\n", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_corpus),
        cmocka_unit_test(test_hfjson_corpus),
        cmocka_unit_test(test_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
