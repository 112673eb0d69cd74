"""What Powertools' own request validation would cost the HTTP edge, beside today's read_json and query_int.

`python -m bench.edge_validation [RUNS]`: each run is a fresh interpreter that builds one resolver with two routes
(POST .../state with a StateReport body, GET .../history with a `limit` query). What every variant imports anyway
(Powertools' resolver, pydantic, the StateReport model, the logger) is imported first, untimed; then the rest of the
variant's imports and its routes are timed (init), then its first request, then warm requests. Three variants:
- ours: APIGatewayRestResolver() with read_json / query_int in the route, as the functions do;
- powertools: APIGatewayRestResolver(enable_validation=True) with Annotated[StateReport, Body()] and
  Annotated[int, Query(ge=1, le=100)];
- powertools-lax: the same with a non-strict copy of StateReport. Powertools validates the body after json.loads,
  in pydantic's Python mode, where our strict request models refuse JSON's strings for enums and datetimes (a valid
  report gets 422): this variant shows what a successful request would cost.
Runs alternate between the variants; the table shows medians.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM_REQUESTS = 2000

_TIMING = """
import json, time
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from opscore.agents.models import StateReport
import opscore.core.observability
started = time.perf_counter()
{setup}
init = time.perf_counter() - started
post = json.loads(open({post!r}).read())
get = json.loads(open({get!r}).read())
get["queryStringParameters"] = {{"limit": "5"}}
before_first = time.perf_counter()
statuses = [app.resolve(post, None)["statusCode"], app.resolve(get, None)["statusCode"]]
first = time.perf_counter() - before_first
warm = {{}}
for name, event in (("post", post), ("get", get)):
    before = time.perf_counter()
    for _ in range({warm}):
        app.resolve(event, None)
    warm[name] = (time.perf_counter() - before) / {warm}
print(json.dumps({{"init": init, "first": first, "warm": warm, "statuses": statuses}}))
"""

OURS = """
from opscore.api.bodies import read_json
from opscore.api.params import query_int
app = APIGatewayRestResolver()
def set_state(agentId):
    report = read_json(app.current_event, StateReport)
    return Response(200, "application/json", report.model_dump_json())
def history(agentId):
    limit = query_int(app.current_event, "limit", 20, 1, 100)
    return Response(200, "application/json", json.dumps({"limit": limit}))
app.post("/v1/opscore/agent/<agentId>/state")(set_state)
app.get("/v1/opscore/agent/<agentId>/state/history")(history)
"""

POWERTOOLS = """
from typing import Annotated
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
app = APIGatewayRestResolver(enable_validation=True)
def set_state(agentId: str, report: Annotated[StateReport, Body()]):
    return Response(200, "application/json", report.model_dump_json())
def history(agentId: str, limit: Annotated[int, Query(ge=1, le=100)] = 20):
    return Response(200, "application/json", json.dumps({"limit": limit}))
app.post("/v1/opscore/agent/<agentId>/state")(set_state)
app.get("/v1/opscore/agent/<agentId>/state/history")(history)
"""

POWERTOOLS_LAX = POWERTOOLS.replace(
    "app = ",
    "from pydantic import ConfigDict\n"
    "class StateReport(StateReport):\n"
    "    model_config = ConfigDict(strict=False, extra='forbid', frozen=True)\n"
    "app = ",
    1,
)
VARIANTS = {"ours": OURS, "powertools": POWERTOOLS, "powertools-lax": POWERTOOLS_LAX}


def run(setup: str) -> dict[str, object]:
    code = _TIMING.format(
        setup=setup.strip(),
        post=str(ROOT / "events" / "state_update" / "post.json"),
        get=str(ROOT / "events" / "agent_read" / "get_history.json"),
        warm=WARM_REQUESTS,
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT / "layers" / "opscore"), "TABLE_NAME": "bench"}
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    measured: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    results: dict[str, list[dict[str, object]]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name in random.sample(list(VARIANTS), len(VARIANTS)):  # no variant always runs first, or last
            results[name].append(run(VARIANTS[name]))
    print(f"medians of {runs} fresh interpreters; warm requests: {WARM_REQUESTS} per route")
    print(f"{'variant':15} {'init ms':>8} {'1st req ms':>11} {'POST us':>8} {'GET us':>7}  statuses")
    for name, samples in results.items():
        init = statistics.median(float(sample["init"]) for sample in samples) * 1000  # type: ignore[arg-type]
        first = statistics.median(float(sample["first"]) for sample in samples) * 1000  # type: ignore[arg-type]
        post = statistics.median(sample["warm"]["post"] for sample in samples) * 1e6  # type: ignore[index]
        get = statistics.median(sample["warm"]["get"] for sample in samples) * 1e6  # type: ignore[index]
        print(f"{name:15} {init:8.1f} {first:11.1f} {post:8.0f} {get:7.0f}  {samples[0]['statuses']}")


if __name__ == "__main__":
    main()
