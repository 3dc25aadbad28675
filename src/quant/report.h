/* The skipped list and the per-tensor report of a run, and the report's JSON. */
#ifndef MQ_REPORT_H
#define MQ_REPORT_H

#include "monoquant.h"

mq_skip_list *mq_skip_list_new(void);
mq_status mq_skip_list_add(mq_skip_list *s, const char *name, const char *reason);

mq_report *mq_report_new(void);
/* Records what happened to input tensor t (name, shape and dtype are copied). */
mq_status mq_report_add(mq_report *r, const mq_tensor *t, mq_action action, mq_dtype dtype_out,
                        uint64_t bytes_out, uint64_t fp16_overflow, const char *reason);
/* Sets the weight error statistics of the entry added last (a quantized tensor). */
void mq_report_set_error_stats(mq_report *r, double sqnr_db, double max_abs_error,
                               uint64_t clamped);
/* Marks the entry added last as searched with importances (mq_report_entry.imatrix). */
void mq_report_set_imatrix(mq_report *r, bool weighted);
/* A file of a model directory that the output leaves out, and why. */
mq_status mq_report_add_left_out(mq_report *r, const char *file, const char *reason);
void mq_report_set_device(mq_report *r, const char *backend, const char *platform,
                          const char *device);
/* Adds a device that ran `files` files of the run to the report's list of
 * devices (without one, the list is the device of mq_report_set_device). */
mq_status mq_report_add_device(mq_report *r, const char *backend, const char *platform,
                               const char *device, size_t files);
/* Appends src's entries and left-out files to dst (a file's report, run on
 * another thread, into the run's in file order). */
mq_status mq_report_append(mq_report *dst, const mq_report *src);

#endif
