/* Durable directory output: copying a directory tree file by file (each file
 * and directory synced, mq_sync_dir) and writing a new file whole. What is
 * created is recorded in a cleanup slot (cleanup.h), so that a signal removes
 * it. */
#ifndef MQ_DIRCOPY_H
#define MQ_DIRCOPY_H

#include "monoquant.h"

#include <stdbool.h>
#include <sys/stat.h>

/* Creates `path` (which must not exist; 0666 less the umask) holding the n
 * bytes of `data`, synced, recorded in cleanup slot `slot` (-1: none) as it
 * is created. */
mq_status mq_write_new_file(int slot, const char *path, const void *data, size_t n);

/* How mq_copy_tree treats the entries of the source. */
typedef struct {
    int slot; /* cleanup slot (mq_cleanup_open) that records what is created */
    /* (optional) Called for every entry before it is copied: `path` is the
     * entry's source path, `name` its name, depth 0 for the top directory's
     * entries. *skip = true leaves it out; an error stops the copy. */
    mq_status (*filter)(void *user, const char *path, const char *name, int depth, bool *skip);
    /* (optional) An entry that is neither a directory nor a regular file (a
     * FIFO, socket or device has no content to copy, and reading a FIFO would
     * wait for a writer). NULL: an error naming it. */
    mq_status (*special)(void *user, const char *path, const struct stat *st);
    void *user;
} mq_tree_copy;

/*
 * Copies the contents of directory `src` into the existing directory `dst`,
 * following symbolic links (the filter is where to refuse them): regular
 * files byte for byte with their permissions less the umask, directories with
 * their permissions less the umask (always owner-writable), each synced.
 * Temporaries of runs (mq_is_temp_name) are skipped. Entries are not sorted.
 * Errors name the file; MQ_STATUS_E_IO for the source, MQ_STATUS_E_OUTPUT for
 * the copy.
 */
mq_status mq_copy_tree(const mq_tree_copy *c, const char *src, const char *dst);

#endif
