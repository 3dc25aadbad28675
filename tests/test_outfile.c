/* Atomic output files under injected faults: write, pwrite, fsync and rename
 * are wrapped at link time (test_outfile.cmake) so each step can fail on
 * demand; after any failure the target must be as it was and no temporary left. */
#include "testutil.h"

#include "dircopy.h"
#include "error.h"
#include "model.h"
#include "outfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- fault knobs, reset before every test ---- */
static int g_write_ok_left = -1; /* writes (fd > 2) that succeed before one fails; -1: none fail */
static int g_write_errno;
static bool g_write_short;  /* each write moves <= 7 bytes, after one EINTR */
static int g_writes;        /* calls to write/pwrite on fds > 2 */
static int g_fsync_fail_at; /* 1-based fsync call that fails; 0: none */
static int g_fsync_calls;
static int g_rename_errno; /* rename fails with this; 0: it works */

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwrite64(int fd, const void *buf, size_t n, off_t off);
int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off);
int __wrap_fsync(int fd);
int __wrap_rename(const char *from, const char *to);

/* Decides the fate of one write: -1 fail (errno set), 0 pass, else a short length. */
static ssize_t write_fault(int fd, size_t *n)
{
    static bool eintr_next = true;
    if (fd <= 2) return 0; /* never disturb the test runner's own output */
    g_writes++;
    if (g_write_ok_left == 0) {
        errno = g_write_errno;
        return -1;
    }
    if (g_write_ok_left > 0) g_write_ok_left--;
    if (g_write_short) {
        eintr_next = !eintr_next;
        if (!eintr_next) {
            errno = EINTR;
            return -1;
        }
        if (*n > 7) *n = 7;
    }
    return 0;
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    if (write_fault(fd, &n) < 0) return -1;
    return __real_write(fd, buf, n);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (write_fault(fd, &n) < 0) return -1;
    return __real_pwrite(fd, buf, n, off);
}

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    if (write_fault(fd, &n) < 0) return -1;
    return __real_pwrite64(fd, buf, n, off);
}

int __wrap_fsync(int fd)
{
    if (++g_fsync_calls == g_fsync_fail_at) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to)
{
    if (g_rename_errno) {
        errno = g_rename_errno;
        return -1;
    }
    return __real_rename(from, to);
}

/* ---- fixtures ---- */
static char *g_dir;

static int reset(void **state)
{
    (void)state;
    g_write_ok_left = -1;
    g_write_errno = 0;
    g_write_short = false;
    g_writes = 0;
    g_fsync_fail_at = 0;
    g_fsync_calls = 0;
    g_rename_errno = 0;
    g_dir = tu_mkdtemp();
    return g_dir ? 0 : -1;
}

static int cleanup(void **state)
{
    (void)state;
    g_write_ok_left = -1;
    g_fsync_fail_at = 0;
    g_rename_errno = 0;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void assert_error_has(const char *word)
{
    if (!strstr(mq_last_error(), word))
        fail_msg("error \"%s\" lacks \"%s\"", mq_last_error(), word);
}

static void assert_file_is(const char *path, const char *want)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    assert_non_null(b);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(b, want, n);
    free(b);
}

/* A model whose save issues three writes: length, header, one tensor. */
static mq_model *model_of(size_t n, unsigned char fill)
{
    mq_model *m = NULL;
    unsigned char *d = malloc(n);
    assert_non_null(d);
    memset(d, fill, n);
    assert_int_equal(mq_model_new(&m), MQ_OK);
    assert_int_equal(mq_model_add_tensor(m, "w", MQ_DTYPE_U8, 1, (int64_t[]){(int64_t)n}, d),
                     MQ_OK);
    free(d);
    return m;
}

/* ---- tests ---- */

