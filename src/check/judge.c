/*
 * judge.c: see judge.h. One function per area (protocols, suites, key exchange, certificate,
 * options, HTTP); each adds findings with the facts that prove them. The fixes name each
 * server's own directive: an admin reads the line for the server they run.
 */
#include "check/judge.h"

#include "check/suites.h"
#include "client/cause.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *moat_check_sev_name(enum moat_check_sev s)
{
    static const char *const names[MOAT_SEV_COUNT] = {"info", "low", "medium", "high", "critical"};
    return (unsigned)s < MOAT_SEV_COUNT ? names[s] : "?";
}

int moat_check_exit_for(enum moat_check_sev worst, int any)
{
    if (!any || worst == MOAT_SEV_INFO) {
        return 0;
    }
    return 2 + (int)worst; /* low 3, medium 4, high 5, critical 6 */
}

static struct moat_check_finding *add(struct moat_check_report *r, const char *id,
                                      enum moat_check_sev sev, char cap, const char *cve,
                                      struct moat_check_fix fix, const char *title_fmt, ...)
    MOAT_PRINTF(7, 8);

static struct moat_check_finding *add(struct moat_check_report *r, const char *id,
                                      enum moat_check_sev sev, char cap, const char *cve,
                                      struct moat_check_fix fix, const char *title_fmt, ...)
{
    static struct moat_check_finding spare;
    if (r->n == MOAT_CHECK_MAX_FINDINGS) {
        memset(&spare, 0, sizeof(spare)); /* dropped: the table holds every finding moat has */
        return &spare;
    }
    struct moat_check_finding *f = &r->f[r->n++];
    memset(f, 0, sizeof(*f));
    f->id = id;
    f->sev = sev;
    f->cap = cap;
    f->cve = cve;
    f->fix = fix;
    va_list ap;
    va_start(ap, title_fmt);
    vsnprintf(f->title, sizeof(f->title), title_fmt, ap);
    va_end(ap);
    return f;
}

static void evidence(struct moat_check_finding *f, const char *fmt, ...) MOAT_PRINTF(2, 3);
static void evidence(struct moat_check_finding *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->evidence, sizeof(f->evidence), fmt, ap);
    va_end(ap);
}

/* Append the names of suites of version v that match pred to out. */
static size_t suites_where(const struct moat_check_scan *s,
                           int (*pred)(const struct moat_check_suite *), char *out, size_t outlen)
{
    size_t count = 0, at = 0;
    uint16_t seen[MOAT_VER_COUNT * MOAT_CHECK_MAX_SUITES];
    out[0] = '\0';
    for (int v = MOAT_VER_SSL3; v < MOAT_VER_COUNT; v++) {
        for (size_t i = 0; i < s->nsuites[v]; i++) {
            const struct moat_check_suite *t = moat_check_suite_find(s->suites[v][i]);
            int dup = 0;
            for (size_t k = 0; k < count && !dup; k++) {
                dup = seen[k] == s->suites[v][i];
            }
            if (t == NULL || !pred(t) || dup) {
                continue;
            }
            seen[count++] = t->code;
            int w = snprintf(out + at, outlen - at, "%s%s", at ? ", " : "", t->name);
            if (w > 0 && (size_t)w < outlen - at) {
                at += (size_t)w;
            }
        }
    }
    return count;
}

static int p_null(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_NULL;
}
static int p_export(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_EXPORT;
}
static int p_anon(const struct moat_check_suite *t)
{
    return t->kex == MOAT_KEX_DH_ANON || t->kex == MOAT_KEX_ECDH_ANON;
}
static int p_des(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_DES;
}
static int p_rc4(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_RC4;
}
static int p_64(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_BLOCK64;
}
static int p_nofs(const struct moat_check_suite *t)
{
    return t->kex == MOAT_KEX_RSA;
}
static int p_fs(const struct moat_check_suite *t)
{
    return t->kex == MOAT_KEX_DHE || t->kex == MOAT_KEX_ECDHE || t->kex == MOAT_KEX_TLS13;
}
static int p_cbc(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_CBC;
}
static int p_aead(const struct moat_check_suite *t)
{
    return t->enc == MOAT_ENC_AEAD;
}
static int p_psk(const struct moat_check_suite *t)
{
    return t->kex == MOAT_KEX_PSK;
}

/* The common fix for a suite list: moat needs none (it offers only AEAD with forward secrecy). */
#define MOAT_SUITES                                                                                \
    "moat offers only ECDHE/TLS 1.3 AEAD suites and has no setting that adds others: serve this "  \
    "site with moat, or apply the fix for your server"
#define NGINX_SUITES                                                                               \
    "ssl_ciphers "                                                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305; "      \
    "ssl_prefer_server_ciphers off;"
#define HAPROXY_SUITES                                                                             \
    "global: ssl-default-bind-ciphers "                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define CADDY_SUITES "remove the tls { ciphers ... } override: Caddy's defaults are already these"

static const struct moat_check_fix FIX_SUITES = {MOAT_SUITES, NGINX_SUITES, HAPROXY_SUITES,
                                                 CADDY_SUITES};
