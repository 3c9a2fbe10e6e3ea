/*
 * proxyproto.h: the PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2), the header a
 * load balancer puts in front of a TCP connection to say who the client really was.
 *
 * The listener side is one pure, incremental parser: the caller reads what the socket has into a
 * buffer and calls moat_pp_parse() on all of it again after each read. It says, as early as the
 * bytes allow, whether this is a PROXY header at all (a TLS ClientHello or "GET /" is refused from
 * its first byte), whether more bytes are needed, or what the header says. The proxy side builds
 * v2 (and v1) headers for an upstream. No I/O, no allocation, no globals; libc only.
 *
 * Only accept PROXY headers from peers configured as trusted (core/cidr.h): whoever may send one
 * may claim any client address.
 */
#ifndef MOAT_CORE_PROXYPROTO_H
#define MOAT_CORE_PROXYPROTO_H

#include "core/slice.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MOAT_PP_V1_MAX 107          /* longest v1 line, CRLF included (spec §2.1) */
#define MOAT_PP_V2_HEAD 16          /* signature, version/command, family, length */
#define MOAT_PP_V2_MAX (16 + 65535) /* longest v2 header the length field can describe */
#define MOAT_PP_ADDR_STRLEN 128     /* room for any moat_pp_addr_format() text, NUL included */

/* v2 TLV types (spec §2.2). Sub-types live inside a PP2_TYPE_SSL value. */
#define MOAT_PP2_TYPE_ALPN 0x01      /* the negotiated application protocol, e.g. "h2" */
#define MOAT_PP2_TYPE_AUTHORITY 0x02 /* host name the client asked for (TLS SNI), UTF-8 */
#define MOAT_PP2_TYPE_CRC32C 0x03    /* checksum of the whole header; verified by the parser */
#define MOAT_PP2_TYPE_NOOP 0x04      /* padding */
#define MOAT_PP2_TYPE_UNIQUE_ID 0x05 /* opaque connection id, at most 128 bytes */
#define MOAT_PP2_TYPE_SSL 0x20       /* see moat_pp_tlv_ssl() */
#define MOAT_PP2_SUBTYPE_SSL_VERSION 0x21
#define MOAT_PP2_SUBTYPE_SSL_CN 0x22
#define MOAT_PP2_SUBTYPE_SSL_CIPHER 0x23
#define MOAT_PP2_SUBTYPE_SSL_SIG_ALG 0x24
#define MOAT_PP2_SUBTYPE_SSL_KEY_ALG 0x25
#define MOAT_PP2_TYPE_NETNS 0x30
#define MOAT_PP2_CLIENT_SSL 0x01       /* SSL TLV `client` bits */
#define MOAT_PP2_CLIENT_CERT_CONN 0x02 /* a certificate was sent on this connection */
#define MOAT_PP2_CLIENT_CERT_SESS 0x04 /* ... or on the session it resumed */

enum moat_pp_status {
    MOAT_PP_OK = 0,    /* a whole header: see the result */
    MOAT_PP_NEED_MORE, /* a valid prefix so far: read more and call again with all the bytes */
    MOAT_PP_NOT_PROXY, /* the bytes cannot start either signature (TLS, HTTP...) */
    MOAT_PP_INVALID,   /* it starts like a PROXY header but breaks the spec: close */
};

enum moat_pp_command {
    MOAT_PP_CMD_LOCAL = 0, /* v2 LOCAL: the proxy's own connection (health check) */
    MOAT_PP_CMD_PROXY,     /* on behalf of a client */
};

enum moat_pp_family {
    MOAT_PP_FAM_UNSPEC = 0, /* no addresses: use the connection's own (LOCAL, v1 UNKNOWN) */
    MOAT_PP_FAM_INET,       /* src/dst are sockaddr_in */
    MOAT_PP_FAM_INET6,      /* src/dst are sockaddr_in6 */
    MOAT_PP_FAM_UNIX,       /* src/dst are sockaddr_un (v2 only; no ports); sun_path holds the
                               108 bytes as sent, not NUL-terminated when all are used */
};

