/*
 * conf.c: the configuration loader, moat's directives on top of the generic reader in
 * core/cfg.c.
 *
 * Every directive is a row (struct moat_conf__spec, see conf_internal.h) in the table of its
 * family's file: conf_global.c, conf_limits.c, conf_site.c, conf_headers.c, conf_proxy.c,
 * conf_mtls.c, conf_crl.c. This file walks the parsed blocks against all those rows, so the
 * unknown/misplaced/wrong-arity/duplicate messages are the same for every directive and a new
 * directive is one row (a new family, one file); it reads the simple values (durations, sizes,
 * counts, booleans), runs the per-site and whole-file checks the families provide, and holds the
 * lifecycle and the public API of conf.h. Every failure names "file:line:col" and the fix; the
 * reference for users is docs/config.md (and docs/proxy.md), each directive documented over its
 * rows in its family's file.
 */
#include "serve/conf.h"

#include "serve/conf_internal.h"

#include "core/cfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The families, in this order: it is the order of the names in "known at the top level: ..."
 * and of the places in "it belongs ... or ...", so it is part of the messages tests pin. Rows
 * are looked up by a linear scan (about fifty rows, at load time only: cheaper than building an
 * index per load, and no state shared between loads).
 */
struct family {
    const struct moat_conf__spec *rows;
    const size_t *nrows;
};

static const struct family families[] = {
    {moat_conf__global_specs, &moat_conf__global_nspecs},
    {moat_conf__limits_specs, &moat_conf__limits_nspecs},
    {moat_conf__site_specs, &moat_conf__site_nspecs},
    {moat_conf__mtls_specs, &moat_conf__mtls_nspecs},
    {moat_conf__proxy_specs, &moat_conf__proxy_nspecs},
    {moat_conf__headers_specs, &moat_conf__headers_nspecs},
    {moat_conf__crl_specs, &moat_conf__crl_nspecs},
    {moat_conf__acme_specs, &moat_conf__acme_nspecs},
    {moat_conf__http2_specs, &moat_conf__http2_nspecs},
    {moat_conf__stream_specs, &moat_conf__stream_nspecs},
    {moat_conf__guard_specs, &moat_conf__guard_nspecs},
    {moat_conf__encode_specs, &moat_conf__encode_nspecs},
    {moat_conf__cache_specs, &moat_conf__cache_nspecs},
    {moat_conf__cluster_specs, &moat_conf__cluster_nspecs},
};

#define NFAMILIES (sizeof(families) / sizeof(families[0]))

typedef moat_rc (*site_check_fn)(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                 struct moat_conf_site *s);
typedef moat_rc (*conf_check_fn)(struct moat_conf__loader *L);

/* Run after each site block, in this order: when several things are wrong the first one here
 * is the one reported. */
static const site_check_fn site_checks[] = {
    moat_conf__content_check_site, /* root or proxy (conf_site.c) */
    moat_conf__proxy_check_site,   /* proxy_* needs proxy; proxy_timeout default */
    moat_conf__cert_check_site,    /* cert_ca needs cert (conf_site.c) */
    moat_conf__acme_check_site,    /* tls acme: no cert, names a CA can issue (conf_acme.c) */
};

/* Run after the whole file was read, in this order. */
static const conf_check_fn conf_checks[] = {
    moat_conf__site_check_conf,    /* at least one site */
    moat_conf__limits_check_conf,  /* request_line <= header_bytes */
    moat_conf__mtls_check_conf,    /* each site's client_* directives add up */
    moat_conf__global_check_conf,  /* redirect_http's port is not a listen port */
    moat_conf__http2_check_conf,   /* `http2 off ADDRESS` names listen addresses */
    moat_conf__acme_check_conf,    /* a challenge that can work for the ACME sites */
    moat_conf__proxy_check_conf,   /* proxy rules name upstreams that exist */
    moat_conf__stream_check_conf,  /* streams: targets exist, listen addresses are their own */
    moat_conf__cluster_check_conf, /* cluster: a Redis and a secret */
};

static const char *const ctx_where[MOAT_CONF__CTX_COUNT] = {
    "at the top level",         "inside a site block",
    "inside timeouts { }",      "inside limits { }",
    "inside tls { }",           "inside acme { }",
    "inside an upstream block", "inside an upstream's timeouts { }",
    "inside a stream block",    "inside a stream's timeouts { }",
    "inside cluster { }",
};

static const char *const ctx_belongs[MOAT_CONF__CTX_COUNT] = {
    "at the top level, outside any block",
    "inside a site NAME { } block",
    "inside a timeouts { } block",
    "inside a limits { } block",
    "inside a tls { } block",
    "inside an acme { } block",
    "inside an upstream NAME { } block",
    "inside an upstream's timeouts { } block",
    "inside a stream NAME { } block",
    "inside a stream's timeouts { } block",
    "inside a cluster { } block",
};

/* ---- small helpers ---- */

moat_rc moat_conf__nomem(struct moat_conf__loader *L)
{
    moat_err_where(L->err, "%s", L->doc != NULL ? L->doc->name : "(config)");
    MOAT_FAIL(L->err, MOAT_E_NOMEM, "out of memory while loading the configuration");
}

