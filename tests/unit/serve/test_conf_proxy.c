/*
 * test_conf_proxy.c: the reverse-proxy directives of serve/conf.c (proxy, proxy_ca, proxy_cert,
 * proxy_timeout, client_header_prefix) and the site checks that go with them: every accepted
 * form read into its field, the defaults, and a table of refused ones with the exact
 * "file:line:col" and message (people read these, so they are part of the interface).
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

/* The one site of `text`, checked for host, port and scheme; the conf goes to *keep. */
static const struct moat_conf_site *site_ok(const char *text, struct moat_conf **keep)
{
    *keep = parse_ok(text);
    if (*keep == NULL) {
        return NULL;
    }
    EXPECT_INT((*keep)->nsites, 1);
    return &(*keep)->sites[0];
}

struct origin_case {
    const char *text;
    const char *host;
    unsigned port;
    int tls;
};

/* How the origin URL is read: scheme (any case), default ports, brackets, trailing slashes. */
static const struct origin_case origins[] = {
    {"site x { proxy http://127.0.0.1:9000 }", "127.0.0.1", 9000, 0},
    {"site x { proxy https://origin.internal:8443 }", "origin.internal", 8443, 1},
    {"site x { proxy http://backend }", "backend", 80, 0},   /* RFC 9110 §4.2.1 */
    {"site x { proxy https://backend }", "backend", 443, 1}, /* RFC 9110 §4.2.2 */
    {"site x { proxy http://h:1/ }", "h", 1, 0},
    {"site x { proxy HTTPS://Backend:65535// }", "Backend", 65535, 1},
    {"site x { proxy http://[::1]:9000 }", "::1", 9000, 0},
    {"site x { proxy https://localhost:8443 }", "localhost", 8443, 1},
    {"site x { proxy \"http://10.0.0.1:8080\" }", "10.0.0.1", 8080, 0},
};

TEST_CASE(origin_forms)
{
    for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++) {
        struct moat_conf *c;
        const struct moat_conf_site *s = site_ok(origins[i].text, &c);
        if (s == NULL) {
            continue;
        }
        EXPECT_STR(s->proxy_host, origins[i].host);
        EXPECT_INT(s->proxy_port, origins[i].port);
        EXPECT_INT(s->proxy_tls, origins[i].tls);
        EXPECT(s->root == NULL);
        moat_conf_free(c);
    }
}

TEST_CASE(defaults)
{
    struct moat_conf *c;
    const struct moat_conf_site *s = site_ok("site x { proxy http://127.0.0.1:9000 }", &c);
    if (s == NULL) {
        return;
    }
    EXPECT(s->proxy_ca == NULL);
    EXPECT(s->proxy_cert == NULL);
    EXPECT(s->proxy_key == NULL);
    EXPECT_INT(s->proxy_timeout_ms, 60000);
    EXPECT(s->client_header_prefix == NULL); /* proxy.c then uses "X-Client-" */
    EXPECT_INT(s->client_auth, 0);
    moat_conf_free(c);

    /* A static site has no origin at all. */
    s = site_ok("site x { root ./www }", &c);
    if (s == NULL) {
        return;
    }
    EXPECT(s->proxy_host == NULL);
    EXPECT_INT(s->proxy_tls, 0);
    moat_conf_free(c);
}

TEST_CASE(every_option)
{
    static const char text[] = "site api.example.com {\n"
                               "    cert api.pem api.key\n"
                               "    proxy https://origin.internal:8443\n"
                               "    proxy_ca origin-ca.pem\n"
                               "    proxy_cert /etc/ssl/client.pem client.key\n"
                               "    proxy_timeout 90s\n"
                               "    client_auth require\n"
                               "    client_ca clients.pem\n"
                               "    client_header_prefix X-Peer_2-\n"
                               "}\n";
    struct moat_conf *c;
    const struct moat_conf_site *s = site_ok(text, &c);
    if (s == NULL) {
        return;
    }
    EXPECT_STR(s->proxy_host, "origin.internal");
    EXPECT_INT(s->proxy_port, 8443);
    EXPECT_INT(s->proxy_tls, 1);
    /* Paths resolve against the config's folder, like every other path. */
    EXPECT_STR(s->proxy_ca, "/etc/moat/origin-ca.pem");
    EXPECT_STR(s->proxy_cert, "/etc/ssl/client.pem");
    EXPECT_STR(s->proxy_key, "/etc/moat/client.key");
    EXPECT_INT(s->proxy_timeout_ms, 90000);
    EXPECT_STR(s->client_header_prefix, "X-Peer_2-");
    EXPECT_INT(s->client_auth, 2);
    EXPECT_STR(s->where, "m.conf:1:1");
    moat_conf_free(c);
}

