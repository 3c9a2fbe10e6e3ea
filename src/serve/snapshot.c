/*
 * snapshot.c: turning a struct moat_conf into a running configuration (see snapshot.h).
 *
 * Every certificate and key goes through pki's start-up checks before OpenSSL loads it, so a
 * mistake is refused with the file named and the fix, at start and on reload alike.
 */
#include "serve/snapshot.h"

#include "serve/crlpub.h"
#include "serve/proxy.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/key.h"
#include "pki/names.h"
#include "pki/verify.h"
#include "tls/clientauth.h"
#include "tls/ctx.h"
#include "tls/sni.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_ullong generation_counter;

static const char *const local_names[] = {"localhost", "127.0.0.1", "::1"};

static void site_clear(struct moat_site *s)
{
    if (s->st.root_fd >= 0) {
        close(s->st.root_fd);
        s->st.root_fd = -1;
    }
    if (s->ctx != NULL) {
        SSL_CTX_free(s->ctx);
        s->ctx = NULL;
    }
    moat_tls_client_auth_free(s->client_auth);
    s->client_auth = NULL;
    moat_proxy_target_free(s->proxy);
    s->proxy = NULL;
    moat_hdr_table_clear(&s->hdrs);
}

static void snapshot_free(struct moat_snapshot *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nsites; i++) {
        site_clear(&s->sites[i]);
    }
    free(s->sites);
    moat_crlpub_free(s->crlpub);
    moat_tls_sni_free(s->sni);
    moat_conf_free(s->conf);
    free(s);
}

void moat_snapshot_unref(struct moat_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        snapshot_free(s);
    }
}

/* An IP literal as a Host gives it ("127.0.0.1", "[::1]", "::1") in binary; 0 for a name. */
static int ip_parse(const char *p, size_t len, struct moat_site_ip *out)
{
    char text[INET6_ADDRSTRLEN + 2];
    if (len >= 2 && p[0] == '[' && p[len - 1] == ']') {
        p++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(text)) {
        return 0;
    }
    memcpy(text, p, len);
    text[len] = '\0';
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->family = AF_INET6;
        return 1;
    }
    return 0;
}

struct moat_site *moat_snapshot_route(const struct moat_snapshot *s, const char *host, size_t len)
{
    struct moat_site_ip ip;
    if (len > 0 && (host[0] == '[' || (host[len - 1] >= '0' && host[len - 1] <= '9')) &&
        ip_parse(host, len, &ip)) {
        /* SNI never carries an address (RFC 6066 §3), so addresses are kept apart from the SNI
         * table and compared in binary: "[0::1]" and "::1" are one host. */
        for (size_t i = 0; i < s->nips; i++) {
            const struct moat_site_ip *a = &s->ips[i];
            if (a->family == ip.family &&
                memcmp(a->addr, ip.addr, ip.family == AF_INET ? 4 : 16) == 0) {
                return a->site;
            }
        }
        return s->catch_all;
    }
    const struct moat_tls_sni_entry *e = moat_tls_sni_lookup(s->sni, host, len);
    if (e != NULL && e->matched && e->site != NULL) {
        return e->site;
    }
    return NULL;
}

static time_t asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return timegm(&tm);
}

/* A chain warning goes to the error log with the config position of its cert directive. */
static void log_chain_warning(void *arg, enum moat_verify_kind kind, const char *msg)
{
    const struct moat_conf_cert *cc = arg;
    moat_log_w("%s: %s [%s]", cc->where, msg, moat_verify_kind_name(kind));
}

/* Check one certificate/key pair of a site the way a demanding operator would want. `anchor`
 * (may be NULL) holds the site's cert_ca certificates, named `anchor_name` in messages. */
