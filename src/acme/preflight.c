/*
 * preflight.c: the checks before an ACME order (see preflight.h).
 */
#include "acme/preflight.h"

#include "acme/internal.h"
#include "client/get.h"
#include "tls/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CAA_MAX 32

/* The issuer domain of a CAA issue value ("ca.example; accounturi=..."), trimmed; "" for ";". */
static void caa_domain(const char *v, char *out, size_t outlen)
{
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    size_t n = strcspn(v, "; \t");
    if (n >= outlen) {
        n = outlen - 1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
}

/* The value of parameter `key` in a CAA issue value into out; 0 when absent. */
static int caa_param(const char *v, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *p = strchr(v, ';'); p != NULL; p = strchr(p + 1, ';')) {
        const char *q = p + 1;
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        if (strncasecmp(q, key, kl) == 0 && q[kl] == '=') {
            q += kl + 1;
            size_t n = strcspn(q, "; \t");
            if (n >= outlen) {
                n = outlen - 1;
            }
            memcpy(out, q, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

int moat_acme_caa_allows(const struct moat_caa *rrs, size_t n, int wildcard, const char *const *ids,
                         size_t nids, const char *account_uri, char *why, size_t whylen)
{
    static const char *const known[] = {"issue",    "issuewild",    "iodef",       "issuemail",
                                        "issuevmc", "contactemail", "contactphone"};
    int has_wild = 0;
    for (size_t i = 0; i < n; i++) {
        int k = 0;
        for (size_t j = 0; j < sizeof(known) / sizeof(known[0]); j++) {
            k |= strcasecmp(rrs[i].tag, known[j]) == 0;
        }
        if ((rrs[i].flags & 128) && !k) {
            /* RFC 8659 §4.1: a critical property the CA does not understand forbids issuance */
            snprintf(why, whylen, "a critical CAA property \"%s\" that no CA may ignore",
                     rrs[i].tag);
            return 0;
        }
        has_wild |= strcasecmp(rrs[i].tag, "issuewild") == 0;
    }
    /* §4.3: for a wildcard, issuewild replaces issue when there is one. */
    const char *tag = wildcard && has_wild ? "issuewild" : "issue";
    char allowed[400] = "";
    int relevant = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(rrs[i].tag, tag) != 0) {
            continue;
        }
        relevant = 1;
        char dom[256];
        caa_domain(rrs[i].value, dom, sizeof(dom));
        if (dom[0] != '\0') {
            size_t l = strlen(allowed);
            snprintf(allowed + l, sizeof(allowed) - l, "%s%s", l ? ", " : "", dom);
        }
        if (dom[0] == '\0') {
            continue;
        }
        int ours = nids == 0; /* a CA that does not say its identity: assume the best */
        for (size_t j = 0; j < nids; j++) {
            ours |= strcasecmp(dom, ids[j]) == 0;
        }
        if (!ours) {
            continue;
        }
        char acct[512];
        if (account_uri != NULL && caa_param(rrs[i].value, "accounturi", acct, sizeof(acct)) &&
            strcmp(acct, account_uri) != 0) {
            snprintf(why, whylen,
                     "the CAA record for %s allows only the account %s, not this one (%s)", dom,
                     acct, account_uri);
            continue;
        }
        return 1;
    }
    if (!relevant) {
        return 1; /* only iodef and the like: anyone may issue */
    }
    if (allowed[0] == '\0') {
        snprintf(why, whylen, "CAA records forbid every CA (%s \";\")", tag);
    } else if (why[0] == '\0') {
        snprintf(why, whylen, "CAA records allow only %s (%s), and this CA is %s", allowed, tag,
                 nids ? ids[0] : "not among them");
    }
    return 0;
}

/* 1 when name has an address (A or AAAA, CNAMEs followed by the resolver), 0 when it has none
 * (with the rcode's words), -1 when the lookup failed. */
static int has_address(ldns_resolver *r, const char *name, char *why, size_t whylen)
{
    ldns_rdf *dn = NULL;
    if (ldns_str2rdf_dname(&dn, name) != LDNS_STATUS_OK) {
        return -1;
    }
    int found = 0, failed = 0, nx = 0;
    ldns_rr_type types[] = {LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA};
    for (size_t i = 0; i < 2 && !found; i++) {
        ldns_pkt *ans = ldns_resolver_query(r, dn, types[i], LDNS_RR_CLASS_IN, LDNS_RD);
        if (ans == NULL) {
            failed = 1;
            continue;
        }
        ldns_pkt_rcode rc = ldns_pkt_get_rcode(ans);
        nx |= rc == LDNS_RCODE_NXDOMAIN;
        failed |= rc != LDNS_RCODE_NOERROR && rc != LDNS_RCODE_NXDOMAIN;
        ldns_rr_list *l = ldns_pkt_rr_list_by_type(ans, types[i], LDNS_SECTION_ANSWER);
        found = l != NULL && ldns_rr_list_rr_count(l) > 0;
        ldns_rr_list_deep_free(l);
        ldns_pkt_free(ans);
    }
    ldns_rdf_deep_free(dn);
    if (found) {
        return 1;
    }
    if (nx) {
        snprintf(why, whylen, "%s does not exist in DNS (NXDOMAIN)", name);
        return 0;
    }
    if (failed) {
        return -1;
    }
    snprintf(why, whylen, "%s has no A or AAAA record", name);
    return 0;
}

moat_rc moat_acme_preflight_names(struct moat_acme *a, const struct moat_acme_preflight *p,
                                  const char *const *names, size_t n, struct moat_err *err)
{
    ldns_resolver *r = NULL;
    if (p->resolver != NULL) {
        MOAT_TRY(moat_client_dns_resolver(p->resolver, &r, err));
        ldns_resolver_set_recursive(r, true);
    } else if (ldns_resolver_new_frm_file(&r, NULL) != LDNS_STATUS_OK) {
        moat_acme_say(a, 1, "pre-flight: no DNS resolver (/etc/resolv.conf); checks skipped");
        return MOAT_RC_OK;
    }
    moat_rc rc = MOAT_RC_OK;
    for (size_t i = 0; moat_ok(rc) && i < n; i++) {
        const char *name = names[i];
        int wildcard = strncmp(name, "*.", 2) == 0;
        const char *base = wildcard ? name + 2 : name;
        if (moat_tls_client_host_ip(base)) {
            continue; /* RFC 8738: no CAA for addresses */
        }
        char why[600] = "";
        if (p->need_address && !wildcard) {
            int h = has_address(r, base, why, sizeof(why));
            if (h == 0) {
                rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                                  "pre-flight: %s, so the CA cannot reach this server for it: "
                                  "add an A (or AAAA) record for %s pointing here, or use "
                                  "dns-01",
                                  why, base);
                break;
            }
            if (h < 0) {
                moat_acme_say(a, 1, "pre-flight: cannot look up %s; the CA will check", base);
            }
        }
        struct moat_caa caa[CAA_MAX];
        size_t ncaa = 0;
        char owner[300] = "";
        int c = moat_client_caa_lookup(r, base, caa, CAA_MAX, &ncaa, owner, sizeof(owner));
        if (c < 0) {
            moat_acme_say(a, 1, "pre-flight: the CAA lookup for %s failed; the CA will check",
                          base);
            continue;
        }
        why[0] = '\0';
        if (c == 1 &&
            !moat_acme_caa_allows(caa, ncaa, wildcard, (const char *const *)a->dir.caa_identities,
                                  a->dir.ncaa_identities, a->kid, why, sizeof(why))) {
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "pre-flight: %s may not be issued by this CA: %s (at %s); add a "
                              "CAA record for it, e.g. %s. CAA 0 %s \"%s\"",
                              name, why, owner, owner, wildcard ? "issuewild" : "issue",
                              a->dir.ncaa_identities ? a->dir.caa_identities[0] : "the-ca.example");
        }
    }
    ldns_resolver_deep_free(r);
    return rc;
}

