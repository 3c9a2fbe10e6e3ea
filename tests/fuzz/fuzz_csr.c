// fuzz-sources: src/pki/csr.c src/pki/names.c src/pki/key.c src/pki/fsutil.c
// fuzz-sources: src/core/fdio.c src/core/err.c
/*
 * fuzz_csr.c: CSR loading on arbitrary bytes (PEM with any labels, DER, text around blocks),
 * then the names it asks for, checked and turned into subjectAltName entries, as `moat ca
 * sign` does with a CSR from someone else (fuzz_policy covers the policy it then applies).
 * Beyond "no crash, no leak": a failure always has words and leaves no output, names that
 * pass the check always convert, and OpenSSL's error queue is never left with entries.
 */
#include "pki/csr.h"
#include "pki/names.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_csr: contract broken: %s\n", what);
        abort();
    }
}

static void check_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        require(names[i] != NULL, "NULL name");
    }
    if (n == 0 || n > MOAT_NAMES_MAX) {
        return;
    }
    struct moat_err err = {0};
    moat_rc rc = moat_names_check((const char *const *)names, n, 1, &err);
    require(moat_ok(rc) || err.msg[0] != '\0', "names check failed without words");
    if (!moat_ok(rc)) {
        return;
    }
    GENERAL_NAMES *g = moat_names_to_general((const char *const *)names, n);
    require(g != NULL, "valid names did not convert");
    GENERAL_NAMES_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_err err = {0};
    X509_REQ *req = (X509_REQ *)1;
    moat_rc rc = moat_csr_load_mem(data, size, "fuzz.csr", &req, &err);
    if (!moat_ok(rc)) {
        require(req == NULL, "failed load left a CSR");
        require(err.msg[0] != '\0', "load failed without words");
    } else {
        char **names = NULL;
        size_t n = 0;
        rc = moat_csr_names(req, &names, &n, &err);
        if (moat_ok(rc)) {
            check_names(names, n);
            moat_names_free(names, n);
        } else {
            require(names == NULL, "failed names left an array");
        }
        X509_REQ_free(req);
    }
    require(ERR_peek_error() == 0, "error queue not empty");
    return 0;
}