TEST_CASE(timeout_bounds)
{
    static const struct {
        const char *v;
        uint64_t ms;
    } ok[] = {{"1ms", 1}, {"1s", 1000}, {"2m", 120000}, {"1h", 3600000}, {"1d", 86400000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "site x { proxy http://h:1; proxy_timeout %s }", ok[i].v);
        struct moat_conf *c;
        const struct moat_conf_site *s = site_ok(text, &c);
        if (s != NULL) {
            EXPECT_INT(s->proxy_timeout_ms, ok[i].ms);
            moat_conf_free(c);
        }
    }
}

/* The prefix limits: 1 and 48 characters are the extremes that pass. */
TEST_CASE(prefix_lengths)
{
    static const char *const ok[] = {"X", "X-012345678901234567890123456789012345678901234-"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text), "site x { proxy http://h:1; client_header_prefix %s }", ok[i]);
        struct moat_conf *c;
        const struct moat_conf_site *s = site_ok(text, &c);
        if (s != NULL) {
            EXPECT_STR(s->client_header_prefix, ok[i]);
            moat_conf_free(c);
        }
    }
    EXPECT_INT(strlen(ok[1]), 48);
}

TEST_CASE(several_proxy_sites)
{
    static const char text[] = "site a.test {\n  proxy http://127.0.0.1:9001\n}\n"
                               "site b.test {\n  proxy https://b.internal\n  proxy_timeout 5s\n}\n"
                               "site * {\n  root ./www\n}\n";
    struct moat_conf *c = parse_ok(text);
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->nsites, 3);
    EXPECT_STR(c->sites[0].proxy_host, "127.0.0.1");
    EXPECT_INT(c->sites[0].proxy_timeout_ms, 60000);
    EXPECT_STR(c->sites[1].proxy_host, "b.internal");
    EXPECT_INT(c->sites[1].proxy_port, 443);
    EXPECT_INT(c->sites[1].proxy_timeout_ms, 5000);
    EXPECT(c->sites[2].proxy_host == NULL);
    EXPECT_STR(c->sites[2].root, "/etc/moat/./www");
    moat_conf_free(c);
}

struct bad_case {
    const char *text;
    const char *where;
    const char *msg;
};

#define WRITE_ONLY "write only scheme, host and port (no path, no user), e.g. http://127.0.0.1:9000"
#define TIMEOUT_RANGE "proxy_timeout is a duration between 1ms and 1d, e.g. 60s"
#define PREFIX_CHARS "client_header_prefix may hold letters, digits, '-' and '_' only"
#define PREFIX_LEN "client_header_prefix must be 1 to 48 characters, e.g. X-Client-"

