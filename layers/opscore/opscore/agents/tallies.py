"""An agent's ended attempts, tallied by the minute and by the hour in its partition: what its stats count and time.

Items (in the agent's partition, beside its item and state history; see opscore.agents.store):
- `PK=AGENT#<id> SK=TALLY#M#<YYYY-MM-DDTHH:MM>`: the agent's attempts that ended in that minute (UTC);
- `PK=AGENT#<id> SK=TALLY#H#<YYYY-MM-DDTHH>`: those that ended in that hour.
Every attribute is a top-level number that an update ADDs to (ADD creates what is missing): `succeeded`, `failed`,
`timed_out` (the attempt's own outcome: a retried task's failed attempt counts as failed); `q<b>` and `r<b>`, how many
attempts' queue wait and run time fell in histogram bucket b (see `bucket_of`; only attempts that were leased are
timed); and `expires_at`, the table's TTL, TALLY_DAYS after the bucket.

Each attempt's end adds to its minute and its hour in the very transaction that records the end (SessionStore.
save_result, TaskQueue.release and TaskQueue.withdraw), so every ended attempt is counted exactly once: a transaction
whose condition failed (a repeated result, an attempt already ended) writes nothing.

A window's tally reads the minutes of its partial hours and the hours in between: at most ~2 x 60 + 24 small items,
in at most three Queries (one when the window spans no whole clock hour), however busy the agent. Counts are exact for
attempts ended from the start of the window's first minute. Percentiles are nearest rank over the summed histogram,
reported as their bucket's geometric midpoint: within RELATIVE_ERROR (about +-4.9%) of the measured value, and within
0.5 ms below 1 ms.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from opscore.agents.stats import ENDED_STATUSES, Attempt, timings
from opscore.aws.dynamodb import translated_errors
from opscore.aws.items import Attributes, decode_item, n, s
from opscore.core.clock import parse_timestamp
from opscore.core.contracts import parse_json

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from opscore.sessions.writes import TaskOutcome

TALLY_PREFIX = "TALLY#"
MINUTE_PREFIX = "TALLY#M#"
HOUR_PREFIX = "TALLY#H#"
# Histogram buckets: bucket 0 holds what took under 1 ms; bucket b >= 1 holds [RATIO^(b-1), RATIO^b) ms.
RATIO = 1.1
# A value reported as its bucket's geometric midpoint is off by at most this share of it: sqrt(RATIO) - 1.
RELATIVE_ERROR = math.sqrt(RATIO) - 1
_LOG_RATIO = math.log(RATIO)
QUEUE_WAIT, RUN_TIME = "q", "r"
# Tallies outlive the widest window (24 h) by a margin; the TTL then deletes them.
TALLY_DAYS = 2
_MINUTE, _HOUR = timedelta(minutes=1), timedelta(hours=1)


# ---------------------------------------------------------------------- buckets


def bucket_of(milliseconds: float) -> int:
    """The histogram bucket of a duration: 0 below 1 ms, else 1 + floor(log(ms) / log(RATIO))."""
    if milliseconds < 1:
        return 0
    return 1 + math.floor(math.log(milliseconds) / _LOG_RATIO)


def bucket_value(bucket: int) -> float:
    """What a bucket reports: the geometric midpoint of its bounds (0.5 ms for the one below 1 ms)."""
    if bucket <= 0:
        return 0.5
    return float(RATIO ** (bucket - 0.5))


def minute_key(moment: datetime) -> str:
    return MINUTE_PREFIX + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def hour_key(moment: datetime) -> str:
    return HOUR_PREFIX + moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


# ---------------------------------------------------------------------- writing


def ended_attempt(outcome: TaskOutcome) -> Attempt | None:
    """The attempt an outcome ends, from the record it writes (its own outcome, and its timings when it was leased);
    None for a record that ends no attempt."""
    record = parse_json(outcome.attempt_record_json) or {}
    status, ended = record.get("status"), parse_timestamp(record.get("ended_at") or outcome.ended_at)
    if status not in ENDED_STATUSES or ended is None:
        return None
    queued = parse_timestamp(record.get("queued_at") or record.get("started_at"))
    wait, run = timings(queued, parse_timestamp(record.get("leased_at")), ended)
    return Attempt(status, ended, wait, run)


def tally_updates(table: str, agent_id: str, outcome: TaskOutcome) -> list[TransactWriteItemTypeDef]:
    """The transaction items that count the outcome's attempt in its agent's minute and hour (none if it ends none)."""
    attempt = ended_attempt(outcome)
    if attempt is None:
        return []
    return [
        {"Update": tally_request(table, agent_id, key, attempt, start)}  # type: ignore[typeddict-item]
        for key, start in (
            (minute_key(attempt.ended_at), attempt.ended_at.replace(second=0, microsecond=0)),
            (hour_key(attempt.ended_at), attempt.ended_at.replace(minute=0, second=0, microsecond=0)),
        )
    ]


def tally_request(table: str, agent_id: str, sort_key: str, attempt: Attempt, start: datetime) -> dict[str, Any]:
    """One tally item's update: ADD one to the attempt's outcome and to its timings' buckets; the TTL set."""
    added = [attempt.status]
    if attempt.queue_wait_ms is not None and attempt.run_ms is not None:
        added += [f"{QUEUE_WAIT}{bucket_of(attempt.queue_wait_ms)}", f"{RUN_TIME}{bucket_of(attempt.run_ms)}"]
    return {
        "TableName": table,
        "Key": {"PK": s(f"AGENT#{agent_id}"), "SK": s(sort_key)},
        "UpdateExpression": "ADD " + ", ".join(f"#{name} :one" for name in added) + " SET #expires_at = :expires",
        "ExpressionAttributeNames": {f"#{name}": name for name in [*added, "expires_at"]},
        "ExpressionAttributeValues": {
            ":one": n(1),
            ":expires": n(int((start + timedelta(days=TALLY_DAYS)).timestamp())),
        },
    }


