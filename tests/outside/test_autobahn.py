"""The Autobahn WebSocket test-suite cases (RFC 6455), run by `kosoku` (PyPI: the Autobahn cases
with a Rust runner) against an echo app under rsgi's ASGI websockets.

Groups 12.* and 13.* are permessage-deflate (RFC 7692), which rsgi does not implement yet (those
cases report UNIMPLEMENTED); every other case must end OK, NON-STRICT or INFORMATIONAL, as the
Autobahn report judges them. kosoku writes `REPORT_DIR/index.json`: {agent: {case id: {"behavior",
"behaviorClose", ...}}}, and an HTML page per case (`index.html`) for reading a failure.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from conftest import StartServer, have
from production.conftest import unavailable

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
EXCLUDED = ("12.", "13.")  # permessage-deflate


def test_autobahn_cases(serve: StartServer, tmp_path: Path) -> None:
    if not have("kosoku"):
        unavailable("kosoku is not installed (pip install kosoku)")
    server = serve("apps.outside:echo")
    report = tmp_path / "autobahn"
    cmd = ["kosoku", "-m", "fuzzingclient", "-p", "4", "-o", str(report)]
    cmd += [arg for group in EXCLUDED for arg in ("-x", group + "*")]
    done = subprocess.run([*cmd, f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=100)
    index = report / "index.json"
    assert index.exists(), f"kosoku wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    agents = json.loads(index.read_text())
    assert len(agents) == 1, list(agents)
    (cases,) = agents.values()

    behaviors = Counter(case["behavior"] for case in cases.values())
    closes = Counter(case["behaviorClose"] for case in cases.values())
    print(f"Autobahn: {len(cases)} cases; behavior {dict(behaviors)}; behaviorClose {dict(closes)}")
    for case_id, case in sorted(cases.items()):
        if case["behavior"] != "OK":
            print(f"  {case_id}: {case['behavior']} (close: {case['behaviorClose']})")

    # The whole suite ran (kosoku's 301 cases outside 12.*/13.* in 2026), and no excluded case.
    assert len(cases) > 250, sorted(cases)
    assert not [case_id for case_id in cases if case_id.startswith(EXCLUDED)]
    failed = {case_id: case for case_id, case in cases.items() if case["behavior"] not in PASSING}
    assert not failed, f"Autobahn cases failed (report: {report / 'index.html'}):\n{json.dumps(failed, indent=1)}"
    assert "panicked" not in server.log(), server.log()[-4000:]
