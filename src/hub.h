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
 * user's channel subscription is confirmed, then replays the history after
 * the cursor page by page: it asks the backend for one page (at most
 * page_entries entries and about page_bytes bytes), queues it, and asks for
 * the next only when the transport has taken all but half a page of it with
 * hub_pop(), so a backlog of any size that the history keeps arrives whole
 * while a connection holds at most about 1.5 pages of it.  After the page
 * that reaches the newest entry it delivers the live messages that arrived
 * meanwhile whose id is larger than the last one delivered, and goes live.
 * Replayed messages, and the held ones delivered when the replay ends, do
 * not count against send_queue_max (the transport's write timeout still
 * drops a client that stops reading).  Live messages
 * held during the replay are bounded by send_queue_max; past it they are
 * dropped and the replay reads on until a read issued after the drop
 * reaches the newest entry, so the history gives them back ("id":null
 * messages, which the history does not hold, are lost then).  Every message
 * with an id is delivered to a connection only if its id is larger than the
 * connection's last (no duplicate within a connection); "id":null messages
 * (plain PUBLISH) are delivered live as they come.
 *
 * A connection attached with hub_attach_tail() (WebSocket and SSE without a
 * cursor) starts from the history's tail instead of from nothing: once the
 * user's subscription is confirmed (at once if it already is), the hub
 * reads where the history ends (one history() call without a cursor,
 * limit 1) and queues that id T as a HUB_MSG_CURSOR before anything else;
 * held live messages up to T are dropped, and the connection goes live.
 * Whatever is published after the read arrives live (the subscription was
 * up before it), so no replay follows: one read per such connection, and
 * the client always has a cursor to resume from.
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
	HUB_MSG_CURSOR = 2, /* hub_attach_tail: where the connection starts; has_id,
			     * id = the newest history entry then ({0,0}: none),
			     * data = {"type":"cursor","cursor":"ID"} */
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
	HUB_CLOSE_DISCONNECT = 4, /* hub_close_user() for "disconnect U": WS 4403,
				   * SSE `event: disconnect`; the client stops */
	HUB_CLOSE_REVOKED = 5,  /* hub_close_user() for a revoked token: WS 4401,
				 * SSE `event: disconnect` with reason revoked */
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

/*
 * One history() call.  The backend owns the pointer until it passes it to
 * hub_history_done(), which frees it.
 */
struct hub_req {
	struct hub_req *be_next; /* the backend's: to keep a list of answers it
				  * owes without allocating (out of memory) */
	struct hub_conn *conn;   /* the hub's: NULL once nobody waits */
};

/*
 * A queued message.  Paced: part of a replay (a history page, or live
 * messages held during it and delivered when it ends), paced by the replay
 * itself and not counted against send_queue_max.  The same shared message
 * can be paced on one connection and live on another.
 */
struct hub_qent {
	struct hub_msg *m;
	int paced;
};

/*
 * Embedded in the transport's connection (use container_of to get back).
 * Set ops (and iat, jti) before hub_attach(); the other fields are the hub's.
 */
struct hub_conn {
	const struct hub_conn_ops *ops;
	/* The token's iat and jti (NULL or "": none), for hub_close_user();
	 * jti is the transport's, valid while attached.  Change them only
	 * from the thread that calls hub_close_user (the backend's loop). */
	long long iat;
	const char *jti;
	/* private to the hub */
	struct hub_user *user;
	struct hub_conn *prev, *next;   /* the user's list (intrusive) */
	struct hub_qent *q;             /* ring of queued messages */
	size_t q_head, q_len, q_cap;
	size_t q_bytes;
	struct hub_msg **pend;          /* live messages held until the replay is done */
	size_t pend_len, pend_cap;
	size_t pend_bytes;
	size_t q_replay_bytes;          /* of q_bytes, paced by a replay (not counted
					 * against the cap) */
	struct cursor last;             /* id of the last message queued (or the resume cursor) */
	struct cursor sent;             /* id of the last message the transport took (or
					 * the resume cursor): where a catch-up starts */
	size_t q_noid;                  /* queued envelopes without an id (not in the
					 * history: a full queue holding one cannot catch up) */
	struct cursor page_next;        /* where the next page of a replay starts */
	long long live_ms;              /* when it went live without a cursor: catch-up point */
	struct hub_req *req;            /* history read in flight, or NULL */
	int state;
	/* flags (0 or 1), packed: a connection's size is the servers' memory */
	unsigned char replay;           /* needs a history read before going live */
	unsigned char has_last;
	unsigned char has_sent;
	unsigned char pend_gap;         /* held messages were dropped since the read in
					 * flight was sent: it cannot end the replay */
	unsigned char tail;             /* hub_attach_tail: the tail is still to read */
	unsigned char q_cursor;         /* the HUB_MSG_CURSOR is queued, not yet taken */
};

/*
 * The source of subscriptions and history (the subscriber, or a fake in
 * tests).  Every op is called with the hub mutex held: it must only record
 * the request and act later from its own loop.  history() reads at most
 * limit entries after since (exclusive), stopping before the entry that
 * would take the page past max_bytes of envelopes (but always one entry);
 * since NULL (hub_attach_tail) reads the newest limit entries and answers
 * the newest entry's id in hub_page.end.  Each call must be answered
 * exactly once with hub_history_done(), also on error
 * and after hub_detach() of the connection (the hub then drops the answer).
 */
