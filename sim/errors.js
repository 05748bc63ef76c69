'use strict';
// An error the control API answers with its HTTP status and {error: message}.

class HttpError extends Error {
	constructor(code, message) {
		super(message);
		this.code = code;
	}
}

module.exports = { HttpError };
