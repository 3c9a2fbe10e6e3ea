// fuzz-sources: src/check/hello.c src/check/suites.c
/*
 * fuzz_hello.c: moat check's reader of a server's first flight (check/hello.c) on whatever a
 * server sends. Besides not crashing or reading past the bytes (an exact-size heap copy, so ASan
 * sees a one-byte overread), each answer keeps its promises: MORE is also the answer for every
 * proper prefix of bytes that gave MORE; a final answer uses no more bytes than it was given;
 * a ServerHello names a suite that was offered and a version at or below the one offered; BAD
 * says why. The first input byte picks the version offered.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check/hello.h"
#include "check/suites.h"

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

static const uint16_t SUITES[] = {0x1301, 0x1302, 0x1303, 0xC02F, 0xC030, 0xC02B, 0x009E, 0x002F,
                                  0x0035, 0x000A, 0x0005, 0xC013, 0x0033, 0x0034, 0xC011};

static enum moat_hello_kind read_copy(const uint8_t *p, size_t n, uint16_t v,
                                      struct moat_hello_reply *r)
{
    uint8_t *c = malloc(n ? n : 1);
    check(c != NULL);
    if (n > 0) {
        memcpy(c, p, n);
    }
    enum moat_hello_kind k =
        moat_hello_read(c, n, v, SUITES, sizeof(SUITES) / sizeof(SUITES[0]), r);
    free(c);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    static const uint16_t versions[] = {MOAT_CHECK_SSL3, MOAT_CHECK_TLS10, MOAT_CHECK_TLS11,
                                        MOAT_CHECK_TLS12, MOAT_CHECK_TLS13};
    uint16_t v = versions[data[0] % 5];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct moat_hello_reply r;
    enum moat_hello_kind k = read_copy(p, n, v, &r);
    check(k < MOAT_HELLO_KIND_COUNT);
    check(r.used <= n);
    if (k == MOAT_HELLO_SERVER || k == MOAT_HELLO_HRR) {
        int offered = 0;
        for (size_t i = 0; i < sizeof(SUITES) / sizeof(SUITES[0]); i++) {
            offered |= SUITES[i] == r.suite;
        }
        check(offered);
        check(v == MOAT_CHECK_TLS13 ? r.version == MOAT_CHECK_TLS13 : r.version <= v);
    }
    if (k == MOAT_HELLO_BAD) {
        check(r.why[0] != '\0');
    }
    if (k == MOAT_HELLO_MORE && n > 0) {
        struct moat_hello_reply r2;
        check(read_copy(p, n / 2, v, &r2) == MOAT_HELLO_MORE ||
              read_copy(p, n / 2, v, &r2) == MOAT_HELLO_SSLV2 || n / 2 == 0);
    }
    (void)moat_hello_heartbeat_answer(p, n);
    return 0;
}
