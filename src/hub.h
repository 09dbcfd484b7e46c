/*
 * hub.h - the two-way index user <-> this process's connections, and the
 * delivery rules of DESIGN.md section 8.
 *
 * A transport (WebSocket session, SSE stream, long-poll) embeds a struct
 * hub_conn in its own connection and fills a struct hub_conn_ops.  The hub
 * keeps, per connection, a bounded queue of shared, reference-counted
 * messages; the transport takes them with hub_pop() when woken.
 *
 * Resume (DESIGN 8): a connection attached with a cursor waits until its
 * user's channel subscription is confirmed, then asks the backend for the
 * history after the cursor, delivers it, then the live messages that arrived
 * meanwhile whose id is larger than the last one delivered.  Every message
 * with an id is delivered to a connection only if its id is larger than the
 * connection's last (no duplicate within a connection); "id":null messages
 * (plain PUBLISH) are delivered live as they come.
 *
 * When the backend loses Redis (hub_on_link_lost), every connection stays
 * attached; when the user's subscription is confirmed again, each connection
 * catches up from its last delivered id (or, if it got none, from the moment
 * it went live) exactly as a resume.
 *
 * Threads: every function takes the hub's mutex, so any thread may call it.
 * Callbacks (hub_conn_ops, hub_backend_ops) run with that mutex held and must
 * not call back into the hub; they only signal their own thread or loop.
 */
#ifndef HERALD_HUB_H
#define HERALD_HUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "cursor.h"
#include "history.h"

enum hub_msg_kind {
	HUB_MSG_NOTIFY = 0, /* an envelope */
	HUB_MSG_RESET = 1,  /* the requested cursor is older than the history kept */
};

/* An immutable message shared by every connection it is queued on. */
struct hub_msg {
	atomic_uint refs;      /* hub_msg_ref/unref */
	int kind;              /* enum hub_msg_kind */
	int has_id;            /* 0 for "id":null envelopes and RESET */
	struct cursor id;
	size_t len;
	char data[];           /* the envelope bytes, NUL-terminated */
};

/*
 * Copy len bytes of an envelope (id read from its prefix with envelope_id();
 * an envelope without a valid id counts as "id":null).  The message starts
 * with one reference.  NULL on ENOMEM.
 */
struct hub_msg *hub_msg_new(int kind, const char *data, size_t len);
struct hub_msg *hub_msg_ref(struct hub_msg *m);
void hub_msg_unref(struct hub_msg *m); /* NULL is fine */

enum hub_close_reason {
	HUB_CLOSE_SLOW = 1,     /* queue passed send_queue_max (or out of memory
				 * while queuing): WS 4408, SSE ends, client resumes */
	HUB_CLOSE_SHUTDOWN = 2, /* hub_close_all(): WS 1001, SSE ends */
	HUB_CLOSE_ERROR = 3,    /* the backend gave up on the connection's history
				 * read (hub_history_done): WS 1011, SSE ends;
				 * the client resumes from its cursor */
};

struct hub_conn;

struct hub_conn_ops {
	/* The queue went from empty to non-empty: arrange for hub_pop() soon. */
	void (*wake)(struct hub_conn *c);
	/* The hub gives up on c (enum hub_close_reason).  Its queue is already
	 * dropped; the transport closes and then calls hub_detach(). */
	void (*close)(struct hub_conn *c, int reason);
};

struct hub_user;
struct hub_req;

/*
 * Embedded in the transport's connection (use container_of to get back).
 * Set ops before hub_attach(); the other fields are the hub's.
 */
struct hub_conn {
	const struct hub_conn_ops *ops;
	/* private to the hub */
	struct hub_user *user;
	struct hub_conn *prev, *next;   /* the user's list (intrusive) */
	struct hub_msg **q;             /* ring of queued messages */
	size_t q_head, q_len, q_cap;
	size_t q_bytes;
	struct hub_msg **pend;          /* live messages held until the replay is done */
	size_t pend_len, pend_cap;
	size_t pend_bytes;
	int state;
	int replay;                     /* needs a history read before going live */
	int has_last;
	struct cursor last;             /* id of the last message queued (or the resume cursor) */
	long long live_ms;              /* when it went live without a cursor: catch-up point */
	struct hub_req *req;            /* history read in flight, or NULL */
};

