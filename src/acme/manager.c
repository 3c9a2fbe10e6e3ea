/*
 * manager.c: the ACME thread of `moat serve` (see manager.h).
 *
 * The thread sleeps on a condition variable until the soonest thing due (a renewal, a retry)
 * or a minute at most: once a minute it looks at the store again, so a certificate another moat
 * installed in a shared state folder is picked up, and the CA's ARI window of each certificate
 * is asked for again when its Retry-After has passed. Everything it owns (a copy of the
 * configuration, the per-certificate retry state) lives on this thread; the mutex guards only
 * the hand-over of a new configuration, the stop flag and the generation.
 */
#include "acme/manager.h"

#include "acme/account.h"
#include "acme/ari.h"
#include "core/log.h"
#include "pki/ca.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define RESCAN_S 60
#define CA_SWITCH_AFTER 3    /* failures in a row on one CA before the next one is tried */
#define ARI_TIMEOUT_MS 10000 /* for each ARI exchange: the rescan waits on it */

/* The configuration, copied. */
struct mconf {
    char **cas;
    size_t ncas;
    char *ca_bundle;
    char **emails;
    size_t nemails;
    int agree_tos;
    char *eab_kid, *eab_hmac;
    char **challenges;
    size_t nchallenges;
    char *preferred_chain, *profile;
    char *dns_server, *dns_zone, *tsig_name, *tsig_alg, *tsig_secret, *dns_hook;
    char **dns_check;
    size_t ndns_check;
    char *resolver;
    int no_preflight;
    unsigned http_port;
    struct {
        char **names;
        size_t nnames;
        unsigned kinds;
    } * jobs;
    size_t njobs;
    unsigned retry_base_s, retry_max_s;
};

/* One certificate being kept: a job's names in one key kind. */
struct lineage {
    size_t job;
    enum moat_acme_kind kind;
    time_t not_after;  /* of the installed certificate; 0: none */
    time_t renew_at;   /* when it is due */
    time_t next_try;   /* after a failure: not before */
    unsigned failures; /* in a row */
    size_t ca;         /* index of the CA in use */
    time_t warned_at;  /* last loud expiry warning */
    char avoid[16];    /* the challenge type the CA refused last time: tried last */
    /* ARI (RFC 9773) for the installed certificate; all 0 for a new certificate. */
    time_t ari_next;           /* when to ask the CA again (its Retry-After); 0: at once */
    time_t ari_start, ari_end; /* the CA's last window; 0: none (no ARI, or never answered) */
    time_t ari_at;             /* the moment picked in it: the renewal time */
    unsigned ari_failures;     /* asking failed this many times in a row (backoff) */
    char last_error[MOAT_ACME_STATE_ERR]; /* the last attempt's failure; "" after a success */
};

struct moat_acme_mgr {
    struct moat_store *st;
    struct moat_acme_challenges *tab;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    atomic_int cancel;     /* read by order waits */
    struct mconf *pending; /* a new configuration to take */
    atomic_ulong generation;
    atomic_ulong orders_ok, orders_failed; /* attempts that installed a certificate, or not */
    /* What the thread last published of its lineages, for the admin interface. */
    pthread_mutex_t vmu;
    struct moat_acme_state *view; /* owned, nview */
    size_t nview;
    /* thread-owned */
    struct mconf *conf;
    struct lineage *lin;
    size_t nlin;
};

static void strs_free(char **a, size_t n)
{
    for (size_t i = 0; a != NULL && i < n; i++) {
        free(a[i]);
    }
    free(a);
}

