/* The compute side of the streaming quantizer: the chunk sequence of each
 * planned tensor (generated on the reader thread, walked in the same order
 * here), the backend calls on each chunk, the output handed to the writer
 * thread with its final offsets, and progress. Steps a backend leaves NULL
 * run on the host kernels. */
#include "streamint.h"

#include "dtype.h"
#include "error.h"
#include "model.h"
#include "quantrows.h"
#include "report.h"
#include "srcread.h"
#include "writer.h"

#include <stdlib.h>
#include <string.h>

#define PROGRESS_INTERVAL_NS 100000000LL /* at most ten calls a second between tensors */

/* ---- the chunk sequence ---- */

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static uint64_t numel_of(const mq_tplan *tp)
{
    return (uint64_t)tp->rows * tp->cols;
}

static uint64_t chunk_count(const mq_tplan *tp, bool scan)
{
    if (scan) return tp->action == MQ_ACTION_QUANTIZE ? ceil_div(numel_of(tp), tp->per_chunk) : 0;
    switch (tp->kind) {
    case MQ_KIND_ROWS:
        return ceil_div(tp->rows, tp->rows_per_chunk) * (tp->mse ? 2 : 1);
    case MQ_KIND_SPLIT:
        return (uint64_t)tp->rows * 2 * ceil_div(tp->cols, tp->per_chunk);
    case MQ_KIND_CAST:
    case MQ_KIND_DEQUANT:
        return ceil_div(tp->cols, tp->per_chunk);
    default: /* a copy goes to the writer whole */
        return 0;
    }
}

/* A source other than FP8 blocks reads its bytes itself (srcread.c). */
static bool self_read(const mq_tplan *tp)
{
    return tp->src && tp->src->other != MQ_SRC_FORMAT_NONE;
}

static void chunk_at(const mq_tplan *tp, bool scan, size_t ti, uint64_t k, mq_chunk *c)
{
    size_t es = mq_dtype_size(tp->in_dtype);
    uint64_t first, count, base = 0;
    memset(c, 0, sizeof *c);
    c->tensor = ti;
    if (!scan && tp->kind == MQ_KIND_ROWS) {
        if (tp->mse) {
            uint64_t per_pass = ceil_div(tp->rows, tp->rows_per_chunk);
            c->pass = (int)(k / per_pass);
            k %= per_pass;
        }
        first = k * tp->rows_per_chunk;
        count = tp->rows - first < tp->rows_per_chunk ? tp->rows - first : tp->rows_per_chunk;
        c->off = tp->in_off + first * tp->cols * es;
        c->bytes = self_read(tp) ? 0 : (size_t)(count * tp->cols * es);
    } else {
        /* Element chunks over one group (split) or over the whole tensor. */
        uint64_t len = scan ? numel_of(tp) : tp->cols, k_in = k;
        if (!scan && tp->kind == MQ_KIND_SPLIT) {
            uint64_t per_group = ceil_div(tp->cols, tp->per_chunk);
            c->group = (size_t)(k / (2 * per_group));
            c->pass = (int)(k % (2 * per_group) / per_group);
            k_in = k % per_group;
            base = (uint64_t)c->group * tp->cols;
        }
        first = k_in * tp->per_chunk;
        count = len - first < tp->per_chunk ? len - first : tp->per_chunk;
        c->off = tp->in_off + (base + first) * es;
        c->bytes = self_read(tp) ? 0 : (size_t)(count * es);
    }
    c->first = (size_t)first;
    c->count = (size_t)count;
}

typedef struct {
    const mq_stream *s;
    bool scan;
    size_t ti;
    uint64_t k;
} chunk_gen;

static bool gen_next(void *arg, mq_chunk *c)
{
    chunk_gen *g = arg;
    while (g->ti < g->s->n) {
        const mq_tplan *tp = &g->s->tp[g->ti];
        if (g->k < chunk_count(tp, g->scan)) {
            chunk_at(tp, g->scan, g->ti, g->k++, c);
            return true;
        }
        g->ti++;
        g->k = 0;
    }
    return false;
}

/* The next chunk, which must belong to tensor ti. */
static mq_status next_chunk(mq_stream *s, size_t ti, const mq_chunk **c, const unsigned char **d)
{
    mq_status st = mq_ring_next(s->ring, c, d);
    if (st == MQ_OK && (!*c || (*c)->tensor != ti))
        st = mq_set_error(MQ_STATUS_E_INVALID_ARG, "internal error: chunk sequence out of step");
    return st;
}

