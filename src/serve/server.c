/*
 * server.c: the main thread of `moat serve` (see server.h).
 *
 * Signals are blocked in every thread and read here from a signalfd, so handlers never run on
 * a worker's stack and a reload is ordinary code, not async-signal-safe acrobatics. The same
 * loop runs the admin listener, so a reload asked for there is the very same code, on the very
 * same thread, as one asked for by SIGHUP, and can hand its refusal back to the caller.
 */
#include "serve/server.h"
#include "serve/cluster.h"

#include "acme/challenges.h"
#include "acme/manager.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/priv.h"
#include "core/sock.h"
#include "pki/fsutil.h"
#include "serve/admin.h"
#include "serve/cache.h"
#include "serve/guard.h"
#include "serve/report.h"
#include "serve/snapshot.h"
#include "serve/statuspage.h"
#include "serve/worker.h"
#include "state/store.h"
#include "tls/ktls.h"
#include "tls/ticket.h"
#include "tls/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ADDRS 32

moat_rc moat_server_state_dir_path(const struct moat_conf *conf, char **out, struct moat_err *err)
{
    const char *dir = conf->state_dir;
    char buf[PATH_MAX];
    if (dir == NULL) {
        dir = getenv("MOAT_STATE");
    }
    if ((dir == NULL || dir[0] == '\0') && conf->user != NULL) {
        /* Served as another user: that user's home, not root's. */
        struct passwd *pw = getpwnam(conf->user);
        if (pw != NULL && pw->pw_dir != NULL && pw->pw_dir[0] == '/') {
            snprintf(buf, sizeof(buf), "%s/.local/share/moat", pw->pw_dir);
            dir = buf;
        }
    }
    if (dir == NULL || dir[0] == '\0') {
        const char *home = getenv("HOME");
        if (home == NULL || home[0] == '\0') {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (home == NULL) {
            MOAT_FAIL(err, MOAT_E_CONFIG,
                      "no state folder: set MOAT_STATE or HOME, or `state DIR` in the config");
        }
        snprintf(buf, sizeof(buf), "%s/.local/share/moat", home);
        dir = buf;
    }
    *out = strdup(dir);
    if (*out == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

moat_rc moat_server_state_dir(const struct moat_conf *conf, char **out, struct moat_err *err)
{
    MOAT_TRY(moat_server_state_dir_path(conf, out, err));
    moat_rc rc = moat_fs_mkdir_p(*out, 0700, err);
    if (!moat_ok(rc)) {
        free(*out);
        *out = NULL;
        moat_err_ctx(err, "while creating the state folder");
    }
    return rc;
}

/* The state folder holds private keys: it must belong to the user that serves (`owner`; -1:
 * anyone, for a check run by root) and let no one else in. */
static moat_rc check_state_dir(const char *dir, long owner, struct moat_err *err)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_CONFIG, "cannot use the state folder %s", dir);
    }
    if (!S_ISDIR(st.st_mode)) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "the state folder %s is not a folder", dir);
    }
    if (owner >= 0 && st.st_uid != (uid_t)owner) {
        struct passwd *pw = getpwuid((uid_t)owner);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the state folder %s belongs to uid %u, but moat serves as %s (uid %ld): "
                  "chown -R %s: %s",
                  dir, (unsigned)st.st_uid, pw ? pw->pw_name : "?", owner,
                  pw ? pw->pw_name : "USER", dir);
    }
    if ((st.st_mode & 077) != 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the state folder %s is open to other users (mode %04o) and holds private "
                  "keys: chmod 700 %s",
                  dir, (unsigned)(st.st_mode & 07777), dir);
    }
    return MOAT_RC_OK;
}

/* Who serves. As root with `user`: the state folder is made the user's, the effective ids
 * become the user's at once (every file moat makes is then the user's), root comes back only
 * to bind and to read certificates and keys, and goes for good before the workers start. As
 * root without `user`: refused unless asked for (--allow-root, MOAT_ALLOW_ROOT=1). */
static moat_rc take_user(const struct moat_conf *c, unsigned flags, struct moat_err *err)
{
    if (c->user == NULL) {
        if (geteuid() != 0) {
            return MOAT_RC_OK;
        }
        const char *env = getenv("MOAT_ALLOW_ROOT");
        if ((flags & MOAT_SERVE_ALLOW_ROOT) || (env != NULL && strcmp(env, "1") == 0)) {
            moat_log_w("serving as root (--allow-root): `user moat` in the configuration would "
                       "give root up once the ports are bound and the keys read");
            return MOAT_RC_OK;
        }
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "refusing to serve as root: add `user NAME` to %s (moat binds its ports and "
                  "reads its keys as root, then serves as NAME), or start it as an "
                  "unprivileged user with CAP_NET_BIND_SERVICE for ports below 1024 "
                  "(docs/admin.md, \"Privileges\"); --allow-root serves as root anyway",
                  c->path != NULL ? c->path : "a configuration file");
    }
    struct moat_priv p;
    MOAT_TRY(moat_priv_resolve(c->user, c->group, &p, err));
    if (geteuid() == p.uid) {
        return MOAT_RC_OK; /* started as that user already (systemd's User=) */
    }
    if (geteuid() == 0) {
        char *dir = NULL;
        MOAT_TRY(moat_server_state_dir_path(c, &dir, err));
        struct stat st;
        moat_rc rc = MOAT_RC_OK;
        if (stat(dir, &st) != 0 && errno == ENOENT) {
            rc = moat_fs_mkdir_p(dir, 0700, err);
            if (moat_ok(rc) && chown(dir, p.uid, p.gid) != 0) {
                rc = moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__,
                                  "cannot give the state folder %s to user %s", dir, p.user);
            }
        }
        free(dir);
        MOAT_TRY(rc);
    }
    MOAT_TRY(moat_priv_lower(&p, err));
    moat_log_i("serving as user %s, group %s (root only to bind and read keys until the "
               "workers start)",
               p.user, p.group);
    return MOAT_RC_OK;
}

