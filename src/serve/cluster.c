/*
 * cluster.c: the cluster thread: one Redis connection, the shared ticket keys (see cluster.h).
 */
#include "serve/cluster.h"

#include "acme/challenges.h"
#include "core/log.h"
#include "serve/cache.h"
#include "serve/guard.h"
#include "state/redis.h"
#include "state/seal.h"
#include "state/store_redis.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHALLENGE_TTL_S 600 /* another node's ACME answer, should its removal be lost */
#define SYNC_MS 1000        /* how often the ticket keys are looked at: a new period within 1 s */
#define SHARE_MS 100        /* how often the limits' counts are traded */
#define SHARE_BATCH 1024    /* keys in one exchange (one pipeline) */
#define CONNS_FRESH_MS 3000 /* a node's count of an address's connections, without news */
#define KEYLEN MOAT_TLS_TICKET_KEY_BYTES
#define SEALED_LEN (KEYLEN + MOAT_SEAL_OVERHEAD)

#define BUS_MAX 256    /* events waiting to go out; past it the oldest are dropped */
#define BUS_MAX_AGE 60 /* seconds an event may wait for Redis before it is dropped */
#define EVENT_MAX 4096 /* bytes of one event */

struct bus_event {
    char *text; /* "KIND ARG" */
    time_t at;
};

struct moat_cluster_bus {
    pthread_mutex_t mu;
    int efd; /* eventfd: something was posted */
    struct bus_event q[BUS_MAX];
    size_t head, n;
    atomic_int active; /* cluster threads running (0 or 1; 2 while a reload swaps them): with
                          none, posts are dropped */
};

moat_rc moat_cluster_bus_new(struct moat_cluster_bus **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_cluster_bus *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cluster's events");
    }
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0) {
        free(b);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot make the cluster's event descriptor");
    }
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return MOAT_RC_OK;
}

void moat_cluster_bus_free(struct moat_cluster_bus *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        free(b->q[(b->head + i) % BUS_MAX].text);
    }
    close(b->efd);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

void moat_cluster_bus_post(struct moat_cluster_bus *b, const char *kind, const char *arg,
                           size_t alen)
{
    if (b == NULL || !atomic_load(&b->active)) {
        return;
    }
    size_t kl = strlen(kind);
    if (kl + 1 + alen >= EVENT_MAX) {
        return;
    }
    char *t = malloc(kl + 1 + alen + 1);
    if (t == NULL) {
        return;
    }
    memcpy(t, kind, kl);
    t[kl] = ' ';
    memcpy(t + kl + 1, arg, alen);
    t[kl + 1 + alen] = '\0';
    pthread_mutex_lock(&b->mu);
    if (b->n == BUS_MAX) {
        free(b->q[b->head].text);
        b->head = (b->head + 1) % BUS_MAX;
        b->n--;
    }
    b->q[(b->head + b->n) % BUS_MAX] = (struct bus_event){.text = t, .at = time(NULL)};
    b->n++;
    pthread_mutex_unlock(&b->mu);
    uint64_t one = 1;
    ssize_t w = write(b->efd, &one, sizeof(one));
    (void)w; /* a full counter already says "something was posted" */
}

/* The oldest event young enough to send, taken off the queue; NULL when none. */
static char *bus_take(struct moat_cluster_bus *b)
{
    char *t = NULL;
    time_t now = time(NULL);
    pthread_mutex_lock(&b->mu);
    while (b->n > 0 && t == NULL) {
        struct bus_event *e = &b->q[b->head];
        b->head = (b->head + 1) % BUS_MAX;
        b->n--;
        if (now - e->at <= BUS_MAX_AGE) {
            t = e->text;
        } else {
            free(e->text);
        }
        e->text = NULL;
    }
    pthread_mutex_unlock(&b->mu);
    return t;
}

