/*
 * test_validate.c: offline path validation, one case per failure kind (table-driven, each
 * broken certificate built for the purpose), plus a valid chain, several problems reported at
 * once, client purpose, and a CRL that is not from the leaf's issuer.
 */
#include "pki/validate.h"

#include "pki_helpers.h"
#include "test.h"

struct world {
    struct ph_pki p;
    X509_STORE *trust;      /* the root */
    STACK_OF(X509) * inter; /* the intermediate */
};

static void world_make(struct world *w)
{
    ph_pki_make(&w->p, "v");
    w->trust = X509_STORE_new();
    X509_STORE_add_cert(w->trust, w->p.root);
    w->inter = sk_X509_new_null();
    X509_up_ref(w->p.inter);
    sk_X509_push(w->inter, w->p.inter);
}

static void world_free(struct world *w)
{
    X509_STORE_free(w->trust);
    sk_X509_pop_free(w->inter, X509_free);
    ph_pki_free(&w->p);
}

/* A leaf from the world's intermediate with spec changes applied by the caller. */
static X509 *leaf_with(struct world *w, struct ph_cert_spec s)
{
    if (s.key == NULL) {
        s.key = w->p.leaf_key;
    }
    if (s.issuer == NULL) {
        s.issuer = w->p.inter;
    }
    if (s.issuer_key == NULL) {
        s.issuer_key = w->p.int_key;
    }
    if (s.cn == NULL) {
        s.cn = "leaf";
    }
    if (s.na_offset == 0) {
        s.nb_offset = -PH_DAY;
        s.na_offset = 30 * PH_DAY;
    }
    if (s.bc == NULL) {
        s.bc = "critical,CA:FALSE";
    }
    if (s.eku == NULL) {
        s.eku = "serverAuth";
    }
    if (s.san == NULL) {
        s.san = "DNS:localhost";
    }
    return ph_cert(&s);
}

static enum moat_verify_kind check(X509 *leaf, X509_STORE *trust, STACK_OF(X509) * untrusted,
                                   STACK_OF(X509_CRL) * crls, const char *host, int client,
                                   struct moat_validate_result *r)
{
    struct moat_validate_opts o = {
        .trust = trust, .untrusted = untrusted, .crls = crls, .host = host, .client = client};
    EXPECT_INT(moat_validate(leaf, &o, r, NULL).kind, MOAT_OK);
    EXPECT_INT(ERR_peek_error(), 0);
    return r->kind;
}

static void expect_kind(X509 *leaf, X509_STORE *trust, STACK_OF(X509) * untrusted,
                        STACK_OF(X509_CRL) * crls, const char *host, int client,
                        enum moat_verify_kind want, const char *needle)
{
    struct moat_validate_result r;
    enum moat_verify_kind got = check(leaf, trust, untrusted, crls, host, client, &r);
    if (got != want) {
        TEST__FAIL("got %s, expected %s (%s)", moat_verify_kind_name(got),
                   moat_verify_kind_name(want), r.nproblems ? r.problems[0].detail : "");
    } else if (needle != NULL && !ph_contains(r.problems[0].detail, needle)) {
        TEST__FAIL("detail lacks \"%s\"", needle);
    }
    moat_validate_result_clear(&r);
}

TEST_CASE(valid_chain)
{
    struct world w;
    world_make(&w);
    struct moat_validate_result r;
    EXPECT_INT(check(w.p.leaf, w.trust, w.inter, NULL, "localhost", 0, &r), MOAT_V_OK);
    EXPECT_INT(r.nproblems, 0);
    EXPECT_INT(r.path ? sk_X509_num(r.path) : 0, 3);
    moat_validate_result_clear(&r);
    EXPECT_INT(check(w.p.leaf, w.trust, w.inter, NULL, "127.0.0.1", 0, &r), MOAT_V_OK);
    moat_validate_result_clear(&r);
    EXPECT_INT(check(w.p.leaf, w.trust, w.inter, NULL, "localhost.", 0, &r), MOAT_V_OK);
    moat_validate_result_clear(&r);
    world_free(&w);
}

