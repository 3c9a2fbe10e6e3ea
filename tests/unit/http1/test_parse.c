/*
 * test_parse.c: the HTTP/1.1 head parser against tables of good and bad requests and responses.
 *
 * Every input is parsed twice: whole, and one byte at a time with the buffer copied to a new
 * exact-size allocation before each call (so ASan sees any read past `len`, and the parser is shown
 * to keep offsets, not pointers). Each strictness rule of parse.c has a bad case here.
 */
#include "http1/parse.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

/* Literal with its length, so inputs may hold NUL bytes. */
#define R(s) s, sizeof(s) - 1

static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (p != NULL && n > 0) {
        memcpy(p, s, n);
    }
    return p;
}

/* Parse whole; *out holds the copy the slices point into (caller frees). */
static enum moat_h1_status req_whole(struct moat_h1_req *r, const char *s, size_t n, char **out,
                                     const struct moat_h1_limits *lim)
{
    *out = dup_exact(s, n);
    moat_h1_req_init(r);
    return moat_h1_parse_request(r, *out, n, lim);
}

/* Parse one more byte per call, each call on a fresh copy; stops at the first non-AGAIN. */
static enum moat_h1_status req_bytewise(struct moat_h1_req *r, const char *s, size_t n, char **out,
                                        const struct moat_h1_limits *lim)
{
    enum moat_h1_status st = MOAT_H1_AGAIN;
    *out = NULL;
    moat_h1_req_init(r);
    for (size_t k = 0; k <= n && st == MOAT_H1_AGAIN; k++) {
        free(*out);
        *out = dup_exact(s, k);
        st = moat_h1_parse_request(r, *out, k, lim);
    }
    return st;
}

struct good_req {
    const char *raw;
    size_t len;
    enum moat_http_method method_id;
    const char *method, *target, *path, *query, *host;
    int minor;
    enum moat_h1_body body;
    uint64_t cl;
    int keep_alive, expect_continue, upgrade;
    size_t nfields;
    size_t head_len; /* 0: the whole input */
};

