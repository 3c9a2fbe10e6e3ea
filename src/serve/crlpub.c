/*
 * crlpub.c: the CRLs a configuration publishes (see crlpub.h): read (or, for moat's local CA,
 * made) when a snapshot is built, then answered from memory.
 *
 * The building half runs on the main thread at load and reload and may take its time; the
 * answering half runs on workers for each request to a CRL path, allocates nothing and reads
 * only the immutable entry.
 */
#include "serve/crlpub.h"

#include "core/etag.h"
#include "core/fmt.h"
#include "core/log.h"
#include "http/method.h"
#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/crl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

void moat_crlpub_free(struct moat_crlpub_set *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].der);
    }
    free(s->v);
    free(s);
}

/* ---- building ---- */

/* What one crl_publish reads, and whether the server may sign a new CRL there. */
struct source {
    const struct moat_conf_crl_publish *cp;
    char dir[PATH_MAX];
    char crl_path[PATH_MAX + 32];    /* crl.pem or root-crl.pem */
    char issuer_path[PATH_MAX + 32]; /* intermediate.pem or root.pem: who signs that CRL */
    int owner;                       /* moat's local CA: the server holds its keys anyway */
};

/* Report a failure at the directive, keeping the file it was about in the words. */
static moat_rc at_directive(moat_rc rc, const struct source *src, struct moat_err *err)
{
    if (err == NULL) {
        return rc;
    }
    size_t wl = strlen(err->where);
    if (wl > 0 && strncmp(err->msg, err->where, wl) != 0) {
        char msg[MOAT_ERR_MSG_MAX];
        if (snprintf(msg, sizeof(msg), "%s: %s", err->where, err->msg) > 0) { /* may be cut */
            memcpy(err->msg, msg, sizeof(err->msg));
        }
    }
    moat_err_where(err, "%s", src->cp->where);
    moat_err_ctx(err, "while publishing a CRL with crl_publish %s", src->cp->path);
    if (rc.kind != MOAT_E_NOMEM && rc.kind != MOAT_E_INTERNAL) {
        rc = moat_rc_of(MOAT_E_CONFIG);
        err->kind = MOAT_E_CONFIG;
    }
    return rc;
}

static int same_folder(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) != NULL && realpath(b, rb) != NULL && strcmp(ra, rb) == 0;
}

static moat_rc source_init(struct source *src, const struct moat_conf_crl_publish *cp,
                           const char *state_dir, struct moat_err *err)
{
    *src = (struct source){.cp = cp};
    char local[PATH_MAX];
    snprintf(local, sizeof(local), "%s/ca", state_dir);
    const char *dir = cp->ca_dir ? cp->ca_dir : local;
    if (strlen(dir) + 32 >= sizeof(src->dir)) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the CA folder's path is too long");
    }
    snprintf(src->dir, sizeof(src->dir), "%s", dir);
    snprintf(src->crl_path, sizeof(src->crl_path), "%s/%s", dir,
             cp->root ? "root-crl.pem" : "crl.pem");
    snprintf(src->issuer_path, sizeof(src->issuer_path), "%s/%s", dir,
             cp->root ? "root.pem" : "intermediate.pem");
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT && cp->ca_dir == NULL) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "moat's local CA does not exist yet (%s): serve a site without `cert` "
                      "once, or make it with `moat ca init`",
                      dir);
        }
        if (errno == ENOENT) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "there is no CA folder %s: give the folder `moat ca init --dir DIR` made, "
                      "or make one there with `moat ca init --dir %s`",
                      dir, dir);
        }
        MOAT_FAIL_SYS(err, MOAT_E_CONFIG, "cannot look at the CA folder %s", dir);
    }
    if (!S_ISDIR(st.st_mode)) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s is not a folder: crl_publish takes the CA folder (the one `moat ca init "
                  "--dir DIR` made), not a file",
                  dir);
    }
    src->owner = cp->ca_dir == NULL || same_folder(dir, local);
    return MOAT_RC_OK;
}

