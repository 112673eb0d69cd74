"""The dashboard in a real browser: sign-in, the fleet, an agent, a session's waterfall, the logs, and the actions,
against `opscore local` with agents made over HTTP (retries, a fallback, a quarantine).

Every wait is Playwright's own auto-waiting (`expect`): the pages refresh every few seconds, and the assertions wait
for what a refresh brings.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.browser.conftest import ZONE_NAME
from tests.e2e.browser.scenario import (
    busy_agent_with_a_queue,
    failing_agent,
    quarantined_agent,
    retried_and_fallen_back,
)
from tests.e2e.conftest import Api, LocalProcess
from tests.e2e.test_dashboard_cli import start_dashboard
from tests.e2e.test_sessions_over_http import Operator


def sign_in(page: Any, ui_url: str, key: str, agent_id: str = "", at: str = "") -> None:
    page.goto(ui_url + at)
    page.get_by_label("API key").fill(key)
    if agent_id:
        page.get_by_label("Agent id").fill(agent_id)
    page.get_by_role("button", name="Sign in").click()


def next_refresh(page: Any) -> None:
    """Wait (on the page, not the clock) until the view has refreshed once more: the header's time changes."""
    status = page.locator("#status")
    expect(status).to_have_text(re.compile(r"^Updated "))
    expect(status).not_to_have_text(status.inner_text())


def confirm(page: Any) -> None:
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Confirm").click()


def test_sign_in_keeps_the_key_in_the_tab_and_an_agent_key_sees_only_its_agent(
    page: Any, ui_url: str, api: Api
) -> None:
    # given an agent and its key
    agent = Operator(api)

    # when an unknown key signs in: the API's 401, said plainly
    sign_in(page, ui_url, "not-a-key-anyone-issued")
    expect(page.locator("#sign-in-error")).to_contain_text("401")

    # when the agent's key signs in without its agent id: the 403 on the fleet says what to do
    sign_in(page, ui_url, agent.agent_key)
    expect(page.locator("#sign-in-error")).to_contain_text("agent's key")

    # when it gives its id: straight to its own agent, no fleet or logs in the navigation
    sign_in(page, ui_url, agent.agent_key, agent.agent_id)
    expect(page).to_have_url(re.compile(rf"#/agent/{agent.agent_id}$"))
    expect(page.locator("#agent-head h1")).to_contain_text(agent.agent_id)
    expect(page.locator('[data-stat="success-rate"]')).to_have_text("— (0 succeeded, 0 failed, 0 timed out)")
    expect(page.locator("#trigger-form")).to_have_count(0)
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#who")).to_have_text(f"signed in: agent {agent.agent_id}")
    assert agent.agent_key not in page.url, "the key is never in the URL"
    assert page.evaluate("sessionStorage.getItem('opscore.key')") == agent.agent_key
    assert page.evaluate("localStorage.length") == 0, "nothing outlives the tab"

    # then the fleet is not for it, and signing out forgets the key
    page.goto(ui_url + "#/fleet")
    expect(page.locator("main")).to_contain_text("An agent key sees only its own agent")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('opscore.key')") is None


