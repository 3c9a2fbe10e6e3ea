/*
 * nginx.c: see nginx.h. The file is read into a tree of directives (words, quoted strings,
 * `;`, blocks, `#` comments), includes spliced in; then each server block says what it asks
 * for (offline.h), nginx 1.22's defaults filling in what it leaves out.
 */
#include "check/nginx.h"

#include "check/offline.h"

#include <glob.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ARGS 16
#define MAX_DEPTH 8

struct dir {
    char *argv[MAX_ARGS];
    int argc;
    struct dir *child; /* first directive of its block; NULL: a simple directive */
    int has_block;
    struct dir *next;
    char where[300]; /* "file:line" */
};

static void dir_free(struct dir *d)
{
    while (d != NULL) {
        struct dir *n = d->next;
        for (int i = 0; i < d->argc; i++) {
            free(d->argv[i]);
        }
        dir_free(d->child);
        free(d);
        d = n;
    }
}

struct lexer {
    const char *p, *end, *file;
    int line;
    int *files; /* files read so far for this configuration, includes too */
};

/* The next token into tok: a word, a quoted string (quotes removed), or one of ; { }.
 * 0 at the end, -1 on an error (unterminated quote, a token too long). */
static int token(struct lexer *lx, char *tok, size_t cap, int *quoted)
{
    *quoted = 0;
    for (;;) {
        while (lx->p < lx->end &&
               (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' || *lx->p == '\n')) {
            lx->line += *lx->p == '\n';
            lx->p++;
        }
        if (lx->p < lx->end && *lx->p == '#') {
            while (lx->p < lx->end && *lx->p != '\n') {
                lx->p++;
            }
            continue;
        }
        break;
    }
    if (lx->p >= lx->end) {
        return 0;
    }
    size_t n = 0;
    char c = *lx->p;
    if (c == ';' || c == '{' || c == '}') {
        tok[0] = c;
        tok[1] = '\0';
        lx->p++;
        return 1;
    }
    if (c == '"' || c == '\'') {
        *quoted = 1;
        lx->p++;
        while (lx->p < lx->end && *lx->p != c) {
            if (*lx->p == '\\' && lx->p + 1 < lx->end) {
                lx->p++;
            }
            lx->line += *lx->p == '\n';
            if (n + 1 >= cap) {
                return -1;
            }
            tok[n++] = *lx->p++;
        }
        if (lx->p >= lx->end) {
            return -1;
        }
        lx->p++;
        tok[n] = '\0';
        return 1;
    }
    while (lx->p < lx->end && !strchr(" \t\r\n;{}#", *lx->p)) {
        if (n + 1 >= cap) {
            return -1;
        }
        tok[n++] = *lx->p++;
    }
    tok[n] = '\0';
    return 1;
}

/* Bounds the includes: a file that includes itself twice would otherwise be read 2^depth
 * times. */
#define MAX_FILES 256

static moat_rc parse_file(const char *path, const char *base, int depth, int *files,
                          struct dir **out, struct moat_err *err);

/* Directives until the end of the block (or of the file when top). */
static moat_rc parse_block(struct lexer *lx, const char *base, int depth, int top, struct dir **out,
                           struct moat_err *err)
{
    struct dir *head = NULL, **tail = &head;
    char tok[4096];
    int quoted;
    struct dir *cur = NULL;
    for (;;) {
        int t = token(lx, tok, sizeof(tok), &quoted);
        if (t < 0) {
            dir_free(head);
            dir_free(cur);
            return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                                "%s:%d: a quoted string that does not end, or a word over 4 KiB",
                                lx->file, lx->line);
        }
        if (t == 0) {
            if (!top || cur != NULL) {
                dir_free(head);
                dir_free(cur);
                return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                                    "%s:%d: the file ends inside a directive or block", lx->file,
                                    lx->line);
            }
            break;
        }
        if (!quoted && strcmp(tok, "}") == 0) {
            if (top || cur != NULL) {
                dir_free(head);
                dir_free(cur);
                return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                                    "%s:%d: an unexpected \"}\"", lx->file, lx->line);
            }
            break;
        }
        if (cur == NULL) {
            cur = calloc(1, sizeof(*cur));
            if (cur == NULL) {
                dir_free(head);
                return moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            }
            snprintf(cur->where, sizeof(cur->where), "%s:%d", lx->file, lx->line);
        }
        if (!quoted && (strcmp(tok, ";") == 0 || strcmp(tok, "{") == 0)) {
            if (cur->argc == 0) {
                dir_free(head);
                dir_free(cur);
                return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                                    "%s:%d: \"%s\" with no directive before it", lx->file, lx->line,
                                    tok);
            }
            if (tok[0] == '{') {
                cur->has_block = 1;
                if (depth >= 32) {
                    dir_free(head);
                    dir_free(cur);
                    return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                                        "%s:%d: blocks nested too deep", lx->file, lx->line);
                }
                moat_rc rc = parse_block(lx, base, depth + 1, 0, &cur->child, err);
                if (!moat_ok(rc)) {
                    dir_free(head);
                    dir_free(cur);
                    return rc;
                }
            }
            if (!cur->has_block && strcmp(cur->argv[0], "include") == 0 && cur->argc == 2) {
                /* Splice the included files' directives in place of the include. */
                char pat[8192];
                if (cur->argv[1][0] == '/') {
                    snprintf(pat, sizeof(pat), "%s", cur->argv[1]);
                } else {
                    snprintf(pat, sizeof(pat), "%s/%s", base, cur->argv[1]);
                }
                glob_t g;
                int gr = glob(pat, 0, NULL, &g);
                for (size_t i = 0; gr == 0 && i < g.gl_pathc; i++) {
                    struct dir *inc = NULL;
                    moat_rc rc = parse_file(g.gl_pathv[i], base, depth + 1, lx->files, &inc, err);
                    if (!moat_ok(rc)) {
                        globfree(&g);
                        dir_free(head);
                        dir_free(cur);
                        return rc;
                    }
                    *tail = inc;
                    while (*tail != NULL) {
                        tail = &(*tail)->next;
                    }
                }
                if (gr == 0) {
                    globfree(&g);
                }
                dir_free(cur);
            } else {
                *tail = cur;
                tail = &cur->next;
            }
            cur = NULL;
            continue;
        }
        if (cur->argc < MAX_ARGS) {
            cur->argv[cur->argc] = strdup(tok);
            if (cur->argv[cur->argc] == NULL) {
                dir_free(head);
                dir_free(cur);
                return moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            }
            cur->argc++;
        }
    }
    *out = head;
    return MOAT_RC_OK;
}

