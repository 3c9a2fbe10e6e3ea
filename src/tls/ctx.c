/*
 * ctx.c: the server SSL_CTX and moat's TLS policy.
 *
 * Everything a server context needs is decided here, once, at configuration load: protocol
 * versions, ciphers, groups, options, certificates (several key types side by side), ALPN, the
 * session ID context and the session cache. Handshakes then only read the context. SNI switching
 * (sni.c) moves a connection between contexts built here, and session tickets (ticket.c) are
 * installed here when the configuration asks for them.
 *
 * The ALPN list the selection callback reads hangs on the SSL_CTX's ex_data, so it is freed with
 * the context and never outlives it.
 */
#include "tls/ctx.h"

#include "tls/clientauth.h"
#include "tls/policy.h"

#include "tls/certset.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/ticket.h"

/* Only TLS 1.2 and 1.3 (RFC 8996 retires 1.0 and 1.1). TLS 1.2 suites are ECDHE (forward
 * secrecy) with an AEAD (no CBC: Lucky13 and padding oracles); AES-128 first because it is as
 * safe in practice and faster, ChaCha20 for clients without AES hardware. */
static const char policy_tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char policy_tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
/* X25519 first: fast, constant-time, and what browsers send a key share for. */
static const char policy_groups[] = "X25519:P-256:P-384";
static const char *const default_alpn[] = {"http/1.1", "http/1.0"};

#define SID_LEN 32 /* SSL_MAX_SID_CTX_LENGTH; one SHA-256 */

/* Hung on each SSL_CTX we build (ex_data), freed with it. */
struct ctx_extra {
    size_t alpn_len;      /* bytes in alpn[] */
    unsigned char alpn[]; /* server preference, wire format (RFC 7301 §3.1) */
};

static pthread_once_t extra_once = PTHREAD_ONCE_INIT;
static int extra_idx = -1;
static int refused_idx = -1; /* SSL ex_data: what a client offered when ALPN failed (char *) */
static int no_h2_idx = -1;   /* SSL ex_data: non-NULL when this connection must not pick h2 */

static void extra_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void extra_index_init(void)
{
    extra_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, extra_free);
    refused_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, extra_free);
    no_h2_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

int moat_tls_alpn_no_h2(SSL *ssl)
{
    pthread_once(&extra_once, extra_index_init);
    return no_h2_idx >= 0 && SSL_set_ex_data(ssl, no_h2_idx, (void *)1) == 1;
}

/* Keep the client's list in words for the log (a failed handshake only: no cost otherwise).
 * Protocol names are bytes; anything outside printable ASCII is shown as '?'. */
static void remember_offer(SSL *ssl, const unsigned char *in, unsigned int inlen)
{
    if (refused_idx < 0) {
        return;
    }
    char *words = malloc(300);
    if (words == NULL) {
        return;
    }
    size_t at = 0;
    for (unsigned int j = 0; j < inlen && at + 8 < 300;) {
        unsigned int l = in[j];
        if (l == 0 || l > inlen - j - 1) {
            break;
        }
        if (at > 0) {
            words[at++] = ',';
            words[at++] = ' ';
        }
        for (unsigned int k = 0; k < l && at + 4 < 300; k++) {
            unsigned char ch = in[j + 1 + k];
            words[at++] = ch >= 0x21 && ch < 0x7f ? (char)ch : '?';
        }
        j += 1 + l;
    }
    words[at] = '\0';
    free(SSL_get_ex_data(ssl, refused_idx));
    if (!SSL_set_ex_data(ssl, refused_idx, words)) {
        free(words);
    }
}

int moat_tls_alpn_refused(SSL *ssl, char *out, size_t outlen)
{
    const char *words = refused_idx >= 0 && ssl != NULL ? SSL_get_ex_data(ssl, refused_idx) : NULL;
    if (words == NULL) {
        return 0;
    }
    snprintf(out, outlen, "%s", words);
    return 1;
}

