/*
 * err.c: filling and rendering struct moat_err. Used at start-up, on reload and by the CLI
 * tools; the per-request path passes NULL and never reaches the formatting below.
 */
#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

static void vset(struct moat_err *err, enum moat_errkind kind, const char *src_file, int src_line,
                 const char *fmt, va_list ap)
{
    err->kind = kind;
    err->src_file = src_file;
    err->src_line = src_line;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

moat_rc moat_err_set(struct moat_err *err, enum moat_errkind kind, const char *src_file,
                     int src_line, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vset(err, kind, src_file, src_line, fmt, ap);
        va_end(ap);
    }
    return moat_rc_of(kind);
}

static void append(char *dst, size_t cap, const char *add)
{
    size_t len = strnlen(dst, cap);
    if (len + 1 < cap) {
        snprintf(dst + len, cap - len, "%s", add);
    }
}

moat_rc moat_err_sys(struct moat_err *err, enum moat_errkind kind, int sys_errno,
                     const char *src_file, int src_line, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vset(err, kind, src_file, src_line, fmt, ap);
        va_end(ap);
        err->sys_errno = sys_errno;
        append(err->msg, sizeof(err->msg), ": ");
        append(err->msg, sizeof(err->msg), strerror(sys_errno));
    }
    return moat_rc_of(kind);
}

moat_rc moat_err_ssl(struct moat_err *err, enum moat_errkind kind, const char *src_file,
                     int src_line, const char *fmt, ...)
{
    if (err == NULL) {
        ERR_clear_error();
        return moat_rc_of(kind);
    }
    va_list ap;
    va_start(ap, fmt);
    vset(err, kind, src_file, src_line, fmt, ap);
    va_end(ap);
    /* OpenSSL's queue holds the deepest cause last; its reason strings are short and readable
     * ("key values mismatch"), the library/function parts are noise for a person. */
    unsigned long e;
    int first = 1;
    while ((e = ERR_get_error()) != 0) {
        const char *reason = ERR_reason_error_string(e);
        char num[32];
        if (reason == NULL) {
            snprintf(num, sizeof(num), "error %lx", e);
            reason = num;
        }
        append(err->msg, sizeof(err->msg), first ? ": " : "; ");
        append(err->msg, sizeof(err->msg), reason);
        first = 0;
    }
    return moat_rc_of(kind);
}

void moat_err_where(struct moat_err *err, const char *fmt, ...)
{
    if (err == NULL) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->where, sizeof(err->where), fmt, ap);
    va_end(ap);
}

void moat_err_ctx(struct moat_err *err, const char *fmt, ...)
{
    if (err == NULL || err->nctx >= MOAT_ERR_CTX_MAX) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->ctx[err->nctx++], sizeof(err->ctx[0]), fmt, ap);
    va_end(ap);
}

const char *moat_err_str(const struct moat_err *err, char *out, size_t outlen)
{
    if (outlen == 0) {
        return out;
    }
    out[0] = '\0';
    /* Messages that already start with their file name do not get it twice. */
    size_t wl = strlen(err->where);
    if (wl > 0 && strncmp(err->msg, err->where, wl) != 0) {
        append(out, outlen, err->where);
        append(out, outlen, ": ");
    }
    append(out, outlen, err->msg[0] ? err->msg : moat_errkind_name(err->kind));
    for (int i = 0; i < err->nctx; i++) {
        append(out, outlen, i == 0 ? " (" : ", ");
        append(out, outlen, err->ctx[i]);
        if (i == err->nctx - 1) {
            append(out, outlen, ")");
        }
    }
    return out;
}

void moat_err_clear(struct moat_err *err)
{
    if (err != NULL) {
        memset(err, 0, sizeof(*err));
    }
}

const char *moat_errkind_name(enum moat_errkind kind)
{
    switch (kind) {
    case MOAT_OK:
        return "ok";
    case MOAT_E_AGAIN:
        return "would block";
    case MOAT_E_CLOSED:
        return "closed";
    case MOAT_E_IO:
        return "i/o error";
    case MOAT_E_PEER:
        return "protocol error by peer";
    case MOAT_E_TLS:
        return "tls error";
    case MOAT_E_CERT:
        return "certificate error";
    case MOAT_E_CONFIG:
        return "configuration error";
    case MOAT_E_LIMIT:
        return "limit reached";
    case MOAT_E_NOMEM:
        return "out of memory";
    case MOAT_E_USAGE:
        return "usage error";
    case MOAT_E_NOTFOUND:
        return "not found";
    case MOAT_E_INTERNAL:
        return "internal error";
    default:
        return "unknown error";
    }
}
