/* safetensors reader and writer. The reader maps the file read-only and
 * validates every rule of the reference implementation (and a few more)
 * before a tensor is exposed; the writer emits a deterministic header and
 * goes through mq_outfile so a failed save never leaves a partial file. */
#include "safetensors.h"

#include "dtype.h"
#include "error.h"
#include "infile.h"
#include "model.h"
#include "outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_LEN_BYTES 8
/* Tensor names in messages are cut here: a name may be megabytes long. */
#define ST_NAME_SHOWN 200

/* One validated header entry, before it becomes a model tensor. */
typedef struct {
    const char *name; /* borrowed from the JSON object */
    mq_dtype dtype;
    int rank;
    int64_t shape[MQ_MAX_RANK];
    uint64_t begin, end;
    size_t order; /* position in the header: breaks ties between equal offsets */
} st_entry;

static const char *show_path(const char *path)
{
    return path ? path : "<header>";
}

/* "<path>: tensor '<name>': <rule>", or "<path>: <rule>" when name is NULL. */
__attribute__((format(printf, 4, 5))) static mq_status
st_fail(mq_status s, const char *path, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mq_set_error_va(s, fmt, ap);
    va_end(ap);
    if (name)
        mq_error_prefix("%s: tensor '%.*s'", show_path(path), ST_NAME_SHOWN, name);
    else
        mq_error_prefix("%s", show_path(path));
    return s;
}

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points past U+10FFFF included), or n when the text is valid. */
static size_t utf8_bad_offset(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

/* Nesting depth at byte `n` of JSON text: tells a duplicate tensor name
 * (depth 1) from a duplicate key inside an entry or __metadata__. */
static int json_depth_at(const char *s, size_t n)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        if (in_str) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_str = false;
        } else if (s[i] == '"') {
            in_str = true;
        } else if (s[i] == '{' || s[i] == '[') {
            depth++;
        } else if (s[i] == '}' || s[i] == ']') {
            depth--;
        }
    }
    return depth;
}

static mq_status json_fail(const char *path, const char *header, size_t header_len,
                           const json_error_t *e)
{
    if (json_error_code(e) != json_error_duplicate_key)
        return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                       "header is not valid JSON: %s (line %d, column %d)", e->text, e->line,
                       e->column);
    /* jansson's text is "duplicate object key near '\"name\"'": show the name. */
    const char *near = strstr(e->text, "near '");
    char key[256] = "?";
    if (near) {
        snprintf(key, sizeof key, "%s", near + 6);
        size_t k = strlen(key);
        if (k && key[k - 1] == '\'') key[--k] = '\0';
        if (k >= 2 && key[0] == '"' && key[k - 1] == '"') {
            key[k - 1] = '\0';
            memmove(key, key + 1, k - 1);
        }
    }
    size_t pos = e->position > 0 && (size_t)e->position <= header_len ? (size_t)e->position : 0;
    if (json_depth_at(header, pos) <= 1)
        return st_fail(MQ_STATUS_E_FORMAT, path, key,
                       "duplicate tensor name (it appears more than once in the header)");
    return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                   "duplicate key '%s' inside a header entry or __metadata__ (line %d)", key,
                   e->line);
}

/* JSON integer >= 0 (reals such as 1.0 are not integers). */
static bool json_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static mq_status check_metadata(const char *path, json_t *meta)
{
    const char *key;
    json_t *v;
    if (json_is_null(meta)) return MQ_OK; /* the reference reader takes null as "none" */
    if (!json_is_object(meta))
        return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                       "__metadata__ is not an object of string values");
    json_object_foreach(meta, key, v)
    {
        if (!json_is_string(v))
            return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                           "__metadata__ key '%.*s': value is not a string", ST_NAME_SHOWN, key);
    }
    return MQ_OK;
}

static mq_status parse_shape(const char *path, const char *name, json_t *shape, st_entry *e)
{
    if (!json_is_array(shape))
        return st_fail(MQ_STATUS_E_FORMAT, path, name, "shape is missing or not an array");
    size_t rank = json_array_size(shape);
    if (rank > MQ_MAX_RANK)
        return st_fail(MQ_STATUS_E_FORMAT, path, name, "rank %zu exceeds %d", rank, MQ_MAX_RANK);
    for (size_t i = 0; i < rank; i++) {
        uint64_t d;
        if (!json_uint(json_array_get(shape, i), &d))
            return st_fail(MQ_STATUS_E_FORMAT, path, name,
                           "shape[%zu] is not a non-negative integer", i);
        e->shape[i] = (int64_t)d;
    }
    e->rank = (int)rank;
    return MQ_OK;
}

static mq_status parse_offsets(const char *path, const char *name, json_t *offs, st_entry *e)
{
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return st_fail(MQ_STATUS_E_FORMAT, path, name,
                       "data_offsets is not an array of exactly 2 integers [begin, end]");
    if (!json_uint(json_array_get(offs, 0), &e->begin) ||
        !json_uint(json_array_get(offs, 1), &e->end))
        return st_fail(MQ_STATUS_E_FORMAT, path, name,
                       "data_offsets are not non-negative integers");
    if (e->end < e->begin)
        return st_fail(MQ_STATUS_E_FORMAT, path, name, "data_offsets end %llu is before begin %llu",
                       (unsigned long long)e->end, (unsigned long long)e->begin);
    return MQ_OK;
}

static mq_status parse_entry(const char *path, const char *name, json_t *v, st_entry *e)
{
    mq_status st;
    uint64_t nbytes;
    char shape_txt[256];
    e->name = name;
    if (!json_is_object(v))
        return st_fail(MQ_STATUS_E_FORMAT, path, name,
                       "entry is not an object with dtype, shape and data_offsets");
    json_t *dt = json_object_get(v, "dtype");
    if (!dt) return st_fail(MQ_STATUS_E_FORMAT, path, name, "dtype is missing");
    if (!json_is_string(dt))
        return st_fail(MQ_STATUS_E_FORMAT, path, name, "dtype is not a string");
    if (!mq_dtype_from_name(json_string_value(dt), &e->dtype))
        return st_fail(MQ_STATUS_E_FORMAT, path, name, "unknown dtype '%.32s'",
                       json_string_value(dt));
    if ((st = parse_shape(path, name, json_object_get(v, "shape"), e)) != MQ_OK) return st;
    if ((st = parse_offsets(path, name, json_object_get(v, "data_offsets"), e)) != MQ_OK) return st;
    mq_shape_format(e->rank, e->shape, shape_txt, sizeof shape_txt);
    if (!mq_shape_nbytes(e->rank, e->shape, e->dtype, &nbytes))
        return st_fail(MQ_STATUS_E_FORMAT, path, name,
                       "shape %s of %s overflows the size arithmetic", shape_txt,
                       mq_dtype_name(e->dtype));
    if (e->end - e->begin != nbytes)
        return st_fail(MQ_STATUS_E_FORMAT, path, name,
                       "size mismatch: shape %s of %s needs %llu bytes but data_offsets "
                       "[%llu, %llu] hold %llu",
                       shape_txt, mq_dtype_name(e->dtype), (unsigned long long)nbytes,
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin));
    return MQ_OK;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return a->order < b->order ? -1 : (a->order > b->order);
}

/* Sorted entries must tile [0, data_len) exactly, as the reference demands. */
static mq_status check_layout(const char *path, const st_entry *e, size_t n, uint64_t data_len)
{
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && e[i].begin != 0)
            return st_fail(MQ_STATUS_E_FORMAT, path, e[i].name,
                           "gap at the start of the data: first tensor begins at %llu, not 0",
                           (unsigned long long)e[i].begin);
        if (i > 0 && e[i].begin > pos)
            return st_fail(MQ_STATUS_E_FORMAT, path, e[i].name,
                           "gap of %llu bytes after tensor '%.*s' (which ends at %llu)",
                           (unsigned long long)(e[i].begin - pos), ST_NAME_SHOWN, e[i - 1].name,
                           (unsigned long long)pos);
        if (i > 0 && e[i].begin < pos)
            return st_fail(MQ_STATUS_E_FORMAT, path, e[i].name,
                           "overlap with tensor '%.*s' (which ends at %llu; this begins at %llu)",
                           ST_NAME_SHOWN, e[i - 1].name, (unsigned long long)pos,
                           (unsigned long long)e[i].begin);
        pos = e[i].end;
    }
    const char *last = n ? e[n - 1].name : NULL;
    if (pos < data_len)
        return st_fail(MQ_STATUS_E_FORMAT, path, last,
                       "trailing bytes: tensor data ends at %llu but the data buffer holds %llu",
                       (unsigned long long)pos, (unsigned long long)data_len);
    if (pos > data_len)
        return st_fail(MQ_STATUS_E_FORMAT, path, last,
                       "truncated data: tensor ends at %llu but the data buffer holds only %llu "
                       "bytes",
                       (unsigned long long)pos, (unsigned long long)data_len);
    return MQ_OK;
}

/* Validates every entry of the top-level object into e[] (sorted by offset). */
static mq_status collect_entries(const char *path, json_t *root, st_entry *e, size_t *n,
                                 json_t **meta)
{
    const char *key;
    json_t *v;
    mq_status st;
    size_t count = 0;
    *meta = NULL;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if ((st = check_metadata(path, v)) != MQ_OK) return st;
            *meta = v;
            continue;
        }
        if ((st = parse_entry(path, key, v, &e[count])) != MQ_OK) return st;
        e[count].order = count;
        count++;
    }
    qsort(e, count, sizeof *e, entry_cmp);
    *n = count;
    return MQ_OK;
}

/* Appends entries then metadata; on failure `m` is restored to its old counts. */
static mq_status append_all(const st_entry *e, size_t n, json_t *meta, const unsigned char *data,
                            struct mq_blob *blob, mq_model *m)
{
    size_t tensors0 = m->count, meta0 = m->meta_count;
    mq_status st = MQ_OK;
    const char *key;
    json_t *v;
    for (size_t i = 0; i < n && st == MQ_OK; i++)
        st = mq_model_append(m, e[i].name, e[i].dtype, e[i].rank, e[i].shape, data + e[i].begin,
                             (size_t)(e[i].end - e[i].begin), blob);
    if (json_is_object(meta)) {
        json_object_foreach(meta, key, v)
        {
            if (st != MQ_OK) break;
            st = mq_model_set_metadata(m, key, json_string_value(v));
        }
    }
    if (st == MQ_OK) return MQ_OK;
    mq_model_truncate(m, tensors0);
    while (m->meta_count > meta0) {
        m->meta_count--;
        free(m->meta_keys[m->meta_count]);
        free(m->meta_values[m->meta_count]);
    }
    return st;
}

mq_status mq_st_parse_header(const char *path, const char *header, size_t header_len,
                             const unsigned char *data, uint64_t data_len, struct mq_blob *blob,
                             mq_model *m)
{
    json_error_t jerr;
    json_t *root = NULL, *meta = NULL;
    st_entry *entries = NULL;
    size_t n = 0;
    mq_status st;
    if (!header && header_len)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "%s: header is NULL", show_path(path));
    size_t bad = utf8_bad_offset((const unsigned char *)header, header_len);
    if (bad != header_len)
        return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                       "header is not valid UTF-8 (bad byte 0x%02x at header offset %zu)",
                       (unsigned)(unsigned char)header[bad], bad);
    root = json_loadb(header ? header : "", header_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                      &jerr);
    if (!root) return json_fail(path, header, header_len, &jerr);
    if (!json_is_object(root)) {
        st = st_fail(MQ_STATUS_E_FORMAT, path, NULL, "header's top level is not a JSON object");
        goto done;
    }
    size_t cap = json_object_size(root);
    entries = calloc(cap ? cap : 1, sizeof *entries);
    if (!entries) {
        st = st_fail(MQ_STATUS_E_NOMEM, path, NULL, "out of memory for %zu header entries", cap);
        goto done;
    }
    if ((st = collect_entries(path, root, entries, &n, &meta)) != MQ_OK) goto done;
    if ((st = check_layout(path, entries, n, data_len)) != MQ_OK) goto done;
    if (m && data) st = append_all(entries, n, meta, data, blob, m);
    if (st != MQ_OK) mq_error_prefix("%s", show_path(path));
done:
    free(entries);
    json_decref(root);
    return st;
}

/* Maps a regular file of at least 8 bytes read-only; *st gets its identity. */
static mq_status map_file(const char *path, void **addr, size_t *len, struct stat *st)
{
    int fd;
    mq_status s = mq_infile_open(path, MQ_STATUS_E_IO, &fd, st);
    if (s != MQ_OK) return s;
    if (st->st_size < ST_LEN_BYTES) {
        s = st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                    "file is %lld bytes, too small for the 8-byte header length",
                    (long long)st->st_size);
    } else if ((uint64_t)st->st_size > SIZE_MAX) {
        s = st_fail(MQ_STATUS_E_IO, path, NULL, "file too large to map");
    } else {
        *len = (size_t)st->st_size;
        *addr = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (*addr == MAP_FAILED)
            s = st_fail(MQ_STATUS_E_IO, path, NULL, "cannot map: %s", strerror(errno));
    }
    close(fd);
    return s;
}

/* Length prefix and its bounds, the rules checked before the header is read. */
static mq_status header_bounds(const char *path, const unsigned char *p, size_t len, uint64_t *n)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    *n = v;
    if (v > MQ_ST_MAX_HEADER)
        return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                       "header length %llu exceeds the limit of %llu bytes", (unsigned long long)v,
                       MQ_ST_MAX_HEADER);
    /* v <= 1e8 here, so 8 + v cannot overflow. */
    if (ST_LEN_BYTES + v > len)
        return st_fail(MQ_STATUS_E_FORMAT, path, NULL,
                       "header length %llu runs past the end of the file (%zu bytes)",
                       (unsigned long long)v, len);
    return MQ_OK;
}

mq_status mq_model_open(const char *path, mq_model **out)
{
    mq_clear_error();
    void *addr = NULL;
    size_t len = 0;
    struct stat sb;
    mq_blob *blob = NULL;
    mq_model *m = NULL;
    uint64_t n;
    mq_status st;
    if (out) *out = NULL;
    if (!path || !out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_model_open: NULL argument");
    if ((st = map_file(path, &addr, &len, &sb)) != MQ_OK) return st;
    if (!(blob = mq_blob_new_map(addr, len, sb.st_dev, sb.st_ino, path))) {
        munmap(addr, len);
        return st_fail(MQ_STATUS_E_NOMEM, path, NULL, "out of memory");
    }
    const unsigned char *p = addr;
    if ((st = header_bounds(path, p, len, &n)) != MQ_OK) goto done;
    if ((st = mq_model_new(&m)) != MQ_OK) goto done;
    st = mq_st_parse_header(path, (const char *)p + ST_LEN_BYTES, (size_t)n, p + ST_LEN_BYTES + n,
                            len - ST_LEN_BYTES - n, blob, m);
    if (st != MQ_OK) goto done;
    if (!(m->path = strdup(path))) {
        st = st_fail(MQ_STATUS_E_NOMEM, path, NULL, "out of memory");
        goto done;
    }
    *out = m;
    m = NULL;
done:
    mq_model_free(m);
    mq_blob_unref(blob); /* the tensors hold their own references */
    return st;
}

/* ---- writer ---- */

static mq_status build_metadata(const char *const *keys, const char *const *values, size_t n,
                                json_t *root)
{
    json_t *meta = json_object();
    if (!meta || json_object_set_new(root, "__metadata__", meta) != 0)
        return mq_set_error(MQ_STATUS_E_NOMEM, "safetensors header: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_string(values[i]);
        if (!v || json_object_set_new(meta, keys[i], v) != 0)
            return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                                "metadata '%.*s': key or value is not valid UTF-8 (or out of "
                                "memory)",
                                ST_NAME_SHOWN, keys[i]);
    }
    return MQ_OK;
}

static json_t *tensor_json(const mq_st_desc *t, uint64_t begin)
{
    json_t *shape = json_array(), *offs = json_array();
    json_t *o = json_pack("{s:s, s:o, s:o}", "dtype", mq_dtype_name(t->dtype), "shape", shape,
                          "data_offsets", offs);
    if (!o) return NULL; /* json_pack's "o" consumed shape and offs */
    bool ok = json_array_append_new(offs, json_integer((json_int_t)begin)) == 0 &&
              json_array_append_new(offs, json_integer((json_int_t)(begin + t->nbytes))) == 0;
    for (int d = 0; d < t->rank && ok; d++)
        ok = json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) == 0;
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static mq_status disagree(const char *name)
{
    return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                        "tensor '%.*s': shape, dtype, data and byte count disagree or overflow",
                        ST_NAME_SHOWN, name);
}

static mq_status build_tensors(const mq_st_desc *t, size_t n, json_t *root)
{
    uint64_t off = 0, need, end;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].name, "__metadata__") == 0)
            return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                                "tensor '__metadata__': the name is reserved by safetensors");
        /* Callers fill descriptors from open structs: re-check what the header will promise. */
        bool ok = mq_shape_nbytes(t[i].rank, t[i].shape, t[i].dtype, &need) &&
                  need == t[i].nbytes && !__builtin_add_overflow(off, need, &end) &&
                  end <= (uint64_t)INT64_MAX;
        if (!ok) return disagree(t[i].name);
        /* A JSON object would silently keep only the last of two equal names. */
        if (json_object_get(root, t[i].name))
            return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%.*s': duplicate name",
                                ST_NAME_SHOWN, t[i].name);
        json_t *o = tensor_json(&t[i], off);
        if (!o || json_object_set_new(root, t[i].name, o) != 0)
            return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                                "tensor '%.*s': name is not valid UTF-8 (or out of memory)",
                                ST_NAME_SHOWN, t[i].name);
        off = end;
    }
    return MQ_OK;
}

