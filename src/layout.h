/* Names of the tensors that quantization adds beside a weight, in the
 * compressed-tensors layout: "<name>_scale" and "<name>_zero_point". Shared
 * by the in-memory and the streaming quantizer so both write the same file. */
#ifndef MQ_LAYOUT_H
#define MQ_LAYOUT_H

#include "monoquant.h"

#define MQ_SCALE_SUFFIX "_scale"
#define MQ_ZP_SUFFIX "_zero_point"

/* name + suffix, malloc'd; NULL when out of memory. */
char *mq_name_with_suffix(const char *name, const char *suffix);
/* MQ_STATUS_E_DATA when `in` already holds a name quantizing `name` would add. */
mq_status mq_check_companion_names(const mq_model *in, const char *name, bool symmetric);

#endif
