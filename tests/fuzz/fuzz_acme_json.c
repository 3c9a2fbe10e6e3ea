// fuzz-sources: src/acme/*.c src/state/*.c src/tls/*.c src/pki/*.c src/client/dns.c
// fuzz-sources: src/cert/*.c src/http1/*.c src/http/*.c src/core/*.c
/*
 * fuzz_acme_json.c: what an ACME CA's JSON replies turn into in moat, through the real code
 * paths: the directory (moat_acme_new), newAccount and the account object
 * (moat_acme_account, moat_acme_account_info_parse), an order with its authorizations,
 * challenges, finalization and certificate download (moat_acme_order), problem documents with
 * subproblems (any non-2xx answer, badNonce retries included), ARI renewalInfo
 * (moat_acme_ari_fetch) and revocation.
 *
 * The seam is the link: this target is built without src/client/, and defines the six
 * functions of client/get.h that acme/ calls, so each HTTPS exchange takes the next reply from
 * the input instead of the network. Waits end at once (the order's cancel flag is set), so a
 * CA that keeps an order pending costs one reply, never a sleep.
 *
 * Input: the first byte picks the flow (below) and a few options; the rest is the CA's replies,
 * separated by a line "%%". A reply is its body alone (status 200, Content-Type JSON when it
 * starts with '{' or '[', else a PEM chain), or "NNN\n" (the status), header lines, an empty
 * line and the body. Every reply gets a Replay-Nonce unless it brings its own header for it.
 */
#include "acme/account.h"
#include "acme/ari.h"
#include "acme/client.h"
#include "acme/order.h"
#include "client/get.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_REPLIES 32

static const char DIRECTORY[] =
    "{\"newNonce\":\"https://ca.test/nonce\",\"newAccount\":\"https://ca.test/acct\","
    "\"newOrder\":\"https://ca.test/order\",\"revokeCert\":\"https://ca.test/revoke\","
    "\"keyChange\":\"https://ca.test/key\",\"renewalInfo\":\"https://ca.test/ari/\","
    "\"meta\":{\"termsOfService\":\"https://ca.test/tos\",\"caaIdentities\":[\"ca.test\"],"
    "\"profiles\":{\"classic\":\"90 days\",\"shortlived\":\"6 days\"}}}";

/* The replies of one run: pointers into the input copy. */
static struct {
    const char *p[MAX_REPLIES];
    size_t n[MAX_REPLIES];
    size_t count, next;
    size_t exchanges;
} replies;

/* ---- the seam: client/get.h as acme/ uses it ---- */

void moat_client_opts_init(struct moat_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_ms = 30000;
    o->max_redirs = 10;
}

void moat_client_opts_clear(struct moat_client_opts *o)
{
    free(o->body);
    o->body = NULL;
}

void moat_client_result_clear(struct moat_client_result *r)
{
    for (size_t i = 0; i < MOAT_CLIENT_MAX_HOPS; i++) {
        free(r->hops[i].resp_head);
        r->hops[i].resp_head = NULL;
    }
    r->nhops = 0;
}

const char *moat_client_hop_cause_line(const struct moat_client_hop *h, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", h->detail[0] ? h->detail : "no answer");
    return out;
}

const char *moat_client_hop_fix(const struct moat_client_hop *h)
{
    (void)h;
    return "none (fuzzing)";
}

static int has_field(const char *head, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl <= n; i++) {
        if ((i == 0 || head[i - 1] == '\n') && strncasecmp(head + i, name, nl) == 0) {
            return 1;
        }
    }
    return 0;
}

