/* Model directory to model directory: checks the input, quantizes each shard
 * with mq_stream_file (shards spread over the devices of a device list by
 * mq_stream_files) into a temporary directory beside the target, adds the
 * rebuilt index and config.json, copies every other file, and renames the
 * directory into place. A failure or a signal leaves no output and no
 * temporary behind; the input is only read. */
#define _GNU_SOURCE /* realpath, flock */
#include "hfdir.h"

#include "cleanup.h"
#include "devset.h"
#include "dircopy.h"
#include "error.h"
#include "foreign.h"
#include "fused.h"
#include "hfmeta.h"
#include "infile.h"
#include "layout.h"
#include "model.h"
#include "multidev.h"
#include "outfile.h"
#include "path.h"
#include "report.h"
#include "stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- One run. */

typedef struct {
    const char *in_dir;
    struct stat in_st;
    mq_hf_root root; /* where the input's symbolic links may lead */
    const mq_settings *set;
    mq_backend *be;
    mq_backend *const *bes; /* with a device list: every device, be the first */
    size_t n_be;
    mq_report *rep;
    size_t first_entry; /* rep's entries from here on are this run's */
    bool sharded;
    mq_hf_shards shards;
    json_t *index, *config;
    char *out;    /* out_dir without trailing slashes */
    char *parent; /* the directory that holds it */
    const char *base;
    char *tmp;   /* the temporary directory while it exists */
    int lock_fd; /* holds flock LOCK_EX on tmp: marks it as a live run's */
    int slot;
    mq_backend *own_be;  /* opened here when the caller passed none */
    mq_planner *planner; /* one for every shard, with config.json's hints */
    mq_plan_hints hints;
    mq_settings with_source; /* *set, with an FP8 block source's description */
    mq_fused *fused;         /* NVFP4: each weight's and each fused set's amax */
} hf_run;

static mq_status no_memory(const char *what)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", what);
}

/* lstat: a dangling link is there, and its reader says where it points. */
static bool exists(const char *dir, const char *name)
{
    struct stat st;
    char *p = mq_path_join(dir, name);
    bool yes = p && lstat(p, &st) == 0;
    free(p);
    return yes;
}

static mq_status check_input(hf_run *r)
{
    if (stat(r->in_dir, &r->in_st) != 0)
        return mq_set_error(MQ_STATUS_E_IO, "input directory '%s': %s", r->in_dir, strerror(errno));
    if (!S_ISDIR(r->in_st.st_mode))
        return mq_set_error(MQ_STATUS_E_IO, "input '%s' is not a directory", r->in_dir);
    return mq_hf_root_init(&r->root, r->in_dir, r->set->follow_symlinks);
}

/* The shard list: from the index when there is one, else model.safetensors. */
static mq_status load_model_files(hf_run *r)
{
    mq_status st = mq_hf_config_load(&r->root, &r->config);
    if (st != MQ_OK) return st;
    if (exists(r->in_dir, MQ_HF_INDEX)) {
        r->sharded = true;
        return mq_hf_index_load(&r->root, &r->index, &r->shards);
    }
    if (!exists(r->in_dir, MQ_HF_SINGLE))
        return mq_set_error(MQ_STATUS_E_FORMAT, "%s: no %s or %s", r->in_dir, MQ_HF_SINGLE,
                            MQ_HF_INDEX);
    char *single = mq_path_join(r->in_dir, MQ_HF_SINGLE);
    if (!single) return no_memory(r->in_dir);
    st = mq_hf_root_check(&r->root, single);
    free(single);
    if (st != MQ_OK) return st;
    r->shards.names = malloc(sizeof *r->shards.names);
    if (!r->shards.names || !(r->shards.names[0] = strdup(MQ_HF_SINGLE)))
        return no_memory(r->in_dir);
    r->shards.count = 1;
    return MQ_OK;
}

