/*
 * client.c: talking to one ACME CA (see client.h).
 *
 * Each exchange is one `moat get` run (client/get.h) with the CA's trust: a new verified TLS
 * connection per request. ACME sends a handful of requests per certificate, so connection
 * reuse would save little, and the strict client explains every TLS or HTTP failure the way
 * `moat get` does, which is what an operator debugging a CA connection wants to read.
 */
#include "acme/client.h"

#include "acme/jws.h"
#include "client/get.h"
#include "core/httpdate.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BAD_NONCE_TRIES 8

void moat_acme_resp_clear(struct moat_acme_resp *r)
{
    free(r->head);
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
    r->retry_after_s = -1;
}

/* The idx-th field `name` of a head ("HTTP/1.1 200 OK\r\nName: value\r\n..."). */
int moat_acme_resp_field(const struct moat_acme_resp *r, const char *name, size_t idx, char *out,
                         size_t outlen)
{
    if (r->head == NULL || outlen == 0) {
        return 0;
    }
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\n");
    while (p != NULL) {
        p++;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            if (idx-- == 0) {
                const char *v = p + nl + 1, *e = p + len;
                while (v < e && (*v == ' ' || *v == '\t')) {
                    v++;
                }
                while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) {
                    e--;
                }
                size_t vl = (size_t)(e - v);
                if (vl >= outlen) {
                    return 0; /* a value too long for its use is as good as none */
                }
                memcpy(out, v, vl);
                out[vl] = '\0';
                return 1;
            }
        }
        p = eol;
    }
    return 0;
}

/* Does one link-value's parameters (what follows "<url>" up to the next link-value) hold
 * rel="want" (RFC 8288 §3: parameters are ";"-separated name=value, rel may list several
 * relation types)? Only a parameter named rel counts, not "rel" inside another's value. */
static int link_has_rel(const char *p, const char *end, const char *want)
{
    size_t wl = strlen(want);
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) {
            p++;
        }
        const char *name = p;
        while (p < end && *p != '=' && *p != ';' && *p != ' ') {
            p++;
        }
        size_t nl = (size_t)(p - name);
        while (p < end && *p == ' ') {
            p++;
        }
        const char *v = p, *ve = p;
        if (p < end && *p == '=') {
            p++;
            while (p < end && *p == ' ') {
                p++;
            }
            if (p < end && *p == '"') {
                v = ++p;
                while (p < end && *p != '"') {
                    p++;
                }
                ve = p;
                p += p < end;
            } else {
                v = p;
                while (p < end && *p != ';' && *p != ' ') {
                    p++;
                }
                ve = p;
            }
        }
        while (p < end && *p != ';') {
            p++; /* anything else up to the next parameter */
        }
        if (nl != 3 || strncasecmp(name, "rel", 3) != 0) {
            continue;
        }
        for (const char *t = v; t < ve;) {
            const char *te = t;
            while (te < ve && *te != ' ') {
                te++;
            }
            if ((size_t)(te - t) == wl && strncasecmp(t, want, wl) == 0) {
                return 1;
            }
            t = te + (te < ve);
        }
    }
    return 0;
}

int moat_acme_resp_link(const struct moat_acme_resp *r, const char *rel, size_t idx, char *out,
                        size_t outlen)
{
    char v[4096];
    for (size_t f = 0; moat_acme_resp_field(r, "Link", f, v, sizeof(v)); f++) {
        /* One field may hold several link-values: <a>;rel="x", <b>;rel="y". A ',' inside a
         * quoted value does not end one, so the end is found outside quotes. */
        const char *p = v;
        while ((p = strchr(p, '<')) != NULL) {
            const char *gt = strchr(p, '>');
            if (gt == NULL) {
                break;
            }
            const char *inner = memchr(p + 1, '<', (size_t)(gt - p - 1));
            if (inner != NULL) {
                p = inner; /* "<junk<url>": a URI holds no '<' (RFC 3986), so restart there */
                continue;
            }
            const char *e = gt + 1;
            int quoted = 0;
            while (*e && (quoted || *e != ',')) {
                quoted ^= *e == '"';
                e++;
            }
            if (link_has_rel(gt + 1, e, rel) && idx-- == 0) {
                size_t n = (size_t)(gt - p - 1);
                if (n >= outlen) {
                    return 0;
                }
                memcpy(out, p + 1, n);
                out[n] = '\0';
                return 1;
            }
            p = e;
        }
    }
    return 0;
}

