/*
 * test_conf_proxy.c: the reverse-proxy directives of serve/conf_proxy.c (upstream blocks,
 * trusted_proxies, proxy_protocol, and in a site proxy, proxy_host, proxy_ca, proxy_cert,
 * proxy_timeout, client_header_prefix) and the site and file checks that go with them: every
 * accepted form read into its field, the defaults, and a table of refused ones with the exact
 * "file:line:col" and message (people read these, so they are part of the interface).
 *
 * An inline `proxy http://h:p` is an upstream without a name in c->upstreams and a rule with
 * upstream == NULL whose index points at it; `proxy NAME` names a block, resolved after the
 * whole file is read.
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

/* The one site of `text`; the conf goes to *keep. */
static const struct moat_conf_site *site_ok(const char *text, struct moat_conf **keep)
{
    *keep = parse_ok(text);
    if (*keep == NULL) {
        return NULL;
    }
    EXPECT_INT((*keep)->nsites, 1);
    return &(*keep)->sites[0];
}

/* The upstream of a site's rule i, checked to be in range. */
static const struct moat_conf_upstream *rule_upstream(const struct moat_conf *c,
                                                      const struct moat_conf_site *s, size_t i)
{
    if (i >= s->nproxies || s->proxies[i].index >= c->nupstreams) {
        TEST__FAIL("rule %zu of %zu, index out of %zu upstreams", i, s->nproxies, c->nupstreams);
        return NULL;
    }
    return &c->upstreams[s->proxies[i].index];
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
        EXPECT_INT(s->nproxies, 1);
        EXPECT_INT(c->nupstreams, 1);
        const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
        if (u != NULL) {
            EXPECT(s->proxies[0].prefix == NULL); /* the whole site */
            EXPECT(s->proxies[0].upstream == NULL);
            EXPECT_INT(s->proxies[0].strip, 0);
            EXPECT(s->proxies[0].rewrite == NULL);
            EXPECT(u->name == NULL);
            EXPECT_INT(u->nservers, 1);
            EXPECT_STR(u->servers[0].host, origins[i].host);
            EXPECT_INT(u->servers[0].port, origins[i].port);
            EXPECT_INT(u->servers[0].tls, origins[i].tls);
            EXPECT(u->servers[0].unix_path == NULL);
            EXPECT_INT(u->servers[0].weight, 1);
        }
        EXPECT(s->root == NULL);
        moat_conf_free(c);
    }
}

