"""Unit tests are pure: no sockets at all."""

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket()
    yield
    enable_socket()  # only for this tier: the end-to-end tier, in the same run, talks HTTP on loopback
