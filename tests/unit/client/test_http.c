/*
 * test_http.c: the request head the client writes: defaults, user fields replacing or removing
 * them, the body's framing, and the refusals that keep -H from injecting fields.
 */
#include "client/http.h"

#include "test.h"

static char head[8192];

static moat_rc build(const char *method, const char *url, const char *const *hdrs, size_t n,
                     const char *body, int form, struct moat_err *err)
{
    struct moat_client_url u;
    moat_rc rc = moat_client_url_parse(url, &u, err);
    if (!moat_ok(rc)) {
        return rc;
    }
    struct moat_client_req rq = {
        .method = method,
        .url = &u,
        .headers = hdrs,
        .nheaders = n,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .body_is_form = form,
    };
    struct moat_buf b;
    moat_buf_init(&b, sizeof(head) - 1);
    rc = moat_client_http_build(&rq, &b, err);
    head[0] = '\0';
    if (moat_ok(rc)) {
        memcpy(head, moat_buf_rdptr(&b), moat_buf_len(&b));
        head[moat_buf_len(&b)] = '\0';
    }
    moat_buf_clear(&b);
    return rc;
}

TEST_CASE(defaults)
{
    struct moat_err err = {0};
    EXPECT_INT(build("GET", "https://example.test/a?b", NULL, 0, NULL, 0, &err).kind, MOAT_OK);
    EXPECT_STR(head, "GET /a?b HTTP/1.1\r\n"
                     "Host: example.test\r\n"
                     "User-Agent: moat/" MOAT_VERSION "\r\n"
                     "Accept: */*\r\n"
                     "Connection: close\r\n"
                     "\r\n");
    EXPECT_INT(build("GET", "https://[::1]:8443/", NULL, 0, NULL, 0, &err).kind, MOAT_OK);
    EXPECT(strstr(head, "\r\nHost: [::1]:8443\r\n") != NULL);
}

TEST_CASE(user_fields_replace_and_remove)
{
    struct moat_err err = {0};
    const char *h[] = {"accept: text/plain", "User-Agent:", "X-One: 1", "X-One: 2",
                       "Host:  other.test  "};
    EXPECT_INT(build("GET", "https://example.test/", h, 5, NULL, 0, &err).kind, MOAT_OK);
    EXPECT(strstr(head, "Accept: */*") == NULL);
    EXPECT(strstr(head, "accept: text/plain\r\n") != NULL);
    EXPECT(strstr(head, "User-Agent") == NULL);
    EXPECT(strstr(head, "X-One: 1\r\n") != NULL);
    EXPECT(strstr(head, "X-One: 2") == NULL); /* the first line for a name wins */
    EXPECT(strstr(head, "Host: other.test\r\n") != NULL);
    EXPECT(strstr(head, "Host: example.test") == NULL);
}

TEST_CASE(bodies)
{
    struct moat_err err = {0};
    EXPECT_INT(build("POST", "https://example.test/", NULL, 0, "a=1", 1, &err).kind, MOAT_OK);
    EXPECT(strstr(head, "Content-Type: application/x-www-form-urlencoded\r\n") != NULL);
    EXPECT(strstr(head, "Content-Length: 3\r\n") != NULL);
    EXPECT_INT(build("POST", "https://example.test/", NULL, 0, "", 0, &err).kind, MOAT_OK);
    EXPECT(strstr(head, "Content-Length: 0\r\n") != NULL);
    EXPECT(strstr(head, "Content-Type") == NULL);
    const char *h[] = {"Content-Type: application/json"};
    EXPECT_INT(build("PUT", "https://example.test/", h, 1, "{}", 1, &err).kind, MOAT_OK);
    EXPECT(strstr(head, "x-www-form-urlencoded") == NULL);
    EXPECT(strstr(head, "Content-Type: application/json\r\n") != NULL);
}

static void refused(const char *method, const char *hdr, const char *words)
{
    struct moat_err err = {0};
    const char *h[] = {hdr};
    moat_rc rc = build(method, "https://example.test/", h, hdr ? 1 : 0, NULL, 0, &err);
    if (rc.kind != MOAT_E_USAGE || strstr(err.msg, words) == NULL) {
        TEST__FAIL("%s / %s: kind %d \"%s\", expected \"%s\"", method, hdr ? hdr : "-", rc.kind,
                   err.msg, words);
    }
}

TEST_CASE(refusals)
{
    refused("GE T", NULL, "not a valid token");
    refused("", NULL, "not a valid token");
    refused("GET\r\n", NULL, "not a valid token");
    refused("GET", "NoColon", "no colon");
    refused("GET", "Bad Name: x", "not a token");
    refused("GET", ": x", "not a token");
    refused("GET", "X: a\r\nInjected: b", "control character");
    refused("GET", "X: a\nb", "control character");
    refused("GET", "X: a\x01", "control character");
    refused("GET", "X: a\x7f", "control character");
    refused("GET", "Content-Length: 3", "Content-Length");
    refused("GET", "transfer-encoding: chunked", "Content-Length");
    struct moat_err err = {0};
    const char *h[] = {"X: tab\tok"};
    EXPECT_INT(build("GET", "https://example.test/", h, 1, NULL, 0, &err).kind, MOAT_OK);
}

TEST_CASE(head_over_the_buffer_limit)
{
    struct moat_err err = {0};
    static char big[9000];
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'v', sizeof(big) - 8);
    big[sizeof(big) - 1] = '\0';
    const char *h[] = {big};
    EXPECT_INT(build("GET", "https://example.test/", h, 1, NULL, 0, &err).kind, MOAT_E_LIMIT);
}

int main(void)
{
    RUN(defaults);
    RUN(user_fields_replace_and_remove);
    RUN(bodies);
    RUN(refusals);
    RUN(head_over_the_buffer_limit);
    TEST_MAIN_END();
}
