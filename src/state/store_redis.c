/*
 * store_redis.c: the store (store.h) on a Redis that several moat nodes share, for a cluster's
 * ACME accounts, keys and certificates.
 *
 * A key K is PREFIX "store:" K. Every value is sealed (seal.h) with the cluster secret and bound
 * to its key, so a Redis dump holds no private key in the clear and a value moved to another key
 * does not open. A lock N is PREFIX "lock:" N holding a random token, taken with SET NX and an
 * expiry of at most LOCK_LEASE_MS that a keeper thread renews while it is held, up to the
 * caller's ttl: a node that dies lets go within the lease, a stuck one after its ttl. Fencing:
 * while this store holds locks, a put (and a delete) goes through a script that first checks every
 * lock still holds this store's token, so a node that lost its lock (it stalled past the lease and
 * another took it) cannot overwrite what the new holder wrote: the write is refused with
 * MOAT_E_AGAIN.
 *
 * One connection, under a mutex (the ACME thread and the keeper share it); a failed connection
 * is dropped and made again at the next call. Calls block for at most the timeout.
 */
#include "state/store_redis.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOCK_LEASE_MS 30000 /* a lock lapses this long after its holder stops renewing it */
#define RENEW_MS 10000
#define VALUE_MAX (1024 * 1024 - 64)

/* Set KEYS[1] to ARGV[1] only if every lock KEYS[2..] still holds its token ARGV[2..]. */
static const char put_script[] =
    "for i = 2, #KEYS do if redis.call('GET', KEYS[i]) ~= ARGV[i] then return 0 end end "
    "redis.call('SET', KEYS[1], ARGV[1]) return 1";
static const char del_script[] =
    "for i = 2, #KEYS do if redis.call('GET', KEYS[i]) ~= ARGV[i] then return 0 end end "
    "redis.call('DEL', KEYS[1]) return 1";
static const char unlock_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";
static const char renew_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], "
    "ARGV[2]) end return 0";

#define MAX_HELD 8

struct rlock {
    struct moat_store_lock base; /* first */
    char key[MOAT_STORE_KEY_MAX + 128];
    char token[33];
    int lost;
    time_t until; /* the caller's ttl: no renewal after it, so a stuck holder lets go too */
};

struct rstore {
    struct moat_store base; /* first */
    pthread_mutex_t mu;     /* guards r, held, stop */
    pthread_cond_t cv;
    struct moat_redis_opts o; /* its own copies */
    struct moat_redis *r;
    char prefix[128];
    unsigned char key[MOAT_SEAL_KEY_BYTES];
    struct rlock *held[MAX_HELD];
    size_t nheld;
    pthread_t keeper;
    int stop;
};

/* One command, connecting first when needed; the connection is dropped when it failed. Under mu. */
static moat_rc cmd_locked(struct rstore *s, int argc, const char **argv, const size_t *lens,
                          redisReply **out, struct moat_err *err)
{
    *out = NULL;
    if (s->r == NULL) {
        MOAT_TRY(moat_redis_connect(&s->o, &s->r, err));
    }
    moat_rc rc = moat_redis_command(s->r, argc, argv, lens, out, err);
    if (!moat_ok(rc) && moat_redis_broken(s->r)) {
        moat_redis_close(s->r);
        s->r = NULL;
    }
    return rc;
}