static mq_status split_output(hf_run *r, const char *out_dir)
{
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/')
        n--;
    if (!(r->out = strndup(out_dir, n))) return no_memory(out_dir);
    char *slash = strrchr(r->out, '/');
    if (!slash) {
        r->parent = strdup(".");
        r->base = r->out;
    } else {
        r->parent = slash == r->out ? strdup("/") : strndup(r->out, (size_t)(slash - r->out));
        r->base = slash + 1;
    }
    if (!r->parent) return no_memory(out_dir);
    if (!*r->base || !strcmp(r->base, ".") || !strcmp(r->base, ".."))
        return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' does not name a new directory",
                            out_dir);
    return MQ_OK;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static mq_status check_empty_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s': %s", path, strerror(errno));
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    if (!empty)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "output directory '%s' exists and is not empty",
                            path);
    return MQ_OK;
}

/* The output must not land in the input: walks up from the real path of
 * the output's parent and compares each directory with the input. */
static mq_status check_not_inside_input(hf_run *r)
{
    struct stat st;
    char *p = realpath(r->parent, NULL);
    mq_status rc = MQ_OK;
    if (!p)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "output directory '%s': %s", r->parent,
                            strerror(errno));
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc =
            mq_set_error(MQ_STATUS_E_OUTPUT, "output directory '%s' is not a directory", r->parent);
        goto done;
    }
    for (;;) {
        if (stat(p, &st) == 0 && same_file(&st, &r->in_st)) {
            rc = mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' is inside the input directory '%s'",
                              r->out, r->in_dir);
            break;
        }
        char *slash = strrchr(p, '/');
        if (!slash || (slash == p && p[1] == '\0')) break;
        slash[slash == p ? 1 : 0] = '\0';
    }
done:
    free(p);
    return rc;
}

static mq_status check_output(hf_run *r)
{
    struct stat st;
    if (lstat(r->out, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' is a symbolic link", r->out);
        if (!S_ISDIR(st.st_mode))
            return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' exists and is not a directory",
                                r->out);
        if (same_file(&st, &r->in_st))
            return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' is the input directory", r->out);
        mq_status rc = check_empty_dir(r->out);
        if (rc != MQ_OK) return rc;
    } else if (errno != ENOENT) {
        return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s': %s", r->out, strerror(errno));
    }
    return check_not_inside_input(r);
}

