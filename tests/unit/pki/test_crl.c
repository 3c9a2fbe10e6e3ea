/*
 * test_crl.c: the CA index (record, revoke, re-revoke refused, foreign certificates refused,
 * malformed lines named), CRLs (signed by the right CA, listing exactly the revoked serials
 * with reasons, increasing CRL numbers, root CRL for revoked intermediates), CRL loading and
 * the reason names.
 */
#include "pki/crl.h"

#include "pki/ca.h"
#include "pki_helpers.h"
#include "test.h"

static X509 *issue(struct moat_ca *ca, const char *name)
{
    EVP_PKEY *k = ph_key();
    const char *names[] = {name};
    struct moat_ca_leaf l = {.names = names, .n = 1, .days = 30, .pub = k};
    X509 *x = NULL;
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, NULL).kind, MOAT_OK);
    EVP_PKEY_free(k);
    return x;
}

static int crl_lists(X509_CRL *crl, X509 *x)
{
    X509_REVOKED *r = NULL;
    return X509_CRL_get0_by_cert(crl, &r, x) == 1;
}

static long crl_number(X509_CRL *crl)
{
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    long v = n ? ASN1_INTEGER_get(n) : -1;
    ASN1_INTEGER_free(n);
    return v;
}

TEST_CASE(reasons)
{
    enum moat_crl_reason r = MOAT_CRL_UNSPECIFIED;
    EXPECT_INT(moat_crl_reason_parse("key-compromise", &r, NULL).kind, MOAT_OK);
    EXPECT_INT(r, MOAT_CRL_KEY_COMPROMISE);
    EXPECT_INT(moat_crl_reason_parse("cessationOfOperation", &r, NULL).kind, MOAT_OK);
    EXPECT_INT(r, MOAT_CRL_CESSATION);
    struct moat_err err = {0};
    EXPECT_INT(moat_crl_reason_parse("certificateHold", &r, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "key-compromise"));
    EXPECT_STR(moat_crl_reason_name(MOAT_CRL_SUPERSEDED), "superseded");
    EXPECT_STR(moat_crl_reason_name((enum moat_crl_reason)99), "unspecified");
}

