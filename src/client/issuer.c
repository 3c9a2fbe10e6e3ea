/*
 * issuer.c: tell a missing intermediate from an untrusted CA, and word each for people.
 *
 * The lookup walks up from the certificate whose issuer is missing: its AIA caIssuers URL is
 * fetched with the client's own HTTP/1.1 code over a plain transport (conn.c, http.c), the
 * answer is read by aia.c, and the chain is built again, offline, with the fetched
 * certificates as untrusted helpers. If it now reaches a trusted root, the server left out an
 * intermediate; if it ends at a self-signed root nobody here trusts, the CA is untrusted; if
 * the walk cannot go on (no AIA URL, only ldap://, a fetch that fails, an answer that is not
 * the issuer) both causes are named. Every step is bounded: MOAT_CLIENT_MAX_AIA fetches,
 * MOAT_CLIENT_AIA_BODY_MAX bytes and MOAT_CLIENT_AIA_REDIRECTS redirects each, and one
 * deadline for them all.
 */
#include "client/issuer.h"

#include "client/aia.h"
#include "client/conn.h"
#include "client/http.h"
#include "client/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* ---- fetching ------------------------------------------------------------------------------ */

struct sink {
    unsigned char *p; /* owned: MOAT_CLIENT_AIA_BODY_MAX bytes */
    size_t n;
    int over; /* the answer was larger: reading stopped there */
};

static int sink_write(void *arg, const void *p, size_t n)
{
    struct sink *s = arg;
    if (n > MOAT_CLIENT_AIA_BODY_MAX - s->n) {
        s->over = 1;
        return -1;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    return 0;
}

/* The fetch borrows a hop to reuse conn.c and http.c as they are; this frees what they left. */
static void scratch_clear(struct moat_client_hop *sh)
{
    moat_trace_clear(&sh->trace);
    free(sh->req_head);
    free(sh->resp_head);
    free(sh->location);
    memset(sh, 0, sizeof(*sh));
}

static int is_http_url(const char *u)
{
    return strncasecmp(u, "http://", 7) == 0;
}

static int is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* GET `url` into s, following redirects to http:// URLs only (RFC 5280 §4.2.2.1 names HTTP
 * and LDAP; https would need the very trust being diagnosed). Returns 1 with a 200 answer's
 * body in s; 0 with the reason in rec->error. */
static int get_body(const char *url, const struct moat_client_opts *o, double deadline_ms,
                    struct sink *s, struct moat_client_aia_fetch *rec)
{
    struct moat_client_hop *sh = calloc(1, sizeof(*sh));
    if (sh == NULL) {
        moat_client__fmt(rec->error, sizeof(rec->error), "out of memory");
        return 0;
    }
    int ok = 0;
    struct moat_err err = {0};
    struct moat_client_url u;
    if (!moat_ok(moat_client_url_parse(url, &u, &err))) {
        moat_client__fmt(rec->error, sizeof(rec->error), "the URL is not usable: %s", err.msg);
        goto out;
    }
    for (int redirects = 0;; redirects++) {
        scratch_clear(sh);
        sh->url = u;
        s->n = 0;
        s->over = 0;
        moat_trace_init(&sh->trace);
        int fd = -1;
        if (!moat_ok(moat_client_conn_open(sh, o, deadline_ms, &fd, NULL))) {
            moat_client__fmt(rec->error, sizeof(rec->error), "%s",
                             sh->cause == MOAT_CC_TIMEOUT
                                 ? "no answer to the connection request in the time the issuer "
                                   "lookup has"
                                 : sh->detail);
            goto out;
        }
        struct moat_h1c conn;
        moat_client_http_open(&conn, fd); /* issuers are published over http:// */
        struct moat_buf head;
        moat_buf_init(&head, 16 * 1024);
        struct moat_client_req rq = {.method = "GET", .url = &sh->url};
        moat_rc rc = moat_client_http_build(&rq, &head, NULL);
        if (moat_ok(rc)) {
            rc = moat_client_http_exchange(&conn, deadline_ms, &head, &rq, sink_write, s, sh, NULL);
        }
        moat_buf_clear(&head);
        moat_h1c_close(&conn);
        rec->status = sh->status;
        rec->bytes = s->n;
        if (s->over) {
            moat_client__fmt(rec->error, sizeof(rec->error),
                             "the answer is larger than %d KiB (moat stopped reading there)",
                             MOAT_CLIENT_AIA_BODY_MAX / 1024);
            goto out;
        }
        if (!moat_ok(rc)) {
            moat_client__fmt(rec->error, sizeof(rec->error), "%s",
                             sh->cause == MOAT_CC_TIMEOUT
                                 ? "no complete answer in the time the issuer lookup has"
                             : sh->detail[0] ? sh->detail
                                             : "the request failed");
            goto out;
        }
        if (is_redirect(sh->status) && sh->location != NULL) {
            struct moat_client_url next;
            if (redirects >= MOAT_CLIENT_AIA_REDIRECTS) {
                moat_client__fmt(rec->error, sizeof(rec->error),
                                 "more than %d redirects: not followed", MOAT_CLIENT_AIA_REDIRECTS);
                goto out;
            }
            if (!moat_ok(moat_client_url_join(&u, sh->location, &next, &err)) || next.https) {
                moat_client__fmt(rec->error, sizeof(rec->error),
                                 "it redirects (%d) to \"%.200s\", which is not an http:// URL: "
                                 "not followed",
                                 sh->status, sh->location);
                goto out;
            }
            u = next;
            moat_client_url_format(&u, rec->final_url, sizeof(rec->final_url));
            continue;
        }
        if (sh->status != 200) {
            moat_client__fmt(rec->error, sizeof(rec->error), "the server answered %d %s",
                             sh->status, sh->reason);
            goto out;
        }
        ok = 1;
        break;
    }
out:
    scratch_clear(sh);
    free(sh);
    return ok;
}

