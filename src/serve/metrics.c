/*
 * metrics.c: a worker's counters and the process-wide site and upstream slots (see metrics.h).
 */
#include "serve/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t moat_mx_bucket_ms[MOAT_MX_NBUCKET - 1] = {1,   2,   5,    10,   25,   50,   100,
                                                         250, 500, 1000, 2500, 5000, 10000};

const char *const moat_mx_hs_fail_name[MOAT_MX_HSF_COUNT] = {
    "no_common_protocol", "no_client_certificate", "client_certificate_refused", "timeout",
    "protocol"};

void moat_metrics_request(struct moat_metrics *m, unsigned slot, unsigned proto, int status,
                          enum moat_http_method method, uint64_t ms, uint64_t bytes)
{
    struct moat_mx_site *s = &m->sites[slot < MOAT_MX_SITES ? slot : MOAT_MX_SITES - 1];
    unsigned cls = status >= 100 && status < 600 ? (unsigned)(status / 100 - 1) : 4;
    unsigned meth = (unsigned)method < MOAT_HTTP_M_COUNT ? (unsigned)method : 0;
    moat_mx_add(&s->req[proto < MOAT_MX_NPROTO ? proto : 1][cls][meth], 1);
    moat_mx_add(&s->lat[moat_mx_bucket(ms)], 1);
    moat_mx_add(&s->lat_sum_ms, ms);
    moat_mx_add(&s->bytes, bytes);
}

unsigned moat_mx_bucket(uint64_t ms)
{
    unsigned b = 0;
    while (b < MOAT_MX_NBUCKET - 1 && ms > moat_mx_bucket_ms[b]) {
        b++;
    }
    return b;
}

void moat_metrics_upstream(struct moat_metrics *m, unsigned slot, int status, uint64_t ms)
{
    struct moat_mx_up *u = &m->ups[slot < MOAT_MX_UPS ? slot : MOAT_MX_UPS - 1];
    moat_mx_add(&u->answers[status >= 100 && status < 600 ? status / 100 - 1 : 4], 1);
    moat_mx_add(&u->lat[moat_mx_bucket(ms)], 1);
    moat_mx_add(&u->lat_sum_ms, ms);
}

void moat_metrics_handshake(struct moat_metrics *m, const char *version, const char *cipher,
                            const char *group, int resumed)
{
    version = version != NULL ? version : "";
    cipher = cipher != NULL ? cipher : "";
    group = group != NULL ? group : "";
    size_t n = atomic_load_explicit(&m->nhs, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        struct moat_mx_hs *h = &m->hs[i];
        if (h->resumed == resumed && strcmp(h->cipher, cipher) == 0 &&
            strcmp(h->group, group) == 0 && strcmp(h->version, version) == 0) {
            moat_mx_add(&h->n, 1);
            return;
        }
    }
    if (n == MOAT_MX_HS) {
        moat_mx_add(&m->hs_lost, 1);
        return;
    }
    struct moat_mx_hs *h = &m->hs[n];
    snprintf(h->version, sizeof(h->version), "%s", version);
    snprintf(h->cipher, sizeof(h->cipher), "%s", cipher);
    snprintf(h->group, sizeof(h->group), "%s", group);
    h->resumed = resumed;
    atomic_store_explicit(&h->n, 1, memory_order_relaxed);
    /* Release: a reader that sees the new count sees the entry's words. */
    atomic_store_explicit(&m->nhs, n + 1, memory_order_release);
}

/* ---- slots ---------------------------------------------------------------------------- */

/*
 * A table of names that hands out slots for as long as the process runs. Slot 0 is "" (sites:
 * the requests no site took), the last is "(other)" for names past the table; a name is one
 * allocation that is never freed, so a pointer to it stays good.
 */
struct slots {
    pthread_mutex_t mu;
    unsigned cap;          /* MOAT_MX_SITES, MOAT_MX_UPS */
    unsigned n;            /* given out, slot 0 included */
    const char *names[64]; /* [0, n) */
    size_t lens[64];       /* of each name's bytes (an upstream's has a NUL inside) */
};

static struct slots site_slots = {PTHREAD_MUTEX_INITIALIZER, MOAT_MX_SITES, 0, {0}, {0}};
static struct slots up_slots = {PTHREAD_MUTEX_INITIALIZER, MOAT_MX_UPS, 0, {0}, {0}};

_Static_assert(MOAT_MX_SITES <= 64 && MOAT_MX_UPS <= 64, "struct slots holds 64 names");

static unsigned slot_of(struct slots *t, const char *name, size_t len)
{
    pthread_mutex_lock(&t->mu);
    if (t->n == 0) {
        t->names[0] = "";
        t->lens[0] = 0;
        t->n = 1;
    }
    unsigned at = 1;
    while (at < t->n && !(t->lens[at] == len && memcmp(t->names[at], name, len) == 0)) {
        at++;
    }
    if (at == t->n) {
        char *copy = t->n < t->cap - 1 ? malloc(len + 1) : NULL;
        if (copy != NULL) {
            memcpy(copy, name, len);
            copy[len] = '\0';
            t->names[t->n] = copy;
            t->lens[t->n++] = len;
        } else {
            at = t->cap - 1; /* "(other)": the table is full (or memory is) */
        }
    }
    pthread_mutex_unlock(&t->mu);
    return at;
}

static const char *slot_name(struct slots *t, unsigned slot)
{
    if (slot == t->cap - 1) {
        return "(other)";
    }
    pthread_mutex_lock(&t->mu);
    const char *name = slot < t->n ? t->names[slot] : NULL;
    pthread_mutex_unlock(&t->mu);
    return name;
}

unsigned moat_mx_slot(const char *site)
{
    return slot_of(&site_slots, site, strlen(site));
}

const char *moat_mx_slot_name(unsigned slot)
{
    return slot_name(&site_slots, slot);
}

unsigned moat_mx_up_slot(const char *upstream, const char *server)
{
    char key[400];
    int n = snprintf(key, sizeof(key), "%s%c%s", upstream, '\0', server);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(key) ? (size_t)n : sizeof(key) - 1;
    return slot_of(&up_slots, key, len);
}

int moat_mx_up_slot_names(unsigned slot, const char **upstream, const char **server)
{
    const char *name = slot == 0 ? NULL : slot_name(&up_slots, slot);
    if (name == NULL) {
        return 0;
    }
    *upstream = name;
    *server = slot == MOAT_MX_UPS - 1 ? name : name + strlen(name) + 1;
    return 1;
}
