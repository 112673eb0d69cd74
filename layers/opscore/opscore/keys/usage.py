"""Per-key request limits in AWS: each Ops-Core key has an API Gateway API key in the stack's per-key usage plan.

The API takes its API keys from the authorizer (`ApiKeySourceType: AUTHORIZER`): the authorizer answers with
`usageIdentifierKey`, a value derived from the key id alone, and API Gateway throttles each such value by the usage
plan's rate and burst. The value is not a secret: API Gateway reads it only from the authorizer, never from a client,
so knowing it grants nothing. Creating a key creates (and attaches) its API key; revoking deletes it.

Where no usage plan is configured (the local runtime, which throttles by key id itself, and tests), NO_USAGE_KEYS
stands in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from botocore.exceptions import ClientError

from opscore.core.errors import ServiceUnavailable, Throttled
from opscore.keys.errors import KeyQuotaReached

USAGE_KEY_PREFIX = "opscore-"


def usage_identifier(namespace: str, key_id: str) -> str:
    """The API Gateway API key value of an Ops-Core key: 33 characters (API Gateway wants 20 to 128), unique per
    stack (`namespace`, the stack's name, hashed) so that two stacks in one account and region never share one."""
    tag = hashlib.sha256(namespace.encode()).hexdigest()[:8]
    return f"{USAGE_KEY_PREFIX}{tag}-{key_id}"


class UsageKeys(Protocol):
    def attach(self, key_id: str) -> None:
        """Give the key its API key in the usage plan (idempotent)."""

    def detach(self, key_id: str) -> None:
        """Delete the key's API key, if it has one (idempotent)."""


class NoUsageKeys:
    def attach(self, key_id: str) -> None:
        """No usage plan: nothing to attach."""

    def detach(self, key_id: str) -> None:
        """No usage plan: nothing to detach."""


NO_USAGE_KEYS = NoUsageKeys()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class ApiGatewayUsageKeys:
    """API keys in the usage plan named `plan_name` (found by name: the keys function cannot reference the plan in
    template.yaml without a dependency cycle, the plan depending on the API and the API on the function)."""

    def __init__(self, client: Callable[[], Any], plan_name: str, namespace: str) -> None:
        self._client = client
        self._plan_name = plan_name
        self._namespace = namespace
        self._plan_id: str | None = None

    def attach(self, key_id: str) -> None:
        value = usage_identifier(self._namespace, key_id)
        client = self._client()
        with _throttling_translated():
            try:
                api_key_id = client.create_api_key(
                    name=value, value=value, enabled=True, description=f"Ops-Core key {key_id} (per-key limit)"
                )["id"]
            except ClientError as error:
                if _code(error) != "ConflictException":
                    raise
                api_key_id = self._made_before(value)
            try:
                client.create_usage_plan_key(usagePlanId=self._plan(), keyId=api_key_id, keyType="API_KEY")
            except ClientError as error:
                if _code(error) != "ConflictException":  # already in the plan
                    raise

    def detach(self, key_id: str) -> None:
        client = self._client()
        with _throttling_translated():
            for api_key_id in self._find(usage_identifier(self._namespace, key_id)):
                try:
                    client.delete_api_key(apiKey=api_key_id)
                except ClientError as error:
                    if _code(error) != "NotFoundException":
                        raise

    def _made_before(self, value: str) -> str:
        """The id of the API key an earlier attempt made with this value (API Gateway refused it as a conflict)."""
        found = self._find(value)
        if not found:  # not listed yet, or renamed since: the value is taken all the same
            raise ServiceUnavailable(
                f"API Gateway holds an API key with the value {value} but does not list it by that name; retry "
                "shortly, and if this persists delete that API key"
            )
        return found[0]

    def _find(self, value: str) -> list[str]:
        answer = self._client().get_api_keys(nameQuery=value, includeValues=False, limit=500)
        return [item["id"] for item in answer.get("items", []) if item.get("name") == value]

    def _plan(self) -> str:
        if self._plan_id is None:
            pages = self._client().get_paginator("get_usage_plans").paginate()
            found = [plan["id"] for page in pages for plan in page.get("items", []) if plan["name"] == self._plan_name]
            if not found:
                raise LookupError(f"no API Gateway usage plan named {self._plan_name}")
            self._plan_id = found[0]
        return self._plan_id


@contextmanager
def _throttling_translated() -> Iterator[None]:
    """API Gateway's management API allows a few calls a second per account: its throttling is a 429, not a 500; its
    quota of API keys (LimitExceededException) a 409 naming the quota."""
    try:
        yield
    except ClientError as error:
        if _code(error) in {"TooManyRequestsException", "ThrottlingException"}:
            raise Throttled("API Gateway is throttling key changes; retry shortly") from error
        if _code(error) == "LimitExceededException":
            raise KeyQuotaReached(
                "API Gateway's quota of API keys for this account and region (10,000 by default) is reached: revoke "
                "keys no longer used, or ask AWS for a higher quota"
            ) from error
        raise