/* Fetch and read the certificates at `url`. Returns 1 with *got set (owned by the caller). */
static int fetch(const char *url, const struct moat_client_opts *o, double deadline_ms,
                 struct moat_client_aia_fetch *rec, STACK_OF(X509) * *got)
{
    *got = NULL;
    double t0 = moat_trace_now_ms();
    struct sink s = {.p = malloc(MOAT_CLIENT_AIA_BODY_MAX), .n = 0, .over = 0};
    int ok = 0;
    if (s.p == NULL) {
        moat_client__fmt(rec->error, sizeof(rec->error), "out of memory");
    } else if (!is_http_url(url)) {
        moat_client__fmt(rec->error, sizeof(rec->error), "not an http:// URL");
    } else {
        ok = get_body(url, o, deadline_ms, &s, rec);
    }
    if (ok) {
        struct moat_err err = {0};
        const char *form = "";
        if (!moat_ok(moat_client_aia_parse(s.p, s.n, got, &form, &err))) {
            moat_client__fmt(rec->error, sizeof(rec->error), "%s", err.msg);
            ok = 0;
        }
        rec->form = form;
    }
    free(s.p);
    rec->ms = moat_trace_now_ms() - t0;
    return ok;
}

/* ---- building the chain again -------------------------------------------------------------- */

/* The errors that say whether and where the chain reaches a trusted root. Dates, names,
 * purposes and revocation are not the question here: they are checked again once the server
 * sends its chain. A signature that does not verify, or an issuer that is no CA, stops the
 * walk, so a forged "issuer" from the URL proves nothing. */
static int chain_error(int e)
{
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return 1;
    default:
        return 0;
    }
}

static int issuer_missing(int e)
{
    return e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           e == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

static int check_cb(int ok, X509_STORE_CTX *ctx)
{
    return ok || !chain_error(X509_STORE_CTX_get_error(ctx));
}

struct check {
    int err;               /* the chain error, 0 when the path reaches a trusted root */
    X509 *at;              /* owned (a reference): the certificate that error is about */
    STACK_OF(X509) * path; /* owned: the path built */
};

static void check_clear(struct check *c)
{
    X509_free(c->at);
    sk_X509_pop_free(c->path, X509_free);
    memset(c, 0, sizeof(*c));
}

static void check_chain(X509_STORE *store, X509 *leaf, STACK_OF(X509) * untrusted, struct check *c)
{
    check_clear(c);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
        c->err = X509_V_ERR_OUT_OF_MEM;
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
        return;
    }
    X509_STORE_CTX_set_verify_cb(ctx, check_cb);
    int r = X509_verify_cert(ctx);
    if (r != 1) {
        c->err = X509_STORE_CTX_get_error(ctx);
        c->err = c->err != 0 ? c->err : X509_V_ERR_UNSPECIFIED;
        X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
        if (cur != NULL && X509_up_ref(cur) == 1) {
            c->at = cur;
        }
    }
    c->path = X509_STORE_CTX_get1_chain(ctx);
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
}

/* ---- words ---------------------------------------------------------------------------------- */

