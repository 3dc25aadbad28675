/* The OpenCL backend: opens the device a spec names (context, queue, program
 * built once with the device's division mode and work-group size) and puts
 * the operations of cl_quantize.c, cl_convert.c, cl_staging.c and cl_gemm.c
 * in its table. The helpers they share are in cl_buffers.c. */
#include "cl_state.h"
#include "cl_gemm.h"

#include "cl_device.h"
#include "cl_error.h"
#include "cl_program.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const dt_suffix[4] = {"f32", "f16", "bf16", "f64"};

/* ---- open / free ---- */

static void release_program(mq_cl_backend *cb)
{
    cl_kernel *all[] = {cb->fused,     cb->fused_err,    cb->stats,  cb->fixed,
                        cb->fixed_err, cb->dequant,      cb->rows_k, cb->rows_k_err,
                        cb->values_k,  cb->values_k_err, cb->blocks, cb->blocks_err};
    /* Every table holds one kernel per dtype of dt_suffix but F64 (3). */
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        for (int d = 0; d < 3; d++) {
            if (all[i][d]) clReleaseKernel(all[i][d]);
            all[i][d] = NULL;
        }
    for (int d = 0; d < 4; d++) {
        if (cb->cast[d]) clReleaseKernel(cb->cast[d]);
        cb->cast[d] = NULL;
    }
    if (cb->div_check) clReleaseKernel(cb->div_check);
    if (cb->source_fp8) clReleaseKernel(cb->source_fp8);
    if (cb->mse) clReleaseKernel(cb->mse);
    if (cb->prog) clReleaseProgram(cb->prog);
    cb->div_check = cb->source_fp8 = NULL;
    cb->mse = NULL;
    cb->prog = NULL;
}

static void cl_backend_free(mq_backend *b)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    if (!cb) return;
    release_program(cb);
    if (cb->queue) mq_cl_stages_free(cb);
    if (cb->queue) clFinish(cb->queue);
    mq_cl_pipeline_free(cb);
    for (int i = 0; i < MQ_CL_SLOT_COUNT; i++)
        mq_cl_release(&cb->slots[i].mem);
    if (cb->queue) clReleaseCommandQueue(cb->queue);
    if (cb->ctx) clReleaseContext(cb->ctx);
    pthread_mutex_destroy(&cb->stage_mu);
    free(cb);
}

static const mq_backend_ops cl_ops = {
    .quantize = mq_cl_quantize,
    .quantize_values = mq_cl_quantize_values,
    .cast_f16 = mq_cl_cast_f16,
    .dequantize_rows = mq_cl_dequantize_rows,
    .dequantize_source = mq_cl_dequantize_source,
    .quantize_source = mq_cl_quantize_source,
    .free = cl_backend_free,
    .reduce = mq_cl_reduce,
    .staging_alloc = mq_cl_staging_alloc,
    .staging_free = mq_cl_staging_free,
    .gemm_new = mq_cl_gemm_new,
    .gemm_free = mq_cl_gemm_free,
    .gemm_set_input = mq_cl_gemm_set_input,
    .gemm_linear = mq_cl_gemm_linear,
    .gemm_linear_q8 = mq_cl_gemm_linear_q8,
    .mse_scan = mq_cl_mse_scan,
    .mse_quantize = mq_cl_mse_quantize,
};

