/*
 * dns.c: the DNS-01 solver (see dns.h).
 *
 * ldns ownership, which its headers leave to its sources: ldns_update_pkt_new takes the zone
 * name (it becomes the question's owner) but copies the record lists it is given, so the
 * caller frees those, records and all.
 */
#include "acme/dns.h"

#include "acme/internal.h"
#include "acme/jws.h"
#include "core/log.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ldns/ldns.h>
#include <openssl/evp.h>

#define HOOK_TIMEOUT_S 120
#define MAX_CHECK 16

extern char **environ;

struct dns_solver {
    struct moat_acme_solver base;
    char *server, *zone, *tsig_name, *tsig_alg, *tsig_secret, *hook, *resolver;
    char *check[MAX_CHECK];
    size_t ncheck;
    unsigned timeout_s, ttl;
    /* What present published, for cleanup (which gets only the name and the token). */
    struct {
        char token[260], fqdn[300], value[64];
        int used;
    } pub[16];
};

moat_rc moat_acme_dns01_value(const char *key_authz, char *out, size_t outlen, struct moat_err *err)
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(key_authz, strlen(key_authz), md, &n, EVP_sha256(), NULL)) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "SHA-256 failed");
    }
    char *b = moat_b64url(md, n);
    if (b == NULL || strlen(b) >= outlen) {
        free(b);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "DNS-01 value buffer too small");
    }
    memcpy(out, b, strlen(b) + 1);
    free(b);
    return MOAT_RC_OK;
}

static const char *rcode_words(ldns_pkt_rcode rc)
{
    switch (rc) {
    case LDNS_RCODE_REFUSED:
        return "REFUSED: the server does not allow this update (its ACL for the key or the "
               "address)";
    case LDNS_RCODE_NOTAUTH:
        return "NOTAUTH: the server is not authoritative for the zone, or did not accept the "
               "TSIG key (name, algorithm and secret must be the server's)";
    case LDNS_RCODE_NOTZONE:
        return "NOTZONE: the name is not inside the zone";
    case LDNS_RCODE_SERVFAIL:
        return "SERVFAIL: the server failed";
    case LDNS_RCODE_FORMERR:
        return "FORMERR: the server did not understand the update";
    case LDNS_RCODE_NOTIMPL:
        return "NOTIMP: the server does not take dynamic updates";
    default:
        return "the server refused the update";
    }
}

/* The zone of fqdn as the update server sees it: the closest enclosing name with an SOA. */
static moat_rc find_zone(ldns_resolver *r, const char *fqdn, char *out, size_t outlen,
                         struct moat_err *err)
{
    for (const char *p = fqdn; p != NULL && *p; p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
        ldns_rdf *name = NULL;
        if (ldns_str2rdf_dname(&name, p) != LDNS_STATUS_OK) {
            continue;
        }
        ldns_pkt *ans = ldns_resolver_query(r, name, LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, 0);
        int found = 0;
        if (ans != NULL && ldns_pkt_get_rcode(ans) == LDNS_RCODE_NOERROR) {
            ldns_rr_list *soa =
                ldns_pkt_rr_list_by_type(ans, LDNS_RR_TYPE_SOA, LDNS_SECTION_ANSWER);
            for (size_t i = 0; soa != NULL && i < ldns_rr_list_rr_count(soa); i++) {
                found |= ldns_dname_compare(ldns_rr_owner(ldns_rr_list_rr(soa, i)), name) == 0;
            }
            ldns_rr_list_deep_free(soa);
        }
        ldns_pkt_free(ans);
        ldns_rdf_deep_free(name);
        if (found) {
            snprintf(out, outlen, "%s", p);
            return MOAT_RC_OK;
        }
    }
    MOAT_FAIL(err, MOAT_E_CONFIG,
              "the DNS server has no zone holding %s (set the zone: dns_zone, or --dns-zone)",
              fqdn);
}

