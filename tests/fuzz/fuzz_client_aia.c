// fuzz-sources: src/client/aia.c src/core/err.c
/*
 * fuzz_client_aia.c: the reader of what an AIA caIssuers URL served (DER, PKCS#7, PEM). Those
 * bytes come from whatever web server the certificate names, so they are untrusted input.
 * Beyond "no crash, no leak", it checks the contract: success gives 1..MOAT_CLIENT_AIA_MAX_CERTS
 * certificates and a form, a failure gives words and no output, and OpenSSL's error queue is
 * always left empty; the caIssuers URLs of whatever was read are taken too.
 */
#include "client/aia.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_client_aia: contract broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_err err = {0};
    STACK_OF(X509) *sk = NULL;
    const char *form = NULL;
    moat_rc rc = moat_client_aia_parse(data, size, &sk, &form, &err);
    require((rc.kind == MOAT_OK) == (sk != NULL), "result and output agree");
    require(form != NULL, "form is never NULL");
    require(rc.kind == MOAT_OK || err.msg[0] != '\0', "a failure has a message");
    require(ERR_peek_error() == 0, "OpenSSL error queue left empty");
    if (sk != NULL) {
        int n = sk_X509_num(sk);
        require(n >= 1 && n <= MOAT_CLIENT_AIA_MAX_CERTS, "1..max certificates");
        require(form[0] != '\0', "a success names its form");
        char urls[MOAT_CLIENT_AIA_MAX_URLS][MOAT_CLIENT_AIA_URL_MAX];
        for (int i = 0; i < n; i++) {
            size_t k = moat_client_aia_urls(sk_X509_value(sk, i), urls, MOAT_CLIENT_AIA_MAX_URLS);
            require(k <= MOAT_CLIENT_AIA_MAX_URLS, "at most max URLs");
            for (size_t j = 0; j < k; j++) {
                require(strlen(urls[j]) > 0 && strlen(urls[j]) < MOAT_CLIENT_AIA_URL_MAX,
                        "URL length");
            }
            require(ERR_peek_error() == 0, "urls: OpenSSL error queue left empty");
        }
        sk_X509_pop_free(sk, X509_free);
    }
    return 0;
}
