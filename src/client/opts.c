/*
 * opts.c: the options of `moat get` and `moat trace`. Spellings follow curl where curl has the
 * option (-o, -I, -X, -H, -d, --data-binary, -L, --resolve, --cacert as --cafile), so people
 * can carry their command lines over.
 */
#include "client/opts.h"

#include "pki/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#define BODY_MAX (256u * 1024 * 1024)

static const char get_usage[] =
    "usage: moat get [options] URL\n"
    "\n"
    "Fetch URL over HTTPS (HTTP/1.1, or HTTP/2 with --http2; TLS 1.2/1.3) with strict\n"
    "certificate checks, print the body, and on failure say in one line what went wrong and\n"
    "how to fix it.\n"
    "\n";

static const char trace_usage[] =
    "usage: moat trace [options] URL\n"
    "\n"
    "Make one HTTPS request and show it step by step as a sequence diagram: DNS, TCP, every\n"
    "TLS handshake message with its size and time, what was negotiated, the certificates the\n"
    "server sent and the path verification built, the HTTP heads and timings; on failure, how\n"
    "far it got, the cause and the fix. With --http2, every HTTP/2 frame too (SETTINGS,\n"
    "HEADERS with their fields, DATA, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY).\n"
    "\n"
    "  --json                 one JSON document with the same facts instead of the diagram\n"
    "  --html FILE            also write the trace as one self-contained HTML page (the\n"
    "                         diagram as SVG, every message, the chain as cards) to FILE\n"
    "  --resume               then connect again, offering the first connection's TLS session,\n"
    "                         to show a resumed handshake\n";

static const char common_usage[] =
    "  --cafile FILE          also trust the CA certificates in FILE (PEM)\n"
    "  --no-default-trust     trust only --cafile (not the system store or moat's local CA)\n"
    "  --crl FILE             check the server certificate against the CRLs in FILE (PEM)\n"
    "  --cert FILE [--key FILE]  client certificate (and key, if not in FILE), PEM\n"
    "  --resolve HOST:PORT:ADDR  connect to ADDR for HOST:PORT (no DNS lookup)\n"
    "  -o, --output FILE      write the body to FILE instead of standard output\n"
    "  -I, --head             send HEAD and print the response head\n"
    "  -X, --request METHOD   use METHOD\n"
    "  -H, --header 'Name: value'  add a field (an empty value removes a default field)\n"
    "  -d, --data DATA        send DATA as a form body (POST); @FILE reads FILE\n"
    "  --data-binary DATA     send DATA as it is (POST); @FILE reads FILE\n"
    "  --tls-min V, --tls-max V  TLS versions to offer: 1.2 or 1.3 (default 1.2 to 1.3)\n"
    "  --http2                offer HTTP/2 (ALPN h2, then http/1.1) and use it when the server\n"
    "                         picks it; https:// only\n"
    "  -L, --location         follow redirects (off by default), at most --max-redirs N (10)\n"
    "  --timeout SECONDS      give up on a connection after this long (default 30)\n"
    "  --insecure, -k         do NOT verify the certificate (prints a warning every time)\n"
    "  --state DIR            moat's state folder, for its local CA root (default $MOAT_STATE,\n"
    "                         else ~/.local/share/moat)\n"
    "\n"
    "Trust: the system store plus moat's local CA root (DIR/ca/root.pem) when it exists.\n"
    "Exit codes: 0 ok, 1 local problem, 2 usage, 3 DNS or connect, 4 TLS handshake,\n"
    "5 certificate, 6 HTTP protocol, 7 timeout, 22 HTTP status 400 or above.\n";

const char *moat_client_usage(int trace)
{
    static char buf[sizeof(trace_usage) + sizeof(get_usage) + sizeof(common_usage)];
    snprintf(buf, sizeof(buf), "%s%s", trace ? trace_usage : get_usage, common_usage);
    return buf;
}

static moat_rc parse_version(const char *v, const char *opt, int *out, struct moat_err *err)
{
    if (strcmp(v, "1.2") == 0) {
        *out = TLS1_2_VERSION;
        return MOAT_RC_OK;
    }
    if (strcmp(v, "1.3") == 0) {
        *out = TLS1_3_VERSION;
        return MOAT_RC_OK;
    }
    if (strcmp(v, "1.0") == 0 || strcmp(v, "1.1") == 0 || strcmp(v, "1") == 0) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "%s %s: TLS 1.0 and 1.1 are deprecated (RFC 8996); moat "
                  "speaks 1.2 and 1.3",
                  opt, v);
    }
    MOAT_FAIL(err, MOAT_E_USAGE, "%s must be 1.2 or 1.3, not \"%s\"", opt, v);
}

