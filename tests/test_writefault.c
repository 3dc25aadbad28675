/* Output failures through the monoquant program: a missing output directory,
 * an output that is a directory or is the input (by symlink or hard link), a
 * full disk (RLIMIT_FSIZE in the child, so writes fail with EFBIG), and
 * every terminating signal in the middle of a write, for a file and for a model
 * directory. Every case must end with exit 3 (or death by the signal), no
 * file under the target name, no temporary (.mqtmp) anywhere, a target that
 * existed before left as it was, and the input unchanged. */
#include "testutil.h"

#include "monoquant.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXAMPLE MQ_SOURCE_DIR "/examples/tiny_mlp.safetensors"
#define KEEP "precious bytes that must survive\n"
/* Many small tensors: per-tensor work makes a run last about a second on the
 * host backend while the file stays small (about 9 MB). */
#define SLOW_TENSORS 40000
#define SLOW_ROWS 4
#define SLOW_COLS 8

typedef struct {
    char *root;    /* everything below is inside it */
    char *in_file; /* a copy of the example model */
    char *in_dir;  /* a model directory: model.safetensors (the example) + config.json */
    char *out;     /* output directory, empty before each case */
} fixture;

static fixture fx;
static char *g_slow_file, *g_slow_dir; /* built once, on first use */
static char *g_log;                    /* output of the last run_cli */

static void copy_example(const char *path)
{
    size_t n;
    unsigned char *b = tu_read_file(EXAMPLE, &n);
    assert_non_null(b);
    assert_true(tu_write_file(path, b, n));
    free(b);
}

static int group_setup(void **state)
{
    (void)state;
    if (!(fx.root = tu_mkdtemp())) return -1;
    fx.in_file = tu_join(fx.root, "in.safetensors");
    fx.in_dir = tu_join(fx.root, "inmodel");
    fx.out = tu_join(fx.root, "out");
    if (mkdir(fx.in_dir, 0755) != 0 || mkdir(fx.out, 0755) != 0) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rmtree(fx.root);
    free(fx.root);
    free(fx.in_file);
    free(fx.in_dir);
    free(fx.out);
    free(g_log);
    free(g_slow_file);
    free(g_slow_dir);
    return 0;
}

/* Fresh inputs and an empty output directory before each case. */
static int case_setup(void **state)
{
    (void)state;
    tu_rmtree(fx.out);
    if (mkdir(fx.out, 0755) != 0) return -1;
    copy_example(fx.in_file);
    char *m = tu_join(fx.in_dir, "model.safetensors"), *c = tu_join(fx.in_dir, "config.json");
    copy_example(m);
    const char *cfg = "{\"architectures\": [\"Mlp\"], \"hidden_size\": 128}\n";
    bool ok = tu_write_file(c, cfg, strlen(cfg));
    free(m);
    free(c);
    return ok ? 0 : -1;
}

/* ---- state of the disk ---- */

/* Entries under `dir` (recursively) whose name holds ".mqtmp". */
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

/* `dir` holds exactly n entries; else the failure lists them. */
static void assert_entries(const char *dir, int n)
{
    if (tu_count_entries(dir) == n) return;
    char names[2048] = "";
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strlen(names) + strlen(e->d_name) + 2 < sizeof names) {
            strcat(names, " ");
            strcat(names, e->d_name);
        }
    if (d) closedir(d);
    fail_msg("%s holds %d entries, want %d:%s", dir, tu_count_entries(dir), n, names);
}

/* ---- running the program ---- */

