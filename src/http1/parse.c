/*
 * parse.c: the strict, incremental HTTP/1.1 request and response head parser.
 *
 * Two passes over a head, each done once. The scan pass runs on every call over the new bytes only:
 * memchr for LF, check that each LF follows a CR, count lines, and stop at the empty line; it
 * enforces 414/431/too-many-fields as soon as a limit is crossed, so a peer cannot make us buffer
 * more than the limits. The parse pass runs once the whole head is there: the start line, then each
 * field line with a table lookup per byte, then the framing and connection semantics of RFC 9112 §6
 * and §9 and the Host rules of §3.2.
 *
 * Nothing here allocates or keeps pointers between calls (only offsets), so the caller may move its
 * buffer between AGAIN and the next call.
 */
#include "http1/parse.h"

#include <string.h>
#include <strings.h>

#define C_TCHAR MOAT_H1__C_TCHAR
#define C_FVAL MOAT_H1__C_FVAL
#define C_TARGET MOAT_H1__C_TARGET
#define C_HEX MOAT_H1__C_HEX
#define C_HOST MOAT_H1__C_HOST
#define C_DIGIT MOAT_H1__C_DIGIT
#define IS(c, cls) MOAT_H1__IS(c, cls)

/* Generated from the RFC 9110 §5.6.2 (tchar), §5.5 (field-vchar, obs-text), §5.6.4 (qdtext) and RFC
 * 3986 §3.2.2 (reg-name) grammars; one lookup per byte in the hot loops. */
const unsigned char moat_h1__ctype[256] = {
    0,   0,   0,   0,   0,   0,   0,   0,   0,   66,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,  0,  0,  0,  0,  0,  /* 0x10 */
    66,  87,  6,   67,  87,  71,  87,  87,  86,  86,  87, 87, 86, 87, 87, 70, /* 0x20 */
    127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 70, 86, 70, 86, 70, 70, /* 0x30 */
    70,  95,  95,  95,  95,  95,  95,  87,  87,  87,  87, 87, 87, 87, 87, 87, /* 0x40 */
    87,  87,  87,  87,  87,  87,  87,  87,  87,  87,  87, 70, 6,  70, 71, 87, /* 0x50 */
    71,  95,  95,  95,  95,  95,  95,  87,  87,  87,  87, 87, 87, 87, 87, 87, /* 0x60 */
    87,  87,  87,  87,  87,  87,  87,  87,  87,  87,  87, 70, 71, 70, 87, 0,  /* 0x70 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0x80 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0x90 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0xa0 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0xb0 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0xc0 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0xd0 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0xe0 */
    66,  66,  66,  66,  66,  66,  66,  66,  66,  66,  66, 66, 66, 66, 66, 66, /* 0xf0 */
};

int moat_h1_status_code(enum moat_h1_status s)
{
    switch (s) {
    case MOAT_H1_E_BAD:
        return 400;
    case MOAT_H1_E_LINE_TOO_LONG:
        return 414;
    case MOAT_H1_E_HEAD_TOO_LARGE:
    case MOAT_H1_E_TOO_MANY_FIELDS:
        return 431;
    case MOAT_H1_E_VERSION:
        return 505;
    case MOAT_H1_E_NOT_IMPLEMENTED:
        return 501;
    case MOAT_H1_E_EXPECTATION:
        return 417;
    case MOAT_H1_E_BODY_TOO_LARGE:
        return 413;
    case MOAT_H1_DONE:
    case MOAT_H1_AGAIN:
    default:
        return 0;
    }
}

const char *moat_h1_status_name(enum moat_h1_status s)
{
    switch (s) {
    case MOAT_H1_DONE:
        return "done";
    case MOAT_H1_AGAIN:
        return "again";
    case MOAT_H1_E_BAD:
        return "bad request";
    case MOAT_H1_E_LINE_TOO_LONG:
        return "request line too long";
    case MOAT_H1_E_HEAD_TOO_LARGE:
        return "head too large";
    case MOAT_H1_E_TOO_MANY_FIELDS:
        return "too many fields";
    case MOAT_H1_E_VERSION:
        return "HTTP version not supported";
    case MOAT_H1_E_NOT_IMPLEMENTED:
        return "transfer coding not implemented";
    case MOAT_H1_E_EXPECTATION:
        return "expectation failed";
    case MOAT_H1_E_BODY_TOO_LARGE:
        return "body too large";
    case MOAT_H1_STATUS_COUNT:
    default:
        return "?";
    }
}

void moat_h1_limits_default(struct moat_h1_limits *l)
{
    l->max_line_bytes = 8192;
    l->max_head_bytes = 32768;
    l->max_fields = 100;
}

