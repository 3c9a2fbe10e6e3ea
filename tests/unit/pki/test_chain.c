/*
 * test_chain.c: loading certificate files and every start-up check of moat_chain_check, each
 * on a chain broken on purpose, the warnings for issuers moat cannot find, the checks against
 * a named CA (cert_ca), plus name coverage and the trust store.
 */
#include "pki/chain.h"

#include "pki_helpers.h"
#include "test.h"

static struct ph_pki pki;
static X509_STORE *trust_root; /* anchors: pki.root only */

static struct moat_chain *load(const char *name, X509 *a, X509 *b, X509 *c, X509 *d)
{
    const char *p = ph_path(name);
    ph_write_certs(p, a, b, c, d);
    struct moat_chain *ch = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_chain_load(p, &ch, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (rc.kind != MOAT_OK) {
        fprintf(stderr, "  %s\n", err.msg);
    }
    return ch;
}

/* Check a chain expecting `kind`, with `needle` in the message (when not NULL). */
static void expect_check(const struct moat_chain *c, EVP_PKEY *key, X509_STORE *trust, time_t now,
                         enum moat_verify_kind kind, const char *needle)
{
    struct moat_err err = {0};
    enum moat_verify_kind got = MOAT_V_KIND_COUNT;
    moat_rc rc = moat_chain_check_kind(c, key, trust, now, &got, &err);
    EXPECT_INT(got, kind);
    EXPECT_INT(rc.kind, kind == MOAT_V_OK ? MOAT_OK : MOAT_E_CERT);
    if (kind != MOAT_V_OK) {
        EXPECT_STR(err.where, c->path);
    } else if (rc.kind != MOAT_OK) {
        fprintf(stderr, "  unexpected: %s\n", err.msg);
    }
    if (needle != NULL) {
        EXPECT(ph_contains(err.msg, needle));
    }
    EXPECT_INT(ERR_peek_error(), 0);
    /* The plain entry point agrees. */
    EXPECT_INT(moat_chain_check(c, key, trust, now, NULL).kind, rc.kind);
}

/* Warnings collected by the callback (at most one per check is the contract). */
struct warnings {
    int n;
    enum moat_verify_kind kind;
    char msg[2048];
};

static void collect(void *arg, enum moat_verify_kind kind, const char *msg)
{
    struct warnings *w = arg;
    w->n++;
    w->kind = kind;
    snprintf(w->msg, sizeof(w->msg), "%s", msg);
}

/* Check with the full options: `kind` is the failure expected (MOAT_V_OK: passes), `wkind` the
 * warning expected (MOAT_V_OK: none), and each of the NULL-terminated `needles` must be in the
 * refusal or, when it passes, in the warning. */
static void expect_with(const struct moat_chain *c, EVP_PKEY *key, X509_STORE *trust,
                        X509_STORE *anchor, enum moat_verify_kind kind, enum moat_verify_kind wkind,
                        const char *const *needles)
{
    struct warnings w = {0};
    struct moat_chain_check_opts o = {.key = key,
                                      .trust = trust,
                                      .anchor = anchor,
                                      .anchor_name = "anchor.pem",
                                      .now = time(NULL),
                                      .warn = collect,
                                      .warn_arg = &w};
    struct moat_err err = {0};
    enum moat_verify_kind got = MOAT_V_KIND_COUNT;
    moat_rc rc = moat_chain_check_with(c, &o, &got, &err);
    EXPECT_INT(got, kind);
    EXPECT_INT(rc.kind, kind == MOAT_V_OK ? MOAT_OK : MOAT_E_CERT);
    if (kind == MOAT_V_OK && rc.kind != MOAT_OK) {
        fprintf(stderr, "  unexpected: %s\n", err.msg);
    }
    /* Never a warning with a refusal; at most one otherwise. */
    EXPECT_INT(w.n, kind == MOAT_V_OK && wkind != MOAT_V_OK ? 1 : 0);
    if (w.n > 0) {
        EXPECT_INT(w.kind, wkind);
    }
    for (size_t i = 0; needles != NULL && needles[i] != NULL; i++) {
        const char *text = kind == MOAT_V_OK ? w.msg : err.msg;
        if (!ph_contains(text, needles[i])) {
            fprintf(stderr, "  in: %s\n", text);
        }
        EXPECT(ph_contains(text, needles[i]));
    }
    if (kind != MOAT_V_OK) {
        EXPECT_STR(err.where, c->path);
    }
    EXPECT_INT(ERR_peek_error(), 0);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

TEST_CASE(load_keeps_file_order)
{
    struct moat_chain *c = load("order.pem", pki.leaf, pki.inter, pki.root, NULL);
    EXPECT(c != NULL);
    if (c == NULL) {
        return;
    }
    EXPECT_INT(X509_cmp(c->leaf, pki.leaf), 0);
    EXPECT_INT(sk_X509_num(c->extra), 2);
    EXPECT_INT(X509_cmp(sk_X509_value(c->extra, 0), pki.inter), 0);
    EXPECT_INT(X509_cmp(sk_X509_value(c->extra, 1), pki.root), 0);
    EXPECT_STR(c->path, ph_path("order.pem"));
    moat_chain_free(c);
    moat_chain_free(NULL);
}

TEST_CASE(load_der_and_combined)
{
    unsigned char *der = NULL;
    int n = i2d_X509(pki.leaf, &der);
    const char *p = ph_path("leaf.der");
    ph_write(p, der, (size_t)n, 0644);
    OPENSSL_free(der);
    struct moat_chain *c = NULL;
    EXPECT_INT(moat_chain_load(p, &c, NULL).kind, MOAT_OK);
    EXPECT(c != NULL && X509_cmp(c->leaf, pki.leaf) == 0 && sk_X509_num(c->extra) == 0);
    moat_chain_free(c);

    /* key + leaf + intermediate in one file, with text around (as `openssl x509 -text`). */
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pki.leaf_key, NULL, NULL, 0, NULL, NULL);
    BIO_puts(bio, "Certificate:\n    Data: ...\n");
    PEM_write_bio_X509(bio, pki.leaf);
    PEM_write_bio_X509(bio, pki.inter);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    c = NULL;
    EXPECT_INT(moat_chain_load_mem(data, (size_t)len, "combined.pem", &c, NULL).kind, MOAT_OK);
    EXPECT(c != NULL && sk_X509_num(c->extra) == 1);
    EXPECT(c != NULL && strcmp(c->path, "combined.pem") == 0);
    moat_chain_free(c);
    BIO_free(bio);
}

static void expect_load_fails(const char *path, enum moat_errkind kind, const char *needle)
{
    struct moat_chain *c = (struct moat_chain *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_chain_load(path, &c, &err).kind, kind);
    EXPECT(c == NULL);
    EXPECT(ph_contains(err.msg, needle));
    EXPECT_STR(err.where, path);
    EXPECT_INT(ERR_peek_error(), 0);
}

TEST_CASE(load_refusals)
{
    const char *p = ph_path("bad.pem");
    expect_load_fails(ph_path("nothere.pem"), MOAT_E_NOTFOUND, "does not exist");
    ph_write_str(p, "");
    expect_load_fails(p, MOAT_E_CERT, "is empty");
    ph_write_str(p, "\n\n");
    expect_load_fails(p, MOAT_E_CERT, "is empty");
    ph_write_str(p, "garbage");
    expect_load_fails(p, MOAT_E_CERT, "holds no certificate");

    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pki.leaf_key, NULL, NULL, 0, NULL, NULL);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    ph_write(p, data, (size_t)n, 0600);
    BIO_free(bio);
    expect_load_fails(p, MOAT_E_CERT, "private key but no certificate");

