"""The log schema (docs/logging.md), held by running real flows through the handlers and reading every line they
wrote: each event of the page's main table appears with its fields, every line has the base fields, no line has an
event the page does not list, no line holds a secret (an agent key, an admin key, a webhook secret), and each admin
action and refused key of the flows has its audit line."""

from __future__ import annotations

import json
import re

import pytest
from pytest_socket import disable_socket, enable_socket, socket_allow_hosts

from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, REPO, EventFactory
from tests.integration.conftest import Clock, Invoke, Lines
from tests.integration.session_driver import SessionDriver
from tests.integration.test_dispatch import run_task
from tests.webhook_receiver import SECRET as WEBHOOK_SECRET
from tests.webhook_receiver import webhook_receiver

BASE_FIELDS = ("timestamp", "level", "message", "service", "function_name", "correlation_id", "cold_start", "event")
ROW = re.compile(r"^\| `(?P<event>[a-z_]+)` \| [^|]+ \| [^|]+ \| (?P<fields>[^|]*) \|$")


def documented() -> tuple[dict[str, list[str]], set[str]]:
    """The page's events with their fields (`?` marks a field only present when known); and the events of its
    first table, which the flows here must produce."""
    text = (REPO / "docs" / "logging.md").read_text()
    events: dict[str, list[str]] = {}
    tables: list[set[str]] = []
    in_table = False
    for line in text.splitlines():
        row = ROW.match(line)
        if row is None:
            in_table = False
            continue
        if not in_table:
            tables.append(set())
            in_table = True
        events[row["event"]] = re.findall(r"`([a-z_]+\??)`", row["fields"])
        tables[-1].add(row["event"])
    return events, tables[0]  # the first table: the events every run of the flows shows


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    return SessionDriver(call, api_event, now=clock.now)


def sweep(runtime: LambdaRuntime, api_event: EventFactory) -> None:
    """The scheduled sweep, through its handler (its lines are the function's)."""
    runtime.invoke("SweepFunction", api_event("sweep/scheduled.json"))


def test_real_flows_log_every_documented_event_with_its_fields(
    ops: SessionDriver, call: Invoke, runtime: LambdaRuntime, api_event: EventFactory, clock: Clock, lines: Lines
) -> None:
    # registration, twice; a key; a refused key
    ops.register()
    ops.register()
    status, created = call("KeysFunction", api_event("keys/create_agent_key.json", body={"agent_id": ops.agent_id}))
    assert status == 201, created
    secret = created["api_key"]
    status, admin = call("KeysFunction", api_event("keys/create_admin_key.json"))
    assert status == 201, admin
    rotate = api_event("keys/rotate.json", path={"keyId": created["key_id"]})
    status, rotated = call("KeysFunction", rotate)
    assert status == 201, rotated
    for key in (secret, admin["api_key"], rotated["api_key"]):  # each key used, through the authorizer
        allowed = api_event("authorizer/request.json")
        allowed["headers"]["X-API-Key"] = allowed["multiValueHeaders"]["X-API-Key"] = key
        assert runtime.invoke("AuthorizerFunction", allowed)["policyDocument"]["Statement"]
    refused = api_event("authorizer/request.json")
    refused["headers"]["X-API-Key"] = refused["multiValueHeaders"]["X-API-Key"] = "opsk_not_a_key"
    with pytest.raises(Exception, match="Unauthorized"):
        runtime.invoke("AuthorizerFunction", refused)
    assert ops.report_state("idle")[0] == 200
    assert ops.session("0" * 32)[0] == 404  # a request refused

    # a retry, an expired lease, a fallback and the session's end
    template = {
        "name": "logged",
        "tasks": [
            {
                "id": "work",
                "action": "web.fetch",
                "heartbeat_seconds": 30,
                "retry": {"max_retries": 1, "backoff_seconds": 0},
                "fallback": "ask",
            },
            {"id": "ask", "action": "human.ask", "fallback_only": True},
        ],
    }
    session_id = ops.start(template)
    ops.fail(ops.wait_leased(session_id, "work"), "UpstreamDown", "the page did not answer")
    ops.wait_leased(session_id, "work", attempts=2)
    clock.advance(31)  # the lease runs out
    sweep(runtime, api_event)
    ops.succeed(ops.wait_leased(session_id, "ask"))
    assert ops.wait_ended(session_id)["status"] == "completed"

    # an agent gone offline holding a lease
    ops.register("quiet", offline_after_seconds=60)
    silent = SessionDriver(call, api_event, agent_id="quiet", now=clock.now)
    started = run_task(ops, agent_id="quiet")
    silent.wait_leased(started["session_id"], "task")
    clock.advance(121)
    sweep(runtime, api_event)

    # a quarantine: it opens, a session for the agent says so, its queued task fails over, an admin lifts it
    ops.register("flaky", quarantine_after=1)
    flaky = SessionDriver(call, api_event, agent_id="flaky", now=clock.now)
    first = run_task(ops, agent_id="flaky")
    flaky.fail(flaky.wait_leased(first["session_id"], "task"), "OutOfMemory", "no memory left", fault="agent")
    failed_over = run_task(ops, agent_id="flaky")
    assert flaky.wait_ended(failed_over["session_id"])["status"] == "error"
    lifted = call(
        "StateUpdateFunction", api_event("state_update/lift_quarantine.json", agent_id="flaky", caller=ADMIN_CONTEXT)
    )
    assert lifted[0] == 200

    # a webhook agent, signed with its secret: one delivery, answered at once
    enable_socket()
    socket_allow_hosts(["127.0.0.1"])
    with webhook_receiver(lambda _: (200, {"status": "succeeded"})) as receiver:
        ops.register("hooked", delivery="webhook", endpoint=receiver.url, webhook_secret=WEBHOOK_SECRET)
        pushed = run_task(ops, agent_id="hooked")
        assert receiver.wait_for(1)[0].signed
        hooked = SessionDriver(call, api_event, agent_id="hooked", now=clock.now)
        assert hooked.wait_ended(pushed["session_id"])["status"] == "completed"
    disable_socket()

    written = lines.objects()
    for kept_secret in (secret, admin["api_key"], rotated["api_key"], WEBHOOK_SECRET):
        assert kept_secret not in json.dumps(written), "a secret was logged"
    logged = [line for line in written if "_aws" not in line]  # metric lines are metrics, not log lines
    events, required = documented()
    seen = {line["event"] for line in logged}
    assert required <= seen, f"documented but never logged: {sorted(required - seen)}"
    assert seen <= set(events), f"logged but not documented: {sorted(seen - set(events))}"
    for line in logged:
        missing = [field for field in BASE_FIELDS if field not in line]
        assert not missing, f"{line['event']} lacks {missing}: {line}"
        fields = [field for field in events[line["event"]] if not field.endswith("?")]
        absent = [field for field in fields if field not in line]
        assert not absent, f"{line['event']} lacks {absent}: {line}"
    audited = {(line["action"], line["outcome"], line["status"]) for line in logged if line["event"] == "audit"}
    assert {
        ("POST /keys", "allowed", 201),  # each admin action of the flows...
        ("POST /agent/{agentId}/workflow", "allowed", 202),
        ("DELETE /agent/{agentId}/quarantine", "allowed", 200),
        ("GET /agent/{agentId}", "denied", 401),  # ...and the key the authorizer refused
    } <= audited, audited
    changes = [line for line in logged if line["event"] == "state_changed"]
    assert {"old", "new"} <= set(changes[-1]), "a change says what it was and what it is"
