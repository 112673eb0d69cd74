"""The Lambda client, used to invoke the dispatch function asynchronously."""

from __future__ import annotations

from typing import Any


def new_client() -> Any:
    import boto3

    return boto3.client("lambda")
