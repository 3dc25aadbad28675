/* Streaming quantization of one safetensors file (see stream.h). Every
 * tensor is planned from the header alone and the final header is written
 * first; then the data moves in chunks through the staging ring (ring.c) to
 * the compute (streamexec.c) and on to the writer thread (writer.c), which
 * puts each result at its final offset and copies the untouched tensors. */
#include "imatrix.h"
#include "stream.h"

#include "dtype.h"
#include "error.h"
#include "foreign.h"
#include "fused.h"
#include "infile.h"
#include "layout.h"
#include "model.h"
#include "outfile.h"
#include "plan.h"
#include "report.h"
#include "safetensors.h"
#include "srcread.h"
#include "streamint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* Slot sizes: a device wants long transfers; the host kernels want chunks
 * that are still in the shared cache when the compute thread reads them. */
#define SLOT_CAP_DEVICE ((size_t)64 << 20)
#define SLOT_CAP_HOST ((size_t)4 << 20)
#define SLOT_MIN ((size_t)64 << 10)
#define SLOTS_DEVICE 4u
#define SLOTS_HOST 6u

/* Sizes the pipeline so that the input slots (or mapped windows), the
 * writer's output buffers with their scale areas and its copy windows stay
 * within half the memory limit; the rest is for the device's own buffers,
 * the code, the thread stacks and the allocator. */
static void size_staging(const mq_settings *set, const mq_backend *be, unsigned *slots,
                         size_t *slot_bytes, size_t *run_cap)
{
    bool host = be->caps.host_threads;
    uint64_t limit = set->memory_limit ? set->memory_limit : MQ_DEFAULT_MEMORY_LIMIT;
    uint64_t run = limit / 64 < MQ_RUN_CAP ? limit / 64 : MQ_RUN_CAP;
    *run_cap = run < MQ_RUN_MIN ? MQ_RUN_MIN : (size_t)run;
    uint64_t half = limit / 2, fixed = (MQ_OUT_BUFFERS + 1) * 2 * (uint64_t)*run_cap;
    *slots = host ? SLOTS_HOST : SLOTS_DEVICE;
    /* Input slots, output buffers, and the writer's copy windows (two mapped
     * steps, or one bounce buffer). */
    uint64_t per = half > fixed ? (half - fixed) / (*slots + MQ_OUT_BUFFERS + 2) : 0;
    size_t cap = host ? SLOT_CAP_HOST : SLOT_CAP_DEVICE;
    if (per > cap) per = cap;
    per = per / 4096 * 4096; /* whole elements of every dtype, page-sized reads */
    *slot_bytes = per < SLOT_MIN ? SLOT_MIN : (size_t)per;
}

