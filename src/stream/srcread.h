/* The quantized sources other than FP8 blocks (mq_settings.src_format), read
 * on the host reference path: gpt-oss MXFP4 experts and compressed-tensors
 * layers. Each is planned as the float weight it stands for; its companion
 * tensors (MXFP4 scales; scales, zero points, shapes and NVFP4's global
 * scales) are left out of the output. A chunk of such a weight comes from
 * the ring empty: its values are read here with pread and dequantized into
 * the tensor's staging. A compressed-tensors FP8 layer with F32 or BF16
 * scales is planned here as an FP8 block source instead (streamint.h), which
 * the ring reads and the back end dequantizes. */
#ifndef MQ_SRCREAD_H
#define MQ_SRCREAD_H

#include "streamint.h"

/* Marks every source weight of s->m (tp[i].src, its float view) and its
 * companions (MQ_KIND_DROP); MQ_STATUS_E_FORMAT naming a tensor whose layout
 * is broken, before any output. */
mq_status mq_src_plan(mq_stream *s);
/* The staging of one source weight while it runs. */
mq_status mq_src_begin(const mq_stream *s, mq_tplan *tp);
/* Values [e0, e0 + n) of the weight (row-major, as tp->t has them)
 * dequantized into tp->src->vals in tp->t's dtype. */
mq_status mq_src_values(const mq_stream *s, const mq_tplan *tp, uint64_t e0, size_t n);
/* Exactly n bytes at offset off of the input, with pread (an error names
 * the file). */
mq_status mq_src_read(const mq_stream *s, unsigned char *p, size_t n, uint64_t off);
/* Frees what mq_src_begin (or the FP8 path's staging) took. */
void mq_src_end(mq_tplan *tp);
/* Frees the source and all it holds. */
void mq_src_free(mq_fp8src *f);

#endif
