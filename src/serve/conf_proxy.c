/*
 * conf_proxy.c: the reverse-proxy directives: `upstream NAME { ... }` blocks (servers, balancing,
 * pools, health, retries, timeouts, TLS to the servers), `trusted_proxies` and `proxy_protocol`
 * at the top level, and in a site block `proxy [/PREFIX] UPSTREAM|URL [strip|rewrite /NEW]`,
 * proxy_host, proxy_ca, proxy_cert, proxy_timeout and client_header_prefix. Forwarding itself is
 * serve/proxy.c over upstream/; names are resolved and TLS contexts built by the snapshot, not
 * here. Users' reference: docs/proxy.md.
 */
#include "serve/conf_internal.h"

#include "core/cfg.h"
#include "core/cidr.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- upstreams: the records ------------------------------------------------------------- */

static void upstream_defaults(struct moat_conf_upstream *u)
{
    *u = (struct moat_conf_upstream){
        .keepalive = 32,
        .keepalive_ms = 60000,
        .queue_ms = 10000,
        .max_fails = 1,
        .fail_timeout_ms = 10000,
        .retries = 2,
        .connect_ms = 10000,
        .first_byte_ms = 60000,
        .read_ms = 60000,
        .write_ms = 60000,
        .tunnel_ms = 3600000,
        .check_interval_ms = 5000,
        .check_timeout_ms = 2000,
        .check_rise = 2,
        .check_fall = 3,
        .check_status_lo = 200,
        .check_status_hi = 399,
    };
}

void moat_conf__upstream_clear(struct moat_conf_upstream *u)
{
    for (size_t i = 0; i < u->nservers; i++) {
        free(u->servers[i].host);
        free(u->servers[i].unix_path);
    }
    free(u->servers);
    free(u->name);
    free(u->hash_key);
    free(u->check_path);
    free(u->check_host);
    free(u->ca);
    free(u->cert);
    free(u->key);
    free(u->sni);
}

