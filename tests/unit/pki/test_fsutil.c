/*
 * test_fsutil.c: atomic writes (mode from the first byte, no temp file left on any failure),
 * the no-clobber variant, mkdir -p, whole-file reads with their error kinds, the folder lock.
 */
#include "pki/fsutil.h"

#include "pki_helpers.h"
#include "test.h"

#include <signal.h>
#include <sys/resource.h>

TEST_CASE(write_atomic_creates_with_mode_and_replaces)
{
    const char *p = ph_path("a.key");
    struct moat_err err = {0};
    mode_t old = umask(0);
    EXPECT_INT(moat_fs_write_atomic(p, "one", 3, 0600, &err).kind, MOAT_OK);
    umask(old);
    EXPECT_INT(ph_mode(p), 0600);
    char *s = ph_read(p, NULL);
    EXPECT_STR(s, "one");
    free(s);
    /* umask 077 must not stop a 0644 certificate from being world-readable as asked. */
    old = umask(077);
    EXPECT_INT(moat_fs_write_atomic(p, "second", 6, 0644, &err).kind, MOAT_OK);
    umask(old);
    EXPECT_INT(ph_mode(p), 0644);
    s = ph_read(p, NULL);
    EXPECT_STR(s, "second");
    free(s);
    EXPECT(!ph_has_tmp(ph_dir));
    unlink(p);
}

TEST_CASE(write_atomic_empty_file)
{
    const char *p = ph_path("empty");
    EXPECT_INT(moat_fs_write_atomic(p, "", 0, 0600, NULL).kind, MOAT_OK);
    size_t len = 99;
    char *s = ph_read(p, &len);
    EXPECT_INT(len, 0);
    free(s);
    unlink(p);
}

TEST_CASE(write_new_never_replaces)
{
    const char *p = ph_path("b.key");
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_write_new(p, "first", 5, 0600, &err).kind, MOAT_OK);
    EXPECT_INT(moat_fs_write_new(p, "other", 5, 0600, &err).kind, MOAT_E_IO);
    EXPECT_INT(err.sys_errno, EEXIST);
    EXPECT(ph_contains(err.msg, "already exists"));
    char *s = ph_read(p, NULL);
    EXPECT_STR(s, "first");
    free(s);
    EXPECT(!ph_has_tmp(ph_dir));
    unlink(p);
}

TEST_CASE(write_atomic_fails_cleanly_when_rename_fails)
{
    /* The target is a non-empty folder: rename(2) fails after the temp file was written. */
    const char *d = ph_path("occupied");
    const char *inside = ph_path("occupied/x");
    EXPECT_INT(mkdir(d, 0700), 0);
    EXPECT_INT(ph_write_str(inside, "x"), 0);
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_write_atomic(d, "data", 4, 0600, &err).kind, MOAT_E_IO);
    EXPECT(err.sys_errno != 0);
    EXPECT(!ph_has_tmp(ph_dir));
    unlink(inside);
    rmdir(d);
}

TEST_CASE(write_atomic_fails_cleanly_when_write_fails)
{
    /* RLIMIT_FSIZE makes write(2) fail with EFBIG midway (SIGXFSZ ignored). */
    const char *p = ph_path("big");
    EXPECT_INT(ph_write_str(p, "original"), 0);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    EXPECT_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    static char data[8192];
    memset(data, 'a', sizeof(data));
    struct moat_err err = {0};
    moat_rc rc = moat_fs_write_atomic(p, data, sizeof(data), 0600, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    EXPECT_INT(rc.kind, MOAT_E_IO);
    EXPECT_INT(err.sys_errno, EFBIG);
    EXPECT(!ph_has_tmp(ph_dir));
    char *s = ph_read(p, NULL);
    EXPECT_STR(s, "original");
    free(s);
    unlink(p);
}

TEST_CASE(write_atomic_missing_folder)
{
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_write_atomic(ph_path("nope/x"), "a", 1, 0600, &err).kind, MOAT_E_IO);
    EXPECT_INT(err.sys_errno, ENOENT);
    EXPECT(ph_contains(err.where, "nope/x"));
}