/* What the field lines said about framing and the connection, gathered in one pass. */
struct sem {
    size_t nhost;
    moat_slice host;
    size_t host_pos;
    int cl_seen;
    uint64_t cl;
    int te_seen;     /* a Transfer-Encoding field was present */
    int te_ncodings; /* non-empty list members over all TE fields */
    int te_chunked;  /* "chunked" seen (twice is refused at once) */
    int te_last_chunked;
    int te_other; /* a coding other than chunked */
    size_t te_pos;
    int conn_close, conn_keep_alive, conn_upgrade;
    int upgrade_field;
    int expect_continue, expect_other;
    size_t expect_pos;
};

/* One call's view of the head; the scan offsets are copied in and out of the public struct. */
struct head {
    const char *buf;
    size_t len;
    size_t start; /* first byte of the start line (after ignored empty lines) */
    size_t scanned, line, nlines;
    size_t head_len;
    size_t line_max, head_max, max_fields;
    struct moat_field *fields;
    size_t nfields;
    struct sem sem;
    size_t err_pos;
    const char *err_what;
};

static enum moat_h1_status fail(struct head *h, enum moat_h1_status s, size_t pos, const char *what)
{
    h->err_pos = pos;
    h->err_what = what;
    return s;
}

/* Zero fields of the caller's limits take the defaults; max_fields is clamped to the array. */
static void limits_of(const struct moat_h1_limits *lim, struct head *h)
{
    struct moat_h1_limits d;
    moat_h1_limits_default(&d);
    h->line_max = lim && lim->max_line_bytes ? lim->max_line_bytes : d.max_line_bytes;
    h->head_max = lim && lim->max_head_bytes ? lim->max_head_bytes : d.max_head_bytes;
    h->max_fields = lim && lim->max_fields ? lim->max_fields : d.max_fields;
    if (h->max_fields > MOAT_H1_FIELDS_CAP) {
        h->max_fields = MOAT_H1_FIELDS_CAP;
    }
}

/*
 * Search the bytes not yet seen for the end of the head (an empty line). Enforces: every LF follows
 * a CR (RFC 9112 §2.2: bare LF refused, not tolerated), the start line is not empty and not longer
 * than line_max (0: no own limit), at most max_fields field lines, and the head fits in head_max.
 * Returns DONE with h->head_len set, AGAIN, or an error.
 */
static enum moat_h1_status scan(struct head *h)
{
    const char *b = h->buf;
    size_t end = h->len < h->head_max ? h->len : h->head_max;
    size_t p = h->scanned;
    while (p < end) {
        const char *nl = memchr(b + p, '\n', end - p);
        if (nl == NULL) {
            p = end;
            break;
        }
        size_t i = (size_t)(nl - b);
        int cr = i > h->line && b[i - 1] == '\r';
        size_t n = i - h->line - (size_t)cr; /* line length without its end */
        if (h->nlines == 0 && h->line_max && n > h->line_max) {
            /* checked before the line end, as it was while the line was still arriving */
            return fail(h, MOAT_H1_E_LINE_TOO_LONG, h->line, "start line too long");
        }
        if (!cr) {
            return fail(h, MOAT_H1_E_BAD, i, "bare LF (lines must end in CRLF)");
        }
        if (h->nlines == 0) {
            if (n == 0) {
                return fail(h, MOAT_H1_E_BAD, h->line, "empty start line");
            }
        } else if (n == 0) {
            h->scanned = i + 1;
            h->head_len = i + 1;
            return MOAT_H1_DONE;
        } else if (h->nlines > h->max_fields) {
            return fail(h, MOAT_H1_E_TOO_MANY_FIELDS, h->line, "too many field lines");
        }
        h->nlines++;
        h->line = i + 1;
        p = i + 1;
    }
    h->scanned = p;
    if (h->nlines == 0 && h->line_max) {
        /* 414 as soon as the line is certainly too long: a trailing CR may still be its end */
        size_t n = end - h->line;
        if (n > 0 && b[end - 1] == '\r') {
            n--;
        }
        if (n > h->line_max) {
            return fail(h, MOAT_H1_E_LINE_TOO_LONG, h->line, "start line too long");
        }
    }
    if (h->len >= h->head_max) {
        /* no end of head in the first head_max bytes: the head would be longer */
        return fail(h, MOAT_H1_E_HEAD_TOO_LARGE, end, "head too large");
    }
    return MOAT_H1_AGAIN;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3), case-sensitive. */
static enum moat_h1_status parse_version(struct head *h, size_t pos, size_t n, int *minor)
{
    const char *v = h->buf + pos;
    if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !IS(v[5], C_DIGIT) || v[6] != '.' ||
        !IS(v[7], C_DIGIT)) {
        return fail(h, MOAT_H1_E_BAD, pos, "malformed HTTP version");
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        return fail(h, MOAT_H1_E_VERSION, pos, "HTTP version not supported");
    }
    *minor = v[7] - '0';
    return MOAT_H1_DONE;
}

