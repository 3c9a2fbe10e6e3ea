/*
 * health.h: active health checks of an upstream's servers: every interval, a GET of the check
 * path on a new connection (so the check also proves that connecting works, which a pooled
 * connection would not), an answer within the timeout with a status in the accepted range is
 * a pass. `fall` failures in a row take a server out (check_down), `rise` passes bring it back,
 * eased in by slow start; each change is logged with its reason.
 *
 * One checker per group runs on one worker's loop (the first worker's), and writes the shared
 * state the other workers read (group.h), so a server is checked once however many workers
 * there are.
 */
#ifndef MOAT_UPSTREAM_HEALTH_H
#define MOAT_UPSTREAM_HEALTH_H

#include "core/err.h"
#include "core/loop.h"
#include "upstream/group.h"
#include "upstream/pool.h"

struct moat_up_health;

/* Start checking g's servers (g->p.check_path must be set) on `loop`, opening connections
 * through `pool`; the checker holds a reference on g. The first checks go out at once.
 * MOAT_E_NOMEM only. */
MOAT_MUST_USE moat_rc moat_up_health_start(struct moat_up_group *g, struct moat_loop *loop,
                                           struct moat_up_pool *pool, struct moat_up_health **out);

/* Stop: close any check connection, free everything. NULL does nothing. */
void moat_up_health_stop(struct moat_up_health *h);

#endif
