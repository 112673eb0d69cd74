"""The one retry loop: how many attempts, and the pauses between them."""

from __future__ import annotations

import pytest

from opscore.core.retry import Backoff, attempts


def test_attempts_are_bounded_and_pause_only_between_them() -> None:
    pauses: list[float] = []
    assert list(attempts(4, Backoff(0.1, 0.1), sleep=pauses.append)) == [0, 1, 2, 3]
    assert pauses == pytest.approx([0.1, 0.2, 0.3])


def test_exponential_backoff_doubles_and_stays_within_its_jitter() -> None:
    pauses: list[float] = []
    for _ in attempts(4, Backoff(1.0, 1.5, exponential=True), sleep=pauses.append):
        pass
    for attempt, pause in enumerate(pauses, start=1):
        assert 2 ** (attempt - 1) * 1.0 <= pause <= 2 ** (attempt - 1) * 1.5


def test_a_loop_left_early_sleeps_no_more() -> None:
    pauses: list[float] = []
    for attempt in attempts(5, Backoff(0.1, 0.2), sleep=pauses.append):
        if attempt == 1:
            break
    assert len(pauses) == 1


def test_no_backoff_means_no_pause() -> None:
    pauses: list[float] = []
    assert list(attempts(3, sleep=pauses.append)) == [0, 1, 2]
    assert pauses == []