/*
 * Next member of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed; empty members come back as
 * empty slices (the caller decides). *pp is NULL once the list is exhausted.
 */
static int list_next(const char **pp, const char *e, moat_slice *out)
{
    const char *p = *pp;
    if (p == NULL) {
        return 0;
    }
    const char *c = memchr(p, ',', (size_t)(e - p));
    const char *q = c ? c : e;
    *pp = c ? c + 1 : NULL;
    while (p < q && (*p == ' ' || *p == '\t')) {
        p++;
    }
    while (q > p && (q[-1] == ' ' || q[-1] == '\t')) {
        q--;
    }
    *out = moat_slice_of(p, (size_t)(q - p));
    return 1;
}

static int is_token(moat_slice s)
{
    if (s.len == 0) {
        return 0;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (!IS(s.p[i], C_TCHAR)) {
            return 0;
        }
    }
    return 1;
}

/* Compare `n` bytes of `p` with a lower-case literal, ignoring ASCII case. */
static int lc_eq(const char *p, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c + ('a' - 'A'));
        }
        if (c != (unsigned char)lit[i]) {
            return 0;
        }
    }
    return 1;
}
#define LC_EQ(s, lit) lc_eq((s).p, (s).len, lit, sizeof(lit) - 1)

/*
 * uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP-literal in brackets (hex digits, ':'
 * and '.'), or a non-empty reg-name (IPv4 addresses are reg-names by their bytes); a port of 1 to 5
 * digits, required when `port_required` (CONNECT, RFC 9112 §3.2.3).
 */
static int host_valid(const char *p, size_t n, int port_required)
{
    size_t i = 0;
    if (n == 0) {
        return 0;
    }
    if (p[0] == '[') {
        i = 1;
        while (i < n && (IS(p[i], C_HEX) || p[i] == ':' || p[i] == '.')) {
            i++;
        }
        if (i == n || p[i] != ']' || i < 3) {
            return 0;
        }
        i++;
    } else {
        while (i < n && p[i] != ':') {
            if (p[i] == '%') {
                if (i + 2 >= n || !IS(p[i + 1], C_HEX) || !IS(p[i + 2], C_HEX)) {
                    return 0;
                }
                i += 3;
                continue;
            }
            if (!IS(p[i], C_HOST)) {
                return 0;
            }
            i++;
        }
        if (i == 0) {
            return 0;
        }
    }
    if (i == n) {
        return !port_required;
    }
    if (p[i] != ':' || n - i - 1 == 0 || n - i - 1 > 5) {
        return 0;
    }
    for (i++; i < n; i++) {
        if (!IS(p[i], C_DIGIT)) {
            return 0;
        }
    }
    return 1;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6); a list is accepted only if all members agree. */
static enum moat_h1_status sem_content_length(struct head *h, const struct moat_field *f,
                                              size_t pos)
{
    struct sem *s = &h->sem;
    const char *p = f->value.p, *e = f->value.p + f->value.len;
    moat_slice m;
    while (list_next(&p, e, &m)) {
        /* 19 digits cannot overflow uint64_t (max 1.8e19), so no overflow check is needed */
        if (m.len == 0 || m.len > 19) {
            return fail(h, MOAT_H1_E_BAD, pos, "invalid Content-Length");
        }
        uint64_t v = 0;
        for (size_t i = 0; i < m.len; i++) {
            if (!IS(m.p[i], C_DIGIT)) {
                return fail(h, MOAT_H1_E_BAD, pos, "invalid Content-Length");
            }
            v = v * 10 + (uint64_t)(m.p[i] - '0');
        }
        if (s->cl_seen && v != s->cl) {
            return fail(h, MOAT_H1_E_BAD, pos, "conflicting Content-Length values");
        }
        s->cl_seen = 1;
        s->cl = v;
    }
    return MOAT_H1_DONE;
}

