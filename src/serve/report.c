/*
 * report.c: the admin interface's answers (see report.h).
 */
#include "serve/report.h"
#include "serve/cluster.h"

#include "acme/manager.h"
#include "core/timer.h"
#include "serve/cache.h"
#include "serve/guard.h"
#include "serve/metrics.h"
#include "serve/snapshot.h"
#include "tls/certset.h"
#include "upstream/group.h"

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- JSON helpers ----------------------------------------------------------------------- */

static moat_rc nomem(void)
{
    return moat_rc_of(MOAT_E_NOMEM);
}

/* Hand `j` (taken) to the buffer as indented JSON and a newline. */
static moat_rc dump(json_t *j, struct moat_buf *out)
{
    if (j == NULL) {
        return nomem();
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (s == NULL) {
        return nomem();
    }
    moat_rc rc = moat_buf_append(out, s, strlen(s));
    free(s);
    return moat_ok(rc) ? moat_buf_append(out, "\n", 1) : rc;
}

/* A time as RFC 3339 in UTC, or JSON null for 0 (never / unknown). */
static json_t *jtime(time_t t)
{
    struct tm tm;
    char s[40];
    if (t == 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        return json_null();
    }
    return json_string(s);
}

static void set(json_t *o, const char *k, json_t *v)
{
    json_object_set_new(o, k, v != NULL ? v : json_null());
}

/* {"key": v}, v taken; NULL when either is missing (out of memory). */
static json_t *wrap(const char *key, json_t *v)
{
    json_t *top = v != NULL ? json_object() : NULL;
    if (top == NULL) {
        json_decref(v);
        return NULL;
    }
    set(top, key, v);
    return top;
}

static json_t *jstrs(char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, json_string(s[i]));
    }
    return a;
}

/* ---- certificates ----------------------------------------------------------------------- */

static json_t *jname(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL) {
        return NULL;
    }
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *p = NULL;
    long len = BIO_get_mem_data(b, &p);
    json_t *j = json_stringn(p != NULL ? p : "", len > 0 ? (size_t)len : 0);
    BIO_free(b);
    return j;
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return timegm(&tm);
}

static json_t *jkey(const EVP_PKEY *k)
{
    char s[80];
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_EC) {
        char group[40] = "?";
        size_t len = 0;
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len);
        snprintf(s, sizeof(s), "ECDSA %s", group);
    } else if (id == EVP_PKEY_RSA) {
        snprintf(s, sizeof(s), "RSA %d", EVP_PKEY_get_bits(k));
    } else {
        snprintf(s, sizeof(s), "%s", OBJ_nid2sn(id));
    }
    return json_string(s);
}

static json_t *jserial(const X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    json_t *j = hex != NULL ? json_string(hex) : NULL;
    OPENSSL_free(hex);
    BN_free(bn);
    return j;
}

static json_t *jfingerprint(const X509 *x)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!X509_digest(x, EVP_sha256(), md, &n)) {
        return NULL;
    }
    char s[EVP_MAX_MD_SIZE * 3 + 1];
    for (unsigned i = 0; i < n; i++) {
        snprintf(s + 3 * i, 4, "%02X%s", md[i], i + 1 < n ? ":" : "");
    }
    return json_string(s);
}

static json_t *jcert_short(const X509 *x)
{
    json_t *o = json_object();
    if (o != NULL) {
        set(o, "subject", jname(X509_get_subject_name(x)));
        set(o, "issuer", jname(X509_get_issuer_name(x)));
        set(o, "not_after", jtime(asn1_time(X509_get0_notAfter(x))));
    }
    return o;
}

/* The ACME thread's word on a lineage: by the site's first name and the key's kind. */
static const struct moat_acme_state *acme_state_of(const struct moat_acme_state *st, size_t n,
                                                   const char *name, int key_type)
{
    const char *kind = key_type == EVP_PKEY_RSA ? "rsa" : "ecdsa";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(st[i].name, name) == 0 && strcmp(st[i].kind, kind) == 0) {
            return &st[i];
        }
    }
    return NULL;
}

static const char *source_of(const struct moat_site *s)
{
    if (s->conf->acme) {
        return s->acme_waiting ? "acme (none yet: the local CA's serves meanwhile)" : "acme";
    }
    return s->local_cert ? "local CA" : "files";
}

static json_t *jcertset(const struct moat_tls_certset *cs, const struct moat_site *site,
                        const struct moat_acme_state *acme, time_t now)
{
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    set(o, "key", jkey(cs->key));
    set(o, "subject", jname(X509_get_subject_name(cs->leaf)));
    set(o, "issuer", jname(X509_get_issuer_name(cs->leaf)));
    set(o, "names", jstrs(cs->names, cs->nnames));
    set(o, "not_before", jtime(cs->not_before));
    set(o, "not_after", jtime(cs->not_after));
    long long left = (long long)(cs->not_after - now);
    set(o, "seconds_left", json_integer(left));
    set(o, "days_left", json_integer(left >= 0 ? left / 86400 : -((-left + 86399) / 86400)));
    set(o, "serial", jserial(cs->leaf));
    set(o, "sha256", jfingerprint(cs->leaf));
    set(o, "file", json_string(cs->label));
    json_t *chain = json_array();
    for (int i = 0; chain != NULL && i < sk_X509_num(cs->chain); i++) {
        json_array_append_new(chain, jcert_short(sk_X509_value(cs->chain, i)));
    }
    set(o, "chain", chain);
    time_t renew = 0;
    if (acme != NULL) {
        renew = acme->renew_at;
    } else if (site->local_cert || (site->conf->acme && site->acme_waiting)) {
        renew = cs->renew_at != 0 ? cs->renew_at : site->cert_renew_at;
    }
    set(o, "next_renewal", jtime(renew));
    return o;
}

