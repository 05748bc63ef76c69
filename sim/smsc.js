#!/usr/bin/env node
'use strict';
/*
 * SMSC simulator for vmn-gateway tests and demo.
 *
 *   node sim/smsc.js --smpp-port P --control-port C [--system-id ID --password PW]
 *                    [--smpp-host H] [--control-host H] [--quiet] [--parent-watch]
 *
 * node-smpp 0.5.1 is the SMPP server (sockets, sessions, PDU objects); a small HTTP
 * JSON API on the control port drives it.  When both listeners are up, exactly one JSON
 * line {"ready": true, "smpp_port": N, "control_port": M} goes to stdout; everything
 * else is logged to stderr, one line per notable event.
 *
 * node-smpp quirks handled here (see the report / README in this folder):
 *  - short_message is decoded lossily by the library ({udh, message} with GSM/latin1/UCS2
 *    text); we keep the raw PDU buffer of every received PDU and parse submit_sm ourselves.
 *  - the library's stream reader leaves the session wedged (_busy stays true) after any
 *    parse exception and throws on bad command_length; we replace Session#_extractPDUs
 *    with a defensive version (generic_nack + close on framing errors).
 */

const http = require('http');
const smpp = require('smpp');

const PDU = smpp.PDU;

// ---------------------------------------------------------------------------
// command line

function parseArgs(argv) {
	const opts = {
		smppPort: 2775,
		controlPort: 8775,
		smppHost: '127.0.0.1',
		controlHost: '127.0.0.1',
		systemId: 'test',
		password: 'secret',
		quiet: false,
		parentWatch: false,
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length) {
				throw new Error('missing value for ' + a);
			}
			return argv[++i];
		};
		switch (a) {
			case '--smpp-port': opts.smppPort = parseInt(next(), 10); break;
			case '--control-port': opts.controlPort = parseInt(next(), 10); break;
			case '--smpp-host': opts.smppHost = next(); break;
			case '--control-host': opts.controlHost = next(); break;
			case '--system-id': opts.systemId = next(); break;
			case '--password': opts.password = next(); break;
			case '--quiet': opts.quiet = true; break;
			case '--parent-watch': opts.parentWatch = true; break;
			case '-h':
			case '--help':
				process.stdout.write('usage: node smsc.js --smpp-port P --control-port C ' +
					'[--system-id ID --password PW] [--smpp-host H] [--control-host H] ' +
					'[--quiet] [--parent-watch]\n');
				process.exit(0);
				break;
			default:
				throw new Error('unknown argument ' + a);
		}
	}
	if (!Number.isInteger(opts.smppPort) || !Number.isInteger(opts.controlPort)) {
		throw new Error('ports must be integers');
	}
	return opts;
}

let OPTS;
try {
	OPTS = parseArgs(process.argv.slice(2));
} catch (e) {
	process.stderr.write('smsc.js: ' + e.message + '\n');
	process.exit(2);
}

function log(event, fields) {
	let line = 'sim ' + new Date().toISOString() + ' ' + event;
	if (fields) {
		for (const k of Object.keys(fields)) {
			let v = fields[k];
			if (v === undefined) continue;
			if (typeof v === 'object' || (typeof v === 'string' && !/^[\x21-\x7e]*$/.test(v))) {
				v = JSON.stringify(v); // keeps one event on one line
			}
			line += ' ' + k + '=' + v;
		}
	}
	process.stderr.write(line + '\n');
}

function vlog(event, fields) {
	if (!OPTS.quiet) log(event, fields);
}

// ---------------------------------------------------------------------------
// constants

const ST = {
	ROK: 0x00,
	ESME_RINVMSGLEN: 0x01,
	ESME_RINVCMDLEN: 0x02,
	ESME_RINVCMDID: 0x03,
	ESME_RINVBNDSTS: 0x04,
	ESME_RALYBND: 0x05,
	ESME_RSYSERR: 0x08,
	ESME_RINVPASWD: 0x0E,
	ESME_RTHROTTLED: 0x58,
};

const CMD_NAMES = {};
for (const name of Object.keys(smpp.commands)) {
	CMD_NAMES[smpp.commands[name].id] = name;
}

const MESSAGE_STATES = {
	ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8,
};

// ---------------------------------------------------------------------------
// GSM 03.38 default alphabet (unpacked, one septet per octet) + extension table

const GSM_BASIC =
	'@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
	'¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXT = {
	0x0A: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2F: '\\',
	0x3C: '[', 0x3D: '~', 0x3E: ']', 0x40: '|', 0x65: '€',
};
const GSM_ENC = new Map();
const GSM_EXT_ENC = new Map();
for (let i = 0; i < GSM_BASIC.length; i++) {
	if (i !== 0x1B) GSM_ENC.set(GSM_BASIC[i], i);
}
for (const code of Object.keys(GSM_EXT)) {
	GSM_EXT_ENC.set(GSM_EXT[code], Number(code));
}
if (GSM_BASIC.length !== 128) {
	throw new Error('GSM table length ' + GSM_BASIC.length);
}

