/*
 * fsutil.c: atomic replace, mkdir -p, whole-file reads and a folder lock for pki.
 *
 * The atomic write is the classic sequence (temp file in the same folder, write, fsync, rename,
 * fsync the folder): rename(2) within one file system is atomic (POSIX), and the temp file lives
 * in the target's folder so the rename never crosses file systems. The mode is given to open(2)
 * itself, so a private key is 0600 from its first byte, not after a later chmod.
 */
#include "pki/fsutil.h"

#include "core/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Split path into its folder ("." when there is none) and check it fits. */
static moat_rc split_dir(const char *path, char *dir, size_t dirlen, struct moat_err *err)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        if (dirlen < 2) {
            MOAT_FAIL(err, MOAT_E_INTERNAL, "folder buffer too small");
        }
        dir[0] = '.';
        dir[1] = '\0';
        return MOAT_RC_OK;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) {
        n = 1; /* "/file": the folder is "/" */
    }
    if (n >= dirlen) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG, "path is too long");
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    return MOAT_RC_OK;
}

/* Name a temp file "<dir>/.<base>.<random>.tmp"; the dot keeps it out of casual listings. */
static moat_rc temp_name(const char *path, char *out, size_t outlen, struct moat_err *err)
{
    static unsigned counter;
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        /* O_EXCL makes a collision safe; randomness only makes it unlikely. */
        r = ((uint64_t)getpid() << 32) ^ (uint64_t)++counter;
    }
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    const char *base = slash ? slash + 1 : path;
    int w = snprintf(out, outlen, "%.*s.%s.%016llx.tmp", dirlen, path, base, (unsigned long long)r);
    if (w < 0 || (size_t)w >= outlen) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG, "path is too long");
    }
    return MOAT_RC_OK;
}

/* Best effort: a file system that cannot fsync a folder (EINVAL) still got the rename. */
static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static moat_rc write_common(const char *path, const void *data, size_t len, mode_t mode,
                            int replace, struct moat_err *err)
{
    char dir[PATH_MAX];
    char tmp[PATH_MAX];
    MOAT_TRY(split_dir(path, dir, sizeof(dir), err));

    int fd = -1;
    for (int attempt = 0; fd < 0; attempt++) {
        MOAT_TRY(temp_name(path, tmp, sizeof(tmp), err));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0 && (errno != EEXIST || attempt >= 8)) {
            moat_err_where(err, "%s", path);
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create a temporary file in %s", dir);
        }
    }

    int saved = 0;
    const char *step = NULL;
    /* umask may have narrowed the mode given to open; set exactly what was asked. */
    if (fchmod(fd, mode) != 0) {
        step = "set the mode of";
    } else if (!moat_write_all(fd, data, len)) {
        step = "write";
    } else if (fsync(fd) != 0) {
        step = "flush";
    }
    if (step != NULL) {
        saved = errno;
        close(fd);
        unlink(tmp);
        moat_err_where(err, "%s", path);
        return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot %s %s", step, tmp);
    }
    if (close(fd) != 0) {
        saved = errno;
        unlink(tmp);
        moat_err_where(err, "%s", path);
        return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot write %s", tmp);
    }

    if (replace) {
        if (rename(tmp, path) != 0) {
            saved = errno;
            unlink(tmp);
            moat_err_where(err, "%s", path);
            return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot replace %s",
                                path);
        }
    } else {
        /* link(2) refuses to replace an existing name: the no-clobber twin of rename(2). */
        int rc = link(tmp, path);
        saved = errno;
        unlink(tmp);
        if (rc != 0) {
            moat_err_where(err, "%s", path);
            if (saved == EEXIST) {
                return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__,
                                    "%s already exists; not replacing it", path);
            }
            return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot create %s",
                                path);
        }
    }
    fsync_dir(dir);
    return MOAT_RC_OK;
}

moat_rc moat_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                             struct moat_err *err)
{
    return write_common(path, data, len, mode, 1, err);
}

moat_rc moat_fs_write_new(const char *path, const void *data, size_t len, mode_t mode,
                          struct moat_err *err)
{
    return write_common(path, data, len, mode, 0, err);
}

