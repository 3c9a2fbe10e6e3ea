/*
 * test_sni.c: the SNI table (names, wildcards, default, normalisation, refusals), the
 * server_name extension parser, and the ClientHello switch seen from real handshakes.
 */
#include "test.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/tls_helpers.h"

static int site_a, site_b, site_wild, site_first, site_star;

static SSL_CTX *bare(void)
{
    return SSL_CTX_new(TLS_server_method());
}

/* first.example (first added), a.example, b.example, *.wild.example; optionally "*". */
static struct moat_tls_sni *table(int with_star, SSL_CTX *c)
{
    struct moat_tls_sni *s = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s, "first.example", c, &site_first, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "A.Example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "b.example.", c, &site_b, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "*.wild.example", c, &site_wild, NULL).kind, MOAT_OK);
    if (with_star) {
        EXPECT_INT(moat_tls_sni_add(s, "*", c, &site_star, NULL).kind, MOAT_OK);
    }
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_OK);
    return s;
}

static void *site_for(const struct moat_tls_sni *s, const char *name)
{
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(s, name, name ? strlen(name) : 0);
    return e ? e->site : NULL;
}

static int matched_for(const struct moat_tls_sni *s, const char *name)
{
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(s, name, name ? strlen(name) : 0);
    return e ? e->matched : -1;
}

TEST_CASE(lookup_exact_case_and_trailing_dot)
{
    SSL_CTX *c = bare();
    struct moat_tls_sni *s = table(0, c);
    EXPECT(site_for(s, "a.example") == &site_a);
    EXPECT(site_for(s, "A.EXAMPLE") == &site_a);
    EXPECT(site_for(s, "a.example.") == &site_a);
    EXPECT(site_for(s, "b.example") == &site_b);
    EXPECT(site_for(s, "B.Example.") == &site_b);
    EXPECT_INT(matched_for(s, "a.example"), 1);
    EXPECT_STR(moat_tls_sni_lookup(s, "A.EXAMPLE", 9)->name, "a.example");
    /* Not NUL-terminated: only `len` bytes count. */
    EXPECT(moat_tls_sni_lookup(s, "a.exampleXYZ", 9)->site == &site_a);
    /* Two trailing dots, or a prefix/suffix of a name, are other names. */
    EXPECT_INT(matched_for(s, "a.example.."), 0);
    EXPECT_INT(matched_for(s, "a.exampl"), 0);
    EXPECT_INT(matched_for(s, "xa.example"), 0);
    moat_tls_sni_free(s);
    SSL_CTX_free(c);
}

TEST_CASE(lookup_wildcard_one_label_deep)
{
    SSL_CTX *c = bare();
    struct moat_tls_sni *s = table(0, c);
    EXPECT(site_for(s, "x.wild.example") == &site_wild);
    EXPECT(site_for(s, "X-1.WILD.example.") == &site_wild);
    EXPECT_INT(matched_for(s, "x.wild.example"), 1);
    EXPECT_STR(moat_tls_sni_lookup(s, "x.wild.example", 14)->name, "*.wild.example");
    /* Not the bare suffix, not two labels deep. */
    EXPECT_INT(matched_for(s, "wild.example"), 0);
    EXPECT_INT(matched_for(s, "a.b.wild.example"), 0);
    EXPECT(site_for(s, "a.b.wild.example") == &site_first);
    /* "*" in the client's name is not a wildcard. */
    EXPECT_INT(matched_for(s, "*.wild.example"), 0);
    moat_tls_sni_free(s);
    SSL_CTX_free(c);
}

TEST_CASE(lookup_default)
{
    SSL_CTX *c = bare();
    struct moat_tls_sni *s = table(0, c);
    /* No "*": unknown and absent names get the first site, marked unmatched. */
    EXPECT(site_for(s, "unknown.example") == &site_first);
    EXPECT_INT(matched_for(s, "unknown.example"), 0);
    EXPECT(site_for(s, NULL) == &site_first);
    EXPECT_INT(matched_for(s, NULL), 0);
    EXPECT(moat_tls_sni_lookup(s, "", 0)->site == &site_first);
    /* The first site by its own name is a match. */
    EXPECT_INT(matched_for(s, "first.example"), 1);
    EXPECT(moat_tls_sni_default_ctx(s) == c);
    moat_tls_sni_free(s);

    s = table(1, c);
    EXPECT(site_for(s, "unknown.example") == &site_star);
    EXPECT_INT(matched_for(s, "unknown.example"), 1);
    EXPECT(site_for(s, NULL) == &site_star);
    EXPECT(site_for(s, "a.example") == &site_a);
    moat_tls_sni_free(s);
    SSL_CTX_free(c);
}

