/*
 * test_conf_client.c: the mutual-TLS directives of a site block (serve/conf.c): client_auth,
 * client_ca, client_crl, client_depth, client_allow and client_path read into struct
 * moat_conf_site, their defaults, and a table of every mistake with its exact "file:line:col"
 * and message (see docs/config.md, "Mutual TLS").
 */
#include "serve/conf.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct moat_conf *parse_ok(const char *text)
{
    struct moat_conf *c = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), "/etc/moat", &c, &err);
    if (!moat_ok(rc)) {
        TEST__FAIL("parse failed: %s: %s", err.where, err.msg);
        return NULL;
    }
    return c;
}

static const char full[] = "site api.example {\n"
                           "    root ./www\n"
                           "    client_auth require\n"
                           "    client_ca clients-ca.pem /abs/more-ca.pem\n"
                           "    client_ca third.pem\n"
                           "    client_crl clients.crl clients.crl.der\n"
                           "    client_depth 2\n"
                           "    client_allow cn:alice \"dns:*.svc.example\" bob\n"
                           "    client_allow \"subject:CN=carol,O=Example Corp\"\n"
                           "    client_path /admin/\n"
                           "    client_path /ops cn:bob EMAIL:*@ops.example uri:spiffe://x/*\n"
                           "    client_path /\n"
                           "}\n"
                           "site www.example {\n"
                           "    root ./www\n"
                           "    client_auth optional\n"
                           "    client_ca clients-ca.pem\n"
                           "}\n"
                           "site plain.example {\n"
                           "    root ./www\n"
                           "}\n";

TEST_CASE(every_directive_read)
{
    struct moat_conf *c = parse_ok(full);
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->nsites, 3);
    const struct moat_conf_site *s = &c->sites[0];
    EXPECT_INT(s->client_auth, 2);
    /* Repeated client_ca directives add up; paths resolve against the config's folder. */
    EXPECT_INT(s->nclient_ca, 3);
    EXPECT_STR(s->client_ca[0], "/etc/moat/clients-ca.pem");
    EXPECT_STR(s->client_ca[1], "/abs/more-ca.pem");
    EXPECT_STR(s->client_ca[2], "/etc/moat/third.pem");
    EXPECT_INT(s->nclient_crl, 2);
    EXPECT_STR(s->client_crl[0], "/etc/moat/clients.crl");
    EXPECT_STR(s->client_crl[1], "/etc/moat/clients.crl.der");
    EXPECT_INT(s->client_depth, 2);
    /* Patterns are kept as written (quotes removed), in order, across directives. */
    EXPECT_INT(s->nclient_allow, 4);
    EXPECT_STR(s->client_allow[0], "cn:alice");
    EXPECT_STR(s->client_allow[1], "dns:*.svc.example");
    EXPECT_STR(s->client_allow[2], "bob");
    EXPECT_STR(s->client_allow[3], "subject:CN=carol,O=Example Corp");
    EXPECT_INT(s->nclient_paths, 3);
    /* A trailing slash is dropped: "/admin" and "/admin/" are the same prefix. */
    EXPECT_STR(s->client_paths[0].prefix, "/admin");
    EXPECT_INT(s->client_paths[0].nallow, 0);
    EXPECT_STR(s->client_paths[1].prefix, "/ops");
    EXPECT_INT(s->client_paths[1].nallow, 3);
    EXPECT_STR(s->client_paths[1].allow[0], "cn:bob");
    EXPECT_STR(s->client_paths[1].allow[1], "EMAIL:*@ops.example");
    EXPECT_STR(s->client_paths[1].allow[2], "uri:spiffe://x/*");
    /* "/" alone stays "/" (the whole site). */
    EXPECT_STR(s->client_paths[2].prefix, "/");

    s = &c->sites[1];
    EXPECT_INT(s->client_auth, 1);
    EXPECT_INT(s->nclient_ca, 1);
    EXPECT_INT(s->nclient_crl, 0);
    EXPECT_INT(s->client_depth, 0);
    EXPECT_INT(s->nclient_allow, 0);
    EXPECT_INT(s->nclient_paths, 0);

    /* Defaults: no client authentication. */
    s = &c->sites[2];
    EXPECT_INT(s->client_auth, 0);
    EXPECT(s->client_ca == NULL);
    EXPECT_INT(s->nclient_ca, 0);
    EXPECT_INT(s->nclient_crl, 0);
    EXPECT_INT(s->client_depth, 0);
    EXPECT_INT(s->nclient_allow, 0);
    EXPECT(s->client_paths == NULL);
    EXPECT_INT(s->nclient_paths, 0);
    moat_conf_free(c);
}

