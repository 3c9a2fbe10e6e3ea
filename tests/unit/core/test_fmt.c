/* Unit tests for core/fmt.c: the decimal and hex forms every answer's status and length take. */
#include "core/fmt.h"
#include "test.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

TEST_CASE(dec_matches_printf_at_every_digit_count)
{
    /* 0, each power of ten and its neighbours, and the extremes. */
    uint64_t vs[80];
    size_t nv = 0;
    vs[nv++] = 0;
    vs[nv++] = UINT64_MAX;
    vs[nv++] = UINT64_MAX - 1;
    for (uint64_t p = 1; nv + 3 <= sizeof(vs) / sizeof(vs[0]); p *= 10) {
        vs[nv++] = p - 1;
        vs[nv++] = p;
        vs[nv++] = p + 1;
        if (p > UINT64_MAX / 10) {
            break;
        }
    }
    for (size_t i = 0; i < nv; i++) {
        char got[MOAT_FMT_DEC_MAX + 1], want[32];
        memset(got, '#', sizeof(got));
        size_t n = moat_fmt_dec(got, vs[i]);
        snprintf(want, sizeof(want), "%" PRIu64, vs[i]);
        EXPECT_INT(n, strlen(want));
        EXPECT(n <= MOAT_FMT_DEC_MAX && memcmp(got, want, n) == 0);
        EXPECT(got[n] == '#'); /* nothing written past the digits */
    }
}

TEST_CASE(hex_matches_printf)
{
    uint64_t vs[] = {0, 1, 15, 16, 255, 0xdeadbeef, UINT64_MAX};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
        char got[MOAT_FMT_HEX_MAX + 1], want[32];
        size_t n = moat_fmt_hex(got, vs[i]);
        snprintf(want, sizeof(want), "%" PRIx64, vs[i]);
        EXPECT_INT(n, strlen(want));
        EXPECT(memcmp(got, want, n) == 0);
    }
}

int main(void)
{
    RUN(dec_matches_printf_at_every_digit_count);
    RUN(hex_matches_printf);
    TEST_MAIN_END();
}