def test_the_fleet_shows_states_and_quarantine_and_filters_and_sorts_in_the_url(
    page: Any, ui_url: str, api: Api
) -> None:
    # given a busy agent with a queue, a quarantined one (error streak 1), and one with an error streak of 2
    busy, _sessions = busy_agent_with_a_queue(api)
    sick, _quarantine = quarantined_agent(api)
    failing = failing_agent(api, failures=2)

    # when the admin signs in
    sign_in(page, ui_url, api.admin_key)
    expect(page).to_have_url(re.compile(r"#/fleet$"))

    # then each agent's row shows its state, queue, quarantine and error streak
    busy_row = page.locator(f'tr[data-agent="{busy.agent_id}"]')
    expect(busy_row.locator('[data-col="state"]')).to_have_text("busy")
    expect(busy_row.locator('[data-col="queued"]')).to_have_text("2")
    expect(busy_row.locator('[data-col="quarantined"]')).to_have_text("no")
    sick_row = page.locator(f'tr[data-agent="{sick.agent_id}"]')
    expect(sick_row.locator('[data-col="state"]')).to_have_text("error")
    expect(sick_row.locator('[data-col="quarantined"]')).to_have_text("quarantined")
    expect(sick_row.locator('[data-col="failure_streak"]')).to_have_text("1")
    expect(busy_row.locator('[data-col="last_seen"] time')).to_have_attribute("title", re.compile(re.escape(ZONE_NAME)))

    # when the whole fleet is sorted by error streak, descending: the URL says so, and the column is in that order
    page.locator('button[data-sort="failure_streak"]').click()
    page.locator('button[data-sort="failure_streak"]').click()
    expect(page).to_have_url(re.compile(r"sort=failure_streak&dir=desc"))
    expect(page.locator('th[aria-sort="descending"]')).to_contain_text("Error streak")
    streaks = page.locator('#fleet-table [data-col="failure_streak"]').all_inner_texts()
    assert streaks == sorted(streaks, key=int, reverse=True)
    order = page.locator("#fleet-table tbody tr").evaluate_all("rows => rows.map((row) => row.dataset.agent)")
    assert order.index(failing.agent_id) < order.index(sick.agent_id) < order.index(busy.agent_id)

    # when filtered by state: the filter is in the URL, and only agents in that state remain
    page.get_by_label("State").select_option("error")
    expect(page).to_have_url(re.compile(r"#/fleet\?state=error"))
    expect(sick_row).to_be_visible()
    expect(busy_row).to_have_count(0)

    # when sorted from the keyboard: the same, and the focus stays on the column's button
    page.locator('button[data-sort="agent"]').focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"sort=agent&dir=asc"))
    expect(page.locator('button[data-sort="agent"]')).to_be_focused()

    # and a shared link opens the same view
    page.goto(ui_url + "#/fleet?state=busy")
    expect(page.get_by_label("State")).to_have_value("busy")
    expect(page.locator(f'tr[data-agent="{busy.agent_id}"]')).to_be_visible()


def test_the_session_waterfall_marks_the_retry_and_the_fallback_and_shows_a_tasks_error(
    page: Any, ui_url: str, api: Api
) -> None:
    # given a session whose task failed twice (retried once) and whose fallback succeeded
    agent, session_id = retried_and_fallen_back(api)

    # when the admin opens it from the agent's recent sessions
    sign_in(page, ui_url, api.admin_key, at=f"#/agent/{agent.agent_id}")
    page.locator(f'tr[data-session="{session_id}"] a').click()
    expect(page).to_have_url(re.compile(rf"#/agent/{agent.agent_id}/session/{session_id}$"))

    # then each attempt, the backoff and the fallback are rows on the time axis, queue wait and run distinct
    spans = page.locator("#waterfall li.span")
    expect(spans.locator(".span-name")).to_have_text([
        re.compile("^session "), "fetch attempt 1", "backoff before fetch attempt 2", "fetch attempt 2",
        "fallback ask for fetch", "ask attempt 1",
    ])  # fmt: skip
    first = page.locator('li[data-span="fetch attempt 1"]')
    expect(first.locator(".seg.queue")).to_have_count(1)
    expect(first.locator(".seg.run.failed")).to_have_count(1)
    expect(first.locator(".mark-retry")).to_have_text("retried after ToolError")
    expect(page.locator('li[data-span="backoff before fetch attempt 2"] .seg.wait')).to_have_count(1)
    fallback = page.locator('li[data-span="fallback ask for fetch"] .mark-fallback')
    expect(fallback).to_have_text("fallback for fetch after ToolError: try 2 failed")
    expect(page.locator("#trace-totals")).to_contain_text("attempts 3 (retried 1, timed out 0), fallbacks 1")
    expect(page.locator("#session-status")).to_have_text("completed")
    expect(page.locator("#cancel-session")).to_have_count(0)

    # when a task's row is clicked: its input, output and error, and the choice is in the URL
    page.get_by_role("button", name="fetch attempt 2", exact=True).click()
    expect(page).to_have_url(re.compile(r"\?task=fetch$"))
    detail = page.locator("#task-detail")
    expect(detail.locator("h2")).to_contain_text("Task fetch")
    expect(detail.locator("#task-error")).to_contain_text('"message": "try 2 failed"')
    expect(detail.locator("tbody tr")).to_have_count(2)
    page.get_by_role("button", name="ask attempt 1", exact=True).click()
    expect(detail.locator("h2")).to_contain_text("Task ask")
    expect(detail).to_contain_text("ran in place of fetch")


