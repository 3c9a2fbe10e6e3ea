/*
 * test_ca.c: the local CA: creation (modes, extensions, lifetimes), reopening, refusals when
 * its files are half there or do not belong together, issuing leaves that OpenSSL (the library
 * and the `openssl verify` command) accepts, and the zero-config reuse/renew logic.
 */
#include "pki/ca.h"

#include "pki/chain.h"
#include "pki_helpers.h"
#include "test.h"

static time_t to_time(const ASN1_TIME *t)
{
    struct tm tm;
    ASN1_TIME_to_tm(t, &tm);
    return timegm(&tm);
}

static struct moat_ca *open_ok(const char *dir, int want_created)
{
    struct moat_ca *ca = NULL;
    int created = -1;
    struct moat_err err = {0};
    moat_rc rc = moat_ca_open_or_create(dir, NULL, &ca, &created, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (rc.kind != MOAT_OK) {
        char buf[1024];
        fprintf(stderr, "  %s\n", moat_err_str(&err, buf, sizeof(buf)));
    }
    EXPECT_INT(created, want_created);
    return ca;
}

static void expect_open_fails(const char *dir, enum moat_errkind kind, const char *needle)
{
    struct moat_ca *ca = (struct moat_ca *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_open_or_create(dir, NULL, &ca, NULL, &err).kind, kind);
    EXPECT(ca == NULL);
    EXPECT(ph_contains(err.msg, needle));
    EXPECT_INT(ERR_peek_error(), 0);
}

static int bc_pathlen(X509 *x)
{
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    int r = bc == NULL ? -2 : bc->pathlen == NULL ? -1 : (int)ASN1_INTEGER_get(bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
    return r;
}

static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

TEST_CASE(create_then_reopen)
{
    const char *dir = ph_path("state/ca");
    struct moat_ca *ca = open_ok(dir, 1);
    if (ca == NULL) {
        return;
    }
    EXPECT_INT(ph_mode(dir), 0700);
    EXPECT_INT(ph_mode(ph_path("state/ca/root.key")), 0600);
    EXPECT_INT(ph_mode(ph_path("state/ca/intermediate.key")), 0600);
    EXPECT_INT(ph_mode(ph_path("state/ca/root.pem")), 0644);
    EXPECT_INT(ph_mode(ph_path("state/ca/intermediate.pem")), 0644);
    EXPECT(!ph_has_tmp(dir));

    /* Root: self-signed, CA pathlen 1, critical BC and KU, SKI, ~10 years, P-256. */
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(ca->root), NID_commonName, cn, sizeof(cn));
    EXPECT(strncmp(cn, "moat local CA ", 14) == 0 && strchr(cn, '@') != NULL);
    EXPECT_INT(X509_self_signed(ca->root, 1), 1);
    EXPECT_INT(bc_pathlen(ca->root), 1);
    EXPECT(ext_critical(ca->root, NID_basic_constraints));
    EXPECT(ext_critical(ca->root, NID_key_usage));
    EXPECT_INT(X509_get_key_usage(ca->root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    EXPECT(X509_get0_subject_key_id(ca->root) != NULL);
    time_t now = time(NULL);
    long root_days = (long)((to_time(X509_get0_notAfter(ca->root)) - now) / PH_DAY);
    EXPECT(root_days >= 3650 && root_days <= 3653);
    char desc[32];
    EXPECT_STR(moat_key_describe(X509_get0_pubkey(ca->root), desc, sizeof(desc)), "ECDSA P-256");

    /* Intermediate: pathlen 0, signed by the root, AKI = root SKI, <= root's end, 5 years. */
    EXPECT_INT(bc_pathlen(ca->cert), 0);
    EXPECT(ext_critical(ca->cert, NID_basic_constraints));
    EXPECT_INT(X509_verify(ca->cert, X509_get0_pubkey(ca->root)), 1);
    EXPECT_INT(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(ca->cert),
                                     X509_get0_subject_key_id(ca->root)),
               0);
    EXPECT(to_time(X509_get0_notAfter(ca->cert)) <= to_time(X509_get0_notAfter(ca->root)));
    long int_days = (long)((to_time(X509_get0_notAfter(ca->cert)) - now) / PH_DAY);
    EXPECT(int_days >= 1824 && int_days <= 1827);
    EXPECT_INT(EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key), 1);

    struct moat_ca *again = open_ok(dir, 0);
    if (again != NULL) {
        EXPECT_INT(X509_cmp(again->root, ca->root), 0);
        EXPECT_INT(X509_cmp(again->cert, ca->cert), 0);
        EXPECT_INT(EVP_PKEY_eq(again->key, ca->key), 1);
        EXPECT_STR(again->dir, dir);
    }
    moat_ca_free(again);
    moat_ca_free(ca);
    moat_ca_free(NULL);
}

TEST_CASE(custom_and_long_names)
{
    struct moat_ca *ca = NULL;
    EXPECT_INT(moat_ca_open_or_create(ph_path("named"), "Acme dev CA", &ca, NULL, NULL).kind,
               MOAT_OK);
    char cn[128];
    if (ca != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca->root), NID_commonName, cn, sizeof(cn));
        EXPECT_STR(cn, "Acme dev CA");
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca->cert), NID_commonName, cn, sizeof(cn));
        EXPECT_STR(cn, "Acme dev CA intermediate");
    }
    moat_ca_free(ca);
    ca = NULL;
    /* Longer than the 64-byte CN limit: cut, still valid. */
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    EXPECT_INT(moat_ca_open_or_create(ph_path("longname"), longname, &ca, NULL, NULL).kind,
               MOAT_OK);
    if (ca != NULL) {
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(ca->root), NID_commonName, cn,
                                          sizeof(cn));
        EXPECT_INT(n, 64);
        n = X509_NAME_get_text_by_NID(X509_get_subject_name(ca->cert), NID_commonName, cn,
                                      sizeof(cn));
        EXPECT(n <= 64 && strstr(cn, " intermediate") != NULL);
    }
    moat_ca_free(ca);
}

