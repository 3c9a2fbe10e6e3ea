/*
 * transport.c: the TLS transport (see transport.h): handshakes, reads and writes through
 * OpenSSL, with the error queue cleared before each call and drained after each failure, so
 * one connection's errors never show up in another's.
 *
 * OpenSSL's socket BIO makes one write() for every record: four system calls for a 64 KiB
 * answer, each a trip through the TCP stack. Our BIO instead lets the records of one
 * tls_write (up to eight full ones) gather in a per-thread scratch buffer and sends them with
 * one write, as h2o does. Whatever the socket does not take moves to the connection's own
 * `held` buffer (rare: a full socket), so an idle connection holds nothing and a busy one
 * allocates nothing. A write reports bytes as written only once their records are on the
 * socket: callers keep the transport contract (after MOAT_E_AGAIN, call again with the same
 * bytes). Outside tls_write (handshakes, whose flight OpenSSL already gathers, alerts, and
 * callers that drive the SSL themselves, as moat get's blocking handshake) the BIO writes
 * straight to the socket, as OpenSSL's own does.
 */
#include "tls/transport.h"

#include "tls/client.h"

#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A record's plaintext and the most a cipher suite adds to it (header, IV, MAC, padding). */
#define RECORD_PLAIN 16384
#define RECORD_MAX (RECORD_PLAIN + 1024)
#define SCRATCH_RECORDS 8
#define SCRATCH_CAP (SCRATCH_RECORDS * RECORD_MAX)
/* What may wait for a full socket: one burst, and a little that reads add behind it. A peer
 * that makes us write (KeyUpdate requests) without reading meets "would block" beyond it, as
 * with OpenSSL's own BIO, instead of growing our memory. */
#define HELD_MAX (2 * SCRATCH_CAP)

/* One per connection, owned by its BIO (freed with the SSL). */
struct tls_io {
    struct moat_transport *t; /* the transport this BIO is under (its read hint) */
    int fd;
    int in_eof;          /* recv returned 0: what BIO_eof reports, as the socket BIO does */
    int out_errno;       /* a send failed for good: every later write fails with it */
    int batching;        /* inside tls_write: records gather in the scratch */
    unsigned char *held; /* ciphertext the socket has not taken yet (malloc'd), or NULL */
    size_t held_off, held_len, held_cap;
    size_t done_n; /* plaintext of a write whose records still wait in `held` */
};

/* Records made by the tls_write in progress on this thread; empty between calls. */
static _Thread_local struct {
    size_t len;
    unsigned char b[SCRATCH_CAP];
} scratch;

static BIO_METHOD *io_method;
static pthread_once_t io_method_once = PTHREAD_ONCE_INIT;

static inline SSL *ssl_of(const struct moat_transport *t)
{
    return t->impl;
}

static inline struct tls_io *io_of(const struct moat_transport *t)
{
    return BIO_get_data(SSL_get_wbio(ssl_of(t)));
}

/* ---- the BIO ------------------------------------------------------------------------------ */

static int held_append(struct tls_io *io, const void *p, size_t len)
{
    if (io->held_off > 0 && io->held_off == io->held_len) {
        io->held_off = io->held_len = 0;
    }
    if (io->held_len + len > io->held_cap) {
        size_t cap = io->held_cap > 0 ? io->held_cap : SCRATCH_CAP;
        while (cap < io->held_len + len) {
            cap *= 2;
        }
        unsigned char *nb = realloc(io->held, cap);
        if (nb == NULL) {
            return 0;
        }
        io->held = nb;
        io->held_cap = cap;
    }
    memcpy(io->held + io->held_len, p, len);
    io->held_len += len;
    return 1;
}

