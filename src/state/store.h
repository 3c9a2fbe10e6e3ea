/*
 * store.h: where moat keeps what it must not lose (ACME accounts, keys, certificates, orders in
 * flight): a small key/value interface that a folder implements today and a shared store
 * (Redis, for a cluster) can implement later without its users changing.
 *
 * Keys are relative, '/'-separated names ("acme/<ca>/account.json"): each part is made of
 * letters, digits and "-._@+=" and does not start with '.'; anything else is refused
 * (MOAT_E_USAGE), so no caller can reach outside the store. A put replaces the whole value
 * atomically: a reader, or a process that crashed mid-write, sees the old value or the new one,
 * never a mix. Values marked secret (private keys) are readable by the owner only.
 *
 * Locks are named and exclusive across every process using the store; a lock lapses when its
 * holder dies (the folder store: the kernel drops the flock) or after its ttl (stores without
 * such a guarantee), so a crash never leaves a name locked for good.
 */
#ifndef MOAT_STATE_STORE_H
#define MOAT_STATE_STORE_H

#include "core/err.h"

#include <stddef.h>

#define MOAT_STORE_KEY_MAX 512 /* bytes of a key */

struct moat_store;
struct moat_store_lock;

struct moat_store_ops {
    const char *name; /* "folder": for messages */
    /* The value of `key` into a new NUL-terminated buffer (*len excludes the NUL; the caller
     * frees it with free(), after OPENSSL_cleanse when it was secret). MOAT_E_NOTFOUND when
     * there is none, MOAT_E_LIMIT when it is larger than max_bytes. */
    moat_rc (*get)(struct moat_store *st, const char *key, size_t max_bytes, unsigned char **out,
                   size_t *len, struct moat_err *err);
    moat_rc (*put)(struct moat_store *st, const char *key, const void *data, size_t len, int secret,
                   struct moat_err *err);
    /* A key that does not exist is not an error. */
    moat_rc (*del)(struct moat_store *st, const char *key, struct moat_err *err);
    /* The keys directly under `prefix` (a folder-like key; "" for the top), sorted, each as its
     * last part; sub-prefixes end with '/'. *out is freed with moat_store_list_free. */
    moat_rc (*list)(struct moat_store *st, const char *prefix, char ***out, size_t *n,
                    struct moat_err *err);
    /* Take the lock `name` without waiting: MOAT_E_AGAIN when another holder has it. */
    moat_rc (*lock)(struct moat_store *st, const char *name, unsigned ttl_s,
                    struct moat_store_lock **out, struct moat_err *err);
    void (*unlock)(struct moat_store_lock *l);
    void (*free)(struct moat_store *st);
};

/* The bases every implementation embeds first: a store, and a lock that knows its store. */
struct moat_store {
    const struct moat_store_ops *ops;
};
struct moat_store_lock {
    struct moat_store *store;
};

MOAT_MUST_USE moat_rc moat_store_get(struct moat_store *st, const char *key, size_t max_bytes,
                                     unsigned char **out, size_t *len, struct moat_err *err);
MOAT_MUST_USE moat_rc moat_store_put(struct moat_store *st, const char *key, const void *data,
                                     size_t len, int secret, struct moat_err *err);
MOAT_MUST_USE moat_rc moat_store_del(struct moat_store *st, const char *key, struct moat_err *err);
MOAT_MUST_USE moat_rc moat_store_list(struct moat_store *st, const char *prefix, char ***out,
                                      size_t *n, struct moat_err *err);
void moat_store_list_free(char **keys, size_t n);
MOAT_MUST_USE moat_rc moat_store_lock(struct moat_store *st, const char *name, unsigned ttl_s,
                                      struct moat_store_lock **out, struct moat_err *err);
/* NULL does nothing. */
void moat_store_unlock(struct moat_store_lock *l);
/* NULL does nothing. Locks taken from it must be released first. */
void moat_store_free(struct moat_store *st);

/* MOAT_OK when `key` is a key as described above (prefix: may also be "" or end with '/'). */
MOAT_MUST_USE moat_rc moat_store_key_check(const char *key, int prefix, struct moat_err *err);

/*
 * Make `part` (a name, e.g. "*.example.com" or a directory URL) into one safe key part in
 * out: letters, digits and "-_" kept, '.' kept but not first, anything else as "=XX" (hex:
 * "*.example.com" is "=2a.example.com"). Distinct inputs give distinct parts, none starting
 * with '.'. Returns out, or NULL when outlen is too small.
 */
char *moat_store_key_part(const char *part, char *out, size_t outlen);

/*
 * The folder store: key "a/b/c" is the file <root>/a/b/c. Folders are made 0700 as needed,
 * files written with pki/'s atomic replace (0600 when secret, else 0644), locks are flock(2)s
 * on <root>/.locks/<name> (ttl unused: the kernel drops a lock whose holder died). `root` is
 * created when missing.
 */
MOAT_MUST_USE moat_rc moat_store_folder_new(const char *root, struct moat_store **out,
                                            struct moat_err *err);

#endif
