// fuzz-sources: src/core/path.c
/*
 * fuzz_path.c: moat_path_normalize on arbitrary bytes. Beyond "no crash", it checks the
 * promises the static handler relies on: the output starts with one "/", holds no ".", ".."
 * or empty segment, no byte below 0x20, no DEL, no backslash, no NUL, fits the buffer, and
 * normalising it again (when it has no "%" left to decode) changes nothing.
 */
#include "core/path.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

static void check_output(const char *out, size_t n, size_t cap)
{
    check(n >= 1 && n < cap);
    check(out[0] == '/');
    check(out[n] == '\0');
    check(memchr(out, '\0', n) == NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        check(c >= 0x20 && c != 0x7F && c != '\\');
    }
    /* Walk the segments between slashes. */
    size_t i = 1;
    while (i < n) {
        size_t j = i;
        while (j < n && out[j] != '/') {
            j++;
        }
        size_t seg = j - i;
        check(seg > 0); /* no "//" */
        check(!(seg == 1 && out[i] == '.'));
        check(!(seg == 2 && out[i] == '.' && out[i + 1] == '.'));
        i = j + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Two buffer sizes: one that always fits, one that often does not. */
    size_t caps[2] = {size + 1, size / 2 + 1};
    for (int k = 0; k < 2; k++) {
        size_t cap = caps[k];
        char *out = malloc(cap);
        if (out == NULL) {
            return 0;
        }
        size_t n = 7;
        moat_rc rc = moat_path_normalize((const char *)data, size, out, cap, &n);
        if (moat_ok(rc)) {
            check_output(out, n, cap);
            check(n <= size);
            /* The input ended with "/" => so does the output. */
            if (size > 0 && data[size - 1] == '/') {
                check(out[n - 1] == '/');
            }
            if (memchr(out, '%', n) == NULL) {
                char again[4096];
                size_t n2 = 0;
                if (n < sizeof(again)) {
                    check(moat_ok(moat_path_normalize(out, n, again, sizeof(again), &n2)));
                    check(n2 == n && memcmp(again, out, n) == 0);
                }
            }
        } else {
            check(n == 0);
            /* A LIMIT failure only ever happens with the small buffer. */
            check(rc.kind == MOAT_E_PEER || (k == 1 && rc.kind == MOAT_E_LIMIT));
        }
        free(out);
    }
    return 0;
}