/* The CA certificate that signs the CRL: it proves the folder is a CA and checks the CRL. */
static moat_rc load_issuer(const struct source *src, X509 **out, struct moat_err *err)
{
    *out = NULL;
    struct stat st;
    if (stat(src->issuer_path, &st) != 0 && errno == ENOENT) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s is not a moat CA folder: it has no %s (give the folder `moat ca init "
                  "--dir DIR` made)",
                  src->dir, src->cp->root ? "root.pem" : "intermediate.pem");
    }
    struct moat_chain *c = NULL;
    MOAT_TRY(moat_chain_load(src->issuer_path, &c, err));
    int is_ca = (X509_get_extension_flags(c->leaf) & EXFLAG_CA) != 0;
    if (!is_ca) {
        moat_chain_free(c);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s is not a CA certificate, so %s is not a CA folder (give the folder `moat "
                  "ca init --dir DIR` made)",
                  src->issuer_path, src->dir);
    }
    *out = c->leaf;
    c->leaf = NULL;
    moat_chain_free(c);
    return MOAT_RC_OK;
}

static int crl_signed_by(X509_CRL *crl, X509 *issuer)
{
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    int ok = X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) == 0 &&
             pk != NULL && X509_CRL_verify(crl, pk) == 1;
    ERR_clear_error();
    return ok;
}

/* The CRL file: *out NULL when it is missing; the CRL `issuer` signed when the file holds
 * several; *foreign when none of them is. A damaged file fails. */
static moat_rc read_crl(const struct source *src, X509 *issuer, X509_CRL **out, int *foreign,
                        struct moat_err *err)
{
    *out = NULL;
    *foreign = 0;
    STACK_OF(X509_CRL) *crls = NULL;
    struct moat_err lerr = {0};
    moat_rc rc = moat_crl_load(src->crl_path, &crls, &lerr);
    if (rc.kind == MOAT_E_NOTFOUND) {
        return MOAT_RC_OK;
    }
    if (!moat_ok(rc)) {
        if (err != NULL) {
            *err = lerr;
        }
        moat_err_ctx(err, "make it again with `moat ca crl --ca %s`", src->dir);
        return rc;
    }
    int pick = 0;
    while (pick < sk_X509_CRL_num(crls) && !crl_signed_by(sk_X509_CRL_value(crls, pick), issuer)) {
        pick++;
    }
    *foreign = pick == sk_X509_CRL_num(crls);
    *out = sk_X509_CRL_delete(crls, *foreign ? 0 : pick);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return MOAT_RC_OK;
}

/* What is wrong with the CRL as it is, in words that fit after "<file> ", or NULL. */
static const char *problem_of(const struct source *src, X509 *issuer, X509_CRL *crl, int foreign,
                              time_t now, int owner, char *buf, size_t n)
{
    if (crl == NULL) {
        return "is not there";
    }
    if (foreign) {
        snprintf(buf, n,
                 "was not signed by the folder's %s (an earlier intermediate's list, or "
                 "another CA's)",
                 src->cp->root ? "root.pem" : "intermediate.pem");
        return buf;
    }
    time_t tu = moat_ca_asn1_time(X509_CRL_get0_lastUpdate(crl));
    time_t nu = moat_ca_asn1_time(X509_CRL_get0_nextUpdate(crl));
    if (nu != 0 && nu <= now) {
        return "has expired (its nextUpdate is past, so clients refuse it)";
    }
    size_t missing = 0;
    if (moat_ok(moat_crl_unpublished(src->dir, issuer, crl, &missing, NULL)) && missing > 0) {
        snprintf(buf, n, "lacks %zu revocation%s recorded in index.txt after it was written",
                 missing, missing == 1 ? "" : "s");
        return buf;
    }
    /* Renewed with a third of its validity left, as the local CA's certificates are. */
    if (owner && nu != 0 && tu != 0 && now >= tu + (nu - tu) * 2 / 3) {
        return "is past two thirds of its validity";
    }
    return NULL;
}

