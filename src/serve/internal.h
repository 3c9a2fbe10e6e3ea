/*
 * internal.h: what serve/conn.c lends to the other handlers of serve/ (the proxy), and nothing
 * outside serve/ may use.
 */
#ifndef MOAT_SERVE_INTERNAL_H
#define MOAT_SERVE_INTERNAL_H

#include "core/err.h"

#include <stdint.h>

struct moat_conn;

/* Run the connection's state machine until it would block. */
void moat_serve__run(struct moat_conn *c);
/* (Re-)arm the connection's one timer to fire `ms` from now. */
void moat_serve__arm(struct moat_conn *c, uint64_t ms);
/* Read what the client sent into c->in: MOAT_OK when bytes arrived. */
MOAT_MUST_USE moat_rc moat_serve__fill_in(struct moat_conn *c);
/* Answer with a small error page and close after it. */
void moat_serve__respond_error(struct moat_conn *c, int status, int minor);
/* The response went out entirely: log it, then keep-alive or close. */
void moat_serve__response_done(struct moat_conn *c);
/* "OK", "Not Found"... */
const char *moat_serve__reason(int status);

#endif
