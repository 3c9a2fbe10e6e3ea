/*
 * cmd_admin.c: `moat status`, `moat reload`, `moat stop`, `moat certs`, `moat upstreams` and
 * `moat metrics`: find the running server's admin interface, ask it (client/admin.h), print
 * the answer for a person (or as it came, with --json).
 */
#include "cli/cmd.h"

#include "client/admin.h"
#include "serve/conf.h"
#include "serve/server.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SYSTEM_CONFIG "/etc/moat/moat.conf" /* the Debian package's */

static const char admin_usage[] =
    "usage: moat status|reload|stop|certs|upstreams|metrics [--config FILE] [--admin ADDRESS]\n"
    "                  [--token-file FILE] [--json] [--timeout SECONDS] [--no-wait] [--cluster]\n"
    "\n"
    "Ask a running `moat serve` (or `moat proxy`) through its admin interface:\n"
    "  status      what it serves: sites, certificates' days left, connections, upstreams\n"
    "  reload      read the configuration again; a refusal is printed and nothing changes\n"
    "              (--cluster: then every other node of its cluster reads its own too)\n"
    "  stop        drain the connections and exit (waits until the server is gone)\n"
    "  certs       each site's certificates: source, names, expiry, chain, next renewal\n"
    "  upstreams   each upstream server's health and load\n"
    "  metrics     the Prometheus metrics, as a scraper reads them\n"
    "\n"
    "Which server: --admin unix:PATH or HOST:PORT, else the `admin` setting of --config FILE\n"
    "(its token too), else the socket admin.sock in the state folder ($MOAT_STATE, else\n"
    "~/.local/share/moat), which is where `moat serve` puts it by default, else the server\n"
    "of " SYSTEM_CONFIG " (the Debian package's service).\n"
    "\n"
    "  --token-file FILE  the token of a TCP admin listener (with --admin)\n"
    "  --json             print the server's answer as it came (JSON)\n"
    "  --timeout SECONDS  how long to wait for the answer (default 60: a reload may issue\n"
    "                     certificates)\n"
    "  --no-wait          stop: return once the server has begun to drain\n"
    "\n"
    "Exit code 0 when the server did what was asked; 1 when it refused (a reload's errors)\n"
    "or could not be reached; 2 for usage errors.\n";

struct opts {
    const char *config, *admin, *token_file;
    int json, no_wait, cluster;
    int timeout_s;
};

