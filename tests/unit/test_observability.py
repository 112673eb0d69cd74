"""Tracing: the X-Ray SDK loads only when asked for, and the stand-in changes nothing about a handler."""

from __future__ import annotations

import pytest

from opscore.core import observability


def handler(event: dict[str, str], context: object) -> dict[str, str]:
    return {"seen": event["x"]}


def test_by_default_the_tracer_is_a_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSCORE_TRACING", raising=False)
    tracer = observability._tracer()
    assert isinstance(tracer, observability.ServiceTracing)
    assert tracer.capture_lambda_handler(capture_response=False)(handler) is handler
    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_method()(handler) is handler


def test_tracing_sdk_loads_powertools_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Powertools' Tracer itself opens the X-Ray SDK's UDP socket, which this tier forbids: the branch is what is
    # tested here, with Tracer stood in for.
    import aws_lambda_powertools

    class RecordingTracer:
        pass

    monkeypatch.setattr(aws_lambda_powertools, "Tracer", RecordingTracer)
    monkeypatch.setenv("OPSCORE_TRACING", "sdk")
    assert isinstance(observability._tracer(), RecordingTracer)
