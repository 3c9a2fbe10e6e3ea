/*
 * siphash.h: a keyed 64-bit hash for tables a client fills (the rate-limit table): SipHash-2-4,
 * computed by OpenSSL. With a secret key per process a client cannot choose addresses or
 * header values that all land in one corner of a table and push the others out.
 */
#ifndef MOAT_CORE_SIPHASH_H
#define MOAT_CORE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of data under key, as the 64-bit little-endian number of its 8-byte output.
 * Any thread; no allocation after a thread's first call (each thread keeps one OpenSSL MAC
 * context, freed when the thread ends). Returns 0 only if OpenSSL cannot compute it (then
 * a table degrades to one slot group, never to a wrong answer). */
uint64_t moat_siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
