"""The `opscore` command: the local runtime and operator tools. Developer tooling; never shipped in a Lambda."""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from opscore_tools.fleet import agent_command, agents_command
from opscore_tools.keys_cli import keys_app
from opscore_tools.logs.command import logs as logs_command
from opscore_tools.serving import READ_TIMEOUT_SECONDS
from opscore_tools.target import ApiRegionOption, ApiStackOption, KeyOption, UrlOption, target_or_exit

if TYPE_CHECKING:
    from collections.abc import Callable

    from opscore.workflows.templates import WorkflowTemplate
    from opscore_tools.local.template import Throttle
    from opscore_tools.logs.sources import LogSource

app = typer.Typer(help="Ops-Core: lifecycle and workflow service for AI agents.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True, highlight=False)
app.command("agents")(agents_command)
app.command("agent")(agent_command)
app.command("logs", no_args_is_help=False)(logs_command)
ReadTimeoutOption = Annotated[
    float,
    typer.Option(
        min=0.1,
        help="Seconds a connection may send nothing (mid-request, or between requests) before a body cut short is "
        "answered 400 and the connection closed.",
    ),
]


@app.command()
def local(  # noqa: PLR0917 - a command's options are its parameters
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 3000,
    template: Annotated[Path, typer.Option(help="The SAM template whose routes and functions to serve.")] = Path(
        "template.yaml"
    ),
    log_file: Annotated[
        Path | None, typer.Option(help="JSON-lines log file (default: .opscore/logs/local-<time>.jsonl).")
    ] = None,
    schedule_every: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Run scheduled functions (the health sweep) every N seconds instead of the template's rate."
        ),
    ] = None,
    per_key_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            envvar="OPSCORE_LOCAL_PER_KEY_RATE",
            help="Requests a second each API key may make (default: the template's PerKeyRateLimit; 0: no limit).",
            show_default=False,
        ),
    ] = None,
    per_key_burst: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="OPSCORE_LOCAL_PER_KEY_BURST",
            help="Requests each API key may make at once (default: the template's PerKeyBurstLimit).",
            show_default=False,
        ),
    ] = None,
    *,
    read_timeout: ReadTimeoutOption = READ_TIMEOUT_SECONDS,
) -> None:
    """Serve the Ops-Core API locally: real handlers and authorizer, in-process DynamoDB (moto). Ctrl-C stops it.

    The admin key is $OPSCORE_ADMIN_KEY (at least 16 characters) or, when unset, generated and printed.
    Each key is limited as the template's per-key usage plan limits it in AWS (429 with Retry-After beyond it).
    """
    from opscore.core.errors import OpsCoreError
    from opscore_tools.local.server import LocalOpsCore
    from opscore_tools.target import RuntimeRecord, forget_runtime, record_runtime

    if not template.is_file():
        console.print(
            f"[red]error:[/] no SAM template at {template} (run from the Ops-Core checkout, or pass --template)"
        )
        raise typer.Exit(2)
    log_path = log_file or Path(".opscore/logs") / f"local-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl"
    runtime = LocalOpsCore(
        template,
        log_path.resolve(),
        host=host,
        port=port,
        schedule_seconds=schedule_every,
        per_key_throttle=_per_key_throttle(template, per_key_rate, per_key_burst),
        read_timeout=read_timeout,
    )
    try:
        admin = runtime.start(os.environ.get("OPSCORE_ADMIN_KEY") or None)
    except OSError as error:
        console.print(f"[red]error:[/] cannot listen on {host}:{port}: {error.strerror}")
        raise typer.Exit(1) from None
    except OpsCoreError as error:
        console.print(f"[red]error:[/] OPSCORE_ADMIN_KEY: {error.message}")
        raise typer.Exit(2) from None
    except ValueError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    # Other commands (`opscore logs`, ...) find this runtime, its admin key and its log file from this record, written
    # before the URL is printed so that whoever reads the URL can already use them.
    try:
        record: Path | None = record_runtime(
            RuntimeRecord(
                url=f"{runtime.url}/v1/opscore",
                admin_key=admin.value,
                pid=os.getpid(),
                log_file=str(runtime.sink.path),
                started_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            )
        )
    except OSError as error:
        record = None
        console.print(f"[yellow]warning:[/] cannot record this runtime under .opscore/runtimes: {error.strerror}")
    key_note = "generated; set OPSCORE_ADMIN_KEY to choose one" if admin.generated else "from OPSCORE_ADMIN_KEY"
    # Plain lines on stdout, flushed: scripts and tests read the URL and key from here.
    print(f"Ops-Core local runtime on {runtime.url}/v1/opscore", flush=True)
    print(f"admin key: {admin.value} ({key_note})", flush=True)
    print(f"dashboard: {runtime.url}/ui/ (sign in with the admin key)", flush=True)
    print(f"logs: {runtime.sink.path}", flush=True)
    print(f"routes: {len(runtime.template.routes)} from {template}; Ctrl-C stops", flush=True)

    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        if record is not None:
            forget_runtime(record)
    runtime.stop()
    print("stopped", flush=True)


