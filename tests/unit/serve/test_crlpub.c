/*
 * test_crlpub.c: publishing CRLs (serve/crlpub.c) and the crl_publish directive (serve/conf.c):
 * the directive's values and its refusals at "file:line:col"; which entry answers a path
 * (the site's own, any site's on the plain listener only, after normalising); the answers
 * (200 with DER and validators, HEAD, 304 by ETag and by date, 404, 405, OPTIONS, no caching
 * once expired); and building from a CA folder: the file `moat ca crl` wrote, a missing file,
 * bad folders, a damaged CRL, and moat's local CA, whose CRL the server makes itself.
 */
#include "serve/crlpub.h"

#include "http1/parse.h"
#include "pki/ca.h"
#include "pki/crl.h"
#include "pki/pki_helpers.h"
#include "serve/conf.h"
#include "test.h"

static struct moat_conf *parse(const char *text, struct moat_err *err)
{
    struct moat_conf *c = NULL;
    moat_rc rc = moat_conf_parse("m.conf", text, strlen(text), "/etc/moat", &c, err);
    return moat_ok(rc) ? c : NULL;
}

TEST_CASE(directive)
{
    struct moat_err err = {0};
    struct moat_conf *c = parse("site a.test {\n"
                                "  root /srv\n"
                                "  crl_publish /crl//x/../ca.crl ca\n"
                                "  crl_publish /crl/root.crl /abs/ca root\n"
                                "  crl_publish /crl/local.crl local intermediate\n"
                                "}\n",
                                &err);
    if (c == NULL) {
        TEST__FAIL("parse failed: %s: %s", err.where, err.msg);
        return;
    }
    const struct moat_conf_site *s = &c->sites[0];
    EXPECT_INT(s->ncrl_publish, 3);
    if (s->ncrl_publish == 3) {
        EXPECT_STR(s->crl_publish[0].path, "/crl/ca.crl");
        EXPECT_STR(s->crl_publish[0].ca_dir, "/etc/moat/ca");
        EXPECT_INT(s->crl_publish[0].root, 0);
        EXPECT_STR(s->crl_publish[0].where, "m.conf:3:33");
        EXPECT_STR(s->crl_publish[1].ca_dir, "/abs/ca");
        EXPECT_INT(s->crl_publish[1].root, 1);
        EXPECT(s->crl_publish[2].ca_dir == NULL);
        EXPECT_INT(s->crl_publish[2].root, 0);
    }
    moat_conf_free(c);

    static const struct {
        const char *line, *where, *says;
    } bad[] = {
        {"crl_publish crl/ca.crl ca", "m.conf:3:15", "URL path of the CRL"},
        {"crl_publish /crl/a.crl?x ca", "m.conf:3:15", "URL path of the CRL"},
        {"crl_publish /../a.crl ca", "m.conf:3:15", "URL path of the CRL"},
        {"crl_publish /crl/ ca", "m.conf:3:15", "names a folder"},
        {"crl_publish / ca", "m.conf:3:15", "names a folder"},
        {"crl_publish /c.crl ~/ca", "m.conf:3:22", "does not expand ~"},
        {"crl_publish /c.crl ca both", "m.conf:3:25", "\"root\""},
        {"crl_publish /c.crl", "m.conf:3:3", "takes 2 to 3 arguments"},
        {"crl_publish /c.crl ca root x", "m.conf:3:30", "takes 2 to 3 arguments"},
        {"crl_publish /c.crl ca\n  crl_publish /x/../c.crl ca2", "m.conf:4:15",
         "already published in this site (m.conf:3:22)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), "site a.test {\n  root /srv\n  %s\n}\n", bad[i].line);
        err = (struct moat_err){0};
        c = parse(text, &err);
        if (c != NULL || err.kind != MOAT_E_CONFIG || strcmp(err.where, bad[i].where) != 0 ||
            strstr(err.msg, bad[i].says) == NULL) {
            TEST__FAIL("case %zu: kind %d at \"%s\": \"%s\"", i, (int)err.kind, err.where, err.msg);
        }
        moat_conf_free(c);
    }
    /* Only inside a site. */
    c = parse("crl_publish /c.crl ca\nsite a.test { root /srv }\n", &err);
    EXPECT(c == NULL && strcmp(err.where, "m.conf:1:1") == 0);
    moat_conf_free(c);
}

/* The path as the session hands it over: decoded and normalised (moat_req_normalize). */
static moat_slice np(const char *raw)
{
    static char bufs[8][MOAT_REQ_PATH_CAP + 1];
    static int next;
    struct moat_req req = {.path = moat_slice_cstr(raw)};
    moat_req_normalize(&req, bufs[next++ % 8]);
    return req.npath;
}

TEST_CASE(find)
{
    struct moat_conf_site sa = {0}, sb = {0};
    struct moat_conf_crl_publish ca = {.path = "/crl/a.crl"}, cb = {.path = "/crl/b.crl"},
                                 cb2 = {.path = "/crl/a.crl"};
    struct moat_crlpub v[3] = {
        {.site = &sa, .conf = &ca}, {.site = &sb, .conf = &cb}, {.site = &sb, .conf = &cb2}};
    struct moat_crlpub_set set = {.v = v, .n = 3};
    EXPECT(moat_crlpub_find(NULL, &sa, np("/crl/a.crl"), 1) == NULL);
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl/a.crl"), 0) == &v[0]);
    EXPECT(moat_crlpub_find(&set, &sb, np("/crl/a.crl"), 0) == &v[2]);
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl/%62.crl"), 0) == NULL);
    /* Over HTTPS a site answers only its own paths; the plain listener finds any site's. */
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl/b.crl"), 0) == NULL);
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl/%62.crl"), 1) == &v[1]);
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl//./x/../b.crl"), 1) == &v[1]);
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl/b.crl/"), 1) == NULL);
    EXPECT(moat_crlpub_find(&set, &sa, np("/crl/c.crl"), 1) == NULL);
    EXPECT(moat_crlpub_find(&set, &sa, np("/../crl/a.crl"), 1) == NULL);
    char longpath[3000];
    memset(longpath, 'a', sizeof(longpath));
    longpath[0] = '/';
    EXPECT(moat_crlpub_find(&set, &sa, moat_slice_of(longpath, sizeof(longpath)), 1) == NULL);
}

static int has_line(const struct moat_buf *b, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "%s\r\n", line);
    return memmem(moat_buf_rdptr(b), moat_buf_len(b), want, strlen(want)) != NULL;
}

