/*
 * client.c: the HTTP/1.1 client session (see client.h).
 *
 * Two sides move independently, each with its own state: the request (head, body, done) is
 * queued in _out and written by flush; the answer (head, body, done) is read into _in. Both
 * are bounded by construction: a body is taken only while _out holds less than a piece, and
 * the origin is read for the body only when _in is empty, so neither buffer grows past its
 * limit however fast or slow either side is. The words of failures are the ones the reverse
 * proxy has always logged (the integration tests look for them).
 */
#include "http1/client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define HEAD_DEFAULT (64 * 1024)
#define CHUNK_SLACK 64     /* a chunk's size line and CRLFs, and the last-chunk after it */
#define HEAD_LOW_ROOM 1024 /* below this much room, grow _in before reading the head... */
#define HEAD_STEP 4096     /* ...by at least this much */

/* Forget the exchange; the connection, the buffers and the limits stay. */
static void forget(struct moat_h1c *c)
{
    c->_req = MOAT_H1C_REQ_IDLE;
    c->_resp_st = MOAT_H1C_RESP_IDLE;
    c->_fail = MOAT_OK;
    c->_head_request = 0;
    c->_req_keep_alive = 0;
    c->_req_chunked = 0;
    c->_req_left = 0;
    moat_h1_resp_init(&c->_resp);
    c->_resp_left = 0;
    c->_resp_total = 0;
    c->_interim = 0;
    c->_received = 0;
    c->_fault = (struct moat_h1c_fault){0};
    c->_head_held = 0;
    moat_buf_clear(&c->_trailers); /* rare: held only for the answer they came with */
}

void moat_h1c_init(struct moat_h1c *c, const struct moat_h1c_limits *lim)
{
    size_t head = lim != NULL && lim->max_head_bytes != 0 ? lim->max_head_bytes : HEAD_DEFAULT;
    moat_transport_plain_init(&c->tr, -1);
    moat_buf_init(&c->_out, head + MOAT_H1C_PIECE + CHUNK_SLACK);
    moat_buf_init(&c->_in, head + MOAT_H1C_PIECE);
    moat_h1_limits_default(&c->_plim);
    c->_plim.max_head_bytes = head;
    if (lim != NULL && lim->max_fields != 0) {
        c->_plim.max_fields = lim->max_fields;
    }
    c->_max_body = lim != NULL ? lim->max_body_bytes : 0;
    c->_connected = 0;
    moat_buf_init(&c->_trailers, MOAT_H1_CHUNK_TRAILER_DEFAULT);
    forget(c);
}

/* ---- the connection --------------------------------------------------------------------- */

moat_rc moat_h1c_connect(struct moat_h1c *c, const struct sockaddr *addr, socklen_t len,
                         struct moat_err *err)
{
    if (c->tr.fd >= 0) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "the session already has a connection");
    }
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        /* A limit (descriptors), not the origin's fault: the proxy answers 503, not 502. */
        moat_rc rc = moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                  "no socket for the origin (file descriptors exhausted?)");
        if (err != NULL) {
            err->sys_errno = e;
        }
        return rc;
    }
    if (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) {
        /* Heads and pieces are written whole: Nagle would only hold back their last segment. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    moat_transport_plain_init(&c->tr, fd); /* owns fd from here */
    c->_connected = 0;
    if (connect(fd, addr, len) < 0 && errno != EINPROGRESS && errno != EINTR) {
        int e = errno;
        moat_transport_close(&c->tr);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "cannot connect");
    }
    return MOAT_RC_OK;
}

moat_rc moat_h1c_ready(struct moat_h1c *c, struct moat_err *err)
{
    if (!c->_connected && c->tr.fd >= 0) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(c->tr.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            return moat_err_sys(err, MOAT_E_IO, soerr, __FILE__, __LINE__, "cannot connect");
        }
        /* Called before the connect finished (no error yet, no peer either): wait. */
        struct sockaddr_storage peer;
        socklen_t pl = sizeof(peer);
        if (getpeername(c->tr.fd, (struct sockaddr *)&peer, &pl) < 0) {
            if (errno == ENOTCONN) {
                return moat_rc_of(MOAT_E_AGAIN);
            }
            return moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__, "cannot connect");
        }
    }
    c->_connected = 1;
    return moat_transport_handshake(&c->tr, err);
}

