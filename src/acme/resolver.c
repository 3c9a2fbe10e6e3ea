/*
 * resolver.c: DNS resolvers for acme/ (see internal.h), on ldns.
 */
#include "acme/internal.h"

#include <stdlib.h>
#include <string.h>

/* "host", "host:port", "[v6]:port" -> address text and port. */
static int split_server(const char *spec, char *addr, size_t alen, uint16_t *port)
{
    *port = 53;
    const char *p = spec, *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL) {
            return 0;
        }
        p++;
        if (end[1] == ':') {
            *port = (uint16_t)strtoul(end + 2, NULL, 10);
        }
    } else {
        end = strrchr(p, ':');
        if (end != NULL && strchr(p, ':') != end) {
            end = NULL; /* a bare IPv6 address */
        }
        if (end != NULL) {
            *port = (uint16_t)strtoul(end + 1, NULL, 10);
        } else {
            end = p + strlen(p);
        }
    }
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= alen || *port == 0) {
        return 0;
    }
    memcpy(addr, p, n);
    addr[n] = '\0';
    return 1;
}

moat_rc moat_acme__resolver(const char *spec, ldns_resolver **out, struct moat_err *err)
{
    *out = NULL;
    char addr[80];
    uint16_t port;
    if (!split_server(spec, addr, sizeof(addr), &port)) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "bad DNS server \"%.100s\" (write an address: 10.0.0.53, 127.0.0.1:5353 or "
                  "[::1]:53)",
                  spec);
    }
    ldns_rdf *a =
        ldns_rdf_new_frm_str(strchr(addr, ':') ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A, addr);
    if (a == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "bad DNS server \"%.100s\": not an IP address (moat sends updates to an "
                  "address, not a name)",
                  spec);
    }
    ldns_resolver *r = ldns_resolver_new();
    if (r == NULL || ldns_resolver_push_nameserver(r, a) != LDNS_STATUS_OK) {
        ldns_rdf_deep_free(a);
        ldns_resolver_deep_free(r);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    ldns_rdf_deep_free(a);
    ldns_resolver_set_port(r, port);
    ldns_resolver_set_recursive(r, false);
    ldns_resolver_set_timeout(r, (struct timeval){.tv_sec = 5});
    ldns_resolver_set_retry(r, 2);
    ldns_resolver_set_random(r, false);
    *out = r;
    return MOAT_RC_OK;
}
