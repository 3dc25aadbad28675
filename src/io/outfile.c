/* Atomic output files: a temporary beside the target, checked writes, fsync,
 * rename, directory fsync. Live temporaries are registered for
 * mq_signal_cleanup() (cleanup.c). */
#define _GNU_SOURCE /* copy_file_range, sync_file_range, fallocate */
#include "outfile.h"

#include "cleanup.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest piece of the target's name copied into the temporary's name, so
 * that ".<base>.mqtmp-<pid>-XXXXXX" stays under NAME_MAX. */
#define TMP_BASE_MAX 200
#define TMP_TAG ".mqtmp-"
/* One write() call at most; Linux caps a single write near 2 GiB anyway. */
#define WRITE_CHUNK ((size_t)1 << 30)

struct mq_outfile {
    int fd;
    int slot; /* -1: not registered (table full or path too long) */
    bool failed;
    char *target, *dir, *tmp;
    const char *what; /* "output", "report", ... */
};

static void outfile_free(mq_outfile *f)
{
    mq_cleanup_close(f->slot);
    free(f->target);
    free(f->dir);
    free(f->tmp);
    free(f);
}

/* Closes and removes the temporary, then frees f. */
static void outfile_discard(mq_outfile *f)
{
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    outfile_free(f);
}

static mode_t g_umask;
static pthread_once_t g_umask_once = PTHREAD_ONCE_INIT;

static void read_umask(void)
{
    /* umask() both reads and sets, so a thread creating a file meanwhile
     * would see 022 for a moment; /proc tells it without that. */
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    unsigned mask = 0;
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = sscanf(line, "Umask: %o", &mask) == 1;
    if (f) fclose(f);
    if (!found) {
        mode_t old = umask(022);
        umask(old);
        mask = old;
    }
    g_umask = (mode_t)(mask & 0777);
}

mode_t mq_umask(void)
{
    pthread_once(&g_umask_once, read_umask);
    return g_umask;
}

static mq_status out_fail(mq_outfile *f, const char *what, int err)
{
    f->failed = true;
    return mq_set_error(MQ_STATUS_E_OUTPUT, "%s %s '%s': %s", what, f->what, f->target,
                        strerror(err));
}

/* Directory part of target ("." when there is none); *base points into target. */
static char *split_target(const char *target, const char **base)
{
    const char *slash = strrchr(target, '/');
    if (!slash) {
        *base = target;
        return strdup(".");
    }
    *base = slash + 1;
    if (slash == target) return strdup("/");
    size_t n = (size_t)(slash - target);
    char *dir = malloc(n + 1);
    if (dir) {
        memcpy(dir, target, n);
        dir[n] = '\0';
    }
    return dir;
}

