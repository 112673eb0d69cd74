"""The `poll` channel: nothing is pushed; the agent leases its tasks with POST .../tasks/next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opscore.dispatch.delivery import Delivery, Target

if TYPE_CHECKING:
    from opscore.agents.models import RegistrationRequest
    from opscore.core.errors import FieldProblem
    from opscore.dispatch.models import LeasedTask


class PollChannel:
    pushes = False

    def check(self, registration: RegistrationRequest) -> list[FieldProblem]:  # noqa: ARG002 - any agent can poll
        return []

    def deliver(self, target: Target, task: LeasedTask) -> Delivery:
        raise NotImplementedError(f"agent {target.agent_id} polls for its tasks; {task.task_id} is not pushed")


CHANNEL = PollChannel()
