/*
 * encode.h: compression of answers (docs/encode.md), for the static handler and the proxy.
 * Which answers: a site with `encode`, a media type in its encode_types, at least encode_min
 * bytes (or of unknown length), not a range, not already encoded, not `no-transform`; which
 * coding: the client's Accept-Encoding (http/coding.h) among the site's. Every such answer
 * says `Vary: Accept-Encoding`, whatever coding it went out in, so a cache keeps them apart.
 *
 * Streamed: a file or a relayed body is compressed piece by piece as it goes out (each piece
 * the proxy relays is flushed through the encoder, so a slow origin's bytes are never held
 * back), never buffered whole.
 */
#ifndef MOAT_SERVE_ENCODE_H
#define MOAT_SERVE_ENCODE_H

#include "core/loop.h"
#include "http/coding.h"
#include "http/exchange.h"
#include "serve/conf.h"

#include <stdint.h>

/* What an answer to `req` on `site` may be encoded with. */
struct moat_encode_want {
    const struct moat_conf_site *site; /* NULL: no encoding at all */
    enum moat_coding coding;           /* the client's choice; IDENTITY: none it accepts */
    struct moat_loop *loop;            /* the worker's: streamed answers run on it */
};

/* The want for a request (site->nencode == 0: want->site is NULL). */
void moat_encode_want_of(const struct moat_conf_site *site, const struct moat_req *req,
                         struct moat_loop *loop, struct moat_encode_want *out);

/* Whether answers of this Content-Type value (parameters allowed) are compressed. */
int moat_encode_type_ok(const struct moat_conf_site *site, const char *type, size_t len);
/* The site's smallest answer worth compressing, in bytes. */
uint64_t moat_encode_min(const struct moat_conf_site *site);
/* Whether the site looks for precompressed siblings. */
int moat_encode_precompressed(const struct moat_conf_site *site);

/* The ETag of a representation in coding c, made from the identity one's: "x" -> "x-br",
 * W/"x" -> W/"x-br" (RFC 9110 §8.8.3.3: each coding is another representation). Returns the
 * length written to out (at most elen + 6), 0 when it does not fit or etag is not quoted. */
size_t moat_encode_etag(const char *etag, size_t elen, enum moat_coding c, char *out, size_t cap);

/*
 * Answer with [0, size) of the file fd in `want->coding`, streamed: `lines` (the handler's
 * fields so far, Content-Encoding and Vary included) are taken and emptied, res gets the
 * stream. The file is let go through moat_res_file_done(fd, release, h). On failure nothing
 * is taken (the caller still owns fd).
 */
MOAT_MUST_USE moat_rc moat_encode_file(const struct moat_encode_want *want,
                                       const struct moat_req *req, struct moat_res *res,
                                       struct moat_buf *lines, int fd, uint64_t size,
                                       void (*release)(void *h), void *h);

/* Compress `n` bytes in one go into `out` (small answers: a known length). */
MOAT_MUST_USE moat_rc moat_encode_bytes(const struct moat_encode_want *want, const void *p,
                                        size_t n, struct moat_buf *out);

/*
 * The proxy's answers: a filter exchange between the session's (req->exch) and the handler.
 * moat_encode_filter_new gives a copy of req whose exch is the filter (NULL want or nothing
 * to do: returns 0 and the caller uses req as it is). After the handler returned, call
 * moat_encode_filter_adopt: when it answered by streaming, the filter takes its place in res
 * and lives until the exchange ends; else the filter is freed.
 */
struct moat_encode_filter;
int moat_encode_filter_new(const struct moat_encode_want *want, const struct moat_req *req,
                           struct moat_req *copy, struct moat_encode_filter **out);
void moat_encode_filter_adopt(struct moat_encode_filter *f, struct moat_res *res);

#endif