// Returns a list of "units" (arrays of octets) so that splitters never cut an escape.
function gsmUnits(text) {
	const units = [];
	for (const ch of text) {
		if (GSM_ENC.has(ch)) {
			units.push([GSM_ENC.get(ch)]);
		} else if (GSM_EXT_ENC.has(ch)) {
			units.push([0x1B, GSM_EXT_ENC.get(ch)]);
		} else {
			units.push([0x3F]); // '?'
		}
	}
	return units;
}

function gsmDecode(buf) {
	let out = '';
	for (let i = 0; i < buf.length; i++) {
		const b = buf[i];
		if (b > 0x7F) {
			out += '\uFFFD';
		} else if (b === 0x1B) {
			if (i + 1 >= buf.length) break; // dangling escape
			const n = buf[++i];
			if (n in GSM_EXT) out += GSM_EXT[n];
			else if (n <= 0x7F && n !== 0x1B) out += GSM_BASIC[n]; // 03.38: show the basic char
			else out += '\uFFFD';
		} else {
			out += GSM_BASIC[b];
		}
	}
	return out;
}

function ucs2Units(text) {
	const units = [];
	for (const ch of text) { // iterates code points: surrogate pairs stay together
		const b = Buffer.from(ch, 'utf16le');
		b.swap16();
		units.push(Array.from(b));
	}
	return units;
}

function ucs2Decode(buf) {
	const even = buf.length - (buf.length % 2);
	const b = Buffer.from(buf.subarray(0, even));
	b.swap16();
	return b.toString('utf16le') + (even < buf.length ? '\uFFFD' : '');
}

function latin1Units(text) {
	const units = [];
	for (const ch of text) {
		const cp = ch.codePointAt(0);
		units.push([cp <= 0xFF ? cp : 0x3F]);
	}
	return units;
}

// data_coding 0 is the SMSC's default alphabet: GSM 03.38 unless configured otherwise.
function decodeDefault(buf) {
	switch (config.default_alphabet) {
		case 'ascii': return buf.toString('latin1').replace(/[\x80-\xff]/g, '\uFFFD');
		case 'latin1': return buf.toString('latin1');
		default: return gsmDecode(buf);
	}
}

function newMessageId() {
	const n = ++msgCounter;
	switch (config.message_id_format) {
		case 'hex': return (0xA0000000 + n).toString(16).toUpperCase();
		case 'decimal': return String(3000000000 + n);
		case 'empty': return '';
		default: return 'sim-' + n;
	}
}

// The id a receipt for `id` carries: the same, or the number in the other base.
function receiptId(id) {
	switch (config.receipt_id_format) {
		case 'decimal': return /^[0-9a-f]+$/i.test(id) ? BigInt('0x' + id).toString(10) : id;
		case 'hex': return /^[0-9]+$/.test(id) ? BigInt(id).toString(16) : id;
		default: return id;
	}
}

function decodeText(buf, dataCoding) {
	if (!buf) return null;
	const dc = dataCoding & 0xFF;
	if (dc === 0x00) return decodeDefault(buf);
	if (dc === 0x01) return buf.toString('latin1'); // IA5 / ASCII
	if (dc === 0x03) return buf.toString('latin1');
	if (dc === 0x08) return ucs2Decode(buf);
	if ((dc & 0xF0) === 0xF0) return (dc & 0x04) ? null : gsmDecode(buf);
	if ((dc & 0xC0) === 0x00) { // general data coding group, uncompressed
		const alphabet = (dc >> 2) & 0x03;
		if (alphabet === 0) return gsmDecode(buf);
		if (alphabet === 2) return ucs2Decode(buf);
	}
	return null; // binary / unknown
}

// ---------------------------------------------------------------------------
// defensive PDU parsing (from raw bytes)

function parseUdh(buf) {
	// buf = whole short_message; returns {udh, body, concat, ies} or null when malformed
	if (!buf || buf.length < 1) return null;
	const udhl = buf[0];
	if (udhl + 1 > buf.length) return null;
	const udh = buf.subarray(0, udhl + 1);
	const ies = [];
	let concat = null;
	let p = 1;
	while (p + 1 < udh.length) {
		const iei = udh[p];
		const len = udh[p + 1];
		const data = udh.subarray(p + 2, p + 2 + len);
		ies.push({ iei: iei, hex: data.toString('hex') });
		if (iei === 0x00 && len === 3 && data.length === 3) {
			concat = { ref: data[0], total: data[1], seq: data[2], ref_bits: 8, via: 'udh' };
		} else if (iei === 0x08 && len === 4 && data.length === 4) {
			concat = { ref: data.readUInt16BE(0), total: data[2], seq: data[3], ref_bits: 16, via: 'udh' };
		}
		p += 2 + len;
	}
	return { udh: udh, body: buf.subarray(udhl + 1), concat: concat, ies: ies };
}

