/* In-memory model: an ordered list of named tensors whose bytes live in
 * reference-counted blobs (heap memory or a read-only file mapping), so a
 * quantized copy can share the untouched tensors of its input. */
#ifndef MQ_MODEL_H
#define MQ_MODEL_H

#include "monoquant.h"

#include <sys/types.h>

typedef struct mq_blob mq_blob;

/* Zeroed heap memory of n bytes (n may be 0). */
mq_blob *mq_blob_new_heap(size_t n);
/* Takes ownership of a read-only mapping of `path` (munmap on last unref);
 * the path is copied, to name the file in errors. */
mq_blob *mq_blob_new_map(void *addr, size_t len, dev_t dev, ino_t ino, const char *path);
void *mq_blob_data(mq_blob *b);
/* True when the blob maps the file with this device and inode. */
bool mq_blob_is_file(const mq_blob *b, dev_t dev, ino_t ino);
mq_blob *mq_blob_ref(mq_blob *b);
void mq_blob_unref(mq_blob *b);

struct mq_model {
    mq_tensor *tensors;
    mq_blob **blobs; /* blobs[i] holds tensors[i].data; NULL only for zero-byte tensors */
    size_t count, cap;
    size_t *index; /* open-addressing hash of names: tensor position + 1, 0 = empty */
    size_t index_cap;
    char **meta_keys, **meta_values;
    size_t meta_count, meta_cap;
    char *path; /* file it was opened from, or NULL */
};

/*
 * Appends a tensor whose `nbytes` bytes are at `data`, inside `blob` (a new
 * reference is taken; blob may be NULL when nbytes is 0). Name and shape are
 * copied. Fails on a duplicate name, rank > MQ_MAX_RANK or a size mismatch.
 */
mq_status mq_model_append(mq_model *m, const char *name, mq_dtype dtype, int rank,
                          const int64_t *shape, const void *data, size_t nbytes, mq_blob *blob);
/* Index of `name`, or -1. */
long mq_model_index(const mq_model *m, const char *name);
/* True when any tensor's bytes map the file with this device and inode. */
bool mq_model_maps_file(const mq_model *m, dev_t dev, ino_t ino);
/* The path that file was opened by, or NULL when no tensor maps it (a model
 * derived from another one shares its mappings, not its path). */
const char *mq_model_mapped_path(const mq_model *m, dev_t dev, ino_t ino);

/* Drops the tensors from index `count` on (undoes appends). */
void mq_model_truncate(mq_model *m, size_t count);

#endif
