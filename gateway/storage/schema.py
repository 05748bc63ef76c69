"""Tables. Times are UNIX seconds (float): cheap to write on the MO hot path and the
same on SQLite and PostgreSQL; the CLI and events render them as ISO-8601 UTC."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# One row per logical message, MO (reassembled) or MT (before splitting).
messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("direction", String(2), nullable=False),  # mo | mt
    Column("smsc", String(64)),  # bind that received the MO / sent the MT
    Column("vmn", String(21), nullable=False),
    Column("msisdn", String(21), nullable=False),  # the customer's number
    Column("sender", String(21), nullable=False),  # from
    Column("recipient", String(21), nullable=False),  # to
    Column("text", Text, nullable=False),
    Column("data_coding", Integer, nullable=False, default=0),
    Column("segments", Integer, nullable=False, default=1),
    Column("keyword", String(64)),
    Column("route", String(16)),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("in_reply_to", String(32)),
    Column("client_ref", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("raw_pdu", LargeBinary),
    Column("dedup_key", String(32)),  # not indexed: only read at start-up, by time
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    # 1 while the MO's actions are not yet expanded into jobs and MTs (see fanout.py)
    Column("fanout", Integer, nullable=False, default=0),
    Column("notify", Text),  # MT: webhook target that hears its mt_status events
    Column("exempt", Integer, nullable=False, default=0),  # MT: sent even if opted out
    # MT: the claim that may send it now; every status write of a sender checks it, so
    # a sender whose lease was lost (the MT was claimed again) can neither submit nor write
    Column("lease_token", String(32)),
    # MT: the delivery receipt that decided its status (`stat`, `err` as received)
    Column("receipt_stat", String(16)),
    Column("receipt_err", String(16)),
    # MT from the HTTP API (0009): forced `gsm`/`ucs2` (NULL: automatic), validity minutes
    Column("coding", String(4)),
    Column("validity", Integer),
)
_FANOUT = text("fanout = 1")
Index("ix_messages_fanout", messages.c.created_at, sqlite_where=_FANOUT,
      postgresql_where=_FANOUT)
# (created_at, vmn, direction): `GET /v1/stats` counts from the index alone (0011).
Index("ix_messages_stats", messages.c.created_at, messages.c.vmn, messages.c.direction)
Index("ix_messages_vmn", messages.c.vmn, messages.c.created_at)
Index("ix_messages_msisdn", messages.c.msisdn, messages.c.created_at)
# Only MTs waiting to be sent are in the queue index: MOs never pay for it.
_QUEUED = text("direction = 'mt' AND status IN ('queued', 'sending')")
Index("ix_messages_queue", messages.c.next_attempt_at, sqlite_where=_QUEUED,
      postgresql_where=_QUEUED)

# Every part of a concatenated MO, durable before it is acknowledged.
mo_parts = Table(
    "mo_parts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("smsc", String(64), nullable=False),
    Column("concat_key", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("data_coding", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("raw_pdu", LargeBinary, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("dedup_key", String(32)),
    Column("message_id", String(32)),  # set once reassembled (or timed out)
)
Index("ix_mo_parts_key", mo_parts.c.concat_key)
Index("ix_mo_parts_open", mo_parts.c.message_id)

# One row per submit_sm of an MT.
mt_segments = Table(
    "mt_segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("smsc", String(64)),
    Column("smsc_message_id", String(65)),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("updated_at", Float, nullable=False),
    Column("receipt_stat", String(16)),  # this segment's receipt, as received
    Column("receipt_err", String(16)),
)
Index("ix_mt_segments_msg", mt_segments.c.message_id)
Index("ix_mt_segments_smsc_id", mt_segments.c.smsc_message_id)

# Delivery receipts as received (durable before the ack, matched to an MT later if the
# receipt overtakes our record of the submit_sm_resp).
receipts = Table(
    "receipts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("smsc", String(64), nullable=False),
    Column("smsc_message_id", String(65), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", String(16)),
    Column("raw_pdu", LargeBinary, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("matched", Integer, nullable=False, default=0),
)
Index("ix_receipts_smsc_id", receipts.c.smsc_message_id)

status_history = Table(
    "status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("detail", Text),
)
Index("ix_status_history_msg", status_history.c.message_id)

# -- actions (issue 3) ----------------------------------------------------------------

# The durable action queue: one row per webhook call, email or MQTT event to deliver.
# 64-bit ids chosen by the gateway (storage/jobs.py); on SQLite an INTEGER PRIMARY KEY
# is the 64-bit rowid.
JobId = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("id", JobId, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # webhook | email | mqtt
    Column("target", Text, nullable=False),  # URL / profile:NAME, address, topic
    Column("event_id", String(64), nullable=False),
    Column("message_id", String(32)),  # the MO or MT the job is about
    # runs only once job `after` is no longer pending: a trigger URL hears the MO first,
    # then the statuses of the replies it caused, in order
    Column("after", JobId),
    Column("payload", Text, nullable=False),  # JSON
    Column("status", String(12), nullable=False),  # pending | done | failed | dead
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
_PENDING = text("status = 'pending'")
Index("ix_jobs_due", jobs.c.kind, jobs.c.next_attempt_at, sqlite_where=_PENDING,
      postgresql_where=_PENDING)
Index("ix_jobs_message", jobs.c.message_id)

job_attempts = Table(
    "job_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", JobId, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("outcome", String(8), nullable=False),  # ok | retry | fail
    Column("status", Integer),
    Column("latency_ms", Float),
    Column("detail", Text),
)
Index("ix_job_attempts_job", job_attempts.c.job_id)

# Opt-in / opt-out state per customer and sender ("*" = every sender). The primary key
# (msisdn, vmn) is the index of the check made before every MT (storage/mts.py).
opt_state = Table(
    "opt_state",
    metadata,
    Column("msisdn", String(21), primary_key=True),
    Column("vmn", String(21), primary_key=True),
    Column("state", String(3), nullable=False),  # in | out
    Column("keyword", String(64)),
    Column("updated_at", Float, nullable=False),
)

# Every opt keyword received (migration 0003): who, when, which keyword, which VMN.
opt_history = Table(
    "opt_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("msisdn", String(21), nullable=False),
    Column("vmn", String(21), nullable=False),  # the scope: the VMN, or "*" for all
    Column("received_on", String(21)),  # the VMN the keyword was sent to
    Column("state", String(3), nullable=False),  # in | out
    Column("keyword", String(64)),
    Column("message_id", String(32)),  # the MO that carried it
    Column("changed", Integer, nullable=False),  # 0: the state was already this
    Column("at", Float, nullable=False),
    # keyword (an MO carried it) | api (PUT /v1/optins) (migration 0011)
    Column("source", String(8), nullable=False, server_default=text("'keyword'")),
)
Index("ix_opt_history_msisdn", opt_history.c.msisdn, opt_history.c.at)
Index("ix_opt_history_at", opt_history.c.at)

poll_votes = Table(
    "poll_votes",
    metadata,
    Column("poll", String(64), primary_key=True),
    Column("msisdn", String(21), primary_key=True),
    Column("option", String(64), nullable=False),
    Column("vmn", String(21), nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("at", Float, nullable=False),
)

# One row per (VMN, msisdn, keyword) (migration 0003): the latest text and MO, when it
# was first and last seen, and how many times. keyword is "" for a default configuration.
leads = Table(
    "leads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vmn", String(21), nullable=False),
    Column("msisdn", String(21), nullable=False),
    Column("keyword", String(64)),
    Column("text", Text, nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("at", Float, nullable=False),  # first seen
    Column("count", Integer, nullable=False, server_default=text("1")),
    Column("last_at", Float, nullable=False, server_default=text("0")),
)
Index("ux_leads_key", leads.c.vmn, leads.c.msisdn, leads.c.keyword, unique=True)
Index("ix_leads_last", leads.c.last_at)

# Reply addresses of forwarded emails: reply+<token>@domain -> the MO's sender and VMN.
email_tokens = Table(
    "email_tokens",
    metadata,
    Column("token", String(32), primary_key=True),
    Column("vmn", String(21), nullable=False),
    Column("msisdn", String(21), nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("recipient", String(320)),  # the address the forward went to (0005)
    # Replies accepted in the current window (a fixed hour from window_start).
    Column("window_start", Float, nullable=False, server_default=text("0")),
    Column("window_count", Integer, nullable=False, server_default=text("0")),
)

# One row per gateway instance ([gateway] name): how its last run ended. `stopped_at` is
# set by a graceful stop, with the dedup keys the SMSC may still redeliver (`suspects`,
# JSON [[key, since], ...]); NULL while it runs, so after a crash (see intake_state.py).
intake_runs = Table(
    "intake_runs",
    metadata,
    Column("instance", String(64), primary_key=True),
    Column("stopped_at", Float),
    Column("suspects", Text),
)

# Numbers managed through the HTTP API (gateway/dynnumbers.py): one row per VMN, its
# `[[number]]` table as JSON (keyword tables under "keywords").
api_numbers = Table(
    "api_numbers",
    metadata,
    Column("vmn", String(16), primary_key=True),
    Column("body", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row (id 1): bumped by every change of api_numbers in the same transaction. Every
# instance polls it; a writer's compare-and-set on it orders concurrent changes.
api_numbers_version = Table(
    "api_numbers_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# -- HTTP API (issue 13, migration 0009) ----------------------------------------------

# API keys. The key itself is never stored: `key_id` is its public part (found by it),
# `hash` the scrypt of the whole key with `salt` (storage/apikeys.py).
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("salt", String(32), nullable=False),
    Column("hash", String(128), nullable=False),
    Column("scopes", String(64), nullable=False),  # "send,read,manage"
    Column("vmns", Text, nullable=False),  # comma-separated; "" = every VMN
    Column("rate", Float),  # requests per second; NULL = no limit
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

# The first answer to each `Idempotency-Key` of a key (POST /v1/messages), kept so that
# a retry gets it again (and queues nothing).
api_idempotency = Table(
    "api_idempotency",
    metadata,
    Column("key_name", String(64), primary_key=True),
    Column("idem_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
)
Index("ix_api_idempotency_created", api_idempotency.c.created_at)
