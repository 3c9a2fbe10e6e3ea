/*
 * get.h: one `moat get` / `moat trace` run: DNS, TCP, TLS with strict verification, one HTTP/1.1
 * request and its response, following redirects when asked, with every step timed and recorded.
 *
 * The run fills a struct moat_client_result with facts only; render.c turns it into the text
 * sequence diagram, json.c into one JSON document, and cmd_get.c into a one-line cause. A
 * failure is classified once, here, into a cause (cause.h) and, for certificates, a kind from
 * pki/verify.h, so every output names the same cause.
 */
#ifndef MOAT_CLIENT_GET_H
#define MOAT_CLIENT_GET_H

#include "client/cause.h"
#include "client/h2trace.h"
#include "client/trace.h"
#include "client/url.h"
#include "core/err.h"
#include "pki/verify.h"

#include <stddef.h>
#include <stdint.h>

#define MOAT_CLIENT_MAX_HEADERS 64
#define MOAT_CLIENT_MAX_RESOLVE 16
#define MOAT_CLIENT_MAX_ADDRS 8
#define MOAT_CLIENT_MAX_CHAIN 10
#define MOAT_CLIENT_MAX_HOPS 11 /* the first request and up to 10 redirects */
#define MOAT_CLIENT_BODY_H2 4   /* body_framing: HTTP/2 DATA frames up to END_STREAM */

/* --resolve HOST:PORT:ADDR, as curl spells it. */
struct moat_client_resolve {
    char host[MOAT_CLIENT_HOST_MAX];
    unsigned port;
    char addr[64];
};

/* What the command line asked for. Strings are borrowed from argv (or owned where noted). */
struct moat_client_opts {
    const char *url;
    const char *cafile; /* extra trust anchors, PEM */
    const char *crl;    /* PEM CRLs: check the leaf's revocation */
    const char *cert;   /* client certificate (chain), PEM */
    const char *key;    /* its key; NULL: in the cert file */
    struct moat_client_resolve resolve[MOAT_CLIENT_MAX_RESOLVE];
    size_t nresolve;
    const char *output;                           /* -o FILE; NULL: stdout */
    int head_only;                                /* -I: HEAD, print the response head */
    const char *method;                           /* -X; NULL: GET, HEAD with -I, POST with -d */
    const char *headers[MOAT_CLIENT_MAX_HEADERS]; /* -H "Name: value" */
    size_t nheaders;
    char *body; /* owned: -d / --data-binary bytes (NULL: none) */
    size_t body_len;
    int body_is_form;      /* -d: Content-Type application/x-www-form-urlencoded by default */
    int tls_min, tls_max;  /* TLS1_2_VERSION / TLS1_3_VERSION; 0 = default (1.2 .. 1.3) */
    int follow;            /* -L */
    int max_redirs;        /* with -L; default 10 */
    int insecure;          /* --insecure: record verification but do not enforce it */
    unsigned timeout_ms;   /* for each connection, DNS to last byte; default 30000 */
    int no_default_trust;  /* --no-default-trust: only --cafile is trusted */
    int no_local_ca;       /* the system store (and --cafile) only: ACME's view of the web */
    const char *state_dir; /* where moat's local CA lives; NULL: $MOAT_STATE or ~/.local/... */
    int json;              /* trace: --json */
    const char *html;      /* trace: --html FILE, the page besides the normal output */
    int discard_body;      /* trace: count the body, do not write it */
    int resume;            /* trace: connect again, offering the first connection's session */
    int http2;             /* --http2: offer ALPN h2 before http/1.1 */
};

/* Fill the defaults (GET, 30 s, 10 redirects). */
void moat_client_opts_init(struct moat_client_opts *o);
/* Free what the options own (the body). */
void moat_client_opts_clear(struct moat_client_opts *o);

