"""The template's scheduled functions, run locally on a thread as EventBridge would run them in AWS."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from opscore_tools.local.runner import Invoke
from opscore_tools.local.template import ACCOUNT_ID, REGION, Schedule


def scheduled_event(schedule: Schedule) -> dict[str, Any]:
    """The event EventBridge hands a function on its schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/opscore-local-{schedule.function}"],
        "detail": {},
    }


class Scheduler:
    """Invoke each scheduled function every `every_seconds` (or every `override_seconds`, to go faster locally)."""

    def __init__(self, schedules: list[Schedule], invoke: Invoke, override_seconds: float | None = None) -> None:
        self._schedules = schedules
        self._invoke = invoke
        self._override = override_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._schedules:
            self._thread = threading.Thread(target=self._run, name="opscore-local-schedules", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _interval(self, schedule: Schedule) -> float:
        return self._override if self._override is not None else float(schedule.every_seconds)

    def _run(self) -> None:
        due = {schedule: time.monotonic() + self._interval(schedule) for schedule in self._schedules}
        while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            for schedule, when in due.items():
                if when <= time.monotonic():
                    try:
                        self._invoke(schedule.function, scheduled_event(schedule))
                    except Exception:
                        logging.getLogger("opscore.local").exception("scheduled %s failed", schedule.function)
                    due[schedule] = time.monotonic() + self._interval(schedule)
