"""Which calls the audit log records, and how: decisions as a table (opscore.api.audit)."""

from __future__ import annotations

import pytest

from opscore.api.audit import audit_outcome, is_admin_action, presented_key_id
from opscore.keys.models import Principal, Role
from opscore.keys.service import generate_key, hash_key, key_id_of

ADMIN = Principal(key_id="a" * 16, role=Role.ADMIN)
AGENT = Principal(key_id="b" * 16, role=Role.AGENT, agent_id="agent-1")


@pytest.mark.parametrize(
    ("method", "caller", "declared", "expected"),
    [
        ("POST", ADMIN, False, True),  # an admin's change: a key, a workflow, a trigger, a cancel...
        ("DELETE", ADMIN, False, True),
        ("PUT", ADMIN, False, True),  # an admin acting on an agent's own route counts too
        ("GET", ADMIN, False, False),  # reads are not admin actions...
        ("GET", ADMIN, True, True),  # ...unless the route says so
        ("POST", AGENT, False, False),  # an agent's own work is not an admin action
        ("POST", None, False, False),
        ("GET", AGENT, True, True),
    ],
)
def test_what_counts_as_an_admin_action(method: str, caller: Principal | None, declared: bool, expected: bool) -> None:
    assert is_admin_action(method, caller, declared) is expected


@pytest.mark.parametrize(
    ("status", "admin_action", "expected"),
    [
        (401, False, "denied"),  # a refused caller, always
        (403, False, "denied"),
        (403, True, "denied"),
        (201, True, "allowed"),
        (400, True, "allowed"),  # let through, then refused for what it sent: its status says so
        (404, True, "allowed"),
        (500, True, "allowed"),
        (200, False, None),  # an agent's own call: not audited
        (404, False, None),
    ],
)
def test_how_a_call_is_audited(status: int, admin_action: bool, expected: str | None) -> None:
    assert audit_outcome(status, admin_action) == expected


def test_only_a_key_ops_core_could_have_issued_is_named_by_its_id() -> None:
    issued = generate_key()
    assert presented_key_id(issued) == key_id_of(hash_key(issued))
    for other in (None, "", "hunter2-my-password", "opsk_" + "x" * 300):
        assert presented_key_id(other) is None, other
