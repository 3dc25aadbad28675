/* Loading llama.cpp's importance matrix (see imatrix.h for both layouts). */
#include "imatrix.h"

#include "error.h"
#include "gguf.h"
#include "infile.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Larger files are refused before they are read: the matrix of a model with
 * a trillion parameters and 256 experts a layer stays well below this. */
#define IMATRIX_MAX_BYTES ((uint64_t)16 << 30)
/* Names of unmapped entries listed in the message, the rest counted. */
#define UNMAPPED_LISTED 8

typedef struct {
    char *name;   /* llama.cpp's weight name (owned) */
    size_t n_in;  /* values per row; 0 in a legacy file, where only nval is known */
    size_t nval;  /* n_in x rows */
    float *imp;   /* nval importances */
    bool *has;    /* per row of n_in (GGUF) or for the whole (legacy): usable */
    size_t n_has; /* rows in has[] */
} entry;

struct mq_imatrix {
    char *path;
    entry *e;
    size_t n;
};

void mq_imatrix_free(mq_imatrix *im)
{
    if (!im) return;
    for (size_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].imp);
        free(im->e[i].has);
    }
    free(im->e);
    free(im->path);
    free(im);
}

size_t mq_imatrix_count(const mq_imatrix *im)
{
    return im ? im->n : 0;
}

static mq_status nomem(const char *path)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "%s: out of memory (the importance matrix)", path);
}