static moat_rc parse_resolve(const char *v, struct moat_client_resolve *r, struct moat_err *err)
{
    const char *c1 = strchr(v, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1 == NULL || c2 == NULL || c1 == v || c2 == c1 + 1 || c2[1] == '\0') {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "--resolve wants HOST:PORT:ADDR, e.g. "
                  "example.com:443:127.0.0.1, not \"%s\"",
                  v);
    }
    size_t hl = (size_t)(c1 - v);
    if (hl >= sizeof(r->host)) {
        MOAT_FAIL(err, MOAT_E_USAGE, "--resolve: the host name is too long");
    }
    for (size_t i = 0; i < hl; i++) {
        char ch = v[i];
        r->host[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    r->host[hl] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(c1 + 1, &end, 10);
    if (end != c2 || port == 0 || port > 65535) {
        MOAT_FAIL(err, MOAT_E_USAGE, "--resolve \"%s\": the port must be 1 to 65535", v);
    }
    r->port = (unsigned)port;
    const char *a = c2 + 1;
    size_t al = strlen(a);
    if (al >= 2 && a[0] == '[' && a[al - 1] == ']') {
        a++;
        al -= 2;
    }
    if (al == 0 || al >= sizeof(r->addr)) {
        MOAT_FAIL(err, MOAT_E_USAGE, "--resolve \"%s\": the address is empty or too long", v);
    }
    memcpy(r->addr, a, al);
    r->addr[al] = '\0';
    return MOAT_RC_OK;
}

static moat_rc parse_timeout(const char *v, unsigned *out, struct moat_err *err)
{
    char *end = NULL;
    double s = strtod(v, &end);
    if (end == v || *end != '\0' || !(s > 0) || s > 86400) {
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "--timeout wants seconds (e.g. 10 or 0.5), up to 86400, "
                  "not \"%s\"",
                  v);
    }
    *out = (unsigned)(s * 1000.0 + 0.5);
    if (*out == 0) {
        *out = 1;
    }
    return MOAT_RC_OK;
}

static moat_rc set_body(struct moat_client_opts *o, const char *v, int form, struct moat_err *err)
{
    if (o->body != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "give the body once (-d or --data-binary)");
    }
    if (v[0] == '@') {
        unsigned char *data = NULL;
        size_t len = 0;
        MOAT_TRY_CTX(moat_fs_read_file(v + 1, BODY_MAX, &data, &len, err), err,
                     "while reading the body for %s", form ? "-d" : "--data-binary");
        o->body = (char *)data;
        o->body_len = len;
    } else {
        o->body = strdup(v);
        if (o->body == NULL) {
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        o->body_len = strlen(v);
    }
    o->body_is_form = form;
    return MOAT_RC_OK;
}

struct opt_row {
    const char *lng;
    const char *shrt;
    int valued;
    int trace_only;
};

static const struct opt_row opt_rows[] = {
    {"--cafile", NULL, 1, 0},      {"--ca-file", NULL, 1, 0},
    {"--cacert", NULL, 1, 0},      {"--crl", NULL, 1, 0},
    {"--cert", NULL, 1, 0},        {"--key", NULL, 1, 0},
    {"--resolve", NULL, 1, 0},     {"--output", "-o", 1, 0},
    {"--head", "-I", 0, 0},        {"--request", "-X", 1, 0},
    {"--header", "-H", 1, 0},      {"--data", "-d", 1, 0},
    {"--data-binary", NULL, 1, 0}, {"--tls-min", NULL, 1, 0},
    {"--tls-max", NULL, 1, 0},     {"--location", "-L", 0, 0},
    {"--max-redirs", NULL, 1, 0},  {"--insecure", "-k", 0, 0},
    {"--timeout", NULL, 1, 0},     {"--no-default-trust", NULL, 0, 0},
    {"--state", NULL, 1, 0},       {"--json", NULL, 0, 1},
    {"--help", "-h", 0, 0},        {"--resume", NULL, 0, 1},
    {"--http2", NULL, 0, 0},       {"--html", NULL, 1, 1},
};

static const struct opt_row *find_opt(const char *a)
{
    for (size_t i = 0; i < sizeof(opt_rows) / sizeof(opt_rows[0]); i++) {
        if (strcmp(a, opt_rows[i].lng) == 0 ||
            (opt_rows[i].shrt != NULL && strcmp(a, opt_rows[i].shrt) == 0)) {
            return &opt_rows[i];
        }
    }
    return NULL;
}

