/* The OpenCL platforms and devices as plain C data (no OpenCL types), for
 * `monoquant devices` and anything else outside host/ that lists devices. */
#ifndef MQ_CL_INVENTORY_H
#define MQ_CL_INVENTORY_H

#include "monoquant.h"

typedef struct {
    unsigned platform, index; /* the "P:D" spec that selects it */
    char name[256];
    char version[256];
    char driver[256];
    const char *type; /* "GPU", "CPU", "ACCELERATOR", ... */
    unsigned compute_units;
    uint64_t global_mem;
    uint64_t max_alloc;
    bool fp16, fp64;
    bool unified;               /* shares memory with the host: zero-copy staging */
    bool correctly_rounded_div; /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT */
    bool is_auto;               /* the device "auto" picks */
} mq_cl_device_info;

typedef struct {
    char name[256];
    char vendor[256];
    char version[256];
    char error[192]; /* "" or why the platform was skipped */
    size_t first;    /* its devices: devices[first .. first + count) */
    size_t count;
} mq_cl_platform_info;

typedef struct {
    mq_cl_platform_info *platforms;
    size_t n_platforms;
    mq_cl_device_info *devices;
    size_t n_devices;
} mq_cl_inventory;

/* Fills `inv` (empty when there is no OpenCL platform: not an error). */
mq_status mq_cl_inventory_get(mq_cl_inventory *inv);
void mq_cl_inventory_free(mq_cl_inventory *inv);

#endif
