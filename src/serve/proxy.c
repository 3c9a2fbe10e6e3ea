/*
 * proxy.c: the reverse proxy handler (see proxy.h).
 *
 *   CONNECT -> SEND (head, then the client's body piece by piece) -> RECV_HEAD -> RELAY
 *
 * Flow control is by construction: the origin is read only when the exchange has room for the
 * answer (moat_exch_room), and the client's body only when the origin has taken what was read
 * before, so a slow side never makes moat buffer more than a piece of the other. The origin
 * side is an HTTP/1.1 client session (http1/client.h) over a transport: plain for http://
 * origins, TLS (tls/transport.c over tls/client.c's policy) for https:// ones; only the
 * connect step asks for TLS facts. The client side is the exchange (http/exchange.h): the
 * handler never sees the client's connection or its protocol.
 */
#include "serve/proxy.h"

#include "core/log.h"
#include "http1/client.h"
#include "http1/write.h"
#include "serve/conf.h"
#include "tls/client.h"
#include "tls/clientauth.h"
#include "tls/transport.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define PIECE 16384 /* one TLS record of body at a time, either way */
#define RESP_HEAD_LIMIT (64 * 1024)

enum px_state {
    PX_CONNECT = 0,
    PX_SEND,
    PX_RECV_HEAD,
    PX_RELAY,
};

struct px {
    struct moat_watch w;     /* the origin socket; w.fd == up.tr.fd, w.data == this */
    struct moat_timer timer; /* the origin's: connect, taking the request, each answer read */
    struct moat_loop *loop;  /* borrowed: the worker's */
    struct moat_exch *ex;    /* the client's side; NULL once let go */
    const struct moat_proxy_target *t; /* borrowed from the snapshot */
    struct moat_h1c up;                /* owned: the HTTP/1.1 session to the origin */
    struct moat_buf lines;             /* the answer's fields, for the client */
    unsigned long long conn_id;        /* for log lines */
    enum px_state st;
    uint32_t events;  /* readiness seen on the origin socket */
    int body_pending; /* the client's body is still to be forwarded */
    int head_req;     /* the request is HEAD */
    int dead;         /* freed at the end of this loop iteration */
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

static moat_rc identity_fields(void *tls, struct moat_buf *b, const char *prefix)
{
    struct moat_tls_identity id;
    moat_tls_identity_of(tls, &id);
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

static moat_rc build_request(struct px *px, const struct moat_proxy_call *call,
                             const struct moat_req *r)
{
    struct moat_buf *b = moat_h1c_begin(&px->up, r->method_id == MOAT_HTTP_M_HEAD);
    if (r->target.len > 0 && r->target.p[0] == '/') {
        MOAT_TRY(moat_h1_head_request(b, r->method, r->target, MOAT_SLICE_NULL));
    } else {
        /* The origin gets origin-form (RFC 9112 §3.2.1). */
        MOAT_TRY(moat_h1_head_request(b, r->method, r->path, r->query));
    }
    MOAT_TRY(moat_h1_head_field(b, MOAT_SLICE_LIT("Host"), r->authority));
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
                             r->peer, r->secure ? "https" : "http", MOAT_SLICE_FMT(r->authority)));
    if (r->secure && call->identity) {
        MOAT_TRY(identity_fields(r->tls, b, px->t->prefix));
    }
    enum moat_h1_frame frame = !r->has_body         ? MOAT_H1_FRAME_NONE
                               : r->body_length < 0 ? MOAT_H1_FRAME_CHUNKED
                                                    : MOAT_H1_FRAME_LENGTH;
    /* One origin connection per request for now; the client session could carry more. */
    return moat_h1c_head_end(&px->up, frame, r->body_length < 0 ? 0 : (uint64_t)r->body_length, 0);
}

/*
 * Trailer fields worth forwarding, as lines into `out`: RFC 9110 §6.5.1 lets a proxy pass them
 * on, but not the ones that are this hop's (connection, framing) or that a trailer may not
 * carry (Host, Content-Length, authentication, routing); from the client (`prefix` set) also
 * not the forwarding and identity fields moat sets itself, which would be forgeries.
 */
