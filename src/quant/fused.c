/* Fused sets of weights and their shared amax (see fused.h). */
#include "fused.h"

#include "dtype.h"
#include "error.h"
#include "foreign.h"
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

/* Names to amax: open addressing on an FNV-1a hash, grown at half full. */
typedef struct {
    char **key;
    float *amax;
    size_t cap, n;
} amax_table;

static size_t hash(const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return (size_t)h;
}

/* The slot of key[0..len) (its own, or the empty one it would take). */
static size_t slot(const amax_table *t, const char *k, size_t len)
{
    size_t i = hash(k, len) & (t->cap - 1);
    while (t->key[i] && (strncmp(t->key[i], k, len) != 0 || t->key[i][len] != '\0'))
        i = (i + 1) & (t->cap - 1);
    return i;
}

static const float *table_get(const amax_table *t, const char *k, size_t len)
{
    if (!t->cap) return NULL;
    size_t i = slot(t, k, len);
    return t->key[i] ? &t->amax[i] : NULL;
}

static bool table_grow(amax_table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 64;
    amax_table g = {calloc(cap, sizeof *g.key), malloc(cap * sizeof *g.amax), cap, t->n};
    if (!g.key || !g.amax) {
        free(g.key);
        free(g.amax);
        return false;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->key[i]) continue;
        size_t j = slot(&g, t->key[i], strlen(t->key[i]));
        g.key[j] = t->key[i];
        g.amax[j] = t->amax[i];
    }
    free(t->key);
    free(t->amax);
    *t = g;
    return true;
}

/* Folds v into key[0..len)'s amax, adding the key at v. */
static bool table_max(amax_table *t, const char *k, size_t len, float v)
{
    if (2 * (t->n + 1) > t->cap && !table_grow(t)) return false;
    size_t i = slot(t, k, len);
    if (t->key[i]) {
        if (v > t->amax[i]) t->amax[i] = v;
        return true;
    }
    if (!(t->key[i] = strndup(k, len))) return false;
    t->amax[i] = v;
    t->n++;
    return true;
}

static void table_free(amax_table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->key[i]);
    free(t->key);
    free(t->amax);
}

/* Sets are keyed by their prefix and a byte for the kind of set after a
 * byte no tensor name holds; weights by their names. */
struct mq_fused {
    amax_table sets, weights;
};

mq_fused *mq_fused_new(void)
{
    return calloc(1, sizeof(mq_fused));
}

void mq_fused_free(mq_fused *f)
{
    if (!f) return;
    table_free(&f->sets);
    table_free(&f->weights);
    free(f);
}

/* The key of name's set (owned), its length in *n; NULL with *n = 0 when
 * the weight is in no set, NULL with *n > 0 when out of memory. */
static char *set_key(const char *name, size_t *n)
{
    char kind;
    size_t p = mq_fused_key(name, &kind);
    *n = p ? p + 2 : 0;
    if (!p) return NULL;
    char *k = malloc(p + 3);
    if (!k) return NULL;
    memcpy(k, name, p);
    k[p] = '\x01';
    k[p + 1] = kind;
    k[p + 2] = '\0';
    return k;
}

mq_status mq_fused_add(mq_fused *f, const char *name, float amax)
{
    size_t n;
    char *key = set_key(name, &n);
    bool ok = (!n || key) && table_max(&f->weights, name, strlen(name), amax) &&
              (!key || table_max(&f->sets, key, n, amax));
    free(key);
    return ok ? MQ_OK : mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", name);
}

mq_status mq_fused_amax(void *user, const char *weight, float *amax, bool *known)
{
    const mq_fused *f = user;
    const float *own = table_get(&f->weights, weight, strlen(weight));
    if (own) *amax = *own;
    if (known) *known = own != NULL;
    size_t n;
    char *key = set_key(weight, &n);
    if (n && !key) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", weight);
    const float *set = key ? table_get(&f->sets, key, n) : NULL;
    if (set && *set > *amax) *amax = *set;
    free(key);
    return MQ_OK;
}

/* n bytes at offset off of fd into buf. */
static mq_status read_at(int fd, const char *path, uint64_t off, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (unsigned char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return mq_set_error(MQ_STATUS_E_IO, "reading '%s': %s", path,
                                r < 0 ? strerror(errno) : "the file ends early");
        got += (size_t)r;
    }
    return MQ_OK;
}

/* The amax of n bytes of dtype dt at offset off of fd, read buf_len bytes at a time. */
static mq_status reduce_file(mq_backend *be, int fd, const char *path, uint64_t off, uint64_t n,
                             mq_dtype dt, unsigned char *buf, size_t buf_len, mq_ref_stats *st)
{
    size_t es = mq_dtype_size(dt), step = buf_len / es * es;
    while (n > 0) {
        size_t want = n < step ? (size_t)n : step;
        mq_status s = read_at(fd, path, off, buf, want);
        if (s == MQ_OK) s = be->ops->reduce(be, buf, dt, want / es, st);
        if (s != MQ_OK) return s;
        off += want;
        n -= want;
    }
    return MQ_OK;
}

/* Offset of tensor i's data in its file. */
static uint64_t data_off(const mq_model *m, size_t i)
{
    return (uint64_t)((const unsigned char *)m->tensors[i].data -
                      (const unsigned char *)mq_blob_data(m->blobs[i]));
}

