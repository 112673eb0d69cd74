"""Which Ops-Core a CLI command talks to: flags, then the environment, then the local runtime's record."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from opscore_tools import target
from opscore_tools.target import (
    RuntimeRecord,
    Target,
    TargetError,
    forget_runtime,
    record_runtime,
    resolve_target,
    running_runtime,
)

LOCAL_URL = "http://127.0.0.1:3000/v1/opscore"


def a_record(
    pid: int | None = None, url: str = LOCAL_URL, started_at: str = "2026-12-01T10:00:00+00:00"
) -> RuntimeRecord:
    return RuntimeRecord(
        url=url, admin_key="local-admin-key", pid=pid or os.getpid(), log_file="local.jsonl", started_at=started_at
    )


def dead_pid() -> int:
    return 2**22 + 12345  # above the kernel's pid_max default: no process has it


def test_the_local_runtime_record_is_found_and_its_admin_key_used(tmp_path: Path) -> None:
    record_runtime(a_record(), tmp_path)
    assert resolve_target(environ={}, cwd=tmp_path) == Target(LOCAL_URL, "local-admin-key")


def test_a_command_run_from_a_subfolder_of_the_checkout_finds_its_runtime(tmp_path: Path) -> None:
    record_runtime(a_record(), tmp_path)
    deeper = tmp_path / "docs" / "notes"
    deeper.mkdir(parents=True)
    assert resolve_target(environ={}, cwd=deeper) == Target(LOCAL_URL, "local-admin-key")


def test_the_record_is_readable_only_by_its_user_and_forgotten_on_stop(tmp_path: Path) -> None:
    path = record_runtime(a_record(), tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    forget_runtime(path)
    assert not path.exists()
    forget_runtime(path)  # twice is fine


def test_a_key_given_replaces_the_recorded_admin_key(tmp_path: Path) -> None:
    record_runtime(a_record(), tmp_path)
    assert resolve_target(key="agent-key", environ={}, cwd=tmp_path).api_key == "agent-key"
    assert resolve_target(environ={"OPSCORE_API_KEY": "env-key"}, cwd=tmp_path).api_key == "env-key"


def test_no_runtime_running_is_said_clearly(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as raised:
        resolve_target(environ={}, cwd=tmp_path)
    assert raised.value.exit_code == 1
    assert "no Ops-Core local runtime is running" in raised.value.message
    assert "opscore local" in raised.value.message
    assert "--url" in raised.value.message


def test_a_stale_record_of_a_runtime_that_died_is_ignored(tmp_path: Path) -> None:
    record_runtime(a_record(pid=dead_pid()), tmp_path)
    (tmp_path / ".opscore" / "runtimes" / "garbage.json").write_text("{not json")
    with pytest.raises(TargetError):
        resolve_target(environ={}, cwd=tmp_path)


def test_starting_removes_the_records_of_runtimes_that_were_killed(tmp_path: Path) -> None:
    killed = record_runtime(a_record(pid=dead_pid()), tmp_path)
    live = record_runtime(a_record(pid=os.getppid()), tmp_path)
    mine = record_runtime(a_record(), tmp_path)
    assert not killed.exists()
    assert live.exists()
    assert mine.exists()


def test_the_newest_live_runtime_wins(tmp_path: Path) -> None:
    record_runtime(a_record(url="http://127.0.0.1:1111", started_at="2026-12-01T09:00:00+00:00"), tmp_path)
    record_runtime(
        a_record(pid=os.getppid(), url="http://127.0.0.1:2222", started_at="2026-12-01T11:00:00+00:00"), tmp_path
    )
    record_runtime(
        a_record(pid=dead_pid(), url="http://127.0.0.1:3333", started_at="2026-12-01T12:00:00+00:00"), tmp_path
    )
    found = running_runtime(tmp_path)
    assert found is not None
    assert found.url == "http://127.0.0.1:2222"


def test_url_and_key_flags_beat_the_environment_and_the_record(tmp_path: Path) -> None:
    record_runtime(a_record(), tmp_path)
    environ = {"OPSCORE_URL": "http://env:1", "OPSCORE_API_KEY": "env-key"}
    assert resolve_target("http://flag:2/", "flag-key", environ=environ, cwd=tmp_path) == Target(
        "http://flag:2/v1/opscore", "flag-key"
    )
    assert resolve_target(environ=environ, cwd=tmp_path) == Target("http://env:1/v1/opscore", "env-key")


@pytest.mark.parametrize(
    ("given", "base_url"),
    [
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000/v1/opscore"),
        ("http://127.0.0.1:3000/v1/opscore/", "http://127.0.0.1:3000/v1/opscore"),
        (
            "https://abc.execute-api.eu-west-1.amazonaws.com/Prod/v1/opscore",
            "https://abc.execute-api.eu-west-1.amazonaws.com/Prod/v1/opscore",
        ),
    ],
)
def test_a_url_is_the_api_base_with_or_without_its_path(given: str, base_url: str) -> None:
    assert resolve_target(given, "k", environ={}).base_url == base_url


@pytest.mark.parametrize(
    ("arguments", "environ", "says"),
    [
        ({"url": "http://h:1"}, {}, "needs an API key"),
        ({}, {"OPSCORE_URL": "http://h:1"}, "needs an API key"),
        ({"url": "ftp://h"}, {"OPSCORE_API_KEY": "k"}, "not an http(s) URL"),
        ({"url": "http://h:1", "stack": "s", "key": "k"}, {}, "not both"),
        ({"stack": "s"}, {}, "a deployed stack needs its API key"),
    ],
)
def test_bad_usage_is_exit_code_2(arguments: dict[str, Any], environ: dict[str, str], says: str) -> None:
    with pytest.raises(TargetError) as raised:
        resolve_target(**arguments, environ=environ)
    assert raised.value.exit_code == 2
    assert says in raised.value.message


def test_a_stack_is_reached_through_its_api_url_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    client = boto3.client("cloudformation", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    url = "https://abc.execute-api.eu-west-1.amazonaws.com/Prod/v1/opscore"
    stack = {"StackName": "ops", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE"}
    stubber.add_response(
        "describe_stacks",
        {"Stacks": [{**stack, "Outputs": [{"OutputKey": "ApiUrl", "OutputValue": url}]}]},
        {"StackName": "ops"},
    )
    stubber.add_client_error("describe_stacks", "ValidationError", "Stack with id gone does not exist")
    monkeypatch.setattr(boto3, "client", lambda *_, **__: client)
    with stubber:
        assert resolve_target(stack="ops", key="k", environ={}) == Target(url, "k")
        with pytest.raises(TargetError) as raised:
            resolve_target(stack="gone", environ={"OPSCORE_API_KEY": "k"})
    assert raised.value.exit_code == 1
    assert "Stack with id gone does not exist" in raised.value.message
    assert target.API_URL_OUTPUT == "ApiUrl"
