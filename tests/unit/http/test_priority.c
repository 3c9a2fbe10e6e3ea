/*
 * test_priority.c: the Priority field of RFC 9218 (http/priority.c): u and i alone and
 * together, the last of a repeated key, members and parameters of other keys and every kind
 * of RFC 8941 value they may have, and the fields that are invalid as a whole (bad syntax, or
 * u or i of the wrong type or range), which leave the priority as it was.
 */
#include "http/priority.h"
#include "test.h"

#include <string.h>

/* The priority `v` gives from the defaults; urgency -1 when the field is invalid. */
static struct moat_priority of(const char *v)
{
    struct moat_priority p = {MOAT_PRIORITY_URGENCY_DEFAULT, 0};
    if (!moat_priority_parse(v, strlen(v), &p)) {
        EXPECT_INT(p.urgency, MOAT_PRIORITY_URGENCY_DEFAULT); /* untouched */
        EXPECT_INT(p.incremental, 0);
        return (struct moat_priority){-1, -1};
    }
    return p;
}

#define VALID(v, u, i)                                                                             \
    do {                                                                                           \
        struct moat_priority p_ = of(v);                                                           \
        EXPECT_INT(p_.urgency, u);                                                                 \
        EXPECT_INT(p_.incremental, i);                                                             \
    } while (0)
#define INVALID(v) EXPECT_INT(of(v).urgency, -1)

TEST_CASE(members)
{
    VALID("", 3, 0);
    VALID("u=0", 0, 0);
    VALID("u=7", 7, 0);
    VALID("i", 3, 1);
    VALID("i=?1", 3, 1);
    VALID("i=?0", 3, 0);
    VALID("u=1, i", 1, 1);
    VALID("i,u=5", 5, 1);
    VALID("  u=2 ,\ti ", 2, 1);
    VALID("u=1, u=6", 6, 0); /* the last one counts (RFC 8941 §4.2.2) */
    VALID("i;x=1", 3, 1);    /* parameters of a bare key */
    VALID("u=4;a;b=?0;c=\"s\"", 4, 0);
}

TEST_CASE(other_members_are_skipped)
{
    VALID("u=2, foo", 2, 0);
    VALID("u=2, x=\"a \\\" \\\\ b\"", 2, 0);
    VALID("u=2, x=tok/en:1, y=*t", 2, 0);
    VALID("u=2, x=:aGVsbG8=:, y=-12.345", 2, 0);
    VALID("u=2, x=(a \"b\" 1;p=2);q, z=()", 2, 0);
    VALID("*k=1, u=0", 0, 0);
    VALID("uu=1, ii=?1, u=1", 1, 0); /* only u and i themselves */
}

TEST_CASE(invalid_fields)
{
    INVALID("u=8");
    INVALID("u=-1");
    INVALID("u=1.5");
    INVALID("u=\"1\"");
    INVALID("u"); /* a Boolean */
    INVALID("u=(1)");
    INVALID("i=1"); /* an Integer */
    INVALID("i=?2");
    INVALID("u=1,");
    INVALID(",u=1");
    INVALID("u=1 i");
    INVALID("U=1");
    INVALID("u=1, 1x=2");
    INVALID("u=1, x=\"unterminated");
    INVALID("u=1, x=\"bad \\n escape\"");
    INVALID("u=1, x=:not base64!:");
    INVALID("u=1, x=1234567890123456"); /* 16 digits */
    INVALID("u=1, x=1234567890123.1");  /* 13 integer digits in a Decimal */
    INVALID("u=1, x=1.1234");
    INVALID("u=1, x=1.");
    INVALID("u=1;");
    INVALID("u=1, x=(a b");
    INVALID("u=2, x=(a (b))"); /* no list in a list */
    INVALID("u=1, x=(a)b");
    INVALID("u=1, x=?");
    INVALID("u=1, x=@");
}

int main(void)
{
    RUN(members);
    RUN(other_members_are_skipped);
    RUN(invalid_fields);
    TEST_MAIN_END();
}