typedef struct {
    rlim_t fsize;      /* RLIMIT_FSIZE for the child; 0: unlimited */
    bool xfsz_default; /* leave SIGXFSZ at its default: the program must ignore it */
    bool stdout_gone;  /* stdout a pipe whose reader has already gone */
    int sig;           /* sent 150 ms into the write; 0: none */
    const char *rmdir; /* or: this empty directory removed 150 ms into the write */
    const char *watch; /* the write has begun when `temps` temporaries show under it */
    int temps;
} run_opts;

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* Appends what `fd` has to *buf; false at end of file. */
static bool drain(int fd, char **buf, size_t *len, size_t *cap)
{
    if (*len + 4096 + 1 > *cap) {
        *cap = (*len + 4096 + 1) * 2;
        *buf = realloc(*buf, *cap);
        assert_non_null(*buf);
    }
    ssize_t got = read(fd, *buf + *len, *cap - *len - 1);
    if (got < 0 && errno == EINTR) return true;
    if (got <= 0) return false;
    *len += (size_t)got;
    (*buf)[*len] = '\0';
    return true;
}

/*
 * Runs the CLI with argv (argv[0] is filled in) and returns its wait status;
 * its stdout + stderr go to g_log. tu_run_cli cannot do this: the limit and
 * SIGXFSZ's disposition must be set between fork and exec (SIG_IGN survives
 * exec, so a write past the limit fails with EFBIG instead of killing the
 * program). The output goes through a pipe, which the file size limit does
 * not cover.
 */
