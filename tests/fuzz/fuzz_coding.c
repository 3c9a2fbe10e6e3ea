// fuzz-sources: src/http/coding.c src/http/field.c src/core/buf.c src/core/err.c
/*
 * fuzz_coding.c: Accept-Encoding negotiation (moat_coding_choose) on arbitrary field values,
 * split into up to three fields at bytes the input picks. Beyond "no crash": the answer is
 * identity or one of the codings offered, and offering nothing always gives identity.
 */
#include "http/coding.h"

#include <stdint.h>
#include <string.h>

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum moat_coding offer[] = {MOAT_CODING_ZSTD, MOAT_CODING_GZIP};
    struct moat_field f[3];
    size_t nf = 0, at = 0;
    while (nf < 3 && at <= size) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl != NULL ? (size_t)(nl - data) : size;
        f[nf].name = (moat_slice){.p = "accept-encoding", .len = 15};
        f[nf].value = (moat_slice){.p = (const char *)data + at, .len = end - at};
        nf++;
        at = end + 1;
    }
    enum moat_coding c = moat_coding_choose(f, nf, offer, 2);
    check(c == MOAT_CODING_IDENTITY || c == MOAT_CODING_ZSTD || c == MOAT_CODING_GZIP);
    check(moat_coding_choose(f, nf, offer, 0) == MOAT_CODING_IDENTITY);
    return 0;
}
