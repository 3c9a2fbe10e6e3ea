/*
 * proxy.c: the reverse proxy handler (see proxy.h).
 *
 *   CONNECT -> [HANDSHAKE] -> SEND <-> BODY -> RECV_HEAD -> RELAY -> (the connection's WRITE)
 *
 * Flow control is by construction: the origin is read only when the client's output buffer is
 * empty, and the client's body only when the origin has taken what was read before, so a slow
 * side never makes moat buffer more than one piece of the other. The origin connection is a
 * transport (core/transport.h): plain for http:// origins, TLS (tls/transport.c, over the SSL
 * of tls/client.c's policy) for https:// ones; only the handshake step asks for TLS facts.
 */
#include "serve/proxy.h"

#include "core/log.h"
#include "core/sock.h"
#include "http1/chunked.h"
#include "http1/write.h"
#include "serve/conf.h"
#include "serve/conn.h"
#include "serve/headers.h"
#include "serve/internal.h"
#include "serve/snapshot.h"
#include "serve/worker.h"
#include "tls/client.h"
#include "tls/clientauth.h"
#include "tls/transport.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define PIECE 16384 /* one TLS record of body at a time, either way */
#define REQ_LIMIT (64 * 1024 + PIECE)
#define RESP_HEAD_LIMIT (64 * 1024)

enum px_state {
    PX_CONNECT = 0,
    PX_HANDSHAKE,
    PX_SEND,
    PX_BODY,
    PX_RECV_HEAD,
    PX_RELAY,
};

struct moat_proxy {
    struct moat_watch w;      /* the origin socket; w.fd == up.fd, w.data == this */
    struct moat_conn *c;      /* the client connection; NULL once freed (deferred) */
    struct moat_transport up; /* owned: plain or TLS to the origin */
    enum px_state st;
    uint32_t events;                   /* readiness seen on the origin socket */
    const struct moat_proxy_target *t; /* borrowed from the snapshot */
    struct moat_buf req;               /* bytes for the origin */
    struct moat_buf rbuf;              /* bytes from the origin */
    int client_minor;
    int head_req;
    /* the client's body, forwarded */
    uint64_t body_left;
    int body_chunked;
    int body_done;
    int send_continue;
    struct moat_h1_chunked bdec;
    /* the origin's body, relayed */
    struct moat_h1_resp resp;
    enum moat_h1_body framing;
    uint64_t resp_left;
    struct moat_h1_chunked rdec;
    int chunk_out; /* we chunk-encode towards the client */
    int resp_done;
};

/* ---- targets ---------------------------------------------------------------------------- */

void moat_proxy_target_free(struct moat_proxy_target *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    free(t);
}

/* The origin's context: moat's client policy (tls/client.h) with proxy_ca alone when set, else
 * the system store plus moat's local CA root when it exists; proxy_cert when set. */
static moat_rc client_ctx(const struct moat_conf_site *cs, const char *extra_ca, SSL_CTX **out,
                          struct moat_err *err)
{
    static const char *const alpn[] = {"http/1.1"};
    struct moat_tls_client_opts o = {
        .system_trust = cs->proxy_ca == NULL,
        .ca_file = cs->proxy_ca,
        .ca_file_if_readable = cs->proxy_ca == NULL ? extra_ca : NULL,
        .cert_path = cs->proxy_cert,
        .key_path = cs->proxy_key,
        .alpn = alpn,
        .nalpn = 1,
    };
    return moat_tls_client_ctx_new(&o, out, err);
}