TEST_CASE(other_good_forms)
{
    static const char *const good[] = {
        /* off said out loud, with nothing else */
        "site x { root r; client_auth off }",
        /* the depth bounds */
        "site x { root r; client_auth require; client_ca a.pem; client_depth 1 }",
        "site x { root r; client_auth require; client_ca a.pem; client_depth 16 }",
        /* kinds in any case; every kind; a bare URI ("://" is not a kind) */
        "site x { root r; client_auth require; client_ca a.pem; client_allow CN:a Dns:b "
        "email:c uri:d ip:10.0.0.* subject:CN=e spiffe://example.org/* }",
        /* a bare glob holding ':' with '@' or '=' in it is not mistaken for a kind */
        "site x { root r; client_auth require; client_ca a.pem; client_allow user:x@example "
        "O=a:b }",
        /* IPv6 through the ip kind */
        "site x { root r; client_auth require; client_ca a.pem; client_allow ip:::1 }",
        /* client_path needs client_auth, optional being enough */
        "site x { root r; client_auth optional; client_ca a.pem; client_path /a; client_path "
        "/b/c/ }",
        /* each site has its own client_auth: no "already set" across sites */
        "site x { root r; client_auth require; client_ca a.pem }\n"
        "site y { root r; client_auth require; client_ca a.pem }",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct moat_conf *c = NULL;
        struct moat_err err = {0};
        if (!moat_ok(moat_conf_parse("m.conf", good[i], strlen(good[i]), "", &c, &err))) {
            TEST__FAIL("good case %zu refused: %s: %s\n  %s", i, err.where, err.msg, good[i]);
        }
        moat_conf_free(c);
    }
}

TEST_CASE(relative_paths_without_base_dir)
{
    const char *t = "site x { root r; client_auth require; client_ca ca/a.pem; client_crl b.crl }";
    struct moat_conf *c = NULL;
    EXPECT(moat_ok(moat_conf_parse("m.conf", t, strlen(t), NULL, &c, NULL)));
    if (c != NULL) {
        EXPECT_STR(c->sites[0].client_ca[0], "ca/a.pem");
        EXPECT_STR(c->sites[0].client_crl[0], "b.crl");
    }
    moat_conf_free(c);
}

struct bad_case {
    const char *text;
    const char *where;
    const char *msg;
};

#define NEED_AUTH(site)                                                                            \
    "site \"" site "\" has client_* settings but client_auth is off (add \"client_auth "           \
    "optional\" or \"client_auth require\")"
#define DEPTH "client_depth is a number between 1 and 16"
#define PREFIX                                                                                     \
    "client_path takes a plain path prefix starting with \"/\" (no \".\" or \"..\" segments, no "  \
    "\"//\", no %-escapes, no query), e.g. /admin"
#define UNKNOWN_KIND(p)                                                                            \
    "pattern \"" p "\" has an unknown kind before ':' (use cn:, dns:, email:, uri:, ip: or "       \
    "subject:)"

