/*
 * haproxy.c: see haproxy.h. The file is split into sections of lines of words, as HAProxy's
 * own parser splits them (quotes, backslash escapes, "$VAR" inside double quotes, `#`
 * comments); then each TLS bind line is resolved against the global settings and HAProxy
 * 2.6's defaults (ssl-min-ver TLSv1.2, the server's suite order, tickets and a session cache,
 * no ALPN unless named, DHE only with parameters), and each of its certificates becomes one
 * intent (offline.h). Certificates are looked for as HAProxy does: crt-base for relative
 * names, a folder's files in alphabetical order, "NAME.rsa"/"NAME.ecdsa" bundles, crt-list
 * files with their per-certificate options, "NAME.ocsp" for stapling.
 *
 * Relative names with no crt-base are taken from the configuration's folder: HAProxy takes
 * them from its working directory, which a file cannot say.
 */
#include "check/haproxy.h"

#include "check/offline.h"
#include "pki/fsutil.h"

#include <ctype.h>
#include <dirent.h>
#include <libgen.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_WORDS 64
#define MAX_WORD 4096
#define MAX_CRTS 64

struct line {
    char *w[MAX_WORDS];
    int n;
    int no; /* its line number */
};

enum kind { K_GLOBAL, K_DEFAULTS, K_FRONTEND, K_LISTEN, K_BACKEND, K_OTHER };

struct section {
    enum kind kind;
    char name[128];
    int defaults; /* the defaults section in effect (index), -1 for none */
    struct line *lines;
    size_t n, cap;
};

struct file {
    char path[4096];
    char dir[4096];
    struct section *s;
    size_t n, cap;
};

static void line_free(struct line *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->w[i]);
    }
    l->n = 0;
}

static void file_free(struct file *f)
{
    for (size_t i = 0; i < f->n; i++) {
        for (size_t j = 0; j < f->s[i].n; j++) {
            line_free(&f->s[i].lines[j]);
        }
        free(f->s[i].lines);
    }
    free(f->s);
    f->s = NULL;
    f->n = f->cap = 0;
}

static int append(char *buf, size_t *n, const char *s, size_t len)
{
    if (*n + len >= MAX_WORD) {
        return -1;
    }
    memcpy(buf + *n, s, len);
    *n += len;
    return 0;
}

/* One line into words, as HAProxy 2.6's parser makes them. 0, or -1 with why set. */
static int split(const char *p, const char *end, struct line *l, const char **why)
{
    char buf[MAX_WORD];
    l->n = 0;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        if (p >= end || *p == '#') {
            return 0;
        }
        size_t n = 0;
        int dq = 0, sq = 0, comment = 0;
        while (p < end && (dq || sq || (*p != ' ' && *p != '\t'))) {
            char c = *p;
            int bad = 0;
            if (c == '#' && !dq && !sq) {
                comment = 1;
                break;
            } else if (c == '\\' && !sq && p + 1 < end) {
                char e = p[1];
                char m = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
                bad = append(buf, &n, &m, 1);
                p += 2;
            } else if (c == '"' && !sq) {
                dq = !dq;
                p++;
            } else if (c == '\'' && !dq) {
                sq = !sq;
                p++;
            } else if (c == '$' && dq) {
                /* "$NAME" or "${NAME}": the environment's value (empty when unset). */
                const char *q = p + 1;
                int brace = q < end && *q == '{';
                q += brace;
                const char *s = q;
                while (q < end && (isalnum((unsigned char)*q) || *q == '_')) {
                    q++;
                }
                if (q == s || (brace && (q >= end || *q != '}'))) {
                    bad = append(buf, &n, "$", 1);
                    p++;
                } else {
                    char name[128];
                    snprintf(name, sizeof(name), "%.*s", (int)(q - s), s);
                    const char *v = getenv(name);
                    bad = v != NULL ? append(buf, &n, v, strlen(v)) : 0;
                    p = q + brace;
                }
            } else {
                bad = append(buf, &n, &c, 1);
                p++;
            }
            if (bad) {
                *why = "a word over 4 KiB";
                return -1;
            }
        }
        if (dq || sq) {
            *why = "a quoted string that does not end on its line";
            return -1;
        }
        if (l->n >= MAX_WORDS) {
            *why = "more than 64 words on one line";
            return -1;
        }
        buf[n] = '\0';
        l->w[l->n] = strdup(buf);
        if (l->w[l->n] == NULL) {
            *why = "out of memory";
            return -1;
        }
        l->n++;
        if (comment) {
            return 0;
        }
    }
}

