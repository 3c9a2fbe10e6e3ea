/*
 * test_client.c: tls/client.c, the one TLS client policy. Real handshakes against an in-process
 * server SSL over a BIO pair: the versions and ciphers offered, SNI for names and none for
 * addresses, the name or address check (never the CN), trust sources, ALPN and the client
 * certificate, and each refusal of moat_tls_client_ctx_new.
 */
#include "tls/client.h"

#include "test.h"
#include "tls/ctx.h"
#include "tls/tls_helpers.h"

static char ca_pem[128]; /* th_path() reuses its slots: a copy */
static const char *const http11[] = {"http/1.1"};

/* A leaf under th_ca with the subjectAltName `san` ("DNS:a,IP:1.2.3.4"; NULL: none), written as
 * <name>.crt and <name>.key. */
static int leaf_files(const char *name, const char *cn, const char *san)
{
    EVP_PKEY *key = th_key("ec");
    X509 *x = th_x509(key, cn, th_ca, th_ca_key, 0);
    /* th_x509 gave it DNS:<cn>; replace that with what the test wants. */
    int at = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    X509_EXTENSION_free(X509_delete_ext(x, at));
    if (san != NULL) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, th_ca, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, th_ca_key, EVP_sha256());
    char file[80];
    snprintf(file, sizeof(file), "%s.crt", name);
    FILE *f = fopen(th_path(file), "w");
    int ok = f && PEM_write_X509(f, x);
    if (f) {
        fclose(f);
    }
    snprintf(file, sizeof(file), "%s.key", name);
    f = fopen(th_path(file), "w");
    ok = ok && f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (f) {
        fclose(f);
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    return SSL_select_next_proto((unsigned char **)out, outlen,
                                 (const unsigned char *)"\x08http/1.1", 9, in,
                                 inlen) == OPENSSL_NPN_NEGOTIATED
               ? SSL_TLSEXT_ERR_OK
               : SSL_TLSEXT_ERR_NOACK;
}

/* A plain OpenSSL server with certificate <name>, no policy of its own beyond what is given. */
static SSL_CTX *server(const char *name, int max_version, const char *ciphers12)
{
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    char crt[80], key[80];
    snprintf(crt, sizeof(crt), "%s.crt", name);
    snprintf(key, sizeof(key), "%s.key", name);
    SSL_CTX_use_certificate_file(s, th_path(crt), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(s, th_path(key), SSL_FILETYPE_PEM);
    SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    if (max_version) {
        SSL_CTX_set_max_proto_version(s, max_version);
    }
    if (ciphers12) {
        SSL_CTX_set_cipher_list(s, ciphers12);
    }
    SSL_CTX_set_alpn_select_cb(s, alpn_cb, NULL);
    return s;
}

/* What one connection showed on both sides. */
struct seen {
    int ok;           /* both handshakes finished */
    long verify;      /* the client's verify result */
    char sni[64];     /* what the server received; "" none */
    char alpn[16];    /* what was agreed */
    int version;      /* negotiated */
    int peer_cert;    /* the server got a client certificate */
    int client_rc_ok; /* moat_tls_client_ssl_new succeeded */
};

static struct seen connect_to(SSL_CTX *cctx, SSL_CTX *sctx, const char *host)
{
    struct seen r = {0};
    struct th_pair p;
    memset(&p, 0, sizeof(p));
    struct moat_err err = {0};
    if (!moat_ok(moat_tls_client_ssl_new(cctx, host, &p.c, &err))) {
        return r;
    }
    r.client_rc_ok = 1;
    p.s = SSL_new(sctx);
    BIO *bc, *bs;
    BIO_new_bio_pair(&bc, 0, &bs, 0);
    SSL_set_bio(p.c, bc, bc);
    SSL_set_bio(p.s, bs, bs);
    SSL_set_accept_state(p.s);
    r.ok = th_handshake(&p);
    r.verify = SSL_get_verify_result(p.c);
    const char *sn = SSL_get_servername(p.s, TLSEXT_NAMETYPE_host_name);
    snprintf(r.sni, sizeof(r.sni), "%s", sn ? sn : "");
    const unsigned char *a = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(p.c, &a, &alen);
    snprintf(r.alpn, sizeof(r.alpn), "%.*s", (int)alen, a ? (const char *)a : "");
    r.version = SSL_version(p.c);
    X509 *pc = SSL_get1_peer_certificate(p.s);
    r.peer_cert = pc != NULL;
    X509_free(pc);
    th_pair_clear(&p);
    ERR_clear_error();
    return r;
}

static SSL_CTX *client(const struct moat_tls_client_opts *o)
{
    SSL_CTX *c = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_tls_client_ctx_new(o, &c, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "moat_tls_client_ctx_new: %s\n", err.msg);
    }
    return c;
}