def test_the_agent_view_shows_its_timeline_stats_queue_and_sessions(page: Any, ui_url: str, api: Api) -> None:
    # given a busy agent with two tasks queued, and an agent whose session retried and fell back
    busy, sessions = busy_agent_with_a_queue(api)
    worked, session_id = retried_and_fallen_back(api)

    # when the admin opens the busy agent over the last 15 minutes
    sign_in(page, ui_url, api.admin_key, at=f"#/agent/{busy.agent_id}?window=15m")

    # then its timeline has its idle and busy bands, and its queue is shown by priority
    expect(page.get_by_label("Window")).to_have_value("15m")
    expect(page.locator('#agent-timeline .band[data-state="busy"]')).to_have_count(1)
    expect(page.locator('#agent-timeline .band[data-state="idle"]')).to_have_count(1)
    expect(page.locator("#queue-counts")).to_have_text("2 queued, 0 in flight")
    expect(page.locator("#agent-queue tr[data-priority]")).to_have_count(2)
    expect(page.locator('#agent-queue tr[data-priority="7"] td.num')).to_have_text("1")
    expect(page.locator("#agent-sessions tbody tr")).to_have_count(len(sessions))

    # when the window changes: it is in the URL
    page.get_by_label("Window").select_option("6h")
    expect(page).to_have_url(re.compile(r"\?window=6h$"))

    # and the agent that worked shows its stats: one success in three ended attempts
    page.goto(ui_url + f"#/agent/{worked.agent_id}")
    expect(page.locator('[data-stat="success-rate"]')).to_have_text("33.3 % (1 succeeded, 2 failed, 0 timed out)")
    expect(page.locator('[data-stat="run-time"]')).to_contain_text("(3 attempts)")
    status = page.locator(f'tr[data-session="{session_id}"] [data-col="status"]')
    expect(status).to_have_text("completed")


def test_actions_confirm_first_and_show_the_apis_answer(page: Any, ui_url: str, api: Api) -> None:
    # given a quarantined agent and a busy one with two open sessions
    sick, _quarantine = quarantined_agent(api)
    busy, sessions = busy_agent_with_a_queue(api)
    sign_in(page, ui_url, api.admin_key, at=f"#/agent/{sick.agent_id}")

    # when the quarantine's lift is asked for and then declined: nothing is sent, by the next refresh either
    expect(page.locator("#quarantine")).to_contain_text("Quarantined")
    methods: list[str] = []
    page.on("request", lambda request: methods.append(request.method))
    page.get_by_role("button", name="Lift quarantine").click()
    page.locator("dialog#confirm").get_by_role("button", name="Cancel").click()
    next_refresh(page)
    expect(page.locator("#action-answer")).to_be_empty()
    assert methods, "the refresh's requests were seen"
    assert "DELETE" not in methods

    # when confirmed: the API's 200, and the banner goes with the next refresh
    page.get_by_role("button", name="Lift quarantine").click()
    confirm(page)
    expect(page.locator("#action-answer .headline")).to_have_text("200: done")
    expect(page.locator("#quarantine")).to_have_count(0)
    assert api.admin("GET", f"/agent/{sick.agent_id}").body["quarantined"] is False

    # when a session of the busy agent is cancelled: 200, and its row says cancelled
    page.goto(ui_url + f"#/agent/{busy.agent_id}")
    page.locator(f'button[data-cancel="{sessions[0]}"]').click()
    confirm(page)
    expect(page.locator("#action-answer .headline")).to_have_text("200: done")
    expect(page.locator(f'tr[data-session="{sessions[0]}"] [data-col="status"]')).to_have_text("cancelled")

    # when a trigger names no workflow: the API's 400 is shown, naming the field
    page.get_by_role("button", name="Trigger…").click()
    confirm(page)
    expect(page.locator("#action-answer .headline")).to_contain_text("400: validation_error")
    page.locator("#action-answer summary").click()
    expect(page.locator("#action-answer pre")).to_contain_text("workflow_id")

    # when a stored workflow is triggered: 202, and a new session appears among the recent ones
    workflow = api.admin(
        "POST", "/workflows", body={"name": "e2e-dashboard-digest", "tasks": [{"id": "t", "action": "x"}]}
    )
    assert workflow.status in {200, 201}, workflow.body
    chooser = page.get_by_label("Workflow")
    chooser.focus()  # the list is read again when it gets the focus: no reload needed
    expect(chooser.locator('option[value="e2e-dashboard-digest"]')).to_have_count(1)
    chooser.select_option("e2e-dashboard-digest")
    page.get_by_label("Input (JSON object)").fill('{"topic": "agents"}')
    page.get_by_label("Priority (0 to 9)").fill("3")
    page.get_by_role("button", name="Trigger…").click()
    confirm(page)
    expect(page.locator("#action-answer .headline")).to_have_text("202: done")
    expect(page.locator("#agent-sessions tbody tr")).to_have_count(len(sessions) + 1)
    started = api.admin("GET", f"/agent/{busy.agent_id}/sessions").body["items"][0]
    assert (started["workflow_id"], started["priority"]) == ("e2e-dashboard-digest", 3)