json_t *moat_report_certs_json(const struct moat_report_src *r)
{
    struct moat_acme_state *st = NULL;
    size_t nst = 0;
    if (!moat_ok(moat_acme_mgr_states(r->acme, &st, &nst, NULL))) {
        return NULL;
    }
    time_t now = time(NULL);
    json_t *sites = json_array();
    for (size_t i = 0; sites != NULL && i < r->snap->nsites; i++) {
        const struct moat_site *s = &r->snap->sites[i];
        json_t *o = json_object();
        if (o == NULL) {
            break;
        }
        set(o, "site", json_string(s->conf->names[0]));
        set(o, "names", jstrs(s->conf->names, s->conf->nnames));
        set(o, "source", json_string(source_of(s)));
        json_t *certs = json_array();
        for (size_t k = 0; certs != NULL && k < s->ncerts; k++) {
            const struct moat_tls_certset *cs = s->certs[k];
            const struct moat_acme_state *a =
                s->conf->acme && !s->acme_waiting
                    ? acme_state_of(st, nst, s->conf->names[0], cs->key_type)
                    : NULL;
            json_array_append_new(certs, jcertset(cs, s, a, now));
        }
        set(o, "certificates", certs);
        if (s->conf->acme) {
            json_t *acme = json_array();
            for (size_t k = 0; acme != NULL && k < nst; k++) {
                if (strcmp(st[k].name, s->conf->names[0]) != 0) {
                    continue;
                }
                json_t *a = json_object();
                if (a == NULL) {
                    break;
                }
                set(a, "kind", json_string(st[k].kind));
                set(a, "ca", json_string(st[k].ca));
                set(a, "not_after", jtime(st[k].not_after));
                set(a, "renew_at", jtime(st[k].renew_at));
                set(a, "ari", json_boolean(st[k].ari));
                set(a, "failures", json_integer(st[k].failures));
                set(a, "next_try", jtime(st[k].failures > 0 ? st[k].next_try : 0));
                set(a, "last_error",
                    st[k].last_error[0] ? json_string(st[k].last_error) : json_null());
                json_array_append_new(acme, a);
            }
            set(o, "acme", acme);
        }
        json_array_append_new(sites, o);
    }
    free(st);
    return wrap("sites", sites);
}

moat_rc moat_report_certs(const struct moat_report_src *r, struct moat_buf *out)
{
    return dump(moat_report_certs_json(r), out);
}

/* ---- upstreams -------------------------------------------------------------------------- */

static const char *balance_name(enum moat_up_balance b)
{
    static const char *const names[] = {"round_robin", "least_conn",  "random_two",
                                        "hash_ip",     "hash_header", "hash_cookie"};
    return (unsigned)b < sizeof(names) / sizeof(names[0]) ? names[b] : "?";
}

/* A server's state in one word, and since when it is out (ms, 0: in). */
static const char *server_state(const struct moat_up_group *g, size_t i, uint64_t now_ms,
                                uint64_t *out_for_ms)
{
    const struct moat_up_server *s = &g->servers[i];
    uint64_t until = atomic_load_explicit(&s->down_until, memory_order_relaxed);
    *out_for_ms = until > now_ms ? until - now_ms : 0;
    if (atomic_load_explicit(&s->check_down, memory_order_relaxed)) {
        return "down (health check)";
    }
    if (until > now_ms) {
        return "down (failures)";
    }
    uint64_t back = atomic_load_explicit(&s->back_at, memory_order_relaxed);
    if (back != 0 && g->p.slow_start_ms > 0 && now_ms < back + g->p.slow_start_ms) {
        return "slow start";
    }
    return "up";
}

json_t *moat_report_upstreams_json(const struct moat_report_src *r)
{
    uint64_t now_ms = moat_now_ms();
    json_t *ups = json_array();
    for (size_t i = 0; ups != NULL && i < r->snap->ngroups; i++) {
        const struct moat_up_group *g = r->snap->groups[i];
        json_t *o = json_object();
        if (o == NULL) {
            break;
        }
        set(o, "name", json_string(moat_up_group_name(g)));
        set(o, "balance", json_string(balance_name(g->p.balance)));
        set(o, "health_check", g->p.check_path != NULL ? json_string(g->p.check_path) : NULL);
        set(o, "queued", json_integer(atomic_load(&g->waiting)));
        json_t *servers = json_array();
        size_t up = 0;
        for (size_t k = 0; servers != NULL && k < g->n; k++) {
            const struct moat_up_server *s = &g->servers[k];
            uint64_t out_ms = 0;
            const char *state = server_state(g, k, now_ms, &out_ms);
            up += moat_up_server_in(g, k, now_ms);
            json_t *so = json_object();
            if (so == NULL) {
                break;
            }
            set(so, "server", json_string(s->name));
            set(so, "state", json_string(state));
            set(so, "weight", json_integer(s->weight));
            set(so, "active", json_integer(atomic_load(&s->active)));
            set(so, "connections", json_integer(atomic_load(&s->conns)));
            set(so, "failures_in_a_row", json_integer(atomic_load(&s->fails)));
            set(so, "back_in_s", out_ms ? json_integer((json_int_t)((out_ms + 999) / 1000)) : NULL);
            const char *why = atomic_load(&s->why);
            set(so, "last_failure", why != NULL ? json_string(why) : NULL);
            json_array_append_new(servers, so);
        }
        set(o, "up", json_integer((json_int_t)up));
        set(o, "servers", servers);
        json_array_append_new(ups, o);
    }
    return wrap("upstreams", ups);
}