static const struct moat_check_fix FIX_PROTOCOLS = {
    "moat offers TLS 1.2 and 1.3 only and has no setting for older versions",
    "ssl_protocols TLSv1.2 TLSv1.3;",
    "global: ssl-default-bind-options ssl-min-ver TLSv1.2 (or ssl-min-ver on each bind line)",
    "tls { protocols tls1.2 tls1.3 } (Caddy's default)"};

static void protocols(const struct moat_check_scan *s, struct moat_check_report *r)
{
    struct moat_check_finding *f;
    if (s->versions[MOAT_VER_SSL2] == MOAT_YES) {
        f = add(r, "protocol.sslv2", MOAT_SEV_CRITICAL, 'F', "CVE-2016-0800", FIX_PROTOCOLS,
                "SSLv2 is offered (DROWN)");
        evidence(f, "an SSLv2 CLIENT-HELLO got a SERVER-HELLO; SSLv2 is broken (RFC 6176 forbids "
                    "it) and lets an attacker decrypt TLS sessions that use the same RSA key");
    }
    if (s->versions[MOAT_VER_SSL3] == MOAT_YES) {
        f = add(r, "protocol.sslv3", MOAT_SEV_HIGH, 'F', "CVE-2014-3566", FIX_PROTOCOLS,
                "SSLv3 is offered (POODLE)");
        evidence(f, "an SSLv3 hello got an SSLv3 ServerHello; RFC 7568 forbids SSLv3");
    }
    if (s->versions[MOAT_VER_TLS10] == MOAT_YES || s->versions[MOAT_VER_TLS11] == MOAT_YES) {
        int both =
            s->versions[MOAT_VER_TLS10] == MOAT_YES && s->versions[MOAT_VER_TLS11] == MOAT_YES;
        f = add(r, "protocol.tls10_11", MOAT_SEV_MEDIUM, 'B', NULL, FIX_PROTOCOLS, "%s offered",
                both                                      ? "TLS 1.0 and 1.1 are"
                : s->versions[MOAT_VER_TLS10] == MOAT_YES ? "TLS 1.0 is"
                                                          : "TLS 1.1 is");
        evidence(f, "RFC 8996 deprecates TLS 1.0 and 1.1 (SHA-1 in the handshake, CBC with "
                    "predictable IVs in 1.0: BEAST, CVE-2011-3389); every browser has dropped "
                    "them");
    }
    if (s->versions[MOAT_VER_TLS12] == MOAT_UNKNOWN &&
        s->versions[MOAT_VER_TLS13] == MOAT_UNKNOWN) {
        f = add(r, "tls.no_answer", MOAT_SEV_CRITICAL, 'F', NULL, FIX_PROTOCOLS,
                "the server does not answer a TLS hello");
        evidence(f,
                 "TLS 1.2 and 1.3 hellos got no answer within the timeout%s: is TLS served "
                 "on this port?",
                 s->truncated ? " (or the check's bounds stopped it)" : "");
    } else if (s->versions[MOAT_VER_TLS12] != MOAT_YES && s->versions[MOAT_VER_TLS13] != MOAT_YES) {
        f = add(r, "protocol.none", MOAT_SEV_CRITICAL, 'F', NULL, FIX_PROTOCOLS,
                "neither TLS 1.2 nor TLS 1.3 is offered");
        evidence(f, "no hello of version 1.2 or 1.3 got a ServerHello of that version");
    } else if (s->versions[MOAT_VER_TLS13] != MOAT_YES) {
        f = add(r, "protocol.no_tls13", MOAT_SEV_LOW, 0, NULL,
                (struct moat_check_fix){"moat offers TLS 1.3 by default",
                                        "ssl_protocols TLSv1.2 TLSv1.3; (needs OpenSSL 1.1.1+)",
                                        "remove ssl-max-ver / no-tlsv13 from the bind lines",
                                        "Caddy offers TLS 1.3 by default"},
                "TLS 1.3 is not offered");
        evidence(f,
                 "a TLS 1.3 hello got %s; TLS 1.3 saves a round trip and encrypts the "
                 "certificate",
                 s->versions[MOAT_VER_TLS13] == MOAT_NO ? "a refusal or an older version"
                                                        : "no answer");
    }
}