static mq_status plan_quantize(mq_stream *s, mq_tplan *tp)
{
    const mq_tensor *t = tp->t;
    mq_status st = mq_qlayout_init(&tp->lay, t, &s->set->scheme);
    if (st != MQ_OK) return st;
    /* A compressed-tensors source's own scales and shapes bear the names
     * ours take; they are left out of the output. */
    bool ct_source = tp->src && (tp->src->other == MQ_SRC_FORMAT_CT || tp->src->ct);
    if (!ct_source && (st = mq_qlayout_check_names(&tp->lay, s->m, t->name)) != MQ_OK) return st;
    const mq_qlayout *l = &tp->lay;
    size_t es = mq_dtype_size(t->dtype);
    tp->rows = l->rows;
    tp->cols = l->cols;
    tp->mse = s->set->scheme.observer == MQ_OBSERVER_MSE;
    /* Importances weigh the columns of a 2-D weight's rows. */
    if (tp->mse && s->set->imatrix && t->rank == 2 &&
        (st = mq_imatrix_find(s->set->imatrix, t->name, l->inner, &tp->imp)) != MQ_OK)
        return st;
    /* Element chunks of the scan (--skip-nonfinite) and of the split path. */
    tp->per_chunk = s->slot_bytes / es;
    if (l->block) {
        /* Whole bands of block rows per chunk; setup sized the slots for one. */
        size_t band = s->slot_bytes / (tp->cols * es) / l->block;
        size_t nbc = l->scale_cols, by_run = s->run_cap / (nbc * es);
        if (by_run < band) band = by_run;
        if (band == 0)
            return mq_set_error(MQ_STATUS_E_CONFIG,
                                "tensor '%s': %zu rows of %zu values do not fit one chunk "
                                "under the memory limit; raise it",
                                t->name, l->block, tp->cols);
        tp->kind = MQ_KIND_ROWS;
        tp->rows_per_chunk = band * l->block;
        return MQ_OK;
    }
    /* A chunk's packed codes, with their padding, must fit the output
     * buffer's slot_bytes as its input fits a slot. */
    if (l->inner_bytes > l->inner) {
        uint64_t by_pack = (uint64_t)(s->slot_bytes - 4) * l->inner / l->inner_bytes;
        if (by_pack < tp->per_chunk) tp->per_chunk = (size_t)by_pack;
    }
    /* int4 codes pack two to a byte: split chunks start on whole bytes. */
    if (l->kind == MQ_QK_INT4) tp->per_chunk -= tp->per_chunk % 8;
    size_t row_out = mq_qlayout_rows_bytes(l, 1) + 4;
    if (tp->cols <= tp->per_chunk) {
        /* Whole rows per chunk, as many as fit the slot and the scale runs. */
        size_t by_slot = s->slot_bytes / (tp->cols * es), by_run = s->run_cap / es;
        size_t by_out = s->slot_bytes / row_out;
        tp->kind = MQ_KIND_ROWS;
        tp->rows_per_chunk = by_slot < by_run ? by_slot : by_run;
        if (by_out < tp->rows_per_chunk) tp->rows_per_chunk = by_out;
        if (tp->rows_per_chunk == 0) tp->rows_per_chunk = 1;
    } else if (tp->mse) {
        /* The search goes over a group many times: it must be in memory whole. */
        return mq_set_error(MQ_STATUS_E_CONFIG,
                            "tensor '%s': a group of %zu values does not fit one chunk under the "
                            "memory limit, and the mse observer needs whole groups; raise it",
                            t->name, tp->cols);
    } else {
        tp->kind = MQ_KIND_SPLIT; /* a group larger than a slot: two passes */
    }
    return MQ_OK;
}

static void plan_copy(mq_tplan *tp)
{
    tp->action = MQ_ACTION_SKIP;
    tp->kind = MQ_KIND_COPY;
}

static uint64_t file_offset(const mq_stream *s, size_t i)
{
    const mq_tensor *t = &s->m->tensors[i];
    return t->nbytes ? (uint64_t)((const unsigned char *)t->data -
                                  (const unsigned char *)mq_blob_data(s->m->blobs[i]))
                     : 0;
}

/* An F8_E4M3 weight with its weight_scale_inv, in a run that reads FP8 block
 * sources: planned as the float weight it stands for, its scales checked
 * against the block size of config.json and left out of the output. */