TEST_CASE(unix_socket_origins)
{
    struct moat_conf *c;
    const struct moat_conf_site *s = site_ok("site x { proxy unix:/run/app.sock }", &c);
    if (s == NULL) {
        return;
    }
    const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
    if (u != NULL) {
        EXPECT(u->servers[0].host == NULL);
        EXPECT_STR(u->servers[0].unix_path, "/run/app.sock");
        EXPECT_INT(u->servers[0].tls, 0);
    }
    moat_conf_free(c);
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
    EXPECT_INT(s->proxy_timeout_ms, 0);      /* the upstream's own defaults apply */
    EXPECT(s->client_header_prefix == NULL); /* the snapshot then uses "X-Client-" */
    EXPECT_INT(s->proxy_host_mode, 0);       /* the client's Host */
    EXPECT(s->proxy_host_value == NULL);
    EXPECT_INT(s->client_auth, 0);
    EXPECT_INT(c->ntrusted_proxies, 0);
    EXPECT_INT(c->nproxy_protocol_listen, 0);
    const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
    if (u != NULL) {
        EXPECT_INT(u->balance, MOAT_CONF_BAL_ROUND_ROBIN);
        EXPECT(u->hash_key == NULL);
        EXPECT_INT(u->keepalive, 32);
        EXPECT_INT(u->keepalive_ms, 60000);
        EXPECT_INT(u->max_conns, 0);
        EXPECT_INT(u->queue, 0);
        EXPECT_INT(u->queue_ms, 10000);
        EXPECT_INT(u->max_fails, 0); /* one server: taking it out helps nobody */
        EXPECT_INT(u->fail_timeout_ms, 10000);
        EXPECT_INT(u->slow_start_ms, 0);
        EXPECT_INT(u->retries, 2);
        EXPECT_INT(u->retry_timeout_ms, 0);
        EXPECT_INT(u->connect_ms, 10000);
        EXPECT_INT(u->first_byte_ms, 60000);
        EXPECT_INT(u->read_ms, 60000);
        EXPECT_INT(u->write_ms, 60000);
        EXPECT_INT(u->total_ms, 0);
        EXPECT(u->check_path == NULL);
        EXPECT(u->ca == NULL);
        EXPECT(u->cert == NULL);
        EXPECT(u->key == NULL);
        EXPECT(u->sni == NULL);
        EXPECT_INT(u->proxy_protocol, 0);
        EXPECT_STR(u->where, "m.conf:1:10");
    }
    moat_conf_free(c);

    /* A static site has no upstream at all. */
    s = site_ok("site x { root ./www }", &c);
    if (s == NULL) {
        return;
    }
    EXPECT_INT(s->nproxies, 0);
    EXPECT_INT(c->nupstreams, 0);
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
                               "    proxy_host upstream\n"
                               "    client_auth require\n"
                               "    client_ca clients.pem\n"
                               "    client_header_prefix X-Peer_2-\n"
                               "}\n";
    struct moat_conf *c;
    const struct moat_conf_site *s = site_ok(text, &c);
    if (s == NULL) {
        return;
    }
    /* Paths resolve against the config's folder, like every other path. */
    EXPECT_STR(s->proxy_ca, "/etc/moat/origin-ca.pem");
    EXPECT_STR(s->proxy_cert, "/etc/ssl/client.pem");
    EXPECT_STR(s->proxy_key, "/etc/moat/client.key");
    EXPECT_INT(s->proxy_timeout_ms, 90000);
    EXPECT_INT(s->proxy_host_mode, 1);
    EXPECT_STR(s->client_header_prefix, "X-Peer_2-");
    EXPECT_INT(s->client_auth, 2);
    EXPECT_STR(s->where, "m.conf:1:1");
    const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
    if (u != NULL) {
        EXPECT_STR(u->servers[0].host, "origin.internal");
        EXPECT_INT(u->servers[0].port, 8443);
        EXPECT_INT(u->servers[0].tls, 1);
        /* The site's options are the inline upstream's. */
        EXPECT_STR(u->ca, "/etc/moat/origin-ca.pem");
        EXPECT_STR(u->cert, "/etc/ssl/client.pem");
        EXPECT_STR(u->key, "/etc/moat/client.key");
        EXPECT_INT(u->connect_ms, 90000);
        EXPECT_INT(u->first_byte_ms, 90000);
        EXPECT_INT(u->read_ms, 90000);
        EXPECT_INT(u->write_ms, 90000);
        EXPECT_INT(u->total_ms, 0);
        EXPECT_STR(u->where, "m.conf:3:5");
        EXPECT_STR(u->servers[0].where, "m.conf:3:5");
    }
    EXPECT_STR(s->proxies[0].where, "m.conf:3:5");
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
            const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
            if (u != NULL) {
                EXPECT_INT(u->connect_ms, ok[i].ms);
                EXPECT_INT(u->read_ms, ok[i].ms);
            }
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
    EXPECT_INT(c->nupstreams, 2);
    const struct moat_conf_upstream *a = rule_upstream(c, &c->sites[0], 0);
    const struct moat_conf_upstream *b = rule_upstream(c, &c->sites[1], 0);
    if (a != NULL && b != NULL) {
        EXPECT(a != b);
        EXPECT_STR(a->servers[0].host, "127.0.0.1");
        EXPECT_INT(a->read_ms, 60000);
        EXPECT_STR(b->servers[0].host, "b.internal");
        EXPECT_INT(b->servers[0].port, 443);
        EXPECT_INT(b->read_ms, 5000);
    }
    EXPECT_INT(c->sites[1].proxy_timeout_ms, 5000);
    EXPECT_INT(c->sites[2].nproxies, 0);
    EXPECT_STR(c->sites[2].root, "/etc/moat/./www");
    moat_conf_free(c);
}

/* ---- upstream blocks -------------------------------------------------------------------- */

TEST_CASE(an_upstream_block_with_every_option)
{
    static const char text[] =
        "upstream app {\n"
        "  server 10.0.0.1:8000 weight 3\n"
        "  server https://b.internal:8443 weight 1000\n"
        "  server unix:/run/app.sock\n"
        "  server [::1]:9000\n"
        "  balance least_conn\n"
        "  keepalive 8\n"
        "  keepalive_timeout 30s\n"
        "  max_conns 100\n"
        "  queue 50 5s\n"
        "  max_fails 3\n"
        "  fail_timeout 20s\n"
        "  slow_start 30s\n"
        "  retries 1\n"
        "  retry_timeout 15s\n"
        "  health_check /healthz interval 2s timeout 500ms rise 3 fall 4 status 200-299 host h.in\n"
        "  timeouts { connect 1s; first_byte 2s; read 3s; write 4s; total 5m }\n"
        "  ca ca.pem\n"
        "  cert c.pem /k/c.key\n"
        "  sni app.internal\n"
        "  proxy_protocol v2\n"
        "}\n"
        "site x { proxy app }\n";
    struct moat_conf *c;
    const struct moat_conf_site *s = site_ok(text, &c);
    if (s == NULL) {
        return;
    }
    EXPECT_INT(c->nupstreams, 1);
    EXPECT_STR(s->proxies[0].upstream, "app");
    EXPECT(s->proxies[0].prefix == NULL);
    const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
    if (u == NULL) {
        moat_conf_free(c);
        return;
    }
    EXPECT_INT(s->proxies[0].index, 0);
    EXPECT_STR(u->name, "app");
    EXPECT_STR(u->where, "m.conf:1:1");
    EXPECT_INT(u->nservers, 4);
    EXPECT_STR(u->servers[0].host, "10.0.0.1");
    EXPECT_INT(u->servers[0].port, 8000);
    EXPECT_INT(u->servers[0].tls, 0);
    EXPECT_INT(u->servers[0].weight, 3);
    EXPECT_STR(u->servers[0].where, "m.conf:2:3");
    EXPECT_STR(u->servers[1].host, "b.internal");
    EXPECT_INT(u->servers[1].port, 8443);
    EXPECT_INT(u->servers[1].tls, 1);
    EXPECT_INT(u->servers[1].weight, 1000);
    EXPECT(u->servers[2].host == NULL);
    EXPECT_STR(u->servers[2].unix_path, "/run/app.sock");
    EXPECT_INT(u->servers[2].weight, 1); /* the default */
    EXPECT_STR(u->servers[3].host, "::1");
    EXPECT_INT(u->servers[3].port, 9000);
    EXPECT_INT(u->balance, MOAT_CONF_BAL_LEAST_CONN);
    EXPECT_INT(u->keepalive, 8);
    EXPECT_INT(u->keepalive_ms, 30000);
    EXPECT_INT(u->max_conns, 100);
    EXPECT_INT(u->queue, 50);
    EXPECT_INT(u->queue_ms, 5000);
    EXPECT_INT(u->max_fails, 3);
    EXPECT_INT(u->fail_timeout_ms, 20000);
    EXPECT_INT(u->slow_start_ms, 30000);
    EXPECT_INT(u->retries, 1);
    EXPECT_INT(u->retry_timeout_ms, 15000);
    EXPECT_STR(u->check_path, "/healthz");
    EXPECT_INT(u->check_interval_ms, 2000);
    EXPECT_INT(u->check_timeout_ms, 500);
    EXPECT_INT(u->check_rise, 3);
    EXPECT_INT(u->check_fall, 4);
    EXPECT_INT(u->check_status_lo, 200);
    EXPECT_INT(u->check_status_hi, 299);
    EXPECT_STR(u->check_host, "h.in");
    EXPECT_INT(u->connect_ms, 1000);
    EXPECT_INT(u->first_byte_ms, 2000);
    EXPECT_INT(u->read_ms, 3000);
    EXPECT_INT(u->write_ms, 4000);
    EXPECT_INT(u->total_ms, 300000);
    EXPECT_STR(u->ca, "/etc/moat/ca.pem");
    EXPECT_STR(u->cert, "/etc/moat/c.pem");
    EXPECT_STR(u->key, "/k/c.key");
    EXPECT_STR(u->sni, "app.internal");
    EXPECT_INT(u->proxy_protocol, 2);
    moat_conf_free(c);
}

