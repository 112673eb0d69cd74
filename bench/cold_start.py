"""Cold import of every handler in a fresh interpreter, beside the floors a Lambda function cannot go below.

A child interpreter started with `-S` (no site-packages) imports the handler with only the layer and the function's
folder on its path, as Lambda does, then builds the AWS clients the handler's first request builds. The floors are
`python -c pass` (interpreter start, timed from outside) and `import boto3` plus creating the same clients.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opscore_tools.local.template import Template

# Which wiring factory builds which AWS client (the functions' first requests build these).
CLIENT_FACTORIES = {"dynamodb": "dynamodb", "stepfunctions": "stepfunctions"}
ZIP_EPOCH = 315_532_800  # 1980-01-01: the timestamp zip archives (and so Lambda's unpacked files) carry

HANDLER_CHILD = """
import json, time
started = time.perf_counter()
import {module}
imported = time.perf_counter()
from opscore import wiring
for factory in {factories!r}:
    getattr(wiring, factory)()
print(json.dumps({{"import": imported - started, "init": time.perf_counter() - started}}))
"""

FLOOR_CHILD = """
import json, time
started = time.perf_counter()
import boto3
for service in {services!r}:
    boto3.client(service)
print(json.dumps({{"init": time.perf_counter() - started}}))
"""


@dataclass(frozen=True)
class ColdImport:
    function: str
    services: tuple[str, ...]
    import_s: float
    init_s: float
    floor_s: float
    ratios: tuple[float, ...]  # each run's handler / the floor run beside it

    @property
    def import_ratio(self) -> float:
        return statistics.median(self.ratios)

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "clients": list(self.services),
            "handler_import_s": round(self.import_s, 4),
            "handler_init_s": round(self.init_s, 4),
            "boto3_floor_s": round(self.floor_s, 4),
            "import_ratio": round(self.import_ratio, 2),
            "import_ratio_range": [round(min(self.ratios), 2), round(max(self.ratios), 2)],
        }


def services_of(template_document: dict[str, Any], logical_id: str) -> tuple[str, ...]:
    """The AWS clients a function needs, read from the actions its IAM policy allows."""
    properties = template_document["Resources"][logical_id]["Properties"]
    actions = {
        action.split(":")[0]
        for policy in properties.get("Policies", [])
        for statement in policy.get("Statement", [])
        for action in statement.get("Action", [])
    }
    return tuple(
        service for prefix, service in (("dynamodb", "dynamodb"), ("states", "stepfunctions")) if prefix in actions
    )


def child_environment(template: Template, function: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "PYTHONDONTWRITEBYTECODE": "1",  # Lambda's /opt and /var/task are read-only
        **template.functions[function].environment,
    }


def _run_child(code: str, path: list[Path], env: dict[str, str], cwd: Path) -> dict[str, float]:
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-S", "-c", code],
        env={**env, "PYTHONPATH": os.pathsep.join(str(entry) for entry in path)},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the child failed: {result.stderr[-2000:]}")
    values: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def interpreter_start(runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def measure(
    template: Template,
    document: dict[str, Any],
    runs: int,
    layer_path: list[Path],
    function_dirs: dict[str, Path],
) -> list[ColdImport]:
    """Each function's cold import, its code from `function_dirs` and the library from `layer_path`.

    Handler and floor runs alternate, and each ratio pairs a handler run with the floor run beside it, so the
    machine's drift during the bench does not end up in the ratio.
    """
    results = []
    for function in sorted(template.functions):
        services = services_of(document, function)
        env = child_environment(template, function)
        factories = [CLIENT_FACTORIES[service] for service in services]
        code = HANDLER_CHILD.format(module=template.functions[function].module, factories=factories)
        floor_code = FLOOR_CHILD.format(services=services)
        handler_runs, floor_runs = [], []
        for _ in range(runs):
            floor_runs.append(_run_child(floor_code, layer_path, env, function_dirs[function])["init"])
            handler_runs.append(_run_child(code, layer_path, env, function_dirs[function]))
        results.append(
            ColdImport(
                function=function,
                services=services,
                import_s=statistics.median(run["import"] for run in handler_runs),
                init_s=statistics.median(run["init"] for run in handler_runs),
                floor_s=statistics.median(floor_runs),
                ratios=tuple(run["init"] / floor for run, floor in zip(handler_runs, floor_runs, strict=True)),
            )
        )
    return results


def source_layout(template: Template) -> tuple[list[Path], dict[str, Path]]:
    """The source tree: the library's folder, then this environment's site-packages for its dependencies."""
    site = Path(sysconfig.get_paths()["purelib"])
    layer = [template.root / "layers" / "opscore", site]
    return layer, {name: function.code_dir for name, function in template.functions.items()}


def build_layout(build_dir: Path, template: Template, scratch: Path) -> tuple[list[Path], dict[str, Path]]:
    """A copy of `sam build`'s output as Lambda unpacks it: every file dated 1980, bytecode as shipped.

    The layer's native extensions are built for arm64; on another machine the copy gets this machine's build of
    the same pinned versions beside them, so the pure-Python files and their bytecode are still the shipped ones.
    """
    copy = scratch / "build"
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copytree(build_dir, copy, ignore=shutil.ignore_patterns(".cache"))
    site = Path(sysconfig.get_paths()["platlib"])
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for shipped in copy.rglob("*.so"):
        if suffix not in shipped.name:
            relative = shipped.relative_to(copy / "OpsCoreLayer" / "python")
            native = site / relative.parent / (shipped.name.split(".")[0] + suffix)
            if native.is_file():
                shutil.copy2(native, shipped.parent / native.name)
    for path in copy.rglob("*"):
        os.utime(path, (ZIP_EPOCH, ZIP_EPOCH), follow_symlinks=False)
    return [copy / "OpsCoreLayer" / "python"], {name: copy / name for name in template.functions}


def stale_bytecode(layer_path: list[Path], function_dir: Path, module: str, env: dict[str, str]) -> int:
    """How many modules Python had to compile from source (their .pyc missing or no longer valid)."""
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-S", "-v", "-c", f"import {module}"],
        env={**env, "PYTHONPATH": os.pathsep.join(map(str, layer_path))},
        cwd=function_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {result.stderr[-2000:]}")
    # `-v` names a loaded .pyc in quotes, and a module compiled from its source without them.
    return sum(
        1
        for line in result.stderr.splitlines()
        if line.startswith("# code object from ") and line.removeprefix("# code object from ").endswith(".py")
    )


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="opscore-bench-")


def bytecode_modes(template: Template, runs: int, build_dir: Path, scratch: Path) -> dict[str, Any]:
    """StateUpdateFunction's cold start from the build by the bytecode it ships, and with the X-Ray SDK loaded."""
    function = "StateUpdateFunction"
    module = template.functions[function].module
    results: dict[str, Any] = {}
    variants = [
        ("none", None, {}),
        ("timestamp", "timestamp", {}),
        ("checked-hash", "checked-hash", {}),
        ("unchecked-hash", "unchecked-hash", {}),
        ("checked-hash, OPSCORE_TRACING=sdk", "checked-hash", {"OPSCORE_TRACING": "sdk"}),
    ]
    for name, mode, extra in variants:
        copy = scratch / f"mode-{len(results)}"
        shutil.copytree(build_dir, copy, ignore=shutil.ignore_patterns(".cache", "__pycache__"))
        if mode is not None:
            subprocess.run(  # noqa: S603 - this interpreter's compileall
                [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", mode, str(copy)],
                check=True,
                capture_output=True,
            )
        layer, functions = build_layout(copy, template, scratch / f"unpacked-{len(results)}")
        env = {**child_environment(template, function), **extra}
        code = HANDLER_CHILD.format(module=module, factories=["dynamodb"])
        samples = [_run_child(code, layer, env, functions[function]) for _ in range(runs)]
        results[name] = {
            "import_ms": round(statistics.median(sample["import"] for sample in samples) * 1000),
            "init_ms": round(statistics.median(sample["init"] for sample in samples) * 1000),
            "compiled_from_source": stale_bytecode(layer, functions[function], module, env),
        }
    return results
