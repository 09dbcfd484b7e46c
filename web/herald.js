/*
 * herald.js - the browser client of Herald.  How to use it: docs/client.md.
 *
 *   import Herald from '/herald.js';
 *   const h = Herald.connect({ token, onNotification(env) { ... } });
 *   ...
 *   h.close();
 *
 * One dependency-free ES module.  It keeps one server connection per browser
 * (the tabs of one origin elect a leader with the Web Locks API and share its
 * notifications over a BroadcastChannel), and climbs down the ladder
 * WebSocket -> Server-Sent Events -> polling when a transport cannot work
 * through the proxies in between, and back up when it can again.  The cursor
 * (the id of the last notification handed to the app) follows the client
 * from one transport to the next and is kept in localStorage, so a reload,
 * a fallback or a leader hand-off resumes where it stopped: nothing lost,
 * nothing handed over twice.  A connection that is open but dead (a frozen
 * server, a NAT or proxy that dropped it silently) is told by its silence:
 * the server sends heartbeats the page can see, and a connection that heard
 * nothing for heartbeatTimeout is replaced, as after an error; the client
 * also reconnects at once when the browser comes back online and when a
 * page is shown again after a long time hidden (a laptop that slept).
 */

const VERSION = '1.0.0';

const DEFAULTS = {
	base: '', /* where Herald is: '' for this page's origin, or 'https://push.example' */
	wsUrl: null, /* the WebSocket endpoint when it is elsewhere (nginx/herald-stream.conf): 'wss://push.example:8443/api/v1/ws/notifications' */
	token: null, /* a JWT, or */
	getToken: null, /* async () => JWT: called at start without token, once on 4401/401, and ahead of expiry */
	refreshAt: 0.8, /* call getToken at this fraction of the token's life (a little earlier, jittered); 0: only on 4401/401 */
	cookie: false, /* true: the herald_token cookie authenticates; no token in URLs */
	tickets: true, /* WebSocket and SSE: a single-use ticket in the URL, not the token; false: ?token= */
	transports: ['ws', 'sse', 'poll'], /* the ladder, best first */
	paths: {
		ws: '/api/v1/ws/notifications',
		sse: '/api/v1/sse/notifications',
		poll: '/api/v1/notifications/poll',
		ticket: '/api/v1/notifications/ticket',
	},
	onNotification: null, /* (envelope) => void */
	onState: null, /* ({state, transport, role, ...}) => void */
	onReset: null, /* () => void: history was cut, refetch what the app shows */
	share: true, /* one connection for all tabs (Web Locks + BroadcastChannel) */
	storage: true, /* keep the cursor in localStorage */
	storageKey: null, /* default: 'herald:' + base + ':' + the token's sub */
	pollInterval: 0, /* ms between polls; 0: what the server says (60 s) */
	longPoll: 25, /* seconds a poll may wait at the server; 0: plain polling */
	backoffBase: 1000, /* ms: first retry within [0, base) */
	backoffMax: 30000, /* ms: retries within [0, max) at most */
	healthyAfter: 30000, /* ms open before the backoff starts again from zero */
	fallAfter: 2, /* failed attempts in a row before falling one rung */
	probeInterval: 60000, /* ms between tries of a better transport */
	stableAfter: 5000, /* ms open before a connection counts as working (ladder, token) */
	connectTimeout: 15000, /* ms a WebSocket or SSE attempt may take to open */
	heartbeatTimeout: 75000, /* ms an open WebSocket or SSE stream may stay silent (no notification, no heartbeat) before it counts as dead: 2.5 x the server's interval (ws_ping_interval 30 s; SSE: heartbeat 15 s); 0: never */
	wakeAfter: 60000, /* ms hidden after which a page shown again reconnects at once, unless its connection heard from the server within that time; 0: never */
	debug: false, /* log the ladder on the console */
	logger: null, /* {log, warn} to use instead of console */
};

const NAMES = { ws: 'WebSocket', sse: 'SSE', poll: 'Polling' };
const FALL_NAMES = { ws: 'WebSocket', sse: 'SSE', poll: 'polling' };

/* --- ids ----------------------------------------------------------------- */

const ID_RE = /^\d{1,20}-\d{1,20}$/;

function cmpDec(a, b) {
	a = a.replace(/^0+(?=\d)/, '');
	b = b.replace(/^0+(?=\d)/, '');
	if (a.length !== b.length)
		return a.length - b.length;
	return a < b ? -1 : a > b ? 1 : 0;
}

/* Stream ids "MS-SEQ" compared as the two 64-bit numbers they are. */
function cmpId(a, b) {
	const [am, as] = a.split('-');
	const [bm, bs] = b.split('-');
	return cmpDec(am, bm) || cmpDec(as, bs);
}

function newer(a, b) {
	if (!a || !ID_RE.test(a))
		return b || null;
	if (!b || !ID_RE.test(b))
		return a;
	return cmpId(a, b) >= 0 ? a : b;
}

/* The token's subject, read without checking it: only to name storage. */
function tokenSubject(token) {
	try {
		const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
		const sub = JSON.parse(atob(p + '==='.slice((p.length + 3) % 4))).sub;
		return sub == null ? '' : String(sub);
	} catch (e) {
		return '';
	}
}

/* The token's exp and iat (seconds), read without checking it: only to
 * renew it in time.  null when it has no numeric exp. */
function tokenTimes(token) {
	try {
		const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
		const c = JSON.parse(atob(p + '==='.slice((p.length + 3) % 4)));
		if (typeof c.exp !== 'number' || !isFinite(c.exp))
			return null;
		return { exp: c.exp, iat: typeof c.iat === 'number' && isFinite(c.iat) ? c.iat : 0 };
	} catch (e) {
		return null;
	}
}

function hideToken(url) {
	return String(url).replace(/([?&](?:token|ticket)=)[^&]*/, '$1***');
}