static mq_status plan_fp8_source(mq_stream *s, size_t i, const mq_tensor *sc)
{
    const mq_tensor *t = &s->m->tensors[i];
    size_t br = s->set->src_block[0], bc = s->set->src_block[1];
    if (t->rank != 2)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "tensor '%s': an FP8 block weight must have 2 dimensions, not %d",
                            t->name, t->rank);
    uint64_t sr = ((uint64_t)t->shape[0] + br - 1) / br,
             scn = ((uint64_t)t->shape[1] + bc - 1) / bc;
    if ((sc->dtype != MQ_DTYPE_F32 && sc->dtype != MQ_DTYPE_BF16) || sc->rank != 2 ||
        (uint64_t)sc->shape[0] != sr || (uint64_t)sc->shape[1] != scn)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "tensor '%s': its scales '%s' must be F32 or BF16 [%llu, %llu] "
                            "(blocks of %zu x %zu, config.json's weight_block_size)",
                            t->name, sc->name, (unsigned long long)sr, (unsigned long long)scn, br,
                            bc);
    mq_tplan *tp = &s->tp[i];
    long k = mq_model_index(s->m, sc->name);
    if (!(tp->src = calloc(1, sizeof *tp->src)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", t->name);
    tp->src->vt = *t;
    tp->src->vt.dtype = s->set->src_dtype;
    tp->src->vt.nbytes = t->nbytes * mq_dtype_size(s->set->src_dtype);
    tp->src->scale = sc;
    tp->src->scale_off = file_offset(s, (size_t)k);
    tp->src->br = br;
    tp->src->bc = bc;
    s->tp[k].kind = MQ_KIND_DROP;
    return MQ_OK;
}

/* A source weight left in float is written in the model's dtype, whatever
 * the values are dequantized to for quantizing. */
static void keep_in_model_dtype(const mq_stream *s, mq_tplan *tp)
{
    mq_fp8src *f = tp->src;
    f->vt.nbytes =
        f->vt.nbytes / mq_dtype_size(f->vt.dtype) * mq_dtype_size(s->set->src_model_dtype);
    f->vt.dtype = s->set->src_model_dtype;
}

static mq_status plan_tensors(mq_stream *s, mq_planner *pl)
{
    mq_status st;
    for (size_t i = 0; s->set->src_block[0] && i < s->n; i++) {
        const mq_tensor *sc = mq_fp8_block_scale(s->m, &s->m->tensors[i]);
        if (sc && (st = plan_fp8_source(s, i, sc)) != MQ_OK) return st;
    }
    for (size_t i = 0; i < s->n; i++) {
        mq_tplan *tp = &s->tp[i];
        const mq_tensor *t = tp->src ? &tp->src->vt : &s->m->tensors[i];
        char reason[256];
        tp->t = t;
        tp->in_dtype = s->m->tensors[i].dtype;
        tp->in_off = file_offset(s, i);
        if (tp->kind == MQ_KIND_DROP) {
            tp->action = MQ_ACTION_SKIP;
            continue;
        }
        tp->action =
            mq_planner_decide(pl, t->name, t->dtype, t->rank, t->shape, reason, sizeof reason);
        if (mq_planner_error(pl) != MQ_OK) return mq_planner_error(pl);
        if (tp->action == MQ_ACTION_QUANTIZE) {
            if ((st = plan_quantize(s, tp)) != MQ_OK) return st;
        } else if (tp->action == MQ_ACTION_CAST) {
            uint64_t numel;
            mq_shape_numel(t->rank, t->shape, &numel);
            tp->kind = MQ_KIND_CAST;
            tp->rows = 1;
            tp->cols = (size_t)numel;
            tp->per_chunk = s->slot_bytes / mq_dtype_size(t->dtype);
        } else if (tp->src) {
            /* Kept, as its float values in the model's dtype. */
            keep_in_model_dtype(s, tp);
            t = tp->t;
            uint64_t numel;
            mq_shape_numel(t->rank, t->shape, &numel);
            tp->kind = MQ_KIND_DEQUANT;
            tp->rows = 1;
            tp->cols = (size_t)numel;
            tp->per_chunk = s->slot_bytes / mq_dtype_size(t->dtype);
            if (!(tp->reason = strdup(reason)))
                return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", t->name);
        } else {
            plan_copy(tp);
            if (!(tp->reason = strdup(reason)))
                return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", t->name);
        }
    }
    return MQ_OK;
}

/* With --skip-nonfinite: the tensors the scan found holding NaN/Inf are kept
 * as they are, planned before the header is. */
static mq_status keep_nonfinite(mq_stream *s)
{
    mq_status st = MQ_OK;
    for (size_t i = 0; st == MQ_OK && i < s->n; i++) {
        mq_tplan *tp = &s->tp[i];
        if (!tp->nonfinite) continue;
        if (tp->src) {
            /* Kept as its float values, NaN and all. */
            mq_qlayout_free(&tp->lay);
            keep_in_model_dtype(s, tp);
            uint64_t numel;
            mq_shape_numel(tp->t->rank, tp->t->shape, &numel);
            tp->action = MQ_ACTION_SKIP;
            tp->kind = MQ_KIND_DEQUANT;
            tp->rows = 1;
            tp->cols = (size_t)numel;
            tp->per_chunk = s->slot_bytes / mq_dtype_size(tp->t->dtype);
        } else {
            plan_copy(tp);
        }
        if (!(tp->reason = strdup("holds NaN or Inf")))
            st = mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", tp->t->name);
    }
    return st;
}

/* NVFP4: each weight's global scale, from the amax of its fused set
 * (fused.h: every member's, reduced before any is quantized), else from its
 * own. The run's hook gives the weights it read before any file (a model
 * directory's float weights, with sets that span files); the others (a
 * single file's, an FP8 block source's) come from this file's pass
 * (scanned), with the sets among this file's weights. */
static mq_status set_global_scales(mq_stream *s, bool scanned)
{
    mq_fused *own = NULL;
    mq_status st = MQ_OK;
    if (scanned) {
        if (!(own = mq_fused_new())) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
        for (size_t i = 0; i < s->n && st == MQ_OK; i++)
            if (s->tp[i].action == MQ_ACTION_QUANTIZE && !s->tp[i].nonfinite)
                st = mq_fused_add(own, s->tp[i].t->name, s->tp[i].amax);
    }
    for (size_t i = 0; i < s->n && st == MQ_OK; i++) {
        mq_tplan *tp = &s->tp[i];
        float amax = tp->amax;
        bool known = false;
        if (tp->action != MQ_ACTION_QUANTIZE) continue;
        if (s->set->fused_amax)
            st = s->set->fused_amax(s->set->fused_user, tp->t->name, &amax, &known);
        if (st == MQ_OK && !known && own) st = mq_fused_amax(own, tp->t->name, &amax, NULL);
        if (st == MQ_OK) tp->lay.gscale = mq_nvfp4_global_scale(amax, tp->t->dtype);
    }
    mq_fused_free(own);
    return st;
}

/* Whether the run read every weight this file quantizes before it (a model
 * directory's pass), so that NVFP4 needs no pass over the file for them. */
static bool amax_known(const mq_stream *s)
{
    if (!s->set->fused_amax) return false;
    for (size_t i = 0; i < s->n; i++) {
        const mq_tplan *tp = &s->tp[i];
        float a = 0.0f;
        bool known = false;
        if (tp->action != MQ_ACTION_QUANTIZE) continue;
        if (s->set->fused_amax(s->set->fused_user, tp->t->name, &a, &known) != MQ_OK || !known)
            return false;
    }
    return true;
}

/* The output's tensors in order, their offsets, and the header bytes. */
static mq_status build_header(mq_stream *s, char **header, size_t *len)
{
    mq_st_desc *d = calloc(s->n ? MQ_QOUT_COUNT * s->n : 1, sizeof *d);
    const char **keys = calloc(s->m->meta_count + MQ_OUTPUT_META, sizeof *keys);
    const char **vals = calloc(s->m->meta_count + MQ_OUTPUT_META, sizeof *vals);
    size_t nd = 0, nm = 0;
    uint64_t off = 0;
    mq_status st = MQ_OK;
    if (!d || !keys || !vals) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "output header: out of memory");
        goto done;
    }
    /* The input's metadata, then ours, replacing a key of the same name in
     * place as mq_model_set_metadata does for the in-memory path. */
    const char *ours[MQ_OUTPUT_META][2];
    /* A plain float output (dequantize) says nothing of a scheme. */
    int n_ours = s->set->plain_float ? 0 : mq_output_metadata(&s->set->scheme, ours);
    for (size_t i = 0; i < s->m->meta_count; i++, nm++) {
        keys[nm] = s->m->meta_keys[i];
        vals[nm] = s->m->meta_values[i];
    }
    for (int k = 0; k < n_ours; k++) {
        size_t j = 0;
        while (j < nm && strcmp(keys[j], ours[k][0]) != 0)
            j++;
        keys[j] = ours[k][0];
        vals[j] = ours[k][1];
        if (j == nm) nm++;
    }
    for (size_t i = 0; i < s->n; i++) {
        mq_tplan *tp = &s->tp[i];
        const mq_tensor *t = tp->t;
        tp->out_q = off;
        if (tp->kind == MQ_KIND_DROP) continue;
        if (tp->action == MQ_ACTION_QUANTIZE) {
            uint64_t *offs[MQ_QOUT_COUNT] = {&tp->out_q, &tp->out_scale, &tp->out_zp,
                                             &tp->out_shape, &tp->out_gscale};
            for (int k = 0; k < MQ_QOUT_COUNT; k++) {
                const mq_qout *o = &tp->lay.out[k];
                if (!o->name) continue;
                *offs[k] = off;
                d[nd++] = (mq_st_desc){o->name, o->dtype, o->rank, o->shape, o->nbytes};
                off += o->nbytes;
            }
        } else if (tp->action == MQ_ACTION_CAST) {
            d[nd++] =
                (mq_st_desc){t->name, MQ_DTYPE_F16, t->rank, t->shape, (uint64_t)tp->cols * 2};
            off += (uint64_t)tp->cols * 2;
        } else {
            d[nd++] = (mq_st_desc){t->name, t->dtype, t->rank, t->shape, t->nbytes};
            off += t->nbytes;
        }
    }
    s->out_bytes = off;
    st = mq_st_build_header_desc(d, nd, keys, vals, nm, header, len);
