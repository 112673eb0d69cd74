"""`opscore local` as a user starts and stops it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.e2e.conftest import Api, Contract, start_local


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("opscore")
    return subprocess.run(  # noqa: S603 - our own command
        [str(executable), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_without_an_admin_key_one_is_generated_printed_and_works(tmp_path: Path, contract: Contract) -> None:
    running = start_local(tmp_path, {"OPSCORE_ADMIN_KEY": ""})
    record = REPO / ".opscore" / "runtimes" / f"{running.process.pid}.json"
    try:
        assert running.admin_key.startswith("opsk_")
        assert json.loads(record.read_text())["admin_key"] == running.admin_key, "recorded for other commands"
        api = Api(running.base_url, running.admin_key, contract)
        assert api.admin("POST", "/keys", body={"role": "admin"}).status == 201
        assert api.request("GET", "/health").status == 200  # emits no metric, so Powertools warns
    finally:
        assert running.stop() == 0
    remaining = []
    while not running.lines.empty():
        remaining.append(running.lines.get())
    assert "stopped" in remaining
    assert not record.exists(), "a clean stop removes the runtime's record"
    assert not [line for line in remaining if "Warning" in line], "warnings go to the log file, not the console"
    logged = running.log_path.read_text()
    assert '"level": "WARNING"' in logged, "the warning went to the log file"


def test_a_short_admin_key_is_refused_at_start(tmp_path: Path) -> None:
    import os

    result = run_cli(
        "local",
        "--port",
        "0",
        "--log-file",
        str(tmp_path / "x.jsonl"),
        env={**os.environ, "OPSCORE_ADMIN_KEY": "short"},
    )
    assert result.returncode == 2
    assert "OPSCORE_ADMIN_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("local", "--port", str(port), "--log-file", str(tmp_path / "x.jsonl"))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("local", "--template", str(tmp_path / "none.yaml"))
    assert result.returncode == 2
    assert "no SAM template" in result.stderr