TEST_CASE(an_upstream_block_has_the_defaults)
{
    struct moat_conf *c;
    const struct moat_conf_site *s =
        site_ok("upstream app { server a:1; server b:2 }\nsite x { proxy app }", &c);
    if (s == NULL) {
        return;
    }
    const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
    if (u != NULL) {
        EXPECT_INT(u->nservers, 2);
        EXPECT_INT(u->balance, MOAT_CONF_BAL_ROUND_ROBIN);
        EXPECT_INT(u->keepalive, 32);
        EXPECT_INT(u->max_fails, 1); /* several servers: one failure takes one out */
        EXPECT_INT(u->fail_timeout_ms, 10000);
        EXPECT_INT(u->retries, 2);
        EXPECT_INT(u->connect_ms, 10000);
        EXPECT_INT(u->check_interval_ms, 5000);
        EXPECT_INT(u->check_timeout_ms, 2000);
        EXPECT_INT(u->check_rise, 2);
        EXPECT_INT(u->check_fall, 3);
        EXPECT_INT(u->check_status_lo, 200);
        EXPECT_INT(u->check_status_hi, 399);
        EXPECT(u->check_path == NULL);
        EXPECT(u->check_host == NULL);
    }
    moat_conf_free(c);
}

TEST_CASE(every_balance_form)
{
    static const struct {
        const char *line;
        enum moat_conf_balance b;
        const char *key;
    } forms[] = {
        {"balance round_robin", MOAT_CONF_BAL_ROUND_ROBIN, NULL},
        {"balance least_conn", MOAT_CONF_BAL_LEAST_CONN, NULL},
        {"balance random_two", MOAT_CONF_BAL_RANDOM_TWO, NULL},
        {"balance hash ip", MOAT_CONF_BAL_HASH_IP, NULL},
        {"balance hash header X-Tenant", MOAT_CONF_BAL_HASH_HEADER, "X-Tenant"},
        {"balance hash cookie session_id", MOAT_CONF_BAL_HASH_COOKIE, "session_id"},
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char text[200];
        snprintf(text, sizeof(text), "upstream app { server a:1; %s }\nsite x { proxy app }",
                 forms[i].line);
        struct moat_conf *c;
        const struct moat_conf_site *s = site_ok(text, &c);
        if (s == NULL) {
            continue;
        }
        const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
        if (u != NULL) {
            EXPECT_INT(u->balance, forms[i].b);
            if (forms[i].key == NULL) {
                EXPECT(u->hash_key == NULL);
            } else {
                EXPECT_STR(u->hash_key, forms[i].key);
            }
        }
        moat_conf_free(c);
    }
}

/* The status of health_check: one code is a range of one; the queue's timeout is optional. */
TEST_CASE(health_check_and_queue_forms)
{
    struct moat_conf *c;
    const struct moat_conf_site *s =
        site_ok("upstream app { server a:1; health_check /up status 204;"
                " queue 7 }\nsite x { proxy app }",
                &c);
    if (s == NULL) {
        return;
    }
    const struct moat_conf_upstream *u = rule_upstream(c, s, 0);
    if (u != NULL) {
        EXPECT_STR(u->check_path, "/up");
        EXPECT_INT(u->check_status_lo, 204);
        EXPECT_INT(u->check_status_hi, 204);
        EXPECT_INT(u->check_interval_ms, 5000); /* untouched */
        EXPECT_INT(u->queue, 7);
        EXPECT_INT(u->queue_ms, 10000);
    }
    moat_conf_free(c);
}