static moat_rc load_conf(const struct moat_conf_source *src, struct moat_conf **out,
                         struct moat_err *err)
{
    if (src->path != NULL) {
        return moat_conf_load(src->path, out, err);
    }
    return src->from_flags(src->arg, out, err);
}

/* Load + build, the way both --check and reload do it. A dry run (--check) writes nothing: the
 * state folder is not created and the local CA only says what it would make. */
static int conf_has_acme(const struct moat_conf *c)
{
    for (size_t i = 0; i < c->nsites; i++) {
        if (c->sites[i].acme) {
            return 1;
        }
    }
    return 0;
}

/* How long a solver waits after giving its answer before the CA is told to check: the other
 * nodes have it within milliseconds (pub/sub); this leaves room for a busy Redis. */
#define CHALLENGE_SETTLE_MS 500

/* An ACME answer this node's solvers gave or took back, for the other nodes: "+ ALPN IDENT
 * TOKEN KEYAUTH" or "- ALPN IDENT TOKEN" (none of them has spaces). */
static void challenge_here(void *data, int added, int alpn, const char *ident, const char *token,
                           const char *key_authz)
{
    struct moat_server *srv = data;
    char ev[1024];
    int n = snprintf(ev, sizeof(ev), "%c %d %s %s %s", added ? '+' : '-', alpn, ident, token,
                     added ? key_authz : "");
    if (n > 0 && (size_t)n < sizeof(ev)) {
        moat_cluster_bus_post(srv->bus, "challenge", ev, (size_t)n);
    }
}

/* A PURGE this node took, for the other nodes (a worker calls it; the bus never blocks). */
static void purged_here(void *data, const char *key, size_t klen)
{
    struct moat_server *srv = data;
    moat_cluster_bus_post(srv->bus, "purge", key, klen);
}

static moat_rc build(const struct moat_conf_source *src, struct moat_tls_tickets *tickets,
                     const char *state_dir_in, int quiet, int dry_run, struct moat_server *srv,
                     struct moat_snapshot **out, struct moat_err *err)
{
    struct moat_conf *conf = NULL;
    MOAT_TRY(load_conf(src, &conf, err));
    char *state_dir = NULL;
    if (state_dir_in == NULL) {
        moat_rc rc = dry_run ? moat_server_state_dir_path(conf, &state_dir, err)
                             : moat_server_state_dir(conf, &state_dir, err);
        if (!moat_ok(rc)) {
            moat_conf_free(conf);
            return rc;
        }
    }
    /* The challenge table exists from the first configuration with a `tls acme` site on (a
     * reload may bring one), and then lives as long as the server. */
    if (srv != NULL && srv->acme == NULL && (conf_has_acme(conf) || conf->cluster != NULL)) {
        moat_rc rc = moat_acme_challenges_new(&srv->acme, err);
        if (!moat_ok(rc)) {
            moat_conf_free(conf);
            free(state_dir);
            return rc;
        }
        if (conf->cluster != NULL) {
            /* In a cluster the CA may check any node: the answers go to all of them. */
            moat_acme_challenges_on_change(srv->acme, challenge_here, srv, CHALLENGE_SETTLE_MS);
        }
    }
    /* The limits' table lives as long as the server; its size is the first configuration's. */
    if (srv != NULL && srv->guard == NULL) {
        moat_rc rc = moat_guard_new((size_t)conf->addr_table, &srv->guard, err);
        if (!moat_ok(rc)) {
            moat_conf_free(conf);
            free(state_dir);
            return rc;
        }
    } else if (srv != NULL && !moat_guard_slots_are(srv->guard, (size_t)conf->addr_table)) {
        moat_log_w("limits.address_table changed: that takes a restart (the table keeps its "
                   "size; the other limits are reloaded)");
    }
    /* The cache's store too; a reload takes its new bounds. */
    if (srv != NULL && srv->cache == NULL) {
        moat_rc rc = moat_cache_new(conf->cache_memory, conf->cache_max_object, &srv->cache, err);
        if (moat_ok(rc)) {
            moat_cache_on_purge(srv->cache, purged_here, srv);
        }
        if (moat_ok(rc) && conf->cache_disk != NULL) {
            rc = moat_cache_disk_open(srv->cache, conf->cache_disk, conf->cache_disk_size, err);
        }
        if (!moat_ok(rc)) {
            moat_conf_free(conf);
            free(state_dir);
            return rc;
        }
    } else if (srv != NULL) {
        moat_cache_configure(srv->cache, conf);
    }
    struct moat_snapshot_env env = {
        .tickets = tickets,
        .state_dir = state_dir_in ? state_dir_in : state_dir,
        .quiet = quiet,
        .dry_run = dry_run,
        .store = srv != NULL ? srv->store : NULL,
        .acme = srv != NULL && conf_has_acme(conf) ? srv->acme : NULL,
        .guard = srv != NULL ? srv->guard : NULL,
        .cache = srv != NULL ? srv->cache : NULL,
    };
    moat_rc rc = moat_snapshot_build(conf, &env, out, err);
    free(state_dir);
    return rc;
}

