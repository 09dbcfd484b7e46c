// The browser checks of issue 5, in headless Chromium through playwright-core.
// Run by tests/browser/browser.sh, which owns the servers: a line
// "CTL REQUEST" on stdout asks it for something, the answer is the next line
// on stdin.  TAP on stdout.  No timed assertions: every wait is for a
// condition, with a generous bound.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { writeFileSync, appendFileSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.HERALD_PW_DIR, 'noop.js'));
const { chromium } = require('playwright-core');

const ART = process.env.HERALD_ART;
const PUBLISH_KEY = process.env.HERALD_PUBLISH_KEY;
const USER = '42';
const LIMIT_MS = 160000; // the whole run
const WAIT = 20000; // one condition

// --- TAP and the control channel ---------------------------------------------

const PLAN = 16; // the seven tests of issue 5, some in several checks, and the classic loader
let n = 0;
let failed = 0;
function ok(cond, desc, ...diag) {
	n++;
	console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${desc}`);
	if (!cond) {
		failed++;
		for (const d of diag)
			console.log(`# ${String(d).replace(/\n/g, '\n# ')}`);
	}
	return cond;
}

const replies = [];
const waiting = [];
createInterface({ input: process.stdin }).on('line', (l) => {
	const w = waiting.shift();
	if (w)
		w(l);
	else
		replies.push(l);
});
function ctl(req) {
	console.log(`CTL ${req}`);
	return new Promise((resolve) => {
		if (replies.length)
			resolve(replies.shift());
		else
			waiting.push(resolve);
	});
}

async function stack(flavour) {
	const r = await ctl(`stack ${flavour}`);
	if (!r.startsWith('ok '))
		throw new Error(`stack ${flavour}: ${r}`);
	return r.slice(3);
}

async function publish(title) {
	const id = await ctl(`publish ${USER} {"title":"${title}"}`);
	if (!/^\d+-\d+$/.test(id))
		throw new Error(`herald-publish: ${id}`);
	return id;
}

// --- pages ---------------------------------------------------------------------

let browser;

async function newPage(ctx, name) {
	const page = await ctx.newPage();
	const file = path.join(ART, `console-${name}.log`);
	writeFileSync(file, '');
	page.lines = [];
	page.sockets = [];
	page.on('console', (m) => {
		page.lines.push(m.text());
		appendFileSync(file, `[${m.type()}] ${m.text()}\n`);
	});
	page.on('pageerror', (e) => appendFileSync(file, `[pageerror] ${e.message}\n`));
	page.on('websocket', (ws) => page.sockets.push(ws.url()));
	return page;
}

function demoUrl(base, token, extra = '') {
	return `${base}/#token=${token}&publish_key=${PUBLISH_KEY}${extra}`;
}

function waitState(page, state, transport, timeout = WAIT) {
	return page
		.waitForFunction(
			([s, t]) => document.body.dataset.state === s && (!t || document.body.dataset.transport === t),
			[state, transport],
			{ timeout },
		)
		.then(
			() => true,
			() => false,
		);
}

function waitIds(page, ids, timeout = WAIT) {
	return page
		.waitForFunction((want) => want.every((id) => document.querySelector(`#list li[data-id="${id}"]`)), ids, {
			timeout,
		})
		.then(
			() => true,
			() => false,
		);
}

// The ids the list shows, oldest first.
async function shownIds(page) {
	const ids = await page.$$eval('#list li[data-id]', (els) => els.map((e) => e.dataset.id));
	return ids.reverse();
}

async function bodyData(page) {
	return page.evaluate(() => JSON.stringify(document.body.dataset));
}

function sameList(got, want) {
	return got.length === want.length && got.every((v, i) => v === want[i]);
}

// --- the tests -----------------------------------------------------------------

