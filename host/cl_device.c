/* Enumerates OpenCL platforms and devices (skipping any platform that fails,
 * with the failure kept for `monoquant devices`) and ranks the devices that a
 * device spec names. The library prints nothing. */
#include "cl_device.h"

#include "cl_error.h"
#include "error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void get_platform_str(cl_platform_id p, cl_platform_info what, char *buf, size_t cap)
{
    if (clGetPlatformInfo(p, what, cap, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[cap - 1] = '\0';
}

static void get_device_str(cl_device_id d, cl_device_info what, char *buf, size_t cap)
{
    if (clGetDeviceInfo(d, what, cap, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[cap - 1] = '\0';
}

/* True when the space-separated extension list holds `ext`. */
static bool has_extension(const char *list, const char *ext)
{
    size_t n = strlen(ext);
    for (const char *p = strstr(list, ext); p; p = strstr(p + 1, ext)) {
        bool starts = p == list || p[-1] == ' ';
        bool ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends) return true;
    }
    return false;
}

static cl_int describe_device(mq_cl_device *d)
{
    cl_int err = clGetDeviceInfo(d->id, CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(d->id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof d->compute_units,
                              &d->compute_units, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(d->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->global_mem,
                              &d->global_mem, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(d->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof d->max_alloc,
                              &d->max_alloc, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(d->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_wg, &d->max_wg,
                              NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(d->id, CL_DEVICE_SINGLE_FP_CONFIG, sizeof d->fp32_config,
                              &d->fp32_config, NULL);
    if (err != CL_SUCCESS) return err;
    cl_bool unified = CL_FALSE; /* deprecated in OpenCL 2.0: absent means no */
    if (clGetDeviceInfo(d->id, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL) !=
        CL_SUCCESS)
        unified = CL_FALSE;
    d->unified = unified == CL_TRUE;
    get_device_str(d->id, CL_DEVICE_NAME, d->name, sizeof d->name);
    get_device_str(d->id, CL_DEVICE_VERSION, d->version, sizeof d->version);
    get_device_str(d->id, CL_DRIVER_VERSION, d->driver, sizeof d->driver);
    size_t len = 0;
    if (clGetDeviceInfo(d->id, CL_DEVICE_EXTENSIONS, 0, NULL, &len) == CL_SUCCESS && len > 0) {
        char *ext = malloc(len + 1);
        if (ext && clGetDeviceInfo(d->id, CL_DEVICE_EXTENSIONS, len, ext, NULL) == CL_SUCCESS) {
            ext[len] = '\0';
            d->fp16 = has_extension(ext, "cl_khr_fp16");
            d->fp64 = has_extension(ext, "cl_khr_fp64");
        }
        free(ext);
    }
    return CL_SUCCESS;
}

/* Appends the devices of platform `pi`; a failure marks the platform. */
static mq_status add_platform_devices(mq_cl_devlist *list, size_t pi)
{
    mq_cl_platform *p = &list->platforms[pi];
    cl_uint n = 0;
    cl_int err = clGetDeviceIDs(p->id, CL_DEVICE_TYPE_ALL, 0, NULL, &n);
    if (err == CL_DEVICE_NOT_FOUND || (err == CL_SUCCESS && n == 0)) return MQ_OK;
    if (err != CL_SUCCESS) {
        p->error = err;
        p->failed_call = "clGetDeviceIDs";
        return MQ_OK;
    }
    cl_device_id *ids = calloc(n, sizeof *ids);
    mq_cl_device *grown = realloc(list->devices, (list->n_devices + n) * sizeof *grown);
    if (grown) list->devices = grown;
    if (!ids || !grown) {
        free(ids);
        return mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL device list: out of memory");
    }
    err = clGetDeviceIDs(p->id, CL_DEVICE_TYPE_ALL, n, ids, NULL);
    for (cl_uint i = 0; err == CL_SUCCESS && i < n; i++) {
        mq_cl_device *d = &list->devices[list->n_devices];
        memset(d, 0, sizeof *d);
        d->id = ids[i];
        d->platform = pi;
        d->pi = (unsigned)pi;
        d->di = i;
        err = describe_device(d);
        if (err == CL_SUCCESS) list->n_devices++;
    }
    free(ids);
    if (err != CL_SUCCESS) {
        p->error = err;
        p->failed_call = "clGetDeviceInfo";
        /* keep none of a platform that cannot describe its devices */
        while (list->n_devices > 0 && list->devices[list->n_devices - 1].platform == pi)
            list->n_devices--;
    }
    return MQ_OK;
}

mq_status mq_cl_devlist_get(mq_cl_devlist *list)
{
    memset(list, 0, sizeof *list);
    cl_uint n = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &n);
    if (err != CL_SUCCESS || n == 0) return MQ_OK; /* no platform: no device to offer */
    cl_platform_id *ids = calloc(n, sizeof *ids);
    list->platforms = calloc(n, sizeof *list->platforms);
    if (!ids || !list->platforms) {
        free(ids);
        mq_cl_devlist_free(list);
        return mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL platform list: out of memory");
    }
    err = clGetPlatformIDs(n, ids, NULL);
    if (err != CL_SUCCESS) {
        free(ids);
        mq_cl_devlist_free(list);
        return MQ_OK;
    }
    list->n_platforms = n;
    mq_status st = MQ_OK;
    for (cl_uint i = 0; i < n && st == MQ_OK; i++) {
        mq_cl_platform *p = &list->platforms[i];
        p->id = ids[i];
        get_platform_str(p->id, CL_PLATFORM_NAME, p->name, sizeof p->name);
        get_platform_str(p->id, CL_PLATFORM_VENDOR, p->vendor, sizeof p->vendor);
        get_platform_str(p->id, CL_PLATFORM_VERSION, p->version, sizeof p->version);
        st = add_platform_devices(list, i);
    }
    free(ids);
    if (st != MQ_OK) mq_cl_devlist_free(list);
    return st;
}

void mq_cl_devlist_free(mq_cl_devlist *list)
{
    free(list->platforms);
    free(list->devices);
    memset(list, 0, sizeof *list);
}

/* "auto" takes a GPU, else an accelerator: on a CPU OpenCL device (PoCL) the
 * host path is faster and lighter, so a CPU device runs only when asked. */
static bool auto_kind(const mq_cl_device *d, cl_device_type want)
{
    return (d->type & want) != 0;
}

size_t mq_cl_devlist_auto(const mq_cl_devlist *list)
{
    for (size_t i = 0; i < list->n_devices; i++)
        if (auto_kind(&list->devices[i], CL_DEVICE_TYPE_GPU)) return i;
    for (size_t i = 0; i < list->n_devices; i++)
        if (auto_kind(&list->devices[i], CL_DEVICE_TYPE_ACCELERATOR)) return i;
    return SIZE_MAX;
}

const char *mq_cl_device_type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "ACCELERATOR";
    if (t & CL_DEVICE_TYPE_CUSTOM) return "CUSTOM";
    return "OTHER";
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return true;
    return n == 0;
}

/* "P:D" with two decimal indices (digits only: strtoul alone would skip
 * blanks and take a sign; an index past ULONG_MAX is no index). */
static bool parse_pd(const char *spec, unsigned long *p, unsigned long *d)
{
    char *end;
    if (!isdigit((unsigned char)spec[0])) return false;
    errno = 0;
    *p = strtoul(spec, &end, 10);
    if (errno || *end != ':' || !isdigit((unsigned char)end[1])) return false;
    *d = strtoul(end + 1, &end, 10);
    return !errno && *end == '\0';
}

/* Better first for "opencl": a GPU, then more compute units, then list order. */
static bool better(const mq_cl_device *a, size_t ia, const mq_cl_device *b, size_t ib)
{
    bool ga = (a->type & CL_DEVICE_TYPE_GPU) != 0, gb = (b->type & CL_DEVICE_TYPE_GPU) != 0;
    if (ga != gb) return ga;
    if (a->compute_units != b->compute_units) return a->compute_units > b->compute_units;
    return ia < ib;
}

static mq_status no_match(const mq_cl_devlist *list, const char *spec)
{
    char avail[1536] = "";
    size_t len = 0;
    for (size_t i = 0; i < list->n_devices && len < sizeof avail; i++) {
        const mq_cl_device *d = &list->devices[i];
        int w = snprintf(avail + len, sizeof avail - len, "%s%u:%u %s (%s)", i ? ", " : "", d->pi,
                         d->di, d->name, mq_cl_device_type_name(d->type));
        if (w < 0) break;
        len += (size_t)w;
    }
    if (list->n_devices == 0)
        return mq_set_error(MQ_STATUS_E_DEVICE, "device '%s': no OpenCL platform found", spec);
    return mq_set_error(MQ_STATUS_E_DEVICE, "device '%s' matches no OpenCL device; available: %s",
                        spec, avail);
}

mq_status mq_cl_devlist_match(const mq_cl_devlist *list, const char *spec, size_t *order,
                              size_t *n_order)
{
    size_t n = 0;
    unsigned long pp, dd;
    if (strcasecmp(spec, "auto") == 0) {
        for (size_t i = 0; i < list->n_devices; i++)
            if (auto_kind(&list->devices[i], CL_DEVICE_TYPE_GPU)) order[n++] = i;
        for (size_t i = 0; i < list->n_devices; i++)
            if (auto_kind(&list->devices[i], CL_DEVICE_TYPE_ACCELERATOR)) order[n++] = i;
        *n_order = n;
        return MQ_OK; /* none: the caller takes the host path */
    } else if (strcasecmp(spec, "opencl") == 0) {
        for (size_t i = 0; i < list->n_devices; i++) {
            size_t j = n++;
            while (j > 0 &&
                   better(&list->devices[i], i, &list->devices[order[j - 1]], order[j - 1])) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
        }
    } else if (strcasecmp(spec, "gpu") == 0 || strcasecmp(spec, "cpu") == 0) {
        cl_device_type want =
            strcasecmp(spec, "gpu") == 0 ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU;
        for (size_t i = 0; i < list->n_devices; i++)
            if (list->devices[i].type & want) order[n++] = i;
    } else if (parse_pd(spec, &pp, &dd)) {
        for (size_t i = 0; i < list->n_devices; i++)
            if (list->devices[i].pi == pp && list->devices[i].di == dd) order[n++] = i;
    } else {
        for (size_t i = 0; i < list->n_devices; i++)
            if (contains_nocase(list->devices[i].name, spec)) order[n++] = i;
    }
    *n_order = n;
    return n > 0 ? MQ_OK : no_match(list, spec);
}
