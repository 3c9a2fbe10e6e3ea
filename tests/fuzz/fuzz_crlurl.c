// fuzz-sources: src/pki/crlurl.c src/pki/fsutil.c src/core/fdio.c src/core/err.c
/*
 * fuzz_crlurl.c: a CA folder's `settings` file (crlurl.h) on arbitrary bytes, and the same bytes
 * as one CRL URL. A failure always has words and a position and leaves nothing behind; what
 * parses holds only URLs the check accepts, whose path starts with '/'; OpenSSL's error queue
 * stays empty.
 */
#include "pki/crlurl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

static void require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_crlurl: contract broken: %s\n", what);
        abort();
    }
}

static void check_url(const char *url)
{
    require(moat_ok(moat_crlurl_check(url, NULL)), "parsed a URL the check refuses");
    require(moat_crlurl_path(url)[0] == '/', "path without '/'");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct moat_crlurl_settings st = {(char *)1, (char *)1};
    struct moat_err err = {0};
    moat_rc rc = moat_crlurl_parse((const char *)data, size, "settings", &st, &err);
    if (moat_ok(rc)) {
        if (st.crl_url != NULL) {
            check_url(st.crl_url);
        }
        if (st.root_crl_url != NULL) {
            check_url(st.root_crl_url);
        }
        moat_crlurl_clear(&st);
    } else {
        require(st.crl_url == NULL && st.root_crl_url == NULL, "failed parse left settings");
        require(err.msg[0] != '\0' && err.where[0] != '\0', "parse failed without words");
    }
    char *s = malloc(size + 1);
    if (s != NULL) {
        memcpy(s, data, size);
        s[size] = '\0';
        struct moat_err uerr = {0};
        if (moat_ok(moat_crlurl_check(s, &uerr))) {
            require(moat_crlurl_path(s)[0] == '/', "path without '/'");
        } else {
            require(uerr.msg[0] != '\0', "refused without words");
        }
        free(s);
    }
    require(ERR_peek_error() == 0, "error queue not empty");
    return 0;
}
