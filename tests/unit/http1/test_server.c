/*
 * test_server.c: the HTTP/1.1 server session (http1/server.c) over the in-memory transport:
 * answers and their heads, keep-alive and pipelining, a head or body arriving a byte at a time,
 * 100-continue, the limits, errors and timeouts, draining, and a streaming handler's exchange
 * (request body, chunked answer, back-pressure, failure before and after its head). The host
 * here plays the connection: it routes everything to the test's handler and adds one field.
 */
#include "http1/server.h"

#include "core/log.h"
#include "fake_transport.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a host and its handlers ------------------------------------------------------------ */

enum mode { PLAIN_OK, ECHO_BODY_LEN, ERROR_404, STREAM };

struct host {
    enum mode mode;
    int dispatched, done, ended;
    char last_target[128];
    char last_host[128];
    char last_ua[128];
    int last_has_body;
    long long last_body_length;
    /* streaming handler state */
    struct moat_exch *ex;
    int ready_calls, aborted;
    char meta_line[512];
};

static struct host H;
static struct moat_loop L;
static struct moat_pool P;
static struct moat_h1s_scratch SCR;
static struct moat_session_stats ST;

static void copy_slice(char *dst, size_t cap, moat_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p ? s.p : "", n);
    dst[n] = '\0';
}

static void st_ready(void *h)
{
    ((struct host *)h)->ready_calls++;
}

static void st_abort(void *h)
{
    ((struct host *)h)->aborted++;
    ((struct host *)h)->ex = NULL;
}

static const struct moat_stream_ops st_ops = {.ready = st_ready, .abort = st_abort};

static moat_rc dispatch(void *host, struct moat_route_ref *ref, const struct moat_req *req,
                        struct moat_res *res, struct moat_buf *fields, struct moat_buf *body)
{
    struct host *h = host;
    h->dispatched++;
    copy_slice(h->last_target, sizeof(h->last_target), req->target);
    copy_slice(h->last_host, sizeof(h->last_host), req->authority);
    copy_slice(h->last_ua, sizeof(h->last_ua), moat_req_field(req, "user-agent"));
    h->last_has_body = req->has_body;
    h->last_body_length = req->body_length;
    switch (h->mode) {
    case ERROR_404:
        return moat_res_error_page(res, 404, fields, body);
    case STREAM:
        h->ex = req->exch;
        res->stream = &st_ops;
        res->stream_h = h;
        return MOAT_RC_OK;
    case ECHO_BODY_LEN:
    case PLAIN_OK:
    default:
        MOAT_TRY(moat_buf_append(fields, "Content-Type: text/plain\r\n", 26));
        MOAT_TRY(moat_buf_append(body, "hello\n", 6));
        res->status = 200;
        res->length = 6;
        res->has_generated_body = 1;
        return MOAT_RC_OK;
    }
}

static moat_rc decorate(void *host, const struct moat_route_ref *ref, struct moat_buf *out,
                        const struct moat_buf *lines, unsigned flags)
{
    if (lines != NULL) {
        MOAT_TRY(moat_buf_append(out, moat_buf_rdptr(lines), moat_buf_len(lines)));
    }
    return (flags & MOAT_RES_RELAYED) ? moat_buf_append(out, "X-Relayed: 1\r\n", 14)
                                      : moat_buf_append(out, "X-Site: t\r\n", 11);
}

static int server_field(void *host, const struct moat_route_ref *ref)
{
    return 1;
}

static struct moat_h1s S;

/* The access log's view: what the session kept of the request, read when the answer is done. */
static void done(void *host, const struct moat_route_ref *ref, const struct moat_answer_log *a)
{
    struct host *h = host;
    h->done++;
    const char *const *meta = a->parts;
    snprintf(h->meta_line, sizeof(h->meta_line), "%s|%s|%s|%s|%s %d", meta[0], meta[1], meta[2],
             meta[3], meta[4], a->status);
}

static void ended(void *host)
{
    ((struct host *)host)->ended++;
}

static const struct moat_session_host host_ops = {
    .dispatch = dispatch,
    .decorate = decorate,
    .server_field = server_field,
    .done = done,
    .ended = ended,
};

/* ---- set-up ----------------------------------------------------------------------------- */

static struct moat_h1s_conf CONF;
static struct fake_transport F;

