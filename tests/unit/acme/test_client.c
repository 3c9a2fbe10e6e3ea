/*
 * test_client.c: the ACME client's helpers that need no CA: header fields and Link targets
 * of an answer, directory names, problem words, JSON members; and from lineage.c the renewal
 * time and the key kind names.
 */
#include "acme/client.h"

#include "acme/lineage.h"
#include "test.h"

#include <stdlib.h>

static struct moat_acme_resp resp_of(const char *head)
{
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    r.head = strdup(head);
    return r;
}

TEST_CASE(resp_field)
{
    struct moat_acme_resp r = resp_of("HTTP/1.1 201 Created\r\n"
                                      "Content-Type: application/json\r\n"
                                      "replay-nonce:   abc-DEF_1  \r\n"
                                      "X-Dup: one\r\n"
                                      "X-Foo: Location: not-a-field\r\n"
                                      "x-dup:two\r\n"
                                      "X-Empty:\r\n"
                                      "X-Tab:\t v \t\r\n"
                                      "Location: https://ca/order/1\r\n"
                                      "\r\n");
    char v[64];
    EXPECT_INT(moat_acme_resp_field(&r, "content-type", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "application/json");
    EXPECT_INT(moat_acme_resp_field(&r, "Replay-Nonce", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "abc-DEF_1");
    EXPECT_INT(moat_acme_resp_field(&r, "X-DUP", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "one");
    EXPECT_INT(moat_acme_resp_field(&r, "X-Dup", 1, v, sizeof(v)), 1);
    EXPECT_STR(v, "two");
    EXPECT_INT(moat_acme_resp_field(&r, "X-Dup", 2, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_field(&r, "X-Empty", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "");
    EXPECT_INT(moat_acme_resp_field(&r, "X-Tab", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "v");
    /* A name inside a value, the start of a name, the status line: none is a field. */
    EXPECT_INT(moat_acme_resp_field(&r, "Location", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://ca/order/1");
    EXPECT_INT(moat_acme_resp_field(&r, "Location", 1, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_field(&r, "Content", 0, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_field(&r, "HTTP/1.1 201 Created", 0, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_field(&r, "Missing", 0, v, sizeof(v)), 0);
    /* A value that does not fit is no value. */
    EXPECT_INT(moat_acme_resp_field(&r, "Location", 0, v, 18), 0);
    EXPECT_INT(moat_acme_resp_field(&r, "Location", 0, v, 19), 1);
    EXPECT_STR(v, "https://ca/order/1");
    EXPECT_INT(moat_acme_resp_field(&r, "Location", 0, v, 0), 0);
    moat_acme_resp_clear(&r);
    EXPECT(r.head == NULL);
    EXPECT_INT(r.retry_after_s, -1);
    EXPECT_INT(moat_acme_resp_field(&r, "Location", 0, v, sizeof(v)), 0); /* no head */
}

TEST_CASE(resp_link)
{
    struct moat_acme_resp r = resp_of("HTTP/1.1 200 OK\r\n"
                                      "Link: <https://a/x>;rel=\"alternate\", <https://a/y>; "
                                      "rel=\"up\"\r\n"
                                      "Link: <https://a/z>;rel=alternate\r\n"
                                      "\r\n");
    char v[128];
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/x");
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 1, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/z");
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 2, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_link(&r, "up", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/y");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 1, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_link(&r, "index", 0, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_link(&r, "ALTERNATE", 0, v, sizeof(v)), 1); /* any case */
    EXPECT_STR(v, "https://a/x");
    /* "https://a/x" and its NUL need 12 bytes. */
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 0, v, 11), 0);
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 0, v, 12), 1);
    moat_acme_resp_clear(&r);

    /* A rel list names each of its types; a type's prefix or a "prel" parameter does not. */
    r = resp_of("HTTP/1.1 200 OK\r\n"
                "Link: <https://a/m>;rel=\"up alternate\"\r\n"
                "Link: <https://a/n>; prel=up, <https://a/o>;rel=\"upper\"\r\n"
                "Link: <https://a/p> ; rel = \"index up\"\r\n"
                "\r\n");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/m");
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/m");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 1, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/p");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 2, v, sizeof(v)), 0);
    EXPECT_INT(moat_acme_resp_link(&r, "upper", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/o");
    EXPECT_INT(moat_acme_resp_link(&r, "alternate", 1, v, sizeof(v)), 0);
    moat_acme_resp_clear(&r);

    /* "rel" inside another parameter's value is not a rel; a quoted ',' ends nothing. */
    r = resp_of("HTTP/1.1 200 OK\r\n"
                "Link: <https://a/t>; title=\"rel=up\", <https://a/u>; title=\"a, b\"; rel=up\r\n"
                "\r\n");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 0, v, sizeof(v)), 1);
    EXPECT_STR(v, "https://a/u");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 1, v, sizeof(v)), 0);
    moat_acme_resp_clear(&r);

    /* No Link at all, and a broken one. */
    r = resp_of("HTTP/1.1 200 OK\r\nLink: <https://a/broken;rel=up\r\n\r\n");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 0, v, sizeof(v)), 0);
    moat_acme_resp_clear(&r);
    r = resp_of("HTTP/1.1 200 OK\r\n\r\n");
    EXPECT_INT(moat_acme_resp_link(&r, "up", 0, v, sizeof(v)), 0);
    moat_acme_resp_clear(&r);
}

TEST_CASE(directory_url)
{
    EXPECT_STR(moat_acme_directory_url("staging"), MOAT_ACME_LE_STAGING);
    EXPECT_STR(moat_acme_directory_url("letsencrypt-staging"), MOAT_ACME_LE_STAGING);
    EXPECT_STR(moat_acme_directory_url("production"), MOAT_ACME_LE_PRODUCTION);
    EXPECT_STR(moat_acme_directory_url("letsencrypt"), MOAT_ACME_LE_PRODUCTION);
    EXPECT_STR(moat_acme_directory_url(NULL), MOAT_ACME_LE_PRODUCTION);
    EXPECT_STR(MOAT_ACME_LE_STAGING, "https://acme-staging-v02.api.letsencrypt.org/directory");
    EXPECT_STR(MOAT_ACME_LE_PRODUCTION, "https://acme-v02.api.letsencrypt.org/directory");
    static const char url[] = "https://acme.example/dir";
    EXPECT(moat_acme_directory_url(url) == url);
    EXPECT_STR(moat_acme_directory_url("https://localhost:14000/dir"),
               "https://localhost:14000/dir");
}

TEST_CASE(problem_words)
{
    EXPECT_STR(moat_acme_problem_words("badNonce"), "the CA refused the request's nonce");
    EXPECT_STR(moat_acme_problem_words("rateLimited"), "the CA's rate limit was reached");
    EXPECT_STR(moat_acme_problem_words("caa"), "a CAA record for the name forbids this CA");
    EXPECT_STR(moat_acme_problem_words("userActionRequired"),
               "the CA needs a person to act (usually: agree to new terms)");
    EXPECT_STR(moat_acme_problem_words("accountDoesNotExist"),
               "the CA has no account for this key");
    /* Anything else: the generic words, never NULL. */
    EXPECT_STR(moat_acme_problem_words("somethingNew"), "the CA refused the request");
    EXPECT_STR(moat_acme_problem_words(""), "the CA refused the request");
    EXPECT_STR(moat_acme_problem_words("badnonce"), "the CA refused the request");
}

TEST_CASE(json_str)
{
    json_t *o =
        json_loads("{\"a\":\"x\",\"n\":1,\"z\":null,\"o\":{\"a\":\"inner\"},\"e\":\"\"}", 0, NULL);
    EXPECT(o != NULL);
    EXPECT_STR(moat_acme_json_str(o, "a"), "x");
    EXPECT_STR(moat_acme_json_str(o, "e"), "");
    EXPECT(moat_acme_json_str(o, "n") == NULL);
    EXPECT(moat_acme_json_str(o, "z") == NULL);
    EXPECT(moat_acme_json_str(o, "o") == NULL);
    EXPECT(moat_acme_json_str(o, "missing") == NULL);
    EXPECT(moat_acme_json_str(NULL, "a") == NULL);
    json_t *arr = json_loads("[\"a\"]", 0, NULL);
    EXPECT(moat_acme_json_str(arr, "a") == NULL);
    json_t *s = json_string("a");
    EXPECT(moat_acme_json_str(s, "a") == NULL);
    json_decref(s);
    json_decref(arr);
    json_decref(o);
}

TEST_CASE(renew_at)
{
    const time_t day = 86400, hour = 3600;
    const time_t nb = 1700000123; /* not on the hour */
    /* 90 days: renew with 30 days left, rounded down to the hour. */
    time_t na = nb + 90 * day;
    time_t at = moat_acme_renew_at(nb, na);
    time_t want = na - 30 * day;
    want -= want % hour;
    EXPECT_INT(at, want);
    EXPECT_INT(at % hour, 0);
    EXPECT(na - at >= 30 * day && na - at < 30 * day + hour);
    /* 6 days: 2 days left, on the hour. */
    na = nb + 6 * day;
    at = moat_acme_renew_at(nb, na);
    want = na - 2 * day;
    want -= want % hour;
    EXPECT_INT(at, want);
    EXPECT_INT(at % hour, 0);
    EXPECT(na - at >= 2 * day && na - at < 2 * day + hour);
    /* One hour: at 40 minutes, not rounded (that would be before the start). */
    EXPECT_INT(moat_acme_renew_at(nb, nb + hour), nb + 40 * 60);
    /* Just under 3 hours: a third left, exactly. */
    EXPECT_INT(moat_acme_renew_at(nb, nb + 3 * hour - 3), nb + 2 * hour - 2);
    /* 3 hours: an hour left, rounded down, still after the start. */
    at = moat_acme_renew_at(nb, nb + 3 * hour);
    EXPECT_INT(at % hour, 0);
    EXPECT(at > nb && at <= nb + 2 * hour);
    /* No life at all. */
    EXPECT_INT(moat_acme_renew_at(nb, nb), nb);
    EXPECT_INT(moat_acme_renew_at(nb, nb - day), nb);
}

TEST_CASE(kind_names)
{
    static const struct {
        const char *s;
        int k;
    } v[] = {{"ecdsa", MOAT_ACME_ECDSA},
             {"p256", MOAT_ACME_ECDSA},
             {"ec", MOAT_ACME_ECDSA},
             {"ecdsa-p256", MOAT_ACME_ECDSA},
             {"rsa", MOAT_ACME_RSA},
             {"rsa2048", MOAT_ACME_RSA},
             {"", -1},
             {"p384", -1},
             {"rsa4096", -1},
             {"ecdsa ", -1},
             {"ed25519", -1}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (moat_acme_kind_parse(v[i].s) != v[i].k) {
            fprintf(stderr, "  kind \"%s\"\n", v[i].s);
        }
        EXPECT_INT(moat_acme_kind_parse(v[i].s), v[i].k);
    }
    EXPECT_STR(moat_acme_kind_name(MOAT_ACME_ECDSA), "ecdsa");
    EXPECT_STR(moat_acme_kind_name(MOAT_ACME_RSA), "rsa");
    for (int k = 0; k < MOAT_ACME_KIND_COUNT; k++) {
        EXPECT_INT(moat_acme_kind_parse(moat_acme_kind_name((enum moat_acme_kind)k)), k);
    }
}

TEST_CASE(lineage_prefix)
{
    char out[64];
    EXPECT_STR(moat_acme_lineage_prefix("*.example.com", out, sizeof(out)),
               "acme/certs/=2a.example.com");
    EXPECT_STR(moat_acme_lineage_prefix("example.com", out, sizeof(out)), "acme/certs/example.com");
    EXPECT_INT(moat_store_key_check(out, 0, NULL).kind, MOAT_OK);
    EXPECT(moat_acme_lineage_prefix("example.com", out, 22) == NULL); /* needs 23 */
    EXPECT_STR(moat_acme_lineage_prefix("example.com", out, 23), "acme/certs/example.com");
}

int main(void)
{
    RUN(resp_field);
    RUN(resp_link);
    RUN(directory_url);
    RUN(problem_words);
    RUN(json_str);
    RUN(renew_at);
    RUN(kind_names);
    RUN(lineage_prefix);
    TEST_MAIN_END();
}
