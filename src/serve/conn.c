/*
 * conn.c: a client connection, from accept to close (see conn.h for the state machine).
 *
 * The hot path in the steady state: one read into a pooled block, one parse, one static
 * lookup, the head assembled into the connection's out buffer together with the first chunk of
 * the file, one write through the transport (c->tr: plain TCP or TLS, core/transport.h; one
 * SSL_write for TLS). No allocation per request once the connection's buffers exist. TLS facts
 * (identity, SNI site, ALPN refusal) come from moat_tls_transport_ssl, NULL on the plain port.
 */
#include "serve/conn.h"

#include "core/log.h"
#include "core/sock.h"
#include "http/status.h"
#include "http1/parse.h"
#include "http1/write.h"
#include "serve/accesslog.h"
#include "serve/builtin.h"
#include "serve/crlpub.h"
#include "serve/internal.h"
#include "serve/proxy.h"
#include "serve/route.h"
#include "serve/server.h"
#include "serve/snapshot.h"
#include "serve/static.h"
#include "serve/worker.h"
#include "tls/clientauth.h"
#include "tls/ctx.h"
#include "tls/sni.h"
#include "tls/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FILE_CHUNK 16384 /* one TLS record of plaintext */
/* Head + generated body + file pieces. A listing of 10,000 entries (the static handler's cap)
 * takes about 2 MiB; buffers grow only as far as an answer needs and are freed after it. */
#define OUT_LIMIT (4 * 1024 * 1024)
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (1024 * 1024)

static void conn_run(struct moat_conn *c);
static void on_event(struct moat_watch *w, uint32_t events);
static void on_timer(struct moat_timer *t);
static enum moat_h1_status drop_body_now(struct moat_conn *c);

static const struct moat_conf *conf_of(const struct moat_conn *c)
{
    return c->snap->conf;
}

static void arm(struct moat_conn *c, uint64_t ms)
{
    if (!moat_ok(moat_timer_arm(&c->wk->loop.timers, &c->timer, c->wk->loop.now_ms + ms))) {
        /* Without a timer the connection could live forever: refuse to keep it. */
        moat_conn_close(c);
    }
}

/*
 * How long the timer may wait in a phase that a trickle could stretch (a request body, an
 * answer): `timeout_ms` of inactivity, and never past phase start + timeout_ms + bytes/min_rate,
 * so a client moving one byte a second is cut after about one timeout however long it keeps
 * that up, while a slow but honest transfer gets a second for every min_rate bytes it moved.
 */
static uint64_t phase_moved(const struct moat_conn *c, int writing)
{
    /* Written is not delivered: the kernel takes megabytes into a loopback or fast socket's
     * send buffer at once, which would buy a reader that never reads an hour of grace. What
     * the peer has not acknowledged yet does not count. Asked only when the socket blocked. */
    int queued = 0;
    if (writing && ioctl(c->tr.fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
        (uint64_t)queued < c->phase_bytes) {
        return c->phase_bytes - (uint64_t)queued;
    }
    return writing && queued > 0 ? 0 : c->phase_bytes;
}

static uint64_t rate_delay(const struct moat_conn *c, uint64_t timeout_ms, int writing)
{
    uint64_t rate = conf_of(c)->min_rate, now = c->wk->loop.now_ms;
    if (rate == 0) {
        return timeout_ms;
    }
    uint64_t allowed = c->phase_started_ms + timeout_ms + phase_moved(c, writing) * 1000 / rate;
    if (allowed <= now) {
        return 1;
    }
    return allowed - now < timeout_ms ? allowed - now : timeout_ms;
}

/* Whether the phase's time ran out because it was too slow rather than idle (for the log). */
static int rate_exceeded(const struct moat_conn *c, uint64_t timeout_ms, int writing)
{
    uint64_t rate = conf_of(c)->min_rate;
    return rate > 0 && c->wk->loop.now_ms >=
                           c->phase_started_ms + timeout_ms + phase_moved(c, writing) * 1000 / rate;
}

static void phase_start(struct moat_conn *c)
{
    c->phase_started_ms = c->wk->loop.now_ms;
    c->phase_bytes = 0;
}

static void begin_write(struct moat_conn *c)
{
    c->state = MOAT_CONN_WRITE;
    phase_start(c);
    arm(c, conf_of(c)->write_timeout_ms);
}

/* ---- buffers ---------------------------------------------------------------------------- */

/* Buffers of a connection come from the worker's pool of 4 KiB blocks while it is busy and go
 * back when it is idle, so 10,000 idle keep-alive connections hold no buffer at all. A buffer
 * that grew past one block (a large head, a file chunk) is freed instead. */
static int buf_acquire(struct moat_conn *c, struct moat_buf *b)
{
    if (b->base != NULL) {
        return 1;
    }
    char *block = moat_worker__pool_get(c->wk);
    if (block == NULL) {
        return 0;
    }
    b->base = block;
    b->cap = MOAT_POOL_BLOCK;
    b->rd = b->wr = 0;
    return 1;
}

static void buf_release(struct moat_conn *c, struct moat_buf *b)
{
    if (b->base == NULL) {
        return;
    }
    if (b->cap == MOAT_POOL_BLOCK) {
        moat_worker__pool_put(c->wk, b->base);
    } else {
        free(b->base);
    }
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
}

static int in_acquire(struct moat_conn *c)
{
    return buf_acquire(c, &c->in);
}

static void in_release(struct moat_conn *c)
{
    buf_release(c, &c->in);
}

/* Read what the transport has into `in`. MOAT_OK when bytes arrived. */
static moat_rc fill_in(struct moat_conn *c)
{
    if (moat_buf_room(&c->in) < 1024) {
        size_t want = moat_buf_len(&c->in) + 2048 <= c->in.limit ? 2048 : 1;
        MOAT_TRY(moat_buf_reserve(&c->in, want));
    }
    size_t n;
    MOAT_TRY(moat_transport_read(&c->tr, moat_buf_wrptr(&c->in), moat_buf_room(&c->in), &n));
    c->in.wr += n;
    return MOAT_RC_OK;
}

/* ---- closing ---------------------------------------------------------------------------- */

void moat_conn_close(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_CLOSED) {
        return;
    }
    c->state = MOAT_CONN_CLOSED;
    moat_proxy_free(c);
    moat_timer_disarm(&c->wk->loop.timers, &c->timer);
    moat_loop_del(&c->wk->loop, &c->w);
    if (c->file_fd >= 0) {
        close(c->file_fd);
        c->file_fd = -1;
    }
    moat_transport_close(&c->tr);
    in_release(c);
    buf_release(c, &c->out);
    buf_release(c, &c->meta);
    moat_worker__conn_closed(c->wk, c);
}

