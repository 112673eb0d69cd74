"""Run the template's Lambda handlers in this process, one invocation at a time, as one Lambda container would.

One at a time is not only faithful, it is required: Powertools keeps the current event on the resolver class and the
logger's keys in one place, both safe in Lambda (one event per container) and unsafe across threads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TextIO

from opscore_tools.local.template import ACCOUNT_ID, REGION, Function, Template

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    timeout_seconds: float = 10.0
    started: float = 0.0

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


class LambdaRuntime:
    def __init__(self, template: Template, stdout: TextIO | None = None) -> None:
        self._template = template
        self._stdout = stdout
        self._lock = threading.RLock()  # re-entrant: a handler may start work that invokes another function
        self._handlers: dict[str, Handler] = {}

    def exclusive(self) -> contextlib.AbstractContextManager[bool]:
        """Hold the runtime: no function runs meanwhile. moto is not thread-safe, and the session runner invokes
        functions from moto's own threads, so code that calls moto directly (tests, the bench) holds this."""
        return self._lock

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        with self._lock:
            handler = self._handlers.get(logical_id) or self._load(self._template.functions[logical_id])
            function = self._template.functions[logical_id]
            context = LocalContext(
                function_name=logical_id,
                aws_request_id=str(uuid.uuid4()),
                timeout_seconds=function.timeout_seconds,
                started=time.monotonic(),
            )
            # What a function prints (Powertools metrics print EMF lines) goes where Lambda sends it: to the logs.
            with contextlib.redirect_stdout(self._stdout) if self._stdout else contextlib.nullcontext():
                return handler(event, context)

    def _load(self, function: Function) -> Handler:
        path = function.code_dir / f"{function.module.replace('.', '/')}.py"
        spec = importlib.util.spec_from_file_location(f"opscore_local_functions.{function.logical_id}", path)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"{function.logical_id}: no handler module at {path}")
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler: Handler = getattr(module, function.handler)
        self._handlers[function.logical_id] = handler
        return handler