moat_rc moat_conf__fail_at_word(struct moat_conf__loader *L, const struct moat_cfg_word *w,
                                const char *fmt, ...)
{
    char msg[MOAT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return moat_cfg_fail(L->err, L->doc, w->line, w->col, "%s", msg);
}

void moat_conf__where_of(const struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         char *out)
{
    snprintf(out, MOAT_CONF_WHERE_MAX, "%s:%d:%d", L->doc->name, n->line, n->col);
}

static char *join_path(const char *base, const char *p)
{
    if (p[0] == '/' || base == NULL || base[0] == '\0') {
        return strdup(p);
    }
    size_t bl = strlen(base), pl = strlen(p);
    int slash = base[bl - 1] != '/';
    char *r = malloc(bl + (size_t)slash + pl + 1);
    if (r == NULL) {
        return NULL;
    }
    memcpy(r, base, bl);
    if (slash) {
        r[bl] = '/';
    }
    memcpy(r + bl + (size_t)slash, p, pl + 1);
    return r;
}

/* Resolve the path word `w` against the config's folder into *out (replacing what was there). */
moat_rc moat_conf__take_path(struct moat_conf__loader *L, const struct moat_cfg_word *w,
                             const char *what, char **out)
{
    if (w->len == 0) {
        return moat_conf__fail_at_word(L, w, "empty %s path (write a path, e.g. ./www)", what);
    }
    char *p = join_path(L->base_dir, w->s);
    if (p == NULL) {
        return moat_conf__nomem(L);
    }
    free(*out);
    *out = p;
    return MOAT_RC_OK;
}

void moat_conf__free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int moat_conf__push_str(char ***arr, size_t *n, char *s)
{
    char **a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (a == NULL) {
        return 0;
    }
    *arr = a;
    a[(*n)++] = s;
    return 1;
}

int moat_conf__push_pos(struct moat_conf__pos **arr, size_t n, struct moat_conf__pos p)
{
    struct moat_conf__pos *a = realloc(*arr, (n + 1) * sizeof(**arr));
    if (a == NULL) {
        return 0;
    }
    *arr = a;
    a[n] = p;
    return 1;
}

/* Plain decimal without sign or suffix; 0 on overflow or junk. */
int moat_conf__parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int moat_conf__block_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) {
        return 0;
    }
    for (const char *p = s; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.')) {
            return 0;
        }
    }
    return 1;
}

moat_rc moat_conf__take_listen_words(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                     const char *what, char ***arr, size_t *count)
{
    for (size_t i = 1; i < n->nwords; i++) {
        char host[256];
        uint16_t port;
        const char *bad = moat_conf__listen_parse(n->words[i].s, host, sizeof(host), &port);
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, &n->words[i], "%s \"%.64s\": %s", what, n->words[i].s,
                                           bad);
        }
        char *a = strdup(n->words[i].s);
        if (a == NULL || !moat_conf__push_str(arr, count, a)) {
            free(a);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

/* A path prefix as client_path and header take it: compared with normalised request paths, so
 * one that is not itself normal could never match. */
int moat_conf__plain_prefix(const char *p, size_t len)
{
    int dotseg = strstr(p, "/../") != NULL || strstr(p, "/./") != NULL ||
                 (len >= 3 && strcmp(p + len - 3, "/..") == 0) ||
                 (len >= 2 && strcmp(p + len - 2, "/.") == 0);
    return p[0] == '/' && !dotseg && strstr(p, "//") == NULL && strchr(p, '%') == NULL &&
           strchr(p, '?') == NULL && strchr(p, '\\') == NULL;
}

/* ---- names and addresses ---- */

/* A DNS name of LDH labels (RFC 1123 §2.1), optionally "*." + one. NULL when fine, else why. */
static const char *check_host(const char *s, int allow_wildcard, char *why, size_t whycap)
{
    size_t len = strlen(s);
    if (len == 0) {
        return "empty name";
    }
    if (len > 253) {
        return "longer than 253 characters (RFC 1035 §2.3.4)";
    }
    if (strstr(s, "://") != NULL || strchr(s, '/') != NULL) {
        return "write the host name only, without scheme or path (e.g. example.com)";
    }
    if (s[len - 1] == '.') {
        return "remove the trailing dot";
    }
    const char *label = s;
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t ll = (size_t)(p - label);
            if (ll == 0) {
                return "empty label (two dots in a row, or a leading dot)";
            }
            if (ll > 63) {
                return "a label is longer than 63 characters (RFC 1035 §2.3.4)";
            }
            if (label[0] == '-' || label[ll - 1] == '-') {
                return "a label starts or ends with \"-\"";
            }
            if (*p == '\0') {
                break;
            }
            label = p + 1;
            continue;
        }
        unsigned char ch = (unsigned char)*p;
        if (ch == '*') {
            if (allow_wildcard && p == s && p[1] == '.') {
                label = p + 2;
                p++;
                continue;
            }
            if (!allow_wildcard) {
                return "\"*\" is not allowed here";
            }
            return "a wildcard must be the whole first label (write \"*.example.com\")";
        }
        if (ch >= 0x80) {
            return "write internationalized names in their xn-- (punycode) form";
        }
        if (!isalnum(ch) && ch != '-') {
            snprintf(why, whycap,
                     "\"%c\" is not allowed in a host name (use letters, digits, \"-\" and \".\")",
                     isprint(ch) ? ch : '?');
            return why;
        }
    }
    return NULL;
}

