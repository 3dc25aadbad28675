/* CLBlast SGEMMs on the OpenCL backend's queue: Y = X * W^T in row chunks of W
 * small enough for one device buffer, W uploaded as floats or dequantized on
 * the device by the backend's mq_dequantize_f32 kernel. */
#include "cl_gemm.h"

#include "cl_state.h"
#include "cl_error.h"
#include "error.h"
#include "timing.h"

#include <clblast_c.h>

#include <stdlib.h>
#include <string.h>

struct mq_gemm {
    mq_cl_backend *cb;
    void (*note)(const char *note, void *user);
    void *user;
    bool ran; /* an SGEMM has run, so CLBlast has built its kernels for this context */
    cl_mem x;
    size_t tokens, in;
};

#define MQ_CLB_NAME(name)                                                                          \
    case CLBlast##name:                                                                            \
        return "k" #name

const char *mq_cl_blast_status_name(int code)
{
    switch ((CLBlastStatusCode)code) {
        MQ_CLB_NAME(Success);
        MQ_CLB_NAME(OpenCLCompilerNotAvailable);
        MQ_CLB_NAME(TempBufferAllocFailure);
        MQ_CLB_NAME(OpenCLOutOfResources);
        MQ_CLB_NAME(OpenCLOutOfHostMemory);
        MQ_CLB_NAME(OpenCLBuildProgramFailure);
        MQ_CLB_NAME(InvalidValue);
        MQ_CLB_NAME(InvalidCommandQueue);
        MQ_CLB_NAME(InvalidMemObject);
        MQ_CLB_NAME(InvalidBinary);
        MQ_CLB_NAME(InvalidBuildOptions);
        MQ_CLB_NAME(InvalidProgram);
        MQ_CLB_NAME(InvalidProgramExecutable);
        MQ_CLB_NAME(InvalidKernelName);
        MQ_CLB_NAME(InvalidKernelDefinition);
        MQ_CLB_NAME(InvalidKernel);
        MQ_CLB_NAME(InvalidArgIndex);
        MQ_CLB_NAME(InvalidArgValue);
        MQ_CLB_NAME(InvalidArgSize);
        MQ_CLB_NAME(InvalidKernelArgs);
        MQ_CLB_NAME(InvalidLocalNumDimensions);
        MQ_CLB_NAME(InvalidLocalThreadsTotal);
        MQ_CLB_NAME(InvalidLocalThreadsDim);
        MQ_CLB_NAME(InvalidGlobalOffset);
        MQ_CLB_NAME(InvalidEventWaitList);
        MQ_CLB_NAME(InvalidEvent);
        MQ_CLB_NAME(InvalidOperation);
        MQ_CLB_NAME(InvalidBufferSize);
        MQ_CLB_NAME(InvalidGlobalWorkSize);
        MQ_CLB_NAME(NotImplemented);
        MQ_CLB_NAME(InvalidMatrixA);
        MQ_CLB_NAME(InvalidMatrixB);
        MQ_CLB_NAME(InvalidMatrixC);
        MQ_CLB_NAME(InvalidVectorX);
        MQ_CLB_NAME(InvalidVectorY);
        MQ_CLB_NAME(InvalidDimension);
        MQ_CLB_NAME(InvalidLeadDimA);
        MQ_CLB_NAME(InvalidLeadDimB);
        MQ_CLB_NAME(InvalidLeadDimC);
        MQ_CLB_NAME(InvalidIncrementX);
        MQ_CLB_NAME(InvalidIncrementY);
        MQ_CLB_NAME(InsufficientMemoryA);
        MQ_CLB_NAME(InsufficientMemoryB);
        MQ_CLB_NAME(InsufficientMemoryC);
        MQ_CLB_NAME(InsufficientMemoryX);
        MQ_CLB_NAME(InsufficientMemoryY);
        MQ_CLB_NAME(InsufficientMemoryTemp);
        MQ_CLB_NAME(InvalidBatchCount);
        MQ_CLB_NAME(InvalidOverrideKernel);
        MQ_CLB_NAME(MissingOverrideParameter);
        MQ_CLB_NAME(InvalidLocalMemUsage);
        MQ_CLB_NAME(NoHalfPrecision);
        MQ_CLB_NAME(NoDoublePrecision);
        MQ_CLB_NAME(InvalidVectorScalar);
        MQ_CLB_NAME(InsufficientMemoryScalar);
        MQ_CLB_NAME(DatabaseError);
        MQ_CLB_NAME(UnknownError);
        MQ_CLB_NAME(UnexpectedError);
    }
    return "kUnknownStatus";
}

