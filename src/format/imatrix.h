/* llama.cpp's importance matrix: per weight, the mean of the squared inputs
 * each input column saw on calibration text, which the mse observer uses to
 * weigh each column's error (observer.h).
 *
 * Two file layouts, both written by llama.cpp's llama-imatrix:
 *   GGUF (gguf.h): for each weight W (llama.cpp's name, "blk.0.attn_q.weight")
 *     the F32 tensors "W.in_sum2", ne = [n_in, n_mat], the sums over every
 *     token of x_j^2 for input column j (n_mat > 1: one row per expert of a
 *     3-D expert weight, summed over the tokens routed to it), and
 *     "W.counts", ne = [1, n_mat], the number of tokens of each row.
 *     Importance: imp_j = in_sum2_j / count; a row whose count is 0 (an
 *     expert no token reached) has none.
 *   legacy .dat: i32 n_entries, then per entry { i32 name length, the name,
 *     i32 ncall, i32 nval, f32 values[nval] } (nval = n_in x n_mat, the
 *     values being the mean of x_j^2 times ncall), then optionally i32
 *     last call and { i32 length, the calibration file's name }, ignored.
 *     Importance: imp_j = values_j / ncall, as llama-quantize reads it.
 * A row of importances that is all zero (the legacy layout's unreached
 * expert) counts as none. Values must be finite and not negative.
 *
 * The whole matrix is held in memory: n_in floats per weight (and expert),
 * the size of one row of each weight. */
#ifndef MQ_IMATRIX_H
#define MQ_IMATRIX_H

#include "monoquant.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct mq_imatrix mq_imatrix;

/* Reads the file at `path` (GGUF by its magic, else the legacy layout).
 * Every entry's name must be one mq_imatrix_hf_key can produce: the ones that
 * are not are MQ_STATUS_E_FORMAT naming them (a model family whose names we
 * do not map). Errors name the file, the entry and the cause. */
mq_status mq_imatrix_load(const char *path, mq_imatrix **out);
void mq_imatrix_free(mq_imatrix *im);
size_t mq_imatrix_count(const mq_imatrix *im);

/* The importances for the Hugging Face weight `name` whose rows hold `cols`
 * values: *imp points at cols floats, or is NULL when the matrix has no entry
 * for it (or none for its expert). An entry whose size does not fit the
 * weight is MQ_STATUS_E_FORMAT naming both. */
mq_status mq_imatrix_find(const mq_imatrix *im, const char *name, size_t cols, const float **imp);

/* Name mapping (imatrixnames.c). The llama.cpp name of the Hugging Face
 * weight `hf` into key (cap bytes) and its expert index into *expert
 * (SIZE_MAX for a weight that is not one expert of a set); false when the
 * name has none. Covers Llama, Mistral, Mixtral, Qwen2/3 and their MoE
 * variants, Gemma and Phi-3 (see the table there). */
bool mq_imatrix_hf_key(const char *hf, char *key, size_t cap, size_t *expert);
/* Whether llama.cpp's `key` is a name mq_imatrix_hf_key produces. */
bool mq_imatrix_key_known(const char *key);

#endif
