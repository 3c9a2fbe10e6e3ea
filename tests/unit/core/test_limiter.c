/*
 * test_limiter.c: the shared limits table (core/limiter.c): rates and connection counts per
 * key, keys apart from each other; a flood of new keys neither grows the table nor drops a
 * key that holds connections (it is let through and counted as overflow instead); quiet keys
 * are forgotten for free, rate states of busy ones only when they must be (evicted); and
 * threads taking and giving back connections leave every count at zero.
 */
#include "core/limiter.h"
#include "test.h"

#include <pthread.h>
#include <stdio.h>

static const uint8_t seed[16] = {7, 1, 2, 3};

static uint64_t key_of(struct moat_limiter *l, unsigned n)
{
    char b[32];
    int len = snprintf(b, sizeof(b), "client-%u", n);
    return moat_limiter_key(l, b, (size_t)len);
}

TEST_CASE(rates_per_key)
{
    struct moat_limiter *l = moat_limiter_new(1024, seed);
    uint64_t a = key_of(l, 1), b = key_of(l, 2), wait;
    EXPECT(a != b && a != 0);
    EXPECT_INT(moat_limiter_take(l, a, 1000, 100, 2, &wait), 1);
    EXPECT_INT(moat_limiter_take(l, a, 1000, 100, 2, &wait), 1);
    EXPECT_INT(moat_limiter_take(l, a, 1000, 100, 2, &wait), 0);
    EXPECT_INT(wait, 100);
    EXPECT_INT(moat_limiter_take(l, b, 1000, 100, 2, &wait), 1);
    EXPECT_INT(moat_limiter_take(l, a, 1100, 100, 2, &wait), 1);
    moat_limiter_free(l);
}

TEST_CASE(connections_per_key)
{
    struct moat_limiter *l = moat_limiter_new(64, seed);
    uint64_t a = key_of(l, 1);
    EXPECT_INT(moat_limiter_conn_take(l, a, 2), 1);
    EXPECT_INT(moat_limiter_conn_take(l, a, 2), 1);
    EXPECT_INT(moat_limiter_conn_take(l, a, 2), 0);
    moat_limiter_conn_put(l, a);
    EXPECT_INT(moat_limiter_conn_take(l, a, 2), 1);
    moat_limiter_conn_put(l, a);
    moat_limiter_conn_put(l, a);
    moat_limiter_conn_put(l, a); /* one too many: no underflow */
    EXPECT_INT(moat_limiter_conn_take(l, a, 1), 1);
    moat_limiter_free(l);
}

/* Many more keys than slots, each holding a connection: none is dropped, the rest pass. */
TEST_CASE(full_table_lets_through)
{
    struct moat_limiter *l = moat_limiter_new(64, seed); /* 64 stripes of PROBE slots */
    unsigned counted = 0, through = 0;
    for (unsigned i = 0; i < 5000; i++) {
        int got = moat_limiter_conn_take(l, key_of(l, i), 1);
        counted += got == 1;
        through += got == -1;
    }
    EXPECT(counted >= 64 && counted <= 64 * 8);
    EXPECT_INT(counted + through, 5000);
    struct moat_limiter_stats st;
    moat_limiter_stats(l, &st);
    EXPECT_INT(st.overflow, through);
    /* The counted keys still hold their count: a second connection of the first is refused
     * (it was counted: the table was empty then). */
    EXPECT_INT(moat_limiter_conn_take(l, key_of(l, 0), 1), 0);
    moat_limiter_free(l);
}

TEST_CASE(quiet_keys_are_forgotten_busy_rates_evicted)
{
    struct moat_limiter *l = moat_limiter_new(64, seed);
    uint64_t wait;
    /* Rate states that run out by t = 2000: reusable without eviction later. */
    for (unsigned i = 0; i < 3000; i++) {
        moat_limiter_take(l, key_of(l, i), 1000, 1000, 1, &wait);
    }
    struct moat_limiter_stats st;
    moat_limiter_stats(l, &st);
    EXPECT(st.evicted > 0); /* 3000 live states in 512 slots */
    unsigned long long before = st.evicted;
    /* Each new key's state has run out before the next comes: none needs an eviction. */
    for (unsigned i = 3000; i < 6000; i++) {
        EXPECT_INT(moat_limiter_take(l, key_of(l, i), 5000 + i * 2000ULL, 1000, 1, &wait), 1);
    }
    moat_limiter_stats(l, &st);
    EXPECT_INT(st.evicted, before); /* all the old ones were quiet by then */
    moat_limiter_free(l);
}

static struct moat_limiter *shared;

static void *churn(void *arg)
{
    unsigned base = (unsigned)(size_t)arg;
    for (unsigned round = 0; round < 2000; round++) {
        uint64_t k = key_of(shared, base + round % 50);
        if (moat_limiter_conn_take(shared, k, 1000) == 1) {
            moat_limiter_conn_put(shared, k);
        }
    }
    return NULL;
}

TEST_CASE(threads_leave_counts_at_zero)
{
    shared = moat_limiter_new(4096, seed);
    pthread_t t[4];
    for (size_t i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, churn, (void *)(i % 2 * 25));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    /* Every key can take its full count again. */
    for (unsigned i = 0; i < 75; i++) {
        EXPECT_INT(moat_limiter_conn_take(shared, key_of(shared, i), 1), 1);
    }
    moat_limiter_free(shared);
}

int main(void)
{
    RUN(rates_per_key);
    RUN(connections_per_key);
    RUN(full_table_lets_through);
    RUN(quiet_keys_are_forgotten_busy_rates_evicted);
    RUN(threads_leave_counts_at_zero);
    TEST_MAIN_END();
}
