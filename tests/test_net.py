"""Which address rate limits count: X-Forwarded-For is believed only from configured proxies."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from broker.http.ratelimit import client_address
from broker.settings import SETTINGS, Settings, SettingsError


def _request(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> web.Request:
    app = web.Application()
    app[SETTINGS] = dataclasses.replace(Settings(), trusted_proxies=trusted)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport_peer = (peer, 40000)

    class Transport:
        def get_extra_info(self, name: str, default: object = None) -> object:
            return transport_peer if name == "peername" else default

    return make_mocked_request("GET", "/", headers=headers, app=app, transport=Transport())


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_address(_request("203.0.113.9", "198.51.100.1", ())) == "203.0.113.9"
    assert client_address(_request("203.0.113.9", "198.51.100.1", ("10.0.0.0/8",))) == "203.0.113.9"


def test_a_trusted_proxy_hands_on_the_address_it_appended_not_what_the_client_claimed() -> None:
    # The client claims to be 1.2.3.4; our nginx (10.0.0.5) appended the real peer 198.51.100.7.
    req = _request("10.0.0.5", "1.2.3.4, 198.51.100.7", ("10.0.0.0/8",))
    assert client_address(req) == "198.51.100.7"


def test_a_bad_proxy_setting_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="TELEROOM_TRUSTED_PROXIES"):
        Settings.from_env({"TELEROOM_TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip"})