static moat_rc check_pair(const struct moat_conf_site *cs, const struct moat_conf_cert *cc,
                          X509_STORE *trust, X509_STORE *anchor, const char *anchor_name, int quiet,
                          struct moat_err *err)
{
    struct moat_chain *chain = NULL;
    EVP_PKEY *key = NULL;
    moat_rc rc = moat_chain_load(cc->cert_path, &chain, err);
    if (moat_ok(rc)) {
        rc = moat_key_load(cc->key_path, &key, err);
    }
    if (moat_ok(rc)) {
        enum moat_verify_kind kind = MOAT_V_OK;
        struct moat_err werr = {0};
        struct moat_chain_check_opts o = {
            .key = key,
            .trust = trust,
            .anchor = anchor,
            .anchor_name = anchor_name,
            .now = time(NULL),
            .warn = quiet ? NULL : log_chain_warning,
            .warn_arg = (void *)cc,
        };
        rc = moat_chain_check_with(chain, &o, &kind, &werr);
        int lone_self_signed = sk_X509_num(chain->extra) == 0 &&
                               X509_check_issued(chain->leaf, chain->leaf) == X509_V_OK;
        if (kind == MOAT_V_NOT_CA && lone_self_signed) {
            /* `openssl req -x509` makes CA:TRUE certificates; curl and most clients take one
             * that is trusted directly, browsers do not. Worth a warning, not a refusal. */
            if (!quiet) {
                char msg[700];
                moat_log_w("%s (served anyway: a self-signed certificate; `moat serve` without "
                           "cert issues a better one from the local CA)",
                           moat_err_str(&werr, msg, sizeof(msg)));
            }
            rc = MOAT_RC_OK;
        } else if (!moat_ok(rc) && err != NULL) {
            *err = werr;
            if (kind == MOAT_V_KEY_MISMATCH) {
                moat_err_ctx(err, "key file %s", cc->key_path);
            }
        }
    }
    if (moat_ok(rc) && !quiet) {
        if (moat_key_file_too_open(cc->key_path)) {
            moat_log_w("%s: private key is readable by group or others: chmod 600 %s", cc->key_path,
                       cc->key_path);
        }
        for (size_t i = 0; i < cs->nnames; i++) {
            if (strcmp(cs->names[i], "*") != 0 && !moat_chain_covers_name(chain, cs->names[i])) {
                moat_log_w("%s: certificate does not cover the site name \"%s\" (%s): clients "
                           "asking for it will see a name mismatch",
                           cc->cert_path, cs->names[i], cs->where);
            }
        }
    }
    if (!moat_ok(rc) && err != NULL && err->where[0] == '\0') {
        moat_err_where(err, "%s", cc->where);
    }
    moat_chain_free(chain);
    EVP_PKEY_free(key);
    return rc;
}

/* The local CA as the sites of one snapshot share it. */
struct local_ca {
    struct moat_ca *ca; /* owned; opened (or, for a check, read) on first use */
    int looked;         /* a check looked at the CA folder already */
};

/* The names a local certificate is for (the site's, else localhost and its addresses) and the
 * file name it is kept under in <state>/certs. */
static void local_names_for(const struct moat_conf_site *cs, const char *names[64], size_t *n,
                            char label[128])
{
    *n = 0;
    for (size_t i = 0; i < cs->nnames && *n < 64; i++) {
        if (strcmp(cs->names[i], "*") != 0) {
            names[(*n)++] = cs->names[i];
        }
    }
    if (*n == 0) {
        for (size_t i = 0; i < 3; i++) {
            names[(*n)++] = local_names[i];
        }
    }
    size_t j = 0;
    for (const char *p = names[0]; *p && j < 127; p++) {
        label[j++] = (*p == '*' ? '_' : (*p == ':' ? '-' : *p));
    }
    label[j] = '\0';
}

/* One certificate of the local CA folder for a check: the first certificate of the file. */
static moat_rc peek_cert(const char *path, X509 **out, struct moat_err *err)
{
    struct moat_chain *c = NULL;
    MOAT_TRY(moat_chain_load(path, &c, err));
    *out = c->leaf;
    c->leaf = NULL;
    moat_chain_free(c);
    return MOAT_RC_OK;
}