/* Full jitter: a uniform pick in [0, min(max, base * 2^attempt)). */
function backoff(base, max, attempt) {
	return Math.floor(Math.random() * Math.min(max, base * Math.pow(2, Math.min(attempt, 20))));
}

function storageGet(key) {
	try {
		return globalThis.localStorage ? localStorage.getItem(key) : null;
	} catch (e) {
		return null;
	}
}

function storageSet(key, value) {
	try {
		if (globalThis.localStorage)
			localStorage.setItem(key, value);
	} catch (e) {
		/* full or forbidden: the cursor then lives in memory only */
	}
}

/* --- transports ------------------------------------------------------------
 * Each opener starts one attempt (WebSocket and SSE with the ticket that
 * Client._begin fetched, or null: the token or the cookie) and reports
 * through h: open() once it
 * works, message(envelope), reset(), and close(info) once, where info.kind is
 *   'auth'    the token was refused (4401, 401): get a new one
 *   'disconnected' the server logged the user out (4403, SSE `event:
 *             disconnect`): stop, do not reconnect
 *   'slow'    the server dropped us for reading too slowly (4408): resume
 *   'limit'   too many connections (4429 / 429): back off, do not fall
 *   'refused' this transport is not served here (404, 1008): fall at once
 *   'normal'  an orderly end (1000, 1001, end of an SSE stream): resume
 *   'fail'    anything else (1006, network, 5xx)
 * and returns {close()} that ends it without reporting.
 */

function wsClose(code, opened, reason) {
	switch (code) {
	case 4401:
		/* A ticket refused (used, expired, or Redis down at the server):
		 * the token itself was accepted for it, so a new ticket, not a new
		 * token, is what the next attempt needs. */
		return reason === 'bad_ticket' ? 'fail' : 'auth';
	case 4403:
		return 'disconnected';
	case 4408:
		return 'slow';
	case 4429:
		return 'limit';
	case 1008:
		return 'refused';
	case 1000:
	case 1001:
		return opened ? 'normal' : 'fail';
	default:
		return 'fail';
	}
}

function openWs(c, h, ticket) {
	const url = c._url('ws', { since: c._cursor }, false, ticket);
	if (url.protocol === 'https:')
		url.protocol = 'wss:';
	else if (url.protocol === 'http:')
		url.protocol = 'ws:';
	c._log(`[WebSocket] Connecting to: ${hideToken(url)}`);
	let opened = false;
	let ws;
	try {
		ws = new WebSocket(url.href);
	} catch (e) {
		setTimeout(() => h.close({ kind: 'refused', detail: String(e) }), 0);
		return { close() {} };
	}
	const timer = setTimeout(() => {
		ws.onclose = null;
		ws.close();
		h.close({ kind: 'fail', detail: 'no answer' });
	}, c.o.connectTimeout);
	ws.onopen = () => {
		clearTimeout(timer);
		opened = true;
		h.open();
	};
	ws.onmessage = (e) => {
		h.alive();
		if (typeof e.data !== 'string')
			return;
		let m;
		try {
			m = JSON.parse(e.data);
		} catch (err) {
			c._warn('[WebSocket] not JSON, ignored:', e.data.slice(0, 100));
			return;
		}
		if (m && m.reset === true && !('id' in m))
			h.reset();
		else if (m && typeof m.type === 'string' && !('id' in m))
			h.control(m); /* the server's own: cursor, refreshed, expiring, heartbeat (docs/protocol.md) */
		else if (m && typeof m === 'object')
			h.message(m);
	};
	ws.onclose = (e) => {
		clearTimeout(timer);
		h.close({ kind: wsClose(e.code, opened, e.reason), code: e.code, detail: e.reason || undefined });
	};
	return {
		/* A new token for this connection: herald-ws moves its expiry. */
		refresh(token) {
			try {
				ws.send(JSON.stringify({ type: 'refresh', token }));
				return true;
			} catch (e) {
				return false;
			}
		},
		close() {
			clearTimeout(timer);
			ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
			try {
				ws.close(1000);
			} catch (e) {
				/* already closing */
			}
		},
	};
}

function statusKind(status) {
	if (status === 401 || status === 403)
		return 'auth';
	if (status === 429)
		return 'limit';
	if (status === 404 || status === 405 || status === 501)
		return 'refused';
	return 'fail';
}

