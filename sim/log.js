'use strict';
// One line per event on stderr: `sim <ISO time> <event> k=v ...`.

let quiet = false;

// --quiet leaves out the per-PDU lines (vlog).
function setQuiet(q) {
	quiet = !!q;
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
	if (!quiet) log(event, fields);
}

module.exports = { log, vlog, setQuiet };
