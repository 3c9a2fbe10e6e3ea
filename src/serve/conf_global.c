/*
 * conf_global.c: the global directives, at the top level of the file: where moat listens
 * (listen, redirect_http), how it runs (workers, state), where it logs (access_log, error_log)
 * and which extra CAs its start-up checks trust (trust); also the rows that open the
 * timeouts { }, limits { } and tls { } blocks, whose settings are in conf_limits.c. The loader
 * (conf.c) checks the argument counts and repeats before these handlers run.
 * Users' reference: docs/config.md, "Global directives".
 */
#include "serve/conf_internal.h"

#include "core/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static moat_rc check_listen_word(struct moat_conf__loader *L, const struct moat_cfg_word *w,
                                 char *host, size_t hostcap, uint16_t *port)
{
    const char *why = moat_conf__listen_parse(w->s, host, hostcap, port);
    if (why != NULL) {
        return moat_conf__fail_at_word(L, w, "bad listen address \"%.100s\": %s", w->s, why);
    }
    return MOAT_RC_OK;
}

/*
 * `listen ADDRESS...` (may repeat; the addresses add up): where the HTTPS server accepts
 * connections, as host:port, [v6]:port or :port (all addresses). Default 127.0.0.1:8443,
 * replaced as soon as one listen is given. An address given twice is refused.
 * See docs/config.md#listen-address.
 */