/* Transfer-Encoding (RFC 9112 §6.1): members of all TE fields form one list, in order. */
static enum moat_h1_status sem_transfer_encoding(struct head *h, const struct moat_field *f,
                                                 size_t pos)
{
    struct sem *s = &h->sem;
    const char *p = f->value.p, *e = f->value.p + f->value.len;
    moat_slice m;
    if (!s->te_seen) {
        s->te_pos = pos;
    }
    s->te_seen = 1;
    while (list_next(&p, e, &m)) {
        if (m.len == 0) {
            continue; /* RFC 9110 §5.6.1: empty members are ignored */
        }
        size_t n = 0;
        while (n < m.len && IS(m.p[n], C_TCHAR)) {
            n++;
        }
        if (n == 0) {
            return fail(h, MOAT_H1_E_BAD, pos, "invalid Transfer-Encoding");
        }
        if (n < m.len) {
            /* only transfer-parameters may follow the coding name: OWS ";" ... */
            size_t k = n;
            while (k < m.len && (m.p[k] == ' ' || m.p[k] == '\t')) {
                k++;
            }
            if (k == m.len || m.p[k] != ';') {
                return fail(h, MOAT_H1_E_BAD, pos, "invalid Transfer-Encoding");
            }
        }
        s->te_ncodings++;
        if (lc_eq(m.p, n, "chunked", 7)) {
            if (n != m.len) {
                return fail(h, MOAT_H1_E_BAD, pos, "parameters on chunked");
            }
            if (s->te_chunked) {
                /* RFC 9112 §6.1: a sender MUST NOT apply chunked more than once */
                return fail(h, MOAT_H1_E_BAD, pos, "chunked applied twice");
            }
            s->te_chunked = 1;
            s->te_last_chunked = 1;
        } else {
            s->te_other = 1;
            s->te_last_chunked = 0;
        }
    }
    return MOAT_H1_DONE;
}

/* Connection options (RFC 9110 §7.6.1): a list of tokens; we act on three of them. */
static enum moat_h1_status sem_connection(struct head *h, const struct moat_field *f, size_t pos)
{
    struct sem *s = &h->sem;
    const char *p = f->value.p, *e = f->value.p + f->value.len;
    moat_slice m;
    while (list_next(&p, e, &m)) {
        if (m.len == 0) {
            continue;
        }
        if (!is_token(m)) {
            return fail(h, MOAT_H1_E_BAD, pos, "invalid Connection option");
        }
        if (LC_EQ(m, "close")) {
            s->conn_close = 1;
        } else if (LC_EQ(m, "keep-alive")) {
            s->conn_keep_alive = 1;
        } else if (LC_EQ(m, "upgrade")) {
            s->conn_upgrade = 1;
        }
    }
    return MOAT_H1_DONE;
}

/* Expect (RFC 9110 §10.1.1): only 100-continue is defined; anything else earns a 417. */
static void sem_expect(struct head *h, const struct moat_field *f, size_t pos)
{
    struct sem *s = &h->sem;
    const char *p = f->value.p, *e = f->value.p + f->value.len;
    moat_slice m;
    while (list_next(&p, e, &m)) {
        if (m.len == 0) {
            continue;
        }
        if (LC_EQ(m, "100-continue")) {
            s->expect_continue = 1;
        } else if (!s->expect_other) {
            s->expect_other = 1;
            s->expect_pos = pos;
        }
    }
}

/* Record what a field means for framing, Host and the connection. `pos`: its line's offset. */
static enum moat_h1_status sem_field(struct head *h, const struct moat_field *f, size_t pos)
{
    moat_slice n = f->name;
    switch (n.len) {
    case 4:
        if (LC_EQ(n, "host")) {
            if (h->sem.nhost++ == 0) {
                h->sem.host = f->value;
                h->sem.host_pos = pos;
            }
        }
        return MOAT_H1_DONE;
    case 6:
        if (LC_EQ(n, "expect")) {
            sem_expect(h, f, pos);
        }
        return MOAT_H1_DONE;
    case 7:
        if (LC_EQ(n, "upgrade") && f->value.len > 0) {
            h->sem.upgrade_field = 1;
        }
        return MOAT_H1_DONE;
    case 10:
        return LC_EQ(n, "connection") ? sem_connection(h, f, pos) : MOAT_H1_DONE;
    case 14:
        return LC_EQ(n, "content-length") ? sem_content_length(h, f, pos) : MOAT_H1_DONE;
    case 17:
        return LC_EQ(n, "transfer-encoding") ? sem_transfer_encoding(h, f, pos) : MOAT_H1_DONE;
    default:
        return MOAT_H1_DONE;
    }
}

/*
 * Skip 8 bytes at a time while none is a CTL (< 0x20, HTAB included) or DEL: field values are the
 * bulk of a head (cookies, user agents), and this lets the per-byte loop see only the tail and
 * the rare word holding a HTAB. Bytes >= 0x80 (obs-text) pass, as they should.
 */
static size_t skip_plain(const char *b, size_t i, size_t e)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (e - i >= 8) {
        uint64_t x;
        memcpy(&x, b + i, 8);
        uint64_t ctl = (x - ones * 0x20) & ~x & highs; /* some byte < 0x20 */
        uint64_t d = x ^ (ones * 0x7f);
        uint64_t del = (d - ones) & ~d & highs; /* some byte == 0x7f */
        if (ctl | del) {
            break;
        }
        i += 8;
    }
    return i;
}

