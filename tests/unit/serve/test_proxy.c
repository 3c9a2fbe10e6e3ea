/*
 * test_proxy.c: the reverse proxy handler (serve/proxy.c) as the HTTP/1 session drives it,
 * with the client side on the in-memory transport and the origin a real loopback socket this
 * test plays by hand, reached through an upstream group of one server (upstream/group.h) and
 * the worker's pool of keep-alive connections (upstream/pool.h): what the origin is sent
 * (origin-form, the path a strip or rewrite rule makes, Host, X-Forwarded-* and Forwarded as
 * trusted_proxies allow, hop-by-hop fields dropped, the body re-chunked), how its answer
 * reaches the client (fields less its hop's, the framing redone), connection reuse (or not,
 * with keepalive 0, or when the origin closed an idle one), and the failures: a refused connect
 * (a 502 with one server, the other server with two), bytes that are no answer, an answer cut
 * short, an origin that does not answer in time, a client that goes away.
 */
#include "serve/proxy.h"

#include "core/log.h"
#include "fake_transport.h"
#include "http1/server.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct moat_loop L;
static struct moat_pool P;
static struct moat_h1s_scratch SCR;
static struct moat_session_stats ST;
static struct moat_h1s_conf H1CONF;
static struct moat_up_pool UP;      /* the worker's upstream connections */
static struct moat_proxy_route R;   /* the rule every request takes; R.group: the origin's */
static struct moat_cidr TRUSTED[2]; /* trusted_proxies */
static size_t NTRUSTED;
static struct fake_transport F;
static struct moat_h1s S;
static int listen_fd = -1, origin_fd = -1;
static unsigned origin_port;
static const char *peer = "192.0.2.7"; /* the client's address, as the connection gives it */
static int ended, done_count;

/* ---- the host: every request goes to the proxy ------------------------------------------ */

static moat_rc dispatch(void *host, struct moat_route_ref *ref, const struct moat_req *req,
                        struct moat_res *res, struct moat_buf *fields, struct moat_buf *body)
{
    struct moat_proxy_call call = {
        .route = &R, .loop = &L, .pool = &UP, .trusted = TRUSTED, .ntrusted = NTRUSTED};
    return moat_proxy_handler(&call, req, res, fields, body);
}

static moat_rc decorate(void *host, const struct moat_route_ref *ref, struct moat_buf *out,
                        const struct moat_buf *lines, unsigned flags)
{
    if (lines != NULL) {
        MOAT_TRY(moat_buf_append(out, moat_buf_rdptr(lines), moat_buf_len(lines)));
    }
    return (flags & MOAT_RES_RELAYED) ? MOAT_RC_OK : moat_buf_append(out, "X-Own: 1\r\n", 10);
}

static int server_field(void *host, const struct moat_route_ref *ref)
{
    return 1;
}

static void done(void *host, const struct moat_route_ref *ref, const struct moat_answer_log *a)
{
    done_count++;
}

static void on_ended(void *host)
{
    ended++;
}

static const struct moat_session_host host_ops = {.dispatch = dispatch,
                                                  .decorate = decorate,
                                                  .server_field = server_field,
                                                  .done = done,
                                                  .ended = on_ended};

/* ---- the loop, one iteration at a time -------------------------------------------------- */

static struct moat_timer tick;

static void on_tick(struct moat_timer *t)
{
}

static void stop_after(struct moat_loop *l, void *data)
{
    l->stop = 1;
}

/* Run loop iterations (each waits at most ~10 ms) for about `ms`, or until `until` holds. */
static void spin(int ms, int (*until)(void))
{
    for (int i = 0; i < ms / 5 + 1; i++) {
        if (until != NULL && until()) {
            return;
        }
        L.stop = 0;
        /* A tick, so an iteration never waits longer than 5 ms for nothing. */
        if (!moat_ok(moat_timer_arm(&L.timers, &tick, moat_now_ms() + 5))) {
            abort();
        }
        moat_loop_run(&L);
        moat_h1s_on_event(&S, 0); /* the client side, as the connection would */
    }
}

