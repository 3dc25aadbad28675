/* safetensors reader and writer.
 *
 * Byte layout of a .safetensors file:
 *
 *   offset 0       u64 little-endian N: length of the JSON header in bytes
 *   offset 8       N bytes of UTF-8 JSON, an object:
 *                    { "__metadata__": { "key": "value", ... },       (optional, strings only)
 *                      "<tensor name>": { "dtype": "F32",
 *                                         "shape": [d0, d1, ...],      (non-negative integers)
 *                                         "data_offsets": [begin, end] },
 *                      ... }
 *                  padded with spaces so that 8 + N is a multiple of 8 (by writers)
 *   offset 8 + N   the data buffer: each tensor's bytes, row-major, little-endian,
 *                  at [begin, end) relative to the buffer start
 *
 * Rules the reader enforces (those of the reference implementation, plus
 * duplicate names and string-only metadata): N <= 100,000,000 and 8 + N <=
 * file size; header is valid UTF-8 JSON with an object at top level; dtype is
 * one of BOOL U8 I8 I16 U16 I32 U32 I64 U64 F16 BF16 F32 F64 F8_E4M3 F8_E5M2;
 * dims and offsets are non-negative integers; offsets sorted by begin tile the
 * buffer from 0 with no gap or overlap; end - begin == product(shape) *
 * dtype size (overflow-checked); the last end + 8 + N == file size.
 */
#ifndef MQ_SAFETENSORS_H
#define MQ_SAFETENSORS_H

#include "monoquant.h"

#define MQ_ST_MAX_HEADER 100000000ULL

/* Parses and validates a header (the N bytes after the length prefix) for a
 * file whose data buffer holds `data_len` bytes. On success appends every
 * tensor, in data-offset order (data pointing into `data`, owned by `blob`),
 * then the metadata to `m`; on failure `m` keeps its old tensors. With `data`
 * or `m` NULL it only validates. `path` names the file in errors (may be NULL). */
struct mq_blob;
mq_status mq_st_parse_header(const char *path, const char *header, size_t header_len,
                             const unsigned char *data, uint64_t data_len, struct mq_blob *blob,
                             mq_model *m);

/* The header mq_model_save would write for `m` (JSON padded to 8 bytes with
 * spaces, without the 8-byte length). Caller frees *out. */
mq_status mq_st_build_header(const mq_model *m, char **out, size_t *out_len);

/* One tensor of a header built before its bytes exist (streaming writers). */
typedef struct {
    const char *name;
    mq_dtype dtype;
    int rank;
    const int64_t *shape;
    uint64_t nbytes; /* must equal product(shape) * dtype size */
} mq_st_desc;

/* As mq_st_build_header, for tensors t[0..n) stored back to back in this
 * order and the metadata meta_keys[i] -> meta_values[i]. */
mq_status mq_st_build_header_desc(const mq_st_desc *t, size_t n, const char *const *meta_keys,
                                  const char *const *meta_values, size_t n_meta, char **out,
                                  size_t *out_len);

#endif