enum moat_pp_transport {
    MOAT_PP_PROTO_UNSPEC = 0, /* with MOAT_PP_FAM_UNSPEC */
    MOAT_PP_PROTO_STREAM,     /* TCP (always, for v1) */
    MOAT_PP_PROTO_DGRAM,      /* UDP: parsed, but a TCP listener should refuse it */
};

/*
 * What moat_pp_parse() found. Which fields mean something depends on the status:
 *   OK:        everything but need_min, need_max and why.
 *   NEED_MORE: need_min, need_max (and version once known).
 *   INVALID:   why (and version once known).
 * Invariant on OK: family == MOAT_PP_FAM_UNSPEC iff src/dst are AF_UNSPEC (all zero); LOCAL
 * always reports MOAT_PP_FAM_UNSPEC (the spec says its address block is ignored); v1 "UNKNOWN"
 * is command PROXY with family UNSPEC, as v2's PROXY + AF_UNSPEC. So "use the real connection
 * addresses" is simply: family == MOAT_PP_FAM_UNSPEC.
 */
struct moat_pp_result {
    size_t consumed; /* OK: header length in bytes; the stream's own data starts here */
    size_t need_min; /* NEED_MORE: a valid header is at least this many bytes longer; reading
                        at most this many more never reads past its end */
    size_t need_max; /* NEED_MORE: after at most this many more bytes the answer is decided */
    const char *why; /* INVALID: what is wrong, static text ("v2 CRC32c mismatch") */
    int version;     /* 1 or 2; 0 while the signature is not complete */
    enum moat_pp_command command;
    enum moat_pp_family family;
    enum moat_pp_transport transport;
    struct sockaddr_storage src; /* the client, port in network order as in any sockaddr */
    struct sockaddr_storage dst; /* the address the client connected to on the proxy */
    size_t tlv_off;              /* v2: TLV region [tlv_off, tlv_off + tlv_len) of the input, */
    size_t tlv_len;              /* structure already checked; 0, 0 for v1 */
};

/*
 * Parse a PROXY header (v1 or v2) at the start of p[0..n): the bytes read from the connection
 * so far. Call again with all the bytes (not just the new ones) after each read; nothing is kept
 * between calls. NOT_PROXY is decided from the first byte that differs from both signatures
 * ("PROXY " and \r\n\r\n\0\r\nQUIT\n), so a TLS record or an HTTP request is told apart at
 * once, and a prefix that got NEED_MORE never becomes NOT_PROXY later.
 *
 * Strict as the spec asks: v1 at most 107 bytes with CRLF, fields separated by one space,
 * TCP4/TCP6 addresses as inet_pton reads them in that family, ports 0-65535 in decimal (1-5
 * digits), anything after "UNKNOWN " ignored; v2 version 2, command LOCAL or PROXY, one of the
 * seven defined family/protocol bytes, a length that holds the family's addresses (for PROXY),
 * whole TLVs (and whole sub-TLVs in an SSL TLV), at most one CRC32c TLV, and it must match.
 * `max_len` caps a whole v2 header (pass MOAT_PP_V2_MAX for the spec's limit); a longer one is
 * INVALID as soon as its length field is read. v1 is bounded by the spec instead.
 *
 * Always fills *out (zeroed first). Returns the status; the result never points into p, but
 * tlv_off/tlv_len are offsets into it.
 */
enum moat_pp_status moat_pp_parse(const uint8_t *p, size_t n, size_t max_len,
                                  struct moat_pp_result *out);

/* One TLV; `value` points into the bytes that were parsed. */
struct moat_pp_tlv {
    uint8_t type;
    const uint8_t *value;
    size_t len;
};

struct moat_pp_tlv_iter {
    const uint8_t *_p;   /* next TLV */
    const uint8_t *_end; /* end of the region */
};

