"""Which Ops-Core a CLI command talks to: the one rule every command that calls the API shares.

In order:
1. `--stack NAME` (optionally `--region`): the deployed stack's `ApiUrl` output; the key must be given (`--key` or
   `OPSCORE_API_KEY`), since a deployed stack's admin key is never stored anywhere the CLI could read it.
2. `--url`, else `OPSCORE_URL`: that API, with `--key`, else `OPSCORE_API_KEY` (required).
3. Otherwise the local runtime started from this checkout (`opscore local` / `make run`), which records its URL and
   admin key under `.opscore/runtimes/` while it runs (a file readable only by its user, removed when it stops); a
   `--key` or `OPSCORE_API_KEY`, when given, replaces the recorded admin key.
A flag beats its environment variable; `--url` with `--stack` is a usage error. A URL may be given with or without
the `/v1/opscore` base path: the resolved base URL always ends with it.

Commands use `resolve_target` (errors as `TargetError`, carrying the exit code: 2 for bad usage, 1 for what is
missing) or `target_or_exit` (prints the error and exits). The local runtime writes its record with
`record_runtime` and removes it with `forget_runtime`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

API_BASE_PATH = "/v1/opscore"
URL_ENV = "OPSCORE_URL"
KEY_ENV = "OPSCORE_API_KEY"
RUNTIMES_DIR = Path(".opscore") / "runtimes"
API_URL_OUTPUT = "ApiUrl"

USAGE = 2
MISSING = 1

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help=f"Ops-Core's API URL (e.g. http://127.0.0.1:3000); default ${URL_ENV}, else the local runtime.",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help=f"API key sent as X-API-Key; default ${KEY_ENV}, else the local runtime's admin key.",
        show_default=False,
    ),
]
ApiStackOption = Annotated[
    str | None,
    typer.Option(
        "--stack", help="A deployed stack's name: its ApiUrl output is the URL (--key required).", show_default=False
    ),
]
ApiRegionOption = Annotated[
    str | None, typer.Option("--region", help="AWS region of --stack (default: your AWS configuration's).")
]


class Target(NamedTuple):
    """Where to send requests: the API base URL (ending in /v1/opscore) and the key for X-API-Key."""

    base_url: str
    api_key: str


class TargetError(Exception):
    """Ops-Core cannot be found from the options given; `exit_code` is 2 for bad usage, 1 for what is missing."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class RuntimeRecord:
    """What a running `opscore local` writes under .opscore/runtimes/<pid>.json."""

    url: str
    admin_key: str
    pid: int
    log_file: str
    started_at: str


def resolve_target(
    url: str | None = None,
    key: str | None = None,
    stack: str | None = None,
    region: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Target:
    """The (base_url, api_key) the options, the environment or the local runtime's record name; see the module doc."""
    env = os.environ if environ is None else environ
    key = key or env.get(KEY_ENV) or None
    if stack is not None and url is not None:
        raise TargetError("give --url or --stack, not both", USAGE)
    if stack is not None:
        if key is None:
            raise TargetError(f"a deployed stack needs its API key: pass --key or set {KEY_ENV}", USAGE)
        return Target(api_url_of_stack(stack, region), key)
    url = url or env.get(URL_ENV) or None
    if url is not None:
        if key is None:
            raise TargetError(f"--url (or {URL_ENV}) needs an API key: pass --key or set {KEY_ENV}", USAGE)
        return Target(normalize_url(url), key)
    record = running_runtime(cwd)
    if record is None:
        where = checkout_root(cwd) / RUNTIMES_DIR
        raise TargetError(
            f"no Ops-Core local runtime is running from this checkout (nothing live in {where}): start one with "
            f"`opscore local` (or `make run`), or pass --url and --key (or {URL_ENV} and {KEY_ENV}), or --stack NAME",
            MISSING,
        )
    return Target(normalize_url(record.url), key or record.admin_key)


def target_or_exit(url: str | None, key: str | None, stack: str | None = None, region: str | None = None) -> Target:
    """`resolve_target` for a typer command: a clear error on stderr and the exit code instead of a traceback."""
    try:
        return resolve_target(url, key, stack, region)
    except TargetError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(error.exit_code) from None


def normalize_url(url: str) -> str:
    """The API base URL: no trailing slash, ending in /v1/opscore (added when the URL names only the host)."""
    if not url.startswith(("http://", "https://")):
        raise TargetError(f"not an http(s) URL: {url!r}", USAGE)
    url = url.rstrip("/")
    return url if url.endswith(API_BASE_PATH) else url + API_BASE_PATH


def api_url_of_stack(stack: str, region: str | None = None) -> str:
    """The `ApiUrl` output of a deployed Ops-Core stack."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.client("cloudformation", region_name=region)
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise TargetError(f"stack {stack}: {error.response['Error'].get('Message', 'not found')}", MISSING) from None
    except BotoCoreError as error:
        raise TargetError(f"stack {stack}: {error}", MISSING) from None
    for output in stacks[0].get("Outputs", []):
        if output.get("OutputKey") == API_URL_OUTPUT:
            return normalize_url(output["OutputValue"])
    raise TargetError(f"stack {stack} has no {API_URL_OUTPUT} output; is it an Ops-Core stack?", MISSING)


def record_runtime(record: RuntimeRecord, cwd: Path | None = None) -> Path:
    """Write the runtime's record, readable only by its user (directory 0700, file 0600), atomically; remove the
    records of runtimes that are gone."""
    directory = (cwd or Path.cwd()) / RUNTIMES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for stale in directory.glob("*.json"):  # records of runtimes that did not stop cleanly (killed)
        found = _read_record(stale)
        if found is not None and not _alive(found.pid):
            forget_runtime(stale)
    path = directory / f"{record.pid}.json"
    partial = directory / f".{record.pid}.json.partial"
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(record.__dict__, file)
    partial.replace(path)
    return path


def forget_runtime(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def checkout_root(start: Path | None = None) -> Path:
    """The folder a local runtime of this checkout keeps its records in: the nearest of `start` (default: the working
    directory) and its parents that has `.opscore` or is a git checkout, so a command run from a subfolder finds it."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".opscore").is_dir() or (folder / ".git").exists():
            return folder
    return here


def running_runtime(cwd: Path | None = None) -> RuntimeRecord | None:
    """The most recently started local runtime of this checkout that is still running (stale records are ignored)."""
    directory = checkout_root(cwd) / RUNTIMES_DIR
    records = [record for path in sorted(directory.glob("*.json")) if (record := _read_record(path)) is not None]
    live = [record for record in records if _alive(record.pid)]
    return max(live, key=lambda record: record.started_at, default=None)


def _read_record(path: Path) -> RuntimeRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RuntimeRecord(
            url=str(data["url"]),
            admin_key=str(data["admin_key"]),
            pid=int(data["pid"]),
            log_file=str(data.get("log_file", "")),
            started_at=str(data.get("started_at", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process has that pid now: the runtime that wrote the record is gone
    return True