done:
    free(d);
    free(keys);
    free(vals);
    return st;
}

/* Filesystems where copy_file_range copies on the server, so the bytes do
 * not cross the network twice. Locally (ext4, and XFS or btrfs at the
 * unaligned offsets of a safetensors file) it is a single-threaded
 * page-cache copy, measured slower than the ring, whose reads run in
 * parallel with the writes. */
static bool server_side_fs(long type)
{
    return type == 0x6969 /* NFS */ || type == (long)0xfe534d42 /* SMB2 */ ||
           type == (long)0xff534d42 /* CIFS */ || type == 0x00c36400 /* Ceph */;
}

static bool kernel_copy_pays(int in_fd, const char *out_path)
{
    struct statfs in, out;
    char *dir = strdup(out_path);
    if (!dir) return false;
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = '\0';
    bool ok = fstatfs(in_fd, &in) == 0 && statfs(slash ? dir : ".", &out) == 0 &&
              server_side_fs((long)in.f_type) && in.f_type == out.f_type;
    free(dir);
    return ok;
}

/* The input file, opened again for pread and copy_file_range, must be the
 * file the header was mapped from; and the output must not be it. */
static mq_status open_input(mq_stream *s, const char *out_path)
{
    struct stat in, out;
    mq_status st = mq_infile_open(s->in_path, MQ_STATUS_E_IO, &s->fd, &in);
    if (st != MQ_OK) return st;
    bool any = false;
    for (size_t i = 0; i < s->n && !any; i++)
        any = s->m->tensors[i].nbytes > 0;
    if (any && !mq_model_maps_file(s->m, in.st_dev, in.st_ino))
        return mq_set_error(MQ_STATUS_E_IO, "%s: the file was replaced while it was being opened",
                            s->in_path);
    s->in_st = in;
    if (stat(out_path, &out) == 0 && out.st_dev == in.st_dev && out.st_ino == in.st_ino)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' is the input file '%s' (same file)",
                            out_path, s->in_path);
    (void)posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    s->copy_in_kernel = kernel_copy_pays(s->fd, out_path);
    return MQ_OK;
}

