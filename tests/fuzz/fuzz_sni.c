// fuzz-sources: src/tls/sni.c src/core/err.c
/*
 * fuzz_sni.c: the server_name extension parser and the SNI table lookup, fed with what a client
 * controls. Each input is tried as an extension body and as a raw host name; a match must agree
 * with a slow reference: same name modulo case and one trailing dot, or exactly one label more
 * than a wildcard's suffix; a miss must be a miss for the reference too.
 */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "tls/sni.h"

static struct moat_tls_sni *table;
static SSL_CTX *ctx;
static int sites[8];
static const char *const names[] = {"first.example", "a.example", "*.wild.example", "x-y_z.test",
                                    "*.b.a.example", "localhost", "*.w.localhost",  "127.0.0.1"};

static void setup(void)
{
    ctx = SSL_CTX_new(TLS_server_method());
    table = moat_tls_sni_new();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!moat_ok(moat_tls_sni_add(table, names[i], ctx, &sites[i], NULL))) {
            __builtin_trap();
        }
    }
    if (!moat_ok(moat_tls_sni_finish(table, NULL))) {
        __builtin_trap();
    }
}

static int eq_nocase(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && (alen == 0 || strncasecmp(a, b, alen) == 0);
}

/* The reference: does `name` (raw bytes) name the configured `pattern`? */
static int reference_match(const char *name, size_t len, const char *pattern)
{
    if (memchr(name, '\0', len) != NULL) {
        return 0;
    }
    if (len > 0 && name[len - 1] == '.') {
        len--;
    }
    if (pattern[0] != '*') {
        return eq_nocase(name, len, pattern);
    }
    const char *dot = memchr(name, '.', len);
    if (dot == NULL || dot == name || dot - name > 63) {
        return 0;
    }
    for (const char *p = name; p < dot; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
            return 0;
        }
    }
    return eq_nocase(dot + 1, len - (size_t)(dot + 1 - name), pattern + 2);
}

static void check(const char *name, size_t len)
{
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(table, name, len);
    if (e == NULL) {
        __builtin_trap();
    }
    if (!e->matched) {
        if (e->site != &sites[0]) {
            __builtin_trap(); /* the fallback is the first site */
        }
        /* Then nothing may match. */
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (reference_match(name, len, names[i])) {
                __builtin_trap();
            }
        }
        return;
    }
    if (!reference_match(name, len, e->name)) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (table == NULL) {
        setup();
    }
    const unsigned char *name = NULL;
    size_t len = 0;
    if (moat_tls__sni_parse_ext(data, size, &name, &len)) {
        if (name < data || len > size || name + len > data + size) {
            __builtin_trap();
        }
        check((const char *)name, len);
    }
    check((const char *)data, size);
    return 0;
}