static const struct good_req good_reqs[] = {
    {R("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "",
     "example.com", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com:8443\r\nAccept: */*\r\n\r\n"),
     MOAT_HTTP_M_GET, "GET", "/a/b?x=1&y=2", "/a/b", "x=1&y=2", "example.com:8443", 1,
     MOAT_H1_BODY_NONE, 0, 1, 0, 0, 2, 0},
    {R("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"), MOAT_HTTP_M_POST, "POST",
     "/up", "/up", "", "a", 1, MOAT_H1_BODY_LENGTH, 5, 1, 0, 0, 2, 49},
    {R("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), MOAT_HTTP_M_PUT, "PUT", "/x",
     "/x", "", "a", 1, MOAT_H1_BODY_LENGTH, 0, 1, 0, 0, 2, 0},
    /* a list of identical values, and a repeated field with the same value (RFC 9110 §8.6) */
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n"),
     MOAT_HTTP_M_POST, "POST", "/", "/", "", "a", 1, MOAT_H1_BODY_LENGTH, 7, 1, 0, 0, 3, 0},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n"),
     MOAT_HTTP_M_POST, "POST", "/", "/", "", "a", 1, MOAT_H1_BODY_LENGTH, 9999999999999999999ULL, 1,
     0, 0, 2, 0},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), MOAT_HTTP_M_POST,
     "POST", "/", "/", "", "a", 1, MOAT_H1_BODY_CHUNKED, 0, 1, 0, 0, 2, 0},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , CHUNKED \r\n\r\n"), MOAT_HTTP_M_POST,
     "POST", "/", "/", "", "a", 1, MOAT_H1_BODY_CHUNKED, 0, 1, 0, 0, 2, 0},
    {R("HEAD / HTTP/1.0\r\n\r\n"), MOAT_HTTP_M_HEAD, "HEAD", "/", "/", "", "", 0, MOAT_H1_BODY_NONE,
     0, 0, 0, 0, 0, 0},
    {R("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "",
     "", 0, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("GET / HTTP/1.0\r\nHost:\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "", "", 0,
     MOAT_H1_BODY_NONE, 0, 0, 0, 0, 1, 0},
    {R("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/",
     "", "a", 1, MOAT_H1_BODY_NONE, 0, 0, 0, 0, 2, 0},
    {R("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n"), MOAT_HTTP_M_GET,
     "GET", "/", "/", "", "a", 1, MOAT_H1_BODY_NONE, 0, 0, 0, 0, 2, 0},
    {R("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
     MOAT_HTTP_M_GET, "GET", "/ws", "/ws", "", "a", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 1, 3, 0},
    {R("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/ws",
     "/ws", "", "a", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 2, 0},
    {R("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), MOAT_HTTP_M_GET,
     "GET", "/ws", "/ws", "", "", 0, MOAT_H1_BODY_NONE, 0, 0, 0, 0, 2, 0},
    {R("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"),
     MOAT_HTTP_M_PUT, "PUT", "/f", "/f", "", "a", 1, MOAT_H1_BODY_LENGTH, 3, 1, 1, 0, 3, 0},
    {R("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"), MOAT_HTTP_M_PUT,
     "PUT", "/f", "/f", "", "", 0, MOAT_H1_BODY_LENGTH, 3, 0, 0, 0, 2, 0},
    /* unknown but valid token methods parse; methods are case-sensitive */
    {R("BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_OTHER, "BREW", "/pot", "/pot", "", "a",
     1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("get / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_OTHER, "get", "/", "/", "", "a", 1,
     MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_DELETE, "DELETE", "/x", "/x", "", "a",
     1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("PATCH /x HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_PATCH, "PATCH", "/x", "/x", "", "a", 1,
     MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("TRACE /x HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_TRACE, "TRACE", "/x", "/x", "", "a", 1,
     MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_OPTIONS, "OPTIONS", "*", "*", "", "a",
     1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), MOAT_HTTP_M_CONNECT,
     "CONNECT", "example.com:443", "", "", "example.com:443", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1,
     0},
    {R("CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n"), MOAT_HTTP_M_CONNECT, "CONNECT",
     "[::1]:443", "", "", "[::1]:443", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    /* absolute-form: the target's authority wins over Host (RFC 9112 §3.2.2) */
    {R("GET http://origin.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n"), MOAT_HTTP_M_GET, "GET",
     "http://origin.example:81/p?q", "/p", "q", "origin.example:81", 1, MOAT_H1_BODY_NONE, 0, 1, 0,
     0, 1, 0},
    {R("GET HTTPS://Origin.Example HTTP/1.1\r\nHost:\r\n\r\n"), MOAT_HTTP_M_GET, "GET",
     "HTTPS://Origin.Example", "/", "", "Origin.Example", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "http://a?x", "/",
     "x", "a", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    /* leading empty lines are ignored and counted (RFC 9112 §2.2) */
    {R("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "", "a", 1,
     MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "",
     "a", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    /* OWS trimmed, HTAB and obs-text allowed in values, empty values kept */
    {R("GET / HTTP/1.1\r\nHost:\t a \t\r\nX-Empty:\r\nX-Tab: a\tb\r\nX-Utf8: caf\xc3\xa9\r\n\r\n"),
     MOAT_HTTP_M_GET, "GET", "/", "/", "", "a", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 4, 0},
    /* host syntax: IPv6 literal, IPv4, pct-encoded, sub-delims, underscore */
    {R("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "",
     "[2001:db8::1]:8080", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "",
     "192.0.2.1", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    {R("GET / HTTP/1.1\r\nHost: my_host.%41x\r\n\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/", "",
     "my_host.%41x", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    /* targets may hold any visible ASCII but '#' */
    {R("GET /a%20b/'!$&()*+,;=:@~[]|\"<>{}^` HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_HTTP_M_GET, "GET",
     "/a%20b/'!$&()*+,;=:@~[]|\"<>{}^`", "/a%20b/'!$&()*+,;=:@~[]|\"<>{}^`", "", "a", 1,
     MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 0},
    /* pipelining: the head ends at the empty line, the rest is not ours */
    {R("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n"), MOAT_HTTP_M_GET, "GET", "/", "/",
     "", "a", 1, MOAT_H1_BODY_NONE, 0, 1, 0, 0, 1, 27},
};

static void check_good(const struct good_req *g, const struct moat_h1_req *r, const char *how)
{
    int before = test__failed;
    EXPECT_INT(r->method_id, g->method_id);
    EXPECT_SLICE(r->method, g->method);
    EXPECT_SLICE(r->target, g->target);
    EXPECT_SLICE(r->path, g->path);
    EXPECT_SLICE(r->query, g->query);
    EXPECT_SLICE(r->host, g->host);
    EXPECT_INT(r->minor, g->minor);
    EXPECT_INT(r->body, g->body);
    if (g->body == MOAT_H1_BODY_LENGTH) {
        EXPECT(r->content_length == g->cl);
    }
    EXPECT_INT(r->keep_alive, g->keep_alive);
    EXPECT_INT(r->expect_continue, g->expect_continue);
    EXPECT_INT(r->upgrade, g->upgrade);
    EXPECT_INT(r->nfields, g->nfields);
    EXPECT_INT(r->head_len, g->head_len ? g->head_len : g->len);
    EXPECT(r->err_what == NULL);
    if (test__failed != before) {
        fprintf(stderr, "  (%s) in: %.*s\n", how, (int)g->len, g->raw);
    }
}

TEST_CASE(good_requests)
{
    for (size_t i = 0; i < sizeof(good_reqs) / sizeof(good_reqs[0]); i++) {
        const struct good_req *g = &good_reqs[i];
        struct moat_h1_req r;
        char *buf;
        int before = test__failed;
        EXPECT_INT(req_whole(&r, g->raw, g->len, &buf, NULL), MOAT_H1_DONE);
        if (test__failed == before) {
            check_good(g, &r, "whole");
        } else {
            fprintf(stderr, "  case %zu: %s at %zu\n", i, r.err_what, r.err_pos);
        }
        free(buf);
        before = test__failed;
        EXPECT_INT(req_bytewise(&r, g->raw, g->len, &buf, NULL), MOAT_H1_DONE);
        if (test__failed == before) {
            check_good(g, &r, "bytewise");
        }
        free(buf);
    }
}

TEST_CASE(fields_are_extracted)
{
    struct moat_h1_req r;
    char *buf;
    EXPECT_INT(req_whole(&r,
                         R("GET / HTTP/1.1\r\nHost:  a.example \r\nX-Two:\tv1, v2\t\r\n"
                           "x-empty:\r\nCookie: a=b\r\n\r\n"),
                         &buf, NULL),
               MOAT_H1_DONE);
    EXPECT_INT(r.nfields, 4);
    EXPECT_SLICE(r.fields[0].name, "Host");
    EXPECT_SLICE(r.fields[0].value, "a.example");
    EXPECT_SLICE(r.fields[1].name, "X-Two");
    EXPECT_SLICE(r.fields[1].value, "v1, v2");
    EXPECT_SLICE(r.fields[2].name, "x-empty");
    EXPECT_SLICE(r.fields[2].value, "");
    const struct moat_field *f = moat_field_find(r.fields, r.nfields, "x-two");
    EXPECT(f == &r.fields[1]);
    f = moat_field_find(r.fields, r.nfields, "cookie");
    EXPECT(f != NULL && moat_slice_eq(f->value, MOAT_SLICE_LIT("a=b")));
    EXPECT(moat_field_find(r.fields, r.nfields, "x-tw") == NULL);
    EXPECT(moat_field_find(r.fields, r.nfields, "missing") == NULL);
    EXPECT(moat_field_find(r.fields, 0, "host") == NULL);
    free(buf);
}

/* Every control byte at every position of a long value: the word-at-a-time skip must not miss
 * one, and HTAB and obs-text must pass wherever they are. */
TEST_CASE(value_bytes_everywhere)
{
    const char pre[] = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    size_t np = sizeof(pre) - 1;
    char src[128];
    for (int c = 0; c < 256; c++) {
        int allowed = c == '\t' || (c >= 0x20 && c != 0x7f);
        for (size_t k = 0; k < 40; k++) {
            memcpy(src, pre, np);
            memset(src + np, 'v', 40);
            src[np + k] = (char)c;
            memcpy(src + np + 40, "\r\n\r\n", 4);
            struct moat_h1_req r;
            char *buf;
            enum moat_h1_status st = req_whole(&r, src, np + 44, &buf, NULL);
            free(buf);
            if (c == '\n' || c == '\r') {
                EXPECT_INT(st, MOAT_H1_E_BAD); /* bare LF / CR: other messages */
                continue;
            }
            if (allowed) {
                EXPECT_INT(st, MOAT_H1_DONE);
                EXPECT_INT(r.nfields, 2);
            } else {
                EXPECT_INT(st, MOAT_H1_E_BAD);
                EXPECT_INT(r.err_pos, np + k);
                EXPECT_STR(r.err_what, "invalid character in field value");
            }
            if (test__failed) {
                fprintf(stderr, "  byte 0x%02x at %zu\n", c, k);
                return;
            }
        }
    }
}

/* The same for request-targets: only VCHAR but '#' may appear, at any position. */
TEST_CASE(target_bytes_everywhere)
{
    char src[128];
    for (int c = 0; c < 256; c++) {
        int allowed = c > 0x20 && c < 0x7f && c != '#';
        for (size_t k = 1; k < 40; k++) {
            memcpy(src, "GET /", 5);
            memset(src + 5, 't', 39);
            src[4 + k] = (char)c;
            memcpy(src + 44, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
            struct moat_h1_req r;
            char *buf;
            enum moat_h1_status st = req_whole(&r, src, 66, &buf, NULL);
            free(buf);
            if (allowed) {
                EXPECT_INT(st, MOAT_H1_DONE);
                EXPECT_INT(r.target.len, 40);
            } else {
                EXPECT(st != MOAT_H1_DONE);
                if (c != ' ' && c != '\n' && c != '\r') {
                    EXPECT_INT(r.err_pos, 4 + k);
                }
            }
            if (test__failed) {
                fprintf(stderr, "  byte 0x%02x at %zu\n", c, k);
                return;
            }
        }
    }
}

struct bad_req {
    const char *raw;
    size_t len;
    enum moat_h1_status want;
    const char *what; /* exact err_what, or NULL to skip */
};

static const struct bad_req bad_reqs[] = {
    /* line endings (RFC 9112 §2.2) */
    {R("GET / HTTP/1.1\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "bare LF (lines must end in CRLF)"},
    {R("GET / HTTP/1.1\r\nHost: a\n\r\n"), MOAT_H1_E_BAD, "bare LF (lines must end in CRLF)"},
    {R("GET / HTTP/1.1\r\nHost: a\r\n\n"), MOAT_H1_E_BAD, "bare LF (lines must end in CRLF)"},
    {R("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "bare LF (lines must end in CRLF)"},
    {R("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), MOAT_H1_E_BAD, "invalid character in field value"},
    {R("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in request target"},
    {R("GET / HTTP/1.1\r\rHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "empty start line"},
    {R("\r\n"), MOAT_H1_E_BAD, NULL}, /* see leading_lines: this one is AGAIN, not in the loop */
    /* control characters */
    {R("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field value"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field value"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field value"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field name"},
    {R("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in request target"},
    {R("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid method"},
    {R("GET / HTTP/1.1\0\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    /* obs-text only in values */
    {R("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in request target"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field name"},
    {R("G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid method"},
    /* request line shape (RFC 9112 §3) */
    {R("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "empty request target"},
    {R("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid method"},
    {R("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid method"},
    {R("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid character in request target"},
    {R("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid method"},
    {R("GET\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid method"},
    {R("GET /\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "missing HTTP version"},
    {R("GET / \r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    /* request targets (RFC 9112 §3.2) */
    {R("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "fragment in request target"},
    {R("GET a HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid request target"},
    {R("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "'*' target is only for OPTIONS"},
    {R("OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid request target"},
    {R("GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid request target"},
    {R("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "CONNECT needs host:port as target"},
    {R("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "CONNECT needs host:port as target"},
    {R("CONNECT http://a:1/ HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "CONNECT needs host:port as target"},
    {R("CONNECT a:b HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "CONNECT needs host:port as target"},
    {R("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid request target"},
    {R("GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "invalid request target"},
    {R("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "userinfo in request target"},
    {R("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid authority in request target"},
    {R("GET http://a:99999999/ HTTP/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid authority in request target"},
    {R("GET http://a/ HTTP/1.1\r\n\r\n"), MOAT_H1_E_BAD, "missing Host field"},
    /* versions (RFC 9112 §2.3): digit.digit other than 1.x is 505, anything else is 400 */
    {R("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), MOAT_H1_E_VERSION, "HTTP version not supported"},
    {R("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), MOAT_H1_E_VERSION, "HTTP version not supported"},
    {R("GET / HTTP/3.0\r\nHost: a\r\n\r\n"), MOAT_H1_E_VERSION, "HTTP version not supported"},
    {R("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), MOAT_H1_E_VERSION, "HTTP version not supported"},
    {R("GET / http/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET / HTTP/1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET / HTTP/11\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET / HTTP/a.b\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("GET / HTTPS/1.1\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    /* field lines (RFC 9112 §5) */
    {R("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), MOAT_H1_E_BAD, "whitespace before colon"},
    {R("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), MOAT_H1_E_BAD, "whitespace before colon"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"), MOAT_H1_E_BAD,
     "obs-fold (field line starts with whitespace)"},
    {R("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"), MOAT_H1_E_BAD,
     "obs-fold (field line starts with whitespace)"},
    {R("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), MOAT_H1_E_BAD,
     "obs-fold (field line starts with whitespace)"},
    {R("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"), MOAT_H1_E_BAD, "empty field name"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), MOAT_H1_E_BAD,
     "missing colon in field line"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field name"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nX/y: v\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field name"},
    /* Host (RFC 9112 §3.2) */
    {R("GET / HTTP/1.1\r\n\r\n"), MOAT_H1_E_BAD, "missing Host field"},
    {R("GET / HTTP/1.1\r\nX: y\r\n\r\n"), MOAT_H1_E_BAD, "missing Host field"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), MOAT_H1_E_BAD, "more than one Host field"},
    {R("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), MOAT_H1_E_BAD, "more than one Host field"},
    {R("GET / HTTP/1.1\r\nHost:\r\n\r\n"), MOAT_H1_E_BAD, "empty Host field"},
    {R("GET / HTTP/1.1\r\nHost:  \r\n\r\n"), MOAT_H1_E_BAD, "empty Host field"},
    {R("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: []\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a%4\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"), MOAT_H1_E_BAD, "invalid Host field"},
    {R("GET / HTTP/1.1\r\nHost: a,b\r\nHost: c\r\n\r\n"), MOAT_H1_E_BAD,
     "more than one Host field"},
    /* Content-Length (RFC 9110 §8.6) */
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000000000000000\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
     MOAT_H1_E_BAD, "invalid Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"), MOAT_H1_E_BAD,
     "conflicting Content-Length values"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
     MOAT_H1_E_BAD, "conflicting Content-Length values"},
    /* Transfer-Encoding (RFC 9112 §6.1, §6.3) */
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
     MOAT_H1_E_BAD, "both Transfer-Encoding and Content-Length"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
     MOAT_H1_E_BAD, "both Transfer-Encoding and Content-Length"},
    {R("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), MOAT_H1_E_BAD,
     "Transfer-Encoding in HTTP/1.0"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
     MOAT_H1_E_NOT_IMPLEMENTED, "transfer coding other than chunked"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
       "\r\n"),
     MOAT_H1_E_NOT_IMPLEMENTED, "transfer coding other than chunked"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), MOAT_H1_E_BAD,
     "chunked is not the final transfer coding"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), MOAT_H1_E_BAD,
     "chunked is not the final transfer coding"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), MOAT_H1_E_BAD,
     "empty Transfer-Encoding"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), MOAT_H1_E_BAD,
     "chunked applied twice"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
       "\r\n"),
     MOAT_H1_E_BAD, "chunked applied twice"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"), MOAT_H1_E_BAD,
     "parameters on chunked"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Transfer-Encoding"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Transfer-Encoding"},
    {R("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid character in field value"},
    /* Connection, Expect */
    {R("GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"), MOAT_H1_E_BAD,
     "invalid Connection option"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), MOAT_H1_E_EXPECTATION,
     "unsupported expectation"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n"), MOAT_H1_E_EXPECTATION,
     "unsupported expectation"},
    {R("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continueX\r\n\r\n"), MOAT_H1_E_EXPECTATION,
     "unsupported expectation"},
};

TEST_CASE(bad_requests)
{
    for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
        const struct bad_req *b = &bad_reqs[i];
        if (b->len == 2) {
            continue; /* "\r\n" alone: checked in leading_lines */
        }
        struct moat_h1_req r;
        char *buf;
        int before = test__failed;
        EXPECT_INT(req_whole(&r, b->raw, b->len, &buf, NULL), b->want);
        if (b->what) {
            EXPECT_STR(r.err_what, b->what);
        }
        EXPECT(r.err_pos <= b->len);
        free(buf);
        EXPECT_INT(req_bytewise(&r, b->raw, b->len, &buf, NULL), b->want);
        if (b->what) {
            EXPECT_STR(r.err_what, b->what);
        }
        free(buf);
        if (test__failed != before) {
            fprintf(stderr, "  case %zu: %.*s\n", i, (int)b->len, b->raw);
        }
    }
}

TEST_CASE(leading_lines)
{
    struct moat_h1_req r;
    char *buf;
    /* an empty line alone is not yet an error: the request line may follow */
    EXPECT_INT(req_whole(&r, R("\r\n"), &buf, NULL), MOAT_H1_AGAIN);
    free(buf);
    EXPECT_INT(req_whole(&r, R("\r"), &buf, NULL), MOAT_H1_AGAIN);
    free(buf);
    EXPECT_INT(req_whole(&r, R("\r\n\r\n\r\n\r\n"), &buf, NULL), MOAT_H1_AGAIN);
    free(buf);
    EXPECT_INT(req_whole(&r, R("\r\n\r\n\r\n\r\n\r\n"), &buf, NULL), MOAT_H1_E_BAD);
    EXPECT_INT(r.err_pos, 8);
    free(buf);
    EXPECT_INT(req_whole(&r, R("\r\nX"), &buf, NULL), MOAT_H1_AGAIN);
    free(buf);
    EXPECT_INT(req_whole(&r, R(""), &buf, NULL), MOAT_H1_AGAIN);
    free(buf);
}

/* Build "GET /<pad> HTTP/1.1\r\n" with a request line of exactly `line` bytes. */
static size_t put_request_line(char *p, size_t line)
{
    memcpy(p, "GET /", 5);
    memset(p + 5, 'a', line - 5 - 9);
    memcpy(p + line - 9, " HTTP/1.1\r\n", 11);
    return line + 2;
}

TEST_CASE(line_limit)
{
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    EXPECT_INT(lim.max_line_bytes, 8192);
    EXPECT_INT(lim.max_head_bytes, 32768);
    EXPECT_INT(lim.max_fields, 100);
    char *src = malloc(9000);
    struct moat_h1_req r;
    char *buf;
    /* exactly at the limit: fine */
    size_t n = put_request_line(src, 8192);
    memcpy(src + n, "Host: a\r\n\r\n", 11);
    EXPECT_INT(req_whole(&r, src, n + 11, &buf, &lim), MOAT_H1_DONE);
    EXPECT_INT(r.target.len, 8192 - 4 - 9);
    free(buf);
    /* one over: 414, and before the line ends (no CRLF yet) */
    n = put_request_line(src, 8193);
    memcpy(src + n, "Host: a\r\n\r\n", 11);
    EXPECT_INT(req_whole(&r, src, n + 11, &buf, &lim), MOAT_H1_E_LINE_TOO_LONG);
    free(buf);
    EXPECT_INT(req_whole(&r, src, 8193, &buf, &lim), MOAT_H1_E_LINE_TOO_LONG);
    free(buf);
    /* 8192 bytes and a CR: still possibly 8192 + CRLF */
    EXPECT_INT(req_whole(&r, src, 8192, &buf, &lim), MOAT_H1_AGAIN);
    free(buf);
    put_request_line(src, 8192);
    EXPECT_INT(req_whole(&r, src, 8193, &buf, &lim), MOAT_H1_AGAIN);
    free(buf);
    /* a too-long line ended by a bare LF is 414 whether it arrives whole or bytewise */
    n = put_request_line(src, 8193);
    src[n - 2] = '\n';
    EXPECT_INT(req_whole(&r, src, n - 1, &buf, &lim), MOAT_H1_E_LINE_TOO_LONG);
    free(buf);
    EXPECT_INT(req_bytewise(&r, src, n - 1, &buf, &lim), MOAT_H1_E_LINE_TOO_LONG);
    free(buf);
    /* a garbage stream without any line end stops at the limit */
    memset(src, 'A', 9000);
    EXPECT_INT(req_bytewise(&r, src, 9000, &buf, &lim), MOAT_H1_E_LINE_TOO_LONG);
    EXPECT_INT(r._scanned, 8193);
    free(buf);
    /* a custom smaller limit */
    lim.max_line_bytes = 20;
    EXPECT_INT(req_whole(&r, R("GET /0123456789abc HTTP/1.1\r\nHost: a\r\n\r\n"), &buf, &lim),
               MOAT_H1_E_LINE_TOO_LONG);
    free(buf);
    free(src);
}

TEST_CASE(head_limit)
{
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    size_t cap = 40000;
    char *src = malloc(cap);
    struct moat_h1_req r;
    char *buf;
    /* a head of exactly 32768 bytes: request line, Host, one big field, final CRLF */
    size_t n = 0;
    memcpy(src, "GET / HTTP/1.1\r\nHost: a\r\nX: ", 28);
    n = 28;
    size_t pad = 32768 - n - 4;
    memset(src + n, 'v', pad);
    n += pad;
    memcpy(src + n, "\r\n\r\n", 4);
    n += 4;
    EXPECT_INT(n, 32768);
    EXPECT_INT(req_whole(&r, src, n, &buf, &lim), MOAT_H1_DONE);
    EXPECT_INT(r.head_len, 32768);
    free(buf);
    /* one more byte in the field: 431 */
    memset(src + 28, 'v', pad + 1);
    memcpy(src + n - 3, "\r\n\r\n", 4);
    EXPECT_INT(req_whole(&r, src, n + 1, &buf, &lim), MOAT_H1_E_HEAD_TOO_LARGE);
    free(buf);
    /* and 431 as soon as 32768 bytes came without the end: no need to wait */
    EXPECT_INT(req_whole(&r, src, 32768, &buf, &lim), MOAT_H1_E_HEAD_TOO_LARGE);
    free(buf);
    EXPECT_INT(req_whole(&r, src, 32767, &buf, &lim), MOAT_H1_AGAIN);
    free(buf);
    /* many small fields up to the limit */
    lim.max_head_bytes = 80;
    EXPECT_INT(req_whole(&r,
                         R("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n"
                           "F: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\nJ: 10\r\n\r\n"),
                         &buf, &lim),
               MOAT_H1_E_HEAD_TOO_LARGE);
    free(buf);
    free(src);
}

/* A request with `nf` fields (Host included). */
static size_t put_fields(char *p, size_t nf)
{
    size_t n = 0;
    memcpy(p, "GET / HTTP/1.1\r\nHost: a\r\n", 25);
    n = 25;
    for (size_t i = 1; i < nf; i++) {
        n += (size_t)snprintf(p + n, 32, "X-%zu: %zu\r\n", i, i);
    }
    memcpy(p + n, "\r\n", 2);
    return n + 2;
}

TEST_CASE(field_limit)
{
    char *src = malloc(8192);
    struct moat_h1_req r;
    char *buf;
    size_t n = put_fields(src, 100);
    EXPECT_INT(req_whole(&r, src, n, &buf, NULL), MOAT_H1_DONE);
    EXPECT_INT(r.nfields, 100);
    EXPECT_SLICE(r.fields[99].name, "X-99");
    EXPECT_SLICE(r.fields[99].value, "99");
    free(buf);
    n = put_fields(src, 101);
    EXPECT_INT(req_whole(&r, src, n, &buf, NULL), MOAT_H1_E_TOO_MANY_FIELDS);
    free(buf);
    /* refused while the head is still arriving */
    EXPECT_INT(req_whole(&r, src, n - 2, &buf, NULL), MOAT_H1_E_TOO_MANY_FIELDS);
    free(buf);
    /* max_fields is clamped to MOAT_H1_FIELDS_CAP */
    struct moat_h1_limits lim = {0, 0, 100000};
    free(src);
    src = malloc(MOAT_H1_FIELDS_CAP * 32 + 64);
    n = put_fields(src, MOAT_H1_FIELDS_CAP);
    EXPECT_INT(req_whole(&r, src, n, &buf, &lim), MOAT_H1_DONE);
    free(buf);
    n = put_fields(src, MOAT_H1_FIELDS_CAP + 1);
    EXPECT_INT(req_whole(&r, src, n, &buf, &lim), MOAT_H1_E_TOO_MANY_FIELDS);
    free(buf);
    lim.max_fields = 2;
    n = put_fields(src, 3);
    EXPECT_INT(req_whole(&r, src, n, &buf, &lim), MOAT_H1_E_TOO_MANY_FIELDS);
    free(buf);
    free(src);
}

TEST_CASE(resume_is_incremental)
{
    const char raw[] = "GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n";
    size_t n = sizeof(raw) - 1;
    struct moat_h1_req r;
    moat_h1_req_init(&r);
    /* the scan resumes where it stopped: never behind what it was given */
    for (size_t k = 0; k < n; k++) {
        EXPECT_INT(moat_h1_parse_request(&r, raw, k, NULL), MOAT_H1_AGAIN);
        EXPECT_INT(r._scanned, k);
    }
    /* the buffer may move between calls: only offsets are kept */
    char *moved = dup_exact(raw, n);
    EXPECT_INT(moat_h1_parse_request(&r, moved, n, NULL), MOAT_H1_DONE);
    EXPECT(r.target.p == moved + 4);
    EXPECT_SLICE(r.fields[1].value, "t");
    free(moved);
}

/* Three pipelined requests, delivered in three parts split at every pair of positions. */
TEST_CASE(pipelined_every_split)
{
    const char raw[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                       "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                       "\r\nGET /c?q HTTP/1.0\r\n\r\n";
    size_t n = sizeof(raw) - 1;
    const char *paths[3] = {"/a", "/b", "/c"};
    int fails = 0;
    for (size_t s1 = 0; s1 <= n && fails < 5; s1++) {
        for (size_t s2 = s1; s2 <= n && fails < 5; s2++) {
            size_t avail = s1, off = 0;
            int before = test__failed;
            for (int q = 0; q < 3; q++) {
                struct moat_h1_req r;
                moat_h1_req_init(&r);
                enum moat_h1_status st;
                for (;;) {
                    size_t have = avail > off ? avail - off : 0;
                    char *buf = dup_exact(raw + off, have);
                    st = moat_h1_parse_request(&r, buf, have, NULL);
                    if (st == MOAT_H1_DONE) {
                        EXPECT_SLICE(r.path, paths[q]);
                        EXPECT_INT(r.minor, q == 2 ? 0 : 1);
                        EXPECT(r.head_len <= have);
                    }
                    free(buf);
                    if (st != MOAT_H1_AGAIN || avail == n) {
                        break;
                    }
                    avail = avail < s2 ? s2 : n;
                }
                EXPECT_INT(st, MOAT_H1_DONE);
                if (st != MOAT_H1_DONE) {
                    break;
                }
                off += r.head_len + (r.body == MOAT_H1_BODY_LENGTH ? r.content_length : 0);
            }
            EXPECT_INT(off, n);
            if (test__failed != before) {
                fprintf(stderr, "  split at %zu, %zu\n", s1, s2);
                fails++;
            }
        }
    }
}

/* ---- responses ---- */

static enum moat_h1_status resp_whole(struct moat_h1_resp *r, const char *s, size_t n, int head,
                                      char **out)
{
    *out = dup_exact(s, n);
    moat_h1_resp_init(r);
    return moat_h1_parse_response(r, *out, n, NULL, head);
}

static enum moat_h1_status resp_bytewise(struct moat_h1_resp *r, const char *s, size_t n, int head,
                                         char **out)
{
    enum moat_h1_status st = MOAT_H1_AGAIN;
    *out = NULL;
    moat_h1_resp_init(r);
    for (size_t k = 0; k <= n && st == MOAT_H1_AGAIN; k++) {
        free(*out);
        *out = dup_exact(s, k);
        st = moat_h1_parse_response(r, *out, k, NULL, head);
    }
    return st;
}

struct good_resp {
    const char *raw;
    size_t len;
    int head;
    int minor, status;
    const char *reason;
    enum moat_h1_body body;
    uint64_t cl;
    int keep_alive, upgrade;
    size_t nfields;
};

static const struct good_resp good_resps[] = {
    {R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), 0, 1, 200, "OK", MOAT_H1_BODY_LENGTH, 5, 1,
     0, 1},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, 1, 200, "OK",
     MOAT_H1_BODY_CHUNKED, 0, 1, 0, 1},
    {R("HTTP/1.1 200 OK\r\n\r\n"), 0, 1, 200, "OK", MOAT_H1_BODY_CLOSE, 0, 0, 0, 0},
    {R("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), 0, 1, 200, "", MOAT_H1_BODY_LENGTH, 0, 1, 0,
     1},
    {R("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"), 0, 1, 404, "", MOAT_H1_BODY_LENGTH, 0, 1, 0,
     1},
    {R("HTTP/1.1 500 Internal  Server\tError \xe2\x9c\x97\r\nContent-Length: 0\r\n\r\n"), 0, 1, 500,
     "Internal  Server\tError \xe2\x9c\x97", MOAT_H1_BODY_LENGTH, 0, 1, 0, 1},
    {R("HTTP/1.1 204 No Content\r\n\r\n"), 0, 1, 204, "No Content", MOAT_H1_BODY_NONE, 0, 1, 0, 0},
    {R("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), 0, 1, 304, "Not Modified",
     MOAT_H1_BODY_NONE, 0, 1, 0, 1},
    {R("HTTP/1.1 100 Continue\r\n\r\n"), 0, 1, 100, "Continue", MOAT_H1_BODY_NONE, 0, 1, 0, 0},
    {R("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), 0,
     1, 101, "Switching Protocols", MOAT_H1_BODY_NONE, 0, 1, 1, 2},
    {R("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), 1, 1, 200, "OK", MOAT_H1_BODY_NONE, 0, 1,
     0, 1},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 1, 1, 200, "OK", MOAT_H1_BODY_NONE,
     0, 1, 0, 1},
    {R("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"), 0, 0, 200, "OK", MOAT_H1_BODY_LENGTH, 2, 0,
     0, 1},
    {R("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"), 0, 0, 200, "OK",
     MOAT_H1_BODY_LENGTH, 2, 1, 0, 2},
    {R("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"), 0, 1, 200, "OK",
     MOAT_H1_BODY_LENGTH, 2, 0, 0, 2},
    {R("HTTP/1.1 599 x\r\nContent-Length: 2\r\n\r\n"), 0, 1, 599, "x", MOAT_H1_BODY_LENGTH, 2, 1, 0,
     1},
};

TEST_CASE(good_responses)
{
    for (size_t i = 0; i < sizeof(good_resps) / sizeof(good_resps[0]); i++) {
        const struct good_resp *g = &good_resps[i];
        for (int how = 0; how < 2; how++) {
            struct moat_h1_resp r;
            char *buf;
            int before = test__failed;
            enum moat_h1_status st = how ? resp_bytewise(&r, g->raw, g->len, g->head, &buf)
                                         : resp_whole(&r, g->raw, g->len, g->head, &buf);
            EXPECT_INT(st, MOAT_H1_DONE);
            if (st == MOAT_H1_DONE) {
                EXPECT_INT(r.minor, g->minor);
                EXPECT_INT(r.status, g->status);
                EXPECT_SLICE(r.reason, g->reason);
                EXPECT_INT(r.body, g->body);
                EXPECT(r.content_length == g->cl);
                EXPECT_INT(r.keep_alive, g->keep_alive);
                EXPECT_INT(r.upgrade, g->upgrade);
                EXPECT_INT(r.nfields, g->nfields);
                EXPECT_INT(r.head_len, g->len);
            }
            if (test__failed != before) {
                fprintf(stderr, "  case %zu (%s): %s\n", i, how ? "bytewise" : "whole", g->raw);
            }
            free(buf);
        }
    }
}

struct bad_resp {
    const char *raw;
    size_t len;
    enum moat_h1_status want;
    const char *what;
};

static const struct bad_resp bad_resps[] = {
    {R("HTTP/1.1 20 OK\r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1 2000 OK\r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1 200OK\r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1 2x0 OK\r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1\r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1 \r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1  200 OK\r\n\r\n"), MOAT_H1_E_BAD, "invalid status code"},
    {R("HTTP/1.1 099 Low\r\n\r\n"), MOAT_H1_E_BAD, "status code out of range"},
    {R("HTTP/1.1 600 High\r\n\r\n"), MOAT_H1_E_BAD, "status code out of range"},
    {R("HTTP/2.0 200 OK\r\n\r\n"), MOAT_H1_E_VERSION, "HTTP version not supported"},
    {R("http/1.1 200 OK\r\n\r\n"), MOAT_H1_E_BAD, "malformed HTTP version"},
    {R("HTTP/1.1 200 O\x01K\r\n\r\n"), MOAT_H1_E_BAD, "invalid character in reason phrase"},
    {R("HTTP/1.1 200 O\rK\r\n\r\n"), MOAT_H1_E_BAD, "invalid character in reason phrase"},
    {R("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), MOAT_H1_E_BAD,
     "bare LF (lines must end in CRLF)"},
    {R("\r\nHTTP/1.1 200 OK\r\n\r\n"), MOAT_H1_E_BAD, "empty start line"},
    {R("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), MOAT_H1_E_BAD,
     "obs-fold (field line starts with whitespace)"},
    {R("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"), MOAT_H1_E_BAD, "whitespace before colon"},
    {R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"), MOAT_H1_E_BAD,
     "conflicting Content-Length values"},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), MOAT_H1_E_BAD,
     "both Transfer-Encoding and Content-Length"},
    {R("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), MOAT_H1_E_BAD,
     "Transfer-Encoding in HTTP/1.0"},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), MOAT_H1_E_NOT_IMPLEMENTED,
     "transfer coding other than chunked"},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), MOAT_H1_E_NOT_IMPLEMENTED,
     "transfer coding other than chunked"},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), MOAT_H1_E_BAD,
     "chunked applied twice"},
    {R("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n"), MOAT_H1_E_BAD, "empty Transfer-Encoding"},
};

TEST_CASE(bad_responses)
{
    for (size_t i = 0; i < sizeof(bad_resps) / sizeof(bad_resps[0]); i++) {
        const struct bad_resp *b = &bad_resps[i];
        for (int how = 0; how < 2; how++) {
            struct moat_h1_resp r;
            char *buf;
            int before = test__failed;
            EXPECT_INT(how ? resp_bytewise(&r, b->raw, b->len, 0, &buf)
                           : resp_whole(&r, b->raw, b->len, 0, &buf),
                       b->want);
            EXPECT_STR(r.err_what, b->what);
            if (test__failed != before) {
                fprintf(stderr, "  case %zu (%s): %s\n", i, how ? "bytewise" : "whole", b->raw);
            }
            free(buf);
        }
    }
}

TEST_CASE(response_head_limit)
{
    struct moat_h1_limits lim = {0, 64, 0};
    struct moat_h1_resp r;
    moat_h1_resp_init(&r);
    const char raw[] = "HTTP/1.1 200 OK\r\nServer: a-rather-long-name-that-goes-on-and-on\r\n\r\n";
    EXPECT_INT(moat_h1_parse_response(&r, raw, sizeof(raw) - 1, &lim, 0), MOAT_H1_E_HEAD_TOO_LARGE);
}

TEST_CASE(status_codes)
{
    EXPECT_INT(moat_h1_status_code(MOAT_H1_DONE), 0);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_AGAIN), 0);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_BAD), 400);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_LINE_TOO_LONG), 414);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_HEAD_TOO_LARGE), 431);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_TOO_MANY_FIELDS), 431);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_VERSION), 505);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_NOT_IMPLEMENTED), 501);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_EXPECTATION), 417);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_E_BODY_TOO_LARGE), 413);
    EXPECT_INT(moat_h1_status_code(MOAT_H1_STATUS_COUNT), 0);
    for (int s = 0; s < MOAT_H1_STATUS_COUNT; s++) {
        EXPECT(strcmp(moat_h1_status_name((enum moat_h1_status)s), "?") != 0);
    }
}

int main(void)
{
    RUN(good_requests);
    RUN(fields_are_extracted);
    RUN(value_bytes_everywhere);
    RUN(target_bytes_everywhere);
    RUN(bad_requests);
    RUN(leading_lines);
    RUN(line_limit);
    RUN(head_limit);
    RUN(field_limit);
    RUN(resume_is_incremental);
    RUN(pipelined_every_split);
    RUN(good_responses);
    RUN(bad_responses);
    RUN(response_head_limit);
    RUN(status_codes);
    TEST_MAIN_END();
}
