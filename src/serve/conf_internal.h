/*
 * conf_internal.h: what the files of the configuration loader share. Only src/serve/conf*.c
 * (and their unit tests) may include it; the rest of moat sees serve/conf.h.
 *
 * conf.c is the loader: it walks the parsed file against the directive rows, reads the simple
 * values, reports unknown, misplaced, wrong-arity and repeated directives, and runs the checks
 * that look at a whole site or the whole file. Each directive family has one file with its rows
 * and their handlers (conf_global.c, conf_limits.c, conf_site.c, conf_headers.c, conf_proxy.c,
 * conf_mtls.c, conf_crl.c, conf_acme.c, conf_guard.c, conf_encode.c, conf_cache.c), and the
 * directives are documented over their rows there.
 *
 * A new family: a conf_<family>.c with its `moat_conf__<family>_specs[]` and count, declared
 * below, one line in `families[]` in conf.c (the order there is the order of names in the
 * "known ...:" message), its checks (if any) in conf.c's check lists, the file on the
 * `// fuzz-sources:` line of tests/fuzz/fuzz_conf.c, and its section in docs/config.md.
 */
#ifndef MOAT_SERVE_CONF_INTERNAL_H
#define MOAT_SERVE_CONF_INTERNAL_H

#include "serve/conf.h"

#include "core/cfg.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

/* Where a directive may appear. */
enum moat_conf__ctx {
    MOAT_CONF__TOP = 0,
    MOAT_CONF__SITE,
    MOAT_CONF__TIMEOUTS,
    MOAT_CONF__LIMITS,
    MOAT_CONF__TLS,
    MOAT_CONF__ACME,
    MOAT_CONF__UPSTREAM,
    MOAT_CONF__UP_TIMEOUTS, /* timeouts { } inside an upstream block */
    MOAT_CONF__STREAM,
    MOAT_CONF__STREAM_TIMEOUTS,
    MOAT_CONF__CLUSTER,
    MOAT_CONF__CTX_COUNT /* keep last */
};

/* How a directive's value is read and where it goes (offset into moat_conf). */
enum moat_conf__vkind {
    MOAT_CONF__V_CUSTOM = 0, /* a handler function does the work */
    MOAT_CONF__V_DURATION_MS,
    MOAT_CONF__V_DURATION_S, /* a duration that must be whole seconds, stored in seconds */
    MOAT_CONF__V_SIZE,
    MOAT_CONF__V_COUNT, /* plain decimal integer */
    MOAT_CONF__V_BOOL,  /* into an int */
    MOAT_CONF__V_BLOCK, /* a block of more directives in `inner` context */
};

struct moat_conf__pos {
    int line, col; /* 0, 0: not set */
};

struct moat_conf__loader;
struct moat_conf__spec;
typedef moat_rc (*moat_conf__spec_fn)(struct moat_conf__loader *L, const struct moat_cfg_node *n,
                                      const struct moat_conf__spec *sp);

/* One directive row. The loader has checked the argument count (min..max) and, unless `multi`,
 * that the directive is not repeated in its block, before it calls `fn` or stores the value. */
struct moat_conf__spec {
    const char *name;
    enum moat_conf__ctx ctx; /* where it may appear */
    int min, max;            /* argument count; max -1 = no limit */
    int multi;               /* may appear more than once in its block */
    enum moat_conf__vkind kind;
    size_t off;        /* V_DURATION_*, V_SIZE, V_COUNT: uint64_t field; V_BOOL: int field */
    uint64_t lo, hi;   /* accepted range, in the stored unit */
    const char *range; /* the range for people: "between 1ms and 1d" */
    enum moat_conf__ctx inner; /* V_BLOCK: context of the block's directives */
    moat_conf__spec_fn fn;     /* V_CUSTOM; V_BLOCK: NULL to walk the block as it is */
    const char *usage;
};