static mq_status make_kernel(mq_cl_backend *cb, const char *name, cl_kernel *out, size_t *min_wg)
{
    cl_int err;
    *out = clCreateKernel(cb->prog, name, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        char call[96];
        snprintf(call, sizeof call, "clCreateKernel(%s)", name);
        return mq_cl_fail(err, call);
    }
    size_t wg = 0;
    err = clGetKernelWorkGroupInfo(*out, cb->dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    if (err != CL_SUCCESS) return mq_cl_fail(err, "clGetKernelWorkGroupInfo");
    if (wg < *min_wg) *min_wg = wg;
    return MQ_OK;
}

/* Builds the program with MQ_WG = cb->wg and creates every kernel; *min_wg is the
 * smallest work-group size the kernels allow. */
static mq_status build_kernels(mq_cl_backend *cb, bool crdiv, bool fp64, const char *extra,
                               size_t *min_wg)
{
    char opts[512];
    snprintf(opts, sizeof opts, "-DMQ_WG=%zu -DMQ_DIV_MODE=%d%s %s", cb->wg, cb->div_mode,
             crdiv ? " -cl-fp32-correctly-rounded-divide-sqrt" : "", extra ? extra : "");
    mq_status st = mq_cl_program_build(cb->ctx, cb->dev, opts, &cb->prog);
    char name[64];
    *min_wg = cb->wg;
    for (int d = 0; d < 3 && st == MQ_OK; d++) {
        snprintf(name, sizeof name, "mq_quantize_rows_%s", dt_suffix[d]);
        st = make_kernel(cb, name, &cb->fused[d], min_wg);
        snprintf(name, sizeof name, "mq_quantize_rows_err_%s", dt_suffix[d]);
        if (st == MQ_OK) st = make_kernel(cb, name, &cb->fused_err[d], min_wg);
        snprintf(name, sizeof name, "mq_quantize_fixed_err_%s", dt_suffix[d]);
        if (st == MQ_OK) st = make_kernel(cb, name, &cb->fixed_err[d], min_wg);
        snprintf(name, sizeof name, "mq_row_stats_%s", dt_suffix[d]);
        if (st == MQ_OK) st = make_kernel(cb, name, &cb->stats[d], min_wg);
        snprintf(name, sizeof name, "mq_quantize_fixed_%s", dt_suffix[d]);
        if (st == MQ_OK) st = make_kernel(cb, name, &cb->fixed[d], min_wg);
        snprintf(name, sizeof name, "mq_dequantize_%s", dt_suffix[d]);
        if (st == MQ_OK) st = make_kernel(cb, name, &cb->dequant[d], min_wg);
        static const char *const kind_kernels[6] = {
            "mq_quantize_rows_k",       "mq_quantize_rows_k_err", "mq_quantize_values_k",
            "mq_quantize_values_k_err", "mq_quantize_blocks",     "mq_quantize_blocks_err"};
        cl_kernel *kind_slots[6] = {&cb->rows_k[d],       &cb->rows_k_err[d], &cb->values_k[d],
                                    &cb->values_k_err[d], &cb->blocks[d],     &cb->blocks_err[d]};
        for (int k = 0; k < 6 && st == MQ_OK; k++) {
            snprintf(name, sizeof name, "%s_%s", kind_kernels[k], dt_suffix[d]);
            st = make_kernel(cb, name, kind_slots[k], min_wg);
        }
    }
    for (int d = 0; d < 4 && st == MQ_OK; d++) {
        if (d == MQ_DTYPE_F16) continue; /* a copy: done on the host */
        snprintf(name, sizeof name, "mq_cast_f16_%s", dt_suffix[d]);
        st = make_kernel(cb, name, &cb->cast[d], min_wg);
    }
    if (st == MQ_OK) st = make_kernel(cb, "mq_div_check", &cb->div_check, min_wg);
    if (st == MQ_OK) st = make_kernel(cb, "mq_src_fp8_block", &cb->source_fp8, min_wg);
    /* The mse search's exact power is double precision: without cl_khr_fp64
     * the kernel is not built and the search runs the host loop. */
    if (st == MQ_OK && fp64) st = make_kernel(cb, "mq_mse_errors", &cb->mse, min_wg);
    return st;
}

static size_t floor_pow2(size_t v)
{
    size_t p = 1;
    while (p <= v / 2)
        p *= 2;
    return p;
}

/* Context, queue and program on device d. *ctx_failed: the platform gave no
 * context (the caller moves on to the next candidate). */
static mq_status open_device(mq_cl_backend *cb, const mq_cl_devlist *list, const mq_cl_device *d,
                             const mq_cl_options *o, bool *ctx_failed)
{
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)list->platforms[d->platform].id, 0};
    *ctx_failed = false;
    cb->dev = d->id;
    cb->compute_units = d->compute_units;
    cb->ctx = clCreateContext(props, 1, &d->id, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        cb->ctx = NULL;
        *ctx_failed = true;
        return mq_cl_fail(err, "clCreateContext");
    }
    cl_command_queue_properties qp = o->profiling ? CL_QUEUE_PROFILING_ENABLE : 0;
    cb->qprops = qp;
    cb->queue = clCreateCommandQueue(cb->ctx, d->id, qp, &err);
    if (err != CL_SUCCESS) {
        cb->queue = NULL;
        *ctx_failed = true;
        return mq_cl_fail(err, "clCreateCommandQueue");
    }

    bool crdiv = (d->fp32_config & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    cb->div_mode = o->div_mode;
    if (cb->div_mode == MQ_CL_DIV_AUTO)
        cb->div_mode = crdiv ? MQ_CL_DIV_NATIVE : d->fp64 ? MQ_CL_DIV_DOUBLE : MQ_CL_DIV_SOFT;
    if (cb->div_mode == MQ_CL_DIV_NATIVE && !crdiv)
        return mq_set_error(MQ_STATUS_E_DEVICE,
                            "OpenCL device '%s' lacks CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT",
                            d->name);
    if (cb->div_mode == MQ_CL_DIV_DOUBLE && !d->fp64)
        return mq_set_error(MQ_STATUS_E_DEVICE, "OpenCL device '%s' lacks cl_khr_fp64", d->name);

    size_t max_alloc = (size_t)d->max_alloc;
    cb->staging = o->staging != MQ_CL_STAGING_AUTO ? (int)o->staging
                  : d->unified                     ? MQ_CL_STAGING_ZERO_COPY
                                                   : MQ_CL_STAGING_PINNED;
    cb->max_alloc = max_alloc;
    cb->limit = o->max_alloc_override ? o->max_alloc_override : MQ_CL_CHUNK_CAP;
    if (cb->limit > max_alloc) cb->limit = max_alloc;
    /* A GPU wants many work-items per row; a CPU device (PoCL) runs a work-group as
     * loops, where barriers and short per-item loops cost more than they give. */
    bool gpu = (d->type & CL_DEVICE_TYPE_GPU) != 0;
    cb->per_item = o->per_item ? o->per_item : gpu ? 16 : 1024;
    /* Overlapped transfers pay where transfers are real copies over a bus. */
    cb->overlap = o->overlap != MQ_CL_OVERLAP_AUTO
                      ? o->overlap == MQ_CL_OVERLAP_ON
                      : !d->unified && (d->type & CL_DEVICE_TYPE_CPU) == 0;
    cb->overlap_chunk = o->overlap_chunk ? o->overlap_chunk : MQ_CL_OVERLAP_CHUNK;
    size_t want = o->work_group ? o->work_group : gpu ? 256 : 64;
    cb->wg = floor_pow2(want < d->max_wg ? want : d->max_wg);
    for (;;) {
        size_t min_wg;
        mq_status st =
            build_kernels(cb, cb->div_mode == MQ_CL_DIV_NATIVE, d->fp64, o->build_options, &min_wg);
        if (st != MQ_OK) return st;
        if (min_wg >= cb->wg) return MQ_OK;
        release_program(cb);
        cb->wg = floor_pow2(min_wg);
    }
}

