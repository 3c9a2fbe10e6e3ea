/*
 * transport.h: the byte stream under an HTTP connection, as one small ops interface, so the
 * server's connections, the proxy's origin side and moat get/trace read and write without
 * knowing what carries the bytes. Two implementations: plain TCP here, TLS in tls/transport.c
 * (core/ knows nothing of TLS; a TLS fact is asked of tls/ with moat_tls_transport_ssl).
 *
 * Results are the same for every implementation: MOAT_E_AGAIN means "would block" (never an
 * error), MOAT_E_CLOSED a clean or reset end, MOAT_E_IO / MOAT_E_TLS a failure. The socket is
 * registered edge-triggered for both directions, so "would block" needs no epoll change: the
 * next readiness event of either kind re-runs the connection.
 *
 * The wrappers are inline and the ops table is const, so the hot path pays one indirect call
 * per read or write and nothing else: no allocation, no extra syscall.
 */
#ifndef MOAT_CORE_TRANSPORT_H
#define MOAT_CORE_TRANSPORT_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct moat_transport;

struct moat_transport_ops {
    /* Run the handshake (plain: nothing to do). MOAT_OK when done; MOAT_E_AGAIN to wait;
     * MOAT_E_TLS or MOAT_E_CLOSED on failure with the reason in err when err is not NULL. */
    moat_rc (*handshake)(struct moat_transport *t, struct moat_err *err);
    /* Read up to len bytes: MOAT_OK with *n > 0; MOAT_E_AGAIN; MOAT_E_CLOSED at the end. */
    moat_rc (*read)(struct moat_transport *t, void *buf, size_t len, size_t *n);
    /* Write up to len bytes (partial writes allowed). After MOAT_E_AGAIN retry with the same
     * bytes (OpenSSL's rule; the TLS side lets them move in memory). */
    moat_rc (*write)(struct moat_transport *t, const void *buf, size_t len, size_t *n);
    /* The connection goes idle: give buffers back. No effect while data is still held. */
    void (*idle)(struct moat_transport *t);
    /* keep 1: exchanges follow one another closely, so buffers stay from one read or write to
     * the next; keep 0: back to the implementation's default (the server's TLS gives each back
     * as soon as it is empty). NULL: there are none to keep. */
    void (*keep)(struct moat_transport *t, int keep);
    /* Send close_notify where there is one (best effort) and stop writing. */
    void (*shutdown)(struct moat_transport *t);
    /* After a complete exchange: close_notify, then 1 when the peer has sent more (bytes wait,
     * so closing now would reset the connection: linger), 0 when closing is clean. */
    int (*finish)(struct moat_transport *t);
    /* Free what the implementation holds and close the socket. Safe to call twice. */
    void (*close)(struct moat_transport *t);
    /* 1 when bytes were already read from the socket and wait in the implementation. */
    int (*pending)(const struct moat_transport *t);
    /* Send up to len bytes of file fd from off without reading them into user space
     * (partial writes allowed, MOAT_E_AGAIN to wait); NULL, or can_sendfile 0, when this
     * transport cannot (the caller then reads and writes). */
    moat_rc (*sendfile)(struct moat_transport *t, int fd, uint64_t off, size_t len, size_t *n);
    int (*can_sendfile)(const struct moat_transport *t);
};

struct moat_transport {
    const struct moat_transport_ops *ops; /* static; never NULL once initialised */
    int fd;                               /* owned: closed by moat_transport_close; -1 none */
    int eof;                              /* the peer closed its side */
    const char *fail_reason;              /* words for the last failure (static strings), or NULL */
    void *impl; /* owned by the implementation (TLS: the SSL); NULL for plain */
    /* For an owner on an edge-triggered loop that clears `drained` on every readable event
     * (it opts in with track_reads): a socket read that came back short emptied the socket,
     * so the next reads answer "would block" without a system call until the next event.
     * That is the read that ends every request in EAGAIN, a third of a keep-alive request's
     * system calls. Bytes that arrive later raise a new edge, which clears `drained`. */
    unsigned char track_reads, drained;
};

/* The plain TCP implementation; exported so moat_transport_is_plain can compare. */
extern const struct moat_transport_ops moat_transport_plain_ops;

/* Make t a plain TCP transport over fd (which it then owns; -1: nothing yet). Cannot fail. */
void moat_transport_plain_init(struct moat_transport *t, int fd);

/* The owner's loop saw the socket readable (or closed): reads go to the socket again. */
static inline void moat_transport_readable(struct moat_transport *t)
{
    t->drained = 0;
}

static inline int moat_transport_is_plain(const struct moat_transport *t)
{
    return t->ops == &moat_transport_plain_ops;
}

MOAT_MUST_USE static inline moat_rc moat_transport_handshake(struct moat_transport *t,
                                                             struct moat_err *err)
{
    return t->ops->handshake(t, err);
}

MOAT_MUST_USE static inline moat_rc moat_transport_read(struct moat_transport *t, void *buf,
                                                        size_t len, size_t *n)
{
    return t->ops->read(t, buf, len, n);
}

MOAT_MUST_USE static inline moat_rc moat_transport_write(struct moat_transport *t, const void *buf,
                                                         size_t len, size_t *n)
{
    return t->ops->write(t, buf, len, n);
}

static inline void moat_transport_idle(struct moat_transport *t)
{
    t->ops->idle(t);
}

static inline void moat_transport_keep(struct moat_transport *t, int keep)
{
    if (t->ops->keep != NULL) {
        t->ops->keep(t, keep);
    }
}

static inline void moat_transport_shutdown(struct moat_transport *t)
{
    t->ops->shutdown(t);
}

static inline int moat_transport_finish(struct moat_transport *t)
{
    return t->ops->finish(t);
}

static inline void moat_transport_close(struct moat_transport *t)
{
    t->ops->close(t);
}

static inline int moat_transport_pending(const struct moat_transport *t)
{
    return t->ops->pending(t);
}

static inline int moat_transport_can_sendfile(const struct moat_transport *t)
{
    return t->ops->can_sendfile != NULL && t->ops->can_sendfile(t);
}

MOAT_MUST_USE static inline moat_rc moat_transport_sendfile(struct moat_transport *t, int fd,
                                                            uint64_t off, size_t len, size_t *n)
{
    return t->ops->sendfile(t, fd, off, len, n);
}

#endif
