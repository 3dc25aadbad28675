/* Signals through the monoquant program, at every point where a run changes
 * what is on disk: tests/tools/sigshim.c, preloaded, numbers the calls that
 * create a temporary (or an entry in a temporary directory) or rename one
 * into place, sends the signal just before or just after the Nth, and stalls
 * every thread that then syncs a file, so the run cannot finish on its own.
 * Whatever thread makes the call and however the threads are scheduled, the
 * program must die of the signal, leave no temporary anywhere, and leave the
 * target absent, or complete when the signal came at the final rename.
 * Model directories on four host devices (threads creating files while
 * another cleans up), every terminating signal on the host path, and PoCL,
 * whose runtime installs handlers of its own. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A run that outlives this was not ended by its signal (swallowed): only a
 * failing run ever waits this long. */
#define HANG_SECONDS 300

static char *g_root, *g_dir, *g_file, *g_out;

/* ---- the file system ---- */

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (strstr(e->d_name, ".mqtmp")) n++;
        char *p = tu_join(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) n += count_temps(p);
        free(p);
    }
    closedir(d);
    return n;
}

/* ---- running the program ---- */

typedef struct {
    const char *in, *device;
    long at; /* the call the signal goes with; 0: none */
    int sig;
    bool after;
    const char *count; /* the shim writes its number of calls here */
    bool ignored;      /* the caller ignores the signal, as nohup does SIGHUP */
} run_opts;

static int wait_bounded(pid_t pid, const run_opts *o)
{
    int status = 0;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (long waited = 0;; waited++) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) return status;
        assert_true(got == 0 || errno == EINTR);
        if (waited > HANG_SECONDS * 100L) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("signal %d at call %ld (%s) on %s did not end the run", o->sig, o->at,
                     o->after ? "after" : "before", o->device);
        }
        nanosleep(&tick, NULL);
    }
}

static int run(const run_opts *o)
{
    char *log = tu_join(g_root, "log");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        struct rlimit no_core = {0, 0}; /* SIGQUIT, SIGABRT, ... would dump one */
        setrlimit(RLIMIT_CORE, &no_core);
        char at[32], sig[32];
        snprintf(at, sizeof at, "%ld", o->at);
        snprintf(sig, sizeof sig, "%d", o->sig);
        setenv("LD_PRELOAD", MQ_SIGSHIM_PATH, 1);
        setenv("MQ_SHIM_AT", at, 1);
        setenv("MQ_SHIM_SIG", sig, 1);
        setenv("MQ_SHIM_AFTER", o->after ? "1" : "0", 1);
        if (o->count) setenv("MQ_SHIM_COUNT", o->count, 1);
        if (o->ignored) {
            setenv("MQ_SHIM_STALL", "0", 1); /* the run goes on to its end */
            signal(o->sig, SIG_IGN);         /* kept across exec */
        }
        /* A sanitizer build whose runtime is a shared library wants it first
         * in the list of libraries; the shim has none, so the order is fine. */
        const char *asan = getenv("ASAN_OPTIONS");
        char opts[2048];
        snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
                 asan && *asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        execl(MQ_CLI_PATH, MQ_CLI_PATH, "quantize", o->in, "-o", g_out, "--device", o->device, "-q",
              (char *)NULL);
        _exit(127);
    }
    int status = wait_bounded(pid, o);
    free(log);
    return status;
}

static char *read_log(void)
{
    char *log = tu_join(g_root, "log");
    size_t n;
    char *text = (char *)tu_read_file(log, &n);
    free(log);
    return text ? text : strdup("");
}

/* The number of counted calls of an uninterrupted run, and its output's
 * digest; -1 when the device is not there (exit 4). */
static long reference(const char *in, const char *device, uint64_t *out_digest)
{
    char *count = tu_join(g_root, "count");
    run_opts o = {.in = in, .device = device, .count = count};
    tu_rmtree(g_out);
    int status = run(&o);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 4) {
        free(count);
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *text = read_log();
        fail_msg("%s on %s: status 0x%x\n%s", in, device, status, text);
    }
    size_t n;
    char *text = (char *)tu_read_file(count, &n);
    assert_non_null(text);
    long calls = atol(text);
    free(text);
    free(count);
    *out_digest = tu_tree_digest(g_out);
    assert_true(calls >= 2); /* a temporary, and its rename into place */
    assert_int_equal(count_temps(g_root), 0);
    tu_rmtree(g_out);
    return calls;
}

/* One interrupted run and what it must leave. */
static void interrupt(const char *in, const char *device, int sig, long at, bool after, long calls,
                      uint64_t want)
{
    run_opts o = {.in = in, .device = device, .at = at, .sig = sig, .after = after};
    tu_rmtree(g_out);
    int status = run(&o);
    const char *when = after ? "after" : "before";
    int temps = count_temps(g_root);
    uint64_t got = tu_tree_digest(g_out);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != sig || temps != 0 ||
        (got != 0 && (at < calls || got != want))) {
        char *text = read_log();
        fail_msg("signal %d %s call %ld of %ld on %s: status 0x%x, %d temporaries left, "
                 "target %s\n%s",
                 sig, when, at, calls, device, status, temps,
                 got == 0      ? "absent"
                 : got == want ? "complete"
                               : "incomplete",
                 text);
    }
    tu_rmtree(g_out);
}