static int all_digits_dots(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!(*s >= '0' && *s <= '9') && *s != '.') {
            return 0;
        }
    }
    return 1;
}

/*
 * Check a site name and write its stored form (lower case; IPv6 in RFC 5952 form) to out.
 * Returns NULL when fine, else the reason.
 */
const char *moat_conf__site_name_norm(const char *in, char *out, size_t outcap, char *why,
                                      size_t whycap)
{
    size_t len = strlen(in);
    if (len == 0) {
        return "empty name";
    }
    if (len >= outcap) {
        return "longer than 253 characters (RFC 1035 §2.3.4)";
    }
    if (strcmp(in, "*") == 0) {
        snprintf(out, outcap, "*");
        return NULL;
    }
    char v6[256];
    const char *inner = NULL;
    if (in[0] == '[' && in[len - 1] == ']' && len - 2 < sizeof(v6)) {
        memcpy(v6, in + 1, len - 2);
        v6[len - 2] = '\0';
        inner = v6;
    } else if (strchr(in, ':') != NULL && strstr(in, "://") == NULL) {
        inner = in;
    }
    if (inner != NULL) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, inner, &a6) == 1) {
            if (inet_ntop(AF_INET6, &a6, out, (socklen_t)outcap) == NULL) {
                return "IPv6 address too long";
            }
            return NULL;
        }
        const char *colon = strrchr(in, ':');
        uint64_t port;
        int one_colon = strchr(in, ':') == colon;
        int bracketed = in[0] == '[' && colon > in && colon[-1] == ']';
        if (colon != NULL && moat_conf__parse_count(colon + 1, &port) && (one_colon || bracketed)) {
            return "site names have no port (ports go in listen)";
        }
        return "not a valid IPv6 address";
    }
    if (all_digits_dots(in)) {
        struct in_addr a4;
        if (inet_pton(AF_INET, in, &a4) != 1) {
            return "not a valid IPv4 address (write four numbers 0-255, e.g. 127.0.0.1)";
        }
        snprintf(out, outcap, "%s", in);
        return NULL;
    }
    const char *bad = check_host(in, 1, why, whycap);
    if (bad != NULL) {
        return bad;
    }
    for (size_t i = 0; i <= len; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    return NULL;
}

/* Listen address syntax; on success host/port are filled. NULL when fine, else why. */
const char *moat_conf__listen_parse(const char *addr, char *host, size_t hostcap, uint16_t *port)
{
    const char *colon;
    if (addr[0] == '\0') {
        return "empty address (write host:port, e.g. 127.0.0.1:8443)";
    }
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL) {
            return "missing \"]\" after the IPv6 address (write e.g. [::1]:8443)";
        }
        size_t hl = (size_t)(close - addr - 1);
        if (hl >= hostcap) {
            return "not a valid IPv6 address";
        }
        memcpy(host, addr + 1, hl);
        host[hl] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            return "not a valid IPv6 address";
        }
        if (close[1] != ':') {
            return "missing port after the IPv6 address (write e.g. [::1]:8443)";
        }
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return "missing port (write host:port, e.g. 127.0.0.1:8443, or :8443 for all "
                   "addresses)";
        }
        if (memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
            return "put an IPv6 address in brackets (e.g. [::1]:8443)";
        }
        size_t hl = (size_t)(colon - addr);
        if (hl >= hostcap) {
            return "host name too long";
        }
        memcpy(host, addr, hl);
        host[hl] = '\0';
        if (strcmp(host, "*") == 0) {
            return "write :PORT (without \"*\") to listen on all addresses";
        }
        if (hl > 0 && all_digits_dots(host)) {
            struct in_addr a4;
            if (inet_pton(AF_INET, host, &a4) != 1) {
                return "not a valid IPv4 address (write four numbers 0-255, e.g. 127.0.0.1)";
            }
        } else if (hl > 0) {
            char why[128];
            if (check_host(host, 0, why, sizeof(why)) != NULL) {
                return "not a valid host name or address";
            }
        }
    }
    uint64_t p;
    if (strlen(colon + 1) > 5 || !moat_conf__parse_count(colon + 1, &p)) {
        return "the port must be a number from 1 to 65535";
    }
    if (p < 1 || p > 65535) {
        return "the port must be a number from 1 to 65535";
    }
    *port = (uint16_t)p;
    return NULL;
}

moat_rc moat_conf_listen_split(const char *addr, char *host, size_t hostcap, uint16_t *port)
{
    char h[256];
    uint16_t pt;
    if (addr == NULL || moat_conf__listen_parse(addr, h, sizeof(h), &pt) != NULL ||
        strlen(h) >= hostcap) {
        return moat_rc_of(MOAT_E_CONFIG);
    }
    memcpy(host, h, strlen(h) + 1);
    *port = pt;
    return MOAT_RC_OK;
}