static moat_rc cmd(struct rstore *s, int argc, const char **argv, const size_t *lens,
                   redisReply **out, struct moat_err *err)
{
    pthread_mutex_lock(&s->mu);
    moat_rc rc = cmd_locked(s, argc, argv, lens, out, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void rkey(const struct rstore *s, const char *kind, const char *key, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", s->prefix, kind, key);
}

static moat_rc r_get(struct moat_store *st, const char *key, size_t max_bytes, unsigned char **out,
                     size_t *len, struct moat_err *err)
{
    struct rstore *s = (struct rstore *)st;
    char k[MOAT_STORE_KEY_MAX + 128];
    rkey(s, "store:", key, k, sizeof(k));
    const char *argv[2] = {"GET", k};
    size_t lens[2] = {3, strlen(k)};
    redisReply *rep = NULL;
    MOAT_TRY(cmd(s, 2, argv, lens, &rep, err));
    if (rep->type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        MOAT_FAIL(err, MOAT_E_NOTFOUND, "%s is not in the cluster's store", key);
    }
    if (rep->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        MOAT_FAIL(err, MOAT_E_PEER, "%s in Redis is not a value moat stored", k);
    }
    if (rep->len > max_bytes + MOAT_SEAL_OVERHEAD) {
        freeReplyObject(rep);
        MOAT_FAIL(err, MOAT_E_LIMIT, "%s is larger than %zu bytes", key, max_bytes);
    }
    unsigned char *buf = malloc(rep->len + 1);
    if (buf == NULL) {
        freeReplyObject(rep);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory reading %s", key);
    }
    size_t n = 0;
    moat_rc rc = moat_unseal(s->key, k, (const unsigned char *)rep->str, rep->len, buf, &n, err);
    OPENSSL_cleanse(rep->str, rep->len);
    freeReplyObject(rep);
    if (!moat_ok(rc)) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return MOAT_RC_OK;
}

/* SET or DEL (value NULL) of k, fenced by the locks held. */
static moat_rc fenced(struct rstore *s, const char *k, const unsigned char *value, size_t vlen,
                      struct moat_err *err)
{
    const char *argv[4 + 2 * MAX_HELD];
    size_t lens[4 + 2 * MAX_HELD];
    char nkeys[8];
    pthread_mutex_lock(&s->mu);
    int argc = 0;
    if (s->nheld == 0) {
        argv[argc] = value != NULL ? "SET" : "DEL";
        lens[argc++] = 3;
        argv[argc] = k;
        lens[argc++] = strlen(k);
        if (value != NULL) {
            argv[argc] = (const char *)value;
            lens[argc++] = vlen;
        }
    } else {
        argv[argc] = "EVAL";
        lens[argc++] = 4;
        argv[argc] = value != NULL ? put_script : del_script;
        lens[argc++] = strlen(argv[1]);
        snprintf(nkeys, sizeof(nkeys), "%zu", 1 + s->nheld);
        argv[argc] = nkeys;
        lens[argc++] = strlen(nkeys);
        argv[argc] = k;
        lens[argc++] = strlen(k);
        for (size_t i = 0; i < s->nheld; i++) {
            argv[argc] = s->held[i]->key;
            lens[argc++] = strlen(s->held[i]->key);
        }
        argv[argc] = value != NULL ? (const char *)value : "";
        lens[argc++] = value != NULL ? vlen : 0;
        for (size_t i = 0; i < s->nheld; i++) {
            argv[argc] = s->held[i]->token;
            lens[argc++] = strlen(s->held[i]->token);
        }
    }
    redisReply *rep = NULL;
    moat_rc rc = cmd_locked(s, argc, argv, lens, &rep, err);
    pthread_mutex_unlock(&s->mu);
    MOAT_TRY(rc);
    int refused = s->nheld > 0 && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
    freeReplyObject(rep);
    if (refused) {
        MOAT_FAIL(err, MOAT_E_AGAIN,
                  "this node lost its cluster lock (it stalled past the %d s lease and another "
                  "node took it): %s not written",
                  LOCK_LEASE_MS / 1000, k);
    }
    return MOAT_RC_OK;
}

static moat_rc r_put(struct moat_store *st, const char *key, const void *data, size_t len,
                     int secret, struct moat_err *err)
{
    (void)secret; /* every value is sealed */
    struct rstore *s = (struct rstore *)st;
    if (len > VALUE_MAX) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "%s: %zu bytes is more than the cluster's store takes", key,
                  len);
    }
    char k[MOAT_STORE_KEY_MAX + 128];
    rkey(s, "store:", key, k, sizeof(k));
    unsigned char *sealed = malloc(len + MOAT_SEAL_OVERHEAD);
    if (sealed == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory writing %s", key);
    }
    moat_rc rc = moat_seal(s->key, k, data, len, sealed, err);
    if (moat_ok(rc)) {
        rc = fenced(s, k, sealed, len + MOAT_SEAL_OVERHEAD, err);
    }
    free(sealed);
    return rc;
}

