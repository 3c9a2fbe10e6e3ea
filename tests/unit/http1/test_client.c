/*
 * test_client.c: http1/client.c, the HTTP/1.1 client session, driven over the in-memory fake
 * transport byte by byte and split anywhere: answer framing (length, chunked, close, none for
 * HEAD/204/304), interim answers, request bodies as sent on the wire, back-pressure, reuse of
 * one connection and every reason it must not be reused, the failure words the proxy logs, and
 * a real loopback connect (accepted and refused).
 */
#include "http1/client.h"

#include "fake_transport.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* The session is large (the parsed head's field array): one per test, not on the stack. */
static struct moat_h1c c;
static struct fake_transport f;

static void setup(const struct moat_h1c_limits *lim)
{
    fake_init(&f);
    moat_h1c_init(&c, lim);
    fake_attach(&f, &c.tr);
}

static void teardown(void)
{
    moat_h1c_close(&c);
    fake_free(&f);
}

/* Queue a request head without a body (HEAD when `head`) and write it. */
static void ask(const char *method, const char *path, int keep_alive)
{
    int head = strcmp(method, "HEAD") == 0;
    struct moat_buf *b = moat_h1c_begin(&c, head);
    EXPECT(b != NULL);
    if (b == NULL) {
        return;
    }
    EXPECT(moat_ok(
        moat_h1_head_request(b, moat_slice_cstr(method), moat_slice_cstr(path), MOAT_SLICE_NULL)));
    EXPECT(moat_ok(moat_h1_head_field(b, MOAT_SLICE_LIT("Host"), MOAT_SLICE_LIT("origin.test"))));
    EXPECT(moat_ok(moat_h1c_head_end(&c, MOAT_H1_FRAME_NONE, 0, keep_alive)));
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT_INT(moat_h1c_queued(&c), 0);
}

/* Read the head, which must be there whole. */
static const struct moat_h1_resp *head_of(void)
{
    const struct moat_h1_resp *r = NULL;
    struct moat_err e = {0};
    moat_rc rc = moat_h1c_read_head(&c, &r, &e);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  read_head: %s\n", e.msg);
    }
    return r;
}

/* Read body pieces into out (NUL-terminated) until the session says anything but OK. */
static moat_rc body_into(char *out, size_t cap, size_t *len, size_t *pieces, struct moat_err *e)
{
    *len = 0;
    *pieces = 0;
    for (;;) {
        moat_slice p;
        moat_rc rc = moat_h1c_read_body(&c, &p, e);
        if (!moat_ok(rc)) {
            out[*len < cap ? *len : cap - 1] = '\0';
            return rc;
        }
        EXPECT(p.len > 0 && p.len <= MOAT_H1C_PIECE);
        if (*len + p.len < cap) {
            memcpy(out + *len, p.p, p.len);
        }
        *len += p.len;
        (*pieces)++;
    }
}

/* What was written to the origin, as a string. */
static const char *sent(void)
{
    return f.sent != NULL ? f.sent : "";
}

TEST_CASE(get_with_length_a_byte_at_a_time)
{
    setup(NULL);
    f.read_max = 1;
    ask("GET", "/a?b=c", 1);
    EXPECT_STR(sent(), "GET /a?b=c HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    const struct moat_h1_resp *r = NULL;
    EXPECT_INT(moat_h1c_read_head(&c, &r, NULL).kind, MOAT_E_AGAIN); /* nothing yet */
    EXPECT(r == NULL);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    r = head_of();
    EXPECT(r != NULL);
    if (r == NULL) {
        teardown();
        return;
    }
    EXPECT_INT(r->status, 200);
    EXPECT_SLICE(r->reason, "OK");
    const struct moat_field *xa = moat_field_find(r->fields, r->nfields, "x-a");
    EXPECT(xa != NULL && moat_slice_eq(xa->value, MOAT_SLICE_LIT("b")));
    EXPECT_INT(moat_h1c_done(&c), 0);
    /* The head's bytes as they came, and no byte read past them yet. */
    const char *raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n";
    EXPECT_SLICE(moat_h1c_head_bytes(&c), raw);
    EXPECT_INT(moat_h1c_received(&c), strlen(raw));
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "hello");
    EXPECT_INT(pieces, 5);                     /* one byte a read, handed out as it came */
    EXPECT(moat_h1c_head_bytes(&c).p == NULL); /* gone with the first body read */
    EXPECT_INT(moat_h1c_received(&c), strlen(raw) + 5);
    EXPECT_INT(moat_h1c_fault(&c)->why, MOAT_H1C_WHY_NONE);
    EXPECT_INT(moat_h1c_done(&c), 1);
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    moat_slice p;
    EXPECT_INT(moat_h1c_read_body(&c, &p, NULL).kind, MOAT_E_CLOSED); /* and again */
    teardown();
}

