'use strict';
// The SMPP side: node-smpp's server, our handling of every PDU (binds, submit_sm,
// enquire_link, unbind, refusals) and the request/response matching with timeouts.

const smpp = require('smpp');
const { log, vlog } = require('./log');
const { ST, parseSubmitSm } = require('./pdu');
const {
	state, recordReceived, newMessageId,
} = require('./state');

const PDU = smpp.PDU;

function nextSeq(s) {
	s.sim.seq = s.sim.seq >= 0x7FFFFFFF ? 1 : s.sim.seq + 1;
	return s.sim.seq;
}

function writeRaw(s, buf) {
	if (s.socket.destroyed || !s.socket.writable) return false;
	s.socket.write(buf);
	return true;
}

function sendResponse(s, reqPdu, status, fields) {
	const opts = Object.assign({}, fields || {});
	opts.command_status = status;
	const resp = reqPdu.response(opts);
	return writeRaw(s, resp.toBuffer());
}

function sendGenericNack(s, seq, status) {
	const p = new PDU('generic_nack', { sequence_number: seq, command_status: status });
	return writeRaw(s, p.toBuffer());
}

// Build a request PDU with node-smpp, append optional raw TLVs, send it and resolve with
// {status, command} of the response, or {status: null, reason} on timeout / disconnect.
function sendRequest(s, command, fields, extraRaw, timeoutMs) {
	return new Promise((resolve) => {
		if (!s || s.socket.destroyed || !s.socket.writable) {
			resolve({ status: null, reason: 'not connected' });
			return;
		}
		let buf;
		const seq = nextSeq(s);
		try {
			const pdu = new PDU(command, Object.assign({}, fields, { sequence_number: seq }));
			buf = pdu.toBuffer();
		} catch (e) {
			resolve({ status: null, reason: 'encode error: ' + e.message });
			return;
		}
		if (extraRaw && extraRaw.length) {
			buf = Buffer.concat([buf, extraRaw]);
			buf.writeUInt32BE(buf.length, 0);
		}
		const timer = setTimeout(() => {
			s.sim.pending.delete(seq);
			resolve({ status: null, reason: 'timeout', seq: seq });
		}, timeoutMs || state.config.mo_timeout_ms);
		s.sim.pending.set(seq, {
			resolve: (r) => { clearTimeout(timer); r.seq = seq; resolve(r); },
		});
		writeRaw(s, buf);
	});
}

const server = smpp.createServer(function (session) {
	const sim = {
		id: ++state.sessionCounter,
		bound: false,
		bound_seq: 0,
		system_id: null,
		bind_type: null,
		bound_at: null,
		remote_port: session.socket.remotePort,
		remote_address: session.socket.remoteAddress,
		seq: 0,
		pending: new Map(),
		unbind_sent: false,
	};
	session.sim = sim;
	state.sessions.add(session);
	state.counters.connections_total++;
	vlog('connect', { session: sim.id, remote_port: sim.remote_port });

	session.on('error', (e) => {
		log('session_error', { session: sim.id, error: e && e.message });
	});

	session.on('framing_error', (info) => {
		state.counters.malformed_received++;
		recordReceived(session, {
			command: 'malformed', command_id: null, command_status: null, sequence_number: null,
			error: info.reason, command_length: info.length,
		});
		log('malformed_pdu', { session: sim.id, reason: info.reason, length: info.length });
		// cannot resynchronise the stream: nack and close, like most SMSCs
		session.pause();
		sim.bound = false;
		sendGenericNack(session, 0, ST.ESME_RINVCMDLEN);
		session.socket.end();
		setTimeout(() => { if (!session.socket.destroyed) session.socket.destroy(); }, 500);
	});

	session.on('parse_error', (e, raw) => {
		state.counters.malformed_received++;
		const cmdId = raw.readUInt32BE(4);
		const seq = raw.readUInt32BE(12);
		recordReceived(session, {
			command: 'malformed', command_id: cmdId, command_status: raw.readUInt32BE(8),
			sequence_number: seq, error: 'parse error: ' + e.message, command_length: raw.length,
		});
		log('malformed_pdu', { session: sim.id, reason: e.message, command_id: '0x' + cmdId.toString(16) });
		if (!(cmdId & 0x80000000)) sendGenericNack(session, seq, ST.ESME_RINVMSGLEN);
	});

	session.on('pdu', (pdu) => handlePdu(session, pdu));

	session.socket.on('close', () => {
		state.sessions.delete(session);
		const wasBound = sim.bound;
		sim.bound = false;
		for (const [, p] of sim.pending) p.resolve({ status: null, reason: 'disconnected' });
		sim.pending.clear();
		log('disconnect', { session: sim.id, system_id: sim.system_id, was_bound: wasBound });
		if (state.burst) state.burst.onSessionClosed(session);
	});
});

server.on('error', (e) => {
	log('server_error', { error: e && e.message });
});