struct hub_backend_ops {
	void (*subscribe)(void *ud, const char *user);
	void (*unsubscribe)(void *ud, const char *user);
	void (*history)(void *ud, struct hub_req *req, const char *user,
			const struct cursor *since, unsigned limit, size_t max_bytes);
};

struct hub_limits {
	size_t send_queue_max;        /* bytes per connection (256 KiB) */
	unsigned max_connections;     /* 0 = unlimited */
	unsigned max_per_user;        /* 0 = unlimited */
	unsigned page_entries;        /* entries per replay page (replay_page) */
	size_t page_bytes;            /* bytes per replay page; 0 = send_queue_max / 2 */
};

/* The limits the configuration sets (send_queue_max, max_connections,
 * max_connections_per_user, replay_page). */
void hub_limits_conf(struct hub_limits *lim, const struct conf *c);

struct hub_stats {
	uint64_t conns;               /* attached now */
	uint64_t users;               /* users with at least one connection */
	uint64_t messages_in;         /* live messages received from the backend */
	uint64_t delivered;           /* messages queued to connections */
	uint64_t duplicates_dropped;  /* not queued: id not larger than the last */
	uint64_t replays;             /* replays started (one per resume or catch-up) */
	uint64_t replay_pages;        /* history pages read for them */
	uint64_t replayed;            /* messages queued from history pages */
	uint64_t held_dropped;        /* live messages held during a replay and dropped
				       * past send_queue_max (the history gives them back) */
	uint64_t resets;              /* RESET messages queued */
	uint64_t slow_closed;         /* connections closed for a full queue */
	uint64_t slow_caught_up;      /* full queues dropped and caught up from the history */
	uint64_t disconnected;        /* closed by hub_close_user(HUB_CLOSE_DISCONNECT) */
	uint64_t revoked;             /* closed by hub_close_user(HUB_CLOSE_REVOKED) */
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
 * hub_attach without a cursor, starting from the history's tail: the
 * first message queued is a HUB_MSG_CURSOR with the id of the newest entry
 * at that moment (0-0 for an empty history), then every message after it.
 * Returns as hub_attach.
 */
int hub_attach_tail(struct hub *h, struct hub_conn *c, const char *user);

/*
 * Undo hub_attach: unqueue, forget, unsubscribe the user if c was its last.
 * c must have been attached; detaching it twice is harmless.  A history read
 * in flight for c is still answered by the backend; the hub drops the answer.
 */
void hub_detach(struct hub *h, struct hub_conn *c);

/* The next message for c (the caller owns the reference), or NULL. */
struct hub_msg *hub_pop(struct hub *h, struct hub_conn *c);

/* 1 when c has messages queued or a replay still to read, else 0. */
int hub_has_more(struct hub *h, struct hub_conn *c);

/*
 * ops->close(c, HUB_CLOSE_SHUTDOWN) for every attached connection not closed
 * already (queues dropped); they stay attached until hub_detach().
 */
void hub_close_all(struct hub *h);

/*
 * Close every attached connection of user for which match(arg, iat, jti)
 * is non-zero (match NULL: all of them) with reason (HUB_CLOSE_DISCONNECT
 * or HUB_CLOSE_REVOKED): queues dropped, ops->close called, the transport
 * then detaches.  match runs with the hub's lock held.  Returns how many.
 */
unsigned hub_close_user(struct hub *h, const char *user,
			int (*match)(void *arg, long long iat, const char *jti), void *arg,
			int reason);

/* --- called by the backend --- */

/* The channel subscription of user is active (first time or after a reconnect). */
void hub_on_subscribed(struct hub *h, const char *user);

/* A live message on user's channel: env is an envelope (wrapped already). */
void hub_on_message(struct hub *h, const char *user, const char *env, size_t len);

/* The backend lost Redis: every subscription must be confirmed again. */
void hub_on_link_lost(struct hub *h);

/* One page of history as the backend read it. */
struct hub_page {
	const struct history_entry *e; /* oldest first; copied by the hub */
	size_t n;
	int truncated;                 /* entries after the cursor may have been removed */
	int more;                      /* entries after `end` wait in the history */
	struct cursor end;             /* the last entry the read looked at (the
					* next page starts after it); with more,
					* and for a read without a cursor (the
					* newest entry, {0,0} when none) */
};

/*
 * Answer of a backend history() call.  err 0: the page p.  err HERR_REDIS
 * or HERR_CLOSED: the link went away (or the backend is closing) before an
 * answer; the connection keeps its cursor and held messages and retries at
 * the next hub_on_subscribed() of its user.  Any other err (HERR_AGAIN: the
 * backend retried and gave up; HERR_NOMEM, HERR_INVAL...): no confirmation
 * is coming to retry it, so the hub closes the connection with
 * HUB_CLOSE_ERROR and the client resumes from its cursor.  p may be NULL
 * when err is not 0.
 */
void hub_history_done(struct hub *h, struct hub_req *req, const struct hub_page *p, int err);

/* Users subscribed now (for the backend to replay after a reconnect):
 * calls fn for each user; fn must not call the hub. */
void hub_foreach_user(struct hub *h, void (*fn)(void *arg, const char *user), void *arg);

void hub_get_stats(struct hub *h, struct hub_stats *st);

#endif
