/*
 * server.c: the HTTP/1.1 server session (see server.h for the states).
 *
 * The hot path in the steady state: one read into a pooled block, one parse, the connection's
 * dispatch (route + handler), the head assembled into `out` together with the first piece of
 * the file, one write through the transport (one SSL_write for TLS). No allocation per request
 * once the connection's buffers exist.
 *
 * A streaming handler (the proxy) takes the exchange through the moat_exch ops at the end of
 * this file. Calls in either direction never re-enter the caller: the handler's ready/abort are
 * called only from run(), and the exchange ops called from inside run() only change the state,
 * which run() then follows; called from the handler's own events they run the session
 * themselves once the handler let go (finish, fail).
 */
#include "http1/server.h"

#include "core/log.h"
#include "core/sock.h"
#include "http/status.h"
#include "http1/write.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
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
#define STREAM_PIECE 16384 /* a streaming handler may queue this much before it waits */
/* How long a keep-alive connection between requests keeps the transport's buffers. */
#define IDLE_KEEP_MS 250

#define WAIT_BODY 1
#define WAIT_ROOM 2

static void run(struct moat_h1s *s);
static void end(struct moat_h1s *s);
static void on_timer(struct moat_timer *t);
static void bufs_release(struct moat_h1s *s);
static const struct moat_exch_ops exch_ops;

static struct moat_h1s *of_exch(struct moat_exch *ex)
{
    return (struct moat_h1s *)((char *)ex - offsetof(struct moat_h1s, ex));
}

/* ---- timers ----------------------------------------------------------------------------- */

static void arm(struct moat_h1s *s, uint64_t ms)
{
    struct moat_loop *l = s->env.loop;
    if (!moat_ok(moat_timer_arm(&l->timers, &s->timer, l->now_ms + ms))) {
        /* Without a timer the connection could live forever: refuse to keep it. The timer
         * wheel only fails on a bug, so ending here (inside whatever called) is acceptable. */
        moat_log(MOAT_LVL_ERROR, s->env.conn_id, "cannot arm the connection's timer; closing");
        s->state = MOAT_H1S_ENDED;
    }
}

static void disarm(struct moat_h1s *s)
{
    moat_timer_disarm(&s->env.loop->timers, &s->timer);
}

/*
 * How long the timer may wait in a phase that a trickle could stretch (a request body, an
 * answer): `timeout_ms` of inactivity, and never past phase start + timeout_ms + bytes/min_rate,
 * so a client moving one byte a second is cut after about one timeout however long it keeps
 * that up, while a slow but honest transfer gets a second for every min_rate bytes it moved.
 */
