/*
 * guard.c: see guard.h. The table's keys are a kind byte and an address (or a site's rule
 * and the value it limits by), so the kinds of one address never share a state. IPv6
 * clients are keyed by their first ipv6_prefix bits: one host usually holds a whole /64, and
 * counting its addresses one by one would give it 2^64 budgets.
 */
#include "serve/guard.h"

#include "core/limiter.h"
#include "core/log.h"
#include "core/siphash.h"
#include "core/sock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * The `limit` rules' requests a cluster counts across nodes (moat_guard_share_*): each key a
 * rule let a request through for, with how many since the last exchange and the cluster's total
 * seen then. The cluster thread trades the counts for totals and charges the others' share to
 * the local limiter, so this node judges the next request against every node's. A key stays
 * while its rule's period has not passed since its last use here.
 */
#define SHARE_SLOTS 4096
#define SHARE_PROBE 8

struct share_entry {
    int conns;     /* 0: a rate (events let through); 1: an address's open connections */
    uint64_t lkey; /* the limiter's key here (0: free) */
    uint64_t ckey; /* the same key across the cluster (SipHash under the cluster's key) */
    uint64_t interval_us, burst, window_ms;
    uint64_t pending; /* let through here since the last exchange */
    uint64_t taken;   /* of them, in the exchange under way */
    uint64_t seen;    /* the cluster's total after the last exchange */
    uint64_t used_ms;
    uint32_t remote; /* conns: the other nodes' open connections at the last exchange */
};

struct share {
    pthread_mutex_t mu;
    uint8_t key[16];
    struct share_entry e[SHARE_SLOTS];
};

struct moat_guard {
    struct moat_limiter *table;
    _Atomic(struct share *) share; /* set while a cluster counts; lives until the guard goes */
    size_t slots;
    uint64_t auto_total; /* 90% of the descriptor limit; 0: unknown (then no cap) */
    atomic_ullong open;
    atomic_ullong refused[MOAT_GUARD_NKINDS];
    atomic_ullong unlogged[MOAT_GUARD_NKINDS]; /* refused since the kind's last log line */
    atomic_llong logged_s[MOAT_GUARD_NKINDS];  /* the second of that line */
};

static const char *const kind_names[MOAT_GUARD_NKINDS] = {
    [MOAT_GUARD_OK] = "ok",
    [MOAT_GUARD_DENIED] = "deny",
    [MOAT_GUARD_TOTAL] = "total_connections",
    [MOAT_GUARD_CONNS] = "address_connections",
    [MOAT_GUARD_NEW] = "address_new_connections",
    [MOAT_GUARD_HANDSHAKES] = "address_handshakes",
    [MOAT_GUARD_H2] = "http2_requests",
    [MOAT_GUARD_SITE_DENY] = "site deny",
    [MOAT_GUARD_LIMIT] = "limit",
};

const char *moat_guard_kind_name(enum moat_guard_kind kind)
{
    return kind >= 0 && kind < MOAT_GUARD_NKINDS ? kind_names[kind] : "?";
}

moat_rc moat_guard_new(size_t slots, struct moat_guard **out, struct moat_err *err)
{
    *out = NULL;
    uint8_t seed[16];
    if (RAND_bytes(seed, sizeof(seed)) != 1) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "no random bytes for the rate-limit table's hash key");
    }
    struct moat_guard *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    g->table = moat_limiter_new(slots, seed);
    if (g->table == NULL) {
        free(g);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for limits.address_table (%zu keys)", slots);
    }
    g->slots = slots;
    *out = g;
    return MOAT_RC_OK;
}

void moat_guard_free(struct moat_guard *g)
{
    if (g != NULL) {
        struct share *sh = atomic_load(&g->share);
        if (sh != NULL) {
            pthread_mutex_destroy(&sh->mu);
            free(sh);
        }
        moat_limiter_free(g->table);
        free(g);
    }
}

moat_rc moat_guard_share_on(struct moat_guard *g, const uint8_t key[16], struct moat_err *err)
{
    struct share *sh = atomic_load(&g->share);
    if (sh == NULL) {
        sh = calloc(1, sizeof(*sh));
        if (sh == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cluster's limit counts");
        }
        pthread_mutex_init(&sh->mu, NULL);
        memcpy(sh->key, key, 16);
        atomic_store(&g->share, sh);
    }
    return MOAT_RC_OK;
}

