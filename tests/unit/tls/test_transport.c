/*
 * test_transport.c: tls/transport.c, the TLS transport, over a non-blocking socketpair: a server
 * and a client transport run a real handshake (moat_tls_client_ssl_new's policy on the client
 * side), a round trip, close_notify seen as MOAT_E_CLOSED, finish telling whether bytes wait,
 * a failed handshake's words, and big writes into a socket that takes little at a time (the
 * records our BIO gathers and holds, reported only once they are on the socket).
 */
#include "tls/transport.h"

#include "test.h"
#include "tls/client.h"
#include "tls/ctx.h"
#include "tls/tls_helpers.h"

#include <sys/socket.h>

static SSL_CTX *sctx, *cctx;

static SSL_CTX *server_ctx(void)
{
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_file(s, th_path("srv.crt"), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(s, th_path("srv.key"), SSL_FILETYPE_PEM);
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return s;
}

static int socket_pair(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0;
}

/* A client (c) and a server (s) transport over one socketpair, handshakes done. */
static int connected(struct moat_transport *c, struct moat_transport *s)
{
    int fds[2];
    struct moat_err err = {0};
    if (!socket_pair(fds) ||
        !moat_ok(moat_tls_transport_client(c, fds[0], cctx, "localhost", &err)) ||
        !moat_ok(moat_tls_transport_server(s, fds[1], sctx, &err))) {
        return 0;
    }
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 64 && !(cdone && sdone); i++) {
        if (!cdone) {
            moat_rc rc = moat_transport_handshake(c, &err);
            cdone = moat_ok(rc);
            if (!cdone && rc.kind != MOAT_E_AGAIN) {
                return 0;
            }
        }
        if (!sdone) {
            moat_rc rc = moat_transport_handshake(s, &err);
            sdone = moat_ok(rc);
            if (!sdone && rc.kind != MOAT_E_AGAIN) {
                return 0;
            }
        }
    }
    return cdone && sdone;
}

/* The server's sends and the client's receives through small socket buffers, so a write
 * meets a full socket soon. */
static int small_socket(struct moat_transport *c, struct moat_transport *s)
{
    int small = 4096;
    return setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0 &&
           setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0;
}

/* Read into buf until bytes arrive (the client skips the server's tickets on the way). */
static moat_rc read_some(struct moat_transport *t, char *buf, size_t len, size_t *n)
{
    moat_rc rc = moat_rc_of(MOAT_E_AGAIN);
    for (int i = 0; i < 16 && rc.kind == MOAT_E_AGAIN; i++) {
        rc = moat_transport_read(t, buf, len, n);
    }
    return rc;
}

