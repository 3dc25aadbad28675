/* The output plan of one quantized weight: which tensors it becomes in the
 * compressed-tensors layout (names, dtypes, shapes, sizes), where each code
 * lands, and how codes and zero points are packed. The in-memory quantizer,
 * the streaming quantizer, the config.json writer, dequantize and eval all
 * take the layout from here, so they cannot disagree.
 *
 * Formats (compressed-tensors' names):
 *   int-quantized  (W8A8: int8 symmetric weights, dynamic int8 activations)
 *     <w>             I8   the weight's shape
 *     <w>_scale       dtype of the weight, [rows, 1] per channel or [1] per tensor
 *   pack-quantized (int8 weights only: asymmetric, or symmetric with weights_only)
 *     <w>_packed      I32  the weight's shape with the last dimension d turned
 *                          into ceil(d / 4) words; each word holds four codes as
 *                          unsigned bytes (code + 128 = code XOR 0x80), the first
 *                          in the low byte; a row's last word is padded with 0
 *     <w>_shape       I64  [rank]: the weight's shape
 *     <w>_scale       as above
 *     <w>_zero_point  asymmetric only: per channel I32 [ceil(rows / 4), 1], the
 *                     zero points packed as the codes along dimension 0; per
 *                     tensor I8 [1], unpacked
 *   The int4 presets (W4A16, W4A16_ASYM) are pack-quantized with eight codes per
 *   word (code + 8 in nibble i % 8 of word i / 8), zero points packed likewise
 *   along dimension 0; int8 and int4 groups (W8A16, W4A16) have scales
 *   [rows, in / group] and zero points [ceil(rows / (32 / bits)), in / group].
 *   float-quantized (FP8_DYNAMIC, FP8_BLOCK)
 *     <w>             F8_E4M3 the weight's shape
 *     <w>_scale       dtype of the weight, [rows, 1] per channel, or
 *                     [ceil(rows / 128), ceil(in / 128)] for 128x128 blocks
 * rows is the weight's first dimension per channel, 1 per tensor. */
#ifndef MQ_LAYOUT_H
#define MQ_LAYOUT_H

#include "monoquant.h"
#include "reference.h"
#include "scheme.h"

#define MQ_SCALE_SUFFIX "_scale"
#define MQ_ZP_SUFFIX "_zero_point"
#define MQ_PACKED_SUFFIX "_packed"
#define MQ_SHAPE_SUFFIX "_shape"
#define MQ_GSCALE_SUFFIX "_global_scale"
/* compressed-tensors release whose layout and config block we write. */
#define MQ_CT_VERSION "0.20.1"

/* The output tensors of one quantized weight, in file order. */
enum { MQ_QOUT_CODES = 0, MQ_QOUT_SCALE, MQ_QOUT_ZP, MQ_QOUT_SHAPE, MQ_QOUT_GSCALE, MQ_QOUT_COUNT };

typedef struct {
    char *name; /* NULL: not written in this format */
    mq_dtype dtype;
    int rank;
    int64_t shape[MQ_MAX_RANK];
    uint64_t nbytes;
} mq_qout;

typedef struct {
    mq_qformat format;
    mq_qkind kind;
    bool symmetric;
    size_t group;      /* values per group along the last dimension (0: channel or tensor) */
    size_t block;      /* FP8 blocks of block x block values (0: none) */
    size_t out_rows;   /* the weight's first dimension */
    size_t scale_cols; /* scales per weight row: groups, blocks across, or 1 */
    /* Quantization groups (channels, groups, or 1) x values per group; for
     * blocks the weight's rows x its last dimension. */
    size_t rows, cols;
    size_t inner;       /* values per row of the last dimension */
    size_t inner_bytes; /* bytes such a row takes in the output (packed: whole words) */
    /* NVFP4: the tensor's global scale (1 until the caller sets it from the
     * tensor's, or its fused set's, amax: mq_nvfp4_global_scale). */
    float gscale;
    mq_qout out[MQ_QOUT_COUNT];
} mq_qlayout;

/* The __metadata__ entries a run adds to each output file (replacing entries
 * of the same key in place): the tool, the scheme's label and, when
 * quantizing, the format. Fills kv (the strings live as long as the scheme)
 * and returns the count (at most MQ_OUTPUT_META). */
#define MQ_OUTPUT_META 3
int mq_output_metadata(const mq_scheme *s, const char *kv[MQ_OUTPUT_META][2]);

/* Plans the output of quantizing t (rank >= 2, non-empty) with scheme s. */
mq_status mq_qlayout_init(mq_qlayout *l, const mq_tensor *t, const mq_scheme *s);
void mq_qlayout_free(mq_qlayout *l);

/* The suffixes compressed-tensors gives the tensors beside a quantized weight
 * W (W_scale, W_zero_point, W_packed, W_shape, W_global_scale, W_g_idx): a
 * loader attaches any of them to W's layer, whichever format the layer has.
 * mq_companion_suffix(k) for k < mq_companion_count(). */
size_t mq_companion_count(void);
const char *mq_companion_suffix(size_t k);
/* The first n bytes of base, then suffix, in a new string (NULL when out of
 * memory): names of any length, never a fixed buffer. */
char *mq_name_with(const char *base, size_t n, const char *suffix);

/* MQ_STATUS_E_DATA naming the weight and the other tensor when `in` already
 * holds a companion of the weight (any of the suffixes above, whether the
 * layout writes it or not: a stray W_zero_point beside a symmetric layer
 * would be read as its zero point, a stray W_packed as a second copy of its
 * codes); MQ_STATUS_E_NOMEM. */