bool mq_cl_gemm_supported(const mq_backend *b)
{
    return b && b->ops->gemm_new == mq_cl_gemm_new;
}

mq_status mq_cl_gemm_new(mq_backend *b, void (*note)(const char *note, void *user), void *user,
                         mq_clgemm **out)
{
    if (!mq_cl_gemm_supported(b) || !out)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "CLBlast GEMM needs an OpenCL backend");
    mq_clgemm *g = calloc(1, sizeof *g);
    if (!g) return mq_set_error(MQ_STATUS_E_NOMEM, "CLBlast GEMM: out of memory");
    g->cb = (mq_cl_backend *)b;
    g->note = note;
    g->user = user;
    *out = g;
    return MQ_OK;
}

void mq_cl_gemm_free(mq_clgemm *g)
{
    if (!g) return;
    clFinish(g->cb->queue);
    mq_cl_release(&g->x);
    free(g);
}

/* C[m, n] (row pitch ldc) = A[m, k] * B[n, k]^T, all row-major. */
static mq_status sgemm(mq_clgemm *g, size_t m, size_t n, size_t k, cl_mem a, cl_mem b, cl_mem c,
                       size_t ldc)
{
    if (!g->ran && g->note)
        g->note("compiling CLBlast kernels for this device (first GEMM; can take a minute)...",
                g->user);
    CLBlastStatusCode s =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n, k, 1.0f,
                     a, 0, k, b, 0, k, 0.0f, c, 0, ldc, &g->cb->queue, NULL);
    if (s != CLBlastSuccess)
        return mq_set_error(MQ_STATUS_E_DEVICE,
                            "device '%s': SGEMM %zu x %zu x %zu failed: CLBlast %s (%d)",
                            g->cb->base.device, m, n, k, mq_cl_blast_status_name(s), (int)s);
    g->ran = true;
    return MQ_OK;
}

mq_status mq_cl_gemm_set_input(mq_clgemm *g, const float *x, size_t tokens, size_t in)
{
    mq_status st;
    mq_cl_release(&g->x);
    g->tokens = g->in = 0;
    if (in != 0 && tokens > g->cb->limit / sizeof(float) / in)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "device '%s': input of %zu x %zu floats exceeds one device buffer "
                            "(%zu bytes)",
                            g->cb->base.device, tokens, in, g->cb->limit);
    size_t bytes = tokens * in * sizeof(float);
    if ((st = mq_cl_buffer(g->cb, CL_MEM_READ_ONLY, bytes, &g->x)) != MQ_OK ||
        (st = mq_cl_write(g->cb, g->x, bytes, x)) != MQ_OK || (st = mq_cl_finish(g->cb)) != MQ_OK) {
        clFinish(g->cb->queue);
        mq_cl_release(&g->x);
        return st;
    }
    g->tokens = tokens;
    g->in = in;
    return MQ_OK;
}

/* The weight rows of one call: floats, or int8 values with their parameters. */
typedef struct {
    const float *w;
    const int8_t *q;
    const float *scale;
    const int8_t *zp;
} weight_src;

