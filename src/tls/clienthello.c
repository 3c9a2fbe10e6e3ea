/*
 * clienthello.c: the ClientHello peek parser for passthrough routing (see clienthello.h).
 *
 * The handshake message is read through a cursor that walks the records lazily: it hands out
 * handshake bytes in order, and when the open record is used up it reads the next record header
 * where it lies in the caller's bytes. So a ClientHello split into many records is read in place
 * with no reassembly buffer and no copy, and the same code reads the one-record case. The cursor
 * counts two offsets: `at`, the position in the caller's bytes, and `off`, the position in the
 * handshake message; every length in the message is checked against `off`, every record length
 * against `at`.
 *
 * Each helper returns MOAT_CH_OK to go on or the status that ends the parse. When the bytes run
 * out, the parse ends with NEED_MORE; every decision to refuse is made from bytes already read,
 * so a prefix of a good ClientHello is never refused, and a bad one is refused as soon as the
 * bad byte arrives.
 */
#include "tls/clienthello.h"

#include <string.h>

#define REC_HEADER 5  /* type(1) version(2) length(2) */
#define HS_HEADER 4   /* msg_type(1) length(3) */
#define REC_MAX 16384 /* RFC 8446 §5.1, RFC 5246 §6.2.1: a record's payload is <= 2^14 */
#define TYPE_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
/* legacy_version(2) random(32) session_id(1 + 0) cipher_suites(2 + 2) compression(1 + 1) */
#define BODY_MIN (2 + 32 + 1 + 4 + 2)
#define LABEL_MAX 63

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_PRE_SHARED_KEY 41
#define EXT_SUPPORTED_VERSIONS 43

#define STR_(x) #x
#define STR(x) STR_(x)
static const char too_large[] = "ClientHello larger than " STR(MOAT_CH_MAX) " bytes";

struct cur {
    const uint8_t *p; /* the caller's bytes, borrowed */
    size_t n;
    size_t at;      /* offset in p of the next handshake byte; of the next record header when
                       at == rec_end */
    size_t rec_end; /* offset in p just past the open record's payload; may be past n */
    size_t off;     /* handshake bytes read, the 4-byte message header included */
    size_t msg_end; /* the message's length with its header; 0 until the header is read */
    size_t nrec;    /* records opened */
    size_t mark;    /* offset in p where the field being read starts, for err_off */
    struct moat_ch_info *out;
};

#define TRY(call)                                                                                  \
    do {                                                                                           \
        enum moat_ch_status try__st = (call);                                                      \
        if (try__st != MOAT_CH_OK) {                                                               \
            return try__st;                                                                        \
        }                                                                                          \
    } while (0)

static enum moat_ch_status stop(struct cur *c, enum moat_ch_status st, size_t at, const char *why)
{
    c->out->reason = why;
    c->out->err_off = at;
    return st;
}

/* Refuse the field being read (err_off: where it starts). */
static enum moat_ch_status invalid(struct cur *c, const char *why)
{
    return stop(c, MOAT_CH_INVALID, c->mark, why);
}

/*
 * The bytes ran out at `at`. The rest of the message must still come: the open record's
 * remaining payload, then (if the message goes on past it) at least one more record header.
 * Until the message header is read its length is unknown, but no ClientHello is shorter than
 * its fixed fields. So `need` is a true lower bound, and exact when one record holds the rest.
 */
static enum moat_ch_status more(struct cur *c)
{
    size_t rem = (c->msg_end != 0 ? c->msg_end : HS_HEADER + BODY_MIN) - c->off;
    size_t in_rec = c->rec_end - c->at;
    size_t need = c->at + (rem <= in_rec ? rem : in_rec + REC_HEADER + (rem - in_rec));
    if (need > MOAT_CH_MAX) {
        return stop(c, MOAT_CH_INVALID, c->at, too_large);
    }
    c->out->need = need;
    return MOAT_CH_NEED_MORE;
}

/* Read the record header at c->at (the open record is used up). The first record decides
 * NOT_TLS, byte by byte as they arrive; a later bad record is INVALID. */
