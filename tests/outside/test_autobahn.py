"""The Autobahn WebSocket test-suite cases (RFC 6455), run by `kosoku` (PyPI: the Autobahn cases
with a Rust runner) against an echo app under rsgi's ASGI websockets.

Every case, the permessage-deflate groups 12.* and 13.* (RFC 7692: 1000 compressed messages
each, under every offer the suite makes) included, must end OK, NON-STRICT or INFORMATIONAL, as the
Autobahn report judges them. Left out: the five 131072-byte cases of each of the 12 data and offer
sets (x.y.10, x.y.15-18: 60 cases, two thirds of the run's 3 minutes on 2 cores); their 65536-byte
neighbours (x.y.9 whole, x.y.14 in 256-byte fragments) take the same paths. All 216 passed when
run by hand (tests/reliability/README.md, "Outside suites"). kosoku writes `REPORT_DIR/index.json`:
{agent: {case id: {"behavior", "behaviorClose", ...}}}, and an HTML page per case (`index.html`) for
reading a failure.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import StartServer, have
from production.conftest import unavailable

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
# The 131072-byte permessage-deflate cases (see above).
EXCLUDED = [f"{group}.*.{n}" for group in (12, 13) for n in (10, 15, 16, 17, 18)]


@pytest.mark.timeout(240)
def test_autobahn_cases(serve: StartServer, tmp_path: Path) -> None:
    if not have("kosoku"):
        unavailable("kosoku is not installed (pip install kosoku)")
    server = serve("apps.outside:echo")
    report = tmp_path / "autobahn"
    cmd = ["kosoku", "-m", "fuzzingclient", "-p", "4", "-o", str(report)]
    cmd += [arg for case in EXCLUDED for arg in ("-x", case)]
    done = subprocess.run([*cmd, f"127.0.0.1:{server.port}"], capture_output=True, text=True, timeout=200)
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

    # The whole suite ran (kosoku's 517 cases in 2026, 457 of them here), permessage-deflate's
    # 156 among them.
    assert len(cases) > 400, sorted(cases)
    assert len([case_id for case_id in cases if case_id.startswith(("12.", "13."))]) == 156
    failed = {case_id: case for case_id, case in cases.items() if case["behavior"] not in PASSING}
    assert not failed, f"Autobahn cases failed (report: {report / 'index.html'}):\n{json.dumps(failed, indent=1)}"
    assert "panicked" not in server.log(), server.log()[-4000:]