/* The token file's first line (as serve reads it); NULL with a message on failure. */
static char *read_token(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        fprintf(stderr, "moat: cannot read the token file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[300];
    char *line = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (line == NULL) {
        fprintf(stderr, "moat: the token file %s is empty\n", path);
        return NULL;
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    char *t = strdup(buf);
    OPENSSL_cleanse(buf, sizeof(buf));
    return t;
}

/* Where to ask, and with which token (*token malloc'ed or NULL). Returns 0, or an exit code. */
static int locate(const struct opts *o, char *spec, size_t cap, char **token)
{
    *token = NULL;
    if (o->admin != NULL) {
        int is_path = strncmp(o->admin, "unix:", 5) != 0 && strchr(o->admin, '/') != NULL;
        snprintf(spec, cap, "%s%s", is_path ? "unix:" : "", o->admin);
        if (o->token_file != NULL && (*token = read_token(o->token_file)) == NULL) {
            return 2;
        }
        return 0;
    }
    struct moat_conf empty;
    memset(&empty, 0, sizeof(empty));
    struct moat_conf *c = &empty;
    struct moat_err err = {0};
    if (o->config != NULL && !moat_ok(moat_conf_load(o->config, &c, &err))) {
        char msg[1024];
        fprintf(stderr, "moat: %s\n", moat_err_str(&err, msg, sizeof(msg)));
        return 2;
    }
    int rc = 0;
    if (c->admin != NULL && strcmp(c->admin, "off") == 0) {
        fprintf(stderr,
                "moat: %s has `admin off`: the server has no admin interface (remove the line, "
                "or give it `admin unix:PATH`, and restart it)\n",
                o->config);
        rc = 2;
    } else if (c->admin != NULL) {
        snprintf(spec, cap, "%s", c->admin);
        if (c->admin_token != NULL && (*token = strdup(c->admin_token)) == NULL) {
            rc = 1;
        }
    } else {
        char *state = NULL;
        if (!moat_ok(moat_server_state_dir_path(c, &state, &err))) {
            char msg[1024];
            fprintf(stderr, "moat: %s\n", moat_err_str(&err, msg, sizeof(msg)));
            rc = 2;
        } else {
            snprintf(spec, cap, "unix:%s/admin.sock", state);
            free(state);
        }
    }
    if (c != &empty) {
        moat_conf_free(c);
    }
    /* Nothing at the user's own state folder, but a packaged server's configuration is there
     * (the systemd unit's MOAT_STATE is not the caller's): ask that one. */
    if (rc == 0 && o->config == NULL && getenv("MOAT_STATE") == NULL &&
        access(spec + 5, F_OK) != 0 && access(SYSTEM_CONFIG, R_OK) == 0) {
        struct opts sys = *o;
        sys.config = SYSTEM_CONFIG;
        return locate(&sys, spec, cap, token);
    }
    return rc;
}

/* ---- printing --------------------------------------------------------------------------- */

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

static long long num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* "2027-01-03T06:32:21Z" -> "2027-01-03 06:32 UTC". */
static const char *when(json_t *o, const char *k, char *buf, size_t cap)
{
    const char *s = str(o, k);
    if (strlen(s) < 16) {
        return "never";
    }
    snprintf(buf, cap, "%.10s %.5s UTC", s, s + 11);
    return buf;
}

static void print_duration(long long s)
{
    if (s >= 86400) {
        printf("%lldd %lldh", s / 86400, s % 86400 / 3600);
    } else if (s >= 3600) {
        printf("%lldh %lldm", s / 3600, s % 3600 / 60);
    } else {
        printf("%lldm %llds", s / 60, s % 60);
    }
}

static void print_status(json_t *j)
{
    printf("moat %s, pid %lld, up ", str(j, "version"), num(j, "pid"));
    print_duration(num(j, "uptime_s"));
    printf(", configuration generation %lld", num(j, "generation"));
    if (str(j, "config")[0]) {
        printf(" (%s)", str(j, "config"));
    }
    printf("\n");
    json_t *l = json_object_get(j, "listen");
    printf("listening on");
    for (size_t i = 0; i < json_array_size(l); i++) {
        printf(" %s", json_string_value(json_array_get(l, i)));
    }
    json_t *c = json_object_get(j, "connections");
    printf("\n%lld worker(s); connections: %lld open, %lld accepted; requests: %lld\n",
           num(j, "workers"), num(c, "open"), num(c, "accepted"), num(j, "requests"));
    json_t *sites = json_object_get(j, "sites");
    printf("sites:\n");
    for (size_t i = 0; i < json_array_size(sites); i++) {
        json_t *s = json_array_get(sites, i);
        char buf[40];
        printf("  %-30s %-16s %-10s", str(s, "name"), str(s, "kind"), str(s, "certificate"));
        if (json_is_integer(json_object_get(s, "days_left"))) {
            printf(" expires %s (%lld days)", when(s, "expires", buf, sizeof(buf)),
                   num(s, "days_left"));
        }
        printf("\n");
    }
    json_t *u = json_object_get(j, "upstreams");
    if (num(u, "servers") > 0) {
        printf("upstreams: %lld of %lld servers up\n", num(u, "up"), num(u, "servers"));
    }
    printf("reloads: %lld, %lld refused\n", num(j, "reloads"), num(j, "reloads_refused"));
    if (str(j, "last_reload_error")[0]) {
        printf("last refused reload: %s\n", str(j, "last_reload_error"));
    }
}

static void print_certs(json_t *j)
{
    json_t *sites = json_object_get(j, "sites");
    for (size_t i = 0; i < json_array_size(sites); i++) {
        json_t *s = json_array_get(sites, i);
        printf("%s%s (%s)\n", i ? "\n" : "", str(s, "site"), str(s, "source"));
        json_t *certs = json_object_get(s, "certificates");
        for (size_t k = 0; k < json_array_size(certs); k++) {
            json_t *c = json_array_get(certs, k);
            char a[40], b[40], r[40];
            printf("  %s, %s\n", str(c, "key"), str(c, "subject"));
            json_t *names = json_object_get(c, "names");
            printf("    names:");
            for (size_t n = 0; n < json_array_size(names); n++) {
                printf(" %s", json_string_value(json_array_get(names, n)));
            }
            long long left = num(c, "days_left");
            printf("\n    valid %s to %s (%lld day%s %s)\n", when(c, "not_before", a, sizeof(a)),
                   when(c, "not_after", b, sizeof(b)), left < 0 ? -left : left,
                   left == 1 || left == -1 ? "" : "s", left < 0 ? "ago: EXPIRED" : "left");
            printf("    next renewal: %s\n", when(c, "next_renewal", r, sizeof(r)));
            printf("    issuer: %s\n", str(c, "issuer"));
            json_t *chain = json_object_get(c, "chain");
            for (size_t n = 0; n < json_array_size(chain); n++) {
                json_t *x = json_array_get(chain, n);
                printf("    chain %zu: %s (expires %s), issued by %s\n", n + 1, str(x, "subject"),
                       when(x, "not_after", a, sizeof(a)), str(x, "issuer"));
            }
            printf("    file: %s\n    sha256: %s\n", str(c, "file"), str(c, "sha256"));
        }
        json_t *acme = json_object_get(s, "acme");
        for (size_t k = 0; k < json_array_size(acme); k++) {
            json_t *a = json_array_get(acme, k);
            char t[40];
            printf("  acme (%s) from %s: renews %s%s", str(a, "kind"), str(a, "ca"),
                   when(a, "renew_at", t, sizeof(t)),
                   json_is_true(json_object_get(a, "ari")) ? " (the CA's ARI window)" : "");
            if (num(a, "failures") > 0) {
                printf("; %lld failure(s) in a row, next try %s: %s", num(a, "failures"),
                       when(a, "next_try", t, sizeof(t)), str(a, "last_error"));
            }
            printf("\n");
        }
    }
}

static void print_upstreams(json_t *j)
{
    json_t *ups = json_object_get(j, "upstreams");
    if (json_array_size(ups) == 0) {
        printf("no upstreams (no site proxies)\n");
    }
    for (size_t i = 0; i < json_array_size(ups); i++) {
        json_t *u = json_array_get(ups, i);
        json_t *servers = json_object_get(u, "servers");
        printf("%s%s: %lld of %zu up, %s", i ? "\n" : "", str(u, "name"), num(u, "up"),
               json_array_size(servers), str(u, "balance"));
        if (str(u, "health_check")[0]) {
            printf(", checks %s", str(u, "health_check"));
        }
        if (num(u, "queued") > 0) {
            printf(", %lld queued", num(u, "queued"));
        }
        printf("\n");
        for (size_t k = 0; k < json_array_size(servers); k++) {
            json_t *s = json_array_get(servers, k);
            printf("  %-32s %-20s active %lld, connections %lld", str(s, "server"), str(s, "state"),
                   num(s, "active"), num(s, "connections"));
            if (json_is_integer(json_object_get(s, "back_in_s"))) {
                printf(", back in %lld s", num(s, "back_in_s"));
            }
            if (str(s, "last_failure")[0] && strcmp(str(s, "state"), "up") != 0) {
                printf(" (%s)", str(s, "last_failure"));
            }
            printf("\n");
        }
    }
}

/* The process has exited: gone, or a zombie its parent has not reaped yet. */
static int exited(long pid)
{
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        return 1;
    }
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return errno == ENOENT;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')'); /* "PID (comm) STATE ..." */
    return close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

/* Wait for the stopped server's process to be gone (it drains first). */
static int wait_gone(long pid, long long drain_ms)
{
    time_t until = time(NULL) + (time_t)(drain_ms / 1000) + 10;
    while (time(NULL) <= until) {
        if (exited(pid)) {
            printf("moat (pid %ld) has stopped\n", pid);
            return 0;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "moat: pid %ld is still running after its drain time\n", pid);
    return 1;
}

int moat_cmd_admin(const char *what, int argc, char **argv)
{
    struct opts o = {.timeout_s = 60};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(admin_usage, stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--no-wait") == 0) {
            o.no_wait = 1;
        } else if (strcmp(a, "--cluster") == 0 && strcmp(what, "reload") == 0) {
            o.cluster = 1;
        } else if (strcmp(a, "--config") == 0 && more) {
            o.config = argv[++i];
        } else if (strcmp(a, "--admin") == 0 && more) {
            o.admin = argv[++i];
        } else if (strcmp(a, "--token-file") == 0 && more) {
            o.token_file = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && more) {
            char *end = NULL;
            long t = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || t < 1 || t > 3600) {
                fprintf(stderr, "moat %s: --timeout takes seconds, 1 to 3600\n", what);
                return 2;
            }
            o.timeout_s = (int)t;
        } else {
            fprintf(stderr, "moat %s: unknown or incomplete option \"%s\" (see moat %s --help)\n",
                    what, a, what);
            return 2;
        }
    }
    char spec[PATH_MAX + 8];
    char *token = NULL;
    int rc = locate(&o, spec, sizeof(spec), &token);
    if (rc != 0) {
        return rc;
    }
    int post = strcmp(what, "reload") == 0 || strcmp(what, "stop") == 0;
    char path[32];
    snprintf(path, sizeof(path), "/%s%s", strcmp(what, "status") == 0 ? "status" : what,
             o.cluster ? "?cluster=1" : "");
    struct moat_buf body;
    moat_buf_init(&body, 64u << 20);
    struct moat_err err = {0};
    int status = 0;
    moat_rc r = moat_admin_call(spec, token, post ? "POST" : "GET", path, o.timeout_s * 1000,
                                &status, &body, &err);
    if (token != NULL) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    if (!moat_ok(r)) {
        char msg[1024];
        fprintf(stderr, "moat %s: %s\n", what, moat_err_str(&err, msg, sizeof(msg)));
        moat_buf_clear(&body);
        return 1;
    }
    if (o.json || strcmp(what, "metrics") == 0) {
        fwrite(moat_buf_rdptr(&body), 1, moat_buf_len(&body), status == 200 ? stdout : stderr);
        moat_buf_clear(&body);
        return status == 200 ? 0 : 1;
    }
    json_error_t je;
    json_t *j = json_loadb(moat_buf_rdptr(&body), moat_buf_len(&body), 0, &je);
    moat_buf_clear(&body);
    if (j == NULL) {
        fprintf(stderr, "moat %s: the server's answer (status %d) is not JSON: %s\n", what, status,
                je.text);
        return 1;
    }
    rc = 0;
    if (status != 200) {
        fprintf(stderr, "moat %s: %s%s\n", what,
                strcmp(what, "reload") == 0 ? "refused; still serving the previous "
                                              "configuration: "
                                            : "",
                str(j, "error"));
        rc = 1;
    } else if (strcmp(what, "status") == 0) {
        print_status(j);
    } else if (strcmp(what, "certs") == 0) {
        print_certs(j);
    } else if (strcmp(what, "upstreams") == 0) {
        print_upstreams(j);
    } else if (strcmp(what, "reload") == 0) {
        printf("reloaded: now serving configuration generation %lld%s\n", num(j, "generation"),
               o.cluster ? "; the other nodes of the cluster were asked to reload" : "");
    } else {
        long pid = (long)num(j, "pid");
        printf("moat (pid %ld) is draining its connections, then exits\n", pid);
        fflush(stdout);
        rc = o.no_wait || pid <= 0 ? 0 : wait_gone(pid, num(j, "drain_ms"));
    }
    json_decref(j);
    return rc;
}
