/* The planner: which tensors become int8 (Linear and Conv weights; in a model
 * directory the Linear layers the loaders build quantized), which are cast to
 * fp16, and which stay as they are, with a reason a user can act on. Also
 * owns pattern matching: shell globs, and "re:" regexes with Python's re
 * syntax and re.match anchoring (PCRE2, with bounded matching), as
 * compressed-tensors matches its targets and ignore lists. */
#include "plan.h"

#include "dtype.h"
#include "error.h"

#include <fnmatch.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on one regex match: a pattern that needs more (catastrophic
 * backtracking, as "(a+)+$" on a long name) is an error, not a hang. */
#define RE_MATCH_LIMIT 1000000u
#define RE_DEPTH_LIMIT 10000u

typedef struct {
    char *text; /* as the user wrote it, for reasons and messages */
    bool is_re;
    pcre2_code *re; /* compiled once; valid when is_re */
} pattern;

typedef struct {
    pattern *items;
    size_t count;
} pattern_set;

struct mq_planner {
    mq_scheme_kind kind;
    size_t group_size, block_size;
    pattern_set include;
    pattern_set exclude;
    mq_plan_hints hints;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    mq_status error; /* a pattern that hit the match limits */
};

/* Substrings that mark an embedding (GPT-2, BERT, Llama, T5's relative
 * position buckets); T5's and BART's shared token embedding is the module
 * "shared" (see is_embedding). */
static const char *const embedding_markers[] = {
    "embed", "wte", "wpe", "word_embeddings", "position_embeddings", "relative_attention_bias",
};

/* Suffixes of the parameters quantization adds beside a weight: never a
 * weight to quantize, whatever a pattern says. */
static const char *const param_suffixes[] = {
    "_scale", "_zero_point", "_packed", "_shape", "_g_idx",
};

/* GPT-2-family Conv1D modules: Linear layers stored [in, out]. */
static const char *const conv1d_modules[] = {"c_attn", "c_proj", "c_fc", "q_attn"};
/* MoE routers, which transformers and vLLM build unquantized (often not as
 * an nn.Linear, so a quantized one does not load), by the module's last
 * component: Mixtral's block_sparse_moe.gate, Qwen-MoE's and DeepSeek's
 * mlp.gate and shared_expert_gate, gpt-oss's mlp.router, Jamba's and
 * Llama 4's feed_forward.router. */
static const char *const router_modules[] = {"gate", "router", "shared_expert_gate"};
/* Routers that hold their Linear one level down, by the parent component:
 * DBRX's and JetMoE's router.layer, Switch's and NLLB-MoE's
 * router.classifier, Hunyuan's gate.wg. */
static const char *const router_parents[] = {"gate", "router"};

/* re.match: anchored at the start of the name, not at its end (a "$" in the
 * pattern does that). A match that exceeds the limits is recorded as the
 * planner's error and counts as no match. */
static bool pattern_matches(mq_planner *pl, const pattern *p, const char *name)
{
    if (!p->is_re) return fnmatch(p->text, name, 0) == 0;
    int rc =
        pcre2_match(p->re, (PCRE2_SPTR)name, strlen(name), 0, PCRE2_ANCHORED, pl->md, pl->mctx);
    if (rc >= 0) return true;
    if (rc != PCRE2_ERROR_NOMATCH && pl->error == MQ_OK)
        pl->error = mq_set_error(MQ_STATUS_E_CONFIG,
                                 "pattern '%s' on tensor '%s': the match took too many steps "
                                 "(nested repetition such as (a+)+?); simplify the pattern",
                                 p->text, name);
    return false;
}

/*
 * A pattern matches the tensor name or its module name (the name without the
 * last ".param"): compressed-tensors and llm-compressor ignore lists name
 * modules ("lm_head", "re:.*mlp.gate$"), so those work unchanged.
 */
