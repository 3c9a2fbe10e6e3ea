/*
 * test_crlurl.c: CRL addresses (pki/crlurl.c) and how the CA uses them (pki/ca.c): the URL
 * check (a table of good and bad URLs), the settings file (parse errors with their line, save
 * and load), the crlDistributionPoints extension (a URL with a comma survives), and which CRL
 * each certificate points at: leaves at the intermediate's, intermediates at the root's, the
 * root at none; `moat ca set` semantics (change, remove, root URL needs root.key), new
 * intermediates in place and in another folder, and the zero-config leaf reissued after the
 * URL changed. Also moat_crl_unpublished (pki/crl.c), which the server's warnings use.
 */
#include "pki/crlurl.h"

#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/crl.h"
#include "pki_helpers.h"
#include "test.h"

static const char *const good_urls[] = {
    "http://ca.example.com/crl/intermediate.crl",
    "HTTP://CA.example.com/crl.der",
    "http://127.0.0.1:8080/crl/ca.crl",
    "http://[::1]:8080/crl/ca.crl",
    "http://[2001:db8::1]/c",
    "http://x/a,b;c=d/%20e~f_g-h.crl",
    "http://localhost/crl",
};

static const struct {
    const char *url, *says;
} bad_urls[] = {
    {"", "empty CRL URL"},
    {"https://ca.example.com/crl", "use http://, not https://"},
    {"ldap://ca.example.com/cn=x", "only http://"},
    {"ca.example.com/crl", "is not a URL"},
    {"http://ca.example.com", "needs the path"},
    {"http://ca.example.com/", "needs the path"},
    {"http:///crl", "no host"},
    {"http://user:pw@ca.example.com/crl", "user name or password"},
    {"http://ca.example.com:0/crl", "port must be a number from 1 to 65535"},
    {"http://ca.example.com:65536/crl", "port must be"},
    {"http://ca.example.com:/crl", "port must be"},
    {"http://ca.example.com:8x/crl", "port must be"},
    {"http://-ca.example.com/crl", "starts with '-'"},
    {"http://ca-.example.com/crl", "ends with '-'"},
    {"http://ca..example.com/crl", "empty label"},
    {"http://ca_x.example.com/crl", "only letters, digits"},
    {"http://300.1.1.1/crl", "not a valid IPv4"},
    {"http://[::g]/crl", "not a valid IPv6"},
    {"http://ca.example.com/crl?x=1", "no query or fragment"},
    {"http://ca.example.com/crl#top", "no query or fragment"},
    {"http://ca.example.com/a b.crl", "character 0x20 at position 24"},
    {"http://ca.example.com/a\"b", "character 0x22"},
    {"http://ca.example.com/%zz", "two hex digits"},
    {"http://ca.example.com/%4", "two hex digits"},
};

TEST_CASE(url_check)
{
    for (size_t i = 0; i < sizeof(good_urls) / sizeof(good_urls[0]); i++) {
        struct moat_err err = {0};
        moat_rc rc = moat_crlurl_check(good_urls[i], &err);
        if (!moat_ok(rc)) {
            TEST__FAIL("%s refused: %s", good_urls[i], err.msg);
        }
    }
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        struct moat_err err = {0};
        moat_rc rc = moat_crlurl_check(bad_urls[i].url, &err);
        if (rc.kind != MOAT_E_USAGE || !ph_contains(err.msg, bad_urls[i].says)) {
            TEST__FAIL("\"%s\": kind %d, \"%s\", expected \"%s\"", bad_urls[i].url, (int)rc.kind,
                       err.msg, bad_urls[i].says);
        }
    }
    char longer[MOAT_CRLURL_MAX + 40];
    int n = snprintf(longer, sizeof(longer), "http://x/");
    memset(longer + n, 'a', sizeof(longer) - (size_t)n - 1);
    longer[sizeof(longer) - 1] = '\0';
    EXPECT_INT(moat_crlurl_check(longer, NULL).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_crlurl_check(NULL, NULL).kind, MOAT_E_USAGE);
    EXPECT_STR(moat_crlurl_path("http://h:80/crl/ca.crl"), "/crl/ca.crl");
    EXPECT_STR(moat_crlurl_path("HTTP://[::1]/x"), "/x");
}