TEST_CASE(each_kind)
{
    struct world w;
    world_make(&w);
    X509 *x;

    x = leaf_with(&w, (struct ph_cert_spec){.nb_offset = -10 * PH_DAY, .na_offset = -PH_DAY});
    expect_kind(x, w.trust, w.inter, NULL, NULL, 0, MOAT_V_EXPIRED, "expired on");
    X509_free(x);

    x = leaf_with(&w, (struct ph_cert_spec){.nb_offset = 2 * PH_DAY, .na_offset = 9 * PH_DAY});
    expect_kind(x, w.trust, w.inter, NULL, NULL, 0, MOAT_V_NOT_YET_VALID, "valid only from");
    X509_free(x);

    /* The intermediate is given, its root is not trusted. */
    X509_STORE *empty = X509_STORE_new();
    expect_kind(w.p.leaf, empty, w.inter, NULL, NULL, 0, MOAT_V_UNKNOWN_ISSUER,
                "not a trusted root");
    /* The root sent along but not trusted. */
    STACK_OF(X509) *with_root = sk_X509_dup(w.inter);
    sk_X509_push(with_root, w.p.root);
    expect_kind(w.p.leaf, empty, with_root, NULL, NULL, 0, MOAT_V_UNKNOWN_ISSUER,
                "not trusted here");
    sk_X509_free(with_root);

    expect_kind(w.p.leaf, w.trust, NULL, NULL, NULL, 0, MOAT_V_MISSING_INTERMEDIATE,
                "add the intermediate");

    x = ph_cert(&(struct ph_cert_spec){.cn = "self",
                                       .key = w.p.leaf_key,
                                       .nb_offset = -PH_DAY,
                                       .na_offset = PH_DAY,
                                       .bc = "critical,CA:FALSE",
                                       .san = "DNS:self.test"});
    expect_kind(x, w.trust, NULL, NULL, NULL, 0, MOAT_V_SELF_SIGNED, "self-signed");
    /* ... trusted by hand, it is fine. */
    X509_STORE *own = X509_STORE_new();
    X509_STORE_add_cert(own, x);
    expect_kind(x, own, NULL, NULL, "self.test", 0, MOAT_V_OK, NULL);
    X509_STORE_free(own);
    X509_free(x);

    expect_kind(w.p.leaf, w.trust, w.inter, NULL, "other.test", 0, MOAT_V_NAME_MISMATCH,
                "it covers DNS:localhost, IP:127.0.0.1");
    expect_kind(w.p.leaf, w.trust, w.inter, NULL, "10.0.0.1", 0, MOAT_V_NAME_MISMATCH, NULL);

    x = leaf_with(&w, (struct ph_cert_spec){.eku = "clientAuth"});
    expect_kind(x, w.trust, w.inter, NULL, NULL, 0, MOAT_V_BAD_KEY_USAGE, "not for TLS servers");
    expect_kind(x, w.trust, w.inter, NULL, NULL, 1, MOAT_V_OK, NULL);
    expect_kind(w.p.leaf, w.trust, w.inter, NULL, NULL, 1, MOAT_V_BAD_KEY_USAGE,
                "not for TLS clients");
    X509_free(x);

    /* An "intermediate" that is not a CA. */
    EVP_PKEY *nk = ph_key();
    X509 *notca = ph_cert(&(struct ph_cert_spec){.cn = "not a ca",
                                                 .key = nk,
                                                 .issuer = w.p.root,
                                                 .issuer_key = w.p.root_key,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = PH_DAY * 10,
                                                 .bc = "critical,CA:FALSE"});
    x = leaf_with(&w, (struct ph_cert_spec){.issuer = notca, .issuer_key = nk});
    STACK_OF(X509) *u = sk_X509_new_null();
    sk_X509_push(u, notca);
    expect_kind(x, w.trust, u, NULL, NULL, 0, MOAT_V_NOT_CA, "is not a CA");
    sk_X509_free(u);
    X509_free(x);
    X509_free(notca);

    /* A root that allows no intermediate (pathlen 0) above one. */
    X509 *root0 = ph_cert(&(struct ph_cert_spec){.cn = "root0",
                                                 .key = w.p.root_key,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = PH_DAY * 10,
                                                 .bc = "critical,CA:TRUE,pathlen:0",
                                                 .ku = "critical,keyCertSign,cRLSign"});
    X509 *inter0 = ph_cert(&(struct ph_cert_spec){.cn = "inter0",
                                                  .key = nk,
                                                  .issuer = root0,
                                                  .issuer_key = w.p.root_key,
                                                  .nb_offset = -PH_DAY,
                                                  .na_offset = PH_DAY * 10,
                                                  .bc = "critical,CA:TRUE",
                                                  .ku = "critical,keyCertSign"});
    x = leaf_with(&w, (struct ph_cert_spec){.issuer = inter0, .issuer_key = nk});
    X509_STORE *t0 = X509_STORE_new();
    X509_STORE_add_cert(t0, root0);
    u = sk_X509_new_null();
    sk_X509_push(u, inter0);
    expect_kind(x, t0, u, NULL, NULL, 0, MOAT_V_PATH_LENGTH, "pathLenConstraint");
    sk_X509_free(u);
    X509_STORE_free(t0);
    X509_free(x);
    X509_free(inter0);
    X509_free(root0);
    EVP_PKEY_free(nk);

    /* Weak key: RSA 1024. */
    EVP_PKEY *rsa1k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    x = leaf_with(&w, (struct ph_cert_spec){.key = rsa1k});
    expect_kind(x, w.trust, w.inter, NULL, NULL, 0, MOAT_V_WEAK_KEY, "RSA 1024");
    X509_free(x);
    EVP_PKEY_free(rsa1k);

    /* Weak signature: SHA-1. */
    x = leaf_with(&w, (struct ph_cert_spec){0});
    X509_sign(x, w.p.int_key, EVP_sha1());
    expect_kind(x, w.trust, w.inter, NULL, NULL, 0, MOAT_V_WEAK_SIGNATURE, "broken");
    X509_free(x);

    /* Bad signature: signed by another key under the intermediate's name. */
    EVP_PKEY *other = ph_key();
    x = leaf_with(&w, (struct ph_cert_spec){.issuer_key = other});
    expect_kind(x, w.trust, w.inter, NULL, NULL, 0, MOAT_V_BAD_SIGNATURE, "does not verify");
    X509_free(x);
    EVP_PKEY_free(other);
    X509_STORE_free(empty);
    world_free(&w);
}

