"""An agent in a process of its own, for the scenarios that kill it or signal it: run as
`python tests/uat/agent_process.py URL KEY AGENT_ID`. Its `work.slow` handler prints `started <task_id> <attempt>`,
works for `input.seconds`, and answers what it did; the worker's run() stops it on SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from opscore_sdk import AgentWorker, Backoff, OpsCore, TaskContext


def main(url: str, key: str, agent_id: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    worker = AgentWorker(OpsCore(url, key), agent_id, poll=Backoff(initial=0.05, maximum=0.25), drain_timeout=20)

    @worker.task("work.slow")
    def slow(task: TaskContext) -> dict[str, Any]:
        print(f"started {task.task_id} {task.attempt}", flush=True)
        time.sleep(float(task.input.get("seconds", 1)))  # the work itself
        return {"worked_seconds": task.input.get("seconds", 1), "pid": "agent_process"}

    worker.run()
    print("stopped", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
