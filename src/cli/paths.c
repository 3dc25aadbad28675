/* The files a command reads and writes, checked against each other before any
 * work: no file it writes may be one it reads (or lie inside an input
 * directory), and no two of its outputs may be the same file. */
#define _GNU_SOURCE /* realpath */
#include "cli.h"

#include "outfile.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a path will name once written: the file itself when it exists (links
 * followed), else the entry `name` in the resolved parent directory. */
typedef struct {
    bool exists, parent_ok;
    struct stat st, parent_st;
    char *parent_real; /* realpath of the parent directory, or NULL */
    char *real;        /* realpath of the path itself when it exists, or NULL */
    char *name;        /* last component, without trailing slashes */
} path_id;

static void id_free(path_id *id)
{
    free(id->parent_real);
    free(id->real);
    free(id->name);
}

static bool id_make(const char *path, path_id *id)
{
    memset(id, 0, sizeof *id);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    char *copy = strndup(path, n);
    if (!copy) return false;
    char *slash = strrchr(copy, '/');
    const char *parent = ".";
    if (slash) {
        *slash = '\0';
        parent = slash == copy ? "/" : copy;
    }
    id->name = strdup(slash ? slash + 1 : copy);
    id->exists = stat(path, &id->st) == 0;
    if (id->exists) id->real = realpath(path, NULL);
    id->parent_real = realpath(parent, NULL);
    id->parent_ok = id->parent_real && stat(id->parent_real, &id->parent_st) == 0;
    free(copy);
    return id->name != NULL;
}

static bool same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static bool id_same(const path_id *a, const path_id *b)
{
    if (a->exists || b->exists) return a->exists && b->exists && same_inode(&a->st, &b->st);
    return a->parent_ok && b->parent_ok && same_inode(&a->parent_st, &b->parent_st) &&
           !strcmp(a->name, b->name);
}

/* True when a directory on the way up from `real` (itself included) is `dir`. */
static bool under(const char *real, const struct stat *dir)
{
    char *p = real ? strdup(real) : NULL;
    bool found = false;
    while (p && !found) {
        struct stat st;
        found = stat(p, &st) == 0 && same_inode(&st, dir);
        char *slash = strrchr(p, '/');
        if (!slash || (slash == p && p[1] == '\0')) break;
        slash[slash == p ? 1 : 0] = '\0';
    }
    free(p);
    return found;
}

/* The written file lies inside directory `dir`: its parent is `dir` or below
 * it (the name itself may be a link out of it, so the link's target counts too). */
static bool id_inside(const path_id *out, const path_id *dir)
{
    if (!dir->exists || !S_ISDIR(dir->st.st_mode)) return false;
    return under(out->parent_real, &dir->st) || (out->real && under(out->real, &dir->st));
}

static int refuse(const char *cmd, const mq_cli_path *o, const mq_cli_path *other,
                  const char *relation, const char *why)
{
    fprintf(stderr, "monoquant %s: %s '%s' %s %s '%s'%s; write to another path\n", cmd, o->label,
            mq_cli_esc(o->path), relation, other->label, mq_cli_esc(other->path), why);
    return MQ_EXIT_USAGE;
}

int mq_cli_check_paths(const char *cmd, const mq_cli_path *p, size_t n)
{
    path_id ids[MQ_CLI_MAX_PATHS];
    size_t made = 0;
    int rc = MQ_EXIT_OK;
    if (n > MQ_CLI_MAX_PATHS) n = MQ_CLI_MAX_PATHS;
    for (; made < n; made++) {
        if (!p[made].path) continue;
        if (!id_make(p[made].path, &ids[made])) {
            id_free(&ids[made]);
            fprintf(stderr, "monoquant %s: out of memory\n", cmd);
            rc = MQ_EXIT_OUTPUT;
            goto done;
        }
    }
    for (size_t i = 0; i < n && rc == MQ_EXIT_OK; i++) {
        if (!p[i].path || !p[i].output) continue;
        for (size_t k = 0; k < n && rc == MQ_EXIT_OK; k++) {
            if (k == i || !p[k].path) continue;
            if (id_same(&ids[i], &ids[k]) && (!p[k].output || k < i))
                rc = refuse(cmd, &p[i], &p[k], "is the same file as", "");
            else if (!p[k].output && id_inside(&ids[i], &ids[k]))
                rc = refuse(cmd, &p[i], &p[k], "is inside", " (a directory the run reads)");
            else if (p[k].output && p[k].dir && id_inside(&ids[i], &ids[k]))
                rc = refuse(cmd, &p[i], &p[k], "is inside", " (the directory the run writes)");
        }
    }
done:
    for (size_t i = 0; i < made; i++)
        if (p[i].path) id_free(&ids[i]);
    return rc;
}

void mq_cli_remove_output(const char *path, bool dir, const char *why)
{
    if (dir)
        mq_remove_tree(path);
    else
        unlink(path);
    fprintf(stderr, "monoquant: removed the output '%s': %s\n", mq_cli_esc(path), why);
}

static void note_removed(const char *path, void *user)
{
    (void)user;
    fprintf(stderr, "monoquant: removed '%s', left behind by a run that was killed\n",
            mq_cli_esc(path));
}

void mq_cli_remove_stale(const char *path)
{
    if (path) (void)mq_remove_stale_temps(path, note_removed, NULL);
}