/*
 * RFC 7301 §3.2: pick the first protocol of the server's list that the client offered. A client
 * that offers ALPN but none of ours gets a fatal no_application_protocol alert (OpenSSL sends that
 * alert for SSL_TLSEXT_ERR_ALERT_FATAL): answering without ALPN would let a peer speak a protocol
 * we did not agree to (cross-protocol attacks such as ALPACA). OpenSSL calls this only when the
 * client sent ALPN, so a client without ALPN is served as before.
 */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct ctx_extra *x = arg;
    int no_h2 = no_h2_idx >= 0 && SSL_get_ex_data(ssl, no_h2_idx) != NULL;
    for (size_t i = 0; i < x->alpn_len; i += 1 + (size_t)x->alpn[i]) {
        size_t want_len = x->alpn[i];
        const unsigned char *want = &x->alpn[i + 1];
        if (no_h2 && want_len == 2 && memcmp(want, "h2", 2) == 0) {
            continue; /* a listener with `http2 off` */
        }
        /* OpenSSL has checked the client's list, but walk it defensively anyway. */
        for (unsigned int j = 0; j < inlen;) {
            unsigned int l = in[j];
            if (l == 0 || l > inlen - j - 1) {
                break;
            }
            if (l == want_len && memcmp(&in[j + 1], want, l) == 0) {
                *out = &in[j + 1];
                *outlen = (unsigned char)l;
                return SSL_TLSEXT_ERR_OK;
            }
            j += 1 + l;
        }
    }
    remember_offer(ssl, in, inlen);
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static moat_rc build_extra(const struct moat_tls_opts *o, struct ctx_extra **out,
                           struct moat_err *err)
{
    const char *const *alpn = o->alpn;
    size_t nalpn = o->nalpn;
    if (alpn == NULL || nalpn == 0) {
        alpn = default_alpn;
        nalpn = sizeof(default_alpn) / sizeof(default_alpn[0]);
    }
    size_t total = 0;
    for (size_t i = 0; i < nalpn; i++) {
        size_t l = alpn[i] ? strlen(alpn[i]) : 0;
        if (l == 0 || l > 255) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "ALPN protocol #%zu must be 1 to 255 bytes long (RFC 7301 §3.1)", i + 1);
        }
        total += 1 + l;
    }
    if (total > 0xffff) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "ALPN list is longer than 65535 bytes");
    }
    struct ctx_extra *x = calloc(1, sizeof(*x) + total);
    if (x == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the ALPN list");
    }
    size_t at = 0;
    for (size_t i = 0; i < nalpn; i++) {
        size_t l = strlen(alpn[i]);
        x->alpn[at] = (unsigned char)l;
        memcpy(&x->alpn[at + 1], alpn[i], l);
        at += 1 + l;
    }
    x->alpn_len = total;
    *out = x;
    return MOAT_RC_OK;
}

/* The key-type slots OpenSSL keeps side by side in one context (SSL_PKEY_* in ssl_local.h): a
 * second certificate with a key of the same type would silently replace the first. */
static const char *slot_name(int base_id)
{
    switch (base_id) {
    case EVP_PKEY_RSA:
        return "RSA";
    case EVP_PKEY_RSA_PSS:
        return "RSA-PSS";
    case EVP_PKEY_EC:
        return "ECDSA";
    case EVP_PKEY_ED25519:
        return "Ed25519";
    case EVP_PKEY_ED448:
        return "Ed448";
    default:
        return NULL;
    }
}

/* What load_certs remembers of the sets already in a context. */
struct seen {
    int type[8];
    const char *label[8];
    size_t n;
};

/* Put one set into `ctx`: refused a key type TLS cannot use here, a key that does not match,
 * a second set of a key type already there; its leaf's digest goes into `md`. */
static moat_rc use_set(SSL_CTX *ctx, const struct moat_tls_certset *cs, struct seen *seen,
                       EVP_MD_CTX *md, struct moat_err *err)
{
    if (slot_name(cs->key_type) == NULL) {
        moat_err_where(err, "%s", cs->key_label);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "key \"%s\" is of type %s, which TLS cannot use here (use ECDSA or RSA)",
                  cs->key_label, EVP_PKEY_get0_type_name(cs->key));
    }
    if (X509_check_private_key(cs->leaf, cs->key) != 1) {
        ERR_clear_error();
        moat_err_where(err, "%s", cs->label);
        MOAT_FAIL(err, MOAT_E_CERT,
                  "certificate \"%s\" does not match key \"%s\" (use the key the CSR was made "
                  "from)",
                  cs->label, cs->key_label);
    }
    for (size_t k = 0; k < seen->n; k++) {
        if (seen->type[k] == cs->key_type) {
            moat_err_where(err, "%s", cs->label);
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "certificates \"%s\" and \"%s\" both have %s keys (give at most one per key "
                      "type, e.g. one ECDSA and one RSA)",
                      seen->label[k], cs->label, slot_name(cs->key_type));
        }
    }
    if (seen->n == sizeof(seen->type) / sizeof(seen->type[0])) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "too many certificates");
    }
    seen->type[seen->n] = cs->key_type;
    seen->label[seen->n] = cs->label;
    seen->n++;
    /* override=1: each key type has its own slot, and we refused duplicates above. OpenSSL
     * takes its own references on the leaf, key and chain, so the set may go before ctx. */
    if (SSL_CTX_use_cert_and_key(ctx, cs->leaf, cs->key, cs->chain, 1) != 1) {
        moat_err_where(err, "%s", cs->label);
        MOAT_FAIL_SSL(err, MOAT_E_CERT, "OpenSSL refused certificate \"%s\" with key \"%s\"",
                      cs->label, cs->key_label);
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (!X509_digest(cs->leaf, EVP_sha256(), d, &dlen) || !EVP_DigestUpdate(md, d, dlen)) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot hash \"%s\"", cs->label);
    }
    return MOAT_RC_OK;
}

