/*
 * test_coding.c: content codings (http/coding.c): Accept-Encoding negotiation as RFC 9110
 * §12.5.3 has it (q-values, "*", identity, x-gzip, several fields, malformed elements), and the
 * streaming encoders: gzip and zstd output, fed in pieces with flushes, decodes (zlib, libzstd)
 * to the input; a flush makes everything so far decodable; brotli produces a finished stream.
 */
#include "http/coding.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static const enum moat_coding all[] = {MOAT_CODING_BR, MOAT_CODING_ZSTD, MOAT_CODING_GZIP};

static enum moat_coding pick2(const char *v1, const char *v2)
{
    struct moat_field f[2] = {
        {.name = {.p = "Accept-Encoding", .len = 15}, .value = {.p = v1, .len = strlen(v1)}},
        {.name = {.p = "accept-encoding", .len = 15},
         .value = {.p = v2 ? v2 : "", .len = v2 ? strlen(v2) : 0}},
    };
    return moat_coding_choose(f, v2 ? 2 : 1, all, 3);
}

static enum moat_coding pick(const char *v)
{
    return pick2(v, NULL);
}

TEST_CASE(negotiation)
{
    EXPECT_INT(moat_coding_choose(NULL, 0, all, 3), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("gzip"), MOAT_CODING_GZIP);
    EXPECT_INT(pick("gzip, br"), MOAT_CODING_BR);
    EXPECT_INT(pick("gzip;q=1, br;q=0.999"), MOAT_CODING_GZIP);
    EXPECT_INT(pick("gzip;q=0.5,br;q=0.9"), MOAT_CODING_BR);
    EXPECT_INT(pick("br;q=0, gzip"), MOAT_CODING_GZIP);
    EXPECT_INT(pick("*"), MOAT_CODING_BR);
    EXPECT_INT(pick("*;q=0.2, br;q=0"), MOAT_CODING_ZSTD);
    EXPECT_INT(pick("*;q=0"), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("x-gzip"), MOAT_CODING_GZIP);
    EXPECT_INT(pick("GZip ; Q=0.7"), MOAT_CODING_GZIP);
    EXPECT_INT(pick(""), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("identity"), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("identity;q=1, gzip;q=0.5"), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("identity;q=0.5, gzip"), MOAT_CODING_GZIP);
    EXPECT_INT(pick("compress, deflate"), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("gzip;q=2"), MOAT_CODING_IDENTITY);      /* not a qvalue: ignored */
    EXPECT_INT(pick("gzip;q=0.1234"), MOAT_CODING_IDENTITY); /* four decimals: ignored */
    EXPECT_INT(pick("gzip;q=1.5"), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("gzip;q"), MOAT_CODING_IDENTITY);
    EXPECT_INT(pick("gzip;level=1;q=0.3, zstd;q=0.2"), MOAT_CODING_GZIP);
    EXPECT_INT(pick(",,, ,gzip,,"), MOAT_CODING_GZIP);
    EXPECT_INT(pick("gzip;q=0, gzip;q=0.5"), MOAT_CODING_GZIP);      /* named twice: its best */
    EXPECT_INT(pick2("gzip;q=0.3", "zstd;q=0.4"), MOAT_CODING_ZSTD); /* both fields count */
    /* Only what the site offers. */
    enum moat_coding only_gzip[] = {MOAT_CODING_GZIP};
    struct moat_field f = {.name = {.p = "accept-encoding", .len = 15},
                           .value = {.p = "br, zstd", .len = 8}};
    EXPECT_INT(moat_coding_choose(&f, 1, only_gzip, 1), MOAT_CODING_IDENTITY);
}

TEST_CASE(names)
{
    EXPECT_STR(moat_coding_name(MOAT_CODING_BR), "br");
    EXPECT_STR(moat_coding_suffix(MOAT_CODING_ZSTD), ".zst");
    EXPECT_STR(moat_coding_suffix(MOAT_CODING_GZIP), ".gz");
    EXPECT_INT(moat_coding_by_name("ZSTD"), MOAT_CODING_ZSTD);
    EXPECT_INT(moat_coding_by_name("deflate"), MOAT_CODING_IDENTITY);
}

static char *sample(size_t n)
{
    char *p = malloc(n);
    unsigned x = 7;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = "moat serves files "[(x >> 16) % 18];
    }
    return p;
}

