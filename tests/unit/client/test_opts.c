/*
 * test_opts.c: the command line of `moat get` / `moat trace`: every option, the --opt=value
 * form, and the refusals (unknown options, missing values, bad versions, timeouts, --resolve).
 */
#include "client/opts.h"

#include "test.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static moat_rc parse(struct moat_client_opts *o, int trace, int *help, struct moat_err *err,
                     const char *const *args, int n)
{
    char *argv[MOAT_CLIENT_MAX_HEADERS * 2 + 8];
    argv[0] = (char *)"get";
    for (int i = 0; i < n; i++) {
        argv[i + 1] = (char *)args[i];
    }
    moat_client_opts_init(o);
    return moat_client_opts_parse(o, n + 1, argv, trace, help, err);
}

#define PARSE(o, trace, help, err, ...)                                                            \
    parse((o), (trace), (help), (err), (const char *const[]){__VA_ARGS__},                         \
          (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

TEST_CASE(every_option)
{
    struct moat_client_opts o;
    struct moat_err err = {0};
    int help = 0;
    moat_rc rc =
        PARSE(&o, 1, &help, &err, "--cafile", "ca.pem", "--crl=c.pem", "--cert", "c.pem", "--key",
              "k.pem", "--resolve", "Example.com:443:127.0.0.1", "--resolve=x.test:8443:[::1]",
              "-o", "out", "-X", "PUT", "-H", "A: 1", "--header", "B: 2", "--data-binary", "raw",
              "--tls-min", "1.2", "--tls-max=1.3", "-L", "--max-redirs", "3", "-k", "--timeout",
              "2.5", "--no-default-trust", "--state", "/s", "--json", "https://example.com/");
    EXPECT_INT(rc.kind, MOAT_OK);
    EXPECT_STR(o.cafile, "ca.pem");
    EXPECT_STR(o.crl, "c.pem");
    EXPECT_STR(o.cert, "c.pem");
    EXPECT_STR(o.key, "k.pem");
    EXPECT_INT(o.nresolve, 2);
    EXPECT_STR(o.resolve[0].host, "example.com");
    EXPECT_INT(o.resolve[0].port, 443);
    EXPECT_STR(o.resolve[0].addr, "127.0.0.1");
    EXPECT_STR(o.resolve[1].addr, "::1");
    EXPECT_STR(o.output, "out");
    EXPECT_STR(o.method, "PUT");
    EXPECT_INT(o.nheaders, 2);
    EXPECT_STR(o.headers[1], "B: 2");
    EXPECT_INT(o.body_len, 3);
    EXPECT(o.body != NULL && memcmp(o.body, "raw", 3) == 0);
    EXPECT_INT(o.body_is_form, 0);
    EXPECT_INT(o.tls_min, TLS1_2_VERSION);
    EXPECT_INT(o.tls_max, TLS1_3_VERSION);
    EXPECT_INT(o.follow, 1);
    EXPECT_INT(o.max_redirs, 3);
    EXPECT_INT(o.insecure, 1);
    EXPECT_INT(o.timeout_ms, 2500);
    EXPECT_INT(o.no_default_trust, 1);
    EXPECT_STR(o.state_dir, "/s");
    EXPECT_INT(o.json, 1);
    EXPECT_STR(o.url, "https://example.com/");
    EXPECT_INT(help, 0);
    moat_client_opts_clear(&o);
}

TEST_CASE(defaults_and_help)
{
    struct moat_client_opts o;
    struct moat_err err = {0};
    int help = 0;
    EXPECT_INT(PARSE(&o, 0, &help, &err, "https://x.test/").kind, MOAT_OK);
    EXPECT_INT(o.timeout_ms, 30000);
    EXPECT_INT(o.max_redirs, 10);
    EXPECT_INT(o.follow, 0);
    EXPECT_INT(o.insecure, 0);
    EXPECT_INT(o.http2, 0); /* HTTP/1.1 unless asked */
    EXPECT(o.method == NULL && o.body == NULL);
    EXPECT_INT(PARSE(&o, 0, &help, &err, "--http2", "https://x.test/").kind, MOAT_OK);
    EXPECT_INT(o.http2, 1);
    EXPECT_INT(PARSE(&o, 1, &help, &err, "https://x.test/", "--http2").kind, MOAT_OK);
    EXPECT_INT(o.http2, 1);
    EXPECT_INT(PARSE(&o, 0, &help, &err, "--http2=yes", "https://x.test/").kind, MOAT_E_USAGE);
    EXPECT_INT(PARSE(&o, 0, &help, &err, "--nope", "-h").kind, MOAT_E_USAGE);
    EXPECT_INT(PARSE(&o, 0, &help, &err, "-h", "--nope").kind, MOAT_OK);
    EXPECT_INT(help, 1);
    EXPECT(strstr(moat_client_usage(0), "usage: moat get") != NULL);
    EXPECT(strstr(moat_client_usage(1), "--json") != NULL);
    EXPECT(strstr(moat_client_usage(0), "--json") == NULL);
    EXPECT(strstr(moat_client_usage(0), "--http2") != NULL);
    EXPECT(strstr(moat_client_usage(1), "--http2") != NULL);
}

TEST_CASE(form_data_and_files)
{
    struct moat_client_opts o;
    struct moat_err err = {0};
    int help = 0;
    EXPECT_INT(PARSE(&o, 0, &help, &err, "-d", "a=1", "https://x.test/").kind, MOAT_OK);
    EXPECT_INT(o.body_is_form, 1);
    EXPECT_INT(o.body_len, 3);
    moat_client_opts_clear(&o);

    char path[] = "/tmp/moat-test-opts-XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0);
    EXPECT_INT(write(fd, "a\0b", 3), 3);
    close(fd);
    char arg[64];
    snprintf(arg, sizeof(arg), "@%s", path);
    EXPECT_INT(PARSE(&o, 0, &help, &err, "--data-binary", arg, "https://x.test/").kind, MOAT_OK);
    EXPECT_INT(o.body_len, 3);
    EXPECT(o.body != NULL && memcmp(o.body, "a\0b", 3) == 0);
    moat_client_opts_clear(&o);
    unlink(path);
    EXPECT_INT(PARSE(&o, 0, &help, &err, "--data-binary", arg, "https://x.test/").kind,
               MOAT_E_NOTFOUND);
    moat_client_opts_clear(&o);
    /* A second body is refused, and the first is freed by clear. */
    EXPECT_INT(PARSE(&o, 0, &help, &err, "-d", "a", "-d", "b", "https://x.test/").kind,
               MOAT_E_USAGE);
    moat_client_opts_clear(&o);
}

static void refused(const char *const *args, int n, int trace, const char *words)
{
    struct moat_client_opts o;
    struct moat_err err = {0};
    int help = 0;
    moat_rc rc = parse(&o, trace, &help, &err, args, n);
    if (rc.kind == MOAT_OK || strstr(err.msg, words) == NULL) {
        TEST__FAIL("%s...: kind %d, \"%s\", expected \"%s\"", args[0], rc.kind, err.msg, words);
    }
    moat_client_opts_clear(&o);
}

#define REFUSED(trace, words, ...)                                                                 \
    refused((const char *const[]){__VA_ARGS__},                                                    \
            (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)), (trace),     \
            (words))

TEST_CASE(refusals)
{
    REFUSED(0, "give a URL", "-L");
    REFUSED(0, "one URL only", "https://a/", "https://b/");
    REFUSED(0, "unknown option", "--json", "https://a/");
    REFUSED(1, "unknown option", "--jsonx", "https://a/");
    REFUSED(0, "needs a value", "https://a/", "-o");
    REFUSED(0, "takes no value", "--insecure=yes", "https://a/");
    REFUSED(0, "RFC 8996", "--tls-min", "1.0", "https://a/");
    REFUSED(0, "RFC 8996", "--tls-max", "1.1", "https://a/");
    REFUSED(0, "1.2 or 1.3", "--tls-max", "TLSv1.3", "https://a/");
    REFUSED(0, "above", "--tls-min", "1.3", "--tls-max", "1.2", "https://a/");
    REFUSED(0, "seconds", "--timeout", "0", "https://a/");
    REFUSED(0, "seconds", "--timeout", "-1", "https://a/");
    REFUSED(0, "seconds", "--timeout", "1x", "https://a/");
    REFUSED(0, "seconds", "--timeout", "nan", "https://a/");
    REFUSED(0, "seconds", "--timeout", "999999", "https://a/");
    REFUSED(0, "HOST:PORT:ADDR", "--resolve", "a:1", "https://a/");
    REFUSED(0, "HOST:PORT:ADDR", "--resolve", ":1:2", "https://a/");
    REFUSED(0, "HOST:PORT:ADDR", "--resolve", "a::2", "https://a/");
    REFUSED(0, "HOST:PORT:ADDR", "--resolve", "a:1:", "https://a/");
    REFUSED(0, "1 to 65535", "--resolve", "a:0:1.2.3.4", "https://a/");
    REFUSED(0, "1 to 65535", "--resolve", "a:70000:1.2.3.4", "https://a/");
    REFUSED(0, "1 to 65535", "--resolve", "a:x:1.2.3.4", "https://a/");
    REFUSED(0, "empty or too long", "--resolve", "a:1:[]", "https://a/");
    REFUSED(0, "--max-redirs", "--max-redirs", "11", "https://a/");
    REFUSED(0, "--max-redirs", "--max-redirs", "-1", "https://a/");
    REFUSED(0, "--key goes with --cert", "--key", "k", "https://a/");
    REFUSED(0, "cannot send a body", "-I", "-d", "x", "https://a/");
}

TEST_CASE(too_many_headers_and_resolves)
{
    const char *args[MOAT_CLIENT_MAX_HEADERS * 2 + 4];
    int n = 0;
    for (int i = 0; i <= MOAT_CLIENT_MAX_HEADERS; i++) {
        args[n++] = "-H";
        args[n++] = "A: 1";
    }
    args[n++] = "https://a/";
    refused(args, n, 0, "at most");
    n = 0;
    for (int i = 0; i <= MOAT_CLIENT_MAX_RESOLVE; i++) {
        args[n++] = "--resolve";
        args[n++] = "a:1:127.0.0.1";
    }
    args[n++] = "https://a/";
    refused(args, n, 0, "at most");
}

int main(void)
{
    RUN(every_option);
    RUN(defaults_and_help);
    RUN(form_data_and_files);
    RUN(refusals);
    RUN(too_many_headers_and_resolves);
    TEST_MAIN_END();
}
