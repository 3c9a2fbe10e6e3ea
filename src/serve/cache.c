/*
 * cache.c: see cache.h. The store is one hash table of entries under one mutex, held for a
 * lookup, an insert or an eviction, never across I/O. An entry is immutable once linked: a
 * newer answer replaces it; readers hold a reference, so an entry evicted or replaced while a
 * hit still sends from its body file is closed when the last of them lets go.
 */
#include "serve/cache.h"

#include "core/cidr.h"
#include "core/etag.h"
#include "core/fdio.h"
#include "core/httpdate.h"
#include "core/log.h"
#include "core/siphash.h"
#include "http/coding.h"
#include "http/field.h"
#include "http/filter.h"
#include "http/method.h"
#include "http/range.h"
#include "serve/cachedisk.h"
#include "serve/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 4096
/* Bodies up to this size stay on the heap and go out as a generated body (a copy costs less
 * than a descriptor per entry); larger ones live in a memory file. */
#define SMALL_BODY 16384

struct entry {
    unsigned refs; /* under the store's mutex; the index holds one while linked */
    int linked;
    uint64_t hash;
    char *key;
    size_t klen;
    char *vary; /* the answer's Vary names, lower case, ","-separated; NULL: none */
    char *vkey; /* the storing request's values of them (see vary_key) */
    size_t vklen;
    int status;
    char *lines; /* the stored header lines */
    size_t llen;
    time_t request_time, response_time;
    int64_t age_field, lifetime;
    int heuristic;
    struct moat_cc rcc;
    char etag[128];
    size_t elen;
    time_t last_modified; /* 0: none */
    int bg;               /* a background revalidation of it is under way (under the mutex) */
    int fd;               /* a large body (memfd, or its file of the disk tier); -1: none */
    uint64_t body_off;    /* where in fd the body starts */
    char *bytes;          /* a small body; NULL for none */
    uint64_t size;
    uint64_t cost;
    int from_disk; /* read back from the disk tier: not written again */
    int dropped;   /* purged or invalidated: its disk file goes too (under the mutex) */
    struct entry *hnext, *lprev, *lnext;
    struct entry *wnext; /* the disk writer's queue */
    struct moat_cache *cache;
};

/* A file of the disk tier: what finds it (key and variant) and what it costs. */
struct dent {
    uint64_t hash;
    char *key;
    size_t klen;
    char *vary, *vkey;
    size_t vklen;
    char name[MOAT_CDISK_NAME];
    uint64_t bytes;
    struct dent *hnext, *lprev, *lnext;
};

/*
 * An origin request under way for a key, that concurrent misses for it wait on (request
 * collapsing) instead of asking the origin too; once it is over they look again. When its
 * answer could not be stored, it stays a while as a "pass" mark: misses for the key then go
 * to the origin side by side, since waiting would only put them in a line.
 */
struct fill {
    uint64_t hash;
    char *key;
    size_t klen;
    unsigned refs; /* the table's while linked, and each holder's */
    int linked, done;
    time_t pass_until;
    struct fill *next;
};

#define FILL_BUCKETS 256
#define PASS_S 10

struct moat_cache {
    pthread_mutex_t mu;
    struct fill *fills[FILL_BUCKETS];
    uint8_t seed[16];
    struct entry *buckets[NBUCKETS];
    struct entry *lru_head, *lru_tail; /* most recent first */
    uint64_t bytes, memory, max_object;
    size_t nfds, max_fds; /* entries holding a memory file, and how many may */
    struct moat_cache_stats st;
    /* The disk tier (NULL dir: none): the index of its files, least recently used last, and
     * the thread that writes them, so a worker never waits on the disk to store. */
    char *dir;
    uint64_t disk_max, disk_bytes;
    struct dent *dbuckets[NBUCKETS];
    struct dent *dlru_head, *dlru_tail;
    pthread_t writer;
    int writer_on, writer_stop;
    pthread_cond_t wcond;
    struct entry *wq_head, *wq_tail;
    struct entry *writing; /* the one the writer has in hand */
    size_t wq_len;
    time_t last_disk_warn;
    /* Told of every PURGE this node took (the cluster passes it on); set before serving. */
    void (*on_purge)(void *data, const char *key, size_t klen);
    void *on_purge_data;
};

#define WRITE_QUEUE_MAX 1024

/* A quarter of the descriptors the process may have (its hard limit: the server raises the
 * soft one to it) for bodies, so the cache never starves accept(). */
static size_t fd_budget(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY) {
        return 16384;
    }
    size_t n = (size_t)(rl.rlim_max / 4);
    return n < 64 ? 64 : n;
}

/* ---- the store ------------------------------------------------------------------------- */

moat_rc moat_cache_new(uint64_t memory, uint64_t max_object, struct moat_cache **out,
                       struct moat_err *err)
{
    struct moat_cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cache");
    }
    if (RAND_bytes(c->seed, sizeof(c->seed)) != 1) {
        free(c);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "no random bytes for the cache's hash key");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->memory = memory;
    c->max_object = max_object;
    c->max_fds = fd_budget();
    *out = c;
    return MOAT_RC_OK;
}

static void entry_destroy(struct entry *e)
{
    if (e->fd >= 0) {
        close(e->fd);
    }
    free(e->bytes);
    free(e->key);
    free(e->vary);
    free(e->vkey);
    free(e->lines);
    free(e);
}

/* Drop a reference; the mutex is held. */
static void entry_put_locked(struct entry *e)
{
    if (--e->refs == 0) {
        entry_destroy(e);
    }
}

static void entry_release(void *h)
{
    struct entry *e = h;
    struct moat_cache *c = e->cache;
    pthread_mutex_lock(&c->mu);
    entry_put_locked(e);
    pthread_mutex_unlock(&c->mu);
}

/* Take it out of the index and the LRU list; the mutex is held. */
static void unlink_locked(struct moat_cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[e->hash & (NBUCKETS - 1)];
    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp == e) {
        *pp = e->hnext;
    }
    if (e->lprev != NULL) {
        e->lprev->lnext = e->lnext;
    } else {
        c->lru_head = e->lnext;
    }
    if (e->lnext != NULL) {
        e->lnext->lprev = e->lprev;
    } else {
        c->lru_tail = e->lprev;
    }
    e->hnext = e->lprev = e->lnext = NULL;
    e->linked = 0;
    c->bytes -= e->cost;
    c->nfds -= e->fd >= 0;
    c->st.entries--;
    entry_put_locked(e);
}

static void disk_close(struct moat_cache *c);
static void disk_evict_locked(struct moat_cache *c);

void moat_cache_free(struct moat_cache *c)
{
    if (c == NULL) {
        return;
    }
    disk_close(c);
    pthread_mutex_lock(&c->mu);
    while (c->lru_head != NULL) {
        unlink_locked(c, c->lru_head);
    }
    for (size_t i = 0; i < FILL_BUCKETS; i++) {
        while (c->fills[i] != NULL) {
            struct fill *f = c->fills[i];
            c->fills[i] = f->next;
            free(f->key);
            free(f); /* only pass marks are left once every worker stopped */
        }
    }
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void evict_locked(struct moat_cache *c)
{
    while (c->bytes > c->memory && c->lru_tail != NULL) {
        c->st.evicted++;
        unlink_locked(c, c->lru_tail);
    }
    /* Over the descriptor budget: the least recently used large bodies go. */
    for (struct entry *e = c->lru_tail; c->nfds > c->max_fds && e != NULL;) {
        struct entry *prev = e->lprev;
        if (e->fd >= 0) {
            c->st.evicted++;
            unlink_locked(c, e);
        }
        e = prev;
    }
}

void moat_cache_configure(struct moat_cache *c, const struct moat_conf *conf)
{
    pthread_mutex_lock(&c->mu);
    c->memory = conf->cache_memory;
    c->max_object = conf->cache_max_object;
    c->max_fds = fd_budget();
    evict_locked(c);
    if (c->dir != NULL) {
        if (conf->cache_disk == NULL || strcmp(conf->cache_disk, c->dir) != 0) {
            moat_log(MOAT_LVL_WARN, 0,
                     "cache_disk's folder changed: that takes a restart (the disk tier stays in "
                     "%s; its new size applies)",
                     c->dir);
        }
        if (conf->cache_disk != NULL) {
            c->disk_max = conf->cache_disk_size;
            disk_evict_locked(c);
        }
    } else if (conf->cache_disk != NULL) {
        moat_log(MOAT_LVL_WARN, 0, "cache_disk was added: that takes a restart");
    }
    pthread_mutex_unlock(&c->mu);
}

void moat_cache_stats(struct moat_cache *c, struct moat_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->bytes = c->bytes;
    out->disk_bytes = c->disk_bytes;
    pthread_mutex_unlock(&c->mu);
}

static void touch_locked(struct moat_cache *c, struct entry *e)
{
    if (c->lru_head == e) {
        return;
    }
    e->lprev->lnext = e->lnext;
    if (e->lnext != NULL) {
        e->lnext->lprev = e->lprev;
    } else {
        c->lru_tail = e->lprev;
    }
    e->lprev = NULL;
    e->lnext = c->lru_head;
    c->lru_head->lprev = e;
    c->lru_head = e;
}

/* ---- keys ------------------------------------------------------------------------------ */

static int name_eq(moat_slice a, const char *b, size_t bl)
{
    return a.len == bl && strncasecmp(a.p, b, bl) == 0;
}

/* The value of cookie `name` in the request's Cookie fields; NULL slice when none. */
static moat_slice cookie_value(const struct moat_req *req, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->nfields; i++) {
        if (!moat_slice_eq_lit_nocase(req->fields[i].name, "cookie")) {
            continue;
        }
        const char *p = req->fields[i].value.p, *end = p + req->fields[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';')) {
                p++;
            }
            const char *q = p;
            while (q < end && *q != ';') {
                q++;
            }
            if ((size_t)(q - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
                return (moat_slice){.p = p + nl + 1, .len = (size_t)(q - p) - nl - 1};
            }
            p = q;
        }
    }
    return MOAT_SLICE_NULL;
}

/*
 * The primary key, as the site's cache_key says: ["https://"] [authority, lower case] path
 * ["?" query], then "\n" name "=" value for each header:NAME (its fields joined by ",") and
 * cookie:NAME. With `extras` 0 it ends after the query (what PURGE names). 0: too long.
 */