/* Add (del 0) or delete (del 1) the TXT record. */
static moat_rc rfc2136(struct dns_solver *d, const char *fqdn, const char *value, int del,
                       struct moat_err *err)
{
    ldns_resolver *r = NULL;
    MOAT_TRY(moat_client_dns_resolver(d->server, &r, err));
    char zone[300];
    moat_rc rc = MOAT_RC_OK;
    if (d->zone != NULL) {
        snprintf(zone, sizeof(zone), "%s", d->zone);
    } else {
        rc = find_zone(r, fqdn, zone, sizeof(zone), err);
    }
    char text[700];
    snprintf(text, sizeof(text), "%s. %u IN TXT \"%s\"", fqdn, d->ttl, value ? value : "");
    ldns_rr *rr = NULL;
    ldns_rdf *zrdf = NULL;
    /* value NULL: an update with no change at all, which a server answers only when the zone
     * and the key are right (the pre-flight check). */
    if (moat_ok(rc) &&
        ((value != NULL && ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL) != LDNS_STATUS_OK) ||
         ldns_str2rdf_dname(&zrdf, zone) != LDNS_STATUS_OK)) {
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "the record %.300s or the zone %.100s is not valid DNS", text, zone);
    }
    ldns_pkt *p = NULL, *ans = NULL;
    if (moat_ok(rc)) {
        if (del && rr != NULL) {
            ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE); /* RFC 2136 §2.5.4: delete this RR */
            ldns_rr_set_ttl(rr, 0);
        }
        ldns_rr_list *up = ldns_rr_list_new();
        if (rr != NULL) {
            ldns_rr_list_push_rr(up, rr);
        }
        rr = NULL;
        p = ldns_update_pkt_new(zrdf, LDNS_RR_CLASS_IN, NULL, up, NULL);
        zrdf = NULL;
        ldns_rr_list_deep_free(up); /* ldns_update_pkt_new cloned the records */
        if (p == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        }
    }
    if (moat_ok(rc) && d->tsig_name != NULL) {
        ldns_resolver_set_tsig_keyname(r, d->tsig_name);
        ldns_resolver_set_tsig_keydata(r, d->tsig_secret);
        ldns_resolver_set_tsig_algorithm(r, d->tsig_alg);
        if (ldns_update_pkt_tsig_add(p, r) != LDNS_STATUS_OK) {
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "signing the DNS update with the TSIG key %s (%s) failed: check "
                              "the algorithm and that the secret is base64",
                              d->tsig_name, d->tsig_alg);
        }
    }
    if (moat_ok(rc)) {
        ldns_status s = ldns_resolver_send_pkt(&ans, r, p);
        if (s != LDNS_STATUS_OK) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the DNS update to %s for %s failed: %s", d->server, fqdn,
                              ldns_get_errorstr_by_id(s));
        } else if (ldns_pkt_get_rcode(ans) != LDNS_RCODE_NOERROR) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the DNS server %s refused the update of %s in zone %s: %s",
                              d->server, fqdn, zone, rcode_words(ldns_pkt_get_rcode(ans)));
        }
    }
    ldns_pkt_free(ans);
    ldns_pkt_free(p);
    ldns_rr_free(rr);
    ldns_rdf_deep_free(zrdf);
    ldns_resolver_deep_free(r);
    return rc;
}

static moat_rc run_hook(struct dns_solver *d, const char *verb, const char *fqdn, const char *value,
                        struct moat_err *err)
{
    char *argv[] = {d->hook, (char *)verb, (char *)fqdn, (char *)value, NULL};
    pid_t pid;
    int e = posix_spawnp(&pid, d->hook, NULL, NULL, argv, environ);
    if (e != 0) {
        return moat_err_sys(err, MOAT_E_CONFIG, e, __FILE__, __LINE__, "cannot run the DNS hook %s",
                            d->hook);
    }
    int status = 0;
    for (int waited = 0;; waited++) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            return moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__,
                                "waiting for the DNS hook failed");
        }
        if (waited >= HOOK_TIMEOUT_S * 10) {
            kill(pid, SIGKILL);
            (void)waitpid(pid, &status, 0);
            MOAT_FAIL(err, MOAT_E_LIMIT, "the DNS hook %s %s %s did not finish in %d s", d->hook,
                      verb, fqdn, HOOK_TIMEOUT_S);
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the DNS hook `%s %s %s ...` failed (%s %d)", d->hook, verb,
                  fqdn, WIFEXITED(status) ? "exit status" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    return MOAT_RC_OK;
}

/* Does the server at spec answer the TXT value for fqdn (asked without recursion)? */
static int server_sees(const char *spec, const char *fqdn, const char *value)
{
    ldns_resolver *r = NULL;
    if (!moat_ok(moat_client_dns_resolver(spec, &r, NULL))) {
        return 0;
    }
    ldns_rdf *name = NULL;
    int seen = 0;
    char want[120];
    snprintf(want, sizeof(want), "\"%s\"", value);
    if (ldns_str2rdf_dname(&name, fqdn) == LDNS_STATUS_OK) {
        ldns_pkt *ans = ldns_resolver_query(r, name, LDNS_RR_TYPE_TXT, LDNS_RR_CLASS_IN, 0);
        ldns_rr_list *txt =
            ans ? ldns_pkt_rr_list_by_type(ans, LDNS_RR_TYPE_TXT, LDNS_SECTION_ANSWER) : NULL;
        for (size_t i = 0; txt != NULL && i < ldns_rr_list_rr_count(txt); i++) {
            ldns_rr *rr = ldns_rr_list_rr(txt, i);
            char *s = ldns_rr_rd_count(rr) > 0 ? ldns_rdf2str(ldns_rr_rdf(rr, 0)) : NULL;
            seen |= s != NULL && strcmp(s, want) == 0;
            free(s);
        }
        ldns_rr_list_deep_free(txt);
        ldns_pkt_free(ans);
        ldns_rdf_deep_free(name);
    }
    ldns_resolver_deep_free(r);
    return seen;
}

