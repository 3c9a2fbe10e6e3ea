/*
 * proxyproto.c: the PROXY protocol parser and builders (HAProxy's proxy-protocol.txt, v1 and v2).
 *
 * The parser keeps no state between calls: it reads the header again from its first byte each
 * time. A v1 line is at most 107 bytes and a v2 header rarely more than a few hundred, so a saved
 * state would cost more code than the re-read costs time. Checks run in the order the bytes
 * arrive and each one only looks at bytes that are there, so any prefix of an input gets either
 * NEED_MORE or the same answer as the whole input (tests/fuzz/fuzz_proxyproto.c checks this).
 */
#include "core/proxyproto.h"

#include <errno.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define V1_SIG_LEN 6 /* "PROXY " */
#define V1_MIN 15    /* "PROXY UNKNOWN\r\n", the shortest v1 line */
#define V2_SIG_LEN 12
#define TLV_HEAD 3        /* type, length (16 bits) */
#define SSL_HEAD 5        /* client (8 bits), verify (32 bits) */
#define UNIX_PATH_LEN 108 /* sun_path in a v2 AF_UNIX block */

static const char v1_sig[V1_SIG_LEN] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t v2_sig[V2_SIG_LEN] = {'\r', '\n', '\r', '\n', 0,   '\r',
                                           '\n', 'Q',  'U',  'I',  'T', '\n'};

_Static_assert(sizeof(((struct sockaddr_un *)0)->sun_path) >= UNIX_PATH_LEN,
               "a v2 AF_UNIX path must fit in sun_path");

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * CRC32c (Castagnoli: reflected polynomial 0x82F63B78, as RFC 4960 appendix B and the PROXY spec
 * §2.2.4 ask), four bits at a time: a 16-entry table is plenty for headers of a few hundred bytes
 * and, being const, needs no initialisation. A checksum against accidents, not a MAC.
 */
static const uint32_t crc32c_nibble[16] = {
    0x00000000u, 0x105ec76fu, 0x20bd8edeu, 0x30e349b1u, 0x417b1dbcu, 0x5125dad3u,
    0x61c69362u, 0x7198540du, 0x82f63b78u, 0x92a8fc17u, 0xa24bb5a6u, 0xb21572c9u,
    0xc38d26c4u, 0xd3d3e1abu, 0xe330a81au, 0xf36e6f75u,
};

/* Feed bytes into a running CRC (start with 0xffffffff, finish by inverting). */
static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc = (crc >> 4) ^ crc32c_nibble[(crc ^ p[i]) & 0xf];
        crc = (crc >> 4) ^ crc32c_nibble[(crc ^ (p[i] >> 4)) & 0xf];
    }
    return crc;
}

/* The checksum of hdr[0..n) with the 4 bytes at `field` read as zeros (spec §2.2.4). */
static uint32_t crc32c_header(const uint8_t *hdr, size_t n, size_t field)
{
    static const uint8_t zeros[4];
    uint32_t crc = crc32c_update(0xffffffffu, hdr, field);
    crc = crc32c_update(crc, zeros, sizeof(zeros));
    crc = crc32c_update(crc, hdr + field + 4, n - field - 4);
    return crc ^ 0xffffffffu;
}

static enum moat_pp_status need(struct moat_pp_result *out, size_t min, size_t max)
{
    out->need_min = min;
    out->need_max = max;
    return MOAT_PP_NEED_MORE;
}

static enum moat_pp_status invalid(struct moat_pp_result *out, const char *why)
{
    out->why = why;
    return MOAT_PP_INVALID;
}

/* ---- v1: one text line ---- */

/* 1-5 decimal digits, at most 65535 (spec §2.1: "a decimal integer in the range 0..65535"). */
static int v1_port(const uint8_t *p, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5) {
        return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v > 65535) {
        return 0;
    }
    *port = (uint16_t)v;
    return 1;
}

/* An address of the line's family as inet_pton reads it: a strict dotted quad for TCP4 (no
 * leading zeros, four parts), RFC 4291 text for TCP6. */
