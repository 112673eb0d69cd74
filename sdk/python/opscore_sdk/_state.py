"""The agent's state as a worker reports it: only changes are sent, each stamped later than the one before.

Ops-Core refuses a state report whose timestamp is not later than the stored one (409 `stale_state`), so two
reports made within the same microsecond, or a clock that steps back, must not reach it out of order: every report
goes through one lock, and its timestamp is at least a microsecond after the previous one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from opscore_sdk._calls import AgentState
from opscore_sdk.client import OpsCore
from opscore_sdk.errors import OpsCoreError, StaleState

log = logging.getLogger("opscore_sdk.worker")


class StateReporter:
    def __init__(self, client: OpsCore, agent_id: str) -> None:
        self._client = client
        self._agent_id = agent_id
        self._lock = threading.Lock()
        self._last_stamp: datetime | None = None
        # What Ops-Core was last told; None when unknown (nothing sent yet, or the last report failed).
        self.state: AgentState | None = None

    def _stamp(self) -> str:
        now = datetime.now(UTC)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return now.isoformat(timespec="microseconds")

    def report(
        self,
        state: AgentState,
        *,
        details: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> bool:
        """Send `state` (even when it is the last one sent); False when Ops-Core did not take it."""
        with self._lock:
            return self._send(state, details, error)

    def settle(self, wanted: Callable[[], AgentState | None]) -> None:
        """Send the state `wanted()` answers, read under the lock, unless it was the last one sent (or None).

        Reading it under the lock is what keeps a busy and an idle from two threads in the right order: whichever
        reports last reports what is true then."""
        with self._lock:
            state = wanted()
            if state is not None and state != self.state:
                self._send(state, None, None)

    def _send(self, state: AgentState, details: Mapping[str, Any] | None, error: Mapping[str, Any] | None) -> bool:
        try:
            self._client.report_state(self._agent_id, state, timestamp=self._stamp(), details=details, error=error)
        except StaleState:
            # A later state is stored, set by Ops-Core itself (a quarantine puts the agent in `error`): ours is old.
            log.info("agent %s: Ops-Core holds a later state than %s; not reported", self._agent_id, state)
            self.state = None
            return False
        except OpsCoreError as failure:
            log.warning("agent %s: cannot report the state %s: %s", self._agent_id, state, failure)
            self.state = None
            return False
        log.debug("agent %s: reported %s", self._agent_id, state)
        self.state = state
        return True