/* send() until done or the socket is full: the bytes taken, or -1 (errno) on a failure. */
static ssize_t send_some(int fd, const unsigned char *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        /* MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE. */
        ssize_t r = send(fd, p + done, len - done, MSG_NOSIGNAL);
        if (r > 0) {
            done += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    return (ssize_t)done;
}

/* Send what waits in `held`: 0 when it is empty, 1 when the socket is full, -1 on a failure. */
static int flush_held(struct tls_io *io)
{
    if (io->out_errno != 0) {
        return -1;
    }
    if (io->held_off == io->held_len) {
        return 0;
    }
    ssize_t n = send_some(io->fd, io->held + io->held_off, io->held_len - io->held_off);
    if (n < 0) {
        io->out_errno = errno;
        return -1;
    }
    io->held_off += (size_t)n;
    if (io->held_off < io->held_len) {
        return 1;
    }
    /* Empty: give the memory back, so a connection that once met a full socket does not keep
     * 70 KiB for the rest of its life. */
    free(io->held);
    io->held = NULL;
    io->held_off = io->held_len = io->held_cap = 0;
    return 0;
}

/* At the end of a tls_write: put the records it made on the socket, and keep in `held` what
 * the socket does not take, so the thread's scratch is empty again. Same result as
 * flush_held. */
static int settle(struct tls_io *io)
{
    if (scratch.len > 0) {
        size_t len = scratch.len;
        scratch.len = 0;
        if (io->out_errno != 0) {
            return -1;
        }
        if (io->held_off == io->held_len) {
            ssize_t n = send_some(io->fd, scratch.b, len);
            if (n < 0) {
                io->out_errno = errno;
                return -1;
            }
            if ((size_t)n == len) {
                return 0;
            }
            if (!held_append(io, scratch.b + n, len - (size_t)n)) {
                io->out_errno = ENOMEM;
                return -1;
            }
            return 1;
        }
        if (!held_append(io, scratch.b, len)) { /* behind what already waits */
            io->out_errno = ENOMEM;
            return -1;
        }
    }
    return flush_held(io);
}

static int io_write(BIO *b, const char *data, size_t len, size_t *written)
{
    struct tls_io *io = BIO_get_data(b);
    *written = 0;
    BIO_clear_retry_flags(b);
    if (io->out_errno != 0) {
        errno = io->out_errno;
        return 0;
    }
    if (io->held_off < io->held_len && flush_held(io) < 0) {
        errno = io->out_errno;
        return 0;
    }
    if (io->held_off < io->held_len) {
        /* Order: behind what the socket has not taken yet. Only a read (a KeyUpdate answer)
         * or a close_notify gets here: writes wait for `held` to drain first. */
        if (io->held_len - io->held_off + len > HELD_MAX) {
            BIO_set_retry_write(b);
            return 0;
        }
        if (!held_append(io, data, len)) {
            errno = ENOMEM;
            return 0;
        }
        *written = len;
        return 1;
    }
    if (!io->batching) {
        goto direct;
    }
    if (scratch.len + len <= SCRATCH_CAP) {
        memcpy(scratch.b + scratch.len, data, len);
        scratch.len += len;
        *written = len;
        return 1;
    }
    if (scratch.len > 0) {
        BIO_set_retry_write(b); /* the caller settles, and OpenSSL writes the rest again */
        return 0;
    }
direct:; /* not batching, or bigger than the whole scratch: straight out */
    ssize_t n = send_some(io->fd, (const unsigned char *)data, len);
    if (n < 0) {
        io->out_errno = errno;
        return 0;
    }
    if (n == 0) {
        BIO_set_retry_write(b);
        return 0;
    }
    *written = (size_t)n;
    return 1;
}

static int io_read(BIO *b, char *buf, size_t len, size_t *readbytes)
{
    struct tls_io *io = BIO_get_data(b);
    *readbytes = 0;
    BIO_clear_retry_flags(b);
    struct moat_transport *t = io->t;
    if (t->drained) {
        BIO_set_retry_read(b); /* see core/transport.h: no system call to hear EAGAIN */
        return 0;
    }
    for (;;) {
        ssize_t r = recv(io->fd, buf, len, 0);
        if (r > 0) {
            *readbytes = (size_t)r;
            t->drained = t->track_reads && (size_t)r < len;
            return 1;
        }
        if (r == 0) {
            io->in_eof = 1;
            errno = 0; /* OpenSSL reads errno for an end without close_notify */
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_read(b);
        }
        return 0;
    }
}

/* OpenSSL 3.0 asks this BIO whether it does kTLS about 14 times per HTTP/1.1 request (each
 * record written or read): those answers (0, the default) take no look-up of the BIO's data. */
static long io_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct tls_io *io;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* records go out when the OpenSSL call returns (settle) */
    case BIO_CTRL_EOF:
        io = BIO_get_data(b);
        return io != NULL && io->in_eof;
    case BIO_C_GET_FD:
        io = BIO_get_data(b);
        if (io == NULL) {
            return -1;
        }
        if (ptr != NULL) {
            *(int *)ptr = io->fd;
        }
        return io->fd;
    default:
        return 0;
    }
}

static int io_destroy(BIO *b)
{
    struct tls_io *io = BIO_get_data(b);
    if (io != NULL) {
        free(io->held);
        free(io);
        BIO_set_data(b, NULL);
    }
    return 1;
}

/* A descriptor BIO, so SSL_get_fd still finds the socket. */
static void io_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "moat socket");
    if (m != NULL && BIO_meth_set_write_ex(m, io_write) && BIO_meth_set_read_ex(m, io_read) &&
        BIO_meth_set_ctrl(m, io_ctrl) && BIO_meth_set_destroy(m, io_destroy)) {
        io_method = m;
    } else {
        BIO_meth_free(m);
    }
}

