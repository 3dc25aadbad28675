/* quantize_rows on an OpenCL device. Rows are moved in chunks that fit one
 * buffer; ordinary rows take the fused kernel, long rows the split path
 * (partial statistics on the device, parameters on the host with mq_ref_params,
 * then quantization with those parameters), and a row larger than one buffer is
 * streamed through twice in pieces. With an error accumulator the same kernels'
 * _err variants also sum each row's (fused) or work-group's (split) weight
 * error in the pass that quantizes; the host adds the partials in double.
 * The int4 and float8 operations (quantize_rows_k, quantize_values_k,
 * quantize_blocks) are at the end, in the same manner. */
#include "cl_state.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Device buffers (the backend's kept slots, borrowed) and host staging of one
 * quantize_rows call. */
typedef struct {
    cl_mem in, q, scale, zp, bad; /* fused path */
    cl_mem lo, hi, pbad, ps, pzp; /* split path: partials and parameters */
    cl_mem esum, ecl;             /* weight error partials */
    float *hlo, *hhi, *hs, *hes;
    uint8_t *hbad, *hscale; /* hscale: scales and zero points read beside a staged block */
    int8_t *hzp;
    cl_uint *hecl;
} qbufs;

static void qbufs_free(mq_cl_backend *cb, qbufs *w)
{
    clFinish(cb->queue); /* no transfer may still target host memory we return */
    free(w->hlo);
    free(w->hhi);
    free(w->hs);
    free(w->hbad);
    free(w->hzp);
    free(w->hes);
    free(w->hecl); /* hscale: the caller's, after its copy */
}

static mq_status nomem(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL quantize: out of memory");
}

static mq_status check_dtype(mq_dtype dt, const char *what)
{
    if (dt == MQ_DTYPE_F32 || dt == MQ_DTYPE_F16 || dt == MQ_DTYPE_BF16) return MQ_OK;
    return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL %s: dtype %s is not F32/F16/BF16", what,
                        mq_dtype_name(dt) ? mq_dtype_name(dt) : "?");
}

/* ---- weight error partials ---- */

/* Room for `parts` partials: four floats (sig, err2, max, k) and a count each. */
static mq_status err_buffers(mq_cl_backend *cb, qbufs *w, size_t parts)
{
    mq_status st;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_ESUM, parts * 4 * sizeof(float), &w->esum)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ECL, parts * sizeof(cl_uint), &w->ecl)) != MQ_OK)
        return st;
    w->hes = malloc(parts * 4 * sizeof(float));
    w->hecl = malloc(parts * sizeof(cl_uint));
    return w->hes && w->hecl ? MQ_OK : nomem();
}

static mq_status read_err(mq_cl_backend *cb, qbufs *w, size_t parts)
{
    mq_status st = mq_cl_read(cb, w->esum, parts * 4 * sizeof(float), w->hes);
    return st == MQ_OK ? mq_cl_read(cb, w->ecl, parts * sizeof(cl_uint), w->hecl) : st;
}

void mq_cl_fold_err(mq_err_acc *acc, const float *es, const cl_uint *ecl, size_t parts)
{
    for (size_t i = 0; i < parts; i++) {
        const float *e = es + 4 * i;
        double unit = ldexp(1.0, 2 * (int)e[3]);
        acc->sig += (double)e[0] * unit;
        acc->err2 += (double)e[1] * unit;
        if ((double)e[2] > acc->max_abs) acc->max_abs = (double)e[2];
        acc->clamped += ecl[i];
    }
}

/* Partials read back (after the queue finished) into *acc, in order. */
static void fold_err(mq_err_acc *acc, const qbufs *w, size_t parts)
{
    mq_cl_fold_err(acc, w->hes, w->hecl, parts);
}

/* Rows of an overlapped call: at most `rpc` (what one buffer holds), whole
 * rows of about the backend's overlap chunk. */
static size_t overlap_rows(const mq_cl_backend *cb, size_t rpc, size_t row_bytes)
{
    size_t n = cb->overlap_chunk / row_bytes;
    if (n == 0) n = 1;
    return n < rpc ? n : rpc;
}

/* ---- fused path: one kernel per chunk of whole rows ---- */

/* The fused kernel `k` of any kind over chunks of whole rows: arguments 4 and
 * 5 (the scheme's: symmetric and code_xor for int8, kind and symmetric for
 * int4/fp8) differ, the rest are the same. `rb` bytes of codes per row; `zp`
 * NULL when there are no zero points to keep. */
