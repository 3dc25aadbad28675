/* Several files on several devices: one pipeline (mq_stream_file) per
 * backend, each on a worker thread taking the next file from a shared queue,
 * with its own planner and an equal share of the memory limit, so the run's
 * staging memory stays within the settings' memory_limit. Each file's output is what
 * a one-device run writes, so the result does not depend on which device
 * took which file. */
#ifndef MQ_MULTIDEV_H
#define MQ_MULTIDEV_H

#include "backend.h"
#include "plan.h"
#include "stream.h"

/*
 * Quantizes in_paths[i] into out_paths[i] for i < n on the n_be backends.
 * Report entries reach `rep` in file order, and each backend is added to its
 * device list with the files it ran. The progress callback is called on the
 * calling thread, one call at a time, with the totals of every device (from
 * `totals`, which must hold the run's totals). The first failure stops the
 * queue; the devices finish the file they are on, and the run fails with
 * that error (the files already written are the caller's to remove).
 */
mq_status mq_stream_files(const char *const *in_paths, const char *const *out_paths, size_t n,
                          const mq_settings *set, const mq_plan_hints *hints,
                          mq_backend *const *bes, size_t n_be, mq_report *rep,
                          mq_stream_totals *totals);

#endif
