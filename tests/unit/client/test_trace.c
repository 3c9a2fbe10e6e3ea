/*
 * test_trace.c: the recorder's afterthoughts on a synthetic message list: which messages were
 * encrypted in TLS 1.2 and 1.3 (HelloRetryRequest and the 1.3 dummy ChangeCipherSpec
 * included), what is post-handshake, the lookups, and the names of messages and alerts.
 */
#include "client/trace.h"

#include "test.h"

#include <stdlib.h>

struct spec {
    enum moat_trace_dir dir;
    int ct;
    int hs;
    int hrr;
};

static void load(struct moat_trace *t, const struct spec *s, size_t n)
{
    moat_trace_init(t);
    t->msgs = calloc(n, sizeof(*t->msgs));
    t->n = t->cap = n;
    for (size_t i = 0; i < n; i++) {
        t->msgs[i].dir = s[i].dir;
        t->msgs[i].content_type = s[i].ct;
        t->msgs[i].hs_type = s[i].hs;
        t->msgs[i].hrr = s[i].hrr;
        t->msgs[i].len = 10;
        t->msgs[i].ms = (double)i;
    }
}

#define O MOAT_TRACE_OUT
#define I MOAT_TRACE_IN

TEST_CASE(tls13_with_hello_retry)
{
    static const struct spec s[] = {
        {O, 22, 1, 0},  /* ClientHello */
        {I, 22, 2, 1},  /* HelloRetryRequest */
        {O, 20, -1, 0}, /* dummy CCS before the second ClientHello */
        {O, 22, 1, 0},  /* ClientHello again: still in clear */
        {I, 22, 2, 0},  /* ServerHello */
        {I, 20, -1, 0}, /* dummy CCS */
        {I, 22, 8, 0},  /* EncryptedExtensions */
        {I, 22, 11, 0}, /* Certificate */
        {I, 22, 15, 0}, /* CertificateVerify */
        {I, 22, 20, 0}, /* Finished */
        {O, 22, 20, 0}, /* Finished */
        {I, 22, 4, 0},  /* NewSessionTicket */
        {O, 21, -1, 0}, /* close_notify */
    };
    struct moat_trace t;
    load(&t, s, sizeof(s) / sizeof(s[0]));
    moat_trace_finish(&t, TLS1_3_VERSION);
    static const int enc[] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1};
    static const int post[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
    for (size_t i = 0; i < t.n; i++) {
        EXPECT_INT(t.msgs[i].encrypted, enc[i]);
        EXPECT_INT(t.msgs[i].post_handshake, post[i]);
    }
    EXPECT(moat_trace_find_hs(&t, I, 2) == &t.msgs[1]);
    EXPECT(moat_trace_find_hs(&t, O, 15) == NULL);
    EXPECT(moat_trace_find_alert(&t, O) == &t.msgs[12]);
    EXPECT(moat_trace_find_alert(&t, I) == NULL);
    moat_trace_clear(&t);
    EXPECT(t.msgs == NULL && t.n == 0);
}

TEST_CASE(tls12_encrypts_after_each_sides_ccs)
{
    static const struct spec s[] = {
        {O, 22, 1, 0},  {I, 22, 2, 0},  {I, 22, 11, 0}, {I, 22, 12, 0},
        {I, 22, 14, 0}, {O, 22, 16, 0}, {O, 20, -1, 0}, {O, 22, 20, 0},
        {I, 22, 4, 0},  {I, 20, -1, 0}, {I, 22, 20, 0}, {I, 21, -1, 0},
    };
    struct moat_trace t;
    load(&t, s, sizeof(s) / sizeof(s[0]));
    moat_trace_finish(&t, TLS1_2_VERSION);
    static const int enc[] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1};
    static const int post[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    for (size_t i = 0; i < t.n; i++) {
        EXPECT_INT(t.msgs[i].encrypted, enc[i]);
        EXPECT_INT(t.msgs[i].post_handshake, post[i]);
    }
    /* Finishing twice (after the close_notify was added) gives the same answer. */
    moat_trace_finish(&t, TLS1_2_VERSION);
    EXPECT_INT(t.msgs[7].encrypted, 1);
    moat_trace_clear(&t);
}

TEST_CASE(no_server_hello_nothing_encrypted)
{
    static const struct spec s[] = {{O, 22, 1, 0}, {I, 21, -1, 0}};
    struct moat_trace t;
    load(&t, s, 2);
    moat_trace_finish(&t, 0);
    EXPECT_INT(t.msgs[0].encrypted, 0);
    EXPECT_INT(t.msgs[1].encrypted, 0);
    moat_trace_clear(&t);
}

TEST_CASE(plain_bytes_counted_and_first_kept)
{
    struct moat_trace t;
    moat_trace_init(&t);
    moat_trace_note_plain_in(&t, "HTTP/1.1 400 Bad Request\r\n", 26);
    char more[100];
    memset(more, 'x', sizeof(more));
    moat_trace_note_plain_in(&t, more, sizeof(more));
    moat_trace_note_plain_out(&t, 7);
    EXPECT_INT(t.bytes_in, 126);
    EXPECT_INT(t.bytes_out, 7);
    EXPECT_INT(t.nfirst_in, MOAT_TRACE_FIRST_BYTES);
    EXPECT(memcmp(t.first_in, "HTTP/1.1 400", 12) == 0);
    EXPECT(t.first_in[30] == 'x');
    EXPECT(moat_trace_elapsed(&t) >= 0);
    moat_trace_clear(&t);
}

TEST_CASE(names)
{
    char b[32];
    EXPECT_STR(moat_trace_hs_name(1, 0, b, sizeof(b)), "ClientHello");
    EXPECT_STR(moat_trace_hs_name(2, 0, b, sizeof(b)), "ServerHello");
    EXPECT_STR(moat_trace_hs_name(2, 1, b, sizeof(b)), "HelloRetryRequest");
    EXPECT_STR(moat_trace_hs_name(8, 0, b, sizeof(b)), "EncryptedExtensions");
    EXPECT_STR(moat_trace_hs_name(12, 0, b, sizeof(b)), "ServerKeyExchange");
    EXPECT_STR(moat_trace_hs_name(99, 0, b, sizeof(b)), "handshake type 99");
    EXPECT_STR(moat_trace_alert_name(40, b, sizeof(b)), "handshake_failure");
    EXPECT_STR(moat_trace_alert_name(116, b, sizeof(b)), "certificate_required");
    EXPECT_STR(moat_trace_alert_name(48, b, sizeof(b)), "unknown_ca");
    EXPECT_STR(moat_trace_alert_name(250, b, sizeof(b)), "alert 250");
    EXPECT(moat_trace_alert_words(112) != NULL);
    EXPECT(moat_trace_alert_words(0) == NULL);
    EXPECT(moat_trace_alert_words(250) == NULL);
}

int main(void)
{
    RUN(tls13_with_hello_retry);
    RUN(tls12_encrypts_after_each_sides_ccs);
    RUN(no_server_hello_nothing_encrypted);
    RUN(plain_bytes_counted_and_first_kept);
    RUN(names);
    TEST_MAIN_END();
}
