/*
 * coding.h: content codings (RFC 9110 §8.4): which one a client's Accept-Encoding lets moat
 * use, and the streaming encoders for gzip (zlib), br (libbrotlienc) and zstd (libzstd).
 * Protocol-neutral: the static handler and the proxy's answers use the same negotiation and
 * the same encoders (serve/encode.h says when).
 */
#ifndef MOAT_HTTP_CODING_H
#define MOAT_HTTP_CODING_H

#include "core/buf.h"
#include "core/err.h"
#include "http/field.h"

#include <stddef.h>

enum moat_coding {
    MOAT_CODING_IDENTITY = 0,
    MOAT_CODING_GZIP,
    MOAT_CODING_BR,
    MOAT_CODING_ZSTD,
    MOAT_CODING_COUNT,
};

#define MOAT_CODING_BIT(c) (1u << (unsigned)(c))

/* "gzip", "br", "zstd" ("identity" for none): the Content-Encoding token. */
const char *moat_coding_name(enum moat_coding c);
/* The file suffix of a precompressed sibling: ".gz", ".br", ".zst" ("" for identity). */
const char *moat_coding_suffix(enum moat_coding c);
/* The coding a configuration word names (case-insensitive); IDENTITY when none. */
enum moat_coding moat_coding_by_name(const char *s);

/*
 * The coding to answer with, from the request's Accept-Encoding fields (all of them, each a
 * list of `coding[;q=V]`, "x-gzip" as gzip, "*" for any other): among the `npref` codings of
 * `pref` (the server's order of preference), the one with the highest q above 0, the first in
 * `pref` on a tie; IDENTITY when there is none, when the request has no Accept-Encoding (a
 * client that says nothing gets what it surely understands), or when identity has a higher
 * q than every coding.
 */
enum moat_coding moat_coding_choose(const struct moat_field *fields, size_t nfields,
                                    const enum moat_coding *pref, size_t npref);

/* Which codings the Accept-Encoding fields accept (q above 0), as MOAT_CODING_BIT()s, with
 * the identity bit when the client names identity (or "*") with a q above 0: two requests
 * with the same bits get the same answer from any server that negotiates by q-values, so a
 * cache keys its Vary: Accept-Encoding variants by them. */
unsigned moat_coding_accepted(const struct moat_field *fields, size_t nfields);

/* A streaming encoder; one per answer, owned by whoever made it. */
struct moat_encoder;

/* level: the codec's own scale (gzip 1-9, br 0-11, zstd 1-19); the window is kept small
 * enough for on-the-fly use (at most 256 KiB of history for br and zstd). */
MOAT_MUST_USE moat_rc moat_encoder_new(enum moat_coding c, int level, struct moat_encoder **out,
                                       struct moat_err *err);
void moat_encoder_free(struct moat_encoder *e);

enum moat_encoder_op {
    MOAT_ENCODER_MORE = 0, /* more input follows: output what is ready */
    MOAT_ENCODER_FLUSH,    /* what came so far must be decodable by the client now */
    MOAT_ENCODER_END,      /* the end: finish the stream */
};

/* Compress n bytes of `in` (n may be 0), appending what comes out to `out`. A failure (out of
 * memory, the codec's error) leaves the encoder unusable. */
MOAT_MUST_USE moat_rc moat_encoder_put(struct moat_encoder *e, const void *in, size_t n,
                                       enum moat_encoder_op op, struct moat_buf *out);

#endif