function openSse(c, h, ticket) {
	const url = c._url('sse', { last_event_id: c._cursor }, false, ticket);
	c._log(`[SSE] Connecting to: ${hideToken(url)}`);
	let opened = false;
	let closed = false;
	let ctrl = null;
	const es = new EventSource(url.href, { withCredentials: c._crossOrigin && c.o.cookie });
	const onEvent = (e) => {
		h.alive();
		let m;
		try {
			m = JSON.parse(e.data);
		} catch (err) {
			c._warn('[SSE] not JSON, ignored:', String(e.data).slice(0, 100));
			return;
		}
		if (m && typeof m === 'object')
			h.message(m);
	};
	const timer = setTimeout(() => {
		es.close();
		closed = true;
		h.close({ kind: 'fail', detail: 'no answer' });
	}, c.o.connectTimeout);
	es.onopen = () => {
		clearTimeout(timer);
		opened = true;
		h.open();
	};
	es.addEventListener('notification', onEvent);
	es.onmessage = onEvent;
	/* `event: heartbeat` every `heartbeat` s (herald-fcgi): proof of life only */
	es.addEventListener('heartbeat', () => h.alive());
	/* A stream opened without last_event_id starts with `id: ID` /
	 * `event: cursor`: where the history ended.  Kept as the cursor, so a
	 * reconnect before the first notification resumes from there. */
	es.addEventListener('cursor', (e) => {
		h.alive();
		let id = e.lastEventId;
		if (!ID_RE.test(id || ''))
			try {
				id = JSON.parse(e.data).cursor;
			} catch (x) {
				return;
			}
		h.control({ type: 'cursor', cursor: id });
	});
	es.addEventListener('reset', () => {
		h.alive();
		h.reset();
	});
	/* Closed by the server's control channel: reason "disconnect" (stop)
	 * or "revoked" (the token was revoked: get a new one). */
	es.addEventListener('disconnect', (e) => {
		let reason = '';
		try {
			reason = JSON.parse(e.data).reason;
		} catch (x) {
			/* no reason: a disconnect */
		}
		clearTimeout(timer);
		es.close();
		if (!closed)
			h.close({ kind: reason === 'revoked' ? 'auth' : 'disconnected', detail: reason });
	});
	/*
	 * EventSource would reconnect by itself, but it hides why it failed:
	 * the client reconnects itself, with its own cursor and backoff, and asks
	 * a failed first attempt's status with one plain request.
	 */
	es.onerror = () => {
		clearTimeout(timer);
		es.close();
		if (closed)
			return;
		if (opened) {
			h.close({ kind: 'normal' });
			return;
		}
		ctrl = new AbortController();
		/* A ticket works once, and this one is spent: the question goes
		 * with the token in Authorization, which keeps it out of the URL. */
		const ask = ticket ? c._url('sse', { last_event_id: c._cursor }, true) : url;
		fetch(ask.href, c._fetchInit(ctrl.signal, false, !!ticket))
			.then((res) => {
				ctrl.abort();
				if (!closed)
					h.close({ kind: res.ok ? 'fail' : statusKind(res.status), code: res.status });
			})
			.catch((e) => {
				if (!closed)
					h.close({ kind: 'fail', detail: String(e) });
			});
	};
	return {
		close() {
			clearTimeout(timer);
			closed = true;
			es.close();
			if (ctrl)
				ctrl.abort();
		},
	};
}

function openPoll(c, h) {
	let stopped = false;
	let opened = false;
	let timer = null;
	let ctrl = null;
	let draining = false; /* the last answer said more: true */
	const once = async () => {
		timer = null;
		const cursor = c._cursor;
		/* Without a cursor and before the first answer, only learn where the
		 * history ends: the other transports start there too. */
		const learn = !cursor && !c._primed;
		/* The first request answers at once: it proves the endpoint and the
		 * token (state 'connected') and catches up; then long-polls.  Pages of
		 * a backlog (more: true) are asked for without wait= too. */
		const wait = opened && c._primed && c._longPoll > 0 && !draining ? c._longPoll : 0;
		const url = c._url('poll', { since: cursor, limit: learn ? 1 : 100, wait: wait || null }, true);
		c._log(`[Polling] GET ${hideToken(url)}`);
		ctrl = new AbortController();
		const started = Date.now();
		/* a proxy that holds the request forever must not stop polling */
		const guard = setTimeout(() => ctrl.abort(), (wait + 30) * 1000);
		let res;
		let body;
		try {
			res = await fetch(url.href, c._fetchInit(ctrl.signal, true));
			if (stopped)
				return;
			if (res.status === 400 && wait) {
				c._log('[Polling] the server refused wait=: polling without long-poll');
				c._longPoll = 0;
				timer = setTimeout(once, 0);
				return;
			}
			if (!res.ok) {
				const ra = parseInt(res.headers.get('Retry-After') || '', 10);
				h.close({ kind: statusKind(res.status), code: res.status, retryAfter: ra > 0 ? ra * 1000 : 0 });
				return;
			}
			body = await res.json();
			if (!body || typeof body !== 'object')
				throw new Error('not a poll answer');
		} catch (e) {
			if (!stopped)
				h.close({ kind: 'fail', detail: String(e) });
			return;
		} finally {
			clearTimeout(guard);
		}
		if (stopped)
			return;
		h.alive();
		if (!opened) {
			opened = true;
			h.open();
		}
		if (body.truncated === true)
			h.reset();
		const list = Array.isArray(body.notifications) ? body.notifications : [];
		if (learn) {
			c._primed = true;
			c._advance(body.cursor);
		} else {
			for (const env of list) {
				if (stopped)
					return;
				h.message(env);
			}
			if (cursor && typeof body.cursor === 'string')
				c._advance(body.cursor);
		}
		/* more: true: further entries wait after body.cursor; ask for them at
		 * once, page after page, as long as each page moves the cursor on (a
		 * server that says more without progress gets the normal pace). */
		draining =
			!learn && body.more === true && typeof body.cursor === 'string' && ID_RE.test(body.cursor) &&
			(!cursor || cmpId(body.cursor, cursor) > 0);
		let next = c.o.pollInterval || (body.poll_interval > 0 ? body.poll_interval * 1000 : 60000);
		/* Long-polling goes again at once; a held poll answered empty at once
		 * means the server does not hold them: poll at the interval. */
		if (draining || (c._longPoll > 0 && c._primed && (!wait || list.length > 0 || Date.now() - started >= 1000)))
			next = 0;
		timer = setTimeout(once, next);
	};
	timer = setTimeout(once, 0);
	return {
		close() {
			stopped = true;
			if (timer)
				clearTimeout(timer);
			if (ctrl)
				ctrl.abort();
		},
	};
}

const OPENERS = { ws: openWs, sse: openSse, poll: openPoll };

/* --- the client ------------------------------------------------------------ */

