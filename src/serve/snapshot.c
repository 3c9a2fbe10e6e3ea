/*
 * snapshot.c: turning a struct moat_conf into a running configuration (see snapshot.h).
 *
 * Each site's certificates come from a certificate source (cert/source.h): its `cert` files,
 * parsed once and put through pki's start-up checks, so a mistake is refused with the file
 * named and the fix, at start and on reload alike; or moat's local CA. The TLS contexts are
 * built from those in-memory sets, and moat_snapshot_swap_certs replaces one site's context at
 * run time through the SNI table.
 */
#include "serve/snapshot.h"

#include "serve/crlpub.h"
#include "serve/metrics.h"

#include "acme/challenges.h"
#include "acme/source.h"
#include "serve/proxy.h"
#include "upstream/group.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/certset.h"
#include "cert/source.h"
#include "core/log.h"
#include "pki/chain.h"
#include "tls/clientauth.h"
#include "tls/ctx.h"
#include "tls/client.h"
#include "tls/sni.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_ullong generation_counter;
static atomic_ullong site_key_counter; /* filecache keys: one per site of each snapshot */

/* The site now serves `sets`: its references for the admin interface follow. */
static void keep_certs(struct moat_site *site, struct moat_tls_certset *const *sets, size_t n)
{
    for (size_t i = 0; i < site->ncerts; i++) {
        moat_tls_certset_unref(site->certs[i]);
    }
    site->ncerts = 0;
    for (size_t i = 0; i < n && i < sizeof(site->certs) / sizeof(site->certs[0]); i++) {
        site->certs[site->ncerts++] = moat_tls_certset_ref(sets[i]);
    }
}

static void site_clear(struct moat_site *s)
{
    keep_certs(s, NULL, 0);
    if (s->st.root_fd >= 0) {
        close(s->st.root_fd);
        s->st.root_fd = -1;
    }
    moat_tls_client_auth_free(s->client_auth);
    s->client_auth = NULL;
    for (size_t i = 0; i < s->nproxies; i++) {
        moat_proxy_route_clear(&s->proxies[i]);
    }
    free(s->proxies);
    s->proxies = NULL;
    s->nproxies = 0;
    moat_hdr_table_clear(&s->hdrs);
    moat_hdr_table_clear(&s->req_hdrs);
}

static void snapshot_free(struct moat_snapshot *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nsites; i++) {
        site_clear(&s->sites[i]);
    }
    free(s->sites);
    for (size_t i = 0; i < s->ngroups; i++) {
        moat_up_group_unref(s->groups[i]);
    }
    free(s->groups);
    for (size_t i = 0; i < s->nstreams; i++) {
        struct moat_stream_rt *st = &s->streams[i];
        SSL_CTX_free(st->ctx);
        moat_tls_sni_free(st->sni);
        moat_tls_client_auth_free(st->client_auth);
        for (size_t k = 0; k < st->nroutes; k++) {
            moat_up_group_unref(st->routes[k].group);
        }
        free(st->routes);
    }
    free(s->streams);
    free(s->trusted);
    moat_crlpub_free(s->crlpub);
    moat_tls_sni_free(s->sni);
    moat_conf_free(s->conf);
    free(s);
}

void moat_snapshot_unref(struct moat_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        snapshot_free(s);
    }
}

/* An IP literal as a Host gives it ("127.0.0.1", "[::1]", "::1") in binary; 0 for a name. */
static int ip_parse(const char *p, size_t len, struct moat_site_ip *out)
{
    char text[INET6_ADDRSTRLEN + 2];
    if (len >= 2 && p[0] == '[' && p[len - 1] == ']') {
        p++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(text)) {
        return 0;
    }
    memcpy(text, p, len);
    text[len] = '\0';
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->family = AF_INET6;
        return 1;
    }
    return 0;
}

