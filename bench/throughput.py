"""The local runtime over HTTP: state updates per second from a concurrent client, and 3-task sessions per minute."""

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
from pathlib import Path
from typing import Any

ADMIN_KEY = "bench-admin-key-for-the-local-runtime"


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
    local = Local(root, scratch / "local.jsonl")
    try:
        return {
            "state_updates_per_second": _state_updates(local, seconds, clients),
            "three_task_sessions_per_minute": _sessions(local, sessions),
            "clients": clients,
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


def _sessions(local: Local, count: int) -> float:
    tasks = [{"id": name, "action": "x"} for name in ("a", "b", "c")]
    assert local.call("POST", "/workflows", {"name": "bench-three", "tasks": tasks})[0] in {200, 201}
    assert local.call("PUT", "/agent/bench-worker", {"name": "worker"})[0] in {200, 201}
    started = time.monotonic()
    ids = [
        local.call("POST", "/agent/bench-worker/workflow", {"workflow_id": "bench-three"})[1]["session_id"]
        for _ in range(count)
    ]
    remaining = set(ids)
    while remaining:
        for session_id in list(remaining):
            _, view = local.call("GET", f"/agent/bench-worker/sessions/{session_id}")
            if view["status"] == "completed":
                remaining.discard(session_id)
                continue
            for task in view["tasks"]:
                if task["status"] == "dispatched":
                    local.call(
                        "POST",
                        f"/agent/bench-worker/tasks/{task['task_id']}/result",
                        {"status": "succeeded", "attempt": task["attempts"]},
                    )
        if time.monotonic() - started > 300:
            raise TimeoutError("sessions did not complete")
    return round(count / (time.monotonic() - started) * 60, 1)
