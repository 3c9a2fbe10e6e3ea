// fuzz-sources: src/http1/chunked.c src/http1/parse.c src/http/method.c src/core/buf.c
/*
 * fuzz_h1_chunked.c: libFuzzer target for the in-place chunked decoder.
 *
 * Decodes the input whole, then in pieces (three cuts, and byte by byte for short inputs), each
 * piece an exact-size copy, keeping the trailers. Checks: produced <= consumed <= len; AGAIN uses
 * all input; all ways agree on status, end offset, decoded bytes and kept trailers; total counts
 * the decoded bytes; max_body holds; kept trailers stay within their bound and, once the body is
 * done, are whole lines.
 */
#include "http1/chunked.h"

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

struct run {
    enum moat_h1_status st;
    char *data; /* decoded bytes (at most size) */
    size_t data_len;
    size_t end;
    char kept[64]; /* the trailer lines kept (max_trailer_bytes is 64) */
    size_t kept_len;
};

static void decode(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts, uint64_t max_body,
                   struct run *out)
{
    struct moat_h1_chunked c;
    moat_h1_chunked_init(&c, max_body, 64);
    struct moat_buf kept;
    moat_buf_init(&kept, 64);
    c.keep_trailers = &kept;
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
        size_t consumed, produced;
        out->st = moat_h1_chunked_decode(&c, piece, len, &consumed, &produced);
        CHECK(produced <= consumed && consumed <= len);
        CHECK(out->st != MOAT_H1_AGAIN || consumed == len);
        memcpy(out->data + out->data_len, piece, produced);
        out->data_len += produced;
        out->end = from + consumed;
        free(piece);
        from = to;
    }
    CHECK(c.total == out->data_len);
    CHECK(moat_buf_len(&kept) <= 64);
    out->kept_len = moat_buf_len(&kept);
    if (out->kept_len > 0) {
        memcpy(out->kept, moat_buf_rdptr(&kept), out->kept_len);
    }
    if (out->st == MOAT_H1_DONE && out->kept_len > 0) {
        CHECK(out->kept_len >= 2 && out->kept[out->kept_len - 2] == '\r' &&
              out->kept[out->kept_len - 1] == '\n');
    }
    moat_buf_clear(&kept);
    CHECK(max_body == 0 || c.total <= max_body);
    if (out->st != MOAT_H1_AGAIN && out->st != MOAT_H1_DONE) {
        CHECK(c.err_what != NULL);
    }
}

static int same(const struct run *a, const struct run *b)
{
    return a->st == b->st && a->end == b->end && a->data_len == b->data_len &&
           memcmp(a->data, b->data, a->data_len) == 0 && a->kept_len == b->kept_len &&
           memcmp(a->kept, b->kept, a->kept_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t max_body = (size & 1) ? 32 : 0;
    struct run whole = {.data = malloc(size + 1)}, other = {.data = malloc(size + 1)};
    decode(data, size, NULL, 0, max_body, &whole);
    size_t cuts[3] = {size / 4, size / 2, size - size / 8};
    decode(data, size, cuts, 3, max_body, &other);
    CHECK(same(&whole, &other));
    if (size <= 64) {
        size_t each[64];
        for (size_t i = 0; i < size; i++) {
            each[i] = i;
        }
        decode(data, size, each, size, max_body, &other);
        CHECK(same(&whole, &other));
    }
    free(whole.data);
    free(other.data);
    return 0;
}
