"""The JSON log lines (gateway/log.py `json_line`): orjson on the hot path, the same
values as the stdlib encoder, and never an exception from a log call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from gateway import log
from gateway.daemon import write_mo_lines
from gateway.model import MessageRow

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _json_values, max_size=6))
def test_a_line_reads_back_as_the_stdlib_encoder_would_write_it(obj: dict[str, Any]) -> None:
    line = log.json_line(obj)
    assert "\n" not in line  # one event, one line: a newline in a value stays escaped
    assert json.loads(line) == json.loads(json.dumps(obj))


def test_what_orjson_refuses_falls_back_to_the_stdlib_encoder() -> None:
    huge = 2**70  # orjson stops at 64 bits
    assert json.loads(log.json_line({"n": huge})) == {"n": huge}
    assert json.loads(log.json_line({1: "a"})) == {"1": "a"}  # a key that is not a string


def test_an_object_json_cannot_write_goes_through_the_default() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    assert json.loads(log.json_line({"x": Odd()}, default=repr)) == {"x": "<odd>"}
    # the stdlib fallback without a default takes repr too, not an exception
    assert json.loads(log.json_line({"x": Odd(), "n": 2**70})) == {"x": "<odd>", "n": 2**70}


@pytest.fixture
def json_logging() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


def test_the_configured_renderer_writes_one_json_line_per_event(
        json_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    log.configure("info", json=True)
    structlog.get_logger("t").info("odd.values", big=2**70, obj=object(), text="é\n\"x\"",
                                   url="http://user:secret@example.com/hook")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "odd.values" and event["level"] == "info"
    assert event["big"] == 2**70 and event["text"] == "é\n\"x\""
    assert event["obj"].startswith("<object object")
    assert "secret" not in lines[0]  # the redaction still runs before the renderer


def test_mo_received_lines_keep_their_fields(capsys: pytest.CaptureFixture[str]) -> None:
    row = MessageRow._make(
        [None] * len(MessageRow._fields))._replace(
        id="m1", smsc="s1", vmn="15550001111", sender="15559876543", route="keyword",
        keyword="VOTE", text="VOTE \"yes\"\n")
    write_mo_lines([row], debug=True)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x) for x in lines] == [
        {"id": "m1", "smsc": "s1", "vmn": "15550001111", "from": "15559876543",
         "route": "keyword", "keyword": "VOTE", "event": "mo.received", "level": "info",
         "timestamp": json.loads(lines[0])["timestamp"]},
        {"id": "m1", "text": "VOTE \"yes\"\n", "event": "mo.text", "level": "debug",
         "timestamp": json.loads(lines[1])["timestamp"]},
    ]
