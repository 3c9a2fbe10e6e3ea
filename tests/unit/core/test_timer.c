/* Unit tests for core/timer.c: ordering, lazy re-arm, disarm, re-arm from a callback. */
#include "core/timer.h"
#include "test.h"

#include <stdlib.h>

static int fired[64];
static int nfired;
static struct moat_timers *cur;
static uint64_t cur_now;

static void record(struct moat_timer *t)
{
    fired[nfired++] = (int)(long)t->data;
}

TEST_CASE(fires_in_deadline_order)
{
    struct moat_timers ts;
    moat_timers_init(&ts);
    struct moat_timer t[5];
    uint64_t due[5] = {50, 10, 40, 20, 30};
    nfired = 0;
    for (int i = 0; i < 5; i++) {
        moat_timer_init(&t[i], record, (void *)(long)due[i]);
        EXPECT(moat_ok(moat_timer_arm(&ts, &t[i], due[i])));
    }
    EXPECT_INT(moat_timers_wait_ms(&ts, 0), 10);
    moat_timers_run(&ts, 25);
    EXPECT_INT(nfired, 2);
    EXPECT_INT(fired[0], 10);
    EXPECT_INT(fired[1], 20);
    moat_timers_run(&ts, 100);
    EXPECT_INT(nfired, 5);
    EXPECT_INT(fired[2], 30);
    EXPECT_INT(fired[4], 50);
    EXPECT_INT(moat_timers_wait_ms(&ts, 100), -1);
    moat_timers_clear(&ts);
}

TEST_CASE(rearm_later_is_lazy_and_correct)
{
    struct moat_timers ts;
    moat_timers_init(&ts);
    struct moat_timer a;
    nfired = 0;
    moat_timer_init(&a, record, (void *)1L);
    EXPECT(moat_ok(moat_timer_arm(&ts, &a, 10)));
    EXPECT(moat_ok(moat_timer_arm(&ts, &a, 30))); /* later: stays keyed at 10 */
    moat_timers_run(&ts, 15);
    EXPECT_INT(nfired, 0); /* woke at the old key, but not due */
    EXPECT(moat_timer_armed(&a));
    EXPECT_INT(moat_timers_wait_ms(&ts, 15), 15);
    moat_timers_run(&ts, 30);
    EXPECT_INT(nfired, 1);
    EXPECT(!moat_timer_armed(&a));
    moat_timers_clear(&ts);
}

TEST_CASE(rearm_earlier_and_disarm)
{
    struct moat_timers ts;
    moat_timers_init(&ts);
    struct moat_timer a, b;
    nfired = 0;
    moat_timer_init(&a, record, (void *)1L);
    moat_timer_init(&b, record, (void *)2L);
    EXPECT(moat_ok(moat_timer_arm(&ts, &a, 100)));
    EXPECT(moat_ok(moat_timer_arm(&ts, &b, 50)));
    EXPECT(moat_ok(moat_timer_arm(&ts, &a, 20))); /* earlier: must move up */
    moat_timers_run(&ts, 25);
    EXPECT_INT(nfired, 1);
    EXPECT_INT(fired[0], 1);
    moat_timer_disarm(&ts, &b);
    moat_timers_run(&ts, 1000);
    EXPECT_INT(nfired, 1);
    moat_timer_disarm(&ts, &b); /* disarming twice is harmless */
    moat_timers_clear(&ts);
}

static void rearm_self(struct moat_timer *t)
{
    nfired++;
    if (nfired < 3) {
        EXPECT(moat_ok(moat_timer_arm(cur, t, cur_now + 1000)));
    }
}

TEST_CASE(callback_may_rearm_itself)
{
    struct moat_timers ts;
    moat_timers_init(&ts);
    cur = &ts;
    struct moat_timer a;
    nfired = 0;
    moat_timer_init(&a, rearm_self, NULL);
    EXPECT(moat_ok(moat_timer_arm(&ts, &a, 5)));
    cur_now = 5;
    moat_timers_run(&ts, cur_now);
    EXPECT_INT(nfired, 1);
    EXPECT(moat_timer_armed(&a));
    cur_now = 1005;
    moat_timers_run(&ts, cur_now);
    EXPECT_INT(nfired, 2);
    cur_now = 10000;
    moat_timers_run(&ts, cur_now);
    EXPECT_INT(nfired, 3);
    EXPECT(!moat_timer_armed(&a));
    moat_timers_clear(&ts);
}

TEST_CASE(many_random_timers_fire_sorted)
{
    struct moat_timers ts;
    moat_timers_init(&ts);
    enum { N = 2000 };
    static struct moat_timer t[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        moat_timer_init(&t[i], record, NULL);
        EXPECT(moat_ok(moat_timer_arm(&ts, &t[i], 1 + (uint64_t)(rand() % 100000))));
    }
    for (int i = 0; i < N; i += 3) { /* re-arm a third, half earlier, half later */
        EXPECT(moat_ok(moat_timer_arm(&ts, &t[i], 1 + (uint64_t)(rand() % 100000))));
    }
    int order_ok = 1, count = 0;
    for (uint64_t now = 0; now <= 100000 + 997; now += 997) {
        nfired = 0;
        moat_timers_run(&ts, now);
        count += nfired;
        for (int i = 0; i < N; i++) {
            if (!moat_timer_armed(&t[i]) && t[i].due_ms == 0) {
                continue;
            }
            if (t[i].due_ms <= now) {
                order_ok = 0; /* something due did not fire */
            }
        }
    }
    EXPECT(order_ok);
    EXPECT_INT(count, N);
    moat_timers_clear(&ts);
}

int main(void)
{
    RUN(fires_in_deadline_order);
    RUN(rearm_later_is_lazy_and_correct);
    RUN(rearm_earlier_and_disarm);
    RUN(callback_may_rearm_itself);
    RUN(many_random_timers_fire_sorted);
    TEST_MAIN_END();
}