static void subject_of(X509 *x, char *out, size_t outlen)
{
    struct moat_client_cert c;
    moat_client_cert_describe(x, time(NULL), &c);
    moat_client__fmt(out, outlen, "%s", c.subject);
}

/* "\"A\"", "\"A\" and \"B\"": the intermediates fetched (not self-signed), in fetch order. */
static size_t fetched_names(const struct moat_client_hop *h, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t n = 0, total = 0;
    for (size_t i = 0; i < h->naia; i++) {
        total += h->aia[i].ok && !h->aia[i].cert.self_signed;
    }
    for (size_t i = 0; i < h->naia; i++) {
        const struct moat_client_aia_fetch *f = &h->aia[i];
        if (!f->ok || f->cert.self_signed) {
            continue;
        }
        n++;
        moat_client__append(out, outlen, "%s\"%s\"",
                            n == 1       ? ""
                            : n == total ? " and "
                                         : ", ",
                            f->cert.subject);
    }
    return n;
}

static void trust_fix(char *out, size_t outlen, const char *root)
{
    moat_client__fmt(out, outlen,
                     "if you trust \"%s\", pass its certificate with --cafile FILE, or trust it on "
                     "this whole machine with `sudo moat trust install --ca FILE` (`sudo moat "
                     "trust install` alone trusts moat's own local CA)",
                     root);
}

static const char *sent_words(const struct moat_client_hop *h, char *buf, size_t buflen)
{
    if (h->nsent <= 1) {
        return "only its own certificate";
    }
    moat_client__fmt(buf, buflen, "%zu certificates", h->nsent);
    return buf;
}

/* A lone self-signed certificate, or a chain that ends at a self-signed root: not trusted. */
static void untrusted_root(struct moat_client_hop *h, const struct moat_client_trust *t, X509 *root,
                           int lone)
{
    char name[256];
    subject_of(root, name, sizeof(name));
    h->issuer_diag = MOAT_ISSUER_UNTRUSTED;
    moat_client__fmt(h->issuer_root, sizeof(h->issuer_root), "%s", name);
    if (lone) {
        moat_client__fmt(h->detail, sizeof(h->detail),
                         "the server sent a self-signed certificate (%s), which is not trusted "
                         "here (trusted: %s)",
                         name, t->desc);
        moat_client__fmt(h->cert_fix, sizeof(h->cert_fix),
                         "if you trust this certificate, pass it with --cafile FILE, or trust it "
                         "on this whole machine with `sudo moat trust install --ca FILE`; better, "
                         "give the server a certificate from a CA clients trust (moat's local "
                         "CA: `sudo moat trust install`, or a public one)");
        moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                         "the client refuses the certificate: it is self-signed and not trusted "
                         "here");
    } else {
        h->vkind = MOAT_V_UNKNOWN_ISSUER;
        moat_client__fmt(h->detail, sizeof(h->detail),
                         "the server sent a chain that ends at the self-signed root \"%s\", which "
                         "is not trusted here (trusted: %s)",
                         name, t->desc);
        trust_fix(h->cert_fix, sizeof(h->cert_fix), name);
        moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                         "the client refuses the certificate: it chains to \"%s\", a root not "
                         "trusted here",
                         name);
    }
    h->alert_gloss_dir = MOAT_TRACE_OUT;
}

static void words_missing(struct moat_client_hop *h, const struct moat_client_trust *t,
                          const struct check *c, const char *stuck_subject)
{
    X509 *root = sk_X509_value(c->path, sk_X509_num(c->path) - 1);
    char src[300], names[800], sw[64];
    subject_of(root, h->issuer_root, sizeof(h->issuer_root));
    moat_client_trust_source(t, root, 1, src, sizeof(src));
    moat_client__fmt(h->issuer_root_from, sizeof(h->issuer_root_from), "%s", src);
    size_t n = fetched_names(h, names, sizeof(names));
    const char *url = h->aia[0].url;
    h->vkind = MOAT_V_MISSING_INTERMEDIATE;
    moat_client__fmt(
        h->detail, sizeof(h->detail),
        "the server sent %s, without the intermediate%s %s that issued \"%s\": the "
        "AIA caIssuers URL %s provides %s, which chain%s to the trusted root \"%s\"%s%s%s",
        sent_words(h, sw, sizeof(sw)), n > 1 ? "s" : "", names, stuck_subject, url,
        n > 1 ? "them" : "it", n > 1 ? "" : "s", h->issuer_root, src[0] ? " (" : "", src,
        src[0] ? ")" : "");
    moat_client__fmt(h->cert_fix, sizeof(h->cert_fix),
                     "configure the server with the full chain: its certificate, then the "
                     "intermediate%s %s (the 'fullchain' file your CA gave you; it can also be "
                     "downloaded from %s)",
                     n > 1 ? "s" : "", names, url);
    moat_client__fmt(h->issuer_summary, sizeof(h->issuer_summary),
                     "missing intermediate: the server did not send %s, which chain%s to the "
                     "trusted root \"%s\"%s%s%s",
                     names, n > 1 ? "" : "s", h->issuer_root, src[0] ? " (" : "", src,
                     src[0] ? ")" : "");
    moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                     "the client refuses the certificate: the server did not send the "
                     "intermediate %s (the issuer lookup below proves it)",
                     names);
}