/* Put back an event that could not go out (Redis away), first in line. */
static void bus_unget(struct moat_cluster_bus *b, char *t)
{
    pthread_mutex_lock(&b->mu);
    if (b->n == BUS_MAX) {
        pthread_mutex_unlock(&b->mu);
        free(t);
        return;
    }
    b->head = (b->head + BUS_MAX - 1) % BUS_MAX;
    b->q[b->head] = (struct bus_event){.text = t, .at = time(NULL)};
    b->n++;
    pthread_mutex_unlock(&b->mu);
}

/* The keys of periods p-1, p, p+1 as last handed to the ticket key set. */
struct keyset {
    long long period;
    int have[3];
    unsigned char k[3][KEYLEN];
};

struct moat_cluster {
    /* copied settings */
    struct moat_redis_opts o; /* its own copies */
    char *prefix;
    uint64_t rotate_s;
    unsigned char key[MOAT_SEAL_KEY_BYTES];  /* the sealing key */
    struct moat_tls_tickets *tickets;        /* one reference */
    struct moat_cluster_bus *bus;            /* borrowed: the server's */
    struct moat_cache *cache;                /* borrowed: the server's; NULL: none */
    struct moat_acme_challenges *challenges; /* borrowed: the server's; NULL: none */
    struct moat_guard *guard;                /* borrowed: the server's; NULL: none */
    struct moat_guard_share_item *items;     /* SHARE_BATCH of them, the thread's */
    char node[17];                           /* this node's id in events: 16 hex digits */
    char channel[96];                        /* PREFIX "events" */

    pthread_t thread;
    pthread_mutex_t mu; /* guards stats */
    int wake;           /* eventfd: stop */
    atomic_int stop;
    atomic_int reload_wanted;
    struct moat_cluster_stats stats;

    /* the thread's own */
    struct moat_redis *r;
    struct moat_redis *sub;     /* SUBSCRIBEd to `channel` */
    unsigned long long dropped; /* events that did not open, since the last line about them */
    time_t dropped_logged;
    struct keyset applied;
    long long synced_period; /* the last period whose keys came from Redis; -1 none */
    long long local_period;  /* the last period rotated locally while Redis was away */
    int told_local;          /* the "rotating locally" line was logged */
};

static void note(struct moat_cluster *c, int up, const char *why)
{
    pthread_mutex_lock(&c->mu);
    int was = c->stats.up;
    if (up != was || c->stats.since == 0) {
        c->stats.since = time(NULL);
    }
    c->stats.up = up;
    if (up) {
        c->stats.syncs++;
    } else {
        c->stats.failures++;
        snprintf(c->stats.last_error, sizeof(c->stats.last_error), "%s", why);
    }
    pthread_mutex_unlock(&c->mu);
    if (up && !was) {
        moat_log_i("cluster: Redis at %s answers; ticket keys are the cluster's", c->o.addr);
    } else if (!up && (was || c->stats.failures == 1)) {
        moat_log_w("cluster: %s; serving on with the ticket keys this node has (retrying "
                   "every second)",
                   why);
    }
}

static void key_name(const struct moat_cluster *c, long long period, char *out, size_t cap)
{
    snprintf(out, cap, "%stickets:%lld", c->prefix, period);
}

/* One round with Redis: read the three periods' keys, make the current one if nobody has, hand
 * them to the ticket key set when they changed. */
