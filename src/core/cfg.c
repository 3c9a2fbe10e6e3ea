/*
 * cfg.c: the config reader behind cfg.h: a small lexer (words, braces, ';', newlines) and a
 * recursive-descent parser that builds the directive tree, refusing malformed input with the
 * position and a fix. It is the first thing to touch a config file, which may come from anyone
 * able to write one, so it is fuzzed (tests/fuzz/fuzz_conf.c) and all its limits are hard.
 *
 * Memory: everything is malloc'd at load time and freed with the document; recursion is bounded
 * by MOAT_CFG_MAX_DEPTH.
 */
#include "core/cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum tok_kind {
    TOK_WORD = 0,
    TOK_LBRACE,
    TOK_RBRACE,
    TOK_SEMI,
    TOK_NEWLINE,
    TOK_EOF,
};

struct tok {
    enum tok_kind kind;
    int line, col;
    char *s; /* owned by the token until moved into a word (TOK_WORD only) */
    size_t len;
};

struct parser {
    const struct moat_cfg_doc *doc;
    const char *p, *end;
    int line, col;
    struct moat_err *err;
    char word[MOAT_CFG_MAX_WORD]; /* scratch for unescaping a quoted word */
};

moat_rc moat_cfg_fail(struct moat_err *err, const struct moat_cfg_doc *d, int line, int col,
                      const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        char msg[MOAT_ERR_MSG_MAX];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        moat_rc rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__, "%s", msg);
        (void)rc;
        moat_err_where(err, "%s:%d:%d", d != NULL && d->name != NULL ? d->name : "(config)", line,
                       col);
    }
    return moat_rc_of(MOAT_E_CONFIG);
}

static moat_rc nomem(struct parser *ps)
{
    moat_err_where(ps->err, "%s", ps->doc->name);
    MOAT_FAIL(ps->err, MOAT_E_NOMEM, "out of memory while reading the configuration");
}

/* Step over one byte. Columns count characters: UTF-8 continuation bytes (10xxxxxx) do not
 * start a new column, so the caret a person counts matches ours. */
static void advance(struct parser *ps)
{
    unsigned char c = (unsigned char)*ps->p++;
    if (c == '\n') {
        ps->line++;
        ps->col = 1;
        return;
    }
    if ((c & 0xC0) != 0x80) {
        ps->col++;
    }
}

static int peek(const struct parser *ps)
{
    return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

static int is_space(int c)
{
    /* CR is blank so files with CRLF line ends read the same as LF ones. */
    return c == ' ' || c == '\t' || c == '\r';
}

static int is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
}

/* Characters that end a word without being part of it. */
static int is_delim(int c)
{
    return c == -1 || is_space(c) || c == '\n' || c == '{' || c == '}' || c == ';' || c == '#';
}

static moat_rc bad_byte(struct parser *ps, int c)
{
    if (c == 0) {
        return moat_cfg_fail(ps->err, ps->doc, ps->line, ps->col,
                             "NUL byte in the configuration (the file must be text; was it saved "
                             "as UTF-16?)");
    }
    return moat_cfg_fail(ps->err, ps->doc, ps->line, ps->col,
                         "control character 0x%02x in the configuration (remove it)", (unsigned)c);
}

static moat_rc word_too_long(struct parser *ps, int line, int col)
{
    return moat_cfg_fail(ps->err, ps->doc, line, col,
                         "word longer than %d bytes (shorten it; very long values do not belong "
                         "in the configuration)",
                         MOAT_CFG_MAX_WORD);
}

static moat_rc take_word(struct parser *ps, struct tok *t, const char *src, size_t len)
{
    t->s = malloc(len + 1);
    if (t->s == NULL) {
        return nomem(ps);
    }
    if (len > 0) {
        memcpy(t->s, src, len);
    }
    t->s[len] = '\0';
    t->len = len;
    t->kind = TOK_WORD;
    return MOAT_RC_OK;
}

