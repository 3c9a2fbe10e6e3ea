/*
 * conn.h: the first two steps of a client connection: resolve the name (or take the address
 * --resolve gives) and open a TCP connection to the first address that accepts, each timed,
 * with the facts written into the hop for the trace.
 */
#ifndef MOAT_CLIENT_CONN_H
#define MOAT_CLIENT_CONN_H

#include "client/get.h"
#include "core/err.h"

/*
 * Resolve h->url's host and connect to its addresses in the resolver's order (RFC 6724) until
 * one accepts, before `deadline_ms` (on moat_trace_now_ms's clock). On success *fd is a
 * connected, non-blocking, close-on-exec socket with TCP_NODELAY, owned by the caller. On
 * failure h->cause and h->detail say why (DNS, REFUSED, UNREACHABLE, TIMEOUT), err holds the
 * same sentence, and no socket is left open.
 */
MOAT_MUST_USE moat_rc moat_client_conn_open(struct moat_client_hop *h,
                                            const struct moat_client_opts *o, double deadline_ms,
                                            int *fd, struct moat_err *err);

/* Wait until fd is readable (want_write 0) or writable (1) or the deadline passes.
 * MOAT_OK when ready, MOAT_E_LIMIT on timeout, MOAT_E_IO when poll fails. */
MOAT_MUST_USE moat_rc moat_client_conn_wait(int fd, int want_write, double deadline_ms);

#endif
