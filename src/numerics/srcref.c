/* Reference dequantization of other tools' layouts (see srcref.h). */
#include "srcref.h"

#include "reference.h"

#include <math.h>

void mq_ref_mxfp4_expert(const uint8_t *blocks, const uint8_t *scales, size_t out, size_t in,
                         uint64_t e0, size_t n, mq_dtype dt, void *dst)
{
    /* The same products as value by value, walked along output rows (h) so
     * that only a row's start needs a division, with the 16 codes and the
     * 256 scales as tables. torch.ldexp is the code times pow(2.0, x - 127)
     * in fp32, whose 2^128 is inf. */
    float code[16], scale[256];
    for (unsigned c = 0; c < 16; c++)
        code[c] = mq_e2m1_to_f32((uint8_t)c);
    for (int x = 0; x < 256; x++)
        scale[x] = x == 255 ? INFINITY : ldexpf(1.0f, x - 127);
    size_t row_bytes = in / 2, groups = in / 32;
    for (size_t i = 0; i < n;) {
        size_t h = (size_t)((e0 + i) / out), j = (size_t)((e0 + i) % out);
        size_t len = out - j < n - i ? out - j : n - i, shift = h & 1 ? 4 : 0;
        const uint8_t *b = blocks + j * row_bytes + h / 2, *x = scales + j * groups + h / 32;
        for (size_t k = 0; k < len; k++)
            mq_store_scale(dst, dt, i + k,
                           code[(b[k * row_bytes] >> shift) & 15] * scale[x[k * groups]]);
        i += len;
    }
}