TEST_CASE(settings_parse)
{
    struct moat_crlurl_settings st;
    const char good[] = "# comment\r\n\n  crl_url http://a/x.crl   # trailing\n"
                        "root_crl_url\thttp://a/r.crl\n";
    EXPECT_INT(moat_crlurl_parse(good, strlen(good), "settings", &st, NULL).kind, MOAT_OK);
    EXPECT_STR(st.crl_url, "http://a/x.crl");
    EXPECT_STR(st.root_crl_url, "http://a/r.crl");
    moat_crlurl_clear(&st);
    EXPECT(st.crl_url == NULL && st.root_crl_url == NULL);

    static const struct {
        const char *text, *where, *says;
    } bad[] = {
        {"crl_url http://a/x\ncrl_uri http://a/y\n", "s:2", "unknown setting \"crl_uri\""},
        {"crl_url\n", "s:1", "write `crl_url URL`"},
        {"crl_url http://a/x http://a/y\n", "s:1", "one URL"},
        {"crl_url http://a/x\n\ncrl_url http://a/y\n", "s:3", "given twice"},
        {"root_crl_url https://a/x\n", "s:1", "moat ca set --root-crl-url"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moat_err err = {0};
        moat_rc rc = moat_crlurl_parse(bad[i].text, strlen(bad[i].text), "s", &st, &err);
        if (rc.kind != MOAT_E_CONFIG || strcmp(err.where, bad[i].where) != 0 ||
            !ph_contains(err.msg, bad[i].says)) {
            TEST__FAIL("case %zu: kind %d at \"%s\": \"%s\"", i, (int)rc.kind, err.where, err.msg);
        }
        EXPECT(st.crl_url == NULL && st.root_crl_url == NULL);
    }
    const char nul[] = "crl_url http://a/x\0\n";
    EXPECT_INT(moat_crlurl_parse(nul, sizeof(nul) - 1, "s", &st, NULL).kind, MOAT_E_CONFIG);
}

TEST_CASE(settings_files)
{
    struct moat_crlurl_settings st = {0};
    mkdir(ph_path("set"), 0700);
    EXPECT_INT(moat_crlurl_load(ph_path("set"), &st, NULL).kind, MOAT_OK); /* no file */
    EXPECT(st.crl_url == NULL);
    struct moat_crlurl_settings w = {.crl_url = "http://h/i.crl", .root_crl_url = NULL};
    EXPECT_INT(moat_crlurl_save(ph_path("set"), &w, NULL).kind, MOAT_OK);
    EXPECT_INT(ph_mode(ph_path("set/settings")), 0644);
    EXPECT(!ph_has_tmp(ph_path("set")));
    EXPECT_INT(moat_crlurl_load(ph_path("set"), &st, NULL).kind, MOAT_OK);
    EXPECT_STR(st.crl_url, "http://h/i.crl");
    EXPECT(st.root_crl_url == NULL);
    moat_crlurl_clear(&st);
    ph_write_str(ph_path("set/settings"), "crl_url http://h/i.crl\nfoo bar\n");
    struct moat_err err = {0};
    EXPECT_INT(moat_crlurl_load(ph_path("set"), &st, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.where, "set/settings:2"));
}

TEST_CASE(extension)
{
    EVP_PKEY *k = ph_key();
    const char *names[] = {"a.test"};
    struct moat_ca_leaf l = {.names = names, .n = 1, .days = 30, .pub = k};
    X509 *x = NULL;
    EXPECT_INT(moat_ca_self_signed(&l, k, 0, &x, NULL).kind, MOAT_OK);
    char buf[256] = "junk";
    EXPECT_INT(moat_crlurl_of(x, buf, sizeof(buf)), 0); /* self-signed: none */
    EXPECT_STR(buf, "");
    EXPECT(moat_crlurl_add_ext(x, "http://h/a,b.crl"));
    EXPECT_INT(moat_crlurl_of(x, buf, sizeof(buf)), 1);
    EXPECT_STR(buf, "http://h/a,b.crl"); /* not split at the comma */
    char tiny[5];
    EXPECT_INT(moat_crlurl_of(x, tiny, sizeof(tiny)), 1);
    EXPECT_STR(tiny, "http");
    /* Non-critical (RFC 5280 §4.2.1.13 SHOULD). */
    int at = X509_get_ext_by_NID(x, NID_crl_distribution_points, -1);
    EXPECT(at >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, at)) == 0);
    X509_free(x);
    EVP_PKEY_free(k);
}

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

/* The certificate's CRL URL, or "" (a static buffer per call site is enough here). */
static const char *cdp(X509 *x, char *buf, size_t n)
{
    if (x == NULL || !moat_crlurl_of(x, buf, n)) {
        snprintf(buf, n, "%s", "");
    }
    return buf;
}