static mq_status cl_open_opts(const char *spec, const mq_cl_options *o, bool *none_found,
                              mq_backend **out)
{
    mq_status st = MQ_OK;
    mq_cl_devlist list;
    size_t *order = NULL, n_order = 0;
    mq_cl_backend *cb = NULL;
    *none_found = false;
    if (!spec || !*spec) spec = "auto";
    if ((st = mq_cl_devlist_get(&list)) != MQ_OK) return st;
    if (list.n_devices == 0) {
        *none_found = true;
        st = mq_set_error(MQ_STATUS_E_DEVICE, "device '%s': no OpenCL device found", spec);
        goto done;
    }
    order = calloc(list.n_devices, sizeof *order);
    if (!order) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL: out of memory");
        goto done;
    }
    if ((st = mq_cl_devlist_match(&list, spec, order, &n_order)) != MQ_OK) goto done;
    if (n_order == 0) { /* "auto" and no GPU or accelerator */
        *none_found = true;
        st = mq_set_error(MQ_STATUS_E_DEVICE, "device 'auto': no OpenCL GPU or accelerator");
        goto done;
    }
    for (size_t i = 0; i < n_order; i++) {
        const mq_cl_device *d = &list.devices[order[i]];
        const mq_cl_platform *p = &list.platforms[d->platform];
        bool ctx_failed = false;
        cb = calloc(1, sizeof *cb);
        if (!cb) {
            st = mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL: out of memory");
            goto done;
        }
        cb->base.ops = &cl_ops;
        pthread_mutex_init(&cb->stage_mu, NULL);
        st = open_device(cb, &list, d, o, &ctx_failed);
        if (st == MQ_OK) {
            snprintf(cb->base.backend, sizeof cb->base.backend, "opencl");
            snprintf(cb->base.platform, sizeof cb->base.platform, "%s", p->name);
            snprintf(cb->base.device, sizeof cb->base.device, "%s", d->name);
            mq_clear_error(); /* of platforms skipped on the way */
            cb->base.caps = (mq_backend_caps){.host_threads = false,
                                              .shares_host_memory = d->unified,
                                              .has_gemm = true,
                                              .max_buffer = cb->limit};
            *out = &cb->base;
            cb = NULL;
            goto done;
        }
        cl_backend_free(&cb->base);
        cb = NULL;
        mq_error_prefix("device %u:%u '%s'", d->pi, d->di, d->name);
        if (!ctx_failed) goto done;
        /* A platform that gives no context is skipped: the next candidate. */
    }
    *none_found = true; /* every candidate failed to give a context: none is usable */
