// fuzz-sources: src/pki/policy.c src/pki/names.c src/pki/fsutil.c src/core/fdio.c src/core/err.c
/*
 * fuzz_policy.c: the CA signing policy file (policy.h) on arbitrary bytes, then a few names of
 * each kind checked against whatever parsed. A failure always has words and a position and
 * leaves no policy behind; OpenSSL's error queue stays empty.
 */
#include "pki/policy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_policy: contract broken: %s\n", what);
        abort();
    }
}

static void fuzz_policy(const uint8_t *data, size_t size)
{
    struct moat_policy *p = (struct moat_policy *)1;
    struct moat_err err = {0};
    moat_rc rc = moat_policy_parse((const char *)data, size, "policy", &p, &err);
    if (!moat_ok(rc)) {
        require(p == NULL, "failed parse left a policy");
        require(err.msg[0] != '\0' && err.where[0] != '\0', "parse failed without words");
        return;
    }
    static const char *const probes[] = {"a.example.com", "*.example.com",   "10.1.2.3",
                                         "fd00::1",       "ada@example.com", "spiffe://x.test/a"};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        (void)moat_policy_check(p, "policy", &probes[i], 1, 30, i >= 4, NULL);
    }
    moat_policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_policy(data, size);
    require(ERR_peek_error() == 0, "error queue not empty");
    return 0;
}
