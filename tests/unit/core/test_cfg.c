/*
 * test_cfg.c: the generic config reader (core/cfg.c) through its public header: tables of good
 * inputs with the tree they must give, tables of bad inputs with the exact "file:line:col" and
 * message, the limits (depth, word, file), positions, and the value helpers.
 */
#include "core/cfg.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

/* Render a tree compactly: words joined by spaces, a word with a space or empty shown in [],
 * blocks as {a; b}, directives separated by "; ". */
static void dump_node(const struct moat_cfg_node *n, char *out, size_t cap);

static void put(char *out, size_t cap, const char *s)
{
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s", s);
}

static void dump_children(const struct moat_cfg_node *n, char *out, size_t cap)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        if (i > 0) {
            put(out, cap, "; ");
        }
        dump_node(&n->children[i], out, cap);
    }
}

static void dump_node(const struct moat_cfg_node *n, char *out, size_t cap)
{
    for (size_t i = 0; i < n->nwords; i++) {
        const struct moat_cfg_word *w = &n->words[i];
        if (i > 0) {
            put(out, cap, " ");
        }
        int bracket = w->len == 0 || strpbrk(w->s, " {};#") != NULL;
        put(out, cap, bracket ? "[" : "");
        put(out, cap, w->s);
        put(out, cap, bracket ? "]" : "");
        if (strlen(w->s) != w->len) {
            put(out, cap, "<LEN MISMATCH>");
        }
    }
    if (n->has_block) {
        put(out, cap, " {");
        dump_children(n, out, cap);
        put(out, cap, "}");
    }
}

static const char *parse_dump(const char *text, size_t len, char *out, size_t cap)
{
    struct moat_cfg_doc *d = NULL;
    struct moat_err err = {0};
    out[0] = '\0';
    if (!moat_ok(moat_cfg_parse("t.conf", text, len, &d, &err))) {
        snprintf(out, cap, "ERROR %s: %s", err.where, err.msg);
        return out;
    }
    dump_children(&d->root, out, cap);
    moat_cfg_doc_free(d);
    return out;
}

struct good_case {
    const char *text;
    const char *tree;
};

static const struct good_case good[] = {
    {"", ""},
    {"\n\n  \n", ""},
    {"# only a comment", ""},
    {"a", "a"},
    {"a b c\n", "a b c"},
    {"a b; c d\n", "a b; c d"},
    {"a;;;b", "a; b"},
    {"  a\tb  \r\n c\r\n", "a b; c"},
    {"a # comment { } ; \"\nb", "a; b"},
    {"a#b", "a"},
    {"a \"b c\" \"\"", "a [b c] []"},
    {"a \"q\\\"x\\\\y\"", "a q\"x\\y"},
    {"a \"#not a comment; {}\"", "a [#not a comment; {}]"},
    {"a {}", "a {}"},
    {"a {\n}\n", "a {}"},
    {"a b {\n  c 1\n  d 2;e 3\n}\nf", "a b {c 1; d 2; e 3}; f"},
    {"a { b } c", "a {b}; c"},
    {"a{b}", "a {b}"},
    {"t { head 10s; idle 60s }", "t {head 10s; idle 60s}"},
    {"a { b { c { d } } }", "a {b {c {d}}}"},
    {"\xEF\xBB\xBF"
     "a b",
     "a b"},
    {"caf\xC3\xA9 \xE2\x82\xAC", "caf\xC3\xA9 \xE2\x82\xAC"},
    {"a \"x\" ; b \"y\"\n", "a x; b y"},
    {"a \"x\"{ b }", "a x {b}"},
    {"a \"x\"#c", "a x"},
    {"path ./www/a-b_c.html:8443", "path ./www/a-b_c.html:8443"},
};

TEST_CASE(good_inputs)
{
    char out[1024];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        parse_dump(good[i].text, strlen(good[i].text), out, sizeof(out));
        if (strcmp(out, good[i].tree) != 0) {
            TEST__FAIL("case %zu %s: got \"%s\", want \"%s\"", i, good[i].text, out, good[i].tree);
        }
    }
}