# ---------------------------------------------------------------------- reading


def window_ranges(since: datetime, until: datetime) -> list[tuple[str, str]]:
    """The sort-key ranges (both ends included) whose tallies cover the minutes from `since`'s to `until`'s: the
    whole clock hours in between as hour items, the minutes before and after them as minute items."""
    first = since.astimezone(UTC).replace(second=0, microsecond=0)
    last = until.astimezone(UTC).replace(second=0, microsecond=0)
    if last < first:
        return []
    whole_from = first if first.minute == 0 else first.replace(minute=0) + _HOUR
    whole_to = last.replace(minute=0) + (_HOUR if last.minute == 59 else timedelta(0))  # past the last whole hour
    if whole_from >= whole_to:
        return [(minute_key(first), minute_key(last))]
    ranges = [(hour_key(whole_from), hour_key(whole_to - _HOUR))]
    if first < whole_from:
        ranges.insert(0, (minute_key(first), minute_key(whole_from - _MINUTE)))
    if whole_to <= last:
        ranges.append((minute_key(whole_to), minute_key(last)))
    return ranges


class Tally(NamedTuple):
    """A window's summed tallies: the outcomes, and the histograms of queue wait and run time (bucket -> count)."""

    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    queue_wait: Mapping[int, int] = {}
    run_time: Mapping[int, int] = {}

    @property
    def success_rate(self) -> float | None:
        ended = self.succeeded + self.failed + self.timed_out
        return round(self.succeeded / ended, 4) if ended else None


def summed(items: Iterable[Attributes]) -> Tally:
    """The tally items' counts added up."""
    outcomes: Counter[str] = Counter()
    histograms: dict[str, Counter[int]] = {QUEUE_WAIT: Counter(), RUN_TIME: Counter()}
    for item in items:
        for name, value in item.items():
            if name in ENDED_STATUSES:
                outcomes[name] += int(value)
            elif name[:1] in histograms and name[1:].isdigit():
                histograms[name[:1]][int(name[1:])] += int(value)
    return Tally(
        succeeded=outcomes["succeeded"],
        failed=outcomes["failed"],
        timed_out=outcomes["timed_out"],
        queue_wait=dict(histograms[QUEUE_WAIT]),
        run_time=dict(histograms[RUN_TIME]),
    )


def histogram_percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The nearest-rank percentile (`fraction` in (0, 1]) of the values a histogram counted, as its bucket reports it
    (within RELATIVE_ERROR of the measured value); None when it counted none."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


class TallyStore:
    """Reads an agent's tallies (the writes are parts of the transactions that record attempts' ends)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def window(self, agent_id: str, since: datetime, until: datetime) -> Tally:
        """The agent's attempts ended from `since`'s minute to `until`'s: one Query per range of window_ranges
        (eventually consistent), each item a few hundred bytes."""
        items: list[Attributes] = []
        for low, high in window_ranges(since, until):
            query: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
                "ExpressionAttributeValues": {":pk": s(f"AGENT#{agent_id}"), ":low": s(low), ":high": s(high)},
            }
            with translated_errors():
                pages = self._client.get_paginator("query").paginate(**query)
                items += [decode_item(item) for page in pages for item in page.get("Items", [])]
        return summed(items)