static void suites(const struct moat_check_scan *s, struct moat_check_report *r)
{
    char list[500];
    struct moat_check_finding *f;
    if (suites_where(s, p_null, list, sizeof(list)) > 0) {
        f = add(r, "suites.null", MOAT_SEV_CRITICAL, 'F', NULL, FIX_SUITES,
                "suites without encryption are offered");
        evidence(f, "the server chose: %s", list);
    }
    if (suites_where(s, p_export, list, sizeof(list)) > 0) {
        f = add(r, "suites.export", MOAT_SEV_CRITICAL, 'F', "CVE-2015-0204", FIX_SUITES,
                "export-grade suites are offered (FREAK, Logjam)");
        evidence(f, "the server chose: %s (40- and 56-bit keys, broken in hours)", list);
    }
    if (suites_where(s, p_anon, list, sizeof(list)) > 0) {
        f = add(r, "suites.anonymous", MOAT_SEV_CRITICAL, 'F', NULL, FIX_SUITES,
                "anonymous suites are offered: no certificate, anyone can sit in the middle");
        evidence(f, "the server chose: %s", list);
    }
    if (suites_where(s, p_des, list, sizeof(list)) > 0) {
        f = add(r, "suites.des", MOAT_SEV_HIGH, 'F', NULL, FIX_SUITES,
                "single-DES suites are offered (56-bit keys)");
        evidence(f, "the server chose: %s", list);
    }
    if (suites_where(s, p_rc4, list, sizeof(list)) > 0) {
        f = add(r, "suites.rc4", MOAT_SEV_HIGH, 'C', "CVE-2015-2808", FIX_SUITES,
                "RC4 suites are offered");
        evidence(f,
                 "the server chose: %s; RFC 7465 forbids RC4 (biases recover plaintext, "
                 "CVE-2013-2566)",
                 list);
    }
    if (suites_where(s, p_64, list, sizeof(list)) > 0) {
        f = add(r, "suites.3des", MOAT_SEV_MEDIUM, 'C', "CVE-2016-2183", FIX_SUITES,
                "64-bit block ciphers are offered (SWEET32)");
        evidence(f,
                 "the server chose: %s; a long connection leaks plaintext by birthday "
                 "collisions",
                 list);
    }
    if (suites_where(s, p_psk, list, sizeof(list)) > 0) {
        f = add(r, "suites.psk", MOAT_SEV_LOW, 0, NULL, FIX_SUITES,
                "pre-shared-key suites are offered on a public listener");
        evidence(f, "the server chose: %s", list);
    }
    size_t any = 0;
    for (int v = MOAT_VER_SSL3; v < MOAT_VER_COUNT; v++) {
        any += s->nsuites[v];
    }
    if (any == 0) {
        return;
    }
    char fs[500];
    if (suites_where(s, p_fs, fs, sizeof(fs)) == 0) {
        f = add(r, "suites.no_forward_secrecy", MOAT_SEV_HIGH, 'B', NULL, FIX_SUITES,
                "no suite with forward secrecy");
        evidence(f, "every suite the server takes uses RSA key transport: whoever gets the key "
                    "later decrypts every recorded session");
    } else if (suites_where(s, p_nofs, list, sizeof(list)) > 0) {
        f = add(r, "suites.some_without_forward_secrecy", MOAT_SEV_LOW, 0, NULL, FIX_SUITES,
                "suites without forward secrecy are offered");
        evidence(f, "RSA key transport: %s", list);
    }
    if (suites_where(s, p_aead, list, sizeof(list)) == 0) {
        f = add(r, "suites.no_aead", MOAT_SEV_MEDIUM, 'B', NULL, FIX_SUITES,
                "no AEAD suite (AES-GCM, ChaCha20-Poly1305)");
        evidence(f, "only CBC or stream suites: CBC with HMAC has a history of padding-oracle "
                    "attacks (Lucky13, CVE-2013-0169)");
    } else if (suites_where(s, p_cbc, list, sizeof(list)) > 0) {
        f = add(r, "suites.cbc", MOAT_SEV_LOW, 0, "CVE-2013-0169", FIX_SUITES,
                "CBC suites are offered beside AEAD ones (Lucky13 class)");
        evidence(f,
                 "MAC-then-encrypt CBC: %s; their timing has leaked plaintext in one "
                 "implementation after another, and every client that can use them can use "
                 "AES-GCM",
                 list);
    }
    if (s->versions[MOAT_VER_TLS10] == MOAT_YES || s->versions[MOAT_VER_SSL3] == MOAT_YES) {
        int cbc10 = 0;
        for (int v = MOAT_VER_SSL3; v <= MOAT_VER_TLS10; v++) {
            for (size_t i = 0; i < s->nsuites[v]; i++) {
                const struct moat_check_suite *t = moat_check_suite_find(s->suites[v][i]);
                cbc10 |= t != NULL && (t->enc == MOAT_ENC_CBC || t->enc == MOAT_ENC_BLOCK64);
            }
        }
        if (cbc10) {
            f = add(r, "vuln.beast", MOAT_SEV_LOW, 0, "CVE-2011-3389", FIX_PROTOCOLS,
                    "CBC suites in TLS 1.0 or SSLv3 (BEAST)");
            evidence(f, "TLS 1.0's CBC uses the last record's end as the next IV, which a script "
                        "in the page can exploit; clients split records, the fix is no TLS 1.0");
        }
    }
    if (s->server_order[MOAT_VER_TLS12] == MOAT_NO && s->nsuites[MOAT_VER_TLS12] > 1) {
        int weak = 0;
        for (size_t i = 0; i < s->nsuites[MOAT_VER_TLS12]; i++) {
            const struct moat_check_suite *t = moat_check_suite_find(s->suites[MOAT_VER_TLS12][i]);
            weak |= t != NULL && (t->enc != MOAT_ENC_AEAD || !p_fs(t));
        }
        if (weak) {
            f = add(r, "suites.client_order", MOAT_SEV_LOW, 0, NULL,
                    (struct moat_check_fix){MOAT_SUITES, "ssl_prefer_server_ciphers on;",
                                            "remove prefer-client-ciphers from the bind lines",
                                            NULL},
                    "the client's suite order wins, and weaker suites are on the list");
            evidence(f, "offered the server's last TLS 1.2 choice before its first, the server "
                        "took the last");
        }
    }
}

