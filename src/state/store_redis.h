/*
 * store_redis.h: the store (store.h) on a Redis that a cluster's nodes share: values sealed
 * with the cluster's key, locks with a renewed lease and fenced writes (store_redis.c says how).
 */
#ifndef MOAT_STATE_STORE_REDIS_H
#define MOAT_STATE_STORE_REDIS_H

#include "state/redis.h"
#include "state/seal.h"
#include "state/store.h"

/* A store on the Redis of `o` (copied; it connects at the first call), its keys under `prefix`,
 * its values sealed with `key`. */
MOAT_MUST_USE moat_rc moat_store_redis_new(const struct moat_redis_opts *o, const char *prefix,
                                           const unsigned char key[MOAT_SEAL_KEY_BYTES],
                                           struct moat_store **out, struct moat_err *err);

#endif
