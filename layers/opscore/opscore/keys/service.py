"""API keys: how they are made, stored (hash only), listed, rotated, revoked, and resolved to a principal."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from opscore.core.clock import format_timestamp
from opscore.core.errors import FieldProblem, NotFound, OpsCoreError, Throttled, ValidationFailed
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.keys.errors import KeyInactive
from opscore.keys.models import ApiKey, CreatedKey, KeyPage, KeyRequest, Principal, Role, RotateRequest
from opscore.keys.store import KeyStore, StoredKey
from opscore.keys.usage import NO_USAGE_KEYS, UsageKeys

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


def check_key_id(key_id: str) -> None:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValidationFailed(
            "keyId must be 16 lowercase hex digits",
            [FieldProblem("keyId", "must match ^[0-9a-f]{16}$", location="path")],
        )


def expired(key: StoredKey, now: str) -> bool:
    """At or after its expiry (both in format_timestamp's fixed-width form, so string order is time order)."""
    return key.expires_at is not None and now >= key.expires_at


def _future(moment: datetime | None, now: datetime, field: str) -> str | None:
    """The moment as stored, when it is after `now`; a 400 naming `field` otherwise."""
    if moment is None:
        return None
    if moment <= now:
        raise ValidationFailed(f"{field} must be in the future", [FieldProblem(field, "must be after now")])
    return format_timestamp(moment)


@dataclass(frozen=True)
class UsageSync:
    attached: list[str]  # the key ids that have their API key in the usage plan now
    skipped: int  # revoked or expired keys, left without one


class ApiKeys:
    def __init__(self, store: KeyStore, now: Callable[[], datetime], usage_keys: UsageKeys = NO_USAGE_KEYS) -> None:
        self._store = store
        self._now = now
        self._usage = usage_keys

    def create(self, request: KeyRequest, created_by: str) -> CreatedKey:
        expires_at = _future(request.expires_at, self._now(), "expires_at")
        return self._issue(request.effective_role, request.agent_id, expires_at, created_by, rotated_from=None)

    def _issue(
        self, role: Role, agent_id: str | None, expires_at: str | None, created_by: str, rotated_from: str | None
    ) -> CreatedKey:
        for _ in range(3):  # a 64-bit key id collides about never; drawing again is cheaper than reasoning about it
            api_key = generate_key()
            stored = self._stored(api_key, role, agent_id, expires_at, rotated_from)
            # The limit first: a key stored without its API key would be refused by API Gateway (403).
            self._usage.attach(stored.key_id)
            with self._api_key_dropped_on_failure(stored.key_id):
                fresh = self._store.put_new(stored, format_timestamp(self._now()), created_by)
            if fresh:
                self._log_created(stored)
                return self._created(stored, api_key)
        raise RuntimeError("could not draw an unused key id")  # pragma: no cover - 3 collisions of 64 random bits

    def rotate(self, key_id: str, request: RotateRequest, rotated_by: str) -> CreatedKey:
        """A new key for the old key's principal, working at once; the old one works on until it is revoked, expires
        or reaches `old_key_expires_at`. A revoked or expired key cannot be rotated (409): issue a new key instead."""
        check_key_id(key_id)
        now = self._now()
        new_expiry = _future(request.expires_at, now, "expires_at")
        grace = _future(request.old_key_expires_at, now, "old_key_expires_at")
        for _ in range(3):  # the old key changed between the read and the write: read it again
            old = self._rotatable(key_id, format_timestamp(now))
            old_expiry = grace if grace is None or old.expires_at is None else min(grace, old.expires_at)
            api_key = generate_key()
            new = self._stored(api_key, old.role, old.agent_id, new_expiry, rotated_from=key_id)
            self._usage.attach(new.key_id)
            with self._api_key_dropped_on_failure(new.key_id):
                rotated = self._store.put_rotated(new, format_timestamp(self._now()), rotated_by, old, old_expiry)
            if rotated:
                self._log_created(new)
                logger.info(
                    "api key rotated",
                    extra={
                        "event": "key_rotated",
                        "key_id": new.key_id,
                        "rotated_from": key_id,
                        "role": new.role.value,
                        "agent_id": new.agent_id,
                        "old_key_expires_at": old_expiry,
                    },
                )
                metrics.add_metric(name="ApiKeysRotated", unit=MetricUnit.Count, value=1)
                return self._created(new, api_key)
            self._detach_quietly(new.key_id)
        raise Throttled("the key kept changing while it was rotated; retry shortly")

    def _rotatable(self, key_id: str, now: str) -> StoredKey:
        old = self._store.get(key_id)
        if old is None:
            raise NotFound(f"no API key with id {key_id}")
        if old.revoked:
            raise KeyInactive(f"API key {key_id} is revoked: issue a new key instead of rotating it")
        if expired(old, now):
            raise KeyInactive(f"API key {key_id} has expired: issue a new key instead of rotating it")
        return old

    def install(self, api_key: str, role: Role, agent_id: str | None, created_by: str) -> ApiKey:
        """Store a key chosen by the operator (bootstrap); installing the same key again changes nothing."""
        if not MIN_KEY_LENGTH <= len(api_key) <= MAX_KEY_LENGTH:
            raise ValidationFailed(
                f"an API key must be {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters long",
                [FieldProblem("api_key", "wrong length")],
            )
        stored = self._stored(api_key, role, agent_id, None, None)
        self._usage.attach(stored.key_id)
        if not self._store.put_new(stored, format_timestamp(self._now()), created_by):
            existing = self._store.get(stored.key_id)
            if existing is None or existing.key_hash != stored.key_hash or existing.role is not role:
                raise ValidationFailed("a different key with the same key id is already stored")
        return ApiKey(key_id=stored.key_id, role=role, agent_id=agent_id)

    def revoke(self, key_id: str, revoked_by: str) -> None:
        check_key_id(key_id)
        if not self._store.revoke(key_id, format_timestamp(self._now()), revoked_by):
            raise NotFound(f"no API key with id {key_id}")
        logger.info("api key revoked", extra={"event": "key_revoked", "key_id": key_id, "revoked_by": revoked_by})
        metrics.add_metric(name="ApiKeysRevoked", unit=MetricUnit.Count, value=1)
        # Best effort, after the revocation is stored (which is what refuses the key): a failure leaves an API key
        # that no valid Ops-Core key can use, so the revocation still succeeded and its answer says so.
        self._detach_quietly(key_id)

    def _detach_quietly(self, key_id: str) -> None:
        """Delete the key's API key; a failure is logged (`usage_key_not_deleted`), never raised."""
        try:
            self._usage.detach(key_id)
        except (ClientError, BotoCoreError, OpsCoreError) as error:
            logger.warning(
                "usage key not deleted",
                extra={"event": "usage_key_not_deleted", "key_id": key_id, "error": type(error).__name__},
            )

    @contextmanager
    def _api_key_dropped_on_failure(self, key_id: str) -> Iterator[None]:
        """A key whose storing failed leaves no API key behind in the usage plan (its secret was never shown, so no
        one can use it even if the write took effect)."""
        try:
            yield
        except Exception:
            self._detach_quietly(key_id)
            raise

    def sync_usage(self) -> UsageSync:
        """Give every stored key that still works (not revoked, not expired) its API key in the usage plan; attach is
        idempotent, so keys that have one are unchanged. No secret changes: a key made before per-key limits, or
        with `opscore keys create --table`, works on as it is. A one-off operator migration (see KeyStore.every_key)."""
        now = format_timestamp(self._now())
        attached: list[str] = []
        skipped = 0
        for key in self._store.every_key():
            if key.revoked or expired(key, now):
                skipped += 1
                continue
            self._usage.attach(key.key_id)
            attached.append(key.key_id)
        return UsageSync(attached=attached, skipped=skipped)

    def list(self, agent_id: str | None, limit: int, next_token: str | None) -> KeyPage:
        items, token = self._store.list_page(agent_id, limit, next_token)
        return KeyPage(items=items, next_token=token)

    def authenticate(self, api_key: str | None) -> Principal | None:
        """The principal a presented key stands for, or None for a missing, unknown, revoked or expired key.

        A key's first use on a UTC day records that day (`last_used_on`): at most one conditional write a key a day,
        decided from the item already read here."""
        if not api_key or len(api_key) > MAX_KEY_LENGTH:
            return None
        key_hash = hash_key(api_key)
        stored = self._store.get(key_id_of(key_hash))
        if stored is None or stored.revoked or not hmac.compare_digest(stored.key_hash, key_hash):
            return None
        now = self._now()
        if expired(stored, format_timestamp(now)):
            return None
        today = now.date().isoformat()
        if stored.last_used_on is None or stored.last_used_on < today:
            try:
                self._store.record_use(stored, today)
            except (ClientError, BotoCoreError, OpsCoreError) as error:
                # Bookkeeping: never worth refusing a valid key (any failure here would be the authorizer's 500),
                # whether DynamoDB throttled, failed, timed out or refused; the next request tries again.
                logger.warning(
                    "key use not recorded",
                    extra={"event": "key_use_not_recorded", "key_id": stored.key_id, "error": type(error).__name__},
                )
        return Principal(key_id=stored.key_id, role=stored.role, agent_id=stored.agent_id)

    @staticmethod
    def _log_created(stored: StoredKey) -> None:
        logger.info(
            "api key created",
            extra={
                "event": "key_created",
                "key_id": stored.key_id,
                "role": stored.role.value,
                "agent_id": stored.agent_id,
                "expires_at": stored.expires_at,
            },
        )
        metrics.add_metric(name="ApiKeysCreated", unit=MetricUnit.Count, value=1)

    @staticmethod
    def _created(stored: StoredKey, api_key: str) -> CreatedKey:
        return CreatedKey(
            key_id=stored.key_id,
            role=stored.role,
            agent_id=stored.agent_id,
            api_key=api_key,
            expires_at=stored.expires_at,
            rotated_from=stored.rotated_from,
        )

    @staticmethod
    def _stored(
        api_key: str, role: Role, agent_id: str | None, expires_at: str | None, rotated_from: str | None
    ) -> StoredKey:
        key_hash = hash_key(api_key)
        return StoredKey(
            key_id=key_id_of(key_hash),
            key_hash=key_hash,
            role=role,
            agent_id=agent_id,
            revoked=False,
            expires_at=expires_at,
            rotated_from=rotated_from,
        )
