/* Atomic output files: data goes to a temporary file beside the target, which
 * is fsynced and renamed over the target only when complete. A failed or
 * interrupted write leaves the target as it was and no temporary behind. */
#ifndef MQ_OUTFILE_H
#define MQ_OUTFILE_H

#include "monoquant.h"

#include <jansson.h>

#include <sys/types.h>

typedef struct mq_outfile mq_outfile;

/* Creates the temporary file "<dir>/.<base>.mqtmp-<pid>-XXXXXX", locked while
 * it lives, after removing dead runs' ones (mq_remove_stale_temps); registers it
 * for mq_signal_cleanup() (cleanup.h). Fails when the directory is missing or
 * the target is a directory. */
mq_status mq_outfile_open(const char *target, mq_outfile **out);
/* As mq_outfile_open; `what` names the file in errors ("report": "report
 * directory 'x' does not exist"). */
mq_status mq_outfile_open_as(const char *target, const char *what, mq_outfile **out);
/* The checks of mq_outfile_open without creating anything, plus a writable
 * directory: lets a caller refuse a path before hours of work rather than
 * after. `what` names the file in errors. */
mq_status mq_outfile_check(const char *target, const char *what);
/* Writes `root` as JSON text (json_dumps flags) and a newline to `path`
 * atomically; `what` names the file in errors. */
mq_status mq_outfile_write_json(const char *path, const json_t *root, size_t flags,
                                const char *what);
/* A JSON string of `s` (NULL: ""). Bytes that are not UTF-8 (a file name can
 * hold any) become U+FFFD instead of failing the whole document. */
json_t *mq_json_str(const char *s);
/* Sequential write of all n bytes (retries short writes, EINTR). */
mq_status mq_outfile_write(mq_outfile *f, const void *buf, size_t n);
/* Positioned write of all n bytes. */
mq_status mq_outfile_pwrite(mq_outfile *f, const void *buf, size_t n, uint64_t off);
/* Copies n bytes of in_fd at in_off to out_fd at out_off: in the kernel
 * (copy_file_range: shared or copied blocks) where the filesystems allow,
 * else pread/pwrite through `bounce` (cap bytes, cap > 0). Input that ends
 * early is MQ_STATUS_E_IO naming in_name; a failed write MQ_STATUS_E_OUTPUT
 * naming out_name. */
mq_status mq_copy_range(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, uint64_t n,
                        void *bounce, size_t cap, const char *in_name, const char *out_name);
/* Copies n bytes of `in_fd` at `in_off` to offset `out_off` of the output,
 * in the kernel (copy_file_range) where it can, else through `bounce` (cap
 * bytes, cap > 0). `what` names the source in errors. */
mq_status mq_outfile_copy_from(mq_outfile *f, int in_fd, uint64_t in_off, uint64_t n,
                               uint64_t out_off, void *bounce, size_t cap, const char *what);
/* Reserves the file's final size on disk up front: a full disk fails here
 * rather than at the end, and the filesystem allocates blocks once instead
 * of write by write. MQ_OK where the filesystem cannot preallocate. */
mq_status mq_outfile_reserve(mq_outfile *f, uint64_t size);
/* Starts writing [off, off + n) to disk without waiting for it, so the
 * final fsync has little left to do. Best effort: errors show at commit. */
void mq_outfile_writeback(mq_outfile *f, uint64_t off, uint64_t n);
/* fsync, rename over the target, fsync the directory, free. On failure the
 * temporary is removed. Always frees f. */
mq_status mq_outfile_commit(mq_outfile *f);
/* Removes the temporary and frees f. NULL is a no-op. */
void mq_outfile_abort(mq_outfile *f);

/* "<dir>/.<base>.mqtmp-<pid>-XXXXXX" (malloc'd; base cut to 200 bytes), the
 * template for mkstemp/mkdtemp of a temporary beside target <dir>/<base>. The
 * pid and a lock (flock LOCK_EX) the live run holds on the temporary let
 * mq_remove_stale_temps() tell a dead run's leftovers from a live run's. */
char *mq_temp_template(const char *dir, const char *base);
/* Whether a directory entry's name is such a temporary (a live run's or a
 * dead one's): never part of a model. */
bool mq_is_temp_name(const char *name);
/* fsyncs directory `path`, so that the entries made in it survive a crash. A
 * directory that cannot be opened, or cannot be synced (EINVAL on some
 * filesystems), is left to the filesystem's own flush. */
mq_status mq_sync_dir(const char *path);
/* Removes a directory tree without following links (best effort). */
void mq_remove_tree(const char *path);

/* The process's umask, read once on first use without changing it (from
 * /proc/self/status; where that is missing, umask() twice under a once-guard).
 * New files get 0666 & ~umask and new directories 0777 & ~umask, as cp gives. */
mode_t mq_umask(void);

/* MQ_STATUS_E_OUTPUT when `target` exists and is the same file (device and
 * inode, so symlinks and hard links count) as `input`. */
mq_status mq_check_not_same_file(const char *input, const char *target);

#endif