/*
 * Put every certificate set into `ctx`, refusing two of the same key type, and compute the
 * session ID context from the leaves: sessions then resume only under the same certificates, so
 * a ticket issued for one site is not accepted after SNI moves a connection to another site's
 * context (RFC 6066 §3 forbids resuming under a different name; same certificate is the closest
 * the server can check), while sites sharing a context share sessions. A context built after a
 * certificate swap has new leaves, so sessions of the old certificate do not resume under the
 * new one.
 */
static moat_rc load_certs(SSL_CTX *ctx, const struct moat_tls_opts *o, unsigned char sid[SID_LEN],
                          struct moat_err *err)
{
    if (o->nsets == 0 || o->sets == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "no certificate given (a TLS site needs at least one)");
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot start SHA-256");
    }
    moat_rc rc = MOAT_RC_OK;
    struct seen seen = {.n = 0};
    for (size_t i = 0; i < o->nsets && moat_ok(rc); i++) {
        /* The caller's sets outlive the call, so seen.label may point into them. */
        if (o->sets[i] == NULL) {
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "certificate set #%zu is missing", i + 1);
            break;
        }
        rc = use_set(ctx, o->sets[i], &seen, md, err);
    }
    unsigned int dn = 0;
    if (moat_ok(rc) && (!EVP_DigestFinal_ex(md, sid, &dn) || dn != SID_LEN)) {
        rc = moat_err_ssl(err, MOAT_E_INTERNAL, __FILE__, __LINE__, "cannot finish SHA-256");
    }
    EVP_MD_CTX_free(md);
    return rc;
}

static moat_rc apply_policy(SSL_CTX *ctx, struct moat_err *err)
{
    /* Security level 2 (112-bit: RSA >= 2048, no SHA-1 signatures) whatever the system's
     * openssl.cnf says, so the policy is the same on every host. */
    SSL_CTX_set_security_level(ctx, 2);
    if (!SSL_CTX_set_min_proto_version(ctx, MOAT_TLS_MIN_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, MOAT_TLS_MAX_VERSION)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot limit TLS versions to 1.2 and 1.3");
    }
    if (!SSL_CTX_set_cipher_list(ctx, policy_tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(ctx, policy_tls13_suites)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot set the cipher policy");
    }
    if (!SSL_CTX_set1_groups_list(ctx, policy_groups)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot set the key exchange groups %s", policy_groups);
    }
    /* Server preference: our list is ordered by strength and speed, clients' lists are not
     * always. No compression (CRIME), no renegotiation (RFC 5746 aside, it is a DoS lever and
     * TLS 1.3 removed it). SSL_OP_NO_TICKET stays off: we issue tickets when configured.
     * A client that closes without close_notify (most do) is an end, not an error: OpenSSL 3
     * would otherwise make it a fatal alert and drop the session from the cache, so that
     * client's next visit pays a full handshake. Truncation is the HTTP layer's to see (a
     * request body short of its length); RFC 5246 §7.2.1 no longer ties resumption to it. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | MOAT_TLS_COMMON_OPTIONS |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    /* SSL_OP_ENABLE_KTLS is left off for now: it needs socket BIOs, a kernel with the tls
     * module and an OpenSSL built with kTLS; tls/transport.c can turn it on once SSL_sendfile
     * is used. */
    /* RELEASE_BUFFERS: an idle keep-alive connection gives its 34 KiB of record buffers back.
     * PARTIAL_WRITE and ACCEPT_MOVING_WRITE_BUFFER: the non-blocking writer retries from a
     * buffer that may have been compacted or moved in between. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead: one recv() takes whatever the socket holds, instead of one for each record's
     * 5-byte header and one for its body (measured: 2.4 reads per keep-alive request down to
     * about 1.3). Safe with our loop, which always reads until SSL_read wants more before it
     * waits, so bytes OpenSSL holds are never forgotten behind an edge-triggered event. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* RFC 8446 §8 and §E.5: 0-RTT data can be replayed; HTTP handlers are not ready for that. */
    if (!SSL_CTX_set_max_early_data(ctx, 0)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot turn off early data");
    }
    return MOAT_RC_OK;
}

static moat_rc apply_sessions(SSL_CTX *ctx, const struct moat_tls_opts *o, struct moat_err *err)
{
    if (o->session_timeout_s < 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "session timeout must not be negative (got %ld)",
                  o->session_timeout_s);
    }
    if (o->session_timeout_s > 0) {
        SSL_CTX_set_timeout(ctx, o->session_timeout_s);
    }
    if (o->session_cache_size > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, (long)o->session_cache_size);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    /* Installed even without keys (then it refuses tickets): OpenSSL runs the ticket callback of
     * the context a connection started on, and after an SNI switch that callback must apply the
     * new site's choice instead of OpenSSL's own never-rotated per-context keys. */
    MOAT_TRY(moat_tls_tickets_install(o->tickets, ctx, err));
    /* Without keys, TLS 1.3 can still resume from the session cache ("stateful tickets"). */
    if (o->tickets == NULL && o->session_cache_size > 0 && !SSL_CTX_set_num_tickets(ctx, 1)) {
        MOAT_FAIL_SSL(err, MOAT_E_TLS, "cannot set the number of TLS 1.3 tickets");
    }
    return MOAT_RC_OK;
}

