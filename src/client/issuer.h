/*
 * issuer.h: when the server's chain stops at an issuer nobody here has, find out why.
 *
 * OpenSSL says "unable to get local issuer certificate" both when the server left out an
 * intermediate and when the chain belongs to a CA this machine does not trust. The two need
 * opposite fixes (the server's configuration, or this machine's trust), so moat looks closer:
 * the certificate's AIA caIssuers URL (RFC 5280 §4.2.2.1) names where its issuer can be
 * downloaded; moat fetches it over plain HTTP (bounded in size, time and hops) and checks
 * whether it chains to a trusted root. The fetched certificates are never trusted for the
 * connection itself: the handshake has already failed, and they only explain why.
 */
#ifndef MOAT_CLIENT_ISSUER_H
#define MOAT_CLIENT_ISSUER_H

#include "client/get.h"
#include "client/verify.h"

#define MOAT_CLIENT_AIA_BODY_MAX (64 * 1024) /* bytes of one answer moat reads at most */
#define MOAT_CLIENT_AIA_TIME_MS 5000         /* all fetches of one connection, at most */
#define MOAT_CLIENT_AIA_REDIRECTS 2          /* redirects followed per fetch (http:// only) */

/*
 * After a failed certificate check recorded in `v` (the chain as sent and the first error),
 * refine h's certificate failure: a lone self-signed certificate or a chain ending at an
 * untrusted self-signed root is named as not trusted, with how to trust it; an issuer that was
 * neither sent nor trusted is looked up through the AIA URLs (at most MOAT_CLIENT_MAX_AIA
 * fetches, all before `deadline_ms` on moat_trace_now_ms's clock), and h->vkind, h->detail,
 * h->cert_message, h->cert_fix, h->alert_gloss, h->issuer_diag and the AIA record say what was
 * found. Other failures are left as they are. Never fails: a fetch that does not work is a fact
 * recorded in h. `o` gives --resolve for the AIA host; nothing else of it is used.
 */
void moat_client_issuer_diagnose(const struct moat_client_vrec *v,
                                 const struct moat_client_trust *t,
                                 const struct moat_client_opts *o, double deadline_ms,
                                 struct moat_client_hop *h);

#endif
