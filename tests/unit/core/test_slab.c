/*
 * test_slab.c: core/slab.c, the recycling allocator: a freed block comes back for the next
 * allocation of its class, calloc zeroes, realloc keeps the bytes across classes and into a big
 * block, the free lists are bounded, and clear gives everything back (the sanitizer build
 * checks that nothing leaks).
 */
#include "core/slab.h"

#include "test.h"

#include <stdint.h>
#include <string.h>

TEST_CASE(a_freed_block_is_reused_for_its_class)
{
    struct moat_slab s;
    moat_slab_init(&s, 4);
    void *a = moat_slab_alloc(&s, 40);
    EXPECT(a != NULL);
    EXPECT(((uintptr_t)a % 16) == 0); /* aligned as malloc's */
    memset(a, 0xab, 40);
    moat_slab_free(&s, a);
    EXPECT_INT(s.nfree[1], 1); /* 40 bytes: the 64-byte class */
    void *b = moat_slab_alloc(&s, 64);
    EXPECT(b == a);
    EXPECT_INT(s.nfree[1], 0);
    void *c = moat_slab_alloc(&s, 65); /* the next class: not the same block */
    EXPECT(c != NULL && c != b);
    moat_slab_free(&s, b);
    moat_slab_free(&s, c);
    moat_slab_free(&s, NULL); /* as free(NULL) */
    moat_slab_clear(&s);
    EXPECT_INT(s.nfree[1], 0);
    EXPECT(s.free[1] == NULL);
}

TEST_CASE(calloc_zeroes_and_refuses_overflow)
{
    struct moat_slab s;
    moat_slab_init(&s, 4);
    unsigned char *a = moat_slab_alloc(&s, 100);
    memset(a, 0xff, 100);
    moat_slab_free(&s, a);
    unsigned char *z = moat_slab_calloc(&s, 25, 4); /* gets the dirty block back, zeroed */
    EXPECT(z == a);
    int zero = 1;
    for (int i = 0; i < 100; i++) {
        zero &= z[i] == 0;
    }
    EXPECT(zero);
    EXPECT(moat_slab_calloc(&s, SIZE_MAX / 2, 4) == NULL);
    moat_slab_free(&s, z);
    moat_slab_clear(&s);
}

TEST_CASE(realloc_keeps_the_bytes)
{
    struct moat_slab s;
    moat_slab_init(&s, 4);
    char *p = moat_slab_realloc(&s, NULL, 10); /* as malloc */
    memcpy(p, "0123456789", 10);
    EXPECT(moat_slab_realloc(&s, p, 30) == p); /* still fits its 32-byte block */
    char *q = moat_slab_realloc(&s, p, 1000);
    EXPECT(q != NULL && memcmp(q, "0123456789", 10) == 0);
    char *big = moat_slab_realloc(&s, q, 100000); /* past the classes: plain malloc */
    EXPECT(big != NULL && memcmp(big, "0123456789", 10) == 0);
    big[99999] = 'x';
    char *back = moat_slab_realloc(&s, big, 20);
    EXPECT(back != NULL && memcmp(back, "0123456789", 10) == 0);
    moat_slab_free(&s, back);
    moat_slab_clear(&s);
}

TEST_CASE(free_lists_are_bounded)
{
    struct moat_slab s;
    moat_slab_init(&s, 3);
    void *p[10];
    for (int i = 0; i < 10; i++) {
        p[i] = moat_slab_alloc(&s, 200);
    }
    for (int i = 0; i < 10; i++) {
        moat_slab_free(&s, p[i]);
    }
    EXPECT_INT(s.nfree[3], 3); /* the rest went back to malloc */
    void *big = moat_slab_alloc(&s, 5000);
    moat_slab_free(&s, big); /* big blocks are never kept */
    unsigned kept = 0;
    for (int c = 0; c < MOAT_SLAB_CLASSES; c++) {
        kept += s.nfree[c];
    }
    EXPECT_INT(kept, 3);
    moat_slab_clear(&s);
}

int main(void)
{
    RUN(a_freed_block_is_reused_for_its_class);
    RUN(calloc_zeroes_and_refuses_overflow);
    RUN(realloc_keeps_the_bytes);
    RUN(free_lists_are_bounded);
    TEST_MAIN_END();
}
