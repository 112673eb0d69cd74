"""`opscore dashboard` in front of an Ops-Core API (here the local runtime, by --url, as a deployed stack's would be):
the dashboard's files, the API forwarded on the same origin, and the log view for admin keys only."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from opscore_tools.dashboard.proxy import Upstream
from tests.conftest import REPO
from tests.e2e.conftest import Api, Contract, LocalProcess
from tests.e2e.test_local_cli import run_cli
from tests.e2e.test_sessions_over_http import Operator

STARTUP_TIMEOUT_SECONDS = 30


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str  # http://127.0.0.1:<port>

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


def start_dashboard(*args: str) -> Served:
    """`opscore dashboard --port 0 ...`, once it says where it listens (its first line); a process that says nothing
    for STARTUP_TIMEOUT_SECONDS is killed and fails the test rather than hanging the run."""
    executable = Path(sys.executable).with_name("opscore")
    process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [str(executable), "dashboard", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = first_line(process, STARTUP_TIMEOUT_SECONDS)
    found = re.match(r"^Ops-Core dashboard on (http://127\.0\.0\.1:\d+)/ui/ for ", first)
    if found is None:
        process.kill()
        raise AssertionError(f"opscore dashboard said {first!r}")
    return Served(process, found.group(1))


def first_line(process: subprocess.Popen[str], timeout_seconds: float) -> str:
    """The process's first line of output, read on a thread so that a stall ends in `timeout_seconds`."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        lines.put(process.stdout.readline())

    threading.Thread(target=pump, daemon=True).start()
    try:
        return lines.get(timeout=timeout_seconds)
    except queue.Empty:
        process.kill()
        raise AssertionError(f"opscore dashboard said nothing for {timeout_seconds}s") from None


@pytest.fixture(scope="module")
def dashboard(local_ops_core: LocalProcess | None) -> Iterator[Served]:
    if local_ops_core is None:
        pytest.skip("the log view reads the local runtime's log file")
    served = start_dashboard("--url", local_ops_core.base_url, "--log-file", str(local_ops_core.log_path))
    yield served
    assert served.stop() == 0, "Ctrl-C stops opscore dashboard cleanly"


