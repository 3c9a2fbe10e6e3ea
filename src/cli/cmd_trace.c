/*
 * cmd_trace.c: `moat trace URL`: the same options as `moat get`, one run, printed as a sequence
 * diagram (client/render.c) or, with --json, as one JSON document (client/json.c); with
 * --html FILE, also as one HTML page written whole to FILE (client/html.c). The body is
 * counted, not printed, unless -o FILE asks for it.
 */
#include "cli/cmd.h"

#include "client/get.h"
#include "client/html.h"
#include "client/json.h"
#include "client/opts.h"
#include "client/render.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static int write_file(void *arg, const void *p, size_t n)
{
    FILE **f = arg;
    return fwrite(p, 1, n, *f) == n ? 0 : -1;
}

int moat_cmd_trace(int argc, char **argv)
{
    struct moat_client_opts o;
    moat_client_opts_init(&o);
    struct moat_err err = {0};
    int help = 0;
    if (!moat_ok(moat_client_opts_parse(&o, argc, argv, 1, &help, &err))) {
        fprintf(stderr, "moat trace: %s (see moat trace --help)\n", err.msg);
        moat_client_opts_clear(&o);
        return 2;
    }
    if (help) {
        fputs(moat_client_usage(1), stdout);
        moat_client_opts_clear(&o);
        return 0;
    }
    /* OpenSSL writes to the socket with write(2): a server that closes early must be an
     * error to report, not a signal that ends the process without a word. */
    signal(SIGPIPE, SIG_IGN);
    if (o.insecure) {
        fprintf(stderr, "moat trace: WARNING: --insecure: the server's certificate is NOT "
                        "enforced; anyone on the path can read and change this connection\n");
    }
    FILE *out = NULL;
    if (o.output != NULL && (out = fopen(o.output, "wb")) == NULL) {
        fprintf(stderr, "moat trace: cannot write %s\n", o.output);
        moat_client_opts_clear(&o);
        return 1;
    }
    struct moat_client_result *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fprintf(stderr, "moat trace: out of memory\n");
        if (out != NULL) {
            fclose(out);
        }
        moat_client_opts_clear(&o);
        return 1;
    }
    moat_rc rc = moat_client_get_run(&o, out ? write_file : NULL, &out, r, &err);
    int code = r->exit_code;
    if (out != NULL && fclose(out) != 0) {
        fprintf(stderr, "moat trace: cannot write %s\n", o.output);
        code = code ? code : 1;
    }
    if (r->nhops == 0) {
        char line[2048];
        fprintf(stderr, "moat trace: %s\n", moat_err_str(&err, line, sizeof(line)));
    } else if (o.json) {
        if (moat_client_json_write(r, stdout) != 0) {
            fprintf(stderr, "moat trace: cannot write the JSON document\n");
            code = code ? code : 1;
        }
    } else {
        moat_client_render_text(r, stdout);
    }
    if (o.html != NULL && r->nhops > 0 && !moat_ok(moat_client_html_write_file(r, o.html, &err))) {
        /* The page was asked for and is not there: a local failure, whatever the trace said. */
        fprintf(stderr, "moat trace: cannot write %s: %s\n", o.html, err.msg);
        code = 1;
    }
    (void)rc;
    moat_client_result_clear(r);
    free(r);
    moat_client_opts_clear(&o);
    return code;
}
