/*
 * nginx.c: see nginx.h. The file is read into a tree of directives (words, quoted strings,
 * `;`, blocks, `#` comments), includes spliced in; then each server block is turned into the
 * facts a live check would have found. The TLS library's part (compression, renegotiation,
 * fallback SCSV, the extended master secret) is this machine's OpenSSL 3's behaviour, which
 * nginx does not change.
 */
#include "check/nginx.h"

#include "check/certfacts.h"
#include "check/suites.h"
#include "pki/verify.h"

#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ARGS 16
#define MAX_DEPTH 8
#define MAX_FILE (4 * 1024 * 1024)

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
    char dirname[4096];
};

static int read_text(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    char *buf = malloc(MAX_FILE + 1);
    size_t n = buf != NULL ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > MAX_FILE) {
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

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

static moat_rc parse_file(const char *path, const char *base, int depth, struct dir **out,
                          struct moat_err *err);

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
                    moat_rc rc = parse_file(g.gl_pathv[i], base, depth + 1, &inc, err);
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

static moat_rc parse_file(const char *path, const char *base, int depth, struct dir **out,
                          struct moat_err *err)
{
    *out = NULL;
    if (depth > MAX_DEPTH) {
        return moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                            "%s: includes nested too deep (a loop?)", path);
    }
    char *text = NULL;
    size_t len = 0;
    if (read_text(path, &text, &len) != 0) {
        return moat_err_sys(err, MOAT_E_IO, errno, __FILE__, __LINE__, "cannot read %s", path);
    }
    struct lexer lx = {text, text + len, path, 1, ""};
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

static void resolve_path(const char *base, const char *p, char *out, size_t cap)
{
    if (p[0] == '/') {
        snprintf(out, cap, "%s", p);
    } else {
        snprintf(out, cap, "%.4000s/%.4000s", base, p);
    }
}

/* What this OpenSSL makes of the directives: versions and suites, as nginx sets them. */
#define KEY_RSA 1
#define KEY_EC 2
#define KEY_DSA 4

/* Whether a suite can be used at all with these keys and settings: its authentication needs a
 * certificate of that kind, DHE needs ssl_dhparam in nginx 1.22, PSK and SRP need a callback
 * nginx never sets. */
static int usable(const SSL_CIPHER *c, unsigned keys, int dh)
{
    int auth = SSL_CIPHER_get_auth_nid(c), kx = SSL_CIPHER_get_kx_nid(c);
    if (kx == NID_kx_psk || kx == NID_kx_ecdhe_psk || kx == NID_kx_dhe_psk ||
        kx == NID_kx_rsa_psk || kx == NID_kx_srp || auth == NID_auth_psk || auth == NID_auth_srp) {
        return 0;
    }
    if (kx == NID_kx_dhe && !dh) {
        return 0;
    }
    return auth == NID_auth_any || auth == NID_auth_null ||
           (auth == NID_auth_rsa && (keys & KEY_RSA)) ||
           (auth == NID_auth_ecdsa && (keys & KEY_EC)) ||
           (auth == NID_auth_dss && (keys & KEY_DSA));
}

static void library_facts(const struct tls_conf *t, unsigned keys, struct moat_check_scan *s)
{
    static const struct {
        const char *word;
        enum moat_check_ver v;
        int proto;
    } vers[] = {{"SSLv2", MOAT_VER_SSL2, 0},
                {"SSLv3", MOAT_VER_SSL3, SSL3_VERSION},
                {"TLSv1", MOAT_VER_TLS10, TLS1_VERSION},
                {"TLSv1.1", MOAT_VER_TLS11, TLS1_1_VERSION},
                {"TLSv1.2", MOAT_VER_TLS12, TLS1_2_VERSION},
                {"TLSv1.3", MOAT_VER_TLS13, TLS1_3_VERSION}};
    SSL_CTX *x = SSL_CTX_new(TLS_server_method()); /* this machine's defaults, as nginx's */
    if (x == NULL) {
        return;
    }
    int lib_min = (int)SSL_CTX_get_min_proto_version(x);
    int ciphers_ok = SSL_CTX_set_cipher_list(x, t->ciphers) == 1;
    if (t->suites13[0] != '\0') {
        (void)SSL_CTX_set_ciphersuites(x, t->suites13);
    }
    /* The security level the cipher string asks for also bounds the versions (at level 1 and
     * up, OpenSSL 3 refuses TLS 1.0 and 1.1, whose handshake signs with SHA-1). */
    int level = SSL_CTX_get_security_level(x);
    char words[220];
    snprintf(words, sizeof(words), " %s ", t->protocols);
    for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++) {
        char w[16];
        snprintf(w, sizeof(w), " %s ", vers[i].word);
        int listed = strstr(words, w) != NULL;
        int lib = vers[i].proto != 0 && (lib_min == 0 || vers[i].proto >= lib_min) &&
                  (vers[i].proto >= TLS1_2_VERSION || level == 0) &&
                  vers[i].proto != SSL3_VERSION; /* Debian's OpenSSL has no SSLv3 */
        s->versions[vers[i].v] = listed && lib ? MOAT_YES : MOAT_NO;
    }
    STACK_OF(SSL_CIPHER) *sk = ciphers_ok ? SSL_CTX_get_ciphers(x) : NULL;
    for (int i = 0; sk != NULL && i < sk_SSL_CIPHER_num(sk); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
        uint16_t code = SSL_CIPHER_get_protocol_id(c);
        /* The first version the suite can be used with, as OpenSSL's table says. */
        const char *cv = SSL_CIPHER_get_version(c);
        int min = strcmp(cv, "TLSv1.3") == 0   ? TLS1_3_VERSION
                  : strcmp(cv, "TLSv1.2") == 0 ? TLS1_2_VERSION
                                               : TLS1_VERSION;
        for (int v = MOAT_VER_TLS10; v < MOAT_VER_COUNT; v++) {
            int proto = (int)moat_check_ver_wire((enum moat_check_ver)v);
            int is13 = min == TLS1_3_VERSION;
            if (s->versions[v] != MOAT_YES || (v == MOAT_VER_TLS13) != is13 || proto < min ||
                s->nsuites[v] >= MOAT_CHECK_MAX_SUITES) {
                continue;
            }
            if (!usable(c, keys, t->dhparam[0] != '\0')) {
                continue;
            }
            s->suites[v][s->nsuites[v]++] = code;
        }
    }
    for (int v = MOAT_VER_TLS10; v <= MOAT_VER_TLS12; v++) {
        s->server_order[v] =
            s->nsuites[v] > 1 ? (t->prefer_server ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
    }
    SSL_CTX_free(x);
    ERR_clear_error();
}

static void cert_of_file(const char *path, const char *cafile, struct moat_check_scan *s)
{
    BIO *b = BIO_new_file(path, "r");
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *x = NULL;
    while (b != NULL && chain != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            break;
        }
    }
    BIO_free(b);
    ERR_clear_error();
    if (chain == NULL || sk_X509_num(chain) == 0) {
        s->offline_vkind = MOAT_V_OTHER;
        snprintf(s->offline_detail, sizeof(s->offline_detail),
                 "%.300s: no PEM certificate could be read", path);
        sk_X509_pop_free(chain, X509_free);
        return;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    moat_check_cert_facts(leaf, chain, s->host, &s->cert);
    s->cert_read = MOAT_YES;
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    if (st != NULL && vc != NULL && X509_STORE_set_default_paths(st) == 1 &&
        (cafile == NULL || X509_STORE_load_file(st, cafile) == 1) &&
        X509_STORE_CTX_init(vc, st, leaf, chain) == 1) {
        X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(vc);
        X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_SERVER);
        X509_VERIFY_PARAM_set1_host(vp, s->host, 0);
        if (X509_verify_cert(vc) == 1) {
            s->verified = 1;
            s->offline_vkind = MOAT_V_OK;
        } else {
            int e = X509_STORE_CTX_get_error(vc);
            s->offline_vkind = moat_verify_kind_from_x509(e, X509_STORE_CTX_get_current_cert(vc));
            snprintf(s->offline_detail, sizeof(s->offline_detail),
                     "%.200s: %s (OpenSSL verify error %d)", path, X509_verify_cert_error_string(e),
                     e);
        }
    }
    X509_STORE_CTX_free(vc);
    X509_STORE_free(st);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
}

