"""`opscore demo` (what `make demo` runs): it starts its own local runtime, runs three agents on the SDK's worker and
five sessions, and exits 0 with every session as expected and a summary per agent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DEMO_TIMEOUT_SECONDS = 120  # the demo itself gives up after 55 s of sessions; this only stops a hung process


def test_the_demo_runs_every_session_as_expected_and_sums_up_each_agent(tmp_path: Path) -> None:
    # Given a checkout, when `opscore demo` runs with nothing else started
    opscore = Path(sys.executable).with_name("opscore")
    finished = subprocess.run(  # noqa: S603 - our own command, fixed arguments
        [str(opscore), "demo", "--log-file", str(tmp_path / "demo.jsonl")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )

    # Then it exits 0, having seen every session end as expected
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "5 of 5 sessions ended as expected" in finished.stdout
    for outcome in ("research digest: agents", "translated brief (retried)", "post (fails, retries, falls back)"):
        assert re.search(rf"{re.escape(outcome)}\s+│ \w+\s+│ completed\s+│ yes", finished.stdout), finished.stdout
    # and each agent's line of the summary: what its handlers did, what Ops-Core counted, and offline at the end
    assert re.search(r"│ researcher\s+│ 5\s+│ 0\s+│ [\d.]+\s+│ 5\s+│ 0\s+│ offline", finished.stdout), finished.stdout
    assert re.search(r"│ writer\s+│ 2\s+│ 1\s+│ [\d.]+\s+│ 2\s+│ 1\s+│ offline", finished.stdout), finished.stdout
    assert re.search(r"│ publisher\s+│ 1\s+│ 2\s+│ [\d.]+\s+│ 1\s+│ 2\s+│ offline", finished.stdout), finished.stdout