static struct moat_conf_upstream *upstream_push(struct moat_conf *c)
{
    struct moat_conf_upstream *a = realloc(c->upstreams, (c->nupstreams + 1) * sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    c->upstreams = a;
    struct moat_conf_upstream *u = &a[c->nupstreams++];
    upstream_defaults(u);
    return u;
}

/*
 * A server address as written: `HOST:PORT`, `[V6]:PORT`, `http://HOST[:PORT]`,
 * `https://HOST[:PORT]` (a trailing '/' allowed, no path, no user) or `unix:/PATH`. NULL when
 * fine, else why.
 */
static const char *parse_server(const char *text, struct moat_conf_upstream_server *out,
                                int need_scheme)
{
    *out = (struct moat_conf_upstream_server){.weight = 1};
    if (strncasecmp(text, "unix:", 5) == 0) {
        if (text[5] != '/' || strlen(text) > 107) {
            return "a unix socket is unix:/ABSOLUTE/PATH (at most 107 bytes)";
        }
        out->unix_path = strdup(text + 5);
        return out->unix_path != NULL ? NULL : "out of memory";
    }
    const char *rest = text;
    int scheme = 0;
    if (strncasecmp(text, "http://", 7) == 0) {
        rest = text + 7;
        scheme = 1;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        rest = text + 8;
        out->tls = 1;
        scheme = 1;
    } else if (need_scheme || strstr(text, "://") != NULL) {
        return "write http://HOST:PORT, https://HOST:PORT or unix:/PATH";
    }
    size_t len = strlen(rest);
    while (scheme && len > 0 && rest[len - 1] == '/') {
        len--; /* "http://h:1/" is fine; a path is not: the client's path is forwarded */
    }
    char hostport[300];
    if (len == 0 || len >= sizeof(hostport) || memchr(rest, '/', len) != NULL ||
        memchr(rest, '@', len) != NULL) {
        return "write only scheme, host and port (no path, no user), e.g. http://127.0.0.1:9000";
    }
    memcpy(hostport, rest, len);
    hostport[len] = '\0';
    char host[256];
    uint16_t port = 0;
    const char *bad = moat_conf__listen_parse(hostport, host, sizeof(host), &port);
    if (bad != NULL && scheme && strchr(hostport, ':') == NULL) {
        snprintf(host, sizeof(host), "%.255s", hostport); /* no port: the scheme's */
        port = out->tls ? 443 : 80;
        bad = host[0] == '\0' ? "no host" : NULL;
    }
    if (bad != NULL) {
        return bad;
    }
    if (host[0] == '\0' || port == 0) {
        return "a server needs a host and a port other than 0";
    }
    out->host = strdup(host);
    out->port = port;
    return out->host != NULL ? NULL : "out of memory";
}

/* ---- upstream NAME { ... } -------------------------------------------------------------- */

static moat_rc h_upstream(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    if (!moat_conf__block_name_ok(w->s)) {
        return moat_conf__fail_at_word(L, w,
                                       "an upstream's name is 1 to 63 letters, digits, '-', '_' "
                                       "or '.', e.g. upstream app { server 127.0.0.1:8000 }");
    }
    if (!n->has_block) {
        return moat_conf__fail_at_word(L, w,
                                       "upstream %s needs a block: upstream %s { server "
                                       "HOST:PORT; }",
                                       w->s, w->s);
    }
    for (size_t i = 0; i < L->c->nupstreams; i++) {
        if (L->c->upstreams[i].name != NULL && strcmp(L->c->upstreams[i].name, w->s) == 0) {
            return moat_conf__fail_at_word(L, w, "upstream \"%s\" is defined twice (at %s too)",
                                           w->s, L->c->upstreams[i].where);
        }
    }
    struct moat_conf_upstream *u = upstream_push(L->c);
    if (u == NULL || (u->name = strdup(w->s)) == NULL) {
        return moat_conf__nomem(L);
    }
    moat_conf__where_of(L, n, u->where);
    size_t idx = (size_t)(u - L->c->upstreams);
    size_t nspecs = moat_conf__spec_count();
    for (size_t k = 0; k < nspecs; k++) {
        L->site_seen[k] = (struct moat_conf__pos){0, 0};
    }
    L->upstream = idx + 1;
    moat_rc rc = moat_conf__walk_block(L, n, MOAT_CONF__UPSTREAM);
    L->upstream = 0;
    MOAT_TRY(rc);
    u = &L->c->upstreams[idx];
    if (u->nservers == 0) {
        return moat_conf__fail_at_word(L, w,
                                       "upstream \"%s\" has no server (add server "
                                       "HOST:PORT inside its block)",
                                       u->name);
    }
    if ((u->ca || u->cert || u->sni)) {
        int any_tls = 0;
        for (size_t i = 0; i < u->nservers; i++) {
            any_tls |= u->servers[i].tls;
        }
        if (!any_tls) {
            return moat_conf__fail_at_word(L, w,
                                           "upstream \"%s\" has ca, cert or sni but no "
                                           "https:// server: write its servers as "
                                           "https://HOST:PORT",
                                           u->name);
        }
    }
    return MOAT_RC_OK;
}

static struct moat_conf_upstream *cur_upstream(struct moat_conf__loader *L)
{
    return &L->c->upstreams[L->upstream - 1];
}

/* `server ADDRESS [weight N]` */
static moat_rc h_server(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    struct moat_conf_upstream *u = cur_upstream(L);
    struct moat_conf_upstream_server sv;
    const char *bad = parse_server(n->words[1].s, &sv, 0);
    if (bad != NULL) {
        return moat_conf__fail_at_word(L, &n->words[1], "server \"%.100s\": %s", n->words[1].s,
                                       bad);
    }
    for (size_t i = 2; i < n->nwords; i += 2) {
        uint64_t wt = 0;
        if (strcmp(n->words[i].s, "weight") != 0 || i + 1 >= n->nwords ||
            !moat_conf__parse_count(n->words[i + 1].s, &wt) || wt < 1 || wt > 1000) {
            free(sv.host);
            free(sv.unix_path);
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "after the address a server takes weight N (1 to "
                                           "1000), e.g. server 10.0.0.1:8000 weight 2");
        }
        sv.weight = (unsigned)wt;
    }
    if (u->nservers >= 256) {
        free(sv.host);
        free(sv.unix_path);
        return moat_conf__fail_at_word(L, &n->words[0], "an upstream has at most 256 servers");
    }
    moat_conf__where_of(L, n, sv.where);
    struct moat_conf_upstream_server *a = realloc(u->servers, (u->nservers + 1) * sizeof(*a));
    if (a == NULL) {
        free(sv.host);
        free(sv.unix_path);
        return moat_conf__nomem(L);
    }
    u->servers = a;
    a[u->nservers++] = sv;
    return MOAT_RC_OK;
}

/* `balance round_robin|least_conn|random_two|hash ip|hash header NAME|hash cookie NAME` */
static moat_rc h_balance(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    struct moat_conf_upstream *u = cur_upstream(L);
    const char *m = n->words[1].s;
    static const char usage[] = "balance round_robin | least_conn | random_two | hash ip | "
                                "hash header NAME | hash cookie NAME";
    if (strcmp(m, "hash") != 0) {
        if (n->nwords != 2) {
            return moat_conf__fail_at_word(L, &n->words[2], "usage: %s", usage);
        }
        if (strcmp(m, "round_robin") == 0) {
            u->balance = MOAT_CONF_BAL_ROUND_ROBIN;
        } else if (strcmp(m, "least_conn") == 0) {
            u->balance = MOAT_CONF_BAL_LEAST_CONN;
        } else if (strcmp(m, "random_two") == 0) {
            u->balance = MOAT_CONF_BAL_RANDOM_TWO;
        } else {
            return moat_conf__fail_at_word(L, &n->words[1], "unknown balance \"%.40s\" (usage: %s)",
                                           m, usage);
        }
        return MOAT_RC_OK;
    }
    const char *k = n->nwords > 2 ? n->words[2].s : "";
    if (strcmp(k, "ip") == 0 && n->nwords == 3) {
        u->balance = MOAT_CONF_BAL_HASH_IP;
        return MOAT_RC_OK;
    }
    if ((strcmp(k, "header") == 0 || strcmp(k, "cookie") == 0) && n->nwords == 4) {
        const char *name = n->words[3].s;
        for (const char *p = name; *p; p++) {
            if (!(isalnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p) != NULL)) {
                return moat_conf__fail_at_word(L, &n->words[3], "\"%.64s\" is not a %s name", name,
                                               k);
            }
        }
        u->balance = k[0] == 'h' ? MOAT_CONF_BAL_HASH_HEADER : MOAT_CONF_BAL_HASH_COOKIE;
        free(u->hash_key);
        u->hash_key = strdup(name);
        return u->hash_key != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
    }
    return moat_conf__fail_at_word(L, &n->words[n->nwords > 2 ? 2 : 1], "usage: %s", usage);
}

