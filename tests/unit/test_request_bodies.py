"""The decisions read_json strings together, each called with its inputs: media types, size, field problems, YAML."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from opscore.agents.models import StateReport
from opscore.api.bodies import MAX_BODY_BYTES, body_format, field_problems, media_type, readable_text
from opscore.api.yaml_bodies import MAX_YAML_DEPTH, json_text, nesting_change, refuse_unsafe_structure
from opscore.core.errors import FieldProblem, PayloadTooLarge, UnsupportedMediaType, ValidationFailed


@pytest.mark.parametrize(
    ("header", "media"),
    [
        (None, ""),
        ("", ""),
        ("application/json", "application/json"),
        ("Application/JSON; charset=utf-8", "application/json"),
        ("  text/yaml ;q=1", "text/yaml"),
    ],
)
def test_media_type_is_the_header_without_its_parameters(header: str | None, media: str) -> None:
    assert media_type(header) == media


@pytest.mark.parametrize(
    ("media", "allow_yaml", "read_as"),
    [
        ("", False, "json"),
        ("", True, "json"),
        ("application/json", False, "json"),
        ("application/vnd.api+json", False, "json"),
        ("application/yaml", True, "yaml"),
        ("text/x-yaml", True, "yaml"),
        ("application/yaml", False, None),
        ("text/plain", True, None),
        ("application/jsonp", False, None),
        ("multipart/form-data", False, None),
    ],
)
def test_body_format_reads_json_yaml_where_taken_and_refuses_the_rest(
    media: str, allow_yaml: bool, read_as: str | None
) -> None:
    if read_as is None:
        with pytest.raises(UnsupportedMediaType) as refused:
            body_format(media, allow_yaml)
        accepted = "application/json or application/yaml" if allow_yaml else "application/json"
        assert refused.value.message == f"send the body as {accepted}, not {media}"
    else:
        assert body_format(media, allow_yaml) == read_as


def test_readable_text_counts_bytes_and_refuses_blank_bodies() -> None:
    assert readable_text('{"a": 1}') == '{"a": 1}'
    assert readable_text("a" * MAX_BODY_BYTES) == "a" * MAX_BODY_BYTES
    with pytest.raises(PayloadTooLarge):
        readable_text("é" * (MAX_BODY_BYTES // 2 + 1))  # fewer characters than the limit, more bytes
    for blank in ("", " \n\t"):
        with pytest.raises(ValidationFailed) as refused:
            readable_text(blank)
        assert refused.value.details == [FieldProblem("", "the body is empty", type="missing")]


def test_field_problems_name_each_field_by_its_dotted_path_and_never_echo_the_input() -> None:
    with pytest.raises(ValidationError) as raised:
        StateReport.model_validate_json('{"state": "sleepy", "timestamp": "secret-value", "error": {"type": 1}}')
    problems = field_problems(raised.value)
    assert [problem.field for problem in problems] == ["state", "timestamp", "error.type"]
    assert all(problem.location == "body" and problem.type for problem in problems)
    assert not any("secret-value" in problem.message for problem in problems)


@pytest.mark.parametrize(
    ("event", "change"),
    [
        (yaml.MappingStartEvent(None, None, True), 1),
        (yaml.SequenceStartEvent(None, None, True), 1),
        (yaml.MappingEndEvent(), -1),
        (yaml.SequenceEndEvent(), -1),
        (yaml.ScalarEvent(None, None, (True, False), "x"), 0),
        (yaml.DocumentStartEvent(), 0),
    ],
)
def test_nesting_changes_only_as_collections_open_and_close(event: yaml.Event, change: int) -> None:
    assert nesting_change(event) == change


def test_unsafe_structure_is_refused_as_the_events_stream_by() -> None:
    refuse_unsafe_structure(yaml.parse("a: [1, {b: 2}]"))
    refuse_unsafe_structure(yaml.parse("a: " + "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1)))
    cases = {
        "a: " + "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH: "yaml_depth",
        "a: &x 1\nb: 2": "yaml_alias",
        "a: [*x]": "yaml_alias",
    }
    for document, kind in cases.items():
        with pytest.raises(ValidationFailed) as refused:
            refuse_unsafe_structure(yaml.parse(document))
        assert [problem.type for problem in refused.value.details] == [kind]


def test_json_text_refuses_what_json_cannot_carry() -> None:
    assert json_text({"a": [1, "x", None, True, 1.5]}) == '{"a": [1, "x", null, true, 1.5]}'
    for value in (float("nan"), {1, 2}, b"bytes", yaml.safe_load("2026-01-01")):
        with pytest.raises(ValidationFailed) as refused:
            json_text({"a": value})
        assert [problem.type for problem in refused.value.details] == ["yaml_type"]