/* One certificate as people read it. */
struct moat_client_cert {
    char subject[256]; /* one line, RFC 2253 order: "CN=example.com,O=..." */
    char issuer[256];
    char not_before[32]; /* "2026-01-02 03:04:05 UTC" */
    char not_after[32];
    long days_left;     /* until not_after, rounded down; negative when expired */
    long days_to_start; /* > 0 when not valid yet */
    char names[1024];   /* "DNS:example.com, IP:127.0.0.1"; "" when there is no SAN */
    char key[48];       /* "EC P-256", "RSA 2048" */
    char sig[48];       /* "ecdsa-with-SHA256" */
    int is_ca;
    int self_signed;
    char sha256[96]; /* fingerprint, hex with colons (first 16 bytes) */
};

#define MOAT_CLIENT_MAX_AIA 3 /* issuer fetches per connection (one per missing link) */

/* One fetch of a missing issuer from an AIA caIssuers URL (RFC 5280 §4.2.2.1). */
struct moat_client_aia_fetch {
    char url[512];                /* as the certificate gives it */
    char final_url[512];          /* after redirects; "" when there was none */
    char for_cert[256];           /* the subject whose issuer was looked for */
    int status;                   /* the last HTTP status; 0 when none came */
    size_t bytes;                 /* body bytes of the last answer */
    double ms;                    /* how long the fetch took */
    int ok;                       /* the issuer of for_cert came */
    const char *form;             /* static: "DER", "PKCS#7", "PEM"...; "" when nothing was read */
    struct moat_client_cert cert; /* the issuer that came (ok only) */
    char error[400];              /* why not, for people; "" when ok */
};

/* What the issuer lookup concluded when a certificate's issuer was neither sent nor trusted. */
enum moat_client_issuer_diag {
    MOAT_ISSUER_NONE = 0,             /* not looked at */
    MOAT_ISSUER_MISSING_INTERMEDIATE, /* the fetched issuer chains to a trusted root */
    MOAT_ISSUER_UNTRUSTED,            /* the chain (sent or fetched) ends at an untrusted root */
    MOAT_ISSUER_UNDETERMINED,         /* no usable AIA URL, or the fetch failed: either cause */
    MOAT_ISSUER_DIAG_COUNT            /* keep last */
};

enum moat_client_stage {
    MOAT_STAGE_DNS = 0,
    MOAT_STAGE_TCP,
    MOAT_STAGE_TLS,
    MOAT_STAGE_HTTP,
    MOAT_STAGE_DONE,
    MOAT_STAGE_COUNT /* keep last */
};

/* One connection: one URL, one request. Times in ms since the hop's start (before DNS). */
struct moat_client_hop {
    struct moat_client_url url;
    char url_text[MOAT_CLIENT_TARGET_MAX + 300];
    /* DNS */
    char addrs[MOAT_CLIENT_MAX_ADDRS][64]; /* numeric, no port */
    size_t naddrs;
    int dns_from_resolve; /* --resolve said it, no lookup */
    double dns_ms;
    /* TCP: the address that answered (or the last one tried) */
    char peer[80]; /* "127.0.0.1:8443", "[::1]:8443" */
    double tcp_start_ms, tcp_ms;
    int tcp_ok;
    size_t tcp_failed; /* addresses that refused or failed before this one */
    /* TLS (https only) */
    struct moat_trace trace; /* owned */
    int tls_done;
    double tls_start_ms, tls_ms;
    int version; /* TLS1_2_VERSION...; 0 before ServerHello */
    char version_name[16], cipher[64], group[32], sigalg[48], alpn[32];
    int resumed;
    int resume_offered; /* 1-based connection whose session was offered; 0: none */
    int again;          /* --resume: this hop repeats the previous request */
    int ocsp_stapled;
    char sni[MOAT_CLIENT_HOST_MAX]; /* "" when none was sent (IP literals, RFC 6066 §3) */
    struct moat_client_cert sent[MOAT_CLIENT_MAX_CHAIN]; /* the chain as the server sent it */
    size_t nsent;
    struct moat_client_cert path[MOAT_CLIENT_MAX_CHAIN]; /* the path verification built */
    size_t npath;
    int path_complete;     /* path ends at a trusted root */
    char root_source[300]; /* where the trusted root came from, for people */
    int verify_code;       /* X509_V_ERR_*, 0 when verified */
    int verify_depth;      /* the depth the first error is about */
    enum moat_verify_kind vkind;
    int cert_requested;   /* the server sent CertificateRequest */
    int client_cert_sent; /* we sent a non-empty Certificate */
    char ssl_reason[256]; /* OpenSSL's words for a failed handshake or read */