static int run_cli(const run_opts *o, const char **argv)
{
    int fds[2], gone[2];
    argv[0] = MQ_CLI_PATH;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(pipe(gone), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(o && o->stdout_gone ? gone[1] : fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        close(gone[0]);
        close(gone[1]);
        struct rlimit no_core = {0, 0}; /* SIGQUIT and SIGXCPU would dump one */
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGXFSZ, SIG_DFL);
        if (o && o->fsize) {
            struct rlimit rl = {o->fsize, o->fsize};
            if (!o->xfsz_default) signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(125);
        }
        execv(MQ_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    close(gone[0]);
    close(gone[1]);
    size_t len = 0, cap = 0;
    free(g_log);
    g_log = NULL;
    bool open = true, sent = false, writing = false;
    struct timespec t_write;
    while (open) {
        struct pollfd p = {fds[0], POLLIN, 0};
        int ready = poll(&p, 1, 2);
        if (ready > 0) open = drain(fds[0], &g_log, &len, &cap);
        if (o && (o->sig || o->rmdir) && !sent && !writing && count_temps(o->watch) >= o->temps) {
            writing = true;
            clock_gettime(CLOCK_MONOTONIC, &t_write);
        }
        /* Planning takes most of a second; the signal lands 150 ms into the write. */
        if (writing && !sent && seconds_since(&t_write) >= 0.15) {
            if (o->sig)
                assert_int_equal(kill(pid, o->sig), 0);
            else
                assert_int_equal(rmdir(o->rmdir), 0);
            sent = true;
        }
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (!g_log) g_log = strdup("");
    if (o && (o->sig || o->rmdir) && !sent)
        fail_msg("the run ended (status 0x%x) before it could be interrupted:\n%s", status, g_log);
    return status;
}

static char *read_log(void)
{
    char *t = strdup(g_log ? g_log : "");
    assert_non_null(t);
    return t;
}

/* Exit `code` and every word of `words` (NULL-terminated) in the output. */
static void expect_exit(int status, int code, const char *const *words)
{
    char *text = read_log();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
        fail_msg("status 0x%x, want exit %d; output:\n%s", status, code, text);
    for (; *words; words++)
        if (!strstr(text, *words)) fail_msg("output lacks \"%s\":\n%s", *words, text);
    free(text);
}

static void expect_exit3(int status, const char *const *words)
{
    expect_exit(status, 3, words);
}

static void make_target_file(const char *path)
{
    assert_true(tu_write_file(path, KEEP, strlen(KEEP)));
}

/* ---- refused targets ---- */

static void test_missing_directory(void **state)
{
    (void)state;
    uint64_t in = tu_tree_digest(fx.in_file), ind = tu_tree_digest(fx.in_dir);
    char *target = tu_join(fx.out, "nope/out.safetensors");
    const char *argv[] = {NULL, "quantize", fx.in_file, "-o", target, "--device", "host", NULL};
    expect_exit3(run_cli(NULL, argv), (const char *[]){"does not exist", "nope", NULL});
    free(target);
    target = tu_join(fx.out, "nope/outmodel");
    const char *argv2[] = {NULL, "quantize", fx.in_dir, "-o", target, "--device", "host", NULL};
    expect_exit3(run_cli(NULL, argv2), (const char *[]){"nope", NULL});
    assert_entries(fx.out, 0);
    assert_int_equal(count_temps(fx.root), 0);
    assert_int_equal(tu_tree_digest(fx.in_file), in);
    assert_int_equal(tu_tree_digest(fx.in_dir), ind);
    free(target);
}

static void test_output_is_directory(void **state)
{
    (void)state;
    char *target = tu_join(fx.out, "taken"), *inside = tu_join(target, "keep.txt");
    assert_int_equal(mkdir(target, 0755), 0);
    make_target_file(inside);
    uint64_t before = tu_tree_digest(target), in = tu_tree_digest(fx.in_file), ind = tu_tree_digest(fx.in_dir);
    const char *argv[] = {NULL, "quantize", fx.in_file, "-o", target, "--device", "host", NULL};
    expect_exit3(run_cli(NULL, argv), (const char *[]){target, "is a directory", NULL});
    /* A model directory may only go to a new or empty directory. */
    const char *argv2[] = {NULL, "quantize", fx.in_dir, "-o", target, "--device", "host", NULL};
    expect_exit3(run_cli(NULL, argv2), (const char *[]){target, NULL});
    assert_int_equal(tu_tree_digest(target), before);
    assert_entries(fx.out, 1);
    assert_int_equal(count_temps(fx.root), 0);
    assert_int_equal(tu_tree_digest(fx.in_file), in);
    assert_int_equal(tu_tree_digest(fx.in_dir), ind);
    free(inside);
    free(target);
}

static void test_output_is_input(void **state)
{
    (void)state;
    char *sym = tu_join(fx.out, "sym.safetensors"), *hard = tu_join(fx.out, "hard.safetensors");
    char *dsym = tu_join(fx.out, "symmodel");
    assert_int_equal(symlink(fx.in_file, sym), 0);
    assert_int_equal(link(fx.in_file, hard), 0);
    assert_int_equal(symlink(fx.in_dir, dsym), 0);
    uint64_t in = tu_tree_digest(fx.in_file), ind = tu_tree_digest(fx.in_dir);
    const char *targets[] = {sym, hard};
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {NULL,       "quantize", fx.in_file, "-o",
                              targets[i], "--device", "host",     NULL};
        expect_exit(run_cli(NULL, argv), 1,
                    (const char *[]){"same file", fx.in_file, targets[i], NULL});
        /* and the other way round: the link as input, the file as output */
        const char *argv2[] = {NULL,       "quantize", targets[i], "-o",
                               fx.in_file, "--device", "host",     NULL};
        expect_exit(run_cli(NULL, argv2), 1, (const char *[]){"same file", NULL});
    }
    const char *argv3[] = {NULL, "quantize", fx.in_dir, "-o", dsym, "--device", "host", NULL};
    expect_exit(run_cli(NULL, argv3), 1, (const char *[]){dsym, fx.in_dir, NULL});
    assert_int_equal(tu_tree_digest(fx.in_file), in);
    assert_int_equal(tu_tree_digest(fx.in_dir), ind);
    assert_entries(fx.out, 3);
    assert_int_equal(count_temps(fx.root), 0);
    free(sym);
    free(hard);
    free(dsym);
}

/* ---- a full disk ---- */

/* Limits that stop the write in the length prefix, the header, and the data. */
static const rlim_t fsize_limits[] = {1, 100, 4096, 40000};

static void test_disk_full_file(void **state)
{
    (void)state;
    char *target = tu_join(fx.out, "full.safetensors");
    uint64_t in = tu_tree_digest(fx.in_file);
    for (size_t i = 0; i < sizeof fsize_limits / sizeof *fsize_limits; i++) {
        for (int pre = 0; pre < 2; pre++) {
            if (pre) make_target_file(target);
            uint64_t before = tu_tree_digest(target);
            run_opts o = {.fsize = fsize_limits[i]};
            const char *argv[] = {NULL,       "quantize", fx.in_file, "-o", target,
                                  "--device", "host",     "-q",       NULL};
            expect_exit3(run_cli(&o, argv), (const char *[]){"File too large", target, NULL});
            assert_int_equal(tu_tree_digest(target), before);
            assert_entries(fx.out, pre);
            assert_int_equal(count_temps(fx.root), 0);
            unlink(target);
        }
    }
    /* The same run without the limit succeeds: the limit was the only fault. */
    const char *argv[] = {NULL,       "quantize", fx.in_file, "-o", target,
                          "--device", "host",     "-q",       NULL};
    int st = run_cli(NULL, argv);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(tu_exists(target));
    assert_int_equal(tu_tree_digest(fx.in_file), in);
    free(target);
}

static void test_disk_full_dir(void **state)
{
    (void)state;
    char *target = tu_join(fx.out, "fullmodel");
    uint64_t ind = tu_tree_digest(fx.in_dir);
    for (size_t i = 0; i < sizeof fsize_limits / sizeof *fsize_limits; i++) {
        for (int pre = 0; pre < 2; pre++) {
            if (pre) assert_int_equal(mkdir(target, 0755), 0); /* an empty target is allowed */
            run_opts o = {.fsize = fsize_limits[i]};
            const char *argv[] = {NULL,       "quantize", fx.in_dir, "-o", target,
                                  "--device", "host",     "-q",      NULL};
            expect_exit3(run_cli(&o, argv), (const char *[]){"File too large", NULL});
            assert_int_equal(tu_exists(target), pre);
            if (pre) assert_entries(target, 0);
            assert_entries(fx.out, pre);
            assert_int_equal(count_temps(fx.root), 0);
            rmdir(target);
        }
    }
    assert_int_equal(tu_tree_digest(fx.in_dir), ind);
    free(target);
}

/* ---- signals ---- */

static void write_slow_model(const char *path)
{
    static mq_st_desc d[SLOW_TENSORS];
    static char names[SLOW_TENSORS][32];
    static const int64_t shape[2] = {SLOW_ROWS, SLOW_COLS};
    for (int i = 0; i < SLOW_TENSORS; i++) {
        snprintf(names[i], sizeof names[i], "layers.%d.mlp.weight", i);
        d[i] = (mq_st_desc){names[i], MQ_DTYPE_F32, 2, shape, SLOW_ROWS * SLOW_COLS * 4};
    }
    char *header;
    size_t hlen;
    assert_int_equal(mq_st_build_header_desc(d, SLOW_TENSORS, NULL, NULL, 0, &header, &hlen),
                     MQ_OK);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    assert_int_equal(fwrite(len8, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, hlen, f), hlen);
    tu_rng r;
    tu_rng_seed(&r, 11);
    float v[SLOW_ROWS * SLOW_COLS];
    for (int i = 0; i < SLOW_TENSORS; i++) {
        for (int k = 0; k < SLOW_ROWS * SLOW_COLS; k++)
            v[k] = tu_rng_f32(&r);
        assert_int_equal(fwrite(v, sizeof v, 1, f), 1);
    }
    assert_int_equal(fclose(f), 0);
    free(header);
}

/* The slow model as a file and as a directory (model.safetensors hard-linked
 * to the file, plus a config.json), outside fx.out. */
static void make_slow_inputs(void)
{
    if (g_slow_file) return;
    g_slow_file = tu_join(fx.root, "slow.safetensors");
    g_slow_dir = tu_join(fx.root, "slowmodel");
    write_slow_model(g_slow_file);
    assert_int_equal(mkdir(g_slow_dir, 0755), 0);
    char *m = tu_join(g_slow_dir, "model.safetensors"), *c = tu_join(g_slow_dir, "config.json");
    assert_int_equal(link(g_slow_file, m), 0);
    assert_true(tu_write_file(c, "{\"hidden_size\": 8}\n", 19));
    free(m);
    free(c);
}

/* Interrupts a run on `in` writing to `target` with `sig`, with and without
 * an existing target. */
static void interrupt_run(const char *in, const char *target, bool dir_target, int sig)
{
    /* A file run writes one temporary; a directory run, a temporary directory
     * and the shard's temporary inside it. */
    int temps = dir_target ? 2 : 1;
    uint64_t in_before = tu_tree_digest(in);
    for (int pre = 0; pre < 2; pre++) {
        if (pre && dir_target) assert_int_equal(mkdir(target, 0755), 0);
        if (pre && !dir_target) make_target_file(target);
        uint64_t before = tu_tree_digest(target);
        run_opts o = {.sig = sig, .watch = fx.out, .temps = temps};
        const char *argv[] = {NULL,   "quantize",       in,   "-o", target, "--device",
                              "host", "--memory-limit", "1M", "-q", NULL};
        int status = run_cli(&o, argv);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != sig) {
            char *text = read_log();
            fail_msg("%s: status 0x%x, want death by signal %d; output:\n%s", in, status, sig,
                     text);
        }
        assert_int_equal(tu_exists(target), pre);
        assert_int_equal(tu_tree_digest(target), before);
        assert_entries(fx.out, pre);
        assert_int_equal(count_temps(fx.root), 0);
        tu_rmtree(target);
    }
    assert_int_equal(tu_tree_digest(in), in_before);
}

static void test_signals_file(void **state)
{
    (void)state;
    make_slow_inputs();
    char *target = tu_join(fx.out, "sig.safetensors");
    /* Every signal whose default action ends the process. */
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGXCPU, SIGALRM, SIGUSR1, SIGRTMIN};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        interrupt_run(g_slow_file, target, false, sigs[i]);
    free(target);
}