/* `root` is the name the chain ends at: a self-signed root that was fetched, or the issuer
 * of the last certificate found (a root is what public hierarchies have there). */
static void words_untrusted(struct moat_client_hop *h, const struct moat_client_trust *t,
                            const char *root)
{
    char names[800];
    moat_client__fmt(h->issuer_root, sizeof(h->issuer_root), "%s", root);
    size_t n = fetched_names(h, names, sizeof(names));
    const char *url = h->aia[0].url;
    h->vkind = MOAT_V_UNKNOWN_ISSUER;
    if (n > 0) {
        moat_client__fmt(h->detail, sizeof(h->detail),
                         "the issuer %s, fetched from the AIA caIssuers URL %s, chains to the "
                         "root \"%s\", which is not trusted here (trusted: %s); the server did "
                         "not send %s either",
                         names, url, root, t->desc, n > 1 ? "them" : "it");
    } else {
        moat_client__fmt(h->detail, sizeof(h->detail),
                         "the certificate was issued by the root \"%s\" (fetched from the AIA "
                         "caIssuers URL %s), which is not trusted here (trusted: %s)",
                         root, url, t->desc);
    }
    trust_fix(h->cert_fix, sizeof(h->cert_fix), root);
    if (n > 0) {
        moat_client__append(h->cert_fix, sizeof(h->cert_fix),
                            "; the server should also send %s after its certificate", names);
    }
    moat_client__fmt(h->issuer_summary, sizeof(h->issuer_summary),
                     "untrusted CA: the chain ends at the root \"%s\", which is not trusted here",
                     root);
    moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                     "the client refuses the certificate: it chains to \"%s\", a root not "
                     "trusted here",
                     root);
}

/* Nothing usable came for `stuck` (the certificate whose issuer is missing): both causes. */
static void words_undetermined(struct moat_client_hop *h, const struct moat_client_trust *t,
                               X509 *stuck)
{
    struct moat_client_cert sc;
    moat_client_cert_describe(stuck, time(NULL), &sc);
    char why[700] = "", sw[64];
    const struct moat_client_aia_fetch *last = h->naia ? &h->aia[h->naia - 1] : NULL;
    if (last != NULL && !last->ok) {
        moat_client__fmt(why, sizeof(why), "fetching its issuer from %s failed (%s)", last->url,
                         last->error);
    } else {
        moat_client__fmt(why, sizeof(why), "%s", h->aia_note[0] ? h->aia_note : "nothing came");
    }
    h->vkind = MOAT_V_UNKNOWN_ISSUER;
    moat_client__fmt(h->detail, sizeof(h->detail),
                     "the issuer \"%s\" is not trusted or an intermediate is missing: the "
                     "server sent %s, and \"%s\" is neither sent nor among the roots trusted "
                     "here (%s); %s, so moat cannot tell which",
                     sc.issuer, sent_words(h, sw, sizeof(sw)), sc.issuer, t->desc, why);
    moat_client__fmt(h->cert_message, sizeof(h->cert_message),
                     "the certificate's issuer is not trusted here, or the server did not send an "
                     "intermediate (moat cannot tell which)");
    moat_client__fmt(h->cert_fix, sizeof(h->cert_fix),
                     "if \"%s\" is an intermediate, configure the server with the full chain (its "
                     "certificate, then the intermediates); if it is a CA you trust, pass its "
                     "certificate with --cafile FILE (for the whole machine: `sudo moat trust "
                     "install --ca FILE`; moat's own local CA: `sudo moat trust install`)",
                     sc.issuer);
    moat_client__fmt(h->issuer_summary, sizeof(h->issuer_summary),
                     "undetermined: the issuer \"%s\" is not trusted here or an intermediate is "
                     "missing",
                     sc.issuer);
    moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                     "the client refuses the certificate: its issuer \"%s\" is not trusted here "
                     "or was not sent (see the cause below)",
                     sc.issuer);
}