void moat_acme_say(struct moat_acme *a, int level, const char *fmt, ...)
{
    if (a->say == NULL) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    a->say(a->say_arg, level, line);
}

const char *moat_acme_json_str(const json_t *o, const char *key)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *moat_acme_directory_url(const char *s)
{
    if (s == NULL || strcmp(s, "production") == 0 || strcmp(s, "letsencrypt") == 0) {
        return MOAT_ACME_LE_PRODUCTION;
    }
    if (strcmp(s, "staging") == 0 || strcmp(s, "letsencrypt-staging") == 0) {
        return MOAT_ACME_LE_STAGING;
    }
    return s;
}

struct body_acc {
    unsigned char *p;
    size_t n, cap;
    int over;
};

static int body_cb(void *arg, const void *p, size_t n)
{
    struct body_acc *b = arg;
    if (b->n + n > MOAT_ACME_BODY_MAX) {
        b->over = 1;
        return -1;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) {
            cap *= 2;
        }
        unsigned char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->over = 1;
            return -1;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

/* Resolve a Location that may be relative (RFC 9110 §10.2.2) against the request's URL. */
static void absolute_url(const char *base, const char *loc, char *out, size_t outlen)
{
    size_t blen = 0;
    if (strncasecmp(loc, "https://", 8) != 0 && strncasecmp(loc, "http://", 7) != 0) {
        const char *auth = strstr(base, "://");
        const char *path = auth ? strchr(auth + 3, '/') : NULL;
        blen = path ? (size_t)(path - base) : strlen(base);
    }
    /* A relative reference not starting with '/' is rare enough to take as from the root. */
    int slash = blen > 0 && loc[0] != '/';
    size_t ll = strlen(loc);
    if (blen + (size_t)slash + ll >= outlen) {
        out[0] = '\0'; /* too long to be a URL moat would follow */
        return;
    }
    memcpy(out, base, blen);
    if (slash) {
        out[blen] = '/';
    }
    memcpy(out + blen + (size_t)slash, loc, ll + 1);
}

static long parse_retry_after(const char *v)
{
    char *end = NULL;
    long s = strtol(v, &end, 10);
    if (end != v && *end == '\0' && s >= 0) {
        return s > 86400 * 7 ? 86400 * 7 : s;
    }
    time_t t;
    if (moat_ok(moat_httpdate_parse(v, strlen(v), &t))) {
        time_t now = time(NULL);
        return t > now ? (long)(t - now) : 0;
    }
    return -1;
}

static int is_b64url_token(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return 0;
        }
    }
    return n > 0 && n < max;
}