static mq_status rows_fused(mq_cl_backend *cb, cl_kernel k, bool k_err, mq_cl_arg a4, mq_cl_arg a5,
                            const uint8_t *src, mq_dtype dt, size_t rows, size_t cols, size_t rb,
                            uint8_t *q, uint8_t *scale, int8_t *zp, size_t *bad_row,
                            mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt), row_bytes = cols * es;
    /* The per-row buffers (scales, or 16 bytes of error sums) stay within
     * the limit too, which matters for very short rows. */
    size_t max_rows = cb->limit / (k_err ? 4 * sizeof(float) : es);
    size_t rpc = cb->limit / row_bytes;
    if (rpc > max_rows) rpc = max_rows;
    if (rpc > rows) rpc = rows;
    /* Input and codes in zero-copy staging memory: the kernel reads and
     * writes them in place, all rows in one launch. */
    cl_mem in_st = rows <= max_rows ? mq_cl_stage_take(cb, src, rows * row_bytes) : NULL;
    if (in_st) rpc = rows;
    cl_mem q_st = rpc == rows ? mq_cl_stage_take(cb, q, rows * rb) : NULL;
    /* The scales and zero points may lie in the block that holds q (the
     * pipeline's output buffers do), which the host may not write while the
     * device has it: they are read into host memory and copied after. */
    uint8_t *scale_out = scale;
    int8_t *zp_out = zp;
    size_t tpr = mq_cl_threads_per_row(cb, cols);
    size_t rows_per_group = cb->wg / tpr;
    cl_uint tpr_arg = (cl_uint)tpr;
    if (cb->overlap && !in_st && !q_st) {
        mq_cl_rows_job j = {.k = k,
                            .a4 = a4,
                            .a5 = a5,
                            .tpr = tpr,
                            .rows = rows,
                            .cols = cols,
                            .rpc = overlap_rows(cb, rpc, row_bytes),
                            .in_row = row_bytes,
                            .q_row = rb,
                            .scale_row = es,
                            .src = src,
                            .q = q,
                            .scale = scale,
                            .zp = zp};
        return mq_cl_rows_overlapped(cb, &j, bad_row, err);
    }
    qbufs w = {.in = in_st, .q = q_st};
    mq_status st = MQ_OK;
    if ((!in_st && (st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, rpc * row_bytes, &w.in)) != MQ_OK) ||
        (!q_st && (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, rpc * rb, &w.q)) != MQ_OK) ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, rpc * es, &w.scale)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ZP, rpc, &w.zp)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, rpc, &w.bad)) != MQ_OK ||
        (err && (st = err_buffers(cb, &w, rpc)) != MQ_OK))
        goto done;
    if (!(w.hbad = malloc(rpc)) || (q_st && !(w.hscale = malloc(rows * (es + 1))))) {
        st = nomem();
        goto done;
    }
    if (q_st) {
        scale = w.hscale;
        zp = zp ? (int8_t *)w.hscale + rows * es : NULL;
    }
    for (size_t r0 = 0; r0 < rows; r0 += rpc) {
        size_t n = rows - r0 < rpc ? rows - r0 : rpc;
        cl_ulong n_arg = n, cols_arg = cols;
        mq_cl_arg args[] = {MQ_CL_ARG(w.in),
                            MQ_CL_ARG(n_arg),
                            MQ_CL_ARG(cols_arg),
                            MQ_CL_ARG(tpr_arg),
                            a4,
                            a5,
                            MQ_CL_ARG(w.q),
                            MQ_CL_ARG(w.scale),
                            MQ_CL_ARG(w.zp),
                            MQ_CL_ARG(w.bad),
                            MQ_CL_ARG(w.esum),
                            MQ_CL_ARG(w.ecl)};
        size_t groups = (n + rows_per_group - 1) / rows_per_group;
        if ((!in_st &&
             (st = mq_cl_write(cb, w.in, n * row_bytes, src + r0 * row_bytes)) != MQ_OK) ||
            (st = mq_cl_launch(cb, k, args, k_err ? 12 : 10, groups * cb->wg, NULL)) != MQ_OK ||
            (!q_st && (st = mq_cl_read(cb, w.q, n * rb, q + r0 * rb)) != MQ_OK) ||
            (st = mq_cl_read(cb, w.scale, n * es, scale + r0 * es)) != MQ_OK ||
            (zp && (st = mq_cl_read(cb, w.zp, n, zp + r0)) != MQ_OK) ||
            (st = mq_cl_read(cb, w.bad, n, w.hbad)) != MQ_OK ||
            (err && (st = read_err(cb, &w, n)) != MQ_OK) || (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        for (size_t i = 0; i < n; i++) {
            if (w.hbad[i]) {
                *bad_row = r0 + i;
                st = MQ_STATUS_E_DATA;
                goto done;
            }
        }
        if (err) fold_err(err, &w, n);
    }
done:
    qbufs_free(cb, &w); /* waits for the queue */
    mq_status gi = mq_cl_stage_give(cb, in_st), gq = mq_cl_stage_give(cb, q_st);
    if (st == MQ_OK) st = gi != MQ_OK ? gi : gq;
    if (st == MQ_OK && q_st) {
        memcpy(scale_out, w.hscale, rows * es);
        if (zp_out) memcpy(zp_out, w.hscale + rows * es, rows);
    }
    free(w.hscale);
    return st;
}

/* ---- fused path: one kernel per chunk of whole rows ---- */

static mq_status quantize_fused(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                                size_t cols, bool symmetric, int8_t *q, uint8_t *scale, int8_t *zp,
                                uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    cl_int sym_arg = symmetric ? 1 : 0;
    cl_uchar cx_arg = code_xor;
    return rows_fused(cb, err ? cb->fused_err[dt] : cb->fused[dt], err != NULL,
                      (mq_cl_arg)MQ_CL_ARG(sym_arg), (mq_cl_arg)MQ_CL_ARG(cx_arg), src, dt, rows,
                      cols, cols, (uint8_t *)q, scale, symmetric ? NULL : zp, bad_row, err);
}

/* ---- split path ---- */

/* Values per piece of a run that must fit one buffer (a multiple of 8 when possible). */
static size_t piece_len(const mq_cl_backend *cb, size_t es)
{
    size_t piece = cb->limit / es;
    if (piece >= 8) piece -= piece % 8;
    return piece;
}

/* Values one stats work-group reduces (a multiple of 8). */
static size_t stats_segment(const mq_cl_backend *cb)
{
    return cb->wg * 8 * 16;
}

/* Partial min/max of `n` rows of `cols` values already in w->in, read back into w->h*. */
static mq_status run_stats(mq_cl_backend *cb, mq_dtype dt, qbufs *w, size_t n, size_t cols)
{
    size_t seg = stats_segment(cb), spr = (cols + seg - 1) / seg;
    cl_ulong cols_arg = cols, seg_arg = seg;
    cl_uint spr_arg = (cl_uint)spr;
    mq_cl_arg args[] = {MQ_CL_ARG(w->in),   MQ_CL_ARG(cols_arg), MQ_CL_ARG(seg_arg),
                        MQ_CL_ARG(spr_arg), MQ_CL_ARG(w->lo),    MQ_CL_ARG(w->hi),
                        MQ_CL_ARG(w->pbad)};
    mq_status st;
    if ((st = mq_cl_launch(cb, cb->stats[dt], args, 7, n * spr * cb->wg, NULL)) != MQ_OK ||
        (st = mq_cl_read(cb, w->lo, n * spr * sizeof(float), w->hlo)) != MQ_OK ||
        (st = mq_cl_read(cb, w->hi, n * spr * sizeof(float), w->hhi)) != MQ_OK ||
        (st = mq_cl_read(cb, w->pbad, n * spr, w->hbad)) != MQ_OK)
        return st;
    return mq_cl_finish(cb);
}

/* Partials hold the min and max of their finite values (+inf/-inf when none), as
 * mq_ref_stats does; max |w| over [lo, hi] is max(|lo|, |hi|). */
static void fold_partials(mq_ref_stats *s, const float *lo, const float *hi, const uint8_t *bad,
                          size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s->nonfinite = s->nonfinite || bad[i];
        if (!(lo[i] <= hi[i])) continue; /* no finite value in this segment */
        s->lo = fminf(s->lo, lo[i]);
        s->hi = fmaxf(s->hi, hi[i]);
        s->amax = fmaxf(s->amax, fmaxf(fabsf(lo[i]), fabsf(hi[i])));
    }
}