static uint64_t phase_moved(const struct moat_h1s *s, int writing)
{
    /* Written is not delivered: the kernel takes megabytes into a loopback or fast socket's
     * send buffer at once, which would buy a reader that never reads an hour of grace. What
     * the peer has not acknowledged yet does not count. Asked only when the socket blocked. */
    int queued = 0;
    if (writing && s->tr->fd >= 0 && ioctl(s->tr->fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
        (uint64_t)queued < s->phase_bytes) {
        return s->phase_bytes - (uint64_t)queued;
    }
    return writing && queued > 0 ? 0 : s->phase_bytes;
}

static uint64_t rate_delay(const struct moat_h1s *s, uint64_t timeout_ms, int writing)
{
    uint64_t rate = s->conf->min_rate, now = s->env.loop->now_ms;
    if (rate == 0 || s->tunnel) { /* a tunnel's bytes come when its protocol has some */
        return timeout_ms;
    }
    uint64_t allowed = s->phase_started_ms + timeout_ms + phase_moved(s, writing) * 1000 / rate;
    if (allowed <= now) {
        return 1;
    }
    return allowed - now < timeout_ms ? allowed - now : timeout_ms;
}

/* Whether the phase's time ran out because it was too slow rather than idle (for the log). */
static int rate_exceeded(const struct moat_h1s *s, uint64_t timeout_ms, int writing)
{
    uint64_t rate = s->conf->min_rate;
    return rate > 0 && s->env.loop->now_ms >=
                           s->phase_started_ms + timeout_ms + phase_moved(s, writing) * 1000 / rate;
}

static void phase_start(struct moat_h1s *s)
{
    s->phase_started_ms = s->env.loop->now_ms;
    s->phase_bytes = 0;
}

static void begin_write(struct moat_h1s *s)
{
    s->state = MOAT_H1S_WRITE;
    phase_start(s);
    arm(s, s->conf->write_timeout_ms);
}

/* An I/O step that did not finish: "would block" waits for the socket, with the phase's timer
 * (`timeout_ms`, and limits.min_rate for a body or an answer); a failure ends the session.
 * Returns 0: the state machine stops here. */
static int blocked(struct moat_h1s *s, moat_rc rc, uint64_t timeout_ms, int writing)
{
    if (rc.kind == MOAT_E_AGAIN) {
        arm(s, rate_delay(s, timeout_ms, writing));
    } else {
        end(s);
    }
    return 0;
}

/* ---- buffers ---------------------------------------------------------------------------- */

static int acquire(struct moat_h1s *s, struct moat_buf *b)
{
    return moat_ok(moat_pool_buf_acquire(s->env.pool, b));
}

static void release(struct moat_h1s *s, struct moat_buf *b)
{
    moat_pool_buf_release(s->env.pool, b);
}

/* Read what the transport has into `in`. MOAT_OK when bytes arrived. */
static moat_rc fill_in(struct moat_h1s *s)
{
    if (!acquire(s, &s->in)) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    if (moat_buf_room(&s->in) < 1024) {
        size_t want = moat_buf_len(&s->in) + 2048 <= s->in.limit ? 2048 : 1;
        MOAT_TRY(moat_buf_reserve(&s->in, want));
    }
    size_t n;
    MOAT_TRY(moat_transport_read(s->tr, moat_buf_wrptr(&s->in), moat_buf_room(&s->in), &n));
    s->in.wr += n;
    return MOAT_RC_OK;
}

/* ---- ending ----------------------------------------------------------------------------- */

/* A streaming handler lets go (its own call) or is let go (abort). */
static void detach(struct moat_h1s *s, int abort_it)
{
    const struct moat_stream_ops *ops = s->sops;
    void *h = s->sh;
    s->sops = NULL;
    s->sh = NULL;
    if (abort_it && ops != NULL) {
        ops->abort(h);
    }
}

static void file_done(struct moat_h1s *s)
{
    moat_res_file_done(s->file_fd, s->file_release, s->file_h);
    s->file_fd = -1;
    s->file_release = NULL;
    s->file_h = NULL;
}

static void release_all(struct moat_h1s *s)
{
    detach(s, 1);
    disarm(s);
    if (s->file_fd >= 0) {
        file_done(s);
    }
    release(s, &s->in);
    release(s, &s->out);
    release(s, &s->meta);
    moat_buf_clear(&s->trailers);
}

void moat_h1s_clear(struct moat_h1s *s)
{
    release_all(s);
    s->state = MOAT_H1S_ENDED;
}

/* The session is over: the connection closes (the host frees it later). */
static void end(struct moat_h1s *s)
{
    if (s->state == MOAT_H1S_ENDED && s->env.host == NULL) {
        return;
    }
    release_all(s);
    s->state = MOAT_H1S_ENDED;
    const struct moat_session_host *host = s->env.host;
    s->env.host = NULL; /* ended once */
    if (host != NULL) {
        host->ended(s->env.host_data);
    }
}

static void start_linger(struct moat_h1s *s)
{
    /* Closing with unread input makes the kernel send RST, which can destroy the answer
     * before the client read it. Shut our side, then read and drop what the client still sends
     * for a moment (what nginx calls lingering close). */
    moat_transport_shutdown(s->tr);
    release(s, &s->in);
    s->state = MOAT_H1S_LINGER;
    arm(s, LINGER_MS);
}

/* ---- answers ---------------------------------------------------------------------------- */

/* Status line, Date, Server, the fields (the host's decoration of `lines`), framing and the
 * connection field into `out`. `length` -1: not known ahead. Sets s->st_chunked when the body
 * must go chunk-encoded. */
static moat_rc build_head(struct moat_h1s *s, int status, const struct moat_buf *lines,
                          int64_t length, unsigned flags)
{
    struct moat_buf *o = &s->out;
    if (!acquire(s, o)) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    void *hd = s->env.host_data;
    MOAT_TRY(moat_h1_head_begin(o, status, time(NULL), s->env.host->server_field(hd, &s->ref)));
    MOAT_TRY(s->env.host->decorate(hd, &s->ref, o, lines, flags));
    enum moat_h1_frame frame = MOAT_H1_FRAME_LENGTH;
    s->st_chunked = 0;
    if (moat_http_status_bodyless(status) || (length < 0 && s->head_only)) {
        frame = MOAT_H1_FRAME_NONE;
    } else if (length < 0 && s->minor == 1) {
        frame = MOAT_H1_FRAME_CHUNKED;
        s->st_chunked = 1;
    } else if (length < 0) {
        frame = MOAT_H1_FRAME_NONE;
        s->keep_alive = 0; /* an HTTP/1.0 client learns the end by the close */
    }
    s->status = status;
    return moat_h1_head_end(o, frame, length < 0 ? 0 : (uint64_t)length,
                            !s->keep_alive  ? MOAT_H1_CONN_CLOSE
                            : s->minor == 0 ? MOAT_H1_CONN_KEEP_ALIVE
                                            : MOAT_H1_CONN_DEFAULT);
}

/* The head, then the generated body unless HEAD. A file region follows from file_fd. */
static moat_rc build_answer(struct moat_h1s *s, int status, const struct moat_buf *lines,
                            const struct moat_buf *body, uint64_t length, unsigned flags)
{
    MOAT_TRY(build_head(s, status, lines, (int64_t)length, flags));
    if (!s->head_only && body != NULL && moat_buf_len(body) > 0 &&
        !moat_http_status_bodyless(status)) {
        MOAT_TRY(moat_buf_append(&s->out, moat_buf_rdptr(body), moat_buf_len(body)));
        s->bytes_sent = moat_buf_len(body);
    }
    return MOAT_RC_OK;
}

/* A small error page and Connection: close. Used for parse errors, limits and timeouts. */
static void respond_error(struct moat_h1s *s, int status)
{
    s->error_close = 1;
    if (s->file_fd >= 0) {
        file_done(s);
    }
    s->file_left = 0;
    s->keep_alive = 0;
    s->body_left = 0;
    s->body_chunked = 0;
    s->body_done = 1;
    s->send_continue = 0;
    s->head_only = 0;
    s->out.rd = s->out.wr = 0;
    /* Whatever a handler left in the scratch buffers is of no use any more. */
    struct moat_buf *lines = &s->env.scratch->fields, *body = &s->env.scratch->body;
    lines->rd = lines->wr = body->rd = body->wr = 0;
    struct moat_res res;
    if (!moat_ok(moat_res_error_page(&res, status, lines, body)) ||
        !moat_ok(build_answer(s, status, lines, body, res.length, 0))) {
        end(s);
        return;
    }
    begin_write(s);
}

/* ---- request dispatch ------------------------------------------------------------------- */

static void meta_capture(struct moat_h1s *s, const struct moat_h1_req *r)
{
    struct moat_buf *m = &s->meta;
    m->rd = m->wr = 0;
    if (m->limit == 0) {
        moat_buf_init(m, 8192);
    }
    if (!acquire(s, m)) {
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

static void meta_parts(const struct moat_h1s *s, const char *out[5])
{
    const char *p = s->meta.base ? moat_buf_rdptr(&s->meta) : NULL;
    const char *end_ = p ? p + moat_buf_len(&s->meta) : NULL;
    for (int i = 0; i < 5; i++) {
        if (p != NULL && p < end_) {
            out[i] = p;
            p += strlen(p) + 1;
        } else {
            out[i] = "";
        }
    }
}

/* Drop what `in` holds of the request body: MOAT_H1_DONE once all of it went, MOAT_H1_AGAIN when
 * more is to come, or the error a malformed chunked body gives. */
static enum moat_h1_status drop_body(struct moat_h1s *s)
{
    if (s->body_done) {
        return MOAT_H1_DONE;
    }
    size_t len = moat_buf_len(&s->in);
    if (s->body_chunked && len > 0) {
        size_t consumed = 0, produced = 0;
        enum moat_h1_status st =
            moat_h1_chunked_decode(&s->chunked, moat_buf_rdptr(&s->in), len, &consumed, &produced);
        moat_buf_consume(&s->in, consumed);
        s->phase_bytes += consumed;
        if (st != MOAT_H1_DONE) {
            return st;
        }
        s->body_done = 1;
        return MOAT_H1_DONE;
    }
    if (s->body_chunked) {
        return MOAT_H1_AGAIN;
    }
    size_t n = len < s->body_left ? len : (size_t)s->body_left;
    moat_buf_consume(&s->in, n);
    s->body_left -= n;
    s->phase_bytes += n;
    s->body_done = s->body_left == 0;
    return s->body_done ? MOAT_H1_DONE : MOAT_H1_AGAIN;
}

/* Drop the request body as far as it has arrived, without waiting: MOAT_H1_DONE when all of it
 * has, MOAT_H1_AGAIN when more is to come (or the client left), or a malformed body's error. */
static enum moat_h1_status drop_body_now(struct moat_h1s *s)
{
    for (;;) {
        enum moat_h1_status st = drop_body(s);
        if (st != MOAT_H1_AGAIN) {
            return st;
        }
        if (!moat_ok(fill_in(s))) {
            return MOAT_H1_AGAIN;
        }
    }
}

/* The protocols an Upgrade request names (RFC 9110 §7.8), for the handler to look at. */
static moat_slice upgrade_value(const struct moat_h1_req *r)
{
    const struct moat_field *f = moat_field_find(r->fields, r->nfields, "upgrade");
    return f != NULL ? moat_slice_trim_ows(f->value) : MOAT_SLICE_NULL;
}

static void dispatch(struct moat_h1s *s, struct moat_h1_req *r)
{
    const struct moat_h1s_conf *conf = s->conf;
    s->requests++;
    s->env.stats->requests++;
    s->req_started_ms = s->env.loop->now_ms;
    s->bytes_sent = 0;
    s->minor = r->minor;
    s->head_only = r->method_id == MOAT_HTTP_M_HEAD;
    s->method = r->method_id;
    if (s->env.keep_meta) {
        meta_capture(s, r);
    }
    s->keep_alive = r->keep_alive && !s->draining && s->requests < conf->max_requests;
    int has_body = r->body == MOAT_H1_BODY_CHUNKED ||
                   (r->body == MOAT_H1_BODY_LENGTH && r->content_length > 0);
    s->body_chunked = has_body && r->body == MOAT_H1_BODY_CHUNKED;
    s->body_left = has_body && !s->body_chunked ? r->content_length : 0;
    s->body_done = !has_body;
    s->send_continue = 0;

    if (has_body && !s->body_chunked && conf->max_body_bytes > 0 &&
        r->content_length > conf->max_body_bytes) {
        moat_buf_consume(&s->in, r->head_len);
        respond_error(s, 413);
        return;
    }
    if (s->body_chunked) {
        moat_h1_chunked_init(&s->chunked, conf->max_body_bytes, 8192);
    }

    /* The worker's scratch buffers take the handler's header lines and generated body: kept
     * between requests, so the steady state allocates nothing here. */
    struct moat_buf *lines = &s->env.scratch->fields, *body = &s->env.scratch->body;
    lines->rd = lines->wr = 0;
    body->rd = body->wr = 0;
    struct moat_req req = {.method_id = r->method_id,
                           .method = r->method,
                           .target = r->target,
                           .path = r->path,
                           .query = r->query,
                           .authority = r->host,
                           .fields = r->fields,
                           .nfields = r->nfields,
                           .upgrade = r->upgrade ? upgrade_value(r) : MOAT_SLICE_NULL,
                           .has_body = has_body,
                           .body_length = s->body_chunked ? -1 : (int64_t)s->body_left,
                           .now = time(NULL),
                           .conn_id = s->env.conn_id,
                           .peer = s->env.peer,
                           .ends = s->env.ends,
                           .secure = s->env.secure,
                           .tls = s->env.tls,
                           .exch = &s->ex};
    moat_req_normalize(&req, s->env.scratch->npath);
    struct moat_res res = {.status = 500, .fd = -1};
    moat_rc rc = s->env.host->dispatch(s->env.host_data, &s->ref, &req, &res, lines, body);
    if (moat_ok(rc) && res.stream != NULL) {
        /* The handler answers over time; the head's slices die here (it copied what it
         * needs). 100 Continue waits for its first read of the body. */
        moat_buf_consume(&s->in, r->head_len);
        s->sops = res.stream;
        s->sh = res.stream_h;
        s->st_started = s->st_finished = s->st_waiting = 0;
        s->upgrade_asked = r->upgrade && !has_body;
        s->tunnel = 0;
        s->trailers.rd = s->trailers.wr = 0;
        if (s->body_chunked) {
            s->chunked.keep_trailers = &s->trailers; /* storage only when some come */
        }
        s->send_continue = r->expect_continue && has_body;
        s->state = MOAT_H1S_STREAM;
        bufs_release(s); /* a stream may wait long (a tunnel, a slow origin) */
        phase_start(s);
        disarm(s); /* waiting for the handler is the handler's to time */
        return;
    }
    int status = res.status;
    uint64_t content_length = res.length;
    /* A small cached file's bytes (res.bytes) go into `out` straight from the cache, with the
     * head; the cache's entry is let go once they are copied (or the answer failed). */
    const struct moat_buf *send_body = body;
    struct moat_buf bview;
    if (moat_ok(rc) && res.bytes != NULL) {
        bview = (struct moat_buf){.base = (char *)res.bytes,
                                  .cap = (size_t)res.length,
                                  .wr = (size_t)res.length,
                                  .limit = (size_t)res.length};
        send_body = &bview;
    }
    if (moat_ok(rc) && res.fd >= 0) {
        if (s->head_only || moat_http_status_bodyless(status)) {
            moat_res_file_done(res.fd, res.fd_release, res.fd_h);
        } else {
            s->file_fd = res.fd;
            s->file_release = res.fd_release;
            s->file_h = res.fd_h;
            s->file_off = res.offset;
            s->file_left = res.length;
        }
    }
    if (status == 308 || status == 204) {
        content_length = 0;
    }
    if (!moat_ok(rc)) {
        moat_buf_consume(&s->in, r->head_len);
        respond_error(s, 500);
        return;
    }
    if (res.close) {
        s->keep_alive = 0;
        s->error_close = 1; /* an unread body must not be taken for the next request */
    }

    int head_gone = 0;
    if (has_body) {
        if (status >= 400) {
            /* The answer does not depend on the body, so it goes now (instead of 100 Continue,
             * RFC 9110 §10.1.1). What has arrived of the body is dropped; when that is all of
             * it the connection stays usable, else the answer says close, and the lingering
             * close discards what follows for a bounded time and size. The handler's output
             * is in the worker's scratch buffers, so the head's slices may go first. */
            moat_buf_consume(&s->in, r->head_len);
            head_gone = 1;
            enum moat_h1_status bst = drop_body_now(s);
            if (bst != MOAT_H1_DONE && bst != MOAT_H1_AGAIN) {
                /* Broken framing outranks the handler's answer (RFC 9112 §7.1). */
                s->env.stats->bad_requests++;
                if (send_body == &bview) {
                    moat_res_file_done(-1, res.fd_release, res.fd_h);
                }
                respond_error(s, moat_h1_status_code(bst));
                return;
            }
            if (bst == MOAT_H1_AGAIN) {
                s->keep_alive = 0;
                s->error_close = 1;
            }
            s->body_done = 1;
            has_body = 0;
        } else {
            s->send_continue = r->expect_continue;
        }
    }

    rc = build_answer(s, status, lines, send_body, content_length, res.flags);
    if (send_body == &bview) {
        moat_res_file_done(-1, res.fd_release, res.fd_h);
    }
    if (body->cap > 16384) {
        moat_buf_clear(body); /* a big listing does not stay pinned in the worker */
    }
    if (!head_gone) {
        moat_buf_consume(&s->in, r->head_len); /* the request's slices die here */
    }
    if (!moat_ok(rc)) {
        respond_error(s, 500);
        return;
    }
    if (has_body) {
        s->state = MOAT_H1S_BODY;
        phase_start(s);
        arm(s, conf->body_timeout_ms);
    } else {
        begin_write(s);
    }
}

/* ---- states ----------------------------------------------------------------------------- */

static void begin_wait(struct moat_h1s *s, uint64_t timeout_ms)
{
    s->state = MOAT_H1S_IDLE;
    s->wait_until_ms = s->env.loop->now_ms + timeout_ms;
    arm(s, timeout_ms);
}

/* The transport gives its buffers back after each read and write again (the default). */
static void bufs_release(struct moat_h1s *s)
{
    if (s->bufs_kept) {
        s->bufs_kept = 0;
        moat_transport_keep(s->tr, 0);
    }
}

static void begin_head(struct moat_h1s *s)
{
    s->state = MOAT_H1S_HEAD;
    s->head_started_ms = s->env.loop->now_ms;
    s->head_progress = (struct moat_h1_progress){0};
    /* Measured from the first byte and never extended: a client trickling its head one byte
     * at a time is cut off at head_timeout, however steadily it trickles. */
    arm(s, s->conf->head_timeout_ms);
}

static void answer_done(struct moat_h1s *s)
{
    struct moat_answer_log a = {.status = s->status,
                                .bytes = s->bytes_sent,
                                .started_ms = s->req_started_ms,
                                .proto = s->minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
                                .method = s->method};
    meta_parts(s, a.parts);
    s->env.host->done(s->env.host_data, &s->ref, &a);
    s->ref = (struct moat_route_ref){0};
    if (s->file_fd >= 0) {
        file_done(s);
    }
    moat_buf_clear(&s->trailers); /* rare: held only for the exchange they came with */
    s->status = 0;
    if (!s->keep_alive) {
        /* A complete exchange with nothing more from the client closes at once (FIN, no
         * reset); only an error, or bytes still arriving, needs the lingering close. */
        if (!s->error_close && moat_buf_len(&s->in) == 0 && !moat_transport_finish(s->tr)) {
            end(s);
        } else {
            start_linger(s);
        }
        return;
    }
    s->out.rd = s->out.wr = 0;
    if (moat_buf_len(&s->in) > 0) {
        if (s->out.cap > 2 * FILE_CHUNK) {
            release(s, &s->out); /* a large listing does not stay pinned */
        }
        begin_head(s); /* pipelined request already here */
    } else {
        release(s, &s->in);
        release(s, &s->out);
        release(s, &s->meta);
        begin_wait(s, s->conf->idle_timeout_ms);
    }
}

static int step_idle(struct moat_h1s *s)
{
    if (s->draining) {
        moat_transport_shutdown(s->tr);
        end(s);
        return 0;
    }
    moat_rc rc = fill_in(s);
    if (rc.kind == MOAT_E_AGAIN) {
        release(s, &s->in); /* an idle connection holds no read buffer, ours or OpenSSL's... */
        uint64_t now = s->env.loop->now_ms;
        if (s->requests == 0 || s->wait_until_ms <= now + IDLE_KEEP_MS) {
            if (s->bufs_kept) { /* the timer waits for IDLE_KEEP_MS: back to the wait's end */
                bufs_release(s);
                arm(s, s->wait_until_ms > now ? s->wait_until_ms - now : 0);
            }
            moat_transport_idle(s->tr);
            return 0;
        }
        /* ...once it has been idle for IDLE_KEEP_MS (on_timer): a keep-alive client's next
         * request usually comes sooner, and the transport's buffers then need no malloc and
         * free for each read and write. */
        if (!s->bufs_kept) {
            s->bufs_kept = 1;
            moat_transport_keep(s->tr, 1);
        }
        arm(s, IDLE_KEEP_MS);
        return 0;
    }
    if (!moat_ok(rc)) {
        end(s);
        return 0;
    }
    begin_head(s);
    return 1;
}

static int step_head(struct moat_h1s *s)
{
    struct moat_h1_req *r = &s->env.scratch->req;
    for (;;) {
        moat_h1_req_init(r);
        moat_h1_req_resume(r, &s->head_progress);
        enum moat_h1_status st =
            moat_h1_parse_request(r, moat_buf_rdptr(&s->in), moat_buf_len(&s->in), &s->conf->head);
        moat_h1_req_save(r, &s->head_progress);
        if (st != MOAT_H1_AGAIN) {
            s->head_progress = (struct moat_h1_progress){0};
        }
        if (st == MOAT_H1_DONE) {
            dispatch(s, r);
            return s->state != MOAT_H1S_ENDED;
        }
        if (st != MOAT_H1_AGAIN) {
            s->env.stats->bad_requests++;
            moat_log(MOAT_LVL_DEBUG, s->env.conn_id, "bad request: %s at byte %zu (peer %s)",
                     r->err_what ? r->err_what : "malformed", r->err_pos, s->env.peer);
            s->meta.rd = s->meta.wr = 0;
            s->requests++;
            s->req_started_ms = s->env.loop->now_ms;
            s->minor = 1;
            respond_error(s, moat_h1_status_code(st));
            return 1;
        }
        moat_rc rc = fill_in(s);
        if (rc.kind == MOAT_E_AGAIN) {
            return 0;
        }
        if (rc.kind == MOAT_E_LIMIT) {
            s->minor = 1;
            respond_error(s, 431);
            return 1;
        }
        if (!moat_ok(rc)) {
            end(s); /* the client left mid-head: nobody to answer */
            return 0;
        }
    }
}

/* 100 Continue, when the client asked for it and it is still due. 1: sent (or not due). */
static int put_continue(struct moat_h1s *s, moat_rc *rc)
{
    if (!s->send_continue) {
        return 1;
    }
    size_t n;
    *rc = moat_transport_write(s->tr, MOAT_H1_CONTINUE, MOAT_H1_CONTINUE_LEN, &n);
    if (moat_ok(*rc) && n != MOAT_H1_CONTINUE_LEN) {
        *rc = moat_rc_of(MOAT_E_IO); /* a part of 25 bytes: the socket is as good as gone */
    }
    if (!moat_ok(*rc)) {
        return 0;
    }
    s->send_continue = 0;
    return 1;
}

static int step_body(struct moat_h1s *s)
{
    moat_rc rc = MOAT_RC_OK;
    if (!put_continue(s, &rc)) {
        if (rc.kind != MOAT_E_AGAIN) {
            end(s);
        }
        return 0;
    }
    for (;;) {
        enum moat_h1_status st = drop_body(s);
        if (st == MOAT_H1_DONE) {
            begin_write(s);
            return 1;
        }
        if (st != MOAT_H1_AGAIN) {
            s->env.stats->bad_requests++;
            respond_error(s, moat_h1_status_code(st));
            return 1;
        }
        rc = fill_in(s);
        if (!moat_ok(rc)) {
            return blocked(s, rc, s->conf->body_timeout_ms, 0);
        }
    }
}

/* Put the next piece of the file behind whatever is still in `out`. */
static int refill_from_file(struct moat_h1s *s)
{
    /* Behind a head: one record's worth, so head and first bytes leave together. Alone: 64 KiB
     * per pread (four records per SSL_write), a quarter of the reads of 16 KiB pieces. */
    size_t piece = moat_buf_len(&s->out) > 0 ? FILE_CHUNK : 8 * FILE_CHUNK;
    size_t want = s->file_left < piece ? (size_t)s->file_left : piece;
    if (!moat_ok(moat_buf_reserve(&s->out, want))) {
        return 0;
    }
    ssize_t n = pread(s->file_fd, moat_buf_wrptr(&s->out), want, (off_t)s->file_off);
    if (n <= 0) {
        /* The file shrank under us: the length is already promised, so the only honest
         * thing left is to close the connection. */
        moat_log(MOAT_LVL_WARN, s->env.conn_id, "file shrank or failed while sending; closing");
        return 0;
    }
    s->out.wr += (size_t)n;
    s->file_off += (uint64_t)n;
    s->file_left -= (uint64_t)n;
    s->bytes_sent += (uint64_t)n;
    return 1;
}

/* Write what `out` holds: MOAT_OK when it is empty, MOAT_E_AGAIN when the client is not
 * taking more, else the transport's failure. */
static moat_rc flush(struct moat_h1s *s)
{
    while (moat_buf_len(&s->out) > 0) {
        size_t n;
        MOAT_TRY(moat_transport_write(s->tr, moat_buf_rdptr(&s->out), moat_buf_len(&s->out), &n));
        moat_buf_consume(&s->out, n);
        s->phase_bytes += n;
    }
    return MOAT_RC_OK;
}

/* Kernel TLS: the file goes from the page cache to the socket, encrypted by the kernel, once
 * the head has gone. MOAT_OK when all of it went, MOAT_E_AGAIN to wait for the socket,
 * MOAT_E_IO when the file shrank under its promised length, else the transport's failure. */
static moat_rc send_file_direct(struct moat_h1s *s)
{
    while (s->file_left > 0) {
        size_t want = s->file_left < (1u << 20) ? (size_t)s->file_left : (1u << 20);
        size_t n = 0;
        MOAT_TRY(moat_transport_sendfile(s->tr, s->file_fd, s->file_off, want, &n));
        if (n == 0) {
            return moat_rc_of(MOAT_E_IO); /* the file shrank under a promised length */
        }
        s->file_off += n;
        s->file_left -= n;
        s->bytes_sent += n;
        s->phase_bytes += n;
    }
    return MOAT_RC_OK;
}

static int step_write(struct moat_h1s *s)
{
    for (;;) {
        if (s->file_left > 0 && moat_buf_len(&s->out) == 0 && moat_transport_can_sendfile(s->tr)) {
            moat_rc rc = send_file_direct(s);
            if (rc.kind == MOAT_E_AGAIN) {
                return blocked(s, rc, s->conf->write_timeout_ms, 1);
            }
            if (!moat_ok(rc)) {
                if (rc.kind == MOAT_E_IO) {
                    moat_log(MOAT_LVL_WARN, s->env.conn_id,
                             "file shrank or failed while sending; closing");
                }
                end(s);
                return 0;
            }
            continue;
        }
        /* Coalesce: the first file chunk rides in the same record as the head. */
        if (s->file_left > 0 && moat_buf_len(&s->out) < FILE_CHUNK / 2) {
            if (!refill_from_file(s)) {
                end(s);
                return 0;
            }
        }
        if (moat_buf_len(&s->out) == 0) {
            answer_done(s);
            return s->state != MOAT_H1S_ENDED;
        }
        moat_rc rc = flush(s);
        if (!moat_ok(rc)) {
            return blocked(s, rc, s->conf->write_timeout_ms, 1);
        }
    }
}

static int step_linger(struct moat_h1s *s)
{
    char scratch[4096];
    size_t total = 0;
    for (;;) {
        ssize_t n = s->tr->fd >= 0 ? recv(s->tr->fd, scratch, sizeof(scratch), 0) : 0;
        if (n > 0) {
            total += (size_t)n;
            if (total > LINGER_MAX_BYTES) {
                end(s);
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
        end(s);
        return 0;
    }
}

/* STREAM: flush what the handler queued; wake it when what it waits for has come. */
static int step_stream(struct moat_h1s *s)
{
    if (moat_buf_len(&s->out) > 0) {
        moat_rc rc = flush(s);
        if (!moat_ok(rc)) {
            return blocked(s, rc, s->conf->write_timeout_ms, 1);
        }
        /* Each burst of the answer gets its own clock: time spent waiting for the handler's
         * source (a slow origin) is not the client's. */
        phase_start(s);
        if (!(s->st_waiting & WAIT_BODY)) {
            disarm(s);
        }
    }
    if (s->st_waiting == 0 || s->sops == NULL) {
        return 0;
    }
    s->st_waiting = 0;
    s->sops->ready(s->sh);
    return s->state != MOAT_H1S_STREAM;
}

static void run(struct moat_h1s *s)
{
    if (s->running) {
        return;
    }
    s->running = 1;
    int go = 1;
    while (go) {
        switch (s->state) {
        case MOAT_H1S_IDLE:
            go = step_idle(s);
            break;
        case MOAT_H1S_HEAD:
            go = step_head(s);
            break;
        case MOAT_H1S_BODY:
            go = step_body(s);
            break;
        case MOAT_H1S_WRITE:
            go = step_write(s);
            break;
        case MOAT_H1S_STREAM:
            go = step_stream(s);
            break;
        case MOAT_H1S_LINGER:
            go = step_linger(s);
            break;
        case MOAT_H1S_ENDED:
        default:
            go = 0;
            break;
        }
    }
    s->running = 0;
    if (s->state == MOAT_H1S_ENDED && s->env.host != NULL) {
        end(s); /* a timer that could not be armed */
    }
}

void moat_h1s_on_event(struct moat_h1s *s, uint32_t events)
{
    if ((events & (EPOLLERR | EPOLLHUP)) && s->state != MOAT_H1S_WRITE &&
        s->state != MOAT_H1S_HEAD && s->state != MOAT_H1S_BODY && s->state != MOAT_H1S_STREAM) {
        end(s);
        return;
    }
    run(s);
}

/* The client did not take the answer in time: reset, so what the kernel still holds for it
 * goes too. */
static void cut_slow_reader(struct moat_h1s *s)
{
    moat_log(MOAT_LVL_INFO, s->env.conn_id,
             "client %s taking the answer after %llu bytes; closing (peer %s)",
             rate_exceeded(s, s->conf->write_timeout_ms, 1) ? "slower than limits.min_rate"
                                                            : "stalled (timeouts.write)",
             (unsigned long long)s->phase_bytes, s->env.peer);
    if (s->tr->fd >= 0) {
        moat_sock_reset_on_close(s->tr->fd);
    }
    end(s);
}

static void log_slow_body(const struct moat_h1s *s)
{
    moat_log(MOAT_LVL_INFO, s->env.conn_id,
             "the client's body %s after %llu bytes; closing (peer %s)",
             rate_exceeded(s, s->conf->body_timeout_ms, 0) ? "was slower than limits.min_rate"
                                                           : "stalled (timeouts.body)",
             (unsigned long long)s->phase_bytes, s->env.peer);
}

static void stream_timeout(struct moat_h1s *s)
{
    if (moat_buf_len(&s->out) > 0) {
        cut_slow_reader(s);
        return;
    }
    if (!(s->st_waiting & WAIT_BODY)) {
        return; /* a timer of a wait that is over */
    }
    log_slow_body(s);
    detach(s, 1);
    if (s->st_started) {
        end(s); /* part of an answer went: only the close can tell the client */
        return;
    }
    respond_error(s, 408);
    run(s);
}

static void on_timer(struct moat_timer *t)
{
    struct moat_h1s *s = t->data;
    const struct moat_h1s_conf *conf = s->conf;
    if (s->state == MOAT_H1S_IDLE && s->bufs_kept && s->env.loop->now_ms < s->wait_until_ms) {
        /* Idle for IDLE_KEEP_MS: the buffers go back (step_idle), the wait goes on. */
        bufs_release(s);
        moat_transport_idle(s->tr);
        s->env.stats->buffers_released++;
        arm(s, s->wait_until_ms - s->env.loop->now_ms);
        if (s->state == MOAT_H1S_ENDED) {
            end(s);
        }
        return;
    }
    s->env.stats->timeouts++;
    switch (s->state) {
    case MOAT_H1S_HEAD:
        moat_log(MOAT_LVL_DEBUG, s->env.conn_id,
                 "request head not complete within %llu ms (peer %s)",
                 (unsigned long long)conf->head_timeout_ms, s->env.peer);
        s->requests++;
        s->req_started_ms = s->head_started_ms;
        s->meta.rd = s->meta.wr = 0;
        s->minor = 1;
        respond_error(s, 408);
        run(s);
        return;
    case MOAT_H1S_BODY:
        log_slow_body(s);
        respond_error(s, 408);
        run(s);
        return;
    case MOAT_H1S_WRITE:
        cut_slow_reader(s);
        return;
    case MOAT_H1S_STREAM:
        stream_timeout(s);
        return;
    case MOAT_H1S_IDLE:
        moat_transport_shutdown(s->tr);
        end(s);
        return;
    default:
        end(s);
        return;
    }
}

/* ---- the session's life ----------------------------------------------------------------- */

void moat_h1s_init(struct moat_h1s *s, struct moat_transport *tr, const struct moat_h1s_conf *conf,
                   const struct moat_h1s_env *env)
{
    memset(s, 0, sizeof(*s));
    s->ex.ops = &exch_ops;
    s->env = *env;
    s->tr = tr;
    s->conf = conf;
    s->file_fd = -1;
    s->state = MOAT_H1S_IDLE;
    moat_buf_init(&s->in, conf->head.max_head_bytes + 4096);
    moat_buf_init(&s->out, OUT_LIMIT);
    moat_buf_init(&s->trailers, MOAT_H1_CHUNK_TRAILER_DEFAULT);
    moat_timer_init(&s->timer, on_timer, s);
}

void moat_h1s_start(struct moat_h1s *s)
{
    begin_wait(s, s->conf->head_timeout_ms);
    run(s);
}

int moat_h1s_drain(struct moat_h1s *s)
{
    s->draining = 1;
    s->keep_alive = 0;
    return s->state == MOAT_H1S_IDLE;
}

/* ---- the exchange, for streaming handlers (http/exchange.h) ----------------------------- */

/* The exchange ended from the handler's side while the session was not running (the call
 * came from the handler's own event): move on now. */
static void kick(struct moat_h1s *s)
{
    if (!s->running && s->state != MOAT_H1S_ENDED) {
        run(s);
    }
}

/* A tunnel's bytes from the client, as they come: no framing, no limit, no body timeout (the
 * handler times its tunnel). *n == 0: the client closed its side. */
static moat_rc tunnel_read(struct moat_h1s *s, void *buf, size_t len, size_t *n)
{
    for (;;) {
        size_t avail = moat_buf_len(&s->in);
        if (avail > 0) {
            size_t k = avail < len ? avail : len;
            memcpy(buf, moat_buf_rdptr(&s->in), k);
            moat_buf_consume(&s->in, k);
            *n = k;
            return MOAT_RC_OK;
        }
        if (s->body_done) {
            return MOAT_RC_OK; /* the client's side is closed */
        }
        moat_rc rc = fill_in(s);
        if (rc.kind == MOAT_E_AGAIN) {
            s->st_waiting |= WAIT_BODY;
            return rc;
        }
        if (rc.kind == MOAT_E_CLOSED && s->tr->eof) {
            s->body_done = 1; /* a clean end of the client's bytes; the answer may go on */
            return MOAT_RC_OK;
        }
        if (!moat_ok(rc)) {
            detach(s, 0);
            end(s);
            return moat_rc_of(MOAT_E_CLOSED);
        }
    }
}

static moat_rc ex_read_body(struct moat_exch *ex, void *buf, size_t len, size_t *n)
{
    struct moat_h1s *s = of_exch(ex);
    *n = 0;
    if (s->sops == NULL) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (len == 0 && !s->body_done) {
        /* Nothing can be read into nothing: a caller's bug, which must not spin or hang. */
        moat_log(MOAT_LVL_ERROR, s->env.conn_id, "a handler read the body into no room");
        detach(s, 0);
        end(s);
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (s->tunnel) {
        return tunnel_read(s, buf, len, n);
    }
    moat_rc rc = MOAT_RC_OK;
    if (!put_continue(s, &rc)) {
        if (rc.kind == MOAT_E_AGAIN) {
            s->st_waiting |= WAIT_BODY;
            arm(s, s->conf->body_timeout_ms);
            return rc;
        }
        detach(s, 0);
        end(s);
        return moat_rc_of(MOAT_E_CLOSED);
    }
    while (!s->body_done) {
        size_t avail = moat_buf_len(&s->in);
        if (avail > 0) {
            size_t take = avail < len ? avail : len;
            if (s->body_chunked) {
                /* The decoder writes the data in place at the front of what it is given, so
                 * what it produces never exceeds what it was given: at most `len`. */
                size_t consumed = 0, produced = 0;
                enum moat_h1_status st = moat_h1_chunked_decode(&s->chunked, moat_buf_rdptr(&s->in),
                                                                take, &consumed, &produced);
                memcpy(buf, moat_buf_rdptr(&s->in), produced);
                moat_buf_consume(&s->in, consumed);
                s->phase_bytes += consumed;
                *n = produced;
                if (st == MOAT_H1_DONE) {
                    s->body_done = 1;
                } else if (st != MOAT_H1_AGAIN) {
                    int code = moat_h1_status_code(st);
                    moat_log(MOAT_LVL_INFO, s->env.conn_id, "%s (peer %s)",
                             code == 413 ? "the client's body is over limits.body"
                                         : "malformed chunked body from the client",
                             s->env.peer);
                    s->env.stats->bad_requests++;
                    detach(s, 0);
                    if (s->st_started) {
                        end(s);
                    } else {
                        respond_error(s, code ? code : 400);
                        kick(s);
                    }
                    *n = 0;
                    return moat_rc_of(MOAT_E_PEER);
                }
            } else {
                size_t k = take < s->body_left ? take : (size_t)s->body_left;
                memcpy(buf, moat_buf_rdptr(&s->in), k);
                moat_buf_consume(&s->in, k);
                s->phase_bytes += k;
                s->body_left -= k;
                s->body_done = s->body_left == 0;
                *n = k;
            }
            if (*n > 0) {
                break;
            }
            continue;
        }
        rc = fill_in(s);
        if (rc.kind == MOAT_E_AGAIN) {
            s->st_waiting |= WAIT_BODY;
            arm(s, rate_delay(s, s->conf->body_timeout_ms, 0));
            return rc;
        }
        if (!moat_ok(rc)) {
            detach(s, 0);
            end(s); /* the client left (or sent more than a head's worth of nothing) */
            return moat_rc_of(MOAT_E_CLOSED);
        }
    }
    if (moat_buf_len(&s->out) == 0) {
        disarm(s); /* no wait of the client's any more */
    }
    return MOAT_RC_OK;
}

/* Write what can go now, without waking the handler (it is the caller). */
static moat_rc push(struct moat_h1s *s)
{
    moat_rc rc = flush(s);
    if (rc.kind == MOAT_E_AGAIN) {
        arm(s, rate_delay(s, s->conf->write_timeout_ms, 1));
        return MOAT_RC_OK;
    }
    if (!moat_ok(rc)) {
        detach(s, 0);
        end(s);
        return moat_rc_of(MOAT_E_CLOSED);
    }
    phase_start(s);
    return MOAT_RC_OK;
}

static moat_rc ex_start(struct moat_exch *ex, int status, const struct moat_buf *lines,
                        int64_t length, unsigned flags)
{
    struct moat_h1s *s = of_exch(ex);
    if (s->sops == NULL || s->st_started) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    int tunnel = status == 101 && (flags & MOAT_RES_TUNNEL);
    if (tunnel && (!s->upgrade_asked || s->minor != 1)) {
        /* A switch nobody asked for (RFC 9110 §15.2.2): the handler's mistake, not the wire's. */
        detach(s, 0);
        respond_error(s, 502);
        kick(s);
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (tunnel) {
        s->keep_alive = 1; /* no Connection: close on the 101: the lines say "upgrade" */
    }
    moat_rc rc = build_head(s, status, lines, length, flags);
    if (tunnel) {
        /* After the 101 the connection is the new protocol's, to its end. */
        s->keep_alive = 0;
        s->tunnel = 1;
        s->body_done = 0;
        s->body_left = 0;
        s->body_chunked = 0;
        s->st_chunked = 0;
    }
    if (!moat_ok(rc)) {
        detach(s, 0);
        respond_error(s, 502);
        kick(s);
        return rc;
    }
    s->st_started = 1;
    if (s->head_only || moat_http_status_bodyless(status)) {
        s->st_chunked = 0;
    }
    phase_start(s);
    if ((flags & MOAT_RES_MORE) && !s->tunnel && moat_buf_len(&s->out) < STREAM_PIECE) {
        /* The head goes with the first piece (or a send of 0 bytes). A larger head goes now:
         * ex_room would say 0 to a handler waiting to send, and nothing would write. */
        return MOAT_RC_OK;
    }
    return push(s);
}

static moat_rc ex_send(struct moat_exch *ex, const void *p, size_t n)
{
    struct moat_h1s *s = of_exch(ex);
    if (s->sops == NULL || !s->st_started) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (n == 0) {
        return push(s); /* nothing to add (a zero-size chunk would be the last-chunk): flush */
    }
    if (!s->tunnel && (s->head_only || moat_http_status_bodyless(s->status))) {
        return MOAT_RC_OK;
    }
    moat_rc rc = s->st_chunked ? moat_h1_chunk(&s->out, p, n) : moat_buf_append(&s->out, p, n);
    if (!moat_ok(rc)) {
        detach(s, 0);
        end(s); /* more than the out buffer holds: the handler ignored moat_exch_room */
        return rc;
    }
    s->bytes_sent += n;
    return push(s);
}

static size_t ex_room(struct moat_exch *ex)
{
    struct moat_h1s *s = of_exch(ex);
    if (moat_buf_len(&s->out) < STREAM_PIECE) {
        return STREAM_PIECE;
    }
    s->st_waiting |= WAIT_ROOM;
    return 0;
}

static const struct moat_buf *ex_trailers(struct moat_exch *ex)
{
    struct moat_h1s *s = of_exch(ex);
    return s->body_done && moat_buf_len(&s->trailers) > 0 ? &s->trailers : NULL;
}

static void ex_finish(struct moat_exch *ex, const struct moat_buf *trailers)
{
    struct moat_h1s *s = of_exch(ex);
    if (s->sops == NULL) {
        return;
    }
    detach(s, 0);
    if (!s->st_started) {
        respond_error(s, 500); /* a handler that finished without an answer: a bug */
        kick(s);
        return;
    }
    if (s->st_chunked && !s->head_only &&
        !moat_ok(moat_h1_chunk_last_trailers(&s->out, trailers))) {
        end(s);
        return;
    }
    if (s->tunnel) {
        s->keep_alive = 0; /* the tunnel is over: what is queued goes, then the close */
        s->error_close = 1;
        s->body_done = 1;
    } else if (!s->body_done) {
        /* The answer came before all of the body: drop what has arrived; the rest must not be
         * taken for the next request, so the connection closes after the answer. */
        enum moat_h1_status st = drop_body_now(s);
        if (st != MOAT_H1_DONE) {
            s->keep_alive = 0;
            s->error_close = 1;
            s->body_done = 1;
        }
    }
    begin_write(s);
    kick(s);
}

static void ex_fail(struct moat_exch *ex, int status)
{
    struct moat_h1s *s = of_exch(ex);
    if (s->sops == NULL) {
        return;
    }
    detach(s, 0);
    if (s->st_started) {
        end(s); /* a promised answer cannot be kept: only the close says so */
        return;
    }
    respond_error(s, status);
    kick(s);
}

static const struct moat_exch_ops exch_ops = {
    .read_body = ex_read_body,
    .start = ex_start,
    .send = ex_send,
    .room = ex_room,
    .trailers = ex_trailers,
    .finish = ex_finish,
    .fail = ex_fail,
};