static void verify_with_store(struct moat_ca *ca, X509 *leaf, const char *host, const char *ip)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, ca->root);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    sk_X509_push(untrusted, ca->cert);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf, untrusted);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    /* Strict mode catches profile mistakes (RFC 5280 conformance) that lax mode forgives. */
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
    if (host != NULL) {
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    }
    if (ip != NULL) {
        X509_VERIFY_PARAM_set1_ip_asc(param, ip);
    }
    int ok = X509_verify_cert(ctx);
    EXPECT_INT(ok, 1);
    if (ok != 1) {
        fprintf(stderr, "  verify: %s\n",
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(st);
}

TEST_CASE(issue_server_leaf)
{
    struct moat_ca *ca = open_ok(ph_path("state/ca"), 0);
    if (ca == NULL) {
        return;
    }
    const char *names[] = {"localhost", "127.0.0.1", "[::1]", "*.dev.test"};
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_issue_server(ca, names, 4, 30, MOAT_KEY_EC_P256, &leaf, &key, &err).kind,
               MOAT_OK);
    if (leaf == NULL) {
        moat_ca_free(ca);
        return;
    }
    EXPECT_INT(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
    EXPECT_STR(cn, "localhost");
    EXPECT_INT(X509_check_ca(leaf), 0);
    EXPECT(ext_critical(leaf, NID_key_usage));
    EXPECT_INT(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    EXPECT_INT(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
    EXPECT(X509_get0_subject_key_id(leaf) != NULL);
    EXPECT_INT(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf), X509_get0_subject_key_id(ca->cert)),
        0);
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    EXPECT_INT(BN_num_bits(serial), 128);
    BN_free(serial);
    time_t now = time(NULL);
    long back = (long)(now - to_time(X509_get0_notBefore(leaf)));
    EXPECT(back >= 3590 && back <= 3700);
    long life = (long)(to_time(X509_get0_notAfter(leaf)) - now);
    EXPECT(life > 30 * PH_DAY - 60 && life <= 30 * PH_DAY);

    verify_with_store(ca, leaf, "localhost", NULL);
    verify_with_store(ca, leaf, "x.dev.test", NULL);
    verify_with_store(ca, leaf, NULL, "127.0.0.1");
    verify_with_store(ca, leaf, NULL, "::1");

    /* The `openssl` command agrees, as a TLS server certificate for these names. */
    ph_write_certs(ph_path("leaf.pem"), leaf, NULL, NULL, NULL);
    ph_write_certs(ph_path("root.pem"), ca->root, NULL, NULL, NULL);
    ph_write_certs(ph_path("int.pem"), ca->cert, NULL, NULL, NULL);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl verify -x509_strict -purpose sslserver -verify_hostname localhost "
             "-CAfile %s -untrusted %s %s >/dev/null 2>&1",
             ph_path("root.pem"), ph_path("int.pem"), ph_path("leaf.pem"));
    EXPECT_INT(system(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl verify -verify_hostname example.com -CAfile %s -untrusted %s %s "
             ">/dev/null 2>&1",
             ph_path("root.pem"), ph_path("int.pem"), ph_path("leaf.pem"));
    EXPECT(system(cmd) != 0);
    /* Without the intermediate, verification must fail (proves -untrusted mattered). */
    snprintf(cmd, sizeof(cmd), "openssl verify -CAfile %s %s >/dev/null 2>&1", ph_path("root.pem"),
             ph_path("leaf.pem"));
    EXPECT(system(cmd) != 0);

    /* moat's own start-up check accepts it too. */
    char *pem = ph_pem(leaf, ca->cert, NULL, NULL);
    struct moat_chain *c = NULL;
    EXPECT_INT(moat_chain_load_mem(pem, strlen(pem), "leaf.pem", &c, NULL).kind, MOAT_OK);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, ca->root);
    EXPECT_INT(moat_chain_check(c, key, st, time(NULL), &err).kind, MOAT_OK);
    for (size_t i = 0; i < 4; i++) {
        EXPECT_INT(moat_chain_covers_name(c, names[i][0] == '*' ? "a.dev.test" : names[i]), 1);
    }
    EXPECT_INT(moat_chain_covers_name(c, "dev.test"), 0);
    X509_STORE_free(st);
    moat_chain_free(c);
    free(pem);
    X509_free(leaf);
    EVP_PKEY_free(key);
    moat_ca_free(ca);
}