/* Work-groups of the fixed kernel for n values (the error partials it makes). */
static size_t fixed_groups(const mq_cl_backend *cb, size_t n)
{
    return ((n + 7) / 8 + cb->wg - 1) / cb->wg;
}

/* q for `n` values in w->in starting at column col0 of the first row, with the
 * parameters already in w->ps / w->pzp; with err, their weight error as well. */
static mq_status run_fixed(mq_cl_backend *cb, mq_dtype dt, qbufs *w, size_t n, size_t cols,
                           size_t col0, uint8_t code_xor, int8_t *q, mq_err_acc *err)
{
    cl_ulong n_arg = n, cols_arg = cols, col0_arg = col0;
    cl_uchar cx_arg = code_xor;
    mq_cl_arg args[] = {MQ_CL_ARG(w->in),    MQ_CL_ARG(n_arg), MQ_CL_ARG(cols_arg),
                        MQ_CL_ARG(col0_arg), MQ_CL_ARG(w->ps), MQ_CL_ARG(w->pzp),
                        MQ_CL_ARG(cx_arg),   MQ_CL_ARG(w->q),  MQ_CL_ARG(w->esum),
                        MQ_CL_ARG(w->ecl)};
    size_t groups = fixed_groups(cb, n);
    mq_status st;
    if ((st = mq_cl_launch(cb, err ? cb->fixed_err[dt] : cb->fixed[dt], args, err ? 10 : 8,
                           (n + 7) / 8, NULL)) != MQ_OK ||
        (st = mq_cl_read(cb, w->q, n, q)) != MQ_OK ||
        (err && (st = read_err(cb, w, groups)) != MQ_OK) || (st = mq_cl_finish(cb)) != MQ_OK)
        return st;
    if (err) fold_err(err, w, groups);
    return MQ_OK;
}

static mq_status split_buffers(mq_cl_backend *cb, qbufs *w, size_t in_bytes, size_t q_bytes,
                               size_t partials, size_t params)
{
    mq_status st;
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, in_bytes, &w->in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, q_bytes, &w->q)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_LO, partials * sizeof(float), &w->lo)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_HI, partials * sizeof(float), &w->hi)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, partials, &w->pbad)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, params * sizeof(float), &w->ps)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_ZP, params, &w->pzp)) != MQ_OK)
        return st;
    w->hlo = malloc(partials * sizeof(float));
    w->hhi = malloc(partials * sizeof(float));
    w->hbad = malloc(partials);
    w->hs = malloc(params * sizeof(float));
    w->hzp = malloc(params);
    if (!w->hlo || !w->hhi || !w->hbad || !w->hs || !w->hzp) return nomem();
    return MQ_OK;
}

