/*
 * test_path.c: moat_path_normalize, with every traversal trick we know of refused or made
 * harmless, and the trailing-slash and buffer-size rules.
 */
#include "core/path.h"

#include "test.h"

/* Normalise a C string; returns the output or "ERR:<kind>" so a table can hold both. */
static const char *norm(const char *in)
{
    static char out[256];
    static char errbuf[32];
    size_t n = 12345;
    moat_rc rc = moat_path_normalize(in, strlen(in), out, sizeof(out), &n);
    if (!moat_ok(rc)) {
        snprintf(errbuf, sizeof(errbuf), "ERR:%d", (int)rc.kind);
        return n == 0 ? errbuf : "ERR:outlen-not-reset";
    }
    if (n != strlen(out)) {
        return "BAD-OUTLEN";
    }
    return out;
}

#define PEER "ERR:4"

TEST_CASE(test_plain_paths)
{
    EXPECT_STR(norm("/"), "/");
    EXPECT_STR(norm("/index.html"), "/index.html");
    EXPECT_STR(norm("/a/b/c.txt"), "/a/b/c.txt");
    EXPECT_STR(norm("/dir/"), "/dir/");
    EXPECT_STR(norm("/..."), "/...");
    EXPECT_STR(norm("/a/.../b"), "/a/.../b");
    EXPECT_STR(norm("/..a/a.."), "/..a/a..");
    EXPECT_STR(norm("/.hidden"), "/.hidden");
    EXPECT_STR(norm("/caf\xc3\xa9"), "/caf\xc3\xa9");
}

TEST_CASE(test_percent_decoding)
{
    EXPECT_STR(norm("/a%20b"), "/a b");
    EXPECT_STR(norm("/%41%42%43"), "/ABC");
    EXPECT_STR(norm("/%7e%7E"), "/~~");
    EXPECT_STR(norm("/%c3%a9"), "/\xc3\xa9");
    /* Decoded once only: %252e is the literal name "%2e", not ".". */
    EXPECT_STR(norm("/%252e%252e/x"), "/%2e%2e/x");
    EXPECT_STR(norm("/%25"), "/%");
}

TEST_CASE(test_malformed_escapes)
{
    EXPECT_STR(norm("/%"), PEER);
    EXPECT_STR(norm("/a%"), PEER);
    EXPECT_STR(norm("/%4"), PEER);
    EXPECT_STR(norm("/%zz"), PEER);
    EXPECT_STR(norm("/%g0"), PEER);
    EXPECT_STR(norm("/%0g"), PEER);
    EXPECT_STR(norm("/%%41"), PEER);
    EXPECT_STR(norm("/%-1"), PEER);
}

TEST_CASE(test_refused_bytes)
{
    EXPECT_STR(norm("/a%00b"), PEER);
    EXPECT_STR(norm("/a%00"), PEER);
    EXPECT_STR(norm("/a%0d%0aSet-Cookie:x"), PEER);
    EXPECT_STR(norm("/a%1f"), PEER);
    EXPECT_STR(norm("/a%7f"), PEER);
    EXPECT_STR(norm("/a\tb"), PEER);
    EXPECT_STR(norm("/a\x7f"), PEER);
    EXPECT_STR(norm("/a\\b"), PEER);
    EXPECT_STR(norm("/a%5cb"), PEER);
    EXPECT_STR(norm("/a%5Cb"), PEER);
    EXPECT_STR(norm("/..%5c..%5cwindows"), PEER);
    EXPECT_STR(norm("/a%2fb"), PEER);
    EXPECT_STR(norm("/a%2Fb"), PEER);
    EXPECT_STR(norm("/..%2f..%2fetc/passwd"), PEER);
    /* A raw NUL inside the given length. */
    char out[32];
    size_t n;
    EXPECT(!moat_ok(moat_path_normalize("/a\0b", 4, out, sizeof(out), &n)));
}

TEST_CASE(test_not_origin_form)
{
    EXPECT_STR(norm(""), PEER);
    EXPECT_STR(norm("a/b"), PEER);
    EXPECT_STR(norm("*"), PEER);
    EXPECT_STR(norm("http://x/"), PEER);
    EXPECT_STR(norm("%2fetc"), PEER);
}

TEST_CASE(test_dot_segments)
{
    EXPECT_STR(norm("/./a"), "/a");
    EXPECT_STR(norm("/a/./b"), "/a/b");
    EXPECT_STR(norm("/a/."), "/a/");
    EXPECT_STR(norm("/a/./"), "/a/");
    EXPECT_STR(norm("/."), "/");
    EXPECT_STR(norm("/a/../b"), "/b");
    EXPECT_STR(norm("/a/b/.."), "/a/");
    EXPECT_STR(norm("/a/b/../"), "/a/");
    EXPECT_STR(norm("/a/.."), "/");
    EXPECT_STR(norm("/a/b/../../c"), "/c");
    EXPECT_STR(norm("/a/b/c/../../.."), "/");
    /* Encoded dots are dots. */
    EXPECT_STR(norm("/a/%2e/b"), "/a/b");
    EXPECT_STR(norm("/a/%2e%2e/b"), "/b");
    EXPECT_STR(norm("/a/%2E%2E/b"), "/b");
    EXPECT_STR(norm("/a/.%2e/b"), "/b");
    EXPECT_STR(norm("/a/%2e./b"), "/b");
}