/* State of one load. Owned by conf.c's conf_from_doc; the arrays are freed when it ends. */
struct moat_conf__loader {
    const struct moat_cfg_doc *doc;
    const char *base_dir; /* paths in the file are relative to it */
    struct moat_conf *c;  /* being filled; handed to the caller on success */
    struct moat_err *err;
    struct moat_conf_site *site;       /* the site being read, inside a site block */
    size_t upstream;                   /* 1 + index of the upstream block being read; 0 none */
    size_t stream;                     /* 1 + index of the stream block being read; 0 none */
    struct moat_conf__pos *seen;       /* per row (moat_conf__spec_at index): where a
                                          single-valued directive was set (global) */
    struct moat_conf__pos *site_seen;  /* same, reset for each site */
    struct moat_conf__pos *listen_pos; /* position of each c->listen entry from the file */
    struct moat_conf__pos *site_pos;   /* position of each c->sites entry */
    int listen_set;                    /* the default listen address was replaced */
    struct moat_conf__pos redirect_pos;
    struct moat_conf__pos *http2_pos; /* of each c->http2_off_listen entry */
};

#define MOAT_CONF__DAY_MS (86400ULL * 1000)
#define MOAT_CONF__MIB (1024ULL * 1024)

/* Row makers. A CUSTOM row hands the node to `f`; a BLOCK row walks its block in context `in`
 * (or hands it to `f`); a VALUE row reads one word into the moat_conf field `field`. */
#define MOAT_CONF__CUSTOM(nm, cx, mn, mx, many, f, use)                                            \
    {                                                                                              \
        .name = nm, .ctx = cx, .min = mn, .max = mx, .multi = many, .kind = MOAT_CONF__V_CUSTOM,   \
        .fn = f, .usage = use                                                                      \
    }
#define MOAT_CONF__BLOCK(nm, mn, mx, in, f, use)                                                   \
    {                                                                                              \
        .name = nm, .ctx = MOAT_CONF__TOP, .min = mn, .max = mx, .multi = 1,                       \
        .kind = MOAT_CONF__V_BLOCK, .inner = in, .fn = f, .usage = use                             \
    }
#define MOAT_CONF__VALUE(nm, cx, k, field, l, h, rng, use)                                         \
    {                                                                                              \
        .name = nm, .ctx = cx, .min = 1, .max = 1, .kind = k,                                      \
        .off = offsetof(struct moat_conf, field), .lo = l, .hi = h, .range = rng, .usage = use     \
    }

/* ---- the families' rows (one table per conf_<family>.c) ---- */

extern const struct moat_conf__spec moat_conf__global_specs[];
extern const size_t moat_conf__global_nspecs;
extern const struct moat_conf__spec moat_conf__limits_specs[];
extern const size_t moat_conf__limits_nspecs;
extern const struct moat_conf__spec moat_conf__site_specs[];
extern const size_t moat_conf__site_nspecs;
extern const struct moat_conf__spec moat_conf__mtls_specs[];
extern const size_t moat_conf__mtls_nspecs;
extern const struct moat_conf__spec moat_conf__proxy_specs[];
extern const size_t moat_conf__proxy_nspecs;
extern const struct moat_conf__spec moat_conf__headers_specs[];
extern const size_t moat_conf__headers_nspecs;
extern const struct moat_conf__spec moat_conf__crl_specs[];
extern const size_t moat_conf__crl_nspecs;
extern const struct moat_conf__spec moat_conf__acme_specs[];
extern const size_t moat_conf__acme_nspecs;
extern const struct moat_conf__spec moat_conf__http2_specs[];
extern const size_t moat_conf__http2_nspecs;
extern const struct moat_conf__spec moat_conf__stream_specs[];
extern const size_t moat_conf__stream_nspecs;
extern const struct moat_conf__spec moat_conf__cluster_specs[];
extern const size_t moat_conf__cluster_nspecs;
extern const struct moat_conf__spec moat_conf__guard_specs[];
extern const size_t moat_conf__guard_nspecs;
extern const struct moat_conf__spec moat_conf__encode_specs[];
extern const size_t moat_conf__encode_nspecs;
extern const struct moat_conf__spec moat_conf__cache_specs[];
extern const size_t moat_conf__cache_nspecs;

