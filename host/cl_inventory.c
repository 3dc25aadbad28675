/* The OpenCL back end's device list (its reg's `list`): cl_device.c's list as
 * the public header's plain C data (mq_device_list_get, `monoquant devices`). */
#include "cl_state.h"

#include "cl_device.h"
#include "cl_error.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mq_status mq_cl_device_list(mq_device_list *inv)
{
    mq_cl_devlist list;
    memset(inv, 0, sizeof *inv);
    mq_status st = mq_cl_devlist_get(&list);
    if (st != MQ_OK) return st;
    if (list.n_platforms == 0) goto done;
    inv->platforms = calloc(list.n_platforms, sizeof *inv->platforms);
    inv->devices = calloc(list.n_devices ? list.n_devices : 1, sizeof *inv->devices);
    if (!inv->platforms || !inv->devices) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "OpenCL device list: out of memory");
        mq_device_list_free(inv);
        goto done;
    }
    inv->n_platforms = list.n_platforms;
    inv->n_devices = list.n_devices;
    for (size_t i = 0; i < list.n_platforms; i++) {
        const mq_cl_platform *p = &list.platforms[i];
        mq_platform_info *o = &inv->platforms[i];
        snprintf(o->name, sizeof o->name, "%s", p->name);
        snprintf(o->vendor, sizeof o->vendor, "%s", p->vendor);
        snprintf(o->version, sizeof o->version, "%s", p->version);
        if (p->error != CL_SUCCESS)
            snprintf(o->error, sizeof o->error, "%s failed: %s (%d)", p->failed_call,
                     mq_cl_error_name(p->error), (int)p->error);
        o->first = list.n_devices;
        for (size_t j = 0; j < list.n_devices; j++) {
            if (list.devices[j].platform != i) continue;
            if (o->count == 0) o->first = j;
            o->count++;
        }
    }
    size_t pick = mq_cl_devlist_auto(&list);
    for (size_t j = 0; j < list.n_devices; j++) {
        const mq_cl_device *d = &list.devices[j];
        mq_device_info *o = &inv->devices[j];
        o->platform = d->pi;
        o->index = d->di;
        snprintf(o->name, sizeof o->name, "%s", d->name);
        snprintf(o->version, sizeof o->version, "%s", d->version);
        snprintf(o->driver, sizeof o->driver, "%s", d->driver);
        o->type = mq_cl_device_type_name(d->type);
        o->compute_units = d->compute_units;
        o->global_mem = d->global_mem;
        o->max_alloc = d->max_alloc;
        o->fp16 = d->fp16;
        o->fp64 = d->fp64;
        o->unified = d->unified;
        o->correctly_rounded_div = (d->fp32_config & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
        o->is_auto = j == pick;
    }
done:
    mq_cl_devlist_free(&list);
    return st;
}
