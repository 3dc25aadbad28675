/* Model directory to model directory: checks the input, quantizes each shard
 * with mq_stream_file (shards spread over the devices of a device list by
 * mq_stream_files) into a temporary directory beside the target, adds the
 * rebuilt index and config.json, copies every other file, and renames the
 * directory into place. A failure or a signal leaves no output and no
 * temporary behind; the input is only read. */
#define _GNU_SOURCE /* copy_file_range, realpath */
#include "hfdir.h"

#include "cleanup.h"
#include "error.h"
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

#define FALLBACK_BUF ((size_t)1 << 20)
/* Deeper than any model repository; stops a symbolic-link loop. */
#define MAX_DEPTH 32

/* ---- One run. */

typedef struct {
    const char *in_dir;
    struct stat in_st;
    mq_hf_root root; /* where the input's symbolic links may lead */
    const mq_config *cfg;
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
    return mq_hf_root_init(&r->root, r->in_dir, r->cfg->follow_symlinks);
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

/* Directories cannot always be synced (EINVAL on some filesystems); their
 * entries then reach the disk with the filesystem's own flush. */
static mq_status sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return MQ_OK;
    mq_status rc = MQ_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "syncing directory '%s': %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* ---- Copying the files that are not weights. */

static mq_status write_all(int fd, const char *buf, size_t n, const char *path)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': %s", path,
                                strerror(w < 0 ? errno : EIO));
        buf += w;
        n -= (size_t)w;
    }
    return MQ_OK;
}

static mq_status copy_file(hf_run *r, const char *sp, const char *dp, const struct stat *st)
{
    int in, out = -1;
    mq_status rc = mq_infile_open(sp, MQ_STATUS_E_IO, &in, NULL);
    if (rc != MQ_OK) return rc;
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, r->slot, dp)) {
        rc = mq_cleanup_interrupted(r->out);
        goto done;
    }
    mq_cleanup_add(r->slot, 'f', dp);
    out = open(dp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int err = errno;
    mq_cleanup_leave(&sec);
    if (out < 0) {
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "creating '%s': %s", dp, strerror(err));
        goto done;
    }
    void *buf = malloc(FALLBACK_BUF);
    if (!buf) {
        rc = no_memory(sp);
        goto done;
    }
    rc = mq_copy_range(in, 0, out, 0, (uint64_t)st->st_size, buf, FALLBACK_BUF, sp, dp);
    free(buf);
    if (rc != MQ_OK) goto done;
    /* The copy keeps the permissions (a script stays executable) less the
     * umask, as cp does; a failed fchmod (e.g. on vfat) only leaves 0600. */
    (void)fchmod(out, st->st_mode & 0777 & ~mq_umask());
    if (fsync(out) != 0)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "syncing '%s': %s", dp, strerror(errno));
done:
    if (out >= 0 && close(out) != 0 && errno != EINTR && rc == MQ_OK)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "closing '%s': %s", dp, strerror(errno));
    close(in);
    return rc;
}

/* Temporaries of a run (ours, or one that was killed) are not model files. */
static bool is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, ".mqtmp-") != NULL;
}

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

static mq_status copy_tree(hf_run *r, const char *src, const char *dst, int depth);

static mq_status copy_dir(hf_run *r, const char *sp, const char *dp, const struct stat *st,
                          int depth)
{
    if (depth >= MAX_DEPTH)
        return mq_set_error(MQ_STATUS_E_IO, "'%s': nested too deeply (a symbolic link loop?)", sp);
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, r->slot, dp)) return mq_cleanup_interrupted(r->out);
    mq_cleanup_add(r->slot, 'd', dp);
    int made = mkdir(dp, 0700), err = errno;
    mq_cleanup_leave(&sec);
    if (made != 0) return mq_set_error(MQ_STATUS_E_OUTPUT, "creating '%s': %s", dp, strerror(err));
    mq_status rc = copy_tree(r, sp, dp, depth + 1);
    if (rc == MQ_OK) (void)chmod(dp, (st->st_mode & 0777 & ~mq_umask()) | 0700);
    if (rc == MQ_OK) rc = sync_dir(dp);
    return rc;
}

