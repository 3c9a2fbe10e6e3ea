/*
 * test_route.c: serve/route.c on a snapshot built from a configuration: which site answers a
 * host over a connection whose certificate was chosen for a given site (421 when it may not
 * speak for it), addresses in any spelling, the plain listener, client_path refusals and paths
 * that escape normalisation, and the `header` rules picked for a path.
 */
#include "serve/conf.h"
#include "serve/headers.h"
#include "serve/route.h"
#include "serve/snapshot.h"
#include "test.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/tls_helpers.h"

#include <sys/stat.h>

static struct moat_snapshot *snap;

/* The site whose certificate a handshake for `sni` chooses, and an SSL on its context (the
 * certificate routing checks hosts against). */
static struct moat_site *sni_site(const char *sni, SSL **ssl)
{
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(snap->sni, sni, strlen(sni));
    *ssl = SSL_new(e->ctx);
    return e->site;
}

static enum moat_route_verdict route(const char *sni, const char *host, const char *path,
                                     struct moat_route *rt)
{
    SSL *ssl = NULL;
    struct moat_route_conn rc = {.snap = snap, .peer_text = "test"};
    if (sni != NULL) {
        rc.sni_site = sni_site(sni, &ssl);
        rc.ssl = ssl;
    } else {
        rc.sni_site = &snap->sites[0];
    }
    /* The session normalises the path once (moat_req_normalize); so does the test. */
    struct moat_req req = {.path = moat_slice_cstr(path)};
    static char npath[MOAT_REQ_PATH_CAP + 1];
    moat_req_normalize(&req, npath);
    enum moat_route_verdict v = moat_route_pick(&rc, moat_slice_cstr(host), req.npath, rt);
    SSL_free(ssl);
    return v;
}

static const char *name_of(const struct moat_site *s)
{
    return s ? s->conf->names[0] : "(none)";
}

TEST_CASE(hosts_and_certificates)
{
    struct moat_route rt;
    EXPECT_INT(route("a.test", "a.test", "/", &rt), MOAT_ROUTE_SERVE);
    EXPECT_STR(name_of(rt.site), "a.test");
    EXPECT_INT(route("a.test", "a.test:8443", "/", &rt), MOAT_ROUTE_SERVE);
    /* A host no site serves, and another site's host the certificate does not cover. */
    EXPECT_INT(route("a.test", "evil.example", "/", &rt), MOAT_ROUTE_MISDIRECTED);
    EXPECT_STR(name_of(rt.site), "a.test");
    EXPECT_INT(route("a.test", "b.test", "/", &rt), MOAT_ROUTE_MISDIRECTED);
    /* The wildcard certificate covers x.w.test, which has a site (and certificate) of its own. */
    EXPECT_INT(route("y.w.test", "x.w.test", "/", &rt), MOAT_ROUTE_SERVE);
    EXPECT_STR(name_of(rt.site), "x.w.test");
    EXPECT_INT(route("x.w.test", "y.w.test", "/", &rt), MOAT_ROUTE_MISDIRECTED);
    /* HTTP/1.0 without Host: the handshake's site. */
    EXPECT_INT(route("b.test", "", "/", &rt), MOAT_ROUTE_SERVE);
    EXPECT_STR(name_of(rt.site), "b.test");
}

TEST_CASE(addresses)
{
    struct moat_route rt;
    const char *same[] = {"127.0.0.1", "127.0.0.1:8443", "[::1]", "[0:0::1]:8443",
                          "[0000:0000:0000:0000:0000:0000:0000:0001]"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        EXPECT_INT(route("127.0.0.1", same[i], "/", &rt), MOAT_ROUTE_SERVE);
        EXPECT_STR(name_of(rt.site), "127.0.0.1");
    }
    EXPECT_INT(route("127.0.0.1", "[::2]", "/", &rt), MOAT_ROUTE_MISDIRECTED);
    EXPECT_INT(route("127.0.0.1", "127.0.0.2", "/", &rt), MOAT_ROUTE_MISDIRECTED);
}

TEST_CASE(plain_listener_redirects_any_host)
{
    struct moat_route rt;
    EXPECT_INT(route(NULL, "evil.example", "/x", &rt), MOAT_ROUTE_SERVE);
    EXPECT(rt.site != NULL);
    EXPECT_INT(route(NULL, "b.test", "/x", &rt), MOAT_ROUTE_SERVE);
    EXPECT_STR(name_of(rt.site), "b.test");
}