static moat_rc sync_tickets(struct moat_cluster *c, struct moat_err *err)
{
    long long period = (long long)(time(NULL) / (time_t)c->rotate_s);
    char names[3][160];
    const char *argv[4] = {"MGET", names[0], names[1], names[2]};
    size_t lens[4] = {4, 0, 0, 0};
    for (int i = 0; i < 3; i++) {
        key_name(c, period - 1 + i, names[i], sizeof(names[i]));
        lens[i + 1] = strlen(names[i]);
    }
    redisReply *rep = NULL;
    MOAT_TRY(moat_redis_command(c->r, 4, argv, lens, &rep, err));
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        freeReplyObject(rep);
        MOAT_FAIL(err, MOAT_E_PEER, "MGET of the ticket keys did not answer three values");
    }
    int missing[2] = {rep->element[0]->type == REDIS_REPLY_NIL,
                      rep->element[1]->type == REDIS_REPLY_NIL};
    if (missing[0] || missing[1]) {
        freeReplyObject(rep);
        rep = NULL;
        /* What the nodes hold and Redis lost (a restart without persistence) goes back, so the
         * tickets given out under it keep resuming; this period's key, when nobody made it yet,
         * is a new one. SET NX: whoever is first wins, and every node reads the winner's. */
        const struct keyset *a = &c->applied;
        for (int i = 0; i < 2; i++) {
            unsigned char k[KEYLEN], sealed[SEALED_LEN];
            int ours = a->period == period && a->have[i];
            if (!missing[i] || (i == 0 && !ours)) {
                continue;
            }
            if (ours) {
                memcpy(k, a->k[i], KEYLEN);
            } else if (!moat_tls_ticket_key_make(k)) {
                MOAT_FAIL(err, MOAT_E_TLS, "the random generator failed making a ticket key");
            }
            moat_rc rc = moat_seal(c->key, names[i], k, KEYLEN, sealed, err);
            OPENSSL_cleanse(k, sizeof(k));
            MOAT_TRY(rc);
            char ex[24];
            snprintf(ex, sizeof(ex), "%llu", (unsigned long long)((2 + i) * c->rotate_s + 60));
            const char *sv[6] = {"SET", names[i], (const char *)sealed, "NX", "EX", ex};
            size_t sl[6] = {3, strlen(names[i]), SEALED_LEN, 2, 2, strlen(ex)};
            MOAT_TRY(moat_redis_command(c->r, 6, sv, sl, &rep, err));
            freeReplyObject(rep);
            rep = NULL;
        }
        MOAT_TRY(moat_redis_command(c->r, 4, argv, lens, &rep, err));
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
            rep->element[1]->type != REDIS_REPLY_STRING) {
            freeReplyObject(rep);
            MOAT_FAIL(err, MOAT_E_PEER, "the ticket key just set is not there (%s)", names[1]);
        }
    }
    struct keyset ks = {.period = period};
    moat_rc rc = MOAT_RC_OK;
    for (int i = 0; i < 3 && moat_ok(rc); i++) {
        const redisReply *v = rep->element[i];
        if (v->type == REDIS_REPLY_NIL) {
            continue;
        }
        size_t n = 0;
        unsigned char out[SEALED_LEN];
        if (v->type != REDIS_REPLY_STRING || v->len != SEALED_LEN) {
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                              "%s in Redis is not a ticket key moat sealed (%zu bytes)", names[i],
                              (size_t)v->len);
            break;
        }
        rc = moat_unseal(c->key, names[i], (const unsigned char *)v->str, v->len, out, &n, err);
        if (moat_ok(rc) && n == KEYLEN) {
            memcpy(ks.k[i], out, KEYLEN);
            ks.have[i] = 1;
        }
        OPENSSL_cleanse(out, sizeof(out));
    }
    freeReplyObject(rep);
    if (moat_ok(rc) && !ks.have[1]) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__, "no ticket key for %s", names[1]);
    }
    if (moat_ok(rc) && memcmp(&ks, &c->applied, sizeof(ks)) != 0) {
        const unsigned char *others[2];
        size_t n = 0;
        if (ks.have[0]) {
            others[n++] = ks.k[0];
        }
        if (ks.have[2]) {
            others[n++] = ks.k[2];
        }
        moat_tls_tickets_set(c->tickets, ks.k[1], others, n);
        if (c->synced_period != period) {
            moat_log_i("cluster: ticket keys of period %lld in use (shared through %s)", period,
                       c->o.addr);
        }
        OPENSSL_cleanse(&c->applied, sizeof(c->applied));
        c->applied = ks;
        pthread_mutex_lock(&c->mu);
        c->stats.shared_keys = 1;
        pthread_mutex_unlock(&c->mu);
    }
    if (moat_ok(rc)) {
        c->synced_period = period;
        c->told_local = 0;
    }
    OPENSSL_cleanse(&ks, sizeof(ks));
    return rc;
}

