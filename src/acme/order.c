/*
 * order.c: one ACME order from identifiers to a checked chain (see order.h).
 *
 * The CA's objects are untrusted input: every member is checked before use, every URL must be
 * https (client.c refuses others), tokens must be base64url (they become file names and HTTP
 * paths), and every wait is bounded by the order's deadline, so a CA that never moves an
 * order costs time, never a hang.
 */
#include "acme/order.h"

#include "acme/jws.h"
#include "tls/client.h"
#include "pki/csr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define POLL_MIN_S 1
#define POLL_MAX_S 30
#define MAX_AUTHZ 100 /* Let's Encrypt's limit of names per certificate */

/* Wait s seconds (clamped to the deadline) in short slices, so a cancel is seen quickly. */
static moat_rc wait_s(const struct moat_acme_order_req *q, long s, time_t deadline,
                      const char *what, struct moat_err *err)
{
    time_t now = time(NULL);
    if (now >= deadline) {
        MOAT_FAIL(err, MOAT_E_LIMIT,
                  "the ACME order timed out while %s (the CA did not finish in time; moat tries "
                  "again later)",
                  what);
    }
    if (s > deadline - now) {
        s = (long)(deadline - now);
    }
    for (long ms = s * 1000; ms > 0; ms -= 100) {
        if (q->cancel != NULL && atomic_load(q->cancel)) {
            MOAT_FAIL(err, MOAT_E_CLOSED, "the ACME order was stopped (moat is shutting down)");
        }
        struct timespec ts = {0, (ms < 100 ? ms : 100) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return MOAT_RC_OK;
}

/* The pause before the next poll: the CA's Retry-After, else a doubling backoff. */
static long next_pause(const struct moat_acme_resp *r, long *backoff)
{
    long s = r->retry_after_s >= 0 ? r->retry_after_s : *backoff;
    *backoff = *backoff * 2 > POLL_MAX_S ? POLL_MAX_S : *backoff * 2;
    if (s < POLL_MIN_S) {
        s = POLL_MIN_S;
    }
    return s > POLL_MAX_S * 4 ? POLL_MAX_S * 4 : s;
}

static moat_rc get_obj(struct moat_acme *a, const char *url, struct moat_acme_resp *r,
                       struct moat_err *err)
{
    moat_rc rc = moat_acme_post(a, url, NULL, NULL, r, err);
    if (moat_ok(rc) && !json_is_object(r->json)) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA's answer for %.300s is not a JSON object", url);
    }
    if (!moat_ok(rc)) {
        moat_acme_resp_clear(r); /* callers return on failure: nothing of the answer is kept */
    }
    return rc;
}

static int is_token(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++) {
        char c = t[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return 0;
        }
    }
    return n >= 16 && n <= 256; /* RFC 8555 §8.1: at least 128 bits of entropy */
}

/* The CA's words for a failed challenge or authorization. */
static void problem_text(const json_t *p, char *out, size_t outlen)
{
    const char *type = moat_acme_json_str(p, "type");
    const char *detail = moat_acme_json_str(p, "detail");
    static const char urn[] = "urn:ietf:params:acme:error:";
    const char *st = type && strncmp(type, urn, sizeof(urn) - 1) == 0 ? type + sizeof(urn) - 1
                                                                      : (type ? type : "");
    snprintf(out, outlen, "%s%s%s", moat_acme_problem_words(st), detail ? ": " : "",
             detail ? detail : "");
}

