/* The GGUF reader (see gguf.h for the layout). */
#include "gguf.h"

#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
/* Bounds on what a sane file holds; past them the file is refused before
 * any allocation that size would ask for. */
#define GGUF_MAX_NAME 4096u

enum {
    KV_U8 = 0,
    KV_I8,
    KV_U16,
    KV_I16,
    KV_U32,
    KV_I32,
    KV_F32,
    KV_BOOL,
    KV_STR,
    KV_ARRAY,
    KV_U64,
    KV_I64,
    KV_F64,
    KV_TYPES
};

typedef struct {
    const unsigned char *buf;
    size_t n, pos;
    const char *path;
} cursor;

static mq_status truncated(const cursor *c, const char *what)
{
    return mq_set_error(MQ_STATUS_E_FORMAT, "%s: GGUF: truncated at byte %zu (%s)", c->path, c->pos,
                        what);
}

static uint64_t le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool take(cursor *c, size_t bytes, const unsigned char **p)
{
    if (c->n - c->pos < bytes) return false;
    *p = c->buf + c->pos;
    c->pos += bytes;
    return true;
}

static mq_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    const unsigned char *p;
    *v = 0; /* set on every path: the compiler cannot see that callers stop on an error */
    if (!take(c, 4, &p)) return truncated(c, what);
    *v = (uint32_t)le(p, 4);
    return MQ_OK;
}

static mq_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    const unsigned char *p;
    *v = 0;
    if (!take(c, 8, &p)) return truncated(c, what);
    *v = le(p, 8);
    return MQ_OK;
}

static mq_status rd_str(cursor *c, const unsigned char **s, uint64_t *len, const char *what)
{
    *s = NULL;
    mq_status st = rd_u64(c, len, what);
    if (st != MQ_OK) return st;
    if (*len > c->n - c->pos) return truncated(c, what);
    return take(c, (size_t)*len, s) ? MQ_OK : truncated(c, what);
}

static size_t scalar_size(uint32_t type)
{
    static const unsigned char sizes[KV_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < KV_TYPES ? sizes[type] : 0;
}

/* Walks over one value of `type`; general.alignment's u32 into *align. */
static mq_status skip_value(cursor *c, uint32_t type, const char *key, bool is_align,
                            uint32_t *align)
{
    const unsigned char *p;
    uint64_t len;
    if (type == KV_STR) return rd_str(c, &p, &len, key);
    if (type == KV_ARRAY) {
        uint32_t et;
        uint64_t count;
        mq_status st;
        if ((st = rd_u32(c, &et, key)) != MQ_OK || (st = rd_u64(c, &count, key)) != MQ_OK)
            return st;
        if (et == KV_ARRAY || (et != KV_STR && !scalar_size(et)))
            return mq_set_error(MQ_STATUS_E_FORMAT, "%s: GGUF: key '%.*s': bad array type %u",
                                c->path, 200, key, et);
        if (et != KV_STR) {
            if (count > (c->n - c->pos) / scalar_size(et)) return truncated(c, key);
            c->pos += (size_t)count * scalar_size(et);
            return MQ_OK;
        }
        /* Each string takes at least its 8-byte length: a count past that
         * fails at once instead of looping over a huge count. */
        if (count > (c->n - c->pos) / 8) return truncated(c, key);
        for (uint64_t i = 0; i < count; i++)
            if ((st = rd_str(c, &p, &len, key)) != MQ_OK) return st;
        return MQ_OK;
    }
    if (!scalar_size(type))
        return mq_set_error(MQ_STATUS_E_FORMAT, "%s: GGUF: key '%.*s': unknown value type %u",
                            c->path, 200, key, type);
    if (is_align) {
        if (type != KV_U32)
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "%s: GGUF: general.alignment is of type %u, not u32", c->path,
                                type);
        return rd_u32(c, align, key);
    }
    return take(c, scalar_size(type), &p) ? MQ_OK : truncated(c, key);
}

static mq_status read_kv(cursor *c, uint64_t n_kv, uint32_t *align)
{
    for (uint64_t i = 0; i < n_kv; i++) {
        const unsigned char *k = NULL;
        uint64_t klen = 0;
        uint32_t type;
        char key[256];
        mq_status st = rd_str(c, &k, &klen, "a key");
        if (st != MQ_OK) return st;
        snprintf(key, sizeof key, "%.*s", (int)(klen < 255 ? klen : 255), (const char *)k);
        if ((st = rd_u32(c, &type, key)) != MQ_OK) return st;
        bool is_align =
            klen == strlen("general.alignment") && memcmp(k, "general.alignment", klen) == 0;
        if ((st = skip_value(c, type, key, is_align, align)) != MQ_OK) return st;
    }
    if (*align == 0 || (*align & (*align - 1)) != 0)
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: GGUF: general.alignment %u is not a power of two", c->path,
                            *align);
    return MQ_OK;
}

