"""End-to-end tier: HTTP against `opscore local` started for the session, every answer checked against the spec.

Set OPSCORE_E2E_URL (the ApiUrl output, ending in /v1/opscore) and OPSCORE_E2E_ADMIN_KEY to run the same tests
against a deployed stack instead.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import REPO

ADMIN_KEY = "e2e-admin-key-for-the-local-runtime"
# The shared runtimes answer hundreds of requests a second from one key (the matrix, the probes, the fuzzer): the
# per-key limit would make them 429s. It is tested on a runtime of its own (test_keys_over_http.py).
NO_PER_KEY_LIMIT = {"OPSCORE_LOCAL_PER_KEY_RATE": "0"}
STARTUP_TIMEOUT_SECONDS = 60
SPEC_URI = "urn:opscore:openapi"


class Contract:
    """docs/openapi.yaml as a validator: each answer's status must be documented and its body match the schema."""

    def __init__(self, path: Path) -> None:
        self.spec = yaml.safe_load(path.read_text())
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        template_schema = json.loads((path.parent / "workflow-template.schema.json").read_text())
        self._registry: Registry[Any] = Registry().with_resources(
            [(SPEC_URI, resource), (template_schema["$id"], Resource.from_contents(template_schema))]
        )
        self._templates = [
            (template, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"))
            for template in self.spec["paths"]
        ]

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        template = next((template for template, pattern in self._templates if pattern.match(path)), None)
        if template is None or method.lower() not in self.spec["paths"][template]:
            # Not a route: API Gateway's own not-found answer, which must still be an Ops-Core error.
            self.validate(body, "#/components/schemas/Error")
            return
        responses = self.spec["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {template} answered {status}, which docs/openapi.yaml omits"
        pointer = f"#/paths/{_escape(template)}/{method.lower()}/responses/{status}"
        response = responses[str(status)]
        if "$ref" in response:
            pointer = response["$ref"]
            response = self._resolve(pointer)
        if "content" not in response:
            assert body is None, f"{method} {template} {status} should have no body"
            return
        self.validate(body, f"{pointer}/content/application~1json/schema")

    def _resolve(self, pointer: str) -> dict[str, Any]:
        node: Any = self.spec
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return dict(node)

    def validate(self, body: Any, pointer: str) -> None:
        jsonschema.Draft202012Validator({"$ref": f"{SPEC_URI}{pointer}"}, registry=self._registry).validate(body)


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error_code(self) -> str | None:
        return self.body["error"]["code"] if isinstance(self.body, dict) and "error" in self.body else None


class Api:
    """A minimal HTTP client for the tests: JSON in and out, every answer held to the contract."""

    def __init__(self, base_url: str, admin_key: str, contract: Contract) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        self._host, self._port, self._prefix = parts.hostname or "", parts.port, parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self.admin_key = admin_key
        self._contract = contract

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Reply:
        sent_headers = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
        if key is not None:
            sent_headers["X-API-Key"] = key
        sent_headers.update(headers or {})
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        target = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        connection_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = connection_class(self._host, self._port, timeout=30)
        try:
            connection.request(method, target, body=payload, headers=sent_headers)
            response = connection.getresponse()
            data = response.read()
            reply = Reply(response.status, dict(response.getheaders()), json.loads(data) if data else None)
        finally:
            connection.close()
        self._contract.check(method, path, reply.status, reply.body)
        return reply

    def admin(self, method: str, path: str, **kwargs: Any) -> Reply:
        return self.request(method, path, key=self.admin_key, **kwargs)


@dataclass
class LocalProcess:
    process: subprocess.Popen[str]
    base_url: str
    admin_key: str
    log_path: Path
    lines: queue.Queue[str]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


def start_local(tmp: Path, env: dict[str, str] | None = None, *args: str) -> LocalProcess:
    """Start `opscore local --port 0` and wait (reading its output, not sleeping) until it says where it listens."""
    executable = Path(sys.executable).with_name("opscore")
    log_path = tmp / "local.jsonl"
    process = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [str(executable), "local", "--port", "0", "--log-file", str(log_path), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put("")  # end of output

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    base_url = admin_key = None
    while base_url is None or admin_key is None:
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_SECONDS)
        except queue.Empty:
            process.kill()
            raise RuntimeError(f"opscore local said nothing for {STARTUP_TIMEOUT_SECONDS}s: {seen}") from None
        if line == "" and process.poll() is not None:
            raise RuntimeError(f"opscore local exited with {process.returncode}: {seen}")
        seen.append(line)
        if found := re.match(r"^Ops-Core local runtime on (\S+)$", line):
            base_url = found.group(1)
        if found := re.match(r"^admin key: (\S+)", line):
            admin_key = found.group(1)
    return LocalProcess(process, base_url, admin_key, log_path, lines)


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract(REPO / "docs" / "openapi.yaml")


@pytest.fixture(scope="session")
def local_ops_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess | None]:
    if os.environ.get("OPSCORE_E2E_URL"):
        yield None
        return
    running = start_local(tmp_path_factory.mktemp("local"), {"OPSCORE_ADMIN_KEY": ADMIN_KEY, **NO_PER_KEY_LIMIT})
    yield running
    assert running.stop() == 0, "Ctrl-C stops opscore local cleanly"


@pytest.fixture(scope="session")
def api(local_ops_core: LocalProcess | None, contract: Contract) -> Api:
    if local_ops_core is None:
        return Api(os.environ["OPSCORE_E2E_URL"], os.environ["OPSCORE_E2E_ADMIN_KEY"], contract)
    return Api(local_ops_core.base_url, local_ops_core.admin_key, contract)
