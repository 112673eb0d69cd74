"""What the dispatch and sweep functions do with an invocation, over the services `opscore.wiring` builds, so their
handlers only pass it on. It sits beside wiring, not in a context: it joins the runner, dispatch and agent health.

The dispatch function is invoked two ways: by the session runner (`lambda:invoke.waitForTaskToken`) with
`{"state": <runner state>, "token": <task token>}`, to queue a task attempt and serve its agent; and asynchronously
with `{"serve": <agent id>}` when an agent whose channel pushes can take work again. The sweep, on its schedule,
expires leases and marks silent agents offline, then serves the agents that got a slot back.

Both serve within the time their invocation has left, less DELIVERY_RESERVE_SECONDS for the delivery last started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from opscore import wiring
from opscore.core.observability import logger

if TYPE_CHECKING:
    # Imported where used: the sweep needs neither, and the services import them on the first invocation anyway.
    from opscore.sessions.runner import RunnerState

# Time kept back from the function's timeout: the last delivery started may take this long (3 tries of 5 s).
DELIVERY_RESERVE_SECONDS = 20.0

RemainingMs = Callable[[], int]  # the Lambda context's get_remaining_time_in_millis


def serving_budget(remaining_ms: int) -> float:
    """Seconds a serve may go on starting deliveries: what is left of the invocation, less the reserve."""
    return max(0.0, remaining_ms / 1000 - DELIVERY_RESERVE_SECONDS)


# NamedTuples: defining a frozen dataclass costs about 0.7 ms of a cold start, a NamedTuple about 0.1 ms.
class ServeRequest(NamedTuple):
    agent_id: str


class DispatchRequest(NamedTuple):
    state: RunnerState
    token: str


def dispatch_request(event: Mapping[str, Any]) -> ServeRequest | DispatchRequest:
    """Which of its two jobs a dispatch invocation asks for."""
    if "serve" in event:
        return ServeRequest(str(event["serve"]))
    from opscore.sessions.runner import RunnerState

    return DispatchRequest(RunnerState.model_validate(event["state"]), event["token"])


def handle_dispatch_event(event: Mapping[str, Any], remaining_ms: RemainingMs) -> dict[str, Any]:
    request = dispatch_request(event)
    if isinstance(request, ServeRequest):
        logger.append_keys(agent_id=request.agent_id)
        return {"pushed": wiring.dispatcher().serve(request.agent_id, budget_seconds=serving_budget(remaining_ms()))}
    return {"dispatch": queue_and_serve(request.state, request.token, remaining_ms)}


def queue_and_serve(state: RunnerState, token: str, remaining_ms: RemainingMs) -> str:
    """Queue the runner's task attempt, then serve its agent; the outcome is what the runner is told."""
    logger.set_correlation_id(state.session_id)
    logger.append_keys(session_id=state.session_id, agent_id=state.agent_id)
    outcome = wiring.session_runner().dispatch(state, token)
    if outcome == "session_ended":
        return outcome
    # A repeated dispatch serves too: the first may have stopped before it could.
    from opscore.sessions.records import TaskRef

    task = TaskRef(state.session_id, state.current().task_index or 0, state.current().sequence)
    try:
        wiring.dispatcher().enqueued(state.agent_id, task, budget_seconds=serving_budget(remaining_ms()))
    except Exception:
        # Deliberately broad. The attempt is queued and stored by now: whatever serving raises (AWS errors, a
        # throttle, a fault in a delivery channel), failing this invocation would fail or repeat the runner's
        # Dispatch step for an attempt that is in fact waiting in its agent's queue. Logged with its trace instead.
        logger.exception("serving the agent's queue failed; its next wake or pull takes the task")
    return outcome


class SweepOutcome(NamedTuple):
    leases_expired: int
    agents_offline: int
    pushed: int

    def as_dict(self) -> dict[str, int]:
        return {"leases_expired": self.leases_expired, "agents_offline": self.agents_offline, "pushed": self.pushed}


def sweep_and_serve(remaining_ms: RemainingMs) -> SweepOutcome:
    """The health sweep, then a serve of each agent it gave a slot back, while the invocation has time for one."""
    report = wiring.agent_health().sweep()
    pushed = 0
    for agent_id in sorted(report.agents_freed):
        budget = serving_budget(remaining_ms())
        if budget == 0:
            break  # the rest is served when those agents next report, or by the next sweep
        pushed += wiring.dispatcher().serve(agent_id, budget_seconds=budget)
    outcome = SweepOutcome(report.leases_expired, report.agents_offline, pushed)
    logger.info("sweep done", extra=outcome.as_dict())
    return outcome
