/*
 * dns.c: see dns.h.
 */
#include "client/dns.h"

#include <stdio.h>
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

moat_rc moat_client_dns_resolver(const char *spec, ldns_resolver **out, struct moat_err *err)
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

int moat_client_caa_lookup(ldns_resolver *r, const char *name, struct moat_caa *out, size_t max,
                           size_t *n, char *owner, size_t ownerlen)
{
    *n = 0;
    for (const char *p = name; p != NULL && *p; p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
        if (strchr(p, '.') == NULL) {
            break; /* not the TLD itself */
        }
        ldns_rdf *dn = NULL;
        if (ldns_str2rdf_dname(&dn, p) != LDNS_STATUS_OK) {
            return -1;
        }
        ldns_pkt *ans = ldns_resolver_query(r, dn, LDNS_RR_TYPE_CAA, LDNS_RR_CLASS_IN, LDNS_RD);
        ldns_rdf_deep_free(dn);
        if (ans == NULL) {
            return -1;
        }
        ldns_pkt_rcode rc = ldns_pkt_get_rcode(ans);
        if (rc != LDNS_RCODE_NOERROR && rc != LDNS_RCODE_NXDOMAIN) {
            ldns_pkt_free(ans);
            return -1;
        }
        ldns_rr_list *caa = ldns_pkt_rr_list_by_type(ans, LDNS_RR_TYPE_CAA, LDNS_SECTION_ANSWER);
        for (size_t i = 0; caa != NULL && i < ldns_rr_list_rr_count(caa) && *n < max; i++) {
            ldns_rr *rr = ldns_rr_list_rr(caa, i);
            if (ldns_rr_rd_count(rr) < 3) {
                continue;
            }
            struct moat_caa *c = &out[*n];
            c->flags = ldns_rdf2native_int8(ldns_rr_rdf(rr, 0));
            char *tag = ldns_rdf2str(ldns_rr_rdf(rr, 1));
            char *val = ldns_rdf2str(ldns_rr_rdf(rr, 2));
            if (tag != NULL && val != NULL) {
                snprintf(c->tag, sizeof(c->tag), "%s", tag);
                /* ldns writes the value quoted */
                size_t vl = strlen(val);
                if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
                    val[vl - 1] = '\0';
                    snprintf(c->value, sizeof(c->value), "%s", val + 1);
                } else {
                    snprintf(c->value, sizeof(c->value), "%s", val);
                }
                (*n)++;
            }
            free(tag);
            free(val);
        }
        ldns_rr_list_deep_free(caa);
        ldns_pkt_free(ans);
        if (*n > 0) {
            snprintf(owner, ownerlen, "%s", p);
            return 1;
        }
    }
    return 0;
}