/* The upstream's numbers and durations, one row each. */
struct up_value {
    const char *name;
    size_t off;
    int duration; /* else a count */
    uint64_t lo, hi;
    const char *range;
};

#define UPV(nm, field, dur, l, h, r)                                                               \
    {                                                                                              \
        nm, offsetof(struct moat_conf_upstream, field), dur, l, h, r                               \
    }
static const struct up_value up_values[] = {
    UPV("keepalive", keepalive, 0, 0, 10000, "0 to 10000"),
    UPV("keepalive_timeout", keepalive_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
    UPV("max_conns", max_conns, 0, 0, 1000000, "0 (no limit) to 1000000"),
    UPV("max_fails", max_fails, 0, 0, 1000, "0 (off) to 1000"),
    UPV("fail_timeout", fail_timeout_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
    UPV("slow_start", slow_start_ms, 1, 0, MOAT_CONF__DAY_MS, "between 0 (off) and 1d"),
    UPV("retries", retries, 0, 0, 100, "0 to 100"),
    UPV("retry_timeout", retry_timeout_ms, 1, 0, MOAT_CONF__DAY_MS, "between 0 (off) and 1d"),
    UPV("connect", connect_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
    UPV("first_byte", first_byte_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
    UPV("read", read_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
    UPV("write", write_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
    UPV("total", total_ms, 1, 0, MOAT_CONF__DAY_MS, "between 0 (off) and 1d"),
    UPV("tunnel", tunnel_ms, 1, 1, MOAT_CONF__DAY_MS, "between 1ms and 1d"),
};

static moat_rc set_value(struct moat_conf__loader *L, struct moat_conf_upstream *u,
                         const char *name, const struct moat_cfg_word *v)
{
    for (size_t i = 0; i < sizeof(up_values) / sizeof(up_values[0]); i++) {
        const struct up_value *r = &up_values[i];
        if (strcmp(r->name, name) != 0) {
            continue;
        }
        uint64_t x = 0;
        int ok = r->duration ? moat_ok(moat_cfg_duration_ms(v->s, &x))
                             : moat_conf__parse_count(v->s, &x);
        if (!ok || x < r->lo || x > r->hi) {
            return moat_conf__fail_at_word(L, v, "\"%s\" must be %s%s, got \"%.64s\"", name,
                                           r->range, r->duration ? " (e.g. 10s)" : "", v->s);
        }
        memcpy((char *)u + r->off, &x, sizeof(x));
        return MOAT_RC_OK;
    }
    return moat_rc_of(MOAT_E_INTERNAL);
}

static moat_rc h_up_value(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                          const struct moat_conf__spec *sp)
{
    return set_value(L, cur_upstream(L), sp->name, &n->words[1]);
}

/* `queue N [TIMEOUT]`: requests that wait for a connection when every server is at max_conns */
static moat_rc h_queue(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_upstream *u = cur_upstream(L);
    uint64_t q = 0, ms = u->queue_ms;
    if (!moat_conf__parse_count(n->words[1].s, &q) || q > 100000) {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "queue takes a count of 0 to 100000, "
                                       "then an optional timeout, e.g. queue 100 5s");
    }
    if (n->nwords > 2 &&
        (!moat_ok(moat_cfg_duration_ms(n->words[2].s, &ms)) || ms == 0 || ms > 3600000)) {
        return moat_conf__fail_at_word(L, &n->words[2],
                                       "the queue's timeout is between 1ms and 1h, e.g. 5s");
    }
    u->queue = q;
    u->queue_ms = ms;
    return MOAT_RC_OK;
}

/* `health_check /PATH [interval D] [timeout D] [rise N] [fall N] [status LO[-HI]] [host NAME]` */
static moat_rc h_health(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    struct moat_conf_upstream *u = cur_upstream(L);
    const struct moat_cfg_word *pw = &n->words[1];
    if (pw->s[0] != '/' || strpbrk(pw->s, " \t\r\n#") != NULL || pw->len > 1024) {
        return moat_conf__fail_at_word(L, pw,
                                       "health_check takes a path starting with \"/\", "
                                       "e.g. health_check /healthz interval 5s");
    }
    for (size_t i = 2; i < n->nwords; i += 2) {
        const struct moat_cfg_word *k = &n->words[i];
        if (i + 1 >= n->nwords) {
            return moat_conf__fail_at_word(L, k, "\"%.32s\" needs a value", k->s);
        }
        const struct moat_cfg_word *v = &n->words[i + 1];
        uint64_t x = 0;
        if (strcmp(k->s, "interval") == 0 || strcmp(k->s, "timeout") == 0) {
            if (!moat_ok(moat_cfg_duration_ms(v->s, &x)) || x < 10 || x > 3600000) {
                return moat_conf__fail_at_word(L, v, "a health check's %s is between 10ms and 1h",
                                               k->s);
            }
            *(k->s[0] == 'i' ? &u->check_interval_ms : &u->check_timeout_ms) = x;
        } else if (strcmp(k->s, "rise") == 0 || strcmp(k->s, "fall") == 0) {
            if (!moat_conf__parse_count(v->s, &x) || x < 1 || x > 100) {
                return moat_conf__fail_at_word(L, v, "a health check's %s is 1 to 100", k->s);
            }
            *(k->s[0] == 'r' ? &u->check_rise : &u->check_fall) = x;
        } else if (strcmp(k->s, "status") == 0) {
            unsigned lo = 0, hi = 0;
            char tail = 0;
            int got = sscanf(v->s, "%3u-%3u%c", &lo, &hi, &tail);
            if (got == 1) {
                hi = lo;
            }
            if ((got != 1 && got != 2) || lo < 100 || hi > 599 || lo > hi || strlen(v->s) > 7) {
                return moat_conf__fail_at_word(L, v,
                                               "status takes a code or a range, e.g. 200 or "
                                               "200-399");
            }
            u->check_status_lo = lo;
            u->check_status_hi = hi;
        } else if (strcmp(k->s, "host") == 0) {
            free(u->check_host);
            if ((u->check_host = strdup(v->s)) == NULL) {
                return moat_conf__nomem(L);
            }
        } else {
            return moat_conf__fail_at_word(L, k,
                                           "unknown health_check option \"%.32s\" (known: "
                                           "interval, timeout, rise, fall, status, host)",
                                           k->s);
        }
    }
    free(u->check_path);
    u->check_path = strdup(pw->s);
    return u->check_path != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
}

/* `ca FILE`, `cert CERT KEY`, `sni NAME`, `proxy_protocol v2|off` */
static moat_rc h_up_tls(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    struct moat_conf_upstream *u = cur_upstream(L);
    if (strcmp(sp->name, "ca") == 0) {
        return moat_conf__take_path(L, &n->words[1], "CA", &u->ca);
    }
    if (strcmp(sp->name, "cert") == 0) {
        MOAT_TRY(moat_conf__take_path(L, &n->words[1], "certificate", &u->cert));
        return moat_conf__take_path(L, &n->words[2], "key", &u->key);
    }
    if (strcmp(sp->name, "sni") == 0) {
        free(u->sni);
        u->sni = strdup(n->words[1].s);
        return u->sni != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
    }
    const char *v = n->words[1].s;
    if (strcmp(v, "v2") == 0) {
        u->proxy_protocol = 2;
    } else if (strcmp(v, "off") == 0) {
        u->proxy_protocol = 0;
    } else {
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "proxy_protocol takes v2 or off (moat sends version 2)");
    }
    return MOAT_RC_OK;
}

/* `timeouts { connect D; first_byte D; read D; write D; total D; }` inside an upstream */
static moat_rc h_up_timeouts(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             const struct moat_conf__spec *sp)
{
    return moat_conf__walk_block(L, n, MOAT_CONF__UP_TIMEOUTS);
}

/* ---- top level: trusted_proxies, proxy_protocol ---------------------------------------- */

static moat_rc h_trusted(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    for (size_t i = 1; i < n->nwords; i++) {
        struct moat_cidr c;
        const char *bad = moat_cidr_parse(n->words[i].s, &c);
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "trusted_proxies \"%.64s\": %s (write "
                                           "addresses or ranges, e.g. 10.0.0.0/8 ::1)",
                                           n->words[i].s, bad);
        }
        char *s = strdup(n->words[i].s);
        if (s == NULL || !moat_conf__push_str(&L->c->trusted_proxies, &L->c->ntrusted_proxies, s)) {
            free(s);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_proxy_protocol_listen(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                       const struct moat_conf__spec *sp)
{
    return moat_conf__take_listen_words(L, n, "proxy_protocol", &L->c->proxy_protocol_listen,
                                        &L->c->nproxy_protocol_listen);
}

/* ---- the site's proxy rules ------------------------------------------------------------- */

/*
 * `proxy [/PREFIX] UPSTREAM|URL [strip | rewrite /NEW]`: forward the site's requests (or those
 * under PREFIX) to the upstream block UPSTREAM or to the one server URL (http://, https://,
 * unix:). See docs/proxy.md#proxy.
 */
static moat_rc h_proxy(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    static const char usage[] = "proxy [/PREFIX] UPSTREAM|http://HOST:PORT [strip | rewrite /NEW]";
    size_t at = 1;
    struct moat_conf_proxy_rule r = {0};
    moat_conf__where_of(L, n, r.where);
    if (n->words[1].s[0] == '/') {
        const struct moat_cfg_word *pw = &n->words[1];
        if (!moat_conf__plain_prefix(pw->s, pw->len)) {
            return moat_conf__fail_at_word(L, pw,
                                           "proxy takes a plain path prefix starting with \"/\" "
                                           "(no \".\" or \"..\" segments, no \"//\", no "
                                           "%%-escapes), e.g. proxy /api/ app");
        }
        at = 2;
        if (n->nwords < 3) {
            return moat_conf__fail_at_word(L, pw, "usage: %s", usage);
        }
    }
    /* Two rules for one prefix would make the second silently dead. */
    const char *pfx = at == 2 ? n->words[1].s : NULL;
    size_t plen = pfx != NULL ? strlen(pfx) : 0;
    while (plen > 1 && pfx[plen - 1] == '/') {
        plen--;
    }
    if (plen == 1) {
        pfx = NULL; /* "/" is every path: the same rule as no prefix */
        plen = 0;
    }
    for (size_t i = 0; i < s->nproxies; i++) {
        const char *o = s->proxies[i].prefix;
        if ((o == NULL && pfx == NULL) ||
            (o != NULL && pfx != NULL && strlen(o) == plen && strncmp(o, pfx, plen) == 0)) {
            return moat_conf__fail_at_word(L, &n->words[0], "this site already proxies %s at %s",
                                           pfx ? pfx : "every path", s->proxies[i].where);
        }
    }
    if (pfx != NULL && (r.prefix = strndup(pfx, plen)) == NULL) {
        return moat_conf__nomem(L);
    }
    const struct moat_cfg_word *tw = &n->words[at];
    size_t after = at + 1;
    if (after < n->nwords) {
        const struct moat_cfg_word *ow = &n->words[after];
        if (strcmp(ow->s, "strip") != 0 && strcmp(ow->s, "rewrite") != 0) {
            free(r.prefix);
            return moat_conf__fail_at_word(L, ow,
                                           "a proxy rule names one upstream or URL, then "
                                           "optionally strip or rewrite /NEW (usage: %s)",
                                           usage);
        }
        if (r.prefix == NULL) {
            return moat_conf__fail_at_word(L, ow, "strip and rewrite need a path prefix: %s",
                                           usage);
        }
        if (strcmp(ow->s, "strip") == 0 && after + 1 == n->nwords) {
            r.strip = 1;
        } else if (strcmp(ow->s, "rewrite") == 0 && after + 2 == n->nwords &&
                   moat_conf__plain_prefix(n->words[after + 1].s, n->words[after + 1].len)) {
            const char *nw = n->words[after + 1].s;
            size_t nl = strlen(nw);
            while (nl > 1 && nw[nl - 1] == '/') {
                nl--;
            }
            if ((r.rewrite = strndup(nw, nl)) == NULL) {
                free(r.prefix);
                return moat_conf__nomem(L);
            }
        } else {
            free(r.prefix);
            return moat_conf__fail_at_word(L, ow,
                                           "after the upstream a proxy rule takes strip or "
                                           "rewrite /NEW (usage: %s)",
                                           usage);
        }
    }
    if (strstr(tw->s, "://") != NULL || strncasecmp(tw->s, "unix:", 5) == 0) {
        struct moat_conf_upstream_server sv;
        const char *bad = parse_server(tw->s, &sv, 1);
        if (bad != NULL) {
            free(r.prefix);
            free(r.rewrite);
            return moat_conf__fail_at_word(L, tw, "proxy \"%.100s\": %s", tw->s, bad);
        }
        struct moat_conf_upstream *u = upstream_push(L->c);
        if (u != NULL) {
            u->servers = malloc(sizeof(*u->servers));
        }
        if (u == NULL || u->servers == NULL) {
            free(sv.host);
            free(sv.unix_path);
            free(r.prefix);
            free(r.rewrite);
            return moat_conf__nomem(L);
        }
        snprintf(sv.where, sizeof(sv.where), "%s", r.where);
        snprintf(u->where, sizeof(u->where), "%s", r.where);
        u->servers[0] = sv;
        u->nservers = 1;
        u->max_fails = 0; /* one server: taking it out would only turn 502s into 503s */
        r.index = L->c->nupstreams - 1;
    } else {
        if (!moat_conf__block_name_ok(tw->s)) {
            free(r.prefix);
            free(r.rewrite);
            return moat_conf__fail_at_word(L, tw,
                                           "proxy \"%.100s\": write http://HOST:PORT, "
                                           "https://HOST:PORT, unix:/PATH or the name of an "
                                           "upstream block",
                                           tw->s);
        }
        r.upstream = strdup(tw->s);
        if (r.upstream == NULL) {
            free(r.prefix);
            free(r.rewrite);
            return moat_conf__nomem(L);
        }
        /* Resolved once the whole file is read: the block may come after the site. */
        r.index = (size_t)n->words[at].line; /* kept for the message: line of the name */
    }
    struct moat_conf_proxy_rule *a = realloc(s->proxies, (s->nproxies + 1) * sizeof(*a));
    if (a == NULL) {
        free(r.prefix);
        free(r.rewrite);
        free(r.upstream);
        return moat_conf__nomem(L);
    }
    s->proxies = a;
    a[s->nproxies++] = r;
    return MOAT_RC_OK;
}

/* `proxy_host keep|upstream|NAME`: the Host field sent upstream. */
static moat_rc h_proxy_host(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                            const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    const char *v = n->words[1].s;
    if (strcmp(v, "keep") == 0) {
        s->proxy_host_mode = 0;
        return MOAT_RC_OK;
    }
    if (strcmp(v, "upstream") == 0) {
        s->proxy_host_mode = 1;
        return MOAT_RC_OK;
    }
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '/' || *p == '@') {
            return moat_conf__fail_at_word(L, &n->words[1],
                                           "proxy_host takes keep, upstream or "
                                           "a host[:port], e.g. proxy_host app.internal");
        }
    }
    s->proxy_host_mode = 2;
    free(s->proxy_host_value);
    s->proxy_host_value = strdup(v);
    return s->proxy_host_value != NULL ? MOAT_RC_OK : moat_conf__nomem(L);
}

/*
 * The options of a site's inline upstreams, each needing a proxy rule
 * (moat_conf__proxy_check_site): `proxy_ca CA.pem`, `proxy_cert CERT.pem KEY.pem`, `proxy_timeout
 * DURATION` (connect, first byte and between reads and writes), `client_header_prefix PREFIX` (any
 * upstream).
 */
static moat_rc h_proxy_opt(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                           const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    if (strcmp(sp->name, "proxy_ca") == 0) {
        return moat_conf__take_path(L, &n->words[1], "CA", &s->proxy_ca);
    }
    if (strcmp(sp->name, "proxy_cert") == 0) {
        MOAT_TRY(moat_conf__take_path(L, &n->words[1], "certificate", &s->proxy_cert));
        return moat_conf__take_path(L, &n->words[2], "key", &s->proxy_key);
    }
    if (strcmp(sp->name, "proxy_timeout") == 0) {
        uint64_t ms;
        if (!moat_ok(moat_cfg_duration_ms(n->words[1].s, &ms)) || ms == 0 ||
            ms > MOAT_CONF__DAY_MS) {
            return moat_conf__fail_at_word(
                L, &n->words[1], "proxy_timeout is a duration between 1ms and 1d, e.g. 60s");
        }
        s->proxy_timeout_ms = ms;
        return MOAT_RC_OK;
    }
    /* client_header_prefix: a token, so the header names it makes are valid */
    const char *v = n->words[1].s;
    if (n->words[1].len == 0 || n->words[1].len > 48) {
        return moat_conf__fail_at_word(
            L, &n->words[1], "client_header_prefix must be 1 to 48 characters, e.g. X-Client-");
    }
    for (const char *p = v; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_')) {
            return moat_conf__fail_at_word(
                L, &n->words[1], "client_header_prefix may hold letters, digits, '-' and '_' only");
        }
    }
    free(s->client_header_prefix);
    s->client_header_prefix = strdup(v);
    return s->client_header_prefix ? MOAT_RC_OK : moat_conf__nomem(L);
}

#define UP(nm, mn, mx, f, use) MOAT_CONF__CUSTOM(nm, MOAT_CONF__UPSTREAM, mn, mx, 0, f, use)
#define UPT(nm) MOAT_CONF__CUSTOM(nm, MOAT_CONF__UP_TIMEOUTS, 1, 1, 0, h_up_value, nm " DURATION")

const struct moat_conf__spec moat_conf__proxy_specs[] = {
    {.name = "upstream",
     .ctx = MOAT_CONF__TOP,
     .min = 1,
     .max = 1,
     .multi = 1,
     .kind = MOAT_CONF__V_BLOCK,
     .inner = MOAT_CONF__UPSTREAM,
     .fn = h_upstream,
     .usage = "upstream NAME { server HOST:PORT; ... }"},
    MOAT_CONF__CUSTOM("trusted_proxies", MOAT_CONF__TOP, 1, -1, 1, h_trusted,
                      "trusted_proxies CIDR..."),
    MOAT_CONF__CUSTOM("proxy_protocol", MOAT_CONF__TOP, 1, -1, 1, h_proxy_protocol_listen,
                      "proxy_protocol ADDRESS..."),
    MOAT_CONF__CUSTOM("server", MOAT_CONF__UPSTREAM, 1, 3, 1, h_server,
                      "server HOST:PORT|unix:/PATH|https://HOST:PORT [weight N]"),
    UP("balance", 1, 3, h_balance,
       "balance round_robin|least_conn|random_two|hash ip|hash header NAME|hash cookie NAME"),
    UP("keepalive", 1, 1, h_up_value, "keepalive N"),
    UP("keepalive_timeout", 1, 1, h_up_value, "keepalive_timeout DURATION"),
    UP("max_conns", 1, 1, h_up_value, "max_conns N"),
    UP("queue", 1, 2, h_queue, "queue N [TIMEOUT]"),
    UP("max_fails", 1, 1, h_up_value, "max_fails N"),
    UP("fail_timeout", 1, 1, h_up_value, "fail_timeout DURATION"),
    UP("slow_start", 1, 1, h_up_value, "slow_start DURATION"),
    UP("retries", 1, 1, h_up_value, "retries N"),
    UP("retry_timeout", 1, 1, h_up_value, "retry_timeout DURATION"),
    UP("health_check", 1, 13, h_health,
       "health_check /PATH [interval D] [timeout D] [rise N] [fall N] [status LO-HI] [host H]"),
    UP("ca", 1, 1, h_up_tls, "ca CA.pem"),
    UP("cert", 2, 2, h_up_tls, "cert CERT.pem KEY.pem"),
    UP("sni", 1, 1, h_up_tls, "sni NAME"),
    UP("proxy_protocol", 1, 1, h_up_tls, "proxy_protocol v2|off"),
    {.name = "timeouts",
     .ctx = MOAT_CONF__UPSTREAM,
     .min = 0,
     .max = 0,
     .multi = 0,
     .kind = MOAT_CONF__V_BLOCK,
     .inner = MOAT_CONF__UP_TIMEOUTS,
     .fn = h_up_timeouts,
     .usage = "timeouts { connect 10s; first_byte 60s; read 60s; write 60s; total 0; tunnel 1h }"},
    UPT("connect"),
    UPT("first_byte"),
    UPT("read"),
    UPT("write"),
    UPT("total"),
    UPT("tunnel"),
    MOAT_CONF__CUSTOM("proxy", MOAT_CONF__SITE, 1, 4, 1, h_proxy,
                      "proxy [/PREFIX] UPSTREAM|http://HOST:PORT [strip | rewrite /NEW]"),
    MOAT_CONF__CUSTOM("proxy_host", MOAT_CONF__SITE, 1, 1, 0, h_proxy_host,
                      "proxy_host keep|upstream|NAME"),
    MOAT_CONF__CUSTOM("proxy_ca", MOAT_CONF__SITE, 1, 1, 0, h_proxy_opt, "proxy_ca CA.pem"),
    MOAT_CONF__CUSTOM("proxy_cert", MOAT_CONF__SITE, 2, 2, 0, h_proxy_opt,
                      "proxy_cert CERT.pem KEY.pem"),
    MOAT_CONF__CUSTOM("proxy_timeout", MOAT_CONF__SITE, 1, 1, 0, h_proxy_opt,
                      "proxy_timeout DURATION"),
    MOAT_CONF__CUSTOM("client_header_prefix", MOAT_CONF__SITE, 1, 1, 0, h_proxy_opt,
                      "client_header_prefix X-Client-"),
};

const size_t moat_conf__proxy_nspecs =
    sizeof(moat_conf__proxy_specs) / sizeof(moat_conf__proxy_specs[0]);

/* The site's inline upstreams take its proxy_ca / proxy_cert / proxy_timeout; those without
 * an inline upstream would silently do nothing. */
moat_rc moat_conf__proxy_check_site(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                    struct moat_conf_site *s)
{
    size_t ninline = 0;
    for (size_t i = 0; i < s->nproxies; i++) {
        if (s->proxies[i].upstream != NULL) {
            continue;
        }
        ninline++;
        struct moat_conf_upstream *u = &L->c->upstreams[s->proxies[i].index];
        if (s->proxy_ca != NULL && (u->ca = strdup(s->proxy_ca)) == NULL) {
            return moat_conf__nomem(L);
        }
        if (s->proxy_cert != NULL && ((u->cert = strdup(s->proxy_cert)) == NULL ||
                                      (u->key = strdup(s->proxy_key)) == NULL)) {
            return moat_conf__nomem(L);
        }
        if (s->proxy_timeout_ms != 0) {
            u->connect_ms = u->first_byte_ms = u->read_ms = u->write_ms = s->proxy_timeout_ms;
        }
    }
    if (ninline == 0 && (s->proxy_ca || s->proxy_cert || s->proxy_timeout_ms)) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has proxy_ca, proxy_cert or proxy_timeout but "
                                       "no \"proxy http[s]://HOST:PORT\" (for an upstream block, "
                                       "write ca, cert and timeouts inside it)",
                                       s->names[0]);
    }
    int request_rules = 0;
    for (size_t i = 0; i < s->nheaders; i++) {
        request_rules |= s->headers[i].request;
    }
    if (s->nproxies == 0 && request_rules) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has request_header rules but no proxy: they "
                                       "change requests going to upstream servers (add \"proxy "
                                       "http://HOST:PORT\")",
                                       s->names[0]);
    }
    if (s->nproxies == 0 && (s->client_header_prefix || s->proxy_host_mode != 0)) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "site \"%s\" has client_header_prefix or proxy_host but no "
                                       "proxy (add \"proxy http://HOST:PORT\")",
                                       s->names[0]);
    }
    return MOAT_RC_OK;
}