#define CONNS_WINDOW_MS 5000 /* an address's connection count is kept this long after use */

/* The entry for (lkey, ckey), made when `make` (then from `rate`, or for connections when
 * rate is NULL); NULL when absent, or the neighbourhood is full (then the key is judged here
 * alone: the table is bounded). Under sh->mu. */
static struct share_entry *share_find(struct share *sh, uint64_t lkey, uint64_t ckey,
                                      const struct moat_rate *rate, uint64_t now_ms, int make)
{
    size_t home = (size_t)(ckey % SHARE_SLOTS);
    struct share_entry *spare = NULL;
    for (size_t i = 0; i < SHARE_PROBE; i++) {
        struct share_entry *e = &sh->e[(home + i) % SHARE_SLOTS];
        if (e->lkey == lkey && e->ckey == ckey) {
            return e;
        }
        if (spare == NULL &&
            (e->lkey == 0 || (e->taken == 0 && !e->conns && now_ms > e->used_ms + e->window_ms))) {
            spare = e;
        }
    }
    if (!make || spare == NULL) {
        return NULL;
    }
    *spare = (struct share_entry){.lkey = lkey,
                                  .ckey = ckey,
                                  .conns = rate == NULL,
                                  .interval_us = rate != NULL ? moat_rate_interval_us(rate) : 0,
                                  .burst = rate != NULL ? rate->burst : 0,
                                  .window_ms = rate != NULL ? rate->per_ms : CONNS_WINDOW_MS,
                                  .used_ms = now_ms};
    return spare;
}

/* A request (or connection) a rate let through, for the cluster. */
static void share_note(struct share *sh, uint64_t lkey, uint64_t ckey, const struct moat_rate *rate,
                       uint64_t now_ms)
{
    pthread_mutex_lock(&sh->mu);
    struct share_entry *e = share_find(sh, lkey, ckey, rate, now_ms, 1);
    if (e != NULL) {
        e->pending++;
        e->used_ms = now_ms;
    }
    pthread_mutex_unlock(&sh->mu);
}

/* The other nodes' open connections from an address (0 when unknown), noting the address so
 * that the cluster hears of this node's. */
static uint32_t share_conns(struct share *sh, uint64_t lkey, uint64_t ckey, uint64_t now_ms)
{
    pthread_mutex_lock(&sh->mu);
    struct share_entry *e = share_find(sh, lkey, ckey, NULL, now_ms, 1);
    uint32_t remote = 0;
    if (e != NULL) {
        e->used_ms = now_ms;
        remote = e->remote;
    }
    pthread_mutex_unlock(&sh->mu);
    return remote;
}

size_t moat_guard_share_collect(struct moat_guard *g, struct moat_guard_share_item *out, size_t cap,
                                uint64_t now_ms)
{
    struct share *sh = atomic_load(&g->share);
    if (sh == NULL) {
        return 0;
    }
    size_t n = 0;
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < SHARE_SLOTS && n < cap; i++) {
        struct share_entry *e = &sh->e[i];
        if (e->lkey == 0) {
            continue;
        }
        uint32_t open = e->conns ? moat_limiter_conns(g->table, e->lkey) : 0;
        if (now_ms > e->used_ms + e->window_ms && e->pending == 0 && open == 0) {
            *e = (struct share_entry){0}; /* quiet for its whole period: forgotten */
            continue;
        }
        if (e->conns) {
            e->taken = open; /* a count, not events: sent as it is */
            if (open > 0) {
                e->used_ms = now_ms;
            }
        } else {
            e->taken = e->pending;
            e->pending = 0;
        }
        out[n++] = (struct moat_guard_share_item){.slot = i,
                                                  .ckey = e->ckey,
                                                  .conns = e->conns,
                                                  .add = e->taken,
                                                  .window_ms = e->window_ms};
    }
    pthread_mutex_unlock(&sh->mu);
    return n;
}

