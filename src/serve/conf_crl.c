/*
 * conf_crl.c: the crl_publish directive, a CA's CRL served by a site at the path its
 * certificates name. Serving it (HTTPS and the plain redirect_http listener) is serve/crlpub.c;
 * here only the path and the CA folder are checked. Users' reference: docs/config.md,
 * "crl_publish".
 */
#include "serve/conf_internal.h"

#include "core/path.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * `crl_publish /PATH CA_DIR|local [intermediate|root]` (may repeat, once per PATH): serve the
 * CRL of the CA in CA_DIR (or moat's local CA) at PATH, a normalised URL path naming a file.
 * Default intermediate (crl.pem); root serves root-crl.pem.
 * See docs/config.md#crl_publish-path-ca_dirlocal-intermediateroot.
 */
static moat_rc h_crl_publish(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *pw = &n->words[1], *dw = &n->words[2];
    char norm[1024];
    size_t nlen = 0;
    if (pw->s[0] != '/' ||
        !moat_ok(moat_path_normalize(pw->s, pw->len, norm, sizeof(norm), &nlen)) ||
        strpbrk(pw->s, "?#") != NULL) {
        return moat_conf__fail_at_word(
            L, pw,
            "crl_publish takes the URL path of the CRL, as in the CA's CRL URL "
            "(e.g. /crl/intermediate.crl): \"%.100s\" is not one",
            pw->s);
    }
    if (norm[nlen - 1] == '/') {
        return moat_conf__fail_at_word(
            L, pw,
            "crl_publish path \"%.100s\" names a folder: give the CRL a file "
            "name, e.g. /crl/intermediate.crl",
            pw->s);
    }
    for (size_t i = 0; i < s->ncrl_publish; i++) {
        if (strcmp(s->crl_publish[i].path, norm) == 0) {
            return moat_conf__fail_at_word(L, pw,
                                           "%s is already published in this site (%s): remove one",
                                           norm, s->crl_publish[i].where);
        }
    }
    int root = 0;
    if (n->nwords > 3) {
        const struct moat_cfg_word *kw = &n->words[3];
        if (strcmp(kw->s, "root") != 0 && strcmp(kw->s, "intermediate") != 0) {
            return moat_conf__fail_at_word(
                L, kw,
                "crl_publish publishes the \"intermediate\" CRL (crl.pem, the "
                "default) or the \"root\" one (root-crl.pem), not \"%.64s\"",
                kw->s);
        }
        root = strcmp(kw->s, "root") == 0;
    }
    if (dw->s[0] == '~') {
        return moat_conf__fail_at_word(
            L, dw,
            "moat does not expand ~ in paths: write the CA folder in full (e.g. "
            "/home/me/.local/share/moat/ca), or `local` for moat's local CA");
    }
    char *dir = NULL;
    if (strcmp(dw->s, "local") != 0) {
        MOAT_TRY(moat_conf__take_path(L, dw, "CA folder", &dir));
    }
    struct moat_conf_crl_publish *a = realloc(s->crl_publish, (s->ncrl_publish + 1) * sizeof(*a));
    char *path = strdup(norm);
    if (a != NULL) {
        s->crl_publish = a;
    }
    if (a == NULL || path == NULL) {
        free(dir);
        free(path);
        return moat_conf__nomem(L);
    }
    struct moat_conf_crl_publish *e = &a[s->ncrl_publish++];
    *e = (struct moat_conf_crl_publish){.path = path, .ca_dir = dir, .root = root};
    /* What goes wrong later (a missing CA, a bad CRL file) is about the folder word. */
    snprintf(e->where, sizeof(e->where), "%s:%d:%d", L->doc->name, dw->line, dw->col);
    return MOAT_RC_OK;
}

const struct moat_conf__spec moat_conf__crl_specs[] = {
    MOAT_CONF__CUSTOM("crl_publish", MOAT_CONF__SITE, 2, 3, 1, h_crl_publish,
                      "crl_publish /PATH CA_DIR|local [intermediate|root]"),
};

const size_t moat_conf__crl_nspecs = sizeof(moat_conf__crl_specs) / sizeof(moat_conf__crl_specs[0]);
