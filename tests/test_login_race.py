"""Racing password guesses: the login throttle holds however they interleave (issue 13, defect 7)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests import test_multi_node
from tests.support import Api
from tests.test_accounts import Browserish, therapist_with_password

second_node = test_multi_node.second_node


@pytest.fixture
async def browser(base_url: str) -> AsyncIterator[Browserish]:
    client = Browserish(base_url)
    yield client
    await client.close()


async def _race(browser: Browserish, emails: list[str]) -> Counter[int]:
    """Post every (wrong) login at once, from one browser holding one form token."""
    token = await browser.form_token()

    async def attempt(email: str) -> int:
        data = {"email": email, "password": "wrong password!", "csrf_token": token}
        async with browser.session.post(browser.base + "/login", data=data, allow_redirects=False) as resp:
            if resp.status == 429:
                assert 0 < int(resp.headers["Retry-After"]) <= 15 * 60
            return resp.status

    return Counter(await asyncio.gather(*(attempt(e) for e in emails)))


async def test_hundred_concurrent_wrong_passwords_for_one_email_get_at_most_five_401s(
    api: Api, browser: Browserish
) -> None:
    therapist = await therapist_with_password(api)
    answers = await _race(browser, [therapist["email"]] * 100)
    assert set(answers) <= {401, 429}, answers
    assert answers[401] == 5, answers


async def test_hundred_concurrent_wrong_logins_from_one_address_get_at_most_twenty_401s(browser: Browserish) -> None:
    answers = await _race(browser, [f"guess{i}@example.org" for i in range(100)])
    assert set(answers) <= {401, 429}, answers
    assert answers[401] == 20, answers


async def test_wrong_passwords_racing_on_two_nodes_get_at_most_five_401s_in_all(
    api: Api, browser: Browserish, second_node: str
) -> None:
    therapist = await therapist_with_password(api)
    other = Browserish(second_node)
    try:
        here, there = await asyncio.gather(
            _race(browser, [therapist["email"]] * 50), _race(other, [therapist["email"]] * 50)
        )
    finally:
        await other.close()
    answers = here + there
    assert set(answers) <= {401, 429}, answers
    assert answers[401] == 5, answers
