/*
 * test_challenges.c: the challenge table as the listeners read it (HTTP-01 answers by path,
 * TLS-ALPN-01 certificates by name, RFC 8737's acmeIdentifier checked byte for byte), its
 * limits, and the webroot solver's files.
 */
#include "acme/challenges.h"

#include "pki/pki_helpers.h"
#include "test.h"

#include <openssl/x509v3.h>

static const char KA[] = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7no";

static struct moat_acme_challenges *table_new(void)
{
    struct moat_acme_challenges *t = NULL;
    EXPECT_INT(moat_acme_challenges_new(&t, NULL).kind, MOAT_OK);
    return t;
}

static struct moat_acme_solver *solver_new(struct moat_acme_challenges *t, const char *type)
{
    struct moat_acme_solver *s = NULL;
    EXPECT_INT(moat_acme_table_solver_new(t, type, &s, NULL).kind, MOAT_OK);
    EXPECT(s != NULL && strcmp(s->ops->type, type) == 0);
    return s;
}

static moat_rc present(struct moat_acme_solver *s, const char *ident, const char *token,
                       const char *ka)
{
    struct moat_err err = {0};
    moat_rc rc = s->ops->present(s, ident, token, ka, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  present %s %s: %s\n", ident, token, err.msg);
    }
    return rc;
}

/* The HTTP-01 answer for path, or NULL (a static buffer). */
static const char *http01(struct moat_acme_challenges *t, const char *path)
{
    static char out[512];
    memset(out, 0, sizeof(out));
    return moat_acme_challenges_http01(t, path, strlen(path), out, sizeof(out)) ? out : NULL;
}

TEST_CASE(http01_table)
{
    struct moat_acme_challenges *t = table_new();
    struct moat_acme_solver *s = solver_new(t, "http-01");
    EXPECT(http01(t, MOAT_ACME_HTTP01_PREFIX "tok1") == NULL);
    EXPECT_INT(present(s, "a.example", "tok1", KA).kind, MOAT_OK);
    EXPECT_STR(http01(t, "/.well-known/acme-challenge/tok1"), KA);
    EXPECT(http01(t, "/.well-known/acme-challenge/tok2") == NULL);
    EXPECT(http01(t, "/.well-known/acme-challenge/tok") == NULL);
    EXPECT(http01(t, "/.well-known/acme-challenge/tok1x") == NULL);
    EXPECT(http01(t, "/.well-known/acme-challenge/tok1/") == NULL);
    EXPECT(http01(t, "/.well-known/acme-challenge/") == NULL);
    EXPECT(http01(t, "/.well-known/acme-challenge") == NULL);
    EXPECT(http01(t, "/.well-known/other/tok1") == NULL);
    EXPECT(http01(t, "/tok1") == NULL);
    EXPECT(http01(t, "") == NULL);
    /* Even an empty token does not make the bare prefix an answer. */
    EXPECT_INT(present(s, "a.example", "", "empty.ka").kind, MOAT_OK);
    EXPECT(http01(t, "/.well-known/acme-challenge/") == NULL);
    s->ops->cleanup(s, "a.example", "");
    /* Only len bytes of the path count. */
    static const char longer[] = "/.well-known/acme-challenge/tok1?x=1";
    char out[512];
    EXPECT_INT(moat_acme_challenges_http01(t, longer, sizeof(longer) - 5, out, sizeof(out)), 1);
    EXPECT_STR(out, KA);
    /* An answer that does not fit is no answer. */
    EXPECT_INT(moat_acme_challenges_http01(t, longer, sizeof(longer) - 5, out, sizeof(KA) - 1), 0);
    EXPECT_INT(moat_acme_challenges_http01(t, longer, sizeof(longer) - 5, out, sizeof(KA)), 1);
    EXPECT_INT(moat_acme_challenges_http01(NULL, longer, sizeof(longer) - 5, out, sizeof(out)), 0);
    /* HTTP-01 answers are not TLS-ALPN-01 ones. */
    EXPECT_INT(moat_acme_challenges_alpn_active(t), 0);

    /* The same token again: the newest answer wins, and one cleanup removes it. */
    EXPECT_INT(present(s, "a.example", "tok1", "tok1.second").kind, MOAT_OK);
    EXPECT_STR(http01(t, "/.well-known/acme-challenge/tok1"), "tok1.second");
    EXPECT_INT(present(s, "b.example", "tok2", "tok2.ka").kind, MOAT_OK);
    s->ops->cleanup(s, "a.example", "tok1");
    EXPECT(http01(t, "/.well-known/acme-challenge/tok1") == NULL);
    EXPECT_STR(http01(t, "/.well-known/acme-challenge/tok2"), "tok2.ka");
    s->ops->cleanup(s, "b.example", "tok2");
    EXPECT(http01(t, "/.well-known/acme-challenge/tok2") == NULL);
    s->ops->cleanup(s, "b.example", "tok2"); /* twice is harmless */
    moat_acme_solver_free(s);
    moat_acme_solver_free(NULL);
    moat_acme_challenges_free(t);
    moat_acme_challenges_free(NULL);
}