/* Redis is away: after a whole period without it, a key of this node's own each period. */
static void rotate_alone(struct moat_cluster *c)
{
    long long period = (long long)(time(NULL) / (time_t)c->rotate_s);
    if (c->synced_period < 0 || period <= c->synced_period + 1 || period == c->local_period) {
        return;
    }
    moat_tls_tickets_rotate(c->tickets);
    c->local_period = period;
    OPENSSL_cleanse(&c->applied, sizeof(c->applied)); /* the next sync hands keys over again */
    pthread_mutex_lock(&c->mu);
    c->stats.shared_keys = 0;
    pthread_mutex_unlock(&c->mu);
    if (!c->told_local) {
        moat_log_w("cluster: Redis away for more than a ticket period: ticket keys rotate on this "
                   "node alone until it is back (tickets from here resume only here meanwhile)");
        c->told_local = 1;
    }
}

/* The Redis settings of a cluster block (borrowed strings). */
static struct moat_redis_opts redis_opts(const struct moat_conf_cluster *cc)
{
    return (struct moat_redis_opts){.addr = cc->redis,
                                    .tls = cc->tls,
                                    .ca_file = cc->ca,
                                    .server_name = cc->server_name,
                                    .user = cc->user,
                                    .password = cc->password,
                                    .timeout_ms = (unsigned)cc->timeout_ms};
}

static struct moat_redis_opts opts_of(const struct moat_cluster *c);

