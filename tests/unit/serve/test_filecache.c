/*
 * test_filecache.c: the worker's open-file cache (serve/filecache.c) on real files in a temp
 * folder: hits keep the descriptor, a file changed in place or replaced is found stale once the
 * validity window passed (and not before), a busy entry outlives eviction and staleness until
 * its release, the least recently used idle entry makes room, sites do not see each other's
 * files, and max 0 keeps nothing.
 */
#include "serve/filecache.h"

#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static int root_fd = -1;

static void write_file(const char *name, const char *text)
{
    int fd = openat(root_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT(fd >= 0);
    EXPECT_INT((int)write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
}

/* Open and put `name` as the static handler would; the entry comes back referenced. */
static struct moat_fcache_entry *open_put(struct moat_fcache *c, uint64_t key, const char *name,
                                          uint64_t now)
{
    int fd = openat(root_fd, name, O_RDONLY);
    EXPECT(fd >= 0);
    struct stat st;
    EXPECT(fstat(fd, &st) == 0);
    struct moat_fcache_entry *e = moat_fcache_put(c, key, name, strlen(name), fd, &st, now);
    if (e == NULL) {
        close(fd);
    }
    return e;
}

static struct moat_fcache_entry *get(struct moat_fcache *c, uint64_t key, const char *name,
                                     uint64_t now)
{
    return moat_fcache_get(c, key, root_fd, name, strlen(name), now);
}

TEST_CASE(a_hit_keeps_the_descriptor_and_the_stat)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 10, 1000)));
    write_file("a.txt", "hello\n");
    EXPECT(get(&c, 1, "a.txt", 0) == NULL);
    struct moat_fcache_entry *e = open_put(&c, 1, "a.txt", 0);
    EXPECT(e != NULL);
    int fd = e->fd;
    moat_fcache_release(e);
    struct moat_fcache_entry *h = get(&c, 1, "a.txt", 500);
    EXPECT(h == e);
    EXPECT_INT(h->fd, fd);
    EXPECT_INT((int)h->st.st_size, 6);
    EXPECT(h->bytes != NULL && memcmp(h->bytes, "hello\n", 6) == 0); /* small: kept in memory */
    EXPECT_INT((int)c.bytes_held, 6);
    moat_fcache_release(h);
    EXPECT(get(&c, 2, "a.txt", 500) == NULL); /* another site's key */
    EXPECT_INT((int)c.hits, 1);
    moat_fcache_clear(&c);
}

TEST_CASE(a_change_is_seen_after_the_window_and_not_before)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 10, 1000)));
    write_file("b.txt", "one\n");
    struct moat_fcache_entry *e = open_put(&c, 1, "b.txt", 0);
    moat_fcache_release(e);
    write_file("b.txt", "changed\n"); /* in place: same inode, other size and times */
    struct moat_fcache_entry *h = get(&c, 1, "b.txt", 999);
    EXPECT(h == e); /* inside the window: trusted unchecked, as documented */
    moat_fcache_release(h);
    EXPECT(get(&c, 1, "b.txt", 1000) == NULL); /* checked: stale, dropped */
    EXPECT_INT((int)c.stale, 1);
    EXPECT_INT((int)c.n, 0);
    /* Replaced by rename: another inode. */
    e = open_put(&c, 1, "b.txt", 2000);
    moat_fcache_release(e);
    write_file("b.new", "changed\n");
    EXPECT(renameat(root_fd, "b.new", root_fd, "b.txt") == 0);
    EXPECT(get(&c, 1, "b.txt", 3000) == NULL);
    /* Gone: dropped too. */
    e = open_put(&c, 1, "b.txt", 4000);
    moat_fcache_release(e);
    EXPECT(unlinkat(root_fd, "b.txt", 0) == 0);
    EXPECT(get(&c, 1, "b.txt", 5000) == NULL);
    /* A symbolic link in its place is not the file (the final component is not followed). */
    write_file("c.txt", "c\n");
    e = open_put(&c, 1, "c.txt", 6000);
    moat_fcache_release(e);
    write_file("target", "c\n");
    EXPECT(unlinkat(root_fd, "c.txt", 0) == 0);
    EXPECT(symlinkat("target", root_fd, "c.txt") == 0);
    EXPECT(get(&c, 1, "c.txt", 7000) == NULL);
    moat_fcache_clear(&c);
}

TEST_CASE(an_unchanged_file_is_kept_past_the_window)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 10, 1000)));
    write_file("d.txt", "d\n");
    struct moat_fcache_entry *e = open_put(&c, 1, "d.txt", 0);
    moat_fcache_release(e);
    struct moat_fcache_entry *h = get(&c, 1, "d.txt", 5000);
    EXPECT(h == e);
    EXPECT_INT((int)h->checked_ms, 5000);
    moat_fcache_release(h);
    moat_fcache_clear(&c);
}

