/*
 * test_group.c: upstream groups (upstream/group.c): how a request picks a server under each
 * balance (the smooth weighted round-robin order, least connections, the better of two random
 * ones, consistent hashing on the address, a header or a cookie), what passive health does
 * (max_fails in a row take a server out for fail_timeout, a success forgives, slow start eases
 * it back), max_conns, the per-request tried mask, and the words and Retry-After a 503 gets.
 *
 * The servers are 127.0.0.1 on distinct ports: a group resolves its servers but connects to
 * none, so nothing needs to listen. The clock is driven by hand.
 */
#include "upstream/group.h"

#include "core/log.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

#define PORT0 18001

/* A group of n servers 127.0.0.1:PORT0+i with the weights given (NULL: all 1). */
static struct moat_up_group *group_of(size_t n, const unsigned *weights, enum moat_up_balance b,
                                      struct moat_up_params *tweak)
{
    struct moat_up_server_spec sv[8];
    for (size_t i = 0; i < n && i < 8; i++) {
        sv[i] = (struct moat_up_server_spec){.host = "127.0.0.1",
                                             .port = PORT0 + (unsigned)i,
                                             .weight = weights != NULL ? weights[i] : 1};
    }
    struct moat_up_params p = tweak != NULL ? *tweak : (struct moat_up_params){0};
    p.name = p.name != NULL ? p.name : "app";
    p.servers = sv;
    p.nservers = n;
    p.balance = b;
    if (p.fail_timeout_ms == 0) {
        p.fail_timeout_ms = 10000;
    }
    if (p.max_fails == 0) {
        p.max_fails = 1;
    }
    struct moat_up_group *g = NULL;
    struct moat_err err = {0};
    if (!moat_ok(moat_up_group_new(&p, &g, &err))) {
        TEST__FAIL("moat_up_group_new: %s", err.msg);
        return NULL;
    }
    return g;
}

/* Pick with `key` (may be NULL for a balance that hashes nothing) and give it back at once. */
static size_t pick_done(struct moat_up_group *g, const struct moat_up_key *key, uint64_t now)
{
    static const struct moat_up_key none;
    size_t i = SIZE_MAX;
    enum moat_up_pick_rc rc = moat_up_pick(g, key != NULL ? key : &none, NULL, now, &i);
    if (rc != MOAT_UP_PICKED || i >= g->n) {
        TEST__FAIL("pick: rc %d, server %zu", rc, i);
        return SIZE_MAX;
    }
    moat_up_done(g, i);
    return i;
}

/* Pick and keep it in flight (the caller calls moat_up_done). */
static size_t pick_hold(struct moat_up_group *g, uint64_t now)
{
    static const struct moat_up_key none;
    size_t i = SIZE_MAX;
    enum moat_up_pick_rc rc = moat_up_pick(g, &none, NULL, now, &i);
    if (rc != MOAT_UP_PICKED || i >= g->n) {
        TEST__FAIL("pick: rc %d, server %zu", rc, i);
        return SIZE_MAX;
    }
    return i;
}

static unsigned active(const struct moat_up_group *g, size_t i)
{
    return atomic_load(&g->servers[i].active);
}

/* ---- building ---------------------------------------------------------------------------- */

TEST_CASE(a_group_names_its_servers)
{
    struct moat_up_group *g = group_of(2, NULL, MOAT_UP_ROUND_ROBIN, NULL);
    if (g == NULL) {
        return;
    }
    EXPECT_INT(g->n, 2);
    EXPECT_STR(g->servers[0].name, "127.0.0.1:18001");
    EXPECT_STR(g->servers[1].authority, "127.0.0.1:18002");
    EXPECT_STR(g->servers[0].host, "127.0.0.1");
    EXPECT_STR(moat_up_group_name(g), "app");
    EXPECT(g->ctx == NULL); /* no https server: no TLS context */
    EXPECT_INT(g->servers[0].weight, 1);
    moat_up_group_unref(g);

    /* An inline upstream is named by its server; a weight of 0 counts as 1. */
    struct moat_up_server_spec sv = {.host = "::1", .port = 9000, .weight = 0};
    struct moat_up_params p = {.servers = &sv, .nservers = 1};
    struct moat_err err = {0};
    g = NULL;
    EXPECT(moat_ok(moat_up_group_new(&p, &g, &err)));
    if (g != NULL) {
        EXPECT_STR(moat_up_group_name(g), "[::1]:9000");
        EXPECT_STR(g->servers[0].host, "::1");
        EXPECT_INT(g->servers[0].weight, 1);
        EXPECT_INT(g->refs, 1);
        EXPECT(moat_up_group_ref(g) == g);
        EXPECT_INT(g->refs, 2);
        moat_up_group_unref(g);
        EXPECT_INT(g->refs, 1);
        moat_up_group_unref(g);
    }
    moat_up_group_unref(NULL); /* does nothing */
}