moat_rc moat_proxy_target_new(const struct moat_conf_site *cs, const char *extra_ca,
                              struct moat_proxy_target **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_proxy_target *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    snprintf(t->host, sizeof(t->host), "%s", cs->proxy_host);
    int v6 = strchr(cs->proxy_host, ':') != NULL;
    snprintf(t->authority, sizeof(t->authority), "%s%s%s:%u", v6 ? "[" : "", cs->proxy_host,
             v6 ? "]" : "", cs->proxy_port);
    t->timeout_ms = cs->proxy_timeout_ms ? cs->proxy_timeout_ms : 60000;
    snprintf(t->prefix, sizeof(t->prefix), "%s",
             cs->client_header_prefix ? cs->client_header_prefix : "X-Client-");
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", cs->proxy_port);
    int g = getaddrinfo(cs->proxy_host, port, &hints, &ai);
    if (g != 0 || ai == NULL) {
        free(t);
        moat_err_where(err, "%s", cs->where);
        MOAT_FAIL(err, MOAT_E_CONFIG, "proxy origin \"%s\" cannot be resolved: %s", cs->proxy_host,
                  gai_strerror(g));
    }
    memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
    t->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (cs->proxy_tls) {
        moat_rc rc = client_ctx(cs, extra_ca, &t->ctx, err);
        if (!moat_ok(rc)) {
            free(t);
            return rc;
        }
    }
    *out = t;
    return MOAT_RC_OK;
}

/* ---- the request to the origin ---------------------------------------------------------- */

static int name_is(moat_slice n, const char *lit)
{
    return moat_slice_eq_lit_nocase(n, lit);
}

/* RFC 9110 §7.6.1: fields for this hop only, plus the ones moat sets itself. */
static int dropped_field(moat_slice n, const char *prefix, const moat_slice *conn_tokens,
                         size_t ntokens)
{
    static const char *const drop[] = {"connection",
                                       "keep-alive",
                                       "proxy-connection",
                                       "te",
                                       "trailer",
                                       "transfer-encoding",
                                       "upgrade",
                                       "host",
                                       "content-length",
                                       "expect",
                                       "x-forwarded-for",
                                       "x-forwarded-proto",
                                       "x-forwarded-host",
                                       "forwarded",
                                       "proxy-authorization"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (name_is(n, drop[i])) {
            return 1;
        }
    }
    size_t pl = strlen(prefix);
    if (n.len >= pl && strncasecmp(n.p, prefix, pl) == 0) {
        return 1; /* an identity header from the client is a forgery */
    }
    for (size_t i = 0; i < ntokens; i++) {
        if (moat_slice_eq_nocase(n, conn_tokens[i])) {
            return 1;
        }
    }
    return 0;
}

/* Tokens of the Connection fields (names of more hop-by-hop fields). */
static size_t connection_tokens(const struct moat_field *fields, size_t nfields, moat_slice *out,
                                size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < nfields; i++) {
        if (!name_is(fields[i].name, "connection")) {
            continue;
        }
        const char *p = fields[i].value.p, *e = p + fields[i].value.len;
        while (p < e && n < max) {
            while (p < e && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }
            const char *s = p;
            while (p < e && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }
            if (p > s) {
                out[n++] = moat_slice_of(s, (size_t)(p - s));
            }
        }
    }
    return n;
}

/* A header value made from certificate text: no CR, LF or other control bytes. */
static moat_rc put_value(struct moat_buf *b, const char *name_prefix, const char *name,
                         const char *v)
{
    MOAT_TRY(moat_buf_printf(b, "%s%s: ", name_prefix, name));
    for (const char *p = v; *p; p++) {
        char ch = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
        MOAT_TRY(moat_buf_append(b, &ch, 1));
    }
    return moat_buf_append(b, "\r\n", 2);
}

static moat_rc identity_fields(struct moat_conn *c, struct moat_buf *b, const char *prefix)
{
    struct moat_tls_identity id;
    moat_tls_identity_of(moat_tls_transport_ssl(&c->tr), &id);
    if (!id.present) {
        return put_value(b, prefix, "Verify", "NONE");
    }
    if (!id.verified) {
        char why[400];
        char v[420];
        snprintf(v, sizeof(v), "FAILED:%s", moat_tls_identity_refusal(&id, 1, why, sizeof(why)));
        return put_value(b, prefix, "Verify", v);
    }
    MOAT_TRY(put_value(b, prefix, "Verify", "SUCCESS"));
    MOAT_TRY(put_value(b, prefix, "Subject", id.subject));
    MOAT_TRY(put_value(b, prefix, "Issuer", id.issuer));
    MOAT_TRY(put_value(b, prefix, "Serial", id.serial));
    MOAT_TRY(put_value(b, prefix, "Fingerprint", id.fingerprint));
    if (id.sans[0] != '\0') {
        MOAT_TRY(put_value(b, prefix, "SAN", id.sans));
    }
    return MOAT_RC_OK;
}