static void round_once(struct moat_cluster *c)
{
    struct moat_err e = {0};
    char why[400];
    moat_rc rc = MOAT_RC_OK;
    if (c->r == NULL) {
        struct moat_redis_opts o = opts_of(c);
        rc = moat_redis_connect(&o, &c->r, &e);
    }
    if (moat_ok(rc)) {
        rc = sync_tickets(c, &e);
    }
    if (moat_ok(rc)) {
        note(c, 1, NULL);
        return;
    }
    note(c, 0, moat_err_str(&e, why, sizeof(why)));
    if (c->r != NULL && (moat_redis_broken(c->r) || rc.kind == MOAT_E_IO)) {
        moat_redis_close(c->r);
        c->r = NULL;
    }
    rotate_alone(c);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct moat_redis_opts opts_of(const struct moat_cluster *c)
{
    return c->o;
}

/* The subscriber connection, once the command one works. */
static void subscribe(struct moat_cluster *c)
{
    struct moat_err e = {0};
    struct moat_redis_opts o = opts_of(c);
    moat_rc rc = moat_redis_connect(&o, &c->sub, &e);
    const char *argv[2] = {"SUBSCRIBE", c->channel};
    size_t lens[2] = {9, strlen(c->channel)};
    redisReply *rep = NULL;
    if (moat_ok(rc)) {
        rc = moat_redis_command(c->sub, 2, argv, lens, &rep, &e);
    }
    freeReplyObject(rep);
    if (!moat_ok(rc)) {
        char why[400];
        moat_log_w("cluster: cannot subscribe to %s: %s (purges and reloads from other nodes "
                   "wait until it works)",
                   c->channel, moat_err_str(&e, why, sizeof(why)));
        moat_redis_close(c->sub);
        c->sub = NULL;
    }
}

/* An event from another node: "NODE KIND ARG". */
static void dispatch_event(struct moat_cluster *c, const char *m, const char *kind, size_t rest);

#define EVENT_MAX_AGE_S 120 /* an older event (a replay, or a clock far off) is dropped */

/* An event from another node: "NODE " + sealed("TIME KIND ARG"): sealed with the cluster's key
 * and bound to the channel, so nobody who can only publish to Redis can make a node purge,
 * reload or, above all, answer an ACME challenge for them. */
static void handle_event(struct moat_cluster *c, const char *m, size_t len)
{
    if (len >= 16 && memcmp(m, c->node, 16) == 0) {
        return; /* ours */
    }
    char *plain = NULL;
    size_t n = 0;
    struct moat_err e = {0};
    if (len < 17 + MOAT_SEAL_OVERHEAD || m[16] != ' ' ||
        len > 17 + MOAT_SEAL_OVERHEAD + EVENT_MAX + 24 || (plain = malloc(len + 1)) == NULL ||
        !moat_ok(moat_unseal(c->key, c->channel, (const unsigned char *)m + 17, len - 17,
                             (unsigned char *)plain, &n, &e))) {
        free(plain);
        c->dropped++;
        time_t now = time(NULL);
        if (now - c->dropped_logged >= 10) { /* a flood of them makes one line in 10 s */
            moat_log_w("cluster: %llu event(s) on %s that this node's secret does not open "
                       "(another secret_file on that node, or not moat's): dropped",
                       c->dropped, c->channel);
            c->dropped_logged = now;
            c->dropped = 0;
        }
        return;
    }
    plain[n] = '\0';
    char *end = NULL;
    long long at = strtoll(plain, &end, 10);
    long long now = (long long)time(NULL);
    if (end == plain || *end != ' ' || at < now - EVENT_MAX_AGE_S || at > now + EVENT_MAX_AGE_S) {
        free(plain);
        return;
    }
    dispatch_event(c, m, end + 1, n - (size_t)(end + 1 - plain));
    free(plain);
}

static void dispatch_event(struct moat_cluster *c, const char *m, const char *kind, size_t rest)
{
    if (rest >= 6 && memcmp(kind, "purge ", 6) == 0) {
        const char *key = kind + 6;
        size_t klen = rest - 6;
        unsigned long long n = c->cache != NULL ? moat_cache_purge(c->cache, key, klen) : 0;
        moat_log_i("cluster: purged %llu answer(s) for %.*s (a PURGE on node %.16s)", n,
                   (int)(klen > 300 ? 300 : klen), key, m);
    } else if (rest >= 10 && memcmp(kind, "challenge ", 10) == 0 && c->challenges != NULL) {
        char buf[1100], *save = NULL;
        size_t bl = rest - 10 < sizeof(buf) - 1 ? rest - 10 : sizeof(buf) - 1;
        memcpy(buf, kind + 10, bl);
        buf[bl] = '\0';
        const char *op = strtok_r(buf, " ", &save), *alpn = strtok_r(NULL, " ", &save);
        const char *ident = strtok_r(NULL, " ", &save), *token = strtok_r(NULL, " ", &save);
        const char *ka = strtok_r(NULL, " ", &save);
        if (op == NULL || alpn == NULL || ident == NULL || token == NULL) {
            return;
        }
        int is_alpn = strcmp(alpn, "1") == 0;
        if (strcmp(op, "+") == 0 && ka != NULL) {
            struct moat_err e = {0};
            if (moat_ok(moat_acme_challenges_put(c->challenges, is_alpn, ident, token, ka,
                                                 CHALLENGE_TTL_S, &e))) {
                moat_log_i("cluster: answering the %s challenge for %s of node %.16s",
                           is_alpn ? "tls-alpn-01" : "http-01", ident, m);
            }
        } else if (strcmp(op, "-") == 0) {
            moat_acme_challenges_remove(c->challenges, is_alpn, ident, token);
        }
    } else if (rest >= 6 && memcmp(kind, "reload", 6) == 0) {
        moat_log_i("cluster: node %.16s asks every node to reload", m);
        atomic_store(&c->reload_wanted, 1);
    }
}

static void read_events(struct moat_cluster *c)
{
    do {
        struct moat_err e = {0};
        redisReply *rep = NULL;
        if (!moat_ok(moat_redis_read_reply(c->sub, &rep, &e))) {
            moat_redis_close(c->sub);
            c->sub = NULL;
            return;
        }
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(rep->element[0]->str, "message") == 0 &&
            rep->element[2]->type == REDIS_REPLY_STRING) {
            handle_event(c, rep->element[2]->str, rep->element[2]->len);
        }
        freeReplyObject(rep);
    } while (c->sub != NULL && moat_redis_pending(c->sub));
}

