/*
 * err.h: moat's one result type and one error record.
 *
 * A function that can fail returns `moat_rc` (a one-field struct, so a forgotten check is a
 * compiler warning and guarding a call that cannot fail is a compiler error) and, when the caller
 * wants words, fills a `struct moat_err`. On the hot path callers pass NULL: the kind alone picks
 * a status code and no string is ever formatted.
 */
#ifndef MOAT_CORE_ERR_H
#define MOAT_CORE_ERR_H

#include <stddef.h>

#define MOAT_MUST_USE __attribute__((warn_unused_result))
#define MOAT_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* Grouped by who is at fault, so callers branch on the group, not on strings. */
enum moat_errkind {
    MOAT_OK = 0,
    MOAT_E_AGAIN,     /* would block; not an error, try again when the loop says so */
    MOAT_E_CLOSED,    /* the peer closed cleanly */
    MOAT_E_IO,        /* a system call failed (errno in moat_err.sys_errno) */
    MOAT_E_PEER,      /* the peer broke the protocol */
    MOAT_E_TLS,       /* TLS failed (OpenSSL's queue turned into words) */
    MOAT_E_CERT,      /* a certificate or key is unusable */
    MOAT_E_CONFIG,    /* the configuration is wrong */
    MOAT_E_LIMIT,     /* a configured or protocol limit was reached */
    MOAT_E_NOMEM,     /* allocation failed */
    MOAT_E_USAGE,     /* the command line is wrong */
    MOAT_E_NOTFOUND,  /* a named thing does not exist */
    MOAT_E_INTERNAL,  /* a bug in moat */
    MOAT_E_KIND_COUNT /* keep last */
};

typedef struct {
    enum moat_errkind kind;
} moat_rc;

#define MOAT_ERR_MSG_MAX 512
#define MOAT_ERR_CTX_MAX 4

/*
 * The words that go with a failure. `msg` is the sentence for a person; `where` is the position
 * in the input ("moat.conf:12:9" or a file name) when there is one; `ctx` is a short "while ..."
 * chain added on the way up. `src_file`/`src_line` say where in moat the error was raised, for
 * debugging only: never shown to users except at debug level.
 */
struct moat_err {
    enum moat_errkind kind;
    int sys_errno;
    char where[256];
    char msg[MOAT_ERR_MSG_MAX];
    char ctx[MOAT_ERR_CTX_MAX][160];
    int nctx;
    const char *src_file;
    int src_line;
};

static inline moat_rc moat_rc_of(enum moat_errkind kind)
{
    return (moat_rc){kind};
}
static inline int moat_ok(moat_rc rc)
{
    return rc.kind == MOAT_OK;
}

#define MOAT_RC_OK ((moat_rc){MOAT_OK})

/* Fill `err` (may be NULL) and return its kind as a moat_rc. */
moat_rc moat_err_set(struct moat_err *err, enum moat_errkind kind, const char *src_file,
                     int src_line, const char *fmt, ...) MOAT_PRINTF(5, 6);
/* Same, with errno's text appended (": No such file or directory"). */
moat_rc moat_err_sys(struct moat_err *err, enum moat_errkind kind, int sys_errno,
                     const char *src_file, int src_line, const char *fmt, ...) MOAT_PRINTF(6, 7);
/* Same, with OpenSSL's error queue turned into words and appended; the queue is emptied. */
moat_rc moat_err_ssl(struct moat_err *err, enum moat_errkind kind, const char *src_file,
                     int src_line, const char *fmt, ...) MOAT_PRINTF(5, 6);
/* Set the position ("file:line:col" or a file name) the error is about. */
void moat_err_where(struct moat_err *err, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* Add one "while ..." line of context (dropped silently past MOAT_ERR_CTX_MAX). */
void moat_err_ctx(struct moat_err *err, const char *fmt, ...) MOAT_PRINTF(2, 3);
/* Render for a person: "where: msg (while ctx...)" into out; returns out. */
const char *moat_err_str(const struct moat_err *err, char *out, size_t outlen);
/* Reset to MOAT_OK with no words. */
void moat_err_clear(struct moat_err *err);
const char *moat_errkind_name(enum moat_errkind kind);

#define MOAT_FAIL(err, kind, ...)                                                                  \
    return moat_err_set((err), (kind), __FILE__, __LINE__, __VA_ARGS__)
#define MOAT_FAIL_SYS(err, kind, ...)                                                              \
    return moat_err_sys((err), (kind), errno, __FILE__, __LINE__, __VA_ARGS__)
#define MOAT_FAIL_SSL(err, kind, ...)                                                              \
    return moat_err_ssl((err), (kind), __FILE__, __LINE__, __VA_ARGS__)

#define MOAT_TRY(call)                                                                             \
    do {                                                                                           \
        moat_rc moat__rc = (call);                                                                 \
        if (moat__rc.kind != MOAT_OK) {                                                            \
            return moat__rc;                                                                       \
        }                                                                                          \
    } while (0)

#define MOAT_TRY_CTX(call, err, ...)                                                               \
    do {                                                                                           \
        moat_rc moat__rc = (call);                                                                 \
        if (moat__rc.kind != MOAT_OK) {                                                            \
            moat_err_ctx((err), __VA_ARGS__);                                                      \
            return moat__rc;                                                                       \
        }                                                                                          \
    } while (0)

#define MOAT_ENSURE(cond, kind)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            return moat_rc_of(kind);                                                               \
        }                                                                                          \
    } while (0)

#define MOAT_ENSURE_REF(ptr) MOAT_ENSURE((ptr) != NULL, MOAT_E_INTERNAL)

/* Our own invariants only; checked in debug and sanitizer builds. */
#ifdef MOAT_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define MOAT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#else
#define MOAT_ASSERT(cond) ((void)0)
#endif

/* Run free_fn(&var) when var leaves scope (s2n-tls DEFER_CLEANUP). */
#define MOAT_DEFER(free_fn) __attribute__((cleanup(free_fn)))

#endif
