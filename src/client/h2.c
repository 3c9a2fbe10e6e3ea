/*
 * h2.c: one HTTP/2 request and its response for `moat get` and `moat trace`, on nghttp2's
 * client session over the connection's transport (TLS, after ALPN chose "h2").
 *
 * nghttp2 is driven in memory (nghttp2_session_mem_send / mem_recv): what it makes is copied
 * into a buffer of ours and written through the transport, what the transport reads is handed
 * to it, and one poll waits for either direction under the run's deadline. So the session never
 * blocks on a socket, the transport's "retry with the same bytes" rule holds (nothing is added
 * to our buffer while a write waits), and the client keeps reading while its writes wait, so
 * a server that writes before it reads (an answer while the request body is still coming)
 * cannot deadlock with it.
 * Flow control is nghttp2's: it sends WINDOW_UPDATE as the body is taken (automatic window
 * update), after an opening 1 MiB window so a large body does not crawl at 64 KiB per round
 * trip. The frame callbacks record every frame for the trace (h2trace.h); the failure words
 * are built once, after the session ends, from what was seen (the server's RST_STREAM or
 * GOAWAY first, then nghttp2's own refusals, then the transport).
 */
#include "client/h2.h"

#include "client/http.h"
#include "client/internal.h"
#include "core/buf.h"
#include "http/status.h"
#include "http1/client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#define IN_PIECE 16384          /* bytes read per call: one TLS record */
#define OUT_HIGH (64 * 1024)    /* stop asking nghttp2 for frames above this many queued */
#define OUT_LIMIT (1024 * 1024) /* our send buffer at most (a frame is at most 16 KiB + 9) */
#define MAX_NV (MOAT_CLIENT_MAX_HEADERS + 8)

/* How the loop ended. */
enum h2_end {
    END_DONE = 0, /* the session has nothing left to send or read */
    END_EOF,      /* the server closed the connection */
    END_TIMEOUT,  /* the deadline passed */
    END_IO,       /* the transport failed (TLS or socket) */
    END_LIB,      /* nghttp2 stopped the session (our callback, a flood, memory) */
    END_COUNT     /* keep last */
};

/* The state of one exchange. Invariant: stream is 1 once the request was submitted. */
struct h2x {
    nghttp2_session *s; /* owned */
    struct moat_transport *t;
    struct moat_client_hop *h;
    const struct moat_client_req *rq;
    moat_client_body_cb cb; /* NULL: count the body only */
    void *cb_arg;
    int32_t stream;
    size_t body_sent;       /* request body bytes handed to nghttp2 */
    struct moat_buf out;    /* bytes nghttp2 made, not yet written */
    struct moat_buf resp;   /* the final response's fields, "name: value\r\n" */
    struct moat_buf block;  /* the fields of the block being received, for the trace */
    size_t nblock;          /* fields in it */
    enum moat_h2_block cur; /* which block is being received */
    int status;             /* of that block; 0 before :status */
    int interim;            /* 1xx heads seen */
    int got_head, got_end;  /* the final head came; END_STREAM came */
    int closed;             /* our stream is closed */
    uint32_t close_code;    /* with this error code */
    int rst_in, rst_out;    /* the server reset our stream; nghttp2 reset it */
    uint32_t rst_in_code, rst_out_code;
    int goaway_in, goaway_out; /* GOAWAY from the server; one with an error from nghttp2 */
    uint32_t goaway_in_code, goaway_out_code;
    int32_t goaway_last;
    char goaway_debug[MOAT_H2_DEBUG_MAX];
    int cb_failed, head_too_big, too_many_interim, nomem;
    uint64_t received; /* bytes read from the transport */
    int bye;           /* our GOAWAY(NO_ERROR) is queued */
    char lib[300];     /* nghttp2's words for the first problem it found */
};

static double now_ms(const struct h2x *x)
{
    return moat_trace_elapsed(&x->h->trace);
}

static void note_lib(struct h2x *x, const char *fmt, ...) MOAT_PRINTF(2, 3);

