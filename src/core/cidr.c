/*
 * cidr.c: address ranges (see cidr.h).
 */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

const char *moat_cidr_parse(const char *text, struct moat_cidr *out)
{
    char a[64];
    const char *slash = strchr(text, '/');
    size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (alen == 0 || alen >= sizeof(a)) {
        return "not an address";
    }
    memcpy(a, text, alen);
    a[alen] = '\0';
    *out = (struct moat_cidr){0};
    unsigned width;
    if (inet_pton(AF_INET, a, out->addr) == 1) {
        out->family = AF_INET;
        width = 32;
    } else if (inet_pton(AF_INET6, a, out->addr) == 1) {
        out->family = AF_INET6;
        width = 128;
    } else {
        return "not a numeric IPv4 or IPv6 address";
    }
    out->bits = width;
    if (slash != NULL) {
        const char *b = slash + 1;
        char *end = NULL;
        if (*b < '0' || *b > '9') {
            return "the prefix length after '/' must be a number";
        }
        unsigned long v = strtoul(b, &end, 10);
        if (*end != '\0' || v > width) {
            return out->family == AF_INET ? "an IPv4 prefix length is 0 to 32"
                                          : "an IPv6 prefix length is 0 to 128";
        }
        out->bits = (unsigned)v;
    }
    for (unsigned i = out->bits; i < width; i++) {
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            return "bits are set past the prefix length (write the network, e.g. 10.0.0.0/8)";
        }
    }
    return NULL;
}

static int in_range(const struct moat_cidr *c, const uint8_t *addr)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, full) != 0) {
        return 0;
    }
    if (rest == 0) {
        return 1;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

int moat_cidr_match(const struct moat_cidr *set, size_t n, int family, const uint8_t *addr)
{
    if (family == AF_INET6 && memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
        family = AF_INET; /* ::ffff:a.b.c.d is that IPv4 peer */
        addr += 12;
    }
    for (size_t i = 0; i < n; i++) {
        if (set[i].family == family && in_range(&set[i], addr)) {
            return 1;
        }
    }
    return 0;
}

int moat_cidr_match_sa(const struct moat_cidr *set, size_t n, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return moat_cidr_match(set, n, AF_INET, (const uint8_t *)&s4->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return moat_cidr_match(set, n, AF_INET6, (const uint8_t *)&s6->sin6_addr);
    }
    return 0;
}

int moat_cidr_match_text(const struct moat_cidr *set, size_t n, const char *peer)
{
    if (n == 0 || peer == NULL) {
        return 0;
    }
    uint8_t bin[16];
    if (inet_pton(AF_INET, peer, bin) == 1) {
        return moat_cidr_match(set, n, AF_INET, bin);
    }
    if (inet_pton(AF_INET6, peer, bin) == 1) {
        return moat_cidr_match(set, n, AF_INET6, bin);
    }
    char a[64];
    const char *start = peer, *end;
    if (*peer == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(peer, ':');
    }
    if (end == NULL) {
        end = peer + strlen(peer);
    }
    size_t len = (size_t)(end - start);
    if (len == 0 || len >= sizeof(a)) {
        return 0;
    }
    memcpy(a, start, len);
    a[len] = '\0';
    if (inet_pton(AF_INET, a, bin) == 1) {
        return moat_cidr_match(set, n, AF_INET, bin);
    }
    if (inet_pton(AF_INET6, a, bin) == 1) {
        return moat_cidr_match(set, n, AF_INET6, bin);
    }
    return 0;
}