static int v1_addr(int af, const uint8_t *p, size_t n, uint16_t port, struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text) || memchr(p, '\0', n) != NULL) {
        return 0;
    }
    memcpy(text, p, n);
    text[n] = '\0';
    if (af == AF_INET) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        if (inet_pton(AF_INET, text, &sin.sin_addr) != 1) {
            return 0;
        }
        memcpy(ss, &sin, sizeof(sin));
        return 1;
    }
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (inet_pton(AF_INET6, text, &sin6.sin6_addr) != 1) {
        return 0;
    }
    memcpy(ss, &sin6, sizeof(sin6));
    return 1;
}

/* "TCP4 "/"TCP6 " is followed by exactly four fields, each after exactly one space. */
static enum moat_pp_status v1_fields(const uint8_t *s, const uint8_t *end, int af,
                                     struct moat_pp_result *out)
{
    const uint8_t *field[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) {
        const uint8_t *sp = memchr(s, ' ', (size_t)(end - s));
        if (i < 3 && sp == NULL) {
            return invalid(out, "v1 line has too few fields");
        }
        if (i == 3 && sp != NULL) {
            return invalid(out, "v1 line has too many fields or a trailing space");
        }
        const uint8_t *e = sp != NULL ? sp : end;
        if (e == s) {
            return invalid(out, "v1 fields must be separated by exactly one space");
        }
        field[i] = s;
        len[i] = (size_t)(e - s);
        s = e + 1;
    }
    uint16_t sport, dport;
    int sport_ok = v1_port(field[2], len[2], &sport);
    int dport_ok = v1_port(field[3], len[3], &dport);
    /* Report the first bad field in line order. */
    if (!v1_addr(af, field[0], len[0], sport_ok ? sport : 0, &out->src)) {
        return invalid(out, "bad v1 source address");
    }
    if (!v1_addr(af, field[1], len[1], dport_ok ? dport : 0, &out->dst)) {
        return invalid(out, "bad v1 destination address");
    }
    if (!sport_ok) {
        return invalid(out, "bad v1 source port (not a decimal number 0-65535)");
    }
    if (!dport_ok) {
        return invalid(out, "bad v1 destination port (not a decimal number 0-65535)");
    }
    out->command = MOAT_PP_CMD_PROXY;
    out->family = af == AF_INET ? MOAT_PP_FAM_INET : MOAT_PP_FAM_INET6;
    out->transport = MOAT_PP_PROTO_STREAM;
    return MOAT_PP_OK;
}

/* p[0..6) is "PROXY ". */
static enum moat_pp_status parse_v1(const uint8_t *p, size_t n, struct moat_pp_result *out)
{
    out->version = 1;
    /* The protocol word, refused as soon as its bytes cannot start one of these. */
    static const char *const words[] = {"TCP4 ", "TCP6 ", "UNKNOWN ", "UNKNOWN\r"};
    size_t avail = n - V1_SIG_LEN;
    int word_ok = 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]) && !word_ok; i++) {
        size_t k = min_size(avail, strlen(words[i]));
        word_ok = memcmp(p + V1_SIG_LEN, words[i], k) == 0;
    }
    if (!word_ok) {
        return invalid(out, "bad v1 protocol (TCP4, TCP6 or UNKNOWN expected)");
    }

    /* The line ends at its first CR, which must come with its LF within 107 bytes: a CR at
     * offset 106 or later would already make it too long. */
    size_t lim = min_size(n, MOAT_PP_V1_MAX - 1);
    const uint8_t *cr = memchr(p + V1_SIG_LEN, '\r', lim - V1_SIG_LEN);
    if (cr == NULL) {
        if (n >= MOAT_PP_V1_MAX - 1) {
            return invalid(out, "v1 line longer than 107 bytes");
        }
        /* No CR in n bytes: CR and LF are still to come. */
        return need(out, max_size(V1_MIN, n + 2) - n, MOAT_PP_V1_MAX - n);
    }
    size_t eol = (size_t)(cr - p);
    if (eol + 1 == n) {
        return need(out, 1, 1);
    }
    if (p[eol + 1] != '\n') {
        return invalid(out, "v1 CR not followed by LF");
    }
    out->consumed = eol + 2;

    const uint8_t *w = p + V1_SIG_LEN, *end = p + eol;
    if (memcmp(w, "UNKNOWN", 7) == 0) {
        /* §2.1: the rest of the line is ignored and the connection's own addresses are used.
         * v2 says the same with PROXY + AF_UNSPEC, so report it that way. */
        out->command = MOAT_PP_CMD_PROXY;
        return MOAT_PP_OK;
    }
    int af = w[3] == '4' ? AF_INET : AF_INET6;
    return v1_fields(w + 5, end, af, out);
}