/* ---- the cases ---- */

static int run_tool(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (!(g_root = tu_mkdtemp())) return -1;
    g_dir = tu_join(g_root, "in");
    g_file = tu_join(g_dir, "model-00001-of-00008.safetensors");
    g_out = tu_join(g_root, "out");
    /* Eight shards, for four devices to write at once, and a subdirectory,
     * which is copied. */
    const char *gen[] = {MQ_GENMODEL_PATH, g_dir, "--preset", "tiny", "--shards", "8",
                         "--layers",       "8",   NULL};
    if (run_tool(gen) != 0) return -1;
    char *sub = tu_join(g_dir, "extra"), *note = tu_join(sub, "notes.txt");
    bool ok = mkdir(sub, 0755) == 0 && tu_write_file(note, "notes\n", 6);
    free(sub);
    free(note);
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rmtree(g_root);
    free(g_root);
    free(g_dir);
    free(g_file);
    free(g_out);
    return 0;
}

/* Four devices write shards at once while the signal is handled: at every
 * call, before and after it, for the signals a terminal or a job control
 * sends. */
static void test_every_point_four_devices(void **state)
{
    (void)state;
    const char *dev = "host,host,host,host";
    uint64_t want;
    long calls = reference(g_dir, dev, &want);
    assert_true(calls > 0);
    for (long at = 1; at <= calls; at++) {
        interrupt(g_dir, dev, SIGTERM, at, false, calls, want);
        interrupt(g_dir, dev, SIGTERM, at, true, calls, want);
        interrupt(g_dir, dev, SIGINT, at, true, calls, want);
        interrupt(g_dir, dev, SIGHUP, at, false, calls, want);
    }
}

/* Every signal whose default action ends the process, on the host path. */
static const int g_sigs[] = {SIGINT,    SIGTERM, SIGHUP,    SIGQUIT, SIGXCPU, SIGALRM,
                             SIGUSR1,   SIGUSR2, SIGVTALRM, SIGPROF, SIGPOLL, SIGPWR,
                             SIGSTKFLT, SIGABRT, SIGSYS,    SIGTRAP};

static void every_signal(const char *in, const char *device, long at, bool after)
{
    uint64_t want;
    long calls = reference(in, device, &want);
    if (calls < 0) skip();
    if (at > calls) at = calls;
    for (size_t i = 0; i < sizeof g_sigs / sizeof *g_sigs; i++)
        interrupt(in, device, g_sigs[i], at, after, calls, want);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig += 5)
        interrupt(in, device, sig, at, after, calls, want);
}

static void test_every_signal_file(void **state)
{
    (void)state;
    every_signal(g_file, "host", 1, true); /* with the temporary file there */
}

static void test_every_signal_dir(void **state)
{
    (void)state;
    every_signal(g_dir, "host,host", 12, true); /* shards on two devices */
}

/* PoCL and its LLVM install handlers over ours for SIGQUIT, SIGUSR1, SIGXCPU,
 * SIGTERM, ... once the runtime loads; they must not take the signal. */
static void test_every_signal_pocl(void **state)
{
    (void)state;
    every_signal(g_dir, "cpu", 12, true);
    every_signal(g_file, "cpu", 1, true);
    uint64_t want;
    long calls = reference(g_dir, "cpu,cpu", &want);
    if (calls < 0) skip();
    for (long at = 1; at <= calls; at++)
        interrupt(g_dir, "cpu,cpu", SIGTERM, at, at % 2 == 0, calls, want);
}

/* A signal the caller ignores (nohup's SIGHUP) stays ignored: the run
 * finishes as if nothing came, on the host path and with PoCL's handlers. */
static void test_ignored_signal(void **state)
{
    (void)state;
    const char *devices[] = {"host,host", "cpu"};
    for (size_t d = 0; d < 2; d++) {
        uint64_t want;
        long calls = reference(g_dir, devices[d], &want);
        if (calls < 0) continue; /* no OpenCL CPU device here */
        run_opts o = {.in = g_dir,
                      .device = devices[d],
                      .at = calls / 2,
                      .sig = SIGHUP,
                      .after = true,
                      .ignored = true};
        tu_rmtree(g_out);
        int status = run(&o);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || tu_tree_digest(g_out) != want ||
            count_temps(g_root) != 0) {
            char *text = read_log();
            fail_msg("ignored SIGHUP on %s: status 0x%x\n%s", devices[d], status, text);
        }
        tu_rmtree(g_out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_point_four_devices), cmocka_unit_test(test_every_signal_file),
        cmocka_unit_test(test_every_signal_dir),         cmocka_unit_test(test_every_signal_pocl),
        cmocka_unit_test(test_ignored_signal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
