/* The public interface as a whole: the version the library reports agrees
 * with its header and its build, every call that returns a status starts
 * with an empty mq_last_error(), so a success never shows an old message,
 * and threads may share a model and a config as the header says. */
#include "testutil.h"

#include "monoquant.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_version(void **state)
{
    (void)state;
    char built[32];
    snprintf(built, sizeof built, "%d.%d.%d", MQ_VERSION_MAJOR, MQ_VERSION_MINOR, MQ_VERSION_PATCH);
    assert_string_equal(MQ_VERSION_STRING, built);
    assert_string_equal(MQ_VERSION_STRING, MQ_PROJECT_VERSION);
    assert_string_equal(MQ_VERSION, MQ_VERSION_STRING);
    assert_string_equal(mq_version(), MQ_VERSION_STRING);
    assert_int_equal(mq_version_number(), MQ_VERSION_NUMBER);
    assert_int_equal(MQ_VERSION_NUMBER,
                     MQ_VERSION_MAJOR * 10000 + MQ_VERSION_MINOR * 100 + MQ_VERSION_PATCH);
}

/* Leaves a message behind: a failed open. */
static void fail_once(void)
{
    mq_model *m = NULL;
    assert_int_equal(mq_model_open("/nonexistent-mq-dir/x.safetensors", &m), MQ_STATUS_E_IO);
    assert_true(mq_last_error()[0] != '\0');
}