/* Walk the TLVs of a header that moat_pp_parse() returned OK for (hdr is the same bytes). */
void moat_pp_tlv_iter_init(struct moat_pp_tlv_iter *it, const uint8_t *hdr,
                           const struct moat_pp_result *r);
/* The next TLV into *out: 1, or 0 at the end (or if the rest does not hold a whole TLV, which
 * cannot happen in a region the parser accepted). */
int moat_pp_tlv_next(struct moat_pp_tlv_iter *it, struct moat_pp_tlv *out);
/* The first TLV of `type` in the header: 1 and *out, or 0 when there is none. */
int moat_pp_tlv_find(const uint8_t *hdr, const struct moat_pp_result *r, uint8_t type,
                     struct moat_pp_tlv *out);
/* Read a PP2_TYPE_SSL value: its client bits (MOAT_PP2_CLIENT_*), its verify result (0: the
 * client certificate was verified) and an iterator over its sub-TLVs (MOAT_PP2_SUBTYPE_*).
 * Returns 0 if `ssl` is not an SSL TLV of at least 5 bytes. */
int moat_pp_tlv_ssl(const struct moat_pp_tlv *ssl, uint8_t *client, uint32_t *verify,
                    struct moat_pp_tlv_iter *sub);

/* Flags for moat_pp_v2_build(). */
#define MOAT_PP_V2_CRC32C 0x1u /* add a PP2_TYPE_CRC32C TLV */

/*
 * Build a v2 header into out[0..cap) for a connection to an upstream; returns its length, or 0
 * if it does not fit in cap (or a TLV or the whole header exceeds the 16-bit lengths).
 *   - src == NULL or dst == NULL: LOCAL (the upstream uses the connection's own addresses);
 *   - both AF_INET: PROXY TCP4;
 *   - AF_INET6, or one of each: PROXY TCP6, the IPv4 one written as ::ffff:a.b.c.d, so no
 *     address is lost (HAProxy does the same);
 *   - any other family (AF_UNIX...): PROXY with AF_UNSPEC, no addresses ("unknown client").
 * authority (usually the TLS SNI) and alpn (the negotiated protocol, "h2") become TLVs when
 * their len is not 0; they are copied, not kept.
 */
size_t moat_pp_v2_build(uint8_t *out, size_t cap, const struct sockaddr *src,
                        const struct sockaddr *dst, moat_slice authority, moat_slice alpn,
                        unsigned flags);

/* The same as a v1 line ("PROXY TCP4 a b sport dport\r\n", no NUL written); families as for
 * v2, except that LOCAL and unknown families both give "PROXY UNKNOWN\r\n". Returns its length
 * or 0 if it does not fit. */
size_t moat_pp_v1_build(char *out, size_t cap, const struct sockaddr *src,
                        const struct sockaddr *dst);

/*
 * Take a header off a connected socket: peek at what has come (at most 1 KiB: addresses and a
 * few TLVs), parse it, and read exactly the header, leaving the stream's own bytes for whoever
 * reads next (a TLS handshake). 1: done (*out filled); 0: wait for more bytes; -1: refused, with
 * *why (static words: "none", the parser's reason, "a UDP header", "the peer closed").
 */
int moat_pp_take(int fd, struct moat_pp_result *out, const char **why);

/*
 * Write an address of a result as text for logs and X-Forwarded-For: "192.0.2.1:5678",
 * "[2001:db8::1]:443", without the port "192.0.2.1" / "2001:db8::1"; AF_UNIX as "unix:/path"
 * ("unix:@name" for an abstract socket, bytes outside printable ASCII as '?'). NUL-terminated;
 * returns the length, or 0 (out[0] = NUL when cap > 0) if it does not fit or the family is none
 * of those. MOAT_PP_ADDR_STRLEN is always enough.
 */
size_t moat_pp_addr_format(const struct sockaddr_storage *ss, int with_port, char *out, size_t cap);

#endif