static moat_rc build_request(struct moat_conn *c, struct moat_proxy *px,
                             const struct moat_h1_req *r)
{
    struct moat_buf *b = &px->req;
    moat_slice target = r->target;
    if (r->target_form == MOAT_H1_T_ABSOLUTE) {
        /* The origin gets origin-form (RFC 9112 §3.2.1). */
        MOAT_TRY(moat_h1_head_request(b, r->method, r->path, r->query));
    } else {
        MOAT_TRY(moat_h1_head_request(b, r->method, target, MOAT_SLICE_NULL));
    }
    MOAT_TRY(moat_h1_head_field(b, MOAT_SLICE_LIT("Host"), r->host));
    moat_slice tokens[16];
    size_t ntokens = connection_tokens(r->fields, r->nfields, tokens, 16);
    for (size_t i = 0; i < r->nfields; i++) {
        const struct moat_field *f = &r->fields[i];
        if (dropped_field(f->name, px->t->prefix, tokens, ntokens)) {
            continue;
        }
        MOAT_TRY(moat_h1_head_field(b, f->name, f->value));
    }
    /* moat is the edge: what the client claims about earlier hops is not forwarded. */
    MOAT_TRY(moat_buf_printf(b,
                             "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n"
                             "X-Forwarded-Host: %.*s\r\n",
                             c->peer_text, c->plain ? "http" : "https", MOAT_SLICE_FMT(r->host)));
    if (!c->plain && c->site->conf->client_auth != 0) {
        MOAT_TRY(identity_fields(c, b, px->t->prefix));
    }
    enum moat_h1_frame frame = r->body == MOAT_H1_BODY_CHUNKED  ? MOAT_H1_FRAME_CHUNKED
                               : r->body == MOAT_H1_BODY_LENGTH ? MOAT_H1_FRAME_LENGTH
                                                                : MOAT_H1_FRAME_NONE;
    return moat_h1_head_end(b, frame, r->content_length, MOAT_H1_CONN_CLOSE);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

void moat_proxy_free(struct moat_conn *c)
{
    struct moat_proxy *px = c->px;
    if (px == NULL) {
        return;
    }
    if (px->up.fd >= 0) {
        moat_loop_del(&c->wk->loop, &px->w);
    }
    moat_transport_close(&px->up);
    moat_buf_clear(&px->req);
    moat_buf_clear(&px->rbuf);
    px->c = NULL;
    c->px = NULL;
    /* An event for the origin socket may still wait in this epoll batch: free later. */
    moat_worker__defer_free(c->wk, px);
}

static void on_origin(struct moat_watch *w, uint32_t events)
{
    struct moat_proxy *px = w->data;
    if (px->c == NULL) {
        return; /* finished earlier in this iteration */
    }
    px->events |= events;
    moat_serve__run(px->c);
}

/* Fail before the client saw anything of the answer: an error page. After: close. */
static int fail(struct moat_conn *c, int status, const char *what)
{
    moat_log(MOAT_LVL_INFO, c->id, "proxy to %s: %s", c->px ? c->px->t->authority : "?", what);
    int minor = c->px ? c->px->client_minor : 1;
    int started = c->px != NULL && c->px->st == PX_RELAY;
    moat_proxy_free(c);
    if (started) {
        moat_conn_close(c);
        return 0;
    }
    moat_serve__respond_error(c, status, minor);
    return 1;
}

void moat_proxy_start(struct moat_conn *c, const struct moat_h1_req *r)
{
    const struct moat_proxy_target *t = c->site->proxy;
    struct moat_proxy *px = calloc(1, sizeof(*px));
    int minor = r->minor;
    if (px == NULL) {
        moat_buf_consume(&c->in, r->head_len);
        moat_serve__respond_error(c, 503, minor);
        return;
    }
    c->px = px;
    px->c = c;
    px->t = t;
    moat_transport_plain_init(&px->up, -1); /* no socket yet */
    px->client_minor = r->minor;
    px->head_req = r->method_id == MOAT_HTTP_M_HEAD;
    moat_buf_init(&px->req, REQ_LIMIT);
    moat_buf_init(&px->rbuf, RESP_HEAD_LIMIT);
    px->body_chunked = r->body == MOAT_H1_BODY_CHUNKED;
    px->body_left = r->body == MOAT_H1_BODY_LENGTH ? r->content_length : 0;
    px->body_done = !px->body_chunked && px->body_left == 0;
    px->send_continue = r->expect_continue && !px->body_done;
    moat_serve__phase_start(c); /* the body's clock, for limits.min_rate */
    if (px->body_chunked) {
        moat_h1_chunked_init(&px->bdec, c->snap->conf->max_body_bytes, 8192);
    }
    moat_rc rc = build_request(c, px, r);
    moat_buf_consume(&c->in, r->head_len); /* the request's slices die here */
    if (!moat_ok(rc)) {
        fail(c, 500, "request head too large for the origin");
        return;
    }
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(c, 503, "no socket for the origin (file descriptors exhausted?)");
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    moat_transport_plain_init(&px->up, fd); /* owns fd from here */
    if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS) {
        char why[200];
        snprintf(why, sizeof(why), "cannot connect: %s", strerror(errno));
        fail(c, 502, why);
        return;
    }
    if (t->ctx != NULL) {
        /* SNI for a name, none for an address; the certificate must name the origin. */
        if (!moat_ok(moat_tls_transport_client(&px->up, fd, t->ctx, t->host, NULL))) {
            fail(c, 503, "cannot start TLS to the origin");
            return;
        }
    }
    px->w = (struct moat_watch){.fd = fd, .cb = on_origin, .data = px};
    if (!moat_ok(moat_loop_add(&c->wk->loop, &px->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP))) {
        fail(c, 503, "cannot watch the origin socket");
        return;
    }
    c->state = MOAT_CONN_PROXY;
    moat_serve__arm(c, t->timeout_ms);
}