/* The same for request-targets: skip words of VCHAR other than '#' (so SP, CTLs, DEL, bytes
 * >= 0x80 and '#' all stop the skip and are judged by the per-byte loop). */
static size_t skip_target(const char *b, size_t i, size_t e)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (e - i >= 8) {
        uint64_t x;
        memcpy(&x, b + i, 8);
        uint64_t low = (x - ones * 0x21) & ~x & highs; /* some byte < 0x21 */
        uint64_t high = (x | (x + ones)) & highs;      /* some byte >= 0x7f */
        uint64_t d = x ^ (ones * '#');
        uint64_t hash = (d - ones) & ~d & highs; /* some byte == '#' */
        if (low | high | hash) {
            break;
        }
        i += 8;
    }
    return i;
}

/*
 * field-line = field-name ":" OWS field-value OWS (RFC 9112 §5), in buf[p, e) where buf[e] is the
 * CR. No obs-fold (§5.2), no whitespace before the colon (§5.1), no CTL but HTAB in values.
 */
static enum moat_h1_status parse_field_line(struct head *h, size_t p, size_t e)
{
    const char *b = h->buf;
    size_t i = p;
    if (b[i] == ' ' || b[i] == '\t') {
        return fail(h, MOAT_H1_E_BAD, i, "obs-fold (field line starts with whitespace)");
    }
    while (i < e && IS(b[i], C_TCHAR)) {
        i++;
    }
    if (i == e) {
        return fail(h, MOAT_H1_E_BAD, i, "missing colon in field line");
    }
    if (b[i] != ':') {
        if (b[i] == ' ' || b[i] == '\t') {
            return fail(h, MOAT_H1_E_BAD, i, "whitespace before colon");
        }
        return fail(h, MOAT_H1_E_BAD, i, "invalid character in field name");
    }
    if (i == p) {
        return fail(h, MOAT_H1_E_BAD, i, "empty field name");
    }
    size_t name_end = i++;
    while (i < e && (b[i] == ' ' || b[i] == '\t')) {
        i++;
    }
    size_t v0 = i;
    i = skip_plain(b, i, e);
    while (i < e && IS(b[i], C_FVAL)) {
        i++;
    }
    if (i != e) {
        return fail(h, MOAT_H1_E_BAD, i, "invalid character in field value");
    }
    size_t ve = e;
    while (ve > v0 && (b[ve - 1] == ' ' || b[ve - 1] == '\t')) {
        ve--;
    }
    if (h->nfields >= h->max_fields) {
        return fail(h, MOAT_H1_E_TOO_MANY_FIELDS, p, "too many field lines");
    }
    struct moat_field *f = &h->fields[h->nfields++];
    f->name = moat_slice_of(b + p, name_end - p);
    f->value = moat_slice_of(b + v0, ve - v0);
    return sem_field(h, f, p);
}

/* All field lines from `p` (just after the start line) to the empty line. */
static enum moat_h1_status parse_fields(struct head *h, size_t p)
{
    size_t end = h->head_len - 2; /* the CR of the final empty line */
    while (p < end) {
        /* the scan pass saw every LF here, each after a CR: this finds the line's end */
        const char *nl = memchr(h->buf + p, '\n', h->head_len - p);
        size_t e = (size_t)(nl - h->buf) - 1;
        enum moat_h1_status st = parse_field_line(h, p, e);
        if (st != MOAT_H1_DONE) {
            return st;
        }
        p = e + 2;
    }
    return MOAT_H1_DONE;
}

/* The end (index of the CR) of the line starting at p; the scan pass guarantees it exists. */
static size_t line_end(const struct head *h, size_t p)
{
    const char *nl = memchr(h->buf + p, '\n', h->head_len - p);
    return (size_t)(nl - h->buf) - 1;
}

/* Split "path?query" (already checked to be visible ASCII without '#'). */
static void split_query(moat_slice t, moat_slice *path, moat_slice *query)
{
    const char *q = memchr(t.p, '?', t.len);
    if (q == NULL) {
        *path = t;
        *query = moat_slice_of(t.p + t.len, 0);
        return;
    }
    *path = moat_slice_of(t.p, (size_t)(q - t.p));
    *query = moat_slice_of(q + 1, t.len - (size_t)(q - t.p) - 1);
}

/*
 * Classify the request-target (RFC 9112 §3.2) and fill path, query and, for the absolute and
 * authority forms, the host taken from the target.
 */
