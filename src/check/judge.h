/*
 * judge.h: the findings of moat check, from a scan's facts: each with a severity, the
 * evidence, the CVE where the weakness has one, and the fix in moat, nginx, HAProxy and Caddy
 * terms; then the grade and the rule that set it.
 *
 * The grade, as docs/check.md gives it: start at A; every finding may cap it (T for a
 * certificate a browser would refuse, F for what is broken, C and B for what is weak); the
 * lowest cap wins. A with HSTS of at least 180 days and no finding above info is A+.
 */
#ifndef MOAT_CHECK_JUDGE_H
#define MOAT_CHECK_JUDGE_H

#include "check/scan.h"

enum moat_check_sev {
    MOAT_SEV_INFO = 0, /* worth knowing; changes nothing */
    MOAT_SEV_LOW,
    MOAT_SEV_MEDIUM,
    MOAT_SEV_HIGH,
    MOAT_SEV_CRITICAL,
    MOAT_SEV_COUNT /* keep last */
};

struct moat_check_fix {
    const char *moat, *nginx, *haproxy, *caddy; /* NULL: nothing to change there */
};

struct moat_check_finding {
    const char *id; /* stable, for scripts: "protocol.tls10" */
    enum moat_check_sev sev;
    char title[160];
    char evidence[600];
    const char *cve; /* "CVE-2014-3566", or NULL */
    char cap;        /* the grade this finding caps at ('B', 'C', 'F', 'T'), 0 for none */
    struct moat_check_fix fix;
    char fix_note[720]; /* a fix in this server's own terms (the verification's), or "" */
};

#define MOAT_CHECK_MAX_FINDINGS 64

struct moat_check_report {
    struct moat_check_finding f[MOAT_CHECK_MAX_FINDINGS];
    size_t n;
    char grade[3];        /* "A+", "A", "B", "C", "F", "T" */
    char grade_rule[300]; /* why that grade */
    enum moat_check_sev worst;
    int any; /* any finding at all */
    int exit_code;
};

/* Judge s into r. Findings are ordered by severity, worst first. */
void moat_check_judge(const struct moat_check_scan *s, struct moat_check_report *r);

const char *moat_check_sev_name(enum moat_check_sev s); /* "info" ... "critical" */

/* Exit codes by the worst finding: 0 nothing above info, 3 low, 4 medium, 5 high, 6 critical
 * (1: the check could not run; 2: usage). */
int moat_check_exit_for(enum moat_check_sev worst, int any);

#endif