void moat_conn_free(struct moat_conn *c)
{
    if (c->snap != NULL) {
        moat_snapshot_unref(c->snap);
    }
    free(c);
}

static void start_linger(struct moat_conn *c)
{
    /* Closing with unread input makes the kernel send RST, which can destroy the response
     * before the client read it. Shut our side, then read and drop what the client still sends
     * for a moment (what nginx calls lingering close). */
    moat_transport_shutdown(&c->tr);
    in_release(c);
    c->state = MOAT_CONN_LINGER;
    arm(c, LINGER_MS);
}

/* ---- responses -------------------------------------------------------------------------- */

static const struct moat_hdr_set *hdr_set_of(const struct moat_conn *c)
{
    if (c->hdrs != NULL) {
        return c->hdrs;
    }
    return c->site != NULL && c->site->hdrs.nsets > 0 ? &c->site->hdrs.sets[0] : NULL;
}

/* The handler's lines, less the fields the `header` rules replace or remove. */
static moat_rc append_kept(struct moat_buf *o, const struct moat_hdr_set *hs,
                           const struct moat_buf *extra)
{
    const char *p = extra ? moat_buf_rdptr(extra) : NULL,
               *end = p + (extra ? moat_buf_len(extra) : 0);
    while (p != NULL && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        const char *colon = memchr(p, ':', (size_t)(next - p));
        if (colon == NULL || !moat_hdr_set_drops(hs, moat_slice_of(p, (size_t)(colon - p)))) {
            MOAT_TRY(moat_buf_append(o, p, (size_t)(next - p)));
        }
        p = next;
    }
    return MOAT_RC_OK;
}

/* Assemble status line + common headers + `extra` header lines + body framing into c->out,
 * then the generated body (unless HEAD). The file region, if any, follows from file_fd. */
static moat_rc build_response(struct moat_conn *c, int status, const struct moat_buf *extra,
                              const struct moat_buf *body, uint64_t content_length, int head_only,
                              int minor)
{
    struct moat_buf *o = &c->out;
    if (!buf_acquire(c, o)) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    const struct moat_hdr_set *hs = hdr_set_of(c);
    int server = hs == NULL || !moat_hdr_set_drops(hs, MOAT_SLICE_LIT("server"));
    MOAT_TRY(moat_h1_head_begin(o, status, time(NULL), server));
    if (extra != NULL && (hs == NULL || hs->ndrop == 0)) {
        MOAT_TRY(moat_buf_append(o, moat_buf_rdptr(extra), moat_buf_len(extra)));
    } else if (extra != NULL) {
        MOAT_TRY(append_kept(o, hs, extra));
    }
    if (hs != NULL) {
        MOAT_TRY(moat_buf_append(o, hs->own, hs->own_len));
    }
    if (!c->plain && c->site != NULL && c->site->hsts_len > 0) {
        MOAT_TRY(moat_buf_append(o, c->site->hsts, c->site->hsts_len));
    }
    MOAT_TRY(moat_h1_head_end(
        o, moat_http_status_bodyless(status) ? MOAT_H1_FRAME_NONE : MOAT_H1_FRAME_LENGTH,
        content_length,
        !c->keep_alive ? MOAT_H1_CONN_CLOSE
        : minor == 0   ? MOAT_H1_CONN_KEEP_ALIVE
                       : MOAT_H1_CONN_DEFAULT));
    c->status = status;
    if (!head_only && body != NULL && moat_buf_len(body) > 0 &&
        !moat_http_status_bodyless(status)) {
        MOAT_TRY(moat_buf_append(o, moat_buf_rdptr(body), moat_buf_len(body)));
        c->bytes_sent = moat_buf_len(body);
    }
    return MOAT_RC_OK;
}