/* Long rows that still fit a buffer: chunks of whole rows, two kernels each. */
static mq_status quantize_split(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                                size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt), row_bytes = cols * es;
    size_t seg = stats_segment(cb), spr = (cols + seg - 1) / seg;
    size_t rpc = cb->limit / row_bytes;
    if (rpc > rows) rpc = rows;
    qbufs w = {0};
    mq_status st = split_buffers(cb, &w, rpc * row_bytes, rpc * cols, rpc * spr, rpc);
    if (st == MQ_OK && err) st = err_buffers(cb, &w, fixed_groups(cb, rpc * cols));
    for (size_t r0 = 0; st == MQ_OK && r0 < rows; r0 += rpc) {
        size_t n = rows - r0 < rpc ? rows - r0 : rpc;
        if ((st = mq_cl_write(cb, w.in, n * row_bytes, src + r0 * row_bytes)) != MQ_OK ||
            (st = run_stats(cb, dt, &w, n, cols)) != MQ_OK)
            break;
        for (size_t i = 0; i < n; i++) {
            mq_ref_stats s;
            mq_ref_stats_init(&s);
            fold_partials(&s, w.hlo + i * spr, w.hhi + i * spr, w.hbad + i * spr, spr);
            if (s.nonfinite) {
                *bad_row = r0 + i;
                st = MQ_STATUS_E_DATA;
                goto done;
            }
            mq_ref_params(mq_qd(MQ_QK_INT8, symmetric), &s, dt, &w.hs[i], &w.hzp[i]);
            if (symmetric) w.hzp[i] = 0;
            mq_store_scale(scale, dt, r0 + i, w.hs[i]);
            if (!symmetric && zp) zp[r0 + i] = w.hzp[i];
        }
        if ((st = mq_cl_write(cb, w.ps, n * sizeof(float), w.hs)) != MQ_OK ||
            (st = mq_cl_write(cb, w.pzp, n, w.hzp)) != MQ_OK)
            break;
        st = run_fixed(cb, dt, &w, n * cols, cols, 0, code_xor, q + r0 * cols, err);
    }
done:
    qbufs_free(cb, &w);
    return st;
}

static mq_status reduce_once(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                             mq_ref_stats *st);
static mq_status quantize_values_once(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                      float scale, int8_t zp, uint8_t code_xor, int8_t *q,
                                      mq_err_acc *err);

/* Rows larger than one buffer: each row takes the two steps the streaming
 * quantizer takes for a row larger than its slots, each in pieces of a
 * buffer: its statistics, then its codes with the parameters they give. */
static mq_status quantize_pieces(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                                 size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                 uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = src + r * cols * es;
        mq_ref_stats s;
        float sc;
        int8_t z;
        mq_ref_stats_init(&s);
        mq_status st = reduce_once(&cb->base, row, dt, cols, &s);
        if (st != MQ_OK) return st;
        if (s.nonfinite) {
            *bad_row = r;
            return MQ_STATUS_E_DATA;
        }
        mq_ref_params(mq_qd(MQ_QK_INT8, symmetric), &s, dt, &sc, &z);
        mq_store_scale(scale, dt, r, sc);
        if (!symmetric && zp) zp[r] = z;
        st = quantize_values_once(&cb->base, row, dt, cols, sc, z, code_xor, q + r * cols, err);
        if (st != MQ_OK) return st;
    }
    return MQ_OK;
}

static mq_status quantize_rows_once(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                    size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                    uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    mq_status st0 = check_dtype(dt, "quantize");
    if (st0 != MQ_OK) return st0;
    size_t es = mq_dtype_size(dt);
    if ((st0 = mq_cl_check_rows("quantize", rows, cols, es)) != MQ_OK) return st0;
    size_t ignored_bad;
    if (!bad_row) bad_row = &ignored_bad;
    if (rows == 0) return MQ_OK;
    if (cols == 0) /* nothing for a device to do: every row gets the empty-row parameters */
        return mq_ref_quantize(mq_qd(MQ_QK_INT8, symmetric), src, dt, rows, cols, q, scale, zp,
                               bad_row);
    if (cols * es > cb->limit)
        return quantize_pieces(cb, src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row,
                               err);
    if (cols >= MQ_CL_SPLIT_COLS)
        return quantize_split(cb, src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row,
                              err);
    return quantize_fused(cb, src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row, err);
}

/* A device out of memory gets the same work again in smaller chunks; each
 * attempt writes every output from scratch and sums its own error, which
 * counts only when the attempt succeeds. */
static mq_status quantize_rows_int8(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                    size_t cols, bool symmetric, int8_t *q, void *scale, int8_t *zp,
                                    uint8_t code_xor, size_t *bad_row, mq_err_acc *err)
{
    mq_status st;
    mq_err_acc part;
    do {
        mq_cl_clear_code();
        mq_err_acc_init(&part);
        st = quantize_rows_once(b, src, dt, rows, cols, symmetric, q, scale, zp, code_xor, bad_row,
                                err ? &part : NULL);
    } while (mq_cl_retry_smaller((mq_cl_backend *)b, st, rows * cols * mq_dtype_size(dt),
                                 cols * mq_dtype_size(dt)));
    if (st == MQ_OK && err) mq_err_acc_add(err, &part);
    return st;
}

/* ---- streaming steps: one long run of values at a time ---- */

