/* Element types: safetensors names, sizes, and overflow-checked shape
 * arithmetic; and the names of the quantization targets. */
#include "dtype.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[MQ_DTYPE_COUNT_] = {
    [MQ_DTYPE_F32] = {"F32", 4},         [MQ_DTYPE_F16] = {"F16", 2},
    [MQ_DTYPE_BF16] = {"BF16", 2},       [MQ_DTYPE_F64] = {"F64", 8},
    [MQ_DTYPE_I8] = {"I8", 1},           [MQ_DTYPE_U8] = {"U8", 1},
    [MQ_DTYPE_I16] = {"I16", 2},         [MQ_DTYPE_U16] = {"U16", 2},
    [MQ_DTYPE_I32] = {"I32", 4},         [MQ_DTYPE_U32] = {"U32", 4},
    [MQ_DTYPE_I64] = {"I64", 8},         [MQ_DTYPE_U64] = {"U64", 8},
    [MQ_DTYPE_BOOL] = {"BOOL", 1},       [MQ_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [MQ_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *mq_dtype_name(mq_dtype d)
{
    if ((unsigned)d >= MQ_DTYPE_COUNT_) return NULL;
    return dtype_info[d].name;
}

size_t mq_dtype_size(mq_dtype d)
{
    if ((unsigned)d >= MQ_DTYPE_COUNT_) return 0;
    return dtype_info[d].size;
}

bool mq_dtype_from_name(const char *name, mq_dtype *out)
{
    for (int d = 0; d < MQ_DTYPE_COUNT_; d++) {
        if (strcmp(name, dtype_info[d].name) == 0) {
            *out = (mq_dtype)d;
            return true;
        }
    }
    return false;
}

/* The one table of target names: the config file, the monoquant program and
 * the Python package all parse and print these. */
static const char *const qdtype_names[] = {
    [MQ_QINT8] = "int8",   [MQ_FLOAT16] = "fp16", [MQ_QINT4] = "int4",   [MQ_QFP8] = "fp8",
    [MQ_QMXFP4] = "mxfp4", [MQ_QMXFP8] = "mxfp8", [MQ_QNVFP4] = "nvfp4",
};
#define N_QDTYPES (sizeof qdtype_names / sizeof *qdtype_names)

const char *mq_qdtype_name(mq_qdtype d)
{
    return (unsigned)d < N_QDTYPES ? qdtype_names[d] : NULL;
}

bool mq_qdtype_parse(const char *name, mq_qdtype *out)
{
    for (size_t i = 0; name && i < N_QDTYPES; i++) {
        if (strcmp(name, qdtype_names[i]) == 0) {
            *out = (mq_qdtype)i;
            return true;
        }
    }
    return false;
}

const char *mq_qdtype_names(void)
{
    return "int8, fp16, int4, fp8, mxfp4, mxfp8, nvfp4";
}

bool mq_dtype_is_quantizable(mq_dtype d)
{
    return d == MQ_DTYPE_F32 || d == MQ_DTYPE_F16 || d == MQ_DTYPE_BF16;
}

bool mq_dtype_is_float(mq_dtype d)
{
    return mq_dtype_is_quantizable(d) || d == MQ_DTYPE_F64 || d == MQ_DTYPE_F8_E4M3 ||
           d == MQ_DTYPE_F8_E5M2;
}

bool mq_shape_numel(int rank, const int64_t *shape, uint64_t *numel)
{
    uint64_t n = 1;
    if (rank < 0 || rank > MQ_MAX_RANK) return false;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) return false;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return false;
    }
    if (n > (uint64_t)INT64_MAX || n > (uint64_t)SIZE_MAX) return false;
    *numel = n;
    return true;
}

bool mq_shape_nbytes(int rank, const int64_t *shape, mq_dtype d, uint64_t *nbytes)
{
    uint64_t n;
    if (mq_dtype_size(d) == 0 || !mq_shape_numel(rank, shape, &n)) return false;
    if (__builtin_mul_overflow(n, (uint64_t)mq_dtype_size(d), nbytes)) return false;
    return *nbytes <= (uint64_t)INT64_MAX && *nbytes <= (uint64_t)SIZE_MAX;
}

void mq_shape_format(int rank, const int64_t *shape, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0) return;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && used < cap; i++)
        used +=
            (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}
