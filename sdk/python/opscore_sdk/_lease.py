"""Keeping one task's lease while its handler runs: a heartbeat in the background, and the handler told when the
lease is lost.

The heartbeat comes every `fraction` of the task's `heartbeat_seconds` (a third leaves room for two lost requests).
A task without one is leased until its attempt's deadline and needs no heartbeat to keep it; it still gets one now
and then (a `fraction` of the time left, at least every MIN_IDLE_BEAT seconds apart), since that is how the worker
learns that the attempt ended without it (a cancelled session). A heartbeat answered with a 4xx means the lease is
gone; one that gets no answer (or a 5xx) is the worker's trouble, counted by the worker, and the lease is given up
when the worker says so or when its end passes unrenewed: a worker never keeps a task it cannot renew.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from opscore_sdk._task import TaskContext
from opscore_sdk._transport import DEFAULT_TIMEOUT
from opscore_sdk.client import OpsCore
from opscore_sdk.errors import ConnectionFailed, OpsCoreError, ServerError, Throttled, UnexpectedResponse
from opscore_sdk.retry import NO_RETRIES

log = logging.getLogger("opscore_sdk.worker")

MIN_IDLE_BEAT = 1.0
# A heartbeat never waits longer for its answer than the lease has left (nor less than this).
MIN_HEARTBEAT_TIMEOUT = 1.0


def _seconds_until(stamp: str) -> float:
    return (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()


class LeaseKeeper:
    """Renews `context`'s lease on a thread of its own from `start()` until `finish()`.

    `on_trouble(error)` is told of each heartbeat that got no usable answer and answers whether to give the lease
    up now; `on_renewed()` of each one that went through.
    """

    def __init__(
        self,
        client: OpsCore,
        agent_id: str,
        context: TaskContext,
        *,
        fraction: float,
        on_trouble: Callable[[OpsCoreError], bool],
        on_renewed: Callable[[], None],
    ) -> None:
        self._client = client
        self._agent_id = agent_id
        self._context = context
        self._fraction = fraction
        self._on_trouble = on_trouble
        self._on_renewed = on_renewed
        self._done = threading.Event()
        self._expires_at = context.task.lease_expires_at
        self._thread = threading.Thread(target=self._keep, name=f"opscore-heartbeat-{context.task_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """Stop renewing; returns at once (a heartbeat in flight is ignored when it ends), so that a result is never
        held up behind one."""
        self._done.set()

    def _interval(self) -> float:
        beat = self._context.task.heartbeat_seconds
        if beat is not None:
            return beat * self._fraction
        return max(MIN_IDLE_BEAT, _seconds_until(self._expires_at) * self._fraction)

    def _keep(self) -> None:
        while not self._done.wait(self._interval()):
            if not self._beat():
                return

    def _beat(self) -> bool:
        """One heartbeat; False once the lease is lost (the context says why)."""
        context = self._context
        left = _seconds_until(self._expires_at)
        try:
            # One try: the next beat is the retry, and the handler learns of a lost lease without waiting out a
            # chain of the client's retries.
            renewed = self._client.heartbeat(
                self._agent_id,
                context.task_id,
                timeout=min(DEFAULT_TIMEOUT, max(MIN_HEARTBEAT_TIMEOUT, left)),
                retries=NO_RETRIES,
            )
        except (ConnectionFailed, ServerError, Throttled, UnexpectedResponse) as error:
            if self._done.is_set():
                return False
            log.warning("task %s attempt %d: heartbeat failed: %s", context.task_id, context.attempt, error)
            if self._on_trouble(error) or _seconds_until(self._expires_at) <= 0:
                self._lose(f"the lease could not be renewed: {error}")
                return False
            return True
        except OpsCoreError as error:
            # 409 task_not_open (expired, cancelled, or its attempt ended), 404, 403: the lease is not ours any more.
            self._lose(f"Ops-Core ended the lease: {error}")
            return False
        except Exception as error:
            # Not an answer at all (a bug, here or below): the lease cannot be kept, and the handler must hear so
            # rather than this thread ending silently while the lease runs out.
            log.exception("task %s attempt %d: heartbeat failed", context.task_id, context.attempt)
            self._lose(f"the lease could not be renewed: {type(error).__name__}: {error}")
            return False
        self._expires_at = renewed.lease_expires_at
        self._on_renewed()
        return True

    def _lose(self, reason: str) -> None:
        if not self._done.is_set():
            log.warning("task %s attempt %d: %s", self._context.task_id, self._context.attempt, reason)
            self._context.lose(reason)
