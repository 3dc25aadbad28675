/* Element types: safetensors names, sizes, and overflow-checked shape arithmetic. */
#ifndef MQ_DTYPE_H
#define MQ_DTYPE_H

#include "monoquant.h"

/* Parses a safetensors dtype string; false when unknown. */
bool mq_dtype_from_name(const char *name, mq_dtype *out);
/* F32, F16 or BF16: the dtypes that can be quantized to int8. */
bool mq_dtype_is_quantizable(mq_dtype d);
/* Any floating type (F8 included). */
bool mq_dtype_is_float(mq_dtype d);
/* Product of the dims into *numel; false on a negative dim or overflow of int64/size_t. */
bool mq_shape_numel(int rank, const int64_t *shape, uint64_t *numel);
/* numel * dtype size into *nbytes; false on overflow. */
bool mq_shape_nbytes(int rank, const int64_t *shape, mq_dtype d, uint64_t *nbytes);
/* "[4, 3]" into buf. */
void mq_shape_format(int rank, const int64_t *shape, char *buf, size_t cap);

#endif