def _per_key_throttle(template: Path, rate: float | None, burst: int | None) -> Throttle | None:
    """The per-key limit the flags name, the template's for what they leave out; None: the template's own."""
    from opscore_tools.local.template import Throttle, load_template

    if rate is None and burst is None:
        return None
    planned = load_template(template).per_key_throttle or Throttle(rate=0, burst=1)
    return Throttle(rate=planned.rate if rate is None else rate, burst=planned.burst if burst is None else burst)


@app.command()
def dashboard(
    url: Annotated[
        str | None,
        typer.Option(help="Ops-Core's API URL (default: the local runtime of this checkout).", show_default=False),
    ] = None,
    stack: ApiStackOption = None,
    region: ApiRegionOption = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 3001,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help="The log view's JSON-lines file (default: the local runtime's; --stack reads CloudWatch; "
            "with --url the log view needs this or answers 503)."
        ),
    ] = None,
    *,
    read_timeout: ReadTimeoutOption = READ_TIMEOUT_SECONDS,
) -> None:
    """Serve the web dashboard on 127.0.0.1 in front of Ops-Core: a deployed stack (--stack), a URL, or the local
    runtime. Ctrl-C stops it.

    The browser signs in with an API key (kept for the tab only) and talks to this address alone: /ui is the
    dashboard, /v1/opscore/* is forwarded to the API. The log view reads what `opscore logs` reads (CloudWatch with
    your AWS credentials for --stack, else the log file; with --url only --log-file) and is for admin keys only.
    `opscore local` serves the same dashboard at its own /ui.
    """
    from opscore_tools.dashboard.proxy import DashboardServer
    from opscore_tools.target import TargetError, api_url_of_stack, normalize_url, running_runtime

    try:
        if stack is not None and url is not None:
            raise TargetError("give --url or --stack, not both", 2)
        if stack is not None:
            api_url = api_url_of_stack(stack, region)
        elif url is not None:
            api_url = normalize_url(url)
        elif (record := running_runtime()) is not None:
            api_url = normalize_url(record.url)
        else:
            raise TargetError("no Ops-Core local runtime is running from this checkout: pass --url or --stack", 1)
    except TargetError as error:
        console.print(f"[red]error:[/] {escape(error.message)}")
        raise typer.Exit(error.exit_code) from None

    log_source, follow_seconds, source_flags = _dashboard_logs(url, stack, region, log_file)
    try:
        server = DashboardServer(
            api_url,
            log_source,
            port=port,
            follow_seconds=follow_seconds,
            source_flags=source_flags,
            read_timeout=read_timeout,
        )
    except OSError as error:
        console.print(f"[red]error:[/] cannot listen on 127.0.0.1:{port}: {error.strerror}")
        raise typer.Exit(1) from None
    server.start()
    print(f"Ops-Core dashboard on {server.url}/ui/ for {api_url}; Ctrl-C stops", flush=True)
    stop = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    stop.wait()
    server.stop()
    print("stopped", flush=True)


