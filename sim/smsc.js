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
 * node-smpp quirks handled in patches.js and pdu.js (see README.md in this folder):
 *  - short_message is decoded lossily by the library ({udh, message} with GSM/latin1/UCS2
 *    text); we keep the raw PDU buffer of every received PDU and parse submit_sm ourselves.
 *  - the library's stream reader leaves the session wedged (_busy stays true) after any
 *    parse exception and throws on bad command_length; we replace Session#_extractPDUs
 *    with a defensive version (generic_nack + close on framing errors).
 */

// Modules: cli.js (command line), log.js, gsm.js (text codecs), pdu.js (constants and
// raw PDU parsing), patches.js (node-smpp monkey patches), state.js (shared state),
// server.js (SMPP side), mo.js (MOs and receipts), burst.js, errors.js, control.js
// (HTTP control API). This file starts and stops them.

const { parseArgs } = require('./cli');

let OPTS;
try {
	OPTS = parseArgs(process.argv.slice(2));
} catch (e) {
	process.stderr.write('smsc.js: ' + e.message + '\n');
	process.exit(2);
}

const { log, setQuiet } = require('./log');
setQuiet(OPTS.quiet);
require('./patches');
const { state, init } = require('./state');
init(OPTS);
const { server } = require('./server');
const { httpServer } = require('./control');

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
	if (state.burst) state.burst.cancel();
	for (const s of state.sessions) s.socket.destroy();
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
			system_id: state.config.system_id,
		});
	} catch (e) {
		log('listen_failed', { error: e && e.message });
		process.exit(1);
	}
})();

