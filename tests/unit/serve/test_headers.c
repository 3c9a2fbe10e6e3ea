/*
 * test_headers.c: the `header` directive from text to compiled sets (serve/conf.c +
 * serve/headers.c): file order, set replacing, remove dropping, prefixes inheriting the
 * site-wide rules, the longest prefix winning at segment boundaries, the nosniff default on
 * moat's own answers only, and the rules that are refused.
 */
#include "serve/conf.h"
#include "serve/headers.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static struct moat_conf *parse(const char *body, struct moat_err *err)
{
    char text[4096];
    snprintf(text, sizeof(text), "site * {\n    root /srv\n%s}\n", body);
    struct moat_conf *c = NULL;
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), "/etc/moat", &c, err);
    return moat_ok(rc) ? c : NULL;
}

/* Compile `body`'s rules; *t to be cleared by the caller. */
static struct moat_conf *compile(const char *body, struct moat_hdr_table *t)
{
    struct moat_err err = {0};
    struct moat_conf *c = parse(body, &err);
    if (c == NULL) {
        TEST__FAIL("parse failed: %s: %s", err.where, err.msg);
        return NULL;
    }
    *t = (struct moat_hdr_table){0};
    if (!moat_ok(moat_hdr_table_build(&c->sites[0], 0, t, &err))) {
        TEST__FAIL("build failed: %s", err.msg);
    }
    return c;
}

static const struct moat_hdr_set *at(const struct moat_hdr_table *t, const char *path)
{
    return moat_hdr_table_for(t, path, strlen(path));
}

TEST_CASE(defaults_nosniff_own_only)
{
    struct moat_hdr_table t;
    struct moat_conf *c = compile("", &t);
    EXPECT_INT(t.nsets, 1);
    EXPECT_STR(t.sets[0].own, "X-Content-Type-Options: nosniff\r\n");
    EXPECT_STR(t.sets[0].proxied, "");
    EXPECT_INT(t.sets[0].ndrop, 0);
    EXPECT(!moat_hdr_table_has_prefixes(&t));
    moat_hdr_table_clear(&t);
    moat_conf_free(c);
}

TEST_CASE(order_set_add_remove)
{
    struct moat_hdr_table t;
    struct moat_conf *c = compile("    header add Link a\n"
                                  "    header add Link b\n"
                                  "    header set X-Frame-Options SAMEORIGIN\n"
                                  "    header set x-frame-options DENY\n"
                                  "    header remove X-Content-Type-Options\n"
                                  "    header set Cache-Control max-age=60, public\n"
                                  "    header remove Server\n",
                                  &t);
    const struct moat_hdr_set *s = &t.sets[0];
    EXPECT_STR(s->own, "Link: a\r\nLink: b\r\nx-frame-options: DENY\r\n"
                       "Cache-Control: max-age=60, public\r\n");
    EXPECT_STR(s->proxied, s->own);
    EXPECT(moat_hdr_set_drops(s, MOAT_SLICE_LIT("X-FRAME-OPTIONS")));
    EXPECT(moat_hdr_set_drops(s, MOAT_SLICE_LIT("server")));
    EXPECT(moat_hdr_set_drops(s, MOAT_SLICE_LIT("Cache-Control")));
    EXPECT(!moat_hdr_set_drops(s, MOAT_SLICE_LIT("Link"))); /* add keeps the origin's */
    EXPECT(!moat_hdr_set_drops(s, MOAT_SLICE_LIT("Content-Type")));
    moat_hdr_table_clear(&t);
    moat_conf_free(c);
}