/* ---- progress ---- */

static void progress(mq_stream *s, uint64_t partial, const mq_report_entry *finished)
{
    if (!s->set->progress) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!finished) {
        long long ns = (long long)(now.tv_sec - s->last_progress.tv_sec) * 1000000000LL +
                       (now.tv_nsec - s->last_progress.tv_nsec);
        if (ns < PROGRESS_INTERVAL_NS) return;
    }
    s->last_progress = now;
    mq_progress p = {s->tensors_done, s->n,       s->bytes_done + partial,
                     s->bytes_total,  s->in_path, finished};
    if (s->totals) {
        p.tensors_done = s->totals->tensors_done;
        p.tensors_total = s->totals->tensors_total;
        p.bytes_done = s->totals->bytes_done + partial;
        p.bytes_total = s->totals->bytes_total;
    }
    s->set->progress(&p, s->set->progress_user);
}

static mq_status finish_tensor(mq_stream *s, const mq_tplan *tp, uint64_t overflow,
                               const mq_err_acc *err)
{
    const mq_tensor *t = tp->t;
    mq_status st;
    if (tp->action == MQ_ACTION_QUANTIZE) {
        st = mq_report_add(s->rep, t, MQ_ACTION_QUANTIZE, mq_qlayout_code_dtype(&tp->lay),
                           mq_qlayout_bytes(&tp->lay), 0, NULL);
        if (st == MQ_OK) {
            mq_report_set_error_stats(s->rep, mq_err_acc_sqnr_db(err), err->max_abs, err->clamped);
            mq_report_set_imatrix(s->rep, tp->imp != NULL);
        }
    } else if (tp->action == MQ_ACTION_CAST) {
        st = mq_report_add(s->rep, t, MQ_ACTION_CAST, MQ_DTYPE_F16, numel_of(tp) * 2, overflow,
                           NULL);
    } else {
        st = mq_report_add(s->rep, t, MQ_ACTION_SKIP, t->dtype, t->nbytes, 0, tp->reason);
    }
    if (st != MQ_OK) return st;
    /* Progress counts input bytes: a source's codes, not its float values. */
    uint64_t in_bytes = self_read(tp) ? tp->src->in_bytes
                        : tp->src     ? t->nbytes / mq_dtype_size(t->dtype)
                                      : t->nbytes;
    s->tensors_done++;
    s->bytes_done += in_bytes;
    if (s->totals) {
        s->totals->tensors_done++;
        s->totals->bytes_done += in_bytes;
    }
    progress(s, 0, mq_report_entry_at(s->rep, mq_report_count(s->rep) - 1));
    return MQ_OK;
}

/* ---- one chunk ---- */

static mq_status nonfinite_error(const mq_tplan *tp, size_t group)
{
    return mq_nonfinite_error(&tp->lay, tp->t->name, group);
}

static void add_piece(mq_stream *s, mq_write_job *j, const void *p, size_t n, uint64_t data_off)
{
    j->piece[j->pieces++] = (mq_piece){p, n, s->data_start + data_off};
}

/* An output buffer holds a chunk's values, then its scales, each area written
 * at its own offset. */
static unsigned char *scale_area(const mq_stream *s, unsigned char *buf)
{
    return buf + s->slot_bytes;
}

/* ---- FP8 block sources ---- */

/* Bytes of one row of the scale grid (a compressed-tensors scale per tensor
 * is stored as [1], one value for its one block). */
static size_t scale_row_bytes(const mq_fp8src *f)
{
    return ((size_t)f->vt.shape[1] + f->bc - 1) / f->bc * mq_dtype_size(f->scale->dtype);
}

/* The staging of one source tensor: a chunk's values in the model's dtype
 * (no larger than a slot, as planned) and the scale rows of its values. */
