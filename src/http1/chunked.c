/*
 * chunked.c: the chunked transfer coding decoder (RFC 9112 §7.1).
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *
 * A byte-at-a-time state machine for the framing (size lines, extensions, CRLFs, trailers) and one
 * memmove per run of data, so the cost is in the data copy, not in the framing. The whole state
 * lives in struct moat_h1_chunked: input may be split at any byte and every call uses all of its
 * input unless it finds the end or an error. Extensions are checked and ignored (§7.1.1: a
 * recipient MUST ignore unrecognized extensions); trailers are checked and dropped.
 */
#include "http1/chunked.h"

#include <string.h>

#define IS(c, cls) MOAT_H1__IS(c, cls)

enum state {
    S_SIZE_START = 0, /* first hex digit of a chunk size */
    S_SIZE,           /* more hex digits, or what follows the size */
    S_SIZE_BWS,       /* whitespace after the size: only ';' may follow */
    S_EXT_NAME_BWS,   /* after ';': BWS, then an extension name */
    S_EXT_NAME,       /* in an extension name */
    S_EXT_NAME_WS,    /* whitespace after a name: '=' or ';' must follow */
    S_EXT_VAL_BWS,    /* after '=': BWS, then a token or a quoted-string */
    S_EXT_TOKEN,      /* in a token value */
    S_EXT_QSTR,       /* in a quoted-string value */
    S_EXT_QPAIR,      /* after a backslash in a quoted-string */
    S_EXT_AFTER_Q,    /* after the closing quote */
    S_EXT_VAL_WS,     /* whitespace after a value: only ';' may follow */
    S_SIZE_LF,        /* the LF ending the size line */
    S_DATA,           /* chunk data: c->_size bytes left */
    S_DATA_CR,        /* the CRLF after the data */
    S_DATA_LF,
    S_TRAILER_START, /* a trailer line, or the CR of the final empty line */
    S_TRAILER_NAME,
    S_TRAILER_VALUE,
    S_TRAILER_LF,
    S_END_LF, /* the LF of the final empty line */
    S_DONE,
    S_ERROR
};

void moat_h1_chunked_init(struct moat_h1_chunked *c, uint64_t max_body, size_t max_trailer_bytes)
{
    c->total = 0;
    c->keep_trailers = NULL;
    c->_size = 0;
    c->_max_body = max_body;
    c->_max_trailer = max_trailer_bytes ? max_trailer_bytes : MOAT_H1_CHUNK_TRAILER_DEFAULT;
    c->_trailer_bytes = 0;
    c->_state = S_SIZE_START;
    c->_digits = 0;
    c->_ext_bytes = 0;
    c->_err = MOAT_H1_DONE;
    c->err_pos = 0;
    c->err_what = NULL;
}

static unsigned hexval(unsigned char ch)
{
    if (ch <= '9') {
        return ch - '0';
    }
    return (unsigned)((ch | 0x20) - 'a' + 10);
}

/* The chunk being read would take the body over max_body (total <= max_body always holds). */
static int over_limit(const struct moat_h1_chunked *c)
{
    return c->_max_body && c->_size > c->_max_body - c->total;
}

static enum moat_h1_status fail(struct moat_h1_chunked *c, enum moat_h1_status st, size_t pos,
                                const char *what)
{
    c->_state = S_ERROR;
    c->_err = st;
    c->err_pos = pos;
    c->err_what = what;
    return st;
}