static enum moat_ch_status open_record(struct cur *c)
{
    const uint8_t *h = c->p + c->at;
    size_t avail = c->n - c->at;
    enum moat_ch_status bad = c->nrec == 0 ? MOAT_CH_NOT_TLS : MOAT_CH_INVALID;
    if (avail >= 1 && h[0] != TYPE_HANDSHAKE) {
        return stop(c, bad, c->at,
                    c->nrec == 0 ? "not a TLS handshake record (first byte is not 0x16)"
                                 : "a record other than handshake inside the ClientHello");
    }
    if (avail >= 2 && h[1] != 3) {
        return stop(c, bad, c->at + 1, "record version is not 3.x");
    }
    if (avail >= 3 && h[2] > 4) {
        return stop(c, bad, c->at + 2, "record version is above 3.4");
    }
    if (avail < REC_HEADER) {
        return more(c);
    }
    size_t len = (size_t)h[3] << 8 | h[4];
    if (len == 0) {
        return stop(c, MOAT_CH_INVALID, c->at, "an empty handshake record (RFC 8446 §5.1)");
    }
    if (len > REC_MAX) {
        return stop(c, MOAT_CH_INVALID, c->at, "a record longer than 2^14 bytes (RFC 8446 §5.1)");
    }
    if (c->at + REC_HEADER + len > MOAT_CH_MAX) {
        return stop(c, MOAT_CH_INVALID, c->at, too_large);
    }
    if (c->msg_end != 0 && len > c->msg_end - c->off) {
        return stop(c, MOAT_CH_INVALID, c->at,
                    "a record goes on past the end of the ClientHello (RFC 8446 §5.1)");
    }
    if (c->nrec == 0) {
        c->out->record_version = (uint16_t)(h[1] << 8 | h[2]);
    }
    c->nrec++;
    c->at += REC_HEADER;
    c->rec_end = c->at + len;
    return MOAT_CH_OK;
}

/* The next k handshake bytes, across records, copied to dst (skipped when dst is NULL). The
 * caller has checked that they lie inside the message. */
static enum moat_ch_status take(struct cur *c, size_t k, uint8_t *dst)
{
    c->mark = c->at;
    while (k > 0) {
        if (c->at == c->rec_end) {
            TRY(open_record(c));
        }
        if (c->at >= c->n) {
            return more(c);
        }
        size_t run = k;
        if (run > c->rec_end - c->at) {
            run = c->rec_end - c->at;
        }
        if (run > c->n - c->at) {
            run = c->n - c->at;
        }
        if (dst != NULL) {
            memcpy(dst, c->p + c->at, run);
            dst += run;
        }
        c->at += run;
        c->off += run;
        k -= run;
    }
    return MOAT_CH_OK;
}

/* Skip k bytes of a field that ends at message offset `end`; `why` when they overrun it. */
static enum moat_ch_status skip(struct cur *c, size_t k, size_t end, const char *why)
{
    c->mark = c->at;
    if (k > end - c->off) {
        return invalid(c, why);
    }
    return take(c, k, NULL);
}

/* A big-endian integer of k (1..4) bytes inside a field that ends at `end`. */
static enum moat_ch_status get(struct cur *c, size_t k, size_t end, const char *why, size_t *v)
{
    uint8_t b[4];
    c->mark = c->at;
    if (k > end - c->off) {
        return invalid(c, why);
    }
    TRY(take(c, k, b));
    *v = 0;
    for (size_t i = 0; i < k; i++) {
        *v = *v << 8 | b[i];
    }
    return MOAT_CH_OK;
}

/*
 * Check and normalise the `len` bytes of host name copied into out->sni: one trailing dot
 * dropped, labels of 1..63 letters, digits, '-' and '_', at most 253 bytes, lower case. The same
 * rule as the SNI table's (sni.c), so a name routed here is a name a terminating listener could
 * match.
 */