static moat_rc parse_file(const char *path, const char *base, int depth, int *files,
                          struct dir **out, struct moat_err *err)
{
    *out = NULL;
    if (depth > MAX_DEPTH) {
        return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                            "%s: includes nested too deep (a loop?)", path);
    }
    if (++*files > MAX_FILES) {
        return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                            "%s: more than %d files read through include (a loop?)", path,
                            MAX_FILES);
    }
    char *text = NULL;
    size_t len = 0;
    MOAT_TRY(moat_check_offline_read(path, &text, &len, err));
    struct lexer lx = {text, text + len, path, 1, files};
    moat_rc rc = parse_block(&lx, base, depth, 1, out, err);
    free(text);
    return rc;
}

int moat_check_nginx_looks(const char *text)
{
    return strstr(text, "ssl_certificate") != NULL || strstr(text, "events {") != NULL ||
           strstr(text, "worker_processes") != NULL || strstr(text, "http {") != NULL;
}

/* ---- one server block ---- */

struct tls_conf {
    char protocols[200];
    char ciphers[2048];
    char suites13[512];
    int prefer_server;
    char certs[4][4096], keys[4][4096];
    int ncerts;
    char dhparam[4096];
    char curves[256];
    int tickets, cache, early, stapling, http2;
    char hsts[512];
    int nosniff, frame, csp, referrer, gzip;
};

