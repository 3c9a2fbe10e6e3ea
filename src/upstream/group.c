/*
 * group.c: upstream servers, balancing and passive health (see group.h).
 *
 * Round robin walks a precomputed smooth weighted order (weights 3:1 give a a b a, not a a a b),
 * with one shared counter, so it costs an atomic increment per request. The hash ring holds
 * 64 points per unit of weight; a server that is out passes its keys to the next point's
 * server, and gets them back when it returns (consistent hashing: other keys do not move).
 */
#include "upstream/group.h"

#include "core/log.h"
#include "tls/client.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

struct moat_up_point {
    uint32_t hash;
    uint16_t server;
};

#define RING_POINTS 64
#define SCHEDULE_MAX 4096

static atomic_ullong next_group_id = 1;

/* FNV-1a, 64-bit, folded: spreads short keys well and needs no table. Not for secrets: a
 * client choosing keys can only choose its own server. */
static uint32_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static uint64_t rnd(void)
{
    static _Thread_local uint64_t s;
    if (s == 0) {
        s = (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15ULL ^ (uint64_t)random();
        s |= 1;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

void moat_up_group_unref(struct moat_up_group *g)
{
    if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    SSL_CTX_free(g->ctx);
    free(g->servers);
    free(g->schedule);
    free(g->ring);
    free((char *)g->p.hash_key);
    free((char *)g->p.check_path);
    free((char *)g->p.check_host);
    free((char *)g->p.sni);
    free(g);
}

void moat_up_group_inherit(struct moat_up_group *g, const struct moat_up_group *old)
{
    int checks = g->p.check_path != NULL && old->p.check_path != NULL;
    for (size_t i = 0; i < g->n; i++) {
        struct moat_up_server *s = &g->servers[i];
        for (size_t j = 0; j < old->n; j++) {
            const struct moat_up_server *o = &old->servers[j];
            if (strcmp(s->name, o->name) != 0 || s->addrlen != o->addrlen ||
                memcmp(&s->addr, &o->addr, s->addrlen) != 0) {
                continue;
            }
            atomic_store(&s->fails, atomic_load(&o->fails));
            atomic_store(&s->down_until, atomic_load(&o->down_until));
            atomic_store(&s->back_at, atomic_load(&o->back_at));
            atomic_store(&s->why, atomic_load(&o->why));
            if (checks) {
                atomic_store(&s->check_down, atomic_load(&o->check_down));
            }
            break;
        }
    }
}

static moat_rc resolve(struct moat_up_server *s, const struct moat_up_server_spec *sp,
                       const char *where, struct moat_err *err)
{
    if (sp->unix_path != NULL) {
        struct sockaddr_un *un = (struct sockaddr_un *)&s->addr;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", sp->unix_path);
        s->addrlen = (socklen_t)sizeof(*un);
        snprintf(s->name, sizeof(s->name), "unix:%s", sp->unix_path);
        snprintf(s->authority, sizeof(s->authority), "localhost");
        return MOAT_RC_OK;
    }
    int v6 = strchr(sp->host, ':') != NULL;
    snprintf(s->host, sizeof(s->host), "%s", sp->host);
    snprintf(s->authority, sizeof(s->authority), "%s%s%s:%u", v6 ? "[" : "", sp->host,
             v6 ? "]" : "", sp->port);
    snprintf(s->name, sizeof(s->name), "%s%s", sp->tls ? "https://" : "", s->authority);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", sp->port);
    int rc = getaddrinfo(sp->host, port, &hints, &ai);
    if (rc != 0 || ai == NULL) {
        moat_err_where(err, "%s", where != NULL ? where : "upstream");
        MOAT_FAIL(err, MOAT_E_CONFIG, "upstream server \"%s\" cannot be resolved: %s", sp->host,
                  gai_strerror(rc));
    }
    memcpy(&s->addr, ai->ai_addr, ai->ai_addrlen);
    s->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return MOAT_RC_OK;
}

/* Smooth weighted round robin, unrolled once: each step every server gains its weight, the
 * richest is chosen and pays the total. */
static moat_rc build_schedule(struct moat_up_group *g)
{
    size_t total = 0;
    for (size_t i = 0; i < g->n; i++) {
        total += g->servers[i].weight;
    }
    if (total > SCHEDULE_MAX) {
        total = SCHEDULE_MAX; /* a prefix of the order still keeps the proportions close */
    }
    g->schedule = calloc(total, sizeof(*g->schedule));
    long *cur = calloc(g->n, sizeof(*cur));
    if (g->schedule == NULL || cur == NULL) {
        free(cur);
        return moat_rc_of(MOAT_E_NOMEM);
    }
    long sum = 0;
    for (size_t i = 0; i < g->n; i++) {
        sum += g->servers[i].weight;
    }
    for (size_t k = 0; k < total; k++) {
        size_t best = 0;
        for (size_t i = 0; i < g->n; i++) {
            cur[i] += g->servers[i].weight;
            if (cur[i] > cur[best]) {
                best = i;
            }
        }
        cur[best] -= sum;
        g->schedule[k] = (uint16_t)best;
    }
    g->nschedule = total;
    free(cur);
    return MOAT_RC_OK;
}

static int point_cmp(const void *a, const void *b)
{
    const struct moat_up_point *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : (int)x->server - (int)y->server;
}

static moat_rc build_ring(struct moat_up_group *g)
{
    size_t total = 0;
    for (size_t i = 0; i < g->n; i++) {
        total += (size_t)g->servers[i].weight * RING_POINTS;
    }
    g->ring = calloc(total, sizeof(*g->ring));
    if (g->ring == NULL) {
        return moat_rc_of(MOAT_E_NOMEM);
    }
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        /* The points follow the server's name, not its place in the list: reordering or
         * adding servers moves only the keys that must move. */
        for (unsigned j = 0; j < g->servers[i].weight * RING_POINTS; j++) {
            char label[360];
            int len = snprintf(label, sizeof(label), "%s#%u", g->servers[i].name, j);
            g->ring[k].hash = hash_bytes(label, (size_t)len, 0);
            g->ring[k].server = (uint16_t)i;
            k++;
        }
    }
    qsort(g->ring, total, sizeof(*g->ring), point_cmp);
    g->nring = total;
    return MOAT_RC_OK;
}

moat_rc moat_up_group_new(const struct moat_up_params *p, struct moat_up_group **out,
                          struct moat_err *err)
{
    *out = NULL;
    if (p->nservers == 0 || p->nservers > MOAT_UP_MAX_SERVERS) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "an upstream has 1 to %d servers", MOAT_UP_MAX_SERVERS);
    }
    struct moat_up_group *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    atomic_init(&g->refs, 1);
    g->id = atomic_fetch_add(&next_group_id, 1);
    snprintf(g->name, sizeof(g->name), "%s", p->name != NULL ? p->name : "");
    g->p = *p;
    g->p.servers = NULL;
    g->p.name = NULL;
    g->p.where = NULL;
    g->p.ca_file = g->p.extra_ca = g->p.cert = g->p.key = NULL;
    g->p.alpn = NULL;
    g->p.hash_key = dup_or_null(p->hash_key);
    g->p.check_path = dup_or_null(p->check_path);
    g->p.check_host = dup_or_null(p->check_host);
    g->p.sni = dup_or_null(p->sni);
    g->n = p->nservers;
    g->servers = calloc(g->n, sizeof(*g->servers));
    if (g->servers == NULL || (p->hash_key && !g->p.hash_key) ||
        (p->check_path && !g->p.check_path) || (p->check_host && !g->p.check_host) ||
        (p->sni && !g->p.sni)) {
        moat_up_group_unref(g);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    int any_tls = 0;
    for (size_t i = 0; i < g->n; i++) {
        struct moat_up_server *s = &g->servers[i];
        moat_rc rc = resolve(s, &p->servers[i], p->where, err);
        if (!moat_ok(rc)) {
            moat_up_group_unref(g);
            return rc;
        }
        s->tls = p->servers[i].tls;
        s->weight = p->servers[i].weight ? p->servers[i].weight : 1;
        any_tls |= s->tls;
    }
    if (!moat_ok(build_schedule(g)) || !moat_ok(build_ring(g))) {
        moat_up_group_unref(g);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if (any_tls) {
        struct moat_tls_client_opts o = {
            .system_trust = p->ca_file == NULL,
            .ca_file = p->ca_file,
            .ca_file_if_readable = p->ca_file == NULL ? p->extra_ca : NULL,
            .cert_path = p->cert,
            .key_path = p->key,
            .alpn = p->alpn,
            .nalpn = p->nalpn,
        };
        moat_rc rc = moat_tls_client_ctx_new(&o, &g->ctx, err);
        if (!moat_ok(rc)) {
            if (p->where != NULL) {
                moat_err_where(err, "%s", p->where);
            }
            moat_up_group_unref(g);
            return rc;
        }
    }
    *out = g;
    return MOAT_RC_OK;
}

int moat_up_server_in(const struct moat_up_group *g, size_t i, uint64_t now_ms)
{
    const struct moat_up_server *s = &g->servers[i];
    return !atomic_load_explicit(&s->check_down, memory_order_relaxed) &&
           atomic_load_explicit(&s->down_until, memory_order_relaxed) <= now_ms;
}

static int tried_has(const uint64_t *tried, size_t i)
{
    return tried != NULL && (tried[i / 64] >> (i % 64)) & 1;
}

/* Slow start: a server back for less than slow_start takes that fraction of its share. */
static int slow_skip(const struct moat_up_group *g, size_t i, uint64_t now_ms)
{
    if (g->p.slow_start_ms == 0) {
        return 0;
    }
    uint64_t back = atomic_load_explicit(&g->servers[i].back_at, memory_order_relaxed);
    if (back == 0 || now_ms >= back + g->p.slow_start_ms) {
        return 0;
    }
    uint64_t elapsed = now_ms > back ? now_ms - back : 0;
    return rnd() % g->p.slow_start_ms >= elapsed;
}

static int has_room(const struct moat_up_group *g, size_t i)
{
    return g->p.max_conns == 0 ||
           atomic_load_explicit(&g->servers[i].active, memory_order_relaxed) < g->p.max_conns;
}

/* least_conn's measure: in-flight requests over weight, compared without division. */
static int fewer(const struct moat_up_group *g, size_t a, size_t b)
{
    uint64_t ca = atomic_load_explicit(&g->servers[a].active, memory_order_relaxed);
    uint64_t cb = atomic_load_explicit(&g->servers[b].active, memory_order_relaxed);
    return ca * g->servers[b].weight < cb * g->servers[a].weight;
}

static enum moat_up_pick_rc pick(struct moat_up_group *g, const struct moat_up_key *key,
                                 const uint64_t *tried, uint64_t now_ms, size_t *out)
{
    /* Which servers may take it at all. */
    size_t nin = 0, nroom = 0, ntried_in = 0;
    uint64_t ok[MOAT_UP_MAX_SERVERS / 64] = {0};
    for (size_t i = 0; i < g->n; i++) {
        if (!moat_up_server_in(g, i, now_ms)) {
            continue;
        }
        if (tried_has(tried, i)) {
            ntried_in++;
            continue;
        }
        nin++;
        if (has_room(g, i)) {
            ok[i / 64] |= 1ULL << (i % 64);
            nroom++;
        }
    }
    if (nin == 0) {
        return ntried_in > 0 ? MOAT_UP_ALL_TRIED : MOAT_UP_NONE_UP;
    }
    if (nroom == 0) {
        return MOAT_UP_ALL_BUSY;
    }
#define OK(i) ((ok[(i) / 64] >> ((i) % 64)) & 1)
    enum moat_up_balance b = g->p.balance;
    if ((b == MOAT_UP_HASH_HEADER || b == MOAT_UP_HASH_COOKIE) && key->value.len == 0) {
        b = MOAT_UP_ROUND_ROBIN; /* no key sent: nothing to stick to */
    }
    if (b == MOAT_UP_HASH_IP || b == MOAT_UP_HASH_HEADER || b == MOAT_UP_HASH_COOKIE) {
        moat_slice k = b == MOAT_UP_HASH_IP ? key->client_ip : key->value;
        uint32_t h = hash_bytes(k.p, k.len, 0);
        size_t lo = 0, hi = g->nring;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (g->ring[mid].hash < h) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for (size_t step = 0; step < g->nring; step++) {
            size_t s = g->ring[(lo + step) % g->nring].server;
            if (OK(s)) {
                *out = s;
                return MOAT_UP_PICKED;
            }
        }
        return MOAT_UP_ALL_BUSY; /* unreachable: nroom > 0 */
    }
    if (b == MOAT_UP_LEAST_CONN) {
        size_t best = SIZE_MAX, nties = 0;
        for (size_t i = 0; i < g->n; i++) {
            if (!OK(i) || (nroom > 1 && slow_skip(g, i, now_ms))) {
                continue;
            }
            if (best == SIZE_MAX || fewer(g, i, best)) {
                best = i;
                nties = 1;
            } else if (!fewer(g, best, i) && rnd() % ++nties == 0) {
                best = i; /* ties spread at random, not always to the first server */
            }
        }
        if (best == SIZE_MAX) {
            for (size_t i = 0; i < g->n && best == SIZE_MAX; i++) {
                best = OK(i) ? i : SIZE_MAX;
            }
        }
        *out = best;
        return MOAT_UP_PICKED;
    }
    if (b == MOAT_UP_RANDOM_TWO) {
        size_t cand[MOAT_UP_MAX_SERVERS], nc = 0;
        for (size_t i = 0; i < g->n; i++) {
            if (OK(i)) {
                cand[nc++] = i; /* weights count in the comparison (active / weight) */
            }
        }
        size_t a = cand[rnd() % nc], c = cand[rnd() % nc];
        if (nc > 1) {
            while (c == a) {
                c = cand[rnd() % nc];
            }
        }
        *out = fewer(g, c, a) ? c : a;
        return MOAT_UP_PICKED;
    }
    /* round robin over the weighted order, skipping who cannot take it */
    for (size_t tries = 0; tries < g->nschedule * 2; tries++) {
        unsigned at = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed);
        size_t s = g->schedule[at % g->nschedule];
        if (OK(s) && (nroom == 1 || !slow_skip(g, s, now_ms))) {
            *out = s;
            return MOAT_UP_PICKED;
        }
    }
    for (size_t i = 0; i < g->n; i++) {
        if (OK(i)) {
            *out = i;
            return MOAT_UP_PICKED;
        }
    }
#undef OK
    return MOAT_UP_ALL_BUSY;
}

enum moat_up_pick_rc moat_up_pick(struct moat_up_group *g, const struct moat_up_key *key,
                                  const uint64_t *tried, uint64_t now_ms, size_t *out)
{
    /* Another worker may take the last free place between the choice and the count: then
     * choose again (a few times; then the request waits as if all were busy). */
    for (int round = 0; round < 4; round++) {
        enum moat_up_pick_rc rc = pick(g, key, tried, now_ms, out);
        if (rc != MOAT_UP_PICKED) {
            return rc;
        }
        unsigned was = atomic_fetch_add_explicit(&g->servers[*out].active, 1, memory_order_relaxed);
        if (g->p.max_conns == 0 || was < g->p.max_conns) {
            return MOAT_UP_PICKED;
        }
        atomic_fetch_sub_explicit(&g->servers[*out].active, 1, memory_order_relaxed);
    }
    return MOAT_UP_ALL_BUSY;
}

void moat_up_done(struct moat_up_group *g, size_t i)
{
    atomic_fetch_sub_explicit(&g->servers[i].active, 1, memory_order_relaxed);
}

void moat_up_report(struct moat_up_group *g, size_t i, int ok, const char *why, uint64_t now_ms,
                    unsigned long long conn_id)
{
    struct moat_up_server *s = &g->servers[i];
    if (ok) {
        if (atomic_load_explicit(&s->fails, memory_order_relaxed) != 0) {
            atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
        }
        return;
    }
    atomic_store_explicit(&s->why, why, memory_order_relaxed);
    unsigned f = atomic_fetch_add_explicit(&s->fails, 1, memory_order_relaxed) + 1;
    if (g->p.max_fails == 0 || f < g->p.max_fails) {
        return;
    }
    uint64_t until = now_ms + g->p.fail_timeout_ms;
    uint64_t was = atomic_load_explicit(&s->down_until, memory_order_relaxed);
    if (was > now_ms) {
        return; /* already out: another worker's report */
    }
    if (atomic_compare_exchange_strong(&s->down_until, &was, until)) {
        atomic_store_explicit(&s->back_at, until, memory_order_relaxed);
        atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
        moat_log(MOAT_LVL_WARN, conn_id,
                 "upstream %s: server %s taken out for %llums after %u failure%s in a row "
                 "(last: %s)",
                 moat_up_group_name(g), s->name, (unsigned long long)g->p.fail_timeout_ms, f,
                 f == 1 ? "" : "s", why);
    }
}

unsigned moat_up_retry_after(const struct moat_up_group *g, uint64_t now_ms)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < g->n; i++) {
        const struct moat_up_server *s = &g->servers[i];
        uint64_t at;
        if (atomic_load_explicit(&s->check_down, memory_order_relaxed)) {
            at = now_ms + g->p.check_interval_ms * (g->p.check_rise ? g->p.check_rise : 1);
        } else {
            at = atomic_load_explicit(&s->down_until, memory_order_relaxed);
        }
        if (at < best) {
            best = at;
        }
    }
    if (best == UINT64_MAX || best <= now_ms) {
        return 1;
    }
    uint64_t s = (best - now_ms + 999) / 1000;
    return s > 3600 ? 3600 : (unsigned)s;
}

void moat_up_describe_down(const struct moat_up_group *g, uint64_t now_ms, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < g->n && at + 1 < cap; i++) {
        const struct moat_up_server *s = &g->servers[i];
        const char *why = atomic_load_explicit(&s->why, memory_order_relaxed);
        int n;
        if (atomic_load_explicit(&s->check_down, memory_order_relaxed)) {
            n = snprintf(out + at, cap - at, "%s%s: failing its health check (%s)", i ? "; " : "",
                         s->name, why ? why : "no answer");
        } else {
            uint64_t until = atomic_load_explicit(&s->down_until, memory_order_relaxed);
            if (until > now_ms) {
                n = snprintf(out + at, cap - at, "%s%s: out for %llums more (%s)", i ? "; " : "",
                             s->name, (unsigned long long)(until - now_ms), why ? why : "failed");
            } else {
                n = snprintf(out + at, cap - at, "%s%s: %s", i ? "; " : "", s->name,
                             why ? why : "busy");
            }
        }
        if (n < 0) {
            break;
        }
        at += (size_t)n < cap - at ? (size_t)n : cap - at - 1;
    }
}