struct probe_body {
    char buf[512];
    size_t n;
};

static int probe_cb(void *arg, const void *p, size_t n)
{
    struct probe_body *b = arg;
    size_t room = sizeof(b->buf) - 1 - b->n;
    size_t take = n < room ? n : room;
    memcpy(b->buf + b->n, p, take);
    b->n += take;
    b->buf[b->n] = '\0';
    return 0;
}

/* The first address of name (A, else AAAA) through resolver r into out; 0 when none. */
static int first_address(ldns_resolver *r, const char *name, char *out, size_t outlen)
{
    ldns_rdf *dn = NULL;
    if (ldns_str2rdf_dname(&dn, name) != LDNS_STATUS_OK) {
        return 0;
    }
    int found = 0;
    ldns_rr_type types[] = {LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA};
    for (size_t i = 0; i < 2 && !found; i++) {
        ldns_pkt *ans = ldns_resolver_query(r, dn, types[i], LDNS_RR_CLASS_IN, LDNS_RD);
        ldns_rr_list *l = ans ? ldns_pkt_rr_list_by_type(ans, types[i], LDNS_SECTION_ANSWER) : NULL;
        if (l != NULL && ldns_rr_list_rr_count(l) > 0) {
            char *s = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(l, 0), 0));
            if (s != NULL) {
                snprintf(out, outlen, "%s", s);
                found = 1;
            }
            free(s);
        }
        ldns_rr_list_deep_free(l);
        ldns_pkt_free(ans);
    }
    ldns_rdf_deep_free(dn);
    return found;
}