static int answered(void)
{
    return F.sent != NULL && strstr(F.sent, "\r\n\r\n") != NULL;
}

static int session_ended(void)
{
    return ended > 0;
}

/* ---- the origin, played by the test ----------------------------------------------------- */

static void start_origin(void)
{
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listen_fd, 8) != 0) {
        abort();
    }
    socklen_t al = sizeof(a);
    getsockname(listen_fd, (struct sockaddr *)&a, &al);
    origin_port = ntohs(a.sin_port);
}

/* A loopback port nothing listens on (bound for a moment to learn one, then closed). */
static unsigned dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* The route's group: servers 127.0.0.1 on `ports` (the origin's unless told), one timeout for
 * connect, first byte, reads and writes, `keepalive` idle connections kept per server. */
static void use_group_of(const unsigned *ports, size_t n, uint64_t keepalive, uint64_t timeout_ms)
{
    struct moat_up_server_spec sv[4];
    for (size_t i = 0; i < n && i < 4; i++) {
        sv[i] = (struct moat_up_server_spec){.host = "127.0.0.1", .port = ports[i], .weight = 1};
    }
    struct moat_up_params p = {.name = n > 1 ? "app" : NULL,
                               .servers = sv,
                               .nservers = n,
                               .keepalive = keepalive,
                               .keepalive_ms = 60000,
                               .max_fails = n > 1 ? 1 : 0,
                               .fail_timeout_ms = 10000,
                               .retries = 2,
                               .connect_ms = timeout_ms,
                               .first_byte_ms = timeout_ms,
                               .read_ms = timeout_ms,
                               .write_ms = timeout_ms};
    struct moat_err e = {0};
    struct moat_up_group *g = NULL;
    if (!moat_ok(moat_up_group_new(&p, &g, &e))) {
        fprintf(stderr, "moat_up_group_new: %s\n", e.msg);
        abort();
    }
    moat_proxy_route_clear(&R);
    R.group = g;
}

static void use_group(uint64_t keepalive, uint64_t timeout_ms)
{
    use_group_of(&origin_port, 1, keepalive, timeout_ms);
}

/* The whole site to the origin, no rewriting: what most tests use. */
static void plain_route(void)
{
    struct moat_up_group *g = R.group;
    R = (struct moat_proxy_route){.group = g};
    snprintf(R.id_prefix, sizeof(R.id_prefix), "X-Client-");
}

/* Accept the proxy's connection (it is queued once the handler connected). */
static int origin_accept(void)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    for (int i = 0; i < 200 && poll(&p, 1, 0) == 0; i++) {
        spin(10, NULL);
    }
    origin_fd = accept(listen_fd, NULL, NULL);
    return origin_fd >= 0;
}

/* What the origin received up to the end of the head plus `body` more bytes. */
static void origin_read(char *buf, size_t cap, size_t body)
{
    size_t n = 0;
    char *end = NULL;
    for (int i = 0; i < 400 && n + 1 < cap; i++) {
        struct pollfd p = {.fd = origin_fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) {
            ssize_t r = recv(origin_fd, buf + n, cap - 1 - n, 0);
            if (r <= 0) {
                break;
            }
            n += (size_t)r;
            buf[n] = '\0';
            end = strstr(buf, "\r\n\r\n");
            if (end != NULL && (size_t)(buf + n - (end + 4)) >= body) {
                break;
            }
        } else {
            spin(5, NULL);
        }
    }
    buf[n] = '\0';
}

static void origin_send(const char *s)
{
    if (send(origin_fd, s, strlen(s), MSG_NOSIGNAL) != (ssize_t)strlen(s)) {
        TEST__FAIL("origin send failed: %s", strerror(errno));
    }
}

static void origin_close(void)
{
    if (origin_fd >= 0) {
        close(origin_fd);
        origin_fd = -1;
    }
}

