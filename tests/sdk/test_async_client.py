"""AsyncOpsCore: the same requests, retries, errors and pages, awaited."""

from __future__ import annotations

import pytest

from opscore_sdk import NotFound, Quarantined
from tests.sdk.conftest import Recorder, error_body
from tests.sdk.test_requests import STARTED, TS
from tests.sdk.test_retries import HEALTH, LEASED


@pytest.mark.asyncio
async def test_retries_wait_through_the_async_sleep_and_keep_the_idempotency_key() -> None:
    answers = Recorder((503, error_body("internal_error")), (500, error_body("internal_error")), (202, STARTED))

    async with answers.async_client() as client:
        started = await client.trigger("a1", "digest")

    assert started.status == "waiting"
    assert answers.sleeps == [0.5, 1.0]
    assert len({request.headers["Idempotency-Key"] for request in answers.requests}) == 1


@pytest.mark.asyncio
async def test_errors_are_the_same_exceptions() -> None:
    answers = Recorder((404, error_body("not_found")), (409, error_body("agent_quarantined"), {"Retry-After": "7"}))

    async with answers.async_client() as client:
        with pytest.raises(NotFound):
            await client.get_agent("a1")
        with pytest.raises(Quarantined) as raised:
            await client.next_task("a1")

    assert raised.value.retry_after == 7.0


@pytest.mark.asyncio
async def test_leasing_answers_the_task_or_none() -> None:
    answers = Recorder((200, LEASED), (204, None))

    async with answers.async_client() as client:
        leased = await client.next_task("a1")
        nothing = await client.next_task("a1")

    assert leased is not None
    assert leased.task_id == LEASED["task_id"]
    assert nothing is None


@pytest.mark.asyncio
async def test_async_iterators_follow_next_token() -> None:
    entry = {
        "state": "idle",
        "previous_state": None,
        "timestamp": TS,
        "details": None,
        "error": None,
        "version": 1,
        "recorded_at": TS,
    }
    answers = Recorder(
        (200, {"items": [entry], "next_token": "t1"}), (200, {"items": [{**entry, "version": 2}]}), (200, HEALTH)
    )

    async with answers.async_client() as client:
        versions = [entry.version async for entry in client.iter_state_history("a1", limit=1)]

    assert versions == [1, 2]
    assert answers.requests[1].url.params["next_token"] == "t1"