static moat_rc r_del(struct moat_store *st, const char *key, struct moat_err *err)
{
    struct rstore *s = (struct rstore *)st;
    char k[MOAT_STORE_KEY_MAX + 128];
    rkey(s, "store:", key, k, sizeof(k));
    return fenced(s, k, NULL, 0, err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A glob pattern matching exactly `lit` then anything: \ before *?[]\ . */
static void glob_prefix(const char *lit, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = lit; *p && o + 3 < cap; p++) {
        if (strchr("*?[]\\", *p) != NULL) {
            out[o++] = '\\';
        }
        out[o++] = *p;
    }
    out[o++] = '*';
    out[o] = '\0';
}

static moat_rc r_list(struct moat_store *st, const char *prefix, char ***out, size_t *n,
                      struct moat_err *err)
{
    struct rstore *s = (struct rstore *)st;
    char base[MOAT_STORE_KEY_MAX + 128], pat[2 * sizeof(base) + 2];
    rkey(s, "store:", prefix, base, sizeof(base));
    glob_prefix(base, pat, sizeof(pat));
    size_t bl = strlen(base);
    char **keys = NULL;
    size_t nk = 0, cap = 0;
    char cursor[32] = "0";
    moat_rc rc = MOAT_RC_OK;
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT", "500"};
        size_t lens[6] = {4, strlen(cursor), 5, strlen(pat), 5, 3};
        redisReply *rep = NULL;
        rc = cmd(s, 6, argv, lens, &rep, err);
        if (!moat_ok(rc)) {
            break;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__, "SCAN answered oddly");
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        const redisReply *arr = rep->element[1];
        for (size_t i = 0; moat_ok(rc) && i < arr->elements; i++) {
            const redisReply *e = arr->element[i];
            if (e->type != REDIS_REPLY_STRING || e->len <= bl) {
                continue;
            }
            const char *rest = e->str + bl;
            const char *slash = strchr(rest, '/');
            size_t take = slash != NULL ? (size_t)(slash - rest) + 1 : strlen(rest);
            int dup = 0;
            for (size_t j = 0; j < nk && !dup; j++) {
                dup = strlen(keys[j]) == take && memcmp(keys[j], rest, take) == 0;
            }
            if (dup) {
                continue;
            }
            if (nk == cap) {
                size_t nc = cap ? cap * 2 : 16;
                char **grown = realloc(keys, nc * sizeof(*keys));
                if (grown == NULL) {
                    rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                    break;
                }
                keys = grown;
                cap = nc;
            }
            keys[nk] = strndup(rest, take);
            if (keys[nk] == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                break;
            }
            nk++;
        }
        freeReplyObject(rep);
    } while (moat_ok(rc) && strcmp(cursor, "0") != 0);
    if (!moat_ok(rc)) {
        moat_store_list_free(keys, nk);
        return rc;
    }
    if (nk > 1) {
        qsort(keys, nk, sizeof(*keys), cmp_str);
    }
    *out = keys;
    *n = nk;
    return MOAT_RC_OK;
}

static moat_rc r_lock(struct moat_store *st, const char *name, unsigned ttl_s,
                      struct moat_store_lock **out, struct moat_err *err)
{
    struct rstore *s = (struct rstore *)st;
    struct rlock *l = calloc(1, sizeof(*l));
    unsigned char raw[16];
    if (l == NULL || RAND_bytes(raw, sizeof(raw)) <= 0) {
        free(l);
        MOAT_FAIL(err, MOAT_E_NOMEM, "cannot make a lock token");
    }
    for (int i = 0; i < 16; i++) {
        snprintf(l->token + 2 * i, 3, "%02x", raw[i]);
    }
    l->base.store = st;
    l->until = time(NULL) + (ttl_s > 0 ? (time_t)ttl_s : 1);
    rkey(s, "lock:", name, l->key, sizeof(l->key));
    unsigned long long ms = (unsigned long long)ttl_s * 1000;
    if (ms == 0 || ms > LOCK_LEASE_MS) {
        ms = LOCK_LEASE_MS;
    }
    char px[24];
    snprintf(px, sizeof(px), "%llu", ms);
    const char *argv[6] = {"SET", l->key, l->token, "NX", "PX", px};
    size_t lens[6] = {3, strlen(l->key), strlen(l->token), 2, 2, strlen(px)};
    pthread_mutex_lock(&s->mu);
    redisReply *rep = NULL;
    moat_rc rc = s->nheld < MAX_HELD
                     ? cmd_locked(s, 6, argv, lens, &rep, err)
                     : moat_err_set(err, MOAT_E_LIMIT, __FILE__, __LINE__, "too many locks held");
    if (moat_ok(rc) && rep->type == REDIS_REPLY_NIL) {
        rc = moat_err_set(err, MOAT_E_AGAIN, __FILE__, __LINE__, "another node holds the lock %s",
                          name);
    }
    if (moat_ok(rc)) {
        s->held[s->nheld++] = l;
    }
    pthread_mutex_unlock(&s->mu);
    freeReplyObject(rep);
    if (!moat_ok(rc)) {
        free(l);
        return rc;
    }
    *out = &l->base;
    return MOAT_RC_OK;
}

