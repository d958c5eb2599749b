"""Debian programs some tests drive (coturn's `turnserver`, `nginx`): found, or skipped with a reason.

CI installs them (.ci/run) and sets TELEROOM_REQUIRE_BROWSER=1; there a missing program fails the
test instead of skipping it, as a missing Chromium does (tests/browser/conftest.py).
"""

from __future__ import annotations

import os
import shutil

import pytest

# nginx lives in /usr/sbin, which an unprivileged user's PATH often lacks.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])


def require(program: str, package: str) -> str:
    """The path of `program`; skip (fail under CI) naming the Debian `package` that provides it."""
    found = shutil.which(program, path=SEARCH_PATH)
    if found:
        return found
    reason = f"{program} not found: install Debian's {package} package (apt-get install {package})"
    if os.environ.get("TELEROOM_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (TELEROOM_REQUIRE_BROWSER=1, so this is a failure, not a skip)")
    pytest.skip(reason)
