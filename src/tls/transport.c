/*
 * transport.c: the TLS transport (see transport.h): handshakes, reads and writes through
 * OpenSSL, with the error queue cleared before each call and drained after each failure, so
 * one connection's errors never show up in another's.
 */
#include "tls/transport.h"

#include "tls/client.h"

#include <errno.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

static inline SSL *ssl_of(const struct moat_transport *t)
{
    return t->impl;
}

/* Clear OpenSSL's error queue before a call whose failure we read from it. Clearing an empty
 * queue costs about 800 instructions (measured with callgrind, 6% of a keep-alive request);
 * peeking first costs a thread-local lookup. */
static inline void clear_errors(void)
{
    if (ERR_peek_error() != 0) {
        ERR_clear_error();
    }
}

/* Turn an SSL_get_error result into our kinds; fills err with OpenSSL's words when asked. */
static moat_rc ssl_fail(struct moat_transport *t, int ret, struct moat_err *err, const char *what)
{
    int e = SSL_get_error(ssl_of(t), ret);
    unsigned long last = ERR_peek_last_error();
    /* Kept for the caller's log line (reason strings are static): a read that fails on the
     * peer's alert says which alert without formatting anything on the way. */
    t->fail_reason = last != 0 ? ERR_reason_error_string(last) : NULL;
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return moat_rc_of(MOAT_E_AGAIN);
    case SSL_ERROR_ZERO_RETURN:
        t->eof = 1;
        ERR_clear_error();
        return moat_rc_of(MOAT_E_CLOSED);
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            int sys = errno;
            t->eof = 1;
            if (sys == 0 || sys == ECONNRESET || sys == EPIPE) {
                return moat_err_set(err, MOAT_E_CLOSED, __FILE__, __LINE__,
                                    "%s: the peer closed the connection", what);
            }
            return moat_err_sys(err, MOAT_E_IO, sys, __FILE__, __LINE__, "%s", what);
        }
        return moat_err_ssl(err, MOAT_E_TLS, __FILE__, __LINE__, "%s", what);
    case SSL_ERROR_SSL:
    default:
        return moat_err_ssl(err, MOAT_E_TLS, __FILE__, __LINE__, "%s", what);
    }
}

static moat_rc tls_handshake(struct moat_transport *t, struct moat_err *err)
{
    clear_errors();
    int r = SSL_do_handshake(ssl_of(t));
    if (r == 1) {
        return MOAT_RC_OK;
    }
    return ssl_fail(t, r, err, "tls handshake failed");
}

static moat_rc tls_read(struct moat_transport *t, void *buf, size_t len, size_t *n)
{
    *n = 0;
    clear_errors();
    int r = SSL_read_ex(ssl_of(t), buf, len, n);
    if (r == 1) {
        return MOAT_RC_OK;
    }
    return ssl_fail(t, r, NULL, "tls read");
}

static moat_rc tls_write(struct moat_transport *t, const void *buf, size_t len, size_t *n)
{
    *n = 0;
    clear_errors();
    int r = SSL_write_ex(ssl_of(t), buf, len, n);
    if (r == 1) {
        return MOAT_RC_OK;
    }
    return ssl_fail(t, r, NULL, "tls write");
}

static void tls_idle(struct moat_transport *t)
{
    /* OpenSSL keeps a 16 KiB read buffer from the last SSL_read that wanted more; this gives
     * it back, and returns 0, harmlessly, when bytes are still buffered. */
    SSL_free_buffers(ssl_of(t));
}

static void close_notify(struct moat_transport *t)
{
    SSL *ssl = ssl_of(t);
    if (SSL_is_init_finished(ssl) && (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) == 0) {
        clear_errors();
        /* One close_notify; we do not wait for the peer's (RFC 8446 §6.1 allows that). */
        if (SSL_shutdown(ssl) < 0) {
            ERR_clear_error();
        }
    }
}

static void tls_shutdown(struct moat_transport *t)
{
    close_notify(t);
    if (t->fd >= 0) {
        shutdown(t->fd, SHUT_WR);
    }
}

static int tls_finish(struct moat_transport *t)
{
    close_notify(t);
    if (t->fd < 0 || SSL_has_pending(ssl_of(t))) {
        return t->fd >= 0;
    }
    char b;
    return recv(t->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

static void tls_close(struct moat_transport *t)
{
    SSL_free(ssl_of(t)); /* NULL after a first close: SSL_free(NULL) does nothing */
    t->impl = NULL;
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

static int tls_pending(const struct moat_transport *t)
{
    return SSL_pending(ssl_of(t)) > 0;
}

static const struct moat_transport_ops tls_ops = {
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .idle = tls_idle,
    .shutdown = tls_shutdown,
    .finish = tls_finish,
    .close = tls_close,
    .pending = tls_pending,
};

/* Put ssl (owned from here on, freed on failure) over fd under t. */
static moat_rc attach(struct moat_transport *t, int fd, SSL *ssl, struct moat_err *err)
{
    moat_transport_plain_init(t, fd); /* what a failure leaves: fd stays owned */
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot start TLS");
    }
    t->ops = &tls_ops;
    t->impl = ssl;
    return MOAT_RC_OK;
}

moat_rc moat_tls_transport_server(struct moat_transport *t, int fd, SSL_CTX *ctx,
                                  struct moat_err *err)
{
    moat_transport_plain_init(t, fd);
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot start TLS");
    }
    SSL_set_accept_state(ssl);
    return attach(t, fd, ssl, err);
}

moat_rc moat_tls_transport_client(struct moat_transport *t, int fd, SSL_CTX *ctx, const char *host,
                                  struct moat_err *err)
{
    moat_transport_plain_init(t, fd);
    SSL *ssl = NULL;
    MOAT_TRY(moat_tls_client_ssl_new(ctx, host, &ssl, err));
    return attach(t, fd, ssl, err);
}

SSL *moat_tls_transport_ssl(const struct moat_transport *t)
{
    return t->ops == &tls_ops ? ssl_of(t) : NULL;
}