/* ---- v2: binary ---- */

/* The address block of a PROXY v2 header: sockaddrs of its family. */
static void v2_addrs(const uint8_t *a, enum moat_pp_family fam, struct moat_pp_result *out)
{
    switch (fam) {
    case MOAT_PP_FAM_INET: {
        struct sockaddr_in s = {.sin_family = AF_INET}, d = {.sin_family = AF_INET};
        memcpy(&s.sin_addr, a, 4);
        memcpy(&d.sin_addr, a + 4, 4);
        memcpy(&s.sin_port, a + 8, 2); /* both in network order */
        memcpy(&d.sin_port, a + 10, 2);
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
        break;
    }
    case MOAT_PP_FAM_INET6: {
        struct sockaddr_in6 s = {.sin6_family = AF_INET6}, d = {.sin6_family = AF_INET6};
        memcpy(&s.sin6_addr, a, 16);
        memcpy(&d.sin6_addr, a + 16, 16);
        memcpy(&s.sin6_port, a + 32, 2);
        memcpy(&d.sin6_port, a + 34, 2);
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
        break;
    }
    case MOAT_PP_FAM_UNIX: {
        struct sockaddr_un s = {.sun_family = AF_UNIX}, d = {.sun_family = AF_UNIX};
        memcpy(s.sun_path, a, UNIX_PATH_LEN);
        memcpy(d.sun_path, a + UNIX_PATH_LEN, UNIX_PATH_LEN);
        memcpy(&out->src, &s, sizeof(s));
        memcpy(&out->dst, &d, sizeof(d));
        break;
    }
    case MOAT_PP_FAM_UNSPEC:
    default:
        break;
    }
}

/* Every TLV in p[off..end) whole, SSL ones with whole sub-TLVs, at most one CRC32c (its value's
 * offset into *crc_at, 0 when there is none). NULL or what is wrong. */
static const char *v2_tlvs(const uint8_t *p, size_t off, size_t end, size_t *crc_at)
{
    *crc_at = 0;
    while (off < end) {
        if (end - off < TLV_HEAD) {
            return "v2 TLV overflows the header (truncated TLV header)";
        }
        uint8_t type = p[off];
        size_t len = (size_t)p[off + 1] << 8 | p[off + 2];
        size_t v = off + TLV_HEAD;
        if (len > end - v) {
            return "v2 TLV overflows the header";
        }
        switch (type) {
        case MOAT_PP2_TYPE_CRC32C:
            if (len != 4) {
                return "v2 CRC32c TLV is not 4 bytes";
            }
            if (*crc_at != 0) {
                return "v2 header has two CRC32c TLVs";
            }
            *crc_at = v;
            break;
        case MOAT_PP2_TYPE_SSL: {
            if (len < SSL_HEAD) {
                return "v2 SSL TLV shorter than 5 bytes";
            }
            size_t sub = v + SSL_HEAD, sub_end = v + len;
            while (sub < sub_end) {
                if (sub_end - sub < TLV_HEAD ||
                    ((size_t)p[sub + 1] << 8 | p[sub + 2]) > sub_end - sub - TLV_HEAD) {
                    return "v2 SSL sub-TLV overflows its TLV";
                }
                sub += TLV_HEAD + ((size_t)p[sub + 1] << 8 | p[sub + 2]);
            }
            break;
        }
        default:
            break;
        }
        off = v + len;
    }
    return NULL;
}

