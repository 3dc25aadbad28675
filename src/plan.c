/* The planner: which tensors become int8 (Linear and Conv weights), which are
 * cast to fp16, and which stay as they are, with a reason a user can act on.
 * Also owns pattern matching (shell globs and "re:" POSIX regexes). */
#include "plan.h"

#include "dtype.h"
#include "error.h"

#include <fnmatch.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RE_PREFIX "re:"
#define RE_PREFIX_LEN 3

typedef struct {
    char *text; /* as the user wrote it, for reasons and messages */
    bool is_re;
    regex_t re; /* compiled once; valid when is_re */
} pattern;

typedef struct {
    pattern *items;
    size_t count;
} pattern_set;

struct mq_planner {
    mq_qdtype dtype;
    pattern_set include;
    pattern_set exclude;
};

/* Substrings that mark a token or position embedding (GPT-2, BERT, Llama). */
static const char *const embedding_markers[] = {
    "embed", "wte", "wpe", "word_embeddings", "position_embeddings",
};

static bool is_regex(const char *p)
{
    return strncmp(p, RE_PREFIX, RE_PREFIX_LEN) == 0;
}

/* Compiles the regex of an "re:" pattern. Without REG_NOSUB: matching asks
 * for the span of the whole match to require it to cover the whole name. */
static mq_status compile_regex(const char *pat, regex_t *re)
{
    const char *body = pat + RE_PREFIX_LEN;
    char msg[256];
    int rc;

    if (*body == '\0') return mq_set_error(MQ_STATUS_E_CONFIG, "pattern '%s': empty regex", pat);
    rc = regcomp(re, body, REG_EXTENDED);
    if (rc != 0) {
        /* No regfree: after a failed regcomp there is nothing to free, and
         * some C libraries would free twice. */
        regerror(rc, re, msg, sizeof msg);
        return mq_set_error(MQ_STATUS_E_CONFIG, "pattern '%s': %s", pat, msg);
    }
    return MQ_OK;
}

mq_status mq_pattern_check(const char *pat)
{
    regex_t re;
    mq_status st;

    if (!pat) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "pattern: NULL");
    if (*pat == '\0') return mq_set_error(MQ_STATUS_E_CONFIG, "pattern '': empty pattern");
    if (!is_regex(pat)) return MQ_OK;
    if ((st = compile_regex(pat, &re)) != MQ_OK) return st;
    regfree(&re);
    return MQ_OK;
}

/* Unlike mq_pattern_check, leaves the last error alone: a query is not a failure. */
bool mq_pattern_valid(const char *pat)
{
    regex_t re;

    if (!pat || *pat == '\0') return false;
    if (!is_regex(pat)) return true;
    if (pat[RE_PREFIX_LEN] == '\0') return false;
    if (regcomp(&re, pat + RE_PREFIX_LEN, REG_EXTENDED | REG_NOSUB) != 0) return false;
    regfree(&re);
    return true;
}

/*
 * Whole-name match. The regex is not wrapped in "^(...)$": an unmatched ')'
 * is a literal in glibc's ERE, so "a)|b" would become "^(a)|b)$" and match
 * any name starting with "a". POSIX regexec reports the leftmost-longest
 * match, so a match covering [0, len) exists exactly when the reported one
 * starts at 0 and ends at len.
 */
static bool pattern_matches(const pattern *p, const char *name)
{
    regmatch_t m[1];

    if (!p->is_re) return fnmatch(p->text, name, 0) == 0;
    if (regexec(&p->re, name, 1, m, 0) != 0) return false;
    return m[0].rm_so == 0 && (size_t)m[0].rm_eo == strlen(name);
}

/*
 * A pattern matches the tensor name or its module name (the name without the
 * last ".param"): compressed-tensors and llm-compressor ignore lists name
 * modules ("lm_head", "re:.*mlp.gate$"), so those work unchanged.
 */
static const pattern *set_match(const pattern_set *s, const char *name, const char *module)
{
    for (size_t i = 0; i < s->count; i++)
        if (pattern_matches(&s->items[i], name) ||
            (module && pattern_matches(&s->items[i], module)))
            return &s->items[i];
    return NULL;
}

static void set_free(pattern_set *s)
{
    for (size_t i = 0; i < s->count; i++) {
        if (s->items[i].is_re) regfree(&s->items[i].re);
        free(s->items[i].text);
    }
    free(s->items);
    s->items = NULL;
    s->count = 0;
}

/* Copies and compiles `n` patterns; on failure `s` holds what was built, for set_free. */
static mq_status set_build(pattern_set *s, char *const *pats, size_t n)
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
        p->is_re = is_regex(p->text);
        if (p->is_re && (st = compile_regex(p->text, &p->re)) != MQ_OK) {
            free(p->text);
            return st;
        }
        s->count++;
    }
    return MQ_OK;
}

mq_status mq_planner_new(const mq_config *cfg, mq_planner **out)
{
    mq_planner *p = NULL;
    mq_status st;

    if (!out) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "planner: NULL out");
    *out = NULL;
    if (!cfg) return mq_set_error(MQ_STATUS_E_INVALID_ARG, "planner: NULL config");
    if (!(p = calloc(1, sizeof *p)))
        return mq_set_error(MQ_STATUS_E_NOMEM, "planner: out of memory");
    p->dtype = cfg->dtype;
    if ((st = set_build(&p->include, cfg->include, cfg->n_include)) != MQ_OK) goto done;
    if ((st = set_build(&p->exclude, cfg->exclude, cfg->n_exclude)) != MQ_OK) goto done;
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

/*
 * The int8 rules. Structural checks (empty, rank, dtype) come before include
 * because no pattern can make a bias or an I64 buffer quantizable; include
 * only overrides the name-based defaults that follow it.
 */
static mq_action decide_int8(const mq_planner *p, const char *name, const char *module,
                             mq_dtype dtype, int rank, const int64_t *shape, char *reason,
                             size_t cap)
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
    if (set_match(&p->include, name, module)) {
        clear_reason(reason, cap);
        return MQ_ACTION_QUANTIZE;
    }
    if (!ends_with(name, "weight"))
        return skip(reason, cap, "not a weight (name does not end in 'weight')");
    for (size_t i = 0; i < sizeof embedding_markers / sizeof *embedding_markers; i++)
        if (strstr(name, embedding_markers[i]))
            return skip(reason, cap, "embedding (kept in float by default)");
    if (strstr(name, "lm_head"))
        return skip(reason, cap, "lm_head (kept in float by default, as llm-compressor's ignore)");
    clear_reason(reason, cap);
    return MQ_ACTION_QUANTIZE;
}

mq_action mq_planner_decide(const mq_planner *p, const char *name, mq_dtype dtype, int rank,
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
    if (dot && p->include.count + p->exclude.count > 0)
        module = strndup(name, (size_t)(dot - name));
    /* Exclude wins over everything, in both modes. */
    if ((ex = set_match(&p->exclude, name, module)))
        a = skip(reason, cap, "excluded by pattern '%s'", ex->text);
    else if (p->dtype == MQ_FLOAT16)
        a = decide_fp16(dtype, reason, cap);
    else
        a = decide_int8(p, name, module, dtype, rank, shape, reason, cap);
    free(module);
    return a;
}
