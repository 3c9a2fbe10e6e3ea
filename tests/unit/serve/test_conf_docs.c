/*
 * test_conf_docs.c: the user reference and the loader name the same directives. Every heading
 * "### `NAME ...`" of docs/config.md (global, site and mutual-TLS sections) and docs/proxy.md
 * (its "Directives"), and every setting row "| `NAME` |" in the tables under a block heading
 * (timeouts, limits, tls), must be a row the loader knows in that place; and every row of
 * every family (serve/conf_*.c) must be documented so. The files are read relative to the
 * repository root, where scripts/test-all runs the unit tests.
 */
#include "serve/conf_internal.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which context the "### `name`" headings of a "## section" document; -1: none. */
struct section {
    const char *file;
    const char *title; /* the "## " heading, as a prefix */
    int ctx;
};

static const struct section sections[] = {
    {"docs/config.md", "Global directives", MOAT_CONF__TOP},
    {"docs/config.md", "Site directives", MOAT_CONF__SITE},
    {"docs/config.md", "Mutual TLS", MOAT_CONF__SITE},
    {"docs/proxy.md", "Directives", MOAT_CONF__SITE},
    {"docs/proxy.md", "Top-level directives", MOAT_CONF__TOP},
    {"docs/proxy.md", "Upstream directives", MOAT_CONF__UPSTREAM},
    {"docs/proxy.md", "Stream directives", MOAT_CONF__STREAM},
};

static const char *const ctx_names[MOAT_CONF__CTX_COUNT] = {
    "top level",   "site block",   "timeouts { }",          "limits { }", "tls { }",
    "acme { }",    "upstream { }", "upstream timeouts { }", "stream { }", "stream timeouts { }",
    "cluster { }",
};

/* The name at the start of s (after a backtick): up to a space or a backtick. */
static size_t name_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && s[n] != ' ' && s[n] != '`' && s[n] != '\n') {
        n++;
    }
    return n;
}

/* One documented name: it must be known in ctx; marks its row in documented[]. */
static void documented_at(const char *file, int line, int ctx, const char *name, size_t len,
                          char *documented)
{
    char nm[64];
    if (len == 0 || len >= sizeof(nm)) {
        TEST__FAIL("%s:%d: cannot read a directive name", file, line);
        return;
    }
    memcpy(nm, name, len);
    nm[len] = '\0';
    size_t k = 0;
    if (moat_conf__spec_find((enum moat_conf__ctx)ctx, nm, &k) == NULL) {
        TEST__FAIL("%s:%d: \"%s\" is documented (%s) but the loader has no such directive there",
                   file, line, nm, ctx_names[ctx]);
        return;
    }
    documented[k] = 1;
}

/* Reads one file, marking what it documents; returns how many names it found. */
static int read_doc(const char *file, char *documented)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        TEST__FAIL("cannot open %s (run the unit tests from the repository root)", file);
        return 0;
    }
    char buf[4096];
    int line = 0, found = 0, fence = 0;
    int ctx = -1;       /* of the current "## " section's headings */
    int table_ctx = -1; /* of the setting rows under the current block heading */
    while (fgets(buf, sizeof(buf), f) != NULL) {
        line++;
        if (strncmp(buf, "```", 3) == 0) {
            fence = !fence;
            continue;
        }
        if (fence) {
            continue;
        }
        if (strncmp(buf, "## ", 3) == 0) {
            ctx = -1;
            table_ctx = -1;
            for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
                const char *t = sections[i].title;
                if (strcmp(sections[i].file, file) == 0 && strncmp(buf + 3, t, strlen(t)) == 0) {
                    ctx = sections[i].ctx;
                }
            }
            continue;
        }
        if (strncmp(buf, "### ", 4) == 0) {
            table_ctx = -1;
            if (buf[4] != '`') {
                continue; /* a heading about something else ("### Values") */
            }
            if (ctx < 0) {
                TEST__FAIL("%s:%d: a directive heading outside the directive sections", file, line);
                continue;
            }
            const char *nm = buf + 5;
            size_t len = name_len(nm);
            documented_at(file, line, ctx, nm, len, documented);
            found++;
            /* A block of settings (not the site block, whose directives have headings): its
             * settings are the rows of the tables below the heading. */
            char key[64];
            if (len < sizeof(key)) {
                memcpy(key, nm, len);
                key[len] = '\0';
                const struct moat_conf__spec *sp =
                    moat_conf__spec_find((enum moat_conf__ctx)ctx, key, NULL);
                if (sp != NULL && sp->kind == MOAT_CONF__V_BLOCK && sp->inner != MOAT_CONF__SITE) {
                    table_ctx = (int)sp->inner;
                }
            }
            continue;
        }
        if (table_ctx >= 0 && strncmp(buf, "| `", 3) == 0) {
            documented_at(file, line, table_ctx, buf + 3, name_len(buf + 3), documented);
            found++;
        }
    }
    fclose(f);
    return found;
}

TEST_CASE(docs_and_rows_agree)
{
    size_t n = moat_conf__spec_count();
    char *documented = calloc(n, 1);
    if (documented == NULL) {
        TEST__FAIL("%s", "out of memory");
        return;
    }
    int a = read_doc("docs/config.md", documented), b = read_doc("docs/proxy.md", documented);
    if (a == 0 || b == 0) {
        TEST__FAIL("%s", "no directive found in the docs: nothing to compare");
        free(documented);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        const struct moat_conf__spec *sp = moat_conf__spec_at(k);
        if (!documented[k]) {
            TEST__FAIL("directive \"%s\" (%s) has no heading or table row in docs/config.md or "
                       "docs/proxy.md",
                       sp->name, ctx_names[sp->ctx]);
        }
    }
    free(documented);
}

/* The index of each row is unique and spec_find finds each row under its own name. */
TEST_CASE(rows_are_found_by_name)
{
    size_t n = moat_conf__spec_count();
    EXPECT(n > 40);
    EXPECT(moat_conf__spec_at(n) == NULL);
    for (size_t k = 0; k < n; k++) {
        const struct moat_conf__spec *sp = moat_conf__spec_at(k);
        size_t at = n;
        EXPECT(moat_conf__spec_find(sp->ctx, sp->name, &at) == sp);
        EXPECT_INT(at, k);
    }
    EXPECT(moat_conf__spec_find(MOAT_CONF__TOP, "root", NULL) == NULL);
}

int main(void)
{
    RUN(docs_and_rows_agree);
    RUN(rows_are_found_by_name);
    TEST_MAIN_END();
}