/* Refuses what a rename would wreck or cannot reach; *mode is the new file's mode. */
static mq_status check_target(const char *target, const char *dir, const char *base,
                              const char *what, mode_t *mode)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return mq_set_error(MQ_STATUS_E_OUTPUT, "%s directory '%s' does not exist", what, dir);
        return mq_set_error(MQ_STATUS_E_OUTPUT, "%s directory '%s': %s", what, dir,
                            strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return mq_set_error(MQ_STATUS_E_OUTPUT, "%s directory '%s' is not a directory", what, dir);
    *mode = 0666 & ~mq_umask();
    if (stat(target, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return mq_set_error(MQ_STATUS_E_OUTPUT, "%s '%s' is a directory", what, target);
        /* Renaming over /dev/null or a FIFO would replace the special file itself. */
        if (!S_ISREG(st.st_mode))
            return mq_set_error(MQ_STATUS_E_OUTPUT, "%s '%s' is not a regular file", what, target);
        *mode = st.st_mode & 0777; /* a replaced file keeps its permissions */
    }
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return mq_set_error(MQ_STATUS_E_OUTPUT, "%s '%s' is a directory", what, target);
    return MQ_OK;
}

char *mq_temp_template(const char *dir, const char *base)
{
    size_t blen = strlen(base) < TMP_BASE_MAX ? strlen(base) : TMP_BASE_MAX;
    size_t n = strlen(dir) + blen + sizeof "/." TMP_TAG "-XXXXXX" + 20;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s/.%.*s" TMP_TAG "%ld-XXXXXX", dir, (int)blen, base, (long)getpid());
    return t;
}

bool mq_is_temp_name(const char *name)
{
    return name[0] == '.' && strstr(name, TMP_TAG) != NULL;
}

static mq_status make_temp(mq_outfile *f, const char *base, mode_t mode)
{
    if (!(f->tmp = mq_temp_template(f->dir, base)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "%s '%s': out of memory", f->what, f->target);
    /* A signal between creating the file and registering it would leave the
     * file behind: the cleanup waits until both are done. */
    mq_cleanup_section sec;
    if (!mq_cleanup_enter(&sec, -1, NULL)) {
        free(f->tmp);
        f->tmp = NULL;
        return mq_cleanup_interrupted(f->target);
    }
    f->fd = mkstemp(f->tmp);
    int err = errno;
    if (f->fd >= 0) f->slot = mq_cleanup_open(f->tmp, false);
    mq_cleanup_leave(&sec);
    if (f->fd < 0) {
        free(f->tmp);
        f->tmp = NULL;
        return mq_set_error(MQ_STATUS_E_OUTPUT, "creating a temporary file in '%s' for %s '%s': %s",
                            f->dir, f->what, f->target, strerror(err));
    }
    (void)fcntl(f->fd, F_SETFD, FD_CLOEXEC);
    /* Held until the descriptor closes: a later run that can take it knows
     * the owner is gone. Without lock support the pid alone tells. */
    (void)flock(f->fd, LOCK_EX | LOCK_NB);
    /* mkstemp makes 0600; a failed fchmod (e.g. on vfat) only leaves that mode. */
    (void)fchmod(f->fd, mode);
    return MQ_OK;
}

mq_status mq_outfile_open_as(const char *target, const char *what, mq_outfile **out)
{
    const char *base;
    mode_t mode = 0;
    mq_status st;
    if (out) *out = NULL;
    if (!target || !*target || !what || !out)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_outfile_open: NULL or empty argument");
    mq_outfile *f = calloc(1, sizeof *f);
    if (!f) return mq_set_error(MQ_STATUS_E_NOMEM, "%s '%s': out of memory", what, target);
    f->fd = -1;
    f->slot = -1;
    f->what = what;
    if (!(f->target = strdup(target)) || !(f->dir = split_target(f->target, &base))) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "%s '%s': out of memory", what, target);
        goto done;
    }
    if ((st = check_target(f->target, f->dir, base, what, &mode)) != MQ_OK) goto done;
    /* Best effort: a leftover that cannot be removed does not stop the write. */
    if (mq_remove_stale_temps(f->target, NULL, NULL) != MQ_OK) mq_clear_error();
    if ((st = make_temp(f, base, mode)) != MQ_OK) goto done;
    *out = f;
    f = NULL;
done:
    if (f) outfile_discard(f);
    return st;
}

mq_status mq_outfile_check(const char *target, const char *what)
{
    const char *base;
    mode_t mode;
    mq_status st;
    if (!target || !*target || !what)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_outfile_check: NULL or empty argument");
    char *dir = split_target(target, &base);
    if (!dir) return mq_set_error(MQ_STATUS_E_NOMEM, "%s '%s': out of memory", what, target);
    if ((st = check_target(target, dir, base, what, &mode)) == MQ_OK &&
        access(dir, W_OK | X_OK) != 0)
        st = mq_set_error(MQ_STATUS_E_OUTPUT, "%s directory '%s': %s", what, dir, strerror(errno));
    free(dir);
    return st;
}

mq_status mq_outfile_open(const char *target, mq_outfile **out)
{
    return mq_outfile_open_as(target, "output", out);
}