void moat_guard_share_apply(struct moat_guard *g, const struct moat_guard_share_item *items,
                            size_t n, uint64_t now_ms)
{
    struct share *sh = atomic_load(&g->share);
    if (sh == NULL) {
        return;
    }
    pthread_mutex_lock(&sh->mu);
    for (size_t i = 0; i < n; i++) {
        const struct moat_guard_share_item *it = &items[i];
        struct share_entry *e = &sh->e[it->slot];
        if (e->ckey != it->ckey) {
            continue;
        }
        if (e->conns) {
            /* The cluster's open connections from the address, this node's among them; with
             * Redis away the others' are not known: this node judges alone. */
            uint64_t total = it->total > 0 ? (uint64_t)it->total : 0;
            e->remote = total > e->taken ? (uint32_t)(total - e->taken) : 0;
        } else if (it->total < 0) {
            e->pending += e->taken; /* not counted by the cluster: again next time */
        } else {
            uint64_t total = (uint64_t)it->total;
            uint64_t before = e->seen + e->taken;
            uint64_t others = total > before ? total - before : 0;
            e->seen = total;
            if (others > 0) {
                moat_limiter_charge(g->table, e->lkey, now_ms * 1000, e->interval_us, e->burst,
                                    others);
            }
        }
        e->taken = 0;
    }
    pthread_mutex_unlock(&sh->mu);
}

void moat_guard_set_fd_limit(struct moat_guard *g, uint64_t nofile)
{
    g->auto_total = nofile / 10 * 9;
}

int moat_guard_slots_are(const struct moat_guard *g, size_t slots)
{
    return g->slots == slots;
}

/* ---- addresses ------------------------------------------------------------------------- */

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v6(struct moat_guard_addr *out, const uint8_t *a16)
{
    if (memcmp(a16, v4mapped, sizeof(v4mapped)) == 0) {
        out->family = AF_INET;
        memcpy(out->addr, a16 + 12, 4);
    } else {
        out->family = AF_INET6;
        memcpy(out->addr, a16, 16);
    }
}

void moat_guard_addr_of_sa(const struct sockaddr *sa, struct moat_guard_addr *out)
{
    *out = (struct moat_guard_addr){0};
    if (sa->sa_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        set_v6(out, (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    }
}

/* "192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]" or "[2001:db8::1]:443". */
void moat_guard_addr_of_text(const char *text, size_t len, struct moat_guard_addr *out)
{
    *out = (struct moat_guard_addr){0};
    char a[INET6_ADDRSTRLEN + 1];
    const char *p = text;
    size_t n = len;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL) {
            return;
        }
        p++;
        n = (size_t)(close - p);
    } else if (memchr(p, '.', n) != NULL) {
        const char *colon = memchr(p, ':', n);
        if (colon != NULL) {
            n = (size_t)(colon - p); /* IPv4 with a port */
        }
    }
    if (n == 0 || n >= sizeof(a)) {
        return;
    }
    memcpy(a, p, n);
    a[n] = '\0';
    uint8_t bin[16];
    if (inet_pton(AF_INET, a, bin) == 1) {
        out->family = AF_INET;
        memcpy(out->addr, bin, 4);
    } else if (inet_pton(AF_INET6, a, bin) == 1) {
        set_v6(out, bin);
    }
}

static int loopback(const struct moat_guard_addr *a)
{
    static const uint8_t one[16] = {[15] = 1};
    return (a->family == AF_INET && a->addr[0] == 127) ||
           (a->family == AF_INET6 && memcmp(a->addr, one, 16) == 0);
}

static int in(const struct moat_cidr *set, size_t n, const struct moat_guard_addr *a)
{
    return a->family != 0 && moat_cidr_match(set, n, a->family, a->addr);
}

/* Whether the limit of `bit` skips the address (docs/limits.md "exempt"). */
static int exempt(const struct moat_conf *c, const struct moat_guard_addr *a, unsigned bit)
{
    if (c->exempt_set) {
        return in(c->exempt, c->nexempt, a);
    }
    return !(c->guard_written & bit) && loopback(a);
}

/* allow/deny in file order: the first line that matches decides; when none does, the
 * address is refused if there is any allow line (a list of who may) and let in if not. */
static int acl_allows(const struct moat_conf_acl *acl, size_t n, const struct moat_guard_addr *a)
{
    int any_allow = 0;
    for (size_t i = 0; i < n; i++) {
        if (in(&acl[i].range, 1, a)) {
            return acl[i].allow;
        }
        any_allow |= acl[i].allow;
    }
    return !any_allow;
}

/* The keyed hash of an address (IPv6 by its first `v6bits`): one MAC per connection, the
 * kinds' keys are made from it by kind_key. */
