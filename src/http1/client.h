/*
 * client.h: the HTTP/1.1 client session: one connection to an origin, carrying one exchange at
 * a time and, when both sides keep it alive, the next one after it. The reverse proxy, moat get and
 * trace, the ACME client and the health checks all reach servers through it, so the rules a client
 * must keep (RFC 9112 §6.3 framing of answers, no body after HEAD/204/304, interim 1xx skipped,
 * nothing past Content-Length taken as body, a connection reused only when that is safe) live
 * in one place instead of in each caller.
 *
 * The session knows neither the event loop nor TLS: it reads and writes through its embedded
 * transport (core/transport.h), so the owner picks plain TCP or layers TLS over the socket
 * (tls/transport.h) after moat_h1c_connect, and a unit test puts an in-memory fake there.
 * Every call is non-blocking: MOAT_E_AGAIN means "wait for the socket, then call again".
 *
 * Memory: two buffers the session keeps between requests (out: request bytes for the origin,
 * bounded by max_head_bytes plus one piece of body; in: bytes from the origin, bounded by
 * max_head_bytes plus one piece) and the parsed answer head. In the steady state of a reused
 * connection nothing is allocated; moat_h1c_idle gives the buffers back while it is parked.
 *
 * Use, in order:
 *   moat_h1c_init; moat_h1c_connect (or put a transport in c->tr); moat_h1c_ready until OK;
 *   b = moat_h1c_begin, moat_h1_head_request/_field into b, moat_h1c_head_end (or a whole
 *   head of the caller's into b, then moat_h1c_head_written);
 *   moat_h1c_body ... moat_h1c_body_end (when the head declared a body), moat_h1c_flush
 *   between them as moat_h1c_body_room asks;
 *   moat_h1c_read_head until OK; moat_h1c_read_body until MOAT_E_CLOSED;
 *   moat_h1c_reusable ? moat_h1c_reset and begin again : moat_h1c_close.
 * The answer may be read before the request is all sent (an origin that refuses early); such
 * a connection is then not reusable.
 */
#ifndef MOAT_HTTP1_CLIENT_H
#define MOAT_HTTP1_CLIENT_H

#include "core/buf.h"
#include "core/err.h"
#include "core/slice.h"
#include "core/transport.h"
#include "http1/chunked.h"
#include "http1/parse.h"
#include "http1/write.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Body bytes moved per call either way: one TLS record. */
#define MOAT_H1C_PIECE 16384
/* Interim answers (100, 103...) skipped before the final one; more is an origin in a loop. */
#define MOAT_H1C_MAX_INTERIM 16

struct moat_h1c_limits {
    size_t max_head_bytes;   /* an answer head (each interim one too); 0: 64 KiB. The request
                                head may take this plus MOAT_H1C_PIECE */
    size_t max_fields;       /* field lines of the answer head; 0: the parser's default (100) */
    uint64_t max_body_bytes; /* the answer's decoded body; 0: no limit */
};

/* The request side: where the caller is in writing the request. */
enum moat_h1c_req_state {
    MOAT_H1C_REQ_IDLE = 0, /* no request: moat_h1c_begin may be called */
    MOAT_H1C_REQ_HEAD,     /* the caller is writing the head (moat_h1c_begin's buffer) */
    MOAT_H1C_REQ_BODY,     /* the head is queued; body bytes may follow */
    MOAT_H1C_REQ_DONE,     /* the whole request is queued (maybe not yet written) */
    MOAT_H1C_REQ_TUNNEL,   /* after a 101: raw bytes for the new protocol */
};

/* The answer side. */
enum moat_h1c_resp_state {
    MOAT_H1C_RESP_IDLE = 0, /* no request, so no answer is awaited */
    MOAT_H1C_RESP_HEAD,     /* reading the head (interim answers skipped on the way) */
    MOAT_H1C_RESP_BODY,     /* the head was returned; the body is being read */
    MOAT_H1C_RESP_DONE,     /* the body is complete (or there was none) */
    MOAT_H1C_RESP_TUNNEL,   /* after a 101: raw bytes until the origin closes */
    MOAT_H1C_RESP_FAILED,   /* the answer failed: only moat_h1c_close remains */
};

/* Why an answer failed, for a caller that words failures itself (moat get prints its own
 * sentences; the proxy logs err's words): where it stopped, told apart without parsing words. */