TEST_CASE(table_limits)
{
    struct moat_acme_challenges *t = table_new();
    struct moat_acme_solver *s = solver_new(t, "http-01");
    struct moat_acme_solver *x = (struct moat_acme_solver *)1;
    EXPECT_INT(moat_acme_table_solver_new(t, "dns-01", &x, NULL).kind, MOAT_E_INTERNAL);
    EXPECT(x == NULL);
    /* Over-long tokens, names and answers are refused, not cut. */
    char big[600];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct moat_err err = {0};
    EXPECT_INT(s->ops->present(s, "a.example", big, KA, &err).kind, MOAT_E_PEER);
    EXPECT_INT(s->ops->present(s, "a.example", "tok", big, &err).kind, MOAT_E_PEER);
    EXPECT_INT(s->ops->present(s, big, "tok", KA, &err).kind, MOAT_E_PEER);
    /* The table is bounded: 64 answers at once, then MOAT_E_LIMIT, and room again after a
     * cleanup. */
    char tok[32], path[96];
    for (int i = 0; i < 64; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        EXPECT_INT(present(s, "a.example", tok, tok).kind, MOAT_OK);
    }
    EXPECT_INT(s->ops->present(s, "a.example", "t64", "t64", &err).kind, MOAT_E_LIMIT);
    EXPECT(http01(t, "/.well-known/acme-challenge/t64") == NULL);
    /* Replacing one that is there still works when full. */
    EXPECT_INT(present(s, "a.example", "t5", "t5.new").kind, MOAT_OK);
    EXPECT_STR(http01(t, "/.well-known/acme-challenge/t5"), "t5.new");
    s->ops->cleanup(s, "a.example", "t0");
    EXPECT_INT(present(s, "a.example", "t64", "t64").kind, MOAT_OK);
    for (int i = 1; i <= 64; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        snprintf(path, sizeof(path), MOAT_ACME_HTTP01_PREFIX "%s", tok);
        EXPECT(http01(t, path) != NULL);
    }
    moat_acme_solver_free(s);
    moat_acme_challenges_free(t); /* frees what is still published */
}

/* The SHA-256 of ka as the DER OCTET STRING RFC 8737 puts in acmeIdentifier. */
static void acme_identifier(const char *ka, unsigned char out[34])
{
    out[0] = 0x04;
    out[1] = 0x20;
    EXPECT_INT(EVP_Digest(ka, strlen(ka), out + 2, NULL, EVP_sha256(), NULL), 1);
}

