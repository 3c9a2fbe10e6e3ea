/*
 * get.c: one client run, hop by hop (a hop is one connection and one request; redirects add
 * hops), and the classification of a failure into one cause with words. A hop's connection is
 * an HTTP/1.1 client session (http1/client.h) over a transport: plain, or TLS from
 * tls/transport.c over the one client policy's SSL.
 *
 * Classification looks at everything recorded, not only at OpenSSL's last error: the alerts
 * each side sent and when (a TLS 1.3 server refuses a client certificate only after the
 * client's handshake is over, so the alert shows up while reading the response), whether a
 * CertificateRequest came, the first bytes the server sent (an "HTTP/" answer to a ClientHello),
 * and the verify callback's record. Each rule cites what it relies on.
 */
#include "client/get.h"

#include "client/conn.h"
#include "client/h2.h"
#include "client/http.h"
#include "client/internal.h"
#include "client/issuer.h"
#include "client/tls.h"
#include "client/verify.h"
#include "tls/transport.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

void moat_client_opts_init(struct moat_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 30000;
    o->max_redirs = 10;
}

void moat_client_opts_clear(struct moat_client_opts *o)
{
    free(o->body);
    o->body = NULL;
}

const char *moat_client_stage_name(enum moat_client_stage s)
{
    switch (s) {
    case MOAT_STAGE_DNS:
        return "DNS";
    case MOAT_STAGE_TCP:
        return "TCP";
    case MOAT_STAGE_TLS:
        return "TLS";
    case MOAT_STAGE_HTTP:
        return "HTTP";
    case MOAT_STAGE_DONE:
        return "done";
    default:
        return "?";
    }
}

static void set_cause(struct moat_client_hop *h, enum moat_client_cause c, const char *fmt, ...)
    MOAT_PRINTF(3, 4);

static void set_cause(struct moat_client_hop *h, enum moat_client_cause c, const char *fmt, ...)
{
    h->cause = c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->detail, sizeof(h->detail), fmt, ap);
    va_end(ap);
}

/* The first line of what the server sent, printable, for "it answered with ..." messages. */
static void first_line(const struct moat_trace *t, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < t->nfirst_in && o + 1 < outlen; i++) {
        unsigned char c = t->first_in[i];
        if (c == '\r' || c == '\n') {
            break;
        }
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
    }
    out[o] = '\0';
}

/* An HTTP answer: a status line, or a bare HTML error page (HTTP/0.9 style, as Python's
 * http.server sends to a request line it cannot read). */
static int starts_http(const struct moat_trace *t)
{
    return (t->nfirst_in >= 5 && memcmp(t->first_in, "HTTP/", 5) == 0) ||
           (t->nfirst_in >= 2 && t->first_in[0] == '<' &&
            (t->first_in[1] == '!' || t->first_in[1] == 'h' || t->first_in[1] == 'H'));
}

/* RFC 8446 §5.1: a record starts with a content type 20..24 and legacy_version 0x03 0x0X. */
static int starts_tls(const struct moat_trace *t)
{
    return t->nfirst_in >= 2 && t->first_in[0] >= 20 && t->first_in[0] <= 24 && t->first_in[1] == 3;
}

static const struct moat_trace_msg *last_in(const struct moat_trace *t)
{
    for (size_t i = t->n; i > 0; i--) {
        if (t->msgs[i - 1].dir == MOAT_TRACE_IN) {
            return &t->msgs[i - 1];
        }
    }
    return NULL;
}

static const char *version_words(int v)
{
    switch (v) {
    case TLS1_3_VERSION:
        return "TLS 1.3";
    case TLS1_2_VERSION:
        return "TLS 1.2";
    default:
        return "TLS 1.2";
    }
}

/* A certificate alert from the server is about the client's certificate: what it means then
 * (the generic words of trace.c cover both directions). */