/* moat's local CA: write a new CRL (as `moat ca crl` would) into *crl. */
static moat_rc remake(const struct source *src, X509_CRL **crl, X509 **issuer, int *done,
                      struct moat_err *err)
{
    *done = 0;
    struct moat_ca *ca = NULL;
    MOAT_TRY(moat_ca_open(src->dir, &ca, err));
    char rk[PATH_MAX + 16];
    struct stat st;
    snprintf(rk, sizeof(rk), "%s/root.key", src->dir);
    if (src->cp->root && stat(rk, &st) != 0) {
        moat_ca_free(ca); /* the root key is offline: nothing to sign with */
        return MOAT_RC_OK;
    }
    X509_CRL *made = NULL;
    moat_rc rc = moat_crl_make(ca, src->cp->root, MOAT_CRL_DEFAULT_DAYS, 0, &made, err);
    if (moat_ok(rc)) {
        rc = moat_crl_write(src->crl_path, &made, 1, err);
    }
    if (moat_ok(rc)) {
        /* The CA opened may have a newer intermediate than the one read before. */
        X509 *signer = src->cp->root ? ca->root : ca->cert;
        X509_free(*issuer);
        *issuer = X509_dup(signer);
        X509_CRL_free(*crl);
        *crl = made;
        made = NULL;
        *done = 1;
        rc = *issuer != NULL ? MOAT_RC_OK
                             : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    X509_CRL_free(made);
    moat_ca_free(ca);
    return rc;
}

/* The DER and the validators of `crl` into `p`. */
static moat_rc entry_fill(struct moat_crlpub *p, const struct source *src, X509_CRL *crl,
                          struct moat_err *err)
{
    int len = i2d_X509_CRL(crl, NULL);
    if (len <= 0) {
        MOAT_FAIL_SSL(err, MOAT_E_CONFIG, "%s cannot be encoded as DER", src->crl_path);
    }
    if ((size_t)len > MOAT_CRLPUB_MAX_BYTES) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "%s is %d bytes, more than the %d moat publishes from memory (publish it with "
                  "a static root instead)",
                  src->crl_path, len, MOAT_CRLPUB_MAX_BYTES);
    }
    p->der = malloc((size_t)len);
    if (p->der == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    unsigned char *w = p->der;
    p->der_len = (size_t)i2d_X509_CRL(crl, &w);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(p->der, p->der_len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 16) {
        MOAT_FAIL_SSL(err, MOAT_E_INTERNAL, "cannot hash the CRL");
    }
    static const char hex[] = "0123456789abcdef";
    size_t e = 0;
    p->etag[e++] = '"';
    for (unsigned i = 0; i < 16; i++) {
        p->etag[e++] = hex[md[i] >> 4];
        p->etag[e++] = hex[md[i] & 15];
    }
    p->etag[e++] = '"';
    p->etag[e] = '\0';
    p->etag_len = e;
    p->this_update = moat_ca_asn1_time(X509_CRL_get0_lastUpdate(crl));
    p->next_update = moat_ca_asn1_time(X509_CRL_get0_nextUpdate(crl));
    if (!moat_ok(
            moat_httpdate_format(p->this_update, p->last_modified, sizeof(p->last_modified))) ||
        !moat_ok(moat_httpdate_format(p->next_update, p->expires, sizeof(p->expires)))) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s has dates outside what HTTP can say", src->crl_path);
    }
    return MOAT_RC_OK;
}

static moat_rc entry_build(struct moat_crlpub *p, const struct source *src, int quiet, int dry_run,
                           time_t *refresh_at, struct moat_err *err)
{
    X509 *issuer = NULL;
    X509_CRL *crl = NULL;
    int foreign = 0;
    time_t now = time(NULL);
    char why[300];
    moat_rc rc = load_issuer(src, &issuer, err);
    if (moat_ok(rc)) {
        rc = read_crl(src, issuer, &crl, &foreign, err);
    }
    const char *problem = NULL;
    if (moat_ok(rc)) {
        problem = problem_of(src, issuer, crl, foreign, now, src->owner, why, sizeof(why));
    }
    if (moat_ok(rc) && problem != NULL && src->owner && dry_run) {
        moat_log_i("check: crl_publish %s (%s): serve would write a new CRL %s, as the previous "
                   "one %s (nothing written now)",
                   src->cp->path, src->cp->where, src->crl_path, problem);
        problem = NULL;
    } else if (moat_ok(rc) && problem != NULL && src->owner) {
        int done = 0;
        rc = remake(src, &crl, &issuer, &done, err);
        if (moat_ok(rc) && done) {
            if (!quiet) {
                moat_log_i("crl_publish %s (%s): wrote a new CRL %s: the previous one %s",
                           src->cp->path, src->cp->where, src->crl_path, problem);
            }
            problem = NULL;
        }
    }
    if (moat_ok(rc) && problem != NULL) {
        /* Served as it is: a stale CRL still lists what it lists, and clients judge its
         * dates themselves. The operator is told how to refresh it. */
        moat_log_w("crl_publish %s (%s): %s %s; make a new one with `moat ca crl --ca %s`, then "
                   "reload moat (SIGHUP)%s",
                   src->cp->path, src->cp->where, src->crl_path, problem, src->dir,
                   crl == NULL ? ": the path answers 404 until then" : "");
    }
    if (moat_ok(rc) && crl != NULL) {
        rc = entry_fill(p, src, crl, err);
    }
    if (moat_ok(rc) && src->owner && p->der != NULL && p->next_update > p->this_update) {
        time_t at = p->this_update + (p->next_update - p->this_update) * 2 / 3;
        if (*refresh_at == 0 || at < *refresh_at) {
            *refresh_at = at;
        }
    }
    X509_CRL_free(crl);
    X509_free(issuer);
    return rc;
}