/* p[0..12) is the v2 signature. */
static enum moat_pp_status parse_v2(const uint8_t *p, size_t n, size_t max_len,
                                    struct moat_pp_result *out)
{
    out->version = 2;
    /* Past this many bytes the answer is known: the length field decides at 16 bytes, and a
     * header longer than max_len is refused then. */
    size_t decided = max_size(MOAT_PP_V2_HEAD, min_size(max_len, MOAT_PP_V2_MAX));
    if (n <= V2_SIG_LEN) {
        return need(out, MOAT_PP_V2_HEAD - n, decided - n);
    }
    if ((p[12] >> 4) != 2) {
        return invalid(out, "unsupported version (v2 signature, version not 2)");
    }
    unsigned cmd = p[12] & 0xfu;
    if (cmd > 1) {
        return invalid(out, "v2 command is neither LOCAL nor PROXY");
    }
    if (n < 14) {
        return need(out, MOAT_PP_V2_HEAD - n, decided - n);
    }
    size_t addr_len;
    enum moat_pp_family fam;
    enum moat_pp_transport tr;
    switch (p[13]) {
    case 0x00:
        addr_len = 0, fam = MOAT_PP_FAM_UNSPEC, tr = MOAT_PP_PROTO_UNSPEC;
        break;
    case 0x11:
        addr_len = 12, fam = MOAT_PP_FAM_INET, tr = MOAT_PP_PROTO_STREAM;
        break;
    case 0x12:
        addr_len = 12, fam = MOAT_PP_FAM_INET, tr = MOAT_PP_PROTO_DGRAM;
        break;
    case 0x21:
        addr_len = 36, fam = MOAT_PP_FAM_INET6, tr = MOAT_PP_PROTO_STREAM;
        break;
    case 0x22:
        addr_len = 36, fam = MOAT_PP_FAM_INET6, tr = MOAT_PP_PROTO_DGRAM;
        break;
    case 0x31:
        addr_len = 2 * UNIX_PATH_LEN, fam = MOAT_PP_FAM_UNIX, tr = MOAT_PP_PROTO_STREAM;
        break;
    case 0x32:
        addr_len = 2 * UNIX_PATH_LEN, fam = MOAT_PP_FAM_UNIX, tr = MOAT_PP_PROTO_DGRAM;
        break;
    default:
        /* §2.2: "other values ... must be rejected as invalid by receivers". */
        return invalid(out, "v2 unknown address family/protocol");
    }
    if (n < MOAT_PP_V2_HEAD) {
        return need(out, MOAT_PP_V2_HEAD - n, decided - n);
    }
    size_t total = MOAT_PP_V2_HEAD + ((size_t)p[14] << 8 | p[15]);
    if (total > max_len) {
        return invalid(out, "v2 header longer than the configured limit");
    }
    if (cmd == 1 && total - MOAT_PP_V2_HEAD < addr_len) {
        return invalid(out, "v2 family/length mismatch (length too short for the addresses)");
    }
    if (n < total) {
        return need(out, total - n, total - n);
    }

    size_t tlv_off = MOAT_PP_V2_HEAD + addr_len;
    if (cmd == 1) {
        v2_addrs(p + MOAT_PP_V2_HEAD, fam, out);
        out->command = MOAT_PP_CMD_PROXY;
        out->family = fam;
        out->transport = tr;
    } else if (tlv_off > total) {
        /* LOCAL: §2.2 says to discard the address block, family included; TLVs are read only
         * where a block of the family's size would end (HAProxy sends UNSPEC + TLVs). */
        tlv_off = total;
    }
    size_t crc_at;
    const char *why = v2_tlvs(p, tlv_off, total, &crc_at);
    if (why != NULL) {
        return invalid(out, why);
    }
    if (crc_at != 0 && crc32c_header(p, total, crc_at) != get_be32(p + crc_at)) {
        return invalid(out, "v2 CRC32c mismatch");
    }
    out->tlv_off = tlv_off;
    out->tlv_len = total - tlv_off;
    out->consumed = total;
    return MOAT_PP_OK;
}