moat_rc moat_report_upstreams(const struct moat_report_src *r, struct moat_buf *out)
{
    return dump(moat_report_upstreams_json(r), out);
}

/* ---- status ----------------------------------------------------------------------------- */

static void sum_conns(const struct moat_report_src *r, uint64_t *accepted, uint64_t *open,
                      uint64_t *requests)
{
    *accepted = *open = *requests = 0;
    uint64_t closed = 0;
    for (size_t w = 0; w < r->nworkers; w++) {
        const struct moat_metrics *m = r->mx[w];
        *accepted += moat_mx_get(&m->accepted);
        closed += moat_mx_get(&m->closed);
        for (size_t s = 0; s < MOAT_MX_SITES; s++) {
            for (size_t b = 0; b < MOAT_MX_NBUCKET; b++) {
                *requests += moat_mx_get(&m->sites[s].lat[b]);
            }
        }
    }
    /* Read apart, a close may be seen before its accept: never a negative count. */
    *open = *accepted > closed ? *accepted - closed : 0;
}

void moat_report_totals(const struct moat_report_src *r, uint64_t *requests, uint64_t *client_err,
                        uint64_t *server_err)
{
    *requests = *client_err = *server_err = 0;
    for (size_t w = 0; w < r->nworkers; w++) {
        for (size_t s = 0; s < MOAT_MX_SITES; s++) {
            const struct moat_mx_site *x = &r->mx[w]->sites[s];
            for (size_t p = 0; p < MOAT_MX_NPROTO; p++) {
                for (size_t c = 0; c < MOAT_MX_NCLASS; c++) {
                    uint64_t n = 0;
                    for (size_t m = 0; m < MOAT_HTTP_M_COUNT; m++) {
                        n += moat_mx_get(&x->req[p][c][m]);
                    }
                    *requests += n;
                    *client_err += c == 3 ? n : 0;
                    *server_err += c == 4 ? n : 0;
                }
            }
        }
    }
}

static const char *site_kind(const struct moat_site *s)
{
    int st = s->st.root_fd >= 0, px = s->nproxies > 0;
    return st && px ? "static and proxy" : px ? "proxy" : st ? "static" : "builtin";
}

json_t *moat_report_status_json(const struct moat_report_src *r)
{
    time_t now = time(NULL);
    json_t *o = json_object();
    if (o == NULL) {
        return NULL;
    }
    set(o, "version", json_string(MOAT_VERSION));
    set(o, "pid", json_integer(getpid()));
    set(o, "started", jtime(r->started));
    set(o, "uptime_s", json_integer((json_int_t)(now - r->started)));
    set(o, "generation", json_integer((json_int_t)r->snap->generation));
    set(o, "config", r->config != NULL ? json_string(r->config) : NULL);
    set(o, "state", json_string(r->state_dir));
    set(o, "admin", json_string(r->admin));
    set(o, "workers", json_integer((json_int_t)r->nworkers));
    set(o, "reloads", json_integer((json_int_t)r->reloads));
    set(o, "reloads_refused", json_integer((json_int_t)r->refused));
    set(o, "last_reload_error",
        r->last_refusal != NULL && r->last_refusal[0] ? json_string(r->last_refusal) : NULL);
    set(o, "listen", jstrs(r->snap->conf->listen, r->snap->conf->nlisten));
    uint64_t accepted, open, requests;
    sum_conns(r, &accepted, &open, &requests);
    json_t *c = json_object();
    if (c != NULL) {
        set(c, "open", json_integer((json_int_t)open));
        set(c, "accepted", json_integer((json_int_t)accepted));
    }
    set(o, "connections", c);
    set(o, "requests", json_integer((json_int_t)requests));
    json_t *sites = json_array();
    for (size_t i = 0; sites != NULL && i < r->snap->nsites; i++) {
        const struct moat_site *s = &r->snap->sites[i];
        json_t *so = json_object();
        if (so == NULL) {
            break;
        }
        set(so, "name", json_string(s->conf->names[0]));
        set(so, "names", jstrs(s->conf->names, s->conf->nnames));
        set(so, "kind", json_string(site_kind(s)));
        set(so, "certificate", json_string(source_of(s)));
        /* The soonest expiry of what it serves: the number an operator watches. */
        time_t soonest = 0;
        for (size_t k = 0; k < s->ncerts; k++) {
            if (soonest == 0 || s->certs[k]->not_after < soonest) {
                soonest = s->certs[k]->not_after;
            }
        }
        set(so, "expires", jtime(soonest));
        set(so, "days_left",
            soonest ? json_integer((json_int_t)((soonest - now) / 86400)) : json_null());
        json_array_append_new(sites, so);
    }
    set(o, "sites", sites);
    size_t nup = 0, nin = 0;
    uint64_t now_ms = moat_now_ms();
    for (size_t i = 0; i < r->snap->ngroups; i++) {
        const struct moat_up_group *g = r->snap->groups[i];
        for (size_t k = 0; k < g->n; k++) {
            nup++;
            nin += moat_up_server_in(g, k, now_ms);
        }
    }
    json_t *u = json_object();
    if (u != NULL) {
        set(u, "servers", json_integer((json_int_t)nup));
        set(u, "up", json_integer((json_int_t)nin));
    }
    set(o, "upstreams", u);
    if (r->cluster != NULL) {
        struct moat_cluster_stats cs;
        moat_cluster_stats(r->cluster, &cs);
        json_t *k = json_object();
        if (k != NULL) {
            set(k, "redis", json_string(moat_cluster_redis(r->cluster)));
            set(k, "up", json_boolean(cs.up));
            set(k, "since", cs.since ? jtime(cs.since) : json_null());
            set(k, "last_error", json_string(cs.last_error));
            set(k, "shared_ticket_keys", json_boolean(cs.shared_keys));
        }
        set(o, "cluster", k);
    }
    return o;
}

