/*
 * redis.h: one blocking connection to a Redis server, for the cluster's own thread (never a
 * worker's loop): TCP or a unix socket, TLS with the server's certificate verified, AUTH with
 * an ACL user or the default one, and commands as argument vectors (binary-safe).
 *
 * Debian 12's hiredis (0.14) has no TLS, so moat does the socket and TLS itself and uses hiredis
 * for what it is good at: formatting commands (redisFormatCommandArgv) and parsing RESP replies
 * (redisReader). Every connect, read and write is bounded by the timeout; a connection that
 * failed once (timeout, reset, a reply that does not parse) is done: close it and connect anew.
 */
#ifndef MOAT_STATE_REDIS_H
#define MOAT_STATE_REDIS_H

#include "core/err.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

struct moat_redis_opts {
    const char *addr;        /* "HOST:PORT" (a name, an IPv4 or [IPv6] address) or "unix:/PATH" */
    int tls;                 /* TLS, the certificate verified against ca_file or the system */
    const char *ca_file;     /* PEM; NULL: the system's trust store */
    const char *server_name; /* the name its certificate must carry; NULL: addr's host */
    const char *user;        /* ACL user; NULL: the default user */
    const char *password;    /* NULL: no AUTH */
    unsigned timeout_ms;     /* connect, and each read and write (>= 1) */
};

struct moat_redis;

/* Copies of every string in `in` (out's own: moat_redis_opts_clear frees them, the password
 * wiped first), for a thread that outlives the configuration it came from. */
MOAT_MUST_USE moat_rc moat_redis_opts_copy(const struct moat_redis_opts *in,
                                           struct moat_redis_opts *out, struct moat_err *err);
void moat_redis_opts_clear(struct moat_redis_opts *o);

/* Connect (and AUTH): *out is the caller's (moat_redis_close). MOAT_E_IO for the network,
 * MOAT_E_TLS / MOAT_E_CERT for TLS, MOAT_E_PEER for a refused AUTH, each saying which. */
MOAT_MUST_USE moat_rc moat_redis_connect(const struct moat_redis_opts *o, struct moat_redis **out,
                                         struct moat_err *err);

/*
 * Send one command and read its reply into *out (freeReplyObject). An error reply (-ERR ...) is
 * MOAT_E_PEER with Redis's words and no reply; a reply bigger than 1 MiB, or one that does not
 * parse, is MOAT_E_PEER too and ends the connection (moat_redis_broken says so).
 */
MOAT_MUST_USE moat_rc moat_redis_command(struct moat_redis *r, int argc, const char **argv,
                                         const size_t *lens, redisReply **out,
                                         struct moat_err *err);

/* The two halves of a command, for a subscriber connection that reads messages it did not ask
 * for: send one command; read the next reply (or pushed message), blocking up to the timeout. */
MOAT_MUST_USE moat_rc moat_redis_send(struct moat_redis *r, int argc, const char **argv,
                                      const size_t *lens, struct moat_err *err);
MOAT_MUST_USE moat_rc moat_redis_read_reply(struct moat_redis *r, redisReply **out,
                                            struct moat_err *err);

/* The socket, for poll(); and whether bytes are already buffered (TLS, or the reader) so that
 * a reply may be read without the socket being readable. */
int moat_redis_fd(const struct moat_redis *r);
int moat_redis_pending(struct moat_redis *r);

/* Whether the connection failed and must be closed. */
int moat_redis_broken(const struct moat_redis *r);

/* NULL does nothing. */
void moat_redis_close(struct moat_redis *r);

#endif
