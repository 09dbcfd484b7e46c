/*
 * The demo page: herald.js as an app would use it.  Settings come from the
 * URL fragment (never sent to a server):
 *   #token=JWT&publish_key=KEY            what scripts/dev.sh run prints
 *   &debug=0                              no ladder lines on the console
 *   &transports=sse,poll                  another ladder
 *   &ws_url=ws://127.0.0.1:8001/api/v1/ws/notifications   the WebSocket elsewhere
 *                                         (the stream flavour: herald.js's wsUrl)
 *   &poll_interval=MS&long_poll=S&probe_interval=MS&backoff=MS&stable_after=MS
 * The list of received notifications is kept in sessionStorage, so it
 * survives a reload of this tab: each notification shows once.  The list
 * shows the newest LIST_MAX; the count is all this tab received.  herald.js
 * keeps the cursor in localStorage, so a page opened again (a reload, a new
 * tab, the next visit) resumes where the last one stopped and receives what
 * was published meanwhile.
 *
 * Each notification is also dispatched on window as a CustomEvent
 * 'herald-demo:notification' (detail: the envelope), and a reset as
 * 'herald-demo:reset': a hook for scripts and tests that want every
 * notification, beyond the newest LIST_MAX the page shows.
 */
import Herald from '/herald.js';

const $ = (id) => document.getElementById(id);
const frag = new URLSearchParams(location.hash.slice(1));
const token = frag.get('token') || '';
const publishKey = frag.get('publish_key') || '';
const LIST_KEY = 'herald-demo:list';
const TOTAL_KEY = 'herald-demo:total';
const LIST_MAX = 200; /* rows shown and kept: the page stays quick with a backlog of thousands */

function num(name) {
	const v = parseInt(frag.get(name) || '', 10);
	return Number.isFinite(v) && v >= 0 ? v : undefined;
}

function subject(jwt) {
	try {
		const p = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
		return String(JSON.parse(atob(p + '==='.slice((p.length + 3) % 4))).sub);
	} catch (e) {
		return '';
	}
}

function clock(ms) {
	return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/* --- the log panel: what the client says with debug on --- */

function logLine(level, args) {
	const text = args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? a.message : JSON.stringify(a))).join(' ');
	const li = document.createElement('li');
	const t = document.createElement('span');
	t.className = 't';
	t.textContent = clock(Date.now());
	li.append(t, text);
	const log = $('log');
	log.prepend(li);
	while (log.children.length > 60)
		log.lastChild.remove();
	(level === 'warn' ? console.warn : console.log)(...args);
}

const logger = {
	log: (...a) => logLine('log', a),
	warn: (...a) => logLine('warn', a),
};

/* --- the list --- */

let items = [];
let total = 0; /* notifications received in this tab, shown or not */
try {
	items = JSON.parse(sessionStorage.getItem(LIST_KEY) || '[]');
	total = parseInt(sessionStorage.getItem(TOTAL_KEY) || '', 10) || items.filter((i) => !i.reset).length;
} catch (e) {
	items = [];
}

/* At each notification, so that a reload shows each one once: herald.js
 * stores its cursor at each one too. */
function save() {
	try {
		sessionStorage.setItem(LIST_KEY, JSON.stringify(items.slice(-LIST_MAX)));
		sessionStorage.setItem(TOTAL_KEY, String(total));
	} catch (e) {
		/* the list then lives until the next reload */
	}
}

function render(item) {
	const li = document.createElement('li');
	if (item.reset) {
		li.className = 'reset';
		li.textContent = `${clock(item.at)}  history was cut: an app would refetch here`;
		return li;
	}
	const env = item.env;
	const data = env.data;
	li.dataset.id = env.id == null ? '' : env.id;
	const time = document.createElement('span');
	time.className = 'time';
	time.textContent = clock(env.ts || item.at);
	const title = document.createElement('span');
	title.className = 'title';
	title.textContent = data && typeof data === 'object' && data.title ? data.title : JSON.stringify(data);
	const meta = document.createElement('span');
	meta.className = 'meta';
	const via = document.createElement('span');
	via.className = 'via';
	via.textContent = item.via || '?';
	const rest = data && typeof data === 'object' ? Object.assign({}, data) : null;
	if (rest)
		delete rest.title;
	meta.append(via, `id ${env.id}` + (rest && Object.keys(rest).length ? `  ${JSON.stringify(rest)}` : ''));
	li.append(time, title, meta);
	return li;
}

