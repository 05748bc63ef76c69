'use strict';
// What the control API sends the ESME: MOs (single, UDH 8/16-bit, SAR, payload;
// any part order) and delivery receipts, built as deliver_sm.

const smpp = require('smpp');
const { gsmUnits, ucs2Units, latin1Units } = require('./gsm');
const { MESSAGE_STATES } = require('./pdu');
const { log } = require('./log');
const { HttpError } = require('./errors');
const { state, pickReceiver, receiptId } = require('./state');
const { sendRequest } = require('./server');

function encodeUnits(text, encoding) {
	switch (encoding) {
		case 'gsm': return gsmUnits(text);
		case 'default': // data_coding 0 in this SMSC's default_alphabet
			if (state.config.default_alphabet === 'latin1') return latin1Units(text);
			if (state.config.default_alphabet === 'ascii') {
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
	const timeout = body.timeout_ms || state.config.mo_timeout_ms;
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
	const orig = state.submitById.get(id);
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
	const r = await sendRequest(s, 'deliver_sm', fields, extra.raw, body.timeout_ms || state.config.mo_timeout_ms);
	log('receipt', { session: s.sim.id, message_id: sentId, stat: stat, via: via, status: r.status });
	return { status: r.status, text: receiptText, error: r.reason || null, message_id: sentId };
}

module.exports = { baseDeliverFields, doMo, doReceipt };