static void test_signals_dir(void **state)
{
    (void)state;
    make_slow_inputs();
    char *target = tu_join(fx.out, "sigmodel");
    const int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGXCPU};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        interrupt_run(g_slow_dir, target, true, sigs[i]);
    free(target);
}

/* Past RLIMIT_FSIZE with SIGXFSZ left at its default, the program gets EFBIG
 * and fails cleanly instead of dying of the signal with its temporary left. */
static void test_xfsz_default(void **state)
{
    (void)state;
    char *target = tu_join(fx.out, "xfsz.safetensors"), *model = tu_join(fx.out, "xfszmodel");
    const char *ins[] = {fx.in_file, fx.in_dir}, *outs[] = {target, model};
    for (int i = 0; i < 2; i++) {
        run_opts o = {.fsize = 4096, .xfsz_default = true};
        const char *argv[] = {NULL,       "quantize", ins[i], "-o", outs[i],
                              "--device", "host",     "-q",   NULL};
        expect_exit3(run_cli(&o, argv), (const char *[]){"File too large", NULL});
        assert_entries(fx.out, 0);
        assert_int_equal(count_temps(fx.root), 0);
    }
    free(target);
    free(model);
}

/* `quantize ... | head -1`: stdout's reader gone. The log stops with a note
 * on stderr naming the broken pipe, the run goes on and exits 0, and its
 * output is the one an uninterrupted run writes; no temporary is left. */
