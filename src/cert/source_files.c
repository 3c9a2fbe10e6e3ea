/*
 * source_files.c: the `files` certificate source: a certificate file and its key, as the
 * configuration names them.
 *
 * Each file is parsed once, by pki/ (which says what is wrong with a file in words), and the
 * start-up checks of pki/chain.c run on those parsed objects; the same objects then become the
 * certificate set the TLS context is built from. Nothing is read twice.
 */
#include "cert/source.h"

#include "core/log.h"
#include "core/priv.h"
#include "pki/chain.h"
#include "pki/key.h"
#include "pki/verify.h"

#include <openssl/x509v3.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct files_source {
    struct moat_cert_source base;  /* first: the ops see a struct moat_cert_source * */
    struct moat_cert_files_opts o; /* everything borrowed (see source.h) */
};

/* A chain warning goes to the error log with the config position of its cert directive. */
static void log_chain_warning(void *arg, enum moat_verify_kind kind, const char *msg)
{
    const struct files_source *f = arg;
    moat_log_w("%s: %s [%s]", f->o.where, msg, moat_verify_kind_name(kind));
}

/* Check one certificate/key pair of a site the way a demanding operator would want, and keep
 * what was parsed. */
static moat_rc files_load(struct moat_cert_source *src, struct moat_tls_certset **out,
                          struct moat_err *err)
{
    const struct files_source *f = (const struct files_source *)src;
    const struct moat_cert_files_opts *o = &f->o;
    struct moat_chain *chain = NULL;
    EVP_PKEY *key = NULL;
    /* As root until the privileges are dropped: certbot's live folder, /etc/ssl/private
     * and the like are root's to read (docs/admin.md, "Privileges"). */
    int raised = moat_priv_raise();
    /* Dropping from root is a production setup: there a key open to everyone is refused;
     * elsewhere it is warned about below. */
    moat_rc rc = moat_priv_user() != NULL ? moat_key_file_check_mode(o->key_path, err) : MOAT_RC_OK;
    if (moat_ok(rc)) {
        rc = moat_chain_load(o->cert_path, &chain, err);
    }
    if (moat_ok(rc)) {
        rc = moat_key_load(o->key_path, &key, err);
    }
    moat_priv_restore(raised);
    if (!moat_ok(rc) && err != NULL && err->sys_errno == EACCES && moat_priv_user() != NULL) {
        moat_err_ctx(err,
                     "moat runs as user %s now: make the file readable by it (e.g. 0640 "
                     "with a group %s is in), or restart moat",
                     moat_priv_user(), moat_priv_user());
    }
    if (moat_ok(rc)) {
        enum moat_verify_kind kind = MOAT_V_OK;
        struct moat_err werr = {0};
        struct moat_chain_check_opts co = {
            .key = key,
            .trust = o->trust,
            .anchor = o->anchor,
            .anchor_name = o->anchor_name,
            .now = time(NULL),
            .warn = o->quiet ? NULL : log_chain_warning,
            .warn_arg = (void *)f,
        };
        rc = moat_chain_check_with(chain, &co, &kind, &werr);
        int lone_self_signed = sk_X509_num(chain->extra) == 0 &&
                               X509_check_issued(chain->leaf, chain->leaf) == X509_V_OK;
        if (kind == MOAT_V_NOT_CA && lone_self_signed) {
            /* `openssl req -x509` makes CA:TRUE certificates; curl and most clients take one
             * that is trusted directly, browsers do not. Worth a warning, not a refusal. */
            if (!o->quiet) {
                char msg[700];
                moat_log_w("%s (served anyway: a self-signed certificate; `moat serve` without "
                           "cert issues a better one from the local CA)",
                           moat_err_str(&werr, msg, sizeof(msg)));
            }
            rc = MOAT_RC_OK;
        } else if (!moat_ok(rc) && err != NULL) {
            *err = werr;
            if (kind == MOAT_V_KEY_MISMATCH) {
                moat_err_ctx(err, "key file %s", o->key_path);
            }
        }
    }
    if (moat_ok(rc) && !o->quiet) {
        if (moat_key_file_too_open(o->key_path)) {
            moat_log_w("%s: private key is readable by group or others: chmod 600 %s", o->key_path,
                       o->key_path);
        }
        for (size_t i = 0; i < o->nsite_names; i++) {
            if (strcmp(o->site_names[i], "*") != 0 &&
                !moat_chain_covers_name(chain, o->site_names[i])) {
                moat_log_w("%s: certificate does not cover the site name \"%s\" (%s): clients "
                           "asking for it will see a name mismatch",
                           o->cert_path, o->site_names[i], o->site_where);
            }
        }
    }
    if (moat_ok(rc)) {
        /* The set takes the parsed objects over: what was checked is what is served. */
        X509 *leaf = chain->leaf;
        STACK_OF(X509) *extra = chain->extra;
        chain->leaf = NULL;
        chain->extra = NULL;
        rc = moat_tls_certset_new(leaf, extra, key, o->cert_path, o->key_path, 0, out, err);
        key = NULL;
    }
    if (!moat_ok(rc) && err != NULL && err->where[0] == '\0') {
        moat_err_where(err, "%s", o->where);
    }
    moat_chain_free(chain);
    EVP_PKEY_free(key);
    return rc;
}

static time_t files_renew_at(const struct moat_cert_source *src, time_t not_before,
                             time_t not_after)
{
    return 0; /* the operator replaces the files (and reloads) */
}

static void files_free(struct moat_cert_source *src)
{
    free(src);
}

static const struct moat_cert_source_ops files_ops = {
    .name = "files",
    .load = files_load,
    .renew_at = files_renew_at,
    .describe = files_load, /* reads only: --check runs the same checks serve does */
    .free = files_free,
};

moat_rc moat_cert_source_files_new(const struct moat_cert_files_opts *o,
                                   struct moat_cert_source **out, struct moat_err *err)
{
    *out = NULL;
    if (o == NULL || o->cert_path == NULL || o->key_path == NULL) {
        MOAT_FAIL(err, MOAT_E_CONFIG, "a certificate needs both a certificate and a key file");
    }
    struct files_source *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        MOAT_FAIL(err, MOAT_E_NOMEM, "out of memory");
    }
    f->base.ops = &files_ops;
    f->o = *o;
    if (f->o.where == NULL) {
        f->o.where = o->cert_path;
    }
    if (f->o.site_where == NULL) {
        f->o.site_where = f->o.where;
    }
    *out = &f->base;
    return MOAT_RC_OK;
}