moat_rc moat_report_status(const struct moat_report_src *r, struct moat_buf *out)
{
    return dump(moat_report_status_json(r), out);
}

/* ---- Prometheus ------------------------------------------------------------------------- */

/* A label value as the text format wants it: backslash, quote and newline escaped. */
static moat_rc label(struct moat_buf *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        MOAT_TRY(esc != NULL ? moat_buf_append(out, esc, 2) : moat_buf_append(out, p, 1));
    }
    return MOAT_RC_OK;
}

static moat_rc help(struct moat_buf *out, const char *name, const char *type, const char *text)
{
    return moat_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static const char *const proto_names[MOAT_MX_NPROTO] = {"HTTP/1.0", "HTTP/1.1", "HTTP/2"};
static const char *const method_names[MOAT_HTTP_M_COUNT] = {
    "other", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH"};

/* The workers' site counters added up, for one slot. */
static void sum_site(const struct moat_report_src *r, size_t slot, struct moat_mx_site *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t w = 0; w < r->nworkers; w++) {
        const struct moat_mx_site *s = &r->mx[w]->sites[slot];
        for (size_t p = 0; p < MOAT_MX_NPROTO; p++) {
            for (size_t c = 0; c < MOAT_MX_NCLASS; c++) {
                for (size_t m = 0; m < MOAT_HTTP_M_COUNT; m++) {
                    moat_mx_add(&t->req[p][c][m], moat_mx_get(&s->req[p][c][m]));
                }
            }
        }
        for (size_t b = 0; b < MOAT_MX_NBUCKET; b++) {
            moat_mx_add(&t->lat[b], moat_mx_get(&s->lat[b]));
        }
        moat_mx_add(&t->lat_sum_ms, moat_mx_get(&s->lat_sum_ms));
        moat_mx_add(&t->bytes, moat_mx_get(&s->bytes));
        moat_mx_add(&t->limited, moat_mx_get(&s->limited));
    }
}

/* `name{k1="v1"[,k2="v2"]` with the values escaped (the caller closes the braces). */
static moat_rc series(struct moat_buf *out, const char *name, const char *k1, const char *v1,
                      const char *k2, const char *v2)
{
    MOAT_TRY(moat_buf_printf(out, "%s{%s=\"", name, k1));
    MOAT_TRY(label(out, v1));
    if (k2 != NULL) {
        MOAT_TRY(moat_buf_printf(out, "\",%s=\"", k2));
        MOAT_TRY(label(out, v2));
    }
    return moat_buf_append(out, "\"", 1);
}

/* One histogram's series from per-bucket counts (made cumulative here); nothing when empty. */
static moat_rc histogram(struct moat_buf *out, const char *name, const char *k1, const char *v1,
                         const char *k2, const char *v2, const _Atomic uint64_t *lat,
                         uint64_t sum_ms)
{
    uint64_t count = 0;
    for (size_t b = 0; b < MOAT_MX_NBUCKET; b++) {
        count += moat_mx_get(&lat[b]);
    }
    if (count == 0) {
        return MOAT_RC_OK;
    }
    char sub[96];
    snprintf(sub, sizeof(sub), "%s_bucket", name);
    uint64_t cum = 0;
    for (size_t b = 0; b < MOAT_MX_NBUCKET; b++) {
        cum += moat_mx_get(&lat[b]);
        MOAT_TRY(series(out, sub, k1, v1, k2, v2));
        if (b + 1 < MOAT_MX_NBUCKET) {
            MOAT_TRY(moat_buf_printf(out, ",le=\"%g\"} %llu\n",
                                     (double)moat_mx_bucket_ms[b] / 1000.0,
                                     (unsigned long long)cum));
        } else {
            MOAT_TRY(moat_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum));
        }
    }
    snprintf(sub, sizeof(sub), "%s_sum", name);
    MOAT_TRY(series(out, sub, k1, v1, k2, v2));
    MOAT_TRY(moat_buf_printf(out, "} %.3f\n", (double)sum_ms / 1000.0));
    snprintf(sub, sizeof(sub), "%s_count", name);
    MOAT_TRY(series(out, sub, k1, v1, k2, v2));
    return moat_buf_printf(out, "} %llu\n", (unsigned long long)count);
}

