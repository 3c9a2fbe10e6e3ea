/*
 * html.h: a check as one self-contained HTML page (inline CSS, no script, no external asset):
 * the grade and its rule, the findings as a graded table with evidence and fixes, then the
 * facts (versions, suites per version, groups, signatures, certificate, options, HTTP).
 */
#ifndef MOAT_CHECK_HTML_H
#define MOAT_CHECK_HTML_H

#include "check/judge.h"
#include "check/scan.h"

#include <stdio.h>

/* 0, or -1 on a write error. */
int moat_check_report_html(const struct moat_check_scan *s, const struct moat_check_report *r,
                           FILE *f);

#endif