static X509_CRL *crl_of(X509 *issuer, EVP_PKEY *key, X509 *revoked, long next_offset)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer));
    ASN1_TIME *t = ASN1_TIME_set(NULL, time(NULL) - 3600);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_set(t, time(NULL) + next_offset);
    X509_CRL_set1_nextUpdate(crl, t);
    if (revoked != NULL) {
        X509_REVOKED *r = X509_REVOKED_new();
        X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoked));
        ASN1_TIME_set(t, time(NULL) - 60);
        X509_REVOKED_set_revocationDate(r, t);
        X509_CRL_add0_revoked(crl, r);
    }
    ASN1_TIME_free(t);
    X509_CRL_sort(crl);
    X509_CRL_sign(crl, key, EVP_sha256());
    return crl;
}

TEST_CASE(revocation)
{
    struct world w;
    world_make(&w);
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    sk_X509_CRL_push(crls, crl_of(w.p.inter, w.p.int_key, w.p.leaf, PH_DAY));
    expect_kind(w.p.leaf, w.trust, w.inter, crls, NULL, 0, MOAT_V_REVOKED, "was revoked on");
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* Not revoked: fine, even without a CRL for the intermediate itself. */
    crls = sk_X509_CRL_new_null();
    sk_X509_CRL_push(crls, crl_of(w.p.inter, w.p.int_key, NULL, PH_DAY));
    expect_kind(w.p.leaf, w.trust, w.inter, crls, NULL, 0, MOAT_V_OK, NULL);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* The root's CRL revokes the intermediate: found when given. */
    crls = sk_X509_CRL_new_null();
    sk_X509_CRL_push(crls, crl_of(w.p.inter, w.p.int_key, NULL, PH_DAY));
    sk_X509_CRL_push(crls, crl_of(w.p.root, w.p.root_key, w.p.inter, PH_DAY));
    expect_kind(w.p.leaf, w.trust, w.inter, crls, NULL, 0, MOAT_V_REVOKED, "intermediate");
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* A CRL from someone else: the leaf's revocation cannot be checked; said so. */
    crls = sk_X509_CRL_new_null();
    sk_X509_CRL_push(crls, crl_of(w.p.root, w.p.root_key, NULL, PH_DAY));
    expect_kind(w.p.leaf, w.trust, w.inter, crls, NULL, 0, MOAT_V_OTHER, "none of the CRLs");
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* An out-of-date CRL. */
    crls = sk_X509_CRL_new_null();
    sk_X509_CRL_push(crls, crl_of(w.p.inter, w.p.int_key, NULL, -60));
    expect_kind(w.p.leaf, w.trust, w.inter, crls, NULL, 0, MOAT_V_OTHER, "out of date");
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    world_free(&w);
}

TEST_CASE(several_problems_at_once)
{
    struct world w;
    world_make(&w);
    X509 *x = leaf_with(&w, (struct ph_cert_spec){.nb_offset = -10 * PH_DAY, .na_offset = -PH_DAY});
    struct moat_validate_result r;
    check(x, w.trust, w.inter, NULL, "other.test", 0, &r);
    int expired = 0, mismatch = 0;
    for (size_t i = 0; i < r.nproblems; i++) {
        expired |= r.problems[i].kind == MOAT_V_EXPIRED;
        mismatch |= r.problems[i].kind == MOAT_V_NAME_MISMATCH;
    }
    EXPECT(expired && mismatch);
    moat_validate_result_clear(&r);
    moat_validate_result_clear(NULL);
    X509_free(x);
    world_free(&w);
}

int main(void)
{
    RUN(valid_chain);
    RUN(each_kind);
    RUN(revocation);
    RUN(several_problems_at_once);
    TEST_MAIN_END();
}
