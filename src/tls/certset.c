/*
 * certset.c: building and releasing certificate sets (see certset.h).
 *
 * What a set says about itself (key type, dates, names) is read once here, so nothing later
 * (SNI, messages, renewal timers) parses the certificate again.
 */
#include "tls/certset.h"

#include "pki/names.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static moat_rc asn1_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return moat_rc_of(MOAT_E_CERT);
    }
    *out = timegm(&tm);
    return MOAT_RC_OK;
}

static void set_free(struct moat_tls_certset *s)
{
    X509_free(s->leaf);
    sk_X509_pop_free(s->chain, X509_free);
    /* EVP_PKEY_free wipes the key material OpenSSL holds. */
    EVP_PKEY_free(s->key);
    moat_names_free(s->names, s->nnames);
    free(s->label);
    free(s->key_label);
    free(s);
}

moat_rc moat_tls_certset_new(X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key, const char *label,
                             const char *key_label, time_t renew_at, struct moat_tls_certset **out,
                             struct moat_err *err)
{
    *out = NULL;
    struct moat_tls_certset *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    /* From here everything belongs to s, so one set_free releases it on every failure. */
    s->leaf = leaf;
    s->chain = chain != NULL ? chain : sk_X509_new_null();
    s->key = key;
    s->renew_at = renew_at;
    label = label != NULL ? label : "(certificate)";
    s->label = strdup(label);
    s->key_label = strdup(key_label != NULL ? key_label : label);
    moat_rc rc = MOAT_RC_OK;
    if (s->chain == NULL || s->label == NULL || s->key_label == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        goto out;
    }
    if (leaf == NULL || key == NULL) {
        rc = moat_err_set(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                          "a certificate set needs a certificate and a key");
        goto out;
    }
    s->key_type = EVP_PKEY_get_base_id(key);
    if (!moat_ok(asn1_time(X509_get0_notBefore(leaf), &s->not_before)) ||
        !moat_ok(asn1_time(X509_get0_notAfter(leaf), &s->not_after))) {
        ERR_clear_error();
        moat_err_where(err, "%s", label);
        rc = moat_err_set(err, MOAT_E_CERT, __FILE__, __LINE__,
                          "the validity dates of \"%s\" cannot be read", label);
        goto out;
    }
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    rc = moat_names_from_general(gens, &s->names, &s->nnames, NULL, err);
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    if (!moat_ok(rc)) {
        moat_err_where(err, "%s", label);
        goto out;
    }
    atomic_init(&s->_refs, 1);
out:
    if (!moat_ok(rc)) {
        set_free(s);
        return rc;
    }
    *out = s;
    return MOAT_RC_OK;
}

struct moat_tls_certset *moat_tls_certset_ref(struct moat_tls_certset *s)
{
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->_refs, 1, memory_order_relaxed);
    }
    return s;
}

void moat_tls_certset_unref(struct moat_tls_certset *s)
{
    /* acq_rel: the thread that frees must see every other thread's last use of the set. */
    if (s != NULL && atomic_fetch_sub_explicit(&s->_refs, 1, memory_order_acq_rel) == 1) {
        set_free(s);
    }
}

int moat_tls_certset_has_name(const struct moat_tls_certset *s, const char *name)
{
    for (size_t i = 0; s != NULL && name != NULL && i < s->nnames; i++) {
        if (strcasecmp(s->names[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}