void moat_proxy_timeout(struct moat_conn *c)
{
    const struct moat_conf *conf = c->snap->conf;
    if (c->px != NULL && c->px->st == PX_BODY) {
        fail(c, 408,
             moat_serve__rate_exceeded(c, conf->body_timeout_ms, 0)
                 ? "the client's body was slower than limits.min_rate"
                 : "the client's body stalled (timeouts.body)");
    } else if (c->px != NULL && c->px->st == PX_RELAY && moat_buf_len(&c->out) > 0) {
        moat_sock_reset_on_close(c->tr.fd); /* what the kernel still holds for it goes too */
        fail(c, 504,
             moat_serve__rate_exceeded(c, conf->write_timeout_ms, 1)
                 ? "the client took the answer slower than limits.min_rate"
                 : "the client did not take the answer in time (timeouts.write)");
    } else {
        fail(c, 504, "the origin did not answer in time");
    }
    moat_serve__run(c);
}

/* ---- steps ------------------------------------------------------------------------------ */

static int step_send(struct moat_conn *c, struct moat_proxy *px)
{
    while (moat_buf_len(&px->req) > 0) {
        size_t n;
        moat_rc rc =
            moat_transport_write(&px->up, moat_buf_rdptr(&px->req), moat_buf_len(&px->req), &n);
        if (rc.kind == MOAT_E_AGAIN) {
            moat_serve__arm(c, px->t->timeout_ms);
            return 0;
        }
        if (!moat_ok(rc)) {
            return fail(c, 502, "the origin closed while taking the request");
        }
        moat_buf_consume(&px->req, n);
    }
    px->st = px->body_done ? PX_RECV_HEAD : PX_BODY;
    return 1;
}

