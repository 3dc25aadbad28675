/* Backend choice: the registry of back ends (the CPU one in cpu_backend.c,
 * the OpenCL one in host/cl_backend.c) and opening one by a single spec
 * (device lists, a run's devices and the public handle: devset.c). */
#include "backend.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the registry: every back end built, in the order "auto" tries them ---- */

extern const mq_backend_reg mq_cpu_reg;
#ifdef MQ_HAVE_OPENCL
extern const mq_backend_reg mq_opencl_reg;
#endif
static const mq_backend_reg *const regs[] = {
#ifdef MQ_HAVE_OPENCL
    &mq_opencl_reg,
#endif
    &mq_cpu_reg};
#define N_REGS (sizeof regs / sizeof *regs)

const mq_backend_reg *mq_backend_reg_by_name(const char *name)
{
    for (size_t i = 0; i < N_REGS; i++)
        if (strcmp(regs[i]->name, name) == 0) return regs[i];
    return NULL;
}

const void *mq_backend_get_proc(const char *reg, const char *name)
{
    const mq_backend_reg *r = mq_backend_reg_by_name(reg);
    return r && r->get_proc_address ? r->get_proc_address(name) : NULL;
}

mq_status mq_backend_open_spec(const char *spec, size_t max_alloc_override, mq_backend **out)
{
    bool none = false;
    /* A spec that is a back end's name ("host", "opencl") goes to it alone. */
    const mq_backend_reg *named = mq_backend_reg_by_name(spec);
    if (named) return named->open(spec, max_alloc_override, &none, out);
    bool is_auto = strcmp(spec, "auto") == 0;
    mq_status st = MQ_STATUS_E_DEVICE;
    for (size_t i = 0; i < N_REGS; i++) {
        none = false;
        st = regs[i]->open(spec, max_alloc_override, &none, out);
        /* A device spec is the first back end's to answer; auto goes on
         * past each back end that has no device for it. */
        if (st == MQ_OK || !is_auto || !none) break;
        mq_clear_error(); /* no device is no failure for auto */
    }
    return st;
}

mq_status mq_device_list_get(mq_device_list *out)
{
    mq_clear_error();
    if (!out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_device_list_get: NULL out");
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < N_REGS; i++)
        if (regs[i]->list) return regs[i]->list(out);
    return MQ_OK;
}

void mq_device_list_free(mq_device_list *l)
{
    if (!l) return;
    free(l->platforms);
    free(l->devices);
    memset(l, 0, sizeof *l);
}

void mq_backend_free(mq_backend *b)
{
    if (b && !b->borrowed) b->ops->free(b);
}
