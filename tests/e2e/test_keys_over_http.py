"""API keys over HTTP against the local runtime: expiry, listing, rotation, revocation, each key's request limit, and
`opscore keys` against the runtime (--url/--key). Every answer is held to docs/openapi.yaml by the conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opscore.aws.pages import encode_page_token
from tests.conftest import REPO
from tests.e2e.conftest import Api, Contract, start_local

DEADLINE_SECONDS = 15


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def new_agent() -> str:
    return f"keys-{uuid.uuid4().hex[:8]}"


def test_a_key_created_to_expire_in_seconds_is_refused_once_it_has(api: Api) -> None:
    agent_id = new_agent()
    created = api.admin("POST", "/keys", body={"agent_id": agent_id, "expires_at": soon(2)})
    assert created.status == 201
    key = created.body["api_key"]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (reply := api.request("GET", f"/agent/{agent_id}", key=key)).status != 401:
        assert reply.status == 404, "before its expiry the key works (its agent is not registered yet)"
        assert time.monotonic() < deadline, "the key never expired"
        time.sleep(0.05)
    assert reply.error_code == "unauthorized"
    listed = api.admin("GET", "/keys", query={"agent_id": agent_id}).body["items"]
    assert [item["expires_at"] for item in listed] == [created.body["expires_at"]]


def test_a_past_expiry_is_a_400_naming_it(api: Api) -> None:
    reply = api.admin("POST", "/keys", body={"role": "admin", "expires_at": "2020-01-01T00:00:00Z"})
    assert (reply.status, reply.body["error"]["details"][0]["field"]) == (400, "expires_at")


def test_listing_rotating_and_revoking_keys(api: Api) -> None:
    agent_id = new_agent()
    old = api.admin("POST", "/keys", body={"agent_id": agent_id}).body
    assert api.request("PUT", f"/agent/{agent_id}", key=old["api_key"], body={"name": "rotating"}).status in (200, 201)

    rotated = api.admin("POST", f"/keys/{old['key_id']}/rotate", body={"old_key_expires_at": soon(3600)})
    assert rotated.status == 201
    new = rotated.body
    assert (new["rotated_from"], new["agent_id"], new["role"]) == (old["key_id"], agent_id, "agent")
    for key in (old["api_key"], new["api_key"]):
        assert api.request("GET", f"/agent/{agent_id}", key=key).status == 200, "both work during the grace period"

    listed = api.admin("GET", "/keys", query={"agent_id": agent_id, "limit": "1"})
    assert listed.status == 200
    first = listed.body["items"]
    second = api.admin("GET", "/keys", query={"agent_id": agent_id, "next_token": listed.body["next_token"]}).body
    by_id = {item["key_id"]: item for item in first + second["items"]}
    assert list(by_id) == [old["key_id"], new["key_id"]]
    assert by_id[old["key_id"]]["last_used_on"] == datetime.now(UTC).date().isoformat()
    assert by_id[new["key_id"]]["rotated_from"] == old["key_id"]
    assert old["api_key"] not in json.dumps(first + second["items"])

    assert api.admin("DELETE", f"/keys/{old['key_id']}").status == 204
    assert api.request("GET", f"/agent/{agent_id}", key=old["api_key"]).status == 401
    assert api.request("GET", f"/agent/{agent_id}", key=new["api_key"]).status == 200
    again = api.admin("POST", f"/keys/{old['key_id']}/rotate")
    assert (again.status, again.error_code) == (409, "key_inactive")
    assert api.admin("POST", "/keys/00000000000000ff/rotate").status == 404
    assert api.request("GET", "/keys", key=new["api_key"]).status == 403, "an agent key lists no keys"
    assert api.request("POST", f"/keys/{new['key_id']}/rotate", key=new["api_key"]).status == 403


def test_one_key_over_its_limit_is_throttled_while_another_key_passes(tmp_path: Path, contract: Contract) -> None:
    # A bucket that refills one request every 100 s: nothing comes back during the test, however slow the machine.
    limits = {"OPSCORE_LOCAL_PER_KEY_RATE": "0.01", "OPSCORE_LOCAL_PER_KEY_BURST": "3"}
    running = start_local(tmp_path, {"OPSCORE_ADMIN_KEY": "e2e-admin-key-for-the-limits", **limits})
    try:
        api = Api(running.base_url, running.admin_key, contract)
        keys = [api.admin("POST", "/keys", body={"agent_id": f"limited-{n}"}).body for n in range(2)]
        busy, quiet = keys
        answers = [api.request("GET", "/agent/limited-0", key=busy["api_key"]) for _ in range(6)]
        statuses = [answer.status for answer in answers]
        assert statuses == [404] * 3 + [429] * 3, "the burst passes (the agent is not registered: 404), then 429s"
        throttled = answers[3:]
        assert throttled[0].error_code == "throttled"
        assert int(throttled[0].headers["Retry-After"]) >= 60, "the bucket refills a request every 100 s"
        assert api.request("GET", "/agent/limited-1", key=quiet["api_key"]).status == 404, "another key passes"
        assert api.request("GET", "/health").status == 200, "no key, no per-key limit"
    finally:
        assert running.stop() == 0


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("opscore")
    return subprocess.run(  # noqa: S603 - our own command
        [str(executable), "keys", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_keys_cli_against_the_local_runtime(api: Api) -> None:
    env = {"OPSCORE_URL": api.base_url, "OPSCORE_API_KEY": api.admin_key}
    agent_id = new_agent()
    created = run_cli("create", "--agent-id", agent_id, "--expires-in", "30d", env=env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["expires_at"] is not None

    rotated = run_cli("rotate", key["key_id"], "--old-key-expires-in", "1h", env=env)
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["rotated_from"] == key["key_id"]

    listed = run_cli("list", "--agent-id", agent_id, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [item["key_id"] for item in json.loads(listed.stdout)] == [key["key_id"], new["key_id"]]
    table = run_cli("list", "--agent-id", agent_id, env={**env, "COLUMNS": "200"})
    assert table.returncode == 0
    assert new["key_id"] in table.stdout
    assert key["api_key"] not in table.stdout + listed.stdout

    revoked = run_cli("revoke", key["key_id"], "--url", api.base_url, "--key", api.admin_key, env={})
    assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked {key['key_id']}")
    inactive = run_cli("rotate", key["key_id"], env=env)
    assert (inactive.returncode, "key_inactive" in inactive.stderr) == (1, True)
    unknown = run_cli("revoke", "00000000000000ff", env=env)
    assert unknown.returncode == 1
    malformed = run_cli("revoke", "nope", env=env)
    assert malformed.returncode == 2
    refused = run_cli("list", env={**env, "OPSCORE_API_KEY": new["api_key"]})
    assert (refused.returncode, "forbidden" in refused.stderr) == (1, True)


def test_a_forged_page_token_past_the_listing_is_a_400_naming_it(api: Api) -> None:
    for agent_id in (None, new_agent()):
        query = {"next_token": encode_page_token({"keys_sk": "~~" if agent_id is None else f"agent#{agent_id}#~~"})}
        if agent_id is not None:
            query["agent_id"] = agent_id
        reply = api.admin("GET", "/keys", query=query)
        assert (reply.status, reply.body["error"]["details"][0]["field"]) == (400, "next_token"), reply.body
