"""`make bench`: measure, print a table, write bench/results.json. See docs/performance.md for the method."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench import cold_start, latency, operations, throughput
from opscore_tools.local.template import _CfnLoader, load_template

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def sam_build(out: Path) -> Path:
    sam = ROOT / ".venv-sam" / "bin" / "sam"
    # sam build needs a python3.13 on PATH: this interpreter is one.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    built = subprocess.run(  # noqa: S603 - the project's own SAM CLI
        [
            str(sam),
            "build",
            "--template",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(out),
            "--cache-dir",
            str(out.parent / "sam-cache"),
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": path},
    )
    if built.returncode != 0:
        raise SystemExit(f"sam build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    subprocess.run(  # noqa: S603 - the same step as `make build`
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def main() -> None:
    started = time.monotonic()
    template = load_template(ROOT / "template.yaml")
    document = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader + CFN tags
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "arch": platform.machine(), "cpus": os.cpu_count()},
        "runs": RUNS,
    }
    with cold_start.scratch_dir() as scratch_name:
        scratch = Path(scratch_name)
        print("cold imports from the source tree ...", file=sys.__stdout__, flush=True)
        results["interpreter_start_s"] = round(cold_start.interpreter_start(RUNS), 4)
        layer, functions = cold_start.source_layout(template)
        results["cold_import"] = [
            row.as_dict() for row in cold_start.measure(template, document, RUNS, layer, functions)
        ]

        print("sam build, and cold imports from its output as Lambda unpacks it ...", file=sys.__stdout__, flush=True)
        build = sam_build(scratch / "sam-build")
        layer, functions = cold_start.build_layout(build, template, scratch)
        results["cold_import_built"] = [
            row.as_dict() for row in cold_start.measure(template, document, RUNS, layer, functions)
        ]
        results["modules_compiled_at_cold_start"] = {
            "shipped (checked-hash .pyc)": cold_start.stale_bytecode(
                layer,
                functions["StateUpdateFunction"],
                "app",
                cold_start.child_environment(template, "StateUpdateFunction"),
            ),
        }
        results["bytecode_modes"] = cold_start.bytecode_modes(template, 3, build, scratch)

        print("AWS requests per operation, and warm latency, on moto ...", file=sys.__stdout__, flush=True)
        from bench.harness import Harness

        harness = Harness(template)
        try:
            results["operations"] = operations.measure(harness)
            results["latency"] = latency.measure(harness, runs=RUNS * 20)
        finally:
            harness.stop()

        print("the local runtime over HTTP ...", file=sys.__stdout__, flush=True)
        results["local_runtime"] = throughput.measure(ROOT, scratch, seconds=4.0, clients=4, sessions=10)
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results), file=sys.__stdout__)


def report(results: dict[str, Any]) -> str:
    lines = [f"Ops-Core bench, {results['measured_at']}, {results['machine']}", ""]
    lines.append(f"python -S -c pass: {results['interpreter_start_s'] * 1000:.0f} ms")
    lines.append(f"{'function':<24}{'clients':<26}{'import':>9}{'+clients':>10}{'floor':>9}{'ratio':>7}{'built':>8}")
    built = {row["function"]: row for row in results["cold_import_built"]}
    for row in results["cold_import"]:
        lines.append(
            f"{row['function']:<24}{','.join(row['clients']) or '-':<26}{row['handler_import_s'] * 1000:>7.0f}ms"
            f"{row['handler_init_s'] * 1000:>8.0f}ms{row['boto3_floor_s'] * 1000:>7.0f}ms{row['import_ratio']:>7.2f}"
            f"{built[row['function']]['import_ratio']:>8.2f}"
        )
    lines.append(
        f"modules compiled from source at a cold start of the build: {results['modules_compiled_at_cold_start']}"
    )
    lines.append(f"StateUpdateFunction from the build, by bytecode mode: {results['bytecode_modes']}")
    lines.append("")
    lines.append(f"{'operation':<54}{'RRU':>6}{'WRU':>6}{'+GSI':>6}  requests / invocations")
    for name, row in results["operations"].items():
        if "requests" in row:
            calls = f"{row['requests']} {row['lambda_invocations']}"
            index = sum(row["dynamodb_index_wru"].values())
            lines.append(f"{name:<54}{row['dynamodb_rru']:>6}{row['dynamodb_wru']:>6}{index:>6}  {calls}")
    lines.append(f"step functions transitions: {results['operations']['step functions transitions']}")
    lines.append(f"silence deadline: {results['operations']['silence deadline']}")
    lines.append("")
    for name, row in results["latency"].items():
        if isinstance(row, dict):
            lines.append(
                f"{name:<34} p50 {row['handler']['p50_ms']:>7.2f} ms  p99 {row['handler']['p99_ms']:>7.2f} ms   "
                f"floor p50 {row['floor']['p50_ms']:>6.2f} ms   ratio {row['p50_ratio']}"
            )
        else:
            lines.append(f"{name:<34} {row}")
    lines.append(f"local runtime: {results['local_runtime']}")
    lines.append(f"bench took {results['bench_seconds']} s; results in bench/results.json")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