/* ---- the transport ------------------------------------------------------------------------ */

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

/* A send that failed for good, in the transport's words. */
static moat_rc out_failed(struct moat_transport *t, const struct tls_io *io)
{
    t->fail_reason = NULL;
    int e = io->out_errno;
    return moat_rc_of(e == EPIPE || e == ECONNRESET ? MOAT_E_CLOSED : MOAT_E_IO);
}

static moat_rc tls_handshake(struct moat_transport *t, struct moat_err *err)
{
    clear_errors();
    int r = SSL_do_handshake(ssl_of(t));
    return r == 1 ? MOAT_RC_OK : ssl_fail(t, r, err, "tls handshake failed");
}

static moat_rc tls_read(struct moat_transport *t, void *buf, size_t len, size_t *n)
{
    *n = 0;
    struct tls_io *io = io_of(t);
    if (io->held_off < io->held_len) {
        (void)flush_held(io); /* a failure shows at the next write */
    }
    SSL *ssl = ssl_of(t);
    if (t->drained && !SSL_want_write(ssl) && !SSL_has_pending(ssl)) {
        /* The socket is empty and OpenSSL holds no byte of a record: SSL_read could only come
         * back with WANT_READ. That is the read ending every keep-alive request, and through
         * OpenSSL and SSL_get_error it costs ~800 instructions. Not after a WANT_WRITE: then
         * SSL_read has a post-handshake answer (a KeyUpdate's) to finish writing. */
        t->fail_reason = NULL;
        return moat_rc_of(MOAT_E_AGAIN);
    }
    clear_errors();
    int r = SSL_read_ex(ssl, buf, len, n);
    return r == 1 ? MOAT_RC_OK : ssl_fail(t, r, NULL, "tls read");
}

/* Records for up to SCRATCH_RECORDS of plaintext, then one write. MOAT_OK only once the
 * records of the bytes counted in *n are on the socket. */
static moat_rc tls_write(struct moat_transport *t, const void *buf, size_t len, size_t *n)
{
    *n = 0;
    struct tls_io *io = io_of(t);
    int h = flush_held(io);
    if (h != 0) {
        return h < 0 ? out_failed(t, io) : moat_rc_of(MOAT_E_AGAIN);
    }
    if (io->done_n > 0) {
        /* The retry of a write whose records were made but waited for the socket. */
        *n = io->done_n < len ? io->done_n : len;
        io->done_n = 0;
        return MOAT_RC_OK;
    }
    clear_errors();
    SSL *ssl = ssl_of(t);
    const char *p = buf;
    size_t total = 0;
    moat_rc rc = MOAT_RC_OK;
    io->batching = 1;
    while (total < len && (total == 0 || scratch.len + RECORD_MAX <= SCRATCH_CAP)) {
        size_t w = 0;
        int r = SSL_write_ex(ssl, p + total, len - total, &w);
        if (r == 1) {
            total += w; /* one record (partial-write mode): go on while the scratch has room */
            continue;
        }
        if (SSL_get_error(ssl, r) == SSL_ERROR_WANT_WRITE && scratch.len > 0) {
            /* The scratch filled mid-record: send it; OpenSSL then writes the rest again. */
            io->batching = 0;
            int st = settle(io);
            if (st == 0) {
                io->batching = 1;
                continue;
            }
            if (st < 0) {
                return out_failed(t, io);
            }
            io->done_n = total;
            return moat_rc_of(MOAT_E_AGAIN);
        }
        if (total == 0) {
            rc = ssl_fail(t, r, NULL, "tls write");
        }
        break;
    }
    io->batching = 0;
    int st = settle(io);
    if (st < 0) {
        return out_failed(t, io);
    }
    if (!moat_ok(rc)) {
        return rc;
    }
    if (st > 0) {
        io->done_n = total; /* reported when `held` has gone, at the caller's retry */
        return moat_rc_of(MOAT_E_AGAIN);
    }
    *n = total;
    return MOAT_RC_OK;
}

static void tls_idle(struct moat_transport *t)
{
    /* OpenSSL keeps a 16 KiB read buffer from the last SSL_read that wanted more; this gives
     * it back, and returns 0, harmlessly, when bytes are still buffered. */
    SSL_free_buffers(ssl_of(t));
}

/* The server's SSL_MODE_RELEASE_BUFFERS (tls/ctx.c) frees the read buffer after every
 * SSL_read that empties it and the write buffer after every SSL_write: a malloc and a free of
 * ~17 KiB each time, 2,000 instructions of a keep-alive request. keep 1 lifts it while requests
 * follow one another closely. */
