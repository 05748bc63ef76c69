'use strict';
// Monkey patches of node-smpp 0.5.1: a robust stream extraction that replaces
// Session#_extractPDUs (generic_nack + close on framing errors instead of a wedged
// session), and keeps every PDU's raw bytes as pdu.raw. Required for its side effect.

const smpp = require('smpp');
const { log } = require('./log');

const PDU = smpp.PDU;

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

module.exports = { safeEmit };