static void note_lib(struct h2x *x, const char *fmt, ...)
{
    if (x->lib[0] != '\0') {
        return; /* the first problem is the cause; later ones follow from it */
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->lib, sizeof(x->lib), fmt, ap);
    va_end(ap);
}

/* A printable copy of bytes the server chose (GOAWAY debug data), cut at max - 1. */
static void printable(const uint8_t *p, size_t n, char *out, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < max; i++) {
        out[o++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"') ? (char)p[i] : '.';
    }
    out[o] = '\0';
}

/* The field lines of a HEADERS frame we sent, for the trace (cut at MOAT_H2_FIELDS_MAX). */
static char *sent_fields(const nghttp2_nv *nva, size_t n)
{
    char *s = malloc(MOAT_H2_FIELDS_MAX);
    if (s == NULL) {
        return NULL;
    }
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        moat_client__append(s, MOAT_H2_FIELDS_MAX, "%.*s: %.*s\n", (int)nva[i].namelen,
                            (const char *)nva[i].name, (int)nva[i].valuelen,
                            (const char *)nva[i].value);
    }
    return s;
}

static void record(struct h2x *x, const nghttp2_frame *fr, int dir, int lib_code)
{
    struct moat_h2_frame f;
    memset(&f, 0, sizeof(f));
    f.ms = now_ms(x);
    f.dir = dir;
    f.type = fr->hd.type;
    f.flags = fr->hd.flags;
    f.stream_id = fr->hd.stream_id;
    f.length = fr->hd.length;
    switch (fr->hd.type) {
    case NGHTTP2_SETTINGS:
        f.nsettings = fr->settings.niv;
        for (size_t i = 0; i < fr->settings.niv && i < MOAT_H2_MAX_SETTINGS; i++) {
            f.settings[i].id = (uint16_t)fr->settings.iv[i].settings_id;
            f.settings[i].value = fr->settings.iv[i].value;
        }
        break;
    case NGHTTP2_RST_STREAM:
        f.error_code = fr->rst_stream.error_code;
        break;
    case NGHTTP2_GOAWAY: {
        f.error_code = fr->goaway.error_code;
        f.last_stream_id = fr->goaway.last_stream_id;
        if (fr->goaway.opaque_data_len > 0) {
            char d[MOAT_H2_DEBUG_MAX];
            printable(fr->goaway.opaque_data, fr->goaway.opaque_data_len, d, sizeof(d));
            f.debug = moat_client__dup(d, strlen(d));
        }
        break;
    }
    case NGHTTP2_WINDOW_UPDATE:
        f.increment = fr->window_update.window_size_increment;
        break;
    case NGHTTP2_PING:
        memcpy(f.ping, fr->ping.opaque_data, sizeof(f.ping));
        break;
    case NGHTTP2_HEADERS:
        if (dir == MOAT_TRACE_OUT) {
            f.block = MOAT_H2_BLOCK_REQUEST;
            f.nfields = fr->headers.nvlen;
            f.fields = sent_fields(fr->headers.nva, fr->headers.nvlen);
        } else {
            f.block = x->cur;
            f.nfields = x->nblock;
            f.fields = moat_client__dup(moat_buf_rdptr(&x->block), moat_buf_len(&x->block));
        }
        break;
    default:
        break;
    }
    if (lib_code != 0) {
        f.refused = 1;
        moat_client__fmt(f.refused_why, sizeof(f.refused_why), "%s", nghttp2_strerror(lib_code));
    }
    moat_h2rec_add(&x->h->h2, &f);
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
    struct h2x *x = ud;
    record(x, fr, MOAT_TRACE_OUT, 0);
    if (fr->hd.type == NGHTTP2_RST_STREAM && fr->hd.stream_id == x->stream) {
        x->rst_out = 1;
        x->rst_out_code = fr->rst_stream.error_code;
    }
    if (fr->hd.type == NGHTTP2_GOAWAY && fr->goaway.error_code != NGHTTP2_NO_ERROR) {
        x->goaway_out = 1;
        x->goaway_out_code = fr->goaway.error_code;
    }
    return 0;
}