TEST_CASE(test_climb_above_root_refused)
{
    EXPECT_STR(norm("/.."), PEER);
    EXPECT_STR(norm("/../"), PEER);
    EXPECT_STR(norm("/../etc/passwd"), PEER);
    EXPECT_STR(norm("/a/../../etc/passwd"), PEER);
    EXPECT_STR(norm("/a/b/../../../x"), PEER);
    EXPECT_STR(norm("/%2e%2e/etc/passwd"), PEER);
    EXPECT_STR(norm("/%2e./etc/passwd"), PEER);
    EXPECT_STR(norm("/.%2e/etc/passwd"), PEER);
    EXPECT_STR(norm("/a/%2e%2e/%2e%2e/x"), PEER);
    EXPECT_STR(norm("/./../x"), PEER);
    EXPECT_STR(norm("//../x"), PEER);
    EXPECT_STR(norm("/a/./../.."), PEER);
}

TEST_CASE(test_slashes_collapse)
{
    EXPECT_STR(norm("//"), "/");
    EXPECT_STR(norm("///"), "/");
    EXPECT_STR(norm("//etc/passwd"), "/etc/passwd");
    EXPECT_STR(norm("/a//b"), "/a/b");
    EXPECT_STR(norm("/a///b//"), "/a/b/");
    EXPECT_STR(norm("/a/.//./b"), "/a/b");
}

TEST_CASE(test_buffer_limits)
{
    char out[8];
    size_t n = 99;
    /* Exactly fits: 7 bytes + NUL. */
    EXPECT(moat_ok(moat_path_normalize("/abcdef", 7, out, sizeof(out), &n)));
    EXPECT_INT(n, 7);
    EXPECT_STR(out, "/abcdef");
    /* One byte too many. */
    moat_rc rc = moat_path_normalize("/abcdefg", 8, out, sizeof(out), &n);
    EXPECT_INT(rc.kind, MOAT_E_LIMIT);
    EXPECT_INT(n, 0);
    /* The trailing "/" also needs room. */
    rc = moat_path_normalize("/abcdef/x", 9, out, sizeof(out), &n);
    EXPECT_INT(rc.kind, MOAT_E_LIMIT);
    /* Decoding shrinks, so a long encoded input can fit a small buffer. */
    EXPECT(moat_ok(moat_path_normalize("/%41%42%43", 10, out, 5, &n)));
    EXPECT_STR(out, "/ABC");
    EXPECT_INT(moat_path_normalize("/", 1, out, 1, &n).kind, MOAT_E_LIMIT);
    EXPECT_INT(moat_path_normalize("/", 1, out, 0, &n).kind, MOAT_E_LIMIT);
    /* The output is the workspace: a segment and the ".." that removes it must fit once. */
    EXPECT(moat_ok(moat_path_normalize("/abc/../x", 9, out, sizeof(out), &n)));
    EXPECT_STR(out, "/x");
    EXPECT_INT(moat_path_normalize("/abcd/../x", 10, out, sizeof(out), &n).kind, MOAT_E_LIMIT);
    /* Resolution can free room again. */
    EXPECT(moat_ok(moat_path_normalize("/abc/../abc/../x", 16, out, sizeof(out), &n)));
    EXPECT_STR(out, "/x");
}

TEST_CASE(test_length_not_nul)
{
    /* Only len bytes are read: the rest of the string is the query, not the path. */
    char out[32];
    size_t n;
    const char *target = "/a/b?../../x";
    EXPECT(moat_ok(moat_path_normalize(target, 4, out, sizeof(out), &n)));
    EXPECT_STR(out, "/a/b");
    /* An escape cut by len is malformed even if the bytes after len would complete it. */
    EXPECT(!moat_ok(moat_path_normalize("/a%41", 4, out, sizeof(out), &n)));
}

int main(void)
{
    RUN(test_plain_paths);
    RUN(test_percent_decoding);
    RUN(test_malformed_escapes);
    RUN(test_refused_bytes);
    RUN(test_not_origin_form);
    RUN(test_dot_segments);
    RUN(test_climb_above_root_refused);
    RUN(test_slashes_collapse);
    RUN(test_buffer_limits);
    RUN(test_length_not_nul);
    TEST_MAIN_END();
}
