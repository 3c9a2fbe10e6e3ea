// fuzz-sources: src/http1/parse.c src/http/method.c
/*
 * fuzz_h1_request.c: libFuzzer target for the request head parser.
 *
 * Parses the input whole, then again delivered in three pieces, each call on an exact-size copy (so
 * ASan sees any read past `len`). Checks: both ways give the same status and head; on DONE head_len
 * <= len and every slice lies inside the buffer (path may be the static "/"); on an error err_what
 * is set and err_pos <= len. A broken invariant aborts (libFuzzer reports it).
 */
#include "http1/parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_in(moat_slice s, const char *buf, size_t len)
{
    CHECK(s.p != NULL);
    CHECK(s.p >= buf && s.p + s.len <= buf + len);
}

static void check_done(const struct moat_h1_req *r, const char *buf, size_t len,
                       const struct moat_h1_limits *lim)
{
    CHECK(r->head_len <= len);
    CHECK(r->head_len >= 4);
    CHECK(memcmp(buf + r->head_len - 4, "\r\n\r\n", 4) == 0);
    check_in(r->method, buf, r->head_len);
    CHECK(r->method.len > 0);
    check_in(r->target, buf, r->head_len);
    CHECK(r->target.len > 0);
    if (!(r->path.len == 1 && r->path.p[0] == '/' && r->target_form == MOAT_H1_T_ABSOLUTE)) {
        check_in(r->path, buf, r->head_len);
    }
    check_in(r->query, buf, r->head_len);
    check_in(r->host, buf, r->head_len);
    CHECK(r->minor == 0 || r->minor == 1);
    CHECK(r->nfields <= lim->max_fields);
    for (size_t i = 0; i < r->nfields; i++) {
        check_in(r->fields[i].name, buf, r->head_len);
        check_in(r->fields[i].value, buf, r->head_len);
        CHECK(r->fields[i].name.len > 0);
        CHECK(memchr(r->fields[i].value.p, '\r', r->fields[i].value.len) == NULL);
        CHECK(memchr(r->fields[i].value.p, '\n', r->fields[i].value.len) == NULL);
    }
    CHECK(r->minor == 0 || r->host.len > 0);
    CHECK(r->body != MOAT_H1_BODY_CLOSE);
    CHECK(r->body != MOAT_H1_BODY_CHUNKED || r->minor == 1);
}

static enum moat_h1_status parse_pieces(struct moat_h1_req *r, const uint8_t *data, size_t size,
                                        const size_t *cuts, size_t ncuts,
                                        const struct moat_h1_limits *lim, char **last)
{
    enum moat_h1_status st = MOAT_H1_AGAIN;
    moat_h1_req_init(r);
    *last = NULL;
    for (size_t k = 0; k <= ncuts && st == MOAT_H1_AGAIN; k++) {
        size_t n = k < ncuts ? cuts[k] : size;
        free(*last);
        *last = malloc(n ? n : 1);
        if (n) {
            memcpy(*last, data, n);
        }
        st = moat_h1_parse_request(r, *last, n, lim);
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    if (size & 1) {
        /* small limits too, so the limit paths are fuzzed without huge inputs */
        lim.max_line_bytes = 64;
        lim.max_head_bytes = 256;
        lim.max_fields = 4;
    }
    static struct moat_h1_req whole, split;
    char *b1, *b2;
    enum moat_h1_status s1 = parse_pieces(&whole, data, size, NULL, 0, &lim, &b1);
    size_t cuts[2] = {size / 3, size - size / 4};
    enum moat_h1_status s2 = parse_pieces(&split, data, size, cuts, 2, &lim, &b2);
    CHECK(s1 == s2);
    CHECK(moat_h1_status_code(s1) == 0 || s1 > MOAT_H1_AGAIN);
    if (s1 == MOAT_H1_DONE) {
        check_done(&whole, b1, size, &lim);
        check_done(&split, b2, size, &lim);
        CHECK(whole.head_len == split.head_len);
        CHECK(whole.nfields == split.nfields);
        CHECK(whole.body == split.body && whole.content_length == split.content_length);
        CHECK(whole.method.p - b1 == split.method.p - b2);
    } else if (s1 != MOAT_H1_AGAIN) {
        CHECK(whole.err_what != NULL && split.err_what != NULL);
        CHECK(whole.err_pos <= size);
        CHECK(moat_h1_status_code(s1) >= 400);
    }
    free(b1);
    free(b2);
    return 0;
}
