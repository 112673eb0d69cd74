"""`opscore demo`: Ops-Core at work in under a minute, with three agents on the SDK's AgentWorker.

A researcher (quick, never fails), a writer (slower; its translations fail their first attempt and succeed on the
retry) and a publisher (its publishing service is down: every attempt fails, so the task takes its fallback, a
notification) each run as a worker with a key of its own. Five sessions are triggered: two research digests, a
translated brief, a post that ends up in its fallback, and a follow-up that waits out a delay. Progress is shown
live; at the end, each session's outcome against what was expected, and per agent what it did (from the worker) and
what Ops-Core recorded (GET /agent/{agentId}/stats). The run succeeds only if every session ended as expected.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    # The SDK is a package of its own (sdk/python), installed beside the tooling in a checkout's environment but not
    # a dependency of the `opscore` distribution: imported when the demo runs, so the tooling imports without it.
    from opscore_sdk import AgentWorker, OpsCore, TaskContext
    from opscore_sdk.models import SessionView

ALWAYS = 1_000_000  # attempts that fail: every one
DEADLINE_SECONDS = 55.0
REFRESH_SECONDS = 0.25


class UpstreamUnavailable(Exception):
    """What the demo's flaky services raise."""


@dataclass(frozen=True)
class DemoAgent:
    role: str
    actions: tuple[str, ...]
    seconds: float  # how long each task's work takes
    max_concurrency: int
    failing_attempts: dict[str, int] = field(default_factory=dict)  # per action: its first N attempts fail


@dataclass
class Tally:
    """What one agent's handlers did, as the agent saw it."""

    succeeded: int = 0
    failed: int = 0
    busy_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ok: bool, seconds: float) -> None:
        with self.lock:
            self.succeeded += ok
            self.failed += not ok
            self.busy_seconds += seconds


def _expect_completed(_view: SessionView) -> str | None:
    return None  # completing is all that is expected


def _expect_retried_translation(view: SessionView) -> str | None:
    translate = _task(view, "translate")
    return None if translate.attempts == 2 else f"translate took {translate.attempts} attempt(s), expected 2"


def _expect_fallback(view: SessionView) -> str | None:
    publish, notify = _task(view, "publish"), _task(view, "notify")
    if (publish.status, publish.attempts) != ("failed", 2):
        return f"publish ended {publish.status} after {publish.attempts} attempt(s), expected failed after 2"
    return None if notify.status == "succeeded" else f"the fallback ended {notify.status}"


def _expect_delay(view: SessionView) -> str | None:
    record = _task(view, "follow-up").history[0]
    if record.delay_seconds != 3 or record.leased_at is None:
        return f"the follow-up's attempt says a delay of {record.delay_seconds} s, expected 3"
    # That the task really waited: it was handed out no sooner than 3 s after its session began.
    waited = (datetime.fromisoformat(record.leased_at.root) - datetime.fromisoformat(view.created_at)).total_seconds()
    return None if waited >= 3 else f"the follow-up was leased {waited:.1f} s after its session began, expected 3"


def _task(view: SessionView, task_id: str) -> Any:
    return next(task for task in view.tasks if task.id == task_id)


@dataclass(frozen=True)
class DemoSession:
    title: str
    role: str
    template: dict[str, Any]
    input: dict[str, Any]
    check: Callable[[SessionView], str | None]


AGENTS = (
    DemoAgent("researcher", ("web.fetch", "text.summarise"), seconds=0.3, max_concurrency=2),
    DemoAgent("writer", ("text.draft", "text.translate"), 0.8, 1, {"text.translate": 1}),
    DemoAgent("publisher", ("post.publish", "human.notify"), 0.5, 1, {"post.publish": ALWAYS}),
)