/* The whole file into *buf (*n bytes). */
static mq_status read_all(const char *path, unsigned char **buf, size_t *n)
{
    struct stat sb;
    int fd;
    mq_status st = mq_infile_open(path, MQ_STATUS_E_IO, &fd, &sb);
    if (st != MQ_OK) return st;
    *buf = NULL;
    if ((uint64_t)sb.st_size > IMATRIX_MAX_BYTES) {
        st =
            mq_set_error(MQ_STATUS_E_FORMAT, "%s: %lld bytes, more than an importance matrix holds",
                         path, (long long)sb.st_size);
        goto done;
    }
    *n = (size_t)sb.st_size;
    if (!(*buf = malloc(*n + 1))) {
        st = nomem(path);
        goto done;
    }
    for (size_t got = 0; got < *n;) {
        ssize_t r = read(fd, *buf + got, *n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = mq_set_error(MQ_STATUS_E_IO, "%s: read failed: %s", path,
                              r < 0 ? strerror(errno) : "the file shrank while read");
            goto done;
        }
        got += (size_t)r;
    }
done:
    close(fd);
    if (st != MQ_OK) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

static float f32_at(const unsigned char *p, size_t i)
{
    uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                 (uint32_t)p[4 * i + 3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static mq_status bad_value(const char *path, const char *name, size_t i, float v)
{
    return mq_set_error(MQ_STATUS_E_FORMAT,
                        "%s: entry '%s': value %zu is %g (importances are finite and not negative)",
                        path, name, i, (double)v);
}

/* Fills e->imp from n F32 values at p divided by the row's count, checking
 * every value; rows of zeros and rows whose count is not positive unusable. */
static mq_status fill(const char *path, entry *e, const unsigned char *p, const float *count,
                      size_t rows)
{
    size_t per = e->nval / rows;
    if (!(e->imp = malloc(e->nval * sizeof *e->imp + 1)) ||
        !(e->has = calloc(rows + 1, sizeof *e->has)))
        return nomem(path);
    e->n_has = rows;
    for (size_t r = 0; r < rows; r++) {
        bool any = false;
        for (size_t j = 0; j < per; j++) {
            float v = f32_at(p, r * per + j);
            if (!isfinite(v) || v < 0.0f) return bad_value(path, e->name, r * per + j, v);
            e->imp[r * per + j] = count[r] > 0.0f ? v / count[r] : 0.0f;
            any |= v != 0.0f;
        }
        e->has[r] = any && count[r] > 0.0f;
    }
    return MQ_OK;
}

/* The entry of GGUF tensor `sums` ("W.in_sum2") and its "W.counts". */
static mq_status gguf_entry(const char *path, const mq_gguf *g, const mq_gguf_tensor *sums,
                            entry *e)
{
    size_t base = strlen(sums->name) - strlen(".in_sum2");
    const mq_gguf_tensor *counts = NULL;
    for (size_t i = 0; i < g->n_tensors && !counts; i++) {
        const char *n = g->tensors[i].name;
        if (strncmp(n, sums->name, base) == 0 && strcmp(n + base, ".counts") == 0)
            counts = &g->tensors[i];
    }
    if (!(e->name = strndup(sums->name, base))) return nomem(path);
    if (!counts)
        return mq_set_error(MQ_STATUS_E_FORMAT, "%s: entry '%s': no %s.counts tensor", path,
                            e->name, e->name);
    if (sums->type != MQ_GGUF_TYPE_F32 || counts->type != MQ_GGUF_TYPE_F32)
        return mq_set_error(MQ_STATUS_E_FORMAT, "%s: entry '%s': in_sum2 and counts must be F32",
                            path, e->name);
    size_t rows = (size_t)sums->ne[1];
    if (sums->n_dims > 2 || counts->n_dims > 2 || sums->ne[0] == 0 || rows == 0 ||
        counts->ne[0] != 1 || counts->ne[1] != rows)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: entry '%s': in_sum2 of shape [%llu, %llu] and counts of shape "
                            "[%llu, %llu] (want [n_in, n_mat] and [1, n_mat])",
                            path, e->name, (unsigned long long)sums->ne[0],
                            (unsigned long long)sums->ne[1], (unsigned long long)counts->ne[0],
                            (unsigned long long)counts->ne[1]);
    e->n_in = (size_t)sums->ne[0];
    e->nval = (size_t)sums->elements;
    float *c = malloc(rows * sizeof *c + 1);
    if (!c) return nomem(path);
    for (size_t r = 0; r < rows; r++) {
        c[r] = f32_at(counts->data, r);
        if (!isfinite(c[r]) || c[r] < 0.0f) {
            double bad = (double)c[r];
            free(c);
            return mq_set_error(MQ_STATUS_E_FORMAT, "%s: entry '%s': count %zu is %g", path,
                                e->name, r, bad);
        }
    }
    mq_status st = fill(path, e, sums->data, c, rows);
    free(c);
    return st;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

static mq_status load_gguf(mq_imatrix *im, const unsigned char *buf, size_t n)
{
    mq_gguf g;
    mq_status st = mq_gguf_parse(buf, n, im->path, &g);
    if (st != MQ_OK) return st;
    if (!(im->e = calloc(g.n_tensors + 1, sizeof *im->e))) {
        st = nomem(im->path);
        goto done;
    }
    for (size_t i = 0; i < g.n_tensors && st == MQ_OK; i++) {
        const char *name = g.tensors[i].name;
        /* As llama.cpp reads it: other tensors are not the matrix's. */
        if (ends_with(name, ".in_sum2"))
            st = gguf_entry(im->path, &g, &g.tensors[i], &im->e[im->n++]);
    }
done:
    mq_gguf_free(&g);
    return st;
}

typedef struct {
    const unsigned char *p;
    size_t n, pos;
} dat_cursor;

static bool dat_i32(dat_cursor *c, int32_t *v)
{
    if (c->n - c->pos < 4) return false;
    const unsigned char *p = c->p + c->pos;
    *v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24);
    c->pos += 4;
    return true;
}

static mq_status dat_truncated(const char *path, size_t entry_no, const char *what)
{
    return mq_set_error(MQ_STATUS_E_FORMAT, "%s: legacy imatrix: entry %zu: truncated (%s)", path,
                        entry_no, what);
}

static mq_status load_dat(mq_imatrix *im, const unsigned char *buf, size_t n)
{
    dat_cursor c = {buf, n, 0};
    int32_t count;
    if (!dat_i32(&c, &count) || count <= 0 || (size_t)count > n / 12)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: neither GGUF nor a legacy imatrix (entry count %d)", im->path,
                            n < 4 ? -1 : (int)count);
    if (!(im->e = calloc((size_t)count + 1, sizeof *im->e))) return nomem(im->path);
    for (size_t i = 0; i < (size_t)count; i++) {
        entry *e = &im->e[im->n++];
        int32_t len, ncall, nval;
        if (!dat_i32(&c, &len)) return dat_truncated(im->path, i, "name length");
        if (len <= 0 || (size_t)len > c.n - c.pos || memchr(c.p + c.pos, 0, (size_t)len))
            return dat_truncated(im->path, i, "name");
        if (!(e->name = strndup((const char *)c.p + c.pos, (size_t)len))) return nomem(im->path);
        c.pos += (size_t)len;
        if (!dat_i32(&c, &ncall) || !dat_i32(&c, &nval))
            return dat_truncated(im->path, i, "call and value counts");
        if (nval <= 0 || (size_t)nval > (c.n - c.pos) / 4)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "%s: legacy imatrix: entry '%s': %d values, more than the file "
                                "holds (or none)",
                                im->path, e->name, (int)nval);
        e->nval = (size_t)nval;
        float calls = ncall > 0 ? (float)ncall : 0.0f;
        mq_status st = fill(im->path, e, c.p + c.pos, &calls, 1);
        if (st != MQ_OK) return st;
        c.pos += (size_t)nval * 4;
    }
    return MQ_OK; /* the last call and the calibration file's name may follow */
}