/* A small error page and Connection: close. Used for parse errors, limits and timeouts. */
static void respond_error(struct moat_conn *c, int status, int minor)
{
    c->error_close = 1;
    if (c->file_fd >= 0) {
        close(c->file_fd);
        c->file_fd = -1;
    }
    c->file_left = 0;
    c->keep_alive = 0;
    c->body_left = 0;
    c->body_chunked = 0;
    c->send_continue = 0;
    c->out.rd = c->out.wr = 0;
    /* The worker's scratch buffers: whatever a handler left there is of no use any more. */
    struct moat_buf *extra = &c->wk->scratch_hdrs, *body = &c->wk->scratch_body;
    extra->rd = extra->wr = body->rd = body->wr = 0;
    struct moat_res res;
    if (!moat_ok(moat_res_error_page(&res, status, extra, body)) ||
        !moat_ok(build_response(c, status, extra, body, res.length, 0, minor))) {
        moat_conn_close(c);
        return;
    }
    begin_write(c);
}

/* 403 with the reason in words (HTML-escaped); the connection stays usable. */
static void respond_forbidden(struct moat_conn *c, const char *why, int minor)
{
    struct moat_buf body, extra;
    moat_buf_init(&body, 4096);
    moat_buf_init(&extra, 256);
    moat_rc rc = moat_buf_printf(&body, "<!doctype html>\n<title>403 Forbidden</title>\n"
                                        "<h1>403 Forbidden</h1>\n<p>");
    for (const char *p = why; moat_ok(rc) && *p; p++) {
        switch (*p) {
        case '<':
            rc = moat_buf_append(&body, "&lt;", 4);
            break;
        case '>':
            rc = moat_buf_append(&body, "&gt;", 4);
            break;
        case '&':
            rc = moat_buf_append(&body, "&amp;", 5);
            break;
        case '"':
            rc = moat_buf_append(&body, "&quot;", 6);
            break;
        default:
            rc = moat_buf_append(&body, p, 1);
            break;
        }
    }
    if (moat_ok(rc)) {
        rc = moat_buf_printf(&body, "</p>\n");
    }
    if (moat_ok(rc)) {
        rc = moat_buf_printf(&extra, "Content-Type: text/html; charset=utf-8\r\n");
    }
    if (moat_ok(rc)) {
        rc = build_response(c, 403, &extra, &body, moat_buf_len(&body), 0, minor);
    }
    moat_buf_clear(&body);
    moat_buf_clear(&extra);
    if (!moat_ok(rc)) {
        respond_error(c, 500, minor);
        return;
    }
    begin_write(c);
}

/* ---- request dispatch ------------------------------------------------------------------- */

static void meta_capture(struct moat_conn *c, const struct moat_h1_req *r)
{
    struct moat_buf *m = &c->meta;
    m->rd = m->wr = 0;
    if (m->limit == 0) {
        moat_buf_init(m, 8192);
    }
    if (!buf_acquire(c, m)) {
        return; /* the log line loses its details, the request does not fail */
    }
    const struct moat_field *ref = moat_field_find(r->fields, r->nfields, "referer");
    const struct moat_field *ua = moat_field_find(r->fields, r->nfields, "user-agent");
    moat_slice parts[5] = {r->method, r->target, r->host, ref ? ref->value : MOAT_SLICE_NULL,
                           ua ? ua->value : MOAT_SLICE_NULL};
    for (size_t i = 0; i < 5; i++) {
        size_t len = parts[i].len > 1500 ? 1500 : parts[i].len;
        if (!moat_ok(moat_buf_append(m, parts[i].p, len)) || !moat_ok(moat_buf_append(m, "", 1))) {
            m->rd = m->wr = 0; /* the log line loses its details, the request does not fail */
            return;
        }
    }
}

static moat_slice h1_field(const void *proto, const char *lc_name)
{
    const struct moat_h1_req *r = proto;
    const struct moat_field *f = moat_field_find(r->fields, r->nfields, lc_name);
    return f ? f->value : MOAT_SLICE_NULL;
}

/* The request as handlers see it (http/exchange.h): slices into the parsed HTTP/1 request. */
static struct moat_req exchange_of(const struct moat_h1_req *r)
{
    return (struct moat_req){.method_id = r->method_id,
                             .method = r->method,
                             .target = r->target,
                             .path = r->path,
                             .query = r->query,
                             .authority = r->host,
                             .now = time(NULL),
                             ._field = h1_field,
                             ._proto = r};
}