/* The zone's authoritative servers, as "ADDR" (port 53), from the system's resolver. */
static size_t zone_servers(const char *resolver, const char *fqdn, char out[][80], size_t max)
{
    ldns_resolver *r = NULL;
    if (resolver != NULL) {
        if (!moat_ok(moat_client_dns_resolver(resolver, &r, NULL))) {
            return 0;
        }
        ldns_resolver_set_recursive(r, true);
    } else if (ldns_resolver_new_frm_file(&r, NULL) != LDNS_STATUS_OK) {
        return 0;
    }
    size_t n = 0;
    for (const char *p = fqdn; n == 0 && p != NULL && *p;
         p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
        ldns_rdf *name = NULL;
        if (ldns_str2rdf_dname(&name, p) != LDNS_STATUS_OK) {
            continue;
        }
        ldns_pkt *ans = ldns_resolver_query(r, name, LDNS_RR_TYPE_NS, LDNS_RR_CLASS_IN, LDNS_RD);
        ldns_rr_list *ns =
            ans ? ldns_pkt_rr_list_by_type(ans, LDNS_RR_TYPE_NS, LDNS_SECTION_ANSWER) : NULL;
        for (size_t i = 0; ns != NULL && i < ldns_rr_list_rr_count(ns) && n < max; i++) {
            ldns_rr_list *addrs = ldns_get_rr_list_addr_by_name(
                r, ldns_rr_rdf(ldns_rr_list_rr(ns, i), 0), LDNS_RR_CLASS_IN, LDNS_RD);
            for (size_t k = 0; addrs != NULL && k < ldns_rr_list_rr_count(addrs) && n < max; k++) {
                char *s = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(addrs, k), 0));
                if (s != NULL) {
                    snprintf(out[n], 80, strchr(s, ':') ? "[%s]:53" : "%s:53", s);
                    n++;
                }
                free(s);
            }
            ldns_rr_list_deep_free(addrs);
        }
        ldns_rr_list_deep_free(ns);
        ldns_pkt_free(ans);
        ldns_rdf_deep_free(name);
    }
    ldns_resolver_deep_free(r);
    return n;
}

static moat_rc wait_propagated(struct dns_solver *d, const char *fqdn, const char *value,
                               struct moat_err *err)
{
    char found[MAX_CHECK][80];
    size_t n = 0;
    for (; n < d->ncheck; n++) {
        snprintf(found[n], sizeof(found[n]), "%s", d->check[n]);
    }
    if (n == 0) {
        n = zone_servers(d->resolver, fqdn, found, MAX_CHECK);
    }
    if (n == 0 && d->server != NULL) {
        snprintf(found[0], sizeof(found[0]), "%s", d->server);
        n = 1; /* no NS found (a private zone): the server that took the update */
    }
    if (n == 0) {
        return MOAT_RC_OK; /* nothing to ask: the CA will tell */
    }
    time_t deadline = time(NULL) + d->timeout_s;
    for (;;) {
        size_t missing = 0, first = 0;
        for (size_t i = 0; i < n; i++) {
            if (!server_sees(found[i], fqdn, value)) {
                if (missing++ == 0) {
                    first = i;
                }
            }
        }
        if (missing == 0) {
            return MOAT_RC_OK;
        }
        if (time(NULL) >= deadline) {
            MOAT_FAIL(err, MOAT_E_PEER,
                      "the TXT record %s is not visible at %zu of %zu authoritative servers "
                      "(%s among them) after %u s: the update or hook did not reach them",
                      fqdn, missing, n, found[first], d->timeout_s);
        }
        struct timespec ts = {2, 0};
        nanosleep(&ts, NULL);
    }
}

static moat_rc dns_present(struct moat_acme_solver *base, const char *ident, const char *token,
                           const char *key_authz, struct moat_err *err)
{
    struct dns_solver *d = (struct dns_solver *)base;
    char fqdn[300], value[64];
    snprintf(fqdn, sizeof(fqdn), "_acme-challenge.%s", ident);
    MOAT_TRY(moat_acme_dns01_value(key_authz, value, sizeof(value), err));
    MOAT_TRY(d->hook != NULL ? run_hook(d, "set", fqdn, value, err)
                             : rfc2136(d, fqdn, value, 0, err));
    for (size_t i = 0; i < sizeof(d->pub) / sizeof(d->pub[0]); i++) {
        if (!d->pub[i].used && strlen(token) < sizeof(d->pub[i].token)) {
            d->pub[i].used = 1;
            snprintf(d->pub[i].token, sizeof(d->pub[i].token), "%s", token);
            snprintf(d->pub[i].fqdn, sizeof(d->pub[i].fqdn), "%s", fqdn);
            snprintf(d->pub[i].value, sizeof(d->pub[i].value), "%s", value);
            break;
        }
    }
    return wait_propagated(d, fqdn, value, err);
}

