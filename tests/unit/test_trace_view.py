"""`opscore trace`'s drawing (opscore_tools.trace_view) of a trace answer: local time with its zone, bars on the
session's axis, marks, totals, colour only on a terminal; and where the command finds Ops-Core."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from opscore.sessions.trace import session_trace
from opscore_tools.trace_view import TraceError, api_target, bar, render, trace_path
from tests.unit.test_trace import SESSION, worked_session


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def drawn(terminal: bool) -> str:
    trace: dict[str, Any] = session_trace(*worked_session()).model_dump(mode="json")
    out = io.StringIO()
    render(trace, Console(file=out, width=160, force_terminal=terminal, color_system="standard" if terminal else None))
    return out.getvalue()


@pytest.mark.usefixtures("paris")
def test_the_waterfall_shows_local_times_marks_and_totals_without_colour_off_a_terminal() -> None:
    text = drawn(terminal=False)
    assert "started 2030-05-17 10:30:00.000 CEST, 1m40s" in text  # 08:30 UTC, in Paris in May
    lines = text.splitlines()
    rows = {name: next(line for line in lines if line.strip().startswith(f"{name}  ")) for name in (
        "fetch attempt 1", "fetch attempt 2", "fallback notify for fetch", "notify attempt 1")}  # fmt: skip
    assert "10:30:01.000" in rows["fetch attempt 1"]
    assert "retried, OpsCore.TaskFailed" in rows["fetch attempt 1"]
    assert "timeout, States.Timeout" in rows["fetch attempt 2"]
    assert "fallback for fetch after States.Timeout" in rows["fallback notify for fetch"]
    assert rows["notify attempt 1"].startswith("    notify attempt 1"), "a fallback's attempt is indented under it"
    assert "attempts 3 (retried 1, timed out 1), fallbacks 1; queue wait 2.5 s, run 31.5 s, waits 1m05s" in text
    assert "\x1b[" not in text


def test_on_a_terminal_the_waterfall_has_colour() -> None:
    assert "\x1b[31m" in drawn(terminal=True)  # the failed attempts in red


def test_an_attempts_bar_is_its_queue_wait_then_its_run() -> None:
    trace: dict[str, Any] = session_trace(*worked_session()).model_dump(mode="json")
    from opscore_tools.trace_view import Axis

    attempt = next(span for span in trace["spans"] if span["name"] == "fetch attempt 2")
    assert bar(attempt, Axis.of(trace), width=100).plain == " " * 9 + "░" + "█" * 20  # 0.5 s queued, 20.5 s run


def test_ops_core_is_found_by_flags_else_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPSCORE_URL", raising=False)
    monkeypatch.delenv("OPSCORE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no local runtime runs from here
    with pytest.raises(TraceError) as refused:
        api_target(None, None)
    assert refused.value.exit_code == 1
    with pytest.raises(TraceError) as no_key:
        api_target("http://127.0.0.1:3000", None)
    assert no_key.value.exit_code == 2
    monkeypatch.setenv("OPSCORE_URL", "http://127.0.0.1:3000/")
    monkeypatch.setenv("OPSCORE_API_KEY", "k" * 20)
    assert api_target(None, None) == ("http://127.0.0.1:3000/v1/opscore", "k" * 20)
    assert api_target("https://x.example/v1/opscore", "other").url == "https://x.example/v1/opscore"
    assert trace_path(SESSION, None) == f"/sessions/{SESSION}/trace"
    assert trace_path(SESSION, "team:bot") == f"/agent/team%3Abot/sessions/{SESSION}/trace"


def test_a_malformed_session_id_is_bad_usage_and_an_unknown_one_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's 400 is the command used wrongly (exit 2, as `opscore agent` answers it); its 404 is not (exit 1)."""
    import io
    import urllib.error
    import urllib.request

    from opscore_tools.trace_view import Target, fetch_trace

    def answer(status: int) -> None:
        body = io.BytesIO(b'{"error": {"code": "x", "message": "y"}}')

        def refuse(*_: object, **__: object) -> None:
            raise urllib.error.HTTPError("http://x", status, "refused", {}, body)  # type: ignore[arg-type]

        monkeypatch.setattr(urllib.request, "urlopen", refuse)

    for status, code in ((400, 2), (404, 1)):
        answer(status)
        with pytest.raises(TraceError) as refused:
            fetch_trace(Target("http://127.0.0.1:3000/v1/opscore", "k"), "nope", None)
        assert refused.value.exit_code == code
