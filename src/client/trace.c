/*
 * trace.c: recording TLS messages and raw byte counts during one client connection.
 *
 * The callbacks only append facts; they never decide anything, because OpenSSL calls them in
 * the middle of its state machine (a failure there would be a failure of the handshake).
 */
#include "client/trace.h"

#include "core/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>

double moat_trace_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void moat_trace_init(struct moat_trace *t)
{
    memset(t, 0, sizeof(*t));
    t->t0_ms = moat_trace_now_ms();
}

void moat_trace_clear(struct moat_trace *t)
{
    free(t->msgs);
    t->msgs = NULL;
    t->n = t->cap = 0;
}

double moat_trace_elapsed(const struct moat_trace *t)
{
    return moat_trace_now_ms() - t->t0_ms;
}

static struct moat_trace_msg *push(struct moat_trace *t)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        struct moat_trace_msg *m = realloc(t->msgs, cap * sizeof(*m));
        if (m == NULL) {
            t->nomem = 1;
            return NULL;
        }
        t->msgs = m;
        t->cap = cap;
    }
    struct moat_trace_msg *m = &t->msgs[t->n++];
    memset(m, 0, sizeof(*m));
    m->ms = moat_trace_elapsed(t);
    m->hs_type = -1;
    return m;
}

/* RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256 of
 * "HelloRetryRequest". */
static const unsigned char hrr_random[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C};

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    struct moat_trace *t = arg;
    const unsigned char *b = buf;
    if (content_type == SSL3_RT_HEADER && !write_p && len >= 5 &&
        b[0] == SSL3_RT_CHANGE_CIPHER_SPEC) {
        /* OpenSSL 3.0 reports a received ChangeCipherSpec only as a record header (s_client
         * -msg shows the same gap); it crossed all the same, so it goes in the list. */
        struct moat_trace_msg *c = push(t);
        if (c != NULL) {
            c->dir = MOAT_TRACE_IN;
            c->content_type = SSL3_RT_CHANGE_CIPHER_SPEC;
            c->len = ((size_t)b[3] << 8) | b[4];
            c->from_header = 1;
        }
        return;
    }
    if (content_type != SSL3_RT_CHANGE_CIPHER_SPEC && content_type != SSL3_RT_ALERT &&
        content_type != SSL3_RT_HANDSHAKE) {
        return; /* other record headers and TLS 1.3 inner content types: not messages */
    }
    if (content_type == SSL3_RT_CHANGE_CIPHER_SPEC && !write_p && t->n > 0 &&
        t->msgs[t->n - 1].from_header &&
        t->msgs[t->n - 1].content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
        return; /* a library that does report it: already listed from its header */
    }
    struct moat_trace_msg *m = push(t);
    if (m == NULL) {
        return;
    }
    m->dir = write_p ? MOAT_TRACE_OUT : MOAT_TRACE_IN;
    m->content_type = content_type;
    m->len = len;
    if (content_type == SSL3_RT_ALERT && len >= 2) {
        m->alert_level = b[0];
        m->alert_desc = b[1];
    } else if (content_type == SSL3_RT_HANDSHAKE && len >= 1) {
        m->hs_type = b[0];
        /* type(1) length(3) legacy_version(2) random(32) */
        if (b[0] == SSL3_MT_SERVER_HELLO && len >= 38 &&
            memcmp(b + 6, hrr_random, sizeof(hrr_random)) == 0) {
            m->hrr = 1;
        }
    }
}

static long bio_cb(BIO *bio, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                   size_t *processed)
{
    (void)len;
    (void)argi;
    (void)argl;
    struct moat_trace *t = (struct moat_trace *)BIO_get_callback_arg(bio);
    if (t == NULL || ret <= 0 || processed == NULL) {
        return ret;
    }
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        moat_trace_note_plain_in(t, argp, *processed);
    } else if (oper == (BIO_CB_WRITE | BIO_CB_RETURN)) {
        t->bytes_out += *processed;
    }
    return ret;
}