/* ---- the request ------------------------------------------------------------------------ */

struct moat_buf *moat_h1c_begin(struct moat_h1c *c, int head_request)
{
    if (c->_req != MOAT_H1C_REQ_IDLE || c->_resp_st != MOAT_H1C_RESP_IDLE) {
        return NULL;
    }
    c->_head_request = head_request != 0;
    c->_req = MOAT_H1C_REQ_HEAD;
    return &c->_out;
}

moat_rc moat_h1c_head_end(struct moat_h1c *c, enum moat_h1_frame frame, uint64_t length,
                          int keep_alive)
{
    MOAT_ENSURE(c->_req == MOAT_H1C_REQ_HEAD, MOAT_E_INTERNAL);
    MOAT_TRY(moat_h1_head_end(&c->_out, frame, length,
                              keep_alive ? MOAT_H1_CONN_DEFAULT : MOAT_H1_CONN_CLOSE));
    return moat_h1c_head_written(c, frame, length, keep_alive);
}

moat_rc moat_h1c_head_written(struct moat_h1c *c, enum moat_h1_frame frame, uint64_t length,
                              int keep_alive)
{
    MOAT_ENSURE(c->_req == MOAT_H1C_REQ_HEAD, MOAT_E_INTERNAL);
    c->_req_keep_alive = keep_alive != 0;
    c->_req_chunked = frame == MOAT_H1_FRAME_CHUNKED;
    c->_req_left = frame == MOAT_H1_FRAME_LENGTH ? length : 0;
    c->_req = c->_req_chunked || c->_req_left > 0 ? MOAT_H1C_REQ_BODY : MOAT_H1C_REQ_DONE;
    c->_resp_st = MOAT_H1C_RESP_HEAD;
    moat_h1_resp_init(&c->_resp);
    c->_interim = 0;
    return MOAT_RC_OK;
}

size_t moat_h1c_body_room(const struct moat_h1c *c)
{
    if (c->_req != MOAT_H1C_REQ_BODY && c->_req != MOAT_H1C_REQ_TUNNEL) {
        return 0;
    }
    /* Taking body only below one piece keeps _out at most a head or a piece (plus framing). */
    size_t used = moat_buf_len(&c->_out);
    if (used >= MOAT_H1C_PIECE) {
        return 0;
    }
    size_t room = MOAT_H1C_PIECE - used;
    if (c->_req == MOAT_H1C_REQ_BODY && !c->_req_chunked && room > c->_req_left) {
        room = (size_t)c->_req_left;
    }
    return room;
}

moat_rc moat_h1c_body(struct moat_h1c *c, const void *p, size_t n)
{
    MOAT_ENSURE(c->_req == MOAT_H1C_REQ_BODY || c->_req == MOAT_H1C_REQ_TUNNEL, MOAT_E_INTERNAL);
    int length = c->_req == MOAT_H1C_REQ_BODY && !c->_req_chunked;
    /* A byte past the declared length would be the start of a request nobody sent. */
    MOAT_ENSURE(!length || n <= c->_req_left, MOAT_E_INTERNAL);
    MOAT_ENSURE(n <= moat_h1c_body_room(c), MOAT_E_LIMIT);
    if (n == 0) {
        return MOAT_RC_OK; /* never a zero-size chunk: it would end the body */
    }
    if (c->_req == MOAT_H1C_REQ_BODY && c->_req_chunked) {
        return moat_h1_chunk(&c->_out, p, n);
    }
    MOAT_TRY(moat_buf_append(&c->_out, p, n));
    if (length) {
        c->_req_left -= n;
        if (c->_req_left == 0) {
            c->_req = MOAT_H1C_REQ_DONE;
        }
    }
    return MOAT_RC_OK;
}