TEST_CASE(a_group_refuses_bad_params)
{
    struct moat_up_group *g = (struct moat_up_group *)1;
    struct moat_err err = {0};
    struct moat_up_params p = {.nservers = 0};
    moat_rc rc = moat_up_group_new(&p, &g, &err);
    EXPECT_INT(rc.kind, MOAT_E_INTERNAL);
    EXPECT(g == NULL);
    EXPECT_STR(err.msg, "an upstream has 1 to 256 servers");

    /* A name that does not resolve is a configuration error at the upstream's place. */
    struct moat_up_server_spec sv[2] = {{.host = "127.0.0.1", .port = 1, .weight = 1},
                                        {.host = "not a host name", .port = 1, .weight = 1}};
    p = (struct moat_up_params){.name = "app", .servers = sv, .nservers = 2, .where = "m.conf:3:1"};
    err = (struct moat_err){0};
    g = (struct moat_up_group *)1;
    rc = moat_up_group_new(&p, &g, &err);
    EXPECT_INT(rc.kind, MOAT_E_CONFIG);
    EXPECT(g == NULL);
    EXPECT_STR(err.where, "m.conf:3:1");
    EXPECT(strncmp(err.msg, "upstream server \"not a host name\" cannot be resolved: ", 54) == 0);
}

/* ---- round robin -------------------------------------------------------------------------- */

TEST_CASE(round_robin_weights_3_to_1_are_smooth)
{
    unsigned w[2] = {3, 1};
    struct moat_up_group *g = group_of(2, w, MOAT_UP_ROUND_ROBIN, NULL);
    if (g == NULL) {
        return;
    }
    /* Smooth WRR (each step every server gains its weight, the richest pays the total):
     * a a b a, then again; never the lumpy a a a b. */
    static const size_t want[8] = {0, 0, 1, 0, 0, 0, 1, 0};
    EXPECT_INT(g->nschedule, 4);
    for (size_t k = 0; k < 8; k++) {
        size_t got = pick_done(g, NULL, 1000);
        if (got != want[k]) {
            TEST__FAIL("pick %zu: server %zu, want %zu", k, got, want[k]);
        }
    }
    EXPECT_INT(active(g, 0), 0);
    EXPECT_INT(active(g, 1), 0);
    moat_up_group_unref(g);
}

TEST_CASE(round_robin_weights_5_1_1_interleave)
{
    unsigned w[3] = {5, 1, 1};
    struct moat_up_group *g = group_of(3, w, MOAT_UP_ROUND_ROBIN, NULL);
    if (g == NULL) {
        return;
    }
    /* nginx's classic example: a a b a c a a */
    static const size_t want[7] = {0, 0, 1, 0, 2, 0, 0};
    for (size_t k = 0; k < 14; k++) {
        size_t got = pick_done(g, NULL, 1000);
        if (got != want[k % 7]) {
            TEST__FAIL("pick %zu: server %zu, want %zu", k, got, want[k % 7]);
        }
    }
    moat_up_group_unref(g);
}

TEST_CASE(round_robin_skips_a_server_that_is_out)
{
    struct moat_up_group *g = group_of(3, NULL, MOAT_UP_ROUND_ROBIN, NULL);
    if (g == NULL) {
        return;
    }
    moat_up_report(g, 1, 0, "connection refused", 1000, 7); /* max_fails 1: out */
    EXPECT(!moat_up_server_in(g, 1, 1000));
    size_t counts[3] = {0};
    for (int k = 0; k < 30; k++) {
        size_t i = pick_done(g, NULL, 1000);
        if (i < 3) {
            counts[i]++;
        }
    }
    EXPECT_INT(counts[1], 0);
    EXPECT_INT(counts[0] + counts[2], 30);
    EXPECT(counts[0] >= 10 && counts[2] >= 10); /* its turns go to the others */
    moat_up_group_unref(g);
}

/* ---- least connections ------------------------------------------------------------------- */