/* Send what the server posted, while Redis takes it. */
static void publish_events(struct moat_cluster *c)
{
    char *t;
    while (c->r != NULL && (t = bus_take(c->bus)) != NULL) {
        size_t tl = strlen(t);
        char *plain = malloc(tl + 32);
        unsigned char *msg = malloc(17 + tl + 32 + MOAT_SEAL_OVERHEAD);
        struct moat_err e = {0};
        if (plain == NULL || msg == NULL) {
            free(plain);
            free(msg);
            free(t);
            return;
        }
        int pl = snprintf(plain, tl + 32, "%lld %s", (long long)time(NULL), t);
        memcpy(msg, c->node, 16);
        msg[16] = ' ';
        moat_rc rc = moat_seal(c->key, c->channel, plain, (size_t)pl, msg + 17, &e);
        OPENSSL_cleanse(plain, (size_t)pl);
        free(plain);
        redisReply *rep = NULL;
        if (moat_ok(rc)) {
            const char *argv[3] = {"PUBLISH", c->channel, (const char *)msg};
            size_t lens[3] = {7, strlen(c->channel), 17 + (size_t)pl + MOAT_SEAL_OVERHEAD};
            rc = moat_redis_command(c->r, 3, argv, lens, &rep, &e);
        }
        freeReplyObject(rep);
        free(msg);
        if (!moat_ok(rc)) {
            bus_unget(c->bus, t);
            char why[400];
            note(c, 0, moat_err_str(&e, why, sizeof(why)));
            moat_redis_close(c->r);
            c->r = NULL;
            return;
        }
        free(t);
    }
}

/* Trade the limit rules' counts for the cluster's totals: one pipelined script per key (INCRBY,
 * then PEXPIRE to two of the rule's periods). */
static void share_limits(struct moat_cluster *c, uint64_t now_ms)
{
    static const char rate_script[] = "local t = redis.call('INCRBY', KEYS[1], ARGV[1]) "
                                      "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return t";
    /* An address's open connections per node, each with Redis's time; a node silent for
     * CONNS_FRESH_MS (dead, or cut off) no longer counts. */
    static const char conns_script[] =
        "local now = redis.call('TIME') local ms = now[1] * 1000 + math.floor(now[2] / 1000) "
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ms) "
        "redis.call('PEXPIRE', KEYS[1], ARGV[3]) "
        "local all = redis.call('HGETALL', KEYS[1]) local sum = 0 "
        "for i = 1, #all, 2 do local n, t = string.match(all[i + 1], '^(%d+):(%d+)$') "
        "if n == nil or tonumber(t) + tonumber(ARGV[3]) < ms then "
        "redis.call('HDEL', KEYS[1], all[i]) else sum = sum + tonumber(n) end end return sum";
    if (c->guard == NULL) {
        return;
    }
    size_t n = moat_guard_share_collect(c->guard, c->items, SHARE_BATCH, now_ms);
    if (n == 0) {
        return;
    }
    size_t sent = 0;
    struct moat_err e = {0};
    moat_rc rc = c->r != NULL ? MOAT_RC_OK : moat_rc_of(MOAT_E_IO);
    for (; moat_ok(rc) && sent < n; sent++) {
        const struct moat_guard_share_item *it = &c->items[sent];
        char key[160], add[24], ms[24];
        snprintf(key, sizeof(key), "%s%s:%016llx", c->prefix, it->conns ? "conns" : "rl",
                 (unsigned long long)it->ckey);
        snprintf(add, sizeof(add), "%llu", (unsigned long long)it->add);
        snprintf(ms, sizeof(ms), "%llu",
                 it->conns ? (unsigned long long)CONNS_FRESH_MS
                           : (unsigned long long)(2 * it->window_ms + 1000));
        if (it->conns) {
            const char *argv[7] = {"EVAL", conns_script, "1", key, c->node, add, ms};
            size_t lens[7] = {4, strlen(conns_script), 1, strlen(key), 16, strlen(add), strlen(ms)};
            rc = moat_redis_send(c->r, 7, argv, lens, &e);
        } else {
            const char *argv[6] = {"EVAL", rate_script, "1", key, add, ms};
            size_t lens[6] = {4, strlen(rate_script), 1, strlen(key), strlen(add), strlen(ms)};
            rc = moat_redis_send(c->r, 6, argv, lens, &e);
        }
    }
    for (size_t i = 0; i < n; i++) {
        c->items[i].total = -1;
        redisReply *rep = NULL;
        if (moat_ok(rc) && i < sent) {
            rc = moat_redis_read_reply(c->r, &rep, &e);
            if (moat_ok(rc) && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0) {
                c->items[i].total = rep->integer;
            }
        }
        freeReplyObject(rep);
    }
    moat_guard_share_apply(c->guard, c->items, n, now_ms);
    if (!moat_ok(rc) && c->r != NULL) {
        char why[400];
        note(c, 0, moat_err_str(&e, why, sizeof(why)));
        moat_redis_close(c->r);
        c->r = NULL;
    }
}

