/*
 * validate.c: offline path validation for `moat verify`, with the problems in plain words.
 *
 * OpenSSL's verifier does the work (the same code TLS clients built on OpenSSL run); a verify
 * callback records each error with the certificate it is about and lets verification go on,
 * so every problem is found in one run. Each error is folded into a kind of verify.h and given
 * its specifics here, where the certificates are at hand.
 */
#include "pki/validate.h"

#include "pki/internal.h"
#include "pki/key.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

/* OpenSSL security level 2: 112-bit keys and signatures (RSA 2048, no SHA-1), the level
 * Debian's OpenSSL and today's browsers hold TLS to. */
#define AUTH_LEVEL 2

struct rec {
    struct moat_validate_result *r;
    time_t now;
    const struct moat_validate_opts *o;
};

static int rec_idx = -1;

void moat_validate_result_clear(struct moat_validate_result *r)
{
    if (r == NULL) {
        return;
    }
    sk_X509_pop_free(r->path, X509_free);
    memset(r, 0, sizeof(*r));
}

static const char *role(int depth, X509 *x)
{
    if (depth == 0) {
        return "the certificate";
    }
    if (X509_self_signed(x, 0) == 1) {
        return "the root";
    }
    return "the intermediate";
}

static void eku_words(X509 *x, char *buf, size_t n)
{
    uint32_t xku = X509_get_extended_key_usage(x);
    snprintf(buf, n, "%s%s%s%s", (xku & XKU_SSL_SERVER) ? "serverAuth " : "",
             (xku & XKU_SSL_CLIENT) ? "clientAuth " : "",
             (xku & XKU_SMIME) ? "emailProtection " : "",
             (xku & XKU_CODE_SIGN) ? "codeSigning " : "");
    size_t len = strlen(buf);
    if (len > 0) {
        buf[len - 1] = '\0';
    } else {
        snprintf(buf, n, "other uses only");
    }
}

