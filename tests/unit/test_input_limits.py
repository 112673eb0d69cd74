"""The limits on input, through the library's own API: bodies (bytes, depth, keys), free text, integers, webhook
endpoints, page tokens, query integers and the sizes that must fit Step Functions and DynamoDB."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from opscore.agents.models import AgentError, RegistrationRequest
from opscore.api.bodies import body_bytes, readable_text
from opscore.api.json_checks import MAX_NESTING_DEPTH, check_json_text, nested_deeper_than
from opscore.api.yaml_bodies import yaml_as_json
from opscore.aws.pages import decode_page_token, encode_page_token
from opscore.aws.stepfunctions import EXECUTION_INPUT_LIMIT_BYTES, execution_input
from opscore.core.errors import PayloadTooLarge, ValidationFailed
from opscore.dispatch.delivery.webhook import literal_host_problem, public_address
from opscore.dispatch.models import MAX_OUTPUT_BYTES, TaskResult
from opscore.sessions.models import TriggerRequest
from opscore.sessions.service import refuse_oversized
from opscore.workflows.templates import MAX_TASK_INPUT_BYTES, MAX_TEMPLATE_INPUT_BYTES, WorkflowTemplate


def problems(error: ValidationFailed) -> list[tuple[str, str]]:
    return [(problem.field, problem.type) for problem in error.details]


# --------------------------------------------------------------------------- bytes


@pytest.mark.parametrize(
    ("body", "encoded"),
    [
        (base64.b64encode(b'{"name": "caf\xe9"}').decode(), True),  # Latin-1 bytes, passed on as base64
        ('{"name": "\udcff"}', False),  # a lone surrogate: no UTF-8 spells it
    ],
)
def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(body: str, encoded: bool) -> None:
    with pytest.raises(ValidationFailed) as refused:
        readable_text(body_bytes(body, encoded))
    assert problems(refused.value) == [("", "utf8_invalid")]


def test_utf8_bodies_read_as_sent_and_the_size_counts_bytes() -> None:
    assert readable_text(body_bytes(base64.b64encode('{"a": "é"}'.encode()).decode(), True)) == '{"a": "é"}'
    with pytest.raises(PayloadTooLarge):
        readable_text(body_bytes("é" * (32 * 1024 + 1), False))


# --------------------------------------------------------------------------- nesting and keys


def nested(depth: int) -> str:
    return "[" * (depth - 1) + '{"a": "[[[{{{"}' + "]" * (depth - 1)  # brackets inside a string do not count


def test_nesting_depth_counts_brackets_outside_strings() -> None:
    assert (nested_deeper_than(nested(5), 4), nested_deeper_than(nested(5), 5)) == (True, False)
    assert not nested_deeper_than('{"a": "\\"[[["}', 1)
    assert not nested_deeper_than('[{"a": 1}, [2, {"b": [3]}], {}]', 4)
    assert nested_deeper_than('[{"a": 1}, [2, {"b": [3]}], {}]', 3)


def test_json_nested_up_to_the_limit_passes_and_deeper_is_a_400_naming_the_limit() -> None:
    check_json_text(nested(MAX_NESTING_DEPTH))
    with pytest.raises(ValidationFailed) as refused:
        check_json_text(nested(MAX_NESTING_DEPTH + 1))
    assert problems(refused.value) == [("", "too_deep")]
    assert str(MAX_NESTING_DEPTH) in refused.value.message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"agent_id": "a", "agent_id": "b"}', "agent_id"),
        ('{"tasks": [{"id": "a", "action": "x", "id": "b"}]}', "id"),
        ('{"a": {"b": 1, "c": 2, "b": 3}}', "b"),
    ],
)
def test_a_key_twice_in_one_object_is_a_400_naming_it(text: str, key: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_json_text(text)
    assert problems(refused.value) == [(key, "duplicate_key")]
    assert repr(key) in refused.value.message


def test_equal_keys_in_different_objects_and_text_that_is_not_json_pass_the_check() -> None:
    check_json_text('{"tasks": [{"id": "a"}, {"id": "b"}], "id": "c"}')
    check_json_text("{not json")  # the model names what is wrong with it
    check_json_text("9" * 5000)  # as does a number Python will not read


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("a: 1\na: 2\n", "duplicate_key"),
        ("a: [{b: 1, b: 2}]\n", "duplicate_key"),
        ("1: x\n'1': y\n", "duplicate_key"),  # one JSON key
        ("n: " + "9" * 5000 + "\n", "yaml_type"),  # past Python's int-string limit: a ValueError, not a 500
    ],
)
def test_yaml_refuses_repeated_keys_and_huge_integers(text: str, kind: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        yaml_as_json(text)
    assert kind in [problem.type for problem in refused.value.details]


def test_yaml_within_the_limits_reads_as_json() -> None:
    assert json.loads(yaml_as_json("a: 1\nb: {a: 2}\nn: " + "9" * 4000 + "\n"))["b"] == {"a": 2}


# --------------------------------------------------------------------------- free text and integers


@pytest.mark.parametrize("name", ["bot\x00", "bot\t", "bot\n", "bot\x1b[2J", "bot\x7f", "bot\x85"])
def test_a_name_is_one_line_without_control_characters(name: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        RegistrationRequest.model_validate_json(json.dumps({"name": name}))


def test_messages_keep_tab_and_line_breaks_but_no_other_control_character() -> None:
    kept = AgentError.model_validate_json(json.dumps({"type": "E", "message": "trace:\n\tat x\r\n"}))
    assert kept.message == "trace:\n\tat x\r\n"
    for text in ("nul\x00", "bell\x07", "esc\x1b", "del\x7f"):
        with pytest.raises(ValueError, match="control characters"):
            AgentError.model_validate_json(json.dumps({"type": "E", "message": text}))
    with pytest.raises(ValueError, match="control characters"):
        AgentError.model_validate_json(json.dumps({"type": "Tool\x00Error"}))


@pytest.mark.parametrize(
    ("written", "read"), [("3", 3), ("3.0", 3), ("3e0", 3), ("1E1", 10), ("3.5", None), ('"3"', None), ("true", None)]
)
def test_integers_may_carry_a_zero_fraction_and_nothing_else(written: str, read: int | None) -> None:
    body = '{"name": "x", "max_concurrency": ' + written + "}"
    if read is None:
        with pytest.raises(ValueError, match="max_concurrency"):
            RegistrationRequest.model_validate_json(body)
    else:
        assert RegistrationRequest.model_validate_json(body).max_concurrency == read


def test_optional_integers_too_and_their_ranges_still_hold() -> None:
    assert TriggerRequest.model_validate_json('{"workflow_id": "w", "version": 2.0}').version == 2
    with pytest.raises(ValueError, match="version"):
        TriggerRequest.model_validate_json('{"workflow_id": "w", "version": 1e10}')


def test_a_null_webhook_secret_is_refused_and_an_absent_one_is_no_secret() -> None:
    assert RegistrationRequest.model_validate_json('{"name": "x"}').webhook_secret is None
    with pytest.raises(ValueError, match="webhook_secret"):
        RegistrationRequest.model_validate_json('{"name": "x", "webhook_secret": null}')


# --------------------------------------------------------------------------- webhook endpoints


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/",
        "https://127.0.0.1:8443/hook",
        "https://[::1]/",
        "https://169.254.169.254/latest/meta-data",
        "https://[fc00::1]/",
        "https://[fe80::1%25eth0]/",
        "https://[::ffff:10.0.0.1]/",
        "https://2130706433/",  # 127.0.0.1 in the notation inet_aton (and so the connection) reads
        "https://0x7f.1/",
        "https://0.0.0.0/",
        "https://localhost/",
        "https://api.LOCALHOST./",
        # spellings the HTTP client normalises (IDNA: full-width digits and letters, ideographic full stops)
        "https://\uff11\uff10.0.0.1/",
        "https://10\u30020\u30020\u30021/",
        "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
        # IPv6 addresses that carry a private IPv4 address: NAT64, IPv4-compatible, 6to4
        "https://[64:ff9b::a00:1]/",
        "https://[::a00:1]/",
        "https://[2002:a00:1::1]/",
    ],
)
def test_a_private_endpoint_host_as_written_is_refused_without_a_lookup(url: str) -> None:
    assert literal_host_problem(url) is not None


@pytest.mark.parametrize("url", ["https://8.8.8.8/", "https://agent.example.com/hook", "https://[2001:4860::8888]/"])
def test_public_addresses_and_names_pass_registration(url: str) -> None:
    assert literal_host_problem(url) is None  # a name is checked at each delivery, after its lookup


def test_the_rule_is_the_one_delivery_applies_to_resolved_addresses() -> None:
    addresses = (
        "8.8.8.8",
        "10.1.2.3",
        "::1",
        "fe80::1%eth0",
        "::ffff:192.168.0.1",
        "64:ff9b::808:808",
        "64:ff9b::a00:1",
    )
    assert [public_address(a) for a in addresses] == [True, False, False, False, False, True, False]


def test_a_host_that_is_no_valid_name_is_refused_at_registration() -> None:
    assert literal_host_problem("https://a..\u00e9/") is not None


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("token", ["", "a b", "abc!", "x" * 1025, "eyJQSyI6IngifQ=="])
def test_a_page_token_outside_its_documented_format_is_a_400_naming_it(token: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        decode_page_token(token, lambda _: True)
    assert [problem.field for problem in refused.value.details] == ["next_token"]


def test_a_page_token_holding_a_lone_surrogate_is_a_400_before_any_query() -> None:
    forged = base64.urlsafe_b64encode(b'{"keys_sk": "agent#a\\ud800"}').decode().rstrip("=")
    with pytest.raises(ValidationFailed) as refused:
        decode_page_token(forged, lambda _: True)
    assert [problem.field for problem in refused.value.details] == ["next_token"]


def test_a_page_token_this_code_made_reads_back() -> None:
    position = {"PK": "AGENT#a", "SK": "HISTORY#2026"}
    assert decode_page_token(encode_page_token(position), lambda _: True) == position


# --------------------------------------------------------------------------- sizes


def test_a_result_output_past_its_limit_is_refused_whoever_carries_it() -> None:
    fits = {"text": "x" * (MAX_OUTPUT_BYTES - 20)}
    assert TaskResult(status="succeeded", output=fits).output == fits
    with pytest.raises(ValueError, match=str(MAX_OUTPUT_BYTES)):
        TaskResult.model_validate_json(json.dumps({"status": "succeeded", "output": {"text": "é" * MAX_OUTPUT_BYTES}}))


def template(*inputs: dict[str, Any]) -> dict[str, Any]:
    return {"name": "w", "tasks": [{"id": f"t{n}", "action": "x", "input": value} for n, value in enumerate(inputs)]}


def test_a_task_input_and_a_templates_inputs_are_limited_as_stored() -> None:
    with pytest.raises(ValueError, match=str(MAX_TASK_INPUT_BYTES)):
        WorkflowTemplate.model_validate(template({"n": [None] * (MAX_TASK_INPUT_BYTES // 5)}))
    half = {"text": "x" * (MAX_TASK_INPUT_BYTES - 100)}
    WorkflowTemplate.model_validate(template(half, half))
    with pytest.raises(ValueError, match=str(MAX_TEMPLATE_INPUT_BYTES)):
        WorkflowTemplate.model_validate(template(half, half, half))


def test_the_runners_input_is_utf8_as_it_is_and_refused_past_step_functions_limit() -> None:
    emoji = "\U0001f600"
    runner_input = {
        "session_id": "s",
        "input": {"text": emoji * 16_000},
        "tasks": [{"input": {"text": emoji * 16_000}}],
    }
    assert len(execution_input(runner_input).encode()) < 130_000  # with escapes it would be over 380,000
    refuse_oversized(runner_input)
    runner_input["tasks"] = [{"input": {"text": emoji * 16_000}}] * 4  # five times 64,000 bytes
    with pytest.raises(PayloadTooLarge) as refused:
        refuse_oversized(runner_input)
    assert str(EXECUTION_INPUT_LIMIT_BYTES) in refused.value.message
