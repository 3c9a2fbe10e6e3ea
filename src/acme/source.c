/*
 * source.c: the ACME certificate source (see source.h).
 */
#include "acme/source.h"

#include "pki/ca.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct acme_source {
    struct moat_cert_source base; /* first */
    struct moat_store *st;
    enum moat_acme_kind kind;
    char *name;
};

static time_t acme_renew_at(const struct moat_cert_source *src, time_t nb, time_t na)
{
    (void)src;
    /* The manager renews; the server only swaps in what it installed. */
    (void)nb;
    (void)na;
    return 0;
}

static moat_rc acme_load(struct moat_cert_source *base, struct moat_tls_certset **out,
                         struct moat_err *err)
{
    struct acme_source *s = (struct acme_source *)base;
    *out = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    MOAT_TRY(moat_acme_installed(s->st, s->name, s->kind, &chain, &key, err));
    X509 *leaf = sk_X509_shift(chain);
    if (moat_ca_asn1_time(X509_get0_notAfter(leaf)) <= time(NULL)) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
        MOAT_FAIL(err, MOAT_E_NOTFOUND, "the ACME certificate of %s has expired", s->name);
    }
    char label[300];
    snprintf(label, sizeof(label), "ACME certificate of %s (%s)", s->name,
             moat_acme_kind_name(s->kind));
    return moat_tls_certset_new(leaf, chain, key, label, NULL, 0, out, err);
}

static void acme_free(struct moat_cert_source *base)
{
    struct acme_source *s = (struct acme_source *)base;
    free(s->name);
    free(s);
}

static const struct moat_cert_source_ops acme_ops = {
    .name = "ACME",
    .load = acme_load,
    .renew_at = acme_renew_at,
    .describe = acme_load, /* reads only */
    .free = acme_free,
};

moat_rc moat_acme_source_new(struct moat_store *st, const char *name, enum moat_acme_kind kind,
                             struct moat_cert_source **out, struct moat_err *err)
{
    *out = NULL;
    struct acme_source *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->name = strdup(name)) == NULL) {
        free(s);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    s->base.ops = &acme_ops;
    s->st = st;
    s->kind = kind;
    *out = &s->base;
    return MOAT_RC_OK;
}
