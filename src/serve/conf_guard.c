/*
 * conf_guard.c: the abuse-protection directives (docs/limits.md): the per-address limits
 * inside limits { }, `allow` / `deny` at the top level and in a site, and a site's `limit`
 * rules. Rates are written `N/s`, `N/m` or `N/h`, optionally followed by `burst B` (default:
 * N, at least 1), or `off`.
 */
#include "serve/conf_internal.h"

#include "serve/headers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RATE_MAX 100000000ULL

/* Words [at, at + 1 or at + 3) of n as a rate; *used gets how many words it took. */
static moat_rc take_rate(struct moat_conf__loader *L, const struct moat_cfg_node *n, size_t at,
                         const char *what, struct moat_rate *out, size_t *used)
{
    const struct moat_cfg_word *w = &n->words[at];
    *used = 1;
    if (strcasecmp(w->s, "off") == 0 || strcmp(w->s, "0") == 0) {
        *out = (struct moat_rate){0};
        return MOAT_RC_OK;
    }
    const char *slash = strchr(w->s, '/');
    char num[24];
    uint64_t count = 0, per_ms = 0;
    size_t nl = slash != NULL ? (size_t)(slash - w->s) : 0;
    if (slash != NULL && nl > 0 && nl < sizeof(num)) {
        memcpy(num, w->s, nl);
        num[nl] = '\0';
        const char *unit = slash + 1;
        per_ms = strcmp(unit, "s") == 0   ? 1000
                 : strcmp(unit, "m") == 0 ? 60000
                 : strcmp(unit, "h") == 0 ? 3600000
                                          : 0;
    }
    if (per_ms == 0 || !moat_conf__parse_count(num, &count) || count == 0 || count > RATE_MAX) {
        return moat_conf__fail_at_word(L, w,
                                       "%s: \"%.32s\" is not a rate (write N/s, N/m or N/h with "
                                       "N from 1 to 100000000, e.g. 10/s, or off)",
                                       what, w->s);
    }
    *out = (struct moat_rate){.n = count, .per_ms = per_ms, .burst = count};
    if (at + 1 < n->nwords && strcasecmp(n->words[at + 1].s, "burst") == 0) {
        if (at + 2 >= n->nwords) {
            return moat_conf__fail_at_word(L, &n->words[at + 1],
                                           "%s: burst needs a number (e.g. burst 20)", what);
        }
        const struct moat_cfg_word *b = &n->words[at + 2];
        if (!moat_conf__parse_count(b->s, &out->burst) || out->burst == 0 ||
            out->burst > RATE_MAX) {
            return moat_conf__fail_at_word(L, b,
                                           "%s: burst \"%.32s\" is not a number from 1 to "
                                           "100000000",
                                           what, b->s);
        }
        *used = 3;
    }
    return MOAT_RC_OK;
}

/* The MOAT_CONF_GUARD_* bit of a per-address row (by its field). */
static unsigned written_bit(const struct moat_conf__spec *sp)
{
    return sp->off == offsetof(struct moat_conf, addr_conns)    ? MOAT_CONF_GUARD_CONNS
           : sp->off == offsetof(struct moat_conf, addr_new)    ? MOAT_CONF_GUARD_NEW
           : sp->off == offsetof(struct moat_conf, addr_hs)     ? MOAT_CONF_GUARD_HS
           : sp->off == offsetof(struct moat_conf, h2_requests) ? MOAT_CONF_GUARD_H2
                                                                : 0;
}

/* A limits { } rate row: the field comes from the row's offset. */
static moat_rc h_rate(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    struct moat_rate *r = (struct moat_rate *)((char *)L->c + sp->off);
    size_t used;
    MOAT_TRY(take_rate(L, n, 1, sp->name, r, &used));
    if (1 + used != n->nwords) {
        return moat_conf__fail_at_word(L, &n->words[1 + used], "usage: %s", sp->usage);
    }
    L->c->guard_written |= written_bit(sp);
    return MOAT_RC_OK;
}

static moat_rc h_conns(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    uint64_t v;
    if (strcasecmp(w->s, "off") == 0) {
        v = 0;
    } else if (!moat_conf__parse_count(w->s, &v) || v > 1000000) {
        return moat_conf__fail_at_word(L, w,
                                       "address_connections \"%.32s\": write a number from 1 "
                                       "to 1000000, or off (0)",
                                       w->s);
    }
    L->c->addr_conns = v;
    L->c->guard_written |= written_bit(sp);
    return MOAT_RC_OK;
}

/* `exempt CIDR...|none` inside limits { }. */
static moat_rc h_exempt(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    (void)sp;
    L->c->exempt_set = 1;
    if (n->nwords == 2 && strcasecmp(n->words[1].s, "none") == 0) {
        return MOAT_RC_OK;
    }
    for (size_t i = 1; i < n->nwords; i++) {
        struct moat_cidr r;
        const char *bad = moat_cidr_parse(n->words[i].s, &r);
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "exempt \"%.64s\": %s (write addresses or ranges, "
                                           "e.g. 10.0.0.0/8 2001:db8::/32, or none)",
                                           n->words[i].s, bad);
        }
        struct moat_cidr *g = realloc(L->c->exempt, (L->c->nexempt + 1) * sizeof(*g));
        if (g == NULL) {
            return moat_conf__nomem(L);
        }
        L->c->exempt = g;
        g[L->c->nexempt++] = r;
    }
    return MOAT_RC_OK;
}

