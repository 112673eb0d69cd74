"""Session traces over HTTP, and `opscore trace` drawing one: a retried failure handed to a fallback, as spans.

The routes' answers are held to docs/openapi.yaml by the Api client; the command is run as a user runs it, against the
same `opscore local`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Api, LocalProcess
from tests.e2e.test_local_cli import run_cli
from tests.e2e.test_sessions_over_http import Operator

TASKS = [
    {"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 1, "backoff_seconds": 0}, "fallback": "ask"},
    {"id": "ask", "action": "human.ask", "fallback_only": True},
]


def traced_session(api: Api) -> tuple[Operator, str]:
    """fetch fails twice (retried once, a second apart), then ask stands in for it and succeeds."""
    ops = Operator(api)
    session_id = ops.start(TASKS)
    for attempt in (1, 2):
        fetch = ops.lease(session_id, "fetch", attempts=attempt)
        error = {"type": "ToolError", "message": f"try {attempt} failed"}
        assert ops.result(fetch, {"status": "failed", "error": error}).status == 200
    ops.succeed(ops.lease(session_id, "ask"))
    assert ops.ended(session_id)["status"] == "completed"
    return ops, session_id


def test_the_trace_route_answers_the_session_as_spans(api: Api) -> None:
    ops, session_id = traced_session(api)
    reply = api.request("GET", f"/agent/{ops.agent_id}/sessions/{session_id}/trace", key=ops.agent_key)
    assert reply.status == 200, reply.body
    trace: dict[str, Any] = reply.body
    assert [span["name"] for span in trace["spans"]] == [
        f"session {trace['workflow_id']}",
        "fetch attempt 1",
        "backoff before fetch attempt 2",
        "fetch attempt 2",
        "fallback ask for fetch",
        "ask attempt 1",
    ]
    assert {span["trace_id"] for span in trace["spans"]} == {session_id}
    assert [span["status"] for span in trace["spans"]] == ["OK", "ERROR", "OK", "ERROR", "OK", "OK"]
    fallback = trace["spans"][4]
    assert fallback["attributes"]["cause.message"] == "try 2 failed"
    assert trace["spans"][5]["parent_span_id"] == fallback["span_id"]
    backoff = trace["spans"][2]
    assert backoff["duration_ms"] >= 900, "Step Functions waits at least a second before a retry"
    totals = trace["totals"]
    assert (totals["attempts"], totals["retries"], totals["fallbacks"]) == (3, 1, 1)

    by_id = api.admin("GET", f"/sessions/{session_id}/trace")
    assert (by_id.status, by_id.body) == (200, trace)
    assert api.request("GET", f"/sessions/{session_id}/trace", key=ops.agent_key).status == 403
    assert api.admin("GET", f"/sessions/{'0' * 32}/trace").status == 404
    assert api.admin("GET", "/sessions/not-a-session/trace").status == 400


def test_each_span_is_logged_as_it_ends_with_the_routes_ids(api: Api, local_ops_core: LocalProcess | None) -> None:
    if local_ops_core is None:
        pytest.skip("the span lines are read from the local runtime's log file")
    _ops, session_id = traced_session(api)
    trace = api.admin("GET", f"/sessions/{session_id}/trace").body
    logged: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while len(logged) < len(trace["spans"]) and time.monotonic() < deadline:
        lines = map(json.loads, local_ops_core.log_path.read_text().splitlines())
        logged = {
            line["span_id"]: line for line in lines if line.get("event") == "span" and line["trace_id"] == session_id
        }
        time.sleep(0.1)
    assert set(logged) == {span["span_id"] for span in trace["spans"]}, "one line per span, named as the route names it"
    for span in trace["spans"]:
        line = logged[span["span_id"]]
        assert (line["message"], line["status"], line["kind"], line["end_time"]) == (
            "span ended", span["status"], span["kind"], span["end_time"],
        )  # fmt: skip
        assert line.get("parent_span_id") == span["parent_span_id"]
        assert line["session_id"] == session_id
        assert line["correlation_id"], "a span line carries the base fields"
        if span["kind"] != "session":  # the session's line has its start from its id, to the microsecond
            assert (line["name"], line["start_time"]) == (span["name"], span["start_time"])
        if span["kind"] in {"attempt", "fallback"}:  # the session's line lacks its workflow (the route reads it)
            assert line["attributes"] == span["attributes"]
    fallback = next(span for span in trace["spans"] if span["kind"] == "fallback")
    assert logged[fallback["span_id"]]["attributes"]["cause.message"] == "try 2 failed", "the line says why, too"


def test_opscore_trace_draws_the_waterfall_and_exits_as_scripts_expect(api: Api, tmp_path: Path) -> None:
    ops, session_id = traced_session(api)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPSCORE_")}

    drawn = run_cli("trace", session_id, "--url", api.base_url, "--key", api.admin_key, env=env)
    assert drawn.returncode == 0, drawn.stderr
    out = drawn.stdout
    for shown in ("fetch attempt 1", "backoff before fetch attempt 2", "fallback ask for fetch", "ask attempt 1"):
        assert shown in out, out
    assert "retried" in out
    assert "ToolError" in out
    assert "attempts 3 (retried 1, timed out 0), fallbacks 1" in out
    assert "█" in out
    assert "\x1b[" not in out, "no colour when the output is not a terminal"

    # an agent's key needs --agent; the environment stands in for the flags
    as_agent = run_cli(
        "trace", session_id, "--agent", ops.agent_id, "--json",
        env={**env, "OPSCORE_URL": api.base_url.removesuffix("/v1/opscore"), "OPSCORE_API_KEY": ops.agent_key},
    )  # fmt: skip
    assert as_agent.returncode == 0, as_agent.stderr
    assert json.loads(as_agent.stdout)["session_id"] == session_id

    missing = run_cli("trace", "0" * 32, "--url", api.base_url, "--key", api.admin_key, env=env)
    assert (missing.returncode, "404 not_found" in missing.stderr) == (1, True), missing.stderr
    # without --url, --key or their variables: the local runtime of the checkout it runs in, else a clear error
    found = run_cli("trace", session_id, env=env)
    assert (found.returncode, "fetch attempt 1" in found.stdout) == (0, True), found.stderr
    nowhere = run_cli("trace", session_id, env=env, cwd=tmp_path)
    assert (nowhere.returncode, "no Ops-Core local runtime is running" in nowhere.stderr) == (1, True)
    assert "--url" in nowhere.stderr