static moat_rc lex_quoted(struct parser *ps, struct tok *t)
{
    advance(ps); /* the opening quote */
    size_t n = 0;
    for (;;) {
        int c = peek(ps);
        if (c == -1 || c == '\n') {
            return moat_cfg_fail(ps->err, ps->doc, t->line, t->col,
                                 "unterminated quoted string (add the closing \" on the same "
                                 "line; quoted words cannot span lines)");
        }
        if (c == '"') {
            advance(ps);
            break;
        }
        if (c == '\\') {
            int line = ps->line, col = ps->col;
            advance(ps);
            c = peek(ps);
            if (c == -1 || c == '\n') {
                continue; /* reported as unterminated above */
            }
            if (c != '"' && c != '\\') {
                return moat_cfg_fail(ps->err, ps->doc, line, col,
                                     "unknown escape in quoted string (only \\\" and \\\\ are "
                                     "allowed; write a backslash as \\\\)");
            }
        } else if (is_control(c)) {
            return bad_byte(ps, c);
        }
        if (n == sizeof(ps->word)) {
            return word_too_long(ps, t->line, t->col);
        }
        ps->word[n++] = (char)c;
        advance(ps);
    }
    if (!is_delim(peek(ps))) {
        if (peek(ps) == 0 || is_control(peek(ps))) {
            return bad_byte(ps, peek(ps));
        }
        return moat_cfg_fail(ps->err, ps->doc, ps->line, ps->col,
                             "text right after a closing quote (put a space after the \", or "
                             "move the text inside the quotes)");
    }
    return take_word(ps, t, ps->word, n);
}

static moat_rc lex_bare(struct parser *ps, struct tok *t)
{
    const char *start = ps->p;
    for (;;) {
        int c = peek(ps);
        if (is_delim(c)) {
            break;
        }
        if (c == '"') {
            return moat_cfg_fail(ps->err, ps->doc, ps->line, ps->col,
                                 "quote in the middle of a word (quote the whole word, or put "
                                 "a space before the \")");
        }
        if (is_control(c)) {
            return bad_byte(ps, c);
        }
        if ((size_t)(ps->p - start) == MOAT_CFG_MAX_WORD) {
            return word_too_long(ps, t->line, t->col);
        }
        advance(ps);
    }
    return take_word(ps, t, start, (size_t)(ps->p - start));
}

/* Next token into *t; comments and blanks are skipped here. */
static moat_rc lex_next(struct parser *ps, struct tok *t)
{
    *t = (struct tok){0};
    for (;;) {
        int c = peek(ps);
        if (is_space(c)) {
            advance(ps);
            continue;
        }
        if (c == '#') {
            /* A comment ends at the newline, which stays a token: it may end a directive. NUL
             * is refused here too, since it usually means the whole file is not text. */
            while (peek(ps) != -1 && peek(ps) != '\n') {
                if (peek(ps) == 0) {
                    return bad_byte(ps, 0);
                }
                advance(ps);
            }
            continue;
        }
        t->line = ps->line;
        t->col = ps->col;
        switch (c) {
        case -1:
            t->kind = TOK_EOF;
            return MOAT_RC_OK;
        case '\n':
            t->kind = TOK_NEWLINE;
            advance(ps);
            return MOAT_RC_OK;
        case ';':
            t->kind = TOK_SEMI;
            advance(ps);
            return MOAT_RC_OK;
        case '{':
            t->kind = TOK_LBRACE;
            advance(ps);
            return MOAT_RC_OK;
        case '}':
            t->kind = TOK_RBRACE;
            advance(ps);
            return MOAT_RC_OK;
        case '"':
            return lex_quoted(ps, t);
        default:
            return lex_bare(ps, t);
        }
    }
}

static void node_clear(struct moat_cfg_node *n)
{
    for (size_t i = 0; i < n->nwords; i++) {
        free(n->words[i].s);
    }
    free(n->words);
    for (size_t i = 0; i < n->nchildren; i++) {
        node_clear(&n->children[i]);
    }
    free(n->children);
    *n = (struct moat_cfg_node){0};
}

/* Grow an array of `size`-byte elements so one more fits; doubling keeps appends linear. */
static int grow(void **arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap) {
        return 1;
    }
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, ncap * size);
    if (p == NULL) {
        return 0;
    }
    *arr = p;
    *cap = ncap;
    return 1;
}

/* A directive being built, with the capacities the public struct does not carry. */
struct building {
    struct moat_cfg_node node;
    size_t wcap;
    size_t ccap;
};

static moat_rc add_word(struct parser *ps, struct building *b, struct tok *t)
{
    if (!grow((void **)&b->node.words, b->node.nwords, &b->wcap, sizeof(*b->node.words))) {
        return nomem(ps);
    }
    if (b->node.nwords == 0) {
        b->node.line = t->line;
        b->node.col = t->col;
    }
    b->node.words[b->node.nwords++] = (struct moat_cfg_word){t->s, t->len, t->line, t->col};
    t->s = NULL;
    return MOAT_RC_OK;
}