static moat_rc metrics_requests(const struct moat_report_src *r, struct moat_buf *out)
{
    struct moat_mx_site *t = malloc(sizeof(*t) * MOAT_MX_SITES);
    if (t == NULL) {
        return nomem();
    }
    for (size_t slot = 0; slot < MOAT_MX_SITES; slot++) {
        sum_site(r, slot, &t[slot]);
    }
    moat_rc rc = help(out, "moat_requests_total", "counter",
                      "Answers sent, by site, protocol, status class and method.");
    for (size_t slot = 0; moat_ok(rc) && slot < MOAT_MX_SITES; slot++) {
        const char *name = moat_mx_slot_name((unsigned)slot);
        for (size_t p = 0; name != NULL && moat_ok(rc) && p < MOAT_MX_NPROTO; p++) {
            for (size_t c = 0; moat_ok(rc) && c < MOAT_MX_NCLASS; c++) {
                for (size_t m = 0; moat_ok(rc) && m < MOAT_HTTP_M_COUNT; m++) {
                    uint64_t n = moat_mx_get(&t[slot].req[p][c][m]);
                    if (n == 0) {
                        continue;
                    }
                    rc = series(out, "moat_requests_total", "site", name, NULL, NULL);
                    if (moat_ok(rc)) {
                        rc = moat_buf_printf(out,
                                             ",protocol=\"%s\",code=\"%zuxx\",method=\"%s\"} "
                                             "%llu\n",
                                             proto_names[p], c + 1, method_names[m],
                                             (unsigned long long)n);
                    }
                }
            }
        }
    }
    if (moat_ok(rc)) {
        rc = help(out, "moat_request_duration_seconds", "histogram",
                  "Time from a request's first byte to its answer's last, by site.");
    }
    for (size_t slot = 0; moat_ok(rc) && slot < MOAT_MX_SITES; slot++) {
        const char *name = moat_mx_slot_name((unsigned)slot);
        if (name != NULL) {
            rc = histogram(out, "moat_request_duration_seconds", "site", name, NULL, NULL,
                           t[slot].lat, moat_mx_get(&t[slot].lat_sum_ms));
        }
    }
    if (moat_ok(rc)) {
        rc = help(out, "moat_response_body_bytes_total", "counter",
                  "Body bytes sent in answers, by site.");
    }
    for (size_t slot = 0; moat_ok(rc) && slot < MOAT_MX_SITES; slot++) {
        const char *name = moat_mx_slot_name((unsigned)slot);
        uint64_t n = moat_mx_get(&t[slot].bytes);
        if (name == NULL || n == 0) {
            continue;
        }
        rc = series(out, "moat_response_body_bytes_total", "site", name, NULL, NULL);
        if (moat_ok(rc)) {
            rc = moat_buf_printf(out, "} %llu\n", (unsigned long long)n);
        }
    }
    if (moat_ok(rc)) {
        rc = help(out, "moat_rate_limit_refusals_total", "counter",
                  "Requests a site's limit rules refused with 429, by site.");
    }
    for (size_t slot = 1; moat_ok(rc) && slot < MOAT_MX_SITES; slot++) {
        const char *name = moat_mx_slot_name((unsigned)slot);
        if (name != NULL && r->guard != NULL) {
            rc = series(out, "moat_rate_limit_refusals_total", "site", name, NULL, NULL);
            if (moat_ok(rc)) {
                rc = moat_buf_printf(out, "} %llu\n",
                                     (unsigned long long)moat_mx_get(&t[slot].limited));
            }
        }
    }
    free(t);
    return rc;
}

/* One handshake kind as the workers counted it, added up across them. */
struct hs_sum {
    const struct moat_mx_hs *h; /* its words */
    uint64_t n;
};

static moat_rc metrics_tls(const struct moat_report_src *r, struct moat_buf *out)
{
    struct hs_sum sums[MOAT_MX_HS * 8];
    size_t nsums = 0;
    uint64_t lost = 0;
    for (size_t w = 0; w < r->nworkers; w++) {
        const struct moat_metrics *m = r->mx[w];
        size_t n = atomic_load_explicit(&m->nhs, memory_order_acquire);
        lost += moat_mx_get(&m->hs_lost);
        for (size_t i = 0; i < n; i++) {
            const struct moat_mx_hs *h = &m->hs[i];
            size_t k = 0;
            while (k < nsums && !(sums[k].h->resumed == h->resumed &&
                                  strcmp(sums[k].h->cipher, h->cipher) == 0 &&
                                  strcmp(sums[k].h->group, h->group) == 0 &&
                                  strcmp(sums[k].h->version, h->version) == 0)) {
                k++;
            }
            if (k == nsums) {
                if (nsums == sizeof(sums) / sizeof(sums[0])) {
                    lost += moat_mx_get(&h->n);
                    continue;
                }
                sums[nsums++] = (struct hs_sum){.h = h, .n = 0};
            }
            sums[k].n += moat_mx_get(&h->n);
        }
    }
    MOAT_TRY(help(out, "moat_tls_handshakes_total", "counter",
                  "Completed TLS handshakes, by version, cipher, key exchange group and whether "
                  "the session was resumed."));
    for (size_t k = 0; k < nsums; k++) {
        const struct moat_mx_hs *h = sums[k].h;
        MOAT_TRY(
            moat_buf_printf(out,
                            "moat_tls_handshakes_total{version=\"%s\",cipher=\"%s\",group=\"%s\","
                            "resumed=\"%s\"} %llu\n",
                            h->version, h->cipher, h->group[0] ? h->group : "none",
                            h->resumed ? "true" : "false", (unsigned long long)sums[k].n));
    }
    if (lost > 0) {
        MOAT_TRY(moat_buf_printf(out,
                                 "moat_tls_handshakes_total{version=\"other\",cipher=\"other\","
                                 "group=\"other\",resumed=\"other\"} %llu\n",
                                 (unsigned long long)lost));
    }
    MOAT_TRY(help(out, "moat_tls_handshake_failures_total", "counter",
                  "TLS handshakes that failed, by cause."));
    for (int k = 0; k < MOAT_MX_HSF_COUNT; k++) {
        uint64_t n = 0;
        for (size_t w = 0; w < r->nworkers; w++) {
            n += moat_mx_get(&r->mx[w]->hs_fail[k]);
        }
        MOAT_TRY(moat_buf_printf(out, "moat_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
                                 moat_mx_hs_fail_name[k], (unsigned long long)n));
    }
    return MOAT_RC_OK;
}