/* Whether the proxy closed its side towards the origin. */
static int origin_sees_close(void)
{
    for (int i = 0; i < 200; i++) {
        struct pollfd p = {.fd = origin_fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) {
            char b[256];
            ssize_t r = recv(origin_fd, b, sizeof(b), 0);
            if (r <= 0) {
                return 1;
            }
        }
        spin(5, NULL);
    }
    return 0;
}

/* ---- set-up ----------------------------------------------------------------------------- */

static void setup(void)
{
    ended = done_count = 0;
    fake_init(&F);
    moat_h1_limits_default(&H1CONF.head);
    H1CONF.max_body_bytes = 1 << 20;
    H1CONF.max_requests = 100;
    H1CONF.head_timeout_ms = 5000;
    H1CONF.idle_timeout_ms = 5000;
    H1CONF.body_timeout_ms = 5000;
    H1CONF.write_timeout_ms = 5000;
    struct moat_h1s_env env = {.loop = &L,
                               .pool = &P,
                               .scratch = &SCR,
                               .stats = &ST,
                               .host = &host_ops,
                               .conn_id = 1,
                               .peer = peer,
                               .secure = 1};
    moat_h1s_init(&S, &F.t, &H1CONF, &env);
    moat_h1s_start(&S);
}

/* Back to the defaults for the next test: the session, the pool (its idle connections to
 * the origin), the route and the origin's end. */
static void teardown(void)
{
    moat_h1s_clear(&S);
    spin(5, NULL); /* the deferred frees */
    moat_up_pool_clear(&UP);
    spin(5, NULL);
    origin_close();
    fake_free(&F);
    use_group(32, 2000);
    plain_route();
    NTRUSTED = 0;
    peer = "192.0.2.7";
}

/* Whether the proxy opened another connection to the origin (one waits to be accepted). */
static int origin_has_new_connection(void)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static const char *sent(void)
{
    return F.sent ? F.sent : "";
}

/* A new session whose GET / the proxy forwarded and the origin has read. */
static int forward_a_get(void)
{
    setup();
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    if (!origin_accept()) {
        return 0;
    }
    char req[4096];
    origin_read(req, sizeof(req), 0);
    return strncmp(req, "GET / HTTP/1.1\r\n", 16) == 0;
}

/* ---- tests ------------------------------------------------------------------------------ */

TEST_CASE(a_get_is_forwarded_and_its_answer_relayed)
{
    setup();
    fake_feed_str(&F, "GET http://app.test/p?q=1 HTTP/1.1\r\nHost: app.test\r\n"
                      "Connection: keep-alive, X-Hop\r\nX-Hop: drop me\r\nKeep-Alive: 5\r\n"
                      "X-Forwarded-For: 6.6.6.6\r\nX-Client-Verify: SUCCESS\r\n"
                      "Forwarded: for=6.6.6.6\r\nAccept: */*\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_STREAM);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    EXPECT(strncmp(req, "GET /p?q=1 HTTP/1.1\r\nHost: app.test\r\n", 37) == 0);
    EXPECT(strstr(req, "Accept: */*\r\n") != NULL);
    EXPECT(strstr(req, "X-Hop") == NULL);
    EXPECT(strstr(req, "Keep-Alive") == NULL);
    EXPECT(strstr(req, "6.6.6.6") == NULL);         /* the client is not a trusted proxy */
    EXPECT(strstr(req, "X-Client-Verify") == NULL); /* a forged identity never passes */
    EXPECT(strstr(req, "X-Forwarded-For: 192.0.2.7\r\n") != NULL);
    EXPECT(strstr(req, "X-Forwarded-Proto: https\r\n") != NULL);
    EXPECT(strstr(req, "X-Forwarded-Host: app.test\r\n") != NULL);
    EXPECT(strstr(req, "Forwarded: for=192.0.2.7;proto=https;host=app.test\r\n") != NULL);
    /* a pooled connection stays open: HTTP/1.1's default, no Connection field */
    EXPECT(strstr(req, "Connection") == NULL);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close, X-Origin-Hop\r\n"
                "X-Origin-Hop: 1\r\nServer: origin\r\nX-App: yes\r\n\r\nhello");
    spin(2000, answered);
    spin(50, NULL);
    EXPECT(strncmp(sent(), "HTTP/1.1 200 OK\r\n", 17) == 0);
    EXPECT(strstr(sent(), "X-App: yes\r\n") != NULL);
    EXPECT(strstr(sent(), "X-Origin-Hop") == NULL);
    EXPECT(strstr(sent(), "Server: origin") == NULL); /* moat's own Server field */
    EXPECT(strstr(sent(), "X-Own") == NULL);          /* a relayed answer */
    EXPECT(strstr(sent(), "Content-Length: 5\r\n\r\nhello") != NULL);
    EXPECT(strstr(sent(), "Connection: close") == NULL); /* the client's connection stays */
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    EXPECT_INT(done_count, 1);
    /* the origin said close: that connection is not kept */
    EXPECT_INT(UP.nidle, 0);
    EXPECT(origin_sees_close());
    teardown();
}