static moat_rc add_child(struct parser *ps, struct building *parent, struct building *child)
{
    if (!grow((void **)&parent->node.children, parent->node.nchildren, &parent->ccap,
              sizeof(*parent->node.children))) {
        return nomem(ps);
    }
    parent->node.children[parent->node.nchildren++] = child->node;
    *child = (struct building){0};
    return MOAT_RC_OK;
}

/*
 * Read directives into `self` until its closing '}' (depth > 0) or the end of input (depth 0).
 * `open_line`/`open_col` locate the '{' that opened this block, for the "unclosed" message.
 * On failure, whatever was read stays in `self` for the caller to free.
 */
static moat_rc parse_block(struct parser *ps, struct building *self, int depth, int open_line,
                           int open_col)
{
    struct building cur = {0};
    int ended_by_newline_line = 0; /* line of the last directive if a newline ended it */
    moat_rc rc = MOAT_RC_OK;
    for (;;) {
        struct tok t;
        rc = lex_next(ps, &t);
        if (!moat_ok(rc)) {
            goto out;
        }
        switch (t.kind) {
        case TOK_WORD:
            rc = add_word(ps, &cur, &t);
            free(t.s);
            if (!moat_ok(rc)) {
                goto out;
            }
            continue;
        case TOK_NEWLINE:
        case TOK_SEMI:
            if (cur.node.nwords > 0) {
                ended_by_newline_line = t.kind == TOK_NEWLINE ? cur.node.line : 0;
                rc = add_child(ps, self, &cur);
                if (!moat_ok(rc)) {
                    goto out;
                }
            }
            continue;
        case TOK_LBRACE:
            if (cur.node.nwords == 0) {
                if (ended_by_newline_line > 0) {
                    rc = moat_cfg_fail(ps->err, ps->doc, t.line, t.col,
                                       "\"{\" must be on the same line as its directive (move it "
                                       "to the end of line %d)",
                                       ended_by_newline_line);
                } else {
                    rc = moat_cfg_fail(ps->err, ps->doc, t.line, t.col,
                                       "\"{\" without a directive before it (write NAME ... { "
                                       "on one line)");
                }
                goto out;
            }
            if (depth >= MOAT_CFG_MAX_DEPTH) {
                rc = moat_cfg_fail(ps->err, ps->doc, t.line, t.col,
                                   "blocks nested more than %d deep (flatten the configuration)",
                                   MOAT_CFG_MAX_DEPTH);
                goto out;
            }
            cur.node.has_block = 1;
            rc = parse_block(ps, &cur, depth + 1, t.line, t.col);
            if (!moat_ok(rc)) {
                goto out;
            }
            /* The closing brace ends the directive: "a { b } c" holds two directives. */
            ended_by_newline_line = 0;
            rc = add_child(ps, self, &cur);
            if (!moat_ok(rc)) {
                goto out;
            }
            continue;
        case TOK_RBRACE:
            if (depth == 0) {
                rc = moat_cfg_fail(ps->err, ps->doc, t.line, t.col,
                                   "\"}\" without a matching \"{\" (remove it, or open the "
                                   "block on the directive's line)");
                goto out;
            }
            if (cur.node.nwords > 0) {
                rc = add_child(ps, self, &cur);
            }
            goto out;
        case TOK_EOF:
            if (depth > 0) {
                rc = moat_cfg_fail(ps->err, ps->doc, open_line, open_col,
                                   "block opened here is never closed (add the matching \"}\")");
                goto out;
            }
            if (cur.node.nwords > 0) {
                rc = add_child(ps, self, &cur);
            }
            goto out;
        default:
            rc = moat_rc_of(MOAT_E_INTERNAL);
            goto out;
        }
    }
out:
    node_clear(&cur.node);
    return rc;
}

void moat_cfg_doc_free(struct moat_cfg_doc *d)
{
    if (d == NULL) {
        return;
    }
    node_clear(&d->root);
    free(d->name);
    free(d);
}

