/*
 * herald.classic.js: herald.js for pages that use classic <script> tags
 * (no <script type="module">, no bundler).
 *
 *   <script src="/herald.classic.js"></script>
 *   <script>
 *     var herald = Herald.connect({
 *       getToken: function () { return fetch('/api/me/herald-token').then(function (r) { return r.text(); }); },
 *       onNotification: function (env) { showToast(env.data); }
 *     });
 *   </script>
 *
 * It sets window.Herald at once and loads the module (herald.js, from where
 * this file came) with import(): connect() returns a handle right away and
 * starts the client when the module is in.  The handle is the module's:
 * close(), setToken(token), reconnect(), and state ('idle' until the module
 * has loaded), transport, role, cursor.  Herald.ready is a promise of the
 * module's Herald.  This file holds no client logic; docs/client.md
 * describes the options.
 */
(function (global) {
	'use strict';

	var me = document.currentScript;
	var url = me && me.src ? me.src.replace(/herald\.classic\.js(?=[?#]|$)/, 'herald.js') : '/herald.js';
	var ready = import(url).then(function (m) {
		return m.default;
	});

	function connect(options) {
		var client = null;
		var closed = false;
		var token;
		var handle = {
			close: function () {
				closed = true;
				if (client)
					client.close();
			},
			setToken: function (t) {
				if (client)
					client.setToken(t);
				else
					token = t;
			},
			reconnect: function () {
				if (client)
					client.reconnect();
			},
		};

		['state', 'transport', 'role', 'cursor'].forEach(function (k) {
			Object.defineProperty(handle, k, {
				enumerable: true,
				get: function () {
					if (client)
						return client[k];
					if (k === 'state')
						return closed ? 'closed' : 'idle';
					return null;
				},
			});
		});
		ready.then(
			function (Herald) {
				if (closed)
					return;
				var o = Object.assign({}, options);
				if (token !== undefined)
					o.token = token;
				client = Herald.connect(o);
			},
			function (err) {
				console.error('[Notifications] cannot load ' + url + ': ' + err);
				closed = true;
				if (options && typeof options.onState === 'function')
					options.onState({ state: 'closed', transport: null, role: null, detail: 'load' });
			},
		);
		return handle;
	}

	global.Herald = { connect: connect, ready: ready };
})(window);