/* Upstreams may come after the sites that use them; several sites and rules may share one. */
TEST_CASE(rules_resolve_names_after_the_file)
{
    static const char text[] = "site a.test {\n"
                               "  root ./www\n"
                               "  proxy /api/ app strip\n"
                               "  proxy /old other rewrite /v2/\n"
                               "  proxy /s/ http://127.0.0.1:9000\n"
                               "}\n"
                               "site b.test { proxy app }\n"
                               "upstream other { server o:1 }\n"
                               "upstream app { server a:1 }\n";
    struct moat_conf *c = parse_ok(text);
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->nsites, 2);
    EXPECT_INT(c->nupstreams, 3);
    const struct moat_conf_site *a = &c->sites[0];
    EXPECT_INT(a->nproxies, 3);
    if (a->nproxies == 3) {
        EXPECT_STR(a->proxies[0].prefix, "/api"); /* stored without the trailing '/' */
        EXPECT_STR(a->proxies[0].upstream, "app");
        EXPECT_INT(a->proxies[0].strip, 1);
        EXPECT(a->proxies[0].rewrite == NULL);
        EXPECT_STR(a->proxies[0].where, "m.conf:3:3");
        EXPECT_STR(a->proxies[1].prefix, "/old");
        EXPECT_INT(a->proxies[1].strip, 0);
        EXPECT_STR(a->proxies[1].rewrite, "/v2");
        EXPECT_STR(a->proxies[2].prefix, "/s");
        EXPECT(a->proxies[2].upstream == NULL);
        const struct moat_conf_upstream *u0 = rule_upstream(c, a, 0);
        const struct moat_conf_upstream *u1 = rule_upstream(c, a, 1);
        const struct moat_conf_upstream *u2 = rule_upstream(c, a, 2);
        if (u0 != NULL && u1 != NULL && u2 != NULL) {
            EXPECT_STR(u0->name, "app");
            EXPECT_STR(u1->name, "other");
            EXPECT(u2->name == NULL);
            EXPECT_INT(u2->servers[0].port, 9000);
        }
    }
    const struct moat_conf_upstream *b = rule_upstream(c, &c->sites[1], 0);
    if (b != NULL && a->nproxies == 3) {
        EXPECT_STR(b->name, "app");
        EXPECT_INT(c->sites[1].proxies[0].index, a->proxies[0].index); /* one block, shared */
    }
    moat_conf_free(c);
}

TEST_CASE(proxy_host_forms)
{
    static const struct {
        const char *v;
        int mode;
        const char *value;
    } forms[] = {
        {"keep", 0, NULL},
        {"upstream", 1, NULL},
        {"app.internal", 2, "app.internal"},
        {"app.internal:8080", 2, "app.internal:8080"},
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char text[160];
        snprintf(text, sizeof(text), "site x { proxy http://h:1; proxy_host %s }", forms[i].v);
        struct moat_conf *c;
        const struct moat_conf_site *s = site_ok(text, &c);
        if (s == NULL) {
            continue;
        }
        EXPECT_INT(s->proxy_host_mode, forms[i].mode);
        if (forms[i].value == NULL) {
            EXPECT(s->proxy_host_value == NULL);
        } else {
            EXPECT_STR(s->proxy_host_value, forms[i].value);
        }
        moat_conf_free(c);
    }
}

TEST_CASE(trusted_proxies_and_proxy_protocol)
{
    static const char text[] = "trusted_proxies 10.0.0.0/8 ::1 192.168.1.7 2001:db8::/32\n"
                               "trusted_proxies 0.0.0.0/0\n"
                               "listen 127.0.0.1:8443 [::1]:8443\n"
                               "proxy_protocol 127.0.0.1:8443 [::1]:8443\n"
                               "site x { root r }\n";
    struct moat_conf *c = parse_ok(text);
    if (c == NULL) {
        return;
    }
    EXPECT_INT(c->ntrusted_proxies, 5); /* repeated lines add up */
    if (c->ntrusted_proxies == 5) {
        EXPECT_STR(c->trusted_proxies[0], "10.0.0.0/8");
        EXPECT_STR(c->trusted_proxies[1], "::1");
        EXPECT_STR(c->trusted_proxies[2], "192.168.1.7");
        EXPECT_STR(c->trusted_proxies[3], "2001:db8::/32");
        EXPECT_STR(c->trusted_proxies[4], "0.0.0.0/0");
    }
    EXPECT_INT(c->nproxy_protocol_listen, 2);
    if (c->nproxy_protocol_listen == 2) {
        EXPECT_STR(c->proxy_protocol_listen[0], "127.0.0.1:8443");
        EXPECT_STR(c->proxy_protocol_listen[1], "[::1]:8443");
    }
    moat_conf_free(c);
}

/* ---- refusals --------------------------------------------------------------------------- */

struct bad_case {
    const char *text;
    const char *where;
    const char *msg;
};