moat_rc moat_acme_preflight_http01(const struct moat_acme_preflight *p, const char *name,
                                   unsigned port, const char *path, const char *expect,
                                   struct moat_err *err)
{
    struct moat_client_opts o;
    moat_client_opts_init(&o);
    char url[600];
    snprintf(url, sizeof(url), "http://%s:%u%s", name, port, path);
    o.url = url;
    o.timeout_ms = 10000;
    o.headers[o.nheaders++] = "User-Agent: moat/" MOAT_VERSION " (ACME pre-flight)";
    if (p->resolver != NULL) {
        /* Resolve as the pre-flight does, not as this machine's own resolver would. */
        ldns_resolver *r = NULL;
        MOAT_TRY(moat_client_dns_resolver(p->resolver, &r, err));
        ldns_resolver_set_recursive(r, true);
        char addr[64];
        int ok = first_address(r, name, addr, sizeof(addr));
        ldns_resolver_deep_free(r);
        if (ok && strlen(name) < sizeof(o.resolve[0].host)) {
            snprintf(o.resolve[0].host, sizeof(o.resolve[0].host), "%s", name);
            o.resolve[0].port = port;
            snprintf(o.resolve[0].addr, sizeof(o.resolve[0].addr), "%s", addr);
            o.nresolve = 1;
        }
    }
    struct moat_client_result *res = calloc(1, sizeof(*res));
    if (res == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    struct probe_body b = {.n = 0};
    struct moat_err e = {0};
    moat_rc rc = moat_client_get_run(&o, probe_cb, &b, res, &e);
    const struct moat_client_hop *h = res->nhops ? &res->hops[res->nhops - 1] : NULL;
    if (!moat_ok(rc) || h == NULL) {
        char line[800] = "";
        if (h != NULL) {
            moat_client_hop_cause_line(h, line, sizeof(line));
        }
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "pre-flight: http://%s:%u/ does not reach this server (%s), so HTTP-01 "
                          "would fail at the CA: open port %u to this moat, or use tls-alpn-01 "
                          "or dns-01 (`preflight off` if a port forward makes this check wrong)",
                          name, port, line[0] ? line : e.msg, port);
    } else if (h->status != 200 || strcmp(b.buf, expect) != 0) {
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "pre-flight: http://%s:%u%s answered HTTP %d%s%.80s, not this moat's "
                          "challenge answer: another server has port %u of %s (or a redirect "
                          "leads elsewhere); HTTP-01 would fail at the CA",
                          name, port, path, h->status, b.n ? ": " : "", b.buf, port, name);
    }
    moat_client_result_clear(res);
    free(res);
    moat_client_opts_clear(&o);
    return rc;
}