TEST_CASE(ca_points_at_the_right_crl)
{
    char b[256];
    struct moat_ca_opts o = {.name = "U CA",
                             .crl_url = "http://c.test/crl/int.crl",
                             .root_crl_url = "http://c.test/crl/root.crl"};
    struct moat_ca *ca = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_init(ph_path("u"), &o, &ca, &err).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    EXPECT_STR(ca->crl_url, "http://c.test/crl/int.crl");
    EXPECT_STR(ca->root_crl_url, "http://c.test/crl/root.crl");
    EXPECT_STR(cdp(ca->cert, b, sizeof(b)), "http://c.test/crl/root.crl");
    EXPECT_STR(cdp(ca->root, b, sizeof(b)), "");
    X509 *leaf = issue(ca, "a.test");
    EXPECT_STR(cdp(leaf, b, sizeof(b)), "http://c.test/crl/int.crl");
    X509_free(leaf);
    moat_ca_free(ca);

    /* Opening reads the settings back. */
    ca = NULL;
    EXPECT_INT(moat_ca_open(ph_path("u"), &ca, &err).kind, MOAT_OK);
    EXPECT_STR(ca ? ca->crl_url : NULL, "http://c.test/crl/int.crl");

    /* init on an existing CA with a URL: refused, pointing at ca set. */
    EXPECT_INT(moat_ca_init(ph_path("u"), &o, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "moat ca set"));

    /* Change, then remove: leaves follow; certificates already made cannot. */
    EXPECT_INT(moat_ca_set_crl_urls(ca, "http://d.test/x.crl", NULL, &err).kind, MOAT_OK);
    leaf = issue(ca, "b.test");
    EXPECT_STR(cdp(leaf, b, sizeof(b)), "http://d.test/x.crl");
    X509_free(leaf);
    EXPECT_STR(ca->root_crl_url, "http://c.test/crl/root.crl"); /* NULL: unchanged */
    EXPECT_INT(moat_ca_set_crl_urls(ca, "", NULL, &err).kind, MOAT_OK);
    EXPECT(ca->crl_url == NULL);
    leaf = issue(ca, "c.test");
    EXPECT_STR(cdp(leaf, b, sizeof(b)), "");
    X509_free(leaf);
    EXPECT_INT(moat_ca_set_crl_urls(ca, "https://d.test/x.crl", NULL, &err).kind, MOAT_E_USAGE);
    moat_ca_free(ca);
    ca = NULL;
    EXPECT_INT(moat_ca_open(ph_path("u"), &ca, &err).kind, MOAT_OK);
    EXPECT(ca != NULL && ca->crl_url == NULL && ca->root_crl_url != NULL);
    moat_ca_free(ca);

    /* A bad URL is refused before any folder is made. */
    struct moat_ca_opts bad = {.crl_url = "http://x"};
    EXPECT_INT(moat_ca_init(ph_path("never"), &bad, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT(access(ph_path("never"), F_OK) != 0);
}

TEST_CASE(intermediates)
{
    char b[256];
    struct moat_ca_opts o = {.name = "I CA",
                             .crl_url = "http://c.test/int.crl",
                             .root_crl_url = "http://c.test/root.crl"};
    EXPECT_INT(moat_ca_init(ph_path("i"), &o, NULL, NULL).kind, MOAT_OK);

    /* Another folder: its own crl_url, the root's URL in the intermediate, root unchanged. */
    struct moat_ca_opts io = {.crl_url = "http://issuing.test/i2.crl"};
    struct moat_ca *ca = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_ca_intermediate(ph_path("i"), ph_path("i2"), &io, &ca, &err).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    EXPECT_STR(ca->crl_url, "http://issuing.test/i2.crl");
    EXPECT(ca->root_crl_url == NULL);
    EXPECT_STR(cdp(ca->cert, b, sizeof(b)), "http://c.test/root.crl");
    X509 *leaf = issue(ca, "a.test");
    EXPECT_STR(cdp(leaf, b, sizeof(b)), "http://issuing.test/i2.crl");
    X509_free(leaf);
    /* No root.key here: a root URL would never be used. */
    EXPECT_INT(moat_ca_set_crl_urls(ca, NULL, "http://c.test/r2.crl", &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "root.key"));
    moat_ca_free(ca);

    /* Another folder without --crl-url: none (the root folder's belongs to its own
     * intermediate). */
    ca = NULL;
    EXPECT_INT(moat_ca_intermediate(ph_path("i"), ph_path("i3"), NULL, &ca, &err).kind, MOAT_OK);
    EXPECT(ca != NULL && ca->crl_url == NULL);
    moat_ca_free(ca);

    /* In place with a new root URL: kept in the root's folder and carried; crl_url stays. */
    struct moat_ca_opts ro = {.root_crl_url = "http://c.test/root2.crl"};
    ca = NULL;
    EXPECT_INT(moat_ca_intermediate(ph_path("i"), NULL, &ro, &ca, &err).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    EXPECT_STR(ca->crl_url, "http://c.test/int.crl");
    EXPECT_STR(ca->root_crl_url, "http://c.test/root2.crl");
    EXPECT_STR(cdp(ca->cert, b, sizeof(b)), "http://c.test/root2.crl");
    moat_ca_free(ca);
    EXPECT_INT(
        moat_ca_intermediate(ph_path("i"), NULL, &(struct moat_ca_opts){.crl_url = "x"}, NULL, &err)
            .kind,
        MOAT_E_USAGE);
}

TEST_CASE(zero_config_leaf_follows_the_url)
{
    char b[256];
    struct moat_ca *ca = NULL;
    EXPECT_INT(moat_ca_open_or_create(ph_path("z"), NULL, &ca, NULL, NULL).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    const char *names[] = {"localhost"};
    char *cp = NULL, *kp = NULL;
    int issued = 0;
    EXPECT_INT(
        moat_ca_ensure_leaf(ca, ph_path("zc"), "localhost", names, 1, &cp, &kp, &issued, NULL).kind,
        MOAT_OK);
    EXPECT_INT(issued, 1);
    free(cp);
    free(kp);
    EXPECT_INT(
        moat_ca_ensure_leaf(ca, ph_path("zc"), "localhost", names, 1, &cp, &kp, &issued, NULL).kind,
        MOAT_OK);
    EXPECT_INT(issued, 0); /* reused */
    free(cp);
    free(kp);
    EXPECT_INT(moat_ca_set_crl_urls(ca, "http://127.0.0.1:8080/crl/local.crl", NULL, NULL).kind,
               MOAT_OK);
    EXPECT_INT(
        moat_ca_ensure_leaf(ca, ph_path("zc"), "localhost", names, 1, &cp, &kp, &issued, NULL).kind,
        MOAT_OK);
    EXPECT_INT(issued, 1); /* the old one points nowhere */
    struct moat_chain *c = NULL;
    if (cp != NULL && moat_ok(moat_chain_load(cp, &c, NULL))) {
        EXPECT_STR(cdp(c->leaf, b, sizeof(b)), "http://127.0.0.1:8080/crl/local.crl");
        moat_chain_free(c);
    }
    free(cp);
    free(kp);
    moat_ca_free(ca);
}

TEST_CASE(unpublished)
{
    struct moat_ca *ca = NULL;
    EXPECT_INT(moat_ca_init(ph_path("p"), NULL, &ca, NULL).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    X509 *a = issue(ca, "a.test"), *b = issue(ca, "b.test");
    X509_CRL *crl = NULL;
    size_t missing = 99;
    EXPECT_INT(moat_crl_make(ca, 0, 7, 0, &crl, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_unpublished(ca->dir, ca->cert, crl, &missing, NULL).kind, MOAT_OK);
    EXPECT_INT(missing, 0); /* no index yet */
    EXPECT_INT(moat_crl_revoke(ca, a, MOAT_CRL_UNSPECIFIED, 0, NULL, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_unpublished(ca->dir, ca->cert, crl, &missing, NULL).kind, MOAT_OK);
    EXPECT_INT(missing, 1);
    X509_CRL_free(crl);
    EXPECT_INT(moat_crl_make(ca, 0, 7, 0, &crl, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_revoke(ca, b, MOAT_CRL_UNSPECIFIED, 0, NULL, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_unpublished(ca->dir, ca->cert, crl, &missing, NULL).kind, MOAT_OK);
    EXPECT_INT(missing, 1); /* a is listed, b is not */
    /* Another issuer's revocations do not count. */
    EXPECT_INT(moat_crl_unpublished(ca->dir, ca->root, crl, &missing, NULL).kind, MOAT_OK);
    EXPECT_INT(missing, 0);
    X509_CRL_free(crl);
    X509_free(a);
    X509_free(b);
    moat_ca_free(ca);
}

int main(void)
{
    ph_dir_make();
    RUN(url_check);
    RUN(settings_parse);
    RUN(settings_files);
    RUN(extension);
    RUN(ca_points_at_the_right_crl);
    RUN(intermediates);
    RUN(zero_config_leaf_follows_the_url);
    RUN(unpublished);
    ph_dir_remove();
    TEST_MAIN_END();
}
