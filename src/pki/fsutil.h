/*
 * fsutil.h: the few file-system steps that pki needs to get exactly right.
 *
 * Keys and certificates are replaced atomically (a reader sees the old file or the new one,
 * never half of either), a private key is never readable by others even for an instant, and
 * reading a file turns each errno that people actually meet into a sentence naming the file.
 */
#ifndef MOAT_PKI_FSUTIL_H
#define MOAT_PKI_FSUTIL_H

#include "core/err.h"

#include <stddef.h>
#include <sys/types.h>

/*
 * Replace `path` with `len` bytes of `data`, atomically: a temporary file is created next to it
 * (O_CREAT|O_EXCL with `mode` given at open, so the bytes are never readable by anyone the mode
 * does not allow), written in full, fsync'ed, renamed over `path`, and the folder is fsync'ed so
 * the rename survives a crash. On any failure the temporary file is removed and `path` is left
 * as it was. The folder must exist. Returns MOAT_E_IO (errno in err) on failure.
 */
MOAT_MUST_USE moat_rc moat_fs_write_atomic(const char *path, const void *data, size_t len,
                                           mode_t mode, struct moat_err *err);

/*
 * Same as moat_fs_write_atomic, but never replaces an existing `path`: the final step is link(2),
 * which fails with EEXIST instead of overwriting, so two writers racing cannot clobber each
 * other. An existing path gives MOAT_E_IO with err->sys_errno == EEXIST.
 */
MOAT_MUST_USE moat_rc moat_fs_write_new(const char *path, const void *data, size_t len, mode_t mode,
                                        struct moat_err *err);

/*
 * Create `path` and any missing parents with `mode` (like mkdir -p). Existing folders are left
 * as they are (their mode is not changed); a component that exists but is not a folder fails.
 */
MOAT_MUST_USE moat_rc moat_fs_mkdir_p(const char *path, mode_t mode, struct moat_err *err);

/*
 * Read a whole regular file of at most `max_bytes` into a new buffer (NUL-terminated for
 * convenience; *len excludes the NUL). The caller frees *out with free() (after
 * OPENSSL_cleanse when it may hold a secret). Failures name the file in err->where:
 * MOAT_E_NOTFOUND (missing), MOAT_E_IO (permission and other errno), MOAT_E_LIMIT (too big),
 * MOAT_E_CONFIG (a folder or a device, not a file).
 */
MOAT_MUST_USE moat_rc moat_fs_read_file(const char *path, size_t max_bytes, unsigned char **out,
                                        size_t *len, struct moat_err *err);

/*
 * Take an exclusive advisory lock (flock) on `<dir>/.lock`, creating it 0600, so that two moat
 * processes opening the same state folder do not both create a CA or a certificate. Blocks until
 * the lock is free. *fd_out is passed to moat_fs_unlock.
 */
MOAT_MUST_USE moat_rc moat_fs_lock(const char *dir, int *fd_out, struct moat_err *err);
/* Release a lock taken with moat_fs_lock; a negative fd does nothing. */
void moat_fs_unlock(int fd);

#endif
