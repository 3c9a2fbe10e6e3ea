/*
 * test_siphash.c: the keyed hash (core/siphash.c) gives SipHash-2-4's published vectors (the
 * paper's appendix: key 00..0f, messages 00, 00 01, ... of each length), from several threads
 * at once (each has its own OpenSSL context).
 */
#include "core/siphash.h"
#include "test.h"

#include <pthread.h>

/* The paper's 64-bit outputs for messages of length 0, 1, 7, 8 and 15, as little-endian
 * numbers. */
static const struct {
    size_t len;
    uint64_t want;
} vectors[] = {
    {0, 0x726fdb47dd0e0e31ULL}, {1, 0x74f839c593dc67fdULL},  {7, 0xab0200f58b01d137ULL},
    {8, 0x93f5f5799a932462ULL}, {15, 0xa129ca6149be45e5ULL},
};

static uint8_t key[16], msg[64];

static int check_all(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        if (moat_siphash24(key, msg, vectors[i].len) != vectors[i].want) {
            return 0;
        }
    }
    return 1;
}

TEST_CASE(paper_vectors)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        EXPECT_INT(moat_siphash24(key, msg, vectors[i].len), vectors[i].want);
    }
}

TEST_CASE(key_matters)
{
    uint8_t other[16] = {1};
    EXPECT(moat_siphash24(other, msg, 8) != moat_siphash24(key, msg, 8));
}

static void *thread_main(void *arg)
{
    int *ok = arg;
    *ok = 1;
    for (int i = 0; i < 200; i++) {
        *ok &= check_all();
    }
    return NULL;
}

TEST_CASE(threads)
{
    pthread_t t[4];
    int ok[4];
    for (int i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, thread_main, &ok[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        EXPECT_INT(ok[i], 1);
    }
}

int main(void)
{
    for (int i = 0; i < 16; i++) {
        key[i] = (uint8_t)i;
    }
    for (int i = 0; i < 64; i++) {
        msg[i] = (uint8_t)i;
    }
    RUN(paper_vectors);
    RUN(key_matters);
    RUN(threads);
    TEST_MAIN_END();
}