/*
 * For `moat serve --check`: read the local CA in `dir` without writing anything (no folder,
 * no lock file), with the checks that make `serve` refuse one: *out stays NULL when the folder
 * holds no CA file (serve would create the CA); refused when only some files are there, a file
 * does not load, the files do not belong together or the root or intermediate has expired.
 */
static moat_rc local_ca_peek(const char *dir, struct moat_ca **out, struct moat_err *err)
{
    static const char *const files[] = {"root.pem", "intermediate.pem", "intermediate.key"};
    char paths[3][PATH_MAX + 32];
    char missing[80] = "";
    int have = 0;
    *out = NULL;
    for (int i = 0; i < 3; i++) {
        struct stat st;
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", dir, files[i]);
        if (lstat(paths[i], &st) == 0) {
            have++;
        } else if (errno == ENOENT) {
            size_t used = strlen(missing);
            snprintf(missing + used, sizeof(missing) - used, "%s%s", used ? ", " : "", files[i]);
        } else {
            moat_err_where(err, "%s", paths[i]);
            MOAT_FAIL_SYS(err, MOAT_E_IO, "cannot look at %s", paths[i]);
        }
    }
    if (have == 0) {
        return MOAT_RC_OK;
    }
    if (have < 3) {
        moat_err_where(err, "%s", dir);
        MOAT_FAIL(err, MOAT_E_CONFIG,
                  "the local CA in %s is incomplete (missing %s): restore the missing files, or "
                  "move the folder away so moat makes a new CA",
                  dir, missing);
    }
    struct moat_ca *ca = calloc(1, sizeof(*ca));
    if (ca == NULL || (ca->dir = strdup(dir)) == NULL) {
        free(ca);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    moat_rc rc = peek_cert(paths[0], &ca->root, err);
    if (moat_ok(rc)) {
        rc = peek_cert(paths[1], &ca->cert, err);
    }
    if (moat_ok(rc)) {
        rc = moat_key_load(paths[2], &ca->key, err);
    }
    const char *fix = "the files do not belong together; move the folder away so moat makes a "
                      "new local CA";
    if (moat_ok(rc) && EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key) != 1) {
        moat_err_where(err, "%s", paths[2]);
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__, "%s does not match %s: %s",
                          paths[2], paths[1], fix);
    }
    if (moat_ok(rc) &&
        (X509_check_ca(ca->cert) == 0 || X509_check_issued(ca->root, ca->cert) != X509_V_OK ||
         X509_verify(ca->cert, X509_get0_pubkey(ca->root)) != 1)) {
        moat_err_where(err, "%s", paths[1]);
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "%s is not a CA certificate signed by %s: %s", paths[1], paths[0], fix);
    }
    time_t now = time(NULL);
    for (int i = 0; i < 2 && moat_ok(rc); i++) {
        X509 *x = i == 0 ? ca->root : ca->cert;
        if (X509_cmp_time(X509_get0_notAfter(x), &now) > 0) {
            continue;
        }
        moat_err_where(err, "%s", paths[i]);
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          i == 0 ? "%s has expired: move the folder %s away so moat makes a new "
                                   "local CA (clients will then need to trust the new root)"
                                 : "%s has expired: make a new one with `moat ca intermediate "
                                   "--ca %s` (needs root.key), or move the folder away so moat "
                                   "makes a new local CA",
                          paths[i], dir);
    }
    ERR_clear_error();
    if (!moat_ok(rc)) {
        moat_ca_free(ca);
        moat_err_ctx(err, "while looking at moat's local CA");
        return rc;
    }
    *out = ca;
    return MOAT_RC_OK;
}

/* For `moat serve --check`: say what serve would create for a site without cert, and write
 * nothing. *cert_path and *key_path are set (malloc'ed) only when serve would use the existing
 * files as they are, so the check can load them like serve does. */