class Reader {
	constructor(buf, offset, end) {
		this.buf = buf;
		this.off = offset;
		this.end = end;
		this.truncated = false;
	}
	u8() {
		if (this.off + 1 > this.end) { this.truncated = true; return null; }
		return this.buf[this.off++];
	}
	cstr() {
		if (this.off >= this.end) { this.truncated = true; return null; }
		let e = this.off;
		while (e < this.end && this.buf[e] !== 0) e++;
		const s = this.buf.toString('latin1', this.off, e);
		if (e >= this.end) this.truncated = true;
		this.off = Math.min(e + 1, this.end);
		return s;
	}
	bytes(n) {
		const b = this.buf.subarray(this.off, Math.min(this.off + n, this.end));
		if (b.length < n) this.truncated = true;
		this.off += b.length;
		return b;
	}
}

function tlvValue(name, tag, value) {
	const def = smpp.tlvsById[tag];
	if (!def) return value.toString('hex');
	if (def.type === smpp.types.tlv.int8 && value.length === 1) return value[0];
	if (def.type === smpp.types.tlv.int16 && value.length === 2) return value.readUInt16BE(0);
	if (def.type === smpp.types.tlv.int32 && value.length === 4) return value.readUInt32BE(0);
	if (def.type === smpp.types.tlv.cstring) {
		const z = value.indexOf(0);
		return value.toString('latin1', 0, z >= 0 ? z : value.length);
	}
	if (def.type === smpp.types.tlv.string) return value.toString('latin1');
	return value.toString('hex');
}

function parseTlvs(buf, offset, end) {
	const list = [];
	const map = {};
	let p = offset;
	let malformed = false;
	while (p < end) {
		if (p + 4 > end) { malformed = true; break; }
		const tag = buf.readUInt16BE(p);
		const len = buf.readUInt16BE(p + 2);
		if (p + 4 + len > end) { malformed = true; break; }
		const value = buf.subarray(p + 4, p + 4 + len);
		const def = smpp.tlvsById[tag];
		const name = def ? def.tag : '0x' + tag.toString(16).padStart(4, '0');
		const decoded = tlvValue(name, tag, value);
		list.push({ tag: tag, name: name, length: len, hex: value.toString('hex'), value: decoded });
		map[name] = decoded;
		p += 4 + len;
	}
	return { list: list, map: map, malformed: malformed };
}

// submit_sm / deliver_sm / data_sm-like body parse (submit_sm layout)
function parseSubmitSm(raw) {
	const cl = Math.min(raw.readUInt32BE(0), raw.length);
	const r = new Reader(raw, 16, cl);
	const f = {};
	f.service_type = r.cstr();
	f.source_addr_ton = r.u8();
	f.source_addr_npi = r.u8();
	f.source_addr = r.cstr();
	f.dest_addr_ton = r.u8();
	f.dest_addr_npi = r.u8();
	f.destination_addr = r.cstr();
	f.esm_class = r.u8();
	f.protocol_id = r.u8();
	f.priority_flag = r.u8();
	f.schedule_delivery_time = r.cstr();
	f.validity_period = r.cstr();
	f.registered_delivery = r.u8();
	f.replace_if_present_flag = r.u8();
	f.data_coding = r.u8();
	f.sm_default_msg_id = r.u8();
	f.sm_length = r.u8();
	const sm = f.sm_length === null ? Buffer.alloc(0) : r.bytes(f.sm_length);
	f.short_message = sm.toString('hex');
	const tl = parseTlvs(raw, r.off, cl);
	f.tlvs = tl.map;
	f.tlvs_raw = tl.list;
	f.malformed = r.truncated || tl.malformed;

	const esm = f.esm_class || 0;
	let body = sm;
	f.udh = null; // {hex, ies, ref, total, seq, ref_bits} when esm_class & 0x40
	f.concat = null; // {ref, total, seq, ref_bits, via: "udh" | "sar"}
	const udhView = (u) => ({
		hex: u.udh.toString('hex'),
		ies: u.ies,
		ref: u.concat ? u.concat.ref : null,
		total: u.concat ? u.concat.total : null,
		seq: u.concat ? u.concat.seq : null,
		ref_bits: u.concat ? u.concat.ref_bits : null,
	});
	let udhBad = false;
	if ((esm & 0x40) && sm.length) {
		const u = parseUdh(sm);
		if (u) {
			f.udh = udhView(u);
			f.concat = u.concat;
			body = u.body;
		} else {
			udhBad = true;
		}
	}
	let payload = null;
	for (const t of tl.list) {
		if (t.tag === 0x0424) payload = Buffer.from(t.hex, 'hex');
	}
	f.message_payload = payload ? payload.toString('hex') : null;
	let textBytes = body;
	if (payload && sm.length === 0) {
		textBytes = payload;
		if (esm & 0x40) {
			const u = parseUdh(payload);
			if (u) {
				f.udh = udhView(u);
				f.concat = u.concat;
				textBytes = u.body;
			} else {
				udhBad = true;
			}
		}
	} else if ((esm & 0x40) && !sm.length) {
		udhBad = true;
	}
	f.malformed = f.malformed || udhBad;
	if (!f.concat && 'sar_msg_ref_num' in tl.map) {
		f.concat = {
			ref: tl.map.sar_msg_ref_num,
			total: tl.map.sar_total_segments === undefined ? null : tl.map.sar_total_segments,
			seq: tl.map.sar_segment_seqnum === undefined ? null : tl.map.sar_segment_seqnum,
			ref_bits: 16,
			via: 'sar',
		};
	}
	f.body_hex = textBytes.toString('hex');
	f.text = decodeText(textBytes, f.data_coding || 0);
	return f;
}

