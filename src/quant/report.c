/* The skipped list and the per-tensor report of a run (its JSON: reportjson.c). */
#include "report.h"

#include "dtype.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mq_skip_list {
    char **names, **reasons;
    size_t count, cap;
};

/* One device of a run and the files it quantized. */
typedef struct {
    char backend[16], platform[256], device[256];
    size_t files;
} report_device;

struct mq_report {
    mq_report_entry *entries;
    size_t count, cap;
    mq_skip_list left_out; /* files of a model directory not in the output */
    uint64_t bytes_in, bytes_out, overflow;
    char backend[16], platform[256], device[256];
    report_device *devices; /* the devices that ran, when recorded */
    size_t n_devices;
};

mq_skip_list *mq_skip_list_new(void)
{
    return calloc(1, sizeof(mq_skip_list));
}

mq_status mq_skip_list_add(mq_skip_list *s, const char *name, const char *reason)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **n = realloc(s->names, cap * sizeof *n);
        if (n) s->names = n;
        char **r = n ? realloc(s->reasons, cap * sizeof *r) : NULL;
        if (!r) return mq_set_error(MQ_STATUS_E_NOMEM, "skipped list: out of memory");
        s->reasons = r;
        s->cap = cap;
    }
    char *n = strdup(name), *r = strdup(reason);
    if (!n || !r) {
        free(n);
        free(r);
        return mq_set_error(MQ_STATUS_E_NOMEM, "skipped list: out of memory");
    }
    s->names[s->count] = n;
    s->reasons[s->count] = r;
    s->count++;
    return MQ_OK;
}

size_t mq_skip_list_count(const mq_skip_list *s)
{
    return s ? s->count : 0;
}

const char *mq_skip_list_name(const mq_skip_list *s, size_t i)
{
    return (s && i < s->count) ? s->names[i] : NULL;
}

const char *mq_skip_list_reason(const mq_skip_list *s, size_t i)
{
    return (s && i < s->count) ? s->reasons[i] : NULL;
}

static void skip_list_clear(mq_skip_list *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->names[i]);
        free(s->reasons[i]);
    }
    free(s->names);
    free(s->reasons);
}

void mq_skip_list_free(mq_skip_list *s)
{
    if (!s) return;
    skip_list_clear(s);
    free(s);
}

mq_report *mq_report_new(void)
{
    mq_report *r = calloc(1, sizeof *r);
    if (r) snprintf(r->backend, sizeof r->backend, "host");
    return r;
}

mq_status mq_report_add(mq_report *r, const mq_tensor *t, mq_action action, mq_dtype dtype_out,
                        uint64_t bytes_out, uint64_t fp16_overflow, const char *reason)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        mq_report_entry *e = realloc(r->entries, cap * sizeof *e);
        if (!e) return mq_set_error(MQ_STATUS_E_NOMEM, "report: out of memory");
        r->entries = e;
        r->cap = cap;
    }
    mq_report_entry *e = &r->entries[r->count];
    memset(e, 0, sizeof *e);
    e->name = strdup(t->name);
    e->reason = reason ? strdup(reason) : NULL;
    if (!e->name || (reason && !e->reason)) {
        free((char *)e->name);
        free((char *)e->reason);
        return mq_set_error(MQ_STATUS_E_NOMEM, "report: out of memory");
    }
    e->action = action;
    e->rank = t->rank;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->dtype_in = t->dtype;
    e->dtype_out = dtype_out;
    e->bytes_in = t->nbytes;
    e->bytes_out = bytes_out;
    e->fp16_overflow = fp16_overflow;
    e->weight_sqnr_db = NAN;
    r->bytes_in += t->nbytes;
    r->bytes_out += bytes_out;
    r->overflow += fp16_overflow;
    r->count++;
    return MQ_OK;
}

void mq_report_set_error_stats(mq_report *r, double sqnr_db, double max_abs_error, uint64_t clamped)
{
    if (!r || !r->count) return;
    mq_report_entry *e = &r->entries[r->count - 1];
    e->weight_sqnr_db = sqnr_db;
    e->max_abs_error = max_abs_error;
    e->clamped = clamped;
}

void mq_report_set_imatrix(mq_report *r, bool weighted)
{
    if (r && r->count) r->entries[r->count - 1].imatrix = weighted;
}

void mq_report_set_device(mq_report *r, const char *backend, const char *platform,
                          const char *device)
{
    snprintf(r->backend, sizeof r->backend, "%s", backend ? backend : "");
    snprintf(r->platform, sizeof r->platform, "%s", platform ? platform : "");
    snprintf(r->device, sizeof r->device, "%s", device ? device : "");
}

