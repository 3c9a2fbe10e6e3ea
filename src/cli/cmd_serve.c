/*
 * cmd_serve.c: `moat serve` argument parsing. The logic lives in serve/; this file only turns
 * flags into a configuration source.
 */
#include "cli/cmd.h"

#include "core/log.h"
#include "pki/fsutil.h"
#include "serve/conf.h"
#include "serve/server.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LISTEN 8
#define MAX_CLIENT_CA 8
#define MAX_CERT_CA 8
#define MAX_TO 64

struct serve_flags {
    const char *config;
    const char *listen[MAX_LISTEN];
    size_t nlisten;
    const char *client_ca[MAX_CLIENT_CA]; /* --client-ca, repeatable */
    size_t nclient_ca;
    const char *cert_ca[MAX_CERT_CA]; /* --ca, repeatable: the config's cert_ca */
    size_t ncert_ca;
    int client_auth; /* --client-auth: 0 not given, 1 optional, 2 require */
    const char *root, *cert, *key, *state, *access_log, *log_level, *redirect_http, *name;
    const char *acme, *acme_ca, *acme_ca_bundle, *acme_resolver; /* quick mode with ACME */
    const char *to[MAX_TO];                                      /* moat proxy --to, repeatable */
    size_t nto;
    int proxy; /* run as `moat proxy` */
    unsigned workers;
    int check, demo, allow_root;
    char demo_root[PATH_MAX];
};

static const char serve_usage[] =
    "usage: moat serve [--config FILE] [--check]\n"
    "       moat serve --root DIR [--listen ADDR]... [--cert CERT --key KEY] [options]\n"
    "       moat serve --demo\n"
    "\n"
    "Serve static files and proxy to origins over HTTPS (TLS 1.2/1.3, HTTP/1.1).\n"
    "Reverse proxy, mutual TLS and several sites: use a config file (docs/config.md).\n"
    "\n"
    "  --config FILE        read the configuration file (see docs/config.md)\n"
    "  --check              validate the configuration, certificates and keys, then exit;\n"
    "                       writes nothing (says what serve would create)\n"
    "  --root DIR           serve DIR (quick mode, one site for any name)\n"
    "  --listen ADDR        address to listen on, e.g. 127.0.0.1:8443, [::1]:8443, :443\n"
    "                       (repeatable; default 127.0.0.1:8443)\n"
    "  --cert CERT --key KEY  certificate (leaf + chain, PEM) and its private key; without\n"
    "                       them moat's local CA issues a certificate for localhost\n"
    "  --ca FILE            the CA (root) that issued --cert, e.g. your own root.pem: moat\n"
    "                       checks the chain against it and refuses a certificate that does\n"
    "                       not lead there (repeatable; `cert_ca` in a config file)\n"
    "  --name NAME          site name in quick mode (default: any name)\n"
    "  --acme EMAIL         quick mode with a certificate from Let's Encrypt for --name:\n"
    "                       listens on :443 and :80 unless told otherwise; EMAIL is the\n"
    "                       account's contact, and you agree to the CA's terms of service\n"
    "                       (the log names them); see docs/acme.md\n"
    "  --acme-ca URL        another ACME CA for --acme: staging, or a directory URL\n"
    "  --acme-ca-bundle FILE  the roots that verify that CA's own HTTPS\n"
    "  --acme-resolver ADDR the DNS resolver for the pre-flight checks (default: the\n"
    "                       system's; for names only a private DNS knows)\n"
    "  --redirect-http ADDR also listen for plain HTTP on ADDR and redirect it to HTTPS\n"
    "  --workers N          worker threads (default: one per core)\n"
    "  --state DIR          state folder for the local CA (default $MOAT_STATE, else\n"
    "                       ~/.local/share/moat)\n"
    "  --access-log DEST    stdout, off, or a file (default off in quick mode)\n"
    "  --log-level LEVEL    error, warn, info (default) or debug\n"
    "  --client-ca FILE     ask clients for a certificate issued by the CA(s) in FILE\n"
    "                       (mutual TLS; repeatable)\n"
    "  --client-auth MODE   require (default with --client-ca): refuse clients without such\n"
    "                       a certificate at the handshake; optional: ask, log who it was,\n"
    "                       let everyone in\n"
    "  --demo               serve a demo page on https://localhost:8443 (what `make run` does)\n"
    "  --allow-root         serve as root without `user` in the config (also MOAT_ALLOW_ROOT=1,\n"
    "                       for containers where root is the only user); else refused\n"
    "\n"
    "Signals: SIGHUP reloads the configuration and certificates without dropping connections;\n"
    "SIGTERM stops accepting, lets requests in flight finish, then exits.\n";

