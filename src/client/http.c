/*
 * http.c: the client's HTTP/1.1 exchange: build the request head, then run it on the HTTP/1.1
 * client session (http1/client.h), which frames the answer, while this file waits for the
 * socket with every wait bounded by the run's deadline and words each failure for people.
 * The bytes go through a transport (core/transport.h), plain or TLS alike; a plain one is
 * traced by hooking it (client/trace.h), as TLS is through OpenSSL's callbacks.
 *
 * One request per connection with `Connection: close`: a diagnostic client gains nothing from
 * keep-alive, and the close delimits a body the server did not frame (RFC 9112 §6.3 rule 8).
 */
#include "client/http.h"

#include "client/conn.h"
#include "client/internal.h"
#include "http1/parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)p[i])) {
            return 0;
        }
    }
    return 1;
}

/* The user's line for `name`, or NULL; *value is set to its (trimmed) value. */
static const char *user_field(const struct moat_client_req *rq, const char *name, moat_slice *value)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < rq->nheaders; i++) {
        const char *h = rq->headers[i];
        const char *colon = strchr(h, ':');
        if (colon != NULL && (size_t)(colon - h) == nl && strncasecmp(h, name, nl) == 0) {
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            size_t vl = strlen(v);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
                vl--;
            }
            *value = moat_slice_of(v, vl);
            return h;
        }
    }
    return NULL;
}

const char *moat_client_http_user_field(const struct moat_client_req *rq, const char *name,
                                        moat_slice *value)
{
    return user_field(rq, name, value);
}

/* Write the default `name: value` unless the user gave the field (then theirs is written in
 * the user loop below, or dropped when empty). */
static moat_rc default_field(const struct moat_client_req *rq, struct moat_buf *out,
                             const char *name, const char *value)
{
    moat_slice v;
    if (user_field(rq, name, &v) != NULL) {
        return MOAT_RC_OK;
    }
    return moat_buf_printf(out, "%s: %s\r\n", name, value);
}

moat_rc moat_client_http_build(const struct moat_client_req *rq, struct moat_buf *out,
                               struct moat_err *err)
{
    if (!is_token(rq->method, strlen(rq->method))) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the method \"%s\" is not a valid token (RFC 9110 §9.1)",
                  rq->method);
    }
    for (size_t i = 0; i < rq->nheaders; i++) {
        const char *h = rq->headers[i];
        const char *colon = strchr(h, ':');
        if (colon == NULL) {
            MOAT_FAIL(err, MOAT_E_USAGE, "-H \"%s\" has no colon: write -H 'Name: value'", h);
        }
        if (!is_token(h, (size_t)(colon - h))) {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "-H \"%s\": the field name is not a token (no spaces "
                      "before the colon)",
                      h);
        }
        for (const char *c = colon + 1; *c != '\0'; c++) {
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
                MOAT_FAIL(err, MOAT_E_USAGE,
                          "-H \"%.*s\": the value holds a control character "
                          "(a line break would inject a field)",
                          (int)(colon - h), h);
            }
        }
    }
    moat_slice cl;
    if (user_field(rq, "content-length", &cl) != NULL ||
        user_field(rq, "transfer-encoding", &cl) != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "moat sets Content-Length itself; do not pass it "
                  "(or Transfer-Encoding) with -H");
    }
    char auth[MOAT_CLIENT_HOST_MAX + 16];
    moat_client_url_authority(rq->url, auth, sizeof(auth));
    MOAT_TRY(moat_buf_printf(out, "%s %s HTTP/1.1\r\n", rq->method, rq->url->target));
    MOAT_TRY(default_field(rq, out, "Host", auth));
    MOAT_TRY(default_field(rq, out, "User-Agent", "moat/" MOAT_VERSION));
    MOAT_TRY(default_field(rq, out, "Accept", "*/*"));
    if (rq->body != NULL) {
        if (rq->body_is_form) {
            MOAT_TRY(default_field(rq, out, "Content-Type", "application/x-www-form-urlencoded"));
        }
        MOAT_TRY(moat_buf_printf(out, "Content-Length: %zu\r\n", rq->body_len));
    }
    MOAT_TRY(default_field(rq, out, "Connection", "close"));
    for (size_t i = 0; i < rq->nheaders; i++) {
        const char *h = rq->headers[i];
        const char *colon = strchr(h, ':');
        moat_slice v;
        char name[256];
        size_t nl = (size_t)(colon - h) < sizeof(name) - 1 ? (size_t)(colon - h) : sizeof(name) - 1;
        memcpy(name, h, nl);
        name[nl] = '\0';
        /* The first line for a name wins; an empty value only removes a default. */
        if (user_field(rq, name, &v) != h || v.len == 0) {
            continue;
        }
        MOAT_TRY(moat_buf_printf(out, "%s: %.*s\r\n", name, MOAT_SLICE_FMT(v)));
    }
    return moat_buf_append(out, "\r\n", 2);
}