/* What to do about a failed challenge of `type`, by the problem's kind. */
static const char *challenge_fix(const char *type, const json_t *problem)
{
    const char *pt = moat_acme_json_str(problem, "type");
    if (pt != NULL && strstr(pt, ":caa") != NULL) {
        return "add a CAA record for this CA (e.g. `0 issue \"letsencrypt.org\"`) or remove the "
               "one that forbids it";
    }
    if (pt != NULL && strstr(pt, ":dns") != NULL) {
        return "make the name resolve in public DNS to this server";
    }
    if (strcmp(type, "http-01") == 0) {
        return "port 80 of the name must reach this moat (firewall, port forward, another "
               "server on port 80?)";
    }
    if (strcmp(type, "tls-alpn-01") == 0) {
        return "port 443 of the name must reach this moat directly (a TLS-terminating proxy "
               "or CDN in front breaks TLS-ALPN-01)";
    }
    return "check that the TXT record _acme-challenge.<name> is published where the zone's "
           "authoritative servers answer";
}

/* The challenge of an authorization this order will answer, and the solver for it. */
static const json_t *pick_challenge(const json_t *authz, int wildcard,
                                    const struct moat_acme_order_req *q, size_t from,
                                    size_t *solver_at)
{
    const json_t *chs = json_object_get(authz, "challenges");
    for (size_t s = from; s < q->nsolvers; s++) {
        const char *want = q->solvers[s]->ops->type;
        if (wildcard && strcmp(want, "dns-01") != 0) {
            continue; /* RFC 8555 §7.1.3: a wildcard is proved in DNS only */
        }
        size_t i;
        const json_t *c;
        json_array_foreach(chs, i, c)
        {
            const char *type = moat_acme_json_str(c, "type");
            if (type != NULL && strcmp(type, want) == 0) {
                *solver_at = s;
                return c;
            }
        }
    }
    return NULL;
}

/* Answer one authorization with one challenge and wait for the CA's verdict. */
static moat_rc run_challenge(struct moat_acme *a, const struct moat_acme_order_req *q,
                             const char *ident, const char *shown, const json_t *ch,
                             struct moat_acme_solver *solver, const char *authz_url,
                             time_t deadline, int *published, struct moat_err *err)
{
    const char *type = solver->ops->type;
    const char *url = moat_acme_json_str(ch, "url");
    const char *token = moat_acme_json_str(ch, "token");
    if (url == NULL || token == NULL || !is_token(token)) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA's %s challenge for %s has no url or a token that is not "
                  "base64url: refused",
                  type, ident);
    }
    char *ka = NULL;
    MOAT_TRY(moat_acme_key_authz(a->key, token, &ka, err));
    moat_rc rc = solver->ops->present(solver, ident, token, ka, err);
    free(ka);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "publishing the %s answer for %s", type, shown);
        return rc;
    }
    *published = 1;
    moat_acme_say(a, 0, "%s: answering %s", shown, type);
    struct moat_acme_resp r = {0};
    rc = moat_acme_post(a, url, "{}", NULL, &r, err);
    long backoff = POLL_MIN_S;
    while (moat_ok(rc)) {
        moat_acme_resp_clear(&r);
        rc = get_obj(a, authz_url, &r, err);
        if (!moat_ok(rc)) {
            break;
        }
        const char *st = moat_acme_json_str(r.json, "status");
        if (st != NULL && strcmp(st, "valid") == 0) {
            moat_acme_say(a, 0, "%s: %s accepted by the CA", shown, type);
            break;
        }
        if (st == NULL || strcmp(st, "pending") != 0) {
            /* invalid (or deactivated, expired, revoked): the CA's reason is on the
             * challenge it tried. */
            char why[600] = "";
            const json_t *problem = NULL;
            size_t i;
            const json_t *c;
            json_array_foreach(json_object_get(r.json, "challenges"), i, c)
            {
                const json_t *e = json_object_get(c, "error");
                if (json_is_object(e)) {
                    problem = e;
                    problem_text(e, why, sizeof(why));
                    break;
                }
            }
            snprintf(a->failed_challenge, sizeof(a->failed_challenge), "%s", type);
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the CA did not validate %s by %s (authorization %s): %s; fix: %s",
                              shown, type, st ? st : "with no status",
                              why[0] ? why : "it gave no reason", challenge_fix(type, problem));
            break;
        }
        rc = wait_s(q, next_pause(&r, &backoff), deadline, "waiting for the CA's validation", err);
    }
    moat_acme_resp_clear(&r);
    solver->ops->cleanup(solver, ident, token);
    return rc;
}