static mq_status make_temp_dir(hf_run *r)
{
    /* Best effort: a leftover that cannot be removed does not stop the run. */
    if (mq_remove_stale_temps(r->out, NULL, NULL) != MQ_OK) mq_clear_error();
    char *t = mq_temp_template(r->parent, r->base);
    if (!t) return no_memory(r->out);
    /* A signal between creating the directory and registering it would leave
     * it behind: the cleanup waits until both are done. */
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, -1, NULL)) {
        free(t);
        return mq_cleanup_interrupted(r->out);
    }
    bool made = mkdtemp(t) != NULL;
    int err = errno;
    if (made) r->slot = mq_cleanup_open(t, true);
    mq_cleanup_leave(&sec);
    if (!made) {
        free(t);
        return mq_set_error(MQ_STATUS_E_OUTPUT,
                            "creating a temporary directory in '%s' for '%s': %s", r->parent,
                            r->out, strerror(err));
    }
    r->tmp = t;
    /* Without the lock (no support for it here) the pid in the name still
     * keeps a later run from removing it while this one lives. */
    if ((r->lock_fd = open(t, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
        (void)flock(r->lock_fd, LOCK_EX | LOCK_NB);
    return MQ_OK;
}

/* ---- Copying the files that are not weights. */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Top-level entries that are written rather than copied, or that describe
 * the input's own history (a git clone's objects, a download cache). */
static bool written_not_copied(const hf_run *r, const char *name)
{
    if (!strcmp(name, ".git") || !strcmp(name, ".cache")) return true;
    if (r->config && !strcmp(name, MQ_HF_CONFIG)) return true;
    if (r->sharded && !strcmp(name, MQ_HF_INDEX)) return true;
    return bsearch(&name, r->shards.names, r->shards.count, sizeof *r->shards.names, name_cmp) !=
           NULL;
}

/* The copy's rules for a model directory: at the top, what the run writes
 * itself and Mistral's own-format weights are left out; below, every link must
 * stay inside the input. */
static mq_status copy_filter(void *user, const char *path, const char *name, int depth, bool *skip)
{
    hf_run *r = user;
    if (depth == 0 && written_not_copied(r, name)) {
        *skip = true;
        return MQ_OK;
    }
    if (depth == 0 && mq_hf_is_consolidated(name)) {
        /* Float weights in another layout: copied, the "quantized" model
         * would be bigger than the input; quantized, no loader of the
         * format would know the result. */
        *skip = true;
        return mq_report_add_left_out(r->rep, name,
                                      "Mistral's own-format copy of the weights, which "
                                      "Hugging Face loaders do not read; not quantized");
    }
    /* A link out of the directory, or a dangling one, is an error naming it. */
    return mq_hf_root_check(&r->root, path);
}

/* A FIFO, socket or device: named in the report, never silently missing. */
static mq_status copy_special(void *user, const char *path, const struct stat *st)
{
    hf_run *r = user;
    const char *rel = path + strlen(r->in_dir);
    while (*rel == '/')
        rel++;
    char reason[96];
    snprintf(reason, sizeof reason, "%s, not a regular file: nothing to copy",
             mq_infile_kind(st->st_mode));
    return mq_report_add_left_out(r->rep, rel, reason);
}

static mq_status copy_files(hf_run *r)
{
    mq_tree_copy c = {.slot = r->slot, .filter = copy_filter, .special = copy_special, .user = r};
    return mq_copy_tree(&c, r->in_dir, r->tmp);
}

/* ---- Planning across shards. */

/* The shard holding tensor `name`, or NULL: the index's weight_map (checked
 * against the shards when loaded), or the one file `m` when unsharded. */
static const char *holder(const hf_run *r, const mq_model *m, const char *base, size_t n,
                          const char *suffix, mq_status *rc)
{
    char *name = mq_name_with(base, n, suffix);
    const char *where = NULL;
    if (!name) {
        *rc = no_memory(r->in_dir);
        return NULL;
    }
    json_t *map = json_object_get(r->index, "weight_map");
    if (map)
        where = json_string_value(json_object_get(map, name));
    else if (mq_model_find(m, name))
        where = r->shards.names[0];
    free(name);
    return where;
}

/* A quantized layer split over shards (its codes in one, the scale in the
 * next) passes each shard's own check: found here from the index, whatever
 * config.json says, naming both tensors and shards. */
static mq_status check_quantized_across(const hf_run *r, const mq_model *m, const mq_tensor *t,
                                        const char *shard)
{
    mq_status rc = MQ_OK;
    size_t n = strlen(t->name), np = strlen(MQ_PACKED_SUFFIX);
    const char *scale = NULL;
    if (t->dtype == MQ_DTYPE_I8 || t->dtype == MQ_DTYPE_F8_E4M3) {
        scale = holder(r, m, t->name, n, MQ_SCALE_SUFFIX, &rc);
    } else if (t->dtype == MQ_DTYPE_I32 && n > np && !strcmp(t->name + n - np, MQ_PACKED_SUFFIX)) {
        n -= np;
        if (holder(r, m, t->name, n, MQ_SHAPE_SUFFIX, &rc))
            scale = holder(r, m, t->name, n, MQ_SCALE_SUFFIX, &rc);
    }
    if (rc != MQ_OK || !scale) return rc;
    if (r->set->src_format == MQ_SRC_FORMAT_CT) {
        /* Read as a source: each layer from the one file that holds it whole. */
        if (!strcmp(scale, shard)) return MQ_OK;
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: layer '%.*s' is split over shards (its codes '%s' in '%s', its "
                            "scale in '%s'); a compressed-tensors source is read a file at a time",
                            r->in_dir, (int)n, t->name, t->name, shard, scale);
    }
    return mq_set_error(MQ_STATUS_E_FORMAT,
                        "%s: tensor '%s' in '%s' is already quantized (its scale '%.*s%s' is in "
                        "'%s'); start from the float model",
                        r->in_dir, t->name, shard, (int)n, t->name, MQ_SCALE_SUFFIX, scale);
}

/* An FP8 block weight and its weight_scale_inv are read from one file: a pair
 * split over shards would leave codes without scales (or scales without
 * codes) in the output, so it is refused, naming both tensors and shards. */
static mq_status check_fp8_pair(const hf_run *r, const mq_model *m, const mq_tensor *t,
                                const char *shard)
{
    size_t n = strlen(t->name), k = strlen(MQ_SCALE_INV_SUFFIX);
    bool is_scale = n > k && !strcmp(t->name + n - k, MQ_SCALE_INV_SUFFIX);
    if (t->dtype != MQ_DTYPE_F8_E4M3 && !is_scale) return MQ_OK;
    if (t->dtype == MQ_DTYPE_F8_E4M3 && mq_fp8_block_scale(m, t)) return MQ_OK;
    mq_status rc = MQ_OK;
    const char *where = is_scale ? holder(r, m, t->name, n - k, "", &rc)
                                 : holder(r, m, t->name, n, MQ_SCALE_INV_SUFFIX, &rc);
    if (rc != MQ_OK || (where && !strcmp(where, shard))) return rc;
    if (is_scale) {
        char *w = strndup(t->name, n - k);
        const mq_tensor *wt = w ? mq_model_find(m, w) : NULL;
        free(w);
        if (wt && wt->dtype == MQ_DTYPE_F8_E4M3) return MQ_OK;
    }
    if (!where) {
        if (is_scale) return MQ_OK; /* a float model's tensor of that name */
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: tensor '%s' in '%s' is FP8 with no '%s%s' beside it: not an "
                            "FP8 block weight",
                            r->in_dir, t->name, shard, t->name, MQ_SCALE_INV_SUFFIX);
    }
    return mq_set_error(MQ_STATUS_E_FORMAT,
                        "%s: tensor '%s' in '%s' and its FP8 block pair in '%s' are in "
                        "different shards, which is not read",
                        r->in_dir, t->name, shard, where);
}

