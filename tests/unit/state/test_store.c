/*
 * test_store.c: the store's key rules (store.c) and the folder store (folder.c): values round
 * trip byte for byte with the modes asked for, listings are sorted and hide the store's own
 * dot files, a bad key never reaches the disk, and locks exclude within one process and
 * across processes and lapse when their holder dies.
 */
#include "state/store.h"

#include "pki/pki_helpers.h"
#include "test.h"

#include <sys/types.h>

static void expect_key_ok(const char *key, int prefix)
{
    struct moat_err err = {0};
    moat_rc rc = moat_store_key_check(key, prefix, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  key \"%s\" (prefix %d): %s\n", key, prefix, err.msg);
    }
    EXPECT_INT(rc.kind, MOAT_OK);
}

static void expect_key_bad(const char *key, int prefix)
{
    struct moat_err err = {0};
    moat_rc rc = moat_store_key_check(key, prefix, &err);
    if (rc.kind != MOAT_E_USAGE) {
        fprintf(stderr, "  key \"%s\" (prefix %d) was not refused\n", key, prefix);
    }
    EXPECT_INT(rc.kind, MOAT_E_USAGE);
    EXPECT(err.msg[0] != '\0');
}

TEST_CASE(key_check_accepts_good_keys)
{
    static const char *ok[] = {"a", "acme/x/y.pem", "a-b_c.d@e+f=g", "Z9/a..a/a.."};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        expect_key_ok(ok[i], 0);
        expect_key_ok(ok[i], 1);
    }
    /* A prefix may be the top or end with '/'; a key may not. */
    expect_key_ok("", 1);
    expect_key_ok("acme/", 1);
    expect_key_ok("acme/certs/", 1);
    expect_key_bad("acme/", 0);
    /* The longest key allowed is one byte short of MOAT_STORE_KEY_MAX. */
    char key[MOAT_STORE_KEY_MAX + 1];
    memset(key, 'k', sizeof(key));
    key[MOAT_STORE_KEY_MAX - 1] = '\0';
    expect_key_ok(key, 0);
}

TEST_CASE(key_check_refuses_bad_keys)
{
    static const char *bad[] = {"",    "/abs", "a//b",      "a/../b",   "..",   ".",   "a/./b",
                                "a b", "a\\b", "a\x01",     "../a",     "a/..", "a/.", "a\x7f",
                                "a:b", "a*b",  "a\xc3\xa9", ".locks/x", "a/.b", ".x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_key_bad(bad[i], 0);
    }
    static const char *bad_prefix[] = {"a//", "../", "./", "/a/", "a b/", "/", ".locks/"};
    for (size_t i = 0; i < sizeof(bad_prefix) / sizeof(bad_prefix[0]); i++) {
        expect_key_bad(bad_prefix[i], 1);
    }
    EXPECT_INT(moat_store_key_check(NULL, 1, NULL).kind, MOAT_E_USAGE);
    char key[MOAT_STORE_KEY_MAX + 1];
    memset(key, 'k', sizeof(key));
    key[MOAT_STORE_KEY_MAX] = '\0'; /* MOAT_STORE_KEY_MAX bytes */
    expect_key_bad(key, 0);
    expect_key_bad(key, 1);
}

TEST_CASE(key_part_escapes)
{
    char out[128];
    EXPECT_STR(moat_store_key_part("*.example.com", out, sizeof(out)), "=2a.example.com");
    EXPECT_STR(moat_store_key_part("www.Example-1.com", out, sizeof(out)), "www.Example-1.com");
    EXPECT_STR(moat_store_key_part("https://x/dir", out, sizeof(out)), "https=3a=2f=2fx=2fdir");
    EXPECT(strchr(out, '/') == NULL && strchr(out, ':') == NULL);
    EXPECT_INT(moat_store_key_check(out, 0, NULL).kind, MOAT_OK);
    /* A leading '.' is escaped, so no part is ".", ".." or a dot file; later dots are kept. */
    EXPECT_STR(moat_store_key_part(".", out, sizeof(out)), "=2e");
    EXPECT_STR(moat_store_key_part("..", out, sizeof(out)), "=2e.");
    EXPECT_STR(moat_store_key_part(".locks", out, sizeof(out)), "=2elocks");
    EXPECT_STR(moat_store_key_part("", out, sizeof(out)), "=");
    EXPECT_STR(moat_store_key_part("a b\xff", out, sizeof(out)), "a=20b=ff");
    EXPECT_INT(moat_store_key_check(out, 0, NULL).kind, MOAT_OK);
}