enum moat_pp_status moat_pp_parse(const uint8_t *p, size_t n, size_t max_len,
                                  struct moat_pp_result *out)
{
    memset(out, 0, sizeof(*out));
    size_t v2_decided = max_size(MOAT_PP_V2_HEAD, min_size(max_len, MOAT_PP_V2_MAX));
    if (n == 0) {
        return need(out, V1_MIN, max_size(MOAT_PP_V1_MAX, v2_decided));
    }
    /* The signatures differ in their first byte, so this decides from byte one. */
    if (p[0] == 'P') {
        if (memcmp(p, v1_sig, min_size(n, V1_SIG_LEN)) != 0) {
            return MOAT_PP_NOT_PROXY;
        }
        if (n < V1_SIG_LEN) {
            return need(out, V1_MIN - n, MOAT_PP_V1_MAX - n);
        }
        return parse_v1(p, n, out);
    }
    if (memcmp(p, v2_sig, min_size(n, V2_SIG_LEN)) != 0) {
        return MOAT_PP_NOT_PROXY;
    }
    if (n < V2_SIG_LEN) {
        return need(out, MOAT_PP_V2_HEAD - n, v2_decided - n);
    }
    return parse_v2(p, n, max_len, out);
}

/* ---- TLVs ---- */

void moat_pp_tlv_iter_init(struct moat_pp_tlv_iter *it, const uint8_t *hdr,
                           const struct moat_pp_result *r)
{
    if (hdr == NULL || r->tlv_len == 0) {
        it->_p = it->_end = NULL;
        return;
    }
    it->_p = hdr + r->tlv_off;
    it->_end = it->_p + r->tlv_len;
}

int moat_pp_tlv_next(struct moat_pp_tlv_iter *it, struct moat_pp_tlv *out)
{
    if (it->_p == NULL || it->_end - it->_p < TLV_HEAD) {
        return 0;
    }
    size_t len = (size_t)it->_p[1] << 8 | it->_p[2];
    if (len > (size_t)(it->_end - it->_p) - TLV_HEAD) {
        it->_p = it->_end;
        return 0;
    }
    out->type = it->_p[0];
    out->value = it->_p + TLV_HEAD;
    out->len = len;
    it->_p += TLV_HEAD + len;
    return 1;
}

int moat_pp_tlv_find(const uint8_t *hdr, const struct moat_pp_result *r, uint8_t type,
                     struct moat_pp_tlv *out)
{
    struct moat_pp_tlv_iter it;
    moat_pp_tlv_iter_init(&it, hdr, r);
    while (moat_pp_tlv_next(&it, out)) {
        if (out->type == type) {
            return 1;
        }
    }
    return 0;
}

int moat_pp_tlv_ssl(const struct moat_pp_tlv *ssl, uint8_t *client, uint32_t *verify,
                    struct moat_pp_tlv_iter *sub)
{
    if (ssl->type != MOAT_PP2_TYPE_SSL || ssl->len < SSL_HEAD) {
        return 0;
    }
    if (client != NULL) {
        *client = ssl->value[0];
    }
    if (verify != NULL) {
        *verify = get_be32(ssl->value + 1);
    }
    if (sub != NULL) {
        sub->_p = ssl->value + SSL_HEAD;
        sub->_end = ssl->value + ssl->len;
    }
    return 1;
}

/* ---- builders ---- */

enum ends_kind {
    ENDS_LOCAL = 0, /* an end is missing */
    ENDS_INET,      /* both IPv4 */
    ENDS_INET6,     /* IPv6, or one of each (IPv4 mapped) */
    ENDS_OTHER,     /* a family PROXY cannot carry for us */
};

struct ends {
    uint8_t src[16], dst[16]; /* 4 bytes used for ENDS_INET */
    uint8_t sport[2], dport[2];
};

/* The address (as 4 bytes, or 16 with IPv4 mapped when v6) and port of an INET/INET6 end. */
static void end_of(const struct sockaddr *sa, int v6, uint8_t *addr, uint8_t *port)
{
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        if (v6) {
            memset(addr, 0, 10);
            addr[10] = addr[11] = 0xff;
            addr += 12;
        }
        memcpy(addr, &sin.sin_addr, 4);
        memcpy(port, &sin.sin_port, 2);
        return;
    }
    struct sockaddr_in6 sin6;
    memcpy(&sin6, sa, sizeof(sin6));
    memcpy(addr, &sin6.sin6_addr, 16);
    memcpy(port, &sin6.sin6_port, 2);
}

