'use strict';
// The simulator's mutable state, in one object every module shares (state.config,
// state.counters, state.submits, ...), and the queries over its sessions.

const { ST } = require('./pdu');

// The command line's credentials: the config's defaults (set by init()).
let opts = { systemId: 'test', password: 'secret' };

const DEFAULT_CONFIG = () => ({
	system_id: opts.systemId,
	password: opts.password,
	throttle_next: 0,
	throttle_status: ST.ESME_RTHROTTLED,
	ack_delay_ms: 0,
	submit_status: 0, // non-zero: every submit_sm (not throttled) answered with it
	invalid_system_id_status: ST.ESME_RINVPASWD,
	enquire_link_reply: true,
	mo_timeout_ms: 10000,
	// Carrier dialects (issue 16):
	default_alphabet: 'gsm', // what data_coding 0 means here: gsm | ascii | latin1
	message_id_format: 'sim', // submit_sm_resp ids: sim (sim-<n>) | hex | decimal | empty
	receipt_id_format: 'same', // the id a receipt carries: same | hex | decimal
	no_response_next: 0, // this many submit_sm are taken (recorded, accepted) but never answered
	unbind_resp_delay_ms: 0, // wait this long before answering an ESME's unbind
});

const RECEIVED_MAX = 20000;

const state = {
	config: null,
	counters: null,
	submits: null,
	submitById: null,
	received: null,
	receivedNext: 0,
	burst: null,
	msgCounter: 0, // never reset: message_ids stay unique for the process lifetime
	sessionCounter: 0,
	bindSeq: 0, // orders bound sessions; unlike bind_count it survives /reset
	sessions: new Set(), // all connected sessions (our view)
};

function resetState() {
	state.counters = {
		bind_count: 0,
		bind_rejected: 0,
		unbinds_received: 0,
		unbinds_sent: 0,
		unbind_resp_received: 0,
		enquire_links_received: 0,
		enquire_links_after_unbind: 0,
		deliver_sm_resp: {},
		generic_nack_received: 0,
		malformed_received: 0,
		submits_throttled: 0,
		connections_total: 0,
	};
	state.submits = [];
	state.submitById = new Map();
	state.received = [];
	state.receivedNext = 0;
	if (state.burst) state.burst.cancel();
	state.burst = null;
	state.config = DEFAULT_CONFIG();
}

function init(cliOpts) {
	opts = cliOpts;
	resetState();
}

function isBound(s) {
	return s.sim.bound && !s.socket.destroyed;
}

function canReceive(s) {
	// A peer's FIN ends the socket before it closes: no longer writable, not yet
	// destroyed. Nothing sent to it can arrive, so it is no receiver.
	return isBound(s) && s.socket.writable && s.sim.bind_type !== 'bind_transmitter';
}

function boundSessions() {
	return Array.from(state.sessions).filter(isBound).sort((a, b) => a.sim.bound_seq - b.sim.bound_seq);
}

function pickReceiver(systemId) {
	for (const s of boundSessions()) {
		if (!canReceive(s)) continue;
		if (systemId && s.sim.system_id !== systemId) continue;
		return s;
	}
	return null;
}

function recordReceived(s, entry) {
	entry.index = state.receivedNext++;
	entry.at = Date.now();
	entry.session = s ? s.sim.id : null;
	entry.system_id = s ? s.sim.system_id : null;
	state.received.push(entry);
	if (state.received.length > RECEIVED_MAX) state.received.splice(0, state.received.length - RECEIVED_MAX);
}


function newMessageId() {
	const n = ++state.msgCounter;
	switch (state.config.message_id_format) {
		case 'hex': return (0xA0000000 + n).toString(16).toUpperCase();
		case 'decimal': return String(3000000000 + n);
		case 'empty': return '';
		default: return 'sim-' + n;
	}
}

// The id a receipt for `id` carries: the same, or the number in the other base.
function receiptId(id) {
	switch (state.config.receipt_id_format) {
		case 'decimal': return /^[0-9a-f]+$/i.test(id) ? BigInt('0x' + id).toString(10) : id;
		case 'hex': return /^[0-9]+$/.test(id) ? BigInt(id).toString(16) : id;
		default: return id;
	}
}

const CONFIG_KEYS = () => Object.keys(DEFAULT_CONFIG());

module.exports = {
	state, init, resetState, CONFIG_KEYS, isBound, canReceive, boundSessions, pickReceiver,
	recordReceived, newMessageId, receiptId,
};