TEST_CASE(least_conn_prefers_fewer_in_flight)
{
    struct moat_up_group *g = group_of(2, NULL, MOAT_UP_LEAST_CONN, NULL);
    if (g == NULL) {
        return;
    }
    size_t a = pick_hold(g, 1000);
    if (a >= 2) {
        moat_up_group_unref(g);
        return;
    }
    EXPECT_INT(active(g, a), 1);
    size_t b = pick_hold(g, 1000);
    EXPECT_INT(b, 1 - a); /* the idle one */
    size_t c = pick_hold(g, 1000);
    EXPECT(c < 2); /* 1 and 1: either; now one has 2 */
    if (c < 2) {
        size_t d = pick_hold(g, 1000);
        EXPECT_INT(d, 1 - c);
        moat_up_done(g, d);
        moat_up_done(g, c);
    }
    /* a finishes: it has fewer again, every time */
    moat_up_done(g, a);
    for (int k = 0; k < 10; k++) {
        EXPECT_INT(pick_done(g, NULL, 1000), a);
    }
    moat_up_done(g, b);
    EXPECT_INT(active(g, 0), 0);
    EXPECT_INT(active(g, 1), 0);
    moat_up_group_unref(g);
}

TEST_CASE(least_conn_counts_weights)
{
    unsigned w[2] = {2, 1};
    struct moat_up_group *g = group_of(2, w, MOAT_UP_LEAST_CONN, NULL);
    if (g == NULL) {
        return;
    }
    /* in flight / weight: server 0 takes two for each one of server 1 */
    size_t held[3];
    held[0] = pick_hold(g, 1000);
    held[1] = pick_hold(g, 1000);
    held[2] = pick_hold(g, 1000);
    EXPECT_INT(active(g, 0), 2);
    EXPECT_INT(active(g, 1), 1);
    for (size_t k = 0; k < 3; k++) {
        if (held[k] < 2) {
            moat_up_done(g, held[k]);
        }
    }
    moat_up_group_unref(g);
}