/* Writes all n bytes at `off`, or at the file position when off < 0. */
static mq_status write_all(mq_outfile *f, const unsigned char *p, size_t n, int64_t off)
{
    if (!f || (n && !p))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "outfile write: NULL argument");
    if (f->failed)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': an earlier write failed", f->target);
    while (n > 0) {
        size_t chunk = n < WRITE_CHUNK ? n : WRITE_CHUNK;
        ssize_t w = off < 0 ? write(f->fd, p, chunk) : pwrite(f->fd, p, chunk, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        /* A zero-byte write of a non-empty buffer would loop forever. */
        if (w <= 0) return out_fail(f, "writing", w < 0 ? errno : EIO);
        p += w;
        n -= (size_t)w;
        if (off >= 0) off += w;
    }
    return MQ_OK;
}

mq_status mq_outfile_write(mq_outfile *f, const void *buf, size_t n)
{
    return write_all(f, buf, n, -1);
}

mq_status mq_outfile_pwrite(mq_outfile *f, const void *buf, size_t n, uint64_t off)
{
    uint64_t end;
    if (f && (__builtin_add_overflow(off, (uint64_t)n, &end) || end > (uint64_t)INT64_MAX))
        return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': offset %llu + %zu is too large",
                            f->target, (unsigned long long)off, n);
    return write_all(f, buf, n, (int64_t)off);
}

/* Reads exactly n bytes at off: 0, an errno, or -1 when the file ends first. */
static int pread_all(int fd, unsigned char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? errno : -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

mq_status mq_copy_range(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, uint64_t n,
                        void *bounce, size_t cap, const char *in_name, const char *out_name)
{
    /* The kernel copies page cache to page cache (or shares extents) without
     * passing the bytes through our memory. */
    while (n > 0) {
        loff_t src = (loff_t)in_off, dst = (loff_t)out_off;
        size_t chunk = n < WRITE_CHUNK ? (size_t)n : WRITE_CHUNK;
        ssize_t w = copy_file_range(in_fd, &src, out_fd, &dst, chunk, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == ENOSPC || errno == EFBIG || errno == EDQUOT))
            return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': %s", out_name, strerror(errno));
        if (w < 0 && !(errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                       errno == EOPNOTSUPP || errno == EPERM || errno == EBADF))
            return mq_set_error(MQ_STATUS_E_IO, "copying '%s' to '%s': %s", in_name, out_name,
                                strerror(errno));
        if (w <= 0)
            break; /* unsupported here, or a short source: the plain loop below
                    * tells which */
        in_off += (uint64_t)w;
        out_off += (uint64_t)w;
        n -= (uint64_t)w;
    }
    while (n > 0) {
        size_t chunk = n < cap ? (size_t)n : cap;
        int err = pread_all(in_fd, bounce, chunk, in_off);
        if (err)
            return mq_set_error(MQ_STATUS_E_IO, "reading '%s' at offset %llu: %s", in_name,
                                (unsigned long long)in_off,
                                err < 0 ? "file is shorter than its header says" : strerror(err));
        const unsigned char *p = bounce;
        for (size_t left = chunk; left > 0;) {
            ssize_t w = pwrite(out_fd, p, left, (off_t)out_off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0)
                return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': %s", out_name,
                                    strerror(w < 0 ? errno : EIO));
            p += w;
            left -= (size_t)w;
            out_off += (uint64_t)w;
        }
        in_off += chunk;
        n -= chunk;
    }
    return MQ_OK;
}

mq_status mq_outfile_copy_from(mq_outfile *f, int in_fd, uint64_t in_off, uint64_t n,
                               uint64_t out_off, void *bounce, size_t cap, const char *what)
{
    uint64_t end;
    if (!f || !bounce || !cap)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "outfile copy: NULL argument");
    if (__builtin_add_overflow(out_off, n, &end) || end > (uint64_t)INT64_MAX ||
        __builtin_add_overflow(in_off, n, &end) || end > (uint64_t)INT64_MAX)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': offset too large", f->target);
    if (f->failed)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': an earlier write failed", f->target);
    mq_status st = mq_copy_range(in_fd, in_off, f->fd, out_off, n, bounce, cap, what, f->target);
    if (st == MQ_STATUS_E_OUTPUT) f->failed = true;
    return st;
}