// ---------------------------------------------------------------------------
// robust stream extraction (replaces node-smpp's Session#_extractPDUs)

smpp.Session.prototype._extractPDUs = function () {
	if (this._busy) return;
	this._busy = true;
	try {
		while (!this.paused && !this.socket.destroyed) {
			if (this._command_length === null || this._command_length === undefined) {
				const head = this.socket.read(4);
				if (!head) break;
				if (head.length < 4) { // stream ended mid-header
					this.emit('framing_error', { reason: 'truncated header', length: null });
					break;
				}
				const len = head.readUInt32BE(0);
				if (len < 16 || len > PDU.maxLength) {
					this._command_length = null;
					this.emit('framing_error', { reason: 'bad command_length', length: len });
					break;
				}
				this._command_length = len;
				this._head = head;
			}
			const need = this._command_length - 4;
			const rest = this.socket.read(need);
			if (!rest) break;
			if (rest.length < need) {
				this.emit('framing_error', { reason: 'truncated body', length: this._command_length });
				break;
			}
			const raw = Buffer.concat([this._head, rest]);
			this._command_length = null;
			this._head = null;
			let pdu;
			try {
				pdu = new PDU(raw);
			} catch (e) {
				safeEmit(this, 'parse_error', e, raw);
				continue;
			}
			pdu.raw = raw;
			safeEmit(this, 'pdu', pdu);
		}
	} catch (e) {
		safeEmit(this, 'error', e);
	} finally {
		this._busy = false;
	}
};

function safeEmit(emitter) {
	const args = Array.prototype.slice.call(arguments, 1);
	try {
		emitter.emit.apply(emitter, args);
	} catch (e) {
		log('handler_error', { event: args[0], error: String(e && e.stack || e) });
	}
}

// ---------------------------------------------------------------------------
// state

const DEFAULT_CONFIG = () => ({
	system_id: OPTS.systemId,
	password: OPTS.password,
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

let config = DEFAULT_CONFIG();
let counters;
let submits;
let submitById;
let received;
let receivedNext;
let burst = null;
let msgCounter = 0; // never reset: message_ids stay unique for the process lifetime
const RECEIVED_MAX = 20000;

function resetState() {
	counters = {
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
	submits = [];
	submitById = new Map();
	received = [];
	receivedNext = 0;
	if (burst) burst.cancel();
	burst = null;
	config = DEFAULT_CONFIG();
}
resetState();

let sessionCounter = 0;
let bindSeq = 0; // orders bound sessions; unlike bind_count it survives /reset
const sessions = new Set(); // all connected sessions (our view)

function isBound(s) {
	return s.sim.bound && !s.socket.destroyed;
}

function canReceive(s) {
	return isBound(s) && s.sim.bind_type !== 'bind_transmitter';
}

function boundSessions() {
	return Array.from(sessions).filter(isBound).sort((a, b) => a.sim.bound_seq - b.sim.bound_seq);
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
	entry.index = receivedNext++;
	entry.at = Date.now();
	entry.session = s ? s.sim.id : null;
	entry.system_id = s ? s.sim.system_id : null;
	received.push(entry);
	if (received.length > RECEIVED_MAX) received.splice(0, received.length - RECEIVED_MAX);
}

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
		}, timeoutMs || config.mo_timeout_ms);
		s.sim.pending.set(seq, {
			resolve: (r) => { clearTimeout(timer); r.seq = seq; resolve(r); },
		});
		writeRaw(s, buf);
	});
}

// ---------------------------------------------------------------------------
// SMPP server

