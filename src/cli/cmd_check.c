/*
 * cmd_check.c: `moat check URL|HOST[:PORT]`: argument parsing only; check/ probes and judges.
 */
#include "cli/cmd.h"

#include "check/haproxy.h"
#include "check/html.h"
#include "check/judge.h"
#include "check/nginx.h"
#include "check/report.h"
#include "check/scan.h"
#include "pki/fsutil.h"
#include "serve/conf.h"
#include "serve/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: moat check [options] URL|HOST[:PORT]\n"
    "       moat check [options] --config FILE\n"
    "\n"
    "Grade an HTTPS server: versions, suites and their order, groups, signatures, the\n"
    "certificate chain, resumption, ALPN, renegotiation, compression, heartbeat, 0-RTT, HSTS,\n"
    "security header fields and the plain-HTTP redirect; each finding with its evidence and\n"
    "the fix in moat, nginx, HAProxy and Caddy terms. It probes one address with short\n"
    "handshakes, bounded in number, rate and time.\n"
    "\n"
    "  --config FILE        check what `moat serve --config FILE` would offer: its server is\n"
    "                       started on loopback ports (its state folder, no admin, no access\n"
    "                       log, no cluster) and each site is checked by name; an nginx or\n"
    "                       HAProxy file is judged offline (its TLS settings, certificate\n"
    "                       files and header rules; no connection)\n"
    "  --json               one JSON document instead of the text\n"
    "  --html FILE          also write the report as one self-contained HTML page (with\n"
    "                       --config, one section per check under a summary of the grades)\n"
    "  --connect ADDR[:PORT] probe this address instead of resolving the name (the name\n"
    "                       is still sent and verified)\n"
    "  --cafile FILE        trust these CA certificates too (moat's local CA is trusted)\n"
    "  --state DIR          where moat's local CA is (default $MOAT_STATE or ~/.local/...)\n"
    "  --http-port N|off    where to look for the redirect to HTTPS (default 80)\n"
    "  --resolver ADDR[:PORT] the DNS server for the CAA lookup (default: the system's,\n"
    "                       for public names only; with this option, for any name)\n"
    "  --timeout SECONDS    per connection (default 5)\n"
    "  --max-time SECONDS   the whole check (default 60)\n"
    "  --max-connections N  at most N connections (default 800)\n"
    "  --parallel N         connections at a time (default 8, at most 16)\n"
    "  --rate N             new connections per second at most (default 200)\n"
    "\n"
    "Exit status: 0 nothing above info, 3 low, 4 medium, 5 high, 6 critical (the worst\n"
    "finding); 1 the check could not run; 2 usage.\n";

static int number(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || v < lo || v > hi) {
        return 0;
    }
    *out = (unsigned)v;
    return 1;
}

/* The --html page of this run: every check adds its section, and it is written once at the
 * end, whole or not at all (temp file + rename). */
static struct moat_check_page *page;
static size_t page_checks;

static int write_page(const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL) {
        fprintf(stderr, "moat check: out of memory for the page\n");
        return -1;
    }
    int bad = moat_check_page_write(page, m) != 0;
    bad |= fclose(m) != 0;
    struct moat_err err = {0};
    if (bad || !moat_ok(moat_fs_write_atomic(path, buf, len, 0644, &err))) {
        char line[1024];
        fprintf(stderr, "moat check: cannot write %s: %s\n", path,
                bad ? "out of memory" : moat_err_str(&err, line, sizeof(line)));
        free(buf);
        return -1;
    }
    free(buf);
    return 0;
}

/* A loopback port nobody holds now (the kernel's pick). 0 when none could be had. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* What the server of --config is started with: the file's configuration on loopback. */
struct check_conf {
    const char *path;
    unsigned port, http_port; /* http_port 0: the file has no redirect_http */
};

static void drop_strings(char ***v, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free((*v)[i]);
    }
    free(*v);
    *v = NULL;
    *n = 0;
}

static char *dup_or_die(const char *s, int *nomem)
{
    char *d = strdup(s);
    *nomem |= d == NULL;
    return d;
}

/*
 * The configuration as the check's server runs it: one listener on 127.0.0.1, the redirect on
 * another, no admin listener, no access log, no privilege change (it runs as whoever checks),
 * no cluster and no streams (they are not HTTPS sites), no address rules, one worker, and the
 * sites whose certificates come from ACME left out (the check must not order certificates).
 * Runs in the child only, which exits after the server: what this drops is not freed.
 */