TEST_CASE(ties_spread_over_servers)
{
    struct moat_up_group *g = group_of(3, NULL, MOAT_UP_LEAST_CONN, NULL);
    if (g == NULL) {
        return;
    }
    size_t counts[3] = {0};
    for (int k = 0; k < 900; k++) {
        size_t i = pick_done(g, NULL, 1000);
        if (i < 3) {
            counts[i]++;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        if (counts[i] < 200) {
            TEST__FAIL("server %zu got %zu of 900 ties", i, counts[i]);
        }
    }
    moat_up_group_unref(g);
}

/* ---- random two -------------------------------------------------------------------------- */

TEST_CASE(random_two_spreads)
{
    struct moat_up_group *g = group_of(3, NULL, MOAT_UP_RANDOM_TWO, NULL);
    if (g == NULL) {
        return;
    }
    size_t counts[3] = {0};
    for (int k = 0; k < 3000; k++) {
        size_t i = pick_done(g, NULL, 1000);
        if (i < 3) {
            counts[i]++;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        if (counts[i] < 700) {
            TEST__FAIL("server %zu got %zu of 3000", i, counts[i]);
        }
    }
    /* Held requests: the lighter of the two compared wins, so loads stay close. */
    size_t held[300];
    for (size_t k = 0; k < 300; k++) {
        held[k] = pick_hold(g, 1000);
    }
    for (size_t i = 0; i < 3; i++) {
        if (active(g, i) < 80 || active(g, i) > 120) {
            TEST__FAIL("server %zu holds %u of 300", i, active(g, i));
        }
    }
    for (size_t k = 0; k < 300; k++) {
        if (held[k] < 3) {
            moat_up_done(g, held[k]);
        }
    }
    moat_up_group_unref(g);

    /* With two servers both are always compared: the idle one always wins. */
    g = group_of(2, NULL, MOAT_UP_RANDOM_TWO, NULL);
    if (g == NULL) {
        return;
    }
    for (int k = 0; k < 50; k++) {
        size_t a = pick_hold(g, 1000);
        size_t b = pick_hold(g, 1000);
        if (a >= 2 || b >= 2) {
            break;
        }
        EXPECT_INT(b, 1 - a);
        moat_up_done(g, a);
        moat_up_done(g, b);
    }
    moat_up_group_unref(g);
}

/* ---- consistent hashing ------------------------------------------------------------------ */

#define NKEYS 1000

static void key_text(char *out, size_t cap, int k)
{
    snprintf(out, cap, "10.%d.%d.%d", k / 65536 % 256, k / 256 % 256, k % 256);
}

/* Server of key k under g: the key goes into client_ip or value by the balance. */
static size_t hashed(struct moat_up_group *g, int k, uint64_t now)
{
    char t[64];
    key_text(t, sizeof(t), k);
    struct moat_up_key key = {0};
    if (g->p.balance == MOAT_UP_HASH_IP) {
        key.client_ip = moat_slice_cstr(t);
        key.value = moat_slice_cstr("noise"); /* ignored */
    } else {
        key.client_ip = moat_slice_cstr("192.0.2.1"); /* ignored */
        key.value = moat_slice_cstr(t);
    }
    return pick_done(g, &key, now);
}

static void hash_case(enum moat_up_balance b)
{
    struct moat_up_params tw = {.hash_key = "X-Key", .fail_timeout_ms = 5000};
    struct moat_up_group *g = group_of(3, NULL, b, &tw);
    if (g == NULL) {
        return;
    }
    static size_t before[NKEYS];
    size_t counts[3] = {0};
    for (int k = 0; k < NKEYS; k++) {
        before[k] = hashed(g, k, 1000);
        if (before[k] < 3) {
            counts[before[k]]++;
        }
    }
    /* the same key, the same server, every time */
    for (int k = 0; k < NKEYS; k += 7) {
        EXPECT_INT(hashed(g, k, 1000), before[k]);
    }
    for (size_t i = 0; i < 3; i++) {
        if (counts[i] < 150) {
            TEST__FAIL("balance %d: server %zu has %zu of %d keys", b, i, counts[i], NKEYS);
        }
    }
    /* Server 1 out: only its keys move, and none of them to it. */
    moat_up_report(g, 1, 0, "connection refused", 1000, 0);
    size_t moved = 0, moved_wrongly = 0;
    for (int k = 0; k < NKEYS; k++) {
        size_t now_on = hashed(g, k, 2000);
        if (now_on != before[k]) {
            moved++;
            moved_wrongly += before[k] != 1 || now_on == 1;
        }
    }
    EXPECT_INT(moved, counts[1]);
    EXPECT_INT(moved_wrongly, 0);
    /* Back after fail_timeout: every key is home again. */
    size_t home = 0;
    for (int k = 0; k < NKEYS; k++) {
        home += hashed(g, k, 6000) == before[k];
    }
    EXPECT_INT(home, NKEYS);
    moat_up_group_unref(g);
}

TEST_CASE(hash_ip_is_consistent)
{
    hash_case(MOAT_UP_HASH_IP);
}

TEST_CASE(hash_header_is_consistent)
{
    hash_case(MOAT_UP_HASH_HEADER);
}

TEST_CASE(hash_cookie_is_consistent)
{
    hash_case(MOAT_UP_HASH_COOKIE);
}

/* The ring follows the servers' names, not their places: listing them in another order or
 * adding one moves only the keys that must move. */
TEST_CASE(hash_ring_follows_names)
{
    struct moat_up_server_spec a[4] = {{.host = "127.0.0.1", .port = 18001, .weight = 1},
                                       {.host = "127.0.0.1", .port = 18002, .weight = 1},
                                       {.host = "127.0.0.1", .port = 18003, .weight = 1},
                                       {.host = "127.0.0.1", .port = 18004, .weight = 1}};
    struct moat_up_server_spec b[3] = {a[2], a[0], a[1]};
    struct moat_up_params p = {
        .name = "x", .servers = a, .nservers = 3, .balance = MOAT_UP_HASH_IP};
    struct moat_up_group *g3 = NULL, *r3 = NULL, *g4 = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_up_group_new(&p, &g3, &err)));
    p.nservers = 4;
    EXPECT(moat_ok(moat_up_group_new(&p, &g4, &err)));
    p.servers = b;
    p.nservers = 3;
    EXPECT(moat_ok(moat_up_group_new(&p, &r3, &err)));
    if (g3 == NULL || r3 == NULL || g4 == NULL) {
        moat_up_group_unref(g3);
        moat_up_group_unref(r3);
        moat_up_group_unref(g4);
        return;
    }
    size_t same = 0, to_new = 0, moved_elsewhere = 0;
    for (int k = 0; k < NKEYS; k++) {
        size_t x = hashed(g3, k, 1000), y = hashed(r3, k, 1000), z = hashed(g4, k, 1000);
        if (x >= 3 || y >= 3 || z >= 4) {
            break;
        }
        same += strcmp(g3->servers[x].name, r3->servers[y].name) == 0;
        if (z != x) {
            to_new += z == 3;
            moved_elsewhere += z != 3;
        }
    }
    EXPECT_INT(same, NKEYS);
    EXPECT_INT(moved_elsewhere, 0);
    EXPECT(to_new > 100 && to_new < 400); /* about a quarter go to the new server */
    moat_up_group_unref(g3);
    moat_up_group_unref(r3);
    moat_up_group_unref(g4);
}

