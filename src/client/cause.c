/*
 * cause.c: the table of client failure causes. Names are stable (JSON, tests, scripts);
 * messages and fixes may be improved freely.
 */
#include "client/cause.h"

#include "client/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cause_row {
    const char *name;
    const char *stage;
    int exit_code;
    const char *message;
    const char *fix;
};

static const struct cause_row causes[MOAT_CC_COUNT] = {
    [MOAT_CC_OK] = {"ok", "done", 0, "the request succeeded", ""},
    [MOAT_CC_LOCAL] = {"local", "local", 1, "a local file or resource could not be used",
                       "check the file named above"},
    [MOAT_CC_USAGE] = {"usage", "usage", 2, "the command line is not valid", "see moat get --help"},
    [MOAT_CC_DNS] = {"dns", "DNS", 3, "the host name could not be resolved to an address",
                     "check the spelling of the name and the DNS configuration, or give the "
                     "address with --resolve HOST:PORT:ADDR"},
    [MOAT_CC_REFUSED] = {"refused", "TCP", 3,
                         "the connection was refused: nothing listens on that address and port",
                         "check the port number and that the server is running and listening "
                         "on this address (ss -ltn on the server)"},
    [MOAT_CC_UNREACHABLE] = {"unreachable", "TCP", 3, "the address could not be reached",
                             "check the address, the route and any firewall in between"},
    [MOAT_CC_TIMEOUT] = {"timeout", "timeout", 7, "the server did not answer in time",
                         "check that the server is up and not overloaded, and that no firewall "
                         "silently drops the packets; raise --timeout if it is just slow"},
    [MOAT_CC_CERT] = {"certificate", "certificate", 5, "the server's certificate was refused",
                      "see the certificate failure above"},
    [MOAT_CC_NO_COMMON_VERSION] = {"no_common_version", "TLS", 4,
                                   "the client and the server have no TLS version in common",
                                   "enable TLS 1.2 and 1.3 on the server (older versions are "
                                   "broken, RFC 8996), or adjust --tls-min/--tls-max"},
    [MOAT_CC_NO_COMMON_CIPHER] = {"no_common_cipher", "TLS", 4,
                                  "the server accepted none of the offered cipher suites or "
                                  "key-exchange groups",
                                  "configure the server for ECDHE with AES-GCM or "
                                  "ChaCha20-Poly1305 and the groups X25519/P-256 (e.g. Mozilla's "
                                  "intermediate profile)"},
    [MOAT_CC_CLIENT_CERT_REQUIRED] = {"client_cert_required", "TLS", 4,
                                      "the server requires a client certificate and none was "
                                      "sent",
                                      "pass one with --cert FILE --key FILE, issued by a CA the "
                                      "server trusts"},
    [MOAT_CC_CLIENT_CERT_REJECTED] = {"client_cert_rejected", "TLS", 4,
                                      "the server refused the client certificate",
                                      "use a client certificate issued by a CA the server trusts "
                                      "(its CertificateRequest lists them), valid today and "
                                      "with clientAuth in its extended key usage"},
    [MOAT_CC_SERVER_SPEAKS_HTTP] = {"server_speaks_http", "TLS", 4,
                                    "the server answered in plain HTTP, not TLS: this port does "
                                    "not speak HTTPS",
                                    "use http:// for this port, or turn TLS on for the server's "
                                    "listener (nginx: `listen 443 ssl;`)"},
    [MOAT_CC_SERVER_SPEAKS_TLS] = {"server_speaks_tls", "HTTP", 4,
                                   "the server speaks TLS on this port, but the URL says http://",
                                   "use https:// for this port"},
    [MOAT_CC_TLS_ALERT] = {"tls_alert", "TLS", 4, "the server aborted the TLS handshake",
                           "read the alert above and the server's error log"},
    [MOAT_CC_TLS_OTHER] = {"tls_failed", "TLS", 4, "the TLS handshake failed",
                           "read the reason above; `moat trace` shows how far the handshake got"},
    [MOAT_CC_CLOSED] = {"closed", "TCP", 3, "the server closed the connection without answering",
                        "check the server's error log; a proxy or firewall may be closing "
                        "connections to this port"},
    [MOAT_CC_HTTP_PROTOCOL] = {"http_protocol", "HTTP", 6,
                               "the server's HTTP answer is malformed or was cut short",
                               "check the server (or the proxy in front of it) that wrote it"},
    [MOAT_CC_TOO_MANY_REDIRECTS] = {"too_many_redirects", "HTTP", 6,
                                    "the server redirected too many times (a redirect loop?)",
                                    "look at the Location of each redirect with moat trace -L"},
    [MOAT_CC_HTTP_STATUS] = {"http_status", "HTTP", 22, "the server answered with an error status",
                             "the answer's body usually says why"},
};

static const struct cause_row *row(enum moat_client_cause c)
{
    if ((unsigned)c >= MOAT_CC_COUNT) {
        return &causes[MOAT_CC_TLS_OTHER];
    }
    return &causes[c];
}

const char *moat_client_cause_name(enum moat_client_cause c)
{
    return row(c)->name;
}

const char *moat_client_cause_message(enum moat_client_cause c)
{
    return row(c)->message;
}

const char *moat_client_cause_fix(enum moat_client_cause c)
{
    return row(c)->fix;
}

int moat_client_cause_exit(enum moat_client_cause c)
{
    return row(c)->exit_code;
}

const char *moat_client_cause_stage(enum moat_client_cause c)
{
    return row(c)->stage;
}

enum moat_client_cause moat_client_cause_from_name(const char *name)
{
    for (int c = 0; name != NULL && c < MOAT_CC_COUNT; c++) {
        if (strcmp(causes[c].name, name) == 0) {
            return (enum moat_client_cause)c;
        }
    }
    return MOAT_CC_COUNT;
}

char *moat_client__dup(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

void moat_client__fmt(char *out, size_t outlen, const char *fmt, ...)
{
    if (outlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
}

void moat_client__append(char *out, size_t outlen, const char *fmt, ...)
{
    size_t l = strnlen(out, outlen);
    if (l + 1 >= outlen) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + l, outlen - l, fmt, ap);
    va_end(ap);
}