moat_rc moat_client_get_run(const struct moat_client_opts *o, moat_client_body_cb body_cb,
                            void *body_arg, struct moat_client_result *r, struct moat_err *err)
{
    CHECK(o->url != NULL && strncasecmp(o->url, "https://", 8) == 0);
    CHECK(o->method != NULL);
    replies.exchanges++;
    if (replies.next >= replies.count) {
        MOAT_FAIL(err, MOAT_E_IO, "no more replies");
    }
    const char *p = replies.p[replies.next];
    size_t n = replies.n[replies.next];
    replies.next++;
    int status = 200;
    const char *head = "", *body = p;
    size_t hlen = 0, blen = n;
    if (n >= 4 && p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
        p[2] <= '9' && p[3] == '\n') {
        status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        head = p + 4;
        const char *e = memmem(head, n - 4, "\n\n", 2);
        hlen = e ? (size_t)(e - head) + 1 : n - 4;
        body = e ? e + 2 : p + n;
        blen = (size_t)(p + n - body);
    }
    size_t cap = hlen * 2 + 200;
    char *h = malloc(cap);
    if (h == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    size_t w = (size_t)snprintf(h, cap, "HTTP/1.1 %d X\r\n", status);
    if (!has_field(head, hlen, "replay-nonce:")) {
        w += (size_t)snprintf(h + w, cap - w, "Replay-Nonce: nonce-AAAAAAAAAAAAAAAA\r\n");
    }
    if (!has_field(head, hlen, "content-type:")) {
        size_t i = 0;
        while (i < blen && (body[i] == ' ' || body[i] == '\n')) {
            i++;
        }
        int json = i < blen && (body[i] == '{' || body[i] == '[');
        w += (size_t)snprintf(h + w, cap - w, "Content-Type: %s\r\n",
                              json ? "application/json" : "application/pem-certificate-chain");
    }
    for (size_t i = 0; i < hlen; i++) {
        if (head[i] == '\n') {
            h[w++] = '\r';
        }
        h[w++] = head[i] == '\0' ? ' ' : head[i];
    }
    memcpy(h + w, "\r\n", 3);
    r->nhops = 1;
    r->hops[0].status = status;
    r->hops[0].resp_head = h;
    if (body_cb != NULL && blen > 0 && body_cb(body_arg, body, blen) != 0) {
        snprintf(r->hops[0].detail, sizeof(r->hops[0].detail), "body refused");
        MOAT_FAIL(err, MOAT_E_IO, "body refused");
    }
    return MOAT_RC_OK;
}

/* ---- solvers that publish nothing ---- */

static int fail_present; /* bit i: the solver of index i cannot publish */

static moat_rc fake_present(struct moat_acme_solver *s, const char *ident, const char *token,
                            const char *key_authz, struct moat_err *err);

static void fake_cleanup(struct moat_acme_solver *s, const char *ident, const char *token)
{
    (void)s;
    CHECK(ident != NULL && token != NULL);
}

static void fake_free(struct moat_acme_solver *s)
{
    (void)s;
}

static const struct moat_acme_solver_ops OPS[3] = {
    {.type = "http-01", .present = fake_present, .cleanup = fake_cleanup, .free = fake_free},
    {.type = "tls-alpn-01", .present = fake_present, .cleanup = fake_cleanup, .free = fake_free},
    {.type = "dns-01", .present = fake_present, .cleanup = fake_cleanup, .free = fake_free},
};
static struct moat_acme_solver SOLVERS[3] = {{&OPS[0]}, {&OPS[1]}, {&OPS[2]}};

static moat_rc fake_present(struct moat_acme_solver *s, const char *ident, const char *token,
                            const char *key_authz, struct moat_err *err)
{
    CHECK(ident != NULL && token != NULL && key_authz != NULL);
    CHECK(strncmp(key_authz, token, strlen(token)) == 0 && key_authz[strlen(token)] == '.');
    if (fail_present & (1 << (s - SOLVERS))) {
        MOAT_FAIL(err, MOAT_E_IO, "cannot publish (fuzzing)");
    }
    return MOAT_RC_OK;
}

/* ---- keys made once ---- */

static EVP_PKEY *account_key, *cert_key;
static X509 *leaf;

static void init_once(void)
{
    if (account_key != NULL) {
        return;
    }
    account_key = EVP_EC_gen("P-256");
    cert_key = EVP_EC_gen("P-256");
    leaf = X509_new();
    AUTHORITY_KEYID *ak = AUTHORITY_KEYID_new();
    CHECK(account_key != NULL && cert_key != NULL && leaf != NULL && ak != NULL);
    ak->keyid = ASN1_OCTET_STRING_new();
    static const unsigned char kid[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(ak->keyid != NULL && ASN1_OCTET_STRING_set(ak->keyid, kid, sizeof(kid)) == 1);
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(leaf), 0x1234567) == 1);
    CHECK(X509_add1_ext_i2d(leaf, NID_authority_key_identifier, ak, 0, 0) == 1);
    AUTHORITY_KEYID_free(ak);
}

static void say(void *arg, int level, const char *line)
{
    (void)arg;
    CHECK(line != NULL && (level == 0 || level == 1));
}

/* A failure always comes with words. */
static void check_failed(moat_rc rc, const struct moat_err *err)
{
    if (!moat_ok(rc)) {
        CHECK(err->msg[0] != '\0');
    }
}

static void run_order(struct moat_acme *a, unsigned opt)
{
    static const char *const names[] = {"example.com", "*.example.com", "192.0.2.1"};
    static const atomic_int cancel = 1;
    struct moat_acme_solver *const solvers[] = {&SOLVERS[0], &SOLVERS[1], &SOLVERS[2]};
    struct moat_acme_order_req q = {.names = names,
                                    .nnames = 1 + (opt & 1) + ((opt >> 1) & 1),
                                    .cert_key = cert_key,
                                    .solvers = solvers,
                                    .nsolvers = 3,
                                    .cancel = &cancel};
    if (opt & 4) {
        q.preferred_chain = "Root X2";
    }
    if (opt & 8) {
        q.profile = "shortlived";
        q.replaces = "AQIDBAUGBwgJCgAAAAAAAAAAAAA.ASNFZw";
    }
    if (opt & 16) {
        q.resume_url = "https://ca.test/order/1";
    }
    fail_present = (opt >> 5) & 1;
    char *chain = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_acme_order(a, &q, &chain, &err);
    check_failed(rc, &err);
    if (moat_ok(rc)) {
        CHECK(chain != NULL && strstr(chain, "-----BEGIN CERTIFICATE-----") != NULL);
    }
    free(chain);
}

