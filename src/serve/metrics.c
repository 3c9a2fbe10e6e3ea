/*
 * metrics.c: a worker's counters and the process-wide site slots (see metrics.h).
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
    size_t b = 0;
    while (b < MOAT_MX_NBUCKET - 1 && ms > moat_mx_bucket_ms[b]) {
        b++;
    }
    moat_mx_add(&s->lat[b], 1);
    moat_mx_add(&s->lat_sum_ms, ms);
    moat_mx_add(&s->bytes, bytes);
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

/* ---- site slots ------------------------------------------------------------------------ */

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *slot_names[MOAT_MX_SITES - 1]; /* owned copies, but [0] ("") */
static unsigned nslots;                           /* given out, slot 0 included */

unsigned moat_mx_slot(const char *site)
{
    pthread_mutex_lock(&slots_mu);
    if (nslots == 0) {
        slot_names[0] = "";
        nslots = 1;
    }
    unsigned at = 1;
    while (at < nslots && strcmp(slot_names[at], site) != 0) {
        at++;
    }
    if (at == nslots) {
        char *copy = nslots < MOAT_MX_SITES - 1 ? strdup(site) : NULL;
        if (copy != NULL) {
            slot_names[nslots++] = copy;
        } else {
            at = MOAT_MX_SITES - 1; /* "(other)": the table is full (or memory is) */
        }
    }
    pthread_mutex_unlock(&slots_mu);
    return at;
}

const char *moat_mx_slot_name(unsigned slot)
{
    if (slot == MOAT_MX_SITES - 1) {
        return "(other)";
    }
    pthread_mutex_lock(&slots_mu);
    const char *name = slot < nslots ? slot_names[slot] : NULL;
    pthread_mutex_unlock(&slots_mu);
    return name;
}