TEST_CASE(lookup_malformed_matches_nothing)
{
    SSL_CTX *c = bare();
    struct moat_tls_sni *s = table(0, c);
    const char *bad[] = {"a example",  "a.example\x01", "\xc3\xa9.example", "a..example",
                         ".a.example", "a/example",     "a.example:443",    "."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EXPECT_INT(matched_for(s, bad[i]), 0);
    }
    /* An embedded NUL must not cut the name short. */
    EXPECT_INT(moat_tls_sni_lookup(s, "a.example\0evil", 14)->matched, 0);
    /* 63-byte labels are fine, 64 are not; 253 bytes in all are fine, 254 are not. */
    char name[300];
    memset(name, 'x', 64);
    memcpy(name + 64, ".wild.example", 14);
    EXPECT_INT(matched_for(s, name + 1), 1);
    EXPECT_INT(matched_for(s, name), 0);
    EXPECT_INT(moat_tls_sni_lookup(s, name, 300)->matched, 0);
    moat_tls_sni_free(s);
    SSL_CTX_free(c);

    /* Length limits against configured names. */
    s = moat_tls_sni_new();
    c = bare();
    char longest[254];
    for (size_t i = 0; i < 253; i++) {
        longest[i] = (i % 2) ? '.' : 'a';
    }
    longest[253] = '\0'; /* "a.a.….a": 127 labels, 253 bytes */
    EXPECT_INT(moat_tls_sni_add(s, longest, c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_lookup(s, longest, 253)->matched, 1);
    char too_long[256];
    memcpy(too_long, "a.", 2);
    memcpy(too_long + 2, longest, 254);
    EXPECT_INT(matched_for(s, too_long), 0);
    moat_tls_sni_free(s);
    SSL_CTX_free(c);
}

TEST_CASE(add_and_finish_refusals)
{
    SSL_CTX *c = bare();
    struct moat_tls_sni *s = moat_tls_sni_new();
    struct moat_err err = {0};
    const char *bad[] = {"",   ".",           "a..b",    "*.",          "*a.example", "a.*.example",
                         "**", "*.*.example", "foo bar", "a.example..", "*.a..b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EXPECT_INT(moat_tls_sni_add(s, bad[i], c, &site_a, &err).kind, MOAT_E_CONFIG);
    }
    EXPECT(strstr(err.msg, "*.a..b") != NULL);
    EXPECT_INT(moat_tls_sni_add(s, "a.example", NULL, &site_a, &err).kind, MOAT_E_USAGE);
    /* Empty table. */
    EXPECT_INT(moat_tls_sni_finish(s, &err).kind, MOAT_E_CONFIG);
    /* The same name twice, spelled differently. */
    EXPECT_INT(moat_tls_sni_add(s, "A.example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "a.EXAMPLE.", c, &site_b, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "a.example") != NULL && strstr(err.msg, "twice") != NULL);
    EXPECT(moat_tls_sni_lookup(s, "a.example", 9) == NULL);
    EXPECT(moat_tls_sni_default_ctx(s) == NULL);
    moat_tls_sni_free(s);

    /* "*" twice; "*.x" and "x" are different names. */
    s = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s, "*", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "*.x.example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "x.example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "*", c, &site_b, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s, &err).kind, MOAT_E_CONFIG);
    moat_tls_sni_free(s);

    /* Finish twice, add after finish. */
    s = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s, "a.example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_tls_sni_add(s, "b.example", c, &site_b, NULL).kind, MOAT_E_USAGE);

    /* A context already serving one table cannot join another. */
    struct moat_tls_sni *s2 = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s2, "a.example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s2, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "another SNI table") != NULL);
    moat_tls_sni_free(s2);
    /* Once the first table is gone, the context is free again. */
    moat_tls_sni_free(s);
    s2 = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s2, "a.example", c, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_finish(s2, NULL).kind, MOAT_OK);
    moat_tls_sni_free(s2);
    moat_tls_sni_free(NULL);
    SSL_CTX_free(c);
}

TEST_CASE(many_sites)
{
    SSL_CTX *c = bare();
    struct moat_tls_sni *s = moat_tls_sni_new();
    static int sites[500];
    char name[64];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), i % 2 ? "h%d.example" : "*.w%d.example", i);
        EXPECT_INT(moat_tls_sni_add(s, name, c, &sites[i], NULL).kind, MOAT_OK);
    }
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_OK);
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), i % 2 ? "H%d.EXAMPLE" : "q.w%d.example", i);
        EXPECT(site_for(s, name) == &sites[i]);
    }
    EXPECT(site_for(s, "h0.example") == &sites[0]);
    EXPECT_INT(matched_for(s, "h0.example"), 0);
    moat_tls_sni_free(s);
    SSL_CTX_free(c);
}

