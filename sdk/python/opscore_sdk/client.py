"""`OpsCore` and `AsyncOpsCore`: every route of the Ops-Core API as a typed method.

Both build their requests and read their answers with the same code (opscore_sdk._calls and _transport); only the
sending differs, so the two classes have the same methods, one line each. Every method takes `timeout=` (seconds)
to override the client's for that call. The `iter_*` methods follow `next_token` lazily, one page at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import httpx

from opscore_sdk import _calls, models
from opscore_sdk._calls import AgentState, Body, Call, When
from opscore_sdk._transport import DEFAULT_TIMEOUT, Settings, build, no_answer, outcome, retry_delay
from opscore_sdk.retry import RetryPolicy


class _Page[I](Protocol):
    @property
    def items(self) -> list[I]: ...

    @property
    def next_token(self) -> str | None: ...


def _every_item[I](fetch: Callable[[str | None], _Page[I]]) -> Iterator[I]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page.items
        token = page.next_token
        if not token:
            return


async def _every_item_async[I](fetch: Callable[[str | None], Awaitable[_Page[I]]]) -> AsyncIterator[I]:
    token: str | None = None
    while True:
        page = await fetch(token)
        for item in page.items:
            yield item
        token = page.next_token
        if not token:
            return


class OpsCore:
    """The Ops-Core API, synchronously: `OpsCore("http://127.0.0.1:3000/v1/opscore", api_key)`.

    `retries` decides what is retried and how long to wait (RetryPolicy; NO_RETRIES to turn retries off);
    `transport` replaces httpx's (an httpx.MockTransport in tests). Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = Settings(base_url, api_key, timeout, retries or RetryPolicy())
        self._http = httpx.Client(transport=transport, **self._settings.client_options())
        self._sleep = self._settings.retries.sleep or time.sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _run[T](self, call: Call[T], timeout: float | None, retries: RetryPolicy | None = None) -> T:
        policy = retries or self._settings.retries
        attempt = 1
        while True:
            try:
                response = self._http.send(build(self._http, call, timeout))
            except httpx.TransportError as error:
                delay = retry_delay(policy, call, attempt, response=None, error=error)
                if delay is None:
                    raise no_answer(call, error) from error
            else:
                delay = retry_delay(policy, call, attempt, response=response, error=None)
                if delay is None:
                    return outcome(call, response)
            self._sleep(delay)
            attempt += 1

    def health(self, *, timeout: float | None = None) -> models.Health:
        """GET /health: liveness (needs no key)."""
        return self._run(_calls.health(), timeout)

    def create_key(
        self,
        *,
        role: Literal["admin", "agent"] | None = None,
        agent_id: str | None = None,
        expires_at: When | None = None,
        timeout: float | None = None,
    ) -> models.CreatedKey:
        """POST /keys (admin): an agent key (`agent_id=`) or an admin key (`role="admin"`), expiring at
        `expires_at` when given."""
        return self._run(_calls.create_key(role=role, agent_id=agent_id, expires_at=expires_at), timeout)

    def list_keys(
        self,
        *,
        agent_id: str | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.KeyPage:
        """GET /keys (admin): one page of keys (never a key itself); `iter_keys` follows every page."""
        return self._run(_calls.list_keys(agent_id=agent_id, limit=limit, next_token=next_token), timeout)

    def rotate_key(
        self,
        key_id: str,
        *,
        expires_at: When | None = None,
        old_key_expires_at: When | None = None,
        timeout: float | None = None,
    ) -> models.CreatedKey:
        """POST /keys/{keyId}/rotate (admin): a new key for the same principal; the old one works on until it is
        revoked, expires, or reaches `old_key_expires_at`."""
        call = _calls.rotate_key(key_id, expires_at=expires_at, old_key_expires_at=old_key_expires_at)
        return self._run(call, timeout)

    def revoke_key(self, key_id: str, *, timeout: float | None = None) -> None:
        """DELETE /keys/{keyId} (admin)."""
        return self._run(_calls.revoke_key(key_id), timeout)

    def create_workflow(self, template: Body | str, *, timeout: float | None = None) -> models.WorkflowCreated:
        """POST /workflows (admin): a template as a model, a mapping, or YAML text."""
        return self._run(_calls.create_workflow(template), timeout)

    def list_workflows(
        self, *, limit: int | None = None, next_token: str | None = None, timeout: float | None = None
    ) -> models.WorkflowPage:
        """GET /workflows (admin): one page; `iter_workflows` follows every page."""
        return self._run(_calls.list_workflows(limit=limit, next_token=next_token), timeout)

    def get_workflow(
        self, workflow_id: str, *, version: int | None = None, timeout: float | None = None
    ) -> models.WorkflowVersion:
        """GET /workflows/{workflowId}: the latest version unless `version` is given."""
        return self._run(_calls.get_workflow(workflow_id, version=version), timeout)

    def register(self, agent_id: str, registration: Body, *, timeout: float | None = None) -> models.Agent:
        """PUT /agent/{agentId}: register the agent or re-sync its registration."""
        return self._run(_calls.register(agent_id, registration), timeout)

    def get_agent(self, agent_id: str, *, timeout: float | None = None) -> models.Agent:
        """GET /agent/{agentId}."""
        return self._run(_calls.get_agent(agent_id), timeout)

    def report_state(
        self,
        agent_id: str,
        state: AgentState,
        *,
        timestamp: When | None = None,
        details: Mapping[str, Any] | None = None,
        error: Body | None = None,
        timeout: float | None = None,
    ) -> models.StateAccepted:
        """POST /agent/{agentId}/state, stamped now unless `timestamp` is given (StaleState: a later one is in)."""
        return self._run(
            _calls.report_state(agent_id, state, timestamp=timestamp, details=details, error=error), timeout
        )

    def lift_quarantine(self, agent_id: str, *, timeout: float | None = None) -> models.Agent:
        """DELETE /agent/{agentId}/quarantine (admin)."""
        return self._run(_calls.lift_quarantine(agent_id), timeout)

    def list_agents(
        self,
        *,
        state: AgentState | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.AgentPage:
        """GET /agents (admin): one page; `iter_agents` follows every page."""
        return self._run(_calls.list_agents(state=state, limit=limit, next_token=next_token), timeout)

    def get_agent_stats(
        self, agent_id: str, *, window: str | None = None, timeout: float | None = None
    ) -> models.AgentStats:
        """GET /agent/{agentId}/stats over `window` (`5m` to `24h`, default 1h)."""
        return self._run(_calls.get_agent_stats(agent_id, window=window), timeout)

    def get_state_history(
        self,
        agent_id: str,
        *,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.HistoryPage:
        """GET /agent/{agentId}/state/history: one page, newest first; `iter_state_history` follows every page."""
        return self._run(
            _calls.get_state_history(agent_id, since=since, until=until, limit=limit, next_token=next_token), timeout
        )

    def trigger(
        self,
        agent_id: str,
        workflow_id: str | None = None,
        *,
        version: int | None = None,
        template: Body | None = None,
        input: Mapping[str, Any] | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> models.SessionStarted:
        """POST /agent/{agentId}/workflow (admin): start a session; an Idempotency-Key is generated unless given."""
        return self._run(
            _calls.trigger(
                agent_id,
                workflow_id=workflow_id,
                version=version,
                template=template,
                input=input,
                priority=priority,
                idempotency_key=idempotency_key,
            ),
            timeout,
        )

    def run_task(
        self, agent_id: str, task: Body, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> models.TaskStarted:
        """POST /agent/{agentId}/tasks (admin): one ad-hoc task as a session; an Idempotency-Key unless given."""
        return self._run(_calls.run_task(agent_id, task, idempotency_key=idempotency_key), timeout)

    def list_sessions(
        self,
        agent_id: str,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.SessionPage:
        """GET /agent/{agentId}/sessions: one page, newest first; `iter_sessions` follows every page."""
        return self._run(
            _calls.list_sessions(
                agent_id,
                status=status,
                workflow_id=workflow_id,
                since=since,
                until=until,
                limit=limit,
                next_token=next_token,
            ),
            timeout,
        )

    def get_session(self, agent_id: str, session_id: str, *, timeout: float | None = None) -> models.SessionView:
        """GET /agent/{agentId}/sessions/{sessionId}."""
        return self._run(_calls.get_session(agent_id, session_id), timeout)

    def get_session_trace(self, agent_id: str, session_id: str, *, timeout: float | None = None) -> models.SessionTrace:
        """GET /agent/{agentId}/sessions/{sessionId}/trace."""
        return self._run(_calls.get_session_trace(agent_id, session_id), timeout)

    def get_trace(self, session_id: str, *, timeout: float | None = None) -> models.SessionTrace:
        """GET /sessions/{sessionId}/trace (admin): the trace by the session id alone."""
        return self._run(_calls.get_trace(session_id), timeout)

    def cancel(self, agent_id: str, session_id: str, *, timeout: float | None = None) -> models.SessionView:
        """POST /agent/{agentId}/sessions/{sessionId}/cancel (admin)."""
        return self._run(_calls.cancel(agent_id, session_id), timeout)

    def list_tasks(
        self,
        agent_id: str,
        *,
        status: Literal["queued", "leased"] | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.QueuePage:
        """GET /agent/{agentId}/tasks: one page of the queue; `iter_tasks` follows every page."""
        return self._run(_calls.list_tasks(agent_id, status=status, limit=limit, next_token=next_token), timeout)

    def next_task(self, agent_id: str, *, timeout: float | None = None) -> models.LeasedTask | None:
        """POST /agent/{agentId}/tasks/next: the leased task, or None when nothing is ready (204).

        Raises Quarantined (its `retry_after` says when to ask again) while the agent is quarantined.
        """
        return self._run(_calls.next_task(agent_id), timeout)

    def report_result(
        self, agent_id: str, task_id: str, result: Body, *, timeout: float | None = None
    ) -> models.TaskResultAccepted:
        """POST /agent/{agentId}/tasks/{taskId}/result with a TaskResult (send its `attempt`)."""
        return self._run(_calls.report_result(agent_id, task_id, result), timeout)

    def succeed(
        self,
        agent_id: str,
        task_id: str,
        *,
        attempt: int,
        output: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> models.TaskResultAccepted:
        """Report that the task's `attempt` succeeded, with its `output`."""
        return self._run(_calls.report_result(agent_id, task_id, _calls.succeeded(attempt, output)), timeout)

    def fail(
        self, agent_id: str, task_id: str, *, attempt: int, error: Body, timeout: float | None = None
    ) -> models.TaskResultAccepted:
        """Report that the task's `attempt` failed with `error` (a TaskError: `type`, `message`, `fault`)."""
        return self._run(_calls.report_result(agent_id, task_id, _calls.failed(attempt, error)), timeout)

    def heartbeat(
        self, agent_id: str, task_id: str, *, timeout: float | None = None, retries: RetryPolicy | None = None
    ) -> models.TaskHeartbeat:
        """POST /agent/{agentId}/tasks/{taskId}/heartbeat: renew the lease (Conflict `task_not_open` once lost).
        `retries` replaces the client's policy for this call (the worker's heartbeats are retried by the worker)."""
        return self._run(_calls.heartbeat(agent_id, task_id), timeout, retries)

    def iter_workflows(self, *, limit: int | None = None) -> Iterator[models.WorkflowSummary]:
        """Every item of `list_workflows`, page after page, fetched as the iteration reaches it."""
        return _every_item(lambda token: self.list_workflows(limit=limit, next_token=token))

    def iter_keys(self, *, agent_id: str | None = None, limit: int | None = None) -> Iterator[models.KeyInfo]:
        """Every item of `list_keys`, page after page, fetched as the iteration reaches it."""
        return _every_item(lambda token: self.list_keys(agent_id=agent_id, limit=limit, next_token=token))

    def iter_agents(
        self, *, state: AgentState | None = None, limit: int | None = None
    ) -> Iterator[models.AgentSummary]:
        """Every item of `list_agents`, page after page, fetched as the iteration reaches it."""
        return _every_item(lambda token: self.list_agents(state=state, limit=limit, next_token=token))

    def iter_state_history(
        self, agent_id: str, *, since: When | None = None, until: When | None = None, limit: int | None = None
    ) -> Iterator[models.StateHistoryEntry]:
        """Every item of `get_state_history`, page after page, fetched as the iteration reaches it."""
        return _every_item(
            lambda token: self.get_state_history(agent_id, since=since, until=until, limit=limit, next_token=token)
        )

    def iter_sessions(
        self,
        agent_id: str,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = None,
    ) -> Iterator[models.SessionSummary]:
        """Every item of `list_sessions`, page after page, fetched as the iteration reaches it."""
        return _every_item(
            lambda token: self.list_sessions(
                agent_id,
                status=status,
                workflow_id=workflow_id,
                since=since,
                until=until,
                limit=limit,
                next_token=token,
            )
        )

    def iter_tasks(
        self, agent_id: str, *, status: Literal["queued", "leased"] | None = None, limit: int | None = None
    ) -> Iterator[models.QueuedTask]:
        """Every item of `list_tasks`, page after page, fetched as the iteration reaches it."""
        return _every_item(lambda token: self.list_tasks(agent_id, status=status, limit=limit, next_token=token))


class AsyncOpsCore:
    """The Ops-Core API for asyncio: the same methods as OpsCore, awaited (`iter_*` are async iterators)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = Settings(base_url, api_key, timeout, retries or RetryPolicy())
        self._http = httpx.AsyncClient(transport=transport, **self._settings.client_options())
        self._sleep = self._settings.retries.async_sleep or asyncio.sleep

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def _run[T](self, call: Call[T], timeout: float | None, retries: RetryPolicy | None = None) -> T:
        policy = retries or self._settings.retries
        attempt = 1
        while True:
            try:
                response = await self._http.send(build(self._http, call, timeout))
            except httpx.TransportError as error:
                delay = retry_delay(policy, call, attempt, response=None, error=error)
                if delay is None:
                    raise no_answer(call, error) from error
            else:
                delay = retry_delay(policy, call, attempt, response=response, error=None)
                if delay is None:
                    return outcome(call, response)
            await self._sleep(delay)
            attempt += 1

    async def health(self, *, timeout: float | None = None) -> models.Health:
        """GET /health: liveness (needs no key)."""
        return await self._run(_calls.health(), timeout)

    async def create_key(
        self,
        *,
        role: Literal["admin", "agent"] | None = None,
        agent_id: str | None = None,
        expires_at: When | None = None,
        timeout: float | None = None,
    ) -> models.CreatedKey:
        """POST /keys (admin): an agent key (`agent_id=`) or an admin key (`role="admin"`), expiring at
        `expires_at` when given."""
        return await self._run(_calls.create_key(role=role, agent_id=agent_id, expires_at=expires_at), timeout)

    async def list_keys(
        self,
        *,
        agent_id: str | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.KeyPage:
        """GET /keys (admin): one page of keys (never a key itself); `iter_keys` follows every page."""
        return await self._run(_calls.list_keys(agent_id=agent_id, limit=limit, next_token=next_token), timeout)

    async def rotate_key(
        self,
        key_id: str,
        *,
        expires_at: When | None = None,
        old_key_expires_at: When | None = None,
        timeout: float | None = None,
    ) -> models.CreatedKey:
        """POST /keys/{keyId}/rotate (admin): a new key for the same principal; the old one works on until it is
        revoked, expires, or reaches `old_key_expires_at`."""
        call = _calls.rotate_key(key_id, expires_at=expires_at, old_key_expires_at=old_key_expires_at)
        return await self._run(call, timeout)

    async def revoke_key(self, key_id: str, *, timeout: float | None = None) -> None:
        """DELETE /keys/{keyId} (admin)."""
        return await self._run(_calls.revoke_key(key_id), timeout)

    async def create_workflow(self, template: Body | str, *, timeout: float | None = None) -> models.WorkflowCreated:
        """POST /workflows (admin): a template as a model, a mapping, or YAML text."""
        return await self._run(_calls.create_workflow(template), timeout)

    async def list_workflows(
        self, *, limit: int | None = None, next_token: str | None = None, timeout: float | None = None
    ) -> models.WorkflowPage:
        """GET /workflows (admin): one page; `iter_workflows` follows every page."""
        return await self._run(_calls.list_workflows(limit=limit, next_token=next_token), timeout)

    async def get_workflow(
        self, workflow_id: str, *, version: int | None = None, timeout: float | None = None
    ) -> models.WorkflowVersion:
        """GET /workflows/{workflowId}: the latest version unless `version` is given."""
        return await self._run(_calls.get_workflow(workflow_id, version=version), timeout)

    async def register(self, agent_id: str, registration: Body, *, timeout: float | None = None) -> models.Agent:
        """PUT /agent/{agentId}: register the agent or re-sync its registration."""
        return await self._run(_calls.register(agent_id, registration), timeout)

    async def get_agent(self, agent_id: str, *, timeout: float | None = None) -> models.Agent:
        """GET /agent/{agentId}."""
        return await self._run(_calls.get_agent(agent_id), timeout)

    async def report_state(
        self,
        agent_id: str,
        state: AgentState,
        *,
        timestamp: When | None = None,
        details: Mapping[str, Any] | None = None,
        error: Body | None = None,
        timeout: float | None = None,
    ) -> models.StateAccepted:
        """POST /agent/{agentId}/state, stamped now unless `timestamp` is given (StaleState: a later one is in)."""
        return await self._run(
            _calls.report_state(agent_id, state, timestamp=timestamp, details=details, error=error), timeout
        )

    async def lift_quarantine(self, agent_id: str, *, timeout: float | None = None) -> models.Agent:
        """DELETE /agent/{agentId}/quarantine (admin)."""
        return await self._run(_calls.lift_quarantine(agent_id), timeout)

    async def list_agents(
        self,
        *,
        state: AgentState | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.AgentPage:
        """GET /agents (admin): one page; `iter_agents` follows every page."""
        return await self._run(_calls.list_agents(state=state, limit=limit, next_token=next_token), timeout)

    async def get_agent_stats(
        self, agent_id: str, *, window: str | None = None, timeout: float | None = None
    ) -> models.AgentStats:
        """GET /agent/{agentId}/stats over `window` (`5m` to `24h`, default 1h)."""
        return await self._run(_calls.get_agent_stats(agent_id, window=window), timeout)

    async def get_state_history(
        self,
        agent_id: str,
        *,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.HistoryPage:
        """GET /agent/{agentId}/state/history: one page, newest first; `iter_state_history` follows every page."""
        return await self._run(
            _calls.get_state_history(agent_id, since=since, until=until, limit=limit, next_token=next_token), timeout
        )

    async def trigger(
        self,
        agent_id: str,
        workflow_id: str | None = None,
        *,
        version: int | None = None,
        template: Body | None = None,
        input: Mapping[str, Any] | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> models.SessionStarted:
        """POST /agent/{agentId}/workflow (admin): start a session; an Idempotency-Key is generated unless given."""
        return await self._run(
            _calls.trigger(
                agent_id,
                workflow_id=workflow_id,
                version=version,
                template=template,
                input=input,
                priority=priority,
                idempotency_key=idempotency_key,
            ),
            timeout,
        )

    async def run_task(
        self, agent_id: str, task: Body, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> models.TaskStarted:
        """POST /agent/{agentId}/tasks (admin): one ad-hoc task as a session; an Idempotency-Key unless given."""
        return await self._run(_calls.run_task(agent_id, task, idempotency_key=idempotency_key), timeout)

    async def list_sessions(
        self,
        agent_id: str,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.SessionPage:
        """GET /agent/{agentId}/sessions: one page, newest first; `iter_sessions` follows every page."""
        return await self._run(
            _calls.list_sessions(
                agent_id,
                status=status,
                workflow_id=workflow_id,
                since=since,
                until=until,
                limit=limit,
                next_token=next_token,
            ),
            timeout,
        )

    async def get_session(self, agent_id: str, session_id: str, *, timeout: float | None = None) -> models.SessionView:
        """GET /agent/{agentId}/sessions/{sessionId}."""
        return await self._run(_calls.get_session(agent_id, session_id), timeout)

    async def get_session_trace(
        self, agent_id: str, session_id: str, *, timeout: float | None = None
    ) -> models.SessionTrace:
        """GET /agent/{agentId}/sessions/{sessionId}/trace."""
        return await self._run(_calls.get_session_trace(agent_id, session_id), timeout)

    async def get_trace(self, session_id: str, *, timeout: float | None = None) -> models.SessionTrace:
        """GET /sessions/{sessionId}/trace (admin): the trace by the session id alone."""
        return await self._run(_calls.get_trace(session_id), timeout)

    async def cancel(self, agent_id: str, session_id: str, *, timeout: float | None = None) -> models.SessionView:
        """POST /agent/{agentId}/sessions/{sessionId}/cancel (admin)."""
        return await self._run(_calls.cancel(agent_id, session_id), timeout)

    async def list_tasks(
        self,
        agent_id: str,
        *,
        status: Literal["queued", "leased"] | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        timeout: float | None = None,
    ) -> models.QueuePage:
        """GET /agent/{agentId}/tasks: one page of the queue; `iter_tasks` follows every page."""
        return await self._run(_calls.list_tasks(agent_id, status=status, limit=limit, next_token=next_token), timeout)

    async def next_task(self, agent_id: str, *, timeout: float | None = None) -> models.LeasedTask | None:
        """POST /agent/{agentId}/tasks/next: the leased task, or None when nothing is ready (204).

        Raises Quarantined (its `retry_after` says when to ask again) while the agent is quarantined.
        """
        return await self._run(_calls.next_task(agent_id), timeout)

    async def report_result(
        self, agent_id: str, task_id: str, result: Body, *, timeout: float | None = None
    ) -> models.TaskResultAccepted:
        """POST /agent/{agentId}/tasks/{taskId}/result with a TaskResult (send its `attempt`)."""
        return await self._run(_calls.report_result(agent_id, task_id, result), timeout)

    async def succeed(
        self,
        agent_id: str,
        task_id: str,
        *,
        attempt: int,
        output: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> models.TaskResultAccepted:
        """Report that the task's `attempt` succeeded, with its `output`."""
        return await self._run(_calls.report_result(agent_id, task_id, _calls.succeeded(attempt, output)), timeout)

    async def fail(
        self, agent_id: str, task_id: str, *, attempt: int, error: Body, timeout: float | None = None
    ) -> models.TaskResultAccepted:
        """Report that the task's `attempt` failed with `error` (a TaskError: `type`, `message`, `fault`)."""
        return await self._run(_calls.report_result(agent_id, task_id, _calls.failed(attempt, error)), timeout)

    async def heartbeat(
        self, agent_id: str, task_id: str, *, timeout: float | None = None, retries: RetryPolicy | None = None
    ) -> models.TaskHeartbeat:
        """POST /agent/{agentId}/tasks/{taskId}/heartbeat: renew the lease (Conflict `task_not_open` once lost).
        `retries` replaces the client's policy for this call."""
        return await self._run(_calls.heartbeat(agent_id, task_id), timeout, retries)

    def iter_workflows(self, *, limit: int | None = None) -> AsyncIterator[models.WorkflowSummary]:
        """Every item of `list_workflows`, page after page, fetched as the iteration reaches it."""
        return _every_item_async(lambda token: self.list_workflows(limit=limit, next_token=token))

    def iter_keys(self, *, agent_id: str | None = None, limit: int | None = None) -> AsyncIterator[models.KeyInfo]:
        """Every item of `list_keys`, page after page, fetched as the iteration reaches it."""
        return _every_item_async(lambda token: self.list_keys(agent_id=agent_id, limit=limit, next_token=token))

    def iter_agents(
        self, *, state: AgentState | None = None, limit: int | None = None
    ) -> AsyncIterator[models.AgentSummary]:
        """Every item of `list_agents`, page after page, fetched as the iteration reaches it."""
        return _every_item_async(lambda token: self.list_agents(state=state, limit=limit, next_token=token))

    def iter_state_history(
        self, agent_id: str, *, since: When | None = None, until: When | None = None, limit: int | None = None
    ) -> AsyncIterator[models.StateHistoryEntry]:
        """Every item of `get_state_history`, page after page, fetched as the iteration reaches it."""
        return _every_item_async(
            lambda token: self.get_state_history(agent_id, since=since, until=until, limit=limit, next_token=token)
        )

    def iter_sessions(
        self,
        agent_id: str,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[models.SessionSummary]:
        """Every item of `list_sessions`, page after page, fetched as the iteration reaches it."""
        return _every_item_async(
            lambda token: self.list_sessions(
                agent_id,
                status=status,
                workflow_id=workflow_id,
                since=since,
                until=until,
                limit=limit,
                next_token=token,
            )
        )

    def iter_tasks(
        self, agent_id: str, *, status: Literal["queued", "leased"] | None = None, limit: int | None = None
    ) -> AsyncIterator[models.QueuedTask]:
        """Every item of `list_tasks`, page after page, fetched as the iteration reaches it."""
        return _every_item_async(lambda token: self.list_tasks(agent_id, status=status, limit=limit, next_token=token))
