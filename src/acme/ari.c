/*
 * ari.c: ACME Renewal Information, RFC 9773 (see ari.h): the certificate identifier, the
 * window as the CA serves it, and the random moment in it.
 *
 * The CA's answer is untrusted input like every other: the window's times are read with a
 * strict RFC 3339 parser of our own (no strptime: it accepts too much and depends on the
 * locale), and nothing of the answer reaches a log line unless it is printable.
 */
#include "acme/ari.h"

#include "acme/jws.h"
#include "core/httpdate.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

moat_rc moat_acme_ari_cert_id(X509 *leaf, char *out, size_t outlen, struct moat_err *err)
{
    if (outlen > 0) {
        out[0] = '\0';
    }
    char subject[256] = "";
    X509_NAME_oneline(X509_get_subject_name(leaf), subject, sizeof(subject));
    const ASN1_OCTET_STRING *kid = X509_get0_authority_key_id(leaf);
    ERR_clear_error();
    if (kid == NULL || ASN1_STRING_length(kid) <= 0) {
        MOAT_FAIL(err, MOAT_E_CERT,
                  "the certificate %s has no Authority Key Identifier with a keyIdentifier, so "
                  "ACME Renewal Information (RFC 9773 §4.1) cannot name it: it was not issued "
                  "by a CA that follows RFC 5280 §4.2.1.1; moat renews it on its own schedule",
                  subject);
    }
    unsigned char *der = NULL;
    int n = i2d_ASN1_INTEGER(X509_get0_serialNumber(leaf), &der);
    /* DER: tag 0x02, a length (short form, or 0x8N and N bytes), then the content octets. */
    size_t hl = n >= 2 ? (der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f)) : 0;
    if (n < 3 || der[0] != 0x02 || hl >= (size_t)n) {
        OPENSSL_free(der);
        ERR_clear_error();
        MOAT_FAIL(err, MOAT_E_CERT, "the serial number of the certificate %s does not encode",
                  subject);
    }
    char *k64 = moat_b64url(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid));
    char *s64 = moat_b64url(der + hl, (size_t)n - hl);
    OPENSSL_free(der);
    int w = k64 && s64 ? snprintf(out, outlen, "%s.%s", k64, s64) : -1;
    free(k64);
    free(s64);
    if (w < 0) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    if ((size_t)w >= outlen) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        MOAT_FAIL(err, MOAT_E_LIMIT,
                  "the ACME Renewal Information identifier of the certificate %s is %d bytes, "
                  "longer than moat takes (%zu): its key identifier or serial number is "
                  "unusually long",
                  subject, w, outlen ? outlen - 1 : 0);
    }
    return MOAT_RC_OK;
}

/* n decimal digits at s[at..] (inside len) into *v. */
static int digits(const char *s, size_t len, size_t at, int n, int *v)
{
    *v = 0;
    if (at + (size_t)n > len) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        char c = s[at + (size_t)i];
        if (c < '0' || c > '9') {
            return 0;
        }
        *v = *v * 10 + (c - '0');
    }
    return 1;
}

static int at_is(const char *s, size_t len, size_t at, char c)
{
    return at < len && s[at] == c;
}