static void key_exchange(const struct moat_check_scan *s, struct moat_check_report *r)
{
    struct moat_check_finding *f;
    static const struct moat_check_fix fix_dh = {
        MOAT_SUITES,
        "ssl_dhparam with a 2048-bit (or larger) group, e.g. RFC 7919 ffdhe2048; or drop DHE "
        "suites",
        "global: tune.ssl.default-dh-param 2048 (or ssl-dh-param-file with ffdhe2048)",
        "Caddy offers no DHE"};
    if (s->dh_bits > 0 && s->dh_bits < 1024) {
        f = add(r, "kex.dh_weak", MOAT_SEV_HIGH, 'F', "CVE-2015-4000", fix_dh,
                "DHE with a %d-bit group (Logjam)", s->dh_bits);
        evidence(f, "a DHE ServerKeyExchange carried a %d-bit prime", s->dh_bits);
    } else if (s->dh_bits > 0 && s->dh_bits < 2048) {
        f = add(r, "kex.dh_small", MOAT_SEV_MEDIUM, 'B', "CVE-2015-4000", fix_dh,
                "DHE with a %d-bit group", s->dh_bits);
        evidence(f, "a DHE ServerKeyExchange carried a %d-bit prime; 2048 is the minimum",
                 s->dh_bits);
    }
    size_t ng;
    const struct moat_check_named *g = moat_check_groups(&ng);
    char weak[300] = "";
    for (size_t i = 0; i < s->ngroups12 + s->ngroups13; i++) {
        uint16_t code = i < s->ngroups12 ? s->groups12[i] : s->groups13[i - s->ngroups12];
        for (size_t k = 0; k < ng; k++) {
            if (g[k].code == code && g[k].weak && strstr(weak, g[k].name) == NULL) {
                size_t l = strlen(weak);
                snprintf(weak + l, sizeof(weak) - l, "%s%s", l ? ", " : "", g[k].name);
            }
        }
    }
    if (weak[0] != '\0') {
        f = add(r, "kex.weak_curve", MOAT_SEV_MEDIUM, 'B', NULL,
                (struct moat_check_fix){"moat offers X25519, P-256 and P-384 only",
                                        "ssl_ecdh_curve X25519:prime256v1:secp384r1;",
                                        "global: ssl-default-bind-curves X25519:P-256:P-384",
                                        "tls { curves x25519 secp256r1 secp384r1 }"},
                "curves under 256 bits are accepted");
        evidence(f, "the server chose: %s", weak);
    }
    size_t na;
    const struct moat_check_named *a = moat_check_sigalgs(&na);
    char sha1[200] = "";
    for (size_t i = 0; i < s->nsigalgs12; i++) {
        for (size_t k = 0; k < na; k++) {
            if (a[k].code == s->sigalgs12[i] && a[k].weak) {
                size_t l = strlen(sha1);
                snprintf(sha1 + l, sizeof(sha1) - l, "%s%s", l ? ", " : "", a[k].name);
            }
        }
    }
    if (sha1[0] != '\0') {
        f = add(r, "kex.sha1_signatures", MOAT_SEV_LOW, 0, "CVE-2015-7575",
                (struct moat_check_fix){"moat signs with SHA-256 or better only",
                                        "ssl_conf_command SignatureAlgorithms "
                                        "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256:ECDSA+SHA384:"
                                        "RSA-PSS+SHA384:RSA+SHA384;",
                                        "global: ssl-default-bind-sigalgs "
                                        "ECDSA+SHA256:RSA-PSS+SHA256:RSA+SHA256",
                                        NULL},
                "TLS 1.2 key exchanges are signed with SHA-1 or weaker (SLOTH)");
        evidence(f, "offered nothing better, the server signed with: %s", sha1);
    }
}

static const struct moat_check_fix FIX_CERT = {
    "cert FILE KEY with the full chain, or let moat get one: acme { ... } (docs/acme.md)",
    "ssl_certificate with the leaf followed by its intermediates (fullchain.pem)",
    "crt with the leaf, its intermediates and the key in one PEM file",
    "let Caddy's automatic HTTPS manage it, or tls cert.pem key.pem with the full chain"};

