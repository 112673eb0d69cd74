"""Typed settings read from the function's environment, checked when the function starts.

Each handler declares, at import, the variables its function needs (`require_settings`), so a function deployed
without one fails its cold start, naming the variable, instead of its first request that happens to need it. The
values themselves are read once, on first use (`settings()`), by the services opscore.wiring builds.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Variable(StrEnum):
    """The environment variables Ops-Core reads (template.yaml sets them per function)."""

    TABLE_NAME = "TABLE_NAME"
    HISTORY_RETENTION_DAYS = "HISTORY_RETENTION_DAYS"
    MAX_CLOCK_SKEW_SECONDS = "MAX_CLOCK_SKEW_SECONDS"
    RUNNER_MACHINE_PREFIX = "RUNNER_MACHINE_PREFIX"
    RUNNER_ROLE_ARN = "RUNNER_ROLE_ARN"
    RUNNER_LOG_GROUP_ARN = "RUNNER_LOG_GROUP_ARN"
    IDEMPOTENCY_TABLE = "IDEMPOTENCY_TABLE"
    DISPATCH_FUNCTION_ARN = "DISPATCH_FUNCTION_ARN"
    USAGE_PLAN_NAME = "USAGE_PLAN_NAME"
    USAGE_KEY_NAMESPACE = "USAGE_KEY_NAMESPACE"
    OPSCORE_PER_KEY_LIMITS = "OPSCORE_PER_KEY_LIMITS"


# The ones a function may require; the others have defaults.
TABLE_NAME = Variable.TABLE_NAME
RUNNER_MACHINE_PREFIX = Variable.RUNNER_MACHINE_PREFIX
RUNNER_ROLE_ARN = Variable.RUNNER_ROLE_ARN
RUNNER_LOG_GROUP_ARN = Variable.RUNNER_LOG_GROUP_ARN
# What a function that creates and starts session runners needs.
RUNNER_SETTINGS = (RUNNER_MACHINE_PREFIX, RUNNER_ROLE_ARN, RUNNER_LOG_GROUP_ARN, Variable.DISPATCH_FUNCTION_ARN)
IDEMPOTENCY_TABLE = Variable.IDEMPOTENCY_TABLE
DISPATCH_FUNCTION_ARN = Variable.DISPATCH_FUNCTION_ARN
USAGE_PLAN_NAME = Variable.USAGE_PLAN_NAME
USAGE_KEY_NAMESPACE = Variable.USAGE_KEY_NAMESPACE


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str = Field(min_length=3, description="The single Ops-Core table (TABLE_NAME).")
    history_retention_days: int = Field(default=30, ge=1, le=3650, description="TTL of state history entries.")
    runner_machine_prefix: str | None = Field(
        default=None,
        pattern=r"^arn:[a-z-]+:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[A-Za-z0-9_-]{1,24}$",
        description=(
            "The ARN every session runner's name starts with, up to the stack's own name prefix "
            "(RUNNER_MACHINE_PREFIX): arn:<partition>:states:<region>:<account>:stateMachine:<prefix>."
        ),
    )
    runner_role_arn: str | None = Field(default=None, description="The role session runners run as (RUNNER_ROLE_ARN).")
    runner_log_group_arn: str | None = Field(
        default=None, description="Where session runners log their errors (RUNNER_LOG_GROUP_ARN)."
    )
    idempotency_table: str | None = Field(default=None, description="Powertools idempotency (IDEMPOTENCY_TABLE).")
    dispatch_function_arn: str | None = Field(
        default=None, description="Invoked to serve an agent's queue (DISPATCH_FUNCTION_ARN)."
    )
    usage_plan_name: str = Field(
        default="",
        max_length=1024,
        description="The per-key usage plan each key's API Gateway API key joins (USAGE_PLAN_NAME; empty: none).",
    )
    usage_key_namespace: str = Field(
        default="",
        max_length=1024,
        description="What makes this stack's per-key usage identifiers its own (USAGE_KEY_NAMESPACE; empty: none).",
    )
    opscore_per_key_limits: Literal["usage_plan", "gateway"] = Field(
        default="usage_plan",
        description=(
            "Who limits each key's requests (OPSCORE_PER_KEY_LIMITS): `usage_plan`, API Gateway's per-key usage plan "
            "(each key gets its API key there); `gateway`, the local runtime's gateway itself (no API keys made)."
        ),
    )
    max_clock_skew_seconds: int = Field(
        default=300, ge=0, le=86_400, description="How far in the future a reported timestamp may be."
    )

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {variable.lower(): env.get(variable) for variable in Variable}  # each field is its variable's name
        # Unset variables take the model's defaults; TABLE_NAME has none, so a missing one fails loudly here.
        return cls.model_validate({key: value for key, value in values.items() if value is not None})


class MissingSettings(RuntimeError):
    """A function started without a variable it needs; raised at import, Lambda reports it as the init error."""


def require_settings(*variables: Variable) -> frozenset[Variable]:
    """Fail now, at the handler's import, unless each of `variables` is set and every value Ops-Core reads is valid.

    Cheap on purpose (it reads the environment and validates one small model; no client is built), and the returned
    set is what the function declares it needs: tests hold it against template.yaml so the two cannot drift.
    """
    missing = [variable.value for variable in variables if not os.environ.get(variable)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingSettings(f"{', '.join(missing)} {verb} not set for this function")
    if variables:
        Settings.from_environ()  # the values as well: HISTORY_RETENTION_DAYS=abc fails the start too
    return frozenset(variables)


@cache
def settings() -> Settings:
    return Settings.from_environ()