static void *run(void *arg)
{
    struct moat_cluster *c = arg;
    uint64_t next_sync = 0, next_share = 0;
    while (!atomic_load(&c->stop)) {
        uint64_t now = mono_ms();
        if (now >= next_sync) {
            round_once(c);
            next_sync = now + SYNC_MS;
        }
        if (now >= next_share) {
            share_limits(c, now);
            next_share = now + SHARE_MS;
        }
        if (c->r != NULL && c->sub == NULL) {
            subscribe(c);
        }
        publish_events(c);
        struct pollfd p[3] = {
            {.fd = c->wake, .events = POLLIN},
            {.fd = c->bus->efd, .events = POLLIN},
            {.fd = c->sub != NULL ? moat_redis_fd(c->sub) : -1, .events = POLLIN}};
        now = mono_ms();
        uint64_t next = next_sync < next_share ? next_sync : next_share;
        int wait = next > now ? (int)(next - now) : 0;
        if (c->sub != NULL && moat_redis_pending(c->sub)) {
            wait = 0;
        }
        int n = poll(p, 3, wait);
        if (n > 0 && (p[1].revents & POLLIN)) {
            uint64_t v;
            ssize_t r = read(c->bus->efd, &v, sizeof(v));
            (void)r;
        }
        if (c->sub != NULL && ((n > 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) ||
                               moat_redis_pending(c->sub))) {
            read_events(c);
        }
    }
    return NULL;
}