static void certificate(const struct moat_check_scan *s, struct moat_check_report *r)
{
    struct moat_check_finding *f;
    const struct moat_client_hop *h = s->get != NULL && s->get->nhops > 0 ? &s->get->hops[0] : NULL;
    const struct moat_check_certfacts *c = &s->cert;
    if (h != NULL && h->vkind != MOAT_V_OK) {
        f = add(r, "cert.untrusted", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "the certificate does not verify: %s", moat_verify_kind_message(h->vkind));
        evidence(f, "%s", h->detail[0] ? h->detail : moat_client_cause_message(h->cause));
        snprintf(f->fix_note, sizeof(f->fix_note), "%s",
                 h->cert_fix[0] ? h->cert_fix : moat_verify_kind_fix(h->vkind));
        if (h->issuer_diag == MOAT_ISSUER_MISSING_INTERMEDIATE ||
            h->vkind == MOAT_V_MISSING_INTERMEDIATE) {
            f->id = "cert.chain_incomplete";
            f->sev = MOAT_SEV_HIGH;
            f->cap = 'B';
            snprintf(f->title, sizeof(f->title),
                     "the chain is incomplete: an intermediate is missing");
        }
    } else if (h == NULL && s->offline && s->offline_vkind != MOAT_V_OK) {
        f = add(r, "cert.untrusted", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "the certificate does not verify: %s", moat_verify_kind_message(s->offline_vkind));
        evidence(f, "%s", s->offline_detail);
        snprintf(f->fix_note, sizeof(f->fix_note), "%s", moat_verify_kind_fix(s->offline_vkind));
        if (s->offline_vkind == MOAT_V_MISSING_INTERMEDIATE) {
            f->id = "cert.chain_incomplete";
            f->sev = MOAT_SEV_HIGH;
            f->cap = 'B';
        }
    } else if (h != NULL && !h->tls_done && h->stage == MOAT_STAGE_TLS) {
        f = add(r, "tls.handshake_failed", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "a strict client's handshake fails: %s", moat_client_cause_message(h->cause));
        evidence(f, "%s", h->detail[0] ? h->detail : moat_client_cause_name(h->cause));
    }
    if (s->cert_read != MOAT_YES) {
        return;
    }
    int mismatch_said = (h != NULL && h->vkind == MOAT_V_NAME_MISMATCH) ||
                        (h == NULL && s->offline && s->offline_vkind == MOAT_V_NAME_MISMATCH);
    if (!c->names_match && !mismatch_said) {
        f = add(r, "cert.name_mismatch", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "the certificate does not cover %s", s->host);
        evidence(f, "none of its names is %s", s->host);
    }
    if (c->chain_expired) {
        f = add(r, "cert.expired", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "certificate %d of the chain sent is outside its validity", c->chain_expired);
        evidence(f,
                 "the leaf has %ld days left; certificate %d (1 = the leaf) is expired or not "
                 "valid yet",
                 c->days_left, c->chain_expired);
    } else if (c->days_left < 3 || (c->days_left < 14 && c->days_left * 6 < c->days_total)) {
        f = add(r, "cert.expires_soon", MOAT_SEV_HIGH, 0, NULL, FIX_CERT,
                "the certificate expires in %ld days", c->days_left);
        evidence(f,
                 "%ld of its %ld days are left: renewal is overdue (it is due at a third "
                 "left)",
                 c->days_left, c->days_total);
    } else if (c->days_left < 30 && c->days_left * 3 < c->days_total) {
        f = add(r, "cert.expires_soon", MOAT_SEV_MEDIUM, 0, NULL, FIX_CERT,
                "the certificate expires in %ld days", c->days_left);
        evidence(f, "%ld of its %ld days are left: renewal is due at a third left", c->days_left,
                 c->days_total);
    }
    if (c->key_rsa && c->key_bits > 0 && c->key_bits < 2048) {
        f = add(r, "cert.key_small", c->key_bits < 1024 ? MOAT_SEV_CRITICAL : MOAT_SEV_HIGH,
                c->key_bits < 1024 ? 'F' : 'B', NULL, FIX_CERT, "the key is RSA %d bits",
                c->key_bits);
        evidence(f, "%s; 2048 bits is the minimum (NIST SP 800-131A), CAs refuse less", c->key);
    } else if (!c->key_rsa && c->key_bits > 0 && c->key_bits < 256) {
        f = add(r, "cert.key_small", MOAT_SEV_HIGH, 'B', NULL, FIX_CERT, "the key is %s (%d bits)",
                c->key, c->key_bits);
        evidence(f, "an EC key under 256 bits");
    }
    if (c->sig_weak || c->chain_weak_sig) {
        f = add(r, "cert.sha1", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "a certificate is signed with SHA-1 or MD5");
        evidence(f, "%s", c->sig_weak ? c->sig : "an intermediate's signature");
    }
    if (!c->eku_server) {
        f = add(r, "cert.eku", MOAT_SEV_CRITICAL, 'T', NULL, FIX_CERT,
                "the certificate's extended key usage does not allow TLS servers");
        evidence(f, "extendedKeyUsage without serverAuth");
    }
    if (c->is_ca) {
        f = add(r, "cert.leaf_is_ca", MOAT_SEV_MEDIUM, 0, NULL, FIX_CERT,
                "the server's own certificate is a CA certificate");
        evidence(f, "basicConstraints CA:TRUE on the leaf: whoever has its key can issue for "
                    "any name under its constraints");
    }
    if (!c->chain_order_ok) {
        f = add(r, "cert.chain_order", MOAT_SEV_LOW, 0, NULL, FIX_CERT,
                "the chain is sent out of order");
        evidence(f, "a certificate sent is not issued by the one after it; RFC 8446 §4.4.2 "
                    "wants the leaf first, then each issuer");
    }
    if (c->chain_root_sent) {
        f = add(r, "cert.root_sent", MOAT_SEV_INFO, 0, NULL, FIX_CERT,
                "the chain includes its root");
        evidence(f, "a self-signed certificate is sent: clients have their own copy, so it "
                    "only adds bytes to every handshake");
    }
    if (s->public_name && c->scts == 0) {
        f = add(r, "cert.no_sct", MOAT_SEV_MEDIUM, 0, NULL, FIX_CERT,
                "no Certificate Transparency proof in the certificate");
        evidence(f, "no embedded SCTs: Chrome and Safari refuse publicly trusted certificates "
                    "without them (a public CA embeds them; a private CA's need none)");
    }
    if (s->public_name && !c->ocsp_url && !c->crl_url) {
        f = add(r, "cert.no_revocation", MOAT_SEV_LOW, 0, NULL, FIX_CERT,
                "the certificate names no OCSP responder and no CRL");
        evidence(f, "a revoked copy could not be told from a good one");
    }
    if (c->must_staple && s->ocsp_stapled != MOAT_YES) {
        f = add(r, "cert.must_staple", MOAT_SEV_CRITICAL, 'T', NULL,
                (struct moat_check_fix){"moat does not staple yet: use a certificate without "
                                        "the must-staple extension",
                                        "ssl_stapling on; ssl_stapling_verify on;",
                                        "ocsp-update on on the crt-list line", NULL},
                "the certificate requires OCSP stapling, and no response is stapled");
        evidence(f, "TLS feature status_request (RFC 7633) and no CertificateStatus: Firefox "
                    "refuses the connection");
    } else if (c->ocsp_url && s->ocsp_stapled == MOAT_NO && s->public_name) {
        f = add(r, "cert.no_stapling", MOAT_SEV_INFO, 0, NULL,
                (struct moat_check_fix){NULL, "ssl_stapling on; ssl_stapling_verify on;",
                                        "ocsp-update on on the crt-list line", NULL},
                "no OCSP response is stapled");
        evidence(f, "clients that check revocation ask the CA themselves (slower, and it tells "
                    "the CA who visits)");
    }
}