static size_t primary_key(const struct moat_conf_site *site, const struct moat_req *req, int extras,
                          char *out, size_t cap)
{
    unsigned parts = site != NULL ? site->cache_key : MOAT_CACHE_KEY_DEFAULT;
    size_t n = 0;
    const char *scheme = req->secure ? "https://" : "http://";
    size_t sl = (parts & MOAT_CACHE_KEY_SCHEME) ? strlen(scheme) : 0;
    size_t al = (parts & MOAT_CACHE_KEY_HOST) ? req->authority.len : 0;
    size_t ql = (parts & MOAT_CACHE_KEY_QUERY) ? req->query.len : 0;
    if (sl + al + req->path.len + ql + 2 > cap) {
        return 0;
    }
    memcpy(out, scheme, sl);
    n = sl;
    for (size_t i = 0; i < al; i++) {
        char ch = req->authority.p[i];
        out[n++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    memcpy(out + n, req->path.p, req->path.len);
    n += req->path.len;
    if (ql > 0) {
        out[n++] = '?';
        memcpy(out + n, req->query.p, ql);
        n += ql;
    }
    for (size_t x = 0; extras && site != NULL && x < site->ncache_key_extra; x++) {
        const char *name = site->cache_key_extra[x] + 2;
        size_t nl = strlen(name);
        if (n + nl + 2 > cap) {
            return 0;
        }
        out[n++] = '\n';
        memcpy(out + n, name, nl);
        n += nl;
        out[n++] = '=';
        if (site->cache_key_extra[x][0] == 'c') {
            moat_slice v = cookie_value(req, name);
            if (n + v.len > cap) {
                return 0;
            }
            if (v.len > 0) {
                memcpy(out + n, v.p, v.len);
                n += v.len;
            }
            continue;
        }
        int first = 1;
        for (size_t i = 0; i < req->nfields; i++) {
            if (!name_eq(req->fields[i].name, name, nl)) {
                continue;
            }
            moat_slice v = req->fields[i].value;
            if (n + v.len + 1 > cap) {
                return 0;
            }
            if (!first) {
                out[n++] = ',';
            }
            memcpy(out + n, v.p, v.len);
            n += v.len;
            first = 0;
        }
    }
    return n;
}

/* A request's fields, kept past the dispatch (a miss needs them when the answer comes). */
struct kept_fields {
    struct moat_field *f;
    size_t n;
    char *bytes;
};

static int keep_fields(const struct moat_req *req, struct kept_fields *k)
{
    size_t total = 0;
    for (size_t i = 0; i < req->nfields; i++) {
        total += req->fields[i].name.len + req->fields[i].value.len;
    }
    k->f = calloc(req->nfields ? req->nfields : 1, sizeof(*k->f));
    k->bytes = malloc(total ? total : 1);
    if (k->f == NULL || k->bytes == NULL) {
        free(k->f);
        free(k->bytes);
        return 0;
    }
    size_t at = 0;
    for (size_t i = 0; i < req->nfields; i++) {
        const struct moat_field *s = &req->fields[i];
        memcpy(k->bytes + at, s->name.p, s->name.len);
        k->f[i].name = (moat_slice){.p = k->bytes + at, .len = s->name.len};
        at += s->name.len;
        memcpy(k->bytes + at, s->value.p, s->value.len);
        k->f[i].value = (moat_slice){.p = k->bytes + at, .len = s->value.len};
        at += s->value.len;
    }
    k->n = req->nfields;
    return 1;
}

/*
 * The values a request has for the Vary names ("accept-language,accept-encoding"), as
 * "name=value\n" each (several fields of a name joined by ","; absent: empty), into out.
 * Accept-Encoding is keyed by the codings it accepts (moat_coding_accepted), not its
 * spelling: clients spell it a hundred ways and get one of a few answers.
 */
static size_t vary_key(const char *vary, const struct moat_field *f, size_t n, char *out,
                       size_t cap)
{
    size_t at = 0;
    const char *p = vary;
    while (p != NULL && *p) {
        const char *comma = strchr(p, ',');
        size_t nl = comma ? (size_t)(comma - p) : strlen(p);
        if (at + nl + 2 > cap) {
            return 0;
        }
        memcpy(out + at, p, nl);
        at += nl;
        out[at++] = '=';
        if (nl == 15 && memcmp(p, "accept-encoding", 15) == 0) {
            if (at + 4 >= cap) {
                return 0;
            }
            at += (size_t)snprintf(out + at, cap - at, "%x", moat_coding_accepted(f, n));
        } else {
            int first = 1;
            for (size_t i = 0; i < n; i++) {
                if (!name_eq(f[i].name, p, nl)) {
                    continue;
                }
                if (at + f[i].value.len + 2 >= cap) {
                    return 0;
                }
                if (!first) {
                    out[at++] = ',';
                }
                memcpy(out + at, f[i].value.p, f[i].value.len);
                at += f[i].value.len;
                first = 0;
            }
        }
        out[at++] = '\n';
        p = comma ? comma + 1 : NULL;
    }
    return at;
}

/* The Vary names of stored lines, lower case, without spaces: NULL when none. */
static char *vary_names(const struct moat_buf *lines)
{
    char buf[1024];
    size_t at = 0;
    size_t pos = 0;
    moat_slice line, name;
    while (moat_field_lines_next(lines, &pos, &line, &name)) {
        if (!name_eq(name, "vary", 4)) {
            continue;
        }
        for (size_t i = name.len + 1; i < line.len && at + 2 < sizeof(buf); i++) {
            char ch = line.p[i];
            if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
                continue;
            }
            if (ch == ',' && (at == 0 || buf[at - 1] == ',')) {
                continue;
            }
            if (ch != ',' && at > 0 && buf[at - 1] != ',' && i == name.len + 1) {
                buf[at++] = ',';
            }
            buf[at++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        if (at > 0 && buf[at - 1] != ',') {
            buf[at++] = ',';
        }
    }
    while (at > 0 && buf[at - 1] == ',') {
        at--;
    }
    if (at == 0) {
        return NULL;
    }
    buf[at] = '\0';
    return strdup(buf);
}

/*
 * The stored answer for the request, with a reference; NULL when none. *other_variant: the
 * URI has answers stored, none for this request's Vary'd fields.
 */
static struct entry *find(struct moat_cache *c, const char *key, size_t klen,
                          const struct moat_field *f, size_t n, int *other_variant)
{
    uint64_t h = moat_siphash24(c->seed, key, klen);
    *other_variant = 0;
    struct entry *best = NULL;
    char vk[4096];
    pthread_mutex_lock(&c->mu);
    for (struct entry *e = c->buckets[h & (NBUCKETS - 1)]; e != NULL; e = e->hnext) {
        if (e->hash != h || e->klen != klen || memcmp(e->key, key, klen) != 0) {
            continue;
        }
        size_t vl = e->vary != NULL ? vary_key(e->vary, f, n, vk, sizeof(vk)) : 0;
        if (e->vary != NULL && (vl == 0 || vl != e->vklen || memcmp(vk, e->vkey, vl) != 0)) {
            *other_variant = 1;
            continue;
        }
        if (best == NULL || e->response_time > best->response_time) {
            best = e;
        }
    }
    if (best != NULL) {
        best->refs++;
        touch_locked(c, best);
        *other_variant = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return best;
}

static void count(struct moat_cache *c, unsigned long long *what)
{
    pthread_mutex_lock(&c->mu);
    (*what)++;
    pthread_mutex_unlock(&c->mu);
}

/* Whether stored key `ek` falls under a PURGE or an invalidation of `key` (or of every key it
 * starts, with `prefix`). A key's header:NAME and cookie:NAME parts follow a "\n": the URI
 * names them all. */
static int key_covers(const char *ek, size_t eklen, const char *key, size_t klen, int prefix)
{
    return eklen >= klen && memcmp(ek, key, klen) == 0 &&
           (prefix || eklen == klen || ek[klen] == '\n');
}

/* ---- the disk tier ---------------------------------------------------------------------- */

static void dent_free(struct dent *d)
{
    free(d->key);
    free(d->vary);
    free(d->vkey);
    free(d);
}

static void dent_unlink_locked(struct moat_cache *c, struct dent *d)
{
    struct dent **pp = &c->dbuckets[d->hash & (NBUCKETS - 1)];
    while (*pp != NULL && *pp != d) {
        pp = &(*pp)->hnext;
    }
    if (*pp == d) {
        *pp = d->hnext;
    }
    if (d->lprev != NULL) {
        d->lprev->lnext = d->lnext;
    } else {
        c->dlru_head = d->lnext;
    }
    if (d->lnext != NULL) {
        d->lnext->lprev = d->lprev;
    } else {
        c->dlru_tail = d->lprev;
    }
    c->disk_bytes -= d->bytes;
    c->st.disk_entries--;
}

static void dent_front_locked(struct moat_cache *c, struct dent *d)
{
    d->lprev = NULL;
    d->lnext = c->dlru_head;
    if (c->dlru_head != NULL) {
        c->dlru_head->lprev = d;
    }
    c->dlru_head = d;
    if (c->dlru_tail == NULL) {
        c->dlru_tail = d;
    }
}

static void remove_file(const struct moat_cache *c, const char *name)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", c->dir, name);
    if (n > 0 && (size_t)n < sizeof(path)) {
        unlink(path);
    }
}

/* Drop a file from the index and the folder (an unlink is quick: no data is written). */
static void dent_remove_locked(struct moat_cache *c, struct dent *d)
{
    dent_unlink_locked(c, d);
    remove_file(c, d->name);
    dent_free(d);
}

static void disk_evict_locked(struct moat_cache *c)
{
    while (c->disk_bytes > c->disk_max && c->dlru_tail != NULL) {
        c->st.disk_evicted++;
        dent_remove_locked(c, c->dlru_tail);
    }
}

/* Index a file (replacing the one of the same name). */
static void dent_put_locked(struct moat_cache *c, struct dent *d)
{
    struct dent *next;
    for (struct dent *o = c->dbuckets[d->hash & (NBUCKETS - 1)]; o != NULL; o = next) {
        next = o->hnext;
        if (strcmp(o->name, d->name) == 0) {
            dent_unlink_locked(c, o);
            dent_free(o);
        }
    }
    d->hnext = c->dbuckets[d->hash & (NBUCKETS - 1)];
    c->dbuckets[d->hash & (NBUCKETS - 1)] = d;
    dent_front_locked(c, d);
    c->disk_bytes += d->bytes;
    c->st.disk_entries++;
    disk_evict_locked(c);
}

static struct dent *dent_new(struct moat_cache *c, const char *key, size_t klen, const char *vary,
                             const char *vkey, size_t vklen, const char *name, uint64_t bytes)
{
    struct dent *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    d->key = malloc(klen ? klen : 1);
    d->vary = vary != NULL ? strdup(vary) : NULL;
    d->vkey = vklen > 0 ? malloc(vklen) : NULL;
    if (d->key == NULL || (vary != NULL && d->vary == NULL) || (vklen > 0 && d->vkey == NULL)) {
        dent_free(d);
        return NULL;
    }
    memcpy(d->key, key, klen);
    d->klen = klen;
    if (vklen > 0) {
        memcpy(d->vkey, vkey, vklen);
    }
    d->vklen = vklen;
    d->hash = moat_siphash24(c->seed, key, klen);
    memcpy(d->name, name, MOAT_CDISK_NAME);
    d->bytes = bytes;
    return d;
}

/* Files for the key (all variants), or for keys it is a prefix of; the mutex is held. */
static unsigned long long disk_drop_locked(struct moat_cache *c, const char *key, size_t klen,
                                           int prefix)
{
    unsigned long long n = 0;
    struct dent *next;
    for (struct dent *d = c->dlru_head; d != NULL; d = next) {
        next = d->lnext;
        if (key_covers(d->key, d->klen, key, klen, prefix)) {
            dent_remove_locked(c, d);
            n++;
        }
    }
    return n;
}

static void disk_warn(struct moat_cache *c, const struct moat_err *err)
{
    time_t now = time(NULL);
    pthread_mutex_lock(&c->mu);
    int say = now != c->last_disk_warn;
    c->last_disk_warn = now;
    pthread_mutex_unlock(&c->mu);
    if (say) { /* at most a line a second: a full disk must not flood the log */
        moat_log(MOAT_LVL_WARN, 0, "%s (the answer stays in memory only)", err->msg);
    }
}

static void *writer_main(void *arg)
{
    struct moat_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->wq_head == NULL && !c->writer_stop) {
            pthread_cond_wait(&c->wcond, &c->mu);
        }
        struct entry *e = c->wq_head;
        if (e == NULL) {
            break; /* stopping, and everything queued is written */
        }
        c->wq_head = e->wnext;
        if (c->wq_head == NULL) {
            c->wq_tail = NULL;
        }
        c->wq_len--;
        c->writing = e;
        int dropped = e->dropped;
        pthread_mutex_unlock(&c->mu);
        char name[MOAT_CDISK_NAME];
        moat_cdisk_name(e->key, e->klen, e->vkey, e->vklen, name);
        struct moat_cdisk_rec r = {.status = e->status,
                                   .heuristic = e->heuristic,
                                   .request_time = e->request_time,
                                   .response_time = e->response_time,
                                   .age_field = e->age_field,
                                   .lifetime = e->lifetime,
                                   .key = e->key,
                                   .klen = e->klen,
                                   .vary = e->vary,
                                   .vkey = e->vkey,
                                   .vklen = e->vklen,
                                   .lines = e->lines,
                                   .llen = e->llen,
                                   .size = e->size,
                                   .body = e->fd < 0 ? (e->bytes != NULL ? e->bytes : "") : NULL,
                                   .body_fd = e->fd,
                                   .body_off = e->body_off};
        struct moat_err err = {0};
        uint64_t bytes = 0;
        moat_rc rc = dropped || e->size + e->llen > c->disk_max
                         ? moat_rc_of(MOAT_E_LIMIT)
                         : moat_cdisk_write(c->dir, name, &r, &bytes, &err);
        if (!moat_ok(rc) && !dropped && err.msg[0] != '\0') {
            disk_warn(c, &err);
        }
        struct dent *d = moat_ok(rc)
                             ? dent_new(c, e->key, e->klen, e->vary, e->vkey, e->vklen, name, bytes)
                             : NULL;
        pthread_mutex_lock(&c->mu);
        c->writing = NULL;
        if (moat_ok(rc) && (e->dropped || d == NULL)) {
            remove_file(c, name); /* purged while it was written (or no memory to index it) */
            if (d != NULL) {
                dent_free(d);
            }
        } else if (d != NULL) {
            dent_put_locked(c, d);
            c->st.disk_written++;
        }
        entry_put_locked(e);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void disk_close(struct moat_cache *c)
{
    if (c->writer_on) {
        pthread_mutex_lock(&c->mu);
        c->writer_stop = 1;
        pthread_cond_signal(&c->wcond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->writer, NULL);
        c->writer_on = 0;
        pthread_cond_destroy(&c->wcond);
    }
    pthread_mutex_lock(&c->mu);
    while (c->dlru_head != NULL) {
        struct dent *d = c->dlru_head;
        dent_unlink_locked(c, d);
        dent_free(d);
    }
    pthread_mutex_unlock(&c->mu);
    free(c->dir);
    c->dir = NULL;
}

static int hex_name(const char *n)
{
    size_t i = 0;
    for (; n[i]; i++) {
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f'))) {
            return 0;
        }
    }
    return i == MOAT_CDISK_NAME - 1;
}

static int mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char ch = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            buf[i] = ch;
        }
    }
    return 0;
}