void moat_trace_note_plain_in(struct moat_trace *t, const void *p, size_t n)
{
    if (n > 0 && t->nfirst_in == 0) {
        t->first_in_ms = moat_trace_elapsed(t);
    }
    size_t take = MOAT_TRACE_FIRST_BYTES - t->nfirst_in;
    if (take > n) {
        take = n;
    }
    if (take > 0 && p != NULL) {
        memcpy(t->first_in + t->nfirst_in, p, take);
        t->nfirst_in += take;
    }
    t->bytes_in += n;
}

void moat_trace_note_plain_out(struct moat_trace *t, size_t n)
{
    t->bytes_out += n;
}

/*
 * A plain connection has no BIO to hook: the recorder sits in the transport instead, a plain
 * TCP transport whose reads and writes are noted on the way through (impl: the recorder,
 * borrowed). Whoever reads the connection, the client's HTTP session included, is then traced
 * without knowing it, as TLS is through its BIOs.
 */
static moat_rc traced_handshake(struct moat_transport *io, struct moat_err *err)
{
    return moat_transport_plain_ops.handshake(io, err);
}

static moat_rc traced_read(struct moat_transport *io, void *buf, size_t len, size_t *n)
{
    moat_rc rc = moat_transport_plain_ops.read(io, buf, len, n);
    if (moat_ok(rc)) {
        moat_trace_note_plain_in(io->impl, buf, *n);
    }
    return rc;
}

static moat_rc traced_write(struct moat_transport *io, const void *buf, size_t len, size_t *n)
{
    moat_rc rc = moat_transport_plain_ops.write(io, buf, len, n);
    if (moat_ok(rc)) {
        moat_trace_note_plain_out(io->impl, *n);
    }
    return rc;
}

static void traced_idle(struct moat_transport *io)
{
    moat_transport_plain_ops.idle(io);
}

static void traced_shutdown(struct moat_transport *io)
{
    moat_transport_plain_ops.shutdown(io);
}

static int traced_finish(struct moat_transport *io)
{
    return moat_transport_plain_ops.finish(io);
}

static void traced_close(struct moat_transport *io)
{
    moat_transport_plain_ops.close(io);
}

static int traced_pending(const struct moat_transport *io)
{
    return moat_transport_plain_ops.pending(io);
}

static const struct moat_transport_ops traced_plain_ops = {
    .handshake = traced_handshake,
    .read = traced_read,
    .write = traced_write,
    .idle = traced_idle,
    .shutdown = traced_shutdown,
    .finish = traced_finish,
    .close = traced_close,
    .pending = traced_pending,
};

void moat_trace_attach_plain(struct moat_trace *t, struct moat_transport *io)
{
    if (moat_transport_is_plain(io)) {
        io->ops = &traced_plain_ops;
        io->impl = t;
    }
}

void moat_trace_attach(struct moat_trace *t, SSL *ssl)
{
    SSL_set_msg_callback(ssl, msg_cb);
    SSL_set_msg_callback_arg(ssl, t);
    BIO *r = SSL_get_rbio(ssl);
    BIO *w = SSL_get_wbio(ssl);
    if (r != NULL) {
        BIO_set_callback_ex(r, bio_cb);
        BIO_set_callback_arg(r, (char *)t);
    }
    if (w != NULL && w != r) {
        BIO_set_callback_ex(w, bio_cb);
        BIO_set_callback_arg(w, (char *)t);
    }
}

void moat_trace_finish(struct moat_trace *t, int version)
{
    int protected[2] = {0, 0};
    int finished[2] = {0, 0};
    for (size_t i = 0; i < t->n; i++) {
        struct moat_trace_msg *m = &t->msgs[i];
        int d = m->dir;
        m->post_handshake = finished[0] && finished[1];
        if (version == TLS1_3_VERSION) {
            if (m->content_type != SSL3_RT_CHANGE_CIPHER_SPEC) {
                m->encrypted = protected[d];
            }
            if (m->content_type == SSL3_RT_HANDSHAKE && m->hs_type == SSL3_MT_SERVER_HELLO &&
                !m->hrr) {
                /* Both directions switch to handshake keys right after ServerHello. */
                protected[0] = protected[1] = 1;
            }
        } else {
            m->encrypted = protected[d];
            if (m->content_type == SSL3_RT_CHANGE_CIPHER_SPEC) {
                protected[d] = 1;
            }
        }
        if (m->content_type == SSL3_RT_HANDSHAKE && m->hs_type == SSL3_MT_FINISHED) {
            finished[d] = 1;
        }
    }
}