static void options(const struct moat_check_scan *s, struct moat_check_report *r)
{
    struct moat_check_finding *f;
    static const struct moat_check_fix fix_upgrade = {
        "moat's defaults already do this", "upgrade OpenSSL and nginx to current releases",
        "upgrade OpenSSL and HAProxy to current releases", "upgrade Caddy"};
    if (s->heartbleed == MOAT_YES) {
        f = add(r, "vuln.heartbleed", MOAT_SEV_CRITICAL, 'F', "CVE-2014-0160", fix_upgrade,
                "Heartbleed: the server answers a heartbeat with its memory");
        evidence(f, "an empty heartbeat claiming 16 KiB got a heartbeat response; then replace "
                    "the key and the certificate, they must be taken as leaked");
    } else if (s->heartbeat == MOAT_YES) {
        f = add(r, "tls.heartbeat", MOAT_SEV_INFO, 0, NULL, fix_upgrade,
                "the heartbeat extension is answered");
        evidence(f, "not vulnerable to Heartbleed, but nothing on the web uses it");
    }
    if (s->compression == MOAT_YES) {
        f = add(r, "vuln.crime", MOAT_SEV_HIGH, 'C', "CVE-2012-4929", fix_upgrade,
                "TLS compression is on (CRIME)");
        evidence(f, "a hello offering DEFLATE got a ServerHello choosing it: secrets in "
                    "requests leak through the compressed length");
    }
    if (s->secure_reneg == MOAT_NO && s->versions[MOAT_VER_TLS12] == MOAT_YES) {
        f = add(r, "vuln.insecure_renegotiation", MOAT_SEV_HIGH, 'C', "CVE-2009-3555", fix_upgrade,
                "no secure renegotiation (RFC 5746)");
        evidence(f, "the ServerHello has no renegotiation_info: an attacker can prefix a "
                    "victim's request with their own");
    }
    if (s->client_reneg == MOAT_YES) {
        f = add(r, "tls.client_renegotiation", MOAT_SEV_MEDIUM, 0, "CVE-2011-1473",
                (struct moat_check_fix){"moat refuses renegotiation",
                                        "nginx refuses client renegotiation since 1.0.x: "
                                        "upgrade",
                                        "HAProxy refuses it: upgrade", NULL},
                "client-initiated renegotiation is accepted");
        evidence(f, "a TLS 1.2 client asked to renegotiate and the server did: each "
                    "renegotiation costs the server a full handshake, for free to the client");
    }
    if (s->fallback_scsv == MOAT_NO) {
        f = add(r, "tls.no_fallback_scsv", MOAT_SEV_LOW, 0, NULL, fix_upgrade,
                "TLS_FALLBACK_SCSV is ignored (RFC 7507)");
        evidence(f, "a hello below the server's best version, marked as a fallback, was taken "
                    "instead of refused: a downgrade cannot be told from an old client");
    }
    if (s->ems == MOAT_NO) {
        f = add(r, "tls.no_extended_master_secret", MOAT_SEV_LOW, 0, "CVE-2014-1295", fix_upgrade,
                "TLS 1.2 without the extended master secret (RFC 7627)");
        evidence(f, "the TLS 1.2 ServerHello has no extended_master_secret (triple handshake "
                    "attack)");
    }
    if (s->early_data > 0) {
        f = add(r, "tls.early_data", MOAT_SEV_LOW, 0, NULL,
                (struct moat_check_fix){"moat does not accept early data",
                                        "ssl_early_data off; (or answer 425 to non-idempotent "
                                        "requests with $ssl_early_data)",
                                        "remove allow-0rtt from the bind lines", NULL},
                "TLS 1.3 0-RTT early data is accepted");
        evidence(f,
                 "tickets allow %u bytes of early data: early data can be replayed (RFC 8446 "
                 "§8), so only idempotent requests may be served from it",
                 s->early_data);
    }
    if (s->versions[MOAT_VER_TLS13] == MOAT_YES || s->versions[MOAT_VER_TLS12] == MOAT_YES) {
        int any_resume = s->resume_ticket13 == MOAT_YES || s->resume_ticket12 == MOAT_YES ||
                         s->resume_id12 == MOAT_YES;
        int tried = s->resume_ticket13 != MOAT_UNKNOWN || s->resume_ticket12 != MOAT_UNKNOWN ||
                    s->resume_id12 != MOAT_UNKNOWN;
        if (tried && !any_resume) {
            f = add(r, "tls.no_resumption", MOAT_SEV_LOW, 0, NULL,
                    (struct moat_check_fix){"tls { tickets on } (the default)",
                                            "ssl_session_cache shared:SSL:10m; "
                                            "ssl_session_tickets on;",
                                            "tune.ssl.cachesize 20000 (the default); remove "
                                            "no-tls-tickets",
                                            NULL},
                    "sessions are not resumed");
            evidence(f, "a second connection offering the first one's session got a full "
                        "handshake: every visit pays the whole key exchange again");
        }
    }
    if (s->alpn_h2 == MOAT_NO) {
        f = add(r, "http.no_h2", MOAT_SEV_LOW, 0, NULL,
                (struct moat_check_fix){"http2 on (the default)", "listen 443 ssl; http2 on;",
                                        "bind ... alpn h2,http/1.1", "Caddy offers h2 by default"},
                "HTTP/2 is not offered (ALPN h2)");
        evidence(f, "a handshake offering only h2 got no protocol back");
    }
}

