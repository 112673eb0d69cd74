"""Why an agent's state report is refused."""

from __future__ import annotations

from opscore.core.errors import Conflict


class StaleState(Conflict):
    """A report not newer than the stored state, and not a repeat of an accepted one."""

    code = "stale_state"


class NotQuarantined(Conflict):
    """An admin's lift of a quarantine the agent is not in."""

    code = "not_quarantined"
