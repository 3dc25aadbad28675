/* A reader of GGUF files (ggml's container), enough for the tensors of an
 * importance matrix: the header, the key-value pairs (walked over, bounded,
 * not kept) and the tensor infos, over a file read whole into memory.
 *
 * Byte layout (little-endian throughout; version 3, and 2 which is the same):
 *   u32 magic "GGUF" (0x46554747), u32 version,
 *   u64 n_tensors, u64 n_kv,
 *   n_kv x { str key, u32 type, value }
 *       str   = u64 length + that many bytes (no terminator)
 *       type  = 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte),
 *               8 str, 9 array (u32 element type, u64 count, the elements),
 *               10 u64, 11 i64, 12 f64
 *   n_tensors x { str name, u32 n_dims (1..4), u64 ne[n_dims] (ne[0] the
 *               fastest-varying), u32 ggml type (0 F32), u64 offset }
 *   padding to the alignment (key "general.alignment", u32, default 32),
 *   then the data section: each tensor at its offset from the section's start.
 *
 * Every length and count is checked against the bytes left before it is
 * used, so a truncated or hostile file is an error, never a read past the
 * buffer. */
#ifndef MQ_GGUF_H
#define MQ_GGUF_H

#include "monoquant.h"

#include <stddef.h>
#include <stdint.h>

#define MQ_GGUF_TYPE_F32 0u
#define MQ_GGUF_MAX_DIMS 4

typedef struct {
    char *name; /* owned, NUL-terminated */
    uint32_t n_dims;
    uint64_t ne[MQ_GGUF_MAX_DIMS]; /* 1 past n_dims */
    uint32_t type;
    const unsigned char *data; /* into the caller's buffer; F32: 4 * elements bytes */
    uint64_t elements;
} mq_gguf_tensor;

typedef struct {
    mq_gguf_tensor *tensors;
    size_t n_tensors;
} mq_gguf;

/* Whether buf starts with the GGUF magic. */
int mq_gguf_is_gguf(const unsigned char *buf, size_t n);

/* Parses the `n` bytes at `buf` (the file `path`, for messages) into *out,
 * whose tensors point into buf. Errors are MQ_STATUS_E_FORMAT naming the
 * file, the tensor where there is one, and the cause; MQ_STATUS_E_NOMEM. F32
 * tensors must lie wholly inside the data section; other types are listed
 * with data NULL. */
mq_status mq_gguf_parse(const unsigned char *buf, size_t n, const char *path, mq_gguf *out);
void mq_gguf_free(mq_gguf *g);

#endif