def _dashboard_logs(
    url: str | None, stack: str | None, region: str | None, log_file: Path | None
) -> tuple[Callable[[], LogSource], float, str]:
    """What the dashboard's log view reads (built at its first read), how often its follow mode re-reads, and the
    options `opscore logs` needs to read the same (shown with the view's empty state)."""
    from opscore_tools.dashboard.web import FOLLOW_SECONDS, STACK_FOLLOW_SECONDS
    from opscore_tools.logs.local_file import LocalFile, default_log_file
    from opscore_tools.logs.sources import SourceError

    def log_source() -> LogSource:
        if log_file is not None:
            return LocalFile(log_file)
        if stack is not None:
            from opscore_tools.logs.stack import stack_logs

            return stack_logs(stack, region, timeout_seconds=60.0, progress=None)
        if url is not None:  # this checkout's log file is not that API's
            raise SourceError("no log source for --url: pass --log-file or --stack")
        return LocalFile(default_log_file())

    if log_file is not None:
        return log_source, FOLLOW_SECONDS, f"--file {shlex.quote(str(log_file))}"
    if stack is not None:
        # Each re-read of a stack's logs is a Logs Insights query over the view's window: follow it slowly.
        flags = f"--stack {shlex.quote(stack)}" + (f" --region {shlex.quote(region)}" if region else "")
        return log_source, STACK_FOLLOW_SECONDS, flags
    return log_source, FOLLOW_SECONDS, ""


# What `opscore asl` writes in place of the stack's ARNs, named as CloudFormation's substitutions name them.
DISPATCH_FUNCTION_PLACEHOLDER = "${DispatchFunctionArn}"
TABLE_PLACEHOLDER = "${TableName}"


@app.command()
def asl(
    file: Annotated[
        Path,
        typer.Argument(
            help="A workflow template, the body POST /v1/opscore/workflows takes: .json is read as JSON, "
            "any other file as YAML."
        ),
    ],
    dispatch_function_arn: Annotated[
        str, typer.Option(help="The stack's dispatch function ARN.")
    ] = DISPATCH_FUNCTION_PLACEHOLDER,
    table_name: Annotated[str, typer.Option(help="The stack's table name.")] = TABLE_PLACEHOLDER,
    name_prefix: Annotated[str, typer.Option(help="The stack's RunnerNamePrefix.")] = "opscore",
    role_arn: Annotated[str, typer.Option(help="The stack's SessionRunnerRole ARN (its name's hash covers it).")] = "",
) -> None:
    """Print the state machine (Amazon States Language) a workflow template gets, to review it before storing it.

    The template is checked as the API checks it. The definition goes to stdout as JSON, the machine's name to stderr.

    The name's hash covers the ARNs and the runners' role: it is the deployed machine's name only with all of the
    stack's real values.
    """
    from opscore.core.errors import OpsCoreError
    from opscore.sessions.definition import RunnerTargets, machine_name, runner_definition

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        console.print(f"[red]error:[/] cannot read {escape(str(file))}: {escape(reason)}", soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        template = _workflow_template(text, yaml=file.suffix.lower() != ".json")
        definition = runner_definition(template, RunnerTargets(dispatch_function_arn, table_name))
    except OpsCoreError as error:
        console.print(f"[red]error:[/] {escape(str(file))}: {escape(error.message)}", soft_wrap=True)
        for problem in error.details:
            if problem.field or problem.message != error.message:
                where = f"{problem.field}: " if problem.field else ""
                console.print(f"  {escape(where + problem.message)}", soft_wrap=True)
        raise typer.Exit(2) from None
    print(json.dumps(definition, indent=2))
    name = machine_name(name_prefix, template.name, definition, role_arn)
    console.print(f"state machine: {escape(name)}", soft_wrap=True)


def _workflow_template(text: str, *, yaml: bool) -> WorkflowTemplate:
    """The template in `text`, read and checked as POST /v1/opscore/workflows reads and checks a body."""
    from pydantic import ValidationError

    from opscore.api.bodies import field_problems, readable_text
    from opscore.core.errors import ValidationFailed
    from opscore.workflows.templates import WorkflowTemplate, check_template

    text = readable_text(text)
    if yaml:
        from opscore.api.yaml_bodies import yaml_as_json

        text = yaml_as_json(text)
    try:
        template = WorkflowTemplate.model_validate_json(text)
    except ValidationError as error:
        raise ValidationFailed("the workflow template is not valid", field_problems(error)) from None
    check_template(template)
    return template


@app.command()
def trace(  # noqa: PLR0917 - a command's options are its parameters
    session_id: Annotated[str, typer.Argument(help="The session's id (32 hex digits).")],
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="The session's agent (needed with an agent's key; an admin's key finds it)."),
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    stack: ApiStackOption = None,
    region: ApiRegionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as the API answers it.")] = False,
) -> None:
    """Draw a session as a waterfall: each task attempt (queued, then running), each wait (delay, retry backoff) and
    each fallback on the session's time axis, in local time; retries, timeouts and fallbacks marked; totals.

    Exit codes: 0 drawn; 1 the API refused (unknown session: 404), could not be reached or was not found; 2 bad usage
    (a malformed session id, which the API answers 400; a URL without a key).
    Each span is also in the logs as an `event: span` line, shaped like an OpenTelemetry span.
    """
    from rich.console import Console as Out

    from opscore_tools.trace_view import TraceError, api_target, fetch_trace, render

    try:
        answer = fetch_trace(api_target(url, key, stack, region), session_id, agent)
    except TraceError as error:
        console.print(f"[red]error:[/] {escape(error.message)}")
        raise typer.Exit(error.exit_code) from None
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    out = Out(highlight=False)
    # Piped or redirected, the waterfall keeps its width instead of rich's 80 columns (and has no colour).
    render(answer, out if out.is_terminal else Out(highlight=False, width=200))


