/* State shared by the two halves of the streaming quantizer: planning and
 * header (stream.c), chunk generation and the compute loop (streamexec.c). */
#ifndef MQ_STREAMINT_H
#define MQ_STREAMINT_H

#include "layout.h"
#include "outfile.h"
#include "reference.h"
#include "ring.h"
#include "scheme.h"
#include "totals.h"

#include <sys/stat.h>
#include <time.h>

/* Bytes of scales (and of zero points) one chunk may carry: a 64th of the
 * memory limit, within these bounds. */
#define MQ_RUN_CAP ((size_t)256 << 10)
#define MQ_RUN_MIN ((size_t)4 << 10)
/* Output buffers between the compute and the writer thread. */
#define MQ_OUT_BUFFERS 3u

typedef enum {
    MQ_KIND_COPY,    /* kept as it is: copied file to file */
    MQ_KIND_ROWS,    /* quantized, whole rows per chunk */
    MQ_KIND_SPLIT,   /* quantized, a row (or the whole tensor) larger than a slot: two passes */
    MQ_KIND_CAST,    /* cast to F16 in element chunks */
    MQ_KIND_DEQUANT, /* an FP8 block source kept: dequantized in whole rows */
    MQ_KIND_DROP     /* an FP8 block source's weight_scale_inv: not written */
} mq_tensor_kind;

/* An FP8 block weight read as the float weight it stands for: the tensor the
 * plan sees (its values' dtype), its scales, and the staging of one chunk.
 * A compressed-tensors FP8 layer with F32 or BF16 scales is one too (per
 * tensor, channel, group or block: a block of rows x in, 1 x in, 1 x group
 * or its block). */
typedef struct {
    mq_tensor vt;           /* the weight as the model's dtype (src_dtype) */
    const mq_tensor *scale; /* weight_scale_inv, [ceil(out / br), ceil(in / bc)] values */
    uint64_t scale_off;     /* its offset in the input file */
    size_t br, bc;          /* the block */
    bool ct;                /* a compressed-tensors layer: its companions bear our names */
    unsigned char *vals;    /* one chunk's rows dequantized */
    unsigned char *scales;  /* the scale rows of one chunk */
    /* The other sources (srcread.c), which read their own bytes: the ring
     * hands them empty chunks. */
    mq_src_format other;     /* MQ_SRC_FORMAT_NONE: FP8 blocks */
    char *name;              /* the weight's name, when it is not the codes' */
    const mq_tensor *codes;  /* the stored codes (MXFP4: the blocks) */
    uint64_t codes_off;      /* their offset in the input */
    uint64_t in_bytes;       /* the source bytes it stands for, for progress */
    size_t experts, out, in; /* MXFP4: blocks [experts, out, in / 32, 16] */
    long staged;             /* MXFP4: the expert whose bytes are in scales, or -1 */
    struct mq_srcrows *rows; /* compressed-tensors: the layer open while it runs */
} mq_fp8src;

/* What becomes of one input tensor, and where its output goes. */
typedef struct {
    const mq_tensor *t;
    uint64_t in_off; /* offset of its bytes in the input file */
    mq_action action;
    mq_tensor_kind kind;
    char *reason;          /* MQ_KIND_COPY: why it is kept (owned) */
    mq_qlayout lay;        /* quantize: the output tensors (owned) */
    bool nonfinite;        /* the scan found NaN or Inf in it */
    float amax;            /* the scan's max |w| (NVFP4's global scale) */
    size_t rows, cols;     /* groups and values per group; a cast is 1 x numel */
    size_t rows_per_chunk; /* MQ_KIND_ROWS */
    size_t per_chunk;      /* elements per chunk (split, cast, scan) */
    /* Offsets in the output's data buffer: the codes (or the cast or copied
     * tensor), the scales, the zero points and the packed shape. */
    uint64_t out_q, out_scale, out_zp, out_shape, out_gscale;
    int8_t *zp_all; /* asymmetric: every group's zero point, stored at the end */
    /* The mse observer: MQ_KIND_ROWS reads the tensor twice, pass 0 searching
     * (each group's record of improving steps into obs_mask, the tensor's
     * into obs_improved), pass 1 writing with obs_limit steps. */
    bool mse;
    uint8_t *obs_mask;
    bool *obs_improved;
    size_t obs_limit;
    const float *imp;  /* the importance matrix's row for it (borrowed), or NULL */
    mq_dtype in_dtype; /* the stored elements' dtype (t's, but F8_E4M3 for a source) */
    mq_fp8src *src;    /* an FP8 block source (t is src->vt), else NULL */
} mq_tplan;

typedef struct {
    const char *in_path;
    const mq_settings *set;
    mq_backend *be;
    mq_report *rep;
    mq_stream_totals *totals;
    mq_model *m;
    int fd;
    struct stat in_st; /* the input when opened, to notice a change during the run */
    off_t now_size;    /* its size at the end, for the message */
    mq_tplan *tp;
    size_t n;
    mq_ring *ring;
    size_t slot_bytes;
    size_t run_cap; /* bytes of scales (or zero points) one chunk may carry */
    mq_outfile *f;
    bool copy_in_kernel;      /* the filesystem copies on the server (see stream.c) */
    const unsigned char *map; /* the input's mapping to read in place, or NULL (pread) */
    size_t map_len;
    uint64_t data_start;              /* output offset of the data buffer */
    uint64_t out_bytes;               /* size of the output's data buffer */
    uint64_t bytes_total, bytes_done; /* this file's input bytes */
    size_t tensors_done;
    struct timespec last_progress;
} mq_stream;

/* Reads every tensor to quantize once (FP8 block sources dequantized) and
 * marks those holding NaN/Inf (mq_tplan.nonfinite), for the plan to keep them
 * as they are with skip_nonfinite, and records each one's max |w|
 * (mq_tplan.amax) for NVFP4's global scale. */
mq_status mq_stream_scan(mq_stream *s);
/* Moves every tensor's data to the output, appending report entries. */
mq_status mq_stream_run(mq_stream *s);

#endif