TEST_CASE(issue_other_key_types)
{
    struct moat_ca *ca = open_ok(ph_path("state/ca"), 0);
    const char *names[] = {"rsa.test"};
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    EXPECT_INT(moat_ca_issue_server(ca, names, 1, 1, MOAT_KEY_RSA2048, &leaf, &key, NULL).kind,
               MOAT_OK);
    EXPECT_INT(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    verify_with_store(ca, leaf, "rsa.test", NULL);
    X509_free(leaf);
    EVP_PKEY_free(key);
    EXPECT_INT(moat_ca_issue_server(ca, names, 1, 825, MOAT_KEY_ED25519, &leaf, &key, NULL).kind,
               MOAT_OK);
    verify_with_store(ca, leaf, "rsa.test", NULL);
    X509_free(leaf);
    EVP_PKEY_free(key);
    moat_ca_free(ca);
}

TEST_CASE(issue_refusals)
{
    struct moat_ca *ca = open_ok(ph_path("state/ca"), 0);
    X509 *leaf = (X509 *)1;
    EVP_PKEY *key = (EVP_PKEY *)1;
    const char *ok[] = {"ok.test"};
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_issue_server(ca, ok, 1, 0, MOAT_KEY_EC_P256, &leaf, &key, &err).kind,
               MOAT_E_USAGE);
    EXPECT(leaf == NULL && key == NULL);
    EXPECT_INT(moat_ca_issue_server(ca, ok, 1, 826, MOAT_KEY_EC_P256, &leaf, &key, &err).kind,
               MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "825"));
    EXPECT_INT(moat_ca_issue_server(ca, ok, 0, 30, MOAT_KEY_EC_P256, &leaf, &key, &err).kind,
               MOAT_E_USAGE);
    static const char *bad[] = {"",          "exa mple.test", "*.com",     "a.*.test",
                                "-a.test",   "a-.test",       "a..test",   ".a.test",
                                "a.test/x",  "ünï.test",      "*",         "a_b.test",
                                "1.2.3.4.5", "[1.2.3.4]x",    "a.test\nb", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *names[] = {"good.test", bad[i]};
        moat_rc rc = moat_ca_issue_server(ca, names, 2, 30, MOAT_KEY_EC_P256, &leaf, &key, &err);
        EXPECT_INT(rc.kind, MOAT_E_USAGE);
        if (rc.kind == MOAT_OK) {
            fprintf(stderr, "  accepted \"%s\"\n", bad[i] ? bad[i] : "(null)");
            X509_free(leaf);
            EVP_PKEY_free(key);
        }
    }
    char label63[80], label64[80];
    memset(label63, 'a', 63);
    snprintf(label63 + 63, sizeof(label63) - 63, ".test");
    memset(label64, 'a', 64);
    snprintf(label64 + 64, sizeof(label64) - 64, ".test");
    const char *n63[] = {label63}, *n64[] = {label64};
    EXPECT_INT(moat_ca_issue_server(ca, n64, 1, 30, MOAT_KEY_EC_P256, &leaf, &key, &err).kind,
               MOAT_E_USAGE);
    EXPECT_INT(moat_ca_issue_server(ca, n63, 1, 30, MOAT_KEY_EC_P256, &leaf, &key, &err).kind,
               MOAT_OK);
    /* 68 bytes: too long for the CN, so the certificate has no CN, only the SAN. */
    int cnlen = X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, NULL, 0);
    EXPECT_INT(cnlen, -1);
    X509_free(leaf);
    EVP_PKEY_free(key);
    moat_ca_free(ca);
}