static void dispatch(struct moat_conn *c, struct moat_h1_req *r)
{
    struct moat_worker *wk = c->wk;
    const struct moat_conf *conf = conf_of(c);
    c->hdrs = NULL;
    c->requests++;
    wk->stats.requests++;
    c->req_started_ms = wk->loop.now_ms;
    c->bytes_sent = 0;
    if (wk->srv->alog_fd >= 0) {
        meta_capture(c, r);
    }
    c->keep_alive = r->keep_alive && !wk->draining && c->requests < conf->max_requests;
    int has_body = r->body == MOAT_H1_BODY_CHUNKED ||
                   (r->body == MOAT_H1_BODY_LENGTH && r->content_length > 0);

    if (has_body && r->body == MOAT_H1_BODY_LENGTH && conf->max_body_bytes > 0 &&
        r->content_length > conf->max_body_bytes) {
        moat_buf_consume(&c->in, r->head_len);
        respond_error(c, 413, r->minor);
        return;
    }

    struct moat_route_conn who = {.snap = c->snap,
                                  .sni_site = c->sni_site,
                                  .ssl = moat_tls_transport_ssl(&c->tr),
                                  .id = c->id,
                                  .peer_text = c->peer_text};
    struct moat_route rt;
    enum moat_route_verdict verdict = moat_route_pick(&who, r->host, r->path, &rt);
    c->site = rt.site;
    c->hdrs = rt.hdrs;
    const struct moat_crlpub *crl = rt.crl;
    if (verdict != MOAT_ROUTE_SERVE) {
        if (has_body) {
            /* The unread body must not be taken for the next request; the lingering close
             * drops what of it still comes. */
            c->keep_alive = 0;
            c->error_close = 1;
        }
        moat_buf_consume(&c->in, r->head_len);
        if (verdict == MOAT_ROUTE_FORBIDDEN) {
            respond_forbidden(c, rt.why, r->minor);
        } else {
            respond_error(c, verdict == MOAT_ROUTE_MISDIRECTED ? 421 : 400, r->minor);
        }
        return;
    }

    if (crl == NULL && c->site->proxy != NULL && !c->plain) { /* plain: redirects only */
        moat_proxy_start(c, r);
        return;
    }

    /* The worker's scratch buffers take the handler's header lines and generated body: kept
     * between requests, so the steady state allocates nothing here. */
    struct moat_buf *extra = &wk->scratch_hdrs, *body = &wk->scratch_body;
    extra->rd = extra->wr = 0;
    body->rd = body->wr = 0;
    /* One handler answers; none of them sees the connection or HTTP/1. */
    moat_handler_fn handle;
    const void *ctx;
    if (crl != NULL) {
        handle = moat_crlpub_handle;
        ctx = crl;
    } else if (c->plain) {
        handle = moat_builtin_redirect;
        ctx = &wk->srv->https_port;
    } else if (r->method_id == MOAT_HTTP_M_OPTIONS && r->target.len == 1 && r->target.p[0] == '*') {
        handle = moat_builtin_options;
        ctx = NULL;
    } else {
        handle = moat_static_handler;
        ctx = &c->site->st;
    }
    struct moat_req req = exchange_of(r);
    struct moat_res res = {.status = 500, .fd = -1};
    moat_rc rc = handle(ctx, &req, &res, extra, body);
    int status = res.status;
    uint64_t content_length = res.length;
    if (moat_ok(rc) && res.fd >= 0) {
        if (r->method_id == MOAT_HTTP_M_HEAD || moat_http_status_bodyless(status)) {
            close(res.fd);
        } else {
            c->file_fd = res.fd;
            c->file_off = res.offset;
            c->file_left = res.length;
        }
    }
    if (status == 308 || status == 204) {
        content_length = 0;
    }
    if (!moat_ok(rc)) {
        moat_buf_consume(&c->in, r->head_len);
        respond_error(c, 500, r->minor);
        return;
    }

    int head_gone = 0;
    if (has_body) {
        c->body_chunked = r->body == MOAT_H1_BODY_CHUNKED;
        c->body_left = c->body_chunked ? 0 : r->content_length;
        if (c->body_chunked) {
            moat_h1_chunked_init(&c->chunked, conf->max_body_bytes, 8192);
        }
        if (status >= 400) {
            /* The answer does not depend on the body, so it goes now (instead of 100 Continue,
             * RFC 9110 §10.1.1). What has arrived of the body is dropped; when that is all of
             * it the connection stays usable, else the answer says close, and the lingering
             * close discards what follows for a bounded time and size. The handler's output
             * is in the worker's scratch buffers, so the head's slices may go first. */
            moat_buf_consume(&c->in, r->head_len);
            head_gone = 1;
            enum moat_h1_status bst = drop_body_now(c);
            if (bst != MOAT_H1_DONE && bst != MOAT_H1_AGAIN) {
                /* Broken framing outranks the handler's answer (RFC 9112 §7.1). */
                wk->stats.bad_requests++;
                respond_error(c, moat_h1_status_code(bst), r->minor);
                return;
            }
            if (bst == MOAT_H1_AGAIN) {
                c->keep_alive = 0;
                c->error_close = 1;
            }
            c->body_chunked = 0;
            c->body_left = 0;
            has_body = 0;
        } else {
            c->send_continue = r->expect_continue;
        }
    }

    rc = build_response(c, status, extra, body, content_length, r->method_id == MOAT_HTTP_M_HEAD,
                        r->minor);
    int minor = r->minor;
    if (body->cap > 16384) {
        moat_buf_clear(body); /* a big listing does not stay pinned in the worker */
    }
    if (!head_gone) {
        moat_buf_consume(&c->in, r->head_len); /* the request's slices die here */
    }
    if (!moat_ok(rc)) {
        respond_error(c, 500, minor);
        return;
    }
    if (has_body) {
        c->state = MOAT_CONN_READ_BODY;
        phase_start(c);
        arm(c, conf->body_timeout_ms);
    } else {
        begin_write(c);
    }
}