static const char *client_cert_alert_words(int desc)
{
    switch (desc) {
    case SSL3_AD_BAD_CERTIFICATE:
        return "it could not use or verify the client certificate";
    case SSL3_AD_UNSUPPORTED_CERTIFICATE:
        return "it does not accept this type of client certificate";
    case SSL3_AD_CERTIFICATE_REVOKED:
        return "it says the client certificate is revoked";
    case SSL3_AD_CERTIFICATE_EXPIRED:
        return "it finds the client certificate expired or not yet valid";
    case TLS1_AD_UNKNOWN_CA:
        return "it does not trust the CA that issued the client certificate";
    case TLS1_AD_ACCESS_DENIED:
        return "it accepts the client certificate but denies access";
    case TLS1_AD_DECRYPT_ERROR:
        return "the client's proof of its key (CertificateVerify) did not verify";
    case SSL3_AD_CERTIFICATE_UNKNOWN:
    default:
        return "it refuses the client certificate for a reason of its own";
    }
}

/* The server's alert ended it: what that alert means here, for the trace's note. */
static void gloss_in(struct moat_client_hop *h, const char *prefix, const char *words)
{
    moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss), "%s%s", prefix, words);
    h->alert_gloss_dir = MOAT_TRACE_IN;
}

/*
 * A fatal alert from the server, seen during the handshake or right after it (TLS 1.3 servers
 * check client certificates after the client's Finished, RFC 8446 §4.4.2.4). Returns 1 when it
 * explained the failure.
 */
static int classify_alert(struct moat_client_hop *h, const struct moat_client_opts *o)
{
    const struct moat_trace_msg *a = moat_trace_find_alert(&h->trace, MOAT_TRACE_IN);
    if (a == NULL || a->alert_desc == 0) {
        return 0;
    }
    char nb[24];
    const char *name = moat_trace_alert_name(a->alert_desc, nb, sizeof(nb));
    const char *words = moat_trace_alert_words(a->alert_desc);
    int server_hello = moat_trace_find_hs(&h->trace, MOAT_TRACE_IN, SSL3_MT_SERVER_HELLO) != NULL;
    /* RFC 8446 §4.4.2.4: the client's handshake is over before the server has checked its
     * certificate, so the refusal comes as the answer to the request. */
    static const char late[] = " (TLS 1.3 servers check client certificates after the "
                               "handshake, so the refusal came in place of the response)";
    switch (a->alert_desc) {
    case SSL3_AD_HANDSHAKE_FAILURE:
        if (h->cert_requested && !h->client_cert_sent) {
            /* RFC 5246 §7.4.6: a TLS 1.2 server that insists answers an empty Certificate with
             * handshake_failure. */
            set_cause(h, MOAT_CC_CLIENT_CERT_REQUIRED,
                      "the server asked for a client certificate (CertificateRequest), none was "
                      "sent, and it ended the handshake with alert handshake_failure");
            gloss_in(h, "", "the server requires a client certificate and none was sent");
            return 1;
        }
        if (!server_hello) {
            set_cause(h, MOAT_CC_NO_COMMON_CIPHER,
                      "the server answered the ClientHello with alert handshake_failure: it "
                      "accepts none of the offered cipher suites (TLS 1.3: AES-GCM, "
                      "ChaCha20-Poly1305; TLS 1.2: %s) or groups (%s)",
                      moat_tls_client_ciphers12, moat_tls_client_groups);
            return 1;
        }
        break;
    case TLS1_AD_INSUFFICIENT_SECURITY:
        set_cause(h, MOAT_CC_NO_COMMON_CIPHER,
                  "the server answered with alert insufficient_security: it wants stronger "
                  "parameters than the ones offered (TLS 1.2: %s; groups %s)",
                  moat_tls_client_ciphers12, moat_tls_client_groups);
        return 1;
    case TLS1_AD_PROTOCOL_VERSION: {
        const char *lo = version_words(o->tls_min ? o->tls_min : TLS1_2_VERSION);
        const char *hi = version_words(o->tls_max ? o->tls_max : TLS1_3_VERSION);
        set_cause(h, MOAT_CC_NO_COMMON_VERSION,
                  "the server refused the offered TLS version%s (%s%s%s) with alert "
                  "protocol_version",
                  strcmp(lo, hi) == 0 ? "" : "s", lo, strcmp(lo, hi) == 0 ? "" : " to ",
                  strcmp(lo, hi) == 0 ? "" : hi);
        return 1;
    }
    case TLS13_AD_CERTIFICATE_REQUIRED:
        set_cause(h, MOAT_CC_CLIENT_CERT_REQUIRED,
                  "the server asked for a client certificate (CertificateRequest), none was "
                  "sent, and it closed with alert certificate_required%s",
                  a->post_handshake ? late : "");
        gloss_in(h, "", "the server requires a client certificate and none was sent");
        return 1;
    case SSL3_AD_BAD_CERTIFICATE:
    case SSL3_AD_UNSUPPORTED_CERTIFICATE:
    case SSL3_AD_CERTIFICATE_REVOKED:
    case SSL3_AD_CERTIFICATE_EXPIRED:
    case SSL3_AD_CERTIFICATE_UNKNOWN:
    case TLS1_AD_UNKNOWN_CA:
    case TLS1_AD_ACCESS_DENIED:
    case TLS1_AD_DECRYPT_ERROR:
        if (h->client_cert_sent) {
            const char *cw = client_cert_alert_words(a->alert_desc);
            set_cause(h, MOAT_CC_CLIENT_CERT_REJECTED,
                      "the server refused the client certificate%s%s with alert %s: %s%s",
                      o->cert ? " from " : "", o->cert ? o->cert : "", name, cw,
                      a->post_handshake ? late : "");
            gloss_in(h, "the server refuses the client certificate: ", cw);
            return 1;
        }
        if (h->cert_requested) {
            set_cause(h, MOAT_CC_CLIENT_CERT_REQUIRED,
                      "the server asked for a client certificate, none was sent, and it closed "
                      "with alert %s",
                      name);
            gloss_in(h, "", "the server requires a client certificate and none was sent");
            return 1;
        }
        break;
    default:
        break;
    }
    set_cause(h, MOAT_CC_TLS_ALERT, "the server sent alert %s%s%s%s", name, words ? " (" : "",
              words ? words : "", words ? ")" : "");
    return 1;
}

