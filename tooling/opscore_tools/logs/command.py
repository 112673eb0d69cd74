"""The `opscore logs` command: options in, a source chosen, lines out."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from opscore_tools.logs.records import LogQuery
    from opscore_tools.logs.sources import Found, LogSource

HELP = """Show Ops-Core's log lines, filtered: from the local runtime's log file,
or from a deployed stack (--stack).

Filters combine (AND); a filter given twice accepts either value (OR).
Output: a table, one row a line, times in local time with the zone, colour
only on a terminal; or with --json the raw JSON lines, one a line, for jq.

Examples:

  # what one agent did in the last 15 minutes
  opscore logs --agent research-agent --since 15m

  # why a session failed
  opscore logs --session 0644e2a7c1d3f5b0e3c1a9f4d2b7e8c6 --level WARNING

  # failed attempts and their retries, as JSON for jq
  opscore logs --event task_failed --event task_retry_scheduled --json | jq .

  # messages matching a regular expression, the newest 50
  opscore logs --grep 'lease (expired|lost)' --limit 50

  # new lines of one agent as they are written (Ctrl-C stops)
  opscore logs --follow --agent research-agent

  # a deployed stack's errors of the last 2 hours (Logs Insights)
  opscore logs --stack opscore-dev --since 2h --level ERROR

Sources: --file; else the log file of the local runtime running from this
checkout; else the newest .opscore/logs/*.jsonl. --stack NAME runs one Logs
Insights query over the stack's log groups (the last hour unless --since or
--start); then --follow polls FilterLogEvents on each log group, from where
that search ended. A stack's lines are checked with the same filters as a
file's, so both answer the same lines. An AWS call that is throttled is tried
again after a growing wait, a few times. Only JSON objects with a level are
log lines: anything else (EMF metrics, Lambda's START/END/REPORT lines) is
skipped, with --json too.

Exit codes: 0 when the search ran, whether or not a line matched (a note on
stderr says when none did; Ctrl-C ending --follow is 0 too); 2 bad usage (an
unknown option, a malformed time, level or regex); 1 errors (no log file, no
such stack, no AWS credentials, a failed or timed-out query, AWS throttling
that lasts).
"""


def logs(  # noqa: PLR0917 - one parameter per option
    agent: Annotated[list[str] | None, typer.Option("--agent", "-a", help="An agent id.", show_default=False)] = None,
    session: Annotated[
        list[str] | None, typer.Option("--session", "-s", help="A session id.", show_default=False)
    ] = None,
    task: Annotated[list[str] | None, typer.Option("--task", help="A task id.", show_default=False)] = None,
    workflow: Annotated[list[str] | None, typer.Option("--workflow", help="A workflow id.", show_default=False)] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="An event name (task_failed, ...).", show_default=False)
    ] = None,
    level: Annotated[
        str | None, typer.Option("--level", "-l", help="This level and above: DEBUG, INFO, WARNING, ERROR, CRITICAL.")
    ] = None,
    error_type: Annotated[
        list[str] | None,
        typer.Option(
            "--error-type", help="An error_type (States.Timeout, OpsCore.LeaseExpired, ...).", show_default=False
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Lines of the last 30s, 15m, 2h, 1d, 1w.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Lines at or after this RFC 3339 time (2026-12-01T10:00:00Z).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Lines before this RFC 3339 time.")] = None,
    grep: Annotated[
        str | None, typer.Option("--grep", "-g", help="A regular expression the message must contain.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Show the newest N matching lines (oldest first).")
    ] = 1000,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then print new matching lines until Ctrl-C.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The raw JSON lines, one a line, for jq.")] = False,
    file: Annotated[Path | None, typer.Option(help="A JSON-lines log file to read.", show_default=False)] = None,
    stack: Annotated[
        str | None, typer.Option(help="A deployed stack's name: its log groups.", show_default=False)
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="AWS region of --stack (default: your AWS configuration's).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds a stack's Logs Insights query may take.")] = 60.0,
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from opscore_tools.logs.records import LogQuery, UsageError, window
    from opscore_tools.logs.sources import SourceError

    try:
        if file is not None and stack is not None:
            raise UsageError("give --file or --stack, not both")
        if follow and end is not None:
            raise UsageError("--follow streams from now on: it takes no --end")
        begins, ends = window(since, start, end, datetime.now(UTC))
        query = LogQuery(
            agents=tuple(agent or ()),
            sessions=tuple(session or ()),
            tasks=tuple(task or ()),
            workflows=tuple(workflow or ()),
            events=tuple(event or ()),
            error_types=tuple(error_type or ()),
            level=level.upper() if level else None,
            start=begins,
            end=ends,
            grep=grep,
            limit=limit,
        )
    except UsageError as error:
        _fail(str(error), 2)
    try:
        progress = _ProgressLine()
        try:
            source = _source(file, stack, region, timeout, progress)
            found = source.find(query)
        finally:
            progress.done()
        _show(source, found, query, follow=follow, as_json=as_json)
    except SourceError as error:
        _fail(str(error), 1)
    except (BotoCoreError, ClientError) as error:
        _fail(f"AWS: {error}", 1)


def _source(
    file: Path | None, stack: str | None, region: str | None, timeout: float, progress: _ProgressLine
) -> LogSource:
    from opscore_tools.logs.local_file import LocalFile, default_log_file
    from opscore_tools.logs.sources import SourceError

    if stack is not None:
        from opscore_tools.logs.stack import stack_logs

        return stack_logs(stack, region, timeout_seconds=timeout, progress=progress)
    path = file or default_log_file()
    if not path.is_file():
        raise SourceError(f"no log file at {path}")
    return LocalFile(path)


def _show(source: LogSource, found: Found, query: LogQuery, *, follow: bool, as_json: bool) -> None:
    from opscore_tools.logs.render import Columns, print_json, print_table, row, stdout_console

    console = stdout_console()
    try:
        for note in found.notes:
            _note(note)
        columns = Columns.fitting(found.lines)
        if as_json:
            print_json(found.lines)
        elif found.lines or follow:
            print_table(console, found.lines, columns)
        if not found.lines:
            _note(f"no matching lines in {source.describe()}" + ("; following" if follow else ""))
        if follow:
            for line in source.follow(query):
                if as_json:
                    print_json([line])
                else:
                    console.print(row(line, columns), soft_wrap=True)
                    console.file.flush()
    except KeyboardInterrupt:
        return  # Ctrl-C is how --follow ends: exit 0
    except BrokenPipeError:
        # The reader went away (`opscore logs | head`): stop quietly, and keep Python from failing to flush at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _ProgressLine:
    """One line on stderr, rewritten in place while a stack's query runs (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self._console = _stderr()
        self._width = 0

    def __call__(self, text: str) -> None:
        if self._console.is_terminal:
            self._console.file.write("\r" + text.ljust(self._width) + "\r")
            self._console.file.flush()
            self._width = max(self._width, len(text))

    def done(self) -> None:
        if self._width:
            self._console.file.write("\r" + " " * self._width + "\r")
            self._width = 0


def _note(text: str) -> None:
    from rich.markup import escape

    _stderr().print(f"[dim]{escape(text)}[/]", soft_wrap=True)


def _fail(text: str, code: int) -> NoReturn:
    from rich.markup import escape

    _stderr().print(f"[red]error:[/] {escape(text)}", soft_wrap=True)
    raise typer.Exit(code)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


logs.__doc__ = HELP
