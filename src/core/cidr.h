/*
 * cidr.h: address ranges ("10.0.0.0/8", "::1", "2001:db8::/32") and whether an address falls in
 * one: who may send forwarded fields (trusted_proxies), who may speak PROXY protocol to a
 * listener. An IPv4 address reached over IPv6 (::ffff:a.b.c.d) matches IPv4 ranges, so a
 * dual-stack listener does not turn trusted peers into strangers.
 */
#ifndef MOAT_CORE_CIDR_H
#define MOAT_CORE_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct moat_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned bits; /* prefix length */
};

/* Parse "ADDR" or "ADDR/BITS" (ADDR numeric; bits within the family's width; host bits must
 * be zero, as "10.1.2.3/8" is a typo more often than a wish). NULL on success, else what is
 * wrong (static words). */
const char *moat_cidr_parse(const char *text, struct moat_cidr *out);

/* Whether `family`/`addr` (4 or 16 bytes) lies in one of the n ranges. */
int moat_cidr_match(const struct moat_cidr *set, size_t n, int family, const uint8_t *addr);

/* The same for a socket address (AF_INET, AF_INET6; anything else matches nothing). */
int moat_cidr_match_sa(const struct moat_cidr *set, size_t n, const struct sockaddr *sa);

/* The same for an address as text: "192.0.2.1", "::1", or with a port: "192.0.2.1:80",
 * "[::1]:443". */
int moat_cidr_match_text(const struct moat_cidr *set, size_t n, const char *peer);

#endif
