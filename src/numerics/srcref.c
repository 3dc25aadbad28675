/* Reference dequantization of other tools' layouts (see srcref.h). */
#include "srcref.h"

#include "reference.h"

#include <math.h>

void mq_ref_mxfp4_expert(const uint8_t *blocks, const uint8_t *scales, size_t out, size_t in,
                         uint64_t e0, size_t n, mq_dtype dt, void *dst)
{
    size_t row_bytes = in / 2, groups = in / 32;
    for (size_t i = 0; i < n; i++) {
        uint64_t e = e0 + i;
        size_t h = (size_t)(e / out), j = (size_t)(e % out);
        uint8_t b = blocks[j * row_bytes + h / 2];
        uint8_t x = scales[j * groups + h / 32];
        /* torch.ldexp: the code times pow(2.0, x - 127) in fp32, whose 2^128 is inf. */
        float s = x == 255 ? INFINITY : ldexpf(1.0f, (int)x - 127);
        mq_store_scale(dst, dt, i, mq_e2m1_to_f32(h & 1 ? b >> 4 : b & 15) * s);
    }
}