/* The final response head is complete: its facts into the hop. */
static void head_done(struct h2x *x)
{
    struct moat_client_hop *h = x->h;
    x->got_head = 1;
    h->head_ms = now_ms(x);
    h->status = x->status;
    moat_client__fmt(h->reason, sizeof(h->reason), "%s", moat_http_reason(x->status));
    struct moat_buf text;
    moat_buf_init(&text, MOAT_CLIENT_HEAD_MAX + 64);
    if (!moat_ok(moat_buf_printf(&text, "HTTP/2 %d\r\n", x->status)) ||
        !moat_ok(moat_buf_append(&text, moat_buf_rdptr(&x->resp), moat_buf_len(&x->resp))) ||
        !moat_ok(moat_buf_append(&text, "\r\n", 2))) {
        x->nomem = 1;
    } else {
        free(h->resp_head);
        h->resp_head = moat_client__dup(moat_buf_rdptr(&text), moat_buf_len(&text));
        x->nomem |= h->resp_head == NULL;
    }
    moat_buf_clear(&text);
    /* With -L the answer is the last response's body: a redirect's page is only counted. */
    int redirect = x->status == 301 || x->status == 302 || x->status == 303 || x->status == 307 ||
                   x->status == 308;
    if (x->rq->follow && redirect && h->location != NULL) {
        x->cb = NULL;
    }
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
    struct h2x *x = ud;
    int ours = fr->hd.stream_id == x->stream && x->stream != 0;
    if (ours && fr->hd.type == NGHTTP2_HEADERS && x->cur != MOAT_H2_BLOCK_TRAILERS) {
        if (x->status >= 100 && x->status < 200) {
            x->cur = MOAT_H2_BLOCK_INTERIM;
            x->interim++;
            x->resp.rd = x->resp.wr = 0;
        } else {
            x->cur = MOAT_H2_BLOCK_RESPONSE;
        }
    }
    record(x, fr, MOAT_TRACE_IN, 0);
    if (!ours) {
        if (fr->hd.type == NGHTTP2_GOAWAY) {
            x->goaway_in = 1;
            x->goaway_in_code = fr->goaway.error_code;
            x->goaway_last = fr->goaway.last_stream_id;
            printable(fr->goaway.opaque_data, fr->goaway.opaque_data_len, x->goaway_debug,
                      sizeof(x->goaway_debug));
        }
        return 0;
    }
    switch (fr->hd.type) {
    case NGHTTP2_HEADERS:
        if (x->cur == MOAT_H2_BLOCK_INTERIM && x->interim > MOAT_H1C_MAX_INTERIM) {
            x->too_many_interim = 1;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        if (x->cur == MOAT_H2_BLOCK_RESPONSE) {
            head_done(x);
        }
        break;
    case NGHTTP2_RST_STREAM:
        x->rst_in = 1;
        x->rst_in_code = fr->rst_stream.error_code;
        break;
    default:
        break;
    }
    if ((fr->hd.type == NGHTTP2_HEADERS || fr->hd.type == NGHTTP2_DATA) &&
        (fr->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && x->got_head) {
        x->got_end = 1;
        x->h->done_ms = now_ms(x);
    }
    return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *fr, int lib_code, void *ud)
{
    struct h2x *x = ud;
    char tb[16];
    record(x, fr, MOAT_TRACE_IN, lib_code);
    note_lib(x, "its %s frame on stream %d was refused: %s",
             moat_h2_type_name(fr->hd.type, tb, sizeof(tb)), (int)fr->hd.stream_id,
             nghttp2_strerror(lib_code));
    return 0;
}

static int on_error(nghttp2_session *s, int lib_code, const char *msg, size_t len, void *ud)
{
    /* nghttp2's sentences end with a period and sometimes hold two spaces: one clause of ours. */
    char words[sizeof(((struct h2x *)0)->lib)];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < sizeof(words); i++) {
        if (msg[i] == ' ' && o > 0 && words[o - 1] == ' ') {
            continue;
        }
        words[o++] = msg[i];
    }
    while (o > 0 && (words[o - 1] == '.' || words[o - 1] == ' ')) {
        o--;
    }
    words[o] = '\0';
    note_lib(ud, "%s", words);
    return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
    struct h2x *x = ud;
    if (fr->hd.stream_id != x->stream) {
        return 0;
    }
    x->block.rd = x->block.wr = 0;
    x->nblock = 0;
    x->status = 0;
    /* Whether it is a 1xx or the final head is known at its end (:status comes first). */
    x->cur = x->got_head ? MOAT_H2_BLOCK_TRAILERS : MOAT_H2_BLOCK_RESPONSE;
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct h2x *x = ud;
    if (fr->hd.stream_id != x->stream) {
        return 0;
    }
    x->nblock++;
    /* The trace's copy is cut, never refused: the head's own limit is below. */
    if (moat_buf_len(&x->block) + namelen + valuelen + 3 < MOAT_H2_FIELDS_MAX) {
        if (!moat_ok(moat_buf_printf(&x->block, "%.*s: %.*s\n", (int)namelen, (const char *)name,
                                     (int)valuelen, (const char *)value))) {
            x->nomem = 1;
        }
    }
    if (x->cur == MOAT_H2_BLOCK_TRAILERS) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        /* nghttp2 has checked it is three digits (RFC 9113 §8.3.2). */
        x->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        return 0;
    }
    moat_rc rc = moat_buf_printf(&x->resp, "%.*s: %.*s\r\n", (int)namelen, (const char *)name,
                                 (int)valuelen, (const char *)value);
    if (!moat_ok(rc)) {
        x->head_too_big = rc.kind == MOAT_E_LIMIT;
        x->nomem = rc.kind != MOAT_E_LIMIT;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (x->status >= 200 && namelen == 8 && memcmp(name, "location", 8) == 0) {
        free(x->h->location);
        x->h->location = moat_client__dup((const char *)value, valuelen);
        if (x->h->location == NULL) {
            x->nomem = 1;
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                   size_t len, void *ud)
{
    struct h2x *x = ud;
    if (stream_id != x->stream) {
        return 0;
    }
    struct moat_client_hop *h = x->h;
    h->body_bytes += len;
    size_t keep = sizeof(h->body_start) - h->nbody_start;
    if (keep > len) {
        keep = len;
    }
    memcpy(h->body_start + h->nbody_start, data, keep);
    h->nbody_start += keep;
    if (x->cb != NULL && len > 0 && x->cb(x->cb_arg, data, len) != 0) {
        x->cb_failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t code, void *ud)
{
    struct h2x *x = ud;
    if (stream_id == x->stream) {
        x->closed = 1;
        x->close_code = code;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
    struct h2x *x = ud;
    size_t left = x->rq->body_len - x->body_sent;
    size_t n = left < length ? left : length;
    if (n > 0) {
        memcpy(buf, x->rq->body + x->body_sent, n);
        x->body_sent += n;
    }
    if (x->body_sent == x->rq->body_len) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* The request's fields: pseudo-header fields, moat's defaults, then the user's (lower-cased:
 * RFC 9113 §8.2.1 refuses upper case). Strings are borrowed from rq and from *q itself. */
struct req_fields {
    nghttp2_nv nv[MAX_NV];
    size_t n;
    char authority[MOAT_CLIENT_HOST_MAX + 16];
    char length[24];
    char names[MOAT_CLIENT_MAX_HEADERS][256];
};

static void add_nv(struct req_fields *q, const char *name, size_t nl, const char *value, size_t vl)
{
    if (q->n == MAX_NV) {
        return; /* cannot happen: MAX_NV counts every default and each -H */
    }
    q->nv[q->n++] = (nghttp2_nv){
        .name = (uint8_t *)name,
        .value = (uint8_t *)value,
        .namelen = nl,
        .valuelen = vl,
        .flags = NGHTTP2_NV_FLAG_NONE,
    };
}

static void add_default(struct req_fields *q, const struct moat_client_req *rq, const char *name,
                        const char *value)
{
    moat_slice v;
    if (moat_client_http_user_field(rq, name, &v) == NULL) {
        add_nv(q, name, strlen(name), value, strlen(value));
    }
}

/* RFC 9113 §8.2.2: fields about the HTTP/1 connection make an HTTP/2 message malformed; TE is
 * allowed with "trailers" only. Host becomes :authority (§8.3.1). */
static int not_for_h2(const char *name, moat_slice v)
{
    static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade",    "host"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        if (strcmp(name, hop[i]) == 0) {
            return 1;
        }
    }
    return strcmp(name, "te") == 0 && !(v.len == 8 && strncasecmp(v.p, "trailers", 8) == 0);
}

static void build_fields(struct req_fields *q, const struct moat_client_req *rq)
{
    q->n = 0;
    moat_slice host;
    const char *auth = q->authority;
    size_t auth_len;
    if (moat_client_http_user_field(rq, "host", &host) != NULL && host.len > 0) {
        auth = host.p;
        auth_len = host.len;
    } else {
        moat_client_url_authority(rq->url, q->authority, sizeof(q->authority));
        auth_len = strlen(q->authority);
    }
    add_nv(q, ":method", 7, rq->method, strlen(rq->method));
    add_nv(q, ":scheme", 7, "https", 5);
    add_nv(q, ":authority", 10, auth, auth_len);
    add_nv(q, ":path", 5, rq->url->target, strlen(rq->url->target));
    add_default(q, rq, "user-agent", "moat/" MOAT_VERSION);
    add_default(q, rq, "accept", "*/*");
    if (rq->body != NULL) {
        if (rq->body_is_form) {
            add_default(q, rq, "content-type", "application/x-www-form-urlencoded");
        }
        snprintf(q->length, sizeof(q->length), "%zu", rq->body_len);
        add_nv(q, "content-length", 14, q->length, strlen(q->length));
    }
    for (size_t i = 0; i < rq->nheaders && i < MOAT_CLIENT_MAX_HEADERS; i++) {
        const char *line = rq->headers[i];
        const char *colon = strchr(line, ':');
        size_t nl = (size_t)(colon - line);
        if (nl >= sizeof(q->names[i])) {
            nl = sizeof(q->names[i]) - 1;
        }
        char *name = q->names[i];
        for (size_t k = 0; k < nl; k++) {
            char c = line[k];
            name[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        name[nl] = '\0';
        moat_slice v;
        /* The first line for a name wins; an empty value only removes a default. */
        if (moat_client_http_user_field(rq, name, &v) != line || v.len == 0 ||
            not_for_h2(name, v)) {
            continue;
        }
        add_nv(q, name, nl, v.p, v.len);
    }
}

/* The request as text for the hop: "GET /x HTTP/2", then each field as it went. */
static char *request_text(const struct req_fields *q, const struct moat_client_req *rq)
{
    struct moat_buf b;
    moat_buf_init(&b, 256 * 1024);
    moat_rc rc = moat_buf_printf(&b, "%s %s HTTP/2\r\n", rq->method, rq->url->target);
    for (size_t i = 0; moat_ok(rc) && i < q->n; i++) {
        rc = moat_buf_printf(&b, "%.*s: %.*s\r\n", (int)q->nv[i].namelen,
                             (const char *)q->nv[i].name, (int)q->nv[i].valuelen,
                             (const char *)q->nv[i].value);
    }
    char *s = NULL;
    if (moat_ok(rc) && moat_ok(moat_buf_append(&b, "\r\n", 2))) {
        s = moat_client__dup(moat_buf_rdptr(&b), moat_buf_len(&b));
    }
    moat_buf_clear(&b);
    return s;
}

/* Wait for the socket: readable when `in`, writable when `out`; 0 ready, -1 on timeout. */
static int wait_io(int fd, int in, int out, double deadline_ms)
{
    for (;;) {
        double left = deadline_ms - moat_trace_now_ms();
        if (left <= 0) {
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = (short)((in ? POLLIN : 0) | (out ? POLLOUT : 0))};
        int r = poll(&p, 1, left > 1000 ? 1000 : (int)left + 1);
        if (r > 0) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            return 0; /* the read or write that follows says what is wrong */
        }
    }
}

/* Move bytes both ways until the session is over, the server closes, or the deadline. */
static enum h2_end pump(struct h2x *x, double deadline_ms)
{
    /* OpenSSL wants a write it refused retried with the same bytes at the same address
     * (client contexts do not accept moving buffers): nothing is added to `out`, which could
     * move it, until that write went through. */
    int blocked = 0;
    for (;;) {
        if (x->closed && !x->bye) {
            /* RFC 9113 §6.8: say goodbye, so the server need not wait for more streams. */
            (void)nghttp2_session_terminate_session(x->s, NGHTTP2_NO_ERROR);
            x->bye = 1;
        }
        while (!blocked && moat_buf_len(&x->out) < OUT_HIGH && nghttp2_session_want_write(x->s)) {
            const uint8_t *data = NULL;
            ssize_t n = nghttp2_session_mem_send(x->s, &data);
            if (n < 0) {
                note_lib(x, "%s", nghttp2_strerror((int)n));
                return END_LIB;
            }
            if (n == 0) {
                break;
            }
            if (!moat_ok(moat_buf_append(&x->out, data, (size_t)n))) {
                x->nomem = 1;
                return END_LIB;
            }
        }
        while (moat_buf_len(&x->out) > 0) {
            size_t w = 0;
            moat_rc rc =
                moat_transport_write(x->t, moat_buf_rdptr(&x->out), moat_buf_len(&x->out), &w);
            if (moat_ok(rc)) {
                moat_buf_consume(&x->out, w);
                blocked = 0;
                continue;
            }
            if (rc.kind == MOAT_E_AGAIN) {
                blocked = 1;
                break;
            }
            return rc.kind == MOAT_E_CLOSED ? END_EOF : END_IO;
        }
        if (x->closed && !x->bye) {
            continue; /* the stream closed while frames were made (our RST_STREAM): say bye */
        }
        int want_read = nghttp2_session_want_read(x->s);
        int pending_out = moat_buf_len(&x->out) > 0;
        if (!want_read && !pending_out) {
            return END_DONE;
        }
        if (want_read) {
            unsigned char in[IN_PIECE];
            size_t got = 0;
            moat_rc rc = moat_transport_read(x->t, in, sizeof(in), &got);
            if (moat_ok(rc)) {
                if (x->received == 0) {
                    x->h->first_byte_ms = now_ms(x);
                }
                x->received += got;
                ssize_t used = nghttp2_session_mem_recv(x->s, in, got);
                if (used < 0) {
                    if (!x->cb_failed && !x->too_many_interim && !x->head_too_big) {
                        note_lib(x, "%s", nghttp2_strerror((int)used));
                    }
                    return END_LIB;
                }
                continue;
            }
            if (rc.kind == MOAT_E_CLOSED) {
                return END_EOF;
            }
            if (rc.kind != MOAT_E_AGAIN) {
                return END_IO;
            }
            if (moat_transport_pending(x->t)) {
                continue;
            }
        }
        if (wait_io(x->t->fd, want_read, pending_out, deadline_ms) != 0) {
            return END_TIMEOUT;
        }
    }
}

/* How far the answer got, for the end of a sentence. */
static const char *progress(const struct h2x *x, char *out, size_t outlen)
{
    if (!x->got_head) {
        moat_client__fmt(out, outlen, "before the response head");
    } else {
        moat_client__fmt(out, outlen, "after the %d head and %llu body bytes", x->status,
                         (unsigned long long)x->h->body_bytes);
    }
    return out;
}

/* The session is over: a success, or the one sentence that says why not. */
static moat_rc conclude(struct h2x *x, enum h2_end end, struct moat_err *err)
{
    struct moat_client_hop *h = x->h;
    char eb[16], pb[64];
    if (x->nomem) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (x->cb_failed) {
        return moat_client_hop_fail(h, MOAT_CC_LOCAL, err, "cannot write the response body");
    }
    if (x->head_too_big) {
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                    "the response head is larger than %d KiB",
                                    MOAT_CLIENT_HEAD_MAX / 1024);
    }
    if (x->too_many_interim) {
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                    "the server sent more than %d interim (1xx) answers",
                                    MOAT_H1C_MAX_INTERIM);
    }
    /* RFC 9113 §8.1: a server may reset with NO_ERROR once its answer is complete. */
    if (x->got_head && x->got_end) {
        return MOAT_RC_OK;
    }
    if (x->rst_in) {
        return moat_client_hop_fail(
            h, MOAT_CC_HTTP_PROTOCOL, err, "the server reset the stream: %s (0x%x) %s (%s)",
            moat_h2_error_name(x->rst_in_code, eb, sizeof(eb)), x->rst_in_code,
            progress(x, pb, sizeof(pb)), moat_h2_error_words(x->rst_in_code));
    }
    if (x->goaway_in && (x->goaway_in_code != NGHTTP2_NO_ERROR || x->goaway_last < x->stream)) {
        char debug[MOAT_H2_DEBUG_MAX + 24] = "";
        if (x->goaway_debug[0] != '\0') {
            moat_client__fmt(debug, sizeof(debug), "; debug data \"%s\"", x->goaway_debug);
        }
        return moat_client_hop_fail(
            h, MOAT_CC_HTTP_PROTOCOL, err,
            "the server ended the connection with GOAWAY: %s (0x%x) %s (%s); last "
            "stream %d%s%s",
            moat_h2_error_name(x->goaway_in_code, eb, sizeof(eb)), x->goaway_in_code,
            progress(x, pb, sizeof(pb)), moat_h2_error_words(x->goaway_in_code),
            (int)x->goaway_last,
            x->goaway_last < x->stream ? ", so the request was not processed" : "", debug);
    }
    if (x->goaway_out || x->rst_out || (end == END_LIB && x->lib[0] != '\0')) {
        char what[80] = "";
        if (x->goaway_out) {
            moat_client__fmt(what, sizeof(what), "; moat ended the connection with GOAWAY %s",
                             moat_h2_error_name(x->goaway_out_code, eb, sizeof(eb)));
        } else if (x->rst_out) {
            moat_client__fmt(what, sizeof(what), "; moat reset the stream with %s",
                             moat_h2_error_name(x->rst_out_code, eb, sizeof(eb)));
        }
        return moat_client_hop_fail(
            h, MOAT_CC_HTTP_PROTOCOL, err, "the server's HTTP/2 is malformed %s: %s%s",
            progress(x, pb, sizeof(pb)), x->lib[0] ? x->lib : "nghttp2 refused what it sent", what);
    }
    switch (end) {
    case END_TIMEOUT:
        if (x->got_head) {
            return moat_client_hop_fail(h, MOAT_CC_TIMEOUT, err,
                                        "the response body did not arrive within the timeout");
        }
        return moat_client_hop_fail(h, MOAT_CC_TIMEOUT, err,
                                    x->received == 0
                                        ? "the server accepted the connection but sent no HTTP/2 "
                                          "frame within the timeout"
                                        : "the server accepted the request but sent no answer "
                                          "within the timeout");
    case END_IO:
        return moat_client_hop_fail(h, MOAT_CC_TLS_OTHER, err, "reading the response failed (%s)",
                                    x->t->fail_reason ? x->t->fail_reason
                                                      : "TLS or connection error");
    case END_EOF:
        if (x->goaway_in) {
            /* A graceful GOAWAY that covered our stream, then the close before the answer. */
            return moat_client_hop_fail(
                h, MOAT_CC_HTTP_PROTOCOL, err,
                "the server sent GOAWAY NO_ERROR (last stream %d) and closed the "
                "connection %s",
                (int)x->goaway_last, progress(x, pb, sizeof(pb)));
        }
        if (x->received == 0) {
            return moat_client_hop_fail(
                h, MOAT_CC_CLOSED, err,
                "the server closed the connection without answering the request");
        }
        if (x->got_head) {
            return moat_client_hop_fail(
                h, MOAT_CC_HTTP_PROTOCOL, err,
                "the body was cut short: %llu bytes arrived, then the server closed "
                "the connection without END_STREAM",
                (unsigned long long)h->body_bytes);
        }
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                    "the server closed the connection before the response head");
    case END_DONE:
    case END_LIB:
    default:
        if (x->closed) {
            return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err,
                                        "the stream closed with %s (0x%x) %s",
                                        moat_h2_error_name(x->close_code, eb, sizeof(eb)),
                                        x->close_code, progress(x, pb, sizeof(pb)));
        }
        return moat_client_hop_fail(h, MOAT_CC_HTTP_PROTOCOL, err, "the HTTP/2 session ended %s",
                                    progress(x, pb, sizeof(pb)));
    }
}

