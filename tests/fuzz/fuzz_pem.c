// fuzz-sources: src/pki/key.c src/pki/chain.c src/pki/text.c src/pki/names.c
// fuzz-sources: src/pki/verify.c src/pki/fsutil.c src/core/fdio.c src/core/err.c
/*
 * fuzz_pem.c: key and certificate-file loading on arbitrary bytes (PEM with any labels and
 * headers, DER, text around blocks), then the start-up checks and name matching on whatever
 * loaded. Beyond "no crash, no leak", it checks the contract: a failure always has words and
 * leaves no output, and OpenSSL's error queue is never left with entries for the next caller.
 */
#include "pki/chain.h"
#include "pki/key.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_pem: contract broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_err err = {0};
    EVP_PKEY *key = NULL;
    moat_rc rc = moat_key_load_mem(data, size, "fuzz.pem", &key, &err);
    require((rc.kind == MOAT_OK) == (key != NULL), "key: result and output agree");
    require(rc.kind == MOAT_OK || err.msg[0] != '\0', "key: a failure has a message");
    require(rc.kind == MOAT_OK || strcmp(err.where, "fuzz.pem") == 0, "key: failure names file");
    require(ERR_peek_error() == 0, "key: OpenSSL error queue left empty");

    struct moat_err err2 = {0};
    struct moat_chain *c = NULL;
    rc = moat_chain_load_mem(data, size, "fuzz.pem", &c, &err2);
    require((rc.kind == MOAT_OK) == (c != NULL), "chain: result and output agree");
    require(rc.kind == MOAT_OK || err2.msg[0] != '\0', "chain: a failure has a message");
    require(ERR_peek_error() == 0, "chain: OpenSSL error queue left empty");
    if (c != NULL) {
        require(c->leaf != NULL && c->extra != NULL, "chain: invariant leaf/extra");
        struct moat_err err3 = {0};
        enum moat_verify_kind kind = MOAT_V_KIND_COUNT;
        rc = moat_chain_check_kind(c, key, NULL, (time_t)1700000000, &kind, &err3);
        require((rc.kind == MOAT_OK) == (kind == MOAT_V_OK), "check: kind agrees with result");
        require(rc.kind == MOAT_OK || err3.msg[0] != '\0', "check: a failure has a message");
        require(ERR_peek_error() == 0, "check: OpenSSL error queue left empty");
        (void)moat_chain_covers_name(c, "localhost");
        (void)moat_chain_covers_name(c, "a.example.com");
        (void)moat_chain_covers_name(c, "[::1]");
        ERR_clear_error();
        moat_chain_free(c);
    }
    char desc[64];
    (void)moat_key_describe(key, desc, sizeof(desc));
    EVP_PKEY_free(key);
    return 0;
}
