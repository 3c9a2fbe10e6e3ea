/*
 * test_trust.c: the system-store half of `moat trust` in a temporary folder (install once,
 * again without change, list with the mark, uninstall every copy, the update command run or
 * failing), refusal of a non-CA, the NSS nickname, and a missing certutil named with its fix.
 * The NSS half runs against real certutil in tests/integration/test_pki_cli.py.
 */
#include "pki/trust.h"

#include "pki_helpers.h"
#include "test.h"

TEST_CASE(system_folder)
{
    struct ph_pki p;
    ph_pki_make(&p, "Trusty");
    char sys[256], marker[256], script[256];
    snprintf(sys, sizeof(sys), "%s/sys", ph_dir);
    snprintf(marker, sizeof(marker), "%s/ran", ph_dir);
    snprintf(script, sizeof(script), "%s/update.sh", ph_dir);
    char body[400];
    snprintf(body, sizeof(body), "#!/bin/sh\necho x >> %s\n", marker);
    ph_write(script, body, strlen(body), 0755);
    struct moat_trust_opts o = {.system = 1, .system_dir = sys, .update_cmd = script};
    char *log = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&log, &len);
    struct moat_err err = {0};
    EXPECT_INT(moat_trust_install(p.root, &o, f, &err).kind, MOAT_OK);
    EXPECT_INT(moat_trust_install(p.root, &o, f, &err).kind, MOAT_OK);
    int found = -1;
    EXPECT_INT(moat_trust_list(p.root, &o, f, &found, &err).kind, MOAT_OK);
    EXPECT_INT(found, 1);
    fclose(f);
    EXPECT(ph_contains(log, "system: installed"));
    EXPECT(ph_contains(log, "/moat-trusty-root-"));
    EXPECT(ph_contains(log, "system: already in"));
    EXPECT(ph_contains(log, "  * moat-trusty-root-"));
    free(log);
    EXPECT_INT(ph_count_entries(sys), 1);
    /* A copy under another name is removed too. */
    char copy[300];
    snprintf(copy, sizeof(copy), "%s/hand-made.crt", sys);
    ph_write_certs(copy, p.root, NULL, NULL, NULL);
    f = open_memstream(&log, &len);
    EXPECT_INT(moat_trust_uninstall(p.root, &o, f, &err).kind, MOAT_OK);
    fclose(f);
    EXPECT_INT(ph_count_entries(sys), 0);
    free(log);
    size_t mlen = 0;
    char *ran = ph_read(marker, &mlen);
    EXPECT_INT(mlen, 4); /* install once, uninstall once */
    free(ran);

    /* The update command failing is an error with its words. */
    o.update_cmd = "false";
    EXPECT_INT(moat_trust_install(p.root, &o, NULL, &err).kind, MOAT_E_IO);
    EXPECT(ph_contains(err.msg, "false failed"));
    o.update_cmd = "none";
    EXPECT_INT(moat_trust_uninstall(p.root, &o, NULL, &err).kind, MOAT_OK);
    o.update_cmd = "/nonexistent/update";
    EXPECT_INT(moat_trust_install(p.root, &o, NULL, &err).kind, MOAT_E_NOTFOUND);
    o.update_cmd = "none";
    EXPECT_INT(moat_trust_uninstall(p.root, &o, NULL, &err).kind, MOAT_OK);

    /* A leaf is not a CA. */
    EXPECT_INT(moat_trust_install(p.leaf, &o, NULL, &err).kind, MOAT_E_USAGE);
    EXPECT(ph_contains(err.msg, "not a CA certificate"));

    /* NSS without certutil: named, with the package to install. */
    struct moat_trust_opts n = {.nss = 1, .certutil = "/nonexistent/certutil"};
    const char *db[] = {ph_path("nssdb")};
    n.nssdb = db;
    n.nnssdb = 1;
    EXPECT_INT(moat_trust_install(p.root, &n, NULL, &err).kind, MOAT_E_NOTFOUND);
    EXPECT(ph_contains(err.ctx[0], "libnss3-tools"));

    char nick[128];
    moat_trust_nickname(p.root, nick, sizeof(nick));
    EXPECT(strncmp(nick, "Trusty root (moat ", 18) == 0 && strlen(nick) == 27);
    ph_pki_free(&p);
}

int main(void)
{
    ph_dir_make();
    RUN(system_folder);
    ph_dir_remove();
    TEST_MAIN_END();
}