int moat_conf_name_is_local(const char *name)
{
    if (name == NULL) {
        return 0;
    }
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.') {
        len--; /* "localhost." is the same name */
    }
    static const char lh[] = "localhost";
    size_t ll = sizeof(lh) - 1;
    if (len == ll && strncasecmp(name, lh, ll) == 0) {
        return 1;
    }
    /* RFC 6761 §6.3: every name under .localhost resolves to loopback. */
    if (len > ll + 1 && name[len - ll - 1] == '.' && strncasecmp(name + len - ll, lh, ll) == 0) {
        return 1;
    }
    char buf[64];
    if (len >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, name, len);
    buf[len] = '\0';
    const char *ip = buf;
    if (buf[0] == '[' && len >= 2 && buf[len - 1] == ']') {
        buf[len - 1] = '\0';
        ip = buf + 1;
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) {
            return 1;
        }
        /* ::ffff:127.x.y.z is IPv4 loopback seen through an IPv6 socket. */
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return 0;
}

int moat_conf_site_hsts(const struct moat_conf_site *s)
{
    if (s->hsts >= 0) {
        return s->hsts;
    }
    for (size_t i = 0; i < s->nnames; i++) {
        if (!moat_conf_name_is_local(s->names[i])) {
            return 1;
        }
    }
    return 0;
}

/* ---- lifecycle ---- */

void moat_conf__site_clear(struct moat_conf_site *s)
{
    for (size_t i = 0; i < s->nnames; i++) {
        free(s->names[i]);
    }
    free(s->names);
    for (size_t i = 0; i < s->ncerts; i++) {
        free(s->certs[i].cert_path);
        free(s->certs[i].key_path);
    }
    free(s->certs);
    moat_conf__free_strs(s->cert_ca, s->ncert_ca);
    free(s->root);
    free(s->index);
    moat_conf__free_strs(s->client_ca, s->nclient_ca);
    moat_conf__free_strs(s->client_crl, s->nclient_crl);
    moat_conf__free_strs(s->client_allow, s->nclient_allow);
    for (size_t i = 0; i < s->nclient_paths; i++) {
        free(s->client_paths[i].prefix);
        moat_conf__free_strs(s->client_paths[i].allow, s->client_paths[i].nallow);
    }
    free(s->client_paths);
    for (size_t i = 0; i < s->nproxies; i++) {
        free(s->proxies[i].prefix);
        free(s->proxies[i].upstream);
        free(s->proxies[i].rewrite);
    }
    free(s->proxies);
    free(s->proxy_host_value);
    free(s->proxy_ca);
    free(s->proxy_cert);
    free(s->proxy_key);
    free(s->client_header_prefix);
    for (size_t i = 0; i < s->nheaders; i++) {
        free(s->headers[i].prefix);
        free(s->headers[i].name);
        free(s->headers[i].value);
    }
    free(s->headers);
    for (size_t i = 0; i < s->ncrl_publish; i++) {
        free(s->crl_publish[i].path);
        free(s->crl_publish[i].ca_dir);
    }
    free(s->crl_publish);
    free(s->acl);
    for (size_t i = 0; i < s->nlimits; i++) {
        free(s->limits[i].prefix);
        free(s->limits[i].key_name);
    }
    free(s->limits);
    moat_conf__free_strs(s->encode_types, s->nencode_types);
    moat_conf__free_strs(s->cache_prefixes, s->ncache_prefixes);
    moat_conf__free_strs(s->cache_purge, s->ncache_purge);
    moat_conf__free_strs(s->cache_key_extra, s->ncache_key_extra);
    *s = (struct moat_conf_site){0};
}

void moat_conf__free_strs(char **a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i]);
    }
    free(a);
}

void moat_conf_free(struct moat_conf *c)
{
    if (c == NULL) {
        return;
    }
    free(c->path);
    moat_conf__free_strs(c->listen, c->nlisten);
    free(c->redirect_listen);
    free(c->state_dir);
    free(c->user);
    free(c->group);
    free(c->admin);
    moat_conf__free_secret(c->admin_token);
    moat_conf__cluster_free(c->cluster);
    free(c->cache_disk);
    free(c->access_log);
    free(c->error_log);
    moat_conf__free_strs(c->trust, c->ntrust);
    moat_conf__free_strs(c->http2_off_listen, c->nhttp2_off_listen);
    moat_conf__acme_clear(&c->acme);
    for (size_t i = 0; i < c->nupstreams; i++) {
        moat_conf__upstream_clear(&c->upstreams[i]);
    }
    free(c->upstreams);
    for (size_t i = 0; i < c->nstreams; i++) {
        moat_conf__stream_clear(&c->streams[i]);
    }
    free(c->streams);
    moat_conf__free_strs(c->trusted_proxies, c->ntrusted_proxies);
    free(c->acl);
    free(c->exempt);
    moat_conf__free_strs(c->proxy_protocol_listen, c->nproxy_protocol_listen);
    for (size_t i = 0; i < c->nsites; i++) {
        moat_conf__site_clear(&c->sites[i]);
    }
    free(c->sites);
    free(c);
}

