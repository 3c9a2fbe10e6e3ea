/*
 * ticket.h: session ticket keys shared by every SSL_CTX and every worker thread.
 *
 * RFC 5077 / RFC 8446 §4.6.1 tickets let a client resume without server-side state. The keys
 * live in memory only and rotate on a timer: the current key encrypts new tickets, the previous
 * key still decrypts (and asks for a fresh ticket), anything older means a full handshake. So a
 * ticket is usable for between one and two rotation periods, and a stolen key exposes at most
 * two periods of sessions (forward secrecy for resumed sessions is bounded by rotation).
 */
#ifndef MOAT_TLS_TICKET_H
#define MOAT_TLS_TICKET_H

#include <openssl/ssl.h>
#include <stdint.h>
#include <time.h>

#include "core/err.h"

struct moat_tls_tickets;

/*
 * Create a key set with a fresh current key, rotated every `rotate_s` seconds by
 * moat_tls_tickets_tick (refused: 0). Fetches AES-256-CBC once here, never per handshake.
 * On success *out holds one reference owned by the caller.
 */
MOAT_MUST_USE moat_rc moat_tls_tickets_new(uint64_t rotate_s, struct moat_tls_tickets **out,
                                           struct moat_err *err);

/* Drop the caller's reference. Contexts the keys were installed on hold their own reference, so
 * the keys are wiped (OPENSSL_cleanse) and freed when the last of them goes. NULL does nothing. */
void moat_tls_tickets_free(struct moat_tls_tickets *t);

/*
 * Make a new current key now; the current one becomes the previous one and the previous one is
 * wiped. Safe from any thread at any time (handshakes in flight finish with the keys they
 * read). Restarts the rotation period. If the random generator fails the keys stay as they are.
 */
void moat_tls_tickets_rotate(struct moat_tls_tickets *t);

/* Rotate when the period started at creation or at the last rotation has passed by `now`
 * (wall-clock seconds, e.g. the loop's cached time). Cheap when not due: one atomic load. */
void moat_tls_tickets_tick(struct moat_tls_tickets *t, time_t now);

/*
 * Use `t` for the tickets of connections on `ctx`, or with t == NULL refuse tickets on `ctx`
 * (SSL_OP_NO_TICKET, no TLS 1.3 tickets). Installs the key callback and takes a reference on `t`,
 * released when `ctx` is freed; installing again replaces the previous set. OpenSSL runs the
 * callback of the context a connection was created on, and the callback uses the keys of the
 * context the connection is on now (after an SNI switch), so every context of a configuration
 * must have the callback: moat_tls_ctx_new installs it on each. Asks for one TLS 1.3 ticket per
 * handshake: a browser uses each ticket once per connection it opens, and one halves the bytes
 * sent after the handshake. Fails only on allocation.
 */
MOAT_MUST_USE moat_rc moat_tls_tickets_install(struct moat_tls_tickets *t, SSL_CTX *ctx,
                                               struct moat_err *err);

#endif