class Client {
	constructor(options) {
		const o = Object.assign({}, DEFAULTS, options || {});
		o.paths = Object.assign({}, DEFAULTS.paths, (options && options.paths) || {});
		o.transports = (o.transports || DEFAULTS.transports).filter((t) => OPENERS[t]);
		if (o.transports.length === 0)
			throw new Error('herald: no known transport in options.transports');
		if (!o.token && typeof o.getToken !== 'function' && !o.cookie)
			throw new Error('herald: options.token, getToken or cookie is required');
		if (o.transports.includes('sse') && typeof EventSource !== 'function')
			o.transports = o.transports.filter((t) => t !== 'sse');
		if (o.transports.includes('ws') && typeof WebSocket !== 'function')
			o.transports = o.transports.filter((t) => t !== 'ws');
		this.o = o;
		this._token = o.token || null;
		this._baseUrl = new URL(o.base || '/', globalThis.location ? location.href : undefined);
		this._crossOrigin = globalThis.location ? this._baseUrl.origin !== location.origin : true;
		this._longPoll = Math.max(0, Math.min(55, o.longPoll | 0));
		this._cursor = null;
		this._primed = false;
		this._state = 'idle';
		this._transport = null;
		this._role = null;
		this._closed = false;
		this._level = 0;
		this._fails = 0; /* failed attempts in a row on this rung */
		this._attempt = 0; /* backoff exponent: closes since the last healthy connection */
		this._authRetried = false;
		this._everConnected = false;
		this._conn = null;
		this._probe = null;
		this._retryTimer = null;
		this._probeTimer = null;
		this._refreshTimer = null; /* getToken ahead of the token's expiry */
		this._refreshing = false;
		this._refreshedAt = 0;
		this._renewal = null; /* an SSE (or cookie) connection replacing this._conn with a new token */
		this._noTickets = false; /* the server has no ticket endpoint: ?token= */
		this._stableTimer = null;
		this._healthyTimer = null;
		this._chan = null;
		this._release = null;
		this._lockAbort = null;
		this._watchTimer = null; /* the silence check of the open connection (_watch) */
		this._hiddenAt = 0; /* Date.now() when the page was hidden; 0 while shown */
		this._onOnline = () => this._reconnectNow('the browser is back online');
		this._onVisibility = () => {
			if (document.visibilityState === 'hidden') {
				this._hiddenAt = Date.now();
				return;
			}
			const at = this._hiddenAt;
			const now = Date.now();
			this._hiddenAt = 0;
			if (!at || !(this.o.wakeAfter > 0) || now - at < this.o.wakeAfter)
				return;
			const c = this._conn;
			if (c && c.opened && !c.dead && now - c.heard < this.o.wakeAfter)
				return; /* it kept hearing from the server while hidden */
			this._reconnectNow(`shown again after ${Math.round((now - at) / 1000)} s hidden`);
		};
		this._start();
	}

	/* --- the handle's API --- */

	get state() {
		return this._state;
	}
	get transport() {
		return this._transport;
	}
	get role() {
		return this._role;
	}
	get cursor() {
		return this._cursor;
	}

	close() {
		if (this._closed)
			return;
		this._closed = true;
		this._stopConnections();
		this._clearTimer('_refreshTimer');
		if (this._release)
			this._release();
		if (this._lockAbort)
			this._lockAbort.abort();
		if (this._chan) {
			if (this._role === 'leader')
				this._post({ t: 's', state: 'connecting', transport: null });
			this._chan.close();
		}
		if (globalThis.removeEventListener)
			removeEventListener('online', this._onOnline);
		if (globalThis.document && document.removeEventListener)
			document.removeEventListener('visibilitychange', this._onVisibility);
		this._setState('closed', null);
	}

	/* A new token (e.g. after 'unauthorized'): used from the next attempt on. */
	setToken(token) {
		this._token = token;
		this._authRetried = false;
		this._scheduleRefresh();
		if (this._state === 'unauthorized' && this._role !== 'follower' && !this._closed)
			this._open();
	}

	/* Drop the connection and connect again now, from the best transport. */
	reconnect() {
		if (this._closed || this._role === 'follower')
			return;
		this._stopConnections();
		this._level = 0;
		this._fails = 0;
		this._attempt = 0;
		this._authRetried = false;
		this._open();
	}

	/* --- start and tabs --- */

	async _start() {
		if (!this._token && !this.o.cookie) {
			try {
				this._token = await this.o.getToken();
			} catch (e) {
				this._warn('[Notifications] getToken failed:', e);
			}
			if (this._closed)
				return;
			if (!this._token) {
				this._setState('unauthorized', null, { detail: 'no token' });
				return;
			}
		}
		const sub = this._token ? tokenSubject(this._token) : '';
		this._key = this.o.storageKey || `herald:${this._baseUrl.origin}${this._baseUrl.pathname}:${sub}`;
		this._cursor = this._storedCursor();
		if (globalThis.addEventListener)
			addEventListener('online', this._onOnline);
		if (globalThis.document && document.addEventListener) {
			this._hiddenAt = document.visibilityState === 'hidden' ? Date.now() : 0;
			document.addEventListener('visibilitychange', this._onVisibility);
		}
		const locks = globalThis.navigator && navigator.locks;
		if (!this.o.share || !locks || typeof BroadcastChannel !== 'function') {
			this._lead('solo');
			return;
		}
		this._chan = new BroadcastChannel(this._key);
		this._chan.onmessage = (e) => this._onChannel(e.data);
		this._role = 'follower';
		this._log('[Notifications] waiting for the leader tab (or to become it)');
		this._setState('connecting', null);
		this._post({ t: 'hello' });
		this._lockAbort = new AbortController();
		locks.request(`${this._key}:leader`, { signal: this._lockAbort.signal }, () => {
			if (this._closed)
				return undefined;
			this._lockAbort = null;
			this._lead('leader');
			/* Held until close() or until this document goes away. */
			return new Promise((resolve) => {
				this._release = resolve;
			});
		}).catch(() => {});
	}

	_lead(role) {
		this._role = role;
		this._scheduleRefresh();
		this._log(`[Notifications] this tab ${role === 'solo' ? 'connects alone' : 'is the leader'}`);
		this._cursor = newer(this._cursor, this._storedCursor());
		if (this._cursor) {
			this._primed = true;
			this._open();
			return;
		}
		this._prime().then(() => {
			if (!this._closed)
				this._open();
		});
	}

