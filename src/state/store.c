/*
 * store.c: the store interface's checks, shared by every implementation: a key is checked here
 * once, before any implementation sees it.
 */
#include "state/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '@' || c == '+' || c == '=';
}

moat_rc moat_store_key_check(const char *key, int prefix, struct moat_err *err)
{
    size_t n = key ? strlen(key) : 0;
    if (key == NULL || (n == 0 && !prefix)) {
        MOAT_FAIL(err, MOAT_E_USAGE, "a store key is empty");
    }
    if (n >= MOAT_STORE_KEY_MAX) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the store key \"%.60s...\" is longer than %d bytes", key,
                  MOAT_STORE_KEY_MAX - 1);
    }
    if (prefix && n > 0 && key[n - 1] == '/') {
        n--; /* "acme/": the folder-like prefix "acme" */
        if (n == 0) {
            MOAT_FAIL(err, MOAT_E_USAGE, "the store prefix \"/\" is not a prefix (use \"\")");
        }
    }
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && key[i] != '/') {
            if (!key_char((unsigned char)key[i])) {
                MOAT_FAIL(err, MOAT_E_USAGE,
                          "the store key \"%.200s\" holds a character that is not allowed (0x%02x)",
                          key, (unsigned char)key[i]);
            }
            continue;
        }
        size_t len = i - start;
        if (n == 0) {
            break; /* the "" prefix */
        }
        /* A leading '.' also covers "." and "..", and keeps keys off the store's own dot
         * files (locks, temporaries of atomic writes). */
        if (len == 0 || key[start] == '.') {
            MOAT_FAIL(err, MOAT_E_USAGE,
                      "the store key \"%.200s\" has an empty part or one starting with '.'", key);
        }
        start = i + 1;
    }
    return MOAT_RC_OK;
}

char *moat_store_key_part(const char *part, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)part; *p; p++) {
        char tmp[12];
        size_t w;
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || (*p == '.' && p != (const unsigned char *)part)) {
            tmp[0] = (char)*p;
            w = 1;
        } else {
            tmp[0] = '=';
            tmp[1] = hex[*p >> 4];
            tmp[2] = hex[*p & 15];
            w = 3;
        }
        if (o + w >= outlen) {
            return NULL;
        }
        memcpy(out + o, tmp, w);
        o += w;
    }
    if (o == 0 || outlen == 0) {
        if (outlen < 2) {
            return NULL;
        }
        out[o++] = '='; /* "" is a name too, and "=" is no other name's part */
    }
    out[o] = '\0';
    return out;
}

moat_rc moat_store_get(struct moat_store *st, const char *key, size_t max_bytes,
                       unsigned char **out, size_t *len, struct moat_err *err)
{
    *out = NULL;
    *len = 0;
    MOAT_TRY(moat_store_key_check(key, 0, err));
    return st->ops->get(st, key, max_bytes, out, len, err);
}

moat_rc moat_store_put(struct moat_store *st, const char *key, const void *data, size_t len,
                       int secret, struct moat_err *err)
{
    MOAT_TRY(moat_store_key_check(key, 0, err));
    return st->ops->put(st, key, data, len, secret, err);
}

moat_rc moat_store_del(struct moat_store *st, const char *key, struct moat_err *err)
{
    MOAT_TRY(moat_store_key_check(key, 0, err));
    return st->ops->del(st, key, err);
}

moat_rc moat_store_list(struct moat_store *st, const char *prefix, char ***out, size_t *n,
                        struct moat_err *err)
{
    *out = NULL;
    *n = 0;
    MOAT_TRY(moat_store_key_check(prefix, 1, err));
    return st->ops->list(st, prefix, out, n, err);
}

void moat_store_list_free(char **keys, size_t n)
{
    for (size_t i = 0; keys != NULL && i < n; i++) {
        free(keys[i]);
    }
    free(keys);
}

moat_rc moat_store_lock(struct moat_store *st, const char *name, unsigned ttl_s,
                        struct moat_store_lock **out, struct moat_err *err)
{
    *out = NULL;
    MOAT_TRY(moat_store_key_check(name, 0, err));
    return st->ops->lock(st, name, ttl_s, out, err);
}

void moat_store_unlock(struct moat_store_lock *l)
{
    if (l != NULL) {
        l->store->ops->unlock(l);
    }
}

void moat_store_free(struct moat_store *st)
{
    if (st != NULL) {
        st->ops->free(st);
    }
}