/* A tensor beside a weight we quantize under a name compressed-tensors gives
 * the layer's tensors (a.weight in one shard, a.weight_scale or a stray
 * a.weight_zero_point in the next) is found from the headers and the index
 * before anything is written, naming both tensors and shards. So is a layer
 * already quantized across shards. */
static mq_status check_shard_names(hf_run *r)
{
    mq_status rc = MQ_OK;
    for (size_t i = 0; i < r->shards.count && rc == MQ_OK; i++) {
        char *sp = mq_path_join(r->in_dir, r->shards.names[i]);
        mq_model *m = NULL;
        if (!sp) return no_memory(r->in_dir);
        rc = mq_model_open(sp, &m);
        if (rc == MQ_OK &&
            ((rc = mq_check_no_foreign(m, r->set->src_block[0] != 0)) != MQ_OK ||
             (r->set->src_format != MQ_SRC_FORMAT_MXFP4 && (rc = mq_check_no_mxfp4(m)) != MQ_OK)))
            mq_error_prefix("%s: %s", r->in_dir, r->shards.names[i]);
        for (size_t k = 0; rc == MQ_OK && k < mq_model_count(m); k++) {
            const mq_tensor *t = mq_model_tensor(m, k);
            char reason[256];
            if ((rc = check_quantized_across(r, m, t, r->shards.names[i])) != MQ_OK) break;
            if (r->set->src_block[0] && (rc = check_fp8_pair(r, m, t, r->shards.names[i])) != MQ_OK)
                break;
            if (!mq_scheme_quantizes(&r->set->scheme)) continue;
            mq_action a = mq_planner_decide(r->planner, t->name, t->dtype, t->rank, t->shape,
                                            reason, sizeof reason);
            if ((rc = mq_planner_error(r->planner)) != MQ_OK || a != MQ_ACTION_QUANTIZE) continue;
            for (size_t c = 0; c < mq_companion_count() && rc == MQ_OK; c++) {
                const char *suffix = mq_companion_suffix(c);
                const char *where = holder(r, m, t->name, strlen(t->name), suffix, &rc);
                if (where)
                    rc = mq_set_error(MQ_STATUS_E_DATA,
                                      "%s: tensor '%s' in '%s': '%s%s' in '%s' is a name the "
                                      "quantized layer has (already quantized, or a stray "
                                      "tensor?); remove it or leave the weight out",
                                      r->in_dir, t->name, r->shards.names[i], t->name, suffix,
                                      where);
            }
        }
        mq_model_free(m);
        free(sp);
    }
    return rc;
}