/* One HTTPS exchange with the CA. */
static moat_rc http(struct moat_acme *a, const char *method, const char *url, const char *body,
                    const char *accept, struct moat_acme_resp *r, struct moat_err *err)
{
    moat_acme_resp_clear(r);
    if (strncasecmp(url, "https://", 8) != 0) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA gave the URL \"%.300s\", which is not https://: refused (RFC 8555 "
                  "§6.1)",
                  url);
    }
    struct moat_client_opts o;
    moat_client_opts_init(&o);
    o.url = url;
    o.method = method;
    o.cafile = a->cafile;
    o.no_default_trust = a->cafile != NULL;
    o.no_local_ca = 1;
    o.timeout_ms = a->timeout_ms;
    char acc[160];
    snprintf(acc, sizeof(acc), "Accept: %s", accept ? accept : "application/json");
    o.headers[o.nheaders++] = acc;
    o.headers[o.nheaders++] = "User-Agent: moat/" MOAT_VERSION " (ACME)";
    if (body != NULL) {
        o.headers[o.nheaders++] = "Content-Type: application/jose+json";
        o.body = strdup(body);
        o.body_len = strlen(body);
        if (o.body == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    struct moat_client_result *res = calloc(1, sizeof(*res));
    if (res == NULL) {
        moat_client_opts_clear(&o);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    struct body_acc b = {0};
    struct moat_err e = {0};
    moat_rc rc = moat_client_get_run(&o, body_cb, &b, res, &e);
    moat_client_opts_clear(&o);
    struct moat_client_hop *h = res->nhops ? &res->hops[res->nhops - 1] : NULL;
    if (!moat_ok(rc) || h == NULL) {
        char line[1200] = "";
        if (b.over) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "the ACME CA's answer to %s %.300s is larger than %d bytes", method,
                              url, MOAT_ACME_BODY_MAX);
        } else {
            if (h != NULL) {
                moat_client_hop_cause_line(h, line, sizeof(line));
            }
            rc = moat_err_set(err, rc.kind == MOAT_E_USAGE ? MOAT_E_CONFIG : MOAT_E_PEER, __FILE__,
                              __LINE__, "cannot reach the ACME CA at %.300s: %s%s%s", url,
                              line[0] ? line : e.msg, h ? "; " : "",
                              h ? moat_client_hop_fix(h) : "");
        }
        moat_client_result_clear(res);
        free(res);
        free(b.p);
        return rc;
    }
    r->status = h->status;
    r->head = h->resp_head ? strdup(h->resp_head) : strdup("");
    r->body = b.p ? b.p : (unsigned char *)strdup("");
    r->len = b.n;
    moat_client_result_clear(res);
    free(res);
    if (r->head == NULL || r->body == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    char v[MOAT_ACME_URL_MAX];
    /* RFC 8555 §6.5: every answer may carry a fresh nonce; a bad one is simply not used. */
    if (moat_acme_resp_field(r, "Replay-Nonce", 0, v, sizeof(v)) &&
        is_b64url_token(v, sizeof(a->nonce))) {
        memcpy(a->nonce, v, strlen(v) + 1); /* is_b64url_token checked it fits */
    }
    if (moat_acme_resp_field(r, "Location", 0, v, sizeof(v))) {
        absolute_url(url, v, r->location, sizeof(r->location));
    }
    if (moat_acme_resp_field(r, "Retry-After", 0, v, sizeof(v))) {
        r->retry_after_s = parse_retry_after(v);
    }
    if (moat_acme_resp_field(r, "Content-Type", 0, v, sizeof(v)) &&
        (strncasecmp(v, "application/json", 16) == 0 ||
         strncasecmp(v, "application/problem+json", 24) == 0)) {
        json_error_t je;
        r->json = json_loadb((const char *)r->body, r->len, JSON_REJECT_DUPLICATES, &je);
        if (r->json == NULL) {
            MOAT_FAIL(err, MOAT_E_PEER,
                      "the ACME CA's answer to %s %.300s is not valid JSON (%s at line %d)", method,
                      url, je.text, je.line);
        }
    }
    return MOAT_RC_OK;
}

static const struct {
    const char *type, *words;
} PROBLEMS[] = {
    {"accountDoesNotExist", "the CA has no account for this key"},
    {"alreadyRevoked", "the certificate is already revoked"},
    {"alreadyReplaced", "the certificate named in 'replaces' was already replaced"},
    {"badCSR", "the CA refused the certificate request (CSR)"},
    {"badNonce", "the CA refused the request's nonce"},
    {"badPublicKey", "the CA does not accept this key"},
    {"badRevocationReason", "the CA does not accept this revocation reason"},
    {"badSignatureAlgorithm", "the CA does not accept this signature algorithm"},
    {"caa", "a CAA record for the name forbids this CA"},
    {"compound", "several problems (listed below)"},
    {"connection", "the CA could not connect to this server to check the challenge"},
    {"dns", "the CA's DNS lookup for the name failed"},
    {"externalAccountRequired", "the CA requires an External Account Binding (eab_kid, eab_hmac)"},
    {"incorrectResponse", "the CA reached the server but got the wrong challenge answer"},
    {"invalidContact", "the CA refused the contact address"},
    {"malformed", "the CA found the request malformed"},
    {"orderNotReady", "the order is not ready to be finalized"},
    {"rateLimited", "the CA's rate limit was reached"},
    {"rejectedIdentifier", "the CA will not issue for this name"},
    {"serverInternal", "the CA had an internal error"},
    {"tls", "the CA's TLS connection to this server failed while checking the challenge"},
    {"unauthorized", "the CA says this account may not do that"},
    {"unsupportedContact", "the CA does not support this kind of contact address"},
    {"unsupportedIdentifier", "the CA does not issue for this kind of name"},
    {"userActionRequired", "the CA needs a person to act (usually: agree to new terms)"},
};

const char *moat_acme_problem_words(const char *type)
{
    if (type == NULL) {
        return "the CA refused the request";
    }
    for (size_t i = 0; i < sizeof(PROBLEMS) / sizeof(PROBLEMS[0]); i++) {
        if (strcmp(PROBLEMS[i].type, type) == 0) {
            return PROBLEMS[i].words;
        }
    }
    return "the CA refused the request";
}

/* "urn:ietf:params:acme:error:badNonce" -> "badNonce"; other URIs whole. */
static const char *short_type(const char *t)
{
    static const char urn[] = "urn:ietf:params:acme:error:";
    return strncmp(t, urn, sizeof(urn) - 1) == 0 ? t + sizeof(urn) - 1 : t;
}

/* Append one problem ("words: detail") to out. */
static void add_problem(char *out, size_t outlen, const json_t *p)
{
    const char *type = moat_acme_json_str(p, "type");
    const char *detail = moat_acme_json_str(p, "detail");
    const char *st = type ? short_type(type) : "";
    size_t l = strlen(out);
    snprintf(out + l, outlen - l, "%s%s%s%s", type ? moat_acme_problem_words(st) : "",
             type && detail ? ": " : "", detail ? detail : "", "");
    const json_t *id = json_object_get(p, "identifier");
    const char *idv = moat_acme_json_str(id, "value");
    if (idv != NULL) {
        l = strlen(out);
        snprintf(out + l, outlen - l, " (%s)", idv);
    }
}

/* Turn a non-2xx answer into words in err and a->problem. */
static moat_rc refusal(struct moat_acme *a, const char *what, const struct moat_acme_resp *r,
                       struct moat_err *err)
{
    a->problem[0] = '\0';
    a->retry_after_s = r->retry_after_s;
    char words[MOAT_ERR_MSG_MAX - 100] = "";
    const char *type = moat_acme_json_str(r->json, "type");
    if (type != NULL) {
        snprintf(a->problem, sizeof(a->problem), "%s", short_type(type));
        add_problem(words, sizeof(words), r->json);
        const json_t *subs = json_object_get(r->json, "subproblems");
        size_t i;
        const json_t *sp;
        json_array_foreach(subs, i, sp)
        {
            size_t l = strlen(words);
            snprintf(words + l, sizeof(words) - l, "; ");
            add_problem(words, sizeof(words), sp);
        }
    } else {
        snprintf(words, sizeof(words), "HTTP %d with no problem document (%.80s)", r->status,
                 r->body ? (const char *)r->body : "");
        for (char *c = words; *c; c++) {
            if (*c == '\r' || *c == '\n') {
                *c = ' ';
            }
        }
    }
    int limited = strcmp(a->problem, "rateLimited") == 0 || r->status == 429;
    char wait[64] = "";
    if (r->retry_after_s >= 0) {
        snprintf(wait, sizeof(wait), " (the CA says retry after %ld s)", r->retry_after_s);
    }
    return moat_err_set(err, limited ? MOAT_E_LIMIT : MOAT_E_PEER, __FILE__, __LINE__, "%s: %s%s",
                        what, words, wait);
}

static moat_rc fresh_nonce(struct moat_acme *a, struct moat_err *err)
{
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    moat_rc rc = http(a, "HEAD", a->dir.new_nonce, NULL, NULL, &r, err);
    if (moat_ok(rc) && a->nonce[0] == '\0') {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA's newNonce (%s) answered %d without a Replay-Nonce",
                          a->dir.new_nonce, r.status);
    }
    moat_acme_resp_clear(&r);
    return rc;
}

