/*
 * conf_site.c: the site block and what a site serves from files and with which certificate:
 * site, root, index, listing, hsts, cert, cert_ca. The other directives of a site block live
 * with their feature (conf_headers.c, conf_proxy.c, conf_mtls.c, conf_crl.c); the loader
 * (conf.c) walks the block against all of them and then runs the per-site checks, two of
 * which are here. Users' reference: docs/config.md, "site" and "Site directives".
 */
#include "serve/conf_internal.h"

#include "core/cfg.h"

#include <stdlib.h>
#include <string.h>

/*
 * `site NAME... { ... }` (may repeat, once per site; at least one is required): a site
 * answers the names listed (host names, "*.example.com", IP addresses, "*" for the default
 * site), each name in one site only, stored in lower case (IPv6 in RFC 5952 form). Its block
 * holds the site directives. See docs/config.md#site-name---.
 */
static moat_rc h_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    struct moat_conf *c = L->c;
    if (!moat_conf__push_pos(&L->site_pos, c->nsites, (struct moat_conf__pos){n->line, n->col})) {
        return moat_conf__nomem(L);
    }
    struct moat_conf_site *s = moat_conf__site_push(c);
    if (s == NULL) {
        return moat_conf__nomem(L);
    }
    moat_conf__where_of(L, n, s->where);
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        char name[256], why[128];
        const char *bad = moat_conf__site_name_norm(w->s, name, sizeof(name), why, sizeof(why));
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, w, "bad site name \"%.100s\": %s", w->s, bad);
        }
        long owner = moat_conf__site_owning(c, name);
        if (owner >= 0 && (size_t)owner == c->nsites - 1) {
            return moat_conf__fail_at_word(L, w, "site name \"%s\" is listed twice (remove one)",
                                           name);
        }
        if (owner >= 0) {
            return moat_conf__fail_at_word(
                L, w,
                "site name \"%s\" is already used by the site at line %d (each "
                "name belongs to one site)",
                name, L->site_pos[owner].line);
        }
        char *dup = strdup(name);
        if (dup == NULL || !moat_conf__push_str(&s->names, &s->nnames, dup)) {
            free(dup);
            return moat_conf__nomem(L);
        }
    }
    return moat_conf__site_walk(L, n, s);
}

/* `cert CERT.pem KEY.pem` (may repeat, e.g. ECDSA + RSA): the site's certificate chain and key.
 * Default: none, and moat's local CA issues one. See docs/config.md#cert-certpem-keypem. */
static moat_rc h_cert(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    struct moat_conf_cert *a = realloc(s->certs, (s->ncerts + 1) * sizeof(*a));
    if (a == NULL) {
        return moat_conf__nomem(L);
    }
    s->certs = a;
    struct moat_conf_cert *ct = &a[s->ncerts];
    *ct = (struct moat_conf_cert){0};
    moat_rc rc = moat_conf__take_path(L, &n->words[1], "certificate", &ct->cert_path);
    if (moat_ok(rc)) {
        rc = moat_conf__take_path(L, &n->words[2], "key", &ct->key_path);
    }
    if (!moat_ok(rc)) {
        free(ct->cert_path);
        free(ct->key_path);
        return rc;
    }
    moat_conf__where_of(L, n, ct->where);
    s->ncerts++;
    return MOAT_RC_OK;
}

/* `cert_ca CA.pem...` (may repeat): the CA(s) the site's certificates come from, so that the
 * start-up check can tell a missing intermediate or a wrong CA (refused) from a private root
 * (fine). Needs cert (moat_conf__cert_check_site). See docs/config.md#cert_ca-capem. */
