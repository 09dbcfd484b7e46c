/*
 * notify.h - service readiness for systemd (Type=notify) without libsystemd.
 *
 * systemd passes a unix datagram socket in $NOTIFY_SOCKET: a path
 * ("/run/systemd/notify") or an abstract name ("@/org/freedesktop/..."), the
 * '@' standing for the leading NUL byte.  A program tells it "READY=1" when
 * it serves, "RELOADING=1" when a reload starts (then "READY=1" again) and
 * "STOPPING=1" when it begins to shut down.  Outside systemd the variable is
 * unset and every call is a no-op, so the programs call these always.
 *
 * Only the main process of a unit may notify (NotifyAccess=main): a program
 * with worker processes notifies from the parent.
 */
#ifndef HERALD_NOTIFY_H
#define HERALD_NOTIFY_H

#include <stddef.h>

/*
 * Sends state (one or more "KEY=VALUE" lines separated by '\n') to the
 * socket named by addr, in $NOTIFY_SOCKET's syntax; addr NULL or "" means
 * not under systemd.  Returns 1 when sent, 0 when there is no socket,
 * HERR_INVAL when addr is neither an absolute path nor "@name" or does not
 * fit a sockaddr_un, HERR_IO when socket(2) or sendto(2) failed (errno set).
 * Never blocks for long (a datagram) and never raises SIGPIPE.
 */
int notify_send_to(const char *addr, const char *state);

/* notify_send_to(getenv("NOTIFY_SOCKET"), state). */
int notify_send(const char *state);

/* "READY=1" with a STATUS= line (status may be NULL). */
int notify_ready(const char *status);

/*
 * "RELOADING=1" with MONOTONIC_USEC= (systemd >= 253 wants it for
 * Type=notify-reload; older ones ignore it).  Send notify_ready() when the
 * reload is over, whether it worked or not.
 */
int notify_reloading(void);

/* "STOPPING=1": the service is shutting down (a clean stop, not a crash). */
int notify_stopping(void);

#endif
