/* Durable directory output (see dircopy.h). */
#include "dircopy.h"

#include "cleanup.h"
#include "error.h"
#include "infile.h"
#include "outfile.h"
#include "path.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FALLBACK_BUF ((size_t)1 << 20)
/* Deeper than any model repository; stops a symbolic-link loop. */
#define MAX_DEPTH 32

static mq_status no_memory(const char *what)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", what);
}

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

/* Records `path` in the cleanup slot and creates it (type 'f': a new file
 * opened for writing, *fd its descriptor; 'd': a directory) in one section,
 * so that the signal cleanup sees both or neither. Once the cleanup has
 * begun nothing is created: MQ_STATUS_E_INTERRUPTED. */
static mq_status create_recorded(int slot, char type, const char *path, mode_t mode, int *fd)
{
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, slot, path)) return mq_cleanup_interrupted(path);
    mq_cleanup_add(slot, type, path);
    int made = type == 'd' ? mkdir(path, mode)
                           : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    int err = errno;
    mq_cleanup_leave(&sec);
    if (made < 0) return mq_set_error(MQ_STATUS_E_OUTPUT, "creating '%s': %s", path, strerror(err));
    if (fd) *fd = made;
    return MQ_OK;
}

mq_status mq_write_new_file(int slot, const char *path, const void *data, size_t n)
{
    int fd;
    /* 0666 less the umask, as mq_outfile gives its files. */
    mq_status rc = create_recorded(slot, 'f', path, 0666, &fd);
    if (rc != MQ_OK) return rc;
    rc = write_all(fd, data, n, path);
    if (rc == MQ_OK && fsync(fd) != 0)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "syncing '%s': %s", path, strerror(errno));
    if (close(fd) != 0 && errno != EINTR && rc == MQ_OK)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "closing '%s': %s", path, strerror(errno));
    return rc;
}

static mq_status copy_file(const mq_tree_copy *c, const char *sp, const char *dp,
                           const struct stat *st)
{
    int in, out = -1;
    mq_status rc = mq_infile_open(sp, MQ_STATUS_E_IO, &in, NULL);
    if (rc != MQ_OK) return rc;
    if ((rc = create_recorded(c->slot, 'f', dp, 0600, &out)) != MQ_OK) {
        out = -1;
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

static mq_status copy_tree(const mq_tree_copy *c, const char *src, const char *dst, int depth);

static mq_status copy_dir(const mq_tree_copy *c, const char *sp, const char *dp,
                          const struct stat *st, int depth)
{
    if (depth >= MAX_DEPTH)
        return mq_set_error(MQ_STATUS_E_IO, "'%s': nested too deeply (a symbolic link loop?)", sp);
    mq_status rc = create_recorded(c->slot, 'd', dp, 0700, NULL);
    if (rc != MQ_OK) return rc;
    rc = copy_tree(c, sp, dp, depth + 1);
    if (rc == MQ_OK) (void)chmod(dp, (st->st_mode & 0777 & ~mq_umask()) | 0700);
    if (rc == MQ_OK) rc = mq_sync_dir(dp);
    return rc;
}

static mq_status copy_entry(const mq_tree_copy *c, const char *src, const char *dst,
                            const char *name, int depth)
{
    struct stat st;
    bool skip = false;
    mq_status rc = MQ_OK;
    char *sp = mq_path_join(src, name), *dp = mq_path_join(dst, name);
    if (!sp || !dp) {
        rc = no_memory(src);
        goto done;
    }
    if (c->filter && ((rc = c->filter(c->user, sp, name, depth, &skip)) != MQ_OK || skip))
        goto done;
    if (stat(sp, &st) != 0) {
        /* A dangling link is a file the copy would silently lack. */
        rc = mq_set_error(MQ_STATUS_E_IO, "'%s': %s", sp, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        rc = copy_dir(c, sp, dp, &st, depth);
    } else if (S_ISREG(st.st_mode)) {
        rc = copy_file(c, sp, dp, &st);
    } else if (c->special) {
        rc = c->special(c->user, sp, &st);
    } else {
        rc = mq_set_error(MQ_STATUS_E_IO, "'%s': %s, not a regular file: nothing to copy", sp,
                          mq_infile_kind(st.st_mode));
    }
done:
    free(sp);
    free(dp);
    return rc;
}

static mq_status copy_tree(const mq_tree_copy *c, const char *src, const char *dst, int depth)
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
        if (!strcmp(name, ".") || !strcmp(name, "..") || mq_is_temp_name(name)) continue;
        if ((rc = copy_entry(c, src, dst, name, depth)) != MQ_OK) break;
    }
    closedir(d);
    return rc;
}

mq_status mq_copy_tree(const mq_tree_copy *c, const char *src, const char *dst)
{
    return copy_tree(c, src, dst, 0);
}