#define WRITE_ONLY "write only scheme, host and port (no path, no user), e.g. http://127.0.0.1:9000"
#define WRITE_SCHEME "write http://HOST:PORT, https://HOST:PORT or unix:/PATH"
#define WRITE_TARGET                                                                               \
    "write http://HOST:PORT, https://HOST:PORT, unix:/PATH or the name of an upstream block"
#define PROXY_USAGE "proxy [/PREFIX] UPSTREAM|http://HOST:PORT [strip | rewrite /NEW]"
#define NEED_PREFIX "strip and rewrite need a path prefix: " PROXY_USAGE
#define AFTER_UPSTREAM                                                                             \
    "after the upstream a proxy rule takes strip or rewrite /NEW (usage: " PROXY_USAGE ")"
#define PORT_RANGE "the port must be a number from 1 to 65535"
#define TIMEOUT_RANGE "proxy_timeout is a duration between 1ms and 1d, e.g. 60s"
#define PREFIX_CHARS "client_header_prefix may hold letters, digits, '-' and '_' only"
#define PREFIX_LEN "client_header_prefix must be 1 to 48 characters, e.g. X-Client-"
#define INLINE_ONLY                                                                                \
    "has proxy_ca, proxy_cert or proxy_timeout but no \"proxy http[s]://HOST:PORT\" (for an "      \
    "upstream block, write ca, cert and timeouts inside it)"
#define BALANCE_USAGE                                                                              \
    "balance round_robin | least_conn | random_two | hash ip | hash header NAME | hash cookie "    \
    "NAME"
#define WEIGHT                                                                                     \
    "after the address a server takes weight N (1 to 1000), e.g. server 10.0.0.1:8000 weight 2"
#define NO_HTTPS                                                                                   \
    "upstream \"app\" has ca, cert or sni but no https:// server: write its servers as "           \
    "https://HOST:PORT"
#define CIDR_HINT " (write addresses or ranges, e.g. 10.0.0.0/8 ::1)"
#define UP "upstream app { server a:1 }\n"

