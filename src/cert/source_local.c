/*
 * source_local.c: the local CA certificate source (zero-config HTTPS).
 *
 * A site without `cert` gets a certificate from moat's own CA in <state>/ca, kept in
 * <state>/certs/<first name>.pem and .key. load makes sure the files are there and fresh (pki/
 * ca.c issues them when missing or due), then parses them once into a certificate set; the
 * set asks to be replaced at two thirds of its validity. describe is what `serve --check`
 * uses: it reads the CA folder without writing anything (no folder, no lock file) and says
 * what serve would create.
 */
#include "cert/source.h"

#include "core/log.h"
#include "pki/ca.h"
#include "pki/chain.h"
#include "pki/key.h"
#include "pki/names.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LOCAL_NAMES_MAX 64

static const char *const local_names[] = {"localhost", "127.0.0.1", "::1"};

struct moat_cert_local_ca {
    char *state_dir;    /* owned */
    int quiet;          /* no notes (reloads) */
    struct moat_ca *ca; /* owned; opened (or, for a check, read) on first use */
    int looked;         /* a check looked at the CA folder already */
};

struct local_source {
    struct moat_cert_source base;   /* first: the ops see a struct moat_cert_source * */
    struct moat_cert_local_ca *lca; /* borrowed */
    char *names[LOCAL_NAMES_MAX];   /* owned copies */
    size_t n;
    char label[128]; /* the file name under <state>/certs */
};

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

/* Parse the issued files once into a set that asks to be renewed at two thirds of its life
 * (what moat_ca_ensure_leaf reuses up to). Nothing is written. */
static moat_rc load_files(const struct local_source *ls, const char *cert_path,
                          const char *key_path, struct moat_tls_certset **out, struct moat_err *err)
{
    struct moat_chain *chain = NULL;
    EVP_PKEY *key = NULL;
    MOAT_TRY(moat_chain_load(cert_path, &chain, err));
    moat_rc rc = moat_key_load(key_path, &key, err);
    if (moat_ok(rc)) {
        time_t nb = moat_ca_asn1_time(X509_get0_notBefore(chain->leaf));
        time_t na = moat_ca_asn1_time(X509_get0_notAfter(chain->leaf));
        X509 *leaf = chain->leaf;
        STACK_OF(X509) *extra = chain->extra;
        chain->leaf = NULL;
        chain->extra = NULL;
        rc = moat_tls_certset_new(leaf, extra, key, cert_path, key_path,
                                  ls->base.ops->renew_at(&ls->base, nb, na), out, err);
    }
    moat_chain_free(chain);
    return rc;
}

/* The names as the pki/ calls take them. */
static void names_view(const struct local_source *ls, const char *names[LOCAL_NAMES_MAX])
{
    for (size_t i = 0; i < ls->n; i++) {
        names[i] = ls->names[i];
    }
}

/* For `moat serve --check`: say what serve would create for a site without cert, and write
 * nothing. *out is set only when serve would use the existing files as they are, so the check
 * loads them like serve does. */
static moat_rc local_describe(struct moat_cert_source *src, struct moat_tls_certset **out,
                              struct moat_err *err)
{
    struct local_source *ls = (struct local_source *)src;
    struct moat_cert_local_ca *lca = ls->lca;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/ca", lca->state_dir);
    int first = !lca->looked;
    if (!lca->looked) {
        MOAT_TRY(local_ca_peek(dir, &lca->ca, err));
        lca->looked = 1;
    }
    const char *names[LOCAL_NAMES_MAX];
    size_t n = ls->n;
    names_view(ls, names);
    const char *label = ls->label;
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
    snprintf(cp, sizeof(cp), "%s/certs/%s.pem", lca->state_dir, label);
    snprintf(kp, sizeof(kp), "%s/certs/%s.key", lca->state_dir, label);
    if (lca->ca == NULL && !lca->quiet && first) {
        moat_log_i("check: serve would create a local CA in %s (root and intermediate, ECDSA "
                   "P-256) and issue a certificate for %s into %s (nothing written now)",
                   dir, list, cp);
    } else if (lca->ca == NULL && !lca->quiet) {
        moat_log_i("check: serve would issue a certificate for %s from that new local CA into "
                   "%s (nothing written now)",
                   list, cp);
    }
    if (lca->ca == NULL) {
        return MOAT_RC_OK;
    }
    if (moat_ca_leaf_reusable(lca->ca, cp, kp, names, n, time(NULL))) {
        return load_files(ls, cp, kp, out, err);
    }
    struct stat st;
    int exists = lstat(cp, &st) == 0;
    if (!lca->quiet) {
        moat_log_i("check: serve would %s a certificate for %s from the local CA in %s into %s "
                   "(nothing written now)",
                   exists ? "renew (it is due, or no longer fits)" : "issue", list, dir, cp);
    }
    return MOAT_RC_OK;
}

