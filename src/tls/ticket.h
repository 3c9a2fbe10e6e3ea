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

/* One more reference to `t` (released with moat_tls_tickets_free); returns t. */
struct moat_tls_tickets *moat_tls_tickets_ref(struct moat_tls_tickets *t);

/*
 * Make a new current key now; the current one becomes the previous one and the previous one is
 * wiped. Safe from any thread at any time (handshakes in flight finish with the keys they
 * read). Restarts the rotation period. If the random generator fails the keys stay as they are.
 */
void moat_tls_tickets_rotate(struct moat_tls_tickets *t);

/* Rotate when the period started at creation or at the last rotation has passed by `now`
 * (wall-clock seconds, e.g. the loop's cached time). Cheap when not due: one atomic load. */
void moat_tls_tickets_tick(struct moat_tls_tickets *t, time_t now);

/* A key's material as moat_tls_tickets_set takes it: a 16-byte name (sent in the clear in each
 * ticket), the AES-256 key and the HMAC-SHA256 key. */
#define MOAT_TLS_TICKET_KEY_BYTES 80

/* Fill `out` with a new key from the random generator; 1 on success. */
int moat_tls_ticket_key_make(unsigned char out[MOAT_TLS_TICKET_KEY_BYTES]);

/*
 * Use keys made elsewhere (a cluster's, shared by every node): `cur` encrypts new tickets,
 * `others` (at most two: the previous period's, and the next one's when another node's clock is
 * ahead) only decrypt, and a ticket under one of them is renewed under `cur`. From then on
 * _tick rotates nothing: the caller keeps the keys current (moat_tls_tickets_rotate still makes
 * a local key, for when the shared keys are out of reach for too long). Any thread.
 */
void moat_tls_tickets_set(struct moat_tls_tickets *t,
                          const unsigned char cur[MOAT_TLS_TICKET_KEY_BYTES],
                          const unsigned char *const *others, size_t nothers);

/* Back to local rotation after moat_tls_tickets_set (the cluster is gone): the keys in use stay
 * until the next rotation, one period from now. */
void moat_tls_tickets_unshare(struct moat_tls_tickets *t);

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
