/*
 * policy.h: which names a CA may sign, and for how long.
 *
 * Two layers, both applied by `moat ca sign` and `moat cert issue` before anything is signed:
 *
 *  1. Name constraints (RFC 5280 §4.2.1.10) carried in the CA certificates themselves, set with
 *     `moat ca init --permit/--exclude`. Clients enforce them too, so a name outside them would
 *     give a certificate every client refuses; moat refuses to make it.
 *  2. A signing policy the CA folder may hold in a text file named `policy` (no file: no extra
 *     rule). One rule per line, `#` starts a comment:
 *
 *         allow example.com            this exact name
 *         allow *.example.com          any name below example.com, at any depth
 *         allow 10.0.0.0/8             any address in the range (one address: 10.0.0.7)
 *         allow *@example.com          any e-mail address at example.com (or one address)
 *         allow spiffe://example.org/web* any URI starting with the text before the '*'
 *         deny  admin.example.com      deny wins over allow (and refuses *.example.com too)
 *         max_days 90                  no certificate longer than this
 *         server no                    never issue server certificates
 *         client no                    never issue client certificates
 *
 *     With at least one `allow` line every name must match an allow rule; without any, every
 *     name that no `deny` rule touches may be signed.
 */
#ifndef MOAT_PKI_POLICY_H
#define MOAT_PKI_POLICY_H

#include "core/err.h"

#include <stddef.h>

#include <openssl/x509v3.h>

/* The policy file's name inside a CA folder. */
#define MOAT_POLICY_FILE "policy"

struct moat_policy_rule; /* private to policy.c */

/* A parsed policy. An empty policy (no rules, max_days 0, both kinds allowed) allows all. */
struct moat_policy {
    struct moat_policy_rule *rules; /* owned, nrules entries, in file order */
    size_t nrules;
    int max_days;     /* 0: no limit of its own */
    int allow_server; /* 1 unless "server no" */
    int allow_client; /* 1 unless "client no" */
};

/*
 * Parse policy text of `len` bytes; `name` stands for the file in messages. Each bad line fails
 * with MOAT_E_CONFIG and err->where "name:line". *out is freed with moat_policy_free.
 */
MOAT_MUST_USE moat_rc moat_policy_parse(const char *text, size_t len, const char *name,
                                        struct moat_policy **out, struct moat_err *err);

/* Load `<ca_dir>/policy`; a missing file gives an empty policy. */
MOAT_MUST_USE moat_rc moat_policy_load(const char *ca_dir, struct moat_policy **out,
                                       struct moat_err *err);

/* NULL does nothing. */
void moat_policy_free(struct moat_policy *p);

/*
 * May a certificate for `names` (already checked with moat_names_check), valid `days`, for a
 * client (`client` 1) or a server be signed? MOAT_E_USAGE naming the name and the rule
 * (err->where is `policy_name`, may be NULL) when not. A NULL policy allows everything.
 */
MOAT_MUST_USE moat_rc moat_policy_check(const struct moat_policy *p, const char *policy_name,
                                        const char *const *names, size_t n, int days, int client,
                                        struct moat_err *err);

/*
 * Build a critical-ready nameConstraints value from people's words: each entry of `permit` and
 * `exclude` is a DNS domain ("example.com", also written ".example.com" or "*.example.com":
 * the domain and every name below it, RFC 5280 §4.2.1.10), an address range ("10.0.0.0/8",
 * "fd00::/8", one address), or a mail domain ("@example.com" or "*@example.com"). Returns NULL
 * with MOAT_E_USAGE for a bad entry; an empty pair of lists also gives NULL, with MOAT_OK in
 * *rc. Owned by the caller (NAME_CONSTRAINTS_free).
 */
NAME_CONSTRAINTS *moat_policy_constraints_new(const char *const *permit, size_t npermit,
                                              const char *const *exclude, size_t nexclude,
                                              moat_rc *rc, struct moat_err *err);

/*
 * Do `names` fall within the nameConstraints of each of the `ncas` CA certificates (issuer
 * first, then up to the root)? Uses OpenSSL's own check (NAME_CONSTRAINTS_check), the one its
 * clients run. MOAT_E_USAGE naming the name and the CA when not.
 */
MOAT_MUST_USE moat_rc moat_policy_check_constraints(X509 *const *cas, size_t ncas,
                                                    const char *const *names, size_t n,
                                                    struct moat_err *err);

#endif