static void test_success_exact_content(void **state)
{
    (void)state;
    char *t = tu_join(g_dir, "out.bin");
    mq_outfile *f = NULL;
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_false(tu_exists(t)); /* nothing under the final name before commit */
    assert_int_equal(mq_outfile_write(f, "hello, ", 7), MQ_OK);
    assert_int_equal(mq_outfile_write(f, "world", 5), MQ_OK);
    assert_int_equal(mq_outfile_write(f, NULL, 0), MQ_OK);
    assert_int_equal(mq_outfile_pwrite(f, "W", 1, 7), MQ_OK);
    assert_int_equal(mq_outfile_commit(f), MQ_OK);
    assert_file_is(t, "hello, World");
    assert_int_equal(tu_count_entries(g_dir), 1);
    assert_int_equal(g_fsync_calls, 2); /* the file, then its directory */
    struct stat st;
    assert_int_equal(stat(t, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    free(t);
}

static void test_short_writes_and_eintr(void **state)
{
    (void)state;
    char *t = tu_join(g_dir, "short.bin");
    const char *text = "The quick brown fox jumps over the lazy dog, twice over.";
    mq_outfile *f = NULL;
    g_write_short = true;
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_int_equal(mq_outfile_write(f, text, strlen(text)), MQ_OK);
    assert_int_equal(mq_outfile_pwrite(f, "THE QUICK BROWN", 15, 0), MQ_OK);
    assert_int_equal(mq_outfile_commit(f), MQ_OK);
    assert_true(g_writes > 2 * (int)(strlen(text) / 7));
    assert_file_is(t, "THE QUICK BROWN fox jumps over the lazy dog, twice over.");

    /* A whole model through the same stuttering writes reads back intact. */
    mq_model *m = model_of(100, 0x5a), *r = NULL;
    char *p = tu_join(g_dir, "short.st");
    assert_int_equal(mq_model_save(m, p), MQ_OK);
    assert_int_equal(mq_model_open(p, &r), MQ_OK);
    assert_int_equal(mq_model_find(r, "w")->nbytes, 100);
    assert_memory_equal(mq_model_find(r, "w")->data, mq_model_find(m, "w")->data, 100);
    mq_model_free(r);
    mq_model_free(m);
    free(p);
    free(t);
}

/* Saves `m` over a target holding older content, with the current knobs set
 * to make it fail: the old content and the directory must be untouched. */
static void expect_failed_save_keeps_old(const mq_model *m, const char *name, const char *word)
{
    char *t = tu_join(g_dir, name);
    assert_true(tu_write_file(t, "old content", 11));
    uint64_t h = tu_file_hash(t);
    int before = tu_count_entries(g_dir);
    assert_int_equal(mq_model_save(m, t), MQ_STATUS_E_OUTPUT);
    assert_error_has(t);
    assert_error_has(word);
    assert_true(tu_file_hash(t) == h);
    assert_int_equal(tu_count_entries(g_dir), before);
    free(t);
}

static void test_enospc_mid_data(void **state)
{
    (void)state;
    mq_model *m = model_of(4096, 1);
    g_write_ok_left = 2; /* length and header pass; the tensor data hits a full disk */
    g_write_errno = ENOSPC;
    expect_failed_save_keeps_old(m, "full.st", "No space left on device");
    assert_int_equal(g_writes, 3);

    /* Without an old file: nothing at all appears. */
    char *t = tu_join(g_dir, "fresh.st");
    int before = tu_count_entries(g_dir);
    g_write_ok_left = 1;
    assert_int_equal(mq_model_save(m, t), MQ_STATUS_E_OUTPUT);
    assert_false(tu_exists(t));
    assert_int_equal(tu_count_entries(g_dir), before);
    free(t);
    mq_model_free(m);
}

static void test_efbig_and_failed_state(void **state)
{
    (void)state;
    char *t = tu_join(g_dir, "big.bin");
    mq_outfile *f = NULL;
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_int_equal(mq_outfile_write(f, "abc", 3), MQ_OK);
    g_write_ok_left = 0;
    g_write_errno = EFBIG;
    assert_int_equal(mq_outfile_pwrite(f, "abc", 3, 1000), MQ_STATUS_E_OUTPUT);
    assert_error_has("File too large");
    assert_error_has(t);
    g_write_ok_left = -1;
    /* Once a write failed, nothing more is written and commit refuses. */
    assert_int_equal(mq_outfile_write(f, "d", 1), MQ_STATUS_E_OUTPUT);
    assert_int_equal(mq_outfile_commit(f), MQ_STATUS_E_OUTPUT);
    assert_int_equal(tu_count_entries(g_dir), 0);
    assert_int_equal(g_fsync_calls, 0);
    free(t);
}

static void test_fsync_fails(void **state)
{
    (void)state;
    mq_model *m = model_of(64, 2);
    g_fsync_fail_at = 1;
    expect_failed_save_keeps_old(m, "fsync.st", "Input/output error");
    assert_error_has("syncing");
    mq_model_free(m);
}

static void test_rename_fails(void **state)
{
    (void)state;
    mq_model *m = model_of(64, 3);
    g_rename_errno = EACCES;
    expect_failed_save_keeps_old(m, "rename.st", "Permission denied");
    assert_int_equal(g_fsync_calls, 1); /* the data was synced before the rename */
    mq_model_free(m);
}

static void test_dir_fsync_fails_after_rename(void **state)
{
    (void)state;
    /* After the rename the new file is in place; the caller still learns
     * that its durability is not guaranteed. */
    char *t = tu_join(g_dir, "dirsync.bin");
    mq_outfile *f = NULL;
    g_fsync_fail_at = 2;
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_int_equal(mq_outfile_write(f, "new", 3), MQ_OK);
    assert_int_equal(mq_outfile_commit(f), MQ_STATUS_E_OUTPUT);
    assert_error_has("syncing directory");
    assert_error_has("dirsync.bin' is complete but may not survive a crash");
    assert_file_is(t, "new");
    assert_int_equal(tu_count_entries(g_dir), 1);
    free(t);
}

static void test_abort_and_mode(void **state)
{
    (void)state;
    char *t = tu_join(g_dir, "keep.bin");
    mq_outfile *f = NULL;
    assert_true(tu_write_file(t, "old", 3));
    assert_int_equal(chmod(t, 0600), 0);
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_int_equal(tu_count_entries(g_dir), 2);
    assert_int_equal(mq_outfile_write(f, "new!", 4), MQ_OK);
    mq_outfile_abort(f);
    mq_outfile_abort(NULL);
    assert_file_is(t, "old");
    assert_int_equal(tu_count_entries(g_dir), 1);

    /* A replaced file keeps its permission bits. */
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_int_equal(mq_outfile_write(f, "new!", 4), MQ_OK);
    assert_int_equal(mq_outfile_commit(f), MQ_OK);
    assert_file_is(t, "new!");
    struct stat st;
    assert_int_equal(stat(t, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(t);
}

/* True when some entry of g_dir starts with `prefix`. */
static bool has_entry_prefix(const char *prefix)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    bool found = false;
    assert_non_null(d);
    while (!found && (e = readdir(d)))
        found = strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return found;
}

/* The cleanup closes the table for good (the process is on its way out), so
 * each check runs in a child of its own; the child's exit code is the first
 * check that failed. */
#define CHILD_CHECK(n, cond)                                                                       \
    do {                                                                                           \
        if (!(cond)) _exit(n);                                                                     \
    } while (0)

static void signal_cleanup_child(const char *a, const char *b, const char *c)
{
    mq_outfile *fa = NULL, *fb = NULL, *fc = NULL;
    CHILD_CHECK(10, mq_outfile_open(c, &fc) == MQ_OK);
    CHILD_CHECK(11, mq_outfile_write(fc, "c", 1) == MQ_OK);
    CHILD_CHECK(12, mq_outfile_commit(fc) == MQ_OK);
    CHILD_CHECK(13, mq_outfile_open(a, &fa) == MQ_OK);
    CHILD_CHECK(14, mq_outfile_open(b, &fb) == MQ_OK);
    CHILD_CHECK(15, mq_outfile_write(fa, "partial", 7) == MQ_OK);
    CHILD_CHECK(16, has_entry_prefix(".a.st.mqtmp-") && has_entry_prefix(".b.st.mqtmp-"));
    CHILD_CHECK(17, tu_count_entries(g_dir) == 3);

    mq_signal_cleanup();
    CHILD_CHECK(20, tu_count_entries(g_dir) == 1); /* committed c.st stays */
    /* The interrupted outfiles can still be abandoned (or fail to commit)
     * cleanly, and no new one can start: the process is about to end. */
    mq_outfile_abort(fa);
    CHILD_CHECK(21, mq_outfile_commit(fb) == MQ_STATUS_E_INTERRUPTED);
    CHILD_CHECK(22, mq_outfile_open(a, &fa) == MQ_STATUS_E_INTERRUPTED && !fa);
    CHILD_CHECK(23, strstr(mq_last_error(), "interrupted by a signal") != NULL);
    CHILD_CHECK(24, !tu_exists(a) && !tu_exists(b));
    CHILD_CHECK(25, tu_count_entries(g_dir) == 1);
    _exit(0);
}

static void test_signal_cleanup_removes_temps(void **state)
{
    (void)state;
    char *a = tu_join(g_dir, "a.st"), *b = tu_join(g_dir, "b.st"), *c = tu_join(g_dir, "c.st");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) signal_cleanup_child(a, b, c);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_file_is(c, "c");
    assert_int_equal(tu_count_entries(g_dir), 1);
    free(a);
    free(b);
    free(c);
}

static void on_sigterm(int sig)
{
    mq_signal_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void test_real_signal_in_child(void **state)
{
    (void)state;
    char *t = tu_join(g_dir, "killed.st");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mq_outfile *f = NULL;
        signal(SIGTERM, on_sigterm);
        if (mq_outfile_open(t, &f) != MQ_OK || mq_outfile_write(f, "half", 4) != MQ_OK) _exit(3);
        raise(SIGTERM);
        _exit(4); /* not reached */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
    assert_false(tu_exists(t));
    assert_int_equal(tu_count_entries(g_dir), 0);
    free(t);
}

static void test_bad_targets(void **state)
{
    (void)state;
    mq_outfile *f = (mq_outfile *)1;
    char *missing = tu_join(g_dir, "no/such/dir/out.st");
    assert_int_equal(mq_outfile_open(missing, &f), MQ_STATUS_E_OUTPUT);
    assert_null(f);
    assert_error_has("output directory");
    assert_error_has("does not exist");

    char *sub = tu_join(g_dir, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mq_outfile_open(sub, &f), MQ_STATUS_E_OUTPUT);
    assert_error_has("is a directory");
    char *slash = tu_join(g_dir, "new/");
    assert_int_equal(mq_outfile_open(slash, &f), MQ_STATUS_E_OUTPUT);

    char *file_as_dir = tu_join(g_dir, "plain");
    assert_true(tu_write_file(file_as_dir, "x", 1));
    char *under = tu_join(file_as_dir, "out.st");
    assert_int_equal(mq_outfile_open(under, &f), MQ_STATUS_E_OUTPUT);

    /* Renaming over a device node would replace it: refuse. */
    assert_int_equal(mq_outfile_open("/dev/null", &f), MQ_STATUS_E_OUTPUT);
    assert_error_has("not a regular file");
    assert_int_equal(mq_outfile_open("", &f), MQ_STATUS_E_INVALID_ARG);
    assert_int_equal(tu_count_entries(g_dir), 2);
    assert_int_equal(tu_count_entries(sub), 0);
    free(under);
    free(file_as_dir);
    free(slash);
    free(sub);
    free(missing);
}

static void test_check_not_same_file(void **state)
{
    (void)state;
    char *in = tu_join(g_dir, "in.st"), *other = tu_join(g_dir, "other.st");
    char *sym = tu_join(g_dir, "sym.st"), *hard = tu_join(g_dir, "hard.st");
    char *absent = tu_join(g_dir, "absent.st");
    assert_true(tu_write_file(in, "in", 2));
    assert_true(tu_write_file(other, "in", 2));
    assert_int_equal(symlink(in, sym), 0);
    assert_int_equal(link(in, hard), 0);
    assert_int_equal(mq_check_not_same_file(in, in), MQ_STATUS_E_OUTPUT);
    assert_error_has("same file");
    assert_error_has(in);
    assert_int_equal(mq_check_not_same_file(in, sym), MQ_STATUS_E_OUTPUT);
    assert_int_equal(mq_check_not_same_file(in, hard), MQ_STATUS_E_OUTPUT);
    assert_int_equal(mq_check_not_same_file(sym, hard), MQ_STATUS_E_OUTPUT);
    assert_int_equal(mq_check_not_same_file(in, other), MQ_OK);
    assert_int_equal(mq_check_not_same_file(in, absent), MQ_OK);
    free(absent);
    free(hard);
    free(sym);
    free(other);
    free(in);
}

static void note_removed(const char *path, void *user)
{
    int *count = user;
    assert_non_null(strstr(path, ".t.bin.mqtmp-99999999-"));
    (*count)++;
}

static bool exists_in(const char *name)
{
    char *p = tu_join(g_dir, name);
    bool yes = tu_exists(p);
    free(p);
    return yes;
}

static void make_in(const char *name, bool dir)
{
    char *p = tu_join(g_dir, name);
    if (dir) {
        assert_int_equal(mkdir(p, 0700), 0);
        char *inner = tu_join(p, ".model.safetensors.mqtmp-99999999-aaaaaa");
        assert_true(tu_write_file(inner, "x", 1));
        free(inner);
    } else {
        assert_true(tu_write_file(p, "x", 1));
    }
    free(p);
}

/* Temporaries of runs that died (pid gone, lock free) are removed, for this
 * target's name only, and reported; a locked one or a live pid's is kept. */
static void test_stale_temps(void **state)
{
    (void)state;
    char *t = tu_join(g_dir, "t.bin"), live[64],
         *locked = tu_join(g_dir, ".t.bin.mqtmp-99999998-lockd1");
    snprintf(live, sizeof live, ".t.bin.mqtmp-%ld-live01", (long)getpid());
    make_in(".t.bin.mqtmp-99999999-abc123", false); /* a killed file run */
    make_in(".t.bin.mqtmp-99999999-dirABC", true);  /* a killed directory run */
    make_in(live, false);
    make_in(".t.bin.mqtmp-99999998-lockd1", false);
    make_in(".u.bin.mqtmp-99999999-abc123", false); /* another target's */
    make_in(".t.bin.mqtmp-abc123", false);          /* no pid: cannot tell */
    make_in(".t.bin.mqtmp-99999999-abc", false);    /* not our name */
    make_in("t.bin.mqtmp-99999999-abc123", false);  /* not hidden: not ours */
    int fd = open(locked, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0); /* as a live run holds it */
    int count = 0;
    assert_int_equal(mq_remove_stale_temps(t, note_removed, &count), MQ_OK);
    assert_int_equal(count, 2);
    assert_false(exists_in(".t.bin.mqtmp-99999999-abc123"));
    assert_false(exists_in(".t.bin.mqtmp-99999999-dirABC"));
    assert_true(exists_in(live));
    assert_true(exists_in(".t.bin.mqtmp-99999998-lockd1"));
    assert_true(exists_in(".u.bin.mqtmp-99999999-abc123"));
    assert_true(exists_in(".t.bin.mqtmp-abc123"));
    assert_true(exists_in(".t.bin.mqtmp-99999999-abc"));
    assert_true(exists_in("t.bin.mqtmp-99999999-abc123"));
    /* Unlocked, it goes too; a trailing slash names the same target. */
    close(fd);
    char *slash = tu_join(g_dir, "t.bin/");
    assert_int_equal(mq_remove_stale_temps(slash, NULL, NULL), MQ_OK);
    assert_false(exists_in(".t.bin.mqtmp-99999998-lockd1"));
    free(slash);

    /* Opening an output cleans up on its own; its temporary carries the pid
     * and is locked while it lives. */
    make_in(".t.bin.mqtmp-99999999-again1", false);
    char *lp = tu_join(g_dir, live);
    assert_int_equal(unlink(lp), 0); /* its name would pass for the temporary's below */
    free(lp);
    mq_outfile *f = NULL;
    assert_int_equal(mq_outfile_open(t, &f), MQ_OK);
    assert_false(exists_in(".t.bin.mqtmp-99999999-again1"));
    char prefix[64];
    snprintf(prefix, sizeof prefix, ".t.bin.mqtmp-%ld-", (long)getpid());
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char *tmp = NULL;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) tmp = tu_join(g_dir, e->d_name);
    closedir(d);
    assert_non_null(tmp);
    fd = open(tmp, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1);
    close(fd);
    mq_outfile_abort(f);
    assert_false(tu_exists(tmp));
    free(tmp);
    free(locked);
    free(t);
}

/* ---- directory output (dircopy.h) ---- */

static int g_specials;

static mq_status skip_named(void *user, const char *path, const char *name, int depth, bool *skip)
{
    (void)path;
    *skip = depth == 0 && !strcmp(name, (const char *)user);
    return MQ_OK;
}

static mq_status count_special(void *user, const char *path, const struct stat *st)
{
    (void)user;
    assert_true(S_ISFIFO(st->st_mode));
    assert_non_null(strstr(path, "pipe"));
    g_specials++;
    return MQ_OK;
}

/* Files and directories are copied with their content and permissions (less
 * the umask), each synced; run temporaries, filtered entries and special
 * files are not copied, and a special file without a callback is an error. */
static void test_copy_tree(void **state)
{
    (void)state;
    char *src = tu_join(g_dir, "src"), *dst = tu_join(g_dir, "dst"), *dst2 = tu_join(g_dir, "d2");
    char *sub = tu_join(src, "sub"), *a = tu_join(src, "a.sh"), *b = tu_join(sub, "b.txt");
    char *tmp = tu_join(src, ".x.mqtmp-1-abc"), *skip = tu_join(src, "skip.me");
    char *pipe = tu_join(sub, "pipe");
    assert_int_equal(mkdir(src, 0700), 0);
    assert_int_equal(mkdir(sub, 0750), 0);
    assert_int_equal(mkdir(dst, 0700), 0);
    assert_int_equal(mkdir(dst2, 0700), 0);
    assert_true(tu_write_file(a, "A", 1));
    assert_int_equal(chmod(a, 0700), 0);
    assert_true(tu_write_file(b, "BB", 2));
    assert_true(tu_write_file(tmp, "T", 1));
    assert_true(tu_write_file(skip, "S", 1));
    assert_int_equal(mkfifo(pipe, 0600), 0);

    g_specials = 0;
    mq_tree_copy c = {
        .slot = -1, .filter = skip_named, .special = count_special, .user = "skip.me"};
    assert_int_equal(mq_copy_tree(&c, src, dst), MQ_OK);
    assert_int_equal(g_specials, 1);
    assert_int_equal(g_fsync_calls, 3); /* two files and the subdirectory */
    char *ca = tu_join(dst, "a.sh"), *csub = tu_join(dst, "sub"), *cb = tu_join(csub, "b.txt");
    assert_file_is(ca, "A");
    assert_file_is(cb, "BB");
    struct stat st;
    assert_int_equal(stat(ca, &st), 0);
    assert_int_equal(st.st_mode & 0100, 0100);   /* still executable */
    assert_int_equal(tu_count_entries(dst), 2);  /* a.sh, sub */
    assert_int_equal(tu_count_entries(csub), 1); /* b.txt: the FIFO went to the callback */

    c.special = NULL;
    assert_int_equal(mq_copy_tree(&c, src, dst2), MQ_STATUS_E_IO);
    assert_error_has("a FIFO, not a regular file");
    assert_error_has("pipe");

    char *nf = tu_join(g_dir, "new.json");
    assert_int_equal(mq_write_new_file(-1, nf, "{}\n", 3), MQ_OK);
    assert_file_is(nf, "{}\n");
    assert_int_equal(mq_write_new_file(-1, nf, "x", 1), MQ_STATUS_E_OUTPUT); /* never overwrites */
    assert_error_has("creating");
    assert_file_is(nf, "{}\n");
    assert_int_equal(unlink(nf), 0);
    g_fsync_fail_at = g_fsync_calls + 1;
    assert_int_equal(mq_write_new_file(-1, nf, "y", 1), MQ_STATUS_E_OUTPUT);
    assert_error_has("syncing");
    g_fsync_fail_at = g_fsync_calls + 1;
    assert_int_equal(mq_sync_dir(g_dir), MQ_STATUS_E_OUTPUT);
    assert_error_has("syncing directory");

    free(nf);
    free(ca);
    free(csub);
    free(cb);
    free(src);
    free(dst);
    free(dst2);
    free(sub);
    free(a);
    free(b);
    free(tmp);
    free(skip);
    free(pipe);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, reset, cleanup)
    const struct CMUnitTest tests[] = {
        T(test_success_exact_content),
        T(test_short_writes_and_eintr),
        T(test_enospc_mid_data),
        T(test_efbig_and_failed_state),
        T(test_fsync_fails),
        T(test_rename_fails),
        T(test_dir_fsync_fails_after_rename),
        T(test_abort_and_mode),
        T(test_signal_cleanup_removes_temps),
        T(test_real_signal_in_child),
        T(test_bad_targets),
        T(test_check_not_same_file),
        T(test_stale_temps),
        T(test_copy_tree),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