/* Feed `ans` in pieces of `step` bytes, reading whatever is due after each. */
static void drive(const char *ans, size_t step, const char *want_body, int want_reusable)
{
    setup(NULL);
    ask("GET", "/", 1);
    size_t total = strlen(ans), fed = 0;
    const struct moat_h1_resp *r = NULL;
    char body[256];
    size_t len = 0;
    moat_rc rc = MOAT_RC_OK;
    for (int guard = 0; guard < 10000; guard++) {
        struct moat_err e = {0};
        if (r == NULL) {
            rc = moat_h1c_read_head(&c, &r, &e);
            if (moat_ok(rc)) {
                continue;
            }
        } else {
            moat_slice p;
            rc = moat_h1c_read_body(&c, &p, &e);
            if (moat_ok(rc)) {
                EXPECT(p.len > 0);
                if (len + p.len < sizeof(body)) {
                    memcpy(body + len, p.p, p.len);
                }
                len += p.len;
                continue;
            }
        }
        if (rc.kind != MOAT_E_AGAIN) {
            if (rc.kind != MOAT_E_CLOSED) {
                fprintf(stderr, "  step %zu: %s\n", step, e.msg);
            }
            break;
        }
        if (fed == total) {
            break;
        }
        size_t n = total - fed < step ? total - fed : step;
        fake_feed(&f, ans + fed, n);
        fed += n;
    }
    EXPECT_INT(rc.kind, MOAT_E_CLOSED);
    body[len < sizeof(body) ? len : sizeof(body) - 1] = '\0';
    EXPECT_STR(body, want_body);
    EXPECT_INT(moat_h1c_reusable(&c), want_reusable);
    teardown();
}

TEST_CASE(chunked_answer_split_anywhere)
{
    const char *ans = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
    for (size_t step = 1; step <= strlen(ans); step++) {
        drive(ans, step, "hello 0123456789", 1);
    }
    /* and one byte a read, all of it there at once */
    setup(NULL);
    f.read_max = 1;
    ask("GET", "/", 1);
    fake_feed_str(&f, ans);
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->body == MOAT_H1_BODY_CHUNKED);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "hello 0123456789");
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    teardown();
}

TEST_CASE(length_answer_split_anywhere)
{
    const char *ans = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello, world";
    for (size_t step = 1; step <= strlen(ans); step++) {
        drive(ans, step, "hello, world", 1);
    }
}

TEST_CASE(close_delimited_answer)
{
    setup(NULL);
    ask("GET", "/", 1);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\n\r\nuntil the");
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->body == MOAT_H1_BODY_CLOSE);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_AGAIN);
    EXPECT_STR(body, "until the");
    fake_feed_str(&f, " end");
    fake_eof(&f);
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, " end");
    EXPECT_INT(moat_h1c_done(&c), 1);
    EXPECT_INT(moat_h1c_reusable(&c), 0); /* the close was the framing */
    teardown();
}

