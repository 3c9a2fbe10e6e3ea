/*
 * hello.h: hand-built ClientHellos and a reader of the server's first flight.
 *
 * moat check asks a server "would you take this?" hundreds of ways: each version alone, suites
 * one after another, groups, compression, heartbeat. A TLS library will not offer what it
 * refuses to speak (Debian's OpenSSL has no SSLv3, no export, RC4 or anonymous suites at any
 * security level), and a scanner must offer exactly those. So the hello is written here, byte by
 * byte (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2, RFC 6101 for SSLv3, the SSLv2 draft's CLIENT-HELLO),
 * and the answer is read up to where it turns encrypted or asks for our key: the ServerHello
 * (or HelloRetryRequest) in TLS 1.3, the flight up to ServerHelloDone in older versions. No
 * cryptography happens, and no connection goes past its first flight.
 *
 * The reader is a pure function over the bytes received so far (fuzzed: tests/fuzz/fuzz_hello.c):
 * the server's bytes are hostile input.
 */
#ifndef MOAT_CHECK_HELLO_H
#define MOAT_CHECK_HELLO_H

#include <stddef.h>
#include <stdint.h>

#define MOAT_HELLO_MAX 4096 /* bytes of a built hello, record header included */

struct moat_hello_spec {
    uint16_t version; /* SSL3..TLS 1.3; TLS 1.3 alone is offered through supported_versions */
    const uint16_t *suites;
    size_t nsuites;
    const uint16_t *groups; /* supported_groups; NULL: none sent */
    size_t ngroups;
    const uint16_t *sigalgs; /* TLS 1.2 and 1.3 only; NULL: none sent */
    size_t nsigalgs;
    const char *sni;    /* NULL or an IP literal: none sent */
    const char *alpn;   /* "h2,http/1.1"; NULL: none */
    int deflate;        /* offer DEFLATE compression (CRIME) */
    int fallback_scsv;  /* TLS_FALLBACK_SCSV (RFC 7507) */
    int heartbeat;      /* the heartbeat extension, peer_allowed_to_send (RFC 6520) */
    int status_request; /* OCSP stapling (RFC 6066 §8) */
    int x25519_share;   /* TLS 1.3: a key share for x25519 (random bytes: never used) */
    int no_extensions;  /* a bare hello (SSLv3 servers that choke on extensions) */
};

/* Write the hello as one record into out (MOAT_HELLO_MAX bytes). Returns its length, 0 when
 * the spec does not fit. */
size_t moat_hello_build(const struct moat_hello_spec *s, uint8_t *out, size_t outlen);

/* An SSLv2 CLIENT-HELLO offering the SSLv2 cipher kinds (DROWN's precondition). */
size_t moat_hello_build_sslv2(uint8_t *out, size_t outlen);

/* A heartbeat request record claiming 16 KiB of payload and carrying none (RFC 6520 §4 says
 * such a message MUST be discarded; Heartbleed, CVE-2014-0160, answered it with memory). */
size_t moat_hello_build_heartbleed(uint16_t version, uint8_t *out, size_t outlen);

enum moat_hello_kind {
    MOAT_HELLO_MORE = 0,  /* not enough bytes yet */
    MOAT_HELLO_SERVER,    /* a ServerHello (and, below 1.3, its flight) */
    MOAT_HELLO_HRR,       /* a HelloRetryRequest */
    MOAT_HELLO_ALERT,     /* the server refused with an alert */
    MOAT_HELLO_SSLV2,     /* an SSLv2 SERVER-HELLO */
    MOAT_HELLO_NOT_TLS,   /* the first bytes are not a TLS record (plain HTTP, SSH...) */
    MOAT_HELLO_BAD,       /* TLS that does not parse */
    MOAT_HELLO_KIND_COUNT /* keep last */
};

struct moat_hello_reply {
    enum moat_hello_kind kind;
    int alert_level, alert_desc;
    uint16_t record_version; /* of the first record */
    uint16_t version;        /* chosen: supported_versions for 1.3, else server_version */
    uint16_t suite;
    uint8_t compression;
    uint16_t group;      /* 1.3: key_share (HRR or SH); below: ServerKeyExchange's curve */
    int dh_bits;         /* DHE / anon DH: the prime's size in bits */
    uint16_t ske_sigalg; /* TLS 1.2 ServerKeyExchange's signature scheme; 0: none */
    int ext_reneg;       /* renegotiation_info in the ServerHello (RFC 5746) */
    int ext_ems;         /* extended_master_secret (RFC 7627) */
    int ext_ticket;      /* session_ticket (RFC 5077) */
    int ext_heartbeat;   /* heartbeat (RFC 6520) */
    int ext_status;      /* status_request acknowledged */
    int ocsp_stapled;    /* a CertificateStatus message came */
    int cert_request;    /* CertificateRequest (client certificates asked for) */
    int certs;           /* certificates in the Certificate message (below 1.3) */
    char alpn[32];       /* the protocol chosen (below 1.3; 1.3 sends it encrypted) */
    char why[120];       /* for BAD: what did not parse */
    size_t used;         /* bytes of the input the answer took */
};

/*
 * Read what the server sent so far (p, n), for a hello of `offered` (the spec's version).
 * Returns the kind, MOAT_HELLO_MORE when more bytes are needed; *r is filled as far as the
 * bytes go. A record or message longer than the RFC allows, a length that runs past its
 * container, a ServerHello for a version or suite that was not offered: BAD, with why.
 */
enum moat_hello_kind moat_hello_read(const uint8_t *p, size_t n, uint16_t offered,
                                     const uint16_t *suites, size_t nsuites,
                                     struct moat_hello_reply *r);

/* A heartbeat response record (content type 24) among the bytes: the server answered the
 * Heartbleed probe. Returns its payload length, 0 when none is there. */
size_t moat_hello_heartbeat_answer(const uint8_t *p, size_t n);

#endif