    ph_write_str(p, "-----BEGIN CERTIFICATE REQUEST-----\nMAMCAQA=\n"
                    "-----END CERTIFICATE REQUEST-----\n");
    expect_load_fails(p, MOAT_E_CERT, "(CSR), not a certificate");

    /* Second certificate damaged: valid base64 of something that is not a certificate. */
    char *pem = ph_pem(pki.leaf, NULL, NULL, NULL);
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "%s-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n", pem);
    ph_write_str(p, buf);
    expect_load_fails(p, MOAT_E_CERT, "certificate #2");
    /* Cut short: no END line. */
    snprintf(buf, sizeof(buf), "%s", pem);
    buf[strlen(buf) - 30] = '\0';
    ph_write_str(p, buf);
    expect_load_fails(p, MOAT_E_CERT, "not valid PEM");
    free(pem);
    unlink(p);
}

TEST_CASE(check_good_chains)
{
    time_t now = time(NULL);
    struct moat_chain *c = load("good.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, now, MOAT_V_OK, NULL);
    expect_check(c, NULL, trust_root, now, MOAT_V_OK, NULL);
    moat_chain_free(c);
    /* With the root at the end, no trust store is needed. */
    c = load("good-root.pem", pki.leaf, pki.inter, pki.root, NULL);
    expect_check(c, pki.leaf_key, NULL, now, MOAT_V_OK, NULL);
    moat_chain_free(c);
    /* A lone self-signed server certificate (CA:FALSE) is complete. */
    X509 *ss = ph_cert(&(struct ph_cert_spec){.cn = "self",
                                              .key = pki.leaf_key,
                                              .nb_offset = -PH_DAY,
                                              .na_offset = PH_DAY,
                                              .bc = "critical,CA:FALSE",
                                              .eku = "serverAuth",
                                              .san = "DNS:self"});
    c = load("self.pem", ss, NULL, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, now, MOAT_V_OK, NULL);
    moat_chain_free(c);
    X509_free(ss);
}

TEST_CASE(check_key_mismatch)
{
    struct moat_chain *c = load("km.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_check(c, pki.int_key, trust_root, time(NULL), MOAT_V_KEY_MISMATCH,
                 "does not match the private key");
    expect_check(c, pki.int_key, trust_root, time(NULL), MOAT_V_KEY_MISMATCH,
                 "use the key the CSR was made from");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    expect_check(c, rsa, trust_root, time(NULL), MOAT_V_KEY_MISMATCH, "private key: RSA 2048");
    EVP_PKEY_free(rsa);
    moat_chain_free(c);
}

TEST_CASE(check_expired_and_not_yet_valid)
{
    struct moat_chain *c = load("dates.pem", pki.leaf, pki.inter, NULL, NULL);
    time_t now = time(NULL);
    expect_check(c, pki.leaf_key, trust_root, now + 100 * PH_DAY, MOAT_V_EXPIRED, "expired on");
    expect_check(c, pki.leaf_key, trust_root, now + 100 * PH_DAY, MOAT_V_EXPIRED, "(10 days ago)");
    expect_check(c, pki.leaf_key, trust_root, now - 3 * PH_DAY, MOAT_V_NOT_YET_VALID,
                 "is not valid until");
    expect_check(c, pki.leaf_key, trust_root, now - 3 * PH_DAY, MOAT_V_NOT_YET_VALID, "(in 2 days");
    expect_check(c, pki.leaf_key, trust_root, now - 2 * PH_DAY - 3 * 3600, MOAT_V_NOT_YET_VALID,
                 "(in 1 day;");
    expect_check(c, pki.leaf_key, trust_root, now - PH_DAY - 3600, MOAT_V_NOT_YET_VALID,
                 "(less than a day from now;");
    moat_chain_free(c);

    /* A really expired certificate, checked at the real time. */
    X509 *old = ph_cert(&(struct ph_cert_spec){.cn = "old",
                                               .key = pki.leaf_key,
                                               .issuer = pki.inter,
                                               .issuer_key = pki.int_key,
                                               .nb_offset = -400 * PH_DAY,
                                               .na_offset = -5 * PH_DAY,
                                               .bc = "CA:FALSE",
                                               .eku = "serverAuth"});
    c = load("old.pem", old, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, now, MOAT_V_EXPIRED, "renew the certificate");
    moat_chain_free(c);
    X509_free(old);
}

TEST_CASE(check_expired_intermediate)
{
    /* The leaf outlives its intermediate (a CA bug, or an old intermediate kept in the file). */
    X509 *inter = ph_cert(&(struct ph_cert_spec){.cn = "t intermediate",
                                                 .key = pki.int_key,
                                                 .issuer = pki.root,
                                                 .issuer_key = pki.root_key,
                                                 .nb_offset = -300 * PH_DAY,
                                                 .na_offset = -PH_DAY,
                                                 .bc = "critical,CA:TRUE,pathlen:0",
                                                 .ku = "critical,keyCertSign,cRLSign"});
    struct moat_chain *c = load("oldint.pem", pki.leaf, inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_EXPIRED, "certificate #2");
    moat_chain_free(c);
    X509_free(inter);
}

TEST_CASE(check_leaf_is_ca)
{
    X509 *ca_leaf = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                                   .key = pki.leaf_key,
                                                   .nb_offset = -PH_DAY,
                                                   .na_offset = PH_DAY,
                                                   .bc = "critical,CA:TRUE",
                                                   .san = "DNS:localhost"});
    struct moat_chain *c = load("ca-leaf.pem", ca_leaf, NULL, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_NOT_CA, "CA:TRUE");
    moat_chain_free(c);
    X509_free(ca_leaf);
}

