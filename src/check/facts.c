/*
 * facts.c: the parts of a check's record that need no connection (scan.h): version indices,
 * the HSTS field's directives, which names are public. Shared by the live probe (scan.c) and
 * the offline readers (offline.c).
 */
#include "check/scan.h"

#include "check/suites.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

uint16_t moat_check_ver_wire(enum moat_check_ver v)
{
    static const uint16_t wire[MOAT_VER_COUNT] = {0x0002,           MOAT_CHECK_SSL3,
                                                  MOAT_CHECK_TLS10, MOAT_CHECK_TLS11,
                                                  MOAT_CHECK_TLS12, MOAT_CHECK_TLS13};
    return (unsigned)v < MOAT_VER_COUNT ? wire[v] : 0;
}

void moat_check_hsts_parse(struct moat_check_scan *s, const char *v)
{
    s->hsts_max_age = -1;
    if (v == NULL) {
        return;
    }
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", v);
    char *save = NULL;
    for (char *d = strtok_r(tmp, ";", &save); d != NULL; d = strtok_r(NULL, ";", &save)) {
        while (*d == ' ' || *d == '\t') {
            d++;
        }
        if (strncasecmp(d, "max-age=", 8) == 0) {
            const char *n = d + 8 + (d[8] == '"');
            char *end = NULL;
            long a = strtol(n, &end, 10);
            s->hsts_max_age = end != n && a >= 0 ? a : 0;
        } else if (strncasecmp(d, "includeSubDomains", 17) == 0) {
            s->hsts_subdomains = 1;
        } else if (strncasecmp(d, "preload", 7) == 0) {
            s->hsts_preload = 1;
        }
    }
}

int moat_check_public_name(const char *host)
{
    static const char *const local[] = {".localhost", ".test",     ".example", ".invalid",
                                        ".local",     ".internal", ".lan",     ".home.arpa"};
    unsigned char b[16];
    if (inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1 ||
        strchr(host, '.') == NULL) {
        return 0;
    }
    size_t hl = strlen(host);
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        size_t l = strlen(local[i]);
        if (hl >= l && strcasecmp(host + hl - l, local[i]) == 0) {
            return 0;
        }
    }
    return 1;
}