static moat_rc local_cert_plan(const struct moat_conf_site *cs, const struct moat_snapshot_env *env,
                               struct local_ca *lca, char **cert_path, char **key_path,
                               struct moat_err *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/ca", env->state_dir);
    int first = !lca->looked;
    if (!lca->looked) {
        MOAT_TRY(local_ca_peek(dir, &lca->ca, err));
        lca->looked = 1;
    }
    const char *names[64];
    size_t n = 0;
    char label[128];
    local_names_for(cs, names, &n, label);
    MOAT_TRY_CTX(moat_names_check(names, n, 0, err), err,
                 "while planning a local certificate for %s", names[0]);
    if (strlen(label) > 64) {
        /* What moat_ca_ensure_leaf refuses for its file name; serve would stop here. */
        moat_err_ctx(err, "while planning a local certificate for %s", names[0]);
        MOAT_FAIL(err, MOAT_E_USAGE,
                  "certificate label \"%.64s...\" must be 1-64 letters, digits, '.', '_' or '-' "
                  "and not start with '.'",
                  label);
    }
    char list[512] = "";
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
    }
    char cp[PATH_MAX + 8], kp[PATH_MAX + 8];
    snprintf(cp, sizeof(cp), "%s/certs/%s.pem", env->state_dir, label);
    snprintf(kp, sizeof(kp), "%s/certs/%s.key", env->state_dir, label);
    if (lca->ca == NULL && !env->quiet && first) {
        moat_log_i("check: serve would create a local CA in %s (root and intermediate, ECDSA "
                   "P-256) and issue a certificate for %s into %s (nothing written now)",
                   dir, list, cp);
    } else if (lca->ca == NULL && !env->quiet) {
        moat_log_i("check: serve would issue a certificate for %s from that new local CA into "
                   "%s (nothing written now)",
                   list, cp);
    }
    if (lca->ca == NULL) {
        return MOAT_RC_OK;
    }
    if (moat_ca_leaf_reusable(lca->ca, cp, kp, names, n, time(NULL))) {
        *cert_path = strdup(cp);
        *key_path = strdup(kp);
        if (*cert_path == NULL || *key_path == NULL) {
            free(*cert_path);
            free(*key_path);
            *cert_path = *key_path = NULL;
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        return MOAT_RC_OK;
    }
    struct stat st;
    int exists = lstat(cp, &st) == 0;
    if (!env->quiet) {
        moat_log_i("check: serve would %s a certificate for %s from the local CA in %s into %s "
                   "(nothing written now)",
                   exists ? "renew (it is due, or no longer fits)" : "issue", list, dir, cp);
    }
    return MOAT_RC_OK;
}

/* A site without a certificate gets one from the local CA (zero-config HTTPS). */
static moat_rc local_cert(const struct moat_conf_site *cs, const struct moat_snapshot_env *env,
                          struct local_ca *lca, char **cert_path, char **key_path, time_t *renew_at,
                          struct moat_err *err)
{
    if (env->dry_run) {
        return local_cert_plan(cs, env, lca, cert_path, key_path, err);
    }
    char dir[PATH_MAX];
    if (lca->ca == NULL) {
        snprintf(dir, sizeof(dir), "%s/ca", env->state_dir);
        int created = 0;
        MOAT_TRY_CTX(moat_ca_open_or_create(dir, NULL, &lca->ca, &created, err), err,
                     "while opening moat's local CA");
        if (created && !env->quiet) {
            moat_log_i("created a local CA in %s (trust it: moat trust install, or "
                       "curl --cacert %s/root.pem)",
                       dir, dir);
        }
    }
    const char *names[64];
    size_t n = 0;
    char label[128];
    local_names_for(cs, names, &n, label);
    snprintf(dir, sizeof(dir), "%s/certs", env->state_dir);
    int issued = 0;
    MOAT_TRY_CTX(
        moat_ca_ensure_leaf(lca->ca, dir, label, names, n, cert_path, key_path, &issued, err), err,
        "while issuing a local certificate for %s", names[0]);
    if (issued && !env->quiet) {
        moat_log_i("issued a certificate for %s from the local CA: %s", names[0], *cert_path);
    }
    struct moat_chain *chain = NULL;
    if (moat_ok(moat_chain_load(*cert_path, &chain, NULL))) {
        time_t nb = asn1_to_time(X509_get0_notBefore(chain->leaf));
        time_t na = asn1_to_time(X509_get0_notAfter(chain->leaf));
        time_t at = nb + (na - nb) * 2 / 3;
        if (*renew_at == 0 || at < *renew_at) {
            *renew_at = at;
        }
    }
    moat_chain_free(chain);
    return MOAT_RC_OK;
}