	/*
	 * A client with no cursor asks once where the user's history ends, so
	 * that any later resume (a fallback, a reconnect) has an id to resume
	 * from and misses nothing.  An empty history has no id to give; then
	 * the first WebSocket or SSE connection, opened without a cursor, is
	 * told one by the server (its cursor message, h.control), as it is
	 * where polling is not served.
	 */
	async _prime() {
		this._setState('connecting', null);
		const ctrl = new AbortController();
		const timer = setTimeout(() => ctrl.abort(), 10000);
		try {
			const res = await fetch(this._url('poll', { limit: 1 }, true).href, this._fetchInit(ctrl.signal, true));
			if (res.ok) {
				const body = await res.json();
				this._primed = true;
				this._advance(body.cursor);
			}
		} catch (e) {
			/* no polling here: the transports start live */
		}
		clearTimeout(timer);
	}

	_post(msg) {
		if (this._chan)
			try {
				this._chan.postMessage(msg);
			} catch (e) {
				/* closed */
			}
	}

	_onChannel(m) {
		if (!m || this._closed)
			return;
		if (this._role === 'follower') {
			if (m.t === 'n')
				this._deliver(m.env);
			else if (m.t === 'r')
				this._callReset();
			else if (m.t === 's')
				this._setState(m.state, m.transport, m.info);
		} else if (m.t === 'hello') {
			this._post({ t: 's', state: this._state, transport: this._transport, info: this._info });
		}
	}

	/* --- the ladder (leader or solo) --- */

	_open() {
		if (this._closed)
			return;
		this._clearTimer('_retryTimer');
		const kind = this.o.transports[this._level];
		this._setState(this._everConnected ? 'reconnecting' : 'connecting', kind);
		this._conn = this._connect(this._level, false);
	}

	_connect(level, probe) {
		const kind = this.o.transports[level];
		/* heard: Date.now() when the server was last heard from on it */
		const conn = { kind, level, probe, opened: false, stable: false, dead: false, heard: 0, impl: null };
		const h = {
			alive: () => {
				conn.heard = Date.now();
			},
			open: () => {
				if (!conn.dead)
					this._onOpen(conn);
			},
			message: (env) => {
				if (!conn.dead && conn === this._conn) {
					this._deliver(env);
					this._markStable(conn);
				}
			},
			reset: () => {
				if (!conn.dead && conn === this._conn)
					this._callReset();
			},
			control: (m) => {
				if (conn.dead || conn !== this._conn)
					return;
				if (m.type === 'cursor')
					/* A connection opened without a cursor: where the history
					 * ended.  Never moves the cursor back. */
					this._advance(m.cursor);
				else if (m.type === 'refreshed')
					this._log(`[${NAMES[conn.kind]}] token refreshed on the open connection (exp ${m.expires_at})`);
				else if (m.type === 'expiring')
					this._onExpiring(m.expires_in);
			},
			close: (info) => {
				if (conn.dead)
					return;
				conn.dead = true;
				this._onClose(conn, info);
			},
		};
		conn.impl = this._begin(kind, h);
		return conn;
	}

	/*
	 * One attempt of a transport.  With a token (not the cookie) and
	 * `tickets`, a WebSocket or an SSE stream first trades the token for a
	 * single-use ticket (POST paths.ticket, the token in Authorization) and
	 * puts the ticket in its URL: the JWT then appears in no request line,
	 * so in no proxy's log.  Every attempt (a retry, a probe, an SSE
	 * renewal) takes a new ticket.  A ticket that cannot be had fails the
	 * attempt as the transport would (h.close: the backoff and the ladder
	 * apply; 401/403 is a refused token); a server without the endpoint
	 * (404, 405, 501: older than tickets) gets ?token= from then on.
	 */
	_begin(kind, h) {
		if (kind === 'poll' || !this._ticketed())
			return OPENERS[kind](this, h, null);
		const ctrl = new AbortController();
		let impl = null;
		let stopped = false;
		this._ticket(ctrl).then((r) => {
			if (stopped)
				return;
			if (r.ticket || r.noTickets)
				impl = OPENERS[kind](this, h, r.ticket || null);
			else
				h.close(r);
		});
		return {
			refresh(token) {
				return !!(impl && impl.refresh && impl.refresh(token));
			},
			close() {
				stopped = true;
				ctrl.abort();
				if (impl)
					impl.close();
			},
		};
	}

	_ticketed() {
		return this.o.tickets !== false && !this.o.cookie && !!this._token && !this._noTickets;
	}

	/* A ticket for the current token: {ticket}, {noTickets: true} when the
	 * server has no ticket endpoint, or the close info of a failed attempt. */
	async _ticket(ctrl) {
		let late = false;
		const timer = setTimeout(() => {
			late = true;
			ctrl.abort();
		}, this.o.connectTimeout);
		const url = this._url('ticket', null, true);
		try {
			const res = await fetch(url.href, Object.assign(this._fetchInit(ctrl.signal, true), { method: 'POST' }));
			if (res.ok) {
				const body = await res.json();
				if (body && typeof body.ticket === 'string' && body.ticket !== '')
					return { ticket: body.ticket };
				return { kind: 'fail', detail: 'ticket: not a ticket answer' };
			}
			if (res.status === 404 || res.status === 405 || res.status === 501) {
				/* An older Herald, or a proxy without the ticket location:
				 * refusing to connect would break it; say so once. */
				this._noTickets = true;
				const l = this._logger();
				(l.warn || l.log).call(l, `[Notifications] ${url.pathname} answered ${res.status}: this server has no tickets, ` +
					'so the token goes in WebSocket and SSE URLs (and may reach proxy logs); update Herald and its proxy ' +
					'config, or set tickets: false to silence this');
				return { noTickets: true };
			}
			const ra = parseInt(res.headers.get('Retry-After') || '', 10);
			return { kind: statusKind(res.status), code: res.status, detail: 'ticket', retryAfter: ra > 0 ? ra * 1000 : 0 };
		} catch (e) {
			return { kind: 'fail', detail: late ? 'ticket: no answer' : `ticket: ${e}` };
		} finally {
			clearTimeout(timer);
		}
	}