static void mconf_free(struct mconf *c)
{
    if (c == NULL) {
        return;
    }
    strs_free(c->cas, c->ncas);
    free(c->ca_bundle);
    strs_free(c->emails, c->nemails);
    free(c->eab_kid);
    free(c->eab_hmac);
    strs_free(c->challenges, c->nchallenges);
    free(c->preferred_chain);
    free(c->profile);
    free(c->dns_server);
    free(c->dns_zone);
    free(c->tsig_name);
    free(c->tsig_alg);
    if (c->tsig_secret != NULL) {
        OPENSSL_cleanse(c->tsig_secret, strlen(c->tsig_secret));
    }
    free(c->tsig_secret);
    free(c->dns_hook);
    strs_free(c->dns_check, c->ndns_check);
    free(c->resolver);
    for (size_t i = 0; c->jobs != NULL && i < c->njobs; i++) {
        strs_free(c->jobs[i].names, c->jobs[i].nnames);
    }
    free(c->jobs);
    free(c);
}

/* Copy n strings; 0 when out of memory. */
static int strs_copy(char ***out, const char *const *in, size_t n)
{
    *out = n ? calloc(n, sizeof(char *)) : NULL;
    if (n && *out == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (((*out)[i] = strdup(in[i])) == NULL) {
            return 0;
        }
    }
    return 1;
}

static int str_copy(char **out, const char *in)
{
    *out = in ? strdup(in) : NULL;
    return in == NULL || *out != NULL;
}

static struct mconf *mconf_copy(const struct moat_acme_mgr_conf *in)
{
    struct mconf *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    int ok =
        strs_copy(&c->cas, in->cas, in->ncas) && str_copy(&c->ca_bundle, in->ca_bundle) &&
        strs_copy(&c->emails, in->emails, in->nemails) && str_copy(&c->eab_kid, in->eab_kid) &&
        str_copy(&c->eab_hmac, in->eab_hmac) &&
        strs_copy(&c->challenges, in->challenges, in->nchallenges) &&
        str_copy(&c->preferred_chain, in->preferred_chain) && str_copy(&c->profile, in->profile) &&
        str_copy(&c->dns_server, in->dns.server) && str_copy(&c->dns_zone, in->dns.zone) &&
        str_copy(&c->tsig_name, in->dns.tsig_name) && str_copy(&c->tsig_alg, in->dns.tsig_alg) &&
        str_copy(&c->tsig_secret, in->dns.tsig_secret) && str_copy(&c->dns_hook, in->dns.hook) &&
        strs_copy(&c->dns_check, in->dns.check, in->dns.ncheck) &&
        str_copy(&c->resolver, in->resolver);
    c->no_preflight = in->no_preflight;
    c->http_port = in->http_port;
    c->ndns_check = in->dns.ncheck;
    c->ncas = in->ncas;
    c->nemails = in->nemails;
    c->nchallenges = in->nchallenges;
    c->agree_tos = in->agree_tos;
    c->retry_base_s = in->retry_base_s ? in->retry_base_s : 60;
    c->retry_max_s = in->retry_max_s ? in->retry_max_s : 6 * 3600;
    if (ok && in->njobs > 0) {
        c->jobs = calloc(in->njobs, sizeof(*c->jobs));
        ok = c->jobs != NULL;
    }
    for (size_t i = 0; ok && i < in->njobs; i++) {
        ok = strs_copy(&c->jobs[i].names, in->jobs[i].names, in->jobs[i].nnames);
        c->jobs[i].nnames = in->jobs[i].nnames;
        c->jobs[i].kinds = in->jobs[i].kinds;
        c->njobs = i + 1;
    }
    if (!ok) {
        mconf_free(c);
        return NULL;
    }
    return c;
}

static void say(void *arg, int level, const char *line)
{
    (void)arg;
    if (level) {
        moat_log_w("acme: %s", line);
    } else {
        moat_log_i("acme: %s", line);
    }
}

