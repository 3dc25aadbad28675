/* Quality evaluation internals: the forward engine (evalfwd.h) and the
 * result (evalresult.h) that mq_eval_files (eval.c) uses. */
#ifndef MQ_EVAL_H
#define MQ_EVAL_H

#include "evalfwd.h"
#include "evalresult.h"

#endif