static moat_rc metrics_conns(const struct moat_report_src *r, struct moat_buf *out)
{
    uint64_t accepted, open, requests;
    sum_conns(r, &accepted, &open, &requests);
    MOAT_TRY(help(out, "moat_connections_accepted_total", "counter",
                  "Client connections accepted (HTTPS and the plain redirect listener)."));
    MOAT_TRY(moat_buf_printf(out, "moat_connections_accepted_total %llu\n",
                             (unsigned long long)accepted));
    MOAT_TRY(help(out, "moat_connections_open", "gauge", "Client connections open now."));
    MOAT_TRY(moat_buf_printf(out, "moat_connections_open %llu\n", (unsigned long long)open));
    if (r->guard != NULL) {
        struct moat_guard_stats gs;
        moat_guard_stats(r->guard, &gs);
        MOAT_TRY(help(out, "moat_limit_refusals_total", "counter",
                      "Connections and requests refused by a limit, by the limit's name."));
        for (int k = MOAT_GUARD_OK + 1; k < MOAT_GUARD_NKINDS; k++) {
            MOAT_TRY(moat_buf_printf(out, "moat_limit_refusals_total{limit=\"%s\"} %llu\n",
                                     moat_guard_kind_name((enum moat_guard_kind)k), gs.refused[k]));
        }
    }
    return MOAT_RC_OK;
}

static moat_rc metrics_certs(const struct moat_report_src *r, struct moat_buf *out)
{
    time_t now = time(NULL);
    MOAT_TRY(help(out, "moat_certificate_expiry_seconds", "gauge",
                  "Seconds until a site's certificate expires (negative: expired), by site and "
                  "key."));
    for (size_t i = 0; i < r->snap->nsites; i++) {
        const struct moat_site *s = &r->snap->sites[i];
        for (size_t k = 0; k < s->ncerts; k++) {
            const struct moat_tls_certset *cs = s->certs[k];
            MOAT_TRY(moat_buf_printf(out, "moat_certificate_expiry_seconds{site=\""));
            MOAT_TRY(label(out, s->conf->names[0]));
            MOAT_TRY(moat_buf_printf(out, "\",key=\"%s\",source=\"%s\"} %lld\n",
                                     cs->key_type == EVP_PKEY_RSA  ? "rsa"
                                     : cs->key_type == EVP_PKEY_EC ? "ecdsa"
                                                                   : "other",
                                     s->conf->acme   ? "acme"
                                     : s->local_cert ? "local"
                                                     : "files",
                                     (long long)(cs->not_after - now)));
        }
    }
    if (r->acme != NULL) {
        unsigned long ok = 0, failed = 0;
        moat_acme_mgr_counts(r->acme, &ok, &failed);
        MOAT_TRY(
            help(out, "moat_acme_orders_total", "counter", "ACME orders since start, by result."));
        MOAT_TRY(moat_buf_printf(out,
                                 "moat_acme_orders_total{result=\"installed\"} %lu\n"
                                 "moat_acme_orders_total{result=\"failed\"} %lu\n",
                                 ok, failed));
        struct moat_acme_state *st = NULL;
        size_t nst = 0;
        MOAT_TRY(moat_acme_mgr_states(r->acme, &st, &nst, NULL));
        moat_rc rc = help(out, "moat_acme_failures_in_a_row", "gauge",
                          "Failed ACME attempts in a row, by certificate.");
        for (size_t i = 0; moat_ok(rc) && i < nst; i++) {
            rc = moat_buf_printf(out, "moat_acme_failures_in_a_row{name=\"");
            if (moat_ok(rc)) {
                rc = label(out, st[i].name);
            }
            if (moat_ok(rc)) {
                rc = moat_buf_printf(out, "\",kind=\"%s\"} %u\n", st[i].kind, st[i].failures);
            }
        }
        free(st);
        MOAT_TRY(rc);
    }
    return MOAT_RC_OK;
}

