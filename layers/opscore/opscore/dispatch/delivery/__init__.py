"""Delivery channels: how a leased task reaches its agent.

Each channel is one module of this package exposing `CHANNEL`, and is registered by name in `CHANNELS`; an agent
picks one at registration (`delivery`). A channel that `pushes` is handed each task Ops-Core leases for the agent
and says how the hand-over went; one that does not (poll) leaves the agent to lease its own tasks. Adding a channel
(SQS, EventBridge...) is one new module and one line below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from opscore.agents.models import RegistrationRequest
    from opscore.core.errors import FieldProblem
    from opscore.dispatch.models import LeasedTask, TaskResult

CHANNELS = {
    "poll": "opscore.dispatch.delivery.poll",
    "webhook": "opscore.dispatch.delivery.webhook",
}


@dataclass(frozen=True)
class Target:
    """Where an agent takes its tasks, as registered."""

    agent_id: str
    endpoint: str | None
    secret: str | None


@dataclass(frozen=True)
class Delivery:
    """How a hand-over went: `completed` carries the agent's result; `accepted` means the agent reports it later;
    `failed` says why the task could not be handed over (the attempt then fails)."""

    outcome: Literal["completed", "accepted", "failed"]
    result: TaskResult | None = None
    reason: str = ""


class Channel(Protocol):
    pushes: bool

    def check(self, registration: RegistrationRequest) -> list[FieldProblem]:
        """What a registration choosing this channel lacks (each problem names its field)."""
        ...

    def deliver(self, target: Target, task: LeasedTask) -> Delivery: ...


def channel(name: str) -> Channel:
    """The channel registered as `name` (imported on first use: a function loads only the channels it meets)."""
    module = CHANNELS.get(name)
    if module is None:
        raise LookupError(f"no delivery channel {name!r}")
    loaded: Channel = importlib.import_module(module).CHANNEL
    return loaded