/* Every entry's name must map: those that do not are listed. */
static mq_status check_names(const mq_imatrix *im)
{
    char list[1024] = "";
    size_t bad = 0, used = 0;
    for (size_t i = 0; i < im->n; i++) {
        if (mq_imatrix_key_known(im->e[i].name)) continue;
        if (bad++ < UNMAPPED_LISTED && used < sizeof list) {
            int w =
                snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", im->e[i].name);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    if (!bad) return MQ_OK;
    return mq_set_error(MQ_STATUS_E_FORMAT,
                        "%s: %zu entr%s with no Hugging Face weight name this version maps: %s%s",
                        im->path, bad, bad == 1 ? "y" : "ies", list,
                        bad > UNMAPPED_LISTED ? ", ..." : "");
}

mq_status mq_imatrix_load(const char *path, mq_imatrix **out)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    mq_imatrix *im = NULL;
    mq_status st;
    *out = NULL;
    if ((st = read_all(path, &buf, &n)) != MQ_OK) goto done;
    if (!(im = calloc(1, sizeof *im)) || !(im->path = strdup(path))) {
        st = nomem(path);
        goto done;
    }
    st = mq_gguf_is_gguf(buf, n) ? load_gguf(im, buf, n) : load_dat(im, buf, n);
    if (st == MQ_OK && im->n == 0)
        st = mq_set_error(MQ_STATUS_E_FORMAT, "%s: an importance matrix with no entries", path);
    if (st == MQ_OK) st = check_names(im);
    if (st == MQ_OK) {
        *out = im;
        im = NULL;
    }
done:
    mq_imatrix_free(im);
    free(buf);
    return st;
}

mq_status mq_imatrix_find(const mq_imatrix *im, const char *name, size_t cols, const float **imp)
{
    char key[512];
    size_t expert;
    *imp = NULL;
    if (!im || !mq_imatrix_hf_key(name, key, sizeof key, &expert)) return MQ_OK;
    for (size_t i = 0; i < im->n; i++) {
        const entry *e = &im->e[i];
        if (strcmp(e->name, key) != 0) continue;
        size_t per = e->n_in ? e->n_in : cols; /* legacy: rows of the weight's width */
        size_t rows = e->nval / per, row = expert == SIZE_MAX ? 0 : expert;
        if (per != cols || e->nval % per != 0 || (expert == SIZE_MAX && rows != 1) || row >= rows)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "%s: entry '%s' holds %zu values (%zu a row) that do not fit %s, "
                                "a weight of %zu columns%s",
                                im->path, key, e->nval, per, name, cols,
                                expert == SIZE_MAX ? "" : " (one expert of a set)");
        /* The legacy layout keeps one usable flag for the whole entry. */
        bool usable = e->n_has == 1 ? e->has[0] : e->has[row];
        if (e->n_has == 1 && rows > 1) {
            usable = false;
            for (size_t j = 0; j < per; j++)
                usable |= e->imp[row * per + j] != 0.0f;
        }
        if (usable) *imp = e->imp + row * per;
        return MQ_OK;
    }
    return MQ_OK;
}
