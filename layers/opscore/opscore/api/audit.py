"""The audit log: one `audit` line for every admin action and every refused key or caller (docs/security.md).

Who: `key_id` and `role` of the caller (and `caller_agent_id` for an agent key), never the key itself. What:
`action`, the method and the route as docs/openapi.yaml spells it (`POST /keys`). On which resource: the path's ids,
which every line of the request already carries once read (`agent_id`, `session_id`, `task_id`, `workflow_id`,
`target_key_id`), and what the route made, which it adds the same way. From where: `source_ip`, as API Gateway saw
the client. With what outcome: `denied` (401, 403) or `allowed`, and the `status` answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from opscore.core.observability import logger
from opscore.keys.models import Role

if TYPE_CHECKING:
    from opscore.keys.models import Principal

type Outcome = Literal["allowed", "denied"]

DENIED_STATUSES = frozenset({401, 403})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_admin_action(method: str, caller: Principal | None, declared: bool) -> bool:
    """A route declared `audit=True`, or any call with an admin key that may change something (not a read)."""
    return declared or (caller is not None and caller.role is Role.ADMIN and method not in READ_METHODS)


def audit_outcome(status: int, admin_action: bool) -> Outcome | None:
    """How the call is audited, or None when it is not: a refused caller always, anything else of an admin action."""
    if status in DENIED_STATUSES:
        return "denied"
    return "allowed" if admin_action else None


def caller_fields(caller: Principal | None) -> dict[str, Any]:
    if caller is None:
        return {}
    return {"key_id": caller.key_id, "role": caller.role.value, "caller_agent_id": caller.agent_id}


def write_audit(action: str, outcome: Outcome, status: int, source_ip: str | None, **fields: Any) -> None:
    """The audit line; `fields` adds who (caller_fields) and what is not yet among the request's log keys."""
    logger.info(
        f"audit: {action} {outcome} ({status})",
        extra={"event": "audit", "action": action, "outcome": outcome, "status": status, "source_ip": source_ip}
        | fields,
    )


def presented_key_id(api_key: str | None) -> str | None:
    """The id of a presented key that Ops-Core could have issued (`opsk_` and 32 random bytes), so a revoked or expired
    key is named; None for anything else, whose hash could help someone guess a weak secret sent by mistake."""
    from opscore.keys.service import KEY_PREFIX, MAX_KEY_LENGTH, hash_key, key_id_of

    if api_key is None or not api_key.startswith(KEY_PREFIX) or len(api_key) > MAX_KEY_LENGTH:
        return None
    return key_id_of(hash_key(api_key))


def write_key_refused(method: str, route: str, path: str, source_ip: str | None, api_key: str | None) -> None:
    """The authorizer's audit line for a key it refused (API Gateway answers 401): the key is never logged."""
    reason = "no API key" if not api_key else "unknown, revoked, expired or malformed API key"
    write_audit(
        f"{method} {route}",
        "denied",
        401,
        source_ip,
        key_id=presented_key_id(api_key),
        path=path,
        error_type="unauthorized",
        error_message=reason,
    )