static void setup(enum mode mode)
{
    memset(&H, 0, sizeof(H));
    H.mode = mode;
    fake_init(&F);
    moat_h1_limits_default(&CONF.head);
    CONF.max_body_bytes = 1024;
    CONF.max_requests = 100;
    CONF.min_rate = 0;
    CONF.head_timeout_ms = 1000;
    CONF.idle_timeout_ms = 5000;
    CONF.body_timeout_ms = 2000;
    CONF.write_timeout_ms = 3000;
    struct moat_h1s_env env = {.loop = &L,
                               .pool = &P,
                               .scratch = &SCR,
                               .stats = &ST,
                               .host = &host_ops,
                               .host_data = &H,
                               .conn_id = 7,
                               .peer = "192.0.2.1:5555",
                               .keep_meta = 1};
    moat_h1s_init(&S, &F.t, &CONF, &env);
}

static void teardown(void)
{
    moat_h1s_clear(&S);
    fake_free(&F);
}

/* Move the loop's clock and run what is due. */
static void advance(uint64_t ms)
{
    L.now_ms += ms;
    moat_timers_run(&L.timers, L.now_ms);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

static const char *sent(void)
{
    return F.sent ? F.sent : "";
}

/* ---- tests ------------------------------------------------------------------------------ */

TEST_CASE(answers_a_get_and_keeps_the_connection)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    fake_feed_str(&F, "GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(H.dispatched, 1);
    EXPECT_STR(H.last_target, "/a?b=1");
    EXPECT_STR(H.last_host, "example.test");
    EXPECT_STR(H.last_ua, "t/1");
    EXPECT_INT(H.last_has_body, 0);
    EXPECT(strncmp(sent(), "HTTP/1.1 200 OK\r\n", 17) == 0);
    EXPECT(strstr(sent(), "\r\nDate: ") != NULL);
    EXPECT(strstr(sent(), "\r\nServer: moat") != NULL);
    EXPECT(strstr(sent(), "\r\nContent-Type: text/plain\r\nX-Site: t\r\n") != NULL);
    EXPECT(strstr(sent(), "\r\nContent-Length: 6\r\n\r\nhello\n") != NULL);
    EXPECT(strstr(sent(), "Connection:") == NULL); /* HTTP/1.1 keeps by default */
    EXPECT_INT(H.done, 1);
    EXPECT_INT(H.ended, 0);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    EXPECT(S.in.base == NULL); /* idle: no read buffer held */
    EXPECT_STR(H.meta_line, "GET|/a?b=1|example.test||t/1 200");
    teardown();
}

TEST_CASE(pipelined_requests_get_answers_in_order)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                      "GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(H.dispatched, 3);
    EXPECT_STR(H.last_target, "/3");
    EXPECT_INT(count(sent(), "HTTP/1.1 200 OK"), 3);
    EXPECT_INT(count(sent(), "Connection: close"), 1);
    EXPECT_INT(H.ended, 1); /* clean close after the last answer */
    EXPECT_INT(S.state, MOAT_H1S_ENDED);
    teardown();
}

TEST_CASE(a_head_a_byte_at_a_time)
{
    setup(PLAIN_OK);
    F.read_max = 1;
    moat_h1s_start(&S);
    const char *req = "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n";
    for (const char *p = req; *p; p++) {
        fake_feed(&F, p, 1);
        moat_h1s_on_event(&S, 0);
    }
    EXPECT_INT(H.dispatched, 1);
    EXPECT_STR(H.last_target, "/slow");
    EXPECT_INT(count(sent(), "HTTP/1.1 200 OK"), 1);
    teardown();
}

TEST_CASE(head_gets_the_length_but_no_body)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(strstr(sent(), "Content-Length: 6\r\n\r\n") != NULL);
    EXPECT(strstr(sent(), "hello") == NULL);
    teardown();
}

TEST_CASE(http10_keep_alive_is_said_and_close_is_default)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(strstr(sent(), "Connection: keep-alive\r\n") != NULL);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    fake_sent_reset(&F);
    fake_feed_str(&F, "GET / HTTP/1.0\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(strstr(sent(), "Connection: close\r\n") != NULL);
    EXPECT_INT(H.ended, 1);
    teardown();
}

