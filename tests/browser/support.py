"""Helpers for browser tests: accessibility checks with axe-core, screenshots, page errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# The README's pictures. Test runs write here only when asked (TELEROOM_SCREENSHOTS=docs), so an
# ordinary run leaves the tracked files alone.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot_dir_from_env() -> Path | None:
    """docs/screenshots when TELEROOM_SCREENSHOTS=docs, None when it is unset; any other value is a mistake."""
    choice = os.environ.get("TELEROOM_SCREENSHOTS", "")
    if choice == "docs":
        return DOCS_SCREENSHOTS
    if choice:
        raise ValueError(f"TELEROOM_SCREENSHOTS may only be 'docs' (to refresh docs/screenshots), got {choice!r}")
    return None


class _Screenshots:
    """Where this session saves screenshots (set once by the conftest), and whether it saved any."""

    directory: Path | None = None
    saved = False


def use_screenshot_dir(directory: Path) -> None:
    _Screenshots.directory = directory
    _Screenshots.saved = False


def saved_screenshot_dir() -> Path | None:
    """The directory screenshots went to in this session, or None if none were taken."""
    return _Screenshots.directory if _Screenshots.saved else None


def page_errors(request: pytest.FixtureRequest) -> list[str]:
    """Uncaught script errors on any page this test opened through the fixtures."""
    logs: list[Any] = request.node.__dict__.get("_page_logs", [])
    return [err for log in logs for err in log.errors]


SERIOUS = {"serious", "critical"}


async def assert_accessible(page: Page, what: str = "") -> None:
    """No serious or critical axe-core violations on the page as it is now."""
    results = await Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
    detail = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} -> " + ", ".join(str(n["target"]) for n in v["nodes"][:5]) for v in bad
    )
    assert not bad, f"axe-core violations on {what or page.url}:\n{detail}"


async def screenshot(page: Page, name: str) -> Path:
    """Save `<name>-<phone|desktop>.png` (full page) in the session's screenshot directory; return the path."""
    width = page.viewport_size["width"] if page.viewport_size else DESKTOP["width"]
    label = "phone" if width <= PHONE["width"] else "desktop"
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise ValueError(f"screenshot name must be lowercase words and dashes, got {name!r}")
    directory = _Screenshots.directory
    if directory is None:
        raise RuntimeError("no screenshot directory: tests/browser/conftest.py sets one for each session")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{label}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    _Screenshots.saved = True
    return path


async def check_page_at_widths(page: Page, name: str, *, shoot: bool = True) -> None:
    """Accessibility at phone and desktop width (and a screenshot of each), then back to desktop."""
    for size in (PHONE, DESKTOP):
        await page.set_viewport_size(size)
        await assert_accessible(page, f"{name} at {size['width']}px")
        if shoot:
            await screenshot(page, name)


async def set_password_from_invite(api: Any, therapist: dict[str, Any], password: str) -> None:
    """Choose the therapist's password through the one-time invite link the admin API returned."""
    invite = therapist.get("invite_url")
    assert invite, "the admin API returned no invite_url (accounts part not mounted?)"
    secret = invite.split("#t=", 1)[1]
    status, body = await api.call("POST", "/api/v1/account/password", token=secret, json={"password": password})
    assert status == 200, body


async def log_in(page: Page, email: str, password: str, next_path: str = "/dashboard") -> None:
    """Log in through the real /login form and land on `next_path`."""
    await page.goto(f"/login?next={next_path}")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"**{next_path}")


async def video_is_playing(page: Page, selector: str) -> None:
    """The <video> shows frames: a width above zero, and its time moves on."""
    video = page.locator(selector)
    await video.wait_for()
    handle = await page.wait_for_function(
        "v => v.videoWidth > 0 && v.currentTime > 0 && !v.paused ? v.currentTime : null",
        arg=await video.element_handle(),
    )
    first = await handle.json_value()
    await page.wait_for_function("([v, t]) => v.currentTime > t", arg=[await video.element_handle(), first])