/* Rebuild the lineage list for a new configuration, keeping the state of names kept. */
static int adopt(struct moat_acme_mgr *m, struct mconf *c)
{
    size_t n = 0;
    for (size_t j = 0; j < c->njobs; j++) {
        for (int k = 0; k < MOAT_ACME_KIND_COUNT; k++) {
            n += (c->jobs[j].kinds >> k) & 1;
        }
    }
    struct lineage *lin = n ? calloc(n, sizeof(*lin)) : NULL;
    if (n && lin == NULL) {
        return 0;
    }
    size_t at = 0;
    for (size_t j = 0; j < c->njobs; j++) {
        for (int k = 0; k < MOAT_ACME_KIND_COUNT; k++) {
            if (!((c->jobs[j].kinds >> k) & 1)) {
                continue;
            }
            struct lineage *l = &lin[at++];
            l->job = j;
            l->kind = (enum moat_acme_kind)k;
            for (size_t o = 0; m->conf != NULL && o < m->nlin; o++) {
                const struct lineage *ol = &m->lin[o];
                if (ol->kind == l->kind &&
                    strcmp(m->conf->jobs[ol->job].names[0], c->jobs[j].names[0]) == 0) {
                    *l = *ol;
                    l->job = j;
                    l->ca = l->ca < c->ncas ? l->ca : 0;
                    if (strcmp(m->conf->cas[ol->ca], c->cas[l->ca]) != 0) {
                        l->ari_next = 0; /* another CA: ask it for its window */
                    }
                }
            }
        }
    }
    free(m->lin);
    mconf_free(m->conf);
    m->lin = lin;
    m->nlin = n;
    m->conf = c;
    return 1;
}

static void fmt_utc(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M UTC", &tm);
}

/*
 * Ask the lineage's CA for its renewal window (RFC 9773 §4.2) and pick the renewal moment in
 * it. The GET needs no account, so this is a directory and one GET: cheap enough for the
 * rescan, which calls it at most once per Retry-After (§4.3). A CA without ARI is asked again
 * after a day (it may gain it); a failure keeps the last window, if any, and backs off.
 */
static void ari_ask(struct moat_acme_mgr *m, struct lineage *l, X509 *leaf, time_t third,
                    time_t now)
{
    struct mconf *c = m->conf;
    const char *name = c->jobs[l->job].names[0];
    const char *kind = moat_acme_kind_name(l->kind);
    struct moat_acme_opts o = {
        .directory = c->cas[l->ca],
        .cafile = c->ca_bundle,
        .timeout_ms = ARI_TIMEOUT_MS,
        .say = say,
    };
    struct moat_acme *a = NULL;
    struct moat_err err = {0};
    time_t ws = 0, we = 0;
    long retry = MOAT_ACME_ARI_RETRY_DEFAULT_S;
    moat_rc rc = moat_acme_new(&o, &a, &err);
    if (moat_ok(rc)) {
        rc = moat_acme_ari_fetch(a, leaf, &ws, &we, &retry, &err);
    }
    moat_acme_free(a);
    if (rc.kind == MOAT_E_NOTFOUND || rc.kind == MOAT_E_CERT) {
        /* nothing to ask (no renewalInfo), or nothing ARI can name: the one-third rule */
        if (rc.kind == MOAT_E_CERT && l->ari_next == 0) {
            moat_log_i("acme: %s (%s): %s", name, kind, err.msg);
        }
        l->ari_start = l->ari_end = l->ari_at = 0;
        l->ari_failures = 0;
        l->ari_next = now + MOAT_ACME_ARI_RETRY_MAX_S;
        return;
    }
    if (!moat_ok(rc)) {
        /* RFC 9773 §4.3.3: back off (1 h, 2 h, 4 h, then 6 h) and keep what was known. */
        l->ari_failures++;
        long pause = MOAT_ACME_ARI_RETRY_MIN_S;
        for (unsigned i = 1; i < l->ari_failures && pause < MOAT_ACME_ARI_RETRY_DEFAULT_S; i++) {
            pause *= 2;
        }
        pause = pause > MOAT_ACME_ARI_RETRY_DEFAULT_S ? MOAT_ACME_ARI_RETRY_DEFAULT_S : pause;
        l->ari_next = now + pause;
        char msg[MOAT_ERR_MSG_MAX + 300];
        moat_log_i("acme: %s (%s): no renewal window from the CA (ARI) this time, asking again "
                   "in %ld s; %s: %s",
                   name, kind, pause,
                   l->ari_end ? "its last window stands" : "renewal follows the one-third rule",
                   moat_err_str(&err, msg, sizeof(msg)));
        return;
    }
    l->ari_failures = 0;
    l->ari_next = now + retry;
    if (ws == l->ari_start && we == l->ari_end) {
        return; /* the same window: the moment picked in it stands */
    }
    l->ari_start = ws;
    l->ari_end = we;
    l->ari_at = moat_acme_ari_pick(ws, we, now);
    char t_at[40], t_end[40], t_third[40], t_start[40];
    fmt_utc(l->ari_at, t_at, sizeof(t_at));
    fmt_utc(we, t_end, sizeof(t_end));
    fmt_utc(third, t_third, sizeof(t_third));
    fmt_utc(ws, t_start, sizeof(t_start));
    if (l->ari_at >= l->not_after) {
        moat_log_w("acme: %s (%s): the CA's renewal window (ARI) %s .. %s reaches past the "
                   "certificate's expiry; renewal follows the one-third rule (%s)",
                   name, kind, t_start, t_end, t_third);
        return;
    }
    if (l->ari_at < third) {
        moat_log_i("acme: %s (%s): the CA asks for renewal by %s (its ARI window opens %s): "
                   "renewing at %s, earlier than the one-third rule (%s)",
                   name, kind, t_end, t_start, t_at, t_third);
    } else {
        moat_log_i("acme: %s (%s): renewal at %s, in the CA's window (ARI) %s .. %s", name, kind,
                   t_at, t_start, t_end);
    }
    moat_acme_status_ari(m->st, name, l->kind, l->not_after, ws, we, l->ari_at);
}

