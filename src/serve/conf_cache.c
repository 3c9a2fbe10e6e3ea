/*
 * conf_cache.c: the HTTP cache's directives (docs/cache.md).
 *   cache_memory 64m            top level: bytes the store keeps (bodies and heads); 0: no cache
 *   cache_max_object 8m         top level: the largest answer stored
 *   cache_heuristic 10          top level: percent of the time since Last-Modified an answer
 *                               without explicit freshness stays fresh (RFC 9111 §4.2.2)
 *   cache_heuristic_max 1d      top level: at most this long
 *   cache_lock_timeout 5s       top level: how long a miss waits for another request for the
 *                               same key to store its answer (request collapsing); 0: never
 *   cache_disk FOLDER SIZE      top level: the disk tier, at most SIZE bytes of files
 *   cache on|off|/PREFIX...     in a site: store its proxied answers (all, or under prefixes)
 *   cache_purge CIDR...         in a site: who may send PURGE URI (or URI* for a prefix)
 *   cache_key PART...           in a site: what names a stored answer besides its path:
 *                               scheme, host, [path,] query, header:NAME, cookie:NAME
 */
#include "serve/conf_internal.h"

#include "core/cfg.h"
#include "core/cidr.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static moat_rc h_cache(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    const struct moat_cfg_word *w = &n->words[1];
    if (n->nwords == 2 && (strcasecmp(w->s, "on") == 0 || strcasecmp(w->s, "off") == 0)) {
        s->cache = strcasecmp(w->s, "on") == 0;
        return MOAT_RC_OK;
    }
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *pw = &n->words[i];
        if (pw->s[0] != '/' || !moat_conf__plain_prefix(pw->s, pw->len)) {
            return moat_conf__fail_at_word(L, pw,
                                           "cache takes on, off, or plain path prefixes starting "
                                           "with \"/\" (e.g. cache /static /api/public)");
        }
        size_t pl = pw->len;
        while (pl > 1 && pw->s[pl - 1] == '/') {
            pl--;
        }
        char *p = strndup(pw->s, pl);
        if (p == NULL || !moat_conf__push_str(&s->cache_prefixes, &s->ncache_prefixes, p)) {
            free(p);
            return moat_conf__nomem(L);
        }
    }
    s->cache = 1;
    return MOAT_RC_OK;
}