moat_rc moat_h1c_body_end(struct moat_h1c *c)
{
    return moat_h1c_body_end_trailers(c, NULL);
}

moat_rc moat_h1c_body_end_trailers(struct moat_h1c *c, const struct moat_buf *trailers)
{
    switch (c->_req) {
    case MOAT_H1C_REQ_DONE:
    case MOAT_H1C_REQ_TUNNEL:
        return MOAT_RC_OK; /* no body, a length already reached, or a tunnel's raw bytes */
    case MOAT_H1C_REQ_BODY:
        MOAT_ENSURE(c->_req_chunked, MOAT_E_INTERNAL); /* a length not reached */
        MOAT_TRY(moat_h1_chunk_last_trailers(&c->_out, trailers));
        c->_req = MOAT_H1C_REQ_DONE;
        return MOAT_RC_OK;
    case MOAT_H1C_REQ_IDLE:
    case MOAT_H1C_REQ_HEAD:
    default:
        return moat_rc_of(MOAT_E_INTERNAL);
    }
}

moat_rc moat_h1c_flush(struct moat_h1c *c, struct moat_err *err)
{
    while (moat_buf_len(&c->_out) > 0) {
        size_t n = 0;
        moat_rc rc =
            moat_transport_write(&c->tr, moat_buf_rdptr(&c->_out), moat_buf_len(&c->_out), &n);
        if (rc.kind == MOAT_E_AGAIN || (moat_ok(rc) && n == 0)) {
            return moat_rc_of(MOAT_E_AGAIN);
        }
        if (!moat_ok(rc)) {
            MOAT_FAIL(err, rc.kind, "the origin closed while taking the request");
        }
        moat_buf_consume(&c->_out, n);
    }
    return MOAT_RC_OK;
}

/* ---- the answer ------------------------------------------------------------------------- */

/* The session is done: every later read says the same; _fault.why says where it stopped. */
static moat_rc failed(struct moat_h1c *c, enum moat_h1c_why why, moat_rc rc)
{
    c->_resp_st = MOAT_H1C_RESP_FAILED;
    c->_fail = rc.kind;
    c->_fault.why = why;
    return rc;
}

/* The parser or the chunked decoder refused what came: keep its verdict for the caller. */
static void note_refusal(struct moat_h1c *c, enum moat_h1_status st, size_t pos, const char *what)
{
    c->_fault.parse = st;
    c->_fault.parse_pos = pos;
    c->_fault.parse_what = what;
}

/* Read what the origin sent into _in, at most `most` bytes: first, when less than `low` bytes
 * of room are left, make room for `want` (or what the limit leaves). MOAT_E_LIMIT: _in is full. */
static moat_rc fill_in(struct moat_h1c *c, size_t low, size_t want, size_t most)
{
    struct moat_buf *b = &c->_in;
    if (moat_buf_room(b) < low) {
        moat_rc rc = moat_buf_reserve(b, want);
        if (rc.kind == MOAT_E_NOMEM) {
            return rc;
        }
        if (!moat_ok(rc)) {
            moat_buf_compact(b); /* near the limit: take the room there is */
        }
        if (moat_buf_room(b) == 0) {
            return moat_rc_of(MOAT_E_LIMIT);
        }
    }
    size_t len = moat_buf_room(b) < most ? moat_buf_room(b) : most;
    size_t n = 0;
    MOAT_TRY(moat_transport_read(&c->tr, moat_buf_wrptr(b), len, &n));
    b->wr += n;
    c->_received += n;
    return MOAT_RC_OK;
}

/* "(over 64 KiB)" for the usual limits, bytes for odd ones. */
static moat_rc too_large(struct moat_h1c *c, enum moat_h1c_why why, struct moat_err *err)
{
    size_t max = c->_plim.max_head_bytes;
    if (max % 1024 == 0) {
        return failed(c, why,
                      moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                   "the origin's answer head is too large (over %zu KiB)",
                                   max / 1024));
    }
    return failed(c, why,
                  moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                               "the origin's answer head is too large (over %zu bytes)", max));
}