	_onOpen(conn) {
		conn.opened = true;
		conn.heard = Date.now();
		if (conn.renews) {
			/* The renewal is open: it takes over, the old one goes.  It
			 * resumed from the cursor it was opened with, so what the old one
			 * delivered meanwhile is dropped as seen, and nothing is missed. */
			this._renewal = null;
			const old = conn.renews;
			conn.renews = null;
			if (old !== this._conn) {
				conn.dead = true;
				conn.impl.close();
				return;
			}
			old.dead = true;
			old.impl.close();
			this._conn = conn;
			conn.stable = old.stable;
			this._log(`[${NAMES[conn.kind]}] renewed with the new token`);
		}
		if (conn.probe) {
			/* A better transport works again: take it, drop the worse one.
			 * Both resumed from the cursor, so nothing is lost or doubled. */
			this._probe = null;
			const old = this._conn;
			this._log(`[Notifications] ${NAMES[conn.kind]} works again - switching from ${FALL_NAMES[old ? old.kind : '']}`);
			if (old) {
				old.dead = true;
				old.impl.close();
			}
			this._conn = conn;
			this._level = conn.level;
			this._fails = 0;
		}
		if (conn !== this._conn)
			return;
		this._log(`[${NAMES[conn.kind]}] Connected successfully`);
		this._primed = true;
		this._everConnected = true;
		this._setState('connected', conn.kind);
		this._clearTimer('_stableTimer');
		this._stableTimer = setTimeout(() => this._markStable(conn), this.o.stableAfter);
		this._clearTimer('_healthyTimer');
		this._healthyTimer = setTimeout(() => this._markHealthy(conn), this.o.healthyAfter);
		/* a poll answered 200: the token and the transport are proven */
		if (conn.kind === 'poll')
			this._markStable(conn);
		this._scheduleProbe();
		this._watch();
	}

	/*
	 * The silence check.  An open WebSocket or SSE stream hears a
	 * notification or a heartbeat at least every interval the server keeps
	 * (herald-ws: under twice ws_ping_interval; herald-fcgi: heartbeat,
	 * docs/protocol.md section 11).  One that heard nothing for
	 * heartbeatTimeout is dead though TCP does not know it yet (a frozen
	 * server, a NAT or proxy that dropped it silently, a laptop that
	 * slept): it is closed and replaced as after an error, from the cursor,
	 * and counts as a failure on the ladder.  Polling needs none: each poll
	 * answers, and each request has its own bound.  One timer, armed for
	 * what is left of the bound.
	 */
	_watch() {
		this._clearTimer('_watchTimer');
		const c = this._conn;
		const limit = this.o.heartbeatTimeout;
		if (this._closed || !c || !c.opened || c.dead || c.kind === 'poll' || !(limit > 0))
			return;
		const quiet = Date.now() - c.heard;
		if (quiet < limit) {
			this._watchTimer = setTimeout(() => this._watch(), Math.min(limit, limit - quiet));
			return;
		}
		this._log(`[${NAMES[c.kind]}] heard nothing for ${(quiet / 1000).toFixed(1)} s (heartbeatTimeout): the connection is dead`);
		c.dead = true;
		c.impl.close();
		this._onClose(c, { kind: 'fail', detail: 'no heartbeat' });
	}

	/*
	 * The browser is back online, or the page is shown again after a sleep:
	 * the connection (open, opening, or waiting to retry) may be dead
	 * without knowing it, and the backoff may have grown while the network
	 * was down.  Connect again now, on the same rung, from the cursor.  Not
	 * while starting, stopped (unauthorized) or following another tab.
	 */
	_reconnectNow(why) {
		if (this._closed || (this._role !== 'solo' && this._role !== 'leader') || (!this._conn && !this._retryTimer))
			return;
		this._log(`[Notifications] ${why} - reconnecting now`);
		this._stopConnections();
		this._attempt = 0;
		this._open();
	}

	/* The transport and the token work (open stableAfter ms, a notification
	 * received, or a poll answered): the ladder's failure count starts again. */
	_markStable(conn) {
		if (conn.stable || conn.dead)
			return;
		conn.stable = true;
		this._fails = 0;
		this._authRetried = false;
	}

	/* Open healthyAfter ms: the server is not closing us in a loop, so the
	 * backoff starts again from zero.  Delivering alone does not count: a
	 * server that sends a page and closes must not reset it. */
	_markHealthy(conn) {
		this._healthyTimer = null;
		if (conn.dead || conn !== this._conn)
			return;
		this._attempt = 0;
	}

	/*
	 * The wait before the next attempt after a close.  _attempt counts the
	 * closes since the last healthy connection: the first one after a healthy
	 * connection retries at once for 4408 and a refused token (the server
	 * asked us to resume), within [0, backoffBase) otherwise; each further
	 * close doubles the window, full jitter, up to backoffMax.  A server that
	 * keeps closing the client thus sees it come back a few times a minute,
	 * not in a loop.  Retry-After, when given, is a floor.
	 */
	_nextDelay(kind, retryAfter) {
		const n = this._attempt++;
		const d = n === 0 && (kind === 'slow' || kind === 'auth') ? 0 : backoff(this.o.backoffBase, this.o.backoffMax, n);
		return Math.max(retryAfter || 0, d);
	}