/* Sessions carry the client's verified identity: a session made under one client-auth policy
 * must not resume under another (a site that requires certificates must never accept a session
 * from a site that did not ask). Fold the policy into the session ID context. */
static void mix_client_auth(unsigned char sid[SID_LEN], const struct moat_tls_client_auth *a)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    unsigned char mode = (unsigned char)a->mode;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, sid, SID_LEN) != 1 || EVP_DigestUpdate(md, &mode, 1) != 1) {
        EVP_MD_CTX_free(md);
        memset(sid, 0xff, SID_LEN); /* still distinct from any policy-free context */
        return;
    }
    for (int i = 0; i < sk_X509_NAME_num(a->ca_names); i++) {
        const unsigned char *der = NULL;
        size_t derlen = 0;
        if (X509_NAME_get0_der(sk_X509_NAME_value(a->ca_names, i), &der, &derlen) == 1) {
            EVP_DigestUpdate(md, der, derlen);
        }
    }
    for (size_t i = 0; i < a->nallow; i++) {
        EVP_DigestUpdate(md, a->allow[i], strlen(a->allow[i]) + 1);
    }
    EVP_DigestUpdate(md, a->crl_digest, sizeof(a->crl_digest));
    if (EVP_DigestFinal_ex(md, out, &outlen) == 1 && outlen >= SID_LEN) {
        memcpy(sid, out, SID_LEN);
    }
    EVP_MD_CTX_free(md);
}

moat_rc moat_tls_ctx_new(const struct moat_tls_opts *o, SSL_CTX **out, struct moat_err *err)
{
    *out = NULL;
    if (pthread_once(&extra_once, extra_index_init) != 0 || extra_idx < 0) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot register TLS context data");
    }
    ERR_clear_error();
    struct ctx_extra *x = NULL;
    MOAT_TRY(build_extra(o, &x, err));
    SSL_CTX *ctx = SSL_CTX_new_ex(NULL, NULL, TLS_server_method());
    if (ctx == NULL) {
        free(x);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot create a TLS context");
    }
    if (!SSL_CTX_set_ex_data(ctx, extra_idx, x)) {
        free(x);
        SSL_CTX_free(ctx);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot attach data to the TLS context");
    }
    /* From here x belongs to ctx (freed by extra_free). */
    unsigned char sid[SID_LEN];
    moat_rc rc = apply_policy(ctx, err);
    if (moat_ok(rc)) {
        rc = load_certs(ctx, o, sid, err);
    }
    if (moat_ok(rc) && o->client_auth != NULL && o->client_auth->mode != MOAT_CLIENT_AUTH_OFF) {
        rc = moat_tls_client_auth_install(o->client_auth, ctx, err);
        if (moat_ok(rc)) {
            mix_client_auth(sid, o->client_auth);
        }
    }
    if (moat_ok(rc) && !SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid))) {
        rc = moat_err_ssl(err, MOAT_E_TLS, __FILE__, __LINE__, "cannot set session ID context");
    }
    if (moat_ok(rc)) {
        rc = apply_sessions(ctx, o, err);
    }
    if (!moat_ok(rc)) {
        SSL_CTX_free(ctx);
        return rc;
    }
    if (!o->no_alpn) {
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, x);
    }
    *out = ctx;
    return MOAT_RC_OK;
}