static moat_rc pass_trailers(const struct moat_buf *in, struct moat_buf *out, const char *prefix)
{
    static const char *const never[] = {"content-encoding", "content-range",   "content-type",
                                        "authorization",    "set-cookie",      "cookie",
                                        "cache-control",    "expires",         "max-forwards",
                                        "location",         "www-authenticate"};
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(in, &at, &line, &name)) {
        int drop = name.len == 0 || hop_by_hop_response(name) ||
                   (prefix != NULL && dropped_field(name, prefix, NULL, 0));
        for (size_t i = 0; !drop && i < sizeof(never) / sizeof(never[0]); i++) {
            drop = name_is(name, never[i]);
        }
        if (!drop) {
            MOAT_TRY(moat_buf_append(out, line.p, line.len));
        }
    }
    return MOAT_RC_OK;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static const struct moat_stream_ops px_ops;

static void px_free(struct px *px)
{
    if (px->dead) {
        return;
    }
    px->dead = 1;
    px->ex = NULL;
    if (px->up.tr.fd >= 0) {
        moat_loop_del(px->loop, &px->w);
    }
    moat_timer_disarm(&px->loop->timers, &px->timer);
    moat_h1c_close(&px->up);
    moat_buf_clear(&px->lines);
    /* An event for the origin socket may still wait in this epoll batch: free later. */
    moat_loop_defer_free(px->loop, px);
}

static void log_origin(const struct px *px, const char *what)
{
    moat_log(MOAT_LVL_INFO, px->conn_id, "proxy to %s: %s", px->t->authority, what);
}

/* Give up: before the client saw anything of the answer an error page, after it the close. */
static void px_fail(struct px *px, int status, const char *what)
{
    log_origin(px, what);
    struct moat_exch *ex = px->ex;
    px_free(px);
    moat_exch_fail(ex, status);
}

static void arm_origin(struct px *px)
{
    if (!moat_ok(
            moat_timer_arm(&px->loop->timers, &px->timer, px->loop->now_ms + px->t->timeout_ms))) {
        px_fail(px, 503, "cannot arm the origin's timer");
    }
}

/* The answer's head for the client: the origin's fields less its hop's. */
static moat_rc relay_lines(struct px *px, const struct moat_h1_resp *r, int head_req)
{
    struct moat_buf *o = &px->lines;
    o->rd = o->wr = 0;
    moat_slice tokens[16];
    size_t ntokens = connection_tokens(r->fields, r->nfields, tokens, 16);
    for (size_t i = 0; i < r->nfields; i++) {
        const struct moat_field *f = &r->fields[i];
        int named = 0;
        for (size_t k = 0; k < ntokens; k++) {
            named |= moat_slice_eq_nocase(f->name, tokens[k]);
        }
        if (named || hop_by_hop_response(f->name)) {
            continue; /* RFC 9110 §7.6.1: fields the origin's Connection names are its hop's */
        }
        MOAT_TRY(moat_h1_head_field(o, f->name, f->value));
    }
    if (head_req) {
        /* HEAD: the origin's length describes the GET answer; pass it on. */
        const struct moat_field *cl = moat_field_find(r->fields, r->nfields, "content-length");
        if (cl != NULL) {
            MOAT_TRY(moat_h1_head_field(o, MOAT_SLICE_LIT("Content-Length"), cl->value));
        }
    }
    return MOAT_RC_OK;
}

/* Words for a refused TLS handshake with the origin. */
static const char *handshake_words(struct px *px, const struct moat_err *e, char *out,
                                   size_t outlen)
{
    SSL *ssl = moat_tls_transport_ssl(&px->up.tr);
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        snprintf(out, outlen, "origin certificate refused: %s", X509_verify_cert_error_string(vr));
    } else {
        moat_err_str(e, out, outlen);
    }
    return out;
}

