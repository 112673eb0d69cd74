"""Browser tier: the dashboard in headless Chromium (Debian's `chromium` package), driven by Playwright, against the
`opscore local` the e2e tier starts.

Playwright drives the system's browser (`executable_path`); `playwright install` is never needed. A missing browser
fails these tests with the command that installs it: only OPSCORE_BROWSER_TESTS=skip, set on purpose, skips them.
OPSCORE_BROWSER names another Chromium binary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LocalProcess

BROWSER_ENV = "OPSCORE_BROWSER"
OPT_OUT_ENV = "OPSCORE_BROWSER_TESTS"
DEFAULT_BROWSER = "/usr/bin/chromium"
# Nothing the browser does on its own: no updates, no sync, no background fetches; loopback only.
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# Not UTC: the pages must show the browser's zone, not the stored UTC; and without summer time, so that what the tests
# expect (Chromium names it "GMT+5:30") is the same all year.
TIMEZONE = "Asia/Kolkata"
ZONE_NAME = "GMT+5:30"
EXPECT_TIMEOUT_MS = 15_000


def chromium_path() -> str:
    """The browser to drive: $OPSCORE_BROWSER, else Debian's chromium; a clear failure when there is none."""
    wanted = os.environ.get(BROWSER_ENV) or DEFAULT_BROWSER
    found = shutil.which(wanted)
    if found:
        return found
    if os.environ.get(OPT_OUT_ENV) == "skip":
        pytest.skip(f"{OPT_OUT_ENV}=skip: the browser tests are skipped on purpose")
    pytest.fail(
        f"no Chromium at {wanted}: install it (`sudo apt-get install -y chromium`; .ci/run does) or name one with "
        f"{BROWSER_ENV}; to skip the browser tests on this machine on purpose, set {OPT_OUT_ENV}=skip",
        pytrace=False,
    )


def launch(user_data_dir: Path, playwright: Any) -> Any:
    """A persistent context of the system's Chromium: a fresh profile in `user_data_dir`, the viewport the pages are
    designed for, a zone that is not UTC."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=chromium_path(),
        headless=True,
        args=BROWSER_ARGS,
        viewport=VIEWPORT,
        timezone_id=TIMEZONE,
        locale="en-GB",
    )


@pytest.fixture(scope="session")
def ui_url(local_ops_core: LocalProcess | None) -> str:
    if local_ops_core is None:
        pytest.skip("OPSCORE_E2E_URL is set: the dashboard is tested on the local runtime, which serves it")
    return local_ops_core.base_url.removesuffix("/v1/opscore") + "/ui/"


@pytest.fixture(scope="package")  # closed after this package: an async test after it needs no loop left running
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = chromium_path()  # fails (or skips on purpose) before Playwright starts
    assert executable
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        context = launch(tmp_path_factory.mktemp("chromium-profile"), playwright)
        yield context
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new tab: sessionStorage is per tab, so every test starts signed out."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    tab.close()
    assert not errors, f"the page raised: {errors}"