moat_rc moat_server_check(const struct moat_conf_source *src, struct moat_err *err)
{
    struct moat_snapshot *s = NULL;
    /* Not quiet: warnings (a key readable by others, a name the certificate lacks, an issuer
     * moat cannot find) are what a check is for. A dry run: a check writes nothing. */
    MOAT_TRY(build(src, NULL, NULL, 0, 1, NULL, &s, err));
    /* The state folder as serving would find it, when it is there already. */
    char *dir = NULL;
    struct stat st;
    moat_rc rc = moat_server_state_dir_path(s->conf, &dir, err);
    if (moat_ok(rc) && stat(dir, &st) == 0) {
        struct passwd *pw = s->conf->user != NULL ? getpwnam(s->conf->user) : NULL;
        long owner = pw != NULL ? (long)pw->pw_uid : geteuid() == 0 ? -1 : (long)geteuid();
        struct moat_err w = {0};
        char msg[700];
        if (!moat_ok(check_state_dir(dir, owner, &w))) {
            moat_log_w("%s (serve would refuse to start)", moat_err_str(&w, msg, sizeof(msg)));
        }
    }
    free(dir);
    moat_snapshot_unref(s);
    return rc;
}

static moat_rc open_access_log(struct moat_server *srv, const struct moat_conf *conf,
                               struct moat_err *err)
{
    srv->alog.fd = -1;
    srv->alog.format = conf->access_format;
    if (conf->access_log == NULL || strcmp(conf->access_log, "off") == 0) {
        return MOAT_RC_OK;
    }
    if (strcmp(conf->access_log, "stdout") == 0) {
        srv->alog.fd = 1;
        return MOAT_RC_OK;
    }
    srv->alog.fd = open(conf->access_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (srv->alog.fd < 0) {
        moat_err_where(err, "%s", conf->access_log);
        MOAT_FAIL_SYS(err, MOAT_E_CONFIG, "cannot open the access log");
    }
    srv->alog.owned = 1;
    srv->alog_path = strdup(conf->access_log);
    if (srv->alog_path == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

/* SIGUSR1: logrotate moved the files; open them again by name. dup2 puts the new file under
 * the old descriptor's number, so the workers' writes never see a closed one. */
static void reopen_logs(struct moat_server *srv)
{
    struct moat_err e = {0};
    char msg[800];
    if (!moat_ok(moat_log_reopen(&e))) {
        moat_log_e("%s", moat_err_str(&e, msg, sizeof(msg)));
    }
    if (srv->alog_path != NULL) {
        int fd = open(srv->alog_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0 || dup2(fd, srv->alog.fd) < 0) {
            moat_log_e("cannot reopen the access log %s (still writing the old file): %s",
                       srv->alog_path, strerror(errno));
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    moat_log_i("SIGUSR1: log files reopened");
}

/* Bind every listen address once per worker (SO_REUSEPORT), before any thread starts, so a
 * port already in use is refused at start with a clear message. */
static moat_rc bind_all(struct moat_server *srv, const struct moat_conf *conf, struct moat_err *err)
{
    struct moat_addr addrs[MAX_ADDRS];
    size_t naddrs = 0;
    int tls_flags[MAX_ADDRS];
    const char *specs[MAX_ADDRS];
    size_t nstream = 0;
    for (size_t i = 0; i < conf->nstreams; i++) {
        nstream += conf->streams[i].nlisten;
    }
    for (size_t i = 0; i <= conf->nlisten + nstream; i++) {
        const char *spec = i < conf->nlisten ? conf->listen[i] : conf->redirect_listen;
        int kind = i < conf->nlisten;
        if (i > conf->nlisten) {
            /* the streams' addresses, in order */
            size_t k = i - conf->nlisten - 1, s = 0;
            while (k >= conf->streams[s].nlisten) {
                k -= conf->streams[s++].nlisten;
            }
            spec = conf->streams[s].listen[k];
            kind = MOAT_LISTENER_STREAM;
        }
        if (spec == NULL) {
            continue;
        }
        size_t n = 0;
        if (naddrs + 2 > MAX_ADDRS) {
            MOAT_FAIL(err, MOAT_E_CONFIG, "too many listen addresses");
        }
        MOAT_TRY(moat_addr_resolve(spec, addrs + naddrs, MAX_ADDRS - naddrs, &n, err));
        for (size_t k = 0; k < n; k++) {
            tls_flags[naddrs + k] = kind;
            specs[naddrs + k] = spec;
        }
        naddrs += n;
    }
    srv->https_port = 443;
    for (size_t a = 0; a < naddrs; a++) {
        if (tls_flags[a] == 1) {
            srv->https_port = addrs[a].port;
            break;
        }
    }
    for (unsigned w = 0; w < srv->nworkers; w++) {
        srv->workers[w].home.https_port = srv->https_port; /* before the threads start */
    }
    for (size_t a = 0; a < naddrs; a++) {
        for (unsigned w = 0; w < srv->nworkers; w++) {
            int fd;
            moat_rc rc = moat_sock_listen(&addrs[a], 4096, &fd, err);
            if (!moat_ok(rc)) {
                /* "localhost" also means ::1, which some containers lack: not fatal when
                 * another address of the same spec is up. */
                if (addrs[a].ss.ss_family == AF_INET6 && err != NULL &&
                    err->sys_errno == EADDRNOTAVAIL && a > 0) {
                    moat_log_w("skipping %s: this machine has no such address", addrs[a].text);
                    break;
                }
                return rc;
            }
            if (tls_flags[a] != MOAT_LISTENER_STREAM) {
                /* HTTP and TLS clients speak first. A stream's origin may not (SMTP, FTP):
                 * its listener wakes at once. One second bounds how long a silent client
                 * stays the kernel's alone; after it, timeouts.handshake runs as usual. */
                moat_sock_defer_accept(fd, 1);
            }
            MOAT_TRY(moat_worker_add_listener(&srv->workers[w], fd, tls_flags[a], specs[a], err));
        }
        moat_log_i("listening on %s (%s)", addrs[a].text,
                   tls_flags[a] == MOAT_LISTENER_STREAM ? "stream"
                   : tls_flags[a]                       ? "https"
                                                        : "http, redirecting to https");
    }
    return MOAT_RC_OK;
}

/* Start, restart or stop the cluster thread for conf's cluster block. A thread that cannot
 * start is a refusal (at start, or of a reload: the old thread goes on). */
static moat_rc cluster_follow(struct moat_server *srv, const struct moat_conf *conf,
                              struct moat_err *err)
{
    const struct moat_conf_cluster *cc = conf->cluster;
    if ((cc == NULL && srv->cluster == NULL) ||
        moat_cluster_same(srv->cluster, cc, conf->ticket_rotate_s)) {
        return MOAT_RC_OK;
    }
    struct moat_cluster *fresh = NULL;
    if (cc != NULL) {
        if (!conf->tickets) {
            moat_log_w("%s: tls { tickets off }: the cluster has no ticket keys to share",
                       cc->where);
        }
        MOAT_TRY(moat_cluster_start(cc, srv->tickets, conf->ticket_rotate_s, srv->bus, srv->cache,
                                    srv->acme, srv->guard, &fresh, err));
    }
    moat_cluster_stop(srv->cluster);
    srv->cluster = fresh;
    return MOAT_RC_OK;
}

/* Start the ACME thread for conf's `tls acme` sites, or give it the new configuration. */
static moat_rc acme_follow(struct moat_server *srv, const struct moat_conf *conf,
                           struct moat_err *err)
{
    if (!conf_has_acme(conf) && srv->acme_mgr == NULL) {
        return MOAT_RC_OK;
    }
    const struct moat_conf_acme *a = &conf->acme;
    struct moat_acme_job *jobs = calloc(conf->nsites ? conf->nsites : 1, sizeof(*jobs));
    if (jobs == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    size_t njobs = 0;
    for (size_t i = 0; i < conf->nsites; i++) {
        const struct moat_conf_site *cs = &conf->sites[i];
        if (cs->acme) {
            jobs[njobs++] = (struct moat_acme_job){.names = (const char *const *)cs->names,
                                                   .nnames = cs->nnames,
                                                   .kinds = cs->acme_kinds};
        }
    }
    const char *dflt[] = {"production"};
    unsigned http_port = 0;
    if (conf->redirect_listen != NULL) {
        char host[128];
        uint16_t port = 0;
        if (moat_ok(moat_conf_listen_split(conf->redirect_listen, host, sizeof(host), &port))) {
            http_port = port;
        }
    }
    struct moat_acme_mgr_conf mc = {
        .cas = a->ncas ? (const char *const *)a->cas : dflt,
        .ncas = a->ncas ? a->ncas : 1,
        .ca_bundle = a->ca_bundle,
        .emails = (const char *const *)a->emails,
        .nemails = a->nemails,
        .agree_tos = a->agree_tos,
        .eab_kid = a->eab_kid,
        .eab_hmac = a->eab_hmac,
        .challenges = (const char *const *)a->challenges,
        .nchallenges = a->nchallenges,
        .preferred_chain = a->preferred_chain,
        .profile = a->profile,
        .dns = {.server = a->dns_server,
                .zone = a->dns_zone,
                .tsig_name = a->dns_key_name,
                .tsig_alg = a->dns_key_alg,
                .tsig_secret = a->dns_key_secret,
                .hook = a->dns_hook,
                .check = (const char *const *)a->dns_check,
                .ncheck = a->ndns_check},
        .resolver = a->resolver,
        .no_preflight = a->preflight < 0,
        .http_port = http_port,
        .retry_base_s = (unsigned)a->retry_s,
        .retry_max_s = (unsigned)a->retry_max_s,
        .jobs = jobs,
        .njobs = njobs,
    };
    moat_rc rc = srv->acme_mgr != NULL
                     ? moat_acme_mgr_update(srv->acme_mgr, &mc, err)
                     : moat_acme_mgr_start(srv->store, srv->acme, &mc, &srv->acme_mgr, err);
    free(jobs);
    return rc;
}

/* At stop: what the limits refused while the server ran (the counts; the log lines were
 * rate-limited). */
static void log_refusals(struct moat_guard *g)
{
    if (g == NULL) {
        return;
    }
    struct moat_guard_stats st;
    moat_guard_stats(g, &st);
    char line[600];
    size_t at = 0;
    for (int k = MOAT_GUARD_OK + 1; k < MOAT_GUARD_NKINDS; k++) {
        if (st.refused[k] > 0 && at < sizeof(line)) {
            int n = snprintf(line + at, sizeof(line) - at, "%s%s %llu", at > 0 ? ", " : "",
                             moat_guard_kind_name((enum moat_guard_kind)k), st.refused[k]);
            at += n > 0 ? (size_t)n : 0;
        }
    }
    if (at > 0) {
        moat_log(MOAT_LVL_INFO, 0,
                 "limits refused: %s (table: %llu evicted, %llu let through "
                 "full)",
                 line, st.evicted, st.overflow);
    }
}

static void publish(struct moat_server *srv, struct moat_snapshot *s)
{
    for (unsigned w = 0; w < srv->nworkers; w++) {
        moat_worker_publish(&srv->workers[w], moat_snapshot_ref(s));
    }
    moat_snapshot_unref(srv->snap);
    srv->snap = s;
}

/* Tell a service manager (Type=notify) that moat serves, and what. */
static void notify_ready(const struct moat_server *srv)
{
    char msg[200];
    snprintf(msg, sizeof(msg),
             "READY=1\nMAINPID=%ld\nSTATUS=serving %zu site(s), configuration generation %llu",
             (long)getpid(), srv->snap->nsites, srv->snap->generation);
    moat_notify(msg);
}

/* Reload the configuration; on refusal `err` (may be NULL) says why, and the server goes on
 * with what it had. */
static moat_rc reload(struct moat_server *srv, const char *why, struct moat_err *err)
{
    struct moat_err e = {0};
    struct moat_snapshot *s = NULL;
    moat_notify_reloading();
    moat_rc rc = build(&srv->src, srv->tickets, srv->state_dir, 0, 0, srv, &s, &e);
    if (moat_ok(rc)) {
        rc = acme_follow(srv, s->conf, &e);
    }
    if (moat_ok(rc)) {
        rc = cluster_follow(srv, s->conf, &e);
    }
    if (!moat_ok(rc)) {
        moat_err_str(&e, srv->last_refusal, sizeof(srv->last_refusal));
        moat_log_e("%s refused, still serving the previous configuration: %s", why,
                   srv->last_refusal);
        srv->reloads_refused++;
        moat_snapshot_unref(s);
        moat_notify("READY=1\nSTATUS=the last reload was refused; serving the previous "
                    "configuration");
        if (err != NULL) {
            *err = e;
        }
        return rc;
    }
    const char *was = srv->snap->conf->user ? srv->snap->conf->user : "";
    if (strcmp(s->conf->user ? s->conf->user : "", was) != 0) {
        moat_log_w("the user setting changed: that takes a restart (still serving as %s)",
                   moat_priv_user() ? moat_priv_user() : "the user that started moat");
    }
    int redis_store = srv->store != NULL && strcmp(srv->store->ops->name, "redis") == 0;
    if ((s->conf->cluster != NULL) != redis_store) {
        moat_log_w("the cluster block %s: the ACME store (%s) changes at a restart (ticket keys, "
                   "purges, reloads and limits follow now)",
                   s->conf->cluster != NULL ? "was added" : "was removed",
                   redis_store ? "Redis" : "the state folder");
    }
    if (s->conf->nlisten != srv->snap->conf->nlisten) {
        moat_log_w("listen addresses changed: that takes a restart (the rest is reloaded)");
    }
    const char *admin = s->conf->admin != NULL ? s->conf->admin : "";
    if (strcmp(admin, srv->admin_spec) != 0) {
        moat_log_w("the admin setting changed: that takes a restart (the admin interface stays "
                   "%s%s)",
                   srv->admin != NULL ? "on " : "", moat_admin_where(srv->admin));
    } else if (srv->admin != NULL && s->conf->admin_token != NULL) {
        moat_admin_set_token(srv->admin, s->conf->admin_token); /* a token rotates by reload */
    }
    moat_snapshot_inherit(s, srv->snap);
    publish(srv, s);
    srv->reloads++;
    moat_log_i("%s: now serving configuration generation %llu", why, s->generation);
    notify_ready(srv);
    return MOAT_RC_OK;
}

/* A stream's local certificate wants renewing (by a reload). */
static int stream_due(const struct moat_snapshot *s, time_t now)
{
    time_t at = moat_snapshot_next_stream_renewal(s);
    return at != 0 && now >= at;
}

static void print_banner(const struct moat_server *srv, const struct moat_snapshot *s, int demo)
{
    const struct moat_conf *c = s->conf;
    for (size_t i = 0; i < c->nlisten; i++) {
        char host[80];
        uint16_t port = 0;
        if (!moat_ok(moat_conf_listen_split(c->listen[i], host, sizeof(host), &port))) {
            continue;
        }
        const char *shown =
            host[0] == '\0' || strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0
                ? "localhost"
                : host;
        fprintf(stderr, "moat: serving https://%s:%u/ with %zu site(s), %u worker(s)\n", shown,
                port, c->nsites, srv->nworkers);
    }
    int local = 0;
    for (size_t i = 0; i < s->nsites; i++) {
        local |= s->sites[i].local_cert;
    }
    if (local || demo) {
        fprintf(stderr,
                "moat: certificates come from moat's local CA: %s/ca/root.pem\n"
                "      trust it (system store + browsers): moat trust install --ca %s/ca "
                "(system store: as root)\n"
                "      or for curl only: curl --cacert %s/ca/root.pem https://localhost:%d/\n",
                srv->state_dir, srv->state_dir, srv->state_dir, srv->https_port);
    }
    fflush(stderr);
}

static struct moat_report_src report_src(struct moat_server *srv);

/* A reload nobody waits for: its refusal is in the log (and the admin's status). */
static void reload_logged(struct moat_server *srv, const char *why)
{
    if (!moat_ok(reload(srv, why, NULL))) {
        return; /* logged and counted by reload */
    }
}

/* Once a second: ticket keys, certificates the ACME thread installed, renewals, CRLs. */
static void on_tick(struct moat_timer *t)
{
    struct moat_server *srv = t->data;
    time_t now = time(NULL);
    if (srv->tickets != NULL) {
        moat_tls_tickets_tick(srv->tickets, now);
    }
    if (moat_cluster_take_reload(srv->cluster)) {
        reload_logged(srv, "reload (asked by another node of the cluster)");
    }
    unsigned long gen = moat_acme_mgr_generation(srv->acme_mgr);
    if (gen != srv->acme_gen) {
        /* The ACME thread installed a certificate: swap it in, no reload. */
        srv->acme_gen = gen;
        struct moat_err e = {0};
        if (!moat_ok(moat_snapshot_acme_refresh(srv->snap, &e))) {
            char msg[700];
            moat_log_w("installing an ACME certificate failed: %s",
                       moat_err_str(&e, msg, sizeof(msg)));
        }
    }
    if (srv->snap->crl_refresh_at != 0 && now >= srv->snap->crl_refresh_at &&
        now >= srv->crl_check) {
        srv->crl_check = now + 60; /* retry each minute if it fails */
        reload_logged(srv, "refreshing the local CA's published CRL");
    } else if (stream_due(srv->snap, now) && now >= srv->renew_check) {
        srv->renew_check = now + 60; /* a reload that fails is tried again in a minute */
        reload_logged(srv, "renewing a stream's local certificate");
    } else {
        time_t due = moat_snapshot_next_renewal(srv->snap);
        if (due != 0 && now >= due && now >= srv->renew_check) {
            /* In place: new handshakes get the new certificate, nothing reloads. */
            struct moat_err e = {0};
            if (!moat_ok(moat_snapshot_renew_certs(srv->snap, srv->state_dir, now, &e))) {
                char msg[700];
                moat_log_w("renewing a local certificate failed (trying again in a minute): %s",
                           moat_err_str(&e, msg, sizeof(msg)));
                srv->renew_check = now + 60;
            }
        }
    }
    if (srv->mx != NULL) {
        struct moat_report_src r = report_src(srv);
        moat_page_sample(&srv->hist, &r, now);
    }
    if (!moat_ok(moat_timer_arm(&srv->loop.timers, &srv->tick, srv->loop.now_ms + 1000))) {
        moat_log_e("out of memory re-arming the main thread's tick; stopping");
        srv->loop.stop = 1;
    }
}

static void begin_stop(struct moat_server *srv, const char *why)
{
    moat_notify("STOPPING=1\nSTATUS=draining connections");
    moat_log_i("%s: draining connections (up to %llu ms), then exiting", why,
               (unsigned long long)srv->snap->conf->drain_timeout_ms);
    srv->loop.stop = 1;
}

static void on_signal(struct moat_watch *w, uint32_t events)
{
    struct moat_server *srv = w->data;
    struct signalfd_siginfo si;
    while (read(srv->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            reload_logged(srv, "reload (SIGHUP)");
        } else if (si.ssi_signo == SIGUSR1) {
            reopen_logs(srv);
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            begin_stop(srv, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        }
    }
}

/* ---- the admin interface ---------------------------------------------------------------- */

static struct moat_report_src report_src(struct moat_server *srv)
{
    return (struct moat_report_src){.snap = srv->snap,
                                    .mx = srv->mx,
                                    .nworkers = srv->nworkers,
                                    .guard = srv->guard,
                                    .cache = srv->cache,
                                    .acme = srv->acme_mgr,
                                    .cluster = srv->cluster,
                                    .started = srv->started,
                                    .config = srv->src.path,
                                    .state_dir = srv->state_dir,
                                    .admin = moat_admin_where(srv->admin),
                                    .reloads = srv->reloads,
                                    .refused = srv->reloads_refused,
                                    .last_refusal = srv->last_refusal};
}

/* A refused reload's answer: its words (escaped) and the generation still served. */
static moat_rc json_refusal(struct moat_buf *out, const char *text, unsigned long long gen)
{
    json_t *o = json_object();
    if (o == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    json_object_set_new(o, "error", json_string(text));
    json_object_set_new(o, "generation", json_integer((json_int_t)gen));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    moat_rc rc = s != NULL ? moat_buf_printf(out, "%s\n", s) : moat_rc_of(MOAT_E_NOMEM);
    free(s);
    return rc;
}

static void admin_stop(void *arg)
{
    begin_stop(arg, "stop (asked through the admin interface)");
}

static void admin_handle(void *arg, const struct moat_admin_req *rq, struct moat_admin_answer *an)
{
    static const struct {
        const char *path;
        int post; /* 1: POST only; 0: GET and HEAD */
    } paths[] = {{"/", 0},        {"/status", 0}, {"/certs", 0}, {"/upstreams", 0},
                 {"/metrics", 0}, {"/reload", 1}, {"/stop", 1}};
    struct moat_server *srv = arg;
    size_t i = 0;
    while (i < sizeof(paths) / sizeof(paths[0]) &&
           !moat_slice_eq(rq->path, moat_slice_cstr(paths[i].path))) {
        i++;
    }
    moat_rc rc = MOAT_RC_OK;
    if (i == sizeof(paths) / sizeof(paths[0])) {
        an->status = 404;
        rc = moat_buf_printf(an->body, "{\"error\":\"no such admin path (known: /status, "
                                       "/certs, /upstreams, /metrics, POST /reload, POST "
                                       "/stop)\"}\n");
    } else if (paths[i].post ? rq->method != MOAT_HTTP_M_POST
                             : rq->method != MOAT_HTTP_M_GET && rq->method != MOAT_HTTP_M_HEAD) {
        an->status = 405;
        an->allow = paths[i].post ? "POST" : "GET, HEAD";
        rc = moat_buf_printf(an->body, "{\"error\":\"%s takes %s\"}\n", paths[i].path,
                             paths[i].post ? "POST" : "GET or HEAD");
    } else {
        struct moat_report_src r = report_src(srv);
        const char *p = paths[i].path;
        if (strcmp(p, "/") == 0) {
            an->type = "text/html; charset=utf-8";
            an->csp = moat_page_csp;
            rc = moat_page_render(&r, &srv->hist, an->body);
        } else if (strcmp(p, "/status") == 0) {
            rc = moat_report_status(&r, an->body);
        } else if (strcmp(p, "/certs") == 0) {
            rc = moat_report_certs(&r, an->body);
        } else if (strcmp(p, "/upstreams") == 0) {
            rc = moat_report_upstreams(&r, an->body);
        } else if (strcmp(p, "/metrics") == 0) {
            an->type = "text/plain; version=0.0.4; charset=utf-8";
            rc = moat_report_metrics(&r, an->body);
        } else if (strcmp(p, "/reload") == 0) {
            struct moat_err e = {0};
            int everywhere = moat_slice_eq(rq->query, moat_slice_cstr("cluster=1"));
            if (everywhere && srv->cluster == NULL) {
                an->status = 409;
                rc = moat_buf_printf(an->body, "{\"error\":\"this node is in no cluster (a "
                                               "cluster { } block), so there is no other node "
                                               "to reload\"}\n");
            } else if (moat_ok(reload(srv, "reload (admin interface)", &e))) {
                if (everywhere) {
                    /* After this node's own reload took: the others read their files too. */
                    moat_cluster_bus_post(srv->bus, "reload", "", 0);
                }
                rc = moat_buf_printf(an->body,
                                     "{\"reloaded\":true,\"generation\":%llu,\"cluster\":%s}\n",
                                     srv->snap->generation, everywhere ? "true" : "false");
            } else {
                an->status = 422;
                char msg[1024];
                rc = json_refusal(an->body, moat_err_str(&e, msg, sizeof(msg)),
                                  srv->snap->generation);
            }
        } else {
            an->then_stop = 1;
            rc = moat_buf_printf(an->body, "{\"stopping\":true,\"pid\":%ld,\"drain_ms\":%llu}\n",
                                 (long)getpid(),
                                 (unsigned long long)srv->snap->conf->drain_timeout_ms);
        }
    }
    if (!moat_ok(rc)) {
        moat_buf_clear(an->body);
        an->status = 500;
        an->type = "application/json";
        an->then_stop = 0;
    }
}

/* The admin listener, as the configuration says. The default socket is a convenience: when it
 * cannot be had (a path too long, another moat on the same state folder) the server says so
 * and serves without it; one the file names is required. */
static moat_rc open_admin(struct moat_server *srv, const struct moat_conf *conf,
                          struct moat_err *err)
{
    srv->admin_spec = strdup(conf->admin != NULL ? conf->admin : "");
    if (srv->admin_spec == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (conf->admin != NULL && strcmp(conf->admin, "off") == 0) {
        return MOAT_RC_OK;
    }
    char dflt[PATH_MAX + 8];
    const char *spec = conf->admin;
    if (spec == NULL) {
        snprintf(dflt, sizeof(dflt), "unix:%s/admin.sock", srv->state_dir);
        spec = dflt;
    }
    struct moat_admin_opts o = {.spec = spec,
                                .token = conf->admin_token,
                                .loop = &srv->loop,
                                .handle = admin_handle,
                                .stop = admin_stop,
                                .arg = srv};
    struct moat_err e = {0};
    moat_rc rc = moat_admin_open(&o, &srv->admin, &e);
    if (!moat_ok(rc) && conf->admin == NULL) {
        char msg[800];
        moat_log_w("no admin interface (moat status, reload, stop, metrics): %s",
                   moat_err_str(&e, msg, sizeof(msg)));
        return MOAT_RC_OK;
    }
    if (!moat_ok(rc)) {
        *err = e;
        if (err->where[0] == '\0' && conf->path != NULL) {
            moat_err_ctx(err, "opening the admin listener of %s", conf->path);
        }
        return rc;
    }
    moat_log(MOAT_LVL_INFO, 0, "admin interface on %s", moat_admin_where(srv->admin));
    return MOAT_RC_OK;
}

moat_rc moat_server_run(const struct moat_conf_source *src, unsigned flags, struct moat_err *err)
{
    struct moat_server srv;
    memset(&srv, 0, sizeof(srv));
    srv.src = *src;
    srv.alog.fd = -1;
    pthread_mutex_init(&srv.alog.mu, NULL);
    moat_rc rc;

    /* Block the signals we handle before any thread exists, so every thread inherits it. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    struct moat_conf *first = NULL;
    rc = load_conf(src, &first, err);
    if (!moat_ok(rc)) {
        return rc;
    }
    srv.sigfd = -1;
    moat_timer_init(&srv.tick, on_tick, &srv);
    rc = moat_loop_init(&srv.loop, err);
    if (moat_ok(rc)) {
        srv.sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
        srv.sigw = (struct moat_watch){.fd = srv.sigfd, .cb = on_signal, .data = &srv};
        rc = srv.sigfd >= 0 ? moat_loop_add(&srv.loop, &srv.sigw, EPOLLIN)
                            : moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__,
                                           "cannot read signals (signalfd)");
    }
    moat_log_set_level((enum moat_log_lvl)first->log_level);
    if (moat_ok(rc)) {
        rc = take_user(first, flags, err);
    }
    if (moat_ok(rc)) {
        rc = moat_log_open(first->error_log, err);
    }
    if (moat_ok(rc)) {
        rc = moat_server_state_dir(first, &srv.state_dir, err);
    }
    if (moat_ok(rc)) {
        rc = check_state_dir(srv.state_dir, (long)geteuid(), err);
    }
    if (moat_ok(rc)) {
        rc = moat_tls_tickets_new(first->ticket_rotate_s, &srv.tickets, err);
    }
    if (moat_ok(rc)) {
        /* Before any worker: they post a PURGE to it without a lock (serve/cluster.h). */
        rc = moat_cluster_bus_new(&srv.bus, err);
    }
    if (moat_ok(rc)) {
        /* Before the workers start: their connections read the choice without a lock. */
        char why[160];
        int ktls = first->ktls && moat_ktls_available(why, sizeof(why));
        moat_tls_transport_use_ktls(ktls);
        moat_log(MOAT_LVL_INFO, 0, "kTLS: %s (%s)", ktls ? "on for sending" : "not used",
                 first->ktls ? why : "tls { ktls on } would ask the kernel");
    }
    if (moat_ok(rc)) {
        rc = open_access_log(&srv, first, err);
    }
    unsigned nworkers = first->workers;
    if (nworkers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = n > 0 ? (unsigned)n : 1;
    }
    if (moat_ok(rc) && first->cluster != NULL) {
        /* ACME accounts, keys and certificates are the cluster's: one order per name. */
        rc = moat_cluster_store_new(first->cluster, &srv.store, err);
    } else if (moat_ok(rc)) {
        rc = moat_store_folder_new(srv.state_dir, &srv.store, err);
    }
    moat_conf_free(first);
    if (moat_ok(rc)) {
        rc = build(src, srv.tickets, srv.state_dir, 0, 0, &srv, &srv.snap, err);
    }
    if (moat_ok(rc)) {
        srv.workers = calloc(nworkers, sizeof(*srv.workers));
        rc = srv.workers ? MOAT_RC_OK
                         : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    /* Descriptors: take the hard limit (a server's connections and cached files need more than
     * the 1024 a shell gives), and let cached files have at most a quarter of them, so a wide
     * tree of files never starves accept(). */
    struct rlimit rl;
    size_t files_cap = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
            struct rlimit up = {.rlim_cur = want, .rlim_max = rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
                rl.rlim_cur = want;
            }
        }
        files_cap = (size_t)(rl.rlim_cur / 4 / (nworkers ? nworkers : 1));
        if (srv.guard != NULL) {
            moat_guard_set_fd_limit(srv.guard, (uint64_t)rl.rlim_cur);
        }
    }
    unsigned inited = 0;
    for (unsigned w = 0; moat_ok(rc) && w < nworkers; w++) {
        rc = moat_worker_init(&srv.workers[w], w + 1, srv.alog.fd >= 0 ? &srv.alog : NULL,
                              srv.https_port, files_cap, srv.snap, err);
        inited = w + 1;
    }
    srv.nworkers = inited;
    for (unsigned w = 0; w < srv.nworkers; w++) {
        srv.workers[w].siblings = srv.workers; /* before the threads start */
        srv.workers[w].nsiblings = srv.nworkers;
    }
    if (moat_ok(rc)) {
        int raised = moat_priv_raise(); /* ports below 1024 */
        rc = bind_all(&srv, srv.snap->conf, err);
        moat_priv_restore(raised);
    }
    if (moat_ok(rc)) {
        srv.mx = calloc(srv.nworkers ? srv.nworkers : 1, sizeof(*srv.mx));
        rc = srv.mx ? MOAT_RC_OK
                    : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        for (unsigned w = 0; srv.mx != NULL && w < srv.nworkers; w++) {
            srv.mx[w] = srv.workers[w].mx;
        }
    }
    if (moat_ok(rc)) {
        /* Before the threads: nothing else makes files while the socket is set up. */
        rc = open_admin(&srv, srv.snap->conf, err);
    }
    if (moat_ok(rc)) {
        /* Before the first thread: no worker, and nothing a request reaches, ever holds root. */
        rc = moat_priv_drop(err);
    }
    unsigned started = 0;
    for (unsigned w = 0; moat_ok(rc) && w < srv.nworkers; w++) {
        rc = moat_worker_start(&srv.workers[w], err);
        started += moat_ok(rc);
    }
    if (moat_ok(rc)) {
        /* After the listeners: the first challenge may come as soon as the order exists. */
        rc = acme_follow(&srv, srv.snap->conf, err);
    }
    if (moat_ok(rc)) {
        rc = cluster_follow(&srv, srv.snap->conf, err);
    }
    if (moat_ok(rc)) {
        print_banner(&srv, srv.snap, (flags & MOAT_SERVE_DEMO) != 0);
        srv.started = time(NULL);
        notify_ready(&srv);
        rc = moat_timer_arm(&srv.loop.timers, &srv.tick, srv.loop.now_ms + 1000);
    }
    if (moat_ok(rc)) {
        moat_loop_run(&srv.loop);
    }
    /* No admin requests while draining: `moat stop` waits for the process instead. */
    moat_admin_free(srv.admin);
    srv.admin = NULL;
    moat_acme_mgr_stop(srv.acme_mgr);
    moat_cluster_stop(srv.cluster);
    srv.cluster = NULL;
    for (unsigned w = 0; w < started; w++) {
        moat_worker_request_stop(&srv.workers[w]);
    }
    for (unsigned w = 0; w < started; w++) {
        moat_worker_join(&srv.workers[w]);
    }
    for (unsigned w = 0; w < srv.nworkers; w++) {
        moat_worker_clear(&srv.workers[w]);
    }
    free(srv.workers);
    moat_cluster_bus_free(srv.bus); /* after the workers: they post to it */
    moat_snapshot_unref(srv.snap);
    moat_acme_challenges_free(srv.acme);
    log_refusals(srv.guard);
    if (srv.cache != NULL) {
        struct moat_cache_stats cs;
        moat_cache_stats(srv.cache, &cs);
        if (cs.hits + cs.misses > 0) {
            moat_log(MOAT_LVL_INFO, 0,
                     "cache: %llu hits, %llu misses, %llu stored, %llu evicted, %llu purged, "
                     "%llu invalidated; %llu entries, %llu bytes at stop",
                     cs.hits, cs.misses, cs.stored, cs.evicted, cs.purged, cs.invalidated,
                     (unsigned long long)cs.entries, (unsigned long long)cs.bytes);
        }
    }
    moat_guard_free(srv.guard);
    moat_cache_free(srv.cache);
    moat_store_free(srv.store);
    moat_tls_tickets_free(srv.tickets);
    moat_admin_free(srv.admin);
    free(srv.admin_spec);
    free(srv.alog_path);
    free(srv.mx);
    if (srv.sigfd >= 0) {
        close(srv.sigfd);
    }
    moat_loop_clear(&srv.loop);
    if (srv.alog.owned) {
        close(srv.alog.fd);
    }
    free(srv.state_dir);
    pthread_mutex_destroy(&srv.alog.mu);
    return rc;
}
