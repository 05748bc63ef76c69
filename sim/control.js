'use strict';
// The HTTP JSON control API (routes in README.md).

const http = require('http');
const { log } = require('./log');
const { HttpError } = require('./errors');
const {
	state, resetState, CONFIG_KEYS, boundSessions,
} = require('./state');
const { sendRequest, writeRaw } = require('./server');
const { doMo, doReceipt } = require('./mo');
const { Burst } = require('./burst');

function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => {
			const text = Buffer.concat(chunks).toString('utf8').trim();
			if (!text) return resolve({});
			try {
				const v = JSON.parse(text);
				if (v === null || typeof v !== 'object' || Array.isArray(v)) {
					return reject(new HttpError(400, 'JSON body must be an object'));
				}
				resolve(v);
			} catch (e) {
				reject(new HttpError(400, 'invalid JSON: ' + e.message));
			}
		});
		req.on('error', reject);
	});
}

function stateView() {
	return {
		binds: boundSessions().map((s) => ({
			system_id: s.sim.system_id,
			bind_type: s.sim.bind_type,
			bound_at: s.sim.bound_at,
			remote_port: s.sim.remote_port,
			session: s.sim.id,
		})),
		connections: state.sessions.size,
		bind_count: state.counters.bind_count,
		bind_rejected: state.counters.bind_rejected,
		unbinds_received: state.counters.unbinds_received,
		unbinds_sent: state.counters.unbinds_sent,
		unbind_resp_received: state.counters.unbind_resp_received,
		enquire_links_received: state.counters.enquire_links_received,
		enquire_links_after_unbind: state.counters.enquire_links_after_unbind,
		deliver_sm_resp: state.counters.deliver_sm_resp,
		generic_nack_received: state.counters.generic_nack_received,
		malformed_received: state.counters.malformed_received,
		submits: state.submits.length,
		submits_accepted: state.submits.filter((x) => x.command_status === 0).length,
		submits_throttled: state.counters.submits_throttled,
		connections_total: state.counters.connections_total,
		received_next: state.receivedNext,
		config: state.config,
	};
}

const routes = {
	'GET /health': async () => ({ ok: true }),
	'GET /state': async () => stateView(),
	'GET /config': async () => state.config,
	'POST /config': async (body) => {
		for (const k of Object.keys(body)) {
			if (!CONFIG_KEYS().includes(k)) throw new HttpError(400, 'unknown state.config key ' + k);
		}
		Object.assign(state.config, body);
		log('config', body);
		return state.config;
	},
	'POST /mo': doMo,
	'POST /receipt': doReceipt,
	'GET /submits': async (body, query) => {
		if (query.get('accepted') === '1' || query.get('accepted') === 'true') {
			return state.submits.filter((x) => x.command_status === 0);
		}
		return state.submits;
	},
	'DELETE /submits': async () => {
		const n = state.submits.length;
		state.submits = [];
		return { cleared: n };
	},
	'POST /drop': async (body) => {
		let n = 0;
		for (const s of Array.from(state.sessions)) {
			if (body.system_id && s.sim.system_id !== body.system_id) continue;
			if (body.bound_only && !s.sim.bound) continue;
			s.socket.destroy();
			n++;
		}
		log('drop', { dropped: n });
		return { dropped: n };
	},
	'POST /unbind': async (body) => {
		const targets = boundSessions().filter((s) => !body.system_id || s.sim.system_id === body.system_id);
		const results = await Promise.all(targets.map(async (s) => {
			state.counters.unbinds_sent++;
			s.sim.unbind_sent = true;
			const r = await sendRequest(s, 'unbind', {}, null, body.timeout_ms || 5000);
			s.sim.bound = false;
			if (!s.socket.destroyed) {
				s.socket.end();
				const t = setTimeout(() => { if (!s.socket.destroyed) s.socket.destroy(); }, 1000);
				s.socket.once('close', () => clearTimeout(t));
			}
			return {
				session: s.sim.id, system_id: s.sim.system_id,
				resp_received: r.status !== null && r.command === 'unbind_resp', status: r.status,
			};
		}));
		log('unbind_sent', { results: results });
		return { sent: results.length, results: results };
	},
	'POST /enquire_link': async (body) => {
		const targets = boundSessions().filter((s) => !body.system_id || s.sim.system_id === body.system_id);
		const results = await Promise.all(targets.map((s) =>
			sendRequest(s, 'enquire_link', {}, null, body.timeout_ms || 5000)));
		return { sent: results.length, statuses: results.map((r) => r.status) };
	},
	'POST /raw': async (body) => {
		if (typeof body.hex !== 'string') throw new HttpError(400, 'hex required');
		const hex = body.hex.replace(/\s+/g, '');
		if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new HttpError(400, 'invalid hex');
		const buf = Buffer.from(hex, 'hex');
		let s = null;
		for (const c of boundSessions()) {
			if (!body.system_id || c.sim.system_id === body.system_id) { s = c; break; }
		}
		if (!s) throw new HttpError(409, 'no bound client');
		writeRaw(s, buf);
		log('raw', { session: s.sim.id, bytes: buf.length });
		return { written: buf.length };
	},
	'GET /received': async (body, query) => {
		const since = parseInt(query.get('since') || '0', 10) || 0;
		return state.received.filter((e) => e.index >= since);
	},
	'POST /burst': async (body) => {
		if (state.burst) state.burst.cancel();
		state.burst = new Burst(body);
		log('burst_start', { count: state.burst.count, window: state.burst.window, redeliver: state.burst.redeliver });
		setImmediate(() => state.burst && state.burst.pump());
		return { started: true, count: state.burst.count };
	},
	'GET /burst': async () => {
		if (!state.burst) return { sent: 0, acked_ok: [], acked_error: 0, lost: 0, pending: 0, done: true, count: 0 };
		return state.burst.status();
	},
	'DELETE /burst': async () => {
		if (state.burst) state.burst.cancel();
		const st = state.burst ? state.burst.status() : null;
		state.burst = null;
		return { cancelled: !!st };
	},
	'POST /reset': async () => {
		resetState();
		log('reset');
		return { ok: true };
	},
};

const httpServer = http.createServer(async (req, res) => {
	const url = new URL(req.url, 'http://localhost');
	const key = req.method + ' ' + url.pathname.replace(/\/+$/, '');
	const send = (code, obj) => {
		const text = JSON.stringify(obj);
		res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
		res.end(text);
	};
	try {
		const handler = routes[key];
		const body = await readBody(req);
		if (!handler) throw new HttpError(404, 'no route ' + key);
		send(200, await handler(body, url.searchParams));
	} catch (e) {
		if (e instanceof HttpError) {
			send(e.code, { error: e.message });
		} else {
			log('http_error', { route: key, error: String(e && e.stack || e) });
			send(500, { error: String(e && e.message || e) });
		}
	}
});
httpServer.on('error', (e) => log('http_server_error', { error: e && e.message }));

module.exports = { httpServer };