TEST_CASE(a_busy_entry_outlives_staleness_until_released)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 10, 0))); /* 0: checked on every request */
    write_file("e.txt", "eeee\n");
    struct moat_fcache_entry *busy = open_put(&c, 1, "e.txt", 0);
    write_file("e.txt", "changed\n");
    EXPECT(get(&c, 1, "e.txt", 1) == NULL); /* stale for new answers */
    EXPECT(busy->retired);
    char buf[8];
    EXPECT_INT((int)pread(busy->fd, buf, 3, 0), 3); /* the answer still reads its file */
    EXPECT(c.retired == busy);
    moat_fcache_release(busy); /* closed now */
    EXPECT(c.retired == NULL);
    moat_fcache_clear(&c);
}

TEST_CASE(the_least_recently_used_idle_entry_makes_room)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 2, 1000)));
    write_file("f1", "1");
    write_file("f2", "2");
    write_file("f3", "3");
    moat_fcache_release(open_put(&c, 1, "f1", 0));
    struct moat_fcache_entry *f2 = open_put(&c, 1, "f2", 0); /* kept busy */
    moat_fcache_release(get(&c, 1, "f1", 1));                /* f1 is the most recent now */
    moat_fcache_release(open_put(&c, 1, "f3", 2));           /* f2 busy: f1 goes */
    EXPECT_INT((int)c.n, 2);
    EXPECT(get(&c, 1, "f1", 3) == NULL);
    struct moat_fcache_entry *h = get(&c, 1, "f2", 3);
    EXPECT(h == f2);
    moat_fcache_release(h);
    moat_fcache_release(f2);
    /* Full of busy entries: nothing is kept, the caller keeps its descriptor. */
    struct moat_fcache_entry *a = get(&c, 1, "f2", 4), *b = get(&c, 1, "f3", 4);
    EXPECT(a != NULL && b != NULL);
    EXPECT(open_put(&c, 1, "f1", 5) == NULL);
    moat_fcache_release(a);
    moat_fcache_release(b);
    moat_fcache_clear(&c);
}

TEST_CASE(a_file_over_the_small_size_is_read_from_its_descriptor)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 10, 1000)));
    char big[MOAT_FCACHE_SMALL + 2]; /* one byte over, and the NUL */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_file("big", big);
    struct moat_fcache_entry *e = open_put(&c, 1, "big", 0);
    EXPECT(e != NULL && e->bytes == NULL);
    moat_fcache_release(e);
    EXPECT_INT((int)c.bytes_held, 0);
    moat_fcache_clear(&c);
    EXPECT(unlinkat(root_fd, "big", 0) == 0);
}

TEST_CASE(a_flush_forgets_all_and_spares_busy_ones_until_released)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 10, 1000)));
    write_file("h1", "1");
    write_file("h2", "2");
    moat_fcache_release(open_put(&c, 1, "h1", 0));
    struct moat_fcache_entry *busy = open_put(&c, 1, "h2", 0);
    moat_fcache_flush(&c);
    EXPECT_INT((int)c.n, 0);
    EXPECT(get(&c, 1, "h1", 1) == NULL);
    EXPECT(busy->retired && c.retired == busy);
    char b;
    EXPECT_INT((int)pread(busy->fd, &b, 1, 0), 1);
    moat_fcache_release(busy);
    EXPECT(c.retired == NULL);
    moat_fcache_clear(&c);
    EXPECT(unlinkat(root_fd, "h1", 0) == 0 && unlinkat(root_fd, "h2", 0) == 0);
}

TEST_CASE(max_zero_keeps_nothing)
{
    struct moat_fcache c;
    EXPECT(moat_ok(moat_fcache_init(&c, 0, 1000)));
    write_file("g", "g");
    EXPECT(open_put(&c, 1, "g", 0) == NULL);
    EXPECT(get(&c, 1, "g", 0) == NULL);
    moat_fcache_clear(&c);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/moat-fcache-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    root_fd = open(dir, O_PATH | O_DIRECTORY);
    RUN(a_hit_keeps_the_descriptor_and_the_stat);
    RUN(a_change_is_seen_after_the_window_and_not_before);
    RUN(an_unchanged_file_is_kept_past_the_window);
    RUN(a_busy_entry_outlives_staleness_until_released);
    RUN(the_least_recently_used_idle_entry_makes_room);
    RUN(a_file_over_the_small_size_is_read_from_its_descriptor);
    RUN(a_flush_forgets_all_and_spares_busy_ones_until_released);
    RUN(max_zero_keeps_nothing);
    const char *names[] = {"a.txt", "b.txt", "b.new", "c.txt", "target", "d.txt",
                           "e.txt", "f1",    "f2",    "f3",    "g"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        unlinkat(root_fd, names[i], 0);
    }
    close(root_fd);
    rmdir(dir);
    TEST_MAIN_END();
}