async function test1() {
	const base = await stack('full');
	const token = await ctl(`token ${USER} 3600`);

	// herald.js as the shipped config serves it: an ES module that revalidates.
	const r1 = await fetch(`${base}/herald.js`);
	const etag = r1.headers.get('etag');
	const r2 = await fetch(`${base}/herald.js`, { headers: { 'If-None-Match': etag || '' } });
	ok(
		r1.status === 200 && /^text\/javascript/.test(r1.headers.get('content-type')) &&
			/no-cache/.test(r1.headers.get('cache-control')) && etag && r1.headers.get('last-modified') &&
			r2.status === 304,
		'/herald.js: text/javascript, Cache-Control no-cache, ETag and Last-Modified, 304 on revalidation',
		`${r1.status} ${r1.headers.get('content-type')} ${r1.headers.get('cache-control')} ${etag} -> ${r2.status}`,
	);

	const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
	const page = await newPage(ctx, 't1');
	await page.goto(demoUrl(base, token));
	const up = await waitState(page, 'connected', 'ws');
	const id = await publish('Hello from herald-publish');
	const got = up && (await waitIds(page, [id]));
	const lines = page.lines.join('\n');
	ok(
		got && lines.includes('[WebSocket] Connecting to:') && lines.includes('[WebSocket] Connected successfully') &&
			!lines.includes(token) && page.sockets.length === 1,
		'1. full config: WebSocket, and a notification from herald-publish shows on the demo page',
		await bodyData(page),
		lines,
	);

	// The page's own form publishes through the internal endpoint.
	await page.fill('#title', 'Published from the demo form');
	await page.click('#send');
	const res = await page
		.waitForFunction(() => /^published \d+-\d+$/.test(document.getElementById('pubresult').textContent), null, {
			timeout: WAIT,
		})
		.then(
			() => page.textContent('#pubresult'),
			() => page.textContent('#pubresult'),
		);
	const formId = (res.match(/\d+-\d+/) || [''])[0];
	const shown = formId && (await waitIds(page, [formId]));
	ok(shown, 'the demo form publishes and the notification shows', res);
	await page.screenshot({ path: path.join(ART, 'demo.png') });
	await ctx.close();
}

async function test2() {
	const base = await stack('legacy');
	const token = await ctl(`token ${USER} 3600`);
	const ctx = await browser.newContext();
	const page = await newPage(ctx, 't2');
	await page.goto(demoUrl(base, token, '&backoff=200'));
	const up = await waitState(page, 'connected', 'sse');
	const id = up ? await publish('Over SSE') : null;
	const got = up && (await waitIds(page, [id]));
	ok(
		got && page.lines.join('\n').includes('falling back to SSE'),
		'2. legacy config (no WebSocket location): the client ends up on SSE and receives',
		await bodyData(page),
		page.lines.join('\n'),
	);
	await ctx.close();
}

async function test3() {
	const base = await stack('nosse');
	const token = await ctl(`token ${USER} 3600`);
	const ctx = await browser.newContext();
	const page = await newPage(ctx, 't3');
	const polls = [];
	page.on('request', (r) => {
		if (r.url().includes('/notifications/poll'))
			polls.push({ url: r.url(), auth: r.headers().authorization || '' });
	});
	await page.goto(demoUrl(base, token, '&backoff=200&long_poll=0&poll_interval=1500'));
	const up = await waitState(page, 'connected', 'poll');
	const id = up ? await publish('Polled') : null;
	const got = up && (await waitIds(page, [id]));
	ok(
		got && page.lines.join('\n').includes('falling back to polling') &&
			polls.every((p) => !p.url.includes('token=') && p.auth === `Bearer ${token}`),
		'3. SSE refused too: the client polls (token in Authorization, not the URL) and receives',
		await bodyData(page),
		JSON.stringify(polls.slice(0, 3)),
		page.lines.join('\n'),
	);

	await ctx.close();

	// Long-poll (another browser profile: a second tab would follow the first).
	const ctx2 = await browser.newContext();
	const page2 = await newPage(ctx2, 't3-long');
	const held = [];
	page2.on('requestfinished', (r) => {
		if (r.url().includes('wait=20'))
			held.push(r.url());
	});
	await page2.goto(demoUrl(base, token, '&backoff=200&long_poll=20&poll_interval=60000&transports=poll'));
	const up2 = await waitState(page2, 'connected', 'poll');
	const id2 = up2 ? await publish('Long-polled') : null;
	const got2 = up2 && (await waitIds(page2, [id2], 15000));
	ok(
		got2 && held.length >= 1,
		'3b. long-poll (wait=20, poll interval 60 s): the held poll answers with the notification',
		await bodyData(page2),
		page2.lines.join('\n'),
	);
	await ctx2.close();
}