/* The specifics of one error, for people. */
static void describe(struct rec *rc, int e, int depth, X509 *x, X509_STORE_CTX *sctx, char *out,
                     size_t n)
{
    char who[200], a[160], b[160], c[600];
    const char *r = role(depth, x);
    moat_pki__short_name(x, who, sizeof(who));
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        snprintf(out, n, "%s \"%s\" expired on %s (%s)", r, who,
                 moat_pki__time_str(X509_get0_notAfter(x), a, sizeof(a)),
                 moat_pki__span_str(X509_get0_notAfter(x), rc->now, b, sizeof(b)));
        return;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        snprintf(out, n, "%s \"%s\" is valid only from %s (%s)", r, who,
                 moat_pki__time_str(X509_get0_notBefore(x), a, sizeof(a)),
                 moat_pki__span_str(X509_get0_notBefore(x), rc->now, b, sizeof(b)));
        return;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        moat_pki__name_str(X509_get_issuer_name(x), a, sizeof(a));
        if ((X509_get_extension_flags(x) & EXFLAG_CA) == 0) {
            snprintf(out, n,
                     "%s \"%s\" was issued by \"%s\", which is neither in the file nor in "
                     "--chain, nor a trusted root: add the intermediate (--chain FILE, or use the "
                     "full-chain file), or trust the root with --cafile",
                     r, who, a);
        } else {
            snprintf(out, n,
                     "%s \"%s\" was issued by \"%s\", which is not a trusted root (not in the "
                     "system store, nor in --cafile)",
                     r, who, a);
        }
        return;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        snprintf(out, n,
                 "the chain ends at the root \"%s\", which is not trusted here (not in the system "
                 "store, nor in --cafile)",
                 who);
        return;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        snprintf(out, n,
                 "\"%s\" is self-signed: nobody vouches for it, so it is trusted only where it "
                 "was installed by hand (--cafile)",
                 who);
        return;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        snprintf(out, n, "\"%s\" is not among the names of %s \"%s\": it covers %s",
                 rc->o->host ? rc->o->host : "", r, who, moat_pki__san_str(x, c, sizeof(c)));
        return;
    case X509_V_ERR_INVALID_PURPOSE:
        if (depth == 0) {
            eku_words(x, a, sizeof(a));
            snprintf(out, n,
                     "%s \"%s\" is not for TLS %ss: its key usage allows %s, not %s "
                     "(%s)",
                     r, who, rc->o->client ? "client" : "server",
                     (X509_get_extension_flags(x) & EXFLAG_XKUSAGE) ? a : "no such use",
                     rc->o->client ? "clientAuth" : "serverAuth",
                     rc->o->client ? "check it as a server certificate without --client?"
                                   : "a client certificate? check it with --client");
        } else {
            snprintf(out, n, "%s \"%s\" may not issue TLS %s certificates (its key usage)", r, who,
                     rc->o->client ? "client" : "server");
        }
        return;
    case X509_V_ERR_INVALID_CA:
        snprintf(out, n,
                 "%s \"%s\" signed another certificate but is not a CA (no basicConstraints "
                 "CA:TRUE, or no keyCertSign): it may not issue certificates",
                 r, who);
        return;
    case X509_V_ERR_INVALID_NON_CA:
        snprintf(out, n, "%s \"%s\" is a CA certificate used as a leaf", r, who);
        return;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: {
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
        long limit = bc && bc->pathlen ? ASN1_INTEGER_get(bc->pathlen) : -1;
        BASIC_CONSTRAINTS_free(bc);
        snprintf(out, n,
                 "%s \"%s\" allows %ld intermediate(s) below it (pathLenConstraint), but the "
                 "chain has more",
                 r, who, limit);
        return;
    }
    case X509_V_ERR_CERT_REVOKED: {
        X509_CRL *crl = X509_STORE_CTX_get0_current_crl(sctx);
        X509_REVOKED *rev = NULL;
        if (crl != NULL && X509_CRL_get0_by_cert(crl, &rev, x) == 1 && rev != NULL) {
            ASN1_ENUMERATED *code = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
            long reason = code ? ASN1_ENUMERATED_get(code) : 0;
            ASN1_ENUMERATED_free(code);
            static const char *const words[] = {"unspecified",      "key compromise",
                                                "CA compromise",    "affiliation changed",
                                                "superseded",       "cessation of operation",
                                                "certificate hold", "(7)",
                                                "remove from CRL",  "privilege withdrawn",
                                                "AA compromise"};
            snprintf(out, n, "%s \"%s\" was revoked on %s (reason: %s)", r, who,
                     moat_pki__time_str(X509_REVOKED_get0_revocationDate(rev), a, sizeof(a)),
                     reason >= 0 && reason <= 10 ? words[reason] : "unknown");
        } else {
            snprintf(out, n, "%s \"%s\" is listed as revoked by its issuer's CRL", r, who);
        }
        ERR_clear_error();
        return;
    }
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
        snprintf(out, n, "%s \"%s\" has a %s key: at least RSA 2048 or ECDSA P-256 is needed", r,
                 who, moat_key_describe(X509_get0_pubkey(x), a, sizeof(a)));
        return;
    case X509_V_ERR_CA_MD_TOO_WEAK: {
        int nid = X509_get_signature_nid(x);
        snprintf(out, n,
                 "%s \"%s\" is signed with %s, which is broken: it can be forged; it needs a "
                 "SHA-256 (or better) signature",
                 r, who, nid != NID_undef ? OBJ_nid2ln(nid) : "a weak algorithm");
        return;
    }
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        snprintf(out, n,
                 "the signature on %s \"%s\" does not verify with its issuer's key: it was "
                 "altered, or the issuer in the chain is another certificate with the same name",
                 r, who);
        return;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        snprintf(out, n,
                 "none of the CRLs given (--crl) is from the issuer of %s \"%s\" (%s), so its "
                 "revocation cannot be checked",
                 r, who, moat_pki__name_str(X509_get_issuer_name(x), a, sizeof(a)));
        return;
    case X509_V_ERR_CRL_HAS_EXPIRED:
        snprintf(out, n,
                 "the CRL for %s \"%s\" is out of date (past its nextUpdate): get a current one "
                 "(moat ca crl)",
                 r, who);
        return;
    default:
        snprintf(out, n, "%s \"%s\": %s", r, who, X509_verify_cert_error_string(e));
        return;
    }
}

static enum moat_verify_kind kind_of(int e, X509 *x)
{
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        return MOAT_V_OTHER;
    default:
        return moat_verify_kind_from_x509(e, x);
    }
}

static int callback(int ok, X509_STORE_CTX *sctx)
{
    if (ok) {
        return 1;
    }
    struct rec *rc = X509_STORE_CTX_get_ex_data(sctx, rec_idx);
    int e = X509_STORE_CTX_get_error(sctx);
    int depth = X509_STORE_CTX_get_error_depth(sctx);
    X509 *x = X509_STORE_CTX_get_current_cert(sctx);
    if (rc == NULL) {
        return 0;
    }
    /* Revocation is checked for the leaf only unless the CRL of a higher link was given. */
    if (e == X509_V_ERR_UNABLE_TO_GET_CRL && depth > 0) {
        return 1;
    }
    struct moat_validate_result *r = rc->r;
    for (size_t i = 0; i < r->nproblems; i++) {
        if (r->problems[i].x509_err == e && r->problems[i].depth == depth) {
            return 1;
        }
    }
    if (r->nproblems < MOAT_VALIDATE_MAX_PROBLEMS && x != NULL) {
        struct moat_validate_problem *p = &r->problems[r->nproblems++];
        p->x509_err = e;
        p->depth = depth;
        p->kind = kind_of(e, x);
        describe(rc, e, depth, x, sctx, p->detail, sizeof(p->detail));
    }
    return 1; /* go on: report every problem, not just the first */
}

