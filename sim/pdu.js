'use strict';
// SMPP constants and defensive PDU parsing from raw bytes (node-smpp decodes lossily,
// see README.md).

const smpp = require('smpp');
const { decodeText } = require('./gsm');

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

const MESSAGE_STATES = {
	ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8,
};

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
function parseSubmitSm(raw, defaultAlphabet) {
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
	f.text = decodeText(textBytes, f.data_coding || 0, defaultAlphabet);
	return f;
}

module.exports = { ST, MESSAGE_STATES, parseUdh, parseTlvs, parseSubmitSm };