TEST_CASE(hash_weights_give_a_bigger_share)
{
    unsigned w[2] = {3, 1};
    struct moat_up_group *g = group_of(2, w, MOAT_UP_HASH_IP, NULL);
    if (g == NULL) {
        return;
    }
    size_t on0 = 0;
    for (int k = 0; k < NKEYS; k++) {
        on0 += hashed(g, k, 1000) == 0;
    }
    EXPECT(on0 > 650 && on0 < 850);
    moat_up_group_unref(g);
}

/* No header or cookie sent: nothing to stick to, so round robin. */
TEST_CASE(hash_without_a_value_goes_round)
{
    struct moat_up_params tw = {.hash_key = "sid"};
    struct moat_up_group *g = group_of(3, NULL, MOAT_UP_HASH_COOKIE, &tw);
    if (g == NULL) {
        return;
    }
    struct moat_up_key key = {.client_ip = moat_slice_cstr("192.0.2.1")};
    size_t counts[3] = {0};
    for (int k = 0; k < 30; k++) {
        size_t i = pick_done(g, &key, 1000);
        if (i < 3) {
            counts[i]++;
        }
    }
    EXPECT_INT(counts[0], 10);
    EXPECT_INT(counts[1], 10);
    EXPECT_INT(counts[2], 10);
    moat_up_group_unref(g);
}

/* ---- passive health ---------------------------------------------------------------------- */

TEST_CASE(max_fails_in_a_row_take_a_server_out_for_fail_timeout)
{
    struct moat_up_params tw = {.max_fails = 2, .fail_timeout_ms = 1000};
    struct moat_up_group *g = group_of(2, NULL, MOAT_UP_ROUND_ROBIN, &tw);
    if (g == NULL) {
        return;
    }
    moat_up_report(g, 0, 0, "connection refused", 100, 0);
    EXPECT(moat_up_server_in(g, 0, 100)); /* one failure keeps it in */
    EXPECT_INT(g->servers[0].fails, 1);
    moat_up_report(g, 0, 0, "connection refused", 200, 0);
    EXPECT(!moat_up_server_in(g, 0, 200)); /* two take it out */
    EXPECT(!moat_up_server_in(g, 0, 1199));
    EXPECT(moat_up_server_in(g, 0, 1200)); /* until fail_timeout has passed */
    EXPECT(moat_up_server_in(g, 1, 200));  /* the other one is not concerned */
    EXPECT_INT(g->servers[0].fails, 0);    /* the count starts again when it is back */
    for (int k = 0; k < 6; k++) {
        EXPECT_INT(pick_done(g, NULL, 500), 1);
    }

    /* A success in between forgives: failures must come in a row. */
    moat_up_report(g, 1, 0, "timed out", 2000, 0);
    moat_up_report(g, 1, 1, NULL, 2001, 0);
    EXPECT_INT(g->servers[1].fails, 0);
    moat_up_report(g, 1, 0, "timed out", 2002, 0);
    EXPECT(moat_up_server_in(g, 1, 2002));
    moat_up_report(g, 1, 0, "timed out", 2003, 0);
    EXPECT(!moat_up_server_in(g, 1, 2003));
    moat_up_group_unref(g);
}

