"""`opscore keys create|list|revoke|rotate|sync-usage`: manage API keys through the API, or directly in a stack's table.

Two ways to reach the keys:
- `--stack NAME` (or `--table NAME`): the deployed stack's table, with your own AWS credentials (how the first admin
  key of a new deployment is made: no key is ever baked into the template). With `--stack`, a new key also gets its
  API key in the stack's per-key usage plan; `--table` writes the table alone (with a warning: the stack refuses such
  a key until `opscore keys sync-usage --stack NAME` gives it its API key, as it does every key made before the
  stack had per-key limits).
- otherwise the API, with an admin key: `--url`/`--key`, their variables, else the local runtime of this checkout
  (the one rule of opscore_tools.target).

Exit codes: 0 done; 1 Ops-Core refused (unknown key 404, revoked or expired key 409), could not be reached, or the
stack was not found; 2 the command was used wrongly (a bad option, or a request the API answers 400).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Protocol
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from opscore_tools.fleet import ApiError, Connection, err, fail, get, out
from opscore_tools.target import KeyOption, UrlOption, target_or_exit

if TYPE_CHECKING:
    from opscore.keys.service import ApiKeys

keys_app = typer.Typer(
    help="Manage API keys: through the API (--url/--key, else the local runtime), or a deployed stack's table "
    "(--stack/--table, with your AWS credentials). Exit codes: 0 done, 1 refused or not found, 2 bad usage.",
    no_args_is_help=True,
)

CLI_CREATOR = "opscore-cli"
MAX_PAGES = 1000
DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

StackOption = Annotated[
    str | None,
    typer.Option(
        help="A deployed stack's name: write its table directly, with your AWS credentials.", show_default=False
    ),
]
TableOption = Annotated[
    str | None, typer.Option(help="The Ops-Core table name, instead of --stack.", show_default=False)
]
RegionOption = Annotated[str | None, typer.Option(help="AWS region (default: your AWS configuration's).")]
ExpiresAtOption = Annotated[
    str | None, typer.Option(help="When the key stops working: RFC 3339 with its offset.", show_default=False)
]
ExpiresInOption = Annotated[
    str | None,
    typer.Option(help="When the key stops working, from now: 90s, 30m, 12h, 30d.", show_default=False),
]


class Keys(Protocol):
    """What each command does, through the API or directly in the table."""

    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def list(self, agent_id: str | None) -> list[dict[str, Any]]: ...
    def revoke(self, key_id: str) -> None: ...
    def rotate(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]: ...


class UsageError(Exception):
    """A bad option or request (exit 2)."""


class Refused(Exception):
    """Ops-Core refused, or the stack cannot be found (exit 1)."""


class ApiKeysOverHttp:
    def __init__(self, where: Connection) -> None:
        self._where = where

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = send(self._where, "POST", "/keys", body)
        return answer

    def list(self, agent_id: str | None) -> list[dict[str, Any]]:
        query = {"limit": "100"} | ({"agent_id": agent_id} if agent_id else {})
        items: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            page = get(self._where, "/keys", query)
            items += page["items"]
            if "next_token" not in page:
                break
            query["next_token"] = page["next_token"]
        return items

    def revoke(self, key_id: str) -> None:
        send(self._where, "DELETE", f"/keys/{quote(key_id, safe='')}", None)

    def rotate(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = send(self._where, "POST", f"/keys/{quote(key_id, safe='')}/rotate", body)
        return answer


def send(where: Connection, method: str, path: str, body: dict[str, Any] | None) -> Any:
    """A request with a JSON body; ApiError for an error answer, or when Ops-Core cannot be reached (status 0)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-API-Key": where.key, "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(where.url + path, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the URL the user gave
            raw = response.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        try:
            problem = json.loads(error.read()).get("error", {})
        except ValueError:
            problem = {}
        raise ApiError(error.code, problem.get("code", "error"), problem.get("message", error.reason)) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ApiError(0, "unreachable", f"cannot reach Ops-Core at {where.url}: {reason}") from None


class KeysInTable:
    """The same commands on the table, as the keys function would run them (the library's ApiKeys)."""

    def __init__(self, service: ApiKeys) -> None:
        self._service = service

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        from opscore.keys.models import KeyRequest

        return self._service.create(_validated(KeyRequest, body), created_by=CLI_CREATOR).model_dump(mode="json")

    def list(self, agent_id: str | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = self._service.list(agent_id, 100, token)
            items += [item.model_dump(mode="json") for item in page.items]
            token = page.next_token
            if token is None:
                break
        return items

    def revoke(self, key_id: str) -> None:
        self._service.revoke(key_id, revoked_by=CLI_CREATOR)

    def rotate(self, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        from opscore.keys.models import RotateRequest

        rotated = self._service.rotate(key_id, _validated(RotateRequest, body), rotated_by=CLI_CREATOR)
        return rotated.model_dump(mode="json")


def _validated(model: Any, body: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate_json(json.dumps(body))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise UsageError(f"{where + ': ' if where else ''}{problem['msg']}") from None


def keys_of(url: str | None, key: str | None, stack: str | None, table: str | None, region: str | None) -> Keys:
    """The API, or the table of --stack/--table."""
    if stack is not None and table is not None:
        raise UsageError("give --stack or --table, not both")
    if stack is None and table is None:
        return ApiKeysOverHttp(Connection(*target_or_exit(url, key)))
    if url is not None or key is not None:
        raise UsageError("--stack and --table write the table directly: they take no --url or --key")
    from opscore_tools.stack import key_service

    try:
        return KeysInTable(key_service(stack=stack, table=table, region=region))
    except LookupError as error:
        raise Refused(str(error)) from None


def expiry(at: str | None, within: str | None, now: datetime | None = None, name: str = "expires") -> str | None:
    """--<name>-at as given, or --<name>-in from now as RFC 3339; None for neither."""
    if at is not None and within is not None:
        raise UsageError(f"give --{name}-at or --{name}-in, not both")
    if within is None:
        return at
    found = DURATION.fullmatch(within)
    if found is None:
        raise UsageError(f"--{name}-in must be a number and a unit (s, m, h, d), such as 30d")
    moment = (now or datetime.now(UTC)) + timedelta(seconds=int(found.group(1)) * UNIT_SECONDS[found.group(2)])
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def run(action: Any) -> Any:
    """The command's action, its failures as messages and exit codes rather than tracebacks."""
    from botocore.exceptions import BotoCoreError, ClientError

    from opscore.core.errors import OpsCoreError, ValidationFailed

    try:
        return action()
    except ApiError as error:
        raise fail(error) from None
    except UsageError as error:
        err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Refused as error:
        err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except OpsCoreError as error:
        err.print(f"[red]error:[/] {escape(error.message)} ({escape(error.code)})", soft_wrap=True)
        raise typer.Exit(2 if isinstance(error, ValidationFailed) else 1) from None
    except (ClientError, BotoCoreError) as error:  # AWS refused the operator's own credentials, or did not answer
        err.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(  # noqa: PLR0917 - a command's options are its parameters
    role: Annotated[str, typer.Option(help="admin, or agent (with --agent-id).")] = "agent",
    agent_id: Annotated[str | None, typer.Option(help="The agent the key acts for.", show_default=False)] = None,
    expires_at: ExpiresAtOption = None,
    expires_in: ExpiresInOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
    stack: StackOption = None,
    table: TableOption = None,
    region: RegionOption = None,
) -> None:
    """Create an API key; it is printed once (JSON), only its SHA-256 is stored.

    Exit codes: 0 created; 1 not reached or the stack not found; 2 bad usage or a request the API refuses (400).
    """

    def action() -> dict[str, Any]:
        body: dict[str, Any] = {"role": role} if role == "admin" else {"agent_id": agent_id}
        if role not in ("admin", "agent"):
            raise UsageError("--role must be admin or agent")
        if role == "agent" and agent_id is None:
            raise UsageError("an agent key needs --agent-id")
        if role == "admin" and agent_id is not None:
            raise UsageError("an admin key belongs to no agent: drop --agent-id")
        if (moment := expiry(expires_at, expires_in)) is not None:
            body["expires_at"] = moment
        created = keys_of(url, key, stack, table, region).create(body)
        warn_if_table_only(table)
        return created

    print(json.dumps(run(action), indent=2))


TABLE_ONLY_WARNING = (
    "[yellow]warning:[/] --table writes the table alone: it cannot know the stack's per-key usage plan, so a stack "
    "with per-key limits refuses this key (403 forbidden) until `opscore keys sync-usage --stack NAME` gives it its "
    "API key (or make keys with --stack instead)"
)


def warn_if_table_only(table: str | None) -> None:
    if table is not None:
        err.print(TABLE_ONLY_WARNING, soft_wrap=True)


@keys_app.command("sync-usage")
def keys_sync_usage(
    stack: Annotated[str, typer.Option(help="The deployed stack's name (or ARN).", show_default=False)],
    region: RegionOption = None,
) -> None:
    """Give every stored key that still works its API key in the stack's per-key usage plan; no secret changes.

    For keys made before the stack had per-key limits, or with --table: API Gateway refuses them (403 forbidden)
    until then. Safe to run again (keys that have their API key are left as they are). It reads the whole table once
    (a Scan, with your AWS credentials): a one-off migration, not a request path.

    Exit codes: 0 done; 1 the stack was not found or has no per-key usage plan, or AWS refused.
    """

    def action() -> tuple[int, int, str]:
        from opscore_tools.stack import usage_sync_service

        try:
            service, plan = usage_sync_service(stack, region)
        except LookupError as error:
            raise Refused(str(error)) from None
        synced = service.sync_usage()
        return len(synced.attached), synced.skipped, plan

    attached, skipped, plan = run(action)
    print(f"{attached} key{'' if attached == 1 else 's'} in usage plan {plan}; {skipped} revoked or expired skipped")


@keys_app.command("list")
def keys_list(  # noqa: PLR0917 - a command's options are its parameters
    agent_id: Annotated[str | None, typer.Option(help="Only this agent's keys.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as the API lists them.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
    stack: StackOption = None,
    table: TableOption = None,
    region: RegionOption = None,
) -> None:
    """List API keys (never the keys themselves): role, agent, created, expires, last used, revoked, rotated from.

    Exit codes: 0 listed; 1 refused, not reached or the stack not found; 2 bad usage.
    """
    items: list[dict[str, Any]] = run(lambda: keys_of(url, key, stack, table, region).list(agent_id))
    if as_json:
        print(json.dumps(items, indent=2))
        return
    out.print(keys_table(items))


def keys_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(items)} key{'' if len(items) == 1 else 's'}", title_justify="left")
    columns = ("KEY ID", "ROLE", "AGENT", "CREATED", "EXPIRES", "LAST USED", "REVOKED", "ROTATED FROM")
    for column in columns:
        table.add_column(column)
    for item in items:
        table.add_row(
            *(
                escape(str(item.get(name) or "-"))
                for name in (
                    "key_id",
                    "role",
                    "agent_id",
                    "created_at",
                    "expires_at",
                    "last_used_on",
                    "revoked_at",
                    "rotated_from",
                )
            ),
            style="dim" if item.get("revoked_at") else None,
        )
    return table


@keys_app.command("revoke")
def keys_revoke(  # noqa: PLR0917 - a command's options are its parameters
    key_id: Annotated[str, typer.Argument(help="The key_id printed when the key was created.")],
    url: UrlOption = None,
    key: KeyOption = None,
    stack: StackOption = None,
    table: TableOption = None,
    region: RegionOption = None,
) -> None:
    """Revoke an API key: refused from its next request on (within the authorizer cache's TTL in AWS).

    Exit codes: 0 revoked (or already); 1 no such key, not reached or the stack not found; 2 bad usage or key id.
    """
    run(lambda: keys_of(url, key, stack, table, region).revoke(key_id))
    print(f"revoked {key_id}")


@keys_app.command("rotate")
def keys_rotate(  # noqa: PLR0917 - a command's options are its parameters
    key_id: Annotated[str, typer.Argument(help="The key to replace.")],
    old_key_expires_at: Annotated[
        str | None, typer.Option(help="When the old key stops working (RFC 3339).", show_default=False)
    ] = None,
    old_key_expires_in: Annotated[
        str | None, typer.Option(help="When the old key stops working, from now: 1h, 7d.", show_default=False)
    ] = None,
    expires_at: ExpiresAtOption = None,
    expires_in: ExpiresInOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
    stack: StackOption = None,
    table: TableOption = None,
    region: RegionOption = None,
) -> None:
    """Make a new key for the same principal, printed once (JSON); the old key works on until it is revoked or
    expires (or until --old-key-expires-at/-in).

    Exit codes: 0 rotated; 1 no such key, a revoked or expired key (409), not reached; 2 bad usage or request.
    """

    def action() -> dict[str, Any]:
        body: dict[str, Any] = {}
        if (moment := expiry(expires_at, expires_in)) is not None:
            body["expires_at"] = moment
        if (grace := expiry(old_key_expires_at, old_key_expires_in, name="old-key-expires")) is not None:
            body["old_key_expires_at"] = grace
        rotated = keys_of(url, key, stack, table, region).rotate(key_id, body)
        warn_if_table_only(table)
        return rotated

    print(json.dumps(run(action), indent=2))
