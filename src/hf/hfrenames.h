/* The names transformers gives a checkpoint's modules when it builds the
 * model: its checkpoint conversion mappings (regex renames of tensor names,
 * per model_type or model class), generated into hfrenames_table.c by
 * scripts/gen_renames.py from the pinned transformers. compressed-tensors
 * matches `ignore` against these built names. */
#ifndef MQ_HFRENAMES_H
#define MQ_HFRENAMES_H

#include "monoquant.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* One transform: transformers' compiled source regex (Python re syntax,
 * named groups g0, g1, ... one per source pattern) and its targets. A
 * renaming replaces the first occurrence of the matched text by the first
 * target ("\1" in it standing for the group that follows the matched
 * branch's own); renamings chain, then at most one converter applies, and a
 * converter with several targets builds one tensor per target. */
typedef struct {
    bool converter;
    const char *regex;
    int n_targets;
    const char *const *targets;
} mq_hf_rename_rule;

/* The transforms transformers keys by a model_type or a model class name. */
typedef struct {
    const char *name;
    const mq_hf_rename_rule *rules;
    int n_rules;
} mq_hf_rename_set;

/* A model_type's base model class and its base_model_prefix: the module
 * under which a task model ("ViTForImageClassification") holds it ("vit"). */
typedef struct {
    const char *model_type;
    const char *base_class;
    const char *prefix;
} mq_hf_base_model;

extern const mq_hf_rename_set mq_hf_rename_sets[];
extern const size_t mq_hf_rename_set_count;
extern const mq_hf_base_model mq_hf_base_models[];
extern const size_t mq_hf_base_model_count;

typedef struct mq_hf_renames mq_hf_renames;

/*
 * The transforms transformers applies when it loads a checkpoint whose
 * config.json is `config` (its "architectures"[0] and "model_type"): the
 * root class's or model_type's, then those of the base model it holds
 * (under its base_model_prefix), then the legacy ones. *out is set even
 * when nothing applies (every name then maps to itself).
 */
mq_status mq_hf_renames_new(json_t *config, mq_hf_renames **out);
void mq_hf_renames_free(mq_hf_renames *r);

/*
 * The names transformers builds for the checkpoint tensor `name` (one, or
 * one per target of a splitting converter), appended to `names` as JSON
 * strings. Always at least one; a name no transform touches is itself.
 */
mq_status mq_hf_renames_apply(const mq_hf_renames *r, const char *name, json_t *names);

#endif
