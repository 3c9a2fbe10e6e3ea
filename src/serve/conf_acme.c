/*
 * conf_acme.c: the `acme { ... }` block (the CA, the account, how certificates are made) and a
 * site's `tls acme`. Documented in docs/config.md ("acme { ... }" and "tls acme").
 */
#include "serve/conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const CHALLENGES[] = {"http-01", "tls-alpn-01", "dns-01"};

void moat_conf__acme_clear(struct moat_conf_acme *a)
{
    moat_conf__free_strs(a->cas, a->ncas);
    free(a->ca_bundle);
    moat_conf__free_strs(a->emails, a->nemails);
    free(a->eab_kid);
    free(a->eab_hmac);
    moat_conf__free_strs(a->challenges, a->nchallenges);
    free(a->preferred_chain);
    free(a->profile);
    free(a->dns_server);
    free(a->dns_zone);
    free(a->dns_key_name);
    free(a->dns_key_alg);
    if (a->dns_key_secret != NULL) {
        memset(a->dns_key_secret, 0, strlen(a->dns_key_secret));
    }
    free(a->dns_key_secret);
    free(a->dns_hook);
    free(a->resolver);
    moat_conf__free_strs(a->dns_check, a->ndns_check);
    memset(a, 0, sizeof(*a));
}

static moat_rc take_word(struct moat_conf__loader *L, const struct moat_cfg_word *w, char **out)
{
    char *s = strdup(w->s);
    if (s == NULL) {
        return moat_conf__nomem(L);
    }
    free(*out);
    *out = s;
    return MOAT_RC_OK;
}

/* `acme { ... }`: at most once; its settings below. */
static moat_rc h_acme(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    moat_conf__where_of(L, n, L->c->acme.where);
    return moat_conf__walk_block(L, n, MOAT_CONF__ACME);
}

