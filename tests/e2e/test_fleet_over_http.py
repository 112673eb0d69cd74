"""GET /agents and GET /agent/{agentId}/stats over HTTP, and `opscore agents` / `opscore agent ID` against a local
runtime the test starts (every answer held to docs/openapi.yaml)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.e2e.conftest import Api, Contract, start_local
from tests.e2e.test_sessions_over_http import Operator

ONE_TASK = [{"id": "fetch", "action": "web.fetch"}]


def run_flows(agent: Operator) -> None:
    """The agent reports idle, then does one task that succeeds and one that fails."""
    now = datetime.now(UTC).isoformat()
    state = agent.api.request(
        "POST", f"/agent/{agent.agent_id}/state", key=agent.agent_key, body={"state": "idle", "timestamp": now}
    )
    assert state.status == 200, state.body
    succeeded = agent.start(ONE_TASK)
    agent.succeed(agent.lease(succeeded, "fetch"))
    agent.ended(succeeded)
    failed = agent.start(ONE_TASK)
    agent.fail(agent.lease(failed, "fetch"))
    agent.ended(failed)


def listed(api: Api, **query: str) -> list[dict[str, Any]]:
    """Every agent the listing shows, page by page."""
    agents: list[dict[str, Any]] = []
    query = {"limit": "2", **query}
    for _ in range(1000):
        reply = api.admin("GET", "/agents", query=query)
        assert reply.status == 200, reply.body
        agents += reply.body["items"]
        if "next_token" not in reply.body:
            return agents
        query["next_token"] = reply.body["next_token"]
    raise AssertionError("the listing never ended")


def test_the_fleet_and_an_agents_stats_over_http(api: Api) -> None:
    agent = Operator(api)
    run_flows(agent)

    mine = [item for item in listed(api, state="idle") if item["agent_id"] == agent.agent_id]
    assert [(item["state"], item["queued"], item["in_flight"]) for item in mine] == [("idle", 0, 0)]
    assert agent.agent_id not in {item["agent_id"] for item in listed(api, state="busy")}
    unknown = api.admin("GET", "/agents", query={"status": "idle"})
    assert (unknown.status, unknown.body["error"]["details"][0]["field"]) == (400, "status")
    assert api.request("GET", "/agents", key=agent.agent_key).status == 403

    for key in (api.admin_key, agent.agent_key):
        reply = api.request("GET", f"/agent/{agent.agent_id}/stats", key=key, query={"window": "15m"})
        assert reply.status == 200, reply.body
        assert reply.body["tasks"] == {"succeeded": 1, "failed": 1, "timed_out": 0, "success_rate": 0.5}
        assert (reply.body["run_time_ms"]["count"], reply.body["sampled"]) == (2, False)
    refused = api.admin("GET", f"/agent/{agent.agent_id}/stats", query={"window": "2d"})
    assert (refused.status, refused.body["error"]["details"][0]["field"]) == (400, "window")


def opscore(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("opscore")
    return subprocess.run(  # noqa: S603 - our own command
        [str(executable), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_opscore_agents_and_agent_print_the_fleet_and_the_stats(tmp_path: Path, contract: Contract) -> None:
    running = start_local(tmp_path, {"OPSCORE_ADMIN_KEY": "fleet-cli-admin-key-for-the-local-runtime"})
    try:
        api = Api(running.base_url, running.admin_key, contract)
        agent = Operator(api)
        run_flows(agent)
        # not a terminal: no colour; a wide one so ids are not wrapped; times in the user's zone
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("OPSCORE_")},
            "COLUMNS": "200",
            "TZ": "Europe/Paris",
            "OPSCORE_URL": running.base_url,
            "OPSCORE_API_KEY": running.admin_key,
        }

        fleet = opscore("agents", env=env)
        assert fleet.returncode == 0, fleet.stderr
        assert "\x1b[" not in fleet.stdout, "no colour when the output is not a terminal"
        (row,) = [line for line in fleet.stdout.splitlines() if agent.agent_id in line]
        assert " idle " in row
        assert " CET" in row, "times are local, with the zone"
        assert opscore("agents", "--state", "busy", env=env).stdout.count(agent.agent_id) == 0
        # piped without COLUMNS: rows are not cut to 80 columns, so a script can grep them
        unsized = {name: value for name, value in env.items() if name != "COLUMNS"}
        (piped,) = [line for line in opscore("agents", env=unsized).stdout.splitlines() if agent.agent_id in line]
        assert " idle " in piped
        assert " CET" in piped
        assert "…" not in piped
        # and a reader that goes away (`| head -1`) ends it quietly
        reading = subprocess.Popen(  # noqa: S603 - our own command
            [str(Path(sys.executable).with_name("opscore")), "agents"],
            cwd=REPO,
            env=unsized,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert reading.stdout is not None
        reading.stdout.close()
        _, errors = reading.communicate(timeout=60)
        assert (reading.returncode, "Traceback" in errors) == (0, False), errors

        stats = opscore("agent", agent.agent_id, "--window", "15m", env=env)
        assert stats.returncode == 0, stats.stderr
        assert "1 succeeded, 1 failed, 0 timed out" in stats.stdout
        assert "50.0%" in stats.stdout
        as_json = opscore("agent", agent.agent_id, "--json", env=env)
        assert json.loads(as_json.stdout)["tasks"]["succeeded"] == 1

        bad = opscore("agent", agent.agent_id, "--window", "2d", env=env)
        assert (bad.returncode, "window" in bad.stderr) == (2, True)
        missing = opscore("agent", "nobody-here", env=env)
        assert (missing.returncode, "not_found" in missing.stderr) == (1, True)
        unset = {name: value for name, value in env.items() if not name.startswith("OPSCORE_")}
        found = opscore("agents", env=unset)  # the local runtime of this checkout (the e2e suite's, or this one)
        assert found.returncode == 0, found.stderr
        nowhere = opscore("agents", env=unset, cwd=tmp_path)
        assert (nowhere.returncode, "--url" in nowhere.stderr) == (1, True)

        # --watch, piped: each refresh is printed in turn, shows a change, and Ctrl-C ends it without an error
        with Watching(env) as watching:
            assert " idle " in watching.row_of(agent.agent_id, "idle")
            now = datetime.now(UTC).isoformat()
            body = {"state": "busy", "timestamp": now}
            assert api.request("POST", f"/agent/{agent.agent_id}/state", key=agent.agent_key, body=body).status == 200
            assert " busy " in watching.row_of(agent.agent_id, "busy")
            assert watching.stop() == 0, "Ctrl-C ends --watch, and that is not an error"
    finally:
        assert running.stop() == 0


class Watching:
    """`opscore agents --watch` running with its output piped, read line by line on a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        executable = Path(sys.executable).with_name("opscore")
        self.process = subprocess.Popen(  # noqa: S603 - our own command
            [str(executable), "agents", "--watch", "--interval", "1"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def row_of(self, agent_id: str, state: str) -> str:
        """The first row printed for the agent in that state (earlier refreshes are passed over)."""
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if agent_id in line and f" {state} " in line:
                return line
        raise AssertionError(f"opscore agents --watch showed no {state} row for {agent_id} within 30 s")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def __enter__(self) -> Watching:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