enum moat_h1c_why {
    MOAT_H1C_WHY_NONE = 0,         /* no failure */
    MOAT_H1C_WHY_NO_ANSWER,        /* the connection ended before any byte of the answer */
    MOAT_H1C_WHY_HEAD_CUT,         /* it ended inside a head (fault.head_bytes had come) */
    MOAT_H1C_WHY_HEAD_REFUSED,     /* the parser refused the head: fault.parse says why */
    MOAT_H1C_WHY_HEAD_TOO_LARGE,   /* the head filled the input buffer */
    MOAT_H1C_WHY_TOO_MANY_INTERIM, /* more than MOAT_H1C_MAX_INTERIM 1xx answers */
    MOAT_H1C_WHY_EARLY_SWITCH,     /* a 101 before the request was complete */
    MOAT_H1C_WHY_BODY_TOO_LARGE,   /* over max_body_bytes */
    MOAT_H1C_WHY_BODY_CUT,         /* it ended before the length or the last chunk, or a
                                      close-delimited body ended by a failure (fault.io) */
    MOAT_H1C_WHY_CHUNKED_REFUSED,  /* the chunked framing is malformed: fault.parse */
    MOAT_H1C_WHY_NOMEM,
    MOAT_H1C_WHY_COUNT /* keep last */
};

/* The facts behind a failed answer (see moat_h1c_fault). */
struct moat_h1c_fault {
    enum moat_h1c_why why;
    enum moat_errkind io;      /* how the transport ended it (NO_ANSWER, HEAD_CUT, BODY_CUT):
                                  MOAT_E_CLOSED a clean or reset end, MOAT_E_IO, MOAT_E_TLS */
    size_t head_bytes;         /* HEAD_CUT: bytes of the head held (interim answers not counted) */
    enum moat_h1_status parse; /* HEAD_REFUSED, CHUNKED_REFUSED: the parser's or decoder's */
    size_t parse_pos;          /* HEAD_REFUSED: the offending byte's offset in the head */
    const char *parse_what;    /* the parser's or decoder's words (static), or NULL */
};

/*
 * One connection to an origin. Invariants: _out holds only bytes of the current request not
 * yet written; _in holds the answer from its first unread byte (the head while _head_held,
 * then body bytes not yet handed out); _in is empty whenever a body read goes to the
 * transport, so a piece is at most MOAT_H1C_PIECE and _in stays within its limit.
 */
struct moat_h1c {
    struct moat_transport tr; /* owned: closed by moat_h1c_close; the one public field */
    /* private */
    struct moat_buf _out;        /* owned: request bytes queued for the origin */
    struct moat_buf _in;         /* owned: bytes from the origin */
    struct moat_h1_limits _plim; /* the parser's limits, from moat_h1c_limits */
    uint64_t _max_body;          /* 0: none */
    enum moat_h1c_req_state _req;
    enum moat_h1c_resp_state _resp_st;
    enum moat_errkind _fail;      /* after MOAT_H1C_RESP_FAILED: the kind every read returns */
    int _head_request;            /* the request is HEAD: the answer has no body */
    int _req_keep_alive;          /* the request did not say Connection: close */
    int _req_chunked;             /* the request body is chunked; else _req_left bytes */
    uint64_t _req_left;           /* body bytes the request's Content-Length still promises */
    struct moat_h1_resp _resp;    /* the parsed head; slices into _in (see read_head) */
    struct moat_h1_chunked _rdec; /* when _resp.body is chunked */
    struct moat_buf _trailers;    /* owned: its trailer fields, when it had some */
    uint64_t _resp_left;          /* Content-Length body bytes still to come */
    uint64_t _resp_total;         /* decoded body bytes handed out */
    unsigned _interim;            /* 1xx answers skipped for this request */
    uint64_t _received;           /* answer bytes read from the transport for this request */
    struct moat_h1c_fault _fault; /* after MOAT_H1C_RESP_FAILED: what failed */
    int _head_held;               /* _resp's head is still at the front of _in */
    int _connected;               /* SO_ERROR checked: the TCP connect is done */
};

/* Make c an unconnected session (c->tr plain with no socket). `lim` may be NULL for the
 * defaults; it is copied. Cannot fail; allocates nothing. */
void moat_h1c_init(struct moat_h1c *c, const struct moat_h1c_limits *lim);

/*
 * Start a non-blocking TCP connect to addr (SOCK_NONBLOCK | SOCK_CLOEXEC, TCP_NODELAY): the
 * socket goes into c->tr, plain, which owns it from then on; wait for it to become writable,
 * then call moat_h1c_ready. To speak TLS, layer it over c->tr.fd now. c->tr must have no socket
 * (MOAT_E_INTERNAL otherwise). Fails with MOAT_E_LIMIT "no socket for the origin (file
 * descriptors exhausted?)" or MOAT_E_IO "cannot connect: <strerror>"; c->tr then has no socket.
 */