TEST_CASE(a_body_is_read_and_dropped_after_100_continue)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                      "Expect: 100-continue\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(H.last_has_body, 1);
    EXPECT_INT(H.last_body_length, 5);
    EXPECT_INT(S.state, MOAT_H1S_BODY);
    EXPECT_STR(sent(), "HTTP/1.1 100 Continue\r\n\r\n");
    fake_feed_str(&F, "ab");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_BODY);
    fake_feed_str(&F, "cdeGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(count(sent(), "HTTP/1.1 200 OK"), 2); /* the body did not become a request */
    EXPECT_STR(H.last_target, "/next");
    teardown();
}

TEST_CASE(a_chunked_body_is_decoded_away)
{
    setup(PLAIN_OK);
    F.read_max = 3;
    moat_h1s_start(&S);
    fake_feed_str(&F, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    for (int i = 0; i < 100 && H.dispatched < 2; i++) {
        moat_h1s_on_event(&S, 0);
    }
    EXPECT_INT(H.dispatched, 2);
    EXPECT_INT(H.last_body_length, 0);
    EXPECT_STR(H.last_target, "/after");
    teardown();
}

TEST_CASE(a_body_over_the_limit_gets_413)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(strncmp(sent(), "HTTP/1.1 413 ", 13) == 0);
    EXPECT(strstr(sent(), "Connection: close") != NULL);
    EXPECT_INT(H.dispatched, 0);
    teardown();
}

TEST_CASE(an_error_answer_does_not_wait_for_the_body)
{
    setup(ERROR_404);
    moat_h1s_start(&S);
    fake_feed_str(&F, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npart");
    moat_h1s_on_event(&S, 0);
    EXPECT(strncmp(sent(), "HTTP/1.1 404 ", 13) == 0);
    /* most of the body is still to come: it must not be read as the next request */
    EXPECT(strstr(sent(), "Connection: close") != NULL);
    EXPECT(strstr(sent(), "100 Continue") == NULL);
    teardown();
}

TEST_CASE(a_malformed_head_gets_400_and_close)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost : a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(strncmp(sent(), "HTTP/1.1 400 ", 13) == 0);
    EXPECT(strstr(sent(), "Connection: close") != NULL);
    EXPECT_INT(H.dispatched, 0);
    EXPECT_INT(ST.bad_requests > 0, 1);
    EXPECT_INT(F.shut, 1); /* lingering close: our side shut first */
    teardown();
}

TEST_CASE(an_incomplete_head_times_out_with_408)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHo");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_HEAD);
    advance(999);
    EXPECT_INT(S.state, MOAT_H1S_HEAD);
    fake_feed_str(&F, "s"); /* a trickle does not extend the head's time */
    moat_h1s_on_event(&S, 0);
    advance(2);
    EXPECT(strncmp(sent(), "HTTP/1.1 408 ", 13) == 0);
    teardown();
}

TEST_CASE(idle_connections_time_out_and_drain_closes_them)
{
    setup(PLAIN_OK);
    moat_h1s_start(&S);
    EXPECT_INT(moat_h1s_drain(&S), 1);
    teardown();

    setup(PLAIN_OK);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    advance(5001);
    EXPECT_INT(H.ended, 1);
    teardown();
}

TEST_CASE(the_last_request_of_a_connection_says_close)
{
    setup(PLAIN_OK);
    CONF.max_requests = 2;
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(count(sent(), "HTTP/1.1 200 OK"), 2);
    EXPECT_INT(count(sent(), "Connection: close"), 1);
    teardown();
}

TEST_CASE(a_blocked_answer_resumes_when_the_client_reads)
{
    setup(PLAIN_OK);
    F.write_room = 10;
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_WRITE);
    EXPECT_INT(F.sent_len, 10);
    F.write_room = SIZE_MAX;
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    EXPECT(strstr(sent(), "hello\n") != NULL);
    teardown();
}

TEST_CASE(a_reader_that_stalls_is_cut)
{
    setup(PLAIN_OK);
    F.write_room = 10;
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    advance(3001);
    EXPECT_INT(H.ended, 1);
    teardown();
}

/* ---- streaming -------------------------------------------------------------------------- */

