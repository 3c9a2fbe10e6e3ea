/* Unit tests for core/slice.h: the ASCII case-insensitive compare header names go through. */
#include "core/slice.h"
#include "test.h"

TEST_CASE(nocase_folds_ascii_letters_only)
{
    EXPECT(moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("Content-Type"), "content-type"));
    EXPECT(moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("ETAG"), "etag"));
    EXPECT(moat_slice_eq_lit_nocase(MOAT_SLICE_LIT(""), ""));
    EXPECT(!moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("etag"), "etags"));
    EXPECT(!moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("vary"), "etag"));
    /* Only A-Z fold: '@' and '`', '[' and '{', '^' and '~' differ by the same bit. */
    EXPECT(!moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("a@b"), "a`b"));
    EXPECT(!moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("a[b"), "a{b"));
    EXPECT(!moat_slice_eq_lit_nocase(MOAT_SLICE_LIT("a^b"), "a~b"));
    /* Bytes above 0x7f are compared as they are (no locale). */
    EXPECT(!moat_slice_eq_nocase(MOAT_SLICE_LIT("\xc3\xa9"), MOAT_SLICE_LIT("\xc3\x89")));
}

TEST_CASE(nocase_compares_past_nul_bytes)
{
    /* strncasecmp stopped at the first NUL, so these two compared equal. */
    EXPECT(!moat_slice_eq_nocase(moat_slice_of("a\0b", 3), moat_slice_of("a\0c", 3)));
    EXPECT(moat_slice_eq_nocase(moat_slice_of("A\0B", 3), moat_slice_of("a\0b", 3)));
    EXPECT(moat_mem_eq_nocase("X-A", "x-a", 3));
    EXPECT(!moat_mem_eq_nocase("X-A", "x-b", 3));
}

int main(void)
{
    RUN(nocase_folds_ascii_letters_only);
    RUN(nocase_compares_past_nul_bytes);
    TEST_MAIN_END();
}
