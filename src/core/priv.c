/*
 * priv.c: the three steps of giving up root (see priv.h). The state is process-wide on purpose:
 * ids are a property of the process, and the few places that need root for a moment (binding,
 * reading a key) should not have to be handed a token through every layer between.
 */
#include "core/priv.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum phase { ROOT_OR_UNCHANGED, LOWERED, DROPPED };

static enum phase phase;
static struct moat_priv target;

moat_rc moat_priv_resolve(const char *user, const char *group, struct moat_priv *out,
                          struct moat_err *err)
{
    memset(out, 0, sizeof(*out));
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "no user \"%.64s\" on this machine", user);
    }
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    snprintf(out->user, sizeof(out->user), "%s", user);
    if (group != NULL) {
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            MOAT_FAIL(err, MOAT_E_CONFIG, "no group \"%.64s\" on this machine", group);
        }
        out->gid = gr->gr_gid;
        snprintf(out->group, sizeof(out->group), "%s", group);
    } else {
        struct group *gr = getgrgid(out->gid);
        snprintf(out->group, sizeof(out->group), "%s", gr ? gr->gr_name : "?");
    }
    if (out->uid == 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "user \"%.64s\" is root: name an unprivileged account (or leave `user` out "
                  "and start moat with --allow-root)",
                  user);
    }
    return MOAT_RC_OK;
}

moat_rc moat_priv_lower(const struct moat_priv *p, struct moat_err *err)
{
    if (geteuid() != 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "`user %s` needs moat started as root (it is running as uid %u): start it as "
                  "root, or leave `user` out to serve as the user that starts it",
                  p->user, (unsigned)geteuid());
    }
    /* The user's own supplementary groups (ssl-cert for a key under /etc/ssl/private, say),
     * with the chosen group first. */
    if (initgroups(p->user, p->gid) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot take the groups of user %s", p->user);
    }
    if (setegid(p->gid) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot take group %s", p->group);
    }
    if (seteuid(p->uid) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot take user %s", p->user);
    }
    target = *p;
    phase = LOWERED;
    return MOAT_RC_OK;
}

int moat_priv_raise(void)
{
    if (phase != LOWERED) {
        return 0;
    }
    return seteuid(0) == 0;
}

void moat_priv_restore(int raised)
{
    if (raised && seteuid(target.uid) != 0) {
        /* Cannot happen (the saved id is root), and serving as root by accident would be worse
         * than stopping. */
        fprintf(stderr, "moat: cannot give up root again: %s\n", strerror(errno));
        _exit(70);
    }
}

moat_rc moat_priv_drop(struct moat_err *err)
{
    if (phase != LOWERED) {
        return MOAT_RC_OK;
    }
    if (seteuid(0) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot drop privileges");
    }
    if (setresgid(target.gid, target.gid, target.gid) != 0 ||
        setresuid(target.uid, target.uid, target.uid) != 0) {
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot become user %s", target.user);
    }
    if (setuid(0) == 0 || seteuid(0) == 0 || geteuid() != target.uid || getegid() != target.gid) {
        MOAT_FAIL(err, MOAT_E_INTERNAL, "root could be taken back after becoming %s: stopping",
                  target.user);
    }
    phase = DROPPED;
    return MOAT_RC_OK;
}

const char *moat_priv_user(void)
{
    return phase == ROOT_OR_UNCHANGED ? NULL : target.user;
}