static int ip_eq(const struct moat_site_ip *a, const struct moat_site_ip *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

/* localhost is this machine's loopback (RFC 6761 §6.3): a site named localhost answers for
 * 127.0.0.1 and [::1] as well, unless a site names them itself (its local-CA certificate
 * names them too: cert/source_local.c). */
static void loopback_names(struct moat_snapshot *s)
{
    struct moat_site *site = NULL;
    for (size_t i = 0; i < s->nsites && site == NULL; i++) {
        const struct moat_conf_site *cs = s->sites[i].conf;
        for (size_t k = 0; k < cs->nnames; k++) {
            if (strcasecmp(cs->names[k], "localhost") == 0) {
                site = &s->sites[i];
                break;
            }
        }
    }
    static const char *const loop[] = {"127.0.0.1", "::1"};
    for (size_t j = 0; site != NULL && j < 2 && s->nips < MOAT_SNAPSHOT_MAX_IPS; j++) {
        struct moat_site_ip ip = {.site = site};
        if (!ip_parse(loop[j], strlen(loop[j]), &ip)) {
            continue;
        }
        int named = 0;
        for (size_t i = 0; i < s->nips && !named; i++) {
            named = ip_eq(&s->ips[i], &ip);
        }
        if (!named) {
            s->ips[s->nips++] = ip;
        }
    }
}

int moat_snapshot_site_http2(const struct moat_snapshot *s, const struct moat_site *site)
{
    return site->conf->http2 >= 0 ? site->conf->http2 : s->conf->http2;
}

int moat_snapshot_listener_http2(const struct moat_snapshot *s, const char *spec)
{
    for (size_t i = 0; i < s->conf->nhttp2_off_listen; i++) {
        if (strcmp(s->conf->http2_off_listen[i], spec) == 0) {
            return 0;
        }
    }
    return 1;
}

const struct moat_stream_rt *moat_snapshot_stream_for(const struct moat_snapshot *s,
                                                      const char *spec)
{
    for (size_t i = 0; i < s->nstreams; i++) {
        const struct moat_conf_stream *c = s->streams[i].conf;
        for (size_t k = 0; k < c->nlisten; k++) {
            if (strcmp(c->listen[k], spec) == 0) {
                return &s->streams[i];
            }
        }
    }
    return NULL;
}

const struct moat_stream_route_rt *moat_snapshot_stream_route(const struct moat_stream_rt *st,
                                                              const char *sni)
{
    const struct moat_stream_route_rt *wild = NULL, *dflt = NULL;
    const char *dot = sni != NULL ? strchr(sni, '.') : NULL;
    for (size_t i = 0; i < st->nroutes; i++) {
        const struct moat_stream_route_rt *r = &st->routes[i];
        if (r->sni[0] == '\0') {
            dflt = r;
        } else if (sni != NULL && strcasecmp(r->sni, sni) == 0) {
            return r;
        } else if (dot != NULL && r->sni[0] == '*' && strcasecmp(r->sni + 1, dot) == 0) {
            wild = r;
        }
    }
    return wild != NULL ? wild : dflt;
}

int moat_snapshot_listener_pp(const struct moat_snapshot *s, const char *spec)
{
    for (size_t i = 0; i < s->conf->nproxy_protocol_listen; i++) {
        if (strcmp(s->conf->proxy_protocol_listen[i], spec) == 0) {
            return 1;
        }
    }
    return 0;
}

struct moat_site *moat_snapshot_route(const struct moat_snapshot *s, const char *host, size_t len)
{
    struct moat_site_ip ip;
    if (len > 0 && (host[0] == '[' || (host[len - 1] >= '0' && host[len - 1] <= '9')) &&
        ip_parse(host, len, &ip)) {
        /* SNI never carries an address (RFC 6066 §3), so addresses are kept apart from the SNI
         * table and compared in binary: "[0::1]" and "::1" are one host. */
        for (size_t i = 0; i < s->nips; i++) {
            const struct moat_site_ip *a = &s->ips[i];
            if (ip_eq(a, &ip)) {
                return a->site;
            }
        }
        return s->catch_all;
    }
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(s->sni, host, len);
    if (e != NULL && e->matched && e->site != NULL) {
        return e->site;
    }
    return NULL;
}

/* The site's cert_ca files as one store (NULL when there are none), and their names for
 * messages. */
static moat_rc site_anchor(const struct moat_conf_site *cs, X509_STORE **out, char *name, size_t n,
                           struct moat_err *err)
{
    *out = NULL;
    name[0] = '\0';
    if (cs->ncert_ca == 0) {
        return MOAT_RC_OK;
    }
    moat_rc rc = moat_trust_store_new((const char *const *)cs->cert_ca, cs->ncert_ca, 0, out, err);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "in the cert_ca of site %s (%s)", cs->names[0], cs->where);
        return rc;
    }
    /* A server certificate given as cert_ca (an easy slip: leaf.pem for root.pem) would only
     * make every chain "the wrong CA"; say what is wrong with the file itself. */
    for (size_t i = 0; i < cs->ncert_ca; i++) {
        struct moat_chain *c = NULL;
        int has_ca = 0;
        char nm[200] = "";
        if (moat_ok(moat_chain_load(cs->cert_ca[i], &c, NULL))) {
            has_ca = X509_check_ca(c->leaf) != 0;
            for (int k = 0; !has_ca && k < sk_X509_num(c->extra); k++) {
                has_ca = X509_check_ca(sk_X509_value(c->extra, k)) != 0;
            }
            X509_NAME_oneline(X509_get_subject_name(c->leaf), nm, sizeof(nm));
        }
        moat_chain_free(c);
        ERR_clear_error();
        if (!has_ca) {
            X509_STORE_free(*out);
            *out = NULL;
            moat_err_where(err, "%s", cs->where);
            MOAT_FAIL(
                err, MOAT_E_CONFIG,
                "the cert_ca (--ca) file %s holds no CA certificate (%s is not a CA): name the "
                "certificate of the CA that issued the site's certificate (its root.pem "
                "or ca.crt)",
                cs->cert_ca[i], nm[0] ? nm : "its certificate");
        }
    }
    size_t used = 0;
    for (size_t i = 0; i < cs->ncert_ca && used + 1 < n; i++) {
        int w = snprintf(name + used, n - used, "%s%s", i ? ", " : "", cs->cert_ca[i]);
        used = w < 0 ? n : used + (size_t)w;
    }
    return MOAT_RC_OK;
}

/* The TLS context of a site from its certificate sets, with the site's policy (ALPN, tickets,
 * session cache, client certificates). Used at build and by a certificate swap. */
static moat_rc site_ctx_new(const struct moat_snapshot *s, const struct moat_site *site,
                            struct moat_tls_certset *const *sets, size_t nsets, SSL_CTX **out,
                            struct moat_err *err)
{
    /* h2 first where it is on, as the server's preference (RFC 7301 §3.2); http/1.0 too: curl
     * -0 and other HTTP/1.0 clients offer only that (RFC 7301 registry). */
    static const char *const alpn[] = {"h2", "http/1.1", "http/1.0"};
    int h2 = moat_snapshot_site_http2(s, site);
    struct moat_tls_opts o = {
        .sets = sets,
        .nsets = nsets,
        .alpn = h2 ? alpn : alpn + 1,
        .nalpn = h2 ? 3 : 2,
        .tickets = s->conf->tickets ? s->tickets : NULL,
        .session_cache_size = (unsigned long)s->conf->session_cache,
        .session_timeout_s = (long)(s->conf->ticket_rotate_s * 2),
        .client_auth = site->client_auth,
    };
    return moat_tls_ctx_new(&o, out, err);
}