static moat_rc conf_for_check(void *arg, struct moat_conf **out, struct moat_err *err)
{
    const struct check_conf *cc = arg;
    struct moat_conf *c = NULL;
    MOAT_TRY(moat_conf_load(cc->path, &c, err));
    char l[64];
    snprintf(l, sizeof(l), "127.0.0.1:%u", cc->port);
    const char *ls[1] = {l};
    moat_rc rc = moat_conf_set_listen(c, ls, 1, err);
    if (!moat_ok(rc)) {
        moat_conf_free(c);
        return rc;
    }
    int nomem = 0;
    free(c->redirect_listen);
    c->redirect_listen = NULL;
    if (cc->http_port != 0) {
        snprintf(l, sizeof(l), "127.0.0.1:%u", cc->http_port);
        c->redirect_listen = dup_or_die(l, &nomem);
    }
    free(c->user);
    free(c->group);
    c->user = c->group = NULL;
    free(c->admin);
    c->admin = dup_or_die("off", &nomem);
    free(c->access_log);
    c->access_log = dup_or_die("off", &nomem);
    drop_strings(&c->http2_off_listen, &c->nhttp2_off_listen);
    drop_strings(&c->proxy_protocol_listen, &c->nproxy_protocol_listen);
    c->nstreams = 0;
    c->cluster = NULL;
    c->nacl = 0;
    c->workers = 1;
    size_t kept = 0;
    for (size_t i = 0; i < c->nsites; i++) {
        if (!c->sites[i].acme) {
            c->sites[kept++] = c->sites[i];
        }
    }
    c->nsites = kept;
    if (nomem) {
        moat_conf_free(c);
        return moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    }
    *out = c;
    return MOAT_RC_OK;
}

