/* Applies transformers' checkpoint conversion mappings (hfrenames_table.c) to
 * tensor names, the way its rename_source_key does on load, so that
 * config.json's ignore can name the modules transformers builds. Only the
 * model's root class and the base model it holds are known from config.json;
 * sub-models of other types (a vision tower) keep their checkpoint names. */
#include "hfrenames.h"

#include "error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The table's regexes are transformers' own, short and simple; the limits
 * only guard against a name that makes one backtrack without end. */
#define RN_MATCH_LIMIT 1000000u
#define RN_DEPTH_LIMIT 10000u

typedef struct {
    const mq_hf_rename_rule *rule;
    pcre2_code *re;
    const char *prefix; /* base_model_prefix of a base model's transforms, else NULL */
} compiled_rule;

struct mq_hf_renames {
    compiled_rule *items;
    size_t count;
    pcre2_match_data *md; /* room for the groups of every rule */
    pcre2_match_context *mctx;
    uint32_t max_groups;
};

static const mq_hf_rename_set *find_set(const char *name)
{
    for (size_t i = 0; name && i < mq_hf_rename_set_count; i++)
        if (strcmp(mq_hf_rename_sets[i].name, name) == 0) return &mq_hf_rename_sets[i];
    return NULL;
}

static const mq_hf_base_model *find_base(const char *model_type)
{
    for (size_t i = 0; model_type && i < mq_hf_base_model_count; i++)
        if (strcmp(mq_hf_base_models[i].model_type, model_type) == 0) return &mq_hf_base_models[i];
    return NULL;
}

static mq_status add_set(mq_hf_renames *r, const mq_hf_rename_set *s, const char *prefix)
{
    if (!s) return MQ_OK;
    compiled_rule *grown = realloc(r->items, (r->count + (size_t)s->n_rules) * sizeof *grown);
    if (!grown) return mq_set_error(MQ_STATUS_E_NOMEM, "config.json: out of memory");
    r->items = grown;
    for (int i = 0; i < s->n_rules; i++) {
        int code;
        PCRE2_SIZE at;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)s->rules[i].regex, PCRE2_ZERO_TERMINATED, 0,
                                       &code, &at, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof msg);
            return mq_set_error(MQ_STATUS_E_CONFIG,
                                "module renames of '%s': regex '%s': %s at offset %zu", s->name,
                                s->rules[i].regex, (const char *)msg, (size_t)at);
        }
        uint32_t groups = 0;
        pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
        if (groups > r->max_groups) r->max_groups = groups;
        r->items[r->count++] = (compiled_rule){&s->rules[i], re, prefix};
    }
    return MQ_OK;
}

/*
 * transformers' get_model_conversion_mapping, for the two PreTrainedModel
 * modules config.json tells of: the root (its class's transforms, else its
 * model_type's, unscoped), then the base model it holds (its class's, or the
 * model_type's when the root took its class's), scoped under the base model
 * prefix; the legacy transforms last.
 */
mq_status mq_hf_renames_new(json_t *config, mq_hf_renames **out)
{
    mq_hf_renames *r = NULL;
    mq_status st = MQ_OK;

    *out = NULL;
    if (!(r = calloc(1, sizeof *r))) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
    r->mctx = pcre2_match_context_create(NULL);
    if (!r->mctx) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "config.json: out of memory");
        goto done;
    }
    pcre2_set_match_limit(r->mctx, RN_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mctx, RN_DEPTH_LIMIT);
    const char *arch =
        json_string_value(json_array_get(json_object_get(config, "architectures"), 0));
    const char *type = json_string_value(json_object_get(config, "model_type"));
    const mq_hf_rename_set *by_class = find_set(arch);
    const mq_hf_rename_set *root = by_class ? by_class : find_set(type);
    if ((st = add_set(r, root, NULL)) != MQ_OK) goto done;
    const mq_hf_base_model *base = find_base(type);
    if (base && (!arch || strcmp(base->base_class, arch) != 0)) {
        const mq_hf_rename_set *bs = find_set(base->base_class);
        if (!bs && by_class) bs = find_set(type);
        if ((st = add_set(r, bs, base->prefix)) != MQ_OK) goto done;
    }
    if ((st = add_set(r, find_set("legacy"), NULL)) != MQ_OK) goto done;
    if (!(r->md = pcre2_match_data_create(r->max_groups + 1, NULL)))
        st = mq_set_error(MQ_STATUS_E_NOMEM, "config.json: out of memory");
done:
    if (st == MQ_OK)
        *out = r;
    else
        mq_hf_renames_free(r);
    return st;
}