moat_rc moat_cache_disk_open(struct moat_cache *c, const char *dir, uint64_t max,
                             struct moat_err *err)
{
    if (mkdirs(dir) != 0) {
        MOAT_FAIL(err, MOAT_E_IO, "cache_disk: cannot make the folder %s: %s", dir,
                  strerror(errno));
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        MOAT_FAIL(err, MOAT_E_IO, "cache_disk: cannot read the folder %s: %s", dir,
                  strerror(errno));
    }
    c->dir = strdup(dir);
    if (c->dir == NULL) {
        closedir(d);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory for the cache folder");
    }
    c->disk_max = max;
    unsigned long long kept = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, ".tmp-", 5) == 0) {
            remove_file(c, de->d_name); /* a write a stop or a crash cut short */
            continue;
        }
        if (!hex_name(de->d_name)) {
            continue;
        }
        struct moat_cdisk_loaded L;
        struct moat_err e2 = {0};
        moat_rc rc = moat_cdisk_load(c->dir, de->d_name, 0, &L, &e2);
        if (!moat_ok(rc)) {
            if (rc.kind == MOAT_E_PEER) {
                moat_log(MOAT_LVL_WARN, 0, "%s: removed", e2.msg);
                remove_file(c, de->d_name);
                bad++;
            }
            continue;
        }
        char name[MOAT_CDISK_NAME];
        moat_cdisk_name(L.r.key, L.r.klen, L.r.vkey, L.r.vklen, name);
        struct dent *x =
            strcmp(name, de->d_name) == 0
                ? dent_new(c, L.r.key, L.r.klen, L.r.vary, L.r.vkey, L.r.vklen, name, L.file_size)
                : NULL;
        free(L.blob);
        free(L.vary_own);
        if (x == NULL) {
            remove_file(c, de->d_name); /* not under its own name: not ours to trust */
            continue;
        }
        pthread_mutex_lock(&c->mu);
        dent_put_locked(c, x);
        pthread_mutex_unlock(&c->mu);
        kept++;
    }
    closedir(d);
    pthread_cond_init(&c->wcond, NULL);
    if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
        pthread_cond_destroy(&c->wcond);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "cache_disk: cannot start the writer thread");
    }
    c->writer_on = 1;
    moat_log(MOAT_LVL_INFO, 0, "cache: %llu answer(s), %llu bytes, on disk in %s (at most %llu)%s",
             kept, (unsigned long long)c->disk_bytes, dir, (unsigned long long)max,
             bad ? "; damaged files were removed" : "");
    return MOAT_RC_OK;
}

/* Link a complete entry, replacing the one for the same key and variant; `keep`: the caller
 * keeps a reference of its own. */
static void insert(struct moat_cache *c, struct entry *e, int keep)
{
    pthread_mutex_lock(&c->mu);
    struct entry *next;
    for (struct entry *o = c->buckets[e->hash & (NBUCKETS - 1)]; o != NULL; o = next) {
        next = o->hnext;
        if (o->hash == e->hash && o->klen == e->klen && memcmp(o->key, e->key, e->klen) == 0 &&
            o->vklen == e->vklen && (e->vklen == 0 || memcmp(o->vkey, e->vkey, e->vklen) == 0)) {
            unlink_locked(c, o);
        }
    }
    e->refs = keep ? 2 : 1;
    e->linked = 1;
    e->hnext = c->buckets[e->hash & (NBUCKETS - 1)];
    c->buckets[e->hash & (NBUCKETS - 1)] = e;
    e->lnext = c->lru_head;
    if (c->lru_head != NULL) {
        c->lru_head->lprev = e;
    }
    c->lru_head = e;
    if (c->lru_tail == NULL) {
        c->lru_tail = e;
    }
    c->bytes += e->cost;
    c->nfds += e->fd >= 0;
    c->st.entries++;
    c->st.stored++;
    if (c->writer_on && !e->from_disk) {
        if (c->wq_len < WRITE_QUEUE_MAX) {
            e->refs++;
            e->wnext = NULL;
            if (c->wq_tail != NULL) {
                c->wq_tail->wnext = e;
            } else {
                c->wq_head = e;
            }
            c->wq_tail = e;
            c->wq_len++;
            pthread_cond_signal(&c->wcond);
        } else {
            c->st.disk_skipped++; /* the disk cannot keep up: memory keeps it */
        }
    }
    evict_locked(c);
    pthread_mutex_unlock(&c->mu);
}

/* Every answer stored for the key (all variants), or for every key it is a prefix of. */
static unsigned long long drop_keys(struct moat_cache *c, const char *key, size_t klen, int prefix)
{
    unsigned long long n = 0;
    pthread_mutex_lock(&c->mu);
    struct entry *next;
    for (struct entry *e = c->lru_head; e != NULL; e = next) {
        next = e->lnext;
        if (key_covers(e->key, e->klen, key, klen, prefix)) {
            e->dropped = 1;
            unlink_locked(c, e);
            n++;
        }
    }
    /* One waiting to be written, or being written (evicted from memory since), must not come
     * back either. */
    if (c->writing != NULL && key_covers(c->writing->key, c->writing->klen, key, klen, prefix)) {
        c->writing->dropped = 1;
    }
    for (struct entry *e = c->wq_head; e != NULL; e = e->wnext) {
        if (key_covers(e->key, e->klen, key, klen, prefix)) {
            e->dropped = 1;
        }
    }
    unsigned long long on_disk = disk_drop_locked(c, key, klen, prefix);
    pthread_mutex_unlock(&c->mu);
    return n > on_disk ? n : on_disk;
}

/* ---- request collapsing ----------------------------------------------------------------- */

enum fill_role { FILL_ALONE, FILL_LEAD, FILL_WAIT };

static void fill_unlink_locked(struct moat_cache *c, struct fill *f)
{
    struct fill **pp = &c->fills[f->hash & (FILL_BUCKETS - 1)];
    while (*pp != NULL && *pp != f) {
        pp = &(*pp)->next;
    }
    if (*pp == f) {
        *pp = f->next;
    }
    f->linked = 0;
    if (--f->refs == 0) {
        free(f->key);
        free(f);
    }
}