static int accepts(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* The name a site is checked by: its first name, a wildcard's with a label put in front,
 * "localhost" for the default site. */
static void site_name(const struct moat_conf_site *site, char *out, size_t outlen)
{
    const char *n = site->nnames > 0 ? site->names[0] : "*";
    if (strcmp(n, "*") == 0) {
        snprintf(out, outlen, "localhost");
    } else if (strncmp(n, "*.", 2) == 0) {
        snprintf(out, outlen, "check%s", n + 1);
    } else {
        snprintf(out, outlen, "%s", n);
    }
}

static int run_one(struct moat_check_opts *o, int *first);
static int report_one(const struct moat_check_opts *o, struct moat_check_scan *s, int *first);

/* Another server's file, judged offline: one check per TLS server block (nginx) or per name
 * on a TLS bind line (HAProxy). */
struct offline_kind {
    const char *product, *unit, *units, *defaults;
    moat_rc (*read)(const char *path, const char *cafile, struct moat_check_scan **out, size_t max,
                    size_t *n, struct moat_err *err);
};

static const struct offline_kind nginx_kind = {"nginx", "TLS server block", "TLS server blocks",
                                               "nginx 1.22's", moat_check_nginx};
static const struct offline_kind haproxy_kind = {"HAProxy", "name on a TLS bind line",
                                                 "names on TLS bind lines", "HAProxy 2.6's",
                                                 moat_check_haproxy};

#define MAX_OFFLINE 64

static int check_offline(struct moat_check_opts *o, const char *path, const struct offline_kind *k)
{
    struct moat_check_scan *scans[MAX_OFFLINE];
    size_t n = 0;
    struct moat_err err = {0};
    if (!moat_ok(k->read(path, o->cafile, scans, MAX_OFFLINE, &n, &err))) {
        char line[1024];
        fprintf(stderr, "moat check: %s\n", moat_err_str(&err, line, sizeof(line)));
        return 1;
    }
    int first = 1, code = 0;
    if (o->json) {
        fputs("[\n", stdout);
    } else {
        printf("moat check --config %s: %s, %zu %s, judged offline (its settings, %s "
               "defaults and this machine's OpenSSL; no connection)\n\n",
               path, k->product, n, n == 1 ? k->unit : k->units, k->defaults);
    }
    if (n == MAX_OFFLINE) {
        fprintf(stderr, "moat check: %s: only the first %d %s are checked\n", path, MAX_OFFLINE,
                k->units);
    }
    for (size_t i = 0; i < n; i++) {
        int one = 1; /* the text reports are separated here, with their place in the file */
        if (!o->json) {
            printf("%s%s\n", i ? "\n" : "", scans[i]->source);
        }
        int rc = report_one(o, scans[i], o->json ? &first : &one);
        code = rc > code ? rc : code;
    }
    if (o->json) {
        fputs("]\n", stdout);
    }
    return code;
}

/* --config FILE: another server's file is judged offline; a moat file's server is started on
 * loopback in a child, each site checked by name, and the server stopped. */
static int check_config(struct moat_check_opts *o, const char *path)
{
    struct moat_conf *c = NULL;
    struct moat_err err = {0};
    {
        unsigned char *text = NULL;
        size_t len = 0;
        if (moat_ok(moat_fs_read_file(path, 4 * 1024 * 1024, &text, &len, &err))) {
            /* HAProxy's test first: it asks for words at the start of lines, nginx's for
             * words anywhere. */
            const struct offline_kind *k =
                moat_check_haproxy_looks((const char *)text) ? &haproxy_kind
                : moat_check_nginx_looks((const char *)text) ? &nginx_kind
                                                             : NULL;
            free(text);
            if (k != NULL) {
                return check_offline(o, path, k);
            }
        }
    }
    if (!moat_ok(moat_conf_load(path, &c, &err))) {
        char line[1024];
        fprintf(stderr, "moat check: %s\n", moat_err_str(&err, line, sizeof(line)));
        return 1;
    }
    struct check_conf cc = {path, free_port(), 0};
    if (c->redirect_listen != NULL) {
        cc.http_port = free_port();
    }
    int pipefd[2];
    if (cc.port == 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
        moat_conf_free(c);
        fprintf(stderr, "moat check: cannot set up the loopback server\n");
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: the server, its log into the pipe (shown if it does not come up). */
        dup2(pipefd[1], 2);
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        struct moat_conf_source src = {NULL, conf_for_check, &cc};
        struct moat_err e = {0};
        moat_rc rc = moat_server_run(&src, MOAT_SERVE_ALLOW_ROOT, &e);
        if (!moat_ok(rc)) {
            char line[1024];
            fprintf(stderr, "%s\n", moat_err_str(&e, line, sizeof(line)));
        }
        _exit(moat_ok(rc) ? 0 : 1);
    }
    close(pipefd[1]);
    int up = 0, status = 0;
    for (int i = 0; pid > 0 && i < 300 && !up; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            break;
        }
        up = accepts(cc.port);
        if (!up) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    int code = 1;
    if (!up) {
        char log[4096];
        ssize_t n = 0;
        struct pollfd pf = {pipefd[0], POLLIN, 0};
        if (poll(&pf, 1, 200) == 1) {
            n = read(pipefd[0], log, sizeof(log) - 1);
        }
        log[n > 0 ? n : 0] = '\0';
        fprintf(stderr, "moat check: the server of %s did not start on 127.0.0.1:%u%s%s\n", path,
                cc.port, n > 0 ? ":\n" : "", log);
    } else {
        char port_s[16];
        snprintf(port_s, sizeof(port_s), "127.0.0.1:%u", cc.port);
        o->connect = port_s;
        o->http_port = cc.http_port;
        char *state = NULL;
        if (o->state_dir == NULL && moat_ok(moat_server_state_dir_path(c, &state, &err))) {
            o->state_dir = state; /* its local CA is what its certificates chain to */
        }
        if (!o->json) {
            printf("moat check --config %s: its server on %s (listen %s in the file)", path, port_s,
                   c->nlisten > 0 ? c->listen[0] : "?");
            if (cc.http_port != 0) {
                printf(", redirect_http on 127.0.0.1:%u (%s)", cc.http_port, c->redirect_listen);
            }
            fputs("\n\n", stdout);
        }
        int first = 1, checked = 0;
        code = 0;
        if (o->json) {
            fputs("[\n", stdout);
        }
        for (size_t i = 0; i < c->nsites; i++) {
            if (c->sites[i].acme) {
                fprintf(stderr,
                        "moat check: %s: site %s gets its certificate by ACME; check the running "
                        "server instead (moat check %s)\n",
                        path, c->sites[i].names[0], c->sites[i].names[0]);
                continue;
            }
            char name[300], target[320];
            site_name(&c->sites[i], name, sizeof(name));
            snprintf(target, sizeof(target), "%s:%u", name, cc.port);
            o->target = target;
            int rc = run_one(o, &first);
            checked++;
            code = rc > code ? rc : code;
        }
        if (o->json) {
            fputs("]\n", stdout);
        }
        if (checked == 0) {
            fprintf(stderr, "moat check: %s has no site to check here\n", path);
            code = 1;
        }
        free(state);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
    }
    close(pipefd[0]);
    moat_conf_free(c);
    return code;
}

int moat_cmd_check(int argc, char **argv)
{
    struct moat_check_opts o;
    moat_check_opts_init(&o);
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0' && v == NULL) {
            fprintf(stderr, "moat check: %s needs a value (see moat check --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--connect") == 0) {
            o.connect = v;
        } else if (strcmp(a, "--cafile") == 0) {
            o.cafile = v;
        } else if (strcmp(a, "--config") == 0) {
            config = v;
        } else if (strcmp(a, "--html") == 0) {
            o.html = v;
        } else if (strcmp(a, "--resolver") == 0) {
            o.resolver = v;
        } else if (strcmp(a, "--state") == 0) {
            o.state_dir = v;
        } else if (strcmp(a, "--http-port") == 0) {
            if (strcmp(v, "off") == 0) {
                o.http_port = 0;
            } else if (!number(v, 1, 65535, &o.http_port)) {
                fprintf(stderr, "moat check: --http-port takes 1 to 65535 or off, not %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--max-time") == 0) {
            if (!number(v, 1, 3600, &n)) {
                fprintf(stderr, "moat check: %s takes 1 to 3600 seconds, not %s\n", a, v);
                return 2;
            }
            *(a[2] == 't' ? &o.timeout_ms : &o.deadline_ms) = n * 1000;
        } else if (strcmp(a, "--max-connections") == 0) {
            if (!number(v, 1, 100000, &o.max_connections)) {
                fprintf(stderr, "moat check: --max-connections takes 1 to 100000, not %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--parallel") == 0) {
            if (!number(v, 1, 16, &o.parallel)) {
                fprintf(stderr, "moat check: --parallel takes 1 to 16, not %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--rate") == 0) {
            if (!number(v, 1, 10000, &o.rate)) {
                fprintf(stderr, "moat check: --rate takes 1 to 10000 per second, not %s\n", v);
                return 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "moat check: unknown option %s (see moat check --help)\n", a);
            return 2;
        } else if (o.target != NULL) {
            fprintf(stderr, "moat check: one target at a time (%s and %s)\n", o.target, a);
            return 2;
        } else {
            o.target = a;
            continue;
        }
        i++;
    }
    if (config != NULL) {
        if (o.target != NULL) {
            fprintf(stderr, "moat check: --config FILE or a target, not both\n");
            return 2;
        }
    } else if (o.target == NULL) {
        fputs(usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (o.html != NULL) {
        char title[600];
        snprintf(title, sizeof(title), "moat check %s%s", config ? "--config " : "",
                 config ? config : o.target);
        page = moat_check_page_new(title);
        if (page == NULL) {
            fputs("moat check: out of memory\n", stderr);
            return 1;
        }
    }
    int first = 1;
    int code = config != NULL ? check_config(&o, config) : run_one(&o, &first);
    if (page != NULL) {
        /* Written when anything was checked (a check stopped by its bounds too, marked so);
         * an error before that leaves no page. */
        if (page_checks > 0 && write_page(o.html) != 0) {
            code = 1;
        }
        moat_check_page_free(page);
        page = NULL;
    }
    return code;
}

/* Check o->target and report it (JSON documents after the first are comma-separated, for
 * --config's array). Returns the exit code. */
static int run_one(struct moat_check_opts *o, int *first)
{
    struct moat_check_scan *s = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_check_scan_run(o, &s, &err);
    if (!moat_ok(rc)) {
        char line[1024];
        fprintf(stderr, "moat check: %s\n", moat_err_str(&err, line, sizeof(line)));
        return rc.kind == MOAT_E_USAGE ? 2 : 1;
    }
    return report_one(o, s, first);
}

/* Judge and report s (freed here). */
static int report_one(const struct moat_check_opts *o, struct moat_check_scan *s, int *first)
{
    struct moat_check_report *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        moat_check_scan_free(s);
        fputs("moat check: out of memory\n", stderr);
        return 1;
    }
    moat_check_judge(s, r);
    int code = r->exit_code;
    if (!*first) {
        fputs(o->json ? ",\n" : "\n", stdout);
    }
    *first = 0;
    if (o->json) {
        if (moat_check_report_json(s, r, stdout) != 0) {
            fputs("moat check: cannot write the JSON document\n", stderr);
            code = 1;
        }
    } else {
        moat_check_report_text(s, r, stdout);
    }
    if (page != NULL && moat_check_page_add(page, s, r) != 0) {
        fputs("moat check: out of memory for the page\n", stderr);
        code = 1;
    } else if (page != NULL) {
        page_checks++;
    }
    free(r);
    moat_check_scan_free(s);
    return code;
}