/* ---- states ----------------------------------------------------------------------------- */

static void begin_wait(struct moat_conn *c, uint64_t timeout_ms)
{
    c->state = MOAT_CONN_IDLE;
    arm(c, timeout_ms);
}

static void begin_head(struct moat_conn *c)
{
    c->state = MOAT_CONN_READ_HEAD;
    c->head_started_ms = c->wk->loop.now_ms;
    c->head_progress = (struct moat_h1_progress){0};
    /* Measured from the first byte and never extended: a client trickling its head one byte
     * at a time is cut off at head_timeout, however steadily it trickles. */
    arm(c, conf_of(c)->head_timeout_ms);
}

static void response_done(struct moat_conn *c)
{
    if (c->wk->srv->alog_fd >= 0) {
        moat_accesslog_add(c->wk, c);
    }
    if (c->file_fd >= 0) {
        close(c->file_fd);
        c->file_fd = -1;
    }
    c->status = 0;
    c->hdrs = NULL;
    if (!c->keep_alive) {
        /* A complete exchange with nothing more from the client closes at once (FIN, no
         * reset); only an error, or bytes still arriving, needs the lingering close. */
        if (!c->error_close && moat_buf_len(&c->in) == 0 && !moat_transport_finish(&c->tr)) {
            moat_conn_close(c);
        } else {
            start_linger(c);
        }
        return;
    }
    c->out.rd = c->out.wr = 0;
    if (moat_buf_len(&c->in) > 0) {
        if (c->out.cap > 2 * FILE_CHUNK) {
            buf_release(c, &c->out); /* a large listing does not stay pinned */
        }
        begin_head(c); /* pipelined request already here */
    } else {
        in_release(c);
        buf_release(c, &c->out);
        buf_release(c, &c->meta);
        begin_wait(c, conf_of(c)->idle_timeout_ms);
    }
}

/* HANDSHAKE: returns 1 to go on. */
static int step_handshake(struct moat_conn *c)
{
    struct moat_err e = {0};
    int want_words = moat_log_level_now >= MOAT_LVL_INFO;
    moat_rc rc = moat_transport_handshake(&c->tr, want_words ? &e : NULL);
    if (rc.kind == MOAT_E_AGAIN) {
        return 0;
    }
    if (!moat_ok(rc)) {
        c->wk->stats.handshake_failures++;
        if (want_words) {
            char msg[600];
            struct moat_tls_identity id;
            SSL *ssl = moat_tls_transport_ssl(&c->tr);
            moat_tls_identity_of(ssl, &id);
            if (moat_tls_alpn_refused(ssl, msg, sizeof(msg))) {
                moat_log(MOAT_LVL_INFO, c->id,
                         "tls handshake refused: no common application protocol: the client "
                         "offered %s; moat speaks http/1.1 and http/1.0 (peer %s)",
                         msg, c->peer_text);
            } else if (!id.present && strstr(e.msg, "did not return a certificate") != NULL) {
                moat_log(MOAT_LVL_INFO, c->id,
                         "client refused at handshake: no client certificate was presented "
                         "(peer %s)",
                         c->peer_text);
            } else if (moat_tls_client_refusal(ssl, msg, sizeof(msg))) {
                moat_log(MOAT_LVL_INFO, c->id, "client refused at handshake: %s (peer %s)", msg,
                         c->peer_text);
            } else if (id.present && !id.verified) {
                /* The words OpenSSL has ("certificate verify failed") say less than the
                 * verify result does: who was refused, and why. */
                moat_log(MOAT_LVL_INFO, c->id, "client refused at handshake: %s (peer %s)",
                         moat_tls_identity_refusal(&id, 1, msg, sizeof(msg)), c->peer_text);
            } else {
                moat_log(MOAT_LVL_INFO, c->id, "%s (peer %s)", moat_err_str(&e, msg, sizeof(msg)),
                         c->peer_text);
            }
        }
        moat_conn_close(c);
        return 0;
    }
    /* Until a request names its host, answers (errors included) carry the SNI site's
     * headers, HSTS among them. */
    c->site = moat_tls_sni_site_of(moat_tls_transport_ssl(&c->tr));
    c->sni_site = c->site;
    /* The first request gets the head timeout, not the idle one: a client that completes a
     * handshake and then says nothing is not a keep-alive client. */
    begin_wait(c, conf_of(c)->head_timeout_ms);
    return 1;
}

