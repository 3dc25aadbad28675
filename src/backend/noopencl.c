/* Stand-ins for host/'s plain-C entry points in a build without OpenCL
 * (MQ_OPENCL=OFF): no device opens, none is listed, and the host path does
 * all the work. Only that build compiles this file. */
#include "cl_gemm.h"
#include "error.h"
#include "cl_api.h"

#include <string.h>

static mq_status no_opencl(const char *spec)
{
    return mq_set_error(MQ_STATUS_E_DEVICE,
                        "device '%s': this libmonoquant was built without OpenCL (MQ_OPENCL=OFF); "
                        "only the host device is available",
                        spec && *spec ? spec : "auto");
}

mq_status mq_opencl_backend_open(const char *spec, size_t max_alloc_override, bool *none_found,
                                 mq_backend **out)
{
    (void)max_alloc_override;
    (void)out;
    *none_found = true;
    return no_opencl(spec);
}

void mq_cl_options_init(mq_cl_options *o)
{
    memset(o, 0, sizeof *o);
    o->div_mode = MQ_CL_DIV_AUTO;
    o->staging = MQ_CL_STAGING_AUTO;
}

mq_status mq_opencl_backend_open_opts(const char *spec, const mq_cl_options *o, bool *none_found,
                                      mq_backend **out)
{
    (void)o;
    (void)out;
    *none_found = true;
    return no_opencl(spec);
}

/* No backend these take can exist: nothing opens one. */
const char *mq_opencl_div_mode_name(const mq_backend *b)
{
    (void)b;
    return "none";
}

size_t mq_opencl_work_group(const mq_backend *b)
{
    (void)b;
    return 0;
}

size_t mq_opencl_zero_copy_count(const mq_backend *b)
{
    (void)b;
    return 0;
}

bool mq_opencl_overlaps(const mq_backend *b)
{
    (void)b;
    return false;
}

size_t mq_opencl_overlap_calls(const mq_backend *b)
{
    (void)b;
    return 0;
}

size_t mq_opencl_overlap_chunks(const mq_backend *b)
{
    (void)b;
    return 0;
}

mq_status mq_opencl_divide(mq_backend *b, const float *a, const float *d, float *out, size_t n)
{
    (void)b, (void)a, (void)d, (void)out, (void)n;
    return no_opencl("opencl");
}

mq_status mq_opencl_profile_transfer(mq_backend *b, const void *in, size_t in_bytes, void *out,
                                     size_t out_bytes, int iters, double *h2d_s, double *d2h_s)
{
    (void)b, (void)in, (void)in_bytes, (void)out, (void)out_bytes, (void)iters, (void)h2d_s;
    (void)d2h_s;
    return no_opencl("opencl");
}

mq_status mq_opencl_profile_quantize(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                     size_t cols, bool symmetric, int iters, mq_cl_profile *out)
{
    (void)b, (void)src, (void)dt, (void)rows, (void)cols, (void)symmetric, (void)iters, (void)out;
    return no_opencl("opencl");
}

mq_status mq_opencl_profile_kind(mq_backend *b, const void *src, mq_dtype dt, size_t rows,
                                 size_t cols, mq_qkind kind, bool symmetric, size_t bs, int iters,
                                 mq_cl_profile *out)
{
    (void)b, (void)src, (void)dt, (void)rows, (void)cols, (void)kind, (void)symmetric, (void)bs;
    (void)iters, (void)out;
    return no_opencl("opencl");
}

bool mq_clgemm_supported(const mq_backend *b)
{
    (void)b;
    return false;
}

mq_status mq_clgemm_new(mq_backend *b, void (*note)(const char *note, void *user), void *user,
                        mq_clgemm **out)
{
    (void)b, (void)note, (void)user, (void)out;
    return no_opencl("opencl");
}

void mq_clgemm_free(mq_clgemm *g)
{
    (void)g;
}

mq_status mq_clgemm_set_input(mq_clgemm *g, const float *x, size_t tokens, size_t in)
{
    (void)g, (void)x, (void)tokens, (void)in;
    return no_opencl("opencl");
}

mq_status mq_clgemm_linear(mq_clgemm *g, const float *w, size_t out, float *y)
{
    (void)g, (void)w, (void)out, (void)y;
    return no_opencl("opencl");
}

mq_status mq_clgemm_linear_q8(mq_clgemm *g, const int8_t *q, const float *scale, const int8_t *zp,
                              size_t out, float *y)
{
    (void)g, (void)q, (void)scale, (void)zp, (void)out, (void)y;
    return no_opencl("opencl");
}

const char *mq_clblast_status_name(int code)
{
    (void)code;
    return "kUnknownStatus";
}

void mq_clgemm_device_info(const mq_backend *b, unsigned *units, unsigned *mhz, bool *cpu)
{
    (void)b;
    *units = 0;
    *mhz = 0;
    *cpu = false;
}

mq_status mq_clgemm_time_sgemm(mq_clgemm *g, size_t m, size_t n, size_t k, int iters,
                               double *first_s, double *median_s)
{
    (void)g, (void)m, (void)n, (void)k, (void)iters, (void)first_s, (void)median_s;
    return no_opencl("opencl");
}