/* SEND: the head, then the client's body as it comes. 1: go on; 0: wait (or over). */
static int step_send(struct px *px)
{
    struct moat_err e = {0};
    char why[300];
    for (;;) {
        moat_rc rc = moat_h1c_flush(&px->up, &e);
        if (rc.kind == MOAT_E_AGAIN) {
            arm_origin(px);
            return 0;
        }
        if (!moat_ok(rc)) {
            px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
            return 0;
        }
        if (!px->body_pending) {
            px->st = PX_RECV_HEAD;
            arm_origin(px);
            return 1;
        }
        char piece[PIECE];
        size_t n = 0, room = moat_h1c_body_room(&px->up);
        rc = moat_exch_read_body(px->ex, piece, room < sizeof(piece) ? room : sizeof(piece), &n);
        if (rc.kind == MOAT_E_AGAIN) {
            /* The origin is not to blame while the client is slow: the session times it. */
            moat_timer_disarm(&px->loop->timers, &px->timer);
            return 0;
        }
        if (!moat_ok(rc)) {
            px->ex = NULL; /* the session answered (400, 413) or the client left */
            px_free(px);
            return 0;
        }
        if (n > 0) {
            rc = moat_h1c_body(&px->up, piece, n);
        } else {
            /* The end: the client's trailers go on, less what may not be forwarded. */
            px->lines.rd = px->lines.wr = 0;
            rc = pass_trailers(moat_exch_trailers(px->ex), &px->lines, px->t->prefix);
            if (moat_ok(rc)) {
                rc = moat_h1c_body_end_trailers(&px->up, &px->lines);
            }
            px->body_pending = 0;
        }
        if (!moat_ok(rc)) {
            px_fail(px, 500, "out of memory");
            return 0;
        }
    }
}

static int step_recv_head(struct px *px)
{
    struct moat_err e = {0};
    char why[400];
    const struct moat_h1_resp *r = NULL;
    moat_rc rc = moat_h1c_read_head(&px->up, &r, &e);
    if (rc.kind == MOAT_E_AGAIN) {
        return 0;
    }
    if (!moat_ok(rc)) {
        px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
        return 0;
    }
    int head_req = px->head_req;
    int64_t length = r->body == MOAT_H1_BODY_LENGTH ? (int64_t)r->content_length : -1;
    if (!moat_ok(relay_lines(px, r, head_req))) {
        px_fail(px, 502, "the origin's answer head is too large");
        return 0;
    }
    rc = moat_exch_start(px->ex, r->status, &px->lines, length, MOAT_RES_RELAYED);
    if (!moat_ok(rc)) {
        log_origin(px, "the origin's answer head is too large");
        px->ex = NULL;
        px_free(px);
        return 0;
    }
    px->st = PX_RELAY;
    return 1;
}

static int step_relay(struct px *px)
{
    struct moat_err e = {0};
    char why[300];
    for (;;) {
        if (moat_exch_room(px->ex) == 0) {
            /* The client is slow: its time, not the origin's (the session times it). */
            moat_timer_disarm(&px->loop->timers, &px->timer);
            return 0;
        }
        moat_slice piece;
        moat_rc rc = moat_h1c_read_body(&px->up, &piece, &e);
        if (rc.kind == MOAT_E_AGAIN) {
            arm_origin(px);
            return 0;
        }
        if (rc.kind == MOAT_E_CLOSED) {
            /* The origin's trailers outlive px for the one call that copies them out. */
            struct moat_buf trailers;
            moat_buf_init(&trailers, MOAT_H1_CHUNK_TRAILER_DEFAULT);
            int pass = moat_ok(pass_trailers(moat_h1c_trailers(&px->up), &trailers, NULL));
            struct moat_exch *ex = px->ex;
            px_free(px);
            moat_exch_finish_trailers(ex, pass ? &trailers : NULL);
            moat_buf_clear(&trailers);
            return 0;
        }
        if (!moat_ok(rc)) {
            px_fail(px, 502, moat_err_str(&e, why, sizeof(why)));
            return 0;
        }
        if (!moat_ok(moat_exch_send(px->ex, piece.p, piece.len))) {
            px->ex = NULL; /* the client left */
            px_free(px);
            return 0;
        }
    }
}

