/* mq-genmodel: writes a random Hugging Face-style model directory with the
 * tensor names and shapes of a real architecture (llama), at a chosen size,
 * dtype and shard count, streaming so any size fits in little memory. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char name[128];
    int rank;
    int64_t shape[2];
    int shard;
    uint64_t begin, end; /* offsets in the shard's data buffer */
    int fp8;             /* 1: F8_E4M3 codes, 2: their F32 weight_scale_inv, 0: --dtype */
} gen_tensor;

typedef struct {
    int64_t hidden, ffn, layers, vocab, heads, kv_heads;
    const char *dtype; /* F32, BF16, F16 */
    int shards;
    uint64_t seed;
    int tied; /* no lm_head */
    int fp8;  /* the layers' Linear weights as FP8 E4M3 in 128 x 128 blocks */
} gen_opts;

static const char usage[] =
    "usage: mq-genmodel OUTDIR [--hidden N] [--ffn N] [--layers N] [--vocab N] [--heads N]\n"
    "                   [--kv-heads N] [--dtype F32|BF16|F16] [--shards N] [--seed N]\n"
    "                   [--preset tiny|small|1b] [--fp8-blocks]\n"
    "Writes config.json, tokenizer files, and model.safetensors or N shards with\n"
    "model.safetensors.index.json, in the llama layout, with random weights.\n"
    "--fp8-blocks stores the layers' Linear weights as F8_E4M3 codes with F32\n"
    "weight_scale_inv per 128 x 128 block (DeepSeek-V3's layout, its\n"
    "quantization_config in config.json); the other tensors stay in --dtype.\n";