TEST_CASE(check_key_usage)
{
    X509 *client = ph_cert(&(struct ph_cert_spec){.cn = "client",
                                                  .key = pki.leaf_key,
                                                  .issuer = pki.inter,
                                                  .issuer_key = pki.int_key,
                                                  .nb_offset = -PH_DAY,
                                                  .na_offset = PH_DAY,
                                                  .bc = "CA:FALSE",
                                                  .eku = "clientAuth"});
    struct moat_chain *c = load("client.pem", client, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_BAD_KEY_USAGE, "serverAuth");
    moat_chain_free(c);
    X509_free(client);

    X509 *nosig = ph_cert(&(struct ph_cert_spec){.cn = "nosig",
                                                 .key = pki.leaf_key,
                                                 .issuer = pki.inter,
                                                 .issuer_key = pki.int_key,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = PH_DAY,
                                                 .ku = "critical,nonRepudiation"});
    c = load("nosig.pem", nosig, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_BAD_KEY_USAGE, "digitalSignature");
    moat_chain_free(c);
    X509_free(nosig);

    /* No EKU at all, or anyExtendedKeyUsage, is fine. */
    X509 *any = ph_cert(&(struct ph_cert_spec){.cn = "any",
                                               .key = pki.leaf_key,
                                               .issuer = pki.inter,
                                               .issuer_key = pki.int_key,
                                               .nb_offset = -PH_DAY,
                                               .na_offset = PH_DAY,
                                               .eku = "anyExtendedKeyUsage"});
    c = load("any.pem", any, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_OK, NULL);
    moat_chain_free(c);
    X509_free(any);
}