/* Puts rows [o0, o0 + nr) of the weight into bw as floats. */
static mq_status load_rows(mq_clgemm *g, const weight_src *src, size_t o0, size_t nr, cl_mem bw,
                           cl_mem bq, cl_mem bs, cl_mem bz)
{
    mq_cl_backend *cb = g->cb;
    size_t in = g->in;
    mq_status st;
    if (src->w) return mq_cl_write(cb, bw, nr * in * sizeof(float), src->w + o0 * in);
    cl_int has_zp = src->zp ? 1 : 0;
    cl_ulong n = (cl_ulong)nr * in, cols = in, col0 = 0;
    if ((st = mq_cl_write(cb, bq, nr * in, src->q + o0 * in)) != MQ_OK ||
        (st = mq_cl_write(cb, bs, nr * sizeof(float), src->scale + o0)) != MQ_OK ||
        (src->zp && (st = mq_cl_write(cb, bz, nr, src->zp + o0)) != MQ_OK))
        return st;
    mq_cl_arg args[] = {MQ_CL_ARG(bq), MQ_CL_ARG(n),  MQ_CL_ARG(cols),   MQ_CL_ARG(col0),
                        MQ_CL_ARG(bs), MQ_CL_ARG(bz), MQ_CL_ARG(has_zp), MQ_CL_ARG(bw)};
    return mq_cl_launch(cb, cb->dequant[MQ_DTYPE_F32], args, 8, (size_t)(n + 7) / 8, NULL);
}

/* Y[tokens, out] = X * W^T in chunks of rows of W, each chunk's weight and
 * output within one device buffer. */
static mq_status linear(mq_clgemm *g, const weight_src *src, size_t out, float *y)
{
    mq_cl_backend *cb = g->cb;
    size_t in = g->in, n_tok = g->tokens;
    cl_mem bw = NULL, by = NULL, bq = NULL, bs = NULL, bz = NULL;
    mq_status st = MQ_OK;
    if (!g->x && (n_tok || in))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "CLBlast GEMM: no input set");
    if (out == 0 || n_tok == 0) return MQ_OK;
    if (in == 0) {
        memset(y, 0, n_tok * out * sizeof(float)); /* an empty sum */
        return MQ_OK;
    }
    size_t row = (in > n_tok ? in : n_tok) * sizeof(float);
    size_t rpc = cb->limit / row;
    if (rpc == 0)
        return mq_set_error(MQ_STATUS_E_INVALID_ARG,
                            "device '%s': one weight row of %zu floats exceeds the buffer limit",
                            cb->base.device, in);
    if (rpc > out) rpc = out;
    if ((st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, rpc * in * sizeof(float), &bw)) != MQ_OK ||
        (st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, rpc * n_tok * sizeof(float), &by)) != MQ_OK)
        goto done;
    if (!src->w && ((st = mq_cl_buffer(cb, CL_MEM_READ_ONLY, rpc * in, &bq)) != MQ_OK ||
                    (st = mq_cl_buffer(cb, CL_MEM_READ_ONLY, rpc * sizeof(float), &bs)) != MQ_OK ||
                    (st = mq_cl_buffer(cb, CL_MEM_READ_ONLY, rpc, &bz)) != MQ_OK))
        goto done;
    for (size_t o0 = 0; o0 < out; o0 += rpc) {
        size_t nr = out - o0 < rpc ? out - o0 : rpc;
        if ((st = load_rows(g, src, o0, nr, bw, bq, bs, bz)) != MQ_OK ||
            (st = sgemm(g, n_tok, nr, in, g->x, bw, by, nr)) != MQ_OK)
            goto done;
        /* Chunk columns [o0, o0 + nr) of every row of y. */
        size_t bo[3] = {0, 0, 0}, ho[3] = {o0 * sizeof(float), 0, 0};
        size_t region[3] = {nr * sizeof(float), n_tok, 1};
        cl_int err =
            clEnqueueReadBufferRect(cb->queue, by, CL_FALSE, bo, ho, region, nr * sizeof(float), 0,
                                    out * sizeof(float), 0, y, 0, NULL, NULL);
        if (err != CL_SUCCESS) {
            st = mq_cl_fail(err, "clEnqueueReadBufferRect");
            goto done;
        }
        /* The caller's rows must not be read after this chunk returns. */
        if ((st = mq_cl_finish(cb)) != MQ_OK) goto done;
    }