static void http(const struct moat_check_scan *s, struct moat_check_report *r)
{
    struct moat_check_finding *f;
    if (s->status == 0) {
        return; /* no HTTP answer to judge */
    }
    static const struct moat_check_fix fix_hsts = {
        "hsts 1y include_subdomains (a site's default is hsts auto: on for every public name)",
        "add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always;",
        "http-response set-header Strict-Transport-Security \"max-age=31536000; "
        "includeSubDomains\"",
        "header Strict-Transport-Security \"max-age=31536000; includeSubDomains\""};
    int local = !s->public_name;
    if (s->hsts_max_age < 0) {
        f = add(r, "http.no_hsts", local ? MOAT_SEV_INFO : MOAT_SEV_MEDIUM, 0, NULL, fix_hsts,
                "no Strict-Transport-Security");
        evidence(f,
                 "the answer to GET / (%d) has no HSTS: a first visit by http:// can be "
                 "intercepted%s",
                 s->status, local ? " (a local name: HSTS would stick to every port of it)" : "");
    } else if (s->hsts_max_age < 15552000) {
        f = add(r, "http.hsts_short", MOAT_SEV_LOW, 0, NULL, fix_hsts,
                "HSTS max-age is %ld seconds (under 180 days)", s->hsts_max_age);
        evidence(f, "a short max-age lapses between visits");
    }
    if (s->hsts_preload && (s->hsts_max_age < 31536000 || !s->hsts_subdomains)) {
        f = add(r, "http.hsts_preload_rules", MOAT_SEV_LOW, 0, NULL, fix_hsts,
                "HSTS says preload but does not meet the preload list's rules");
        evidence(f,
                 "hstspreload.org requires max-age of at least 31536000 and "
                 "includeSubDomains (max-age=%ld%s)",
                 s->hsts_max_age, s->hsts_subdomains ? "; includeSubDomains" : "");
    }
    char missing[200] = "";
    const char *lacks[3] = {s->hdr_nosniff ? NULL : "X-Content-Type-Options: nosniff",
                            s->hdr_frame ? NULL : "X-Frame-Options (or CSP frame-ancestors)",
                            s->hdr_referrer ? NULL : "Referrer-Policy"};
    for (size_t i = 0, at = 0; i < 3; i++) {
        if (lacks[i] != NULL) {
            int w = snprintf(missing + at, sizeof(missing) - at, "%s%s", at ? ", " : "", lacks[i]);
            at += w > 0 ? (size_t)w : 0;
        }
    }
    if (missing[0] != '\0') {
        f = add(r, "http.security_headers", MOAT_SEV_LOW, 0, NULL,
                (struct moat_check_fix){
                    "header set X-Content-Type-Options nosniff; header set X-Frame-Options "
                    "DENY; header set Referrer-Policy strict-origin-when-cross-origin",
                    "add_header X-Content-Type-Options nosniff always; add_header "
                    "X-Frame-Options DENY always; add_header Referrer-Policy "
                    "strict-origin-when-cross-origin always;",
                    "http-response set-header X-Content-Type-Options nosniff (and the others "
                    "alike)",
                    "header { X-Content-Type-Options nosniff; X-Frame-Options DENY; "
                    "Referrer-Policy strict-origin-when-cross-origin }"},
                "security header fields are missing");
        evidence(f, "the answer to GET / lacks: %s", missing);
    }
    if (!s->hdr_csp) {
        f = add(r, "http.no_csp", MOAT_SEV_INFO, 0, NULL,
                (struct moat_check_fix){"header set Content-Security-Policy \"default-src "
                                        "'self'\" (adapted to the site)",
                                        "add_header Content-Security-Policy \"default-src "
                                        "'self'\" always;",
                                        "http-response set-header Content-Security-Policy "
                                        "\"default-src 'self'\"",
                                        "header Content-Security-Policy \"default-src 'self'\""},
                "no Content-Security-Policy");
        evidence(f, "a policy limits what injected script can do; it must be written for the "
                    "site");
    }
    if (s->http_compressed) {
        f = add(r, "http.breach", MOAT_SEV_INFO, 0, "CVE-2013-3587",
                (struct moat_check_fix){NULL, NULL, NULL, NULL},
                "the answer is compressed (BREACH applies to pages that reflect input next to "
                "secrets)");
        evidence(f, "GET / came with Content-Encoding; pages with CSRF tokens should mask them");
    }
    static const struct moat_check_fix fix_redirect = {
        "redirect_http :80", "server { listen 80; return 308 https://$host$request_uri; }",
        "frontend http: bind :80; http-request redirect scheme https code 308",
        "Caddy redirects by default (automatic HTTPS)"};
    if (s->http_redirects == MOAT_NO) {
        f = add(r, "http.no_redirect", local ? MOAT_SEV_LOW : MOAT_SEV_MEDIUM, 0, NULL,
                fix_redirect, "plain HTTP does not redirect to HTTPS");
        evidence(f, "GET / on port %s answered %d%s%s", "80", s->http_status,
                 s->http_location[0] ? " to " : "", s->http_location);
    } else if (s->http_redirects == MOAT_UNKNOWN && s->public_name) {
        f = add(r, "http.no_port80", MOAT_SEV_INFO, 0, NULL, fix_redirect,
                "nothing answers plain HTTP");
        evidence(f, "people who type the name get a connection error instead of the site");
    }
}