static enum ends_kind ends_of(const struct sockaddr *src, const struct sockaddr *dst,
                              struct ends *e)
{
    if (src == NULL || dst == NULL) {
        return ENDS_LOCAL;
    }
    int sf = src->sa_family, df = dst->sa_family;
    if ((sf != AF_INET && sf != AF_INET6) || (df != AF_INET && df != AF_INET6)) {
        return ENDS_OTHER;
    }
    int v6 = sf == AF_INET6 || df == AF_INET6;
    end_of(src, v6, e->src, e->sport);
    end_of(dst, v6, e->dst, e->dport);
    return v6 ? ENDS_INET6 : ENDS_INET;
}

static uint8_t *put_tlv(uint8_t *w, uint8_t type, const void *value, size_t len)
{
    w[0] = type;
    w[1] = (uint8_t)(len >> 8);
    w[2] = (uint8_t)len;
    if (len > 0) {
        memcpy(w + TLV_HEAD, value, len);
    }
    return w + TLV_HEAD + len;
}

size_t moat_pp_v2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
                        const struct sockaddr *dst, moat_slice authority, moat_slice alpn,
                        unsigned flags)
{
    struct ends e;
    enum ends_kind kind = ends_of(src, dst, &e);
    size_t body = kind == ENDS_INET ? 12 : kind == ENDS_INET6 ? 36 : 0;
    if (alpn.len > 0xffff || authority.len > 0xffff) {
        return 0;
    }
    body += alpn.len > 0 ? TLV_HEAD + alpn.len : 0;
    body += authority.len > 0 ? TLV_HEAD + authority.len : 0;
    body += (flags & MOAT_PP_V2_CRC32C) ? TLV_HEAD + 4 : 0;
    if (body > 0xffff || cap < MOAT_PP_V2_HEAD || body > cap - MOAT_PP_V2_HEAD) {
        return 0;
    }
    memcpy(out, v2_sig, V2_SIG_LEN);
    out[12] = kind == ENDS_LOCAL ? 0x20 : 0x21;
    out[13] = kind == ENDS_INET ? 0x11 : kind == ENDS_INET6 ? 0x21 : 0x00;
    out[14] = (uint8_t)(body >> 8);
    out[15] = (uint8_t)body;
    uint8_t *w = out + MOAT_PP_V2_HEAD;
    if (kind == ENDS_INET || kind == ENDS_INET6) {
        size_t a = kind == ENDS_INET ? 4 : 16;
        memcpy(w, e.src, a);
        memcpy(w + a, e.dst, a);
        memcpy(w + 2 * a, e.sport, 2);
        memcpy(w + 2 * a + 2, e.dport, 2);
        w += 2 * a + 4;
    }
    if (alpn.len > 0) {
        w = put_tlv(w, MOAT_PP2_TYPE_ALPN, alpn.p, alpn.len);
    }
    if (authority.len > 0) {
        w = put_tlv(w, MOAT_PP2_TYPE_AUTHORITY, authority.p, authority.len);
    }
    size_t total = MOAT_PP_V2_HEAD + body;
    if (flags & MOAT_PP_V2_CRC32C) {
        static const uint8_t zeros[4];
        size_t field = (size_t)(w - out) + TLV_HEAD;
        w = put_tlv(w, MOAT_PP2_TYPE_CRC32C, zeros, sizeof(zeros));
        put_be32(out + field, crc32c_header(out, total, field));
    }
    return total;
}