mq_status mq_outfile_reserve(mq_outfile *f, uint64_t size)
{
    if (!f || size > (uint64_t)INT64_MAX)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_outfile_reserve: bad argument");
    /* fallocate, not posix_fallocate: where the filesystem cannot, glibc's
     * emulation would write every block, which is slower than not asking. */
    int e;
    do
        e = size && fallocate(f->fd, 0, 0, (off_t)size) != 0 ? errno : 0;
    while (e == EINTR);
    if (e == 0 || e == EOPNOTSUPP || e == EINVAL || e == ENOSYS) return MQ_OK;
    return out_fail(f, "reserving space for", e);
}

void mq_outfile_writeback(mq_outfile *f, uint64_t off, uint64_t n)
{
    if (f && f->fd >= 0 && n && off <= (uint64_t)INT64_MAX && n <= (uint64_t)INT64_MAX - off)
        (void)sync_file_range(f->fd, (off_t)off, (off_t)n, SYNC_FILE_RANGE_WRITE);
}

mq_status mq_sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return MQ_OK;
    mq_status rc = MQ_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = mq_set_error(MQ_STATUS_E_OUTPUT, "syncing directory '%s': %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* After the rename the file is in place; the caller still learns that its
 * durability is not guaranteed. */
static mq_status sync_dir(const mq_outfile *f)
{
    mq_status st = mq_sync_dir(f->dir);
    if (st != MQ_OK) mq_error_prefix("'%s' is complete but may not survive a crash", f->target);
    return st;
}

mq_status mq_outfile_commit(mq_outfile *f)
{
    mq_status st = MQ_OK;
    if (!f) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_outfile_commit: NULL outfile");
    if (f->failed) {
        st = mq_set_error(MQ_STATUS_E_OUTPUT, "writing '%s': an earlier write failed", f->target);
    } else if (fsync(f->fd) != 0) {
        st = out_fail(f, "syncing", errno);
    } else {
        int fd = f->fd;
        f->fd = -1;
        /* Linux releases the descriptor even when close reports EINTR. */
        if (close(fd) != 0 && errno != EINTR) st = out_fail(f, "closing", errno);
    }
    /* Once the signal cleanup has begun, a temporary is no longer renamed into
     * place: it may already be half removed (a shard inside a temporary
     * directory), and the process is about to end. */
    mq_cleanup_section sec;
    if (st == MQ_OK && !mq_cleanup_enter(&sec, -1, NULL)) st = mq_cleanup_interrupted(f->target);
    if (st == MQ_OK) {
        if (rename(f->tmp, f->target) != 0) st = out_fail(f, "renaming over", errno);
        mq_cleanup_leave(&sec);
    }
    if (st != MQ_OK) {
        outfile_discard(f);
        return st;
    }
    mq_cleanup_close(f->slot); /* renamed: there is no temporary left to clean up */
    f->slot = -1;
    st = sync_dir(f);
    outfile_free(f);
    return st;
}

void mq_outfile_abort(mq_outfile *f)
{
    if (f) outfile_discard(f);
}

mq_status mq_check_not_same_file(const char *input, const char *target)
{
    struct stat in, out;
    if (!input || !target)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_check_not_same_file: NULL argument");
    if (stat(target, &out) != 0 || stat(input, &in) != 0) return MQ_OK;
    if (in.st_dev == out.st_dev && in.st_ino == out.st_ino)
        return mq_set_error(MQ_STATUS_E_OUTPUT, "output '%s' is the input file '%s' (same file)",
                            target, input);
    return MQ_OK;
}

mq_status mq_outfile_write_json(const char *path, const json_t *root, size_t flags,
                                const char *what)
{
    mq_outfile *f = NULL;
    char *text = NULL;
    mq_status st;
    if (!path || !root || !what)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_outfile_write_json: NULL argument");
    if (!(text = json_dumps(root, flags))) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "%s '%s': out of memory", what, path);
        goto done;
    }
    if ((st = mq_outfile_open_as(path, what, &f)) != MQ_OK) goto done;
    st = mq_outfile_write(f, text, strlen(text));
    if (st == MQ_OK) st = mq_outfile_write(f, "\n", 1);
    if (st == MQ_OK)
        st = mq_outfile_commit(f);
    else
        mq_outfile_abort(f);