static int step_idle(struct moat_conn *c)
{
    if (!in_acquire(c)) {
        moat_conn_close(c);
        return 0;
    }
    moat_rc rc = fill_in(c);
    if (rc.kind == MOAT_E_AGAIN) {
        in_release(c); /* an idle connection holds no read buffer, ours or OpenSSL's */
        moat_transport_idle(&c->tr);
        return 0;
    }
    if (!moat_ok(rc)) {
        moat_conn_close(c);
        return 0;
    }
    begin_head(c);
    return 1;
}

static int step_read_head(struct moat_conn *c)
{
    struct moat_h1_req *r = &c->wk->req;
    const struct moat_h1_limits *lim = &c->snap->limits;
    for (;;) {
        moat_h1_req_init(r);
        moat_h1_req_resume(r, &c->head_progress);
        enum moat_h1_status st =
            moat_h1_parse_request(r, moat_buf_rdptr(&c->in), moat_buf_len(&c->in), lim);
        moat_h1_req_save(r, &c->head_progress);
        if (st != MOAT_H1_AGAIN) {
            c->head_progress = (struct moat_h1_progress){0};
        }
        if (st == MOAT_H1_DONE) {
            dispatch(c, r);
            return c->state != MOAT_CONN_CLOSED;
        }
        if (st != MOAT_H1_AGAIN) {
            c->wk->stats.bad_requests++;
            moat_log(MOAT_LVL_DEBUG, c->id, "bad request: %s at byte %zu (peer %s)",
                     r->err_what ? r->err_what : "malformed", r->err_pos, c->peer_text);
            if (c->wk->srv->alog_fd >= 0) {
                c->meta.rd = c->meta.wr = 0;
            }
            c->requests++;
            c->req_started_ms = c->wk->loop.now_ms;
            respond_error(c, moat_h1_status_code(st), 1);
            return 1;
        }
        moat_rc rc = fill_in(c);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (rc.kind == MOAT_E_LIMIT) {
            respond_error(c, 431, 1);
            return 1;
        }
        if (!moat_ok(rc)) {
            moat_conn_close(c); /* the client left mid-head: nobody to answer */
            return 0;
        }
    }
}

/* Drop what `in` holds of the request body: MOAT_H1_DONE once all of it went, MOAT_H1_AGAIN when
 * more is to come, or the error a malformed chunked body gives. */
static enum moat_h1_status drop_body(struct moat_conn *c)
{
    size_t len = moat_buf_len(&c->in);
    if (c->body_chunked && len > 0) {
        size_t consumed = 0, produced = 0;
        enum moat_h1_status st =
            moat_h1_chunked_decode(&c->chunked, moat_buf_rdptr(&c->in), len, &consumed, &produced);
        moat_buf_consume(&c->in, consumed);
        c->phase_bytes += consumed;
        if (st != MOAT_H1_DONE) {
            return st;
        }
        c->body_chunked = 0;
        return MOAT_H1_DONE;
    }
    if (c->body_chunked) {
        return MOAT_H1_AGAIN;
    }
    size_t n = len < c->body_left ? len : (size_t)c->body_left;
    moat_buf_consume(&c->in, n);
    c->body_left -= n;
    c->phase_bytes += n;
    return c->body_left == 0 ? MOAT_H1_DONE : MOAT_H1_AGAIN;
}

/* Drop the request body as far as it has arrived, without waiting: MOAT_H1_DONE when all of it
 * has, MOAT_H1_AGAIN when more is to come (or the client left), or a malformed body's error. */
static enum moat_h1_status drop_body_now(struct moat_conn *c)
{
    for (;;) {
        enum moat_h1_status st = drop_body(c);
        if (st != MOAT_H1_AGAIN) {
            return st;
        }
        if (!moat_ok(fill_in(c))) {
            return MOAT_H1_AGAIN;
        }
    }
}

static int step_read_body(struct moat_conn *c)
{
    if (c->send_continue) {
        size_t n;
        moat_rc rc = moat_transport_write(&c->tr, MOAT_H1_CONTINUE, MOAT_H1_CONTINUE_LEN, &n);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (!moat_ok(rc) || n != MOAT_H1_CONTINUE_LEN) {
            moat_conn_close(c);
            return 0;
        }
        c->send_continue = 0;
    }
    for (;;) {
        enum moat_h1_status st = drop_body(c);
        if (st == MOAT_H1_DONE) {
            begin_write(c);
            return 1;
        }
        if (st != MOAT_H1_AGAIN) {
            c->wk->stats.bad_requests++;
            respond_error(c, moat_h1_status_code(st), 1);
            return 1;
        }
        moat_rc rc = fill_in(c);
        if (rc.kind == MOAT_E_AGAIN) {
            arm(c, rate_delay(c, conf_of(c)->body_timeout_ms, 0));
            return 0;
        }
        if (!moat_ok(rc)) {
            moat_conn_close(c);
            return 0;
        }
    }
}