static const struct bad_case bad[] = {
    /* proxy: the scheme */
    {"site x { proxy ftp://h:1 }", "m.conf:1:16", "proxy \"ftp://h:1\": " WRITE_SCHEME},
    {"site x { proxy ws://h:1 }", "m.conf:1:16", "proxy \"ws://h:1\": " WRITE_SCHEME},
    /* without a scheme it would be the name of an upstream block, which cannot have ':' */
    {"site x { proxy 127.0.0.1:9000 }", "m.conf:1:16", "proxy \"127.0.0.1:9000\": " WRITE_TARGET},
    /* proxy: no path, user, query */
    {"site x { proxy http://h:1/app }", "m.conf:1:16", "proxy \"http://h:1/app\": " WRITE_ONLY},
    {"site x { proxy http://u@h:1 }", "m.conf:1:16", "proxy \"http://u@h:1\": " WRITE_ONLY},
    {"site x { proxy http://u:pw@h:1 }", "m.conf:1:16", "proxy \"http://u:pw@h:1\": " WRITE_ONLY},
    {"site x { proxy http:// }", "m.conf:1:16", "proxy \"http://\": " WRITE_ONLY},
    {"site x { proxy https:/// }", "m.conf:1:16", "proxy \"https:///\": " WRITE_ONLY},
    {"site x { proxy http://h:1?x }", "m.conf:1:16", "proxy \"http://h:1?x\": " PORT_RANGE},
    /* proxy: host and port */
    {"site x { proxy http://h:0 }", "m.conf:1:16", "proxy \"http://h:0\": " PORT_RANGE},
    {"site x { proxy http://h:65536 }", "m.conf:1:16", "proxy \"http://h:65536\": " PORT_RANGE},
    {"site x { proxy http://h:abc }", "m.conf:1:16", "proxy \"http://h:abc\": " PORT_RANGE},
    {"site x { proxy http://:9000 }", "m.conf:1:16",
     "proxy \"http://:9000\": a server needs a host and a port other than 0"},
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
    {"site x { proxy unix:run/a.sock }", "m.conf:1:16",
     "proxy \"unix:run/a.sock\": a unix socket is unix:/ABSOLUTE/PATH (at most 107 bytes)"},
    /* proxy: arity, repetition, place */
    {"site x { proxy }", "m.conf:1:10",
     "\"proxy\" takes 1 to 4 arguments, got 0 (usage: " PROXY_USAGE ")"},
    {"site x { proxy /a app strip x y }", "m.conf:1:31",
     "\"proxy\" takes 1 to 4 arguments, got 5 (usage: " PROXY_USAGE ")"},
    /* a second origin is read as the option after the upstream, which needs a prefix */
    {"site x { proxy http://a:1 http://b:2 }", "m.conf:1:27",
     "a proxy rule names one upstream or URL, then optionally strip or rewrite /NEW "
     "(usage: " PROXY_USAGE ")"},
    {UP "site x { proxy / app strip }", "m.conf:2:22", NEED_PREFIX},
    {"trusted_proxies ::1\nproxy_protocol 127.0.0.1:9\nsite x { root r }", "m.conf",
     "proxy_protocol 127.0.0.1:9: no listener has that address (write it as in listen or "
     "redirect_http)"},
    {"proxy_protocol 127.0.0.1:8443\nsite x { root r }", "m.conf",
     "proxy_protocol needs trusted_proxies: the addresses of the balancers that may send PROXY "
     "headers (e.g. trusted_proxies 10.0.0.0/8)"},
    {"site x {\n  proxy http://a:1\n  proxy http://b:2\n}", "m.conf:3:3",
     "this site already proxies every path at m.conf:2:3"},
    {"proxy http://a:1\nsite x { root r }", "m.conf:1:1",
     "\"proxy\" is not allowed at the top level (it belongs inside a site NAME { } block or "
     "inside a stream NAME { } block)"},
    {"timeouts { proxy_timeout 1s }\nsite x { root r }", "m.conf:1:12",
     "\"proxy_timeout\" is not allowed inside timeouts { } (it belongs inside a site NAME { } "
     "block)"},
    {"site x {\n  cert a b\n  proxy http://h:1/p\n}", "m.conf:3:9",
     "proxy \"http://h:1/p\": " WRITE_ONLY},
    /* proxy rules: prefixes, strip, rewrite */
    {UP "site x {\n  root r\n  proxy /api app\n  proxy /api/ app\n}", "m.conf:5:3",
     "this site already proxies /api/ at m.conf:4:3"},
    {UP "site x { proxy app strip }", "m.conf:2:20", NEED_PREFIX},
    {UP "site x { proxy app rewrite /v2 }", "m.conf:2:20", NEED_PREFIX},
    {UP "site x { root r; proxy /api/ }", "m.conf:2:24", "usage: " PROXY_USAGE},
    {UP "site x { root r; proxy /api app strip it }", "m.conf:2:33", AFTER_UPSTREAM},
    {UP "site x { root r; proxy /api app rewrite v2 }", "m.conf:2:33", AFTER_UPSTREAM},
    {UP "site x { root r; proxy /api app rewrite }", "m.conf:2:33", AFTER_UPSTREAM},
    {UP "site x { root r; proxy /api app rewrite /a/../b }", "m.conf:2:33", AFTER_UPSTREAM},
    {UP "site x { root r; proxy /a/../b app }", "m.conf:2:24",
     "proxy takes a plain path prefix starting with \"/\" (no \".\" or \"..\" segments, no "
     "\"//\", no %-escapes), e.g. proxy /api/ app"},
    {UP "site x { root r; proxy /api bad!name }", "m.conf:2:29",
     "proxy \"bad!name\": " WRITE_TARGET},
    /* proxy naming a block that does not exist: reported at the rule, after the whole file */
    {"site x {\n  proxy nope\n}\nupstream app { server a:1 }", "m.conf:2:3",
     "proxy: no upstream is called \"nope\" (define it: upstream nope { server HOST:PORT; })"},
    {UP "site x {\n  root r\n  proxy /api/ apps\n}", "m.conf:4:3",
     "proxy: no upstream is called \"apps\" (define it: upstream apps { server HOST:PORT; })"},
    /* the site: every path answered once, and proxy_* only where it applies */
    {"site x {\n  root r\n  proxy http://a:1\n}", "m.conf:1:1",
     "site \"x\" has both root and a proxy for every path (keep one, or proxy only a prefix: "
     "proxy /api/ UPSTREAM)"},
    {UP "site x { root r; proxy app }", "m.conf:2:1",
     "site \"x\" has both root and a proxy for every path (keep one, or proxy only a prefix: "
     "proxy /api/ UPSTREAM)"},
    {UP "site x { proxy /api app }", "m.conf:2:1",
     "site \"x\" proxies some path prefixes only: add \"root FOLDER\" for the other paths, or a "
     "proxy rule without a prefix"},
    {"site x { proxy_ca a }", "m.conf:1:1",
     "site \"x\" has nothing to serve (add \"root FOLDER\" or \"proxy http://HOST:PORT\" inside "
     "its block)"},
    {"site x y {\n  root r\n  proxy_ca c.pem\n}", "m.conf:1:1", "site \"x\" " INLINE_ONLY},
    {"site x { root r; proxy_cert c k }", "m.conf:1:1", "site \"x\" " INLINE_ONLY},
    {"site x { root r; proxy_timeout 5s }", "m.conf:1:1", "site \"x\" " INLINE_ONLY},
    /* an upstream block's TLS is written inside it */
    {UP "site x { proxy app; proxy_ca c }", "m.conf:2:1", "site \"x\" " INLINE_ONLY},
    {"site x { root r; proxy_host upstream }", "m.conf:1:1",
     "site \"x\" has client_header_prefix or proxy_host but no proxy (add \"proxy "
     "http://HOST:PORT\")"},
    {"site x { root r; client_header_prefix X-A- }", "m.conf:1:1",
     "site \"x\" has client_header_prefix or proxy_host but no proxy (add \"proxy "
     "http://HOST:PORT\")"},
    {"site x { proxy http://a:1; proxy_host a/b }", "m.conf:1:39",
     "proxy_host takes keep, upstream or a host[:port], e.g. proxy_host app.internal"},
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
    /* upstream blocks: the name, the block, the servers */
    {"upstream a/b { server a:1 }\nsite x { root r }", "m.conf:1:10",
     "an upstream's name is 1 to 63 letters, digits, '-', '_' or '.', e.g. upstream app { server "
     "127.0.0.1:8000 }"},
    {"upstream app\nsite x { proxy app }", "m.conf:1:1",
     "\"upstream\" needs a { } block opened on the same line (usage: upstream NAME { server "
     "HOST:PORT; ... })"},
    {"upstream app { balance least_conn }\nsite x { proxy app }", "m.conf:1:10",
     "upstream \"app\" has no server (add server HOST:PORT inside its block)"},
    {"upstream app { }\nsite x { proxy app }", "m.conf:1:10",
     "upstream \"app\" has no server (add server HOST:PORT inside its block)"},
    {UP "upstream app { server b:1 }\nsite x { proxy app }", "m.conf:2:10",
     "upstream \"app\" is defined twice (at m.conf:1:1 too)"},
    {"upstream app { server a:1 weight 0 }\nsite x { proxy app }", "m.conf:1:27", WEIGHT},
    {"upstream app { server a:1 weight 1001 }\nsite x { proxy app }", "m.conf:1:27", WEIGHT},
    {"upstream app { server a:1 weight }\nsite x { proxy app }", "m.conf:1:27", WEIGHT},
    {"upstream app { server a:1 heavy 2 }\nsite x { proxy app }", "m.conf:1:27", WEIGHT},
    {"upstream app { server a:1; server ftp://h:1 }\nsite x { proxy app }", "m.conf:1:35",
     "server \"ftp://h:1\": " WRITE_SCHEME},
    {"upstream app { server a:1; server unix:run }\nsite x { proxy app }", "m.conf:1:35",
     "server \"unix:run\": a unix socket is unix:/ABSOLUTE/PATH (at most 107 bytes)"},
    {"upstream app { server a:0 }\nsite x { proxy app }", "m.conf:1:23",
     "server \"a:0\": " PORT_RANGE},
    {"upstream app { server a:1; listen 1 }\nsite x { proxy app }", "m.conf:1:28",
     "\"listen\" is not allowed inside an upstream block (it belongs at the top level, outside "
     "any block or inside a stream NAME { } block)"},
    /* balance */
    {"upstream app { server a:1; balance fastest }\nsite x { proxy app }", "m.conf:1:36",
     "unknown balance \"fastest\" (usage: " BALANCE_USAGE ")"},
    {"upstream app { server a:1; balance least_conn now }\nsite x { proxy app }", "m.conf:1:47",
     "usage: " BALANCE_USAGE},
    /* hash without what to hash */
    {"upstream app { server a:1; balance hash }\nsite x { proxy app }", "m.conf:1:36",
     "usage: " BALANCE_USAGE},
    {"upstream app { server a:1; balance hash header }\nsite x { proxy app }", "m.conf:1:41",
     "usage: " BALANCE_USAGE},
    {"upstream app { server a:1; balance hash cookie }\nsite x { proxy app }", "m.conf:1:41",
     "usage: " BALANCE_USAGE},
    {"upstream app { server a:1; balance hash url }\nsite x { proxy app }", "m.conf:1:41",
     "usage: " BALANCE_USAGE},
    {"upstream app { server a:1; balance hash header a:b }\nsite x { proxy app }", "m.conf:1:48",
     "\"a:b\" is not a header name"},
    /* values */
    {"upstream app { server a:1; keepalive 10001 }\nsite x { proxy app }", "m.conf:1:38",
     "\"keepalive\" must be 0 to 10000, got \"10001\""},
    {"upstream app { server a:1; keepalive_timeout 0 }\nsite x { proxy app }", "m.conf:1:46",
     "\"keepalive_timeout\" must be between 1ms and 1d (e.g. 10s), got \"0\""},
    {"upstream app { server a:1; keepalive 1; keepalive 2 }\nsite x { proxy app }", "m.conf:1:41",
     "\"keepalive\" is already set at line 1 (keep only one)"},
    {"upstream app { server a:1; max_fails 1001 }\nsite x { proxy app }", "m.conf:1:38",
     "\"max_fails\" must be 0 (off) to 1000, got \"1001\""},
    {"upstream app { server a:1; fail_timeout 0 }\nsite x { proxy app }", "m.conf:1:41",
     "\"fail_timeout\" must be between 1ms and 1d (e.g. 10s), got \"0\""},
    {"upstream app { server a:1; retries many }\nsite x { proxy app }", "m.conf:1:36",
     "\"retries\" must be 0 to 100, got \"many\""},
    {"upstream app { server a:1; queue lots }\nsite x { proxy app }", "m.conf:1:34",
     "queue takes a count of 0 to 100000, then an optional timeout, e.g. queue 100 5s"},
    {"upstream app { server a:1; queue 5 0 }\nsite x { proxy app }", "m.conf:1:36",
     "the queue's timeout is between 1ms and 1h, e.g. 5s"},
    {"upstream app { server a:1; timeouts { connect 0 } }\nsite x { proxy app }", "m.conf:1:47",
     "\"connect\" must be between 1ms and 1d (e.g. 10s), got \"0\""},
    {"upstream app { server a:1; timeouts { total 2d } }\nsite x { proxy app }", "m.conf:1:45",
     "\"total\" must be between 0 (off) and 1d (e.g. 10s), got \"2d\""},
    /* health_check */
    {"upstream app { server a:1; health_check healthz }\nsite x { proxy app }", "m.conf:1:41",
     "health_check takes a path starting with \"/\", e.g. health_check /healthz interval 5s"},
    {"upstream app { server a:1; health_check /h bogus 1 }\nsite x { proxy app }", "m.conf:1:44",
     "unknown health_check option \"bogus\" (known: interval, timeout, rise, fall, status, "
     "host)"},
    {"upstream app { server a:1; health_check /h interval }\nsite x { proxy app }", "m.conf:1:44",
     "\"interval\" needs a value"},
    {"upstream app { server a:1; health_check /h interval 1ms }\nsite x { proxy app }",
     "m.conf:1:53", "a health check's interval is between 10ms and 1h"},
    {"upstream app { server a:1; health_check /h rise 0 }\nsite x { proxy app }", "m.conf:1:49",
     "a health check's rise is 1 to 100"},
    {"upstream app { server a:1; health_check /h status 600 }\nsite x { proxy app }", "m.conf:1:51",
     "status takes a code or a range, e.g. 200 or 200-399"},
    {"upstream app { server a:1; health_check /h status 399-200 }\nsite x { proxy app }",
     "m.conf:1:51", "status takes a code or a range, e.g. 200 or 200-399"},
    /* TLS options need an https server to apply to */
    {"upstream app { server a:1; ca c.pem }\nsite x { proxy app }", "m.conf:1:10", NO_HTTPS},
    {"upstream app { server a:1; cert c k }\nsite x { proxy app }", "m.conf:1:10", NO_HTTPS},
    {"upstream app { server a:1; sni n }\nsite x { proxy app }", "m.conf:1:10", NO_HTTPS},
    {"upstream app { server a:1; proxy_protocol v1 }\nsite x { proxy app }", "m.conf:1:43",
     "proxy_protocol takes v2 or off (moat sends version 2)"},
    /* trusted_proxies: numeric ranges, written as networks */
    {"trusted_proxies 10.0.0.1/8\nsite x { root r }", "m.conf:1:17",
     "trusted_proxies \"10.0.0.1/8\": bits are set past the prefix length (write the network, "
     "e.g. 10.0.0.0/8)" CIDR_HINT},
    {"trusted_proxies 10.0.0.0/33\nsite x { root r }", "m.conf:1:17",
     "trusted_proxies \"10.0.0.0/33\": an IPv4 prefix length is 0 to 32" CIDR_HINT},
    {"trusted_proxies ::1 ::/129\nsite x { root r }", "m.conf:1:21",
     "trusted_proxies \"::/129\": an IPv6 prefix length is 0 to 128" CIDR_HINT},
    {"trusted_proxies localhost\nsite x { root r }", "m.conf:1:17",
     "trusted_proxies \"localhost\": not a numeric IPv4 or IPv6 address" CIDR_HINT},
    {"trusted_proxies 10.0.0.0/\nsite x { root r }", "m.conf:1:17",
     "trusted_proxies \"10.0.0.0/\": the prefix length after '/' must be a number" CIDR_HINT},
    {"site x { root r; trusted_proxies ::1 }", "m.conf:1:18",
     "\"trusted_proxies\" is not allowed inside a site block (it belongs at the top level, "
     "outside any block)"},
    /* proxy_protocol: listen addresses */
    {"proxy_protocol nothing:port\nsite x { root r }", "m.conf:1:16",
     "proxy_protocol \"nothing:port\": " PORT_RANGE},
    {"proxy_protocol 127.0.0.1:0\nsite x { root r }", "m.conf:1:16",
     "proxy_protocol \"127.0.0.1:0\": " PORT_RANGE},
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

/* The same after whole upstream blocks, rules and lists were read: the last check refuses. */
TEST_CASE(refusal_after_upstreams_frees)
{
    static const char text[] =
        "trusted_proxies 10.0.0.0/8\n"
        "listen 127.0.0.1:8443\n"
        "proxy_protocol 127.0.0.1:8443\n"
        "upstream app {\n"
        "  server https://a:1 weight 2\n"
        "  server unix:/run/b.sock\n"
        "  balance hash cookie sid\n"
        "  health_check /h host x\n"
        "  ca c; cert c k; sni s\n"
        "}\n"
        "site a { root r; proxy /api/ app rewrite /v1; proxy /s http://h:1 }\n"
        "site b { proxy missing }\n";
    struct moat_conf *c = (struct moat_conf *)1;
    struct moat_err err = {0};
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), NULL, &c, &err);
    EXPECT(!moat_ok(rc));
    EXPECT(c == NULL);
    EXPECT_STR(err.where, "m.conf:12:10");
}

int main(void)
{
    RUN(origin_forms);
    RUN(unix_socket_origins);
    RUN(defaults);
    RUN(every_option);
    RUN(timeout_bounds);
    RUN(prefix_lengths);
    RUN(several_proxy_sites);
    RUN(an_upstream_block_with_every_option);
    RUN(an_upstream_block_has_the_defaults);
    RUN(every_balance_form);
    RUN(health_check_and_queue_forms);
    RUN(rules_resolve_names_after_the_file);
    RUN(proxy_host_forms);
    RUN(trusted_proxies_and_proxy_protocol);
    RUN(bad_configs);
    RUN(refusal_after_proxy_frees);
    RUN(refusal_after_upstreams_frees);
    TEST_MAIN_END();
}
