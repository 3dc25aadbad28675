/* model.safetensors.index.json: strict checks of an input index against the
 * shards it names (a wrong index would silently drop or misplace tensors in
 * the output), and the index of the output shards. */
#include "hfmeta.h"

#include "dtype.h"
#include "error.h"
#include "infile.h"
#include "path.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_SUFFIX ".safetensors"

typedef struct {
    const char *name;  /* points into the index's JSON */
    const char *first; /* first tensor the index maps to it, for messages */
    mq_model *model;
} shard_info;

typedef struct {
    const char *dir;
    const mq_hf_root *root;
    json_t *map;   /* the index's weight_map */
    json_t *where; /* shard name -> position in shards[] */
    shard_info *shards;
    size_t count;
} index_ctx;

static mq_status file_error(mq_status s, const char *dir, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static mq_status file_error(mq_status s, const char *dir, const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mq_set_error_va(s, fmt, ap);
    va_end(ap);
    size_t n = strlen(dir);
    mq_error_prefix("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file);
    return s;
}

static mq_status no_memory(void)
{
    return mq_set_error(MQ_STATUS_E_NOMEM, "model index: out of memory");
}

void mq_hf_shards_free(mq_hf_shards *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->count; i++)
        free(s->names[i]);
    free(s->names);
    s->names = NULL;
    s->count = 0;
}

/* A shard must sit in the directory itself: a name with a '/' could read
 * (and write, in the output) outside of it. */
static bool plain_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

bool mq_hf_is_consolidated(const char *name)
{
    return strncmp(name, "consolidated", 12) == 0 && ends_with(name, ST_SUFFIX);
}

static mq_status parse_index(const mq_hf_root *root, json_t **out)
{
    json_error_t err;
    const char *dir = root->dir;
    char *path = mq_path_join(dir, MQ_HF_INDEX);
    if (!path) return no_memory();
    mq_status st = mq_hf_root_check(root, path);
    if (st != MQ_OK) {
        free(path);
        return st;
    }
    /* Duplicate keys would hide a tensor listed twice with different shards. */
    json_t *j = NULL;
    st = mq_infile_json(path, JSON_REJECT_DUPLICATES, MQ_STATUS_E_IO, &j, &err);
    free(path);
    if (st != MQ_OK) return st;
    if (!j) {
        return file_error(MQ_STATUS_E_FORMAT, dir, MQ_HF_INDEX,
                          "not valid JSON: %s (line %d, column %d)", err.text, err.line,
                          err.column);
    }
    *out = j;
    json_t *map = json_object_get(j, "weight_map"), *meta = json_object_get(j, "metadata");
    if (!json_is_object(j))
        return file_error(MQ_STATUS_E_FORMAT, dir, MQ_HF_INDEX, "not a JSON object");
    if (!map) return file_error(MQ_STATUS_E_FORMAT, dir, MQ_HF_INDEX, "no \"weight_map\" object");
    if (!json_is_object(map))
        return file_error(MQ_STATUS_E_FORMAT, dir, MQ_HF_INDEX, "\"weight_map\" is not an object");
    if (json_object_size(map) == 0)
        return file_error(MQ_STATUS_E_FORMAT, dir, MQ_HF_INDEX, "\"weight_map\" is empty");
    if (meta && !json_is_object(meta))
        return file_error(MQ_STATUS_E_FORMAT, dir, MQ_HF_INDEX, "\"metadata\" is not an object");
    return MQ_OK;
}

static int shard_cmp(const void *a, const void *b)
{
    return strcmp(((const shard_info *)a)->name, ((const shard_info *)b)->name);
}

/* The distinct shard names of weight_map, sorted, each with its first tensor. */
static mq_status collect_shards(index_ctx *c)
{
    const char *tensor;
    json_t *v;
    size_t cap = 0;
    json_object_foreach(c->map, tensor, v)
    {
        if (!json_is_string(v))
            return file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                              "tensor '%s': the shard name is not a string", tensor);
        const char *s = json_string_value(v);
        if (!plain_name(s))
            return file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                              "tensor '%s' is in shard '%s', which is not a plain file name",
                              tensor, s);
        if (strlen(s) > NAME_MAX)
            return file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                              "tensor '%s' is in shard '%.40s...', whose name is longer than %d "
                              "bytes",
                              tensor, s, NAME_MAX);
        if (json_object_get(c->where, s)) continue;
        if (json_object_set_new(c->where, s, json_integer(0)) != 0) return no_memory();
        if (c->count == cap) {
            cap = cap ? cap * 2 : 8;
            shard_info *n = realloc(c->shards, cap * sizeof *n);
            if (!n) return no_memory();
            c->shards = n;
        }
        c->shards[c->count++] = (shard_info){s, tensor, NULL};
    }
    qsort(c->shards, c->count, sizeof *c->shards, shard_cmp);
    for (size_t i = 0; i < c->count; i++)
        if (json_object_set_new(c->where, c->shards[i].name, json_integer((json_int_t)i)) != 0)
            return no_memory();
    return MQ_OK;
}

