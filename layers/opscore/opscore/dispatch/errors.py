"""Why an agent's result or heartbeat for a task is refused."""

from __future__ import annotations

from typing import Any

from opscore.core.errors import Conflict


class ResultConflict(Conflict):
    code = "result_conflict"


class TaskNotOpen(Conflict):
    code = "task_not_open"


class AttemptRequired(Conflict):
    code = "attempt_required"


class AgentQuarantined(Conflict):
    """POST .../tasks/next for an agent whose breaker is open (or half-open without a probe for it): the error says
    since when and why (`quarantine`), and Retry-After when to ask again."""

    code = "agent_quarantined"

    def __init__(self, message: str, quarantine: dict[str, Any], retry_after: int) -> None:
        super().__init__(message)
        self.quarantine = quarantine
        self.retry_after = retry_after

    @property
    def fields(self) -> dict[str, Any]:
        return {"quarantine": self.quarantine}

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