TEST_CASE(key_part_is_one_to_one)
{
    static const char *in[] = {"a/b", "a=2fb", "a:b", "a=3ab",        "=",    "", "a.b",
                               ".ab", "=2eab", "*.x", "_wildcard_.x", "=2a.x"};
    char out[sizeof(in) / sizeof(in[0])][64];
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        EXPECT(moat_store_key_part(in[i], out[i], sizeof(out[i])) == out[i]);
        EXPECT(strchr(out[i], '/') == NULL);
        EXPECT_INT(moat_store_key_check(out[i], 0, NULL).kind, MOAT_OK);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(out[i], out[j]) == 0) {
                fprintf(stderr, "  \"%s\" and \"%s\" both give \"%s\"\n", in[i], in[j], out[i]);
            }
            EXPECT(strcmp(out[i], out[j]) != 0);
        }
    }
}

TEST_CASE(key_part_too_small)
{
    char out[16];
    memset(out, 'z', sizeof(out));
    EXPECT(moat_store_key_part("abc", out, 3) == NULL); /* needs 4 with the NUL */
    EXPECT_STR(moat_store_key_part("abc", out, 4), "abc");
    EXPECT(moat_store_key_part("a:", out, 4) == NULL); /* "a=3a" needs 5 */
    EXPECT_STR(moat_store_key_part("a:", out, 5), "a=3a");
    EXPECT(moat_store_key_part("*", out, 3) == NULL);
    EXPECT_STR(moat_store_key_part("*", out, 4), "=2a");
    EXPECT(moat_store_key_part("", out, 1) == NULL);
    EXPECT(moat_store_key_part("", out, 0) == NULL);
    EXPECT(moat_store_key_part("a", out, 0) == NULL);
    EXPECT_STR(moat_store_key_part("", out, 2), "=");
}

static struct moat_store *store_new(const char *name)
{
    struct moat_store *st = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_store_folder_new(ph_path(name), &st, &err);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  folder store %s: %s\n", name, err.msg);
    }
    EXPECT_INT(rc.kind, MOAT_OK);
    return st;
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

TEST_CASE(folder_new_makes_root)
{
    struct moat_store *st = store_new("made/deep/root//");
    EXPECT(st != NULL);
    EXPECT_INT(ph_mode(ph_path("made/deep/root")), 0700);
    EXPECT_INT(ph_mode(ph_path("made")), 0700);
    moat_store_free(st);
    moat_store_free(NULL);
    moat_store_unlock(NULL);
    st = (struct moat_store *)1;
    EXPECT_INT(moat_store_folder_new("", &st, NULL).kind, MOAT_E_USAGE);
    EXPECT(st == NULL);
    /* A file where the root should be. */
    EXPECT_INT(ph_write_str(ph_path("rootfile"), "x"), 0);
    EXPECT_INT(moat_store_folder_new(ph_path("rootfile"), &st, NULL).kind, MOAT_E_CONFIG);
    EXPECT(st == NULL);
}