/* ---- the walk ------------------------------------------------------------------------------- */

/* The first http:// URL of x's caIssuers, or NULL with h->aia_note saying why there is none. */
static const char *pick_url(X509 *x, char (*urls)[MOAT_CLIENT_AIA_URL_MAX],
                            struct moat_client_hop *h)
{
    size_t n = moat_client_aia_urls(x, urls, MOAT_CLIENT_AIA_MAX_URLS);
    for (size_t i = 0; i < n; i++) {
        if (is_http_url(urls[i])) {
            return urls[i];
        }
    }
    char name[256];
    subject_of(x, name, sizeof(name));
    if (n == 0) {
        moat_client__fmt(h->aia_note, sizeof(h->aia_note),
                         "\"%s\" names no caIssuers URL (AIA) where its issuer could be fetched",
                         name);
    } else {
        moat_client__fmt(h->aia_note, sizeof(h->aia_note),
                         "\"%s\" names its issuer only at %.200s, and moat fetches issuers over "
                         "http:// only",
                         name, urls[0]);
    }
    return NULL;
}

/* The certificate of `got` that issued `cur` (borrowed from got), or NULL. */
static X509 *find_issuer(STACK_OF(X509) * got, X509 *cur)
{
    for (int i = 0; i < sk_X509_num(got); i++) {
        X509 *g = sk_X509_value(got, i);
        if (X509_check_issued(g, cur) == X509_V_OK) {
            return g;
        }
    }
    return NULL;
}

static void lookup(const struct moat_client_vrec *v, const struct moat_client_trust *t,
                   const struct moat_client_opts *o, double deadline_ms, struct moat_client_hop *h)
{
    X509 *leaf = sk_X509_value(v->sent, 0);
    STACK_OF(X509) *fetched = sk_X509_new_null();     /* owned: everything fetched */
    STACK_OF(X509) *untrusted = sk_X509_dup(v->sent); /* borrowed entries: sent + fetched */
    X509 *cur = v->err_cert;                          /* borrowed: from v, then from fetched */
    struct check c = {0};
    enum moat_client_issuer_diag diag = MOAT_ISSUER_UNDETERMINED;
    char urls[MOAT_CLIENT_AIA_MAX_URLS][MOAT_CLIENT_AIA_URL_MAX];
    while (fetched != NULL && untrusted != NULL && h->naia < MOAT_CLIENT_MAX_AIA) {
        const char *url = pick_url(cur, urls, h);
        if (url == NULL) {
            break;
        }
        if (moat_trace_now_ms() >= deadline_ms) {
            moat_client__fmt(h->aia_note, sizeof(h->aia_note),
                             "no time was left to fetch the issuer from %.200s", url);
            break;
        }
        struct moat_client_aia_fetch *rec = &h->aia[h->naia++];
        memset(rec, 0, sizeof(*rec));
        rec->form = "";
        moat_client__fmt(rec->url, sizeof(rec->url), "%s", url);
        subject_of(cur, rec->for_cert, sizeof(rec->for_cert));
        STACK_OF(X509) *got = NULL;
        if (!fetch(url, o, deadline_ms, rec, &got)) {
            break;
        }
        X509 *issuer = find_issuer(got, cur);
        int ngot = sk_X509_num(got);
        for (int i = 0; i < ngot; i++) {
            X509 *g = sk_X509_value(got, i);
            if (sk_X509_push(fetched, g) <= 0) {
                issuer = issuer == g ? NULL : issuer;
                X509_free(g);
                continue;
            }
            (void)sk_X509_push(untrusted, g); /* a failed push only leaves a helper out */
        }
        sk_X509_free(got);
        if (issuer == NULL) {
            moat_client__fmt(rec->error, sizeof(rec->error),
                             "the answer holds %d certificate%s, none of which issued \"%s\"", ngot,
                             ngot == 1 ? "" : "s", rec->for_cert);
            break;
        }
        rec->ok = 1;
        moat_client_cert_describe(issuer, time(NULL), &rec->cert);
        check_chain(t->store, leaf, untrusted, &c);
        if (c.err == 0 && c.path != NULL && sk_X509_num(c.path) > 0) {
            diag = MOAT_ISSUER_MISSING_INTERMEDIATE;
            break;
        }
        if ((c.err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
             c.err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) &&
            c.at != NULL) {
            diag = MOAT_ISSUER_UNTRUSTED;
            break;
        }
        if (!issuer_missing(c.err) || c.at == NULL || X509_cmp(c.at, cur) == 0) {
            /* e.g. a signature that does not verify: what came proves nothing. */
            rec->ok = 0;
            moat_client__fmt(rec->error, sizeof(rec->error),
                             "\"%s\" came, but the chain with it does not verify (%s)",
                             rec->cert.subject, X509_verify_cert_error_string(c.err));
            break;
        }
        /* One link further up is missing. c.at dies with c; its twin in `untrusted` (sent,
         * or in `fetched`) lives until the end. */
        X509 *next = NULL;
        for (int i = 0; next == NULL && i < sk_X509_num(untrusted); i++) {
            if (X509_cmp(sk_X509_value(untrusted, i), c.at) == 0) {
                next = sk_X509_value(untrusted, i);
            }
        }
        if (next == NULL) {
            break;
        }
        cur = next;
    }
    if (diag == MOAT_ISSUER_UNDETERMINED && h->naia == MOAT_CLIENT_MAX_AIA &&
        h->aia[h->naia - 1].ok && h->aia_note[0] == '\0') {
        moat_client__fmt(h->aia_note, sizeof(h->aia_note),
                         "moat fetches at most %d issuers per connection", MOAT_CLIENT_MAX_AIA);
    }
    int got_one = 0;
    for (size_t i = 0; i < h->naia; i++) {
        got_one |= h->aia[i].ok;
    }
    if (diag == MOAT_ISSUER_UNDETERMINED && got_one) {
        /* The server left out at least one certificate that was fetched, and the chain still
         * stops short of a trusted root: above the last one found sits a CA nobody here has. */
        diag = MOAT_ISSUER_UNTRUSTED;
    }
    h->issuer_diag = diag;
    if (diag == MOAT_ISSUER_MISSING_INTERMEDIATE) {
        char first[256];
        subject_of(v->err_cert, first, sizeof(first));
        words_missing(h, t, &c, first);
    } else if (diag == MOAT_ISSUER_UNTRUSTED) {
        char root[256];
        if (c.at != NULL && (c.err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                             c.err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)) {
            subject_of(c.at, root, sizeof(root));
        } else {
            struct moat_client_cert cc;
            moat_client_cert_describe(cur, time(NULL), &cc);
            moat_client__fmt(root, sizeof(root), "%s", cc.issuer);
        }
        words_untrusted(h, t, root);
    } else {
        words_undetermined(h, t, cur);
    }
    h->alert_gloss_dir = MOAT_TRACE_OUT;
    check_clear(&c);
    sk_X509_free(untrusted);
    sk_X509_pop_free(fetched, X509_free);
    ERR_clear_error();
}

