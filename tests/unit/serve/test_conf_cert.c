/*
 * test_conf_cert.c: the site directive cert_ca of serve/conf.c (the CA a site's certificates
 * must lead to): paths resolved against the config's folder, repeats adding up, and the
 * refusals with their exact "file:line:col" and message.
 */
#include "serve/conf.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static struct moat_conf *parse_ok(const char *text)
{
    struct moat_conf *c = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), "/etc/moat", &c, &err);
    if (!moat_ok(rc)) {
        TEST__FAIL("parse of [%s] failed: %s: %s", text, err.where, err.msg);
        return NULL;
    }
    return c;
}

TEST_CASE(cert_ca_paths)
{
    struct moat_conf *c = parse_ok("site a.test {\n"
                                   "    cert a.pem a.key\n"
                                   "    cert_ca root.pem /srv/ca/other.pem\n"
                                   "    cert_ca \"my ca.pem\"\n"
                                   "    root www\n"
                                   "}\n"
                                   "site b.test {\n"
                                   "    cert b.pem b.key\n"
                                   "    root www\n"
                                   "}\n");
    EXPECT(c != NULL);
    if (c == NULL) {
        return;
    }
    const struct moat_conf_site *s = &c->sites[0];
    EXPECT_INT(s->ncert_ca, 3);
    if (s->ncert_ca == 3) {
        EXPECT_STR(s->cert_ca[0], "/etc/moat/root.pem");
        EXPECT_STR(s->cert_ca[1], "/srv/ca/other.pem");
        EXPECT_STR(s->cert_ca[2], "/etc/moat/my ca.pem");
    }
    /* Per site: the other site has none. */
    EXPECT_INT(c->sites[1].ncert_ca, 0);
    EXPECT(c->sites[1].cert_ca == NULL);
    moat_conf_free(c);
}

struct bad {
    const char *text;
    const char *where;
    const char *msg;
};

static const struct bad bads[] = {
    {"site a.test {\n    cert_ca root.pem\n    root www\n}\n", "m.conf:1:1",
     "site \"a.test\" has cert_ca but no cert: cert_ca names the CA of the site's cert files (add "
     "\"cert CERT.pem KEY.pem\", or remove cert_ca; without cert, moat's local CA issues the "
     "certificate)"},
    {"site a.test {\n    cert a.pem a.key\n    cert_ca\n    root www\n}\n", "m.conf:3:5",
     "\"cert_ca\" takes at least 1 argument, got 0 (usage: cert_ca CA.pem...)"},
    {"site a.test {\n    cert a.pem a.key\n    cert_ca \"\"\n    root www\n}\n", "m.conf:3:13",
     "empty cert_ca path (write a path, e.g. ./www)"},
    {"cert_ca root.pem\nsite a.test {\n    root www\n}\n", "m.conf:1:1", "inside a site"},
};

TEST_CASE(cert_ca_refusals)
{
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        struct moat_conf *c = (struct moat_conf *)1;
        struct moat_err err = {0};
        moat_rc rc =
            moat_conf_parse("m.conf", bads[i].text, strlen(bads[i].text), "/etc/moat", &c, &err);
        EXPECT_INT(rc.kind, MOAT_E_CONFIG);
        EXPECT(c == NULL);
        EXPECT_STR(err.where, bads[i].where);
        if (strstr(err.msg, bads[i].msg) == NULL) {
            TEST__FAIL("case %zu: message \"%s\" lacks \"%s\"", i, err.msg, bads[i].msg);
        }
    }
}

int main(void)
{
    RUN(cert_ca_paths);
    RUN(cert_ca_refusals);
    TEST_MAIN_END();
}