TEST_CASE(prefixes_inherit_and_longest_wins)
{
    struct moat_hdr_table t;
    struct moat_conf *c = compile("    header set X-A site\n"
                                  "    header /static/ set X-B static\n"
                                  "    header /static/img remove X-A\n"
                                  "    header /static add X-C more\n",
                                  &t);
    EXPECT_INT(t.nsets, 3);
    EXPECT(moat_hdr_table_has_prefixes(&t));
    EXPECT_STR(at(&t, "/")->own, "X-Content-Type-Options: nosniff\r\nX-A: site\r\n");
    EXPECT_STR(at(&t, "/static")->own,
               "X-Content-Type-Options: nosniff\r\nX-A: site\r\nX-B: static\r\nX-C: more\r\n");
    EXPECT_STR(at(&t, "/static/")->proxied, "X-A: site\r\nX-B: static\r\nX-C: more\r\n");
    EXPECT_STR(at(&t, "/static/img/a.png")->proxied, "X-B: static\r\nX-C: more\r\n");
    EXPECT(moat_hdr_set_drops(at(&t, "/static/img"), MOAT_SLICE_LIT("x-a")));
    /* Segment boundaries: neither /staticfoo nor /static/imgs are under the prefixes. */
    EXPECT(at(&t, "/staticfoo") == &t.sets[0]);
    EXPECT_STR(at(&t, "/static/imgs")->proxied, "X-A: site\r\nX-B: static\r\nX-C: more\r\n");
    moat_hdr_table_clear(&t);
    moat_conf_free(c);
}

struct bad_case {
    const char *rule;
    const char *where;
    const char *words;
};

TEST_CASE(refused_rules)
{
    static const struct bad_case cases[] = {
        {"header set Content-Length 1", "m.conf:3:16", "cannot be set by a header rule"},
        {"header set Transfer-Encoding x", "m.conf:3:16", "frames every answer"},
        {"header add Connection close", "m.conf:3:16", "manages the connection"},
        {"header set Strict-Transport-Security x", "m.conf:3:16", "hsts directive"},
        {"header remove Date", "m.conf:3:19", "RFC 9110"},
        {"header set X:Y v", "m.conf:3:16", "is not a header name"},
        {"header set \"X Y\" v", "m.conf:3:16", "is not a header name"},
        {"header set X-A", "m.conf:3:16", "needs a value"},
        {"header remove X-A v", "m.conf:3:23", "remove takes only the name"},
        {"header put X-A v", "m.conf:3:12", "is not set, add or remove"},
        {"header /a/./b set X-A v", "m.conf:3:12", "plain path prefix"},
        {"header /a%2f set X-A v", "m.conf:3:12", "plain path prefix"},
        {"header set X-A \" v\"", "m.conf:3:20", "starts or ends with a space"},
        {"header /x", "m.conf:3:5", "header [/PREFIX]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "    %s\n", cases[i].rule);
        struct moat_err err = {0};
        struct moat_conf *c = parse(body, &err);
        if (c != NULL) {
            TEST__FAIL("accepted: %s", cases[i].rule);
            moat_conf_free(c);
            continue;
        }
        EXPECT_STR(err.where, cases[i].where);
        if (strstr(err.msg, cases[i].words) == NULL) {
            TEST__FAIL("%s: message \"%s\" lacks \"%s\"", cases[i].rule, err.msg, cases[i].words);
        }
    }
}

TEST_CASE(rule_check_values)
{
    char why[300];
    EXPECT(moat_hdr_value_ok(MOAT_HDR_SET, "X-A", "a\tb c", why, sizeof(why)));
    EXPECT(!moat_hdr_value_ok(MOAT_HDR_SET, "X-A", "a\r\nX-Evil: 1", why, sizeof(why)));
    EXPECT(!moat_hdr_value_ok(MOAT_HDR_SET, "X-A", "a\x7f", why, sizeof(why)));
    EXPECT(!moat_hdr_name_ok("", why, sizeof(why)));
    EXPECT(!moat_hdr_name_ok("X-A\r\n", why, sizeof(why)));
    EXPECT(moat_hdr_name_ok("Server", why, sizeof(why)));
    EXPECT(moat_hdr_value_ok(MOAT_HDR_REMOVE, "Server", NULL, why, sizeof(why)));
}

int main(void)
{
    RUN(defaults_nosniff_own_only);
    RUN(order_set_add_remove);
    RUN(prefixes_inherit_and_longest_wins);
    RUN(refused_rules);
    RUN(rule_check_values);
    TEST_MAIN_END();
}
