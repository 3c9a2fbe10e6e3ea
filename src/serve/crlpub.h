/*
 * crlpub.h: publishing CA revocation lists over HTTP (`crl_publish PATH CA_DIR` in a site).
 *
 * When the configuration is loaded (start and every reload), each crl_publish is turned into
 * one immutable entry of the snapshot: the CRL as DER (RFC 5280 §4.2.1.13: a CRL fetched over
 * HTTP is DER, served as application/pkix-crl, RFC 2585 §4.2) with its validators. Requests
 * are answered from memory, on the site's HTTPS listeners and on the plain `redirect_http`
 * listener, where it answers instead of redirecting: clients fetch CRLs over plain HTTP, and
 * fetching one over HTTPS from the server being checked would be circular.
 *
 * Where the CRL comes from (docs/config.md):
 *  - any CA folder: the file `moat ca crl` wrote (crl.pem, or root-crl.pem for `root`). The
 *    server never needs the CA's keys. A missing, expired, stale (revocations in index.txt
 *    that it lacks) or foreign-signed file is served as it is, or 404 when missing, with a
 *    warning that says how to refresh it (`moat ca crl`, then SIGHUP).
 *  - moat's local CA (`local`, or a path to the same folder), whose keys the server already
 *    holds to issue zero-config certificates: the server writes a new CRL itself (as `moat ca
 *    crl` would) when the file is missing, damaged, foreign-signed, stale or past two thirds of
 *    its validity, and asks to be rebuilt before it runs out (the snapshot's crl_refresh_at).
 */
#ifndef MOAT_SERVE_CRLPUB_H
#define MOAT_SERVE_CRLPUB_H

#include "core/buf.h"
#include "core/err.h"
#include "core/httpdate.h"
#include "core/slice.h"
#include "http/exchange.h"
#include "serve/conf.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Largest CRL published from memory; far above what a CA of this size makes, and it fits the
 * connection's output buffer. */
#define MOAT_CRLPUB_MAX_BYTES (2 * 1024 * 1024)

/* One published CRL. Immutable once built; shared by all workers through the snapshot. */
struct moat_crlpub {
    const struct moat_conf_site *site;        /* borrowed from the snapshot's conf */
    const struct moat_conf_crl_publish *conf; /* borrowed: path, folder, where */
    unsigned char *der;                       /* owned; NULL: no CRL yet (answers 404) */
    size_t der_len;
    char etag[36]; /* strong, quoted: 128 bits of SHA-256 of the DER, hex */
    size_t etag_len;
    time_t this_update, next_update;
    char last_modified[MOAT_HTTPDATE_SIZE]; /* this_update */
    char expires[MOAT_HTTPDATE_SIZE];       /* next_update */
};

/* Every CRL a snapshot publishes, in config order (site by site). */
struct moat_crlpub_set {
    struct moat_crlpub *v; /* owned, n entries */
    size_t n;
};

/*
 * Build the entries for every crl_publish of `conf` (borrowed: the set points into it, so it
 * must outlive the set). `state_dir` holds moat's local CA (`<state_dir>/ca`). *out stays NULL
 * when no site publishes a CRL, so a request costs one NULL test then. For the local CA,
 * *refresh_at is lowered (0: not set yet) to when its CRL should be made again.
 * A bad CA folder (missing, not a CA, no readable intermediate.pem/root.pem) or a damaged or
 * oversized CRL file is MOAT_E_CONFIG with err->where the directive's "file:line:col" and the
 * fix. Warnings (a missing, expired or stale CRL) always go to the error log, the note that
 * the server wrote a new CRL only when not `quiet`. With `dry_run` (`serve --check`) nothing is
 * written: where the server would sign a new CRL for the local CA, it says so instead.
 * *out is freed with moat_crlpub_free.
 */
MOAT_MUST_USE moat_rc moat_crlpub_build(const struct moat_conf *conf, const char *state_dir,
                                        int quiet, int dry_run, struct moat_crlpub_set **out,
                                        time_t *refresh_at, struct moat_err *err);
/* NULL does nothing. */
void moat_crlpub_free(struct moat_crlpub_set *s);

/*
 * The entry that answers `npath` (the request's path decoded and normalised, as crl_publish
 * paths are: moat_req.npath; .p NULL when it did not normalise) for a request routed to
 * `site`: the site's own entry for that path, else, on the plain listener (`plain`), the first
 * entry of any site with that path, because a CRL's URL often names a host that is no site's
 * name. NULL when none (or `set` is NULL).
 */
const struct moat_crlpub *moat_crlpub_find(const struct moat_crlpub_set *set,
                                           const struct moat_conf_site *site, moat_slice npath,
                                           int plain);

/*
 * Answer a request for `p` at time `now`: GET and HEAD get 200 with the DER (appended to
 * `body` for GET only; *length is its size either way), Content-Type application/pkix-crl,
 * ETag, Last-Modified (thisUpdate), Expires (nextUpdate) and Cache-Control max-age up to
 * nextUpdate; 304 when If-None-Match (weak comparison, RFC 9110 §13.1.2) or, without it,
 * If-Modified-Since says the client has it; 404 when there is no CRL yet. OPTIONS gets 204,
 * other methods 405, both with Allow. Header lines are appended to `hdrs`, the caller writes
 * the status line and the framing. Fails only when a buffer is full (MOAT_E_LIMIT/NOMEM).
 */
/* The same as a handler of http/exchange.h (ctx: the const struct moat_crlpub *). */
MOAT_MUST_USE moat_rc moat_crlpub_handle(const void *ctx, const struct moat_req *req,
                                         struct moat_res *res, struct moat_buf *fields,
                                         struct moat_buf *body);

MOAT_MUST_USE moat_rc moat_crlpub_respond(const struct moat_crlpub *p, int method_id,
                                          moat_slice if_none_match, moat_slice if_modified_since,
                                          time_t now, int *status, uint64_t *length,
                                          struct moat_buf *hdrs, struct moat_buf *body);

#endif
