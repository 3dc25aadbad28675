/* Quantized layouts of other tools, recognised from tensor names so that a
 * checkpoint holding them is refused before any work instead of having its
 * packed integers copied as if they were float weights. */
#ifndef MQ_FOREIGN_H
#define MQ_FOREIGN_H

#include "model.h"

#include <monoquant.h>

/* The layout that t belongs to ("AutoGPTQ/AutoAWQ" or "bitsandbytes"),
 * or NULL when t looks like no quantized layout we know of. */
const char *mq_foreign_layout(const mq_model *m, const mq_tensor *t);

/* MQ_STATUS_E_FORMAT naming the first tensor of `m` in a foreign layout, the
 * layout and its tell-tale tensor; the caller adds the file. */
mq_status mq_check_no_foreign(const mq_model *m);

#endif
