"""API keys: how they are made, stored (hash only), revoked, and resolved to a principal."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime

from opscore.core.clock import format_timestamp
from opscore.core.errors import FieldProblem, NotFound, ValidationFailed
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.keys.models import ApiKey, CreatedKey, KeyRequest, Principal, Role
from opscore.keys.store import KeyStore, StoredKey

KEY_PREFIX = "opsk_"
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
MIN_KEY_LENGTH = 16
# Keys longer than this are refused before hashing: no real key is this long, and hashing megabytes costs time.
MAX_KEY_LENGTH = 256


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id_of(key_hash: str) -> str:
    return key_hash[:16]


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeys:
    def __init__(self, store: KeyStore, now: Callable[[], datetime]) -> None:
        self._store = store
        self._now = now

    def create(self, request: KeyRequest, created_by: str) -> CreatedKey:
        for _ in range(3):  # a 64-bit key id collides about never; drawing again is cheaper than reasoning about it
            api_key = generate_key()
            stored = self._stored(api_key, request.effective_role, request.agent_id)
            if self._store.put_new(stored, format_timestamp(self._now()), created_by):
                logger.info(
                    "api key created",
                    extra={
                        "event": "key_created",
                        "key_id": stored.key_id,
                        "role": stored.role.value,
                        "agent_id": stored.agent_id,
                    },
                )
                metrics.add_metric(name="ApiKeysCreated", unit=MetricUnit.Count, value=1)
                return CreatedKey(key_id=stored.key_id, role=stored.role, agent_id=stored.agent_id, api_key=api_key)
        raise RuntimeError("could not draw an unused key id")  # pragma: no cover - 3 collisions of 64 random bits

    def install(self, api_key: str, role: Role, agent_id: str | None, created_by: str) -> ApiKey:
        """Store a key chosen by the operator (bootstrap); installing the same key again changes nothing."""
        if not MIN_KEY_LENGTH <= len(api_key) <= MAX_KEY_LENGTH:
            raise ValidationFailed(
                f"an API key must be {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters long",
                [FieldProblem("api_key", "wrong length")],
            )
        stored = self._stored(api_key, role, agent_id)
        if not self._store.put_new(stored, format_timestamp(self._now()), created_by):
            existing = self._store.get(stored.key_id)
            if existing is None or existing.key_hash != stored.key_hash or existing.role is not role:
                raise ValidationFailed("a different key with the same key id is already stored")
        return ApiKey(key_id=stored.key_id, role=role, agent_id=agent_id)

    def revoke(self, key_id: str, revoked_by: str) -> None:
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise ValidationFailed(
                "keyId must be 16 lowercase hex digits",
                [FieldProblem("keyId", "must match ^[0-9a-f]{16}$", location="path")],
            )
        if not self._store.revoke(key_id, format_timestamp(self._now()), revoked_by):
            raise NotFound(f"no API key with id {key_id}")
        logger.info("api key revoked", extra={"event": "key_revoked", "key_id": key_id, "revoked_by": revoked_by})
        metrics.add_metric(name="ApiKeysRevoked", unit=MetricUnit.Count, value=1)

    def authenticate(self, api_key: str | None) -> Principal | None:
        """The principal a presented key stands for, or None for a missing, unknown or revoked key."""
        if not api_key or len(api_key) > MAX_KEY_LENGTH:
            return None
        key_hash = hash_key(api_key)
        stored = self._store.get(key_id_of(key_hash))
        if stored is None or stored.revoked or not hmac.compare_digest(stored.key_hash, key_hash):
            return None
        return Principal(key_id=stored.key_id, role=stored.role, agent_id=stored.agent_id)

    @staticmethod
    def _stored(api_key: str, role: Role, agent_id: str | None) -> StoredKey:
        key_hash = hash_key(api_key)
        return StoredKey(key_id=key_id_of(key_hash), key_hash=key_hash, role=role, agent_id=agent_id, revoked=False)