void mq_hf_renames_free(mq_hf_renames *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->count; i++)
        pcre2_code_free(r->items[i].re);
    free(r->items);
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mctx);
    free(r);
}

/* Text of `s` with every "\1" replaced by `group` (str.replace, as transformers does). */
static char *expand_target(const char *s, const char *group, size_t group_len)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (p[0] == '\\' && p[1] == '1') ? (p++, group_len) : 1;
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] == '1') {
            memcpy(o, group, group_len);
            o += group_len;
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/*
 * One transform on `key` with target `t`: *renamed is the new name, or NULL
 * when the regex does not match (scoped transforms match the key without
 * their prefix, when it starts with it, and put it back).
 */
static mq_status rename_one(const mq_hf_renames *r, const compiled_rule *c, int t, const char *key,
                            char **renamed)
{
    size_t skip = 0;
    *renamed = NULL;
    if (c->prefix && *c->prefix) {
        size_t n = strlen(c->prefix);
        if (strncmp(key, c->prefix, n) == 0 && key[n] == '.') skip = n + 1;
    }
    const char *sub = key + skip;
    int rc = pcre2_match(c->re, (PCRE2_SPTR)sub, strlen(sub), 0, 0, r->md, r->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) return MQ_OK;
    if (rc < 0)
        return mq_set_error(MQ_STATUS_E_CONFIG,
                            "tensor '%s': matching transformers' rename regex '%s' failed (%d)",
                            key, c->rule->regex, rc);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    /* rc is one more than the highest group set; pairs past it are not written. */
    uint32_t n_ov = (uint32_t)rc;
    /* The one branch (g0, g1, ...) that matched; "\1" is the group after it. */
    const char *group = "";
    size_t group_len = 0;
    for (int g = 0;; g++) {
        char gname[16];
        snprintf(gname, sizeof gname, "g%d", g);
        int num = pcre2_substring_number_from_name(c->re, (PCRE2_SPTR)gname);
        if (num < 0) break;
        if ((uint32_t)num >= n_ov || ov[2 * num] == PCRE2_UNSET) continue;
        uint32_t inner = (uint32_t)num + 1;
        if (inner < n_ov && ov[2 * inner] != PCRE2_UNSET) {
            group = sub + ov[2 * inner];
            group_len = ov[2 * inner + 1] - ov[2 * inner];
        }
        break;
    }
    char *repl = expand_target(c->rule->targets[t], group, group_len);
    char *matched = strndup(sub + ov[0], ov[1] - ov[0]);
    mq_status st = MQ_OK;
    if (!repl || !matched) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
        goto done;
    }
    /* str.replace(matched, repl, 1): the first occurrence of the matched text. */
    const char *at = strstr(sub, matched);
    size_t head = (size_t)(at - sub), mlen = strlen(matched), rlen = strlen(repl);
    size_t total = skip + head + rlen + strlen(at + mlen);
    char *out = malloc(total + 1);
    if (!out) {
        st = mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(out, key, skip + head);
    memcpy(out + skip + head, repl, rlen);
    strcpy(out + skip + head + rlen, at + mlen);
    *renamed = out;
done:
    free(matched);
    free(repl);
    return st;
}

static mq_status append(json_t *names, const char *s)
{
    if (json_array_append_new(names, json_string(s)) != 0)
        return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
    return MQ_OK;
}

/* transformers' rename_source_key on load: every renaming in turn, then the
 * first converter that matches. */
mq_status mq_hf_renames_apply(const mq_hf_renames *r, const char *name, json_t *names)
{
    char *cur = strdup(name), *next = NULL;
    mq_status st = MQ_OK;

    if (!cur) return mq_set_error(MQ_STATUS_E_NOMEM, "out of memory");
    for (size_t i = 0; r && i < r->count; i++) {
        if (r->items[i].rule->converter) continue;
        if ((st = rename_one(r, &r->items[i], 0, cur, &next)) != MQ_OK) goto done;
        if (next) {
            free(cur);
            cur = next;
            next = NULL;
        }
    }
    for (size_t i = 0; r && i < r->count; i++) {
        const compiled_rule *c = &r->items[i];
        if (!c->rule->converter) continue;
        if ((st = rename_one(r, c, 0, cur, &next)) != MQ_OK) goto done;
        if (!next) continue;
        for (int t = 0; t < c->rule->n_targets && st == MQ_OK; t++) {
            if (t > 0) {
                free(next);
                if ((st = rename_one(r, c, t, cur, &next)) != MQ_OK) goto done;
            }
            if (next) st = append(names, next);
        }
        goto done;
    }
    st = append(names, cur);
done:
    free(next);
    free(cur);
    return st;
}