/* A failed handshake: rc from moat_client_tls_handshake, reason its words. */
static void classify_tls(struct moat_client_hop *h, const struct moat_client_opts *o, moat_rc rc,
                         unsigned long ssl_err, const char *reason)
{
    char line[MOAT_TRACE_FIRST_BYTES + 1];
    first_line(&h->trace, line, sizeof(line));
    if (h->verify_code != 0 && !o->insecure) {
        h->cause = MOAT_CC_CERT; /* detail filled by moat_client_verify_collect */
        return;
    }
    if (starts_http(&h->trace)) {
        set_cause(h, MOAT_CC_SERVER_SPEAKS_HTTP,
                  "the server answered the TLS ClientHello with \"%s\": port %u speaks plain "
                  "HTTP",
                  line, h->url.port);
        return;
    }
    if (rc.kind == MOAT_E_LIMIT) {
        const struct moat_trace_msg *m = last_in(&h->trace);
        if (h->trace.bytes_in == 0) {
            set_cause(h, MOAT_CC_TIMEOUT,
                      "the server accepted the TCP connection but did not answer the ClientHello "
                      "within %.1f s (a TLS port? a stuck server?)",
                      o->timeout_ms / 1000.0);
        } else {
            char nb[24];
            set_cause(h, MOAT_CC_TIMEOUT, "the TLS handshake stalled after the server's %s",
                      m ? moat_trace_hs_name(m->hs_type, m->hrr, nb, sizeof(nb)) : "answer");
        }
        return;
    }
    if (h->trace.nfirst_in > 0 && !starts_tls(&h->trace)) {
        set_cause(h, MOAT_CC_TLS_OTHER,
                  "the server's answer is not TLS: it starts with \"%s\" (another protocol on "
                  "port %u?)",
                  line, h->url.port);
        return;
    }
    if (classify_alert(h, o)) {
        return;
    }
    const struct moat_trace_msg *sent = moat_trace_find_alert(&h->trace, MOAT_TRACE_OUT);
    int reason_code = ERR_GET_REASON(ssl_err);
    if (reason_code == SSL_R_UNSUPPORTED_PROTOCOL ||
        (sent != NULL && sent->alert_desc == TLS1_AD_PROTOCOL_VERSION)) {
        set_cause(h, MOAT_CC_NO_COMMON_VERSION,
                  "the server chose a TLS version outside %s to %s, which moat refuses "
                  "(TLS 1.0 and 1.1 are deprecated, RFC 8996)",
                  version_words(o->tls_min ? o->tls_min : TLS1_2_VERSION),
                  version_words(o->tls_max ? o->tls_max : TLS1_3_VERSION));
        return;
    }
    if (rc.kind == MOAT_E_CLOSED || h->trace.nfirst_in == 0) {
        set_cause(h, MOAT_CC_CLOSED,
                  "the server closed the connection right after the ClientHello without a TLS "
                  "answer (%s)",
                  reason && reason[0] ? reason : "no reason given");
        return;
    }
    set_cause(h, MOAT_CC_TLS_OTHER, "%s", reason && reason[0] ? reason : "the handshake failed");
}

