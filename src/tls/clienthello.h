/*
 * clienthello.h: read the SNI host name and the ALPN list from the first bytes a client sends on
 * a TCP connection, without terminating TLS, for passthrough routing (HAProxy's req.ssl_sni).
 *
 * A `stream` listener peeks at what arrived, calls moat_ch_peek each time more bytes come until
 * it answers something other than NEED_MORE, picks an upstream from the name and forwards every
 * byte untouched. The parser reads raw bytes itself (no SSL object exists yet): it is pure (no
 * I/O, no allocation, no globals, no OpenSSL) and starts over from the first byte on each call,
 * so the caller keeps no parser state, only the bytes.
 *
 * A ClientHello may be split over several handshake records (legal, rare, and a way to hide the
 * name from filters that read only the first record): the parser reads the handshake message
 * through the records where they lie, with no copy but the name and the ALPN list it returns.
 */
#ifndef MOAT_TLS_CLIENTHELLO_H
#define MOAT_TLS_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/slice.h"

/* The most bytes a ClientHello may take, record headers included: 16 KiB of handshake message
 * and 1 KiB of record headers (about 200 records). A peek buffer of this size always suffices;
 * anything longer is INVALID. Real ClientHellos are 200 bytes to 2 KiB (a post-quantum key share
 * included). A plain number, so that it can be spelled out in the reason string. */
#define MOAT_CH_MAX 17408
#define MOAT_CH_HOST_MAX 253   /* characters of a host name, trailing dot removed (RFC 1035) */
#define MOAT_CH_ALPN_MAX 8     /* ALPN names kept, the client's first ones */
#define MOAT_CH_ALPN_BYTES 256 /* bytes of ALPN names kept, wire format */

enum moat_ch_status {
    MOAT_CH_OK = 0,      /* a whole, well-formed ClientHello: the info is filled */
    MOAT_CH_NEED_MORE,   /* a valid prefix so far: call again when more bytes arrived */
    MOAT_CH_NOT_TLS,     /* these bytes cannot start a TLS handshake (another protocol) */
    MOAT_CH_INVALID,     /* TLS, but a malformed, refused or too large ClientHello */
    MOAT_CH_STATUS_COUNT /* keep last */
};

/*
 * What a ClientHello says, for routing and logs. Only `need` (NEED_MORE) or `reason` and
 * `err_off` (NOT_TLS, INVALID) are meaningful unless the status is OK; everything else is then
 * zero. The struct owns its bytes (nothing points into the peeked buffer), so it may be copied
 * and outlives the buffer.
 */
struct moat_ch_info {
    size_t need;        /* NEED_MORE: a lower bound of the bytes the whole ClientHello takes,
                           exact once its record and handshake lengths are in (always > n) */
    size_t hello_len;   /* OK: bytes of the ClientHello, record headers included; bytes past
                           it (early data, a ChangeCipherSpec) are not read */
    const char *reason; /* NOT_TLS, INVALID: static English text, for logs */
    size_t err_off;     /* NOT_TLS, INVALID: offset in the bytes where the parser stopped */

    uint16_t record_version; /* legacy_record_version of the first record (0x0301 usually) */
    uint16_t legacy_version; /* ClientHello.legacy_version (0x0303 from TLS 1.2+ clients) */
    uint16_t max_version;    /* the highest version offered: the highest 3.x one listed in
                                supported_versions (0 when it lists none), else legacy_version
                                but at most 0x0303 (RFC 8446 §4.2.1) */
    int has_supported_versions;
    int offers_tls13; /* supported_versions lists 0x0304 */

    int has_sni;                      /* a server_name extension with a host_name */
    char sni[MOAT_CH_HOST_MAX + 3];   /* the host name, lower case, no trailing dot,
                                         NUL-terminated; "" without SNI */
    size_t sni_len;                   /* strlen(sni) */
    int has_alpn;                     /* an ALPN extension (RFC 7301) */
    uint8_t alpn[MOAT_CH_ALPN_BYTES]; /* the first names offered in wire format (a length
                                         byte, then the name), as SSL_select_next_proto reads
                                         it; read them with moat_ch_alpn_at */
    size_t alpn_len;                  /* bytes used in alpn */
    size_t alpn_count;                /* names in alpn */
    int alpn_truncated;               /* the client offered more names than were kept */
};

/*
 * Peek at the first `n` bytes a client sent (`p` is borrowed for the call; NULL when n is 0).
 *
 * NOT_TLS is decided from the first bytes: a first byte other than 0x16 (handshake) or a
 * record version other than 3.0 to 3.4; "GET " is NOT_TLS after one byte. An SSLv2-compatible
 * ClientHello (first byte with the high bit set and message type 1 at offset 2) is INVALID
 * "SSLv2 ...": it can carry neither SNI nor ALPN, and no client has sent one by default since
 * 2010; a first byte with the high bit set is NEED_MORE (need 3) until the third byte tells.
 *
 * INVALID, each with its own reason: a record of another type inside the ClientHello (alert,
 * ChangeCipherSpec), an empty record or one over 2^14 bytes (RFC 8446 §5.1), a record that goes
 * on past the ClientHello (it must end on a record boundary, RFC 8446 §5.1), a first handshake
 * message other than ClientHello, a ClientHello longer than MOAT_CH_MAX in all, any length that
 * overruns the field holding it or does not add up exactly, a version other than 3.x, a session
 * ID over 32 bytes, no cipher suite, no compression method, an extension type given twice (RFC
 * 8446 §4.2), pre_shared_key not last (RFC 8446 §4.2.11), and in server_name (RFC 6066 §3) an
 * empty list, an entry of a type other than host_name (its format is unknown, so the rest of
 * the list cannot be read), two host_name entries, an empty host_name or one that is not a host
 * name. A host name here is what moat's SNI table (tls/sni.h) matches: dot-separated labels of
 * 1 to 63 ASCII letters, digits, '-' and '_' ('_' as the table allows it), at most 253 bytes;
 * one trailing dot is accepted and dropped, upper case is folded to lower; IP literals (which
 * RFC 6066 forbids but some clients send) pass as all-digit labels. In ALPN (RFC 7301 §3.1),
 * an empty list or an empty name.
 *
 * OK: the info is filled, the same however the message is split into records (as long as their
 * headers keep it within MOAT_CH_MAX). A ClientHello without extensions (TLS 1.2 allows it) is
 * OK with no SNI. With Encrypted Client Hello the name is the outer, public one.
 *
 * Any proper prefix of a ClientHello that is OK is NEED_MORE, and each call reads the bytes from
 * the start again: O(n) per call. Never reads past p[n - 1]; never allocates; uses about 9 KiB
 * of stack (one bit per extension type, to refuse repeats).
 */
MOAT_MUST_USE enum moat_ch_status moat_ch_peek(const uint8_t *p, size_t n,
                                               struct moat_ch_info *out);

/* The i-th ALPN name kept (0-based), pointing into ch->alpn (valid as long as *ch is);
 * MOAT_SLICE_NULL past the last. */
moat_slice moat_ch_alpn_at(const struct moat_ch_info *ch, size_t i);

/* 1 when the client offered the protocol `name` (`len` bytes, exact bytes, among the names
 * kept), 0 otherwise. */
int moat_ch_alpn_offers(const struct moat_ch_info *ch, const char *name, size_t len);

/* "ok", "need_more", "not_tls", "invalid" (for logs); "?" for anything else. */
const char *moat_ch_status_name(enum moat_ch_status st);

#endif