static mq_status reduce_once(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                             mq_ref_stats *st)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    mq_status s0 = check_dtype(dt, "reduce");
    if (s0 != MQ_OK || n == 0) return s0;
    size_t es = mq_dtype_size(dt), piece = piece_len(cb, es), seg = stats_segment(cb);
    if (piece == 0 || n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL reduce: %zu values do not fit", n);
    size_t spr = ((piece < n ? piece : n) + seg - 1) / seg;
    qbufs w = {0};
    mq_status st2 = split_buffers(cb, &w, (piece < n ? piece : n) * es, 1, spr, 1);
    const uint8_t *p = src;
    for (size_t c0 = 0; st2 == MQ_OK && c0 < n; c0 += piece) {
        size_t m = n - c0 < piece ? n - c0 : piece;
        if ((st2 = mq_cl_write(cb, w.in, m * es, p + c0 * es)) != MQ_OK ||
            (st2 = run_stats(cb, dt, &w, 1, m)) != MQ_OK)
            break;
        fold_partials(st, w.hlo, w.hhi, w.hbad, (m + seg - 1) / seg);
    }
    qbufs_free(cb, &w);
    return st2;
}

static mq_status quantize_values_once(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                      float scale, int8_t zp, uint8_t code_xor, int8_t *q,
                                      mq_err_acc *err)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    mq_status st = check_dtype(dt, "quantize");
    if (st != MQ_OK || n == 0) return st;
    size_t es = mq_dtype_size(dt), piece = piece_len(cb, es);
    if (piece == 0 || n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize: %zu values do not fit", n);
    size_t first = piece < n ? piece : n;
    qbufs w = {0};
    st = split_buffers(cb, &w, first * es, first, 1, 1);
    if (st == MQ_OK && err) st = err_buffers(cb, &w, fixed_groups(cb, first));
    if (st == MQ_OK) {
        w.hs[0] = scale;
        w.hzp[0] = zp;
        if ((st = mq_cl_write(cb, w.ps, sizeof(float), w.hs)) == MQ_OK)
            st = mq_cl_write(cb, w.pzp, 1, w.hzp);
    }
    const uint8_t *p = src;
    for (size_t c0 = 0; st == MQ_OK && c0 < n; c0 += piece) {
        size_t m = n - c0 < piece ? n - c0 : piece;
        if ((st = mq_cl_write(cb, w.in, m * es, p + c0 * es)) == MQ_OK)
            st = run_fixed(cb, dt, &w, m, n, c0, code_xor, q + c0, err);
    }
    qbufs_free(cb, &w);
    return st;
}

/* Folding a value twice changes no statistic (min, max, max |w|, a flag), so a
 * retry may fold what a failed attempt already folded. */
mq_status mq_cl_reduce(mq_backend *b, const void *src, mq_dtype dt, size_t n, mq_ref_stats *st)
{
    mq_status s;
    do {
        mq_cl_clear_code();
        s = reduce_once(b, src, dt, n, st);
    } while (mq_cl_retry_smaller((mq_cl_backend *)b, s, n * mq_dtype_size(dt), 0));
    return s;
}

static mq_status quantize_values_int8(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                      float scale, int8_t zp, bool symmetric, uint8_t code_xor,
                                      int8_t *q, mq_err_acc *err)
{
    /* The zero point decides alone: a symmetric call passes 0, which subtracts nothing. */
    (void)symmetric;
    mq_status st;
    mq_err_acc part;
    do {
        mq_cl_clear_code();
        mq_err_acc_init(&part);
        st = quantize_values_once(b, src, dt, n, scale, zp, code_xor, q, err ? &part : NULL);
    } while (mq_cl_retry_smaller((mq_cl_backend *)b, st, n * mq_dtype_size(dt), 0));
    if (st == MQ_OK && err) mq_err_acc_add(err, &part);
    return st;
}

/* ---- int4 and float8 e4m3 ----
 * Rows that fit a buffer take the fused kind kernel (statistics, parameters,
 * codes and the int4 packing on the device); longer rows take the statistics
 * kernel in pieces, the parameters on the host, then the values kernel in
 * pieces (multiples of 8 values, so every piece starts on a packed word).
 * 2-D blocks go a band of block rows at a time; a band wider than a buffer
 * in slabs of whole blocks, copied as rectangles; a block larger than a
 * buffer row segment by row segment. */

static mq_status check_kind(mq_qkind kind)
{
    if (kind == MQ_QK_INT4 || kind == MQ_QK_FP8) return MQ_OK;
    return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize: code kind %d is not int4/fp8",
                        (int)kind);
}

static cl_int kind_arg(mq_qkind kind)
{
    return kind == MQ_QK_INT4 ? 1 : 2; /* MQ_QK_INT4 / MQ_QK_FP8 in numerics.cl */
}

/* n values with fixed parameters, in pieces of a buffer: one code byte each
 * into q, or with pack (INT4) packed words, the last one padded. */
