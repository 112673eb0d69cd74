"""Acceptance scenarios: Ops-Core and agents as AgentKit would run them, on the SDK's client and worker, against
`opscore local` started for this tier (started as the end-to-end tier starts it, with the health sweep every half
second, so that expired leases are noticed within a scenario)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from opscore_sdk import AgentWorker, Backoff, OpsCore
from opscore_sdk.models import SessionView
from tests.e2e.conftest import LocalProcess, start_local

ADMIN_KEY = "uat-admin-key-for-the-local-runtime"
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.05
SWEEP_SECONDS = "0.5"
# Agents in these scenarios ask for work often, so that nothing waits on a poll's backoff.
QUICK_POLL = Backoff(initial=0.05, maximum=0.25)


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    running = start_local(
        tmp_path_factory.mktemp("uat"), {"OPSCORE_ADMIN_KEY": ADMIN_KEY}, "--schedule-every", SWEEP_SECONDS
    )
    yield running
    assert running.stop() == 0, "Ctrl-C stops opscore local cleanly"


@pytest.fixture
def admin(runtime: LocalProcess) -> Iterator[OpsCore]:
    with OpsCore(runtime.base_url, runtime.admin_key) as client:
        yield client


@dataclass
class Agent:
    """An agent id with a key of its own, and a client holding that key."""

    agent_id: str
    key: str
    client: OpsCore
    url: str

    def worker(self, **options: Any) -> AgentWorker:
        options.setdefault("poll", QUICK_POLL)
        return AgentWorker(self.client, self.agent_id, **options)

    def session(self, session_id: str) -> SessionView:
        return self.client.get_session(self.agent_id, session_id)

    def ended(self, session_id: str) -> SessionView:
        return until(lambda: self.session(session_id), lambda view: view.ended_at is not None, "the session's end")


@pytest.fixture
def new_agent(runtime: LocalProcess, admin: OpsCore) -> Iterator[Callable[[], Agent]]:
    made: list[Agent] = []

    def make() -> Agent:
        agent_id = f"uat-{uuid.uuid4().hex[:10]}"
        key = admin.create_key(agent_id=agent_id).api_key
        agent = Agent(agent_id, key, OpsCore(runtime.base_url, key), runtime.base_url)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.client.close()


def until[T](fetch: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """Poll `fetch` until `done` holds for what it answers; fail after DEADLINE_SECONDS naming what never came."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done(seen := fetch()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {seen}")
        time.sleep(POLL_SECONDS)
    return seen
