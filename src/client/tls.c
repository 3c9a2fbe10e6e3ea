/*
 * tls.c: the client's SSL_CTX (tls/client.c's policy with get/trace's trust and options), its
 * poll-driven handshake, and reading back what was
 * negotiated in the names people look up (IANA's, as in RFC 8446 §4.2.3 and §4.2.7).
 */
#include "client/tls.h"

#include "client/conn.h"
#include "client/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

static const char *const alpn_http11[] = {"http/1.1"};
/* --http2: h2 first, so a server that has both picks it; http/1.1 for the others. */
static const char *const alpn_h2[] = {"h2", "http/1.1"};

moat_rc moat_client_tls_ctx_new(const struct moat_client_opts *o, struct moat_client_trust *t,
                                SSL_CTX **out, struct moat_err *err)
{
    *out = NULL;
    if (o->tls_min && o->tls_max && o->tls_min > o->tls_max) {
        MOAT_FAIL(err, MOAT_E_USAGE, "--tls-min is above --tls-max");
    }
    struct moat_tls_client_opts to = {
        .cert_path = o->cert,
        .key_path = o->key,
        .alpn = o->http2 ? alpn_h2 : alpn_http11,
        .nalpn = o->http2 ? 2 : 1,
        .min_version = o->tls_min,
        .max_version = o->tls_max,
        /* The HTTP reader frames every body itself (length, chunks, or to the end where
         * close-delimited bodies are shown as such), and servers often skip close_notify. */
        .allow_unexpected_eof = 1,
    };
    MOAT_TRY(moat_client_verify_opts(t, &to, err));
    return moat_tls_client_ctx_new(&to, out, err);
}

moat_rc moat_client_tls_probe_ctx_new(SSL_CTX **out, struct moat_err *err)
{
    struct moat_tls_client_opts to = {.no_verify = 1, .allow_unexpected_eof = 1};
    return moat_tls_client_ctx_new(&to, out, err);
}

moat_rc moat_client_tls_handshake(SSL *ssl, int fd, double deadline_ms, unsigned long *ssl_err,
                                  struct moat_err *err)
{
    *ssl_err = 0;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(ssl);
        if (r == 1) {
            return MOAT_RC_OK;
        }
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            moat_rc w = moat_client_conn_wait(fd, e == SSL_ERROR_WANT_WRITE, deadline_ms);
            if (w.kind == MOAT_E_LIMIT) {
                MOAT_FAIL(err, MOAT_E_LIMIT, "the TLS handshake did not finish in time");
            }
            if (!moat_ok(w)) {
                MOAT_FAIL_SYS(err, MOAT_E_IO, "waiting for the server");
            }
            continue;
        }
        *ssl_err = ERR_peek_error();
        if (e == SSL_ERROR_SYSCALL && *ssl_err == 0) {
            int sys = errno;
            if (sys == 0 || sys == ECONNRESET || sys == EPIPE) {
                MOAT_FAIL(err, MOAT_E_CLOSED, "the server closed the connection%s",
                          sys == ECONNRESET ? " (reset)" : "");
            }
            MOAT_FAIL_SYS(err, MOAT_E_IO, "the TLS handshake failed");
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            MOAT_FAIL(err, MOAT_E_CLOSED, "the server closed the connection");
        }
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "the TLS handshake failed");
    }
}

static const char *group_name(SSL *ssl, int nid, char *buf, size_t buflen)
{
    switch (nid) {
    case NID_X25519:
        return "X25519";
    case NID_X448:
        return "X448";
    case NID_X9_62_prime256v1:
        return "P-256";
    case NID_secp384r1:
        return "P-384";
    case NID_secp521r1:
        return "P-521";
    default:
        break;
    }
    const char *n = SSL_group_to_name(ssl, nid);
    snprintf(buf, buflen, "%s", n ? n : "?");
    return buf;
}

static void sigalg_name(SSL *ssl, char *out, size_t outlen)
{
    int type = NID_undef, md = NID_undef;
    out[0] = '\0';
    if (SSL_get_peer_signature_type_nid(ssl, &type) != 1) {
        return;
    }
    if (SSL_get_peer_signature_nid(ssl, &md) != 1) {
        md = NID_undef;
    }
    const char *h = md == NID_sha256   ? "sha256"
                    : md == NID_sha384 ? "sha384"
                    : md == NID_sha512 ? "sha512"
                    : md == NID_sha1   ? "sha1"
                                       : OBJ_nid2sn(md);
    if (h == NULL) {
        h = "?";
    }
    switch (type) {
    case EVP_PKEY_EC: {
        const char *curve = md == NID_sha256   ? "secp256r1_"
                            : md == NID_sha384 ? "secp384r1_"
                            : md == NID_sha512 ? "secp521r1_"
                                               : "";
        moat_client__fmt(out, outlen, "ecdsa_%s%s", curve, h);
        break;
    }
    case EVP_PKEY_RSA_PSS: {
        /* rsae: an ordinary RSA key signing with PSS; pss: a key restricted to PSS. */
        X509 *peer = SSL_get0_peer_certificate(ssl);
        EVP_PKEY *k = peer ? X509_get0_pubkey(peer) : NULL;
        int pss_key = k != NULL && EVP_PKEY_is_a(k, "RSA-PSS");
        moat_client__fmt(out, outlen, "rsa_pss_%s_%s", pss_key ? "pss" : "rsae", h);
        break;
    }
    case EVP_PKEY_RSA:
        moat_client__fmt(out, outlen, "rsa_pkcs1_%s", h);
        break;
    case EVP_PKEY_ED25519:
        moat_client__fmt(out, outlen, "ed25519");
        break;
    case EVP_PKEY_ED448:
        moat_client__fmt(out, outlen, "ed448");
        break;
    default:
        moat_client__fmt(out, outlen, "%s with %s", OBJ_nid2sn(type) ? OBJ_nid2sn(type) : "?", h);
        break;
    }
}

void moat_client_tls_facts(SSL *ssl, struct moat_client_hop *h)
{
    /* SSL_version is the client's highest until a ServerHello has been processed. */
    if (moat_trace_find_hs(&h->trace, MOAT_TRACE_IN, SSL3_MT_SERVER_HELLO) != NULL) {
        h->version = SSL_version(ssl);
        moat_client__fmt(h->version_name, sizeof(h->version_name), "%s", SSL_get_version(ssl));
        const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
        if (c == NULL) {
            SSL_SESSION *s = SSL_get_session(ssl);
            c = s ? SSL_SESSION_get0_cipher(s) : NULL;
        }
        moat_client__fmt(h->cipher, sizeof(h->cipher), "%s", c ? SSL_CIPHER_get_name(c) : "");
        int g = SSL_get_negotiated_group(ssl);
        char gb[32];
        if (g > 0) {
            moat_client__fmt(h->group, sizeof(h->group), "%s", group_name(ssl, g, gb, sizeof(gb)));
        }
        sigalg_name(ssl, h->sigalg, sizeof(h->sigalg));
    }
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    if (alpn != NULL && alen > 0) {
        moat_client__fmt(h->alpn, sizeof(h->alpn), "%.*s", (int)alen, (const char *)alpn);
    }
    h->resumed = SSL_session_reused(ssl);
    if (h->resumed && h->version == TLS1_2_VERSION) {
        h->group[0] = '\0'; /* RFC 5246 §7.3: an abbreviated handshake exchanges no keys */
    }
    ERR_clear_error();
}