/* `ca URL...`: the directory (production, staging or an https:// URL), then fallbacks. */
static moat_rc h_ca(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                    const struct moat_conf__spec *sp)
{
    struct moat_conf_acme *a = &L->c->acme;
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        if (strcmp(w->s, "production") != 0 && strcmp(w->s, "staging") != 0 &&
            strncasecmp(w->s, "https://", 8) != 0) {
            return moat_conf__fail_at_word(L, w,
                                           "bad ACME CA \"%.100s\" (use production, staging or "
                                           "the CA's https:// directory URL)",
                                           w->s);
        }
        char *s = strdup(w->s);
        if (s == NULL || !moat_conf__push_str(&a->cas, &a->ncas, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_ca_bundle(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    return moat_conf__take_path(L, &n->words[1], "ca_bundle", &L->c->acme.ca_bundle);
}

/* `email ADDR...`: the account's contacts. */
static moat_rc h_email(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_acme *a = &L->c->acme;
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        const char *at = strchr(w->s, '@');
        if (at == NULL || at == w->s || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
            strpbrk(w->s, " ,;<>\"") != NULL || strncasecmp(w->s, "mailto:", 7) == 0) {
            return moat_conf__fail_at_word(L, w,
                                           "bad e-mail address \"%.100s\" (write it plain: "
                                           "ops@example.com)",
                                           w->s);
        }
        char *s = strdup(w->s);
        if (s == NULL || !moat_conf__push_str(&a->emails, &a->nemails, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* `eab KID HMAC`: External Account Binding. */
static moat_rc h_eab(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *h = &n->words[2];
    for (size_t i = 0; i < h->len; i++) {
        char c = h->s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '=')) {
            return moat_conf__fail_at_word(L, h,
                                           "the EAB HMAC key is not base64url (copy it exactly as "
                                           "the CA shows it)");
        }
    }
    MOAT_TRY(take_word(L, &n->words[1], &L->c->acme.eab_kid));
    return take_word(L, h, &L->c->acme.eab_hmac);
}

/* `key_type ecdsa|rsa|both`. */
static moat_rc h_key_type(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    int *kt = &L->c->acme.key_types;
    if (strcmp(w->s, "ecdsa") == 0) {
        *kt = MOAT_CONF_ACME_ECDSA;
    } else if (strcmp(w->s, "rsa") == 0) {
        *kt = MOAT_CONF_ACME_RSA;
    } else if (strcmp(w->s, "both") == 0) {
        *kt = MOAT_CONF_ACME_ECDSA | MOAT_CONF_ACME_RSA;
    } else {
        return moat_conf__fail_at_word(L, w, "bad key_type \"%.64s\" (use ecdsa, rsa or both)",
                                       w->s);
    }
    return MOAT_RC_OK;
}

/* `challenge TYPE...`: which challenges, in order of preference. */
static moat_rc h_challenge(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    struct moat_conf_acme *a = &L->c->acme;
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        int known = 0;
        for (size_t k = 0; k < sizeof(CHALLENGES) / sizeof(CHALLENGES[0]); k++) {
            known |= strcmp(w->s, CHALLENGES[k]) == 0;
        }
        if (!known) {
            return moat_conf__fail_at_word(L, w,
                                           "unknown challenge \"%.64s\" (use http-01, "
                                           "tls-alpn-01 and/or dns-01)",
                                           w->s);
        }
        for (size_t k = 0; k < a->nchallenges; k++) {
            if (strcmp(a->challenges[k], w->s) == 0) {
                return moat_conf__fail_at_word(L, w, "challenge \"%s\" is given twice", w->s);
            }
        }
        char *s = strdup(w->s);
        if (s == NULL || !moat_conf__push_str(&a->challenges, &a->nchallenges, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_preferred_chain(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                 const struct moat_conf__spec *sp)
{
    return take_word(L, &n->words[1], &L->c->acme.preferred_chain);
}

static moat_rc h_profile(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    return take_word(L, &n->words[1], &L->c->acme.profile);
}

static moat_rc h_dns_server(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                            const struct moat_conf__spec *sp)
{
    return take_word(L, &n->words[1], &L->c->acme.dns_server);
}

static moat_rc h_dns_zone(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    return take_word(L, &n->words[1], &L->c->acme.dns_zone);
}

/* `dns_key NAME ALGORITHM SECRET`: the TSIG key, as the DNS server's config holds it. */
static moat_rc h_dns_key(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    static const char *const algs[] = {"hmac-sha256", "hmac-sha384", "hmac-sha512",
                                       "hmac-sha224", "hmac-sha1",   "hmac-md5"};
    const struct moat_cfg_word *alg = &n->words[2];
    int known = 0;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        known |= strcasecmp(alg->s, algs[i]) == 0;
    }
    if (!known) {
        return moat_conf__fail_at_word(L, alg,
                                       "unknown TSIG algorithm \"%.64s\" (use hmac-sha256, "
                                       "hmac-sha384 or hmac-sha512)",
                                       alg->s);
    }
    struct moat_conf_acme *a = &L->c->acme;
    MOAT_TRY(take_word(L, &n->words[1], &a->dns_key_name));
    MOAT_TRY(take_word(L, alg, &a->dns_key_alg));
    return take_word(L, &n->words[3], &a->dns_key_secret);
}

static moat_rc h_resolver(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    return take_word(L, &n->words[1], &L->c->acme.resolver);
}

/* `preflight on|off` (default on): a custom handler so that the default can be on. */
static moat_rc h_preflight(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (strcmp(w->s, "on") == 0) {
        L->c->acme.preflight = 1;
    } else if (strcmp(w->s, "off") == 0) {
        L->c->acme.preflight = -1;
    } else {
        return moat_conf__fail_at_word(
            L, w, "bad value \"%.64s\" for \"preflight\" (use on or off)", w->s);
    }
    return MOAT_RC_OK;
}

/* `retry FIRST [MAX]`: the pause after a failed attempt, doubling up to MAX (default 1m 6h). */
static moat_rc h_retry(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    uint64_t v[2] = {60000, 6 * 3600 * 1000ULL};
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        if (!moat_ok(moat_cfg_duration_ms(w->s, &v[i - 1])) || v[i - 1] < 1000 ||
            v[i - 1] > 7 * 86400 * 1000ULL) {
            return moat_conf__fail_at_word(L, w,
                                           "bad retry pause \"%.64s\" (a duration from 1s to 7d, "
                                           "e.g. 1m)",
                                           w->s);
        }
    }
    if (v[1] < v[0]) {
        return moat_conf__fail_at_word(L, &n->words[n->nwords - 1],
                                       "the retry cap is shorter than the first pause");
    }
    L->c->acme.retry_s = v[0] / 1000;
    L->c->acme.retry_max_s = v[1] / 1000;
    return MOAT_RC_OK;
}

static moat_rc h_dns_hook(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    return moat_conf__take_path(L, &n->words[1], "dns_hook", &L->c->acme.dns_hook);
}

static moat_rc h_dns_check(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    struct moat_conf_acme *a = &L->c->acme;
    for (size_t i = 1; i < n->nwords; i++) {
        char *s = strdup(n->words[i].s);
        if (s == NULL || !moat_conf__push_str(&a->dns_check, &a->ndns_check, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* A site's `tls acme`. */
static moat_rc h_tls(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (strcmp(w->s, "acme") != 0) {
        return moat_conf__fail_at_word(L, w,
                                       "unknown certificate source \"%.64s\" (tls acme gets the "
                                       "site's certificates from the ACME CA; for files use "
                                       "cert CERT.pem KEY.pem)",
                                       w->s);
    }
    L->site->acme = 1;
    return MOAT_RC_OK;
}

const struct moat_conf__spec moat_conf__acme_specs[] = {
    {.name = "acme",
     .ctx = MOAT_CONF__TOP,
     .min = 0,
     .max = 0,
     .multi = 0,
     .kind = MOAT_CONF__V_BLOCK,
     .inner = MOAT_CONF__ACME,
     .fn = h_acme,
     .usage = "acme { ca production; email ADDR; agree_tos on }"},
    MOAT_CONF__CUSTOM("ca", MOAT_CONF__ACME, 1, -1, 0, h_ca, "ca production|staging|URL..."),
    MOAT_CONF__CUSTOM("ca_bundle", MOAT_CONF__ACME, 1, 1, 0, h_ca_bundle, "ca_bundle FILE"),
    MOAT_CONF__CUSTOM("email", MOAT_CONF__ACME, 1, -1, 1, h_email, "email ADDR..."),
    MOAT_CONF__VALUE("agree_tos", MOAT_CONF__ACME, MOAT_CONF__V_BOOL, acme.agree_tos, 0, 1, "",
                     "agree_tos on|off"),
    MOAT_CONF__CUSTOM("eab", MOAT_CONF__ACME, 2, 2, 0, h_eab, "eab KEY_ID HMAC_KEY"),
    MOAT_CONF__CUSTOM("key_type", MOAT_CONF__ACME, 1, 1, 0, h_key_type, "key_type ecdsa|rsa|both"),
    MOAT_CONF__CUSTOM("challenge", MOAT_CONF__ACME, 1, -1, 0, h_challenge,
                      "challenge http-01|tls-alpn-01..."),
    MOAT_CONF__CUSTOM("preferred_chain", MOAT_CONF__ACME, 1, 1, 0, h_preferred_chain,
                      "preferred_chain ISSUER_NAME"),
    MOAT_CONF__CUSTOM("profile", MOAT_CONF__ACME, 1, 1, 0, h_profile, "profile NAME"),
    MOAT_CONF__CUSTOM("dns_server", MOAT_CONF__ACME, 1, 1, 0, h_dns_server,
                      "dns_server ADDR[:PORT]"),
    MOAT_CONF__CUSTOM("dns_zone", MOAT_CONF__ACME, 1, 1, 0, h_dns_zone, "dns_zone ZONE"),
    MOAT_CONF__CUSTOM("dns_key", MOAT_CONF__ACME, 3, 3, 0, h_dns_key,
                      "dns_key NAME ALGORITHM SECRET"),
    MOAT_CONF__CUSTOM("dns_hook", MOAT_CONF__ACME, 1, 1, 0, h_dns_hook, "dns_hook COMMAND"),
    MOAT_CONF__CUSTOM("dns_check", MOAT_CONF__ACME, 1, -1, 0, h_dns_check,
                      "dns_check ADDR[:PORT]..."),
    MOAT_CONF__CUSTOM("resolver", MOAT_CONF__ACME, 1, 1, 0, h_resolver, "resolver ADDR[:PORT]"),
    MOAT_CONF__CUSTOM("preflight", MOAT_CONF__ACME, 1, 1, 0, h_preflight, "preflight on|off"),
    MOAT_CONF__CUSTOM("retry", MOAT_CONF__ACME, 1, 2, 0, h_retry, "retry FIRST [MAX]"),
    MOAT_CONF__CUSTOM("tls", MOAT_CONF__SITE, 1, 1, 0, h_tls, "tls acme"),
};

const size_t moat_conf__acme_nspecs =
    sizeof(moat_conf__acme_specs) / sizeof(moat_conf__acme_specs[0]);

/* A site with `tls acme`: no cert files, and names a CA can prove. */
moat_rc moat_conf__acme_check_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                   struct moat_conf_site *s)
{
    if (!s->acme) {
        return MOAT_RC_OK;
    }
    if (s->ncerts > 0) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has both tls acme and cert: keep one (the "
                                       "certificate comes from the ACME CA or from files)",
                                       s->names[0]);
    }
    for (size_t i = 0; i < s->nnames; i++) {
        const char *nm = s->names[i];
        if (strcmp(nm, "*") == 0) {
            return moat_conf__fail_at_word(L, &n->words[0],
                                           "site \"*\" cannot have tls acme: a CA certifies "
                                           "names, so list them (site example.com { ... })");
        }
        if (strcmp(nm, "localhost") == 0 ||
            (strlen(nm) > 10 && strcmp(nm + strlen(nm) - 10, ".localhost") == 0)) {
            return moat_conf__fail_at_word(L, &n->words[0],
                                           "site \"%s\": no public CA certifies localhost (drop "
                                           "tls acme: moat's local CA covers it)",
                                           nm);
        }
    }
    return MOAT_RC_OK;
}

/* The ACME sites need a challenge that can reach this moat. */
moat_rc moat_conf__acme_check_conf(struct moat_conf__loader *L)
{
    struct moat_conf *c = L->c;
    size_t nacme = 0;
    for (size_t i = 0; i < c->nsites; i++) {
        nacme += c->sites[i].acme != 0;
    }
    struct moat_conf_acme *a = &c->acme;
    if (a->key_types == 0) {
        a->key_types = MOAT_CONF_ACME_ECDSA;
    }
    if (nacme == 0) {
        return MOAT_RC_OK;
    }
    int dns = a->dns_server != NULL || a->dns_hook != NULL;
    if (a->dns_server != NULL && a->dns_hook != NULL) {
        moat_err_where(L->err, "%s", a->where[0] ? a->where : L->doc->name);
        MOAT_FAIL(L->err, MOAT_E_CONFIG,
                  "dns_server and dns_hook both publish DNS-01 records: keep one");
    }
    int dns_listed = 0;
    for (size_t i = 0; i < a->nchallenges; i++) {
        dns_listed |= strcmp(a->challenges[i], "dns-01") == 0;
    }
    if (dns_listed && !dns) {
        moat_err_where(L->err, "%s", a->where[0] ? a->where : L->doc->name);
        MOAT_FAIL(L->err, MOAT_E_CONFIG,
                  "challenge dns-01 needs a way to publish the TXT record: dns_server (RFC 2136 "
                  "updates, with dns_key) or dns_hook");
    }
    for (size_t i = 0; i < c->nsites; i++) {
        const struct moat_conf_site *s = &c->sites[i];
        for (size_t k = 0; s->acme && k < s->nnames; k++) {
            if (s->names[k][0] == '*' && (!dns || (a->nchallenges > 0 && !dns_listed))) {
                moat_err_where(L->err, "%s", s->where);
                MOAT_FAIL(L->err, MOAT_E_CONFIG,
                          "site \"%s\": a wildcard can only be proved by dns-01 (set dns_server "
                          "and dns_key, or dns_hook, in acme { })",
                          s->names[k]);
            }
        }
    }
    int http_only = a->nchallenges == 1 && strcmp(a->challenges[0], "http-01") == 0;
    if (http_only && c->redirect_listen == NULL) {
        moat_err_where(L->err, "%s", a->where[0] ? a->where : L->doc->name);
        MOAT_FAIL(L->err, MOAT_E_CONFIG,
                  "challenge http-01 needs moat's plain HTTP listener on port 80 (add "
                  "redirect_http :80, or allow tls-alpn-01)");
    }
    if (!moat_ok(moat_conf_acme_defaults(c))) {
        return moat_conf__nomem(L);
    }
    return MOAT_RC_OK;
}

moat_rc moat_conf_acme_defaults(struct moat_conf *c)
{
    struct moat_conf_acme *a = &c->acme;
    if (a->key_types == 0) {
        a->key_types = MOAT_CONF_ACME_ECDSA;
    }
    for (size_t i = 0; i < c->nsites; i++) {
        c->sites[i].acme_kinds = c->sites[i].acme ? (unsigned)a->key_types : 0;
    }
    if (a->ncas == 0) {
        char *p = strdup("production");
        if (p == NULL || !moat_conf__push_str(&a->cas, &a->ncas, p)) {
            free(p);
            return moat_rc_of(MOAT_E_NOMEM);
        }
    }
    if (a->nchallenges == 0) {
        /* What can work: HTTP-01 when port 80 is moat's, TLS-ALPN-01 always (port 443),
         * DNS-01 when there is a way to publish records (last: the slowest, and the only one
         * for wildcards). */
        const char *d[3];
        size_t nd = 0;
        if (c->redirect_listen != NULL) {
            d[nd++] = "http-01";
        }
        d[nd++] = "tls-alpn-01";
        if (a->dns_server != NULL || a->dns_hook != NULL) {
            d[nd++] = "dns-01";
        }
        for (size_t i = 0; i < nd; i++) {
            char *p = strdup(d[i]);
            if (p == NULL || !moat_conf__push_str(&a->challenges, &a->nchallenges, p)) {
                free(p);
                return moat_rc_of(MOAT_E_NOMEM);
            }
        }
    }
    return MOAT_RC_OK;
}