/* The workers' counters of one upstream slot, added up. */
static void sum_up(const struct moat_report_src *r, size_t slot, struct moat_mx_up *t)
{
    memset(t, 0, sizeof(*t));
    for (size_t w = 0; w < r->nworkers; w++) {
        const struct moat_mx_up *u = &r->mx[w]->ups[slot];
        for (size_t c = 0; c < MOAT_MX_NCLASS; c++) {
            moat_mx_add(&t->answers[c], moat_mx_get(&u->answers[c]));
        }
        for (size_t b = 0; b < MOAT_MX_NBUCKET; b++) {
            moat_mx_add(&t->lat[b], moat_mx_get(&u->lat[b]));
        }
        moat_mx_add(&t->lat_sum_ms, moat_mx_get(&u->lat_sum_ms));
        moat_mx_add(&t->failed, moat_mx_get(&u->failed));
        moat_mx_add(&t->opened, moat_mx_get(&u->opened));
        moat_mx_add(&t->reused, moat_mx_get(&u->reused));
    }
}

/* The counters kept per upstream server by slot (they outlive a reload, as a counter must). */
static moat_rc metrics_upstream_counters(const struct moat_report_src *r, struct moat_buf *out)
{
    struct moat_mx_up *t = malloc(sizeof(*t) * MOAT_MX_UPS);
    if (t == NULL) {
        return nomem();
    }
    unsigned n = 0;
    const char *ups[MOAT_MX_UPS], *srvs[MOAT_MX_UPS];
    for (unsigned slot = 1; slot < MOAT_MX_UPS; slot++) {
        if (moat_mx_up_slot_names(slot, &ups[n], &srvs[n])) {
            sum_up(r, slot, &t[n++]);
        }
    }
    static const char *const cnames[] = {"moat_upstream_failed_tries_total",
                                         "moat_upstream_connections_opened_total",
                                         "moat_upstream_connection_reuses_total"};
    static const char *const chelps[] = {
        "Tries a server failed: connects refused or timed out, TLS failures, malformed answers, "
        "no answer in time.",
        "Connections opened to the server for a request.",
        "Requests sent on a pooled connection instead of a new one."};
    moat_rc rc = help(out, "moat_upstream_responses_total", "counter",
                      "Answer heads from the server, by status class.");
    for (unsigned i = 0; moat_ok(rc) && i < n; i++) {
        for (size_t c = 0; moat_ok(rc) && c < MOAT_MX_NCLASS; c++) {
            uint64_t v = moat_mx_get(&t[i].answers[c]);
            if (v == 0) {
                continue;
            }
            rc =
                series(out, "moat_upstream_responses_total", "upstream", ups[i], "server", srvs[i]);
            if (moat_ok(rc)) {
                rc = moat_buf_printf(out, ",code=\"%zuxx\"} %llu\n", c + 1, (unsigned long long)v);
            }
        }
    }
    if (moat_ok(rc)) {
        rc = help(out, "moat_upstream_response_duration_seconds", "histogram",
                  "Time from a try's start (a pooled connection taken, or the connect begun) to "
                  "the server's answer head.");
    }
    for (unsigned i = 0; moat_ok(rc) && i < n; i++) {
        rc = histogram(out, "moat_upstream_response_duration_seconds", "upstream", ups[i], "server",
                       srvs[i], t[i].lat, moat_mx_get(&t[i].lat_sum_ms));
    }
    for (size_t m = 0; moat_ok(rc) && m < 3; m++) {
        rc = help(out, cnames[m], "counter", chelps[m]);
        for (unsigned i = 0; moat_ok(rc) && i < n; i++) {
            uint64_t v = moat_mx_get(m == 0 ? &t[i].failed : m == 1 ? &t[i].opened : &t[i].reused);
            rc = series(out, cnames[m], "upstream", ups[i], "server", srvs[i]);
            if (moat_ok(rc)) {
                rc = moat_buf_printf(out, "} %llu\n", (unsigned long long)v);
            }
        }
    }
    free(t);
    return rc;
}

static moat_rc metrics_upstreams(const struct moat_report_src *r, struct moat_buf *out)
{
    uint64_t now_ms = moat_now_ms();
    static const char *const names[] = {
        "moat_upstream_up", "moat_upstream_active_requests", "moat_upstream_connections",
        "moat_upstream_idle_connections", "moat_upstream_failures_in_a_row"};
    static const char *const helps[] = {
        "1 when the server takes requests (not out for failures or a failing health check).",
        "Requests in flight to the server.", "Open connections to the server, busy or pooled.",
        "Of them, pooled and waiting for a request.",
        "Failed exchanges in a row (passive health)."};
    for (size_t m = 0; m < sizeof(names) / sizeof(names[0]); m++) {
        MOAT_TRY(help(out, names[m], "gauge", helps[m]));
        for (size_t i = 0; i < r->snap->ngroups; i++) {
            const struct moat_up_group *g = r->snap->groups[i];
            for (size_t k = 0; k < g->n; k++) {
                const struct moat_up_server *s = &g->servers[k];
                uint64_t v = m == 0   ? (uint64_t)moat_up_server_in(g, k, now_ms)
                             : m == 1 ? atomic_load(&s->active)
                             : m == 2 ? atomic_load(&s->conns)
                             : m == 3 ? atomic_load(&s->idle)
                                      : atomic_load(&s->fails);
                MOAT_TRY(
                    series(out, names[m], "upstream", moat_up_group_name(g), "server", s->name));
                MOAT_TRY(moat_buf_printf(out, "} %llu\n", (unsigned long long)v));
            }
        }
    }
    MOAT_TRY(help(out, "moat_upstream_queued_requests", "gauge",
                  "Requests waiting for a place below max_conns, by upstream."));
    for (size_t i = 0; i < r->snap->ngroups; i++) {
        const struct moat_up_group *g = r->snap->groups[i];
        MOAT_TRY(series(out, "moat_upstream_queued_requests", "upstream", moat_up_group_name(g),
                        NULL, NULL));
        MOAT_TRY(moat_buf_printf(out, "} %u\n", atomic_load(&g->waiting)));
    }
    return metrics_upstream_counters(r, out);
}