static moat_rc run_authz(struct moat_acme *a, const struct moat_acme_order_req *q,
                         const char *authz_url, time_t deadline, struct moat_err *err)
{
    struct moat_acme_resp r = {0};
    MOAT_TRY(get_obj(a, authz_url, &r, err));
    const char *st = moat_acme_json_str(r.json, "status");
    const json_t *id = json_object_get(r.json, "identifier");
    const char *value = moat_acme_json_str(id, "value");
    int wildcard = json_is_true(json_object_get(r.json, "wildcard"));
    moat_rc rc = MOAT_RC_OK;
    if (st == NULL || value == NULL) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME authorization %.300s has no status or identifier", authz_url);
    } else if (strcmp(st, "valid") == 0) {
        moat_acme_say(a, 0, "%s%s: already authorized", wildcard ? "*." : "", value);
    } else if (strcmp(st, "pending") != 0) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME authorization for %s is %s: the order cannot go on", value, st);
    } else {
        char ident[300];
        snprintf(ident, sizeof(ident), "%s", value);
        char shown[310];
        snprintf(shown, sizeof(shown), "%s%s", wildcard ? "*." : "", value);
        /* Within one authorization a challenge the CA tried is final (RFC 8555 §7.1.6: a
         * failed one turns the authorization invalid), so only a solver that could not even
         * publish its answer passes to the next; falling back after a failed validation takes
         * a new order (the caller's retry). */
        size_t from = 0, at = 0;
        const json_t *ch;
        int tried = 0;
        while ((ch = pick_challenge(r.json, wildcard, q, from, &at)) != NULL) {
            int published = 0;
            tried = 1;
            rc = run_challenge(a, q, ident, shown, ch, q->solvers[at], authz_url, deadline,
                               &published, err);
            if (moat_ok(rc) || published) {
                break;
            }
            moat_acme_say(a, 1, "%s: %s; trying the next way", shown, err ? err->msg : "");
            from = at + 1;
        }
        if (!tried) {
            char offered[200] = "";
            size_t i;
            const json_t *c;
            json_array_foreach(json_object_get(r.json, "challenges"), i, c)
            {
                const char *t = moat_acme_json_str(c, "type");
                size_t l = strlen(offered);
                snprintf(offered + l, sizeof(offered) - l, "%s%s", l ? ", " : "", t ? t : "?");
            }
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "no way to prove control of %s%s: the CA offers %s%s",
                              wildcard ? "*." : "", ident, offered[0] ? offered : "no challenge",
                              wildcard ? " and a wildcard needs dns-01 (configure a DNS provider)"
                                       : "; enable one of them");
        }
    }
    moat_acme_resp_clear(&r);
    return rc;
}

