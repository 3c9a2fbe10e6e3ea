/*
 * test_cachedisk.c: the disk tier's files (serve/cachedisk.c) in a temp folder: a record written
 * comes back field for field, from memory and from a descriptor; names depend on key and
 * variant; a file cut short, a head or a body changed, another file format, are refused as
 * damaged; no temporary file is left behind.
 */
#include "serve/cachedisk.h"

#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static struct moat_cdisk_rec sample(const char *body, size_t n)
{
    static const char lines[] = "Content-Type: text/plain\r\nETag: \"x\"\r\n";
    return (struct moat_cdisk_rec){.status = 200,
                                   .heuristic = 1,
                                   .request_time = 1000,
                                   .response_time = 1001,
                                   .age_field = 7,
                                   .lifetime = 60,
                                   .key = "https://a.test/x",
                                   .klen = 16,
                                   .vary = "accept-encoding",
                                   .vkey = "accept-encoding=3\n",
                                   .vklen = 18,
                                   .lines = lines,
                                   .llen = sizeof(lines) - 1,
                                   .size = n,
                                   .body = body,
                                   .body_fd = -1};
}

static void path_of(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

TEST_CASE(a_record_comes_back_whole)
{
    struct moat_cdisk_rec r = sample("hello, disk", 11);
    char name[MOAT_CDISK_NAME];
    moat_cdisk_name(r.key, r.klen, r.vkey, r.vklen, name);
    EXPECT_INT((int)strlen(name), 64);
    uint64_t bytes = 0;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_cdisk_write(dir, name, &r, &bytes, &err)));
    char p[256];
    path_of(name, p, sizeof(p));
    struct stat st;
    EXPECT(stat(p, &st) == 0);
    EXPECT_INT((int)st.st_size, (int)bytes);
    EXPECT_INT((int)(st.st_mode & 0777), 0600);
    struct moat_cdisk_loaded L;
    EXPECT(moat_ok(moat_cdisk_load(dir, name, 1, &L, &err)));
    EXPECT_INT(L.r.status, 200);
    EXPECT_INT(L.r.heuristic, 1);
    EXPECT_INT((int)L.r.request_time, 1000);
    EXPECT_INT((int)L.r.response_time, 1001);
    EXPECT_INT((int)L.r.age_field, 7);
    EXPECT_INT((int)L.r.lifetime, 60);
    EXPECT(L.r.klen == 16 && memcmp(L.r.key, "https://a.test/x", 16) == 0);
    EXPECT_STR(L.r.vary, "accept-encoding");
    EXPECT(L.r.vklen == 18 && memcmp(L.r.vkey, "accept-encoding=3\n", 18) == 0);
    EXPECT(L.r.llen == r.llen && memcmp(L.r.lines, r.lines, r.llen) == 0);
    EXPECT_INT((int)L.r.size, 11);
    char got[16] = {0};
    EXPECT(L.r.body_fd >= 0);
    EXPECT_INT((int)pread(L.r.body_fd, got, 11, (off_t)L.r.body_off), 11);
    EXPECT_STR(got, "hello, disk");
    close(L.r.body_fd);
    free(L.blob);
    free(L.vary_own);
    /* The head alone: no descriptor kept. */
    EXPECT(moat_ok(moat_cdisk_load(dir, name, 0, &L, &err)));
    EXPECT_INT(L.r.body_fd, -1);
    free(L.blob);
    free(L.vary_own);
    unlink(p);
}