/* Check an ALPN challenge certificate: the one name, the critical acmeIdentifier, the key. */
static void check_alpn_cert(X509 *x, EVP_PKEY *k, const char *name, const char *ka)
{
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    EXPECT(gens != NULL);
    EXPECT_INT(sk_GENERAL_NAME_num(gens), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
    EXPECT(gn != NULL && gn->type == GEN_DNS);
    if (gn != NULL && gn->type == GEN_DNS) {
        const ASN1_IA5STRING *dns = gn->d.dNSName;
        EXPECT_INT(ASN1_STRING_length(dns), strlen(name));
        EXPECT(memcmp(ASN1_STRING_get0_data(dns), name, strlen(name)) == 0);
    }
    GENERAL_NAMES_free(gens);

    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int at = X509_get_ext_by_OBJ(x, oid, -1);
    EXPECT(at >= 0);
    EXPECT_INT(X509_get_ext_by_OBJ(x, oid, at), -1); /* only one */
    ASN1_OBJECT_free(oid);
    X509_EXTENSION *ext = at >= 0 ? X509_get_ext(x, at) : NULL;
    if (ext != NULL) {
        EXPECT_INT(X509_EXTENSION_get_critical(ext), 1);
        const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
        unsigned char want[34];
        acme_identifier(ka, want);
        EXPECT_INT(ASN1_STRING_length(v), 34);
        EXPECT(ASN1_STRING_length(v) == 34 && memcmp(ASN1_STRING_get0_data(v), want, 34) == 0);
    }
    EXPECT_INT(X509_check_private_key(x, k), 1);
    EXPECT_INT(X509_verify(x, k), 1); /* self-signed */
    EXPECT(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    EXPECT(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
}

TEST_CASE(alpn_table)
{
    struct moat_acme_challenges *t = table_new();
    struct moat_acme_solver *s = solver_new(t, "tls-alpn-01");
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_acme_challenges_alpn_active(t), 0);
    EXPECT_INT(moat_acme_challenges_alpn(t, "a.example.com", &x, &k), 0);
    EXPECT_INT(present(s, "a.example.com", "tok1", KA).kind, MOAT_OK);
    EXPECT_INT(moat_acme_challenges_alpn_active(t), 1);
    /* TLS-ALPN-01 answers are not HTTP-01 ones. */
    EXPECT(http01(t, "/.well-known/acme-challenge/tok1") == NULL);

    EXPECT_INT(moat_acme_challenges_alpn(t, "A.Example.COM", &x, &k), 1);
    EXPECT(x != NULL && k != NULL);
    if (x != NULL && k != NULL) {
        check_alpn_cert(x, k, "a.example.com", KA);
    }
    EXPECT_INT(moat_acme_challenges_alpn(t, "b.example.com", &x, &k), 0);
    EXPECT_INT(moat_acme_challenges_alpn(t, "a.example.co", &x, &k), 0);
    EXPECT_INT(moat_acme_challenges_alpn(t, NULL, &x, &k), 0);
    EXPECT_INT(moat_acme_challenges_alpn(NULL, "a.example.com", &x, &k), 0);
    EXPECT_INT(moat_acme_challenges_alpn_active(NULL), 0);

    /* Present again for the same name (any case): replaced, still one answer. */
    EXPECT_INT(present(s, "A.EXAMPLE.com", "tok2", "tok2.ka").kind, MOAT_OK);
    X509 *x2 = NULL;
    EVP_PKEY *k2 = NULL;
    EXPECT_INT(moat_acme_challenges_alpn(t, "a.example.com", &x2, &k2), 1);
    if (x2 != NULL && k2 != NULL) {
        check_alpn_cert(x2, k2, "A.EXAMPLE.com", "tok2.ka");
        EXPECT_INT(X509_cmp(x, x2) != 0, 1);
    }
    /* A cleanup of the old token leaves the new answer. */
    s->ops->cleanup(s, "a.example.com", "tok1");
    EXPECT_INT(moat_acme_challenges_alpn_active(t), 1);
    s->ops->cleanup(s, "a.example.com", "tok2");
    EXPECT_INT(moat_acme_challenges_alpn_active(t), 0);
    X509 *x3 = NULL;
    EVP_PKEY *k3 = NULL;
    EXPECT_INT(moat_acme_challenges_alpn(t, "a.example.com", &x3, &k3), 0);
    EXPECT(x3 == NULL && k3 == NULL);
    /* The references handed out outlive the table's answer. */
    if (x2 != NULL && k2 != NULL) {
        EXPECT_INT(X509_check_private_key(x2, k2), 1);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    X509_free(x2);
    EVP_PKEY_free(k2);

    /* Several names at once, each its own certificate. */
    EXPECT_INT(present(s, "one.example", "t1", "t1.ka").kind, MOAT_OK);
    EXPECT_INT(present(s, "two.example", "t2", "t2.ka").kind, MOAT_OK);
    EXPECT_INT(moat_acme_challenges_alpn(t, "two.example", &x, &k), 1);
    check_alpn_cert(x, k, "two.example", "t2.ka");
    X509_free(x);
    EVP_PKEY_free(k);
    s->ops->cleanup(s, "one.example", "t1");
    EXPECT_INT(moat_acme_challenges_alpn_active(t), 1);
    moat_acme_solver_free(s);
    moat_acme_challenges_free(t); /* frees the certificate still published */
}

TEST_CASE(alpn_cert_direct)
{
    X509 *x = (X509 *)1;
    EVP_PKEY *k = (EVP_PKEY *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_acme_alpn_cert_new("www.example.org", KA, &x, &k, &err).kind, MOAT_OK);
    check_alpn_cert(x, k, "www.example.org", KA);
    EXPECT(EVP_PKEY_is_a(k, "EC"));
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    EXPECT_INT(crit, 0);
    GENERAL_NAMES_free(gens);
    char cn[300] = "";
    EXPECT_INT(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)),
               15);
    EXPECT_STR(cn, "www.example.org");
    X509_free(x);
    EVP_PKEY_free(k);
}

/* A DNS name may be 253 characters; a CN only 64. The longer name is in the SAN alone, which
 * is then critical (RFC 5280 §4.2.1.6: the subject is empty). */
TEST_CASE(alpn_cert_long_name)
{
    char name[254];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    for (size_t i = 60; i < sizeof(name) - 1; i += 61) {
        name[i] = '.';
    }
    memcpy(name + sizeof(name) - 9, ".example", 8);
    static const size_t lens[] = {64, 65, 76, 253};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        const char *n = name + sizeof(name) - 1 - lens[i];
        EXPECT_INT(strlen(n), lens[i]);
        X509 *x = NULL;
        EVP_PKEY *k = NULL;
        struct moat_err err = {0};
        moat_rc rc = moat_acme_alpn_cert_new(n, KA, &x, &k, &err);
        if (!moat_ok(rc)) {
            fprintf(stderr, "  %zu characters: %s\n", lens[i], err.msg);
        }
        EXPECT_INT(rc.kind, MOAT_OK);
        if (!moat_ok(rc)) {
            continue;
        }
        check_alpn_cert(x, k, n, KA);
        int crit = -1;
        GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
        EXPECT_INT(crit, lens[i] > 64);
        GENERAL_NAMES_free(gens);
        EXPECT_INT(X509_NAME_entry_count(X509_get_subject_name(x)), lens[i] > 64 ? 0 : 1);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    /* Through the table too. */
    struct moat_acme_challenges *t = table_new();
    struct moat_acme_solver *s = solver_new(t, "tls-alpn-01");
    const char *n = name + sizeof(name) - 1 - 200;
    EXPECT_INT(present(s, n, "tok", KA).kind, MOAT_OK);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    EXPECT_INT(moat_acme_challenges_alpn(t, n, &x, &k), 1);
    if (x != NULL) {
        check_alpn_cert(x, k, n, KA);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    moat_acme_solver_free(s);
    moat_acme_challenges_free(t);
}

static int write_as_other(void *arg)
{
    struct moat_acme_solver *s = (struct moat_acme_solver *)1;
    struct moat_err err = {0};
    moat_rc rc = moat_acme_webroot_solver_new(arg, &s, &err);
    return rc.kind == MOAT_E_CONFIG && s == NULL && strstr(err.msg, "cannot be written") != NULL
               ? 0
               : 1;
}

TEST_CASE(webroot_solver)
{
    const char *root = ph_path("www");
    EXPECT_INT(mkdir(root, 0755), 0);
    struct moat_acme_solver *s = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_acme_webroot_solver_new(root, &s, &err).kind, MOAT_OK);
    EXPECT(s != NULL && strcmp(s->ops->type, "http-01") == 0);
    if (s == NULL) {
        return;
    }
    /* The file is 0644 whatever the umask: another web server serves it. */
    mode_t old = umask(022);
    EXPECT_INT(present(s, "a.example", "tok-1_A", KA).kind, MOAT_OK);
    umask(077);
    EXPECT_INT(present(s, "a.example", "tok-2", "tok-2.ka").kind, MOAT_OK);
    umask(old);
    const char *f1 = ph_path("www/.well-known/acme-challenge/tok-1_A");
    const char *f2 = ph_path("www/.well-known/acme-challenge/tok-2");
    size_t len = 0;
    char *body = ph_read(f1, &len);
    EXPECT_STR(body, KA);
    EXPECT_INT(len, strlen(KA));
    free(body);
    body = ph_read(f2, &len);
    EXPECT_STR(body, "tok-2.ka");
    free(body);
    EXPECT_INT(ph_mode(f1), 0644);
    EXPECT_INT(ph_mode(f2), 0644);
    EXPECT_INT(ph_mode(ph_path("www/.well-known")), 0755);
    EXPECT_INT(ph_mode(ph_path("www/.well-known/acme-challenge")), 0755);
    EXPECT(!ph_has_tmp(ph_path("www/.well-known/acme-challenge")));
    /* Present again: replaced whole. */
    EXPECT_INT(present(s, "a.example", "tok-2", "x").kind, MOAT_OK);
    body = ph_read(f2, &len);
    EXPECT_STR(body, "x");
    free(body);
    s->ops->cleanup(s, "a.example", "tok-1_A");
    struct stat sb;
    EXPECT(stat(f1, &sb) != 0 && errno == ENOENT);
    EXPECT(stat(f2, &sb) == 0);
    s->ops->cleanup(s, "a.example", "tok-2");
    EXPECT(stat(f2, &sb) != 0 && errno == ENOENT);
    s->ops->cleanup(s, "a.example", "tok-2"); /* gone already: harmless */
    moat_acme_solver_free(s);
}

TEST_CASE(webroot_refused)
{
    struct moat_acme_solver *s = (struct moat_acme_solver *)1;
    struct moat_err err = {0};
    const char *missing = ph_path("no-such-webroot");
    EXPECT_INT(moat_acme_webroot_solver_new(missing, &s, &err).kind, MOAT_E_CONFIG);
    EXPECT(s == NULL);
    EXPECT_STR(err.where, missing);
    EXPECT(ph_contains(err.msg, "cannot be written"));
    /* A folder the user moat runs as cannot write (as nobody: root writes anywhere). */
    const char *ro = ph_path("readonly-www");
    EXPECT_INT(mkdir(ro, 0755), 0);
    EXPECT_INT(ph_as_nobody(write_as_other, (void *)ro), 0);
    char longroot[PATH_MAX + 10];
    memset(longroot, 'a', sizeof(longroot) - 1);
    longroot[0] = '/';
    longroot[sizeof(longroot) - 1] = '\0';
    s = (struct moat_acme_solver *)1;
    EXPECT_INT(moat_acme_webroot_solver_new(longroot, &s, &err).kind, MOAT_E_USAGE);
    EXPECT(s == NULL);
}

int main(void)
{
    ph_dir_make();
    RUN(http01_table);
    RUN(table_limits);
    RUN(alpn_table);
    RUN(alpn_cert_direct);
    RUN(alpn_cert_long_name);
    RUN(webroot_solver);
    RUN(webroot_refused);
    ph_dir_remove();
    TEST_MAIN_END();
}