/* Does the leaf name exactly `name` in its SAN (DNS or IP)? */
static int leaf_names(X509 *leaf, const char *name)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    unsigned char ip[16];
    int iplen = inet_pton(AF_INET, name, ip) == 1 ? 4 : inet_pton(AF_INET6, name, ip) == 1 ? 16 : 0;
    for (int i = 0; !found && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS && iplen == 0) {
            const char *d = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
            found = (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(name) &&
                    strncasecmp(d, name, strlen(name)) == 0;
        } else if (g->type == GEN_IPADD && iplen != 0) {
            found = ASN1_STRING_length(g->d.iPAddress) == iplen &&
                    memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, (size_t)iplen) == 0;
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

/* Parse a PEM chain; refuse what the order did not ask for. *top_issuer gets the issuer CN
 * of its last certificate and *names every subject CN (for the preferred-chain match). */
static moat_rc check_chain(const struct moat_acme_order_req *q, const char *pem, size_t len,
                           char *cns, size_t cnslen, struct moat_err *err)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    X509 *leaf = NULL, *x;
    int n = 0;
    cns[0] = '\0';
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        char cn[256] = "";
        if (n > 0) {
            X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
            size_t l = strlen(cns);
            snprintf(cns + l, cnslen - l, "\n%s", cn);
        }
        cn[0] = '\0';
        X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, cn, sizeof(cn));
        size_t l = strlen(cns);
        snprintf(cns + l, cnslen - l, "\n%s", cn);
        if (n++ == 0) {
            leaf = x;
        } else {
            X509_free(x);
        }
    }
    ERR_clear_error();
    BIO_free(b);
    moat_rc rc = MOAT_RC_OK;
    if (leaf == NULL) {
        MOAT_FAIL(err, MOAT_E_PEER, "the ACME CA's certificate download holds no PEM certificate");
    }
    if (X509_check_private_key(leaf, q->cert_key) != 1) {
        ERR_clear_error();
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA's certificate is not for the key moat sent in the CSR");
    }
    for (size_t i = 0; moat_ok(rc) && i < q->nnames; i++) {
        if (!leaf_names(leaf, q->names[i])) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the ACME CA's certificate does not name %s, which was ordered",
                              q->names[i]);
        }
    }
    X509_free(leaf);
    return rc;
}

static int chain_matches(const char *cns, const char *want)
{
    size_t wl = strlen(want);
    for (const char *p = cns; (p = strchr(p, '\n')) != NULL;) {
        p++;
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == wl && strncasecmp(p, want, wl) == 0) {
            return 1;
        }
    }
    return 0;
}

static moat_rc download(struct moat_acme *a, const struct moat_acme_order_req *q,
                        const char *cert_url, char **chain_pem, struct moat_err *err)
{
    static const char pem_type[] = "application/pem-certificate-chain";
    struct moat_acme_resp r = {0};
    MOAT_TRY(moat_acme_post(a, cert_url, NULL, pem_type, &r, err));
    char cns[4096];
    moat_rc rc = check_chain(q, (const char *)r.body, r.len, cns, sizeof(cns), err);
    if (moat_ok(rc) && q->preferred_chain != NULL && !chain_matches(cns, q->preferred_chain)) {
        char alt[MOAT_ACME_URL_MAX];
        int found = 0;
        for (size_t i = 0; !found && moat_acme_resp_link(&r, "alternate", i, alt, sizeof(alt));
             i++) {
            struct moat_acme_resp ar = {0};
            struct moat_err e2 = {0};
            char acns[4096];
            if (moat_ok(moat_acme_post(a, alt, NULL, pem_type, &ar, &e2)) &&
                moat_ok(check_chain(q, (const char *)ar.body, ar.len, acns, sizeof(acns), &e2)) &&
                chain_matches(acns, q->preferred_chain)) {
                moat_acme_say(a, 0, "using the CA's alternate chain through \"%s\"",
                              q->preferred_chain);
                moat_acme_resp_clear(&r);
                r = ar;
                found = 1;
            } else {
                moat_acme_resp_clear(&ar);
            }
        }
        if (!found) {
            moat_acme_say(
                a, 1,
                "no chain of the CA goes through \"%s\" (preferred_chain); using its default "
                "chain",
                q->preferred_chain);
        }
    }
    if (moat_ok(rc)) {
        *chain_pem = (char *)r.body;
        r.body = NULL;
    }
    moat_acme_resp_clear(&r);
    return rc;
}

/* The newOrder payload (RFC 8555 §7.4), with the profile when not NULL and `replaces`
 * (RFC 9773 §5) when asked; NULL when out of memory. */