done:
    free(text);
    return st;
}

/* Length of the valid UTF-8 sequence at p, 0 when there is none. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    size_t n = c < 0x80                 ? 1
               : c >= 0xC2 && c <= 0xDF ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    for (size_t i = 1; i < n; i++)
        if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xBF)) return 0;
    return n;
}

json_t *mq_json_str(const char *s)
{
    json_t *j = json_string(s ? s : "");
    if (j) return j;
    size_t n = strlen(s);
    char *fixed = malloc(3 * n + 1), *o = fixed;
    if (!fixed) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len = utf8_len(p);
        if (len) {
            memcpy(o, p, len);
            o += len;
            p += len;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    j = json_string(fixed);
    free(fixed);
    return j;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0; /* best effort: keep going */
}

void mq_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The pid in "<prefix><pid>-XXXXXX", or 0 when `name` is not such a name. */
static long temp_owner(const char *name, const char *prefix, size_t plen)
{
    if (strncmp(name, prefix, plen) != 0) return 0;
    const char *p = name + plen;
    long pid = 0;
    for (; *p >= '0' && *p <= '9' && pid < 1000000000L; p++)
        pid = pid * 10 + (*p - '0');
    if (*p++ != '-' || strlen(p) != 6) return 0;
    for (; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return pid;
}

/* A temporary whose process is gone and whose lock nobody holds: a run that
 * was killed (SIGKILL, power loss) before it could remove it. A live pid is
 * never touched, even one reused by another program, nor a locked file. */
static bool is_stale(int dfd, const char *name, long pid, bool *is_dir)
{
    if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH) return false;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    bool stale = fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
                 st.st_uid == geteuid() && flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (stale) *is_dir = S_ISDIR(st.st_mode);
    close(fd);
    return stale;
}

mq_status mq_remove_stale_temps(const char *target, void (*removed)(const char *path, void *user),
                                void *user)
{
    mq_clear_error();
    mq_status st = MQ_OK;
    char *prefix = NULL, *dir = NULL, *copy = NULL;
    const char *base;
    DIR *d = NULL;
    if (!target || !*target)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_remove_stale_temps: NULL or empty path");
    size_t n = strlen(target);
    while (n > 1 && target[n - 1] == '/')
        n--;
    if (!(copy = strndup(target, n)) || !(dir = split_target(copy, &base))) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "'%s': out of memory", target);
        goto done;
    }
    size_t blen = strlen(base) < TMP_BASE_MAX ? strlen(base) : TMP_BASE_MAX;
    if (!*base || !(prefix = malloc(blen + sizeof "." TMP_TAG))) goto done;
    snprintf(prefix, blen + sizeof "." TMP_TAG, ".%.*s" TMP_TAG, (int)blen, base);
    if (!(d = opendir(dir))) goto done; /* nothing to clean; the write says what is wrong */
    size_t plen = strlen(prefix);
    for (struct dirent *e; (e = readdir(d));) {
        bool is_dir = false;
        long pid = temp_owner(e->d_name, prefix, plen);
        if (!pid || !is_stale(dirfd(d), e->d_name, pid, &is_dir)) continue;
        char *path = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (!path) continue;
        sprintf(path, "%s/%s", dir, e->d_name);
        const char *shown = copy == base ? path + 2 : path; /* no "./" the user did not write */
        if (is_dir)
            mq_remove_tree(path);
        else
            unlink(path);
        if (removed && faccessat(dirfd(d), e->d_name, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
            removed(shown, user);
        free(path);
    }
done:
    if (d) closedir(d);
    free(prefix);
    free(dir);
    free(copy);
    return st;
}