mq_status mq_report_add_device(mq_report *r, const char *backend, const char *platform,
                               const char *device, size_t files)
{
    report_device *d = realloc(r->devices, (r->n_devices + 1) * sizeof *d);
    if (!d) return mq_set_error(MQ_STATUS_E_NOMEM, "report: out of memory");
    r->devices = d;
    d += r->n_devices++;
    snprintf(d->backend, sizeof d->backend, "%s", backend ? backend : "");
    snprintf(d->platform, sizeof d->platform, "%s", platform ? platform : "");
    snprintf(d->device, sizeof d->device, "%s", device ? device : "");
    d->files = files;
    return MQ_OK;
}

mq_status mq_report_append(mq_report *dst, const mq_report *src)
{
    for (size_t i = 0; i < src->count; i++) {
        const mq_report_entry *e = &src->entries[i];
        mq_tensor t = {
            .name = e->name, .dtype = e->dtype_in, .rank = e->rank, .nbytes = e->bytes_in};
        memcpy(t.shape, e->shape, sizeof t.shape);
        mq_status st = mq_report_add(dst, &t, e->action, e->dtype_out, e->bytes_out,
                                     e->fp16_overflow, e->reason);
        if (st != MQ_OK) return st;
        mq_report_set_error_stats(dst, e->weight_sqnr_db, e->max_abs_error, e->clamped);
        mq_report_set_imatrix(dst, e->imatrix);
    }
    for (size_t i = 0; i < src->left_out.count; i++) {
        mq_status st =
            mq_skip_list_add(&dst->left_out, src->left_out.names[i], src->left_out.reasons[i]);
        if (st != MQ_OK) return st;
    }
    return MQ_OK;
}

size_t mq_report_device_count(const mq_report *r)
{
    return r ? (r->n_devices ? r->n_devices : 1) : 0;
}

/* Without a recorded list, device 0 is the one of mq_report_set_device. */
static const report_device *device_at(const mq_report *r, size_t i)
{
    return r && i < r->n_devices ? &r->devices[i] : NULL;
}

const char *mq_report_device_backend_at(const mq_report *r, size_t i)
{
    const report_device *d = device_at(r, i);
    return d ? d->backend : (r && i == 0 ? r->backend : NULL);
}

const char *mq_report_device_platform_at(const mq_report *r, size_t i)
{
    const report_device *d = device_at(r, i);
    return d ? d->platform : (r && i == 0 ? r->platform : NULL);
}

const char *mq_report_device_name_at(const mq_report *r, size_t i)
{
    const report_device *d = device_at(r, i);
    return d ? d->device : (r && i == 0 ? r->device : NULL);
}

size_t mq_report_device_files_at(const mq_report *r, size_t i)
{
    const report_device *d = device_at(r, i);
    return d ? d->files : 0;
}

size_t mq_report_count(const mq_report *r)
{
    return r ? r->count : 0;
}

const mq_report_entry *mq_report_entry_at(const mq_report *r, size_t i)
{
    return (r && i < r->count) ? &r->entries[i] : NULL;
}

uint64_t mq_report_bytes_in(const mq_report *r)
{
    return r ? r->bytes_in : 0;
}

uint64_t mq_report_bytes_out(const mq_report *r)
{
    return r ? r->bytes_out : 0;
}

uint64_t mq_report_fp16_overflow(const mq_report *r)
{
    return r ? r->overflow : 0;
}

const char *mq_report_backend(const mq_report *r)
{
    return r ? r->backend : "";
}

const char *mq_report_platform(const mq_report *r)
{
    return r ? r->platform : "";
}

const char *mq_report_device(const mq_report *r)
{
    return r ? r->device : "";
}

void mq_report_free(mq_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->count; i++) {
        free((char *)r->entries[i].name);
        free((char *)r->entries[i].reason);
    }
    free(r->entries);
    free(r->devices);
    skip_list_clear(&r->left_out);
    free(r);
}

mq_status mq_report_add_left_out(mq_report *r, const char *file, const char *reason)
{
    return mq_skip_list_add(&r->left_out, file, reason);
}

size_t mq_report_left_out_count(const mq_report *r)
{
    return r ? mq_skip_list_count(&r->left_out) : 0;
}

const char *mq_report_left_out_file(const mq_report *r, size_t i)
{
    return r ? mq_skip_list_name(&r->left_out, i) : NULL;
}

const char *mq_report_left_out_reason(const mq_report *r, size_t i)
{
    return r ? mq_skip_list_reason(&r->left_out, i) : NULL;
}