moat_rc moat_acme_ari_parse_time(const char *s, size_t len, time_t *out)
{
    *out = 0;
    /* RFC 3339 §5.6: full-date "T" full-time, where
     * full-time = HH:MM:SS [. 1*DIGIT] ("Z" / ("+" / "-") HH:MM). */
    int Y, M, D, h, m, sec;
    if (!digits(s, len, 0, 4, &Y) || !at_is(s, len, 4, '-') || !digits(s, len, 5, 2, &M) ||
        !at_is(s, len, 7, '-') || !digits(s, len, 8, 2, &D) ||
        !(at_is(s, len, 10, 'T') || at_is(s, len, 10, 't')) || !digits(s, len, 11, 2, &h) ||
        !at_is(s, len, 13, ':') || !digits(s, len, 14, 2, &m) || !at_is(s, len, 16, ':') ||
        !digits(s, len, 17, 2, &sec)) {
        return moat_rc_of(MOAT_E_PEER);
    }
    size_t p = 19;
    if (at_is(s, len, p, '.')) {
        size_t f = ++p;
        while (p < len && s[p] >= '0' && s[p] <= '9') {
            p++;
        }
        if (p == f) {
            return moat_rc_of(MOAT_E_PEER);
        }
    }
    long off = 0;
    if (at_is(s, len, p, 'Z') || at_is(s, len, p, 'z')) {
        p++;
    } else if (at_is(s, len, p, '+') || at_is(s, len, p, '-')) {
        int oh, om;
        if (!digits(s, len, p + 1, 2, &oh) || !at_is(s, len, p + 3, ':') ||
            !digits(s, len, p + 4, 2, &om) || oh > 23 || om > 59) {
            return moat_rc_of(MOAT_E_PEER);
        }
        off = (s[p] == '-' ? -1 : 1) * ((long)oh * 3600 + (long)om * 60);
        p += 6;
    } else {
        return moat_rc_of(MOAT_E_PEER);
    }
    if (p != len || M < 1 || M > 12 || D < 1 || D > moat_days_in_month(Y, M) || h > 23 || m > 59 ||
        sec > 60) {
        return moat_rc_of(MOAT_E_PEER);
    }
    int64_t t = moat_days_from_civil(Y, M, D) * 86400 + (int64_t)h * 3600 + (int64_t)m * 60 +
                (sec == 60 ? 59 : sec) - off;
    if (sec == 60) {
        /* §5.7: a leap second is the last second of a UTC day; elsewhere it is no time. */
        int64_t tod = ((t % 86400) + 86400) % 86400;
        if (tod != 86399) {
            return moat_rc_of(MOAT_E_PEER);
        }
        t += 1;
    }
    *out = (time_t)t;
    return MOAT_RC_OK;
}

time_t moat_acme_ari_pick(time_t start, time_t end, time_t now)
{
    if (end <= now) {
        return now; /* the whole window is past: renew at once */
    }
    if (end <= start) {
        return end; /* not a window (moat_acme_ari_fetch refuses these): its end */
    }
    uint64_t span = (uint64_t)(end - start) + 1;
    /* Uniform in [0, span): draws at or past the largest multiple of span are drawn again,
     * so no value is likelier than another. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t r = 0;
    for (int tries = 0;; tries++) {
        if (tries == 8 || getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
            /* No randomness (very early boot): the middle still keeps the CA's window. */
            r = span / 2;
            break;
        }
        if (r < limit) {
            break;
        }
    }
    time_t t = start + (time_t)(r % span);
    return t < now ? now : t;
}

/* A copy of untrusted text fit for a log line: printable ASCII only, others as '?'. */
static const char *printable(const char *s, char *out, size_t outlen)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < outlen; i++) {
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    }
    out[i] = '\0';
    return out;
}

static const char *utc(time_t t, char *out, size_t outlen)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, outlen, "%lld", (long long)t);
    }
    return out;
}

static long clamp_retry(long s)
{
    if (s < 0) {
        return MOAT_ACME_ARI_RETRY_DEFAULT_S;
    }
    if (s < MOAT_ACME_ARI_RETRY_MIN_S) {
        return MOAT_ACME_ARI_RETRY_MIN_S;
    }
    return s > MOAT_ACME_ARI_RETRY_MAX_S ? MOAT_ACME_ARI_RETRY_MAX_S : s;
}

/* One of the window's times: member `name` of sw, RFC 3339. */
static moat_rc window_time(const json_t *sw, const char *name, const char *url, time_t *out,
                           struct moat_err *err)
{
    const json_t *v = json_object_get(sw, name);
    if (!json_is_string(v)) {
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA's renewal information %.300s has no suggestedWindow.%s string "
                  "(RFC 9773 §4.2)",
                  url, name);
    }
    if (!moat_ok(moat_acme_ari_parse_time(json_string_value(v), json_string_length(v), out))) {
        char text[80];
        MOAT_FAIL(err, MOAT_E_PEER,
                  "the ACME CA's renewal information %.300s gives suggestedWindow.%s as \"%s\", "
                  "which is not an RFC 3339 date-time (like 2025-06-01T12:00:00Z)",
                  url, name, printable(json_string_value(v), text, sizeof(text)));
    }
    return MOAT_RC_OK;
}