static void cluster_free(struct moat_cluster *c)
{
    free(c->items);
    moat_redis_close(c->r);
    moat_redis_close(c->sub);
    if (c->wake >= 0) {
        close(c->wake);
    }
    moat_redis_opts_clear(&c->o);
    free(c->prefix);
    OPENSSL_cleanse(c->key, sizeof(c->key));
    OPENSSL_cleanse(&c->applied, sizeof(c->applied));
    if (c->tickets != NULL) {
        moat_tls_tickets_free(c->tickets);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int dup_to(char **dst, const char *s)
{
    *dst = s != NULL ? strdup(s) : NULL;
    return s == NULL || *dst != NULL;
}

moat_rc moat_cluster_start(const struct moat_conf_cluster *cc, struct moat_tls_tickets *tickets,
                           uint64_t rotate_s, struct moat_cluster_bus *bus,
                           struct moat_cache *cache, struct moat_acme_challenges *challenges,
                           struct moat_guard *guard, struct moat_cluster **out,
                           struct moat_err *err)
{
    *out = NULL;
    MOAT_ENSURE(cc != NULL && cc->redis != NULL && tickets != NULL && rotate_s > 0 && bus != NULL,
                MOAT_E_INTERNAL);
    struct moat_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cluster");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->bus = bus;
    c->cache = cache;
    c->challenges = challenges;
    c->guard = guard;
    c->items = calloc(SHARE_BATCH, sizeof(*c->items));
    if (c->items == NULL) {
        cluster_free(c);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cluster");
    }
    if (guard != NULL) {
        unsigned char lk[MOAT_SEAL_KEY_BYTES];
        moat_rc rc = moat_seal_key(cc->secret, sizeof(cc->secret), "moat cluster limits", lk, err);
        if (moat_ok(rc)) {
            rc = moat_guard_share_on(guard, lk, err);
        }
        OPENSSL_cleanse(lk, sizeof(lk));
        if (!moat_ok(rc)) {
            cluster_free(c);
            return rc;
        }
    }
    unsigned char id[8];
    if (c->wake < 0 || RAND_bytes(id, sizeof(id)) <= 0) {
        cluster_free(c);
        MOAT_FAIL(err, MOAT_E_IO, "cannot set up the cluster thread");
    }
    for (int i = 0; i < 8; i++) {
        snprintf(c->node + 2 * i, 3, "%02x", id[i]);
    }
    snprintf(c->channel, sizeof(c->channel), "%sevents", cc->prefix);
    c->synced_period = -1;
    c->local_period = -1;
    struct moat_redis_opts ro = redis_opts(cc);
    moat_rc rc = moat_redis_opts_copy(&ro, &c->o, err);
    if (!moat_ok(rc)) {
        cluster_free(c);
        return rc;
    }
    if (!dup_to(&c->prefix, cc->prefix)) {
        cluster_free(c);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cluster");
    }
    c->rotate_s = rotate_s;
    memcpy(c->key, cc->secret, sizeof(c->key));
    c->tickets = moat_tls_tickets_ref(tickets);
    atomic_fetch_add(&bus->active, 1);
    int e = pthread_create(&c->thread, NULL, run, c);
    if (e != 0) {
        atomic_fetch_sub(&bus->active, 1);
        cluster_free(c);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__,
                            "cannot start the cluster thread");
    }
    *out = c;
    return MOAT_RC_OK;
}

void moat_cluster_stop(struct moat_cluster *c)
{
    if (c == NULL) {
        return;
    }
    atomic_store(&c->stop, 1);
    uint64_t one = 1;
    ssize_t w = write(c->wake, &one, sizeof(one));
    (void)w;
    pthread_join(c->thread, NULL);
    atomic_fetch_sub(&c->bus->active, 1);
    moat_tls_tickets_unshare(c->tickets);
    cluster_free(c);
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int moat_cluster_same(const struct moat_cluster *c, const struct moat_conf_cluster *cc,
                      uint64_t rotate_s)
{
    return c != NULL && cc != NULL && same_str(c->o.addr, cc->redis) &&
           same_str(c->o.ca_file, cc->ca) && same_str(c->o.server_name, cc->server_name) &&
           same_str(c->o.user, cc->user) && same_str(c->o.password, cc->password) &&
           same_str(c->prefix, cc->prefix) && c->o.tls == cc->tls &&
           c->o.timeout_ms == (unsigned)cc->timeout_ms && c->rotate_s == rotate_s &&
           CRYPTO_memcmp(c->key, cc->secret, sizeof(c->key)) == 0;
}

void moat_cluster_stats(struct moat_cluster *c, struct moat_cluster_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}

moat_rc moat_cluster_store_new(const struct moat_conf_cluster *cc, struct moat_store **out,
                               struct moat_err *err)
{
    struct moat_redis_opts ro = redis_opts(cc);
    return moat_store_redis_new(&ro, cc->prefix, cc->secret, out, err);
}

int moat_cluster_take_reload(struct moat_cluster *c)
{
    return c != NULL && atomic_exchange(&c->reload_wanted, 0);
}

const char *moat_cluster_redis(const struct moat_cluster *c)
{
    return c->o.addr;
}
