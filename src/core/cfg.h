/*
 * cfg.h: the generic block-structured config reader.
 *
 * It turns text into a tree of directives and knows nothing of what they mean (serve/conf.c
 * gives them meaning). The syntax, in the spirit of nginx and the Caddyfile:
 *
 *   name word word;              # a directive: words on one line, ended by newline or ';'
 *   name word {                  # a block: '{' on the same line as the directive's last word
 *       inner "quoted word" ; other
 *   }
 *
 * Words are bare (any bytes except space, tab, CR, LF, control characters and { } ; # ") or
 * double-quoted on one line with \" and \\ as the only escapes. '#' starts a comment up to the
 * end of the line, except inside quotes. A UTF-8 byte order mark at the start is skipped. Every
 * word and directive remembers its line and column (1-based; columns count characters, so a
 * multi-byte UTF-8 character is one column) for messages like "moat.conf:12:9: ...".
 *
 * Limits (they bound memory and recursion on hostile input): blocks nest at most
 * MOAT_CFG_MAX_DEPTH deep, a word is at most MOAT_CFG_MAX_WORD bytes after unescaping, a file
 * at most MOAT_CFG_MAX_FILE bytes.
 */
#ifndef MOAT_CORE_CFG_H
#define MOAT_CORE_CFG_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define MOAT_CFG_MAX_DEPTH 8
#define MOAT_CFG_MAX_WORD 4096
#define MOAT_CFG_MAX_FILE (1024 * 1024)

/* One word. `s` is owned by the document, NUL-terminated, and never contains a NUL byte, so
 * `len == strlen(s)`; a quoted "" gives an empty word. */
struct moat_cfg_word {
    char *s;
    size_t len;
    int line, col; /* 1-based position of the first character (the quote, for quoted words) */
};

/*
 * One directive: its words (nwords >= 1, except for the document root which has none) and, when
 * has_block, the directives inside its { } block (possibly none). line/col are those of the
 * first word.
 */
struct moat_cfg_node {
    struct moat_cfg_word *words; /* owned, nwords entries */
    size_t nwords;
    struct moat_cfg_node *children; /* owned, nchildren entries */
    size_t nchildren;
    int has_block;
    int line, col;
};

struct moat_cfg_doc {
    char *name;                /* owned: the file name as given, for messages */
    struct moat_cfg_node root; /* no words; its children are the top-level directives */
};

/*
 * Parse `len` bytes of `text` (need not be NUL-terminated) into a new document in *out, which the
 * caller frees with moat_cfg_doc_free. `name` names the input in messages (NULL: "(config)").
 * On failure returns MOAT_E_CONFIG with err->where = "name:line:col" (or just the name for a file
 * that is too large) and a message saying what to fix, or MOAT_E_NOMEM; *out is then NULL.
 * Refused: NUL and control bytes, unterminated quotes, unknown escapes, '{' without a directive
 * on its line, unbalanced braces, nesting deeper than MOAT_CFG_MAX_DEPTH, words longer than
 * MOAT_CFG_MAX_WORD, input longer than MOAT_CFG_MAX_FILE.
 */
MOAT_MUST_USE moat_rc moat_cfg_parse(const char *name, const char *text, size_t len,
                                     struct moat_cfg_doc **out, struct moat_err *err);

/* Read the file at `path` (at most MOAT_CFG_MAX_FILE bytes) and parse it with `path` as name.
 * MOAT_E_IO when it cannot be read (err->where = path), else as moat_cfg_parse. */
MOAT_MUST_USE moat_rc moat_cfg_load(const char *path, struct moat_cfg_doc **out,
                                    struct moat_err *err);

/* Free a document and everything in it; NULL does nothing. */
void moat_cfg_doc_free(struct moat_cfg_doc *d);

/*
 * Value helpers. They return MOAT_E_CONFIG without words on a bad value: the caller knows which
 * directive it was and reports it at the word's position with moat_cfg_fail.
 *
 * duration: a decimal number with a unit, "500ms" "10s" "5m" "2h" "1d" "1y" (365 days); a bare
 *   number is seconds. No sign, no fraction, no spaces; refused when it overflows 64 bits of ms.
 * size: a decimal number of bytes with an optional 1024-based suffix k/K, m/M, g/G: "8192" "8k".
 * bool: on/off, yes/no, true/false (any case) into 1/0.
 */
MOAT_MUST_USE moat_rc moat_cfg_duration_ms(const char *s, uint64_t *out);
MOAT_MUST_USE moat_rc moat_cfg_size(const char *s, uint64_t *out);
MOAT_MUST_USE moat_rc moat_cfg_bool(const char *s, int *out);

/*
 * Fill err (may be NULL) with MOAT_E_CONFIG, where = "docname:line:col" and the formatted
 * message, and return MOAT_E_CONFIG. For consumers of a document reporting a semantic error at
 * a word or directive. `d` may be NULL (name shown as "(config)").
 */
MOAT_MUST_USE moat_rc moat_cfg_fail(struct moat_err *err, const struct moat_cfg_doc *d, int line,
                                    int col, const char *fmt, ...) MOAT_PRINTF(5, 6);

#endif