static char *order_payload(const struct moat_acme_order_req *q, const char *profile,
                           int with_replaces)
{
    json_t *ids = json_array(), *req = json_object();
    for (size_t i = 0; ids != NULL && i < q->nnames; i++) {
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type",
                                             moat_tls_client_host_ip(q->names[i]) ? "ip" : "dns",
                                             "value", q->names[i]));
    }
    char *payload = NULL;
    if (ids != NULL && req != NULL) {
        json_object_set_new(req, "identifiers", ids);
        ids = NULL;
        if (profile != NULL) {
            json_object_set_new(req, "profile", json_string(profile));
        }
        if (with_replaces) {
            json_object_set_new(req, "replaces", json_string(q->replaces));
        }
        payload = json_dumps(req, JSON_COMPACT);
    }
    json_decref(ids);
    json_decref(req);
    return payload;
}

/* The profile to order with: q->profile when the CA offers it; NULL (with a warning) when the
 * CA offers none; MOAT_E_CONFIG when it offers others. */
static moat_rc order_profile(struct moat_acme *a, const struct moat_acme_order_req *q,
                             const char **profile, struct moat_err *err)
{
    *profile = NULL;
    if (q->profile == NULL) {
        return MOAT_RC_OK;
    }
    if (a->dir.nprofiles == 0) {
        moat_acme_say(a, 1,
                      "the CA offers no certificate profiles; ordering without profile \"%s\"",
                      q->profile);
        return MOAT_RC_OK;
    }
    int offered = 0;
    char list[300] = "";
    for (size_t i = 0; i < a->dir.nprofiles; i++) {
        offered |= strcmp(a->dir.profiles[i], q->profile) == 0;
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", a->dir.profiles[i]);
    }
    if (!offered) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the CA has no certificate profile \"%s\" (it offers %s): fix `profile` "
                  "(--profile)",
                  q->profile, list);
    }
    *profile = q->profile;
    return MOAT_RC_OK;
}

static moat_rc new_order(struct moat_acme *a, const struct moat_acme_order_req *q,
                         struct moat_acme_resp *r, struct moat_err *err)
{
    const char *profile = NULL;
    MOAT_TRY(order_profile(a, q, &profile, err));
    /* `replaces` only to a CA that has ARI: to another it means nothing. */
    int with_replaces = q->replaces != NULL && a->dir.renewal_info != NULL;
    for (;;) {
        char *payload = order_payload(q, profile, with_replaces);
        if (payload == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        moat_rc rc = moat_acme_post(a, a->dir.new_order, payload, NULL, r, err);
        free(payload);
        /* RFC 9773 §5: a CA may refuse an order as the replacement of a certificate that
         * another order replaced already (alreadyReplaced), or that it cannot match (malformed).
         * The certificate is needed all the same: order it as a new one. */
        if (!moat_ok(rc) && with_replaces &&
            (strcmp(a->problem, "alreadyReplaced") == 0 || strcmp(a->problem, "malformed") == 0)) {
            moat_acme_say(a, 1,
                          "the CA refused the order as the replacement of %s (%s); ordering "
                          "without 'replaces'",
                          q->replaces, a->problem);
            with_replaces = 0;
            continue;
        }
        MOAT_TRY(rc);
        break;
    }
    if (r->location[0] == '\0' || !json_is_object(r->json)) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA answered newOrder without the order (Location and body)");
    }
    return MOAT_RC_OK;
}

static moat_rc finalize(struct moat_acme *a, const struct moat_acme_order_req *q, const char *url,
                        struct moat_acme_resp *r, struct moat_err *err)
{
    X509_REQ *csr = NULL;
    MOAT_TRY(moat_csr_new(q->names, q->nnames, q->cert_key, &csr, err));
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(csr, &der);
    X509_REQ_free(csr);
    if (n <= 0) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "encoding the CSR failed");
    }
    char *b64 = moat_b64url(der, (size_t)n);
    OPENSSL_free(der);
    json_t *req = b64 ? json_pack("{s:s}", "csr", b64) : NULL;
    free(b64);
    char *payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (payload == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_acme_say(a, 0, "finalizing the order with a CSR for %zu name%s", q->nnames,
                  q->nnames == 1 ? "" : "s");
    moat_rc rc = moat_acme_post(a, url, payload, NULL, r, err);
    free(payload);
    return rc;
}