moat_rc moat_client_hop_fail(struct moat_client_hop *h, enum moat_client_cause c,
                             struct moat_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->detail, sizeof(h->detail), fmt, ap);
    va_end(ap);
    h->cause = c;
    enum moat_errkind k = c == MOAT_CC_TIMEOUT     ? MOAT_E_LIMIT
                          : c == MOAT_CC_CLOSED    ? MOAT_E_CLOSED
                          : c == MOAT_CC_TLS_OTHER ? MOAT_E_TLS
                          : c == MOAT_CC_LOCAL     ? MOAT_E_IO
                                                   : MOAT_E_PEER;
    return moat_err_set(err, k, __FILE__, __LINE__, "%s", h->detail);
}

static moat_rc deliver(struct moat_client_hop *h, moat_client_body_cb cb, void *arg, const char *p,
                       size_t n, struct moat_err *err)
{
    h->body_bytes += n;
    size_t keep = sizeof(h->body_start) - h->nbody_start;
    if (keep > n) {
        keep = n;
    }
    memcpy(h->body_start + h->nbody_start, p, keep);
    h->nbody_start += keep;
    if (cb != NULL && n > 0 && cb(arg, p, n) != 0) {
        return moat_client_hop_fail(h, MOAT_CC_LOCAL, err, "cannot write the response body");
    }
    return MOAT_RC_OK;
}

/* Wait until the socket is ready (writable when `out`), or fail the step that timed out. */
static moat_rc wait_for(struct moat_h1c *c, int out, double deadline_ms, struct moat_client_hop *h,
                        struct moat_err *err)
{
    /* TLS: OpenSSL may hold bytes already (it last read only a post-handshake message). */
    if (!out && moat_transport_pending(&c->tr)) {
        return MOAT_RC_OK;
    }
    if (moat_client_conn_wait(c->tr.fd, out, deadline_ms).kind != MOAT_E_LIMIT) {
        return MOAT_RC_OK;
    }
    if (out) {
        return moat_client_hop_fail(h, MOAT_CC_TIMEOUT, err,
                                    "the server did not take the request within the timeout");
    }
    return moat_client_hop_fail(
        h, MOAT_CC_TIMEOUT, err,
        h->resp_head ? "the response body did not arrive within the timeout"
                     : "the server accepted the request but sent no answer within the "
                       "timeout");
}

/* Queue the head (as built, byte for byte) and the body on c, and write them all. */
static moat_rc send_request(struct moat_h1c *c, double deadline_ms, const struct moat_buf *head,
                            const struct moat_client_req *rq, struct moat_client_hop *h,
                            struct moat_err *err)
{
    struct moat_buf *out = moat_h1c_begin(c, strcmp(rq->method, "HEAD") == 0);
    MOAT_ENSURE(out != NULL, MOAT_E_INTERNAL);
    moat_rc rc = moat_buf_append(out, moat_buf_rdptr(head), moat_buf_len(head));
    if (rc.kind == MOAT_E_LIMIT) {
        return moat_client_hop_fail(h, MOAT_CC_LOCAL, err, "the request head is larger than %d KiB",
                                    (MOAT_CLIENT_HEAD_MAX + MOAT_H1C_PIECE) / 1024);
    }
    if (!moat_ok(rc)) {
        MOAT_FAIL(err, rc.kind, "out of memory");
    }
    /* moat_client_http_build wrote Content-Length for a body and Connection: close (or the
     * user's own field): one request per connection. */
    MOAT_TRY(moat_h1c_head_written(c, rq->body != NULL ? MOAT_H1_FRAME_LENGTH : MOAT_H1_FRAME_NONE,
                                   rq->body_len, 0));
    size_t sent = 0;
    for (;;) {
        size_t room = 0;
        while (sent < rq->body_len && (room = moat_h1c_body_room(c)) > 0) {
            size_t n = rq->body_len - sent < room ? rq->body_len - sent : room;
            MOAT_TRY(moat_h1c_body(c, rq->body + sent, n));
            sent += n;
        }
        rc = moat_h1c_flush(c, NULL);
        if (moat_ok(rc) && sent == rq->body_len) {
            return moat_h1c_body_end(c);
        }
        if (moat_ok(rc)) {
            continue;
        }
        if (rc.kind == MOAT_E_AGAIN) {
            MOAT_TRY(wait_for(c, 1, deadline_ms, h, err));
            continue;
        }
        if (rc.kind == MOAT_E_CLOSED) {
            return moat_client_hop_fail(
                h, MOAT_CC_CLOSED, err,
                "the server closed the connection while the request was being sent");
        }
        return moat_client_hop_fail(h, MOAT_CC_TLS_OTHER, err, "sending the request failed");
    }
}