/*
 * http:// to a port that may speak TLS: connect again and try a handshake (no verification,
 * nothing sent after it). Returns 1 when a ServerHello came back.
 */
static int probe_tls(const struct moat_client_hop *h, const struct moat_client_opts *o)
{
    struct moat_client_hop *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return 0;
    }
    p->url = h->url;
    p->url.https = 1;
    moat_trace_init(&p->trace);
    double deadline = p->trace.t0_ms + (o->timeout_ms < 3000 ? o->timeout_ms : 3000);
    int fd = -1, ok = 0;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (!moat_ok(moat_client_conn_open(p, o, deadline, &fd, NULL))) {
        goto out;
    }
    if (!moat_ok(moat_client_tls_probe_ctx_new(&ctx, NULL)) ||
        !moat_ok(moat_tls_client_ssl_new(ctx, h->url.host, &ssl, NULL)) ||
        SSL_set_fd(ssl, fd) != 1) {
        goto out;
    }
    moat_trace_attach(&p->trace, ssl);
    unsigned long e = 0;
    moat_rc hrc = moat_client_tls_handshake(ssl, fd, deadline, &e, NULL);
    (void)hrc; /* what matters is whether a ServerHello came */
    ok = moat_trace_find_hs(&p->trace, MOAT_TRACE_IN, SSL3_MT_SERVER_HELLO) != NULL;
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0) {
        close(fd);
    }
    moat_trace_clear(&p->trace);
    free(p);
    ERR_clear_error();
    return ok;
}

/* The HTTP step failed (rc) or answered with an error status: refine the cause. */
static void classify_http(struct moat_client_hop *h, const struct moat_client_opts *o, int failed)
{
    if (!h->url.https) {
        char line[MOAT_TRACE_FIRST_BYTES + 1];
        first_line(&h->trace, line, sizeof(line));
        if (starts_tls(&h->trace)) {
            set_cause(h, MOAT_CC_SERVER_SPEAKS_TLS,
                      "the server answered the plain HTTP request with a TLS record (%s, bytes "
                      "%02x %02x): port %u speaks TLS",
                      h->trace.first_in[0] == 21 ? "an alert" : "a handshake", h->trace.first_in[0],
                      h->trace.first_in[1], h->url.port);
            return;
        }
        int suspicious = (failed && h->cause == MOAT_CC_CLOSED) || (!failed && h->status == 400);
        if (suspicious && probe_tls(h, o)) {
            set_cause(h, MOAT_CC_SERVER_SPEAKS_TLS,
                      "the server %s the plain HTTP request, and a TLS handshake on the same "
                      "port succeeds: port %u speaks TLS",
                      failed ? "closed the connection without answering" : "answered 400 to",
                      h->url.port);
            return;
        }
        return;
    }
    if (failed) {
        /* TLS 1.3: a refused client certificate arrives as an alert after our Finished. */
        if (h->cause != MOAT_CC_TIMEOUT && h->cause != MOAT_CC_LOCAL) {
            (void)classify_alert(h, o);
        }
        return;
    }
    /* Servers that verify client certificates themselves (nginx's `ssl_verify_client on`)
     * finish the handshake and answer 400 (their 495/496) instead of an alert. */
    int cert_status = h->status == 400 || h->status == 403 || h->status == 495 || h->status == 496;
    if (h->cert_requested && cert_status && !h->client_cert_sent) {
        set_cause(h, MOAT_CC_CLIENT_CERT_REQUIRED,
                  "the server asked for a client certificate (CertificateRequest), none was "
                  "sent, and it answered %d %s",
                  h->status, h->reason);
        return;
    }
    if (h->cert_requested && cert_status && h->client_cert_sent &&
        memmem(h->body_start, h->nbody_start, "ertificate", 10) != NULL) {
        set_cause(h, MOAT_CC_CLIENT_CERT_REJECTED,
                  "the server took the client certificate but answered %d %s about it", h->status,
                  h->reason);
    }
}