/* Words for a TLS failure on the origin side, with the hint the usual cause calls for. */
static moat_rc tls_failure(struct moat_h1c *c, struct moat_err *err)
{
    const char *r = c->tr.fail_reason != NULL ? c->tr.fail_reason : "unknown TLS error";
    const char *hint = strstr(r, "certificate required") != NULL || strstr(r, "handshake") != NULL
                           ? " (does the origin require a client certificate? see proxy_cert)"
                           : "";
    return failed(c, moat_buf_len(&c->_in) > 0 ? MOAT_H1C_WHY_HEAD_CUT : MOAT_H1C_WHY_NO_ANSWER,
                  moat_err_set(err, MOAT_E_TLS, __FILE__, __LINE__,
                               "TLS failure from the origin: %s%s", r, hint));
}

/* Words for bytes that never became an answer head: how many, and the first of them (printable
 * ASCII only), so "SSH-2.0-..." or a TLS alert on a plain port is recognisable in the log. */
static moat_rc not_http(struct moat_h1c *c, struct moat_err *err)
{
    const struct moat_buf *b = &c->_in;
    char shown[41];
    size_t n = moat_buf_len(b) < sizeof(shown) - 1 ? moat_buf_len(b) : sizeof(shown) - 1;
    const unsigned char *p = (const unsigned char *)moat_buf_rdptr(b);
    for (size_t i = 0; i < n; i++) {
        shown[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    }
    shown[n] = '\0';
    return failed(
        c, MOAT_H1C_WHY_HEAD_CUT,
        moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                     "the origin sent %zu bytes that are not an HTTP/1.1 answer head "
                     "(\"%s\"%s), then closed%s",
                     moat_buf_len(b), shown, moat_buf_len(b) > n ? "..." : "",
                     p[0] == 0x15 || p[0] == 0x16 ? " (a TLS origin? use proxy https://)" : ""));
}

/* The final head is parsed: set up reading its body (RFC 9112 §6.3, decided by the parser). */
static moat_rc got_head(struct moat_h1c *c, struct moat_err *err)
{
    const struct moat_h1_resp *r = &c->_resp;
    c->_head_held = 1;
    if (r->status == 101) {
        /* RFC 9110 §15.2.2: the new protocol starts right after this head, both ways. */
        if (c->_req != MOAT_H1C_REQ_DONE) {
            return failed(c, MOAT_H1C_WHY_EARLY_SWITCH,
                          moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                       "the origin switched protocols before the request "
                                       "was complete"));
        }
        c->_req = MOAT_H1C_REQ_TUNNEL;
        c->_resp_st = MOAT_H1C_RESP_TUNNEL;
        return MOAT_RC_OK;
    }
    switch (r->body) {
    case MOAT_H1_BODY_NONE:
        c->_resp_st = MOAT_H1C_RESP_DONE;
        return MOAT_RC_OK;
    case MOAT_H1_BODY_LENGTH:
        if (c->_max_body != 0 && r->content_length > c->_max_body) {
            return failed(c, MOAT_H1C_WHY_BODY_TOO_LARGE,
                          moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                       "the origin's answer is larger than %llu bytes",
                                       (unsigned long long)c->_max_body));
        }
        c->_resp_left = r->content_length;
        c->_resp_st = c->_resp_left > 0 ? MOAT_H1C_RESP_BODY : MOAT_H1C_RESP_DONE;
        return MOAT_RC_OK;
    case MOAT_H1_BODY_CHUNKED:
        moat_h1_chunked_init(&c->_rdec, c->_max_body, 0);
        c->_rdec.keep_trailers = &c->_trailers; /* storage only when some come */
        c->_resp_st = MOAT_H1C_RESP_BODY;
        return MOAT_RC_OK;
    case MOAT_H1_BODY_CLOSE:
        c->_resp_st = MOAT_H1C_RESP_BODY;
        return MOAT_RC_OK;
    default:
        return failed(c, MOAT_H1C_WHY_NONE, moat_rc_of(MOAT_E_INTERNAL));
    }
}

