"""Screenshots of each dashboard view, from a real run: `make screenshots` (or `python -m tests.e2e.browser.screenshots
docs/dashboard`). Starts its own `opscore local`, makes agents in the states the views show (a busy one with a queue,
a quarantined one, one whose session retried and fell back), and saves a PNG of each view at 1280x800 and one of a
narrow window. Needs Debian's chromium, as the browser tests do."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

from tests.conftest import REPO
from tests.e2e.browser.conftest import launch
from tests.e2e.browser.scenario import busy_agent_with_a_queue, quarantined_agent, report, retried_and_fallen_back
from tests.e2e.conftest import Api, Contract, start_local
from tests.e2e.test_sessions_over_http import Operator

ADMIN_KEY = "screenshots-admin-key-0123456789"


# A morning's states, minutes ago, oldest first: the agent view's timeline shows them as bands.
PAST_STATES = (("initializing", 14.5), ("idle", 14), ("busy", 12), ("idle", 9.5), ("busy", 7), ("paused", 5),
               ("idle", 4), ("busy", 2.5), ("error", 1.5), ("idle", 1))  # fmt: skip


def named(agent_id: str, name: str, past: tuple[tuple[str, float], ...] = ()) -> Any:
    def new(api: Api) -> Operator:
        agent = Operator(api, agent_id, name)
        for state, minutes_ago in past:
            report(agent, state, minutes_ago)
        return agent

    return new


def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        local = start_local(Path(folder), {"OPSCORE_ADMIN_KEY": ADMIN_KEY})
        try:
            return _shoot(local.base_url, out, Path(folder))
        finally:
            local.stop()


def _shoot(base_url: str, out: Path, folder: Path) -> list[Path]:
    api = Api(base_url, ADMIN_KEY, Contract(REPO / "docs" / "openapi.yaml"))
    researcher, session_id = retried_and_fallen_back(api, named("research-agent", "Research agent"))
    report(researcher, "idle")
    busy_agent_with_a_queue(api, named("support-bot", "Support bot", PAST_STATES))
    quarantined_agent(api, named("crawler-7", "Crawler"))
    report(Operator(api, "summarizer", "Summarizer"), "idle")
    paused = Operator(api, "translator", "Translator")
    report(paused, "paused")
    ui = base_url.removesuffix("/v1/opscore") + "/ui/"
    saved: list[Path] = []
    with sync_playwright() as playwright:
        context = launch(folder / "profile", playwright)
        page = context.new_page()

        def save(name: str, full_page: bool = False) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=full_page)
            saved.append(path)

        page.goto(ui)
        expect(page.get_by_label("API key")).to_be_visible()
        save("sign-in")
        page.get_by_label("API key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator('tr[data-agent="crawler-7"] [data-col="quarantined"]')).to_have_text("quarantined")
        save("fleet")
        page.goto(ui + "#/agent/support-bot?window=15m")
        expect(page.locator("#queue-counts")).to_have_text("2 queued, 0 in flight")
        save("agent", full_page=True)
        page.goto(ui + "#/agent/crawler-7")
        expect(page.locator("#quarantine")).to_be_visible()
        save("agent-quarantined")
        page.goto(ui + f"#/agent/{researcher.agent_id}/session/{session_id}?task=fetch")
        expect(page.locator("#task-error")).to_contain_text("try 2 failed")
        save("session", full_page=True)
        page.goto(ui + f"#/logs?agent={researcher.agent_id}&since=15m")
        first = page.locator('#log-lines li.log[data-event="task_retry_scheduled"]').first
        first.locator("button.log-line").click()
        expect(first.locator(".log-json")).to_be_visible()
        save("logs")
        page.set_viewport_size({"width": 420, "height": 800})
        page.goto(ui + f"#/agent/{researcher.agent_id}/session/{session_id}")
        expect(page.locator('li[data-span="fallback ask for fetch"]')).to_be_visible()
        save("narrow-session", full_page=True)
        context.close()
    return saved


if __name__ == "__main__":
    for path in shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard")):
        print(path)
