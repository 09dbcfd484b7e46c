/*
 * server.h - herald-ws's server: every client connection on one libevent
 * loop.  It accepts, reads the HTTP upgrade (codec/ws_handshake.h), runs the
 * WebSocket sessions (codec/ws_frame.h) fed by the hub (src/hub.h), and
 * answers health, probes and metrics on the same port.
 *
 * Who owns what:
 *   - struct wss owns the listening socket, every struct conn, the hub, the
 *     Redis subscriber (src/sub.h) and the token verifier (src/auth.h);
 *     wss_free releases all of them.
 *   - A connection owns its socket and its parser; messages are the hub's,
 *     shared by reference (hub_msg_ref) until written.
 *   - The configuration is borrowed from ws/main.c, which owns the loop, the
 *     signals, --workers and the log.
 *
 * Memory: an open, idle connection holds its struct (hub_conn, parser,
 * two events, a timer) and nothing else.  The handshake buffer, control
 * frame payloads and pending control frames come from pools only while in
 * use; messages are written straight from the hub's shared copies.
 *
 * Threads: one.  Every function here, every callback of the loop, the hub's
 * wake and close (which only schedule an event) and the subscriber's
 * callbacks run on the loop's thread; --workers gives each process its own
 * loop and server.
 */
#ifndef HERALD_WS_SERVER_H
#define HERALD_WS_SERVER_H

#include <stddef.h>

#include <event2/event.h>

#include "conf.h"

struct wss;

struct wss_opts {
	unsigned handshake_timeout_ms; /* the whole request must arrive in this (10 s) */
	unsigned close_timeout_ms;     /* a closing connection is dropped after (5 s) */
	unsigned canary_interval_ms;   /* sub_new's; 0 = its default */
};

/*
 * Serve lfd (non-blocking listening socket, owned from now on) on base with
 * configuration c (borrowed; must outlive the server).  Connects to Redis.
 * Returns 0 or HERR_INVAL / HERR_NOMEM with a message in err.
 */
int wss_new(struct wss **out, struct event_base *base, const struct conf *c,
	    const struct wss_opts *o, int lfd, char *err, size_t errlen);

/*
 * SIGTERM: stop accepting, close every connection with 1001, and leave the
 * loop once they are gone (or after close_timeout_ms).
 */
void wss_shutdown(struct wss *s);

/* SIGHUP: rebuild the token verifier from c (reloads a key file).
 * Returns 0 or an error with its reason in err; the old one stays then. */
int wss_reload(struct wss *s, char *err, size_t errlen);

/* Drop every connection at once and free.  NULL is fine. */
void wss_free(struct wss *s);

#endif