/* ---- Writing the output. */

/* Shards are independent files: each device takes the next one. */
static mq_status quantize_on_devices(hf_run *r, mq_stream_totals *totals)
{
    size_t n = r->shards.count;
    char **sp = calloc(n, sizeof *sp), **dp = calloc(n, sizeof *dp);
    mq_status rc = sp && dp ? MQ_OK : no_memory(r->in_dir);
    for (size_t i = 0; rc == MQ_OK && i < n; i++) {
        sp[i] = mq_path_join(r->in_dir, r->shards.names[i]);
        dp[i] = mq_path_join(r->tmp, r->shards.names[i]);
        if (!sp[i] || !dp[i])
            rc = no_memory(r->in_dir);
        else
            mq_cleanup_add(r->slot, 'f', dp[i]); /* here: the table takes one writer */
    }
    mq_report_set_device(r->rep, r->be->backend, r->be->platform, r->be->device);
    if (rc == MQ_OK)
        rc = mq_stream_files((const char *const *)sp, (const char *const *)dp, n, r->set, &r->hints,
                             r->bes, r->n_be, r->rep, totals);
    for (size_t i = 0; i < n && sp && dp; i++) {
        free(sp[i]);
        free(dp[i]);
    }
    free(sp);
    free(dp);
    return rc;
}

static mq_status quantize_shards(hf_run *r)
{
    mq_stream_totals totals = {0};
    mq_status rc = MQ_OK;
    for (size_t pass = 0; pass < 2 && rc == MQ_OK; pass++) {
        if (pass == 1 && r->n_be > 1) return quantize_on_devices(r, &totals);
        for (size_t i = 0; i < r->shards.count && rc == MQ_OK; i++) {
            char *sp = mq_path_join(r->in_dir, r->shards.names[i]);
            char *dp = mq_path_join(r->tmp, r->shards.names[i]);
            if (!sp || !dp) {
                rc = no_memory(r->in_dir);
            } else if (pass == 0) { /* totals first, so progress covers the whole model */
                uint64_t bytes = 0;
                size_t tensors = 0;
                rc = mq_stream_measure(sp, &bytes, &tensors);
                totals.bytes_total += bytes;
                totals.tensors_total += tensors;
            } else {
                mq_cleanup_add(r->slot, 'f', dp);
                rc = mq_stream_file(sp, dp, r->set, r->planner, r->be, r->rep, &totals);
            }
            free(sp);
            free(dp);
        }
    }
    if (rc == MQ_OK)
        rc = mq_report_add_device(r->rep, r->be->backend, r->be->platform, r->be->device,
                                  r->shards.count);
    return rc;
}

static mq_status write_text(hf_run *r, const char *name, const char *text, size_t len)
{
    char *path = mq_path_join(r->tmp, name);
    if (!path) return no_memory(name);
    mq_status rc = mq_write_new_file(r->slot, path, text, len);
    free(path);
    return rc;
}

static mq_status write_index(hf_run *r)
{
    char *text = NULL;
    size_t len = 0;
    mq_status rc = mq_hf_index_render(r->tmp, &r->shards, r->index, &text, &len);
    if (rc == MQ_OK) rc = write_text(r, MQ_HF_INDEX, text, len);
    free(text);
    return rc;
}