static mq_status source_buffers(const mq_stream *s, mq_tplan *tp)
{
    mq_fp8src *f = tp->src;
    if (f->other != MQ_SRC_FORMAT_NONE) return mq_src_begin(s, tp);
    size_t cols = (size_t)f->vt.shape[1];
    size_t rows = s->slot_bytes / (cols * mq_dtype_size(f->vt.dtype)) + 2;
    size_t srow = scale_row_bytes(f);
    if (!(f->vals = malloc(s->slot_bytes)) || !(f->scales = malloc((rows / f->br + 2) * srow)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (staging of an FP8 block source)");
    return MQ_OK;
}

/* The source's description as the back ends take it: its values in the
 * dtype the plan reads them in. */
static mq_srcdesc source_desc(const mq_fp8src *f)
{
    return mq_sd_fp8_block(f->br, f->bc, f->scale->dtype, f->vt.dtype);
}

/* The scale rows values [e0, e0 + n) of the weight need, read from the input
 * into the tensor's staging (a few rows of the scale grid, staged with the
 * band within the memory limit). */
static mq_status stage_scales(const mq_stream *s, const mq_tplan *tp, uint64_t e0, size_t n)
{
    const mq_fp8src *f = tp->src;
    size_t srow = scale_row_bytes(f);
    uint64_t r0, r1;
    mq_srcdesc_scale_rows(source_desc(f), e0, n, (size_t)f->vt.shape[1], &r0, &r1);
    return mq_src_read(s, f->scales, (size_t)(r1 - r0) * srow, f->scale_off + r0 * srow);
}

/* Values [e0, e0 + n) of the weight, whose FP8 codes are at d, dequantized
 * by the back end into the tensor's staging in the model's dtype. The other
 * sources read their own bytes. */
static mq_status dequant_values(const mq_stream *s, const mq_tplan *tp, const unsigned char *d,
                                uint64_t e0, size_t n)
{
    if (self_read(tp)) return mq_src_values(s, tp, e0, n);
    const mq_fp8src *f = tp->src;
    mq_status st = stage_scales(s, tp, e0, n);
    if (st != MQ_OK) return st;
    return mq_be_dequantize_source(s->be, source_desc(f), d, e0, n, (size_t)f->vt.shape[1],
                                   f->scales, f->vals);
}

static mq_status chunk_dequant(mq_stream *s, const mq_tplan *tp, const mq_chunk *c,
                               const unsigned char *d, mq_write_job *j)
{
    size_t es = mq_dtype_size(tp->t->dtype);
    mq_status st = dequant_values(s, tp, d, c->first, c->count);
    if (st != MQ_OK) return st;
    memcpy(j->buf, tp->src->vals, c->count * es);
    add_piece(s, j, j->buf, c->count * es, tp->out_q + (uint64_t)c->first * es);
    return MQ_OK;
}

static mq_status chunk_rows(mq_stream *s, mq_tplan *tp, const mq_chunk *c, const unsigned char *d,
                            mq_write_job *j, mq_err_acc *err)
{
    const mq_qlayout *l = &tp->lay;
    size_t es = mq_qkind_scale_size(l->kind, tp->t->dtype), bad = 0, nq, ns;
    const mq_obs_mse *o = &s->set->scheme.mse;
    mq_status st;
    uint64_t e0 = (uint64_t)c->first * tp->cols;
    bool fused = tp->src && !self_read(tp) && !tp->mse && s->be->ops->quantize_source;
    if (tp->src && !fused) {
        /* Groups (or rows, or bands) of tp->cols values: whole rows or not;
         * both of the mse observer's passes read them dequantized. */
        st = dequant_values(s, tp, d, e0, c->count * tp->cols);
        if (st != MQ_OK) return st;
        d = tp->src->vals;
    }
    if (tp->mse && c->pass == 0) {
        /* The search's first pass writes nothing: there is no output buffer. */
        st = mq_scan_band_mse(s->be, l, o, tp->imp, d, tp->t->dtype, c->first, c->count,
                              tp->obs_mask, tp->obs_improved, &bad);
        return st == MQ_STATUS_E_DATA ? nonfinite_error(tp, bad) : st;
    }
    unsigned char *scale = scale_area(s, j->buf);
    int8_t *zp = tp->zp_all ? tp->zp_all + c->first : NULL;
    if (tp->mse) {
        if (c->first == 0) tp->obs_limit = mq_obs_mse_limit(o, tp->obs_improved);
        st = mq_quantize_band_mse(s->be, l, o, tp->obs_limit, tp->obs_mask, d, tp->t->dtype,
                                  c->first, c->count, j->buf, scale, zp, &nq, &ns, &bad, err);
    } else if (fused) {
        /* The back end reads the codes and writes ours: the values stay on
         * its device. */
        if ((st = stage_scales(s, tp, e0, c->count * tp->cols)) != MQ_OK) return st;
        st = mq_quantize_band_source(s->be, l, source_desc(tp->src), d,
                                     (size_t)tp->src->vt.shape[1], tp->src->scales, tp->src->vals,
                                     c->first, c->count, j->buf, scale, zp, &nq, &ns, &bad, err);
    } else {
        st = mq_quantize_band(s->be, l, d, tp->t->dtype, c->first, c->count, j->buf, scale, zp, &nq,
                              &ns, &bad, err);
    }
    if (st == MQ_STATUS_E_DATA) return nonfinite_error(tp, bad);
    if (st != MQ_OK) return st;
    uint64_t s0 = l->block ? (uint64_t)c->first / l->block * l->scale_cols : c->first;
    add_piece(s, j, j->buf, nq, tp->out_q + mq_qlayout_code_pos(l, e0));
    add_piece(s, j, scale, ns * es, tp->out_scale + s0 * es);
    return MQ_OK;
}

/* The two passes of backend.h's mq_twopass over one group, a chunk at a time:
 * pass 0 folds the group's statistics and ends with its parameters; pass 1
 * quantizes with them, and its first chunk carries the group's scale. */
static mq_status chunk_split(mq_stream *s, mq_tplan *tp, const mq_chunk *c, const unsigned char *d,
                             mq_write_job *j, mq_twopass *tw, mq_err_acc *err)
{
    const mq_qlayout *l = &tp->lay;
    mq_dtype dt = tp->t->dtype;
    size_t es = mq_qkind_scale_size(l->kind, dt), bad = 0;
    mq_status st;
    if (tp->src) {
        st = dequant_values(s, tp, d, (uint64_t)c->group * tp->cols + c->first, c->count);
        if (st != MQ_OK) return st;
        d = tp->src->vals;
    }
    if (c->pass == 1) {
        if ((st = mq_twopass_codes(s->be, tw, d, c->count, j->buf, err)) != MQ_OK) return st;
        uint64_t e0 = (uint64_t)c->group * tp->cols + c->first;
        size_t nq = mq_qlayout_pack_codes(l, j->buf, e0, c->count);
        add_piece(s, j, j->buf, nq, tp->out_q + mq_qlayout_code_pos(l, e0));
        if (c->first) return MQ_OK;
        mq_store_group_scale(mq_qlayout_desc(l), scale_area(s, j->buf), dt, 0, tw->scale);
        add_piece(s, j, scale_area(s, j->buf), es, tp->out_scale + (uint64_t)c->group * es);
        if (tp->zp_all) tp->zp_all[c->group] = tw->zp;
        return MQ_OK;
    }
    if (c->first == 0) mq_twopass_begin(tw, mq_qlayout_desc(l), dt);
    if ((st = mq_twopass_reduce(s->be, tw, d, c->count)) != MQ_OK) return st;
    if (c->first + c->count < tp->cols) return MQ_OK;
    st = mq_twopass_params(tw, c->group, &bad);
    return st == MQ_STATUS_E_DATA ? nonfinite_error(tp, bad) : st;
}

/* The zero points of a finished tensor, packed as the layout says, handed to
 * the writer in output buffers like every other computed byte. */
static mq_status write_zero_points(mq_stream *s, mq_writer *w, const mq_tplan *tp)
{
    const mq_qout *z = &tp->lay.out[MQ_QOUT_ZP];
    size_t n = (size_t)z->nbytes, cap = s->slot_bytes;
    unsigned char *packed = malloc(n ? n : 1);
    mq_status st = MQ_OK;
    if (!packed)
        return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (%zu bytes of zero points)", n);
    mq_qlayout_store_zp(&tp->lay, tp->zp_all, packed);
    for (size_t off = 0; off < n && st == MQ_OK; off += cap) {
        mq_write_job j = {0};
        size_t len = n - off < cap ? n - off : cap;
        if ((st = mq_writer_buffer(w, &j.buf)) != MQ_OK) break;
        memcpy(j.buf, packed + off, len);
        add_piece(s, &j, j.buf, len, tp->out_zp + off);
        st = mq_writer_submit(w, &j);
    }
    free(packed);
    return st;
}

static mq_status chunk_cast(mq_stream *s, const mq_tplan *tp, const mq_chunk *c,
                            const unsigned char *d, mq_write_job *j, uint64_t *overflow)
{
    uint64_t ov = 0;
    if (tp->src) {
        mq_status st = dequant_values(s, tp, d, c->first, c->count);
        if (st != MQ_OK) return st;
        d = tp->src->vals;
    }
    mq_status st = s->be->ops->cast_f16(s->be, d, tp->t->dtype, c->count, s->set->fp16_saturate,
                                        (uint16_t *)(void *)j->buf, &ov);
    if (st != MQ_OK) return st;
    *overflow += ov;
    add_piece(s, j, j->buf, c->count * 2, tp->out_q + (uint64_t)c->first * 2);
    return MQ_OK;
}

/* ---- whole runs ---- */

/* The mse search's records for the whole tensor: a few bits per group. */
static mq_status obs_alloc(const mq_stream *s, mq_tplan *tp)
{
    const mq_obs_mse *o = &s->set->scheme.mse;
    size_t groups = mq_qdesc_scales(mq_qlayout_desc(&tp->lay), tp->rows, tp->cols);
    tp->obs_mask = malloc(groups * mq_obs_mse_mask_bytes(o) + 1);
    tp->obs_improved = calloc(mq_obs_mse_steps(o) + 1, sizeof *tp->obs_improved);
    if (!tp->obs_mask || !tp->obs_improved)
        return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (the mse search of %zu groups)",
                            groups);
    return MQ_OK;
}

static mq_status run_tensor(mq_stream *s, mq_writer *w, size_t ti)
{
    mq_tplan *tp = &s->tp[ti];
    const mq_tensor *t = tp->t;
    mq_twopass tw = {0}; /* begun by the first chunk of each split group */
    mq_err_acc err;
    uint64_t overflow = 0, partial = 0, n = chunk_count(tp, false);
    mq_status st = MQ_OK;
    if (tp->kind == MQ_KIND_DROP) {
        /* Its values are in the weight's output; it counts as read. */
        s->bytes_done += s->m->tensors[ti].nbytes;
        if (s->totals) s->totals->bytes_done += s->m->tensors[ti].nbytes;
        return MQ_OK;
    }
    if (tp->kind == MQ_KIND_COPY)
        st = mq_writer_copy(w, tp->in_off, t->nbytes, s->data_start + tp->out_q);
    if (st == MQ_OK && tp->src) st = source_buffers(s, tp);
    mq_err_acc_init(&err);
    /* Zero points are kept for the whole tensor (one byte per group) and
     * written packed at its end: a chunk need not hold whole packed words. */
    if (tp->action == MQ_ACTION_QUANTIZE && tp->lay.out[MQ_QOUT_ZP].name &&
        !(tp->zp_all = calloc(tp->rows ? tp->rows : 1, 1)))
        st = mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (%zu zero points)", tp->rows);
    if (st == MQ_OK && tp->mse && tp->kind == MQ_KIND_ROWS) st = obs_alloc(s, tp);
    for (uint64_t k = 0; k < n && st == MQ_OK; k++) {
        const mq_chunk *c;
        const unsigned char *d;
        mq_write_job j = {.release_input = true};
        if ((st = next_chunk(s, ti, &c, &d)) != MQ_OK) break;
        bool out = (tp->kind == MQ_KIND_ROWS && (!tp->mse || c->pass == 1)) ||
                   tp->kind == MQ_KIND_CAST || tp->kind == MQ_KIND_DEQUANT ||
                   (tp->kind == MQ_KIND_SPLIT && c->pass == 1);
        if (out && (st = mq_writer_buffer(w, &j.buf)) != MQ_OK) break;
        if (tp->kind == MQ_KIND_ROWS)
            st = chunk_rows(s, tp, c, d, &j, &err);
        else if (tp->kind == MQ_KIND_DEQUANT)
            st = chunk_dequant(s, tp, c, d, &j);
        else if (tp->kind == MQ_KIND_SPLIT)
            st = chunk_split(s, tp, c, d, &j, &tw, &err);
        else
            st = chunk_cast(s, tp, c, d, &j, &overflow);
        bool two_pass = tp->kind == MQ_KIND_SPLIT || (tp->kind == MQ_KIND_ROWS && tp->mse);
        if (!two_pass || c->pass == 1) partial += c->bytes;
        if (st == MQ_OK) st = mq_writer_submit(w, &j);
        if (st == MQ_OK) progress(s, partial, NULL);
    }
    if (st == MQ_OK && tp->zp_all) st = write_zero_points(s, w, tp);
    free(tp->zp_all);
    tp->zp_all = NULL;
    free(tp->obs_mask);
    free(tp->obs_improved);
    tp->obs_mask = NULL;
    tp->obs_improved = NULL;
    mq_src_end(tp);
    if (st != MQ_OK) {
        /* Data errors already name the tensor. */
        if (st != MQ_STATUS_E_DATA) mq_error_prefix("tensor '%s'", t->name);
        return st;
    }
    return finish_tensor(s, tp, overflow, &err);
}

mq_status mq_stream_run(mq_stream *s)
{
    chunk_gen g = {s, false, 0, 0};
    mq_writer *w = NULL;
    clock_gettime(CLOCK_MONOTONIC, &s->last_progress);
    mq_copy_source src = {s->fd, s->map, s->map_len, s->copy_in_kernel, s->in_path};
    mq_status st = mq_writer_new(s->f, s->ring, s->be, &src, MQ_OUT_BUFFERS,
                                 s->slot_bytes + 2 * s->run_cap, &w);
    if (st == MQ_OK) st = mq_ring_start(s->ring, s->fd, s->in_path, gen_next, &g);
    for (size_t i = 0; i < s->n && st == MQ_OK; i++)
        st = run_tensor(s, w, i);
    if (st == MQ_OK) st = mq_writer_finish(w);
    /* The writer hands chunks back to the ring: it goes first. */
    mq_writer_free(w);
    mq_ring_stop(s->ring);
    return st;
}

mq_status mq_stream_scan(mq_stream *s)
{
    chunk_gen g = {s, true, 0, 0};
    mq_status st = mq_ring_start(s->ring, s->fd, s->in_path, gen_next, &g);
    for (size_t i = 0; i < s->n && st == MQ_OK; i++) {
        mq_tplan *tp = &s->tp[i];
        uint64_t n = chunk_count(tp, true);
        mq_ref_stats stats;
        mq_ref_stats_init(&stats);
        /* The other sources' values, dequantized (an FP8 code's NaN, or a
         * scale's), are what the scan looks at; NVFP4 needs an FP8 source's
         * amax too: its values dequantized as quantizing reads them. */
        bool values = tp->src && !self_read(tp) && s->set->scheme.qkind == MQ_QK_NVFP4 &&
                      tp->action == MQ_ACTION_QUANTIZE;
        if (n && self_read(tp)) st = mq_src_begin(s, tp);
        if (values && n > 0 && (st = source_buffers(s, tp)) != MQ_OK) break;
        for (uint64_t k = 0; k < n && st == MQ_OK; k++) {
            const mq_chunk *c;
            const unsigned char *d;
            if ((st = next_chunk(s, i, &c, &d)) != MQ_OK) break;
            if (self_read(tp)) {
                if (!stats.nonfinite && (st = mq_src_values(s, tp, c->first, c->count)) == MQ_OK)
                    st = s->be->ops->reduce(s->be, tp->src->vals, tp->t->dtype, c->count, &stats);
            } else if (values) {
                st = dequant_values(s, tp, d, c->first, c->count);
                if (st == MQ_OK && !stats.nonfinite)
                    st = s->be->ops->reduce(s->be, tp->src->vals, tp->t->dtype, c->count, &stats);
            } else if (tp->src) {
                /* e4m3fn's NaN: S.1111.111; the codes hold no infinity. */
                for (size_t e = 0; e < c->count && !stats.nonfinite; e++)
                    stats.nonfinite = (d[e] & 0x7f) == 0x7f;
            } else if (!stats.nonfinite) {
                st = s->be->ops->reduce(s->be, d, tp->t->dtype, c->count, &stats);
            }
            mq_ring_release(s->ring);
        }
        if (self_read(tp) || values) mq_src_end(tp);
        if (st == MQ_OK) {
            tp->nonfinite = stats.nonfinite;
            tp->amax = stats.amax;
        }
    }
    mq_ring_stop(s->ring);
    return st;
}