/* The site's cert_ca files as one store (NULL when there are none), and their names for
 * messages. */
static moat_rc site_anchor(const struct moat_conf_site *cs, X509_STORE **out, char *name, size_t n,
                           struct moat_err *err)
{
    *out = NULL;
    name[0] = '\0';
    if (cs->ncert_ca == 0) {
        return MOAT_RC_OK;
    }
    moat_rc rc = moat_trust_store_new((const char *const *)cs->cert_ca, cs->ncert_ca, 0, out, err);
    if (!moat_ok(rc)) {
        moat_err_ctx(err, "in the cert_ca of site %s (%s)", cs->names[0], cs->where);
        return rc;
    }
    /* A server certificate given as cert_ca (an easy slip: leaf.pem for root.pem) would only
     * make every chain "the wrong CA"; say what is wrong with the file itself. */
    for (size_t i = 0; i < cs->ncert_ca; i++) {
        struct moat_chain *c = NULL;
        int has_ca = 0;
        char nm[200] = "";
        if (moat_ok(moat_chain_load(cs->cert_ca[i], &c, NULL))) {
            has_ca = X509_check_ca(c->leaf) != 0;
            for (int k = 0; !has_ca && k < sk_X509_num(c->extra); k++) {
                has_ca = X509_check_ca(sk_X509_value(c->extra, k)) != 0;
            }
            X509_NAME_oneline(X509_get_subject_name(c->leaf), nm, sizeof(nm));
        }
        moat_chain_free(c);
        ERR_clear_error();
        if (!has_ca) {
            X509_STORE_free(*out);
            *out = NULL;
            moat_err_where(err, "%s", cs->where);
            MOAT_FAIL(
                err, MOAT_E_CONFIG,
                "the cert_ca (--ca) file %s holds no CA certificate (%s is not a CA): name the "
                "certificate of the CA that issued the site's certificate (its root.pem "
                "or ca.crt)",
                cs->cert_ca[i], nm[0] ? nm : "its certificate");
        }
    }
    size_t used = 0;
    for (size_t i = 0; i < cs->ncert_ca && used + 1 < n; i++) {
        int w = snprintf(name + used, n - used, "%s%s", i ? ", " : "", cs->cert_ca[i]);
        used = w < 0 ? n : used + (size_t)w;
    }
    return MOAT_RC_OK;
}

