/* The result that mq_eval_files fills (eval.c) and evalresult.c keeps,
 * orders and writes as JSON. */
#ifndef MQ_EVALRESULT_H
#define MQ_EVALRESULT_H

#include "monoquant.h"

/* Rows of X per layer when the options leave it at 0 and there is no inputs file. */
#define MQ_EVAL_DEFAULT_TOKENS 64

struct mq_eval_result {
    mq_eval_layer *layers;
    size_t count, cap;
    char *original, *quantized, *inputs;
    size_t tokens; /* rows of X asked for; 0 = every row of the inputs tensor */
    uint64_t seed;
    char backend[16], platform[256], device[256];
};

mq_status mq_eval_result_new(const char *original, const char *quantized,
                             const mq_eval_options *opt, mq_eval_result **out);
/* Appends a copy of `l` (its name is copied). */
mq_status mq_eval_result_add(mq_eval_result *r, const mq_eval_layer *l);
/* Orders the layers worst first (lowest SQNR, NaN first; ties by name). */
void mq_eval_result_sort(mq_eval_result *r);

#endif
