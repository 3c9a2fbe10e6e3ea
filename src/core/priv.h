/*
 * priv.h: giving up root. A server started as root with `user NAME` binds its listeners and
 * reads its keys as root and does everything else as NAME: moat_priv_lower takes the effective
 * ids first (so every file moat makes from then on belongs to NAME), moat_priv_raise brings
 * root back for one privileged step (a bind, a key file), and moat_priv_drop gives up the
 * real and saved ids too, before the first worker thread, so nothing can take root back.
 */
#ifndef MOAT_CORE_PRIV_H
#define MOAT_CORE_PRIV_H

#include "core/err.h"

#include <sys/types.h>

struct moat_priv {
    uid_t uid;
    gid_t gid;
    char user[64];
    char group[64];
};

/* Look `user` (and `group`, or NULL for the user's own) up in the system's databases. */
MOAT_MUST_USE moat_rc moat_priv_resolve(const char *user, const char *group, struct moat_priv *out,
                                        struct moat_err *err);

/* Take the user's effective ids and supplementary groups; the saved id stays root. Called once,
 * as root, before any thread starts. */
MOAT_MUST_USE moat_rc moat_priv_lower(const struct moat_priv *p, struct moat_err *err);

/* Between lower and drop: root again for one step; returns 1 when it did (give that to
 * moat_priv_restore). Outside that window a no-op returning 0. */
int moat_priv_raise(void);
void moat_priv_restore(int raised);

/* Give root up for good: real, effective and saved ids all the user's, checked by trying to
 * take root back. A no-op unless lowered. */
MOAT_MUST_USE moat_rc moat_priv_drop(struct moat_err *err);

/* The user served as once lowered or dropped, else NULL. */
const char *moat_priv_user(void);

#endif
