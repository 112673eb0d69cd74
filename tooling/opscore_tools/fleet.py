"""`opscore agents` (the fleet) and `opscore agent ID` (one agent's stats), read from the Ops-Core API.

Where Ops-Core is: the one rule of opscore_tools.target (`--url`/`--key`, their variables, `--stack`, else the local
runtime started from this checkout). Exit codes: 0 done, 1 Ops-Core answered with an error, could not be reached or
was not found, 2 the command was used wrongly (a URL without a key, a window or state the API refuses).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Annotated, Any, NamedTuple
from urllib.parse import quote, urlencode

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opscore_tools.target import ApiRegionOption, ApiStackOption, KeyOption, UrlOption, target_or_exit

STATE_STYLES = {
    "idle": "green",
    "busy": "cyan",
    "initializing": "blue",
    "paused": "yellow",
    "error": "red",
    "offline": "dim",
}
REQUEST_TIMEOUT_SECONDS = 30
MAX_PAGES = 100  # a fleet of up to 10,000 agents at 100 a page


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        # The reader went away (`opscore agents | head`): stop quietly, which is not an error.
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)


def _stdout() -> Console:
    """stdout; when it is not a terminal and COLUMNS does not say how wide, wide enough that no id or time is cut
    (rich would assume 80 columns and shorten the cells)."""
    console = _Stdout(highlight=False)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return _Stdout(highlight=False, width=PIPED_WIDTH)


PIPED_WIDTH = 1000
out = _stdout()
err = Console(stderr=True, highlight=False)


class Connection(NamedTuple):
    url: str
    key: str


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def connection(url: str | None, key: str | None, stack: str | None = None, region: str | None = None) -> Connection:
    """Where Ops-Core is and the key to call it with, by the one rule every command follows (opscore_tools.target)."""
    target = target_or_exit(url, key, stack, region)
    return Connection(target.base_url, target.api_key)


def get(where: Connection, path: str, query: dict[str, str] | None = None) -> Any:
    """GET a route; ApiError for an error answer, or when Ops-Core cannot be reached (status 0)."""
    target = where.url + path + (f"?{urlencode(query)}" if query else "")
    request = urllib.request.Request(target, headers={"X-API-Key": where.key, "Accept": "application/json"})  # noqa: S310 - the URL the user gave
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read()).get("error", {})
        except ValueError:
            body = {}
        raise ApiError(error.code, body.get("code", "error"), body.get("message", error.reason)) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ApiError(0, "unreachable", f"cannot reach Ops-Core at {where.url}: {reason}") from None


def fail(error: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(error.message)} ({escape(error.code)})", soft_wrap=True)
    return typer.Exit(2 if error.status == 400 else 1)


def local_time(stamp: str | None) -> str:
    """A stored UTC timestamp in the local time zone, named; '-' for none."""
    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def fleet(where: Connection, state: str | None) -> list[dict[str, Any]]:
    """Every agent (of `state`), all pages."""
    query = {"limit": "100"} | ({"state": state} if state else {})
    agents: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = get(where, "/agents", query)
        agents += page["items"]
        if "next_token" not in page:
            break
        query["next_token"] = page["next_token"]
    return agents


def fleet_table(agents: list[dict[str, Any]], state: str | None) -> Table:
    title = f"{len(agents)} agent{'' if len(agents) == 1 else 's'}" + (f" {state}" if state else "")
    table = Table(title=title, title_justify="left")
    for column in ("AGENT", "NAME", "STATE", "SINCE", "LAST SEEN"):
        table.add_column(column)
    for column in ("QUEUED", "IN FLIGHT", "FAILURES"):
        table.add_column(column, justify="right")
    table.add_column("QUARANTINED")
    for agent in agents:
        shown = agent["state"] or "-"
        table.add_row(
            escape(agent["agent_id"]),
            escape(agent["name"]),
            f"[{STATE_STYLES.get(shown, 'default')}]{shown}[/]",
            local_time(agent["state_timestamp"]),
            local_time(agent["last_seen_at"]),
            str(agent["queued"]),
            f"{agent['in_flight']}/{agent['max_concurrency']}",
            str(agent["failure_streak"]),
            "[red]yes[/]" if agent["quarantined"] else "no",
        )
    return table


def agents_command(  # noqa: PLR0917 - a command's options are its parameters
    state: Annotated[
        str | None, typer.Option(help="Only agents in this state: initializing, idle, busy, paused, error, offline.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Redraw every --interval seconds until Ctrl-C (piped: print each in turn).")
    ] = False,
    interval: Annotated[float, typer.Option(min=1.0, help="Seconds between redraws with --watch.")] = 3.0,
    url: UrlOption = None,
    key: KeyOption = None,
    stack: ApiStackOption = None,
    region: ApiRegionOption = None,
) -> None:
    """The fleet: every agent with its state and since when, last contact, queue, tasks in flight and quarantine.

    Needs an admin key. Times are shown in your local time zone.

    Examples: `opscore agents`, `opscore agents --state busy`, `opscore agents --watch`.
    """
    where = connection(url, key, stack, region)
    try:
        if not watch:
            out.print(fleet_table(fleet(where, state), state))
            return
        if not out.is_terminal:
            # Piped or redirected: rich's Live would show only its last frame, so each refresh is printed in turn.
            while True:
                out.print(fleet_table(fleet(where, state), state))
                out.file.flush()
                time.sleep(interval)
        from rich.live import Live

        with Live(console=out, auto_refresh=False) as live:
            while True:
                live.update(fleet_table(fleet(where, state), state), refresh=True)
                time.sleep(interval)
    except ApiError as error:
        raise fail(error) from None
    except KeyboardInterrupt:
        return


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def stats_table(stats: dict[str, Any]) -> Table:
    tasks = stats["tasks"]
    rate = tasks["success_rate"]
    table = Table(
        title=f"agent {escape(stats['agent_id'])}, last {stats['window']} "
        f"({local_time(stats['since'])} to {local_time(stats['until'])})",
        title_justify="left",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("tasks", f"{tasks['succeeded']} succeeded, {tasks['failed']} failed, {tasks['timed_out']} timed out"),
        ("success rate", "-" if rate is None else f"{rate:.1%}"),
        ("failure streak", str(stats["failure_streak"])),
        ("utilisation", f"{stats['utilisation']:.1%} busy"),
        ("queue wait", _percentiles(stats["queue_wait_ms"])),
        ("run time", _percentiles(stats["run_time_ms"])),
        ("time in state", _state_time(stats["state_seconds"])),
        ("queue", _queue(stats["queue"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    if stats["sampled"]:
        table.caption = "sampled: time in state covers the newest part of the window (a read bound was reached)"
    return table


def _percentiles(measured: dict[str, Any]) -> str:
    if not measured["count"]:
        return "-"
    return f"p50 {_ms(measured['p50'])}, p95 {_ms(measured['p95'])} ({measured['count']} attempts)"


def _state_time(spent: dict[str, float]) -> str:
    shown = [f"{state} {seconds / 60:.1f} min" for state, seconds in spent.items() if seconds > 0]
    return ", ".join(shown) or "-"


def _queue(queue: dict[str, Any]) -> str:
    by_priority = ", ".join(f"p{priority}: {count}" for priority, count in queue["queued_by_priority"].items())
    waiting = f"{queue['queued']} queued" + (f" ({by_priority})" if by_priority else "")
    return f"{waiting}, {queue['in_flight']} in flight"


def agent_command(  # noqa: PLR0917 - a command's options are its parameters
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent's id.")],
    window: Annotated[str, typer.Option(help="How far back: minutes or hours, 5m to 24h.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON, for scripts.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
    stack: ApiStackOption = None,
    region: ApiRegionOption = None,
) -> None:
    """One agent's stats over a window: tasks succeeded, failed and timed out, success rate, failure streak,
    utilisation, queue wait and run time (p50, p95), time in each state and its queue now.

    Example: `opscore agent research-1 --window 15m`.
    """
    where = connection(url, key, stack, region)
    try:
        stats = get(where, f"/agent/{quote(agent_id, safe='')}/stats", {"window": window})
    except ApiError as error:
        raise fail(error) from None
    if as_json:
        print(json.dumps(stats, indent=2))
    else:
        out.print(stats_table(stats))