static enum moat_h1_status parse_target(struct head *h, struct moat_h1_req *r, size_t pos)
{
    moat_slice t = r->target;
    if (r->method_id == MOAT_HTTP_M_CONNECT) {
        /* §3.2.3: CONNECT takes authority-form only, with a port */
        if (!host_valid(t.p, t.len, 1)) {
            return fail(h, MOAT_H1_E_BAD, pos, "CONNECT needs host:port as target");
        }
        r->target_form = MOAT_H1_T_AUTHORITY;
        r->host = t;
        r->path = moat_slice_of(t.p + t.len, 0);
        r->query = r->path;
        return MOAT_H1_DONE;
    }
    if (t.p[0] == '/') {
        r->target_form = MOAT_H1_T_ORIGIN;
        split_query(t, &r->path, &r->query);
        return MOAT_H1_DONE;
    }
    if (t.len == 1 && t.p[0] == '*') {
        /* §3.2.4: asterisk-form is only for a server-wide OPTIONS */
        if (r->method_id != MOAT_HTTP_M_OPTIONS) {
            return fail(h, MOAT_H1_E_BAD, pos, "'*' target is only for OPTIONS");
        }
        r->target_form = MOAT_H1_T_ASTERISK;
        r->path = t;
        r->query = moat_slice_of(t.p + t.len, 0);
        return MOAT_H1_DONE;
    }
    size_t off;
    if (t.len >= 7 && strncasecmp(t.p, "http://", 7) == 0) {
        off = 7;
    } else if (t.len >= 8 && strncasecmp(t.p, "https://", 8) == 0) {
        off = 8;
    } else {
        return fail(h, MOAT_H1_E_BAD, pos, "invalid request target");
    }
    /* §3.2.2 absolute-form: the authority replaces Host */
    size_t a = off;
    while (a < t.len && t.p[a] != '/' && t.p[a] != '?') {
        if (t.p[a] == '@') {
            /* RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error */
            return fail(h, MOAT_H1_E_BAD, pos + a, "userinfo in request target");
        }
        a++;
    }
    if (!host_valid(t.p + off, a - off, 0)) {
        return fail(h, MOAT_H1_E_BAD, pos + off, "invalid authority in request target");
    }
    r->target_form = MOAT_H1_T_ABSOLUTE;
    r->host = moat_slice_of(t.p + off, a - off);
    moat_slice rest = moat_slice_of(t.p + a, t.len - a);
    split_query(rest, &r->path, &r->query);
    if (r->path.len == 0) {
        /* RFC 9110 §4.2.3: an empty path is equivalent to "/" */
        r->path = MOAT_SLICE_LIT("/");
    }
    return MOAT_H1_DONE;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single SPs. */
static enum moat_h1_status parse_request_line(struct head *h, struct moat_h1_req *r, size_t e)
{
    const char *b = h->buf;
    size_t i = h->start;
    while (i < e && IS(b[i], C_TCHAR)) {
        i++;
    }
    if (i == e || b[i] != ' ' || i == h->start) {
        return fail(h, MOAT_H1_E_BAD, i, "invalid method");
    }
    r->method = moat_slice_of(b + h->start, i - h->start);
    r->method_id = moat_http_method_of(r->method);
    size_t t0 = ++i;
    i = skip_target(b, i, e);
    while (i < e && IS(b[i], C_TARGET)) {
        i++;
    }
    if (i == t0) {
        return fail(h, MOAT_H1_E_BAD, i, "empty request target");
    }
    if (i == e) {
        return fail(h, MOAT_H1_E_BAD, i, "missing HTTP version");
    }
    if (b[i] != ' ') {
        return fail(h, MOAT_H1_E_BAD, i,
                    b[i] == '#' ? "fragment in request target"
                                : "invalid character in request target");
    }
    r->target = moat_slice_of(b + t0, i - t0);
    i++;
    enum moat_h1_status st = parse_version(h, i, e - i, &r->minor);
    if (st != MOAT_H1_DONE) {
        return st;
    }
    return parse_target(h, r, t0);
}

/* The request rules of RFC 9112 §3.2 (Host), §6 (framing), §9.3 (persistence). */
static enum moat_h1_status request_semantics(struct head *h, struct moat_h1_req *r)
{
    const struct sem *s = &h->sem;
    if (s->te_seen) {
        if (r->minor == 0) {
            /* §6.1: TE in 1.0 means the framing is faulty; refuse rather than guess */
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "Transfer-Encoding in HTTP/1.0");
        }
        if (s->cl_seen) {
            /* §6.1: CL with TE is how requests are smuggled */
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "both Transfer-Encoding and Content-Length");
        }
        if (s->te_ncodings == 0) {
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "empty Transfer-Encoding");
        }
        if (!s->te_last_chunked) {
            /* §6.3 item 4: a request whose final coding is not chunked cannot be framed */
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "chunked is not the final transfer coding");
        }
        if (s->te_other) {
            return fail(h, MOAT_H1_E_NOT_IMPLEMENTED, s->te_pos,
                        "transfer coding other than chunked");
        }
        r->body = MOAT_H1_BODY_CHUNKED;
    } else if (s->cl_seen) {
        r->body = MOAT_H1_BODY_LENGTH;
        r->content_length = s->cl;
    }
    if (s->nhost > 1) {
        return fail(h, MOAT_H1_E_BAD, s->host_pos, "more than one Host field");
    }
    if (s->nhost == 0 && r->minor == 1) {
        return fail(h, MOAT_H1_E_BAD, h->start, "missing Host field");
    }
    if (s->host.len > 0 && !host_valid(s->host.p, s->host.len, 0)) {
        return fail(h, MOAT_H1_E_BAD, s->host_pos, "invalid Host field");
    }
    if (r->target_form != MOAT_H1_T_ABSOLUTE && r->target_form != MOAT_H1_T_AUTHORITY) {
        if (s->host.len == 0 && r->minor == 1) {
            return fail(h, MOAT_H1_E_BAD, s->host_pos, "empty Host field");
        }
        /* never a NULL slice after DONE, even without a Host field (HTTP/1.0) */
        r->host = s->nhost ? s->host : moat_slice_of(h->buf + h->start, 0);
    }
    if (s->expect_other) {
        return fail(h, MOAT_H1_E_EXPECTATION, s->expect_pos, "unsupported expectation");
    }
    /* RFC 9110 §10.1.1: a 100-continue in an HTTP/1.0 request MUST be ignored */
    r->expect_continue = s->expect_continue && r->minor == 1;
    r->keep_alive = !s->conn_close && (r->minor == 1 || s->conn_keep_alive);
    /* RFC 9110 §7.8: Upgrade in an HTTP/1.0 request MUST be ignored */
    r->upgrade = s->conn_upgrade && s->upgrade_field && r->minor == 1;
    return MOAT_H1_DONE;
}

