"""API keys: hashing, ids and authentication, against an in-memory fake of the key store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opscore.core.errors import NotFound, ValidationFailed
from opscore.keys.models import KeyRequest, Role
from opscore.keys.service import ApiKeys, generate_key, hash_key, key_id_of
from opscore.keys.store import StoredKey


class FakeKeyStore:
    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}

    def put_new(self, key: StoredKey, created_at: str, created_by: str) -> bool:
        if key.key_id in self.keys:
            return False
        self.keys[key.key_id] = key
        return True

    def get(self, key_id: str) -> StoredKey | None:
        return self.keys.get(key_id)

    def revoke(self, key_id: str, now: str, revoked_by: str) -> bool:
        if key_id not in self.keys:
            return False
        stored = self.keys[key_id]
        self.keys[key_id] = StoredKey(stored.key_id, stored.key_hash, stored.role, stored.agent_id, revoked=True)
        return True


@pytest.fixture
def store() -> FakeKeyStore:
    return FakeKeyStore()


@pytest.fixture
def keys(store: FakeKeyStore) -> ApiKeys:
    return ApiKeys(store, lambda: datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


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
