/*
 * transport.c: the plain TCP transport (see transport.h): recv and send on a non-blocking
 * socket, EINTR retried, EAGAIN turned into MOAT_E_AGAIN, a reset into MOAT_E_CLOSED.
 */
#include "core/transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static moat_rc plain_handshake(struct moat_transport *t, struct moat_err *err)
{
    return MOAT_RC_OK; /* TCP's handshake is the kernel's, done before the socket is ours */
}

static moat_rc plain_read(struct moat_transport *t, void *buf, size_t len, size_t *n)
{
    *n = 0;
    if (t->drained) {
        return moat_rc_of(MOAT_E_AGAIN);
    }
    for (;;) {
        ssize_t r = recv(t->fd, buf, len, 0);
        if (r > 0) {
            *n = (size_t)r;
            t->drained = t->track_reads && (size_t)r < len;
            return MOAT_RC_OK;
        }
        if (r == 0) {
            t->eof = 1;
            return moat_rc_of(MOAT_E_CLOSED);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return moat_rc_of(MOAT_E_AGAIN);
        }
        t->eof = 1;
        return moat_rc_of(errno == ECONNRESET ? MOAT_E_CLOSED : MOAT_E_IO);
    }
}

static moat_rc plain_write(struct moat_transport *t, const void *buf, size_t len, size_t *n)
{
    *n = 0;
    for (;;) {
        /* MSG_NOSIGNAL: a peer that went away is MOAT_E_CLOSED, not a SIGPIPE. */
        ssize_t r = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (r >= 0) {
            *n = (size_t)r;
            return MOAT_RC_OK;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return moat_rc_of(MOAT_E_AGAIN);
        }
        return moat_rc_of(errno == EPIPE || errno == ECONNRESET ? MOAT_E_CLOSED : MOAT_E_IO);
    }
}

static void plain_idle(struct moat_transport *t)
{
    /* Nothing is buffered above the kernel. */
}

static void plain_shutdown(struct moat_transport *t)
{
    if (t->fd >= 0) {
        shutdown(t->fd, SHUT_WR);
    }
}

static int plain_finish(struct moat_transport *t)
{
    if (t->fd < 0) {
        return 0;
    }
    char b;
    return recv(t->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

static void plain_close(struct moat_transport *t)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

static int plain_pending(const struct moat_transport *t)
{
    return 0;
}

const struct moat_transport_ops moat_transport_plain_ops = {
    .handshake = plain_handshake,
    .read = plain_read,
    .write = plain_write,
    .idle = plain_idle,
    .shutdown = plain_shutdown,
    .finish = plain_finish,
    .close = plain_close,
    .pending = plain_pending,
};

void moat_transport_plain_init(struct moat_transport *t, int fd)
{
    *t = (struct moat_transport){.ops = &moat_transport_plain_ops, .fd = fd};
}