def fetch(url: str, key: str | None = None, method: str = "GET", body: Any = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"X-API-Key": key} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - loopback

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as answer:
            return answer.status, dict(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def test_the_dashboard_is_served_and_the_api_forwarded_on_one_origin(dashboard: Served, api: Api) -> None:
    # the dashboard's files, and the root sends the browser to them
    status, headers, body = fetch(dashboard.url + "/ui/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b"Ops-Core dashboard" in body
    assert fetch(dashboard.url + "/")[0] == 308
    assert fetch(dashboard.url + "/somewhere-else")[0] == 404

    # the API as it answers: a read with the admin's key, a refusal without one, a body sent on (a new agent key)
    status, _, body = fetch(dashboard.url + "/v1/opscore/agents?limit=1", api.admin_key)
    assert (status, "items" in json.loads(body)) == (200, True)
    status, _, body = fetch(dashboard.url + "/v1/opscore/agents")
    assert status == 401
    agent_id = "e2e-dashboard-forwarded"
    status, _, body = fetch(dashboard.url + "/v1/opscore/keys", api.admin_key, "POST", {"agent_id": agent_id})
    assert (status, json.loads(body)["agent_id"]) == (201, agent_id)
    agent_key = json.loads(body)["api_key"]
    status, _, body = fetch(dashboard.url + f"/v1/opscore/agent/{agent_id}", agent_key, "PUT", {"name": "forwarded"})
    assert status == 201, body
    assert api.request("GET", f"/agent/{agent_id}", key=agent_key).body["name"] == "forwarded"


def test_it_answers_only_to_its_own_host_names(dashboard: Served, api: Api) -> None:
    # given a request from a page whose name resolves to 127.0.0.1 (DNS rebinding): refused, naming the Host
    port = urlsplit(dashboard.url).port
    request = urllib.request.Request(  # noqa: S310 - loopback
        dashboard.url + "/v1/opscore/agents", headers={"Host": f"attacker.example:{port}", "X-API-Key": api.admin_key}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - loopback
    assert refused.value.code == 403
    assert "Host" in json.loads(refused.value.read())["error"]["message"]

    # and by its own names, it answers
    for name in ("127.0.0.1", "localhost"):
        request = urllib.request.Request(  # noqa: S310 - loopback
            dashboard.url + "/v1/opscore/agents?limit=1", headers={"Host": f"{name}:{port}", "X-API-Key": api.admin_key}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
            assert answer.status == 200, name


def test_its_log_view_reads_the_log_file_for_admin_keys_only(dashboard: Served, api: Api) -> None:
    # given an agent that registered (a line in the local runtime's log)
    agent = Operator(api)

    # then an admin reads that line through the dashboard, and the agent's own key is refused
    query = f"/ui/api/logs?agent={agent.agent_id}&event=agent_registered"
    status, _, body = fetch(dashboard.url + query, api.admin_key)
    assert status == 200, body
    lines = json.loads(body)["lines"]
    assert [line["record"]["agent_id"] for line in lines] == [agent.agent_id]
    assert fetch(dashboard.url + query, agent.agent_key)[0] == 403
    assert fetch(dashboard.url + query)[0] == 401
    status, _, body = fetch(dashboard.url + "/ui/api/logs?since=soon", api.admin_key)
    assert (status, json.loads(body)["error"]["code"]) == (400, "validation_error")


def test_with_url_alone_the_log_view_says_it_has_no_source_rather_than_read_this_checkouts_logs(
    local_ops_core: LocalProcess | None, api: Api
) -> None:
    if local_ops_core is None:
        pytest.skip("the dashboard is started in front of the local runtime")
    # given opscore dashboard in front of an API by --url, with no --log-file
    served = start_dashboard("--url", local_ops_core.base_url)
    try:
        # when an admin reads the log view: a 503 saying what to pass, not another runtime's lines
        status, _, body = fetch(served.url + "/ui/api/logs?since=5m", api.admin_key)
        error = json.loads(body)["error"]
        assert (status, error["code"]) == (503, "logs_unavailable"), body
        assert error["message"] == "no log source for --url: pass --log-file or --stack"
    finally:
        assert served.stop() == 0


def test_the_local_runtime_serves_the_dashboard_and_its_log_view_to_admin_keys_only(
    local_ops_core: LocalProcess | None, api: Api
) -> None:
    if local_ops_core is None:
        pytest.skip("the dashboard is served by the local runtime")
    origin = local_ops_core.base_url.removesuffix("/v1/opscore")
    agent = Operator(api)
    status, headers, _ = fetch(origin + "/ui/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    logs = origin + "/ui/api/logs?since=5m"
    assert (fetch(logs)[0], fetch(logs, "not-a-key-anyone-issued")[0], fetch(logs, agent.agent_key)[0]) == (
        401,
        401,
        403,
    )
    assert fetch(logs, api.admin_key)[0] == 200


def test_bad_usage_is_exit_2() -> None:
    both = run_cli("dashboard", "--url", "http://127.0.0.1:1", "--stack", "opscore-dev")
    assert (both.returncode, "give --url or --stack, not both" in both.stderr) == (2, True), both.stderr
    not_http = run_cli("dashboard", "--url", "ftp://example")
    assert (not_http.returncode, "not an http(s) URL" in not_http.stderr) == (2, True), not_http.stderr


def test_a_dashboard_that_says_nothing_fails_the_start_instead_of_hanging_it() -> None:
    # given a process that never writes its first line
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdout=subprocess.PIPE, text=True)

    # when its first line is awaited: the wait ends with a failure, and the process is gone
    with pytest.raises(AssertionError, match="said nothing"):
        first_line(silent, timeout_seconds=0.5)
    assert silent.wait(timeout=30) != 0


def raw_exchange(origin: str, request: bytes) -> tuple[bytes, bytes]:
    """Send `request` as written on a new connection: the first answer's status line and body, then what else
    the server sends until it closes the connection (b"" for a connection it closed after the answer)."""
    host, port = urlsplit(origin).hostname, urlsplit(origin).port
    assert host is not None
    assert port is not None
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(request)
        answer = connection.makefile("rb")
        status = answer.readline().strip()
        length = 0
        while (header := answer.readline().strip()) != b"":
            name, _, value = header.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = answer.read(length)
        return status + b" " + body, answer.read()


@pytest.mark.parametrize(
    ("length_headers", "status", "code"),
    [
        (b"Content-Length: abc\r\n", b"400", "bad_request"),
        (b"Content-Length: -1\r\n", b"400", "bad_request"),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", b"400", "bad_request"),
        (b"Transfer-Encoding: chunked\r\n", b"411", "bad_request"),
    ],
)
@pytest.mark.parametrize("server", ["opscore dashboard", "opscore local"])
def test_a_body_length_that_cannot_be_trusted_is_refused_and_the_connection_closed(
    server: str,
    length_headers: bytes,
    status: bytes,
    code: str,
    dashboard: Served,
    local_ops_core: LocalProcess,
    contract: Contract,
) -> None:
    # given either server, and a request whose body's length cannot be known from its headers
    origin = dashboard.url if server == "opscore dashboard" else local_ops_core.base_url.removesuffix("/v1/opscore")
    head = b"POST /v1/opscore/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n" + length_headers
    request = head + b"\r\n{}\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"

    # when it is sent: a clear 4xx naming the header, and nothing after it is read as another request
    answer, after = raw_exchange(origin, request)
    assert answer.startswith(b"HTTP/1.1 " + status), answer
    envelope = json.loads(answer[answer.index(b"{") :])
    contract.validate(envelope, "#/components/schemas/Error")  # its code one the document lists
    assert envelope["error"]["code"] == code, envelope
    assert b"Content-Length" in answer, answer
    assert after == b"", "the connection is closed after the refusal"


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """An 'API' on loopback that reads each request and closes the connection without a word."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/opscore"
    listener.close()


def test_an_api_that_hangs_up_is_a_502_naming_it(hangs_up: str) -> None:
    # when a request is forwarded to an API that closes the connection instead of answering
    reply = Upstream(hangs_up).forward("GET", "/v1/opscore/agents", "", {"X-API-Key": "k"}, None)

    # then the browser gets a 502 in the API's error envelope, saying what happened
    assert reply.status == 502
    error = json.loads(reply.body)["error"]
    assert error["code"] == "bad_gateway"
    assert error["message"].startswith(f"cannot reach {hangs_up}: RemoteDisconnected")