moat_rc moat_acme_post(struct moat_acme *a, const char *url, const char *payload,
                       const char *accept, struct moat_acme_resp *r, struct moat_err *err)
{
    if (a->key == NULL) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "ACME request before an account key was set");
    }
    for (int attempt = 1;; attempt++) {
        if (a->nonce[0] == '\0') {
            MOAT_TRY(fresh_nonce(a, err));
        }
        char nonce[sizeof(a->nonce)];
        memcpy(nonce, a->nonce, sizeof(nonce));
        a->nonce[0] = '\0'; /* each nonce is used once (RFC 8555 §6.5) */
        char *jws = NULL;
        MOAT_TRY(moat_jws_sign(a->key, a->kid, nonce, url, payload, &jws, err));
        moat_rc rc = http(a, "POST", url, jws, accept, r, err);
        free(jws);
        MOAT_TRY(rc);
        if (r->status >= 200 && r->status < 300) {
            a->problem[0] = '\0';
            return MOAT_RC_OK;
        }
        char what[400];
        snprintf(what, sizeof(what), "the ACME CA refused POST %.300s", url);
        rc = refusal(a, what, r, err);
        if (strcmp(a->problem, "badNonce") != 0 || attempt >= BAD_NONCE_TRIES) {
            return rc;
        }
        moat_acme_say(a, 0, "the CA rejected a nonce (badNonce); retrying with a fresh one");
    }
}

