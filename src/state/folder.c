/*
 * folder.c: the store as a folder of files (see store.h).
 *
 * Writes go through pki/fsutil's atomic replace (temp file with the final mode given at open,
 * fsync, rename, fsync of the folder), so a value survives a crash whole or not at all. Locks
 * are flock(2)s: held by an open file description, dropped by the kernel when the holder exits
 * or crashes, and exclusive between two descriptions even inside one process, so two threads
 * of one moat exclude each other exactly as two processes do.
 */
#include "state/store.h"

#include "pki/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCKS_DIR ".locks"

struct folder {
    struct moat_store base;
    char root[PATH_MAX - MOAT_STORE_KEY_MAX - 16];
};

struct folder_lock {
    struct moat_store_lock base;
    int fd;
};

static moat_rc path_of(const struct folder *f, const char *key, char *out, size_t outlen,
                       struct moat_err *err)
{
    int w = snprintf(out, outlen, "%s/%s", f->root, key);
    if (w < 0 || (size_t)w >= outlen) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the store path for \"%.200s\" is too long", key);
    }
    return MOAT_RC_OK;
}

/* Make the folders above `path` (0700: the store holds keys). */
static moat_rc make_parents(const char *path, struct moat_err *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return moat_fs_mkdir_p(dir, 0700, err);
}

static moat_rc folder_get(struct moat_store *st, const char *key, size_t max_bytes,
                          unsigned char **out, size_t *len, struct moat_err *err)
{
    struct folder *f = (struct folder *)st;
    char path[PATH_MAX];
    MOAT_TRY(path_of(f, key, path, sizeof(path), err));
    return moat_fs_read_file(path, max_bytes, out, len, err);
}

static moat_rc folder_put(struct moat_store *st, const char *key, const void *data, size_t len,
                          int secret, struct moat_err *err)
{
    struct folder *f = (struct folder *)st;
    char path[PATH_MAX];
    MOAT_TRY(path_of(f, key, path, sizeof(path), err));
    MOAT_TRY(make_parents(path, err));
    return moat_fs_write_atomic(path, data, len, secret ? 0600 : 0644, err);
}

static moat_rc folder_del(struct moat_store *st, const char *key, struct moat_err *err)
{
    struct folder *f = (struct folder *)st;
    char path[PATH_MAX];
    MOAT_TRY(path_of(f, key, path, sizeof(path), err));
    if (unlink(path) != 0 && errno != ENOENT) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot remove %s", path);
    }
    return MOAT_RC_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static moat_rc folder_list(struct moat_store *st, const char *prefix, char ***out, size_t *n,
                           struct moat_err *err)
{
    struct folder *f = (struct folder *)st;
    char path[PATH_MAX];
    MOAT_TRY(path_of(f, prefix, path, sizeof(path), err));
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno == ENOENT || errno == ENOTDIR) {
            return MOAT_RC_OK; /* nothing stored under it yet */
        }
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot list %s", path);
    }
    char **keys = NULL;
    size_t nkeys = 0, cap = 0;
    moat_rc rc = MOAT_RC_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        /* Dot files are the store's own (locks, atomic-write temporaries). */
        if (de->d_name[0] == '.' || !moat_ok(moat_store_key_check(de->d_name, 0, NULL))) {
            continue;
        }
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !(S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))) {
            continue;
        }
        if (nkeys == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nk = realloc(keys, ncap * sizeof(*nk));
            if (nk == NULL) {
                rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
                break;
            }
            keys = nk;
            cap = ncap;
        }
        size_t l = strlen(de->d_name);
        char *k = malloc(l + 2);
        if (k == NULL) {
            rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
            break;
        }
        size_t isdir = S_ISDIR(sb.st_mode) ? 1 : 0;
        memcpy(k, de->d_name, l);
        k[l] = '/';
        k[l + isdir] = '\0';
        keys[nkeys++] = k;
    }
    closedir(d);
    if (!moat_ok(rc)) {
        moat_store_list_free(keys, nkeys);
        return rc;
    }
    if (nkeys > 1) {
        qsort(keys, nkeys, sizeof(*keys), cmp_str);
    }
    *out = keys;
    *n = nkeys;
    return MOAT_RC_OK;
}

static moat_rc folder_lock(struct moat_store *st, const char *name, unsigned ttl_s,
                           struct moat_store_lock **out, struct moat_err *err)
{
    (void)ttl_s;
    struct folder *f = (struct folder *)st;
    char path[PATH_MAX], part[MOAT_STORE_KEY_MAX * 3];
    /* One flat folder of lock files: "acme/x/order" is the file ".locks/acme=2fx=2forder". */
    if (moat_store_key_part(name, part, sizeof(part)) == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the lock name \"%.200s\" is too long", name);
    }
    int w = snprintf(path, sizeof(path), "%s/" LOCKS_DIR, f->root);
    if (w < 0 || (size_t)w >= sizeof(path)) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the store path is too long");
    }
    MOAT_TRY(moat_fs_mkdir_p(path, 0700, err));
    w = snprintf(path, sizeof(path), "%s/" LOCKS_DIR "/%s", f->root, part);
    if (w < 0 || (size_t)w >= sizeof(path)) {
        MOAT_FAIL(err, MOAT_E_USAGE, "the lock path for \"%.200s\" is too long", name);
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create the lock file %s", path);
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EINTR) {
            continue;
        }
        close(fd);
        if (e == EWOULDBLOCK) {
            MOAT_FAIL(err, MOAT_E_AGAIN, "\"%s\" is locked by another moat (%s)", name, path);
        }
        moat_err_where(err, "%s", path);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "cannot lock %s", path);
    }
    struct folder_lock *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    l->base.store = st;
    l->fd = fd;
    *out = &l->base;
    return MOAT_RC_OK;
}

static void folder_unlock(struct moat_store_lock *base)
{
    struct folder_lock *l = (struct folder_lock *)base;
    /* The file stays: removing it would let a waiter lock a file nobody else can see. */
    close(l->fd);
    free(l);
}

static void folder_free(struct moat_store *st)
{
    free(st);
}

static const struct moat_store_ops folder_ops = {
    .name = "folder",
    .get = folder_get,
    .put = folder_put,
    .del = folder_del,
    .list = folder_list,
    .lock = folder_lock,
    .unlock = folder_unlock,
    .free = folder_free,
};

moat_rc moat_store_folder_new(const char *root, struct moat_store **out, struct moat_err *err)
{
    *out = NULL;
    struct folder *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/') {
        n--;
    }
    if (n == 0 || n >= sizeof(f->root)) {
        free(f);
        MOAT_FAIL(err, MOAT_E_USAGE, "the state folder path \"%.200s\" is empty or too long", root);
    }
    memcpy(f->root, root, n);
    f->root[n] = '\0';
    moat_rc rc = moat_fs_mkdir_p(f->root, 0700, err);
    if (!moat_ok(rc)) {
        free(f);
        return rc;
    }
    f->base.ops = &folder_ops;
    *out = &f->base;
    return MOAT_RC_OK;
}