static void test_stdout_pipe_closed(void **state)
{
    (void)state;
    char *target = tu_join(fx.out, "pipe.safetensors"), *model = tu_join(fx.out, "pipemodel");
    const char *ins[] = {fx.in_file, fx.in_dir}, *outs[] = {target, model};
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {NULL, "quantize", ins[i], "-o", outs[i], "--device", "host", NULL};
        expect_exit(run_cli(NULL, argv), 0, (const char *[]){NULL});
        uint64_t want = tu_tree_digest(outs[i]);
        tu_rmtree(outs[i]);
        run_opts o = {.stdout_gone = true};
        expect_exit(run_cli(&o, argv), 0,
                    (const char *[]){"standard output", "Broken pipe", "the run goes on", NULL});
        assert_int_equal(tu_tree_digest(outs[i]), want);
        assert_int_equal(count_temps(fx.root), 0);
    }
    free(target);
    free(model);
}

/* The report's directory checked before the run can still vanish during it:
 * the model just written is then removed, so that the run leaves everything
 * it was asked for or nothing, and the message names the report. */
static void test_report_fails_at_end(void **state)
{
    (void)state;
    make_slow_inputs();
    char *repdir = tu_join(fx.root, "repdir"), *rep = tu_join(repdir, "r.json");
    char *target = tu_join(fx.out, "rep.safetensors"), *model = tu_join(fx.out, "repmodel");
    const char *ins[] = {g_slow_file, g_slow_dir}, *outs[] = {target, model};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mkdir(repdir, 0755), 0);
        run_opts o = {.rmdir = repdir, .watch = fx.out, .temps = i ? 2 : 1};
        const char *argv[] = {NULL,   "quantize",       ins[i], "-o",       outs[i], "--device",
                              "host", "--memory-limit", "1M",   "--report", rep,     "-q",
                              NULL};
        expect_exit3(run_cli(&o, argv),
                     (const char *[]){"report directory", repdir, "removed the output", NULL});
        assert_entries(fx.out, 0);
        assert_int_equal(count_temps(fx.root), 0);
    }
    free(repdir);
    free(rep);
    free(target);
    free(model);
}