/*
 * The source of subscriptions and history (the subscriber, or a fake in
 * tests).  Every op is called with the hub mutex held: it must only record
 * the request and act later from its own loop.  history() must be answered
 * exactly once with hub_history_done(), also on error and after hub_detach()
 * of the connection (the hub then drops the answer).
 */
struct hub_backend_ops {
	void (*subscribe)(void *ud, const char *user);
	void (*unsubscribe)(void *ud, const char *user);
	void (*history)(void *ud, struct hub_req *req, const char *user,
			const struct cursor *since, unsigned limit);
};

struct hub_limits {
	size_t send_queue_max;        /* bytes per connection (256 KiB) */
	unsigned max_connections;     /* 0 = unlimited */
	unsigned max_per_user;        /* 0 = unlimited */
	unsigned history_limit;       /* entries per replay read (history_max) */
};

struct hub_stats {
	uint64_t conns;               /* attached now */
	uint64_t users;               /* users with at least one connection */
	uint64_t messages_in;         /* live messages received from the backend */
	uint64_t delivered;           /* messages queued to connections */
	uint64_t duplicates_dropped;  /* not queued: id not larger than the last */
	uint64_t replays;             /* history reads started */
	uint64_t resets;              /* RESET messages queued */
	uint64_t slow_closed;         /* connections closed for a full queue */
	uint64_t queued_bytes;        /* bytes in all queues now */
};

struct hub;

/* Returns 0 or HERR_NOMEM.  now_ms may be NULL (wall clock); tests pass their own. */
int hub_new(struct hub **out, const struct hub_limits *lim,
	    long long (*now_ms)(void));
/* All connections must be detached and every history() answered.  NULL is fine. */
void hub_free(struct hub *h);

/* Install the backend (before the first attach). */
void hub_set_backend(struct hub *h, const struct hub_backend_ops *ops, void *ud);

/*
 * Attach c (ops set) for user (a valid user id), resuming after since when
 * non-NULL.  Returns 0, HERR_AGAIN when max_connections or max_per_user is
 * reached (WS 4429, HTTP 429/503), HERR_INVAL for an empty user or one over
 * AUTH_USER_MAX bytes, HERR_NOMEM.  On error c is not attached (and untouched).
 * Live messages arriving before c goes live are held (within send_queue_max).
 */
int hub_attach(struct hub *h, struct hub_conn *c, const char *user,
	       const struct cursor *since);

/*
 * Undo hub_attach: unqueue, forget, unsubscribe the user if c was its last.
 * c must have been attached; detaching it twice is harmless.  A history read
 * in flight for c is still answered by the backend; the hub drops the answer.
 */
void hub_detach(struct hub *h, struct hub_conn *c);

/* The next message for c (the caller owns the reference), or NULL. */
struct hub_msg *hub_pop(struct hub *h, struct hub_conn *c);

/*
 * ops->close(c, HUB_CLOSE_SHUTDOWN) for every attached connection not closed
 * already (queues dropped); they stay attached until hub_detach().
 */
void hub_close_all(struct hub *h);

/* --- called by the backend --- */

/* The channel subscription of user is active (first time or after a reconnect). */
void hub_on_subscribed(struct hub *h, const char *user);

/* A live message on user's channel: env is an envelope (wrapped already). */
void hub_on_message(struct hub *h, const char *user, const char *env, size_t len);

/* The backend lost Redis: every subscription must be confirmed again. */
void hub_on_link_lost(struct hub *h);

/*
 * Answer of a backend history() call.  err 0: entries (oldest first) and
 * truncated.  err HERR_REDIS or HERR_CLOSED: the link went away (or the
 * backend is closing) before an answer; the connection keeps its cursor and
 * held messages and retries at the next hub_on_subscribed() of its user.
 * Any other err (HERR_AGAIN: the backend retried and gave up; HERR_NOMEM,
 * HERR_INVAL...): no confirmation is coming to retry it, so the hub closes
 * the connection with HUB_CLOSE_ERROR and the client resumes from its
 * cursor.  Entries are copied.
 */
void hub_history_done(struct hub *h, struct hub_req *req, const struct history_entry *e,
		      size_t n, int truncated, int err);

/* Users subscribed now (for the backend to replay after a reconnect):
 * calls fn for each user; fn must not call the hub. */
void hub_foreach_user(struct hub *h, void (*fn)(void *arg, const char *user), void *arg);

void hub_get_stats(struct hub *h, struct hub_stats *st);

#endif
