/*
 * conf_headers.c: the header directive, a site's response header rules. What a name or a
 * value may be is serve/headers.c's (moat_hdr_name_ok, moat_hdr_value_ok), which also applies
 * the rules to each answer. Users' reference: docs/config.md, "header".
 */
#include "serve/conf_internal.h"

#include "serve/headers.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * `header [/PREFIX] set|add NAME VALUE...` or `header [/PREFIX] remove NAME` (may repeat; the
 * rules apply in file order): response header fields for the whole site or the paths under
 * /PREFIX. set replaces what the handler or the origin produced, add adds one more field,
 * remove drops every field of that name. A value may be several words, joined by one space.
 * Default: no rules (the server's own defaults, such as nosniff, are serve/headers.c's).
 * See docs/config.md#header-prefix-setaddremove-name-value.
 */
static moat_rc h_header(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    size_t at = 1;
    const struct moat_cfg_word *pw = NULL;
    if (n->words[1].s[0] == '/') {
        pw = &n->words[1];
        if (!moat_conf__plain_prefix(pw->s, pw->len)) {
            return moat_conf__fail_at_word(
                L, pw,
                "header takes a plain path prefix starting with \"/\" (no \".\" "
                "or \"..\" segments, no \"//\", no %%-escapes, no query), e.g. "
                "/static");
        }
        at = 2;
    }
    if (n->nwords < at + 2) { /* at least an operation and a name */
        return moat_conf__fail_at_word(L, &n->words[n->nwords - 1], "usage: %s", sp->usage);
    }
    const struct moat_cfg_word *ow = &n->words[at], *nw = &n->words[at + 1];
    int op;
    if (strcasecmp(ow->s, "set") == 0) {
        op = MOAT_HDR_SET;
    } else if (strcasecmp(ow->s, "add") == 0) {
        op = MOAT_HDR_ADD;
    } else if (strcasecmp(ow->s, "remove") == 0) {
        op = MOAT_HDR_REMOVE;
    } else {
        return moat_conf__fail_at_word(L, ow, "\"%.32s\" is not set, add or remove (usage: %s)",
                                       ow->s, sp->usage);
    }
    /* The value may be quoted or written as several words (joined by one space). */
    char value[4200];
    size_t vlen = 0;
    for (size_t i = at + 2; i < n->nwords; i++) {
        size_t wl = n->words[i].len;
        if (vlen + wl + 2 > sizeof(value)) {
            return moat_conf__fail_at_word(L, &n->words[i], "the value of %s is longer than 4 KiB",
                                           nw->s);
        }
        if (vlen > 0) {
            value[vlen++] = ' ';
        }
        memcpy(value + vlen, n->words[i].s, wl);
        vlen += wl;
    }
    value[vlen] = '\0';
    int has_value = at + 2 < n->nwords;
    int request = strcmp(sp->name, "request_header") == 0;
    char why[300];
    if (!moat_hdr_name_ok(nw->s, why, sizeof(why))) {
        return moat_conf__fail_at_word(L, nw, "%s", why);
    }
    static const char *const moat_sets[] = {
        "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "expect"};
    for (size_t i = 0; request && i < sizeof(moat_sets) / sizeof(moat_sets[0]); i++) {
        if (strcasecmp(nw->s, moat_sets[i]) == 0) {
            return moat_conf__fail_at_word(L, nw,
                                           "request_header may not touch %s: moat sets it "
                                           "(Host: proxy_host; forwarded fields: "
                                           "trusted_proxies)",
                                           nw->s);
        }
    }
    if (!moat_hdr_value_ok((enum moat_hdr_op)op, nw->s, has_value ? value : NULL, why,
                           sizeof(why))) {
        return moat_conf__fail_at_word(L, has_value ? &n->words[at + 2] : nw, "%s", why);
    }
    struct moat_conf_header *a = realloc(s->headers, (s->nheaders + 1) * sizeof(*a));
    if (a == NULL) {
        return moat_conf__nomem(L);
    }
    s->headers = a;
    struct moat_conf_header *h = &a[s->nheaders];
    *h = (struct moat_conf_header){.op = op, .request = request};
    s->nheaders++;
    if (pw != NULL) {
        size_t len = pw->len;
        while (len > 1 && pw->s[len - 1] == '/') {
            len--; /* "/static/" and "/static" mean the same prefix */
        }
        h->prefix = strndup(pw->s, len);
    }
    h->name = strdup(nw->s);
    h->value = has_value ? strdup(value) : NULL;
    if (h->name == NULL || (pw != NULL && h->prefix == NULL) || (has_value && h->value == NULL)) {
        return moat_conf__nomem(L);
    }
    return MOAT_RC_OK;
}

const struct moat_conf__spec moat_conf__headers_specs[] = {
    MOAT_CONF__CUSTOM("header", MOAT_CONF__SITE, 2, -1, 1, h_header,
                      "header [/PREFIX] set|add NAME VALUE | header [/PREFIX] remove NAME"),
    MOAT_CONF__CUSTOM("request_header", MOAT_CONF__SITE, 2, -1, 1, h_header,
                      "request_header [/PREFIX] set|add NAME VALUE | request_header [/PREFIX] "
                      "remove NAME"),
};

const size_t moat_conf__headers_nspecs =
    sizeof(moat_conf__headers_specs) / sizeof(moat_conf__headers_specs[0]);