static void dns(const struct moat_check_scan *s, struct moat_check_report *r)
{
    if (s->caa != MOAT_NO) {
        return;
    }
    struct moat_check_finding *f = add(
        r, "dns.no_caa", MOAT_SEV_INFO, 0, NULL,
        (struct moat_check_fix){"a CAA record in the zone: NAME. CAA 0 issue \"letsencrypt.org\" "
                                "(the CA moat's acme block uses)",
                                "a CAA record in the zone, e.g. NAME. CAA 0 issue "
                                "\"letsencrypt.org\"",
                                "a CAA record in the zone, e.g. NAME. CAA 0 issue "
                                "\"letsencrypt.org\"",
                                "a CAA record in the zone, e.g. NAME. CAA 0 issue "
                                "\"letsencrypt.org\""},
        "no CAA record: any CA may issue for %s", s->host);
    evidence(f, "no CAA set at %s or any parent below the top-level domain (RFC 8659)", s->host);
}

static int cmp_sev(const void *a, const void *b)
{
    const struct moat_check_finding *x = a, *y = b;
    return (int)y->sev - (int)x->sev;
}

static int cap_rank(char c)
{
    switch (c) {
    case 'T':
        return 0;
    case 'F':
        return 1;
    case 'C':
        return 2;
    case 'B':
        return 3;
    default:
        return 9;
    }
}

void moat_check_judge(const struct moat_check_scan *s, struct moat_check_report *r)
{
    memset(r, 0, sizeof(*r));
    protocols(s, r);
    suites(s, r);
    key_exchange(s, r);
    certificate(s, r);
    options(s, r);
    http(s, r);
    dns(s, r);
    qsort(r->f, r->n, sizeof(r->f[0]), cmp_sev);
    r->worst = MOAT_SEV_INFO;
    int above_info = 0;
    const struct moat_check_finding *capper = NULL;
    for (size_t i = 0; i < r->n; i++) {
        r->any = 1;
        if (r->f[i].sev > r->worst) {
            r->worst = r->f[i].sev;
        }
        above_info |= r->f[i].sev > MOAT_SEV_INFO;
        if (r->f[i].cap && (capper == NULL || cap_rank(r->f[i].cap) < cap_rank(capper->cap))) {
            capper = &r->f[i];
        }
    }
    if (capper != NULL) {
        snprintf(r->grade, sizeof(r->grade), "%c", capper->cap);
        snprintf(r->grade_rule, sizeof(r->grade_rule), "capped at %c by %s (%s)", capper->cap,
                 capper->id, capper->title);
    } else if (!above_info && s->hsts_max_age >= 15552000) {
        snprintf(r->grade, sizeof(r->grade), "A+");
        snprintf(r->grade_rule, sizeof(r->grade_rule),
                 "A+: nothing above info, and HSTS for %ld days", s->hsts_max_age / 86400);
    } else {
        snprintf(r->grade, sizeof(r->grade), "A");
        snprintf(r->grade_rule, sizeof(r->grade_rule), "%s",
                 above_info ? "A: no finding caps the grade; A+ needs every low finding gone and "
                              "HSTS of 180 days or more"
                            : "A: A+ needs HSTS of 180 days or more");
    }
    r->exit_code = moat_check_exit_for(r->worst, r->any);
    if (s->truncated) {
        /* Facts are missing: a grade from what is left would say more than was seen. */
        snprintf(r->grade, sizeof(r->grade), "?");
        snprintf(r->grade_rule, sizeof(r->grade_rule),
                 "no grade: the check stopped at its bounds (--max-connections, --max-time) "
                 "before it had every fact; the findings are what it saw");
        r->exit_code = 1;
    }
}