static void tls_defaults(struct tls_conf *t)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->protocols, sizeof(t->protocols), "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"); /* 1.22 */
    snprintf(t->ciphers, sizeof(t->ciphers), "HIGH:!aNULL:!MD5");
    snprintf(t->curves, sizeof(t->curves), "auto");
    t->tickets = 1;
}

static void join_args(const struct dir *d, int from, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = from; i < d->argc; i++) {
        int w = snprintf(out + at, cap - at, "%s%s", at ? " " : "", d->argv[i]);
        if (w < 0 || (size_t)w >= cap - at) {
            break;
        }
        at += (size_t)w;
    }
}

static int on(const struct dir *d)
{
    return d->argc >= 2 && strcmp(d->argv[1], "on") == 0;
}

/* Apply the TLS-relevant directives of one level (http or server) onto t. A level that names
 * certificates replaces the inherited ones, as nginx's array directives do. */
static void apply(const struct dir *list, struct tls_conf *t)
{
    int own_certs = 0, own_keys = 0;
    for (const struct dir *d = list; d != NULL; d = d->next) {
        const char *k = d->argv[0];
        if (d->has_block) {
            continue;
        }
        if (strcmp(k, "ssl_protocols") == 0) {
            join_args(d, 1, t->protocols, sizeof(t->protocols));
        } else if (strcmp(k, "ssl_ciphers") == 0 && d->argc >= 2) {
            snprintf(t->ciphers, sizeof(t->ciphers), "%s", d->argv[1]);
        } else if (strcmp(k, "ssl_conf_command") == 0 && d->argc >= 3 &&
                   strcasecmp(d->argv[1], "Ciphersuites") == 0) {
            snprintf(t->suites13, sizeof(t->suites13), "%s", d->argv[2]);
        } else if (strcmp(k, "ssl_prefer_server_ciphers") == 0) {
            t->prefer_server = on(d);
        } else if (strcmp(k, "ssl_certificate") == 0 && d->argc >= 2) {
            if (!own_certs) {
                t->ncerts = 0;
                own_certs = 1;
            }
            if (t->ncerts < 4) {
                snprintf(t->certs[t->ncerts++], sizeof(t->certs[0]), "%s", d->argv[1]);
            }
        } else if (strcmp(k, "ssl_certificate_key") == 0 && d->argc >= 2) {
            own_keys++;
            if (own_keys <= 4) {
                snprintf(t->keys[own_keys - 1], sizeof(t->keys[0]), "%s", d->argv[1]);
            }
        } else if (strcmp(k, "ssl_dhparam") == 0 && d->argc >= 2) {
            snprintf(t->dhparam, sizeof(t->dhparam), "%s", d->argv[1]);
        } else if (strcmp(k, "ssl_ecdh_curve") == 0 && d->argc >= 2) {
            snprintf(t->curves, sizeof(t->curves), "%s", d->argv[1]);
        } else if (strcmp(k, "ssl_session_tickets") == 0) {
            t->tickets = on(d);
        } else if (strcmp(k, "ssl_session_cache") == 0 && d->argc >= 2) {
            t->cache = strcmp(d->argv[1], "off") != 0 && strcmp(d->argv[1], "none") != 0;
        } else if (strcmp(k, "ssl_early_data") == 0) {
            t->early = on(d);
        } else if (strcmp(k, "ssl_stapling") == 0) {
            t->stapling = on(d);
        } else if (strcmp(k, "http2") == 0) {
            t->http2 = on(d);
        } else if (strcmp(k, "gzip") == 0) {
            t->gzip = on(d);
        } else if (strcmp(k, "add_header") == 0 && d->argc >= 3) {
            const char *h = d->argv[1];
            if (strcasecmp(h, "Strict-Transport-Security") == 0) {
                snprintf(t->hsts, sizeof(t->hsts), "%s", d->argv[2]);
            } else if (strcasecmp(h, "X-Content-Type-Options") == 0) {
                t->nosniff = 1;
            } else if (strcasecmp(h, "X-Frame-Options") == 0) {
                t->frame = 1;
            } else if (strcasecmp(h, "Content-Security-Policy") == 0) {
                t->csp = 1;
                t->frame |= strstr(d->argv[2], "frame-ancestors") != NULL;
            } else if (strcasecmp(h, "Referrer-Policy") == 0) {
                t->referrer = 1;
            }
        }
    }
}

