/*
 * test.h: the tiny unit-test kit. Each test file is one executable; each EXPECT prints both
 * values on failure and counts; main() returns non-zero when anything failed. The runner
 * (scripts/test-all) runs each binary in its own process with a timeout and reads the closing
 * line "unit <name>: N passed, M failed".
 */
#ifndef MOAT_TEST_H
#define MOAT_TEST_H

#include <stdio.h>
#include <string.h>

static int test__passed, test__failed;
static const char *test__name = "?";

#define TEST_CASE(name) static void name(void)
#define RUN(name)                                                                                  \
    do {                                                                                           \
        int test__before = test__failed;                                                           \
        test__name = #name;                                                                        \
        name();                                                                                    \
        if (test__failed == test__before) {                                                        \
            test__passed++;                                                                        \
        }                                                                                          \
    } while (0)

#define TEST__FAIL(fmt, ...)                                                                       \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: %s: " fmt "\n", __FILE__, __LINE__, test__name, __VA_ARGS__);      \
        test__failed++;                                                                            \
    } while (0)

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            TEST__FAIL("expected %s", #cond);                                                      \
        }                                                                                          \
    } while (0)
#define EXPECT_INT(a, b)                                                                           \
    do {                                                                                           \
        long long test__a = (long long)(a), test__b = (long long)(b);                              \
        if (test__a != test__b) {                                                                  \
            TEST__FAIL("%s == %lld, expected %s == %lld", #a, test__a, #b, test__b);               \
        }                                                                                          \
    } while (0)
#define EXPECT_STR(a, b)                                                                           \
    do {                                                                                           \
        const char *test__a = (a), *test__b = (b);                                                 \
        if (test__a == NULL || test__b == NULL || strcmp(test__a, test__b) != 0) {                 \
            TEST__FAIL("%s == \"%s\", expected \"%s\"", #a, test__a ? test__a : "(null)",          \
                       test__b ? test__b : "(null)");                                              \
        }                                                                                          \
    } while (0)
#define EXPECT_SLICE(s, lit)                                                                       \
    do {                                                                                           \
        moat_slice test__s = (s);                                                                  \
        if (test__s.len != strlen(lit) || memcmp(test__s.p, (lit), test__s.len) != 0) {            \
            TEST__FAIL("%s == \"%.*s\", expected \"%s\"", #s, (int)test__s.len,                    \
                       test__s.p ? test__s.p : "", (lit));                                         \
        }                                                                                          \
    } while (0)

/* Closing line read by scripts/test-all. */
#define TEST_MAIN_END()                                                                            \
    do {                                                                                           \
        printf("unit %s: %d passed, %d failed\n", __FILE__, test__passed, test__failed);           \
        return test__failed ? 1 : 0;                                                               \
    } while (0)

#endif