static mq_status write_config(hf_run *r)
{
    char *text = NULL;
    size_t len = 0;
    mq_status rc;
    if (r->set->plain_float) {
        json_object_del(r->config, "quantization_config");
        rc = mq_hf_json_dump(r->config, false, &text, &len);
    } else {
        rc = mq_hf_config_render(r->config, &r->set->scheme, r->planner, r->rep, r->first_entry,
                                 &text, &len);
    }
    if (rc == MQ_OK) rc = write_text(r, MQ_HF_CONFIG, text, len);
    free(text);
    return rc;
}

/* rename() replaces an empty directory atomically, and fails when something
 * appeared in it during the run. */
static mq_status publish(hf_run *r)
{
    mq_status rc;
    /* mkdtemp made it 0700; a new directory is 0777 less the umask, as mkdir
     * gives (copied subdirectories keep their own mode less the umask). */
    (void)chmod(r->tmp, (0777 & ~mq_umask()) | 0700);
    if ((rc = mq_sync_dir(r->tmp)) != MQ_OK) return rc;
    /* Not once the signal cleanup has begun: the directory may be half
     * removed already. */
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, -1, NULL)) return mq_cleanup_interrupted(r->out);
    int moved = rename(r->tmp, r->out), err = errno;
    mq_cleanup_leave(&sec);
    if (moved != 0) {
        errno = err;
        if (errno == ENOTEMPTY || errno == EEXIST)
            return mq_set_error(MQ_STATUS_E_OUTPUT,
                                "output directory '%s' is no longer empty (written by another "
                                "program during the run)",
                                r->out);
        return mq_set_error(MQ_STATUS_E_OUTPUT, "renaming '%s' to '%s': %s", r->tmp, r->out,
                            strerror(errno));
    }
    free(r->tmp);
    r->tmp = NULL;
    mq_cleanup_close(r->slot);
    r->slot = -1;
    if ((rc = mq_sync_dir(r->parent)) != MQ_OK)
        mq_error_prefix("'%s' is complete but may not survive a crash", r->out);
    return rc;
}

/* NVFP4: one reduction pass over the weights to quantize in every shard
 * before any shard is quantized, so that each fused set's members share one
 * global scale (q_proj and k_proj may lie in different files) and no shard
 * needs a pass of its own for its weights' amax. */
static mq_status fused_sets(hf_run *r)
{
    if (r->set->scheme.qkind != MQ_QK_NVFP4 || !mq_scheme_quantizes(&r->set->scheme)) return MQ_OK;
    size_t n = r->shards.count;
    char **sp = calloc(n ? n : 1, sizeof *sp);
    mq_status rc = sp && (r->fused = mq_fused_new()) ? MQ_OK : no_memory(r->in_dir);
    for (size_t i = 0; rc == MQ_OK && i < n; i++)
        if (!(sp[i] = mq_path_join(r->in_dir, r->shards.names[i]))) rc = no_memory(r->in_dir);
    if (rc == MQ_OK)
        rc = mq_fused_scan(r->fused, (const char *const *)sp, n, r->planner, r->be,
                           r->set->memory_limit, r->set->src_block, r->set->src_dtype);
    for (size_t i = 0; sp && i < n; i++)
        free(sp[i]);
    free(sp);
    if (rc != MQ_OK) return rc;
    if (r->set != &r->with_source) {
        r->with_source = *r->set;
        r->set = &r->with_source;
    }
    r->with_source.fused_amax = mq_fused_amax;
    r->with_source.fused_user = r->fused;
    return MQ_OK;
}

