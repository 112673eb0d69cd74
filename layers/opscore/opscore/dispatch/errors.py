"""Why an agent's result or heartbeat for a task is refused."""

from __future__ import annotations

from opscore.core.errors import Conflict


class ResultConflict(Conflict):
    code = "result_conflict"


class TaskNotOpen(Conflict):
    code = "task_not_open"


class AttemptRequired(Conflict):
    code = "attempt_required"