def test_the_logs_view_filters_like_opscore_logs_follows_and_expands_a_line(page: Any, ui_url: str, api: Api) -> None:
    # given a session whose task failed twice before its fallback ran
    agent, session_id = retried_and_fallen_back(api)

    # when the admin asks for the agent's retry events (a shared link with the filters)
    sign_in(page, ui_url, api.admin_key, at=f"#/logs?agent={agent.agent_id}&event=task_retry_scheduled")

    # then exactly that line, in the browser's zone
    lines = page.locator("#log-lines li.log")
    expect(lines).to_have_count(1)
    expect(lines.first.locator(".log-event")).to_have_text("task_retry_scheduled")
    expect(lines.first.locator(".log-time")).to_contain_text(ZONE_NAME)
    expect(page.locator("#log-agent")).to_have_value(agent.agent_id)

    # when the line is expanded: its JSON
    lines.first.locator("button.log-line").click()
    expect(lines.first.locator(".log-json")).to_contain_text(f'"session_id": "{session_id}"')
    expect(lines.first.locator(".log-json")).to_contain_text('"error_type": "ToolError"')

    # when the filters change in the form: the URL follows, and a level filter narrows the lines
    page.locator("#log-event").fill("")
    page.get_by_label("Level").select_option("WARNING")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"#/logs\?agent={agent.agent_id}&level=WARNING"))
    expect(page.locator("#log-lines")).to_contain_text("No matching lines")
    expect(page.locator("#log-lines pre.command")).to_have_text(
        f"opscore logs --agent {agent.agent_id} --level WARNING"
    )

    # when the window starts after everything (a time in the browser's zone, an instant in the URL): nothing matches
    page.get_by_label("Level").select_option("")
    page.locator("#log-start").fill("2099-01-01T00:00")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"start=2098-12-31T18%3A30%3A00.000Z"))
    expect(page.locator("#log-start")).to_have_value("2099-01-01T00:00")
    expect(page.locator("#log-lines pre.command")).to_have_text(
        f"opscore logs --agent {agent.agent_id} --start 2098-12-31T18:30:00.000Z"
    )

    # when following the agent's lines: what it does next appears without a reload
    page.goto(ui_url + f"#/logs?agent={agent.agent_id}&event=session_started&follow=1")
    expect(page.locator("#log-note")).to_contain_text("following")
    expect(lines).to_have_count(1)
    agent.start([{"id": "again", "action": "web.fetch"}])
    expect(lines).to_have_count(2)