/* ---- the families' checks, run by conf.c in the order of its lists ---- */

/* After a site block: `n` is the site node, `s` the site just read; a refusal is reported at
 * the site's position. */
MOAT_MUST_USE moat_rc moat_conf__content_check_site(struct moat_conf__loader *L,
                                                    const struct moat_cfg_node *n,
                                                    struct moat_conf_site *s);
MOAT_MUST_USE moat_rc moat_conf__proxy_check_site(struct moat_conf__loader *L,
                                                  const struct moat_cfg_node *n,
                                                  struct moat_conf_site *s);
MOAT_MUST_USE moat_rc moat_conf__cert_check_site(struct moat_conf__loader *L,
                                                 const struct moat_cfg_node *n,
                                                 struct moat_conf_site *s);
MOAT_MUST_USE moat_rc moat_conf__acme_check_site(struct moat_conf__loader *L,
                                                 const struct moat_cfg_node *n,
                                                 struct moat_conf_site *s);
/* After the whole file was read. */
MOAT_MUST_USE moat_rc moat_conf__site_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__limits_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__mtls_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__global_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__http2_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__acme_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__proxy_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__stream_check_conf(struct moat_conf__loader *L);
MOAT_MUST_USE moat_rc moat_conf__cluster_check_conf(struct moat_conf__loader *L);
void moat_conf__cluster_free(struct moat_conf_cluster *cc);
/* Free what a stream holds (conf_stream.c). */
void moat_conf__stream_clear(struct moat_conf_stream *s);
/* Free what a site holds (conf.c), for a stream's embedded TLS identity. */
void moat_conf__site_clear(struct moat_conf_site *s);
/* An inline upstream of one server for a stream target (`HOST:PORT`, `tls://HOST:PORT`):
 * its index in c->upstreams; conf_proxy.c. NULL when fine, else why. */
const char *moat_conf__proxy_inline_target(struct moat_conf *c, const char *target, int tls,
                                           size_t *index);
/* moat_conf_add_site with root NULL allowed (a proxy site); conf.c. */
MOAT_MUST_USE moat_rc moat_conf__add_site(struct moat_conf *c, const char *name, const char *root,
                                          const char *cert_path, const char *key_path,
                                          struct moat_err *err);
/* An upstream of `servers` (as `server` takes them) and a whole-site proxy rule to it for site
 * s (conf_proxy.c); MOAT_E_USAGE with words on a bad server. */
MOAT_MUST_USE moat_rc moat_conf__proxy_add_upstream(struct moat_conf *c, struct moat_conf_site *s,
                                                    const char *const *servers, size_t n,
                                                    struct moat_err *err);
/* Free what an upstream holds (conf_proxy.c). */
void moat_conf__upstream_clear(struct moat_conf_upstream *u);
/* Free what the acme { } block holds (conf_acme.c). */
void moat_conf__acme_clear(struct moat_conf_acme *a);

/* ---- the loader (conf.c), for the families ---- */

/* Every row of every family, indexed 0..count-1 in the order of conf.c's families[]; the index
 * is the one of L->seen and L->site_seen. */
size_t moat_conf__spec_count(void);
const struct moat_conf__spec *moat_conf__spec_at(size_t i);
/* The row of `name` in context `ctx`, or NULL; *index (when not NULL) gets its index. */
const struct moat_conf__spec *moat_conf__spec_find(enum moat_conf__ctx ctx, const char *name,
                                                   size_t *index);
/* Read the block of site node `n` into `s` (already holding its names) and run the per-site
 * checks. */
MOAT_MUST_USE moat_rc moat_conf__site_walk(struct moat_conf__loader *L,
                                           const struct moat_cfg_node *n, struct moat_conf_site *s);

