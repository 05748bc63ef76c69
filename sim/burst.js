'use strict';
// POST /burst: many MOs with a window of deliver_sm in flight, optional redelivery,
// going on across disconnects.

const { gsmUnits } = require('./gsm');
const { log } = require('./log');
const { state, pickReceiver } = require('./state');
const { sendRequest } = require('./server');
const { baseDeliverFields } = require('./mo');

class Burst {
	constructor(body) {
		this.count = body.count === undefined ? 100 : body.count;
		this.window = Math.max(1, body.window || 10);
		this.prefix = body.prefix === undefined ? 'burst-' : String(body.prefix);
		this.redeliver = !!body.redeliver;
		this.systemId = body.system_id;
		this.timeoutMs = body.timeout_ms || state.config.mo_timeout_ms;
		this.retryDelayMs = body.retry_delay_ms === undefined ? 200 : body.retry_delay_ms;
		this.base = baseDeliverFields(body);
		this.queue = [];
		for (let i = 0; i < this.count; i++) this.queue.push({ i: i, text: this.prefix + i, attempts: 0 });
		this.inflight = new Map(); // item -> session
		this.waiting = 0; // items sleeping before redelivery
		this.sent = 0;
		this.ackedOk = [];
		this.ackedError = 0;
		this.lost = 0;
		this.redelivered = 0;
		this.cancelled = false;
		this.startedAt = Date.now();
		this.finishedAt = null;
		this.timers = new Set();
		this.pumpScheduled = false;
	}

	status() {
		return {
			sent: this.sent,
			acked_ok: this.ackedOk.map((x) => x.text),
			acked_error: this.ackedError,
			lost: this.lost,
			redelivered: this.redelivered,
			pending: this.queue.length + this.inflight.size + this.waiting,
			inflight: this.inflight.size,
			done: this.isDone(),
			count: this.count,
			elapsed_ms: (this.finishedAt || Date.now()) - this.startedAt,
		};
	}

	isDone() {
		return this.queue.length === 0 && this.inflight.size === 0 && this.waiting === 0;
	}

	cancel() {
		this.cancelled = true;
		for (const t of this.timers) clearTimeout(t);
		this.timers.clear();
	}

	pump() {
		if (this.cancelled) return;
		while (this.queue.length && this.inflight.size < this.window) {
			const s = pickReceiver(this.systemId);
			if (!s) return; // resumed from handleBind
			const item = this.queue.shift();
			this.sendItem(s, item);
		}
		this.checkDone();
	}

	checkDone() {
		if (!this.finishedAt && this.isDone()) {
			this.finishedAt = Date.now();
			log('burst_done', {
				ok: this.ackedOk.length, errors: this.ackedError, lost: this.lost,
				sent: this.sent, ms: this.finishedAt - this.startedAt,
			});
		}
	}

	sendItem(s, item) {
		item.attempts++;
		if (item.attempts > 1) this.redelivered++;
		this.inflight.set(item, s);
		this.sent++;
		const fields = Object.assign({}, this.base, {
			esm_class: 0, data_coding: 0,
			short_message: Buffer.from([].concat.apply([], gsmUnits(item.text))),
		});
		sendRequest(s, 'deliver_sm', fields, null, this.timeoutMs).then((r) => {
			if (this.cancelled || !this.inflight.has(item)) return;
			this.inflight.delete(item);
			if (r.status === 0) {
				this.ackedOk.push(item);
			} else {
				if (r.status === null) this.lost++;
				else this.ackedError++;
				if (this.redeliver) {
					if (r.status === null) {
						this.queue.unshift(item); // waits for a bound client
					} else {
						this.waiting++;
						const t = setTimeout(() => {
							this.timers.delete(t);
							this.waiting--;
							this.queue.unshift(item);
							this.pump();
						}, this.retryDelayMs);
						this.timers.add(t);
					}
				}
			}
			// Never straight back into pump(): a send that fails at once would re-pick
			// the same session in a loop of promise callbacks that starves the event
			// loop (the socket's 'close' and the control API never get their turn).
			this.schedulePump();
		});
	}

	schedulePump() {
		if (this.pumpScheduled) return;
		this.pumpScheduled = true;
		setImmediate(() => {
			this.pumpScheduled = false;
			this.pump();
		});
	}

	onSessionClosed() {
		// sendRequest promises of that session resolve with null ("disconnected") and
		// re-queue on their own; nothing else to do.
	}
}

module.exports = { Burst };