static const struct bad_case bad[] = {
    /* proxy: the scheme */
    {"site x { proxy ftp://h:1 }", "m.conf:1:16",
     "proxy takes http://HOST:PORT or https://HOST:PORT"},
    {"site x { proxy 127.0.0.1:9000 }", "m.conf:1:16",
     "proxy takes http://HOST:PORT or https://HOST:PORT"},
    {"site x { proxy ws://h:1 }", "m.conf:1:16",
     "proxy takes http://HOST:PORT or https://HOST:PORT"},
    /* proxy: no path, user, query */
    {"site x { proxy http://h:1/app }", "m.conf:1:16", "proxy \"http://h:1/app\": " WRITE_ONLY},
    {"site x { proxy http://u@h:1 }", "m.conf:1:16", "proxy \"http://u@h:1\": " WRITE_ONLY},
    {"site x { proxy http://u:pw@h:1 }", "m.conf:1:16", "proxy \"http://u:pw@h:1\": " WRITE_ONLY},
    {"site x { proxy http:// }", "m.conf:1:16", "proxy \"http://\": " WRITE_ONLY},
    {"site x { proxy https:/// }", "m.conf:1:16", "proxy \"https:///\": " WRITE_ONLY},
    {"site x { proxy http://h:1?x }", "m.conf:1:16",
     "proxy \"http://h:1?x\": the port must be a number from 1 to 65535"},
    /* proxy: host and port */
    {"site x { proxy http://h:0 }", "m.conf:1:16",
     "proxy \"http://h:0\": the port must be a number from 1 to 65535"},
    {"site x { proxy http://h:65536 }", "m.conf:1:16",
     "proxy \"http://h:65536\": the port must be a number from 1 to 65535"},
    {"site x { proxy http://h:abc }", "m.conf:1:16",
     "proxy \"http://h:abc\": the port must be a number from 1 to 65535"},
    {"site x { proxy http://:9000 }", "m.conf:1:16", "proxy \"http://:9000\": no host"},
    {"site x { proxy http://h_x:1 }", "m.conf:1:16",
     "proxy \"http://h_x:1\": not a valid host name or address"},
    {"site x { proxy http://-h:1 }", "m.conf:1:16",
     "proxy \"http://-h:1\": not a valid host name or address"},
    {"site x { proxy http://1.2.3:1 }", "m.conf:1:16",
     "proxy \"http://1.2.3:1\": not a valid IPv4 address (write four numbers 0-255, e.g. "
     "127.0.0.1)"},
    {"site x { proxy http://::1 }", "m.conf:1:16",
     "proxy \"http://::1\": put an IPv6 address in brackets (e.g. [::1]:8443)"},
    {"site x { proxy http://h:1:2 }", "m.conf:1:16",
     "proxy \"http://h:1:2\": put an IPv6 address in brackets (e.g. [::1]:8443)"},
    {"site x { proxy http://[::1] }", "m.conf:1:16",
     "proxy \"http://[::1]\": missing port after the IPv6 address (write e.g. [::1]:8443)"},
    {"site x { proxy http://[::1 }", "m.conf:1:16",
     "proxy \"http://[::1\": missing \"]\" after the IPv6 address (write e.g. [::1]:8443)"},
    /* proxy: arity, repetition, place */
    {"site x { proxy }", "m.conf:1:10",
     "\"proxy\" takes 1 argument, got 0 (usage: proxy http://HOST:PORT | https://HOST:PORT)"},
    {"site x { proxy http://a:1 http://b:2 }", "m.conf:1:27",
     "\"proxy\" takes 1 argument, got 2 (usage: proxy http://HOST:PORT | https://HOST:PORT)"},
    {"site x {\n  proxy http://a:1\n  proxy http://b:2\n}", "m.conf:3:3",
     "\"proxy\" is already set at line 2 (keep only one)"},
    {"proxy http://a:1\nsite x { root r }", "m.conf:1:1",
     "\"proxy\" is not allowed at the top level (it belongs inside a site NAME { } block)"},
    {"timeouts { proxy_timeout 1s }\nsite x { root r }", "m.conf:1:12",
     "\"proxy_timeout\" is not allowed inside timeouts { } (it belongs inside a site NAME { } "
     "block)"},
    {"site x {\n  cert a b\n  proxy http://h:1/p\n}", "m.conf:3:9",
     "proxy \"http://h:1/p\": " WRITE_ONLY},
    /* the site: one of root and proxy, and proxy_* only with a proxy */
    {"site x {\n  root r\n  proxy http://a:1\n}", "m.conf:1:1",
     "site \"x\" has both root and proxy (keep one: a site either serves files or forwards to an "
     "origin)"},
    {"site x { proxy_ca a }", "m.conf:1:1",
     "site \"x\" has nothing to serve (add \"root FOLDER\" or \"proxy http://HOST:PORT\" inside "
     "its block)"},
    {"site x y {\n  root r\n  proxy_ca c.pem\n}", "m.conf:1:1",
     "site \"x\" has proxy_* or client_header_prefix settings but no proxy (add \"proxy "
     "http://HOST:PORT\")"},
    {"site x { root r; proxy_cert c k }", "m.conf:1:1",
     "site \"x\" has proxy_* or client_header_prefix settings but no proxy (add \"proxy "
     "http://HOST:PORT\")"},
    {"site x { root r; proxy_timeout 5s }", "m.conf:1:1",
     "site \"x\" has proxy_* or client_header_prefix settings but no proxy (add \"proxy "
     "http://HOST:PORT\")"},
    /* proxy_ca, proxy_cert */
    {"site x { proxy http://a:1; proxy_ca \"\" }", "m.conf:1:37",
     "empty CA path (write a path, e.g. ./www)"},
    {"site x { proxy http://a:1; proxy_ca a b }", "m.conf:1:39",
     "\"proxy_ca\" takes 1 argument, got 2 (usage: proxy_ca CA.pem)"},
    {"site x { proxy http://a:1; proxy_ca a; proxy_ca b }", "m.conf:1:40",
     "\"proxy_ca\" is already set at line 1 (keep only one)"},
    {"site x { proxy http://a:1; proxy_cert a.pem }", "m.conf:1:28",
     "\"proxy_cert\" takes 2 arguments, got 1 (usage: proxy_cert CERT.pem KEY.pem)"},
    {"site x { proxy http://a:1; proxy_cert a b c }", "m.conf:1:43",
     "\"proxy_cert\" takes 2 arguments, got 3 (usage: proxy_cert CERT.pem KEY.pem)"},
    {"site x { proxy http://a:1; proxy_cert \"\" k }", "m.conf:1:39",
     "empty certificate path (write a path, e.g. ./www)"},
    {"site x { proxy http://a:1; proxy_cert c \"\" }", "m.conf:1:41",
     "empty key path (write a path, e.g. ./www)"},
    /* proxy_timeout */
    {"site x { proxy http://a:1; proxy_timeout 0 }", "m.conf:1:42", TIMEOUT_RANGE},
    {"site x { proxy http://a:1; proxy_timeout 2d }", "m.conf:1:42", TIMEOUT_RANGE},
    {"site x { proxy http://a:1; proxy_timeout soon }", "m.conf:1:42", TIMEOUT_RANGE},
    {"site x { proxy http://a:1; proxy_timeout -1s }", "m.conf:1:42", TIMEOUT_RANGE},
    {"site x { proxy http://a:1; proxy_timeout }", "m.conf:1:28",
     "\"proxy_timeout\" takes 1 argument, got 0 (usage: proxy_timeout DURATION)"},
    {"site x {\n  proxy http://a:1\n  proxy_timeout 1s\n  proxy_timeout 2s\n}", "m.conf:4:3",
     "\"proxy_timeout\" is already set at line 3 (keep only one)"},
    /* client_header_prefix: a token, so the names made from it are valid (RFC 9110 §5.1) */
    {"site x { proxy http://a:1; client_header_prefix X:Bad }", "m.conf:1:49", PREFIX_CHARS},
    {"site x { proxy http://a:1; client_header_prefix \"X Client\" }", "m.conf:1:49", PREFIX_CHARS},
    {"site x { proxy http://a:1; client_header_prefix X-Cl\xC3\xAF- }", "m.conf:1:49",
     PREFIX_CHARS},
    /* an empty prefix would make every field look forged; a long one would not fit */
    {"site x { proxy http://a:1; client_header_prefix \"\" }", "m.conf:1:49", PREFIX_LEN},
    {"site x { proxy http://a:1; client_header_prefix "
     "X-0123456789012345678901234567890123456789012345- }",
     "m.conf:1:49", PREFIX_LEN},
    {"site x { proxy http://a:1; client_header_prefix X Client }", "m.conf:1:51",
     "\"client_header_prefix\" takes 1 argument, got 2 (usage: client_header_prefix X-Client-)"},
    {"site x { proxy http://a:1; client_header_prefix a; client_header_prefix b }", "m.conf:1:52",
     "\"client_header_prefix\" is already set at line 1 (keep only one)"},
};