static enum moat_ch_status host_check(struct cur *c, size_t len)
{
    char *s = c->out->sni;
    if (s[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > MOAT_CH_HOST_MAX) {
        return invalid(c, "host_name is not a host name (empty or over 253 bytes)");
    }
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0) {
                return invalid(c, "host_name has an empty label");
            }
            label = 0;
            continue;
        }
        if (ch >= 'A' && ch <= 'Z') {
            s[i] = (char)(ch - 'A' + 'a');
        } else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                     ch == '_')) {
            return invalid(c, "host_name has a byte other than letters, digits, '-', '_', '.'");
        }
        if (++label > LABEL_MAX) {
            return invalid(c, "host_name has a label over 63 bytes");
        }
    }
    if (label == 0) {
        return invalid(c, "host_name has an empty label");
    }
    s[len] = '\0';
    c->out->sni_len = len;
    c->out->has_sni = 1;
    return MOAT_CH_OK;
}

/* RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>, each entry a name_type byte and,
 * for host_name (0), HostName<1..2^16-1>. No other name type is defined, so an entry of another
 * type has no known length and ends the reading: refused, as OpenSSL does. */
static enum moat_ch_status parse_server_name(struct cur *c, size_t end)
{
    size_t list;
    TRY(get(c, 2, end, "server_name extension shorter than its list length", &list));
    if (list != end - c->off) {
        return invalid(c, "server_name list length does not match its extension");
    }
    if (list == 0) {
        return invalid(c, "empty server_name list (RFC 6066 §3)");
    }
    while (c->off < end) {
        size_t type, len;
        TRY(get(c, 1, end, "server_name entry overruns its list", &type));
        if (type != 0) {
            return invalid(c, "server_name entry of a type other than host_name");
        }
        if (c->out->has_sni) {
            return invalid(c, "two host_name entries in server_name (RFC 6066 §3)");
        }
        TRY(get(c, 2, end, "server_name entry overruns its list", &len));
        if (len == 0) {
            return invalid(c, "empty host_name in server_name");
        }
        if (len > end - c->off) {
            return invalid(c, "host_name overruns the server_name list");
        }
        if (len > MOAT_CH_HOST_MAX + 1) {
            return invalid(c, "host_name longer than 253 bytes");
        }
        TRY(take(c, len, (uint8_t *)c->out->sni));
        TRY(host_check(c, len));
    }
    return MOAT_CH_OK;
}

/* RFC 7301 §3.1: ProtocolNameList protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1>. The
 * first names that fit are copied (in order: once one does not fit, none after it is kept). */
static enum moat_ch_status parse_alpn(struct cur *c, size_t end)
{
    struct moat_ch_info *out = c->out;
    size_t list;
    TRY(get(c, 2, end, "ALPN extension shorter than its list length", &list));
    if (list != end - c->off) {
        return invalid(c, "ALPN list length does not match its extension");
    }
    if (list == 0) {
        return invalid(c, "empty ALPN list (RFC 7301 §3.1)");
    }
    out->has_alpn = 1;
    while (c->off < end) {
        size_t len;
        TRY(get(c, 1, end, "ALPN name overruns its list", &len));
        if (len == 0) {
            return invalid(c, "empty ALPN protocol name (RFC 7301 §3.1)");
        }
        if (len > end - c->off) {
            return invalid(c, "ALPN protocol name overruns its list");
        }
        if (out->alpn_truncated || out->alpn_count == MOAT_CH_ALPN_MAX ||
            len + 1 > MOAT_CH_ALPN_BYTES - out->alpn_len) {
            out->alpn_truncated = 1;
            TRY(take(c, len, NULL));
            continue;
        }
        TRY(take(c, len, out->alpn + out->alpn_len + 1));
        out->alpn[out->alpn_len] = (uint8_t)len;
        out->alpn_len += 1 + len;
        out->alpn_count++;
    }
    return MOAT_CH_OK;
}

/* RFC 8446 §4.2.1: in a ClientHello, ProtocolVersion versions<2..254>. GREASE values (RFC 8701,
 * 0x?A?A) and drafts (0x7Fxx) are not 3.x, so they never count as the highest. */