/* RFC 9112 §2.2: skip up to MOAT_H1_MAX_LEADING_EMPTY_LINES CRLFs before the request line. */
static size_t skip_empty_lines(const char *buf, size_t len)
{
    size_t i = 0;
    for (int n = 0; n < MOAT_H1_MAX_LEADING_EMPTY_LINES; n++) {
        if (i + 1 >= len || buf[i] != '\r' || buf[i + 1] != '\n') {
            break;
        }
        i += 2;
    }
    return i;
}

void moat_h1_req_init(struct moat_h1_req *r)
{
    r->method = MOAT_SLICE_NULL;
    r->method_id = MOAT_HTTP_M_OTHER;
    r->target = MOAT_SLICE_NULL;
    r->target_form = MOAT_H1_T_ORIGIN;
    r->path = MOAT_SLICE_NULL;
    r->query = MOAT_SLICE_NULL;
    r->minor = 0;
    r->nfields = 0;
    r->host = MOAT_SLICE_NULL;
    r->body = MOAT_H1_BODY_NONE;
    r->content_length = 0;
    r->keep_alive = 0;
    r->expect_continue = 0;
    r->upgrade = 0;
    r->head_len = 0;
    r->_scanned = 0;
    r->_line = 0;
    r->_nlines = 0;
    r->err_pos = 0;
    r->err_what = NULL;
}

enum moat_h1_status moat_h1_parse_request(struct moat_h1_req *r, const char *buf, size_t len,
                                          const struct moat_h1_limits *lim)
{
    struct head h = {.buf = buf, .len = len, .fields = r->fields};
    limits_of(lim, &h);
    h.start = skip_empty_lines(buf, len);
    h.scanned = r->_scanned > h.start ? r->_scanned : h.start;
    h.line = r->_line > h.start ? r->_line : h.start;
    h.nlines = r->_nlines;
    enum moat_h1_status st = scan(&h);
    r->_scanned = h.scanned;
    r->_line = h.line;
    r->_nlines = h.nlines;
    if (st == MOAT_H1_DONE) {
        st = parse_request_line(&h, r, line_end(&h, h.start));
    }
    if (st == MOAT_H1_DONE) {
        st = parse_fields(&h, line_end(&h, h.start) + 2);
    }
    r->nfields = h.nfields;
    if (st == MOAT_H1_DONE) {
        st = request_semantics(&h, r);
    }
    if (st == MOAT_H1_DONE) {
        r->head_len = h.head_len;
    } else if (st != MOAT_H1_AGAIN) {
        r->err_pos = h.err_pos;
        r->err_what = h.err_what;
    }
    return st;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4); a missing "SP
 * reason" is tolerated, as some servers omit it. */
