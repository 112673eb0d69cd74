"""Integration tier: the real handlers on moto, with the tables created from template.yaml's own definitions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pytest_socket import disable_socket

from opscore import wiring
from opscore_tools.local.emulation import FAKE_AWS_ENVIRONMENT, create_resources, function_environment
from opscore_tools.local.lambdas import LambdaRuntime
from opscore_tools.local.runner import MOTO_CONFIG
from opscore_tools.local.template import Template


@pytest.fixture(autouse=True)
def _no_network() -> None:
    disable_socket()  # moto answers in-process; nothing here may leave the machine


@pytest.fixture
def aws(template: Template, runtime: LambdaRuntime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    environment = {**FAKE_AWS_ENVIRONMENT, **function_environment(template), "POWERTOOLS_TRACE_DISABLED": "true"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config=MOTO_CONFIG):
        create_resources(template, runtime.invoke)
        wiring.reset()
        yield boto3.client("dynamodb")
    wiring.reset()


@pytest.fixture(scope="session")
def runtime(template: Template) -> LambdaRuntime:
    return LambdaRuntime(template)


Invoke = Callable[[str, dict[str, Any]], tuple[int, Any]]


@pytest.fixture
def call(aws: Any, runtime: LambdaRuntime) -> Invoke:
    """Invoke an API function with an event; returns (status, decoded JSON body or None)."""

    def invoke(function: str, event: dict[str, Any]) -> tuple[int, Any]:
        response = runtime.invoke(function, event)
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    return invoke
