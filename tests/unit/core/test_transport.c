/*
 * test_transport.c: core/transport.c, the plain TCP transport, over a non-blocking socketpair:
 * reads and writes, "would block" as MOAT_E_AGAIN, the peer's end as MOAT_E_CLOSED, shutdown,
 * and finish telling whether the peer sent more.
 */
#include "core/transport.h"

#include "test.h"

#include <sys/socket.h>
#include <unistd.h>

/* Two plain transports over the ends of one non-blocking socketpair. */
static int pair(struct moat_transport *a, struct moat_transport *b)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
        return 0;
    }
    moat_transport_plain_init(a, fds[0]);
    moat_transport_plain_init(b, fds[1]);
    return 1;
}

TEST_CASE(round_trip_and_would_block)
{
    struct moat_transport a, b;
    EXPECT(pair(&a, &b));
    EXPECT(moat_transport_is_plain(&a));
    EXPECT(a.impl == NULL);
    EXPECT(moat_ok(moat_transport_handshake(&a, NULL))); /* nothing to do for TCP */
    char buf[64];
    size_t n = 99;
    EXPECT_INT(moat_transport_read(&b, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    EXPECT_INT(n, 0);
    EXPECT(moat_ok(moat_transport_write(&a, "hello", 5, &n)));
    EXPECT_INT(n, 5);
    EXPECT(moat_ok(moat_transport_read(&b, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    EXPECT_INT(moat_transport_pending(&b), 0);
    moat_transport_idle(&b); /* nothing to give back; must not disturb the stream */
    EXPECT(moat_ok(moat_transport_write(&b, "ok", 2, &n)));
    EXPECT(moat_ok(moat_transport_read(&a, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 2);
    EXPECT_INT(a.eof, 0);
    moat_transport_close(&a);
    moat_transport_close(&b);
    EXPECT_INT(a.fd, -1);
    moat_transport_close(&a); /* twice is harmless */
}

TEST_CASE(write_would_block_when_the_peer_does_not_read)
{
    struct moat_transport a, b;
    EXPECT(pair(&a, &b));
    static char big[65536];
    size_t n = 0, total = 0;
    moat_rc rc = MOAT_RC_OK;
    for (int i = 0; i < 1000 && moat_ok(rc); i++) {
        rc = moat_transport_write(&a, big, sizeof(big), &n);
        total += n;
    }
    EXPECT_INT(rc.kind, MOAT_E_AGAIN);
    EXPECT_INT(n, 0);
    EXPECT(total > 0);
    moat_transport_close(&a);
    moat_transport_close(&b);
}

TEST_CASE(eof_is_closed)
{
    struct moat_transport a, b;
    EXPECT(pair(&a, &b));
    moat_transport_close(&a);
    char buf[8];
    size_t n = 1;
    EXPECT_INT(moat_transport_read(&b, buf, sizeof(buf), &n).kind, MOAT_E_CLOSED);
    EXPECT_INT(n, 0);
    EXPECT_INT(b.eof, 1);
    EXPECT_INT(moat_transport_write(&b, "x", 1, &n).kind, MOAT_E_CLOSED); /* EPIPE, no signal */
    moat_transport_close(&b);
}

TEST_CASE(shutdown_ends_the_write_side_only)
{
    struct moat_transport a, b;
    EXPECT(pair(&a, &b));
    moat_transport_shutdown(&a);
    char buf[8];
    size_t n;
    EXPECT_INT(moat_transport_read(&b, buf, sizeof(buf), &n).kind, MOAT_E_CLOSED);
    EXPECT(moat_ok(moat_transport_write(&b, "late", 4, &n))); /* a can still read */
    EXPECT(moat_ok(moat_transport_read(&a, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 4);
    moat_transport_close(&a);
    moat_transport_close(&b);
}

TEST_CASE(finish_says_whether_bytes_wait)
{
    struct moat_transport a, b;
    EXPECT(pair(&a, &b));
    EXPECT_INT(moat_transport_finish(&a), 0); /* nothing sent: closing is clean */
    size_t n;
    EXPECT(moat_ok(moat_transport_write(&b, "more", 4, &n)));
    EXPECT_INT(moat_transport_finish(&a), 1); /* closing now would reset: linger */
    char buf[8];
    EXPECT(moat_ok(moat_transport_read(&a, buf, sizeof(buf), &n))); /* finish only peeked */
    EXPECT_INT(n, 4);
    moat_transport_close(&a);
    EXPECT_INT(moat_transport_finish(&a), 0); /* no socket */
    moat_transport_close(&b);

    struct moat_transport none;
    moat_transport_plain_init(&none, -1); /* the proxy's origin before its socket exists */
    moat_transport_shutdown(&none);
    EXPECT_INT(moat_transport_finish(&none), 0);
    moat_transport_close(&none);
}

/* With track_reads, a short read means the socket is empty: later reads say "would block"
 * without asking the socket (bytes that came meanwhile stay there) until the owner says the
 * socket was readable again. Without it, reads always go to the socket. */
TEST_CASE(a_short_read_is_remembered_until_the_next_event)
{
    struct moat_transport a, b;
    EXPECT(pair(&a, &b));
    b.track_reads = 1;
    size_t n = 0;
    char buf[64];
    EXPECT(moat_ok(moat_transport_write(&a, "one", 3, &n)));
    EXPECT(moat_ok(moat_transport_read(&b, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 3);
    EXPECT_INT(b.drained, 1);
    EXPECT(moat_ok(moat_transport_write(&a, "two", 3, &n)));
    EXPECT_INT(moat_transport_read(&b, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    moat_transport_readable(&b); /* the loop's edge for "two" */
    EXPECT(moat_ok(moat_transport_read(&b, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 3);
    EXPECT(memcmp(buf, "two", 3) == 0);
    /* A read that fills the buffer proves nothing: the next one asks the socket. */
    EXPECT(moat_ok(moat_transport_write(&a, "0123456789", 10, &n)));
    moat_transport_readable(&b);
    EXPECT(moat_ok(moat_transport_read(&b, buf, 4, &n)));
    EXPECT_INT(n, 4);
    EXPECT_INT(b.drained, 0);
    EXPECT(moat_ok(moat_transport_read(&b, buf, 4, &n)));
    EXPECT(memcmp(buf, "4567", 4) == 0);
    /* Untracked (the default): never remembered. */
    EXPECT(moat_ok(moat_transport_write(&b, "x", 1, &n)));
    EXPECT(moat_ok(moat_transport_read(&a, buf, sizeof(buf), &n)));
    EXPECT_INT(a.drained, 0);
    moat_transport_close(&a);
    moat_transport_close(&b);
}

int main(void)
{
    RUN(round_trip_and_would_block);
    RUN(write_would_block_when_the_peer_does_not_read);
    RUN(eof_is_closed);
    RUN(shutdown_ends_the_write_side_only);
    RUN(finish_says_whether_bytes_wait);
    RUN(a_short_read_is_remembered_until_the_next_event);
    TEST_MAIN_END();
}