/* The ACME certificates installed for a `tls acme` site, one per configured key kind. */
static moat_rc acme_sets(const struct moat_conf_site *cs, struct moat_store *st,
                         struct moat_tls_certset *sets[8], size_t *nsets, struct moat_err *err)
{
    struct moat_err local = {0};
    if (err == NULL) {
        err = &local; /* the message is logged below either way */
    }
    for (int k = 0; k < MOAT_ACME_KIND_COUNT; k++) {
        if (!(cs->acme_kinds & (1 << k))) {
            continue;
        }
        struct moat_cert_source *src = NULL;
        moat_rc rc = moat_acme_source_new(st, cs->names[0], (enum moat_acme_kind)k, &src, err);
        if (moat_ok(rc)) {
            rc = moat_cert_source_load(src, &sets[*nsets], err);
        }
        moat_cert_source_free(src);
        if (moat_ok(rc)) {
            (*nsets)++;
        } else if (rc.kind != MOAT_E_NOTFOUND) {
            /* A damaged store entry: log it and serve what can be served (the manager
             * orders a new certificate). */
            char msg[MOAT_ERR_MSG_MAX + 300];
            moat_log_w("site %s: the stored ACME certificate cannot be used: %s", cs->names[0],
                       moat_err_str(err, msg, sizeof(msg)));
        }
        if (!moat_ok(rc)) {
            moat_err_clear(err);
        }
    }
    return MOAT_RC_OK;
}

/*
 * The site's certificate sets from its sources, each parsed and checked once: the `cert` files
 * (pki/ start-up checks, warnings unless quiet), else the local CA. A check (dry run) asks the
 * sources to describe instead of load, so nothing is written; *nsets may then be 0 (serve would
 * issue the certificate). The sets in `sets` are the caller's references.
 */
static moat_rc site_sets(struct moat_site *site, const struct moat_conf_site *cs,
                         const struct moat_snapshot_env *env, X509_STORE *trust,
                         struct moat_cert_local_ca *lca, struct moat_tls_certset *sets[8],
                         size_t *nsets, struct moat_err *err)
{
    *nsets = 0;
    site->acme_waiting = 0;
    if (cs->acme && env->store != NULL) {
        moat_rc rc = acme_sets(cs, env->store, sets, nsets, err);
        if (!moat_ok(rc) || *nsets > 0) {
            return rc;
        }
        /* Nothing from the CA yet: the local CA's certificate serves until it comes (the
         * ACME manager orders it off the serving path). */
        site->acme_waiting = 1;
        if (!env->quiet) {
            moat_log_i("site %s: no ACME certificate yet; serving one from moat's local CA "
                       "until the CA's arrives",
                       cs->names[0]);
        }
    }
    if (cs->ncerts == 0) {
        struct moat_cert_source *src = NULL;
        moat_rc rc =
            moat_cert_source_local_new(lca, (const char *const *)cs->names, cs->nnames, &src, err);
        if (moat_ok(rc)) {
            rc = env->dry_run ? moat_cert_source_describe(src, &sets[0], err)
                              : moat_cert_source_load(src, &sets[0], err);
        }
        moat_cert_source_free(src);
        if (!moat_ok(rc)) {
            moat_err_where(err, "%s", cs->where);
            return rc;
        }
        if (sets[0] != NULL) {
            *nsets = 1;
            site->cert_renew_at = env->dry_run ? 0 : sets[0]->renew_at;
        }
        return MOAT_RC_OK;
    }
    X509_STORE *anchor = NULL;
    char anchor_name[600];
    MOAT_TRY(site_anchor(cs, &anchor, anchor_name, sizeof(anchor_name), err));
    moat_rc rc = MOAT_RC_OK;
    for (size_t k = 0; k < cs->ncerts && *nsets < 8 && moat_ok(rc); k++) {
        const struct moat_conf_cert *cc = &cs->certs[k];
        struct moat_cert_files_opts fo = {
            .cert_path = cc->cert_path,
            .key_path = cc->key_path,
            .where = cc->where,
            .site_where = cs->where,
            .site_names = (const char *const *)cs->names,
            .nsite_names = cs->nnames,
            .trust = trust,
            .anchor = anchor,
            .anchor_name = anchor_name,
            .quiet = env->quiet,
        };
        struct moat_cert_source *src = NULL;
        rc = moat_cert_source_files_new(&fo, &src, err);
        if (moat_ok(rc)) {
            rc = moat_cert_source_load(src, &sets[*nsets], err);
        }
        moat_cert_source_free(src);
        if (moat_ok(rc)) {
            (*nsets)++;
        }
    }
    X509_STORE_free(anchor);
    return rc;
}

static void sets_unref(struct moat_tls_certset *sets[8], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        moat_tls_certset_unref(sets[i]);
        sets[i] = NULL;
    }
}