static void px_run(struct px *px)
{
    int go = 1;
    while (go && !px->dead) {
        switch (px->st) {
        case PX_CONNECT: {
            if (!(px->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                return;
            }
            struct moat_err e = {0};
            moat_rc rc = moat_h1c_ready(&px->up, &e);
            if (rc.kind == MOAT_E_AGAIN) {
                return;
            }
            if (!moat_ok(rc)) {
                char why[700];
                px_fail(px, 502,
                        moat_transport_is_plain(&px->up.tr)
                            ? moat_err_str(&e, why, sizeof(why))
                            : handshake_words(px, &e, why, sizeof(why)));
                return;
            }
            px->st = PX_SEND;
            break;
        }
        case PX_SEND:
            go = step_send(px);
            break;
        case PX_RECV_HEAD:
            go = step_recv_head(px);
            break;
        case PX_RELAY:
            go = step_relay(px);
            break;
        }
    }
}

static void on_origin(struct moat_watch *w, uint32_t events)
{
    struct px *px = w->data;
    if (px->dead) {
        return; /* finished earlier in this iteration */
    }
    px->events |= events;
    px_run(px);
}

static void on_origin_timer(struct moat_timer *t)
{
    struct px *px = t->data;
    if (px->dead) {
        return;
    }
    px_fail(px, 504, "the origin did not answer in time");
}

static void px_ready(void *h)
{
    px_run(h);
}

static void px_abort(void *h)
{
    struct px *px = h;
    px->ex = NULL;
    px_free(px);
}

static const struct moat_stream_ops px_ops = {.ready = px_ready, .abort = px_abort};

/* An answer of the handler's own, before the exchange became a stream. */
static moat_rc refuse(struct px *px, int status, const char *what, struct moat_res *res,
                      struct moat_buf *lines, struct moat_buf *body)
{
    log_origin(px, what);
    px_free(px);
    return moat_res_error_page(res, status, lines, body);
}

moat_rc moat_proxy_handler(const void *ctx, const struct moat_req *req, struct moat_res *res,
                           struct moat_buf *lines, struct moat_buf *body)
{
    const struct moat_proxy_call *call = ctx;
    const struct moat_proxy_target *t = call->target;
    *res = (struct moat_res){.status = 500, .fd = -1};
    struct px *px = calloc(1, sizeof(*px));
    if (px == NULL) {
        return moat_res_error_page(res, 503, lines, body);
    }
    px->loop = call->loop;
    px->t = t;
    px->ex = req->exch;
    px->conn_id = req->conn_id;
    px->body_pending = req->has_body;
    px->head_req = req->method_id == MOAT_HTTP_M_HEAD;
    moat_timer_init(&px->timer, on_origin_timer, px);
    moat_buf_init(&px->lines, RESP_HEAD_LIMIT);
    struct moat_h1c_limits lim = {.max_head_bytes = RESP_HEAD_LIMIT};
    moat_h1c_init(&px->up, &lim);
    if (!moat_ok(build_request(px, call, req))) {
        return refuse(px, 500, "request head too large for the origin", res, lines, body);
    }
    struct moat_err e = {0};
    char why[300];
    moat_rc rc = moat_h1c_connect(&px->up, (const struct sockaddr *)&t->addr, t->addrlen, &e);
    if (!moat_ok(rc)) {
        return refuse(px, rc.kind == MOAT_E_IO ? 502 : 503, moat_err_str(&e, why, sizeof(why)), res,
                      lines, body);
    }
    int fd = px->up.tr.fd;
    if (t->ctx != NULL) {
        /* SNI for a name, none for an address; the certificate must name the origin. */
        if (!moat_ok(moat_tls_transport_client(&px->up.tr, fd, t->ctx, t->host, NULL))) {
            return refuse(px, 503, "cannot start TLS to the origin", res, lines, body);
        }
    }
    px->w = (struct moat_watch){.fd = fd, .cb = on_origin, .data = px};
    if (!moat_ok(moat_loop_add(px->loop, &px->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP))) {
        return refuse(px, 503, "cannot watch the origin socket", res, lines, body);
    }
    if (!moat_ok(moat_timer_arm(&px->loop->timers, &px->timer, px->loop->now_ms + t->timeout_ms))) {
        return refuse(px, 503, "cannot arm the origin's timer", res, lines, body);
    }
    res->stream = &px_ops;
    res->stream_h = px;
    return MOAT_RC_OK;
}