/* Truncated, extended or rewritten since open_input: the chunks read may
 * mix old and new contents, or stop short. */
static bool changed_while_read(mq_stream *s)
{
    struct stat now;
    if (fstat(s->fd, &now) != 0) return false;
    s->now_size = now.st_size;
    return now.st_size != s->in_st.st_size || now.st_mtim.tv_sec != s->in_st.st_mtim.tv_sec ||
           now.st_mtim.tv_nsec != s->in_st.st_mtim.tv_nsec;
}

static mq_status write_header(mq_stream *s, const char *header, size_t len)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    mq_status st = mq_outfile_pwrite(s->f, len8, sizeof len8, 0);
    if (st == MQ_OK) st = mq_outfile_pwrite(s->f, header, len, 8);
    s->data_start = 8 + (uint64_t)len;
    return st;
}

/* The output bytes known before the codes: the shape tensor of a packed
 * weight, NVFP4's global scale. */
static mq_status write_constants(mq_stream *s)
{
    mq_status st = MQ_OK;
    for (size_t i = 0; i < s->n && st == MQ_OK; i++) {
        const mq_qlayout *l = &s->tp[i].lay;
        if (s->tp[i].action == MQ_ACTION_QUANTIZE && l->out[MQ_QOUT_GSCALE].name) {
            unsigned char g[4];
            mq_qlayout_gscale_bytes(l, g);
            st = mq_outfile_pwrite(s->f, g, sizeof g, s->data_start + s->tp[i].out_gscale);
            if (st != MQ_OK) break;
        }
        if (s->tp[i].action != MQ_ACTION_QUANTIZE || l->format != MQ_FORMAT_PACK_QUANTIZED)
            continue;
        unsigned char shape[8 * MQ_MAX_RANK];
        mq_qlayout_shape_bytes(l, shape);
        st = mq_outfile_pwrite(s->f, shape, (size_t)l->out[MQ_QOUT_SHAPE].nbytes,
                               s->data_start + s->tp[i].out_shape);
    }
    return st;
}

