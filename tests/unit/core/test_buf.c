/* Unit tests for core/buf.c: growth within the limit, compaction, over-filling. */
#include "core/buf.h"
#include "test.h"

TEST_CASE(append_grows_up_to_limit)
{
    struct moat_buf b;
    moat_buf_init(&b, 3000);
    char chunk[1000];
    memset(chunk, 'x', sizeof(chunk));
    EXPECT(moat_ok(moat_buf_append(&b, chunk, 1000)));
    EXPECT(moat_ok(moat_buf_append(&b, chunk, 1000)));
    EXPECT(moat_ok(moat_buf_append(&b, chunk, 1000)));
    EXPECT_INT(moat_buf_len(&b), 3000);
    EXPECT(b.cap <= 3000);
    moat_rc rc = moat_buf_append(&b, "y", 1); /* over-fill: the limit is the protocol limit */
    EXPECT_INT(rc.kind, MOAT_E_LIMIT);
    EXPECT_INT(moat_buf_len(&b), 3000);
    moat_buf_clear(&b);
    EXPECT(b.base == NULL);
}

TEST_CASE(consume_and_compact_make_room)
{
    struct moat_buf b;
    moat_buf_init(&b, 1024);
    char chunk[1024];
    memset(chunk, 'a', sizeof(chunk));
    EXPECT(moat_ok(moat_buf_append(&b, chunk, 1024)));
    moat_buf_consume(&b, 1000);
    EXPECT_INT(moat_buf_len(&b), 24);
    EXPECT(moat_ok(moat_buf_append(&b, "hello", 5))); /* compacts instead of growing */
    EXPECT_INT(b.rd, 0);
    EXPECT_INT(moat_buf_len(&b), 29);
    EXPECT(memcmp(moat_buf_rdptr(&b) + 24, "hello", 5) == 0);
    moat_buf_consume(&b, 29);
    EXPECT_INT(b.rd, 0); /* empty rewinds */
    EXPECT_INT(b.wr, 0);
    moat_buf_clear(&b);
}

TEST_CASE(printf_appends_and_respects_limit)
{
    struct moat_buf b;
    moat_buf_init(&b, 16);
    EXPECT(moat_ok(moat_buf_printf(&b, "%d-%s", 42, "ok")));
    EXPECT_INT(moat_buf_len(&b), 5);
    EXPECT(memcmp(moat_buf_rdptr(&b), "42-ok", 5) == 0);
    moat_rc rc = moat_buf_printf(&b, "%s", "this is far too long");
    EXPECT_INT(rc.kind, MOAT_E_LIMIT);
    EXPECT_INT(moat_buf_len(&b), 5);
    moat_buf_clear(&b);
}

TEST_CASE(reserve_zero_limit_refuses)
{
    struct moat_buf b;
    moat_buf_init(&b, 0);
    EXPECT_INT(moat_buf_reserve(&b, 1).kind, MOAT_E_LIMIT);
    EXPECT(moat_ok(moat_buf_append(&b, "", 0)));
    moat_buf_clear(&b);
}

TEST_CASE(append_after_growth_keeps_bytes)
{
    /* append's inline path and buf.c's slow path (grow, compact) in turn. */
    struct moat_buf b;
    moat_buf_init(&b, 1 << 20);
    for (int i = 0; i < 5000; i++) {
        char c = (char)('a' + i % 26);
        EXPECT(moat_ok(moat_buf_append(&b, &c, 1)));
        if (i % 1000 == 999) {
            moat_buf_consume(&b, 10);
        }
    }
    EXPECT_INT(moat_buf_len(&b), 4950);
    EXPECT(moat_buf_rdptr(&b)[0] == 'a' + 50 % 26); /* five times 10 consumed */
    EXPECT(moat_buf_rdptr(&b)[4949] == 'a' + 4999 % 26);
    moat_buf_clear(&b);
}

int main(void)
{
    RUN(append_grows_up_to_limit);
    RUN(consume_and_compact_make_room);
    RUN(printf_appends_and_respects_limit);
    RUN(reserve_zero_limit_refuses);
    RUN(append_after_growth_keeps_bytes);
    TEST_MAIN_END();
}