TEST_CASE(mkdir_p_nested_and_existing)
{
    const char *deep = ph_path("m1/m2/m3");
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_mkdir_p(deep, 0700, &err).kind, MOAT_OK);
    EXPECT_INT(ph_mode(deep), 0700);
    EXPECT_INT(ph_mode(ph_path("m1")), 0700);
    EXPECT_INT(moat_fs_mkdir_p(deep, 0700, &err).kind, MOAT_OK);
    /* Trailing and doubled slashes are fine. */
    char buf[300];
    snprintf(buf, sizeof(buf), "%s//m1/m2//m4/", ph_dir);
    EXPECT_INT(moat_fs_mkdir_p(buf, 0700, &err).kind, MOAT_OK);
    EXPECT_INT(ph_mode(ph_path("m1/m2/m4")), 0700);
    rmdir(ph_path("m1/m2/m4"));
    rmdir(deep);
    rmdir(ph_path("m1/m2"));
    rmdir(ph_path("m1"));
}

TEST_CASE(mkdir_p_file_in_the_way)
{
    const char *f = ph_path("afile");
    EXPECT_INT(ph_write_str(f, "x"), 0);
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_mkdir_p(ph_path("afile/sub"), 0700, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.msg, "not a folder"));
    EXPECT_INT(moat_fs_mkdir_p(f, 0700, &err).kind, MOAT_E_CONFIG);
    EXPECT_INT(moat_fs_mkdir_p("", 0700, &err).kind, MOAT_E_CONFIG);
    unlink(f);
}

TEST_CASE(read_file_ok_and_errors)
{
    const char *p = ph_path("r.txt");
    EXPECT_INT(ph_write_str(p, "hello"), 0);
    unsigned char *data = NULL;
    size_t len = 0;
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_read_file(p, 100, &data, &len, &err).kind, MOAT_OK);
    EXPECT_INT(len, 5);
    EXPECT_STR((char *)data, "hello");
    free(data);

    EXPECT_INT(moat_fs_read_file(p, 4, &data, &len, &err).kind, MOAT_E_LIMIT);
    EXPECT(data == NULL);
    EXPECT_INT(moat_fs_read_file(p, 5, &data, &len, &err).kind, MOAT_OK);
    free(data);

    EXPECT_INT(moat_fs_read_file(ph_path("missing"), 100, &data, &len, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(ph_contains(err.msg, "does not exist"));
    EXPECT(ph_contains(err.where, "missing"));
    EXPECT_INT(moat_fs_read_file(ph_dir, 100, &data, &len, &err).kind, MOAT_E_CONFIG);
    EXPECT(ph_contains(err.msg, "folder"));
    EXPECT_INT(moat_fs_read_file("/dev/null", 100, &data, &len, &err).kind, MOAT_E_CONFIG);
    unlink(p);
}

static int read_as_other(void *arg)
{
    unsigned char *data = NULL;
    size_t len = 0;
    struct moat_err err = {0};
    moat_rc rc = moat_fs_read_file(arg, 100, &data, &len, &err);
    free(data);
    if (rc.kind != MOAT_E_IO || err.sys_errno != EACCES) {
        return 1;
    }
    return strstr(err.msg, "permission") != NULL ? 0 : 2;
}

TEST_CASE(read_file_permission_denied)
{
    const char *p = ph_path("secret");
    EXPECT_INT(ph_write(p, "s", 1, 0600), 0);
    if (geteuid() != 0) {
        chmod(p, 0);
    }
    EXPECT_INT(ph_as_nobody(read_as_other, (void *)p), 0);
    unlink(p);
}

TEST_CASE(lock_unlock)
{
    int fd = -1;
    struct moat_err err = {0};
    EXPECT_INT(moat_fs_lock(ph_dir, &fd, &err).kind, MOAT_OK);
    EXPECT(fd >= 0);
    EXPECT_INT(ph_mode(ph_path(".lock")), 0600);
    moat_fs_unlock(fd);
    moat_fs_unlock(-1);
    EXPECT_INT(moat_fs_lock(ph_path("nope"), &fd, &err).kind, MOAT_E_IO);
    EXPECT_INT(fd, -1);
    unlink(ph_path(".lock"));
}

int main(void)
{
    ph_dir_make();
    RUN(write_atomic_creates_with_mode_and_replaces);
    RUN(write_atomic_empty_file);
    RUN(write_new_never_replaces);
    RUN(write_atomic_fails_cleanly_when_rename_fails);
    RUN(write_atomic_fails_cleanly_when_write_fails);
    RUN(write_atomic_missing_folder);
    RUN(mkdir_p_nested_and_existing);
    RUN(mkdir_p_file_in_the_way);
    RUN(read_file_ok_and_errors);
    RUN(read_file_permission_denied);
    RUN(lock_unlock);
    EXPECT_INT(ph_count_entries(ph_dir), 0);
    ph_dir_remove();
    TEST_MAIN_END();
}