static moat_rc apply(struct moat_client_opts *o, const char *name, const char *v,
                     struct moat_err *err)
{
    if (strcmp(name, "--cafile") == 0 || strcmp(name, "--ca-file") == 0 ||
        strcmp(name, "--cacert") == 0) {
        o->cafile = v;
    } else if (strcmp(name, "--crl") == 0) {
        o->crl = v;
    } else if (strcmp(name, "--cert") == 0) {
        o->cert = v;
    } else if (strcmp(name, "--key") == 0) {
        o->key = v;
    } else if (strcmp(name, "--resolve") == 0) {
        if (o->nresolve == MOAT_CLIENT_MAX_RESOLVE) {
            MOAT_FAIL(err, MOAT_E_USAGE, "at most %d --resolve", MOAT_CLIENT_MAX_RESOLVE);
        }
        MOAT_TRY(parse_resolve(v, &o->resolve[o->nresolve], err));
        o->nresolve++;
    } else if (strcmp(name, "--output") == 0) {
        o->output = v;
    } else if (strcmp(name, "--head") == 0) {
        o->head_only = 1;
    } else if (strcmp(name, "--request") == 0) {
        o->method = v;
    } else if (strcmp(name, "--header") == 0) {
        if (o->nheaders == MOAT_CLIENT_MAX_HEADERS) {
            MOAT_FAIL(err, MOAT_E_USAGE, "at most %d -H fields", MOAT_CLIENT_MAX_HEADERS);
        }
        o->headers[o->nheaders++] = v;
    } else if (strcmp(name, "--data") == 0) {
        MOAT_TRY(set_body(o, v, 1, err));
    } else if (strcmp(name, "--data-binary") == 0) {
        MOAT_TRY(set_body(o, v, 0, err));
    } else if (strcmp(name, "--tls-min") == 0) {
        MOAT_TRY(parse_version(v, name, &o->tls_min, err));
    } else if (strcmp(name, "--tls-max") == 0) {
        MOAT_TRY(parse_version(v, name, &o->tls_max, err));
    } else if (strcmp(name, "--location") == 0) {
        o->follow = 1;
    } else if (strcmp(name, "--max-redirs") == 0) {
        char *end = NULL;
        unsigned long n = strtoul(v, &end, 10);
        if (end == v || *end != '\0' || n > MOAT_CLIENT_MAX_HOPS - 1 || v[0] == '-') {
            MOAT_FAIL(err, MOAT_E_USAGE, "--max-redirs must be 0 to %d", MOAT_CLIENT_MAX_HOPS - 1);
        }
        o->max_redirs = (int)n;
    } else if (strcmp(name, "--insecure") == 0) {
        o->insecure = 1;
    } else if (strcmp(name, "--timeout") == 0) {
        MOAT_TRY(parse_timeout(v, &o->timeout_ms, err));
    } else if (strcmp(name, "--no-default-trust") == 0) {
        o->no_default_trust = 1;
    } else if (strcmp(name, "--state") == 0) {
        o->state_dir = v;
    } else if (strcmp(name, "--json") == 0) {
        o->json = 1;
    } else if (strcmp(name, "--html") == 0) {
        o->html = v;
    } else if (strcmp(name, "--resume") == 0) {
        o->resume = 1;
    } else if (strcmp(name, "--http2") == 0) {
        o->http2 = 1;
    }
    return MOAT_RC_OK;
}

moat_rc moat_client_opts_parse(struct moat_client_opts *o, int argc, char **argv, int trace,
                               int *help, struct moat_err *err)
{
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->url != NULL) {
                MOAT_FAIL(err, MOAT_E_USAGE, "one URL only (got \"%s\" and \"%s\")", o->url, a);
            }
            o->url = a;
            continue;
        }
        char name[32];
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) == 0 && eq != NULL && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            v = eq + 1;
            a = name;
        }
        const struct opt_row *row = find_opt(a);
        if (row == NULL || (row->trace_only && !trace)) {
            MOAT_FAIL(err, MOAT_E_USAGE, "unknown option \"%s\"", argv[i]);
        }
        if (strcmp(row->lng, "--help") == 0) {
            *help = 1;
            return MOAT_RC_OK;
        }
        if (!row->valued && v != NULL) {
            MOAT_FAIL(err, MOAT_E_USAGE, "%s takes no value", row->lng);
        }
        if (row->valued && v == NULL) {
            if (i + 1 >= argc) {
                MOAT_FAIL(err, MOAT_E_USAGE, "%s needs a value", a);
            }
            v = argv[++i];
        }
        MOAT_TRY(apply(o, row->lng, v, err));
    }
    if (o->url == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "give a URL, e.g. https://example.com/");
    }
    if (o->key != NULL && o->cert == NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "--key goes with --cert (the client certificate)");
    }
    if (o->tls_min != 0 && o->tls_max != 0 && o->tls_min > o->tls_max) {
        MOAT_FAIL(err, MOAT_E_USAGE, "--tls-min is above --tls-max");
    }
    if (o->head_only && o->body != NULL) {
        MOAT_FAIL(err, MOAT_E_USAGE, "-I (HEAD) cannot send a body");
    }
    return MOAT_RC_OK;
}
