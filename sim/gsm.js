'use strict';
// Text codecs: GSM 03.38 default alphabet (unpacked, one septet per octet) + extension
// table, UCS-2, Latin-1; "units" for splitting, decoding by data_coding.

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
function decodeDefault(buf, defaultAlphabet) {
	switch (defaultAlphabet) {
		case 'ascii': return buf.toString('latin1').replace(/[\x80-\xff]/g, '\uFFFD');
		case 'latin1': return buf.toString('latin1');
		default: return gsmDecode(buf);
	}
}

function decodeText(buf, dataCoding, defaultAlphabet) {
	if (!buf) return null;
	const dc = dataCoding & 0xFF;
	if (dc === 0x00) return decodeDefault(buf, defaultAlphabet);
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

module.exports = {
	gsmUnits, gsmDecode, ucs2Units, ucs2Decode, latin1Units, decodeText,
};