MOAT_MUST_USE moat_rc moat_h1c_connect(struct moat_h1c *c, const struct sockaddr *addr,
                                       socklen_t len, struct moat_err *err);

/*
 * After the socket reported writable or an error: whether the connect worked (asked of the
 * kernel once; skipped when c->tr.fd < 0, so a fake transport needs no socket), then the
 * transport's handshake (plain: nothing). MOAT_OK: requests may go; MOAT_E_AGAIN: wait and call
 * again; else "cannot connect: <strerror>" (MOAT_E_IO) or the handshake's kind and words
 * (MOAT_E_TLS: ask tls/ for the verify result, this layer cannot).
 */
MOAT_MUST_USE moat_rc moat_h1c_ready(struct moat_h1c *c, struct moat_err *err);

/*
 * Start a request: returns the buffer (borrowed, owned by c) for the caller to write the
 * request line and fields into with moat_h1_head_request / moat_h1_head_field; the framing and
 * connection fields are moat_h1c_head_end's. `head_request`: the method is HEAD, so the answer
 * has no body whatever its head says. Only on a fresh or reset session (else NULL). A head
 * larger than max_head_bytes + MOAT_H1C_PIECE makes the writers fail with MOAT_E_LIMIT.
 */
struct moat_buf *moat_h1c_begin(struct moat_h1c *c, int head_request);

/*
 * End the head: the framing field for `frame` (`length` for MOAT_H1_FRAME_LENGTH), then
 * "Connection: close" unless `keep_alive`. A request is never close-delimited, so
 * MOAT_H1_FRAME_NONE means no body. MOAT_E_LIMIT when the head does not fit; MOAT_E_INTERNAL
 * outside begin .. head_end.
 */
MOAT_MUST_USE moat_rc moat_h1c_head_end(struct moat_h1c *c, enum moat_h1_frame frame,
                                        uint64_t length, int keep_alive);

/*
 * End a head the caller wrote whole, framing fields, connection field and blank line included
 * (moat get sends and prints its own head byte for byte); `frame`, `length` and `keep_alive`
 * say what those fields declare, and the session holds the request to them as after
 * moat_h1c_head_end. MOAT_E_INTERNAL outside begin .. head_end.
 */
MOAT_MUST_USE moat_rc moat_h1c_head_written(struct moat_h1c *c, enum moat_h1_frame frame,
                                            uint64_t length, int keep_alive);

/* Body bytes moat_h1c_body takes now: 0 when the queue must be flushed first (or no body is
 * expected), never more than the declared length still open. This is the back-pressure. */
size_t moat_h1c_body_room(const struct moat_h1c *c);

/*
 * Queue n body bytes (copied): as they are for a Content-Length body, as one chunk for a
 * chunked one (n == 0 queues nothing: a zero-size chunk would end the body). MOAT_E_LIMIT when
 * n is over moat_h1c_body_room (flush, then retry); MOAT_E_INTERNAL for bytes past the declared
 * length or when no body is expected. After a 101, the bytes go raw to the new protocol.
 */
MOAT_MUST_USE moat_rc moat_h1c_body(struct moat_h1c *c, const void *p, size_t n);

/* The body is complete: the last-chunk for a chunked body. MOAT_E_INTERNAL when a declared
 * length is not reached (close the connection instead: the origin would wait for the rest). */
MOAT_MUST_USE moat_rc moat_h1c_body_end(struct moat_h1c *c);
/* The same with trailer fields ("Name: value\r\n" lines, checked by the caller) after the
 * last-chunk; a Content-Length body cannot carry them and they are dropped. */
MOAT_MUST_USE moat_rc moat_h1c_body_end_trailers(struct moat_h1c *c,
                                                 const struct moat_buf *trailers);

/* Request bytes queued and not yet written. */
static inline size_t moat_h1c_queued(const struct moat_h1c *c)
{
    return moat_buf_len(&c->_out);
}

/*
 * Write what is queued: MOAT_OK when all of it went; MOAT_E_AGAIN when the origin takes no
 * more for now (call again when the socket is writable, with or without more queued); else the
 * transport's kind with "the origin closed while taking the request".
 */
MOAT_MUST_USE moat_rc moat_h1c_flush(struct moat_h1c *c, struct moat_err *err);