done:
    clFinish(cb->queue);
    mq_cl_release(&bz);
    mq_cl_release(&bs);
    mq_cl_release(&bq);
    mq_cl_release(&by);
    mq_cl_release(&bw);
    return st;
}

static bool fits(size_t out, size_t in)
{
    return in == 0 || out <= SIZE_MAX / sizeof(float) / in;
}

mq_status mq_cl_gemm_linear(mq_clgemm *g, const float *w, size_t out, float *y)
{
    if (!fits(out, g->in) || !fits(out, g->tokens))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "CLBlast GEMM: %zu rows are too many", out);
    weight_src src = {.w = w};
    return linear(g, &src, out, y);
}

mq_status mq_cl_gemm_linear_q8(mq_clgemm *g, const int8_t *q, const float *scale, const int8_t *zp,
                               size_t out, float *y)
{
    if (!fits(out, g->in) || !fits(out, g->tokens))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "CLBlast GEMM: %zu rows are too many", out);
    weight_src src = {.q = q, .scale = scale, .zp = zp};
    return linear(g, &src, out, y);
}

void mq_cl_gemm_device_info(const mq_backend *b, unsigned *units, unsigned *mhz, bool *cpu)
{
    cl_uint cu = 0, clock = 0;
    cl_device_type type = 0;
    if (mq_cl_gemm_supported(b)) {
        cl_device_id d = ((const mq_cl_backend *)b)->dev;
        if (clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL) != CL_SUCCESS)
            cu = 0;
        if (clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof clock, &clock, NULL) !=
            CL_SUCCESS)
            clock = 0;
        if (clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS) type = 0;
    }
    *units = cu;
    *mhz = clock;
    *cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
}

/* A device buffer of n floats, all `v` (values do not change GEMM speed; no denormals). */
static mq_status filled(mq_cl_backend *cb, size_t n, float v, cl_mem *out)
{
    mq_status st = mq_cl_buffer(cb, CL_MEM_READ_WRITE, n * sizeof(float), out);
    if (st != MQ_OK) return st;
    cl_int err =
        clEnqueueFillBuffer(cb->queue, *out, &v, sizeof v, 0, n * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? MQ_OK : mq_cl_fail(err, "clEnqueueFillBuffer");
}

mq_status mq_cl_gemm_time_sgemm(mq_clgemm *g, size_t m, size_t n, size_t k, int iters,
                                double *first_s, double *median_s)
{
    mq_cl_backend *cb = g->cb;
    cl_mem a = NULL, b = NULL, c = NULL;
    double *t = NULL;
    mq_status st;
    if (m == 0 || n == 0 || k == 0 || iters < 1 || !fits(m, k) || !fits(n, k) || !fits(m, n))
        return mq_set_error(MQ_STATUS_E_INVALID_ARG, "SGEMM timing: bad size or iteration count");
    if (!(t = calloc((size_t)iters, sizeof *t))) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "SGEMM timing: out of memory");
        goto done;
    }
    if ((st = filled(cb, m * k, 0.5f, &a)) != MQ_OK ||
        (st = filled(cb, n * k, 0.25f, &b)) != MQ_OK ||
        (st = filled(cb, m * n, 0.0f, &c)) != MQ_OK || (st = mq_cl_finish(cb)) != MQ_OK)
        goto done;
    for (int i = -1; i < iters; i++) { /* i == -1: the untimed warm-up (and kernel build) */
        double t0 = mq_now_s();
        if ((st = sgemm(g, m, n, k, a, b, c, n)) != MQ_OK || (st = mq_cl_finish(cb)) != MQ_OK)
            goto done;
        double dt = mq_now_s() - t0;
        if (i < 0)
            *first_s = dt;
        else
            t[i] = dt;
    }
    *median_s = mq_median(t, (size_t)iters);
done:
    clFinish(cb->queue);
    mq_cl_release(&c);
    mq_cl_release(&b);
    mq_cl_release(&a);
    free(t);
    return st;
}