static moat_rc h_listen(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    if (!L->listen_set) {
        moat_conf__free_strs(L->c->listen, L->c->nlisten);
        L->c->listen = NULL;
        L->c->nlisten = 0;
        L->listen_set = 1;
    }
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        char host[256];
        uint16_t port;
        MOAT_TRY(check_listen_word(L, w, host, sizeof(host), &port));
        for (size_t j = 0; j < L->c->nlisten; j++) {
            if (strcmp(L->c->listen[j], w->s) == 0) {
                return moat_conf__fail_at_word(
                    L, w,
                    "listen address \"%.100s\" is already given at line %d "
                    "(remove one)",
                    w->s, L->listen_pos[j].line);
            }
        }
        char *s = strdup(w->s);
        if (s == NULL || !moat_conf__push_pos(&L->listen_pos, L->c->nlisten,
                                              (struct moat_conf__pos){w->line, w->col})) {
            free(s);
            return moat_conf__nomem(L);
        }
        if (!moat_conf__push_str(&L->c->listen, &L->c->nlisten, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/*
 * `redirect_http ADDRESS|off`: a plain-HTTP listener that answers 308 to the https URL (and
 * serves crl_publish paths). Default off. Its port must not be a listen port on an overlapping
 * address, checked once the whole file is read (moat_conf__global_check_conf).
 * See docs/config.md#redirect_http-addressoff.
 */
static moat_rc h_redirect(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (strcmp(w->s, "off") == 0) {
        free(L->c->redirect_listen);
        L->c->redirect_listen = NULL;
        return MOAT_RC_OK;
    }
    char host[256];
    uint16_t port;
    MOAT_TRY(check_listen_word(L, w, host, sizeof(host), &port));
    char *s = strdup(w->s);
    if (s == NULL) {
        return moat_conf__nomem(L);
    }
    free(L->c->redirect_listen);
    L->c->redirect_listen = s;
    L->redirect_pos = (struct moat_conf__pos){w->line, w->col};
    return MOAT_RC_OK;
}

/* `workers N|auto`: worker threads, 1 to 1024; auto (or 0, stored as 0) is one per core.
 * Default auto. See docs/config.md#workers-nauto. */
static moat_rc h_workers(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    uint64_t v;
    if (strcmp(w->s, "auto") == 0) {
        L->c->workers = 0;
        return MOAT_RC_OK;
    }
    if (!moat_conf__parse_count(w->s, &v) || v > 1024) {
        return moat_conf__fail_at_word(
            L, w, "bad worker count \"%.64s\" (use auto, or a number from 1 to 1024)", w->s);
    }
    L->c->workers = (unsigned)v;
    return MOAT_RC_OK;
}

/* `state FOLDER`: where moat keeps the local CA, issued certificates and ticket keys. Default:
 * $MOAT_STATE, else ~/.local/share/moat (decided by the server, so unset here).
 * See docs/config.md#state-folder. */
static moat_rc h_state(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    return moat_conf__take_path(L, &n->words[1], "state", &L->c->state_dir);
}

/* `access_log stdout|off|PATH [combined|json]`: one line per response. Default off, format
 * combined; off takes no format. See docs/config.md#access_log-stdoutoffpath-combinedjson. */
static moat_rc h_access_log(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                            const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *t = &n->words[1];
    if (strcmp(t->s, "off") == 0) {
        if (n->nwords > 2) {
            return moat_conf__fail_at_word(L, &n->words[2],
                                           "\"access_log off\" takes no format (remove \"%.64s\")",
                                           n->words[2].s);
        }
    }
    if (n->nwords > 2) {
        const struct moat_cfg_word *f = &n->words[2];
        if (strcmp(f->s, "combined") == 0) {
            L->c->access_format = MOAT_LOG_COMBINED;
        } else if (strcmp(f->s, "json") == 0) {
            L->c->access_format = MOAT_LOG_JSON;
        } else {
            return moat_conf__fail_at_word(
                L, f, "bad access log format \"%.64s\" (use combined or json)", f->s);
        }
    }
    if (strcmp(t->s, "off") == 0 || strcmp(t->s, "stdout") == 0) {
        char *s = strdup(t->s);
        if (s == NULL) {
            return moat_conf__nomem(L);
        }
        free(L->c->access_log);
        L->c->access_log = s;
        return MOAT_RC_OK;
    }
    return moat_conf__take_path(L, t, "access log", &L->c->access_log);
}

/* `error_log stderr|PATH [error|warn|info|debug]`: where server messages go and the lowest
 * level shown. Default stderr info. See docs/config.md#error_log-stderrpath-errorwarninfodebug. */
static moat_rc h_error_log(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    if (n->nwords > 2) {
        const struct moat_cfg_word *lv = &n->words[2];
        size_t i = 0;
        while (i < 4 && strcmp(lv->s, levels[i]) != 0) {
            i++;
        }
        if (i == 4) {
            return moat_conf__fail_at_word(
                L, lv, "bad log level \"%.64s\" (use error, warn, info or debug)", lv->s);
        }
        L->c->log_level = (enum moat_log_level)i;
    }
    const struct moat_cfg_word *t = &n->words[1];
    if (strcmp(t->s, "stderr") == 0) {
        char *s = strdup(t->s);
        if (s == NULL) {
            return moat_conf__nomem(L);
        }
        free(L->c->error_log);
        L->c->error_log = s;
        return MOAT_RC_OK;
    }
    return moat_conf__take_path(L, t, "error log", &L->c->error_log);
}

/* `trust CA.pem...` (may repeat; the files add up): extra CAs for the start-up checks of every
 * site's chain, never for client authentication. Default none. See docs/config.md#trust-capem. */
static moat_rc h_trust(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    for (size_t i = 1; i < n->nwords; i++) {
        char *p = NULL;
        MOAT_TRY(moat_conf__take_path(L, &n->words[i], "trust", &p));
        if (!moat_conf__push_str(&L->c->trust, &L->c->ntrust, p)) {
            free(p);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

moat_rc moat_conf__read_secret_line(struct moat_conf__loader *L, const struct moat_cfg_word *w,
                                    const char *path, const char *what, size_t min_len, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return moat_conf__fail_at_word(L, w,
                                       "cannot read the %s file %.200s: %s "
                                       "(make one: head -c 32 /dev/urandom | base64 > FILE; "
                                       "chmod 600 FILE)",
                                       what, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 0007) != 0) {
        close(fd);
        return moat_conf__fail_at_word(L, w, "the %s file %.200s %s (chmod 600 it)", what, path,
                                       S_ISREG(st.st_mode)
                                           ? "can be read by every user of this machine"
                                           : "is not a regular file");
    }
    char buf[300];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    size_t len = n > 0 ? (size_t)n : 0;
    buf[len] = '\0';
    len = strcspn(buf, "\r\n");
    buf[len] = '\0';
    int bad = len < min_len || len > 256;
    for (size_t i = 0; i < len && !bad; i++) {
        bad = buf[i] <= ' ' || buf[i] > '~';
    }
    if (bad) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return moat_conf__fail_at_word(L, w,
                                       "the %s in %.200s must be one line of %zu to 256 "
                                       "printable characters without spaces (make one: head -c "
                                       "32 /dev/urandom | base64 > FILE)",
                                       what, path, min_len);
    }
    moat_conf__free_secret(*out);
    *out = strdup(buf);
    OPENSSL_cleanse(buf, sizeof(buf));
    return *out != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
}

/*
 * `admin off|unix:PATH|HOST:PORT [token FILE]`: the admin interface (moat status, reload,
 * stop, certs, upstreams; Prometheus metrics). Default: a unix socket admin.sock in the state
 * folder. A TCP address must be loopback and needs a token file. See
 * docs/config.md#admin-offunixpathhostport-token-file.
 */
static moat_rc h_admin(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    struct moat_conf *c = L->c;
    free(c->admin);
    c->admin = NULL;
    moat_conf__free_secret(c->admin_token);
    c->admin_token = NULL;
    int tcp = strcmp(w->s, "off") != 0 && strncmp(w->s, "unix:", 5) != 0;
    if (n->nwords > 2) {
        if (!tcp) {
            return moat_conf__fail_at_word(L, &n->words[2],
                                           "only a TCP admin listener takes a token (remove "
                                           "\"%.64s\"%s)",
                                           n->words[2].s, n->nwords > 3 ? " and what follows" : "");
        }
        if (strcmp(n->words[2].s, "token") != 0 || n->nwords != 4) {
            return moat_conf__fail_at_word(L, &n->words[2],
                                           "expected \"token FILE\" after the address (admin "
                                           "127.0.0.1:9090 token /etc/moat/admin.token)");
        }
    }
    if (strcmp(w->s, "off") == 0) {
        c->admin = strdup("off");
        return c->admin != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
    }
    if (!tcp) {
        struct moat_cfg_word pw = *w;
        pw.s = w->s + 5;
        pw.len = w->len - 5;
        char *path = NULL;
        MOAT_TRY(moat_conf__take_path(L, &pw, "admin socket", &path));
        if (strlen(path) > 107) {
            free(path);
            return moat_conf__fail_at_word(L, w,
                                           "the admin socket path is longer than the 107 bytes "
                                           "a unix socket takes (choose a shorter one)");
        }
        size_t len = strlen(path) + 6;
        c->admin = malloc(len);
        if (c->admin != NULL) {
            snprintf(c->admin, len, "unix:%s", path);
        }
        free(path);
        return c->admin != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
    }
    char host[256];
    uint16_t port;
    MOAT_TRY(check_listen_word(L, w, host, sizeof(host), &port));
    struct sockaddr_storage ss;
    int loop = strcasecmp(host, "localhost") == 0;
    if (!loop && moat_sock_addr_of(host, port, &ss)) {
        loop = ss.ss_family == AF_INET
                   ? (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127
                   : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    }
    if (!loop) {
        return moat_conf__fail_at_word(L, w,
                                       "the admin listener takes a loopback address, not "
                                       "\"%.100s\" (127.0.0.1:PORT or [::1]:PORT; reach it from "
                                       "elsewhere through an SSH tunnel)",
                                       w->s);
    }
    if (n->nwords < 4) {
        return moat_conf__fail_at_word(L, w,
                                       "a TCP admin listener needs a token (admin %.100s token "
                                       "FILE; make one: head -c 32 /dev/urandom | base64 > FILE)",
                                       w->s);
    }
    char *tpath = NULL;
    MOAT_TRY(moat_conf__take_path(L, &n->words[3], "admin token", &tpath));
    moat_rc rc =
        moat_conf__read_secret_line(L, &n->words[3], tpath, "admin token", 16, &L->c->admin_token);
    free(tpath);
    if (moat_ok(rc)) {
        c->admin = strdup(w->s);
        rc = c->admin != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
    }
    return rc;
}

/* `user NAME [GROUP]`: the account moat serves as when started as root. The listeners are
 * bound and the keys read first; then every other id is given up (docs/admin.md, "Privileges").
 * GROUP defaults to the user's own. Both must exist on the machine where the file is read. */
static moat_rc h_user(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    struct moat_conf *c = L->c;
    const struct moat_cfg_word *u = &n->words[1];
    if (getpwnam(u->s) == NULL) {
        return moat_conf__fail_at_word(L, u,
                                       "no user \"%.64s\" on this machine (make one: adduser "
                                       "--system --group --home /var/lib/moat %.64s)",
                                       u->s, u->s);
    }
    if (n->nwords > 2 && getgrnam(n->words[2].s) == NULL) {
        return moat_conf__fail_at_word(L, &n->words[2],
                                       "no group \"%.64s\" on this machine (addgroup --system "
                                       "%.64s, or leave it out for the user's own group)",
                                       n->words[2].s, n->words[2].s);
    }
    free(c->user);
    free(c->group);
    c->user = strdup(u->s);
    c->group = n->nwords > 2 ? strdup(n->words[2].s) : NULL;
    return c->user != NULL && (n->nwords < 3 || c->group != NULL) ? MOAT_RC_OK
                                                                  : moat_conf__nomem(L);
}

/*
 * The rows. The block rows stay here, between error_log and trust, because this order is the
 * order of "known at the top level: ..." (their settings: conf_limits.c).
 * `timeouts { ... }`, `limits { ... }`, `tls { ... }`: see docs/config.md#timeouts---,
 * docs/config.md#limits--- and docs/config.md#tls---.
 */
const struct moat_conf__spec moat_conf__global_specs[] = {
    MOAT_CONF__CUSTOM("listen", MOAT_CONF__TOP, 1, -1, 1, h_listen, "listen ADDRESS..."),
    MOAT_CONF__CUSTOM("redirect_http", MOAT_CONF__TOP, 1, 1, 0, h_redirect,
                      "redirect_http ADDRESS|off"),
    MOAT_CONF__CUSTOM("workers", MOAT_CONF__TOP, 1, 1, 0, h_workers, "workers N|auto"),
    MOAT_CONF__CUSTOM("state", MOAT_CONF__TOP, 1, 1, 0, h_state, "state FOLDER"),
    MOAT_CONF__CUSTOM("user", MOAT_CONF__TOP, 1, 2, 0, h_user, "user NAME [GROUP]"),
    MOAT_CONF__CUSTOM("access_log", MOAT_CONF__TOP, 1, 2, 0, h_access_log,
                      "access_log stdout|off|PATH [combined|json]"),
    MOAT_CONF__CUSTOM("error_log", MOAT_CONF__TOP, 1, 2, 0, h_error_log,
                      "error_log stderr|PATH [error|warn|info|debug]"),
    MOAT_CONF__BLOCK("timeouts", 0, 0, MOAT_CONF__TIMEOUTS, NULL,
                     "timeouts { head 10s; idle 60s; ... }"),
    MOAT_CONF__BLOCK("limits", 0, 0, MOAT_CONF__LIMITS, NULL,
                     "limits { request_line 8k; header_bytes 32k; ... }"),
    MOAT_CONF__BLOCK("tls", 0, 0, MOAT_CONF__TLS, NULL,
                     "tls { tickets on; ticket_rotate 1h; session_cache 20480 }"),
    MOAT_CONF__CUSTOM("trust", MOAT_CONF__TOP, 1, -1, 1, h_trust, "trust CA.pem..."),
    MOAT_CONF__CUSTOM("admin", MOAT_CONF__TOP, 1, 3, 0, h_admin,
                      "admin off|unix:PATH|HOST:PORT [token FILE]"),
};

const size_t moat_conf__global_nspecs =
    sizeof(moat_conf__global_specs) / sizeof(moat_conf__global_specs[0]);

/* redirect_http must not take the port of a listen address it overlaps: the second bind would
 * fail at start-up with a less helpful message. Reported at the redirect_http word. */
moat_rc moat_conf__global_check_conf(struct moat_conf__loader *L)
{
    struct moat_conf *c = L->c;
    if (c->redirect_listen == NULL) {
        return MOAT_RC_OK;
    }
    char rh[256], lh[256];
    uint16_t rp, lp;
    if (!moat_ok(moat_conf_listen_split(c->redirect_listen, rh, sizeof(rh), &rp))) {
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        if (!moat_ok(moat_conf_listen_split(c->listen[i], lh, sizeof(lh), &lp))) {
            return moat_rc_of(MOAT_E_INTERNAL);
        }
        if (rp == lp && (rh[0] == '\0' || lh[0] == '\0' || strcasecmp(rh, lh) == 0)) {
            char at[32] = " (the default)";
            if (L->listen_set) {
                snprintf(at, sizeof(at), " at line %d", L->listen_pos[i].line);
            }
            return moat_cfg_fail(L->err, L->doc, L->redirect_pos.line, L->redirect_pos.col,
                                 "redirect_http uses the port of listen \"%s\"%s (give it "
                                 "another port, e.g. :8080)",
                                 c->listen[i], at);
        }
    }
    return MOAT_RC_OK;
}