static mq_status values_k_once(mq_cl_backend *cb, const void *src, mq_dtype dt, size_t n,
                               mq_qkind kind, bool pack, float scale, int8_t zp, uint8_t *q,
                               mq_err_acc *err)
{
    mq_status st = check_dtype(dt, "quantize");
    if (st != MQ_OK || n == 0) return st;
    size_t es = mq_dtype_size(dt), piece = piece_len(cb, es);
    if (piece < 8 || n > SIZE_MAX / es)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize: %zu values do not fit", n);
    size_t first = piece < n ? piece : n;
    qbufs w = {0};
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, first * es, &w.in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, (first + 7) / 8 * 8, &w.q)) != MQ_OK ||
        (err && (st = err_buffers(cb, &w, fixed_groups(cb, first))) != MQ_OK))
        goto done;
    cl_int kind_a = kind_arg(kind), pack_a = pack ? 1 : 0;
    cl_float s_a = scale, z_a = (float)zp;
    const uint8_t *p = src;
    for (size_t c0 = 0; c0 < n; c0 += piece) {
        size_t m = n - c0 < piece ? n - c0 : piece, groups = fixed_groups(cb, m);
        size_t out = pack ? (m + 7) / 8 * 4 : m;
        cl_ulong m_a = m;
        mq_cl_arg args[] = {MQ_CL_ARG(w.in),   MQ_CL_ARG(m_a),    MQ_CL_ARG(kind_a),
                            MQ_CL_ARG(pack_a), MQ_CL_ARG(s_a),    MQ_CL_ARG(z_a),
                            MQ_CL_ARG(w.q),    MQ_CL_ARG(w.esum), MQ_CL_ARG(w.ecl)};
        cl_kernel k = err ? cb->values_k_err[dt] : cb->values_k[dt];
        if ((st = mq_cl_write(cb, w.in, m * es, p + c0 * es)) != MQ_OK ||
            (st = mq_cl_launch(cb, k, args, err ? 9 : 7, (m + 7) / 8, NULL)) != MQ_OK ||
            (st = mq_cl_read(cb, w.q, out, q + (pack ? c0 / 2 : c0))) != MQ_OK ||
            (err && (st = read_err(cb, &w, groups)) != MQ_OK) || (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        if (err) fold_err(err, &w, groups);
    }
done:
    qbufs_free(cb, &w);
    return st;
}

/* Rows longer than the fused kernel takes: statistics, parameters, codes. */
static mq_status rows_k_long(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                             size_t cols, mq_qkind kind, bool symmetric, uint8_t *q, void *scale,
                             int8_t *zp, size_t *bad_row, mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt), rb = mq_qkind_row_bytes(kind, cols);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = src + r * cols * es;
        mq_ref_stats s;
        float sc;
        int8_t z;
        mq_ref_stats_init(&s);
        mq_status st = reduce_once(&cb->base, row, dt, cols, &s);
        if (st != MQ_OK) return st;
        if (s.nonfinite) {
            *bad_row = r;
            return MQ_STATUS_E_DATA;
        }
        mq_ref_params(mq_qd(kind, symmetric), &s, dt, &sc, &z);
        mq_store_scale(scale, dt, r, sc);
        if (!symmetric && zp && kind == MQ_QK_INT4) zp[r] = z;
        st = values_k_once(cb, row, dt, cols, kind, kind == MQ_QK_INT4, sc, z, q + r * rb, err);
        if (st != MQ_OK) return st;
    }
    return MQ_OK;
}

static mq_status rows_k_fused(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                              size_t cols, mq_qkind kind, bool symmetric, uint8_t *q,
                              uint8_t *scale, int8_t *zp, size_t *bad_row, mq_err_acc *err)
{
    cl_int kind_a = kind_arg(kind), sym_a = symmetric ? 1 : 0;
    bool want_zp = !symmetric && zp && kind == MQ_QK_INT4;
    return rows_fused(cb, err ? cb->rows_k_err[dt] : cb->rows_k[dt], err != NULL,
                      (mq_cl_arg)MQ_CL_ARG(kind_a), (mq_cl_arg)MQ_CL_ARG(sym_a), src, dt, rows,
                      cols, mq_qkind_row_bytes(kind, cols), q, scale, want_zp ? zp : NULL, bad_row,
                      err);
}

static mq_status rows_k_once(mq_cl_backend *cb, const void *src, mq_dtype dt, size_t rows,
                             size_t cols, mq_qkind kind, bool symmetric, void *q, void *scale,
                             int8_t *zp, size_t *bad_row, mq_err_acc *err)
{
    mq_status st = check_dtype(dt, "quantize");
    size_t es = mq_dtype_size(dt);
    if (st == MQ_OK) st = check_kind(kind);
    if (st == MQ_OK) st = mq_cl_check_rows("quantize", rows, cols, es);
    if (st != MQ_OK) return st;
    if (rows == 0) return MQ_OK;
    if (cols == 0) /* nothing for a device to do: every row gets the empty-row parameters */
        return mq_ref_quantize(mq_qd(kind, symmetric), src, dt, rows, cols, q, scale, zp, bad_row);
    if (cols * es > cb->limit || cols >= MQ_CL_SPLIT_COLS)
        return rows_k_long(cb, src, dt, rows, cols, kind, symmetric, q, scale, zp, bad_row, err);
    return rows_k_fused(cb, src, dt, rows, cols, kind, symmetric, q, scale, zp, bad_row, err);
}

static mq_status quantize_rows_k(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                 size_t cols, mq_qkind kind, bool symmetric, void *q, void *scale,
                                 int8_t *zp, size_t *bad_row, mq_err_acc *err)
{
    if (kind == MQ_QK_INT8)
        return quantize_rows_int8(b, src, dt, rows, cols, symmetric, q, scale, zp, 0, bad_row, err);
    mq_status st;
    mq_err_acc part;
    size_t ignored_bad;
    if (!bad_row) bad_row = &ignored_bad;
    do {
        mq_cl_clear_code();
        mq_err_acc_init(&part);
        st = rows_k_once((mq_cl_backend *)b, src, dt, rows, cols, kind, symmetric, q, scale, zp,
                         bad_row, err ? &part : NULL);
    } while (mq_cl_retry_smaller((mq_cl_backend *)b, st, rows * cols * mq_dtype_size(dt),
                                 cols * mq_dtype_size(dt)));
    if (st == MQ_OK && err) mq_err_acc_add(err, &part);
    return st;
}

