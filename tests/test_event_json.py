"""Event bodies are made by orjson but must be byte for byte what
`json.dumps(payload, separators=(",", ":"), ensure_ascii=False)` gives (SPEC §5: the
body is what the receiver reads and what its signature covers)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.actions.emitter import Emitter
from gateway.events import mo_event, poll_event
from gateway.model import MessageRow, MtStatusChange
from gateway.storage.jobs import NoEvents, event_json


def _stdlib(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text())  # text() includes lone surrogates, control characters, U+2028
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=12), values, max_size=8))
def test_any_payload_is_what_json_dumps_gives(payload: dict[str, Any]) -> None:
    assert event_json(payload) == _stdlib(payload)


@settings(max_examples=150, deadline=None)
@given(text=st.text(), sender=st.text(max_size=20), seg=st.integers(1, 255),
       at=st.floats(0, 4e9))
def test_an_mo_event_is_what_json_dumps_gives(text: str, sender: str, seg: int,
                                              at: float) -> None:
    ev = mo_event(MessageRow(id="m1", direction="mo", smsc="s", vmn="5551000100",
                             msisdn=sender, sender=sender, recipient="5551000100", text=text,
                             data_coding=8, segments=seg, status="received", created_at=at,
                             updated_at=at, raw_pdu=None, dedup_key=None, keyword=None,
                             route="default", fanout=1))
    assert event_json(ev) == _stdlib(ev)


def test_the_cases_where_orjson_differs_fall_back() -> None:
    for payload in ({"x": 1e-05}, {"x": [{"y": 1.5e-7}]}, {"t": "a\ud800b"},
                    {"n": 2**64}, {1: "int key"}):
        assert event_json(payload) == _stdlib(payload)  # type: ignore[arg-type]


def test_the_stored_body_of_an_event_job() -> None:
    ev = poll_event(poll="p", option="RED", msisdn="15550001111", tally={"RED": 2},
                    at=1.0)
    rows = Emitter(mqtt_prefix="vmn").event(ev, "poll", "p", message_id=None, now=1.0,
                                             webhook="http://x/hook")
    assert [r[6] for r in rows] == [_stdlib(ev)] * 2


# The body of `mt_status` events as storage/mts.py built them before the action layer did
# (gateway.events.mt_status_event called in `announce`): the same change must give the
# same bytes.
_CHANGE = MtStatusChange(
    id="019ad6c2f1a40000b3c1d2e4", to="15559876543", sender="5551000100", status="failed",
    smsc_message_ids=("a1", "b2"), error="delivery failed",
    in_reply_to="019ad6c2f1a40000b3c1d2e3", client_ref="order-7", at=1764660662.114,
    receipt_stat="UNDELIV", receipt_err="001", notify="callback:http://h/cb", after=42)
_BODY = ('{"type":"mt_status","id":"019ad6c2f1a40000b3c1d2e4","to":"15559876543",'
         '"from":"5551000100","status":"failed","smsc_message_id":%s,'
         '"error":"delivery failed","in_reply_to":"019ad6c2f1a40000b3c1d2e3",'
         '"at":"2025-12-02T07:31:02.114Z","receipt":{"stat":"UNDELIV","err":"001"},'
         '"client_id":"order-7"}')


def test_the_mt_status_event_of_a_change() -> None:
    rows = Emitter(mqtt_prefix="vmn").mt_status(_CHANGE)
    assert [(r.kind, r.target, r.message_id, r.after, r.created_at) for r in rows] == [
        ("mqtt", "vmn/mt/status", _CHANGE.id, None, _CHANGE.at),
        ("webhook", "callback:http://h/cb", _CHANGE.id, 42, _CHANGE.at)]
    assert [r.payload for r in rows] == [_BODY % '["a1","b2"]'] * 2
    # one part: its id alone; a part without an id: null in the list; none yet: null
    for ids, shown in ((("only",), '"only"'), (("x", None), '["x",null]'), ((), "null")):
        change = _CHANGE._replace(smsc_message_ids=ids)
        assert [r.payload for r in Emitter().mt_status(change)] == [_BODY % shown]
    bare = MtStatusChange(id="i", to="t", sender="s", status="queued", smsc_message_ids=(),
                          error=None, in_reply_to=None, client_ref=None, at=1.5,
                          receipt_stat=None, receipt_err=None, notify=None, after=None)
    assert [r.payload for r in Emitter(mqtt_prefix="p").mt_status(bare)] == [
        '{"type":"mt_status","id":"i","to":"t","from":"s","status":"queued",'
        '"smsc_message_id":null,"error":null,"in_reply_to":null,'
        '"at":"1970-01-01T00:00:01.500Z","receipt":null}']
    assert Emitter().mt_status(bare) == []  # no MQTT, no webhook: no job


def test_the_stores_default_emitter_plans_no_jobs() -> None:
    """storage/jobs.py `NoEvents` (the Store's when given no emitter) plans nothing, not
    even for a change with a webhook target: jobs are the action layer's `Emitter`."""
    for change in (_CHANGE, _CHANGE._replace(notify=None),
                   _CHANGE._replace(notify="profile:crm", after=None)):
        assert NoEvents().mt_status(change) == []
    assert NoEvents().event({"type": "x"}, "mt", "status", message_id="i", now=1.0,
                            webhook="http://127.0.0.1:9/hook") == []
    assert NoEvents().mqtt_prefix is None
