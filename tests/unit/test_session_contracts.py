"""The session API's contracts: what a trigger and a result may say, session and task ids, the runner's events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from opscore.dispatch.models import TaskResult
from opscore.sessions.models import TriggerRequest, split_task_id, task_id
from opscore.sessions.service import new_session_id
from tests.conftest import REPO


def test_a_trigger_names_a_stored_workflow_or_carries_a_template_never_both() -> None:
    assert TriggerRequest.model_validate({"workflow_id": "triage", "version": 2}).version == 2
    inline = TriggerRequest.model_validate({"template": {"name": "x", "tasks": [{"id": "a", "action": "y"}]}})
    assert inline.template is not None
    for bad in (
        {},
        {"workflow_id": "triage", "template": {"name": "x", "tasks": [{"id": "a", "action": "y"}]}},
        {"template": {"name": "x", "tasks": [{"id": "a", "action": "y"}]}, "version": 1},
        {"workflow_id": "triage", "priority": 10},
        {"workflow_id": "triage", "version": 0},
        {"workflow_id": "Triage"},
        {"workflow_id": "triage", "input": {"x": float("nan")}},
    ):
        with pytest.raises(ValidationError):
            TriggerRequest.model_validate(bad)


def test_a_result_matches_its_status() -> None:
    assert TaskResult.model_validate({"status": "succeeded"}).output is None
    failed = TaskResult.model_validate({"status": "failed", "error": {"type": "Timeout", "message": "slow"}})
    assert failed.error is not None
    for bad in (
        {"status": "failed"},
        {"status": "failed", "error": {"type": "X"}, "output": {}},
        {"status": "succeeded", "error": {"type": "X"}},
        {"status": "succeeded", "attempt": 0},
        {"status": "succeeded", "output": [1]},
        {"status": "failed", "error": {"type": "has space"}},
    ):
        with pytest.raises(ValidationError):
            TaskResult.model_validate(bad)


def test_session_ids_sort_by_creation_time_and_task_ids_lead_back_to_their_task() -> None:
    start = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    ids = [new_session_id(start + timedelta(microseconds=step)) for step in (0, 1, 2, 1_000_000, 10**12)]
    assert ids == sorted(ids)
    assert all(len(session_id) == 32 for session_id in ids)
    assert split_task_id(task_id(ids[0], 7)) == (ids[0], 7)
    for bad in ("", ids[0], f"{ids[0]}-7", f"{ids[0]}-0007", f"{ids[0].upper()}-007"):
        assert split_task_id(bad) is None


def test_the_sample_runner_events_are_what_the_runner_sends() -> None:
    from opscore.sessions.runner import DispatchRequest, RunnerFailure

    DispatchRequest.model_validate(json.loads((REPO / "events/dispatch/dispatch.json").read_text()))
    RunnerFailure.model_validate(json.loads((REPO / "events/dispatch/runner_failed.json").read_text())["runner_failed"])
