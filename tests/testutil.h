/* Helpers shared by the cmocka suites: temporary directories, whole-file
 * I/O, a deterministic random generator, running the CLI. */
#ifndef MQ_TESTUTIL_H
#define MQ_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <cmocka.h>

/* A fresh directory under $TMPDIR (or /tmp); caller frees the string. */
char *tu_mkdtemp(void);
/* Removes a directory tree (best effort). */
void tu_rmtree(const char *path);
/* path = dir + "/" + name into a static-free malloc'd string. */
char *tu_join(const char *dir, const char *name);
bool tu_write_file(const char *path, const void *data, size_t n);
/* Whole file into a malloc'd buffer (NUL-terminated beyond *n); NULL on error. */
unsigned char *tu_read_file(const char *path, size_t *n);
bool tu_exists(const char *path);
/* Number of entries in a directory other than . and .. */
int tu_count_entries(const char *dir);
/* FNV-1a 64 of a file's bytes (0 when unreadable). */
uint64_t tu_file_hash(const char *path);
/* Names and bytes of a file, or of a directory tree (summed, so the order
 * readdir gives does not matter); 0 when nothing is there. */
uint64_t tu_tree_digest(const char *path);

/* xorshift64* stream. */
typedef struct { uint64_t s; } tu_rng;
void tu_rng_seed(tu_rng *r, uint64_t seed);
uint64_t tu_rng_u64(tu_rng *r);
/* Uniform in [-1, 1). */
float tu_rng_f32(tu_rng *r);
/* Standard normal (Box-Muller). */
float tu_rng_normal(tu_rng *r);

/*
 * Runs the monoquant CLI with a shell-style argument string (arguments
 * separated by spaces, no quoting). Captures stdout+stderr into a malloc'd
 * string at *output (may be NULL). Returns the exit code, or -1.
 */
int tu_run_cli(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with the arguments as given (argv[0] is only the name the
 * program sees; NULL-terminated): for arguments with blanks or control bytes. */
int tu_run_cli_argv(char **output, char *const argv[]);

/* The OpenCL device spec for suites that test the kernels: $MQ_DEVICE when it
 * names one (bench/gpu_check.sh runs them with MQ_DEVICE=gpu), else "opencl"
 * (a GPU first, else any device: PoCL in CI). */
const char *tu_cl_device(void);

/* Builds a safetensors file from a raw header string and data bytes. */
bool tu_write_st(const char *path, const char *header, const void *data, size_t data_len);

#endif