moat_rc moat_acme_get(struct moat_acme *a, const char *url, const char *accept,
                      struct moat_acme_resp *r, struct moat_err *err)
{
    return http(a, "GET", url, NULL, accept, r, err);
}

static char *dup_member(const json_t *o, const char *key)
{
    const char *s = moat_acme_json_str(o, key);
    return s ? strdup(s) : NULL;
}

static void directory_clear(struct moat_acme_directory *d)
{
    free(d->new_nonce);
    free(d->new_account);
    free(d->new_order);
    free(d->revoke_cert);
    free(d->key_change);
    free(d->renewal_info);
    free(d->terms_of_service);
    free(d->website);
    for (size_t i = 0; i < d->ncaa_identities; i++) {
        free(d->caa_identities[i]);
    }
    free(d->caa_identities);
    for (size_t i = 0; i < d->nprofiles; i++) {
        free(d->profiles[i]);
    }
    free(d->profiles);
    memset(d, 0, sizeof(*d));
}

static moat_rc read_directory(struct moat_acme *a, const json_t *j, struct moat_err *err)
{
    struct moat_acme_directory *d = &a->dir;
    if (!json_is_object(j)) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "%s is not an ACME directory (the answer is not a JSON object): check the "
                  "directory URL",
                  a->directory_url);
    }
    d->new_nonce = dup_member(j, "newNonce");
    d->new_account = dup_member(j, "newAccount");
    d->new_order = dup_member(j, "newOrder");
    d->revoke_cert = dup_member(j, "revokeCert");
    d->key_change = dup_member(j, "keyChange");
    d->renewal_info = dup_member(j, "renewalInfo");
    const json_t *meta = json_object_get(j, "meta");
    d->terms_of_service = dup_member(meta, "termsOfService");
    d->website = dup_member(meta, "website");
    d->external_account_required = json_is_true(json_object_get(meta, "externalAccountRequired"));
    const json_t *caa = json_object_get(meta, "caaIdentities");
    if (json_is_array(caa) && json_array_size(caa) > 0) {
        d->caa_identities = calloc(json_array_size(caa), sizeof(char *));
        size_t i;
        const json_t *v;
        json_array_foreach(caa, i, v)
        {
            if (d->caa_identities != NULL && json_is_string(v)) {
                d->caa_identities[d->ncaa_identities++] = strdup(json_string_value(v));
            }
        }
    }
    const json_t *prof = json_object_get(meta, "profiles");
    if (json_is_object(prof) && json_object_size(prof) > 0) {
        d->profiles = calloc(json_object_size(prof), sizeof(char *));
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)prof, k, v)
        {
            if (d->profiles != NULL) {
                d->profiles[d->nprofiles++] = strdup(k);
            }
        }
    }
    const char *missing = d->new_nonce == NULL     ? "newNonce"
                          : d->new_account == NULL ? "newAccount"
                          : d->new_order == NULL   ? "newOrder"
                                                   : NULL;
    if (missing != NULL) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "%s is not an ACME directory: it has no \"%s\" (check the directory URL; "
                  "Let's Encrypt's is " MOAT_ACME_LE_PRODUCTION ")",
                  a->directory_url, missing);
    }
    return MOAT_RC_OK;
}

moat_rc moat_acme_new(const struct moat_acme_opts *o, struct moat_acme **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_acme *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    a->directory_url = strdup(moat_acme_directory_url(o->directory));
    a->cafile = o->cafile ? strdup(o->cafile) : NULL;
    a->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    a->say = o->say;
    a->say_arg = o->say_arg;
    a->retry_after_s = -1;
    if (a->directory_url == NULL || (o->cafile != NULL && a->cafile == NULL)) {
        moat_acme_free(a);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    struct moat_acme_resp r = {0};
    moat_rc rc = http(a, "GET", a->directory_url, NULL, NULL, &r, err);
    if (moat_ok(rc) && r.status != 200) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME directory %s answered HTTP %d, not 200: check the URL",
                          a->directory_url, r.status);
    }
    if (moat_ok(rc)) {
        rc = read_directory(a, r.json, err);
    }
    moat_acme_resp_clear(&r);
    if (!moat_ok(rc)) {
        moat_acme_free(a);
        return rc;
    }
    *out = a;
    return MOAT_RC_OK;
}

