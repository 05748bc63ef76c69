"""Drivers for the peers the gateway is tried against: shipped in the wheel because
``vmn-gateway demo`` uses them at run time, and shared by the test suite (tests/)."""