moat_rc moat_cfg_parse(const char *name, const char *text, size_t len, struct moat_cfg_doc **out,
                       struct moat_err *err)
{
    *out = NULL;
    if (name == NULL) {
        name = "(config)";
    }
    if (len > MOAT_CFG_MAX_FILE) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "configuration is larger than %d bytes (split out what does not belong in it)",
                  MOAT_CFG_MAX_FILE);
    }
    if (text == NULL && len > 0) {
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_INTERNAL, "no configuration text");
    }
    struct moat_cfg_doc *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->name = strdup(name)) == NULL) {
        free(d);
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory while reading the configuration");
    }
    struct parser *ps = malloc(sizeof(*ps)); /* 4 KiB scratch: keep it off the stack */
    if (ps == NULL) {
        moat_cfg_doc_free(d);
        moat_err_where(err, "%s", name);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory while reading the configuration");
    }
    ps->doc = d;
    ps->p = text;
    ps->end = text + len;
    ps->line = 1;
    ps->col = 1;
    ps->err = err;
    /* Editors on Windows put a BOM (EF BB BF) first; it is not part of the first word. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        ps->p += 3;
    }
    struct building root = {0};
    moat_rc rc = parse_block(ps, &root, 0, 0, 0);
    free(ps);
    d->root = root.node;
    if (!moat_ok(rc)) {
        moat_cfg_doc_free(d);
        return rc;
    }
    *out = d;
    return MOAT_RC_OK;
}

moat_rc moat_cfg_load(const char *path, struct moat_cfg_doc **out, struct moat_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        moat_err_where(err, "%s", path);
        MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot open the configuration");
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        moat_err_where(err, "%s", path);
        return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__, "cannot read the configuration");
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_IO, "is a folder, not a configuration file");
    }
    /* Read one byte past the limit so an oversize file (or a growing pipe) is noticed without
     * trusting st_size. */
    size_t cap = MOAT_CFG_MAX_FILE + 1, len = 0;
    char *text = malloc(cap);
    if (text == NULL) {
        close(fd);
        moat_err_where(err, "%s", path);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory while reading the configuration");
    }
    while (len < cap) {
        ssize_t n = read(fd, text + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            free(text);
            close(fd);
            moat_err_where(err, "%s", path);
            return moat_err_sys(err, MOAT_E_IO, e, __FILE__, __LINE__,
                                "cannot read the configuration");
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    moat_rc rc = moat_cfg_parse(path, text, len, out, err);
    free(text);
    return rc;
}

/* Decimal digits into *out; refuses empty input and 64-bit overflow. Returns the end. */
static const char *parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return NULL;
        }
        v = v * 10 + d;
    }
    if (p == s) {
        return NULL;
    }
    *out = v;
    return p;
}

static moat_rc scale(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul != 0 && v > UINT64_MAX / mul) {
        return moat_rc_of(MOAT_E_CONFIG);
    }
    *out = v * mul;
    return MOAT_RC_OK;
}

moat_rc moat_cfg_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        {"", 1000},
        {"ms", 1},
        {"s", 1000},
        {"m", 60 * 1000},
        {"h", 3600 * 1000},
        {"d", 86400 * 1000},
        {"y", 365ULL * 86400 * 1000}, /* a calendar-free year, as HSTS max-age means it */
    };
    uint64_t v;
    const char *end = s != NULL ? parse_u64(s, &v) : NULL;
    if (end == NULL) {
        return moat_rc_of(MOAT_E_CONFIG);
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            return scale(v, units[i].ms, out);
        }
    }
    return moat_rc_of(MOAT_E_CONFIG);
}

moat_rc moat_cfg_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *end = s != NULL ? parse_u64(s, &v) : NULL;
    if (end == NULL) {
        return moat_rc_of(MOAT_E_CONFIG);
    }
    if (end[0] == '\0') {
        *out = v;
        return MOAT_RC_OK;
    }
    if (end[1] != '\0') {
        return moat_rc_of(MOAT_E_CONFIG);
    }
    switch (end[0]) {
    case 'k':
    case 'K':
        return scale(v, 1024, out);
    case 'm':
    case 'M':
        return scale(v, 1024 * 1024, out);
    case 'g':
    case 'G':
        return scale(v, 1024 * 1024 * 1024, out);
    default:
        return moat_rc_of(MOAT_E_CONFIG);
    }
}

moat_rc moat_cfg_bool(const char *s, int *out)
{
    static const char *const yes[] = {"on", "yes", "true"};
    static const char *const no[] = {"off", "no", "false"};
    if (s == NULL) {
        return moat_rc_of(MOAT_E_CONFIG);
    }
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return MOAT_RC_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return MOAT_RC_OK;
        }
    }
    return moat_rc_of(MOAT_E_CONFIG);
}