/* FP8 blocks: the input bytes of one band of block rows of the widest weight
 * the planner quantizes (what one chunk must hold at least), or 0. */
static uint64_t widest_band(const mq_stream *s, mq_planner *pl)
{
    size_t b = s->set->scheme.block;
    uint64_t widest = 0;
    char reason[256];
    for (size_t i = 0; b && i < s->n; i++) {
        const mq_tensor *t = s->tp[i].src ? &s->tp[i].src->vt : &s->m->tensors[i];
        mq_dtype dt = t->dtype;
        if (s->set->src_block[0] && mq_fp8_block_scale(s->m, t)) dt = s->set->src_dtype;
        if (t->rank != 2 || !mq_dtype_is_quantizable(dt) ||
            mq_planner_decide(pl, t->name, dt, t->rank, t->shape, reason, sizeof reason) !=
                MQ_ACTION_QUANTIZE)
            continue;
        uint64_t band = (uint64_t)b * (uint64_t)t->shape[1] * mq_dtype_size(dt);
        if (band > widest) widest = band;
    }
    return widest;
}

static mq_status setup(mq_stream *s, mq_planner *pl)
{
    unsigned slots;
    size_t slot_bytes;
    size_staging(s->set, s->be, &slots, &slot_bytes, &s->run_cap);
    uint64_t band = widest_band(s, pl);
    if (band > slot_bytes) {
        uint64_t limit = s->set->memory_limit ? s->set->memory_limit : MQ_DEFAULT_MEMORY_LIMIT;
        uint64_t need = (band + 4095) / 4096 * 4096;
        if (need * (slots + MQ_OUT_BUFFERS + 2) > limit || need > SIZE_MAX / 2)
            return mq_set_error(MQ_STATUS_E_CONFIG,
                                "%s: FP8 blocks need %llu bytes of input per chunk (%zu rows of "
                                "the widest weight), more than the memory limit of %llu bytes "
                                "allows; raise it",
                                s->in_path, (unsigned long long)need, s->set->scheme.block,
                                (unsigned long long)limit);
        slot_bytes = (size_t)need;
    }
    /* Every backend, the host's too, gets its chunks by pread into the ring's
     * buffers, and kept tensors are copied the same way: a page of the
     * mapping read in place after another program truncates the input raises
     * SIGBUS, which a library cannot catch. The copy costs little next to
     * the quantization and the writing (bench/RESULTS.md). */
    s->map = NULL;
    s->map_len = 0;
    mq_status st = mq_ring_new(s->be, slots, slot_bytes, NULL, 0, &s->ring);
    if (st != MQ_OK) return st;
    s->slot_bytes = slot_bytes;
    for (size_t i = 0; i < s->n; i++)
        s->bytes_total += s->m->tensors[i].nbytes;
    return MQ_OK;
}

static void teardown(mq_stream *s)
{
    mq_ring_free(s->ring);
    mq_outfile_abort(s->f);
    for (size_t i = 0; s->tp && i < s->n; i++) {
        free(s->tp[i].reason);
        mq_qlayout_free(&s->tp[i].lay);
        mq_src_free(s->tp[i].src);
    }
    free(s->tp);
    if (s->fd >= 0) close(s->fd);
    mq_model_free(s->m);
}