moat_rc moat_acme_ari_fetch(struct moat_acme *a, X509 *leaf, time_t *window_start,
                            time_t *window_end, long *retry_after_s, struct moat_err *err)
{
    *window_start = *window_end = 0;
    *retry_after_s = MOAT_ACME_ARI_RETRY_DEFAULT_S;
    const char *base = a->dir.renewal_info;
    if (base == NULL) {
        MOAT_FAIL(err, MOAT_E_NOTFOUND,
                  "the ACME CA at %s offers no renewal information (its directory has no "
                  "renewalInfo, RFC 9773 §3): renewal follows moat's own schedule",
                  a->directory_url);
    }
    char id[MOAT_ACME_ARI_ID_MAX];
    MOAT_TRY(moat_acme_ari_cert_id(leaf, id, sizeof(id), err));
    char url[MOAT_ACME_URL_MAX];
    size_t bl = strlen(base);
    int w =
        snprintf(url, sizeof(url), "%s%s%s", base, bl > 0 && base[bl - 1] == '/' ? "" : "/", id);
    if (w < 0 || (size_t)w >= sizeof(url)) {
        MOAT_FAIL(err, MOAT_E_PEER, "the ACME CA's renewalInfo URL %.300s is too long", base);
    }
    struct moat_acme_resp r = {0};
    r.retry_after_s = -1;
    moat_rc rc = moat_acme_get(a, url, NULL, &r, err);
    if (!moat_ok(rc)) {
        moat_acme_resp_clear(&r);
        return rc;
    }
    *retry_after_s = clamp_retry(r.retry_after_s);
    if (r.status == 404) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA at %s does not know this certificate (its renewal "
                          "information %.300s answered 404): it was probably issued by another "
                          "CA; moat renews it on its own schedule",
                          a->directory_url, url);
    } else if (r.status != 200) {
        const char *detail = moat_acme_json_str(r.json, "detail");
        char text[200] = "";
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA's renewal information %.300s answered HTTP %d%s%s", url,
                          r.status, detail ? ": " : "",
                          detail ? printable(detail, text, sizeof(text)) : "");
    }
    const json_t *sw = json_object_get(r.json, "suggestedWindow");
    if (moat_ok(rc) && !json_is_object(sw)) {
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA's renewal information %.300s is not a RenewalInfo object "
                          "(no suggestedWindow, RFC 9773 §4.2)",
                          url);
    }
    time_t start = 0, end = 0;
    if (moat_ok(rc)) {
        rc = window_time(sw, "start", url, &start, err);
    }
    if (moat_ok(rc)) {
        rc = window_time(sw, "end", url, &end, err);
    }
    if (moat_ok(rc) && end <= start) {
        /* RFC 9773 §4.2: such a window is invalid; treat it as no answer. */
        char t1[40], t2[40];
        rc = moat_err_set(err, MOAT_E_PEER, __FILE__, __LINE__,
                          "the ACME CA's renewal window for this certificate (%.300s) ends "
                          "(%s) %s it starts (%s): RFC 9773 §4.2 makes it invalid, so moat "
                          "keeps its own schedule",
                          url, utc(end, t2, sizeof(t2)), end == start ? "when" : "before",
                          utc(start, t1, sizeof(t1)));
    }
    const char *why = moat_ok(rc) ? moat_acme_json_str(r.json, "explanationURL") : NULL;
    if (why != NULL && why[0] != '\0') {
        char text[300];
        moat_acme_say(a, 0, "the CA explains its renewal window for this certificate at %s",
                      printable(why, text, sizeof(text)));
    }
    moat_acme_resp_clear(&r);
    if (moat_ok(rc)) {
        *window_start = start;
        *window_end = end;
    }
    return rc;
}