static moat_rc h_purge(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    for (size_t i = 1; i < n->nwords; i++) {
        struct moat_cidr r;
        const char *bad = moat_cidr_parse(n->words[i].s, &r);
        if (bad != NULL) {
            return moat_conf__fail_at_word(L, &n->words[i],
                                           "cache_purge \"%.64s\": %s (write addresses or ranges, "
                                           "e.g. 127.0.0.1 10.0.0.0/8)",
                                           n->words[i].s, bad);
        }
        char *c = strdup(n->words[i].s);
        if (c == NULL || !moat_conf__push_str(&s->cache_purge, &s->ncache_purge, c)) {
            free(c);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

static moat_rc h_disk(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    uint64_t size;
    const struct moat_cfg_word *w = &n->words[2];
    if (!moat_ok(moat_cfg_size(w->s, &size)) || size < 1024 * 1024) {
        return moat_conf__fail_at_word(L, w,
                                       "cache_disk's size \"%.64s\" is not a size of at least 1m "
                                       "(e.g. cache_disk /var/cache/moat 10g)",
                                       w->s);
    }
    L->c->cache_disk_size = size;
    return moat_conf__take_path(L, &n->words[1], "cache_disk", &L->c->cache_disk);
}

static moat_rc h_key(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                     const struct moat_conf__spec *sp)
{
    struct moat_conf_site *s = L->site;
    s->cache_key = 0;
    for (size_t i = 1; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        if (strcasecmp(w->s, "scheme") == 0) {
            s->cache_key |= MOAT_CACHE_KEY_SCHEME;
            continue;
        }
        if (strcasecmp(w->s, "host") == 0) {
            s->cache_key |= MOAT_CACHE_KEY_HOST;
            continue;
        }
        if (strcasecmp(w->s, "path") == 0) {
            continue; /* always part of the key; written for clarity */
        }
        if (strcasecmp(w->s, "query") == 0) {
            s->cache_key |= MOAT_CACHE_KEY_QUERY;
            continue;
        }
        const char *colon = strchr(w->s, ':');
        int header =
            colon != NULL && (size_t)(colon - w->s) == 6 && strncasecmp(w->s, "header", 6) == 0;
        int cookie =
            colon != NULL && (size_t)(colon - w->s) == 6 && strncasecmp(w->s, "cookie", 6) == 0;
        const char *name = colon != NULL ? colon + 1 : "";
        int ok = (header || cookie) && *name != '\0' && strlen(name) < 128;
        for (const char *p = name; ok && *p; p++) {
            unsigned char ch = (unsigned char)*p;
            ok = ch > 0x20 && ch < 0x7f && ch != ':' && ch != ';' && ch != ',' && ch != '=';
        }
        if (!ok) {
            return moat_conf__fail_at_word(L, w,
                                           "cache_key takes scheme, host, path, query, "
                                           "header:NAME and cookie:NAME (the path is always "
                                           "part of the key), "
                                           "not \"%.64s\"",
                                           w->s);
        }
        char *e = malloc(strlen(name) + 3);
        if (e == NULL) {
            return moat_conf__nomem(L);
        }
        e[0] = header ? 'h' : 'c';
        e[1] = ':';
        for (size_t k = 0; name[k]; k++) {
            char ch = name[k];
            /* Field names compare without case; cookie names do not. */
            e[k + 2] = header && ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        }
        e[strlen(name) + 2] = '\0';
        if (!moat_conf__push_str(&s->cache_key_extra, &s->ncache_key_extra, e)) {
            free(e);
            return moat_conf__nomem(L);
        }
    }
    return MOAT_RC_OK;
}

const struct moat_conf__spec moat_conf__cache_specs[] = {
    MOAT_CONF__VALUE("cache_memory", MOAT_CONF__TOP, MOAT_CONF__V_SIZE, cache_memory, 0,
                     1024 * 1024 * MOAT_CONF__MIB, "between 0 and 1024g", "cache_memory SIZE"),
    MOAT_CONF__VALUE("cache_max_object", MOAT_CONF__TOP, MOAT_CONF__V_SIZE, cache_max_object, 1,
                     1024 * MOAT_CONF__MIB, "between 1 and 1g", "cache_max_object SIZE"),
    MOAT_CONF__VALUE("cache_heuristic", MOAT_CONF__TOP, MOAT_CONF__V_COUNT, cache_heuristic, 0, 100,
                     "between 0 and 100 (percent)", "cache_heuristic PERCENT"),
    MOAT_CONF__VALUE("cache_heuristic_max", MOAT_CONF__TOP, MOAT_CONF__V_DURATION_MS,
                     cache_heuristic_max_ms, 0, 365 * MOAT_CONF__DAY_MS, "between 0 and 365d",
                     "cache_heuristic_max DURATION"),
    MOAT_CONF__VALUE("cache_lock_timeout", MOAT_CONF__TOP, MOAT_CONF__V_DURATION_MS,
                     cache_lock_timeout_ms, 0, 10 * 60 * 1000, "between 0 and 10m",
                     "cache_lock_timeout DURATION"),
    MOAT_CONF__CUSTOM("cache_disk", MOAT_CONF__TOP, 2, 2, 0, h_disk, "cache_disk FOLDER SIZE"),
    MOAT_CONF__CUSTOM("cache", MOAT_CONF__SITE, 1, -1, 0, h_cache, "cache on|off|/PREFIX..."),
    MOAT_CONF__CUSTOM("cache_purge", MOAT_CONF__SITE, 1, -1, 1, h_purge, "cache_purge CIDR..."),
    MOAT_CONF__CUSTOM("cache_key", MOAT_CONF__SITE, 1, -1, 0, h_key,
                      "cache_key [scheme] [host] [path] [query] [header:NAME]... [cookie:NAME]..."),
};

const size_t moat_conf__cache_nspecs =
    sizeof(moat_conf__cache_specs) / sizeof(moat_conf__cache_specs[0]);