TEST_CASE(refuses_half_there_and_mismatched)
{
    const char *dir = ph_path("half");
    struct moat_ca *ca = open_ok(dir, 1);
    moat_ca_free(ca);
    char k[256], saved[256];
    snprintf(k, sizeof(k), "%s/intermediate.key", dir);
    snprintf(saved, sizeof(saved), "%s/saved.key", ph_dir);
    EXPECT_INT(rename(k, saved), 0);
    expect_open_fails(dir, MOAT_E_CONFIG,
                      "is incomplete (has root.pem, root.key, "
                      "intermediate.pem; missing intermediate.key)");
    EXPECT_INT(rename(saved, k), 0);

    /* The root key may be offline. */
    char rk[256], rsaved[256];
    snprintf(rk, sizeof(rk), "%s/root.key", dir);
    snprintf(rsaved, sizeof(rsaved), "%s/root-offline.key", ph_dir);
    EXPECT_INT(rename(rk, rsaved), 0);
    ca = open_ok(dir, 0);
    moat_ca_free(ca);

    /* Damaged key file: the loader's words plus where it happened. */
    char *good = ph_read(k, NULL);
    ph_write_str(k, "garbage");
    {
        struct moat_ca *x = NULL;
        struct moat_err err = {0};
        EXPECT_INT(moat_ca_open_or_create(dir, NULL, &x, NULL, &err).kind, MOAT_E_CERT);
        EXPECT(ph_contains(err.msg, "intermediate.key is neither PEM nor DER"));
        EXPECT(err.nctx == 1 && ph_contains(err.ctx[0], "local CA"));
    }

    /* Files from two different CAs. */
    const char *other = ph_path("other");
    ca = open_ok(other, 1);
    moat_ca_free(ca);
    char ok2[256];
    snprintf(ok2, sizeof(ok2), "%s/intermediate.key", other);
    char *otherkey = ph_read(ok2, NULL);
    ph_write_str(k, otherkey);
    expect_open_fails(dir, MOAT_E_CONFIG, "intermediate.key does not match");
    ph_write_str(k, good);
    ca = open_ok(dir, 0);
    moat_ca_free(ca);

    char op[256], ip[256];
    snprintf(op, sizeof(op), "%s/intermediate.pem", other);
    snprintf(ip, sizeof(ip), "%s/intermediate.pem", dir);
    char *goodcert = ph_read(ip, NULL);
    char *othercert = ph_read(op, NULL);
    ph_write(ip, othercert, strlen(othercert), 0644);
    expect_open_fails(dir, MOAT_E_CONFIG, "is not a CA certificate signed by");
    ph_write(ip, goodcert, strlen(goodcert), 0644);

    /* root.key back, but from the other CA. */
    char ork[256];
    snprintf(ork, sizeof(ork), "%s/root.key", other);
    char *otherroot = ph_read(ork, NULL);
    ph_write_str(rk, otherroot);
    expect_open_fails(dir, MOAT_E_CONFIG, "root.key does not match");
    EXPECT_INT(rename(rsaved, rk), 0);
    ca = open_ok(dir, 0);
    moat_ca_free(ca);

    /* A leaf certificate in place of the root. */
    struct ph_pki pki;
    ph_pki_make(&pki, "x");
    char rp[256];
    snprintf(rp, sizeof(rp), "%s/root.pem", dir);
    char *goodroot = ph_read(rp, NULL);
    ph_write_certs(rp, pki.leaf, NULL, NULL, NULL);
    expect_open_fails(dir, MOAT_E_CONFIG, "is not a self-signed CA certificate");
    ph_write(rp, goodroot, strlen(goodroot), 0644);
    ph_pki_free(&pki);

    free(good);
    free(otherkey);
    free(goodcert);
    free(othercert);
    free(otherroot);
    free(goodroot);
}

