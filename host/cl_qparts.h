/* What the quantize files of the OpenCL back end share (cl_qbufs.c,
 * cl_qrows.c, cl_qsplit.c, cl_qblocks.c; cl_quantize.c puts them together
 * under the one retry of cl_retry.c). Each file only calls down: the
 * buffers, the pipeline and these shared steps. */
#ifndef MQ_CL_QPARTS_H
#define MQ_CL_QPARTS_H

#include "cl_state.h"

/* Device buffers (the backend's kept slots, borrowed) and host staging of
 * one quantize call. */
typedef struct {
    cl_mem in, q, scale, zp, bad; /* fused path */
    cl_mem lo, hi, pbad, ps, pzp; /* two-pass path: partials and parameters */
    cl_mem esum, ecl;             /* weight error partials */
    float *hlo, *hhi, *hs, *hes;
    uint8_t *hbad, *hscale; /* hscale: scales and zero points read beside a staged block */
    int8_t *hzp;
    cl_uint *hecl;
} mq_cl_qbufs;

/* ---- cl_qbufs.c ---- */
/* Waits for the queue, then frees the host memory (not hscale: the caller's). */
void mq_cl_qbufs_free(mq_cl_backend *cb, mq_cl_qbufs *w);
mq_status mq_cl_qnomem(void);
/* F32, F16 or BF16, else MQ_STATUS_E_INVALID_ARG naming `what`. */
mq_status mq_cl_check_dtype(mq_dtype dt, const char *what);
/* Room for `parts` weight error partials: four floats (sig, err2, max, k)
 * and a count each; read back; added to *acc in order (after the queue
 * finished). */
mq_status mq_cl_err_buffers(mq_cl_backend *cb, mq_cl_qbufs *w, size_t parts);
mq_status mq_cl_read_err(mq_cl_backend *cb, mq_cl_qbufs *w, size_t parts);
void mq_cl_qbufs_fold(struct mq_err_acc *acc, const mq_cl_qbufs *w, size_t parts);
/* Values per piece of a run that must fit one buffer (a multiple of 8 when possible). */
size_t mq_cl_piece_len(const mq_cl_backend *cb, size_t es);
/* Values one stats work-group reduces (a multiple of 8). */
size_t mq_cl_stats_segment(const mq_cl_backend *cb);
/* Partial min/max of `n` rows of `cols` values already in w->in, read back into w->h*. */
mq_status mq_cl_run_stats(mq_cl_backend *cb, mq_dtype dt, mq_cl_qbufs *w, size_t n, size_t cols);
/* The partials of a row (or run) folded into *s as mq_ref_stats_update would. */
void mq_cl_fold_partials(mq_ref_stats *s, const float *lo, const float *hi, const uint8_t *bad,
                         size_t n);
/* Work-groups of the fixed kernel for n values (the error partials it makes). */
size_t mq_cl_fixed_groups(const mq_cl_backend *cb, size_t n);
/* int8 codes for `n` values in w->in starting at column col0 of the first
 * row, with the parameters already in w->ps / w->pzp; with err, their weight
 * error as well. */
mq_status mq_cl_run_fixed(mq_cl_backend *cb, mq_dtype dt, mq_cl_qbufs *w, size_t n, size_t cols,
                          size_t col0, uint8_t code_xor, int8_t *q, struct mq_err_acc *err);
/* The buffers of the two-pass steps. */
mq_status mq_cl_split_buffers(mq_cl_backend *cb, mq_cl_qbufs *w, size_t in_bytes, size_t q_bytes,
                              size_t partials, size_t params);

/* ---- cl_qrows.c: rows that fit a buffer, every kind, one fused kernel ---- */
mq_status mq_cl_rows_fused(mq_cl_backend *cb, mq_qdesc d, const uint8_t *src, mq_dtype dt,
                           size_t rows, size_t cols, uint8_t *q, uint8_t *scale, int8_t *zp,
                           size_t *bad_row, struct mq_err_acc *err);

/* ---- cl_qsplit.c: two passes on the device ---- */
/* int8 rows of at least MQ_CL_SPLIT_COLS that fit a buffer. */
mq_status mq_cl_quantize_split(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                               size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                               uint8_t code_xor, size_t *bad_row, struct mq_err_acc *err);
/* The statistics of a run of n values folded into *st, in pieces. */
mq_status mq_cl_reduce_once(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                            mq_ref_stats *st);
/* The codes of a run of n values with fixed parameters, in pieces (one byte
 * each, int4 unpacked). */
mq_status mq_cl_values_once(mq_cl_backend *cb, mq_qdesc d, const void *src, mq_dtype dt, size_t n,
                            float scale, int8_t zp, void *q, struct mq_err_acc *err);

/* ---- cl_qblocks.c: FP8 blocks whose band of rows fits a buffer ---- */
mq_status mq_cl_blocks_once(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                            size_t cols, size_t bs, uint8_t *q, uint8_t *scale, size_t *bad_block,
                            struct mq_err_acc *err);

#endif
