"""Request bodies: which media types a route takes, how large a body may be, and which fields are wrong.

`read_json` only strings together small decisions, each a function of its inputs that unit tests call directly:
the media type a Content-Type header names, how a body of that type is read (or 415), whether its bytes may be read
at all (413 over the limit, 400 when they are not UTF-8 or empty), what the text must be before a model reads it
(opscore.api.json_checks: nesting depth, keys unique), and the field problems a failed validation names.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ValidationError

from opscore.api.json_checks import check_json_text
from opscore.core.errors import FieldProblem, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

MAX_BODY_BYTES = 64 * 1024
JSON_MEDIA_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})

BodyFormat = Literal["json", "yaml"]


def media_type(content_type: str | None) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json`; '' when no Content-Type was sent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def body_format(media: str, allow_yaml: bool) -> BodyFormat:
    """How a body sent as `media` is read: JSON when no type is named or a JSON type is, YAML where a route takes
    it; any other type is refused (415) before the body is looked at."""
    if allow_yaml and media in YAML_MEDIA_TYPES:
        return "yaml"
    if not media or JSON_MEDIA_TYPE.match(media):
        return "json"
    accepted = "application/json or application/yaml" if allow_yaml else "application/json"
    raise UnsupportedMediaType(f"send the body as {accepted}, not {media}")


def body_bytes(body: str | None, base64_encoded: bool) -> bytes:
    """The body as it was sent: API Gateway hands over text, or base64 for bytes it would not pass as text."""
    if not body:
        return b""
    if base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            raise not_utf8() from None
    return body.encode(errors="surrogatepass")  # a lone surrogate stays, to be refused as not UTF-8 below


def not_utf8() -> ValidationFailed:
    message = "the body is not valid UTF-8 text"
    return ValidationFailed(message, [FieldProblem("", message, type="utf8_invalid")])


def readable_text(raw: str | bytes) -> str:
    """The body's text, if it may be parsed: at most MAX_BODY_BYTES (counted in bytes, 413), UTF-8 (400) and not
    blank (400)."""
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise not_utf8() from None
    if not text.strip():
        raise ValidationFailed("a body is required", [FieldProblem("", "the body is empty", type="missing")])
    return text


def refuse_body(event: APIGatewayProxyEvent) -> None:
    """A 400 for a body sent to a route that takes none: it would be ignored, and whatever it meant with it."""
    if event.body:
        message = "this route takes no request body; send none"
        raise ValidationFailed(message, [FieldProblem("", message, type="body_not_allowed")])


def field_problems(error: ValidationError) -> list[FieldProblem]:
    """One problem per wrong field, named by its dotted path; never the input itself (it may hold secrets)."""
    return [
        FieldProblem(field=".".join(str(part) for part in problem["loc"]), message=problem["msg"], type=problem["type"])
        for problem in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def read_json[ModelT: BaseModel](event: APIGatewayProxyEvent, model: type[ModelT], allow_yaml: bool = False) -> ModelT:
    """Parse the request body as `model`: 415 for other types, 413 over 64 KiB, 400 naming each wrong field (and
    for a body that is not UTF-8, nests too deep or repeats a key in an object).

    With `allow_yaml`, a YAML body (application/yaml) is read too, into the same JSON types and checks.
    """
    form = body_format(media_type(event.headers.get("content-type")), allow_yaml)
    text = readable_text(body_bytes(event.body, bool(event.is_base64_encoded)))
    if form == "yaml":
        from opscore.api.yaml_bodies import yaml_as_json  # only the routes that take YAML pay for importing it

        text = yaml_as_json(text)
    check_json_text(text)
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        problems = field_problems(error)
        if form == "json" and allow_yaml and _not_json(problems):
            from opscore.api.yaml_bodies import reads_as_yaml  # only a body that is not JSON pays for it

            if reads_as_yaml(text):
                hint = "the body is not JSON but reads as YAML: send it with Content-Type: application/yaml"
                problems = [FieldProblem("", hint, type="json_invalid")]
        raise ValidationFailed("the request body is not valid", problems) from None


def _not_json(problems: list[FieldProblem]) -> bool:
    return any(problem.type == "json_invalid" for problem in problems)