/* After the file: every rule's upstream exists (a block no rule names is allowed: a spare). */
moat_rc moat_conf__proxy_check_conf(struct moat_conf__loader *L)
{
    struct moat_conf *c = L->c;
    for (size_t i = 0; i < c->nproxy_protocol_listen; i++) {
        const char *a = c->proxy_protocol_listen[i];
        int found = c->redirect_listen != NULL && strcmp(c->redirect_listen, a) == 0;
        for (size_t k = 0; k < c->nlisten && !found; k++) {
            found = strcmp(c->listen[k], a) == 0;
        }
        for (size_t s = 0; s < c->nstreams && !found; s++) {
            for (size_t k = 0; k < c->streams[s].nlisten && !found; k++) {
                found = strcmp(c->streams[s].listen[k], a) == 0;
            }
        }
        if (!found) {
            moat_err_where(L->err, "%s", L->doc->name);
            MOAT_FAIL(L->err, MOAT_E_CONFIG,
                      "proxy_protocol %s: no listener has that address (write it as in listen "
                      "or redirect_http)",
                      a);
        }
    }
    if (c->nproxy_protocol_listen > 0 && c->ntrusted_proxies == 0) {
        moat_err_where(L->err, "%s", L->doc->name);
        MOAT_FAIL(L->err, MOAT_E_CONFIG,
                  "proxy_protocol needs trusted_proxies: the addresses of the balancers that may "
                  "send PROXY headers (e.g. trusted_proxies 10.0.0.0/8)");
    }
    for (size_t si = 0; si < c->nsites; si++) {
        struct moat_conf_site *s = &c->sites[si];
        for (size_t i = 0; i < s->nproxies; i++) {
            struct moat_conf_proxy_rule *r = &s->proxies[i];
            if (r->upstream == NULL) {
                continue;
            }
            size_t k = 0;
            while (k < c->nupstreams && (c->upstreams[k].name == NULL ||
                                         strcmp(c->upstreams[k].name, r->upstream) != 0)) {
                k++;
            }
            if (k == c->nupstreams) {
                moat_err_where(L->err, "%s", r->where);
                MOAT_FAIL(L->err, MOAT_E_CONFIG,
                          "proxy: no upstream is called \"%s\" (define it: upstream %s { server "
                          "HOST:PORT; })",
                          r->upstream, r->upstream);
            }
            r->index = k;
        }
    }
    return MOAT_RC_OK;
}