	_onClose(conn, info) {
		if (conn === this._renewal) {
			/* The old connection goes on until its own end (4401/401 then
			 * takes the usual path). */
			this._renewal = null;
			this._log(`[${NAMES[conn.kind]}] renewal failed (${info.kind}${info.code ? ' ' + info.code : ''}); keeping the connection`);
			return;
		}
		if (conn === this._conn && this._renewal) {
			this._renewal.dead = true;
			this._renewal.impl.close();
			this._renewal = null;
		}
		if (conn.probe) {
			this._probe = null;
			this._log(`[Notifications] ${NAMES[conn.kind]} still unavailable (${info.kind}${info.code ? ' ' + info.code : ''})`);
			if (conn.level + 1 < this._level)
				this._probe = this._connect(conn.level + 1, true);
			else
				this._scheduleProbe();
			return;
		}
		if (conn !== this._conn || this._closed)
			return;
		this._conn = null;
		this._clearTimer('_stableTimer');
		this._clearTimer('_healthyTimer');
		this._clearTimer('_watchTimer');
		let kind = info.kind;
		if (kind === 'normal' && !conn.stable)
			kind = 'fail';
		const name = NAMES[conn.kind];
		this._log(`[${name}] closed: ${info.kind}${info.code ? ' ' + info.code : ''}${info.detail ? ' (' + info.detail + ')' : ''}`);
		switch (kind) {
		case 'auth':
			this._onUnauthorized(conn.kind);
			return;
		case 'disconnected':
			this._warn(`[Notifications] ${name}: disconnected by the server; stopping (call setToken() to resume)`);
			this._stopConnections();
			this._setState('unauthorized', null, { detail: 'disconnected' });
			return;
		case 'slow':
		case 'normal':
		case 'limit':
			this._retry(this._nextDelay(kind, info.retryAfter));
			return;
		case 'refused':
			this._fails = this.o.fallAfter;
			break;
		default:
			if (globalThis.navigator && navigator.onLine === false) {
				/* The network is down, not this transport: no fall.  The
				 * online event reconnects at once. */
				this._retry(this._nextDelay(kind, info.retryAfter));
				return;
			}
			this._fails++;
		}
		if (this._fails >= this.o.fallAfter && this._level + 1 < this.o.transports.length) {
			const to = this.o.transports[this._level + 1];
			const conn_was = conn.opened ? 'disconnected' : 'unavailable';
			this._log(`[Notifications] ${name} ${conn_was} - falling back to ${FALL_NAMES[to]}`);
			this._level++;
			this._fails = 0;
			this._attempt = 0;
			this._open();
			return;
		}
		this._retry(this._nextDelay(kind, info.retryAfter));
	}

	async _onUnauthorized(kind) {
		if (this._authRetried || typeof this.o.getToken !== 'function') {
			this._warn(`[Notifications] ${NAMES[kind]}: token refused; stopping (call setToken() to resume)`);
			this._stopConnections();
			this._setState('unauthorized', null);
			return;
		}
		this._authRetried = true;
		this._log(`[Notifications] ${NAMES[kind]}: token refused - asking getToken() for a new one`);
		this._setState('reconnecting', kind, { detail: 'token' });
		let t = null;
		try {
			t = await this.o.getToken();
		} catch (e) {
			this._warn('[Notifications] getToken failed:', e);
		}
		if (this._closed)
			return;
		if (!t && !this.o.cookie) {
			this._stopConnections();
			this._setState('unauthorized', null);
			return;
		}
		this._token = t;
		this._scheduleRefresh();
		this._retry(this._nextDelay('auth'));
	}

	/*
	 * Renewal ahead of expiry: getToken at refreshAt (80%) of the token's
	 * life, minus up to 5% of it at random so that the tabs of many users
	 * do not ask in the same second.  The life is exp - iat when the token
	 * has an iat (the issuer's clock on both: a skewed clock here does not
	 * matter), or what is left until exp by this clock; whichever is
	 * shorter.  A WebSocket sends the new token on the open connection
	 * (herald-ws moves its expiry: no reconnect, no replay); SSE reconnects
	 * with it from the cursor before the old stream is closed; polling
	 * sends it with the next request.  Without a readable exp (or with the
	 * cookie) herald-ws's "expiring" message, or the 4401/401, triggers it.
	 */
	_scheduleRefresh() {
		this._clearTimer('_refreshTimer');
		if (this._closed || this._role === 'follower' || this.o.cookie || !(this.o.refreshAt > 0) ||
			typeof this.o.getToken !== 'function' || !this._token)
			return;
		const t = tokenTimes(this._token);
		if (!t)
			return;
		const life = t.iat > 0 && t.exp > t.iat ? (t.exp - t.iat) * 1000 : 0;
		const left = t.exp * 1000 - Date.now();
		const base = life > 0 && left > 0 ? Math.min(life, left) : life || left;
		if (!(base > 0))
			return;
		const f = Math.min(this.o.refreshAt, 0.95);
		const delay = Math.max(1000, Math.floor(base * (f - 0.05 * Math.random())));
		this._refreshTimer = setTimeout(() => {
			this._refreshTimer = null;
			this._refreshToken('ahead of expiry');
		}, delay);
	}

	async _refreshToken(why) {
		this._clearTimer('_refreshTimer');
		if (this._refreshing || this._closed || this._role === 'follower' || typeof this.o.getToken !== 'function')
			return;
		this._refreshing = true;
		const old = this._token;
		let t = null;
		try {
			t = await this.o.getToken();
		} catch (e) {
			this._warn('[Notifications] getToken failed:', e);
		}
		this._refreshing = false;
		if (this._closed || this._role === 'follower')
			return;
		if (!t) {
			this._warn('[Notifications] getToken gave no token ahead of expiry; the server will close at expiry');
			return;
		}
		this._refreshedAt = Date.now();
		if (!this.o.cookie)
			this._token = t;
		this._log(`[Notifications] new token (${why})`);
		const c = this._conn;
		if (c && c.opened && !c.dead) {
			if (c.kind === 'ws' && !this.o.cookie && c.impl.refresh && c.impl.refresh(t))
				this._log('[WebSocket] refreshing the token on the open connection');
			else if (c.kind !== 'poll')
				this._renew(c);
		}
		/* The same token again (an app that caches it): the server's warning
		 * or its 4401 asks next time, not a timer every second. */
		if (t !== old)
			this._scheduleRefresh();
	}

