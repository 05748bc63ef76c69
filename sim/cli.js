'use strict';
// The command line: node smsc.js --smpp-port P --control-port C [...].

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

module.exports = { parseArgs };
