// fuzz-sources: src/http1/parse.c src/http/method.c
/*
 * fuzz_h1_response.c: libFuzzer target for the response head parser.
 *
 * Same checks as fuzz_h1_request.c: whole and split parses agree; on DONE every slice lies in the
 * head and the framing is one of the RFC 9112 §6.3 outcomes; errors carry their words.
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

static void check_done(const struct moat_h1_resp *r, const char *buf, size_t len,
                       const struct moat_h1_limits *lim, int head)
{
    CHECK(r->head_len <= len);
    CHECK(r->status >= 100 && r->status <= 599);
    CHECK(r->minor == 0 || r->minor == 1);
    check_in(r->reason, buf, r->head_len);
    CHECK(r->nfields <= lim->max_fields);
    for (size_t i = 0; i < r->nfields; i++) {
        check_in(r->fields[i].name, buf, r->head_len);
        check_in(r->fields[i].value, buf, r->head_len);
        CHECK(r->fields[i].name.len > 0);
    }
    if (head || r->status < 200 || r->status == 204 || r->status == 304) {
        CHECK(r->body == MOAT_H1_BODY_NONE);
    }
    CHECK(r->body != MOAT_H1_BODY_CLOSE || r->keep_alive == 0);
    CHECK(!r->upgrade || r->status == 101);
}

static enum moat_h1_status parse_pieces(struct moat_h1_resp *r, const uint8_t *data, size_t size,
                                        const size_t *cuts, size_t ncuts,
                                        const struct moat_h1_limits *lim, int head, char **last)
{
    enum moat_h1_status st = MOAT_H1_AGAIN;
    moat_h1_resp_init(r);
    *last = NULL;
    for (size_t k = 0; k <= ncuts && st == MOAT_H1_AGAIN; k++) {
        size_t n = k < ncuts ? cuts[k] : size;
        free(*last);
        *last = malloc(n ? n : 1);
        if (n) {
            memcpy(*last, data, n);
        }
        st = moat_h1_parse_response(r, *last, n, lim, head);
    }
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_h1_limits lim;
    moat_h1_limits_default(&lim);
    int head = (size % 3) == 0;
    if (size & 1) {
        lim.max_head_bytes = 256;
        lim.max_fields = 4;
    }
    static struct moat_h1_resp whole, split;
    char *b1, *b2;
    enum moat_h1_status s1 = parse_pieces(&whole, data, size, NULL, 0, &lim, head, &b1);
    size_t cuts[2] = {size / 2, size - size / 5};
    enum moat_h1_status s2 = parse_pieces(&split, data, size, cuts, 2, &lim, head, &b2);
    CHECK(s1 == s2);
    if (s1 == MOAT_H1_DONE) {
        check_done(&whole, b1, size, &lim, head);
        check_done(&split, b2, size, &lim, head);
        CHECK(whole.head_len == split.head_len && whole.status == split.status);
        CHECK(whole.body == split.body && whole.content_length == split.content_length);
    } else if (s1 != MOAT_H1_AGAIN) {
        CHECK(whole.err_what != NULL);
        CHECK(whole.err_pos <= size);
    }
    free(b1);
    free(b2);
    return 0;
}
