/* Untrusted text made safe for a terminal: tensor names, metadata, file names
 * and error messages can hold escape sequences and newlines that would move
 * the cursor, recolour or rewrite what the user reads. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Results live in a small ring of buffers, so that one printf can escape
 * several strings; the CLI prints from one thread. */
#define RING 8

static char *ring[RING];
static size_t ring_cap[RING];
static unsigned ring_next;

/* Length of the valid UTF-8 sequence at p (2-4 bytes) and its code point,
 * or 0 when the bytes are not one (overlong, surrogate, past U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, unsigned *cp)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    *cp = c & (0xFF >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        unsigned b = p[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return 0;
        *cp = (*cp << 6) | (b & 0x3F);
    }
    return n;
}

/* Code points a terminal acts on rather than shows: C1 controls, and the
 * line separators and bidirectional overrides that reorder what follows. */
static bool invisible(unsigned cp)
{
    return cp <= 0x9F || cp == 0x200E || cp == 0x200F || (cp >= 0x2028 && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

const char *mq_cli_esc(const char *s)
{
    if (!s) return "(null)";
    size_t n = strlen(s), need = 4 * n + 1;
    unsigned k = ring_next++ % RING;
    if (ring_cap[k] < need) {
        char *b = realloc(ring[k], need);
        if (!b) return "(out of memory)";
        ring[k] = b;
        ring_cap[k] = need;
    }
    const unsigned char *p = (const unsigned char *)s;
    char *o = ring[k];
    while (*p) {
        unsigned cp = 0;
        size_t len = *p >= 0x80 ? utf8_seq(p, &cp) : 0;
        if (*p >= 0x20 && *p < 0x7F) {
            *o++ = (char)*p++;
        } else if (*p == '\n' || *p == '\t') {
            *o++ = '\\';
            *o++ = *p++ == '\n' ? 'n' : 't';
        } else if (len && !invisible(cp)) {
            memcpy(o, p, len);
            o += len;
            p += len;
        } else {
            /* A control, DEL, a byte outside UTF-8, or each byte of an
             * invisible code point. */
            for (size_t i = 0; i < (len ? len : 1); i++)
                o += sprintf(o, "\\x%02x", *p++);
        }
    }
    *o = '\0';
    return ring[k];
}

void mq_cli_esc_release(void)
{
    for (unsigned k = 0; k < RING; k++) {
        free(ring[k]);
        ring[k] = NULL;
        ring_cap[k] = 0;
    }
}