/* The local CA is missing, and a site without `cert` makes serve create it. */
static int would_create_local_ca(const struct moat_conf *conf, const char *state_dir)
{
    char dir[PATH_MAX];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/ca", state_dir);
    if (stat(dir, &st) == 0 || errno != ENOENT) {
        return 0;
    }
    for (size_t i = 0; i < conf->nsites; i++) {
        if (conf->sites[i].ncerts == 0) {
            return 1;
        }
    }
    return 0;
}

moat_rc moat_crlpub_build(const struct moat_conf *conf, const char *state_dir, int quiet,
                          int dry_run, struct moat_crlpub_set **out, time_t *refresh_at,
                          struct moat_err *err)
{
    *out = NULL;
    size_t total = 0;
    for (size_t i = 0; i < conf->nsites; i++) {
        total += conf->sites[i].ncrl_publish;
    }
    if (total == 0) {
        return MOAT_RC_OK;
    }
    struct moat_crlpub_set *set = calloc(1, sizeof(*set));
    if (set == NULL || (set->v = calloc(total, sizeof(*set->v))) == NULL) {
        free(set);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = MOAT_RC_OK;
    for (size_t i = 0; i < conf->nsites && moat_ok(rc); i++) {
        const struct moat_conf_site *cs = &conf->sites[i];
        for (size_t k = 0; k < cs->ncrl_publish && moat_ok(rc); k++) {
            struct moat_crlpub *p = &set->v[set->n++];
            p->site = cs;
            p->conf = &cs->crl_publish[k];
            if (dry_run && p->conf->ca_dir == NULL && would_create_local_ca(conf, state_dir)) {
                /* `serve --check` does not create the local CA, so there is no CRL yet. */
                moat_log_i("check: crl_publish %s (%s): serve would publish the CRL of the local "
                           "CA it creates in %s/ca (nothing written now)",
                           p->conf->path, p->conf->where, state_dir);
                continue;
            }
            struct source src;
            rc = source_init(&src, p->conf, state_dir, err);
            if (moat_ok(rc)) {
                rc = entry_build(p, &src, quiet, dry_run, refresh_at, err);
            }
            if (!moat_ok(rc)) {
                src.cp = p->conf;
                rc = at_directive(rc, &src, err);
            }
        }
    }
    if (!moat_ok(rc)) {
        moat_crlpub_free(set);
        return rc;
    }
    *out = set;
    return MOAT_RC_OK;
}

/* ---- answering ---- */

const struct moat_crlpub *moat_crlpub_find(const struct moat_crlpub_set *set,
                                           const struct moat_conf_site *site, moat_slice npath,
                                           int plain)
{
    if (set == NULL || npath.p == NULL) {
        return NULL; /* not a path the site could serve */
    }
    const struct moat_crlpub *any = NULL;
    for (size_t i = 0; i < set->n; i++) {
        const struct moat_crlpub *p = &set->v[i];
        if (!moat_slice_eq(npath, moat_slice_cstr(p->conf->path))) {
            continue;
        }
        if (p->site == site) {
            return p;
        }
        if (any == NULL) {
            any = p;
        }
    }
    return plain ? any : NULL;
}

#define PUT(b, lit) moat_buf_append((b), (lit), sizeof(lit) - 1)

static moat_rc put_header(struct moat_buf *b, const char *name, const char *v, size_t vlen)
{
    MOAT_TRY(moat_buf_append(b, name, strlen(name)));
    MOAT_TRY(moat_buf_append(b, v, vlen));
    return PUT(b, "\r\n");
}

/* ETag, Last-Modified, Expires and Cache-Control: sent with 200 and 304 alike (RFC 9110
 * §15.4.5 asks a 304 for the validators and caching fields a 200 would have). */
static moat_rc put_validators(const struct moat_crlpub *p, time_t now, struct moat_buf *hdrs)
{
    MOAT_TRY(put_header(hdrs, "ETag: ", p->etag, p->etag_len));
    MOAT_TRY(put_header(hdrs, "Last-Modified: ", p->last_modified, MOAT_HTTPDATE_LEN));
    MOAT_TRY(put_header(hdrs, "Expires: ", p->expires, MOAT_HTTPDATE_LEN));
    /* Caches may keep it until the CA promised the next one, and no longer. */
    uint64_t left = p->next_update > now ? (uint64_t)(p->next_update - now) : 0;
    if (left == 0) {
        return PUT(hdrs, "Cache-Control: no-cache\r\n");
    }
    char num[MOAT_FMT_DEC_MAX];
    size_t n = moat_fmt_dec(num, left);
    return put_header(hdrs, "Cache-Control: public, max-age=", num, n);
}

static moat_rc small_page(int status, const char *title, int head, uint64_t *length,
                          struct moat_buf *hdrs, struct moat_buf *body)
{
    char page[160];
    int n = snprintf(page, sizeof(page), "<!doctype html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n",
                     status, title, status, title);
    *length = (uint64_t)n;
    MOAT_TRY(PUT(hdrs, "Content-Type: text/html; charset=utf-8\r\n"));
    return head ? MOAT_RC_OK : moat_buf_append(body, page, (size_t)n);
}

moat_rc moat_crlpub_respond(const struct moat_crlpub *p, int method_id, moat_slice if_none_match,
                            moat_slice if_modified_since, time_t now, int *status, uint64_t *length,
                            struct moat_buf *hdrs, struct moat_buf *body)
{
    *status = 500;
    *length = 0;
    int head = method_id == MOAT_HTTP_M_HEAD;
    switch (method_id) {
    case MOAT_HTTP_M_GET:
    case MOAT_HTTP_M_HEAD:
        break;
    case MOAT_HTTP_M_OPTIONS:
        *status = 204;
        return PUT(hdrs, "Allow: GET, HEAD, OPTIONS\r\n");
    default:
        /* RFC 9110 §15.5.6: a 405 lists the allowed methods. */
        *status = 405;
        MOAT_TRY(PUT(hdrs, "Allow: GET, HEAD, OPTIONS\r\n"));
        return small_page(405, "Method Not Allowed", 0, length, hdrs, body);
    }
    if (p->der == NULL) {
        *status = 404;
        return small_page(404, "Not Found", head, length, hdrs, body);
    }
    /* RFC 9110 §13.1.3: If-Modified-Since counts only without If-None-Match. */
    int not_modified = 0;
    moat_slice inm = moat_slice_trim_ows(if_none_match),
               ims = moat_slice_trim_ows(if_modified_since);
    time_t t = 0;
    if (inm.len > 0) {
        not_modified = moat_etag_list_match(inm, p->etag, p->etag_len, 1);
    } else if (ims.len > 0 && moat_ok(moat_httpdate_parse(ims.p, ims.len, &t))) {
        not_modified = p->this_update <= t;
    }
    MOAT_TRY(put_validators(p, now, hdrs));
    if (not_modified) {
        *status = 304;
        return MOAT_RC_OK;
    }
    *status = 200;
    *length = p->der_len;
    MOAT_TRY(PUT(hdrs, "Content-Type: application/pkix-crl\r\n"));
    return head ? MOAT_RC_OK : moat_buf_append(body, p->der, p->der_len);
}

moat_rc moat_crlpub_handle(const void *ctx, const struct moat_req *req, struct moat_res *res,
                           struct moat_buf *fields, struct moat_buf *body)
{
    *res = (struct moat_res){.status = 500, .fd = -1};
    size_t before = moat_buf_len(body);
    MOAT_TRY(moat_crlpub_respond(ctx, (int)req->method_id, moat_req_field(req, "if-none-match"),
                                 moat_req_field(req, "if-modified-since"), req->now, &res->status,
                                 &res->length, fields, body));
    res->has_generated_body = moat_buf_len(body) > before;
    return MOAT_RC_OK;
}
