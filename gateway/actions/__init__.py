"""Actions run from the durable outbox: one file per kind behind the `Action` protocol."""