/* The listener of a server block: its port, whether it is TLS, whether it offers h2. */
static int listens_tls(const struct dir *server, unsigned *port, int *h2)
{
    int tls = 0;
    *port = 0;
    for (const struct dir *d = server; d != NULL; d = d->next) {
        if (strcmp(d->argv[0], "listen") != 0 || d->argc < 2 || d->has_block) {
            continue;
        }
        const char *a = d->argv[1];
        const char *colon = strrchr(a, ':');
        unsigned p = (unsigned)strtoul(colon != NULL ? colon + 1 : a, NULL, 10);
        int ssl = 0;
        for (int i = 2; i < d->argc; i++) {
            ssl |= strcmp(d->argv[i], "ssl") == 0;
            *h2 |= strcmp(d->argv[i], "http2") == 0;
        }
        if (ssl && !tls) {
            tls = 1;
            *port = p;
        } else if (!tls && *port == 0) {
            *port = p;
        }
    }
    return tls;
}

static int redirects_to_https(const struct dir *server)
{
    for (const struct dir *d = server; d != NULL; d = d->next) {
        if (!d->has_block && strcmp(d->argv[0], "return") == 0 && d->argc >= 3 &&
            (strcmp(d->argv[1], "301") == 0 || strcmp(d->argv[1], "302") == 0 ||
             strcmp(d->argv[1], "307") == 0 || strcmp(d->argv[1], "308") == 0) &&
            strncmp(d->argv[2], "https://", 8) == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *first_name(const struct dir *server)
{
    for (const struct dir *d = server; d != NULL; d = d->next) {
        if (!d->has_block && strcmp(d->argv[0], "server_name") == 0 && d->argc >= 2 &&
            strcmp(d->argv[1], "_") != 0 && strcmp(d->argv[1], "\"\"") != 0) {
            return d->argv[1];
        }
    }
    return "localhost";
}

/* The versions ssl_protocols names. */
static unsigned versions_of(const char *protocols)
{
    static const struct {
        const char *word;
        enum moat_check_ver v;
    } vers[] = {{"SSLv2", MOAT_VER_SSL2},    {"SSLv3", MOAT_VER_SSL3},
                {"TLSv1", MOAT_VER_TLS10},   {"TLSv1.1", MOAT_VER_TLS11},
                {"TLSv1.2", MOAT_VER_TLS12}, {"TLSv1.3", MOAT_VER_TLS13}};
    char words[220];
    snprintf(words, sizeof(words), " %s ", protocols);
    unsigned set = 0;
    for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++) {
        char w[16];
        snprintf(w, sizeof(w), " %s ", vers[i].word);
        if (strstr(words, w) != NULL) {
            set |= 1u << vers[i].v;
        }
    }
    return set;
}

static struct moat_check_scan *server_scan(const struct dir *server, const struct tls_conf *http,
                                           const char *base, const char *cafile,
                                           enum moat_check_tri redirect)
{
    struct tls_conf t = *http;
    apply(server->child, &t);
    int h2 = t.http2;
    unsigned port = 0;
    (void)listens_tls(server->child, &port, &h2);
    struct moat_check_intent in;
    moat_check_intent_init(&in);
    snprintf(in.source, sizeof(in.source), "%s", server->where);
    snprintf(in.host, sizeof(in.host), "%s", first_name(server->child));
    in.port = port;
    in.versions = versions_of(t.protocols);
    in.ciphers = t.ciphers;
    in.suites13 = t.suites13[0] != '\0' ? t.suites13 : NULL;
    in.groups = strcmp(t.curves, "auto") == 0 ? NULL : t.curves; /* auto: OpenSSL's list */
    in.server_order = t.prefer_server;
    char certs[4][8200], dh[8200];
    for (int i = 0; i < t.ncerts; i++) {
        moat_check_offline_path(base, t.certs[i], certs[i], sizeof(certs[i]));
        in.certs[in.ncerts++] = certs[i];
    }
    in.no_cert = "a TLS listener without ssl_certificate (nginx refuses to start)";
    if (t.dhparam[0] != '\0') { /* nginx 1.22 offers DHE only with ssl_dhparam */
        moat_check_offline_path(base, t.dhparam, dh, sizeof(dh));
        in.dh_file = dh;
    }
    in.tickets = t.tickets;
    in.cache = t.cache;
    in.early_bytes = t.early ? 16384 : 0; /* nginx's NGX_SSL_BUFSIZE */
    in.stapling = t.stapling;
    in.alpn_h2 = h2;
    in.alpn_http11 = 1;
    /* What a GET / would carry: add_header applies to 2xx and 3xx answers. */
    in.hsts = t.hsts[0] != '\0' ? t.hsts : NULL;
    in.nosniff = t.nosniff;
    in.frame = t.frame;
    in.csp = t.csp;
    in.referrer = t.referrer;
    in.compressed = t.gzip;
    in.redirect = redirect;
    return moat_check_offline_scan(&in, cafile);
}

moat_rc moat_check_nginx(const char *path, const char *cafile, struct moat_check_scan **out,
                         size_t max, size_t *n, struct moat_err *err)
{
    *n = 0;
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    const char *base = dirname(copy);
    char basebuf[4096];
    snprintf(basebuf, sizeof(basebuf), "%s", base);
    struct dir *top = NULL;
    int files = 0;
    MOAT_TRY(parse_file(path, basebuf, 0, &files, &top, err));
    const struct dir *http = NULL;
    for (const struct dir *d = top; d != NULL; d = d->next) {
        if (d->has_block && strcmp(d->argv[0], "http") == 0) {
            http = d;
        }
    }
    /* A file that is only server blocks (a conf.d file) counts as the http block. */
    const struct dir *servers = http != NULL ? http->child : top;
    struct tls_conf ht;
    tls_defaults(&ht);
    apply(servers, &ht);
    /* A plain server block that answers with a redirect to https:// is the redirect; plain
     * blocks on port 80 that do not redirect mean it is missing. */
    enum moat_check_tri redirect = MOAT_UNKNOWN;
    for (const struct dir *d = servers; d != NULL; d = d->next) {
        unsigned port = 0;
        int h2 = 0;
        if (!d->has_block || strcmp(d->argv[0], "server") != 0 ||
            listens_tls(d->child, &port, &h2)) {
            continue;
        }
        if (redirects_to_https(d->child)) {
            redirect = MOAT_YES;
        } else if (port == 80 && redirect == MOAT_UNKNOWN) {
            redirect = MOAT_NO;
        }
    }
    for (const struct dir *d = servers; d != NULL && *n < max; d = d->next) {
        unsigned port = 0;
        int h2 = 0;
        if (!d->has_block || strcmp(d->argv[0], "server") != 0 ||
            !listens_tls(d->child, &port, &h2)) {
            continue;
        }
        struct moat_check_scan *s = server_scan(d, &ht, basebuf, cafile, redirect);
        if (s == NULL) {
            dir_free(top);
            return moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        }
        out[(*n)++] = s;
    }
    dir_free(top);
    if (*n == 0) {
        return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                            "%s: no server block listens with ssl (nothing to judge)", path);
    }
    return MOAT_RC_OK;
}