/* Any `tls acme` site, with TLS-ALPN-01 among the challenges? */
static int acme_alpn_wanted(const struct moat_conf *conf)
{
    int any = 0;
    for (size_t i = 0; i < conf->nsites; i++) {
        any |= conf->sites[i].acme;
    }
    for (size_t i = 0; any && i < conf->acme.nchallenges; i++) {
        if (strcmp(conf->acme.challenges[i], "tls-alpn-01") == 0) {
            return 1;
        }
    }
    return 0;
}

static int alpn_answer(void *arg, const char *name, X509 **cert, EVP_PKEY **key)
{
    return moat_acme_challenges_alpn(arg, name, cert, key);
}

/* TLS-ALPN-01 validations are answered on their own context (acme/challenges.h). */
static moat_rc acme_alpn_install(struct moat_snapshot *s, struct moat_err *err)
{
    SSL_CTX *ctx = NULL;
    MOAT_TRY(moat_acme_alpn_ctx_new(&ctx, err));
    moat_rc rc = moat_tls_sni_set_acme(s->sni, ctx, alpn_answer, s->acme, err);
    SSL_CTX_free(ctx);
    return rc;
}

moat_rc moat_snapshot_acme_refresh(struct moat_snapshot *s, struct moat_err *err)
{
    MOAT_ENSURE_REF(s);
    moat_rc first = MOAT_RC_OK;
    for (size_t i = 0; s->store != NULL && i < s->nsites; i++) {
        struct moat_site *site = &s->sites[i];
        if (!site->conf->acme) {
            continue;
        }
        struct moat_tls_certset *sets[8] = {NULL};
        size_t nsets = 0;
        moat_rc rc = acme_sets(site->conf, s->store, sets, &nsets, NULL);
        if (moat_ok(rc) && nsets > 0) {
            rc = moat_snapshot_swap_certs(s, site, sets, nsets, moat_ok(first) ? err : NULL);
            if (moat_ok(rc)) {
                site->acme_waiting = 0;
                moat_log_i("site %s: serving its ACME certificate (%s), no reload",
                           site->conf->names[0], sets[0]->label);
            }
        }
        sets_unref(sets, nsets);
        if (!moat_ok(rc) && moat_ok(first)) {
            first = rc;
        }
    }
    return first;
}

/* The upstreams: one group each, shared by the sites' rules that name it. */
static moat_rc build_groups(struct moat_snapshot *s, const struct moat_snapshot_env *env,
                            struct moat_err *err)
{
    const struct moat_conf *c = s->conf;
    static const char *const alpn[] = {"http/1.1"};
    char local_root[PATH_MAX];
    snprintf(local_root, sizeof(local_root), "%s/ca/root.pem", env->state_dir);
    s->groups = calloc(c->nupstreams ? c->nupstreams : 1, sizeof(*s->groups));
    s->trusted = calloc(c->ntrusted_proxies ? c->ntrusted_proxies : 1, sizeof(*s->trusted));
    if (s->groups == NULL || s->trusted == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < c->ntrusted_proxies; i++) {
        if (moat_cidr_parse(c->trusted_proxies[i], &s->trusted[i]) != NULL) {
            MOAT_FAIL(err, MOAT_E_INTERNAL, "trusted_proxies changed after loading");
        }
    }
    s->ntrusted = c->ntrusted_proxies;
    for (size_t i = 0; i < c->nupstreams; i++) {
        const struct moat_conf_upstream *u = &c->upstreams[i];
        struct moat_up_server_spec sv[MOAT_UP_MAX_SERVERS];
        for (size_t k = 0; k < u->nservers && k < MOAT_UP_MAX_SERVERS; k++) {
            sv[k] = (struct moat_up_server_spec){.host = u->servers[k].host,
                                                 .unix_path = u->servers[k].unix_path,
                                                 .port = u->servers[k].port,
                                                 .tls = u->servers[k].tls,
                                                 .weight = u->servers[k].weight};
        }
        struct moat_up_params p = {
            .name = u->name,
            .servers = sv,
            .nservers = u->nservers,
            .balance = (enum moat_up_balance)u->balance,
            .hash_key = u->hash_key,
            .keepalive = u->keepalive,
            .keepalive_ms = u->keepalive_ms,
            .max_conns = u->max_conns,
            .queue = u->queue,
            .queue_ms = u->queue_ms,
            .max_fails = u->max_fails,
            .fail_timeout_ms = u->fail_timeout_ms,
            .slow_start_ms = u->slow_start_ms,
            .retries = u->retries,
            .retry_timeout_ms = u->retry_timeout_ms,
            .connect_ms = u->connect_ms,
            .first_byte_ms = u->first_byte_ms,
            .read_ms = u->read_ms,
            .write_ms = u->write_ms,
            .total_ms = u->total_ms,
            .tunnel_ms = u->tunnel_ms,
            .check_path = u->check_path,
            .check_interval_ms = u->check_interval_ms,
            .check_timeout_ms = u->check_timeout_ms,
            .check_rise = u->check_rise,
            .check_fall = u->check_fall,
            .check_status_lo = u->check_status_lo,
            .check_status_hi = u->check_status_hi,
            .check_host = u->check_host,
            .ca_file = u->ca,
            .extra_ca = local_root,
            .cert = u->cert,
            .key = u->key,
            .sni = u->sni,
            .alpn = u->stream ? NULL : alpn, /* a stream's bytes are not HTTP */
            .nalpn = u->stream ? 0 : 1,
            .proxy_protocol = u->proxy_protocol,
            .where = u->where,
        };
        MOAT_TRY(moat_up_group_new(&p, &s->groups[i], err));
        s->ngroups = i + 1;
        struct moat_up_group *g = s->groups[i];
        for (size_t k = 0; k < g->n; k++) {
            g->servers[k].mx_slot = moat_mx_up_slot(moat_up_group_name(g), g->servers[k].name);
        }
        s->pp_out |= u->proxy_protocol == 2;
    }
    return MOAT_RC_OK;
}