static void dns_cleanup(struct moat_acme_solver *base, const char *ident, const char *token)
{
    struct dns_solver *d = (struct dns_solver *)base;
    for (size_t i = 0; i < sizeof(d->pub) / sizeof(d->pub[0]); i++) {
        if (d->pub[i].used && strcmp(d->pub[i].token, token) == 0) {
            struct moat_err e = {0};
            moat_rc rc = d->hook != NULL ? run_hook(d, "clear", d->pub[i].fqdn, d->pub[i].value, &e)
                                         : rfc2136(d, d->pub[i].fqdn, d->pub[i].value, 1, &e);
            if (!moat_ok(rc)) {
                /* A leftover TXT record does no harm beyond clutter; say so and go on. */
                moat_log_w("acme: removing the DNS-01 record %s for %s failed: %s", d->pub[i].fqdn,
                           ident, e.msg);
            }
            d->pub[i].used = 0;
        }
    }
}

static moat_rc dns_preflight(struct moat_acme_solver *base, const char *ident, struct moat_err *err)
{
    struct dns_solver *d = (struct dns_solver *)base;
    if (d->server == NULL) {
        return MOAT_RC_OK; /* a hook: only running it can tell */
    }
    char fqdn[300];
    snprintf(fqdn, sizeof(fqdn), "_acme-challenge.%s", ident);
    return rfc2136(d, fqdn, NULL, 0, err);
}

static void dns_free(struct moat_acme_solver *base)
{
    struct dns_solver *d = (struct dns_solver *)base;
    free(d->server);
    free(d->zone);
    free(d->tsig_name);
    free(d->tsig_alg);
    if (d->tsig_secret != NULL) {
        OPENSSL_cleanse(d->tsig_secret, strlen(d->tsig_secret));
    }
    free(d->tsig_secret);
    free(d->hook);
    free(d->resolver);
    for (size_t i = 0; i < d->ncheck; i++) {
        free(d->check[i]);
    }
    free(d);
}

static const struct moat_acme_solver_ops dns_ops = {
    .type = "dns-01",
    .present = dns_present,
    .cleanup = dns_cleanup,
    .free = dns_free,
    .preflight = dns_preflight,
};

static int dup_or_null(char **out, const char *in)
{
    *out = in ? strdup(in) : NULL;
    return in == NULL || *out != NULL;
}

moat_rc moat_acme_dns_solver_new(const struct moat_acme_dns_opts *o, struct moat_acme_solver **out,
                                 struct moat_err *err)
{
    *out = NULL;
    if ((o->server == NULL) == (o->hook == NULL)) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "DNS-01 needs either a DNS server for RFC 2136 updates or a hook command "
                  "(one of them)");
    }
    if ((o->tsig_name == NULL) != (o->tsig_secret == NULL)) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "a TSIG key needs its name and its secret");
    }
    if (o->ncheck > MAX_CHECK) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "at most %d servers to check", MAX_CHECK);
    }
    struct dns_solver *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    d->base.ops = &dns_ops;
    int ok = dup_or_null(&d->server, o->server) && dup_or_null(&d->zone, o->zone) &&
             dup_or_null(&d->tsig_name, o->tsig_name) &&
             dup_or_null(&d->tsig_alg, o->tsig_alg ? o->tsig_alg : "hmac-sha256") &&
             dup_or_null(&d->tsig_secret, o->tsig_secret) && dup_or_null(&d->hook, o->hook) &&
             dup_or_null(&d->resolver, o->resolver);
    for (size_t i = 0; ok && i < o->ncheck; i++) {
        ok = dup_or_null(&d->check[i], o->check[i]);
        d->ncheck = i + 1;
    }
    d->timeout_s = o->propagation_timeout_s ? o->propagation_timeout_s : 120;
    d->ttl = o->ttl ? o->ttl : 60;
    if (!ok) {
        dns_free(&d->base);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (d->server != NULL) {
        ldns_resolver *r = NULL;
        moat_rc rc = moat_client_dns_resolver(d->server, &r, err);
        ldns_resolver_deep_free(r);
        if (!moat_ok(rc)) {
            dns_free(&d->base);
            return rc;
        }
    }
    *out = &d->base;
    return MOAT_RC_OK;
}
