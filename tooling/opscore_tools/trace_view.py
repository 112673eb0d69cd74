"""`opscore trace`: a session's trace (GET .../trace) drawn in the terminal as a waterfall.

One row per span, in start order: the session, each wait (delay, retry backoff), each fallback and each task attempt,
indented under its parent, with its start in local time, its duration and a bar on the session's time axis (an
attempt's bar shows its queue wait, then its run). Retries, timeouts, fallbacks and errors are marked; totals follow.
Colour only on a terminal (rich decides; NO_COLOR is honoured).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from opscore_tools.target import TargetError, resolve_target

API_BASE_PATH = "/v1/opscore"
BAR_WIDTH = 40
TIMEOUT_SECONDS = 30
STYLE = {"OK": "green", "ERROR": "red", "UNSET": "blue"}


class TraceError(Exception):
    """A failure to report in one line, with the exit code it means: 2 for usage, 1 for the API's refusal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Target(NamedTuple):
    url: str  # the API's base, ending in /v1/opscore
    key: str


def api_target(url: str | None, key: str | None, stack: str | None = None, region: str | None = None) -> Target:
    """Where Ops-Core is, by the one rule every command follows (opscore_tools.target)."""
    try:
        found = resolve_target(url, key, stack, region)
    except TargetError as error:
        raise TraceError(error.message, error.exit_code) from None
    return Target(found.base_url, found.api_key)


def trace_path(session_id: str, agent_id: str | None) -> str:
    session = quote(session_id, safe="")
    if agent_id is None:
        return f"/sessions/{session}/trace"  # an admin's read by the session id alone
    return f"/agent/{quote(agent_id, safe='')}/sessions/{session}/trace"


def fetch_trace(target: Target, session_id: str, agent_id: str | None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own API
        target.url + trace_path(session_id, agent_id), headers={"X-API-Key": target.key, "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
            body: dict[str, Any] = json.loads(answer.read())
            return body
    except urllib.error.HTTPError as error:
        # A 400 is the command used wrongly (a malformed session id): exit 2, as every command does; else 1.
        raise TraceError(f"{error.code} {_error_message(error.read())}", 2 if error.code == 400 else 1) from None
    except urllib.error.URLError as error:
        raise TraceError(f"cannot reach Ops-Core at {target.url}: {error.reason}", 1) from None


def _error_message(body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:200]


# ---------------------------------------------------------------------- drawing


def _moment(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def local_time(stamp: str, *, zone: bool = False) -> str:
    """A stored UTC time in this machine's zone, to the millisecond."""
    moment = datetime.fromisoformat(stamp).astimezone()
    text = moment.strftime("%H:%M:%S.%f")[:-3]
    return f"{moment:%Y-%m-%d} {text} {moment:%Z}" if zone else text


def duration(ms: int | None) -> str:
    if ms is None:
        return "open"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


class Axis(NamedTuple):
    start: datetime
    seconds: float

    @classmethod
    def of(cls, trace: dict[str, Any]) -> Axis:
        start = _moment(trace["start_time"])
        assert start is not None
        ends = [_moment(span["end_time"] or span["start_time"]) for span in trace["spans"]]
        end = max([moment for moment in ends if moment is not None] + [start])
        return cls(start, max((end - start).total_seconds(), 0.001))

    def column(self, stamp: str | None, width: int) -> int:
        moment = _moment(stamp)
        if moment is None:
            return width
        return min(width, max(0, round((moment - self.start).total_seconds() / self.seconds * width)))


def bar(span: dict[str, Any], axis: Axis, width: int = BAR_WIDTH) -> Text:
    """The span on the axis: a wait dotted, an attempt's queue wait light and its run solid, an open end as '>'."""
    begin = axis.column(span["start_time"], width)
    end = max(axis.column(span["end_time"], width), begin + 1)
    style = STYLE[span["status"]]
    text = Text(" " * begin)
    if span["kind"] == "wait":
        text.append("·" * (end - begin), style="yellow")
    elif span["kind"] == "attempt":
        leased = span["attributes"].get("leased_at")
        middle = min(max(axis.column(leased, width), begin), end) if leased else end
        text.append("░" * (middle - begin), style=style)
        text.append("█" * (end - middle), style=style)
    else:
        text.append("━" * (end - begin), style=style)
    if span["end_time"] is None:
        text.append(">", style=style)
    return text


def marks(span: dict[str, Any]) -> str:
    attributes = span["attributes"]
    found = []
    if attributes.get("timed_out"):
        found.append("timeout")
    if "retry_at" in attributes:
        found.append("retried")
    if span["kind"] == "fallback":
        cause = attributes.get("cause.type")
        found.append(f"fallback for {attributes.get('fallback_for', '?')}" + (f" after {cause}" if cause else ""))
    if span["status"] == "ERROR" and "error.type" in attributes:
        found.append(str(attributes["error.type"]))
    return ", ".join(found)


def _depths(spans: list[dict[str, Any]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for span in spans:  # parents come first: the session, then by start time (a fallback before its attempts)
        parent = span["parent_span_id"]
        depth[span["span_id"]] = depth.get(parent, -1) + 1 if parent is not None else 0
    return depth


def render(trace: dict[str, Any], console: Console) -> None:
    spans: list[dict[str, Any]] = trace["spans"]
    axis = Axis.of(trace)
    depth = _depths(spans)
    console.print(
        f"[bold]session {escape(trace['session_id'])}[/]  agent {escape(trace['agent_id'])}  "
        f"workflow {escape(trace['workflow_id'])} v{trace['version']}  "
        f"[{STYLE.get(_session_status(trace), 'blue')}]{trace['status']}[/]"
    )
    console.print(f"started {local_time(trace['start_time'], zone=True)}, {duration(trace['duration_ms'])}")
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("span", no_wrap=True)
    table.add_column("start", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column(f"0 {'─' * (BAR_WIDTH - 2 - len(duration(round(axis.seconds * 1000))))} "
                     f"{duration(round(axis.seconds * 1000))}", no_wrap=True)  # fmt: skip
    table.add_column("", no_wrap=True)
    for span in spans:
        name = Text("  " * depth.get(span["span_id"], 0) + span["name"])
        if span["status"] == "ERROR":
            name.stylize("red")
        table.add_row(name, local_time(span["start_time"]), duration(span["duration_ms"]), bar(span, axis), marks(span))
    console.print(table)
    totals = trace["totals"]
    console.print(
        f"attempts {totals['attempts']} (retried {totals['retries']}, timed out {totals['timeouts']}), "
        f"fallbacks {totals['fallbacks']}; queue wait {duration(totals['queue_wait_ms'])}, "
        f"run {duration(totals['run_ms'])}, waits {duration(totals['wait_ms'])}"
    )
    console.print("legend: ░ queued  █ running  · waiting (delay, backoff)  ━ session, fallback  > still open")


def _session_status(trace: dict[str, Any]) -> str:
    return {"completed": "OK", "error": "ERROR"}.get(trace["status"], "UNSET")