struct moat_conf *moat_conf_new(void)
{
    struct moat_conf *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->listen = calloc(1, sizeof(*c->listen));
    if (c->listen == NULL) {
        moat_conf_free(c);
        return NULL;
    }
    c->listen[0] = strdup("127.0.0.1:8443");
    c->nlisten = c->listen[0] != NULL;
    c->access_log = strdup("off");
    c->error_log = strdup("stderr");
    if (c->nlisten == 0 || c->access_log == NULL || c->error_log == NULL) {
        moat_conf_free(c);
        return NULL;
    }
    c->access_format = MOAT_LOG_COMBINED;
    c->log_level = MOAT_LOG_INFO;
    c->head_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->body_timeout_ms = 30000;
    c->write_timeout_ms = 30000;
    c->drain_timeout_ms = 10000;
    c->handshake_timeout_ms = 10000;
    c->max_line_bytes = 8192;
    c->max_head_bytes = 32768;
    c->max_fields = 100;
    c->max_body_bytes = MOAT_CONF__MIB;
    c->max_conns = 10000;
    c->max_requests = 10000;
    c->min_rate = 1024;
    c->file_cache = 1000;
    c->file_cache_valid_ms = 1000;
    c->http2 = 1;
    c->h2_streams = 100;
    c->h2_hpack = 4096;
    c->h2_window = 256 * 1024;
    c->h2_frames = 1000;
    c->h2_resets = 100;
    c->tickets = 1;
    c->ktls = 0; /* off unless asked: its data path has not yet run on a kernel with kTLS */
    c->ticket_rotate_s = 3600;
    c->session_cache = 20480;
    c->addr_conns = 512;
    c->addr_new = (struct moat_rate){.n = 200, .per_ms = 1000, .burst = 1000};
    c->addr_hs = (struct moat_rate){.n = 100, .per_ms = 1000, .burst = 1000};
    c->total_conns = -1;
    c->h2_requests = (struct moat_rate){.n = 1000, .per_ms = 1000, .burst = 2000};
    c->addr_table = 65536;
    c->ipv6_prefix = 64;
    c->cache_memory = 64 * 1024 * 1024;
    c->cache_max_object = 8 * 1024 * 1024;
    c->cache_heuristic = 10;
    c->cache_heuristic_max_ms = 86400ULL * 1000;
    c->cache_lock_timeout_ms = 5000;
    return c;
}

struct moat_conf_site *moat_conf__site_push(struct moat_conf *c)
{
    struct moat_conf_site *a = realloc(c->sites, (c->nsites + 1) * sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    c->sites = a;
    struct moat_conf_site *s = &a[c->nsites];
    *s = (struct moat_conf_site){0};
    s->index = strdup("index.html");
    if (s->index == NULL) {
        return NULL;
    }
    s->hsts = -1;
    s->http2 = -1;
    s->encode_min = -1;
    s->cache_key = MOAT_CACHE_KEY_DEFAULT;
    s->encode_precompressed = -1;
    for (size_t i = 0; i < sizeof(s->encode_level) / sizeof(s->encode_level[0]); i++) {
        s->encode_level[i] = -1;
    }
    s->hsts_max_age_s = 365ULL * 86400;
    c->nsites++;
    return s;
}

long moat_conf__site_owning(const struct moat_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nsites; i++) {
        for (size_t j = 0; j < c->sites[i].nnames; j++) {
            if (strcmp(c->sites[i].names[j], name) == 0) {
                return (long)i;
            }
        }
    }
    return -1;
}

/* ---- the rows of every family ---- */

size_t moat_conf__spec_count(void)
{
    size_t n = 0;
    for (size_t f = 0; f < NFAMILIES; f++) {
        n += *families[f].nrows;
    }
    return n;
}

const struct moat_conf__spec *moat_conf__spec_at(size_t i)
{
    for (size_t f = 0; f < NFAMILIES; f++) {
        if (i < *families[f].nrows) {
            return &families[f].rows[i];
        }
        i -= *families[f].nrows;
    }
    return NULL;
}

const struct moat_conf__spec *moat_conf__spec_find(enum moat_conf__ctx ctx, const char *name,
                                                   size_t *index)
{
    size_t base = 0;
    for (size_t f = 0; f < NFAMILIES; f++) {
        const struct moat_conf__spec *rows = families[f].rows;
        for (size_t k = 0; k < *families[f].nrows; k++) {
            if (rows[k].ctx == ctx && strcmp(rows[k].name, name) == 0) {
                if (index != NULL) {
                    *index = base + k;
                }
                return &rows[k];
            }
        }
        base += *families[f].nrows;
    }
    return NULL;
}

/* ---- the directive walk ---- */

