/*
 * test_write.c: the HTTP/1.1 head and chunk writer (http1/write.c) and the reason table
 * (http/status.c): exact bytes for every framing and connection choice, and heads that the
 * parser of http1/parse.c reads back the same.
 */
#include "http/status.h"
#include "http1/parse.h"
#include "http1/write.h"
#include "test.h"

#include <string.h>

static struct moat_buf fresh(void)
{
    struct moat_buf b;
    moat_buf_init(&b, 4096);
    return b;
}

static int ends_with(const struct moat_buf *b, const char *lit)
{
    size_t n = strlen(lit), len = moat_buf_len(b);
    return len >= n && memcmp(moat_buf_rdptr(b) + len - n, lit, n) == 0;
}

TEST_CASE(status_line_and_date)
{
    struct moat_buf b = fresh();
    EXPECT(moat_ok(moat_h1_head_begin(&b, 404, 784111777, 1)));
    EXPECT_INT(moat_buf_len(&b), strlen("HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 "
                                        "GMT\r\nServer: moat\r\n"));
    EXPECT(
        memcmp(moat_buf_rdptr(&b),
               "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: moat\r\n",
               moat_buf_len(&b)) == 0);
    moat_buf_clear(&b);
    b = fresh();
    EXPECT(moat_ok(moat_h1_head_begin(&b, 7, 0, 0)));
    EXPECT(memcmp(moat_buf_rdptr(&b), "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0);
    EXPECT(ends_with(&b, "GMT\r\n"));
    moat_buf_clear(&b);
}

TEST_CASE(framing_and_connection)
{
    struct {
        enum moat_h1_frame frame;
        uint64_t len;
        enum moat_h1_conn conn;
        const char *want;
    } cases[] = {
        {MOAT_H1_FRAME_LENGTH, 0, MOAT_H1_CONN_DEFAULT, "Content-Length: 0\r\n\r\n"},
        {MOAT_H1_FRAME_LENGTH, 18446744073709551615ULL, MOAT_H1_CONN_CLOSE,
         "Content-Length: 18446744073709551615\r\nConnection: close\r\n\r\n"},
        {MOAT_H1_FRAME_CHUNKED, 5, MOAT_H1_CONN_KEEP_ALIVE,
         "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"},
        {MOAT_H1_FRAME_NONE, 99, MOAT_H1_CONN_DEFAULT, "\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct moat_buf b = fresh();
        EXPECT(moat_ok(moat_h1_head_end(&b, cases[i].frame, cases[i].len, cases[i].conn)));
        EXPECT_INT(moat_buf_len(&b), strlen(cases[i].want));
        EXPECT(memcmp(moat_buf_rdptr(&b), cases[i].want, moat_buf_len(&b)) == 0);
        moat_buf_clear(&b);
    }
}

TEST_CASE(request_head_parses_back)
{
    struct moat_buf b = fresh();
    EXPECT(moat_ok(moat_h1_head_request(&b, MOAT_SLICE_LIT("POST"), MOAT_SLICE_LIT("/up"),
                                        MOAT_SLICE_LIT("a=1&b"))));
    EXPECT(moat_ok(moat_h1_head_field(&b, MOAT_SLICE_LIT("Host"), MOAT_SLICE_LIT("o.test:81"))));
    EXPECT(moat_ok(moat_h1_head_end(&b, MOAT_H1_FRAME_CHUNKED, 0, MOAT_H1_CONN_CLOSE)));
    struct moat_h1_req r;
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    moat_h1_req_init(&r);
    EXPECT_INT(moat_h1_parse_request(&r, moat_buf_rdptr(&b), moat_buf_len(&b), &lim), MOAT_H1_DONE);
    EXPECT_SLICE(r.path, "/up");
    EXPECT_SLICE(r.query, "a=1&b");
    EXPECT_SLICE(r.host, "o.test:81");
    EXPECT_INT(r.body, MOAT_H1_BODY_CHUNKED);
    EXPECT(!r.keep_alive);
    moat_buf_clear(&b);
}

TEST_CASE(chunks)
{
    struct moat_buf b = fresh();
    EXPECT(moat_ok(moat_h1_chunk(&b, "", 0)));
    EXPECT_INT(moat_buf_len(&b), 0);
    char big[300];
    memset(big, 'z', sizeof(big));
    EXPECT(moat_ok(moat_h1_chunk(&b, "hello", 5)));
    EXPECT(moat_ok(moat_h1_chunk(&b, big, sizeof(big))));
    EXPECT(moat_ok(moat_h1_chunk_last(&b)));
    EXPECT(memcmp(moat_buf_rdptr(&b), "5\r\nhello\r\n12c\r\n", 15) == 0);
    EXPECT(ends_with(&b, "z\r\n0\r\n\r\n"));
    EXPECT_INT(moat_buf_len(&b), 10 + 5 + 300 + 2 + 5);
    moat_buf_clear(&b);
}

TEST_CASE(reasons)
{
    EXPECT_STR(moat_http_reason(200), "OK");
    EXPECT_STR(moat_http_reason(421), "Misdirected Request");
    EXPECT_STR(moat_http_reason(413), "Content Too Large");
    EXPECT_STR(moat_http_reason(299), "Success");
    EXPECT_STR(moat_http_reason(599), "Server Error");
    EXPECT_STR(moat_http_reason(600), "Unknown");
    EXPECT(moat_http_status_bodyless(304) && moat_http_status_bodyless(101));
    EXPECT(!moat_http_status_bodyless(200));
}

int main(void)
{
    RUN(status_line_and_date);
    RUN(framing_and_connection);
    RUN(request_head_parses_back);
    RUN(chunks);
    RUN(reasons);
    TEST_MAIN_END();
}