/* Open (or make) the CA, issue the leaf when it is missing or due, load it. */
static moat_rc local_load(struct moat_cert_source *src, struct moat_tls_certset **out,
                          struct moat_err *err)
{
    struct local_source *ls = (struct local_source *)src;
    struct moat_cert_local_ca *lca = ls->lca;
    char dir[PATH_MAX];
    if (lca->ca == NULL) {
        snprintf(dir, sizeof(dir), "%s/ca", lca->state_dir);
        int created = 0;
        MOAT_TRY_CTX(moat_ca_open_or_create(dir, NULL, &lca->ca, &created, err), err,
                     "while opening moat's local CA");
        if (created && !lca->quiet) {
            moat_log_i("created a local CA in %s (trust it: moat trust install, or "
                       "curl --cacert %s/root.pem)",
                       dir, dir);
        }
    }
    const char *names[LOCAL_NAMES_MAX];
    names_view(ls, names);
    snprintf(dir, sizeof(dir), "%s/certs", lca->state_dir);
    int issued = 0;
    char *cert_path = NULL, *key_path = NULL;
    MOAT_TRY_CTX(moat_ca_ensure_leaf(lca->ca, dir, ls->label, names, ls->n, &cert_path, &key_path,
                                     &issued, err),
                 err, "while issuing a local certificate for %s", names[0]);
    if (issued && !lca->quiet) {
        moat_log_i("issued a certificate for %s from the local CA: %s", names[0], cert_path);
    }
    moat_rc rc = load_files(ls, cert_path, key_path, out, err);
    free(cert_path);
    free(key_path);
    return rc;
}

/* Two thirds of the validity: moat_ca_ensure_leaf issues a new one from there on. */
static time_t local_renew_at(const struct moat_cert_source *src, time_t not_before,
                             time_t not_after)
{
    if (not_before == 0 || not_after <= not_before) {
        return 0;
    }
    return not_before + (not_after - not_before) * 2 / 3;
}

static void local_free(struct moat_cert_source *src)
{
    struct local_source *ls = (struct local_source *)src;
    for (size_t i = 0; i < ls->n; i++) {
        free(ls->names[i]);
    }
    free(ls);
}

static const struct moat_cert_source_ops local_ops = {
    .name = "local CA",
    .load = local_load,
    .renew_at = local_renew_at,
    .describe = local_describe,
    .free = local_free,
};

struct moat_cert_local_ca *moat_cert_local_ca_new(const char *state_dir, int quiet)
{
    struct moat_cert_local_ca *lca = calloc(1, sizeof(*lca));
    if (lca == NULL || (lca->state_dir = strdup(state_dir ? state_dir : ".")) == NULL) {
        free(lca);
        return NULL;
    }
    lca->quiet = quiet;
    return lca;
}

void moat_cert_local_ca_free(struct moat_cert_local_ca *lca)
{
    if (lca == NULL) {
        return;
    }
    moat_ca_free(lca->ca);
    free(lca->state_dir);
    free(lca);
}

moat_rc moat_cert_source_local_new(struct moat_cert_local_ca *lca, const char *const *names,
                                   size_t n, struct moat_cert_source **out, struct moat_err *err)
{
    *out = NULL;
    MOAT_ENSURE_REF(lca);
    struct local_source *ls = calloc(1, sizeof(*ls));
    if (ls == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    ls->base.ops = &local_ops;
    ls->lca = lca;
    /* The site's names, else localhost and its addresses. */
    for (size_t i = 0; i < n && ls->n < LOCAL_NAMES_MAX; i++) {
        if (strcmp(names[i], "*") != 0 && (ls->names[ls->n] = strdup(names[i])) != NULL) {
            ls->n++;
        } else if (strcmp(names[i], "*") != 0) {
            local_free(&ls->base);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
    }
    /* localhost is this machine's loopback (RFC 6761 §6.3): its certificate names the
     * loopback addresses too, so that https://127.0.0.1/ and https://[::1]/ verify as well. A
     * site without names gets all three. */
    int want_loop = ls->n == 0;
    for (size_t i = 0; i < ls->n && !want_loop; i++) {
        want_loop = strcasecmp(ls->names[i], "localhost") == 0;
    }
    for (size_t i = ls->n == 0 ? 0 : 1; want_loop && i < 3 && ls->n < LOCAL_NAMES_MAX; i++) {
        int have = 0;
        for (size_t k = 0; k < ls->n && !have; k++) {
            have = strcmp(ls->names[k], local_names[i]) == 0;
        }
        if (have) {
            continue;
        }
        if ((ls->names[ls->n] = strdup(local_names[i])) == NULL) {
            local_free(&ls->base);
            MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
        }
        ls->n++;
    }
    /* The file name it is kept under in <state>/certs: the first name, made a plain file name
     * ('*' and ':' cannot be in one everywhere). */
    size_t j = 0;
    for (const char *p = ls->names[0]; *p && j < sizeof(ls->label) - 1; p++) {
        ls->label[j++] = (*p == '*' ? '_' : (*p == ':' ? '-' : *p));
    }
    ls->label[j] = '\0';
    *out = &ls->base;
    return MOAT_RC_OK;
}
