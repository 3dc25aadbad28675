/* How much of a model's Linear layers a run quantized: a preset that takes
 * none of them, or under half, ends like a success otherwise (a model whose
 * hidden size is no multiple of 128 keeps every layer in float with
 * FP8_BLOCK), so the report says so, why, and which setting would fit. */
#include "coverage.h"

#include "plan.h"
#include "scheme.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Whether a skipped 2-D layer is one the scheme's groups or blocks do not
 * divide (the planner's check_fit), rather than one kept for another reason. */
static bool is_ragged(const mq_scheme *sc, const mq_report_entry *e)
{
    if (e->rank != 2) return false;
    uint64_t out = (uint64_t)e->shape[0], in = (uint64_t)e->shape[1];
    if (sc->block) return out % sc->block != 0 || in % sc->block != 0;
    return sc->group && in % sc->group != 0;
}

void mq_coverage_of(const mq_report *r, const mq_scheme *sc, mq_coverage *c)
{
    memset(c, 0, sizeof *c);
    if (!r || !sc) return;
    uint64_t g = sc->group;
    for (size_t i = 0; i < mq_report_count(r); i++) {
        const mq_report_entry *e = mq_report_entry_at(r, i);
        if (!mq_planner_is_linear(NULL, e->name, e->dtype_in, e->rank)) continue;
        c->linear++;
        if (e->action == MQ_ACTION_QUANTIZE) {
            c->quantized++;
            continue;
        }
        if (e->action != MQ_ACTION_SKIP) continue;
        if (is_ragged(sc, e)) {
            if (!c->ragged++) c->example = e;
            g = gcd(g, (uint64_t)e->shape[1]);
        } else if (!c->other) {
            c->other = e;
        }
    }
    c->fit_group = (size_t)g;
}

/* The setting that quantizes the ragged layers: per-channel FP8 for blocks;
 * for groups the largest group size that divides every layer (int4 packs
 * groups of a multiple of 8), else one scale per channel. */
static void suggestion(const mq_scheme *sc, const mq_coverage *c, char *buf, size_t cap)
{
    if (sc->block) {
        snprintf(buf, cap, "--preset FP8_DYNAMIC (per-channel scales, any shape) fits them");
        return;
    }
    size_t g = c->fit_group;
    bool ok = g >= 8 && g < sc->group && (sc->kind != MQ_SCHEME_INT4 || g % 8 == 0);
    const char *preset = sc->preset;
    if (ok)
        snprintf(buf, cap, "%s%s--group-size %zu divides every layer", preset ? preset : "",
                 preset ? " with " : "", g);
    else
        snprintf(buf, cap, "%s%s--group-size channel (one scale per output channel) fits them",
                 preset ? preset : "", preset ? " with " : "");
}

char *mq_coverage_warning(const mq_report *r, const mq_scheme *sc)
{
    mq_coverage c;
    char hint[160], *text = NULL;
    size_t len = 0;
    if (!sc || !mq_scheme_quantizes(sc)) return NULL;
    mq_coverage_of(r, sc, &c);
    if (c.linear == 0 || c.quantized * 2 >= c.linear) return NULL;
    /* A memory stream: tensor names have no length limit. */
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    const char *preset = sc->preset;
    fprintf(f, "%s%s quantized %zu of %zu Linear layers", preset ? "preset " : "",
            preset ? preset : "the scheme", c.quantized, c.linear);
    if (c.ragged * 2 >= c.linear - c.quantized && c.example) {
        const mq_report_entry *e = c.example;
        suggestion(sc, &c, hint, sizeof hint);
        if (sc->block)
            fprintf(f,
                    ": %zu leave partial %zux%zu blocks and stay in float (e.g. %s, %lldx%lld); "
                    "%s",
                    c.ragged, sc->block, sc->block, e->name, (long long)e->shape[0],
                    (long long)e->shape[1], hint);
        else
            fprintf(f,
                    ": %zu have in-features that are not a multiple of the group size %zu and "
                    "stay in float (e.g. %s, in-features %lld); %s",
                    c.ragged, sc->group, e->name, (long long)e->shape[1], hint);
    } else if (c.other) {
        fprintf(f, "; the others stay in float (e.g. %s: %s)", c.other->name,
                c.other->reason ? c.other->reason : "kept");
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
