"""The browser's ES modules agree with the server and with each other, read as text (no browser needed).

- web/static/close-codes.js declares signaling.protocol.CloseCode member for member, every
  `CloseCode.NAME` a page uses is one of them, and no page spells a close code as a bare number.
- Every name a module imports is exported by the module it names, and every page's <script> exists,
  so moving a helper between modules cannot leave a page that fails only in a browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signaling.protocol import CloseCode

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "web" / "static"
TEMPLATES = ROOT / "web" / "templates"
CLOSE_CODES_JS = STATIC / "close-codes.js"
# RFC 6455 section 7.4.1: the browser's own close when it leaves. The server never sends it, so it is
# no member of CloseCode; close-codes.js names it beside them.
NORMAL_CLOSURE = 1000


def modules() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(STATIC.glob("*.js"))}


def declared_close_codes(source: str) -> dict[str, int]:
    """NAME -> code from `export const CloseCode = Object.freeze({ NAME: 4400, ... })`."""
    match = re.search(r"export const CloseCode = Object\.freeze\(\{(?P<body>.*?)\}\);", source, re.S)
    assert match, "close-codes.js has no `export const CloseCode = Object.freeze({...});`"
    body = re.sub(r"//[^\n]*", "", match["body"])
    entries = [entry.strip() for entry in body.split(",") if entry.strip()]
    declared: dict[str, int] = {}
    for entry in entries:
        pair = re.fullmatch(r"([A-Z][A-Z0-9_]*)\s*:\s*(\d+)", entry)
        assert pair, f"close-codes.js: {entry!r} is not NAME: number"
        assert pair[1] not in declared, f"close-codes.js declares {pair[1]} twice"
        declared[pair[1]] = int(pair[2])
    return declared


# Places where a number can only be a WebSocket close code: `.close(4403)`, `code === 4403` (either
# way round), `case 4403:` and a Map entry keyed by it, `[4403, "removed"]`.
_CLOSE_CODE_CONTEXTS = [
    r"\.close\(\s*(\d{4})\b",
    r"\bcode\s*[!=]==?\s*(\d{4})\b",
    r"\b(\d{4})\s*[!=]==?\s*[\w.]*\bcode\b",
    r"\bcase\s+(\d{4})\s*:",
    r"\[\s*(\d{4})\s*,",
]


def numeric_close_codes(source: str) -> set[int]:
    """Close codes written as numbers: any CloseCode value, and any number where only a code can be."""
    source = re.sub(r"//[^\n]*", "", source)
    found = {int(n) for pattern in _CLOSE_CODE_CONTEXTS for n in re.findall(pattern, source)}
    found |= {int(n) for n in re.findall(r"\b(\d{4})\b", source) if int(n) in {c.value for c in CloseCode}}
    return found


def test_close_codes_js_declares_exactly_the_servers_close_codes() -> None:
    source = CLOSE_CODES_JS.read_text(encoding="utf-8")
    assert declared_close_codes(source) == {code.name: code.value for code in CloseCode}
    normal = re.search(r"export const NORMAL_CLOSURE = (\d+);", source)
    assert normal and int(normal[1]) == NORMAL_CLOSURE
    assert NORMAL_CLOSURE not in {code.value for code in CloseCode}


def test_every_close_code_a_page_names_is_one_the_server_declares() -> None:
    used = {
        (name, member)
        for name, source in modules().items()
        for member in re.findall(r"\bCloseCode\.([A-Za-z_][A-Za-z0-9_]*)", source)
    }
    assert {member for name, member in used if name == "call.js"} >= {"REMOVED", "REPLACED", "ROOM_ENDED"}
    unknown = sorted(f"{name}: CloseCode.{member}" for name, member in used if member not in CloseCode.__members__)
    assert not unknown, f"close codes the server does not declare (signaling/protocol.py): {unknown}"


def test_no_page_spells_a_close_code_as_a_number() -> None:
    spelled = {
        name: sorted(codes)
        for name, source in modules().items()
        if name != CLOSE_CODES_JS.name and (codes := numeric_close_codes(source))
    }
    assert not spelled, f"use CloseCode.NAME / NORMAL_CLOSURE from close-codes.js instead of numbers: {spelled}"


@pytest.mark.parametrize(
    ("snippet", "codes"),
    [
        ('const FINAL = new Map([[4999, "removed"]]);', {4999}),
        ("if (event.code === 4409) reconnect = false;", {4409}),
        ("switch (code) { case 4410: break; }", {4410}),
        ("socket.close(1000);", {1000}),
        ("const MAX_BACKOFF_MS = 10_000; setTimeout(retry, 4000);", set()),
    ],
)
def test_a_close_code_written_as_a_number_is_found(snippet: str, codes: set[int]) -> None:
    assert numeric_close_codes(snippet) == codes


_IMPORT = re.compile(r"^import\s*\{(?P<names>[^}]*)\}\s*from\s*\"\./(?P<module>[\w.-]+\.js)\";", re.M)
_BARE_IMPORT = re.compile(r"^import\s", re.M)
_EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|class|const|let)\s+([\w$]+)", re.M)


def exported_names(source: str) -> set[str]:
    return set(_EXPORT.findall(source))


def test_every_imported_name_is_exported_by_its_module() -> None:
    sources = modules()
    missing = []
    for name, source in sources.items():
        assert len(_IMPORT.findall(source)) == len(_BARE_IMPORT.findall(source)), (
            f'{name}: an import this test cannot read (use `import {{ a, b }} from "./module.js";`)'
        )
        for match in _IMPORT.finditer(source):
            target = match["module"]
            if target not in sources:
                missing.append(f"{name} imports ./{target}, which does not exist")
                continue
            wanted = {part.split(" as ")[0].strip() for part in match["names"].split(",") if part.strip()}
            for symbol in sorted(wanted - exported_names(sources[target])):
                missing.append(f"{name} imports {symbol} from ./{target}, which does not export it")
    assert not missing, "\n".join(missing)


def test_every_page_script_exists() -> None:
    scripts = {
        (template.name, src)
        for template in TEMPLATES.glob("*.html")
        for src in re.findall(r'<script[^>]*\bsrc="/static/([^"]+)"', template.read_text(encoding="utf-8"))
    }
    assert scripts, "no page loads a script: has the <script> tag changed shape?"
    missing = sorted(f"{template}: /static/{src}" for template, src in scripts if not (STATIC / src).is_file())
    assert not missing, missing
