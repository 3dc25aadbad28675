/* How much of a model's Linear layers a run quantized, and a warning when a
 * scheme took under half of them: why, and the setting that would fit. */
#ifndef MQ_COVERAGE_H
#define MQ_COVERAGE_H

#include "monoquant.h"
#include "scheme.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    size_t linear;    /* Linear-layer weights in the report (rank 2, not embeddings) */
    size_t quantized; /* of those, quantized */
    size_t ragged;    /* kept in float because groups or blocks do not divide them */
    size_t fit_group; /* largest group size dividing every ragged layer and the scheme's */
    const mq_report_entry *example; /* the first ragged layer */
    const mq_report_entry *other;   /* the first Linear kept in float for another reason */
} mq_coverage;

void mq_coverage_of(const mq_report *r, const mq_scheme *sc, mq_coverage *c);

/* When `sc` (not an fp16 cast) quantized under half of the Linear layers
 * of `r`: why, as a string the caller frees ("preset FP8_BLOCK quantized 0
 * of 30 Linear layers: 30 leave partial 128x128 blocks ...; --preset
 * FP8_DYNAMIC ... fits them"); else NULL (also when out of memory). */
char *mq_coverage_warning(const mq_report *r, const mq_scheme *sc);

#endif
