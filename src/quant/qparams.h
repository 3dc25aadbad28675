/* The scale and zero point of a quantized weight read from a file: checked
 * before anything uses them, so that a NaN or negative scale is an error
 * naming the file and tensor instead of NaN outputs or a perfect verdict. */
#ifndef MQ_QPARAMS_H
#define MQ_QPARAMS_H

#include "monoquant.h"

/*
 * Checks the companions of the I8 weight `w`: the scale `s` is F32, F16 or
 * BF16 with one value per output channel (shape [out, 1] or [out]) or one in
 * all; every value is finite and positive; the zero point `z` (NULL when
 * symmetric) is I8 (so in [-128, 127]) with the scale's shape.
 * MQ_STATUS_E_FORMAT naming `file` (NULL: not shown), the tensor and the rule.
 * *groups gets the number of scale values.
 */
mq_status mq_qparams_check(const char *file, const mq_tensor *w, const mq_tensor *s,
                           const mq_tensor *z, size_t *groups);

#endif
