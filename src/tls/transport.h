/*
 * io.h: the transport under an HTTP connection: plain TCP or TLS over the same socket. This is
 * the one place that turns SSL_ERROR_WANT_READ/WANT_WRITE into "would block" (MOAT_E_AGAIN), so
 * the HTTP code above never sees OpenSSL.
 *
 * The socket is registered edge-triggered for both directions, so "would block" needs no epoll
 * change: the next readiness event of either kind re-runs the connection.
 */
#ifndef MOAT_TLS_IO_H
#define MOAT_TLS_IO_H

#include "core/err.h"

#include <openssl/ssl.h>
#include <stddef.h>

struct moat_io {
    int fd;                  /* owned: closed by moat_io_close */
    SSL *ssl;                /* owned; NULL for plain TCP */
    int eof;                 /* the peer closed its side */
    const char *fail_reason; /* OpenSSL's words for the last TLS failure (static), or NULL */
};

/* Run the server handshake. MOAT_OK when done; MOAT_E_AGAIN to wait; MOAT_E_TLS or
 * MOAT_E_CLOSED on failure with the reason in err when err is not NULL. */
MOAT_MUST_USE moat_rc moat_io_handshake(struct moat_io *io, struct moat_err *err);
/* Read up to len bytes. MOAT_OK with *n > 0; MOAT_E_AGAIN; MOAT_E_CLOSED at a clean end;
 * MOAT_E_IO / MOAT_E_TLS on failure. */
MOAT_MUST_USE moat_rc moat_io_read(struct moat_io *io, void *buf, size_t len, size_t *n);
/* Write up to len bytes (partial writes allowed). With TLS, after MOAT_E_AGAIN the caller
 * must retry with the same bytes (OpenSSL's rule; ACCEPT_MOVING_WRITE_BUFFER lets them move). */
MOAT_MUST_USE moat_rc moat_io_write(struct moat_io *io, const void *buf, size_t len, size_t *n);
/* The connection goes idle: give OpenSSL's record buffers back (it keeps a 16 KiB read
 * buffer from the last SSL_read that wanted more). No effect while it still holds data. */
void moat_io_idle(struct moat_io *io);
/* Send close_notify (best effort) and stop writing. */
void moat_io_shutdown(struct moat_io *io);
/* After a complete exchange: send close_notify and say whether the client has sent anything
 * more (1: bytes wait in the socket, so closing now would reset the connection; linger). */
int moat_io_finish(struct moat_io *io);
/* Free the SSL and close the socket. */
void moat_io_close(struct moat_io *io);
/* Bytes OpenSSL already decrypted and holds for us. */
static inline int moat_io_pending(const struct moat_io *io)
{
    return io->ssl != NULL && SSL_pending(io->ssl) > 0;
}

#endif