DIGEST = {
    "name": "demo-digest",
    "tasks": [
        {"id": "fetch", "action": "web.fetch"},
        {"id": "summarise", "action": "text.summarise", "input": {"text": {"$from": "tasks.fetch.output.body"}}},
    ],
}
SESSIONS = (
    DemoSession("research digest: agents", "researcher", DIGEST, {"topic": "agents"}, _expect_completed),
    DemoSession("research digest: queues", "researcher", DIGEST, {"topic": "queues"}, _expect_completed),
    DemoSession(
        "translated brief (retried)",
        "writer",
        {
            "name": "demo-brief",
            "tasks": [
                {"id": "draft", "action": "text.draft"},
                {"id": "translate", "action": "text.translate", "retry": {"max_retries": 2, "backoff_seconds": 1}},
            ],
        },
        {"language": "fr"},
        _expect_retried_translation,
    ),
    DemoSession(
        "post (fails, retries, falls back)",
        "publisher",
        {
            "name": "demo-post",
            "tasks": [
                {
                    "id": "publish",
                    "action": "post.publish",
                    "retry": {"max_retries": 1, "backoff_seconds": 1},
                    "fallback": "notify",
                },
                {"id": "notify", "action": "human.notify", "fallback_only": True},
            ],
        },
        {"channel": "#news"},
        _expect_fallback,
    ),
    DemoSession(
        "follow-up (delayed 3 s)",
        "researcher",
        {"name": "demo-follow-up", "tasks": [{"id": "follow-up", "action": "web.fetch", "delay_seconds": 3}]},
        {"topic": "later"},
        _expect_delay,
    ),
)


def _handler(agent: DemoAgent, action: str, tally: Tally) -> Callable[[TaskContext], dict[str, Any]]:
    failing = agent.failing_attempts.get(action, 0)

    def handle(task: TaskContext) -> dict[str, Any]:
        began = time.monotonic()
        time.sleep(agent.seconds)  # the agent's work
        ok = task.attempt > failing
        tally.record(ok, time.monotonic() - began)
        if not ok:
            raise UpstreamUnavailable(f"{action}: the upstream service answered 503")
        return {"body": f"{action} done for {task.task.session_input}", "attempt": task.attempt}

    return handle


