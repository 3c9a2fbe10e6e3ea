/*
 * test_gcra.c: the rate limiter's arithmetic (core/gcra.c): a quiet key takes its whole burst
 * at once and then one event per interval; a refusal says how long to wait and costs nothing;
 * a long pause refills no more than the burst; intervals of rates per second, minute and hour.
 */
#include "core/gcra.h"
#include "test.h"

TEST_CASE(interval_of_rates)
{
    EXPECT_INT(moat_rate_interval_us(&(struct moat_rate){.n = 10, .per_ms = 1000}), 100000);
    EXPECT_INT(moat_rate_interval_us(&(struct moat_rate){.n = 2, .per_ms = 60000}), 30000000);
    EXPECT_INT(moat_rate_interval_us(&(struct moat_rate){.n = 1, .per_ms = 3600000}),
               3600000000ULL);
    /* Faster than one a microsecond still has an interval. */
    EXPECT_INT(moat_rate_interval_us(&(struct moat_rate){.n = 100000000, .per_ms = 1000}), 1);
}

TEST_CASE(burst_then_steady)
{
    uint64_t tat = 0, wait = 0, t = 5000000, T = 100000; /* 10/s */
    for (int i = 0; i < 3; i++) {
        EXPECT_INT(moat_gcra_take(&tat, t, T, 3, &wait), 1);
        EXPECT_INT(wait, 0);
    }
    EXPECT_INT(moat_gcra_take(&tat, t, T, 3, &wait), 0);
    EXPECT_INT(wait, T); /* the first of the burst comes back after one interval */
    uint64_t before = tat;
    EXPECT_INT(moat_gcra_take(&tat, t + T / 2, T, 3, &wait), 0);
    EXPECT_INT(wait, T / 2);
    EXPECT_INT(tat, before); /* refused: nothing banked */
    EXPECT_INT(moat_gcra_take(&tat, t + T, T, 3, &wait), 1);
    EXPECT_INT(moat_gcra_take(&tat, t + T, T, 3, &wait), 0);
    EXPECT_INT(moat_gcra_take(&tat, t + 2 * T, T, 3, &wait), 1);
}

TEST_CASE(pause_refills_only_the_burst)
{
    uint64_t tat = 0, wait = 0, t = 1000000, T = 1000;
    EXPECT_INT(moat_gcra_take(&tat, t, T, 2, &wait), 1);
    t += 1000000000; /* a long quiet time */
    EXPECT_INT(moat_gcra_take(&tat, t, T, 2, &wait), 1);
    EXPECT_INT(moat_gcra_take(&tat, t, T, 2, &wait), 1);
    EXPECT_INT(moat_gcra_take(&tat, t, T, 2, &wait), 0);
}

TEST_CASE(burst_zero_means_one)
{
    uint64_t tat = 0, wait = 0;
    EXPECT_INT(moat_gcra_take(&tat, 10, 100, 0, &wait), 1);
    EXPECT_INT(moat_gcra_take(&tat, 10, 100, 0, &wait), 0);
    EXPECT_INT(wait, 100);
}

TEST_CASE(events_elsewhere_are_charged_up_to_a_burst)
{
    /* 6 per minute, burst 6: interval 10 s. Two taken here, three charged from elsewhere:
     * one left; then the next is refused. */
    uint64_t tat = 0, wait = 0, now = 1000000000ULL, iv = 10000000ULL;
    EXPECT(moat_gcra_take(&tat, now, iv, 6, &wait));
    EXPECT(moat_gcra_take(&tat, now, iv, 6, &wait));
    moat_gcra_charge(&tat, now, iv, 6, 3);
    EXPECT(moat_gcra_take(&tat, now, iv, 6, &wait));
    EXPECT(!moat_gcra_take(&tat, now, iv, 6, &wait));
    EXPECT_INT(wait, iv);
    /* Charging past a full burst stops there: a burst's worth of waiting at most. */
    uint64_t t2 = 0;
    moat_gcra_charge(&t2, now, iv, 6, 1000);
    EXPECT_INT(t2, now + 6 * iv);
    EXPECT(!moat_gcra_take(&t2, now, iv, 6, &wait));
    EXPECT(moat_gcra_take(&t2, now + iv, iv, 6, &wait)); /* one interval later, one again */
    /* Nothing charged, nothing changed. */
    uint64_t t3 = now + 5;
    moat_gcra_charge(&t3, now, iv, 6, 0);
    EXPECT_INT(t3, now + 5);
}

int main(void)
{
    RUN(interval_of_rates);
    RUN(burst_then_steady);
    RUN(pause_refills_only_the_burst);
    RUN(burst_zero_means_one);
    RUN(events_elsewhere_are_charged_up_to_a_burst);
    TEST_MAIN_END();
}