done:
    free(order);
    mq_cl_devlist_free(&list);
    return st;
}

static mq_status cl_open(const char *spec, size_t max_alloc_override, bool *none_found,
                         mq_backend **out)
{
    mq_cl_options o;
    mq_cl_options_init(&o);
    o.max_alloc_override = max_alloc_override;
    return cl_open_opts(spec, &o, none_found, out);
}

static const char *cl_div_mode_name(const mq_backend *b)
{
    static const char *const names[] = {"native", "double", "soft"};
    const mq_cl_backend *cb = (const mq_cl_backend *)b;
    return cb->div_mode >= 0 && cb->div_mode <= 2 ? names[cb->div_mode] : "unknown";
}

static size_t cl_work_group(const mq_backend *b)
{
    return ((const mq_cl_backend *)b)->wg;
}

static mq_status cl_divide(mq_backend *b, const float *a, const float *d, float *out, size_t n)
{
    mq_cl_backend *cb = (mq_cl_backend *)b;
    cl_mem ba = NULL, bd = NULL, bo = NULL;
    cl_ulong nn = n;
    mq_status st = mq_cl_buffer(cb, CL_MEM_READ_ONLY, n * sizeof(float), &ba);
    if (st == MQ_OK) st = mq_cl_buffer(cb, CL_MEM_READ_ONLY, n * sizeof(float), &bd);
    if (st == MQ_OK) st = mq_cl_buffer(cb, CL_MEM_WRITE_ONLY, n * sizeof(float), &bo);
    if (st == MQ_OK) st = mq_cl_write(cb, ba, n * sizeof(float), a);
    if (st == MQ_OK) st = mq_cl_write(cb, bd, n * sizeof(float), d);
    if (st == MQ_OK) {
        mq_cl_arg args[] = {MQ_CL_ARG(ba), MQ_CL_ARG(bd), MQ_CL_ARG(bo), MQ_CL_ARG(nn)};
        st = mq_cl_launch(cb, cb->div_check, args, 4, n, NULL);
    }
    if (st == MQ_OK) st = mq_cl_read(cb, bo, n * sizeof(float), out);
    if (st == MQ_OK) st = mq_cl_finish(cb);
    mq_cl_release(&bo);
    mq_cl_release(&bd);
    mq_cl_release(&ba);
    return st;
}

/* ---- the registry entry: open, list, and the hooks by name ---- */

static const mq_opencl_hooks cl_hooks = {
    .open = cl_open,
    .open_opts = cl_open_opts,
    .div_mode_name = cl_div_mode_name,
    .work_group = cl_work_group,
    .zero_copy_count = mq_cl_zero_copy_count,
    .overlaps = mq_cl_overlaps,
    .overlap_calls = mq_cl_overlap_calls,
    .overlap_chunks = mq_cl_overlap_chunks,
    .divide = cl_divide,
    .profile_quantize = mq_cl_profile_quantize,
    .profile_transfer = mq_cl_profile_transfer,
    .mse_errors = mq_cl_mse_errors,
};

static const mq_clgemm_hooks gemm_hooks = {
    .supported = mq_cl_gemm_supported,
    .create = mq_cl_gemm_new,
    .free = mq_cl_gemm_free,
    .status_name = mq_cl_blast_status_name,
    .device_info = mq_cl_gemm_device_info,
    .time_sgemm = mq_cl_gemm_time_sgemm,
};

static const void *cl_get_proc_address(const char *name)
{
    if (strcmp(name, MQ_OPENCL_HOOKS) == 0) return &cl_hooks;
    if (strcmp(name, MQ_CLGEMM_HOOKS) == 0) return &gemm_hooks;
    return NULL;
}

/* The OpenCL back end in the core's registry (src/backend/backend.c). */
const mq_backend_reg mq_opencl_reg = {.name = "opencl",
                                      .open = cl_open,
                                      .list = mq_cl_device_list,
                                      .get_proc_address = cl_get_proc_address};
