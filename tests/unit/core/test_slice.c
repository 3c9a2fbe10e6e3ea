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

/* The word-at-a-time compare against a byte-at-a-time reference: every pair of bytes, in every
 * position of every length up to 19 (the 8-, 4-, 2- and 1-byte steps and their mixes). */
static int ref_eq_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (moat_ascii_lower((unsigned char)a[i]) != moat_ascii_lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

TEST_CASE(nocase_words_match_bytewise_reference)
{
    char a[20], b[20];
    size_t bad = 0;
    for (size_t n = 1; n < sizeof(a); n++) {
        for (size_t at = 0; at < n; at++) {
            for (int x = 0; x < 256; x++) {
                for (int y = 0; y < 256; y++) {
                    memset(a, 'Q', n);
                    memset(b, 'q', n);
                    a[at] = (char)x;
                    b[at] = (char)y;
                    bad += moat_mem_eq_nocase(a, b, n) != ref_eq_nocase(a, b, n);
                }
            }
        }
    }
    EXPECT_INT(bad, 0);
    EXPECT(moat_mem_eq_nocase("X-Content-Type-Options", "x-content-type-options", 22));
    EXPECT(!moat_mem_eq_nocase("X-Content-Type-Optionz", "x-content-type-options", 22));
    EXPECT(moat_mem_eq_nocase("", "", 0));
}

int main(void)
{
    RUN(nocase_folds_ascii_letters_only);
    RUN(nocase_compares_past_nul_bytes);
    RUN(nocase_words_match_bytewise_reference);
    TEST_MAIN_END();
}