/* Walk the directives of node n's block in context ctx (what a BLOCK row without a handler
 * does; a handler that records something first calls it). */
MOAT_MUST_USE moat_rc moat_conf__walk_block(struct moat_conf__loader *L,
                                            const struct moat_cfg_node *n, enum moat_conf__ctx ctx);
/* A new site with the directive defaults, appended to c->sites; NULL when out of memory. */
struct moat_conf_site *moat_conf__site_push(struct moat_conf *c);
/* Index of the site already holding `name` (in stored form), or -1. */
long moat_conf__site_owning(const struct moat_conf *c, const char *name);

/* ---- helpers for handlers ---- */

/* The "out of memory" refusal, placed at the file. */
MOAT_MUST_USE moat_rc moat_conf__nomem(struct moat_conf__loader *L);
/* A refusal at the position of word `w`. */
MOAT_MUST_USE moat_rc moat_conf__fail_at_word(struct moat_conf__loader *L,
                                              const struct moat_cfg_word *w, const char *fmt, ...)
    MOAT_PRINTF(3, 4);
/* "file:line:col" of node `n` into out (MOAT_CONF_WHERE_MAX bytes). */
void moat_conf__where_of(const struct moat_conf__loader *L, const struct moat_cfg_node *n,
                         char *out);
/* Resolve the path word `w` against the config's folder into *out (replacing and freeing what
 * was there); `what` names it in the message for an empty path. */
MOAT_MUST_USE moat_rc moat_conf__take_path(struct moat_conf__loader *L,
                                           const struct moat_cfg_word *w, const char *what,
                                           char **out);
/* Append s to the array (which then owns it); 0 when out of memory (s is not taken). */
int moat_conf__push_str(char ***arr, size_t *n, char *s);
/* Append p to an array of n positions; 0 when out of memory. */
int moat_conf__push_pos(struct moat_conf__pos **arr, size_t n, struct moat_conf__pos p);
void moat_conf__free_strs(char **a, size_t n);
/* A secret's file (the admin token, a Redis password, the cluster secret): its first line, of
 * min_len to 256 printable characters, the file not readable by every user; replaces *out
 * (freed as a secret). Refusals at `w` say how to make one; `what` names it. */
MOAT_MUST_USE moat_rc moat_conf__read_secret_line(struct moat_conf__loader *L,
                                                  const struct moat_cfg_word *w, const char *path,
                                                  const char *what, size_t min_len, char **out);
/* Free a string that held a secret, its bytes wiped first. NULL does nothing. */
void moat_conf__free_secret(char *s);
/* Plain decimal without sign or suffix into *out; 0 on overflow or junk. */
int moat_conf__parse_count(const char *s, uint64_t *out);
/* The name of an upstream or stream block: 1 to 63 letters, digits, '-', '_' or '.'. */
int moat_conf__block_name_ok(const char *s);
/* The listen addresses of words 1.. of `n`, each checked, appended to *arr; `what` names the
 * directive in the message for a bad one. */
MOAT_MUST_USE moat_rc moat_conf__take_listen_words(struct moat_conf__loader *L,
                                                   const struct moat_cfg_node *n, const char *what,
                                                   char ***arr, size_t *count);
/* A path prefix as client_path and header take it; 0 when it is not plain. */
int moat_conf__plain_prefix(const char *p, size_t len);
/* Listen address syntax ("host:port", "[v6]:port", ":port"); on success host/port are
 * filled. NULL when fine, else why (a static string). */
const char *moat_conf__listen_parse(const char *addr, char *host, size_t hostcap, uint16_t *port);
/* Check a site name and write its stored form (lower case; IPv6 in RFC 5952 form) to out.
 * NULL when fine, else the reason (static, or written into why). */
const char *moat_conf__site_name_norm(const char *in, char *out, size_t outcap, char *why,
                                      size_t whycap);

#endif