static mq_status quantize_values_k(mq_backend *b, const void *src, mq_dtype dt, size_t n,
                                   mq_qkind kind, float scale, int8_t zp, bool symmetric,
                                   uint8_t *q, mq_err_acc *err)
{
    /* The zero point decides alone: a symmetric call passes 0. */
    (void)symmetric;
    mq_status st = check_kind(kind);
    mq_err_acc part;
    if (st != MQ_OK) return st;
    do {
        mq_cl_clear_code();
        mq_err_acc_init(&part);
        st = values_k_once((mq_cl_backend *)b, src, dt, n, kind, false, scale, zp, q,
                           err ? &part : NULL);
    } while (mq_cl_retry_smaller((mq_cl_backend *)b, st, n * mq_dtype_size(dt), 0));
    if (st == MQ_OK && err) mq_err_acc_add(err, &part);
    return st;
}

/* Blocks larger than a buffer: each block's row segments through the
 * statistics kernel, then through the values kernel. */
static mq_status blocks_pieces(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                               size_t cols, size_t bs, uint8_t *q, void *scale, size_t *bad_block,
                               mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt), nbr = (rows + bs - 1) / bs, nbc = (cols + bs - 1) / bs;
    for (size_t bi = 0; bi < nbr; bi++)
        for (size_t bj = 0; bj < nbc; bj++) {
            size_t r0 = bi * bs, r1 = r0 + bs < rows ? r0 + bs : rows;
            size_t c0 = bj * bs, nc = cols - c0 < bs ? cols - c0 : bs;
            mq_ref_stats s;
            float sc;
            int8_t z;
            mq_status st;
            mq_ref_stats_init(&s);
            for (size_t r = r0; r < r1; r++)
                if ((st = reduce_once(&cb->base, src + (r * cols + c0) * es, dt, nc, &s)) != MQ_OK)
                    return st;
            if (s.nonfinite) {
                *bad_block = bi * nbc + bj;
                return MQ_STATUS_E_DATA;
            }
            mq_ref_params(mq_qd(MQ_QK_FP8, true), &s, dt, &sc, &z);
            mq_store_scale(scale, dt, bi * nbc + bj, sc);
            for (size_t r = r0; r < r1; r++)
                if ((st = values_k_once(cb, src + (r * cols + c0) * es, dt, nc, MQ_QK_FP8, false,
                                        sc, 0, q + r * cols + c0, err)) != MQ_OK)
                    return st;
        }
    return MQ_OK;
}

/* A rectangle of nr rows x `width` bytes between host memory (rows `pitch`
 * bytes apart, starting at byte x of row y) and a buffer that holds it densely. */
static mq_status rect(mq_cl_backend *cb, bool write, cl_mem buf, uint8_t *host, size_t pitch,
                      size_t x, size_t y, size_t width, size_t nr)
{
    size_t bo[3] = {0, 0, 0}, ho[3] = {x, y, 0}, region[3] = {width, nr, 1};
    cl_int e = write ? clEnqueueWriteBufferRect(cb->queue, buf, CL_FALSE, bo, ho, region, width, 0,
                                                pitch, 0, host, 0, NULL, NULL)
                     : clEnqueueReadBufferRect(cb->queue, buf, CL_FALSE, bo, ho, region, width, 0,
                                               pitch, 0, host, 0, NULL, NULL);
    if (e == CL_SUCCESS) return MQ_OK;
    return mq_cl_fail(e, write ? "clEnqueueWriteBufferRect" : "clEnqueueReadBufferRect");
}

