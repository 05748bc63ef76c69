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
from gateway.model import MessageRow
from gateway.storage.jobs import event_json


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