TEST_CASE(bad_configs)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moat_conf *c = (struct moat_conf *)1;
        struct moat_err err = {0};
        moat_rc rc =
            moat_conf_parse("m.conf", bad[i].text, strlen(bad[i].text), "/etc/moat", &c, &err);
        if (moat_ok(rc)) {
            TEST__FAIL("case %zu (%s): accepted, want %s", i, bad[i].text, bad[i].msg);
            moat_conf_free(c);
            continue;
        }
        EXPECT(c == NULL);
        if (rc.kind != MOAT_E_CONFIG || err.kind != MOAT_E_CONFIG) {
            TEST__FAIL("case %zu: kind %d/%d", i, rc.kind, err.kind);
        }
        if (strcmp(err.where, bad[i].where) != 0 || strcmp(err.msg, bad[i].msg) != 0) {
            TEST__FAIL("case %zu:\n  got  %s: %s\n  want %s: %s", i, err.where, err.msg,
                       bad[i].where, bad[i].msg);
        }
    }
}

/* A refusal after the proxy fields were filled frees them (LeakSanitizer checks). */
TEST_CASE(refusal_after_proxy_frees)
{
    static const char text[] = "site a { proxy https://h:1; proxy_ca c; proxy_cert c k;"
                               " client_header_prefix X-A- }\n"
                               "site b { proxy http://h:2; root r }\n";
    struct moat_conf *c = (struct moat_conf *)1;
    struct moat_err err = {0};
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), NULL, &c, &err);
    EXPECT(!moat_ok(rc));
    EXPECT(c == NULL);
    EXPECT_STR(err.where, "m.conf:2:1");
}

int main(void)
{
    RUN(origin_forms);
    RUN(defaults);
    RUN(every_option);
    RUN(timeout_bounds);
    RUN(prefix_lengths);
    RUN(several_proxy_sites);
    RUN(bad_configs);
    RUN(refusal_after_proxy_frees);
    TEST_MAIN_END();
}
