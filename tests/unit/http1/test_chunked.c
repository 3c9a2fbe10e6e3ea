/*
 * test_chunked.c: the in-place chunked decoder, fed every input whole, split at every position,
 * split at every pair of positions (short inputs) and one byte at a time. Each piece is copied to
 * an exact-size allocation, so ASan catches a read or write past the piece.
 */
#include "http1/chunked.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#define R(s) s, sizeof(s) - 1

/* What one run over a whole input produced. */
struct run {
    enum moat_h1_status st;
    char data[4096];
    size_t data_len;
    size_t end; /* DONE: offset after the body; error: offset of the offending byte */
    uint64_t total;
};

/*
 * Decode `in` delivered in pieces ending at cuts[0] < cuts[1] < ... (then the rest). The data kept
 * between calls is moved to the accumulator, as a caller moving it to its body sink would.
 */
static void decode_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                          uint64_t max_body, size_t max_trailer, struct run *out)
{
    struct moat_h1_chunked c;
    moat_h1_chunked_init(&c, max_body, max_trailer);
    out->st = MOAT_H1_AGAIN;
    out->data_len = 0;
    out->end = 0;
    size_t from = 0;
    for (size_t k = 0; k <= ncuts && out->st == MOAT_H1_AGAIN; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        size_t len = to - from;
        char *piece = malloc(len ? len : 1);
        if (len) {
            memcpy(piece, in + from, len);
        }
        size_t consumed = 99999, produced = 99999;
        out->st = moat_h1_chunked_decode(&c, piece, len, &consumed, &produced);
        if (produced > consumed || consumed > len) {
            out->st = MOAT_H1_STATUS_COUNT; /* broken invariant: fails every comparison */
        } else if (out->data_len + produced <= sizeof(out->data)) {
            memcpy(out->data + out->data_len, piece, produced);
            out->data_len += produced;
        }
        if (out->st == MOAT_H1_AGAIN && consumed != len) {
            out->st = MOAT_H1_STATUS_COUNT; /* AGAIN must use all input */
        }
        out->end = from + consumed;
        free(piece);
        from = to;
    }
    out->total = c.total;
    if (out->st != MOAT_H1_AGAIN && out->st != MOAT_H1_DONE) {
        /* errors are sticky */
        size_t consumed, produced;
        char b[4] = "0\r\n";
        if (moat_h1_chunked_decode(&c, b, 3, &consumed, &produced) != out->st) {
            out->st = MOAT_H1_STATUS_COUNT;
        }
    }
}

static int same_run(const struct run *a, const struct run *b)
{
    return a->st == b->st && a->end == b->end && a->data_len == b->data_len &&
           memcmp(a->data, b->data, a->data_len) == 0 && a->total == b->total;
}

/* Whole, every single split, every pair of splits (if short), byte by byte: all must agree. */
static void check_all_splits(const char *in, size_t n, uint64_t max_body, size_t max_trailer,
                             struct run *whole)
{
    static struct run other;
    decode_pieces(in, n, NULL, 0, max_body, max_trailer, whole);
    int before = test__failed;
    for (size_t s = 0; s <= n && test__failed == before; s++) {
        decode_pieces(in, n, &s, 1, max_body, max_trailer, &other);
        if (!same_run(whole, &other)) {
            TEST__FAIL("split at %zu: status %d end %zu, whole: status %d end %zu", s, other.st,
                       other.end, whole->st, whole->end);
        }
    }
    for (size_t s1 = 0; n <= 200 && s1 <= n && test__failed == before; s1++) {
        for (size_t s2 = s1; s2 <= n && test__failed == before; s2++) {
            size_t cuts[2] = {s1, s2};
            decode_pieces(in, n, cuts, 2, max_body, max_trailer, &other);
            if (!same_run(whole, &other)) {
                TEST__FAIL("split at %zu,%zu: status %d, whole: status %d", s1, s2, other.st,
                           whole->st);
            }
        }
    }
    size_t *cuts = malloc((n + 1) * sizeof(*cuts));
    for (size_t i = 0; i < n; i++) {
        cuts[i] = i;
    }
    decode_pieces(in, n, cuts, n, max_body, max_trailer, &other);
    if (test__failed == before && !same_run(whole, &other)) {
        TEST__FAIL("byte by byte: status %d, whole: status %d", other.st, whole->st);
    }
    free(cuts);
    if (test__failed != before) {
        fprintf(stderr, "  input: %.*s\n", (int)n, in);
    }
}