/* An address as key bytes after `tag`: the family and the address, an IPv6 one cut to its
 * first v6bits (a /64 is one client). Returns the length. */
static size_t addr_bytes(const struct moat_guard_addr *a, unsigned v6bits, const uint8_t *tag,
                         size_t taglen, uint8_t out[20])
{
    memcpy(out, tag, taglen);
    size_t len = taglen;
    out[len++] = (uint8_t)a->family;
    if (a->family == AF_INET) {
        memcpy(out + len, a->addr, 4);
        return len + 4;
    }
    memcpy(out + len, a->addr, 16);
    for (unsigned bit = v6bits; bit < 128; bit++) {
        out[len + bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    }
    return len + 16;
}

static uint64_t addr_base(struct moat_guard *g, const struct moat_guard_addr *a, unsigned v6bits)
{
    uint8_t k[20];
    size_t len = addr_bytes(a, v6bits, (const uint8_t *)"A", 1, k);
    return moat_limiter_key(g->table, k, len);
}

/* The same key on every node for an address-based limit of `kind`. */
static uint64_t share_addr_key(const struct share *sh, char kind, const struct moat_guard_addr *a,
                               unsigned v6bits)
{
    uint8_t tag[2] = {'S', (uint8_t)kind}, k[20];
    size_t len = addr_bytes(a, v6bits, tag, sizeof(tag), k);
    return moat_siphash24(sh->key, k, len);
}

/* The key of one kind of an address: a bijective mix of its keyed hash and the kind, so kinds
 * of one address never share a slot and keys stay as spread as the hash (splitmix64's
 * finaliser). Never 0 (an empty slot). */
static uint64_t kind_key(uint64_t base, char kind)
{
    uint64_t z = base ^ ((uint64_t)(unsigned char)kind * 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z != 0 ? z : 1;
}

/* ---- connections ----------------------------------------------------------------------- */

enum moat_guard_kind moat_guard_total_take(struct moat_guard *g, const struct moat_conf *c,
                                           struct moat_guard_ticket *t)
{
    *t = (struct moat_guard_ticket){0};
    uint64_t cap = c->total_conns < 0 ? g->auto_total : (uint64_t)c->total_conns;
    if (cap == 0) {
        return MOAT_GUARD_OK;
    }
    unsigned long long was = atomic_fetch_add_explicit(&g->open, 1, memory_order_relaxed);
    if (was >= cap) {
        atomic_fetch_sub_explicit(&g->open, 1, memory_order_relaxed);
        return MOAT_GUARD_TOTAL;
    }
    t->total = 1;
    return MOAT_GUARD_OK;
}

enum moat_guard_kind moat_guard_admit(struct moat_guard *g, const struct moat_conf *c,
                                      const struct moat_guard_addr *a, int tls, uint64_t now_ms,
                                      struct moat_guard_ticket *t)
{
    if (a->family == 0) {
        return MOAT_GUARD_OK;
    }
    if (c->nacl > 0 && !acl_allows(c->acl, c->nacl, a)) {
        return MOAT_GUARD_DENIED;
    }
    uint64_t now_us = now_ms * 1000, wait;
    int new_on = c->addr_new.n > 0 && !exempt(c, a, MOAT_CONF_GUARD_NEW);
    int hs_on = tls && c->addr_hs.n > 0 && !exempt(c, a, MOAT_CONF_GUARD_HS);
    int conns_on = c->addr_conns > 0 && !exempt(c, a, MOAT_CONF_GUARD_CONNS);
    if (!new_on && !hs_on && !conns_on) {
        return MOAT_GUARD_OK;
    }
    uint64_t base = addr_base(g, a, (unsigned)c->ipv6_prefix);
    /* In a cluster (share on) these count every node's connections from the address too. */
    struct share *sh = atomic_load_explicit(&g->share, memory_order_acquire);
    unsigned v6 = (unsigned)c->ipv6_prefix;
    if (new_on &&
        !moat_limiter_take(g->table, kind_key(base, 'N'), now_us,
                           moat_rate_interval_us(&c->addr_new), c->addr_new.burst, &wait)) {
        return MOAT_GUARD_NEW;
    }
    if (new_on && sh != NULL) {
        share_note(sh, kind_key(base, 'N'), share_addr_key(sh, 'N', a, v6), &c->addr_new, now_ms);
    }
    if (hs_on && !moat_limiter_take(g->table, kind_key(base, 'H'), now_us,
                                    moat_rate_interval_us(&c->addr_hs), c->addr_hs.burst, &wait)) {
        return MOAT_GUARD_HANDSHAKES;
    }
    if (hs_on && sh != NULL) {
        share_note(sh, kind_key(base, 'H'), share_addr_key(sh, 'H', a, v6), &c->addr_hs, now_ms);
    }
    if (conns_on) {
        uint64_t key = kind_key(base, 'C');
        uint32_t others =
            sh != NULL ? share_conns(sh, key, share_addr_key(sh, 'C', a, v6), now_ms) : 0;
        if (others >= (uint32_t)c->addr_conns) {
            return MOAT_GUARD_CONNS;
        }
        int got = moat_limiter_conn_take(g->table, key, (uint32_t)c->addr_conns - others);
        if (got == 0) {
            return MOAT_GUARD_CONNS;
        }
        if (got == 1) {
            t->conn_key = key;
        }
    }
    return MOAT_GUARD_OK;
}

static void refused_conn(struct moat_guard *g, const struct moat_conf *c, enum moat_guard_kind k,
                         unsigned long long id, const struct sockaddr_storage *peer)
{
    char who[64], words[200];
    moat_sock_peer_text(peer, who, sizeof(who));
    moat_guard_words(c, k, words, sizeof(words));
    moat_guard_refused(g, k, id, who, words);
}

int moat_guard_at_accept(struct moat_guard *g, const struct moat_conf *c,
                         const struct sockaddr_storage *peer, int tls, int addr_later,
                         uint64_t now_ms, struct moat_guard_ticket *t)
{
    *t = (struct moat_guard_ticket){0};
    if (g == NULL) {
        return 1;
    }
    enum moat_guard_kind k = moat_guard_total_take(g, c, t);
    if (k == MOAT_GUARD_OK && !addr_later) {
        struct moat_guard_addr a;
        moat_guard_addr_of_sa((const struct sockaddr *)peer, &a);
        k = moat_guard_admit(g, c, &a, tls, now_ms, t);
    }
    if (k != MOAT_GUARD_OK) {
        moat_guard_release(g, t);
        refused_conn(g, c, k, 0, peer);
        return 0;
    }
    return 1;
}

int moat_guard_after_header(struct moat_guard *g, const struct moat_conf *c,
                            const struct sockaddr_storage *src, int tls, uint64_t now_ms,
                            unsigned long long id, struct moat_guard_ticket *t)
{
    if (g == NULL) {
        return 1;
    }
    struct moat_guard_addr a;
    moat_guard_addr_of_sa((const struct sockaddr *)src, &a);
    enum moat_guard_kind k = moat_guard_admit(g, c, &a, tls, now_ms, t);
    if (k != MOAT_GUARD_OK) {
        refused_conn(g, c, k, id, src);
        return 0;
    }
    return 1;
}

void moat_guard_release(struct moat_guard *g, struct moat_guard_ticket *t)
{
    if (t->conn_key != 0) {
        moat_limiter_conn_put(g->table, t->conn_key);
    }
    if (t->total) {
        atomic_fetch_sub_explicit(&g->open, 1, memory_order_relaxed);
    }
    *t = (struct moat_guard_ticket){0};
}

int moat_guard_h2_limited(const struct moat_conf *c, const struct moat_guard_addr *a)
{
    return c->h2_requests.n > 0 && !exempt(c, a, MOAT_CONF_GUARD_H2);
}

/* ---- requests -------------------------------------------------------------------------- */

static int field_is(const struct moat_field *f, const char *lc)
{
    size_t n = strlen(lc);
    return f->name.len == n && strncasecmp(f->name.p, lc, n) == 0;
}

void moat_guard_client_of(const struct moat_req *req, const struct moat_cidr *trusted,
                          size_t ntrusted, struct moat_guard_addr *out)
{
    moat_guard_addr_of_text(req->peer != NULL ? req->peer : "", req->peer ? strlen(req->peer) : 0,
                            out);
    if (ntrusted == 0 || !in(trusted, ntrusted, out)) {
        return;
    }
    /* The fields from the last one back, each list from its right end. */
    for (size_t i = req->nfields; i-- > 0;) {
        const struct moat_field *f = &req->fields[i];
        if (!field_is(f, "x-forwarded-for")) {
            continue;
        }
        size_t end = f->value.len;
        while (end > 0) {
            size_t start = end;
            while (start > 0 && f->value.p[start - 1] != ',') {
                start--;
            }
            size_t a = start, b = end;
            while (a < b && (f->value.p[a] == ' ' || f->value.p[a] == '\t')) {
                a++;
            }
            while (b > a && (f->value.p[b - 1] == ' ' || f->value.p[b - 1] == '\t')) {
                b--;
            }
            struct moat_guard_addr hop;
            moat_guard_addr_of_text(f->value.p + a, b - a, &hop);
            if (hop.family == 0) {
                return; /* not an address: the last hop believed is the client */
            }
            *out = hop;
            if (!in(trusted, ntrusted, out)) {
                return;
            }
            end = start > 0 ? start - 1 : 0;
        }
    }
}

int moat_guard_site_allows(const struct moat_conf_site *site, const struct moat_guard_addr *a)
{
    return site->nacl == 0 || acl_allows(site->acl, site->nacl, a);
}

/* The value of cookie `name` in the request's Cookie fields; {NULL, 0} when absent. */
static moat_slice cookie_of(const struct moat_req *req, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->nfields; i++) {
        const struct moat_field *f = &req->fields[i];
        if (!field_is(f, "cookie")) {
            continue;
        }
        const char *p = f->value.p, *end = p + f->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';')) {
                p++;
            }
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *pair_end = semi != NULL ? semi : end;
            if ((size_t)(pair_end - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
                return (moat_slice){.p = p + nl + 1, .len = (size_t)(pair_end - p - nl - 1)};
            }
            p = pair_end;
        }
    }
    return MOAT_SLICE_NULL;
}