void moat_client_issuer_diagnose(const struct moat_client_vrec *v,
                                 const struct moat_client_trust *t,
                                 const struct moat_client_opts *o, double deadline_ms,
                                 struct moat_client_hop *h)
{
    if (v->err == 0 || v->err_cert == NULL || v->sent == NULL || sk_X509_num(v->sent) == 0) {
        return;
    }
    if (v->err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
        v->err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN) {
        untrusted_root(h, t, v->err_cert, v->err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
        return;
    }
    if (!issuer_missing(v->err)) {
        return;
    }
    int is_ca = (X509_get_extension_flags(v->err_cert) & EXFLAG_CA) != 0;
    if (is_ca) {
        /* The server sent its intermediate and the chain stops above it. Without an AIA URL
         * to look further, the usual reading stays: the root above is not trusted here. */
        char urls[MOAT_CLIENT_AIA_MAX_URLS][MOAT_CLIENT_AIA_URL_MAX];
        size_t n = moat_client_aia_urls(v->err_cert, urls, MOAT_CLIENT_AIA_MAX_URLS);
        int http = 0;
        for (size_t i = 0; i < n; i++) {
            http |= is_http_url(urls[i]);
        }
        if (!http) {
            struct moat_client_cert ec;
            moat_client_cert_describe(v->err_cert, time(NULL), &ec);
            trust_fix(h->cert_fix, sizeof(h->cert_fix), ec.issuer);
            moat_client__fmt(h->alert_gloss, sizeof(h->alert_gloss),
                             "the client refuses the certificate: its chain ends at \"%s\", "
                             "which is not trusted here",
                             ec.issuer);
            h->alert_gloss_dir = MOAT_TRACE_OUT;
            return;
        }
    }
    lookup(v, t, o, deadline_ms, h);
}
