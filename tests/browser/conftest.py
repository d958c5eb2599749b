"""Browser fixtures: Debian's Chromium driven by playwright (async API), fake camera and microphone.

One Chromium serves the whole test session; each test gets fresh browser contexts (through
`new_context`, `client_page`, `therapist_page`), so the client and the therapist never share cookies
or storage, and nothing carries over from one test to the next. Helpers check accessibility with
axe-core and save screenshots: into this run's temporary directory (printed at the end), or into
docs/screenshots with TELEROOM_SCREENSHOTS=docs.

Without /usr/bin/chromium the tests skip with a reason; with TELEROOM_REQUIRE_BROWSER=1 they fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, async_playwright

from tests.browser import support
from tests.browser.support import DESKTOP

CHROMIUM = Path(os.environ.get("TELEROOM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Playwright's own timeout for each action or expectation; a hang fails the test instead of the suite.
ACTION_TIMEOUT_MS = 15_000

BROWSER_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if BROWSER_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
    if os.environ.get("TELEROOM_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (TELEROOM_REQUIRE_BROWSER=1, so this is a failure, not a skip)")
    pytest.skip(reason)


# Playwright's async objects belong to the event loop that started them, and the server under test
# runs on the test's loop, so one Chromium for the session needs one loop for the session. In this
# directory, pytest-asyncio's per-test runner is therefore its session runner: tests and their
# function-scoped fixtures (the server, the API client) all run on the loop the browser lives on.
# Each test still gets its own server, database and browser contexts. (`_function_scoped_runner` and
# `_session_scoped_runner` are pytest-asyncio's names; `browser` checks that the loops really match.)
@pytest.fixture
def _function_scoped_runner(_session_scoped_runner: asyncio.Runner) -> asyncio.Runner:
    return _session_scoped_runner


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _chromium() -> AsyncIterator[tuple[Browser, asyncio.AbstractEventLoop]]:
    """One headless Chromium with fake media devices for the whole session, and the loop it is driven from."""
    _require_chromium()
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance, asyncio.get_running_loop()
        finally:
            await instance.close()


@pytest.fixture
async def browser(_chromium: tuple[Browser, asyncio.AbstractEventLoop]) -> Browser:
    """The session's Chromium, once it is known to be alive and driven from this test's event loop."""
    instance, loop = _chromium
    assert loop is asyncio.get_running_loop(), (
        "the session's Chromium is driven from another event loop than this test's: "
        "pytest-asyncio's runner fixtures have changed, see _function_scoped_runner above"
    )
    assert instance.is_connected(), "the session's Chromium has exited (crashed?), so no browser test can run"
    return instance


class PageLog:
    """What a page printed and threw, shown when a test fails so a broken script is easy to find."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.errors: list[str] = []

    def attach(self, page: Page) -> None:
        def on_console(msg: ConsoleMessage) -> None:
            self.lines.append(f"[{self.name} console.{msg.type}] {msg.text}")

        def on_error(exc: Error) -> None:
            self.errors.append(f"[{self.name} pageerror] {exc}")

        page.on("console", on_console)
        page.on("pageerror", on_error)

    def dump(self) -> str:
        return "\n".join(self.lines + self.errors)


NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest.fixture
async def new_context(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> AsyncIterator[NewContext]:
    """Factory for isolated browser contexts on the running server: `await new_context(name="client",
    viewport=PHONE, timezone_id=...)`. Console output and script errors of their pages are recorded."""
    contexts: list[BrowserContext] = []

    async def make(*, name: str | None = None, **options: Any) -> BrowserContext:
        options.setdefault("viewport", DESKTOP)
        options.setdefault("locale", "en-US")
        context = await browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        log = PageLog(name or f"context {len(contexts) + 1}")
        context.on("page", log.attach)
        request.node.__dict__.setdefault("_page_logs", []).append(log)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()


async def _page(make: NewContext, name: str, **options: Any) -> Page:
    context = await make(name=name, **options)
    return await context.new_page()


@pytest.fixture
async def client_page(new_context: NewContext) -> Page:
    """The client's browser (its own context: no cookies shared with the therapist)."""
    return await _page(new_context, "client")


@pytest.fixture
async def therapist_page(new_context: NewContext) -> Page:
    """The therapist's browser, a second isolated context."""
    return await _page(new_context, "therapist")


@pytest.fixture(scope="session", autouse=True)
def _screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Screenshots go to this run's temporary directory unless TELEROOM_SCREENSHOTS=docs."""
    support.use_screenshot_dir(support.screenshot_dir_from_env() or tmp_path_factory.mktemp("screenshots"))
    yield


def pytest_terminal_summary(terminalreporter: Any) -> None:
    saved = support.saved_screenshot_dir()
    if saved is not None:
        hint = "" if saved == support.DOCS_SCREENSHOTS else " (TELEROOM_SCREENSHOTS=docs: into docs/screenshots)"
        terminalreporter.write_line(f"browser screenshots: {saved}{hint}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    logs: list[PageLog] = item.__dict__.get("_page_logs", [])
    if report.failed and logs:
        report.sections.append(("browser console", "\n".join(log.dump() for log in logs)))
