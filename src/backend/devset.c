/* Device specs as the configuration and the public API give them: parsing
 * "A,B,..." and the ":all" forms into single specs, opening one backend per
 * entry or the first one, and the public device handle (see devset.h). Above
 * backend.c, which opens one single spec and knows nothing of lists. */
#include "devset.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static mq_status add_spec(mq_spec_list *l, const char *whole, const char *s, size_t n)
{
    if (l->count == MQ_MAX_DEVICES)
        return mq_set_error(MQ_STATUS_E_CONFIG, "device list '%s': more than %d devices", whole,
                            MQ_MAX_DEVICES);
    if (!(l->spec[l->count] = strndup(s, n)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "device list '%s': out of memory", whole);
    l->count++;
    return MQ_OK;
}

/* "all" (GPUs and accelerators), "gpu:all", "cpu:all", "opencl:all": the
 * type an ":all" entry takes, or NULL when the entry is a single spec. */
static const char *all_kind(const char *e, size_t n)
{
    static const char *const kinds[] = {"gpu", "cpu", "opencl"};
    if (n == 3 && strncasecmp(e, "all", 3) == 0) return "all";
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        size_t m = strlen(kinds[k]);
        if (n == m + 4 && strncasecmp(e, kinds[k], m) == 0 && strncasecmp(e + m, ":all", 4) == 0)
            return kinds[k];
    }
    return NULL;
}

static bool kind_takes(const char *kind, const mq_device_info *d)
{
    if (!strcmp(kind, "opencl")) return true;
    if (!strcmp(kind, "gpu")) return !strcmp(d->type, "GPU");
    if (!strcmp(kind, "cpu")) return !strcmp(d->type, "CPU");
    return !strcmp(d->type, "GPU") || !strcmp(d->type, "ACCELERATOR"); /* "all" */
}

static mq_status expand_all(mq_spec_list *l, const char *whole, const char *kind, const char *e,
                            size_t n)
{
    mq_device_list devs;
    size_t found = 0;
    mq_status st = mq_device_list_get(&devs);
    for (size_t i = 0; st == MQ_OK && i < devs.n_devices; i++) {
        char pd[32];
        if (!kind_takes(kind, &devs.devices[i])) continue;
        int w = snprintf(pd, sizeof pd, "%u:%u", devs.devices[i].platform, devs.devices[i].index);
        st = add_spec(l, whole, pd, (size_t)w);
        found++;
    }
    mq_device_list_free(&devs);
    if (st != MQ_OK || found) return st;
    /* "all" without a GPU or accelerator takes the host path, as "auto" does. */
    if (!strcmp(kind, "all")) return add_spec(l, whole, "host", 4);
    const char *what = !strcmp(kind, "gpu") ? "GPU " : !strcmp(kind, "cpu") ? "CPU " : "";
    return mq_set_error(MQ_STATUS_E_DEVICE, "device '%.*s': no OpenCL %sdevice found", (int)n, e,
                        what);
}

mq_status mq_spec_list_parse(const char *spec, mq_spec_list *out)
{
    mq_status st = MQ_OK;
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return add_spec(out, "", "auto", 4);
    for (const char *p = spec; st == MQ_OK;) {
        const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
        const char *e = p;
        while (e < end && (*e == ' ' || *e == '\t'))
            e++;
        while (end > e && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t n = (size_t)(end - e);
        const char *kind = all_kind(e, n);
        if (n == 0)
            st = mq_set_error(MQ_STATUS_E_CONFIG, "device list '%s': an empty entry", spec);
        else if (kind)
            st = expand_all(out, spec, kind, e, n);
        else
            st = add_spec(out, spec, e, n);
        if (!comma) break;
        p = comma + 1;
    }
    if (st != MQ_OK) mq_spec_list_free(out);
    return st;
}

void mq_spec_list_free(mq_spec_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++)
        free(l->spec[i]);
    memset(l, 0, sizeof *l);
}

/* A list opens its first device (mq_backend_set_open opens them all). */
static mq_status open_first(const char *spec, size_t max_alloc_override, mq_backend **out)
{
    mq_spec_list specs;
    mq_status st = mq_spec_list_parse(spec, &specs);
    if (st != MQ_OK) return st;
    st = mq_backend_open_spec(specs.spec[0], max_alloc_override, out);
    mq_spec_list_free(&specs);
    return st;
}

/* ---- the public device handle: one backend opened once, lent to calls ---- */

struct mq_device {
    mq_backend *be;
};

mq_status mq_device_open(const char *spec, mq_device **out)
{
    mq_backend *be = NULL;
    if (!out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "mq_device_open: NULL out");
    *out = NULL;
    mq_clear_error();
    mq_status st = open_first(spec, 0, &be);
    if (st != MQ_OK) return st;
    mq_device *d = calloc(1, sizeof *d);
    if (!d) {
        be->ops->free(be);
        return mq_set_error(MQ_STATUS_E_NOMEM, "mq_device_open: out of memory");
    }
    be->borrowed = true;
    d->be = be;
    *out = d;
    return MQ_OK;
}

void mq_device_close(mq_device *d)
{
    if (!d) return;
    d->be->ops->free(d->be);
    free(d);
}

const char *mq_device_kind(const mq_device *d)
{
    return d ? d->be->backend : "";
}

const char *mq_device_platform(const mq_device *d)
{
    return d ? d->be->platform : "";
}

const char *mq_device_name(const mq_device *d)
{
    return d ? d->be->device : "";
}

/* ---- a run's devices ---- */

mq_status mq_backend_open(const mq_device_sel *sel, mq_backend **out)
{
    if (sel->handle) {
        *out = sel->handle->be;
        return MQ_OK;
    }
    return open_first(sel->spec, sel->max_alloc_override, out);
}

mq_status mq_backend_set_open(const mq_device_sel *sel, mq_backend_set *out)
{
    mq_spec_list specs;
    memset(out, 0, sizeof *out);
    if (sel->handle) return mq_backend_open(sel, &out->be[out->count++]);
    mq_status st = mq_spec_list_parse(sel->spec, &specs);
    for (size_t i = 0; st == MQ_OK && i < specs.count; i++) {
        st = mq_backend_open_spec(specs.spec[i], sel->max_alloc_override, &out->be[i]);
        if (st == MQ_OK)
            out->count++;
        else if (specs.count > 1)
            mq_error_prefix("device list '%s', entry %zu", sel->spec, i + 1);
    }
    mq_spec_list_free(&specs);
    if (st != MQ_OK) mq_backend_set_free(out);
    return st;
}

void mq_backend_set_free(mq_backend_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->count; i++)
        mq_backend_free(s->be[i]);
    memset(s, 0, sizeof *s);
}
