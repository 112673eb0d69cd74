"""API keys: hashing, ids and authentication, against an in-memory fake of the key store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opscore.core.errors import NotFound, ValidationFailed
from opscore.keys.errors import KeyInactive
from opscore.keys.models import KeyRequest, Role, RotateRequest
from opscore.keys.service import ApiKeys, generate_key, hash_key, key_id_of
from opscore.keys.store import StoredKey


class FakeKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.uses: list[tuple[str, str]] = []

    def put_new(self, key: StoredKey, created_at: str, created_by: str) -> bool:
        if key.key_id in self.keys:
            return False
        self.keys[key.key_id] = replace(key, created_at=created_at)
        return True

    def put_rotated(
        self, new: StoredKey, created_at: str, created_by: str, old: StoredKey, old_expires_at: str | None
    ) -> bool:
        if self.keys.get(old.key_id) != old or new.key_id in self.keys:
            return False
        self.keys[new.key_id] = replace(new, created_at=created_at)
        if old_expires_at is not None:
            self.keys[old.key_id] = replace(old, expires_at=old_expires_at)
        return True

    def get(self, key_id: str) -> StoredKey | None:
        return self.keys.get(key_id)

    def revoke(self, key_id: str, now: str, revoked_by: str) -> bool:
        if key_id not in self.keys:
            return False
        self.keys[key_id] = replace(self.keys[key_id], revoked=True)
        return True

    def every_key(self) -> list[StoredKey]:
        return list(self.keys.values())

    def record_use(self, key: StoredKey, day: str) -> bool:
        self.uses.append((key.key_id, day))
        self.keys[key.key_id] = replace(self.keys[key.key_id], last_used_on=day)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store() -> FakeKeyStore:
    return FakeKeyStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(store: FakeKeyStore, clock: Clock) -> ApiKeys:
    return ApiKeys(store, clock)  # type: ignore[arg-type]


def test_generated_keys_are_long_random_and_prefixed() -> None:
    drawn = {generate_key() for _ in range(100)}
    assert len(drawn) == 100
    assert all(key.startswith("opsk_") and len(key) >= 45 for key in drawn)


def test_key_id_is_the_hash_prefix() -> None:
    digest = hash_key("some-key")
    assert len(digest) == 64
    assert key_id_of(digest) == digest[:16]


def test_created_keys_authenticate_and_only_their_hash_is_kept(keys: ApiKeys, store: FakeKeyStore) -> None:
    created = keys.create(KeyRequest(agent_id="a1"), created_by="admin")
    stored = store.keys[created.key_id]
    assert stored.key_hash == hash_key(created.api_key)
    principal = keys.authenticate(created.api_key)
    assert principal is not None
    assert (principal.role, principal.agent_id, principal.key_id) == (Role.AGENT, "a1", created.key_id)


def test_a_key_sharing_an_id_but_not_the_hash_is_refused(keys: ApiKeys, store: FakeKeyStore) -> None:
    created = keys.create(KeyRequest(role=Role.ADMIN), created_by="admin")
    forged = StoredKey(created.key_id, "0" * 64, Role.ADMIN, None, revoked=False)
    store.keys[created.key_id] = forged
    assert keys.authenticate(created.api_key) is None


def test_revoked_unknown_and_absurd_keys_do_not_authenticate(keys: ApiKeys) -> None:
    created = keys.create(KeyRequest(agent_id="a1"), created_by="admin")
    keys.revoke(created.key_id, revoked_by="admin")
    assert keys.authenticate(created.api_key) is None
    assert keys.authenticate("opsk_unknown") is None
    assert keys.authenticate(None) is None
    assert keys.authenticate("k" * 100_000) is None


def test_revoke_checks_the_id(keys: ApiKeys) -> None:
    with pytest.raises(ValidationFailed):
        keys.revoke("XYZ", revoked_by="admin")
    with pytest.raises(NotFound):
        keys.revoke("0123456789abcdef", revoked_by="admin")


def test_install_is_idempotent_and_refuses_short_keys(keys: ApiKeys) -> None:
    first = keys.install("a-key-of-sixteen-chars", Role.ADMIN, None, created_by="bootstrap")
    assert keys.install("a-key-of-sixteen-chars", Role.ADMIN, None, created_by="bootstrap") == first
    with pytest.raises(ValidationFailed):
        keys.install("short", Role.ADMIN, None, created_by="bootstrap")


def in_(clock: Clock, **delta: float) -> str:
    return (clock.now + timedelta(**delta)).isoformat()


def test_a_key_works_until_its_expiry_and_not_at_or_after_it(keys: ApiKeys, clock: Clock) -> None:
    created = keys.create(
        KeyRequest.model_validate_json(f'{{"agent_id": "a1", "expires_at": "{in_(clock, seconds=1)}"}}'), "admin"
    )
    assert created.expires_at == "2026-01-01T00:00:01.000000Z", "stored as format_timestamp writes it"
    assert keys.authenticate(created.api_key) is not None
    clock.now += timedelta(seconds=1)
    assert keys.authenticate(created.api_key) is None, "at its expiry"
    clock.now += timedelta(days=1)
    assert keys.authenticate(created.api_key) is None, "after it"


@pytest.mark.parametrize("expires_at", ["2026-01-01T00:00:00Z", "2025-12-31T23:59:59+00:00", "2020-01-01T00:00:00Z"])
def test_an_expiry_not_in_the_future_is_a_400_naming_it(keys: ApiKeys, store: FakeKeyStore, expires_at: str) -> None:
    request = KeyRequest.model_validate_json(f'{{"role": "admin", "expires_at": "{expires_at}"}}')
    with pytest.raises(ValidationFailed) as refused:
        keys.create(request, "admin")
    assert [problem.field for problem in refused.value.details] == ["expires_at"]
    assert store.keys == {}, "nothing stored"


@pytest.mark.parametrize(
    "expires_at",
    [
        "2027-01-01",
        "2027-01-01T00:00:00",
        1798761600,
        "tomorrow",
        "2027-13-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "2027-06-30T23:59:60Z",
    ],
)
def test_an_expiry_must_be_rfc3339_with_its_offset(expires_at: Any) -> None:
    import json

    from pydantic import ValidationError

    with pytest.raises(ValidationError) as refused:
        KeyRequest.model_validate_json(json.dumps({"agent_id": "a1", "expires_at": expires_at}))
    assert refused.value.errors()[0]["loc"] == ("expires_at",)


def test_an_offset_is_kept_as_the_same_moment_in_utc(keys: ApiKeys) -> None:
    request = KeyRequest.model_validate_json('{"agent_id": "a1", "expires_at": "2026-01-01T02:00:00+02:00"}')
    with pytest.raises(ValidationFailed):  # midnight UTC: now, so not in the future
        keys.create(request, "admin")
    later = KeyRequest.model_validate_json('{"agent_id": "a1", "expires_at": "2026-01-01T03:30:00+02:00"}')
    assert keys.create(later, "admin").expires_at == "2026-01-01T01:30:00.000000Z"


def test_the_first_use_of_a_day_is_recorded_once(keys: ApiKeys, store: FakeKeyStore, clock: Clock) -> None:
    created = keys.create(KeyRequest(agent_id="a1"), "admin")
    for _ in range(3):
        assert keys.authenticate(created.api_key) is not None
    assert store.uses == [(created.key_id, "2026-01-01")], "one write on the first use of the day"
    clock.now += timedelta(hours=23, minutes=59)
    keys.authenticate(created.api_key)
    clock.now += timedelta(minutes=2)
    keys.authenticate(created.api_key)
    keys.authenticate(created.api_key)
    assert store.uses == [(created.key_id, "2026-01-01"), (created.key_id, "2026-01-02")]
    keys.authenticate("opsk_unknown-key")
    keys.revoke(created.key_id, "admin")
    keys.authenticate(created.api_key)
    clock.now += timedelta(days=1)
    keys.authenticate(created.api_key)
    assert len(store.uses) == 2, "refused keys record nothing"


def test_a_throttled_use_record_does_not_refuse_the_key(keys: ApiKeys, store: FakeKeyStore) -> None:
    from opscore.core.errors import Throttled

    created = keys.create(KeyRequest(agent_id="a1"), "admin")

    def throttled(key: StoredKey, day: str) -> bool:
        raise Throttled("slow down")

    store.record_use = throttled  # type: ignore[method-assign]
    assert keys.authenticate(created.api_key) is not None


def test_rotation_makes_a_new_key_for_the_same_principal_and_keeps_the_old_one(
    keys: ApiKeys, store: FakeKeyStore, clock: Clock
) -> None:
    old = keys.create(KeyRequest(agent_id="a1"), "admin")
    new = keys.rotate(old.key_id, RotateRequest(), "admin")
    assert (new.role, new.agent_id, new.rotated_from) == (Role.AGENT, "a1", old.key_id)
    assert new.api_key != old.api_key
    assert keys.authenticate(new.api_key) is not None
    assert keys.authenticate(old.api_key) is not None, "the old key works on until revoked"
    keys.revoke(old.key_id, "admin")
    assert keys.authenticate(old.api_key) is None
    assert keys.authenticate(new.api_key) is not None


def test_a_grace_period_ends_the_old_key_but_never_extends_its_expiry(keys: ApiKeys, clock: Clock) -> None:
    old = keys.create(
        KeyRequest.model_validate_json(f'{{"role": "admin", "expires_at": "{in_(clock, hours=2)}"}}'), "a"
    )
    later = RotateRequest.model_validate_json(f'{{"old_key_expires_at": "{in_(clock, hours=5)}"}}')
    keys.rotate(old.key_id, later, "admin")
    clock.now += timedelta(hours=2)
    assert keys.authenticate(old.api_key) is None, "its own, earlier expiry holds"

    clock.now = datetime(2026, 1, 1, tzinfo=UTC)
    other = keys.create(KeyRequest(agent_id="a2"), "admin")
    grace = RotateRequest.model_validate_json(f'{{"old_key_expires_at": "{in_(clock, minutes=10)}"}}')
    new = keys.rotate(other.key_id, grace, "admin")
    clock.now += timedelta(minutes=9)
    assert keys.authenticate(other.api_key) is not None
    clock.now += timedelta(minutes=1)
    assert keys.authenticate(other.api_key) is None, "the grace period is over"
    assert keys.authenticate(new.api_key) is not None


def test_revoked_expired_unknown_and_malformed_keys_cannot_be_rotated(
    keys: ApiKeys, store: FakeKeyStore, clock: Clock
) -> None:
    revoked = keys.create(KeyRequest(agent_id="a1"), "admin")
    keys.revoke(revoked.key_id, "admin")
    expiring = keys.create(
        KeyRequest.model_validate_json(f'{{"agent_id": "a1", "expires_at": "{in_(clock, seconds=5)}"}}'), "a"
    )
    clock.now += timedelta(seconds=5)
    count = len(store.keys)
    for key_id in (revoked.key_id, expiring.key_id):
        with pytest.raises(KeyInactive):
            keys.rotate(key_id, RotateRequest(), "admin")
    with pytest.raises(NotFound):
        keys.rotate("0123456789abcdef", RotateRequest(), "admin")
    with pytest.raises(ValidationFailed):
        keys.rotate("XYZ", RotateRequest(), "admin")
    past = RotateRequest.model_validate_json('{"old_key_expires_at": "2020-01-01T00:00:00Z"}')
    live = keys.create(KeyRequest(agent_id="a1"), "admin")
    with pytest.raises(ValidationFailed) as refused:
        keys.rotate(live.key_id, past, "admin")
    assert refused.value.details[0].field == "old_key_expires_at"
    assert len(store.keys) == count + 1, "nothing but the live key was stored"


class RecordingUsage:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def attach(self, key_id: str) -> None:
        self.calls.append(("attach", key_id))

    def detach(self, key_id: str) -> None:
        self.calls.append(("detach", key_id))


def test_each_key_gets_its_usage_key_before_it_is_stored_and_loses_it_on_revoke(
    store: FakeKeyStore, clock: Clock
) -> None:
    usage = RecordingUsage()
    keys = ApiKeys(store, clock, usage)  # type: ignore[arg-type]
    created = keys.create(KeyRequest(agent_id="a1"), "admin")
    rotated = keys.rotate(created.key_id, RotateRequest(), "admin")
    keys.revoke(created.key_id, "admin")
    assert usage.calls == [("attach", created.key_id), ("attach", rotated.key_id), ("detach", created.key_id)]


def test_usage_identifiers_are_deterministic_per_stack_and_in_api_gateways_bounds() -> None:
    from opscore.keys.usage import usage_identifier

    value = usage_identifier("opscore-prod", "0123456789abcdef")
    assert value == usage_identifier("opscore-prod", "0123456789abcdef")
    assert value != usage_identifier("opscore-dev", "0123456789abcdef")
    assert value.endswith("0123456789abcdef")
    assert 20 <= len(value) <= 128


def test_sync_usage_attaches_every_working_key_and_skips_revoked_and_expired_ones(
    store: FakeKeyStore, clock: Clock
) -> None:
    keys = ApiKeys(store, clock)  # type: ignore[arg-type]
    working = keys.create(KeyRequest(agent_id="a1"), "admin")
    revoked = keys.create(KeyRequest(agent_id="a2"), "admin")
    keys.revoke(revoked.key_id, "admin")
    expiring = keys.create(KeyRequest.model_validate({"agent_id": "a3", "expires_at": "2026-01-01T01:00:00Z"}), "admin")
    clock.now += timedelta(hours=1)
    usage = RecordingUsage()
    synced = ApiKeys(store, clock, usage).sync_usage()  # type: ignore[arg-type]
    assert usage.calls == [("attach", working.key_id)]
    assert (synced.attached, synced.skipped) == ([working.key_id], 2)
    assert keys.authenticate(expiring.api_key) is None
    assert keys.authenticate(working.api_key) is not None
