/*
 * conf_mtls.c: mutual TLS, the client_* directives of a site block: whether and how strictly
 * a site asks for client certificates, which CAs and CRLs verify them, and which identities
 * may come in, for the whole site or under a path. The handshake and the checks at request
 * time are tls/clientauth.c; the directives must add up, checked once the whole file is read
 * (moat_conf__mtls_check_conf). Users' reference: docs/config.md, "Mutual TLS".
 */
#include "serve/conf_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* `client_auth off|optional|require`: ask for a client certificate (optional: verify it when
 * sent; require: refuse the handshake without a valid one). Default off. Needs client_ca.
 * See docs/config.md#client_auth-offoptionalrequire. */
static moat_rc h_client_auth(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             const struct moat_conf__spec *sp)
{
    static const char *const modes[] = {"off", "optional", "require"};
    const struct moat_cfg_word *v = &n->words[1];
    for (int i = 0; i < 3; i++) {
        if (strcmp(v->s, modes[i]) == 0) {
            L->site->client_auth = i;
            return MOAT_RC_OK;
        }
    }
    return moat_conf__fail_at_word(
        L, v, "client_auth takes off, optional or require, not \"%.64s\"", v->s);
}

/* `client_ca CA.pem...` and `client_crl CRL...` (both may repeat; the files add up): the CAs
 * that verify client certificates, and the CRLs checked against them. Default none.
 * See docs/config.md#client_ca-capem and docs/config.md#client_crl-crl. */