static mq_status blocks_once(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                             size_t cols, size_t bs, uint8_t *q, uint8_t *scale, size_t *bad_block,
                             mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt);
    mq_status st = check_dtype(dt, "quantize blocks");
    if (st == MQ_OK && (bs == 0 || bs > UINT32_MAX))
        st = mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize blocks: block size %zu", bs);
    if (st == MQ_OK) st = mq_cl_check_rows("quantize blocks", rows, cols, es);
    if (st != MQ_OK || rows == 0 || cols == 0) return st;
    if (bs > cb->limit / es / bs) /* a block larger than a buffer */
        return blocks_pieces(cb, src, dt, rows, cols, bs, q, scale, bad_block, err);
    size_t nbr = (rows + bs - 1) / bs, nbc = (cols + bs - 1) / bs;
    /* Slab width: every column when a band fits, else as many whole blocks as do. */
    size_t width = cols, bands = 1;
    if (cols > cb->limit / es / bs)
        width = cb->limit / es / bs / bs * bs;
    else
        bands = cb->limit / (cols * es * bs);
    if (bands > nbr) bands = nbr;
    size_t wbc = (width + bs - 1) / bs, chunk_blocks = bands * wbc;
    cl_uint bs_a = (cl_uint)bs;
    qbufs w = {0};
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, bands * bs * width * es, &w.in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, bands * bs * width, &w.q)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, chunk_blocks * es, &w.scale)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, chunk_blocks, &w.bad)) != MQ_OK ||
        (err && (st = err_buffers(cb, &w, chunk_blocks)) != MQ_OK))
        goto done;
    if (!(w.hbad = malloc(chunk_blocks)) || !(w.hscale = malloc(chunk_blocks * es))) {
        st = nomem();
        goto done;
    }
    for (size_t b0 = 0; b0 < nbr; b0 += bands) {
        size_t r0 = b0 * bs, r1 = (b0 + bands) * bs < rows ? (b0 + bands) * bs : rows;
        size_t nr = r1 - r0, cbr = (nr + bs - 1) / bs;
        for (size_t c0 = 0; c0 < cols; c0 += width) {
            size_t nc = cols - c0 < width ? cols - c0 : width, cbc = (nc + bs - 1) / bs;
            size_t blocks = cbr * cbc;
            cl_ulong nr_a = nr, nc_a = nc, ld_a = nc, nbc_a = cbc;
            mq_cl_arg args[] = {MQ_CL_ARG(w.in),   MQ_CL_ARG(nr_a),    MQ_CL_ARG(nc_a),
                                MQ_CL_ARG(ld_a),   MQ_CL_ARG(bs_a),    MQ_CL_ARG(nbc_a),
                                MQ_CL_ARG(w.q),    MQ_CL_ARG(w.scale), MQ_CL_ARG(w.bad),
                                MQ_CL_ARG(w.esum), MQ_CL_ARG(w.ecl)};
            cl_kernel k = err ? cb->blocks_err[dt] : cb->blocks[dt];
            bool dense = nc == cols;
            if ((st = dense ? mq_cl_write(cb, w.in, nr * cols * es, src + r0 * cols * es)
                            : rect(cb, true, w.in, (uint8_t *)src, cols * es, c0 * es, r0, nc * es,
                                   nr)) != MQ_OK ||
                (st = mq_cl_launch(cb, k, args, err ? 11 : 9, blocks * cb->wg, NULL)) != MQ_OK ||
                (st = dense ? mq_cl_read(cb, w.q, nr * cols, q + r0 * cols)
                            : rect(cb, false, w.q, q, cols, c0, r0, nc, nr)) != MQ_OK ||
                (st = mq_cl_read(cb, w.scale, blocks * es, w.hscale)) != MQ_OK ||
                (st = mq_cl_read(cb, w.bad, blocks, w.hbad)) != MQ_OK ||
                (err && (st = read_err(cb, &w, blocks)) != MQ_OK) ||
                (st = mq_cl_finish(cb)) != MQ_OK)
                goto done;
            /* Flags in block order: a chunk is whole bands, or one band. */
            for (size_t i = 0; i < blocks; i++) {
                if (w.hbad[i]) {
                    *bad_block = (b0 + i / cbc) * nbc + c0 / bs + i % cbc;
                    st = MQ_STATUS_E_DATA;
                    goto done;
                }
            }
            for (size_t i = 0; i < cbr; i++)
                memcpy(scale + ((b0 + i) * nbc + c0 / bs) * es, w.hscale + i * cbc * es, cbc * es);
            if (err) fold_err(err, &w, blocks);
        }
    }
done:
    qbufs_free(cb, &w);
    free(w.hscale);
    return st;
}

static mq_status quantize_blocks(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                 size_t cols, size_t bs, uint8_t *q, void *scale, size_t *bad_block,
                                 mq_err_acc *err)
{
    mq_status st;
    mq_err_acc part;
    size_t ignored_bad;
    if (!bad_block) bad_block = &ignored_bad;
    do {
        mq_cl_clear_code();
        mq_err_acc_init(&part);
        st = blocks_once((mq_cl_backend *)b, src, dt, rows, cols, bs, q, scale, bad_block,
                         err ? &part : NULL);
    } while (mq_cl_retry_smaller((mq_cl_backend *)b, st, rows * cols * mq_dtype_size(dt),
                                 bs * bs * mq_dtype_size(dt)));
    if (st == MQ_OK && err) mq_err_acc_add(err, &part);
    return st;
}

mq_status mq_cl_quantize(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t rows,
                         size_t cols, void *q, void *scale, int8_t *zp, size_t *bad,
                         mq_err_acc *err)
{
    if (d.block) {
        if (d.kind != MQ_QK_FP8)
            return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                                "OpenCL quantize: blocks of a kind other than FP8");
        return quantize_blocks(b, src, dt, rows, cols, d.block, q, scale, bad, err);
    }
    if (d.kind == MQ_QK_INT8)
        return quantize_rows_int8(b, src, dt, rows, cols, d.symmetric, q, scale, zp, d.code_xor,
                                  bad, err);
    return quantize_rows_k(b, src, dt, rows, cols, d.kind, d.symmetric, q, scale, zp, bad, err);
}

mq_status mq_cl_quantize_values(mq_backend *b, mq_qdesc d, const void *src, mq_dtype dt, size_t n,
                                float scale, int8_t zp, void *q, mq_err_acc *err)
{
    if (d.kind == MQ_QK_INT8)
        return quantize_values_int8(b, src, dt, n, scale, zp, d.symmetric, d.code_xor, q, err);
    return quantize_values_k(b, src, dt, n, d.kind, scale, zp, d.symmetric, q, err);
}