/* The kinds of key the certificates' leaves hold. */
static unsigned key_kinds(const struct tls_conf *t, const char *base)
{
    unsigned keys = 0;
    for (int i = 0; i < t->ncerts; i++) {
        char p[8200];
        resolve_path(base, t->certs[i], p, sizeof(p));
        BIO *b = BIO_new_file(p, "r");
        X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        EVP_PKEY *k = x != NULL ? X509_get0_pubkey(x) : NULL;
        if (k != NULL) {
            keys |= EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_is_a(k, "RSA-PSS") ? KEY_RSA
                    : EVP_PKEY_is_a(k, "EC")                               ? KEY_EC
                    : EVP_PKEY_is_a(k, "DSA")                              ? KEY_DSA
                                                                           : 0;
        }
        X509_free(x);
        BIO_free(b);
    }
    ERR_clear_error();
    return keys;
}

static int dh_bits_of(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *p = b != NULL ? PEM_read_bio_Parameters(b, NULL) : NULL;
    int bits = p != NULL ? EVP_PKEY_get_bits(p) : 0;
    EVP_PKEY_free(p);
    BIO_free(b);
    ERR_clear_error();
    return bits;
}

static struct moat_check_scan *server_scan(const struct dir *server, const struct tls_conf *http,
                                           const char *base, const char *cafile,
                                           enum moat_check_tri redirect)
{
    struct moat_check_scan *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    struct tls_conf t = *http;
    apply(server->child, &t);
    int h2 = t.http2;
    unsigned port = 0;
    (void)listens_tls(server->child, &port, &h2);
    s->offline = 1;
    snprintf(s->source, sizeof(s->source), "%s", server->where);
    snprintf(s->host, sizeof(s->host), "%s", first_name(server->child));
    s->port = port ? port : 443;
    snprintf(s->addr, sizeof(s->addr), "offline");
    for (int v = 0; v < MOAT_VER_COUNT; v++) {
        s->server_order[v] = MOAT_UNKNOWN;
    }
    library_facts(&t, key_kinds(&t, base), s);
    /* OpenSSL 3 itself: no compression, RFC 5746, RFC 7507, RFC 7627, no heartbeat, no client
     * renegotiation (nginx refuses it). */
    s->compression = s->client_reneg = s->heartbeat = s->heartbleed = MOAT_NO;
    s->secure_reneg = s->fallback_scsv = s->ems = MOAT_YES;
    s->alpn_h2 = h2 ? MOAT_YES : MOAT_NO;
    s->alpn_http11 = MOAT_YES;
    s->resume_ticket13 = s->versions[MOAT_VER_TLS13] == MOAT_YES
                             ? (t.tickets || t.cache ? MOAT_YES : MOAT_NO)
                             : MOAT_UNKNOWN;
    s->resume_ticket12 =
        s->versions[MOAT_VER_TLS12] == MOAT_YES ? (t.tickets ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
    s->resume_id12 =
        s->versions[MOAT_VER_TLS12] == MOAT_YES ? (t.cache ? MOAT_YES : MOAT_NO) : MOAT_UNKNOWN;
    s->early_data = t.early ? 16384 : 0;
    s->ocsp_stapled = t.stapling ? MOAT_YES : MOAT_NO;
    if (t.dhparam[0] != '\0') {
        char p[8200];
        resolve_path(base, t.dhparam, p, sizeof(p));
        s->dh_bits = dh_bits_of(p);
    }
    size_t ng;
    const struct moat_check_named *g = moat_check_groups(&ng);
    const char *curves =
        strcmp(t.curves, "auto") == 0 ? "X25519:prime256v1:X448:secp521r1:secp384r1" : t.curves;
    for (size_t i = 0; i < ng; i++) {
        static const struct {
            const char *ossl, *iana;
        } alias[] = {{"prime256v1", "secp256r1"}, {"P-256", "secp256r1"}, {"P-384", "secp384r1"},
                     {"P-521", "secp521r1"},      {"X25519", "x25519"},   {"X448", "x448"}};
        char list[300];
        snprintf(list, sizeof(list), ":%s:", curves);
        int on_list = strcasestr(list, g[i].name) != NULL;
        for (size_t k = 0; k < sizeof(alias) / sizeof(alias[0]) && !on_list; k++) {
            char w[32];
            snprintf(w, sizeof(w), ":%s:", alias[k].ossl);
            on_list = strcmp(alias[k].iana, g[i].name) == 0 && strcasestr(list, w) != NULL;
        }
        if (on_list && g[i].code < 0x0100) {
            if (s->versions[MOAT_VER_TLS13] == MOAT_YES && s->ngroups13 < MOAT_CHECK_MAX_GROUPS) {
                s->groups13[s->ngroups13++] = g[i].code;
            }
            if (s->ngroups12 < MOAT_CHECK_MAX_GROUPS) {
                s->groups12[s->ngroups12++] = g[i].code;
            }
        }
    }
    s->cert_read = MOAT_UNKNOWN;
    if (t.ncerts == 0) {
        s->offline_vkind = MOAT_V_OTHER;
        snprintf(s->offline_detail, sizeof(s->offline_detail),
                 "%s: a TLS listener without ssl_certificate (nginx refuses to start)",
                 server->where);
    } else {
        char p[8200];
        resolve_path(base, t.certs[0], p, sizeof(p));
        cert_of_file(p, cafile, s);
    }
    /* What a GET / would carry: add_header applies to 2xx and 3xx answers. */
    s->status = 200;
    s->hsts_max_age = -1;
    if (t.hsts[0] != '\0') {
        moat_check_hsts_parse(s, t.hsts);
    }
    s->hdr_nosniff = t.nosniff;
    s->hdr_frame = t.frame;
    s->hdr_csp = t.csp;
    s->hdr_referrer = t.referrer;
    s->http_compressed = t.gzip;
    s->http_redirects = redirect;
    s->http_status = redirect == MOAT_YES ? 301 : 0;
    s->caa = MOAT_UNKNOWN;
    return s;
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
    MOAT_TRY(parse_file(path, basebuf, 0, &top, err));
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
