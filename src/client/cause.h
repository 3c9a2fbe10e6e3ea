/*
 * cause.h: why a `moat get` or `moat trace` connection failed, as one of a few named causes
 * with plain words, the likely fix and the process exit code.
 *
 * Certificate failures are one cause here (MOAT_CC_CERT) whose details are a moat_verify_kind
 * from pki/verify.h, the one list of certificate failure kinds shared with `moat verify` and the
 * server: this table never repeats those words.
 *
 * Exit codes (documented in docs/client.md, stable for scripts):
 *   0 success   1 local problem (a file, memory)   2 usage
 *   3 DNS or TCP connect   4 TLS handshake or protocol mismatch   5 certificate
 *   6 HTTP protocol (malformed answer, redirect loop)   7 timeout   22 HTTP status >= 400
 */
#ifndef MOAT_CLIENT_CAUSE_H
#define MOAT_CLIENT_CAUSE_H

enum moat_client_cause {
    MOAT_CC_OK = 0,
    MOAT_CC_LOCAL,                /* a local file or resource failed (--cafile, -o...) */
    MOAT_CC_USAGE,                /* the command line or URL is wrong */
    MOAT_CC_DNS,                  /* the name did not resolve */
    MOAT_CC_REFUSED,              /* nothing listens on the port (RST to our SYN) */
    MOAT_CC_UNREACHABLE,          /* no route, network down, other connect errors */
    MOAT_CC_TIMEOUT,              /* a step took longer than --timeout */
    MOAT_CC_CERT,                 /* the server's certificate failed: see moat_verify_kind */
    MOAT_CC_NO_COMMON_VERSION,    /* no TLS version both sides accept */
    MOAT_CC_NO_COMMON_CIPHER,     /* no cipher suite or key-exchange group in common */
    MOAT_CC_CLIENT_CERT_REQUIRED, /* the server wants a client certificate; none was given */
    MOAT_CC_CLIENT_CERT_REJECTED, /* we sent one and the server refused it */
    MOAT_CC_SERVER_SPEAKS_HTTP,   /* https:// to a port that answers in plain HTTP */
    MOAT_CC_SERVER_SPEAKS_TLS,    /* http:// to a port that speaks TLS */
    MOAT_CC_TLS_ALERT,            /* the server ended the handshake with another alert */
    MOAT_CC_TLS_OTHER,            /* the handshake failed for another reason */
    MOAT_CC_CLOSED,               /* the server closed the connection without an answer */
    MOAT_CC_HTTP_PROTOCOL,        /* the HTTP answer was malformed or cut short */
    MOAT_CC_TOO_MANY_REDIRECTS,
    MOAT_CC_HTTP_STATUS, /* the server answered with a 4xx or 5xx status */
    MOAT_CC_COUNT        /* keep last */
};

/* Stable snake_case name ("refused", "client_cert_required") for JSON and tests; never NULL. */
const char *moat_client_cause_name(enum moat_client_cause c);
/* One sentence, no trailing period; never NULL. */
const char *moat_client_cause_message(enum moat_client_cause c);
/* The likely fix; never NULL ("" for MOAT_CC_OK). */
const char *moat_client_cause_fix(enum moat_client_cause c);
/* The process exit code for the cause (see the table above). */
int moat_client_cause_exit(enum moat_client_cause c);
/* The step that failed, for people: "DNS", "TCP", "TLS", "certificate", "HTTP" or "local". */
const char *moat_client_cause_stage(enum moat_client_cause c);
/* The cause named `name`, or MOAT_CC_COUNT when unknown. */
enum moat_client_cause moat_client_cause_from_name(const char *name);

#endif