void moat_acme_free(struct moat_acme *a)
{
    if (a == NULL) {
        return;
    }
    directory_clear(&a->dir);
    free(a->directory_url);
    free(a->cafile);
    EVP_PKEY_free(a->key);
    free(a->kid);
    free(a);
}

void moat_acme_use_key(struct moat_acme *a, EVP_PKEY *key, const char *kid)
{
    if (key != NULL) {
        EVP_PKEY_up_ref(key);
    }
    EVP_PKEY_free(a->key);
    a->key = key;
    free(a->kid);
    a->kid = kid ? strdup(kid) : NULL;
}

moat_rc moat_acme_account(struct moat_acme *a, const struct moat_acme_account_req *q,
                          json_t **account, struct moat_err *err)
{
    if (account != NULL) {
        *account = NULL;
    }
    if (!q->only_existing && a->dir.terms_of_service != NULL && !q->agree_tos) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the ACME CA at %s asks you to agree to its terms of service (%s): read them, "
                  "then set `agree_tos yes` (command line: --agree-tos)",
                  a->directory_url, a->dir.terms_of_service);
    }
    if (!q->only_existing && a->dir.external_account_required &&
        (q->eab_kid == NULL || q->eab_hmac == NULL)) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the ACME CA at %s requires an External Account Binding: set `eab_kid` and "
                  "`eab_hmac` to the key id and MAC key the CA gave you (command line: "
                  "--eab-kid, --eab-hmac)",
                  a->directory_url);
    }
    json_t *req = json_object();
    moat_rc rc =
        req ? MOAT_RC_OK : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    if (moat_ok(rc) && q->only_existing) {
        json_object_set_new(req, "onlyReturnExisting", json_true());
    } else if (moat_ok(rc)) {
        json_t *contacts = json_array();
        for (size_t i = 0; contacts != NULL && i < q->ncontacts; i++) {
            char m[512];
            snprintf(m, sizeof(m), "mailto:%s", q->contacts[i]);
            json_array_append_new(contacts, json_string(m));
        }
        if (contacts != NULL && json_array_size(contacts) > 0) {
            json_object_set_new(req, "contact", contacts);
        } else {
            json_decref(contacts);
        }
        if (a->dir.terms_of_service != NULL && q->agree_tos) {
            json_object_set_new(req, "termsOfServiceAgreed", json_true());
            moat_acme_say(a, 0, "agreeing to the CA's terms of service: %s",
                          a->dir.terms_of_service);
        }
        if (q->eab_kid != NULL && q->eab_hmac != NULL) {
            json_t *eab = NULL;
            rc = moat_jws_eab(q->eab_kid, q->eab_hmac, a->key, a->dir.new_account, &eab, err);
            if (moat_ok(rc)) {
                json_object_set_new(req, "externalAccountBinding", eab);
            }
        }
    }
    char *payload = moat_ok(rc) ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (moat_ok(rc) && payload == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    struct moat_acme_resp r = {0};
    if (moat_ok(rc)) {
        free(a->kid); /* newAccount is signed with the JWK, never a kid */
        a->kid = NULL;
        rc = moat_acme_post(a, a->dir.new_account, payload, NULL, &r, err);
        if (!moat_ok(rc)) {
            moat_err_ctx(err, q->only_existing ? "looking up the ACME account"
                                               : "creating the ACME account");
        }
    }
    free(payload);
    if (moat_ok(rc) && r.location[0] == '\0') {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA answered newAccount (HTTP %d) without the account's URL "
                          "(Location)",
                          r.status);
    }
    if (moat_ok(rc)) {
        const char *st = moat_acme_json_str(r.json, "status");
        if (st != NULL && strcmp(st, "valid") != 0) {
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "the ACME account %s is %s: it cannot order certificates, and a "
                              "CA never makes it valid again (for a new account, remove its "
                              "folder under acme/accounts/ in the state folder, or use a new "
                              "state folder)",
                              r.location, st);
        }
    }
    if (moat_ok(rc)) {
        a->kid = strdup(r.location);
        if (a->kid == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        } else if (account != NULL) {
            *account = json_incref(r.json);
        }
    }
    moat_acme_resp_clear(&r);
    return rc;
}
