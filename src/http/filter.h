/*
 * filter.h: a filter exchange, which stands between a streaming handler and the exchange it
 * would answer through (the session's, or another filter's), changes what it must of the
 * answer (serve/encode.c compresses it, serve/cache.c stores it) and passes the rest on. The
 * handler holds the filter's `ex`; the session holds the filter's stream ops in the handler's
 * place. A filter frees itself when the exchange ends, whichever side ends it.
 *
 * A filter embeds struct moat_exch_filter first and fills `destroy`; its ops table takes
 * moat_filter_read_body, _room, _trailers and _fail as they are and has start, send and finish
 * of its own (which end in moat_exch_* calls on `inner` and in destroy).
 */
#ifndef MOAT_HTTP_FILTER_H
#define MOAT_HTTP_FILTER_H

#include "http/exchange.h"

struct moat_exch_filter {
    struct moat_exch ex;                /* what the handler holds */
    struct moat_exch *inner;            /* what the filter answers through */
    const struct moat_stream_ops *hops; /* the handler's, called through the filter's */
    void *hh;
    void (*destroy)(struct moat_exch_filter *f);
};

MOAT_MUST_USE moat_rc moat_filter_read_body(struct moat_exch *ex, void *buf, size_t len, size_t *n);
size_t moat_filter_room(struct moat_exch *ex);
const struct moat_buf *moat_filter_trailers(struct moat_exch *ex);
void moat_filter_fail(struct moat_exch *ex, int status);

/* After the handler returned: when it streams, the filter takes its place in res (and lives
 * until the exchange ends), else the filter is destroyed. f NULL: nothing. */
void moat_filter_adopt(struct moat_exch_filter *f, struct moat_res *res);

#endif