/* An FP8 block source weight t with its scales sc (one file holds both): the
 * amax of its values as the quantizing pass dequantizes them (the back end's
 * dequantize_source into src_dt, then reduce), a piece of the codes at a
 * time. Scales not of the grid the pass wants are left to it (its error
 * names them): *st stays empty, recorded as nothing. */
static mq_status reduce_fp8_source(mq_backend *be, int fd, const char *path, const mq_model *m,
                                   size_t ti, const mq_tensor *sc, const size_t block[2],
                                   mq_dtype src_dt, unsigned char *buf, size_t buf_len,
                                   mq_ref_stats *st)
{
    const mq_tensor *t = &m->tensors[ti];
    if (t->rank != 2 || sc->rank != 2 || !t->shape[1] ||
        (sc->dtype != MQ_DTYPE_F32 && sc->dtype != MQ_DTYPE_BF16) ||
        (uint64_t)sc->shape[0] != ((uint64_t)t->shape[0] + block[0] - 1) / block[0] ||
        (uint64_t)sc->shape[1] != ((uint64_t)t->shape[1] + block[1] - 1) / block[1]) {
        st->nonfinite = 1;
        return MQ_OK;
    }
    mq_srcdesc d = mq_sd_fp8_block(block[0], block[1], sc->dtype, src_dt);
    size_t cols = (size_t)t->shape[1], ss = mq_dtype_size(sc->dtype);
    /* Codes and their values share the buffer, a byte and one value each;
     * the values start 64-byte aligned, as the back ends' vector loops like. */
    size_t step = buf_len / (1 + mq_dtype_size(src_dt)) / 64 * 64;
    unsigned char *vals = buf + step;
    void *scale = malloc(sc->nbytes ? (size_t)sc->nbytes : 1);
    if (!scale) return mq_set_error(MQ_STATUS_E_NOMEM, "tensor '%s': out of memory", sc->name);
    long k = mq_model_index(m, sc->name);
    mq_status s = read_at(fd, path, data_off(m, (size_t)k), scale, (size_t)sc->nbytes);
    for (uint64_t e0 = 0; s == MQ_OK && e0 < t->nbytes;) {
        size_t n = t->nbytes - e0 < step ? (size_t)(t->nbytes - e0) : step;
        uint64_t r0, r1;
        mq_srcdesc_scale_rows(d, e0, n, cols, &r0, &r1);
        if ((s = read_at(fd, path, data_off(m, ti) + e0, buf, n)) == MQ_OK &&
            (s = mq_be_dequantize_source(be, d, buf, e0, n, cols,
                                         (const unsigned char *)scale + r0 * sc->shape[1] * ss,
                                         vals)) == MQ_OK)
            s = be->ops->reduce(be, vals, src_dt, n, st);
        e0 += n;
    }
    free(scale);
    return s;
}

static mq_status scan_file(mq_fused *f, const char *path, mq_planner *pl, mq_backend *be,
                           const size_t src_block[2], mq_dtype src_dt, unsigned char *buf,
                           size_t buf_len)
{
    mq_model *m = NULL;
    int fd = -1;
    mq_status st = mq_model_open(path, &m);
    if (st == MQ_OK) st = mq_infile_open(path, MQ_STATUS_E_IO, &fd, NULL);
    for (size_t i = 0; st == MQ_OK && i < m->count; i++) {
        const mq_tensor *t = &m->tensors[i];
        /* An FP8 block source weight is planned as its dequantized values. */
        const mq_tensor *sc = src_block[0] ? mq_fp8_block_scale(m, t) : NULL;
        mq_dtype dt = sc ? src_dt : t->dtype;
        char reason[256];
        if (!t->nbytes || !mq_dtype_is_quantizable(dt)) continue;
        mq_action a = mq_planner_decide(pl, t->name, dt, t->rank, t->shape, reason, sizeof reason);
        if ((st = mq_planner_error(pl)) != MQ_OK || a != MQ_ACTION_QUANTIZE) continue;
        mq_ref_stats stats;
        mq_ref_stats_init(&stats);
        st = sc ? reduce_fp8_source(be, fd, path, m, i, sc, src_block, src_dt, buf, buf_len, &stats)
                : reduce_file(be, fd, path, data_off(m, i), t->nbytes, t->dtype, buf, buf_len,
                              &stats);
        if (st == MQ_OK && !stats.nonfinite) st = mq_fused_add(f, t->name, stats.amax);
    }
    if (st != MQ_OK) mq_error_prefix("%s", path);
    if (fd >= 0) close(fd);
    mq_model_free(m);
    return st;
}

mq_status mq_fused_scan(mq_fused *f, const char *const *paths, size_t n, mq_planner *pl,
                        mq_backend *be, uint64_t memory_limit, const size_t src_block[2],
                        mq_dtype src_dt)
{
    uint64_t limit = memory_limit ? memory_limit : (1ULL << 30);
    size_t buf_len = limit / 16 < (64u << 20) ? (size_t)(limit / 16) : (64u << 20);
    if (buf_len < 4096) buf_len = 4096;
    unsigned char *buf = malloc(buf_len);
    if (!buf) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory (%zu bytes)", buf_len);
    mq_status st = MQ_OK;
    for (size_t i = 0; i < n && st == MQ_OK; i++)
        st = scan_file(f, paths[i], pl, be, src_block, src_dt, buf, buf_len);
    free(buf);
    return st;
}
