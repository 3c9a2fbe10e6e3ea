/*
 * http.c: the client's HTTP/1.1 exchange: build the request head, write it with the body, read
 * the response head with the shared parser and stream the body out, with every wait bounded by
 * the run's deadline. The bytes go through a transport (core/transport.h), plain or TLS alike;
 * only the trace of a plain connection is noted here (TLS records are traced by OpenSSL's
 * message callback).
 *
 * One request per connection with `Connection: close`: a diagnostic client gains nothing from
 * keep-alive, and the close delimits a body the server did not frame (RFC 9112 §6.3 rule 8).
 */
#include "client/http.h"

#include "client/conn.h"
#include "client/internal.h"
#include "http1/chunked.h"
#include "http1/parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>

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

static moat_rc hfail(struct moat_client_hop *h, enum moat_client_cause c, struct moat_err *err,
                     const char *fmt, ...) MOAT_PRINTF(4, 5);

static moat_rc hfail(struct moat_client_hop *h, enum moat_client_cause c, struct moat_err *err,
                     const char *fmt, ...)
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

static moat_rc write_all(struct moat_transport *io, double deadline_ms, const char *p, size_t n,
                         struct moat_client_hop *h, struct moat_err *err)
{
    while (n > 0) {
        size_t w = 0;
        moat_rc rc = moat_transport_write(io, p, n, &w);
        if (rc.kind == MOAT_E_AGAIN) {
            if (moat_client_conn_wait(io->fd, 1, deadline_ms).kind == MOAT_E_LIMIT) {
                return hfail(h, MOAT_CC_TIMEOUT, err,
                             "the server did not take the request "
                             "within the timeout");
            }
            continue;
        }
        if (rc.kind == MOAT_E_CLOSED) {
            return hfail(h, MOAT_CC_CLOSED, err,
                         "the server closed the connection while the "
                         "request was being sent");
        }
        if (!moat_ok(rc)) {
            return hfail(h, MOAT_CC_TLS_OTHER, err, "sending the request failed");
        }
        if (moat_transport_is_plain(io)) {
            moat_trace_note_plain_out(&h->trace, w);
        }
        p += w;
        n -= w;
    }
    return MOAT_RC_OK;
}

/* Read more bytes into b. MOAT_OK with *n > 0, MOAT_E_CLOSED at the end, or a failure that is
 * already in h (timeout, TLS). */
