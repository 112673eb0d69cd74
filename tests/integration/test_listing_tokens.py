"""Every paged listing takes back only its own page tokens: a fuzzed `next_token` is answered 200 with items of that
listing, or 400 naming next_token; never 500.

The tokens tried: the listings' own (for this agent and another), each with one character changed, text shaped like
each listing's token, base64 JSON shaped like a table key, and any text. Each listing is read through its handler.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_CONTEXT, EventFactory
from tests.integration.conftest import Invoke
from tests.integration.session_driver import SessionDriver, eventually

Read = Callable[[dict[str, str]], tuple[int, Any]]


@dataclass
class Listing:
    read: Read  # (query) -> (status, body), for agent-1 where the listing is an agent's
    every_item: list[str]  # the whole listing, each item as canonical JSON
    tokens: list[str]  # tokens the listings handed out: this one's and others', for this agent and another


def canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture
def listings(call: Invoke, api_event: EventFactory) -> dict[str, Listing]:
    """Two agents with state history, sessions, queued and leased tasks, and three workflows: every listing pages."""
    ops = SessionDriver(call, api_event)

    def agent_read(event: str, **extra: str) -> Callable[[str], Read]:
        def for_agent(agent_id: str) -> Read:
            return lambda query: call(
                "AgentReadFunction",
                api_event(f"agent_read/{event}", agent_id=agent_id, caller=ADMIN_CONTEXT, query={**extra, **query}),
            )

        return for_agent

    def workflows(query: dict[str, str]) -> tuple[int, Any]:
        return call("WorkflowsFunction", api_event("workflows/list.json", query=query))

    readers: dict[str, Callable[[str], Read]] = {
        "history": agent_read("get_history.json"),
        "sessions": agent_read("list_sessions.json"),
        "queued": agent_read("list_tasks.json", status="queued"),
        "leased": agent_read("list_tasks.json", status="leased"),
        "workflows": lambda _agent: workflows,
    }
    for agent_id in ("agent-1", "agent-2"):
        ops.register(agent_id, max_concurrency=2)
        for state in ("initializing", "idle", "busy"):
            assert ops.report_state(state, agent_id=agent_id)[0] == 200
        for _ in range(4):
            event = api_event("session_control/run_task.json", agent_id=agent_id, body={"action": "web.fetch"})
            del event["headers"]["Idempotency-Key"]
            assert call("SessionControlFunction", event)[0] == 202
        eventually(lambda agent=agent_id: len(ops.queue(agent, status="queued")[1]["items"]) == 4, "4 queued tasks")
        for _ in range(2):
            assert ops.next_task(agent_id)[0] == 200
    for name in ("alpha", "bravo", "charlie"):
        assert ops.create_workflow({"name": name, "tasks": [{"id": "a", "action": "x"}]})[0] == 201

    tokens = [
        readers[name](agent_id)({"limit": "1"})[1]["next_token"]
        for name in readers
        for agent_id in ("agent-1", "agent-2")
    ]
    built = {}
    for name, reader in readers.items():
        status, page = reader("agent-1")({"limit": "100"})
        assert status == 200, page
        assert len(page["items"]) >= 2
        assert "next_token" not in page
        built[name] = Listing(reader("agent-1"), [canonical(item) for item in page["items"]], tokens)
    return built


@st.composite
def changed(draw: st.DrawFn, tokens: list[str]) -> str:
    token = draw(st.sampled_from(tokens))
    at = draw(st.integers(0, len(token) - 1))
    return token[:at] + draw(st.characters(codec="ascii", exclude_characters="\x00")) + token[at + 1 :]


def fuzzed(tokens: list[str]) -> st.SearchStrategy[str]:
    hex_digits = "0123456789abcdef"
    return st.one_of(
        st.sampled_from(tokens),
        changed(tokens),
        st.text(alphabet=hex_digits, min_size=30, max_size=34),  # like a session id
        st.from_regex(r"[0-9TZ:.-]{13,32}#[0-9a-f]{32}-[0-9]{3}", fullmatch=True),  # like a queue position
        st.fixed_dictionaries(
            {
                "PK": st.sampled_from(["AGENT#agent-1", "AGENT#agent-2", "WORKFLOWS", "SESSION#0"]) | st.text(),
                "SK": st.sampled_from(["STATE#", "STATE#9", "WORKFLOW#", "WORKFLOW#z", "AGENT"]) | st.text(),
            }
        ).map(b64),
        st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=60),
    )


# One set of listings for every example (they are only read); the listing is drawn with the token.
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_fuzzed_next_token_is_a_page_of_the_listing_or_a_400_naming_it(
    listings: dict[str, Listing], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(listings)), label="listing")
    listing = listings[name]
    token = data.draw(fuzzed(listing.tokens), label="next_token")
    status, body = listing.read({"limit": "2", "next_token": token})
    assert status in {200, 400}, body
    if status == 400:
        assert body["error"]["code"] == "validation_error"
        assert [problem["field"] for problem in body["error"]["details"]] == ["next_token"]
    else:
        outside = [item for item in body["items"] if canonical(item) not in listing.every_item]
        assert outside == [], "a token led outside the listing"