static void tls_keep(struct moat_transport *t, int keep)
{
    if (keep) {
        SSL_clear_mode(ssl_of(t), SSL_MODE_RELEASE_BUFFERS);
    } else {
        SSL_set_mode(ssl_of(t), SSL_MODE_RELEASE_BUFFERS);
    }
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
    SSL *ssl = ssl_of(t);
    if (ssl != NULL && SSL_is_init_finished(ssl)) {
        /* Freed without our close_notify (the client left first, or went silent), OpenSSL
         * would drop the session from the cache, and that client's next visit would be a full
         * handshake. RFC 5246 §7.2.1 no longer asks for that; mark the connection as shut so
         * the session stays (nothing is sent). */
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    SSL_free(ssl); /* NULL after a first close: SSL_free(NULL) does nothing */
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

/* ---- kernel TLS ----------------------------------------------------------------------------
 * With kTLS the kernel makes the records, so there is nothing to gather: OpenSSL's own socket
 * BIO (the kernel's TLS is set up through it), plain reads and writes, and SSL_sendfile for
 * files. Used only when tls/ktls.h found the kernel's tls module and the configuration allows
 * it (moat_tls_transport_use_ktls); a cipher the kernel does not take leaves OpenSSL making
 * records as usual, and can_sendfile says no. */

static int use_ktls;

void moat_tls_transport_use_ktls(int on)
{
    use_ktls = on;
}

static moat_rc ktls_read(struct moat_transport *t, void *buf, size_t len, size_t *n)
{
    *n = 0;
    clear_errors();
    int r = SSL_read_ex(ssl_of(t), buf, len, n);
    return r == 1 ? MOAT_RC_OK : ssl_fail(t, r, NULL, "tls read");
}

static moat_rc ktls_write(struct moat_transport *t, const void *buf, size_t len, size_t *n)
{
    *n = 0;
    clear_errors();
    int r = SSL_write_ex(ssl_of(t), buf, len, n);
    return r == 1 ? MOAT_RC_OK : ssl_fail(t, r, NULL, "tls write");
}

static int ktls_can_sendfile(const struct moat_transport *t)
{
    return BIO_get_ktls_send(SSL_get_wbio(ssl_of(t)));
}

static moat_rc ktls_sendfile(struct moat_transport *t, int fd, uint64_t off, size_t len, size_t *n)
{
    *n = 0;
    clear_errors();
    ossl_ssize_t r = SSL_sendfile(ssl_of(t), fd, (off_t)off, len, 0);
    if (r > 0) {
        *n = (size_t)r;
        return MOAT_RC_OK;
    }
    return ssl_fail(t, (int)r, NULL, "tls sendfile");
}

static const struct moat_transport_ops ktls_ops = {
    .handshake = tls_handshake,
    .read = ktls_read,
    .write = ktls_write,
    .idle = tls_idle,
    .keep = tls_keep,
    .shutdown = tls_shutdown,
    .finish = tls_finish,
    .close = tls_close,
    .pending = tls_pending,
    .sendfile = ktls_sendfile,
    .can_sendfile = ktls_can_sendfile,
};

static const struct moat_transport_ops tls_ops = {
    .handshake = tls_handshake,
    .read = tls_read,
    .write = tls_write,
    .idle = tls_idle,
    .keep = tls_keep,
    .shutdown = tls_shutdown,
    .finish = tls_finish,
    .close = tls_close,
    .pending = tls_pending,
};

/* Put ssl (owned from here on, freed on failure) over fd under t. */
static moat_rc attach(struct moat_transport *t, int fd, SSL *ssl, struct moat_err *err)
{
    moat_transport_plain_init(t, fd); /* what a failure leaves: fd stays owned */
    pthread_once(&io_method_once, io_method_init);
    struct tls_io *io = calloc(1, sizeof(*io));
    BIO *b = io_method != NULL && io != NULL ? BIO_new(io_method) : NULL;
    if (b == NULL) {
        free(io);
        SSL_free(ssl);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot start TLS");
    }
    io->fd = fd;
    io->t = t;
    BIO_set_data(b, io); /* owned by the BIO from here on (io_destroy) */
    BIO_set_init(b, 1);
    SSL_set_bio(ssl, b, b); /* the SSL takes the one reference */
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
    if (use_ktls) {
        SSL_set_options(ssl, SSL_OP_ENABLE_KTLS);
        if (SSL_set_fd(ssl, fd) != 1) {
            SSL_free(ssl);
            MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot start TLS");
        }
        t->ops = &ktls_ops;
        t->impl = ssl;
        return MOAT_RC_OK;
    }
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
    return t->ops == &tls_ops || t->ops == &ktls_ops ? ssl_of(t) : NULL;
}
