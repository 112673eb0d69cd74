"""What a key operation can run into beyond the common errors."""

from __future__ import annotations

from opscore.core.errors import Conflict


class KeyInactive(Conflict):
    """The key is revoked or has expired: it cannot be rotated (a new key is issued instead). Not `conflict`, which
    asks for the request again."""

    code = "key_inactive"


class KeyQuotaReached(Conflict):
    """API Gateway refused a new API key: the account's quota of API keys in the region (10,000 by default) is
    reached. Retrying does not help; revoking unused keys or a higher quota does."""

    code = "key_quota_reached"
