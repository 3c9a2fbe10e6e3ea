/*
 * conf_encode.c: a site's compression directives (docs/encode.md):
 *   encode gzip|br|zstd... | off       the codings moat may answer with, best first
 *   encode_types TYPE...               media types worth compressing ("text/ *", without the space,
 * for a family); default: text, JSON, XML, JavaScript, SVG, wasm, fonts that are not compressed
 * already encode_min SIZE                    smaller answers are sent as they are; default 256
 *   encode_level gzip|br|zstd N        each codec's effort; defaults 5, 4, 3
 *   encode_precompressed on|off        serve file.br / file.zst / file.gz when present; on
 */
#include "serve/conf_internal.h"

#include "core/cfg.h"
#include "http/coding.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static moat_rc h_encode(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    s->nencode = 0;
    s->encode_set = 1;
    if (n->nwords == 2 && strcasecmp(n->words[1].s, "off") == 0) {
        return MOAT_RC_OK;
    }
    for (size_t i = 1; i < n->nwords; i++) {
        enum moat_coding c = moat_coding_by_name(n->words[i].s);
        if (c == MOAT_CODING_IDENTITY) {
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "encode \"%.32s\": moat compresses with gzip, br and "
                                           "zstd (e.g. encode br zstd gzip), or write encode off",
                                           n->words[i].s);
        }
        for (size_t k = 0; k < s->nencode; k++) {
            if (s->encode[k] == (unsigned char)c) {
                return moat_conf__fail_at_word(L, &n->words[i], "encode: %s is named twice",
                                               n->words[i].s);
            }
        }
        s->encode[s->nencode++] = (unsigned char)c;
    }
    return MOAT_RC_OK;
}

/* A media type as "type/subtype" or a family "type/" with a star, lower-cased in place. */
static int type_ok(char *t)
{
    char *slash = strchr(t, '/');
    if (slash == NULL || slash == t || slash[1] == '\0' || strchr(slash + 1, '/') != NULL) {
        return 0;
    }
    for (char *p = t; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (char)(*p + 32);
        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                     strchr("/.+-*_", *p))) {
            return 0;
        }
    }
    return strchr(t, '*') == NULL || strcmp(slash, "/*") == 0;
}

static moat_rc h_types(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    for (size_t i = 1; i < n->nwords; i++) {
        char *t = strdup(n->words[i].s);
        if (t == NULL) {
            return moat_conf__nomem(L);
        }
        if (!type_ok(t)) {
            free(t);
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "encode_types \"%.64s\": write media types such as "
                                           "text/html application/json, or text/* for a family",
                                           n->words[i].s);
        }
        if (!moat_conf__push_str(&s->encode_types, &s->nencode_types, t)) {
            free(t);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_min(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    uint64_t v;
    if (!moat_ok(moat_cfg_size(n->words[1].s, &v)) || v > MOAT_CONF__MIB * 1024) {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "encode_min \"%.32s\": write a size from 0 to 1g, e.g. "
                                       "256 or 1k",
                                       n->words[1].s);
    }
    L->site->encode_min = (int64_t)v;
    return MOAT_RC_OK;
}

static moat_rc h_level(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    static const int lo[MOAT_CODING_COUNT] = {0, 1, 0, 1}, hi[MOAT_CODING_COUNT] = {0, 9, 11, 19};
    enum moat_coding c = moat_coding_by_name(n->words[1].s);
    if (c == MOAT_CODING_IDENTITY) {
        return moat_conf__fail_at_word(L, &n->words[1], "usage: %s", sp->usage);
    }
    uint64_t v;
    if (!moat_conf__parse_count(n->words[2].s, &v) || v < (uint64_t)lo[c] || v > (uint64_t)hi[c]) {
        return moat_conf__fail_at_word(L, &n->words[2],
                                       "encode_level %s \"%.32s\": write a level from %d to %d",
                                       moat_coding_name(c), n->words[2].s, lo[c], hi[c]);
    }
    L->site->encode_level[c] = (int)v;
    return MOAT_RC_OK;
}

static moat_rc h_pre(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    if (!moat_ok(moat_cfg_bool(n->words[1].s, &L->site->encode_precompressed))) {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "bad value \"%.64s\" for \"encode_precompressed\" (use on "
                                       "or off)",
                                       n->words[1].s);
    }
    return MOAT_RC_OK;
}

const struct moat_conf__spec moat_conf__encode_specs[] = {
    MOAT_CONF__CUSTOM("encode", MOAT_CONF__SITE, 1, 3, 0, h_encode, "encode gzip|br|zstd...|off"),
    MOAT_CONF__CUSTOM("encode_types", MOAT_CONF__SITE, 1, -1, 1, h_types, "encode_types TYPE..."),
    MOAT_CONF__CUSTOM("encode_min", MOAT_CONF__SITE, 1, 1, 0, h_min, "encode_min SIZE"),
    MOAT_CONF__CUSTOM("encode_level", MOAT_CONF__SITE, 2, 2, 1, h_level,
                      "encode_level gzip|br|zstd N"),
    MOAT_CONF__CUSTOM("encode_precompressed", MOAT_CONF__SITE, 1, 1, 0, h_pre,
                      "encode_precompressed on|off"),
};

const size_t moat_conf__encode_nspecs =
    sizeof(moat_conf__encode_specs) / sizeof(moat_conf__encode_specs[0]);