/* A trusted proxy's forwarding fields are kept and this hop appended to them. */
TEST_CASE(a_trusted_peer_keeps_its_forwarding_fields)
{
    EXPECT(moat_cidr_parse("192.0.2.0/24", &TRUSTED[0]) == NULL);
    NTRUSTED = 1;
    setup();
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 203.0.113.9\r\n"
                      "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                      "X-Forwarded-Host: www.example\r\n"
                      "Forwarded: for=203.0.113.9;proto=http\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    EXPECT(strstr(req, "X-Forwarded-For: 203.0.113.9, 10.0.0.1, 192.0.2.7\r\n") != NULL);
    EXPECT(strstr(req, "X-Forwarded-Proto: http\r\n") != NULL); /* what the first hop saw */
    EXPECT(strstr(req, "X-Forwarded-Host: www.example\r\n") != NULL);
    EXPECT(strstr(req, "Forwarded: for=203.0.113.9;proto=http, "
                       "for=192.0.2.7;proto=https;host=app.test\r\n") != NULL);
    /* each field once: the client's own lines were replaced, not passed on as well */
    const char *xff = strstr(req, "X-Forwarded-For");
    EXPECT(xff != NULL && strstr(xff + 1, "X-Forwarded-For") == NULL);
    origin_send("HTTP/1.1 204 No Content\r\n\r\n");
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 204 No Content\r\n", 25) == 0);
    teardown();
}

/* An IPv6 client: Forwarded quotes its bracketed address (RFC 7239 §6). */
TEST_CASE(an_ipv6_client_is_forwarded_in_brackets)
{
    peer = "2001:db8::7";
    setup();
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    EXPECT(strstr(req, "X-Forwarded-For: 2001:db8::7\r\n") != NULL);
    EXPECT(strstr(req, "Forwarded: for=\"[2001:db8::7]\";proto=https;host=app.test\r\n") != NULL);
    origin_send("HTTP/1.1 204 No Content\r\n\r\n");
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 204 No Content\r\n", 25) == 0);
    teardown();
}