/* The first answer byte's time, once the session has read one. */
static void note_first_byte(const struct moat_h1c *c, struct moat_client_hop *h)
{
    if (h->first_byte_ms == 0 && moat_h1c_received(c) > 0) {
        h->first_byte_ms = moat_trace_elapsed(&h->trace);
    }
}

/* The connection failed (not closed) under the answer. */
static moat_rc read_failed(enum moat_errkind io, struct moat_client_hop *h, struct moat_err *err)
{
    return moat_client_hop_fail(h, MOAT_CC_TLS_OTHER, err, "reading the response failed (%s)",
                                io == MOAT_E_TLS ? "TLS error" : "connection error");
}

/* The session's verdict on the head, in the client's words. */
static moat_rc head_failed(const struct moat_h1c *c, const struct moat_err *herr,
                           struct moat_client_hop *h, struct moat_err *err)
{
    const struct moat_h1c_fault *f = moat_h1c_fault(c);
    switch (f->why) {
    case MOAT_H1C_WHY_NO_ANSWER:
    case MOAT_H1C_WHY_HEAD_CUT:
        if (f->io != MOAT_E_CLOSED) {
            return read_failed(f->io, h, err);
        }
        if (f->why == MOAT_H1C_WHY_NO_ANSWER) {
            return moat_client_hop_fail(
                h, MOAT_CC_CLOSED, err,
                "the server closed the connection without answering the request");
        }
        return moat_client_hop_fail(
            h, MOAT_CC_HTTP_PROTOCOL, err,
            "the server closed the connection in the middle of the response head "
            "(%zu bytes)",
            f->head_bytes);
    case MOAT_H1C_WHY_HEAD_REFUSED:
        return moat_client_hop_fail(
            h, MOAT_CC_HTTP_PROTOCOL, err, "the response head is malformed: %s (byte %zu: %s)",
            moat_h1_status_name(f->parse), f->parse_pos, f->parse_what ? f->parse_what : "?");
    case MOAT_H1C_WHY_HEAD_TOO_LARGE:
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                    "the response head is larger than %d KiB",
                                    MOAT_CLIENT_HEAD_MAX / 1024);
    case MOAT_H1C_WHY_TOO_MANY_INTERIM:
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                    "the server sent more than %d interim (1xx) answers",
                                    MOAT_H1C_MAX_INTERIM);
    case MOAT_H1C_WHY_NOMEM:
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    default:
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err, "%s", herr->msg);
    }
}

/* The session's verdict on the body, in the client's words; `got` bytes had come. */
static moat_rc body_failed(const struct moat_h1c *c, const struct moat_err *herr,
                           enum moat_h1_body framing, uint64_t length, uint64_t got,
                           struct moat_client_hop *h, struct moat_err *err)
{
    const struct moat_h1c_fault *f = moat_h1c_fault(c);
    switch (f->why) {
    case MOAT_H1C_WHY_BODY_CUT:
        if (f->io != MOAT_E_CLOSED) {
            return read_failed(f->io, h, err);
        }
        if (framing == MOAT_H1_BODY_LENGTH) {
            return moat_client_hop_fail(
                h, MOAT_CC_HTTP_PROTOCOL, err,
                "the body was cut short: %llu of the %llu bytes of Content-Length "
                "arrived",
                (unsigned long long)got, (unsigned long long)length);
        }
        return moat_client_hop_fail(
            h, MOAT_CC_HTTP_PROTOCOL, err,
            "the chunked body was cut short after %llu bytes (no last chunk)",
            (unsigned long long)got);
    case MOAT_H1C_WHY_CHUNKED_REFUSED:
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                    "the chunked body is malformed: %s",
                                    f->parse_what ? f->parse_what : moat_h1_status_name(f->parse));
    case MOAT_H1C_WHY_NOMEM:
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    default:
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err, "%s", herr->msg);
    }
}