TEST_CASE(parse_server_name_extension)
{
    const unsigned char *n = NULL;
    size_t len = 0;
    /* list length 12, host_name(0), length 9, "a.example" */
    const unsigned char ok[] = {0, 12, 0, 0, 9, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e'};
    EXPECT_INT(moat_tls__sni_parse_ext(ok, sizeof(ok), &n, &len), 1);
    EXPECT_INT(len, 9);
    EXPECT(n == ok + 5);
    /* Every truncation fails. */
    for (size_t cut = 0; cut < sizeof(ok); cut++) {
        EXPECT_INT(moat_tls__sni_parse_ext(ok, cut, &n, &len), 0);
    }
    const unsigned char wrong_type[] = {0, 4, 1, 0, 1, 'a'};
    EXPECT_INT(moat_tls__sni_parse_ext(wrong_type, sizeof(wrong_type), &n, &len), 0);
    const unsigned char empty_name[] = {0, 3, 0, 0, 0};
    EXPECT_INT(moat_tls__sni_parse_ext(empty_name, sizeof(empty_name), &n, &len), 0);
    const unsigned char list_too_long[] = {0, 5, 0, 0, 1, 'a'};
    EXPECT_INT(moat_tls__sni_parse_ext(list_too_long, sizeof(list_too_long), &n, &len), 0);
    const unsigned char name_too_long[] = {0, 4, 0, 0, 2, 'a'};
    EXPECT_INT(moat_tls__sni_parse_ext(name_too_long, sizeof(name_too_long), &n, &len), 0);
    /* Two entries: refused, like OpenSSL does. */
    const unsigned char two[] = {0, 8, 0, 0, 1, 'a', 0, 0, 1, 'b'};
    EXPECT_INT(moat_tls__sni_parse_ext(two, sizeof(two), &n, &len), 0);
    const unsigned char trailing[] = {0, 4, 0, 0, 1, 'a', 0};
    EXPECT_INT(moat_tls__sni_parse_ext(trailing, sizeof(trailing), &n, &len), 0);
    EXPECT_INT(moat_tls__sni_parse_ext(NULL, 0, &n, &len), 0);
}

/* --- handshakes: three contexts with distinct certificates --- */

static SSL_CTX *ctx_first, *ctx_a, *ctx_wild, *cli;

static SSL_CTX *site_ctx(const char *name, const char *const *alpn, size_t nalpn)
{
    struct moat_tls_opts o = {.alpn = alpn, .nalpn = nalpn};
    SSL_CTX *c = NULL;
    struct moat_err err = {0};
    if (!moat_ok(th_ctx_new(&o, &name, 1, &c, &err))) {
        fprintf(stderr, "site_ctx %s: %s\n", name, err.msg);
    }
    return c;
}

struct hs_result {
    int ok;
    char cn[64];
    void *site;
    int matched;
    int version;
    char alpn[32];
};

static struct hs_result hs(struct moat_tls_sni *s, const char *sni, int max_version,
                           const char *alpn_wire)
{
    struct hs_result r = {0};
    struct th_pair p;
    th_pair_init(&p, cli, moat_tls_sni_default_ctx(s));
    EXPECT(moat_tls_sni_site_of(p.s) == NULL);
    EXPECT_INT(moat_tls_sni_matched(p.s), 0);
    if (sni) {
        SSL_set_tlsext_host_name(p.c, sni);
    }
    if (max_version) {
        SSL_set_max_proto_version(p.c, max_version);
    }
    if (alpn_wire) {
        SSL_set_alpn_protos(p.c, (const unsigned char *)alpn_wire, (unsigned)strlen(alpn_wire));
    }
    r.ok = th_handshake(&p);
    th_peer_cn(p.c, r.cn, sizeof(r.cn));
    r.site = moat_tls_sni_site_of(p.s);
    r.matched = moat_tls_sni_matched(p.s);
    r.version = SSL_version(p.s);
    const unsigned char *a = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(p.s, &a, &n);
    snprintf(r.alpn, sizeof(r.alpn), "%.*s", (int)n, a ? (const char *)a : "");
    th_pair_clear(&p);
    return r;
}

static struct moat_tls_sni *hs_table(int with_star)
{
    struct moat_tls_sni *s = moat_tls_sni_new();
    EXPECT_INT(moat_tls_sni_add(s, "first.example", ctx_first, &site_first, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "a.example", ctx_a, &site_a, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_tls_sni_add(s, "*.wild.example", ctx_wild, &site_wild, NULL).kind, MOAT_OK);
    if (with_star) {
        EXPECT_INT(moat_tls_sni_add(s, "*", ctx_wild, &site_star, NULL).kind, MOAT_OK);
    }
    EXPECT_INT(moat_tls_sni_finish(s, NULL).kind, MOAT_OK);
    return s;
}

TEST_CASE(handshake_switches_context)
{
    struct moat_tls_sni *s = hs_table(0);
    EXPECT(moat_tls_sni_default_ctx(s) == ctx_first);
    int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t v = 0; v < 2; v++) {
        struct hs_result r = hs(s, "a.example", versions[v], NULL);
        EXPECT_INT(r.ok, 1);
        EXPECT_INT(r.version, versions[v]);
        EXPECT_STR(r.cn, "a.example");
        EXPECT(r.site == &site_a);
        EXPECT_INT(r.matched, 1);

        r = hs(s, "A.EXAMPLE.", versions[v], NULL);
        EXPECT_STR(r.cn, "a.example");
        EXPECT(r.site == &site_a);

        r = hs(s, "x.wild.example", versions[v], NULL);
        EXPECT_STR(r.cn, "wild.example");
        EXPECT(r.site == &site_wild);
        EXPECT_INT(r.matched, 1);

        r = hs(s, "x.y.wild.example", versions[v], NULL);
        EXPECT_INT(r.ok, 1);
        EXPECT_STR(r.cn, "first.example");
        EXPECT(r.site == &site_first);
        EXPECT_INT(r.matched, 0);

        r = hs(s, "unknown.example", versions[v], NULL);
        EXPECT_STR(r.cn, "first.example");
        EXPECT(r.site == &site_first);
        EXPECT_INT(r.matched, 0);

        /* No SNI: the default site. */
        r = hs(s, NULL, versions[v], NULL);
        EXPECT_INT(r.ok, 1);
        EXPECT_STR(r.cn, "first.example");
        EXPECT(r.site == &site_first);
        EXPECT_INT(r.matched, 0);

        /* Bad bytes in the name: no match, no handshake failure. */
        r = hs(s, "bad name.example", versions[v], NULL);
        EXPECT_INT(r.ok, 1);
        EXPECT(r.site == &site_first);
        EXPECT_INT(r.matched, 0);
    }
    moat_tls_sni_free(s);

    s = hs_table(1);
    EXPECT(moat_tls_sni_default_ctx(s) == ctx_wild);
    struct hs_result r = hs(s, "unknown.example", 0, NULL);
    EXPECT(r.site == &site_star);
    EXPECT_INT(r.matched, 1);
    EXPECT_STR(r.cn, "wild.example");
    r = hs(s, NULL, 0, NULL);
    EXPECT(r.site == &site_star);
    /* The first site is still reachable by name from the "*" context. */
    r = hs(s, "first.example", 0, NULL);
    EXPECT_STR(r.cn, "first.example");
    EXPECT(r.site == &site_first);
    moat_tls_sni_free(s);
}

TEST_CASE(handshake_uses_site_alpn)
{
    /* ctx_a speaks h2 and http/1.1, the default only http/1.1: the switched-to context's ALPN
     * choice applies. */
    struct moat_tls_sni *s = hs_table(0);
    struct hs_result r = hs(s, "a.example", 0, "\x02h2\x08http/1.1");
    EXPECT_INT(r.ok, 1);
    EXPECT_STR(r.alpn, "h2");
    r = hs(s, "first.example", 0, "\x02h2\x08http/1.1");
    EXPECT_STR(r.alpn, "http/1.1");
    r = hs(s, "first.example", 0, "\x02h2");
    EXPECT_INT(r.ok, 0);
    moat_tls_sni_free(s);
}

int main(void)
{
    RUN(lookup_exact_case_and_trailing_dot);
    RUN(lookup_wildcard_one_label_deep);
    RUN(lookup_default);
    RUN(lookup_malformed_matches_nothing);
    RUN(add_and_finish_refusals);
    RUN(many_sites);
    RUN(parse_server_name_extension);

    th_dir_make();
    int ok = th_cert_files("first", "ec", "first.example") &&
             th_cert_files("a", "ec", "a.example") && th_cert_files("wild", "ec", "wild.example");
    EXPECT(ok);
    const char *const h2[] = {"h2", "http/1.1"};
    ctx_first = site_ctx("first", NULL, 0);
    ctx_a = site_ctx("a", h2, 2);
    ctx_wild = site_ctx("wild", NULL, 0);
    cli = th_client_ctx();
    if (ok && ctx_first && ctx_a && ctx_wild) {
        RUN(handshake_switches_context);
        RUN(handshake_uses_site_alpn);
    } else {
        EXPECT(!"test contexts");
    }
    SSL_CTX_free(ctx_first);
    SSL_CTX_free(ctx_a);
    SSL_CTX_free(ctx_wild);
    SSL_CTX_free(cli);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
