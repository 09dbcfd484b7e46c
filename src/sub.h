/*
 * sub.h - the Redis subscriber: one pub/sub connection and one command
 * connection per process, on a libevent loop the program owns, feeding a hub.
 *
 * It is the hub's backend: the hub asks it to SUBSCRIBE/UNSUBSCRIBE a user's
 * channel (the hub reference-counts: one subscription per user with local
 * connections) and to read history; it feeds the hub live messages, wrapped
 * with envelope_from_channel().  Requests may come from any thread: they are
 * queued under a lock and run on the loop thread (event_active on a user
 * event, so the program must call evthread_use_pthreads() before creating
 * the event_base when other threads use the hub).  Calls into the hub are
 * made from the loop thread with no lock of the subscriber held.
 *
 * When Redis goes away: connections are dropped, the hub is told
 * (hub_on_link_lost), and the subscriber reconnects with exponential backoff
 * and full jitter (100 ms doubling to 10 s), resubscribes every user the hub
 * still has, and calls hub_on_subscribed() for each as Redis confirms, which
 * makes the hub catch them up from history.
 *
 * A history read Redis answers with an error while the link is up (a key of
 * the wrong type, -BUSY, -LOADING, -OOM) is sent again after 250 ms, 500 ms,
 * 1 s, 2 s and 4 s (each delay cut at random by up to half, so that reads
 * failing together do not retry together), with a warning per failure; after the
 * fifth retry fails the hub is answered HERR_AGAIN and closes the connection
 * (HUB_CLOSE_ERROR), so the client resumes from its cursor.  A lost link
 * cancels the retries: the hub asks again once the user is resubscribed.
 *
 * Health proves delivery (DESIGN 8): every canary interval the command
 * connection PUBLISHes to a private channel P:__herald:canary:HOST:PID the
 * pub/sub connection is subscribed to; when it does not come back within
 * three intervals the subscriber reports unhealthy and reconnects.
 *
 * Disconnect and revocation (src/revoke.h): the pub/sub connection is also
 * subscribed to the control channel P:__herald:control (before the canary,
 * so a confirmed canary means a confirmed control channel, after every
 * reconnect too); each valid command closes the matching connections of
 * its user with hub_close_user().  A malformed one is counted and logged.
 *
 * Redis Sentinel (redis_sentinels set): each connect attempt asks the
 * sentinels for the master (redis.h, struct redis_resolve), one at a time
 * with a 2 s bound each, connects there and checks ROLE on the command
 * connection.  A third connection, to one sentinel, stays subscribed to
 * +switch-master (moving to the next sentinel a second after it fails);
 * a switch of our master drops both links and reconnects at once, which
 * is then handled as any loss: resubscribe, catch up from history.
 *
 * Other commands on the command connection (sub_command): for a program's
 * own reads on the loop, such as the revocation check at connect.
 *
 * The library never prints: events worth a log line go to the event
 * callback with a level (enum log_level) and a complete message.
 */
#ifndef HERALD_SUB_H
#define HERALD_SUB_H

#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "conf.h"
#include "hub.h"

enum sub_state {
	SUB_DISCONNECTED = 0, /* waiting for the next reconnect attempt */
	SUB_CONNECTING = 1,
	SUB_CONNECTED = 2,    /* both connections up */
};

struct sub_status {
	int state;                  /* enum sub_state */
	int healthy;                /* connected and the canary came back in time */
	uint64_t subscribed;        /* user channels subscribed (confirmed) */
	uint64_t reconnects;        /* successful reconnects after a loss */
	uint64_t messages;          /* live messages received */
	uint64_t history_reads;     /* history reads the hub asked for */
	uint64_t history_retries;   /* reads sent again after Redis answered an error */
	uint64_t history_failures;  /* reads given up: their connection is closed */
	uint64_t control_messages;  /* control channel commands applied */
	uint64_t control_invalid;   /* control channel messages ignored as malformed */
	uint64_t canary_rtt_us;     /* last canary round trip */
	uint64_t failovers;         /* Sentinel: +switch-master seen for our master */
	char last_error[160];       /* "" or the last connection error */
};

struct sub;

typedef void (*sub_event_fn)(void *ud, int level, const char *msg);

/*
 * Create on base (not yet running is fine) and install as h's backend.
 * Connects at once, asynchronously (the first attempt runs from the loop).
 * canary_interval_ms 0 = 2000.  c is borrowed: it must outlive s.
 * Returns 0, HERR_INVAL (bad redis_url, err says why), HERR_NOMEM.
 */
int sub_new(struct sub **out, struct event_base *base, const struct conf *c,
	    struct hub *h, unsigned canary_interval_ms, char *err, size_t errlen);

/* Disconnect and free, on the loop thread; the hub must not be used after
 * this with connections still attached.  Uninstalls itself as the hub's
 * backend and answers every history read still pending with HERR_CLOSED.
 * NULL is fine. */
void sub_free(struct sub *s);

void sub_set_event_cb(struct sub *s, sub_event_fn fn, void *ud);

/* Thread-safe snapshot. */
void sub_get_status(struct sub *s, struct sub_status *st);

/*
 * The answer of a sub_command(): r is the reply (borrowed until the
 * callback returns; it may be an error reply), or NULL when the link went
 * away (or the subscriber is being freed) before an answer.
 */
typedef void (*sub_reply_fn)(void *ud, const redisReply *r);

struct sub_call;

/*
 * Send one command (argv/argvlen copied) on the command connection, from
 * the loop thread.  Returns 0: fn(ud, ...) will be called exactly once, from
 * the loop, unless *call (may be NULL) is cancelled first; HERR_REDIS when
 * Redis is not connected now, HERR_NOMEM: fn is never called then.
 */
int sub_command(struct sub *s, int argc, const char **argv, const size_t *argvlen,
		sub_reply_fn fn, void *ud, struct sub_call **call);

/* The caller does not want the answer any more (its connection closed):
 * fn will not be called.  The memory is freed when Redis answers.  Loop
 * thread; call at most once, and never after fn ran. */
void sub_call_cancel(struct sub_call *call);

#endif
