/* Terminating signals: the temporaries go, then the process ends of the
 * signal it got.
 *
 * The signals are blocked in every thread (the mask is set here, before any
 * thread exists, and threads inherit it: ours and those the OpenCL runtime
 * creates) and taken by one thread that waits for them. Handlers that the
 * runtime installs later over ours (PoCL and its LLVM do, for SIGQUIT,
 * SIGUSR1, SIGXCPU, SIGTERM, ...) then never run for a signal sent to the
 * process, and the cleanup runs in an ordinary thread, never inside another
 * thread's half-done call. Our handlers stay installed for what reaches a
 * thread directly: abort()'s SIGABRT, a SIGSYS or SIGTRAP a call raises. */
#define _GNU_SOURCE /* pthread_sigqueue */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static sigset_t g_caught;
static volatile sig_atomic_t g_dying;
static pthread_t g_waiter;
static bool g_waiting; /* g_waiter runs */
/* The signal that tells g_waiter to return, once g_stopping is set. */
static int g_wake;
static volatile sig_atomic_t g_stopping;

/* Async-signal-safe: runs in the waiting thread or in a handler. */
static void die_of(int sig)
{
    g_dying = 1;
    /* Removes the temporary output file and, for a model directory, the
     * temporary directory with what was written into it. */
    mq_signal_cleanup();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    /* Blocked in this thread until here (by the mask, or by the handler's
     * sa_mask): pending first, delivered on unblocking, with its default
     * action. */
    raise(sig);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + sig); /* not reached */
}

static void on_signal(int sig)
{
    die_of(sig);
}

static void *wait_for_signals(void *arg)
{
    sem_post(arg);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&g_caught, &info);
        if (sig < 0) continue; /* EINTR: stopped and continued */
        /* Only this process can send a signal with its pid as the sender,
         * and only mq_cli_signals_finish queues this value with it. */
        if (g_stopping && sig == g_wake && info.si_code == SI_QUEUE && info.si_pid == getpid() &&
            info.si_value.sival_ptr == &g_wake)
            return NULL;
        die_of(sig);
    }
}

static void take(int sig, const struct sigaction *sa)
{
    struct sigaction old;
    /* One the caller ignores (nohup's SIGHUP) stays ignored, and unblocked:
     * a blocked signal is queued even when ignored. */
    if (sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL) return;
    if (sigaction(sig, sa, NULL) == 0) sigaddset(&g_caught, sig);
}

void mq_cli_install_signals(void)
{
    /* Every signal whose default action ends the process, but for the faults
     * (SIGSEGV, SIGBUS, SIGILL, SIGFPE) a program causes itself. */
    static const int fatal[] = {SIGINT,    SIGTERM, SIGHUP,  SIGQUIT,   SIGXCPU, SIGALRM,
                                SIGUSR1,   SIGUSR2, SIGPOLL, SIGVTALRM, SIGPROF, SIGPWR,
                                SIGSTKFLT, SIGABRT, SIGSYS,  SIGTRAP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask);
    sigemptyset(&g_caught);
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        take(fatal[i], &sa);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
        take(sig, &sa);
    /* Writing into a closed pipe or past RLIMIT_FSIZE then fails with EPIPE
     * or EFBIG, which the run reports and cleans up after, instead of dying
     * with its temporary left behind. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);

    for (int sig = 1; sig <= SIGRTMAX && !g_wake; sig++)
        if (sigismember(&g_caught, sig) == 1) g_wake = sig;
    if (!g_wake) return; /* the caller ignores them all */
    pthread_sigmask(SIG_BLOCK, &g_caught, NULL);
    static sem_t running;
    g_waiting = sem_init(&running, 0, 0) == 0 &&
                pthread_create(&g_waiter, NULL, wait_for_signals, &running) == 0;
    /* Without the thread the handlers alone take the signals. Until it runs,
     * its start-up is not done: a command as short as --help would exit in
     * the middle of it (where a leak checker sees the half-made thread). */
    if (!g_waiting)
        pthread_sigmask(SIG_UNBLOCK, &g_caught, NULL);
    else
        while (sem_wait(&running) != 0 && errno == EINTR)
            ;
}

void mq_cli_signals_finish(void)
{
    /* The run failed because the cleanup took its temporaries (or its input
     * copy, its output directory): returning would end the process while the
     * cleanup may still be going, with the wrong status. The thread that
     * took the signal ends it. */
    while (g_dying)
        pause();
    if (!g_waiting) return;
    /* Woken by a signal of its own set, which it tells from a real one, and
     * joined, so that a leak checker sees no thread at exit. A real signal
     * taken meanwhile ends the process before the join returns. (Not
     * pthread_cancel: its unwinding loads libgcc_s, which may be missing.) */
    g_stopping = 1;
    if (pthread_sigqueue(g_waiter, g_wake, (union sigval){.sival_ptr = &g_wake}) != 0) return;
    pthread_join(g_waiter, NULL);
    g_waiting = false;
    /* The command is done and its temporaries are gone: a signal still
     * pending, or arriving now, ends the process through the handler. */
    pthread_sigmask(SIG_UNBLOCK, &g_caught, NULL);
}