TEST_CASE(a_chunked_body_goes_up_and_a_chunked_answer_comes_down)
{
    setup();
    fake_feed_str(&F, "POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
                      "Expect: 100-continue\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    spin(50, NULL);
    EXPECT_STR(sent(), "HTTP/1.1 100 Continue\r\n\r\n");
    fake_sent_reset(&F);
    fake_feed_str(&F, "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n");
    char req[4096];
    origin_read(req, sizeof(req), 15);
    EXPECT(strstr(req, "Transfer-Encoding: chunked\r\n") != NULL);
    EXPECT(strstr(req, "Expect") == NULL);
    /* decoded and chunked again: what arrived together goes as one chunk */
    EXPECT(strstr(req, "\r\n\r\n5\r\nabcde\r\n0\r\n\r\n") != NULL);
    origin_send("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n");
    spin(2000, answered);
    spin(50, NULL);
    EXPECT(strncmp(sent(), "HTTP/1.1 201 Created\r\n", 22) == 0);
    EXPECT(strstr(sent(), "Transfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n") != NULL);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    teardown();
}

TEST_CASE(trailers_pass_both_ways_less_what_may_not)
{
    setup();
    fake_feed_str(&F, "POST /t HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "2\r\nhi\r\n0\r\nX-Sum: 1\r\nX-Client-Verify: SUCCESS\r\n"
                      "Content-Length: 5\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 22);
    /* the client's trailer goes on; a forged identity, a length, a forwarding claim do not */
    EXPECT(strstr(req, "\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n") != NULL);
    EXPECT(strstr(req, "X-Client-Verify") == NULL);
    EXPECT(strstr(req, "6.6.6.6") == NULL);
    origin_send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\r\n"
                "3\r\nabc\r\n0\r\nX-Digest: sha-256=x\r\nSet-Cookie: a=b\r\n"
                "Connection: close\r\n\r\n");
    spin(2000, answered);
    spin(50, NULL);
    EXPECT(strstr(sent(), "3\r\nabc\r\n0\r\nX-Digest: sha-256=x\r\n\r\n") != NULL);
    EXPECT(strstr(sent(), "Set-Cookie") == NULL);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    teardown();
}

/* One server, refused: nothing else to try, so the client gets moat's 502 page. */
TEST_CASE(a_refused_connect_is_a_502_page)
{
    unsigned port = dead_port();
    use_group_of(&port, 1, 32, 2000);
    setup();
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    EXPECT(strstr(sent(), "X-Own: 1\r\n") != NULL); /* moat's own answer, decorated */
    EXPECT_INT(atomic_load(&R.group->servers[0].active), 0);
    teardown();
}

/* Two servers, the first refused: the request goes to the other one, and the refused one is
 * out for the next requests. */
TEST_CASE(a_refused_connect_goes_to_the_other_server)
{
    unsigned ports[2] = {dead_port(), origin_port};
    use_group_of(ports, 2, 32, 2000);
    setup();
    fake_feed_str(&F, "GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0); /* round robin: server 0 first */
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    EXPECT(strncmp(req, "GET /a HTTP/1.1\r\n", 17) == 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 200 OK\r\n", 17) == 0);
    EXPECT(!moat_up_server_in(R.group, 0, L.now_ms));
    EXPECT(moat_up_server_in(R.group, 1, L.now_ms));
    teardown();
}

TEST_CASE(bytes_that_are_no_answer_are_a_502)
{
    EXPECT(forward_a_get());
    origin_send("SSH-2.0-OpenSSH_9.2\r\n");
    origin_close();
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    teardown();
}

TEST_CASE(an_answer_cut_short_cuts_the_client)
{
    EXPECT(forward_a_get());
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
    origin_close();
    spin(2000, session_ended);
    EXPECT_INT(ended, 1); /* the promised length cannot be kept: only the close says so */
    EXPECT(strstr(sent(), "Content-Length: 100\r\n\r\nonly this") != NULL);
    EXPECT_INT(UP.nidle, 0); /* a broken connection is not pooled */
    teardown();
}

TEST_CASE(an_origin_that_does_not_answer_in_time_is_a_504)
{
    use_group(32, 100);
    setup();
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 504 Gateway Timeout\r\n", 30) == 0);
    EXPECT(origin_sees_close()); /* a late answer must not meet the next request */
    teardown();
}

TEST_CASE(a_client_that_goes_away_closes_the_origin_side)
{
    EXPECT(forward_a_get());
    moat_h1s_clear(&S); /* the connection closes: the handler gets its abort */
    EXPECT(origin_sees_close());
    teardown();
}

TEST_CASE(a_slow_client_holds_the_origin_back)
{
    EXPECT(forward_a_get());
    F.write_room = 100; /* the client takes almost nothing */
    static char big[300000];
    memset(big, 'z', sizeof(big));
    char head[128];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof(big));
    origin_send(head);
    int fl = 1;
    setsockopt(origin_fd, SOL_SOCKET, SO_SNDBUF, &fl, sizeof(fl));
    /* The origin can write what the kernel buffers and no more, because moat stops reading. */
    size_t off = 0;
    for (int i = 0; i < 100; i++) {
        ssize_t r = send(origin_fd, big + off, sizeof(big) - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            off += (size_t)r;
        }
        spin(5, NULL);
    }
    EXPECT(off < sizeof(big)); /* back-pressure reached the origin */
    EXPECT(S.out.cap <= 64 * 1024);
    F.write_room = SIZE_MAX;
    for (int i = 0; i < 2000 && off < sizeof(big); i++) {
        ssize_t r = send(origin_fd, big + off, sizeof(big) - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            off += (size_t)r;
        }
        spin(5, NULL);
    }
    spin(200, NULL);
    EXPECT_INT(off, sizeof(big));
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    EXPECT_INT(S.bytes_sent, sizeof(big));
    EXPECT(F.sent_len > sizeof(big));
    teardown();
}

/* ---- keep-alive to the origin ------------------------------------------------------------ */

/* One request on the session and its answer from the origin on origin_fd; 1 when the client
 * got `status_line`. */
static int exchange(const char *request, const char *answer, const char *status_line)
{
    fake_sent_reset(&F);
    fake_feed_str(&F, request);
    moat_h1s_on_event(&S, 0);
    char req[4096];
    origin_read(req, sizeof(req), 0);
    if (strncmp(req, request, strcspn(request, "\r")) != 0) {
        TEST__FAIL("the origin read [%.60s]", req);
        return 0;
    }
    origin_send(answer);
    spin(2000, answered);
    spin(20, NULL);
    return strncmp(sent(), status_line, strlen(status_line)) == 0;
}

TEST_CASE(two_requests_reuse_one_origin_connection)
{
    setup();
    unsigned long long opened = UP.opened, reused = UP.reused;
    fake_feed_str(&F, "GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept()); /* accepted once, answers twice */
    char req[4096];
    origin_read(req, sizeof(req), 0);
    EXPECT(strncmp(req, "GET /one HTTP/1.1\r\n", 19) == 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    spin(2000, answered);
    spin(20, NULL);
    EXPECT(strstr(sent(), "\r\n\r\none") != NULL);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    EXPECT_INT(UP.nidle, 1); /* back in the pool */
    EXPECT(exchange("GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo", "HTTP/1.1 200 OK\r\n"));
    EXPECT(strstr(sent(), "\r\n\r\ntwo") != NULL);
    EXPECT(!origin_has_new_connection());
    EXPECT_INT(UP.opened - opened, 1);
    EXPECT_INT(UP.reused - reused, 1);
    EXPECT_INT(UP.nidle, 1);
    /* a third, with a body, still on the same socket */
    EXPECT(exchange("PUT /three HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                    "HTTP/1.1 201 Created\r\n"));
    EXPECT(!origin_has_new_connection());
    EXPECT_INT(UP.opened - opened, 1);
    EXPECT_INT(UP.reused - reused, 2);
    EXPECT_INT(atomic_load(&R.group->servers[0].conns), 1);
    EXPECT_INT(atomic_load(&R.group->servers[0].active), 0);
    teardown();
    EXPECT_INT(UP.nidle, 0);
}

TEST_CASE(keepalive_0_opens_a_connection_per_request)
{
    use_group(0, 2000);
    setup();
    unsigned long long opened = UP.opened;
    fake_feed_str(&F, "GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    spin(2000, answered);
    spin(20, NULL);
    EXPECT(strstr(sent(), "\r\n\r\none") != NULL);
    EXPECT_INT(UP.nidle, 0);
    EXPECT(origin_sees_close()); /* not kept: closed after its answer */
    origin_close();
    fake_sent_reset(&F);
    fake_feed_str(&F, "GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept()); /* a new one */
    origin_read(req, sizeof(req), 0);
    EXPECT(strncmp(req, "GET /two HTTP/1.1\r\n", 19) == 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
    spin(2000, answered);
    EXPECT(strstr(sent(), "\r\n\r\ntwo") != NULL);
    EXPECT_INT(UP.opened - opened, 2);
    teardown();
}

/* The origin closes a pooled connection while it is idle: the pool sees it and drops it, and
 * the next request opens a new one. */
TEST_CASE(an_idle_connection_the_origin_closed_is_replaced)
{
    setup();
    unsigned long long opened = UP.opened;
    fake_feed_str(&F, "GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    spin(2000, answered);
    spin(20, NULL);
    EXPECT_INT(UP.nidle, 1);
    origin_close(); /* the origin's keep-alive timeout */
    spin(50, NULL);
    EXPECT_INT(UP.nidle, 0);
    fake_sent_reset(&F);
    fake_feed_str(&F, "GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    origin_read(req, sizeof(req), 0);
    EXPECT(strncmp(req, "GET /two HTTP/1.1\r\n", 19) == 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 200 OK\r\n", 17) == 0);
    EXPECT(strstr(sent(), "\r\n\r\ntwo") != NULL);
    EXPECT_INT(UP.opened - opened, 2);
    teardown();
}

/* The same close racing the next request (the pool had no loop turn to see it): the request
 * goes out on the dead connection, nothing comes back, and a GET is tried again on a new one
 * (the close of a reused connection is not the server's fault). */
TEST_CASE(a_close_racing_the_request_is_retried_on_a_new_connection)
{
    setup();
    unsigned long long opened = UP.opened;
    fake_feed_str(&F, "GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(origin_accept());
    char req[4096];
    origin_read(req, sizeof(req), 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    spin(2000, answered);
    spin(20, NULL);
    EXPECT_INT(UP.nidle, 1);
    origin_close();
    fake_sent_reset(&F);
    fake_feed_str(&F, "GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n");
    moat_h1s_on_event(&S, 0); /* no loop turn in between */
    EXPECT(origin_accept());
    origin_read(req, sizeof(req), 0);
    EXPECT(strncmp(req, "GET /two HTTP/1.1\r\n", 19) == 0);
    origin_send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
    spin(2000, answered);
    EXPECT(strncmp(sent(), "HTTP/1.1 200 OK\r\n", 17) == 0);
    EXPECT(strstr(sent(), "\r\n\r\ntwo") != NULL);
    EXPECT_INT(UP.opened - opened, 2);
    EXPECT(moat_up_server_in(R.group, 0, L.now_ms));
    EXPECT_INT(atomic_load(&R.group->servers[0].fails), 0);
    teardown();
}

/* ---- the path a rule makes --------------------------------------------------------------- */

/* What the origin's request line is for `target` under the current route. */
static void line_for(const char *target, char *line, size_t cap)
{
    setup();
    char request[512];
    snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: app.test\r\n\r\n", target);
    fake_feed_str(&F, request);
    moat_h1s_on_event(&S, 0);
    line[0] = '\0';
    if (origin_accept()) {
        char req[4096];
        origin_read(req, sizeof(req), 0);
        snprintf(line, cap, "%.*s", (int)strcspn(req, "\r"), req);
        origin_send("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        spin(2000, answered);
    }
    moat_h1s_clear(&S);
    spin(5, NULL);
    origin_close();
    fake_free(&F);
}

TEST_CASE(strip_and_rewrite_make_the_request_line)
{
    static const struct {
        int strip;
        const char *rewrite;
        const char *target;
        const char *line;
    } cases[] = {
        /* strip: the path after the prefix, from its own '/' */
        {1, NULL, "/api/users?id=7", "GET /users?id=7 HTTP/1.1"},
        {1, NULL, "/api", "GET / HTTP/1.1"},
        {1, NULL, "/api/", "GET / HTTP/1.1"},
        {1, NULL, "/api/a%20b/c", "GET /a%20b/c HTTP/1.1"}, /* decoded, then encoded again */
        {1, NULL, "/api/x/../y", "GET /y HTTP/1.1"},        /* the normalised path */
        {1, NULL, "http://app.test/api/z", "GET /z HTTP/1.1"},
        /* rewrite: the new prefix in the old one's place */
        {0, "/v2", "/api/users?id=7", "GET /v2/users?id=7 HTTP/1.1"},
        {0, "/v2", "/api", "GET /v2 HTTP/1.1"},
        {0, "/v2/x", "/api/caf%c3%a9", "GET /v2/x/caf%C3%A9 HTTP/1.1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(R.prefix, sizeof(R.prefix), "/api");
        R.plen = 4;
        R.strip = cases[i].strip;
        snprintf(R.rewrite, sizeof(R.rewrite), "%s", cases[i].rewrite ? cases[i].rewrite : "");
        R.rewriting = 1;
        char line[256];
        line_for(cases[i].target, line, sizeof(line));
        if (strcmp(line, cases[i].line) != 0) {
            TEST__FAIL("case %zu (%s): origin got \"%s\", want \"%s\"", i, cases[i].target, line,
                       cases[i].line);
        }
    }
    /* A prefix rule that does not rewrite passes the target as the client wrote it. */
    R.strip = 0;
    R.rewrite[0] = '\0';
    R.rewriting = 0;
    char line[256];
    line_for("/api/x/../y?q", line, sizeof(line));
    EXPECT_STR(line, "GET /api/x/../y?q HTTP/1.1");
    moat_up_pool_clear(&UP);
    spin(5, NULL);
    plain_route();
}

int main(void)
{
    moat_log_set_level(getenv("DEBUG") ? MOAT_LVL_DEBUG : MOAT_LVL_ERROR);
    struct moat_err e = {0};
    if (!moat_ok(moat_loop_init(&L, &e)) || !moat_ok(moat_pool_init(&P, 64))) {
        return 2;
    }
    L.after = stop_after;
    moat_timer_init(&tick, on_tick, NULL);
    moat_buf_init(&SCR.fields, 16384);
    moat_buf_init(&SCR.body, 65536);
    moat_up_pool_init(&UP, &L);
    start_origin();
    use_group(32, 2000);
    plain_route();
    RUN(a_get_is_forwarded_and_its_answer_relayed);
    RUN(a_trusted_peer_keeps_its_forwarding_fields);
    RUN(an_ipv6_client_is_forwarded_in_brackets);
    RUN(a_chunked_body_goes_up_and_a_chunked_answer_comes_down);
    RUN(bytes_that_are_no_answer_are_a_502);
    RUN(an_answer_cut_short_cuts_the_client);
    RUN(an_origin_that_does_not_answer_in_time_is_a_504);
    RUN(a_client_that_goes_away_closes_the_origin_side);
    RUN(a_slow_client_holds_the_origin_back);
    RUN(trailers_pass_both_ways_less_what_may_not);
    RUN(a_refused_connect_is_a_502_page);
    RUN(a_refused_connect_goes_to_the_other_server);
    RUN(two_requests_reuse_one_origin_connection);
    RUN(keepalive_0_opens_a_connection_per_request);
    RUN(an_idle_connection_the_origin_closed_is_replaced);
    RUN(a_close_racing_the_request_is_retried_on_a_new_connection);
    RUN(strip_and_rewrite_make_the_request_line);
    moat_up_pool_clear(&UP);
    spin(5, NULL);
    moat_proxy_route_clear(&R);
    close(listen_fd);
    moat_buf_clear(&SCR.fields);
    moat_buf_clear(&SCR.body);
    moat_pool_clear(&P);
    moat_loop_clear(&L);
    TEST_MAIN_END();
}