static mq_status read_info(cursor *c, mq_gguf_tensor *t, uint64_t *off)
{
    const unsigned char *name = NULL;
    uint64_t len = 0;
    mq_status st = rd_str(c, &name, &len, "a tensor name");
    if (st != MQ_OK) return st;
    if (len == 0 || len > GGUF_MAX_NAME || memchr(name, 0, (size_t)len))
        return mq_set_error(MQ_STATUS_E_FORMAT,
                            "%s: GGUF: a tensor name of %llu bytes (empty, too long, or with "
                            "a NUL byte)",
                            c->path, (unsigned long long)len);
    if (!(t->name = malloc((size_t)len + 1))) return MQ_STATUS_E_NOMEM;
    memcpy(t->name, name, (size_t)len);
    t->name[len] = '\0';
    if ((st = rd_u32(c, &t->n_dims, t->name)) != MQ_OK) return st;
    if (t->n_dims < 1 || t->n_dims > MQ_GGUF_MAX_DIMS)
        return mq_set_error(MQ_STATUS_E_FORMAT, "%s: GGUF: tensor '%s': %u dimensions", c->path,
                            t->name, t->n_dims);
    t->elements = 1;
    for (uint32_t d = 0; d < MQ_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && (st = rd_u64(c, &t->ne[d], t->name)) != MQ_OK) return st;
        /* Every F32 element takes 4 bytes of the file: a product past its
         * size cannot be right, and checking each step keeps it from wrapping. */
        if (t->ne[d] > c->n || (t->ne[d] && t->elements > c->n / t->ne[d]))
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "%s: GGUF: tensor '%s': shape larger than the file", c->path,
                                t->name);
        t->elements *= t->ne[d];
    }
    if ((st = rd_u32(c, &t->type, t->name)) != MQ_OK) return st;
    return rd_u64(c, off, t->name);
}

void mq_gguf_free(mq_gguf *g)
{
    if (!g) return;
    for (size_t i = 0; i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->tensors);
    g->tensors = NULL;
    g->n_tensors = 0;
}

int mq_gguf_is_gguf(const unsigned char *buf, size_t n)
{
    return n >= 4 && memcmp(buf, GGUF_MAGIC, 4) == 0;
}

/* Points the F32 tensors into the data section, checking each lies inside it. */
static mq_status place(const cursor *c, mq_gguf *g, const uint64_t *offs, size_t data0)
{
    size_t data_len = c->n - data0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        mq_gguf_tensor *t = &g->tensors[i];
        if (t->type != MQ_GGUF_TYPE_F32) continue;
        uint64_t bytes = t->elements * 4; /* no wrap: elements <= file size */
        if (offs[i] > data_len || bytes > data_len - offs[i])
            return mq_set_error(MQ_STATUS_E_FORMAT,
                                "%s: GGUF: tensor '%s': its %llu bytes at offset %llu lie past the "
                                "end of the file",
                                c->path, t->name, (unsigned long long)bytes,
                                (unsigned long long)offs[i]);
        t->data = c->buf + data0 + offs[i];
    }
    return MQ_OK;
}

mq_status mq_gguf_parse(const unsigned char *buf, size_t n, const char *path, mq_gguf *out)
{
    cursor c = {buf, n, 0, path};
    uint32_t version = 0, align = GGUF_DEFAULT_ALIGNMENT;
    uint64_t n_tensors, n_kv, *offs = NULL;
    mq_status st;
    memset(out, 0, sizeof *out);
    if (!mq_gguf_is_gguf(buf, n))
        return mq_set_error(MQ_STATUS_E_FORMAT, "%s: not a GGUF file (no 'GGUF' magic)", path);
    c.pos = 4;
    if ((st = rd_u32(&c, &version, "the version")) != MQ_OK) goto done;
    if (version != 2 && version != 3) {
        st = mq_set_error(MQ_STATUS_E_FORMAT, "%s: GGUF version %u (this reader knows 2 and 3)",
                          path, version);
        goto done;
    }
    if ((st = rd_u64(&c, &n_tensors, "the tensor count")) != MQ_OK ||
        (st = rd_u64(&c, &n_kv, "the key count")) != MQ_OK)
        goto done;
    /* A tensor info takes at least 8 + 1 + 4 + 8 + 4 + 8 bytes. */
    if (n_tensors > (n - c.pos) / 33) {
        st = truncated(&c, "the tensor count is larger than the file holds");
        goto done;
    }
    if ((st = read_kv(&c, n_kv, &align)) != MQ_OK) goto done;
    out->tensors = calloc((size_t)n_tensors + 1, sizeof *out->tensors);
    offs = calloc((size_t)n_tensors + 1, sizeof *offs);
    if (!out->tensors || !offs) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "%s: GGUF: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n_tensors; i++) {
        out->n_tensors = i + 1;
        if ((st = read_info(&c, &out->tensors[i], &offs[i])) != MQ_OK) {
            if (st == MQ_STATUS_E_NOMEM)
                st = mq_set_error(MQ_STATUS_E_NOMEM, "%s: GGUF: out of memory", path);
            goto done;
        }
    }
    size_t data0 = (c.pos + align - 1) / align * align;
    if (data0 > n) data0 = n;
    st = place(&c, out, offs, data0);
done:
    free(offs);
    if (st != MQ_OK) mq_gguf_free(out);
    return st;
}
