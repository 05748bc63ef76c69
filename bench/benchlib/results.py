"""The results file every bench writes with ``--json-out``: one JSON document,
``{"params", "machine", "time", ...the bench's own keys (summary, ratios, runs)}``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchlib.measure import machine


def results_doc(params: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The document: the bench's parameters, the machine, the time, then ``fields`` in
    the order given."""
    return {
        "params": params,
        "machine": machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
    }


def write_results(path: str | Path, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Write :func:`results_doc` to ``path`` (indented, one trailing newline); returns it."""
    doc = results_doc(params, **fields)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc
