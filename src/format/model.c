/* In-memory model: ordered named tensors over reference-counted blobs. */
#include "model.h"

#include "dtype.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct mq_blob {
    long refs; /* atomic: models that share a blob may be used and freed from several threads */
    void *data;
    size_t size;
    bool mapped;
    /* The caller's memory (mq_model_add_tensor_ref): release(user) instead of free. */
    bool borrowed;
    void (*release)(void *user);
    void *user;
    dev_t dev;
    ino_t ino;
    char *path; /* mapped: the file's path as opened */
};

mq_blob *mq_blob_new_heap(size_t n)
{
    mq_blob *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->data = calloc(n ? n : 1, 1);
    if (!b->data) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->size = n;
    return b;
}

mq_blob *mq_blob_new_map(void *addr, size_t len, dev_t dev, ino_t ino, const char *path)
{
    mq_blob *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    if (!(b->path = strdup(path ? path : ""))) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->data = addr;
    b->size = len;
    b->mapped = true;
    b->dev = dev;
    b->ino = ino;
    return b;
}

void *mq_blob_data(mq_blob *b)
{
    return b->data;
}

bool mq_blob_is_file(const mq_blob *b, dev_t dev, ino_t ino)
{
    return b->mapped && b->dev == dev && b->ino == ino;
}

mq_blob *mq_blob_ref(mq_blob *b)
{
    if (b) __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void mq_blob_unref(mq_blob *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    if (b->mapped) {
        if (b->size) munmap(b->data, b->size);
    } else if (b->borrowed) {
        if (b->release) b->release(b->user);
    } else {
        free(b->data);
    }
    free(b->path);
    free(b);
}

mq_status mq_model_new(mq_model **out)
{
    mq_clear_error();
    if (!out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_model_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return mq_set_error(MQ_STATUS_E_NOMEM, "mq_model_new: out of memory");
    return MQ_OK;
}

void mq_model_free(mq_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->count; i++) {
        free((char *)m->tensors[i].name);
        mq_blob_unref(m->blobs[i]);
    }
    for (size_t i = 0; i < m->meta_count; i++) {
        free(m->meta_keys[i]);
        free(m->meta_values[i]);
    }
    free(m->tensors);
    free(m->blobs);
    free(m->index);
    free(m->meta_keys);
    free(m->meta_values);
    free(m->path);
    free(m);
}

/* FNV-1a: names are short and a header may hold a million of them. */
static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static void index_insert(mq_model *m, size_t pos)
{
    size_t mask = m->index_cap - 1, i = name_hash(m->tensors[pos].name) & mask;
    while (m->index[i])
        i = (i + 1) & mask;
    m->index[i] = pos + 1;
}

/* Keeps the table at most half full; rebuilt on growth and after truncation. */
static bool index_rebuild(mq_model *m, size_t cap)
{
    size_t *t = calloc(cap, sizeof *t);
    if (!t) return false;
    free(m->index);
    m->index = t;
    m->index_cap = cap;
    for (size_t i = 0; i < m->count; i++)
        index_insert(m, i);
    return true;
}

long mq_model_index(const mq_model *m, const char *name)
{
    if (!m->index_cap) return -1;
    size_t mask = m->index_cap - 1;
    for (size_t i = name_hash(name) & mask; m->index[i]; i = (i + 1) & mask)
        if (strcmp(m->tensors[m->index[i] - 1].name, name) == 0) return (long)(m->index[i] - 1);
    return -1;
}

mq_status mq_model_append(mq_model *m, const char *name, mq_dtype dtype, int rank,
                          const int64_t *shape, const void *data, size_t nbytes, mq_blob *blob)
{
    uint64_t expect;
    if (!m || !name)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "add tensor: model or name is NULL");
    if ((unsigned)dtype >= MQ_DTYPE_COUNT_)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%s': unknown dtype %d", name,
                            (int)dtype);
    if (rank < 0 || rank > MQ_MAX_RANK)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%s': rank %d outside 0..%d", name,
                            rank, MQ_MAX_RANK);
    if (rank > 0 && !shape)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%s': shape is NULL", name);
    if (!mq_shape_nbytes(rank, shape, dtype, &expect))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "tensor '%s': negative dimension or size overflow", name);
    if (expect != nbytes)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "tensor '%s': %zu bytes given, shape and dtype need %llu", name, nbytes,
                            (unsigned long long)expect);
    if (nbytes && !data)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%s': data is NULL", name);
    if (mq_model_index(m, name) >= 0)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%s': duplicate name", name);
    if (2 * (m->count + 1) > m->index_cap &&
        !index_rebuild(m, m->index_cap ? 2 * m->index_cap : 32))
        return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        mq_tensor *t = realloc(m->tensors, cap * sizeof *t);
        if (!t) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
        m->tensors = t;
        mq_blob **b = realloc(m->blobs, cap * sizeof *b);
        if (!b) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
        m->blobs = b;
        m->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
    mq_tensor *t = &m->tensors[m->count];
    memset(t, 0, sizeof *t);
    t->name = copy;
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    m->blobs[m->count] = mq_blob_ref(blob);
    m->count++;
    index_insert(m, m->count - 1);
    return MQ_OK;
}

/* The argument checks both ways of adding a tensor make; *nbytes its size. */
static mq_status check_new_tensor(const mq_model *m, const char *name, mq_dtype dtype, int rank,
                                  const int64_t *shape, const void *data, uint64_t *nbytes)
{
    if (!m || !name)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "add tensor: model or name is NULL");
    if (rank < 0 || rank > MQ_MAX_RANK || (rank > 0 && !shape) ||
        !mq_shape_nbytes(rank, shape, dtype, nbytes))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "tensor '%s': bad rank, shape or dtype (negative dim or overflow)",
                            name);
    if (*nbytes && !data)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "tensor '%s': data is NULL", name);
    return MQ_OK;
}

mq_status mq_model_add_tensor(mq_model *m, const char *name, mq_dtype dtype, int rank,
                              const int64_t *shape, const void *data)
{
    mq_clear_error();
    uint64_t nbytes = 0;
    mq_status st = check_new_tensor(m, name, dtype, rank, shape, data, &nbytes);
    if (st != MQ_OK) return st;
    mq_blob *b = mq_blob_new_heap((size_t)nbytes);
    if (!b) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
    if (nbytes) memcpy(mq_blob_data(b), data, (size_t)nbytes);
    st = mq_model_append(m, name, dtype, rank, shape, mq_blob_data(b), (size_t)nbytes, b);
    mq_blob_unref(b);
    return st;
}

mq_status mq_model_add_tensor_ref(mq_model *m, const char *name, mq_dtype dtype, int rank,
                                  const int64_t *shape, const void *data,
                                  void (*release)(void *user), void *user)
{
    mq_clear_error();
    uint64_t nbytes = 0;
    mq_blob *b = NULL;
    mq_status st = check_new_tensor(m, name, dtype, rank, shape, data, &nbytes);
    if (st == MQ_OK && !(b = calloc(1, sizeof *b)))
        st = mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
    if (st != MQ_OK) {
        if (release) release(user); /* the caller's memory is let go of on failure too */
        return st;
    }
    b->refs = 1;
    b->data = (void *)data; /* read only, as every input tensor */
    b->size = (size_t)nbytes;
    b->borrowed = true;
    b->release = release;
    b->user = user;
    st = mq_model_append(m, name, dtype, rank, shape, data, (size_t)nbytes, b);
    mq_blob_unref(b); /* the model's reference, if it took one, keeps it */
    return st;
}

size_t mq_model_count(const mq_model *m)
{
    return m ? m->count : 0;
}

const mq_tensor *mq_model_tensor(const mq_model *m, size_t i)
{
    return (m && i < m->count) ? &m->tensors[i] : NULL;
}

const mq_tensor *mq_model_find(const mq_model *m, const char *name)
{
    if (!m || !name) return NULL;
    long i = mq_model_index(m, name);
    return i < 0 ? NULL : &m->tensors[i];
}

size_t mq_model_metadata_count(const mq_model *m)
{
    return m ? m->meta_count : 0;
}

const char *mq_model_metadata_key(const mq_model *m, size_t i)
{
    return (m && i < m->meta_count) ? m->meta_keys[i] : NULL;
}

const char *mq_model_metadata_value(const mq_model *m, size_t i)
{
    return (m && i < m->meta_count) ? m->meta_values[i] : NULL;
}

mq_status mq_model_set_metadata(mq_model *m, const char *key, const char *value)
{
    mq_clear_error();
    if (!m || !key || !value)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "set metadata: NULL argument");
    char *v = strdup(value);
    if (!v) return mq_set_error(MQ_STATUS_E_NOMEM, "metadata '%s': out of memory", key);
    for (size_t i = 0; i < m->meta_count; i++) {
        if (strcmp(m->meta_keys[i], key) == 0) {
            free(m->meta_values[i]);
            m->meta_values[i] = v;
            return MQ_OK;
        }
    }
    if (m->meta_count == m->meta_cap) {
        size_t cap = m->meta_cap ? m->meta_cap * 2 : 8;
        char **k = realloc(m->meta_keys, cap * sizeof *k);
        if (k) m->meta_keys = k;
        char **vv = k ? realloc(m->meta_values, cap * sizeof *vv) : NULL;
        if (!vv) {
            free(v);
            return mq_set_error(MQ_STATUS_E_NOMEM, "metadata '%s': out of memory", key);
        }
        m->meta_values = vv;
        m->meta_cap = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return mq_set_error(MQ_STATUS_E_NOMEM, "metadata '%s': out of memory", key);
    }
    m->meta_keys[m->meta_count] = k;
    m->meta_values[m->meta_count] = v;
    m->meta_count++;
    return MQ_OK;
}

bool mq_model_maps_file(const mq_model *m, dev_t dev, ino_t ino)
{
    return mq_model_mapped_path(m, dev, ino) != NULL;
}

const char *mq_model_mapped_path(const mq_model *m, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->blobs[i] && mq_blob_is_file(m->blobs[i], dev, ino)) return m->blobs[i]->path;
    return NULL;
}

void mq_model_truncate(mq_model *m, size_t count)
{
    while (m->count > count) {
        m->count--;
        free((char *)m->tensors[m->count].name);
        mq_blob_unref(m->blobs[m->count]);
    }
    if (m->index_cap) {
        memset(m->index, 0, m->index_cap * sizeof *m->index);
        for (size_t i = 0; i < m->count; i++)
            index_insert(m, i);
    }
}
