/* Shared by the fuzz targets: the entry points (callable from the regression
 * replay without libFuzzer) and the abort that turns a broken property into a
 * crash the fuzzer records. */
#ifndef MQ_FUZZ_H
#define MQ_FUZZ_H

#include "monoquant.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* 1 when the file image was accepted as a valid safetensors file, else 0. */
int mq_fuzz_safetensors(const uint8_t *data, size_t size);
/* Bit 0: accepted as config.json; bit 1: accepted as the shard index. */
int mq_fuzz_hfjson(const uint8_t *data, size_t size);

#define fuzz_fail(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz property violated: " __VA_ARGS__);                                   \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#endif