/* Move what the client sent of its body into px->req (re-chunked when chunked). */
static int take_body(struct moat_conn *c, struct moat_proxy *px)
{
    size_t len = moat_buf_len(&c->in);
    if (len == 0) {
        return 1;
    }
    if (!px->body_chunked) {
        size_t n = len < px->body_left ? len : (size_t)px->body_left;
        if (!moat_ok(moat_buf_append(&px->req, moat_buf_rdptr(&c->in), n))) {
            return fail(c, 500, "out of memory");
        }
        moat_buf_consume(&c->in, n);
        c->phase_bytes += n;
        px->body_left -= n;
        px->body_done = px->body_left == 0;
        return 1;
    }
    size_t consumed = 0, produced = 0;
    enum moat_h1_status st =
        moat_h1_chunked_decode(&px->bdec, moat_buf_rdptr(&c->in), len, &consumed, &produced);
    moat_rc rc = MOAT_RC_OK;
    if (produced > 0) {
        rc = moat_h1_chunk(&px->req, moat_buf_rdptr(&c->in), produced);
    }
    moat_buf_consume(&c->in, consumed);
    c->phase_bytes += consumed;
    if (!moat_ok(rc)) {
        return fail(c, 500, "out of memory");
    }
    if (st == MOAT_H1_DONE) {
        px->body_done = 1;
        if (!moat_ok(moat_h1_chunk_last(&px->req))) {
            return fail(c, 500, "out of memory");
        }
    } else if (st != MOAT_H1_AGAIN) {
        int status = moat_h1_status_code(st);
        return fail(c, status ? status : 400,
                    status == 413 ? "the client's body is over limits.body"
                                  : "malformed chunked body from the client");
    }
    return 1;
}

static int step_body(struct moat_conn *c, struct moat_proxy *px)
{
    if (px->send_continue) {
        size_t n;
        moat_rc rc = moat_transport_write(&c->tr, MOAT_H1_CONTINUE, MOAT_H1_CONTINUE_LEN, &n);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (!moat_ok(rc) || n != MOAT_H1_CONTINUE_LEN) {
            moat_proxy_free(c);
            moat_conn_close(c);
            return 0;
        }
        px->send_continue = 0;
    }
    for (;;) {
        if (!take_body(c, px)) {
            return 0;
        }
        if (c->px == NULL) {
            return 1; /* failed: an error page is on its way */
        }
        if (moat_buf_len(&px->req) >= PIECE || px->body_done) {
            px->st = PX_SEND;
            return 1;
        }
        if (moat_buf_len(&c->in) > 0) {
            continue;
        }
        if (moat_buf_len(&px->req) > 0) {
            px->st = PX_SEND; /* forward what we have before waiting for more */
            return 1;
        }
        moat_rc rc = moat_serve__fill_in(c);
        if (rc.kind == MOAT_E_AGAIN) {
            moat_serve__arm_rate(c, c->snap->conf->body_timeout_ms, 0);
            return 0;
        }
        if (!moat_ok(rc)) {
            moat_proxy_free(c);
            moat_conn_close(c);
            return 0;
        }
    }
}

/* Read from the origin into rbuf. 1: bytes came; 0: wait; -1: the origin closed. */
static int read_origin(struct moat_conn *c, struct moat_proxy *px)
{
    if (moat_buf_room(&px->rbuf) < 1024 && !moat_ok(moat_buf_reserve(&px->rbuf, 4096))) {
        moat_buf_compact(&px->rbuf);
        if (moat_buf_room(&px->rbuf) == 0) {
            return -2; /* head too large */
        }
    }
    size_t n;
    moat_rc rc =
        moat_transport_read(&px->up, moat_buf_wrptr(&px->rbuf), moat_buf_room(&px->rbuf), &n);
    if (rc.kind == MOAT_E_AGAIN) {
        moat_serve__arm(c, px->t->timeout_ms);
        return 0;
    }
    if (!moat_ok(rc)) {
        return rc.kind == MOAT_E_TLS ? -3 : -1;
    }
    px->rbuf.wr += n;
    return 1;
}

/* Words for a TLS failure on the origin side, with the hint the usual cause calls for. */
static const char *origin_tls_words(const struct moat_proxy *px, char *out, size_t outlen)
{
    const char *r = px->up.fail_reason ? px->up.fail_reason : "unknown TLS error";
    const char *hint = strstr(r, "certificate required") != NULL || strstr(r, "handshake") != NULL
                           ? " (does the origin require a client certificate? see proxy_cert)"
                           : "";
    snprintf(out, outlen, "TLS failure from the origin: %s%s", r, hint);
    return out;
}

