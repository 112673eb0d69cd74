"""The SDK's models are generated from docs/openapi.yaml; this fails when the committed file is out of date."""

from __future__ import annotations

import pydantic
import pytest

from opscore_sdk import models
from opscore_tools.sdk_models import OUTPUT, generate


def test_regenerating_the_models_from_the_spec_changes_nothing() -> None:
    # Given the committed models and the spec as it is now
    # When the models are generated again
    fresh = generate()

    # Then they are the same, byte for byte (else: make sdk-models, and commit the result)
    assert fresh == OUTPUT.read_text(), "sdk/python/opscore_sdk/models.py is out of date: run `make sdk-models`"


def test_answers_take_new_fields_and_what_a_request_sends_refuses_a_misspelt_one() -> None:
    # an answer from a newer Ops-Core, with a field this SDK does not know, is read
    problem = models.Problem.model_validate({"type": "ToolError", "message": "m", "task_id": None, "added": 1})
    assert problem.type == "ToolError"
    # a template's retry policy and task, which requests send (and answers carry), refuse a misspelt field
    with pytest.raises(pydantic.ValidationError, match="max_attemps"):
        models.RetryPolicy.model_validate({"max_attemps": 5})
    with pytest.raises(pydantic.ValidationError, match="tmeout_seconds"):
        models.TaskTemplate.model_validate({"id": "a", "action": "x", "tmeout_seconds": 5})