function add(item) {
	if (!item.reset)
		total++;
	items.push(item);
	if (items.length > LIST_MAX)
		items.shift();
	save();
	$('list').prepend(render(item));
	const list = $('list');
	while (list.children.length > LIST_MAX)
		list.lastChild.remove();
	count();
}

function count() {
	const shown = items.filter((i) => !i.reset).length;
	$('count').textContent = String(total);
	$('count').title = shown < total ? `the newest ${shown} shown` : '';
	$('empty').hidden = items.length > 0;
}

for (const item of items)
	$('list').prepend(render(item));
count();

$('clear').addEventListener('click', () => {
	items = [];
	total = 0;
	save();
	$('list').replaceChildren();
	count();
});

/* --- status --- */

function showState(s) {
	document.body.dataset.state = s.state;
	document.body.dataset.transport = s.transport || '';
	document.body.dataset.role = s.role || '';
	$('state').textContent = s.state + (s.state === 'reconnecting' && s.delay !== undefined ? ` (${(s.delay / 1000).toFixed(1)} s)` : '');
	$('transport').textContent = { ws: 'WebSocket', sse: 'SSE', poll: 'polling' }[s.transport] || 'no transport';
	$('role').textContent = { leader: 'leader tab', follower: 'follower tab', solo: 'single tab' }[s.role] || '';
	$('cursor').textContent = client && client.cursor ? client.cursor : 'none';
}

/* --- the client --- */

let client = null;
const user = subject(token);
$('user').textContent = user || '?';

if (!token) {
	$('missing').hidden = false;
	$('send').disabled = true;
	document.body.dataset.state = 'idle';
} else {
	const opts = {
		token,
		debug: frag.get('debug') !== '0',
		logger,
		onNotification(env) {
			add({ env, via: client ? client.transport : null, at: Date.now() });
			$('cursor').textContent = client.cursor || 'none';
			dispatchEvent(new CustomEvent('herald-demo:notification', { detail: env }));
		},
		onReset() {
			add({ reset: true, at: Date.now() });
			dispatchEvent(new CustomEvent('herald-demo:reset'));
		},
		onState: showState,
	};
	if (frag.get('transports'))
		opts.transports = frag.get('transports').split(',');
	if (frag.get('ws_url'))
		opts.wsUrl = frag.get('ws_url');
	if (frag.get('tickets') === '0')
		opts.tickets = false;
	const map = {
		poll_interval: 'pollInterval',
		long_poll: 'longPoll',
		probe_interval: 'probeInterval',
		backoff: 'backoffBase',
		stable_after: 'stableAfter',
	};
	for (const [k, o] of Object.entries(map))
		if (num(k) !== undefined)
			opts[o] = num(k);
	client = Herald.connect(opts);
	window.herald = client; /* for the console */
}

/* --- publishing --- */

if (!publishKey) {
	$('send').disabled = true;
	$('pubresult').textContent = 'no publish_key in the URL fragment';
}

$('pubform').addEventListener('submit', async (e) => {
	e.preventDefault();
	const payload = { title: $('title').value };
	if ($('body').value)
		payload.body = $('body').value;
	$('send').disabled = true;
	$('pubresult').textContent = 'sending...';
	$('pubresult').className = '';
	try {
		const res = await fetch(`/api/v1/notifications/publish?user=${encodeURIComponent(user)}`, {
			method: 'POST',
			headers: { Authorization: `Bearer ${publishKey}`, 'Content-Type': 'application/json' },
			body: JSON.stringify(payload),
			cache: 'no-store',
		});
		const body = await res.json().catch(() => ({}));
		$('pubresult').textContent = res.ok ? `published ${body.id}` : `HTTP ${res.status} ${body.error || ''}`;
		$('pubresult').className = res.ok ? 'ok' : 'bad';
	} catch (err) {
		$('pubresult').textContent = `failed: ${err.message}`;
		$('pubresult').className = 'bad';
	}
	$('send').disabled = false;
});
