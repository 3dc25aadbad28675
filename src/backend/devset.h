/* Device specs as a configuration gives them, above backend.h's single specs:
 * lists ("0:0,0:1", "gpu:all"), the single specs a list names, each opened as
 * a backend of its own (its own context and queue, even when the same device
 * is named twice), for runs that spread files over devices; the backend of
 * one run; the public device handle (mq_device_open). */
#ifndef MQ_DEVSET_H
#define MQ_DEVSET_H

#include "backend.h"

/* Most devices one run takes. */
#define MQ_MAX_DEVICES 64

typedef struct {
    char *spec[MQ_MAX_DEVICES]; /* single specs, as mq_backend_open_spec takes them (owned) */
    size_t count;
} mq_spec_list;

typedef struct {
    mq_backend *be[MQ_MAX_DEVICES];
    size_t count;
} mq_backend_set;

/*
 * Splits a device spec into single specs: a comma-separated list (blanks
 * around an entry ignored; an empty entry is an error), where "gpu:all",
 * "cpu:all" and "opencl:all" stand for every OpenCL device of that type (in
 * list order, as "P:D"), and "all" for every GPU and accelerator, or "host"
 * when there is none (as "auto" falls back). NULL or "" is one "auto". A spec
 * without a comma or ":all" is one entry, unchanged. Free with
 * mq_spec_list_free.
 */
mq_status mq_spec_list_parse(const char *spec, mq_spec_list *out);
void mq_spec_list_free(mq_spec_list *l);

/*
 * Opens the backend that sel->spec names (NULL or "" is "auto"; a single
 * spec as mq_backend_open_spec takes it; a list: its first device), or lends
 * the device sel->handle holds (borrowed: mq_backend_free leaves it open).
 * The caller frees it with mq_backend_free.
 */
mq_status mq_backend_open(const mq_device_sel *sel, mq_backend **out);

/* Opens a backend for every entry of sel->spec (sel->handle, when set, is
 * the one device). On failure none stays open and the error names the entry.
 * Free with mq_backend_set_free. */
mq_status mq_backend_set_open(const mq_device_sel *sel, mq_backend_set *out);
void mq_backend_set_free(mq_backend_set *s);

#endif