struct answer {
    int status;
    uint64_t length;
    struct moat_buf hdrs, body;
};

static void ask(const struct moat_crlpub *p, int method, const char *inm, const char *ims,
                time_t now, struct answer *a)
{
    moat_buf_clear(&a->hdrs);
    moat_buf_clear(&a->body);
    moat_buf_init(&a->hdrs, 4096);
    moat_buf_init(&a->body, 1 << 20);
    moat_rc rc = moat_crlpub_respond(p, method, moat_slice_cstr(inm), moat_slice_cstr(ims), now,
                                     &a->status, &a->length, &a->hdrs, &a->body);
    EXPECT_INT(rc.kind, MOAT_OK);
}

TEST_CASE(respond)
{
    static const unsigned char der[] = {0x30, 0x03, 0x02, 0x01, 0x07};
    struct moat_crlpub p = {.der = (unsigned char *)der,
                            .der_len = sizeof(der),
                            .etag = "\"0123abcd\"",
                            .etag_len = 10,
                            .this_update = 1000000000,
                            .next_update = 1000604800};
    EXPECT_INT(moat_httpdate_format(p.this_update, p.last_modified, sizeof(p.last_modified)).kind,
               MOAT_OK);
    EXPECT_INT(moat_httpdate_format(p.next_update, p.expires, sizeof(p.expires)).kind, MOAT_OK);
    time_t now = 1000000100;
    struct answer a = {0};

    ask(&p, MOAT_HTTP_M_GET, NULL, NULL, now, &a);
    EXPECT_INT(a.status, 200);
    EXPECT_INT(a.length, sizeof(der));
    EXPECT(moat_buf_len(&a.body) == sizeof(der) &&
           memcmp(moat_buf_rdptr(&a.body), der, sizeof(der)) == 0);
    EXPECT(has_line(&a.hdrs, "Content-Type: application/pkix-crl"));
    EXPECT(has_line(&a.hdrs, "ETag: \"0123abcd\""));
    EXPECT(has_line(&a.hdrs, "Last-Modified: Sun, 09 Sep 2001 01:46:40 GMT"));
    EXPECT(has_line(&a.hdrs, "Expires: Sun, 16 Sep 2001 01:46:40 GMT"));
    EXPECT(has_line(&a.hdrs, "Cache-Control: public, max-age=604700"));

    ask(&p, MOAT_HTTP_M_HEAD, NULL, NULL, now, &a);
    EXPECT_INT(a.status, 200);
    EXPECT_INT(a.length, sizeof(der));
    EXPECT_INT(moat_buf_len(&a.body), 0);

    ask(&p, MOAT_HTTP_M_GET, "\"0123abcd\"", NULL, now, &a);
    EXPECT_INT(a.status, 304);
    EXPECT_INT(moat_buf_len(&a.body), 0);
    EXPECT(has_line(&a.hdrs, "ETag: \"0123abcd\""));
    EXPECT(!has_line(&a.hdrs, "Content-Type: application/pkix-crl"));
    ask(&p, MOAT_HTTP_M_GET, " \"x\", W/\"0123abcd\" ", NULL, now, &a);
    EXPECT_INT(a.status, 304);
    ask(&p, MOAT_HTTP_M_GET, "*", NULL, now, &a);
    EXPECT_INT(a.status, 304);
    ask(&p, MOAT_HTTP_M_GET, "\"0123abcc\"", NULL, now, &a);
    EXPECT_INT(a.status, 200);
    ask(&p, MOAT_HTTP_M_GET, "\"0123abcd", NULL, now, &a); /* unterminated: no match */
    EXPECT_INT(a.status, 200);

    ask(&p, MOAT_HTTP_M_GET, NULL, "Sun, 09 Sep 2001 01:46:40 GMT", now, &a);
    EXPECT_INT(a.status, 304);
    ask(&p, MOAT_HTTP_M_GET, NULL, "Sun, 09 Sep 2001 01:46:39 GMT", now, &a);
    EXPECT_INT(a.status, 200);
    ask(&p, MOAT_HTTP_M_GET, NULL, "yesterday", now, &a);
    EXPECT_INT(a.status, 200);
    /* If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3). */
    ask(&p, MOAT_HTTP_M_GET, "\"other\"", "Sun, 09 Sep 2001 01:46:40 GMT", now, &a);
    EXPECT_INT(a.status, 200);

    ask(&p, MOAT_HTTP_M_GET, NULL, NULL, p.next_update + 1, &a);
    EXPECT_INT(a.status, 200);
    EXPECT(has_line(&a.hdrs, "Cache-Control: no-cache"));

    ask(&p, MOAT_HTTP_M_POST, NULL, NULL, now, &a);
    EXPECT_INT(a.status, 405);
    EXPECT(has_line(&a.hdrs, "Allow: GET, HEAD, OPTIONS"));
    EXPECT_INT(a.length, moat_buf_len(&a.body));
    ask(&p, MOAT_HTTP_M_OPTIONS, NULL, NULL, now, &a);
    EXPECT_INT(a.status, 204);
    EXPECT(has_line(&a.hdrs, "Allow: GET, HEAD, OPTIONS"));

    struct moat_crlpub none = {0};
    ask(&none, MOAT_HTTP_M_GET, NULL, NULL, now, &a);
    EXPECT_INT(a.status, 404);
    EXPECT(a.length > 0 && a.length == moat_buf_len(&a.body));
    ask(&none, MOAT_HTTP_M_HEAD, NULL, NULL, now, &a);
    EXPECT_INT(a.status, 404);
    EXPECT_INT(moat_buf_len(&a.body), 0);
    moat_buf_clear(&a.hdrs);
    moat_buf_clear(&a.body);
}