TEST_CASE(check_missing_intermediate)
{
    /* Leaf alone, the root trusted, the intermediate between them nowhere. moat cannot tell
     * an intermediate the file should carry from a private root its clients trust, so it
     * serves the file and warns, naming both cases and the fix for each. */
    struct moat_chain *c = load("cert.pem", pki.leaf, NULL, NULL, NULL);
    char want[512];
    snprintf(want, sizeof(want),
             "%s holds only the server certificate (CN = localhost), and its issuer CN = t "
             "intermediate is neither in the file nor known to this machine",
             ph_path("cert.pem"));
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_OK, NULL);
    expect_with(c, pki.leaf_key, trust_root, NULL, MOAT_V_OK, MOAT_V_MISSING_INTERMEDIATE,
                NEEDLES(want, "Served anyway", "(a) if CN = t intermediate is an intermediate CA",
                        "append the intermediate's certificate to", "full-chain file",
                        "(b) if CN = t intermediate is your own root CA", "nothing to do",
                        "cert_ca ROOT.pem", "--ca ROOT.pem"));
    /* Without a trust store the completeness check is skipped: no warning either. */
    expect_with(c, pki.leaf_key, NULL, NULL, MOAT_V_OK, MOAT_V_OK, NULL);
    moat_chain_free(c);

    /* Leaf followed straight by the root: the file holds a certificate that did not issue the
     * one before it, which is certainly wrong; still refused. */
    c = load("skip.pem", pki.leaf, pki.root, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_MISSING_INTERMEDIATE,
                 "missing intermediate: CN = localhost was issued by CN = t intermediate");
    moat_chain_free(c);
}

/* A private root that issues server certificates directly (`openssl x509 -req -CA root.pem`,
 * mkcert): the most common private set-up. */