TEST_CASE(a_body_from_a_descriptor)
{
    int fd = memfd_create("t", MFD_CLOEXEC);
    EXPECT(fd >= 0);
    static char big[200000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (char)(i * 7);
    }
    EXPECT_INT((int)write(fd, "skip", 4), 4);
    EXPECT_INT((int)write(fd, big, sizeof(big)), (int)sizeof(big));
    struct moat_cdisk_rec r = sample(NULL, sizeof(big));
    r.vary = NULL;
    r.vkey = NULL;
    r.vklen = 0;
    r.body_fd = fd;
    r.body_off = 4;
    char name[MOAT_CDISK_NAME];
    moat_cdisk_name(r.key, r.klen, NULL, 0, name);
    uint64_t bytes;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_cdisk_write(dir, name, &r, &bytes, &err)));
    close(fd);
    struct moat_cdisk_loaded L;
    EXPECT(moat_ok(moat_cdisk_load(dir, name, 1, &L, &err)));
    EXPECT(L.r.vary == NULL && L.r.vklen == 0);
    static char back[200000];
    EXPECT_INT((int)pread(L.r.body_fd, back, sizeof(back), (off_t)L.r.body_off), (int)sizeof(back));
    EXPECT(memcmp(back, big, sizeof(big)) == 0);
    close(L.r.body_fd);
    free(L.blob);
    char p[256];
    path_of(name, p, sizeof(p));
    unlink(p);
}

TEST_CASE(names_follow_key_and_variant)
{
    char a[MOAT_CDISK_NAME], b[MOAT_CDISK_NAME], c[MOAT_CDISK_NAME], d[MOAT_CDISK_NAME];
    moat_cdisk_name("k", 1, "v=1\n", 4, a);
    moat_cdisk_name("k", 1, "v=1\n", 4, b);
    moat_cdisk_name("k", 1, "v=2\n", 4, c);
    moat_cdisk_name("k", 1, NULL, 0, d);
    EXPECT_STR(a, b);
    EXPECT(strcmp(a, c) != 0 && strcmp(a, d) != 0 && strcmp(c, d) != 0);
}

/* Write a sample, change it with `damage`, and expect it refused. */
static void refused_after(void (*damage)(const char *path), int body)
{
    struct moat_cdisk_rec r = sample("0123456789abcdef", 16);
    char name[MOAT_CDISK_NAME];
    moat_cdisk_name(r.key, r.klen, r.vkey, r.vklen, name);
    uint64_t bytes;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_cdisk_write(dir, name, &r, &bytes, &err)));
    char p[256];
    path_of(name, p, sizeof(p));
    damage(p);
    struct moat_cdisk_loaded L;
    moat_rc rc = moat_cdisk_load(dir, name, body, &L, &err);
    EXPECT_INT(rc.kind, MOAT_E_PEER);
    EXPECT(strstr(err.msg, "not a whole cache file") != NULL);
    unlink(p);
}

static void cut_short(const char *p)
{
    EXPECT(truncate(p, 90) == 0);
}

static void flip(const char *p, off_t at)
{
    int fd = open(p, O_RDWR);
    char ch;
    EXPECT_INT((int)pread(fd, &ch, 1, at), 1);
    ch ^= 0x20;
    EXPECT_INT((int)pwrite(fd, &ch, 1, at), 1);
    close(fd);
}

static void flip_head(const char *p)
{
    flip(p, 90); /* in the lines */
}

static void flip_body(const char *p)
{
    struct stat st;
    EXPECT(stat(p, &st) == 0);
    flip(p, st.st_size - 3);
}

static void flip_magic(const char *p)
{
    flip(p, 1);
}

TEST_CASE(damaged_files_are_refused)
{
    refused_after(cut_short, 0);
    refused_after(flip_head, 0);
    refused_after(flip_body, 1);
    refused_after(flip_magic, 0);
    struct moat_cdisk_loaded L;
    struct moat_err err = {0};
    EXPECT_INT(moat_cdisk_load(dir, "0000", 0, &L, &err).kind, MOAT_E_NOTFOUND);
}

TEST_CASE(no_temporary_file_is_left)
{
    DIR *d = opendir(dir);
    EXPECT(d != NULL);
    struct dirent *de;
    int others = 0;
    while ((de = readdir(d)) != NULL) {
        others += de->d_name[0] != '.' || strncmp(de->d_name, ".tmp-", 5) == 0;
    }
    closedir(d);
    EXPECT_INT(others, 0);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/moat-cdisk-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(a_record_comes_back_whole);
    RUN(a_body_from_a_descriptor);
    RUN(names_follow_key_and_variant);
    RUN(damaged_files_are_refused);
    RUN(no_temporary_file_is_left);
    rmdir(dir);
    TEST_MAIN_END();
}