/* `kill -9` leaves a run's temporary behind (nothing can catch SIGKILL); the
 * next run to the same target removes it and says so. */
static void test_killed_run_leftovers(void **state)
{
    (void)state;
    make_slow_inputs();
    char *target = tu_join(fx.out, "killed.safetensors"), *model = tu_join(fx.out, "killedmodel");
    const char *slow[] = {g_slow_file, g_slow_dir}, *fast[] = {fx.in_file, fx.in_dir};
    const char *outs[] = {target, model};
    for (int i = 0; i < 2; i++) {
        run_opts o = {.sig = SIGKILL, .watch = fx.out, .temps = i ? 2 : 1};
        const char *argv[] = {NULL,   "quantize",       slow[i], "-o", outs[i], "--device",
                              "host", "--memory-limit", "1M",    "-q", NULL};
        int status = run_cli(&o, argv);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_true(count_temps(fx.out) >= 1);
        const char *again[] = {NULL, "quantize", fast[i], "-o", outs[i], "--device", "host", NULL};
        status = run_cli(NULL, again);
        char *text = read_log();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(text, "removed") ||
            !strstr(text, ".mqtmp-"))
            fail_msg("status 0x%x, want exit 0 and a note on the removed temporary:\n%s", status,
                     text);
        free(text);
        assert_int_equal(count_temps(fx.root), 0);
        assert_true(tu_exists(outs[i]));
    }
    free(target);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_missing_directory, case_setup),
        cmocka_unit_test_setup(test_output_is_directory, case_setup),
        cmocka_unit_test_setup(test_output_is_input, case_setup),
        cmocka_unit_test_setup(test_disk_full_file, case_setup),
        cmocka_unit_test_setup(test_disk_full_dir, case_setup),
        cmocka_unit_test_setup(test_signals_file, case_setup),
        cmocka_unit_test_setup(test_signals_dir, case_setup),
        cmocka_unit_test_setup(test_xfsz_default, case_setup),
        cmocka_unit_test_setup(test_stdout_pipe_closed, case_setup),
        cmocka_unit_test_setup(test_report_fails_at_end, case_setup),
        cmocka_unit_test_setup(test_killed_run_leftovers, case_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