/* The checks before a new order: DNS for the names, then each solver's own. */
static moat_rc preflight(struct moat_acme *a, const struct moat_acme_order_req *q,
                         struct moat_err *err)
{
    struct moat_acme_preflight p = *q->preflight;
    p.need_address = 0;
    int creds = 0;
    for (size_t s = 0; s < q->nsolvers; s++) {
        p.need_address |= strcmp(q->solvers[s]->ops->type, "dns-01") != 0;
    }
    MOAT_TRY(moat_acme_preflight_names(a, &p, q->names, q->nnames, err));
    for (size_t s = 0; s < q->nsolvers; s++) {
        if (q->solvers[s]->ops->preflight == NULL) {
            continue;
        }
        creds = 1;
        for (size_t i = 0; i < q->nnames; i++) {
            const char *base = strncmp(q->names[i], "*.", 2) == 0 ? q->names[i] + 2 : q->names[i];
            moat_rc rc = q->solvers[s]->ops->preflight(q->solvers[s], base, err);
            if (!moat_ok(rc)) {
                moat_err_ctx(err, "pre-flight check of %s for %s", q->solvers[s]->ops->type,
                             q->names[i]);
                return rc;
            }
        }
    }
    moat_acme_say(a, 0, "pre-flight checks passed (names, CAA%s)",
                  creds ? ", DNS-01 credentials" : "");
    return MOAT_RC_OK;
}

