"""Time as Ops-Core stores and compares it: UTC, fixed width, so string order is time order."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """UTC, fixed width, microseconds: string order is time order, which the stale-update guard relies on."""
    utc = moment.astimezone(UTC)
    # strftime's %Y does not pad years before 1000; reports are refused before EARLIEST_TIMESTAMP anyway.
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(stamp: str | None) -> datetime | None:
    """A stored timestamp (or Step Functions' `$$.State.EnteredTime`) as a moment; None when absent, malformed or
    without an offset."""
    if stamp is None:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