static size_t dtype_size(const char *d)
{
    return strcmp(d, "F32") == 0 ? 4 : 2;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

static uint16_t f32_to_f16(float f)
{
    /* Only values of modest magnitude occur here (|x| < 1), normal or subnormal. */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xFF, man = u & 0x7FFFFF;
    if (exp < 103) return (uint16_t)sign;
    if (exp < 113) { /* subnormal half */
        man |= 0x800000;
        int shift = 126 - (int)exp;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((exp - 112) << 10) | (man >> 13), rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static int add(gen_tensor *t, int *n, const char *name, int rank, int64_t d0, int64_t d1)
{
    gen_tensor *g = &t[(*n)++];
    snprintf(g->name, sizeof g->name, "%s", name);
    g->rank = rank;
    g->shape[0] = d0;
    g->shape[1] = d1;
    return 0;
}

static int build(const gen_opts *o, gen_tensor **out)
{
    int cap = (int)(o->layers * 16 + 8), n = 0;
    gen_tensor *t = calloc((size_t)cap, sizeof *t);
    char nm[128];
    int64_t kv = o->hidden / o->heads * o->kv_heads;
    add(t, &n, "model.embed_tokens.weight", 2, o->vocab, o->hidden);
    for (int64_t l = 0; l < o->layers; l++) {
#define L(suffix, r, a, b)                                                                         \
    snprintf(nm, sizeof nm, "model.layers.%lld." suffix, (long long)l);                            \
    add(t, &n, nm, r, a, b);                                                                       \
    if (o->fp8 && r == 2) {                                                                        \
        t[n - 1].fp8 = 1;                                                                          \
        snprintf(nm, sizeof nm, "model.layers.%lld." suffix "_scale_inv", (long long)l);           \
        add(t, &n, nm, 2, ((a) + 127) / 128, ((b) + 127) / 128);                                   \
        t[n - 1].fp8 = 2;                                                                          \
    }
        L("input_layernorm.weight", 1, o->hidden, 0);
        L("self_attn.q_proj.weight", 2, o->hidden, o->hidden);
        L("self_attn.k_proj.weight", 2, kv, o->hidden);
        L("self_attn.v_proj.weight", 2, kv, o->hidden);
        L("self_attn.o_proj.weight", 2, o->hidden, o->hidden);
        L("post_attention_layernorm.weight", 1, o->hidden, 0);
        L("mlp.gate_proj.weight", 2, o->ffn, o->hidden);
        L("mlp.up_proj.weight", 2, o->ffn, o->hidden);
        L("mlp.down_proj.weight", 2, o->hidden, o->ffn);
#undef L
    }
    add(t, &n, "model.norm.weight", 1, o->hidden, 0);
    if (!o->tied) add(t, &n, "lm_head.weight", 2, o->vocab, o->hidden);
    *out = t;
    return n;
}

static uint64_t nbytes(const gen_tensor *g, const gen_opts *o)
{
    uint64_t e = (uint64_t)g->shape[0] * (g->rank == 2 ? (uint64_t)g->shape[1] : 1);
    return e * (g->fp8 == 1 ? 1 : g->fp8 == 2 ? 4 : dtype_size(o->dtype));
}

/* Streams random values of dtype into f: weights ~ U(-a, a), norms near 1. */
static int write_values(FILE *f, const gen_tensor *g, const gen_opts *o, uint64_t *rng)
{
    static unsigned char buf[1 << 20];
    size_t es = g->fp8 == 1 ? 1 : g->fp8 == 2 ? 4 : dtype_size(o->dtype), per = sizeof buf / es;
    uint64_t left = nbytes(g, o) / es;
    int norm = g->rank == 1;
    float a = norm ? 0.05f : 0.04f;
    while (left) {
        size_t k = left < per ? (size_t)left : per;
        for (size_t i = 0; i < k; i++) {
            float u = (float)((double)(rng_next(rng) >> 40) / 16777216.0 * 2.0 - 1.0) * a;
            if (norm) u += 1.0f;
            if (g->fp8 == 1) { /* any e4m3fn code but NaN */
                buf[i] = (unsigned char)(rng_next(rng) >> 56);
                if ((buf[i] & 0x7f) == 0x7f) buf[i] ^= 1;
            } else if (g->fp8 == 2) { /* codes up to 448 times this stay within +-a */
                float sc = (a / 448.0f) * (1.0f + 0.25f * u / a);
                memcpy(buf + 4 * i, &sc, 4);
            } else if (es == 4)
                memcpy(buf + 4 * i, &u, 4);
            else {
                uint16_t h = strcmp(o->dtype, "BF16") == 0 ? f32_to_bf16(u) : f32_to_f16(u);
                memcpy(buf + 2 * i, &h, 2);
            }
        }
        if (fwrite(buf, es, k, f) != k) return -1;
        left -= k;
    }
    return 0;
}

static const char *dtype_of(const gen_tensor *g, const gen_opts *o)
{
    return g->fp8 == 1 ? "F8_E4M3" : g->fp8 == 2 ? "F32" : o->dtype;
}

static int write_shard(const char *dir, const char *file, gen_tensor *t, int n, int shard,
                       const gen_opts *o, uint64_t *rng)
{
    char path[4096], *hdr;
    size_t cap = 1 << 20, len = 0;
    uint64_t off = 0;
    hdr = malloc(cap);
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        if (t[i].shard != shard) continue;
        t[i].begin = off;
        t[i].end = off += nbytes(&t[i], o);
        if (t[i].rank == 2)
            len += (size_t)snprintf(
                hdr + len, cap - len,
                ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                t[i].name, dtype_of(&t[i], o), (long long)t[i].shape[0], (long long)t[i].shape[1],
                (unsigned long long)t[i].begin, (unsigned long long)t[i].end);
        else
            len += (size_t)snprintf(
                hdr + len, cap - len,
                ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                t[i].name, o->dtype, (long long)t[i].shape[0], (unsigned long long)t[i].begin,
                (unsigned long long)t[i].end);
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((8 + len) % 8)
        hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "mq-genmodel: %s: %s\n", path, strerror(errno));
        free(hdr);
        return -1;
    }
    uint64_t hl = len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hl >> (8 * i));
    int rc = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++)
        if (t[i].shard == shard) rc = write_values(f, &t[i], o, rng);
    if (fclose(f) != 0) rc = -1;
    if (rc) fprintf(stderr, "mq-genmodel: writing %s failed\n", path);
    free(hdr);
    return rc;
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static int write_config(const char *dir, const gen_opts *o)
{
    char text[2048];
    const char *td = strcmp(o->dtype, "F32") == 0    ? "float32"
                     : strcmp(o->dtype, "BF16") == 0 ? "bfloat16"
                                                     : "float16";
    snprintf(text, sizeof text,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
             "  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n"
             "  \"num_hidden_layers\": %lld,\n  \"num_attention_heads\": %lld,\n"
             "  \"num_key_value_heads\": %lld,\n  \"vocab_size\": %lld,\n"
             "  \"rms_norm_eps\": 1e-05,\n  \"tie_word_embeddings\": %s,\n"
             "  \"torch_dtype\": \"%s\"%s\n}\n",
             (long long)o->hidden, (long long)o->ffn, (long long)o->layers, (long long)o->heads,
             (long long)o->kv_heads, (long long)o->vocab, o->tied ? "true" : "false", td,
             o->fp8 ? ",\n  \"quantization_config\": {\"activation_scheme\": \"dynamic\", "
                      "\"fmt\": \"e4m3\", \"quant_method\": \"fp8\", "
                      "\"weight_block_size\": [128, 128]}"
                    : "");
    int rc = write_text(dir, "config.json", text);
    rc |= write_text(dir, "generation_config.json",
                     "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
    rc |= write_text(
        dir, "tokenizer_config.json",
        "{\n  \"model_max_length\": 2048,\n  \"tokenizer_class\": \"LlamaTokenizer\"\n}\n");
    return rc;
}

static int write_index(const char *dir, const gen_tensor *t, int n, const gen_opts *o)
{
    char path[4096];
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += nbytes(&t[i], o);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {\n",
            (unsigned long long)total);
    for (int i = 0; i < n; i++)
        fprintf(f, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", t[i].name, t[i].shard + 1,
                o->shards, i + 1 < n ? "," : "");
    fprintf(f, "  }\n}\n");
    return fclose(f);
}

static int preset(gen_opts *o, const char *name)
{
    if (!strcmp(name, "tiny")) {
        *o = (gen_opts){64, 176, 2, 256, 4, 4, o->dtype, o->shards, o->seed, 0, o->fp8};
    } else if (!strcmp(name, "small")) {
        *o = (gen_opts){256, 704, 4, 1000, 8, 4, o->dtype, o->shards, o->seed, 0, o->fp8};
    } else if (!strcmp(name, "1b")) { /* about 0.84 B parameters */
        *o = (gen_opts){2048, 5632, 16, 32000, 32, 32, o->dtype, o->shards, o->seed, 0, o->fp8};
    } else {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    gen_opts o = {64, 176, 2, 256, 4, 4, "F32", 1, 1, 0, 0};
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (a[0] != '-') {
            dir = a;
            continue;
        }
        if (!strcmp(a, "--fp8-blocks")) {
            o.fp8 = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "mq-genmodel: %s needs a value\n%s", a, usage);
            return 1;
        }
        i++;
        if (!strcmp(a, "--hidden"))
            o.hidden = atoll(v);
        else if (!strcmp(a, "--ffn"))
            o.ffn = atoll(v);
        else if (!strcmp(a, "--layers"))
            o.layers = atoll(v);
        else if (!strcmp(a, "--vocab"))
            o.vocab = atoll(v);
        else if (!strcmp(a, "--heads"))
            o.heads = atoll(v);
        else if (!strcmp(a, "--kv-heads"))
            o.kv_heads = atoll(v);
        else if (!strcmp(a, "--shards"))
            o.shards = atoi(v);
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dtype"))
            o.dtype = v;
        else if (!strcmp(a, "--preset")) {
            if (preset(&o, v)) {
                fprintf(stderr, "mq-genmodel: unknown preset '%s'\n", v);
                return 1;
            }
        } else {
            fprintf(stderr, "mq-genmodel: unknown option %s\n%s", a, usage);
            return 1;
        }
    }
    if (!dir || o.hidden <= 0 || o.ffn <= 0 || o.layers < 0 || o.vocab <= 0 || o.heads <= 0 ||
        o.kv_heads <= 0 || o.hidden % o.heads || o.shards < 1 ||
        (strcmp(o.dtype, "F32") && strcmp(o.dtype, "BF16") && strcmp(o.dtype, "F16"))) {
        fputs(usage, stderr);
        return 1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mq-genmodel: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    gen_tensor *t;
    int n = build(&o, &t);
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < n; i++)
        total += nbytes(&t[i], &o);
    if (o.shards > n) o.shards = n;
    for (int i = 0; i < n; i++) { /* fill shards in order, about equal bytes each */
        t[i].shard = (int)(acc * (uint64_t)o.shards / (total ? total : 1));
        if (t[i].shard >= o.shards) t[i].shard = o.shards - 1;
        if (t[i].fp8 == 2) t[i].shard = t[i - 1].shard; /* scales beside their weight */
        acc += nbytes(&t[i], &o);
    }
    uint64_t rng = o.seed * 0x9E3779B97F4A7C15ULL + 1;
    int rc = write_config(dir, &o);
    for (int s = 0; s < o.shards && rc == 0; s++) {
        char file[64];
        if (o.shards == 1)
            snprintf(file, sizeof file, "model.safetensors");
        else
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, o.shards);
        rc = write_shard(dir, file, t, n, s, &o, &rng);
    }
    if (rc == 0 && o.shards > 1) rc = write_index(dir, t, n, &o);
    free(t);
    if (rc) return 2;
    printf("%s: %d tensors, %.3f GB of %s in %d shard%s\n", dir, n, (double)total / 1e9, o.dtype,
           o.shards, o.shards == 1 ? "" : "s");
    return 0;
}