/* Put the next piece of the file behind whatever is still in `out`. */
static int refill_from_file(struct moat_conn *c)
{
    /* Behind a head: one record's worth, so head and first bytes leave together. Alone: 64 KiB
     * per pread (four records per SSL_write), a quarter of the reads of 16 KiB pieces. */
    size_t piece = moat_buf_len(&c->out) > 0 ? FILE_CHUNK : 4 * FILE_CHUNK;
    size_t want = c->file_left < piece ? (size_t)c->file_left : piece;
    if (c->out.limit == 0) {
        moat_buf_init(&c->out, OUT_LIMIT);
    }
    if (!moat_ok(moat_buf_reserve(&c->out, want))) {
        return 0;
    }
    ssize_t n = pread(c->file_fd, moat_buf_wrptr(&c->out), want, (off_t)c->file_off);
    if (n <= 0) {
        /* The file shrank under us: the length is already promised, so the only honest
         * thing left is to close the connection. */
        moat_log(MOAT_LVL_WARN, c->id, "file shrank or failed while sending; closing");
        return 0;
    }
    c->out.wr += (size_t)n;
    c->file_off += (uint64_t)n;
    c->file_left -= (uint64_t)n;
    c->bytes_sent += (uint64_t)n;
    return 1;
}

static int step_write(struct moat_conn *c)
{
    for (;;) {
        /* Coalesce: the first file chunk rides in the same record as the head. */
        if (c->file_left > 0 && moat_buf_len(&c->out) < FILE_CHUNK / 2) {
            if (!refill_from_file(c)) {
                moat_conn_close(c);
                return 0;
            }
        }
        size_t len = moat_buf_len(&c->out);
        if (len == 0) {
            response_done(c);
            return c->state != MOAT_CONN_CLOSED;
        }
        size_t n;
        moat_rc rc = moat_transport_write(&c->tr, moat_buf_rdptr(&c->out), len, &n);
        if (rc.kind == MOAT_E_AGAIN) {
            arm(c, rate_delay(c, conf_of(c)->write_timeout_ms, 1));
            return 0;
        }
        if (!moat_ok(rc)) {
            moat_conn_close(c);
            return 0;
        }
        moat_buf_consume(&c->out, n);
        c->phase_bytes += n;
    }
}