static const char proxy_usage[] =
    "usage: moat proxy --to HOST:PORT [--to HOST:PORT]... [--listen ADDR]... [options]\n"
    "\n"
    "Put an app behind HTTPS in one command: moat terminates TLS (a certificate from its local\n"
    "CA for localhost, your --cert, or --acme) and forwards every request to the app, over\n"
    "kept-alive connections. Several --to: requests are spread over them, and one that fails\n"
    "is taken out and its idempotent requests tried on the others. For more (paths, several\n"
    "sites, health checks, WebSockets...) use moat serve --config (docs/proxy.md).\n"
    "\n"
    "  --to ADDR            the app: HOST:PORT, http://HOST:PORT, https://HOST:PORT (verified)\n"
    "                       or unix:/PATH (repeatable)\n"
    "  --listen ADDR        address to listen on (repeatable; default 127.0.0.1:8443)\n"
    "  --cert CERT --key KEY, --ca FILE, --name NAME, --acme EMAIL, --acme-ca URL,\n"
    "  --redirect-http ADDR, --workers N, --state DIR, --access-log DEST, --log-level LEVEL,\n"
    "  --client-ca FILE, --client-auth MODE, --check, --allow-root: as for moat serve (moat\n"
    "  serve --help)\n";

static const char demo_page[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<title>moat is serving</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}"
    "code{background:#eee;padding:0 .3em}</style></head>\n"
    "<body><h1>moat is serving this page over HTTPS</h1>\n"
    "<p>The certificate comes from moat's local CA, created on first start in the state "
    "folder. Trust its <code>ca/root.pem</code> and browsers will show a padlock.</p>\n"
    "<p>Serve your own folder: <code>moat serve --root DIR</code>, or write a config:</p>\n"
    "<pre>site example.com {\n    cert example.pem example.key\n    root /srv/www\n}</pre>\n"
    "</body></html>\n";

