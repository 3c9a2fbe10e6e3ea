/*
 * sock.h: listening sockets and addresses. Every worker opens its own SO_REUSEPORT listener on
 * each address, so the kernel spreads new connections across workers with no shared accept lock.
 */
#ifndef MOAT_CORE_SOCK_H
#define MOAT_CORE_SOCK_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct moat_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* "127.0.0.1:8443" or "[::1]:8443" */
    int port;
};

/* Resolve "host:port", "[v6]:port" or ":port" (all addresses) into up to `max` addresses;
 * "localhost" yields 127.0.0.1 and ::1. Numeric or localhost only: a server binds addresses it
 * owns, DNS has no say. */
MOAT_MUST_USE moat_rc moat_addr_resolve(const char *spec, struct moat_addr *out, size_t max,
                                        size_t *n, struct moat_err *err);
/* A non-blocking, close-on-exec listener with SO_REUSEADDR and SO_REUSEPORT. */
MOAT_MUST_USE moat_rc moat_sock_listen(const struct moat_addr *a, int backlog, int *fd_out,
                                       struct moat_err *err);
/* Wake the listener for a connection only once its first bytes came (TCP_DEFER_ACCEPT), or
 * after `seconds` without any: for protocols where the client speaks first (TLS, HTTP). The
 * kernel then hands over the connection with its ClientHello, which is read at once. Best
 * effort: without it, the first read waits for its own event. */
void moat_sock_defer_accept(int fd, int seconds);
/* "203.0.113.5" / "2001:db8::1" for logs (no port). */
void moat_sock_peer_text(const struct sockaddr_storage *ss, char *out, size_t outlen);
/* An address as text (moat_sock_peer_text) and its port (0 for other families). */
void moat_sock_endpoint(const struct sockaddr_storage *ss, char *text, size_t cap, uint16_t *port);
/* The reverse: a numeric IPv4/IPv6 address and a port; 0 when the text is no address. */
int moat_sock_addr_of(const char *text, uint16_t port, struct sockaddr_storage *out);

/* Make the next close() of `fd` abortive (RST, SO_LINGER 0): for a peer cut for being too slow,
 * so the kernel drops what it still holds for it instead of keeping megabytes of send buffer
 * alive on an orphaned socket for as long as the peer trickles. Best effort. */
void moat_sock_reset_on_close(int fd);

#endif