size_t moat_pp_v1_build(char *out, size_t cap, const struct sockaddr *src,
                        const struct sockaddr *dst)
{
    struct ends e;
    enum ends_kind kind = ends_of(src, dst, &e);
    char line[MOAT_PP_V1_MAX + 1];
    int len;
    if (kind == ENDS_INET || kind == ENDS_INET6) {
        int af = kind == ENDS_INET ? AF_INET : AF_INET6;
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        if (inet_ntop(af, e.src, s, sizeof(s)) == NULL ||
            inet_ntop(af, e.dst, d, sizeof(d)) == NULL) {
            return 0;
        }
        len = snprintf(
            line, sizeof(line), "PROXY %s %s %s %u %u\r\n", kind == ENDS_INET ? "TCP4" : "TCP6", s,
            d, (unsigned)e.sport[0] << 8 | e.sport[1], (unsigned)e.dport[0] << 8 | e.dport[1]);
    } else {
        len = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    }
    if (len < 0 || (size_t)len >= sizeof(line) || (size_t)len > cap) {
        return 0;
    }
    memcpy(out, line, (size_t)len);
    return (size_t)len;
}

/* ---- text for logs ---- */

/* "unix:/path", "unix:@abstract"; the path ends at its first NUL (or at 108 bytes); an abstract
 * name (first byte NUL) at its last non-NUL byte, since v2 pads it to 108 bytes. */
static int unix_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    struct sockaddr_un su;
    memcpy(&su, ss, sizeof(su));
    const char *path = su.sun_path;
    size_t max = min_size(sizeof(su.sun_path), UNIX_PATH_LEN), from = 0, to;
    char text[5 + 1 + UNIX_PATH_LEN + 1];
    size_t k = 0;
    memcpy(text, "unix:", 5);
    k = 5;
    if (path[0] == '\0') {
        text[k++] = '@';
        from = 1;
        to = max;
        while (to > from && path[to - 1] == '\0') {
            to--;
        }
    } else {
        const char *nul = memchr(path, '\0', max);
        to = nul != NULL ? (size_t)(nul - path) : max;
    }
    for (size_t i = from; i < to; i++) {
        unsigned char c = (unsigned char)path[i];
        text[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    text[k] = '\0';
    return snprintf(out, cap, "%s", text);
}

size_t moat_pp_addr_format(const struct sockaddr_storage *ss, int with_port, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    int len = -1;
    switch (ss->ss_family) {
    case AF_INET: {
        struct sockaddr_in sin;
        memcpy(&sin, ss, sizeof(sin));
        if (inet_ntop(AF_INET, &sin.sin_addr, a, sizeof(a)) == NULL) {
            break;
        }
        len = with_port ? snprintf(out, cap, "%s:%u", a, (unsigned)ntohs(sin.sin_port))
                        : snprintf(out, cap, "%s", a);
        break;
    }
    case AF_INET6: {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, ss, sizeof(sin6));
        if (inet_ntop(AF_INET6, &sin6.sin6_addr, a, sizeof(a)) == NULL) {
            break;
        }
        len = with_port ? snprintf(out, cap, "[%s]:%u", a, (unsigned)ntohs(sin6.sin6_port))
                        : snprintf(out, cap, "%s", a);
        break;
    }
    case AF_UNIX:
        len = unix_text(ss, out, cap);
        break;
    default:
        break;
    }
    if (len < 0 || (size_t)len >= cap) {
        if (cap > 0) {
            out[0] = '\0';
        }
        return 0;
    }
    return (size_t)len;
}

int moat_pp_take(int fd, struct moat_pp_result *out, const char **why)
{
    uint8_t buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return 0;
    }
    if (n <= 0) {
        *why = "the peer closed before sending one";
        return -1;
    }
    enum moat_pp_status st = moat_pp_parse(buf, (size_t)n, sizeof(buf), out);
    if (st == MOAT_PP_NEED_MORE && (size_t)n < sizeof(buf)) {
        return 0; /* the rest comes with a new edge */
    }
    if (st != MOAT_PP_OK || out->transport == MOAT_PP_PROTO_DGRAM) {
        *why = st == MOAT_PP_NOT_PROXY   ? "none (is the balancer sending it?)"
               : st == MOAT_PP_INVALID   ? out->why
               : st == MOAT_PP_NEED_MORE ? "a header longer than 1 KiB"
                                         : "a UDP header on a TCP listener";
        return -1;
    }
    if (recv(fd, buf, out->consumed, 0) != (ssize_t)out->consumed) {
        *why = "a header the socket would not give back";
        return -1;
    }
    return 1;
}