TEST_CASE(handshake_round_trip_close_notify)
{
    struct moat_transport c, s;
    EXPECT(connected(&c, &s));
    EXPECT(!moat_transport_is_plain(&c));
    SSL *cs = moat_tls_transport_ssl(&c), *ss = moat_tls_transport_ssl(&s);
    EXPECT(cs != NULL && ss != NULL);
    EXPECT(SSL_is_server(ss) && !SSL_is_server(cs));
    EXPECT_INT(SSL_get_fd(cs), c.fd); /* our BIO is a descriptor BIO over the socket itself */
    const char *sni = SSL_get_servername(ss, TLSEXT_NAMETYPE_host_name);
    EXPECT_STR(sni, "localhost"); /* the client policy's SNI */

    size_t n = 0;
    char buf[64];
    EXPECT_INT(moat_transport_read(&s, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    EXPECT(moat_ok(moat_transport_write(&c, "ping", 4, &n)));
    EXPECT_INT(n, 4);
    EXPECT(moat_ok(read_some(&s, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 4);
    EXPECT(memcmp(buf, "ping", 4) == 0);
    EXPECT(moat_ok(moat_transport_write(&s, "pong", 4, &n)));
    EXPECT(moat_ok(read_some(&c, buf, 2, &n))); /* half of the record */
    EXPECT_INT(n, 2);
    EXPECT_INT(moat_transport_pending(&c), 1); /* the rest is decrypted and held */
    EXPECT(moat_ok(moat_transport_read(&c, buf + 2, 2, &n)));
    EXPECT(memcmp(buf, "pong", 4) == 0);
    EXPECT_INT(moat_transport_pending(&c), 0);
    moat_transport_idle(&s); /* buffers back; the connection goes on */
    EXPECT(moat_ok(moat_transport_write(&c, "again", 5, &n)));
    EXPECT(moat_ok(read_some(&s, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 5);

    /* The server finishes while the client's bytes wait: linger. */
    EXPECT(moat_ok(moat_transport_write(&c, "more", 4, &n)));
    EXPECT_INT(moat_transport_finish(&s), 1);
    EXPECT(SSL_get_shutdown(ss) & SSL_SENT_SHUTDOWN);
    /* The client reads its close_notify as a clean end. */
    EXPECT_INT(read_some(&c, buf, sizeof(buf), &n).kind, MOAT_E_CLOSED);
    EXPECT_INT(c.eof, 1);
    /* The client finishes: nothing waits for it any more. */
    EXPECT_INT(moat_transport_finish(&c), 0);
    moat_transport_close(&c);
    moat_transport_close(&s);
    EXPECT(c.impl == NULL && c.fd == -1);
    moat_transport_close(&s);      /* twice is harmless */
    EXPECT(ERR_peek_error() == 0); /* nothing left for the next connection */
}

/* The server writes 1 MiB through a socket with a small send buffer while the client reads
 * little by little: every MOAT_E_AGAIN is retried with the same bytes, as the contract says,
 * and the client gets exactly the bytes, in order. Also counts the writes that took several
 * records at once, the point of gathering them. */
TEST_CASE(big_writes_through_a_small_socket)
{
    struct moat_transport c, s;
    EXPECT(connected(&c, &s));
    EXPECT(small_socket(&c, &s));
    enum { TOTAL = 1 << 20 };
    static unsigned char src[TOTAL], got[TOTAL];
    for (size_t i = 0; i < TOTAL; i++) {
        src[i] = (unsigned char)(i * 131 + (i >> 9));
    }
    size_t sent = 0, recvd = 0, agains = 0, multi = 0;
    for (int round = 0; round < 200000 && recvd < TOTAL; round++) {
        if (sent < TOTAL) {
            size_t want = TOTAL - sent < 200000 ? TOTAL - sent : 200000;
            size_t n = 0;
            moat_rc rc = moat_transport_write(&s, src + sent, want, &n);
            if (moat_ok(rc)) {
                EXPECT(n > 0 && n <= want);
                multi += n > 16384;
                sent += n;
            } else {
                EXPECT_INT(rc.kind, MOAT_E_AGAIN);
                EXPECT_INT(n, 0);
                agains++;
            }
        }
        size_t n = 0;
        moat_rc rc = moat_transport_read(&c, got + recvd, 3000, &n);
        if (moat_ok(rc)) {
            recvd += n;
        } else if (rc.kind != MOAT_E_AGAIN) {
            EXPECT(0);
            break;
        }
    }
    EXPECT_INT(sent, TOTAL);
    EXPECT_INT(recvd, TOTAL);
    EXPECT(memcmp(src, got, TOTAL) == 0);
    EXPECT(agains > 0); /* the small socket did push back */
    EXPECT(multi > 0);  /* and some writes carried several records */
    EXPECT(ERR_peek_error() == 0);
    moat_transport_close(&c);
    moat_transport_close(&s);
}

/* A client that asks for KeyUpdates (each one makes the server write one) and never reads,
 * while an answer already waits for the socket: the server's reads go on for a while (their
 * KeyUpdates wait behind the answer), then say "would block" instead of piling them up in
 * memory without end. */
TEST_CASE(key_updates_from_a_client_that_does_not_read)
{
    struct moat_transport c, s;
    EXPECT(connected(&c, &s));
    EXPECT(small_socket(&c, &s));
    SSL *cs = moat_tls_transport_ssl(&c);
    char buf[256];
    size_t n = 0;
    /* First an answer the client does not read, until it waits for the socket: from here on,
     * what the server's reads must send waits behind it. */
    static char big[65536];
    moat_rc wrc = MOAT_RC_OK;
    for (int i = 0; i < 100 && moat_ok(wrc); i++) {
        wrc = moat_transport_write(&s, big, sizeof(big), &n);
    }
    EXPECT_INT(wrc.kind, MOAT_E_AGAIN);
    int sent = 0, blocked = 0;
    for (int i = 0; i < 40000 && !blocked; i++) {
        if (SSL_key_update(cs, SSL_KEY_UPDATE_REQUESTED) != 1 ||
            !moat_ok(moat_transport_write(&c, "k", 1, &n))) {
            break; /* the client's own socket is full: the server stopped reading */
        }
        sent++;
        moat_rc rc = moat_transport_read(&s, buf, sizeof(buf), &n);
        blocked = rc.kind == MOAT_E_AGAIN;
        EXPECT(moat_ok(rc) || rc.kind == MOAT_E_AGAIN);
    }
    EXPECT(sent > 1000); /* the reads went on while the answer waited... */
    EXPECT(blocked);     /* ...and then pushed back, instead of buffering without bound */
    ERR_clear_error();
    moat_transport_close(&c);
    moat_transport_close(&s);
}

/* With track_reads, a read after a short socket read says "would block" without asking
 * OpenSSL, until the owner's loop calls moat_transport_readable; but never while OpenSSL
 * still holds bytes of a record the same socket read brought in. */
TEST_CASE(drained_socket_reads_skip_openssl_but_not_buffered_records)
{
    struct moat_transport c, s;
    EXPECT(connected(&c, &s));
    s.track_reads = 1;
    SSL_set_read_ahead(moat_tls_transport_ssl(&s), 1); /* as tls/ctx.c sets the server's */
    SSL *cs = moat_tls_transport_ssl(&c);
    char buf[4096];
    size_t n = 0, w = 0;
    /* Let the server's tickets and the handshake's last bytes settle on both sides. */
    EXPECT_INT(read_some(&c, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN); /* nothing sent yet */
    EXPECT_INT(moat_transport_read(&s, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    /* Two records in the socket before the server reads: one recv (read-ahead) takes both. */
    EXPECT(SSL_write_ex(cs, "first", 5, &w) == 1 && w == 5);
    EXPECT(SSL_write_ex(cs, "second", 6, &w) == 1 && w == 6);
    moat_transport_readable(&s);
    EXPECT(moat_ok(moat_transport_read(&s, buf, sizeof(buf), &n)));
    EXPECT(n == 5 && memcmp(buf, "first", 5) == 0);
    EXPECT(s.drained); /* the recv came back short */
    /* Drained, but the second record is in OpenSSL's buffer: it is read, not skipped. */
    EXPECT(moat_ok(moat_transport_read(&s, buf, sizeof(buf), &n)));
    EXPECT(n == 6 && memcmp(buf, "second", 6) == 0);
    EXPECT_INT(moat_transport_read(&s, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    /* Bytes that arrive now wait for the readable event, as the contract says... */
    EXPECT(moat_ok(moat_transport_write(&c, "third", 5, &n)));
    EXPECT_INT(moat_transport_read(&s, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    /* ...and come once the loop says the socket is readable. */
    moat_transport_readable(&s);
    EXPECT(moat_ok(moat_transport_read(&s, buf, sizeof(buf), &n)));
    EXPECT(n == 5 && memcmp(buf, "third", 5) == 0);
    EXPECT(ERR_peek_error() == 0);
    moat_transport_close(&c);
    moat_transport_close(&s);
}

TEST_CASE(finish_with_nothing_waiting)
{
    struct moat_transport c, s;
    EXPECT(connected(&c, &s));
    size_t n;
    char buf[16];
    EXPECT(moat_ok(moat_transport_write(&c, "x", 1, &n)));
    EXPECT(moat_ok(read_some(&s, buf, sizeof(buf), &n)));
    EXPECT_INT(moat_transport_finish(&s), 0); /* clean close: no reset */
    moat_transport_shutdown(&s);              /* close_notify already sent: not twice */
    EXPECT_INT(read_some(&c, buf, sizeof(buf), &n).kind, MOAT_E_CLOSED);
    moat_transport_close(&c);
    moat_transport_close(&s);
}

TEST_CASE(failed_handshake_has_words)
{
    int fds[2];
    EXPECT(socket_pair(fds));
    struct moat_transport s;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_tls_transport_server(&s, fds[1], sctx, &err)));
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"; /* HTTP on a TLS port */
    EXPECT(write(fds[0], junk, sizeof(junk) - 1) == (ssize_t)(sizeof(junk) - 1));
    moat_rc rc = moat_transport_handshake(&s, &err);
    EXPECT_INT(rc.kind, MOAT_E_TLS);
    EXPECT(strstr(err.msg, "tls handshake failed") != NULL);
    EXPECT(s.fail_reason != NULL);
    EXPECT(ERR_peek_error() == 0);
    moat_transport_close(&s);
    close(fds[0]);
}

TEST_CASE(refused_client_leaves_a_plain_transport_owning_the_fd)
{
    int fds[2];
    EXPECT(socket_pair(fds));
    struct moat_transport c;
    struct moat_err err = {0};
    EXPECT_INT(moat_tls_transport_client(&c, fds[0], cctx, "", &err).kind, MOAT_E_USAGE);
    EXPECT(moat_transport_is_plain(&c));
    EXPECT(moat_tls_transport_ssl(&c) == NULL);
    EXPECT_INT(c.fd, fds[0]);
    moat_transport_close(&c);
    EXPECT_INT(c.fd, -1);
    close(fds[1]);
}

int main(void)
{
    th_dir_make();
    if (!th_cert_files("srv", "ec", "localhost")) {
        fprintf(stderr, "cannot make test certificates\n");
        return 1;
    }
    sctx = server_ctx();
    struct moat_tls_client_opts o = {.no_verify = 1};
    struct moat_err err = {0};
    if (!moat_ok(moat_tls_client_ctx_new(&o, &cctx, &err))) {
        fprintf(stderr, "client ctx: %s\n", err.msg);
        return 1;
    }
    RUN(handshake_round_trip_close_notify);
    RUN(big_writes_through_a_small_socket);
    RUN(key_updates_from_a_client_that_does_not_read);
    RUN(drained_socket_reads_skip_openssl_but_not_buffered_records);
    RUN(finish_with_nothing_waiting);
    RUN(failed_handshake_has_words);
    RUN(refused_client_leaves_a_plain_transport_owning_the_fd);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    th_free_ca();
    th_dir_remove();
    TEST_MAIN_END();
}