mq_status mq_qlayout_check_names(const mq_qlayout *l, const mq_model *in, const char *weight);

/* The dtype of the codes as the report gives it: I8, F8_E4M3 or (int4) I32. */
mq_dtype mq_qlayout_code_dtype(const mq_qlayout *l);
/* Byte offset, within the codes tensor, of the code of value e (row-major;
 * for int4, e even). */
uint64_t mq_qlayout_code_pos(const mq_qlayout *l, uint64_t e);
/* Output bytes of the codes of values [first, first + count), count > 0:
 * from the first code to the last, with the padding after each row end. */
size_t mq_qlayout_code_span(const mq_qlayout *l, uint64_t first, size_t count);
/* The XOR the backend applies to each code as it stores it (0x80 when
 * packed: a packed word's bytes are the codes + 128), so the packing is done
 * where the codes are made, on the device or the host kernels. */
uint8_t mq_qlayout_code_xor(const mq_qlayout *l);
/* What the back ends make for l, as one value (qkind.h): its kind,
 * symmetry, blocks and code relabelling. */
mq_qdesc mq_qlayout_desc(const mq_qlayout *l);
/* Moves the stored codes of values [first, first + count) at buf (already
 * XORed by the backend; int4: one unpacked code per byte, first even, within
 * one row or ending rows) to their output positions in place, zeroing the
 * padding after each row end (buf holds mq_qlayout_code_span bytes); returns
 * that span. Nothing moves for int8 unless the last dimension leaves padding. */
size_t mq_qlayout_pack_codes(const mq_qlayout *l, void *buf, uint64_t first, size_t count);
/* Bytes of the whole int4 rows of codes that quantize_rows writes for `groups`
 * groups (or rows): the output bytes of those values, already packed. */
size_t mq_qlayout_rows_bytes(const mq_qlayout *l, size_t groups);
/* The zero-point tensor's bytes (nbytes of out[MQ_QOUT_ZP]) from the zero
 * points of every group (l->rows int8 values, in group order) into dst. */
void mq_qlayout_store_zp(const mq_qlayout *l, const int8_t *zp, unsigned char *dst);
/* The bytes of the weight_global_scale tensor (NVFP4): l->gscale as F32. */
void mq_qlayout_gscale_bytes(const mq_qlayout *l, unsigned char *dst);
/* The bytes of the weight_shape tensor (pack-quantized). */
void mq_qlayout_shape_bytes(const mq_qlayout *l, unsigned char *dst);
/* Bytes of every output tensor together. */
uint64_t mq_qlayout_bytes(const mq_qlayout *l);

/* MQ_STATUS_E_DATA for NaN/Inf in group `bad` of a layout (a channel, a
 * group of a channel, a block, or the tensor), naming the tensor. */
mq_status mq_nonfinite_error(const mq_qlayout *l, const char *tensor, size_t bad);

/* ---- reading a quantized layer back (dequantize, eval) ---- */

/* One quantized layer of a model, in any of the formats. */
typedef struct {
    /* The weight's name and shape, with one code per byte: I8 (int8 or int4,
     * unpacked) or F8_E4M3. */
    mq_tensor w;
    mq_qkind kind;
    /* n_scale values: one per channel (w.shape[0]) or one in all, or per group
     * (w.shape[0] x scale_cols, `group` values each along the last dimension),
     * or per block (block x block values, scale_cols blocks across). */
    const mq_tensor *scale;
    size_t n_scale, scale_cols, group, block;
    const int8_t *zp; /* n_scale zero points (unpacked), or NULL when symmetric */
    float gscale;     /* NVFP4: weight_global_scale, which divides each scale */
    void *own_codes, *own_zp;
    char *own_name;
} mq_qlayer;

/* Whether t holds the codes of a quantized layer: an I8 tensor NAME with a
 * NAME_scale, an I32 W_packed with W_shape and W_scale, or a U8 W_packed
 * with a U8 (MX) or F8_E4M3 and W_global_scale (NVFP4) W_scale. */
bool mq_qlayer_is_codes(const mq_model *m, const mq_tensor *t);
/* Whether t is a scale, zero point or shape of such a layer. */
bool mq_qlayer_is_param(const mq_model *m, const mq_tensor *t);
/* Reads the layer whose codes are t, checking every tensor's dtype and shape
 * and that every scale is finite and positive; MQ_STATUS_E_FORMAT naming the
 * tensor and the cause (the caller adds the file). */
mq_status mq_qlayer_open(const mq_model *m, const mq_tensor *t, mq_qlayer *l);
void mq_qlayer_free(mq_qlayer *l);
/* Whether the layer is int8 with one scale per output channel or one in all
 * (what mq_ref_dequantize_rows and the int8 GEMM take directly). */
bool mq_qlayer_is_simple(const mq_qlayer *l);
/* The dtype a dequantized weight takes: its scale's, or BF16 under e8m0
 * scales (the MX formats) and NVFP4's (compressed-tensors decompresses
 * them to BF16). */
mq_dtype mq_qlayer_value_dtype(const mq_qlayer *l);
/* Row r of the weight (its first dimension) dequantized in fp32:
 * (q - zp) * s, or e4m3(q) * s for FP8, with the scale of each value's group. */
void mq_qlayer_row_f32(const mq_qlayer *l, size_t r, float *dst);

/* MQ_STATUS_E_FORMAT when `m` already holds a quantized layer (ours, any
 * compressed-tensors checkpoint or a foreign layout, FP8 blocks unless
 * fp8_blocks): quantizing it again would describe packed
 * codes as weights. The message names the layer; the caller adds the file. */
mq_status mq_check_not_quantized(const mq_model *m, bool fp8_blocks);

#endif
