/*
 * scan.h: `moat check`'s facts about one HTTPS endpoint, and the probe that gathers them.
 *
 * The scan only observes: which versions, suites, groups and options the server takes (from
 * hand-built hellos, hello.h), what a real handshake gives (the chain, resumption, ALPN, early
 * data, renegotiation, through OpenSSL), and what a strict `moat get` sees (verification, the
 * HTTP answer's security fields, port 80's redirect). judge.h turns the facts into findings.
 *
 * Bounds: at most opts.max_connections connections, opts.parallel at a time, no faster than
 * opts.rate per second, each within opts.timeout_ms, the whole within opts.deadline_ms. The
 * scan talks to the one address the name resolves to first (or --connect's), never a range.
 */
#ifndef MOAT_CHECK_SCAN_H
#define MOAT_CHECK_SCAN_H

#include "check/certfacts.h"
#include "client/get.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

/* Versions, as scan.versions[] indices. */
enum moat_check_ver {
    MOAT_VER_SSL2 = 0,
    MOAT_VER_SSL3,
    MOAT_VER_TLS10,
    MOAT_VER_TLS11,
    MOAT_VER_TLS12,
    MOAT_VER_TLS13,
    MOAT_VER_COUNT /* keep last */
};

#define MOAT_CHECK_MAX_SUITES 64
#define MOAT_CHECK_MAX_GROUPS 24
#define MOAT_CHECK_MAX_SIGALGS 24

struct moat_check_opts {
    const char *target;       /* "https://host:port/path", "host:port" or "host" */
    const char *connect;      /* "ADDR" or "ADDR:PORT" to connect to instead of resolving */
    const char *cafile;       /* extra trust anchors for the verification */
    const char *state_dir;    /* moat's local CA (trusted, as `moat get` does) */
    unsigned timeout_ms;      /* per connection; default 5000 */
    unsigned deadline_ms;     /* the whole scan; default 60000 */
    unsigned parallel;        /* connections at a time; default 8 */
    unsigned rate;            /* new connections per second at most; default 200 */
    unsigned max_connections; /* default 800 */
    unsigned http_port;       /* where the plain-HTTP redirect is looked for; default 80; 0: skip */
    const char *resolver;     /* DNS server for CAA ("ADDR[:PORT]"); NULL: the system's, and
                                 only for public names */
    int json;
    const char *html; /* write the page here */
};

void moat_check_opts_init(struct moat_check_opts *o);

/* A tri-state fact. */
enum moat_check_tri {
    MOAT_NO = 0,
    MOAT_YES = 1,
    MOAT_UNKNOWN = -1 /* could not be told (an error, a timeout, not applicable) */
};

struct moat_check_scan {
    char host[256]; /* the name asked for (SNI, verification) */
    unsigned port;
    char addr[80];   /* the address probed, "127.0.0.1:8443" */
    int public_name; /* a name under a public suffix, not localhost / .test / an IP */

    /* versions: MOAT_YES offered, MOAT_NO refused, MOAT_UNKNOWN no answer */
    enum moat_check_tri versions[MOAT_VER_COUNT];
    /* suites per version index (TLS 1.0..1.3; SSLv3 too), in the order the server picked them */
    uint16_t suites[MOAT_VER_COUNT][MOAT_CHECK_MAX_SUITES];
    size_t nsuites[MOAT_VER_COUNT];
    enum moat_check_tri server_order[MOAT_VER_COUNT]; /* the server's order is enforced */
    uint16_t groups13[MOAT_CHECK_MAX_GROUPS];         /* TLS 1.3 groups, server's preference */
    size_t ngroups13;
    uint16_t groups12[MOAT_CHECK_MAX_GROUPS]; /* ECDHE curves below 1.3 */
    size_t ngroups12;
    uint16_t sigalgs13[MOAT_CHECK_MAX_SIGALGS]; /* TLS 1.3 CertificateVerify schemes taken */
    size_t nsigalgs13;
    uint16_t sigalgs12[MOAT_CHECK_MAX_SIGALGS]; /* TLS 1.2 ServerKeyExchange signatures */
    size_t nsigalgs12;
    int dh_bits;                       /* smallest DHE prime seen; 0: no DHE */
    enum moat_check_tri compression;   /* DEFLATE accepted (CRIME) */
    enum moat_check_tri secure_reneg;  /* renegotiation_info answered (RFC 5746) */
    enum moat_check_tri client_reneg;  /* a client-initiated renegotiation was accepted */
    enum moat_check_tri fallback_scsv; /* a downgraded hello with FALLBACK_SCSV was refused */
    enum moat_check_tri heartbeat;     /* the heartbeat extension is answered */
    enum moat_check_tri heartbleed;    /* it answered an empty 16 KiB heartbeat */
    enum moat_check_tri ems;           /* extended_master_secret (TLS 1.2) */