@app.command()
def demo(
    url: UrlOption = None,
    key: KeyOption = None,
    template: Annotated[Path, typer.Option(help="The SAM template of the local runtime the demo starts.")] = Path(
        "template.yaml"
    ),
    log_file: Annotated[
        Path | None, typer.Option(help="The local runtime's log file (default: .opscore/logs/demo-<time>.jsonl).")
    ] = None,
) -> None:
    """Ops-Core at work in under a minute: three agents on the SDK's worker (different actions, speeds and failure
    rates) and five sessions (a retry, a fallback, a delay), shown live, then each session's outcome and a summary per
    agent. Exits 0 only if every session ended as expected.

    Starts a local runtime of its own (logs under .opscore/logs/) unless --url (or $OPSCORE_URL) names an Ops-Core,
    with an admin --key.
    """
    from opscore_tools.demo import run_demo

    try:
        import opscore_sdk  # noqa: F401 - the demo's agents run on it
    except ImportError:
        console.print("[red]error:[/] the demo needs the Python SDK: pip install ./sdk/python (make installs it)")
        raise typer.Exit(2) from None
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=160)  # piped: whole lines, not wrapped at 80 columns
    if url or os.environ.get("OPSCORE_URL"):
        target = target_or_exit(url, key)
        ok = run_demo(target.base_url, target.api_key, out)
    else:
        if not template.is_file():
            console.print(
                f"[red]error:[/] no SAM template at {template} (run from the Ops-Core checkout, or pass --url)"
            )
            raise typer.Exit(2)
        from opscore_tools.local.server import LocalOpsCore

        log_path = log_file or Path(".opscore/logs") / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl"
        # The health sweep every second: an expired lease would be noticed within the demo.
        runtime = LocalOpsCore(template, log_path.resolve(), port=0, schedule_seconds=1.0)
        admin = runtime.start(None)
        out.print(f"Ops-Core local runtime on {runtime.url}/v1/opscore (logs: {runtime.sink.path})")
        try:
            ok = run_demo(f"{runtime.url}/v1/opscore", admin.value, out)
        finally:
            runtime.stop()
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    app()