static const pattern *set_match(mq_planner *pl, const pattern_set *s, const char *name,
                                const char *module)
{
    for (size_t i = 0; i < s->count; i++)
        if (pattern_matches(pl, &s->items[i], name) ||
            (module && pattern_matches(pl, &s->items[i], module)))
            return &s->items[i];
    return NULL;
}

static void set_free(pattern_set *s)
{
    for (size_t i = 0; i < s->count; i++) {
        if (s->items[i].is_re) pcre2_code_free(s->items[i].re);
        free(s->items[i].text);
    }
    free(s->items);
    s->items = NULL;
    s->count = 0;
}

/* Copies and compiles `n` patterns; on failure `s` holds what was built, for set_free. */
static mq_status set_build(pattern_set *s, const char *const *pats, size_t n)
{
    if (n == 0) return MQ_OK;
    if (!pats) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "planner: NULL pattern list");
    s->items = calloc(n, sizeof *s->items);
    if (!s->items) return mq_set_error(MQ_STATUS_E_NOMEM, "planner: out of memory");
    for (size_t i = 0; i < n; i++) {
        pattern *p = &s->items[s->count];
        mq_status st = mq_pattern_check(pats[i]);
        if (st != MQ_OK) return st;
        if (!(p->text = strdup(pats[i])))
            return mq_set_error(MQ_STATUS_E_NOMEM, "planner: out of memory");
        p->is_re = mq_pattern_is_regex(p->text);
        if (p->is_re && (st = mq_pattern_compile(p->text, &p->re)) != MQ_OK) {
            free(p->text);
            return st;
        }
        s->count++;
    }
    return MQ_OK;
}

mq_status mq_planner_new(const mq_settings *set, mq_planner **out)
{
    mq_planner *p = NULL;
    mq_status st;

    if (!out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "planner: NULL out");
    *out = NULL;
    if (!set) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "planner: NULL settings");
    if (!(p = calloc(1, sizeof *p)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "planner: out of memory");
    p->kind = set->scheme.kind;
    p->group_size = set->scheme.group;
    p->block_size = set->scheme.block;
    p->mctx = pcre2_match_context_create(NULL);
    p->md = pcre2_match_data_create(1, NULL);
    if (!p->mctx || !p->md) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "planner: out of memory");
        goto done;
    }
    pcre2_set_match_limit(p->mctx, RE_MATCH_LIMIT);
    pcre2_set_depth_limit(p->mctx, RE_DEPTH_LIMIT);
    if ((st = set_build(&p->include, set->include, set->n_include)) != MQ_OK) goto done;
    if ((st = set_build(&p->exclude, set->exclude, set->n_exclude)) != MQ_OK) goto done;
    *out = p;
    p = NULL;
done:
    mq_planner_free(p);
    return st;
}

void mq_planner_free(mq_planner *p)
{
    if (!p) return;
    set_free(&p->include);
    set_free(&p->exclude);
    pcre2_match_data_free(p->md);
    pcre2_match_context_free(p->mctx);
    free(p);
}

