"""The local runtime over HTTP: state updates per second from concurrent clients, and 3-task sessions per minute
worked by one polling agent."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

ADMIN_KEY = "bench-admin-key-for-the-local-runtime"
DEADLINE_SECONDS = 300.0
# How long the polling agent waits after a pull that found nothing ready.
POLL_SECONDS = 0.05


class Local:
    def __init__(self, root: Path, log: Path) -> None:
        executable = Path(sys.executable).with_name("opscore")
        self.process = subprocess.Popen(  # noqa: S603 - our own command
            [str(executable), "local", "--port", "0", "--log-file", str(log)],
            cwd=root,
            env={"PATH": "/usr/bin:/bin", "OPSCORE_ADMIN_KEY": ADMIN_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if found := re.match(r"^Ops-Core local runtime on http://([^:/]+):(\d+)(\S*)$", line.strip()):
                self.host, self.port, self.prefix = found.group(1), int(found.group(2)), found.group(3)
                break
        else:
            raise RuntimeError("opscore local did not start")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def call(self, method: str, path: str, body: Any = None, key: str = ADMIN_KEY) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = {"X-API-Key": key, "Content-Type": "application/json"}
            connection.request(
                method, self.prefix + path, body=json.dumps(body) if body is not None else None, headers=headers
            )
            response = connection.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)


def measure(root: Path, scratch: Path, seconds: float, clients: int, sessions: int) -> dict[str, Any]:
    log = scratch / "local.jsonl"
    local = Local(root, log)
    try:
        updates = _state_updates(local, seconds, clients)
        worked = _sessions(local, sessions, log)
        return {
            "state_updates_per_second": updates,
            "three_task_sessions_per_minute": worked["per_minute"],
            "clients": clients,
            "agent_polls": worked["polls"],
            "log_bytes_per_session": worked["log_bytes_per_session"],
        }
    finally:
        local.stop()


def _state_updates(local: Local, seconds: float, clients: int) -> float:
    for client in range(clients):
        assert local.call("PUT", f"/agent/bench-{client}", {"name": "bench"})[0] in {200, 201}
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    def run(client: int) -> None:
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            stamp = f"2026-11-24T06:00:{sequence // 1_000_000:02d}.{sequence % 1_000_000:06d}Z"
            status, _ = local.call("POST", f"/agent/bench-{client}/state", {"state": "busy", "timestamp": stamp})
            assert status == 200
            counts[client] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(run, range(clients)))
    return round(sum(counts) / (time.monotonic() - started), 1)


def _sessions(local: Local, count: int, log: Path) -> dict[str, Any]:
    """`count` 3-task sessions at once, worked by one polling agent: it leases with POST .../tasks/next and reports
    each leased task's result, as an agent would; the bench (not the agent) watches the sessions end.

    Also what the functions log for one session (what CloudWatch Logs would ingest), from the triggers to the last
    result, which ends its session in the same write."""
    tasks = [{"id": name, "action": "x"} for name in ("a", "b", "c")]
    assert local.call("POST", "/workflows", {"name": "bench-three", "tasks": tasks})[0] in {200, 201}
    assert local.call("PUT", "/agent/bench-worker", {"name": "worker"})[0] in {200, 201}
    status, created = local.call("POST", "/keys", {"agent_id": "bench-worker"})
    assert status == 201, created
    key = created["api_key"]  # the agent works with its own key
    log_from = log.stat().st_size
    started = time.monotonic()
    ids = [
        local.call("POST", "/agent/bench-worker/workflow", {"workflow_id": "bench-three"})[1]["session_id"]
        for _ in range(count)
    ]
    polls = {"leased": 0, "nothing_ready": 0}
    while polls["leased"] < 3 * count:
        if time.monotonic() - started > DEADLINE_SECONDS:
            raise TimeoutError("the agent did not get every task")
        status, task = local.call("POST", "/agent/bench-worker/tasks/next", key=key)
        if status == 204:
            polls["nothing_ready"] += 1
            time.sleep(POLL_SECONDS)
            continue
        assert status == 200, (status, task)
        assert task["session_id"] in ids, task
        polls["leased"] += 1
        status, reply = local.call(
            "POST",
            f"/agent/bench-worker/tasks/{task['task_id']}/result",
            {"status": "succeeded", "attempt": task["attempt"]},
            key=key,
        )
        assert status == 200, reply
    logged = function_log_bytes(log, log_from, log.stat().st_size)
    remaining = set(ids)
    while remaining:
        for session_id in list(remaining):
            _, view = local.call("GET", f"/agent/bench-worker/sessions/{session_id}")
            if view["status"] == "completed":
                remaining.discard(session_id)
        if time.monotonic() - started > DEADLINE_SECONDS:
            raise TimeoutError("sessions did not complete")
    per_minute = round(count / (time.monotonic() - started) * 60, 1)
    return {"per_minute": per_minute, "polls": polls, "log_bytes_per_session": round(logged / count)}


def function_log_bytes(log: Path, start: int, end: int) -> int:
    """The bytes the functions wrote between two offsets of the local runtime's log (their JSON lines and metric
    lines, each with its newline, as Lambda sends them to CloudWatch Logs): the runtime's own lines left out (they
    stand for API Gateway), and so are the log lines of the empty polls (answered 204), which are the agent's idling
    (their metric lines, which carry no correlation id, are counted: the bench's agent rarely polls empty)."""
    with log.open("rb") as file:
        file.seek(start)
        lines = [(line, json.loads(line)) for line in file.read(end - start).splitlines() if line.strip()]
    idle = {
        entry.get("correlation_id")
        for _, entry in lines
        if entry.get("event") == "request" and entry.get("status") == HTTPStatus.NO_CONTENT
    }
    return sum(
        len(raw) + 1
        for raw, entry in lines
        if entry.get("service") == "opscore" and entry.get("correlation_id") not in idle
    )