    /* The issuer lookup (issuer.c), when the chain stopped at an issuer nobody here has. */
    enum moat_client_issuer_diag issuer_diag;
    struct moat_client_aia_fetch aia[MOAT_CLIENT_MAX_AIA];
    size_t naia;
    char aia_note[300];         /* why nothing (more) was fetched; "" when nothing to say */
    char issuer_root[256];      /* the root the lookup ended at (trusted or not); "" if none */
    char issuer_root_from[300]; /* where that root came from, when trusted */
    char cert_message[300];     /* replaces the kind's message when set */
    char cert_fix[700];         /* replaces the kind's fix when set */
    char issuer_summary[600];   /* the lookup's conclusion in one line, for the trace */
    char alert_gloss[300];      /* what the fatal alert that ended it means here (trace notes) */
    int alert_gloss_dir;        /* enum moat_trace_dir: whose alert alert_gloss is about */
    /* HTTP */
    char *req_head;  /* owned: the request head as sent */
    char *resp_head; /* owned: the response head as received (last one, after 1xx) */
    int status;
    char reason[64];
    uint64_t body_bytes;
    char body_start[512]; /* the first body bytes (not NUL-terminated), for explanations */
    size_t nbody_start;
    int body_framing; /* enum moat_h1_body, or MOAT_CLIENT_BODY_H2 */
    double req_ms, first_byte_ms, head_ms, done_ms;
    char *location;       /* owned: Location of a 3xx */
    int http2;            /* the exchange ran over HTTP/2 (ALPN h2) */
    struct moat_h2rec h2; /* owned: its frames; empty for HTTP/1 */
    /* outcome */
    enum moat_client_stage stage; /* how far it got (MOAT_STAGE_DONE on success) */
    enum moat_client_cause cause;
    char detail[1024]; /* the cause in this hop's own terms: names, dates, alert */
    double total_ms;
};

struct moat_client_result {
    struct moat_client_hop hops[MOAT_CLIENT_MAX_HOPS];
    size_t nhops;
    enum moat_client_cause cause; /* of the last hop, or TOO_MANY_REDIRECTS */
    int exit_code;
    char trust_desc[512]; /* what was trusted: "system store + moat local CA (path)" */
    int insecure;
    char note[256]; /* e.g. "redirect to ... not followed (use -L)" */
};

/* Where the response body goes; returns 0 to go on, -1 to stop (write error). */
typedef int (*moat_client_body_cb)(void *arg, const void *p, size_t n);

/*
 * Run the request of `o`. Always fills *r (free with moat_client_result_clear), also on failure;
 * the cause and exit code are in r->cause and r->exit_code. Body bytes go to `body_cb` (may be
 * NULL: counted only). Returns MOAT_OK when the exchange completed (whatever the HTTP status),
 * otherwise the failure's kind with the one-line cause in err.
 */
MOAT_MUST_USE moat_rc moat_client_get_run(const struct moat_client_opts *o,
                                          moat_client_body_cb body_cb, void *body_arg,
                                          struct moat_client_result *r, struct moat_err *err);
void moat_client_result_clear(struct moat_client_result *r);

/* The one-line cause of a failed hop for people ("certificate expired: ... (expired 2020-02-01,
 * 1391 days ago)") into out; returns out. */
const char *moat_client_hop_cause_line(const struct moat_client_hop *h, char *out, size_t outlen);
/* The fix line for a failed hop; never NULL. */
const char *moat_client_hop_fix(const struct moat_client_hop *h);
/* The cause of a failed hop in general words (the kind's or the cause's message, unless the
 * issuer lookup found better ones); never NULL. */
const char *moat_client_hop_message(const struct moat_client_hop *h);
/* Stable name of a diagnosis ("missing_intermediate", "untrusted_ca", "undetermined", "none"). */
const char *moat_client_issuer_diag_name(enum moat_client_issuer_diag d);

const char *moat_client_stage_name(enum moat_client_stage s);

#endif
