/*
 * test_wait.c: the queue for a place below max_conns (upstream/pool.c): waiters are woken
 * oldest first and one per freed place, a woken waiter that leaves without looking hands its
 * place on, a place freed where nobody of its group waits tells the other workers, and a
 * worker told so wakes the oldest waiter of each group. The group resolves its servers but
 * connects to none; the loop is only held, never run.
 */
#include "upstream/pool.h"

#include "core/log.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

struct waiter {
    struct moat_up_waiter w;
    int wakes;
};

static void on_wake(struct moat_up_waiter *w)
{
    ((struct waiter *)w)->wakes++;
}

static int notified;
static void on_notify(void *data)
{
    (void)data;
    notified++;
}

static struct moat_up_group *group_named(const char *name, unsigned port)
{
    struct moat_up_server_spec sv = {.host = "127.0.0.1", .port = port, .weight = 1};
    struct moat_up_params p = {.name = name,
                               .servers = &sv,
                               .nservers = 1,
                               .max_conns = 1,
                               .max_fails = 1,
                               .fail_timeout_ms = 10000};
    struct moat_up_group *g = NULL;
    struct moat_err err = {0};
    if (!moat_ok(moat_up_group_new(&p, &g, &err))) {
        TEST__FAIL("moat_up_group_new: %s", err.msg);
        return NULL;
    }
    return g;
}

/* Take the one place of g's only server, as a request does. */
static void take(struct moat_up_group *g)
{
    static const struct moat_up_key none;
    size_t i = SIZE_MAX;
    EXPECT_INT(moat_up_pick(g, &none, NULL, 100, &i), MOAT_UP_PICKED);
}

TEST_CASE(places_go_to_the_oldest_waiter_of_their_group)
{
    struct moat_loop loop = {0};
    struct moat_up_pool p;
    moat_up_pool_init(&p, &loop);
    struct moat_up_group *g = group_named("g", 18101), *h = group_named("h", 18102);
    if (g == NULL || h == NULL) {
        return;
    }
    struct waiter a = {.w.wake = on_wake}, b = {.w.wake = on_wake}, c = {.w.wake = on_wake};
    take(g);
    take(h);
    moat_up_wait(&p, &c.w, h);
    moat_up_wait(&p, &a.w, g);
    moat_up_wait(&p, &b.w, g);
    EXPECT_INT(atomic_load(&g->waiting), 2);
    EXPECT_INT(atomic_load(&h->waiting), 1);
    EXPECT_INT(atomic_load(&p.nwaiting), 3);
    EXPECT(moat_up_pool_has_waiter(&p, g));
    EXPECT(!moat_up_pool_has_waiter_before(&p, &a.w)); /* c waits for another group */
    EXPECT(moat_up_pool_has_waiter_before(&p, &b.w));

    moat_up_pool_done(&p, g, 0); /* one place of g: a, not b, not c */
    EXPECT_INT(a.wakes, 1);
    EXPECT_INT(b.wakes, 0);
    EXPECT_INT(c.wakes, 0);
    /* a looks (clearing woken), takes the place, leaves: nobody else is woken. */
    a.w.woken = 0;
    take(g);
    moat_up_unwait(&p, &a.w);
    EXPECT_INT(b.wakes, 0);
    EXPECT_INT(atomic_load(&g->waiting), 1);
    EXPECT(!moat_up_pool_has_waiter_before(&p, &b.w));

    moat_up_unwait(&p, &a.w); /* idempotent */
    EXPECT_INT(atomic_load(&p.nwaiting), 2);

    moat_up_pool_done(&p, g, 0);
    EXPECT_INT(b.wakes, 1);
    moat_up_unwait(&p, &b.w);
    moat_up_unwait(&p, &c.w);
    EXPECT_INT(atomic_load(&g->waiting), 0);
    EXPECT_INT(atomic_load(&h->waiting), 0);
    EXPECT_INT(atomic_load(&p.nwaiting), 0);
    EXPECT(p.wait_head == NULL && p.wait_tail == NULL);
    moat_up_done(h, 0);
    moat_up_group_unref(g);
    moat_up_group_unref(h);
}

TEST_CASE(a_woken_waiter_that_leaves_hands_its_place_on)
{
    struct moat_loop loop = {0};
    struct moat_up_pool p;
    moat_up_pool_init(&p, &loop);
    struct moat_up_group *g = group_named("g", 18103);
    if (g == NULL) {
        return;
    }
    struct waiter a = {.w.wake = on_wake}, b = {.w.wake = on_wake};
    take(g);
    moat_up_wait(&p, &a.w, g);
    moat_up_wait(&p, &b.w, g);
    moat_up_pool_done(&p, g, 0);
    EXPECT_INT(a.wakes, 1);
    moat_up_unwait(&p, &a.w); /* its client went away before it looked */
    EXPECT_INT(b.wakes, 1);
    EXPECT(!a.w.woken);
    moat_up_unwait(&p, &b.w);
    moat_up_group_unref(g);
}

TEST_CASE(a_place_freed_where_nobody_waits_tells_the_other_workers)
{
    struct moat_loop loop = {0};
    struct moat_up_pool here, there;
    moat_up_pool_init(&here, &loop);
    moat_up_pool_init(&there, &loop);
    here.notify = on_notify;
    there.notify = on_notify;
    struct moat_up_group *g = group_named("g", 18104), *h = group_named("h", 18105);
    if (g == NULL || h == NULL) {
        return;
    }
    notified = 0;
    take(g);
    moat_up_pool_done(&here, g, 0); /* nobody waits anywhere: nothing to tell */
    EXPECT_INT(notified, 0);

    struct waiter a = {.w.wake = on_wake}, b = {.w.wake = on_wake}, c = {.w.wake = on_wake};
    take(g);
    moat_up_wait(&there, &a.w, g);
    moat_up_wait(&there, &b.w, g);
    moat_up_wait(&there, &c.w, h);
    moat_up_pool_done(&here, g, 0);
    EXPECT_INT(notified, 1);
    EXPECT_INT(a.wakes + b.wakes + c.wakes, 0); /* not from this worker's thread */

    /* The told worker wakes the oldest of each group waiting there. */
    moat_up_pool_wake(&there);
    EXPECT_INT(a.wakes, 1);
    EXPECT_INT(b.wakes, 0);
    EXPECT_INT(c.wakes, 1);

    /* a leaves without looking, and no other waiter of g is there: the others are told. */
    moat_up_unwait(&there, &b.w);
    moat_up_unwait(&there, &a.w);
    EXPECT_INT(notified, 1); /* g has no waiter left anywhere */
    moat_up_unwait(&there, &c.w);
    moat_up_group_unref(g);
    moat_up_group_unref(h);
}

int main(void)
{
    moat_log_set_level(MOAT_LVL_ERROR);
    RUN(places_go_to_the_oldest_waiter_of_their_group);
    RUN(a_woken_waiter_that_leaves_hands_its_place_on);
    RUN(a_place_freed_where_nobody_waits_tells_the_other_workers);
    TEST_MAIN_END();
}