static moat_rc h_cert_ca(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    for (size_t i = 1; i < n->nwords; i++) {
        char *p = NULL;
        MOAT_TRY(moat_conf__take_path(L, &n->words[i], "cert_ca", &p));
        if (!moat_conf__push_str(&s->cert_ca, &s->ncert_ca, p)) {
            free(p);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* `root FOLDER`: the folder the site serves files from; a site has root or proxy, not both
 * (moat_conf__content_check_site). No default. See docs/config.md#root-folder-required. */
static moat_rc h_root(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    return moat_conf__take_path(L, &n->words[1], "root", &L->site->root);
}

/* `index FILE`: the file served for a folder's URL, a plain file name. Default index.html.
 * See docs/config.md#index-file. */
static moat_rc h_index(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (w->len == 0 || strchr(w->s, '/') != NULL || strcmp(w->s, ".") == 0 ||
        strcmp(w->s, "..") == 0) {
        return moat_conf__fail_at_word(L, w,
                                       "bad index \"%.64s\" (write a file name without \"/\", e.g. "
                                       "index.html)",
                                       w->s);
    }
    char *s = strdup(w->s);
    if (s == NULL) {
        return moat_conf__nomem(L);
    }
    free(L->site->index);
    L->site->index = s;
    return MOAT_RC_OK;
}

/* `listing on|off`: a folder without its index gets a listing instead of 404. Default off.
 * See docs/config.md#listing-onoff. */
static moat_rc h_listing(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (!moat_ok(moat_cfg_bool(w->s, &L->site->listing))) {
        return moat_conf__fail_at_word(L, w, "bad value \"%.64s\" for \"listing\" (use on or off)",
                                       w->s);
    }
    return MOAT_RC_OK;
}

/* `hsts off|on|auto|MAX_AGE [include_subdomains] [preload]`: the Strict-Transport-Security
 * header. Default auto (on unless every name is local, see moat_conf_site_hsts), max-age 1y.
 * See docs/config.md#hsts-offonautomax_age-include_subdomains-preload. */
static moat_rc h_hsts(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *v = &n->words[1];
    if (strcmp(v->s, "off") == 0) {
        if (n->nwords > 2) {
            return moat_conf__fail_at_word(
                L, &n->words[2], "\"hsts off\" takes nothing after off (remove \"%.64s\")",
                n->words[2].s);
        }
        s->hsts = 0;
        return MOAT_RC_OK;
    }
    uint64_t ms;
    if (strcmp(v->s, "on") == 0) {
        s->hsts = 1;
    } else if (strcmp(v->s, "auto") == 0) {
        s->hsts = -1;
    } else if (moat_ok(moat_cfg_duration_ms(v->s, &ms))) {
        if (ms % 1000 != 0) {
            return moat_conf__fail_at_word(
                L, v, "hsts max-age must be whole seconds, got \"%.64s\"", v->s);
        }
        if (ms / 1000 > 10 * 365ULL * 86400) {
            return moat_conf__fail_at_word(L, v, "hsts max-age must be at most 10y, got \"%.64s\"",
                                           v->s);
        }
        s->hsts = 1;
        s->hsts_max_age_s = ms / 1000;
    } else {
        return moat_conf__fail_at_word(
            L, v,
            "bad value \"%.64s\" for \"hsts\" (use off, on, auto or a max-age "
            "such as 1y)",
            v->s);
    }
    const struct moat_cfg_word *preload = NULL;
    for (size_t i = 2; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        int *flag;
        if (strcmp(w->s, "include_subdomains") == 0) {
            flag = &s->hsts_subdomains;
        } else if (strcmp(w->s, "preload") == 0) {
            flag = &s->hsts_preload;
            preload = w;
        } else {
            return moat_conf__fail_at_word(
                L, w,
                "unknown hsts option \"%.64s\" (use include_subdomains and/or "
                "preload)",
                w->s);
        }
        if (*flag) {
            return moat_conf__fail_at_word(L, w, "hsts option \"%s\" is given twice (remove one)",
                                           w->s);
        }
        *flag = 1;
    }
    /* What hstspreload.org checks before it accepts a domain into the browsers' lists. */
    if (preload != NULL && (!s->hsts_subdomains || s->hsts_max_age_s < 365ULL * 86400)) {
        return moat_conf__fail_at_word(
            L, preload,
            "\"preload\" needs include_subdomains and a max-age of at least 1y "
            "(what hstspreload.org accepts)");
    }
    return MOAT_RC_OK;
}

const struct moat_conf__spec moat_conf__site_specs[] = {
    MOAT_CONF__BLOCK("site", 1, -1, MOAT_CONF__SITE, h_site, "site NAME... { root FOLDER }"),
    MOAT_CONF__CUSTOM("cert", MOAT_CONF__SITE, 2, 2, 1, h_cert, "cert CERT.pem KEY.pem"),
    MOAT_CONF__CUSTOM("cert_ca", MOAT_CONF__SITE, 1, -1, 1, h_cert_ca, "cert_ca CA.pem..."),
    MOAT_CONF__CUSTOM("root", MOAT_CONF__SITE, 1, 1, 0, h_root, "root FOLDER"),
    MOAT_CONF__CUSTOM("index", MOAT_CONF__SITE, 1, 1, 0, h_index, "index FILE"),
    MOAT_CONF__CUSTOM("listing", MOAT_CONF__SITE, 1, 1, 0, h_listing, "listing on|off"),
    MOAT_CONF__CUSTOM("hsts", MOAT_CONF__SITE, 1, 3, 0, h_hsts,
                      "hsts off|on|auto|MAX_AGE [include_subdomains] [preload]"),
};

const size_t moat_conf__site_nspecs =
    sizeof(moat_conf__site_specs) / sizeof(moat_conf__site_specs[0]);

/* Every path of a site has an answer: files (root), a whole-site proxy, or files with some
 * prefixes proxied; a whole-site proxy and root together would leave root unused. */
moat_rc moat_conf__content_check_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                      struct moat_conf_site *s)
{
    int whole = 0;
    for (size_t i = 0; i < s->nproxies; i++) {
        whole |= s->proxies[i].prefix == NULL;
    }
    if (s->root == NULL && !whole) {
        return moat_conf__fail_at_word(
            L, &n->words[0],
            s->nproxies == 0 ? "site \"%s\" has nothing to serve (add \"root FOLDER\" "
                               "or \"proxy http://HOST:PORT\" inside its block)"
                             : "site \"%s\" proxies some path prefixes only: add "
                               "\"root FOLDER\" for the other paths, or a proxy "
                               "rule without a prefix",
            s->names[0]);
    }
    if (s->root != NULL && whole) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has both root and a proxy for every path "
                                       "(keep one, or proxy only a prefix: proxy /api/ UPSTREAM)",
                                       s->names[0]);
    }
    return MOAT_RC_OK;
}

/* cert_ca describes the site's own cert files; without cert it would silently do nothing. */
moat_rc moat_conf__cert_check_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                   struct moat_conf_site *s)
{
    if (s->ncert_ca > 0 && s->ncerts == 0) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has cert_ca but no cert: cert_ca names the CA "
                                       "of the site's cert files (add \"cert CERT.pem KEY.pem\", "
                                       "or remove cert_ca; without cert, moat's local CA issues "
                                       "the certificate)",
                                       s->names[0]);
    }
    return MOAT_RC_OK;
}

/* At least one site: a server that answers nothing is a mistake, not a configuration. */
moat_rc moat_conf__site_check_conf(struct moat_conf__loader *L)
{
    if (L->c->nsites == 0) {
        moat_err_where(L->err, "%s", L->doc->name);
        MOAT_FAIL(L->err, MOAT_E_CONFIG,
                  "no site is defined (add one, e.g. site localhost { root ./www })");
    }
    return MOAT_RC_OK;
}
