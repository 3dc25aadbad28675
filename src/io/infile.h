/* Opening an input file for reading: a regular file, or an error naming it.
 * open() of a FIFO waits for a writer and reading one waits for data, so a
 * FIFO named like a model file would hang the run; every opener of an input
 * (models, config files, indexes, eval's inputs) comes through here. */
#ifndef MQ_INFILE_H
#define MQ_INFILE_H

#include "monoquant.h"

#include <jansson.h>
#include <sys/stat.h>

/* "a FIFO", "a directory", ...: what a non-regular file is, for messages. */
const char *mq_infile_kind(mode_t mode);

/*
 * Opens `path` read-only without blocking, and requires a regular file.
 * Failures return `fail` (the caller's status for a bad input: I/O, config)
 * with "<path>: cannot open: <cause>" or "<path>: is a FIFO, not a regular
 * file"; *fd is then -1. `st` (may be NULL) gets the file's status.
 */
mq_status mq_infile_open(const char *path, mq_status fail, int *fd, struct stat *st);

/*
 * JSON from the regular file `path` (json_loadfd `flags`). A file that cannot
 * be opened, or is no regular file, fails as mq_infile_open; text that does
 * not parse returns MQ_OK with *out = NULL and *err set, for the caller to
 * word (its line and column).
 */
mq_status mq_infile_json(const char *path, size_t flags, mq_status fail, json_t **out,
                         json_error_t *err);

#endif