def test_narrow_windows_keep_every_view_usable(page: Any, ui_url: str, api: Api) -> None:
    # given a session with a retry and a fallback, on a phone-sized window
    agent, session_id = retried_and_fallen_back(api)
    page.set_viewport_size({"width": 420, "height": 800})
    sign_in(page, ui_url, api.admin_key, at=f"#/agent/{agent.agent_id}/session/{session_id}")

    # then the waterfall's rows and marks are there, and nothing is wider than the window
    expect(page.locator('li[data-span="fallback ask for fetch"] .mark-fallback')).to_be_visible()
    # (each view once its content is drawn: its table, its lines, or its empty state)
    drawn = {
        "": "#waterfall li.span",
        "#/fleet": "#fleet-table, #fleet-body .empty",
        f"#/agent/{agent.agent_id}": "#agent-sessions tbody tr",
        "#/logs?since=5m": "#log-lines li.log, #log-lines .empty",
    }
    for view, content in drawn.items():
        if view:
            page.goto(ui_url + view)
        expect(page.locator(content).first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 420, view


def test_refreshes_and_a_hidden_tab_keep_the_operators_place(page: Any, ui_url: str, api: Api) -> None:
    # given an agent with tasks in its queue, and a quarantined one
    busy, _sessions = busy_agent_with_a_queue(api)
    sick, _quarantine = quarantined_agent(api)
    sign_in(page, ui_url, api.admin_key, at=f"#/agent/{busy.agent_id}")

    # when the queue's list is opened and an input typed: both stay as they were through a refresh
    page.locator("#agent-queue details summary").click()
    typed = page.get_by_label("Input (JSON object)")
    typed.fill('{"topic": "kept"}')
    next_refresh(page)
    expect(page.locator("#agent-queue details")).to_have_attribute("open", "")
    expect(page.locator("#agent-queue details li")).to_have_count(2)

    # when the tab is hidden and shown again: the view refreshes in place, what was typed is still there
    page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", { value: false, configurable: true });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    next_refresh(page)
    expect(typed).to_have_value('{"topic": "kept"}')
    expect(page.locator("#agent-queue details")).to_have_attribute("open", "")

    # when the quarantined agent's lift button has the focus: it keeps it through a refresh, and gets it back when
    # its dialog is declined after a refresh redrew it
    page.goto(ui_url + f"#/agent/{sick.agent_id}")
    lift = page.get_by_role("button", name="Lift quarantine")
    lift.focus()
    next_refresh(page)
    expect(lift).to_be_focused()
    lift.click()
    expect(page.locator("dialog#confirm")).to_be_visible()
    next_refresh(page)
    page.locator("dialog#confirm").get_by_role("button", name="Cancel").click()
    expect(lift).to_be_focused()


def test_a_read_the_api_refuses_is_said_in_the_view_not_left_loading(page: Any, ui_url: str, api: Api) -> None:
    # given an agent, and links with a state and a session id the API refuses (400)
    agent = Operator(api)

    # when the fleet is opened with an unknown state: the API's 400 is the view, not "Loading"
    sign_in(page, ui_url, api.admin_key, at="#/fleet?state=bogus")
    expect(page.locator("#view-error")).to_contain_text("400")
    expect(page.locator("#fleet-body .pending")).to_have_count(0)

    # when a session id is not one: the same
    page.goto(ui_url + f"#/agent/{agent.agent_id}/session/not-a-session-id")
    expect(page.locator("#view-error")).to_contain_text("400")
    expect(page.locator("#session-head .pending")).to_have_count(0)


def test_opscore_dashboard_serves_the_same_views_in_front_of_an_api(
    page: Any, ui_url: str, api: Api, local_ops_core: LocalProcess
) -> None:
    # given `opscore dashboard` in front of the API (the local runtime's, as a deployed stack's would be)
    busy, _sessions = busy_agent_with_a_queue(api)
    served = start_dashboard("--url", local_ops_core.base_url, "--log-file", str(local_ops_core.log_path))
    try:
        # when the admin signs in there: the fleet, through the forwarded API, and the logs, from the log file
        sign_in(page, served.url + "/ui/", api.admin_key, at="#/fleet?state=busy")
        expect(page.locator(f'tr[data-agent="{busy.agent_id}"] [data-col="queued"]')).to_have_text("2")
        page.goto(served.url + f"/ui/#/logs?agent={busy.agent_id}&event=agent_registered")
        expect(page.locator("#log-lines li.log")).to_have_count(1)

        # and a search with no match shows the command that reads the same file
        page.goto(served.url + f"/ui/#/logs?agent={busy.agent_id}&event=no_such_event")
        expect(page.locator("#log-lines pre.command")).to_have_text(
            f"opscore logs --file {local_ops_core.log_path} --agent {busy.agent_id} --event no_such_event"
        )
    finally:
        assert served.stop() == 0


@pytest.fixture(autouse=True)
def _no_key_in_the_address(page: Any, api: Api) -> Any:
    """Whatever a test does, no key the browser sent (the admin's, an agent's) appears in an address it asked for."""
    asked: list[str] = []
    keys = {api.admin_key}

    def seen(request: Any) -> None:
        asked.append(request.url)
        if key := request.headers.get("x-api-key"):
            keys.add(key)

    page.on("request", seen)
    yield
    assert not [url for url in asked for key in keys if key in url]