static enum moat_ch_status parse_versions(struct cur *c, size_t end)
{
    struct moat_ch_info *out = c->out;
    size_t len;
    TRY(get(c, 1, end, "supported_versions extension is empty", &len));
    if (len != end - c->off) {
        return invalid(c, "supported_versions length does not match its extension");
    }
    if (len < 2 || len % 2 != 0) {
        return invalid(c, "supported_versions list empty or of odd length");
    }
    out->has_supported_versions = 1;
    while (c->off < end) {
        size_t v;
        TRY(get(c, 2, end, "supported_versions overruns its list", &v));
        if (v == 0x0304) {
            out->offers_tls13 = 1;
        }
        if ((v >> 8) == 3 && v > out->max_version) {
            out->max_version = (uint16_t)v;
        }
    }
    return MOAT_CH_OK;
}

static enum moat_ch_status parse_extensions(struct cur *c, size_t end)
{
    /* RFC 8446 §4.2: no extension type twice. One bit per type: 8 KiB of stack, cleared once
     * per call, against a walk of 4,000 extensions; cheaper than a pairwise check. */
    uint64_t seen[65536 / 64];
    memset(seen, 0, sizeof(seen));
    int psk = 0;
    while (c->off < end) {
        size_t h;
        TRY(get(c, 4, end, "extension header overruns the extensions", &h));
        size_t type = h >> 16, len = h & 0xffff;
        if (len > end - c->off) {
            return invalid(c, "extension overruns the extensions");
        }
        if (seen[type / 64] >> (type % 64) & 1) {
            return invalid(c, type == EXT_SERVER_NAME
                                  ? "two server_name extensions (RFC 8446 §4.2)"
                                  : "an extension type appears twice (RFC 8446 §4.2)");
        }
        seen[type / 64] |= (uint64_t)1 << (type % 64);
        if (psk) {
            return invalid(c, "pre_shared_key is not the last extension (RFC 8446 §4.2.11)");
        }
        size_t ext_end = c->off + len;
        switch (type) {
        case EXT_SERVER_NAME:
            TRY(parse_server_name(c, ext_end));
            break;
        case EXT_ALPN:
            TRY(parse_alpn(c, ext_end));
            break;
        case EXT_SUPPORTED_VERSIONS:
            TRY(parse_versions(c, ext_end));
            break;
        case EXT_PRE_SHARED_KEY:
            psk = 1;
            TRY(take(c, len, NULL));
            break;
        default:
            TRY(take(c, len, NULL));
            break;
        }
        MOAT_ASSERT(c->off == ext_end);
    }
    return MOAT_CH_OK;
}

