"""A small keep-alive HTTP/1.1 client for the webhook action (see `pool.py`)."""