static int open_as_other(void *arg)
{
    struct moat_ca *ca = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_ca_open_or_create(arg, NULL, &ca, NULL, &err);
    moat_ca_free(ca);
    return rc.kind == MOAT_E_IO ? 0 : 1;
}

TEST_CASE(refuses_unreadable)
{
    /* The CA folder is 0700 and owned by us: another user gets a clear I/O error. */
    EXPECT_INT(ph_as_nobody(open_as_other, (void *)ph_path("state/ca")), 0);
    expect_open_fails(ph_path("state/ca/root.pem"), MOAT_E_CONFIG, "not a folder");
}

/* ---- zero-config leaves ---- */

static void ensure(struct moat_ca *ca, const char *const *names, size_t n, int want_issued)
{
    char *cp = NULL, *kp = NULL;
    int issued = -1;
    struct moat_err err = {0};
    moat_rc rc = moat_ca_ensure_leaf(ca, ph_path("state/certs"), "localhost", names, n, &cp, &kp,
                                     &issued, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (rc.kind != MOAT_OK) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    EXPECT_INT(issued, want_issued);
    EXPECT_STR(cp, ph_path("state/certs/localhost.pem"));
    EXPECT_STR(kp, ph_path("state/certs/localhost.key"));
    EXPECT_INT(ph_mode(kp), 0600);
    EXPECT_INT(ph_mode(ph_path("state/certs")), 0700);

    struct moat_chain *c = NULL;
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_chain_load(cp, &c, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_key_load(kp, &k, NULL).kind, MOAT_OK);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, ca->root);
    if (c != NULL) {
        EXPECT_INT(sk_X509_num(c->extra), 1);
        EXPECT_INT(moat_chain_check(c, k, st, time(NULL), NULL).kind, MOAT_OK);
        for (size_t i = 0; i < n; i++) {
            EXPECT_INT(moat_chain_covers_name(c, names[i]), 1);
        }
    }
    X509_STORE_free(st);
    moat_chain_free(c);
    EVP_PKEY_free(k);
    free(cp);
    free(kp);
}

