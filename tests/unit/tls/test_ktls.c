/*
 * test_ktls.c: tls/ktls.c, the kernel TLS probe, checked against what the kernel shows on its
 * own: once the probe has asked (which loads the tls module where modules load), the kernel has
 * /proc/net/tls_stat exactly when it offers kTLS. The answer and its reason stay the same on
 * later calls, and the reason says what was found.
 */
#include "tls/ktls.h"

#include "test.h"

#include <openssl/opensslconf.h>
#include <string.h>
#include <unistd.h>

TEST_CASE(the_probe_agrees_with_the_kernel)
{
    char why[160] = "";
    int yes = moat_ktls_available(why, sizeof(why));
    EXPECT(yes == 0 || yes == 1);
    EXPECT(strlen(why) > 10);
#ifdef OPENSSL_NO_KTLS
    EXPECT_INT(yes, 0);
    EXPECT(strstr(why, "OpenSSL") != NULL);
#else
    int kernel_has_it = access("/proc/net/tls_stat", F_OK) == 0;
    EXPECT_INT(yes, kernel_has_it);
    if (!yes) {
        EXPECT(strstr(why, "TCP_ULP") != NULL || strstr(why, "cannot probe") != NULL);
    }
#endif
    char again[160] = "";
    EXPECT_INT(moat_ktls_available(again, sizeof(again)), yes);
    EXPECT_STR(again, why);
    EXPECT_INT(moat_ktls_available(NULL, 0), yes); /* no words wanted */
    char tiny[4];
    moat_ktls_available(tiny, sizeof(tiny)); /* cut, still terminated */
    EXPECT_INT(strlen(tiny), 3);
}

int main(void)
{
    RUN(the_probe_agrees_with_the_kernel);
    TEST_MAIN_END();
}