struct good {
    const char *in;
    size_t len;
    const char *data;
    size_t end; /* 0: the whole input */
};

static const struct good goods[] = {
    {R("0\r\n\r\n"), "", 0},
    {R("5\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {R("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world", 0},
    {R("1\r\nx\r\n1\r\ny\r\n1\r\nz\r\n0\r\n\r\n"), "xyz", 0},
    {R("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"), "0123456789abcdefghij", 0},
    {R("0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n"), "hello", 0},
    /* chunk data is opaque: CRLF and NUL inside are data */
    {R("4\r\n\r\n\0\n\r\n0\r\n\r\n"), "\r\n\0\n", 0},
    /* chunk extensions (RFC 9112 §7.1.1) are checked and ignored */
    {R("5;name\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {R("5;a=b;c=d\r\nhello\r\n0;last\r\n\r\n"), "hello", 0},
    {R("5 ; a = b ;\tc\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {R("5;a=\"x;y \\\" \\\\ z\"\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {R("5;a=\"\"\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {R("5;a=\"q\" ;b\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    {R("5;a=\"caf\xc3\xa9\"\r\nhello\r\n0\r\n\r\n"), "hello", 0},
    /* trailers are checked and dropped */
    {R("5\r\nhello\r\n0\r\nX-Sum: abc\r\nEmpty:\r\nTab:\ta b\r\n\r\n"), "hello", 0},
    /* pipelining: the end is right after the final CRLF */
    {R("5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n"), "hello", 15},
    {R("0\r\n\r\n0\r\n\r\n"), "", 5},
};

TEST_CASE(good_bodies)
{
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *g = &goods[i];
        static struct run whole;
        int before = test__failed;
        check_all_splits(g->in, g->len, 0, 0, &whole);
        EXPECT_INT(whole.st, MOAT_H1_DONE);
        size_t want_len = strlen(g->data);
        if (i == 6) {
            want_len = 4; /* holds a NUL */
        }
        EXPECT_INT(whole.data_len, want_len);
        EXPECT(memcmp(whole.data, g->data, want_len) == 0);
        EXPECT_INT(whole.total, want_len);
        EXPECT_INT(whole.end, g->end ? g->end : g->len);
        if (test__failed != before) {
            fprintf(stderr, "  case %zu\n", i);
        }
    }
}

TEST_CASE(big_chunk_in_place)
{
    /* 3000 bytes in chunks of 1000, 1500, 500: the output overlaps the input */
    static char in[4000];
    size_t n = 0;
    size_t sizes[3] = {1000, 1500, 500};
    char want[3000];
    size_t w = 0;
    for (int k = 0; k < 3; k++) {
        n += (size_t)snprintf(in + n, 16, "%zx\r\n", sizes[k]);
        for (size_t j = 0; j < sizes[k]; j++) {
            want[w] = (char)('a' + (w * 7 + j) % 26);
            in[n++] = want[w++];
        }
        memcpy(in + n, "\r\n", 2);
        n += 2;
    }
    memcpy(in + n, "0\r\n\r\n", 5);
    n += 5;
    struct moat_h1_chunked c;
    moat_h1_chunked_init(&c, 0, 0);
    size_t consumed, produced;
    char *buf = malloc(n);
    memcpy(buf, in, n);
    EXPECT_INT(moat_h1_chunked_decode(&c, buf, n, &consumed, &produced), MOAT_H1_DONE);
    EXPECT_INT(consumed, n);
    EXPECT_INT(produced, 3000);
    EXPECT(memcmp(buf, want, 3000) == 0);
    EXPECT_INT(c.total, 3000);
    /* after DONE: nothing more is taken */
    EXPECT_INT(moat_h1_chunked_decode(&c, buf, n, &consumed, &produced), MOAT_H1_DONE);
    EXPECT_INT(consumed, 0);
    EXPECT_INT(produced, 0);
    free(buf);
    static struct run whole;
    check_all_splits(in, n, 0, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_DONE);
    EXPECT_INT(whole.data_len, 3000);
    EXPECT(memcmp(whole.data, want, 3000) == 0);
}

struct bad {
    const char *in;
    size_t len;
    enum moat_h1_status want;
    size_t pos; /* offset of the offending byte in the whole input */
    const char *what;
};

static const struct bad bads[] = {
    /* sizes */
    {R("x\r\n"), MOAT_H1_E_BAD, 0, "chunk size is not hex"},
    {R("\r\n"), MOAT_H1_E_BAD, 0, "chunk size is not hex"},
    {R(" 5\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 0, "chunk size is not hex"},
    {R("-5\r\n"), MOAT_H1_E_BAD, 0, "chunk size is not hex"},
    {R("+5\r\n"), MOAT_H1_E_BAD, 0, "chunk size is not hex"},
    {R("0x5\r\n"), MOAT_H1_E_BAD, 1, "invalid character after chunk size"},
    {R("5g\r\n"), MOAT_H1_E_BAD, 1, "invalid character after chunk size"},
    {R("00000000000000005\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 16,
     "chunk size over 16 hex digits"},
    {R("fffffffffffffffff\r\n"), MOAT_H1_E_BAD, 16, "chunk size over 16 hex digits"},
    {R("10000000000000000\r\n"), MOAT_H1_E_BAD, 16, "chunk size over 16 hex digits"},
    {R("5 \r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 2, "whitespace after chunk size"},
    {R("5\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 1, "invalid character after chunk size"},
    {R("5\r\rhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 2, "bare CR in chunk size line"},
    /* end of chunk data */
    {R("5\r\nhelloX\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 8, "missing CRLF after chunk data"},
    {R("5\r\nhello\n0\r\n\r\n"), MOAT_H1_E_BAD, 8, "missing CRLF after chunk data"},
    {R("5\r\nhello\r0\r\n\r\n"), MOAT_H1_E_BAD, 9, "missing CRLF after chunk data"},
    {R("5\r\nhell\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 8, "missing CRLF after chunk data"},
    /* extensions */
    {R("5;\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 2, "invalid chunk extension name"},
    {R("5;=x\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 2, "invalid chunk extension name"},
    {R("5;a=\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 4, "invalid chunk extension value"},
    {R("5;a b\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 4, "invalid chunk extension"},
    {R("5;a=b \r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 6, "invalid chunk extension"},
    {R("5;a=b\"\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 5, "invalid chunk extension value"},
    {R("5;a=\"x\r\nhello\"\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 6,
     "invalid character in quoted chunk extension"},
    {R("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 7,
     "invalid chunk extension after quoted value"},
    {R("5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 6,
     "invalid quoted-pair in chunk extension"},
    {R("5;a\x01\r\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 3, "invalid chunk extension name"},
    {R("5;a=b\nhello\r\n0\r\n\r\n"), MOAT_H1_E_BAD, 5, "invalid chunk extension value"},
    /* trailers */
    {R("0\r\nX : y\r\n\r\n"), MOAT_H1_E_BAD, 4, "whitespace before colon in trailer"},
    {R("0\r\nX: a\r\n y\r\n\r\n"), MOAT_H1_E_BAD, 9, "obs-fold in trailer"},
    {R("0\r\n: y\r\n\r\n"), MOAT_H1_E_BAD, 3, "empty trailer field name"},
    {R("0\r\nX: a\x01\r\n\r\n"), MOAT_H1_E_BAD, 7, "invalid character in trailer value"},
    {R("0\r\nX: a\0\r\n\r\n"), MOAT_H1_E_BAD, 7, "invalid character in trailer value"},
    {R("0\r\nX\r\n\r\n"), MOAT_H1_E_BAD, 4, "invalid character in trailer name"},
    {R("0\r\nX: a\rb\r\n\r\n"), MOAT_H1_E_BAD, 8, "bare CR in trailer"},
    {R("0\r\n\n"), MOAT_H1_E_BAD, 3, "invalid trailer line"},
    {R("0\r\n\rX"), MOAT_H1_E_BAD, 4, "bare CR at end of chunked body"},
    {R("0\r\nX: a\n\r\n"), MOAT_H1_E_BAD, 7, "invalid character in trailer value"},
};

TEST_CASE(bad_bodies)
{
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        static struct run whole;
        int before = test__failed;
        check_all_splits(b->in, b->len, 0, 0, &whole);
        EXPECT_INT(whole.st, b->want);
        EXPECT_INT(whole.end, b->pos);
        struct moat_h1_chunked c;
        moat_h1_chunked_init(&c, 0, 0);
        char *buf = malloc(b->len);
        memcpy(buf, b->in, b->len);
        size_t consumed, produced;
        EXPECT_INT(moat_h1_chunked_decode(&c, buf, b->len, &consumed, &produced), b->want);
        EXPECT_STR(c.err_what, b->what);
        EXPECT_INT(c.err_pos, b->pos);
        free(buf);
        if (test__failed != before) {
            fprintf(stderr, "  case %zu: %.*s\n", i, (int)b->len, b->in);
        }
    }
}

TEST_CASE(extension_too_long)
{
    static char in[2100];
    size_t n = 0;
    memcpy(in, "1;", 2);
    n = 2;
    memset(in + n, 'a', MOAT_H1_CHUNK_EXT_MAX);
    n += MOAT_H1_CHUNK_EXT_MAX;
    memcpy(in + n, "\r\nx\r\n0\r\n\r\n", 10);
    n += 10;
    /* the ';' counts: one ';' and MOAT_H1_CHUNK_EXT_MAX name bytes are one over the bound */
    static struct run whole;
    decode_pieces(in, n, NULL, 0, 0, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_E_BAD);
    EXPECT_INT(whole.end, 2 + MOAT_H1_CHUNK_EXT_MAX - 1);
    memcpy(in + 1 + MOAT_H1_CHUNK_EXT_MAX, "\r\nx\r\n0\r\n\r\n", 10);
    decode_pieces(in, n - 1, NULL, 0, 0, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_DONE);
    EXPECT_INT(whole.data_len, 1);
}

TEST_CASE(body_limit)
{
    static struct run whole;
    /* exactly 10 bytes with max_body 10: fine */
    check_all_splits(R("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), 10, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_DONE);
    EXPECT_INT(whole.total, 10);
    /* 11: refused at the size line, before any of its data is taken */
    check_all_splits(R("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), 10, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_E_BODY_TOO_LARGE);
    EXPECT_INT(whole.end, 10);
    EXPECT_INT(whole.total, 5);
    /* a huge size is refused on the digit that makes it too large */
    check_all_splits(R("fffffff\r\n"), 1000, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_E_BODY_TOO_LARGE);
    EXPECT_INT(whole.end, 2);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_BODY_TOO_LARGE), 413);
}

TEST_CASE(trailer_limit)
{
    static struct run whole;
    /* trailer section "X: 0123456789\r\n\r\n" is 17 bytes */
    check_all_splits(R("0\r\nX: 0123456789\r\n\r\n"), 0, 17, &whole);
    EXPECT_INT(whole.st, MOAT_H1_DONE);
    check_all_splits(R("0\r\nX: 0123456789\r\n\r\n"), 0, 16, &whole);
    EXPECT_INT(whole.st, MOAT_H1_E_HEAD_TOO_LARGE);
    EXPECT_INT(whole.end, 3 + 16);
    /* the default bound applies when 0 is passed: an endless trailer stops */
    static char in[MOAT_H1_CHUNK_TRAILER_DEFAULT + 64];
    memcpy(in, "0\r\nX: ", 6);
    memset(in + 6, 'v', sizeof(in) - 6);
    decode_pieces(in, sizeof(in), NULL, 0, 0, 0, &whole);
    EXPECT_INT(whole.st, MOAT_H1_E_HEAD_TOO_LARGE);
    EXPECT_INT(whole.end, 3 + MOAT_H1_CHUNK_TRAILER_DEFAULT);
}

/* Kept trailers: the field lines exactly as sent, wherever the input is split; none kept when
 * there are none, and nothing of the body or the final empty line. */
TEST_CASE(trailers_kept)
{
    const char raw[] = "3\r\nabc\r\n0\r\nX-Sum: 42\r\nX-Empty:\r\nX-Sp:  a b \r\n\r\nNEXT";
    size_t len = sizeof(raw) - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        char buf[sizeof(raw)];
        memcpy(buf, raw, len);
        struct moat_h1_chunked c;
        moat_h1_chunked_init(&c, 0, 0);
        struct moat_buf kept;
        moat_buf_init(&kept, 1024);
        c.keep_trailers = &kept;
        size_t used1 = 0, out1 = 0, used2 = 0, out2 = 0;
        enum moat_h1_status st = moat_h1_chunked_decode(&c, buf, cut, &used1, &out1);
        if (st == MOAT_H1_AGAIN) {
            st = moat_h1_chunked_decode(&c, buf + used1, len - used1, &used2, &out2);
        }
        EXPECT_INT(st, MOAT_H1_DONE);
        EXPECT_INT(used1 + used2, len - 4); /* "NEXT" is the next message's */
        static const char want[] = "X-Sum: 42\r\nX-Empty:\r\nX-Sp:  a b \r\n";
        EXPECT_INT(moat_buf_len(&kept), sizeof(want) - 1);
        if (moat_buf_len(&kept) == sizeof(want) - 1) {
            EXPECT(memcmp(moat_buf_rdptr(&kept), want, sizeof(want) - 1) == 0);
        }
        moat_buf_clear(&kept);
    }
    char none[] = "0\r\n\r\n";
    struct moat_h1_chunked c;
    moat_h1_chunked_init(&c, 0, 0);
    struct moat_buf kept;
    moat_buf_init(&kept, 64);
    c.keep_trailers = &kept;
    size_t used = 0, out = 0;
    EXPECT_INT(moat_h1_chunked_decode(&c, none, 5, &used, &out), MOAT_H1_DONE);
    EXPECT_INT(moat_buf_len(&kept), 0);
    /* a keeping buffer smaller than the trailers is a refusal, never a silent cut */
    char big[] = "0\r\nX-Long: 0123456789012345678901234567890123456789\r\n\r\n";
    moat_h1_chunked_init(&c, 0, 0);
    moat_buf_clear(&kept);
    moat_buf_init(&kept, 16);
    c.keep_trailers = &kept;
    EXPECT_INT(moat_h1_chunked_decode(&c, big, sizeof(big) - 1, &used, &out),
               MOAT_H1_E_HEAD_TOO_LARGE);
    moat_buf_clear(&kept);
}

/* A chunked request then a pipelined one, as a server would read them, split everywhere. */
TEST_CASE(chunked_request_pipelined)
{
    const char raw[] = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n"
                       "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t n = sizeof(raw) - 1;
    int fails = 0;
    for (size_t s = 0; s <= n && fails < 3; s++) {
        /* the connection buffer: [0, have) holds unread bytes; reads arrive in two parts */
        char *conn = malloc(n);
        size_t have = 0, fed = 0;
        int before = test__failed;
        struct moat_h1_req r;
        moat_h1_req_init(&r);
        memcpy(conn, raw, s);
        have = fed = s;
        enum moat_h1_status st = moat_h1_parse_request(&r, conn, have, NULL);
        if (st == MOAT_H1_AGAIN) {
            memcpy(conn + have, raw + fed, n - fed);
            have += n - fed;
            fed = n;
            st = moat_h1_parse_request(&r, conn, have, NULL);
        }
        EXPECT_INT(st, MOAT_H1_DONE);
        EXPECT_INT(r.body, MOAT_H1_BODY_CHUNKED);
        /* the body: decode what is there, then what arrives next */
        size_t off = r.head_len;
        struct moat_h1_chunked c;
        moat_h1_chunked_init(&c, 1 << 20, 0);
        char body[16];
        size_t body_len = 0;
        size_t consumed, produced;
        st = moat_h1_chunked_decode(&c, conn + off, have - off, &consumed, &produced);
        memcpy(body, conn + off, produced);
        body_len = produced;
        off += consumed;
        if (st == MOAT_H1_AGAIN) {
            memcpy(conn + have, raw + fed, n - fed);
            have += n - fed;
            fed = n;
            st = moat_h1_chunked_decode(&c, conn + off, have - off, &consumed, &produced);
            memcpy(body + body_len, conn + off, produced);
            body_len += produced;
            off += consumed;
        }
        EXPECT_INT(st, MOAT_H1_DONE);
        EXPECT_INT(body_len, 5);
        EXPECT(memcmp(body, "abcde", 5) == 0);
        /* the next request starts right after the body */
        if (fed < n) {
            memcpy(conn + have, raw + fed, n - fed);
            have += n - fed;
        }
        moat_h1_req_init(&r);
        EXPECT_INT(moat_h1_parse_request(&r, conn + off, have - off, NULL), MOAT_H1_DONE);
        EXPECT_SLICE(r.path, "/next");
        EXPECT_INT(off + r.head_len, n);
        free(conn);
        if (test__failed != before) {
            fprintf(stderr, "  split at %zu\n", s);
            fails++;
        }
    }
}

int main(void)
{
    RUN(good_bodies);
    RUN(big_chunk_in_place);
    RUN(bad_bodies);
    RUN(extension_too_long);
    RUN(body_limit);
    RUN(trailer_limit);
    RUN(trailers_kept);
    RUN(chunked_request_pipelined);
    TEST_MAIN_END();
}
