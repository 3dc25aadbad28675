/* monoquant: command dispatch, exit codes, and signal handling shared by
 * the commands. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: monoquant <command> [options]\n"
    "\n"
    "commands:\n"
    "  quantize IN -o OUT    quantize Linear/Conv weights to INT8 (or cast to FP16);\n"
    "                        IN may be a .safetensors file or a model directory\n"
    "  inspect FILE          list tensors and metadata of a safetensors file\n"
    "  dequantize IN -o OUT  turn a quantized file back into float weights\n"
    "  eval ORIG QUANT       per-layer output error (SQNR) of a quantized model\n"
    "  devices               list OpenCL platforms and devices\n"
    "\n"
    "options: --help (also after a command), --version\n"
    "exit codes: 0 ok, 1 usage, 2 bad input, 3 output failure, 4 device failure\n";

int mq_cli_fail(mq_status st)
{
    fprintf(stderr, "monoquant: error: %s\n", mq_cli_esc(mq_last_error()));
    switch (st) {
    case MQ_OK:
        return MQ_EXIT_OK;
    case MQ_STATUS_E_INVALID_ARG:
        return MQ_EXIT_USAGE;
    case MQ_STATUS_E_OUTPUT:
    case MQ_STATUS_E_NOMEM:
        return MQ_EXIT_OUTPUT;
    case MQ_STATUS_E_DEVICE:
        return MQ_EXIT_DEVICE;
    case MQ_STATUS_E_INTERRUPTED:
        return MQ_EXIT_INTERRUPTED;
    default:
        return MQ_EXIT_INPUT;
    }
}

const char *mq_cli_bytes(uint64_t n, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}

/* A descriptor 0-2 that the caller left closed would go to the first file
 * the run opens (the output), and the per-tensor lines would land in it. */
static bool open_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        int got = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (got != fd) {
            if (got >= 0) close(got);
            return false;
        }
    }
    return true;
}

bool mq_cli_log_check(void)
{
    static bool lost;
    if (lost) return false;
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return true;
    int err = errno;
    lost = true;
    /* What is still buffered, and whatever a later call prints, goes
     * nowhere instead of failing again at exit. */
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && dup2(fd, 1) == 1) clearerr(stdout);
    if (fd > 1) close(fd);
    fprintf(stderr,
            "monoquant: note: writing standard output failed%s%s; the log stops here, the "
            "run goes on\n",
            err ? ": " : "", err ? strerror(err) : "");
    return false;
}

/* What a command printed is lost when stdout is a full disk or a closed
 * pipe; a run that looks successful must not hide that. */
static int finish_stdout(int rc)
{
    bool failed = ferror(stdout) != 0;
    int err = 0;
    if (fflush(stdout) != 0) {
        failed = true;
        err = errno;
    }
    if (fclose(stdout) != 0 && !err) {
        failed = true;
        err = errno;
    }
    if (!failed) return rc;
    if (err)
        fprintf(stderr, "monoquant: error: writing standard output: %s\n", strerror(err));
    else
        fprintf(stderr, "monoquant: error: writing standard output failed; what it showed is "
                        "incomplete\n");
    return rc == MQ_EXIT_OK ? MQ_EXIT_OUTPUT : rc;
}

static int run_command(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {
        {"quantize", mq_cli_quantize},
        {"inspect", mq_cli_inspect},
        {"dequantize", mq_cli_dequantize},
        {"devices", mq_cli_devices},
        {"eval", mq_cli_eval},
    };
    if (argc < 2) {
        fputs(usage, stderr);
        return MQ_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return MQ_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("monoquant %s\n", MQ_VERSION);
        return MQ_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "monoquant: unknown command '%s'\n\n%s", mq_cli_esc(argv[1]), usage);
    return MQ_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (!open_std_fds()) return MQ_EXIT_OUTPUT; /* nowhere safe to say so */
    mq_cli_install_signals();
    int rc = run_command(argc, argv);
    mq_cli_signals_finish();
    rc = finish_stdout(rc);
    mq_cli_esc_release();
    return rc;
}