struct hop_req {
    const char *method;
    const char *body;
    size_t body_len;
};

static int client_cert_sent(const struct moat_trace *t)
{
    /* An empty Certificate is 4 (header) + 3 (TLS 1.2 list) or + 1 + 3 (TLS 1.3 context and
     * list) bytes; anything longer carries a certificate. */
    for (size_t i = 0; i < t->n; i++) {
        const struct moat_trace_msg *m = &t->msgs[i];
        if (m->dir == MOAT_TRACE_OUT && m->content_type == SSL3_RT_HANDSHAKE &&
            m->hs_type == SSL3_MT_CERTIFICATE && m->len > 8) {
            return 1;
        }
    }
    return 0;
}

/*
 * OpenSSL reads a record header (5 bytes) before it gives up on an answer that is not TLS: read
 * a little more of it straight from the socket, so the trace can quote the server's first line.
 */
static void more_first_bytes(int fd, struct moat_trace *t)
{
    if (t->nfirst_in == 0 || (t->first_in[0] >= 20 && t->first_in[0] <= 24)) {
        return;
    }
    double deadline = moat_trace_now_ms() + 200;
    while (t->nfirst_in < MOAT_TRACE_FIRST_BYTES) {
        if (!moat_ok(moat_client_conn_wait(fd, 0, deadline))) {
            return;
        }
        unsigned char buf[MOAT_TRACE_FIRST_BYTES];
        ssize_t n = recv(fd, buf, MOAT_TRACE_FIRST_BYTES - t->nfirst_in, MSG_DONTWAIT);
        if (n <= 0) {
            return;
        }
        moat_trace_note_plain_in(t, buf, (size_t)n);
    }
}

/* The session a later connection to the same host and port may offer (--resume, redirects). */
struct session_slot {
    SSL_SESSION *sess; /* owned */
    char key[MOAT_CLIENT_HOST_MAX + 16];
    int from; /* 1-based connection it came from */
};

static void session_key(const struct moat_client_hop *h, char *out, size_t outlen)
{
    moat_client__fmt(out, outlen, "%s:%u", h->url.host, h->url.port);
}