moat_rc moat_conf__proxy_add_upstream(struct moat_conf *c, struct moat_conf_site *s,
                                      const char *const *servers, size_t n, struct moat_err *err)
{
    if (n == 0 || n > 64) {
        MOAT_FAIL(err, MOAT_E_USAGE, "give 1 to 64 servers to proxy to (--to HOST:PORT)");
    }
    struct moat_conf_upstream *u = upstream_push(c);
    if (u == NULL || (u->servers = calloc(n, sizeof(*u->servers))) == NULL ||
        (s->proxies = calloc(1, sizeof(*s->proxies))) == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    snprintf(u->where, sizeof(u->where), "command line");
    if (n > 1 && (u->name = strdup("app")) == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *bad = parse_server(servers[i], &u->servers[i], 0);
        if (bad != NULL) {
            moat_conf__upstream_clear(u);
            c->nupstreams--;
            MOAT_FAIL(err, MOAT_E_USAGE, "--to \"%.100s\": %s", servers[i], bad);
        }
        snprintf(u->servers[i].where, sizeof(u->servers[i].where), "--to %.200s", servers[i]);
        u->nservers = i + 1;
    }
    if (n == 1) {
        u->max_fails = 0; /* one server: taking it out would only turn 502s into 503s */
    }
    s->proxies[0] = (struct moat_conf_proxy_rule){.index = c->nupstreams - 1};
    snprintf(s->proxies[0].where, sizeof(s->proxies[0].where), "command line");
    s->nproxies = 1;
    return MOAT_RC_OK;
}

const char *moat_conf__proxy_inline_target(struct moat_conf *c, const char *target, int tls,
                                           size_t *index)
{
    struct moat_conf_upstream_server sv;
    const char *bad = parse_server(target, &sv, 0);
    if (bad != NULL) {
        return bad;
    }
    sv.tls |= tls;
    struct moat_conf_upstream *u = upstream_push(c);
    if (u == NULL || (u->servers = malloc(sizeof(*u->servers))) == NULL) {
        free(sv.host);
        free(sv.unix_path);
        return "out of memory";
    }
    u->servers[0] = sv;
    u->nservers = 1;
    u->max_fails = 0; /* one server: taking it out would only turn failures into refusals */
    u->retries = 0;
    u->stream = 1;
    *index = c->nupstreams - 1;
    return NULL;
}