function handlePdu(s, pdu) {
	const sim = s.sim;
	const entry = {
		command: pdu.command,
		command_id: pdu.command_id,
		command_status: pdu.command_status,
		sequence_number: pdu.sequence_number,
		command_length: pdu.command_length,
	};
	if (pdu.command === 'deliver_sm_resp' || pdu.command === 'submit_sm_resp') {
		entry.message_id = typeof pdu.message_id === 'string' ? pdu.message_id : null;
	}
	recordReceived(s, entry);

	if (pdu.isResponse()) {
		if (pdu.command === 'deliver_sm_resp') {
			const k = String(pdu.command_status);
			state.counters.deliver_sm_resp[k] = (state.counters.deliver_sm_resp[k] || 0) + 1;
		} else if (pdu.command === 'generic_nack') {
			state.counters.generic_nack_received++;
			log('generic_nack_received', { session: sim.id, status: pdu.command_status, seq: pdu.sequence_number });
		} else if (pdu.command === 'unbind_resp') {
			state.counters.unbind_resp_received++;
			log('unbind_resp', { session: sim.id, status: pdu.command_status });
		} else if (pdu.command !== 'enquire_link_resp') {
			vlog('response', { session: sim.id, command: pdu.command, status: pdu.command_status });
		}
		const p = sim.pending.get(pdu.sequence_number);
		if (p) {
			sim.pending.delete(pdu.sequence_number);
			p.resolve({ status: pdu.command_status, command: pdu.command });
		}
		return;
	}

	switch (pdu.command) {
		case 'bind_transceiver':
		case 'bind_transmitter':
		case 'bind_receiver':
			return handleBind(s, pdu);
		case 'enquire_link':
			state.counters.enquire_links_received++;
			if (sim.unbind_received) {
				state.counters.enquire_links_after_unbind++;
				log('enquire_link_after_unbind', { session: sim.id });
			}
			if (state.config.enquire_link_reply) sendResponse(s, pdu, ST.ROK);
			return;
		case 'unbind':
			state.counters.unbinds_received++;
			log('unbind_received', { session: sim.id, system_id: sim.system_id });
			sim.unbind_received = true;
			{
				const answer = () => {
					sendResponse(s, pdu, ST.ROK);
					sim.bound = false;
					s.socket.end();
				};
				if (state.config.unbind_resp_delay_ms > 0) setTimeout(answer, state.config.unbind_resp_delay_ms);
				else answer();
			}
			return;
		case 'submit_sm':
			return handleSubmit(s, pdu);
		case 'unknown':
			log('unknown_command', { session: sim.id, command_id: '0x' + pdu.command_id.toString(16) });
			sendGenericNack(s, pdu.sequence_number, ST.ESME_RINVCMDID);
			return;
		default:
			if (!sim.bound) {
				sendResponse(s, pdu, ST.ESME_RINVBNDSTS);
			} else {
				// query_sm, cancel_sm, data_sm, ... are not supported by this simulator
				log('unsupported_command', { session: sim.id, command: pdu.command });
				sendResponse(s, pdu, ST.ESME_RINVCMDID);
			}
	}
}

function handleBind(s, pdu) {
	const sim = s.sim;
	const systemId = typeof pdu.system_id === 'string' ? pdu.system_id : '';
	const password = typeof pdu.password === 'string' ? pdu.password : '';
	if (sim.bound) {
		log('bind_rejected', { session: sim.id, reason: 'already bound' });
		sendResponse(s, pdu, ST.ESME_RALYBND);
		return;
	}
	let status = ST.ROK;
	if (systemId !== state.config.system_id) status = state.config.invalid_system_id_status;
	else if (password !== state.config.password) status = ST.ESME_RINVPASWD;
	if (status !== ST.ROK) {
		state.counters.bind_rejected++;
		log('bind_rejected', { session: sim.id, command: pdu.command, system_id: systemId, status: status });
		sendResponse(s, pdu, status);
		return;
	}
	sim.bound = true;
	state.counters.bind_count++;
	sim.bound_seq = ++state.bindSeq;
	sim.system_id = systemId;
	sim.bind_type = pdu.command;
	sim.bound_at = new Date().toISOString();
	sendResponse(s, pdu, ST.ROK, { system_id: 'vmnsim' });
	log('bound', { session: sim.id, command: pdu.command, system_id: systemId, remote_port: sim.remote_port });
	if (state.burst) setImmediate(() => state.burst && state.burst.pump());
}

function handleSubmit(s, pdu) {
	const sim = s.sim;
	if (!sim.bound || sim.bind_type === 'bind_receiver') {
		sendResponse(s, pdu, ST.ESME_RINVBNDSTS);
		return;
	}
	let rec;
	try {
		rec = parseSubmitSm(pdu.raw, state.config.default_alphabet);
	} catch (e) {
		rec = { malformed: true, error: String(e) };
	}
	let status = ST.ROK;
	let messageId = null;
	if (state.config.throttle_next > 0) {
		state.config.throttle_next--;
		status = state.config.throttle_status;
		state.counters.submits_throttled++;
	} else if (state.config.submit_status) {
		status = state.config.submit_status;
	} else {
		messageId = newMessageId();
	}
	let answered = true;
	if (status === ST.ROK && state.config.no_response_next > 0) {
		state.config.no_response_next--;
		answered = false;
	}
	const now = new Date();
	rec = Object.assign({
		index: state.submits.length,
		message_id: messageId,
		command_status: status,
		sequence_number: pdu.sequence_number,
		system_id: sim.system_id,
		session: sim.id,
		received_at: now.toISOString(),
		received_at_ms: now.getTime(),
	}, rec);
	state.submits.push(rec);
	if (messageId) state.submitById.set(messageId, rec);
	vlog('submit_sm', {
		session: sim.id, seq: pdu.sequence_number, status: status, message_id: messageId,
		src: rec.source_addr, dst: rec.destination_addr, dc: rec.data_coding,
		concat: rec.concat ? rec.concat.seq + '/' + rec.concat.total + '#' + rec.concat.ref : undefined,
		text: rec.text, answered: answered,
	});
	rec.answered = answered;
	if (!answered) return; // taken, never answered (a lost submit_sm_resp)
	const respond = () => {
		if (status === ST.ROK) sendResponse(s, pdu, ST.ROK, { message_id: messageId });
		else sendResponse(s, pdu, status);
	};
	if (state.config.ack_delay_ms > 0) setTimeout(respond, state.config.ack_delay_ms);
	else respond();
}

module.exports = { server, sendRequest, writeRaw };