struct bad_case {
    const char *text;
    size_t len; /* 0: strlen */
    const char *where;
    const char *msg;
};

static const struct bad_case bad[] = {
    {"a \"b", 0, "t.conf:1:3",
     "unterminated quoted string (add the closing \" on the same line; quoted words cannot span "
     "lines)"},
    {"a \"b\nc\"", 0, "t.conf:1:3",
     "unterminated quoted string (add the closing \" on the same line; quoted words cannot span "
     "lines)"},
    {"a \"b\\", 0, "t.conf:1:3",
     "unterminated quoted string (add the closing \" on the same line; quoted words cannot span "
     "lines)"},
    {"a \"b\\n\"", 0, "t.conf:1:5",
     "unknown escape in quoted string (only \\\" and \\\\ are allowed; write a backslash as "
     "\\\\)"},
    {"a b\"c\"", 0, "t.conf:1:4",
     "quote in the middle of a word (quote the whole word, or put a space before the \")"},
    {"a \"b\"c", 0, "t.conf:1:6",
     "text right after a closing quote (put a space after the \", or move the text inside the "
     "quotes)"},
    {"{", 0, "t.conf:1:1", "\"{\" without a directive before it (write NAME ... { on one line)"},
    {"a;{ b }", 0, "t.conf:1:3",
     "\"{\" without a directive before it (write NAME ... { on one line)"},
    {"site x\n{\n}\n", 0, "t.conf:2:1",
     "\"{\" must be on the same line as its directive (move it to the end of line 1)"},
    {"site x # c\n\n  {\n}\n", 0, "t.conf:3:3",
     "\"{\" must be on the same line as its directive (move it to the end of line 1)"},
    {"a {\n b\n", 0, "t.conf:1:3", "block opened here is never closed (add the matching \"}\")"},
    {"a { b {\n}\n", 0, "t.conf:1:3", "block opened here is never closed (add the matching \"}\")"},
    {"a\n}\n", 0, "t.conf:2:1",
     "\"}\" without a matching \"{\" (remove it, or open the block on the directive's line)"},
    {"a { b } }", 0, "t.conf:1:9",
     "\"}\" without a matching \"{\" (remove it, or open the block on the directive's line)"},
    {"a b\0c", 5, "t.conf:1:4",
     "NUL byte in the configuration (the file must be text; was it saved as UTF-16?)"},
    {"a # x\0y", 7, "t.conf:1:6",
     "NUL byte in the configuration (the file must be text; was it saved as UTF-16?)"},
    {"a \"x\0\"", 6, "t.conf:1:5",
     "NUL byte in the configuration (the file must be text; was it saved as UTF-16?)"},
    {"a\x01", 0, "t.conf:1:2", "control character 0x01 in the configuration (remove it)"},
    {"a \x7f", 0, "t.conf:1:3", "control character 0x7f in the configuration (remove it)"},
    {"a \"\x1b[0m\"", 0, "t.conf:1:4", "control character 0x1b in the configuration (remove it)"},
    {"\xC3\xA9\xC3\xA9 \"x", 0, "t.conf:1:4",
     "unterminated quoted string (add the closing \" on the same line; quoted words cannot span "
     "lines)"},
    {"\xEF\xBB\xBF\"x", 0, "t.conf:1:1",
     "unterminated quoted string (add the closing \" on the same line; quoted words cannot span "
     "lines)"},
    {"a {\n\tb {\n\t\tc { d { e { f { g { h { i { j } } } } } } } }\n}\n", 0, "t.conf:3:29",
     "blocks nested more than 8 deep (flatten the configuration)"},
};

TEST_CASE(bad_inputs)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct moat_cfg_doc *d = (struct moat_cfg_doc *)1;
        struct moat_err err = {0};
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        moat_rc rc = moat_cfg_parse("t.conf", bad[i].text, len, &d, &err);
        if (moat_ok(rc)) {
            TEST__FAIL("case %zu: parsed, want error %s", i, bad[i].msg);
            moat_cfg_doc_free(d);
            continue;
        }
        EXPECT_INT(rc.kind, MOAT_E_CONFIG);
        EXPECT_INT(err.kind, MOAT_E_CONFIG);
        EXPECT(d == NULL);
        if (strcmp(err.where, bad[i].where) != 0 || strcmp(err.msg, bad[i].msg) != 0) {
            TEST__FAIL("case %zu:\n  got  %s: %s\n  want %s: %s", i, err.where, err.msg,
                       bad[i].where, bad[i].msg);
        }
    }
}