const server = smpp.createServer(function (session) {
	const sim = {
		id: ++sessionCounter,
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
	sessions.add(session);
	counters.connections_total++;
	vlog('connect', { session: sim.id, remote_port: sim.remote_port });

	session.on('error', (e) => {
		log('session_error', { session: sim.id, error: e && e.message });
	});

	session.on('framing_error', (info) => {
		counters.malformed_received++;
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
		counters.malformed_received++;
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
		sessions.delete(session);
		const wasBound = sim.bound;
		sim.bound = false;
		for (const [, p] of sim.pending) p.resolve({ status: null, reason: 'disconnected' });
		sim.pending.clear();
		log('disconnect', { session: sim.id, system_id: sim.system_id, was_bound: wasBound });
		if (burst) burst.onSessionClosed(session);
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
			counters.deliver_sm_resp[k] = (counters.deliver_sm_resp[k] || 0) + 1;
		} else if (pdu.command === 'generic_nack') {
			counters.generic_nack_received++;
			log('generic_nack_received', { session: sim.id, status: pdu.command_status, seq: pdu.sequence_number });
		} else if (pdu.command === 'unbind_resp') {
			counters.unbind_resp_received++;
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
			counters.enquire_links_received++;
			if (sim.unbind_received) {
				counters.enquire_links_after_unbind++;
				log('enquire_link_after_unbind', { session: sim.id });
			}
			if (config.enquire_link_reply) sendResponse(s, pdu, ST.ROK);
			return;
		case 'unbind':
			counters.unbinds_received++;
			log('unbind_received', { session: sim.id, system_id: sim.system_id });
			sim.unbind_received = true;
			{
				const answer = () => {
					sendResponse(s, pdu, ST.ROK);
					sim.bound = false;
					s.socket.end();
				};
				if (config.unbind_resp_delay_ms > 0) setTimeout(answer, config.unbind_resp_delay_ms);
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
	if (systemId !== config.system_id) status = config.invalid_system_id_status;
	else if (password !== config.password) status = ST.ESME_RINVPASWD;
	if (status !== ST.ROK) {
		counters.bind_rejected++;
		log('bind_rejected', { session: sim.id, command: pdu.command, system_id: systemId, status: status });
		sendResponse(s, pdu, status);
		return;
	}
	sim.bound = true;
	counters.bind_count++;
	sim.bound_seq = ++bindSeq;
	sim.system_id = systemId;
	sim.bind_type = pdu.command;
	sim.bound_at = new Date().toISOString();
	sendResponse(s, pdu, ST.ROK, { system_id: 'vmnsim' });
	log('bound', { session: sim.id, command: pdu.command, system_id: systemId, remote_port: sim.remote_port });
	if (burst) setImmediate(() => burst && burst.pump());
}

function handleSubmit(s, pdu) {
	const sim = s.sim;
	if (!sim.bound || sim.bind_type === 'bind_receiver') {
		sendResponse(s, pdu, ST.ESME_RINVBNDSTS);
		return;
	}
	let rec;
	try {
		rec = parseSubmitSm(pdu.raw);
	} catch (e) {
		rec = { malformed: true, error: String(e) };
	}
	let status = ST.ROK;
	let messageId = null;
	if (config.throttle_next > 0) {
		config.throttle_next--;
		status = config.throttle_status;
		counters.submits_throttled++;
	} else if (config.submit_status) {
		status = config.submit_status;
	} else {
		messageId = newMessageId();
	}
	let answered = true;
	if (status === ST.ROK && config.no_response_next > 0) {
		config.no_response_next--;
		answered = false;
	}
	const now = new Date();
	rec = Object.assign({
		index: submits.length,
		message_id: messageId,
		command_status: status,
		sequence_number: pdu.sequence_number,
		system_id: sim.system_id,
		session: sim.id,
		received_at: now.toISOString(),
		received_at_ms: now.getTime(),
	}, rec);
	submits.push(rec);
	if (messageId) submitById.set(messageId, rec);
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
	if (config.ack_delay_ms > 0) setTimeout(respond, config.ack_delay_ms);
	else respond();
}

// ---------------------------------------------------------------------------
// MO encoding

function encodeUnits(text, encoding) {
	switch (encoding) {
		case 'gsm': return gsmUnits(text);
		case 'default': // data_coding 0 in this SMSC's default_alphabet
			if (config.default_alphabet === 'latin1') return latin1Units(text);
			if (config.default_alphabet === 'ascii') {
				return Array.from(text).map((ch) => [ch.codePointAt(0) < 0x80 ? ch.codePointAt(0) : 0x3F]);
			}
			return gsmUnits(text);
		case 'ucs2': return ucs2Units(text);
		case 'latin1': return latin1Units(text);
		default: throw new HttpError(400, 'unknown encoding ' + encoding);
	}
}

function splitUnits(units, partSize) {
	const parts = [];
	let cur = [];
	for (const u of units) {
		if (cur.length && cur.length + u.length > partSize) {
			parts.push(Buffer.from(cur));
			cur = [];
		}
		cur.push.apply(cur, u);
	}
	if (cur.length || parts.length === 0) parts.push(Buffer.from(cur));
	return parts;
}

const DEFAULT_DC = { gsm: 0x00, default: 0x00, ucs2: 0x08, latin1: 0x03, binary: 0x04 };
const DEFAULT_PART = { gsm: 153, default: 153, ucs2: 134, latin1: 134, binary: 134 };

function toRawTlvs(tlvs) {
	// returns {known: {name: value}, raw: Buffer} for "tlvs" objects in requests.
	// Values: number/string as-is for known TLV names; {"hex": "..."} -> Buffer;
	// unknown names must be numeric tags ("0x1403" / "5123") and take hex strings or {"hex"}.
	const known = {};
	const raws = [];
	for (const name of Object.keys(tlvs || {})) {
		let v = tlvs[name];
		if (v && typeof v === 'object' && typeof v.hex === 'string') v = Buffer.from(v.hex, 'hex');
		if (smpp.tlvs[name]) {
			known[name] = v;
			continue;
		}
		const tag = Number(name);
		if (!Number.isInteger(tag) || tag < 0 || tag > 0xFFFF) {
			throw new HttpError(400, 'unknown TLV ' + name);
		}
		let value;
		if (Buffer.isBuffer(v)) value = v;
		else if (typeof v === 'string') value = Buffer.from(v, 'hex');
		else if (typeof v === 'number') { value = Buffer.alloc(1); value[0] = v & 0xFF; }
		else throw new HttpError(400, 'bad value for TLV ' + name);
		const h = Buffer.alloc(4);
		h.writeUInt16BE(tag, 0);
		h.writeUInt16BE(value.length, 2);
		raws.push(h, value);
	}
	return { known: known, raw: Buffer.concat(raws) };
}

function baseDeliverFields(body) {
	return {
		service_type: body.service_type || '',
		source_addr_ton: body.source_ton === undefined ? 1 : body.source_ton,
		source_addr_npi: body.source_npi === undefined ? 1 : body.source_npi,
		source_addr: String(body.source === undefined ? '15551234567' : body.source),
		dest_addr_ton: body.dest_ton === undefined ? 1 : body.dest_ton,
		dest_addr_npi: body.dest_npi === undefined ? 1 : body.dest_npi,
		destination_addr: String(body.destination === undefined ? '5551000100' : body.destination),
		protocol_id: body.protocol_id || 0,
		priority_flag: body.priority_flag || 0,
		registered_delivery: body.registered_delivery || 0,
	};
}

function buildMoParts(body) {
	const encoding = body.encoding || (body.hex !== undefined ? 'binary' : 'gsm');
	const mode = body.mode || 'single';
	let units;
	if (body.hex !== undefined) {
		units = Array.from(Buffer.from(String(body.hex), 'hex')).map((b) => [b]);
	} else {
		units = encodeUnits(String(body.text === undefined ? '' : body.text), encoding);
	}
	const dc = body.data_coding !== undefined ? body.data_coding : DEFAULT_DC[encoding];
	if (dc === undefined) throw new HttpError(400, 'unknown encoding ' + encoding);
	const base = baseDeliverFields(body);
	const extra = toRawTlvs(body.tlvs);
	const all = Buffer.from([].concat.apply([], units));
	const parts = [];
	if (mode === 'single' || mode === 'payload') {
		const f = Object.assign({}, base, { data_coding: dc, esm_class: body.esm_class || 0 });
		if (mode === 'single') {
			if (all.length > 254) throw new HttpError(400, 'single: ' + all.length + ' octets > 254; use a udh/sar/payload mode');
			f.short_message = all;
		} else {
			f.short_message = Buffer.alloc(0);
			f.message_payload = all;
		}
		Object.assign(f, extra.known);
		parts.push(f);
		return { parts: parts, raw: extra.raw, ref: null };
	}
	if (mode !== 'udh8' && mode !== 'udh16' && mode !== 'sar') {
		throw new HttpError(400, 'unknown mode ' + mode);
	}
	const partSize = body.part_size || DEFAULT_PART[encoding] || 134;
	const chunks = splitUnits(units, partSize);
	if (chunks.length > 255) throw new HttpError(400, 'too many parts');
	const refMax = mode === 'udh8' ? 0xFF : 0xFFFF;
	const ref = body.ref !== undefined ? body.ref & refMax : Math.floor(Math.random() * (refMax + 1));
	const total = body.total !== undefined ? body.total : chunks.length; // "total" override: lie about it
	chunks.forEach((chunk, i) => {
		const seq = i + 1;
		const f = Object.assign({}, base, { data_coding: dc });
		if (mode === 'sar') {
			f.esm_class = body.esm_class || 0;
			f.short_message = chunk;
			f.sar_msg_ref_num = ref;
			f.sar_total_segments = total;
			f.sar_segment_seqnum = seq;
		} else {
			const udh = mode === 'udh8'
				? Buffer.from([0x05, 0x00, 0x03, ref, total, seq])
				: Buffer.from([0x06, 0x08, 0x04, ref >> 8, ref & 0xFF, total, seq]);
			f.esm_class = body.esm_class !== undefined ? body.esm_class : 0x40;
			f.short_message = Buffer.concat([udh, chunk]);
		}
		Object.assign(f, extra.known);
		parts.push(f);
	});
	return { parts: parts, raw: extra.raw, ref: ref };
}

async function doMo(body) {
	const s = pickReceiver(body.system_id);
	if (!s) throw new HttpError(409, 'no bound client');
	const built = buildMoParts(body);
	const n = built.parts.length;
	let order = body.order;
	if (order === undefined || order === null) order = built.parts.map((_, i) => i + 1);
	if (!Array.isArray(order) || order.some((x) => !Number.isInteger(x) || x < 1 || x > n)) {
		throw new HttpError(400, 'order must list part numbers 1..' + n);
	}
	const timeout = body.timeout_ms || config.mo_timeout_ms;
	const results = [];
	if (body.pipelined) {
		const promises = order.map((k) => sendRequest(s, 'deliver_sm', built.parts[k - 1], built.raw, timeout));
		for (const p of promises) results.push(await p);
	} else {
		for (const k of order) {
			results.push(await sendRequest(s, 'deliver_sm', built.parts[k - 1], built.raw, timeout));
		}
	}
	const statuses = results.map((r) => r.status);
	log('mo', {
		session: s.sim.id, mode: body.mode || 'single', parts: n, order: order, ref: built.ref,
		statuses: statuses, text: body.text,
	});
	return {
		parts: n, sent: order.length, ref: built.ref, statuses: statuses,
		sequence_numbers: results.map((r) => r.seq === undefined ? null : r.seq),
		errors: results.map((r) => r.reason || null),
	};
}

function pad2(n) { return String(n).padStart(2, '0'); }
function dlrDate(d) {
	return pad2(d.getUTCFullYear() % 100) + pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) +
		pad2(d.getUTCHours()) + pad2(d.getUTCMinutes());
}

async function doReceipt(body) {
	if (!body.message_id) throw new HttpError(400, 'message_id required');
	const s = pickReceiver(body.system_id);
	if (!s) throw new HttpError(409, 'no bound client');
	const id = String(body.message_id);
	const stat = String(body.stat || 'DELIVRD').toUpperCase();
	const via = body.via || 'tlv';
	if (via !== 'tlv' && via !== 'text') throw new HttpError(400, 'via must be tlv or text');
	const orig = submitById.get(id);
	const sentId = receiptId(id);
	const source = body.source !== undefined ? body.source : (orig ? orig.destination_addr : '5551000100');
	const destination = body.destination !== undefined ? body.destination : (orig ? orig.source_addr : '15551234567');
	const submitDate = orig ? new Date(orig.received_at_ms) : new Date();
	const dlvrd = stat === 'DELIVRD' ? '001' : '000';
	const err = body.err !== undefined ? String(body.err) : (stat === 'DELIVRD' ? '000' : '001');
	const snippet = body.text !== undefined ? String(body.text) : ((orig && orig.text) || '').slice(0, 20);
	const receiptText = 'id:' + sentId + ' sub:001 dlvrd:' + dlvrd + ' submit date:' + dlrDate(submitDate) +
		' done date:' + dlrDate(new Date()) + ' stat:' + stat + ' err:' + err + ' text:' + snippet;
	const fields = Object.assign(baseDeliverFields({ source: source, destination: destination }), {
		esm_class: body.esm_class !== undefined ? body.esm_class : 0x04,
		data_coding: 0,
		short_message: Buffer.from([].concat.apply([], gsmUnits(receiptText))),
	});
	if (via === 'tlv') {
		fields.receipted_message_id = sentId;
		fields.message_state = body.message_state !== undefined ? body.message_state
			: (MESSAGE_STATES[stat] !== undefined ? MESSAGE_STATES[stat] : 7);
		if (body.network_error_code !== undefined) {
			fields.network_error_code = Buffer.from(String(body.network_error_code), 'hex');
		}
	}
	const extra = toRawTlvs(body.tlvs);
	Object.assign(fields, extra.known);
	const r = await sendRequest(s, 'deliver_sm', fields, extra.raw, body.timeout_ms || config.mo_timeout_ms);
	log('receipt', { session: s.sim.id, message_id: sentId, stat: stat, via: via, status: r.status });
	return { status: r.status, text: receiptText, error: r.reason || null, message_id: sentId };
}

// ---------------------------------------------------------------------------
// burst

class Burst {
	constructor(body) {
		this.count = body.count === undefined ? 100 : body.count;
		this.window = Math.max(1, body.window || 10);
		this.prefix = body.prefix === undefined ? 'burst-' : String(body.prefix);
		this.redeliver = !!body.redeliver;
		this.systemId = body.system_id;
		this.timeoutMs = body.timeout_ms || config.mo_timeout_ms;
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
			this.pump();
		});
	}

	onSessionClosed() {
		// sendRequest promises of that session resolve with null ("disconnected") and
		// re-queue on their own; nothing else to do.
	}
}

// ---------------------------------------------------------------------------
// HTTP control API

class HttpError extends Error {
	constructor(code, message) {
		super(message);
		this.code = code;
	}
}

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
		connections: sessions.size,
		bind_count: counters.bind_count,
		bind_rejected: counters.bind_rejected,
		unbinds_received: counters.unbinds_received,
		unbinds_sent: counters.unbinds_sent,
		unbind_resp_received: counters.unbind_resp_received,
		enquire_links_received: counters.enquire_links_received,
		enquire_links_after_unbind: counters.enquire_links_after_unbind,
		deliver_sm_resp: counters.deliver_sm_resp,
		generic_nack_received: counters.generic_nack_received,
		malformed_received: counters.malformed_received,
		submits: submits.length,
		submits_accepted: submits.filter((x) => x.command_status === 0).length,
		submits_throttled: counters.submits_throttled,
		connections_total: counters.connections_total,
		received_next: receivedNext,
		config: config,
	};
}

