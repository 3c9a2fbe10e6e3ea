/*
 * parse.h: the strict, incremental HTTP/1.1 head parser (RFC 9112, RFC 9110).
 *
 * One parser for both directions: the server reads requests with it, the proxy's upstream side and
 * `moat get` read responses. It is pure: bytes in, a struct of slices and a status out; no I/O, no
 * allocation, no globals. It is resumable: on MOAT_H1_AGAIN keep the struct and call again with the
 * same buffer start and more bytes; only the new bytes are scanned for the end of the head, and the
 * head is parsed once, when its end has arrived.
 *
 * It is strict on purpose: everything that two HTTP implementations could read differently (bare
 * LF, obs-fold, whitespace before the colon, CL with TE, duplicate Host...) is refused, because a
 * reverse proxy that is lenient where its upstream is strict is how requests get smuggled (RFC 9112
 * §11.2).
 */
#ifndef MOAT_HTTP1_PARSE_H
#define MOAT_HTTP1_PARSE_H

#include "core/slice.h"
#include "http/field.h"
#include "http/method.h"

#include <stddef.h>
#include <stdint.h>

/* Results of the parse functions (and of the chunked decoder, see chunked.h). */
enum moat_h1_status {
    MOAT_H1_DONE = 0,          /* a whole head parsed; fields valid */
    MOAT_H1_AGAIN,             /* need more bytes: call again, same state, more data */
    MOAT_H1_E_BAD,             /* 400: malformed (see err_pos / err_what) */
    MOAT_H1_E_LINE_TOO_LONG,   /* 414: request line over limits.max_line_bytes */
    MOAT_H1_E_HEAD_TOO_LARGE,  /* 431: head (or chunked trailers) over the byte limit */
    MOAT_H1_E_TOO_MANY_FIELDS, /* 431: more than limits.max_fields */
    MOAT_H1_E_VERSION,         /* 505: well-formed HTTP-version other than 1.0/1.1 */
    MOAT_H1_E_NOT_IMPLEMENTED, /* 501: a transfer-coding other than chunked */
    MOAT_H1_E_EXPECTATION,     /* 417: Expect other than 100-continue */
    MOAT_H1_E_BODY_TOO_LARGE,  /* 413: chunked body over its max_body (chunked.h) */
    MOAT_H1_STATUS_COUNT       /* keep last */
};

/* The HTTP status code a server answers with for `s`: 400, 413, 414, 431, 501, 505, 417; 0 for DONE
 * and AGAIN (and for values out of range). */
int moat_h1_status_code(enum moat_h1_status s);
/* A static English name for logs and tests ("bad request", "again"...). */
const char *moat_h1_status_name(enum moat_h1_status s);

/* How the message body is framed (RFC 9112 §6.3). */
enum moat_h1_body {
    MOAT_H1_BODY_NONE = 0, /* no body */
    MOAT_H1_BODY_LENGTH,   /* content_length bytes follow the head (may be 0) */
    MOAT_H1_BODY_CHUNKED,  /* chunked coding follows: see chunked.h */
    MOAT_H1_BODY_CLOSE     /* response only: the body runs until the server closes */
};

/* Which form the request-target had (RFC 9112 §3.2). */
enum moat_h1_target_form {
    MOAT_H1_T_ORIGIN = 0, /* "/path?query" */
    MOAT_H1_T_ABSOLUTE,   /* "http://host/path?query" (proxies) */
    MOAT_H1_T_AUTHORITY,  /* "host:port" (CONNECT only) */
    MOAT_H1_T_ASTERISK    /* "*" (OPTIONS only) */
};

struct moat_h1_limits {
    size_t max_line_bytes; /* request line without CRLF; default 8192 (414 above) */
    size_t max_head_bytes; /* whole head, leading empty lines and final CRLF included;
                              default 32768 (431 above) */
    size_t max_fields;     /* field lines; default 100, clamped to MOAT_H1_FIELDS_CAP */
    /* A field left at 0 takes its default. */
};

/* Fill `l` with the defaults above. */
void moat_h1_limits_default(struct moat_h1_limits *l);

#define MOAT_H1_FIELDS_CAP 256
/* RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line; we ignore
 * up to this many (a fifth one is a 400), and count them in head_len. */
#define MOAT_H1_MAX_LEADING_EMPTY_LINES 4

/*
 * A parsed request head. All slices point into the caller's buffer and are valid only after
 * MOAT_H1_DONE, for as long as the buffer is neither changed nor moved (the caller must not compact
 * its buffer until the request is finished).
 */
struct moat_h1_req {
    moat_slice method; /* a token, as sent */
    enum moat_http_method method_id;
    moat_slice target;                    /* as sent */
    enum moat_h1_target_form target_form; /* added: which of the four forms */
    /* origin-form: target up to '?'; absolute-form: the URI's path ("/" from a static string
       when the URI has none); "*" for asterisk-form; empty for authority-form. Not decoded,
       not normalised. */
    moat_slice path;
    moat_slice query; /* after the first '?', without it; empty when there is none */
    int minor;        /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    struct moat_field fields[MOAT_H1_FIELDS_CAP]; /* [0, nfields) are valid */
    size_t nfields;
    /* the Host field value, or the authority of absolute-/authority-form; syntax checked
       (uri-host [":" port]); empty only in HTTP/1.0 */
    moat_slice host;
    enum moat_h1_body body;
    uint64_t content_length; /* valid when body == MOAT_H1_BODY_LENGTH */
    int keep_alive;          /* per version and Connection: close / keep-alive */
    int expect_continue;     /* Expect: 100-continue (1.1 only, RFC 9110 §10.1.1) */
    int upgrade;             /* Connection: upgrade and an Upgrade field present */
    size_t head_len;         /* bytes of the head, leading empty lines and final CRLF
                                included: the body or next request starts at buf + head_len */
    /* parse state, private */
    size_t _scanned; /* bytes already searched for the end of the head */
    size_t _line;    /* offset of the first byte of the line being scanned */
    size_t _nlines;  /* complete lines scanned (start line + field lines) */
    /* on error: */
    size_t err_pos;       /* offset in buf of the offending byte (or of its line) */
    const char *err_what; /* static, e.g. "whitespace before colon"; NULL if no error */
};