static mq_status copy_entry(hf_run *r, const char *src, const char *dst, const char *name,
                            int depth)
{
    struct stat st;
    mq_status rc = MQ_OK;
    char *sp = mq_path_join(src, name), *dp = mq_path_join(dst, name);
    if (!sp || !dp) {
        rc = no_memory(src);
        goto done;
    }
    /* A link out of the directory, or a dangling one, is an error naming it. */
    if ((rc = mq_hf_root_check(&r->root, sp)) != MQ_OK) goto done;
    if (stat(sp, &st) != 0) {
        /* A dangling link is a file the copy would silently lack. */
        rc = mq_set_error(MQ_STATUS_E_IO, "'%s': %s", sp, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = copy_dir(r, sp, dp, &st, depth);
    } else if (S_ISREG(st.st_mode)) {
        rc = copy_file(r, sp, dp, &st);
    } else {
        /* A FIFO, socket or device has no content to copy (and reading a FIFO
         * would wait for a writer): named, never silently missing. */
        const char *rel = sp + strlen(r->in_dir);
        while (*rel == '/')
            rel++;
        char reason[96];
        snprintf(reason, sizeof reason, "%s, not a regular file: nothing to copy",
                 mq_infile_kind(st.st_mode));
        rc = mq_report_add_left_out(r->rep, rel, reason);
    }
done:
    free(sp);
    free(dp);
    return rc;
}

static mq_status copy_tree(hf_run *r, const char *src, const char *dst, int depth)
{
    mq_status rc = MQ_OK;
    DIR *d = opendir(src);
    if (!d) return mq_set_error(MQ_STATUS_E_IO, "'%s': %s", src, strerror(errno));
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) rc = mq_set_error(MQ_STATUS_E_IO, "'%s': %s", src, strerror(errno));
            break;
        }
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || is_temp_name(name)) continue;
        if (depth == 0 && written_not_copied(r, name)) continue;
        if (depth == 0 && mq_hf_is_consolidated(name)) {
            /* Float weights in another layout: copied, the "quantized" model
             * would be bigger than the input; quantized, no loader of the
             * format would know the result. */
            rc = mq_report_add_left_out(r->rep, name,
                                        "Mistral's own-format copy of the weights, which "
                                        "Hugging Face loaders do not read; not quantized");
            if (rc != MQ_OK) break;
            continue;
        }
        if ((rc = copy_entry(r, src, dst, name, depth)) != MQ_OK) break;
    }
    closedir(d);
    return rc;
}

/* ---- Planning across shards. */

/* A name quantizing a tensor adds may already be a tensor of another shard
 * (a.weight in one, a.weight_scale in the next): found from the headers and
 * the index before anything is written, naming both shards. */