async function test4() {
	const base = await stack('full');
	const token = await ctl(`token ${USER} 3600`);
	const ctx = await browser.newContext();
	const page = await newPage(ctx, 't4');
	await page.goto(demoUrl(base, token, '&backoff=200&probe_interval=1500&stable_after=500'));
	const ids = [];
	let up = await waitState(page, 'connected', 'ws');
	ids.push(await publish('before 1'), await publish('before 2'));
	let seen = up && (await waitIds(page, ids));
	const stopped = await ctl('ws-stop');
	ids.push(await publish('while falling'));
	const onSse = seen && stopped === 'ok' && (await waitState(page, 'connected', 'sse'));
	ids.push(await publish('on SSE'));
	seen = onSse && (await waitIds(page, ids));
	const started = await ctl('ws-start');
	const back = seen && started === 'ok' && (await waitState(page, 'connected', 'ws', 30000));
	ids.push(await publish('back on WebSocket'));
	seen = back && (await waitIds(page, ids));
	const shown = await shownIds(page);
	const lines = page.lines.join('\n');
	ok(
		seen && sameList(shown, ids) && lines.includes('falling back to SSE') && lines.includes('WebSocket works again'),
		'4. herald-ws stopped: falls to SSE, nothing lost; started again: climbs back to WebSocket',
		`onSse=${onSse} back=${back}`,
		`want ${ids.join(' ')}`,
		`got  ${shown.join(' ')}`,
		lines,
	);
	await ctx.close();
}

async function test5() {
	const base = await stack('full');
	const token = await ctl(`token ${USER} 3600`);
	const ctx = await browser.newContext();
	const page = await newPage(ctx, 't5');
	const url = demoUrl(base, token, '&backoff=200');
	await page.goto(url);
	let up = await waitState(page, 'connected', 'ws');
	await ctl(`series ${USER} 40 0.05`);
	for (let i = 0; i < 4 && up; i++) {
		await page.reload();
		up = await waitState(page, 'connected', 'ws');
	}
	const ids = (await ctl('series-wait')).split(' ').filter(Boolean);
	const seen = up && ids.length === 40 && (await waitIds(page, ids));
	const shown = await shownIds(page);
	const dups = shown.filter((v, i) => shown.indexOf(v) !== i);
	ok(
		seen && sameList(shown, ids),
		'5. reloads while 40 notifications are published: each shows exactly once, in order',
		`up=${up} published=${ids.length} shown=${shown.length} duplicates=${dups.join(' ')}`,
		`want ${ids.join(' ')}`,
		`got  ${shown.join(' ')}`,
	);
	await ctx.close();
}

async function wsConnections(want) {
	let got = '';
	for (let i = 0; i < 100; i++) {
		got = await ctl('ws-conns');
		if (got === String(want))
			return true;
		await new Promise((r) => setTimeout(r, 100));
	}
	return got;
}

async function test6() {
	const base = await stack('full');
	const token = await ctl(`token ${USER} 3600`);
	const ctx = await browser.newContext();
	const a = await newPage(ctx, 't6-a');
	await a.goto(demoUrl(base, token, '&backoff=200'));
	const upA = await waitState(a, 'connected', 'ws');
	const b = await newPage(ctx, 't6-b');
	await b.goto(demoUrl(base, token, '&backoff=200'));
	const upB = await waitState(b, 'connected', 'ws');
	const roles = [await a.getAttribute('body', 'data-role'), await b.getAttribute('body', 'data-role')];
	const ids = [await publish('two tabs 1'), await publish('two tabs 2')];
	const gotA = upA && (await waitIds(a, ids));
	const gotB = upB && (await waitIds(b, ids));
	const one = await wsConnections(1);
	ok(
		gotA && gotB && one === true && a.sockets.length + b.sockets.length === 1 &&
			roles[0] === 'leader' && roles[1] === 'follower',
		'6. two tabs: one server connection, both tabs show every notification',
		`roles=${roles} sockets a=${a.sockets.length} b=${b.sockets.length} herald_ws_connections=${one}`,
	);

	// The leader tab closes: the other takes over and misses nothing.
	await a.close();
	ids.push(await publish('after hand-off'));
	const lead = await b
		.waitForFunction(() => document.body.dataset.role === 'leader', null, { timeout: WAIT })
		.then(
			() => true,
			() => false,
		);
	const upB2 = lead && (await waitState(b, 'connected', 'ws'));
	const gotB2 = upB2 && (await waitIds(b, ids));
	const shown = await shownIds(b);
	ok(
		gotB2 && sameList(shown, ids) && b.sockets.length === 1,
		'6b. the leader tab closes: the other tab takes the connection over, nothing lost or doubled',
		`lead=${lead} up=${upB2} sockets=${b.sockets.length}`,
		`want ${ids.join(' ')}`,
		`got  ${shown.join(' ')}`,
	);
	await ctx.close();
}