/* A parsed response head; same slice lifetime rules as struct moat_h1_req. */
struct moat_h1_resp {
    int minor;         /* 0 or 1 */
    int status;        /* 100..599 */
    moat_slice reason; /* may be empty (also when no SP follows the code) */
    struct moat_field fields[MOAT_H1_FIELDS_CAP];
    size_t nfields;
    enum moat_h1_body body;
    uint64_t content_length; /* valid when body == MOAT_H1_BODY_LENGTH */
    int keep_alive;          /* 0 when body == MOAT_H1_BODY_CLOSE */
    int upgrade;             /* added: 101 with Connection: upgrade and Upgrade */
    size_t head_len;
    /* parse state, private */
    size_t _scanned;
    size_t _line;
    size_t _nlines;
    size_t err_pos;
    const char *err_what;
};

/* Start a new request: resets the parse state (cheap: the field array is not cleared). */
void moat_h1_req_init(struct moat_h1_req *r);

/*
 * Parse a request head from buf[0, len): all bytes received so far for this request, starting at
 * its first byte. `lim` may be NULL for the defaults. Returns:
 *   MOAT_H1_DONE   r is filled; the head is buf[0, r->head_len), the rest is body or the next
 *                  request. Slices are valid while buf is neither changed nor moved.
 *   MOAT_H1_AGAIN  the head is not complete: call again with the same r and a longer buffer
 *                  holding the same first bytes (it may have moved: only offsets are kept).
 *   an error       r->err_pos and r->err_what say where and what; answer with
 *                  moat_h1_status_code() and close the connection.
 * Size errors (414, 431) come as soon as a limit is crossed, before the line or head ends.
 * After DONE or an error, call moat_h1_req_init() before parsing the next request.
 */
enum moat_h1_status moat_h1_parse_request(struct moat_h1_req *r, const char *buf, size_t len,
                                          const struct moat_h1_limits *lim);

/*
 * The scan position of a request still arriving. A server keeps one of these per connection
 * and parses into one struct moat_h1_req per worker (it is large: the fields array), so a head
 * trickling in costs only its new bytes: save after MOAT_H1_AGAIN, resume after
 * moat_h1_req_init() on the next read. Reset it (all zero) when a request is done.
 */
struct moat_h1_progress {
    size_t scanned, line, nlines;
};

static inline void moat_h1_req_save(const struct moat_h1_req *r, struct moat_h1_progress *p)
{
    p->scanned = r->_scanned;
    p->line = r->_line;
    p->nlines = r->_nlines;
}

static inline void moat_h1_req_resume(struct moat_h1_req *r, const struct moat_h1_progress *p)
{
    r->_scanned = p->scanned;
    r->_line = p->line;
    r->_nlines = p->nlines;
}

/* Start a new response: resets the parse state. */
void moat_h1_resp_init(struct moat_h1_resp *r);

/*
 * Parse a response head, like moat_h1_parse_request (max_line_bytes does not apply; the whole head
 * is bounded by max_head_bytes). Framing per RFC 9112 §6.3: a response to HEAD
 * (`request_was_head`), 1xx, 204 and 304 have no body; then Transfer-Encoding: chunked; then
 * Content-Length; else the body runs until close. A 1xx is returned as DONE: the caller parses the
 * next head after it. Responses to CONNECT are the caller's business (a 2xx turns the connection
 * into a tunnel). Transfer-codings other than chunked are refused (MOAT_H1_E_NOT_IMPLEMENTED); CL
 * with TE and TE in HTTP/1.0 are MOAT_H1_E_BAD.
 */
enum moat_h1_status moat_h1_parse_response(struct moat_h1_resp *r, const char *buf, size_t len,
                                           const struct moat_h1_limits *lim, int request_was_head);

/* Module-internal (shared with chunked.c): byte classes of RFC 9110 §5.6 and RFC 3986. */
enum {
    MOAT_H1__C_TCHAR = 1,   /* token character */
    MOAT_H1__C_FVAL = 2,    /* field-value byte: HTAB, SP, VCHAR, obs-text */
    MOAT_H1__C_TARGET = 4,  /* request-target byte: VCHAR except '#' */
    MOAT_H1__C_HEX = 8,     /* HEXDIG */
    MOAT_H1__C_HOST = 16,   /* reg-name byte: unreserved / sub-delims ('%' checked apart) */
    MOAT_H1__C_DIGIT = 32,  /* DIGIT */
    MOAT_H1__C_QDTEXT = 64, /* qdtext of a quoted-string */
};
extern const unsigned char moat_h1__ctype[256];
#define MOAT_H1__IS(c, cls) (moat_h1__ctype[(unsigned char)(c)] & (cls))

#endif