static moat_rc session_new(struct h2x *x, struct moat_err *err)
{
    nghttp2_session_callbacks *cbs = NULL;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    int r = nghttp2_session_client_new(&x->s, cbs, x);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "cannot start the HTTP/2 session: %s", nghttp2_strerror(r));
    }
    /* No pushes (RFC 9113 §8.4: a client may refuse them all); a larger window so a big body
     * is not held to 64 KiB per round trip; the head limit moat enforces anyway. */
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, MOAT_CLIENT_H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MOAT_CLIENT_HEAD_MAX},
    };
    r = nghttp2_submit_settings(x->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (r == 0) {
        r = nghttp2_session_set_local_window_size(x->s, NGHTTP2_FLAG_NONE, 0,
                                                  MOAT_CLIENT_H2_WINDOW);
    }
    if (r != 0) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "HTTP/2 settings: %s", nghttp2_strerror(r));
    }
    return MOAT_RC_OK;
}

moat_rc moat_client_h2_exchange(struct moat_transport *t, double deadline_ms,
                                const struct moat_client_req *rq, moat_client_body_cb cb,
                                void *cb_arg, struct moat_client_hop *h, struct moat_err *err)
{
    h->stage = MOAT_STAGE_HTTP;
    h->http2 = 1;
    h->body_framing = MOAT_CLIENT_BODY_H2;
    moat_h2rec_clear(&h->h2);
    struct h2x *x = calloc(1, sizeof(*x));
    struct req_fields *q = calloc(1, sizeof(*q));
    moat_rc rc = MOAT_RC_OK;
    if (x == NULL || q == NULL) {
        free(x);
        free(q);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    x->t = t;
    x->h = h;
    x->rq = rq;
    x->cb = cb;
    x->cb_arg = cb_arg;
    moat_buf_init(&x->out, OUT_LIMIT);
    moat_buf_init(&x->resp, MOAT_CLIENT_HEAD_MAX);
    moat_buf_init(&x->block, MOAT_H2_FIELDS_MAX);
    rc = session_new(x, err);
    if (!moat_ok(rc)) {
        goto out;
    }
    build_fields(q, rq);
    free(h->req_head);
    h->req_head = request_text(q, rq);
    if (h->req_head == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        goto out;
    }
    nghttp2_data_provider body = {.source = {.ptr = NULL}, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(x->s, NULL, q->nv, q->n, rq->body ? &body : NULL, x);
    if (id < 0) {
        rc = moat_err_set(err, MOAT_E_INTERNAL, __FILE__, __LINE__,
                          "cannot submit the HTTP/2 request: %s", nghttp2_strerror(id));
        goto out;
    }
    x->stream = id;
    /* The preface is no frame, so no callback reports it; nghttp2 sends it first. */
    struct moat_h2_frame preface = {.ms = now_ms(x),
                                    .dir = MOAT_TRACE_OUT,
                                    .type = MOAT_H2_PREFACE,
                                    .length = NGHTTP2_CLIENT_MAGIC_LEN};
    moat_h2rec_add(&h->h2, &preface);
    h->req_ms = now_ms(x);
    enum h2_end end = pump(x, deadline_ms);
    rc = conclude(x, end, err);
    if (moat_ok(rc) && h->done_ms == 0) {
        h->done_ms = now_ms(x);
    }
out:
    nghttp2_session_del(x->s);
    moat_buf_clear(&x->out);
    moat_buf_clear(&x->resp);
    moat_buf_clear(&x->block);
    free(x);
    free(q);
    return rc;
}