static int covers(const struct moat_conf_limit *l, const struct moat_req *req)
{
    if (l->prefix == NULL || req->npath.p == NULL) {
        return 1; /* a path that does not normalise is refused elsewhere; limit it anyway */
    }
    size_t pl = strlen(l->prefix);
    return req->npath.len >= pl && memcmp(req->npath.p, l->prefix, pl) == 0 &&
           (req->npath.len == pl || req->npath.p[pl] == '/');
}

enum moat_guard_kind moat_guard_limit(struct moat_guard *g, const struct moat_conf *c,
                                      const struct moat_conf_site *site, const struct moat_req *req,
                                      const struct moat_guard_addr *client, uint64_t now_ms,
                                      uint64_t *retry_after_s, const struct moat_conf_limit **rule)
{
    for (size_t i = 0; i < site->nlimits; i++) {
        const struct moat_conf_limit *l = &site->limits[i];
        if (!covers(l, req)) {
            continue;
        }
        moat_slice v = MOAT_SLICE_NULL;
        if (l->by == MOAT_CONF_LIMIT_BY_HEADER) {
            v = moat_req_field(req, l->key_name);
        } else if (l->by == MOAT_CONF_LIMIT_BY_COOKIE) {
            v = cookie_of(req, l->key_name);
        }
        /* site name, rule number, and the value (a field or cookie; else the address) */
        uint8_t k[256 + 16 + 8];
        const char *name = site->nnames > 0 ? site->names[0] : "";
        size_t nl = strnlen(name, 256);
        memcpy(k, name, nl);
        size_t len = nl;
        k[len++] = 0;
        k[len++] = (uint8_t)(i & 0xff);
        k[len++] = (uint8_t)(i >> 8);
        uint64_t vk;
        if (v.p != NULL) {
            k[len++] = 'V';
            vk = moat_limiter_key(g->table, v.p, v.len);
        } else {
            k[len++] = 'A';
            vk = client->family != 0 ? kind_key(addr_base(g, client, (unsigned)c->ipv6_prefix), 'L')
                                     : 0;
        }
        memcpy(k + len, &vk, sizeof(vk));
        len += sizeof(vk);
        uint64_t wait;
        uint64_t lkey = moat_limiter_key(g->table, k, len);
        if (!moat_limiter_take(g->table, lkey, now_ms * 1000, moat_rate_interval_us(&l->rate),
                               l->rate.burst, &wait)) {
            uint64_t s = (wait + 999999) / 1000000;
            *retry_after_s = s > 0 ? s : 1;
            *rule = l;
            return MOAT_GUARD_LIMIT;
        }
        struct share *sh = atomic_load_explicit(&g->share, memory_order_acquire);
        if (sh != NULL) {
            /* The same key on every node: the site, the rule, and the value or the address
             * itself (the local key is hashed with this process's seed). */
            uint8_t ck[256 + 16 + 300];
            size_t cl = nl;
            memcpy(ck, name, nl);
            ck[cl++] = 0;
            ck[cl++] = (uint8_t)(i & 0xff);
            ck[cl++] = (uint8_t)(i >> 8);
            if (v.p != NULL) {
                size_t vl = v.len < 300 ? v.len : 300;
                ck[cl++] = 'V';
                memcpy(ck + cl, v.p, vl);
                cl += vl;
            } else {
                /* the address as the local key has it (an IPv6 one cut to ipv6_prefix) */
                cl +=
                    addr_bytes(client, (unsigned)c->ipv6_prefix, (const uint8_t *)"A", 1, ck + cl);
            }
            share_note(sh, lkey, moat_siphash24(sh->key, ck, cl), &l->rate, now_ms);
        }
    }
    return MOAT_GUARD_OK;
}