TEST_CASE(a_reload_keeps_what_was_learnt_of_each_server)
{
    struct moat_up_params tw = {.max_fails = 1, .fail_timeout_ms = 1000};
    struct moat_up_group *old = group_of(3, NULL, MOAT_UP_ROUND_ROBIN, &tw);
    if (old == NULL) {
        return;
    }
    moat_up_report(old, 1, 0, "connection refused", 100, 0);
    atomic_store(&old->servers[2].check_down, 1);
    EXPECT(!moat_up_server_in(old, 1, 100));
    /* The new configuration drops the first server and keeps the other two (indexes shift),
     * with health checks now off. */
    struct moat_up_server_spec sv[2] = {{.host = "127.0.0.1", .port = PORT0 + 1, .weight = 1},
                                        {.host = "127.0.0.1", .port = PORT0 + 2, .weight = 1}};
    struct moat_up_params p = {
        .name = "app", .servers = sv, .nservers = 2, .max_fails = 1, .fail_timeout_ms = 1000};
    struct moat_up_group *g = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_up_group_new(&p, &g, &err)));
    if (g == NULL) {
        moat_up_group_unref(old);
        return;
    }
    moat_up_group_inherit(g, old);
    EXPECT(!moat_up_server_in(g, 0, 500)); /* still out, until the old deadline */
    EXPECT(moat_up_server_in(g, 0, 1100));
    /* The active verdict needs checks on both sides: without checks it would never clear. */
    EXPECT(moat_up_server_in(g, 1, 500));
    moat_up_group_unref(g);

    /* With checks on both sides the active verdict goes over too. */
    struct moat_up_params tc = {.max_fails = 1, .fail_timeout_ms = 1000, .check_path = "/h"};
    struct moat_up_group *a = group_of(3, NULL, MOAT_UP_ROUND_ROBIN, &tc);
    struct moat_up_group *b = group_of(3, NULL, MOAT_UP_ROUND_ROBIN, &tc);
    if (a != NULL && b != NULL) {
        atomic_store(&a->servers[2].check_down, 1);
        moat_up_group_inherit(b, a);
        EXPECT(!moat_up_server_in(b, 2, 500));
        EXPECT(moat_up_server_in(b, 0, 500));
    }
    moat_up_group_unref(a);
    moat_up_group_unref(b);
    moat_up_group_unref(old);
}

TEST_CASE(max_fails_0_never_takes_a_server_out)
{
    struct moat_up_server_spec sv = {.host = "127.0.0.1", .port = 18001, .weight = 1};
    struct moat_up_params p = {.servers = &sv, .nservers = 1, .max_fails = 0};
    struct moat_up_group *g = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_up_group_new(&p, &g, &err)));
    if (g == NULL) {
        return;
    }
    for (int k = 0; k < 20; k++) {
        moat_up_report(g, 0, 0, "connection refused", 100 + (uint64_t)k, 0);
    }
    EXPECT(moat_up_server_in(g, 0, 200));
    EXPECT_INT(pick_done(g, NULL, 200), 0);
    moat_up_group_unref(g);
}

TEST_CASE(retry_after_and_the_words_for_the_log)
{
    struct moat_up_params tw = {.fail_timeout_ms = 5500};
    struct moat_up_group *g = group_of(2, NULL, MOAT_UP_ROUND_ROBIN, &tw);
    if (g == NULL) {
        return;
    }
    char line[512];
    /* all in: nothing to wait for */
    EXPECT_INT(moat_up_retry_after(g, 100), 1);
    moat_up_describe_down(g, 100, line, sizeof(line));
    EXPECT_STR(line, "127.0.0.1:18001: busy; 127.0.0.1:18002: busy");

    moat_up_report(g, 0, 0, "connection refused", 100, 0); /* out until 5600 */
    moat_up_report(g, 1, 0, "timed out", 2100, 0);         /* out until 7600 */
    EXPECT_INT(moat_up_retry_after(g, 2100), 4);           /* 3.5 s, rounded up */
    EXPECT_INT(moat_up_retry_after(g, 5000), 1);
    moat_up_describe_down(g, 2100, line, sizeof(line));
    EXPECT_STR(line, "127.0.0.1:18001: out for 3500ms more (connection refused); "
                     "127.0.0.1:18002: out for 5500ms more (timed out)");
    /* server 0 back at 5600; server 1 still out: a 503 now would say 1 s at most */
    EXPECT_INT(moat_up_retry_after(g, 5600), 1);
    moat_up_describe_down(g, 5600, line, sizeof(line));
    EXPECT_STR(line, "127.0.0.1:18001: connection refused; "
                     "127.0.0.1:18002: out for 2000ms more (timed out)");

    /* failing its active health check: the checks' rhythm says when it may be back */
    g->p.check_interval_ms = 3000;
    g->p.check_rise = 2;
    atomic_store(&g->servers[0].check_down, 1);
    atomic_store(&g->servers[0].why, "status 500");
    EXPECT(!moat_up_server_in(g, 0, 6000));
    EXPECT(!moat_up_server_in(g, 0, 20000));     /* until a check says otherwise */
    EXPECT_INT(moat_up_retry_after(g, 6000), 2); /* server 1 is back at 7600 first */
    moat_up_describe_down(g, 6000, line, sizeof(line));
    EXPECT_STR(line, "127.0.0.1:18001: failing its health check (status 500); "
                     "127.0.0.1:18002: out for 1600ms more (timed out)");
    atomic_store(&g->servers[1].check_down, 1);
    EXPECT_INT(moat_up_retry_after(g, 6000), 6); /* 3 s x rise 2 */

    /* a short buffer is cut, never overrun */
    char tiny[20];
    moat_up_describe_down(g, 6000, tiny, sizeof(tiny));
    EXPECT_STR(tiny, "127.0.0.1:18001: fa");
    moat_up_group_unref(g);

    /* a very long wait is capped at an hour */
    struct moat_up_params longer = {.fail_timeout_ms = 7200000};
    g = group_of(1, NULL, MOAT_UP_ROUND_ROBIN, &longer);
    if (g != NULL) {
        moat_up_report(g, 0, 0, "connection refused", 100, 0);
        EXPECT_INT(moat_up_retry_after(g, 100), 3600);
        moat_up_group_unref(g);
    }
}