TEST_CASE(check_private_root_direct)
{
    EVP_PKEY *rk = ph_key();
    X509 *root = ph_cert(&(struct ph_cert_spec){.cn = "private root",
                                                .key = rk,
                                                .nb_offset = -PH_DAY,
                                                .na_offset = 3650 * PH_DAY,
                                                .bc = "critical,CA:TRUE",
                                                .ku = "critical,keyCertSign,cRLSign"});
    X509 *leaf = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                                .key = pki.leaf_key,
                                                .issuer = root,
                                                .issuer_key = rk,
                                                .nb_offset = -PH_DAY,
                                                .na_offset = 90 * PH_DAY,
                                                .bc = "CA:FALSE",
                                                .eku = "serverAuth",
                                                .san = "DNS:localhost"});
    X509_STORE *empty = X509_STORE_new();
    X509_STORE *mine = X509_STORE_new();
    X509_STORE_add_cert(mine, root);
    struct moat_chain *c = load("direct.pem", leaf, NULL, NULL, NULL);
    /* Nothing knows the root: served with the warning. */
    expect_with(c, pki.leaf_key, empty, NULL, MOAT_V_OK, MOAT_V_MISSING_INTERMEDIATE,
                NEEDLES("issuer CN = private root is neither in the file nor known",
                        "your own root CA", "intermediate CA"));
    /* The root named as cert_ca: checked, no warning. */
    expect_with(c, pki.leaf_key, empty, mine, MOAT_V_OK, MOAT_V_OK, NULL);
    /* The root in `trust` (the machine knows it): no warning either. */
    expect_with(c, pki.leaf_key, mine, NULL, MOAT_V_OK, MOAT_V_OK, NULL);
    /* Another CA named as cert_ca: refused, saying it is the wrong CA. */
    expect_with(c, pki.leaf_key, empty, trust_root, MOAT_V_UNKNOWN_ISSUER, MOAT_V_OK,
                NEEDLES("wrong CA", "issued by CN = private root", "anchor.pem",
                        "that holds CN = t root", "another CA"));
    /* A CA with the same name but another key: refused for the signature. */
    EVP_PKEY *rk2 = ph_key();
    X509 *twin = ph_cert(&(struct ph_cert_spec){.cn = "private root",
                                                .key = rk2,
                                                .nb_offset = -PH_DAY,
                                                .na_offset = 3650 * PH_DAY,
                                                .bc = "critical,CA:TRUE",
                                                .ku = "critical,keyCertSign,cRLSign"});
    X509_STORE *twins = X509_STORE_new();
    X509_STORE_add_cert(twins, twin);
    expect_with(c, pki.leaf_key, empty, twins, MOAT_V_BAD_SIGNATURE, MOAT_V_OK,
                NEEDLES("bad signature", "anchor.pem holds a CA named CN = private root",
                        "did not sign it"));
    /* The same twin in the machine's trust only: a warning, not a refusal. */
    expect_with(c, pki.leaf_key, twins, NULL, MOAT_V_OK, MOAT_V_BAD_SIGNATURE,
                NEEDLES("trusts a CA of that name, but not the one that signed it"));
    /* What is certainly wrong is still refused with cert_ca given. */
    expect_with(c, pki.int_key, empty, mine, MOAT_V_KEY_MISMATCH, MOAT_V_OK,
                NEEDLES("does not match the private key"));
    moat_chain_free(c);
    /* The root appended to the file: fine with it as cert_ca, wrong CA with another. */
    c = load("direct-root.pem", leaf, root, NULL, NULL);
    expect_with(c, pki.leaf_key, empty, mine, MOAT_V_OK, MOAT_V_OK, NULL);
    expect_with(c, pki.leaf_key, empty, trust_root, MOAT_V_UNKNOWN_ISSUER, MOAT_V_OK,
                NEEDLES("wrong CA", "ends with the root CN = private root"));
    moat_chain_free(c);

    /* An expired root named as cert_ca: clients refuse the chain. */
    X509 *old = ph_cert(&(struct ph_cert_spec){.cn = "private root",
                                               .key = rk,
                                               .nb_offset = -400 * PH_DAY,
                                               .na_offset = -PH_DAY,
                                               .bc = "critical,CA:TRUE",
                                               .ku = "critical,keyCertSign,cRLSign"});
    X509_STORE *olds = X509_STORE_new();
    X509_STORE_add_cert(olds, old);
    c = load("direct2.pem", leaf, NULL, NULL, NULL);
    expect_with(c, pki.leaf_key, empty, olds, MOAT_V_EXPIRED, MOAT_V_OK,
                NEEDLES("the CA CN = private root in anchor.pem", "expired on"));
    moat_chain_free(c);

    /* An issuer that is not a CA (CA:FALSE) named as cert_ca. */
    EVP_PKEY *nk = ph_key();
    X509 *notca = ph_cert(&(struct ph_cert_spec){.cn = "not a ca",
                                                 .key = nk,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = PH_DAY * 30,
                                                 .bc = "critical,CA:FALSE"});
    X509 *leaf3 = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                                 .key = pki.leaf_key,
                                                 .issuer = notca,
                                                 .issuer_key = nk,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = 20 * PH_DAY,
                                                 .eku = "serverAuth"});
    X509_STORE *notcas = X509_STORE_new();
    X509_STORE_add_cert(notcas, notca);
    c = load("notca.pem", leaf3, NULL, NULL, NULL);
    expect_with(c, pki.leaf_key, empty, notcas, MOAT_V_NOT_CA, MOAT_V_OK,
                NEEDLES("is not a CA certificate"));
    moat_chain_free(c);

    /* An expired leaf is refused before anything else, and without a warning. */
    X509 *gone = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                                .key = pki.leaf_key,
                                                .issuer = root,
                                                .issuer_key = rk,
                                                .nb_offset = -90 * PH_DAY,
                                                .na_offset = -PH_DAY,
                                                .eku = "serverAuth"});
    c = load("gone.pem", gone, NULL, NULL, NULL);
    expect_with(c, pki.leaf_key, empty, NULL, MOAT_V_EXPIRED, MOAT_V_OK, NEEDLES("expired on"));
    expect_with(c, pki.leaf_key, empty, mine, MOAT_V_EXPIRED, MOAT_V_OK, NEEDLES("expired on"));
    moat_chain_free(c);

    X509_free(gone);
    X509_free(leaf3);
    X509_free(notca);
    EVP_PKEY_free(nk);
    X509_STORE_free(notcas);
    X509_free(old);
    X509_STORE_free(olds);
    X509_free(twin);
    EVP_PKEY_free(rk2);
    X509_STORE_free(twins);
    X509_STORE_free(mine);
    X509_STORE_free(empty);
    X509_free(leaf);
    X509_free(root);
    EVP_PKEY_free(rk);
}