static enum moat_h1_status parse_status_line(struct head *h, struct moat_h1_resp *r, size_t e)
{
    const char *b = h->buf;
    size_t i = 0;
    while (i < e && b[i] != ' ') {
        i++;
    }
    enum moat_h1_status st = parse_version(h, 0, i, &r->minor);
    if (st != MOAT_H1_DONE) {
        return st;
    }
    i++;
    if (i + 3 > e || !IS(b[i], C_DIGIT) || !IS(b[i + 1], C_DIGIT) || !IS(b[i + 2], C_DIGIT)) {
        return fail(h, MOAT_H1_E_BAD, i > e ? e : i, "invalid status code");
    }
    r->status = (b[i] - '0') * 100 + (b[i + 1] - '0') * 10 + (b[i + 2] - '0');
    if (r->status < 100 || r->status > 599) {
        /* RFC 9110 §15: values outside 100..599 are invalid */
        return fail(h, MOAT_H1_E_BAD, i, "status code out of range");
    }
    i += 3;
    if (i == e) {
        r->reason = moat_slice_of(b + i, 0);
        return MOAT_H1_DONE;
    }
    if (b[i] != ' ') {
        return fail(h, MOAT_H1_E_BAD, i, "invalid status code");
    }
    size_t r0 = ++i;
    while (i < e && IS(b[i], C_FVAL)) {
        i++;
    }
    if (i != e) {
        return fail(h, MOAT_H1_E_BAD, i, "invalid character in reason phrase");
    }
    r->reason = moat_slice_of(b + r0, e - r0);
    return MOAT_H1_DONE;
}

/* Response framing, RFC 9112 §6.3 in its order. */
static enum moat_h1_status response_semantics(struct head *h, struct moat_h1_resp *r,
                                              int request_was_head)
{
    const struct sem *s = &h->sem;
    if (s->te_seen) {
        if (r->minor == 0) {
            /* §6.1: the framing of a 1.0 message with TE is faulty */
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "Transfer-Encoding in HTTP/1.0");
        }
        if (s->cl_seen) {
            /* §6.3 item 3: "ought to be handled as an error"; a proxy must not pass it on */
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "both Transfer-Encoding and Content-Length");
        }
        if (s->te_ncodings == 0) {
            return fail(h, MOAT_H1_E_BAD, s->te_pos, "empty Transfer-Encoding");
        }
    }
    r->keep_alive = !s->conn_close && (r->minor == 1 || s->conn_keep_alive);
    r->upgrade = r->status == 101 && s->conn_upgrade && s->upgrade_field;
    if (request_was_head || r->status < 200 || r->status == 204 || r->status == 304) {
        r->body = MOAT_H1_BODY_NONE;
        return MOAT_H1_DONE;
    }
    if (s->te_seen) {
        if (s->te_other) {
            return fail(h, MOAT_H1_E_NOT_IMPLEMENTED, s->te_pos,
                        "transfer coding other than chunked");
        }
        r->body = MOAT_H1_BODY_CHUNKED;
        return MOAT_H1_DONE;
    }
    if (s->cl_seen) {
        r->body = MOAT_H1_BODY_LENGTH;
        r->content_length = s->cl;
        return MOAT_H1_DONE;
    }
    r->body = MOAT_H1_BODY_CLOSE;
    r->keep_alive = 0;
    return MOAT_H1_DONE;
}

void moat_h1_resp_init(struct moat_h1_resp *r)
{
    r->minor = 0;
    r->status = 0;
    r->reason = MOAT_SLICE_NULL;
    r->nfields = 0;
    r->body = MOAT_H1_BODY_NONE;
    r->content_length = 0;
    r->keep_alive = 0;
    r->upgrade = 0;
    r->head_len = 0;
    r->_scanned = 0;
    r->_line = 0;
    r->_nlines = 0;
    r->err_pos = 0;
    r->err_what = NULL;
}

enum moat_h1_status moat_h1_parse_response(struct moat_h1_resp *r, const char *buf, size_t len,
                                           const struct moat_h1_limits *lim, int request_was_head)
{
    struct head h = {.buf = buf, .len = len, .fields = r->fields};
    limits_of(lim, &h);
    h.line_max = 0; /* the status line is bounded by the head limit only */
    h.scanned = r->_scanned;
    h.line = r->_line;
    h.nlines = r->_nlines;
    enum moat_h1_status st = scan(&h);
    r->_scanned = h.scanned;
    r->_line = h.line;
    r->_nlines = h.nlines;
    if (st == MOAT_H1_DONE) {
        st = parse_status_line(&h, r, line_end(&h, 0));
    }
    if (st == MOAT_H1_DONE) {
        st = parse_fields(&h, line_end(&h, 0) + 2);
    }
    r->nfields = h.nfields;
    if (st == MOAT_H1_DONE) {
        st = response_semantics(&h, r, request_was_head);
    }
    if (st == MOAT_H1_DONE) {
        r->head_len = h.head_len;
    } else if (st != MOAT_H1_AGAIN) {
        r->err_pos = h.err_pos;
        r->err_what = h.err_what;
    }
    return st;
}