TEST_CASE(a_stream_reads_the_body_and_answers_chunked)
{
    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "POST /s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                      "Expect: 100-continue\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(S.state, MOAT_H1S_STREAM);
    EXPECT(H.ex != NULL);
    EXPECT_INT(H.last_body_length, -1);
    EXPECT_INT(F.sent_len, 0); /* 100 Continue waits for the handler's first read */
    char buf[64];
    size_t n = 99;
    EXPECT_INT(moat_exch_read_body(H.ex, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    EXPECT_STR(sent(), "HTTP/1.1 100 Continue\r\n\r\n");
    fake_sent_reset(&F);
    fake_feed_str(&F, "4\r\nwxyz\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(H.ready_calls, 1);
    EXPECT(moat_ok(moat_exch_read_body(H.ex, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 4);
    EXPECT(memcmp(buf, "wxyz", 4) == 0);
    EXPECT(moat_exch_trailers(H.ex) == NULL); /* not before the body is complete */
    fake_feed_str(&F, "0\r\nX-Sum: 9\r\n\r\n");
    EXPECT(moat_ok(moat_exch_read_body(H.ex, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 0); /* complete */
    const struct moat_buf *tr = moat_exch_trailers(H.ex);
    EXPECT(tr != NULL && moat_buf_len(tr) == 10 &&
           memcmp(moat_buf_rdptr(tr), "X-Sum: 9\r\n", 10) == 0);

    struct moat_buf lines;
    moat_buf_init(&lines, 1024);
    EXPECT(moat_ok(moat_buf_append(&lines, "X-Origin: 1\r\n", 13)));
    EXPECT(moat_ok(moat_exch_start(H.ex, 201, &lines, -1, MOAT_RES_RELAYED)));
    moat_buf_clear(&lines);
    EXPECT(moat_exch_room(H.ex) > 0);
    EXPECT(moat_ok(moat_exch_send(H.ex, "abc", 3)));
    EXPECT(moat_ok(moat_exch_send(H.ex, "", 0))); /* never an early last-chunk */
    struct moat_exch *ex = H.ex;
    H.ex = NULL;
    struct moat_buf trailers;
    moat_buf_init(&trailers, 256);
    EXPECT(moat_ok(moat_buf_append(&trailers, "X-Done: yes\r\n", 13)));
    moat_exch_finish_trailers(ex, &trailers);
    moat_buf_clear(&trailers);
    EXPECT(strncmp(sent(), "HTTP/1.1 201 Created\r\n", 22) == 0);
    EXPECT(strstr(sent(), "X-Origin: 1\r\nX-Relayed: 1\r\n") != NULL);
    EXPECT(
        strstr(sent(), "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Done: yes\r\n\r\n") !=
        NULL);
    EXPECT_INT(H.done, 1);
    EXPECT_INT(S.state, MOAT_H1S_IDLE);
    EXPECT_INT(H.aborted, 0);
    teardown();
}

TEST_CASE(a_stream_with_a_length_to_an_http10_client)
{
    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.0\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(moat_ok(moat_exch_start(H.ex, 200, NULL, -1, 0)));
    EXPECT(moat_ok(moat_exch_send(H.ex, "data", 4)));
    struct moat_exch *ex = H.ex;
    struct moat_buf trailers;
    moat_buf_init(&trailers, 256);
    EXPECT(moat_ok(moat_buf_append(&trailers, "X-Done: yes\r\n", 13)));
    moat_exch_finish_trailers(ex, &trailers); /* HTTP/1.0 cannot carry them: dropped */
    moat_buf_clear(&trailers);
    EXPECT(strstr(sent(), "X-Done") == NULL);
    /* unknown length, HTTP/1.0: no chunking, the close ends the body */
    EXPECT(strstr(sent(), "Transfer-Encoding") == NULL);
    EXPECT(strstr(sent(), "Connection: close\r\n\r\ndata") != NULL);
    EXPECT_INT(H.ended, 1);
    teardown();
}

TEST_CASE(a_stream_waits_for_room_and_is_woken)
{
    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    F.write_room = 0;
    EXPECT(moat_ok(moat_exch_start(H.ex, 200, NULL, 40000, 0)));
    static char big[20000];
    memset(big, 'x', sizeof(big));
    EXPECT(moat_ok(moat_exch_send(H.ex, big, sizeof(big))));
    EXPECT_INT(moat_exch_room(H.ex), 0);
    moat_h1s_on_event(&S, 0); /* still blocked: no wake-up */
    EXPECT_INT(H.ready_calls, 0);
    F.write_room = SIZE_MAX;
    moat_h1s_on_event(&S, 0);
    EXPECT_INT(H.ready_calls, 1);
    EXPECT(moat_exch_room(H.ex) > 0);
    EXPECT(strstr(sent(), "Content-Length: 40000\r\n") != NULL);
    /* the client goes away while the answer is unfinished: the handler is told */
    F.fail_writes = 1;
    EXPECT(!moat_ok(moat_exch_send(H.ex, big, 10)));
    EXPECT_INT(H.ended, 1);
    EXPECT_INT(H.aborted, 0); /* told by the failed call, not called back */
    teardown();
}

TEST_CASE(a_stream_that_fails_before_its_head_gets_an_error_page)
{
    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    moat_exch_fail(H.ex, 502);
    EXPECT(strncmp(sent(), "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    EXPECT(strstr(sent(), "Connection: close") != NULL);
    teardown();

    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    EXPECT(moat_ok(moat_exch_start(H.ex, 200, NULL, 100, 0)));
    moat_exch_fail(H.ex, 502); /* after the head: only the close can say it */
    EXPECT_INT(H.ended, 1);
    EXPECT_INT(count(sent(), "HTTP/1.1"), 1);
    teardown();
}

TEST_CASE(a_stream_whose_client_stalls_its_body_gets_408_and_an_abort)
{
    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab");
    moat_h1s_on_event(&S, 0);
    char buf[16];
    size_t n;
    EXPECT(moat_ok(moat_exch_read_body(H.ex, buf, sizeof(buf), &n)));
    EXPECT_INT(n, 2);
    EXPECT_INT(moat_exch_read_body(H.ex, buf, sizeof(buf), &n).kind, MOAT_E_AGAIN);
    advance(2001);
    EXPECT_INT(H.aborted, 1);
    EXPECT(strncmp(sent(), "HTTP/1.1 408 ", 13) == 0);
    teardown();
}

TEST_CASE(closing_the_session_aborts_a_stream)
{
    setup(STREAM);
    moat_h1s_start(&S);
    fake_feed_str(&F, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    moat_h1s_on_event(&S, 0);
    advance(100000); /* waiting for the handler is not the session's to time */
    EXPECT_INT(H.aborted, 0);
    EXPECT_INT(S.state, MOAT_H1S_STREAM);
    moat_h1s_clear(&S);
    EXPECT_INT(H.aborted, 1);
    teardown();
}

int main(void)
{
    moat_log_set_level(MOAT_LVL_ERROR);
    struct moat_err e = {0};
    if (!moat_ok(moat_loop_init(&L, &e)) || !moat_ok(moat_pool_init(&P, 64))) {
        return 2;
    }
    moat_buf_init(&SCR.fields, 16384);
    moat_buf_init(&SCR.body, 65536);
    RUN(answers_a_get_and_keeps_the_connection);
    RUN(pipelined_requests_get_answers_in_order);
    RUN(a_head_a_byte_at_a_time);
    RUN(head_gets_the_length_but_no_body);
    RUN(http10_keep_alive_is_said_and_close_is_default);
    RUN(a_body_is_read_and_dropped_after_100_continue);
    RUN(a_chunked_body_is_decoded_away);
    RUN(a_body_over_the_limit_gets_413);
    RUN(an_error_answer_does_not_wait_for_the_body);
    RUN(a_malformed_head_gets_400_and_close);
    RUN(an_incomplete_head_times_out_with_408);
    RUN(idle_connections_time_out_and_drain_closes_them);
    RUN(the_last_request_of_a_connection_says_close);
    RUN(a_blocked_answer_resumes_when_the_client_reads);
    RUN(a_reader_that_stalls_is_cut);
    RUN(a_stream_reads_the_body_and_answers_chunked);
    RUN(a_stream_with_a_length_to_an_http10_client);
    RUN(a_stream_waits_for_room_and_is_woken);
    RUN(a_stream_that_fails_before_its_head_gets_an_error_page);
    RUN(a_stream_whose_client_stalls_its_body_gets_408_and_an_abort);
    RUN(closing_the_session_aborts_a_stream);
    moat_buf_clear(&SCR.fields);
    moat_buf_clear(&SCR.body);
    moat_pool_clear(&P);
    moat_loop_clear(&L);
    TEST_MAIN_END();
}
