/* A program built against an installed libmonoquant (tests/consumer.cmake):
 * quantizes a 2 x 4 Linear weight held in memory, and checks that the
 * installed library refuses a config of a size its header does not declare
 * (as one from another version's header would be). */
#include <monoquant.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    const float w[8] = {1, -2, 3, -4, 0.5f, 0.25f, -1, 2};
    const int64_t shape[2] = {2, 4};
    mq_model *in = NULL, *out = NULL;
    mq_config cfg;
    mq_config_init(&cfg);
    mq_status st = mq_config_set_device(&cfg, "host");
    if (st == MQ_OK) st = mq_model_new(&in);
    if (st == MQ_OK) st = mq_model_add_tensor(in, "fc.weight", MQ_DTYPE_F32, 2, shape, w);
    if (st == MQ_OK) st = mq_dynamic_quantize(in, &cfg, &out, NULL);
    const mq_tensor *q = st == MQ_OK ? mq_model_find(out, "fc.weight") : NULL;
    int ok = q && q->dtype == MQ_DTYPE_I8 && strcmp(mq_version(), MQ_VERSION_STRING) == 0 &&
             cfg.struct_size == sizeof cfg;
    if (ok) {
        /* A copy with another size: nothing of it is freed, it shares cfg's device string. */
        mq_config other = cfg;
        mq_model *never = NULL;
        other.struct_size = sizeof other + 8;
        ok = mq_dynamic_quantize(in, &other, &never, NULL) == MQ_STATUS_E_INVALID_ARG && !never &&
             strstr(mq_last_error(), "struct_size") != NULL;
        if (!ok) fprintf(stderr, "a config of another size was not refused: %s\n", mq_last_error());
    }
    printf("libmonoquant %s: %s\n", mq_version(),
           ok ? "fc.weight is I8, a config of another size is refused" : mq_last_error());
    mq_model_free(out);
    mq_model_free(in);
    mq_config_free(&cfg);
    return ok ? 0 : 1;
}