static moat_rc h_total(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    uint64_t v;
    if (strcasecmp(w->s, "auto") == 0) {
        L->c->total_conns = -1;
    } else if (strcasecmp(w->s, "off") == 0) {
        L->c->total_conns = 0;
    } else if (moat_conf__parse_count(w->s, &v) && v >= 1 && v <= 100000000) {
        L->c->total_conns = (int64_t)v;
    } else {
        return moat_conf__fail_at_word(L, w,
                                       "total_connections \"%.32s\": write auto (from the open "
                                       "file limit), off, or a number from 1 to 100000000",
                                       w->s);
    }
    return MOAT_RC_OK;
}

/* `allow CIDR...;` / `deny CIDR...;` at the top level or in a site. */
static moat_rc h_acl(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    struct moat_conf_acl **arr = L->site != NULL ? &L->site->acl : &L->c->acl;
    size_t *count = L->site != NULL ? &L->site->nacl : &L->c->nacl;
    int allow = strcmp(sp->name, "allow") == 0;
    for (size_t i = 1; i < n->nwords; i++) {
        struct moat_conf_acl a = {.allow = allow};
        const char *bad = NULL;
        if (strcasecmp(n->words[i].s, "all") == 0) {
            /* Both families: two ranges. */
            struct moat_conf_acl *g = realloc(*arr, (*count + 2) * sizeof(**arr));
            if (g == NULL) {
                return moat_conf__nomem(L);
            }
            *arr = g;
            g[*count] = (struct moat_conf_acl){.allow = allow, .range = {.family = AF_INET}};
            g[*count + 1] = (struct moat_conf_acl){.allow = allow, .range = {.family = AF_INET6}};
            *count += 2;
            continue;
        }
        bad = moat_cidr_parse(n->words[i].s, &a.range);
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "%s \"%.64s\": %s (write addresses or ranges, e.g. "
                                           "10.0.0.0/8 2001:db8::/32, or all)",
                                           sp->name, n->words[i].s, bad);
        }
        struct moat_conf_acl *g = realloc(*arr, (*count + 1) * sizeof(**arr));
        if (g == NULL) {
            return moat_conf__nomem(L);
        }
        *arr = g;
        g[(*count)++] = a;
    }
    return MOAT_RC_OK;
}

/* `limit [/PREFIX] RATE [burst B] [by ip|header NAME|cookie NAME]` in a site. */
static moat_rc h_limit(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    struct moat_conf_limit lim = {.by = MOAT_CONF_LIMIT_BY_IP};
    size_t at = 1;
    if (n->words[1].s[0] == '/') {
        const struct moat_cfg_word *pw = &n->words[1];
        if (!moat_conf__plain_prefix(pw->s, pw->len)) {
            return moat_conf__fail_at_word(L, pw,
                                           "limit takes a plain path prefix starting with \"/\" "
                                           "(no \".\" or \"..\" segments, no \"//\", no "
                                           "%%-escapes, no query), e.g. /api");
        }
        at = 2;
        if (n->nwords <= at) {
            return moat_conf__fail_at_word(L, pw, "usage: %s", sp->usage);
        }
    }
    size_t used;
    MOAT_TRY(take_rate(L, n, at, "limit", &lim.rate, &used));
    at += used;
    if (at < n->nwords) {
        const struct moat_cfg_word *bw = &n->words[at];
        if (strcasecmp(bw->s, "by") != 0 || at + 1 >= n->nwords) {
            return moat_conf__fail_at_word(L, bw, "usage: %s", sp->usage);
        }
        const struct moat_cfg_word *kw = &n->words[at + 1];
        if (strcasecmp(kw->s, "ip") == 0) {
            at += 2;
        } else if (strcasecmp(kw->s, "header") == 0 || strcasecmp(kw->s, "cookie") == 0) {
            if (at + 2 >= n->nwords) {
                return moat_conf__fail_at_word(L, kw, "limit by %s needs a name (e.g. by %s %s)",
                                               kw->s, kw->s,
                                               kw->s[0] == 'h' ? "X-Api-Key" : "session");
            }
            const struct moat_cfg_word *nm = &n->words[at + 2];
            char why[300];
            if (!moat_hdr_name_ok(nm->s, why, sizeof(why))) {
                return moat_conf__fail_at_word(L, nm, "%s", why);
            }
            lim.by = kw->s[0] == 'h' || kw->s[0] == 'H' ? MOAT_CONF_LIMIT_BY_HEADER
                                                        : MOAT_CONF_LIMIT_BY_COOKIE;
            lim.key_name = strdup(nm->s);
            if (lim.key_name == NULL) {
                return moat_conf__nomem(L);
            }
            if (lim.by == MOAT_CONF_LIMIT_BY_HEADER) {
                for (char *p = lim.key_name; *p; p++) {
                    *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
                }
            }
            at += 3;
        } else {
            return moat_conf__fail_at_word(L, kw,
                                           "limit by \"%.32s\": write by ip, by header NAME or "
                                           "by cookie NAME",
                                           kw->s);
        }
        if (at < n->nwords) {
            free(lim.key_name);
            return moat_conf__fail_at_word(L, &n->words[at], "usage: %s", sp->usage);
        }
    }
    if (lim.rate.n == 0) {
        free(lim.key_name);
        return moat_conf__fail_at_word(L, &n->words[1],
                                       "limit off: leave the line out to have no limit");
    }
    if (at > 1 && n->words[1].s[0] == '/' && n->words[1].len > 1) {
        size_t pl = n->words[1].len;
        while (pl > 1 && n->words[1].s[pl - 1] == '/') {
            pl--;
        }
        lim.prefix = strndup(n->words[1].s, pl);
        if (lim.prefix == NULL) {
            free(lim.key_name);
            return moat_conf__nomem(L);
        }
    }
    moat_conf__where_of(L, n, lim.where);
    struct moat_conf_limit *g = realloc(s->limits, (s->nlimits + 1) * sizeof(*g));
    if (g == NULL) {
        free(lim.key_name);
        free(lim.prefix);
        return moat_conf__nomem(L);
    }
    s->limits = g;
    g[s->nlimits++] = lim;
    return MOAT_RC_OK;
}

