/*
 * cmd_check.c: `moat check URL|HOST[:PORT]`: argument parsing only; check/ probes and judges.
 */
#include "cli/cmd.h"

#include "check/html.h"
#include "check/judge.h"
#include "check/report.h"
#include "check/scan.h"
#include "pki/fsutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: moat check [options] URL|HOST[:PORT]\n"
    "\n"
    "Grade an HTTPS server: versions, suites and their order, groups, signatures, the\n"
    "certificate chain, resumption, ALPN, renegotiation, compression, heartbeat, 0-RTT, HSTS,\n"
    "security header fields and the plain-HTTP redirect; each finding with its evidence and\n"
    "the fix in moat, nginx, HAProxy and Caddy terms. It probes one address with short\n"
    "handshakes, bounded in number, rate and time.\n"
    "\n"
    "  --json               one JSON document instead of the text\n"
    "  --html FILE          also write the report as one self-contained HTML page\n"
    "  --connect ADDR[:PORT] probe this address instead of resolving the name (the name\n"
    "                       is still sent and verified)\n"
    "  --cafile FILE        trust these CA certificates too (moat's local CA is trusted)\n"
    "  --state DIR          where moat's local CA is (default $MOAT_STATE or ~/.local/...)\n"
    "  --http-port N|off    where to look for the redirect to HTTPS (default 80)\n"
    "  --resolver ADDR[:PORT] the DNS server for the CAA lookup (default: the system's,\n"
    "                       for public names only; with this option, for any name)\n"
    "  --timeout SECONDS    per connection (default 5)\n"
    "  --max-time SECONDS   the whole check (default 60)\n"
    "  --max-connections N  at most N connections (default 800)\n"
    "  --parallel N         connections at a time (default 8, at most 16)\n"
    "  --rate N             new connections per second at most (default 200)\n"
    "\n"
    "Exit status: 0 nothing above info, 3 low, 4 medium, 5 high, 6 critical (the worst\n"
    "finding); 1 the check could not run; 2 usage.\n";

static int number(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || v < lo || v > hi) {
        return 0;
    }
    *out = (unsigned)v;
    return 1;
}

/* The page, written whole or not at all (temp file + rename). */
static int write_html(const char *path, const struct moat_check_scan *s,
                      const struct moat_check_report *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL) {
        fprintf(stderr, "moat check: out of memory for the page\n");
        return -1;
    }
    int bad = moat_check_report_html(s, r, m) != 0;
    bad |= fclose(m) != 0;
    struct moat_err err = {0};
    if (bad || !moat_ok(moat_fs_write_atomic(path, buf, len, 0644, &err))) {
        char line[1024];
        fprintf(stderr, "moat check: cannot write %s: %s\n", path,
                bad ? "out of memory" : moat_err_str(&err, line, sizeof(line)));
        free(buf);
        return -1;
    }
    free(buf);
    return 0;
}

int moat_cmd_check(int argc, char **argv)
{
    struct moat_check_opts o;
    moat_check_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0' && v == NULL) {
            fprintf(stderr, "moat check: %s needs a value (see moat check --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--connect") == 0) {
            o.connect = v;
        } else if (strcmp(a, "--cafile") == 0) {
            o.cafile = v;
        } else if (strcmp(a, "--html") == 0) {
            o.html = v;
        } else if (strcmp(a, "--resolver") == 0) {
            o.resolver = v;
        } else if (strcmp(a, "--state") == 0) {
            o.state_dir = v;
        } else if (strcmp(a, "--http-port") == 0) {
            if (strcmp(v, "off") == 0) {
                o.http_port = 0;
            } else if (!number(v, 1, 65535, &o.http_port)) {
                fprintf(stderr, "moat check: --http-port takes 1 to 65535 or off, not %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--max-time") == 0) {
            if (!number(v, 1, 3600, &n)) {
                fprintf(stderr, "moat check: %s takes 1 to 3600 seconds, not %s\n", a, v);
                return 2;
            }
            *(a[2] == 't' ? &o.timeout_ms : &o.deadline_ms) = n * 1000;
        } else if (strcmp(a, "--max-connections") == 0) {
            if (!number(v, 1, 100000, &o.max_connections)) {
                fprintf(stderr, "moat check: --max-connections takes 1 to 100000, not %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--parallel") == 0) {
            if (!number(v, 1, 16, &o.parallel)) {
                fprintf(stderr, "moat check: --parallel takes 1 to 16, not %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--rate") == 0) {
            if (!number(v, 1, 10000, &o.rate)) {
                fprintf(stderr, "moat check: --rate takes 1 to 10000 per second, not %s\n", v);
                return 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "moat check: unknown option %s (see moat check --help)\n", a);
            return 2;
        } else if (o.target != NULL) {
            fprintf(stderr, "moat check: one target at a time (%s and %s)\n", o.target, a);
            return 2;
        } else {
            o.target = a;
            continue;
        }
        i++;
    }
    if (o.target == NULL) {
        fputs(usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct moat_check_scan *s = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_check_scan_run(&o, &s, &err);
    if (!moat_ok(rc)) {
        char line[1024];
        fprintf(stderr, "moat check: %s\n", moat_err_str(&err, line, sizeof(line)));
        return rc.kind == MOAT_E_USAGE ? 2 : 1;
    }
    struct moat_check_report *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        moat_check_scan_free(s);
        fputs("moat check: out of memory\n", stderr);
        return 1;
    }
    moat_check_judge(s, r);
    int code = r->exit_code;
    if (o.json) {
        if (moat_check_report_json(s, r, stdout) != 0) {
            fputs("moat check: cannot write the JSON document\n", stderr);
            code = 1;
        }
    } else {
        moat_check_report_text(s, r, stdout);
    }
    if (o.html != NULL && write_html(o.html, s, r) != 0) {
        code = 1;
    }
    free(r);
    moat_check_scan_free(s);
    return code;
}
