/*
 * test_ctx.c: moat_tls_ctx_new's policy, seen from real handshakes over a BIO pair: refused
 * versions, ciphers and groups, what is negotiated, ECDSA + RSA side by side, ALPN, and what
 * the context refuses of the certificate sets it is given. Reading certificate and key files is
 * the files source's work, tested in cert/test_source.c.
 */
#include "pki/chain.h"
#include "pki/key.h"
#include "test.h"
#include "tls/ctx.h"
#include "tls/tls_helpers.h"

static SSL_CTX *srv; /* ECDSA + RSA, default ALPN */
static SSL_CTX *cli; /* plain client */

/* A context with the sets of the fixtures `names`. */
static moat_rc ctx_with(const char *const *names, size_t n, const char *const *alpn, size_t nalpn,
                        SSL_CTX **out, struct moat_err *err)
{
    struct moat_tls_opts o = {.alpn = alpn, .nalpn = nalpn};
    return th_ctx_new(&o, names, n, out, err);
}

/* Handshake a client configured by `setup` against srv; returns 1 on success and keeps the pair
 * in *p (caller clears). */
static int try_client(struct th_pair *p, SSL_CTX *sctx, void (*setup)(SSL *))
{
    th_pair_init(p, cli, sctx);
    if (setup) {
        setup(p->c);
    }
    return th_handshake(p);
}

static void tls11_only(SSL *c)
{
    /* The client must be able to try: TLS 1.1 needs security level 0 in OpenSSL 3. */
    SSL_set_security_level(c, 0);
    SSL_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
    SSL_set_min_proto_version(c, TLS1_1_VERSION);
    SSL_set_max_proto_version(c, TLS1_1_VERSION);
}

TEST_CASE(tls11_refused_by_server)
{
    struct th_pair p;
    EXPECT_INT(try_client(&p, srv, tls11_only), 0);
    EXPECT_INT(p.fail_side, 's');
    EXPECT_INT(ERR_GET_REASON(p.fail_code), SSL_R_UNSUPPORTED_PROTOCOL);
    th_pair_clear(&p);
}

static void tls12_cbc(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set_cipher_list(c, "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA");
}
static void tls12_static_rsa(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set_cipher_list(c, "AES128-GCM-SHA256:AES256-GCM-SHA384");
}
static void tls12_dhe(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set_cipher_list(c, "DHE-RSA-AES128-GCM-SHA256");
}

TEST_CASE(tls12_non_aead_or_non_ecdhe_refused)
{
    void (*setups[])(SSL *) = {tls12_cbc, tls12_static_rsa, tls12_dhe};
    for (size_t i = 0; i < sizeof(setups) / sizeof(setups[0]); i++) {
        struct th_pair p;
        EXPECT_INT(try_client(&p, srv, setups[i]), 0);
        EXPECT_INT(p.fail_side, 's');
        EXPECT_INT(ERR_GET_REASON(p.fail_code), SSL_R_NO_SHARED_CIPHER);
        th_pair_clear(&p);
    }
}

static void tls12_default(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
}

TEST_CASE(tls12_ecdhe_gcm_works)
{
    struct th_pair p;
    EXPECT_INT(try_client(&p, srv, tls12_default), 1);
    EXPECT_INT(SSL_version(p.s), TLS1_2_VERSION);
    /* Server preference: AES-128-GCM first, and a default client gets the ECDSA certificate. */
    EXPECT_STR(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), "ECDHE-ECDSA-AES128-GCM-SHA256");
    th_pair_clear(&p);
}

static void tls12_reverse_prefs(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set_cipher_list(c, "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
                           "ECDHE-ECDSA-AES128-GCM-SHA256");
}
static void tls12_chacha_only(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set_cipher_list(c, "ECDHE-RSA-CHACHA20-POLY1305");
}

TEST_CASE(tls12_server_preference_and_chacha)
{
    struct th_pair p;
    EXPECT_INT(try_client(&p, srv, tls12_reverse_prefs), 1);
    EXPECT_STR(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), "ECDHE-ECDSA-AES128-GCM-SHA256");
    th_pair_clear(&p);
    EXPECT_INT(try_client(&p, srv, tls12_chacha_only), 1);
    EXPECT_STR(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), "ECDHE-RSA-CHACHA20-POLY1305");
    th_pair_clear(&p);
}

TEST_CASE(tls13_works_with_x25519)
{
    struct th_pair p;
    EXPECT_INT(try_client(&p, srv, NULL), 1);
    EXPECT_INT(SSL_version(p.s), TLS1_3_VERSION);
    EXPECT_STR(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), "TLS_AES_128_GCM_SHA256");
    EXPECT_INT(SSL_get_negotiated_group(p.s), NID_X25519);
    th_pair_clear(&p);
}