mq_status mq_st_build_header_desc(const mq_st_desc *t, size_t n, const char *const *meta_keys,
                                  const char *const *meta_values, size_t n_meta, char **out,
                                  size_t *out_len)
{
    mq_status st = MQ_OK;
    char *buf = NULL;
    if ((n && !t) || (n_meta && (!meta_keys || !meta_values)) || !out || !out_len)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_st_build_header: NULL argument");
    *out = NULL;
    *out_len = 0;
    json_t *root = json_object();
    if (!root) return mq_set_error(MQ_STATUS_E_NOMEM, "safetensors header: out of memory");
    if (n_meta && (st = build_metadata(meta_keys, meta_values, n_meta, root)) != MQ_OK) goto done;
    if ((st = build_tensors(t, n, root)) != MQ_OK) goto done;
    /* Dump into our own buffer, sized by a first pass, then pad so that the
     * data buffer starts 8-byte aligned. */
    size_t len = json_dumpb(root, NULL, 0, JSON_COMPACT);
    size_t padded = len + (8 - len % 8) % 8;
    if (len == 0 || !(buf = malloc(padded + 1)) ||
        json_dumpb(root, buf, len, JSON_COMPACT) != len) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "safetensors header: out of memory");
        goto done;
    }
    memset(buf + len, ' ', padded - len);
    buf[padded] = '\0';
    *out = buf;
    *out_len = padded;
    buf = NULL;
done:
    free(buf);
    json_decref(root);
    return st;
}

mq_status mq_st_build_header(const mq_model *m, char **out, size_t *out_len)
{
    mq_st_desc *d = NULL;
    mq_status st;
    if (!m || !out || !out_len)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_st_build_header: NULL argument");
    if (m->count && !(d = malloc(m->count * sizeof *d)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "safetensors header: out of memory");
    for (size_t i = 0; i < m->count; i++) {
        const mq_tensor *t = &m->tensors[i];
        if (t->nbytes && !t->data) {
            st = disagree(t->name);
            goto done;
        }
        d[i] = (mq_st_desc){t->name, t->dtype, t->rank, t->shape, t->nbytes};
    }
    st = mq_st_build_header_desc(d, m->count, (const char *const *)m->meta_keys,
                                 (const char *const *)m->meta_values, m->meta_count, out, out_len);
done:
    free(d);
    return st;
}

/* Writing over a file the model still maps would corrupt its own input. */
static mq_status refuse_own_input(const mq_model *m, const char *path)
{
    struct stat out, in;
    if (stat(path, &out) != 0) return MQ_OK;
    /* A model made from another (dequantized, quantized) maps that one's
     * file without being opened from it: name the file it maps. */
    const char *input = mq_model_mapped_path(m, out.st_dev, out.st_ino);
    if (!input && m->path && stat(m->path, &in) == 0 && in.st_dev == out.st_dev &&
        in.st_ino == out.st_ino)
        input = m->path;
    if (!input) return MQ_OK;
    return mq_set_error(MQ_STATUS_E_OUTPUT,
                        "output '%s' is the input file '%s' (same file); write to another path",
                        path, input);
}

static mq_status write_body(const mq_model *m, mq_outfile *f, const char *header, size_t n)
{
    unsigned char len8[ST_LEN_BYTES];
    mq_status st;
    for (int i = 0; i < ST_LEN_BYTES; i++)
        len8[i] = (unsigned char)((uint64_t)n >> (8 * i));
    if ((st = mq_outfile_write(f, len8, sizeof len8)) != MQ_OK) return st;
    if ((st = mq_outfile_write(f, header, n)) != MQ_OK) return st;
    for (size_t i = 0; i < m->count; i++) {
        const mq_tensor *t = &m->tensors[i];
        if (t->nbytes && (st = mq_outfile_write(f, t->data, t->nbytes)) != MQ_OK) return st;
    }
    return MQ_OK;
}

mq_status mq_model_save(const mq_model *m, const char *path)
{
    mq_clear_error();
    char *header = NULL;
    size_t n = 0;
    mq_outfile *f = NULL;
    mq_status st;
    if (!m || !path) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_model_save: NULL argument");
    if ((st = refuse_own_input(m, path)) != MQ_OK) return st;
    if ((st = mq_st_build_header(m, &header, &n)) != MQ_OK) {
        mq_error_prefix("writing '%s'", path);
        goto done;
    }
    if ((st = mq_outfile_open(path, &f)) != MQ_OK) goto done;
    if ((st = write_body(m, f, header, n)) != MQ_OK) goto done;
    st = mq_outfile_commit(f);
    f = NULL; /* commit frees it, on success or failure */
done:
    mq_outfile_abort(f);
    free(header);
    return st;
}