TEST_CASE(index_and_crl)
{
    struct moat_ca *ca = NULL;
    EXPECT_INT(moat_ca_init(ph_path("ca"), NULL, &ca, NULL).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    X509 *a = issue(ca, "a.test"), *b = issue(ca, "b.test");
    struct moat_err err = {0};
    EXPECT_INT(moat_crl_record(ca, a, &err).kind, MOAT_OK);
    EXPECT_INT(moat_crl_record(ca, b, &err).kind, MOAT_OK);
    EXPECT_INT(moat_crl_record(ca, b, &err).kind, MOAT_OK); /* twice: one line */
    struct moat_crl_entry *v = NULL;
    size_t n = 0;
    EXPECT_INT(moat_crl_index_read(ca->dir, &v, &n, &err).kind, MOAT_OK);
    EXPECT_INT(n, 2);
    if (n == 2) {
        EXPECT_INT(v[0].revoked, 0);
        EXPECT_STR(v[1].subject, "/CN=b.test");
    }
    free(v);
    EXPECT(!ph_has_tmp(ca->dir));

    int by_root = -1;
    time_t when = time(NULL) - 60;
    EXPECT_INT(moat_crl_revoke(ca, a, MOAT_CRL_KEY_COMPROMISE, when, &by_root, &err).kind, MOAT_OK);
    EXPECT_INT(by_root, 0);
    EXPECT_INT(moat_crl_revoke(ca, a, MOAT_CRL_SUPERSEDED, 0, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "revoked already"));

    X509_CRL *crl = NULL;
    EXPECT_INT(moat_crl_make(ca, 0, 7, 0, &crl, &err).kind, MOAT_OK);
    if (crl != NULL) {
        EXPECT_INT(X509_CRL_verify(crl, X509_get0_pubkey(ca->cert)), 1);
        EXPECT_INT(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca->cert)), 0);
        EXPECT(crl_lists(crl, a));
        EXPECT(!crl_lists(crl, b));
        EXPECT_INT(crl_number(crl), 1);
        X509_REVOKED *r = NULL;
        X509_CRL_get0_by_cert(crl, &r, a);
        ASN1_ENUMERATED *code = r ? X509_REVOKED_get_ext_d2i(r, NID_crl_reason, NULL, NULL) : NULL;
        EXPECT_INT(code ? ASN1_ENUMERATED_get(code) : -1, 1);
        ASN1_ENUMERATED_free(code);
        EXPECT(X509_CRL_get0_nextUpdate(crl) != NULL);
    }
    /* The openssl command rejects the revoked certificate with this CRL. */
    EXPECT_INT(moat_crl_write(ph_path("crl.pem"), &crl, 1, &err).kind, MOAT_OK);
    ph_write_certs(ph_path("a.pem"), a, NULL, NULL, NULL);
    ph_write_certs(ph_path("b.pem"), b, NULL, NULL, NULL);
    ph_write_certs(ph_path("chain.pem"), ca->cert, NULL, NULL, NULL);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl verify -crl_check -CRLfile %s -CAfile %s/root.pem -untrusted %s %s 2>&1 | "
             "grep -q 'certificate revoked'",
             ph_path("crl.pem"), ca->dir, ph_path("chain.pem"), ph_path("a.pem"));
    EXPECT_INT(system(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl verify -crl_check -CRLfile %s -CAfile %s/root.pem -untrusted %s %s "
             ">/dev/null 2>&1",
             ph_path("crl.pem"), ca->dir, ph_path("chain.pem"), ph_path("b.pem"));
    EXPECT_INT(system(cmd), 0);
    X509_CRL_free(crl);

    /* The next CRL has the next number; the root's lists the revoked intermediate. */
    EXPECT_INT(moat_crl_make(ca, 0, 1, 0, &crl, &err).kind, MOAT_OK);
    EXPECT_INT(crl ? crl_number(crl) : 0, 2);
    X509_CRL_free(crl);
    EXPECT_INT(moat_crl_revoke(ca, ca->cert, MOAT_CRL_CA_COMPROMISE, 0, &by_root, &err).kind,
               MOAT_OK);
    EXPECT_INT(by_root, 1);
    EXPECT_INT(moat_crl_make(ca, 1, 30, 0, &crl, &err).kind, MOAT_OK);
    if (crl != NULL) {
        EXPECT_INT(X509_CRL_verify(crl, X509_get0_pubkey(ca->root)), 1);
        EXPECT(crl_lists(crl, ca->cert));
        EXPECT(!crl_lists(crl, a));
    }
    X509_CRL_free(crl);
    EXPECT_INT(moat_crl_make(ca, 0, 0, 0, &crl, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_crl_make(ca, 0, 366, 0, &crl, &err).kind, MOAT_E_USAGE);

    /* Loading: every CRL of a PEM file; a certificate file is named for what it is. */
    STACK_OF(X509_CRL) *crls = NULL;
    EXPECT_INT(moat_crl_load(ph_path("crl.pem"), &crls, &err).kind, MOAT_OK);
    EXPECT_INT(crls ? sk_X509_CRL_num(crls) : 0, 1);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    EXPECT_INT(moat_crl_load(ph_path("a.pem"), &crls, &err).kind, MOAT_E_CERT);
    EXPECT(ph_contains(err.msg, "holds certificates, not a CRL"));
    ph_write_str(ph_path("junk.crl"), "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n");
    EXPECT_INT(moat_crl_load(ph_path("junk.crl"), &crls, &err).kind, MOAT_E_CERT);
    EXPECT(ph_contains(err.msg, "damaged"));
    EXPECT_INT(moat_crl_load(ph_path("none.crl"), &crls, &err).kind, MOAT_E_NOTFOUND);

    X509_free(a);
    X509_free(b);
    moat_ca_free(ca);
}

TEST_CASE(foreign_and_malformed)
{
    struct moat_ca *ca = NULL, *other = NULL;
    EXPECT_INT(moat_ca_init(ph_path("ca2"), NULL, &ca, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_ca_init(ph_path("ca3"), NULL, &other, NULL).kind, MOAT_OK);
    if (ca == NULL || other == NULL) {
        moat_ca_free(ca);
        moat_ca_free(other);
        return;
    }
    X509 *x = issue(other, "x.test");
    struct moat_err err = {0};
    EXPECT_INT(moat_crl_revoke(ca, x, MOAT_CRL_UNSPECIFIED, 0, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "was not issued by the CA"));
    /* A root cannot revoke itself. */
    EXPECT_INT(moat_crl_revoke(ca, ca->root, MOAT_CRL_UNSPECIFIED, 0, NULL, &err).kind,
               MOAT_E_USAGE);
    char idx[512];
    snprintf(idx, sizeof(idx), "%s/index.txt", ca->dir);
    ph_write_str(idx, "# comment\nV\tAB\t20300101000000Z\t-\t-\tCD\t/CN=ok\nX\tbroken line\n");
    struct moat_crl_entry *v = NULL;
    size_t n = 0;
    EXPECT_INT(moat_crl_index_read(ca->dir, &v, &n, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.where, "index.txt:3"));
    EXPECT_INT(moat_crl_record(ca, x, &err).kind, MOAT_E_CONFIG);
    ph_write_str(idx, "R\tAB\t20300101000000Z\t-\tkey-compromise\tCD\t/CN=revoked, no date\n");
    EXPECT_INT(moat_crl_index_read(ca->dir, &v, &n, &err).kind, MOAT_E_CONFIG);
    X509_free(x);
    moat_ca_free(ca);
    moat_ca_free(other);
}

int main(void)
{
    ph_dir_make();
    RUN(reasons);
    RUN(index_and_crl);
    RUN(foreign_and_malformed);
    ph_dir_remove();
    TEST_MAIN_END();
}