static moat_rc run_hop(const struct moat_client_opts *o, struct moat_client_trust *trust,
                       SSL_CTX *ctx, const struct hop_req *hr, moat_client_body_cb cb, void *arg,
                       struct moat_client_hop *h, int number, struct session_slot *slot,
                       struct moat_err *err)
{
    char key[sizeof(slot->key)];
    session_key(h, key, sizeof(key));
    moat_trace_init(&h->trace);
    moat_client_url_format(&h->url, h->url_text, sizeof(h->url_text));
    double deadline = h->trace.t0_ms + o->timeout_ms;
    int fd = -1;
    moat_rc rc = moat_client_conn_open(h, o, deadline, &fd, err);
    if (!moat_ok(rc)) {
        h->total_ms = moat_trace_elapsed(&h->trace);
        return rc;
    }
    struct moat_h1c conn; /* the connection: owns fd, and its transport */
    moat_client_http_open(&conn, fd);
    SSL *ssl = NULL; /* borrowed from conn's transport when the URL is https */
    struct moat_client_vrec v = {.insecure = o->insecure};
    if (h->url.https) {
        h->stage = MOAT_STAGE_TLS;
        rc = moat_tls_transport_client(&conn.tr, fd, ctx, h->url.host, err);
        if (!moat_ok(rc)) {
            h->cause = MOAT_CC_LOCAL;
            goto out;
        }
        ssl = moat_tls_transport_ssl(&conn.tr);
        if (!h->url.host_ip) { /* moat_tls_client_ssl_new sent SNI */
            moat_client__fmt(h->sni, sizeof(h->sni), "%s", h->url.host);
        }
        rc = moat_client_verify_ssl(ssl, &v, err);
        if (!moat_ok(rc)) {
            h->cause = MOAT_CC_LOCAL;
            goto out;
        }
        /* Only to the host and port the session came from: a ticket names its server. */
        if (slot->sess != NULL && strcmp(slot->key, key) == 0 &&
            SSL_set_session(ssl, slot->sess) == 1) {
            h->resume_offered = slot->from;
        }
        moat_trace_attach(&h->trace, ssl);
        h->tls_start_ms = moat_trace_elapsed(&h->trace);
        unsigned long ssl_err = 0;
        struct moat_err herr = {0};
        rc = moat_client_tls_handshake(ssl, fd, deadline, &ssl_err, &herr);
        h->tls_ms = moat_trace_elapsed(&h->trace) - h->tls_start_ms;
        moat_client_tls_facts(ssl, h);
        moat_trace_finish(&h->trace, h->version);
        (void)moat_client_verify_collect(ssl, &v, trust, time(NULL), h);
        h->cert_requested =
            moat_trace_find_hs(&h->trace, MOAT_TRACE_IN, SSL3_MT_CERTIFICATE_REQUEST) != NULL;
        h->client_cert_sent = client_cert_sent(&h->trace);
        if (h->resumed) {
            /* The session remembers the first connection's chain; nothing crossed this time. */
            h->nsent = h->npath = 0;
            h->path_complete = 0;
        }
        if (!moat_ok(rc)) {
            more_first_bytes(fd, &h->trace);
            moat_client__fmt(h->ssl_reason, sizeof(h->ssl_reason), "%s", herr.msg);
            classify_tls(h, o, rc, ssl_err, herr.msg);
            rc = moat_err_set(err, h->cause == MOAT_CC_CERT ? MOAT_E_CERT : MOAT_E_TLS, __FILE__,
                              __LINE__, "%s", h->detail);
            goto out;
        }
        h->tls_done = 1;
    }
    struct moat_buf head;
    moat_buf_init(&head, 256 * 1024);
    struct moat_client_req rq = {
        .method = hr->method,
        .url = &h->url,
        .headers = o->headers,
        .nheaders = o->nheaders,
        .body = hr->body,
        .body_len = hr->body_len,
        .body_is_form = o->body_is_form,
        .follow = o->follow,
    };
    rc = moat_client_http_build(&rq, &head, err);
    if (!moat_ok(rc)) {
        h->cause = rc.kind == MOAT_E_USAGE ? MOAT_CC_USAGE : MOAT_CC_LOCAL;
        moat_client__fmt(h->detail, sizeof(h->detail), "%s", err ? err->msg : "bad request");
        moat_buf_clear(&head);
        goto out;
    }
    /* The head was built for its checks of -H; HTTP/2 sends the same fields as its own. */
    if (strcmp(h->alpn, "h2") == 0) {
        rc = moat_client_h2_exchange(&conn.tr, deadline, &rq, cb, arg, h, err);
    } else {
        rc = moat_client_http_exchange(&conn, deadline, &head, &rq, cb, arg, h, err);
    }
    moat_buf_clear(&head);
    if (ssl != NULL) {
        h->cert_requested |=
            moat_trace_find_hs(&h->trace, MOAT_TRACE_IN, SSL3_MT_CERTIFICATE_REQUEST) != NULL;
        moat_trace_finish(&h->trace, h->version);
    }
    if (!moat_ok(rc)) {
        classify_http(h, o, 1);
        moat_err_set(err, rc.kind, __FILE__, __LINE__, "%s", h->detail);
        goto out;
    }
    h->stage = MOAT_STAGE_DONE;
    h->cause = h->status >= 400 ? MOAT_CC_HTTP_STATUS : MOAT_CC_OK;
    if (h->status >= 400) {
        set_cause(h, MOAT_CC_HTTP_STATUS, "the server answered %d %s", h->status, h->reason);
        classify_http(h, o, 0);
    }
out:
    if (ssl != NULL && h->tls_done) {
        /* TLS 1.3 tickets arrive after the handshake: the session is taken after the answer. */
        SSL_SESSION *s = SSL_get1_session(ssl);
        if (s != NULL && SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(slot->sess);
            slot->sess = s;
            moat_client__fmt(slot->key, sizeof(slot->key), "%s", key);
            slot->from = number;
        } else {
            SSL_SESSION_free(s);
        }
    }
    if (ssl != NULL) {
        moat_transport_shutdown(&conn.tr);
        /* Again, so the close_notify just sent is marked like the rest. */
        moat_trace_finish(&h->trace, h->version);
    }
    moat_h1c_close(&conn);
    h->total_ms = moat_trace_elapsed(&h->trace);
    if (h->verify_code != 0 && !h->resumed) {
        /* After the connection, so its own timings stay its own; within its deadline. */
        double limit = moat_trace_now_ms() + MOAT_CLIENT_AIA_TIME_MS;
        moat_client_issuer_diagnose(&v, trust, o, limit < deadline ? limit : deadline, h);
        if (h->cause == MOAT_CC_CERT) {
            rc = moat_err_set(err, MOAT_E_CERT, __FILE__, __LINE__, "%s", h->detail);
        }
    }
    if (h->cause == MOAT_CC_CERT && h->alert_gloss[0] == '\0') {
        moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                         "the client refuses the server's certificate: %s",
                         moat_client_hop_message(h));
        h->alert_gloss_dir = MOAT_TRACE_OUT;
    }
    moat_client_vrec_clear(&v);
    ERR_clear_error();
    return rc;
}

