/*
 * chunked.h: the chunked transfer coding decoder (RFC 9112 §7.1), in place and resumable.
 *
 * Bytes go in as they arrive, split anywhere; the chunk data comes out moved to the front of the
 * same buffer, so a body is decoded without a second buffer or a copy per chunk. Sizes, extensions
 * and trailers are checked strictly (the size line is where smuggling hides: RFC 9112 §11.2), and
 * all state fits in the struct, so no byte is ever read twice.
 */
#ifndef MOAT_HTTP1_CHUNKED_H
#define MOAT_HTTP1_CHUNKED_H

#include "core/buf.h"
#include "http1/parse.h"

#include <stddef.h>
#include <stdint.h>

/* Bounds that keep a hostile peer from making a chunk line or the trailers endless. */
#define MOAT_H1_CHUNK_EXT_MAX 1024 /* bytes of chunk-ext on one size line, from its first ';' */
#define MOAT_H1_CHUNK_TRAILER_DEFAULT 8192 /* max_trailer_bytes when 0 is passed */

struct moat_h1_chunked {
    uint64_t total; /* data bytes produced so far */
    /* Set after init to keep the trailer section: its field lines, checked, as they came
     * ("Name: value\r\n" each); NULL drops them. Bounded by max_trailer_bytes. */
    struct moat_buf *keep_trailers;
    /* private */
    uint64_t _size;        /* chunk size being read, then data bytes left in the chunk */
    uint64_t _max_body;    /* 0: unlimited */
    size_t _max_trailer;   /* bytes of trailer section, final CRLF included */
    size_t _trailer_bytes; /* trailer bytes seen */
    unsigned _state;
    unsigned _digits;         /* hex digits of the size read so far */
    unsigned _ext_bytes;      /* chunk-ext bytes on this size line */
    enum moat_h1_status _err; /* the error returned again after a failure */
    /* on error: */
    size_t err_pos;       /* offending byte's offset in the failing call's input */
    const char *err_what; /* static string; NULL if no error */
};

/* Start decoding a body: `max_body` bounds the decoded data (0 = unlimited), `max_trailer_bytes`
 * the trailer section (0 = MOAT_H1_CHUNK_TRAILER_DEFAULT). */
void moat_h1_chunked_init(struct moat_h1_chunked *c, uint64_t max_body, size_t max_trailer_bytes);

/*
 * Decode buf[0, len_in) in place: the data bytes found are moved to buf[0, *out_len) and
 * *consumed input bytes were used (data never overtakes input, so one buffer is enough).
 * Returns:
 *   MOAT_H1_AGAIN   all input was used (*consumed == len_in): call again with the next bytes,
 *                   after taking the *out_len data bytes (or keeping them and passing the next
 *                   read from buf + *out_len).
 *   MOAT_H1_DONE    the last chunk and the trailers ended: buf + *consumed is the first byte
 *                   after the body (a pipelined request). Trailer fields are checked, then kept
 *                   in keep_trailers or dropped (RFC 9110 §6.5.1 allows it). Further calls
 *                   return DONE, 0, 0.
 *   MOAT_H1_E_BAD   malformed size, extension, chunk end or trailer (err_pos, err_what).
 *   MOAT_H1_E_BODY_TOO_LARGE  a chunk size would take the data over max_body (413).
 *   MOAT_H1_E_HEAD_TOO_LARGE  trailers over max_trailer_bytes (431).
 * After an error, *consumed is the offending byte's offset; further calls fail the same way.
 */
enum moat_h1_status moat_h1_chunked_decode(struct moat_h1_chunked *c, char *buf, size_t len_in,
                                           size_t *consumed, size_t *out_len);

#endif