moat_rc moat_acme_order(struct moat_acme *a, const struct moat_acme_order_req *q, char **chain_pem,
                        struct moat_err *err)
{
    *chain_pem = NULL;
    if (q->nnames == 0 || q->nnames > MAX_AUTHZ) {
        MOAT_FAIL(err, MOAT_E_USAGE, "an ACME order needs 1 to %d names, not %zu", MAX_AUTHZ,
                  q->nnames);
    }
    if (a->kid == NULL) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "ACME order before the account was found");
    }
    time_t deadline = time(NULL) + (q->deadline_s ? q->deadline_s : 600);
    struct moat_acme_resp r = {0};
    char order_url[MOAT_ACME_URL_MAX] = "";
    moat_rc rc = MOAT_RC_OK;
    if (q->resume_url != NULL) {
        struct moat_err e2 = {0};
        rc = get_obj(a, q->resume_url, &r, &e2);
        const char *st = moat_ok(rc) ? moat_acme_json_str(r.json, "status") : NULL;
        if (st != NULL && strcmp(st, "invalid") != 0) {
            snprintf(order_url, sizeof(order_url), "%s", q->resume_url);
            moat_acme_say(a, 0, "resuming the order %s (%s)", order_url, st);
        } else {
            moat_acme_say(a, 0, "the order in flight (%s) cannot go on (%s); starting a new one",
                          q->resume_url, st ? st : e2.msg);
            moat_acme_resp_clear(&r);
        }
        rc = MOAT_RC_OK;
    }
    if (order_url[0] == '\0' && q->preflight != NULL) {
        MOAT_TRY(preflight(a, q, err));
    }
    if (order_url[0] == '\0') {
        rc = new_order(a, q, &r, err);
        if (!moat_ok(rc)) {
            moat_acme_resp_clear(&r); /* a refusal leaves the CA's answer in r */
            return rc;
        }
        snprintf(order_url, sizeof(order_url), "%s", r.location);
        moat_acme_say(a, 0, "order %s created for %s%s", order_url, q->names[0],
                      q->nnames > 1 ? " and more" : "");
        if (q->order_made != NULL) {
            q->order_made(q->order_made_arg, order_url);
        }
    }
    long backoff = POLL_MIN_S;
    int finalized = 0;
    while (moat_ok(rc)) {
        const char *st = moat_acme_json_str(r.json, "status");
        if (st == NULL) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the ACME order %s has no status", order_url);
        } else if (strcmp(st, "pending") == 0) {
            const json_t *authzs = json_object_get(r.json, "authorizations");
            if (!json_is_array(authzs) || json_array_size(authzs) == 0 ||
                json_array_size(authzs) > MAX_AUTHZ) {
                rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                  "the ACME order %s lists no usable authorizations", order_url);
                break;
            }
            size_t i;
            const json_t *u;
            json_array_foreach(authzs, i, u)
            {
                if (!json_is_string(u)) {
                    rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                      "the ACME order %s lists an authorization that is not a URL",
                                      order_url);
                    break;
                }
                rc = run_authz(a, q, json_string_value(u), deadline, err);
                if (!moat_ok(rc)) {
                    break;
                }
            }
        } else if (strcmp(st, "ready") == 0 && !finalized) {
            const char *fin = moat_acme_json_str(r.json, "finalize");
            if (fin == NULL) {
                rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                  "the ACME order %s has no finalize URL", order_url);
                break;
            }
            char furl[MOAT_ACME_URL_MAX];
            snprintf(furl, sizeof(furl), "%s", fin);
            moat_acme_resp_clear(&r);
            rc = finalize(a, q, furl, &r, err);
            finalized = 1;
            continue; /* the answer is the order again */
        } else if (strcmp(st, "valid") == 0) {
            const char *cert = moat_acme_json_str(r.json, "certificate");
            if (cert == NULL) {
                rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                                  "the ACME order %s is valid but names no certificate", order_url);
                break;
            }
            char curl[MOAT_ACME_URL_MAX];
            snprintf(curl, sizeof(curl), "%s", cert);
            moat_acme_say(a, 0, "downloading the certificate");
            rc = download(a, q, curl, chain_pem, err);
            break;
        } else if (strcmp(st, "invalid") == 0) {
            char why[600] = "";
            const json_t *e = json_object_get(r.json, "error");
            if (json_is_object(e)) {
                problem_text(e, why, sizeof(why));
            }
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the ACME order %s failed (invalid)%s%s", order_url,
                              why[0] ? ": " : "", why);
            break;
        } else if (strcmp(st, "processing") != 0 && strcmp(st, "ready") != 0) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the ACME order %s has the unknown status \"%.40s\"", order_url, st);
            break;
        } else {
            /* processing, or ready again after a finalize: the CA is issuing. */
            rc = wait_s(q, next_pause(&r, &backoff), deadline, "waiting for the certificate", err);
        }
        if (moat_ok(rc)) {
            moat_acme_resp_clear(&r);
            rc = get_obj(a, order_url, &r, err);
        }
    }
    moat_acme_resp_clear(&r);
    return rc;
}

moat_rc moat_acme_revoke(struct moat_acme *a, const unsigned char *cert, size_t len, int reason,
                         struct moat_err *err)
{
    if (a->dir.revoke_cert == NULL) {
        MOAT_FAIL(err, MOAT_E_PEER, "the ACME CA offers no revocation (revokeCert)");
    }
    X509 *x = NULL;
    BIO *b = BIO_new_mem_buf(cert, (int)len);
    if (b != NULL) {
        x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x == NULL) {
            const unsigned char *p = cert;
            x = d2i_X509(NULL, &p, (long)len);
        }
        BIO_free(b);
    }
    ERR_clear_error();
    if (x == NULL) {
        MOAT_FAIL(err, MOAT_E_CERT, "the file to revoke holds no certificate (PEM or DER)");
    }
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    char *b64 = n > 0 ? moat_b64url(der, (size_t)n) : NULL;
    OPENSSL_free(der);
    json_t *req = b64 ? json_pack("{s:s, s:i}", "certificate", b64, "reason", reason) : NULL;
    free(b64);
    char *payload = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (payload == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    struct moat_acme_resp r = {0};
    moat_rc rc = moat_acme_post(a, a->dir.revoke_cert, payload, NULL, &r, err);
    free(payload);
    moat_acme_resp_clear(&r);
    return rc;
}
