/*
 * test_cause.c: the client's failure causes: complete table, stable unique names, the
 * documented exit codes, and the one-line cause that defers certificate words to pki/verify.h.
 */
#include "client/cause.h"
#include "client/get.h"

#include "test.h"

#include <stdlib.h>

TEST_CASE(table_is_complete_and_unique)
{
    for (int c = 0; c < MOAT_CC_COUNT; c++) {
        const char *name = moat_client_cause_name((enum moat_client_cause)c);
        EXPECT(name[0] != '\0');
        EXPECT(moat_client_cause_message((enum moat_client_cause)c)[0] != '\0');
        EXPECT(moat_client_cause_stage((enum moat_client_cause)c)[0] != '\0');
        if (c != MOAT_CC_OK) {
            EXPECT(moat_client_cause_fix((enum moat_client_cause)c)[0] != '\0');
        }
        EXPECT_INT(moat_client_cause_from_name(name), c);
        for (int d = 0; d < c; d++) {
            EXPECT(strcmp(name, moat_client_cause_name((enum moat_client_cause)d)) != 0);
        }
        for (const char *p = name; *p != '\0'; p++) {
            EXPECT((*p >= 'a' && *p <= 'z') || *p == '_');
        }
    }
    EXPECT_INT(moat_client_cause_from_name("nope"), MOAT_CC_COUNT);
    EXPECT_INT(moat_client_cause_from_name(NULL), MOAT_CC_COUNT);
    EXPECT_STR(moat_client_cause_name(MOAT_CC_COUNT), "tls_failed");
    EXPECT_STR(moat_client_cause_name((enum moat_client_cause) - 1), "tls_failed");
}

TEST_CASE(exit_codes_as_documented)
{
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_OK), 0);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_LOCAL), 1);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_USAGE), 2);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_DNS), 3);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_REFUSED), 3);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_UNREACHABLE), 3);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_CLOSED), 3);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_NO_COMMON_VERSION), 4);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_NO_COMMON_CIPHER), 4);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_CLIENT_CERT_REQUIRED), 4);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_CLIENT_CERT_REJECTED), 4);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_SERVER_SPEAKS_HTTP), 4);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_SERVER_SPEAKS_TLS), 4);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_CERT), 5);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_HTTP_PROTOCOL), 6);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_TOO_MANY_REDIRECTS), 6);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_TIMEOUT), 7);
    EXPECT_INT(moat_client_cause_exit(MOAT_CC_HTTP_STATUS), 22);
}

TEST_CASE(cause_lines)
{
    struct moat_client_hop *h = calloc(1, sizeof(*h));
    char line[2048];
    h->cause = MOAT_CC_CERT;
    h->vkind = MOAT_V_NAME_MISMATCH;
    snprintf(h->detail, sizeof(h->detail), "asked for \"a.test\"");
    EXPECT_STR(moat_client_hop_cause_line(h, line, sizeof(line)),
               "certificate name_mismatch: asked for \"a.test\"");
    EXPECT_STR(moat_client_hop_fix(h), moat_verify_kind_fix(MOAT_V_NAME_MISMATCH));
    h->detail[0] = '\0';
    EXPECT_STR(moat_client_hop_cause_line(h, line, sizeof(line)),
               "certificate name_mismatch: the certificate does not cover the name asked for");
    h->cause = MOAT_CC_REFUSED;
    EXPECT_STR(moat_client_hop_cause_line(h, line, sizeof(line)),
               "refused: the connection was refused: nothing listens on that address and port");
    EXPECT_STR(moat_client_hop_fix(h), moat_client_cause_fix(MOAT_CC_REFUSED));
    char tiny[12];
    EXPECT_STR(moat_client_hop_cause_line(h, tiny, sizeof(tiny)), "refused: th");
    EXPECT_STR(moat_client_stage_name(MOAT_STAGE_TLS), "TLS");
    EXPECT_STR(moat_client_stage_name(MOAT_STAGE_COUNT), "?");
    free(h);
}

int main(void)
{
    RUN(table_is_complete_and_unique);
    RUN(exit_codes_as_documented);
    RUN(cause_lines);
    TEST_MAIN_END();
}