const CONFIG_KEYS = Object.keys(DEFAULT_CONFIG());

const routes = {
	'GET /health': async () => ({ ok: true }),
	'GET /state': async () => stateView(),
	'GET /config': async () => config,
	'POST /config': async (body) => {
		for (const k of Object.keys(body)) {
			if (!CONFIG_KEYS.includes(k)) throw new HttpError(400, 'unknown config key ' + k);
		}
		Object.assign(config, body);
		log('config', body);
		return config;
	},
	'POST /mo': doMo,
	'POST /receipt': doReceipt,
	'GET /submits': async (body, query) => {
		if (query.get('accepted') === '1' || query.get('accepted') === 'true') {
			return submits.filter((x) => x.command_status === 0);
		}
		return submits;
	},
	'DELETE /submits': async () => {
		const n = submits.length;
		submits = [];
		return { cleared: n };
	},
	'POST /drop': async (body) => {
		let n = 0;
		for (const s of Array.from(sessions)) {
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
			counters.unbinds_sent++;
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
		return received.filter((e) => e.index >= since);
	},
	'POST /burst': async (body) => {
		if (burst) burst.cancel();
		burst = new Burst(body);
		log('burst_start', { count: burst.count, window: burst.window, redeliver: burst.redeliver });
		setImmediate(() => burst && burst.pump());
		return { started: true, count: burst.count };
	},
	'GET /burst': async () => {
		if (!burst) return { sent: 0, acked_ok: [], acked_error: 0, lost: 0, pending: 0, done: true, count: 0 };
		return burst.status();
	},
	'DELETE /burst': async () => {
		if (burst) burst.cancel();
		const st = burst ? burst.status() : null;
		burst = null;
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

// ---------------------------------------------------------------------------
// start / stop

process.on('uncaughtException', (e) => {
	log('uncaught_exception', { error: String(e && e.stack || e) });
});
process.on('unhandledRejection', (e) => {
	log('unhandled_rejection', { error: String(e && e.stack || e) });
});

let stopping = false;
function shutdown(sig) {
	if (stopping) return;
	stopping = true;
	log('shutdown', { signal: sig });
	if (burst) burst.cancel();
	for (const s of sessions) s.socket.destroy();
	httpServer.close();
	server.close();
	setTimeout(() => process.exit(0), 50);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

if (OPTS.parentWatch) {
	process.stdin.on('data', () => {});
	process.stdin.on('end', () => shutdown('stdin closed'));
	process.stdin.on('error', () => shutdown('stdin error'));
}

function listen(srv, port, host) {
	return new Promise((resolve, reject) => {
		const onError = (e) => reject(e);
		srv.once('error', onError);
		srv.listen(port, host, () => {
			srv.removeListener('error', onError);
			resolve(srv.address().port);
		});
	});
}

(async () => {
	try {
		const smppPort = await listen(server, OPTS.smppPort, OPTS.smppHost);
		const controlPort = await listen(httpServer, OPTS.controlPort, OPTS.controlHost);
		process.stdout.write('{"ready": true, "smpp_port": ' + smppPort + ', "control_port": ' + controlPort + '}\n');
		log('ready', {
			smpp: OPTS.smppHost + ':' + smppPort, control: OPTS.controlHost + ':' + controlPort,
			system_id: config.system_id,
		});
	} catch (e) {
		log('listen_failed', { error: e && e.message });
		process.exit(1);
	}
})();
