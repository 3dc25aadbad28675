/* OpenCL platform and device discovery, and the choice of a device from a spec
 * ("auto", "opencl", "gpu", "cpu", "P:D" or a name substring). host/-internal. */
#ifndef MQ_CLDEVICE_H
#define MQ_CLDEVICE_H

#include "monoquant.h"

#include <CL/cl.h>

typedef struct {
    cl_platform_id id;
    char name[256];
    char vendor[256];
    char version[256];
    cl_int error; /* CL_SUCCESS, or the failure that made us skip it */
    const char *failed_call;
} mq_cl_platform;

typedef struct {
    cl_device_id id;
    size_t platform; /* index into mq_cl_devlist.platforms */
    unsigned pi, di; /* "P:D" */
    cl_device_type type;
    cl_uint compute_units;
    cl_ulong global_mem;
    cl_ulong max_alloc;
    size_t max_wg;
    cl_device_fp_config fp32_config;
    bool fp16, fp64;
    bool unified; /* CL_DEVICE_HOST_UNIFIED_MEMORY: shares memory with the host */
    char name[256];
    char version[256];
    char driver[256];
} mq_cl_device;

typedef struct {
    mq_cl_platform *platforms;
    size_t n_platforms;
    mq_cl_device *devices;
    size_t n_devices;
} mq_cl_devlist;

/* Every device of every platform. A platform that fails is kept with its error
 * (`monoquant devices` shows it). No platform is not an error. */
mq_status mq_cl_devlist_get(mq_cl_devlist *list);
void mq_cl_devlist_free(mq_cl_devlist *list);
/* The device "auto" picks: first GPU, else first device; SIZE_MAX when none. */
size_t mq_cl_devlist_auto(const mq_cl_devlist *list);
/* Indices of the devices that match `spec`, best first (later ones are fallbacks
 * when a context cannot be made); "auto" matches GPUs, then accelerators, and
 * may match none (*n_order = 0, MQ_OK). Otherwise
 * MQ_STATUS_E_DEVICE, with the available devices
 * listed in the message, when none matches. `order` holds n_devices entries. */
mq_status mq_cl_devlist_match(const mq_cl_devlist *list, const char *spec, size_t *order,
                              size_t *n_order);
/* "GPU", "CPU", "ACCELERATOR", ... */
const char *mq_cl_device_type_name(cl_device_type t);

#endif