TEST_CASE(head_answer_has_no_body)
{
    setup(NULL);
    ask("HEAD", "/big", 1);
    EXPECT_STR(sent(), "HEAD /big HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->body == MOAT_H1_BODY_NONE);
    EXPECT(r != NULL && moat_field_find(r->fields, r->nfields, "content-length") != NULL);
    EXPECT_INT(moat_h1c_done(&c), 1);
    moat_slice p;
    EXPECT_INT(moat_h1c_read_body(&c, &p, NULL).kind, MOAT_E_CLOSED); /* not 1000 bytes */
    EXPECT_INT(p.len, 0);
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    teardown();
}

TEST_CASE(no_body_after_204_and_304)
{
    /* RFC 9112 §6.3: whatever the head says, these end at the head. */
    static const char *const answers[] = {
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        setup(NULL);
        ask("GET", "/", 1);
        fake_feed_str(&f, answers[i]);
        const struct moat_h1_resp *r = head_of();
        EXPECT(r != NULL && r->body == MOAT_H1_BODY_NONE);
        moat_slice p;
        EXPECT_INT(moat_h1c_read_body(&c, &p, NULL).kind, MOAT_E_CLOSED);
        EXPECT_INT(moat_h1c_reusable(&c), 1);
        teardown();
    }
    /* The five bytes a 204 "promised" are not its body: they make the connection unusable. */
    setup(NULL);
    ask("GET", "/", 1);
    fake_feed_str(&f, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello");
    EXPECT(head_of() != NULL);
    EXPECT_INT(moat_h1c_reusable(&c), 0);
    moat_slice p;
    EXPECT_INT(moat_h1c_read_body(&c, &p, NULL).kind, MOAT_E_CLOSED);
    EXPECT_INT(p.len, 0);
    EXPECT_INT(moat_h1c_reusable(&c), 0);
    teardown();
}

TEST_CASE(interim_answers_are_skipped)
{
    const char *ans = "HTTP/1.1 100 Continue\r\n\r\n"
                      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (size_t step = 1; step <= strlen(ans); step += 7) {
        drive(ans, step, "ok", 1);
    }
    setup(NULL);
    f.read_max = 1;
    ask("GET", "/", 1);
    fake_feed_str(&f, ans);
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->status == 200);
    EXPECT(r != NULL && moat_field_find(r->fields, r->nfields, "link") == NULL); /* 103's */
    teardown();

    /* An origin that never stops sending interim answers. */
    setup(NULL);
    ask("GET", "/", 1);
    for (int i = 0; i <= MOAT_H1C_MAX_INTERIM; i++) {
        fake_feed_str(&f, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    struct moat_err e = {0};
    EXPECT_INT(moat_h1c_read_head(&c, &r, &e).kind, MOAT_E_LIMIT);
    EXPECT_STR(e.msg, "the origin sent more than 16 interim (1xx) answers");
    teardown();
}

TEST_CASE(switching_protocols_is_returned_then_raw)
{
    setup(NULL);
    struct moat_buf *b = moat_h1c_begin(&c, 0);
    EXPECT(moat_ok(
        moat_h1_head_request(b, MOAT_SLICE_LIT("GET"), MOAT_SLICE_LIT("/ws"), MOAT_SLICE_NULL)));
    EXPECT(moat_ok(moat_h1_head_field(b, MOAT_SLICE_LIT("Upgrade"), MOAT_SLICE_LIT("websocket"))));
    EXPECT(moat_ok(moat_h1_head_field(b, MOAT_SLICE_LIT("Connection"), MOAT_SLICE_LIT("upgrade"))));
    EXPECT(moat_ok(moat_h1c_head_end(&c, MOAT_H1_FRAME_NONE, 0, 1)));
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    fake_feed_str(&f, "HTTP/1.1 100 Continue\r\n\r\n"
                      "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                      "Upgrade: websocket\r\n\r\n\x81\x02hi");
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->status == 101 && r->upgrade);
    char got[16];
    size_t len, pieces;
    EXPECT_INT(body_into(got, sizeof(got), &len, &pieces, NULL).kind, MOAT_E_AGAIN);
    EXPECT_INT(len, 4);
    EXPECT(memcmp(got, "\x81\x02hi", 4) == 0);
    fake_sent_reset(&f);
    EXPECT_INT(moat_h1c_body_room(&c), MOAT_H1C_PIECE);
    EXPECT(moat_ok(moat_h1c_body(&c, "\x81\x00", 2))); /* raw: no chunk framing */
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT_INT(f.sent_len, 2);
    fake_eof(&f);
    EXPECT_INT(body_into(got, sizeof(got), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_INT(moat_h1c_reusable(&c), 0);
    teardown();
}

/* Start a request with a body: "POST /up" with the given framing. */
static void post(enum moat_h1_frame frame, uint64_t length)
{
    struct moat_buf *b = moat_h1c_begin(&c, 0);
    EXPECT(b != NULL);
    EXPECT(moat_ok(
        moat_h1_head_request(b, MOAT_SLICE_LIT("POST"), MOAT_SLICE_LIT("/up"), MOAT_SLICE_NULL)));
    EXPECT(moat_ok(moat_h1_head_field(b, MOAT_SLICE_LIT("Host"), MOAT_SLICE_LIT("origin.test"))));
    EXPECT(moat_ok(moat_h1c_head_end(&c, frame, length, 1)));
}

TEST_CASE(post_with_length)
{
    setup(NULL);
    post(MOAT_H1_FRAME_LENGTH, 11);
    EXPECT_INT(moat_h1c_body_room(&c), 11); /* never more than the length still open */
    EXPECT(moat_ok(moat_h1c_body(&c, "hello ", 6)));
    EXPECT_INT(moat_h1c_body_room(&c), 5);
    EXPECT_INT(moat_h1c_body(&c, "world!", 6).kind, MOAT_E_INTERNAL); /* past the length */
    EXPECT(moat_ok(moat_h1c_body(&c, "world", 5)));
    EXPECT_INT(moat_h1c_body(&c, "x", 1).kind, MOAT_E_INTERNAL);
    EXPECT(moat_ok(moat_h1c_body_end(&c)));
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT_STR(sent(), "POST /up HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 11\r\n\r\n"
                       "hello world");
    fake_feed_str(&f, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->status == 201);
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    teardown();

    /* A body that ends before its length cannot be ended: the origin would wait for the rest. */
    setup(NULL);
    post(MOAT_H1_FRAME_LENGTH, 11);
    EXPECT(moat_ok(moat_h1c_body(&c, "hello", 5)));
    EXPECT_INT(moat_h1c_body_end(&c).kind, MOAT_E_INTERNAL);
    teardown();

    /* No body declared: none taken. */
    setup(NULL);
    ask("GET", "/", 1);
    EXPECT_INT(moat_h1c_body_room(&c), 0);
    EXPECT_INT(moat_h1c_body(&c, "x", 1).kind, MOAT_E_INTERNAL);
    EXPECT(moat_ok(moat_h1c_body_end(&c)));
    teardown();
}

TEST_CASE(post_rechunked)
{
    setup(NULL);
    post(MOAT_H1_FRAME_CHUNKED, 0);
    EXPECT(moat_ok(moat_h1c_body(&c, "hello", 5)));
    EXPECT(moat_ok(moat_h1c_body(&c, "", 0))); /* no zero-size chunk before the end */
    EXPECT(moat_ok(moat_h1c_body(&c, " world, and more", 16)));
    EXPECT(moat_ok(moat_h1c_body_end(&c)));
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT_STR(sent(),
               "POST /up HTTP/1.1\r\nHost: origin.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n10\r\n world, and more\r\n0\r\n\r\n");
    EXPECT_INT(moat_h1c_body(&c, "x", 1).kind, MOAT_E_INTERNAL); /* after the end */
    teardown();
}

TEST_CASE(trailers_both_ways)
{
    setup(NULL);
    post(MOAT_H1_FRAME_CHUNKED, 0);
    EXPECT(moat_ok(moat_h1c_body(&c, "hi", 2)));
    struct moat_buf t;
    moat_buf_init(&t, 256);
    EXPECT(moat_ok(moat_buf_append(&t, "X-Sum: 7\r\n", 10)));
    EXPECT(moat_ok(moat_h1c_body_end_trailers(&c, &t)));
    moat_buf_clear(&t);
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT(strstr(sent(), "\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 7\r\n\r\n") != NULL);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "1\r\nz\r\n0\r\nX-Digest: d\r\nX-Two: 2\r\n\r\n");
    head_of();
    EXPECT(moat_h1c_trailers(&c) == NULL); /* not before the body is complete */
    char body[16];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "z");
    static const char want[] = "X-Digest: d\r\nX-Two: 2\r\n";
    const struct moat_buf *tr = moat_h1c_trailers(&c);
    EXPECT(tr != NULL && moat_buf_len(tr) == sizeof(want) - 1 &&
           memcmp(moat_buf_rdptr(tr), want, sizeof(want) - 1) == 0);
    EXPECT(moat_h1c_reusable(&c));
    moat_h1c_reset(&c);
    EXPECT(moat_h1c_trailers(&c) == NULL); /* the next answer starts without them */
    teardown();
}

TEST_CASE(back_pressure)
{
    setup(NULL);
    f.write_room = 10;
    post(MOAT_H1_FRAME_CHUNKED, 0);
    static char body[100000];
    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (char)('a' + i % 26);
    }
    size_t given = 0, most = 0;
    int agains = 0;
    while (given < sizeof(body)) {
        size_t room = moat_h1c_body_room(&c);
        if (room == 0) {
            moat_rc rc = moat_h1c_flush(&c, NULL);
            if (rc.kind == MOAT_E_AGAIN) {
                agains++;
                f.write_room = 7000; /* the origin takes a little more */
                continue;
            }
            EXPECT(moat_ok(rc));
            continue;
        }
        size_t n = sizeof(body) - given < room ? sizeof(body) - given : room;
        EXPECT(moat_ok(moat_h1c_body(&c, body + given, n)));
        EXPECT_INT(moat_h1c_body(&c, body, moat_h1c_body_room(&c) + 1).kind, MOAT_E_LIMIT);
        given += n;
        if (moat_h1c_queued(&c) > most) {
            most = moat_h1c_queued(&c);
        }
    }
    EXPECT(moat_ok(moat_h1c_body_end(&c)));
    EXPECT_INT(moat_h1c_flush(&c, NULL).kind, MOAT_E_AGAIN);
    f.write_room = SIZE_MAX;
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT(agains > 0);
    EXPECT(most <= MOAT_H1C_PIECE + 64); /* a piece and its framing, never the whole body */
    /* What the origin got is the head and the body, re-chunked. */
    struct moat_h1_req rq;
    moat_h1_req_init(&rq);
    EXPECT_INT(moat_h1_parse_request(&rq, f.sent, f.sent_len, NULL), MOAT_H1_DONE);
    EXPECT(rq.body == MOAT_H1_BODY_CHUNKED);
    struct moat_h1_chunked dec;
    moat_h1_chunked_init(&dec, 0, 0);
    size_t consumed = 0, produced = 0;
    EXPECT_INT(moat_h1_chunked_decode(&dec, f.sent + rq.head_len, f.sent_len - rq.head_len,
                                      &consumed, &produced),
               MOAT_H1_DONE);
    EXPECT_INT(produced, sizeof(body));
    EXPECT(memcmp(f.sent + rq.head_len, body, sizeof(body)) == 0);
    EXPECT_INT(consumed, f.sent_len - rq.head_len);
    teardown();
}

TEST_CASE(two_requests_on_one_connection)
{
    setup(NULL);
    ask("GET", "/one", 1);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    EXPECT(head_of() != NULL);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "one");
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    const char *in_storage = c._in.base, *out_storage = c._out.base;
    moat_h1c_reset(&c);
    EXPECT(moat_h1c_begin(&c, 0) != NULL);
    EXPECT(moat_h1c_begin(&c, 0) == NULL); /* one request at a time */
    moat_h1c_reset(&c);
    fake_sent_reset(&f);
    ask("GET", "/two", 1);
    EXPECT_STR(sent(), "GET /two HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n");
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->status == 200);
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "two");
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    EXPECT(c._in.base == in_storage && c._out.base == out_storage); /* nothing allocated */
    moat_h1c_reset(&c);
    moat_h1c_idle(&c); /* parked: the buffers go back */
    EXPECT(c._in.base == NULL && c._out.base == NULL);
    fake_sent_reset(&f);
    ask("GET", "/three", 1);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree");
    EXPECT(head_of() != NULL);
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "three");
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    EXPECT_INT(f.closed, 0);
    moat_h1c_close(&c);
    EXPECT_INT(f.closed, 1);
    moat_h1c_close(&c); /* twice is harmless */
    EXPECT_INT(f.closed, 1);
    fake_free(&f);
}

