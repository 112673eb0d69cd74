"""The tooling's two HTTP servers below their routes (`opscore local`, and `opscore dashboard` in front of it): a
burst of connections, what http.server refuses itself, a body that never comes whole, and clients that hang up."""

from __future__ import annotations

import json
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from opscore_tools.dashboard.proxy import DashboardServer
from opscore_tools.logs.sources import LogSource
from tests.e2e.conftest import LocalProcess, start_local

# Short, so a stalled body is answered within the test's patience (the default is opscore_tools.serving's).
READ_TIMEOUT = 1.0
BURST = 50
DEADLINE_SECONDS = 30.0
SERVERS = ["opscore local", "opscore dashboard"]


@pytest.fixture(scope="module")
def local_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    running = start_local(tmp_path_factory.mktemp("servers"), {}, "--read-timeout", str(READ_TIMEOUT))
    yield running
    assert running.stop() == 0


def _no_log_source() -> LogSource:
    raise AssertionError("these tests never read the log view")


@pytest.fixture(scope="module")
def dashboard(local_runtime: LocalProcess) -> Iterator[DashboardServer]:
    # In this process, so that what its threads print is what capfd sees.
    server = DashboardServer(local_runtime.base_url, _no_log_source, read_timeout=READ_TIMEOUT)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=SERVERS)
def address(request: pytest.FixtureRequest, local_runtime: LocalProcess, dashboard: DashboardServer) -> tuple[str, int]:
    url = local_runtime.base_url if request.param == "opscore local" else dashboard.url
    host, _, port = url.removeprefix("http://").split("/", 1)[0].partition(":")
    return host, int(port)


def exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes, bytes]:
    """Send `request` on a new connection: the answer's status, headers and body, then whatever else comes until the
    server closes the connection (b"" when it closes right after the answer)."""
    with socket.create_connection(address, timeout=DEADLINE_SECONDS) as connection:
        connection.sendall(request)
        answer = connection.makefile("rb")
        status = int(answer.readline().split()[1])
        headers: dict[str, str] = {}
        while (line := answer.readline().strip()) != b"":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = answer.read(int(headers.get("content-length", "0")))
        return status, headers, body, answer.read()


def assert_error_envelope(headers: dict[str, str], body: bytes, code: str) -> None:
    assert headers["content-type"] == "application/json", headers
    envelope = json.loads(body)
    assert envelope["error"]["code"] == code, envelope
    assert envelope["error"]["message"], envelope
    assert envelope["request_id"], envelope


def test_a_burst_of_simultaneous_connections_is_all_answered(address: tuple[str, int]) -> None:
    # given 50 clients that connect at the same moment
    start = threading.Barrier(BURST)

    def one() -> int:
        start.wait(timeout=DEADLINE_SECONDS)
        return exchange(address, b"GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[0]

    # then every one of them is answered (none reset for want of room in the listen backlog)
    with ThreadPoolExecutor(BURST) as pool:
        statuses = list(pool.map(lambda _: one(), range(BURST)))
    assert statuses == [200] * BURST


def test_connections_wait_in_the_listen_backlog_until_the_server_accepts_them(local_runtime: LocalProcess) -> None:
    # given a server listening but not accepting yet (as when its threads are all busy)
    server = DashboardServer(local_runtime.base_url, _no_log_source)
    host, _, port = server.url.removeprefix("http://").partition(":")
    clients = [socket.socket() for _ in range(BURST)]
    try:
        # when 50 clients connect at once: the kernel completes every handshake and holds them (a backlog of 5
        # drops the others' SYNs, again at each retry, for as long as nothing is accepted)
        for client in clients:
            client.setblocking(False)
            client.connect_ex((host, int(port)))
        pending = set(clients)
        deadline = time.monotonic() + DEADLINE_SECONDS / 3
        while pending and time.monotonic() < deadline:
            _, connected, _ = select.select([], list(pending), [], 0.05)
            pending.difference_update(connected)
        assert len(pending) == 0, f"{len(pending)} of {BURST} connections found no room in the listen backlog"
        assert all(client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for client in clients)

        # then, once it serves, each is answered
        server.start()
        for client in clients:
            client.setblocking(True)
            client.settimeout(DEADLINE_SECONDS)
            client.sendall(b"GET /ui/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert [client.makefile("rb").readline().split()[1] for client in clients] == [b"200"] * BURST
    finally:
        for client in clients:
            client.close()
        server.stop()


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        # a method no route takes: the API's own "no such route" (API Gateway's answer), not http.server's 501 page
        (b"TRACE /v1/opscore/health HTTP/1.1", 404, "not_found"),
        # a 100 KB path: http.server's 414, in the envelope
        (b"GET /v1/opscore/" + b"a" * 100_000 + b" HTTP/1.1", 414, "bad_request"),
        # more headers than http.server reads (100)
        (b"GET /v1/opscore/health HTTP/1.1" + b"\r\nX-Many: 1" * 101, 431, "bad_request"),
    ],
)
def test_what_http_server_refuses_itself_is_answered_in_the_error_envelope(
    address: tuple[str, int], request_line: bytes, status: int, code: str
) -> None:
    answered, headers, body, _ = exchange(address, request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
    assert answered == status
    assert_error_envelope(headers, body, code)


def test_a_body_shorter_than_its_content_length_is_a_400_after_the_read_timeout(address: tuple[str, int]) -> None:
    # given a request that declares 100 bytes of body and sends 2, then nothing (the connection left open)
    request = b"POST /v1/opscore/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    request += b"Content-Length: 100\r\n\r\n{}"

    # when the server's read timeout passes: a 400 naming the Content-Length, and the connection closed
    status, headers, body, after = exchange(address, request)
    assert status == 400
    assert_error_envelope(headers, body, "bad_request")
    assert "Content-Length" in json.loads(body)["error"]["message"]
    assert after == b""


def test_a_body_cut_short_by_the_client_closing_its_side_is_a_400(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=DEADLINE_SECONDS) as connection:
        connection.sendall(b"POST /v1/opscore/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{}")
        connection.shutdown(socket.SHUT_WR)
        answer = connection.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b'"bad_request"' in answer


def hang_up_mid_answer(address: tuple[str, int]) -> None:
    """Ask for the dashboard's page, then reset the connection (SO_LINGER 0) before its answer is written."""
    connection = socket.create_connection(address, timeout=DEADLINE_SECONDS)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.sendall(b"GET /ui/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    connection.close()


def request_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if "process_request_thread" in thread.name]


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback_on_the_dashboards_console(
    dashboard: DashboardServer, capfd: pytest.CaptureFixture[str]
) -> None:
    host, _, port = dashboard.url.removeprefix("http://").partition(":")
    for _ in range(5):
        hang_up_mid_answer((host, int(port)))
    # once every connection's thread has ended (its error handled or printed), nothing was printed
    deadline = time.monotonic() + DEADLINE_SECONDS
    while request_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not request_threads()
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback_on_the_local_runtimes_console(
    local_runtime: LocalProcess,
) -> None:
    host, _, port = local_runtime.base_url.removeprefix("http://").split("/", 1)[0].partition(":")
    for _ in range(5):
        hang_up_mid_answer((host, int(port)))
    # an answered request after them: their threads had the time to print, had they anything to print
    assert exchange((host, int(port)), b"GET /v1/opscore/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 200
    printed: list[str] = []
    while True:
        try:
            printed.append(local_runtime.lines.get_nowait())
        except queue.Empty:
            break
    assert not [line for line in printed if "Traceback" in line or "BrokenPipe" in line or "ConnectionReset" in line]
