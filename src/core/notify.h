/*
 * notify.h: the service manager's readiness protocol (systemd's sd_notify, spoken directly: one
 * datagram to the unix socket $NOTIFY_SOCKET names), so a Type=notify unit knows when moat
 * serves, when it reloads and when it stops, without linking libsystemd.
 */
#ifndef MOAT_CORE_NOTIFY_H
#define MOAT_CORE_NOTIFY_H

/* Send `state` ("READY=1\nSTATUS=...", newline-separated assignments). Nothing when
 * $NOTIFY_SOCKET is unset; failures are ignored (the manager may be gone). Returns 1 when the
 * datagram went out. */
int moat_notify(const char *state);

/* "RELOADING=1" with the MONOTONIC_USEC systemd wants beside it. */
int moat_notify_reloading(void);

#endif
