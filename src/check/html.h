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

/* A page of several checks (one per site or listener of a configuration): a summary table of
 * their grades linking to each check's section. */
struct moat_check_page;

/* NULL when out of memory. */
struct moat_check_page *moat_check_page_new(const char *title);
/* Add one check's section. 0, or -1 when out of memory. */
int moat_check_page_add(struct moat_check_page *p, const struct moat_check_scan *s,
                        const struct moat_check_report *r);
/* The whole page into f. 0, or -1 on a write error. */
int moat_check_page_write(struct moat_check_page *p, FILE *f);
void moat_check_page_free(struct moat_check_page *p);

#endif