/* ---- refusals -------------------------------------------------------------------------- */

static const char *per(const struct moat_rate *r)
{
    return r->per_ms == 1000 ? "s" : r->per_ms == 60000 ? "m" : "h";
}

void moat_guard_words(const struct moat_conf *c, enum moat_guard_kind kind, char *out, size_t cap)
{
    switch (kind) {
    case MOAT_GUARD_DENIED:
        snprintf(out, cap, "the address is not let in by the top-level allow/deny lines");
        break;
    case MOAT_GUARD_TOTAL:
        snprintf(out, cap, "as many connections are open as limits.total_connections allows");
        break;
    case MOAT_GUARD_CONNS:
        snprintf(out, cap, "%llu connections from this address are open already",
                 (unsigned long long)c->addr_conns);
        break;
    case MOAT_GUARD_NEW:
        snprintf(out, cap, "new connections from this address faster than %llu/%s burst %llu",
                 (unsigned long long)c->addr_new.n, per(&c->addr_new),
                 (unsigned long long)c->addr_new.burst);
        break;
    case MOAT_GUARD_HANDSHAKES:
        snprintf(out, cap,
                 "TLS handshakes from this address faster than %llu/%s burst %llu (refused "
                 "before the handshake)",
                 (unsigned long long)c->addr_hs.n, per(&c->addr_hs),
                 (unsigned long long)c->addr_hs.burst);
        break;
    default:
        snprintf(out, cap, "%s", moat_guard_kind_name(kind));
        break;
    }
}

