/*
 * internal.h: what serve/conn.c lends to the other handlers of serve/ (the proxy), and nothing
 * outside serve/ may use.
 */
#ifndef MOAT_SERVE_INTERNAL_H
#define MOAT_SERVE_INTERNAL_H

#include "core/err.h"

#include <stdint.h>

struct moat_conn;
struct moat_hdr_set;

/* Run the connection's state machine until it would block. */
void moat_serve__run(struct moat_conn *c);
/* (Re-)arm the connection's one timer to fire `ms` from now. */
void moat_serve__arm(struct moat_conn *c, uint64_t ms);
/* Start the clock of a phase a trickle could stretch (a request body, an answer's burst); then
 * add the bytes it moves to c->phase_bytes, and arm with moat_serve__arm_rate: the timer fires
 * after `timeout_ms` idle, or when the phase fell below limits.min_rate on average. */
void moat_serve__phase_start(struct moat_conn *c);
void moat_serve__arm_rate(struct moat_conn *c, uint64_t timeout_ms, int writing);
/* After the timer fired: 1 when the phase was too slow (rather than idle). `writing`: the phase
 * sends to the client (bytes still in the socket's send queue do not count as moved). */
int moat_serve__rate_exceeded(const struct moat_conn *c, uint64_t timeout_ms, int writing);
/* Read what the client sent into c->in: MOAT_OK when bytes arrived. */
MOAT_MUST_USE moat_rc moat_serve__fill_in(struct moat_conn *c);
/* Answer with a small error page and close after it. */
void moat_serve__respond_error(struct moat_conn *c, int status, int minor);
/* The response went out entirely: log it, then keep-alive or close. */
void moat_serve__response_done(struct moat_conn *c);
/* The `header` rules that apply to the current answer (NULL: none at all). */
const struct moat_hdr_set *moat_serve__headers(const struct moat_conn *c);

#endif
