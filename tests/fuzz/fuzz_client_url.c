// fuzz-sources: src/client/url.c src/core/err.c
/*
 * fuzz_client_url.c: the client's URL parser and the redirect join. A redirect's Location comes
 * from the server, so it is untrusted input: the input is "base URL\nLocation".
 */
#include "client/url.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    char *loc = strchr(s, '\n');
    if (loc != NULL) {
        *loc++ = '\0';
    }
    struct moat_client_url u, j;
    char out[MOAT_CLIENT_TARGET_MAX + 300];
    if (moat_ok(moat_client_url_parse(s, &u, NULL))) {
        /* Invariants of a parsed URL. */
        if (u.target[0] != '/' || u.port == 0 || u.port > 65535 || u.host[0] == '\0') {
            abort();
        }
        moat_client_url_format(&u, out, sizeof(out));
        if (loc != NULL && moat_ok(moat_client_url_join(&u, loc, &j, NULL))) {
            if (j.target[0] != '/' || strlen(j.target) >= sizeof(j.target)) {
                abort();
            }
            /* A joined relative path never climbs above the root. */
            if (strstr(j.target, "/../") == j.target) {
                abort();
            }
            moat_client_url_format(&j, out, sizeof(out));
        }
    }
    free(s);
    return 0;
}