/* Parse what _in holds. MOAT_OK: a final head; MOAT_E_AGAIN: read more; else failed. */
static moat_rc parse_head(struct moat_h1c *c, struct moat_err *err)
{
    while (moat_buf_len(&c->_in) > 0) {
        enum moat_h1_status st = moat_h1_parse_response(
            &c->_resp, moat_buf_rdptr(&c->_in), moat_buf_len(&c->_in), &c->_plim, c->_head_request);
        if (st == MOAT_H1_DONE && c->_resp.status < 200 && c->_resp.status != 101) {
            /* Interim answers (100, 103) are the origin's business with us, not an answer. */
            if (++c->_interim > MOAT_H1C_MAX_INTERIM) {
                return failed(c, MOAT_H1C_WHY_TOO_MANY_INTERIM,
                              moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                           "the origin sent more than %d interim (1xx) answers",
                                           MOAT_H1C_MAX_INTERIM));
            }
            moat_buf_consume(&c->_in, c->_resp.head_len);
            moat_h1_resp_init(&c->_resp);
            continue;
        }
        if (st != MOAT_H1_DONE && st != MOAT_H1_AGAIN) {
            note_refusal(c, st, c->_resp.err_pos, c->_resp.err_what);
        }
        switch (st) {
        case MOAT_H1_DONE:
            return got_head(c, err);
        case MOAT_H1_AGAIN:
            return moat_rc_of(MOAT_E_AGAIN);
        case MOAT_H1_E_HEAD_TOO_LARGE:
            return too_large(c, MOAT_H1C_WHY_HEAD_REFUSED, err);
        case MOAT_H1_E_TOO_MANY_FIELDS:
            return failed(c, MOAT_H1C_WHY_HEAD_REFUSED,
                          moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                       "the origin's answer head is too large (too many "
                                       "fields)"));
        default:
            return failed(c, MOAT_H1C_WHY_HEAD_REFUSED,
                          moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                       "the origin's answer is not valid HTTP/1.1: %s at byte "
                                       "%zu",
                                       c->_resp.err_what ? c->_resp.err_what : "malformed",
                                       c->_resp.err_pos));
        }
    }
    return moat_rc_of(MOAT_E_AGAIN);
}

moat_rc moat_h1c_read_head(struct moat_h1c *c, const struct moat_h1_resp **resp,
                           struct moat_err *err)
{
    *resp = NULL;
    if (c->_resp_st == MOAT_H1C_RESP_FAILED) {
        return moat_rc_of(c->_fail);
    }
    MOAT_ENSURE(c->_resp_st == MOAT_H1C_RESP_HEAD, MOAT_E_INTERNAL);
    for (;;) {
        moat_rc rc = parse_head(c, err);
        if (moat_ok(rc)) {
            *resp = &c->_resp;
            return rc;
        }
        if (rc.kind != MOAT_E_AGAIN) {
            return rc;
        }
        rc = fill_in(c, HEAD_LOW_ROOM, HEAD_STEP, SIZE_MAX);
        if (moat_ok(rc)) {
            continue;
        }
        if (rc.kind != MOAT_E_AGAIN && rc.kind != MOAT_E_LIMIT && rc.kind != MOAT_E_NOMEM) {
            c->_fault.io = rc.kind; /* the transport ended it */
            c->_fault.head_bytes = moat_buf_len(&c->_in);
        }
        switch (rc.kind) {
        case MOAT_E_AGAIN:
            return rc;
        case MOAT_E_LIMIT:
            return too_large(c, MOAT_H1C_WHY_HEAD_TOO_LARGE, err);
        case MOAT_E_NOMEM:
            return failed(c, MOAT_H1C_WHY_NOMEM,
                          moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__,
                                       "out of memory reading the origin's answer"));
        case MOAT_E_TLS:
            return tls_failure(c, err);
        default:
            if (moat_buf_len(&c->_in) > 0) {
                return not_http(c, err);
            }
            return failed(c, MOAT_H1C_WHY_NO_ANSWER,
                          moat_err_set(err, rc.kind, __FILE__, __LINE__,
                                       "the origin closed without answering"));
        }
    }
}