	/* herald-ws: the connection ends in `seconds` unless refreshed. */
	_onExpiring(seconds) {
		this._log(`[Notifications] the server says the token expires in ${seconds} s`);
		if (Date.now() - this._refreshedAt < 5000)
			return; /* our refresh crossed the warning */
		this._refreshToken('the server warned');
	}

	/* Make before break: a connection on the same rung with the new token,
	 * from the cursor; it replaces c once open (_onOpen). */
	_renew(c) {
		if (this._renewal || c !== this._conn || this._closed)
			return;
		this._log(`[${NAMES[c.kind]}] reconnecting with the new token before the old one expires`);
		const conn = this._connect(c.level, false);
		conn.renews = c;
		this._renewal = conn;
	}

	_retry(delay) {
		this._clearTimer('_retryTimer');
		if (delay <= 0) {
			this._log('[Notifications] reconnecting now');
			this._open();
			return;
		}
		this._setState('reconnecting', this.o.transports[this._level], { delay });
		this._log(`[Notifications] reconnecting in ${delay} ms`);
		this._retryTimer = setTimeout(() => {
			this._retryTimer = null;
			this._open();
		}, delay);
	}

	_scheduleProbe() {
		this._clearTimer('_probeTimer');
		if (this._level === 0 || this._closed || this._probe)
			return;
		const d = Math.floor(this.o.probeInterval * (0.75 + Math.random() / 2));
		this._probeTimer = setTimeout(() => {
			this._probeTimer = null;
			if (this._closed || this._level === 0 || !this._conn || this._probe)
				return;
			this._log(`[Notifications] trying ${NAMES[this.o.transports[0]]} again`);
			this._probe = this._connect(0, true);
		}, d);
	}

	_stopConnections() {
		for (const t of ['_retryTimer', '_probeTimer', '_stableTimer', '_healthyTimer', '_watchTimer'])
			this._clearTimer(t);
		for (const c of [this._conn, this._probe, this._renewal])
			if (c) {
				c.dead = true;
				c.impl.close();
			}
		this._conn = this._probe = this._renewal = null;
	}

	_clearTimer(name) {
		if (this[name]) {
			clearTimeout(this[name]);
			this[name] = null;
		}
	}

	/* --- delivery --- */

	_deliver(env) {
		if (!env || typeof env !== 'object')
			return;
		const id = env.id;
		if (typeof id === 'string' && ID_RE.test(id)) {
			if (this._cursor && cmpId(id, this._cursor) <= 0)
				return; /* seen: a replay after a resume or a hand-off */
			this._cursor = id;
			if (this._role !== 'follower')
				this._storeCursor();
		}
		if (this._role === 'leader')
			this._post({ t: 'n', env });
		if (typeof this.o.onNotification === 'function') {
			try {
				this.o.onNotification(env);
			} catch (e) {
				this._warn('[Notifications] onNotification threw:', e);
			}
		}
	}

	/* Move the cursor forward without delivering (where the history ends). */
	_advance(id) {
		if (typeof id === 'string' && ID_RE.test(id) && newer(id, this._cursor) === id) {
			this._cursor = id;
			this._storeCursor();
		}
	}

	_callReset() {
		this._log('[Notifications] the history was cut: the app should refetch');
		if (this._role === 'leader')
			this._post({ t: 'r' });
		if (typeof this.o.onReset === 'function') {
			try {
				this.o.onReset();
			} catch (e) {
				this._warn('[Notifications] onReset threw:', e);
			}
		}
	}

	_storedCursor() {
		if (!this.o.storage || !this._key)
			return null;
		const v = storageGet(`${this._key}:cursor`);
		return v && ID_RE.test(v) ? v : null;
	}

	_storeCursor() {
		if (this.o.storage && this._key && this._cursor)
			storageSet(`${this._key}:cursor`, this._cursor);
	}

	/* --- helpers --- */

	_setState(state, transport, info) {
		const same = state === this._state && transport === this._transport;
		this._state = state;
		this._transport = transport;
		this._info = info || null;
		if (this._role === 'leader' && !this._closed)
			this._post({ t: 's', state, transport, info: this._info });
		if (same && !(info && info.delay !== undefined))
			return;
		if (typeof this.o.onState === 'function') {
			try {
				this.o.onState(Object.assign({ state, transport, role: this._role }, info || {}));
			} catch (e) {
				this._warn('[Notifications] onState threw:', e);
			}
		}
	}

	/* URL of one endpoint; query values that are null are left out.  The
	 * token goes in it unless header (it goes in Authorization), a ticket
	 * stands for it, or the cookie authenticates. */
	_url(kind, query, header, ticket) {
		const u = kind === 'ws' && this.o.wsUrl
			? new URL(this.o.wsUrl, this._baseUrl)
			: new URL(this.o.paths[kind], this._baseUrl);
		if (ticket)
			u.searchParams.set('ticket', ticket);
		else if (this._token && !this.o.cookie && !header)
			u.searchParams.set('token', this._token);
		for (const [k, v] of Object.entries(query || {}))
			if (v != null)
				u.searchParams.set(k, String(v));
		return u;
	}

	_fetchInit(signal, header, auth = header) {
		const headers = { Accept: header ? 'application/json' : 'text/event-stream' };
		if (auth && this._token && !this.o.cookie)
			headers.Authorization = `Bearer ${this._token}`;
		return {
			headers,
			signal,
			cache: 'no-store',
			credentials: this.o.cookie ? 'include' : 'same-origin',
		};
	}

	_logger() {
		return this.o.logger || console;
	}

	_log(...args) {
		if (this.o.debug)
			this._logger().log(...args);
	}

	_warn(...args) {
		if (this.o.debug)
			(this._logger().warn || this._logger().log).apply(this._logger(), args);
	}
}

/*
 * Start a client.  Returns its handle: close(), setToken(token), reconnect(),
 * and the read-only state, transport, role and cursor.  See docs/client.md.
 */
export function connect(options) {
	return new Client(options);
}

export const Herald = { connect, version: VERSION };
export default Herald;