/* The quick-mode equivalent of `cert_ca` in a site block (plain data owned by the config). */
static moat_rc site_cert_ca(struct moat_conf_site *s, const struct serve_flags *f,
                            struct moat_err *err)
{
    s->cert_ca = calloc(f->ncert_ca, sizeof(char *));
    if (s->cert_ca == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < f->ncert_ca; i++) {
        s->cert_ca[i] = strdup(f->cert_ca[i]);
        if (s->cert_ca[i] == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        s->ncert_ca = i + 1;
    }
    return MOAT_RC_OK;
}

/* The quick-mode equivalent of `client_auth` + `client_ca` in a site block: the site is plain
 * data owned by the configuration, freed by moat_conf_free. */
static moat_rc site_client_auth(struct moat_conf_site *s, const struct serve_flags *f,
                                struct moat_err *err)
{
    s->client_ca = calloc(f->nclient_ca, sizeof(char *));
    if (s->client_ca == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < f->nclient_ca; i++) {
        s->client_ca[i] = strdup(f->client_ca[i]);
        if (s->client_ca[i] == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        s->nclient_ca = i + 1;
    }
    s->client_auth = f->client_auth != 0 ? f->client_auth : 2;
    return MOAT_RC_OK;
}

/* --acme EMAIL: the quick-mode site gets its certificate from the ACME CA, answering HTTP-01 on
 * :80 and TLS-ALPN-01 on :443 unless --listen / --redirect-http say otherwise. */
static moat_rc quick_acme(struct moat_conf *c, const struct serve_flags *f, struct moat_err *err)
{
    struct moat_conf_acme *a = &c->acme;
    char *email = strdup(f->acme);
    char *ca = strdup(f->acme_ca ? f->acme_ca : "production");
    if (email == NULL || ca == NULL) {
        free(email);
        free(ca);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    a->emails = calloc(1, sizeof(char *));
    a->cas = calloc(1, sizeof(char *));
    if (a->emails == NULL || a->cas == NULL) {
        free(email);
        free(ca);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    a->emails[a->nemails++] = email;
    a->cas[a->ncas++] = ca;
    a->agree_tos = 1;
    if ((f->acme_ca_bundle != NULL && (a->ca_bundle = strdup(f->acme_ca_bundle)) == NULL) ||
        (f->acme_resolver != NULL && (a->resolver = strdup(f->acme_resolver)) == NULL)) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    snprintf(a->where, sizeof(a->where), "--acme");
    c->sites[c->nsites - 1].acme = 1;
    if (f->nlisten == 0) {
        const char *https[] = {":443"};
        MOAT_TRY(moat_conf_set_listen(c, https, 1, err));
    }
    if (f->redirect_http == NULL && (c->redirect_listen = strdup(":80")) == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (!moat_ok(moat_conf_acme_defaults(c))) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}

static moat_rc conf_from_flags(void *arg, struct moat_conf **out, struct moat_err *err)
{
    struct serve_flags *f = arg;
    struct moat_conf *c = moat_conf_new();
    if (c == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = MOAT_RC_OK;
    if (f->nlisten > 0) {
        rc = moat_conf_set_listen(c, f->listen, f->nlisten, err);
    } else if (f->demo) {
        const char *demo_listen[] = {"localhost:8443"};
        rc = moat_conf_set_listen(c, demo_listen, 1, err);
    }
    const char *root = f->demo ? f->demo_root : f->root;
    if (moat_ok(rc) && f->proxy) {
        rc = moat_conf_add_proxy_site(c, f->name ? f->name : "*", f->to, f->nto, f->cert, f->key,
                                      err);
    } else if (moat_ok(rc)) {
        rc = moat_conf_add_site(c, f->name ? f->name : "*", root, f->cert, f->key, err);
    }
    if (moat_ok(rc) && f->cert == NULL) {
        /* A locally issued certificate never faces the public: no HSTS pinning on names
         * like localhost that every developer reuses. */
        c->sites[c->nsites - 1].hsts = 0;
    }
    if (moat_ok(rc) && f->acme != NULL) {
        rc = quick_acme(c, f, err);
    }
    if (moat_ok(rc) && f->nclient_ca > 0) {
        rc = site_client_auth(&c->sites[c->nsites - 1], f, err);
    }
    if (moat_ok(rc) && f->ncert_ca > 0) {
        rc = site_cert_ca(&c->sites[c->nsites - 1], f, err);
    }
    if (moat_ok(rc) && f->workers > 0) {
        c->workers = f->workers;
    }
    if (moat_ok(rc) && f->redirect_http != NULL) {
        c->redirect_listen = strdup(f->redirect_http);
        rc = c->redirect_listen ? MOAT_RC_OK
                                : moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "nomem");
    }
    if (moat_ok(rc) && f->state != NULL) {
        c->state_dir = strdup(f->state);
    }
    if (moat_ok(rc) && (f->access_log != NULL || f->demo)) {
        free(c->access_log);
        c->access_log = strdup(f->access_log ? f->access_log : "stdout");
    }
    if (moat_ok(rc) && f->log_level != NULL) {
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        int found = 0;
        for (int i = 0; i < 4; i++) {
            if (strcmp(f->log_level, levels[i]) == 0) {
                c->log_level = (enum moat_log_level)i;
                found = 1;
            }
        }
        if (!found) {
            rc = moat_err_set(err, MOAT_E_USAGE, __FILE__, __LINE__,
                              "--log-level must be error, warn, info or debug");
        }
    }
    if (!moat_ok(rc)) {
        moat_conf_free(c);
        return rc;
    }
    *out = c;
    return MOAT_RC_OK;
}

/* The demo root lives in the state folder, so `make run` needs nothing but the binary. */
static moat_rc prepare_demo(struct serve_flags *f, struct moat_err *err)
{
    struct moat_conf *tmp = moat_conf_new();
    if (tmp == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (f->state) {
        tmp->state_dir = strdup(f->state);
    }
    char *state = NULL;
    moat_rc rc = moat_server_state_dir(tmp, &state, err);
    moat_conf_free(tmp);
    MOAT_TRY(rc);
    snprintf(f->demo_root, sizeof(f->demo_root), "%s/demo", state);
    free(state);
    rc = moat_fs_mkdir_p(f->demo_root, 0755, err);
    if (moat_ok(rc)) {
        char index[PATH_MAX + 16];
        snprintf(index, sizeof(index), "%s/index.html", f->demo_root);
        rc = moat_fs_write_atomic(index, demo_page, sizeof(demo_page) - 1, 0644, err);
    }
    return rc;
}

static int parse_unsigned(const char *s, unsigned *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || v == 0 || v > 1024 || s[0] == '-') {
        return 0;
    }
    *out = (unsigned)v;
    return 1;
}

static int run(int argc, char **argv, int proxy)
{
    struct serve_flags f;
    memset(&f, 0, sizeof(f));
    f.proxy = proxy;
    const char *cmd = proxy ? "moat proxy" : "moat serve";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        char name[64];
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) == 0 && eq != NULL && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            v = eq + 1;
            a = name;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(proxy ? proxy_usage : serve_usage, stdout);
            return 0;
        }
        if (strcmp(a, "--check") == 0) {
            f.check = 1;
            continue;
        }
        if (strcmp(a, "--demo") == 0) {
            f.demo = 1;
            continue;
        }
        if (strcmp(a, "--allow-root") == 0) {
            f.allow_root = 1;
            continue;
        }
        static const char *const valued[] = {
            "--config",  "--listen",         "--root",          "--cert",    "--key",
            "--state",   "--access-log",     "--log-level",     "--workers", "--redirect-http",
            "--name",    "--client-ca",      "--client-auth",   "--ca",      "--acme",
            "--acme-ca", "--acme-ca-bundle", "--acme-resolver", "--to"};
        int known = 0;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
            known |= strcmp(a, valued[k]) == 0;
        }
        /* --to is moat proxy's; --root, --config and --demo are moat serve's */
        if (proxy ? (strcmp(a, "--root") == 0 || strcmp(a, "--config") == 0 ||
                     strcmp(a, "--demo") == 0)
                  : strcmp(a, "--to") == 0) {
            known = 0;
        }
        if (!known) {
            fprintf(stderr, "%s: unknown option \"%s\" (see %s --help)\n", cmd, argv[i], cmd);
            return 2;
        }
        if (v == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value (see %s --help)\n", cmd, a, cmd);
                return 2;
            }
            v = argv[++i];
        }
        if (strcmp(a, "--to") == 0) {
            if (f.nto == MAX_TO || v[0] == '\0') {
                fprintf(stderr, "moat proxy: --to takes HOST:PORT, at most %d times\n", MAX_TO);
                return 2;
            }
            f.to[f.nto++] = v;
        } else if (strcmp(a, "--config") == 0) {
            f.config = v;
        } else if (strcmp(a, "--listen") == 0) {
            if (f.nlisten == MAX_LISTEN) {
                fprintf(stderr, "%s: at most %d --listen addresses\n", cmd, MAX_LISTEN);
                return 2;
            }
            f.listen[f.nlisten++] = v;
        } else if (strcmp(a, "--root") == 0) {
            f.root = v;
        } else if (strcmp(a, "--cert") == 0) {
            f.cert = v;
        } else if (strcmp(a, "--key") == 0) {
            f.key = v;
        } else if (strcmp(a, "--state") == 0) {
            f.state = v;
        } else if (strcmp(a, "--access-log") == 0) {
            f.access_log = v;
        } else if (strcmp(a, "--log-level") == 0) {
            f.log_level = v;
        } else if (strcmp(a, "--redirect-http") == 0) {
            f.redirect_http = v;
        } else if (strcmp(a, "--name") == 0) {
            f.name = v;
        } else if (strcmp(a, "--acme") == 0) {
            f.acme = v;
        } else if (strcmp(a, "--acme-ca") == 0) {
            f.acme_ca = v;
        } else if (strcmp(a, "--acme-ca-bundle") == 0) {
            f.acme_ca_bundle = v;
        } else if (strcmp(a, "--acme-resolver") == 0) {
            f.acme_resolver = v;
        } else if (strcmp(a, "--client-ca") == 0) {
            if (f.nclient_ca == MAX_CLIENT_CA || v[0] == '\0') {
                fprintf(stderr, "%s: --client-ca takes a CA file, at most %d times\n", cmd,
                        MAX_CLIENT_CA);
                return 2;
            }
            f.client_ca[f.nclient_ca++] = v;
        } else if (strcmp(a, "--ca") == 0) {
            if (f.ncert_ca == MAX_CERT_CA || v[0] == '\0') {
                fprintf(stderr, "%s: --ca takes a CA file, at most %d times\n", cmd, MAX_CERT_CA);
                return 2;
            }
            f.cert_ca[f.ncert_ca++] = v;
        } else if (strcmp(a, "--client-auth") == 0) {
            f.client_auth = strcmp(v, "optional") == 0 ? 1 : strcmp(v, "require") == 0 ? 2 : -1;
            if (f.client_auth < 0) {
                fprintf(stderr, "%s: --client-auth takes require or optional, not \"%s\"\n", cmd,
                        v);
                return 2;
            }
        } else if (strcmp(a, "--workers") == 0 && !parse_unsigned(v, &f.workers)) {
            fprintf(stderr, "%s: --workers must be a number from 1 to 1024\n", cmd);
            return 2;
        }
    }
    if (f.config != NULL && (f.root || f.cert || f.key || f.nlisten || f.demo || f.name ||
                             f.nclient_ca || f.client_auth || f.ncert_ca)) {
        fprintf(stderr,
                "%s: --config cannot be mixed with --root/--listen/--cert/--key/"
                "--ca/--demo/--name/--client-ca/--client-auth: put those in the file\n",
                cmd);
        return 2;
    }
    if ((f.acme_ca != NULL || f.acme_ca_bundle != NULL || f.acme_resolver != NULL) &&
        f.acme == NULL) {
        fprintf(stderr,
                "%s: --acme-ca, --acme-ca-bundle and --acme-resolver go with "
                "--acme EMAIL\n",
                cmd);
        return 2;
    }
    if (f.acme != NULL) {
        const char *at = strchr(f.acme, '@');
        if (at == NULL || at == f.acme || at[1] == '\0' || strchr(f.acme, ' ') != NULL) {
            fprintf(stderr,
                    "moat serve: --acme takes your e-mail address (the ACME account's "
                    "contact), not \"%s\"\n",
                    f.acme);
            return 2;
        }
        if (f.name == NULL || strcmp(f.name, "*") == 0 || f.cert != NULL || f.config != NULL) {
            fprintf(stderr,
                    "%s: --acme needs --name NAME (the public name to certify) "
                    "and no --cert or --config (in a config file: tls acme)\n",
                    cmd);
            return 2;
        }
    }
    if (f.ncert_ca > 0 && f.cert == NULL) {
        fprintf(stderr,
                "%s: --ca names the CA of --cert, and there is no --cert "
                "(without one, moat's local CA issues the certificate)\n",
                cmd);
        return 2;
    }
    if (f.demo && f.check) {
        /* The demo writes its page into the state folder; a check writes nothing. */
        fprintf(stderr,
                "%s: --check checks a configuration (--config FILE, or "
                "--root DIR ...); --demo has none to check\n",
                cmd);
        return 2;
    }
    if (f.client_auth != 0 && f.nclient_ca == 0) {
        fprintf(stderr,
                "%s: --client-auth needs --client-ca FILE (the CA that issues "
                "the client certificates)\n",
                cmd);
        return 2;
    }
    if (proxy && f.nto == 0) {
        fprintf(stderr, "moat proxy: say where the app listens: --to HOST:PORT (e.g. --to "
                        "127.0.0.1:8000; see moat proxy --help)\n");
        return 2;
    }
    if (!proxy && f.config == NULL && f.root == NULL && !f.demo) {
        fprintf(stderr,
                "%s: say what to serve: --config FILE, --root DIR or --demo "
                "(see moat serve --help)\n",
                cmd);
        return 2;
    }
    if ((f.cert == NULL) != (f.key == NULL)) {
        fprintf(stderr,
                "%s: --cert and --key go together (the certificate and its "
                "private key)\n",
                cmd);
        return 2;
    }
    struct moat_err err = {0};
    char msg[2048];
    if (f.demo && !moat_ok(prepare_demo(&f, &err))) {
        fprintf(stderr, "%s: %s\n", cmd, moat_err_str(&err, msg, sizeof(msg)));
        return 1;
    }
    struct moat_conf_source src = {.path = f.config, .from_flags = conf_from_flags, .arg = &f};
    if (f.check) {
        moat_rc rc = moat_server_check(&src, &err);
        if (!moat_ok(rc)) {
            fprintf(stderr, "%s\n", moat_err_str(&err, msg, sizeof(msg)));
            return rc.kind == MOAT_E_CONFIG || rc.kind == MOAT_E_USAGE ? 2 : 1;
        }
        printf("%s: ok\n", f.config ? f.config : "command line");
        return 0;
    }
    moat_rc rc = moat_server_run(
        &src, (f.demo ? MOAT_SERVE_DEMO : 0u) | (f.allow_root ? MOAT_SERVE_ALLOW_ROOT : 0u), &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "%s: %s\n", cmd, moat_err_str(&err, msg, sizeof(msg)));
        return rc.kind == MOAT_E_CONFIG || rc.kind == MOAT_E_USAGE ? 2 : 1;
    }
    return 0;
}

int moat_cmd_serve(int argc, char **argv)
{
    return run(argc, argv, 0);
}

int moat_cmd_proxy(int argc, char **argv)
{
    return run(argc, argv, 1);
}
