/*
 * write.h: HTTP/1.1 message heads and chunked framing, written in one place for every sender:
 * the server's answers (own and proxied), the proxy's requests to origins, interim 100s.
 *
 * Heads are assembled with copies into a moat_buf, never with printf: formatting the head with
 * vsnprintf was 18% of the instructions of a keep-alive request (callgrind, bench/README.md).
 */
#ifndef MOAT_HTTP1_WRITE_H
#define MOAT_HTTP1_WRITE_H

#include "core/buf.h"
#include "core/err.h"
#include "core/slice.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The whole interim answer a server sends before reading a body (RFC 9110 §10.1.1). */
#define MOAT_H1_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"
#define MOAT_H1_CONTINUE_LEN (sizeof(MOAT_H1_CONTINUE) - 1)

/* How the body after a head is delimited. */
enum moat_h1_frame {
    MOAT_H1_FRAME_NONE = 0, /* no framing field: no body (HEAD, 204, 304), or delimited by close */
    MOAT_H1_FRAME_LENGTH,   /* Content-Length: length */
    MOAT_H1_FRAME_CHUNKED,  /* Transfer-Encoding: chunked */
};

/* What the head says about the connection. */
enum moat_h1_conn {
    MOAT_H1_CONN_DEFAULT = 0, /* nothing: HTTP/1.1 keeps it open */
    MOAT_H1_CONN_CLOSE,       /* Connection: close */
    MOAT_H1_CONN_KEEP_ALIVE,  /* Connection: keep-alive (an HTTP/1.0 peer that asked for it) */
};

/* "HTTP/1.1 SSS Reason\r\nDate: ...\r\n" and, when `server`, "Server: moat\r\n". A status
 * outside 100..999 is written as 500. */
MOAT_MUST_USE moat_rc moat_h1_head_begin(struct moat_buf *b, int status, time_t now, int server);

/* The request line "METHOD TARGET[?QUERY] HTTP/1.1\r\n": TARGET as given, then "?" and QUERY
 * when QUERY is not empty (a path and query kept apart, as in absolute-form). */
MOAT_MUST_USE moat_rc moat_h1_head_request(struct moat_buf *b, moat_slice method, moat_slice target,
                                           moat_slice query);

/* One field line "Name: value\r\n" (the caller has checked both). */
MOAT_MUST_USE moat_rc moat_h1_head_field(struct moat_buf *b, moat_slice name, moat_slice value);

/* The framing field for `frame` (and `length`), the connection field for `conn`, and the empty
 * line that ends the head. */
MOAT_MUST_USE moat_rc moat_h1_head_end(struct moat_buf *b, enum moat_h1_frame frame,
                                       uint64_t length, enum moat_h1_conn conn);

/* One chunk of `n` > 0 bytes: "HEX\r\n" data "\r\n". n == 0 writes nothing (a zero-size chunk
 * would end the body). */
MOAT_MUST_USE moat_rc moat_h1_chunk(struct moat_buf *b, const void *p, size_t n);

/* The last chunk and an empty trailer section: "0\r\n\r\n". */
MOAT_MUST_USE moat_rc moat_h1_chunk_last(struct moat_buf *b);

/* The last-chunk with a trailer section: `lines` ("Name: value\r\n" each, the caller's checked
 * fields; NULL or empty: none), then the final CRLF. */
MOAT_MUST_USE moat_rc moat_h1_chunk_last_trailers(struct moat_buf *b, const struct moat_buf *lines);

#endif