static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

static void index_init(void)
{
    rec_idx = X509_STORE_CTX_get_ex_new_index(0, "moat validate", NULL, NULL, NULL);
}

static int is_ip(const char *host, char *buf, size_t n)
{
    size_t len = strlen(host);
    if (len >= n) {
        return 0;
    }
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
    } else {
        memcpy(buf, host, len + 1);
    }
    unsigned char ip[16];
    return inet_pton(AF_INET, buf, ip) == 1 || inet_pton(AF_INET6, buf, ip) == 1;
}

static moat_rc set_params(X509_STORE_CTX *sctx, const struct moat_validate_opts *o, time_t now,
                          struct moat_err *err)
{
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(sctx);
    X509_VERIFY_PARAM_set_time(param, now);
    X509_VERIFY_PARAM_set_auth_level(param, AUTH_LEVEL);
    if (X509_STORE_CTX_set_purpose(sctx, o->client ? X509_PURPOSE_SSL_CLIENT
                                                   : X509_PURPOSE_SSL_SERVER) != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot set the purpose to check");
    }
    if (o->crls != NULL && sk_X509_CRL_num(o->crls) > 0) {
        X509_STORE_CTX_set0_crls(sctx, o->crls);
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (o->host == NULL) {
        return MOAT_RC_OK;
    }
    char ip[64];
    if (is_ip(o->host, ip, sizeof(ip))) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, ip) != 1) {
            MOAT_FAIL_SSL(err, MOAT_E_USAGE, "\"%s\" is not an IP address", o->host);
        }
        return MOAT_RC_OK;
    }
    /* As browsers do: names only from the SAN (RFC 6125 §6.4.4), no partial wildcards. */
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
                                               X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    size_t len = strlen(o->host);
    if (len > 1 && o->host[len - 1] == '.') {
        len--; /* "example.com." is the same name */
    }
    if (X509_VERIFY_PARAM_set1_host(param, o->host, len) != 1) {
        MOAT_FAIL_SSL(err, MOAT_E_USAGE, "cannot check the name \"%s\"", o->host);
    }
    return MOAT_RC_OK;
}

moat_rc moat_validate(X509 *leaf, const struct moat_validate_opts *o,
                      struct moat_validate_result *r, struct moat_err *err)
{
    memset(r, 0, sizeof(*r));
    pthread_once(&rec_once, index_init);
    time_t now = o->now ? o->now : time(NULL);
    struct rec rc = {.r = r, .now = now, .o = o};
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    if (sctx == NULL || rec_idx < 0 ||
        X509_STORE_CTX_init(sctx, o->trust, leaf, o->untrusted) != 1) {
        X509_STORE_CTX_free(sctx);
        MOAT_FAIL_SSL(err, MOAT_E_NOMEM, "cannot set up the certificate check");
    }
    moat_rc res = set_params(sctx, o, now, err);
    if (!moat_ok(res)) {
        X509_STORE_CTX_free(sctx);
        return res;
    }
    X509_STORE_CTX_set_ex_data(sctx, rec_idx, &rc);
    X509_STORE_CTX_set_verify_cb(sctx, callback);
    int ok = X509_verify_cert(sctx);
    if (ok != 1 && r->nproblems == 0) {
        /* Failed without telling the callback (e.g. out of memory, or a malformed certificate
         * OpenSSL will not even look at). */
        struct moat_validate_problem *p = &r->problems[r->nproblems++];
        p->x509_err = X509_STORE_CTX_get_error(sctx);
        p->depth = X509_STORE_CTX_get_error_depth(sctx);
        p->kind = MOAT_V_OTHER;
        snprintf(p->detail, sizeof(p->detail), "the check could not complete: %s",
                 X509_verify_cert_error_string(p->x509_err));
    }
    r->path = X509_STORE_CTX_get1_chain(sctx);
    X509_STORE_CTX_free(sctx);
    ERR_clear_error();
    r->kind = r->nproblems > 0 ? r->problems[0].kind : MOAT_V_OK;
    return MOAT_RC_OK;
}