    /* from real handshakes (OpenSSL) */
    enum moat_check_tri alpn_h2, alpn_http11;
    enum moat_check_tri resume_ticket13; /* a TLS 1.3 ticket resumed */
    enum moat_check_tri resume_ticket12; /* a TLS 1.2 ticket resumed */
    enum moat_check_tri resume_id12;     /* a TLS 1.2 session id resumed (no ticket offered) */
    uint32_t early_data;                 /* max_early_data the tickets allow; 0: no 0-RTT */
    enum moat_check_tri ocsp_stapled;
    struct moat_check_certfacts cert;
    enum moat_check_tri cert_read; /* the chain could be read */

    /* from a strict `moat get` of the URL */
    struct moat_client_result *get; /* owned */
    int verified;                   /* the chain verified for the host */
    long hsts_max_age;              /* -1: no Strict-Transport-Security */
    int hsts_subdomains, hsts_preload;
    int hdr_nosniff, hdr_frame, hdr_csp, hdr_referrer; /* security fields present */
    int http_compressed; /* the answer came with Content-Encoding (BREACH) */
    int status;          /* of the HTTPS answer */

    /* port 80 */
    enum moat_check_tri http_redirects; /* answers 301/302/307/308 to https://same host */
    int http_status;
    char http_location[256];

    /* CAA (RFC 8659) */
    enum moat_check_tri caa; /* a relevant CAA set exists; UNKNOWN: not looked up or failed */
    char caa_owner[256];     /* the name that holds it */
    char caa_records[600];   /* "0 issue \"letsencrypt.org\"; ..." */

    /* An offline judgement of a configuration file (nginx's): no connection was made; the
     * facts are what the file and this machine's OpenSSL would give. */
    int offline;
    char source[300];         /* "nginx.conf:12" (the server block) */
    int offline_vkind;        /* enum moat_verify_kind of the chain's verification */
    char offline_detail[400]; /* its words */

    unsigned connections; /* used */
    double ms;            /* the scan's length */
    int truncated;        /* the bounds stopped it: some facts are UNKNOWN */
};

/* Scan the target. MOAT_E_USAGE for a target that does not parse, MOAT_E_IO when its name
 * does not resolve or nothing accepts TCP there (err says which); anything after that is a
 * fact, not an error. *out is the caller's (moat_check_scan_free). */
MOAT_MUST_USE moat_rc moat_check_scan_run(const struct moat_check_opts *o,
                                          struct moat_check_scan **out, struct moat_err *err);
void moat_check_scan_free(struct moat_check_scan *s);

/* A Strict-Transport-Security value (NULL: none) into s->hsts_*. */
void moat_check_hsts_parse(struct moat_check_scan *s, const char *v);

/* A name under a public suffix: not an address, a single label, localhost, or a name under a
 * reserved or local-use suffix (.test, .example, .invalid, .local, .internal, .lan, .home.arpa). */
int moat_check_public_name(const char *host);

/* The wire version of a moat_check_ver index. */
uint16_t moat_check_ver_wire(enum moat_check_ver v);

#endif
