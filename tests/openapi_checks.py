"""Schemathesis hooks for tests/test_openapi_conformance.py (loaded by the fuzzer's process, not by pytest).

`positive_data_acceptance` expects 2xx for every schema-valid request. Some of our rules cannot be
said in JSON Schema: `to` not before `from` and at most N days apart (two parameters), a time
that is free, on the grid and inside the horizon, a time zone that exists. Those refusals are
documented responses (422 or 410 with their codes), so the run lets positive data meet them; this
check keeps the promise that matters: a request the document calls valid is never refused as
malformed — no 400, and no 422 with one of the codes that mean "the request's shape is wrong".
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

# The codes that reading a request answers (README: "Reading the request"); a request the document
# calls valid must never get one of them.
SHAPE_CODES = frozenset(
    {
        "body_required",
        "malformed_json",
        "unsupported_media_type",
        "invalid_input",
        "invalid_text",
        "invalid_date",
        "missing_parameter",
    }
)


@schemathesis.check
def valid_request_is_not_refused_as_malformed(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code == 400:
        raise AssertionError(f"A schema-valid request was refused with 400: {response.text[:500]}")
    if response.status_code == 422:
        try:
            code = json.loads(response.text).get("code")
        except (ValueError, AttributeError):
            code = None
        if code in SHAPE_CODES or code is None:
            raise AssertionError(
                f"A schema-valid request was refused as malformed ({code}): the document should say "
                f"what this rule says: {response.text[:500]}"
            )
    return None
