/*
 * conf_cluster.c: `cluster { }`, the nodes that act as one through a Redis (docs/cluster.md):
 *
 *   cluster {
 *       redis 10.0.0.5:6379          # or rediss://HOST:PORT (TLS, verified), unix:/PATH
 *       user moat                    # an ACL user (AUTH user password); default: none
 *       password_file /etc/moat/redis.pass
 *       ca /etc/moat/redis-ca.pem    # for rediss://; default: the system's trust store
 *       server_name redis.internal   # the name on its certificate; default: redis's host
 *       prefix moat:                 # of every key moat writes
 *       timeout 1s                   # connect, each read and write
 *       secret_file /etc/moat/cluster.secret  # the same on every node: seals what is shared
 *   }
 */
#include "serve/conf_internal.h"

#include "state/seal.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void moat_conf__cluster_free(struct moat_conf_cluster *cc)
{
    if (cc == NULL) {
        return;
    }
    free(cc->redis);
    free(cc->ca);
    free(cc->server_name);
    free(cc->user);
    moat_conf__free_secret(cc->password);
    free(cc->prefix);
    OPENSSL_cleanse(cc->secret, sizeof(cc->secret));
    free(cc);
}

static moat_rc h_cluster(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    if (L->c->cluster != NULL) {
        return moat_conf__fail_at_word(L, &n->words[0],
                                       "a second cluster block (keep one: a node is in one "
                                       "cluster)");
    }
    struct moat_conf_cluster *cc = calloc(1, sizeof(*cc));
    if (cc == NULL || (cc->prefix = strdup("moat:")) == NULL) {
        free(cc);
        return moat_conf__nomem(L);
    }
    cc->timeout_ms = 1000;
    moat_conf__where_of(L, n, cc->where);
    cc->line = n->line;
    cc->col = n->col;
    L->c->cluster = cc;
    return moat_conf__walk_block(L, n, MOAT_CONF__CLUSTER);
}

static struct moat_conf_cluster *cl(struct moat_conf__loader *L)
{
    return L->c->cluster;
}

static moat_rc set_str(struct moat_conf__loader *L, char **dst, const char *v)
{
    char *s = strdup(v);
    if (s == NULL) {
        return moat_conf__nomem(L);
    }
    free(*dst);
    *dst = s;
    return MOAT_RC_OK;
}

/* `redis HOST:PORT | redis://HOST:PORT | rediss://HOST:PORT | unix:/PATH` */
static moat_rc h_redis(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                       const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    const char *v = w->s;
    int tls = 0;
    if (strncasecmp(v, "rediss://", 9) == 0) {
        tls = 1;
        v += 9;
    } else if (strncasecmp(v, "redis://", 8) == 0) {
        v += 8;
    }
    if (strncmp(v, "unix:", 5) == 0) {
        if (v[5] != '/' || strlen(v) > 5 + 107) {
            return moat_conf__fail_at_word(L, w,
                                           "a Redis socket is unix:/ABSOLUTE/PATH (at most 107 "
                                           "bytes), not \"%.100s\"",
                                           v);
        }
    } else {
        char host[256];
        uint16_t port;
        if (strchr(v, '/') != NULL || strchr(v, '@') != NULL ||
            !moat_ok(moat_conf_listen_split(v, host, sizeof(host), &port)) || host[0] == '\0' ||
            port == 0) {
            return moat_conf__fail_at_word(L, w,
                                           "bad Redis address \"%.100s\" (write HOST:PORT, "
                                           "rediss://HOST:PORT for TLS, or unix:/PATH; the user "
                                           "and password go in `user` and `password_file`)",
                                           w->s);
        }
    }
    cl(L)->tls = tls;
    return set_str(L, &cl(L)->redis, v);
}

static moat_rc h_user(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                      const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    for (const char *p = w->s; *p; p++) {
        if (*p <= ' ' || *p > '~') {
            return moat_conf__fail_at_word(L, w, "a Redis user name is printable, without spaces");
        }
    }
    return set_str(L, &cl(L)->user, w->s);
}

static moat_rc h_password_file(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                               const struct moat_conf__spec *sp)
{
    char *path = NULL;
    MOAT_TRY(moat_conf__take_path(L, &n->words[1], "password file", &path));
    moat_rc rc =
        moat_conf__read_secret_line(L, &n->words[1], path, "Redis password", 1, &cl(L)->password);
    free(path);
    return rc;
}

static moat_rc h_ca(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                    const struct moat_conf__spec *sp)
{
    return moat_conf__take_path(L, &n->words[1], "CA file", &cl(L)->ca);
}