/* The DER of the first CRL in a PEM file, malloc'ed. */
static unsigned char *file_der(const char *path, size_t *len)
{
    STACK_OF(X509_CRL) *crls = NULL;
    *len = 0;
    if (!moat_ok(moat_crl_load(path, &crls, NULL))) {
        return NULL;
    }
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(sk_X509_CRL_value(crls, 0), &der);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    *len = n > 0 ? (size_t)n : 0;
    return der;
}

static moat_rc build(const char *conf_text, const char *state, struct moat_crlpub_set **set,
                     time_t *refresh, struct moat_conf **conf, struct moat_err *err)
{
    *conf = parse(conf_text, err);
    if (*conf == NULL) {
        return moat_rc_of(err->kind);
    }
    return moat_crlpub_build(*conf, state, 1, 0, set, refresh, err);
}

TEST_CASE(build_from_folder)
{
    struct moat_ca *ca = NULL;
    EXPECT_INT(moat_ca_init(ph_path("ca"), NULL, &ca, NULL).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    mkdir(ph_path("state"), 0700);
    char text[1024];
    snprintf(text, sizeof(text),
             "site a.test {\n  root /srv\n  crl_publish /crl/ca.crl %s\n"
             "  crl_publish /crl/root.crl %s root\n}\n",
             ph_path("ca"), ph_path("ca"));
    struct moat_crlpub_set *set = NULL;
    struct moat_conf *conf = NULL;
    struct moat_err err = {0};
    time_t refresh = 0;

    /* No CRL written yet: published as 404, not refused. */
    EXPECT_INT(build(text, ph_path("state"), &set, &refresh, &conf, &err).kind, MOAT_OK);
    EXPECT(set != NULL && set->n == 2 && set->v[0].der == NULL && set->v[1].der == NULL);
    EXPECT_INT(refresh, 0); /* not moat's local CA: the server never signs */
    EXPECT(access(ph_path("ca/crl.pem"), F_OK) != 0);
    moat_crlpub_free(set);
    moat_conf_free(conf);

    X509_CRL *crl = NULL, *root_crl = NULL;
    EXPECT_INT(moat_crl_make(ca, 0, 7, 0, &crl, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_write(ph_path("ca/crl.pem"), &crl, 1, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_make(ca, 1, 7, 0, &root_crl, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_write(ph_path("ca/root-crl.pem"), &root_crl, 1, NULL).kind, MOAT_OK);
    set = NULL;
    EXPECT_INT(build(text, ph_path("state"), &set, &refresh, &conf, &err).kind, MOAT_OK);
    size_t len = 0, rlen = 0;
    unsigned char *der = file_der(ph_path("ca/crl.pem"), &len);
    unsigned char *rder = file_der(ph_path("ca/root-crl.pem"), &rlen);
    if (set != NULL && set->n == 2 && der != NULL && rder != NULL) {
        EXPECT(set->v[0].der_len == len && memcmp(set->v[0].der, der, len) == 0);
        EXPECT(set->v[1].der_len == rlen && memcmp(set->v[1].der, rder, rlen) == 0);
        EXPECT(set->v[0].site == &conf->sites[0]);
        EXPECT_INT(set->v[0].etag_len, 34);
        EXPECT(strcmp(set->v[0].etag, set->v[1].etag) != 0);
        EXPECT_INT(set->v[0].this_update, moat_ca_asn1_time(X509_CRL_get0_lastUpdate(crl)));
        EXPECT_INT(set->v[0].next_update, moat_ca_asn1_time(X509_CRL_get0_nextUpdate(crl)));
    } else {
        TEST__FAIL("%s", "no CRL published");
    }
    OPENSSL_free(der);
    OPENSSL_free(rder);
    EXPECT_INT(refresh, 0);
    moat_crlpub_free(set);
    moat_conf_free(conf);
    X509_CRL_free(crl);
    X509_CRL_free(root_crl);

    /* A damaged file is refused at the folder word, with the fix. */
    ph_write_str(ph_path("ca/crl.pem"), "-----BEGIN X509 CRL-----\nnot base64\n");
    set = NULL;
    EXPECT_INT(build(text, ph_path("state"), &set, &refresh, &conf, &err).kind, MOAT_E_CONFIG);
    EXPECT(set == NULL);
    EXPECT_STR(err.where, "m.conf:3:27");
    EXPECT(ph_contains(err.msg, "damaged") && ph_contains(err.ctx[0], "moat ca crl --ca"));
    moat_conf_free(conf);
    moat_ca_free(ca);
}

TEST_CASE(bad_folders)
{
    mkdir(ph_path("empty"), 0700);
    ph_write_str(ph_path("file"), "x");
    mkdir(ph_path("nostate"), 0700);
    static const struct {
        const char *dir, *says;
    } bad[] = {
        {"nosuch", "there is no CA folder"},
        {"empty", "not a moat CA folder: it has no intermediate.pem"},
        {"file", "is not a folder"},
        {"local", "moat's local CA does not exist yet"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512];
        int local = strcmp(bad[i].dir, "local") == 0;
        snprintf(text, sizeof(text), "site a.test {\n  root /srv\n  crl_publish /c.crl %s\n}\n",
                 local ? "local" : ph_path(bad[i].dir));
        struct moat_crlpub_set *set = NULL;
        struct moat_conf *conf = NULL;
        struct moat_err err = {0};
        time_t refresh = 0;
        moat_rc rc = build(text, ph_path("nostate"), &set, &refresh, &conf, &err);
        if (rc.kind != MOAT_E_CONFIG || strcmp(err.where, "m.conf:3:22") != 0 ||
            !ph_contains(err.msg, bad[i].says) || set != NULL) {
            TEST__FAIL("%s: kind %d at \"%s\": \"%s\"", bad[i].dir, (int)rc.kind, err.where,
                       err.msg);
        }
        moat_conf_free(conf);
    }
    /* No crl_publish anywhere: no set at all. */
    struct moat_conf *conf = parse("site a.test { root /srv }\n", NULL);
    struct moat_crlpub_set *set = (struct moat_crlpub_set *)1;
    time_t refresh = 0;
    EXPECT_INT(moat_crlpub_build(conf, "/nonexistent", 1, 0, &set, &refresh, NULL).kind, MOAT_OK);
    EXPECT(set == NULL);
    moat_conf_free(conf);
}

static long crl_number_of(const char *path)
{
    STACK_OF(X509_CRL) *crls = NULL;
    if (!moat_ok(moat_crl_load(path, &crls, NULL))) {
        return -1;
    }
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(sk_X509_CRL_value(crls, 0), NID_crl_number, NULL, NULL);
    long v = n ? ASN1_INTEGER_get(n) : -1;
    ASN1_INTEGER_free(n);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return v;
}

TEST_CASE(local_ca_is_signed_by_the_server)
{
    mkdir(ph_path("st"), 0700);
    struct moat_ca *ca = NULL;
    EXPECT_INT(moat_ca_open_or_create(ph_path("st/ca"), NULL, &ca, NULL, NULL).kind, MOAT_OK);
    if (ca == NULL) {
        return;
    }
    /* `local` and the same folder by its path both count as the server's own CA. */
    char text[512];
    snprintf(text, sizeof(text),
             "site a.test {\n  root /srv\n  crl_publish /l.crl local\n"
             "  crl_publish /r.crl %s root\n}\n",
             ph_path("st/ca"));
    struct moat_crlpub_set *set = NULL;
    struct moat_conf *conf = NULL;
    struct moat_err err = {0};
    time_t refresh = 0, before = time(NULL);
    EXPECT_INT(build(text, ph_path("st"), &set, &refresh, &conf, &err).kind, MOAT_OK);
    EXPECT(set != NULL && set->v[0].der != NULL && set->v[1].der != NULL);
    EXPECT_INT(crl_number_of(ph_path("st/ca/crl.pem")), 1);
    EXPECT_INT(crl_number_of(ph_path("st/ca/root-crl.pem")), 2);
    /* Rebuilt after two thirds of the 7 days. */
    EXPECT(refresh >= before + 4 * 86400 && refresh <= before + 5 * 86400);
    moat_crlpub_free(set);
    moat_conf_free(conf);

    /* Fresh and complete: read, not signed again. */
    set = NULL;
    EXPECT_INT(build(text, ph_path("st"), &set, &refresh, &conf, &err).kind, MOAT_OK);
    EXPECT_INT(crl_number_of(ph_path("st/ca/crl.pem")), 1);
    moat_crlpub_free(set);
    moat_conf_free(conf);

    /* A revocation since: the next build lists it. */
    EVP_PKEY *k = ph_key();
    const char *names[] = {"x.test"};
    struct moat_ca_leaf l = {.names = names, .n = 1, .days = 30, .pub = k};
    X509 *x = NULL;
    EXPECT_INT(moat_ca_sign(ca, &l, 0, &x, NULL).kind, MOAT_OK);
    EXPECT_INT(moat_crl_revoke(ca, x, MOAT_CRL_KEY_COMPROMISE, 0, NULL, NULL).kind, MOAT_OK);
    set = NULL;
    EXPECT_INT(build(text, ph_path("st"), &set, &refresh, &conf, &err).kind, MOAT_OK);
    EXPECT_INT(crl_number_of(ph_path("st/ca/crl.pem")), 3);
    if (set != NULL && set->v[0].der != NULL) {
        const unsigned char *p = set->v[0].der;
        X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)set->v[0].der_len);
        X509_REVOKED *r = NULL;
        EXPECT(crl != NULL && X509_CRL_get0_by_cert(crl, &r, x) == 1);
        X509_CRL_free(crl);
    }
    moat_crlpub_free(set);
    moat_conf_free(conf);
    X509_free(x);
    EVP_PKEY_free(k);
    moat_ca_free(ca);
}

int main(void)
{
    ph_dir_make();
    RUN(directive);
    RUN(find);
    RUN(respond);
    RUN(build_from_folder);
    RUN(bad_folders);
    RUN(local_ca_is_signed_by_the_server);
    ph_dir_remove();
    TEST_MAIN_END();
}