TEST_CASE(policy_is_set_on_the_context)
{
    struct moat_tls_client_opts o = {.ca_file = ca_pem};
    SSL_CTX *c = client(&o);
    EXPECT(c != NULL);
    EXPECT_INT(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
    EXPECT_INT(SSL_CTX_get_max_proto_version(c), TLS1_3_VERSION);
    EXPECT(SSL_CTX_get_options(c) & SSL_OP_NO_COMPRESSION);
    EXPECT(SSL_CTX_get_options(c) & SSL_OP_NO_RENEGOTIATION);
    EXPECT(!(SSL_CTX_get_options(c) & SSL_OP_IGNORE_UNEXPECTED_EOF));
    EXPECT_INT(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER);
    /* TLS 1.2 offers ECDHE + AEAD only: no CBC, no static RSA. */
    STACK_OF(SSL_CIPHER) *cs = SSL_CTX_get_ciphers(c);
    int bad = 0, n12 = 0;
    for (int i = 0; i < sk_SSL_CIPHER_num(cs); i++) {
        const SSL_CIPHER *ci = sk_SSL_CIPHER_value(cs, i);
        if (SSL_CIPHER_get_kx_nid(ci) == NID_kx_any) {
            continue; /* a TLS 1.3 suite: the key exchange is not part of it */
        }
        n12++;
        bad += SSL_CIPHER_get_kx_nid(ci) != NID_kx_ecdhe || !SSL_CIPHER_is_aead(ci);
    }
    EXPECT(n12 >= 4);
    EXPECT_INT(bad, 0);
    SSL_CTX_free(c);

    o.allow_unexpected_eof = 1;
    o.min_version = TLS1_3_VERSION;
    c = client(&o);
    EXPECT(c != NULL);
    EXPECT_INT(SSL_CTX_get_min_proto_version(c), TLS1_3_VERSION);
    EXPECT(SSL_CTX_get_options(c) & SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_free(c);
}

TEST_CASE(a_name_gets_sni_and_a_name_check)
{
    SSL_CTX *s = server("name", 0, NULL);
    struct moat_tls_client_opts o = {.ca_file = ca_pem, .alpn = http11, .nalpn = 1};
    SSL_CTX *c = client(&o);
    struct seen r = connect_to(c, s, "origin.test");
    EXPECT(r.ok);
    EXPECT_INT(r.verify, X509_V_OK);
    EXPECT_STR(r.sni, "origin.test");
    EXPECT_STR(r.alpn, "http/1.1");
    EXPECT_INT(r.version, TLS1_3_VERSION);
    /* The same certificate for another name is refused, and that name went out as SNI. */
    r = connect_to(c, s, "other.test");
    EXPECT(!r.ok);
    EXPECT_INT(r.verify, X509_V_ERR_HOSTNAME_MISMATCH);
    EXPECT_STR(r.sni, "other.test");
    /* No partial wildcards. */
    SSL_CTX *w = server("wild", 0, NULL);
    r = connect_to(c, w, "wx.example.test");
    EXPECT(!r.ok);
    EXPECT_INT(r.verify, X509_V_ERR_HOSTNAME_MISMATCH);
    SSL_CTX_free(w);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

TEST_CASE(an_address_gets_no_sni_and_an_address_check)
{
    SSL_CTX *s = server("ip", 0, NULL);
    struct moat_tls_client_opts o = {.ca_file = ca_pem};
    SSL_CTX *c = client(&o);
    struct seen r = connect_to(c, s, "127.0.0.1");
    EXPECT(r.ok);
    EXPECT_INT(r.verify, X509_V_OK);
    EXPECT_STR(r.sni, "");
    EXPECT_STR(r.alpn, "");
    r = connect_to(c, s, "::1");
    EXPECT(r.ok);
    EXPECT_STR(r.sni, "");
    r = connect_to(c, s, "127.0.0.2");
    EXPECT(!r.ok);
    EXPECT_INT(r.verify, X509_V_ERR_IP_ADDRESS_MISMATCH);
    EXPECT_STR(r.sni, "");
    /* An address written as a DNS name in the certificate does not count. */
    SSL_CTX *d = server("ipdns", 0, NULL);
    r = connect_to(c, d, "127.0.0.1");
    EXPECT(!r.ok);
    EXPECT_INT(r.verify, X509_V_ERR_IP_ADDRESS_MISMATCH);
    SSL_CTX_free(d);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
    EXPECT_INT(moat_tls_client_host_ip("10.0.0.1"), 4);
    EXPECT_INT(moat_tls_client_host_ip("2001:db8::1"), 6);
    EXPECT_INT(moat_tls_client_host_ip("example.test"), 0);
    EXPECT_INT(moat_tls_client_host_ip("[::1]"), 0);
}

TEST_CASE(the_cn_is_never_a_name)
{
    SSL_CTX *s = server("cnonly", 0, NULL);
    struct moat_tls_client_opts o = {.ca_file = ca_pem};
    SSL_CTX *c = client(&o);
    struct seen r = connect_to(c, s, "origin.test");
    EXPECT(!r.ok);
    EXPECT_INT(r.verify, X509_V_ERR_HOSTNAME_MISMATCH);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

TEST_CASE(versions_and_ciphers_outside_the_policy_fail)
{
    /* A TLS 1.2 server with a CBC suite only: the policy offers none. */
    SSL_CTX *cbc = server("name", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256");
    struct moat_tls_client_opts o = {.ca_file = ca_pem};
    SSL_CTX *c = client(&o);
    struct seen r = connect_to(c, cbc, "origin.test");
    EXPECT(r.client_rc_ok);
    EXPECT(!r.ok);
    /* A TLS 1.2 server with an AEAD suite works and negotiates 1.2... */
    SSL_CTX *s12 = server("name", TLS1_2_VERSION, NULL);
    r = connect_to(c, s12, "origin.test");
    EXPECT(r.ok);
    EXPECT_INT(r.version, TLS1_2_VERSION);
    SSL_CTX_free(c);
    /* ...unless the user asked for 1.3 only. */
    o.min_version = TLS1_3_VERSION;
    c = client(&o);
    r = connect_to(c, s12, "origin.test");
    EXPECT(!r.ok);
    SSL_CTX_free(c);
    /* A diagnostic override of the ciphers is applied too. */
    o.min_version = 0;
    o.ciphers12 = "ECDHE-ECDSA-AES128-SHA256";
    c = client(&o);
    r = connect_to(c, cbc, "origin.test");
    EXPECT(r.ok);
    SSL_CTX_free(c);
    SSL_CTX_free(s12);
    SSL_CTX_free(cbc);
}

static int cb_calls;
static int record_and_go_on(int ok, X509_STORE_CTX *x)
{
    cb_calls++;
    return 1;
}

TEST_CASE(trust_sources)
{
    SSL_CTX *s = server("name", 0, NULL);
    /* Nothing trusted: refused. */
    struct moat_tls_client_opts none = {0};
    SSL_CTX *c = client(&none);
    struct seen r = connect_to(c, s, "origin.test");
    EXPECT(!r.ok);
    EXPECT_INT(r.verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    SSL_CTX_free(c);
    /* The optional file is used when it is there, skipped when it is not. */
    struct moat_tls_client_opts opt = {.ca_file_if_readable = ca_pem};
    c = client(&opt);
    EXPECT(connect_to(c, s, "origin.test").ok);
    SSL_CTX_free(c);
    opt.ca_file_if_readable = th_path("absent.pem");
    c = client(&opt);
    EXPECT(c != NULL);
    EXPECT(!connect_to(c, s, "origin.test").ok);
    SSL_CTX_free(c);
    /* A store of the caller's. */
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, th_ca);
    struct moat_tls_client_opts so = {.store = st};
    c = client(&so);
    X509_STORE_free(st); /* the context holds its own reference */
    EXPECT(connect_to(c, s, "origin.test").ok);
    SSL_CTX_free(c);
    /* A callback sees the failure and may let the handshake go on; no_verify checks nothing. */
    struct moat_tls_client_opts cb = {.verify_cb = record_and_go_on};
    c = client(&cb);
    cb_calls = 0;
    r = connect_to(c, s, "other.test");
    EXPECT(r.ok);
    EXPECT(cb_calls > 0);
    EXPECT(r.verify != X509_V_OK);
    SSL_CTX_free(c);
    struct moat_tls_client_opts nv = {.no_verify = 1};
    c = client(&nv);
    EXPECT_INT(SSL_CTX_get_verify_mode(c), SSL_VERIFY_NONE);
    EXPECT(connect_to(c, s, "other.test").ok);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

TEST_CASE(client_certificate_is_sent)
{
    SSL_CTX *s = server("name", 0, NULL);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, th_ca);
    SSL_CTX_set_cert_store(s, st);
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    struct moat_tls_client_opts o = {.ca_file = ca_pem};
    SSL_CTX *c = client(&o);
    EXPECT(!connect_to(c, s, "origin.test").ok);
    SSL_CTX_free(c);
    o.cert_path = th_path("alice.crt");
    o.key_path = th_path("alice.key");
    c = client(&o);
    struct seen r = connect_to(c, s, "origin.test");
    EXPECT(r.ok);
    EXPECT(r.peer_cert);
    SSL_CTX_free(c);
    SSL_CTX_free(s);
}

TEST_CASE(refusals)
{
    SSL_CTX *c = (SSL_CTX *)1;
    struct moat_err err = {0};
    struct moat_tls_client_opts v = {.min_version = TLS1_3_VERSION, .max_version = TLS1_2_VERSION};
    EXPECT_INT(moat_tls_client_ctx_new(&v, &c, &err).kind, MOAT_E_USAGE);
    EXPECT(c == NULL);
    const char *const bad_alpn[] = {""};
    struct moat_tls_client_opts a = {.alpn = bad_alpn, .nalpn = 1};
    EXPECT_INT(moat_tls_client_ctx_new(&a, &c, &err).kind, MOAT_E_USAGE);
    struct moat_tls_client_opts ca = {.ca_file = th_path("absent.pem")};
    EXPECT_INT(moat_tls_client_ctx_new(&ca, &c, &err).kind, MOAT_E_CONFIG);
    EXPECT(strstr(err.msg, "absent.pem") != NULL);
    struct moat_tls_client_opts nc = {.cert_path = th_path("absent.crt")};
    EXPECT_INT(moat_tls_client_ctx_new(&nc, &c, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "cannot load the client certificate") != NULL);
    struct moat_tls_client_opts mk = {.cert_path = th_path("alice.crt"),
                                      .key_path = th_path("name.key")};
    EXPECT_INT(moat_tls_client_ctx_new(&mk, &c, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "does not belong to the certificate") != NULL);
    /* The key in the certificate's file when key_path is NULL: alice.crt holds none. */
    struct moat_tls_client_opts nk = {.cert_path = th_path("alice.crt")};
    EXPECT_INT(moat_tls_client_ctx_new(&nk, &c, &err).kind, MOAT_E_CERT);
    EXPECT(strstr(err.msg, "unencrypted PEM key") != NULL);
    EXPECT(c == NULL);
    struct moat_tls_client_opts ok = {0};
    SSL_CTX *good = client(&ok);
    SSL *ssl = (SSL *)1;
    EXPECT_INT(moat_tls_client_ssl_new(good, "", &ssl, &err).kind, MOAT_E_USAGE);
    EXPECT(ssl == NULL);
    SSL_CTX_free(good);
    ERR_clear_error();
}

int main(void)
{
    th_dir_make();
    int ok = th_cert_files("seed", "ec", "seed.test") && /* makes th_ca */
             leaf_files("name", "origin.test", "DNS:origin.test") &&
             leaf_files("wild", "wild", "DNS:w*.example.test") &&
             leaf_files("ip", "ip", "IP:127.0.0.1,IP:::1") &&
             leaf_files("ipdns", "ipdns", "DNS:127.0.0.1") &&
             leaf_files("cnonly", "origin.test", NULL) &&
             leaf_files("alice", "alice", "DNS:alice.test");
    EXPECT(ok);
    snprintf(ca_pem, sizeof(ca_pem), "%s", th_path("ca.pem"));
    FILE *f = fopen(ca_pem, "w");
    EXPECT(f != NULL && PEM_write_X509(f, th_ca));
    if (f) {
        fclose(f);
    }
    RUN(policy_is_set_on_the_context);
    RUN(a_name_gets_sni_and_a_name_check);
    RUN(an_address_gets_no_sni_and_an_address_check);
    RUN(the_cn_is_never_a_name);
    RUN(versions_and_ciphers_outside_the_policy_fail);
    RUN(trust_sources);
    RUN(client_certificate_is_sent);
    RUN(refusals);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