/* Encode `in` in pieces of `step` with a flush after each, then the end. */
static void encode_all(enum moat_coding c, int level, const char *in, size_t n, size_t step,
                       struct moat_buf *out, size_t *after_first_flush)
{
    struct moat_encoder *e = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_encoder_new(c, level, &e, &err)));
    if (e == NULL) {
        return;
    }
    for (size_t at = 0; at < n; at += step) {
        size_t k = n - at < step ? n - at : step;
        EXPECT(moat_ok(moat_encoder_put(e, in + at, k, MOAT_ENCODER_FLUSH, out)));
        if (at == 0 && after_first_flush != NULL) {
            *after_first_flush = moat_buf_len(out);
        }
    }
    EXPECT(moat_ok(moat_encoder_put(e, NULL, 0, MOAT_ENCODER_END, out)));
    moat_encoder_free(e);
}

TEST_CASE(gzip_round_trip)
{
    size_t n = 300000;
    char *in = sample(n);
    struct moat_buf out;
    moat_buf_init(&out, 1 << 24);
    size_t first = 0;
    encode_all(MOAT_CODING_GZIP, 5, in, n, 70000, &out, &first);
    EXPECT(moat_buf_len(&out) < n / 2);
    char *back = malloc(n + 1);
    z_stream z = {0};
    EXPECT_INT(inflateInit2(&z, 15 + 16), Z_OK);
    /* What the first flush gave decodes to the whole first piece. */
    z.next_in = (Bytef *)moat_buf_rdptr(&out);
    z.avail_in = (uInt)first;
    z.next_out = (Bytef *)back;
    z.avail_out = (uInt)n + 1;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    EXPECT(rc == Z_OK);
    EXPECT_INT(z.total_out, 70000);
    z.avail_in = (uInt)(moat_buf_len(&out) - first);
    rc = inflate(&z, Z_FINISH);
    EXPECT_INT(rc, Z_STREAM_END);
    EXPECT_INT(z.total_out, n);
    EXPECT(memcmp(back, in, n) == 0);
    inflateEnd(&z);
    free(back);
    free(in);
    moat_buf_clear(&out);
}

TEST_CASE(zstd_round_trip)
{
    size_t n = 200000;
    char *in = sample(n);
    struct moat_buf out;
    moat_buf_init(&out, 1 << 24);
    encode_all(MOAT_CODING_ZSTD, 3, in, n, 4096, &out, NULL);
    char *back = malloc(n);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer ib = {moat_buf_rdptr(&out), moat_buf_len(&out), 0};
    ZSTD_outBuffer ob = {back, n, 0};
    size_t left = ZSTD_decompressStream(d, &ob, &ib);
    EXPECT_INT(left, 0);
    EXPECT_INT(ob.pos, n);
    EXPECT(memcmp(back, in, n) == 0);
    ZSTD_freeDCtx(d);
    free(back);
    free(in);
    moat_buf_clear(&out);
}

TEST_CASE(brotli_finishes_and_empty_inputs)
{
    struct moat_buf out;
    moat_buf_init(&out, 1 << 20);
    char *in = sample(50000);
    encode_all(MOAT_CODING_BR, 4, in, 50000, 10000, &out, NULL);
    EXPECT(moat_buf_len(&out) > 0 && moat_buf_len(&out) < 25000);
    free(in);
    /* An empty body is a valid stream in every coding. */
    for (int c = MOAT_CODING_GZIP; c < MOAT_CODING_COUNT; c++) {
        out.rd = out.wr = 0;
        struct moat_encoder *e = NULL;
        struct moat_err err = {0};
        EXPECT(moat_ok(moat_encoder_new((enum moat_coding)c, 1, &e, &err)));
        EXPECT(moat_ok(moat_encoder_put(e, NULL, 0, MOAT_ENCODER_END, &out)));
        EXPECT(moat_buf_len(&out) > 0);
        moat_encoder_free(e);
    }
    moat_buf_clear(&out);
}

TEST_CASE(output_limit_is_an_error)
{
    struct moat_buf out;
    moat_buf_init(&out, 100); /* cannot take even one piece */
    struct moat_encoder *e = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_encoder_new(MOAT_CODING_GZIP, 1, &e, &err)));
    EXPECT(!moat_ok(moat_encoder_put(e, "abc", 3, MOAT_ENCODER_END, &out)));
    EXPECT(!moat_ok(moat_encoder_put(e, "abc", 3, MOAT_ENCODER_END, &out))); /* stays broken */
    moat_encoder_free(e);
    moat_buf_clear(&out);
}

int main(void)
{
    RUN(negotiation);
    RUN(names);
    RUN(gzip_round_trip);
    RUN(zstd_round_trip);
    RUN(brotli_finishes_and_empty_inputs);
    RUN(output_limit_is_an_error);
    TEST_MAIN_END();
}