TEST_CASE(depth_limit_exact)
{
    /* 8 nested blocks parse, 9 do not. */
    char text[256] = "";
    for (int i = 0; i < 8; i++) {
        put(text, sizeof(text), "a { ");
    }
    for (int i = 0; i < 8; i++) {
        put(text, sizeof(text), "} ");
    }
    struct moat_cfg_doc *d = NULL;
    EXPECT(moat_ok(moat_cfg_parse("t", text, strlen(text), &d, NULL)));
    moat_cfg_doc_free(d);
    snprintf(text, sizeof(text), "%s", "");
    for (int i = 0; i < 9; i++) {
        put(text, sizeof(text), "a { ");
    }
    for (int i = 0; i < 9; i++) {
        put(text, sizeof(text), "} ");
    }
    struct moat_err err = {0};
    EXPECT_INT(moat_cfg_parse("t", text, strlen(text), &d, &err).kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, "t:1:35");
}

TEST_CASE(word_limit)
{
    /* A bare word and a quoted word of exactly MOAT_CFG_MAX_WORD bytes pass, one more fails. */
    size_t cap = MOAT_CFG_MAX_WORD + 16;
    char *text = malloc(cap);
    struct moat_cfg_doc *d = NULL;
    struct moat_err err = {0};

    memset(text, 'x', MOAT_CFG_MAX_WORD);
    EXPECT(moat_ok(moat_cfg_parse("t", text, MOAT_CFG_MAX_WORD, &d, &err)));
    EXPECT_INT(d != NULL ? d->root.children[0].words[0].len : 0, MOAT_CFG_MAX_WORD);
    moat_cfg_doc_free(d);

    memset(text, 'x', MOAT_CFG_MAX_WORD + 1);
    EXPECT_INT(moat_cfg_parse("t", text, MOAT_CFG_MAX_WORD + 1, &d, &err).kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, "t:1:1");
    EXPECT_STR(err.msg, "word longer than 4096 bytes (shorten it; very long values do not "
                        "belong in the configuration)");

    text[0] = 'a';
    text[1] = ' ';
    text[2] = '"';
    memset(text + 3, 'y', MOAT_CFG_MAX_WORD);
    text[3 + MOAT_CFG_MAX_WORD] = '"';
    EXPECT(moat_ok(moat_cfg_parse("t", text, MOAT_CFG_MAX_WORD + 4, &d, &err)));
    moat_cfg_doc_free(d);
    memset(text + 3, 'y', MOAT_CFG_MAX_WORD + 1);
    text[4 + MOAT_CFG_MAX_WORD] = '"';
    EXPECT_INT(moat_cfg_parse("t", text, MOAT_CFG_MAX_WORD + 5, &d, &err).kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, "t:1:3");
    free(text);
}

TEST_CASE(file_limit)
{
    char *text = malloc(MOAT_CFG_MAX_FILE + 1);
    memset(text, '\n', MOAT_CFG_MAX_FILE + 1);
    struct moat_cfg_doc *d = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_cfg_parse("big", text, MOAT_CFG_MAX_FILE, &d, &err)));
    moat_cfg_doc_free(d);
    EXPECT_INT(moat_cfg_parse("big", text, MOAT_CFG_MAX_FILE + 1, &d, &err).kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, "big");
    EXPECT(strstr(err.msg, "larger than 1048576 bytes") != NULL);
    EXPECT(d == NULL);
    free(text);
}