static mq_status run(hf_run *r)
{
    mq_status rc;
    if ((rc = check_input(r)) != MQ_OK) return rc;
    if ((rc = load_model_files(r)) != MQ_OK) return rc;
    if (r->config) {
        r->with_source = *r->set;
        mq_settings *w = &r->with_source;
        if (mq_hf_fp8_source(r->config, w->src_block, &w->src_model_dtype) ||
            (w->src_format = mq_hf_other_source(r->config, &w->src_model_dtype))) {
            w->src_dtype = w->dequant_f32 ? MQ_DTYPE_F32 : w->src_model_dtype;
            r->set = w;
        }
    }
    if ((rc = check_output(r)) != MQ_OK) return rc;
    mq_hf_plan_hints(r->config, &r->hints);
    if ((rc = mq_planner_new(r->set, &r->planner)) != MQ_OK) return rc;
    mq_planner_set_hints(r->planner, &r->hints);
    if ((rc = check_shard_names(r)) != MQ_OK) return rc;
    /* Only now: opening a device takes time and may print a notice. */
    if (!r->be && (rc = mq_backend_open(&r->set->device, &r->own_be)) != MQ_OK) return rc;
    if (!r->be) r->be = r->own_be;
    if ((rc = fused_sets(r)) != MQ_OK) return rc;
    if ((rc = make_temp_dir(r)) != MQ_OK) return rc;
    if ((rc = copy_files(r)) != MQ_OK) return rc;
    if ((rc = quantize_shards(r)) != MQ_OK) return rc;
    if (r->sharded && (rc = write_index(r)) != MQ_OK) return rc;
    if (r->config && (rc = write_config(r)) != MQ_OK) return rc;
    return publish(r);
}

mq_status mq_hfdir_quantize(const char *in_dir, const char *out_dir, const mq_config *cfg,
                            mq_backend *be, mq_report *rep)
{
    mq_settings set;
    mq_status rc = mq_settings_init(&set, cfg);
    if (rc != MQ_OK) return rc;
    return mq_hfdir_quantize_on(in_dir, out_dir, &set, be ? &be : NULL, be ? 1 : 0, rep);
}

mq_status mq_hfdir_quantize_on(const char *in_dir, const char *out_dir, const mq_settings *set,
                               mq_backend *const *bes, size_t n_be, mq_report *rep)
{
    mq_settings defaults;
    hf_run r = {.in_dir = in_dir,
                .set = set,
                .be = n_be ? bes[0] : NULL,
                .bes = bes,
                .n_be = n_be,
                .rep = rep,
                .lock_fd = -1,
                .slot = -1};
    mq_report *own_rep = NULL;
    mq_status rc;

    if (!in_dir || !out_dir || !*in_dir || !*out_dir)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "quantize directory: NULL or empty path");
    if (!set) {
        if ((rc = mq_settings_init(&defaults, NULL)) != MQ_OK) return rc;
        r.set = &defaults;
    }
    if ((rc = split_output(&r, out_dir)) != MQ_OK) goto done;
    /* The config's ignore list comes from the report, so there always is one. */
    if (!r.rep && !(r.rep = own_rep = mq_report_new())) {
        rc = no_memory(in_dir);
        goto done;
    }
    r.first_entry = mq_report_count(r.rep);
    rc = run(&r);
done:
    if (r.tmp) mq_remove_tree(r.tmp);
    if (r.lock_fd >= 0) close(r.lock_fd);
    mq_cleanup_close(r.slot);
    free(r.tmp);
    free(r.out);
    free(r.parent);
    json_decref(r.index);
    json_decref(r.config);
    mq_hf_root_free(&r.root);
    mq_hf_shards_free(&r.shards);
    mq_backend_free(r.own_be);
    mq_fused_free(r.fused);
    mq_planner_free(r.planner);
    mq_report_free(own_rep);
    return rc;
}

mq_status mq_dequantize_dir(const char *in_dir, const char *out_dir, const mq_config *cfg)
{
    mq_clear_error();
    mq_settings set;
    mq_status rc = cfg ? mq_config_usable(cfg) : MQ_OK;
    if (rc == MQ_OK) rc = mq_settings_init(&set, cfg);
    if (rc != MQ_OK) return rc;
    /* Every tensor kept: the planner's exclusions win over everything. */
    static const char *const all[] = {"*"};
    set.exclude = all;
    set.n_exclude = 1;
    set.include = NULL;
    set.n_include = 0;
    set.plain_float = true;
    set.dequant_f32 = false;
    return mq_hfdir_quantize_on(in_dir, out_dir, &set, NULL, 0, NULL);
}