static mq_status check_shard_names(hf_run *r)
{
    json_t *map = json_object_get(r->index, "weight_map");
    mq_status rc = MQ_OK;
    for (size_t i = 0; map && i < r->shards.count && rc == MQ_OK; i++) {
        char *sp = mq_path_join(r->in_dir, r->shards.names[i]);
        mq_model *m = NULL;
        if (!sp) return no_memory(r->in_dir);
        rc = mq_model_open(sp, &m);
        for (size_t k = 0; rc == MQ_OK && k < mq_model_count(m); k++) {
            const mq_tensor *t = mq_model_tensor(m, k);
            char reason[256];
            mq_action a = mq_planner_decide(r->planner, t->name, t->dtype, t->rank, t->shape,
                                            reason, sizeof reason);
            if ((rc = mq_planner_error(r->planner)) != MQ_OK || a != MQ_ACTION_QUANTIZE) continue;
            mq_qlayout l;
            if ((rc = mq_qlayout_init(&l, t, r->cfg)) != MQ_OK) break;
            for (int o = 0; o < MQ_QOUT_COUNT && rc == MQ_OK; o++) {
                const char *n = l.out[o].name;
                json_t *where = n && strcmp(n, t->name) != 0 ? json_object_get(map, n) : NULL;
                if (where)
                    rc = mq_set_error(MQ_STATUS_E_DATA,
                                      "%s: tensor '%s' in '%s': quantizing it adds '%s', which "
                                      "'%s' already holds (already quantized?)",
                                      r->in_dir, t->name, r->shards.names[i], n,
                                      json_string_value(where));
            }
            mq_qlayout_free(&l);
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
        rc = mq_stream_files((const char *const *)sp, (const char *const *)dp, n, r->cfg, &r->hints,
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
                rc = mq_stream_file(sp, dp, r->cfg, r->planner, r->be, r->rep, &totals);
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
    mq_status rc = MQ_OK;
    char *path = mq_path_join(r->tmp, name);
    if (!path) return no_memory(name);
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, r->slot, path)) {
        rc = mq_cleanup_interrupted(r->out);
        goto done;
    }
    mq_cleanup_add(r->slot, 'f', path);
    /* 0666 less the umask, as mq_outfile gives the shards. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666), err = errno;
    mq_cleanup_leave(&sec);
    if (fd < 0) {
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "creating '%s': %s", path, strerror(err));
        goto done;
    }
    rc = write_all(fd, text, len, path);
    if (rc == MQ_OK && fsync(fd) != 0)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "syncing '%s': %s", path, strerror(errno));
    if (close(fd) != 0 && errno != EINTR && rc == MQ_OK)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "closing '%s': %s", path, strerror(errno));
done:
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
    mq_status rc =
        mq_hf_config_render(r->config, r->cfg, r->planner, r->rep, r->first_entry, &text, &len);
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
    if ((rc = sync_dir(r->tmp)) != MQ_OK) return rc;
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
    if ((rc = sync_dir(r->parent)) != MQ_OK)
        mq_error_prefix("'%s' is complete but may not survive a crash", r->out);
    return rc;
}

static mq_status run(hf_run *r)
{
    mq_status rc;
    if ((rc = check_input(r)) != MQ_OK) return rc;
    if ((rc = load_model_files(r)) != MQ_OK) return rc;
    if ((rc = check_output(r)) != MQ_OK) return rc;
    mq_hf_plan_hints(r->config, &r->hints);
    if ((rc = mq_planner_new(r->cfg, &r->planner)) != MQ_OK) return rc;
    mq_planner_set_hints(r->planner, &r->hints);
    if (mq_config_quantizes(r->cfg) && (rc = check_shard_names(r)) != MQ_OK) return rc;
    /* Only now: opening a device takes time and may print a notice. */
    if (!r->be && (rc = mq_backend_open(r->cfg, &r->own_be)) != MQ_OK) return rc;
    if (!r->be) r->be = r->own_be;
    if ((rc = make_temp_dir(r)) != MQ_OK) return rc;
    if ((rc = copy_tree(r, r->in_dir, r->tmp, 0)) != MQ_OK) return rc;
    if ((rc = quantize_shards(r)) != MQ_OK) return rc;
    if (r->sharded && (rc = write_index(r)) != MQ_OK) return rc;
    if (r->config && (rc = write_config(r)) != MQ_OK) return rc;
    return publish(r);
}

mq_status mq_hfdir_quantize(const char *in_dir, const char *out_dir, const mq_config *cfg,
                            mq_backend *be, mq_report *rep)
{
    return mq_hfdir_quantize_on(in_dir, out_dir, cfg, be ? &be : NULL, be ? 1 : 0, rep);
}

mq_status mq_hfdir_quantize_on(const char *in_dir, const char *out_dir, const mq_config *cfg,
                               mq_backend *const *bes, size_t n_be, mq_report *rep)
{
    hf_run r = {.in_dir = in_dir,
                .cfg = cfg,
                .be = n_be ? bes[0] : NULL,
                .bes = bes,
                .n_be = n_be,
                .rep = rep,
                .lock_fd = -1,
                .slot = -1};
    mq_config defaults;
    mq_report *own_rep = NULL;
    mq_status rc;

    if (!in_dir || !out_dir || !*in_dir || !*out_dir)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "quantize directory: NULL or empty path");
    if (!cfg) {
        mq_config_init(&defaults);
        r.cfg = &defaults;
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
    mq_planner_free(r.planner);
    mq_report_free(own_rep);
    if (r.cfg == &defaults) mq_config_free(&defaults);
    return rc;
}
