/* The monoquant commands. Each takes argv from its command name on and
 * returns the process exit code (see MQ_EXIT_*). */
#ifndef MQ_CLI_H
#define MQ_CLI_H

#include "monoquant.h"

enum {
    MQ_EXIT_OK = 0,
    MQ_EXIT_USAGE = 1,
    MQ_EXIT_INPUT = 2,
    MQ_EXIT_OUTPUT = 3,
    MQ_EXIT_DEVICE = 4,
    MQ_EXIT_INTERRUPTED = 130,
};

int mq_cli_quantize(int argc, char **argv);
int mq_cli_inspect(int argc, char **argv);
int mq_cli_dequantize(int argc, char **argv);
int mq_cli_devices(int argc, char **argv);
int mq_cli_eval(int argc, char **argv);

/* Exit code for a failed status; prints "monoquant: <message>" on stderr. */
int mq_cli_fail(mq_status st);
/* `s` with control characters escaped for a terminal: \n, \t, and \xNN for
 * other C0/C1 controls, DEL, bytes outside UTF-8 and bidirectional overrides;
 * printable UTF-8 stays. Every name, path, reason and error message the CLI
 * prints goes through it. The result lives until eight more calls. */
const char *mq_cli_esc(const char *s);
/* A decimal number of digits only (no blank, sign or base prefix), at most
 * 2^64 - 1. With rest NULL the whole string must be the number; else *rest
 * points past the digits (a unit may follow). False when malformed. */
bool mq_cli_parse_u64(const char *s, uint64_t *out, const char **rest);
/* Frees the buffers behind mq_cli_esc (at exit). */
void mq_cli_esc_release(void);
/* Human-readable byte count ("1.50 MiB") into buf. */
const char *mq_cli_bytes(uint64_t n, char *buf, size_t cap);
/* Standard output as the log of a command whose product is a file (quantize,
 * dequantize): flushes it and returns whether it still works. At its first
 * failure (a closed pipe, a full disk) the log stops for good (stdout goes to
 * /dev/null), a note says so on stderr, and the command goes on: the file is
 * what was asked for, and a run that writes it completely exits 0. Other
 * commands, whose product is what they print, fail with exit 3 instead. */
bool mq_cli_log_check(void);
/* Every terminating signal removes the temporary outputs, then ends the
 * process with that signal (signals.c); SIGPIPE and SIGXFSZ ignored, so EPIPE
 * and EFBIG are errors. Called before any thread starts. */
void mq_cli_install_signals(void);
/* Before exiting: when a signal is being handled, waits for it to end the
 * process (a run it interrupted fails early, and must not exit first); else
 * stops the thread that waits for signals. */
void mq_cli_signals_finish(void);

/* A file a command reads (output false) or writes (output true). */
typedef struct {
    const char *label; /* how the user gave it: "-o", "--report", "the input", ... */
    const char *path;  /* NULL: not given, ignored */
    bool output;
    bool dir; /* an output that will be a directory: files inside it count as it */
} mq_cli_path;

#define MQ_CLI_MAX_PATHS 8
/* Before any work: every output must differ from every input and every other
 * output (device and inode through links; for a path not there yet, the
 * resolved parent directory and name) and must not lie inside an input
 * directory or an output directory. Prints why and returns MQ_EXIT_USAGE on a
 * clash, else MQ_EXIT_OK. */
int mq_cli_check_paths(const char *cmd, const mq_cli_path *p, size_t n);
/* Removes the temporaries that killed runs left beside `path` (see
 * mq_remove_stale_temps), with a note on stderr for each. */
void mq_cli_remove_stale(const char *path);
/* Removes an output the run has just written (a file, or a directory tree)
 * and says so on stderr with `why`. */
void mq_cli_remove_output(const char *path, bool dir, const char *why);

#endif