static moat_rc mkdir_one(const char *full, const char *part, mode_t mode, struct moat_err *err)
{
    if (mkdir(part, mode) == 0) {
        return MOAT_RC_OK;
    }
    int saved = errno;
    struct stat st;
    if (saved == EEXIST && stat(part, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            return MOAT_RC_OK;
        }
        moat_err_where(err, "%s", full);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s exists and is not a folder", part);
    }
    moat_err_where(err, "%s", full);
    return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot create folder %s", part);
}

moat_rc moat_fs_mkdir_p(const char *path, mode_t mode, struct moat_err *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "empty folder name");
    }
    if (n >= sizeof(buf)) {
        moat_err_where(err, "%.200s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG, "path is too long");
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/') {
            continue;
        }
        buf[i] = '\0';
        MOAT_TRY(mkdir_one(path, buf, mode, err));
        buf[i] = '/';
    }
    return mkdir_one(path, buf, mode, err);
}

/* Read fd to EOF into a growing buffer; -1 with errno set on failure, ERANGE when too big. */
static int read_to_end(int fd, size_t hint, size_t max_bytes, unsigned char **out, size_t *len)
{
    size_t cap = (hint < max_bytes ? hint : max_bytes) + 2;
    unsigned char *buf = malloc(cap);
    size_t used = 0;
    if (buf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        if (used > max_bytes) {
            free(buf);
            errno = ERANGE;
            return -1;
        }
        if (used + 1 >= cap) {
            size_t ncap = cap > max_bytes / 2 ? max_bytes + 2 : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                free(buf);
                errno = ENOMEM;
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + used, cap - 1 - used);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            int saved = errno;
            free(buf);
            errno = saved;
            return -1;
        }
        if (r == 0) {
            break;
        }
        used += (size_t)r;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return 0;
}

moat_rc moat_fs_read_file(const char *path, size_t max_bytes, unsigned char **out, size_t *len,
                          struct moat_err *err)
{
    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO by mistake must not hang start-up. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int saved = errno;
        moat_err_where(err, "%s", path);
        if (saved == ENOENT) {
            return moat_err_set(err, MOAT_E_NOTFOUND, __FILE__, __LINE__, "%s does not exist",
                                path);
        }
        if (saved == EACCES) {
            return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__,
                                "cannot read %s: the user moat runs as (uid %u) has no "
                                "permission; check the file's owner and mode",
                                path, (unsigned)geteuid());
        }
        return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        moat_err_where(err, "%s", path);
        return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_CONFIG, "%s is %s, not a file", path,
                  S_ISDIR(st.st_mode) ? "a folder" : "a device or pipe");
    }
    /* st_size is only a hint (the file may change while we read); the limit is enforced on
     * what is actually read. */
    int rc = read_to_end(fd, (size_t)st.st_size, max_bytes, out, len);
    int saved = errno;
    close(fd);
    if (rc == 0) {
        return MOAT_RC_OK;
    }
    moat_err_where(err, "%s", path);
    if (saved == ERANGE) {
        MOAT_FAIL(err, MOAT_E_LIMIT, "%s is too big (at most %zu bytes expected)", path, max_bytes);
    }
    if (saved == ENOMEM) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory reading %s", path);
    }
    return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot read %s", path);
}

moat_rc moat_fs_lock(const char *dir, int *fd_out, struct moat_err *err)
{
    char path[PATH_MAX];
    *fd_out = -1;
    int w = snprintf(path, sizeof(path), "%s/.lock", dir);
    if (w < 0 || (size_t)w >= sizeof(path)) {
        moat_err_where(err, "%.200s", dir);
        MOAT_FAIL(err, MOAT_E_CONFIG, "path is too long");
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot create lock file %s", path);
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) {
            continue;
        }
        int saved = errno;
        close(fd);
        moat_err_where(err, "%s", path);
        return moat_err_sys(err, MOAT_E_IO, saved, __FILE__, __LINE__, "cannot lock %s", path);
    }
    *fd_out = fd;
    return MOAT_RC_OK;
}

void moat_fs_unlock(int fd)
{
    if (fd >= 0) {
        (void)flock(fd, LOCK_UN);
        close(fd);
    }
}