static void r_unlock(struct moat_store_lock *base)
{
    struct rlock *l = (struct rlock *)base;
    struct rstore *s = (struct rstore *)base->store;
    const char *argv[5] = {"EVAL", unlock_script, "1", l->key, l->token};
    size_t lens[5] = {4, strlen(unlock_script), 1, strlen(l->key), strlen(l->token)};
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nheld; i++) {
        if (s->held[i] == l) {
            s->held[i] = s->held[--s->nheld];
            break;
        }
    }
    redisReply *rep = NULL;
    struct moat_err e = {0};
    /* Best effort: a lock not given back lapses at the end of its lease. */
    (void)moat_ok(cmd_locked(s, 5, argv, lens, &rep, &e));
    pthread_mutex_unlock(&s->mu);
    freeReplyObject(rep);
    free(l);
}

/* Renew every held lock's lease while its token is still there. */
static void *keeper(void *arg)
{
    struct rstore *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        struct timespec due;
        clock_gettime(CLOCK_MONOTONIC, &due);
        due.tv_sec += RENEW_MS / 1000;
        while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &due) != ETIMEDOUT) {
        }
        char ms[16];
        snprintf(ms, sizeof(ms), "%d", LOCK_LEASE_MS);
        time_t now = time(NULL);
        for (size_t i = 0; !s->stop && i < s->nheld; i++) {
            struct rlock *l = s->held[i];
            if (now >= l->until) {
                continue; /* held past its ttl: its lease runs out, as the store's contract says */
            }
            const char *argv[6] = {"EVAL", renew_script, "1", l->key, l->token, ms};
            size_t lens[6] = {4,         strlen(renew_script), 1, strlen(l->key), strlen(l->token),
                              strlen(ms)};
            redisReply *rep = NULL;
            struct moat_err e = {0};
            if (moat_ok(cmd_locked(s, 6, argv, lens, &rep, &e)) &&
                rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
                l->lost = 1; /* the fenced writes will say so */
            }
            freeReplyObject(rep);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void r_free(struct moat_store *st)
{
    struct rstore *s = (struct rstore *)st;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->keeper, NULL);
    moat_redis_close(s->r);
    moat_redis_opts_clear(&s->o);
    OPENSSL_cleanse(s->key, sizeof(s->key));
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const struct moat_store_ops redis_ops = {
    .name = "redis",
    .get = r_get,
    .put = r_put,
    .del = r_del,
    .list = r_list,
    .lock = r_lock,
    .unlock = r_unlock,
    .free = r_free,
};

moat_rc moat_store_redis_new(const struct moat_redis_opts *o, const char *prefix,
                             const unsigned char key[MOAT_SEAL_KEY_BYTES], struct moat_store **out,
                             struct moat_err *err)
{
    *out = NULL;
    struct rstore *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cluster's store");
    }
    s->base.ops = &redis_ops;
    if (!moat_ok(moat_redis_opts_copy(o, &s->o, err))) {
        free(s);
        return moat_rc_of(MOAT_E_NOMEM);
    }
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    memcpy(s->key, key, sizeof(s->key));
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&s->keeper, NULL, keeper, s);
    if (e != 0) {
        moat_redis_opts_clear(&s->o);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return moat_err_sys(err, MOAT_E_NOMEM, e, __FILE__, __LINE__,
                            "cannot start the cluster store's lock keeper");
    }
    *out = &s->base;
    return MOAT_RC_OK;
}
