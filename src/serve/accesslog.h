/*
 * accesslog.h: one line per response, combined format or JSON lines, collected in the
 * worker's buffer and written in one write(2) per flush (each second, when the buffer passes
 * 32 KiB, and at exit), so logging costs no syscall per request.
 */
#ifndef MOAT_SERVE_ACCESSLOG_H
#define MOAT_SERVE_ACCESSLOG_H

struct moat_worker;
struct moat_conn;

void moat_accesslog_add(struct moat_worker *wk, const struct moat_conn *c);

#endif
