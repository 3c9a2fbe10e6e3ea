// fuzz-sources: src/acme/*.c src/state/*.c src/client/*.c src/tls/*.c src/pki/*.c
// fuzz-sources: src/cert/*.c src/http1/*.c src/http/*.c src/core/*.c
/*
 * fuzz_acme.c: what an ACME CA and DNS hand moat, parsed without a network: response heads
 * (Replay-Nonce, Location, Retry-After, Link with its relations), ARI's RFC 3339 times, CAA
 * record sets, base64url (EAB keys) and store key parts (names from a config). The first byte
 * picks the parser; the rest is its input. Nothing may crash, hang, leak or read out of bounds,
 * and the answers must keep their own promises (checked below).
 */
#include "acme/ari.h"
#include "acme/client.h"
#include "acme/jws.h"
#include "acme/preflight.h"
#include "state/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_head(const char *s)
{
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    r.head = strdup(s);
    if (r.head == NULL) {
        return;
    }
    char v[2048];
    static const char *const names[] = {"Replay-Nonce", "Location", "Retry-After", "Link",
                                        "Content-Type"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (size_t k = 0; k < 4 && moat_acme_resp_field(&r, names[i], k, v, sizeof(v)); k++) {
            if (strlen(v) >= sizeof(v)) {
                abort();
            }
        }
    }
    static const char *const rels[] = {"alternate", "up", "index", "terms-of-service"};
    for (size_t i = 0; i < sizeof(rels) / sizeof(rels[0]); i++) {
        for (size_t k = 0; k < 8 && moat_acme_resp_link(&r, rels[i], k, v, sizeof(v)); k++) {
            if (strchr(v, '<') != NULL || strchr(v, '>') != NULL) {
                abort(); /* a target never holds its own delimiters */
            }
        }
    }
    moat_acme_resp_clear(&r);
}

static void fuzz_time(const uint8_t *p, size_t n)
{
    time_t t = 0;
    if (moat_ok(moat_acme_ari_parse_time((const char *)p, n, &t))) {
        /* an accepted time is a real one: year 0..9999 */
        if (t < -62167219200LL || t > 253402300799LL) {
            abort();
        }
    }
}

static void fuzz_caa(const char *s)
{
    /* "flags tag value" per line */
    struct moat_caa rrs[16];
    size_t n = 0;
    const char *p = s;
    while (*p && n < 16) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char line[600];
        if (l >= sizeof(line)) {
            l = sizeof(line) - 1;
        }
        memcpy(line, p, l);
        line[l] = '\0';
        struct moat_caa *c = &rrs[n];
        memset(c, 0, sizeof(*c));
        char *sp1 = strchr(line, ' ');
        char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (sp1 != NULL && sp2 != NULL) {
            *sp1 = *sp2 = '\0';
            c->flags = (unsigned)strtoul(line, NULL, 10) & 255;
            snprintf(c->tag, sizeof(c->tag), "%s", sp1 + 1);
            snprintf(c->value, sizeof(c->value), "%s", sp2 + 1);
            n++;
        }
        if (e == NULL) {
            break;
        }
        p = e + 1;
    }
    static const char *const ids[] = {"letsencrypt.org", "pki.goog"};
    char why[300];
    for (int wild = 0; wild < 2; wild++) {
        for (size_t nids = 0; nids <= 2; nids++) {
            why[0] = '\0';
            int ok = moat_acme_caa_allows(rrs, n, wild, ids, nids, "https://ca/acct/1", why,
                                          sizeof(why));
            if (!ok && why[0] == '\0') {
                abort(); /* a refusal always says why */
            }
        }
    }
}

static void fuzz_b64(const char *s)
{
    unsigned char *out = NULL;
    size_t len = 0;
    if (moat_ok(moat_b64url_decode(s, &out, &len, NULL))) {
        char *again = moat_b64url(out, len);
        /* decoding then encoding gives the input back, padding aside */
        size_t sl = strlen(s);
        while (sl > 0 && s[sl - 1] == '=') {
            sl--;
        }
        if (again == NULL || strlen(again) != sl || memcmp(again, s, sl) != 0) {
            /* a non-canonical last character (unused bits set) decodes to the same bytes as
             * its canonical form: only then may the texts differ */
            if (again == NULL || strlen(again) != sl || memcmp(again, s, sl - 1) != 0) {
                abort();
            }
        }
        free(again);
        free(out);
    }
}

static void fuzz_key_part(const char *s)
{
    char out[MOAT_STORE_KEY_MAX * 3];
    if (moat_store_key_part(s, out, sizeof(out)) != NULL && strlen(out) < MOAT_STORE_KEY_MAX) {
        if (!moat_ok(moat_store_key_check(out, 0, NULL))) {
            abort(); /* every key part short enough for a key is a valid key */
        }
    }
    (void)moat_ok(moat_store_key_check(s, 0, NULL));
    (void)moat_ok(moat_store_key_check(s, 1, NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384) {
        return 0;
    }
    char *s = malloc(size);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0:
        fuzz_head(s);
        break;
    case 1:
        fuzz_time(data + 1, size - 1);
        break;
    case 2:
        fuzz_caa(s);
        break;
    case 3:
        fuzz_b64(s);
        break;
    default:
        fuzz_key_part(s);
        break;
    }
    free(s);
    return 0;
}