mq_status mq_stream_file(const char *in_path, const char *out_path, const mq_settings *set,
                         mq_planner *planner, mq_backend *be, mq_report *rep,
                         mq_stream_totals *totals)
{
    mq_settings defaults;
    mq_planner *pl = planner, *own_pl = NULL;
    mq_report *own_rep = NULL;
    char *header = NULL;
    size_t hlen = 0;
    mq_status st;
    mq_stream s = {.fd = -1};

    if (!in_path || !out_path || !be)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_stream_file: NULL argument");
    if (!set) {
        if ((st = mq_settings_init(&defaults, NULL)) != MQ_OK) return st;
        set = &defaults;
    }
    if (!rep && !(rep = own_rep = mq_report_new())) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", in_path);
        goto done;
    }
    s = (mq_stream){
        .in_path = in_path, .set = set, .be = be, .rep = rep, .totals = totals, .fd = -1};
    mq_report_set_device(rep, be->backend, be->platform, be->device);
    if (!pl && (st = mq_planner_new(set, &pl)) != MQ_OK) goto done;
    if (!planner) own_pl = pl;
    if ((st = mq_model_open(in_path, &s.m)) != MQ_OK) goto done;
    /* A compressed-tensors source is quantized throughout: its layers are read. */
    st = set->src_format == MQ_SRC_FORMAT_CT ? mq_check_no_foreign(s.m, false)
                                             : mq_check_not_quantized(s.m, set->src_block[0] != 0);
    if (st == MQ_OK && set->src_format != MQ_SRC_FORMAT_MXFP4) st = mq_check_no_mxfp4(s.m);
    if (st != MQ_OK) goto prefixed;
    s.n = s.m->count;
    if (!(s.tp = calloc(s.n ? s.n : 1, sizeof *s.tp))) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", in_path);
        goto done;
    }
    if ((st = open_input(&s, out_path)) != MQ_OK) goto done;
    if (set->src_format && (st = mq_src_plan(&s)) != MQ_OK) goto prefixed;
    if ((st = setup(&s, pl)) != MQ_OK) goto done;
    if ((st = plan_tensors(&s, pl)) != MQ_OK) goto prefixed;
    /* A NaN found after part of a tensor is written would change the header;
     * with --skip-nonfinite the tensors to quantize are checked first. NVFP4
     * reads them first for their amax. */
    bool gscales = set->scheme.qkind == MQ_QK_NVFP4 && mq_scheme_quantizes(&set->scheme);
    bool scan =
        (set->skip_nonfinite && mq_scheme_quantizes(&set->scheme)) || (gscales && !amax_known(&s));
    if (scan && (st = mq_stream_scan(&s)) != MQ_OK) goto prefixed;
    if (set->skip_nonfinite && mq_scheme_quantizes(&set->scheme) &&
        (st = keep_nonfinite(&s)) != MQ_OK)
        goto prefixed;
    if (gscales && (st = set_global_scales(&s, scan)) != MQ_OK) goto prefixed;
    if ((st = build_header(&s, &header, &hlen)) != MQ_OK) goto prefixed;
    if ((st = mq_outfile_open(out_path, &s.f)) != MQ_OK) goto done;
    if ((st = write_header(&s, header, hlen)) != MQ_OK) goto done;
    if ((st = mq_outfile_reserve(s.f, s.data_start + s.out_bytes)) != MQ_OK) goto done;
    if ((st = write_constants(&s)) != MQ_OK) goto done;
    st = mq_stream_run(&s);
    /* Checked on failure too: it tells an input fault from the output's. */
    if (changed_while_read(&s)) {
        st = mq_set_error(MQ_STATUS_E_IO,
                          "input '%s' changed while being read (%lld bytes at the start, %lld now)",
                          in_path, (long long)s.in_st.st_size, (long long)s.now_size);
        goto done;
    }
    if (st != MQ_OK) goto prefixed;
    st = mq_outfile_commit(s.f);
    s.f = NULL; /* commit frees it, on success or failure */
    goto done;
prefixed:
    mq_error_prefix("%s", in_path);
done:
    teardown(&s);
    free(header);
    mq_planner_free(own_pl);
    mq_report_free(own_rep);
    return st;
}

mq_status mq_stream_measure(const char *in_path, uint64_t *bytes, size_t *tensors)
{
    mq_model *m = NULL;
    mq_status st = mq_model_open(in_path, &m);
    if (st != MQ_OK) return st;
    uint64_t b = 0;
    for (size_t i = 0; i < m->count; i++)
        b += m->tensors[i].nbytes;
    if (bytes) *bytes = b;
    if (tensors) *tensors = m->count;
    mq_model_free(m);
    return MQ_OK;
}