TEST_CASE(slow_start_eases_a_server_back_in)
{
    struct moat_up_params tw = {.fail_timeout_ms = 1000, .slow_start_ms = 10000};
    struct moat_up_group *g = group_of(2, NULL, MOAT_UP_ROUND_ROBIN, &tw);
    if (g == NULL) {
        return;
    }
    moat_up_report(g, 0, 0, "connection refused", 0, 0); /* out until 1000 */
    /* just back: the other server takes everything */
    size_t on0 = 0;
    for (int k = 0; k < 100; k++) {
        on0 += pick_done(g, NULL, 1000) == 0;
    }
    EXPECT_INT(on0, 0);
    /* On the way, a share that grows with the time it has been back: each of its turns is
     * taken with the chance elapsed / slow_start (0.2 then 0.7 here), the others' never. */
    size_t early = 0, late = 0;
    for (int k = 0; k < 2000; k++) {
        early += pick_done(g, NULL, 3000) == 0;
    }
    for (int k = 0; k < 2000; k++) {
        late += pick_done(g, NULL, 8000) == 0;
    }
    if (!(early > 150 && early < 550 && late > 650 && late < 1000)) {
        TEST__FAIL("picks of server 0 out of 2000: %zu at 20%%, %zu at 70%%", early, late);
    }
    /* after slow_start: its whole share */
    on0 = 0;
    for (int k = 0; k < 100; k++) {
        on0 += pick_done(g, NULL, 11000) == 0;
    }
    EXPECT_INT(on0, 50);
    moat_up_group_unref(g);
}

/* ---- limits and the tried mask ----------------------------------------------------------- */

TEST_CASE(max_conns_makes_a_server_busy)
{
    struct moat_up_params tw = {.max_conns = 1};
    struct moat_up_group *g = group_of(1, NULL, MOAT_UP_ROUND_ROBIN, &tw);
    if (g == NULL) {
        return;
    }
    static const struct moat_up_key none;
    size_t i = SIZE_MAX, j = SIZE_MAX;
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &i), MOAT_UP_PICKED);
    EXPECT_INT(i, 0);
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &j), MOAT_UP_ALL_BUSY);
    EXPECT_INT(active(g, 0), 1); /* a refused pick counts nothing */
    moat_up_done(g, 0);
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &j), MOAT_UP_PICKED);
    EXPECT_INT(j, 0);
    moat_up_done(g, 0);
    moat_up_group_unref(g);

    /* Two servers: the second request goes to the free one, the third waits. */
    g = group_of(2, NULL, MOAT_UP_LEAST_CONN, &tw);
    if (g == NULL) {
        return;
    }
    size_t a = SIZE_MAX, b = SIZE_MAX, c = SIZE_MAX;
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &a), MOAT_UP_PICKED);
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &b), MOAT_UP_PICKED);
    EXPECT(a < 2 && b == 1 - a);
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &c), MOAT_UP_ALL_BUSY);
    if (a < 2 && b < 2) {
        moat_up_done(g, b);
        EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &c), MOAT_UP_PICKED);
        EXPECT_INT(c, b);
        moat_up_done(g, c);
        moat_up_done(g, a);
    }
    moat_up_group_unref(g);
}