TEST_CASE(folder_put_get_round_trip)
{
    struct moat_store *st = store_new("rt");
    static const unsigned char bin[] = {0x00, 0x01, 'a', 0x00, 0xff, 0x80, '\n', 0x00};
    struct moat_err err = {0};
    EXPECT_INT(moat_store_put(st, "v/bin", bin, sizeof(bin), 0, &err).kind, MOAT_OK);
    unsigned char *out = NULL;
    size_t len = 0;
    EXPECT_INT(moat_store_get(st, "v/bin", 1024, &out, &len, &err).kind, MOAT_OK);
    EXPECT_INT(len, sizeof(bin));
    EXPECT(out != NULL && memcmp(out, bin, sizeof(bin)) == 0);
    EXPECT(out != NULL && out[len] == '\0');
    free(out);
    /* What is on disk is exactly the value. */
    size_t flen = 0;
    char *raw = ph_read(ph_path("rt/v/bin"), &flen);
    EXPECT_INT(flen, sizeof(bin));
    EXPECT(raw != NULL && memcmp(raw, bin, sizeof(bin)) == 0);
    free(raw);
    /* An empty value is a value. */
    EXPECT_INT(moat_store_put(st, "empty", "", 0, 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_store_get(st, "empty", 10, &out, &len, &err).kind, MOAT_OK);
    EXPECT_INT(len, 0);
    EXPECT(out != NULL && out[0] == '\0');
    free(out);
    moat_store_free(st);
}

TEST_CASE(folder_get_missing_and_too_big)
{
    struct moat_store *st = store_new("gm");
    unsigned char *out = (unsigned char *)1;
    size_t len = 99;
    struct moat_err err = {0};
    EXPECT_INT(moat_store_get(st, "nothing", 100, &out, &len, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(out == NULL);
    EXPECT_INT(len, 0);
    EXPECT_INT(moat_store_get(st, "no/such/folder", 100, &out, &len, &err).kind, MOAT_E_NOTFOUND);
    char big[100];
    memset(big, 'b', sizeof(big));
    EXPECT_INT(moat_store_put(st, "big", big, sizeof(big), 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_store_get(st, "big", 99, &out, &len, &err).kind, MOAT_E_LIMIT);
    EXPECT(out == NULL);
    EXPECT_INT(moat_store_get(st, "big", 100, &out, &len, &err).kind, MOAT_OK);
    EXPECT_INT(len, 100);
    free(out);
    /* A folder is not a value. */
    EXPECT_INT(moat_store_put(st, "dir/x", "x", 1, 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_store_get(st, "dir", 100, &out, &len, &err).kind, MOAT_E_CONFIG);
    EXPECT(out == NULL);
    moat_store_free(st);
}

TEST_CASE(folder_modes)
{
    struct moat_store *st = store_new("modes");
    /* Exact modes even under a strict umask (the atomic write sets them, not open's mode). */
    mode_t old = umask(077);
    struct moat_err err = {0};
    EXPECT_INT(moat_store_put(st, "s/key.pem", "secret", 6, 1, &err).kind, MOAT_OK);
    EXPECT_INT(moat_store_put(st, "p/cert.pem", "public", 6, 0, &err).kind, MOAT_OK);
    umask(022);
    EXPECT_INT(moat_store_put(st, "a/b/c/d.json", "{}", 2, 0, &err).kind, MOAT_OK);
    umask(old);
    EXPECT_INT(ph_mode(ph_path("modes/s/key.pem")), 0600);
    EXPECT_INT(ph_mode(ph_path("modes/p/cert.pem")), 0644);
    EXPECT_INT(ph_mode(ph_path("modes/a/b/c/d.json")), 0644);
    /* Parents are made 0700: the store holds keys. */
    EXPECT_INT(ph_mode(ph_path("modes/a")), 0700);
    EXPECT_INT(ph_mode(ph_path("modes/a/b")), 0700);
    EXPECT_INT(ph_mode(ph_path("modes/a/b/c")), 0700);
    EXPECT_INT(ph_mode(ph_path("modes/s")), 0700);
    /* A replace takes the new mode. */
    EXPECT_INT(moat_store_put(st, "p/cert.pem", "now secret", 10, 1, &err).kind, MOAT_OK);
    EXPECT_INT(ph_mode(ph_path("modes/p/cert.pem")), 0600);
    EXPECT(!ph_has_tmp(ph_path("modes/p")));
    moat_store_free(st);
}

TEST_CASE(folder_overwrite_replaces_whole_value)
{
    struct moat_store *st = store_new("ow");
    static const char longv[] = "a long first value that the second one must not leave behind";
    struct moat_err err = {0};
    EXPECT_INT(moat_store_put(st, "k", longv, sizeof(longv) - 1, 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_store_put(st, "k", "short", 5, 0, &err).kind, MOAT_OK);
    unsigned char *out = NULL;
    size_t len = 0;
    EXPECT_INT(moat_store_get(st, "k", 1024, &out, &len, &err).kind, MOAT_OK);
    EXPECT_INT(len, 5);
    EXPECT_STR((char *)out, "short");
    free(out);
    EXPECT(!ph_has_tmp(ph_path("ow")));
    moat_store_free(st);
}

TEST_CASE(folder_del)
{
    struct moat_store *st = store_new("del");
    struct moat_err err = {0};
    EXPECT_INT(moat_store_put(st, "x/y", "1", 1, 0, &err).kind, MOAT_OK);
    EXPECT_INT(moat_store_del(st, "x/y", &err).kind, MOAT_OK);
    EXPECT(!exists(ph_path("del/x/y")));
    unsigned char *out = NULL;
    size_t len = 0;
    EXPECT_INT(moat_store_get(st, "x/y", 10, &out, &len, &err).kind, MOAT_E_NOTFOUND);
    EXPECT_INT(moat_store_del(st, "x/y", &err).kind, MOAT_OK); /* gone already */
    EXPECT_INT(moat_store_del(st, "never/was", &err).kind, MOAT_OK);
    moat_store_free(st);
}

static int list_is(struct moat_store *st, const char *prefix, const char *const *want, size_t n)
{
    char **keys = (char **)1;
    size_t nkeys = 99;
    struct moat_err err = {0};
    moat_rc rc = moat_store_list(st, prefix, &keys, &nkeys, &err);
    EXPECT_INT(rc.kind, MOAT_OK);
    if (!moat_ok(rc)) {
        fprintf(stderr, "  list \"%s\": %s\n", prefix, err.msg);
        return 0;
    }
    int same = nkeys == n;
    for (size_t i = 0; same && i < n; i++) {
        same = strcmp(keys[i], want[i]) == 0;
    }
    if (!same) {
        fprintf(stderr, "  list \"%s\" gave %zu keys:", prefix, nkeys);
        for (size_t i = 0; i < nkeys; i++) {
            fprintf(stderr, " \"%s\"", keys[i]);
        }
        fprintf(stderr, "\n");
    }
    moat_store_list_free(keys, nkeys);
    return same;
}

TEST_CASE(folder_list)
{
    struct moat_store *st = store_new("ls");
    static const char *put[] = {"l/b", "l/a", "l/c/d", "l/c/e", "l/A", "l/b2", "top"};
    struct moat_err err = {0};
    for (size_t i = 0; i < sizeof(put) / sizeof(put[0]); i++) {
        EXPECT_INT(moat_store_put(st, put[i], "v", 1, 0, &err).kind, MOAT_OK);
    }
    /* The store's own files: the lock folder, a temporary file, a dot file, and a symlink. */
    struct moat_store_lock *l = NULL;
    EXPECT_INT(moat_store_lock(st, "l", 0, &l, &err).kind, MOAT_OK);
    EXPECT(exists(ph_path("ls/.locks")));
    EXPECT_INT(ph_write_str(ph_path("ls/l/.b.0123456789abcdef.tmp"), "half"), 0);
    EXPECT_INT(mkdir(ph_path("ls/l/.hidden"), 0700), 0);
    EXPECT_INT(symlink("a", ph_path("ls/l/link")), 0);

    static const char *const want_l[] = {"A", "a", "b", "b2", "c/"};
    EXPECT(list_is(st, "l/", want_l, 5));
    EXPECT(list_is(st, "l", want_l, 5));
    static const char *const want_c[] = {"d", "e"};
    EXPECT(list_is(st, "l/c/", want_c, 2));
    static const char *const want_top[] = {"l/", "top"};
    EXPECT(list_is(st, "", want_top, 2));
    /* Nothing under it yet, or a value rather than a folder: no keys, not an error. */
    EXPECT(list_is(st, "missing/", NULL, 0));
    EXPECT(list_is(st, "top/", NULL, 0));
    char **keys = (char **)1;
    size_t n = 99;
    EXPECT_INT(moat_store_list(st, "missing/", &keys, &n, &err).kind, MOAT_OK);
    EXPECT(keys == NULL);
    EXPECT_INT(n, 0);
    moat_store_unlock(l);
    moat_store_free(st);
}

TEST_CASE(folder_bad_keys_never_reach_disk)
{
    struct moat_store *st = store_new("bad");
    EXPECT_INT(moat_store_put(st, "x", "1", 1, 0, NULL).kind, MOAT_OK);
    struct moat_err err = {0};
    EXPECT_INT(moat_store_put(st, "a/../../escape", "x", 1, 0, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, ".."));
    EXPECT(!exists(ph_path("bad/a"))); /* no parent folder made either */
    EXPECT(!exists(ph_path("escape")));
    EXPECT_INT(moat_store_put(st, "/abs", "x", 1, 0, &err).kind, MOAT_E_USAGE);
    EXPECT_INT(moat_store_put(st, "..", "x", 1, 0, &err).kind, MOAT_E_USAGE);
    unsigned char *out = (unsigned char *)1;
    size_t len = 9;
    EXPECT_INT(moat_store_get(st, "a/../x", 10, &out, &len, &err).kind, MOAT_E_USAGE);
    EXPECT(out == NULL);
    EXPECT_INT(len, 0);
    EXPECT_INT(moat_store_del(st, "a/../x", &err).kind, MOAT_E_USAGE);
    EXPECT(exists(ph_path("bad/x")));
    char **keys = (char **)1;
    size_t n = 9;
    EXPECT_INT(moat_store_list(st, "../", &keys, &n, &err).kind, MOAT_E_USAGE);
    EXPECT(keys == NULL);
    EXPECT_INT(n, 0);
    struct moat_store_lock *l = (struct moat_store_lock *)1;
    EXPECT_INT(moat_store_lock(st, "../x", 0, &l, &err).kind, MOAT_E_USAGE);
    EXPECT(l == NULL);
    EXPECT(!exists(ph_path("bad/.locks")));
    /* A value where a folder is needed. */
    EXPECT_INT(moat_store_put(st, "x/y", "1", 1, 0, &err).kind, MOAT_E_CONFIG);
    moat_store_free(st);
}

TEST_CASE(lock_same_process)
{
    struct moat_store *st = store_new("lk");
    struct moat_store_lock *a = NULL, *again = (struct moat_store_lock *)1, *b = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_store_lock(st, "a", 60, &a, &err).kind, MOAT_OK);
    EXPECT(a != NULL);
    EXPECT_INT(moat_store_lock(st, "a", 60, &again, &err).kind, MOAT_E_AGAIN);
    EXPECT(again == NULL);
    moat_store_unlock(again);
    EXPECT(ph_contains(err.msg, "locked"));
    /* Another name is another lock. */
    EXPECT_INT(moat_store_lock(st, "b", 60, &b, &err).kind, MOAT_OK);
    moat_store_unlock(a);
    EXPECT_INT(moat_store_lock(st, "a", 60, &again, &err).kind, MOAT_OK);
    EXPECT(again != NULL);
    moat_store_unlock(again);
    moat_store_unlock(b);
    /* Names with folders are one flat lock file each, owner-only. */
    struct moat_store_lock *o = NULL;
    EXPECT_INT(moat_store_lock(st, "acme/x/order", 60, &o, &err).kind, MOAT_OK);
    EXPECT_INT(ph_mode(ph_path("lk/.locks/acme=2fx=2forder")), 0600);
    EXPECT_INT(ph_mode(ph_path("lk/.locks")), 0700);
    struct moat_store_lock *o2 = NULL;
    EXPECT_INT(moat_store_lock(st, "acme/x/order", 60, &o2, &err).kind, MOAT_E_AGAIN);
    moat_store_unlock(o2);
    EXPECT_INT(moat_store_lock(st, "acme=2fx=2forder", 60, &o2, &err).kind, MOAT_OK);
    moat_store_unlock(o2);
    moat_store_unlock(o);
    moat_store_free(st);
}

TEST_CASE(lock_across_processes)
{
    struct moat_store *st = store_new("lkp");
    int ready[2], go[2];
    EXPECT_INT(pipe(ready), 0);
    EXPECT_INT(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    EXPECT(pid >= 0);
    if (pid < 0) {
        moat_store_free(st);
        return;
    }
    if (pid == 0) {
        struct moat_store_lock *l = NULL;
        char c = moat_ok(moat_store_lock(st, "f", 60, &l, NULL)) ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1) {
            _exit(2);
        }
        ssize_t r = read(go[0], &c, 1);
        (void)r;
        _exit(0); /* without unlocking: dying must release it */
    }
    char c = 0;
    EXPECT_INT(read(ready[0], &c, 1), 1);
    EXPECT_INT(c, 'y');
    struct moat_store_lock *l = (struct moat_store_lock *)1;
    struct moat_err err = {0};
    EXPECT_INT(moat_store_lock(st, "f", 60, &l, &err).kind, MOAT_E_AGAIN);
    EXPECT(l == NULL);
    moat_store_unlock(l); /* only when the check above failed */
    struct moat_store_lock *other = NULL;
    EXPECT_INT(moat_store_lock(st, "g", 60, &other, &err).kind, MOAT_OK);
    moat_store_unlock(other);
    EXPECT_INT(write(go[1], "x", 1), 1);
    int status = -1;
    EXPECT_INT(waitpid(pid, &status, 0), pid);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_INT(moat_store_lock(st, "f", 60, &l, &err).kind, MOAT_OK);
    moat_store_unlock(l);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    moat_store_free(st);
}

int main(void)
{
    ph_dir_make();
    RUN(key_check_accepts_good_keys);
    RUN(key_check_refuses_bad_keys);
    RUN(key_part_escapes);
    RUN(key_part_is_one_to_one);
    RUN(key_part_too_small);
    RUN(folder_new_makes_root);
    RUN(folder_put_get_round_trip);
    RUN(folder_get_missing_and_too_big);
    RUN(folder_modes);
    RUN(folder_overwrite_replaces_whole_value);
    RUN(folder_del);
    RUN(folder_list);
    RUN(folder_bad_keys_never_reach_disk);
    RUN(lock_same_process);
    RUN(lock_across_processes);
    ph_dir_remove();
    TEST_MAIN_END();
}