/* The connection ended (or failed) while reading the body. */
static moat_rc body_ended(struct moat_h1c *c, moat_rc rc, struct moat_err *err)
{
    if (rc.kind == MOAT_E_NOMEM) {
        return failed(c, MOAT_H1C_WHY_NOMEM,
                      moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__,
                                   "out of memory reading the origin's answer"));
    }
    int to_close = c->_resp_st == MOAT_H1C_RESP_TUNNEL || c->_resp.body == MOAT_H1_BODY_CLOSE;
    if (to_close && rc.kind == MOAT_E_CLOSED) {
        c->_resp_st = MOAT_H1C_RESP_DONE;
        return moat_rc_of(MOAT_E_CLOSED);
    }
    /* A length or a last chunk was promised, or a close-delimited body ended by a failure
     * rather than a close: what came is not all there is (RFC 9112 §8). */
    c->_fault.io = rc.kind;
    if (rc.kind == MOAT_E_TLS && c->tr.fail_reason != NULL) {
        return failed(c, MOAT_H1C_WHY_BODY_CUT,
                      moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                   "the origin cut its answer short (TLS: %s)", c->tr.fail_reason));
    }
    return failed(
        c, MOAT_H1C_WHY_BODY_CUT,
        moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__, "the origin cut its answer short"));
}

moat_rc moat_h1c_read_body(struct moat_h1c *c, moat_slice *piece, struct moat_err *err)
{
    *piece = MOAT_SLICE_NULL;
    switch (c->_resp_st) {
    case MOAT_H1C_RESP_BODY:
    case MOAT_H1C_RESP_TUNNEL:
        break;
    case MOAT_H1C_RESP_DONE:
        if (c->_head_held) {
            moat_buf_consume(&c->_in, c->_resp.head_len);
            c->_head_held = 0;
        }
        return moat_rc_of(MOAT_E_CLOSED);
    case MOAT_H1C_RESP_FAILED:
        return moat_rc_of(c->_fail);
    case MOAT_H1C_RESP_IDLE:
    case MOAT_H1C_RESP_HEAD:
    default:
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (c->_head_held) {
        moat_buf_consume(&c->_in, c->_resp.head_len); /* the head's slices die here */
        c->_head_held = 0;
    }
    struct moat_buf *b = &c->_in;
    for (;;) {
        if (moat_buf_len(b) == 0) {
            moat_rc rc = fill_in(c, MOAT_H1C_PIECE, MOAT_H1C_PIECE, MOAT_H1C_PIECE);
            if (rc.kind == MOAT_E_AGAIN) {
                return rc;
            }
            if (!moat_ok(rc)) {
                return body_ended(c, rc, err);
            }
        }
        char *p = moat_buf_rdptr(b);
        size_t n = moat_buf_len(b) < MOAT_H1C_PIECE ? moat_buf_len(b) : MOAT_H1C_PIECE;
        if (c->_resp_st == MOAT_H1C_RESP_TUNNEL) {
            moat_buf_consume(b, n); /* the bytes stay where they are until the next read */
            *piece = moat_slice_of(p, n);
            return MOAT_RC_OK;
        }
        switch (c->_resp.body) {
        case MOAT_H1_BODY_LENGTH:
            if (n > c->_resp_left) {
                n = (size_t)c->_resp_left; /* what follows is not this answer's */
            }
            moat_buf_consume(b, n);
            c->_resp_left -= n;
            c->_resp_total += n;
            if (c->_resp_left == 0) {
                c->_resp_st = MOAT_H1C_RESP_DONE;
            }
            *piece = moat_slice_of(p, n);
            return MOAT_RC_OK;
        case MOAT_H1_BODY_CLOSE:
            if (c->_max_body != 0 && n > c->_max_body - c->_resp_total) {
                return failed(c, MOAT_H1C_WHY_BODY_TOO_LARGE,
                              moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                           "the origin's answer is larger than %llu bytes",
                                           (unsigned long long)c->_max_body));
            }
            moat_buf_consume(b, n);
            c->_resp_total += n;
            *piece = moat_slice_of(p, n);
            return MOAT_RC_OK;
        case MOAT_H1_BODY_CHUNKED: {
            size_t consumed = 0, produced = 0;
            enum moat_h1_status st = moat_h1_chunked_decode(&c->_rdec, p, n, &consumed, &produced);
            if (st != MOAT_H1_DONE && st != MOAT_H1_AGAIN) {
                if (st == MOAT_H1_E_BODY_TOO_LARGE) {
                    return failed(c, MOAT_H1C_WHY_BODY_TOO_LARGE,
                                  moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__,
                                               "the origin's answer is larger than %llu bytes",
                                               (unsigned long long)c->_max_body));
                }
                note_refusal(c, st, c->_rdec.err_pos, c->_rdec.err_what);
                return failed(c, MOAT_H1C_WHY_CHUNKED_REFUSED,
                              moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                           "malformed chunked answer: %s",
                                           c->_rdec.err_what ? c->_rdec.err_what : "bad"));
            }
            /* The data was moved to p[0, produced); consuming leaves it in place. */
            moat_buf_consume(b, consumed);
            c->_resp_total += produced;
            if (st == MOAT_H1_DONE) {
                c->_resp_st = MOAT_H1C_RESP_DONE;
            }
            if (produced > 0) {
                *piece = moat_slice_of(p, produced);
                return MOAT_RC_OK;
            }
            if (st == MOAT_H1_DONE) {
                return moat_rc_of(MOAT_E_CLOSED);
            }
            continue; /* only framing so far */
        }
        case MOAT_H1_BODY_NONE:
        default:
            return failed(c, MOAT_H1C_WHY_NONE, moat_rc_of(MOAT_E_INTERNAL));
        }
    }
}