TEST_CASE(check_anchor_with_intermediates)
{
    /* cert_ca naming the root of a two-level CA. */
    struct moat_chain *c = load("a-full.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_with(c, pki.leaf_key, NULL, trust_root, MOAT_V_OK, MOAT_V_OK, NULL);
    moat_chain_free(c);
    c = load("a-full-root.pem", pki.leaf, pki.inter, pki.root, NULL);
    expect_with(c, pki.leaf_key, NULL, trust_root, MOAT_V_OK, MOAT_V_OK, NULL);
    moat_chain_free(c);
    /* The leaf alone while cert_ca names the root: the intermediate is certainly needed by
     * clients that trust this root, but moat cannot tell it from another CA: refused, with
     * both fixes. */
    c = load("a-leaf.pem", pki.leaf, NULL, NULL, NULL);
    expect_with(c, pki.leaf_key, NULL, trust_root, MOAT_V_UNKNOWN_ISSUER, MOAT_V_OK,
                NEEDLES("issued by CN = t intermediate, which is neither in the file nor in "
                        "anchor.pem",
                        "an intermediate between them is missing", "full-chain file"));
    /* cert_ca holds intermediate and root, the file only the leaf: served, but warned. */
    X509_STORE *both = X509_STORE_new();
    X509_STORE_add_cert(both, pki.root);
    X509_STORE_add_cert(both, pki.inter);
    expect_with(c, pki.leaf_key, NULL, both, MOAT_V_OK, MOAT_V_MISSING_INTERMEDIATE,
                NEEDLES("issued by the intermediate CN = t intermediate, which is in anchor.pem "
                        "but not in",
                        "clients that trust only the root will refuse it"));
    moat_chain_free(c);
    /* cert_ca naming the intermediate that the file carries. */
    X509_STORE *inter = X509_STORE_new();
    X509_STORE_add_cert(inter, pki.inter);
    c = load("a-inter.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_with(c, pki.leaf_key, NULL, inter, MOAT_V_OK, MOAT_V_OK, NULL);
    /* Wrong order and key mismatch are refused whatever the anchor says. */
    expect_with(c, pki.int_key, NULL, both, MOAT_V_KEY_MISMATCH, MOAT_V_OK, NULL);
    moat_chain_free(c);
    c = load("a-mixed.pem", pki.leaf, pki.root, pki.inter, NULL);
    expect_with(c, pki.leaf_key, NULL, both, MOAT_V_BAD_SIGNATURE, MOAT_V_OK,
                NEEDLES("wrong order"));
    moat_chain_free(c);
    X509_STORE_free(inter);
    X509_STORE_free(both);
}

TEST_CASE(check_unknown_root)
{
    /* Leaf + intermediate, but nobody trusts the root: served with a warning worded for a
     * file that is already a full chain (no "use the fullchain file"). */
    X509_STORE *empty = X509_STORE_new();
    struct moat_chain *c = load("unknown.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, empty, time(NULL), MOAT_V_OK, NULL);
    struct warnings w = {0};
    struct moat_chain_check_opts o = {
        .key = pki.leaf_key, .trust = empty, .now = time(NULL), .warn = collect, .warn_arg = &w};
    EXPECT_INT(moat_chain_check_with(c, &o, NULL, NULL).kind, MOAT_OK);
    EXPECT_INT(w.n, 1);
    EXPECT_INT(w.kind, MOAT_V_UNKNOWN_ISSUER);
    EXPECT(ph_contains(w.msg, "the last certificate (#2, CN = t intermediate) was issued by CN "
                              "= t root, normally a root, which this machine does not know"));
    EXPECT(ph_contains(w.msg, "fine if your clients trust CN = t root"));
    EXPECT(ph_contains(w.msg, "cert_ca ROOT.pem"));
    EXPECT(strstr(w.msg, "fullchain") == NULL);
    EXPECT(strstr(w.msg, "full-chain") == NULL);
    EXPECT(strstr(w.msg, "append") == NULL);
    moat_chain_free(c);
    X509_STORE_free(empty);
}

TEST_CASE(check_wrong_order)
{
    /* The issuer first, then the leaf. The leaf check runs on the first certificate, so a
     * reversed file surfaces as "a CA certificate, not a server certificate"... unless we give
     * it the leaf's key; both must name the problem clearly. */
    struct moat_chain *c = load("reversed.pem", pki.inter, pki.leaf, NULL, NULL);
    expect_check(c, NULL, trust_root, time(NULL), MOAT_V_NOT_CA, "CA:TRUE");
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_KEY_MISMATCH, NULL);
    moat_chain_free(c);

    /* leaf, root, intermediate: #2 does not issue #1, but #3 does. */
    c = load("mixed.pem", pki.leaf, pki.root, pki.inter, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_BAD_SIGNATURE,
                 "wrong order: #1 (CN = localhost) was issued by #3 (CN = t intermediate)");
    moat_chain_free(c);

    /* A root in the middle. */
    c = load("rootmid.pem", pki.leaf, pki.inter, pki.root, pki.inter);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_BAD_SIGNATURE,
                 "is a root but more certificates follow it");
    moat_chain_free(c);
}

TEST_CASE(check_same_name_other_key)
{
    /* An intermediate with the right name but another key (an old or re-keyed intermediate). */
    struct ph_pki other;
    ph_pki_make(&other, "t"); /* same names, different keys */
    struct moat_chain *c = load("rekeyed.pem", pki.leaf, other.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_BAD_SIGNATURE, "did not sign it");
    moat_chain_free(c);
    /* Last certificate issued by a same-named root that is not the trusted one: this machine
     * trusts another CA of that name, which clients that trust the real one do not care
     * about. A warning, not a refusal (only cert_ca makes it certain). */
    c = load("otherroot.pem", other.leaf, other.inter, NULL, NULL);
    expect_check(c, other.leaf_key, trust_root, time(NULL), MOAT_V_OK, NULL);
    expect_with(c, other.leaf_key, trust_root, NULL, MOAT_V_OK, MOAT_V_BAD_SIGNATURE,
                NEEDLES("trusts a CA of that name, but not the one that signed it"));
    X509_STORE *anchor = X509_STORE_new();
    X509_STORE_add_cert(anchor, pki.root);
    expect_with(c, other.leaf_key, NULL, anchor, MOAT_V_BAD_SIGNATURE, MOAT_V_OK,
                NEEDLES("bad signature", "holds a CA named CN = t root"));
    moat_chain_free(c);
    /* Without key identifiers the same. */
    X509 *noaki = ph_cert(&(struct ph_cert_spec){.cn = "t intermediate",
                                                 .key = other.int_key,
                                                 .issuer = other.root,
                                                 .issuer_key = other.root_key,
                                                 .nb_offset = -PH_DAY,
                                                 .na_offset = PH_DAY,
                                                 .bc = "critical,CA:TRUE",
                                                 .no_ski = 1});
    c = load("noaki.pem", other.leaf, noaki, NULL, NULL);
    expect_with(c, other.leaf_key, trust_root, NULL, MOAT_V_OK, MOAT_V_BAD_SIGNATURE,
                NEEDLES("names CN = t root as its issuer"));
    expect_with(c, other.leaf_key, NULL, anchor, MOAT_V_BAD_SIGNATURE, MOAT_V_OK,
                NEEDLES("did not sign it"));
    moat_chain_free(c);
    X509_STORE_free(anchor);
    X509_free(noaki);
    ph_pki_free(&other);
}

TEST_CASE(check_non_ca_issuer)
{
    /* A "leaf" that issued another leaf: clients refuse (RFC 5280 §4.2.1.9). */
    X509 *sub = ph_cert(&(struct ph_cert_spec){.cn = "sub",
                                               .key = pki.int_key,
                                               .issuer = pki.leaf,
                                               .issuer_key = pki.leaf_key,
                                               .nb_offset = -PH_DAY,
                                               .na_offset = PH_DAY,
                                               .eku = "serverAuth"});
    struct moat_chain *c = load("nonca.pem", sub, pki.leaf, pki.inter, NULL);
    expect_check(c, pki.int_key, trust_root, time(NULL), MOAT_V_NOT_CA, "not a CA certificate");
    moat_chain_free(c);
    X509_free(sub);
}

TEST_CASE(check_malformed_extensions)
{
    /* Found by fuzz_pem: a certificate whose extensions OpenSSL marks invalid (here, two
     * basicConstraints) made the check leave entries in OpenSSL's error queue. */
    X509 *x = ph_cert(&(struct ph_cert_spec){.cn = "dup",
                                             .key = pki.leaf_key,
                                             .nb_offset = -PH_DAY,
                                             .na_offset = PH_DAY,
                                             .bc = "CA:FALSE"});
    EXPECT(ph_ext(x, NULL, NID_basic_constraints, "CA:FALSE"));
    EXPECT(X509_sign(x, pki.leaf_key, EVP_sha256()) > 0);
    struct moat_chain *c = load("dup.pem", x, NULL, NULL, NULL);
    expect_check(c, pki.leaf_key, trust_root, time(NULL), MOAT_V_OTHER, "malformed extensions");
    moat_chain_free(c);
    X509_free(x);
}

TEST_CASE(covers_names)
{
    X509 *x = ph_cert(&(struct ph_cert_spec){
        .cn = "cn-only.example",
        .key = pki.leaf_key,
        .nb_offset = -PH_DAY,
        .na_offset = PH_DAY,
        .san = "DNS:Example.TEST,DNS:*.dev.example.test,IP:127.0.0.1,IP:::1"});
    struct moat_chain *c = load("names.pem", x, NULL, NULL, NULL);
    EXPECT_INT(moat_chain_covers_name(c, "example.test"), 1);
    EXPECT_INT(moat_chain_covers_name(c, "EXAMPLE.test."), 1);
    EXPECT_INT(moat_chain_covers_name(c, "a.dev.example.test"), 1);
    EXPECT_INT(moat_chain_covers_name(c, "dev.example.test"), 0);
    EXPECT_INT(moat_chain_covers_name(c, "a.b.dev.example.test"), 0);
    EXPECT_INT(moat_chain_covers_name(c, "www.example.test"), 0);
    EXPECT_INT(moat_chain_covers_name(c, "cn-only.example"), 0);
    EXPECT_INT(moat_chain_covers_name(c, "127.0.0.1"), 1);
    EXPECT_INT(moat_chain_covers_name(c, "127.0.0.2"), 0);
    EXPECT_INT(moat_chain_covers_name(c, "::1"), 1);
    EXPECT_INT(moat_chain_covers_name(c, "[::1]"), 1);
    EXPECT_INT(moat_chain_covers_name(c, "[::2]"), 0);
    EXPECT_INT(moat_chain_covers_name(c, ""), 0);
    EXPECT_INT(moat_chain_covers_name(c, "[]"), 0);
    EXPECT_INT(moat_chain_covers_name(c, NULL), 0);
    EXPECT_INT(moat_chain_covers_name(NULL, "example.test"), 0);
    moat_chain_free(c);
    X509_free(x);
    x = ph_cert(&(struct ph_cert_spec){.cn = "partial",
                                       .key = pki.leaf_key,
                                       .nb_offset = -PH_DAY,
                                       .na_offset = PH_DAY,
                                       .san = "DNS:f*.example.test"});
    c = load("partial.pem", x, NULL, NULL, NULL);
    EXPECT_INT(moat_chain_covers_name(c, "foo.example.test"), 0);
    moat_chain_free(c);
    X509_free(x);
}

TEST_CASE(trust_store_files)
{
    const char *rootf = ph_path("trust-root.pem");
    ph_write_certs(rootf, pki.root, NULL, NULL, NULL);
    const char *files[] = {rootf};
    X509_STORE *st = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_trust_store_new(files, 1, 0, &st, &err).kind, MOAT_OK);
    struct moat_chain *c = load("ts.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_check(c, pki.leaf_key, st, time(NULL), MOAT_V_OK, NULL);
    moat_chain_free(c);
    X509_STORE_free(st);

    /* System defaults on top still work (and do not trust our test root by themselves). */
    st = NULL;
    EXPECT_INT(moat_trust_store_new(NULL, 0, 1, &st, &err).kind, MOAT_OK);
    c = load("ts2.pem", pki.leaf, pki.inter, NULL, NULL);
    expect_with(c, pki.leaf_key, st, NULL, MOAT_V_OK, MOAT_V_UNKNOWN_ISSUER, NULL);
    moat_chain_free(c);
    X509_STORE_free(st);

    const char *bad[] = {rootf, ph_path("none.pem")};
    st = (X509_STORE *)1;
    EXPECT_INT(moat_trust_store_new(bad, 2, 0, &st, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(st == NULL);
    EXPECT(ph_contains(err.msg, "none.pem does not exist"));
    const char *keyf = ph_path("trust-key.pem");
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pki.leaf_key, NULL, NULL, 0, NULL, NULL);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    ph_write(keyf, data, (size_t)n, 0600);
    BIO_free(bio);
    const char *bad2[] = {keyf};
    memset(&err, 0, sizeof(err));
    EXPECT_INT(moat_trust_store_new(bad2, 1, 0, &st, &err).kind, MOAT_E_CERT);
    EXPECT_INT(err.nctx, 1);
    EXPECT(ph_contains(err.ctx[0], "CA file"));
}

TEST_CASE(real_verifier_agrees)
{
    /* What moat_chain_check accepts, OpenSSL's own path validation accepts too. */
    struct moat_chain *c = load("agree.pem", pki.leaf, pki.inter, NULL, NULL);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, trust_root, c->leaf, c->extra);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    EXPECT_INT(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    moat_chain_free(c);
}

int main(void)
{
    ph_dir_make();
    ph_pki_make(&pki, "t");
    trust_root = X509_STORE_new();
    X509_STORE_add_cert(trust_root, pki.root);
    RUN(load_keeps_file_order);
    RUN(load_der_and_combined);
    RUN(load_refusals);
    RUN(check_good_chains);
    RUN(check_key_mismatch);
    RUN(check_expired_and_not_yet_valid);
    RUN(check_expired_intermediate);
    RUN(check_leaf_is_ca);
    RUN(check_key_usage);
    RUN(check_missing_intermediate);
    RUN(check_private_root_direct);
    RUN(check_anchor_with_intermediates);
    RUN(check_unknown_root);
    RUN(check_wrong_order);
    RUN(check_same_name_other_key);
    RUN(check_non_ca_issuer);
    RUN(check_malformed_extensions);
    RUN(covers_names);
    RUN(trust_store_files);
    RUN(real_verifier_agrees);
    X509_STORE_free(trust_root);
    ph_pki_free(&pki);
    ph_dir_remove();
    TEST_MAIN_END();
}