TEST_CASE(positions)
{
    const char *text = "\xEF\xBB\xBF"
                       "one two\n"
                       "  blk \"q w\" {\n"
                       "\tin\xC3\xA9 x; y\n"
                       "}\n";
    struct moat_cfg_doc *d = NULL;
    EXPECT(moat_ok(moat_cfg_parse("p.conf", text, strlen(text), &d, NULL)));
    if (d == NULL) {
        return;
    }
    EXPECT_STR(d->name, "p.conf");
    EXPECT_INT(d->root.nchildren, 2);
    const struct moat_cfg_node *one = &d->root.children[0];
    EXPECT_INT(one->line, 1);
    EXPECT_INT(one->col, 1); /* the BOM takes no column */
    EXPECT_INT(one->words[1].col, 5);
    EXPECT_INT(one->has_block, 0);
    const struct moat_cfg_node *blk = &d->root.children[1];
    EXPECT_INT(blk->line, 2);
    EXPECT_INT(blk->col, 3);
    EXPECT_STR(blk->words[1].s, "q w");
    EXPECT_INT(blk->words[1].col, 7);
    EXPECT_INT(blk->has_block, 1);
    EXPECT_INT(blk->nchildren, 2);
    EXPECT_INT(blk->children[0].words[1].line, 3);
    EXPECT_INT(blk->children[0].words[1].col, 6); /* tab is one column, é is one column */
    EXPECT_INT(blk->children[1].col, 9);
    moat_cfg_doc_free(d);
}

TEST_CASE(null_name_and_empty)
{
    struct moat_cfg_doc *d = NULL;
    struct moat_err err = {0};
    EXPECT_INT(moat_cfg_parse(NULL, "}", 1, &d, &err).kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, "(config):1:1");
    EXPECT(moat_ok(moat_cfg_parse(NULL, NULL, 0, &d, &err)));
    EXPECT_INT(d != NULL ? d->root.nchildren : 99, 0);
    moat_cfg_doc_free(d);
    moat_cfg_doc_free(NULL);
}

TEST_CASE(load_file)
{
    char path[] = "/tmp/moat-test-cfg-XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0);
    const char *text = "a 1\nb {\n c \"2\"\n}\n";
    EXPECT_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    struct moat_cfg_doc *d = NULL;
    struct moat_err err = {0};
    EXPECT(moat_ok(moat_cfg_load(path, &d, &err)));
    if (d != NULL) {
        EXPECT_STR(d->name, path);
        EXPECT_INT(d->root.nchildren, 2);
        EXPECT_STR(d->root.children[1].children[0].words[1].s, "2");
    }
    moat_cfg_doc_free(d);

    /* A bad file reports its own path. */
    fd = open(path, O_WRONLY | O_TRUNC);
    EXPECT_INT(write(fd, "x {", 3), 3);
    close(fd);
    EXPECT_INT(moat_cfg_load(path, &d, &err).kind, MOAT_E_CONFIG);
    char want[64];
    snprintf(want, sizeof(want), "%s:1:3", path);
    EXPECT_STR(err.where, want);

    /* Over the limit on disk. */
    fd = open(path, O_WRONLY | O_TRUNC);
    char *big = malloc(MOAT_CFG_MAX_FILE + 1);
    memset(big, ' ', MOAT_CFG_MAX_FILE + 1);
    EXPECT_INT(write(fd, big, MOAT_CFG_MAX_FILE + 1), MOAT_CFG_MAX_FILE + 1);
    close(fd);
    free(big);
    EXPECT_INT(moat_cfg_load(path, &d, &err).kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, path);
    unlink(path);

    EXPECT_INT(moat_cfg_load(path, &d, &err).kind, MOAT_E_IO);
    EXPECT_STR(err.where, path);
    EXPECT(strstr(err.msg, "No such file") != NULL);
    EXPECT(d == NULL);
    EXPECT_INT(moat_cfg_load("/tmp", &d, &err).kind, MOAT_E_IO);
    EXPECT_STR(err.msg, "is a folder, not a configuration file");
}

