/* Quantized layouts of other tools, recognised from tensor names so that a
 * checkpoint holding them is refused before any work instead of having its
 * packed integers copied as if they were float weights. */
#ifndef MQ_FOREIGN_H
#define MQ_FOREIGN_H

#include "model.h"

#include <monoquant.h>

#include <stdbool.h>

/* The layout that t belongs to ("AutoGPTQ/AutoAWQ" or "bitsandbytes"),
 * or NULL when t looks like no quantized layout we know of. */
const char *mq_foreign_layout(const mq_model *m, const mq_tensor *t, bool fp8_blocks);

/* An FP8 block source's weight W (F8_E4M3) has its scales in W_scale_inv. */
#define MQ_SCALE_INV_SUFFIX "_scale_inv"
/* The W_scale_inv of an F8_E4M3 weight t, or NULL. */
const mq_tensor *mq_fp8_block_scale(const mq_model *m, const mq_tensor *t);

/* MQ_STATUS_E_FORMAT naming the first tensor of `m` in a foreign layout, the
 * layout and its tell-tale tensor; the caller adds the file. FP8 blocks are
 * foreign unless fp8_blocks (the run reads them: mq_settings.src_block). */
mq_status mq_check_no_foreign(const mq_model *m, bool fp8_blocks);

/* MQ_STATUS_E_FORMAT naming the first gpt-oss MXFP4 expert of `m` (a U8
 * NAME_blocks beside NAME_scales), for a run that does not read them (no
 * config.json saying quant_method "mxfp4"); the caller adds the file. */
mq_status mq_check_no_mxfp4(const mq_model *m);

#endif
