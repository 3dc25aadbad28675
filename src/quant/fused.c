/* Fused sets of weights and their shared amax (see fused.h). */
#include "fused.h"

#include "dtype.h"
#include "error.h"
#include "infile.h"
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The members of each kind of set, and what the prefix must end with. */
static const struct {
    const char *members[3];
    const char *after[2]; /* the prefix ends with one of these; NULL: any prefix */
} sets[] = {
    {{"q_proj.weight", "k_proj.weight", "v_proj.weight"}, {"attn.", "attention."}},
    {{"wq_a.weight", "wkv_a_with_mqa.weight", NULL}, {"attn.", "attention."}},
    {{"gate_proj.weight", "up_proj.weight", NULL}, {"mlp.", NULL}},
    {{"w1.weight", "w3.weight", NULL}, {NULL, NULL}},
};

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

size_t mq_fused_key(const char *name, char *kind)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        for (size_t m = 0; m < 3 && sets[i].members[m]; m++) {
            if (!ends_with(name, len, sets[i].members[m])) continue;
            size_t p = len - strlen(sets[i].members[m]);
            bool ok = !sets[i].after[0];
            for (size_t a = 0; a < 2 && !ok && sets[i].after[a]; a++)
                ok = ends_with(name, p, sets[i].after[a]);
            if (!ok || p == 0) continue;
            *kind = (char)('a' + i);
            return p;
        }
    }
    return 0;
}

typedef struct {
    char *key; /* the prefix, then the kind byte */
    float amax;
} fused_set;

struct mq_fused {
    fused_set *set;
    size_t n, cap;
};

mq_fused *mq_fused_new(void)
{
    return calloc(1, sizeof(mq_fused));
}

void mq_fused_free(mq_fused *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++)
        free(f->set[i].key);
    free(f->set);
    free(f);
}

/* The set of `name`, or NULL (*key_out, when not NULL, gets its key, owned). */
static fused_set *find(const mq_fused *f, const char *name, char **key_out)
{
    char kind;
    size_t p = mq_fused_key(name, &kind);
    if (!p) return NULL;
    char *key = malloc(p + 2);
    if (!key) return NULL;
    memcpy(key, name, p);
    key[p] = kind;
    key[p + 1] = '\0';
    fused_set *hit = NULL;
    for (size_t i = 0; i < f->n && !hit; i++)
        if (strcmp(f->set[i].key, key) == 0) hit = &f->set[i];
    if (key_out)
        *key_out = key;
    else
        free(key);
    return hit;
}

mq_status mq_fused_add(mq_fused *f, const char *name, float amax)
{
    char kind;
    if (!mq_fused_key(name, &kind)) return MQ_OK;
    char *key = NULL;
    fused_set *s = find(f, name, &key);
    if (!key) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
    if (s) {
        free(key);
        if (amax > s->amax) s->amax = amax;
        return MQ_OK;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        fused_set *grown = realloc(f->set, cap * sizeof *grown);
        if (!grown) {
            free(key);
            return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
        }
        f->set = grown;
        f->cap = cap;
    }
    f->set[f->n++] = (fused_set){key, amax};
    return MQ_OK;
}

mq_status mq_fused_amax(void *user, const char *weight, float *amax)
{
    char kind;
    if (!mq_fused_key(weight, &kind)) return MQ_OK;
    fused_set *s = find(user, weight, NULL);
    if (s && s->amax > *amax) *amax = s->amax;
    return MQ_OK;
}

/* The amax of n bytes of dtype dt at offset off of fd, read buf_len bytes at a time. */
static mq_status reduce_file(mq_backend *be, int fd, const char *path, uint64_t off, uint64_t n,
                             mq_dtype dt, unsigned char *buf, size_t buf_len, mq_ref_stats *st)
{
    size_t es = mq_dtype_size(dt), step = buf_len / es * es;
    while (n > 0) {
        size_t want = n < step ? (size_t)n : step, got = 0;
        while (got < want) {
            ssize_t r = pread(fd, buf + got, want - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                return mq_set_error(MQ_STATUS_E_IO, "reading '%s': %s", path,
                                    r < 0 ? strerror(errno) : "the file ends early");
            got += (size_t)r;
        }
        mq_status s = be->ops->reduce(be, buf, dt, want / es, st);
        if (s != MQ_OK) return s;
        off += want;
        n -= want;
    }
    return MQ_OK;
}

static mq_status scan_file(mq_fused *f, const char *path, mq_planner *pl, mq_backend *be,
                           unsigned char *buf, size_t buf_len)
{
    mq_model *m = NULL;
    int fd = -1;
    mq_status st = mq_model_open(path, &m);
    if (st == MQ_OK) st = mq_infile_open(path, MQ_STATUS_E_IO, &fd, NULL);
    for (size_t i = 0; st == MQ_OK && i < m->count; i++) {
        const mq_tensor *t = &m->tensors[i];
        char kind, reason[256];
        if (!mq_fused_key(t->name, &kind) || !t->nbytes || !mq_dtype_is_quantizable(t->dtype))
            continue;
        mq_action a =
            mq_planner_decide(pl, t->name, t->dtype, t->rank, t->shape, reason, sizeof reason);
        if ((st = mq_planner_error(pl)) != MQ_OK || a != MQ_ACTION_QUANTIZE) continue;
        uint64_t off = (uint64_t)((const unsigned char *)t->data -
                                  (const unsigned char *)mq_blob_data(m->blobs[i]));
        mq_ref_stats stats;
        mq_ref_stats_init(&stats);
        st = reduce_file(be, fd, path, off, t->nbytes, t->dtype, buf, buf_len, &stats);
        if (st == MQ_OK && !stats.nonfinite) st = mq_fused_add(f, t->name, stats.amax);
    }
    if (st != MQ_OK) mq_error_prefix("%s", path);
    if (fd >= 0) close(fd);
    mq_model_free(m);
    return st;
}

mq_status mq_fused_scan(mq_fused *f, const char *const *paths, size_t n, mq_planner *pl,
                        mq_backend *be, uint64_t memory_limit)
{
    uint64_t limit = memory_limit ? memory_limit : (1ULL << 30);
    size_t buf_len = limit / 16 < (64u << 20) ? (size_t)(limit / 16) : (64u << 20);
    if (buf_len < 4096) buf_len = 4096;
    unsigned char *buf = malloc(buf_len);
    if (!buf) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (%zu bytes)", buf_len);
    mq_status st = MQ_OK;
    for (size_t i = 0; i < n && st == MQ_OK; i++)
        st = scan_file(f, paths[i], pl, be, buf, buf_len);
    free(buf);
    return st;
}