static moat_rc metrics_cache(const struct moat_report_src *r, struct moat_buf *out)
{
    if (r->cache == NULL) {
        return MOAT_RC_OK;
    }
    struct moat_cache_stats cs;
    moat_cache_stats(r->cache, &cs);
    MOAT_TRY(help(out, "moat_cache_lookups_total", "counter", "HTTP cache lookups, by result."));
    MOAT_TRY(moat_buf_printf(out,
                             "moat_cache_lookups_total{result=\"hit\"} %llu\n"
                             "moat_cache_lookups_total{result=\"miss\"} %llu\n"
                             "moat_cache_lookups_total{result=\"collapsed\"} %llu\n",
                             cs.hits, cs.misses, cs.collapsed));
    MOAT_TRY(help(out, "moat_cache_events_total", "counter",
                  "Answers stored, evicted, purged and invalidated."));
    MOAT_TRY(moat_buf_printf(out,
                             "moat_cache_events_total{event=\"stored\"} %llu\n"
                             "moat_cache_events_total{event=\"evicted\"} %llu\n"
                             "moat_cache_events_total{event=\"purged\"} %llu\n"
                             "moat_cache_events_total{event=\"invalidated\"} %llu\n",
                             cs.stored, cs.evicted, cs.purged, cs.invalidated));
    MOAT_TRY(help(out, "moat_cache_stored_bytes", "gauge", "Bytes the cache holds, by tier."));
    MOAT_TRY(moat_buf_printf(out,
                             "moat_cache_stored_bytes{tier=\"memory\"} %llu\n"
                             "moat_cache_stored_bytes{tier=\"disk\"} %llu\n",
                             (unsigned long long)cs.bytes, (unsigned long long)cs.disk_bytes));
    MOAT_TRY(help(out, "moat_cache_entries", "gauge", "Answers the cache holds, by tier."));
    return moat_buf_printf(out,
                           "moat_cache_entries{tier=\"memory\"} %llu\n"
                           "moat_cache_entries{tier=\"disk\"} %llu\n",
                           (unsigned long long)cs.entries, (unsigned long long)cs.disk_entries);
}

moat_rc moat_report_metrics(const struct moat_report_src *r, struct moat_buf *out)
{
    MOAT_TRY(help(out, "moat_build_info", "gauge", "moat's version (the value is always 1)."));
    MOAT_TRY(moat_buf_printf(out, "moat_build_info{version=\"%s\"} 1\n", MOAT_VERSION));
    MOAT_TRY(help(out, "moat_start_time_seconds", "gauge", "When the server started (Unix time)."));
    MOAT_TRY(moat_buf_printf(out, "moat_start_time_seconds %lld\n", (long long)r->started));
    MOAT_TRY(help(out, "moat_config_generation", "gauge",
                  "The configuration generation being served (a reload adds one)."));
    MOAT_TRY(moat_buf_printf(out, "moat_config_generation %llu\n", r->snap->generation));
    MOAT_TRY(help(out, "moat_reloads_total", "counter", "Reloads, by result."));
    MOAT_TRY(moat_buf_printf(out,
                             "moat_reloads_total{result=\"ok\"} %llu\n"
                             "moat_reloads_total{result=\"refused\"} %llu\n",
                             r->reloads, r->refused));
    MOAT_TRY(metrics_conns(r, out));
    MOAT_TRY(metrics_requests(r, out));
    MOAT_TRY(metrics_tls(r, out));
    MOAT_TRY(metrics_certs(r, out));
    MOAT_TRY(metrics_upstreams(r, out));
    if (r->cluster != NULL) {
        struct moat_cluster_stats cs;
        moat_cluster_stats(r->cluster, &cs);
        MOAT_TRY(help(out, "moat_cluster_redis_up", "gauge",
                      "1 when the last exchange with the cluster's Redis worked."));
        MOAT_TRY(moat_buf_printf(out, "moat_cluster_redis_up %d\n", cs.up));
        MOAT_TRY(help(out, "moat_cluster_syncs_total", "counter",
                      "Rounds with the cluster's Redis (once a second), by result."));
        MOAT_TRY(moat_buf_printf(out,
                                 "moat_cluster_syncs_total{result=\"ok\"} %llu\n"
                                 "moat_cluster_syncs_total{result=\"failed\"} %llu\n",
                                 cs.syncs, cs.failures));
        MOAT_TRY(help(out, "moat_cluster_shared_ticket_keys", "gauge",
                      "1 when the session ticket keys in use are the cluster's."));
        MOAT_TRY(moat_buf_printf(out, "moat_cluster_shared_ticket_keys %d\n", cs.shared_keys));
    }
    return metrics_cache(r, out);
}