/* Look at what the store holds for l; 1 when it is newer than what was seen. The renewal time
 * is the CA's (ARI) when it has a window for the certificate, else the one-third rule. */
static int refresh(struct moat_acme_mgr *m, struct lineage *l)
{
    const char *name = m->conf->jobs[l->job].names[0];
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    if (!moat_ok(moat_acme_installed(m->st, name, l->kind, &chain, &key, NULL))) {
        return 0;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    time_t nb = moat_ca_asn1_time(X509_get0_notBefore(leaf));
    time_t na = moat_ca_asn1_time(X509_get0_notAfter(leaf));
    /* The names must still be the job's: a site that gained a name needs a new order. */
    const char *const *want = (const char *const *)m->conf->jobs[l->job].names;
    int same = 1;
    for (size_t i = 0; same && i < m->conf->jobs[l->job].nnames; i++) {
        same = X509_check_host(leaf, want[i], 0, 0, NULL) == 1 ||
               X509_check_ip_asc(leaf, want[i], 0) == 1;
    }
    int newer = na != l->not_after;
    l->not_after = na;
    if (newer) {
        /* a new certificate: its window is its own, asked for at once (RFC 9773 §4.3) */
        l->ari_next = l->ari_start = l->ari_end = l->ari_at = 0;
        l->ari_failures = 0;
    }
    time_t third = moat_acme_renew_at(nb, na);
    l->renew_at = same ? third : 0;
    time_t now = time(NULL);
    if (same && na > now && now >= l->ari_next && !atomic_load(&m->cancel)) {
        ari_ask(m, l, leaf, third, now);
    }
    if (same && l->ari_end != 0 && l->ari_at < na) {
        l->renew_at = l->ari_at;
    }
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return newer;
}

static unsigned jitter_pct(void)
{
    unsigned char b = 0;
    if (getrandom(&b, 1, GRND_NONBLOCK) != 1) {
        b = (unsigned char)time(NULL);
    }
    return 80 + b % 41; /* 80..120 % */
}

/*
 * The HTTP-01 pre-flight: each name, resolved as the CA would, must reach this moat's plain
 * listener with a probe answer published for the occasion. A name that does not takes HTTP-01
 * out of this attempt when another challenge is left (with a warning), else fails it.
 */
static moat_rc probe_http01(struct moat_acme_mgr *m, const struct mconf *c,
                            const struct moat_acme_cert_req *cq, struct moat_acme_solver **solvers,
                            size_t *nsolvers, struct moat_err *err)
{
    size_t at = *nsolvers;
    for (size_t i = 0; i < *nsolvers; i++) {
        if (strcmp(solvers[i]->ops->type, "http-01") == 0) {
            at = i;
        }
    }
    if (at == *nsolvers) {
        return MOAT_RC_OK;
    }
    unsigned char rnd[18];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        return MOAT_RC_OK; /* no probe without an unguessable token */
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char token[sizeof(rnd) + 8] = "probe";
    for (size_t i = 0; i < sizeof(rnd); i++) {
        token[5 + i] = b64[rnd[i] & 63];
    }
    token[5 + sizeof(rnd)] = '\0';
    char answer[64], path[128];
    snprintf(answer, sizeof(answer), "moat-preflight.%s", token);
    snprintf(path, sizeof(path), MOAT_ACME_HTTP01_PREFIX "%s", token);
    struct moat_acme_preflight pf = {.resolver = c->resolver};
    moat_rc rc = solvers[at]->ops->present(solvers[at], "preflight", token, answer, err);
    for (size_t i = 0; moat_ok(rc) && i < cq->nnames; i++) {
        if (cq->names[i][0] == '*') {
            continue; /* wildcards go by DNS-01 */
        }
        rc = moat_acme_preflight_http01(&pf, cq->names[i], c->http_port, path, answer, err);
    }
    solvers[at]->ops->cleanup(solvers[at], "preflight", token);
    if (moat_ok(rc) || *nsolvers == 1) {
        return rc;
    }
    char msg[MOAT_ERR_MSG_MAX + 100];
    moat_log_w("acme: %s; trying without http-01", moat_err_str(err, msg, sizeof(msg)));
    moat_err_clear(err);
    moat_acme_solver_free(solvers[at]);
    for (size_t i = at + 1; i < *nsolvers; i++) {
        solvers[i - 1] = solvers[i];
    }
    (*nsolvers)--;
    return MOAT_RC_OK;
}

static void publish_view(struct moat_acme_mgr *m);

static void run_one(struct moat_acme_mgr *m, struct lineage *l, time_t now)
{
    struct mconf *c = m->conf;
    const char *ca = c->cas[l->ca];
    struct moat_acme_opts o = {
        .directory = ca,
        .cafile = c->ca_bundle,
        .say = say,
    };
    struct moat_acme_account_req q = {
        .contacts = (const char *const *)c->emails,
        .ncontacts = c->nemails,
        .agree_tos = c->agree_tos,
        .eab_kid = c->eab_kid,
        .eab_hmac = c->eab_hmac,
    };
    struct moat_acme_solver *solvers[4] = {0};
    size_t nsolvers = 0;
    struct moat_err err = {0};
    moat_rc rc = MOAT_RC_OK;
    for (size_t i = 0; moat_ok(rc) && i < c->nchallenges && nsolvers < 4; i++) {
        if (strcmp(c->challenges[i], "dns-01") == 0) {
            struct moat_acme_dns_opts d = {
                .server = c->dns_server,
                .zone = c->dns_zone,
                .tsig_name = c->tsig_name,
                .tsig_alg = c->tsig_alg,
                .tsig_secret = c->tsig_secret,
                .hook = c->dns_hook,
                .check = (const char *const *)c->dns_check,
                .ncheck = c->ndns_check,
                .resolver = c->resolver,
            };
            rc = moat_acme_dns_solver_new(&d, &solvers[nsolvers], &err);
        } else {
            rc = moat_acme_table_solver_new(m->tab, c->challenges[i], &solvers[nsolvers], &err);
        }
        nsolvers += moat_ok(rc);
    }
    /* Falling back: the type the CA refused last time goes last, so the next attempt tries
     * the others first (a failed HTTP-01 behind a broken port 80 becomes a TLS-ALPN-01). */
    for (size_t i = 0; moat_ok(rc) && l->avoid[0] && i + 1 < nsolvers; i++) {
        if (strcmp(solvers[i]->ops->type, l->avoid) == 0) {
            struct moat_acme_solver *t = solvers[i];
            memmove(&solvers[i], &solvers[i + 1], (nsolvers - i - 1) * sizeof(solvers[0]));
            solvers[nsolvers - 1] = t;
            moat_log_i("acme: %s: the CA refused %s last time; trying %s first",
                       c->jobs[l->job].names[0], l->avoid, solvers[0]->ops->type);
            break;
        }
    }
    struct moat_acme *a = NULL;
    const char *name = c->jobs[l->job].names[0];
    moat_log_i("acme: %s (%s): %s a certificate from %s", name, moat_acme_kind_name(l->kind),
               l->not_after ? "renewing" : "ordering", moat_acme_directory_url(ca));
    struct moat_acme_preflight pf = {.resolver = c->resolver};
    time_t seen = l->not_after; /* what this decision was made on */
    struct moat_acme_cert_req cq = {
        .names = (const char *const *)c->jobs[l->job].names,
        .nnames = c->jobs[l->job].nnames,
        .kind = l->kind,
        .solvers = solvers,
        .nsolvers = nsolvers,
        .preferred_chain = c->preferred_chain,
        .profile = c->profile,
        .cancel = &m->cancel,
        .preflight = c->no_preflight ? NULL : &pf,
        .seen_not_after = &seen,
    };
    if (moat_ok(rc)) {
        rc = moat_acme_login(m->st, &o, &q, &a, &err);
        if (!moat_ok(rc) && rc.kind != MOAT_E_CLOSED) {
            char msg[MOAT_ERR_MSG_MAX + 300];
            moat_acme_status_failed(m->st, &cq, ca, moat_err_str(&err, msg, sizeof(msg)));
        }
    }
    if (moat_ok(rc) && !c->no_preflight && c->http_port != 0) {
        rc = probe_http01(m, c, &cq, solvers, &nsolvers, &err);
        cq.nsolvers = nsolvers;
        if (!moat_ok(rc)) {
            char msg[MOAT_ERR_MSG_MAX + 300];
            moat_acme_status_failed(m->st, &cq, ca, moat_err_str(&err, msg, sizeof(msg)));
        }
    }
    if (moat_ok(rc)) {
        rc = moat_acme_obtain(m->st, a, &cq, &err);
    }
    long retry_after = a != NULL ? a->retry_after_s : -1;
    if (a != NULL) {
        snprintf(l->avoid, sizeof(l->avoid), "%s", moat_ok(rc) ? "" : a->failed_challenge);
    }
    moat_acme_free(a);
    for (size_t i = 0; i < nsolvers; i++) {
        moat_acme_solver_free(solvers[i]);
    }
    if (moat_ok(rc)) {
        l->failures = 0;
        l->next_try = 0;
        l->last_error[0] = '\0';
        atomic_fetch_add(&m->orders_ok, 1);
        refresh(m, l);
        atomic_fetch_add(&m->generation, 1);
        char when[40] = "";
        fmt_utc(l->renew_at, when, sizeof(when));
        moat_log_i("acme: %s (%s): certificate installed; next renewal %s", name,
                   moat_acme_kind_name(l->kind), when);
        return;
    }
    if (rc.kind == MOAT_E_CLOSED) {
        return; /* shutting down */
    }
    char msg[MOAT_ERR_MSG_MAX + 300];
    moat_err_str(&err, msg, sizeof(msg));
    if (rc.kind == MOAT_E_AGAIN) {
        /* another moat on this store is ordering it (look again soon), or has installed it
         * (take it now) */
        moat_log_i("acme: %s: %s", name, msg);
        l->next_try = now + 30;
        if (refresh(m, l)) {
            atomic_fetch_add(&m->generation, 1);
            l->next_try = 0;
        }
        return;
    }
    l->failures++;
    atomic_fetch_add(&m->orders_failed, 1);
    size_t keep = strnlen(msg, sizeof(l->last_error) - 1); /* a long one is cut */
    memcpy(l->last_error, msg, keep);
    l->last_error[keep] = '\0';
    unsigned long pause = c->retry_base_s;
    for (unsigned i = 1; i < l->failures && pause < c->retry_max_s; i++) {
        pause *= 2;
    }
    pause = pause > c->retry_max_s ? c->retry_max_s : pause;
    pause = pause * jitter_pct() / 100;
    if (pause < 1) {
        pause = 1;
    }
    if (rc.kind == MOAT_E_LIMIT && retry_after > (long)pause) {
        pause = (unsigned long)retry_after; /* the CA's rate limit says when */
    }
    l->next_try = now + (time_t)pause;
    moat_log_w("acme: %s (%s): attempt %u failed, next in %lu s: %s", name,
               moat_acme_kind_name(l->kind), l->failures, pause, msg);
    if (l->failures % CA_SWITCH_AFTER == 0 && c->ncas > 1) {
        l->ca = (l->ca + 1) % c->ncas;
        moat_log_w("acme: %s: %u failures in a row; trying the next CA, %s", name, l->failures,
                   moat_acme_directory_url(c->cas[l->ca]));
    }
    if (l->not_after != 0 && l->not_after - now < (l->not_after - l->renew_at) / 2 &&
        now - l->warned_at >= 3600) {
        l->warned_at = now;
        moat_log_e("acme: %s: the certificate EXPIRES %s in %ld hours and cannot be renewed "
                   "(see the errors above; moat acme status)",
                   name, l->not_after <= now ? "(already expired)" : "",
                   (long)((l->not_after - now) / 3600));
    }
}

static void *run(void *arg)
{
    struct moat_acme_mgr *m = arg;
    moat_log_set_worker(0);
    pthread_mutex_lock(&m->mu);
    for (;;) {
        if (m->stop) {
            break;
        }
        if (m->pending != NULL) {
            struct mconf *c = m->pending;
            m->pending = NULL;
            if (!adopt(m, c)) {
                mconf_free(c);
                moat_log_e("acme: out of memory taking the new configuration");
            }
        }
        pthread_mutex_unlock(&m->mu);
        time_t now = time(NULL);
        time_t wake = now + RESCAN_S;
        for (size_t i = 0; i < m->nlin; i++) {
            struct lineage *l = &m->lin[i];
            if (refresh(m, l)) {
                atomic_fetch_add(&m->generation, 1);
            }
            int due = l->not_after == 0 || now >= l->renew_at;
            if (due && now >= l->next_try) {
                publish_view(m); /* "ordering" shows while the order runs */
                run_one(m, l, now);
                publish_view(m);
                now = time(NULL);
            }
            /* When it is next worth a look: due (the CA's ARI moment or a third of its life
             * left, or none yet), and past a failure's pause. */
            time_t due_at = l->not_after == 0 ? 0 : l->renew_at;
            time_t next = due_at > l->next_try ? due_at : l->next_try;
            if (next <= now) {
                next = now + 1;
            }
            if (next < wake) {
                wake = next;
            }
            if (atomic_load(&m->cancel)) {
                break;
            }
        }
        publish_view(m);
        pthread_mutex_lock(&m->mu);
        if (m->stop || m->pending != NULL) {
            continue;
        }
        struct timespec ts = {.tv_sec = wake, .tv_nsec = 0};
        pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* A copy of the lineages' state for other threads (the admin interface reads it). */
static void publish_view(struct moat_acme_mgr *m)
{
    struct moat_acme_state *v = m->nlin ? calloc(m->nlin, sizeof(*v)) : NULL;
    if (m->nlin && v == NULL) {
        return; /* out of memory: the old view stays */
    }
    for (size_t i = 0; i < m->nlin; i++) {
        const struct lineage *l = &m->lin[i];
        snprintf(v[i].name, sizeof(v[i].name), "%s", m->conf->jobs[l->job].names[0]);
        v[i].kind = moat_acme_kind_name(l->kind);
        snprintf(v[i].ca, sizeof(v[i].ca), "%s", m->conf->cas[l->ca]);
        v[i].not_after = l->not_after;
        v[i].renew_at = l->renew_at;
        v[i].next_try = l->next_try;
        v[i].failures = l->failures;
        v[i].ari = l->ari_start != 0;
        snprintf(v[i].last_error, sizeof(v[i].last_error), "%s", l->last_error);
    }
    pthread_mutex_lock(&m->vmu);
    free(m->view);
    m->view = v;
    m->nview = m->nlin;
    pthread_mutex_unlock(&m->vmu);
}

moat_rc moat_acme_mgr_states(struct moat_acme_mgr *m, struct moat_acme_state **out, size_t *n,
                             struct moat_err *err)
{
    *out = NULL;
    *n = 0;
    if (m == NULL) {
        return MOAT_RC_OK;
    }
    pthread_mutex_lock(&m->vmu);
    size_t k = m->nview;
    struct moat_acme_state *v = k ? malloc(k * sizeof(*v)) : NULL;
    if (v != NULL) {
        memcpy(v, m->view, k * sizeof(*v));
    }
    pthread_mutex_unlock(&m->vmu);
    if (k && v == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = v;
    *n = k;
    return MOAT_RC_OK;
}

void moat_acme_mgr_counts(struct moat_acme_mgr *m, unsigned long *ok, unsigned long *failed)
{
    *ok = m != NULL ? atomic_load(&m->orders_ok) : 0;
    *failed = m != NULL ? atomic_load(&m->orders_failed) : 0;
}

moat_rc moat_acme_mgr_start(struct moat_store *st, struct moat_acme_challenges *tab,
                            const struct moat_acme_mgr_conf *c, struct moat_acme_mgr **out,
                            struct moat_err *err)
{
    *out = NULL;
    struct moat_acme_mgr *m = calloc(1, sizeof(*m));
    struct mconf *mc = mconf_copy(c);
    if (m == NULL || mc == NULL || c->ncas == 0) {
        free(m);
        mconf_free(mc);
        MOAT_FAIL(err, c->ncas == 0 ? MOAT_E_CONFIG : MOAT_E_NOMEM,
                  c->ncas == 0 ? "no ACME CA configured" : "out of memory");
    }
    m->st = st;
    m->tab = tab;
    m->pending = mc;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->vmu, NULL);
    /* The waits are against time(NULL), i.e. the realtime clock. */
    pthread_cond_init(&m->cv, NULL);
    int e = pthread_create(&m->thread, NULL, run, m);
    if (e != 0) {
        mconf_free(mc);
        pthread_mutex_destroy(&m->mu);
        pthread_mutex_destroy(&m->vmu);
        pthread_cond_destroy(&m->cv);
        free(m);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "cannot start the ACME thread");
    }
    *out = m;
    return MOAT_RC_OK;
}

moat_rc moat_acme_mgr_update(struct moat_acme_mgr *m, const struct moat_acme_mgr_conf *c,
                             struct moat_err *err)
{
    struct mconf *mc = c->ncas ? mconf_copy(c) : NULL;
    if (mc == NULL) {
        MOAT_FAIL(err, c->ncas == 0 ? MOAT_E_CONFIG : MOAT_E_NOMEM,
                  c->ncas == 0 ? "no ACME CA configured" : "out of memory");
    }
    pthread_mutex_lock(&m->mu);
    mconf_free(m->pending);
    m->pending = mc;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return MOAT_RC_OK;
}

unsigned long moat_acme_mgr_generation(struct moat_acme_mgr *m)
{
    return m ? atomic_load(&m->generation) : 0;
}

void moat_acme_mgr_stop(struct moat_acme_mgr *m)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    atomic_store(&m->cancel, 1);
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    mconf_free(m->pending);
    mconf_free(m->conf);
    free(m->lin);
    free(m->view);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->vmu);
    pthread_cond_destroy(&m->cv);
    free(m);
}