static moat_rc read_some(struct moat_transport *io, double deadline_ms, struct moat_buf *b,
                         size_t *n, struct moat_client_hop *h, struct moat_err *err)
{
    MOAT_TRY(moat_buf_reserve(b, 16384));
    for (;;) {
        moat_rc rc = moat_transport_read(io, moat_buf_wrptr(b), moat_buf_room(b), n);
        if (moat_ok(rc)) {
            if (moat_transport_is_plain(io)) {
                moat_trace_note_plain_in(&h->trace, moat_buf_wrptr(b), *n);
            }
            if (h->first_byte_ms == 0) {
                h->first_byte_ms = moat_trace_elapsed(&h->trace);
            }
            b->wr += *n;
            return MOAT_RC_OK;
        }
        if (rc.kind == MOAT_E_AGAIN) {
            /* TLS: also when OpenSSL only read a post-handshake message (a ticket). */
            if (moat_transport_pending(io)) {
                continue;
            }
            if (moat_client_conn_wait(io->fd, 0, deadline_ms).kind == MOAT_E_LIMIT) {
                return hfail(h, MOAT_CC_TIMEOUT, err,
                             h->resp_head ? "the response body did not arrive within the timeout"
                                          : "the server accepted the request but sent no answer "
                                            "within the timeout");
            }
            continue;
        }
        if (rc.kind == MOAT_E_CLOSED) {
            return rc;
        }
        return hfail(h, MOAT_CC_TLS_OTHER, err, "reading the response failed (%s)",
                     rc.kind == MOAT_E_TLS ? "TLS error" : "connection error");
    }
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
        return hfail(h, MOAT_CC_LOCAL, err, "cannot write the response body");
    }
    return MOAT_RC_OK;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static moat_rc read_body(struct moat_transport *io, double deadline_ms, struct moat_buf *b,
                         const struct moat_h1_resp *resp, moat_client_body_cb cb, void *arg,
                         struct moat_client_hop *h, struct moat_err *err)
{
    size_t n = 0;
    if (resp->body == MOAT_H1_BODY_LENGTH) {
        uint64_t left = resp->content_length;
        for (;;) {
            size_t take = moat_buf_len(b) < left ? moat_buf_len(b) : (size_t)left;
            MOAT_TRY(deliver(h, cb, arg, moat_buf_rdptr(b), take, err));
            moat_buf_consume(b, take);
            left -= take;
            if (left == 0) {
                return MOAT_RC_OK;
            }
            moat_rc rc = read_some(io, deadline_ms, b, &n, h, err);
            if (rc.kind == MOAT_E_CLOSED) {
                return hfail(h, MOAT_CC_HTTP_PROTOCOL, err,
                             "the body was cut short: %llu of the %llu bytes of Content-Length "
                             "arrived",
                             (unsigned long long)(resp->content_length - left),
                             (unsigned long long)resp->content_length);
            }
            MOAT_TRY(rc);
        }
    }
    if (resp->body == MOAT_H1_BODY_CHUNKED) {
        struct moat_h1_chunked ch;
        moat_h1_chunked_init(&ch, 0, 0);
        for (;;) {
            size_t used = 0, out = 0;
            enum moat_h1_status st =
                moat_h1_chunked_decode(&ch, moat_buf_rdptr(b), moat_buf_len(b), &used, &out);
            if (st != MOAT_H1_DONE && st != MOAT_H1_AGAIN) {
                return hfail(h, MOAT_CC_HTTP_PROTOCOL, err, "the chunked body is malformed: %s",
                             ch.err_what ? ch.err_what : moat_h1_status_name(st));
            }
            MOAT_TRY(deliver(h, cb, arg, moat_buf_rdptr(b), out, err));
            moat_buf_consume(b, used);
            if (st == MOAT_H1_DONE) {
                return MOAT_RC_OK;
            }
            moat_rc rc = read_some(io, deadline_ms, b, &n, h, err);
            if (rc.kind == MOAT_E_CLOSED) {
                return hfail(h, MOAT_CC_HTTP_PROTOCOL, err,
                             "the chunked body was cut short "
                             "after %llu bytes (no last chunk)",
                             (unsigned long long)ch.total);
            }
            MOAT_TRY(rc);
        }
    }
    if (resp->body == MOAT_H1_BODY_CLOSE) {
        for (;;) {
            MOAT_TRY(deliver(h, cb, arg, moat_buf_rdptr(b), moat_buf_len(b), err));
            moat_buf_consume(b, moat_buf_len(b));
            moat_rc rc = read_some(io, deadline_ms, b, &n, h, err);
            if (rc.kind == MOAT_E_CLOSED) {
                return MOAT_RC_OK;
            }
            MOAT_TRY(rc);
        }
    }
    return MOAT_RC_OK;
}

