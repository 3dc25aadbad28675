/* Input files: opened with O_NONBLOCK so that a FIFO cannot hang the open,
 * refused unless regular, then read blocking as usual. */
#include "infile.h"

#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *mq_infile_kind(mode_t mode)
{
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a file";
}

mq_status mq_infile_open(const char *path, mq_status fail, int *fd, struct stat *st)
{
    struct stat own;
    if (!st) st = &own;
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (*fd < 0) return mq_set_error(fail, "%s: cannot open: %s", path, strerror(errno));
    mq_status rc = MQ_OK;
    int flags;
    if (fstat(*fd, st) != 0)
        rc = mq_set_error(fail, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        rc = mq_set_error(fail, "%s: is %s, not a regular file", path, mq_infile_kind(st->st_mode));
    else if ((flags = fcntl(*fd, F_GETFL)) < 0 || fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        rc = mq_set_error(fail, "%s: cannot open: %s", path, strerror(errno));
    if (rc != MQ_OK) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* The whole file into a malloc'd buffer; a read error is the caller's
 * `fail`, so that a file that cannot be read is never mistaken for JSON that
 * ends early. */
static mq_status read_all(int fd, const char *path, mq_status fail, char **buf, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", path);
    for (;;) {
        if (n == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory", path);
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(b);
            return mq_set_error(fail, "%s: cannot read: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
    return MQ_OK;
}

mq_status mq_infile_json(const char *path, size_t flags, mq_status fail, json_t **out,
                         json_error_t *err)
{
    int fd;
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    mq_status rc = mq_infile_open(path, fail, &fd, NULL);
    if (rc != MQ_OK) return rc;
    rc = read_all(fd, path, fail, &text, &len);
    close(fd);
    if (rc == MQ_OK) *out = json_loadb(text, len, flags, err);
    free(text);
    return rc;
}
