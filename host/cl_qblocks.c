/* FP8 in 2-D blocks: a band of block rows at a time (one work-group per
 * block); a band wider than a buffer in slabs of whole blocks, copied as
 * rectangles. A block larger than a buffer takes the two-pass path
 * (backend.h: mq_be_quantize_two_pass). */
#include "cl_qparts.h"

#include "cl_error.h"
#include "error.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A rectangle of nr rows x `width` bytes between host memory (rows `pitch`
 * bytes apart, starting at byte x of row y) and a buffer that holds it densely. */
static mq_status rect(mq_cl_backend *cb, bool write, cl_mem buf, uint8_t *host, size_t pitch,
                      size_t x, size_t y, size_t width, size_t nr)
{
    size_t bo[3] = {0, 0, 0}, ho[3] = {x, y, 0}, region[3] = {width, nr, 1};
    cl_int e = write ? clEnqueueWriteBufferRect(cb->queue, buf, CL_FALSE, bo, ho, region, width, 0,
                                                pitch, 0, host, 0, NULL, NULL)
                     : clEnqueueReadBufferRect(cb->queue, buf, CL_FALSE, bo, ho, region, width, 0,
                                               pitch, 0, host, 0, NULL, NULL);
    if (e == CL_SUCCESS) return MQ_OK;
    return mq_cl_failed(cb, e, write ? "clEnqueueWriteBufferRect" : "clEnqueueReadBufferRect");
}

mq_status mq_cl_blocks_once(mq_cl_backend *cb, const uint8_t *src, mq_dtype dt, size_t rows,
                            size_t cols, size_t bs, uint8_t *q, uint8_t *scale, size_t *bad_block,
                            mq_err_acc *err)
{
    size_t es = mq_dtype_size(dt);
    mq_status st = mq_cl_check_dtype(dt, "quantize blocks");
    if (st == MQ_OK && (bs == 0 || bs > UINT32_MAX))
        st = mq_set_error(MQ_STATUS_E_INVALID_ARG, "OpenCL quantize blocks: block size %zu", bs);
    if (st == MQ_OK) st = mq_cl_check_rows("quantize blocks", rows, cols, es);
    if (st != MQ_OK || rows == 0 || cols == 0) return st;
    size_t nbr = (rows + bs - 1) / bs, nbc = (cols + bs - 1) / bs;
    /* Slab width: every column when a band fits, else as many whole blocks as do. */
    size_t width = cols, bands = 1;
    if (cols > cb->limit / es / bs)
        width = cb->limit / es / bs / bs * bs;
    else
        bands = cb->limit / (cols * es * bs);
    if (bands > nbr) bands = nbr;
    size_t wbc = (width + bs - 1) / bs, chunk_blocks = bands * wbc;
    cl_uint bs_a = (cl_uint)bs;
    mq_cl_qbufs w = {0};
    if ((st = mq_cl_slot_get(cb, MQ_CL_SLOT_IN, bands * bs * width * es, &w.in)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_OUT, bands * bs * width, &w.q)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_SCALE, chunk_blocks * es, &w.scale)) != MQ_OK ||
        (st = mq_cl_slot_get(cb, MQ_CL_SLOT_FLAGS, chunk_blocks, &w.bad)) != MQ_OK ||
        (err && (st = mq_cl_err_buffers(cb, &w, chunk_blocks)) != MQ_OK))
        goto done;
    if (!(w.hbad = malloc(chunk_blocks)) || !(w.hscale = malloc(chunk_blocks * es))) {
        st = mq_cl_qnomem();
        goto done;
    }
    for (size_t b0 = 0; b0 < nbr; b0 += bands) {
        size_t r0 = b0 * bs, r1 = (b0 + bands) * bs < rows ? (b0 + bands) * bs : rows;
        size_t nr = r1 - r0, cbr = (nr + bs - 1) / bs;
        for (size_t c0 = 0; c0 < cols; c0 += width) {
            size_t nc = cols - c0 < width ? cols - c0 : width, cbc = (nc + bs - 1) / bs;
            size_t blocks = cbr * cbc;
            cl_ulong nr_a = nr, nc_a = nc, ld_a = nc, nbc_a = cbc;
            mq_cl_arg args[] = {MQ_CL_ARG(w.in),   MQ_CL_ARG(nr_a),    MQ_CL_ARG(nc_a),
                                MQ_CL_ARG(ld_a),   MQ_CL_ARG(bs_a),    MQ_CL_ARG(nbc_a),
                                MQ_CL_ARG(w.q),    MQ_CL_ARG(w.scale), MQ_CL_ARG(w.bad),
                                MQ_CL_ARG(w.esum), MQ_CL_ARG(w.ecl)};
            cl_kernel k = err ? cb->blocks_err[dt] : cb->blocks[dt];
            bool dense = nc == cols;
            if ((st = dense ? mq_cl_write(cb, w.in, nr * cols * es, src + r0 * cols * es)
                            : rect(cb, true, w.in, (uint8_t *)src, cols * es, c0 * es, r0, nc * es,
                                   nr)) != MQ_OK ||
                (st = mq_cl_launch(cb, k, args, err ? 11 : 9, blocks * cb->wg, NULL)) != MQ_OK ||
                (st = dense ? mq_cl_read(cb, w.q, nr * cols, q + r0 * cols)
                            : rect(cb, false, w.q, q, cols, c0, r0, nc, nr)) != MQ_OK ||
                (st = mq_cl_read(cb, w.scale, blocks * es, w.hscale)) != MQ_OK ||
                (st = mq_cl_read(cb, w.bad, blocks, w.hbad)) != MQ_OK ||
                (err && (st = mq_cl_read_err(cb, &w, blocks)) != MQ_OK) ||
                (st = mq_cl_finish(cb)) != MQ_OK)
                goto done;
            /* Flags in block order: a chunk is whole bands, or one band. */
            for (size_t i = 0; i < blocks; i++) {
                if (w.hbad[i]) {
                    *bad_block = (b0 + i / cbc) * nbc + c0 / bs + i % cbc;
                    st = MQ_STATUS_E_DATA;
                    goto done;
                }
            }
            for (size_t i = 0; i < cbr; i++)
                memcpy(scale + ((b0 + i) * nbc + c0 / bs) * es, w.hscale + i * cbc * es, cbc * es);
            if (err) mq_cl_qbufs_fold(err, &w, blocks);
        }
    }
done:
    mq_cl_qbufs_free(cb, &w);
    free(w.hscale);
    return st;
}