static moat_rc h_client_files(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                              const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    int crl = strcmp(sp->name, "client_crl") == 0;
    for (size_t i = 1; i < n->nwords; i++) {
        char *p = NULL;
        MOAT_TRY(moat_conf__take_path(L, &n->words[i], crl ? "CRL" : "client CA", &p));
        if (!moat_conf__push_str(crl ? &s->client_crl : &s->client_ca,
                                 crl ? &s->nclient_crl : &s->nclient_ca, p)) {
            free(p);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* `client_depth N`: the most intermediate CAs between a client certificate and its client_ca,
 * 1 to 16. Default 4 (0 is stored, and tls/clientauth.c applies the default).
 * See docs/config.md#client_depth-n. */
static moat_rc h_client_depth(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                              const struct moat_conf__spec *sp)
{
    uint64_t v;
    if (!moat_conf__parse_count(n->words[1].s, &v) || v < 1 || v > 16) {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "client_depth is a number between 1 and 16");
    }
    L->site->client_depth = (unsigned)v;
    return MOAT_RC_OK;
}

/* Patterns are checked for shape only (what they match is tls/clientauth.c): a kind prefix
 * must be a known one. */
static moat_rc take_patterns(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             size_t from, char ***arr, size_t *narr)
{
    static const char *const kinds[] = {"cn", "dns", "email", "uri", "ip", "subject"};
    for (size_t i = from; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        const char *colon = strchr(w->s, ':');
        if (w->len == 0) {
            return moat_conf__fail_at_word(L, w, "empty pattern");
        }
        if (colon != NULL && strstr(w->s, "://") != colon) {
            int known = 0;
            for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
                known |= (size_t)(colon - w->s) == strlen(kinds[k]) &&
                         strncasecmp(w->s, kinds[k], strlen(kinds[k])) == 0;
            }
            if (!known && strchr(w->s, '=') == NULL && strchr(w->s, '@') == NULL) {
                return moat_conf__fail_at_word(
                    L, w,
                    "pattern \"%.64s\" has an unknown kind before ':' (use cn:, "
                    "dns:, email:, uri:, ip: or subject:)",
                    w->s);
            }
        }
        char *dup = strdup(w->s);
        if (dup == NULL || !moat_conf__push_str(arr, narr, dup)) {
            free(dup);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* `client_allow PATTERN...` (may repeat): only client identities matching one of the patterns
 * (cn:, dns:, email:, uri:, ip:, subject:) may come in. Default: any verified certificate.
 * See docs/config.md#client_allow-pattern. */
static moat_rc h_client_allow(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                              const struct moat_conf__spec *sp)
{
    return take_patterns(L, n, 1, &L->site->client_allow, &L->site->nclient_allow);
}

/* `client_path /PREFIX [PATTERN...]` (may repeat): requests under PREFIX need a verified client
 * certificate (matching a pattern, when given). See docs/config.md#client_path-prefix-pattern. */
static moat_rc h_client_path(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *w = &n->words[1];
    /* The prefix is compared with normalised request paths: one that is not itself normal
     * could never match, and the path it was meant to protect would stay open. */
    if (!moat_conf__plain_prefix(w->s, w->len)) {
        return moat_conf__fail_at_word(
            L, w,
            "client_path takes a plain path prefix starting with \"/\" (no \".\" or \"..\" "
            "segments, no \"//\", no %%-escapes, no query), e.g. /admin");
    }
    struct moat_conf_client_path *a = realloc(s->client_paths, (s->nclient_paths + 1) * sizeof(*a));
    if (a == NULL) {
        return moat_conf__nomem(L);
    }
    s->client_paths = a;
    struct moat_conf_client_path *cp = &a[s->nclient_paths];
    *cp = (struct moat_conf_client_path){0};
    /* Stored without a trailing slash so "/admin" and "/admin/" mean the same prefix. */
    size_t len = w->len;
    while (len > 1 && w->s[len - 1] == '/') {
        len--;
    }
    cp->prefix = strndup(w->s, len);
    if (cp->prefix == NULL) {
        return moat_conf__nomem(L);
    }
    s->nclient_paths++;
    return take_patterns(L, n, 2, &cp->allow, &cp->nallow);
}

const struct moat_conf__spec moat_conf__mtls_specs[] = {
    MOAT_CONF__CUSTOM("client_auth", MOAT_CONF__SITE, 1, 1, 0, h_client_auth,
                      "client_auth off|optional|require"),
    MOAT_CONF__CUSTOM("client_ca", MOAT_CONF__SITE, 1, -1, 1, h_client_files,
                      "client_ca CA.pem..."),
    MOAT_CONF__CUSTOM("client_crl", MOAT_CONF__SITE, 1, -1, 1, h_client_files,
                      "client_crl CRL.pem..."),
    MOAT_CONF__CUSTOM("client_depth", MOAT_CONF__SITE, 1, 1, 0, h_client_depth, "client_depth N"),
    MOAT_CONF__CUSTOM("client_allow", MOAT_CONF__SITE, 1, -1, 1, h_client_allow,
                      "client_allow PATTERN..."),
    MOAT_CONF__CUSTOM("client_path", MOAT_CONF__SITE, 1, -1, 1, h_client_path,
                      "client_path /PREFIX [PATTERN...]"),
};

const size_t moat_conf__mtls_nspecs =
    sizeof(moat_conf__mtls_specs) / sizeof(moat_conf__mtls_specs[0]);

/* A site's client-auth directives must add up: asking for certificates without a CA to verify
 * them refuses everyone, and client_* settings with client_auth off would silently do nothing.
 * Reported at the site's position, after the whole file was read. */
moat_rc moat_conf__mtls_check_conf(struct moat_conf__loader *L)
{
    for (size_t i = 0; i < L->c->nsites; i++) {
        const struct moat_conf_site *s = &L->c->sites[i];
        struct moat_conf__pos p = L->site_pos[i];
        if (s->client_auth != 0 && s->nclient_ca == 0) {
            return moat_cfg_fail(L->err, L->doc, p.line, p.col,
                                 "site \"%s\" asks for client certificates but names no CA for "
                                 "them (add \"client_ca CA.pem\")",
                                 s->names[0]);
        }
        if (s->client_auth == 0 && (s->nclient_ca || s->nclient_crl || s->nclient_allow ||
                                    s->nclient_paths || s->client_depth)) {
            return moat_cfg_fail(L->err, L->doc, p.line, p.col,
                                 "site \"%s\" has client_* settings but client_auth is off (add "
                                 "\"client_auth optional\" or \"client_auth require\")",
                                 s->names[0]);
        }
    }
    return MOAT_RC_OK;
}