/* Edit distance between a and b, ASCII case-insensitive; capped at 99 for long input. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[40];
    if (lb + 1 > sizeof(row) / sizeof(row[0]) || la > 64) {
        return 99;
    }
    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = diag + (same ? 0 : 1);
            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static moat_rc unknown_directive(struct moat_conf__loader *L, const struct moat_cfg_word *w,
                                 enum moat_conf__ctx ctx)
{
    size_t nspecs = moat_conf__spec_count();
    /* Known elsewhere: say where it goes. */
    char places[256] = "";
    for (size_t i = 0; i < nspecs; i++) {
        const struct moat_conf__spec *sp = moat_conf__spec_at(i);
        if (sp->ctx != ctx && strcmp(sp->name, w->s) == 0) {
            size_t used = strlen(places);
            snprintf(places + used, sizeof(places) - used, "%s%s", used ? " or " : "",
                     ctx_belongs[sp->ctx]);
        }
    }
    if (places[0] != '\0') {
        return moat_conf__fail_at_word(L, w, "\"%s\" is not allowed %s (it belongs %s)", w->s,
                                       ctx_where[ctx], places);
    }
    const char *best = NULL;
    size_t best_d = 99;
    for (size_t i = 0; i < nspecs; i++) {
        const struct moat_conf__spec *sp = moat_conf__spec_at(i);
        if (sp->ctx != ctx) {
            continue;
        }
        size_t d = distance(w->s, sp->name);
        size_t limit = strlen(sp->name) <= 4 ? 1 : 2;
        if (d <= limit && d < best_d) {
            best = sp->name;
            best_d = d;
        }
    }
    if (best != NULL) {
        return moat_conf__fail_at_word(L, w, "unknown directive \"%.64s\" (did you mean \"%s\"?)",
                                       w->s, best);
    }
    /* As many names as the message holds; a list cut short says so rather than ending in
     * half a name. */
    char known[360] = "";
    size_t used = 0;
    for (size_t i = 0; i < nspecs; i++) {
        const struct moat_conf__spec *sp = moat_conf__spec_at(i);
        if (sp->ctx != ctx) {
            continue;
        }
        size_t nl = strlen(sp->name);
        if (used + nl + 2 + 40 >= sizeof(known)) {
            snprintf(known + used, sizeof(known) - used, ", ... (docs/config.md has them all)");
            break;
        }
        used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", used ? ", " : "",
                                 sp->name);
    }
    return moat_conf__fail_at_word(L, w, "unknown directive \"%.64s\" (known %s: %s)", w->s,
                                   ctx_where[ctx], known);
}

static moat_rc check_shape(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    size_t nargs = n->nwords - 1;
    if (sp->kind == MOAT_CONF__V_BLOCK && !n->has_block) {
        return moat_conf__fail_at_word(
            L, &n->words[0], "\"%s\" needs a { } block opened on the same line (usage: %s)",
            sp->name, sp->usage);
    }
    if (sp->kind != MOAT_CONF__V_BLOCK && n->has_block) {
        return moat_conf__fail_at_word(
            L, &n->words[0], "\"%s\" does not take a { } block (usage: %s)", sp->name, sp->usage);
    }
    if (nargs >= (size_t)sp->min && (sp->max < 0 || nargs <= (size_t)sp->max)) {
        return MOAT_RC_OK;
    }
    if (strcmp(sp->name, "cert") == 0 && nargs == 1) {
        return moat_conf__fail_at_word(
            L, &n->words[1],
            "certificate \"%.200s\" has no key (usage: %s, the key after the "
            "certificate)",
            n->words[1].s, sp->usage);
    }
    char want[64];
    if (sp->max == 0) {
        snprintf(want, sizeof(want), "no arguments");
    } else if (sp->max == sp->min) {
        snprintf(want, sizeof(want), "%d argument%s", sp->min, sp->min == 1 ? "" : "s");
    } else if (sp->max < 0) {
        snprintf(want, sizeof(want), "at least %d argument%s", sp->min, sp->min == 1 ? "" : "s");
    } else {
        snprintf(want, sizeof(want), "%d to %d arguments", sp->min, sp->max);
    }
    /* Too many: point at the first word too many; too few: at the directive. */
    const struct moat_cfg_word *at =
        sp->max >= 0 && nargs > (size_t)sp->max ? &n->words[sp->max + 1] : &n->words[0];
    return moat_conf__fail_at_word(L, at, "\"%s\" takes %s, got %zu (usage: %s)", sp->name, want,
                                   nargs, sp->usage);
}