static enum kind section_kind(const char *w)
{
    static const char *const other[] = {"userlist",    "peers",       "resolvers", "mailers",
                                        "program",     "http-errors", "ring",      "cache",
                                        "log-forward", "crt-store",   "traces"};
    if (strcmp(w, "global") == 0) {
        return K_GLOBAL;
    } else if (strcmp(w, "defaults") == 0) {
        return K_DEFAULTS;
    } else if (strcmp(w, "frontend") == 0) {
        return K_FRONTEND;
    } else if (strcmp(w, "listen") == 0) {
        return K_LISTEN;
    } else if (strcmp(w, "backend") == 0) {
        return K_BACKEND;
    }
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        if (strcmp(w, other[i]) == 0) {
            return K_OTHER;
        }
    }
    return (enum kind) - 1;
}

static moat_rc parse(const char *path, struct file *f, struct moat_err *err)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s", path);
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    snprintf(f->dir, sizeof(f->dir), "%s", dirname(copy));
    char *text = NULL;
    size_t len = 0;
    MOAT_TRY(moat_check_offline_read(path, &text, &len, err));
    int defaults = -1, no = 0;
    moat_rc rc = MOAT_RC_OK;
    for (const char *p = text, *end = text + len; p < end && moat_ok(rc); no++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        const char *why = NULL;
        struct line l = {.no = no + 1};
        if (split(p, le > p && le[-1] == '\r' ? le - 1 : le, &l, &why) != 0) {
            line_free(&l);
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__, "%s:%d: %s", path, no + 1,
                              why);
            break;
        }
        p = nl != NULL ? nl + 1 : end;
        if (l.n == 0) {
            continue;
        }
        enum kind k = section_kind(l.w[0]);
        if ((int)k >= 0) {
            if (f->n == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 8;
                struct section *s = realloc(f->s, cap * sizeof(*s));
                if (s == NULL) {
                    line_free(&l);
                    rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                    break;
                }
                f->s = s;
                f->cap = cap;
            }
            struct section *s = &f->s[f->n];
            memset(s, 0, sizeof(*s));
            s->kind = k;
            snprintf(s->name, sizeof(s->name), "%s", l.n > 1 ? l.w[1] : "");
            s->defaults = k == K_DEFAULTS ? -1 : defaults;
            if (k == K_DEFAULTS) {
                defaults = (int)f->n;
            }
            f->n++;
            line_free(&l);
            continue;
        }
        if (f->n == 0) {
            rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                              "%s:%d: \"%s\" before any section (an HAProxy file starts with "
                              "global, defaults, frontend, listen or backend)",
                              path, no + 1, l.w[0]);
            line_free(&l);
            break;
        }
        struct section *s = &f->s[f->n - 1];
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            struct line *nl2 = realloc(s->lines, cap * sizeof(*nl2));
            if (nl2 == NULL) {
                line_free(&l);
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                break;
            }
            s->lines = nl2;
            s->cap = cap;
        }
        s->lines[s->n++] = l;
    }
    free(text);
    if (!moat_ok(rc)) {
        file_free(f);
    }
    return rc;
}

int moat_check_haproxy_looks(const char *text)
{
    int section = 0, bind = 0;
    for (const char *p = text; *p != '\0';) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        size_t n = strcspn(p, " \t\r\n");
        if ((n == 6 && strncmp(p, "global", 6) == 0) ||
            (n == 8 && strncmp(p, "defaults", 8) == 0) ||
            (n == 8 && strncmp(p, "frontend", 8) == 0) ||
            (n == 7 && strncmp(p, "backend", 7) == 0)) {
            section = 1;
        } else if (n == 6 && strncmp(p, "listen", 6) == 0) {
            /* HAProxy's "listen NAME", not a moat file's "listen ADDR:PORT" */
            const char *q = p + n;
            while (*q == ' ' || *q == '\t') {
                q++;
            }
            size_t m = strcspn(q, " \t\r\n");
            section |= m > 0 && memchr(q, ':', m) == NULL && !isdigit((unsigned char)*q);
        } else if (n == 4 && strncmp(p, "bind", 4) == 0) {
            bind = 1;
        }
        p = strchr(p, '\n');
        if (p == NULL) {
            break;
        }
        p++;
    }
    return section && bind;
}

/* ---- what a bind line asks ---- */

struct opts {
    int ssl;
    int min, max; /* enum moat_check_ver; -1 not said */
    unsigned no;  /* versions turned off */
    int no_tickets, prefer_client, early;
    const char *ciphers, *suites13, *curves, *ecdhe, *alpn;
};

static void opts_init(struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->min = o->max = -1;
}

/* A version as ssl-min-ver names it ("TLSv1.2"), or as the flags' suffix does ("tlsv12" in
 * force-tlsv12 and no-tlsv12). -1 for neither. */