/* One row per rule; the message is part of the interface (people read it), so it is exact. */
static const struct bad_case bad[] = {
    /* client_auth */
    {"site x {\n root r\n client_auth maybe\n}", "m.conf:3:14",
     "client_auth takes off, optional or require, not \"maybe\""},
    {"site x { root r; client_auth Require; client_ca a }", "m.conf:1:30",
     "client_auth takes off, optional or require, not \"Require\""},
    {"site x { root r; client_auth on; client_ca a }", "m.conf:1:30",
     "client_auth takes off, optional or require, not \"on\""},
    {"site x { root r; client_auth }", "m.conf:1:18",
     "\"client_auth\" takes 1 argument, got 0 (usage: client_auth off|optional|require)"},
    {"site x { root r; client_auth require optional; client_ca a }", "m.conf:1:38",
     "\"client_auth\" takes 1 argument, got 2 (usage: client_auth off|optional|require)"},
    {"site x { root r; client_auth require; client_auth optional; client_ca a }", "m.conf:1:39",
     "\"client_auth\" is already set at line 1 (keep only one)"},
    {"site x { root r; client_auth require { } }", "m.conf:1:18",
     "\"client_auth\" does not take a { } block (usage: client_auth off|optional|require)"},
    {"client_auth require\nsite x { root r }", "m.conf:1:1",
     "\"client_auth\" is not allowed at the top level (it belongs inside a site NAME { } block "
     "or inside a stream NAME { } block)"},
    {"tls { client_ca a.pem }\nsite x { root r }", "m.conf:1:7",
     "\"client_ca\" is not allowed inside tls { } (it belongs inside a site NAME { } block or "
     "inside a stream NAME { } block)"},
    {"site x { root r; client_auht require }", "m.conf:1:18",
     "unknown directive \"client_auht\" (did you mean \"client_auth\"?)"},
    /* the whole site: a mode without a CA, settings without a mode */
    {"site x {\n root r\n client_auth require\n}", "m.conf:1:1",
     "site \"x\" asks for client certificates but names no CA for them (add \"client_ca "
     "CA.pem\")"},
    {"site a.example b.example { root r; client_auth optional }", "m.conf:1:1",
     "site \"a.example\" asks for client certificates but names no CA for them (add "
     "\"client_ca CA.pem\")"},
    {"site y { root r }\nsite x { root r; client_auth optional; client_crl c.crl }", "m.conf:2:1",
     "site \"x\" asks for client certificates but names no CA for them (add \"client_ca "
     "CA.pem\")"},
    {"site x { root r; client_ca a.pem }", "m.conf:1:1", NEED_AUTH("x")},
    {"site x { root r; client_auth off; client_ca a.pem }", "m.conf:1:1", NEED_AUTH("x")},
    {"site x { root r; client_crl a.crl }", "m.conf:1:1", NEED_AUTH("x")},
    {"site x { root r; client_depth 3 }", "m.conf:1:1", NEED_AUTH("x")},
    {"site x { root r; client_allow cn:a }", "m.conf:1:1", NEED_AUTH("x")},
    {"site x { root r; client_path /admin }", "m.conf:1:1", NEED_AUTH("x")},
    {"site ok { root r; client_auth require; client_ca a }\n"
     "site x { root r; client_path /admin }",
     "m.conf:2:1", NEED_AUTH("x")},
    /* files */
    {"site x { root r; client_auth require; client_ca }", "m.conf:1:39",
     "\"client_ca\" takes at least 1 argument, got 0 (usage: client_ca CA.pem...)"},
    {"site x { root r; client_auth require; client_ca a.pem; client_crl }", "m.conf:1:56",
     "\"client_crl\" takes at least 1 argument, got 0 (usage: client_crl CRL.pem...)"},
    {"site x { root r; client_auth require; client_ca a.pem \"\" }", "m.conf:1:55",
     "empty client CA path (write a path, e.g. ./www)"},
    {"site x { root r; client_auth require; client_ca a.pem; client_crl \"\" }", "m.conf:1:67",
     "empty CRL path (write a path, e.g. ./www)"},
    /* client_depth */
    {"site x { root r; client_auth require; client_ca a; client_depth 0 }", "m.conf:1:65", DEPTH},
    {"site x { root r; client_auth require; client_ca a; client_depth 17 }", "m.conf:1:65", DEPTH},
    {"site x { root r; client_auth require; client_ca a; client_depth -1 }", "m.conf:1:65", DEPTH},
    {"site x { root r; client_auth require; client_ca a; client_depth 2.5 }", "m.conf:1:65", DEPTH},
    {"site x { root r; client_auth require; client_ca a; client_depth deep }", "m.conf:1:65",
     DEPTH},
    {"site x { root r; client_auth require; client_ca a; client_depth 99999999999999999999 }",
     "m.conf:1:65", DEPTH},
    {"site x { root r; client_auth require; client_ca a; client_depth 2 3 }", "m.conf:1:67",
     "\"client_depth\" takes 1 argument, got 2 (usage: client_depth N)"},
    {"site x { root r; client_auth require; client_ca a; client_depth 2; client_depth 3 }",
     "m.conf:1:68", "\"client_depth\" is already set at line 1 (keep only one)"},
    /* client_allow */
    {"site x { root r; client_auth require; client_ca a; client_allow }", "m.conf:1:52",
     "\"client_allow\" takes at least 1 argument, got 0 (usage: client_allow PATTERN...)"},
    {"site x { root r; client_auth require; client_ca a; client_allow cn:a \"\" }", "m.conf:1:70",
     "empty pattern"},
    {"site x { root r; client_auth require; client_ca a; client_allow san:a }", "m.conf:1:65",
     UNKNOWN_KIND("san:a")},
    {"site x { root r; client_auth require; client_ca a; client_allow common_name:a }",
     "m.conf:1:65", UNKNOWN_KIND("common_name:a")},
    /* a bare IPv6 address reads as an empty kind: it must be written ip:::1 */
    {"site x { root r; client_auth require; client_ca a; client_allow ::1 }", "m.conf:1:65",
     UNKNOWN_KIND("::1")},
    /* client_path */
    {"site x { root r; client_auth optional; client_ca a; client_path }", "m.conf:1:53",
     "\"client_path\" takes at least 1 argument, got 0 (usage: client_path /PREFIX "
     "[PATTERN...])"},
    {"site x { root r; client_auth optional; client_ca a; client_path admin }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path cn:bob }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path /a/../admin }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path /a/./admin }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path /%61dmin }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path /admin?x=1 }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path /ops dns:a.b x:y }",
     "m.conf:1:78", UNKNOWN_KIND("x:y")},
    {"site x { root r; client_auth optional; client_ca a; client_path /ops \"\" }", "m.conf:1:70",
     "empty pattern"},
};

