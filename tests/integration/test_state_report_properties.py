"""The state-report rules under any arrival order: a set of reports, each sent any number of times in any interleaving,
through the state and read functions on moto. The newest accepted is the current state, the history holds each
accepted report once (newest first, versions 1..n), a repeat of an accepted report answers its first version, and
anything else not newer than the stored state is 409 `stale_state`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_CONTEXT, EventFactory
from tests.integration.conftest import Invoke

# Each example reports on an agent of its own, in the one moto account the test holds (hence the function-scoped
# fixtures: nothing of one example can meet another's).
PROPERTY = settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
_agents = itertools.count()
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Report:
    offset_us: int  # microseconds after EPOCH: reports may share a timestamp (with other content)
    state: str
    details: dict[str, Any] | None

    def body(self) -> dict[str, Any]:
        return {"state": self.state, "timestamp": self.timestamp, "details": self.details}

    @property
    def timestamp(self) -> str:
        """As Ops-Core stores it (to the microsecond), which is also a timestamp a report may send."""
        return f"{EPOCH + timedelta(microseconds=self.offset_us):%Y-%m-%dT%H:%M:%S.%fZ}"

    @property
    def content(self) -> tuple[str, dict[str, Any] | None]:
        return self.state, self.details


reports = st.builds(
    Report,
    offset_us=st.integers(0, 5),  # a narrow range: equal timestamps are frequent
    state=st.sampled_from(["initializing", "idle", "busy", "paused", "offline"]),
    details=st.one_of(st.none(), st.fixed_dictionaries({"step": st.integers(0, 2)})),
)


@st.composite
def arrivals(draw: st.DrawFn) -> list[Report]:
    """Some reports, then an arrival order: each sent 1 to 3 times, in any interleaving."""
    distinct = draw(st.lists(reports, min_size=1, max_size=6, unique_by=repr))
    sends = [report for report in distinct for _ in range(draw(st.integers(1, 3)))]
    return draw(st.permutations(sends))


class Model:
    """What docs/openapi.yaml says each arrival is answered, and what is stored after them."""

    def __init__(self) -> None:
        self.accepted: dict[int, tuple[Report, int]] = {}  # by timestamp: the report and its version
        self.newest: Report | None = None

    def expect(self, report: Report) -> tuple[int, int | None]:
        if report.offset_us in self.accepted:
            first, version = self.accepted[report.offset_us]
            return (200, version) if first.content == report.content else (409, None)
        if self.newest is not None and report.offset_us <= self.newest.offset_us:
            return 409, None
        version = len(self.accepted) + 1
        self.accepted[report.offset_us] = (report, version)
        self.newest = report
        return 200, version


@pytest.fixture
def agent_api(call: Invoke, api_event: EventFactory) -> Any:
    def register(agent_id: str) -> None:
        body = {"name": agent_id}
        status, _ = call(
            "RegistrationFunction",
            api_event("registration/put.json", agent_id=agent_id, body=body, caller=ADMIN_CONTEXT),
        )
        assert status in (200, 201)

    def report(agent_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        event = api_event("state_update/post.json", agent_id=agent_id, body=body, caller=ADMIN_CONTEXT)
        return call("StateUpdateFunction", event)

    def read(agent_id: str) -> Any:
        event = api_event("agent_read/get_agent.json", agent_id=agent_id, caller=ADMIN_CONTEXT)
        status, body = call("AgentReadFunction", event)
        assert status == 200
        return body

    def history(agent_id: str) -> list[dict[str, Any]]:
        query = {"limit": "100"}
        event = api_event("agent_read/get_history.json", agent_id=agent_id, caller=ADMIN_CONTEXT, query=query)
        status, body = call("AgentReadFunction", event)
        assert status == 200
        assert "next_token" not in body
        return list(body["items"])

    return register, report, read, history


@PROPERTY
@given(sent=arrivals())
def test_any_interleaving_of_reports_leaves_the_newest_accepted_and_each_once_in_history(
    agent_api: Any, sent: list[Report]
) -> None:
    register, report, read, history = agent_api
    agent_id = f"ordering-{next(_agents)}"
    register(agent_id)
    model = Model()

    for one in sent:
        expected_status, expected_version = model.expect(one)
        status, body = report(agent_id, one.body())
        assert status == expected_status, (one, body)
        if status == 200:
            assert body["version"] == expected_version, (one, body)
        else:
            assert body["error"]["code"] == "stale_state", body

    assert model.newest is not None  # the first arrival is always accepted
    current = read(agent_id)["current_state"]
    assert (current["state"], current["timestamp"]) == (model.newest.state, model.newest.timestamp)
    entries = history(agent_id)
    newest_first = sorted(model.accepted.values(), key=lambda accepted: -accepted[0].offset_us)
    assert [(entry["timestamp"], entry["state"], entry["details"], entry["version"]) for entry in entries] == [
        (accepted.timestamp, accepted.state, accepted.details, version) for accepted, version in newest_first
    ]