enum moat_h1_status moat_h1_chunked_decode(struct moat_h1_chunked *c, char *buf, size_t len_in,
                                           size_t *consumed, size_t *out_len)
{
    size_t i = 0; /* next input byte */
    size_t o = 0; /* next output byte; o <= i always */
    *consumed = 0;
    *out_len = 0;
    if (c->_state == S_DONE) {
        return MOAT_H1_DONE;
    }
    if (c->_state == S_ERROR) {
        return c->_err;
    }
    enum moat_h1_status st = MOAT_H1_AGAIN;
    while (i < len_in) {
        if (c->_state == S_DATA) {
            size_t avail = len_in - i;
            size_t n = c->_size < avail ? (size_t)c->_size : avail;
            if (o != i) {
                memmove(buf + o, buf + i, n);
            }
            o += n;
            i += n;
            c->_size -= n;
            c->total += n;
            if (c->_size == 0) {
                c->_state = S_DATA_CR;
            }
            continue;
        }
        unsigned char ch = (unsigned char)buf[i];
        if (c->_state >= S_EXT_NAME_BWS && c->_state <= S_EXT_VAL_WS && ch != '\r' &&
            ++c->_ext_bytes > MOAT_H1_CHUNK_EXT_MAX) {
            st = fail(c, MOAT_H1_E_BAD, i, "chunk extension too long");
            break;
        }
        if (c->_state >= S_TRAILER_START && c->_state <= S_END_LF &&
            ++c->_trailer_bytes > c->_max_trailer) {
            st = fail(c, MOAT_H1_E_HEAD_TOO_LARGE, i, "trailers too large");
            break;
        }
        /* Every byte of a field line, its CRLF included; not the final empty line. */
        int trailer_line = c->_state >= S_TRAILER_START && c->_state <= S_TRAILER_LF &&
                           !(c->_state == S_TRAILER_START && ch == '\r');
        if (trailer_line && c->keep_trailers != NULL &&
            !moat_ok(moat_buf_append(c->keep_trailers, &ch, 1))) {
            st = fail(c, MOAT_H1_E_HEAD_TOO_LARGE, i, "trailers too large to keep");
            break;
        }
        switch (c->_state) {
        case S_SIZE_START:
            if (!IS(ch, MOAT_H1__C_HEX)) {
                st = fail(c, MOAT_H1_E_BAD, i, "chunk size is not hex");
                break;
            }
            c->_size = hexval(ch);
            c->_digits = 1;
            c->_ext_bytes = 0;
            c->_state = S_SIZE;
            if (over_limit(c)) {
                st = fail(c, MOAT_H1_E_BODY_TOO_LARGE, i, "chunked body over the limit");
            }
            break;
        case S_SIZE:
            if (IS(ch, MOAT_H1__C_HEX)) {
                /* 16 hex digits fill a uint64_t: a 17th is refused, so no overflow */
                if (++c->_digits > 16) {
                    st = fail(c, MOAT_H1_E_BAD, i, "chunk size over 16 hex digits");
                    break;
                }
                c->_size = (c->_size << 4) | hexval(ch);
                if (over_limit(c)) {
                    st = fail(c, MOAT_H1_E_BODY_TOO_LARGE, i, "chunked body over the limit");
                }
            } else if (ch == '\r') {
                c->_state = S_SIZE_LF;
            } else if (ch == ';') {
                c->_ext_bytes = 1;
                c->_state = S_EXT_NAME_BWS;
            } else if (ch == ' ' || ch == '\t') {
                c->_state = S_SIZE_BWS;
            } else {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid character after chunk size");
            }
            break;
        case S_SIZE_BWS:
            if (ch == ';') {
                c->_ext_bytes = 1;
                c->_state = S_EXT_NAME_BWS;
            } else if (ch != ' ' && ch != '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "whitespace after chunk size");
            }
            break;
        case S_EXT_NAME_BWS:
            if (IS(ch, MOAT_H1__C_TCHAR)) {
                c->_state = S_EXT_NAME;
            } else if (ch != ' ' && ch != '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension name");
            }
            break;
        case S_EXT_NAME:
            if (IS(ch, MOAT_H1__C_TCHAR)) {
                break;
            }
            if (ch == '=') {
                c->_state = S_EXT_VAL_BWS;
            } else if (ch == ';') {
                c->_state = S_EXT_NAME_BWS;
            } else if (ch == '\r') {
                c->_state = S_SIZE_LF;
            } else if (ch == ' ' || ch == '\t') {
                c->_state = S_EXT_NAME_WS;
            } else {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension name");
            }
            break;
        case S_EXT_NAME_WS:
            if (ch == '=') {
                c->_state = S_EXT_VAL_BWS;
            } else if (ch == ';') {
                c->_state = S_EXT_NAME_BWS;
            } else if (ch != ' ' && ch != '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension");
            }
            break;
        case S_EXT_VAL_BWS:
            if (ch == '"') {
                c->_state = S_EXT_QSTR;
            } else if (IS(ch, MOAT_H1__C_TCHAR)) {
                c->_state = S_EXT_TOKEN;
            } else if (ch != ' ' && ch != '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension value");
            }
            break;
        case S_EXT_TOKEN:
            if (IS(ch, MOAT_H1__C_TCHAR)) {
                break;
            }
            if (ch == ';') {
                c->_state = S_EXT_NAME_BWS;
            } else if (ch == '\r') {
                c->_state = S_SIZE_LF;
            } else if (ch == ' ' || ch == '\t') {
                c->_state = S_EXT_VAL_WS;
            } else {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension value");
            }
            break;
        case S_EXT_QSTR:
            if (ch == '"') {
                c->_state = S_EXT_AFTER_Q;
            } else if (ch == '\\') {
                c->_state = S_EXT_QPAIR;
            } else if (!IS(ch, MOAT_H1__C_QDTEXT)) {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid character in quoted chunk extension");
            }
            break;
        case S_EXT_QPAIR:
            /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
            if (!IS(ch, MOAT_H1__C_FVAL)) {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid quoted-pair in chunk extension");
                break;
            }
            c->_state = S_EXT_QSTR;
            break;
        case S_EXT_AFTER_Q:
            if (ch == '\r') {
                c->_state = S_SIZE_LF;
            } else if (ch == ';') {
                c->_state = S_EXT_NAME_BWS;
            } else if (ch == ' ' || ch == '\t') {
                c->_state = S_EXT_VAL_WS;
            } else {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension after quoted value");
            }
            break;
        case S_EXT_VAL_WS:
            if (ch == ';') {
                c->_state = S_EXT_NAME_BWS;
            } else if (ch != ' ' && ch != '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid chunk extension");
            }
            break;
        case S_SIZE_LF:
            if (ch != '\n') {
                st = fail(c, MOAT_H1_E_BAD, i, "bare CR in chunk size line");
                break;
            }
            c->_state = c->_size ? S_DATA : S_TRAILER_START;
            break;
        case S_DATA_CR:
            if (ch != '\r') {
                st = fail(c, MOAT_H1_E_BAD, i, "missing CRLF after chunk data");
                break;
            }
            c->_state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (ch != '\n') {
                st = fail(c, MOAT_H1_E_BAD, i, "missing CRLF after chunk data");
                break;
            }
            c->_state = S_SIZE_START;
            break;
        case S_TRAILER_START:
            if (ch == '\r') {
                c->_state = S_END_LF;
            } else if (IS(ch, MOAT_H1__C_TCHAR)) {
                c->_state = S_TRAILER_NAME;
            } else if (ch == ' ' || ch == '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "obs-fold in trailer");
            } else if (ch == ':') {
                st = fail(c, MOAT_H1_E_BAD, i, "empty trailer field name");
            } else {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid trailer line");
            }
            break;
        case S_TRAILER_NAME:
            if (ch == ':') {
                c->_state = S_TRAILER_VALUE;
            } else if (ch == ' ' || ch == '\t') {
                st = fail(c, MOAT_H1_E_BAD, i, "whitespace before colon in trailer");
            } else if (!IS(ch, MOAT_H1__C_TCHAR)) {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid character in trailer name");
            }
            break;
        case S_TRAILER_VALUE:
            if (ch == '\r') {
                c->_state = S_TRAILER_LF;
            } else if (!IS(ch, MOAT_H1__C_FVAL)) {
                st = fail(c, MOAT_H1_E_BAD, i, "invalid character in trailer value");
            }
            break;
        case S_TRAILER_LF:
            if (ch != '\n') {
                st = fail(c, MOAT_H1_E_BAD, i, "bare CR in trailer");
                break;
            }
            c->_state = S_TRAILER_START;
            break;
        case S_END_LF:
            if (ch != '\n') {
                st = fail(c, MOAT_H1_E_BAD, i, "bare CR at end of chunked body");
                break;
            }
            c->_state = S_DONE;
            st = MOAT_H1_DONE;
            break;
        default:
            st = fail(c, MOAT_H1_E_BAD, i, "chunked decoder in a bad state");
            break;
        }
        if (st != MOAT_H1_AGAIN) {
            if (st == MOAT_H1_DONE) {
                i++;
            }
            break;
        }
        i++;
    }
    *consumed = i;
    *out_len = o;
    return st;
}