/* Longer prefixes first, the whole-site rule last: the first match is the most specific. */
static int route_cmp(const void *a, const void *b)
{
    const struct moat_proxy_route *x = a, *y = b;
    return x->plen == y->plen ? 0 : x->plen > y->plen ? -1 : 1;
}

static moat_rc site_routes(struct moat_snapshot *s, struct moat_site *site,
                           const struct moat_conf_site *cs, struct moat_err *err)
{
    if (cs->nproxies == 0) {
        return MOAT_RC_OK;
    }
    site->proxies = calloc(cs->nproxies, sizeof(*site->proxies));
    if (site->proxies == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < cs->nproxies; i++) {
        const struct moat_conf_proxy_rule *r = &cs->proxies[i];
        struct moat_proxy_route *rt = &site->proxies[i];
        rt->group = moat_up_group_ref(s->groups[r->index]);
        site->nproxies = i + 1;
        snprintf(rt->prefix, sizeof(rt->prefix), "%s", r->prefix ? r->prefix : "");
        rt->plen = strlen(rt->prefix);
        if (rt->plen == 1) { /* "/" is every path */
            rt->plen = 0;
            rt->prefix[0] = '\0';
        }
        rt->strip = r->strip;
        /* "rewrite /" is a strip: the rest of the path starts with its own "/" */
        const char *rw = r->rewrite != NULL && strcmp(r->rewrite, "/") != 0 ? r->rewrite : "";
        snprintf(rt->rewrite, sizeof(rt->rewrite), "%s", rw);
        rt->rewriting = r->strip || r->rewrite != NULL;
        rt->host_mode = cs->proxy_host_mode;
        snprintf(rt->host_value, sizeof(rt->host_value), "%s",
                 cs->proxy_host_value ? cs->proxy_host_value : "");
        snprintf(rt->id_prefix, sizeof(rt->id_prefix), "%s",
                 cs->client_header_prefix ? cs->client_header_prefix : "X-Client-");
        rt->identity = cs->client_auth != 0;
    }
    qsort(site->proxies, site->nproxies, sizeof(*site->proxies), route_cmp);
    return MOAT_RC_OK;
}