TEST_CASE(ensure_leaf_reuses_and_renews)
{
    struct moat_ca *ca = open_ok(ph_path("state/ca"), 0);
    if (ca == NULL) {
        return;
    }
    const char *names[] = {"localhost", "127.0.0.1", "::1"};
    ensure(ca, names, 3, 1);
    char *first = ph_read(ph_path("state/certs/localhost.pem"), NULL);
    ensure(ca, names, 3, 0);
    char *second = ph_read(ph_path("state/certs/localhost.pem"), NULL);
    EXPECT_STR(second, first);
    free(second);
    /* A subset of names is still covered: reuse. A new name: reissue. */
    ensure(ca, names, 1, 0);
    const char *more[] = {"localhost", "127.0.0.1", "::1", "moat.test"};
    ensure(ca, more, 4, 1);
    ensure(ca, more, 4, 0);
    EXPECT(!ph_has_tmp(ph_path("state/certs")));

    /* Key replaced by another one: reissue. */
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_key_new(MOAT_KEY_EC_P256, &k, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_key_save(ph_path("state/certs/localhost.key"), k, 1, NULL).kind, MOAT_OK);
    EVP_PKEY_free(k);
    ensure(ca, more, 4, 1);

    /* Less than a third of its life left: 29 of 30 days used. */
    X509 *old = NULL;
    EXPECT_INT(moat_key_load(ph_path("state/certs/localhost.key"), &k, NULL).kind, MOAT_OK);
    old = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                         .key = k,
                                         .issuer = ca->cert,
                                         .issuer_key = ca->key,
                                         .nb_offset = -29 * PH_DAY,
                                         .na_offset = PH_DAY,
                                         .bc = "CA:FALSE",
                                         .eku = "serverAuth",
                                         .san = "DNS:localhost"});
    ph_write_certs(ph_path("state/certs/localhost.pem"), old, ca->cert, NULL, NULL);
    const char *one[] = {"localhost"};
    ensure(ca, one, 1, 1);
    /* The same with 20 of 30 days left is reused. */
    X509_free(old);
    EVP_PKEY_free(k);
    EXPECT_INT(moat_key_load(ph_path("state/certs/localhost.key"), &k, NULL).kind, MOAT_OK);
    old = ph_cert(&(struct ph_cert_spec){.cn = "localhost",
                                         .key = k,
                                         .issuer = ca->cert,
                                         .issuer_key = ca->key,
                                         .nb_offset = -10 * PH_DAY,
                                         .na_offset = 20 * PH_DAY,
                                         .bc = "CA:FALSE",
                                         .eku = "serverAuth",
                                         .san = "DNS:localhost"});
    ph_write_certs(ph_path("state/certs/localhost.pem"), old, ca->cert, NULL, NULL);
    ensure(ca, one, 1, 0);
    /* Without the intermediate after the leaf: reissue, so clients get the full chain. */
    ph_write_certs(ph_path("state/certs/localhost.pem"), old, NULL, NULL, NULL);
    ensure(ca, one, 1, 1);
    X509_free(old);
    EVP_PKEY_free(k);

    /* Issued by another CA: reissue. Damaged: reissue. */
    struct moat_ca *other = open_ok(ph_path("other"), 0);
    ensure(other, one, 1, 1);
    ensure(ca, one, 1, 1);
    ph_write_str(ph_path("state/certs/localhost.pem"), "junk");
    ensure(ca, one, 1, 1);
    moat_ca_free(other);
    free(first);
    moat_ca_free(ca);
}

TEST_CASE(ensure_leaf_refusals)
{
    struct moat_ca *ca = open_ok(ph_path("state/ca"), 0);
    const char *names[] = {"localhost"};
    char *cp = (char *)1, *kp = (char *)1;
    static const char *labels[] = {"", "../x", "a/b", ".hidden", "a b", NULL};
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        struct moat_err err = {0};
        EXPECT_INT(moat_ca_ensure_leaf(ca, ph_path("state/certs"), labels[i], names, 1, &cp, &kp,
                                       NULL, &err)
                       .kind,
                   MOAT_E_USAGE);
        EXPECT(cp == NULL && kp == NULL);
    }
    const char *bad[] = {"not a name"};
    EXPECT_INT(
        moat_ca_ensure_leaf(ca, ph_path("state/certs"), "x", bad, 1, &cp, &kp, NULL, NULL).kind,
        MOAT_E_USAGE);
    /* certs_dir blocked by a file. */
    ph_write_str(ph_path("blocker"), "x");
    EXPECT_INT(
        moat_ca_ensure_leaf(ca, ph_path("blocker/certs"), "x", names, 1, &cp, &kp, NULL, NULL).kind,
        MOAT_E_CONFIG);
    moat_ca_free(ca);
}