TEST_CASE(the_tried_mask_and_what_is_left)
{
    struct moat_up_group *g = group_of(3, NULL, MOAT_UP_ROUND_ROBIN, NULL);
    if (g == NULL) {
        return;
    }
    static const struct moat_up_key none;
    uint64_t tried[MOAT_UP_MAX_SERVERS / 64] = {0};
    tried[0] = (1u << 0) | (1u << 1);
    for (int k = 0; k < 9; k++) {
        size_t i = SIZE_MAX;
        EXPECT_INT(moat_up_pick(g, &none, tried, 100, &i), MOAT_UP_PICKED);
        EXPECT_INT(i, 2);
        moat_up_done(g, i);
    }
    tried[0] |= 1u << 2;
    size_t i = SIZE_MAX;
    EXPECT_INT(moat_up_pick(g, &none, tried, 100, &i), MOAT_UP_ALL_TRIED);
    /* server 2 out and the others tried: still "all tried" (something is up) */
    tried[0] = (1u << 0) | (1u << 1);
    moat_up_report(g, 2, 0, "connection refused", 100, 0);
    EXPECT_INT(moat_up_pick(g, &none, tried, 100, &i), MOAT_UP_ALL_TRIED);
    /* nothing tried but every server out */
    moat_up_report(g, 0, 0, "connection refused", 100, 0);
    moat_up_report(g, 1, 0, "connection refused", 100, 0);
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &i), MOAT_UP_NONE_UP);
    EXPECT_INT(moat_up_pick(g, &none, tried, 100, &i), MOAT_UP_NONE_UP);
    EXPECT_INT(active(g, 0) + active(g, 1) + active(g, 2), 0);
    /* fail_timeout later they are all back */
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100 + 10000, &i), MOAT_UP_PICKED);
    moat_up_done(g, i);
    moat_up_group_unref(g);
}

/* A server beyond the first 64 has its bit in the next word of the mask. */
TEST_CASE(the_tried_mask_spans_words)
{
    enum { N = 70 };
    struct moat_up_server_spec sv[N];
    for (unsigned k = 0; k < N; k++) {
        sv[k] = (struct moat_up_server_spec){.host = "127.0.0.1", .port = 20000 + k, .weight = 1};
    }
    struct moat_up_params p = {.name = "wide", .servers = sv, .nservers = N, .max_fails = 1};
    struct moat_up_group *g = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_up_group_new(&p, &g, &err)));
    if (g == NULL) {
        return;
    }
    static const struct moat_up_key none;
    uint64_t tried[MOAT_UP_MAX_SERVERS / 64] = {~0ULL, (1ULL << (N - 64)) - 1, 0, 0};
    tried[1] &= ~(1ULL << (67 - 64)); /* all but server 67 */
    size_t i = SIZE_MAX;
    EXPECT_INT(moat_up_pick(g, &none, tried, 100, &i), MOAT_UP_PICKED);
    EXPECT_INT(i, 67);
    moat_up_done(g, i);
    moat_up_group_unref(g);
}

int main(void)
{
    moat_log_set_level(MOAT_LVL_ERROR); /* "taken out" lines are WARN */
    RUN(a_group_names_its_servers);
    RUN(a_group_refuses_bad_params);
    RUN(round_robin_weights_3_to_1_are_smooth);
    RUN(round_robin_weights_5_1_1_interleave);
    RUN(round_robin_skips_a_server_that_is_out);
    RUN(least_conn_prefers_fewer_in_flight);
    RUN(least_conn_counts_weights);
    RUN(ties_spread_over_servers);
    RUN(random_two_spreads);
    RUN(hash_ip_is_consistent);
    RUN(hash_header_is_consistent);
    RUN(hash_cookie_is_consistent);
    RUN(hash_ring_follows_names);
    RUN(hash_weights_give_a_bigger_share);
    RUN(hash_without_a_value_goes_round);
    RUN(max_fails_in_a_row_take_a_server_out_for_fail_timeout);
    RUN(max_fails_0_never_takes_a_server_out);
    RUN(a_reload_keeps_what_was_learnt_of_each_server);
    RUN(retry_after_and_the_words_for_the_log);
    RUN(slow_start_eases_a_server_back_in);
    RUN(max_conns_makes_a_server_busy);
    RUN(the_tried_mask_and_what_is_left);
    RUN(the_tried_mask_spans_words);
    TEST_MAIN_END();
}