#define RATE_ROW(nm, field)                                                                        \
    {                                                                                              \
        .name = nm, .ctx = MOAT_CONF__LIMITS, .min = 1, .max = 3, .kind = MOAT_CONF__V_CUSTOM,     \
        .off = offsetof(struct moat_conf, field), .fn = h_rate,                                    \
        .usage = nm " N/s|N/m|N/h [burst "                                                         \
                    "B] | off"                                                                     \
    }

/*
 * Inside limits { } (defaults on: a client address is one client, so these bound what one
 * machine can take of the server; turn one off with 0 / off):
 *   address_connections 512               open connections per address
 *   address_new_connections 200/s burst 1000
 *   address_handshakes 100/s burst 1000   TLS handshakes per address: refused before any
 *                                         cryptography is done
 *   total_connections auto                all workers together; auto: 90% of the open-file
 *                                         limit; the newest connection is the one refused
 *   http2_requests 1000/s burst 2000      streams per HTTP/2 connection, else GOAWAY
 *                                         ENHANCE_YOUR_CALM
 *   address_table 65536                   keys the limiter keeps (fixed memory)
 *   ipv6_prefix 64                        bits of an IPv6 address that make one client
 *   exempt CIDR...|none                   addresses the per-address limits skip; without
 *                                         it, loopback skips the limits left at defaults
 */
const struct moat_conf__spec moat_conf__guard_specs[] = {
    {.name = "address_connections",
     .ctx = MOAT_CONF__LIMITS,
     .min = 1,
     .max = 1,
     .kind = MOAT_CONF__V_CUSTOM,
     .off = offsetof(struct moat_conf, addr_conns),
     .fn = h_conns,
     .usage = "address_connections N|off"},
    MOAT_CONF__CUSTOM("exempt", MOAT_CONF__LIMITS, 1, -1, 0, h_exempt, "exempt CIDR...|none"),
    RATE_ROW("address_new_connections", addr_new),
    RATE_ROW("address_handshakes", addr_hs),
    RATE_ROW("http2_requests", h2_requests),
    MOAT_CONF__CUSTOM("total_connections", MOAT_CONF__LIMITS, 1, 1, 0, h_total,
                      "total_connections auto|off|N"),
    MOAT_CONF__VALUE("address_table", MOAT_CONF__LIMITS, MOAT_CONF__V_COUNT, addr_table, 64,
                     16777216, "between 64 and 16777216", "address_table N"),
    MOAT_CONF__VALUE("ipv6_prefix", MOAT_CONF__LIMITS, MOAT_CONF__V_COUNT, ipv6_prefix, 32, 128,
                     "between 32 and 128", "ipv6_prefix BITS"),
    MOAT_CONF__CUSTOM("allow", MOAT_CONF__TOP, 1, -1, 1, h_acl, "allow CIDR...|all"),
    MOAT_CONF__CUSTOM("deny", MOAT_CONF__TOP, 1, -1, 1, h_acl, "deny CIDR...|all"),
    MOAT_CONF__CUSTOM("allow", MOAT_CONF__SITE, 1, -1, 1, h_acl, "allow CIDR...|all"),
    MOAT_CONF__CUSTOM("deny", MOAT_CONF__SITE, 1, -1, 1, h_acl, "deny CIDR...|all"),
    MOAT_CONF__CUSTOM("limit", MOAT_CONF__SITE, 1, 7, 1, h_limit,
                      "limit [/PREFIX] N/s|N/m|N/h [burst B] [by ip|header NAME|cookie NAME]"),
};

const size_t moat_conf__guard_nspecs =
    sizeof(moat_conf__guard_specs) / sizeof(moat_conf__guard_specs[0]);