/* Words for bytes that never became an answer head: how many, and the first of them (printable
 * ASCII only), so "SSH-2.0-..." or a TLS alert on a plain port is recognisable in the log. */
static const char *not_http_words(const struct moat_buf *b, char *out, size_t outlen)
{
    char shown[41];
    size_t n = moat_buf_len(b) < sizeof(shown) - 1 ? moat_buf_len(b) : sizeof(shown) - 1;
    const unsigned char *p = (const unsigned char *)moat_buf_rdptr(b);
    for (size_t i = 0; i < n; i++) {
        shown[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    }
    shown[n] = '\0';
    snprintf(out, outlen,
             "the origin sent %zu bytes that are not an HTTP/1.1 answer head (\"%s\"%s), then "
             "closed%s",
             moat_buf_len(b), shown, moat_buf_len(b) > n ? "..." : "",
             p[0] == 0x15 || p[0] == 0x16 ? " (a TLS origin? use proxy https://)" : "");
    return out;
}

static int hop_by_hop_response(moat_slice n)
{
    static const char *const drop[] = {
        "connection", "keep-alive",        "proxy-connection", "te",
        "trailer",    "transfer-encoding", "upgrade",          "date",
        "server",     "content-length"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (name_is(n, drop[i])) {
            return 1;
        }
    }
    return 0;
}

static int queue_head(struct moat_conn *c, struct moat_proxy *px)
{
    const struct moat_h1_resp *r = &px->resp;
    struct moat_buf *o = &c->out;
    int status = r->status;
    c->status = status;
    px->framing = r->body;
    px->resp_left = r->content_length;
    if (px->framing == MOAT_H1_BODY_CHUNKED) {
        moat_h1_chunked_init(&px->rdec, 0, 8192);
    }
    int bodyless = px->framing == MOAT_H1_BODY_NONE;
    px->chunk_out = !bodyless && px->framing != MOAT_H1_BODY_LENGTH && px->client_minor == 1;
    if (!bodyless && px->framing != MOAT_H1_BODY_LENGTH && px->client_minor == 0) {
        c->keep_alive = 0; /* an HTTP/1.0 client learns the end by the close */
    }
    const struct moat_hdr_set *hs = moat_serve__headers(c);
    moat_rc rc = moat_h1_head_begin(o, status, time(NULL),
                                    !moat_hdr_set_drops(hs, MOAT_SLICE_LIT("server")));
    moat_slice tokens[16];
    size_t ntokens = connection_tokens(r->fields, r->nfields, tokens, 16);
    for (size_t i = 0; moat_ok(rc) && i < r->nfields; i++) {
        const struct moat_field *f = &r->fields[i];
        int named = 0;
        for (size_t k = 0; k < ntokens; k++) {
            named |= moat_slice_eq_nocase(f->name, tokens[k]);
        }
        if (named || hop_by_hop_response(f->name)) {
            continue; /* RFC 9110 §7.6.1: fields the origin's Connection names are its hop's */
        }
        if (moat_hdr_set_drops(hs, f->name)) {
            continue; /* a `header` rule sets or removes it */
        }
        rc = moat_h1_head_field(o, f->name, f->value);
    }
    if (moat_ok(rc) && bodyless && px->head_req) {
        /* HEAD: the origin's length describes the GET answer; pass it on. */
        const struct moat_field *cl =
            moat_field_find(r->fields, r->nfields, "content-length");
        if (cl != NULL) {
            rc = moat_h1_head_field(o, MOAT_SLICE_LIT("Content-Length"), cl->value);
        }
    }
    if (moat_ok(rc) && !c->plain && c->site->hsts_len > 0 &&
        moat_field_find(r->fields, r->nfields, "strict-transport-security") == NULL) {
        rc = moat_buf_append(o, c->site->hsts, c->site->hsts_len);
    }
    if (moat_ok(rc) && hs != NULL) {
        rc = moat_buf_append(o, hs->proxied, hs->proxied_len);
    }
    if (moat_ok(rc)) {
        enum moat_h1_frame frame = px->framing == MOAT_H1_BODY_LENGTH ? MOAT_H1_FRAME_LENGTH
                                   : px->chunk_out                    ? MOAT_H1_FRAME_CHUNKED
                                                                      : MOAT_H1_FRAME_NONE;
        rc = moat_h1_head_end(o, frame, r->content_length,
                              c->keep_alive ? MOAT_H1_CONN_DEFAULT : MOAT_H1_CONN_CLOSE);
    }
    if (!moat_ok(rc)) {
        c->out.rd = c->out.wr = 0;
        return fail(c, 502, "the origin's answer head is too large");
    }
    moat_buf_consume(&px->rbuf, r->head_len);
    px->resp_done = bodyless || (px->framing == MOAT_H1_BODY_LENGTH && r->content_length == 0);
    px->st = PX_RELAY;
    return 1;
}

static int step_recv_head(struct moat_conn *c, struct moat_proxy *px)
{
    for (;;) {
        if (moat_buf_len(&px->rbuf) > 0) {
            struct moat_h1_limits lim;
            moat_h1_limits_default(&lim);
            lim.max_head_bytes = RESP_HEAD_LIMIT;
            moat_h1_resp_init(&px->resp);
            enum moat_h1_status st = moat_h1_parse_response(
                &px->resp, moat_buf_rdptr(&px->rbuf), moat_buf_len(&px->rbuf), &lim, px->head_req);
            if (st == MOAT_H1_DONE && px->resp.status < 200) {
                /* Interim answers (100, 103) are the origin's business with us. */
                moat_buf_consume(&px->rbuf, px->resp.head_len);
                continue;
            }
            if (st == MOAT_H1_DONE) {
                return queue_head(c, px);
            }
            if (st == MOAT_H1_E_HEAD_TOO_LARGE || st == MOAT_H1_E_TOO_MANY_FIELDS) {
                return fail(c, 502,
                            st == MOAT_H1_E_HEAD_TOO_LARGE
                                ? "the origin's answer head is too large (over 64 KiB)"
                                : "the origin's answer head is too large (too many fields)");
            }
            if (st != MOAT_H1_AGAIN) {
                char words[300];
                snprintf(words, sizeof(words),
                         "the origin's answer is not valid HTTP/1.1: %s at byte %zu",
                         px->resp.err_what ? px->resp.err_what : "malformed", px->resp.err_pos);
                return fail(c, 502, words);
            }
        }
        int got = read_origin(c, px);
        if (got == 0) {
            return 0;
        }
        if (got < 0) {
            char words[300];
            return fail(c, 502,
                        got == -2   ? "the origin's answer head is too large (over 64 KiB)"
                        : got == -3 ? origin_tls_words(px, words, sizeof(words))
                        : moat_buf_len(&px->rbuf) > 0
                            ? not_http_words(&px->rbuf, words, sizeof(words))
                            : "the origin closed without answering");
        }
    }
}

static moat_rc emit(struct moat_conn *c, struct moat_proxy *px, const char *p, size_t n)
{
    if (n == 0) {
        return MOAT_RC_OK; /* a zero-size chunk would be the last-chunk: never send one early */
    }
    c->bytes_sent += n;
    if (!px->chunk_out) {
        return moat_buf_append(&c->out, p, n);
    }
    return moat_h1_chunk(&c->out, p, n);
}

static int finish(struct moat_conn *c, struct moat_proxy *px)
{
    if (px->chunk_out && !moat_ok(moat_h1_chunk_last(&c->out))) {
        moat_proxy_free(c);
        moat_conn_close(c);
        return 0;
    }
    moat_proxy_free(c);
    c->state = MOAT_CONN_WRITE; /* flush what is left, then keep-alive or close */
    moat_serve__phase_start(c);
    moat_serve__arm(c, c->snap->conf->write_timeout_ms);
    return 1;
}

static int step_relay(struct moat_conn *c, struct moat_proxy *px)
{
    for (;;) {
        while (moat_buf_len(&c->out) > 0) {
            size_t n;
            moat_rc rc =
                moat_transport_write(&c->tr, moat_buf_rdptr(&c->out), moat_buf_len(&c->out), &n);
            if (rc.kind == MOAT_E_AGAIN) {
                moat_serve__arm_rate(c, c->snap->conf->write_timeout_ms, 1);
                return 0;
            }
            if (!moat_ok(rc)) {
                moat_proxy_free(c);
                moat_conn_close(c);
                return 0;
            }
            moat_buf_consume(&c->out, n);
            c->phase_bytes += n;
        }
        /* Each burst of the answer (at most a piece or so) gets its own clock: time spent
         * waiting for a slow origin is the origin's, not the client's. */
        moat_serve__phase_start(c);
        if (px->resp_done) {
            return finish(c, px);
        }
        if (moat_buf_len(&px->rbuf) == 0) {
            int got = read_origin(c, px);
            if (got == 0) {
                return 0;
            }
            if (got < 0) {
                if (px->framing == MOAT_H1_BODY_CLOSE) {
                    px->resp_done = 1;
                    continue;
                }
                /* The length was promised: a cut answer can only be a cut connection. */
                moat_log(MOAT_LVL_INFO, c->id, "proxy to %s: the origin cut its answer short",
                         px->t->authority);
                moat_proxy_free(c);
                moat_conn_close(c);
                return 0;
            }
        }
        size_t len = moat_buf_len(&px->rbuf);
        if (len > PIECE) {
            len = PIECE;
        }
        moat_rc rc = MOAT_RC_OK;
        if (px->framing == MOAT_H1_BODY_CHUNKED) {
            size_t consumed = 0, produced = 0;
            enum moat_h1_status st = moat_h1_chunked_decode(&px->rdec, moat_buf_rdptr(&px->rbuf),
                                                            len, &consumed, &produced);
            rc = emit(c, px, moat_buf_rdptr(&px->rbuf), produced);
            moat_buf_consume(&px->rbuf, consumed);
            if (st == MOAT_H1_DONE) {
                px->resp_done = 1;
            } else if (st != MOAT_H1_AGAIN) {
                moat_log(MOAT_LVL_INFO, c->id, "proxy to %s: malformed chunked answer",
                         px->t->authority);
                moat_proxy_free(c);
                moat_conn_close(c);
                return 0;
            }
        } else {
            if (px->framing == MOAT_H1_BODY_LENGTH && len > px->resp_left) {
                len = (size_t)px->resp_left; /* bytes past the length are not ours to send */
            }
            rc = emit(c, px, moat_buf_rdptr(&px->rbuf), len);
            moat_buf_consume(&px->rbuf, len);
            if (px->framing == MOAT_H1_BODY_LENGTH) {
                px->resp_left -= len;
                px->resp_done = px->resp_left == 0;
            }
        }
        if (!moat_ok(rc)) {
            moat_proxy_free(c);
            moat_conn_close(c);
            return 0;
        }
    }
}

int moat_proxy_step(struct moat_conn *c)
{
    struct moat_proxy *px = c->px;
    if (px == NULL) {
        return 0;
    }
    switch (px->st) {
    case PX_CONNECT: {
        if (!(px->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return 0;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(px->up.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            char why[200];
            snprintf(why, sizeof(why), "cannot connect: %s", strerror(soerr ? soerr : errno));
            return fail(c, 502, why);
        }
        px->st = moat_transport_is_plain(&px->up) ? PX_SEND : PX_HANDSHAKE;
        return 1;
    }
    case PX_HANDSHAKE: {
        struct moat_err e = {0};
        moat_rc rc = moat_transport_handshake(&px->up, &e);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (!moat_ok(rc)) {
            char why[700];
            long vr = SSL_get_verify_result(moat_tls_transport_ssl(&px->up));
            if (vr != X509_V_OK) {
                snprintf(why, sizeof(why), "origin certificate refused: %s",
                         X509_verify_cert_error_string(vr));
            } else {
                moat_err_str(&e, why, sizeof(why));
            }
            return fail(c, 502, why);
        }
        px->st = PX_SEND;
        return 1;
    }
    case PX_SEND:
        return step_send(c, px);
    case PX_BODY:
        return step_body(c, px);
    case PX_RECV_HEAD:
        return step_recv_head(c, px);
    case PX_RELAY:
        return step_relay(c, px);
    default:
        return fail(c, 500, "internal proxy state");
    }
}