TEST_CASE(durations)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {
        {"0", 0},         {"10", 10000},
        {"10s", 10000},   {"500ms", 500},
        {"5m", 300000},   {"2h", 7200000},
        {"1d", 86400000}, {"1y", 31536000000ULL},
        {"007s", 7000},   {"18446744073709551615ms", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        EXPECT(moat_ok(moat_cfg_duration_ms(ok[i].s, &v)));
        EXPECT_INT(v, ok[i].ms);
    }
    static const char *const bad_d[] = {
        "",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1.5s",
        "1 s",
        "10S",
        "10x",
        "10sec",
        "1w",
        "18446744073709551616ms",
        "18446744073709551615s",
        "99999999999y",
        " 1s",
        "1s ",
    };
    for (size_t i = 0; i < sizeof(bad_d) / sizeof(bad_d[0]); i++) {
        uint64_t v = 42;
        if (moat_ok(moat_cfg_duration_ms(bad_d[i], &v))) {
            TEST__FAIL("duration \"%s\" accepted as %llu", bad_d[i], (unsigned long long)v);
        }
        EXPECT_INT(v, 42);
    }
    uint64_t v;
    EXPECT(!moat_ok(moat_cfg_duration_ms(NULL, &v)));
}

TEST_CASE(sizes)
{
    static const struct {
        const char *s;
        uint64_t n;
    } ok[] = {
        {"0", 0},           {"8192", 8192},     {"8k", 8192},
        {"32K", 32768},     {"10m", 10485760},  {"1M", 1048576},
        {"1g", 1ULL << 30}, {"2G", 2ULL << 30}, {"17179869183g", 17179869183ULL << 30},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        EXPECT(moat_ok(moat_cfg_size(ok[i].s, &v)));
        EXPECT_INT(v, ok[i].n);
    }
    static const char *const bad_s[] = {"",    "k",  "-1",   "1.5k",         "8kb",
                                        "8 k", "8t", "8KiB", "17179869184g", "99999999999999999999",
                                        "0x10"};
    for (size_t i = 0; i < sizeof(bad_s) / sizeof(bad_s[0]); i++) {
        uint64_t v = 42;
        if (moat_ok(moat_cfg_size(bad_s[i], &v))) {
            TEST__FAIL("size \"%s\" accepted as %llu", bad_s[i], (unsigned long long)v);
        }
    }
}

TEST_CASE(bools)
{
    static const char *const on[] = {"on", "yes", "true", "ON", "True"};
    static const char *const off[] = {"off", "no", "false", "OFF", "No"};
    for (size_t i = 0; i < 5; i++) {
        int b = -1;
        EXPECT(moat_ok(moat_cfg_bool(on[i], &b)));
        EXPECT_INT(b, 1);
        EXPECT(moat_ok(moat_cfg_bool(off[i], &b)));
        EXPECT_INT(b, 0);
    }
    static const char *const bad_b[] = {"", "1", "0", "enable", "onn", "o", "y"};
    for (size_t i = 0; i < sizeof(bad_b) / sizeof(bad_b[0]); i++) {
        int b = -1;
        EXPECT(!moat_ok(moat_cfg_bool(bad_b[i], &b)));
        EXPECT_INT(b, -1);
    }
}

TEST_CASE(fail_helper)
{
    struct moat_err err = {0};
    struct moat_cfg_doc *d = NULL;
    EXPECT(moat_ok(moat_cfg_parse("x.conf", "a", 1, &d, NULL)));
    EXPECT_INT(moat_cfg_fail(&err, d, 3, 9, "bad %s", "thing").kind, MOAT_E_CONFIG);
    EXPECT_STR(err.where, "x.conf:3:9");
    EXPECT_STR(err.msg, "bad thing");
    EXPECT_INT(moat_cfg_fail(NULL, d, 1, 1, "x").kind, MOAT_E_CONFIG);
    moat_cfg_doc_free(d);
}

int main(void)
{
    RUN(good_inputs);
    RUN(bad_inputs);
    RUN(depth_limit_exact);
    RUN(word_limit);
    RUN(file_limit);
    RUN(positions);
    RUN(null_name_and_empty);
    RUN(load_file);
    RUN(durations);
    RUN(sizes);
    RUN(bools);
    RUN(fail_helper);
    TEST_MAIN_END();
}