static void groups_p384(SSL *c)
{
    SSL_set1_groups_list(c, "P-384");
}
static void groups_p521(SSL *c)
{
    SSL_set1_groups_list(c, "P-521:ffdhe2048");
}
static void groups_p521_tls12(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set1_groups_list(c, "P-521");
}

TEST_CASE(groups_policy)
{
    struct th_pair p;
    EXPECT_INT(try_client(&p, srv, groups_p384), 1);
    EXPECT_INT(SSL_get_negotiated_group(p.s), NID_secp384r1);
    th_pair_clear(&p);
    /* Groups outside X25519/P-256/P-384 are refused in both versions. */
    EXPECT_INT(try_client(&p, srv, groups_p521), 0);
    EXPECT_INT(p.fail_side, 's');
    th_pair_clear(&p);
    EXPECT_INT(try_client(&p, srv, groups_p521_tls12), 0);
    EXPECT_INT(p.fail_side, 's');
    th_pair_clear(&p);
}

TEST_CASE(options_and_modes)
{
    uint64_t o = SSL_CTX_get_options(srv);
    EXPECT(o & SSL_OP_CIPHER_SERVER_PREFERENCE);
    EXPECT(o & SSL_OP_NO_COMPRESSION);
    EXPECT(o & SSL_OP_NO_RENEGOTIATION);
    EXPECT(!(o & SSL_OP_ENABLE_KTLS));
    long m = SSL_CTX_get_mode(srv);
    EXPECT(m & SSL_MODE_RELEASE_BUFFERS);
    EXPECT(m & SSL_MODE_ENABLE_PARTIAL_WRITE);
    EXPECT(m & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    EXPECT_INT(SSL_CTX_get_max_early_data(srv), 0);
    EXPECT_INT(SSL_CTX_get_min_proto_version(srv), TLS1_2_VERSION);
    EXPECT_INT(SSL_CTX_get_max_proto_version(srv), TLS1_3_VERSION);
    /* No tickets configured: none issued, no stateless resumption. */
    EXPECT(o & SSL_OP_NO_TICKET);
    EXPECT_INT(SSL_CTX_get_num_tickets(srv), 0);
    EXPECT_INT(SSL_CTX_get_session_cache_mode(srv), SSL_SESS_CACHE_OFF);
}

static int peer_key_type(SSL *c)
{
    X509 *x = SSL_get0_peer_certificate(c);
    return x ? EVP_PKEY_get_base_id(X509_get0_pubkey(x)) : -1;
}

static void rsa_sigalgs(SSL *c)
{
    SSL_set1_sigalgs_list(c, "RSA-PSS+SHA256:RSA+SHA256");
}
static void tls12_rsa_suite(SSL *c)
{
    SSL_set_max_proto_version(c, TLS1_2_VERSION);
    SSL_set_cipher_list(c, "ECDHE-RSA-AES128-GCM-SHA256");
}

TEST_CASE(ecdsa_and_rsa_side_by_side)
{
    struct th_pair p;
    EXPECT_INT(try_client(&p, srv, NULL), 1);
    EXPECT_INT(peer_key_type(p.c), EVP_PKEY_EC);
    /* The leaf's chain (the test CA) is served with it. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(p.c);
    EXPECT_INT(chain ? sk_X509_num(chain) : 0, 2);
    th_pair_clear(&p);
    EXPECT_INT(try_client(&p, srv, rsa_sigalgs), 1);
    EXPECT_INT(peer_key_type(p.c), EVP_PKEY_RSA);
    th_pair_clear(&p);
    EXPECT_INT(try_client(&p, srv, tls12_rsa_suite), 1);
    EXPECT_INT(peer_key_type(p.c), EVP_PKEY_RSA);
    th_pair_clear(&p);
}

TEST_CASE(rsa_only_server_refuses_ecdsa_only_client)
{
    const char *const f[] = {"rsa"};
    SSL_CTX *ctx = NULL;
    struct moat_err err = {0};
    EXPECT_INT(ctx_with(f, 1, NULL, 0, &ctx, &err).kind, MOAT_OK);
    struct th_pair p;
    th_pair_init(&p, cli, ctx);
    SSL_set1_sigalgs_list(p.c, "ECDSA+SHA256");
    EXPECT_INT(th_handshake(&p), 0);
    EXPECT_INT(p.fail_side, 's');
    th_pair_clear(&p);
    SSL_CTX_free(ctx);
}

static const char *alpn_of(SSL *s, char *out, size_t outlen)
{
    const unsigned char *a = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(s, &a, &n);
    snprintf(out, outlen, "%.*s", (int)n, a ? (const char *)a : "");
    return out;
}

static int alpn_try(SSL_CTX *sctx, const char *wire, size_t wire_len, struct th_pair *p)
{
    th_pair_init(p, cli, sctx);
    if (wire) {
        SSL_set_alpn_protos(p->c, (const unsigned char *)wire, (unsigned int)wire_len);
    }
    return th_handshake(p);
}

TEST_CASE(alpn_default_http11)
{
    struct th_pair p;
    char b[64];
    EXPECT_INT(alpn_try(srv, "\x02h2\x08http/1.1", 12, &p), 1);
    EXPECT_STR(alpn_of(p.s, b, sizeof(b)), "http/1.1");
    EXPECT_STR(alpn_of(p.c, b, sizeof(b)), "http/1.1");
    th_pair_clear(&p);
    /* No ALPN offered: fine, nothing selected. */
    EXPECT_INT(alpn_try(srv, NULL, 0, &p), 1);
    EXPECT_STR(alpn_of(p.s, b, sizeof(b)), "");
    th_pair_clear(&p);
    /* ALPN offered without http/1.1: fatal no_application_protocol (RFC 7301 §3.2). */
    EXPECT_INT(alpn_try(srv, "\x02h2", 3, &p), 0);
    EXPECT_INT(p.fail_side, 's');
    EXPECT_INT(ERR_GET_REASON(p.fail_code), SSL_R_NO_APPLICATION_PROTOCOL);
    th_pair_clear(&p);
    /* The client sees the alert. */
    th_pair_init(&p, cli, srv);
    SSL_set_alpn_protos(p.c, (const unsigned char *)"\x02h2", 3);
    EXPECT_INT(th_handshake(&p), 0);
    ERR_clear_error();
    char x;
    EXPECT(SSL_read(p.c, &x, 1) <= 0);
    EXPECT_INT(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    ERR_clear_error();
    th_pair_clear(&p);
    /* TLS 1.2 too. */
    th_pair_init(&p, cli, srv);
    SSL_set_max_proto_version(p.c, TLS1_2_VERSION);
    SSL_set_alpn_protos(p.c, (const unsigned char *)"\x06spdy/3", 7);
    EXPECT_INT(th_handshake(&p), 0);
    EXPECT_INT(ERR_GET_REASON(p.fail_code), SSL_R_NO_APPLICATION_PROTOCOL);
    th_pair_clear(&p);
}

TEST_CASE(alpn_server_preference)
{
    const char *const f[] = {"ec"};
    const char *const prefs[] = {"h2", "http/1.1"};
    SSL_CTX *ctx = NULL;
    EXPECT_INT(ctx_with(f, 1, prefs, 2, &ctx, NULL).kind, MOAT_OK);
    struct th_pair p;
    char b[64];
    EXPECT_INT(alpn_try(ctx, "\x08http/1.1\x02h2", 12, &p), 1);
    EXPECT_STR(alpn_of(p.s, b, sizeof(b)), "h2");
    th_pair_clear(&p);
    EXPECT_INT(alpn_try(ctx, "\x08http/1.1", 9, &p), 1);
    EXPECT_STR(alpn_of(p.s, b, sizeof(b)), "http/1.1");
    th_pair_clear(&p);
    /* A prefix of a protocol is not the protocol. */
    EXPECT_INT(alpn_try(ctx, "\x01h\x07http/1", 10, &p), 0);
    th_pair_clear(&p);
    SSL_CTX_free(ctx);
}

TEST_CASE(alpn_list_refused)
{
    const char *const f[] = {"ec"};
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char *const empty[] = {"http/1.1", ""};
    const char *const too_long[] = {long_name};
    const char *const null_entry[] = {NULL};
    SSL_CTX *ctx = NULL;
    struct moat_err err = {0};
    EXPECT_INT(ctx_with(f, 1, empty, 2, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "ALPN protocol #2") != NULL);
    EXPECT_INT(ctx_with(f, 1, too_long, 1, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT_INT(ctx_with(f, 1, null_entry, 1, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT(ctx == NULL);
}

TEST_CASE(same_key_type_twice_names_both_files)
{
    const char *const f[] = {"ec", "rsa", "ec384"};
    SSL_CTX *ctx = NULL;
    struct moat_err err = {0};
    EXPECT_INT(ctx_with(f, 3, NULL, 0, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT(ctx == NULL);
    EXPECT(strstr(err.msg, th_files("ec").cert_path) != NULL);
    EXPECT(strstr(err.msg, th_files("ec384").cert_path) != NULL);
    EXPECT(strstr(err.msg, "ECDSA") != NULL);
    EXPECT_INT(ERR_peek_error(), 0);
}

/* moat_tls_certset_new does not check that the key matches (sources do, with pki/'s start-up
 * checks); the context checks again, so a set made some other way cannot serve a wrong key. */
TEST_CASE(key_mismatch_refused)
{
    struct th_pair_files ec = th_files("ec"), ec384 = th_files("ec384");
    struct moat_chain *chain = NULL;
    EVP_PKEY *key = NULL;
    struct moat_tls_certset *set = NULL;
    EXPECT_INT(moat_chain_load(ec.cert_path, &chain, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_key_load(ec384.key_path, &key, NULL).kind, MOAT_OK);
    if (chain == NULL || key == NULL) {
        moat_chain_free(chain);
        EVP_PKEY_free(key);
        return;
    }
    X509 *leaf = chain->leaf;
    STACK_OF(X509) *extra = chain->extra;
    chain->leaf = NULL;
    chain->extra = NULL;
    moat_chain_free(chain);
    EXPECT_INT(
        moat_tls_certset_new(leaf, extra, key, ec.cert_path, ec384.key_path, 0, &set, NULL).kind,
        MOAT_OK);
    struct moat_tls_certset *sets[] = {set};
    struct moat_tls_opts o = {.sets = sets, .nsets = 1};
    SSL_CTX *ctx = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_tls_ctx_new(&o, &ctx, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "does not match") != NULL);
    EXPECT(strstr(err.msg, ec384.key_path) != NULL);
    EXPECT_INT(ERR_peek_error(), 0);
    EXPECT(ctx == NULL);
    moat_tls_certset_unref(set);
}

TEST_CASE(no_certificate_refused)
{
    SSL_CTX *ctx = NULL;
    struct moat_err err = {0};
    EXPECT_INT(ctx_with(NULL, 0, NULL, 0, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "no certificate") != NULL);
    struct moat_tls_opts none = {.sets = NULL, .nsets = 1};
    EXPECT_INT(moat_tls_ctx_new(&none, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "no certificate") != NULL);
    struct moat_tls_certset *missing[] = {NULL};
    struct moat_tls_opts hole = {.sets = missing, .nsets = 1};
    EXPECT_INT(moat_tls_ctx_new(&hole, &ctx, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "certificate set #1 is missing") != NULL);
    EXPECT(ctx == NULL);
    EXPECT_INT(ERR_peek_error(), 0);
}

TEST_CASE(negative_timeout_refused)
{
    const char *const f[] = {"ec"};
    struct moat_tls_opts o = {.session_timeout_s = -1};
    SSL_CTX *ctx = NULL;
    EXPECT_INT(th_ctx_new(&o, f, 1, &ctx, NULL).kind, MOAT_E_CONFIG);
    EXPECT(ctx == NULL);
    o.session_timeout_s = 600;
    o.session_cache_size = 1000;
    EXPECT_INT(th_ctx_new(&o, f, 1, &ctx, NULL).kind, MOAT_OK);
    EXPECT_INT(SSL_CTX_get_timeout(ctx), 600);
    EXPECT_INT(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_SERVER);
    EXPECT_INT(SSL_CTX_sess_get_cache_size(ctx), 1000);
    SSL_CTX_free(ctx);
}

int main(void)
{
    th_dir_make();
    int ok = th_cert_files("ec", "ec", "ec.example") &&
             th_cert_files("rsa", "rsa", "rsa.example") &&
             th_cert_files("ec384", "p384", "ec384.example");
    EXPECT(ok);
    const char *const both[] = {"ec", "rsa"};
    struct moat_err err = {0};
    moat_rc rc = ctx_with(both, 2, NULL, 0, &srv, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "cannot build the test server context: %s\n", err.msg);
    }
    EXPECT_INT(rc.kind, MOAT_OK);
    EXPECT_INT(ERR_peek_error(), 0);
    cli = th_client_ctx();
    if (ok && srv != NULL) {
        RUN(tls11_refused_by_server);
        RUN(tls12_non_aead_or_non_ecdhe_refused);
        RUN(tls12_ecdhe_gcm_works);
        RUN(tls12_server_preference_and_chacha);
        RUN(tls13_works_with_x25519);
        RUN(groups_policy);
        RUN(options_and_modes);
        RUN(ecdsa_and_rsa_side_by_side);
        RUN(rsa_only_server_refuses_ecdsa_only_client);
        RUN(alpn_default_http11);
        RUN(alpn_server_preference);
        RUN(alpn_list_refused);
        RUN(same_key_type_twice_names_both_files);
        RUN(key_mismatch_refused);
        RUN(no_certificate_refused);
        RUN(negative_timeout_refused);
    }
    SSL_CTX_free(srv);
    SSL_CTX_free(cli);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