static mq_action skip(char *reason, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static mq_action skip(char *reason, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (reason && cap > 0) {
        va_start(ap, fmt);
        vsnprintf(reason, cap, fmt, ap); /* truncates and terminates */
        va_end(ap);
    }
    return MQ_ACTION_SKIP;
}

static void clear_reason(char *reason, size_t cap)
{
    if (reason && cap > 0) reason[0] = '\0';
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const char *dtype_label(mq_dtype d)
{
    const char *n = mq_dtype_name(d);
    return n ? n : "unknown";
}

static mq_action decide_fp16(mq_dtype dtype, char *reason, size_t cap)
{
    switch (dtype) {
    case MQ_DTYPE_F32:
    case MQ_DTYPE_F64:
    case MQ_DTYPE_BF16:
        clear_reason(reason, cap);
        return MQ_ACTION_CAST;
    case MQ_DTYPE_F16:
        return skip(reason, cap, "already F16");
    case MQ_DTYPE_F8_E4M3:
    case MQ_DTYPE_F8_E5M2:
        /* Widening an 8-bit float would grow the file, not shrink it. */
        return skip(reason, cap, "dtype %s is already smaller than F16", dtype_label(dtype));
    default:
        return skip(reason, cap, "dtype %s is not a float type", dtype_label(dtype));
    }
}

/* The last component of a module name ("model.layers.0.mlp.gate" -> "gate"). */
static const char *last_component(const char *module)
{
    const char *dot = module ? strrchr(module, '.') : NULL;
    return dot ? dot + 1 : module ? module : "";
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return true;
    return false;
}

#define IN_LIST(s, list) in_list((s), (list), sizeof(list) / sizeof *(list))

static bool is_embedding(const char *name, const char *module)
{
    for (size_t i = 0; i < sizeof embedding_markers / sizeof *embedding_markers; i++)
        if (strstr(name, embedding_markers[i])) return true;
    return module && strcmp(last_component(module), "shared") == 0;
}

static bool is_param(const char *name)
{
    for (size_t i = 0; i < sizeof param_suffixes / sizeof *param_suffixes; i++)
        if (ends_with(name, param_suffixes[i])) return true;
    return false;
}

/* The component before the last ("model.layers.0.ffn.router.layer" -> "router"). */
static bool parent_in(const char *module, const char *const *list, size_t n)
{
    const char *last = module ? strrchr(module, '.') : NULL;
    if (!last) return false;
    const char *start = last;
    while (start > module && start[-1] != '.')
        start--;
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == (size_t)(last - start) &&
            strncmp(start, list[i], (size_t)(last - start)) == 0)
            return true;
    return false;
}

static bool is_router(const char *module)
{
    return IN_LIST(last_component(module), router_modules) ||
           parent_in(module, router_parents, sizeof router_parents / sizeof *router_parents);
}

static bool is_conv1d(const mq_planner *p, const char *module)
{
    return p->hints.conv1d_family && IN_LIST(last_component(module), conv1d_modules);
}

/*
 * The int8 rules. Structural checks (empty, rank, dtype, and in a model
 * directory the module kinds the loaders never build as quantized Linear
 * layers) come before include because no pattern can make them loadable;
 * include only overrides the name-based defaults that follow it.
 */
static mq_action decide_int8(mq_planner *p, const char *name, const char *module, mq_dtype dtype,
                             int rank, const int64_t *shape, char *reason, size_t cap)
{
    if (shape && rank > 0 && rank <= MQ_MAX_RANK)
        for (int i = 0; i < rank; i++)
            if (shape[i] == 0) return skip(reason, cap, "empty tensor");
    if (rank <= 1) return skip(reason, cap, "rank %d (bias, norm or scalar)", rank);
    if (dtype == MQ_DTYPE_F64)
        return skip(reason, cap, "F64 is not supported for int8; use fp16 or convert");
    if (dtype == MQ_DTYPE_F8_E4M3 || dtype == MQ_DTYPE_F8_E5M2)
        return skip(reason, cap, "dtype %s is already an 8-bit float", dtype_label(dtype));
    if (!mq_dtype_is_quantizable(dtype))
        return skip(reason, cap, "dtype %s is not a float type to quantize", dtype_label(dtype));
    if (rank > 5) return skip(reason, cap, "rank %d is neither Linear (2) nor Conv (3-5)", rank);
    if (is_param(name)) return skip(reason, cap, "a quantization parameter, not a weight");
    if (p->hints.linear_only && rank > 2)
        return skip(reason, cap,
                    "Conv weight (the loaders quantize Linear layers only; kept in float)");
    if (p->hints.linear_only && is_conv1d(p, module))
        return skip(reason, cap,
                    "GPT-2 Conv1D weight (stored [in, out]; the loaders quantize no Conv1D; kept "
                    "in float and listed in ignore)");
    if (set_match(p, &p->include, name, module)) {
        clear_reason(reason, cap);
        return MQ_ACTION_QUANTIZE;
    }
    if (!ends_with(name, "weight"))
        return skip(reason, cap, "not a weight (name does not end in 'weight')");
    if (is_embedding(name, module))
        return skip(reason, cap, "embedding (kept in float by default)");
    if (strstr(name, "lm_head"))
        return skip(reason, cap, "lm_head (kept in float by default, as llm-compressor's ignore)");
    if (p->hints.linear_only && is_router(module))
        return skip(reason, cap,
                    "MoE router (transformers and vLLM build it unquantized; listed in ignore)");
    clear_reason(reason, cap);
    return MQ_ACTION_QUANTIZE;
}

/* Groups and blocks split a 2-D weight's input dimension (and, for blocks,
 * its output dimension) evenly, or the layer stays in float: compressed-tensors
 * refuses ragged groups, vLLM's WNA16 allocates floor(in / group) scales, and
 * partial FP8 blocks run neither in transformers nor in vLLM's merged layers. */
static mq_action check_fit(const mq_planner *p, int rank, const int64_t *shape, char *reason,
                           size_t cap)
{
    size_t g = p->group_size, b = p->block_size;
    if (!shape) return MQ_ACTION_QUANTIZE;
    if (p->kind == MQ_SCHEME_INT4 && rank != 2)
        return skip(reason, cap, "rank %d: int4 packs 2-D (Linear) weights; kept in float", rank);
    if (!g && !b) return MQ_ACTION_QUANTIZE;
    if (rank != 2)
        return skip(reason, cap, "rank %d: %s apply to 2-D (Linear) weights; kept in float", rank,
                    g ? "groups" : "blocks");
    if (g && (uint64_t)shape[1] % g != 0)
        return skip(reason, cap,
                    "in-features %lld not a multiple of the group size %zu (no loader runs "
                    "ragged groups); kept in float",
                    (long long)shape[1], g);
    if (b && ((uint64_t)shape[0] % b != 0 || (uint64_t)shape[1] % b != 0))
        return skip(reason, cap,
                    "shape %lldx%lld leaves partial %zux%zu blocks (they run neither in "
                    "transformers nor in vLLM); kept in float",
                    (long long)shape[0], (long long)shape[1], b, b);
    return MQ_ACTION_QUANTIZE;
}

mq_action mq_planner_decide(mq_planner *p, const char *name, mq_dtype dtype, int rank,
                            const int64_t *shape, char *reason, size_t cap)
{
    const pattern *ex;
    const char *dot;
    char *module = NULL;
    mq_action a;

    if (!p) return skip(reason, cap, "no planner");
    if (!name) name = "";
    /* Without memory for the module name, patterns still see the full name. */
    dot = strrchr(name, '.');
    if (dot) module = strndup(name, (size_t)(dot - name));
    /* Exclude wins over everything, in both modes. */
    if ((ex = set_match(p, &p->exclude, name, module)))
        a = skip(reason, cap, "excluded by pattern '%s'", ex->text);
    else if (p->kind == MQ_SCHEME_FP16)
        a = decide_fp16(dtype, reason, cap);
    else
        a = decide_int8(p, name, module, dtype, rank, shape, reason, cap);
    if (a == MQ_ACTION_QUANTIZE) a = check_fit(p, rank, shape, reason, cap);
    free(module);
    return a;
}

void mq_planner_set_hints(mq_planner *p, const mq_plan_hints *h)
{
    if (p && h) p->hints = *h;
}

mq_status mq_planner_error(const mq_planner *p)
{
    return p ? p->error : MQ_OK;
}

bool mq_planner_is_linear(const mq_planner *p, const char *name, mq_dtype dtype, int rank)
{
    (void)p;
    if (rank != 2 || !mq_dtype_is_float(dtype) || !ends_with(name, ".weight") || is_param(name))
        return false;
    const char *dot = strrchr(name, '.');
    char *module = strndup(name, (size_t)(dot - name));
    bool emb = !module || is_embedding(name, module);
    free(module);
    return !emb;
}
