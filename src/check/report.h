/*
 * report.h: a check's scan and judgement as text for people or one JSON document for scripts
 * (the fields docs/check.md lists).
 */
#ifndef MOAT_CHECK_REPORT_H
#define MOAT_CHECK_REPORT_H

#include "check/judge.h"
#include "check/scan.h"

#include <stdio.h>

void moat_check_report_text(const struct moat_check_scan *s, const struct moat_check_report *r,
                            FILE *f);
/* 0, or -1 when the document could not be made or written. */
int moat_check_report_json(const struct moat_check_scan *s, const struct moat_check_report *r,
                           FILE *f);

/* "yes", "no", "?" */
const char *moat_check_tri_word(enum moat_check_tri t);

#endif
