/*
 * pkiargs.c: option parsing and error reporting shared by the certificate commands (see
 * pkiargs.h).
 */
#include "cli/pkiargs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct moat_cli_opt *find(const struct moat_cli_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(opts[i].name, name) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

int moat_cli_args_parse(const char *cmd, const char *usage, int argc, char **argv,
                        const struct moat_cli_opt *opts, size_t nopts, const char **pos,
                        size_t maxpos, size_t *npos)
{
    *npos = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            fputs(usage, stdout);
            return -1;
        }
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (*npos == maxpos) {
                fprintf(stderr, "moat %s: too many arguments at \"%s\" (see moat %s --help)\n", cmd,
                        a, cmd);
                return 2;
            }
            pos[(*npos)++] = a;
            continue;
        }
        char name[64];
        const char *v = NULL;
        const char *eq = strchr(a, '=');
        if (eq != NULL && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            v = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
        }
        const struct moat_cli_opt *o = find(opts, nopts, name);
        if (o == NULL) {
            fprintf(stderr, "moat %s: unknown option \"%s\" (see moat %s --help)\n", cmd, a, cmd);
            return 2;
        }
        if (o->kind == MOAT_CLI_FLAG) {
            if (v != NULL) {
                fprintf(stderr, "moat %s: %s takes no value\n", cmd, name);
                return 2;
            }
            *o->flag = 1;
            continue;
        }
        if (v == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moat %s: %s needs a value (see moat %s --help)\n", cmd, name, cmd);
                return 2;
            }
            v = argv[++i];
        }
        if (o->kind == MOAT_CLI_VALUE) {
            if (*o->value != NULL) {
                fprintf(stderr, "moat %s: %s given twice\n", cmd, name);
                return 2;
            }
            *o->value = v;
            continue;
        }
        if (*o->n == o->max) {
            fprintf(stderr, "moat %s: %s may be given at most %zu times\n", cmd, name, o->max);
            return 2;
        }
        o->list[(*o->n)++] = v;
    }
    return 0;
}

int moat_cli_fail(const char *cmd, moat_rc rc, const struct moat_err *err)
{
    if (moat_ok(rc)) {
        return 0;
    }
    char buf[2048];
    fprintf(stderr, "moat %s: %s\n", cmd, moat_err_str(err, buf, sizeof(buf)));
    return rc.kind == MOAT_E_USAGE || rc.kind == MOAT_E_CONFIG ? 2 : 1;
}

int moat_cli_days(const char *cmd, const char *flag, const char *s, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < 1 || v > max) {
        fprintf(stderr, "moat %s: %s takes a number of days from 1 to %d, not \"%s\"\n", cmd, flag,
                max, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

moat_rc moat_cli_open_ca(const char *dir, struct moat_ca **out, struct moat_err *err)
{
    if (dir != NULL) {
        return moat_ca_open(dir, out, err);
    }
    char *def = NULL;
    MOAT_TRY(moat_ca_default_dir(&def, err));
    int created = 0;
    moat_rc rc = moat_ca_open_or_create(def, NULL, out, &created, err);
    if (moat_ok(rc) && created) {
        fprintf(stderr,
                "moat: created moat's local CA in %s (trust it with `moat trust install`)\n", def);
    }
    free(def);
    return rc;
}

const char *moat_cli_prefix_for(const char *name, char *buf, size_t n)
{
    size_t j = 0;
    const char *p = name;
    if (p[0] == '*' && p[1] == '.') {
        j = (size_t)snprintf(buf, n, "_wildcard");
        p++;
    }
    for (; *p != '\0' && j + 1 < n; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_' || c == '@';
        buf[j++] = ok ? c : '_';
    }
    buf[j < n ? j : n - 1] = '\0';
    if (buf[0] == '\0') {
        snprintf(buf, n, "_");
    }
    if (buf[0] == '.') {
        buf[0] = '_'; /* never a hidden file */
    }
    return buf;
}
