/*
 * cmd_get.c: `moat get URL`: arguments to client options, the body to standard output or -o
 * FILE, and on failure one line with the cause and one with the fix. The work is in client/.
 */
#include "cli/cmd.h"

#include "client/get.h"
#include "client/opts.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sink {
    const char *path; /* NULL: stdout */
    FILE *f;          /* opened at the first byte, so a failed fetch leaves no empty file */
};

static int write_body(void *arg, const void *p, size_t n)
{
    struct sink *s = arg;
    if (s->f == NULL) {
        s->f = s->path ? fopen(s->path, "wb") : stdout;
        if (s->f == NULL) {
            return -1;
        }
    }
    return fwrite(p, 1, n, s->f) == n ? 0 : -1;
}

int moat_cmd_get(int argc, char **argv)
{
    struct moat_client_opts o;
    moat_client_opts_init(&o);
    struct moat_err err = {0};
    int help = 0;
    if (!moat_ok(moat_client_opts_parse(&o, argc, argv, 0, &help, &err))) {
        fprintf(stderr, "moat get: %s (see moat get --help)\n", err.msg);
        moat_client_opts_clear(&o);
        return 2;
    }
    if (help) {
        fputs(moat_client_usage(0), stdout);
        moat_client_opts_clear(&o);
        return 0;
    }
    /* OpenSSL writes to the socket with write(2): a server that closes early must be an
     * error to report, not a signal that ends the process without a word. */
    signal(SIGPIPE, SIG_IGN);
    if (o.insecure) {
        fprintf(stderr, "moat get: WARNING: --insecure: the server's certificate is NOT "
                        "verified; anyone on the path can read and change this connection\n");
    }
    struct moat_client_result *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fprintf(stderr, "moat get: out of memory\n");
        moat_client_opts_clear(&o);
        return 1;
    }
    struct sink s = {.path = o.output, .f = NULL};
    moat_rc rc = moat_client_get_run(&o, o.head_only ? NULL : write_body, &s, r, &err);
    int code = r->exit_code;
    if (s.f != NULL && s.f != stdout && fclose(s.f) != 0) {
        fprintf(stderr, "moat get: cannot write %s\n", o.output);
        code = code ? code : 1;
    } else if (s.f == stdout) {
        fflush(stdout);
    }
    const struct moat_client_hop *h = r->nhops > 0 ? &r->hops[r->nhops - 1] : NULL;
    char line[2048];
    if (o.head_only && h != NULL && h->resp_head != NULL) {
        fputs(h->resp_head, stdout);
    }
    if (h == NULL) {
        fprintf(stderr, "moat get: %s\n", moat_err_str(&err, line, sizeof(line)));
    } else if (h->cause != MOAT_CC_OK && h->cause != MOAT_CC_HTTP_STATUS) {
        fprintf(stderr, "moat get: %s\n", moat_client_hop_cause_line(h, line, sizeof(line)));
        fprintf(stderr, "  fix: %s\n", moat_client_hop_fix(h));
    } else if (h->cause == MOAT_CC_HTTP_STATUS) {
        fprintf(stderr, "moat get: the server answered %d %s\n", h->status, h->reason);
    }
    (void)rc;
    if (o.insecure) {
        for (size_t i = 0; i < r->nhops; i++) {
            if (r->hops[i].verify_code != 0) {
                fprintf(stderr,
                        "moat get: WARNING: --insecure hid a certificate failure: "
                        "certificate %s: %s\n",
                        moat_verify_kind_name(r->hops[i].vkind), r->hops[i].detail);
            }
        }
    }
    if (r->note[0] != '\0') {
        fprintf(stderr, "moat get: note: %s\n", r->note);
    }
    moat_client_result_clear(r);
    free(r);
    moat_client_opts_clear(&o);
    return code;
}