moat_rc moat_client_http_exchange(struct moat_transport *io, double deadline_ms,
                                  const struct moat_buf *head, const struct moat_client_req *rq,
                                  moat_client_body_cb cb, void *cb_arg, struct moat_client_hop *h,
                                  struct moat_err *err)
{
    h->stage = MOAT_STAGE_HTTP;
    h->req_head = dup_bytes(moat_buf_rdptr(head), moat_buf_len(head));
    if (h->req_head == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    h->req_ms = moat_trace_elapsed(&h->trace);
    /* Head and body in one write when they fit a buffer: one TLS record, one segment. */
    MOAT_TRY(write_all(io, deadline_ms, moat_buf_rdptr(head), moat_buf_len(head), h, err));
    if (rq->body != NULL && rq->body_len > 0) {
        MOAT_TRY(write_all(io, deadline_ms, rq->body, rq->body_len, h, err));
    }
    struct moat_buf b;
    moat_buf_init(&b, MOAT_CLIENT_HEAD_MAX + 16384);
    struct moat_h1_resp *resp = malloc(sizeof(*resp));
    if (resp == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    lim.max_head_bytes = MOAT_CLIENT_HEAD_MAX;
    lim.max_fields = MOAT_H1_FIELDS_CAP;
    moat_h1_resp_init(resp);
    int is_head = strcmp(rq->method, "HEAD") == 0;
    moat_rc rc = MOAT_RC_OK;
    for (;;) {
        enum moat_h1_status st = MOAT_H1_AGAIN;
        if (moat_buf_len(&b) > 0) {
            st = moat_h1_parse_response(resp, moat_buf_rdptr(&b), moat_buf_len(&b), &lim, is_head);
        }
        if (st == MOAT_H1_DONE && resp->status >= 100 && resp->status < 200 &&
            resp->status != 101) {
            /* RFC 9110 §15.2: interim answers (100 Continue, 103 Early Hints) come first. */
            moat_buf_consume(&b, resp->head_len);
            moat_h1_resp_init(resp);
            continue;
        }
        if (st == MOAT_H1_DONE) {
            break;
        }
        if (st != MOAT_H1_AGAIN) {
            rc = hfail(h, MOAT_CC_HTTP_PROTOCOL, err,
                       "the response head is malformed: %s "
                       "(byte %zu: %s)",
                       moat_h1_status_name(st), resp->err_pos,
                       resp->err_what ? resp->err_what : "?");
            goto out;
        }
        size_t n = 0;
        rc = read_some(io, deadline_ms, &b, &n, h, err);
        if (rc.kind == MOAT_E_CLOSED) {
            rc = moat_buf_len(&b) == 0 ? hfail(h, MOAT_CC_CLOSED, err,
                                               "the server closed the connection without "
                                               "answering the request")
                                       : hfail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                               "the server closed the connection in "
                                               "the middle of the response head (%zu bytes)",
                                               moat_buf_len(&b));
            goto out;
        }
        if (rc.kind == MOAT_E_LIMIT && moat_buf_len(&b) >= MOAT_CLIENT_HEAD_MAX) {
            rc = hfail(h, MOAT_CC_HTTP_PROTOCOL, err, "the response head is larger than %d KiB",
                       MOAT_CLIENT_HEAD_MAX / 1024);
            goto out;
        }
        if (!moat_ok(rc)) {
            goto out;
        }
    }
    h->head_ms = moat_trace_elapsed(&h->trace);
    h->status = resp->status;
    h->body_framing = (int)resp->body;
    moat_client__fmt(h->reason, sizeof(h->reason), "%.*s", MOAT_SLICE_FMT(resp->reason));
    h->resp_head = dup_bytes(moat_buf_rdptr(&b), resp->head_len);
    const struct moat_field *loc = moat_field_find(resp->fields, resp->nfields, "location");
    if (loc != NULL) {
        h->location = dup_bytes(loc->value.p, loc->value.len);
    }
    if (h->resp_head == NULL || (loc != NULL && h->location == NULL)) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        goto out;
    }
    moat_buf_consume(&b, resp->head_len);
    /* With -L the answer is the last response's body: a redirect's page is only counted. */
    int redirect = resp->status == 301 || resp->status == 302 || resp->status == 303 ||
                   resp->status == 307 || resp->status == 308;
    if (rq->follow && redirect && h->location != NULL) {
        cb = NULL;
    }
    rc = read_body(io, deadline_ms, &b, resp, cb, cb_arg, h, err);
    h->done_ms = moat_trace_elapsed(&h->trace);
out:
    free(resp);
    moat_buf_clear(&b);
    return rc;
}