static mq_status open_shard(index_ctx *c, shard_info *s)
{
    struct stat st;
    mq_status rc = MQ_OK;
    char *path = mq_path_join(c->dir, s->name);
    if (!path) return no_memory();
    if ((rc = mq_hf_root_check(c->root, path)) != MQ_OK) goto done;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            rc =
                file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                           "tensor '%s' is in shard '%s', which does not exist", s->first, s->name);
        else
            rc = mq_set_error(MQ_STATUS_E_IO, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                        "tensor '%s' is in shard '%s', which is %s, not a regular file", s->first,
                        s->name, mq_infile_kind(st.st_mode));
    } else {
        rc = mq_model_open(path, &s->model);
    }
done:
    free(path);
    return rc;
}

static const shard_info *shard_named(const index_ctx *c, const char *name)
{
    json_t *v = json_object_get(c->where, name);
    return v ? &c->shards[json_integer_value(v)] : NULL;
}

/* Every tensor of every shard is listed, and listed under that shard. */
static mq_status check_shard_tensors(const index_ctx *c, const shard_info *s)
{
    for (size_t i = 0; i < mq_model_count(s->model); i++) {
        const char *t = mq_model_tensor(s->model, i)->name;
        json_t *v = json_object_get(c->map, t);
        if (!v)
            return file_error(MQ_STATUS_E_FORMAT, c->dir, s->name,
                              "tensor '%s' is not listed in %s", t, MQ_HF_INDEX);
        const char *mapped = json_string_value(v);
        if (strcmp(mapped, s->name) == 0) continue;
        const shard_info *o = shard_named(c, mapped);
        if (o && mq_model_find(o->model, t))
            return file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                              "tensor '%s' is in two shards, '%s' and '%s'", t,
                              strcmp(mapped, s->name) < 0 ? mapped : s->name,
                              strcmp(mapped, s->name) < 0 ? s->name : mapped);
        return file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                          "tensor '%s' is mapped to shard '%s' but is in shard '%s'", t, mapped,
                          s->name);
    }
    return MQ_OK;
}

/* Every listed tensor exists in the shard it is mapped to. */
static mq_status check_listed_tensors(const index_ctx *c)
{
    const char *t;
    json_t *v;
    json_object_foreach(c->map, t, v)
    {
        const shard_info *s = shard_named(c, json_string_value(v));
        if (!mq_model_find(s->model, t))
            return file_error(MQ_STATUS_E_FORMAT, c->dir, MQ_HF_INDEX,
                              "tensor '%s' is mapped to shard '%s', which does not contain it", t,
                              s->name);
    }
    return MQ_OK;
}

/* A *.safetensors file the index does not name is a leftover or a broken
 * download; quantizing without it would lose its tensors unnoticed. */
static mq_status check_stray_shards(const index_ctx *c)
{
    mq_status rc = MQ_OK;
    DIR *d = opendir(c->dir);
    if (!d) return mq_set_error(MQ_STATUS_E_IO, "%s: %s", c->dir, strerror(errno));
    struct dirent *e;
    while (rc == MQ_OK && (e = readdir(d))) {
        if (!ends_with(e->d_name, ST_SUFFIX) || json_object_get(c->where, e->d_name) ||
            mq_hf_is_consolidated(e->d_name))
            continue;
        struct stat st;
        char *path = mq_path_join(c->dir, e->d_name);
        if (!path) {
            rc = no_memory();
            break;
        }
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = file_error(MQ_STATUS_E_FORMAT, c->dir, e->d_name,
                            "shard '%s' is not listed in the index (%s)", e->d_name, MQ_HF_INDEX);
        free(path);
    }
    closedir(d);
    return rc;
}