const struct moat_trace_msg *moat_trace_find_hs(const struct moat_trace *t, enum moat_trace_dir d,
                                                int hs_type)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct moat_trace_msg *m = &t->msgs[i];
        if (m->dir == d && m->content_type == SSL3_RT_HANDSHAKE && m->hs_type == hs_type) {
            return m;
        }
    }
    return NULL;
}

const struct moat_trace_msg *moat_trace_find_alert(const struct moat_trace *t,
                                                   enum moat_trace_dir d)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct moat_trace_msg *m = &t->msgs[i];
        if (m->dir == d && m->content_type == SSL3_RT_ALERT) {
            return m;
        }
    }
    return NULL;
}

const char *moat_trace_hs_name(int hs_type, int hrr, char *buf, size_t buflen)
{
    switch (hs_type) {
    case 0:
        return "HelloRequest";
    case 1:
        return "ClientHello";
    case 2:
        return hrr ? "HelloRetryRequest" : "ServerHello";
    case 4:
        return "NewSessionTicket";
    case 5:
        return "EndOfEarlyData";
    case 8:
        return "EncryptedExtensions";
    case 11:
        return "Certificate";
    case 12:
        return "ServerKeyExchange";
    case 13:
        return "CertificateRequest";
    case 14:
        return "ServerHelloDone";
    case 15:
        return "CertificateVerify";
    case 16:
        return "ClientKeyExchange";
    case 20:
        return "Finished";
    case 22:
        return "CertificateStatus";
    case 24:
        return "KeyUpdate";
    case 254:
        return "MessageHash";
    default:
        snprintf(buf, buflen, "handshake type %d", hs_type);
        return buf;
    }
}

struct alert_row {
    int desc;
    const char *name;
    const char *words;
};

/* RFC 8446 §6.2 (and RFC 5246 §7.2 for the ones TLS 1.3 dropped). */
static const struct alert_row alerts[] = {
    {0, "close_notify", NULL},
    {10, "unexpected_message", "a message arrived that the protocol does not allow at this point"},
    {20, "bad_record_mac", "a record failed its integrity check"},
    {22, "record_overflow", NULL},
    {40, "handshake_failure", "no acceptable set of security parameters"},
    {42, "bad_certificate", "a certificate was corrupt or its signature did not verify"},
    {43, "unsupported_certificate", "a certificate was of an unsupported type"},
    {44, "certificate_revoked", "a certificate was revoked by its issuer"},
    {45, "certificate_expired", "a certificate has expired or is not yet valid"},
    {46, "certificate_unknown", "a certificate was refused for another reason"},
    {47, "illegal_parameter", "a field in the handshake was out of range or inconsistent"},
    {48, "unknown_ca", "a certificate's issuer (CA) is not trusted"},
    {49, "access_denied", "the certificate is valid but access is denied"},
    {50, "decode_error", "a message could not be decoded"},
    {51, "decrypt_error", "a signature or the Finished check failed"},
    {70, "protocol_version", "the offered TLS version is not supported"},
    {71, "insufficient_security", "the offered parameters are too weak for the peer"},
    {80, "internal_error", "the peer failed for a reason of its own"},
    {86, "inappropriate_fallback", NULL},
    {90, "user_canceled", NULL},
    {100, "no_renegotiation", NULL},
    {109, "missing_extension", "a required extension was missing"},
    {110, "unsupported_extension", NULL},
    {112, "unrecognized_name", "the server has no site for the name sent in SNI"},
    {113, "bad_certificate_status_response", NULL},
    {115, "unknown_psk_identity", NULL},
    {116, "certificate_required", "a client certificate is required"},
    {120, "no_application_protocol", "no ALPN protocol in common"},
};

const char *moat_trace_alert_name(int desc, char *buf, size_t buflen)
{
    for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        if (alerts[i].desc == desc) {
            return alerts[i].name;
        }
    }
    snprintf(buf, buflen, "alert %d", desc);
    return buf;
}

const char *moat_trace_alert_words(int desc)
{
    for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        if (alerts[i].desc == desc) {
            return alerts[i].words;
        }
    }
    return NULL;
}