TEST_CASE(client_paths)
{
    struct moat_route rt;
    EXPECT_INT(route("a.test", "a.test", "/admin/x", &rt), MOAT_ROUTE_FORBIDDEN);
    EXPECT(rt.why != NULL && strstr(rt.why, "/admin needs a client certificate") != NULL);
    EXPECT_INT(route("a.test", "a.test", "/x/../%61dmin", &rt), MOAT_ROUTE_FORBIDDEN);
    EXPECT_INT(route("a.test", "a.test", "/administrators.txt", &rt), MOAT_ROUTE_SERVE);
    /* Paths that climb above the root are refused outright where rules would apply. */
    EXPECT_INT(route("a.test", "a.test", "/../admin", &rt), MOAT_ROUTE_BAD_PATH);
    EXPECT_INT(route("a.test", "a.test", "/%2e%2e/admin", &rt), MOAT_ROUTE_BAD_PATH);
    /* A site without client_path rules does not care. */
    EXPECT_INT(route("b.test", "b.test", "/../admin", &rt), MOAT_ROUTE_SERVE);
}

TEST_CASE(header_rules_by_path)
{
    struct moat_route rt;
    EXPECT_INT(route("b.test", "b.test", "/static/a.css", &rt), MOAT_ROUTE_SERVE);
    EXPECT(rt.hdrs != NULL && rt.hdrs->prefix != NULL);
    EXPECT_STR(rt.hdrs ? rt.hdrs->prefix : "", "/static");
    EXPECT_INT(route("b.test", "b.test", "/st%61tic/./a.css", &rt), MOAT_ROUTE_SERVE);
    EXPECT(rt.hdrs != NULL && rt.hdrs->prefix != NULL);
    EXPECT_INT(route("b.test", "b.test", "/staticfoo", &rt), MOAT_ROUTE_SERVE);
    EXPECT(rt.hdrs == NULL || rt.hdrs->prefix == NULL); /* the site-wide set */
}

int main(void)
{
    th_dir_make();
    int ok = th_cert_files("a", "ec", "a.test") && th_cert_files("b", "ec", "b.test") &&
             th_cert_files("w", "ec", "*.w.test") && th_cert_files("x", "ec", "x.w.test") &&
             th_cert_files("ip", "ec", "localhost");
    EXPECT(ok);
    FILE *f = fopen(th_path("ca.pem"), "w");
    EXPECT(f != NULL && PEM_write_X509(f, th_ca));
    if (f != NULL) {
        fclose(f);
    }
    char text[4096];
    snprintf(text, sizeof(text),
             "site 127.0.0.1 ::1 {\n    cert %s %s\n    root %s\n}\n"
             "site a.test {\n    cert %s %s\n    root %s\n    client_auth optional\n"
             "    client_ca %s\n    client_path /admin\n}\n"
             "site b.test {\n    cert %s %s\n    root %s\n    header /static set X-A 1\n}\n"
             "site *.w.test {\n    cert %s %s\n    root %s\n}\n"
             "site x.w.test {\n    cert %s %s\n    root %s\n}\n",
             th_files("ip").cert_path, th_files("ip").key_path, th_dir, th_files("a").cert_path,
             th_files("a").key_path, th_dir, th_path("ca.pem"), th_files("b").cert_path,
             th_files("b").key_path, th_dir, th_files("w").cert_path, th_files("w").key_path,
             th_dir, th_files("x").cert_path, th_files("x").key_path, th_dir);
    struct moat_conf *conf = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_conf_parse("m.conf", text, strlen(text), th_dir, &conf, &err).kind, MOAT_OK);
    char state[160];
    snprintf(state, sizeof(state), "%s", th_path("state"));
    mkdir(state, 0700);
    struct moat_snapshot_env env = {.state_dir = state, .quiet = 1};
    if (conf == NULL || !moat_ok(moat_snapshot_build(conf, &env, &snap, &err))) {
        fprintf(stderr, "snapshot: %s: %s\n", err.where, err.msg);
        test__failed++;
    } else {
        RUN(hosts_and_certificates);
        RUN(addresses);
        RUN(plain_listener_redirects_any_host);
        RUN(client_paths);
        RUN(header_rules_by_path);
        moat_snapshot_unref(snap);
    }
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