static int version_word(const char *w, int flag)
{
    static const char *const names[] = {"", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
    static const char *const flags[] = {"", "sslv3", "tlsv10", "tlsv11", "tlsv12", "tlsv13"};
    for (int v = MOAT_VER_SSL3; v < MOAT_VER_COUNT; v++) {
        if (strcmp(w, flag ? flags[v] : names[v]) == 0) {
            return v;
        }
    }
    return -1;
}

/* The bind keywords that take a value (HAProxy 2.6's), so the value is not read as one. */
static int takes_value(const char *k)
{
    static const char *const v[] = {"accept-netscaler-cip",
                                    "alpn",
                                    "backlog",
                                    "ca-file",
                                    "ca-ignore-err",
                                    "ca-sign-file",
                                    "ca-sign-pass",
                                    "ca-verify-file",
                                    "ciphers",
                                    "ciphersuites",
                                    "client-sigalgs",
                                    "crl-file",
                                    "crt",
                                    "crt-ignore-err",
                                    "crt-list",
                                    "curves",
                                    "ecdhe",
                                    "expose-fd",
                                    "gid",
                                    "group",
                                    "id",
                                    "interface",
                                    "label",
                                    "level",
                                    "maxconn",
                                    "mode",
                                    "mss",
                                    "name",
                                    "namespace",
                                    "nice",
                                    "npn",
                                    "process",
                                    "proto",
                                    "quic-cc-algo",
                                    "severity-output",
                                    "shards",
                                    "sigalgs",
                                    "ssl-max-ver",
                                    "ssl-min-ver",
                                    "tcp-ut",
                                    "thread",
                                    "tls-ticket-keys",
                                    "uid",
                                    "user",
                                    "verify"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (strcmp(k, v[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Collects the crt and crt-list values of a bind line. */
struct crtnames {
    const char *crt[MAX_CRTS];
    size_t ncrt;
    const char *lists[8];
    size_t nlists;
};

/* Read the keywords w[from..n) into o (and the certificate names into c, when not NULL). */
static void read_opts(char *const *w, int from, int n, struct opts *o, struct crtnames *c)
{
    for (int i = from; i < n; i++) {
        const char *k = w[i];
        const char *v = i + 1 < n ? w[i + 1] : NULL;
        if (takes_value(k)) {
            if (v == NULL) {
                break;
            }
            i++;
        }
        if (strcmp(k, "ssl") == 0) {
            o->ssl = 1;
        } else if (strcmp(k, "ssl-min-ver") == 0 && v != NULL) {
            o->min = version_word(v, 0);
        } else if (strcmp(k, "ssl-max-ver") == 0 && v != NULL) {
            o->max = version_word(v, 0);
        } else if (strncmp(k, "force-", 6) == 0 && version_word(k + 6, 1) >= 0) {
            o->min = o->max = version_word(k + 6, 1); /* that version only */
        } else if (strncmp(k, "no-", 3) == 0 && version_word(k + 3, 1) >= 0) {
            o->no |= 1u << version_word(k + 3, 1);
        } else if (strcmp(k, "no-tls-tickets") == 0) {
            o->no_tickets = 1;
        } else if (strcmp(k, "prefer-client-ciphers") == 0) {
            o->prefer_client = 1;
        } else if (strcmp(k, "allow-0rtt") == 0) {
            o->early = 1;
        } else if (strcmp(k, "ciphers") == 0) {
            o->ciphers = v;
        } else if (strcmp(k, "ciphersuites") == 0) {
            o->suites13 = v;
        } else if (strcmp(k, "curves") == 0) {
            o->curves = v;
        } else if (strcmp(k, "ecdhe") == 0) {
            o->ecdhe = v;
        } else if (strcmp(k, "alpn") == 0) {
            o->alpn = v;
        } else if (strcmp(k, "crt") == 0 && c != NULL && c->ncrt < MAX_CRTS) {
            c->crt[c->ncrt++] = v;
        } else if (strcmp(k, "crt-list") == 0 && c != NULL && c->nlists < 8) {
            c->lists[c->nlists++] = v;
        }
    }
}

/* Fill in what `o` leaves unsaid from `d` (a crt-list line from its bind line, a bind line
 * from ssl-default-bind-*). The flags add up, as HAProxy ORs them. */
static void inherit(struct opts *o, const struct opts *d)
{
    o->min = o->min >= 0 ? o->min : d->min;
    o->max = o->max >= 0 ? o->max : d->max;
    o->no |= d->no;
    o->no_tickets |= d->no_tickets;
    o->prefer_client |= d->prefer_client;
    o->early |= d->early;
    o->ciphers = o->ciphers != NULL ? o->ciphers : d->ciphers;
    o->suites13 = o->suites13 != NULL ? o->suites13 : d->suites13;
    o->curves = o->curves != NULL ? o->curves : d->curves;
    o->ecdhe = o->ecdhe != NULL ? o->ecdhe : d->ecdhe;
    o->alpn = o->alpn != NULL ? o->alpn : d->alpn;
}

static unsigned versions_of(const struct opts *o)
{
    int min = o->min >= 0 ? o->min : MOAT_VER_TLS12; /* HAProxy 2.2 and later */
    int max = o->max >= 0 ? o->max : MOAT_VER_TLS13;
    unsigned set = 0;
    for (int v = min; v <= max; v++) {
        set |= 1u << v;
    }
    /* With ssl-min-ver or ssl-max-ver said anywhere, HAProxy ignores no-tlsv1x (and warns). */
    return o->min >= 0 || o->max >= 0 ? set : set & ~o->no;
}

/* Whether a comma-separated ALPN list names p. */
static int alpn_has(const char *list, const char *p)
{
    if (list == NULL) {
        return 0;
    }
    size_t pl = strlen(p);
    for (const char *q = list; *q != '\0';) {
        size_t n = strcspn(q, ",");
        if (n == pl && strncmp(q, p, n) == 0) {
            return 1;
        }
        q += n + (q[n] == ',');
    }
    return 0;
}

/* ---- the global section ---- */

struct global {
    struct opts dflt; /* ssl-default-bind-* */
    const char *dh_file;
    int dh_param;   /* tune.ssl.default-dh-param; 0: none */
    long cachesize; /* tune.ssl.cachesize */
    const char *crt_base;
    int ocsp_files; /* ssl-load-extra-files looks for NAME.ocsp */
};

static void read_global(const struct file *f, struct global *g)
{
    memset(g, 0, sizeof(*g));
    opts_init(&g->dflt);
    g->cachesize = 20000;
    g->ocsp_files = 1;
    for (size_t i = 0; i < f->n; i++) {
        if (f->s[i].kind != K_GLOBAL) {
            continue;
        }
        for (size_t j = 0; j < f->s[i].n; j++) {
            const struct line *l = &f->s[i].lines[j];
            const char *k = l->w[0], *v = l->n > 1 ? l->w[1] : NULL;
            if (v == NULL) {
                continue;
            } else if (strcmp(k, "ssl-default-bind-ciphers") == 0) {
                g->dflt.ciphers = v;
            } else if (strcmp(k, "ssl-default-bind-ciphersuites") == 0) {
                g->dflt.suites13 = v;
            } else if (strcmp(k, "ssl-default-bind-curves") == 0) {
                g->dflt.curves = v;
            } else if (strcmp(k, "ssl-default-bind-options") == 0) {
                read_opts(l->w, 1, l->n, &g->dflt, NULL);
            } else if (strcmp(k, "ssl-dh-param-file") == 0) {
                g->dh_file = v;
            } else if (strcmp(k, "tune.ssl.default-dh-param") == 0) {
                g->dh_param = (int)strtol(v, NULL, 10);
            } else if (strcmp(k, "tune.ssl.cachesize") == 0) {
                g->cachesize = strtol(v, NULL, 10);
            } else if (strcmp(k, "crt-base") == 0) {
                g->crt_base = v;
            } else if (strcmp(k, "ssl-load-extra-files") == 0) {
                g->ocsp_files = 0;
                for (int w = 1; w < l->n; w++) {
                    g->ocsp_files |= strcmp(l->w[w], "all") == 0 || strcmp(l->w[w], "ocsp") == 0;
                }
            }
        }
    }
}

/* ---- certificates ---- */

struct crt {
    char path[4096];
    struct opts o; /* a crt-list line's own options, over its bind line's */
};

struct crts {
    struct crt v[MAX_CRTS];
    size_t n;
    struct line *held; /* crt-list lines, whose words the options point into */
    size_t nheld, capheld;
    char missing[600]; /* the first name that did not resolve to a certificate */
};

static void crts_free(struct crts *c)
{
    for (size_t i = 0; i < c->nheld; i++) {
        line_free(&c->held[i]);
    }
    free(c->held);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void add_crt(struct crts *c, const char *path, const struct opts *o)
{
    if (c->n < MAX_CRTS) {
        snprintf(c->v[c->n].path, sizeof(c->v[c->n].path), "%s", path);
        c->v[c->n].o = *o;
        c->n++;
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A crt value: a file, a folder of them, or a bundle's base name. */
static void expand_crt(struct crts *c, const char *path, const struct opts *o)
{
    if (is_file(path)) {
        add_crt(c, path, o);
        return;
    }
    if (is_dir(path)) {
        static const char *const skip[] = {".key", ".issuer", ".ocsp", ".sctl"};
        DIR *d = opendir(path);
        char *names[MAX_CRTS];
        size_t n = 0;
        for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL && n < MAX_CRTS;) {
            size_t l = strlen(e->d_name);
            int reserved = e->d_name[0] == '.';
            for (size_t k = 0; k < sizeof(skip) / sizeof(skip[0]) && !reserved; k++) {
                size_t sl = strlen(skip[k]);
                reserved = l >= sl && strcmp(e->d_name + l - sl, skip[k]) == 0;
            }
            if (!reserved && (names[n] = strdup(e->d_name)) != NULL) {
                n++;
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        qsort(names, n, sizeof(names[0]), by_name);
        for (size_t i = 0; i < n; i++) {
            char p[4096];
            snprintf(p, sizeof(p), "%.2000s/%.2000s", path, names[i]);
            if (is_file(p)) {
                add_crt(c, p, o);
            }
            free(names[i]);
        }
        return;
    }
    int found = 0;
    static const char *const bundle[] = {".rsa", ".ecdsa", ".dsa"};
    for (size_t k = 0; k < sizeof(bundle) / sizeof(bundle[0]); k++) {
        char p[4096];
        snprintf(p, sizeof(p), "%.4000s%s", path, bundle[k]);
        if (is_file(p)) {
            add_crt(c, p, o);
            found = 1;
        }
    }
    if (!found && c->missing[0] == '\0') {
        snprintf(c->missing, sizeof(c->missing), "%.500s", path);
    }
}

/* A crt-list file: "CRT [OPTIONS...] [SNI filters...]" per line. */
static void expand_list(struct crts *c, const char *path, const char *base, const struct opts *o)
{
    char *text = NULL;
    size_t len = 0;
    struct moat_err e = {0};
    if (!moat_ok(moat_check_offline_read(path, &text, &len, &e))) {
        if (c->missing[0] == '\0') {
            snprintf(c->missing, sizeof(c->missing), "%.500s (a crt-list)", path);
        }
        return;
    }
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        struct line l = {0};
        const char *why = NULL;
        int ok = split(p, le, &l, &why) == 0;
        p = nl != NULL ? nl + 1 : end;
        if (!ok || l.n == 0) {
            line_free(&l);
            continue;
        }
        if (c->nheld == c->capheld) {
            size_t cap = c->capheld ? c->capheld * 2 : 8;
            struct line *h = realloc(c->held, cap * sizeof(*h));
            if (h == NULL) {
                line_free(&l);
                break;
            }
            c->held = h;
            c->capheld = cap;
        }
        c->held[c->nheld] = l;
        struct line *kept = &c->held[c->nheld++];
        struct opts own;
        opts_init(&own);
        if (kept->n > 1 && kept->w[1][0] == '[') {
            /* "[alpn h2 ssl-min-ver TLSv1.3]": the brackets may stand alone or touch words */
            char *words[MAX_WORDS];
            int nw = 0;
            for (int i = 1; i < kept->n && nw < MAX_WORDS; i++) {
                char *w = kept->w[i];
                size_t wl = strlen(w); /* "" is a word too (a quoted empty string) */
                int last = wl > 0 && w[wl - 1] == ']';
                if (w[0] == '[') {
                    w++;
                }
                if (last && w[0] != '\0') {
                    w[strlen(w) - 1] = '\0';
                }
                if (w[0] != '\0') {
                    words[nw++] = w;
                }
                if (last) {
                    break;
                }
            }
            read_opts(words, 0, nw, &own, NULL);
        }
        inherit(&own, o);
        char full[4096];
        moat_check_offline_path(base, kept->w[0], full, sizeof(full));
        expand_crt(c, full, &own);
    }
    free(text);
}

/* ---- HTTP: what GET / would carry ---- */

struct http {
    int http; /* mode http */
    const char *hsts;
    int nosniff, frame, csp, referrer, compressed;
};

static const struct section *find_backend(const struct file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->s[i].kind == K_BACKEND && strcmp(f->s[i].name, name) == 0) {
            return &f->s[i];
        }
    }
    return NULL;
}

static const char *mode_of(const struct file *f, const struct section *s)
{
    for (size_t j = 0; j < s->n; j++) {
        if (strcmp(s->lines[j].w[0], "mode") == 0 && s->lines[j].n > 1) {
            return s->lines[j].w[1];
        }
    }
    if (s->defaults >= 0) {
        return mode_of(f, &f->s[s->defaults]);
    }
    return "tcp"; /* HAProxy's default */
}

static int has_compression(const struct file *f, const struct section *s)
{
    for (size_t j = 0; j < s->n; j++) {
        const struct line *l = &s->lines[j];
        for (int i = 2; strcmp(l->w[0], "compression") == 0 && l->n > 2 &&
                        strcmp(l->w[1], "algo") == 0 && i < l->n;
             i++) {
            if (strcmp(l->w[i], "gzip") == 0 || strcmp(l->w[i], "deflate") == 0 ||
                strcmp(l->w[i], "raw-deflate") == 0) {
                return 1;
            }
        }
    }
    return s->defaults >= 0 && has_compression(f, &f->s[s->defaults]);
}

/* An answer made by HAProxy itself, whatever the request: an unconditional return, deny or
 * redirect. http-response rules do not run on it. */
static int answers_itself(const struct section *s)
{
    for (size_t j = 0; j < s->n; j++) {
        const struct line *l = &s->lines[j];
        if (strcmp(l->w[0], "http-request") != 0 || l->n < 2 ||
            (strcmp(l->w[1], "return") != 0 && strcmp(l->w[1], "deny") != 0 &&
             strcmp(l->w[1], "redirect") != 0)) {
            continue;
        }
        int cond = 0;
        for (int i = 2; i < l->n; i++) {
            cond |= strcmp(l->w[i], "if") == 0 || strcmp(l->w[i], "unless") == 0;
        }
        if (!cond) {
            return 1;
        }
    }
    return 0;
}

/* The header rules of one section: http-after-response ones always, http-response ones when
 * a server answered. */
static void header_rules(const struct section *s, int served, struct http *h)
{
    for (size_t j = 0; j < s->n; j++) {
        const struct line *l = &s->lines[j];
        int after = strcmp(l->w[0], "http-after-response") == 0;
        if ((!after && strcmp(l->w[0], "http-response") != 0) || (!after && !served) || l->n < 4 ||
            (strcmp(l->w[1], "set-header") != 0 && strcmp(l->w[1], "add-header") != 0)) {
            continue;
        }
        const char *name = l->w[2], *v = l->w[3];
        if (strcasecmp(name, "Strict-Transport-Security") == 0) {
            h->hsts = v;
        } else if (strcasecmp(name, "X-Content-Type-Options") == 0) {
            h->nosniff = 1;
        } else if (strcasecmp(name, "X-Frame-Options") == 0) {
            h->frame = 1;
        } else if (strcasecmp(name, "Content-Security-Policy") == 0) {
            h->csp = 1;
            h->frame |= strstr(v, "frame-ancestors") != NULL;
        } else if (strcasecmp(name, "Referrer-Policy") == 0) {
            h->referrer = 1;
        }
    }
}

static void http_of(const struct file *f, const struct section *fe, struct http *h)
{
    memset(h, 0, sizeof(*h));
    h->http = strcmp(mode_of(f, fe), "http") == 0;
    if (!h->http) {
        return;
    }
    const struct section *be = NULL;
    int servers = 0;
    for (size_t j = 0; j < fe->n; j++) {
        const struct line *l = &fe->lines[j];
        if (strcmp(l->w[0], "default_backend") == 0 && l->n > 1) {
            be = find_backend(f, l->w[1]);
        }
        servers |= strcmp(l->w[0], "server") == 0 || strcmp(l->w[0], "use_backend") == 0;
    }
    int served = !answers_itself(fe) && (be != NULL || servers);
    /* A backend's rules run before the frontend's, so the frontend's value wins. */
    if (be != NULL && served) {
        header_rules(be, 1, h);
    }
    header_rules(fe, served, h);
    h->compressed = served && (has_compression(f, fe) || (be != NULL && has_compression(f, be)));
}

/* The port of a bind address list's first address ("127.0.0.1:443", ":443", "[::]:443"). */
static unsigned bind_port(const char *addrs)
{
    char first[256];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(addrs, ","), addrs);
    const char *colon = strrchr(first, ':');
    return colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
}

static int redirects_to_https(const struct section *s)
{
    for (size_t j = 0; j < s->n; j++) {
        const struct line *l = &s->lines[j];
        int at =
            strcmp(l->w[0], "redirect") == 0 ? 1
            : strcmp(l->w[0], "http-request") == 0 && l->n > 1 && strcmp(l->w[1], "redirect") == 0
                ? 2
                : 0;
        if (at == 0 || l->n < at + 2) {
            continue;
        }
        const char *how = l->w[at], *to = l->w[at + 1];
        if ((strcmp(how, "scheme") == 0 && strcasecmp(to, "https") == 0) ||
            ((strcmp(how, "prefix") == 0 || strcmp(how, "location") == 0) &&
             strncasecmp(to, "https://", 8) == 0)) {
            return 1;
        }
    }
    return 0;
}

/* Plain HTTP's answer across the file: a plain bind in http mode that redirects to https is
 * the redirect; one on port 80 that does not means it is missing. */
static enum moat_check_tri plain_redirect(const struct file *f)
{
    enum moat_check_tri r = MOAT_UNKNOWN;
    for (size_t i = 0; i < f->n; i++) {
        const struct section *s = &f->s[i];
        if ((s->kind != K_FRONTEND && s->kind != K_LISTEN) || strcmp(mode_of(f, s), "http") != 0) {
            continue;
        }
        for (size_t j = 0; j < s->n; j++) {
            const struct line *l = &s->lines[j];
            if (strcmp(l->w[0], "bind") != 0 || l->n < 2) {
                continue;
            }
            struct opts o;
            opts_init(&o);
            read_opts(l->w, 2, l->n, &o, NULL);
            if (o.ssl) {
                continue;
            }
            if (redirects_to_https(s)) {
                r = MOAT_YES;
            } else if (bind_port(l->w[1]) == 80 && r == MOAT_UNKNOWN) {
                r = MOAT_NO;
            }
        }
    }
    return r;
}

/* An OCSP answer HAProxy would staple: a successful response in DER (HAProxy warns about and
 * skips any other; an empty file only enables updates through its CLI). */
static int ocsp_answer(const char *path)
{
    unsigned char *der = NULL;
    size_t len = 0;
    struct moat_err e = {0};
    if (!moat_ok(moat_fs_read_file(path, 1024 * 1024, &der, &len, &e))) {
        return 0;
    }
    const unsigned char *p = der;
    OCSP_RESPONSE *r = len > 0 ? d2i_OCSP_RESPONSE(NULL, &p, (long)len) : NULL;
    int ok = r != NULL && OCSP_response_status(r) == OCSP_RESPONSE_STATUS_SUCCESSFUL;
    OCSP_RESPONSE_free(r);
    free(der);
    ERR_clear_error();
    return ok;
}

/* ---- one TLS bind line ---- */

struct ctx {
    const struct file *f;
    const struct global *g;
    const char *cafile;
    enum moat_check_tri redirect;
    struct moat_check_scan **out;
    size_t max, *n;
};

static int bind_scans(struct ctx *c, const struct section *s, const struct line *l)
{
    struct opts o;
    opts_init(&o);
    struct crtnames names = {0};
    read_opts(l->w, 2, l->n, &o, &names);
    if (!o.ssl) {
        return 0;
    }
    inherit(&o, &c->g->dflt);
    struct http h;
    http_of(c->f, s, &h);
    char base[4096], dh[4096];
    if (c->g->crt_base != NULL) {
        moat_check_offline_path(c->f->dir, c->g->crt_base, base, sizeof(base));
    } else {
        snprintf(base, sizeof(base), "%.4000s", c->f->dir);
    }
    if (c->g->dh_file != NULL) {
        moat_check_offline_path(c->f->dir, c->g->dh_file, dh, sizeof(dh));
    }
    struct crts *crts = calloc(1, sizeof(*crts));
    if (crts == NULL) {
        return -1;
    }
    for (size_t i = 0; i < names.ncrt; i++) {
        char full[4096];
        moat_check_offline_path(base, names.crt[i], full, sizeof(full));
        expand_crt(crts, full, &o);
    }
    for (size_t i = 0; i < names.nlists; i++) {
        char full[4096];
        moat_check_offline_path(c->f->dir, names.lists[i], full, sizeof(full));
        expand_list(crts, full, base, &o);
    }
    /* The leaves' names, which decide which certificates share a handshake. */
    struct moat_check_leaf *leaf = calloc(crts->n ? crts->n : 1, sizeof(*leaf));
    if (leaf == NULL) {
        crts_free(crts);
        free(crts);
        return -1;
    }
    for (size_t i = 0; i < crts->n; i++) {
        if (moat_check_offline_leaf(crts->v[i].path, &leaf[i]) != 0) {
            snprintf(leaf[i].name, sizeof(leaf[i].name), "localhost");
        }
    }
    int rc = 0;
    /* The certificates' checks, and one more for a name that is missing, even beside others:
     * HAProxy refuses the whole file then. */
    size_t count = crts->n + (crts->n == 0 || crts->missing[0] != '\0');
    for (size_t i = 0; i < count && *c->n < c->max && rc == 0; i++) {
        int has = i < crts->n;
        /* One check per name. Of the certificates for a name, HAProxy gives an ECDSA one to a
         * client that can verify it (every current client), so that is the one checked. */
        size_t pick = i;
        int seen = 0;
        for (size_t k = 0; has && k < crts->n && !seen; k++) {
            if (strcmp(leaf[k].name, leaf[i].name) != 0) {
                continue;
            }
            seen = k < i;
            if (leaf[k].ec && !leaf[pick].ec) {
                pick = k;
            }
        }
        if (seen) {
            continue;
        }
        const struct opts *co = has ? &crts->v[pick].o : &o;
        struct moat_check_intent in;
        moat_check_intent_init(&in);
        char why[700];
        if (has) {
            const char *file = strrchr(crts->v[pick].path, '/');
            snprintf(in.source, sizeof(in.source), "%.150s:%d (%s %.40s, crt %.60s)", c->f->path,
                     l->no, s->kind == K_LISTEN ? "listen" : "frontend", s->name,
                     file != NULL ? file + 1 : crts->v[pick].path);
            snprintf(in.host, sizeof(in.host), "%s", leaf[pick].name);
            in.certs[in.ncerts++] = crts->v[pick].path;
        } else {
            snprintf(in.source, sizeof(in.source), "%.150s:%d (%s %.40s)", c->f->path, l->no,
                     s->kind == K_LISTEN ? "listen" : "frontend", s->name);
            snprintf(in.host, sizeof(in.host), "localhost");
            if (crts->missing[0] != '\0') {
                snprintf(why, sizeof(why),
                         "%s is neither a certificate file nor a folder of them (HAProxy "
                         "refuses to start)",
                         crts->missing);
            } else {
                snprintf(why, sizeof(why),
                         "bind ... ssl with no crt or crt-list (HAProxy refuses to start)");
            }
            in.no_cert = why;
        }
        in.port = bind_port(l->w[1]);
        in.versions = versions_of(co);
        in.ciphers = co->ciphers;
        in.suites13 = co->suites13;
        in.groups = co->curves != NULL ? co->curves : co->ecdhe;
        in.server_order = !co->prefer_client;
        in.prioritize_chacha = 1; /* HAProxy sets SSL_OP_PRIORITIZE_CHACHA */
        /* DHE: parameters in the certificate file, else ssl-dh-param-file, else the built-in
         * group sized to the RSA key, at most tune.ssl.default-dh-param. */
        if (has && moat_check_offline_dh_bits(crts->v[pick].path) > 0) {
            in.dh_file = crts->v[pick].path;
        } else if (c->g->dh_file != NULL) {
            in.dh_file = dh;
        } else if (c->g->dh_param > 0) {
            int bits = has && leaf[pick].rsa_bits > 0 && leaf[pick].rsa_bits < c->g->dh_param
                           ? leaf[pick].rsa_bits
                           : c->g->dh_param;
            in.dh_bits = bits >= 4096 ? 4096 : bits >= 3072 ? 3072 : bits >= 2048 ? 2048 : 1024;
        }
        in.tickets = !co->no_tickets;
        in.cache = c->g->cachesize != 0;
        in.early_bytes = co->early ? 16384 - 1024 : 0; /* tune.bufsize less tune.maxrewrite */
        if (has && c->g->ocsp_files) {
            char ocsp[4200];
            snprintf(ocsp, sizeof(ocsp), "%s.ocsp", crts->v[pick].path);
            in.stapling = ocsp_answer(ocsp);
        }
        in.alpn_h2 = alpn_has(co->alpn, "h2");
        in.alpn_http11 = alpn_has(co->alpn, "http/1.1");
        in.http = h.http;
        in.hsts = h.hsts;
        in.nosniff = h.nosniff;
        in.frame = h.frame;
        in.csp = h.csp;
        in.referrer = h.referrer;
        in.compressed = h.compressed;
        in.redirect = c->redirect;
        struct moat_check_scan *scan = moat_check_offline_scan(&in, c->cafile);
        if (scan == NULL) {
            rc = -1;
        } else {
            c->out[(*c->n)++] = scan;
        }
    }
    free(leaf);
    crts_free(crts);
    free(crts);
    return rc;
}

moat_rc moat_check_haproxy(const char *path, const char *cafile, struct moat_check_scan **out,
                           size_t max, size_t *n, struct moat_err *err)
{
    *n = 0;
    struct file f;
    MOAT_TRY(parse(path, &f, err));
    struct global g;
    read_global(&f, &g);
    struct ctx c = {&f, &g, cafile, plain_redirect(&f), out, max, n};
    for (size_t i = 0; i < f.n && *n < max; i++) {
        const struct section *s = &f.s[i];
        if (s->kind != K_FRONTEND && s->kind != K_LISTEN) {
            continue;
        }
        for (size_t j = 0; j < s->n && *n < max; j++) {
            const struct line *l = &s->lines[j];
            if (strcmp(l->w[0], "bind") == 0 && l->n >= 2 && bind_scans(&c, s, l) != 0) {
                for (size_t k = 0; k < *n; k++) {
                    moat_check_scan_free(out[k]);
                }
                *n = 0;
                file_free(&f);
                return moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            }
        }
    }
    file_free(&f);
    if (*n == 0) {
        return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                            "%s: no bind line with ssl in a frontend or listen section (nothing "
                            "to judge)",
                            path);
    }
    return MOAT_RC_OK;
}