/*
 * Read and parse the answer head. Interim answers (1xx) are skipped, except 101, which is
 * returned: the connection then carries another protocol and read_body / body move its raw
 * bytes. MOAT_OK with *resp set (borrowed; its slices point into the session's input and stay
 * valid until the first moat_h1c_read_body, moat_h1c_reset or moat_h1c_close); MOAT_E_AGAIN;
 * on failure the session is done (close it), moat_h1c_fault says what failed, and err says,
 * in the words the proxy logs:
 *   MOAT_E_LIMIT  "the origin's answer head is too large (over N KiB)" / "(too many fields)",
 *                 "the origin sent more than 16 interim (1xx) answers", "the origin's answer
 *                 is larger than N bytes" (a Content-Length over max_body_bytes)
 *   MOAT_E_PEER   "the origin's answer is not valid HTTP/1.1: <what> at byte <n>",
 *                 "the origin sent N bytes that are not an HTTP/1.1 answer head (...), then
 *                 closed"
 *   MOAT_E_TLS    "TLS failure from the origin: <reason>" (with a proxy_cert hint when the
 *                 reason suggests a client certificate is wanted)
 *   MOAT_E_CLOSED or MOAT_E_IO  "the origin closed without answering": on a reused
 *                 connection, the origin's idle close racing the request.
 */
MOAT_MUST_USE moat_rc moat_h1c_read_head(struct moat_h1c *c, const struct moat_h1_resp **resp,
                                         struct moat_err *err);

/*
 * The next piece of the answer's body, decoded (chunked framing removed), without a copy:
 * *piece points into the session's input, 1 .. MOAT_H1C_PIECE bytes, valid until the next
 * call on c. MOAT_OK always with len > 0 (framing alone is consumed inside); MOAT_E_AGAIN;
 * MOAT_E_CLOSED when the body is complete (at once for a bodyless answer; a close-delimited
 * body or a tunnel ends when the origin closes cleanly). Bytes after a Content-Length or the
 * last chunk are never body: they stay unread and make the connection not reusable.
 * Failures (the session is then done):
 *   MOAT_E_PEER   "the origin cut its answer short": the connection ended before the promised
 *                 length or last chunk, or a close-delimited body ended by an I/O or TLS
 *                 failure rather than a clean close (it could be a truncation);
 *                 "malformed chunked answer: <what>"
 *   MOAT_E_LIMIT  "the origin's answer is larger than N bytes" (max_body_bytes)
 */
MOAT_MUST_USE moat_rc moat_h1c_read_body(struct moat_h1c *c, moat_slice *piece,
                                         struct moat_err *err);

/* The answer head's bytes as they came (the status line to the blank line), valid like
 * moat_h1c_read_head's *resp; MOAT_SLICE_NULL before the head or after the first body read. */
moat_slice moat_h1c_head_bytes(const struct moat_h1c *c);

/* Answer bytes read from the transport for this request so far (interim answers and framing
 * included): more than 0 once the origin's first byte came. */
static inline uint64_t moat_h1c_received(const struct moat_h1c *c)
{
    return c->_received;
}

/* After moat_h1c_read_head or moat_h1c_read_body failed: what failed, for a caller that words
 * it itself. Borrowed; valid until moat_h1c_reset or moat_h1c_close. why is NONE otherwise. */
static inline const struct moat_h1c_fault *moat_h1c_fault(const struct moat_h1c *c)
{
    return &c->_fault;
}

/* The answer's trailer fields ("Name: value\r\n" lines as the origin sent them, checked by the
 * decoder) once its chunked body is complete; NULL when there were none. Valid until reset or
 * close. */
const struct moat_buf *moat_h1c_trailers(const struct moat_h1c *c);

/* 1 when the answer's body is complete (moat_h1c_read_body would say MOAT_E_CLOSED). */
static inline int moat_h1c_done(const struct moat_h1c *c)
{
    return c->_resp_st == MOAT_H1C_RESP_DONE;
}

/*
 * 1 when the connection may carry another request: the request was all written, the answer
 * read to its end by its length or last chunk, both sides kept the connection alive (the
 * request did, and the answer is HTTP/1.1 without "Connection: close" or HTTP/1.0 with
 * "keep-alive"), no byte came after the answer, and the origin has not closed. Bytes the
 * origin sends later are for the owner of the idle connection to notice (readable while idle:
 * close it).
 */
int moat_h1c_reusable(const struct moat_h1c *c);

/* Ready a session moat_h1c_reusable said 1 for the next request on the same connection: the
 * transport and the buffers' storage are kept, the rest forgotten. */
void moat_h1c_reset(struct moat_h1c *c);

/* The connection is parked between requests: give back the buffers' storage (they are empty
 * after a complete exchange) and the transport's. */
void moat_h1c_idle(struct moat_h1c *c);

/* Close the connection and free the buffers; c is then as after moat_h1c_init (with its
 * limits), so moat_h1c_connect may follow. Safe twice. */
void moat_h1c_close(struct moat_h1c *c);

#endif
