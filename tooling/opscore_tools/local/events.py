"""Changing a sample API Gateway event (events/) the way API Gateway would have built it for another request."""

from __future__ import annotations

from typing import Any


def with_path_parameters(event: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """Set path parameters, and rebuild `path` and `requestContext.path` from the resource to match them."""
    event["pathParameters"] = {**(event.get("pathParameters") or {}), **parameters}
    resolved = event["resource"]
    for parameter, value in event["pathParameters"].items():
        resolved = resolved.replace("{" + parameter + "}", value)
    event["path"] = resolved
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{resolved}"
    return event
