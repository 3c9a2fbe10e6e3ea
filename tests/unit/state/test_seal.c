/*
 * test_seal.c: sealing for shared stores (state/seal.c): a value opens under its key and name
 * only, a changed byte anywhere or a cut value does not, and two seals of one value differ.
 */
#include "state/seal.h"

#include "test.h"

#include <string.h>

TEST_CASE(a_sealed_value_opens_under_its_key_and_name_only)
{
    struct moat_err e = {0};
    unsigned char k1[MOAT_SEAL_KEY_BYTES], k2[MOAT_SEAL_KEY_BYTES], k1b[MOAT_SEAL_KEY_BYTES];
    EXPECT(moat_ok(moat_seal_key("correct horse battery staple 0123", 33, "moat cluster", k1, &e)));
    EXPECT(
        moat_ok(moat_seal_key("correct horse battery staple 0123", 33, "moat cluster", k1b, &e)));
    EXPECT(memcmp(k1, k1b, sizeof(k1)) == 0); /* every node derives the same key */
    EXPECT(moat_ok(moat_seal_key("correct horse battery staple 0123", 33, "other use", k2, &e)));
    EXPECT(memcmp(k1, k2, sizeof(k1)) != 0); /* purposes kept apart */

    const char msg[] = "eighty bytes of ticket key material, or anything else worth keeping";
    unsigned char a[sizeof(msg) + MOAT_SEAL_OVERHEAD], b[sizeof(msg) + MOAT_SEAL_OVERHEAD];
    EXPECT(moat_ok(moat_seal(k1, "moat:tickets:7", msg, sizeof(msg), a, &e)));
    EXPECT(moat_ok(moat_seal(k1, "moat:tickets:7", msg, sizeof(msg), b, &e)));
    EXPECT(memcmp(a, b, sizeof(a)) != 0);                   /* a fresh nonce each time */
    EXPECT(memmem(a, sizeof(a), "ticket key", 10) == NULL); /* not in the clear */

    unsigned char out[sizeof(a)];
    size_t n = 0;
    EXPECT(moat_ok(moat_unseal(k1, "moat:tickets:7", a, sizeof(a), out, &n, &e)));
    EXPECT_INT(n, sizeof(msg));
    EXPECT(memcmp(out, msg, sizeof(msg)) == 0);

    /* Another name (a value copied to another key), another key, a flipped byte, a cut. */
    EXPECT(moat_unseal(k1, "moat:tickets:8", a, sizeof(a), out, &n, &e).kind == MOAT_E_PEER);
    EXPECT(moat_unseal(k2, "moat:tickets:7", a, sizeof(a), out, &n, &e).kind == MOAT_E_PEER);
    for (size_t i = 0; i < sizeof(a); i += 7) {
        unsigned char c[sizeof(a)];
        memcpy(c, a, sizeof(a));
        c[i] ^= 0x01;
        EXPECT(moat_unseal(k1, "moat:tickets:7", c, sizeof(c), out, &n, &e).kind == MOAT_E_PEER);
    }
    EXPECT(moat_unseal(k1, "moat:tickets:7", a, sizeof(a) - 1, out, &n, &e).kind == MOAT_E_PEER);
    EXPECT(moat_unseal(k1, "moat:tickets:7", a, 5, out, &n, &e).kind == MOAT_E_PEER);
    EXPECT_INT(n, 0);

    /* An empty value seals and opens too. */
    unsigned char z[MOAT_SEAL_OVERHEAD];
    EXPECT(moat_ok(moat_seal(k1, "x", "", 0, z, &e)));
    EXPECT(moat_ok(moat_unseal(k1, "x", z, sizeof(z), out, &n, &e)));
    EXPECT_INT(n, 0);
}

int main(void)
{
    RUN(a_sealed_value_opens_under_its_key_and_name_only);
    TEST_MAIN_END();
}