/* One GET answered with `ans` (complete), read to its end; is the connection reusable? */
static int reusable_after(const char *ans, int keep_alive, const char *want_body)
{
    setup(NULL);
    ask("GET", "/", keep_alive);
    fake_feed_str(&f, ans);
    EXPECT(head_of() != NULL);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, want_body);
    int reusable = moat_h1c_reusable(&c);
    teardown();
    return reusable;
}

TEST_CASE(when_a_connection_is_not_reusable)
{
    EXPECT_INT(reusable_after("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, "ok"), 1);
    EXPECT_INT(reusable_after("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                              1, "ok"),
               0);
    EXPECT_INT(reusable_after("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, "ok"), 0);
    EXPECT_INT(reusable_after("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, "ok"), 0);
    EXPECT_INT(reusable_after("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: "
                              "2\r\n\r\nok",
                              1, "ok"),
               1);
    /* Bytes past the length are not body, and an origin that sends them is not trusted with a
     * second request (the next answer could be them). */
    EXPECT_INT(reusable_after("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", 1, "ok"), 0);
    EXPECT_INT(reusable_after("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
                              1, "ok"),
               0);
    EXPECT_INT(reusable_after("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1, ""), 1);

    /* Close-delimited. */
    setup(NULL);
    ask("GET", "/", 1);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\n\r\nall");
    fake_eof(&f);
    EXPECT(head_of() != NULL);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "all");
    EXPECT_INT(moat_h1c_reusable(&c), 0);
    teardown();

    /* Answered before the request's body was all sent (an early 413). */
    setup(NULL);
    post(MOAT_H1_FRAME_LENGTH, 100);
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    fake_feed_str(&f, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
    const struct moat_h1_resp *r = head_of();
    EXPECT(r != NULL && r->status == 413);
    EXPECT_INT(moat_h1c_done(&c), 1);
    EXPECT_INT(moat_h1c_reusable(&c), 0);
    teardown();

    /* The answer is not read to its end. */
    setup(NULL);
    ask("GET", "/", 1);
    fake_feed_str(&f, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no");
    EXPECT(head_of() != NULL);
    EXPECT_INT(moat_h1c_reusable(&c), 0);
    teardown();
}

/* One GET answered with `ans`, then the peer's close when `eof`; the failure's kind and words. */
static moat_rc failure_of(const char *ans, size_t ans_len, int eof, char *words, size_t cap)
{
    setup(NULL);
    ask("GET", "/", 1);
    fake_feed(&f, ans, ans_len);
    if (eof) {
        fake_eof(&f);
    }
    struct moat_err e = {0};
    const struct moat_h1_resp *r = NULL;
    moat_rc rc = moat_h1c_read_head(&c, &r, &e);
    if (moat_ok(rc)) {
        char body[64];
        size_t len, pieces;
        rc = body_into(body, sizeof(body), &len, &pieces, &e);
    }
    snprintf(words, cap, "%s", e.msg);
    if (rc.kind != MOAT_E_AGAIN && rc.kind != MOAT_E_CLOSED) {
        /* A failed session says so again, whatever is asked of it. */
        moat_slice p;
        EXPECT_INT(moat_h1c_read_body(&c, &p, NULL).kind, rc.kind);
        EXPECT_INT(moat_h1c_read_head(&c, &r, NULL).kind, rc.kind);
        EXPECT_INT(moat_h1c_reusable(&c), 0);
    }
    teardown();
    return rc;
}

#define FAILS(lit, eof, words) failure_of((lit), sizeof(lit) - 1, (eof), (words), sizeof(words))

TEST_CASE(failures_and_their_words)
{
    char w[600];
    EXPECT_INT(FAILS("", 1, w).kind, MOAT_E_CLOSED);
    EXPECT_STR(w, "the origin closed without answering");

    EXPECT_INT(FAILS("SSH-2.0-OpenSSH\r\n", 1, w).kind, MOAT_E_PEER);
    EXPECT_STR(w, "the origin sent 17 bytes that are not an HTTP/1.1 answer head "
                  "(\"SSH-2.0-OpenSSH..\"), then closed");
    EXPECT_INT(FAILS("SSH-2.0-OpenSSH_9.2 not http at all, really not at all\r\n", 1, w).kind,
               MOAT_E_PEER);
    EXPECT_STR(w, "the origin sent 56 bytes that are not an HTTP/1.1 answer head "
                  "(\"SSH-2.0-OpenSSH_9.2 not http at all, rea\"...), then closed");
    EXPECT_INT(FAILS("\x15\x03\x03\x00\x02\x02\x46", 1, w).kind, MOAT_E_PEER);
    EXPECT_STR(w, "the origin sent 7 bytes that are not an HTTP/1.1 answer head (\"......F\"), "
                  "then closed (a TLS origin? use proxy https://)");
    /* cut in its head */
    EXPECT_INT(FAILS("HTTP/1.1 200 OK\r\nContent-", 1, w).kind, MOAT_E_PEER);
    EXPECT_STR(w, "the origin sent 25 bytes that are not an HTTP/1.1 answer head "
                  "(\"HTTP/1.1 200 OK..Content-\"), then closed");

    EXPECT_INT(FAILS("HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n", 0, w).kind, MOAT_E_PEER);
    EXPECT(strncmp(w, "the origin's answer is not valid HTTP/1.1: ", 43) == 0);
    EXPECT_STR(w, "the origin's answer is not valid HTTP/1.1: whitespace before colon at byte 20");
    EXPECT_INT(FAILS("HTTP/1.1 200 OK\nContent-Length: 0\n\n", 0, w).kind, MOAT_E_PEER);
    EXPECT(strncmp(w, "the origin's answer is not valid HTTP/1.1: ", 43) == 0);
    EXPECT_INT(
        FAILS("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 0, w)
            .kind,
        MOAT_E_PEER);
    EXPECT(strstr(w, "both Transfer-Encoding and Content-Length") != NULL);

    EXPECT_INT(FAILS("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", 1, w).kind, MOAT_E_PEER);
    EXPECT_STR(w, "the origin cut its answer short");
    EXPECT_INT(
        FAILS("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 1, w).kind,
        MOAT_E_PEER);
    EXPECT_STR(w, "the origin cut its answer short");
    EXPECT_INT(FAILS("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, w).kind,
               MOAT_E_PEER);
    EXPECT(strncmp(w, "malformed chunked answer", 24) == 0);
    EXPECT_INT(
        FAILS("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 0, w).kind,
        MOAT_E_PEER);
    EXPECT(strncmp(w, "malformed chunked answer", 24) == 0);
}

/* What a caller that words failures itself is told for `ans` (then the peer's close when
 * `eof`); every byte fed must have been read. */
static struct moat_h1c_fault fault_of(const char *ans, size_t ans_len, int eof)
{
    setup(NULL);
    ask("GET", "/", 1);
    fake_feed(&f, ans, ans_len);
    if (eof) {
        fake_eof(&f);
    }
    const struct moat_h1_resp *r = NULL;
    if (moat_ok(moat_h1c_read_head(&c, &r, NULL))) {
        char body[64];
        size_t len, pieces;
        (void)body_into(body, sizeof(body), &len, &pieces, NULL);
    }
    EXPECT_INT(moat_h1c_received(&c), ans_len);
    struct moat_h1c_fault out = *moat_h1c_fault(&c);
    teardown();
    return out;
}

#define FAULT(lit, eof) fault_of((lit), sizeof(lit) - 1, (eof))

TEST_CASE(faults_told_apart)
{
    struct moat_h1c_fault x = FAULT("", 1);
    EXPECT_INT(x.why, MOAT_H1C_WHY_NO_ANSWER);
    EXPECT_INT(x.io, MOAT_E_CLOSED);
    x = FAULT("HTTP/1.1 200 OK\r\nContent-", 1);
    EXPECT_INT(x.why, MOAT_H1C_WHY_HEAD_CUT);
    EXPECT_INT(x.io, MOAT_E_CLOSED);
    EXPECT_INT(x.head_bytes, 25);
    /* An interim answer before the cut is not part of the head that was cut. */
    x = FAULT("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nCont", 1);
    EXPECT_INT(x.why, MOAT_H1C_WHY_HEAD_CUT);
    EXPECT_INT(x.head_bytes, 21);
    x = FAULT("HTTP/1.1 200 OK\r\nBad Field: x\r\n\r\n", 0);
    EXPECT_INT(x.why, MOAT_H1C_WHY_HEAD_REFUSED);
    EXPECT(x.parse != MOAT_H1_DONE && x.parse != MOAT_H1_AGAIN);
    EXPECT_INT(x.parse_pos, 20);
    EXPECT_STR(x.parse_what ? x.parse_what : "", "whitespace before colon");
    x = FAULT("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", 1);
    EXPECT_INT(x.why, MOAT_H1C_WHY_BODY_CUT);
    EXPECT_INT(x.io, MOAT_E_CLOSED);
    x = FAULT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0);
    EXPECT_INT(x.why, MOAT_H1C_WHY_CHUNKED_REFUSED);
    EXPECT(x.parse_what != NULL);
    x = FAULT("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", 1);
    EXPECT_INT(x.why, MOAT_H1C_WHY_NONE); /* a close-delimited body ended by the close */
}

TEST_CASE(heads_too_large)
{
    /* 40 fields of 2 KiB: 80 KiB of head, over the 64 KiB default. */
    static char big[90000];
    size_t n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 40; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X-Fill-%02d: ", i);
        memset(big + n, 'a', 2036);
        n += 2036;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    }
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    char w[600];
    EXPECT_INT(failure_of(big, n, 0, w, sizeof(w)).kind, MOAT_E_LIMIT);
    EXPECT_STR(w, "the origin's answer head is too large (over 64 KiB)");
    EXPECT_INT(failure_of(big, n, 1, w, sizeof(w)).kind, MOAT_E_LIMIT); /* close changes nothing */
    EXPECT_STR(w, "the origin's answer head is too large (over 64 KiB)");

    /* 300 small fields: the count, not the bytes. */
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "A%d: b\r\n", i);
    }
    n += (size_t)snprintf(big + n, sizeof(big) - n, "Content-Length: 0\r\n\r\n");
    EXPECT_INT(failure_of(big, n, 0, w, sizeof(w)).kind, MOAT_E_LIMIT);
    EXPECT_STR(w, "the origin's answer head is too large (too many fields)");

    /* A smaller limit, a byte at a time; and in bytes when it is no whole number of KiB. */
    struct moat_h1c_limits lim = {.max_head_bytes = 1024};
    const char *head = "HTTP/1.1 200 OK\r\nX: ";
    for (size_t max = 1024; max <= 1025; max++) {
        lim.max_head_bytes = max;
        setup(&lim);
        f.read_max = 1;
        ask("GET", "/", 1);
        fake_feed_str(&f, head);
        for (int i = 0; i < 1100; i++) {
            fake_feed_str(&f, "a");
        }
        const struct moat_h1_resp *r;
        struct moat_err e = {0};
        EXPECT_INT(moat_h1c_read_head(&c, &r, &e).kind, MOAT_E_LIMIT);
        EXPECT_STR(e.msg, max == 1024 ? "the origin's answer head is too large (over 1 KiB)"
                                      : "the origin's answer head is too large (over 1025 bytes)");
        EXPECT(c._in.cap <= max + MOAT_H1C_PIECE);
        teardown();
    }
}

TEST_CASE(body_limit)
{
    struct moat_h1c_limits lim = {.max_body_bytes = 4};
    static const char *const answers[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\nhello",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        setup(&lim);
        ask("GET", "/", 1);
        fake_feed_str(&f, answers[i]);
        fake_eof(&f);
        struct moat_err e = {0};
        const struct moat_h1_resp *r = NULL;
        moat_rc rc = moat_h1c_read_head(&c, &r, &e);
        if (moat_ok(rc)) {
            char body[64];
            size_t len, pieces;
            rc = body_into(body, sizeof(body), &len, &pieces, &e);
            EXPECT_INT(len, 0);
        }
        EXPECT_INT(rc.kind, MOAT_E_LIMIT);
        EXPECT_STR(e.msg, "the origin's answer is larger than 4 bytes");
        teardown();
    }
    /* At the limit is fine. */
    setup(&lim);
    ask("GET", "/", 1);
    fake_feed_str(&f,
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhell\r\n0\r\n\r\n");
    EXPECT(head_of() != NULL);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "hell");
    teardown();
}

TEST_CASE(big_body_comes_in_pieces)
{
    setup(NULL);
    ask("GET", "/", 1);
    static char ans[100000];
    int n = snprintf(ans, sizeof(ans), "HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n");
    memset(ans + n, 'z', 50000);
    fake_feed(&f, ans, (size_t)n + 50000);
    EXPECT(head_of() != NULL);
    size_t total = 0;
    moat_slice p;
    moat_rc rc;
    while (moat_ok(rc = moat_h1c_read_body(&c, &p, NULL))) {
        EXPECT(p.len > 0 && p.len <= MOAT_H1C_PIECE);
        EXPECT(p.p[0] == 'z' && p.p[p.len - 1] == 'z');
        total += p.len;
    }
    EXPECT_INT(rc.kind, MOAT_E_CLOSED);
    EXPECT_INT(total, 50000);
    EXPECT(c._in.cap <= 64 * 1024 + MOAT_H1C_PIECE);
    EXPECT_INT(moat_h1c_reusable(&c), 1);
    teardown();
}

/* A read that fails the way TLS does, with OpenSSL's reason for the alert. */
static moat_rc tls_alert_read(struct moat_transport *t, void *buf, size_t len, size_t *n)
{
    *n = 0;
    t->fail_reason = "tlsv13 alert certificate required";
    return moat_rc_of(MOAT_E_TLS);
}

TEST_CASE(tls_failure_words)
{
    setup(NULL);
    static struct moat_transport_ops ops;
    ops = fake_ops;
    ops.read = tls_alert_read;
    c.tr.ops = &ops;
    ask("GET", "/", 1);
    const struct moat_h1_resp *r;
    struct moat_err e = {0};
    EXPECT_INT(moat_h1c_read_head(&c, &r, &e).kind, MOAT_E_TLS);
    EXPECT_STR(e.msg, "TLS failure from the origin: tlsv13 alert certificate required (does the "
                      "origin require a client certificate? see proxy_cert)");
    EXPECT_INT(moat_h1c_fault(&c)->why, MOAT_H1C_WHY_NO_ANSWER);
    EXPECT_INT(moat_h1c_fault(&c)->io, MOAT_E_TLS);
    teardown();
}

TEST_CASE(write_failure_words)
{
    setup(NULL);
    f.fail_writes = 1;
    struct moat_buf *b = moat_h1c_begin(&c, 0);
    EXPECT(moat_ok(
        moat_h1_head_request(b, MOAT_SLICE_LIT("GET"), MOAT_SLICE_LIT("/"), MOAT_SLICE_NULL)));
    EXPECT(moat_ok(moat_h1c_head_end(&c, MOAT_H1_FRAME_NONE, 0, 1)));
    struct moat_err e = {0};
    EXPECT_INT(moat_h1c_flush(&c, &e).kind, MOAT_E_CLOSED);
    EXPECT_STR(e.msg, "the origin closed while taking the request");
    teardown();
}

TEST_CASE(head_written_by_the_caller)
{
    /* The caller's own framing and blank line go out as written; the body is held to them. */
    setup(NULL);
    struct moat_buf *b = moat_h1c_begin(&c, 0);
    EXPECT(b != NULL);
    const char *head = "POST /f HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\nX: y\r\n\r\n";
    EXPECT(moat_ok(moat_buf_append(b, head, strlen(head))));
    EXPECT(moat_ok(moat_h1c_head_written(&c, MOAT_H1_FRAME_LENGTH, 3, 0)));
    EXPECT_INT(moat_h1c_body_room(&c), 3);
    EXPECT(moat_ok(moat_h1c_body(&c, "abc", 3)));
    EXPECT_INT(moat_h1c_body(&c, "d", 1).kind, MOAT_E_INTERNAL); /* past the length */
    EXPECT(moat_ok(moat_h1c_body_end(&c)));
    EXPECT(moat_ok(moat_h1c_flush(&c, NULL)));
    EXPECT_STR(sent(),
               "POST /f HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\nX: y\r\n\r\nabc");
    EXPECT_INT(moat_h1c_head_written(&c, MOAT_H1_FRAME_NONE, 0, 0).kind,
               MOAT_E_INTERNAL); /* twice */
    teardown();
}

TEST_CASE(request_head_bounded)
{
    struct moat_h1c_limits lim = {.max_head_bytes = 1024};
    setup(&lim);
    struct moat_buf *b = moat_h1c_begin(&c, 0);
    EXPECT(moat_ok(
        moat_h1_head_request(b, MOAT_SLICE_LIT("GET"), MOAT_SLICE_LIT("/"), MOAT_SLICE_NULL)));
    static char v[20000];
    memset(v, 'v', sizeof(v));
    EXPECT_INT(moat_h1_head_field(b, MOAT_SLICE_LIT("X"), moat_slice_of(v, sizeof(v))).kind,
               MOAT_E_LIMIT);
    EXPECT(moat_h1c_queued(&c) < 1024 + MOAT_H1C_PIECE); /* bounded; the caller closes now */
    teardown();

    setup(NULL);
    EXPECT_INT(moat_h1c_head_end(&c, MOAT_H1_FRAME_NONE, 0, 1).kind,
               MOAT_E_INTERNAL); /* no begin */
    ask("GET", "/", 1);
    EXPECT_INT(moat_h1c_head_end(&c, MOAT_H1_FRAME_NONE, 0, 1).kind, MOAT_E_INTERNAL); /* twice */
    teardown();
}

/* ---- a real connection ------------------------------------------------------------------ */

/* Wait until fd is ready for `events`, at most 5 s. */
static int wait_for(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    return poll(&p, 1, 5000) == 1;
}

TEST_CASE(connect_over_loopback)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    EXPECT_INT(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    EXPECT_INT(listen(ls, 4), 0);
    EXPECT_INT(getsockname(ls, (struct sockaddr *)&a, &al), 0);

    moat_h1c_init(&c, NULL);
    struct moat_err e = {0};
    EXPECT(moat_ok(moat_h1c_connect(&c, (struct sockaddr *)&a, al, &e)));
    EXPECT(c.tr.fd >= 0);
    EXPECT(moat_transport_is_plain(&c.tr));
    EXPECT_INT(moat_h1c_connect(&c, (struct sockaddr *)&a, al, NULL).kind, MOAT_E_INTERNAL);
    EXPECT(wait_for(c.tr.fd, POLLOUT));
    EXPECT(moat_ok(moat_h1c_ready(&c, &e)));
    EXPECT(moat_ok(moat_h1c_ready(&c, &e))); /* once connected, stays so */

    int peer = accept(ls, NULL, NULL);
    EXPECT(peer >= 0);
    ask("GET", "/live", 1);
    char got[256] = {0};
    EXPECT(wait_for(peer, POLLIN));
    ssize_t n = recv(peer, got, sizeof(got) - 1, 0);
    EXPECT(n > 0);
    EXPECT_STR(got, "GET /live HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    const char *ans = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlive";
    EXPECT_INT(send(peer, ans, strlen(ans), 0), (ssize_t)strlen(ans));
    const struct moat_h1_resp *r = NULL;
    moat_rc rc;
    while ((rc = moat_h1c_read_head(&c, &r, &e)).kind == MOAT_E_AGAIN) {
        EXPECT(wait_for(c.tr.fd, POLLIN));
    }
    EXPECT_INT(rc.kind, MOAT_OK);
    char body[64];
    size_t len, pieces;
    EXPECT_INT(body_into(body, sizeof(body), &len, &pieces, NULL).kind, MOAT_E_CLOSED);
    EXPECT_STR(body, "live");
    EXPECT_INT(moat_h1c_reusable(&c), 1);

    /* The origin goes away while the connection is parked: the next answer never comes. */
    moat_h1c_reset(&c);
    close(peer);
    ask("GET", "/again", 1);
    while ((rc = moat_h1c_read_head(&c, &r, &e)).kind == MOAT_E_AGAIN) {
        EXPECT(wait_for(c.tr.fd, POLLIN));
    }
    EXPECT(rc.kind == MOAT_E_CLOSED || rc.kind == MOAT_E_IO);
    EXPECT_STR(e.msg, "the origin closed without answering");
    moat_h1c_close(&c);
    EXPECT_INT(c.tr.fd, -1);
    close(ls);
}

TEST_CASE(connect_refused)
{
    /* A port nobody listens on: bound, then closed. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    EXPECT_INT(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    EXPECT_INT(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);

    moat_h1c_init(&c, NULL);
    struct moat_err e = {0};
    moat_rc rc = moat_h1c_connect(&c, (struct sockaddr *)&a, al, &e);
    if (moat_ok(rc)) {
        EXPECT(wait_for(c.tr.fd, POLLOUT));
        rc = moat_h1c_ready(&c, &e);
    } else {
        EXPECT_INT(c.tr.fd, -1); /* nothing left open */
    }
    EXPECT_INT(rc.kind, MOAT_E_IO);
    EXPECT_STR(e.msg, "cannot connect: Connection refused");
    EXPECT_INT(e.sys_errno, ECONNREFUSED);
    moat_h1c_close(&c);
    moat_h1c_close(&c);
}

int main(void)
{
    RUN(get_with_length_a_byte_at_a_time);
    RUN(chunked_answer_split_anywhere);
    RUN(length_answer_split_anywhere);
    RUN(close_delimited_answer);
    RUN(head_answer_has_no_body);
    RUN(no_body_after_204_and_304);
    RUN(interim_answers_are_skipped);
    RUN(switching_protocols_is_returned_then_raw);
    RUN(post_with_length);
    RUN(post_rechunked);
    RUN(trailers_both_ways);
    RUN(back_pressure);
    RUN(two_requests_on_one_connection);
    RUN(when_a_connection_is_not_reusable);
    RUN(failures_and_their_words);
    RUN(faults_told_apart);
    RUN(heads_too_large);
    RUN(body_limit);
    RUN(big_body_comes_in_pieces);
    RUN(tls_failure_words);
    RUN(write_failure_words);
    RUN(head_written_by_the_caller);
    RUN(request_head_bounded);
    RUN(connect_over_loopback);
    RUN(connect_refused);
    TEST_MAIN_END();
}