static void fill_put(struct moat_cache *c, struct fill *f)
{
    pthread_mutex_lock(&c->mu);
    if (--f->refs == 0) {
        free(f->key);
        free(f);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Whether a miss for the key leads (asks the origin, the others wait on *out), waits on the
 * request under way (*out), or goes alone (a pass mark, or no memory). */
static enum fill_role fill_join(struct moat_cache *c, const char *key, size_t klen,
                                struct fill **out)
{
    uint64_t h = moat_siphash24(c->seed, key, klen);
    time_t now = time(NULL);
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    struct fill *next;
    for (struct fill *f = c->fills[h & (FILL_BUCKETS - 1)]; f != NULL; f = next) {
        next = f->next;
        if (f->done && f->pass_until <= now) {
            fill_unlink_locked(c, f); /* an old pass mark */
            continue;
        }
        if (f->hash != h || f->klen != klen || memcmp(f->key, key, klen) != 0) {
            continue;
        }
        enum fill_role r = f->done ? FILL_ALONE : FILL_WAIT;
        if (r == FILL_WAIT) {
            f->refs++;
            *out = f;
        }
        pthread_mutex_unlock(&c->mu);
        return r;
    }
    struct fill *f = calloc(1, sizeof(*f));
    char *k = malloc(klen ? klen : 1);
    if (f == NULL || k == NULL) {
        pthread_mutex_unlock(&c->mu);
        free(f);
        free(k);
        return FILL_ALONE;
    }
    memcpy(k, key, klen);
    *f = (struct fill){.hash = h, .key = k, .klen = klen, .refs = 2, .linked = 1};
    f->next = c->fills[h & (FILL_BUCKETS - 1)];
    c->fills[h & (FILL_BUCKETS - 1)] = f;
    pthread_mutex_unlock(&c->mu);
    *out = f;
    return FILL_LEAD;
}

/* The leader's answer is over: stored (or failed: the waiters look, and go on their own), or
 * not storable (`pass`: a pass mark stays for PASS_S seconds). */
static void fill_end(struct moat_cache *c, struct fill *f, int pass)
{
    pthread_mutex_lock(&c->mu);
    f->done = 1;
    if (pass) {
        f->pass_until = time(NULL) + PASS_S;
    } else if (f->linked) {
        fill_unlink_locked(c, f);
    }
    if (--f->refs == 0) {
        free(f->key);
        free(f);
    }
    pthread_mutex_unlock(&c->mu);
}

static int fill_done(struct moat_cache *c, struct fill *f)
{
    pthread_mutex_lock(&c->mu);
    int d = f->done;
    pthread_mutex_unlock(&c->mu);
    return d;
}

/* ---- answers from the store ------------------------------------------------------------ */

int moat_cache_covers(const struct moat_conf_site *site, const struct moat_req *req)
{
    if (site->cache <= 0) {
        return 0;
    }
    if (site->ncache_prefixes == 0) {
        return 1;
    }
    if (req->npath.p == NULL) {
        return 0;
    }
    for (size_t i = 0; i < site->ncache_prefixes; i++) {
        const char *p = site->cache_prefixes[i];
        size_t pl = strlen(p);
        if (req->npath.len >= pl && memcmp(req->npath.p, p, pl) == 0 &&
            (pl == 1 || req->npath.len == pl || req->npath.p[pl] == '/')) {
            return 1;
        }
    }
    return 0;
}

static int64_t current_age(const struct entry *e, time_t now)
{
    return moat_cache_age(now, e->request_time, e->response_time, e->response_time, e->age_field);
}

/* The fields a 304 carries of the stored answer (RFC 9110 §15.4.5). */
static int for_304(moat_slice name)
{
    return name_eq(name, "cache-control", 13) || name_eq(name, "content-location", 16) ||
           name_eq(name, "etag", 4) || name_eq(name, "expires", 7) || name_eq(name, "vary", 4) ||
           name_eq(name, "last-modified", 13);
}

static moat_rc stored_lines(const struct entry *e, struct moat_buf *lines, int only_304)
{
    struct moat_buf view = {.base = e->lines, .cap = e->llen, .rd = 0, .wr = e->llen};
    size_t at = 0;
    moat_slice line, name;
    while (moat_field_lines_next(&view, &at, &line, &name)) {
        if (!only_304 || for_304(name)) {
            MOAT_TRY(moat_buf_append(lines, line.p, line.len));
        }
    }
    return MOAT_RC_OK;
}

static moat_slice field_of(const struct moat_field *f, size_t n, const char *lc)
{
    const struct moat_field *x = moat_field_find(f, n, lc);
    return x != NULL ? x->value : MOAT_SLICE_NULL;
}

/* RFC 9110 §13.1.2 and §13.1.3: whether a request's If-None-Match (or, without it,
 * If-Modified-Since) is answered with a 304 by validators `etag` and `lm` (0: none). */
static int validators_match(const struct moat_field *f, size_t n, const char *etag, size_t elen,
                            time_t lm)
{
    moat_slice inm = field_of(f, n, "if-none-match");
    if (inm.p != NULL) {
        return elen > 0 && moat_etag_list_match(inm, etag, elen, 1);
    }
    moat_slice ims = field_of(f, n, "if-modified-since");
    time_t t;
    return ims.p != NULL && lm > 0 && moat_ok(moat_httpdate_parse(ims.p, ims.len, &t)) && lm <= t;
}

/*
 * How a stored answer answers a request (its fields f[0, n), method, the clock): a 304 when
 * the request's conditionals match, a 206 or 416 for a Range of a whole 200 (one that the
 * cache did not see encoded: a range of compressed bytes is a trap for clients), else the
 * stored answer. Appends the fields and Age; *status, and the body region [*off, *off + *len).
 */
static moat_rc stored_answer(const struct entry *e, const struct moat_field *f, size_t n,
                             int method, time_t now, struct moat_buf *lines, int *status,
                             uint64_t *off, uint64_t *len)
{
    int64_t age = current_age(e, now);
    *off = 0;
    *len = e->size;
    *status = e->status;
    if (e->status == 200 && validators_match(f, n, e->etag, e->elen, e->last_modified)) {
        *status = 304;
        *len = 0;
        MOAT_TRY(stored_lines(e, lines, 1));
        return moat_buf_printf(lines, "Age: %lld\r\n", (long long)age);
    }
    moat_slice range = field_of(f, n, "range");
    struct moat_buf view = {.base = e->lines, .cap = e->llen, .rd = 0, .wr = e->llen};
    uint64_t first = 0, last = 0;
    enum moat_range rr = MOAT_RANGE_IGNORE;
    if (method == MOAT_HTTP_M_GET && e->status == 200 && range.p != NULL &&
        moat_lines_field(&view, "content-encoding").p == NULL &&
        moat_if_range_holds(field_of(f, n, "if-range"), e->etag, e->elen, e->last_modified,
                            e->last_modified > 0, now)) {
        rr = moat_range_parse(range, e->size, &first, &last);
    }
    if (rr == MOAT_RANGE_UNSATISFIABLE) {
        *status = 416;
        *len = 0;
        return moat_buf_printf(lines, "Content-Range: bytes */%llu\r\nAge: %lld\r\n",
                               (unsigned long long)e->size, (long long)age);
    }
    MOAT_TRY(stored_lines(e, lines, 0));
    if (rr == MOAT_RANGE_PARTIAL) {
        *status = 206;
        *off = first;
        *len = last - first + 1;
        MOAT_TRY(moat_buf_printf(lines, "Content-Range: bytes %llu-%llu/%llu\r\n",
                                 (unsigned long long)first, (unsigned long long)last,
                                 (unsigned long long)e->size));
    }
    return moat_buf_printf(lines, "Age: %lld\r\n", (long long)age);
}

/* A stored answer as a handler's answer in res (the reference passes to res, or is let go);
 * `cs` the Cache-Status value. */
static moat_rc answer_from(struct entry *e, const struct moat_req *req, const char *cs,
                           struct moat_res *res, struct moat_buf *lines, struct moat_buf *body)
{
    int status;
    uint64_t off, len;
    moat_rc rc = stored_answer(e, req->fields, req->nfields, req->method_id, time(NULL), lines,
                               &status, &off, &len);
    if (moat_ok(rc)) {
        rc = moat_buf_printf(lines, "Cache-Status: %s\r\n", cs);
    }
    if (!moat_ok(rc)) {
        entry_release(e);
        return rc;
    }
    *res = (struct moat_res){
        .status = status, .fd = -1, .offset = off, .length = len, .flags = MOAT_RES_RELAYED};
    if (req->method_id == MOAT_HTTP_M_HEAD || len == 0 || e->fd < 0) {
        if (req->method_id != MOAT_HTTP_M_HEAD && len > 0 && e->bytes != NULL) {
            rc = moat_buf_append(body, e->bytes + off, (size_t)len);
            res->has_generated_body = 1;
            res->offset = 0;
        }
        entry_release(e);
        return rc;
    }
    res->fd = e->fd;
    res->offset = e->body_off + off;
    res->fd_release = entry_release;
    res->fd_h = e;
    return MOAT_RC_OK;
}

unsigned long long moat_cache_purge(struct moat_cache *c, const char *key, size_t klen)
{
    int prefix = klen > 0 && key[klen - 1] == '*';
    unsigned long long gone = drop_keys(c, key, prefix ? klen - 1 : klen, prefix);
    pthread_mutex_lock(&c->mu);
    c->st.purged += gone;
    pthread_mutex_unlock(&c->mu);
    return gone;
}

void moat_cache_on_purge(struct moat_cache *c, void (*fn)(void *data, const char *key, size_t klen),
                         void *data)
{
    c->on_purge = fn;
    c->on_purge_data = data;
}

/* PURGE URI (or a prefix ending in "*") from an address in cache_purge. */
static moat_rc purge(const struct moat_cache_ctx *cx, const struct moat_req *req, const char *key,
                     size_t klen, struct moat_res *res, struct moat_buf *lines,
                     struct moat_buf *body)
{
    struct moat_cidr set[64];
    size_t n = 0;
    for (size_t i = 0; i < cx->site->ncache_purge && n < 64; i++) {
        if (moat_cidr_parse(cx->site->cache_purge[i], &set[n]) == NULL) {
            n++;
        }
    }
    if (!moat_cidr_match_text(set, n, cx->client)) {
        moat_log(MOAT_LVL_INFO, req->conn_id, "cache: PURGE refused: %s is not in cache_purge",
                 cx->client);
        return moat_res_error_page(res, 403, lines, body);
    }
    unsigned long long gone = moat_cache_purge(cx->cache, key, klen);
    if (cx->cache->on_purge != NULL) {
        cx->cache->on_purge(cx->cache->on_purge_data, key, klen);
    }
    moat_log(MOAT_LVL_INFO, req->conn_id, "cache: purged %llu answer(s) for %.*s (peer %s)", gone,
             (int)(klen > 300 ? 300 : klen), key, cx->client);
    size_t before = moat_buf_len(body);
    MOAT_TRY(moat_buf_printf(body, "{\"purged\": %llu}\n", gone));
    MOAT_TRY(moat_buf_printf(lines, "Content-Type: application/json\r\n"));
    res->status = 200;
    res->fd = -1;
    res->has_generated_body = 1;
    res->length = moat_buf_len(body) - before;
    return MOAT_RC_OK;
}

/* ---- the tee: storing a relayed answer ------------------------------------------------- */

/*
 * What the tee does with the origin's answer:
 *   RELAY  pass it on (storing it when it may be stored);
 *   DROP   the client has its answer head already (a 304 moat worked out from the answer's
 *          validators): store the body, send none of it;
 *   HOLD   the client gets a stored answer instead (`serve`: the 304 of a revalidation
 *          refreshed it, or the origin failed and stale-if-error allows it), once the origin's
 *          answer is over;
 *   PUMP   the tee sends `serve` itself, in pieces as the client takes them.
 */
enum tee_mode { TEE_RELAY, TEE_DROP, TEE_HOLD, TEE_PUMP };

#define PUMP_PIECE 65536

struct moat_cache_tee {
    struct moat_exch_filter base; /* first: base.ex is what the handler holds */
    struct moat_cache *cache;
    char *key;
    size_t klen;
    struct kept_fields req;
    const char *fwd; /* Cache-Status fwd= */
    int method;      /* enum moat_http_method */
    time_t request_time;
    struct moat_cache_heuristic heur;
    uint64_t max_object;
    unsigned long long conn_id;
    struct entry *e; /* being filled; NULL: not storing */
    int64_t length;
    struct moat_buf lines; /* the head for the client */
    enum tee_mode mode;
    int started; /* inner has the answer's head */
    /* A stored answer the origin's is to refresh or replace, and may stand in for when the
     * origin fails (stale_if_error: 1 when its directives allow that). */
    struct entry *stale;
    int stale_if_error;
    int conditional; /* the origin's request carries stale's validators */
    int stripped;    /* the client's conditionals were kept from the origin: answered here */
    struct entry *serve;
    char cs[192]; /* the Cache-Status that goes with serve */
    uint64_t off, end;
    char *piece; /* PUMP: a piece of a body file */
    /* The request to the origin when it differs from the client's (conditionals). */
    struct moat_field *ofields;
    size_t nofields;
    char cond[MOAT_HTTPDATE_SIZE + 160];
    size_t lines0, body0; /* where the handler's answer began (stale-if-error replaces it) */
    /* A background revalidation (stale-while-revalidate): no client waits for it. */
    struct moat_cache_bgs *bgs;
    struct moat_cache_tee *bg_prev, *bg_next;
    struct moat_snapshot *snap; /* held while it runs: the origin's route lives there */
    /* Request collapsing: the fill this request leads (lead) or waits on; `pass`: the answer
     * could not be stored. A waiter keeps the request (kreq, its slices in kbytes) to send it
     * itself when the wait ends without a stored answer (`again`). */
    struct fill *fill;
    int lead, pass, again;
    struct moat_loop *loop;
    struct moat_timer timer;
    uint64_t deadline_ms, poll_ms;
    struct moat_req kreq;
    char *kbytes;
    struct moat_cache_origin origin;
};

static void tee_drop_entry(struct moat_cache_tee *t)
{
    if (t->e != NULL) {
        entry_destroy(t->e);
        t->e = NULL;
    }
}

static void tee_free(struct moat_cache_tee *t)
{
    tee_drop_entry(t);
    if (t->fill != NULL) {
        if (t->lead) {
            fill_end(t->cache, t->fill, t->pass);
        } else {
            fill_put(t->cache, t->fill);
        }
    }
    if (t->loop != NULL) {
        moat_timer_disarm(&t->loop->timers, &t->timer);
    }
    free(t->kbytes);
    if (t->stale != NULL) {
        if (t->bgs != NULL) {
            pthread_mutex_lock(&t->cache->mu);
            t->stale->bg = 0;
            pthread_mutex_unlock(&t->cache->mu);
        }
        entry_release(t->stale);
    }
    if (t->serve != NULL) {
        entry_release(t->serve);
    }
    if (t->bgs != NULL) {
        if (t->bg_prev != NULL) {
            t->bg_prev->bg_next = t->bg_next;
        } else if (t->bgs->head == t) {
            t->bgs->head = t->bg_next;
        }
        if (t->bg_next != NULL) {
            t->bg_next->bg_prev = t->bg_prev;
        }
    }
    if (t->snap != NULL) {
        moat_snapshot_unref(t->snap);
    }
    free(t->key);
    free(t->req.f);
    free(t->req.bytes);
    free(t->ofields);
    free(t->piece);
    moat_buf_clear(&t->lines);
    free(t);
}

static void tee_destroy(struct moat_exch_filter *base)
{
    tee_free((struct moat_cache_tee *)base);
}

static struct moat_cache_tee *tee_of(struct moat_exch *ex)
{
    return (struct moat_cache_tee *)ex;
}

/* What an entry's stored fields say that every lookup needs: directives and validators. */
static void entry_facts(struct entry *e, const struct moat_buf *lines)
{
    moat_cc_of_lines(&e->rcc, lines);
    moat_slice et = moat_lines_field(lines, "etag");
    if (et.p != NULL && et.len < sizeof(e->etag)) {
        memcpy(e->etag, et.p, et.len);
        e->elen = et.len;
    }
    moat_slice lm = moat_lines_field(lines, "last-modified");
    time_t lmt;
    if (lm.p != NULL && moat_ok(moat_httpdate_parse(lm.p, lm.len, &lmt))) {
        e->last_modified = lmt;
    }
}

/* The answer for the request in the disk tier, read back into the store (with a reference
 * for the caller); NULL when there is none, or its file is damaged (then it goes). */
static struct entry *disk_load(struct moat_cache *c, const char *key, size_t klen,
                               const struct moat_field *f, size_t n)
{
    if (c->dir == NULL) {
        return NULL;
    }
    uint64_t h = moat_siphash24(c->seed, key, klen);
    char name[MOAT_CDISK_NAME] = "";
    char vk[4096];
    pthread_mutex_lock(&c->mu);
    for (struct dent *d = c->dbuckets[h & (NBUCKETS - 1)]; d != NULL; d = d->hnext) {
        if (d->hash != h || d->klen != klen || memcmp(d->key, key, klen) != 0) {
            continue;
        }
        size_t vl = d->vary != NULL ? vary_key(d->vary, f, n, vk, sizeof(vk)) : 0;
        if (vl != d->vklen || (vl > 0 && memcmp(vk, d->vkey, vl) != 0) ||
            (d->vary != NULL && vl == 0)) {
            continue;
        }
        memcpy(name, d->name, MOAT_CDISK_NAME);
        dent_unlink_locked(c, d); /* to the front */
        d->hnext = c->dbuckets[h & (NBUCKETS - 1)];
        c->dbuckets[h & (NBUCKETS - 1)] = d;
        dent_front_locked(c, d);
        c->disk_bytes += d->bytes;
        c->st.disk_entries++;
        break;
    }
    pthread_mutex_unlock(&c->mu);
    if (name[0] == '\0') {
        return NULL;
    }
    struct moat_cdisk_loaded L;
    struct moat_err err = {0};
    moat_rc rc = moat_cdisk_load(c->dir, name, 1, &L, &err);
    if (moat_ok(rc) && (L.r.klen != klen || memcmp(L.r.key, key, klen) != 0)) {
        rc = moat_rc_of(MOAT_E_PEER);
        snprintf(err.msg, sizeof(err.msg), "cache: %s/%s holds another key", c->dir, name);
        free(L.blob);
        free(L.vary_own);
        close(L.r.body_fd);
    }
    if (!moat_ok(rc)) {
        if (rc.kind != MOAT_E_NOMEM) {
            moat_log(MOAT_LVL_WARN, 0, "%s: removed", err.msg);
            pthread_mutex_lock(&c->mu);
            for (struct dent *d = c->dbuckets[h & (NBUCKETS - 1)]; d != NULL; d = d->hnext) {
                if (strcmp(d->name, name) == 0) {
                    dent_remove_locked(c, d);
                    break;
                }
            }
            pthread_mutex_unlock(&c->mu);
        }
        return NULL;
    }
    struct entry *e = calloc(1, sizeof(*e));
    int ok = e != NULL;
    if (ok) {
        *e = (struct entry){.fd = -1,
                            .cache = c,
                            .status = L.r.status,
                            .request_time = (time_t)L.r.request_time,
                            .response_time = (time_t)L.r.response_time,
                            .age_field = L.r.age_field,
                            .lifetime = L.r.lifetime,
                            .heuristic = L.r.heuristic,
                            .vary = L.vary_own,
                            .size = L.r.size,
                            .from_disk = 1,
                            .hash = h};
        L.vary_own = NULL;
        e->key = malloc(klen);
        e->lines = malloc(L.r.llen ? L.r.llen : 1);
        e->vkey = L.r.vklen > 0 ? malloc(L.r.vklen) : NULL;
        ok = e->key != NULL && e->lines != NULL && (L.r.vklen == 0 || e->vkey != NULL);
    }
    if (ok) {
        memcpy(e->key, key, klen);
        e->klen = klen;
        memcpy(e->lines, L.r.lines, L.r.llen);
        e->llen = L.r.llen;
        if (L.r.vklen > 0) {
            memcpy(e->vkey, L.r.vkey, L.r.vklen);
        }
        e->vklen = L.r.vklen;
        struct moat_buf view = {.base = e->lines, .cap = e->llen, .rd = 0, .wr = e->llen};
        entry_facts(e, &view);
        if (e->size <= SMALL_BODY) {
            e->bytes = malloc(e->size ? (size_t)e->size : 1);
            ok = e->bytes != NULL &&
                 (e->size == 0 ||
                  moat_pread_all(L.r.body_fd, e->bytes, (size_t)e->size, L.r.body_off));
            close(L.r.body_fd);
        } else {
            e->fd = L.r.body_fd;
            e->body_off = L.r.body_off;
        }
        L.r.body_fd = -1;
    }
    if (L.r.body_fd >= 0) {
        close(L.r.body_fd);
    }
    free(L.blob);
    free(L.vary_own);
    if (!ok) {
        if (e != NULL) {
            entry_destroy(e);
        }
        return NULL;
    }
    e->cost = e->llen + e->klen + e->vklen + sizeof(*e) + (e->bytes != NULL ? e->size : 0);
    insert(c, e, 1);
    count(c, &c->st.disk_hits);
    return e;
}

/* The stored answer for the request: memory first, then the disk tier. */
static struct entry *lookup(struct moat_cache *c, const char *key, size_t klen,
                            const struct moat_field *f, size_t n, int *other_variant)
{
    struct entry *e = find(c, key, klen, f, n, other_variant);
    if (e == NULL && c->dir != NULL) {
        e = disk_load(c, key, klen, f, n);
        if (e != NULL) {
            *other_variant = 0;
        }
    }
    return e;
}

/* The entry for a storable answer: its stored lines (no Set-Cookie: it is one client's, no
 * Age: it is worked out anew), validators, freshness; the body file. NULL when it cannot be
 * made (no memory): the answer then simply is not stored. */
static struct entry *entry_begin(struct moat_cache_tee *t, int status, const struct moat_buf *lines)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    e->fd = -1;
    e->cache = t->cache;
    e->status = status;
    e->request_time = t->request_time;
    e->response_time = time(NULL);
    struct moat_buf kept;
    moat_buf_init(&kept, 256 * 1024);
    size_t at = 0;
    moat_slice line, name;
    int ok = 1;
    while (ok && moat_field_lines_next(lines, &at, &line, &name)) {
        if (name_eq(name, "set-cookie", 10) || name_eq(name, "age", 3) ||
            name_eq(name, "cache-status", 12)) {
            continue;
        }
        ok = moat_ok(moat_buf_append(&kept, line.p, line.len));
    }
    moat_slice age = moat_lines_field(lines, "age");
    if (age.p != NULL) {
        long long v = 0;
        for (size_t i = 0; i < age.len && age.p[i] >= '0' && age.p[i] <= '9' && v < 1LL << 40;
             i++) {
            v = v * 10 + (age.p[i] - '0');
        }
        e->age_field = v;
    }
    e->lifetime = moat_cache_lifetime(status, lines, e->response_time, &t->heur, &e->heuristic);
    entry_facts(e, lines);
    e->vary = vary_names(lines);
    char vk[4096];
    size_t vl = e->vary != NULL ? vary_key(e->vary, t->req.f, t->req.n, vk, sizeof(vk)) : 0;
    e->key = malloc(t->klen);
    e->lines = malloc(moat_buf_len(&kept) ? moat_buf_len(&kept) : 1);
    e->vkey = vl > 0 ? malloc(vl) : NULL;
    if (!ok || e->key == NULL || e->lines == NULL || (vl > 0 && e->vkey == NULL) ||
        (e->vary != NULL && vl == 0)) {
        moat_buf_clear(&kept);
        entry_destroy(e);
        return NULL;
    }
    memcpy(e->key, t->key, t->klen);
    e->klen = t->klen;
    e->hash = moat_siphash24(t->cache->seed, e->key, e->klen);
    if (moat_buf_len(&kept) > 0) {
        memcpy(e->lines, moat_buf_rdptr(&kept), moat_buf_len(&kept));
    }
    e->llen = moat_buf_len(&kept);
    moat_buf_clear(&kept);
    if (vl > 0) {
        memcpy(e->vkey, vk, vl);
        e->vklen = vl;
    }
    return e;
}

static void entry_cost(struct entry *e)
{
    e->cost = e->size + e->llen + e->klen + e->vklen + sizeof(*e);
}

/* A 304 may not change what describes the stored body's bytes (RFC 9111 §3.2), nor the
 * variant it is stored as (a 304 through the encode filter names Accept-Encoding alone). */
static int kept_on_update(moat_slice name)
{
    return name_eq(name, "content-length", 14) || name_eq(name, "content-encoding", 16) ||
           name_eq(name, "content-range", 13) || name_eq(name, "content-type", 12) ||
           name_eq(name, "transfer-encoding", 17) || name_eq(name, "vary", 4);
}

static int lines_have(const struct moat_buf *lines, moat_slice name)
{
    size_t at = 0;
    moat_slice l, n;
    while (moat_field_lines_next(lines, &at, &l, &n)) {
        if (n.len == name.len && strncasecmp(n.p, name.p, n.len) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * The stored answer `old` with the fields of a 304 that revalidated it (RFC 9111 §4.3.4):
 * each field of the 304 replaces the stored ones of its name, the body is the same. NULL when
 * there is no memory or descriptor for it.
 */
static struct entry *entry_refreshed(struct moat_cache_tee *t, const struct entry *old,
                                     const struct moat_buf *lines304)
{
    struct moat_buf merged;
    moat_buf_init(&merged, 512 * 1024);
    struct moat_buf view = {.base = old->lines, .cap = old->llen, .rd = 0, .wr = old->llen};
    size_t at = 0;
    moat_slice line, name;
    int ok = 1;
    while (ok && moat_field_lines_next(&view, &at, &line, &name)) {
        if (kept_on_update(name) || !lines_have(lines304, name)) {
            ok = moat_ok(moat_buf_append(&merged, line.p, line.len));
        }
    }
    at = 0;
    while (ok && moat_field_lines_next(lines304, &at, &line, &name)) {
        if (!kept_on_update(name)) {
            ok = moat_ok(moat_buf_append(&merged, line.p, line.len));
        }
    }
    struct entry *e = ok ? entry_begin(t, old->status, &merged) : NULL;
    moat_buf_clear(&merged);
    if (e == NULL) {
        return NULL;
    }
    e->size = old->size;
    if (old->fd >= 0) {
        e->fd = fcntl(old->fd, F_DUPFD_CLOEXEC, 0);
        e->body_off = old->body_off;
    } else if (old->bytes != NULL) {
        e->bytes = malloc(old->size ? (size_t)old->size : 1);
        if (e->bytes != NULL) {
            memcpy(e->bytes, old->bytes, (size_t)old->size);
        }
    }
    if ((old->fd >= 0 && e->fd < 0) || (old->bytes != NULL && e->bytes == NULL)) {
        entry_destroy(e);
        return NULL;
    }
    entry_cost(e);
    return e;
}

static int unsafe(int method)
{
    return method != MOAT_HTTP_M_GET && method != MOAT_HTTP_M_HEAD &&
           method != MOAT_HTTP_M_OPTIONS && method != MOAT_HTTP_M_TRACE;
}

/* The origin failed in a way a stale answer may stand in for (RFC 5861 §4). */
static int error_status(int status)
{
    return status == 500 || status == 502 || status == 503 || status == 504;
}

/* ---- the pump: a stored answer sent through the exchange -------------------------------- */

static void pump_go(struct moat_cache_tee *t);

static void pump_ready(void *h)
{
    pump_go(h);
}

static void pump_abort(void *h)
{
    (void)h; /* the filter's abort frees the tee after this */
}

static const struct moat_stream_ops pump_ops = {.ready = pump_ready, .abort = pump_abort};

/* Send the stored answer `serve` to the client; the tee is the handler from now on. */
static void pump(struct moat_cache_tee *t)
{
    struct moat_exch *inner = t->base.inner;
    t->mode = TEE_PUMP;
    t->base.hops = &pump_ops;
    t->base.hh = t;
    t->lines.rd = t->lines.wr = 0;
    int status;
    uint64_t off, len;
    moat_rc rc = stored_answer(t->serve, t->req.f, t->req.n, t->method, time(NULL), &t->lines,
                               &status, &off, &len);
    if (moat_ok(rc)) {
        rc = moat_buf_printf(&t->lines, "Cache-Status: %s\r\n", t->cs);
    }
    if (moat_ok(rc) && len > 0 && t->serve->fd >= 0 && t->method != MOAT_HTTP_M_HEAD) {
        t->piece = malloc(PUMP_PIECE);
        rc = t->piece != NULL ? MOAT_RC_OK : moat_rc_of(MOAT_E_NOMEM);
    }
    if (!moat_ok(rc)) {
        tee_free(t);
        moat_exch_fail(inner, 500);
        return;
    }
    t->off = off;
    t->end = t->method == MOAT_HTTP_M_HEAD ? off : off + len;
    unsigned flags = MOAT_RES_RELAYED | (t->end > t->off ? MOAT_RES_MORE : 0);
    if (!moat_ok(moat_exch_start(inner, status, &t->lines, (int64_t)len, flags))) {
        tee_free(t);
        return;
    }
    t->started = 1;
    pump_go(t);
}

static void pump_go(struct moat_cache_tee *t)
{
    struct moat_exch *inner = t->base.inner;
    const struct entry *e = t->serve;
    while (t->off < t->end) {
        size_t room = moat_exch_room(inner);
        if (room == 0) {
            return; /* ready comes when the client took some */
        }
        uint64_t left = t->end - t->off;
        size_t n = left < room ? (size_t)left : room;
        const char *p;
        if (e->fd >= 0) {
            n = n < PUMP_PIECE ? n : PUMP_PIECE;
            ssize_t r = pread(e->fd, t->piece, n, (off_t)(e->body_off + t->off));
            if (r <= 0) {
                moat_log(MOAT_LVL_WARN, t->conn_id, "cache: a stored body cannot be read: %s",
                         r < 0 ? strerror(errno) : "shorter than stored");
                tee_free(t);
                moat_exch_fail(inner, 500);
                return;
            }
            n = (size_t)r;
            p = t->piece;
        } else {
            p = e->bytes + t->off;
        }
        if (!moat_ok(moat_exch_send(inner, p, n))) {
            tee_free(t);
            return;
        }
        t->off += n;
    }
    tee_free(t);
    moat_exch_finish(inner);
}

/* Let the requests waiting on this one look now (the store has what it will get). */
static void tee_end_fill(struct moat_cache_tee *t)
{
    if (t->fill != NULL && t->lead) {
        fill_end(t->cache, t->fill, t->pass);
        t->fill = NULL;
    }
}

/* The stale answer stands in for the origin's failure (`status`, or 0: no answer at all). */
static void hold_stale(struct moat_cache_tee *t, int status)
{
    tee_end_fill(t);
    t->serve = t->stale;
    t->stale = NULL;
    t->mode = TEE_HOLD;
    if (status > 0) {
        snprintf(t->cs, sizeof(t->cs), "moat; fwd=%s; fwd-status=%d; detail=\"stale-if-error\"",
                 t->fwd, status);
    } else {
        snprintf(t->cs, sizeof(t->cs), "moat; fwd=%s; detail=\"stale-if-error\"", t->fwd);
    }
    if (status > 0) {
        moat_log(MOAT_LVL_INFO, t->conn_id,
                 "cache: the origin answered %d: a stale answer serves (stale-if-error)", status);
    } else {
        moat_log(MOAT_LVL_INFO, t->conn_id,
                 "cache: the origin gave no answer: a stale answer serves (stale-if-error)");
    }
}

/* ---- the tee's exchange ----------------------------------------------------------------- */

static moat_rc t_start(struct moat_exch *ex, int status, const struct moat_buf *lines,
                       int64_t length, unsigned flags)
{
    struct moat_cache_tee *t = tee_of(ex);
    const char *why = NULL;
    if (t->conditional && status == 304 && t->stale != NULL) {
        /* RFC 9111 §4.3.3: the stored answer is valid again, with the 304's fields. */
        t->serve = entry_refreshed(t, t->stale, lines);
        if (t->serve != NULL) {
            insert(t->cache, t->serve, 1);
        } else {
            t->serve = t->stale; /* valid all the same; just not refreshed in the store */
            t->stale = NULL;
        }
        t->mode = TEE_HOLD;
        snprintf(t->cs, sizeof(t->cs), "moat; fwd=%s; fwd-status=304", t->fwd);
        tee_end_fill(t);
        return MOAT_RC_OK;
    }
    if (t->stale != NULL && t->stale_if_error && error_status(status)) {
        hold_stale(t, status);
        return MOAT_RC_OK;
    }
    if (unsafe(t->method)) {
        /* RFC 9111 §4.4: a successful unsafe request invalidates what was stored for it. */
        if (status < 400) {
            const char *nl = memchr(t->key, '\n', t->klen);
            size_t ul = nl != NULL ? (size_t)(nl - t->key) : t->klen; /* the URI's, all keys */
            unsigned long long n = drop_keys(t->cache, t->key, ul, 0);
            pthread_mutex_lock(&t->cache->mu);
            t->cache->st.invalidated += n;
            pthread_mutex_unlock(&t->cache->mu);
        }
    } else if (t->method == MOAT_HTTP_M_GET && !(flags & MOAT_RES_TUNNEL) && t->fwd != NULL &&
               strcmp(t->fwd, "bypass") != 0) {
        why = moat_cache_storable(status, lines, t->req.f, t->req.n);
        if (why == NULL && moat_lines_field(lines, "content-range").p != NULL) {
            why = "a part (Content-Range)";
        }
        if (why == NULL && length >= 0 && (uint64_t)length > t->max_object) {
            why = "larger than cache_max_object";
        }
        if (why == NULL) {
            t->e = entry_begin(t, status, lines);
            why = t->e == NULL ? "out of memory" : NULL;
        }
        if (t->e != NULL && t->e->lifetime <= 0 && t->e->elen == 0 && t->e->last_modified == 0) {
            /* Stale on arrival with nothing to revalidate it by: it would only be fetched
             * whole again. */
            tee_drop_entry(t);
            why = "stale on arrival";
        }
    }
    if (why != NULL) {
        t->pass = 1;
        tee_end_fill(t); /* the waiters need not wait for an answer that is not kept */
    }
    t->length = length;
    int not_modified = 0;
    if (t->stripped && status == 200) {
        /* The client's conditionals did not go to the origin (the full answer is what the
         * cache keeps): answer them from the answer's own validators. */
        moat_slice et = moat_lines_field(lines, "etag");
        moat_slice lm = moat_lines_field(lines, "last-modified");
        time_t lmt = 0;
        if (lm.p == NULL || !moat_ok(moat_httpdate_parse(lm.p, lm.len, &lmt))) {
            lmt = 0;
        }
        not_modified = validators_match(t->req.f, t->req.n, et.p, et.p ? et.len : 0, lmt);
    }
    moat_rc rc = MOAT_RC_OK;
    if (not_modified) {
        size_t at = 0;
        moat_slice line, name;
        while (moat_ok(rc) && moat_field_lines_next(lines, &at, &line, &name)) {
            if (for_304(name)) {
                rc = moat_buf_append(&t->lines, line.p, line.len);
            }
        }
    } else {
        rc = moat_buf_append(&t->lines, moat_buf_rdptr(lines), moat_buf_len(lines));
    }
    if (moat_ok(rc)) {
        rc = why != NULL
                 ? moat_buf_printf(&t->lines, "Cache-Status: moat; fwd=%s; detail=\"%s\"\r\n",
                                   t->fwd ? t->fwd : "method", why)
             : t->e != NULL
                 ? moat_buf_printf(&t->lines, "Cache-Status: moat; fwd=%s; stored\r\n", t->fwd)
                 : moat_buf_printf(&t->lines, "Cache-Status: moat; fwd=%s\r\n",
                                   t->fwd ? t->fwd : "method");
    }
    if (!moat_ok(rc)) {
        struct moat_exch *inner = t->base.inner;
        tee_free(t);
        moat_exch_fail(inner, 500);
        return rc;
    }
    if (not_modified) {
        t->mode = TEE_DROP;
        rc = moat_exch_start(t->base.inner, 304, &t->lines, 0, flags & ~MOAT_RES_MORE);
    } else {
        rc = moat_exch_start(t->base.inner, status, &t->lines, length, flags);
    }
    if (!moat_ok(rc)) {
        tee_free(t);
        return rc;
    }
    t->started = 1;
    return rc;
}

/* Append to an entry's body: on the heap while it is small, then in a memory file. */
static int body_put(struct entry *e, const void *p, size_t n)
{
    if (e->fd < 0 && e->size + n <= SMALL_BODY) {
        char *g = realloc(e->bytes, (size_t)e->size + n);
        if (g == NULL) {
            return 0;
        }
        memcpy(g + e->size, p, n);
        e->bytes = g;
        e->size += n;
        return 1;
    }
    if (e->fd < 0) {
        e->fd = memfd_create("moat-cache", MFD_CLOEXEC);
        if (e->fd < 0 || (e->size > 0 && !moat_write_all(e->fd, e->bytes, (size_t)e->size))) {
            return 0;
        }
        free(e->bytes);
        e->bytes = NULL;
    }
    if (!moat_write_all(e->fd, p, n)) {
        return 0;
    }
    e->size += n;
    return 1;
}

static moat_rc t_send(struct moat_exch *ex, const void *p, size_t n)
{
    struct moat_cache_tee *t = tee_of(ex);
    if (t->e != NULL && n > 0) {
        if (t->e->size + n > t->max_object) {
            tee_drop_entry(t); /* too large after all: relayed, not stored */
        } else if (!body_put(t->e, p, n)) {
            tee_drop_entry(t);
        }
    }
    if (t->mode != TEE_RELAY) {
        return MOAT_RC_OK;
    }
    moat_rc rc = moat_exch_send(t->base.inner, p, n);
    if (!moat_ok(rc)) {
        tee_free(t);
    }
    return rc;
}

static size_t t_room(struct moat_exch *ex)
{
    struct moat_cache_tee *t = tee_of(ex);
    /* An answer the client does not get is read as fast as it comes. */
    return t->mode == TEE_RELAY ? moat_exch_room(t->base.inner) : PUMP_PIECE;
}

static void t_finish(struct moat_exch *ex, const struct moat_buf *trailers)
{
    struct moat_cache_tee *t = tee_of(ex);
    struct moat_exch *inner = t->base.inner;
    if (t->e != NULL && (t->length < 0 || (uint64_t)t->length == t->e->size)) {
        struct entry *e = t->e;
        t->e = NULL;
        entry_cost(e);
        if (e->cost <= t->cache->memory) {
            insert(t->cache, e, 0);
        } else {
            entry_destroy(e);
        }
    }
    enum tee_mode mode = t->mode;
    if (mode == TEE_HOLD && t->bgs == NULL) {
        pump(t);
        return;
    }
    tee_free(t);
    if (trailers != NULL && mode == TEE_RELAY) {
        moat_exch_finish_trailers(inner, trailers);
    } else {
        moat_exch_finish(inner);
    }
}

static void t_fail(struct moat_exch *ex, int status)
{
    struct moat_cache_tee *t = tee_of(ex);
    if (!t->started && t->stale != NULL && t->stale_if_error && t->mode == TEE_RELAY) {
        hold_stale(t, 0);
    }
    if (t->mode == TEE_HOLD && t->bgs == NULL) {
        pump(t);
        return;
    }
    if (!t->started && t->bgs == NULL && t->mode == TEE_RELAY) {
        /* Nothing of an answer went out: the error page says what the cache did, as every
         * answer of the site does (RFC 9211). */
        struct moat_exch *inner = t->base.inner;
        struct moat_res res;
        struct moat_buf body;
        moat_buf_init(&body, 4096);
        t->lines.rd = t->lines.wr = 0;
        int ok = moat_ok(moat_res_error_page(&res, status, &t->lines, &body)) &&
                 moat_ok(moat_buf_printf(&t->lines,
                                         "Cache-Status: moat; fwd=%s; detail=\"no origin "
                                         "answer\"\r\n",
                                         t->fwd ? t->fwd : "method"));
        if (ok) {
            struct moat_buf lines = t->lines; /* outlives the tee for the calls below */
            t->lines = (struct moat_buf){0};
            tee_free(t);
            if (moat_ok(moat_exch_start(inner, status, &lines, (int64_t)res.length, 0)) &&
                moat_ok(moat_exch_send(inner, moat_buf_rdptr(&body), moat_buf_len(&body)))) {
                moat_exch_finish(inner);
            }
            moat_buf_clear(&lines);
            moat_buf_clear(&body);
            return;
        }
        moat_buf_clear(&body);
    }
    moat_filter_fail(ex, status);
}

static const struct moat_exch_ops tee_ops = {
    .read_body = moat_filter_read_body,
    .start = t_start,
    .send = t_send,
    .room = t_room,
    .trailers = moat_filter_trailers,
    .finish = t_finish,
    .fail = t_fail,
};

/* What a background revalidation answers through: nobody. */
static moat_rc sink_read(struct moat_exch *ex, void *buf, size_t len, size_t *n)
{
    *n = 0;
    return MOAT_RC_OK;
}
static moat_rc sink_start(struct moat_exch *ex, int status, const struct moat_buf *lines,
                          int64_t length, unsigned flags)
{
    return MOAT_RC_OK;
}
static moat_rc sink_send(struct moat_exch *ex, const void *p, size_t n)
{
    return MOAT_RC_OK;
}
static size_t sink_room(struct moat_exch *ex)
{
    return PUMP_PIECE;
}
static const struct moat_buf *sink_trailers(struct moat_exch *ex)
{
    return NULL;
}
static void sink_finish(struct moat_exch *ex, const struct moat_buf *trailers)
{
}
static void sink_fail(struct moat_exch *ex, int status)
{
}
static const struct moat_exch_ops sink_ops = {.read_body = sink_read,
                                              .start = sink_start,
                                              .send = sink_send,
                                              .room = sink_room,
                                              .trailers = sink_trailers,
                                              .finish = sink_finish,
                                              .fail = sink_fail};
static struct moat_exch sink = {.ops = &sink_ops};

/* A waiter's own origin request was answered at once (an error page of the proxy's): it goes
 * out through the exchange the waiter holds. */
static void answer_now(struct moat_cache_tee *t, struct moat_res *res, struct moat_buf *lines,
                       struct moat_buf *body)
{
    struct moat_exch *inner = t->base.inner;
    if (res->fd >= 0) {
        moat_res_file_done(res->fd, res->fd_release, res->fd_h); /* the proxy gives none */
        res->fd = -1;
        res->length = 0;
    }
    moat_rc rc =
        moat_buf_printf(lines, "Cache-Status: moat; fwd=%s; detail=\"no origin answer\"\r\n",
                        t->fwd ? t->fwd : "miss");
    (void)rc; /* a head too large for it goes without */
    tee_free(t);
    uint64_t n = res->has_generated_body ? moat_buf_len(body) : 0;
    if (!moat_ok(moat_exch_start(inner, res->status, lines, (int64_t)res->length, res->flags)) ||
        (n > 0 && !moat_ok(moat_exch_send(inner, moat_buf_rdptr(body), (size_t)n)))) {
        return; /* the exchange ended */
    }
    moat_exch_finish(inner);
}

void moat_cache_tee_adopt(struct moat_cache_tee *t, struct moat_res *res, struct moat_buf *lines,
                          struct moat_buf *body)
{
    if (t == NULL) {
        return;
    }
    if (t->again) {
        /* A waiter that asked the origin itself: the session already holds the tee. */
        if (res->stream != NULL) {
            t->base.hops = res->stream;
            t->base.hh = res->stream_h;
        } else {
            answer_now(t, res, lines, body);
        }
        return;
    }
    if (res->stream == NULL && t->bgs == NULL && t->stale != NULL && t->stale_if_error &&
        error_status(res->status) && res->fd < 0) {
        /* The origin failed at once (nothing listens, all servers out): the stale answer
         * takes the place of the error page. */
        struct entry *e = t->stale;
        t->stale = NULL;
        hold_stale(t, res->status);
        t->serve = NULL;
        lines->wr = lines->rd + t->lines0;
        body->wr = body->rd + t->body0;
        struct moat_req req = {.method_id = t->method, .fields = t->req.f, .nfields = t->req.n};
        if (!moat_ok(answer_from(e, &req, t->cs, res, lines, body))) {
            lines->wr = lines->rd + t->lines0;
            body->wr = body->rd + t->body0;
            moat_rc rc = moat_res_error_page(res, 502, lines, body);
            (void)rc;
        }
        tee_free(t);
        return;
    }
    if (res->stream == NULL && t->bgs == NULL) {
        /* An answer of the proxy's own (nothing reached the origin) says so too. */
        moat_rc rc =
            moat_buf_printf(lines, "Cache-Status: moat; fwd=%s; detail=\"no origin answer\"\r\n",
                            t->fwd ? t->fwd : "method");
        (void)rc; /* a head too large for it goes without */
    }
    if (res->stream != NULL && t->bgs != NULL) {
        t->bg_next = t->bgs->head;
        if (t->bg_next != NULL) {
            t->bg_next->bg_prev = t;
        }
        t->bgs->head = t;
    }
    moat_filter_adopt(&t->base, res);
}

void moat_cache_bg_stop_all(struct moat_cache_bgs *bgs)
{
    while (bgs->head != NULL) {
        struct moat_cache_tee *t = bgs->head;
        t->base.hops->abort(t->base.hh);
        tee_free(t); /* unlinks it */
    }
}

/* The request's fields for the origin: without the client's conditionals (and Range) when
 * `strip`, with stale's validators when it has them. */
static int origin_fields(struct moat_cache_tee *t, const struct moat_req *req,
                         const struct entry *stale, int strip)
{
    t->ofields = calloc(req->nfields + 2, sizeof(*t->ofields));
    if (t->ofields == NULL) {
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < req->nfields; i++) {
        moat_slice nm = req->fields[i].name;
        if (strip && (name_eq(nm, "if-none-match", 13) || name_eq(nm, "if-modified-since", 17) ||
                      (stale != NULL && (name_eq(nm, "range", 5) || name_eq(nm, "if-range", 8))))) {
            continue;
        }
        t->ofields[n++] = req->fields[i];
    }
    size_t at = 0;
    if (stale != NULL && stale->elen > 0) {
        memcpy(t->cond, stale->etag, stale->elen);
        t->ofields[n++] = (struct moat_field){.name = MOAT_SLICE_LIT("If-None-Match"),
                                              .value = {.p = t->cond, .len = stale->elen}};
        at = stale->elen;
    }
    if (stale != NULL && stale->last_modified > 0 &&
        moat_ok(moat_httpdate_format(stale->last_modified, t->cond + at, MOAT_HTTPDATE_SIZE))) {
        t->ofields[n++] =
            (struct moat_field){.name = MOAT_SLICE_LIT("If-Modified-Since"),
                                .value = {.p = t->cond + at, .len = MOAT_HTTPDATE_LEN}};
    }
    t->nofields = n;
    t->conditional = stale != NULL && (stale->elen > 0 || stale->last_modified > 0);
    t->stripped = strip;
    return 1;
}

static struct moat_cache_tee *tee_new(const struct moat_cache_ctx *cx, const struct moat_req *req,
                                      const char *key, size_t klen, const char *fwd)
{
    struct moat_cache_tee *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->key = malloc(klen ? klen : 1);
    if (t->key == NULL || !keep_fields(req, &t->req)) {
        free(t->key);
        free(t);
        return NULL;
    }
    memcpy(t->key, key, klen);
    t->klen = klen;
    t->base.ex.ops = &tee_ops;
    t->base.inner = req->exch;
    t->base.destroy = tee_destroy;
    t->cache = cx->cache;
    t->fwd = fwd;
    t->method = req->method_id;
    t->request_time = time(NULL);
    t->heur =
        (struct moat_cache_heuristic){.percent = (unsigned)cx->conf->cache_heuristic,
                                      .max_s = (int64_t)(cx->conf->cache_heuristic_max_ms / 1000)};
    t->max_object = cx->conf->cache_max_object;
    t->conn_id = req->conn_id;
    moat_buf_init(&t->lines, 256 * 1024);
    return t;
}

/* ---- waiting on another request for the key ------------------------------------------ */

static void wait_ready(void *h)
{
    (void)h; /* nothing is sent while waiting */
}

static void wait_abort(void *h)
{
    (void)h; /* the filter's abort frees the tee after this */
}

static const struct moat_stream_ops wait_ops = {.ready = wait_ready, .abort = wait_abort};

/* The request's slices, kept past the dispatch (its fields are t->req's). */
static int keep_request(struct moat_cache_tee *t, const struct moat_req *req)
{
    const moat_slice *parts[] = {&req->method, &req->target, &req->path,
                                 &req->npath,  &req->query,  &req->authority};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        total += parts[i]->len;
    }
    t->kbytes = malloc(total ? total : 1);
    if (t->kbytes == NULL) {
        return 0;
    }
    t->kreq = *req;
    moat_slice *out[] = {&t->kreq.method, &t->kreq.target, &t->kreq.path,
                         &t->kreq.npath,  &t->kreq.query,  &t->kreq.authority};
    size_t at = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (parts[i]->p == NULL) {
            *out[i] = MOAT_SLICE_NULL;
            continue;
        }
        memcpy(t->kbytes + at, parts[i]->p, parts[i]->len);
        *out[i] = (moat_slice){.p = t->kbytes + at, .len = parts[i]->len};
        at += parts[i]->len;
    }
    t->kreq.fields = t->req.f;
    t->kreq.nfields = t->req.n;
    t->kreq.upgrade = (moat_slice){.p = "", .len = 0};
    t->kreq.exch = NULL;
    return 1;
}

static int may_answer(const struct entry *e, const struct moat_field *f, size_t n,
                      const struct moat_cc *q, time_t now, int64_t *age);

/* The request under way ended, or the wait timed out: the stored answer, or the origin. */
static void wait_over(struct moat_cache_tee *t)
{
    fill_put(t->cache, t->fill);
    t->fill = NULL;
    int other = 0;
    struct entry *e = lookup(t->cache, t->key, t->klen, t->req.f, t->req.n, &other);
    int64_t age = 0;
    struct moat_cc q;
    moat_cc_of_fields(&q, t->req.f, t->req.n);
    if (e != NULL && may_answer(e, t->req.f, t->req.n, &q, time(NULL), &age)) {
        t->serve = e;
        snprintf(t->cs, sizeof(t->cs), "moat; hit; ttl=%lld; collapsed",
                 (long long)(e->lifetime - age));
        pthread_mutex_lock(&t->cache->mu);
        t->cache->st.hits++;
        t->cache->st.collapsed++;
        pthread_mutex_unlock(&t->cache->mu);
        pump(t);
        return;
    }
    if (e != NULL) {
        entry_release(e);
    }
    t->again = 1;
    t->mode = TEE_RELAY;
    t->request_time = time(NULL);
    free(t->ofields); /* made for the dispatch; its slices are gone */
    t->ofields = NULL;
    if (!origin_fields(t, &t->kreq, NULL, 1)) {
        struct moat_exch *inner = t->base.inner;
        tee_free(t);
        moat_exch_fail(inner, 503);
        return;
    }
    struct moat_req req = t->kreq;
    req.exch = &t->base.ex;
    req.fields = t->ofields;
    req.nfields = t->nofields;
    req.now = time(NULL);
    t->origin.go(&t->origin, &req, t);
}

static void wait_tick(struct moat_timer *tm)
{
    struct moat_cache_tee *t = tm->data;
    uint64_t now = t->loop->now_ms;
    if (!fill_done(t->cache, t->fill) && now < t->deadline_ms) {
        /* Polled, not woken: the request it waits on may run on another worker. */
        t->poll_ms = t->poll_ms * 3 / 2 < 50 ? t->poll_ms * 3 / 2 : 50;
        if (moat_ok(moat_timer_arm(&t->loop->timers, &t->timer, now + t->poll_ms))) {
            return;
        }
    }
    wait_over(t);
}

/* Wait for the fill `f` another request leads; the answer streams from the tee. 0: could not
 * (no memory): the request goes to the origin on its own. */
static int wait_on(const struct moat_cache_ctx *cx, struct moat_cache_tee *t, struct fill *f,
                   const struct moat_req *req, struct moat_res *res)
{
    if (!keep_request(t, req)) {
        return 0;
    }
    t->fill = f;
    t->loop = cx->loop;
    t->origin = cx->origin;
    t->poll_ms = 2;
    t->deadline_ms = cx->loop->now_ms + cx->conf->cache_lock_timeout_ms;
    moat_timer_init(&t->timer, wait_tick, t);
    if (!moat_ok(moat_timer_arm(&cx->loop->timers, &t->timer, cx->loop->now_ms + t->poll_ms))) {
        t->fill = NULL;
        t->loop = NULL;
        return 0;
    }
    *res = (struct moat_res){.status = 200, .fd = -1, .stream = &wait_ops, .stream_h = t};
    moat_filter_adopt(&t->base, res);
    return 1;
}

/* ---- per request ------------------------------------------------------------------------- */

/* Whether the response's own directives forbid serving it stale at all (RFC 9111 §4.2.4). */
static int must_revalidate(const struct entry *e)
{
    return (e->rcc.flags &
            (MOAT_CC_MUST_REVALIDATE | MOAT_CC_PROXY_REVALIDATE | MOAT_CC_NO_CACHE)) != 0;
}

/* §3.5: an answer stored for one request may serve one with Authorization only when it said
 * so. */
static int auth_ok(const struct entry *e, const struct moat_field *f, size_t n)
{
    return moat_field_find(f, n, "authorization") == NULL || (e->rcc.flags & MOAT_CC_PUBLIC) ||
           (e->rcc.flags & MOAT_CC_MUST_REVALIDATE) || e->rcc.s_maxage >= 0;
}

/* Whether the stored answer serves a request with these fields and directives (q) now, as it
 * is (*age: its age). */
static int may_answer(const struct entry *e, const struct moat_field *f, size_t n,
                      const struct moat_cc *q, time_t now, int64_t *age)
{
    *age = current_age(e, now);
    return auth_ok(e, f, n) && moat_cache_usable(e->lifetime, *age, &e->rcc, q);
}

int moat_cache_serve(const struct moat_cache_ctx *cx, const struct moat_req *req,
                     struct moat_res *res, struct moat_buf *lines, struct moat_buf *body,
                     moat_rc *rc, struct moat_req *copy, struct moat_cache_tee **tee)
{
    *tee = NULL;
    *rc = MOAT_RC_OK;
    char key[MOAT_REQ_PATH_CAP + 1024];
    int purging = req->method.len == 5 && memcmp(req->method.p, "PURGE", 5) == 0;
    size_t klen = primary_key(cx->site, req, !purging, key, sizeof(key));
    if (klen == 0 || req->upgrade.len > 0) {
        return 0;
    }
    if (purging) {
        *rc = purge(cx, req, key, klen, res, lines, body);
        return 1;
    }
    const char *fwd = "miss";
    struct entry *stale = NULL;
    int stale_if_error = 0;
    int answered = 0;
    if (req->method_id == MOAT_HTTP_M_GET || req->method_id == MOAT_HTTP_M_HEAD) {
        struct moat_cc q;
        moat_cc_of_fields(&q, req->fields, req->nfields);
        int other = 0;
        struct entry *e = lookup(cx->cache, key, klen, req->fields, req->nfields, &other);
        if (e != NULL) {
            int64_t age;
            int usable = may_answer(e, req->fields, req->nfields, &q, time(NULL), &age);
            int64_t staleness = age - e->lifetime;
            int authz = auth_ok(e, req->fields, req->nfields);
            int forced = (q.flags & MOAT_CC_NO_CACHE) || (q.max_age >= 0 && age > q.max_age) ||
                         (q.min_fresh >= 0 && e->lifetime - age < q.min_fresh);
            if (usable) {
                char cs[96];
                snprintf(cs, sizeof(cs), "moat; hit; ttl=%lld", (long long)(e->lifetime - age));
                count(cx->cache, &cx->cache->st.hits);
                *rc = answer_from(e, req, cs, res, lines, body);
                return 1;
            }
            fwd = forced ? "request" : "stale";
            /* RFC 5861 §3: a stale answer may serve while it is revalidated in the
             * background (one revalidation at a time), unless someone insists on a fresh
             * one. The explicit directive wins over s-maxage's implied proxy-revalidate, as
             * at every CDN. */
            int swr = authz && !forced && !must_revalidate(e) && staleness > 0 &&
                      e->rcc.stale_while_revalidate >= staleness && cx->bgs != NULL;
            if (swr) {
                char cs[128];
                snprintf(cs, sizeof(cs), "moat; hit; ttl=%lld; detail=\"stale-while-revalidate\"",
                         (long long)(e->lifetime - age));
                pthread_mutex_lock(&cx->cache->mu);
                int start = !e->bg && e->linked;
                e->bg = 1;
                e->refs++;
                cx->cache->st.hits++;
                pthread_mutex_unlock(&cx->cache->mu);
                *rc = answer_from(e, req, cs, res, lines, body);
                if (!start) {
                    entry_release(e);
                    return 1;
                }
                stale = e;
                answered = 1;
            } else {
                int64_t sie = e->rcc.stale_if_error > q.stale_if_error ? e->rcc.stale_if_error
                                                                       : q.stale_if_error;
                stale_if_error = authz && !must_revalidate(e) &&
                                 (!(q.flags & MOAT_CC_NO_CACHE) || q.stale_if_error >= 0) &&
                                 sie >= 0 && staleness <= sie;
                if (authz && (stale_if_error || e->elen > 0 || e->last_modified > 0) &&
                    req->method_id == MOAT_HTTP_M_GET) {
                    stale = e;
                } else {
                    entry_release(e);
                }
            }
        } else if (other) {
            fwd = "vary-miss";
        } else {
            fwd = "uri-miss";
        }
        if (!answered && (q.flags & MOAT_CC_ONLY_IF_CACHED)) {
            /* RFC 9111 §5.2.1.7 */
            if (stale != NULL) {
                entry_release(stale);
            }
            *rc = moat_res_error_page(res, 504, lines, body);
            if (moat_ok(*rc)) {
                *rc = moat_buf_printf(
                    lines, "Cache-Status: moat; fwd=%s; detail=\"only-if-cached\"\r\n", fwd);
            }
            return 1;
        }
        if (!answered) {
            count(cx->cache, &cx->cache->st.misses);
        }
        if (req->method_id == MOAT_HTTP_M_HEAD) {
            fwd = "bypass"; /* a HEAD is answered, not stored: the body is what is kept */
        }
    } else if (!unsafe(req->method_id)) {
        return 0; /* OPTIONS, TRACE: neither stored nor invalidating */
    } else {
        fwd = NULL; /* fwd=method */
    }
    struct moat_cache_tee *t = tee_new(cx, req, key, klen, fwd);
    /* A GET goes to the origin without the client's conditionals, so that the full answer
     * can be kept (its 304 is worked out here), and with the stored validators. */
    int strip = req->method_id == MOAT_HTTP_M_GET &&
                (stale != NULL || moat_req_field(req, "range").p == NULL);
    if (t != NULL && !origin_fields(t, req, stale, strip)) {
        tee_free(t);
        t = NULL;
    }
    if (t == NULL) {
        if (stale != NULL) {
            if (answered) {
                pthread_mutex_lock(&cx->cache->mu);
                stale->bg = 0;
                pthread_mutex_unlock(&cx->cache->mu);
            }
            entry_release(stale);
        }
        return answered;
    }
    t->stale = stale;
    t->stale_if_error = stale_if_error;
    t->lines0 = moat_buf_len(lines);
    t->body0 = moat_buf_len(body);
    if (!answered && req->method_id == MOAT_HTTP_M_GET && cx->loop != NULL &&
        cx->origin.go != NULL && cx->conf->cache_lock_timeout_ms > 0 &&
        moat_req_field(req, "range").p == NULL) {
        /* Concurrent misses for the key make one origin request; the others wait for what it
         * stores (RFC 9111 §4 allows it; every CDN does it). */
        struct fill *f;
        enum fill_role role = fill_join(cx->cache, key, klen, &f);
        if (role == FILL_LEAD) {
            t->fill = f;
            t->lead = 1;
        } else if (role == FILL_WAIT) {
            if (t->stale != NULL) {
                entry_release(t->stale);
                t->stale = NULL;
                t->stale_if_error = 0;
            }
            if (wait_on(cx, t, f, req, res)) {
                return 1;
            }
            fill_put(cx->cache, f);
        }
    }
    *copy = *req;
    copy->exch = &t->base.ex;
    copy->fields = t->ofields;
    copy->nfields = t->nofields;
    if (answered) {
        /* The client has its answer; the revalidation answers nobody. */
        t->bgs = cx->bgs;
        t->base.inner = &sink;
        t->snap = moat_snapshot_ref(cx->snap);
        t->fwd = "stale";
        moat_log(MOAT_LVL_DEBUG, req->conn_id, "cache: revalidating %.*s in the background",
                 (int)(klen > 300 ? 300 : klen), key);
    }
    *tee = t;
    return answered;
}