static void run_account(struct moat_acme *a, unsigned opt)
{
    static const char *const contacts[] = {"admin@example.com"};
    struct moat_acme_account_req q = {.contacts = contacts,
                                      .ncontacts = opt & 1,
                                      .agree_tos = (opt >> 1) & 1,
                                      .only_existing = (opt >> 2) & 1};
    if (opt & 8) {
        q.eab_kid = "kid-1";
        q.eab_hmac = "c2VjcmV0LW1hYy1rZXktZm9yLWZ1enppbmc";
    }
    json_t *acct = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_acme_account(a, &q, &acct, &err);
    check_failed(rc, &err);
    if (moat_ok(rc)) {
        CHECK(a->kid != NULL && a->kid[0] != '\0');
        struct moat_acme_account_info info;
        struct moat_err e2 = {0};
        if (moat_ok(moat_acme_account_info_parse(acct, a->kid, &info, &e2))) {
            CHECK(info.url != NULL && info.status != NULL);
            for (size_t i = 0; i < info.ncontacts; i++) {
                CHECK(info.contacts[i] != NULL);
            }
            moat_acme_account_info_clear(&info);
        } else {
            CHECK(e2.msg[0] != '\0' && info.url == NULL);
        }
    }
    json_decref(acct);
}

static void run_ari(struct moat_acme *a)
{
    time_t start = 0, end = 0;
    long retry = 0;
    struct moat_err err = {0};
    moat_rc rc = moat_acme_ari_fetch(a, leaf, &start, &end, &retry, &err);
    check_failed(rc, &err);
    CHECK(retry >= MOAT_ACME_ARI_RETRY_MIN_S && retry <= MOAT_ACME_ARI_RETRY_MAX_S);
    if (moat_ok(rc)) {
        CHECK(start < end);
        time_t now = time(NULL);
        time_t t = moat_acme_ari_pick(start, end, now);
        CHECK(t >= now && (t <= end || end < now));
    }
}

/* A JSON text as the account record or an account object, without an exchange. */
static void run_info(const char *p, size_t n)
{
    json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
    struct moat_acme_account_info info;
    struct moat_err err = {0};
    if (moat_ok(moat_acme_account_info_parse(j, moat_acme_json_str(j, "url"), &info, &err))) {
        CHECK(info.status != NULL);
        moat_acme_account_info_clear(&info);
        moat_acme_account_info_clear(&info);
    } else {
        CHECK(err.msg[0] != '\0');
    }
    const char *t = moat_acme_json_str(j, "type");
    CHECK(moat_acme_problem_words(t) != NULL);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) {
        return 0;
    }
    init_once();
    char *s = malloc(size);
    if (s == NULL) {
        return 0;
    }
    size_t n = size - 1;
    memcpy(s, data + 1, n);
    s[n] = '\0';
    unsigned flow = data[0] % 6, opt = data[0] / 6;
    memset(&replies, 0, sizeof(replies));
    if (flow != 0 && flow != 5) {
        replies.p[replies.count] = DIRECTORY;
        replies.n[replies.count++] = sizeof(DIRECTORY) - 1;
    }
    for (const char *p = s; replies.count < MAX_REPLIES;) {
        const char *e = memmem(p, (size_t)(s + n - p), "\n%%\n", 4);
        replies.p[replies.count] = p;
        replies.n[replies.count++] = e ? (size_t)(e - p) : (size_t)(s + n - p);
        if (e == NULL) {
            break;
        }
        p = e + 4;
    }
    if (flow == 5) {
        run_info(s, n);
        free(s);
        return 0;
    }
    struct moat_acme_opts o = {.directory = "https://ca.test/dir", .say = say};
    struct moat_acme *a = NULL;
    struct moat_err err = {0};
    moat_rc rc = moat_acme_new(&o, &a, &err);
    check_failed(rc, &err);
    if (moat_ok(rc)) {
        CHECK(a->dir.new_nonce != NULL && a->dir.new_account != NULL && a->dir.new_order != NULL);
        for (size_t i = 0; i < a->dir.ncaa_identities; i++) {
            CHECK(a->dir.caa_identities[i] != NULL);
        }
        moat_acme_use_key(a, account_key, flow == 0 || flow == 1 ? NULL : "https://ca.test/a/1");
        switch (flow) {
        case 0:
            run_account(a, opt);
            if (a->kid != NULL) {
                run_order(a, opt);
            }
            break;
        case 1:
            run_account(a, opt);
            break;
        case 2:
            run_order(a, opt);
            break;
        case 3:
            run_ari(a);
            break;
        default: {
            static const char pem[] = "not a certificate";
            struct moat_err e2 = {0};
            check_failed(moat_acme_revoke(a, (const unsigned char *)pem, sizeof(pem) - 1,
                                          (int)(opt % 6), &e2),
                         &e2);
            break;
        }
        }
        CHECK(strlen(a->problem) < sizeof(a->problem));
        moat_acme_free(a);
    }
    CHECK(replies.next <= replies.count);
    free(s);
    return 0;
}