@dataclass
class Running:
    """One demo run: its agents (id, worker, tally) and its sessions (id, once started)."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    workers: dict[str, AgentWorker] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    started: list[tuple[DemoSession, str]] = field(default_factory=list)

    def agent_id(self, role: str) -> str:
        return f"demo-{role}-{self.suffix}"


@contextmanager
def _agents(base_url: str, admin: OpsCore, run: Running) -> Iterator[None]:
    from opscore_sdk import AgentWorker, Backoff, OpsCore

    clients = []
    try:
        for agent in AGENTS:
            agent_id = run.agent_id(agent.role)
            client = OpsCore(base_url, admin.create_key(agent_id=agent_id).api_key)
            clients.append(client)
            worker = AgentWorker(
                client,
                agent_id,
                name=f"demo {agent.role}",
                max_concurrency=agent.max_concurrency,
                poll=Backoff(initial=0.05, maximum=0.5),
                drain_timeout=5,
            )
            run.tallies[agent.role] = Tally()
            for action in agent.actions:
                worker.task(action)(_handler(agent, action, run.tallies[agent.role]))
            worker.start()
            run.workers[agent.role] = worker
        yield
    finally:
        for worker in run.workers.values():
            worker.stop()
        for client in clients:
            client.close()


def run_demo(base_url: str, admin_key: str, console: Console, deadline_seconds: float = DEADLINE_SECONDS) -> bool:
    """Run the demo against the Ops-Core at `base_url`; True when every session ended as expected."""
    from opscore_sdk import OpsCore

    # The workers log through `opscore_sdk.worker`; the demo's own display says what happens.
    logging.getLogger("opscore_sdk").addHandler(logging.NullHandler())
    logging.getLogger("opscore_sdk").propagate = False
    run = Running()
    with OpsCore(base_url, admin_key) as admin, _agents(base_url, admin, run):
        for session in SESSIONS:
            started = admin.trigger(run.agent_id(session.role), template=session.template, input=session.input)
            run.started.append((session, started.session_id))
        views = _watch(admin, run, console, deadline_seconds)
    with OpsCore(base_url, admin_key) as admin:
        return _summary(admin, run, views, console)


def _views(admin: OpsCore, run: Running) -> list[SessionView]:
    return [admin.get_session(run.agent_id(session.role), session_id) for session, session_id in run.started]


def _watch(admin: OpsCore, run: Running, console: Console, deadline_seconds: float) -> list[SessionView]:
    """Poll the sessions until all have ended (or the deadline), showing progress: live on a terminal, else a line
    per change."""
    deadline = time.monotonic() + deadline_seconds
    shown: dict[str, str] = {}
    views = _views(admin, run)
    live = Live(_progress(run, views), console=console, refresh_per_second=8) if console.is_terminal else None
    with live or _nothing():
        while True:
            if live is not None:
                live.update(_progress(run, views))
            else:
                _print_changes(run, views, shown, console)
            if all(view.ended_at is not None for view in views) or time.monotonic() > deadline:
                return views
            time.sleep(REFRESH_SECONDS)
            views = _views(admin, run)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _steps(view: SessionView) -> str:
    return "  ".join(
        f"{task.id}:{task.status}" + (f" ({task.attempts} attempts)" if task.attempts > 1 else "")
        for task in view.tasks
    )


def _print_changes(run: Running, views: list[SessionView], shown: dict[str, str], console: Console) -> None:
    for (session, _), view in zip(run.started, views, strict=True):
        line = f"{view.status:<10} {_steps(view)}"
        if shown.get(view.session_id) != line:
            shown[view.session_id] = line
            console.print(f"  {session.title:<34} {line}")


def _progress(run: Running, views: list[SessionView]) -> Group:
    sessions = Table(title="Sessions", expand=False)
    for column in ("session", "agent", "status", "tasks"):
        sessions.add_column(column)
    for (session, _), view in zip(run.started, views, strict=True):
        sessions.add_row(session.title, session.role, view.status, _steps(view))
    agents = Table(title="Agents")
    for column in ("agent", "running", "succeeded", "failed"):
        agents.add_column(column)
    for agent in AGENTS:
        tally = run.tallies[agent.role]
        running = run.workers[agent.role].running
        agents.add_row(agent.role, str(running), str(tally.succeeded), str(tally.failed))
    return Group(sessions, agents)


def _summary(admin: OpsCore, run: Running, views: list[SessionView], console: Console) -> bool:
    outcomes = Table(title="Outcome")
    for column in ("session", "agent", "ended", "as expected"):
        outcomes.add_column(column)
    expected = 0
    for (session, _), view in zip(run.started, views, strict=True):
        problem = (
            f"still {view.status}"
            if view.ended_at is None
            else (f"ended {view.status}" if view.status != "completed" else session.check(view))
        )
        expected += problem is None
        outcomes.add_row(session.title, session.role, view.status, "yes" if problem is None else f"NO: {problem}")
    agents = Table(title="Agents")
    for column in ("agent", "handled ok", "handled failed", "busy s", "Ops-Core: succeeded", "failed", "state"):
        agents.add_column(column)
    for agent in AGENTS:
        agent_id = run.agent_id(agent.role)
        tally = run.tallies[agent.role]
        stats = admin.get_agent_stats(agent_id, window="5m")
        state = admin.get_agent(agent_id).current_state
        agents.add_row(
            agent.role,
            str(tally.succeeded),
            str(tally.failed),
            f"{tally.busy_seconds:.1f}",
            str(stats.tasks.succeeded),
            str(stats.tasks.failed),
            state.state if state else "-",
        )
    console.print(outcomes)
    console.print(agents)
    total = len(run.started)
    console.print(f"{expected} of {total} sessions ended as expected")
    return expected == total