static int check_bad(const struct bad_case *b, size_t i)
{
    struct moat_conf *c = (struct moat_conf *)1;
    struct moat_err err = {0};
    moat_rc rc = moat_conf_parse("m.conf", b->text, strlen(b->text), "/etc/moat", &c, &err);
    if (moat_ok(rc)) {
        moat_conf_free(c);
        fprintf(stderr, "case %zu (%s): accepted, want %s\n", i, b->text, b->msg);
        return 0;
    }
    int ok = c == NULL && rc.kind == MOAT_E_CONFIG && err.kind == MOAT_E_CONFIG &&
             strcmp(err.where, b->where) == 0 && strcmp(err.msg, b->msg) == 0;
    if (!ok) {
        fprintf(stderr, "case %zu (%s):\n  got  %s: %s (kind %d)\n  want %s: %s\n", i, b->text,
                err.where, err.msg, rc.kind, b->where, b->msg);
    }
    return ok;
}

TEST_CASE(bad_configs)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (!check_bad(&bad[i], i)) {
            TEST__FAIL("bad case %zu", i);
        }
    }
}

/*
 * A prefix that ends in "/.." or "/." or holds "//" could never match a normalised request
 * path, so the path it was meant to protect would silently stay open: refused.
 */
static const struct bad_case never_matching[] = {
    {"site x { root r; client_auth optional; client_ca a; client_path /admin/.. }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path /admin/. }", "m.conf:1:65",
     PREFIX},
    {"site x { root r; client_auth optional; client_ca a; client_path //admin }", "m.conf:1:65",
     PREFIX},
};

TEST_CASE(never_matching_prefixes_refused)
{
    for (size_t i = 0; i < sizeof(never_matching) / sizeof(never_matching[0]); i++) {
        EXPECT(check_bad(&never_matching[i], i));
    }
}

int main(void)
{
    RUN(every_directive_read);
    RUN(other_good_forms);
    RUN(relative_paths_without_base_dir);
    RUN(bad_configs);
    RUN(never_matching_prefixes_refused);
    TEST_MAIN_END();
}
