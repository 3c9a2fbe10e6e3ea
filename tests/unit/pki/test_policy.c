/*
 * test_policy.c: the CA signing policy (file format, allow/deny semantics including wildcards
 * against exact denies, IP ranges, e-mail and URI rules, max_days, server/client switches),
 * name constraints built from people's words and checked the way clients check them, the
 * names module's classification, and the time checks of a new leaf (moat_ca_leaf_validity).
 */
#include "pki/ca.h"
#include "pki/names.h"
#include "pki/policy.h"

#include "pki_helpers.h"
#include "test.h"

static struct moat_policy *parse_ok(const char *text)
{
    struct moat_policy *p = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_policy_parse(text, strlen(text), "policy", &p, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (rc.kind != MOAT_OK) {
        fprintf(stderr, "  %s: %s\n", err.where, err.msg);
    }
    return p;
}

static int allowed(const struct moat_policy *p, const char *name, int client)
{
    const char *names[] = {name};
    return moat_policy_check(p, "policy", names, 1, 30, client, NULL).kind == MOAT_OK;
}

TEST_CASE(names_classified)
{
    EXPECT_INT(moat_name_kind_of("example.com"), MOAT_NAME_DNS);
    EXPECT_INT(moat_name_kind_of("*.example.com"), MOAT_NAME_DNS);
    EXPECT_INT(moat_name_kind_of("localhost"), MOAT_NAME_DNS);
    EXPECT_INT(moat_name_kind_of("10.0.0.1"), MOAT_NAME_IP);
    EXPECT_INT(moat_name_kind_of("[::1]"), MOAT_NAME_IP);
    EXPECT_INT(moat_name_kind_of("fd00::7"), MOAT_NAME_IP);
    EXPECT_INT(moat_name_kind_of("ada@example.com"), MOAT_NAME_EMAIL);
    EXPECT_INT(moat_name_kind_of("spiffe://example.org/web"), MOAT_NAME_URI);
    EXPECT_INT(moat_name_kind_of("urn:uuid:1234"), MOAT_NAME_URI);
    static const char *bad[] = {"",   "*.com",   "a.*.test", "host:8443", "a b.test", "@x.test",
                                "a@", "a@b@c.d", "a..test",  "1.2.3.4.5", "-a.test",  "a.test/x",
                                "*",  "x://",    "ü.test",   "a@*.test",  "ftp:/x",   NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (moat_name_kind_of(bad[i]) != MOAT_NAME_INVALID) {
            TEST__FAIL("accepted \"%s\"", bad[i] ? bad[i] : "(null)");
        }
    }
    char longname[1100];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    EXPECT_INT(moat_name_kind_of(longname), MOAT_NAME_INVALID);
}

TEST_CASE(names_check_server_vs_client)
{
    const char *mail[] = {"ok.test", "ada@example.com"};
    struct moat_err err = {0};
    EXPECT_INT(moat_names_check(mail, 2, 0, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "--client"));
    EXPECT_INT(moat_names_check(mail, 2, 1, &err).kind, MOAT_OK);
    EXPECT_INT(moat_names_check(mail, 0, 1, &err).kind, MOAT_E_USAGE);
    const char *bad[] = {"ok.test", "bad name"};
    EXPECT_INT(moat_names_check(bad, 2, 1, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "\"bad name\""));

    /* Round trip through GENERAL_NAMES. */
    const char *all[] = {"a.test", "*.b.test", "10.1.2.3", "[::1]", "ada@x.test", "urn:x:y"};
    GENERAL_NAMES *g = moat_names_to_general(all, 6);
    EXPECT(g != NULL);
    char **back = NULL;
    size_t n = 0, skipped = 9;
    EXPECT_INT(moat_names_from_general(g, &back, &n, &skipped, NULL).kind, MOAT_OK);
    EXPECT_INT(n, 6);
    EXPECT_INT(skipped, 0);
    if (n == 6) {
        EXPECT_STR(back[1], "*.b.test");
        EXPECT_STR(back[3], "::1");
        EXPECT_STR(back[4], "ada@x.test");
    }
    moat_names_free(back, n);
    GENERAL_NAMES_free(g);
}

TEST_CASE(empty_policy_allows_all)
{
    struct moat_policy *p = parse_ok("# nothing but comments\n\n   \n");
    EXPECT(allowed(p, "anything.test", 0));
    EXPECT(allowed(p, "ada@x.test", 1));
    EXPECT(allowed(NULL, "anything.test", 0));
    moat_policy_free(p);
    moat_policy_free(NULL);
}

TEST_CASE(allow_and_deny)
{
    struct moat_policy *p = parse_ok("allow *.example.com   # below\n"
                                     "allow example.com\n"
                                     "allow 10.0.0.0/8\n"
                                     "allow fd00::/8\n"
                                     "allow *@example.com\n"
                                     "allow boss@other.test\n"
                                     "allow spiffe://example.org/web*\n"
                                     "deny admin.example.com\n"
                                     "deny *.secret.example.com\n"
                                     "deny 10.9.0.0/16\r\n");
    EXPECT(allowed(p, "example.com", 0));
    EXPECT(allowed(p, "www.example.com", 0));
    EXPECT(allowed(p, "a.b.example.com", 0));
    EXPECT(allowed(p, "*.www.example.com", 0));
    EXPECT(allowed(p, "WWW.EXAMPLE.COM", 0));
    EXPECT(!allowed(p, "example.org", 0));
    EXPECT(!allowed(p, "notexample.com", 0));
    EXPECT(!allowed(p, "*.com", 0));
    /* deny wins, and a wildcard covering a denied name is refused too */
    EXPECT(!allowed(p, "admin.example.com", 0));
    EXPECT(!allowed(p, "*.example.com", 0));
    EXPECT(!allowed(p, "x.secret.example.com", 0));
    EXPECT(!allowed(p, "*.secret.example.com", 0));
    EXPECT(allowed(p, "secret.example.com", 0));
    /* IP ranges */
    EXPECT(allowed(p, "10.1.2.3", 0));
    EXPECT(!allowed(p, "10.9.1.1", 0));
    EXPECT(!allowed(p, "11.0.0.1", 0));
    EXPECT(allowed(p, "fd12::1", 0));
    EXPECT(allowed(p, "[fd12::1]", 0));
    EXPECT(!allowed(p, "fe80::1", 0));
    /* e-mail: any at the domain (case-insensitive domain), or one address (local part exact) */
    EXPECT(allowed(p, "ada@example.com", 1));
    EXPECT(allowed(p, "ada@EXAMPLE.com", 1));
    EXPECT(!allowed(p, "ada@sub.example.com", 1));
    EXPECT(allowed(p, "boss@other.test", 1));
    EXPECT(!allowed(p, "Boss@other.test", 1));
    EXPECT(!allowed(p, "x@other.test", 1));
    /* URI prefix */
    EXPECT(allowed(p, "spiffe://example.org/web/1", 1));
    EXPECT(!allowed(p, "spiffe://example.org/db", 1));
    struct moat_err err = {0};
    const char *names[] = {"www.example.com", "admin.example.com"};
    EXPECT_INT(moat_policy_check(p, "ca/policy", names, 2, 30, 0, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "admin.example.com"));
    EXPECT(ph_contains(err.msg, "deny admin.example.com"));
    EXPECT_STR(err.where, "ca/policy:8");
    moat_policy_free(p);
}

TEST_CASE(wildcard_against_exact_deny)
{
    struct moat_policy *p = parse_ok("deny admin.example.com\n");
    EXPECT(!allowed(p, "*.example.com", 0));  /* covers admin.example.com */
    EXPECT(allowed(p, "*.x.example.com", 0)); /* one label below x: never admin.example.com */
    EXPECT(allowed(p, "www.example.com", 0));
    EXPECT(allowed(p, "example.com", 0));
    moat_policy_free(p);
}

TEST_CASE(days_and_kinds)
{
    struct moat_policy *p = parse_ok("max_days 30\nclient no\n");
    const char *n1[] = {"a.test"};
    struct moat_err err = {0};
    EXPECT_INT(moat_policy_check(p, NULL, n1, 1, 30, 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_policy_check(p, NULL, n1, 1, 31, 0, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "at most 30 days"));
    EXPECT_INT(moat_policy_check(p, NULL, n1, 1, 1, 1, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "client certificates"));
    moat_policy_free(p);
    p = parse_ok("server off\n");
    EXPECT_INT(moat_policy_check(p, NULL, n1, 1, 1, 0, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_policy_check(p, NULL, n1, 1, 1, 1, &err).kind, MOAT_OK);
    moat_policy_free(p);
}

TEST_CASE(bad_policy_files)
{
    static const struct {
        const char *text;
        const char *where;
        const char *needle;
    } cases[] = {
        {"allow\n", "policy:1", "keyword and one value"},
        {"\nallow a.test b.test\n", "policy:2", "not 3 words"},
        {"permit a.test\n", "policy:1", "unknown keyword"},
        {"allow bad name!\n", "policy:1", "not 3 words"},
        {"allow a..test\n", "policy:1", "not a pattern"},
        {"allow 10.0.0.0/33\n", "policy:1", "not a pattern"},
        {"deny *.com\n", "policy:1", "not a pattern"},
        {"max_days 0\n", "policy:1", "max_days"},
        {"max_days 12x\n", "policy:1", "max_days"},
        {"max_days 99999999999999999999\n", "policy:1", "max_days"},
        {"client maybe\n", "policy:1", "yes or no"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct moat_policy *p = (struct moat_policy *)1;
        struct moat_err err = {0};
        moat_rc rc = moat_policy_parse(cases[i].text, strlen(cases[i].text), "policy", &p, &err);
        EXPECT_INT(rc.kind, MOAT_E_CONFIG);
        EXPECT(p == NULL);
        EXPECT_STR(err.where, cases[i].where);
        if (!ph_contains(err.msg, cases[i].needle)) {
            TEST__FAIL("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].needle);
        }
    }
    /* A NUL byte and an over-long line. */
    struct moat_policy *p = NULL;
    EXPECT_INT(moat_policy_parse("allow a\0.test\n", 14, "policy", &p, NULL).kind, MOAT_E_CONFIG);
    char big[700];
    memset(big, 'a', sizeof(big));
    EXPECT_INT(moat_policy_parse(big, sizeof(big), "policy", &p, NULL).kind, MOAT_E_CONFIG);
}

TEST_CASE(policy_file_load)
{
    ph_dir_make();
    struct moat_policy *p = NULL;
    EXPECT_INT(moat_policy_load(ph_dir, &p, NULL).kind, MOAT_OK); /* no file: empty */
    EXPECT(p != NULL && p->nrules == 0);
    moat_policy_free(p);
    ph_write_str(ph_path("policy"), "allow *.corp.test\n");
    EXPECT_INT(moat_policy_load(ph_dir, &p, NULL).kind, MOAT_OK);
    EXPECT(p != NULL && p->nrules == 1);
    EXPECT(allowed(p, "a.corp.test", 0) && !allowed(p, "a.test", 0));
    moat_policy_free(p);
    ph_write_str(ph_path("policy"), "nonsense here\n");
    struct moat_err err = {0};
    EXPECT_INT(moat_policy_load(ph_dir, &p, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.where, "/policy:1"));
    ph_dir_remove();
}

static X509 *ca_with(NAME_CONSTRAINTS *nc, EVP_PKEY *k)
{
    X509 *x = ph_cert(&(struct ph_cert_spec){.cn = "nc ca",
                                             .key = k,
                                             .nb_offset = -PH_DAY,
                                             .na_offset = PH_DAY,
                                             .bc = "critical,CA:TRUE",
                                             .ku = "critical,keyCertSign"});
    X509_add1_ext_i2d(x, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT);
    return x;
}

TEST_CASE(name_constraints)
{
    const char *permit[] = {"example.com", "*.corp.test", "10.0.0.0/8", "@example.com"};
    const char *exclude[] = {"secret.example.com", "10.9.0.0/16"};
    moat_rc rc = {MOAT_E_INTERNAL};
    struct moat_err err = {0};
    NAME_CONSTRAINTS *nc = moat_policy_constraints_new(permit, 4, exclude, 2, &rc, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    EXPECT(nc != NULL);
    EVP_PKEY *k = ph_key();
    X509 *ca = ca_with(nc, k);
    X509 *cas[] = {ca};
    static const struct {
        const char *name;
        int ok;
    } cases[] = {
        {"example.com", 1},     {"www.example.com", 1},    {"*.example.com", 1},
        {"a.corp.test", 1},     {"corp.test", 1},          {"example.org", 0},
        {"badexample.com", 0},  {"secret.example.com", 0}, {"x.secret.example.com", 0},
        {"10.1.1.1", 1},        {"10.9.1.1", 0},           {"192.168.1.1", 0},
        {"ada@example.com", 1}, {"ada@example.org", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *names[] = {cases[i].name};
        moat_rc r = moat_policy_check_constraints(cas, 1, names, 1, &err);
        if ((r.kind == MOAT_OK) != cases[i].ok) {
            TEST__FAIL("%s: got %d, expected %s", cases[i].name, r.kind,
                       cases[i].ok ? "allowed" : "refused");
        }
    }
    const char *two[] = {"www.example.com", "evil.test"};
    EXPECT_INT(moat_policy_check_constraints(cas, 1, two, 2, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "\"evil.test\" is outside"));
    const char *ex[] = {"secret.example.com"};
    EXPECT_INT(moat_policy_check_constraints(cas, 1, ex, 1, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "excluded"));
    EXPECT_INT(ERR_peek_error(), 0);
    X509_free(ca);
    NAME_CONSTRAINTS_free(nc);

    /* No constraints: nothing to build; bad words refused. */
    EXPECT(moat_policy_constraints_new(NULL, 0, NULL, 0, &rc, NULL) == NULL);
    EXPECT_INT(rc.kind, MOAT_OK);
    const char *bad[] = {"not a name"};
    EXPECT(moat_policy_constraints_new(bad, 1, NULL, 0, &rc, &err) == NULL);
    EXPECT_INT(rc.kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "not a name constraint"));
    const char *badip[] = {"10.0.0.0/40"};
    EXPECT(moat_policy_constraints_new(NULL, 0, badip, 1, &rc, &err) == NULL);
    EXPECT_INT(rc.kind, MOAT_E_USAGE);
    EVP_PKEY_free(k);
}

TEST_CASE(leaf_validity_time_checks)
{
    time_t now = 1700000000, nb = 0, na = 0;
    int cut = -1;
    struct moat_err err = {0};
    /* plain: backdated an hour, `days` long */
    EXPECT_INT(moat_ca_leaf_validity(now, 90, 0, &nb, &na, &cut, &err).kind, MOAT_OK);
    EXPECT_INT(nb, now - MOAT_CA_BACKDATE_SECONDS);
    EXPECT_INT(na, now + 90 * PH_DAY);
    EXPECT_INT(cut, 0);
    /* issuer ends in 10 days: the leaf ends with it, and says it was cut */
    EXPECT_INT(moat_ca_leaf_validity(now, 90, now + 10 * PH_DAY, &nb, &na, &cut, &err).kind,
               MOAT_OK);
    EXPECT_INT(na, now + 10 * PH_DAY);
    EXPECT_INT(cut, 1);
    /* issuer ends later than the leaf: not cut */
    EXPECT_INT(moat_ca_leaf_validity(now, 30, now + 31 * PH_DAY, &nb, &na, &cut, &err).kind,
               MOAT_OK);
    EXPECT_INT(na, now + 30 * PH_DAY);
    EXPECT_INT(cut, 0);
    /* issuer expired, or expiring within a day: refused */
    EXPECT_INT(moat_ca_leaf_validity(now, 30, now - 1, &nb, &na, NULL, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.msg, "has expired"));
    EXPECT_INT(moat_ca_leaf_validity(now, 30, now + PH_DAY - 1, &nb, &na, NULL, &err).kind,
               MOAT_E_CONFIG);
    EXPECT(ph_contains(err.msg, "within a day"));
    EXPECT_INT(moat_ca_leaf_validity(now, 30, now + PH_DAY, &nb, &na, NULL, &err).kind, MOAT_OK);
    /* days below 1 */
    EXPECT_INT(moat_ca_leaf_validity(now, 0, 0, &nb, &na, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_ca_leaf_validity(now, -5, 0, &nb, &na, NULL, &err).kind, MOAT_E_USAGE);
}

int main(void)
{
    RUN(names_classified);
    RUN(names_check_server_vs_client);
    RUN(empty_policy_allows_all);
    RUN(allow_and_deny);
    RUN(wildcard_against_exact_deny);
    RUN(days_and_kinds);
    RUN(bad_policy_files);
    RUN(policy_file_load);
    RUN(name_constraints);
    RUN(leaf_validity_time_checks);
    TEST_MAIN_END();
}
