/* Hugging Face weight names to llama.cpp's, for the importance matrix: the
 * names llama.cpp's convert_hf_to_gguf.py gives the Linear weights of the
 * families below, read backwards. A layer's weight is
 * PREFIX "layers." N "." MODULE ".weight" on the Hugging Face side (PREFIX
 * "model." or, for Gemma 3's language model, "model.language_model.") and
 * "blk." N "." NAME ".weight" in llama.cpp.
 *
 * Fused weights: Phi-3 keeps q, k and v in one qkv_proj and gate and up in
 * one gate_up_proj; llama.cpp keeps them fused too (attn_qkv, and ffn_up for
 * gate_up), and since every row of a fused weight reads the same input, the
 * one importance vector of its entry weighs all of its rows.
 *
 * Experts: llama.cpp stacks a layer's experts into one 3-D weight
 * (ffn_gate_exps, ...) with one importance row per expert; checkpoints keep
 * one 2-D weight per expert ("mlp.experts.E.gate_proj" in Qwen2/3-MoE,
 * "block_sparse_moe.experts.E.w1" in Mixtral and Phi-3.5-MoE, w1 the gate,
 * w3 the up and w2 the down projection), which takes row E.
 *
 * BERT-family encoders (BertModel checkpoints such as all-MiniLM-L6-v2, and
 * BertFor* ones under "bert."): PREFIX "encoder.layer." N "." MODULE, with
 * their own module names, the same llama.cpp names (convert_hf_to_gguf.py
 * maps BERT's query/key/value to attn_q/k/v, attention.output.dense to
 * attn_output, intermediate.dense to ffn_up and output.dense to
 * ffn_down). */
#include "imatrix.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *hf;  /* the module under layers.N; "#" stands for the expert number */
    const char *cpp; /* llama.cpp's name under blk.N */
} name_rule;

static const name_rule rules[] = {
    /* attention: Llama, Mistral, Qwen2/3, Gemma and their MoE variants */
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.qkv_proj", "attn_qkv"}, /* Phi-3, fused */
    /* dense MLP */
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"mlp.gate_up_proj", "ffn_up"}, /* Phi-3, fused */
    /* routers */
    {"mlp.gate", "ffn_gate_inp"},              /* Qwen2/3-MoE */
    {"block_sparse_moe.gate", "ffn_gate_inp"}, /* Mixtral, Phi-3.5-MoE */
    /* experts */
    {"mlp.experts.#.gate_proj", "ffn_gate_exps"},
    {"mlp.experts.#.up_proj", "ffn_up_exps"},
    {"mlp.experts.#.down_proj", "ffn_down_exps"},
    {"block_sparse_moe.experts.#.w1", "ffn_gate_exps"},
    {"block_sparse_moe.experts.#.w3", "ffn_up_exps"},
    {"block_sparse_moe.experts.#.w2", "ffn_down_exps"},
    /* Qwen2-MoE's shared expert and its gate */
    {"mlp.shared_expert.gate_proj", "ffn_gate_shexp"},
    {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
    {"mlp.shared_expert.down_proj", "ffn_down_shexp"},
    {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
};

static const char *const prefixes[] = {"model.language_model.layers.", "model.layers."};

static const name_rule bert_rules[] = {
    {"attention.self.query", "attn_q"}, {"attention.self.key", "attn_k"},
    {"attention.self.value", "attn_v"}, {"attention.output.dense", "attn_output"},
    {"intermediate.dense", "ffn_up"},   {"output.dense", "ffn_down"},
};

static const char *const bert_prefixes[] = {"bert.encoder.layer.", "encoder.layer."};

/* A family of checkpoints: its layers' prefixes and modules. */
typedef struct {
    const char *const *prefixes;
    size_t np;
    const name_rule *rules;
    size_t nr;
} name_family;

static const name_family families[] = {
    {prefixes, sizeof prefixes / sizeof *prefixes, rules, sizeof rules / sizeof *rules},
    {bert_prefixes, sizeof bert_prefixes / sizeof *bert_prefixes, bert_rules,
     sizeof bert_rules / sizeof *bert_rules},
};

/* A decimal number without a leading zero (other than "0" itself) at *s,
 * moving *s past it; false when there is none or it does not fit. */
static bool number(const char **s, size_t *v)
{
    const char *p = *s;
    size_t n = 0;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (SIZE_MAX - 9) / 10) return false;
        n = n * 10 + (size_t)(*p - '0');
    }
    *v = n;
    *s = p;
    return true;
}

/* Whether `s` (len bytes) is the rule's module, with the expert number for "#". */
static bool match_module(const char *pat, const char *s, size_t len, size_t *expert)
{
    const char *hash = strchr(pat, '#');
    *expert = SIZE_MAX;
    if (!hash) return strlen(pat) == len && memcmp(pat, s, len) == 0;
    size_t head = (size_t)(hash - pat);
    const char *end = s + len, *p = s + head;
    if (len < head || memcmp(pat, s, head) != 0 || !number(&p, expert)) return false;
    return strlen(hash + 1) == (size_t)(end - p) && memcmp(hash + 1, p, (size_t)(end - p)) == 0;
}

bool mq_imatrix_hf_key(const char *hf, char *key, size_t cap, size_t *expert)
{
    static const char weight[] = ".weight";
    size_t n = strlen(hf), layer;
    *expert = SIZE_MAX;
    if (strcmp(hf, "lm_head.weight") == 0) return (size_t)snprintf(key, cap, "output.weight") < cap;
    if (strcmp(hf, "model.embed_tokens.weight") == 0)
        return (size_t)snprintf(key, cap, "token_embd.weight") < cap;
    if (n < sizeof weight || strcmp(hf + n - (sizeof weight - 1), weight) != 0) return false;
    for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
        const name_family *fam = &families[f];
        for (size_t i = 0; i < fam->np; i++) {
            size_t pl = strlen(fam->prefixes[i]);
            const char *p = hf + pl;
            if (strncmp(hf, fam->prefixes[i], pl) != 0 || !number(&p, &layer) || *p != '.')
                continue;
            p++;
            if (hf + n - (sizeof weight - 1) < p) return false;
            size_t mlen = (size_t)(hf + n - (sizeof weight - 1) - p);
            for (size_t r = 0; r < fam->nr; r++)
                if (match_module(fam->rules[r].hf, p, mlen, expert))
                    return (size_t)snprintf(key, cap, "blk.%zu.%s.weight", layer,
                                            fam->rules[r].cpp) < cap;
            return false;
        }
    }
    return false;
}

bool mq_imatrix_key_known(const char *key)
{
    static const char weight[] = ".weight";
    const char *p = key;
    size_t layer, n = strlen(key);
    if (strcmp(key, "output.weight") == 0 || strcmp(key, "token_embd.weight") == 0) return true;
    if (strncmp(p, "blk.", 4) != 0) return false;
    p += 4;
    if (!number(&p, &layer) || *p != '.') return false;
    p++;
    if (n < sizeof weight || key + n - (sizeof weight - 1) < p ||
        strcmp(key + n - (sizeof weight - 1), weight) != 0)
        return false;
    size_t mlen = (size_t)(key + n - (sizeof weight - 1) - p);
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++)
        if (strlen(rules[r].cpp) == mlen && memcmp(rules[r].cpp, p, mlen) == 0) return true;
    return false;
}