static mq_status export_names(const index_ctx *c, mq_hf_shards *out)
{
    if (!(out->names = calloc(c->count, sizeof *out->names))) return no_memory();
    for (size_t i = 0; i < c->count; i++) {
        if (!(out->names[i] = strdup(c->shards[i].name))) return no_memory();
        out->count++;
    }
    return MQ_OK;
}

mq_status mq_hf_index_load(const mq_hf_root *root, json_t **index, mq_hf_shards *shards)
{
    index_ctx c = {.dir = root->dir, .root = root};
    json_t *j = NULL;
    mq_status st;

    *index = NULL;
    *shards = (mq_hf_shards){0};
    if ((st = parse_index(root, &j)) != MQ_OK) goto done;
    c.map = json_object_get(j, "weight_map");
    if (!(c.where = json_object())) {
        st = no_memory();
        goto done;
    }
    if ((st = collect_shards(&c)) != MQ_OK) goto done;
    for (size_t i = 0; i < c.count; i++)
        if ((st = open_shard(&c, &c.shards[i])) != MQ_OK) goto done;
    for (size_t i = 0; i < c.count; i++)
        if ((st = check_shard_tensors(&c, &c.shards[i])) != MQ_OK) goto done;
    if ((st = check_listed_tensors(&c)) != MQ_OK) goto done;
    if ((st = check_stray_shards(&c)) != MQ_OK) goto done;
    if ((st = export_names(&c, shards)) != MQ_OK) goto done;
    *index = j;
    j = NULL;
done:
    if (st != MQ_OK) mq_hf_shards_free(shards);
    for (size_t i = 0; i < c.count; i++)
        mq_model_free(c.shards[i].model);
    free(c.shards);
    json_decref(c.where);
    json_decref(j);
    return st;
}

/* Adds the tensors of one output shard to weight_map and the totals. */
static mq_status add_output_shard(const char *out_dir, const char *shard, json_t *map,
                                  uint64_t *bytes, uint64_t *params)
{
    mq_model *m = NULL;
    char *path = mq_path_join(out_dir, shard);
    mq_status st = path ? mq_model_open(path, &m) : no_memory();
    for (size_t i = 0; st == MQ_OK && i < mq_model_count(m); i++) {
        const mq_tensor *t = mq_model_tensor(m, i);
        json_t *prev = json_object_get(map, t->name);
        uint64_t numel = 0;
        if (prev) {
            st = file_error(MQ_STATUS_E_FORMAT, out_dir, shard,
                            "output tensor '%s' is also in shard '%s'", t->name,
                            json_string_value(prev));
            break;
        }
        if (json_object_set_new(map, t->name, json_string(shard)) != 0) st = no_memory();
        mq_shape_numel(t->rank, t->shape, &numel);
        *bytes += t->nbytes;
        *params += numel;
    }
    mq_model_free(m);
    free(path);
    return st;
}

mq_status mq_hf_index_render(const char *out_dir, const mq_hf_shards *shards, json_t *in_index,
                             char **text, size_t *len)
{
    json_t *out = json_object(), *map = json_object(), *meta = NULL, *v;
    json_t *in_meta = json_object_get(in_index, "metadata");
    const char *key;
    uint64_t bytes = 0, params = 0;
    mq_status st = MQ_OK;

    *text = NULL;
    meta = in_meta ? json_deep_copy(in_meta) : json_object();
    if (!out || !map || !meta) {
        st = no_memory();
        goto done;
    }
    /* Keys other than these two are not transformers', but a tool may rely on them. */
    json_object_foreach(in_index, key, v)
    {
        if (strcmp(key, "metadata") != 0 && strcmp(key, "weight_map") != 0 &&
            json_object_set(out, key, v) != 0) {
            st = no_memory();
            goto done;
        }
    }
    for (size_t i = 0; i < shards->count && st == MQ_OK; i++)
        st = add_output_shard(out_dir, shards->names[i], map, &bytes, &params);
    if (st != MQ_OK) goto done;
    if (json_object_set_new(meta, "total_size", json_integer((json_int_t)bytes)) != 0 ||
        (json_object_get(meta, "total_parameters") &&
         json_object_set_new(meta, "total_parameters", json_integer((json_int_t)params)) != 0) ||
        json_object_set(out, "metadata", meta) != 0 ||
        json_object_set(out, "weight_map", map) != 0) {
        st = no_memory();
        goto done;
    }
    st = mq_hf_json_dump(out, true, text, len);
done:
    json_decref(meta);
    json_decref(map);
    json_decref(out);
    return st;
}