// Herald.connect straight from a page's script, with getToken.
async function runClient(page, opts) {
	return page.evaluate(async (o) => {
		const { default: Herald } = await import('/herald.js');
		const r = { calls: 0, states: [], got: [] };
		window.runs = window.runs || [];
		window.runs.push(r);
		const tokens = o.refresh;
		Herald.connect({
			token: o.token,
			cookie: !!o.cookie,
			getToken: async () => tokens[Math.min(r.calls++, tokens.length - 1)],
			transports: o.transports,
			share: false,
			storageKey: o.key,
			backoffBase: 200,
			debug: true,
			onNotification: (e) => r.got.push(e.id),
			onState: (s) => r.states.push(`${s.state}:${s.transport || ''}`),
		});
		return window.runs.length - 1;
	}, opts);
}

function waitRun(page, i, cond, arg, timeout = WAIT) {
	return page
		.waitForFunction(
			([j, c, x]) => new Function('r', 'x', `return ${c}`)(window.runs[j], x),
			[i, cond, arg],
			{ timeout },
		)
		.then(
			() => true,
			() => false,
		);
}

async function run(page, i) {
	return page.evaluate((j) => window.runs[j], i);
}

async function test7() {
	const base = await stack('full');
	const expired = await ctl(`token ${USER} -120`);
	const fresh = await ctl(`token ${USER} 3600`);
	const bad = await ctl(`badtoken ${USER}`);
	const ctx = await browser.newContext();
	const page = await newPage(ctx, 't7');
	await page.goto(`${base}/#`);

	// Expired, and getToken has a good one: one call, then connected.
	let i = await runClient(page, { token: expired, refresh: [fresh], key: 't7a' });
	let up = await waitRun(page, i, "r.states.includes('connected:ws')");
	let id = up ? await publish('after a token refresh') : '';
	let got = up && (await waitRun(page, i, 'r.got.includes(x)', id));
	let r = await run(page, i);
	ok(got && r.calls === 1, '7. expired token, getToken gives a fresh one: reconnects (one call)', JSON.stringify(r));

	// Expired, and getToken gives a bad one: stops, says so, retries nothing.
	const before = page.sockets.length;
	i = await runClient(page, { token: expired, refresh: [bad, fresh], key: 't7b' });
	const stopped = await waitRun(page, i, "r.states.includes('unauthorized:')");
	const attempts = page.sockets.length - before;
	// An observation window: a client in a retry loop would open more.
	await page.waitForTimeout(3000);
	r = await run(page, i);
	ok(
		stopped && r.calls === 1 && attempts === 2 && page.sockets.length - before === 2 &&
			r.states[r.states.length - 1] === 'unauthorized:',
		'7b. expired token, getToken gives a bad one: state unauthorized, one getToken call, two attempts, no more',
		`attempts=${attempts} then ${page.sockets.length - before}`,
		JSON.stringify(r),
	);

	// The same over polling (401 instead of 4401).
	i = await runClient(page, { token: expired, refresh: [fresh], key: 't7c', transports: ['poll'] });
	up = await waitRun(page, i, "r.states.includes('connected:poll')");
	r = await run(page, i);
	ok(up && r.calls === 1, '7c. polling: 401, one getToken call, then connected', JSON.stringify(r));

	// The herald_token cookie instead: no token in any URL.
	await ctx.addCookies([{ name: 'herald_token', value: fresh, url: base }]);
	const from = page.sockets.length;
	i = await runClient(page, { token: null, cookie: true, refresh: [], key: 't7d' });
	up = await waitRun(page, i, "r.states.includes('connected:ws')");
	id = up ? await publish('with the cookie') : '';
	got = up && (await waitRun(page, i, 'r.got.includes(x)', id));
	const urls = page.sockets.slice(from);
	ok(
		got && urls.length === 1 && !urls[0].includes('token='),
		'7d. cookie: true: the herald_token cookie authenticates the WebSocket, no token in the URL',
		urls.join(' '),
		JSON.stringify(await run(page, i)),
	);
	await ctx.close();
}