void moat_guard_refused(struct moat_guard *g, enum moat_guard_kind kind, unsigned long long id,
                        const char *peer, const char *detail)
{
    if (kind <= MOAT_GUARD_OK || kind >= MOAT_GUARD_NKINDS) {
        return;
    }
    atomic_fetch_add_explicit(&g->refused[kind], 1, memory_order_relaxed);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long long now = (long long)ts.tv_sec;
    long long last = atomic_load_explicit(&g->logged_s[kind], memory_order_relaxed);
    if (now == last ||
        !atomic_compare_exchange_strong_explicit(&g->logged_s[kind], &last, now,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&g->unlogged[kind], 1, memory_order_relaxed);
        return;
    }
    unsigned long long more = atomic_exchange_explicit(&g->unlogged[kind], 0, memory_order_relaxed);
    if (more > 0) {
        moat_log(MOAT_LVL_INFO, id,
                 "refused by %s: %s (peer %s); %llu more refused by it since "
                 "its last line",
                 kind_names[kind], detail, peer, more);
    } else {
        moat_log(MOAT_LVL_INFO, id, "refused by %s: %s (peer %s)", kind_names[kind], detail, peer);
    }
}

void moat_guard_stats(struct moat_guard *g, struct moat_guard_stats *out)
{
    *out = (struct moat_guard_stats){0};
    for (int k = 0; k < MOAT_GUARD_NKINDS; k++) {
        out->refused[k] = atomic_load_explicit(&g->refused[k], memory_order_relaxed);
    }
    out->open = atomic_load_explicit(&g->open, memory_order_relaxed);
    struct moat_limiter_stats ls;
    moat_limiter_stats(g->table, &ls);
    out->evicted = ls.evicted;
    out->overflow = ls.overflow;
}