static moat_rc apply_value(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *v = &n->words[1];
    char *base = (char *)L->c;
    uint64_t x = 0;
    switch (sp->kind) {
    case MOAT_CONF__V_CUSTOM:
        return sp->fn(L, n, sp);
    case MOAT_CONF__V_BLOCK:
        return sp->fn != NULL ? sp->fn(L, n, sp) : moat_conf__walk_block(L, n, sp->inner);
    case MOAT_CONF__V_BOOL: {
        int b;
        if (!moat_ok(moat_cfg_bool(v->s, &b))) {
            return moat_conf__fail_at_word(L, v, "bad value \"%.64s\" for \"%s\" (use on or off)",
                                           v->s, sp->name);
        }
        memcpy(base + sp->off, &b, sizeof(b));
        return MOAT_RC_OK;
    }
    case MOAT_CONF__V_DURATION_MS:
    case MOAT_CONF__V_DURATION_S:
        if (!moat_ok(moat_cfg_duration_ms(v->s, &x))) {
            return moat_conf__fail_at_word(
                L, v,
                "bad duration \"%.64s\" for \"%s\" (use a number with ms, s, m, "
                "h, d or y, e.g. 10s)",
                v->s, sp->name);
        }
        if (sp->kind == MOAT_CONF__V_DURATION_S) {
            if (x % 1000 != 0) {
                return moat_conf__fail_at_word(L, v, "\"%s\" must be whole seconds, got \"%.64s\"",
                                               sp->name, v->s);
            }
            x /= 1000;
        }
        break;
    case MOAT_CONF__V_SIZE:
        if (!moat_ok(moat_cfg_size(v->s, &x))) {
            return moat_conf__fail_at_word(
                L, v,
                "bad size \"%.64s\" for \"%s\" (use a number of bytes with an "
                "optional k, m or g, e.g. 8k)",
                v->s, sp->name);
        }
        break;
    case MOAT_CONF__V_COUNT:
        if (!moat_conf__parse_count(v->s, &x)) {
            return moat_conf__fail_at_word(
                L, v, "bad number \"%.64s\" for \"%s\" (use digits only, e.g. 100)", v->s,
                sp->name);
        }
        break;
    default:
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (x < sp->lo || x > sp->hi) {
        return moat_conf__fail_at_word(L, v, "\"%s\" must be %s, got \"%.64s\"", sp->name,
                                       sp->range, v->s);
    }
    memcpy(base + sp->off, &x, sizeof(x));
    return MOAT_RC_OK;
}

moat_rc moat_conf__walk_block(struct moat_conf__loader *L, const struct moat_cfg_node *block,
                              enum moat_conf__ctx ctx)
{
    for (size_t i = 0; i < block->nchildren; i++) {
        const struct moat_cfg_node *n = &block->children[i];
        const struct moat_cfg_word *w = &n->words[0];
        size_t k = 0;
        const struct moat_conf__spec *sp = moat_conf__spec_find(ctx, w->s, &k);
        if (sp == NULL) {
            return unknown_directive(L, w, ctx);
        }
        MOAT_TRY(check_shape(L, n, sp));
        if (!sp->multi) {
            /* Per block for sites and upstreams, per file for the rest. */
            int per_block = ctx == MOAT_CONF__SITE || ctx == MOAT_CONF__UPSTREAM ||
                            ctx == MOAT_CONF__UP_TIMEOUTS || ctx == MOAT_CONF__STREAM ||
                            ctx == MOAT_CONF__STREAM_TIMEOUTS;
            struct moat_conf__pos *seen = &(per_block ? L->site_seen : L->seen)[k];
            if (seen->line != 0) {
                return moat_conf__fail_at_word(
                    L, w, "\"%s\" is already set at line %d (keep only one)", sp->name, seen->line);
            }
            *seen = (struct moat_conf__pos){n->line, n->col};
        }
        MOAT_TRY(apply_value(L, n, sp));
    }
    return MOAT_RC_OK;
}

moat_rc moat_conf__site_walk(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             struct moat_conf_site *s)
{
    size_t nspecs = moat_conf__spec_count();
    for (size_t k = 0; k < nspecs; k++) {
        L->site_seen[k] = (struct moat_conf__pos){0, 0};
    }
    L->site = s;
    moat_rc rc = moat_conf__walk_block(L, n, MOAT_CONF__SITE);
    L->site = NULL;
    MOAT_TRY(rc);
    for (size_t i = 0; i < sizeof(site_checks) / sizeof(site_checks[0]); i++) {
        MOAT_TRY(site_checks[i](L, n, s));
    }
    return MOAT_RC_OK;
}

/* ---- entry points ---- */

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        return strdup(".");
    }
    if (slash == path) {
        return strdup("/");
    }
    return strndup(path, (size_t)(slash - path));
}

static moat_rc conf_from_doc(const struct moat_cfg_doc *doc, const char *base_dir,
                             struct moat_conf **out, struct moat_err *err)
{
    struct moat_conf__loader L = {.doc = doc, .base_dir = base_dir, .err = err};
    L.c = moat_conf_new();
    size_t nspecs = moat_conf__spec_count();
    L.seen = calloc(nspecs, sizeof(*L.seen));
    L.site_seen = calloc(nspecs, sizeof(*L.site_seen));
    moat_rc rc;
    if (L.c == NULL || L.seen == NULL || L.site_seen == NULL) {
        rc = moat_conf__nomem(&L);
    } else {
        rc = moat_conf__walk_block(&L, &doc->root, MOAT_CONF__TOP);
    }
    for (size_t i = 0; moat_ok(rc) && i < sizeof(conf_checks) / sizeof(conf_checks[0]); i++) {
        rc = conf_checks[i](&L);
    }
    free(L.seen);
    free(L.site_seen);
    free(L.listen_pos);
    free(L.http2_pos);
    free(L.site_pos);
    if (!moat_ok(rc)) {
        moat_conf_free(L.c);
        return rc;
    }
    *out = L.c;
    return MOAT_RC_OK;
}

moat_rc moat_conf_parse(const char *name, const char *text, size_t len, const char *base_dir,
                        struct moat_conf **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_cfg_doc *doc;
    MOAT_TRY(moat_cfg_parse(name, text, len, &doc, err));
    moat_rc rc = conf_from_doc(doc, base_dir, out, err);
    moat_cfg_doc_free(doc);
    return rc;
}