static int is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

moat_rc moat_client_get_run(const struct moat_client_opts *o, moat_client_body_cb body_cb,
                            void *body_arg, struct moat_client_result *r, struct moat_err *err)
{
    r->nhops = 0;
    r->insecure = o->insecure;
    r->cause = MOAT_CC_OK;
    struct moat_client_hop *h = &r->hops[0];
    moat_rc rc = moat_client_url_parse(o->url, &h->url, err);
    if (!moat_ok(rc)) {
        r->cause = MOAT_CC_USAGE;
        r->exit_code = moat_client_cause_exit(r->cause);
        return rc;
    }
    struct moat_client_trust trust;
    rc = moat_client_trust_load(o, &trust, err);
    if (!moat_ok(rc)) {
        r->cause = MOAT_CC_LOCAL;
        r->exit_code = moat_client_cause_exit(r->cause);
        return rc;
    }
    moat_client__fmt(r->trust_desc, sizeof(r->trust_desc), "%s", trust.desc);
    SSL_CTX *ctx = NULL;
    rc = moat_client_tls_ctx_new(o, &trust, &ctx, err);
    if (!moat_ok(rc)) {
        moat_client_trust_clear(&trust);
        r->cause = rc.kind == MOAT_E_USAGE ? MOAT_CC_USAGE : MOAT_CC_LOCAL;
        r->exit_code = moat_client_cause_exit(r->cause);
        return rc;
    }
    struct hop_req hr = {
        .method = o->method      ? o->method
                  : o->head_only ? "HEAD"
                  : o->body      ? "POST"
                                 : "GET",
        .body = o->body,
        .body_len = o->body_len,
    };
    struct session_slot slot = {.sess = NULL, .key = "", .from = 0};
    for (;;) {
        h = &r->hops[r->nhops++];
        rc = run_hop(o, &trust, ctx, &hr, body_cb, body_arg, h, (int)r->nhops, &slot, err);
        r->cause = h->cause;
        if (!moat_ok(rc) || !is_redirect(h->status) || h->location == NULL) {
            break;
        }
        struct moat_client_url next;
        char nt[MOAT_CLIENT_TARGET_MAX + 300];
        if (!o->follow) {
            moat_client__fmt(r->note, sizeof(r->note), "redirect (%d) to %s not followed (use -L)",
                             h->status, h->location);
            break;
        }
        if (!moat_ok(moat_client_url_join(&h->url, h->location, &next, err))) {
            set_cause(h, MOAT_CC_HTTP_PROTOCOL, "the redirect's Location \"%s\" is not usable: %s",
                      h->location, err ? err->msg : "?");
            r->cause = h->cause;
            rc = moat_rc_of(MOAT_E_PEER);
            break;
        }
        if (r->nhops >= (size_t)o->max_redirs + 1 || r->nhops >= MOAT_CLIENT_MAX_HOPS) {
            set_cause(h, MOAT_CC_TOO_MANY_REDIRECTS,
                      "more than %d redirects; the last one goes to "
                      "%s",
                      o->max_redirs, moat_client_url_format(&next, nt, sizeof(nt)));
            r->cause = h->cause;
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__, "%s", h->detail);
            break;
        }
        /* RFC 9110 §15.4.4: 303 turns into GET; 301/302 do too for POST, as browsers do. */
        if (h->status == 303 ||
            ((h->status == 301 || h->status == 302) && strcmp(hr.method, "POST") == 0)) {
            hr.method = "GET";
            hr.body = NULL;
            hr.body_len = 0;
        }
        r->hops[r->nhops].url = next;
    }
    if (o->resume && moat_ok(rc) && h->url.https && r->nhops < MOAT_CLIENT_MAX_HOPS) {
        /* The same request on a new connection that offers the session just made; its body
         * was written once already. */
        struct moat_client_hop *again = &r->hops[r->nhops++];
        again->url = h->url;
        again->again = 1;
        rc = run_hop(o, &trust, ctx, &hr, NULL, NULL, again, (int)r->nhops, &slot, err);
        r->cause = again->cause;
    }
    if (o->http2 && !r->hops[0].url.https && r->note[0] == '\0') {
        moat_client__fmt(r->note, sizeof(r->note),
                         "--http2 needs https://: HTTP/2 is chosen in the TLS handshake (ALPN), "
                         "so this plain http:// request used HTTP/1.1");
    }
    SSL_SESSION_free(slot.sess);
    SSL_CTX_free(ctx);
    moat_client_trust_clear(&trust);
    r->exit_code = moat_client_cause_exit(r->cause);
    return rc;
}