static int step_linger(struct moat_conn *c)
{
    char scratch[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(c->tr.fd, scratch, sizeof(scratch), 0);
        if (n > 0) {
            total += (size_t)n;
            if (total > LINGER_MAX_BYTES) {
                moat_conn_close(c);
                return 0;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        moat_conn_close(c);
        return 0;
    }
}

static void conn_run(struct moat_conn *c)
{
    int go = 1;
    while (go) {
        switch (c->state) {
        case MOAT_CONN_HANDSHAKE:
            go = step_handshake(c);
            break;
        case MOAT_CONN_IDLE:
            if (c->wk->draining) {
                moat_conn_close(c);
                return;
            }
            go = step_idle(c);
            break;
        case MOAT_CONN_READ_HEAD:
            go = step_read_head(c);
            break;
        case MOAT_CONN_READ_BODY:
            go = step_read_body(c);
            break;
        case MOAT_CONN_WRITE:
            go = step_write(c);
            break;
        case MOAT_CONN_LINGER:
            go = step_linger(c);
            break;
        case MOAT_CONN_PROXY:
            go = moat_proxy_step(c);
            break;
        case MOAT_CONN_CLOSED:
        default:
            return;
        }
    }
}

static void on_event(struct moat_watch *w, uint32_t events)
{
    struct moat_conn *c = w->data;
    if ((events & (EPOLLERR | EPOLLHUP)) && c->state != MOAT_CONN_WRITE &&
        c->state != MOAT_CONN_READ_HEAD && c->state != MOAT_CONN_READ_BODY &&
        c->state != MOAT_CONN_PROXY) {
        moat_conn_close(c);
        return;
    }
    conn_run(c);
}

static void on_timer(struct moat_timer *t)
{
    struct moat_conn *c = t->data;
    c->wk->stats.timeouts++;
    switch (c->state) {
    case MOAT_CONN_READ_HEAD:
        moat_log(MOAT_LVL_DEBUG, c->id, "request head not complete within %llu ms (peer %s)",
                 (unsigned long long)conf_of(c)->head_timeout_ms, c->peer_text);
        c->requests++;
        c->req_started_ms = c->head_started_ms;
        c->meta.rd = c->meta.wr = 0;
        respond_error(c, 408, 1);
        conn_run(c);
        return;
    case MOAT_CONN_READ_BODY: {
        uint64_t tmo = conf_of(c)->body_timeout_ms;
        moat_log(MOAT_LVL_INFO, c->id, "request body %s after %llu bytes; closing (peer %s)",
                 rate_exceeded(c, tmo, 0) ? "slower than limits.min_rate"
                                          : "stalled (timeouts.body)",
                 (unsigned long long)c->phase_bytes, c->peer_text);
        respond_error(c, 408, 1);
        conn_run(c);
        return;
    }
    case MOAT_CONN_WRITE: {
        uint64_t tmo = conf_of(c)->write_timeout_ms;
        moat_log(
            MOAT_LVL_INFO, c->id, "client %s taking the answer after %llu bytes; closing (peer %s)",
            rate_exceeded(c, tmo, 1) ? "slower than limits.min_rate" : "stalled (timeouts.write)",
            (unsigned long long)c->phase_bytes, c->peer_text);
        moat_sock_reset_on_close(c->tr.fd);
        moat_conn_close(c);
        return;
    }
    case MOAT_CONN_PROXY:
        moat_proxy_timeout(c);
        return;
    case MOAT_CONN_HANDSHAKE:
        moat_log(MOAT_LVL_DEBUG, c->id, "tls handshake timed out (peer %s)", c->peer_text);
        moat_conn_close(c);
        return;
    case MOAT_CONN_IDLE:
        moat_transport_shutdown(&c->tr);
        moat_conn_close(c);
        return;
    default:
        moat_conn_close(c);
        return;
    }
}

void moat_conn_drain(struct moat_conn *c)
{
    if (c->state == MOAT_CONN_IDLE || c->state == MOAT_CONN_HANDSHAKE) {
        moat_transport_shutdown(&c->tr);
        moat_conn_close(c);
        return;
    }
    c->keep_alive = 0;
}

void moat_conn_accept(struct moat_worker *wk, int fd, const struct sockaddr_storage *peer,
                      int plain)
{
    struct moat_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->wk = wk;
    c->id = ++wk->next_conn_id * 64 + wk->id; /* unique across workers, ordered within one */
    moat_transport_plain_init(&c->tr, fd);
    c->file_fd = -1;
    c->plain = plain;
    moat_sock_peer_text(peer, c->peer_text, sizeof(c->peer_text));
    c->snap = moat_snapshot_ref(wk->snap);
    moat_buf_init(&c->in, c->snap->limits.max_head_bytes + 4096);
    moat_buf_init(&c->out, OUT_LIMIT);
    moat_timer_init(&c->timer, on_timer, c);
    c->w.fd = fd;
    c->w.cb = on_event;
    c->w.data = c;
    if (!plain) {
        /* The default context until SNI picks the site's (tls/sni.c swaps it). */
        if (!moat_ok(moat_tls_transport_server(&c->tr, fd, moat_tls_sni_default_ctx(c->snap->sni),
                                               NULL))) {
            moat_transport_close(&c->tr); /* not yet linked anywhere */
            moat_conn_free(c);
            return;
        }
    }
    /* link */
    c->next = wk->conns;
    if (wk->conns) {
        wk->conns->prev = c;
    }
    wk->conns = c;
    wk->nconns++;
    wk->stats.accepted++;
    if (!moat_ok(moat_loop_add(&wk->loop, &c->w, EPOLLIN | EPOLLOUT | EPOLLRDHUP))) {
        moat_conn_close(c);
        return;
    }
    if (plain) {
        begin_wait(c, conf_of(c)->head_timeout_ms);
    } else {
        c->state = MOAT_CONN_HANDSHAKE;
        arm(c, conf_of(c)->handshake_timeout_ms);
    }
}

/* ---- for the other handlers of serve/ (internal.h) -------------------------------------- */

void moat_serve__run(struct moat_conn *c)
{
    conn_run(c);
}

void moat_serve__arm(struct moat_conn *c, uint64_t ms)
{
    arm(c, ms);
}

void moat_serve__phase_start(struct moat_conn *c)
{
    phase_start(c);
}

void moat_serve__arm_rate(struct moat_conn *c, uint64_t timeout_ms, int writing)
{
    arm(c, rate_delay(c, timeout_ms, writing));
}

int moat_serve__rate_exceeded(const struct moat_conn *c, uint64_t timeout_ms, int writing)
{
    return rate_exceeded(c, timeout_ms, writing);
}

moat_rc moat_serve__fill_in(struct moat_conn *c)
{
    return fill_in(c);
}

void moat_serve__respond_error(struct moat_conn *c, int status, int minor)
{
    respond_error(c, status, minor);
}

void moat_serve__response_done(struct moat_conn *c)
{
    response_done(c);
}

const struct moat_hdr_set *moat_serve__headers(const struct moat_conn *c)
{
    return hdr_set_of(c);
}