static moat_rc build_site(struct moat_snapshot *s, size_t i, const struct moat_snapshot_env *env,
                          X509_STORE *trust, struct local_ca *lca, struct moat_err *err)
{
    const struct moat_conf_site *cs = &s->conf->sites[i];
    struct moat_site *site = &s->sites[i];
    site->conf = cs;
    site->st.root_fd = -1;
    site->st.index = cs->index;
    site->st.listing = cs->listing;

    struct moat_tls_cert_files files[8];
    size_t nfiles = 0;
    char *local_cert_path = NULL, *local_key_path = NULL;
    if (cs->ncerts == 0) {
        moat_rc rc = local_cert(cs, env, lca, &local_cert_path, &local_key_path, &s->renew_at, err);
        if (!moat_ok(rc)) {
            moat_err_where(err, "%s", cs->where);
            return rc;
        }
        if (local_cert_path != NULL) {
            files[nfiles++] = (struct moat_tls_cert_files){local_cert_path, local_key_path};
        }
        site->local_cert = 1;
    } else {
        X509_STORE *anchor = NULL;
        char anchor_name[600];
        MOAT_TRY(site_anchor(cs, &anchor, anchor_name, sizeof(anchor_name), err));
        moat_rc rc = MOAT_RC_OK;
        for (size_t k = 0; k < cs->ncerts && nfiles < 8 && moat_ok(rc); k++) {
            rc = check_pair(cs, &cs->certs[k], trust, anchor, anchor_name, env->quiet, err);
            files[nfiles++] =
                (struct moat_tls_cert_files){cs->certs[k].cert_path, cs->certs[k].key_path};
        }
        X509_STORE_free(anchor);
        MOAT_TRY(rc);
    }
    if (cs->client_auth != MOAT_CLIENT_AUTH_OFF) {
        moat_rc rc = moat_tls_client_auth_new(
            (enum moat_client_auth_mode)cs->client_auth, (const char *const *)cs->client_ca,
            cs->nclient_ca, (const char *const *)cs->client_crl, cs->nclient_crl,
            (int)cs->client_depth, (const char *const *)cs->client_allow, cs->nclient_allow,
            &site->client_auth, err);
        if (!moat_ok(rc)) {
            free(local_cert_path);
            free(local_key_path);
            moat_err_ctx(err, "in site %s (%s)", cs->names[0], cs->where);
            return rc;
        }
    }
    /* http/1.0 too: curl -0 and other HTTP/1.0 clients offer only that (RFC 7301 registry);
     * http/1.1 first, as the server's preference. */
    static const char *const alpn[] = {"http/1.1", "http/1.0"};
    struct moat_tls_opts o = {
        .certs = files,
        .ncerts = nfiles,
        .alpn = alpn,
        .nalpn = sizeof(alpn) / sizeof(alpn[0]),
        .tickets = s->conf->tickets ? env->tickets : NULL,
        .session_cache_size = (unsigned long)s->conf->session_cache,
        .session_timeout_s = (long)(s->conf->ticket_rotate_s * 2),
        .client_auth = site->client_auth,
    };
    moat_rc rc = MOAT_RC_OK;
    if (nfiles > 0) {
        rc = moat_tls_ctx_new(&o, &site->ctx, err);
    } else if ((site->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        /* A check for a site whose certificate serve would issue: a bare context stands in,
         * so the rest of the site (SNI names, root, proxy, client CAs) is still checked. */
        rc = moat_err_ssl(err, MOAT_E_NOMEM, __FILE__, __LINE__, "cannot create a TLS context");
    }
    free(local_cert_path);
    free(local_key_path);
    if (!moat_ok(rc)) {
        if (err != NULL && err->where[0] == '\0') {
            moat_err_where(err, "%s", cs->where);
        }
        return rc;
    }

    if (cs->proxy_host != NULL) {
        char local_root[PATH_MAX];
        snprintf(local_root, sizeof(local_root), "%s/ca/root.pem", env->state_dir);
        moat_rc prc = moat_proxy_target_new(cs, local_root, &site->proxy, err);
        if (!moat_ok(prc)) {
            moat_err_ctx(err, "in site %s (%s)", cs->names[0], cs->where);
            return prc;
        }
    } else if ((site->st.root_fd = open(cs->root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        moat_err_where(err, "%s", cs->where);
        MOAT_FAIL_SYS(err, MOAT_E_CONFIG,
                      "root folder \"%s\" cannot be opened (create it, or fix the path)", cs->root);
    }

    if (moat_conf_site_hsts(cs)) {
        int n = snprintf(
            site->hsts, sizeof(site->hsts), "Strict-Transport-Security: max-age=%llu%s%s\r\n",
            (unsigned long long)cs->hsts_max_age_s,
            cs->hsts_subdomains ? "; includeSubDomains" : "", cs->hsts_preload ? "; preload" : "");
        site->hsts_len = n > 0 && (size_t)n < sizeof(site->hsts) ? (size_t)n : 0;
    }
    MOAT_TRY(moat_hdr_table_build(cs, &site->hdrs, err));
    for (size_t k = 0; k < cs->nnames; k++) {
        struct moat_site_ip ip = {.site = site};
        if (ip_parse(cs->names[k], strlen(cs->names[k]), &ip)) {
            if (s->nips == MOAT_SNAPSHOT_MAX_IPS) {
                MOAT_FAIL(err, MOAT_E_CONFIG, "%s: more than %d addresses as site names", cs->where,
                          MOAT_SNAPSHOT_MAX_IPS);
            }
            s->ips[s->nips++] = ip;
        }
        if (strcmp(cs->names[k], "*") == 0) {
            s->catch_all = site;
        }
        MOAT_TRY(moat_tls_sni_add(s->sni, cs->names[k], site->ctx, site, err));
    }
    return MOAT_RC_OK;
}

moat_rc moat_snapshot_build(struct moat_conf *conf, const struct moat_snapshot_env *env,
                            struct moat_snapshot **out, struct moat_err *err)
{
    *out = NULL;
    struct moat_snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        moat_conf_free(conf);
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    atomic_init(&s->refs, 1);
    s->conf = conf;
    s->generation = atomic_fetch_add(&generation_counter, 1) + 1;
    moat_h1_limits_default(&s->limits);
    s->limits.max_line_bytes = (size_t)conf->max_line_bytes;
    s->limits.max_head_bytes = (size_t)conf->max_head_bytes;
    s->limits.max_fields = (size_t)conf->max_fields;

    moat_rc rc = MOAT_RC_OK;
    X509_STORE *trust = NULL;
    struct local_ca lca = {0};
    s->sites = calloc(conf->nsites ? conf->nsites : 1, sizeof(*s->sites));
    s->sni = moat_tls_sni_new();
    if (s->sites == NULL || s->sni == NULL) {
        rc = moat_err_set(err, MOAT_E_NOMEM, __FILE__, __LINE__, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < conf->nsites; i++) {
        s->sites[i].st.root_fd = -1;
    }
    s->nsites = conf->nsites;
    if (conf->nsites == 0) {
        rc = moat_err_set(err, MOAT_E_CONFIG, __FILE__, __LINE__,
                          "no site configured: add a `site NAME { root DIR }` block");
        goto out;
    }

    /* Anchors for the "missing intermediate" check: the system's, the `trust` files, and
     * moat's local CA when it exists. */
    const char *extra[34];
    size_t nextra = 0;
    for (size_t i = 0; i < conf->ntrust && nextra < 32; i++) {
        extra[nextra++] = conf->trust[i];
    }
    char local_root[PATH_MAX];
    snprintf(local_root, sizeof(local_root), "%s/ca/root.pem", env->state_dir);
    if (access(local_root, R_OK) == 0) {
        extra[nextra++] = local_root;
    }
    rc = moat_trust_store_new(extra, nextra, 1, &trust, err);
    if (!moat_ok(rc)) {
        goto out;
    }
    for (size_t i = 0; i < conf->nsites; i++) {
        rc = build_site(s, i, env, trust, &lca, err);
        if (!moat_ok(rc)) {
            goto out;
        }
    }
    rc = moat_tls_sni_finish(s->sni, err);
    if (moat_ok(rc)) {
        /* After the sites: a site without `cert` has made the local CA by now. */
        rc = moat_crlpub_build(conf, env->state_dir, env->quiet, &s->crlpub, &s->renew_at, err);
    }
out:
    X509_STORE_free(trust);
    moat_ca_free(lca.ca);
    if (!moat_ok(rc)) {
        snapshot_free(s);
        return rc;
    }
    *out = s;
    return MOAT_RC_OK;
}