void moat_client_result_clear(struct moat_client_result *r)
{
    for (size_t i = 0; i < MOAT_CLIENT_MAX_HOPS; i++) {
        struct moat_client_hop *h = &r->hops[i];
        moat_trace_clear(&h->trace);
        moat_h2rec_clear(&h->h2);
        free(h->req_head);
        free(h->resp_head);
        free(h->location);
        h->req_head = h->resp_head = h->location = NULL;
    }
    r->nhops = 0;
}

const char *moat_client_hop_cause_line(const struct moat_client_hop *h, char *out, size_t outlen)
{
    const char *words = h->detail[0] ? h->detail : moat_client_hop_message(h);
    if (h->cause == MOAT_CC_CERT) {
        moat_client__fmt(out, outlen, "certificate %s: %s", moat_verify_kind_name(h->vkind), words);
    } else {
        moat_client__fmt(out, outlen, "%s: %s", moat_client_cause_name(h->cause), words);
    }
    return out;
}

const char *moat_client_hop_fix(const struct moat_client_hop *h)
{
    if (h->cause == MOAT_CC_CERT) {
        return h->cert_fix[0] ? h->cert_fix : moat_verify_kind_fix(h->vkind);
    }
    return moat_client_cause_fix(h->cause);
}

const char *moat_client_hop_message(const struct moat_client_hop *h)
{
    if (h->cause == MOAT_CC_CERT) {
        return h->cert_message[0] ? h->cert_message : moat_verify_kind_message(h->vkind);
    }
    return moat_client_cause_message(h->cause);
}

const char *moat_client_issuer_diag_name(enum moat_client_issuer_diag d)
{
    switch (d) {
    case MOAT_ISSUER_NONE:
        return "none";
    case MOAT_ISSUER_MISSING_INTERMEDIATE:
        return "missing_intermediate";
    case MOAT_ISSUER_UNTRUSTED:
        return "untrusted_ca";
    case MOAT_ISSUER_UNDETERMINED:
        return "undetermined";
    default:
        return "none";
    }
}