/* ---- moat ca init / intermediate / sign / self-signed ---- */

TEST_CASE(init_options_and_refusals)
{
    const char *permit[] = {"corp.test"};
    struct moat_ca_opts o = {
        .name = "Corp CA", .key_type = MOAT_KEY_EC_P384, .permit = permit, .npermit = 1};
    struct moat_ca *ca = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_init(ph_path("corp"), &o, &ca, &err).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    char desc[64];
    EXPECT_STR(moat_key_describe(ca->key, desc, sizeof(desc)), "ECDSA P-384");
    EXPECT(ext_critical(ca->root, NID_name_constraints));
    EXPECT(ext_critical(ca->cert, NID_name_constraints));
    /* A user-named CA does not claim O=moat. */
    EXPECT_INT(
        X509_NAME_get_index_by_NID(X509_get_subject_name(ca->root), NID_organizationName, -1), -1);
    /* A second init on the same folder is refused, and nothing is touched. */
    char *before = ph_read(ph_path("corp/root.pem"), NULL);
    EXPECT_INT(moat_ca_init(ph_path("corp"), NULL, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "already holds a CA"));
    char *after = ph_read(ph_path("corp/root.pem"), NULL);
    EXPECT_STR(after, before);
    free(before);
    free(after);

    /* Signing: inside the constraints yes, outside no; client names for client certs. */
    EVP_PKEY *k = ph_key();
    X509 *x = NULL;
    const char *in[] = {"www.corp.test"}, *out[] = {"www.other.test"};
    struct moat_ca_leaf l = {.names = in, .n = 1, .days = 30, .pub = k};
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, &err).kind, MOAT_OK);
    X509_free(x);
    l.names = out;
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, &err).kind, MOAT_E_USAGE);
    EXPECT(x == NULL);
    EXPECT(ph_contains(err.msg, "outside the names"));
    const char *person[] = {"ada@corp.test"};
    l.names = person;
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, &err).kind, MOAT_E_USAGE); /* not --client */
    l.client = 1;
    l.days = 3650;
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, &err).kind, MOAT_OK);
    if (x != NULL) {
        EXPECT_INT(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
        /* cut at the intermediate's end (5 years) */
        EXPECT(to_time(X509_get0_notAfter(x)) == to_time(X509_get0_notAfter(ca->cert)));
    }
    X509_free(x);
    l.days = 3651;
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, &err).kind, MOAT_E_USAGE);

    /* The folder's policy applies on the next open. */
    ph_write_str(ph_path("corp/policy"), "deny secret.corp.test\nmax_days 10\n");
    moat_ca_free(ca);
    ca = NULL;
    EXPECT_INT(moat_ca_open(ph_path("corp"), &ca, &err).kind, MOAT_OK);
    const char *secret[] = {"secret.corp.test"};
    struct moat_ca_leaf l2 = {.names = secret, .n = 1, .days = 5, .pub = k};
    EXPECT_INT(moat_ca_sign(ca, &l2, 0, &x, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "refuses"));
    l2.names = in;
    l2.days = 11;
    EXPECT_INT(moat_ca_sign(ca, &l2, 0, &x, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "at most 10 days"));
    ph_write_str(ph_path("corp/policy"), "bogus line\n");
    struct moat_ca *bad = NULL;
    EXPECT_INT(moat_ca_open(ph_path("corp"), &bad, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.where, "policy:1"));
    unlink(ph_path("corp/policy"));

    /* Opening a folder without a CA says how to make one, and creates nothing. */
    EXPECT_INT(moat_ca_open(ph_path("nothing-here"), &bad, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(ph_contains(err.msg, "moat ca init"));
    struct stat st;
    EXPECT(stat(ph_path("nothing-here"), &st) != 0);
    EVP_PKEY_free(k);
    moat_ca_free(ca);
}

TEST_CASE(intermediate_renew_and_offline_root)
{
    struct moat_ca *ca = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_init(ph_path("rot"), NULL, &ca, &err).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    X509 *old = ca->cert;
    X509_up_ref(old);
    moat_ca_free(ca);
    ca = NULL;
    /* Renew in place: new intermediate, old kept under a dated name. */
    EXPECT_INT(moat_ca_intermediate(ph_path("rot"), NULL, NULL, &ca, &err).kind, MOAT_OK);
    if (ca != NULL) {
        EXPECT(X509_cmp(ca->cert, old) != 0);
        EXPECT_INT(ph_count_entries(ph_path("rot")), 7); /* 4 files, 2 archived, .lock */
    }
    moat_ca_free(ca);
    ca = NULL;
    /* A separate issuing CA without the root key. */
    EXPECT_INT(moat_ca_intermediate(ph_path("rot"), ph_path("issuing"), NULL, &ca, &err).kind,
               MOAT_OK);
    struct stat st;
    EXPECT(stat(ph_path("issuing/root.key"), &st) != 0);
    EXPECT_INT(ph_mode(ph_path("issuing/intermediate.key")), 0600);
    if (ca != NULL) {
        EVP_PKEY *k = ph_key();
        const char *names[] = {"a.test"};
        struct moat_ca_leaf l = {.names = names, .n = 1, .days = 1, .pub = k};
        X509 *x = NULL;
        EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, &err).kind, MOAT_OK);
        verify_with_store(ca, x, "a.test", NULL);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    moat_ca_free(ca);
    ca = NULL;
    /* The issuing CA cannot make intermediates (no root key); a used folder is refused. */
    EXPECT_INT(moat_ca_intermediate(ph_path("issuing"), NULL, NULL, &ca, &err).kind,
               MOAT_E_NOTFOUND);
    EXPECT(ph_contains(err.msg, "root.key"));
    EXPECT_INT(moat_ca_intermediate(ph_path("rot"), ph_path("issuing"), NULL, &ca, &err).kind,
               MOAT_E_USAGE);
    X509_free(old);
}