static moat_rc h_server_name(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             const struct moat_conf__spec *sp)
{
    return set_str(L, &cl(L)->server_name, n->words[1].s);
}

static moat_rc h_prefix(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                        const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    size_t len = strlen(w->s);
    if (len == 0 || len > 64) {
        return moat_conf__fail_at_word(L, w, "a key prefix is 1 to 64 characters (e.g. moat:)");
    }
    for (const char *p = w->s; *p; p++) {
        if (*p <= ' ' || *p > '~') {
            return moat_conf__fail_at_word(L, w, "a key prefix is printable, without spaces");
        }
    }
    return set_str(L, &cl(L)->prefix, w->s);
}

static moat_rc h_timeout(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         const struct moat_conf__spec *sp)
{
    const struct moat_cfg_word *w = &n->words[1];
    uint64_t ms = 0;
    if (!moat_ok(moat_cfg_duration_ms(w->s, &ms)) || ms < 10 || ms > 60000) {
        return moat_conf__fail_at_word(L, w,
                                       "\"timeout\" must be a duration between 10ms and 1m, got "
                                       "\"%.64s\"",
                                       w->s);
    }
    cl(L)->timeout_ms = ms;
    return MOAT_RC_OK;
}

static moat_rc h_secret_file(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                             const struct moat_conf__spec *sp)
{
    char *path = NULL, *line = NULL;
    MOAT_TRY(moat_conf__take_path(L, &n->words[1], "secret file", &path));
    moat_rc rc = moat_conf__read_secret_line(L, &n->words[1], path, "cluster secret", 32, &line);
    free(path);
    if (moat_ok(rc)) {
        struct moat_err e = {0};
        rc = moat_seal_key(line, strlen(line), "moat cluster", cl(L)->secret, &e);
        if (!moat_ok(rc)) {
            rc = moat_conf__fail_at_word(L, &n->words[1], "cannot use the cluster secret: %s",
                                         e.msg);
        }
    }
    moat_conf__free_secret(line);
    return rc;
}

#define CL(nm, f, use) MOAT_CONF__CUSTOM(nm, MOAT_CONF__CLUSTER, 1, 1, 0, f, use)

const struct moat_conf__spec moat_conf__cluster_specs[] = {
    MOAT_CONF__BLOCK("cluster", 0, 0, MOAT_CONF__CLUSTER, h_cluster,
                     "cluster { redis HOST:PORT; secret_file FILE }"),
    CL("redis", h_redis, "redis HOST:PORT|rediss://HOST:PORT|unix:/PATH"),
    CL("user", h_user, "user NAME"),
    CL("password_file", h_password_file, "password_file FILE"),
    CL("ca", h_ca, "ca FILE"),
    CL("server_name", h_server_name, "server_name NAME"),
    CL("prefix", h_prefix, "prefix TEXT"),
    CL("timeout", h_timeout, "timeout DURATION"),
    CL("secret_file", h_secret_file, "secret_file FILE"),
};

const size_t moat_conf__cluster_nspecs =
    sizeof(moat_conf__cluster_specs) / sizeof(moat_conf__cluster_specs[0]);

moat_rc moat_conf__cluster_check_conf(struct moat_conf__loader *L)
{
    const struct moat_conf_cluster *cc = L->c->cluster;
    if (cc == NULL) {
        return MOAT_RC_OK;
    }
    static const unsigned char zero[sizeof(cc->secret)];
    if (cc->redis == NULL) {
        return moat_cfg_fail(L->err, L->doc, cc->line, cc->col,
                             "the cluster block names no Redis (add: redis HOST:PORT)");
    }
    if (memcmp(cc->secret, zero, sizeof(zero)) == 0) {
        return moat_cfg_fail(L->err, L->doc, cc->line, cc->col,
                             "the cluster block needs secret_file FILE, the same on every "
                             "node (make one: head -c 32 /dev/urandom | base64 > FILE; chmod 600 "
                             "FILE): what the nodes share in Redis is sealed with it");
    }
    if ((cc->ca != NULL || cc->server_name != NULL) && !cc->tls) {
        return moat_cfg_fail(L->err, L->doc, cc->line, cc->col,
                             "ca and server_name are for TLS to Redis (write the address as "
                             "rediss://HOST:PORT)");
    }
    if (cc->user != NULL && cc->password == NULL) {
        return moat_cfg_fail(L->err, L->doc, cc->line, cc->col,
                             "an ACL user needs its password (password_file FILE)");
    }
    return MOAT_RC_OK;
}
