/*
 * test_preflight.c: the CAA decision of the pre-flight checks (RFC 8659 §4, RFC 8657), on
 * record sets given directly (the DNS side is tested against Knot in test_acme_dns.py).
 */
#include "acme/preflight.h"

#include "test.h"

#include <string.h>

static const char *const LE[] = {"letsencrypt.org"};
#define ACCT "https://acme.example/acct/1"

static int allows(const struct moat_caa *rrs, size_t n, int wildcard, size_t nids, char *why)
{
    why[0] = '\0';
    return moat_acme_caa_allows(rrs, n, wildcard, LE, nids, ACCT, why, 300);
}

TEST_CASE(issue_for_this_ca)
{
    char why[300];
    struct moat_caa one[] = {{0, "issue", "letsencrypt.org"}};
    EXPECT_INT(allows(one, 1, 0, 1, why), 1);
    struct moat_caa other[] = {{0, "issue", "other.example"}};
    EXPECT_INT(allows(other, 1, 0, 1, why), 0);
    EXPECT(strstr(why, "allow only other.example") != NULL);
    /* a CA that does not say its CAA identity: only "nobody" can be judged */
    EXPECT_INT(allows(other, 1, 0, 0, why), 1);
    struct moat_caa none[] = {{0, "issue", ";"}};
    EXPECT_INT(allows(none, 1, 0, 0, why), 0);
    EXPECT(strstr(why, "forbid every CA") != NULL);
    /* case and parameters around the domain do not matter */
    struct moat_caa params[] = {{0, "issue", " LetsEncrypt.org ; validationmethods=dns-01"}};
    EXPECT_INT(allows(params, 1, 0, 1, why), 1);
    /* one of several */
    struct moat_caa two[] = {{0, "issue", "other.example"}, {0, "issue", "letsencrypt.org"}};
    EXPECT_INT(allows(two, 2, 0, 1, why), 1);
}

TEST_CASE(only_other_properties)
{
    char why[300];
    struct moat_caa iodef[] = {{0, "iodef", "mailto:sec@example.com"}};
    EXPECT_INT(allows(iodef, 1, 0, 1, why), 1);
    struct moat_caa crit[] = {{128, "tbs", "x"}};
    EXPECT_INT(allows(crit, 1, 0, 1, why), 0);
    EXPECT(strstr(why, "critical") != NULL);
    /* a critical property moat knows is no obstacle */
    struct moat_caa crit_known[] = {{128, "issue", "letsencrypt.org"}};
    EXPECT_INT(allows(crit_known, 1, 0, 1, why), 1);
    /* an unknown one that is not critical is ignored */
    struct moat_caa noncrit[] = {{0, "tbs", "x"}, {0, "issue", "letsencrypt.org"}};
    EXPECT_INT(allows(noncrit, 2, 0, 1, why), 1);
}

TEST_CASE(wildcards_use_issuewild)
{
    char why[300];
    /* issuewild replaces issue for wildcards... */
    struct moat_caa both[] = {{0, "issue", "letsencrypt.org"}, {0, "issuewild", ";"}};
    EXPECT_INT(allows(both, 2, 0, 1, why), 1);
    EXPECT_INT(allows(both, 2, 1, 1, why), 0);
    /* ...and issue applies to wildcards when there is no issuewild */
    struct moat_caa only_issue[] = {{0, "issue", "letsencrypt.org"}};
    EXPECT_INT(allows(only_issue, 1, 1, 1, why), 1);
    struct moat_caa wild_ok[] = {{0, "issue", ";"}, {0, "issuewild", "letsencrypt.org"}};
    EXPECT_INT(allows(wild_ok, 2, 1, 1, why), 1);
    EXPECT_INT(allows(wild_ok, 2, 0, 1, why), 0);
}

TEST_CASE(account_uri)
{
    char why[300];
    struct moat_caa mine[] = {{0, "issue", "letsencrypt.org; accounturi=" ACCT}};
    EXPECT_INT(allows(mine, 1, 0, 1, why), 1);
    struct moat_caa theirs[] = {
        {0, "issue", "letsencrypt.org; accounturi=https://acme.example/acct/2"}};
    EXPECT_INT(allows(theirs, 1, 0, 1, why), 0);
    EXPECT(strstr(why, "acct/2") != NULL);
}

int main(void)
{
    RUN(issue_for_this_ca);
    RUN(only_other_properties);
    RUN(wildcards_use_issuewild);
    RUN(account_uri);
    TEST_MAIN_END();
}
