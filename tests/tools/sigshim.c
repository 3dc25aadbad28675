/* sigshim: preloaded into the monoquant program by test_signals. It counts
 * the calls that create a temporary, or an entry inside a temporary
 * directory, or rename one into place (every path with ".mqtmp-" in it), and
 * at the Nth sends the process a signal, just before or just after the call:
 * a signal at every point where the set of files on disk changes, whatever
 * thread makes the call, without depending on timing.
 *
 *   MQ_SHIM_AT=N          which call (1 = the first); unset: none
 *   MQ_SHIM_SIG=S         the signal number
 *   MQ_SHIM_AFTER=1       after the call rather than before
 *   MQ_SHIM_COUNT=FILE    at a normal exit, the number of calls goes there
 *   MQ_SHIM_STALL=0       no stall after the signal (one the program ignores)
 *
 * Once the signal is sent, every thread that syncs a file waits there for
 * ever. Each temporary is synced before it is renamed into place, so the run
 * cannot finish on its own: the signal must end it. A signal that the
 * program swallows shows as a run that never ends, not as a pass that
 * depends on how fast the handler ran. */
#define _GNU_SOURCE
#undef _FILE_OFFSET_BITS /* it would rename open and mkstemp to the ones defined here */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long g_calls;

static bool is_temp(const char *path)
{
    return path && strstr(path, ".mqtmp-") != NULL;
}

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) abort();
    return f;
}

static long g_at = -1, g_sig;
static bool g_after;
static volatile int g_sent;

static void send(void)
{
    const char *stall = getenv("MQ_SHIM_STALL");
    g_sent = !stall || strcmp(stall, "0") != 0;
    kill(getpid(), (int)g_sig);
}

static void read_settings(void)
{
    const char *a = getenv("MQ_SHIM_AT"), *s = getenv("MQ_SHIM_SIG"), *w = getenv("MQ_SHIM_AFTER");
    g_sig = s ? atol(s) : 0;
    g_after = w && *w == '1';
    g_at = a && g_sig ? atol(a) : 0;
}

/* Numbers a counted call (0: not counted) and signals before it if due. */
static long before(const char *path)
{
    if (!is_temp(path)) return 0;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_settings);
    long n = __atomic_add_fetch(&g_calls, 1, __ATOMIC_SEQ_CST);
    if (n == g_at && !g_after) send();
    return n;
}

static void after(long n)
{
    if (n && n == g_at && g_after) send();
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("MQ_SHIM_COUNT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    fprintf(f, "%ld\n", __atomic_load_n(&g_calls, __ATOMIC_SEQ_CST));
    fclose(f);
}

/* The number travels from before to after within the call: other threads
 * count their own calls meanwhile. */
#define AROUND(path, call)                                                                         \
    do {                                                                                           \
        long n_ = before(path);                                                                    \
        call;                                                                                      \
        after(n_);                                                                                 \
    } while (0)

int mkstemp64(char *t)
{
    static int (*f)(char *);
    if (!f) f = (int (*)(char *))real("mkstemp64");
    int r;
    AROUND(t, r = f(t));
    return r;
}

int mkstemp(char *t)
{
    return mkstemp64(t);
}

char *mkdtemp(char *t)
{
    static char *(*f)(char *);
    if (!f) f = (char *(*)(char *))real("mkdtemp");
    char *r;
    AROUND(t, r = f(t));
    return r;
}

int mkdir(const char *p, mode_t m)
{
    static int (*f)(const char *, mode_t);
    if (!f) f = (int (*)(const char *, mode_t))real("mkdir");
    int r;
    AROUND(p, r = f(p, m));
    return r;
}

int rename(const char *a, const char *b)
{
    static int (*f)(const char *, const char *);
    if (!f) f = (int (*)(const char *, const char *))real("rename");
    int r;
    AROUND(a, r = f(a, b));
    return r;
}

int open64(const char *p, int flags, ...)
{
    static int (*f)(const char *, int, ...);
    if (!f) f = (int (*)(const char *, int, ...))real("open64");
    mode_t m = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        m = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    int r;
    if (!(flags & O_CREAT)) return f(p, flags, m);
    AROUND(p, r = f(p, flags, m));
    return r;
}

int open(const char *p, int flags, ...)
{
    mode_t m = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        m = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    return open64(p, flags, m);
}

static void stall_if_sent(void)
{
    while (g_sent)
        pause();
}

int fsync(int fd)
{
    static int (*f)(int);
    if (!f) f = (int (*)(int))real("fsync");
    stall_if_sent();
    return f(fd);
}

int fdatasync(int fd)
{
    static int (*f)(int);
    if (!f) f = (int (*)(int))real("fdatasync");
    stall_if_sent();
    return f(fd);
}
