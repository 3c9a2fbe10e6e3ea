/*
 * test_certset.c: certificate sets: what moat_tls_certset_new reads from the leaf once (key type,
 * dates, names, labels), that it takes the objects over on every path, and the reference count.
 * ASan's leak check is half of these tests: a set that is not freed, or freed twice, fails.
 */
#include "tls/certset.h"
#include "test.h"
#include "tls/ctx.h"
#include "tls/tls_helpers.h"

TEST_CASE(set_reads_the_leaf_once)
{
    EVP_PKEY *ca_key = th_key("ec");
    X509 *ca = th_x509(ca_key, "set test CA", NULL, NULL, 1);
    EVP_PKEY *key = th_key("rsa");
    X509 *leaf = th_x509(key, "set.example", ca, ca_key, 0);
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509_up_ref(ca);
    sk_X509_push(chain, ca);
    time_t nb = 0, na = 0;
    struct tm tm;
    ASN1_TIME_to_tm(X509_get0_notBefore(leaf), &tm);
    nb = timegm(&tm);
    ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm);
    na = timegm(&tm);

    struct moat_tls_certset *s = NULL;
    struct moat_err err = {0};
    EXPECT_INT(
        moat_tls_certset_new(leaf, chain, key, "dir/set.pem", "dir/set.key", 1234, &s, &err).kind,
        MOAT_OK);
    EXPECT(s != NULL);
    if (s != NULL) {
        EXPECT(s->leaf == leaf);
        EXPECT(s->key == key);
        EXPECT_INT(sk_X509_num(s->chain), 1);
        EXPECT_INT(s->key_type, EVP_PKEY_RSA);
        EXPECT_INT(s->not_before, nb);
        EXPECT_INT(s->not_after, na);
        EXPECT(s->not_after > s->not_before);
        EXPECT_INT(s->nnames, 1);
        EXPECT_STR(s->names[0], "set.example");
        EXPECT_INT(moat_tls_certset_has_name(s, "SET.example"), 1);
        EXPECT_INT(moat_tls_certset_has_name(s, "other.example"), 0);
        EXPECT_STR(s->label, "dir/set.pem");
        EXPECT_STR(s->key_label, "dir/set.key");
        EXPECT_INT(s->renew_at, 1234);
        /* Two owners: the first unref must leave it usable for the second. */
        EXPECT(moat_tls_certset_ref(s) == s);
        moat_tls_certset_unref(s);
        EXPECT_STR(s->names[0], "set.example");
        EXPECT_INT(X509_check_private_key(s->leaf, s->key), 1);
        moat_tls_certset_unref(s);
    }
    moat_tls_certset_unref(NULL);
    EXPECT(moat_tls_certset_ref(NULL) == NULL);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

TEST_CASE(set_without_chain_or_key_label)
{
    EVP_PKEY *key = th_key("ec");
    X509 *leaf = th_x509(key, "alone.example", NULL, NULL, 0);
    struct moat_tls_certset *s = NULL;
    EXPECT_INT(moat_tls_certset_new(leaf, NULL, key, "alone.pem", NULL, 0, &s, NULL).kind, MOAT_OK);
    if (s != NULL) {
        EXPECT(s->chain != NULL);
        EXPECT_INT(sk_X509_num(s->chain), 0);
        EXPECT_STR(s->key_label, "alone.pem");
        EXPECT_INT(s->key_type, EVP_PKEY_EC);
        EXPECT_INT(s->renew_at, 0);
    }
    moat_tls_certset_unref(s);
}

TEST_CASE(set_refused_takes_objects_over)
{
    /* No key: refused, and the leaf and chain given are freed (ASan reports a leak if not). */
    EVP_PKEY *key = th_key("ec");
    X509 *leaf = th_x509(key, "nokey.example", NULL, NULL, 0);
    STACK_OF(X509) *chain = sk_X509_new_null();
    struct moat_tls_certset *s = (struct moat_tls_certset *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_tls_certset_new(leaf, chain, NULL, "nokey.pem", NULL, 0, &s, &err).kind,
               MOAT_E_INTERNAL);
    EXPECT(s == NULL);
    EVP_PKEY_free(key);
}

int main(void)
{
    RUN(set_reads_the_leaf_once);
    RUN(set_without_chain_or_key_label);
    RUN(set_refused_takes_objects_over);
    EXPECT_INT(ERR_peek_error(), 0);
    TEST_MAIN_END();
}