// herald.classic.js from a classic <script> tag: window.Herald at once, the
// client once the module is in, notifications delivered.
async function test8() {
	const base = await stack('full');
	const token = await ctl(`token ${USER} 3600`);
	const res = await fetch(`${base}/herald.classic.js`);
	const ctx = await browser.newContext();
	const page = await newPage(ctx, 't8');
	await page.goto(`${base}/#`);
	await page.evaluate(() => {
		delete window.Herald;
	});
	await page.addScriptTag({ url: '/herald.classic.js' });
	const sync = await page.evaluate((t) => {
		const r = { states: [], got: [] };
		window.classic = r;
		const h = Herald.connect({
			token: t,
			share: false,
			storageKey: 't8',
			onNotification: (e) => r.got.push(e.id),
			onState: (s) => r.states.push(`${s.state}:${s.transport || ''}`),
		});
		window.classicHandle = h;
		return `${typeof Herald.connect} ${typeof h.close} ${h.state}`;
	}, token);
	const up = await page
		.waitForFunction(() => window.classic.states.includes('connected:ws'), null, { timeout: WAIT })
		.then(
			() => true,
			() => false,
		);
	const id = up ? await publish('classic script') : '';
	const got =
		up &&
		(await page
			.waitForFunction((x) => window.classic.got.includes(x), id, { timeout: WAIT })
			.then(
				() => true,
				() => false,
			));
	const after = await page.evaluate(() => `${classicHandle.state} ${classicHandle.transport}`);
	ok(
		res.status === 200 && /^text\/javascript/.test(res.headers.get('content-type')) &&
			sync === 'function function idle' && got && after === 'connected ws',
		'8. herald.classic.js from a classic <script>: window.Herald at once (state idle), then WebSocket, receives',
		`${res.status} ${res.headers.get('content-type')} sync="${sync}" after="${after}"`,
		JSON.stringify(await page.evaluate(() => window.classic)),
	);

	// herald.js cannot be loaded (404 here): the page is told, the handle is closed.
	const page2 = await newPage(ctx, 't8b');
	await page2.route('**/herald.js', (route) => route.fulfill({ status: 404, body: 'not found' }));
	await page2.goto(`${base}/herald.classic.js`); // an origin page that does not import herald.js
	await page2.addScriptTag({ url: '/herald.classic.js' });
	const failed = await page2.evaluate(
		(t) =>
			new Promise((resolve) => {
				const seen = [];
				const h = Herald.connect({
					token: t,
					share: false,
					onState: (s) => {
						seen.push(s);
						resolve({ seen, state: h.state });
					},
				});
				setTimeout(() => resolve({ seen, state: h.state }), 10000);
			}),
		token,
	);
	ok(
		failed.seen.length === 1 && failed.seen[0].state === 'closed' && failed.seen[0].detail === 'load' &&
			failed.state === 'closed' && page2.lines.some((l) => l.includes('cannot load')),
		'8b. herald.js not reachable: onState {state: closed, detail: load}, the handle closed, a console line',
		JSON.stringify(failed),
		page2.lines.join('\n'),
	);
	await ctx.close();
}

// --- main ------------------------------------------------------------------------

const timer = setTimeout(() => {
	console.log(`Bail out! the browser tests took over ${LIMIT_MS / 1000} s`);
	process.exit(1);
}, LIMIT_MS);

console.log(`1..${PLAN}`);
try {
	browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		headless: true,
		args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
	});
	for (const t of [test1, test2, test3, test4, test5, test6, test7, test8]) {
		try {
			await t();
		} catch (e) {
			ok(false, `${t.name} threw`, e.stack || e);
		}
	}
} catch (e) {
	console.log(`Bail out! ${String(e.message || e).split('\n')[0]}`);
	console.error(e);
	process.exitCode = 1;
}
if (browser)
	await browser.close();
clearTimeout(timer);
if (n !== PLAN && !process.exitCode)
	console.log(`# ran ${n} checks, planned ${PLAN}`);
process.exit(failed || n !== PLAN ? 1 : 0);
