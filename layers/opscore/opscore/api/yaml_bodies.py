"""YAML request bodies, read into JSON text so they pass the very checks a JSON body does.

Only JSON's types, no anchors or aliases, at most MAX_YAML_DEPTH levels deep, no key twice in a mapping. Aliases can
expand a few KiB into gigabytes and deep nesting makes parsers recurse for seconds: both are refused while the
parser's events stream by, before any document is built; a repeated key is refused on the composed nodes, before
the last one silently wins. Values JSON lacks (dates, sets, binary, NaN, integers past Python's 4,300 digits) are
refused rather than rewritten, so what is stored is what was meant. PyYAML is imported by this module alone, and only
routes that take YAML import it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from opscore.api.json_checks import MAX_NESTING_DEPTH, duplicate_key_problem
from opscore.core.errors import FieldProblem, ValidationFailed

MAX_YAML_DEPTH = MAX_NESTING_DEPTH  # one limit, whichever way the body is written
NOT_JSON_VALUES = "YAML values must be JSON values: quote dates and times, and use no sets, binary, NaN or huge numbers"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: much faster


def yaml_as_json(raw: str) -> str:
    try:
        refuse_unsafe_structure(yaml.parse(raw, Loader=_LOADER))
        document = _load_unique(raw)
    except yaml.YAMLError as error:
        raise yaml_problem(yaml_error_message(error), "yaml_invalid") from None
    except ValueError:  # what a constructor raises: an integer past Python's int-string limit (4,300 digits)
        raise yaml_problem(NOT_JSON_VALUES, "yaml_type") from None
    return json_text(document)


def _load_unique(raw: str) -> Any:
    """yaml.load, with each mapping's keys checked on the composed nodes before the document is built."""
    loader = _LOADER(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        refuse_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def refuse_duplicate_keys(node: yaml.Node) -> None:
    """A 400 naming the first key a mapping holds twice (by its text: `1` and `"1"` are one JSON key)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            text = str(key.value) if isinstance(key, yaml.ScalarNode) else repr(key.value)
            if text in seen:
                raise duplicate_key_problem(text)
            seen.add(text)
            refuse_duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            refuse_duplicate_keys(item)


def yaml_error_message(error: yaml.YAMLError) -> str:
    """What the parser found wrong, and where: `not valid YAML at line 3, column 5: expected <block end>, but found
    '-' (while parsing a block mapping)`. Lines and columns count from 1, as editors do."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return f"not valid YAML: {str(error).splitlines()[0]}"
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = error.problem or error.context or "cannot be parsed"
    context = f" ({error.context})" if error.problem and error.context else ""
    return f"not valid YAML{where}: {what}{context}"


def reads_as_yaml(raw: str) -> bool:
    """Whether a body that is not JSON is a YAML mapping (so its sender meant YAML): a hint for the 400, no more."""
    try:
        refuse_unsafe_structure(yaml.parse(raw, Loader=_LOADER))
        return isinstance(_load_unique(raw), dict)
    except (yaml.YAMLError, ValidationFailed, ValueError):
        return False


def refuse_unsafe_structure(events: Iterable[yaml.Event]) -> None:
    """Walk the parser's events: the first anchor or alias, or nesting past MAX_YAML_DEPTH, is a 400."""
    depth = 0
    for event in events:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml_problem("YAML anchors and aliases are not accepted", "yaml_alias")
        depth += nesting_change(event)
        if depth > MAX_YAML_DEPTH:
            raise yaml_problem(f"YAML nested more than {MAX_YAML_DEPTH} levels deep", "yaml_depth")


def nesting_change(event: yaml.Event) -> int:
    """+1 as a mapping or sequence opens, -1 as one closes, 0 for anything else."""
    if isinstance(event, yaml.CollectionStartEvent):
        return 1
    if isinstance(event, yaml.CollectionEndEvent):
        return -1
    return 0


def json_text(document: Any) -> str:
    """The document as JSON text, or a 400 when it holds a value JSON cannot carry."""
    try:
        return json.dumps(document, allow_nan=False)
    except (TypeError, ValueError):
        raise yaml_problem(NOT_JSON_VALUES, "yaml_type") from None


def yaml_problem(message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(message, [FieldProblem("", message, type=kind)])
