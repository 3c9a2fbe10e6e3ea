/*
 * headers.h: the `header` directive, from configuration rules to the lines an answer gets.
 *
 * A site's rules (`header [/PREFIX] set|add|remove NAME [VALUE]`) are compiled once per
 * configuration snapshot into one set per distinct prefix, each holding every rule that applies
 * under it in file order: the finished header lines to append, and the names whose fields the
 * handler or the origin produced that must be dropped first. An answer then costs one prefix
 * lookup, a scan of its own lines only when the set drops something, and one copy.
 *
 * moat's own answers (static files, listings, redirects, error pages) also get
 * `X-Content-Type-Options: nosniff` by default, as a first `set` rule that the site's rules can
 * replace or remove; proxied answers get only what the rules say.
 */
#ifndef MOAT_SERVE_HEADERS_H
#define MOAT_SERVE_HEADERS_H

#include "core/err.h"
#include "core/slice.h"

#include <stddef.h>

struct moat_conf_site;

enum moat_hdr_op {
    MOAT_HDR_SET = 0, /* replace any field of that name */
    MOAT_HDR_ADD,     /* one more field, beside what is there */
    MOAT_HDR_REMOVE,  /* drop every field of that name */
};

/* The rules for answers under one path prefix. Everything owned by the table. */
struct moat_hdr_set {
    char *prefix; /* normalised path prefix without trailing '/', or NULL for the whole site */
    size_t prefix_len;
    char *own; /* header lines (each with CRLF) for moat's own answers */
    size_t own_len;
    char *proxied; /* header lines for answers from an origin */
    size_t proxied_len;
    char **drop; /* lower-case names whose handler or origin fields are dropped */
    size_t ndrop;
};

struct moat_hdr_table {
    struct moat_hdr_set *sets; /* [0]: the whole site; then by prefix, longest first */
    size_t nsets;
};

/*
 * Check a rule's name as the configuration gives it: a field-name token (RFC 9110 §5.1) that
 * moat lets a rule touch (not the framing and connection fields, not Date, and
 * Strict-Transport-Security has its own directive). 1 when fine; else 0 with the reason and the
 * fix in `why`.
 */
int moat_hdr_name_ok(const char *name, char *why, size_t whycap);

/* Check its value (NULL: none given): remove takes none; set and add need one of visible ASCII,
 * spaces or tabs, not starting or ending with a space, no CR/LF/NUL, at most 4 KiB. */
int moat_hdr_value_ok(enum moat_hdr_op op, const char *name, const char *value, char *why,
                      size_t whycap);

/* Compile a site's `header` rules (request 0) or its `request_header` rules (request 1: the
 * sets' `proxied` lines and `drop` names apply to requests going upstream) into *t (zeroed by
 * the caller). MOAT_E_NOMEM on failure; then moat_hdr_table_clear still frees what was built. */
MOAT_MUST_USE moat_rc moat_hdr_table_build(const struct moat_conf_site *cs, int request,
                                           struct moat_hdr_table *t, struct moat_err *err);
void moat_hdr_table_clear(struct moat_hdr_table *t);

/* 1 when some set has a prefix (then callers must normalise the path to pick one). */
static inline int moat_hdr_table_has_prefixes(const struct moat_hdr_table *t)
{
    return t->nsets > 1;
}

/* The set for a normalised path: the longest prefix it falls under (at a segment boundary),
 * else the site-wide set. NULL only for an empty table. */
const struct moat_hdr_set *moat_hdr_table_for(const struct moat_hdr_table *t, const char *path,
                                              size_t len);

/* Whether a field called `name` (any case) from the handler or the origin is to be dropped. */
int moat_hdr_set_drops(const struct moat_hdr_set *s, moat_slice name);

#endif
