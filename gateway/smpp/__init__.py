"""Sans-IO SMPP 3.4: PDUs, codec, text encodings, ESME state machine; asyncio session."""