moat_rc moat_conf_load(const char *path, struct moat_conf **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_cfg_doc *doc;
    MOAT_TRY(moat_cfg_load(path, &doc, err));
    /* An absolute folder, so paths in the file stay right if the server changes directory. */
    char *dir = dir_of(path);
    char *abs = dir != NULL ? realpath(dir, NULL) : NULL;
    moat_rc rc;
    if (dir == NULL) {
        moat_err_where(err, "%s", path);
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
    } else {
        rc = conf_from_doc(doc, abs != NULL ? abs : dir, out, err);
    }
    free(abs);
    free(dir);
    moat_cfg_doc_free(doc);
    if (moat_ok(rc)) {
        (*out)->path = strdup(path);
        if ((*out)->path == NULL) {
            moat_conf_free(*out);
            *out = NULL;
            moat_err_where(err, "%s", path);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    return rc;
}

moat_rc moat_conf_set_listen(struct moat_conf *c, const char *const *addrs, size_t n,
                             struct moat_err *err)
{
    if (n == 0) {
        moat_err_where(err, "command line");
        MOAT_FAIL(err, MOAT_E_USAGE, "no listen address given");
    }
    char **list = calloc(n, sizeof(*list));
    if (list == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char host[256];
        uint16_t port;
        const char *why = moat_conf__listen_parse(addrs[i], host, sizeof(host), &port);
        if (why != NULL) {
            moat_conf__free_strs(list, i);
            moat_err_where(err, "command line");
            MOAT_FAIL(err, MOAT_E_USAGE, "bad listen address \"%.100s\": %s", addrs[i], why);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list[j], addrs[i]) == 0) {
                moat_conf__free_strs(list, i);
                moat_err_where(err, "command line");
                MOAT_FAIL(err, MOAT_E_USAGE, "listen address \"%.100s\" is given twice", addrs[i]);
            }
        }
        list[i] = strdup(addrs[i]);
        if (list[i] == NULL) {
            moat_conf__free_strs(list, i);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    moat_conf__free_strs(c->listen, c->nlisten);
    c->listen = list;
    c->nlisten = n;
    return MOAT_RC_OK;
}

/* The checks of moat_conf_add_site, so a refusal leaves c unchanged. */
static moat_rc add_site_check(const struct moat_conf *c, const char *name, const char *root,
                              const char *cert_path, const char *key_path, char *norm,
                              size_t normcap, struct moat_err *err)
{
    char why[128];
    const char *bad = name != NULL
                          ? moat_conf__site_name_norm(name, norm, normcap, why, sizeof(why))
                          : "no name given";
    if (bad != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "bad site name \"%.100s\": %s", name ? name : "", bad);
    }
    if (moat_conf__site_owning(c, norm) >= 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "site name \"%s\" is already used by another site", norm);
    }
    if (root != NULL && root[0] == '\0') {
        MOAT_FAIL(err, MOAT_E_USAGE, "the site needs a root folder (give --root DIR)");
    }
    if ((cert_path == NULL) != (key_path == NULL)) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "give both --cert and --key (the key the certificate was made from), or "
                  "neither for a certificate from the local CA");
    }
    return MOAT_RC_OK;
}

moat_rc moat_conf_add_site(struct moat_conf *c, const char *name, const char *root,
                           const char *cert_path, const char *key_path, struct moat_err *err)
{
    if (root == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the site needs a root folder (give --root DIR)");
    }
    return moat_conf__add_site(c, name, root, cert_path, key_path, err);
}

moat_rc moat_conf_add_proxy_site(struct moat_conf *c, const char *name, const char *const *servers,
                                 size_t n, const char *cert_path, const char *key_path,
                                 struct moat_err *err)
{
    MOAT_TRY(moat_conf__add_site(c, name, NULL, cert_path, key_path, err));
    moat_rc rc = moat_conf__proxy_add_upstream(c, &c->sites[c->nsites - 1], servers, n, err);
    if (!moat_ok(rc)) {
        moat_conf__site_clear(&c->sites[--c->nsites]);
    }
    return rc;
}

moat_rc moat_conf__add_site(struct moat_conf *c, const char *name, const char *root,
                            const char *cert_path, const char *key_path, struct moat_err *err)
{
    char norm[256];
    moat_rc rc = add_site_check(c, name, root, cert_path, key_path, norm, sizeof(norm), err);
    if (!moat_ok(rc)) {
        moat_err_where(err, "command line");
        return rc;
    }
    struct moat_conf_site *s = moat_conf__site_push(c);
    if (s == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    snprintf(s->where, sizeof(s->where), "command line");
    char *n = strdup(norm);
    int ok = n != NULL && moat_conf__push_str(&s->names, &s->nnames, n);
    if (!ok) {
        free(n);
    }
    ok = ok && (root == NULL || (s->root = strdup(root)) != NULL);
    if (ok && cert_path != NULL) {
        s->certs = calloc(1, sizeof(*s->certs));
        ok = s->certs != NULL && (s->certs[0].cert_path = strdup(cert_path)) != NULL &&
             (s->certs[0].key_path = strdup(key_path)) != NULL;
        if (s->certs != NULL) {
            s->ncerts = 1;
            snprintf(s->certs[0].where, sizeof(s->certs[0].where), "command line");
        }
    }
    if (!ok) {
        moat_conf__site_clear(s);
        c->nsites--;
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}