moat_slice moat_h1c_head_bytes(const struct moat_h1c *c)
{
    if (!c->_head_held) {
        return MOAT_SLICE_NULL;
    }
    return moat_slice_of(moat_buf_rdptr(&c->_in), c->_resp.head_len);
}

/* ---- between requests ------------------------------------------------------------------- */

int moat_h1c_reusable(const struct moat_h1c *c)
{
    const struct moat_h1_resp *r = &c->_resp;
    size_t held = c->_head_held ? r->head_len : 0;
    return c->_req == MOAT_H1C_REQ_DONE && moat_buf_len(&c->_out) == 0 &&
           c->_resp_st == MOAT_H1C_RESP_DONE && c->_req_keep_alive && r->keep_alive &&
           r->body != MOAT_H1_BODY_CLOSE && moat_buf_len(&c->_in) == held && !c->tr.eof &&
           !moat_transport_pending(&c->tr);
}

const struct moat_buf *moat_h1c_trailers(const struct moat_h1c *c)
{
    return c->_resp_st == MOAT_H1C_RESP_DONE && moat_buf_len(&c->_trailers) > 0 ? &c->_trailers
                                                                                : NULL;
}

void moat_h1c_reset(struct moat_h1c *c)
{
    c->_out.rd = c->_out.wr = 0;
    c->_in.rd = c->_in.wr = 0;
    forget(c);
}

void moat_h1c_idle(struct moat_h1c *c)
{
    if (moat_buf_len(&c->_out) == 0) {
        moat_buf_clear(&c->_out);
    }
    if (moat_buf_len(&c->_in) == 0) {
        moat_buf_clear(&c->_in);
    }
    moat_transport_idle(&c->tr);
}

void moat_h1c_close(struct moat_h1c *c)
{
    moat_transport_close(&c->tr);
    moat_transport_plain_init(&c->tr, -1);
    moat_buf_clear(&c->_out);
    moat_buf_clear(&c->_in);
    c->_connected = 0;
    forget(c);
}