static int same_names(const struct moat_tls_certset *a, const struct moat_tls_certset *b)
{
    if (a->nnames != b->nnames) {
        return 0;
    }
    for (size_t i = 0; i < a->nnames; i++) {
        if (strcasecmp(a->names[i], b->names[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

/*
 * A terminating stream's contexts: certificates for the same names share one (an ECDSA and an
 * RSA one, as in a site); certificates for other names get their own, chosen by the client's
 * SNI through a table of the stream's (tls/sni.h; the first certificate is the default).
 */
static moat_rc stream_contexts(const struct moat_snapshot *s, struct moat_stream_rt *st,
                               struct moat_tls_certset **sets, size_t nsets, struct moat_err *err)
{
    int used[8] = {0};
    const char *added[256];
    size_t nadded = 0;
    st->sni = moat_tls_sni_new();
    if (st->sni == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nsets; i++) {
        if (used[i]) {
            continue;
        }
        struct moat_tls_certset *group[8];
        size_t ng = 0;
        for (size_t k = i; k < nsets; k++) {
            if (!used[k] && same_names(sets[i], sets[k])) {
                group[ng++] = sets[k];
                used[k] = 1;
            }
        }
        struct moat_tls_opts o = {
            .sets = group,
            .nsets = ng,
            .no_alpn = 1, /* a stream's protocol is not moat's to negotiate */
            .tickets = s->conf->tickets ? s->tickets : NULL,
            .session_cache_size = (unsigned long)s->conf->session_cache,
            .session_timeout_s = (long)(s->conf->ticket_rotate_s * 2),
            .client_auth = st->client_auth,
        };
        SSL_CTX *ctx = NULL;
        MOAT_TRY(moat_tls_ctx_new(&o, &ctx, err));
        moat_rc rc = MOAT_RC_OK;
        for (size_t n = 0; n < sets[i]->nnames && moat_ok(rc); n++) {
            const char *name = sets[i]->names[n];
            int seen = moat_tls_client_host_ip(name) != 0 || nadded == 256;
            for (size_t a = 0; a < nadded && !seen; a++) {
                seen = strcasecmp(added[a], name) == 0;
            }
            if (seen) {
                continue; /* SNI never carries an address; an earlier certificate has it */
            }
            added[nadded++] = name;
            rc = moat_tls_sni_add(st->sni, name, ctx, st, err);
        }
        if (moat_ok(rc) && i == 0) {
            rc = moat_tls_sni_add(st->sni, "*", ctx, st, err); /* the default */
        }
        SSL_CTX_free(ctx); /* the table holds its references */
        MOAT_TRY(rc);
    }
    MOAT_TRY(moat_tls_sni_finish(st->sni, err));
    st->ctx = moat_tls_sni_default_ctx(st->sni);
    SSL_CTX_up_ref(st->ctx);
    return MOAT_RC_OK;
}

/* A stream: its routes to groups, and for tls terminate its context (certificates as a site's,
 * client certificates as a site's, no ALPN). */
static moat_rc build_stream(struct moat_snapshot *s, size_t i, const struct moat_snapshot_env *env,
                            X509_STORE *trust, struct moat_cert_local_ca *lca, struct moat_err *err)
{
    const struct moat_conf_stream *cs = &s->conf->streams[i];
    struct moat_stream_rt *st = &s->streams[i];
    st->conf = cs;
    s->nstreams = i + 1;
    st->routes = calloc(cs->nroutes ? cs->nroutes : 1, sizeof(*st->routes));
    if (st->routes == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < cs->nroutes; k++) {
        snprintf(st->routes[k].sni, sizeof(st->routes[k].sni), "%s",
                 cs->routes[k].sni ? cs->routes[k].sni : "");
        st->routes[k].group = moat_up_group_ref(s->groups[cs->routes[k].index]);
        st->nroutes = k + 1;
    }
    if (cs->tls != MOAT_CONF_STREAM_TERMINATE) {
        return MOAT_RC_OK;
    }
    const struct moat_conf_site *id = &cs->id;
    if (id->client_auth != MOAT_CLIENT_AUTH_OFF) {
        moat_rc rc = moat_tls_client_auth_new(
            (enum moat_client_auth_mode)id->client_auth, (const char *const *)id->client_ca,
            id->nclient_ca, (const char *const *)id->client_crl, id->nclient_crl,
            (int)id->client_depth, NULL, 0, &st->client_auth, err);
        if (!moat_ok(rc)) {
            moat_err_ctx(err, "in stream %s (%s)", cs->name, cs->where);
            return rc;
        }
    }
    struct moat_site tmp = {.conf = id};
    tmp.st.root_fd = -1;
    struct moat_tls_certset *sets[8] = {NULL};
    size_t nsets = 0;
    MOAT_TRY(site_sets(&tmp, id, env, trust, lca, sets, &nsets, err));
    st->cert_renew_at = tmp.cert_renew_at;
    moat_rc rc = MOAT_RC_OK;
    if (nsets > 0) {
        rc = stream_contexts(s, st, sets, nsets, err);
    } else if ((st->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        rc = moat_err_ssl(err, MOAT_E_NOMEM, __FILE__, __LINE__, "cannot create a TLS context");
    }
    sets_unref(sets, nsets);
    if (!moat_ok(rc) && err != NULL && err->where[0] == '\0') {
        moat_err_where(err, "%s", cs->where);
    }
    return rc;
}

static moat_rc build_site(struct moat_snapshot *s, size_t i, const struct moat_snapshot_env *env,
                          X509_STORE *trust, struct moat_cert_local_ca *lca, SSL_CTX **ctx,
                          struct moat_err *err)
{
    const struct moat_conf_site *cs = &s->conf->sites[i];
    struct moat_site *site = &s->sites[i];
    site->conf = cs;
    site->st.root_fd = -1;
    site->st.index = cs->index;
    site->st.listing = cs->listing;
    site->local_cert = cs->ncerts == 0 && !cs->acme;

    struct moat_tls_certset *sets[8] = {NULL};
    size_t nsets = 0;
    MOAT_TRY(site_sets(site, cs, env, trust, lca, sets, &nsets, err));
    if (cs->client_auth != MOAT_CLIENT_AUTH_OFF) {
        moat_rc rc = moat_tls_client_auth_new(
            (enum moat_client_auth_mode)cs->client_auth, (const char *const *)cs->client_ca,
            cs->nclient_ca, (const char *const *)cs->client_crl, cs->nclient_crl,
            (int)cs->client_depth, (const char *const *)cs->client_allow, cs->nclient_allow,
            &site->client_auth, err);
        if (!moat_ok(rc)) {
            sets_unref(sets, nsets);
            moat_err_ctx(err, "in site %s (%s)", cs->names[0], cs->where);
            return rc;
        }
    }
    moat_rc rc = MOAT_RC_OK;
    site->mx_slot = moat_mx_slot(cs->names[0]);
    if (nsets > 0) {
        rc = site_ctx_new(s, site, sets, nsets, ctx, err);
        if (moat_ok(rc)) {
            keep_certs(site, sets, nsets);
        }
    } else if ((*ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        /* A check for a site whose certificate serve would issue: a bare context stands in,
         * so the rest of the site (SNI names, root, proxy, client CAs) is still checked. */
        rc = moat_err_ssl(err, MOAT_E_NOMEM, __FILE__, __LINE__, "cannot create a TLS context");
    }
    /* The context holds its own references on certificates and keys, and keep_certs the
     * admin interface's (the same objects: no second copy of a key). */
    sets_unref(sets, nsets);
    if (!moat_ok(rc)) {
        if (err != NULL && err->where[0] == '\0') {
            moat_err_where(err, "%s", cs->where);
        }
        return rc;
    }

    MOAT_TRY(site_routes(s, site, cs, err));
    if (cs->root != NULL &&
        (site->st.root_fd = open(cs->root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        moat_err_where(err, "%s", cs->where);
        MOAT_FAIL_SYS(err, MOAT_E_CONFIG,
                      "root folder \"%s\" cannot be opened (create it, or fix the path)", cs->root);
    }
    /* Unique per site and snapshot: a worker's cached files of an older configuration (another
     * root, perhaps) are never found under this one. */
    site->st.cache_key = atomic_fetch_add(&site_key_counter, 1) + 1;

    if (moat_conf_site_hsts(cs)) {
        int n = snprintf(
            site->hsts, sizeof(site->hsts), "Strict-Transport-Security: max-age=%llu%s%s\r\n",
            (unsigned long long)cs->hsts_max_age_s,
            cs->hsts_subdomains ? "; includeSubDomains" : "", cs->hsts_preload ? "; preload" : "");
        site->hsts_len = n > 0 && (size_t)n < sizeof(site->hsts) ? (size_t)n : 0;
    }
    MOAT_TRY(moat_hdr_table_build(cs, 0, &site->hdrs, err));
    MOAT_TRY(moat_hdr_table_build(cs, 1, &site->req_hdrs, err));
    for (size_t k = 0; k < cs->nnames; k++) {
        struct moat_site_ip ip = {.site = site};
        if (ip_parse(cs->names[k], strlen(cs->names[k]), &ip)) {
            if (s->nips == MOAT_SNAPSHOT_MAX_IPS) {
                MOAT_FAIL(err, MOAT_E_CONFIG, "%s: more than %d addresses as site names", cs->where,
                          MOAT_SNAPSHOT_MAX_IPS);
            }
            s->ips[s->nips++] = ip;
        }
        if (strcmp(cs->names[k], "*") == 0) {
            s->catch_all = site;
        }
        MOAT_TRY(moat_tls_sni_add(s->sni, cs->names[k], *ctx, site, err));
    }
    return MOAT_RC_OK;
}

void moat_snapshot_inherit(struct moat_snapshot *s, const struct moat_snapshot *old)
{
    for (size_t i = 0; i < s->ngroups; i++) {
        for (size_t j = 0; j < old->ngroups; j++) {
            if (strcmp(moat_up_group_name(s->groups[i]), moat_up_group_name(old->groups[j])) == 0) {
                moat_up_group_inherit(s->groups[i], old->groups[j]);
                break;
            }
        }
    }
}

moat_rc moat_snapshot_build(struct moat_conf *conf, const struct moat_snapshot_env *env,
                            struct moat_snapshot **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        moat_conf_free(conf);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    atomic_init(&s->refs, 1);
    s->conf = conf;
    s->generation = atomic_fetch_add(&generation_counter, 1) + 1;
    moat_h1_limits_default(&s->h1.head);
    s->h1.head.max_line_bytes = (size_t)conf->max_line_bytes;
    s->h1.head.max_head_bytes = (size_t)conf->max_head_bytes;
    s->h1.head.max_fields = (size_t)conf->max_fields;
    s->h1.max_body_bytes = conf->max_body_bytes;
    s->h1.max_requests = conf->max_requests;
    s->h1.min_rate = conf->min_rate;
    s->h1.head_timeout_ms = conf->head_timeout_ms;
    s->h1.idle_timeout_ms = conf->idle_timeout_ms;
    s->h1.body_timeout_ms = conf->body_timeout_ms;
    s->h1.write_timeout_ms = conf->write_timeout_ms;
    s->h2 = (struct moat_h2s_conf){
        .max_streams = (uint32_t)conf->h2_streams,
        .hpack_table = (uint32_t)conf->h2_hpack,
        .stream_window = (uint32_t)(conf->h2_window > 0x7fffffff ? 0x7fffffff : conf->h2_window),
        /* Several streams upload at once: the connection takes at least 16 of them, or one. */
        .conn_window =
            (uint32_t)(conf->h2_window * 16 > 0x7fffffff ? 0x7fffffff : conf->h2_window * 16),
        .frames_per_s = (uint32_t)conf->h2_frames,
        .resets_per_s = (uint32_t)conf->h2_resets,
        .max_line_bytes = conf->max_line_bytes,
        .max_head_bytes = conf->max_head_bytes,
        .max_fields = (uint32_t)conf->max_fields,
        .max_body_bytes = conf->max_body_bytes,
        .max_requests = conf->max_requests,
        .req_interval_us = conf->h2_requests.n > 0 ? moat_rate_interval_us(&conf->h2_requests) : 0,
        .req_burst = conf->h2_requests.burst,
        .head_timeout_ms = conf->head_timeout_ms,
        .idle_timeout_ms = conf->idle_timeout_ms,
        .body_timeout_ms = conf->body_timeout_ms,
        .write_timeout_ms = conf->write_timeout_ms,
    };

    moat_rc rc = MOAT_RC_OK;
    X509_STORE *trust = NULL;
    struct moat_cert_local_ca *lca = moat_cert_local_ca_new(env->state_dir, env->quiet);
    s->sites = calloc(conf->nsites ? conf->nsites : 1, sizeof(*s->sites));
    s->sni = moat_tls_sni_new();
    s->tickets = env->tickets;
    s->store = env->store;
    s->acme = env->acme;
    s->guard = env->guard;
    s->cache = env->cache;
    if (s->sites == NULL || s->sni == NULL || lca == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < conf->nsites; i++) {
        s->sites[i].st.root_fd = -1;
    }
    s->nsites = conf->nsites;
    if (conf->nsites == 0) {
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "no site configured: add a `site NAME { root DIR }` block");
        goto out;
    }

    /* Anchors for the "missing intermediate" check: the system's, the `trust` files, and
     * moat's local CA when it exists. */
    const char *extra[34];
    size_t nextra = 0;
    for (size_t i = 0; i < conf->ntrust && nextra < 32; i++) {
        extra[nextra++] = conf->trust[i];
    }
    char local_root[PATH_MAX];
    snprintf(local_root, sizeof(local_root), "%s/ca/root.pem", env->state_dir);
    if (access(local_root, R_OK) == 0) {
        extra[nextra++] = local_root;
    }
    rc = moat_trust_store_new(extra, nextra, 1, &trust, err);
    if (!moat_ok(rc)) {
        goto out;
    }
    rc = build_groups(s, env, err);
    if (!moat_ok(rc)) {
        goto out;
    }
    for (size_t i = 0; i < conf->nsites; i++) {
        /* The site's context: the SNI table takes its references, ours goes either way. */
        SSL_CTX *ctx = NULL;
        rc = build_site(s, i, env, trust, lca, &ctx, err);
        SSL_CTX_free(ctx);
        if (!moat_ok(rc)) {
            goto out;
        }
    }
    loopback_names(s);
    s->streams = calloc(conf->nstreams ? conf->nstreams : 1, sizeof(*s->streams));
    if (s->streams == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < conf->nstreams; i++) {
        rc = build_stream(s, i, env, trust, lca, err);
        if (!moat_ok(rc)) {
            goto out;
        }
    }
    if (env->acme != NULL && acme_alpn_wanted(conf)) {
        rc = acme_alpn_install(s, err);
        if (!moat_ok(rc)) {
            goto out;
        }
    }
    rc = moat_tls_sni_finish(s->sni, err);
    if (moat_ok(rc)) {
        /* After the sites: a site without `cert` has made the local CA by now. */
        rc = moat_crlpub_build(conf, env->state_dir, env->quiet, env->dry_run, &s->crlpub,
                               &s->crl_refresh_at, err);
    }
out:
    X509_STORE_free(trust);
    moat_cert_local_ca_free(lca);
    if (!moat_ok(rc)) {
        snapshot_free(s);
        return rc;
    }
    *out = s;
    return MOAT_RC_OK;
}

moat_rc moat_snapshot_swap_certs(struct moat_snapshot *s, struct moat_site *site,
                                 struct moat_tls_certset *const *sets, size_t nsets,
                                 struct moat_err *err)
{
    MOAT_ENSURE_REF(s);
    MOAT_ENSURE_REF(site);
    MOAT_ENSURE(site >= s->sites && site < s->sites + s->nsites, MOAT_E_USAGE);
    SSL_CTX *ctx = NULL;
    moat_rc rc = site_ctx_new(s, site, sets, nsets, &ctx, err);
    if (moat_ok(rc)) {
        rc = moat_tls_sni_swap_ctx(s->sni, site, ctx, err);
    }
    if (moat_ok(rc)) {
        keep_certs(site, sets, nsets);
    }
    /* The SNI table holds the references now (or, on failure, nobody needs it). */
    SSL_CTX_free(ctx);
    if (!moat_ok(rc) && err != NULL && err->where[0] == '\0') {
        moat_err_where(err, "%s", site->conf->where);
    }
    return rc;
}

/* The sooner of two renewal times, 0 meaning never. */
static time_t sooner(time_t a, time_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

time_t moat_snapshot_next_renewal(const struct moat_snapshot *s)
{
    time_t next = 0;
    for (size_t i = 0; i < s->nsites; i++) {
        next = sooner(next, s->sites[i].cert_renew_at);
    }
    return next;
}

time_t moat_snapshot_next_stream_renewal(const struct moat_snapshot *s)
{
    time_t next = 0;
    for (size_t i = 0; i < s->nstreams; i++) {
        next = sooner(next, s->streams[i].cert_renew_at);
    }
    return next;
}

/* A new certificate for one site from its source, swapped in. */
static moat_rc renew_site(struct moat_snapshot *s, struct moat_site *site,
                          struct moat_cert_local_ca *lca, struct moat_err *err)
{
    const struct moat_conf_site *cs = site->conf;
    struct moat_cert_source *src = NULL;
    struct moat_tls_certset *set = NULL;
    moat_rc rc =
        moat_cert_source_local_new(lca, (const char *const *)cs->names, cs->nnames, &src, err);
    if (moat_ok(rc)) {
        rc = moat_cert_source_load(src, &set, err);
    }
    moat_cert_source_free(src);
    if (moat_ok(rc)) {
        rc = moat_snapshot_swap_certs(s, site, &set, 1, err);
    }
    if (moat_ok(rc)) {
        site->cert_renew_at = set->renew_at;
        char when[32] = "never";
        struct tm tm;
        if (set->renew_at != 0 && gmtime_r(&set->renew_at, &tm) != NULL) {
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
        }
        moat_log_i("site %s: renewed its local certificate without a reload (next renewal %s)",
                   cs->names[0], when);
    }
    moat_tls_certset_unref(set);
    if (!moat_ok(rc) && err != NULL && err->where[0] == '\0') {
        moat_err_where(err, "%s", cs->where);
    }
    return rc;
}

moat_rc moat_snapshot_renew_certs(struct moat_snapshot *s, const char *state_dir, time_t now,
                                  struct moat_err *err)
{
    MOAT_ENSURE_REF(s);
    struct moat_cert_local_ca *lca = NULL;
    moat_rc first = MOAT_RC_OK;
    for (size_t i = 0; i < s->nsites; i++) {
        struct moat_site *site = &s->sites[i];
        if (!site->local_cert || site->cert_renew_at == 0 || now < site->cert_renew_at) {
            continue;
        }
        if (lca == NULL && (lca = moat_cert_local_ca_new(state_dir, 1)) == NULL) {
            first = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            break;
        }
        /* Only the first failure is reported; the others are tried all the same. */
        moat_rc rc = renew_site(s, site, lca, moat_ok(first) ? err : NULL);
        if (!moat_ok(rc) && moat_ok(first)) {
            first = rc;
        }
    }
    moat_cert_local_ca_free(lca);
    return first;
}
