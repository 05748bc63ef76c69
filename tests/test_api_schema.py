"""The API fuzzed from its own OpenAPI document (issue 13): schemathesis against the
running daemon (bound to the simulator), every operation, with a valid key. Checks: no
5xx, status codes, content types, headers and bodies conform to the document, invalid
input is refused, auth is enforced. Bounded: a fixed number of examples per operation.

Not checked: `positive_data_acceptance` (a schema-valid request must be accepted). The
schema cannot say which VMNs are configured, whether a recipient opted out or what the
configuration lets a key do; those are 422/403 by design, with a problem body that the
other checks do verify."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apihelp import ApiGateway

pytest_plugins = ["apihelp"]
VMN = "5551000100"
NUMBERS = f"""
[[number]]
vmn = "{VMN}"
[number.default]
reply = "thanks"
"""
EXAMPLES = 25  # per operation and phase: about 20 s for the messages API


def test_schemathesis_finds_nothing(api_gateway: Callable[..., ApiGateway],
                                    tmp_path: Path) -> None:
    g = api_gateway(numbers=NUMBERS)
    key = g.key("fuzz", scope="send,read,manage")
    exe = Path(sys.executable).parent / "schemathesis"
    res = subprocess.run(
        [str(exe), "run", f"{g.base}/openapi.json", "-H", f"Authorization: Bearer {key}",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", str(EXAMPLES), "--workers", "1", "--seed", "13",
         "--request-timeout", "10", "--report", "junit",
         "--report-junit-path", str(tmp_path / "junit.xml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    doc = g.call("GET", "/openapi.json").json()
    n = sum(1 for ops in doc["paths"].values() for m in ops
            if m in ("get", "put", "post", "delete", "patch"))
    assert f"Selected: {n}/{n}" in out and f"Tested: {n}" in out, out[-3000:]
    assert g.gw.running
