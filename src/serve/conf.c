/*
 * conf.c: moat's directives on top of the generic reader in core/cfg.c.
 *
 * One table (`specs`) lists every directive with the block it belongs in, its argument count,
 * whether it repeats, and how its value is read; the walk below checks each node against it, so
 * the unknown/misplaced/wrong-arity/duplicate messages are the same for every directive and a new
 * directive is one row. Values that need more than a table entry (listen addresses, site names,
 * hsts) have their own functions. Every failure names "file:line:col" and the fix; the reference
 * for users is docs/config.md, keep the two in step.
 */
#include "serve/conf.h"

#include "serve/headers.h"

#include "core/cfg.h"
#include "core/path.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ctx {
    CTX_TOP = 0,
    CTX_SITE,
    CTX_TIMEOUTS,
    CTX_LIMITS,
    CTX_TLS,
    CTX_COUNT /* keep last */
};

/* How a simple directive's single value is read and where it goes (offset into moat_conf). */
enum vkind {
    V_CUSTOM = 0, /* a handler function does the work */
    V_DURATION_MS,
    V_DURATION_S, /* a duration that must be whole seconds, stored in seconds */
    V_SIZE,
    V_COUNT, /* plain decimal integer */
    V_BOOL,  /* into an int */
    V_BLOCK, /* a block of more directives in `inner` context */
};

struct pos {
    int line, col;
};

struct loader;
struct spec;
typedef moat_rc (*spec_fn)(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);

struct spec {
    const char *name;
    enum ctx ctx; /* where it may appear */
    int min, max; /* argument count; max -1 = no limit */
    int multi;    /* may appear more than once in its block */
    enum vkind kind;
    size_t off;        /* V_DURATION_*, V_SIZE, V_COUNT: uint64_t field; V_BOOL: int field */
    uint64_t lo, hi;   /* accepted range, in the stored unit */
    const char *range; /* the range for people: "between 1ms and 1d" */
    enum ctx inner;    /* V_BLOCK: context of the block's directives */
    spec_fn fn;        /* V_CUSTOM */
    const char *usage;
};

struct loader {
    const struct moat_cfg_doc *doc;
    const char *base_dir;
    struct moat_conf *c;
    struct moat_err *err;
    struct moat_conf_site *site; /* the site being read, inside a site block */
    struct pos *seen;            /* per spec: where a single-valued directive was set (global) */
    struct pos *site_seen;       /* same, reset for each site */
    struct pos *listen_pos;      /* position of each c->listen entry from the file */
    struct pos *site_pos;        /* position of each c->sites entry */
    int listen_set;              /* the defaults were replaced */
    struct pos redirect_pos;
    struct pos root_pos; /* of the current site's root directive, 0 when none */
};

static moat_rc h_listen(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_redirect(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_workers(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_state(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_access_log(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_error_log(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_trust(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_site(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_cert(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_cert_ca(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_root(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_index(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_listing(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_hsts(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_client_auth(struct loader *L, const struct moat_cfg_node *n,
                             const struct spec *sp);
static moat_rc h_client_files(struct loader *L, const struct moat_cfg_node *n,
                              const struct spec *sp);
static moat_rc h_client_depth(struct loader *L, const struct moat_cfg_node *n,
                              const struct spec *sp);
static moat_rc h_client_allow(struct loader *L, const struct moat_cfg_node *n,
                              const struct spec *sp);
static moat_rc h_client_path(struct loader *L, const struct moat_cfg_node *n,
                             const struct spec *sp);
static moat_rc h_proxy(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_header(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_proxy_opt(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp);
static moat_rc h_crl_publish(struct loader *L, const struct moat_cfg_node *n,
                             const struct spec *sp);

#define OFF(field) offsetof(struct moat_conf, field)
#define DAY_MS (86400ULL * 1000)
#define MIB (1024ULL * 1024)

/* Table rows; a value row reads one word into the moat_conf field at `off`. */
#define CUSTOM(nm, cx, mn, mx, many, f, use)                                                       \
    {                                                                                              \
        .name = nm, .ctx = cx, .min = mn, .max = mx, .multi = many, .kind = V_CUSTOM, .fn = f,     \
        .usage = use                                                                               \
    }
#define BLOCK(nm, mn, mx, in, f, use)                                                              \
    {                                                                                              \
        .name = nm, .ctx = CTX_TOP, .min = mn, .max = mx, .multi = 1, .kind = V_BLOCK,             \
        .inner = in, .fn = f, .usage = use                                                         \
    }
#define VALUE(nm, cx, k, field, l, h, rng, use)                                                    \
    {                                                                                              \
        .name = nm, .ctx = cx, .min = 1, .max = 1, .kind = k, .off = OFF(field), .lo = l, .hi = h, \
        .range = rng, .usage = use                                                                 \
    }

/* Keep in step with docs/config.md. */
static const struct spec specs[] = {
    CUSTOM("listen", CTX_TOP, 1, -1, 1, h_listen, "listen ADDRESS..."),
    CUSTOM("redirect_http", CTX_TOP, 1, 1, 0, h_redirect, "redirect_http ADDRESS|off"),
    CUSTOM("workers", CTX_TOP, 1, 1, 0, h_workers, "workers N|auto"),
    CUSTOM("state", CTX_TOP, 1, 1, 0, h_state, "state FOLDER"),
    CUSTOM("access_log", CTX_TOP, 1, 2, 0, h_access_log,
           "access_log stdout|off|PATH [combined|json]"),
    CUSTOM("error_log", CTX_TOP, 1, 2, 0, h_error_log,
           "error_log stderr|PATH [error|warn|info|debug]"),
    BLOCK("timeouts", 0, 0, CTX_TIMEOUTS, NULL, "timeouts { head 10s; idle 60s; ... }"),
    BLOCK("limits", 0, 0, CTX_LIMITS, NULL, "limits { request_line 8k; header_bytes 32k; ... }"),
    BLOCK("tls", 0, 0, CTX_TLS, NULL, "tls { tickets on; ticket_rotate 1h; session_cache 20480 }"),
    CUSTOM("trust", CTX_TOP, 1, -1, 1, h_trust, "trust CA.pem..."),
    BLOCK("site", 1, -1, CTX_SITE, h_site, "site NAME... { root FOLDER }"),

    VALUE("head", CTX_TIMEOUTS, V_DURATION_MS, head_timeout_ms, 1, DAY_MS, "between 1ms and 1d",
          "head DURATION"),
    VALUE("idle", CTX_TIMEOUTS, V_DURATION_MS, idle_timeout_ms, 1, DAY_MS, "between 1ms and 1d",
          "idle DURATION"),
    VALUE("body", CTX_TIMEOUTS, V_DURATION_MS, body_timeout_ms, 1, DAY_MS, "between 1ms and 1d",
          "body DURATION"),
    VALUE("write", CTX_TIMEOUTS, V_DURATION_MS, write_timeout_ms, 1, DAY_MS, "between 1ms and 1d",
          "write DURATION"),
    VALUE("drain", CTX_TIMEOUTS, V_DURATION_MS, drain_timeout_ms, 1, DAY_MS, "between 1ms and 1d",
          "drain DURATION"),
    VALUE("handshake", CTX_TIMEOUTS, V_DURATION_MS, handshake_timeout_ms, 1, DAY_MS,
          "between 1ms and 1d", "handshake DURATION"),

    VALUE("request_line", CTX_LIMITS, V_SIZE, max_line_bytes, 256, MIB, "between 256 and 1m",
          "request_line SIZE"),
    VALUE("header_bytes", CTX_LIMITS, V_SIZE, max_head_bytes, 1024, MIB, "between 1k and 1m",
          "header_bytes SIZE"),
    VALUE("header_fields", CTX_LIMITS, V_COUNT, max_fields, 1, MOAT_CONF_MAX_FIELDS,
          "between 1 and 256", "header_fields N"),
    VALUE("body", CTX_LIMITS, V_SIZE, max_body_bytes, 0, 1024 * 1024 * MIB, "between 0 and 1024g",
          "body SIZE"),
    VALUE("connections", CTX_LIMITS, V_COUNT, max_conns, 1, 1000000, "between 1 and 1000000",
          "connections N"),
    VALUE("keepalive_requests", CTX_LIMITS, V_COUNT, max_requests, 1, 1000000000,
          "between 1 and 1000000000", "keepalive_requests N"),
    VALUE("min_rate", CTX_LIMITS, V_SIZE, min_rate, 0, 1024 * MIB, "between 0 (off) and 1g",
          "min_rate SIZE"),

    VALUE("tickets", CTX_TLS, V_BOOL, tickets, 0, 1, "on or off", "tickets on|off"),
    VALUE("ticket_rotate", CTX_TLS, V_DURATION_S, ticket_rotate_s, 60, 7 * 86400,
          "between 1m and 7d", "ticket_rotate DURATION"),
    VALUE("session_cache", CTX_TLS, V_COUNT, session_cache, 0, 10000000, "between 0 and 10000000",
          "session_cache N"),

    CUSTOM("cert", CTX_SITE, 2, 2, 1, h_cert, "cert CERT.pem KEY.pem"),
    CUSTOM("cert_ca", CTX_SITE, 1, -1, 1, h_cert_ca, "cert_ca CA.pem..."),
    CUSTOM("root", CTX_SITE, 1, 1, 0, h_root, "root FOLDER"),
    CUSTOM("index", CTX_SITE, 1, 1, 0, h_index, "index FILE"),
    CUSTOM("listing", CTX_SITE, 1, 1, 0, h_listing, "listing on|off"),
    CUSTOM("hsts", CTX_SITE, 1, 3, 0, h_hsts,
           "hsts off|on|auto|MAX_AGE [include_subdomains] [preload]"),
    CUSTOM("client_auth", CTX_SITE, 1, 1, 0, h_client_auth, "client_auth off|optional|require"),
    CUSTOM("client_ca", CTX_SITE, 1, -1, 1, h_client_files, "client_ca CA.pem..."),
    CUSTOM("client_crl", CTX_SITE, 1, -1, 1, h_client_files, "client_crl CRL.pem..."),
    CUSTOM("client_depth", CTX_SITE, 1, 1, 0, h_client_depth, "client_depth N"),
    CUSTOM("client_allow", CTX_SITE, 1, -1, 1, h_client_allow, "client_allow PATTERN..."),
    CUSTOM("client_path", CTX_SITE, 1, -1, 1, h_client_path, "client_path /PREFIX [PATTERN...]"),
    CUSTOM("proxy", CTX_SITE, 1, 1, 0, h_proxy, "proxy http://HOST:PORT | https://HOST:PORT"),
    CUSTOM("proxy_ca", CTX_SITE, 1, 1, 0, h_proxy_opt, "proxy_ca CA.pem"),
    CUSTOM("proxy_cert", CTX_SITE, 2, 2, 0, h_proxy_opt, "proxy_cert CERT.pem KEY.pem"),
    CUSTOM("proxy_timeout", CTX_SITE, 1, 1, 0, h_proxy_opt, "proxy_timeout DURATION"),
    CUSTOM("client_header_prefix", CTX_SITE, 1, 1, 0, h_proxy_opt,
           "client_header_prefix X-Client-"),
    CUSTOM("header", CTX_SITE, 2, -1, 1, h_header,
           "header [/PREFIX] set|add NAME VALUE | header [/PREFIX] remove NAME"),
    CUSTOM("crl_publish", CTX_SITE, 2, 3, 1, h_crl_publish,
           "crl_publish /PATH CA_DIR|local [intermediate|root]"),
};

#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static const char *const ctx_where[CTX_COUNT] = {
    "at the top level",  "inside a site block", "inside timeouts { }",
    "inside limits { }", "inside tls { }",
};

static const char *const ctx_belongs[CTX_COUNT] = {
    "at the top level, outside any block",
    "inside a site NAME { } block",
    "inside a timeouts { } block",
    "inside a limits { } block",
    "inside a tls { } block",
};

/* ---- small helpers ---- */

static moat_rc nomem(struct loader *L)
{
    moat_err_where(L->err, "%s", L->doc != NULL ? L->doc->name : "(config)");
    MOAT_FAIL(L->err, MOAT_E_NOMEM, "out of memory while loading the configuration");
}

static moat_rc fail_at_word(struct loader *L, const struct moat_cfg_word *w, const char *fmt, ...)
    MOAT_PRINTF(3, 4);

static moat_rc fail_at_word(struct loader *L, const struct moat_cfg_word *w, const char *fmt, ...)
{
    char msg[MOAT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return moat_cfg_fail(L->err, L->doc, w->line, w->col, "%s", msg);
}

static void where_of(const struct loader *L, const struct moat_cfg_node *n, char *out)
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
static moat_rc take_path(struct loader *L, const struct moat_cfg_word *w, const char *what,
                         char **out)
{
    if (w->len == 0) {
        return fail_at_word(L, w, "empty %s path (write a path, e.g. ./www)", what);
    }
    char *p = join_path(L->base_dir, w->s);
    if (p == NULL) {
        return nomem(L);
    }
    free(*out);
    *out = p;
    return MOAT_RC_OK;
}

static int push_str(char ***arr, size_t *n, char *s)
{
    char **a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (a == NULL) {
        return 0;
    }
    *arr = a;
    a[(*n)++] = s;
    return 1;
}

static int push_pos(struct pos **arr, size_t n, struct pos p)
{
    struct pos *a = realloc(*arr, (n + 1) * sizeof(**arr));
    if (a == NULL) {
        return 0;
    }
    *arr = a;
    a[n] = p;
    return 1;
}

/* Plain decimal without sign or suffix; 0 on overflow or junk. */
static int parse_count(const char *s, uint64_t *out)
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
static const char *site_name_norm(const char *in, char *out, size_t outcap, char *why,
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
        if (colon != NULL && parse_count(colon + 1, &port) && (one_colon || bracketed)) {
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
static const char *listen_parse(const char *addr, char *host, size_t hostcap, uint16_t *port)
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
    if (strlen(colon + 1) > 5 || !parse_count(colon + 1, &p)) {
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
    if (addr == NULL || listen_parse(addr, h, sizeof(h), &pt) != NULL || strlen(h) >= hostcap) {
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

static void free_strs(char **a, size_t n);

static void site_clear(struct moat_conf_site *s)
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
    free_strs(s->cert_ca, s->ncert_ca);
    free(s->root);
    free(s->index);
    free_strs(s->client_ca, s->nclient_ca);
    free_strs(s->client_crl, s->nclient_crl);
    free_strs(s->client_allow, s->nclient_allow);
    for (size_t i = 0; i < s->nclient_paths; i++) {
        free(s->client_paths[i].prefix);
        free_strs(s->client_paths[i].allow, s->client_paths[i].nallow);
    }
    free(s->client_paths);
    free(s->proxy_host);
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
    *s = (struct moat_conf_site){0};
}

static void free_strs(char **a, size_t n)
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
    free_strs(c->listen, c->nlisten);
    free(c->redirect_listen);
    free(c->state_dir);
    free(c->access_log);
    free(c->error_log);
    free_strs(c->trust, c->ntrust);
    for (size_t i = 0; i < c->nsites; i++) {
        site_clear(&c->sites[i]);
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
    c->max_body_bytes = MIB;
    c->max_conns = 10000;
    c->max_requests = 10000;
    c->min_rate = 1024;
    c->tickets = 1;
    c->ticket_rotate_s = 3600;
    c->session_cache = 20480;
    return c;
}

/* A new site with the directive defaults, appended to c->sites; NULL when out of memory. */
static struct moat_conf_site *site_push(struct moat_conf *c)
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
    s->hsts_max_age_s = 365ULL * 86400;
    c->nsites++;
    return s;
}

/* Index of the site already holding `name`, or -1. */
static long site_owning(const struct moat_conf *c, const char *name)
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

static moat_rc unknown_directive(struct loader *L, const struct moat_cfg_word *w, enum ctx ctx)
{
    /* Known elsewhere: say where it goes. */
    char places[256] = "";
    for (size_t i = 0; i < NSPECS; i++) {
        if (specs[i].ctx != ctx && strcmp(specs[i].name, w->s) == 0) {
            size_t used = strlen(places);
            snprintf(places + used, sizeof(places) - used, "%s%s", used ? " or " : "",
                     ctx_belongs[specs[i].ctx]);
        }
    }
    if (places[0] != '\0') {
        return fail_at_word(L, w, "\"%s\" is not allowed %s (it belongs %s)", w->s, ctx_where[ctx],
                            places);
    }
    const char *best = NULL;
    size_t best_d = 99;
    for (size_t i = 0; i < NSPECS; i++) {
        if (specs[i].ctx != ctx) {
            continue;
        }
        size_t d = distance(w->s, specs[i].name);
        size_t limit = strlen(specs[i].name) <= 4 ? 1 : 2;
        if (d <= limit && d < best_d) {
            best = specs[i].name;
            best_d = d;
        }
    }
    if (best != NULL) {
        return fail_at_word(L, w, "unknown directive \"%.64s\" (did you mean \"%s\"?)", w->s, best);
    }
    char known[256] = "";
    for (size_t i = 0; i < NSPECS; i++) {
        if (specs[i].ctx == ctx) {
            size_t used = strlen(known);
            snprintf(known + used, sizeof(known) - used, "%s%s", used ? ", " : "", specs[i].name);
        }
    }
    return fail_at_word(L, w, "unknown directive \"%.64s\" (known %s: %s)", w->s, ctx_where[ctx],
                        known);
}

static moat_rc check_shape(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    size_t nargs = n->nwords - 1;
    if (sp->kind == V_BLOCK && !n->has_block) {
        return fail_at_word(L, &n->words[0],
                            "\"%s\" needs a { } block opened on the same line (usage: %s)",
                            sp->name, sp->usage);
    }
    if (sp->kind != V_BLOCK && n->has_block) {
        return fail_at_word(L, &n->words[0], "\"%s\" does not take a { } block (usage: %s)",
                            sp->name, sp->usage);
    }
    if (nargs >= (size_t)sp->min && (sp->max < 0 || nargs <= (size_t)sp->max)) {
        return MOAT_RC_OK;
    }
    if (strcmp(sp->name, "cert") == 0 && nargs == 1) {
        return fail_at_word(L, &n->words[1],
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
    return fail_at_word(L, at, "\"%s\" takes %s, got %zu (usage: %s)", sp->name, want, nargs,
                        sp->usage);
}

static moat_rc walk_block(struct loader *L, const struct moat_cfg_node *block, enum ctx ctx);

static moat_rc apply_value(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    const struct moat_cfg_word *v = &n->words[1];
    char *base = (char *)L->c;
    uint64_t x = 0;
    switch (sp->kind) {
    case V_CUSTOM:
        return sp->fn(L, n, sp);
    case V_BLOCK:
        return sp->fn != NULL ? sp->fn(L, n, sp) : walk_block(L, n, sp->inner);
    case V_BOOL: {
        int b;
        if (!moat_ok(moat_cfg_bool(v->s, &b))) {
            return fail_at_word(L, v, "bad value \"%.64s\" for \"%s\" (use on or off)", v->s,
                                sp->name);
        }
        memcpy(base + sp->off, &b, sizeof(b));
        return MOAT_RC_OK;
    }
    case V_DURATION_MS:
    case V_DURATION_S:
        if (!moat_ok(moat_cfg_duration_ms(v->s, &x))) {
            return fail_at_word(L, v,
                                "bad duration \"%.64s\" for \"%s\" (use a number with ms, s, m, "
                                "h, d or y, e.g. 10s)",
                                v->s, sp->name);
        }
        if (sp->kind == V_DURATION_S) {
            if (x % 1000 != 0) {
                return fail_at_word(L, v, "\"%s\" must be whole seconds, got \"%.64s\"", sp->name,
                                    v->s);
            }
            x /= 1000;
        }
        break;
    case V_SIZE:
        if (!moat_ok(moat_cfg_size(v->s, &x))) {
            return fail_at_word(L, v,
                                "bad size \"%.64s\" for \"%s\" (use a number of bytes with an "
                                "optional k, m or g, e.g. 8k)",
                                v->s, sp->name);
        }
        break;
    case V_COUNT:
        if (!parse_count(v->s, &x)) {
            return fail_at_word(L, v, "bad number \"%.64s\" for \"%s\" (use digits only, e.g. 100)",
                                v->s, sp->name);
        }
        break;
    default:
        return moat_rc_of(MOAT_E_INTERNAL);
    }
    if (x < sp->lo || x > sp->hi) {
        return fail_at_word(L, v, "\"%s\" must be %s, got \"%.64s\"", sp->name, sp->range, v->s);
    }
    memcpy(base + sp->off, &x, sizeof(x));
    return MOAT_RC_OK;
}

static moat_rc walk_block(struct loader *L, const struct moat_cfg_node *block, enum ctx ctx)
{
    for (size_t i = 0; i < block->nchildren; i++) {
        const struct moat_cfg_node *n = &block->children[i];
        const struct moat_cfg_word *w = &n->words[0];
        const struct spec *sp = NULL;
        for (size_t k = 0; k < NSPECS; k++) {
            if (specs[k].ctx == ctx && strcmp(specs[k].name, w->s) == 0) {
                sp = &specs[k];
                break;
            }
        }
        if (sp == NULL) {
            return unknown_directive(L, w, ctx);
        }
        MOAT_TRY(check_shape(L, n, sp));
        if (!sp->multi) {
            struct pos *seen = &(ctx == CTX_SITE ? L->site_seen : L->seen)[sp - specs];
            if (seen->line != 0) {
                return fail_at_word(L, w, "\"%s\" is already set at line %d (keep only one)",
                                    sp->name, seen->line);
            }
            *seen = (struct pos){n->line, n->col};
        }
        MOAT_TRY(apply_value(L, n, sp));
    }
    return MOAT_RC_OK;
}

/* ---- handlers ---- */

static moat_rc check_listen_word(struct loader *L, const struct moat_cfg_word *w, char *host,
                                 size_t hostcap, uint16_t *port)
{
    const char *why = listen_parse(w->s, host, hostcap, port);
    if (why != NULL) {
        return fail_at_word(L, w, "bad listen address \"%.100s\": %s", w->s, why);
    }
    return MOAT_RC_OK;
}

static moat_rc h_listen(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    if (!L->listen_set) {
        free_strs(L->c->listen, L->c->nlisten);
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
                return fail_at_word(L, w,
                                    "listen address \"%.100s\" is already given at line %d "
                                    "(remove one)",
                                    w->s, L->listen_pos[j].line);
            }
        }
        char *s = strdup(w->s);
        if (s == NULL || !push_pos(&L->listen_pos, L->c->nlisten, (struct pos){w->line, w->col})) {
            free(s);
            return nomem(L);
        }
        if (!push_str(&L->c->listen, &L->c->nlisten, s)) {
            free(s);
            return nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_redirect(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
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
        return nomem(L);
    }
    free(L->c->redirect_listen);
    L->c->redirect_listen = s;
    L->redirect_pos = (struct pos){w->line, w->col};
    return MOAT_RC_OK;
}

static moat_rc h_workers(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    uint64_t v;
    if (strcmp(w->s, "auto") == 0) {
        L->c->workers = 0;
        return MOAT_RC_OK;
    }
    if (!parse_count(w->s, &v) || v > 1024) {
        return fail_at_word(
            L, w, "bad worker count \"%.64s\" (use auto, or a number from 1 to 1024)", w->s);
    }
    L->c->workers = (unsigned)v;
    return MOAT_RC_OK;
}

static moat_rc h_state(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    return take_path(L, &n->words[1], "state", &L->c->state_dir);
}

static moat_rc h_access_log(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    const struct moat_cfg_word *t = &n->words[1];
    if (strcmp(t->s, "off") == 0) {
        if (n->nwords > 2) {
            return fail_at_word(L, &n->words[2],
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
            return fail_at_word(L, f, "bad access log format \"%.64s\" (use combined or json)",
                                f->s);
        }
    }
    if (strcmp(t->s, "off") == 0 || strcmp(t->s, "stdout") == 0) {
        char *s = strdup(t->s);
        if (s == NULL) {
            return nomem(L);
        }
        free(L->c->access_log);
        L->c->access_log = s;
        return MOAT_RC_OK;
    }
    return take_path(L, t, "access log", &L->c->access_log);
}

static moat_rc h_error_log(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    if (n->nwords > 2) {
        const struct moat_cfg_word *lv = &n->words[2];
        size_t i = 0;
        while (i < 4 && strcmp(lv->s, levels[i]) != 0) {
            i++;
        }
        if (i == 4) {
            return fail_at_word(L, lv, "bad log level \"%.64s\" (use error, warn, info or debug)",
                                lv->s);
        }
        L->c->log_level = (enum moat_log_level)i;
    }
    const struct moat_cfg_word *t = &n->words[1];
    if (strcmp(t->s, "stderr") == 0) {
        char *s = strdup(t->s);
        if (s == NULL) {
            return nomem(L);
        }
        free(L->c->error_log);
        L->c->error_log = s;
        return MOAT_RC_OK;
    }
    return take_path(L, t, "error log", &L->c->error_log);
}

static moat_rc h_trust(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    for (size_t i = 1; i < n->nwords; i++) {
        char *p = NULL;
        MOAT_TRY(take_path(L, &n->words[i], "trust", &p));
        if (!push_str(&L->c->trust, &L->c->ntrust, p)) {
            free(p);
            return nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_site(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf *c = L->c;
    if (!push_pos(&L->site_pos, c->nsites, (struct pos){n->line, n->col})) {
        return nomem(L);
    }
    struct moat_conf_site *s = site_push(c);
    if (s == NULL) {
        return nomem(L);
    }
    where_of(L, n, s->where);
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        char name[256], why[128];
        const char *bad = site_name_norm(w->s, name, sizeof(name), why, sizeof(why));
        if (bad != NULL) {
            return fail_at_word(L, w, "bad site name \"%.100s\": %s", w->s, bad);
        }
        long owner = site_owning(c, name);
        if (owner >= 0 && (size_t)owner == c->nsites - 1) {
            return fail_at_word(L, w, "site name \"%s\" is listed twice (remove one)", name);
        }
        if (owner >= 0) {
            return fail_at_word(L, w,
                                "site name \"%s\" is already used by the site at line %d (each "
                                "name belongs to one site)",
                                name, L->site_pos[owner].line);
        }
        char *dup = strdup(name);
        if (dup == NULL || !push_str(&s->names, &s->nnames, dup)) {
            free(dup);
            return nomem(L);
        }
    }
    for (size_t k = 0; k < NSPECS; k++) {
        L->site_seen[k] = (struct pos){0, 0};
    }
    L->site = s;
    moat_rc rc = walk_block(L, n, CTX_SITE);
    L->site = NULL;
    MOAT_TRY(rc);
    if (s->root == NULL && s->proxy_host == NULL) {
        return fail_at_word(L, &n->words[0],
                            "site \"%s\" has nothing to serve (add \"root FOLDER\" or \"proxy "
                            "http://HOST:PORT\" inside its block)",
                            s->names[0]);
    }
    if (s->root != NULL && s->proxy_host != NULL) {
        return fail_at_word(L, &n->words[0],
                            "site \"%s\" has both root and proxy (keep one: a site either serves "
                            "files or forwards to an origin)",
                            s->names[0]);
    }
    if (s->proxy_host == NULL &&
        (s->proxy_ca || s->proxy_cert || s->proxy_timeout_ms || s->client_header_prefix)) {
        return fail_at_word(L, &n->words[0],
                            "site \"%s\" has proxy_* or client_header_prefix settings but no "
                            "proxy (add \"proxy http://HOST:PORT\")",
                            s->names[0]);
    }
    if (s->ncert_ca > 0 && s->ncerts == 0) {
        return fail_at_word(L, &n->words[0],
                            "site \"%s\" has cert_ca but no cert: cert_ca names the CA of the "
                            "site's cert files (add \"cert CERT.pem KEY.pem\", or remove "
                            "cert_ca; without cert, moat's local CA issues the certificate)",
                            s->names[0]);
    }
    if (s->proxy_timeout_ms == 0) {
        s->proxy_timeout_ms = 60000;
    }
    return MOAT_RC_OK;
}

static moat_rc h_cert(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    struct moat_conf_cert *a = realloc(s->certs, (s->ncerts + 1) * sizeof(*a));
    if (a == NULL) {
        return nomem(L);
    }
    s->certs = a;
    struct moat_conf_cert *ct = &a[s->ncerts];
    *ct = (struct moat_conf_cert){0};
    moat_rc rc = take_path(L, &n->words[1], "certificate", &ct->cert_path);
    if (moat_ok(rc)) {
        rc = take_path(L, &n->words[2], "key", &ct->key_path);
    }
    if (!moat_ok(rc)) {
        free(ct->cert_path);
        free(ct->key_path);
        return rc;
    }
    where_of(L, n, ct->where);
    s->ncerts++;
    return MOAT_RC_OK;
}

/* `cert_ca CA.pem...`: the CA(s) the site's certificates come from, so that the start-up check
 * can tell a missing intermediate or a wrong CA (refused) from a private root (fine). */
static moat_rc h_cert_ca(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    for (size_t i = 1; i < n->nwords; i++) {
        char *p = NULL;
        MOAT_TRY(take_path(L, &n->words[i], "cert_ca", &p));
        if (!push_str(&s->cert_ca, &s->ncert_ca, p)) {
            free(p);
            return nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_root(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    return take_path(L, &n->words[1], "root", &L->site->root);
}

static moat_rc h_index(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (w->len == 0 || strchr(w->s, '/') != NULL || strcmp(w->s, ".") == 0 ||
        strcmp(w->s, "..") == 0) {
        return fail_at_word(L, w,
                            "bad index \"%.64s\" (write a file name without \"/\", e.g. "
                            "index.html)",
                            w->s);
    }
    char *s = strdup(w->s);
    if (s == NULL) {
        return nomem(L);
    }
    free(L->site->index);
    L->site->index = s;
    return MOAT_RC_OK;
}

static moat_rc h_listing(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (!moat_ok(moat_cfg_bool(w->s, &L->site->listing))) {
        return fail_at_word(L, w, "bad value \"%.64s\" for \"listing\" (use on or off)", w->s);
    }
    return MOAT_RC_OK;
}

static moat_rc h_hsts(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *v = &n->words[1];
    if (strcmp(v->s, "off") == 0) {
        if (n->nwords > 2) {
            return fail_at_word(L, &n->words[2],
                                "\"hsts off\" takes nothing after off (remove \"%.64s\")",
                                n->words[2].s);
        }
        s->hsts = 0;
        return MOAT_RC_OK;
    }
    uint64_t ms;
    if (strcmp(v->s, "on") == 0) {
        s->hsts = 1;
    } else if (strcmp(v->s, "auto") == 0) {
        s->hsts = -1;
    } else if (moat_ok(moat_cfg_duration_ms(v->s, &ms))) {
        if (ms % 1000 != 0) {
            return fail_at_word(L, v, "hsts max-age must be whole seconds, got \"%.64s\"", v->s);
        }
        if (ms / 1000 > 10 * 365ULL * 86400) {
            return fail_at_word(L, v, "hsts max-age must be at most 10y, got \"%.64s\"", v->s);
        }
        s->hsts = 1;
        s->hsts_max_age_s = ms / 1000;
    } else {
        return fail_at_word(L, v,
                            "bad value \"%.64s\" for \"hsts\" (use off, on, auto or a max-age "
                            "such as 1y)",
                            v->s);
    }
    const struct moat_cfg_word *preload = NULL;
    for (size_t i = 2; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        int *flag;
        if (strcmp(w->s, "include_subdomains") == 0) {
            flag = &s->hsts_subdomains;
        } else if (strcmp(w->s, "preload") == 0) {
            flag = &s->hsts_preload;
            preload = w;
        } else {
            return fail_at_word(L, w,
                                "unknown hsts option \"%.64s\" (use include_subdomains and/or "
                                "preload)",
                                w->s);
        }
        if (*flag) {
            return fail_at_word(L, w, "hsts option \"%s\" is given twice (remove one)", w->s);
        }
        *flag = 1;
    }
    /* What hstspreload.org checks before it accepts a domain into the browsers' lists. */
    if (preload != NULL && (!s->hsts_subdomains || s->hsts_max_age_s < 365ULL * 86400)) {
        return fail_at_word(L, preload,
                            "\"preload\" needs include_subdomains and a max-age of at least 1y "
                            "(what hstspreload.org accepts)");
    }
    return MOAT_RC_OK;
}

/* ---- whole-file checks and entry points ---- */

/* ---- mutual TLS ---- */

static moat_rc h_client_auth(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    static const char *const modes[] = {"off", "optional", "require"};
    const struct moat_cfg_word *v = &n->words[1];
    for (int i = 0; i < 3; i++) {
        if (strcmp(v->s, modes[i]) == 0) {
            L->site->client_auth = i;
            return MOAT_RC_OK;
        }
    }
    return fail_at_word(L, v, "client_auth takes off, optional or require, not \"%.64s\"", v->s);
}

static moat_rc h_client_files(struct loader *L, const struct moat_cfg_node *n,
                              const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    int crl = strcmp(sp->name, "client_crl") == 0;
    for (size_t i = 1; i < n->nwords; i++) {
        char *p = NULL;
        MOAT_TRY(take_path(L, &n->words[i], crl ? "CRL" : "client CA", &p));
        if (!push_str(crl ? &s->client_crl : &s->client_ca, crl ? &s->nclient_crl : &s->nclient_ca,
                      p)) {
            free(p);
            return nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_client_depth(struct loader *L, const struct moat_cfg_node *n,
                              const struct spec *sp)
{
    uint64_t v;
    if (!parse_count(n->words[1].s, &v) || v < 1 || v > 16) {
        return fail_at_word(L, &n->words[1], "client_depth is a number between 1 and 16");
    }
    L->site->client_depth = (unsigned)v;
    return MOAT_RC_OK;
}

/* Patterns are checked for shape only: a kind prefix must be a known one. */
static moat_rc take_patterns(struct loader *L, const struct moat_cfg_node *n, size_t from,
                             char ***arr, size_t *narr)
{
    static const char *const kinds[] = {"cn", "dns", "email", "uri", "ip", "subject"};
    for (size_t i = from; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        const char *colon = strchr(w->s, ':');
        if (w->len == 0) {
            return fail_at_word(L, w, "empty pattern");
        }
        if (colon != NULL && strstr(w->s, "://") != colon) {
            int known = 0;
            for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
                known |= (size_t)(colon - w->s) == strlen(kinds[k]) &&
                         strncasecmp(w->s, kinds[k], strlen(kinds[k])) == 0;
            }
            if (!known && strchr(w->s, '=') == NULL && strchr(w->s, '@') == NULL) {
                return fail_at_word(L, w,
                                    "pattern \"%.64s\" has an unknown kind before ':' (use cn:, "
                                    "dns:, email:, uri:, ip: or subject:)",
                                    w->s);
            }
        }
        char *dup = strdup(w->s);
        if (dup == NULL || !push_str(arr, narr, dup)) {
            free(dup);
            return nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_client_allow(struct loader *L, const struct moat_cfg_node *n,
                              const struct spec *sp)
{
    return take_patterns(L, n, 1, &L->site->client_allow, &L->site->nclient_allow);
}

/* A path prefix as client_path and header take it: compared with normalised request paths, so
 * one that is not itself normal could never match. */
static int plain_prefix(const char *p, size_t len)
{
    int dotseg = strstr(p, "/../") != NULL || strstr(p, "/./") != NULL ||
                 (len >= 3 && strcmp(p + len - 3, "/..") == 0) ||
                 (len >= 2 && strcmp(p + len - 2, "/.") == 0);
    return p[0] == '/' && !dotseg && strstr(p, "//") == NULL && strchr(p, '%') == NULL &&
           strchr(p, '?') == NULL && strchr(p, '\\') == NULL;
}

static moat_rc h_client_path(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *w = &n->words[1];
    /* The prefix is compared with normalised request paths: one that is not itself normal
     * could never match, and the path it was meant to protect would stay open. */
    if (!plain_prefix(w->s, w->len)) {
        return fail_at_word(
            L, w,
            "client_path takes a plain path prefix starting with \"/\" (no \".\" or \"..\" "
            "segments, no \"//\", no %%-escapes, no query), e.g. /admin");
    }
    struct moat_conf_client_path *a = realloc(s->client_paths, (s->nclient_paths + 1) * sizeof(*a));
    if (a == NULL) {
        return nomem(L);
    }
    s->client_paths = a;
    struct moat_conf_client_path *cp = &a[s->nclient_paths];
    *cp = (struct moat_conf_client_path){0};
    /* Stored without a trailing slash so "/admin" and "/admin/" mean the same prefix. */
    size_t len = w->len;
    while (len > 1 && w->s[len - 1] == '/') {
        len--;
    }
    cp->prefix = strndup(w->s, len);
    if (cp->prefix == NULL) {
        return nomem(L);
    }
    s->nclient_paths++;
    return take_patterns(L, n, 2, &cp->allow, &cp->nallow);
}

/* ---- response header rules ---- */

static moat_rc h_header(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    size_t at = 1;
    const struct moat_cfg_word *pw = NULL;
    if (n->words[1].s[0] == '/') {
        pw = &n->words[1];
        if (!plain_prefix(pw->s, pw->len)) {
            return fail_at_word(L, pw,
                                "header takes a plain path prefix starting with \"/\" (no \".\" "
                                "or \"..\" segments, no \"//\", no %%-escapes, no query), e.g. "
                                "/static");
        }
        at = 2;
    }
    if (n->nwords < at + 2) { /* at least an operation and a name */
        return fail_at_word(L, &n->words[n->nwords - 1], "usage: %s", sp->usage);
    }
    const struct moat_cfg_word *ow = &n->words[at], *nw = &n->words[at + 1];
    int op;
    if (strcasecmp(ow->s, "set") == 0) {
        op = MOAT_HDR_SET;
    } else if (strcasecmp(ow->s, "add") == 0) {
        op = MOAT_HDR_ADD;
    } else if (strcasecmp(ow->s, "remove") == 0) {
        op = MOAT_HDR_REMOVE;
    } else {
        return fail_at_word(L, ow, "\"%.32s\" is not set, add or remove (usage: %s)", ow->s,
                            sp->usage);
    }
    /* The value may be quoted or written as several words (joined by one space). */
    char value[4200];
    size_t vlen = 0;
    for (size_t i = at + 2; i < n->nwords; i++) {
        size_t wl = n->words[i].len;
        if (vlen + wl + 2 > sizeof(value)) {
            return fail_at_word(L, &n->words[i], "the value of %s is longer than 4 KiB", nw->s);
        }
        if (vlen > 0) {
            value[vlen++] = ' ';
        }
        memcpy(value + vlen, n->words[i].s, wl);
        vlen += wl;
    }
    value[vlen] = '\0';
    int has_value = at + 2 < n->nwords;
    char why[300];
    if (!moat_hdr_name_ok(nw->s, why, sizeof(why))) {
        return fail_at_word(L, nw, "%s", why);
    }
    if (!moat_hdr_value_ok((enum moat_hdr_op)op, nw->s, has_value ? value : NULL, why,
                           sizeof(why))) {
        return fail_at_word(L, has_value ? &n->words[at + 2] : nw, "%s", why);
    }
    struct moat_conf_header *a = realloc(s->headers, (s->nheaders + 1) * sizeof(*a));
    if (a == NULL) {
        return nomem(L);
    }
    s->headers = a;
    struct moat_conf_header *h = &a[s->nheaders];
    *h = (struct moat_conf_header){.op = op};
    s->nheaders++;
    if (pw != NULL) {
        size_t len = pw->len;
        while (len > 1 && pw->s[len - 1] == '/') {
            len--; /* "/static/" and "/static" mean the same prefix */
        }
        h->prefix = strndup(pw->s, len);
    }
    h->name = strdup(nw->s);
    h->value = has_value ? strdup(value) : NULL;
    if (h->name == NULL || (pw != NULL && h->prefix == NULL) || (has_value && h->value == NULL)) {
        return nomem(L);
    }
    return MOAT_RC_OK;
}

/* ---- reverse proxy ---- */

static moat_rc h_proxy(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *w = &n->words[1];
    const char *rest = NULL;
    if (strncasecmp(w->s, "http://", 7) == 0) {
        rest = w->s + 7;
    } else if (strncasecmp(w->s, "https://", 8) == 0) {
        rest = w->s + 8;
        s->proxy_tls = 1;
    } else {
        return fail_at_word(L, w, "proxy takes http://HOST:PORT or https://HOST:PORT");
    }
    size_t len = strlen(rest);
    while (len > 0 && rest[len - 1] == '/') {
        len--; /* "http://h:1/" is fine; a path prefix is not supported */
    }
    char hostport[300];
    if (len == 0 || len >= sizeof(hostport) || memchr(rest, '/', len) != NULL ||
        memchr(rest, '@', len) != NULL) {
        return fail_at_word(L, w,
                            "proxy \"%.100s\": write only scheme, host and port (no path, no "
                            "user), e.g. http://127.0.0.1:9000",
                            w->s);
    }
    memcpy(hostport, rest, len);
    hostport[len] = '\0';
    char host[256];
    uint16_t port = 0;
    const char *bad = listen_parse(hostport, host, sizeof(host), &port);
    if (bad != NULL && strchr(hostport, ':') == NULL) {
        /* No port: the scheme's default. */
        snprintf(host, sizeof(host), "%.255s", hostport);
        port = s->proxy_tls ? 443 : 80;
        bad = host[0] == '\0' ? "no host" : NULL;
    }
    if (bad != NULL || host[0] == '\0') {
        return fail_at_word(L, w, "proxy \"%.100s\": %s", w->s, bad ? bad : "no host");
    }
    s->proxy_host = strdup(host);
    s->proxy_port = port;
    return s->proxy_host ? MOAT_RC_OK : nomem(L);
}

static moat_rc h_proxy_opt(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    if (strcmp(sp->name, "proxy_ca") == 0) {
        return take_path(L, &n->words[1], "CA", &s->proxy_ca);
    }
    if (strcmp(sp->name, "proxy_cert") == 0) {
        MOAT_TRY(take_path(L, &n->words[1], "certificate", &s->proxy_cert));
        return take_path(L, &n->words[2], "key", &s->proxy_key);
    }
    if (strcmp(sp->name, "proxy_timeout") == 0) {
        uint64_t ms;
        if (!moat_ok(moat_cfg_duration_ms(n->words[1].s, &ms)) || ms == 0 || ms > DAY_MS) {
            return fail_at_word(L, &n->words[1],
                                "proxy_timeout is a duration between 1ms and 1d, e.g. 60s");
        }
        s->proxy_timeout_ms = ms;
        return MOAT_RC_OK;
    }
    /* client_header_prefix: a token, so the header names it makes are valid */
    const char *v = n->words[1].s;
    if (n->words[1].len == 0 || n->words[1].len > 48) {
        return fail_at_word(L, &n->words[1],
                            "client_header_prefix must be 1 to 48 characters, e.g. X-Client-");
    }
    for (const char *p = v; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_')) {
            return fail_at_word(L, &n->words[1],
                                "client_header_prefix may hold letters, digits, '-' and '_' only");
        }
    }
    free(s->client_header_prefix);
    s->client_header_prefix = strdup(v);
    return s->client_header_prefix ? MOAT_RC_OK : nomem(L);
}

/* ---- CRL publication (the serving is serve/crlpub.c) ---- */

static moat_rc h_crl_publish(struct loader *L, const struct moat_cfg_node *n, const struct spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *pw = &n->words[1], *dw = &n->words[2];
    char norm[1024];
    size_t nlen = 0;
    if (pw->s[0] != '/' ||
        !moat_ok(moat_path_normalize(pw->s, pw->len, norm, sizeof(norm), &nlen)) ||
        strpbrk(pw->s, "?#") != NULL) {
        return fail_at_word(L, pw,
                            "crl_publish takes the URL path of the CRL, as in the CA's CRL URL "
                            "(e.g. /crl/intermediate.crl): \"%.100s\" is not one",
                            pw->s);
    }
    if (norm[nlen - 1] == '/') {
        return fail_at_word(L, pw,
                            "crl_publish path \"%.100s\" names a folder: give the CRL a file "
                            "name, e.g. /crl/intermediate.crl",
                            pw->s);
    }
    for (size_t i = 0; i < s->ncrl_publish; i++) {
        if (strcmp(s->crl_publish[i].path, norm) == 0) {
            return fail_at_word(L, pw, "%s is already published in this site (%s): remove one",
                                norm, s->crl_publish[i].where);
        }
    }
    int root = 0;
    if (n->nwords > 3) {
        const struct moat_cfg_word *kw = &n->words[3];
        if (strcmp(kw->s, "root") != 0 && strcmp(kw->s, "intermediate") != 0) {
            return fail_at_word(L, kw,
                                "crl_publish publishes the \"intermediate\" CRL (crl.pem, the "
                                "default) or the \"root\" one (root-crl.pem), not \"%.64s\"",
                                kw->s);
        }
        root = strcmp(kw->s, "root") == 0;
    }
    if (dw->s[0] == '~') {
        return fail_at_word(L, dw,
                            "moat does not expand ~ in paths: write the CA folder in full (e.g. "
                            "/home/me/.local/share/moat/ca), or `local` for moat's local CA");
    }
    char *dir = NULL;
    if (strcmp(dw->s, "local") != 0) {
        MOAT_TRY(take_path(L, dw, "CA folder", &dir));
    }
    struct moat_conf_crl_publish *a = realloc(s->crl_publish, (s->ncrl_publish + 1) * sizeof(*a));
    char *path = strdup(norm);
    if (a != NULL) {
        s->crl_publish = a;
    }
    if (a == NULL || path == NULL) {
        free(dir);
        free(path);
        return nomem(L);
    }
    struct moat_conf_crl_publish *e = &a[s->ncrl_publish++];
    *e = (struct moat_conf_crl_publish){.path = path, .ca_dir = dir, .root = root};
    /* What goes wrong later (a missing CA, a bad CRL file) is about the folder word. */
    snprintf(e->where, sizeof(e->where), "%s:%d:%d", L->doc->name, dw->line, dw->col);
    return MOAT_RC_OK;
}

/* A site's client-auth directives must add up; report at the site's position. */
static moat_rc check_client_auth(struct loader *L, size_t i)
{
    const struct moat_conf_site *s = &L->c->sites[i];
    struct pos p = L->site_pos[i];
    if (s->client_auth != 0 && s->nclient_ca == 0) {
        return moat_cfg_fail(L->err, L->doc, p.line, p.col,
                             "site \"%s\" asks for client certificates but names no CA for them "
                             "(add \"client_ca CA.pem\")",
                             s->names[0]);
    }
    if (s->client_auth == 0 && (s->nclient_ca || s->nclient_crl || s->nclient_allow ||
                                s->nclient_paths || s->client_depth)) {
        return moat_cfg_fail(L->err, L->doc, p.line, p.col,
                             "site \"%s\" has client_* settings but client_auth is off (add "
                             "\"client_auth optional\" or \"client_auth require\")",
                             s->names[0]);
    }
    return MOAT_RC_OK;
}

static moat_rc check_whole(struct loader *L)
{
    struct moat_conf *c = L->c;
    if (c->nsites == 0) {
        moat_err_where(L->err, "%s", L->doc->name);
        MOAT_FAIL(L->err, MOAT_E_CONFIG,
                  "no site is defined (add one, e.g. site localhost { root ./www })");
    }
    if (c->max_line_bytes > c->max_head_bytes) {
        size_t k = 0;
        while (strcmp(specs[k].name, "request_line") != 0) {
            k++;
        }
        struct pos p = L->seen[k];
        if (p.line == 0) {
            while (strcmp(specs[k].name, "header_bytes") != 0) {
                k++;
            }
            p = L->seen[k];
        }
        return moat_cfg_fail(L->err, L->doc, p.line, p.col,
                             "request_line (%llu) is larger than header_bytes (%llu); the "
                             "request line is part of the head (raise header_bytes)",
                             (unsigned long long)c->max_line_bytes,
                             (unsigned long long)c->max_head_bytes);
    }
    for (size_t i = 0; i < c->nsites; i++) {
        MOAT_TRY(check_client_auth(L, i));
    }
    if (c->redirect_listen != NULL) {
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
    }
    return MOAT_RC_OK;
}

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
    struct loader L = {.doc = doc, .base_dir = base_dir, .err = err};
    L.c = moat_conf_new();
    L.seen = calloc(NSPECS, sizeof(*L.seen));
    L.site_seen = calloc(NSPECS, sizeof(*L.site_seen));
    moat_rc rc;
    if (L.c == NULL || L.seen == NULL || L.site_seen == NULL) {
        rc = nomem(&L);
    } else {
        rc = walk_block(&L, &doc->root, CTX_TOP);
    }
    if (moat_ok(rc)) {
        rc = check_whole(&L);
    }
    free(L.seen);
    free(L.site_seen);
    free(L.listen_pos);
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
        const char *why = listen_parse(addrs[i], host, sizeof(host), &port);
        if (why != NULL) {
            free_strs(list, i);
            moat_err_where(err, "command line");
            MOAT_FAIL(err, MOAT_E_USAGE, "bad listen address \"%.100s\": %s", addrs[i], why);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(list[j], addrs[i]) == 0) {
                free_strs(list, i);
                moat_err_where(err, "command line");
                MOAT_FAIL(err, MOAT_E_USAGE, "listen address \"%.100s\" is given twice", addrs[i]);
            }
        }
        list[i] = strdup(addrs[i]);
        if (list[i] == NULL) {
            free_strs(list, i);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    free_strs(c->listen, c->nlisten);
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
    const char *bad =
        name != NULL ? site_name_norm(name, norm, normcap, why, sizeof(why)) : "no name given";
    if (bad != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "bad site name \"%.100s\": %s", name ? name : "", bad);
    }
    if (site_owning(c, norm) >= 0) {
        MOAT_FAIL(err, MOAT_E_USAGE, "site name \"%s\" is already used by another site", norm);
    }
    if (root == NULL || root[0] == '\0') {
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
    char norm[256];
    moat_rc rc = add_site_check(c, name, root, cert_path, key_path, norm, sizeof(norm), err);
    if (!moat_ok(rc)) {
        moat_err_where(err, "command line");
        return rc;
    }
    struct moat_conf_site *s = site_push(c);
    if (s == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    snprintf(s->where, sizeof(s->where), "command line");
    char *n = strdup(norm);
    int ok = n != NULL && push_str(&s->names, &s->nnames, n);
    if (!ok) {
        free(n);
    }
    ok = ok && (s->root = strdup(root)) != NULL;
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
        site_clear(s);
        c->nsites--;
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    return MOAT_RC_OK;
}
