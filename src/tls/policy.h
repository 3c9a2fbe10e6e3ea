/*
 * policy.h: the TLS rules every context moat makes shares, server (ctx.c) and client
 * (client.c): TLS 1.2 and 1.3 only (RFC 8996 retired the rest), no compression (CRIME), no
 * renegotiation (a DoS lever, gone from TLS 1.3). The cipher and group lists differ on purpose:
 * a server chooses for its clients, a client meets servers it does not choose (ctx.c and
 * client.c say why).
 */
#ifndef MOAT_TLS_POLICY_H
#define MOAT_TLS_POLICY_H

#include <openssl/ssl.h>

#define MOAT_TLS_MIN_VERSION TLS1_2_VERSION
#define MOAT_TLS_MAX_VERSION TLS1_3_VERSION
#define MOAT_TLS_COMMON_OPTIONS (SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION)

#endif