/* `call` (a successful call returning mq_status) after a failure. */
#define CLEARS(call)                                                                               \
    do {                                                                                           \
        fail_once();                                                                               \
        mq_status st_ = (call);                                                                    \
        if (st_ != MQ_OK) fail_msg("%s: %s", #call, mq_last_error());                              \
        if (mq_last_error()[0]) fail_msg("%s succeeded but left \"%s\"", #call, mq_last_error());  \
    } while (0)

/* A 4 x 8 Linear weight and a bias. */
static mq_model *small_model(void)
{
    float w[32], b[4] = {0.5f, -0.5f, 0.25f, 0};
    for (int i = 0; i < 32; i++)
        w[i] = (float)((i * 7) % 11) - 5.0f;
    const int64_t ws[2] = {4, 8}, bs[1] = {4};
    mq_model *m = NULL;
    CLEARS(mq_model_new(&m));
    CLEARS(mq_model_add_tensor(m, "fc.weight", MQ_DTYPE_F32, 2, ws, w));
    CLEARS(mq_model_add_tensor(m, "fc.bias", MQ_DTYPE_F32, 1, bs, b));
    CLEARS(mq_model_set_metadata(m, "format", "pt"));
    return m;
}

static void test_success_clears_error(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp();
    assert_non_null(dir);
    char *in = tu_join(dir, "in.safetensors"), *out = tu_join(dir, "out.safetensors");
    char *deq = tu_join(dir, "deq.safetensors"), *cfg_json = tu_join(dir, "cfg.json");
    char *rep = tu_join(dir, "report.json"), *ev = tu_join(dir, "eval.json");
    static const char json[] = "{\"scheme\": \"sym\"}";
    assert_true(tu_write_file(cfg_json, json, strlen(json)));

    mq_config cfg;
    mq_config_init(&cfg);
    CLEARS(mq_config_add_include(&cfg, "fc.*"));
    CLEARS(mq_config_add_exclude(&cfg, "none"));
    CLEARS(mq_config_set_device(&cfg, "host"));
    CLEARS(mq_config_load_json(&cfg, cfg_json));

    mq_model *m = small_model(), *q = NULL, *q2 = NULL, *d = NULL;
    mq_skip_list *skipped = NULL;
    mq_report *r = NULL, *r2 = NULL;
    CLEARS(mq_model_save(m, in));
    mq_model_free(m);
    CLEARS(mq_model_open(in, &m));
    CLEARS(mq_dynamic_quantize(m, &cfg, &q, &skipped));
    CLEARS(mq_dynamic_quantize_report(m, &cfg, &q2, NULL, &r));
    CLEARS(mq_dequantize(q, &d));
    CLEARS(mq_quantize_file(in, out, &cfg, &r2));
    CLEARS(mq_report_write_json(r2, &cfg, in, out, 0.0, rep));
    CLEARS(mq_remove_stale_temps(out, NULL, NULL));

    mq_eval_options opt;
    mq_eval_options_init(&opt);
    opt.device = "host";
    opt.tokens = 4;
    mq_eval_result *e = NULL;
    CLEARS(mq_eval_files(in, out, &opt, &e));
    assert_int_equal(mq_eval_result_count(e), 1);
    CLEARS(mq_eval_write_json(e, ev));

    const int8_t codes[4] = {1, -2, 3, -4};
    const float scale[2] = {0.5f, 0.25f}, x[2] = {1, 2};
    float y[2];
    CLEARS(mq_linear_forward(&cfg, codes, scale, NULL, MQ_DTYPE_F32, 2, 2, x, 1, y));
    assert_true(y[0] == 0.5f * (1 - 4) && y[1] == 0.25f * (3 - 8));

    /* Calls without a status leave the message, so it can be read after cleaning up. */
    fail_once();
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mq_last_error());
    mq_eval_result_free(e);
    mq_report_free(r);
    mq_report_free(r2);
    mq_skip_list_free(skipped);
    mq_model_free(d);
    mq_model_free(q2);
    mq_model_free(q);
    assert_int_equal(mq_model_count(m), 2);
    mq_model_free(m);
    mq_config_free(&cfg);
    assert_non_null(mq_status_str(MQ_STATUS_E_IO));
    assert_string_equal(mq_last_error(), msg);

    tu_rmtree(dir);
    free(in);
    free(out);
    free(deq);
    free(cfg_json);
    free(rep);
    free(ev);
    free(dir);
}

#define THREADS 4
#define ROUNDS 8

typedef struct {
    const mq_model *in;
    const mq_config *cfg;
    const mq_model *expect;
    bool fail; /* this thread's runs fail (a missing file) instead */
    const char *problem;
    char message[256];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < ROUNDS && !w->problem; i++) {
        if (w->fail) {
            mq_model *m = NULL;
            if (mq_model_open("/nonexistent-mq-dir/thread.safetensors", &m) != MQ_STATUS_E_IO ||
                !strstr(mq_last_error(), "thread.safetensors"))
                w->problem = "failure without its own message";
            continue;
        }
        mq_model *out = NULL;
        mq_report *r = NULL;
        if (mq_dynamic_quantize_report(w->in, w->cfg, &out, NULL, &r) != MQ_OK) {
            snprintf(w->message, sizeof w->message, "%s", mq_last_error());
            w->problem = "quantize failed";
        } else if (mq_last_error()[0]) {
            w->problem = "a success shows another thread's message";
        } else {
            for (size_t t = 0; t < mq_model_count(out); t++) {
                const mq_tensor *a = mq_model_tensor(out, t);
                const mq_tensor *b = mq_model_find(w->expect, a->name);
                if (!b || a->nbytes != b->nbytes || memcmp(a->data, b->data, a->nbytes) != 0)
                    w->problem = "output differs from the single-thread run";
            }
        }
        mq_report_free(r);
        mq_model_free(out);
    }
    return NULL;
}

/* Threads quantize one model with one config at once (sharing the input's
 * tensors with their outputs), while another thread fails: every output is
 * the single-thread one and each thread sees only its own messages. */
static void test_threads_share_model_and_config(void **state)
{
    (void)state;
    mq_config cfg;
    mq_config_init(&cfg);
    assert_int_equal(mq_config_set_device(&cfg, "host"), MQ_OK);
    mq_model *in = small_model(), *expect = NULL;
    assert_int_equal(mq_dynamic_quantize(in, &cfg, &expect, NULL), MQ_OK);

    pthread_t tid[THREADS + 1];
    worker w[THREADS + 1];
    for (int i = 0; i <= THREADS; i++) {
        w[i] = (worker){in, &cfg, expect, i == THREADS, NULL, ""};
        assert_int_equal(pthread_create(&tid[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i <= THREADS; i++) {
        pthread_join(tid[i], NULL);
        if (w[i].problem) fail_msg("thread %d: %s %s", i, w[i].problem, w[i].message);
    }
    mq_model_free(expect);
    mq_model_free(in);
    mq_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_success_clears_error),
        cmocka_unit_test(test_threads_share_model_and_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