TEST_CASE(self_signed_leaf)
{
    EVP_PKEY *k = ph_key();
    const char *names[] = {"self.test", "127.0.0.1"};
    struct moat_ca_leaf l = {.names = names, .n = 2, .days = 30};
    X509 *x = NULL;
    EXPECT_INT(moat_ca_self_signed(&l, k, 0, &x, NULL).kind, MOAT_OK);
    if (x != NULL) {
        EXPECT_INT(X509_self_signed(x, 1), 1);
        EXPECT_INT(X509_check_ca(x), 0);
        EXPECT_INT(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
    }
    X509_free(x);
    EVP_PKEY *other = ph_key();
    l.pub = other;
    EXPECT_INT(moat_ca_self_signed(&l, k, 0, &x, NULL).kind, MOAT_E_USAGE);
    EVP_PKEY_free(other);
    EVP_PKEY_free(k);
}

int main(void)
{
    ph_dir_make();
    RUN(create_then_reopen);
    RUN(custom_and_long_names);
    RUN(issue_server_leaf);
    RUN(issue_other_key_types);
    RUN(issue_refusals);
    RUN(refuses_half_there_and_mismatched);
    RUN(refuses_unreadable);
    RUN(ensure_leaf_reuses_and_renews);
    RUN(ensure_leaf_refusals);
    RUN(init_options_and_refusals);
    RUN(intermediate_renew_and_offline_root);
    RUN(self_signed_leaf);
    ph_dir_remove();
    TEST_MAIN_END();
}
