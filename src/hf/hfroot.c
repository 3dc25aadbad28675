/* The symbolic-link rule of input model directories (see hfroot.h): paths are
 * compared by their real paths, so a link in any component counts, and a
 * link that stays inside the directory or its cache blobs is followed. */
#define _GNU_SOURCE /* realpath */
#include "hfroot.h"

#include "error.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* <repo>/blobs when `real` is <repo>/snapshots/<rev> and <repo> is a cache
 * repository (models--ORG--NAME); NULL otherwise. */
static char *cache_blobs(const char *real)
{
    char *p = strdup(real), *blobs = NULL, *slash;
    if (!p) return NULL;
    if (!(slash = strrchr(p, '/')) || slash == p) goto done;
    *slash = '\0'; /* <repo>/snapshots */
    if (strcmp(base_name(p), "snapshots") != 0) goto done;
    if (!(slash = strrchr(p, '/')) || slash == p) goto done;
    *slash = '\0'; /* <repo> */
    if (strncmp(base_name(p), "models--", 8) != 0) goto done;
    size_t n = strlen(p) + sizeof "/blobs";
    char *b = malloc(n);
    if (!b) goto done;
    snprintf(b, n, "%s/blobs", p);
    blobs = realpath(b, NULL);
    free(b);
done:
    free(p);
    return blobs;
}

mq_status mq_hf_root_init(mq_hf_root *r, const char *dir, bool follow)
{
    *r = (mq_hf_root){.dir = dir, .follow = follow};
    if (!(r->real = realpath(dir, NULL)))
        return mq_set_error(MQ_STATUS_E_IO, "input directory '%s': %s", dir, strerror(errno));
    r->blobs = cache_blobs(r->real);
    return MQ_OK;
}

void mq_hf_root_free(mq_hf_root *r)
{
    if (!r) return;
    free(r->real);
    free(r->blobs);
    r->real = r->blobs = NULL;
}

static bool inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return true;
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* The link's own text when `path` is a link, else "" (a folder above it is);
 * NULL when out of memory. Any length: the buffer grows until it fits. */
static char *link_text(const char *path)
{
    for (size_t cap = 256;; cap *= 2) {
        char *buf = malloc(cap);
        if (!buf) return NULL;
        ssize_t n = readlink(path, buf, cap);
        if (n < 0 || (size_t)n < cap) {
            buf[n > 0 ? (size_t)n : 0] = '\0';
            return buf;
        }
        free(buf);
    }
}

mq_status mq_hf_root_check(const mq_hf_root *r, const char *path)
{
    struct stat st;
    char *target = NULL;
    mq_status rc = MQ_OK;
    char *real = realpath(path, NULL);
    if (!real) {
        int err = errno;
        if (lstat(path, &st) != 0) return MQ_OK; /* missing: the caller's message */
        if (!(target = link_text(path)))
            return mq_set_error(MQ_STATUS_E_NOMEM, "'%s': out of memory", path);
        if (*target)
            rc = mq_set_error(MQ_STATUS_E_IO, "symbolic link '%s' points to '%s': %s", path, target,
                              strerror(err));
        else
            rc = mq_set_error(MQ_STATUS_E_IO, "'%s': %s", path, strerror(err));
        goto done;
    }
    if (r->follow || inside(real, r->real) || (r->blobs && inside(real, r->blobs))) goto done;
    if (!(target = link_text(path))) {
        rc = mq_set_error(MQ_STATUS_E_NOMEM, "'%s': out of memory", path);
        goto done;
    }
    if (*target)
        rc = mq_set_error(MQ_STATUS_E_FORMAT,
                          "symbolic link '%s' points to '%s' (%s), outside the model directory "
                          "'%s'; it is not followed unless follow_symlinks (--follow-symlinks) "
                          "is set",
                          path, target, real, r->dir);
    else
        rc = mq_set_error(MQ_STATUS_E_FORMAT,
                          "'%s' resolves to '%s' through a symbolic link, outside the model "
                          "directory '%s'; it is not followed unless follow_symlinks "
                          "(--follow-symlinks) is set",
                          path, real, r->dir);
done:
    free(target);
    free(real);
    return rc;
}
