"""AgentWorker: the loop every polling agent needs, around handlers of its own.

    worker = AgentWorker(OpsCore(URL, agent_key), "research-agent", max_concurrency=4)

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        return {"pages": crawl(task.input["url"])}

    worker.run()  # until SIGINT or SIGTERM

On start it registers the agent (its capabilities: the actions it has handlers for, unless given) and reports
`idle`. A leasing thread then leases tasks while a slot is free (at most `max_concurrency`), backing off with jitter
while the queue is empty and waiting out a quarantine's Retry-After. Each task runs on a thread of its own (an
`async def` handler in an event loop of its own), its lease renewed in the background (opscore_sdk._lease); its
return value is reported as the attempt's output, its exception as the attempt's failure (`NotRetryable` saying not
to retry, `AgentFault` that the agent is at fault). The agent is `busy` while any task runs and `idle` when none
does; only changes are reported.

Stopping (stop(), or SIGINT/SIGTERM under run()) stops leasing, lets running tasks finish for up to `drain_timeout`
seconds or until a second signal (those still running then are told their lease is lost and reported failed,
`WorkerStopped`, worth retrying; whatever their handlers return later is dropped), and reports `offline`.
A worker whose heartbeats keep failing for want of an answer (`max_heartbeat_failures` in a row) stops taking work,
gives up the leases it cannot renew, logs why, reports `error` with the reason if Ops-Core hears it, and stops:
`failure` says why, and run() raises WorkerFailed, for a supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from opscore_sdk._calls import AgentState
from opscore_sdk._lease import LeaseKeeper
from opscore_sdk._state import StateReporter
from opscore_sdk._task import AgentFault, Handler, LeaseLost, NotRetryable, TaskContext, run_handler
from opscore_sdk.client import OpsCore
from opscore_sdk.errors import Forbidden, NotFound, OpsCoreError, Quarantined, Unauthorized, ValidationFailed
from opscore_sdk.models import LeasedTask

__all__ = ["AgentFault", "AgentWorker", "Backoff", "LeaseLost", "NotRetryable", "TaskContext", "WorkerFailed"]

log = logging.getLogger("opscore_sdk.worker")


@dataclass(frozen=True)
class Backoff:
    """How long the worker waits before asking for work again after the n-th empty answer in a row (n from 1):
    `initial * multiplier ** (n - 1)`, at most `maximum`, then jittered to between half and all of it, so that
    agents started together do not poll together. `random` may be replaced in tests."""

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    random: Callable[[], float] = field(default=random.random)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and multiplier >= 1")

    def delay(self, empty_answers: int) -> float:
        ceiling = min(self.maximum, self.initial * self.multiplier ** max(0, empty_answers - 1))
        return ceiling * (0.5 + self.random() / 2)


class WorkerFailed(Exception):
    """Raised by run() and arun() when the worker stopped on its own (its `failure` is the message), so that the
    process ends in an error and its supervisor restarts it."""


@dataclass
class _Running:
    context: TaskContext
    keeper: LeaseKeeper
    thread: threading.Thread
    # Whose answer the attempt gets: its handler's, or the stop's WorkerStopped (set once, under the worker's lock).
    answered_by: str | None = None


class AgentWorker:
    """Runs an agent's handlers for the tasks Ops-Core leases it (see the module's docstring).

    `client` must carry the agent's key (or an admin key). `capabilities` default to the actions with handlers;
    `registration` adds fields to the registration sent on start (`metadata`, `version`, `offline_after_seconds`,
    the quarantine's settings...). `poll` paces leasing while the queue is empty. `heartbeat_fraction` of a task's
    `heartbeat_seconds` separates its heartbeats.
    """

    def __init__(
        self,
        client: OpsCore,
        agent_id: str,
        *,
        capabilities: Iterable[str] | None = None,
        max_concurrency: int = 1,
        name: str | None = None,
        registration: Mapping[str, Any] | None = None,
        poll: Backoff | None = None,
        drain_timeout: float = 30.0,
        heartbeat_fraction: float = 1 / 3,
        max_heartbeat_failures: int = 3,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not 0 < heartbeat_fraction < 1:
            raise ValueError("heartbeat_fraction must be between 0 and 1")
        if drain_timeout < 0:
            raise ValueError("drain_timeout must not be negative")
        self.client = client
        self.agent_id = agent_id
        self.max_concurrency = max_concurrency
        self.drain_timeout = drain_timeout
        self._capabilities = None if capabilities is None else list(capabilities)
        self._name = name or agent_id
        self._registration = dict(registration or {})
        self._poll = poll or Backoff()
        self._fraction = heartbeat_fraction
        self._max_heartbeat_failures = max_heartbeat_failures
        self._handlers: dict[str, Handler] = {}
        self._states = StateReporter(client, agent_id)
        self._lock = threading.Condition()
        self._running: dict[str, _Running] = {}
        self._heartbeat_failures = 0
        self._stopping = threading.Event()  # no more leasing
        self._stop_requested = threading.Event()  # run() should stop the worker (a signal, or a failure)
        self._stopped = threading.Event()
        self._drain_cut = threading.Event()  # a second signal: stop waiting for running tasks
        self._leaser: threading.Thread | None = None
        self._quarantined = False
        # Why the worker stopped on its own (heartbeats failing, its key refused); None otherwise.
        self.failure: str | None = None

    # ------------------------------------------------------------------ handlers

    def task(self, action: str) -> Callable[[Handler], Handler]:
        """Register the decorated function (sync or `async def`) as the handler of `action`."""

        def register(handler: Handler) -> Handler:
            if action in self._handlers:
                raise ValueError(f"a handler for {action!r} is already registered")
            self._handlers[action] = handler
            return handler

        return register

    @property
    def capabilities(self) -> list[str]:
        return self._capabilities if self._capabilities is not None else sorted(self._handlers)

    @property
    def running(self) -> int:
        """Tasks whose handlers run now."""
        with self._lock:
            return len(self._running)

    @property
    def leasing(self) -> bool:
        """The worker still asks for work (started, and neither stopping nor failed)."""
        return self._leaser is not None and self._leaser.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Register the agent, report `idle`, and start leasing on a background thread; returns at once."""
        if self._leaser is not None:
            raise RuntimeError("the worker was already started")
        body = {
            "name": self._name,
            "capabilities": self.capabilities,
            "max_concurrency": self.max_concurrency,
            **self._registration,
        }
        self.client.register(self.agent_id, body)
        log.info(
            "agent %s registered (%s); leasing up to %d at once",
            self.agent_id,
            body["capabilities"],
            self.max_concurrency,
        )
        self._states.report("idle")
        self._leaser = threading.Thread(target=self._lease_loop, name=f"opscore-worker-{self.agent_id}", daemon=True)
        self._leaser.start()

    def stop(self, drain_timeout: float | None = None) -> None:
        """Stop leasing, let running tasks finish for up to `drain_timeout` seconds (default: the worker's), report
        those still running failed (WorkerStopped), and report `offline` (or leave the `error` a failure reported)."""
        if self._stopped.is_set():
            return
        wait = self.drain_timeout if drain_timeout is None else drain_timeout
        with self._lock:
            self._stopping.set()
            self._stop_requested.set()
            self._lock.notify_all()  # the leasing thread may be waiting for a slot: it must see the stop now
        left = self._drain(wait)
        if left:
            log.warning(
                "agent %s: %d task(s) still running after %g s; they are given up as failed",
                self.agent_id,
                len(left),
                wait,
            )
            for running in left:
                self._give_up(running)
        if self.failure is None:
            self._states.report("offline", details={"reason": "the worker stopped"})
        self._stopped.set()
        log.info("agent %s: stopped", self.agent_id)

    def _drain(self, wait: float) -> list[_Running]:
        """Wait, up to `wait` seconds in all, for the leasing thread and the running tasks; the tasks still running
        then, which the stop answers."""
        deadline = time.monotonic() + wait
        if self._leaser is not None and self._leaser is not threading.current_thread():
            # It ends once its lease request is answered; a request still hanging must not hold up the stop (a task
            # it brings later is answered WorkerStopped: see _begin).
            self._leaser.join(timeout=wait)
        with self._lock:
            if self._running:
                log.info("agent %s: waiting up to %g s for %d running task(s)", self.agent_id, wait, len(self._running))
            self._lock.wait_for(
                lambda: not self._running or self._drain_cut.is_set(), timeout=max(0.0, deadline - time.monotonic())
            )
            return [running for running in self._running.values() if self._answer(running, "stop")]

    def _give_up(self, running: _Running) -> None:
        """End a task still running at the drain timeout: its handler is told, and the attempt is reported failed
        (worth retrying) so that it is retried now rather than when its lease expires, which would count toward the
        agent's quarantine."""
        context = running.context
        reason = "the worker stopped before the task finished"
        context.lose(reason)
        running.keeper.finish()
        self._report(context, _stopped(context, reason))

    @staticmethod
    def _answer(running: _Running, by: str) -> bool:
        """Whether `by` (the handler, or the stop) answers the attempt: the first to ask does. Under the lock."""
        if running.answered_by is None:
            running.answered_by = by
        return running.answered_by == by

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has been asked to stop (a signal under run(), or a failure); True if it was."""
        return self._stop_requested.wait(timeout)

    def run(self) -> None:
        """start(), then serve until SIGINT or SIGTERM, then stop(); a failure (see `failure`) stops it too, and
        raises WorkerFailed. Signal handlers are installed only when called from the main thread; the previous ones
        are put back on return."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            self.start()
            self._stop_requested.wait()
        finally:
            self.stop()
            for installed, handler in previous.items():
                signal.signal(installed, handler)
        if self.failure is not None:
            raise WorkerFailed(self.failure)

    async def arun(self) -> None:
        """run() for asyncio programs: the worker's threads do the work; the event loop only waits for a signal
        (or a cancel) and for the drain. Handlers may be `async def` either way."""
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum, None)
                installed.append(signum)
        try:
            await asyncio.to_thread(self.start)
            await asyncio.to_thread(self._stop_requested.wait)
        finally:
            self._stop_requested.set()
            try:
                await asyncio.to_thread(self.stop)  # a second signal meanwhile cuts the drain short
            finally:
                for signum in installed:
                    loop.remove_signal_handler(signum)
        if self.failure is not None:
            raise WorkerFailed(self.failure)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self._stop_requested.is_set():
            log.info("agent %s: %s received; shutting down", self.agent_id, name)
            self._stop_requested.set()
            return
        # A second signal: the operator will not wait for the drain.
        log.warning("agent %s: %s received again; giving up the running tasks now", self.agent_id, name)
        with self._lock:
            self._drain_cut.set()
            self._lock.notify_all()

    # ------------------------------------------------------------------ leasing

    def _wanted_state(self) -> AgentState | None:
        if self._stopping.is_set():
            return None  # stop() (or a failure) reports the last state
        return "busy" if self._running else "idle"

    def _lease_loop(self) -> None:
        empty_answers = 0
        while self._wait_for_slot():
            try:
                task, empty_answers, pause = self._lease(empty_answers)
                if task is not None:
                    self._begin(task)
            except Exception:
                # Whatever went wrong (an answer the client could not read, a failure starting a task), the leasing
                # thread must not end, silently leaving run() waiting forever.
                log.exception("agent %s: leasing failed", self.agent_id)
                empty_answers, pause = empty_answers + 1, self._poll.delay(empty_answers + 1)
            if pause:
                self._stopping.wait(pause)

    def _wait_for_slot(self) -> bool:
        with self._lock:
            self._lock.wait_for(lambda: self._stopping.is_set() or len(self._running) < self.max_concurrency)
        return not self._stopping.is_set()

    def _lease(self, empty_answers: int) -> tuple[LeasedTask | None, int, float]:
        """Ask for a task: (the task or None, the empty answers in a row now, how long to wait before asking again)."""
        try:
            task = self.client.next_task(self.agent_id)
        except Quarantined as quarantined:
            pause = quarantined.retry_after or self._poll.maximum
            if not self._quarantined:
                log.warning("agent %s is quarantined; asking again in %g s", self.agent_id, pause)
            self._quarantined = True
            return None, empty_answers, pause
        except (Unauthorized, Forbidden, NotFound) as refused:
            self._fail(f"Ops-Core refuses to lease tasks to this agent: {refused}")
            return None, empty_answers, 0.0
        except OpsCoreError as error:
            log.warning("agent %s: cannot lease a task: %s", self.agent_id, error)
            return None, empty_answers + 1, self._poll.delay(empty_answers + 1)
        if self._quarantined:
            log.info("agent %s: the quarantine is over", self.agent_id)
            self._quarantined = False
        if task is None:
            return None, empty_answers + 1, self._poll.delay(empty_answers + 1)
        return task, 0, 0.0

    def _begin(self, task: LeasedTask) -> None:
        context = TaskContext(task)
        keeper = LeaseKeeper(
            self.client,
            self.agent_id,
            context,
            fraction=self._fraction,
            on_trouble=self._heartbeat_failed,
            on_renewed=self._heartbeat_renewed,
        )
        thread = threading.Thread(
            target=self._work, args=(context, keeper), name=f"opscore-task-{task.task_id}", daemon=True
        )
        with self._lock:
            stopping = self._stopping.is_set()
            if not stopping:
                self._running[task.task_id] = _Running(context, keeper, thread)
        if stopping:
            # Leased by a request the stop did not wait for: given back at once, to be retried, not left to expire.
            self._report(context, _stopped(context, "the worker was stopping when the task was leased"))
            return
        log.info("task %s attempt %d (%s) leased", task.task_id, task.attempt, task.action)
        # The lease is renewed and the handler runs before the state report, which may take its retries' time.
        try:
            keeper.start()
            thread.start()
        except BaseException:
            with self._lock:  # no thread will free the slot
                self._running.pop(task.task_id, None)
            keeper.finish()
            raise
        self._states.settle(self._wanted_state)

    # ------------------------------------------------------------------ one task

    def _work(self, context: TaskContext, keeper: LeaseKeeper) -> None:
        try:
            try:
                handler = self._handlers.get(context.action)
                result = _no_handler(context) if handler is None else run_handler(handler, context)
            finally:
                keeper.finish()  # whatever ended the handler, nobody works on the task now
            with self._lock:
                running = self._running.get(context.task_id)
                ours = running is None or self._answer(running, "handler")
            if context.lease_lost.is_set() or not ours:
                log.warning(
                    "task %s attempt %d: result dropped: %s", context.task_id, context.attempt, context.lost_reason
                )
            else:
                self._report(context, result)
        finally:
            with self._lock:
                self._running.pop(context.task_id, None)
                self._lock.notify_all()
            self._states.settle(self._wanted_state)

    def _report(self, context: TaskContext, result: dict[str, Any]) -> None:
        try:
            self._send_result(context, result)
        except OpsCoreError as error:
            # 409: the attempt ended meanwhile (expired, cancelled); otherwise Ops-Core could not be reached. Either
            # way the lease ends on its own.
            log.warning("task %s attempt %d: result not taken: %s", context.task_id, context.attempt, error)
            return
        log.info("task %s attempt %d: %s", context.task_id, context.attempt, result["status"])

    def _send_result(self, context: TaskContext, result: dict[str, Any]) -> None:
        try:
            self.client.report_result(self.agent_id, context.task_id, result)
        except ValidationFailed as refused:
            # An Ops-Core older than `retryable` refuses the field: the failure is still worth reporting as such.
            if "retryable" not in result.get("error", {}) or not any("retryable" in name for name in refused.fields):
                raise
            log.warning('task %s: this Ops-Core does not take "retryable"; reported without it', context.task_id)
            error = {name: value for name, value in result["error"].items() if name != "retryable"}
            self.client.report_result(self.agent_id, context.task_id, {**result, "error": error})

    # ------------------------------------------------------------------ heartbeats and failures

    def _heartbeat_renewed(self) -> None:
        with self._lock:
            self._heartbeat_failures = 0

    def _heartbeat_failed(self, error: OpsCoreError) -> bool:
        with self._lock:
            self._heartbeat_failures += 1
            failures = self._heartbeat_failures
        if failures < self._max_heartbeat_failures:
            return False
        self._fail(f"{failures} heartbeats in a row got no answer (last: {error})")
        return True

    def _fail(self, reason: str) -> None:
        """Stop taking work for good: give up every lease, say why (in the log, and as the agent's `error`)."""
        with self._lock:
            if self.failure is not None:
                return
            self.failure = reason
            self._stopping.set()
            self._stop_requested.set()
            self._lock.notify_all()
            running = list(self._running.values())
        log.error("agent %s stops taking work: %s", self.agent_id, reason)
        for task in running:
            task.context.lose(f"the worker gave up its leases: {reason}")
        self._states.report("error", error={"type": "WorkerStopped", "message": reason[:2048]})


def _no_handler(context: TaskContext) -> dict[str, Any]:
    message = f"this worker has no handler for {context.action!r}"
    return {"status": "failed", "attempt": context.attempt, "error": {"type": "NoHandler", "message": message}}


def _stopped(context: TaskContext, reason: str) -> dict[str, Any]:
    """The failed result of an attempt the worker gives back as it stops: worth retrying, and not the agent's fault."""
    error = {"type": "WorkerStopped", "message": reason}
    return {"status": "failed", "attempt": context.attempt, "error": error}