/* Stream the body to cb until the session says it is complete (its length, its last chunk or,
 * close-delimited, the server's clean close). */
static moat_rc read_body(struct moat_h1c *c, double deadline_ms, enum moat_h1_body framing,
                         uint64_t length, moat_client_body_cb cb, void *arg,
                         struct moat_client_hop *h, struct moat_err *err)
{
    uint64_t got = 0;
    struct moat_err herr = {0};
    for (;;) {
        moat_slice piece;
        moat_rc rc = moat_h1c_read_body(c, &piece, &herr);
        if (moat_ok(rc)) {
            got += piece.len;
            MOAT_TRY(deliver(h, cb, arg, piece.p, piece.len, err));
            continue;
        }
        if (rc.kind == MOAT_E_CLOSED) {
            return MOAT_RC_OK;
        }
        if (rc.kind != MOAT_E_AGAIN) {
            return body_failed(c, &herr, framing, length, got, h, err);
        }
        MOAT_TRY(wait_for(c, 0, deadline_ms, h, err));
    }
}

void moat_client_http_open(struct moat_h1c *c, int fd)
{
    /* Every field a server sends is shown, up to the parser's cap. */
    struct moat_h1c_limits lim = {.max_head_bytes = MOAT_CLIENT_HEAD_MAX,
                                  .max_fields = MOAT_H1_FIELDS_CAP};
    moat_h1c_init(c, &lim);
    moat_transport_plain_init(&c->tr, fd);
}

moat_rc moat_client_http_exchange(struct moat_h1c *c, double deadline_ms,
                                  const struct moat_buf *head, const struct moat_client_req *rq,
                                  moat_client_body_cb cb, void *cb_arg, struct moat_client_hop *h,
                                  struct moat_err *err)
{
    h->stage = MOAT_STAGE_HTTP;
    h->req_head = moat_client__dup(moat_buf_rdptr(head), moat_buf_len(head));
    if (h->req_head == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_trace_attach_plain(&h->trace, &c->tr); /* TLS is traced through its BIOs already */
    h->req_ms = moat_trace_elapsed(&h->trace);
    MOAT_TRY(send_request(c, deadline_ms, head, rq, h, err));
    const struct moat_h1_resp *resp = NULL;
    struct moat_err herr = {0};
    for (;;) {
        moat_rc rc = moat_h1c_read_head(c, &resp, &herr);
        note_first_byte(c, h);
        if (moat_ok(rc)) {
            break;
        }
        if (rc.kind != MOAT_E_AGAIN) {
            return head_failed(c, &herr, h, err);
        }
        MOAT_TRY(wait_for(c, 0, deadline_ms, h, err));
    }
    h->head_ms = moat_trace_elapsed(&h->trace);
    h->status = resp->status;
    h->body_framing = (int)resp->body;
    moat_client__fmt(h->reason, sizeof(h->reason), "%.*s", MOAT_SLICE_FMT(resp->reason));
    moat_slice raw = moat_h1c_head_bytes(c);
    h->resp_head = moat_client__dup(raw.p, raw.len);
    const struct moat_field *loc = moat_field_find(resp->fields, resp->nfields, "location");
    if (loc != NULL) {
        h->location = moat_client__dup(loc->value.p, loc->value.len);
    }
    if (h->resp_head == NULL || (loc != NULL && h->location == NULL)) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    /* With -L the answer is the last response's body: a redirect's page is only counted. */
    int redirect = resp->status == 301 || resp->status == 302 || resp->status == 303 ||
                   resp->status == 307 || resp->status == 308;
    if (rq->follow && redirect && h->location != NULL) {
        cb = NULL;
    }
    moat_rc rc = MOAT_RC_OK;
    /* After a 101 the bytes are another protocol's: moat stops at the head (no body to read). */
    if (resp->status != 101) {
        rc = read_body(c, deadline_ms, resp->body, resp->content_length, cb, cb_arg, h, err);
    }
    h->done_ms = moat_trace_elapsed(&h->trace);
    return rc;
}