/* RFC 8446 §4.1.2 (RFC 5246 §7.4.1.2 for the optional extensions). */
static enum moat_ch_status parse(struct cur *c)
{
    struct moat_ch_info *out = c->out;
    uint8_t h[HS_HEADER];
    TRY(take(c, 1, h));
    if (h[0] != HS_CLIENT_HELLO) {
        return invalid(c, "the first handshake message is not a ClientHello");
    }
    TRY(take(c, 3, h + 1));
    size_t body = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (body < BODY_MIN) {
        return invalid(c, "ClientHello too short for its fixed fields");
    }
    if (HS_HEADER + body > MOAT_CH_MAX - REC_HEADER) {
        return invalid(c, too_large);
    }
    c->msg_end = HS_HEADER + body;
    if (c->rec_end - c->at > c->msg_end - c->off) {
        return invalid(c, "a record goes on past the end of the ClientHello (RFC 8446 §5.1)");
    }
    size_t end = c->msg_end, v;
    TRY(get(c, 2, end, "ClientHello ends inside its version", &v));
    if ((v >> 8) != 3) {
        return invalid(c, "ClientHello version is not 3.x");
    }
    out->legacy_version = (uint16_t)v;
    TRY(skip(c, 32, end, "ClientHello ends inside its random"));
    TRY(get(c, 1, end, "ClientHello ends before its session ID", &v));
    if (v > 32) {
        return invalid(c, "session ID longer than 32 bytes");
    }
    TRY(skip(c, v, end, "ClientHello ends inside its session ID"));
    TRY(get(c, 2, end, "ClientHello ends before its cipher suites", &v));
    if (v < 2 || v % 2 != 0) {
        return invalid(c, "cipher suite list empty or of odd length");
    }
    TRY(skip(c, v, end, "ClientHello ends inside its cipher suites"));
    TRY(get(c, 1, end, "ClientHello ends before its compression methods", &v));
    if (v == 0) {
        return invalid(c, "no compression method");
    }
    TRY(skip(c, v, end, "ClientHello ends inside its compression methods"));
    if (c->off < end) {
        TRY(get(c, 2, end, "ClientHello ends inside its extensions length", &v));
        if (v != end - c->off) {
            return invalid(c, "extensions length does not match the ClientHello length");
        }
        TRY(parse_extensions(c, end));
    }
    if (!out->has_supported_versions) {
        out->max_version = out->legacy_version < 0x0303 ? out->legacy_version : 0x0303;
    }
    /* Every record was checked to end at or before the message's end: the last one ends
     * exactly there. */
    MOAT_ASSERT(c->off == c->msg_end && c->at == c->rec_end);
    out->hello_len = c->at;
    return MOAT_CH_OK;
}

enum moat_ch_status moat_ch_peek(const uint8_t *p, size_t n, struct moat_ch_info *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0) {
        out->need = REC_HEADER + HS_HEADER + BODY_MIN;
        return MOAT_CH_NEED_MORE;
    }
    if (p[0] & 0x80) {
        /* SSLv2 record: 2-byte header with the high bit set, then msg_type 1 (CLIENT-HELLO). */
        if (n < 3) {
            out->need = 3;
            return MOAT_CH_NEED_MORE;
        }
        out->reason = p[2] == 1 ? "SSLv2-compatible ClientHello not supported (no SNI, no ALPN)"
                                : "not a TLS handshake record (first byte is not 0x16)";
        out->err_off = p[2] == 1 ? 2 : 0;
        return p[2] == 1 ? MOAT_CH_INVALID : MOAT_CH_NOT_TLS;
    }
    struct cur c = {.p = p, .n = n, .out = out};
    enum moat_ch_status st = parse(&c);
    if (st != MOAT_CH_OK) {
        /* Half-filled fields would mislead: keep only what the status defines. */
        size_t need = out->need, err_off = out->err_off;
        const char *reason = out->reason;
        memset(out, 0, sizeof(*out));
        out->need = st == MOAT_CH_NEED_MORE ? need : 0;
        out->reason = st == MOAT_CH_NEED_MORE ? NULL : reason;
        out->err_off = st == MOAT_CH_NEED_MORE ? 0 : err_off;
    }
    return st;
}

moat_slice moat_ch_alpn_at(const struct moat_ch_info *ch, size_t i)
{
    size_t at = 0;
    while (at < ch->alpn_len) {
        size_t len = ch->alpn[at];
        if (i == 0) {
            return moat_slice_of((const char *)ch->alpn + at + 1, len);
        }
        i--;
        at += 1 + len;
    }
    return MOAT_SLICE_NULL;
}

int moat_ch_alpn_offers(const struct moat_ch_info *ch, const char *name, size_t len)
{
    moat_slice want = moat_slice_of(name, len);
    for (size_t i = 0; i < ch->alpn_count; i++) {
        if (moat_slice_eq(moat_ch_alpn_at(ch, i), want)) {
            return 1;
        }
    }
    return 0;
}

const char *moat_ch_status_name(enum moat_ch_status st)
{
    switch (st) {
    case MOAT_CH_OK:
        return "ok";
    case MOAT_CH_NEED_MORE:
        return "need_more";
    case MOAT_CH_NOT_TLS:
        return "not_tls";
    case MOAT_CH_INVALID:
        return "invalid";
    default:
        return "?";
    }
}
