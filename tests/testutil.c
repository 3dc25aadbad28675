/* Helpers shared by the cmocka suites. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *p = tu_join(base && *base ? base : "/tmp", "mqtest-XXXXXX");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

void tu_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *c = tu_join(path, e->d_name);
            struct stat st;
            if (lstat(c, &st) == 0 && S_ISDIR(st.st_mode)) {
                chmod(c, 0700);
                tu_rmtree(c);
            } else {
                unlink(c);
            }
            free(c);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

char *tu_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

bool tu_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

unsigned char *tu_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        cap *= 2;
        unsigned char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    if (buf) {
        buf[len] = 0;
        if (n) *n = len;
    }
    return buf;
}

bool tu_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int tu_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

uint64_t tu_file_hash(const char *path)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    if (!b) return 0;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    free(b);
    return h;
}

/* Names and bytes of a file, or of a directory tree (summed, so the order
 * readdir gives does not matter); 0 when nothing is there. */
uint64_t tu_tree_digest(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return tu_file_hash(path) + 1;
    uint64_t h = 7;
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = tu_join(path, e->d_name);
        uint64_t name = 1469598103934665603ULL;
        for (const char *c = e->d_name; *c; c++)
            name = (name ^ (unsigned char)*c) * 1099511628211ULL;
        h += name * 31 + tu_tree_digest(p);
        free(p);
    }
    closedir(d);
    return h;
}

void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    r->s = seed * 2654435761ULL + 0x9E3779B97F4A7C15ULL;
    if (!r->s) r->s = 1;
}

uint64_t tu_rng_u64(tu_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

float tu_rng_f32(tu_rng *r)
{
    return (float)((double)(tu_rng_u64(r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

float tu_rng_normal(tu_rng *r)
{
    double u1 = ((double)(tu_rng_u64(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(tu_rng_u64(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

const char *tu_cl_device(void)
{
    const char *d = getenv("MQ_DEVICE");
    return d && *d && strcmp(d, "host") && strcmp(d, "auto") ? d : "opencl";
}

int tu_run_cli(char **output, const char *fmt, ...)
{
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *argv[256];
    int argc = 0;
    argv[argc++] = (char *)MQ_CLI_PATH;
    for (char *tok = strtok(args, " "); tok && argc < 255; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    return tu_run_cli_argv(output, argv);
}

int tu_run_cli_argv(char **output, char *const argv[])
{
    int pipefd[2];
    if (pipe(pipefd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(MQ_CLI_PATH, argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t got = read(pipefd[0], buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    buf[len] = 0;
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (output)
        *output = buf;
    else
        free(buf);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

bool tu_write_st(const char *path, const char *header, const void *data, size_t data_len)
{
    size_t hl = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hl, f) == hl &&
              (data_len == 0 || fwrite(data, 1, data_len, f) == data_len);
    return fclose(f) == 0 && ok;
}
