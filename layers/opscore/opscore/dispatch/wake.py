"""Serve an agent's queue soon after it becomes able to take work, without holding up the request that made it so.

When an agent reports `idle`, comes back from `paused`, or reports a result, its queue should be served at once. A
polling agent serves itself (its next pull leases the task); for an agent whose channel pushes, the dispatch function
is invoked asynchronously to lease and deliver, so the agent's own request is answered first (an agent that waits
for that answer before it reads its webhook would otherwise wait on itself)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opscore.agents.models import StateAccepted
from opscore.agents.records import became_able_to_take_work
from opscore.agents.store import AgentStore
from opscore.core.observability import logger
from opscore.dispatch.delivery import channel


class Waker:
    def __init__(self, agents: AgentStore, client: Callable[[], Any], dispatch_function: str | None) -> None:
        self._agents = agents
        self._client = client  # built on first use: most state reports wake nobody
        self._dispatch_function = dispatch_function

    def state_changed(self, accepted: StateAccepted) -> bool:
        """Idle, or back from paused, error or offline into a state that takes work: serve the queue."""
        if became_able_to_take_work(accepted.previous_state, accepted.state):
            return self.wake(accepted.agent_id)
        return False

    def wake(self, agent_id: str) -> bool:
        """Have the agent's queue served, if its channel pushes; True when a serve was requested."""
        delivery = self._agents.delivery_of(agent_id)
        if delivery is None or not channel(delivery).pushes:
            return False
        if not self._dispatch_function:
            raise RuntimeError("DISPATCH_FUNCTION_ARN is not set for this function")
        self._client().invoke(
            FunctionName=self._dispatch_function,
            InvocationType="Event",
            Payload=json.dumps({"serve": agent_id}).encode(),
        )
        logger.info("agent queue service requested", extra={"event": "serve_requested", "agent_id": agent_id})
        return True
